//! `Mutex`'s lock word: a free lock nobody waits for is taken and released with one
//! compare-and-swap each; the first waiter moves the lock, with its owner, into the queue, where
//! FIFO hand-off rules (trio's `Lock`), and a release that finds nobody waiting gives it back
//! to the word. These tests run with the default yield budget, where the word is used (under
//! trio's rule every `lock` goes through the queue and yields after taking the lock).

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex as StdMutex};

use common::{block_on_current, multi_thread, poll_once};
use trellis::lowlevel::current_task;
use trellis::sync::{LockStatistics, Mutex};
use trellis::testing::wait_all_tasks_blocked;
use trellis::{checkpoint, nursery, CancelScope, Error};

fn stats(locked: bool, owner: Option<u64>, tasks_waiting: usize) -> (bool, Option<u64>, usize) {
    (locked, owner, tasks_waiting)
}

fn seen(s: LockStatistics) -> (bool, Option<u64>, usize) {
    (s.locked, s.owner, s.tasks_waiting)
}

// FIFO hand-off holds across the move from the word to the queue: the holder took the lock at
// once, two tasks queue behind it, and when the holder asks again it queues behind them (no
// barging); statistics name the owner throughout.
#[test]
fn a_lock_taken_at_once_keeps_its_owner_and_fifo_order_once_tasks_queue() {
    block_on_current(async {
        let lock = Arc::new(Mutex::new(Vec::new()));
        let l = lock.clone();
        nursery(|n| async move {
            let me = current_task().id;
            let mut guard = l.lock().await?;
            assert_eq!(seen(l.statistics()), stats(true, Some(me), 0));
            let mut ids = Vec::new();
            for name in ["b", "c"] {
                let l = l.clone();
                let handle = n.spawn(async move {
                    l.lock().await?.push(name);
                    Ok(())
                })?;
                ids.push(handle.id());
            }
            wait_all_tasks_blocked().await?;
            assert_eq!(seen(l.statistics()), stats(true, Some(me), 2));
            guard.push("a");
            drop(guard);
            // Handed to "b", which has not run yet: still held, by "b", and "c" waits.
            assert_eq!(seen(l.statistics()), stats(true, Some(ids[0]), 1));
            l.lock().await?.push("a again");
            Ok::<_, Error>(())
        })
        .await
        .unwrap();
        assert_eq!(*lock.lock().await.unwrap(), ["a", "b", "c", "a again"]);
        assert_eq!(seen(lock.statistics()), stats(false, None, 0));
    });
}

// principle 4: a cancelled waiter keeps no place in line; when the holder then releases, nobody
// waits, so the lock is free again and the next `lock` takes it at once.
#[test]
fn a_cancelled_sole_waiter_leaves_the_lock_free_after_the_release() {
    block_on_current(async {
        let lock = Arc::new(Mutex::new(0));
        let l = lock.clone();
        nursery(|n| async move {
            let me = current_task().id;
            let guard = l.lock().await?;
            let scope = CancelScope::new();
            let (s, l2) = (scope.clone(), l.clone());
            let waiter =
                n.spawn(async move { Ok::<_, Error>(s.run(l2.lock()).await.is_none()) })?;
            wait_all_tasks_blocked().await?;
            assert_eq!(seen(l.statistics()), stats(true, Some(me), 1));
            scope.cancel();
            assert!(waiter.await?, "the wait was cancelled");
            assert_eq!(seen(l.statistics()), stats(true, Some(me), 0));
            drop(guard);
            assert_eq!(seen(l.statistics()), stats(false, None, 0));
            *l.lock().await? += 1;
            let again = l.try_lock().expect("free again");
            assert_eq!(seen(l.statistics()), stats(true, Some(me), 0));
            drop(again);
            Ok::<_, Error>(())
        })
        .await
        .unwrap();
        assert_eq!(*lock.lock().await.unwrap(), 1);
    });
}

// principle 4: a waiter the lock was handed to, dropped before it ran, passes the lock on; with
// nobody else waiting the lock is free, and taken at once afterwards.
#[test]
fn a_handed_lock_dropped_before_it_ran_is_free_again() {
    block_on_current(async {
        let lock = Mutex::new(0);
        let guard = lock.lock().await.unwrap();
        {
            let mut waiting = Box::pin(lock.lock());
            assert!(poll_once(waiting.as_mut()).await.is_pending());
            assert_eq!(lock.statistics().tasks_waiting, 1);
            drop(guard); // handed to `waiting`, which is dropped without taking it
            assert!(lock.is_locked());
        }
        assert_eq!(seen(lock.statistics()), stats(false, None, 0));
        *lock.try_lock().expect("free again") += 1;
        *lock.lock().await.unwrap() += 1;
        assert_eq!(*lock.lock().await.unwrap(), 2);
    });
}

// Mutual exclusion across threads, through every path: tasks on two workers take the lock at
// once, queue behind it (a holder checkpoints while holding it now and then) and get it handed
// over. No two holders ever overlap and no increment is lost.
#[test]
fn tasks_on_two_workers_never_hold_the_lock_together() {
    const TASKS: usize = 4;
    const ROUNDS: usize = 5_000;
    let (count, overlaps) = multi_thread(2).block_on(async {
        let lock = Arc::new(Mutex::new(0usize));
        let inside = Arc::new(AtomicUsize::new(0));
        let overlaps = Arc::new(StdMutex::new(0usize));
        let (l, o) = (lock.clone(), overlaps.clone());
        nursery(|n| async move {
            for t in 0..TASKS {
                let (l, inside, o) = (l.clone(), inside.clone(), o.clone());
                n.spawn(async move {
                    for i in 0..ROUNDS {
                        let mut guard = l.lock().await?;
                        if inside.fetch_add(1, Ordering::SeqCst) != 0 {
                            *o.lock().unwrap() += 1;
                        }
                        *guard += 1;
                        if (i + t) % 64 == 0 {
                            checkpoint().await?;
                        }
                        inside.fetch_sub(1, Ordering::SeqCst);
                    }
                    Ok::<_, Error>(())
                })?;
            }
            Ok::<_, Error>(())
        })
        .await
        .unwrap();
        let count = *lock.lock().await.unwrap();
        let overlaps = *overlaps.lock().unwrap();
        (count, overlaps)
    });
    assert_eq!((count, overlaps), (TASKS * ROUNDS, 0));
}
