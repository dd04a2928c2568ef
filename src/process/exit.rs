//! How the process module learns that a child exited: a pidfd on the reactor, or a helper
//! thread blocked in `waitid` where pidfds are unavailable; and the raw `waitid`/`kill` calls.

use std::io;
use std::os::fd::{FromRawFd, OwnedFd};
use std::os::unix::process::ExitStatusExt;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::task::{Poll, Waker};

use std::process::ExitStatus;

use crate::cancel::CancelWaiter;
use crate::io::AsyncFd;
use crate::signal::Signal;
use crate::state_lock::lock_blocking;

/// How this module learns that a child exited.
pub(super) enum Exit {
    /// A pidfd on the reactor: readable once the child has exited.
    Pidfd(AsyncFd<OwnedFd>),
    /// A helper thread blocked in `waitid` (no pidfd support).
    Thread(Arc<ThreadWatch>),
    /// Gone before it could be watched: the process ignores `SIGCHLD`, so the kernel reaped the
    /// child as soon as it exited, and no status is left (reported as 0, see `auto_reaped`).
    Reaped,
}

impl Exit {
    pub(super) fn watch(pid: u32) -> io::Result<Exit> {
        match pidfd_open(pid) {
            Ok(fd) => Ok(Exit::Pidfd(AsyncFd::new(fd)?)),
            // Not reaped by us, and an exited child we have not reaped stays a zombie that a
            // pidfd can still be opened for: so the kernel reaped it (`SIGCHLD` ignored).
            Err(e) if e.raw_os_error() == Some(libc::ESRCH) => Ok(Exit::Reaped),
            Err(e) if e.raw_os_error() == Some(libc::ENOSYS) => {
                Ok(Exit::Thread(ThreadWatch::start(pid)?))
            }
            Err(e) => Err(e),
        }
    }

    pub(super) async fn wait(&self, pid: u32) -> io::Result<ExitStatus> {
        match self {
            Exit::Pidfd(fd) => {
                fd.read_with(|_| match try_reap(pid)? {
                    Some(status) => Ok(status),
                    None => Err(io::ErrorKind::WouldBlock.into()),
                })
                .await
            }
            Exit::Thread(watch) => watch.wait().await,
            Exit::Reaped => {
                crate::checkpoint().await?;
                Ok(ExitStatus::from_raw(0))
            }
        }
    }

    pub(super) fn try_wait(&self, pid: u32) -> io::Result<Option<ExitStatus>> {
        match self {
            Exit::Pidfd(_) => try_reap(pid),
            Exit::Thread(watch) => Ok(watch.lock().status),
            Exit::Reaped => Ok(Some(ExitStatus::from_raw(0))),
        }
    }

    /// Sends `signal` to the child `pid`, or to its whole process group if it leads one
    /// (`group`), unless it was reaped.
    pub(super) fn signal(&self, pid: u32, group: bool, signal: Signal) -> io::Result<()> {
        match self {
            Exit::Pidfd(_) => send_signal(pid, group, signal),
            Exit::Thread(watch) => watch.signal(pid, group, signal),
            // Its pid may belong to another process by now.
            Exit::Reaped => Ok(()),
        }
    }
}

/// Forces the thread fallback, so tests can exercise it on kernels with pidfds.
#[cfg(test)]
pub(super) static NO_PIDFD: std::sync::atomic::AtomicBool =
    std::sync::atomic::AtomicBool::new(false);

pub(super) fn pidfd_open(pid: u32) -> io::Result<OwnedFd> {
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

/// Sends `signal` to `pid`, or to the process group it leads (`group`: `kill(-pid)`).
pub(super) fn send_signal(pid: u32, group: bool, signal: Signal) -> io::Result<()> {
    let target = if group {
        -(pid as libc::pid_t)
    } else {
        pid as libc::pid_t
    };
    // SAFETY: plain system call; callers guarantee `pid` is an unreaped child of ours, so
    // neither its pid nor the group it leads can belong to anyone else.
    if unsafe { libc::kill(target, signal.as_raw()) } < 0 {
        let err = io::Error::last_os_error();
        let whom = if group {
            "the process group of"
        } else {
            "process"
        };
        return Err(io::Error::new(
            err.kind(),
            format!("could not send {signal} to {whom} {pid}: {err}"),
        ));
    }
    Ok(())
}

/// What waiting for a child reports when the kernel already reaped it: `ECHILD`, which happens
/// when the process ignores `SIGCHLD` (`SIG_IGN` or `SA_NOCLDWAIT`: children are reaped as they
/// exit and their status is discarded). As trio and Python's `subprocess` do, that counts as a
/// successful exit, status 0: there is no status left to report, and an error would make every
/// wait fail in such a process.
fn auto_reaped(err: &io::Error) -> Option<ExitStatus> {
    (err.raw_os_error() == Some(libc::ECHILD)).then(|| ExitStatus::from_raw(0))
}

/// Reaps `pid` if it has exited (status 0 if the kernel reaped it already: see `auto_reaped`).
pub(super) fn try_reap(pid: u32) -> io::Result<Option<ExitStatus>> {
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
        if let Some(status) = auto_reaped(&err) {
            return Ok(Some(status));
        }
        if err.kind() != io::ErrorKind::Interrupted {
            return Err(err);
        }
    }
}

/// Blocks until `pid` has exited and reaps it (status 0 if the kernel reaped it: see
/// `auto_reaped`).
pub(super) fn wait_blocking(pid: u32) -> io::Result<ExitStatus> {
    let mut status = 0;
    loop {
        // SAFETY: as in `try_reap`.
        let r = unsafe { libc::waitpid(pid as libc::pid_t, &mut status, 0) };
        if r > 0 {
            return Ok(ExitStatus::from_raw(status));
        }
        let err = io::Error::last_os_error();
        if let Some(status) = auto_reaped(&err) {
            return Ok(status);
        }
        if err.kind() != io::ErrorKind::Interrupted {
            return Err(err);
        }
    }
}

/// The fallback watcher: a thread waits (without reaping, `WNOWAIT`) until the child exits,
/// then reaps it under the lock. `signal` sends only under the same lock while the child is
/// unreaped, so a signal can never reach a recycled pid.
pub(super) struct ThreadWatch {
    state: Mutex<WatchState>,
    done: Condvar,
}

pub(super) struct WatchState {
    status: Option<ExitStatus>,
    error: Option<io::ErrorKind>,
    waker: Option<Waker>,
}

impl ThreadWatch {
    pub(super) fn start(pid: u32) -> io::Result<Arc<ThreadWatch>> {
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

    pub(super) fn lock(&self) -> MutexGuard<'_, WatchState> {
        lock_blocking(&self.state)
    }

    pub(super) fn run(&self, pid: u32) {
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
            // The kernel reaped it as it exited (`SIGCHLD` ignored): `try_reap` below reports
            // that as status 0.
            if auto_reaped(&err).is_some() {
                break Ok(());
            }
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

    pub(super) fn signal(&self, pid: u32, group: bool, signal: Signal) -> io::Result<()> {
        let state = self.lock();
        if state.status.is_some() || state.error.is_some() {
            return Ok(());
        }
        send_signal(pid, group, signal)
    }

    pub(super) async fn wait(&self) -> io::Result<ExitStatus> {
        let mut cancel = CancelWaiter::new();
        let mut blocked = false;
        let status = std::future::poll_fn(|cx| {
            let exited = cancel.poll_attempt("process::Child::wait", cx, |cx| {
                let mut state = self.lock();
                if let Some(status) = state.status {
                    return Poll::Ready(Ok(status));
                }
                if let Some(kind) = state.error {
                    return Poll::Ready(Err(io::Error::new(kind, "could not wait for the child")));
                }
                state.waker = Some(cx.waker().clone());
                Poll::Pending
            });
            match exited {
                Poll::Ready(Ok(exit)) => Poll::Ready(exit),
                Poll::Ready(Err(c)) => Poll::Ready(Err(io::Error::from(c))),
                Poll::Pending => {
                    blocked = true;
                    Poll::Pending
                }
            }
        })
        .await?;
        if !blocked {
            crate::checkpoint().await?;
        }
        Ok(status)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::process::Command;

    /// The helper-thread fallback (used where pidfds are missing) waits, reaps and kills.
    #[test]
    pub(super) fn thread_fallback_waits_reaps_and_kills() {
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
            // With SIGCHLD ignored the kernel reaps the child; the thread reports status 0
            // (issue 16, item 6). No other test of this binary spawns processes.
            // SAFETY: SIG_IGN for SIGCHLD, and back to what it was below; no handler involved.
            let previous = unsafe { libc::signal(libc::SIGCHLD, libc::SIG_IGN) };
            let mut child = Command::new("true").spawn().unwrap();
            let status = child.wait().await;
            // SAFETY: as above.
            unsafe { libc::signal(libc::SIGCHLD, previous) };
            assert_eq!(status.unwrap().code(), Some(0));
        });
        NO_PIDFD.store(false, std::sync::atomic::Ordering::SeqCst);
    }
}
