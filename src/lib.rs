//! # trellis
//!
//! A structured-concurrency async runtime in the style of Python's trio.
//!
//! - Every task lives in a [`nursery`]; a nursery does not complete until all its tasks have, so
//!   no task outlives the code that started it. Errors and panics of tasks propagate to the
//!   nursery's owner.
//! - [`CancelScope`]s cancel a region of code, by call or by deadline; cancellation is
//!   level-triggered and cooperative: every runtime operation is a *checkpoint* that fails with
//!   [`Cancelled`] while its scope is cancelled, and a scope absorbs its own cancellation.
//! - Its own scheduler (on `async-task` and `concurrent-queue`) and I/O reactor (on `polling`),
//!   with a mock clock for deterministic tests.
//!
//! ```
//! use std::time::Duration;
//!
//! trellis::run(async {
//!     let result = trellis::nursery(|n| async move {
//!         n.spawn(async {
//!             // Cancelled after 10 ms: sleep returns Err(Cancelled), the scope absorbs it.
//!             let out = trellis::move_on_after(Duration::from_millis(10), async {
//!                 trellis::sleep(Duration::from_secs(60)).await
//!             })
//!             .await;
//!             assert!(out.is_none());
//!             Ok(())
//!         })?;
//!         Ok::<_, trellis::Error>("done")
//!     })
//!     .await;
//!     assert_eq!(result.unwrap(), "done");
//! });
//! ```
//!
//! The contract these types implement is numbered (R*, N*, C*) in `docs/design.md`; tests cite
//! the rules they check.

#![warn(missing_docs)]

mod asymmetric_fence;
mod cancel;
pub mod channel;
pub mod compat;
mod error;
pub mod fs;
pub mod io;
pub mod lowlevel;
pub mod net;
mod nursery;
pub mod process;
mod race;
mod runtime;
pub mod signal;
mod state_lock;
pub mod sync;
pub(crate) mod task;
pub mod testing;
pub mod thread;
mod time;
#[cfg(feature = "tls")]
pub mod tls;

pub use cancel::{
    cancel_shielded_checkpoint, checkpoint, checkpoint_if_cancelled, current_effective_deadline,
    fail_after, fail_at, move_on_after, move_on_at, CancelScope, Checkpoint, FailAt, Scoped,
};
pub use error::{AsCancelled, CancelReason, Cancelled, Error, NurseryError, Outcome, TimedOut};
pub use nursery::{nursery, supervisor, Nursery, NurseryFuture, TaskStatus};
pub use race::{race, Race, Raced};
pub use runtime::{
    run, Builder, CtrlC, Flavor, Runtime, DEFAULT_THREAD_STACK_SIZE, DEFAULT_YIELD_BUDGET,
};
pub use task::{TaskHandle, TaskLocal, TaskLocalError, TaskLocalFuture};
pub use time::clock::{Clock, SystemClock};
pub use time::{
    interval, now, sleep, sleep_forever, sleep_until, timeout, timeout_at, Interval, Sleep,
    SleepForever, Timeout,
};
#[cfg(feature = "macros")]
#[doc = include_str!("testing/test_attribute.md")]
#[doc(inline)]
pub use trellis_macros::test as async_test;

/// The README's example, compiled and run as a doc test so it cannot rot.
#[doc = include_str!("../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;

/// A guide to async Rust the trellis way, from zero; its chapters live in `docs/guide/` and
/// every code block in them is compiled and run as a doc test.
#[cfg(any(doc, doctest))]
pub mod guide {
    #[doc = include_str!("../docs/guide/01-what-async-is.md")]
    pub mod ch01_what_async_is {}
    #[doc = include_str!("../docs/guide/02-first-program.md")]
    pub mod ch02_first_program {}
    #[doc = include_str!("../docs/guide/03-tasks-and-nurseries.md")]
    pub mod ch03_tasks_and_nurseries {}
    #[doc = include_str!("../docs/guide/04-errors-and-panics.md")]
    pub mod ch04_errors_and_panics {}
    #[doc = include_str!("../docs/guide/05-cancellation.md")]
    pub mod ch05_cancellation {}
    #[doc = include_str!("../docs/guide/06-time-and-the-mock-clock.md")]
    pub mod ch06_time_and_the_mock_clock {}
    #[doc = include_str!("../docs/guide/07-start-and-services.md")]
    pub mod ch07_start_and_services {}
    #[doc = include_str!("../docs/guide/08-sync-primitives.md")]
    pub mod ch08_sync_primitives {}
    #[doc = include_str!("../docs/guide/09-channels-and-pipelines.md")]
    pub mod ch09_channels_and_pipelines {}
    #[doc = include_str!("../docs/guide/10-streams-and-sockets.md")]
    pub mod ch10_streams_and_sockets {}
    #[doc = include_str!("../docs/guide/11-subprocesses.md")]
    pub mod ch11_subprocesses {}
    #[doc = include_str!("../docs/guide/12-threads.md")]
    pub mod ch12_threads {}
    #[doc = include_str!("../docs/guide/13-signals-and-ctrl-c.md")]
    pub mod ch13_signals_and_ctrl_c {}
    #[doc = include_str!("../docs/guide/14-files.md")]
    pub mod ch14_files {}
    #[doc = include_str!("../docs/guide/15-testing.md")]
    pub mod ch15_testing {}
    #[doc = include_str!("../docs/guide/16-foreign-futures.md")]
    pub mod ch16_foreign_futures {}
    #[doc = include_str!("../docs/guide/17-architecture.md")]
    pub mod ch17_architecture {}
}
