//! The runtimes under test and the dispatch from (runtime, workload) to the arm that runs it.
//!
//! Each `*_arms.rs` file holds every workload for one runtime, written the way a user of that
//! runtime would write it, so that the three files can be read side by side. Each arm builds a
//! fresh runtime, spawns the workload body as a task, and returns what the body measured from
//! inside the runtime (runtime start-up and shutdown are never timed).

mod floor_arms;
mod smol_arms;
mod tokio_arms;
#[cfg(feature = "trellis")]
pub mod trellis_arms;

/// Without the `trellis` feature every trellis row is "n/a".
#[cfg(not(feature = "trellis"))]
pub mod trellis_arms {
    use super::Outcome;
    use crate::workloads::{Sizes, Workload};

    pub fn run(_: Workload, _: bool, _: &Sizes) -> Outcome {
        Outcome::NotAvailable
    }

    pub fn set_yield_budget(_: u32) {}
}

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use crate::workloads::{Sizes, Workload};

/// One runtime configuration under test.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Runtime {
    /// trellis, multi-threaded: one worker per core.
    TrellisMt,
    /// trellis, current-thread flavour.
    TrellisCt,
    /// tokio multi-thread scheduler, one worker per core.
    TokioMt,
    /// tokio current-thread scheduler.
    TokioCt,
    /// async-executor with one runner thread per core (the calling thread is one of them) and
    /// async-io's reactor: what `smol` is made of.
    Smol,
    /// Not a competitor: a bare executor on the crates trellis schedules with (`async-task`,
    /// `concurrent-queue`), one thread, for the scheduler-bound rows only. What trellis costs
    /// over its foundations is measured against it; it is never in the ratio.
    Floor,
}

impl Runtime {
    /// Every runtime, in the order each round runs them.
    pub const ALL: [Runtime; 6] = [
        Runtime::TrellisMt,
        Runtime::TrellisCt,
        Runtime::TokioMt,
        Runtime::TokioCt,
        Runtime::Smol,
        Runtime::Floor,
    ];

    /// The name used on the command line, in the table and in the JSON output.
    pub fn name(self) -> &'static str {
        match self {
            Runtime::TrellisMt => "trellis-mt",
            Runtime::TrellisCt => "trellis-ct",
            Runtime::TokioMt => "tokio-mt",
            Runtime::TokioCt => "tokio-ct",
            Runtime::Smol => "smol",
            Runtime::Floor => "floor",
        }
    }

    /// Looks a runtime up by its exact name.
    pub fn from_name(name: &str) -> Option<Runtime> {
        Runtime::ALL.into_iter().find(|r| r.name() == name)
    }

    /// Whether this is one of trellis's flavours (the left side of the ratio).
    pub fn is_trellis(self) -> bool {
        matches!(self, Runtime::TrellisMt | Runtime::TrellisCt)
    }

    /// Whether this is the floor, the reference that is neither side of the ratio.
    pub fn is_floor(self) -> bool {
        self == Runtime::Floor
    }

    /// Whether this runtime has a row for `workload` (only the floor lacks some).
    pub fn runs(self, workload: Workload) -> bool {
        !self.is_floor() || floor_arms::runs(workload)
    }
}

/// What one measurement produced.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Outcome {
    /// The measured value: nanoseconds for time workloads, bytes per task for memory.
    Value(f64),
    /// This runtime cannot run this workload (a trellis API it needs does not exist yet).
    NotAvailable,
}

/// Runs one sample of `workload` on `runtime`, in this process.
pub fn measure(runtime: Runtime, workload: Workload, sizes: &Sizes) -> Outcome {
    match runtime {
        Runtime::TrellisMt => trellis_arms::run(workload, true, sizes),
        Runtime::TrellisCt => trellis_arms::run(workload, false, sizes),
        Runtime::TokioMt => Outcome::Value(tokio_arms::run(workload, true, sizes)),
        Runtime::TokioCt => Outcome::Value(tokio_arms::run(workload, false, sizes)),
        Runtime::Smol => Outcome::Value(smol_arms::run(workload, sizes)),
        Runtime::Floor => floor_arms::run(workload, sizes),
    }
}

/// The `--workers` option; 0 until it is given.
static WORKERS: AtomicUsize = AtomicUsize::new(0);

/// The most worker threads `--workers` takes: more threads than this is a typing error, not a
/// measurement (every sample starts a fresh runtime, so each would start them all).
pub const MAX_WORKERS: usize = 1024;

/// Runs the multi-threaded runtimes (trellis-mt, tokio-mt, smol) with `n` worker threads
/// instead of one per core: the points of a scaling curve.
pub fn set_worker_threads(n: usize) {
    assert!(
        (1..=MAX_WORKERS).contains(&n),
        "worker threads: 1 to {MAX_WORKERS}"
    );
    WORKERS.store(n, Ordering::Relaxed);
}

/// The number of worker threads of the multi-threaded runtimes: one per core, unless
/// `--workers` said otherwise.
pub fn worker_threads() -> usize {
    match WORKERS.load(Ordering::Relaxed) {
        0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
        n => n,
    }
}

/// A measured duration as the `f64` nanoseconds that samples carry.
fn nanos(d: Duration) -> f64 {
    d.as_nanos() as f64
}
