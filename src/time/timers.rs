//! The timer store: one store for every sleep and every cancel-scope deadline.
//!
//! Most timers never fire: a scope deadline is removed when the scope exits, usually long before
//! the deadline. So removal must be cheapest. The store is a binary min-heap of
//! `(deadline, sequence, slot)` plus a slab of live entries:
//! - insert pushes onto the heap (a deadline later than its parent's, the common case of
//!   "now + timeout", costs one comparison) and takes a slab slot: O(log n) worst case;
//! - remove frees the slab slot, O(1). The heap item stays behind, dead, even at the top (popping
//!   it would cost O(log n) on every removal of the earliest timer, the usual case when
//!   same-length timeouts are set in turn). Dead items are dropped in bulk: once they outnumber
//!   live ones the heap is rebuilt without them in linear time (O(1) per removal amortised), so
//!   its size stays within twice the live count plus a constant: moving a deadline thousands of
//!   times does not grow memory (C9), and a cancelled sleep's entry is gone at once (principle 4).
//!   A dead item reaching the top is popped when something asks for the next deadline.
//! - Equal deadlines fire in insertion order (the sequence number breaks ties), and a key names
//!   exactly one entry even after its slot is reused (the sequence number must match).
//!
//! The earliest deadline in the heap is mirrored in an atomic so the hot paths (a checkpoint
//! asking "is anything due?") read one word instead of taking the lock. It may be a dead item's,
//! so it is never later than the earliest live deadline: a check against it can only be early,
//! and [`Timers::take_due`] then finds nothing due. Callers that act on the exact time (a
//! worker choosing how long to sleep, autojump) use [`Timers::next_live_deadline`]. Entries are fired outside the lock:
//! [`Timers::take_due`] removes what is due and hands it back, and the caller wakes the sleepers
//! and expires the rest through [`Expire`], which the cancel tree implements: the store knows
//! nothing of scopes.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::num::NonZeroU64;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, Weak};
use std::task::Waker;
use std::time::{Duration, Instant};

use slab::Slab;

use crate::state_lock::lock_blocking;

/// Dead heap items tolerated before a rebuild is considered (avoids rebuilding tiny heaps).
const MIN_DEAD_BEFORE_REBUILD: usize = 64;

/// Names one entry of the store. Sequence numbers start at 1, so `Option<TimerKey>` is no
/// bigger than the key (cancel-tree nodes keep one inline).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TimerKey {
    slot: usize,
    seq: NonZeroU64,
}

/// What happens when an entry's deadline arrives.
pub(crate) enum TimerTarget {
    /// A sleeping future: wake it.
    Wake(Waker),
    /// A cancel scope's deadline: cancel it with reason `Deadline`, if the scope still exists.
    Deadline(Weak<dyn Expire>),
    /// A cancelled scope's grace period ran out: drop what is left under it (B3). Holds the
    /// scope, which may be a task's node (no weak form): the scope removes the timer when it
    /// leaves the tree.
    Grace(Box<dyn Expire>),
}

/// What a timer that is more than a wake-up fires: the cancel tree implements it, so the store
/// needs to know nothing of scopes (it sits below them).
pub(crate) trait Expire: Send + Sync {
    /// The time set with the target arrived.
    fn expire(&self);
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

    /// Rebuilds the heap without dead items once they outnumber the live ones; says whether it
    /// did (the top may have changed).
    fn maybe_rebuild(&mut self) -> bool {
        let dead = self.heap.len() - self.live.len();
        if dead > MIN_DEAD_BEFORE_REBUILD && dead > self.live.len() {
            let live = &self.live;
            self.heap
                .retain(|Reverse((_, seq, slot))| live.get(*slot).is_some_and(|e| e.seq == *seq));
            return true;
        }
        false
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
        lock_blocking(&self.inner)
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
        let seq = NonZeroU64::new(seq).expect("sequence numbers start at 1");
        (TimerKey { slot, seq }, first)
    }

    /// Removes an entry; returns false if it already fired (or was removed).
    pub(crate) fn remove(&self, key: TimerKey) -> bool {
        let mut inner = self.lock();
        let key_seq = key.seq.get();
        if inner.live.get(key.slot).is_none_or(|e| e.seq != key_seq) {
            return false;
        }
        let entry = inner.live.remove(key.slot);
        if inner.live.is_empty() {
            // Only dead items left: forget them all, so "no timers" reads exactly.
            inner.heap.clear();
            self.publish_next(&inner);
        } else if inner.maybe_rebuild() {
            self.publish_next(&inner);
        }
        drop(inner);
        // A waker or node reference is dropped outside the lock.
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
            }) if *seq == key.seq.get() => {
                if !w.will_wake(waker) {
                    w.clone_from(waker);
                }
                true
            }
            _ => false,
        }
    }

    /// The earliest live deadline, if any: pops dead items off the top first.
    pub(crate) fn next_live_deadline(&self) -> Option<Instant> {
        self.next_deadline()?;
        let mut inner = self.lock();
        inner.prune_top();
        self.publish_next(&inner);
        inner.earliest()
    }

    /// Might the store hold a timer? One atomic load, false only when the heap is empty: the
    /// test hot paths make before anything that costs more (building an `Instant`, reading the
    /// clock).
    #[inline]
    pub(crate) fn maybe_any(&self) -> bool {
        self.next_nanos.load(Ordering::Acquire) != u64::MAX
    }

    /// A lower bound of the earliest live deadline: the earliest item in the heap, live or dead;
    /// `None` when the heap is empty. One atomic load, for hot paths that only need to rule
    /// timers out.
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
            TimerTarget::Deadline(target) => {
                if let Some(target) = target.upgrade() {
                    target.expire();
                }
            }
            TimerTarget::Grace(target) => target.expire(),
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

    #[test]
    fn removing_the_earliest_leaves_a_lower_bound_and_the_exact_next_on_request() {
        let t0 = Instant::now();
        let timers = Timers::new(t0);
        let ms = |n| t0 + Duration::from_millis(n);
        let (first, _) = timers.insert(ms(10), noop());
        let (_second, _) = timers.insert(ms(20), noop());
        assert!(timers.remove(first));
        // The dead item stays on top: the cheap bound may be early, never late.
        assert_eq!(timers.next_deadline(), Some(ms(10)));
        assert_eq!(timers.next_live_deadline(), Some(ms(20)));
        assert_eq!(timers.next_deadline(), Some(ms(20)));
        // Nothing is due at the dead item's time.
        let mut out = Vec::new();
        let (third, _) = timers.insert(ms(30), noop());
        assert!(timers.remove(third));
        timers.take_due(ms(15), &mut out);
        assert!(out.is_empty());
        timers.take_due(ms(30), &mut out);
        assert_eq!(out.len(), 1);
        assert_eq!(timers.next_live_deadline(), None);
        assert_eq!(timers.len(), 0);
    }
}
