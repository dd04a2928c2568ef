//! The teardowns that wait, on some thread, for a task's future to be let go on another: kept
//! so that a wait that would close a cycle is refused rather than made.
//!
//! A teardown waits for a poll of the task on another thread to end. If that poll is itself
//! stuck in a teardown waiting for a future this thread is using (the two tasks' futures each
//! own the nursery the other one is a child of, say), neither wait ends. Each thread inside a
//! task's code records here, for as long as it waits, what it waits for and which futures it
//! is using. A new wait follows that chain from its target: if it leads back to a future in
//! use on this thread, the wait is refused, and the caller leaves the task to end once its
//! future is let go. Waits register under one lock, so of two waits that close a cycle, the
//! later one sees the earlier.
//!
//! Only the waits of the rare teardown that finds a poll in progress elsewhere come here.

use std::sync::{Mutex, PoisonError};
use std::thread::{self, ThreadId};

use crate::cancel::current;

/// One thread's wait.
struct Wait {
    thread: ThreadId,
    /// The identity (`Waker::data`) of the task whose future it waits for.
    target: usize,
    /// The identities of the tasks whose futures are in use on its stack (see
    /// `current::in_use_list`).
    in_use: Vec<usize>,
}

static WAITS: Mutex<Vec<Wait>> = Mutex::new(Vec::new());

/// A teardown's wait for the future of one task, registered on its first [`may_go_on`]
/// (teardowns that need not wait register nothing), and unregistered when dropped.
///
/// [`may_go_on`]: Waiting::may_go_on
pub(super) struct Waiting {
    /// The identity (`Waker::data`) of the task waited for.
    target: usize,
    /// `None` until registered; then the thread under which it is registered, if any.
    registered: Option<Option<ThreadId>>,
}

impl Waiting {
    /// A wait for the future of the task with identity `target`, not registered yet.
    pub(super) fn new(target: usize) -> Waiting {
        Waiting {
            target,
            registered: None,
        }
    }

    /// Whether the caller may go on waiting: registers the wait the first time; `false` if it
    /// could never end (the future is in use on this thread, or its user waits, through a chain
    /// of waits, for a future in use here).
    pub(super) fn may_go_on(&mut self) -> bool {
        if self.registered.is_none() {
            match register(self.target) {
                Some(thread) => self.registered = Some(thread),
                None => return false,
            }
        }
        true
    }
}

impl Drop for Waiting {
    fn drop(&mut self) {
        if let Some(Some(thread)) = self.registered {
            let mut waits = WAITS.lock().unwrap_or_else(PoisonError::into_inner);
            waits.retain(|wait| wait.thread != thread);
        }
    }
}

/// Registers this thread's wait for `target` unless it would never end; gives the thread it is
/// registered under (`None`: nothing to register, as nothing is in use here).
fn register(target: usize) -> Option<Option<ThreadId>> {
    let in_use = current::in_use_list();
    if in_use.is_empty() {
        // Nothing can be waiting for this thread: no cycle passes through it.
        return Some(None);
    }
    let mut waits = WAITS.lock().unwrap_or_else(PoisonError::into_inner);
    let mut at = target;
    // Each thread has one wait at most, so a chain has no more links than there are waits.
    for _ in 0..=waits.len() {
        if in_use.contains(&at) {
            return None;
        }
        match waits.iter().find(|wait| wait.in_use.contains(&at)) {
            Some(next) => at = next.target,
            None => break,
        }
    }
    let thread = thread::current().id();
    waits.push(Wait {
        thread,
        target,
        in_use,
    });
    Some(Some(thread))
}
