//! The driver: the reactor, the timer store and the clock, turned by whichever idle worker holds
//! the driver role (see the scheduler).

use std::io;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::io::reactor::Reactor;
use crate::time::clock::Clock;
use crate::time::timers::{self, Timers};

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

    #[inline]
    pub(crate) fn now(&self) -> Instant {
        self.clock.now()
    }

    /// How long the reactor may block before the next timer is due, in real time.
    pub(crate) fn timer_timeout(&self) -> Option<Duration> {
        let next = self.timers.next_deadline()?;
        self.clock.real_duration_until(next)
    }

    /// Fires every timer due now. Returns whether any fired.
    pub(crate) fn fire_due_timers(&self) -> bool {
        if self.timers.next_deadline().is_none() {
            return false;
        }
        let mut due = Vec::new();
        self.timers.take_due(self.clock.now(), &mut due);
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
