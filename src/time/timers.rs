//! The timer store: one store for every sleep and every cancel-scope deadline.
//!
//! Most timers never fire: a scope deadline is removed when the scope exits, usually long before
//! the deadline. So removal must be cheapest. The store is a binary min-heap of
//! `(deadline, sequence, slot)` plus a slab of live entries:
//! - insert pushes onto the heap (a deadline later than its parent's, the common case of
//!   "now + timeout", costs one comparison) and takes a slab slot: O(log n) worst case;
//! - remove frees the slab slot, O(1). The heap item stays behind, dead, and is skipped when it
//!   reaches the top; once dead items outnumber live ones the heap is rebuilt without them, so
//!   its size stays within twice the live count plus a constant: moving a deadline thousands of
//!   times does not grow memory (C9), and a cancelled sleep's entry is gone at once (principle 4).
//! - Equal deadlines fire in insertion order (the sequence number breaks ties), and a key names
//!   exactly one entry even after its slot is reused (the sequence number must match).
//!
//! The earliest live deadline is mirrored in an atomic so the hot paths (a checkpoint asking "is
//! anything due?") read one word instead of taking the lock. Entries are fired outside the lock:
//! [`Timers::take_due`] removes what is due and hands it back, and the caller wakes the sleepers
//! and cancels the scopes.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, Weak};
use std::task::Waker;
use std::time::{Duration, Instant};

use slab::Slab;

use crate::cancel::node::TreeNode;

/// Dead heap items tolerated before a rebuild is considered (avoids rebuilding tiny heaps).
const MIN_DEAD_BEFORE_REBUILD: usize = 64;

/// Names one entry of the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TimerKey {
    slot: usize,
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
    /// Earliest live deadline as nanoseconds since `origin`; `u64::MAX` when none.
    next_nanos: AtomicU64,
    inner: Mutex<Inner>,
}

struct Entry {
    seq: u64,
    target: TimerTarget,
}

/// `(deadline, sequence, slot)`, ordered earliest first by `Reverse`.
type HeapItem = Reverse<(Instant, u64, usize)>;

struct Inner {
    heap: BinaryHeap<HeapItem>,
    live: Slab<Entry>,
    seq: u64,
}

impl Inner {
    fn is_live(&self, item: &HeapItem) -> bool {
        let Reverse((_, seq, slot)) = *item;
        self.live.get(slot).is_some_and(|e| e.seq == seq)
    }

    /// Drops dead items from the top so `peek` shows the earliest live deadline.
    fn prune_top(&mut self) {
        while let Some(top) = self.heap.peek() {
            if self.is_live(top) {
                break;
            }
            self.heap.pop();
        }
    }

    fn earliest(&self) -> Option<Instant> {
        self.heap.peek().map(|Reverse((deadline, _, _))| *deadline)
    }

    /// Rebuilds the heap without dead items once they outnumber the live ones.
    fn maybe_rebuild(&mut self) {
        let dead = self.heap.len() - self.live.len();
        if dead > MIN_DEAD_BEFORE_REBUILD && dead > self.live.len() {
            let live = &self.live;
            self.heap
                .retain(|Reverse((_, seq, slot))| live.get(*slot).is_some_and(|e| e.seq == *seq));
        }
    }
}

impl Timers {
    pub(crate) fn new(origin: Instant) -> Self {
        Timers {
            origin,
            next_nanos: AtomicU64::new(u64::MAX),
            inner: Mutex::new(Inner {
                heap: BinaryHeap::new(),
                live: Slab::new(),
                seq: 0,
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn publish_next(&self, inner: &Inner) {
        let next = match inner.earliest() {
            Some(deadline) => deadline
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
        let seq = inner.seq;
        let slot = inner.live.insert(Entry { seq, target });
        let first = inner.earliest().is_none_or(|earliest| deadline < earliest);
        inner.heap.push(Reverse((deadline, seq, slot)));
        if first {
            self.publish_next(&inner);
        }
        (TimerKey { slot, seq }, first)
    }

    /// Removes an entry; returns false if it already fired (or was removed).
    pub(crate) fn remove(&self, key: TimerKey) -> bool {
        let mut inner = self.lock();
        if inner.live.get(key.slot).is_none_or(|e| e.seq != key.seq) {
            return false;
        }
        let entry = inner.live.remove(key.slot);
        let was_top = inner
            .heap
            .peek()
            .is_some_and(|Reverse((_, seq, _))| *seq == key.seq);
        if was_top {
            inner.prune_top();
            self.publish_next(&inner);
        }
        inner.maybe_rebuild();
        drop(inner);
        // A waker or weak node is dropped outside the lock.
        drop(entry);
        true
    }

    /// Replaces the waker of a sleeping entry, if it is still there.
    pub(crate) fn update_waker(&self, key: TimerKey, waker: &Waker) -> bool {
        let mut inner = self.lock();
        match inner.live.get_mut(key.slot) {
            Some(Entry {
                seq,
                target: TimerTarget::Wake(w),
            }) if *seq == key.seq => {
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
            nanos => Some(self.origin + Duration::from_nanos(nanos)),
        }
    }

    /// Removes and returns every entry due at `now`, earliest first.
    pub(crate) fn take_due(&self, now: Instant, out: &mut Vec<TimerTarget>) {
        if self.next_deadline().is_none_or(|next| next > now) {
            return;
        }
        let mut inner = self.lock();
        while let Some(&Reverse((deadline, seq, slot))) = inner.heap.peek() {
            if deadline > now {
                break;
            }
            inner.heap.pop();
            if inner.live.get(slot).is_some_and(|e| e.seq == seq) {
                out.push(inner.live.remove(slot).target);
            }
        }
        inner.prune_top();
        self.publish_next(&inner);
    }

    /// Number of live entries.
    pub(crate) fn len(&self) -> usize {
        self.lock().live.len()
    }

    /// Empties the store (runtime shutdown); the targets are dropped outside the lock.
    pub(crate) fn clear(&self) {
        let (heap, live) = {
            let mut inner = self.lock();
            (
                std::mem::take(&mut inner.heap),
                std::mem::take(&mut inner.live),
            )
        };
        self.next_nanos.store(u64::MAX, Ordering::Release);
        drop(heap);
        drop(live);
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::task::Waker;

    fn noop() -> TimerTarget {
        TimerTarget::Wake(Waker::noop().clone())
    }

    #[test]
    fn fires_in_deadline_then_insertion_order() {
        let t0 = Instant::now();
        let timers = Timers::new(t0);
        let ms = |n| t0 + Duration::from_millis(n);
        let (a, _) = timers.insert(ms(20), noop());
        let (b, first) = timers.insert(ms(10), noop());
        assert!(first);
        let (c, _) = timers.insert(ms(10), noop());
        assert_eq!(timers.next_deadline(), Some(ms(10)));
        let mut out = Vec::new();
        timers.take_due(ms(10), &mut out);
        assert_eq!(out.len(), 2);
        assert!(!timers.remove(b) && !timers.remove(c));
        assert_eq!(timers.next_deadline(), Some(ms(20)));
        assert!(timers.remove(a));
        assert_eq!(timers.next_deadline(), None);
        assert_eq!(timers.len(), 0);
    }

    #[test]
    fn removal_keeps_the_heap_bounded() {
        let t0 = Instant::now();
        let timers = Timers::new(t0);
        let (keep, _) = timers.insert(t0 + Duration::from_secs(1), noop());
        for i in 0..10_000u64 {
            let (key, _) = timers.insert(t0 + Duration::from_secs(60 + i), noop());
            assert!(timers.remove(key));
        }
        let inner = timers.lock();
        assert_eq!(inner.live.len(), 1);
        assert!(inner.heap.len() <= 2 * inner.live.len() + MIN_DEAD_BEFORE_REBUILD + 1);
        drop(inner);
        assert!(timers.remove(keep));
    }

    #[test]
    fn a_reused_slot_does_not_answer_to_an_old_key() {
        let t0 = Instant::now();
        let timers = Timers::new(t0);
        let (old, _) = timers.insert(t0 + Duration::from_secs(1), noop());
        assert!(timers.remove(old));
        let (new, _) = timers.insert(t0 + Duration::from_secs(2), noop());
        assert!(!timers.remove(old));
        assert!(!timers.update_waker(old, Waker::noop()));
        assert!(timers.remove(new));
    }
}
