//! How a shared state mutex is taken: [`lock`], which spins a little before the thread blocks,
//! or [`lock_blocking`], which does not spin. Both hand out a poisoned state (see [`lock`]).
//!
//! Every primitive and channel keeps its state behind one `std::sync::Mutex` (see
//! `sync::parking_lot`), and so does every node of the cancel tree (see `cancel::node`): held
//! for well under a microsecond, never across an `await`. On the multi-thread flavour tasks on
//! different workers take a busy state turn about: a channel's once per message, a nursery's
//! node once per child spawned and once per child that exits. `std`'s mutex spins only while
//! no thread sleeps on it; once one has, every unlock is a `futex` wake and every contended
//! lock a `futex` wait, and two busy workers stay in that mode. Measured on two workers: on the
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

use std::hint;
use std::sync::{Mutex, MutexGuard, TryLockError};

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
    let mut pause = FIRST_PAUSE;
    while pause <= LONGEST_PAUSE {
        for _ in 0..pause {
            hint::spin_loop();
        }
        match state.try_lock() {
            Ok(guard) => return guard,
            Err(TryLockError::Poisoned(poisoned)) => return poisoned.into_inner(),
            Err(TryLockError::WouldBlock) => pause *= 2,
        }
    }
    lock_blocking(state)
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
}
