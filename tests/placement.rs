//! Where the multi-threaded flavour runs a newly spawned task (docs/design.md, "Scheduler": a
//! spawn wakes a helper only once two tasks wait): on the spawning worker while it is the only
//! one waiting there, and on a helper worker once two wait.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::ThreadId;
use std::time::{Duration, Instant};

use common::*;
use trellis::{nursery, Error, Nursery};

/// Each link records the thread it ran on, then spawns the next.
fn link(n: Nursery<Error>, left: usize, threads: Arc<Mutex<Vec<ThreadId>>>) -> Result<(), Error> {
    threads.lock().unwrap().push(std::thread::current().id());
    if left > 0 {
        let next = n.clone();
        n.spawn(async move { link(next, left - 1, threads) })?;
    }
    Ok(())
}

// A chain of tasks that each spawn the next and end: every new task is the only one waiting on
// its worker, so the chain stays there instead of crossing to the other worker at each link.
#[test]
fn a_chain_of_spawns_stays_on_its_worker() {
    const LINKS: usize = 1_000;
    let threads = Arc::new(Mutex::new(Vec::new()));
    let t = threads.clone();
    multi_thread(2)
        .block_on(nursery(move |n: Nursery<Error>| async move {
            let next = n.clone();
            n.spawn(async move { link(next, LINKS - 1, t) })?;
            Ok(())
        }))
        .unwrap();
    let threads = threads.lock().unwrap();
    assert_eq!(threads.len(), LINKS);
    let crossings = threads.windows(2).filter(|w| w[0] != w[1]).count();
    assert!(
        crossings <= 2,
        "{crossings} of {LINKS} links ran on another worker than the one before"
    );
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
