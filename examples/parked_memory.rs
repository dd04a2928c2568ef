//! How much memory a parked task takes in this build: parks 100 000 tasks in `sleep_forever`
//! (as the benchmark's `idle_memory` row does) and prints the growth of the resident set per
//! task, then cancels them. Linux only (it reads `/proc/self/statm`). Run with
//! `cargo run --release --example parked_memory`.
//!
//! The figure depends on the build: a program that also builds a crate enabling `async-task`'s
//! `std` feature (`smol` does, and so the benchmark binary) pays 16 bytes more per task.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use trellis::{Error, Flavor, Nursery, Runtime};

const TASKS: usize = 100_000;

/// Resident memory of this process, in bytes.
fn resident() -> std::io::Result<usize> {
    let statm = std::fs::read_to_string("/proc/self/statm")?;
    let pages: usize = statm
        .split_whitespace()
        .nth(1)
        .and_then(|field| field.parse().ok())
        .ok_or_else(|| std::io::Error::other("unexpected /proc/self/statm"))?;
    // 4 KiB pages: the size on the Linux targets this example is for.
    Ok(pages * 4096)
}

fn main() -> Result<(), Error> {
    let rt = Runtime::builder().flavor(Flavor::CurrentThread).build()?;
    let per_task = rt.block_on(trellis::nursery(|n: Nursery<Error>| async move {
        let parked = Arc::new(AtomicUsize::new(0));
        let before = resident()?;
        for _ in 0..TASKS {
            let parked = parked.clone();
            n.spawn(async move {
                parked.fetch_add(1, Ordering::Relaxed);
                trellis::sleep_forever().await?;
                Ok(())
            })?;
        }
        // Every task has run to its wait.
        while parked.load(Ordering::Relaxed) < TASKS {
            trellis::checkpoint().await?;
        }
        let grown = resident()?.saturating_sub(before);
        n.cancel();
        Ok(grown as f64 / TASKS as f64)
    }))?;
    println!("{per_task:.1} bytes of resident memory per parked task ({TASKS} tasks)");
    Ok(())
}
