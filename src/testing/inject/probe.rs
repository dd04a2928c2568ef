//! One run of the harness: the checkpoint hook (`Probe`) that counts checks and injects, the
//! driver (`Driven`) that polls the operation with the hook installed and drops it at a planned
//! suspension, and `run_once`, which gives each run fresh state and a fresh runtime.

use std::backtrace::Backtrace;
use std::cell::{Cell, RefCell};
use std::future::Future;
use std::panic::{self, AssertUnwindSafe};
use std::pin::Pin;
use std::task::{Context, Poll};

use super::report::{caller_location, drop_point, Ending, InjectFailure, InjectMode, PointReport};
use crate::cancel::current::{self, CheckpointHook};
use crate::cancel::{node, CancelScope, Scoped};
use crate::error::{CancelReason, Outcome};
use crate::lowlevel;
use crate::runtime::scheduler::SplitMix64;
use crate::testing::{panic_message, virtual_time_runtime};

/// The checkpoints a seed cancels at: one to three distinct indices in `1..=checkpoints`,
/// ascending (the same on every platform).
pub(super) fn seed_targets(seed: u64, checkpoints: usize) -> Vec<usize> {
    let mut rng = SplitMix64::new(seed);
    let mut next = move || rng.next_u64();
    let count = 1 + (next() % 3) as usize;
    let mut targets: Vec<usize> = (0..count)
        .map(|_| 1 + (next() % checkpoints as u64) as usize)
        .collect();
    targets.sort_unstable();
    targets.dedup();
    targets
}

/// What a run's probe does.
pub(super) enum Plan {
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
pub(super) struct Probe {
    plan: Plan,
    /// The scope around the operation (cancel mode cancels it).
    scope: RefCell<Option<CancelScope>>,
    /// Checks seen so far.
    pub(super) checks: Cell<usize>,
    /// Polls of the operation that returned `Pending` so far.
    pub(super) suspensions: Cell<usize>,
    /// Drop mode: this poll is the one after which the operation is dropped, so its checks
    /// are recorded (the last one says where it was suspended).
    recording: Cell<bool>,
    /// Where injections happened (drop mode: the last check of the recorded poll).
    pub(super) points: RefCell<Vec<Point>>,
    /// Whether the plan's injection happened (drop mode: the operation was dropped).
    fired: Cell<bool>,
    /// Cleared once the operation has finished: the invariant's code is not probed.
    armed: Cell<bool>,
}

/// Where an injection happened; the backtrace is resolved only if the run fails.
pub(super) struct Point {
    pub(super) index: usize,
    pub(super) operation: Option<&'static str>,
    pub(super) task: Option<u64>,
    pub(super) task_tree: String,
    pub(super) backtrace: Option<Backtrace>,
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
    pub(super) fn new(plan: Plan) -> Probe {
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

    pub(super) fn injected(&self) -> bool {
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
                if let Some(here) = current::current_node_ref() {
                    let reason = format!("injected at checkpoint {n} by testing::CancelInjection");
                    node::cancel(&here, CancelReason::Explicit(Some(reason.into())));
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

/// One run: fresh state and runtime, the operation in a fresh scope, then the invariant.
pub(super) fn run_once<S, T, Fut, Inv>(
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
    let rt = virtual_time_runtime(None);
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

/// Why a run failed.
pub(super) struct Failed {
    pub(super) in_invariant: bool,
    pub(super) message: String,
}

impl Failed {
    pub(super) fn report(
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
