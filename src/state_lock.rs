//! How a shared state is locked: a mutex with [`lock`], which spins a little before the thread
//! blocks, or [`lock_blocking`], which does not spin (both hand out a poisoned state, see
//! [`lock`]); a cancel-tree node's state with its [`ByteLock`], taken as [`lock`] takes a mutex.
//!
//! Every primitive and channel keeps its state behind one `std::sync::Mutex` (see
//! `sync::parking_lot`), and every node of the cancel tree behind a byte lock (see
//! `cancel::node`): held for well under a microsecond, never across an `await`. On the
//! multi-thread flavour tasks on different workers take a busy state turn about: a channel's
//! once per message, a nursery's node once per child spawned and once per child that exits.
//! `std`'s mutex spins only while no thread sleeps on it; once one has, every unlock is a
//! `futex` wake and every contended lock a `futex` wait, and two busy workers stay in that
//! mode. Measured on two workers: on the
//! bench's `mpsc` row, 0.13 to 0.21 system calls per message and a sixth of the workers' time
//! in the mutex's contended path (the same for broadcast channels, semaphores, capacity
//! limiters and read-write locks taken back to back); on `spawn_join`, 0.3 to 0.5 `futex`
//! calls per task, from a nursery's node taken by the spawning worker and by the one running
//! its exiting children.
//!
//! So a lock that finds the state held retries a few times, with a pause that doubles between
//! tries, and only then blocks in `std`'s lock. The first try comes late: a task runs up to its
//! yield budget of operations in one poll, so a holder is likely to take the lock again at once,
//! and each try is a compare-and-swap that pulls the lock's cache line away from it, slowing the
//! very thread the waiter waits for (measured: `mpsc` on two workers, 121 ns per message when
//! the pauses started at 1 hint, 65 ns when they start at 32). The spin is bounded: a holder
//! that was preempted costs a waiter a few microseconds before it sleeps, not a time slice. A
//! free lock costs one `try_lock`, a few instructions more than `std`'s `lock`.

use std::cell::UnsafeCell;
use std::hint;
use std::ops::{Deref, DerefMut};
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard, TryLockError};

/// The pause before a held lock's first retry, in `spin_loop` hints.
const FIRST_PAUSE: u32 = 32;
/// The longest pause between two tries; the pauses double from [`FIRST_PAUSE`], so a waiter
/// tries 3 times more over 224 hints (about 5 µs where a hint takes 24 ns) before it blocks.
const LONGEST_PAUSE: u32 = 128;

/// Locks a primitive's or a cancel-tree node's state, spinning a little before it blocks if
/// the mutex is held (see the module comment). The state is only changed by trellis's own code,
/// which does not panic between related updates, so a poisoned mutex (a panic elsewhere while
/// it was held, e.g. in a waker) still holds consistent state.
#[inline]
pub(crate) fn lock<S>(state: &Mutex<S>) -> MutexGuard<'_, S> {
    match state.try_lock() {
        Ok(guard) => guard,
        Err(TryLockError::Poisoned(poisoned)) => poisoned.into_inner(),
        Err(TryLockError::WouldBlock) => lock_contended(state),
    }
}

/// Locks a state that is rarely contended, or whose holders may keep it for longer than a
/// spin would wait (a registry, a pool, the reactor's tables, the tree-wide cancel lock):
/// blocks at once if it is held, with no spin. Poisoning is ignored as in [`lock`], for the same
/// reason: trellis's code does not panic between related updates.
#[inline]
pub(crate) fn lock_blocking<S>(state: &Mutex<S>) -> MutexGuard<'_, S> {
    state
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// [`lock`] when the mutex is held: spin, then block.
#[cold]
#[inline(never)]
fn lock_contended<S>(state: &Mutex<S>) -> MutexGuard<'_, S> {
    spin(|| match state.try_lock() {
        Ok(guard) => Some(guard),
        Err(TryLockError::Poisoned(poisoned)) => Some(poisoned.into_inner()),
        Err(TryLockError::WouldBlock) => None,
    })
    .unwrap_or_else(|| lock_blocking(state))
}

/// The bounded spin of a contended lock: `try_lock` after each of the doubling pauses, until it
/// succeeds or the pauses run out (`None`: the caller blocks).
#[inline]
fn spin<G>(mut try_lock: impl FnMut() -> Option<G>) -> Option<G> {
    let mut pause = FIRST_PAUSE;
    while pause <= LONGEST_PAUSE {
        for _ in 0..pause {
            hint::spin_loop();
        }
        if let Some(guard) = try_lock() {
            return Some(guard);
        }
        pause *= 2;
    }
    None
}

/// A lock in one byte, for a state that is part of a larger struct whose spare byte holds the
/// lock: a cancel-tree node's (see `cancel::node`), where `std`'s mutex, a 4-byte word and a
/// poison flag that the state's alignment pads to 8 bytes, made every task 8 bytes bigger (an
/// idle task's size is a benchmarked figure).
///
/// It is taken as [`lock`] takes a mutex: one compare-and-swap when free, else the same bounded
/// spin, and then the thread blocks. A blocked thread waits on one of a few condition variables
/// shared by every byte lock (chosen by the lock's address), with the lock's `PARKED` bit set,
/// so that the unlock that finds the bit wakes the waiters there. Every waiter woken tries again
/// (several locks may share a variable). No poisoning: the state is trellis's own, and its code
/// does not panic between related updates (see [`lock`]).
pub(crate) struct ByteLock(AtomicU8);

/// Held.
const LOCKED: u8 = 1;
/// A thread blocks (or is about to) waiting for the lock.
const PARKED: u8 = 2;

/// Where threads wait for byte locks: a condition variable and the mutex it needs. Shared by the
/// byte locks whose addresses hash to it: blocking is rare (a holder keeps the lock for well
/// under a microsecond, and the spin comes first), so a few are enough.
struct WaitPlace {
    mutex: Mutex<()>,
    woken: Condvar,
}

const WAIT_PLACES: usize = 32;

static WAIT_PLACES_TABLE: [WaitPlace; WAIT_PLACES] = [const {
    WaitPlace {
        mutex: Mutex::new(()),
        woken: Condvar::new(),
    }
}; WAIT_PLACES];

impl ByteLock {
    pub(crate) const fn new() -> ByteLock {
        ByteLock(AtomicU8::new(0))
    }

    /// Takes the lock if it is free.
    #[inline]
    fn try_lock(&self) -> bool {
        self.0
            .compare_exchange(0, LOCKED, Ordering::Acquire, Ordering::Relaxed)
            .is_ok()
    }

    /// Takes the lock: spins a little if it is held, then blocks.
    #[inline]
    fn lock(&self) {
        if !self.try_lock() {
            self.lock_contended();
        }
    }

    /// Releases the lock, waking the threads blocked on it.
    ///
    /// # Safety
    /// The caller holds the lock, and nothing it guards is reached through this holding after.
    #[inline]
    unsafe fn unlock(&self) {
        if self.0.swap(0, Ordering::Release) & PARKED != 0 {
            self.wake_parked();
        }
    }

    /// [`lock`](Self::lock) when the lock is held.
    #[cold]
    #[inline(never)]
    fn lock_contended(&self) {
        if spin(|| self.try_lock().then_some(())).is_some() {
            return;
        }
        let place = self.wait_place();
        loop {
            // Take the lock if it is free (keeping a `PARKED` bit another waiter set); else
            // say that a thread waits before waiting.
            let mut seen = self.0.load(Ordering::Relaxed);
            loop {
                let take = seen & LOCKED == 0;
                let wanted = if take {
                    seen | LOCKED
                } else if seen & PARKED == 0 {
                    seen | PARKED
                } else {
                    break;
                };
                let order = if take {
                    Ordering::Acquire
                } else {
                    Ordering::Relaxed
                };
                match self
                    .0
                    .compare_exchange_weak(seen, wanted, order, Ordering::Relaxed)
                {
                    Ok(_) if take => return,
                    Ok(_) => break,
                    Err(now) => seen = now,
                }
            }
            let held = lock_blocking(&place.mutex);
            // Checked under the place's mutex, which the unlock takes after clearing the byte
            // and before waking: an unlock after this check wakes this wait, and one before
            // it is seen here.
            if self.0.load(Ordering::Relaxed) == LOCKED | PARKED {
                drop(place.woken.wait(held).unwrap_or_else(|p| p.into_inner()));
            }
        }
    }

    #[cold]
    #[inline(never)]
    fn wake_parked(&self) {
        let place = self.wait_place();
        let _held = lock_blocking(&place.mutex);
        place.woken.notify_all();
    }

    fn wait_place(&self) -> &'static WaitPlace {
        // Fibonacci hashing of the address: neighbouring locks land far apart.
        let address = self as *const ByteLock as usize as u64;
        let index = address.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> (64 - WAIT_PLACES.ilog2());
        &WAIT_PLACES_TABLE[index as usize]
    }

    /// Locks `data`, which this lock guards.
    ///
    /// # Safety
    /// Every access to `data` holds this lock (or has the only reference to both).
    #[inline]
    pub(crate) unsafe fn lock_data<'a, T>(&'a self, data: &'a UnsafeCell<T>) -> ByteGuard<'a, T> {
        self.lock();
        ByteGuard { lock: self, data }
    }

    /// [`lock_data`](Self::lock_data) if the lock is free, `None` if it is held.
    ///
    /// # Safety
    /// As for [`lock_data`](Self::lock_data).
    #[inline]
    pub(crate) unsafe fn try_lock_data<'a, T>(
        &'a self,
        data: &'a UnsafeCell<T>,
    ) -> Option<ByteGuard<'a, T>> {
        // Made only once the lock is taken: a guard dropped unlocks.
        self.try_lock().then(|| ByteGuard { lock: self, data })
    }
}

/// Data guarded by a [`ByteLock`], which the guard holds until it is dropped.
pub(crate) struct ByteGuard<'a, T> {
    lock: &'a ByteLock,
    data: &'a UnsafeCell<T>,
}

impl<T> Deref for ByteGuard<'_, T> {
    type Target = T;

    #[inline]
    fn deref(&self) -> &T {
        // SAFETY: the guard holds the lock that guards `data` (the contract of `lock_data`).
        unsafe { &*self.data.get() }
    }
}

impl<T> DerefMut for ByteGuard<'_, T> {
    #[inline]
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: as in `deref`; `&mut self` makes this the only reference through the guard.
        unsafe { &mut *self.data.get() }
    }
}

impl<T> Drop for ByteGuard<'_, T> {
    #[inline]
    fn drop(&mut self) {
        // SAFETY: the guard holds the lock, and goes with this drop.
        unsafe { self.lock.unlock() }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;
    use std::sync::Arc;
    use std::thread;
    use std::time::Duration;

    /// Threads that take the lock turn about, most of them finding it held: no update is lost
    /// (the spin's tries and the blocking fallback both give exclusive access).
    #[test]
    fn contended_locks_lose_no_update() {
        const THREADS: usize = 4;
        const ROUNDS: usize = 20_000;
        let state = Arc::new(Mutex::new(0usize));
        let workers: Vec<_> = (0..THREADS)
            .map(|_| {
                let state = Arc::clone(&state);
                thread::spawn(move || {
                    for _ in 0..ROUNDS {
                        let mut count = lock(&state);
                        // A read and a write apart: an overlap of two holders would lose one.
                        let seen = *count;
                        hint::spin_loop();
                        *count = seen + 1;
                    }
                })
            })
            .collect();
        for worker in workers {
            worker.join().unwrap();
        }
        assert_eq!(*lock(&state), THREADS * ROUNDS);
    }

    /// Takes the lock on another thread, returns once it is held, and writes `value` into the
    /// state after holding it for 3 ms: far longer than the spin (a few microseconds).
    fn hold_then_write(state: &Arc<Mutex<u32>>, value: u32) -> thread::JoinHandle<()> {
        let (held_tx, held_rx) = mpsc::channel();
        let state = Arc::clone(state);
        let holder = thread::spawn(move || {
            let mut guard = lock(&state);
            held_tx.send(()).unwrap();
            thread::sleep(Duration::from_millis(3));
            *guard = value;
        });
        held_rx.recv().unwrap();
        holder
    }

    /// A lock held past the spin: the waiter blocks, then gets the lock once it is released,
    /// and sees what the holder wrote.
    #[test]
    fn a_lock_held_longer_than_the_spin_is_waited_for() {
        let state = Arc::new(Mutex::new(0));
        let holder = hold_then_write(&state, 7);
        assert_eq!(*lock(&state), 7);
        holder.join().unwrap();
    }

    /// A panic while the lock was held leaves it poisoned; the state is still handed out, on
    /// the free path and on the contended one.
    #[test]
    fn a_poisoned_state_is_still_handed_out() {
        let state = Arc::new(Mutex::new(1));
        let poisoner = Arc::clone(&state);
        let _ = thread::spawn(move || {
            let _guard = poisoner.lock().unwrap();
            panic!("poison the state");
        })
        .join();
        assert!(state.is_poisoned());
        assert_eq!(*lock(&state), 1);

        let holder = hold_then_write(&state, 2);
        assert_eq!(*lock(&state), 2);
        holder.join().unwrap();
    }

    /// A counter guarded by a byte lock, for the byte lock's tests.
    struct Counted {
        lock: ByteLock,
        count: UnsafeCell<usize>,
    }

    // SAFETY: `count` is only reached under `lock` (see `Counted::lock`).
    unsafe impl Sync for Counted {}

    impl Counted {
        fn lock(&self) -> ByteGuard<'_, usize> {
            // SAFETY: every access to `count` goes through here.
            unsafe { self.lock.lock_data(&self.count) }
        }
    }

    /// The byte lock under threads that take it turn about, with holders slow enough that
    /// waiters run out of spin and block: no update is lost, and no waiter is left blocked
    /// (the test ends).
    #[test]
    fn contended_byte_locks_lose_no_update_and_strand_no_waiter() {
        const THREADS: usize = 4;
        const ROUNDS: usize = 2_000;
        let state = Arc::new(Counted {
            lock: ByteLock::new(),
            count: UnsafeCell::new(0),
        });
        let workers: Vec<_> = (0..THREADS)
            .map(|_| {
                let state = Arc::clone(&state);
                thread::spawn(move || {
                    for round in 0..ROUNDS {
                        let mut count = state.lock();
                        let seen = *count;
                        if round % 64 == 0 {
                            // Longer than the spin: the others block.
                            thread::sleep(Duration::from_micros(50));
                        }
                        *count = seen + 1;
                    }
                })
            })
            .collect();
        for worker in workers {
            worker.join().unwrap();
        }
        assert_eq!(*state.lock(), THREADS * ROUNDS);
        assert_eq!(
            state.lock.0.load(Ordering::Relaxed),
            0,
            "free, with no waiter marked"
        );
    }

    /// A byte lock held past the spin: the waiter blocks until the holder releases it, then
    /// sees what the holder wrote; `try_lock_data` fails while it is held.
    #[test]
    fn a_byte_lock_held_longer_than_the_spin_is_waited_for() {
        let state = Arc::new(Counted {
            lock: ByteLock::new(),
            count: UnsafeCell::new(0),
        });
        let (held_tx, held_rx) = mpsc::channel();
        let holder = {
            let state = Arc::clone(&state);
            thread::spawn(move || {
                let mut guard = state.lock();
                held_tx.send(()).unwrap();
                thread::sleep(Duration::from_millis(3));
                *guard = 7;
            })
        };
        held_rx.recv().unwrap();
        // SAFETY: the test's own lock and data.
        assert!(unsafe { state.lock.try_lock_data(&state.count) }.is_none());
        assert_eq!(*state.lock(), 7);
        holder.join().unwrap();
        // SAFETY: as above.
        assert!(unsafe { state.lock.try_lock_data(&state.count) }.is_some());
    }
}
