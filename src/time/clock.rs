//! Clocks: where the runtime reads the time, and how long it may wait in real time.
//!
//! Everything in trellis speaks [`std::time::Instant`]. A clock maps its own notion of "now" onto
//! `Instant`s; the system clock is the identity, [`MockClock`](crate::testing::MockClock) is a
//! fixed origin plus a virtual offset. The driver asks the clock how long in *real* time it may
//! sleep before a virtual deadline arrives, and, when every task is blocked, whether it should
//! jump time forward instead (autojump).
//!
//! ```
//! use std::time::Duration;
//! use trellis::testing::MockClock;
//! use trellis::Clock;
//!
//! // A runtime on a mock clock that jumps to the next deadline as soon as every task waits:
//! // an hour-long sleep finishes at once in real time.
//! let clock = MockClock::new();
//! clock.set_autojump_threshold(Some(Duration::ZERO));
//! let rt = trellis::Runtime::builder()
//!     .flavor(trellis::Flavor::CurrentThread)
//!     .clock(clock.clone())
//!     .build()
//!     .unwrap();
//! let start = clock.now();
//! rt.block_on(async {
//!     trellis::sleep(Duration::from_secs(3600)).await.unwrap();
//! });
//! assert!(clock.now() - start >= Duration::from_secs(3600));
//! ```

use std::fmt;
use std::time::{Duration, Instant};

/// A source of time for a runtime. Use [`SystemClock`] (the default) or
/// [`testing::MockClock`](crate::testing::MockClock).
///
/// A clock of your own implements the two required methods; this one runs at real speed but
/// starts a day ahead of the system clock.
///
/// ```
/// use std::time::{Duration, Instant};
/// use trellis::Clock;
///
/// #[derive(Debug)]
/// struct DayAhead;
///
/// impl Clock for DayAhead {
///     fn now(&self) -> Instant {
///         Instant::now() + Duration::from_secs(86_400)
///     }
///     fn real_duration_until(&self, deadline: Instant) -> Option<Duration> {
///         Some(deadline.saturating_duration_since(self.now()))
///     }
/// }
///
/// let rt = trellis::Runtime::builder()
///     .flavor(trellis::Flavor::CurrentThread)
///     .clock(DayAhead)
///     .build()
///     .unwrap();
/// let now = rt.block_on(async { trellis::now() });
/// assert!(now > Instant::now() + Duration::from_secs(86_000));
/// ```
pub trait Clock: Send + Sync + fmt::Debug + 'static {
    /// The current time on this clock.
    ///
    /// ```
    /// use std::time::Duration;
    /// use trellis::testing::MockClock;
    /// use trellis::Clock;
    ///
    /// let clock = MockClock::new();
    /// let before = clock.now();
    /// clock.jump(Duration::from_secs(5));
    /// assert_eq!(clock.now() - before, Duration::from_secs(5));
    /// ```
    fn now(&self) -> Instant;

    /// How long, in real time, until this clock reads `deadline`; `None` if that cannot be known
    /// (a stopped mock clock), in which case the runtime waits for something else to happen.
    ///
    /// ```
    /// use std::time::Duration;
    /// use trellis::testing::MockClock;
    /// use trellis::{Clock, SystemClock};
    ///
    /// let deadline = SystemClock.now() + Duration::from_secs(10);
    /// let real = SystemClock.real_duration_until(deadline).unwrap();
    /// assert!(real <= Duration::from_secs(10));
    ///
    /// // A stopped mock clock never reaches a deadline by itself.
    /// let mock = MockClock::new();
    /// assert_eq!(mock.real_duration_until(mock.now() + Duration::from_secs(1)), None);
    /// ```
    fn real_duration_until(&self, deadline: Instant) -> Option<Duration>;

    /// How long every task must have been blocked before the runtime may jump this clock to the
    /// next deadline; `None` (the default) never jumps.
    ///
    /// ```
    /// use std::time::Duration;
    /// use trellis::testing::MockClock;
    /// use trellis::{Clock, SystemClock};
    ///
    /// assert_eq!(SystemClock.autojump_threshold(), None);
    /// let mock = MockClock::new();
    /// mock.set_autojump_threshold(Some(Duration::from_millis(1)));
    /// assert_eq!(Clock::autojump_threshold(&mock), Some(Duration::from_millis(1)));
    /// ```
    fn autojump_threshold(&self) -> Option<Duration> {
        None
    }

    /// Moves this clock forward to `deadline` if it is still in the future. Called by the runtime
    /// only when [`autojump_threshold`](Clock::autojump_threshold) is `Some`.
    ///
    /// ```
    /// use std::time::Duration;
    /// use trellis::testing::MockClock;
    /// use trellis::Clock;
    ///
    /// let clock = MockClock::new();
    /// let target = clock.now() + Duration::from_secs(30);
    /// clock.autojump_to(target);
    /// assert_eq!(clock.now(), target);
    /// // A deadline already passed leaves the clock where it is.
    /// clock.autojump_to(target - Duration::from_secs(10));
    /// assert_eq!(clock.now(), target);
    /// ```
    fn autojump_to(&self, deadline: Instant) {
        let _ = deadline;
    }
}

/// The operating system's monotonic clock.
///
/// ```
/// use std::time::Instant;
/// use trellis::{Clock, SystemClock};
///
/// let before = Instant::now();
/// assert!(SystemClock.now() >= before);
///
/// // It is the default, and may also be named explicitly.
/// let rt = trellis::Runtime::builder()
///     .flavor(trellis::Flavor::CurrentThread)
///     .clock(SystemClock)
///     .build()
///     .unwrap();
/// assert!(rt.block_on(async { trellis::now() }) >= before);
/// ```
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Instant {
        Instant::now()
    }

    fn real_duration_until(&self, deadline: Instant) -> Option<Duration> {
        Some(deadline.saturating_duration_since(Instant::now()))
    }
}

/// `t + d`, or about the latest time after `t` that an `Instant` can hold if that overflows
/// (within a factor of two of the remaining range: far enough to mean "never").
pub(crate) fn saturating_add(t: Instant, mut d: Duration) -> Instant {
    loop {
        if let Some(later) = t.checked_add(d) {
            return later;
        }
        d /= 2;
    }
}
