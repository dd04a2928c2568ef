//! Stress: many children in one nursery on the multi-threaded runtime, cancelled mid-flight, in
//! repeated cycles. Afterwards no task, timer or heap memory is left behind (principles 1, 4).
//!
//! `CHILDREN` is 100 000 — nine in ten block (sleeping forever, or on a one-hour timer), one in
//! ten loops on checkpoints. A cycle takes about 0.2 s in a release build and 0.6 s in a debug
//! build on a 2-core machine. The test is alone in its file because it counts the heap bytes of
//! the whole process.

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::future::Future;
use std::pin::pin;
use std::sync::atomic::{AtomicIsize, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::*;
use trellis::{checkpoint, lowlevel, nursery, sleep, sleep_forever, Error};

const CHILDREN: usize = 100_000;
/// One child in `LOOPER_EVERY` loops on checkpoints instead of blocking.
const LOOPER_EVERY: usize = 10;
const CYCLES: usize = 5;

/// The system allocator, counting the bytes currently allocated: an exact measure of heap
/// growth, where the resident set size moves with the allocator's caching.
struct Counting;

static LIVE_BYTES: AtomicIsize = AtomicIsize::new(0);

// SAFETY: every method forwards to `System` with the caller's arguments unchanged; the counter
// has no effect on the memory handed out.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = System.alloc(layout);
        if !p.is_null() {
            LIVE_BYTES.fetch_add(layout.size() as isize, Ordering::Relaxed);
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        let p = System.alloc_zeroed(layout);
        if !p.is_null() {
            LIVE_BYTES.fetch_add(layout.size() as isize, Ordering::Relaxed);
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        System.dealloc(ptr, layout);
        LIVE_BYTES.fetch_sub(layout.size() as isize, Ordering::Relaxed);
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let p = System.realloc(ptr, layout, new_size);
        if !p.is_null() {
            LIVE_BYTES.fetch_add(
                new_size as isize - layout.size() as isize,
                Ordering::Relaxed,
            );
        }
        p
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// Awaits `fut`, counting one in `started` right after its first poll. For a sleep that first poll
/// is where its timer enters the timer store, so a child counted here has its timer in place. A
/// count taken before the sleep could run ahead of the store: on the multi-threaded runtime a
/// worker can be preempted between the two.
async fn count_after_first_poll<F: Future>(started: &AtomicUsize, fut: F) -> F::Output {
    let mut fut = pin!(fut);
    let mut counted = false;
    std::future::poll_fn(|cx| {
        let poll = fut.as_mut().poll(cx);
        if !counted {
            counted = true;
            // Release: whoever sees the count also sees the timer inserted before it.
            started.fetch_add(1, Ordering::Release);
        }
        poll
    })
    .await
}

/// One cycle: spawn `CHILDREN` children, wait until every one has started (and every sleeper has
/// its timer), cancel the nursery, and return the runtime's counters once the nursery is done.
async fn cycle() -> lowlevel::RuntimeStatistics {
    let started = Arc::new(AtomicUsize::new(0));
    let s = started.clone();
    nursery(|n| async move {
        // The blocking children first, then the loopers, so that the loopers do not delay the
        // first polls of the others.
        let loopers = CHILDREN / LOOPER_EVERY;
        for i in 0..CHILDREN {
            let s = s.clone();
            n.spawn(async move {
                if i >= CHILDREN - loopers {
                    s.fetch_add(1, Ordering::Release);
                    loop {
                        checkpoint().await?;
                    }
                } else if i % 2 == 0 {
                    count_after_first_poll(&s, sleep_forever()).await?;
                } else {
                    count_after_first_poll(&s, sleep(Duration::from_secs(3600))).await?;
                }
                Ok::<_, Error>(())
            })?;
        }
        while s.load(Ordering::Acquire) < CHILDREN {
            sleep(Duration::from_millis(1)).await?;
        }
        let stats = lowlevel::statistics();
        assert_eq!(stats.live_tasks, CHILDREN);
        assert_eq!(stats.timers, (CHILDREN - loopers) / 2);
        n.cancel();
        Ok::<_, Error>(())
    })
    .await
    .unwrap();
    assert_eq!(started.load(Ordering::Relaxed), CHILDREN);
    lowlevel::statistics()
}

#[test]
fn cancelling_a_hundred_thousand_children_leaves_nothing_behind() {
    let rt = multi_thread(4);
    let mut heap = Vec::new();
    for round in 0..CYCLES {
        let stats = rt.block_on(cycle());
        assert_eq!((stats.live_tasks, stats.timers), (0, 0), "round {round}");
        heap.push(LIVE_BYTES.load(Ordering::Relaxed));
    }
    // The first cycle may set up things that live for the whole process (thread-local caches,
    // lazily made statics); after it, a cycle must give back everything it took. Leaking even one
    // byte per child would show as 100 000 bytes per cycle.
    for (round, bytes) in heap.iter().enumerate().skip(1) {
        let growth = bytes - heap[0];
        assert!(
            growth.abs() < 16 * 1024,
            "heap moved by {growth} bytes from cycle 0 to cycle {round}: {heap:?}"
        );
    }
}
