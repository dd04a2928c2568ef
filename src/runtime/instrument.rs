//! Instruments: hooks the runtime calls as tasks are spawned, woken, polled and end (trio's
//! `Instrument`), for statistics, logging or a task viewer.
//!
//! One instrument per runtime, set with `Builder::instrument`. Until some runtime of the process
//! has one, each hook point costs the load of one static flag and a branch; the calls
//! themselves are out of line, so the hot paths keep their size. The hooks run on the thread where the event happens,
//! inside the runtime's hot paths: they must be quick, must not block, and must not call back
//! into the runtime (spawn, wake or cancel); a hook that panics is a bug that ends the run.

use std::sync::atomic::{AtomicBool, Ordering};

/// Which task an event is about.
///
/// ```
/// use trellis::lowlevel::TaskEvent;
///
/// let event = TaskEvent { id: 7, name: Some("worker") };
/// assert_eq!(format!("{event}"), "task 7 \"worker\"");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TaskEvent<'a> {
    /// The task's id, as [`lowlevel::current_task`](crate::lowlevel::current_task) reports it.
    pub id: u64,
    /// The name given with `spawn_named`, if any.
    pub name: Option<&'a str>,
}

impl std::fmt::Display for TaskEvent<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "task {}", self.id)?;
        if let Some(name) = self.name {
            write!(f, " {name:?}")?;
        }
        Ok(())
    }
}

/// What a task's poll ended in, for [`Instrument::after_task_poll`].
///
/// ```
/// use trellis::lowlevel::PollEnd;
///
/// assert_ne!(PollEnd::Parked, PollEnd::Finished);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PollEnd {
    /// The task waits (in a trellis operation or elsewhere) and will be polled again when woken.
    Parked,
    /// The task's future completed (or panicked); [`Instrument::task_exited`] follows once it
    /// is dropped.
    Finished,
}

/// Hooks into a runtime's task events; every method does nothing unless overridden.
///
/// The events of one task come in this order: `task_spawned`, then any number of rounds of
/// `task_scheduled` (it was woken, or is new), `before_task_poll`, `after_task_poll`, and at
/// last `task_exited`, once its future has been dropped (after finishing, or when a cancelled
/// nursery or a runtime shutdown tears it down without a final poll). A task that wakes itself
/// during a poll (a checkpoint's yield) is scheduled once that poll has ended, so that
/// `task_scheduled` comes after the `after_task_poll`. A task whose spawn was refused (its
/// nursery had closed) reports nothing. The main future is not a task: it reports nothing, and
/// the tasks it spawns name it as parent `0`.
///
/// ```
/// use std::sync::atomic::{AtomicUsize, Ordering};
/// use std::sync::Arc;
/// use trellis::lowlevel::{Instrument, PollEnd, TaskEvent};
/// use trellis::{Flavor, Runtime};
///
/// #[derive(Default)]
/// struct Counts {
///     spawned: AtomicUsize,
///     polls: AtomicUsize,
///     exited: AtomicUsize,
/// }
///
/// impl Instrument for Counts {
///     fn task_spawned(&self, _task: TaskEvent<'_>, _parent: Option<u64>) {
///         self.spawned.fetch_add(1, Ordering::Relaxed);
///     }
///     fn after_task_poll(&self, _task: TaskEvent<'_>, _end: PollEnd) {
///         self.polls.fetch_add(1, Ordering::Relaxed);
///     }
///     fn task_exited(&self, _task: TaskEvent<'_>) {
///         self.exited.fetch_add(1, Ordering::Relaxed);
///     }
/// }
///
/// # #[cfg(feature = "instrument")] {
/// // `Builder::instrument` comes with the `instrument` feature.
/// let counts = Arc::new(Counts::default());
/// let rt = Runtime::builder()
///     .flavor(Flavor::CurrentThread)
///     .instrument(counts.clone())
///     .build()
///     .unwrap();
/// rt.block_on(async {
///     trellis::nursery(|n| async move {
///         for _ in 0..3 {
///             n.spawn(async {
///                 trellis::checkpoint().await?;
///                 Ok(())
///             })?;
///         }
///         Ok::<_, trellis::Error>(())
///     })
///     .await
///     .unwrap();
/// });
/// assert_eq!(counts.spawned.load(Ordering::Relaxed), 3);
/// assert_eq!(counts.polls.load(Ordering::Relaxed), 6); // each: a poll that yields, one that ends
/// assert_eq!(counts.exited.load(Ordering::Relaxed), 3);
/// # }
/// ```
pub trait Instrument: Send + Sync + 'static {
    /// A task was spawned; `parent` is the id of the task it was spawned from (`0` for the
    /// main future), `None` for a task with no task above it (a portal's).
    fn task_spawned(&self, task: TaskEvent<'_>, parent: Option<u64>) {
        let _ = (task, parent);
    }

    /// A task was queued to run: it is new, or it was woken.
    fn task_scheduled(&self, task: TaskEvent<'_>) {
        let _ = task;
    }

    /// A poll of the task begins, on this thread.
    fn before_task_poll(&self, task: TaskEvent<'_>) {
        let _ = task;
    }

    /// The poll that `before_task_poll` announced ended.
    fn after_task_poll(&self, task: TaskEvent<'_>, end: PollEnd) {
        let _ = (task, end);
    }

    /// The task's future was dropped: the task is gone.
    fn task_exited(&self, task: TaskEvent<'_>) {
        let _ = task;
    }

    /// A cancel scope, nursery or task was cancelled: its `cancel` was called, its deadline
    /// passed, a failing task cancelled its nursery, or Ctrl-C cancelled the main task. Called
    /// once per scope, on the thread that cancelled it, after the cancellation has reached the
    /// code below it; not for the scopes below, which are cancelled only because this one is
    /// (trio's `cancel_called` of one scope).
    fn scope_cancelled(&self, scope: CancelEvent<'_>) {
        let _ = scope;
    }
}

/// A cancellation, for [`Instrument::scope_cancelled`].
///
/// ```
/// use trellis::lowlevel::{CancelEvent, ScopeKind, TaskEvent};
/// use trellis::CancelReason;
///
/// let event = CancelEvent {
///     kind: ScopeKind::Scope,
///     task: Some(TaskEvent { id: 0, name: Some("main") }),
///     reason: &CancelReason::Deadline,
/// };
/// assert_eq!(format!("{event}"), "scope of task 0 \"main\" cancelled: deadline expired");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CancelEvent<'a> {
    /// What was cancelled.
    pub kind: ScopeKind,
    /// The task the scope belongs to (the task itself, for [`ScopeKind::Task`]); `None` for a
    /// runtime's root.
    pub task: Option<TaskEvent<'a>>,
    /// Why (the first reason given wins, C8).
    pub reason: &'a crate::error::CancelReason,
}

impl std::fmt::Display for CancelEvent<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = match self.kind {
            ScopeKind::Scope => "scope",
            ScopeKind::Nursery => "nursery",
            ScopeKind::Task => "task",
            ScopeKind::Runtime => "runtime",
        };
        match self.task {
            Some(task) if self.kind != ScopeKind::Task => write!(f, "{kind} of {task}")?,
            Some(task) => write!(f, "{task}")?,
            None => f.write_str(kind)?,
        }
        write!(f, " cancelled: {}", self.reason)
    }
}

/// What a [`CancelEvent`] cancelled.
///
/// ```
/// assert_ne!(trellis::lowlevel::ScopeKind::Scope, trellis::lowlevel::ScopeKind::Nursery);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ScopeKind {
    /// A cancel scope (`CancelScope`, `move_on_after`, `fail_after`...).
    Scope,
    /// A nursery.
    Nursery,
    /// A task, as a whole.
    Task,
    /// A runtime's whole tree (it is shutting down).
    Runtime,
}

/// Some runtime of the process has an instrument: until then the hook points skip even the
/// look at their runtime (a load of this flag and a branch, the whole cost without one).
static ANY: AtomicBool = AtomicBool::new(false);

/// Might the current runtime have an instrument? Read at every hook point.
#[cfg(feature = "instrument")]
#[inline]
pub(crate) fn any() -> bool {
    ANY.load(Ordering::Relaxed)
}

/// Notes that a runtime with an instrument was built.
pub(crate) fn installed() {
    ANY.store(true, Ordering::Relaxed);
}

/// The events a task reports, for one out-of-line function to pass on.
#[cfg_attr(not(feature = "instrument"), allow(dead_code))]
#[derive(Clone, Copy)]
pub(crate) enum Hook {
    Spawned(Option<u64>),
    Scheduled,
    BeforePoll,
    AfterPoll(PollEnd),
    Exited,
}

impl Hook {
    /// Calls the instrument's method for this event.
    #[cfg(feature = "instrument")]
    pub(crate) fn tell(self, instrument: &dyn Instrument, task: TaskEvent<'_>) {
        match self {
            Hook::Spawned(parent) => instrument.task_spawned(task, parent),
            Hook::Scheduled => instrument.task_scheduled(task),
            Hook::BeforePoll => instrument.before_task_poll(task),
            Hook::AfterPoll(end) => instrument.after_task_poll(task, end),
            Hook::Exited => instrument.task_exited(task),
        }
    }
}

/// A runtime's instrument, as the builder keeps it (the trait asks for no `Debug`).
#[cfg_attr(not(feature = "instrument"), allow(dead_code))]
#[derive(Clone)]
pub(crate) struct Hooks(pub(crate) std::sync::Arc<dyn Instrument>);

impl std::fmt::Debug for Hooks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Instrument")
    }
}
