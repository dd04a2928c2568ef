//! One blocking call as both sides see it: the pool thread running the closure, and the task
//! waiting for it.
//!
//! They share a [`Call`] under a mutex: the thread's result, the waiting task's waker, and the
//! requests the thread sends back with [`from_thread`](super::from_thread) (work to run inside
//! the waiting task). Who touches what:
//! - the thread pushes requests and, last, its result, waking the task each time;
//! - the task ([`WaitCall`]) takes the requests and runs them inside itself, and takes the
//!   result only once no request is left, so work the thread sent is never dropped;
//! - when the task stops waiting (it finished, was dropped, or abandoned the call on
//!   cancellation), the call is marked abandoned: pending requests are dropped, which fails the
//!   thread's blocked `from_thread` with an error, and a late result is dropped.
//!
//! A thread-local marks a pool thread as serving a call, for [`check_cancelled`] and
//! `from_thread`.

use std::cell::RefCell;
use std::future::Future;
use std::panic::{self, AssertUnwindSafe};
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};

use super::FromThreadError;
use crate::cancel::node::{self, NodeRef};
use crate::cancel::{current, CancelWaiter, YieldOnce};
use crate::error::Cancelled;
use crate::state_lock::lock_blocking;

/// Work sent from a pool thread to the waiting task.
pub(super) type Request = Pin<Box<dyn Future<Output = ()> + Send>>;

/// What a pool thread shares with the task waiting for it.
pub(super) struct Call<R> {
    /// The cancel-tree node the caller waits in, for [`check_cancelled`].
    node: Option<NodeRef>,
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
    /// A call made by the current task: [`check_cancelled`] reads that task's cancel-tree node.
    pub(super) fn new() -> Arc<Self> {
        Arc::new(Call {
            node: current::current_node_ref(),
            state: Mutex::new(CallState {
                result: None,
                waker: None,
                requests: Vec::new(),
                abandoned: false,
            }),
        })
    }

    /// The task's side: waits for the thread's result, serving its requests meanwhile. With
    /// `abandon`, a cancellation stops the wait at once (see [`WaitCall`]).
    pub(super) fn wait(self: Arc<Self>, abandon: bool) -> WaitCall<R> {
        WaitCall {
            call: self,
            abandon,
            cancel: CancelWaiter::new(),
            active: Vec::new(),
            yield_once: YieldOnce::default(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, CallState<R>> {
        lock_blocking(&self.state)
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

    /// The thread's side: runs `f` here, as this call's work (so `check_cancelled` and
    /// `from_thread` find the call), and hands its result or panic to the waiting task.
    pub(super) fn run(self: &Arc<Self>, f: impl FnOnce() -> R)
    where
        R: Send + 'static,
    {
        let result = {
            let _current = CurrentCall::enter(self.clone());
            panic::catch_unwind(AssertUnwindSafe(f))
        };
        self.finish(result);
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
pub(super) trait CallSink: Send + Sync {
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

pub(super) fn current_call() -> Option<Arc<dyn CallSink>> {
    CURRENT_CALL.with(|c| c.borrow().clone())
}

/// The task's side of a call: waits for the thread, running its `from_thread` requests.
pub(super) struct WaitCall<R> {
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

/// Called on a thread started by [`run_blocking`](super::run_blocking): `Err(Cancelled)` if the
/// task waiting for this thread is cancelled (or stopped waiting), so long-running blocking work
/// can stop early.
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
