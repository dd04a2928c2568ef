//! One producer sends 1 000 000 messages through a channel to one consumer; prints the time per
//! message and the heap allocations per message (counted by a wrapping global allocator) once
//! the channel is warm. Run with `cargo run --release --example channel_throughput`.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use trellis::channel::{self, Receiver, Sender};
use trellis::{Error, Flavor, Runtime};

struct Counting;

static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);

// SAFETY: forwards every call to the system allocator unchanged; only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: same contract as the caller's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

const MESSAGES: u64 = 1_000_000;
const WARMUP: u64 = 10_000;

async fn produce(tx: Sender<u64>) -> Result<(), Error> {
    for i in 0..WARMUP + MESSAGES {
        tx.send(i).await?;
    }
    Ok(())
}

/// Receives everything; returns (time, allocations) for the messages after the warm-up.
async fn consume(rx: Receiver<u64>) -> Result<(f64, u64), Error> {
    for _ in 0..WARMUP {
        rx.recv().await?;
    }
    let allocs = ALLOCATIONS.load(Ordering::Relaxed);
    let start = Instant::now();
    let mut sum = 0u64;
    for _ in 0..MESSAGES {
        sum = sum.wrapping_add(rx.recv().await?);
    }
    let elapsed = start.elapsed().as_secs_f64();
    assert!(sum > 0);
    Ok((elapsed, ALLOCATIONS.load(Ordering::Relaxed) - allocs))
}

fn run(flavor: Flavor, capacity: Option<usize>) {
    let rt = Runtime::builder()
        .flavor(flavor)
        .worker_threads(2)
        .build()
        .unwrap();
    let (elapsed, allocs) = rt.block_on(async {
        let (tx, rx) = match capacity {
            Some(n) => channel::bounded(n),
            None => channel::unbounded(),
        };
        trellis::nursery(|n| async move {
            n.spawn(produce(tx))?;
            let consumer = n.spawn(consume(rx))?;
            consumer.await
        })
        .await
        .unwrap()
    });
    let kind = match capacity {
        Some(n) => format!("bounded({n})"),
        None => "unbounded".to_owned(),
    };
    println!(
        "{flavor:?} {kind:>14}: {:7.1} ns/message, {:.4} allocations/message",
        elapsed * 1e9 / MESSAGES as f64,
        allocs as f64 / MESSAGES as f64
    );
}

fn main() {
    for flavor in [Flavor::CurrentThread, Flavor::MultiThread] {
        for capacity in [Some(0), Some(1), Some(128), None] {
            run(flavor, capacity);
        }
    }
}
