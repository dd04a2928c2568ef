//! Tools for testing code that runs on trellis: a mock clock, a way to wait until every task
//! is blocked, a sequencer that forces an order of steps across tasks, assertions on where
//! code checkpoints, a harness that cancels an operation at each of its checkpoints in turn
//! ([`CancelInjection`]), a runner that tries many task orders ([`explore_schedules`]),
//! in-memory streams and a conformance check for streams.
//!
//! The common case: run the code under test on a [`MockClock`] with autojump, so that timeouts
//! and sleeps take no real time and the test is deterministic.
//!
//! ```
//! use std::time::{Duration, Instant};
//! use trellis::testing::MockClock;
//!
//! let clock = MockClock::new();
//! clock.set_autojump_threshold(Some(Duration::ZERO));
//! let rt = trellis::Runtime::builder()
//!     .flavor(trellis::Flavor::CurrentThread)
//!     .clock(clock)
//!     .build()
//!     .unwrap();
//! let real_start = Instant::now();
//! rt.block_on(async {
//!     // The code under test gives up after 30 s of (virtual) time.
//!     let out = trellis::move_on_after(Duration::from_secs(30), trellis::sleep_forever()).await;
//!     assert!(out.is_none());
//! });
//! assert!(real_start.elapsed() < Duration::from_secs(10));
//! ```

mod checkpoints;
mod inject;
mod memory_stream;
mod mock_clock;
mod schedules;
mod sequencer;
mod stream_check;

pub use checkpoints::{assert_checkpoints, assert_no_checkpoints, AssertCheckpoints};
pub use inject::{CancelInjection, Ending, InjectFailure, InjectMode, InjectReport};
pub use memory_stream::{
    memory_stream_pair, memory_stream_pair_with_capacity, MemoryReadHalf, MemoryStream,
    MemoryWriteHalf, DEFAULT_CAPACITY as MEMORY_STREAM_CAPACITY,
};
pub use mock_clock::MockClock;
pub use schedules::explore_schedules;
pub use sequencer::{Sequencer, Turn};
pub use stream_check::check_two_way_stream;

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use crate::cancel::{outside_runtime, CancelWaiter};
use crate::error::Cancelled;
use crate::runtime::context;

/// Waits until every other task is blocked (trio's `wait_all_tasks_blocked`): all workers idle,
/// nothing queued. Use it to let a test reach a steady state before asserting.
///
/// ```
/// use trellis::testing::wait_all_tasks_blocked;
///
/// trellis::run(async {
///     trellis::nursery(|n| async move {
///         let event = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
///         let flag = event.clone();
///         n.spawn(async move {
///             flag.store(true, std::sync::atomic::Ordering::SeqCst);
///             Ok(())
///         })?;
///         wait_all_tasks_blocked().await?;
///         assert!(event.load(std::sync::atomic::Ordering::SeqCst));
///         Ok::<_, trellis::Error>(())
///     })
///     .await
///     .unwrap();
/// });
/// ```
pub fn wait_all_tasks_blocked() -> WaitAllTasksBlocked {
    wait_all_tasks_blocked_for(Duration::ZERO)
}

/// Like [`wait_all_tasks_blocked`], but the tasks must have stayed blocked for `cushion` of real
/// time. When several tasks wait, those with the smallest cushion wake first, in the order they
/// started waiting. While any task waits here, a mock clock does not autojump (as in trio): the
/// waiters see the state before time moves on.
///
/// ```
/// use std::sync::atomic::{AtomicU32, Ordering};
/// use std::sync::Arc;
/// use std::time::Duration;
/// use trellis::testing::wait_all_tasks_blocked_for;
///
/// trellis::run(async {
///     let steps = Arc::new(AtomicU32::new(0));
///     trellis::nursery(|n| {
///         let steps = steps.clone();
///         async move {
///             let s = steps.clone();
///             n.spawn(async move {
///                 for _ in 0..3 {
///                     s.fetch_add(1, Ordering::SeqCst);
///                     trellis::checkpoint().await?;
///                 }
///                 Ok(())
///             })?;
///             // Returns once the other task has finished and nothing has run for 1 ms.
///             wait_all_tasks_blocked_for(Duration::from_millis(1)).await?;
///             assert_eq!(steps.load(Ordering::SeqCst), 3);
///             Ok::<_, trellis::Error>(())
///         }
///     })
///     .await
///     .unwrap();
/// });
/// ```
pub fn wait_all_tasks_blocked_for(cushion: Duration) -> WaitAllTasksBlocked {
    WaitAllTasksBlocked {
        cushion,
        key: None,
        cancel: CancelWaiter::new(),
    }
}

/// Future of [`wait_all_tasks_blocked`]. A checkpoint: fails if the scope is cancelled.
///
/// ```
/// use trellis::testing::{wait_all_tasks_blocked, WaitAllTasksBlocked};
///
/// trellis::run(async {
///     // Cancelled like any checkpoint: in an already-cancelled scope it ends at once, and the
///     // scope absorbs its own cancellation.
///     let scope = trellis::CancelScope::new();
///     scope.cancel();
///     let waiting: WaitAllTasksBlocked = wait_all_tasks_blocked();
///     assert!(scope.run(waiting).await.is_none());
/// });
/// ```
#[must_use = "futures do nothing unless awaited"]
pub struct WaitAllTasksBlocked {
    cushion: Duration,
    key: Option<(Duration, u64)>,
    cancel: CancelWaiter,
}

impl Future for WaitAllTasksBlocked {
    type Output = Result<(), Cancelled>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = &mut *self;
        let Some(rt) = context::try_current() else {
            outside_runtime("testing::wait_all_tasks_blocked");
        };
        if let Poll::Ready(c) = this
            .cancel
            .poll_cancelled("testing::wait_all_tasks_blocked", cx)
        {
            if let Some(key) = this.key.take() {
                rt.remove_idle_waiter(key);
            }
            return Poll::Ready(Err(c));
        }
        match this.key {
            None => {
                this.key = Some(rt.add_idle_waiter(this.cushion, cx.waker()));
                Poll::Pending
            }
            Some(key) => {
                if rt.update_idle_waiter(key, cx.waker()) {
                    Poll::Pending
                } else {
                    this.key = None;
                    this.cancel.clear();
                    Poll::Ready(Ok(()))
                }
            }
        }
    }
}

impl Drop for WaitAllTasksBlocked {
    fn drop(&mut self) {
        if let (Some(key), Some(rt)) = (self.key.take(), context::try_current()) {
            rt.remove_idle_waiter(key);
        }
    }
}
