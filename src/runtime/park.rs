//! A token-based parker for idle threads: `unpark` before `park` makes `park` return at once, so
//! a wake-up that races with going to sleep is never lost.

use std::sync::{Condvar, Mutex};

#[derive(Default)]
pub(crate) struct Parker {
    notified: Mutex<bool>,
    cond: Condvar,
}

impl Parker {
    /// Blocks until a token is available, then consumes it.
    pub(crate) fn park(&self) {
        let mut notified = self.notified.lock().unwrap_or_else(|e| e.into_inner());
        while !*notified {
            notified = self.cond.wait(notified).unwrap_or_else(|e| e.into_inner());
        }
        *notified = false;
    }

    /// Makes a token available and wakes the parked thread, if any.
    pub(crate) fn unpark(&self) {
        let mut notified = self.notified.lock().unwrap_or_else(|e| e.into_inner());
        if !*notified {
            *notified = true;
            drop(notified);
            self.cond.notify_one();
        }
    }
}
