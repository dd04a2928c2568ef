//! Running blocking code on other threads, and the way back.
//!
//! For code that would block the runtime's threads: a blocking library call, heavy computation,
//! a C library with no async interface. Hand it to [`run_blocking`] and await the result; the
//! other tasks run meanwhile.
//!
//! ```
//! trellis::run(async {
//!     let sum = trellis::thread::run_blocking(|| (1..=1_000u64).sum::<u64>()).await?;
//!     assert_eq!(sum, 500_500);
//!     Ok::<_, trellis::Cancelled>(())
//! })
//! .unwrap();
//! ```
//!
//! - [`run_blocking`] runs a closure on a pool thread and waits for it without blocking the
//!   runtime (trio's `to_thread.run_sync`, tokio's `spawn_blocking`). At most 40 such threads run
//!   at once by default, as with trio's default thread limiter.
//! - [`from_thread`] lets code on such a thread run async code (or a closure) back on the
//!   runtime and get the result: trio's `from_thread.run` / `run_sync`. On a thread started by
//!   `run_blocking`, the work runs inside the task that is waiting for the thread, under that
//!   task's cancel scopes (as trio does since 0.23). From any other plain thread, use a
//!   [`Portal`] taken from inside the runtime (anyio's blocking portal).
//!
//! Cancellation (principle 4): a thread cannot be interrupted. By default a cancelled
//! `run_blocking` keeps waiting until the thread finishes and returns its result, so no work is
//! lost; the cancellation is then seen at the caller's next checkpoint (trio's default,
//! `abandon_on_cancel=False`). With [`abandon_on_cancel`](RunBlocking::abandon_on_cancel) it
//! returns `Cancelled` at once and the thread's eventual result is dropped; the thread keeps its
//! slot under the limit until it really finishes. Code on the thread can poll for cancellation
//! with [`check_cancelled`].

mod pool;

use std::any::Any;
use std::cell::RefCell;
use std::fmt;
use std::future::Future;
use std::panic::{self, AssertUnwindSafe};
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::mpsc::{sync_channel, SyncSender};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, Weak};
use std::task::{Context, Poll, Waker};

use crate::cancel::current;
use crate::cancel::node::{self, TreeNode};
use crate::cancel::{outside_runtime, CancelWaiter, YieldOnce};
use crate::error::Cancelled;
use crate::runtime::{context, Shared};
use crate::sync::{Borrower, CapacityLimiter};
use crate::task::{spawn_child, Report, SpawnSpec};

/// How many threads may run blocking calls at once unless told otherwise (trio's default).
pub const DEFAULT_LIMIT: usize = 40;

/// The limiter [`run_blocking`] uses unless given another: one per process, with
/// [`DEFAULT_LIMIT`] tokens. Change its size with
/// [`set_total_tokens`](CapacityLimiter::set_total_tokens).
///
/// Deviation from trio, whose default limiter belongs to one `trio.run`: a pool thread is not
/// tied to a runtime, so neither is the limit on them.
///
/// ```
/// trellis::run(async {
///     let limiter = trellis::thread::default_limiter();
///     assert_eq!(limiter.total_tokens(), trellis::thread::DEFAULT_LIMIT);
///     // While a call runs, its thread holds one of the tokens.
///     let held = trellis::thread::run_blocking(move || limiter.borrowed_tokens()).await?;
///     assert!(held >= 1);
///     Ok::<_, trellis::Cancelled>(())
/// })
/// .unwrap();
/// ```
pub fn default_limiter() -> CapacityLimiter {
    static DEFAULT: OnceLock<CapacityLimiter> = OnceLock::new();
    DEFAULT
        .get_or_init(|| CapacityLimiter::new(DEFAULT_LIMIT))
        .clone()
}

/// Runs `f` on a pool thread and returns its value once it is done, without blocking the
/// runtime. A panic in `f` resumes in the caller.
///
/// Waiting for a free slot under the thread limit is a checkpoint (a call cancelled there never
/// starts). Once `f` runs, see the module docs for what a cancellation does.
///
/// ```
/// trellis::run(async {
///     let sum = trellis::thread::run_blocking(|| (1..=10u64).sum::<u64>()).await?;
///     assert_eq!(sum, 55);
///     Ok::<_, trellis::Cancelled>(())
/// })
/// .unwrap();
/// ```
pub fn run_blocking<F, R>(f: F) -> RunBlocking<F, R>
where
    F: FnOnce() -> R + Send + 'static,
    R: Send + 'static,
{
    RunBlocking {
        f: Some(f),
        abandon_on_cancel: false,
        limiter: None,
        call: None,
    }
}

/// A blocking call: configure it with the builder methods, then `.await` it. See
/// [`run_blocking`].
///
/// ```
/// use trellis::thread::{run_blocking, RunBlocking};
///
/// trellis::run(async {
///     let limiter = trellis::sync::CapacityLimiter::new(1);
///     // Configured, not yet running: nothing happens until it is awaited.
///     let call: RunBlocking<_, u32> = run_blocking(|| 6 * 7)
///         .limiter(&limiter)
///         .abandon_on_cancel(true);
///     assert_eq!(call.await?, 42);
///     Ok::<_, trellis::Cancelled>(())
/// })
/// .unwrap();
/// ```
#[must_use = "a blocking call does nothing unless awaited"]
pub struct RunBlocking<F, R> {
    f: Option<F>,
    abandon_on_cancel: bool,
    limiter: Option<CapacityLimiter>,
    /// The running call, from the first poll on.
    call: Option<CallFuture<R>>,
}

impl<F, R> fmt::Debug for RunBlocking<F, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RunBlocking")
            .field("abandon_on_cancel", &self.abandon_on_cancel)
            .finish()
    }
}

impl<F, R> RunBlocking<F, R>
where
    F: FnOnce() -> R + Send + 'static,
    R: Send + 'static,
{
    /// If `true`, a cancellation makes the call return `Err(Cancelled)` at once, leaving the
    /// thread to finish on its own (its result is dropped). Default `false`: wait for the thread.
    ///
    /// ```
    /// use std::time::Duration;
    ///
    /// trellis::run(async {
    ///     let slow = trellis::thread::run_blocking(|| std::thread::sleep(Duration::from_millis(50)))
    ///         .abandon_on_cancel(true);
    ///     // Returns at the deadline; the thread finishes its sleep in the background.
    ///     assert!(trellis::move_on_after(Duration::from_millis(1), slow).await.is_none());
    /// });
    /// ```
    pub fn abandon_on_cancel(mut self, abandon: bool) -> Self {
        self.abandon_on_cancel = abandon;
        self
    }

    /// Takes the thread's token from `limiter` instead of the [`default_limiter`]. Each call is
    /// its own borrower, so one task may have several calls in flight.
    ///
    /// ```
    /// use trellis::sync::CapacityLimiter;
    /// use trellis::thread::run_blocking;
    ///
    /// trellis::run(async {
    ///     // At most two of these calls run at once, whatever the default limit is.
    ///     let disk = CapacityLimiter::new(2);
    ///     trellis::nursery(|n| async move {
    ///         for _ in 0..4 {
    ///             let disk = disk.clone();
    ///             n.spawn(async move {
    ///                 let in_use = run_blocking({
    ///                     let disk = disk.clone();
    ///                     move || disk.borrowed_tokens()
    ///                 })
    ///                 .limiter(&disk)
    ///                 .await?;
    ///                 assert!(in_use <= 2);
    ///                 Ok(())
    ///             })?;
    ///         }
    ///         Ok::<_, trellis::Error>(())
    ///     })
    ///     .await
    ///     .unwrap();
    /// });
    /// ```
    pub fn limiter(mut self, limiter: &CapacityLimiter) -> Self {
        self.limiter = Some(limiter.clone());
        self
    }
}

/// The boxed body of a running [`RunBlocking`].
type CallFuture<R> = Pin<Box<dyn Future<Output = Result<R, Cancelled>> + Send>>;

// `f` is never pinned: it is moved out into the boxed call on the first poll.
impl<F, R> Unpin for RunBlocking<F, R> {}

impl<F, R> Future for RunBlocking<F, R>
where
    F: FnOnce() -> R + Send + 'static,
    R: Send + 'static,
{
    type Output = Result<R, Cancelled>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = &mut *self;
        if this.call.is_none() {
            let f = this.f.take().expect("RunBlocking polled after completion");
            let limiter = this.limiter.take().unwrap_or_else(default_limiter);
            this.call = Some(Box::pin(run_on_pool(f, this.abandon_on_cancel, limiter)));
        }
        let call = this.call.as_mut().expect("set above");
        let out = call.as_mut().poll(cx);
        if out.is_ready() {
            this.call = None;
        }
        out
    }
}

/// Counts a `run_blocking` call in flight on its runtime, for the deadlock detector.
struct InFlight(Option<Arc<Shared>>);

impl InFlight {
    fn new() -> Self {
        let rt = context::try_current();
        if let Some(rt) = &rt {
            rt.watchdog.offloaded.fetch_add(1, Ordering::SeqCst);
        }
        InFlight(rt)
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        if let Some(rt) = &self.0 {
            rt.watchdog.offloaded.fetch_sub(1, Ordering::SeqCst);
        }
    }
}

async fn run_on_pool<F, R>(f: F, abandon: bool, limiter: CapacityLimiter) -> Result<R, Cancelled>
where
    F: FnOnce() -> R + Send + 'static,
    R: Send + 'static,
{
    // A thread in flight may wake the task: the deadlock detector must know.
    let _in_flight = InFlight::new();
    // Each call is its own borrower (trio uses a placeholder object per call the same way).
    let permit = match limiter.acquire_on_behalf_of(Borrower::unique()).await {
        Ok(permit) => permit,
        Err(crate::Error::Cancelled(c)) => return Err(c),
        // A unique borrower never holds a token already.
        Err(e) => unreachable!("a fresh borrower was refused a token: {e}"),
    };
    let call = Arc::new(Call {
        node: current::current_node_arc(),
        state: Mutex::new(CallState {
            result: None,
            waker: None,
            requests: Vec::new(),
            abandoned: false,
        }),
    });
    let on_thread = call.clone();
    pool::execute(Box::new(move || {
        let result = {
            let _current = CurrentCall::enter(on_thread.clone());
            panic::catch_unwind(AssertUnwindSafe(f))
        };
        on_thread.finish(result);
        // The slot is held until the thread is really done, even if the caller abandoned it.
        drop(permit);
    }));
    WaitCall {
        call,
        abandon,
        cancel: CancelWaiter::new(),
        active: Vec::new(),
        yield_once: YieldOnce::default(),
    }
    .await
}

/// Runs `job` on a pool thread without waiting for it or taking a limiter token: for short
/// clean-up work (reaping a killed child) that must not block the runtime.
pub(crate) fn execute_detached(job: Box<dyn FnOnce() + Send>) {
    pool::execute(job);
}

/// Work sent from a pool thread to the waiting task.
type Request = Pin<Box<dyn Future<Output = ()> + Send>>;

/// What a pool thread shares with the task waiting for it.
struct Call<R> {
    /// The cancel-tree node the caller waits in, for [`check_cancelled`].
    node: Option<Arc<dyn TreeNode>>,
    state: Mutex<CallState<R>>,
}

struct CallState<R> {
    result: Option<std::thread::Result<R>>,
    waker: Option<Waker>,
    requests: Vec<Request>,
    /// The caller stopped waiting: results and requests are dropped from now on.
    abandoned: bool,
}

impl<R> Call<R> {
    fn lock(&self) -> MutexGuard<'_, CallState<R>> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn finish(&self, result: std::thread::Result<R>) {
        let mut state = self.lock();
        if state.abandoned {
            drop(state);
            drop(result);
            return;
        }
        state.result = Some(result);
        let waker = state.waker.take();
        drop(state);
        if let Some(w) = waker {
            w.wake();
        }
    }

    fn abandon(&self) {
        let requests = {
            let mut state = self.lock();
            state.abandoned = true;
            std::mem::take(&mut state.requests)
        };
        // Dropping a request drops its reply channel: the thread blocked on it gets an error.
        drop(requests);
    }
}

/// The type-erased view of a [`Call`] that code on the pool thread uses.
trait CallSink: Send + Sync {
    fn submit(&self, request: Request) -> Result<(), FromThreadError>;
    fn cancelled(&self) -> Option<Cancelled>;
}

impl<R: Send> CallSink for Call<R> {
    fn submit(&self, request: Request) -> Result<(), FromThreadError> {
        let mut state = self.lock();
        if state.abandoned {
            return Err(FromThreadError::Abandoned);
        }
        state.requests.push(request);
        let waker = state.waker.take();
        drop(state);
        if let Some(w) = waker {
            w.wake();
        }
        Ok(())
    }

    fn cancelled(&self) -> Option<Cancelled> {
        if self.lock().abandoned {
            return Some(Cancelled::new(crate::CancelReason::Explicit(Some(
                "the task stopped waiting for this thread".into(),
            ))));
        }
        let node = self.node.as_ref()?.node();
        node.is_cancelled().then(|| node::cancelled_error(node))
    }
}

thread_local! {
    static CURRENT_CALL: RefCell<Option<Arc<dyn CallSink>>> = const { RefCell::new(None) };
}

/// Marks the current pool thread as serving a call, until dropped.
struct CurrentCall;

impl CurrentCall {
    fn enter(call: Arc<dyn CallSink>) -> CurrentCall {
        CURRENT_CALL.with(|c| *c.borrow_mut() = Some(call));
        CurrentCall
    }
}

impl Drop for CurrentCall {
    fn drop(&mut self) {
        CURRENT_CALL.with(|c| c.borrow_mut().take());
    }
}

fn current_call() -> Option<Arc<dyn CallSink>> {
    CURRENT_CALL.with(|c| c.borrow().clone())
}

/// The task's side of a call: waits for the thread, running its `from_thread` requests.
struct WaitCall<R> {
    call: Arc<Call<R>>,
    abandon: bool,
    cancel: CancelWaiter,
    /// Requests being run, inside this task.
    active: Vec<Request>,
    yield_once: YieldOnce,
}

impl<R> Future for WaitCall<R> {
    type Output = Result<R, Cancelled>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = &mut *self;
        let (requests, result) = {
            let mut state = this.call.lock();
            let requests = std::mem::take(&mut state.requests);
            let result = if requests.is_empty() && this.active.is_empty() {
                state.result.take()
            } else {
                None
            };
            if result.is_none() {
                match &state.waker {
                    Some(w) if w.will_wake(cx.waker()) => {}
                    _ => state.waker = Some(cx.waker().clone()),
                }
            }
            (requests, result)
        };
        if let Some(result) = result {
            // Principle 3: a call that never blocked still yields once.
            if this.yield_once.poll_yield(cx).is_pending() {
                this.call.lock().result = Some(result);
                return Poll::Pending;
            }
            this.cancel.clear();
            return Poll::Ready(match result {
                Ok(value) => Ok(value),
                Err(payload) => panic::resume_unwind(payload),
            });
        }
        this.yield_once.blocked();
        this.active.extend(requests);
        this.active
            .retain_mut(|request| request.as_mut().poll(cx).is_pending());
        if this.abandon {
            if let Poll::Ready(c) = this.cancel.poll_cancelled("thread::run_blocking", cx) {
                this.active.clear();
                this.call.abandon();
                return Poll::Ready(Err(c));
            }
        }
        // Waiting for the thread is a trellis wait (B1), cancellable or not.
        current::note_parked();
        Poll::Pending
    }
}

impl<R> Drop for WaitCall<R> {
    fn drop(&mut self) {
        // Finished normally, or dropped while waiting: either way nobody serves requests now.
        self.active.clear();
        self.call.abandon();
    }
}

/// Called on a thread started by [`run_blocking`]: `Err(Cancelled)` if the task waiting for
/// this thread is cancelled (or stopped waiting), so long-running blocking work can stop early.
///
/// ```
/// trellis::run(async {
///     let steps = trellis::thread::run_blocking(|| {
///         let mut steps = 0;
///         while trellis::thread::check_cancelled().is_ok() && steps < 3 {
///             steps += 1;
///         }
///         steps
///     })
///     .await?;
///     assert_eq!(steps, 3);
///     Ok::<_, trellis::Cancelled>(())
/// })
/// .unwrap();
/// ```
///
/// # Panics
/// On a thread not started by `run_blocking`.
pub fn check_cancelled() -> Result<(), Cancelled> {
    match current_call() {
        Some(call) => call.cancelled().map_or(Ok(()), Err),
        None => panic!(
            "trellis::thread::check_cancelled must be called on a thread started by \
             trellis::thread::run_blocking"
        ),
    }
}

/// Why work sent from a plain thread to the runtime did not run.
///
/// ```
/// use trellis::thread::{from_thread, FromThreadError};
///
/// // A thread that `run_blocking` did not start cannot use `from_thread`.
/// let err = std::thread::spawn(|| from_thread::run_sync(|| 1)).join().unwrap();
/// assert_eq!(err, Err(FromThreadError::NotBlockingThread));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FromThreadError {
    /// The calling thread was not started by `run_blocking`; use a [`Portal`].
    #[error(
        "this thread was not started by trellis::thread::run_blocking; \
         take a trellis::thread::Portal inside the runtime and use it here"
    )]
    NotBlockingThread,
    /// The task that started this thread stopped waiting for it (it was cancelled with
    /// `abandon_on_cancel`, or dropped).
    #[error("the task that started this thread stopped waiting for it")]
    Abandoned,
    /// The runtime has finished (or is shutting down) and runs nothing more.
    #[error("the trellis runtime has finished")]
    RunFinished,
}

/// Runs async work or closures back on the runtime from other threads.
///
/// ```
/// use trellis::thread::{from_thread, run_blocking};
///
/// trellis::run(async {
///     // A blocking loop that reports progress to async code between its steps.
///     let (tx, rx) = trellis::channel::unbounded::<u32>();
///     let steps = run_blocking(move || {
///         for step in 1..=3 {
///             let tx = tx.clone();
///             from_thread::run(move || async move { tx.send(step).await })
///                 .expect("the task is waiting for this thread")
///                 .expect("the receiver is still there");
///         }
///         3
///     })
///     .await?;
///     assert_eq!(steps, 3);
///     let got: Vec<u32> = std::iter::from_fn(|| rx.try_recv().ok()).collect();
///     assert_eq!(got, [1, 2, 3]);
///     Ok::<_, trellis::Cancelled>(())
/// })
/// .unwrap();
/// ```
pub mod from_thread {
    use super::*;

    /// From a thread started by [`run_blocking`]: runs `f()` to completion inside the task that
    /// waits for this thread (under its cancel scopes) and returns the output. Blocks this
    /// thread meanwhile. A panic in the future resumes here.
    ///
    /// ```
    /// use std::time::Duration;
    ///
    /// trellis::run(async {
    ///     let got = trellis::thread::run_blocking(|| {
    ///         trellis::thread::from_thread::run(|| async {
    ///             trellis::sleep(Duration::from_millis(1)).await?;
    ///             Ok::<_, trellis::Cancelled>("slept on the runtime")
    ///         })
    ///     })
    ///     .await?;
    ///     assert_eq!(got, Ok(Ok("slept on the runtime")));
    ///     Ok::<_, trellis::Cancelled>(())
    /// })
    /// .unwrap();
    /// ```
    ///
    /// # Errors
    /// [`FromThreadError::NotBlockingThread`] on another thread;
    /// [`FromThreadError::Abandoned`] if the task no longer waits for this thread.
    pub fn run<F, Fut, T>(f: F) -> Result<T, FromThreadError>
    where
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = T> + Send + 'static,
        T: Send + 'static,
    {
        let call = current_call().ok_or(FromThreadError::NotBlockingThread)?;
        let (tx, rx) = sync_channel(1);
        call.submit(Box::pin(Forward::new(f, tx)))?;
        drop(call);
        receive(rx, FromThreadError::Abandoned)
    }

    /// Like [`run`] for a plain closure: `f` runs on the runtime, inside the waiting task.
    ///
    /// # Errors
    /// As [`run`].
    ///
    /// ```
    /// use trellis::thread::{from_thread, run_blocking};
    ///
    /// trellis::run(async {
    ///     let id = || trellis::lowlevel::current_task().id;
    ///     let on_runtime = run_blocking(move || from_thread::run_sync(id)).await?;
    ///     // The closure ran inside the task that waits for the thread: here, main.
    ///     assert_eq!(on_runtime, Ok(0));
    ///     Ok::<_, trellis::Cancelled>(())
    /// })
    /// .unwrap();
    /// ```
    pub fn run_sync<F, T>(f: F) -> Result<T, FromThreadError>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        run(|| async move { f() })
    }
}

/// Blocks on the reply channel; a panic in the work resumes here.
fn receive<T>(
    rx: std::sync::mpsc::Receiver<std::thread::Result<T>>,
    gone: FromThreadError,
) -> Result<T, FromThreadError> {
    match rx.recv() {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(payload)) => panic::resume_unwind(payload),
        Err(_) => Err(gone),
    }
}

/// Runs the work and sends its output (or panic) back to the blocked thread.
struct Forward<F, Fut, T> {
    make: Option<F>,
    fut: Option<Pin<Box<Fut>>>,
    reply: SyncSender<std::thread::Result<T>>,
}

impl<F, Fut, T> Forward<F, Fut, T> {
    fn new(make: F, reply: SyncSender<std::thread::Result<T>>) -> Self {
        Forward {
            make: Some(make),
            fut: None,
            reply,
        }
    }
}

impl<F, Fut, T> Future for Forward<F, Fut, T>
where
    F: FnOnce() -> Fut,
    Fut: Future<Output = T>,
{
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = &mut *self;
        let polled = panic::catch_unwind(AssertUnwindSafe(|| {
            if let Some(make) = this.make.take() {
                this.fut = Some(Box::pin(make()));
            }
            this.fut.as_mut().expect("created above").as_mut().poll(cx)
        }));
        let reply: std::thread::Result<T> = match polled {
            Ok(Poll::Pending) => return Poll::Pending,
            Ok(Poll::Ready(value)) => Ok(value),
            Err(payload) => Err(payload),
        };
        // The future is dropped before the reply goes, so the caller sees its cleanup done. A
        // panic in that drop does not cost the caller a value the work produced: the value is
        // delivered, then the panic resumes here, in the task, like a panic in a detached
        // thread after it handed its result over (the panic hook has reported it).
        let fut = this.fut.take();
        let drop_panic = panic::catch_unwind(AssertUnwindSafe(move || drop(fut))).err();
        // The thread may have given up (it cannot: it blocks until a reply or a drop).
        let _ = this.reply.send(reply);
        if let Some(payload) = drop_panic {
            panic::resume_unwind(payload);
        }
        Poll::Ready(())
    }
}

impl<F, Fut, T> Unpin for Forward<F, Fut, T> {}

/// A handle on a runtime that plain threads use to run work on it (anyio's blocking portal,
/// trio's `TrioToken`). Take it inside the runtime with [`Portal::current`]; it is cheap to
/// clone and does not keep the runtime alive.
///
/// Work sent through a portal runs as a task of the runtime itself, not of any nursery: it is
/// cancelled when the runtime shuts down, and nothing else cancels it.
///
/// ```
/// trellis::run(async {
///     let portal = trellis::thread::Portal::current();
///     let answer = trellis::thread::run_blocking(move || {
///         std::thread::spawn(move || portal.run_sync(|| 6 * 7)).join().unwrap()
///     })
///     .await?;
///     assert_eq!(answer, Ok(42));
///     Ok::<_, trellis::Cancelled>(())
/// })
/// .unwrap();
/// ```
pub struct Portal {
    rt: Weak<Shared>,
    /// The root of the runtime's cancel tree: portal tasks are its children.
    root: Weak<dyn TreeNode>,
}

/// Live portals are counted on their runtime: a plain thread holding one may wake a task, which
/// the deadlock detector must know.
impl Clone for Portal {
    fn clone(&self) -> Self {
        if let Some(rt) = self.rt.upgrade() {
            rt.watchdog.portals.fetch_add(1, Ordering::SeqCst);
        }
        Portal {
            rt: self.rt.clone(),
            root: self.root.clone(),
        }
    }
}

impl Drop for Portal {
    fn drop(&mut self) {
        if let Some(rt) = self.rt.upgrade() {
            rt.watchdog.portals.fetch_sub(1, Ordering::SeqCst);
        }
    }
}

impl fmt::Debug for Portal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Portal")
            .field("running", &(self.rt.strong_count() > 0))
            .finish()
    }
}

/// Failures of portal tasks go nowhere: the output (or panic) is sent to the calling thread.
struct Detached;

impl Report<Cancelled> for Detached {
    fn failed(&self, _error: Cancelled) {}
    fn panicked(&self, _payload: Box<dyn Any + Send>) {}
}

impl Portal {
    /// The portal of the runtime the caller runs on.
    ///
    /// # Panics
    /// Outside a runtime.
    ///
    /// ```
    /// trellis::run(async {
    ///     let portal = trellis::thread::Portal::current();
    ///     // A thread of our own, not one from `run_blocking`.
    ///     let worker = std::thread::spawn(move || portal.run(|| async { trellis::now() }).is_ok());
    ///     let ok = trellis::thread::run_blocking(move || worker.join().unwrap()).await?;
    ///     assert!(ok);
    ///     Ok::<_, trellis::Cancelled>(())
    /// })
    /// .unwrap();
    /// ```
    pub fn current() -> Portal {
        match context::try_current().zip(current::current_node_arc()) {
            Some((rt, here)) => {
                rt.watchdog.portals.fetch_add(1, Ordering::SeqCst);
                Portal {
                    rt: Arc::downgrade(&rt),
                    root: Arc::downgrade(&node::root_of(&here)),
                }
            }
            None => outside_runtime("thread::Portal::current"),
        }
    }

    /// Runs `f()` to completion as a task of the runtime and returns its output, blocking this
    /// thread meanwhile. A panic in the future resumes here. A future that produced its value
    /// and then panics in its destructor still delivers the value; that panic is reported by the
    /// panic hook, as a detached thread's would be.
    ///
    /// # Errors
    /// [`FromThreadError::RunFinished`] if the runtime has finished or shuts down before the
    /// work completes.
    ///
    /// # Panics
    /// On a thread of the runtime itself (blocking it could deadlock); use `.await` there.
    ///
    /// ```
    /// use std::time::Duration;
    /// use trellis::thread::{FromThreadError, Portal};
    ///
    /// let portal = trellis::run(async {
    ///     let portal = Portal::current();
    ///     let copy = portal.clone();
    ///     let slept = trellis::thread::run_blocking(move || {
    ///         std::thread::spawn(move || {
    ///             copy.run(|| async { trellis::sleep(Duration::from_millis(1)).await.is_ok() })
    ///         })
    ///         .join()
    ///         .unwrap()
    ///     })
    ///     .await
    ///     .unwrap();
    ///     assert_eq!(slept, Ok(true));
    ///     portal
    /// });
    /// // After the runtime has finished, a portal runs nothing.
    /// assert_eq!(portal.run(|| async { 1 }), Err(FromThreadError::RunFinished));
    /// ```
    pub fn run<F, Fut, T>(&self, f: F) -> Result<T, FromThreadError>
    where
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = T> + Send + 'static,
        T: Send + 'static,
    {
        if context::in_runtime() {
            panic!(
                "trellis::thread::Portal::run blocks the calling thread; call it from a plain \
                 thread, not from inside a trellis runtime (await the work there instead)"
            );
        }
        let rt = self.rt.upgrade().ok_or(FromThreadError::RunFinished)?;
        let root = self.root.upgrade().ok_or(FromThreadError::RunFinished)?;
        let (tx, rx) = sync_channel(1);
        let forward = Forward::new(f, tx);
        let task = async move {
            forward.await;
            Ok::<(), Cancelled>(())
        };
        let spec = SpawnSpec {
            rt: &rt,
            parent: root,
            name: Some("portal".into()),
            service: false,
            reporter: Arc::new(Detached),
            on_linked: None,
            local: false,
        };
        // SAFETY: the future and its output are `Send`.
        let spawned = unsafe { spawn_child(spec, task) };
        drop(rt);
        if spawned.is_err() {
            return Err(FromThreadError::RunFinished);
        }
        receive(rx, FromThreadError::RunFinished)
    }

    /// Like [`run`](Portal::run) for a plain closure.
    ///
    /// ```
    /// use trellis::thread::Portal;
    ///
    /// trellis::run(async {
    ///     let portal = Portal::current();
    ///     let (tx, rx) = trellis::channel::unbounded();
    ///     // A thread of its own hands a value to the runtime with a plain closure.
    ///     let sent = trellis::thread::run_blocking(move || {
    ///         std::thread::spawn(move || portal.run_sync(move || tx.try_send("from a thread")))
    ///             .join()
    ///             .unwrap()
    ///     })
    ///     .await?;
    ///     assert!(matches!(sent, Ok(Ok(()))));
    ///     assert_eq!(rx.recv().await.unwrap(), "from a thread");
    ///     Ok::<_, trellis::Cancelled>(())
    /// })
    /// .unwrap();
    /// ```
    ///
    /// # Errors
    /// As [`run`](Portal::run).
    pub fn run_sync<F, T>(&self, f: F) -> Result<T, FromThreadError>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        self.run(|| async move { f() })
    }
}
