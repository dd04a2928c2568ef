//! Cancellation injection: proving that an operation is cancel-safe by cancelling it at each of
//! its checkpoints in turn (principle 4, C1), and dropping it at each of its suspensions.
//!
//! How the k-th checkpoint is found from outside the operation:
//!
//! 1. Every checkpoint's cancel check (`cancel::fails_here`, `CancelWaiter::poll_cancelled`)
//!    tells the thread's *checkpoint hook*, if one is installed, before it looks at its node's
//!    cancelled flag; with no hook installed that costs one thread-local read. A check in a node
//!    that is already cancelled fails anyway and is not reported.
//! 2. A run wraps the operation in a fresh `CancelScope` and in a `Driven` future that
//!    installs the hook (a `Probe`) for the duration of each of its polls only: the checks
//!    the probe sees are those of the operation's own task (its code, nested scopes and nursery
//!    bodies), not those of tasks it spawns, which the scheduler polls separately. The first run
//!    only counts: N checkpoints, S suspensions (polls that returned `Pending`).
//! 3. Cancel mode, run k: at the k-th check the probe cancels the wrapping scope and the check
//!    looks again, so that checkpoint fails with `Cancelled` and every later one in the scope
//!    too (level-triggered), exactly as a real cancel at that moment; spawned tasks see it at
//!    their next checkpoint, as they would. Drop mode: the driver drops the operation's future
//!    (the forced path, N11) right after the j-th poll that returned `Pending` (k = 2j - 1),
//!    or just before the poll that would resume it (k = 2j).
//! 4. Seeded mode: the probe is installed around the whole run instead, so it sees the checks
//!    of every task (all run on this thread: the runtime is current-thread), and at the chosen
//!    checks cancels the innermost scope, nursery or task around the check.
//!
//! Each run has a fresh state (from `setup`) and a fresh current-thread runtime on an
//! autojumping [`MockClock`](crate::testing::MockClock) with deadlock detection, so runs are deterministic, repeat exactly
//! up to the injection, and a run that hangs fails instead of hanging the test.

//!
//! Files: this one holds the harness and its loops over k and seeds; `probe.rs` the hook, the
//! driver and one run; `report.rs` what a check returns (and how a failure explains itself).

mod probe;
mod report;

pub use report::{Ending, InjectFailure, InjectMode, InjectReport};

use std::future::Future;
use std::ops::Range;

use crate::error::Outcome;
use probe::{run_once, seed_targets, Plan, Probe};

/// A cancellation injection harness: runs an operation once to count its checkpoints, then
/// once per checkpoint on fresh state, cancelling it exactly there, and checks an invariant
/// after every run (principle 4: a cancelled operation leaves no trace).
///
/// [`check`](CancelInjection::check) injects into the operation's own task, at each checkpoint
/// in turn ([`InjectMode::Cancel`]) and at each suspension in turn ([`InjectMode::Drop`]).
/// [`check_seeded`](CancelInjection::check_seeded) injects at random checkpoints of every task
/// the operation runs, one set of points per seed.
///
/// What a run is made of:
/// - `setup()` makes fresh state `S` (cloned into the operation, kept for the invariant);
/// - `op(state)` makes the operation's future; its output must be able to carry a cancellation
///   (a `Result` whose error is [`Cancelled`](crate::Cancelled), [`Error`](crate::Error), an
///   `io::Error`... or `()`), as for [`CancelScope::run`](crate::CancelScope::run);
/// - `invariant(state, ending)` makes a future that runs after the operation, in the same
///   runtime, and panics (`assert!`) if the state is wrong; it may await (to drain a channel,
///   say). [`Ending`] says how the operation ended: it returned, its cancellation ended it, or
///   its future was dropped.
///
/// Every run has its own current-thread runtime on an autojumping [`MockClock`](crate::testing::MockClock) with deadlock
/// detection: runs are deterministic, sleeps take no real time, and an operation that hangs
/// after a cancellation fails the check instead of hanging it. Call the harness from a plain
/// `#[test]`, not from inside a runtime. An operation that spawns tasks must own them (in a
/// nursery inside it), as structured code does.
///
/// The cost is quadratic: N checkpoints make N + 1 runs of up to N checkpoints each, per mode.
/// Keep the operation small: the few steps whose safety is in question.
///
/// ```
/// use std::sync::{Arc, Mutex};
/// use trellis::testing::{CancelInjection, InjectMode};
///
/// // Planted bug: the message is held across a checkpoint before it is stored.
/// let failure = CancelInjection::new()
///     .check(
///         || {
///             let (tx, rx) = trellis::channel::bounded::<u32>(1);
///             tx.try_send(7).unwrap();
///             (rx, Arc::new(Mutex::new(Vec::new())))
///         },
///         |(rx, got)| async move {
///             let message = rx.recv().await?;
///             trellis::checkpoint().await?; // cancelled here: the message is lost
///             got.lock().unwrap().push(message);
///             Ok::<_, trellis::Error>(())
///         },
///         |(rx, got), _| async move {
///             let mut seen = got.lock().unwrap().clone();
///             seen.extend(rx.try_recv().ok());
///             assert_eq!(seen, [7], "the message was lost or duplicated");
///         },
///     )
///     .unwrap_err();
/// assert_eq!((failure.mode, failure.checkpoint), (InjectMode::Cancel, 2));
/// assert_eq!(failure.operation, Some("checkpoint"));
/// ```
#[derive(Debug, Clone)]
pub struct CancelInjection {
    cancel: bool,
    drop: bool,
    at: Option<usize>,
    seeds: Range<u64>,
}

impl Default for CancelInjection {
    fn default() -> Self {
        CancelInjection {
            cancel: true,
            drop: true,
            at: None,
            seeds: 0..100,
        }
    }
}

impl CancelInjection {
    /// A harness that tries both modes at every checkpoint, and seeds `0..100` in seeded mode.
    ///
    /// ```
    /// use trellis::testing::CancelInjection;
    ///
    /// let report = CancelInjection::new()
    ///     .check(|| (), |()| async { Ok::<_, trellis::Cancelled>(()) }, |_, _| async {})
    ///     .unwrap();
    /// assert_eq!((report.checkpoints, report.runs), (0, 1)); // nothing to inject into
    /// ```
    pub fn new() -> Self {
        Self::default()
    }

    /// Injects in this mode only (default: [`InjectMode::Cancel`], then [`InjectMode::Drop`]).
    ///
    /// ```
    /// use trellis::testing::{CancelInjection, InjectMode};
    ///
    /// let report = CancelInjection::new()
    ///     .mode(InjectMode::Drop)
    ///     .check(|| (), |()| trellis::checkpoint(), |_, _| async {})
    ///     .unwrap();
    /// // Counting, then dropped as the one suspension begins, and as it ends.
    /// assert_eq!(report.runs, 3);
    /// ```
    pub fn mode(mut self, mode: InjectMode) -> Self {
        self.cancel = mode == InjectMode::Cancel;
        self.drop = mode == InjectMode::Drop;
        self
    }

    /// Injects at the k-th checkpoint (or drop point) only, after the counting run: replays one
    /// failure while fixing it.
    ///
    /// ```
    /// use std::sync::atomic::{AtomicU32, Ordering};
    /// use trellis::testing::{CancelInjection, Ending, InjectMode};
    ///
    /// let steps = AtomicU32::new(0);
    /// let endings = std::cell::RefCell::new(Vec::new());
    /// let report = CancelInjection::new()
    ///     .mode(InjectMode::Cancel)
    ///     .at(2)
    ///     .check(
    ///         || (),
    ///         |()| async {
    ///             trellis::checkpoint().await?;
    ///             steps.fetch_add(1, Ordering::SeqCst);
    ///             trellis::checkpoint().await?;
    ///             steps.fetch_add(1, Ordering::SeqCst);
    ///             Ok::<_, trellis::Cancelled>(())
    ///         },
    ///         |(), ending| {
    ///             endings.borrow_mut().push(ending);
    ///             async {}
    ///         },
    ///     )
    ///     .unwrap();
    /// assert_eq!(report.runs, 2);
    /// // The counting run, then the one cancelled at the 2nd checkpoint: 2 + 1 steps.
    /// assert_eq!(*endings.borrow(), [Ending::Returned(Ok(())), Ending::Cancelled]);
    /// assert_eq!(steps.load(Ordering::SeqCst), 3);
    /// ```
    pub fn at(mut self, k: usize) -> Self {
        self.at = Some(k);
        self
    }

    /// The seeds [`check_seeded`](CancelInjection::check_seeded) runs (default `0..100`); one
    /// seed replays a failure.
    ///
    /// ```
    /// use trellis::testing::CancelInjection;
    ///
    /// let report = CancelInjection::new()
    ///     .seeds(7..8)
    ///     .check_seeded(|| (), |()| trellis::checkpoint(), |_, _| async {})
    ///     .unwrap();
    /// assert_eq!(report.runs, 2); // counting, then seed 7
    /// ```
    pub fn seeds(mut self, seeds: Range<u64>) -> Self {
        self.seeds = seeds;
        self
    }

    /// Cancels the operation's own task at each of its checkpoints in turn, then drops it at
    /// each of its suspensions in turn, as it begins and as it ends (or only what
    /// [`mode`](CancelInjection::mode) and
    /// [`at`](CancelInjection::at) select), each time on fresh state, and runs the invariant
    /// after each run. Stops at the first failure.
    ///
    /// Only the operation's own task counts: its code, the scopes it enters and the bodies of
    /// its nurseries. Tasks it spawns are cancelled with it (they are inside its scope), at
    /// their next checkpoint; to inject into them at each of their own checkpoints, use
    /// [`check_seeded`](CancelInjection::check_seeded).
    ///
    /// ```
    /// use std::sync::Arc;
    /// use trellis::sync::Mutex;
    /// use trellis::testing::CancelInjection;
    ///
    /// // Mutex::lock is cancel-safe: cancelled or dropped anywhere, it leaves the lock free.
    /// let report = CancelInjection::new()
    ///     .check(
    ///         || Arc::new(Mutex::new(0)),
    ///         |m| async move {
    ///             *m.lock().await? += 1;
    ///             Ok::<_, trellis::Error>(())
    ///         },
    ///         |m, ending| async move {
    ///             assert!(!m.is_locked());
    ///             // Incremented if and only if the operation returned.
    ///             assert_eq!(*m.try_lock().unwrap(), i32::from(ending.returned().is_some()));
    ///         },
    ///     )
    ///     .unwrap();
    /// assert_eq!((report.checkpoints, report.suspensions), (1, 1));
    /// ```
    ///
    /// # Errors
    /// The first failure, with the mode, k and where; see [`InjectFailure`].
    ///
    /// # Panics
    /// If called from inside a trellis runtime (each run starts its own).
    pub fn check<S, T, Fut, Inv>(
        &self,
        setup: impl FnMut() -> S,
        op: impl FnMut(S) -> Fut,
        invariant: impl FnMut(S, Ending<T>) -> Inv,
    ) -> Result<InjectReport, Box<InjectFailure>>
    where
        S: Clone,
        Fut: Future<Output = T>,
        T: Outcome,
        Inv: Future<Output = ()>,
    {
        let attempts = |counted: &InjectReport| {
            let mut attempts = Vec::new();
            for (mode, total) in [
                (
                    InjectMode::Cancel,
                    self.cancel.then_some(counted.checkpoints),
                ),
                (
                    InjectMode::Drop,
                    self.drop.then_some(2 * counted.suspensions),
                ),
            ] {
                let Some(total) = total else { continue };
                let ks = match self.at {
                    Some(k) => k..k + 1,
                    None => 1..total + 1,
                };
                attempts.extend(ks.map(|k| Attempt {
                    plan: match mode {
                        InjectMode::Cancel => Plan::CancelAt(k),
                        InjectMode::Drop => Plan::DropAt(k),
                    },
                    mode,
                    k: Some(k),
                    total,
                    seed: None,
                }));
            }
            attempts
        };
        sweep(false, setup, op, invariant, attempts)
    }

    /// Injects at random checkpoints of every task the operation runs, spawned ones included:
    /// for each seed, one to three checkpoints are chosen among those of the counting run, and
    /// at each the innermost scope, nursery or task around it is cancelled (as a deadline
    /// there would), then the invariant runs. Deterministic per seed: the runtime is
    /// current-thread and the clock virtual, so a failing seed replays with
    /// [`seeds(seed..seed + 1)`](CancelInjection::seeds).
    ///
    /// ```
    /// use std::sync::{Arc, Mutex};
    /// use trellis::testing::CancelInjection;
    ///
    /// // A pipeline of two tasks: whatever gets cancelled where, every message sent is received
    /// // or still in the channel.
    /// let report = CancelInjection::new()
    ///     .seeds(0..20)
    ///     .check_seeded(
    ///         || (Arc::new(Mutex::new(Vec::new())), Arc::new(Mutex::new(Vec::new()))),
    ///         |(sent, got)| async move {
    ///             let (tx, rx) = trellis::channel::bounded::<u32>(0);
    ///             trellis::nursery(|n| async move {
    ///                 n.spawn(async move {
    ///                     for i in 0..3 {
    ///                         tx.send(i).await?;
    ///                         sent.lock().unwrap().push(i);
    ///                     }
    ///                     Ok::<_, trellis::Error>(())
    ///                 })?;
    ///                 n.spawn(async move {
    ///                     while let Ok(i) = rx.recv().await {
    ///                         got.lock().unwrap().push(i);
    ///                     }
    ///                     Ok(())
    ///                 })?;
    ///                 Ok(())
    ///             })
    ///             .await?;
    ///             Ok::<_, trellis::Error>(())
    ///         },
    ///         |(sent, got), _| async move {
    ///             // A send that completed was received (a rendezvous hands over directly).
    ///             assert_eq!(*sent.lock().unwrap(), *got.lock().unwrap());
    ///         },
    ///     )
    ///     .unwrap();
    /// assert_eq!(report.runs, 21);
    /// ```
    ///
    /// # Errors
    /// The first failing seed, with its injections; see [`InjectFailure`].
    ///
    /// # Panics
    /// If called from inside a trellis runtime.
    pub fn check_seeded<S, T, Fut, Inv>(
        &self,
        setup: impl FnMut() -> S,
        op: impl FnMut(S) -> Fut,
        invariant: impl FnMut(S, Ending<T>) -> Inv,
    ) -> Result<InjectReport, Box<InjectFailure>>
    where
        S: Clone,
        Fut: Future<Output = T>,
        T: Outcome,
        Inv: Future<Output = ()>,
    {
        let attempts = |counted: &InjectReport| {
            let total = counted.checkpoints;
            if total == 0 {
                return Vec::new();
            }
            self.seeds
                .clone()
                .map(|seed| Attempt {
                    plan: Plan::Seeded(seed_targets(seed, total)),
                    mode: InjectMode::Cancel,
                    // The first checkpoint the seed picked, known once it ran.
                    k: None,
                    total,
                    seed: Some(seed),
                })
                .collect()
        };
        sweep(true, setup, op, invariant, attempts)
    }
}

/// One injected run of a sweep, and how to name it if its invariant fails.
struct Attempt {
    plan: Plan,
    mode: InjectMode,
    /// The point injected at; `None`: the first one the run's probe recorded (seeded runs).
    k: Option<usize>,
    total: usize,
    seed: Option<u64>,
}

/// The sweep both modes of [`CancelInjection`] make: one counting run, then the runs
/// `attempts` plans from its counts, stopping at the first whose invariant fails.
/// `all_tasks`: inject into every task the operation runs, not only its own scope.
fn sweep<S, T, Fut, Inv>(
    all_tasks: bool,
    mut setup: impl FnMut() -> S,
    mut op: impl FnMut(S) -> Fut,
    mut invariant: impl FnMut(S, Ending<T>) -> Inv,
    attempts: impl FnOnce(&InjectReport) -> Vec<Attempt>,
) -> Result<InjectReport, Box<InjectFailure>>
where
    S: Clone,
    Fut: Future<Output = T>,
    T: Outcome,
    Inv: Future<Output = ()>,
{
    let mut run = |plan: Plan| {
        let probe = Probe::new(plan);
        let outcome = run_once(&probe, all_tasks, &mut setup, &mut op, &mut invariant);
        (probe, outcome)
    };
    let (counted, outcome) = run(Plan::Count);
    let mut report = InjectReport {
        checkpoints: counted.checks.get(),
        suspensions: counted.suspensions.get(),
        runs: 1,
        missed: 0,
    };
    if let Err(failed) = outcome {
        let total = report.checkpoints;
        return Err(failed.report(InjectMode::Cancel, 0, total, None, &counted));
    }
    for attempt in attempts(&report) {
        let (probe, outcome) = run(attempt.plan);
        report.runs += 1;
        if let Err(failed) = outcome {
            let k = attempt
                .k
                .unwrap_or_else(|| probe.points.borrow().first().map_or(0, |p| p.index));
            return Err(failed.report(attempt.mode, k, attempt.total, attempt.seed, &probe));
        }
        if !probe.injected() {
            report.missed += 1;
        }
    }
    Ok(report)
}
