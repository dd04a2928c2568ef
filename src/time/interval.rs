//! Ticks at a fixed period.

use std::time::{Duration, Instant};

use super::clock::saturating_add;
use super::{now, sleep_until};
use crate::error::Cancelled;

/// Ticks every `period`, the first tick at once: `interval.tick().await` returns when the next
/// tick is due. Ticks keep to the schedule `start + k * period` whatever the time spent between
/// calls. A caller that falls behind gets the late tick once, at once, and the ticks missed
/// meanwhile are skipped rather than delivered in a burst. A zero period ticks at every call
/// (each still a checkpoint).
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
///     let start = trellis::now();
///     let mut every_second = trellis::interval(Duration::from_secs(1));
///     for k in 0..3 {
///         let at = every_second.tick().await?;
///         assert_eq!(at - start, Duration::from_secs(k));
///     }
///     Ok::<_, trellis::Cancelled>(())
/// })
/// .unwrap();
/// ```
///
/// # Panics
/// Outside a runtime (the start is the runtime clock's "now").
pub fn interval(period: Duration) -> Interval {
    Interval {
        next: now(),
        period,
    }
}

/// See [`interval`].
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
///     let mut interval: trellis::Interval = trellis::interval(Duration::from_secs(2));
///     assert_eq!(interval.period(), Duration::from_secs(2));
///     let first = interval.tick().await.unwrap(); // at once
///     let second = interval.tick().await.unwrap();
///     assert_eq!(second - first, Duration::from_secs(2));
/// });
/// ```
#[derive(Debug)]
pub struct Interval {
    /// When the next tick is due.
    next: Instant,
    period: Duration,
}

impl Interval {
    /// Waits for the next tick and returns its scheduled time. A checkpoint. Cancel-safe: a
    /// cancelled `tick` consumes no tick.
    ///
    /// # Errors
    /// [`Cancelled`] if the enclosing scope is cancelled.
    ///
    /// ```
    /// use std::time::Duration;
    ///
    /// trellis::run(async {
    ///     let mut ticks = trellis::interval(Duration::from_millis(1));
    ///     let first = ticks.tick().await?;
    ///     let second = ticks.tick().await?;
    ///     assert!(second > first); // on the schedule, one or more periods later
    ///     Ok::<_, trellis::Cancelled>(())
    /// })
    /// .unwrap();
    /// ```
    pub async fn tick(&mut self) -> Result<Instant, Cancelled> {
        sleep_until(self.next).await?;
        let due = self.next;
        let mut next = saturating_add(due, self.period);
        let current = now();
        if next <= current && !self.period.is_zero() {
            // Missed ticks are skipped: the next one is the first on the schedule after now.
            let behind = current.duration_since(due).as_nanos() / self.period.as_nanos();
            let skip = u32::try_from(behind).unwrap_or(u32::MAX);
            next = saturating_add(due, self.period.saturating_mul(skip.saturating_add(1)));
        }
        self.next = next;
        Ok(due)
    }

    /// The period.
    ///
    /// ```
    /// # trellis::run(async {
    /// let ticks = trellis::interval(std::time::Duration::from_secs(2));
    /// assert_eq!(ticks.period(), std::time::Duration::from_secs(2));
    /// # });
    /// ```
    pub fn period(&self) -> Duration {
        self.period
    }
}
