//! Children of a process that ignores `SIGCHLD` are reaped by the kernel as they exit, so
//! `waitpid` reports `ECHILD` and no status is left to read. As trio and Python's `subprocess`
//! do, trellis then reports a successful exit (status 0) instead of an error.
//!
//! A test binary of its own: the `SIGCHLD` disposition is process-wide, and other process tests
//! running on parallel threads need their children's real exit statuses.

mod common;

use std::io;

use common::current_thread_on;
use trellis::process::{Command, Stdio};

/// Sets the `SIGCHLD` disposition, returning the previous one.
fn set_sigchld(handler: libc::sighandler_t) -> libc::sighandler_t {
    // SAFETY: SIG_IGN or SIG_DFL (or the disposition read back from this same call) for SIGCHLD;
    // no handler function is involved.
    unsafe { libc::signal(libc::SIGCHLD, handler) }
}

/// Issue 16, item 6: `Child::wait`, `try_wait` and `Command::status` with `SIGCHLD` ignored.
///
/// A child that is still running when it is spawned is watched (pidfd) and reaped by the kernel
/// when it exits; a child that exits at once may be gone before trellis can watch it. Both are
/// a successful exit.
#[test]
fn an_auto_reaped_child_exits_with_status_zero() {
    let previous = set_sigchld(libc::SIG_IGN);
    let out = current_thread_on(None).block_on(async {
        // Runs until its standard input closes, so it is watched while it runs.
        let mut child = Command::new("cat").stdin(Stdio::piped()).spawn()?;
        let running = child.try_wait()?;
        drop(child.stdin.take());
        let status = child.wait().await?;
        // Waiting again gives the same answer.
        let again = child.wait().await?;
        let polled = child.try_wait()?;
        // Exit at once: some are gone before they are watched, whichever way it goes.
        let mut quick = Vec::new();
        for _ in 0..10 {
            quick.push(Command::new("true").status().await?.code());
        }
        Ok::<_, io::Error>((running, status, again, polled, quick))
    });
    set_sigchld(previous);
    let (running, status, again, polled, quick) = out.unwrap();
    assert_eq!(running, None);
    assert!(status.success(), "{status}");
    assert_eq!(status.code(), Some(0));
    assert_eq!(again, status);
    assert_eq!(polled, Some(status));
    assert_eq!(quick, vec![Some(0); 10]);
}
