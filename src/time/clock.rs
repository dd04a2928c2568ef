//! Clocks: where the runtime reads the time, and how long it may wait in real time.
//!
//! Everything in trellis speaks [`std::time::Instant`]. A clock maps its own notion of "now" onto
//! `Instant`s; the system clock is the identity, [`MockClock`](crate::testing::MockClock) is a
//! fixed origin plus a virtual offset. The driver asks the clock how long in *real* time it may
//! sleep before a virtual deadline arrives, and, when every task is blocked, whether it should
//! jump time forward instead (autojump).

use std::fmt;
use std::time::{Duration, Instant};

/// A source of time for a runtime. Use [`SystemClock`] (the default) or
/// [`testing::MockClock`](crate::testing::MockClock).
pub trait Clock: Send + Sync + fmt::Debug + 'static {
    /// The current time on this clock.
    fn now(&self) -> Instant;

    /// How long, in real time, until this clock reads `deadline`; `None` if that cannot be known
    /// (a stopped mock clock), in which case the runtime waits for something else to happen.
    fn real_duration_until(&self, deadline: Instant) -> Option<Duration>;

    /// How long every task must have been blocked before the runtime may jump this clock to the
    /// next deadline; `None` (the default) never jumps.
    fn autojump_threshold(&self) -> Option<Duration> {
        None
    }

    /// Moves this clock forward to `deadline` if it is still in the future. Called by the runtime
    /// only when [`autojump_threshold`](Clock::autojump_threshold) is `Some`.
    fn autojump_to(&self, deadline: Instant) {
        let _ = deadline;
    }
}

/// The operating system's monotonic clock.
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
