//! The driver: the reactor, the timer store and the clock, turned by whichever idle worker holds
//! the driver role (see the scheduler).

use std::cell::Cell;
use std::io;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::io::reactor::Reactor;
use crate::time::clock::Clock;
use crate::time::timers::{self, Timers};

thread_local! {
    /// The runtime clock's time as of the current poll; see [`Driver::now`].
    static NOW: Cell<Option<Instant>> = const { Cell::new(None) };
}

/// Forgets the cached time: a task poll begins, or a mock clock moved.
#[inline]
pub(crate) fn forget_cached_now() {
    NOW.with(|c| c.set(None));
}

pub(crate) struct Driver {
    pub(crate) reactor: Reactor,
    pub(crate) timers: Timers,
    pub(crate) clock: Arc<dyn Clock>,
}

impl Driver {
    pub(crate) fn new(clock: Arc<dyn Clock>) -> io::Result<Self> {
        let origin = clock.now();
        Ok(Driver {
            reactor: Reactor::new()?,
            timers: Timers::new(origin),
            clock,
        })
    }

    /// The time as of the current poll: read from the clock once per task poll and reused
    /// (reading the clock costs tens of nanoseconds on virtual machines, and one scope entry
    /// would otherwise read it three times). Deadlines computed from it are late by at most the
    /// time the current poll has run so far. [`crate::now`] uses [`Driver::fresh_now`].
    #[inline]
    pub(crate) fn now(&self) -> Instant {
        match NOW.with(Cell::get) {
            Some(now) => now,
            None => self.fresh_now(),
        }
    }

    /// Reads the clock and refreshes the per-poll cache.
    pub(crate) fn fresh_now(&self) -> Instant {
        let now = self.clock.now();
        NOW.with(|c| c.set(Some(now)));
        now
    }

    /// How long the reactor may block before the next timer is due, in real time.
    pub(crate) fn timer_timeout(&self) -> Option<Duration> {
        let next = self.timers.next_live_deadline()?;
        self.clock.real_duration_until(next)
    }

    /// Fires the timers due as of this poll's cached time (at most one clock read per poll):
    /// the cheap check every operation makes before it looks at cancellation, so that a deadline
    /// that passed while the task ran is seen there (C7) however the scheduler is kept busy.
    /// With no timer in the store it is one load; the comparison is out of line.
    #[inline]
    pub(crate) fn fire_timers_due_this_poll(&self) {
        if self.timers.maybe_any() {
            self.fire_timers_due_as_cached();
        }
    }

    #[inline(never)]
    fn fire_timers_due_as_cached(&self) {
        if let Some(next) = self.timers.next_deadline() {
            if next <= self.now() {
                self.fire_due_timers_now();
            }
        }
    }

    /// Fires every timer due now. Returns whether any fired. With no timer in the store it is
    /// one load (every checkpoint makes this call); the rest is out of line.
    #[inline]
    pub(crate) fn fire_due_timers(&self) -> bool {
        self.timers.maybe_any() && self.fire_due_timers_now()
    }

    #[inline(never)]
    fn fire_due_timers_now(&self) -> bool {
        let Some(next) = self.timers.next_deadline() else {
            return false;
        };
        // One fresh reading both decides and fires. (The cached time cannot spare it: the
        // clock never runs backwards, so a deadline the cached time shows as not yet due must
        // still be checked against a fresh reading, and one it shows as due is due by the fresh
        // reading too.)
        let now = self.fresh_now();
        if next > now {
            return false;
        }
        let mut due = Vec::new();
        self.timers.take_due(now, &mut due);
        let fired = !due.is_empty();
        timers::fire(&mut due);
        fired
    }

    /// Waits for I/O up to `timeout`, dispatches readiness, then fires due timers. Returns
    /// whether anything became ready.
    pub(crate) fn turn(&self, timeout: Option<Duration>) -> bool {
        // A failing poller is unrecoverable for I/O, but timers still work; treat it as
        // "nothing ready" rather than spinning on the error.
        let ready = self.reactor.poll_events(timeout).unwrap_or_default();
        let fired = self.fire_due_timers();
        ready > 0 || fired
    }

    pub(crate) fn notify(&self) {
        self.reactor.notify();
    }
}
