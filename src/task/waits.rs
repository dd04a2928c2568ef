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
    /// `current::in_use_here`).
    in_use: Vec<usize>,
}

static WAITS: Mutex<Vec<Wait>> = Mutex::new(Vec::new());

/// A wait registered with [`wait_for`]; it leaves the registry when dropped.
pub(super) struct Waiting(Option<ThreadId>);

impl Drop for Waiting {
    fn drop(&mut self) {
        if let Some(thread) = self.0 {
            let mut waits = WAITS.lock().unwrap_or_else(PoisonError::into_inner);
            waits.retain(|wait| wait.thread != thread);
        }
    }
}

/// Registers that this thread is about to wait for the future of the task with identity
/// `target` to be let go; `None` if that wait could never end: the future is in use on this
/// thread, or its user waits, through a chain of waits, for a future in use here.
pub(super) fn wait_for(target: usize) -> Option<Waiting> {
    if current::in_use_here(target) {
        return None;
    }
    let in_use = current::in_use_list();
    if in_use.is_empty() {
        // Nothing can be waiting for this thread: no cycle passes through it.
        return Some(Waiting(None));
    }
    let mut waits = WAITS.lock().unwrap_or_else(PoisonError::into_inner);
    let mut at = target;
    // Each thread has one wait at most, so a chain has no more links than there are waits.
    for _ in 0..waits.len() {
        let Some(next) = waits.iter().find(|wait| wait.in_use.contains(&at)) else {
            break;
        };
        at = next.target;
        if current::in_use_here(at) {
            return None;
        }
    }
    let thread = thread::current().id();
    waits.push(Wait {
        thread,
        target,
        in_use,
    });
    Some(Waiting(Some(thread)))
}
