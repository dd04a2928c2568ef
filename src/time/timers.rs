//! The timer store: one ordered map for every sleep and every cancel-scope deadline.
//!
//! Entries are keyed by `(deadline, sequence)`, so two timers with the same deadline fire in the
//! order they were set and a key names exactly one entry. Insert and removal are O(log n). A sleep
//! or scope removes its entry when it is dropped or exits, so a cancelled sleep leaves nothing
//! behind (principle 4). The earliest deadline is mirrored in an atomic so that the hot paths
//! (a checkpoint asking "is anything due?") read one word instead of taking the lock.
//!
//! Entries are fired outside the lock: [`Timers::take_due`] removes what is due and hands it
//! back, and the caller wakes the sleepers and cancels the scopes.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, Weak};
use std::task::Waker;
use std::time::Instant;

use crate::cancel::node::TreeNode;

/// Names one entry of the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct TimerKey {
    deadline: Instant,
    seq: u64,
}

/// What happens when an entry's deadline arrives.
pub(crate) enum TimerTarget {
    /// A sleeping future: wake it.
    Wake(Waker),
    /// A cancel scope: cancel it with reason `Deadline`.
    Scope(Weak<dyn TreeNode>),
}

pub(crate) struct Timers {
    /// Origin for `next_nanos`.
    origin: Instant,
    /// Earliest deadline as nanoseconds since `origin`; `u64::MAX` when the store is empty.
    next_nanos: AtomicU64,
    inner: Mutex<Inner>,
}

struct Inner {
    entries: BTreeMap<TimerKey, TimerTarget>,
    seq: u64,
}

impl Timers {
    pub(crate) fn new(origin: Instant) -> Self {
        Timers {
            origin,
            next_nanos: AtomicU64::new(u64::MAX),
            inner: Mutex::new(Inner {
                entries: BTreeMap::new(),
                seq: 0,
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn publish_next(&self, inner: &Inner) {
        let next = match inner.entries.keys().next() {
            Some(key) => key
                .deadline
                .saturating_duration_since(self.origin)
                .as_nanos()
                .min(u128::from(u64::MAX - 1)) as u64,
            None => u64::MAX,
        };
        self.next_nanos.store(next, Ordering::Release);
    }

    /// Adds an entry; also says whether it is now the earliest (the driver may need to wake up
    /// to shorten its wait).
    pub(crate) fn insert(&self, deadline: Instant, target: TimerTarget) -> (TimerKey, bool) {
        let mut inner = self.lock();
        inner.seq += 1;
        let key = TimerKey {
            deadline,
            seq: inner.seq,
        };
        let was_first = inner.entries.keys().next().is_none_or(|first| key < *first);
        inner.entries.insert(key, target);
        if was_first {
            self.publish_next(&inner);
        }
        (key, was_first)
    }

    /// Removes an entry; returns false if it already fired (or was removed).
    pub(crate) fn remove(&self, key: TimerKey) -> bool {
        let mut inner = self.lock();
        let was_first = inner.entries.keys().next() == Some(&key);
        let removed = inner.entries.remove(&key).is_some();
        if was_first {
            self.publish_next(&inner);
        }
        removed
    }

    /// Replaces the waker of a sleeping entry, if it is still there.
    pub(crate) fn update_waker(&self, key: TimerKey, waker: &Waker) -> bool {
        let mut inner = self.lock();
        match inner.entries.get_mut(&key) {
            Some(TimerTarget::Wake(w)) => {
                if !w.will_wake(waker) {
                    w.clone_from(waker);
                }
                true
            }
            _ => false,
        }
    }

    /// The earliest deadline, if any.
    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        match self.next_nanos.load(Ordering::Acquire) {
            u64::MAX => None,
            nanos => Some(self.origin + std::time::Duration::from_nanos(nanos)),
        }
    }

    /// Cheap test: is an entry due at `now`? (may say yes spuriously, never no wrongly for
    /// entries inserted before the call).
    pub(crate) fn any_due(&self, now: Instant) -> bool {
        self.next_deadline().is_some_and(|next| next <= now)
    }

    /// Removes and returns every entry due at `now`, earliest first.
    pub(crate) fn take_due(&self, now: Instant, out: &mut Vec<TimerTarget>) {
        if !self.any_due(now) {
            return;
        }
        let mut inner = self.lock();
        while let Some(entry) = inner.entries.first_entry() {
            if entry.key().deadline > now {
                break;
            }
            out.push(entry.remove());
        }
        self.publish_next(&inner);
    }

    pub(crate) fn len(&self) -> usize {
        self.lock().entries.len()
    }

    /// Empties the store (runtime shutdown); the targets are dropped outside the lock.
    pub(crate) fn clear(&self) {
        let entries = std::mem::take(&mut self.lock().entries);
        self.next_nanos.store(u64::MAX, Ordering::Release);
        drop(entries);
    }
}

/// Fires targets taken from the store.
pub(crate) fn fire(targets: &mut Vec<TimerTarget>) {
    for target in targets.drain(..) {
        match target {
            TimerTarget::Wake(waker) => waker.wake(),
            TimerTarget::Scope(node) => {
                if let Some(node) = node.upgrade() {
                    crate::cancel::node::deadline_fired(&node);
                }
            }
        }
    }
}
