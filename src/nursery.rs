//! Nurseries: the only way to start a task, and the guarantee that it ends before its parent.
//!
//! A nursery is a node of the cancel tree (a scope) whose task children are its tasks. Its
//! future runs the body inside that node, then waits — without being a cancel point (N4) —
//! until no task is left and no `start` is in flight; then it closes, so a late `spawn` fails
//! with `NurseryClosed` (N5). A failing task or body records its error and cancels the node
//! (N2), which reaches every descendant (N7); tasks obey the scopes around the nursery, not
//! those around the `spawn` call (N8), because they hang below the nursery's node.
//!
//! If the nursery future is dropped before it completes (forced teardown, N11), its `Drop`
//! closes it, drops the body, and tears down every task — dropping each task's future, waiting
//! for a poll running on another thread — before returning.

use std::any::Any;
use std::fmt;
use std::future::Future;
use std::panic::{self, AssertUnwindSafe};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};

use crate::cancel::current;
use crate::cancel::node::{self, NodeKind, NodeRef, PlainNode};
use crate::cancel::{outside_runtime, CancelScope};
use crate::error::{AsCancelled, CancelReason, Cancelled, Error, NurseryError};
use crate::runtime::{context, Flavor, Shared};
use crate::state_lock::lock_blocking;
use crate::task::{spawn_child, Report, SpawnSpec, TaskHandle};

/// Opens a nursery, runs `body` in it, and waits for every task spawned into it.
///
/// `body` gets a [`Nursery`] handle to spawn tasks with. The nursery completes when the body and
/// every task are done (N1). If the body or a task fails, the others are cancelled and all
/// failures are returned together (N2, N3); if one panics, the others are cancelled and awaited,
/// then the panic resumes here (N10).
///
/// ```
/// use std::time::Duration;
///
/// trellis::run(async {
///     let result = trellis::nursery(|n| async move {
///         n.spawn(async {
///             trellis::sleep(Duration::from_millis(1)).await?;
///             Ok(())
///         })?;
///         n.spawn(async { Err::<(), _>(trellis::Error::InvalidArgument("boom")) })?;
///         Ok::<_, trellis::Error>(())
///     })
///     .await;
///     let errors = result.unwrap_err().into_errors();
///     assert_eq!(errors.len(), 1); // the sleeper was cancelled, which is not an error
/// });
/// ```
pub fn nursery<E, T, F, Fut>(body: F) -> NurseryFuture<E, T, F, Fut>
where
    F: FnOnce(Nursery<E>) -> Fut,
    Fut: Future<Output = Result<T, E>>,
    E: AsCancelled + Send + 'static,
{
    NurseryFuture::new(body, false)
}

/// Opens a *supervising* nursery: like [`nursery`], except that a task's failure does not cancel
/// its siblings (Kotlin's `supervisorScope`, Erlang's one-for-one supervisor). Every failure is
/// still collected and returned when the nursery ends (`NurseryError::Failed`), and a panic, a
/// failure of the body, or a cancellation from outside still cancels everything, as in a plain
/// nursery. For long-lived servers whose per-connection handlers fail independently.
///
/// ```
/// use std::time::Duration;
///
/// trellis::run(async {
///     let result = trellis::supervisor(|n| async move {
///         n.spawn(async { Err::<(), _>(trellis::Error::InvalidArgument("one handler failed")) })?;
///         let other = n.spawn(async {
///             trellis::sleep(Duration::from_millis(2)).await?;
///             Ok("the other one finished")
///         })?;
///         assert_eq!(other.await?, "the other one finished"); // not cancelled
///         Ok::<_, trellis::Error>(())
///     })
///     .await;
///     assert_eq!(result.unwrap_err().into_errors().len(), 1);
/// });
/// ```
pub fn supervisor<E, T, F, Fut>(body: F) -> NurseryFuture<E, T, F, Fut>
where
    F: FnOnce(Nursery<E>) -> Fut,
    Fut: Future<Output = Result<T, E>>,
    E: AsCancelled + Send + 'static,
{
    NurseryFuture::new(body, true)
}

/// A handle on an open nursery: spawn tasks into it, cancel it. Cheap to clone; may be passed to
/// tasks so they can spawn siblings.
///
/// ```
/// trellis::run(async {
///     let total = trellis::nursery(|n| async move {
///         let a = n.spawn(async { Ok(20) })?;
///         let b = n.spawn(async { Ok(22) })?;
///         Ok::<_, trellis::Error>(a.await? + b.await?)
///     })
///     .await
///     .unwrap();
///     assert_eq!(total, 42);
/// });
/// ```
pub struct Nursery<E = Error> {
    inner: Arc<NurseryInner<E>>,
}

impl<E> Clone for Nursery<E> {
    fn clone(&self) -> Self {
        Nursery {
            inner: self.inner.clone(),
        }
    }
}

impl<E> fmt::Debug for Nursery<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = self.inner.node.lock();
        f.debug_struct("Nursery")
            .field("tasks", &s.plain_ref().map_or(0, |f| f.tasks))
            .field("closed", &s.closed)
            .finish()
    }
}

struct NurseryInner<E> {
    node: Arc<PlainNode>,
    rt: Arc<Shared>,
    /// A task's failure does not cancel the nursery (`supervisor`).
    supervise: bool,
    failures: Mutex<Failures<E>>,
    /// `failures.cancelled` is set (read without the lock).
    cancel_recorded: AtomicBool,
}

struct Failures<E> {
    errors: Vec<E>,
    panics: Vec<Box<dyn Any + Send>>,
    /// The first cancellation a task ended with. If it came from outside the nursery, it
    /// propagates out of the nursery like the body's would.
    cancelled: Option<Cancelled>,
}

impl<E> NurseryInner<E> {
    fn failures(&self) -> MutexGuard<'_, Failures<E>> {
        lock_blocking(&self.failures)
    }

    fn as_tree(&self) -> NodeRef {
        self.node.clone().into()
    }
}

impl<E: AsCancelled + Send + 'static> Report<E> for NurseryInner<E> {
    fn failed(&self, error: E) {
        self.failures().errors.push(error);
        if !self.supervise {
            node::cancel(self.node.as_ref(), CancelReason::Nursery);
        }
    }

    fn panicked(&self, payload: Box<dyn Any + Send>) {
        self.failures().panics.push(payload);
        node::cancel(self.node.as_ref(), CancelReason::Nursery);
    }

    fn cancelled(&self, error: E) {
        self.record_cancellation(|| error.cancelled());
    }

    fn dropped(&self, cancelled: Cancelled) {
        self.record_cancellation(|| Some(cancelled));
    }

    fn runtime(&self) -> &Arc<Shared> {
        &self.rt
    }
}

impl<E> NurseryInner<E> {
    /// Keeps the first cancellation a task ended with.
    fn record_cancellation(&self, cancelled: impl FnOnce() -> Option<Cancelled>) {
        // Only a cancellation that reached the task through this nursery (its own scope or one
        // above it) concerns the nursery. A task cancelled on its own — through its handle, or
        // a service cancelled because the work is done (N12) — absorbed that itself; recording
        // it would make the nursery report a cancellation nobody asked of it.
        if !self.node.is_cancelled() || self.cancel_recorded.load(Ordering::Acquire) {
            return;
        }
        let mut failures = self.failures();
        if failures.cancelled.is_none() {
            failures.cancelled = cancelled();
            // The first one is all that is kept: spare the thousands of siblings cancelled
            // with it the lock (and the contention between workers).
            self.cancel_recorded.store(true, Ordering::Release);
        }
    }
}

/// Options for one spawn.
struct TaskOptions {
    name: Option<Arc<str>>,
    service: bool,
}

impl TaskOptions {
    const PLAIN: TaskOptions = TaskOptions {
        name: None,
        service: false,
    };
    const SERVICE: TaskOptions = TaskOptions {
        name: None,
        service: true,
    };
}

impl<E: AsCancelled + Send + 'static> Nursery<E> {
    /// Spawns `future` as a task of this nursery and returns a handle to await its value.
    ///
    /// ```
    /// trellis::run(async {
    ///     let result = trellis::nursery(|n| async move {
    ///         n.spawn(async { Ok(()) })?;
    ///         // A failing task: the nursery cancels the others and reports the error.
    ///         n.spawn(async { Err::<(), _>(trellis::Error::InvalidArgument("bad")) })?;
    ///         n.spawn(async {
    ///             trellis::sleep_forever().await?;
    ///             Ok(())
    ///         })?;
    ///         Ok::<_, trellis::Error>(())
    ///     })
    ///     .await;
    ///     let errors = result.unwrap_err().into_errors();
    ///     assert!(matches!(errors[..], [trellis::Error::InvalidArgument("bad")]));
    /// });
    /// ```
    ///
    /// The task runs inside the nursery's scope (N8). If it returns `Err`, the error is recorded
    /// and the nursery is cancelled (N2). A task spawned into a cancelled nursery still starts and
    /// fails at its first checkpoint (N6).
    ///
    /// # Errors
    /// [`Error::NurseryClosed`] once the nursery has finished (N5).
    pub fn spawn<F, T>(&self, future: F) -> Result<TaskHandle<T>, Error>
    where
        F: Future<Output = Result<T, E>> + Send + 'static,
        T: Send + 'static,
    {
        self.spawn_with(future, TaskOptions::PLAIN)
    }

    /// Like [`spawn`](Nursery::spawn), with a name shown by [`task_tree`](crate::lowlevel::task_tree).
    ///
    /// ```
    /// trellis::run(async {
    ///     trellis::nursery(|n| async move {
    ///         let handle = n.spawn_named("worker", async {
    ///             Ok(trellis::lowlevel::current_task().name)
    ///         })?;
    ///         assert_eq!(handle.await?.as_deref(), Some("worker"));
    ///         Ok::<_, trellis::Error>(())
    ///     })
    ///     .await
    ///     .unwrap();
    /// });
    /// ```
    pub fn spawn_named<F, T>(
        &self,
        name: impl Into<Arc<str>>,
        future: F,
    ) -> Result<TaskHandle<T>, Error>
    where
        F: Future<Output = Result<T, E>> + Send + 'static,
        T: Send + 'static,
    {
        let name = Some(name.into());
        self.spawn_with(
            future,
            TaskOptions {
                name,
                ..TaskOptions::PLAIN
            },
        )
    }

    /// Spawns a service task: it is cancelled automatically once the body and every ordinary task
    /// are done (N12), so a background helper does not keep the nursery open.
    ///
    /// ```
    /// trellis::run(async {
    ///     let (tx, rx) = trellis::channel::unbounded::<u32>();
    ///     let sender = tx.clone(); // `tx` stays open out here: `recv` never sees the end
    ///     let sent = trellis::nursery(|n| async move {
    ///         // A service that would run forever: it is cancelled once the ordinary work is done.
    ///         n.spawn_service(async move {
    ///             while let Ok(v) = rx.recv().await {
    ///                 println!("logged {v}");
    ///             }
    ///             Ok(())
    ///         })?;
    ///         for v in 1..=3 {
    ///             sender.send(v).await?;
    ///         }
    ///         Ok::<_, trellis::Error>(3)
    ///     })
    ///     .await
    ///     .unwrap(); // returned although the service never ends by itself
    ///     assert_eq!(sent, 3);
    ///     drop(tx);
    /// });
    /// ```
    pub fn spawn_service<F, T>(&self, future: F) -> Result<TaskHandle<T>, Error>
    where
        F: Future<Output = Result<T, E>> + Send + 'static,
        T: Send + 'static,
    {
        self.spawn_with(future, TaskOptions::SERVICE)
    }

    fn spawn_with<F, T>(&self, future: F, options: TaskOptions) -> Result<TaskHandle<T>, Error>
    where
        F: Future<Output = Result<T, E>> + Send + 'static,
        T: Send + 'static,
    {
        let spec = SpawnSpec {
            rt: &self.inner.rt,
            parent: self.inner.as_tree(),
            name: options.name,
            service: options.service,
            reporter: self.inner.clone(),
            on_linked: None,
            local: false,
        };
        // SAFETY: `F` and `T` are `Send`.
        unsafe { spawn_child(spec, future) }
    }

    /// Spawns a task that need not be `Send`. Only on a current-thread runtime, from its thread.
    ///
    /// # Errors
    /// [`Error::NotCurrentThread`] on a multi-threaded runtime or from another thread;
    /// [`Error::NurseryClosed`] once the nursery has finished.
    ///
    /// ```
    /// use std::rc::Rc;
    ///
    /// let rt = trellis::Runtime::builder()
    ///     .flavor(trellis::Flavor::CurrentThread)
    ///     .build()
    ///     .unwrap();
    /// rt.block_on(async {
    ///     trellis::nursery(|n| async move {
    ///         let shared = Rc::new(5); // not Send
    ///         let local = shared.clone();
    ///         let handle = n.spawn_local(async move { Ok(*local * 2) })?;
    ///         assert_eq!(handle.await?, 10);
    ///         assert_eq!(Rc::strong_count(&shared), 1);
    ///         Ok::<_, trellis::Error>(())
    ///     })
    ///     .await
    ///     .unwrap();
    /// });
    /// ```
    pub fn spawn_local<F, T>(&self, future: F) -> Result<TaskHandle<T>, Error>
    where
        F: Future<Output = Result<T, E>> + 'static,
        T: 'static,
    {
        let on_runtime_thread =
            context::try_current().is_some_and(|rt| Arc::ptr_eq(&rt, &self.inner.rt));
        if self.inner.rt.flavor() != Flavor::CurrentThread || !on_runtime_thread {
            return Err(Error::NotCurrentThread);
        }
        let spec = SpawnSpec {
            rt: &self.inner.rt,
            parent: self.inner.as_tree(),
            name: None,
            service: false,
            reporter: self.inner.clone(),
            on_linked: None,
            local: true,
        };
        // SAFETY: checked above: current-thread runtime, called on its thread.
        unsafe { spawn_child(spec, future) }
    }

    /// Starts a task and waits until it calls [`TaskStatus::started`]; returns the value it passed
    /// (N9). Until then the task runs under the caller's scopes and its failure is returned here
    /// (without cancelling this nursery); afterwards it belongs to this nursery. A task that
    /// finishes without calling `started` makes this return [`Error::StartedNotCalled`].
    ///
    /// ```
    /// trellis::run(async {
    ///     trellis::nursery(|n| async move {
    ///         let port = n
    ///             .start(|status| async move {
    ///                 status.started(8080u16); // e.g. after binding a listener
    ///                 Ok::<_, trellis::Error>(())
    ///             })
    ///             .await?;
    ///         assert_eq!(port, 8080);
    ///         Ok::<_, trellis::Error>(())
    ///     })
    ///     .await
    ///     .unwrap();
    /// });
    /// ```
    pub async fn start<V, T, F, Fut>(&self, f: F) -> Result<V, E>
    where
        V: Send + 'static,
        T: Send + 'static,
        F: FnOnce(TaskStatus<V, E>) -> Fut,
        Fut: Future<Output = Result<T, E>> + Send + 'static,
        E: From<Error>,
    {
        let Some(caller) = current::current_node_ref() else {
            outside_runtime("Nursery::start");
        };
        {
            let mut s = self.inner.node.lock();
            if s.closed {
                return Err(Error::NurseryClosed.into());
            }
            s.nursery().pending_starts += 1;
        }
        let shared = Arc::new(StartShared {
            state: Mutex::new(StartState::Waiting(None)),
            child: Mutex::new(None),
            placement: Mutex::new(Placement::UnderCaller),
            kept: Mutex::new(None),
            rt: self.inner.rt.clone(),
        });
        let pending = PendingStart {
            nursery: self.inner.node.clone(),
            shared: shared.clone(),
        };
        let status = TaskStatus {
            shared: shared.clone(),
            nursery: self.inner.clone(),
        };
        let spec = SpawnSpec {
            rt: &self.inner.rt,
            parent: caller,
            name: None,
            service: false,
            reporter: shared.clone(),
            // Recorded before the task can run: `started` may be called on another worker
            // before `spawn_child` even returns here. (Cleared when the call ends: see
            // `StartShared::child`.)
            local: false,
            on_linked: Some(&|child| {
                *shared.child() = Some(child.clone());
            }),
        };
        // SAFETY: `Fut` and `T` are `Send`.
        let _handle = unsafe { spawn_child(spec, f(status)) }.map_err(E::from)?;
        let outcome = StartWait { shared: &shared }.await;
        // `started` tried to move the task but the target had closed meanwhile (torn down by a
        // drop, N11): the task stayed under the caller, and `pending` tears it down.
        let move_failed = matches!(*shared.placement(), Placement::MoveFailed);
        drop(pending);
        match outcome {
            StartState::Started(_) if move_failed => Err(Error::NurseryClosed.into()),
            StartState::Started(v) => Ok(v),
            StartState::Failed(e) => Err(e),
            StartState::Panicked(p) => panic::resume_unwind(p),
            StartState::Dropped(c) => Err(Error::Cancelled(c).into()),
            StartState::Finished => Err(Error::StartedNotCalled.into()),
            StartState::Waiting(_) => unreachable!("StartWait returns a final state"),
        }
    }

    /// Cancels the nursery's scope: the body and every task get `Cancelled` at their next
    /// checkpoint (N7).
    ///
    /// ```
    /// trellis::run(async {
    ///     trellis::nursery(|n| async move {
    ///         for _ in 0..3 {
    ///             n.spawn(async {
    ///                 trellis::sleep_forever().await?;
    ///                 Ok(())
    ///             })?;
    ///         }
    ///         trellis::testing::wait_all_tasks_blocked().await?;
    ///         n.cancel(); // every task ends at its next checkpoint; not an error
    ///         Ok::<_, trellis::Error>(())
    ///     })
    ///     .await
    ///     .unwrap();
    /// });
    /// ```
    pub fn cancel(&self) {
        node::cancel(self.inner.node.as_ref(), CancelReason::Explicit(None));
    }

    /// The nursery's own cancel scope (to set a deadline or shield, or to cancel it).
    ///
    /// ```
    /// use std::time::Duration;
    ///
    /// trellis::run(async {
    ///     let out = trellis::nursery(|n| async move {
    ///         // A deadline for the whole nursery, set from inside.
    ///         n.cancel_scope().set_deadline(Some(trellis::now() + Duration::from_millis(5)));
    ///         n.spawn(async {
    ///             trellis::sleep_forever().await?;
    ///             Ok(())
    ///         })?;
    ///         trellis::sleep_forever().await?;
    ///         Ok::<_, trellis::Error>(())
    ///     })
    ///     .await;
    ///     assert!(matches!(out, Err(trellis::NurseryError::Cancelled(_))));
    /// });
    /// ```
    pub fn cancel_scope(&self) -> CancelScope {
        CancelScope::from_node(self.inner.node.clone())
    }

    /// Whether the nursery has finished and refuses new tasks.
    ///
    /// ```
    /// trellis::run(async {
    ///     let mut kept = None;
    ///     trellis::nursery(|n| {
    ///         kept = Some(n.clone());
    ///         async move {
    ///             assert!(!n.is_closed());
    ///             Ok::<_, trellis::Error>(())
    ///         }
    ///     })
    ///     .await
    ///     .unwrap();
    ///     let n = kept.unwrap();
    ///     assert!(n.is_closed());
    ///     assert!(matches!(n.spawn(async { Ok(()) }), Err(trellis::Error::NurseryClosed)));
    /// });
    /// ```
    pub fn is_closed(&self) -> bool {
        self.inner.node.lock().closed
    }
}

/// Passed to a task started with [`Nursery::start`]; call [`started`](TaskStatus::started) once
/// the task is ready (listening, connected...).
///
/// ```
/// use trellis::TaskStatus;
///
/// trellis::run(async {
///     trellis::nursery(|n| async move {
///         // The task reports a value once it is ready; `start` waits for it.
///         let port: u16 = n
///             .start(|status: TaskStatus<u16>| async move {
///                 let mut listener = trellis::net::TcpListener::bind("127.0.0.1:0").await?;
///                 status.started(listener.local_addr()?.port());
///                 let _ = listener.accept().await?; // keeps serving after `start` returned
///                 Ok(())
///             })
///             .await?;
///         let _client = trellis::net::TcpStream::connect(("127.0.0.1", port)).await?;
///         Ok::<_, trellis::Error>(())
///     })
///     .await
///     .unwrap();
/// });
/// ```
pub struct TaskStatus<V, E = Error> {
    shared: Arc<StartShared<V, E>>,
    nursery: Arc<NurseryInner<E>>,
}

impl<V, E> fmt::Debug for TaskStatus<V, E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TaskStatus")
    }
}

impl<V: Send + 'static, E: AsCancelled + Send + 'static> TaskStatus<V, E> {
    /// Where failures go once the task has started: the target nursery. Lets a started task
    /// that collects several errors of its own (a server's handlers) report each one there.
    pub(crate) fn target_reporter(&self) -> Arc<dyn Report<E>> {
        self.nursery.clone()
    }

    /// Reports the task ready: `start` returns `value`, and the task moves under the target
    /// nursery. If that nursery has meanwhile closed (it can only have been torn down, since a
    /// pending `start` keeps it open), the task is cancelled and dropped instead, and `start`
    /// fails with [`Error::NurseryClosed`].
    ///
    /// If the code that called `start` is cancelled by then, the task stays where it is, under
    /// the caller (as in trio): moving it could carry a cancellation it is already handling into
    /// a nursery where nothing would absorb it. `start` then returns once the task ends: `value`
    /// if it ends well, else its error (typically that cancellation, which the caller's scope
    /// absorbs).
    ///
    /// ```
    /// trellis::run(async {
    ///     trellis::nursery(|n| async move {
    ///         let ready = n
    ///             .start(|status| async move {
    ///                 status.started("ready"); // `start` returns this at once
    ///                 trellis::sleep(std::time::Duration::from_millis(1)).await?;
    ///                 Ok(())
    ///             })
    ///             .await?;
    ///         assert_eq!(ready, "ready");
    ///         Ok::<_, trellis::Error>(())
    ///     })
    ///     .await
    ///     .unwrap();
    /// });
    /// ```
    pub fn started(self, value: V) {
        let Some(child) = self.shared.child().clone() else {
            return;
        };
        {
            let state = self.shared.lock();
            if !matches!(*state, StartState::Waiting(_)) {
                return;
            }
        }
        // The move is decided under `placement`, which `PendingStart`'s drop also takes: either
        // the task moved before the `start` call was dropped (the target owns it now), or the
        // dropper sees it still under the caller and tears it down. Never neither (N11).
        let mut placement = self.shared.placement();
        match *placement {
            Placement::UnderCaller => {}
            // The `start` call is gone and its drop tears the task down.
            Placement::Abandoned => return,
            Placement::Moved(_) | Placement::MoveFailed => return,
        }
        if child.node().is_cancelled() {
            drop(placement);
            *lock_blocking(&self.shared.kept) = Some(value);
            return;
        }
        let target: NodeRef = self.nursery.node.clone().into();
        if node::reparent(&child, &target) {
            // From now on failures go to the nursery.
            *placement = Placement::Moved(self.nursery.clone());
        } else {
            // The target closed (torn down, N11). The task stays under the caller: `start`
            // fails and tears it down (`PendingStart`).
            *placement = Placement::MoveFailed;
            drop(placement);
            node::cancel(&child, CancelReason::Explicit(None));
        }
        self.shared.resolve(StartState::Started(value));
    }
}

struct StartShared<V, E> {
    state: Mutex<StartState<V, E>>,
    /// The started task, from when it is linked until the `start` call ends (`PendingStart`'s
    /// drop clears it: the task's cell holds this structure as its reporter, so a reference
    /// kept here for longer would keep both alive for ever).
    child: Mutex<Option<NodeRef>>,
    /// Where the task belongs; see [`Placement`].
    placement: Mutex<Placement<E>>,
    /// The value given to a `started` call that left the task in place (its caller was
    /// cancelled); `start` returns it if the task then ends well.
    kept: Mutex<Option<V>>,
    /// The runtime the task runs on, wherever it is placed.
    rt: Arc<Shared>,
}

/// Where a started task belongs. Moves only forward: `UnderCaller` to one of the others.
enum Placement<E> {
    /// Still under the `start` caller, which tears it down if the call ends first.
    UnderCaller,
    /// Moved into the target nursery by `started`, which now receives its failures.
    Moved(Arc<dyn Report<E>>),
    /// `started` found the target closed; the task stayed under the caller.
    MoveFailed,
    /// The `start` call ended (or was dropped) before `started`: the task is torn down.
    Abandoned,
}

enum StartState<V, E> {
    Waiting(Option<Waker>),
    Started(V),
    Failed(E),
    Panicked(Box<dyn Any + Send>),
    /// Dropped in a foreign wait by its cancellation (B1) before `started`.
    Dropped(Cancelled),
    Finished,
}

impl<V, E> StartShared<V, E> {
    fn lock(&self) -> MutexGuard<'_, StartState<V, E>> {
        lock_blocking(&self.state)
    }

    fn placement(&self) -> MutexGuard<'_, Placement<E>> {
        lock_blocking(&self.placement)
    }

    fn child(&self) -> MutexGuard<'_, Option<NodeRef>> {
        lock_blocking(&self.child)
    }

    fn forward(&self) -> Option<Arc<dyn Report<E>>> {
        match &*self.placement() {
            Placement::Moved(nursery) => Some(nursery.clone()),
            _ => None,
        }
    }

    /// Moves from `Waiting` to `state` (first resolution wins).
    fn resolve(&self, state: StartState<V, E>) {
        let mut s = self.lock();
        if let StartState::Waiting(waker) = &mut *s {
            let waker = waker.take();
            *s = state;
            drop(s);
            if let Some(w) = waker {
                w.wake();
            }
        }
    }
}

/// Before `started`, the task's outcome resolves the `start` call; afterwards it goes to the
/// nursery like any task's.
impl<V: Send, E: Send> Report<E> for StartShared<V, E> {
    fn failed(&self, error: E) {
        match self.forward() {
            Some(nursery) => nursery.failed(error),
            None => self.resolve(StartState::Failed(error)),
        }
    }
    fn panicked(&self, payload: Box<dyn Any + Send>) {
        match self.forward() {
            Some(nursery) => nursery.panicked(payload),
            None => self.resolve(StartState::Panicked(payload)),
        }
    }
    fn cancelled(&self, error: E) {
        match self.forward() {
            Some(nursery) => nursery.cancelled(error),
            None => self.resolve(StartState::Failed(error)),
        }
    }
    fn dropped(&self, cancelled: Cancelled) {
        match self.forward() {
            Some(nursery) => nursery.dropped(cancelled),
            None => self.resolve(StartState::Dropped(cancelled)),
        }
    }
    fn finished(&self) {
        let kept = lock_blocking(&self.kept).take();
        self.resolve(match kept {
            Some(value) => StartState::Started(value),
            None => StartState::Finished,
        });
    }
    fn runtime(&self) -> &Arc<Shared> {
        &self.rt
    }
}

/// Waits for a started task to resolve. Not a cancel point: if the caller is cancelled, so is
/// the task (it runs under the caller's scopes), and its outcome is reported here.
struct StartWait<'a, V, E> {
    shared: &'a StartShared<V, E>,
}

impl<V, E> Future for StartWait<'_, V, E> {
    type Output = StartState<V, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut s = self.shared.lock();
        match &mut *s {
            StartState::Waiting(waker) => {
                *waker = Some(cx.waker().clone());
                // Waiting for a started task is a trellis wait (B1): the task is cancelled
                // with the caller and resolves this.
                current::note_parked();
                Poll::Pending
            }
            _ => Poll::Ready(std::mem::replace(&mut *s, StartState::Waiting(None))),
        }
    }
}

/// Keeps the target nursery open while a `start` is in flight; on drop, releases it, and tears
/// the task down if the `start` future was dropped before the task started.
struct PendingStart<V, E> {
    nursery: Arc<PlainNode>,
    /// Where the task is recorded once spawned (`StartShared::child`).
    shared: Arc<StartShared<V, E>>,
}

impl<V, E> Drop for PendingStart<V, E> {
    fn drop(&mut self) {
        // Taken out now and dropped outside every lock: the last reference to a task may go here.
        let child = self.shared.child().take();
        if let Some(child) = &child {
            // Ask `started`, not the tree: when `start` is called from the target nursery's own
            // body, the caller's node is the nursery's, so the task's parent is the target from
            // the beginning; and a task that finished has forgotten its parent.
            let moved = {
                let mut placement = self.shared.placement();
                let moved = matches!(*placement, Placement::Moved(_));
                if matches!(*placement, Placement::UnderCaller) {
                    *placement = Placement::Abandoned;
                }
                moved
            };
            if !moved {
                // `start` was dropped (or finished) before the task moved to the nursery: a task
                // still under the caller must not outlive the call. Outside the lock: a poll of
                // the task in progress may be waiting for it in `started`.
                child.teardown();
            }
        }
        drop(child);
        let waker = {
            let mut s = self.nursery.lock();
            let counts = s.nursery();
            counts.pending_starts -= 1;
            if counts.pending_starts == 0 && counts.tasks == counts.services {
                s.take_exit_waker()
            } else {
                None
            }
        };
        if let Some(w) = waker {
            w.wake();
        }
    }
}

/// Future of [`nursery`].
///
/// ```
/// trellis::run(async {
///     // `nursery` returns this future; nothing runs until it is awaited.
///     let future = trellis::nursery(|_n| async { Ok::<_, trellis::Error>("body done") });
///     assert_eq!(future.await.unwrap(), "body done");
/// });
/// ```
#[must_use = "futures do nothing unless awaited"]
pub struct NurseryFuture<E, T, F, Fut> {
    stage: Stage<E, T, F, Fut>,
    supervise: bool,
}

enum Stage<E, T, F, Fut> {
    Init(Option<F>),
    Running(Running<E, T, Fut>),
    Done,
}

struct Running<E, T, Fut> {
    inner: Arc<NurseryInner<E>>,
    body: Option<Pin<Box<Fut>>>,
    value: Option<T>,
    body_cancelled: Option<Cancelled>,
}

impl<E, T, F, Fut> NurseryFuture<E, T, F, Fut> {
    fn new(body: F, supervise: bool) -> Self {
        NurseryFuture {
            stage: Stage::Init(Some(body)),
            supervise,
        }
    }
}

impl<E, T, F, Fut> Unpin for NurseryFuture<E, T, F, Fut> {}

impl<E, T, F, Fut> Future for NurseryFuture<E, T, F, Fut>
where
    F: FnOnce(Nursery<E>) -> Fut,
    Fut: Future<Output = Result<T, E>>,
    E: AsCancelled + Send + 'static,
{
    type Output = Result<T, NurseryError<E>>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        if let Stage::Init(body) = &mut self.stage {
            let body = body.take().expect("nursery body present until started");
            self.stage = Stage::Running(open(body, self.supervise));
        }
        let Stage::Running(running) = &mut self.stage else {
            panic!("nursery future polled after completion");
        };
        if running.poll_body(cx).is_pending() {
            return Poll::Pending;
        }
        if running.poll_children(cx).is_pending() {
            return Poll::Pending;
        }
        let Stage::Running(running) = std::mem::replace(&mut self.stage, Stage::Done) else {
            unreachable!()
        };
        Poll::Ready(running.finish())
    }
}

fn open<E, T, F, Fut>(body: F, supervise: bool) -> Running<E, T, Fut>
where
    F: FnOnce(Nursery<E>) -> Fut,
    E: AsCancelled + Send + 'static,
{
    let Some(parent) = current::current_node_ref() else {
        outside_runtime("nursery");
    };
    let rt = context::try_current().expect("a node is set, so a runtime is entered");
    if current::deferred_deadline().is_some() {
        // Its tasks may wait while the code around it keeps running: the deadlines around it
        // need their timers (see `node::enter_scope`).
        node::arm_deferred_above(Some(parent.clone()), &rt);
    }
    let node = PlainNode::new(NodeKind::Nursery);
    // A nursery is no task: it is never refused.
    let _ = node::link(parent, node.clone().into(), &node);
    let inner = Arc::new(NurseryInner {
        node,
        rt,
        failures: Mutex::new(Failures {
            errors: Vec::new(),
            panics: Vec::new(),
            cancelled: None,
        }),
        cancel_recorded: AtomicBool::new(false),
        supervise,
    });
    let body = {
        let _guard = current::set_node(inner.node.as_ref());
        body(Nursery {
            inner: inner.clone(),
        })
    };
    Running {
        inner,
        body: Some(Box::pin(body)),
        value: None,
        body_cancelled: None,
    }
}

impl<E, T, Fut> Running<E, T, Fut>
where
    Fut: Future<Output = Result<T, E>>,
    E: AsCancelled + Send + 'static,
{
    /// Polls the body (inside the nursery's node) until it is done.
    fn poll_body(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        let Some(body) = self.body.as_mut() else {
            return Poll::Ready(());
        };
        let node = self.inner.node.as_ref();
        if node::must_end(node, true) && node::absorbs_cancellation(node) {
            // The nursery's own cancellation found its body parked where it cannot see it
            // (B1), or its grace period ran out (B3): the body ends with that cancellation; the
            // tasks end on their own.
            self.body_cancelled = Some(node::cancelled_error(node));
            let _guard = current::set_node(node);
            let body = self.body.take();
            if let Err(payload) = panic::catch_unwind(AssertUnwindSafe(move || drop(body))) {
                self.inner.panicked(payload);
            }
            return Poll::Ready(());
        }
        let outer_watch = current::begin_park_watch();
        let polled = {
            let _guard = current::set_node(node);
            panic::catch_unwind(AssertUnwindSafe(|| body.as_mut().poll(cx)))
        };
        let parked = current::end_park_watch(outer_watch) != 0;
        match polled {
            Ok(Poll::Pending) => {
                node::record_poll(node, parked, cx.waker(), || {
                    node::absorbs_cancellation(node)
                });
                return Poll::Pending;
            }
            Ok(Poll::Ready(Ok(value))) => self.value = Some(value),
            Ok(Poll::Ready(Err(e))) => match e.cancelled() {
                Some(c) if self.inner.node.is_cancelled() || c.is_absorbed() => {
                    self.body_cancelled = Some(c)
                }
                _ => {
                    // The body's failure ends the nursery's work, supervising or not.
                    self.inner.failures().errors.push(e);
                    node::cancel(node, CancelReason::Nursery);
                }
            },
            Err(payload) => self.inner.panicked(payload),
        }
        let _guard = current::set_node(self.inner.node.as_ref());
        self.body = None;
        Poll::Ready(())
    }

    /// Waits (not a cancel point, N4) until no ordinary task and no `start` is left; cancels the
    /// services then (N12), and closes the nursery once they are gone too.
    fn poll_children(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        let services = {
            let mut s = self.inner.node.lock();
            let counts = s.nursery();
            let (busy, empty) = (
                counts.tasks > counts.services || counts.pending_starts > 0,
                counts.tasks == 0,
            );
            if busy {
                s.set_exit_waker(cx.waker());
                // Waiting for tasks is a trellis wait, not a foreign one (B1).
                current::note_parked();
                return Poll::Pending;
            }
            if empty {
                s.closed = true;
                return Poll::Ready(());
            }
            s.set_exit_waker(cx.waker());
            drop(s);
            current::note_parked();
            self.inner.node.children()
        };
        for child in services {
            if child.node().task_info().is_some_and(|info| info.service) {
                node::cancel(&child, CancelReason::ServiceDone);
            }
        }
        Poll::Pending
    }

    /// The nursery's outcome (N3): panics first (N10), then failures; then a cancellation that
    /// came from outside the nursery propagates (an enclosing scope absorbs it, C3), even if the
    /// body produced a value; a cancellation of the nursery's own scope is absorbed here.
    fn finish(self) -> Result<T, NurseryError<E>> {
        let node = &self.inner.node;
        let absorbed_here = node::absorbs_cancellation(node);
        node::unlink(node.as_ref());
        let mut failures = self.inner.failures();
        if !failures.panics.is_empty() {
            let payload = failures.panics.remove(0);
            drop(failures);
            panic::resume_unwind(payload);
        }
        if !failures.errors.is_empty() {
            return Err(NurseryError::Failed(std::mem::take(&mut failures.errors)));
        }
        let cancelled = self.body_cancelled.or(failures.cancelled.take());
        drop(failures);
        match (self.value, cancelled) {
            (_, Some(c)) if !absorbed_here => Err(NurseryError::Cancelled(c)),
            (Some(value), _) => Ok(value),
            // Our own cancellation, absorbed here, ended the body before it produced a value.
            (None, Some(c)) => Err(NurseryError::Cancelled(c.into_absorbed())),
            (None, None) => unreachable!("the body produced a value, an error or a panic"),
        }
    }
}

impl<E, T, F, Fut> Drop for NurseryFuture<E, T, F, Fut> {
    fn drop(&mut self) {
        let Stage::Running(running) = &mut self.stage else {
            return;
        };
        // Forced teardown (N11): close, drop the body, drop every task's future, then leave.
        let node = running.inner.node.clone();
        node.lock().closed = true;
        node::cancel(node.as_ref(), CancelReason::Explicit(None));
        // A panic from the body's drop must not skip the tasks' teardown: it is raised after.
        let body_panic = {
            let _guard = current::set_node(node.as_ref());
            let body = running.body.take();
            panic::catch_unwind(AssertUnwindSafe(move || drop(body))).err()
        };
        loop {
            let tasks: Vec<_> = node
                .children()
                .into_iter()
                .filter(|c| c.node().task_info().is_some())
                .collect();
            let here = std::thread::current().id();
            let (elsewhere, on_this_thread): (Vec<_>, Vec<_>) = tasks
                .into_iter()
                .partition(|task| task.local_thread().is_some_and(|owner| owner != here));
            let moved = !elsewhere.is_empty();
            for task in elsewhere {
                // A `spawn_local` future must not be dropped on this thread (the nursery
                // future was moved here). Hand the task to the runtime's root, cancelled: it
                // ends on its own thread, at the latest when the runtime shuts down.
                let root = node::root_of(&task);
                node::reparent(&task, &root);
                node::cancel(&task, CancelReason::Explicit(None));
            }
            // A task whose future is in use below us (its own code, or a destructor run from
            // inside it, drops this nursery) cannot end before we return: it is left to end
            // once that use is over, still linked (see `NodeOps::teardown`).
            if node::tear_down(&on_this_thread) == on_this_thread.len() && !moved {
                break;
            }
        }
        node::unlink(node.as_ref());
        // The first panic of the teardown (the body's drop, else a task's drop: `teardown`
        // reports those to this nursery) resumes here, as a task's panic would (N10). Not while
        // already unwinding: a second panic would abort the process.
        let payload = body_panic.or_else(|| {
            let mut failures = running.inner.failures();
            (!failures.panics.is_empty()).then(|| failures.panics.remove(0))
        });
        if let Some(payload) = payload {
            if !std::thread::panicking() {
                panic::resume_unwind(payload);
            }
        }
    }
}
