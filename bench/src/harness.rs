//! Running the suite: warm-up, interleaved rounds, failure isolation and a watchdog.
//!
//! For each workload, every selected runtime runs once per round in a fixed order
//! (A B C D E, A B C D E, ...), so slow drifts of the machine (frequency, noisy neighbours)
//! spread over all runtimes instead of landing on one. The optional warm-up round is run the
//! same way and discarded.
//!
//! A sample that panics marks its row as failed and the suite goes on; a sample that hangs is
//! caught by the watchdog, which ends the process with a message naming it (a hung runtime
//! cannot be recovered in-process).

use std::panic::{self, AssertUnwindSafe};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use crate::memory;
use crate::runtimes::{self, Outcome, Runtime};
use crate::workloads::{Sizes, Workload};

/// What to run.
#[derive(Clone, Debug)]
pub struct Plan {
    pub sizes: Sizes,
    pub warmup: bool,
    pub rounds: usize,
    pub workloads: Vec<Workload>,
    pub runtimes: Vec<Runtime>,
    /// The longest one sample may take before the watchdog ends the process.
    pub sample_limit: Duration,
    /// `Builder::yield_budget` of the trellis runtimes (the library's default unless `--yield-budget` says otherwise).
    pub trellis_yield_budget: u32,
}

/// The result of one runtime on one workload.
#[derive(Clone, Debug)]
pub enum Row {
    /// One value per measured round (warm-up excluded), in round order.
    Samples(Vec<f64>),
    /// The runtime cannot run this workload.
    NotAvailable,
    /// A sample panicked; the message.
    Failed(String),
}

/// The results of one workload, one row per runtime in plan order.
#[derive(Clone, Debug)]
pub struct WorkloadResult {
    pub workload: Workload,
    pub rows: Vec<(Runtime, Row)>,
}

/// Runs every workload of `plan`, calling `on_done` after each one (to print as we go).
pub fn run(plan: &Plan, mut on_done: impl FnMut(&WorkloadResult)) -> Vec<WorkloadResult> {
    let watchdog = Watchdog::start();
    plan.workloads
        .iter()
        .map(|&workload| {
            let result = run_workload(plan, workload, &watchdog);
            on_done(&result);
            result
        })
        .collect()
}

fn run_workload(plan: &Plan, workload: Workload, watchdog: &Watchdog) -> WorkloadResult {
    let mut rows: Vec<(Runtime, Row)> = plan
        .runtimes
        .iter()
        .map(|&rt| (rt, Row::Samples(Vec::with_capacity(plan.rounds))))
        .collect();
    let warmup_rounds = usize::from(plan.warmup);
    for round in 0..warmup_rounds + plan.rounds {
        for (runtime, row) in &mut rows {
            let Row::Samples(samples) = row else {
                continue;
            };
            let label = format!("{} on {} (round {round})", workload.name(), runtime.name());
            watchdog.arm(label, plan.sample_limit);
            let outcome =
                panic::catch_unwind(AssertUnwindSafe(|| sample(*runtime, workload, &plan.sizes)));
            watchdog.disarm();
            match outcome {
                Ok(Outcome::Value(v)) if round >= warmup_rounds => samples.push(v),
                Ok(Outcome::Value(_)) => {}
                Ok(Outcome::NotAvailable) => *row = Row::NotAvailable,
                Err(payload) => *row = Row::Failed(panic_message(&*payload)),
            }
        }
    }
    WorkloadResult { workload, rows }
}

/// One sample; `idle_memory` runs in a fresh process (see `memory`).
fn sample(runtime: Runtime, workload: Workload, sizes: &Sizes) -> Outcome {
    if !runtime.runs(workload) {
        return Outcome::NotAvailable;
    }
    match workload {
        Workload::IdleMemory => memory::measure_in_child(runtime, sizes),
        _ => runtimes::measure(runtime, workload, sizes),
    }
}

fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "panic with a non-string payload".to_owned()
    }
}

/// Ends the process if the armed sample runs past its deadline.
struct Watchdog {
    armed: Arc<Mutex<Option<(String, Instant, Duration)>>>,
}

impl Watchdog {
    fn start() -> Watchdog {
        let armed: Arc<Mutex<Option<(String, Instant, Duration)>>> = Arc::default();
        let watched = armed.clone();
        thread::Builder::new()
            .name("bench-watchdog".into())
            .spawn(move || loop {
                thread::sleep(Duration::from_millis(100));
                if let Some((label, started, limit)) = &*watched.lock().unwrap() {
                    if started.elapsed() > *limit {
                        eprintln!(
                            "trellis-bench: {label} still running after {limit:?}; giving up"
                        );
                        std::process::exit(2);
                    }
                }
            })
            .expect("spawn watchdog");
        Watchdog { armed }
    }

    fn arm(&self, label: String, limit: Duration) {
        *self.armed.lock().unwrap() = Some((label, Instant::now(), limit));
    }

    fn disarm(&self) {
        *self.armed.lock().unwrap() = None;
    }
}
