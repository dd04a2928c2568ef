//! A token-based parker for idle threads: `unpark` before `park` makes `park` return at once, so
//! a wake-up that races with going to sleep is never lost.

use std::sync::{Condvar, Mutex};
use std::time::Instant;

use crate::state_lock::lock_blocking;

#[derive(Default)]
pub(crate) struct Parker {
    notified: Mutex<bool>,
    cond: Condvar,
}

impl Parker {
    /// Blocks until a token is available, then consumes it.
    pub(crate) fn park(&self) {
        let mut notified = lock_blocking(&self.notified);
        while !*notified {
            notified = self.cond.wait(notified).unwrap_or_else(|e| e.into_inner());
        }
        *notified = false;
    }

    /// Like [`park`](Self::park), but gives up at `deadline`. Returns whether a token was
    /// consumed.
    pub(crate) fn park_until(&self, deadline: Instant) -> bool {
        let mut notified = lock_blocking(&self.notified);
        while !*notified {
            let Some(left) = deadline.checked_duration_since(Instant::now()) else {
                return false;
            };
            notified = match self.cond.wait_timeout(notified, left) {
                Ok((guard, _)) => guard,
                Err(e) => e.into_inner().0,
            };
        }
        *notified = false;
        true
    }

    /// Makes a token available and wakes the parked thread, if any.
    pub(crate) fn unpark(&self) {
        let mut notified = lock_blocking(&self.notified);
        if !*notified {
            *notified = true;
            drop(notified);
            self.cond.notify_one();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// A token given before the wait is taken at once; without one the wait ends at the
    /// deadline, empty-handed.
    #[test]
    fn park_until_takes_a_token_or_gives_up_at_the_deadline() {
        let parker = Parker::default();
        parker.unpark();
        assert!(parker.park_until(Instant::now() + Duration::from_secs(60)));
        assert!(!parker.park_until(Instant::now()));
        let start = Instant::now();
        assert!(!parker.park_until(start + Duration::from_millis(2)));
        assert!(start.elapsed() >= Duration::from_millis(2));
    }
}
