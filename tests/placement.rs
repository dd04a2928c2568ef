//! Where the multi-threaded flavour runs a newly spawned task (docs/design.md, "Scheduler": a
//! spawn wakes a helper only once two tasks wait): on the spawning worker while it is the only
//! one waiting there, and on a helper worker once two wait.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use trellis::{lowlevel, nursery, Error, Nursery};

// A spawn that leaves one task waiting on its worker wakes no other worker: the new task runs
// there once the spawning task's poll ends. Before, every spawn woke a sleeping worker, which
// then stole the task across cores (a chain of tasks that each spawn the next crossed at every
// few links). The task waits in a short sleep first, so that both workers are idle: the sleep's
// wake-up puts it in the LIFO slot of the worker that fired the timer, which wakes no one, and
// the other worker sleeps.
#[test]
fn a_spawn_that_leaves_one_task_waiting_wakes_no_worker() {
    multi_thread(2)
        .block_on(nursery(|n: Nursery<Error>| async move {
            let inner = n.clone();
            n.spawn(async move {
                for round in 0..5 {
                    trellis::sleep(Duration::from_millis(1)).await?;
                    let before = lowlevel::statistics().worker_wakeups;
                    inner.spawn(async { Ok(()) })?;
                    let after = lowlevel::statistics().worker_wakeups;
                    assert_eq!(after, before, "round {round}");
                }
                Ok(())
            })?;
            Ok(())
        }))
        .unwrap();
}

/// Counts itself in, then spins (never yielding its worker) until `expected` tasks have, or
/// `limit` has passed: true if they all met.
fn meet(arrived: &AtomicUsize, expected: usize, limit: Duration) -> bool {
    arrived.fetch_add(1, Ordering::SeqCst);
    let start = Instant::now();
    while arrived.load(Ordering::SeqCst) < expected {
        if start.elapsed() > limit {
            return false;
        }
        std::hint::spin_loop();
    }
    true
}

// Two new tasks waiting on one worker wake a helper: two tasks that each hold their worker until
// the other has started meet, which they could not on one worker. Spawned from a task, so that
// the spawns are a worker's own (the main future runs on the `block_on` thread).
#[test]
fn two_waiting_tasks_wake_a_helper() {
    let arrived = Arc::new(AtomicUsize::new(0));
    let met = Arc::new(AtomicUsize::new(0));
    let (a, m) = (arrived.clone(), met.clone());
    multi_thread(2)
        .block_on(nursery(move |n: Nursery<Error>| async move {
            let inner = n.clone();
            n.spawn(async move {
                for _ in 0..2 {
                    let (a, m) = (a.clone(), m.clone());
                    inner.spawn(async move {
                        if meet(&a, 2, Duration::from_secs(10)) {
                            m.fetch_add(1, Ordering::SeqCst);
                        }
                        Ok(())
                    })?;
                }
                Ok(())
            })?;
            Ok(())
        }))
        .unwrap();
    assert_eq!(met.load(Ordering::SeqCst), 2);
}
