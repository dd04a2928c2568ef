//! Children of a process that ignores `SIGCHLD` are reaped by the kernel as they exit, so
//! `waitpid` reports `ECHILD` and no status is left to read. As trio and Python's `subprocess`
//! do, trellis then reports a successful exit (status 0) instead of an error.
//!
//! A test binary of its own: the `SIGCHLD` disposition is process-wide, and other process tests
//! running on parallel threads need their children's real exit statuses.

mod common;

use std::io;

use common::current_thread_on;
use trellis::process::Command;

/// Sets the `SIGCHLD` disposition, returning the previous one.
fn set_sigchld(handler: libc::sighandler_t) -> libc::sighandler_t {
    // SAFETY: SIG_IGN or SIG_DFL (or the disposition read back from this same call) for SIGCHLD;
    // no handler function is involved.
    unsafe { libc::signal(libc::SIGCHLD, handler) }
}

/// Issue 16, item 6: `Child::wait`, `try_wait` and `Command::status` with `SIGCHLD` ignored.
#[test]
fn an_auto_reaped_child_exits_with_status_zero() {
    let previous = set_sigchld(libc::SIG_IGN);
    let out = current_thread_on(None).block_on(async {
        let mut child = Command::new("true").spawn()?;
        let status = child.wait().await?;
        // Waiting again gives the same answer.
        let again = child.wait().await?;
        let polled = child.try_wait()?;
        let run = Command::new("true").status().await?;
        Ok::<_, io::Error>((status, again, polled, run))
    });
    set_sigchld(previous);
    let (status, again, polled, run) = out.unwrap();
    assert!(status.success(), "{status}");
    assert_eq!(status.code(), Some(0));
    assert_eq!(again, status);
    assert_eq!(polled, Some(status));
    assert_eq!(run.code(), Some(0));
}
