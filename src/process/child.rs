//! `Child`: a spawned process, its waiting, signalling and termination.

use std::fmt;
use std::io;
use std::pin::pin;
use std::task::Poll;
use std::time::Duration;

use std::process::{ExitStatus, Output};

use crate::error::AsCancelled;
use crate::signal::Signal;
use crate::CancelScope;

use super::exit::{self, wait_blocking, Exit};
use super::pipes::{ChildStderr, ChildStdin, ChildStdout};

/// A running (or exited, not yet reaped) child process.
///
/// Made by [`Command::spawn`](crate::process::Command::spawn). Its piped standard streams are the public fields, to be taken
/// out (`child.stdout.take()`) and moved into the tasks that use them. A `Child` dropped before
/// it was reaped is killed and reaped in the background.
///
/// ```
/// use trellis::process::{Command, Stdio};
///
/// trellis::run(async {
///     let mut child = Command::new("sh")
///         .args(["-c", "read name; echo \"hello, $name\""])
///         .stdin(Stdio::piped())
///         .stdout(Stdio::piped())
///         .spawn()?;
///     let mut stdin = child.stdin.take().unwrap();
///     let mut stdout = child.stdout.take().unwrap();
///     stdin.write_all(b"trellis\n").await?;
///     let mut reply = Vec::new();
///     let mut buf = [0u8; 64];
///     loop {
///         let n = stdout.read(&mut buf).await?;
///         if n == 0 {
///             break; // end of file: the child closed its output
///         }
///         reply.extend_from_slice(&buf[..n]);
///     }
///     assert_eq!(reply, b"hello, trellis\n");
///     assert!(child.wait().await?.success());
///     Ok::<_, std::io::Error>(())
/// })
/// .unwrap();
/// ```
pub struct Child {
    pub(super) pid: u32,
    pub(super) program: String,
    pub(super) exit: Exit,
    /// Set once reaped.
    pub(super) status: Option<ExitStatus>,
    pub(super) grace: Duration,
    /// The child leads a process group of its own (`Command::process_group(0)`): signals, and
    /// the termination of a cancelled call, go to the whole group.
    pub(super) group: bool,
    /// The child's standard input, if piped.
    pub stdin: Option<ChildStdin>,
    /// The child's standard output, if piped.
    pub stdout: Option<ChildStdout>,
    /// The child's standard error, if piped.
    pub stderr: Option<ChildStderr>,
}

impl fmt::Debug for Child {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Child")
            .field("pid", &self.pid)
            .field("program", &self.program)
            .field("status", &self.status)
            .finish()
    }
}

impl Child {
    /// The process id.
    ///
    /// ```
    /// trellis::run(async {
    ///     let mut child = trellis::process::Command::new("true").spawn()?;
    ///     assert!(child.id() > 0);
    ///     child.wait().await?;
    ///     Ok::<_, std::io::Error>(())
    /// })
    /// .unwrap();
    /// ```
    pub fn id(&self) -> u32 {
        self.pid
    }

    /// Waits for the child to exit and reaps it. A checkpoint; a cancelled wait leaves the child
    /// running (and unreaped), to be waited for again. Waiting again after an exit returns the
    /// same status.
    ///
    /// ```
    /// use std::time::Duration;
    /// use trellis::process::Command;
    ///
    /// trellis::run(async {
    ///     let mut child = Command::new("sleep").arg("5").spawn()?;
    ///     // A cancelled wait only stops waiting: the child is still running afterwards.
    ///     let waited = trellis::move_on_after(Duration::from_millis(5), child.wait()).await;
    ///     assert!(waited.is_none());
    ///     assert!(child.try_wait()?.is_none());
    ///     child.kill()?;
    ///     assert!(!child.wait().await?.success());
    ///     Ok::<_, std::io::Error>(())
    /// })
    /// .unwrap();
    /// ```
    pub async fn wait(&mut self) -> io::Result<ExitStatus> {
        if let Some(status) = self.status {
            crate::checkpoint().await?;
            return Ok(status);
        }
        let status = self.exit.wait(self.pid).await?;
        self.status = Some(status);
        Ok(status)
    }

    /// The exit status if the child has exited (reaping it), else `None`. Not a checkpoint.
    ///
    /// ```
    /// trellis::run(async {
    ///     let mut child = trellis::process::Command::new("true").spawn()?;
    ///     // Poll without waiting; an exited child is reaped and its status kept.
    ///     while child.try_wait()?.is_none() {
    ///         trellis::sleep(std::time::Duration::from_millis(1)).await?;
    ///     }
    ///     assert!(child.try_wait()?.unwrap().success());
    ///     Ok::<_, std::io::Error>(())
    /// })
    /// .unwrap();
    /// ```
    pub fn try_wait(&mut self) -> io::Result<Option<ExitStatus>> {
        if self.status.is_none() {
            self.status = self.exit.try_wait(self.pid)?;
        }
        Ok(self.status)
    }

    /// Waits for the child; if cancelled, [terminates](Child::terminate) it, then returns the
    /// cancellation.
    ///
    /// ```
    /// use std::time::Duration;
    /// use trellis::process::Command;
    ///
    /// trellis::run(async {
    ///     let mut child = Command::new("sleep").arg("5").spawn()?;
    ///     let out = trellis::move_on_after(Duration::from_millis(5), child.wait_or_terminate()).await;
    ///     assert!(out.is_none());
    ///     // Unlike a plain `wait`, the cancelled call has ended the child and reaped it.
    ///     assert!(child.try_wait()?.is_some());
    ///     Ok::<_, std::io::Error>(())
    /// })
    /// .unwrap();
    /// ```
    pub async fn wait_or_terminate(&mut self) -> io::Result<ExitStatus> {
        match self.wait().await {
            Err(e) if e.cancelled().is_some() => {
                self.terminate().await?;
                Err(e)
            }
            other => other,
        }
    }

    /// Closes the child's standard input, reads its standard output and error to the end and
    /// waits for it. If cancelled, terminates it first, then returns the cancellation.
    ///
    /// ```
    /// use trellis::process::{Command, Stdio};
    ///
    /// trellis::run(async {
    ///     let mut child = Command::new("sh")
    ///         .args(["-c", "echo out; echo err >&2"])
    ///         .stdout(Stdio::piped())
    ///         .stderr(Stdio::piped())
    ///         .spawn()?;
    ///     let out = child.wait_with_output().await?;
    ///     assert_eq!((&out.stdout[..], &out.stderr[..]), (&b"out\n"[..], &b"err\n"[..]));
    ///     Ok::<_, std::io::Error>(())
    /// })
    /// .unwrap();
    /// ```
    pub async fn wait_with_output(&mut self) -> io::Result<Output> {
        drop(self.stdin.take());
        let stdout = self.stdout.take();
        let stderr = self.stderr.take();
        let (out, err) = join(read_all(stdout), read_all(stderr)).await;
        let status = self.wait_or_terminate().await;
        let cancelled = [&out, &err]
            .into_iter()
            .find_map(|r| r.as_ref().err().and_then(AsCancelled::cancelled));
        if let Some(c) = cancelled {
            if status.is_ok() {
                // The reads were cancelled but the wait was not (it exited meanwhile).
                return Err(c.into());
            }
        }
        Ok(Output {
            status: status?,
            stdout: out?,
            stderr: err?,
        })
    }

    /// Asks the child to stop: `SIGTERM`, then `SIGKILL` if it is still running after the grace
    /// period; returns its exit status once reaped. Shielded from cancellation, so it completes
    /// inside a cancelled scope.
    ///
    /// ```
    /// use std::os::unix::process::ExitStatusExt;
    /// use trellis::process::Command;
    ///
    /// trellis::run(async {
    ///     let mut child = Command::new("sleep").arg("5").spawn()?;
    ///     let status = child.terminate().await?;
    ///     assert_eq!(status.signal(), Some(15)); // ended by SIGTERM
    ///     Ok::<_, std::io::Error>(())
    /// })
    /// .unwrap();
    /// ```
    pub async fn terminate(&mut self) -> io::Result<ExitStatus> {
        let grace = self.grace;
        let shielded = CancelScope::new().shielded(true);
        let out = shielded
            .run(async {
                if self.try_wait()?.is_none() {
                    self.signal(Signal::TERM)?;
                    if let Some(done) = crate::move_on_after(grace, self.wait()).await {
                        return done;
                    }
                    self.kill()?;
                }
                self.wait().await
            })
            .await;
        out.expect("a shielded scope is not cancelled from outside")
    }

    /// Sends `signal` to the child, unless it has already been reaped (then nothing happens).
    ///
    /// # Errors
    /// If the signal cannot be sent (an invalid number).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::os::unix::process::ExitStatusExt;
    /// use trellis::process::Command;
    /// use trellis::signal::Signal;
    ///
    /// trellis::run(async {
    ///     let mut child = Command::new("sleep").arg("5").spawn()?;
    ///     child.signal(Signal::USR1)?; // its default action ends the process
    ///     assert_eq!(child.wait().await?.signal(), Some(Signal::USR1.as_raw()));
    ///     Ok::<_, std::io::Error>(())
    /// })
    /// .unwrap();
    /// ```
    pub fn signal(&mut self, signal: Signal) -> io::Result<()> {
        if self.status.is_some() {
            return Ok(());
        }
        self.exit.signal(self.pid, self.group, signal)
    }

    /// Kills the child (`SIGKILL`) unless it has already been reaped. Does not wait.
    ///
    /// # Errors
    /// As [`signal`](Child::signal).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::os::unix::process::ExitStatusExt;
    ///
    /// trellis::run(async {
    ///     let mut child = trellis::process::Command::new("sleep").arg("5").spawn()?;
    ///     child.kill()?;
    ///     assert_eq!(child.wait().await?.signal(), Some(9));
    ///     Ok::<_, std::io::Error>(())
    /// })
    /// .unwrap();
    /// ```
    pub fn kill(&mut self) -> io::Result<()> {
        self.signal(Signal::KILL)
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        if self.status.is_none() {
            match &self.exit {
                Exit::Pidfd(_) => kill_and_reap_in_background(self.pid, self.group),
                Exit::Thread(watch) => {
                    // The watching thread reaps it once it is dead.
                    let _ = watch.signal(self.pid, self.group, Signal::KILL);
                }
                Exit::Reaped => {}
            }
        }
    }
}

/// Kills `pid` (ours, not yet reaped) and reaps it on a pool thread.
pub(super) fn kill_and_reap_in_background(pid: u32, group: bool) {
    // Not reaped yet, so neither the pid nor the group it leads can have been reused.
    let _ = exit::send_signal(pid, group, Signal::KILL);
    crate::thread::execute_detached(Box::new(move || {
        let _ = wait_blocking(pid);
    }));
}

/// Polls two futures to completion together.
async fn join<A: std::future::Future, B: std::future::Future>(
    a: A,
    b: B,
) -> (A::Output, B::Output) {
    let mut a = pin!(a);
    let mut b = pin!(b);
    let (mut ra, mut rb) = (None, None);
    std::future::poll_fn(|cx| {
        if ra.is_none() {
            if let Poll::Ready(v) = a.as_mut().poll(cx) {
                ra = Some(v);
            }
        }
        if rb.is_none() {
            if let Poll::Ready(v) = b.as_mut().poll(cx) {
                rb = Some(v);
            }
        }
        if ra.is_some() && rb.is_some() {
            Poll::Ready((ra.take().expect("set"), rb.take().expect("set")))
        } else {
            Poll::Pending
        }
    })
    .await
}

async fn read_all<R: crate::io::ReadStream>(stream: Option<R>) -> io::Result<Vec<u8>> {
    let mut out = Vec::new();
    let Some(mut stream) = stream else {
        return Ok(out);
    };
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = stream.read(&mut buf).await?;
        if n == 0 {
            return Ok(out);
        }
        out.extend_from_slice(&buf[..n]);
    }
}
