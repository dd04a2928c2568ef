//! Cancellation injection: proving that an operation is cancel-safe by cancelling it at each of
//! its checkpoints in turn (principle 4, C1), and dropping it at each of its suspensions.
//!
//! How the k-th checkpoint is found from outside the operation:
//!
//! 1. Every checkpoint's cancel check (`cancel::fails_here`, `CancelWaiter::poll_cancelled`)
//!    tells the thread's *checkpoint hook*, if one is installed, before it looks at its node's
//!    cancelled flag; with no hook installed that costs one thread-local read. A check in a node
//!    that is already cancelled fails anyway and is not reported.
//! 2. A run wraps the operation in a fresh [`CancelScope`] and in a [`Driven`] future that
//!    installs the hook (a [`Probe`]) for the duration of each of its polls only: the checks
//!    the probe sees are those of the operation's own task (its code, nested scopes and nursery
//!    bodies), not those of tasks it spawns, which the scheduler polls separately. The first run
//!    only counts: N checkpoints, S suspensions (polls that returned `Pending`).
//! 3. Cancel mode, run k: at the k-th check the probe cancels the wrapping scope and the check
//!    looks again, so that checkpoint fails with `Cancelled` and every later one in the scope
//!    too (level-triggered), exactly as a real cancel at that moment; spawned tasks see it at
//!    their next checkpoint, as they would. Drop mode, run k: after the k-th poll that returned
//!    `Pending`, the driver drops the operation's future (the forced path, N11).
//! 4. Seeded mode: the probe is installed around the whole run instead, so it sees the checks
//!    of every task (all run on this thread: the runtime is current-thread), and at the chosen
//!    checks cancels the innermost scope, nursery or task around the check.
//!
//! Each run has a fresh state (from `setup`) and a fresh current-thread runtime on an
//! autojumping [`MockClock`] with deadlock detection, so runs are deterministic, repeat exactly
//! up to the injection, and a run that hangs fails instead of hanging the test.

use std::backtrace::Backtrace;
use std::cell::{Cell, RefCell};
use std::fmt;
use std::future::Future;
use std::ops::Range;
use std::panic::{self, AssertUnwindSafe};
use std::path::Path;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use crate::cancel::current::{self, CheckpointHook};
use crate::cancel::{node, CancelScope, Scoped};
use crate::error::{CancelReason, Outcome};
use crate::lowlevel;
use crate::runtime::{Flavor, Runtime};
use crate::testing::MockClock;

/// How an injected cancellation reaches the operation.
///
/// ```
/// use trellis::testing::{CancelInjection, InjectMode};
///
/// // Only the cooperative path: each checkpoint in turn returns `Cancelled`.
/// let report = CancelInjection::new()
///     .mode(InjectMode::Cancel)
///     .check(|| (), |()| trellis::checkpoint(), |_, _| async {})
///     .unwrap();
/// assert_eq!(report.checkpoints, 1);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum InjectMode {
    /// The k-th checkpoint returns `Cancelled`, as if the scope around the operation had been
    /// cancelled right then; every later checkpoint in that scope fails too (level-triggered,
    /// C1), and tasks the operation spawned see it at their next checkpoint.
    Cancel,
    /// The operation's future is dropped while suspended (where a `select!`, a drop-style
    /// timeout or a dropped parent could drop it), twice per suspension: k = 2j - 1 drops it as
    /// soon as its j-th suspension begins, k = 2j when it is woken, just before it resumes
    /// (after whatever woke it happened: a value handed to it, a lock passed on).
    Drop,
}

impl fmt::Display for InjectMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            InjectMode::Cancel => "cancel",
            InjectMode::Drop => "drop",
        })
    }
}

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
///   `io::Error`... or `()`), as for [`CancelScope::run`];
/// - `invariant(state, ending)` makes a future that runs after the operation, in the same
///   runtime, and panics (`assert!`) if the state is wrong; it may await (to drain a channel,
///   say). [`Ending`] says how the operation ended: it returned, its cancellation ended it, or
///   its future was dropped.
///
/// Every run has its own current-thread runtime on an autojumping [`MockClock`] with deadlock
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

/// How the operation of one run ended; the invariant gets it.
///
/// ```
/// use trellis::testing::{CancelInjection, Ending};
///
/// let endings = std::cell::RefCell::new(Vec::new());
/// CancelInjection::new()
///     .check(
///         || (),
///         |()| trellis::checkpoint(),
///         |(), ending| {
///             endings.borrow_mut().push(ending.clone());
///             async {}
///         },
///     )
///     .unwrap();
/// // Counting; cancelled at the one checkpoint; dropped as it yields, and as it resumes.
/// assert_eq!(
///     *endings.borrow(),
///     [Ending::Returned(Ok(())), Ending::Cancelled, Ending::Dropped, Ending::Dropped]
/// );
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ending<T> {
    /// The operation returned this (which may be an error, or `Ok` from code that went on
    /// after a `Cancelled`).
    Returned(T),
    /// It returned the cancellation of the scope around it (the injected one), which the scope
    /// absorbed.
    Cancelled,
    /// Its future was dropped ([`InjectMode::Drop`]).
    Dropped,
}

impl<T> Ending<T> {
    /// What the operation returned, if it returned.
    ///
    /// ```
    /// use trellis::testing::Ending;
    ///
    /// assert_eq!(Ending::Returned(3).returned(), Some(3));
    /// assert_eq!(Ending::<u32>::Dropped.returned(), None);
    /// ```
    pub fn returned(self) -> Option<T> {
        match self {
            Ending::Returned(out) => Some(out),
            Ending::Cancelled | Ending::Dropped => None,
        }
    }
}

/// What a passed check saw.
///
/// ```
/// use trellis::testing::{CancelInjection, InjectReport};
///
/// // Two checkpoints; each yields once, so two suspensions; runs: 1 counting, 2 cancelling,
/// // 4 dropping (twice per suspension).
/// let report: InjectReport = CancelInjection::new()
///     .check(
///         || (),
///         |()| async {
///             trellis::checkpoint().await?;
///             trellis::checkpoint().await
///         },
///         |_, _| async {},
///     )
///     .unwrap();
/// assert_eq!((report.checkpoints, report.suspensions, report.runs), (2, 2, 7));
/// assert_eq!(report.missed, 0);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct InjectReport {
    /// Checkpoints (cancel checks) of the counting run: those of the operation's own task for
    /// [`check`](CancelInjection::check), of every task for
    /// [`check_seeded`](CancelInjection::check_seeded).
    pub checkpoints: usize,
    /// Polls of the operation's future that returned `Pending` in the counting run: the points
    /// where [`InjectMode::Drop`] drops it (twice each).
    pub suspensions: usize,
    /// Runs made, the counting run included.
    pub runs: usize,
    /// Runs that ended before reaching their injection point: the operation did not repeat the
    /// counting run (it depends on something outside the runtime), so those points went
    /// untested. 0 for a deterministic operation.
    pub missed: usize,
}

/// Why a check failed: where the cancellation was injected and what went wrong. Its `Display`
/// (also its `Debug`, so that `unwrap` prints it) says what to do about it.
///
/// ```
/// use trellis::testing::{CancelInjection, InjectMode};
///
/// // A "transfer" that takes the money out, then waits: cancelled there, the money is gone.
/// let failure = CancelInjection::new()
///     .mode(InjectMode::Drop)
///     .check(
///         || std::sync::Arc::new(std::sync::atomic::AtomicI64::new(10)),
///         |account| async move {
///             account.fetch_sub(10, std::sync::atomic::Ordering::SeqCst);
///             trellis::checkpoint().await?;
///             account.fetch_add(10, std::sync::atomic::Ordering::SeqCst);
///             Ok::<_, trellis::Cancelled>(())
///         },
///         |account, _| async move {
///             assert_eq!(account.load(std::sync::atomic::Ordering::SeqCst), 10);
///         },
///     )
///     .unwrap_err();
/// assert_eq!((failure.mode, failure.checkpoint, failure.checkpoints), (InjectMode::Drop, 1, 2));
/// assert!(failure.invariant_failed);
/// assert!(failure.to_string().contains("dropped"));
/// ```
#[derive(Clone)]
#[non_exhaustive]
pub struct InjectFailure {
    /// How the cancellation was injected ([`InjectMode::Cancel`] in seeded mode).
    pub mode: InjectMode,
    /// k: the checkpoint (cancel mode) or drop point (drop mode, see [`InjectMode::Drop`])
    /// where it was injected, counted from 1 in the operation's task; in seeded mode, the first
    /// injection's place among the checkpoints of all tasks. 0: the run without injection
    /// already failed.
    pub checkpoint: usize,
    /// N: how many checkpoints (drop points, in drop mode) the counting run had.
    pub checkpoints: usize,
    /// The seed of the failing run, in seeded mode.
    pub seed: Option<u64>,
    /// The trellis operation whose checkpoint it was (`"channel::Receiver::recv"`,
    /// `"checkpoint"`...); in drop mode, the last one that checked before the suspension.
    /// `None` at k = 0, or for a suspension in a wait trellis does not see.
    pub operation: Option<&'static str>,
    /// `file:line:column` of the code that called that operation, from a backtrace, when debug
    /// information says it.
    pub location: Option<String>,
    /// The id of the task the checkpoint ran in (0 is the operation's own task).
    pub task: Option<u64>,
    /// [`lowlevel::task_tree`] at that checkpoint.
    pub task_tree: String,
    /// `true`: the invariant failed; `false`: the operation itself panicked (or hung, which
    /// the runtime's deadlock detection turns into a panic).
    pub invariant_failed: bool,
    /// The panic message of the invariant or the operation.
    pub message: String,
    /// Every injection of the failing run (several in seeded mode), first one first.
    points: Vec<PointReport>,
}

#[derive(Clone)]
struct PointReport {
    index: usize,
    operation: Option<&'static str>,
    location: Option<String>,
    task: Option<u64>,
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
        mut setup: impl FnMut() -> S,
        mut op: impl FnMut(S) -> Fut,
        mut invariant: impl FnMut(S, Ending<T>) -> Inv,
    ) -> Result<InjectReport, Box<InjectFailure>>
    where
        S: Clone,
        Fut: Future<Output = T>,
        T: Outcome,
        Inv: Future<Output = ()>,
    {
        let mut run = |plan: Plan| {
            let probe = Probe::new(plan);
            let outcome = run_once(&probe, false, &mut setup, &mut op, &mut invariant);
            (probe, outcome)
        };
        let (counted, outcome) = run(Plan::Count);
        let checkpoints = counted.checks.get();
        let suspensions = counted.suspensions.get();
        let mut report = InjectReport {
            checkpoints,
            suspensions,
            runs: 1,
            missed: 0,
        };
        if let Err(failed) = outcome {
            return Err(failed.report(InjectMode::Cancel, 0, checkpoints, None, &counted));
        }
        for (mode, total) in [
            (InjectMode::Cancel, self.cancel.then_some(checkpoints)),
            (InjectMode::Drop, self.drop.then_some(2 * suspensions)),
        ] {
            let Some(total) = total else { continue };
            let ks = match self.at {
                Some(k) => k..k + 1,
                None => 1..total + 1,
            };
            for k in ks {
                let plan = match mode {
                    InjectMode::Cancel => Plan::CancelAt(k),
                    InjectMode::Drop => Plan::DropAt(k),
                };
                let (probe, outcome) = run(plan);
                report.runs += 1;
                if let Err(failed) = outcome {
                    return Err(failed.report(mode, k, total, None, &probe));
                }
                if !probe.injected() {
                    report.missed += 1;
                }
            }
        }
        Ok(report)
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
        mut setup: impl FnMut() -> S,
        mut op: impl FnMut(S) -> Fut,
        mut invariant: impl FnMut(S, Ending<T>) -> Inv,
    ) -> Result<InjectReport, Box<InjectFailure>>
    where
        S: Clone,
        Fut: Future<Output = T>,
        T: Outcome,
        Inv: Future<Output = ()>,
    {
        let mut run = |plan: Plan| {
            let probe = Probe::new(plan);
            let outcome = run_once(&probe, true, &mut setup, &mut op, &mut invariant);
            (probe, outcome)
        };
        let (counted, outcome) = run(Plan::Count);
        let checkpoints = counted.checks.get();
        let mut report = InjectReport {
            checkpoints,
            suspensions: counted.suspensions.get(),
            runs: 1,
            missed: 0,
        };
        if let Err(failed) = outcome {
            return Err(failed.report(InjectMode::Cancel, 0, checkpoints, None, &counted));
        }
        if checkpoints == 0 {
            return Ok(report);
        }
        for seed in self.seeds.clone() {
            let (probe, outcome) = run(Plan::Seeded(seed_targets(seed, checkpoints)));
            report.runs += 1;
            if let Err(failed) = outcome {
                let k = probe.points.borrow().first().map_or(0, |p| p.index);
                return Err(failed.report(InjectMode::Cancel, k, checkpoints, Some(seed), &probe));
            }
            if !probe.injected() {
                report.missed += 1;
            }
        }
        Ok(report)
    }
}

/// The checkpoints a seed cancels at: one to three distinct indices in `1..=checkpoints`,
/// ascending (splitmix64, so that a seed means the same points on every platform).
fn seed_targets(seed: u64, checkpoints: usize) -> Vec<usize> {
    let mut state = seed;
    let mut next = move || {
        state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    };
    let count = 1 + (next() % 3) as usize;
    let mut targets: Vec<usize> = (0..count)
        .map(|_| 1 + (next() % checkpoints as u64) as usize)
        .collect();
    targets.sort_unstable();
    targets.dedup();
    targets
}

/// What a run's probe does.
enum Plan {
    /// Counts checkpoints and suspensions.
    Count,
    /// Cancels the operation's scope at this checkpoint.
    CancelAt(usize),
    /// Drops the operation after this suspension.
    DropAt(usize),
    /// Cancels the innermost node at each of these checkpoints (of any task).
    Seeded(Vec<usize>),
}

/// The checkpoint hook of one run.
struct Probe {
    plan: Plan,
    /// The scope around the operation (cancel mode cancels it).
    scope: RefCell<Option<CancelScope>>,
    /// Checks seen so far.
    checks: Cell<usize>,
    /// Polls of the operation that returned `Pending` so far.
    suspensions: Cell<usize>,
    /// Drop mode: this poll is the one after which the operation is dropped, so its checks
    /// are recorded (the last one says where it was suspended).
    recording: Cell<bool>,
    /// Where injections happened (drop mode: the last check of the recorded poll).
    points: RefCell<Vec<Point>>,
    /// Whether the plan's injection happened (drop mode: the operation was dropped).
    fired: Cell<bool>,
    /// Cleared once the operation has finished: the invariant's code is not probed.
    armed: Cell<bool>,
}

/// Where an injection happened; the backtrace is resolved only if the run fails.
struct Point {
    index: usize,
    operation: Option<&'static str>,
    task: Option<u64>,
    task_tree: String,
    backtrace: Option<Backtrace>,
}

impl Point {
    fn here(index: usize, operation: &'static str) -> Point {
        let task = lowlevel::current_task();
        Point {
            index,
            operation: Some(operation),
            task: Some(task.id),
            task_tree: lowlevel::task_tree(),
            backtrace: Some(Backtrace::force_capture()),
        }
    }
}

impl Probe {
    fn new(plan: Plan) -> Probe {
        Probe {
            plan,
            scope: RefCell::new(None),
            checks: Cell::new(0),
            suspensions: Cell::new(0),
            recording: Cell::new(false),
            points: RefCell::new(Vec::new()),
            fired: Cell::new(false),
            armed: Cell::new(true),
        }
    }

    fn injected(&self) -> bool {
        self.fired.get()
    }

    /// Drop mode, before each poll of the operation: returns whether to drop it now, instead
    /// of polling (the late point of its suspension); otherwise records the checks of this poll
    /// if it is the one whose suspension is planned.
    fn before_poll(&self) -> bool {
        let Plan::DropAt(k) = self.plan else {
            return false;
        };
        let (suspension, late) = drop_point(k);
        let done = self.suspensions.get();
        if late && done == suspension {
            self.dropping(k);
            return true;
        }
        self.recording.set(done + 1 == suspension);
        false
    }

    /// The operation returned `Pending`; returns whether to drop it now (the early point).
    fn suspended(&self) -> bool {
        let n = self.suspensions.get() + 1;
        self.suspensions.set(n);
        self.recording.set(false);
        match self.plan {
            Plan::DropAt(k) if drop_point(k) == (n, false) => {
                self.dropping(k);
                true
            }
            _ => false,
        }
    }

    fn dropping(&self, k: usize) {
        self.fired.set(true);
        let mut points = self.points.borrow_mut();
        if points.is_empty() {
            // No checkpoint in the poll that suspended (a nursery waiting for its tasks, or a
            // foreign future).
            points.push(Point {
                index: k,
                operation: None,
                task: None,
                task_tree: String::new(),
                backtrace: None,
            });
        }
    }

    /// Drop mode: a checkpoint in the poll whose suspension is planned; the last one says where
    /// the operation was suspended.
    fn record(&self, operation: &'static str) {
        let Plan::DropAt(k) = self.plan else { return };
        let mut points = self.points.borrow_mut();
        points.clear();
        points.push(Point::here(k, operation));
    }
}

/// Drop mode's point k: suspension `(k + 1) / 2`, as soon as it suspended (k odd) or when it
/// is woken, just before it resumes (k even).
fn drop_point(k: usize) -> (usize, bool) {
    (k.div_ceil(2), k % 2 == 0)
}

impl CheckpointHook for Probe {
    fn check(&self, function: &'static str) -> bool {
        if !self.armed.get() {
            return false;
        }
        let n = self.checks.get() + 1;
        self.checks.set(n);
        match &self.plan {
            Plan::Count => false,
            Plan::CancelAt(k) => {
                if *k != n {
                    return false;
                }
                self.fired.set(true);
                self.points.borrow_mut().push(Point::here(n, function));
                if let Some(scope) = &*self.scope.borrow() {
                    scope.cancel_with_reason(format!(
                        "injected at checkpoint {n} by testing::CancelInjection"
                    ));
                }
                true
            }
            Plan::DropAt(_) => {
                if self.recording.get() {
                    self.record(function);
                }
                false
            }
            Plan::Seeded(targets) => {
                if targets.binary_search(&n).is_err() {
                    return false;
                }
                self.fired.set(true);
                self.points.borrow_mut().push(Point::here(n, function));
                if let Some(here) = current::current_node_arc() {
                    let reason = format!("injected at checkpoint {n} by testing::CancelInjection");
                    node::cancel(here.as_ref(), CancelReason::Explicit(Some(reason.into())));
                }
                true
            }
        }
    }

    fn yielding(&self, function: &'static str) {
        if self.armed.get() && self.recording.get() {
            self.record(function);
        }
    }
}

/// The operation inside its scope, polled with the probe installed (own-task modes) and
/// dropped at the planned suspension (drop mode).
struct Driven<'a, F> {
    scoped: Option<Pin<Box<Scoped<F>>>>,
    probe: &'a Probe,
    /// Install the probe around each poll (`false`: it is installed for the whole run).
    own_task: bool,
}

impl<F> Future for Driven<'_, F>
where
    F: Future,
    F::Output: Outcome,
{
    type Output = Ending<F::Output>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        let Some(scoped) = this.scoped.as_mut() else {
            return Poll::Ready(Ending::Dropped);
        };
        if this.probe.before_poll() {
            // Woken, and dropped before it could resume: whatever woke it (a value handed
            // over, a lock passed on) already happened.
            this.scoped = None;
            return Poll::Ready(Ending::Dropped);
        }
        let polled = {
            let _hook = this
                .own_task
                .then(|| current::set_checkpoint_hook(this.probe));
            scoped.as_mut().poll(cx)
        };
        match polled {
            Poll::Ready(Some(out)) => Poll::Ready(Ending::Returned(out)),
            Poll::Ready(None) => Poll::Ready(Ending::Cancelled),
            Poll::Pending if this.probe.suspended() => {
                // The forced path: dropped as soon as it suspended, as a `select!` would.
                this.scoped = None;
                Poll::Ready(Ending::Dropped)
            }
            Poll::Pending => Poll::Pending,
        }
    }
}

/// Why a run failed.
struct Failed {
    in_invariant: bool,
    message: String,
}

impl Failed {
    fn report(
        self,
        mode: InjectMode,
        checkpoint: usize,
        checkpoints: usize,
        seed: Option<u64>,
        probe: &Probe,
    ) -> Box<InjectFailure> {
        let points: Vec<PointReport> = probe
            .points
            .borrow()
            .iter()
            .map(|p| PointReport {
                index: p.index,
                operation: p.operation,
                location: p.backtrace.as_ref().and_then(caller_location),
                task: p.task,
            })
            .collect();
        let first = points.first();
        Box::new(InjectFailure {
            mode,
            checkpoint,
            checkpoints,
            seed,
            operation: first.and_then(|p| p.operation),
            location: first.and_then(|p| p.location.clone()),
            task: first.and_then(|p| p.task),
            task_tree: probe
                .points
                .borrow()
                .first()
                .map(|p| p.task_tree.clone())
                .unwrap_or_default(),
            invariant_failed: self.in_invariant,
            message: self.message,
            points,
        })
    }
}

/// The runtime of one run: current-thread, virtual time that jumps as soon as every task is
/// blocked, deadlock detection on.
fn test_runtime() -> Runtime {
    let clock = MockClock::new();
    clock.set_autojump_threshold(Some(Duration::ZERO));
    Runtime::builder()
        .flavor(Flavor::CurrentThread)
        .clock(clock)
        .detect_deadlocks(true)
        .build()
        .expect("a current-thread runtime on a mock clock builds")
}

/// One run: fresh state and runtime, the operation in a fresh scope, then the invariant.
fn run_once<S, T, Fut, Inv>(
    probe: &Probe,
    whole_run: bool,
    setup: &mut impl FnMut() -> S,
    op: &mut impl FnMut(S) -> Fut,
    invariant: &mut impl FnMut(S, Ending<T>) -> Inv,
) -> Result<(), Failed>
where
    S: Clone,
    Fut: Future<Output = T>,
    T: Outcome,
    Inv: Future<Output = ()>,
{
    let state = setup();
    let rt = test_runtime();
    let in_invariant = Cell::new(false);
    let result = panic::catch_unwind(AssertUnwindSafe(|| {
        let _hook = whole_run.then(|| current::set_checkpoint_hook(probe));
        rt.block_on(async {
            let scope = CancelScope::new();
            *probe.scope.borrow_mut() = Some(scope.clone());
            let output = Driven {
                scoped: Some(Box::pin(scope.run(op(state.clone())))),
                probe,
                own_task: !whole_run,
            }
            .await;
            probe.armed.set(false);
            in_invariant.set(true);
            invariant(state, output).await;
        });
    }));
    drop(rt);
    result.map_err(|payload| Failed {
        in_invariant: in_invariant.get(),
        message: panic_message(payload.as_ref()),
    })
}

fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "(a panic without a message)".to_owned()
    }
}

/// The innermost frame of `backtrace` in code outside trellis and the standard library: the
/// caller of the operation. Needs debug information; `None` without it.
fn caller_location(backtrace: &Backtrace) -> Option<String> {
    let text = format!("{backtrace:#}");
    let own = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let cwd = std::env::current_dir().ok();
    text.lines().find_map(|line| {
        let at = line.trim_start().strip_prefix("at ")?;
        let file = at.rsplitn(3, ':').nth(2)?;
        let path = Path::new(file);
        let foreign = path.starts_with(&own)
            || file.starts_with("/rustc/")
            || [
                "/.cargo/registry/",
                "/.cargo/git/",
                "/.rustup/",
                "/library/",
            ]
            .iter()
            .any(|dir| file.contains(dir));
        if foreign || !path.is_absolute() {
            return None;
        }
        let shown = cwd
            .as_deref()
            .and_then(|cwd| Path::new(at).strip_prefix(cwd).ok())
            .map_or_else(|| at.to_owned(), |rel| rel.display().to_string());
        Some(shown)
    })
}

impl fmt::Display for InjectFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let what = if self.invariant_failed {
            "the invariant failed"
        } else {
            "the operation panicked"
        };
        if self.checkpoint == 0 && self.seed.is_none() {
            writeln!(
                f,
                "cancellation injection: {what} in the run without injection"
            )?;
            writeln!(f, "  {}", self.message.replace('\n', "\n    "))?;
            return f.write_str(
                "What to do: the operation or the invariant is wrong even when nothing is \
                 cancelled; fix that first.",
            );
        }
        match (self.mode, self.seed) {
            (_, Some(seed)) => writeln!(
                f,
                "cancellation injection: {what} with seed {seed}, which cancelled the innermost \
                 scope or task at these of the run's {} checkpoints (all tasks):",
                self.checkpoints
            )?,
            (InjectMode::Cancel, None) => writeln!(
                f,
                "cancellation injection: {what} after the operation was cancelled at its \
                 checkpoint {} of {} (that checkpoint returned Cancelled, and every later one \
                 in its scope)",
                self.checkpoint, self.checkpoints
            )?,
            (InjectMode::Drop, None) => {
                let (suspension, late) = drop_point(self.checkpoint);
                let when = if late {
                    "when it was woken, just before it resumed"
                } else {
                    "as soon as it suspended"
                };
                writeln!(
                    f,
                    "cancellation injection: {what} after the operation's future was dropped at \
                     drop point {} of {}: its suspension {suspension}, {when}",
                    self.checkpoint, self.checkpoints
                )?;
            }
        }
        for p in &self.points {
            if self.seed.is_some() {
                write!(f, "  checkpoint {}", p.index)?;
            } else {
                f.write_str("  at")?;
            }
            match p.operation {
                Some(op) => write!(f, " {op}")?,
                None => f.write_str(
                    " a wait without a checkpoint (a nursery waiting for its tasks, or a future \
                     trellis does not know)",
                )?,
            }
            if let Some(task) = p.task {
                write!(f, ", in task {task}")?;
            }
            match &p.location {
                Some(at) => writeln!(f, ", called at {at}")?,
                None => writeln!(f)?,
            }
        }
        writeln!(f, "  {what}: {}", self.message.replace('\n', "\n    "))?;
        if !self.task_tree.is_empty() {
            writeln!(f, "  task tree at that point:")?;
            for line in self.task_tree.lines() {
                writeln!(f, "    {line}")?;
            }
        }
        match (self.mode, self.seed) {
            (_, Some(seed)) => write!(
                f,
                "What to do: a cancellation at one of these points leaves the state broken. \
                 Replay exactly this run with CancelInjection::new().seeds({seed}..{}) and \
                 .check_seeded(..); then make the work around the point atomic (no checkpoint \
                 between taking something and storing it), shield what must finish \
                 (CancelScope::new().shielded(true)), or undo the first step when Cancelled \
                 arrives.",
                seed + 1
            ),
            (InjectMode::Cancel, None) => write!(
                f,
                "What to do: work done before this checkpoint is lost or left half-done when \
                 it fails. Make the steps around it atomic (no checkpoint between taking \
                 something and storing it, e.g. take both locks before changing either), run \
                 what must finish in a shielded scope (CancelScope::new().shielded(true)), or \
                 undo the first step when Cancelled arrives. Replay this case alone with \
                 CancelInjection::new().mode(InjectMode::Cancel).at({}).",
                self.checkpoint
            ),
            (InjectMode::Drop, None) => write!(
                f,
                "What to do: code after an .await may never run when the future is dropped \
                 there (a select!, a drop-style timeout, a dropped parent); a shield does not \
                 stop a drop. Keep the state consistent at every .await: do the steps that \
                 belong together with no .await between them, or give back or undo in a Drop \
                 guard. Replay this case alone with \
                 CancelInjection::new().mode(InjectMode::Drop).at({}).",
                self.checkpoint
            ),
        }
    }
}

impl fmt::Debug for InjectFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // `unwrap` prints the Debug form: make it the full explanation.
        write!(f, "\n{self}")
    }
}

impl std::error::Error for InjectFailure {}
