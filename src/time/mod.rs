//! Time: the runtime's clock, and sleeping.
//!
//! Every sleep is a timer-store entry that is removed when the sleep ends or is dropped, so a
//! cancelled sleep leaves nothing behind. Sleeping is a checkpoint: it fails with `Cancelled` as
//! soon as the enclosing scope is cancelled, and `sleep(Duration::ZERO)` still yields.

pub(crate) mod clock;
mod interval;
mod timeout;
pub(crate) mod timers;

pub use interval::{interval, Interval};
pub use timeout::{timeout, timeout_at, Timeout};

use std::convert::Infallible;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use crate::cancel::{outside_runtime, CancelWaiter, YieldOnce};
use crate::error::Cancelled;
use crate::runtime::{context, Shared};
use timers::{TimerKey, TimerTarget};

/// The current time on the runtime's clock (the mock clock's in tests).
///
/// ```
/// use std::time::Duration;
/// use trellis::testing::MockClock;
///
/// let clock = MockClock::new();
/// clock.set_autojump_threshold(Some(Duration::ZERO));
/// let rt = trellis::Runtime::builder()
///     .flavor(trellis::Flavor::CurrentThread)
///     .clock(clock)
///     .build()
///     .unwrap();
/// rt.block_on(async {
///     let before = trellis::now();
///     trellis::sleep(Duration::from_secs(5)).await.unwrap();
///     assert_eq!(trellis::now() - before, Duration::from_secs(5)); // exact on a mock clock
/// });
/// ```
///
/// # Panics
/// Outside a runtime (R2).
pub fn now() -> Instant {
    context::fresh_now().unwrap_or_else(|| outside_runtime("now"))
}

/// Sleeps for `duration` on the runtime's clock. A checkpoint: fails with `Cancelled` when the
/// enclosing scope is cancelled, and yields even for a zero duration. A duration too long to add
/// to the clock's time (`Duration::MAX`) sleeps until cancelled, like [`sleep_forever`].
///
/// ```
/// use std::time::Duration;
/// trellis::run(async {
///     let start = trellis::now();
///     trellis::sleep(Duration::from_millis(2)).await.unwrap();
///     assert!(trellis::now() - start >= Duration::from_millis(2));
/// });
/// ```
pub fn sleep(duration: Duration) -> Sleep {
    Sleep::new(SleepUntil::After(duration))
}

/// Sleeps until the runtime's clock reads `deadline` (a deadline in the past still yields).
///
/// ```
/// use std::time::Duration;
/// use trellis::testing::MockClock;
///
/// let clock = MockClock::new();
/// clock.set_autojump_threshold(Some(Duration::ZERO));
/// let rt = trellis::Runtime::builder()
///     .flavor(trellis::Flavor::CurrentThread)
///     .clock(clock)
///     .build()
///     .unwrap();
/// rt.block_on(async {
///     let wake_at = trellis::now() + Duration::from_secs(30);
///     trellis::sleep_until(wake_at).await.unwrap();
///     assert!(trellis::now() >= wake_at);
///     // Already past: returns after one yield.
///     trellis::sleep_until(wake_at).await.unwrap();
/// });
/// ```
pub fn sleep_until(deadline: Instant) -> Sleep {
    Sleep::new(SleepUntil::At(deadline))
}

/// Sleeps until cancelled. Its output can only be `Err(Cancelled)`.
///
/// ```
/// trellis::run(async {
///     trellis::nursery(|n| async move {
///         // A task that only waits for its nursery to end it.
///         n.spawn(async {
///             trellis::sleep_forever().await?;
///             Ok(())
///         })?;
///         trellis::testing::wait_all_tasks_blocked().await?;
///         n.cancel();
///         Ok::<_, trellis::Error>(())
///     })
///     .await
///     .unwrap();
/// });
/// ```
pub fn sleep_forever() -> SleepForever {
    SleepForever {
        cancel: CancelWaiter::new(),
    }
}

/// Future of [`sleep_forever`]: only a cancel registration (8 bytes), with no deadline and no
/// timer, because a task that waits to be cancelled (a service, a parked helper) is the most
/// common idle task and its size is part of every such task's.
///
/// ```
/// use trellis::{CancelScope, SleepForever};
///
/// trellis::run(async {
///     let scope = CancelScope::new();
///     scope.cancel();
///     let forever: SleepForever = trellis::sleep_forever();
///     // It ends only by cancellation, here absorbed by the scope.
///     assert!(scope.run(forever).await.is_none());
/// });
/// ```
#[must_use = "futures do nothing unless awaited"]
pub struct SleepForever {
    cancel: CancelWaiter,
}

impl Future for SleepForever {
    type Output = Result<Infallible, Cancelled>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        // Either cancelled now, or registered so that a cancellation wakes it: no schedule
        // point is owed (it blocks), and nothing else can end it.
        self.cancel.poll_cancelled("sleep_forever", cx).map(Err)
    }
}

impl fmt::Debug for SleepForever {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SleepForever").finish_non_exhaustive()
    }
}

/// What a [`Sleep`] waits for. A duration becomes a deadline at the first poll, in place: a
/// sleeping task's size is a benchmarked figure, so the deadline has no field of its own.
#[derive(Clone, Copy)]
enum SleepUntil {
    /// `sleep(duration)`, not polled yet.
    After(Duration),
    /// `sleep(duration)` once polled: the deadline it computed.
    AfterAt(Instant),
    /// `sleep_until(deadline)`.
    At(Instant),
}

/// Future of [`sleep`] and [`sleep_until`].
///
/// ```
/// use std::time::Duration;
/// use trellis::Sleep;
///
/// trellis::run(async {
///     let nap: Sleep = trellis::sleep(Duration::from_millis(1));
///     // Cancelled before it ends: `Err(Cancelled)`, absorbed by the scope.
///     let scope = trellis::CancelScope::new();
///     scope.cancel();
///     assert!(scope.run(nap).await.is_none());
/// });
/// ```
#[must_use = "futures do nothing unless awaited"]
pub struct Sleep {
    until: SleepUntil,
    timer: Option<TimerKey>,
    cancel: CancelWaiter,
    yield_once: YieldOnce,
}

impl Sleep {
    fn new(until: SleepUntil) -> Self {
        Sleep {
            until,
            timer: None,
            cancel: CancelWaiter::new(),
            yield_once: YieldOnce::default(),
        }
    }

    fn remove_timer(&mut self) {
        if let Some(key) = self.timer.take() {
            context::with_shared(|rt| rt.map(|rt| rt.driver.timers.remove(key)));
        }
    }
}

impl Future for Sleep {
    type Output = Result<(), Cancelled>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = &mut *self;
        // Name the function the caller used, for the panic outside a runtime (R2).
        let function = match this.until {
            SleepUntil::After(_) | SleepUntil::AfterAt(_) => "sleep",
            SleepUntil::At(_) => "sleep_until",
        };
        if let Poll::Ready(c) = this.cancel.poll_cancelled(function, cx) {
            this.remove_timer();
            return Poll::Ready(Err(c));
        }
        context::with_shared(|rt| {
            let rt = rt.expect("poll_cancelled checked the runtime");
            this.poll_timer(rt, cx)
        })
    }
}

impl Sleep {
    fn poll_timer(&mut self, rt: &Shared, cx: &mut Context<'_>) -> Poll<Result<(), Cancelled>> {
        let this = self;
        let deadline = match this.until {
            // A fresh reading (see `deadline_after`); a duration too long to add is forever.
            SleepUntil::After(d) => {
                let deadline = rt.driver.fresh_now().checked_add(d);
                if let Some(t) = deadline {
                    this.until = SleepUntil::AfterAt(t);
                }
                deadline
            }
            SleepUntil::AfterAt(t) | SleepUntil::At(t) => Some(t),
        };
        match deadline {
            Some(d) if d <= rt.driver.now() => {
                if let Some(key) = this.timer.take() {
                    rt.driver.timers.remove(key);
                }
                if this.yield_once.poll_yield(cx).is_pending() {
                    return Poll::Pending;
                }
                this.cancel.clear();
                Poll::Ready(Ok(()))
            }
            Some(d) => {
                this.yield_once.blocked();
                let registered = match this.timer {
                    Some(key) => rt.driver.timers.update_waker(key, cx.waker()),
                    None => false,
                };
                if !registered {
                    this.timer = Some(rt.insert_timer(d, TimerTarget::Wake(cx.waker().clone())));
                }
                Poll::Pending
            }
            None => {
                this.yield_once.blocked();
                Poll::Pending
            }
        }
    }
}

impl Drop for Sleep {
    fn drop(&mut self) {
        self.remove_timer();
    }
}
