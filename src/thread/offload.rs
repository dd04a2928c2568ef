//! Offloading: [`run_blocking`] hands a closure to a pool thread and waits for it without
//! blocking the runtime.
//!
//! A call goes through three steps:
//! 1. it takes a token from its [`CapacityLimiter`] (the [`default_limiter`] unless given
//!    another), a checkpoint: a call cancelled here never starts;
//! 2. the closure goes to a [`pool`] thread, which keeps the token until the closure returns,
//!    even if the caller stopped waiting, so the limit counts threads really busy;
//! 3. the task waits on the call's shared state ([`call`](super::call)), serving the thread's
//!    [`from_thread`](super::from_thread) requests meanwhile.
//!
//! While a call is in flight it is counted on its runtime, so the deadlock detector knows that a
//! thread may still wake the task.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};

use super::call::Call;
use super::pool;
use crate::error::Cancelled;
use crate::runtime::{context, Shared};
use crate::sync::{Borrower, CapacityLimiter, LimiterToken};
use crate::task::local;

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
    let in_flight = InFlight::new();
    // Each call is its own borrower (trio uses a placeholder object per call the same way).
    let token = match limiter.acquire_on_behalf_of(Borrower::unique()).await {
        Ok(token) => token,
        Err(crate::Error::Cancelled(c)) => return Err(c),
        // A unique borrower never holds a token already.
        Err(e) => unreachable!("a fresh borrower was refused a token: {e}"),
    };
    start_on_pool(f, token, in_flight).wait(abandon).await
}

/// Hands `f` to a pool thread now, with a token of the thread limiter already taken; the
/// returned call delivers its result.
fn start_on_pool<F, R>(f: F, token: LimiterToken, in_flight: InFlight) -> Started<R>
where
    F: FnOnce() -> R + Send + 'static,
    R: Send + 'static,
{
    let call = Call::new();
    let on_thread = call.clone();
    // The closure sees the task-locals of the task that called (trio's `to_thread.run_sync`
    // copies the context the same way).
    let locals = local::snapshot();
    pool::execute(Box::new(move || {
        let _locals = local::enter(locals);
        on_thread.run(f);
        // The slot is held until the thread is really done, even if the caller abandoned it.
        drop(token);
    }));
    Started {
        call,
        _in_flight: in_flight,
    }
}

/// A blocking call already running on its thread (for poll-based I/O such as `fs::File`'s
/// `futures-io` traits, which must know that work they accepted will happen).
pub(crate) struct Started<R> {
    call: Arc<Call<R>>,
    _in_flight: InFlight,
}

impl<R: Send + 'static> Started<R> {
    /// Waits for the thread's result without reacting to cancellation (the caller watches for it
    /// and keeps this future to poll again later); a panic on the thread resumes here. Dropping
    /// the future drops the result when it comes.
    pub(crate) fn wait(self, abandon: bool) -> impl Future<Output = Result<R, Cancelled>> + Send {
        let Started { call, _in_flight } = self;
        async move {
            let _in_flight = _in_flight;
            call.wait(abandon).await
        }
    }
}

/// Takes a token of the [`default_limiter`] for a unique borrower (a checkpoint): the first
/// half of [`run_blocking`], for poll-based callers that start the call themselves
/// ([`start_with_token`]) once nothing can stop it any more.
pub(crate) async fn acquire_default_token() -> Result<LimiterToken, Cancelled> {
    match default_limiter()
        .acquire_on_behalf_of(Borrower::unique())
        .await
    {
        Ok(token) => Ok(token),
        Err(crate::Error::Cancelled(c)) => Err(c),
        Err(e) => unreachable!("a fresh borrower was refused a token: {e}"),
    }
}

/// Starts `f` on a pool thread now, with `token` from [`acquire_default_token`].
pub(crate) fn start_with_token<F, R>(f: F, token: LimiterToken) -> Started<R>
where
    F: FnOnce() -> R + Send + 'static,
    R: Send + 'static,
{
    start_on_pool(f, token, InFlight::new())
}

/// Runs `job` on a pool thread without waiting for it or taking a limiter token: for short
/// clean-up work (reaping a killed child) that must not block the runtime.
pub(crate) fn execute_detached(job: Box<dyn FnOnce() + Send>) {
    pool::execute(job);
}
