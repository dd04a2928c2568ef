//! Child processes: spawning with piped standard streams as async streams, waiting for exit,
//! and what a cancellation does to a child (trio's `run_process` / `open_process`).
//!
//! - [`Command`] builds a process like `std::process::Command` (it wraps one).
//!   [`spawn`](Command::spawn) gives a [`Child`] whose piped `stdin`/`stdout`/`stderr` are async
//!   streams; [`status`](Command::status), [`output`](Command::output) and
//!   [`output_checked`](Command::output_checked) run a process to completion.
//! - Cancellation: when a call that owns the process (`status`, `output`, `output_checked`,
//!   [`Child::wait_or_terminate`]) is cancelled, the child gets `SIGTERM`, then `SIGKILL` if it is
//!   still running after the grace period (5 s by default, as trio), and is always reaped before
//!   the cancellation is returned. That clean-up is shielded, so it finishes even inside a
//!   cancelled scope. A plain [`Child::wait`] that is cancelled just stops waiting (the child
//!   keeps running and can be waited for again), as trio's `Process.wait`.
//! - No zombies, no orphans: a [`Child`] dropped before it was reaped is killed and reaped in
//!   the background.
//! - Waiting for exit: on Linux a pidfd (`pidfd_open`) is registered with the reactor and
//!   becomes readable when the child exits; where pidfds are unavailable (kernels before 5.3),
//!   a helper thread per child blocks in `waitid` until it exits.

use std::ffi::OsStr;
use std::fmt;
use std::fs::File;
use std::io;
use std::os::fd::{FromRawFd, OwnedFd};
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::pin::pin;
use std::process as sp;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::task::{Poll, Waker};
use std::time::Duration;

pub use std::process::{ExitStatus, Output, Stdio};

use crate::cancel::CancelWaiter;
use crate::error::AsCancelled;
use crate::io::{fd_stream_impls, AsyncFd, FdReader, FdWriter};
use crate::signal::Signal;
use crate::CancelScope;

/// How long a child gets between `SIGTERM` and `SIGKILL` when the call that owns it is
/// cancelled (trio's default for `run_process`).
pub const DEFAULT_GRACE_PERIOD: Duration = Duration::from_secs(5);

/// A process to run: program, arguments, environment, directory, standard streams.
///
/// ```
/// use trellis::process::Command;
///
/// trellis::run(async {
///     let out = Command::new("sh").arg("-c").arg("echo hello; echo oops >&2").output().await?;
///     assert!(out.status.success());
///     assert_eq!(out.stdout, b"hello\n");
///     assert_eq!(out.stderr, b"oops\n");
///     Ok::<_, std::io::Error>(())
/// })
/// .unwrap();
/// ```
pub struct Command {
    inner: sp::Command,
    grace: Duration,
    stdin_set: bool,
    stdout_set: bool,
    stderr_set: bool,
}

impl fmt::Debug for Command {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.inner, f)
    }
}

impl Command {
    /// A command running `program` (looked up in `PATH` if it has no slash).
    pub fn new(program: impl AsRef<OsStr>) -> Command {
        Command {
            inner: sp::Command::new(program),
            grace: DEFAULT_GRACE_PERIOD,
            stdin_set: false,
            stdout_set: false,
            stderr_set: false,
        }
    }

    /// Adds an argument.
    pub fn arg(&mut self, arg: impl AsRef<OsStr>) -> &mut Command {
        self.inner.arg(arg);
        self
    }

    /// Adds arguments.
    pub fn args<I, S>(&mut self, args: I) -> &mut Command
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.inner.args(args);
        self
    }

    /// Sets an environment variable.
    pub fn env(&mut self, key: impl AsRef<OsStr>, value: impl AsRef<OsStr>) -> &mut Command {
        self.inner.env(key, value);
        self
    }

    /// Removes an environment variable.
    pub fn env_remove(&mut self, key: impl AsRef<OsStr>) -> &mut Command {
        self.inner.env_remove(key);
        self
    }

    /// Starts from an empty environment.
    pub fn env_clear(&mut self) -> &mut Command {
        self.inner.env_clear();
        self
    }

    /// Sets the working directory.
    pub fn current_dir(&mut self, dir: impl AsRef<Path>) -> &mut Command {
        self.inner.current_dir(dir);
        self
    }

    /// The child's standard input: [`Stdio::piped`] makes [`Child::stdin`] an async stream.
    /// Default: inherited for `spawn` and `status`, empty (`null`) for `output`.
    pub fn stdin(&mut self, cfg: impl Into<Stdio>) -> &mut Command {
        self.inner.stdin(cfg);
        self.stdin_set = true;
        self
    }

    /// The child's standard output. Default: inherited for `spawn` and `status`, piped for
    /// `output`.
    pub fn stdout(&mut self, cfg: impl Into<Stdio>) -> &mut Command {
        self.inner.stdout(cfg);
        self.stdout_set = true;
        self
    }

    /// The child's standard error. Defaults as for [`stdout`](Command::stdout).
    pub fn stderr(&mut self, cfg: impl Into<Stdio>) -> &mut Command {
        self.inner.stderr(cfg);
        self.stderr_set = true;
        self
    }

    /// Time between `SIGTERM` and `SIGKILL` when a call owning the child is cancelled
    /// ([`DEFAULT_GRACE_PERIOD`] unless set).
    pub fn grace_period(&mut self, grace: Duration) -> &mut Command {
        self.grace = grace;
        self
    }

    /// Starts the process. Not async: `fork`/`exec` does not wait for the program.
    ///
    /// # Errors
    /// If the program cannot be started; the error names it ("could not run `nosuch`: No such
    /// file or directory (os error 2)") and keeps the system's kind (`NotFound`, say).
    ///
    /// # Panics
    /// Outside a runtime.
    pub fn spawn(&mut self) -> io::Result<Child> {
        let program = self.inner.get_program().to_string_lossy().into_owned();
        let mut child = self
            .inner
            .spawn()
            .map_err(|e| io::Error::new(e.kind(), format!("could not run `{program}`: {e}")))?;
        let stdin = child.stdin.take().map(ChildStdin::new).transpose();
        let stdout = child.stdout.take().map(ChildStdout::new).transpose();
        let stderr = child.stderr.take().map(ChildStderr::new).transpose();
        let pid = child.id();
        // From here on this module reaps the process itself; std's handle does nothing on drop.
        drop(child);
        let exit = match Exit::watch(pid) {
            Ok(exit) => exit,
            Err(e) => {
                // Cannot watch it: do not leave it running unobserved.
                kill_and_reap_in_background(pid);
                return Err(e);
            }
        };
        let mut child = Child {
            pid,
            program,
            exit,
            status: None,
            grace: self.grace,
            stdin: None,
            stdout: None,
            stderr: None,
        };
        child.stdin = stdin?;
        child.stdout = stdout?;
        child.stderr = stderr?;
        Ok(child)
    }

    /// Runs the process with inherited standard streams (unless set) and returns its exit
    /// status. A checkpoint; if cancelled, the child is terminated and reaped first (see the
    /// module docs).
    ///
    /// # Errors
    /// As [`spawn`](Command::spawn), or the cancellation.
    pub async fn status(&mut self) -> io::Result<ExitStatus> {
        let mut child = self.spawn()?;
        child.wait_or_terminate().await
    }

    /// Like [`status`](Command::status), failing unless the exit status is success.
    ///
    /// # Errors
    /// As `status`, or an error carrying an [`ExitError`] for an unsuccessful exit.
    pub async fn status_checked(&mut self) -> io::Result<ExitStatus> {
        let status = self.status().await?;
        self.check(Output {
            status,
            stdout: Vec::new(),
            stderr: Vec::new(),
        })
        .map(|out| out.status)
    }

    /// Runs the process, collecting its standard output and error (piped unless set; standard
    /// input empty unless set). A checkpoint; if cancelled, the child is terminated and reaped
    /// first, and what it wrote is dropped.
    ///
    /// # Errors
    /// As [`spawn`](Command::spawn), a read error, or the cancellation.
    pub async fn output(&mut self) -> io::Result<Output> {
        if !self.stdin_set {
            self.inner.stdin(Stdio::null());
        }
        if !self.stdout_set {
            self.inner.stdout(Stdio::piped());
        }
        if !self.stderr_set {
            self.inner.stderr(Stdio::piped());
        }
        let mut child = self.spawn()?;
        child.wait_with_output().await
    }

    /// Like [`output`](Command::output), failing unless the exit status is success (trio's
    /// `run_process(check=True)`).
    ///
    /// ```
    /// use trellis::process::{Command, ExitError};
    ///
    /// trellis::run(async {
    ///     let err = Command::new("sh").args(["-c", "echo bad input >&2; exit 3"])
    ///         .output_checked()
    ///         .await
    ///         .unwrap_err();
    ///     let failed = ExitError::of(&err).unwrap();
    ///     assert_eq!(failed.status().code(), Some(3));
    ///     assert_eq!(err.to_string(), "`sh` failed with exit status: 3: bad input");
    /// });
    /// ```
    ///
    /// # Errors
    /// As `output`, or an error carrying an [`ExitError`] (with the output) for an
    /// unsuccessful exit.
    pub async fn output_checked(&mut self) -> io::Result<Output> {
        let output = self.output().await?;
        self.check(output)
    }

    fn check(&self, output: Output) -> io::Result<Output> {
        if output.status.success() {
            return Ok(output);
        }
        Err(io::Error::other(ExitError {
            program: self.inner.get_program().to_string_lossy().into_owned(),
            output,
        }))
    }
}

/// A process exited unsuccessfully; carried inside the `io::Error` of the `*_checked` calls.
#[derive(Debug)]
pub struct ExitError {
    program: String,
    output: Output,
}

impl ExitError {
    /// The `ExitError` inside `err`, if there is one.
    pub fn of(err: &io::Error) -> Option<&ExitError> {
        err.get_ref().and_then(|e| e.downcast_ref::<ExitError>())
    }

    /// The exit status.
    pub fn status(&self) -> ExitStatus {
        self.output.status
    }

    /// What the process wrote (empty for `status_checked`).
    pub fn output(&self) -> &Output {
        &self.output
    }
}

impl fmt::Display for ExitError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "`{}` failed with {}", self.program, self.output.status)?;
        let stderr = String::from_utf8_lossy(&self.output.stderr);
        let stderr = stderr.trim();
        if !stderr.is_empty() {
            let shown: String = stderr.chars().take(500).collect();
            write!(f, ": {shown}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ExitError {}

/// A running (or exited, not yet reaped) child process.
pub struct Child {
    pid: u32,
    program: String,
    exit: Exit,
    /// Set once reaped.
    status: Option<ExitStatus>,
    grace: Duration,
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
    pub fn id(&self) -> u32 {
        self.pid
    }

    /// Waits for the child to exit and reaps it. A checkpoint; a cancelled wait leaves the child
    /// running (and unreaped), to be waited for again. Waiting again after an exit returns the
    /// same status.
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
    pub fn try_wait(&mut self) -> io::Result<Option<ExitStatus>> {
        if self.status.is_none() {
            self.status = self.exit.try_wait(self.pid)?;
        }
        Ok(self.status)
    }

    /// Waits for the child; if cancelled, [terminates](Child::terminate) it, then returns the
    /// cancellation.
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
    pub fn signal(&mut self, signal: Signal) -> io::Result<()> {
        if self.status.is_some() {
            return Ok(());
        }
        self.exit.signal(self.pid, signal)
    }

    /// Kills the child (`SIGKILL`) unless it has already been reaped. Does not wait.
    ///
    /// # Errors
    /// As [`signal`](Child::signal).
    pub fn kill(&mut self) -> io::Result<()> {
        self.signal(Signal::KILL)
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        if self.status.is_none() {
            match &self.exit {
                Exit::Pidfd(_) => kill_and_reap_in_background(self.pid),
                Exit::Thread(watch) => {
                    // The watching thread reaps it once it is dead.
                    let _ = watch.signal(self.pid, Signal::KILL);
                }
            }
        }
    }
}

/// Kills `pid` (ours, not yet reaped) and reaps it on a pool thread.
fn kill_and_reap_in_background(pid: u32) {
    // SAFETY: signalling a child we have not reaped: the pid cannot have been reused.
    unsafe { libc::kill(pid as libc::pid_t, libc::SIGKILL) };
    crate::thread::execute_detached(Box::new(move || {
        let _ = wait_blocking(pid);
    }));
}

/// How this module learns that a child exited.
enum Exit {
    /// A pidfd on the reactor: readable once the child has exited.
    Pidfd(AsyncFd<OwnedFd>),
    /// A helper thread blocked in `waitid` (no pidfd support).
    Thread(Arc<ThreadWatch>),
}

impl Exit {
    fn watch(pid: u32) -> io::Result<Exit> {
        match pidfd_open(pid) {
            Ok(fd) => Ok(Exit::Pidfd(AsyncFd::new(fd)?)),
            Err(e) if e.raw_os_error() == Some(libc::ENOSYS) => {
                Ok(Exit::Thread(ThreadWatch::start(pid)?))
            }
            Err(e) => Err(e),
        }
    }

    async fn wait(&self, pid: u32) -> io::Result<ExitStatus> {
        match self {
            Exit::Pidfd(fd) => {
                fd.read_with(|_| match try_reap(pid)? {
                    Some(status) => Ok(status),
                    None => Err(io::ErrorKind::WouldBlock.into()),
                })
                .await
            }
            Exit::Thread(watch) => watch.wait().await,
        }
    }

    fn try_wait(&self, pid: u32) -> io::Result<Option<ExitStatus>> {
        match self {
            Exit::Pidfd(_) => try_reap(pid),
            Exit::Thread(watch) => Ok(watch.lock().status),
        }
    }

    fn signal(&self, pid: u32, signal: Signal) -> io::Result<()> {
        match self {
            Exit::Pidfd(_) => send_signal(pid, signal),
            Exit::Thread(watch) => watch.signal(pid, signal),
        }
    }
}

/// Forces the thread fallback, so tests can exercise it on kernels with pidfds.
#[cfg(test)]
static NO_PIDFD: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

fn pidfd_open(pid: u32) -> io::Result<OwnedFd> {
    #[cfg(test)]
    if NO_PIDFD.load(std::sync::atomic::Ordering::SeqCst) {
        return Err(io::Error::from_raw_os_error(libc::ENOSYS));
    }
    // SAFETY: pidfd_open takes a pid and flags and returns a new descriptor or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid as libc::pid_t, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the syscall returned a fresh descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

fn send_signal(pid: u32, signal: Signal) -> io::Result<()> {
    // SAFETY: plain system call; callers guarantee `pid` is an unreaped child of ours.
    if unsafe { libc::kill(pid as libc::pid_t, signal.as_raw()) } < 0 {
        let err = io::Error::last_os_error();
        return Err(io::Error::new(
            err.kind(),
            format!("could not send {signal} to process {pid}: {err}"),
        ));
    }
    Ok(())
}

/// Reaps `pid` if it has exited.
fn try_reap(pid: u32) -> io::Result<Option<ExitStatus>> {
    let mut status = 0;
    loop {
        // SAFETY: waitpid writes the status into a local integer.
        let r = unsafe { libc::waitpid(pid as libc::pid_t, &mut status, libc::WNOHANG) };
        if r == 0 {
            return Ok(None);
        }
        if r > 0 {
            return Ok(Some(ExitStatus::from_raw(status)));
        }
        let err = io::Error::last_os_error();
        if err.kind() != io::ErrorKind::Interrupted {
            return Err(err);
        }
    }
}

/// Blocks until `pid` has exited and reaps it.
fn wait_blocking(pid: u32) -> io::Result<ExitStatus> {
    let mut status = 0;
    loop {
        // SAFETY: as in `try_reap`.
        let r = unsafe { libc::waitpid(pid as libc::pid_t, &mut status, 0) };
        if r > 0 {
            return Ok(ExitStatus::from_raw(status));
        }
        let err = io::Error::last_os_error();
        if err.kind() != io::ErrorKind::Interrupted {
            return Err(err);
        }
    }
}

/// The fallback watcher: a thread waits (without reaping, `WNOWAIT`) until the child exits,
/// then reaps it under the lock. `signal` sends only under the same lock while the child is
/// unreaped, so a signal can never reach a recycled pid.
struct ThreadWatch {
    state: Mutex<WatchState>,
    done: Condvar,
}

struct WatchState {
    status: Option<ExitStatus>,
    error: Option<io::ErrorKind>,
    waker: Option<Waker>,
}

impl ThreadWatch {
    fn start(pid: u32) -> io::Result<Arc<ThreadWatch>> {
        let watch = Arc::new(ThreadWatch {
            state: Mutex::new(WatchState {
                status: None,
                error: None,
                waker: None,
            }),
            done: Condvar::new(),
        });
        let on_thread = watch.clone();
        std::thread::Builder::new()
            .name(format!("trellis-wait-{pid}"))
            .spawn(move || on_thread.run(pid))?;
        Ok(watch)
    }

    fn lock(&self) -> MutexGuard<'_, WatchState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn run(&self, pid: u32) {
        let exited = loop {
            // SAFETY: waitid writes into a zeroed siginfo_t on our stack.
            let r = unsafe {
                let mut info: libc::siginfo_t = std::mem::zeroed();
                libc::waitid(
                    libc::P_PID,
                    pid as libc::id_t,
                    &mut info,
                    libc::WEXITED | libc::WNOWAIT,
                )
            };
            if r == 0 {
                break Ok(());
            }
            let err = io::Error::last_os_error();
            if err.kind() != io::ErrorKind::Interrupted {
                break Err(err);
            }
        };
        let mut state = self.lock();
        match exited.and_then(|()| try_reap(pid)) {
            Ok(Some(status)) => state.status = Some(status),
            Ok(None) => state.error = Some(io::ErrorKind::Other),
            Err(e) => state.error = Some(e.kind()),
        }
        let waker = state.waker.take();
        drop(state);
        self.done.notify_all();
        if let Some(w) = waker {
            w.wake();
        }
    }

    fn signal(&self, pid: u32, signal: Signal) -> io::Result<()> {
        let state = self.lock();
        if state.status.is_some() || state.error.is_some() {
            return Ok(());
        }
        send_signal(pid, signal)
    }

    async fn wait(&self) -> io::Result<ExitStatus> {
        let mut cancel = CancelWaiter::new();
        let mut blocked = false;
        let status = std::future::poll_fn(|cx| {
            if let Poll::Ready(c) = cancel.poll_cancelled("process::Child::wait", cx) {
                return Poll::Ready(Err(io::Error::from(c)));
            }
            let mut state = self.lock();
            if let Some(status) = state.status {
                return Poll::Ready(Ok(status));
            }
            if let Some(kind) = state.error {
                return Poll::Ready(Err(io::Error::new(kind, "could not wait for the child")));
            }
            state.waker = Some(cx.waker().clone());
            blocked = true;
            Poll::Pending
        })
        .await?;
        if !blocked {
            crate::checkpoint().await?;
        }
        Ok(status)
    }
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

fn pipe_file(fd: OwnedFd) -> io::Result<Arc<AsyncFd<File>>> {
    Ok(Arc::new(AsyncFd::new(File::from(fd))?))
}

/// The child's standard input: an async write stream. Dropping it (or
/// [`shutdown_write`](crate::io::WriteStream::shutdown_write)) closes the pipe, so the child
/// reads end of file.
pub struct ChildStdin {
    writer: Option<FdWriter<File>>,
}

/// The child's standard output: an async read stream.
pub struct ChildStdout {
    reader: FdReader<File>,
}

/// The child's standard error: an async read stream.
pub struct ChildStderr {
    reader: FdReader<File>,
}

impl ChildStdin {
    fn new(pipe: sp::ChildStdin) -> io::Result<ChildStdin> {
        Ok(ChildStdin {
            writer: Some(FdWriter::new(pipe_file(OwnedFd::from(pipe))?)),
        })
    }

    fn writer(&mut self) -> io::Result<&mut FdWriter<File>> {
        self.writer.as_mut().ok_or_else(|| {
            io::Error::new(io::ErrorKind::BrokenPipe, "the child's stdin was closed")
        })
    }

    /// Writes some bytes. A checkpoint; a cancelled write wrote nothing.
    pub async fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.writer()?.write(buf).await
    }

    /// Writes all of `buf` (see [`PartialWrite`](crate::io::PartialWrite) for cancellation).
    pub async fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        crate::io::WriteStream::write_all(self, buf).await
    }

    /// Closes the pipe: the child reads end of file.
    pub fn close(&mut self) {
        self.writer = None;
    }
}

impl crate::io::WriteStream for ChildStdin {
    async fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        ChildStdin::write(self, buf).await
    }

    async fn shutdown_write(&mut self) -> io::Result<()> {
        crate::checkpoint().await?;
        self.close();
        Ok(())
    }
}

impl futures_io::AsyncWrite for ChildStdin {
    fn poll_write(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut().writer() {
            Ok(w) => w.poll_write(cx, buf),
            Err(e) => Poll::Ready(Err(e)),
        }
    }

    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_close(
        self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> Poll<io::Result<()>> {
        self.get_mut().close();
        Poll::Ready(Ok(()))
    }
}

impl ChildStdout {
    fn new(pipe: sp::ChildStdout) -> io::Result<ChildStdout> {
        Ok(ChildStdout {
            reader: FdReader::new(pipe_file(OwnedFd::from(pipe))?),
        })
    }

    /// Reads some bytes; `Ok(0)` at end of file. A checkpoint; a cancelled read consumed
    /// nothing.
    pub async fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.reader.read(buf).await
    }
}

impl ChildStderr {
    fn new(pipe: sp::ChildStderr) -> io::Result<ChildStderr> {
        Ok(ChildStderr {
            reader: FdReader::new(pipe_file(OwnedFd::from(pipe))?),
        })
    }

    /// Reads some bytes; `Ok(0)` at end of file. A checkpoint.
    pub async fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.reader.read(buf).await
    }
}

fd_stream_impls!(read: ChildStdout, reader);
fd_stream_impls!(read: ChildStderr, reader);

macro_rules! debug_pipe {
    ($($ty:ident),*) => {$(
        impl fmt::Debug for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(stringify!($ty))
            }
        }
    )*};
}
debug_pipe!(ChildStdin, ChildStdout, ChildStderr);

#[cfg(test)]
mod tests {
    use super::*;

    /// The helper-thread fallback (used where pidfds are missing) waits, reaps and kills.
    #[test]
    fn thread_fallback_waits_reaps_and_kills() {
        NO_PIDFD.store(true, std::sync::atomic::Ordering::SeqCst);
        let rt = crate::Runtime::builder()
            .flavor(crate::Flavor::CurrentThread)
            .build()
            .unwrap();
        rt.block_on(async {
            let mut child = Command::new("sh").args(["-c", "exit 7"]).spawn().unwrap();
            assert!(matches!(child.exit, Exit::Thread(_)));
            assert_eq!(child.wait().await.unwrap().code(), Some(7));
            let mut sleeper = Command::new("sleep").arg("30").spawn().unwrap();
            sleeper.kill().unwrap();
            assert_eq!(sleeper.wait().await.unwrap().signal(), Some(libc::SIGKILL));
            // Killing a reaped child does nothing (its pid may belong to someone else now).
            sleeper.kill().unwrap();
        });
        NO_PIDFD.store(false, std::sync::atomic::Ordering::SeqCst);
    }
}
