//! What a check tells its caller: how each run ended, the report of a passed check, and the
//! report of a failed one (where the cancellation was injected, what failed, what to do).

use std::backtrace::Backtrace;
use std::fmt;
use std::path::Path;

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
    /// [`check`](crate::testing::CancelInjection::check), of every task for
    /// [`check_seeded`](crate::testing::CancelInjection::check_seeded).
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
    /// [`lowlevel::task_tree`](crate::lowlevel::task_tree) at that checkpoint.
    pub task_tree: String,
    /// `true`: the invariant failed; `false`: the operation itself panicked (or hung, which
    /// the runtime's deadlock detection turns into a panic).
    pub invariant_failed: bool,
    /// The panic message of the invariant or the operation.
    pub message: String,
    /// Every injection of the failing run (several in seeded mode), first one first.
    pub(super) points: Vec<PointReport>,
}

#[derive(Clone)]
pub(super) struct PointReport {
    pub(super) index: usize,
    pub(super) operation: Option<&'static str>,
    pub(super) location: Option<String>,
    pub(super) task: Option<u64>,
}

/// The innermost frame of `backtrace` in code outside trellis and the standard library: the
/// caller of the operation. Needs debug information; `None` without it.
pub(super) fn caller_location(backtrace: &Backtrace) -> Option<String> {
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

/// Drop mode's point k: suspension `(k + 1) / 2`, as soon as it suspended (k odd) or when it
/// is woken, just before it resumes (k even).
pub(super) fn drop_point(k: usize) -> (usize, bool) {
    (k.div_ceil(2), k % 2 == 0)
}
