//! A runtime's task ids and its count of live tasks, kept without an atomic read-modify-write
//! on a shared counter at each spawn and each task's end.
//!
//! An atomic read-modify-write waits for the thread's earlier stores to drain, and on shared
//! memory it takes the cache line from whichever worker last wrote it: measured, the id's and
//! the live count's made about 3 % of a spawn's time on one thread. So each worker counts the
//! tasks it spawns and ends in counters of its own, which only it writes (a load and a store,
//! both plain instructions), and takes ids from a block it reserves with one read-modify-write
//! per [`ID_BLOCK`] spawns. A thread that is not a worker of the runtime (a portal, a thread
//! that owns a nursery of a runtime it does not run) uses the shared counters, with
//! read-modify-writes. Ids stay unique across the runtime, and on the current-thread flavour,
//! whose one worker makes nearly every spawn, they stay in spawn order.

use std::sync::atomic::{AtomicU64, Ordering};

/// Ids a worker reserves at a time.
const ID_BLOCK: u64 = 1024;

/// What one worker has counted, or (for [`TaskCounts::elsewhere`]) every other thread.
#[derive(Default)]
#[repr(align(64))] // A line of its own: workers write their counters at every spawn and end.
struct Counters {
    spawned: AtomicU64,
    ended: AtomicU64,
    /// The next id of the worker's block, and the end of the block.
    next_id: AtomicU64,
    block_end: AtomicU64,
}

impl Counters {
    /// Adds 1 to a counter that only this thread writes: a load and a store, no
    /// read-modify-write. Release: see [`TaskCounts::live`].
    #[inline]
    fn bump_own(counter: &AtomicU64) {
        counter.store(counter.load(Ordering::Relaxed) + 1, Ordering::Release);
    }
}

/// A runtime's task ids and live count (see the module comment).
pub(crate) struct TaskCounts {
    /// The first id not handed out nor reserved by a worker; ids start at 1.
    next_id: AtomicU64,
    workers: Box<[Counters]>,
    /// Spawns and ends on threads that are not the runtime's workers.
    elsewhere: Counters,
}

impl TaskCounts {
    pub(crate) fn new(workers: usize) -> TaskCounts {
        TaskCounts {
            next_id: AtomicU64::new(1),
            workers: (0..workers).map(|_| Counters::default()).collect(),
            elsewhere: Counters::default(),
        }
    }

    /// Counts a spawn and gives the task its id. `worker` is the calling thread's worker index
    /// if it is one of this runtime's workers (so the only thread that writes that worker's
    /// counters).
    #[inline]
    pub(crate) fn spawned(&self, worker: Option<usize>) -> u64 {
        let Some(own) = worker.and_then(|w| self.workers.get(w)) else {
            self.elsewhere.spawned.fetch_add(1, Ordering::Release);
            return self.next_id.fetch_add(1, Ordering::Relaxed);
        };
        let mut id = own.next_id.load(Ordering::Relaxed);
        if id == own.block_end.load(Ordering::Relaxed) {
            id = self.next_id.fetch_add(ID_BLOCK, Ordering::Relaxed);
            own.block_end.store(id + ID_BLOCK, Ordering::Relaxed);
        }
        own.next_id.store(id + 1, Ordering::Relaxed);
        Counters::bump_own(&own.spawned);
        id
    }

    /// Counts a task whose future has been dropped; `worker` as for [`spawned`](Self::spawned).
    #[inline]
    pub(crate) fn ended(&self, worker: Option<usize>) {
        match worker.and_then(|w| self.workers.get(w)) {
            Some(own) => Counters::bump_own(&own.ended),
            None => {
                self.elsewhere.ended.fetch_add(1, Ordering::Release);
            }
        }
    }

    /// Task futures alive: spawned and not yet dropped. Every end is read before any spawn,
    /// with `Acquire`: a task's spawn happened before its end, so the spawns read after an end
    /// include that task's, and the difference cannot go below 0. It is exact while no task
    /// starts or ends.
    pub(crate) fn live(&self) -> usize {
        let all = || self.workers.iter().chain(std::iter::once(&self.elsewhere));
        let ended: u64 = all().map(|c| c.ended.load(Ordering::Acquire)).sum();
        let spawned: u64 = all().map(|c| c.spawned.load(Ordering::Acquire)).sum();
        usize::try_from(spawned.saturating_sub(ended)).unwrap_or(usize::MAX)
    }
}

#[cfg(test)]
mod tests {
    use super::{TaskCounts, ID_BLOCK};

    /// Ids are unique across workers and other threads, a worker's in spawn order within its
    /// block and the next block reserved when one runs out; the live count is the spawns
    /// less the ends, wherever each was counted.
    #[test]
    fn ids_are_unique_and_the_live_count_adds_up_across_threads() {
        let counts = TaskCounts::new(2);
        let mut ids = Vec::new();
        for _ in 0..ID_BLOCK + 2 {
            ids.push(counts.spawned(Some(0)));
        }
        ids.push(counts.spawned(None));
        ids.push(counts.spawned(Some(1)));
        // Beyond the workers: counted as elsewhere, not out of bounds.
        ids.push(counts.spawned(Some(7)));
        assert_eq!(ids[..3], [1, 2, 3]);
        assert_eq!(ids[ID_BLOCK as usize], ID_BLOCK + 1);
        let mut sorted = ids.clone();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(sorted.len(), ids.len(), "every id is unique");
        assert_eq!(counts.live(), ids.len());
        // Ended on another worker than the one that spawned them, and elsewhere.
        counts.ended(Some(1));
        counts.ended(Some(1));
        counts.ended(None);
        assert_eq!(counts.live(), ids.len() - 3);
    }
}
