//! Child processes: spawning with piped standard streams as async streams, waiting for exit,
//! and what a cancellation does to a child (trio's `run_process` / `open_process`).
//!
//! The common case, running a program to completion and collecting what it printed:
//!
//! ```
//! use trellis::process::Command;
//!
//! trellis::run(async {
//!     // Fails with an `ExitError` inside the `io::Error` if the exit status is not success.
//!     let out = Command::new("printf").arg("%s-%s").args(["a", "b"]).output_checked().await?;
//!     assert_eq!(out.stdout, b"a-b");
//!     Ok::<_, std::io::Error>(())
//! })
//! .unwrap();
//! ```
//!
//! With piped standard streams, a [`Child`] is talked to while it runs:
//!
//! ```
//! use trellis::process::{Command, Stdio};
//!
//! trellis::run(async {
//!     let mut child = Command::new("tr")
//!         .args(["a-z", "A-Z"])
//!         .stdin(Stdio::piped())
//!         .stdout(Stdio::piped())
//!         .spawn()?;
//!     let mut stdin = child.stdin.take().unwrap();
//!     stdin.write_all(b"shout\n").await?;
//!     drop(stdin); // end of file for `tr`
//!     let out = child.wait_with_output().await?;
//!     assert_eq!(out.stdout, b"SHOUT\n");
//!     Ok::<_, std::io::Error>(())
//! })
//! .unwrap();
//! ```
//!
//! - [`Command`] builds a process like `std::process::Command` (it wraps one).
//!   [`spawn`](Command::spawn) gives a [`Child`] whose piped `stdin`/`stdout`/`stderr` are async
//!   streams; [`status`](Command::status), [`output`](Command::output) and
//!   [`output_checked`](Command::output_checked) run a process to completion.
//! - Pipelines (`a | b`): a child's pipe end becomes another child's standard stream with
//!   [`ChildStdout::into_stdio`] (or `Stdio::try_from`), so the processes talk directly and
//!   this one copies nothing; the end is taken off the reactor and made blocking again first.
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
//! - A process that ignores `SIGCHLD` (`SIG_IGN`) has its children reaped by the kernel, which
//!   keeps no exit status: waiting for such a child reports status 0 once it has exited, as
//!   trio and Python's `subprocess` do, rather than failing with `ECHILD`.

mod child;
mod command;
mod exit;
mod pipes;

pub use child::Child;
pub use command::{Command, ExitError, DEFAULT_GRACE_PERIOD};
pub use pipes::{ChildStderr, ChildStdin, ChildStdout};
pub use std::process::{ExitStatus, Output, Stdio};
