//! Resident memory, for the `idle_memory` workload.
//!
//! Each sample runs in a fresh child process (this binary re-executed with [`CHILD_FLAG`]): in
//! a process that has already run other workloads, the allocator hands back memory those freed,
//! and the growth it shows is too small.

use std::process::Command;

use crate::runtimes::{self, Outcome, Runtime};
use crate::workloads::{Sizes, Workload};

/// The hidden flag that makes the binary run one `idle_memory` sample and print it:
/// `--idle-memory-child RUNTIME TASKS WORKERS`.
pub const CHILD_FLAG: &str = "--idle-memory-child";

/// The resident set size of this process in bytes, from `/proc/self/statm`.
pub fn rss_bytes() -> usize {
    let statm = std::fs::read_to_string("/proc/self/statm").expect("read /proc/self/statm");
    let pages: usize = statm
        .split_whitespace()
        .nth(1)
        .and_then(|field| field.parse().ok())
        .expect("parse /proc/self/statm");
    // SAFETY: sysconf has no preconditions and _SC_PAGESIZE is always supported on Linux.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    pages * usize::try_from(page).expect("page size")
}

/// Runs one `idle_memory` sample of `runtime` in a child process.
pub fn measure_in_child(runtime: Runtime, sizes: &Sizes) -> Outcome {
    let exe = std::env::current_exe().expect("current_exe");
    let out = Command::new(exe)
        .args([
            CHILD_FLAG,
            runtime.name(),
            &sizes.idle_tasks.to_string(),
            &runtimes::worker_threads().to_string(),
        ])
        .output()
        .expect("spawn idle-memory child");
    let stdout = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        panic!(
            "idle-memory child for {} failed ({}):\n{}{}",
            runtime.name(),
            out.status,
            stdout,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    match stdout.trim() {
        "n/a" => Outcome::NotAvailable,
        value => Outcome::Value(value.parse().expect("idle-memory child output")),
    }
}

/// The child side: `args` are what follows [`CHILD_FLAG`]. Prints bytes per task, or `n/a`.
pub fn child_main(args: &[String]) {
    let [runtime, tasks, workers] = args else {
        panic!("usage: {CHILD_FLAG} RUNTIME TASKS WORKERS");
    };
    let runtime = Runtime::from_name(runtime).expect("unknown runtime");
    runtimes::set_worker_threads(workers.parse().expect("WORKERS"));
    let sizes = Sizes {
        idle_tasks: tasks.parse().expect("TASKS"),
        ..Sizes::SMOKE
    };
    match runtimes::measure(runtime, Workload::IdleMemory, &sizes) {
        Outcome::Value(bytes) => println!("{bytes}"),
        Outcome::NotAvailable => println!("n/a"),
    }
}
