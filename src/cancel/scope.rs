//! `CancelScope`: the user's handle on one node of the cancel tree.

use std::fmt;
use std::future::Future;
use std::mem::ManuallyDrop;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use super::current;
use super::node::{self, PlainNode};
use super::outside_runtime;
use crate::error::{CancelReason, Outcome, TimedOut};
use crate::runtime::context;

/// A region of code that can be cancelled as a unit, with an optional deadline and shield.
///
/// Create it, keep a clone to cancel it from elsewhere (any task or thread, before or after it is
/// entered, C2), and run a future inside it with [`run`](CancelScope::run). Once cancelled, every
/// checkpoint inside fails with [`Cancelled`](crate::Cancelled) until the code leaves the scope
/// (C1); the scope then absorbs that cancellation and `run` gives `None`.
///
/// ```
/// use std::time::Duration;
/// use trellis::CancelScope;
///
/// trellis::run(async {
///     let scope = CancelScope::new();
///     let handle = scope.clone();
///     let out = scope
///         .run(async move {
///             handle.cancel();
///             trellis::sleep(Duration::from_secs(3600)).await?; // fails at once
///             Ok::<_, trellis::Cancelled>("not reached")
///         })
///         .await;
///     assert_eq!(out, None);
///     assert!(scope.cancelled_caught());
/// });
/// ```
pub struct CancelScope {
    /// Given back to [`spare`] by the handle that drops it last (hence `ManuallyDrop`).
    node: ManuallyDrop<Arc<PlainNode>>,
}

impl Clone for CancelScope {
    fn clone(&self) -> Self {
        CancelScope {
            node: ManuallyDrop::new(Arc::clone(&self.node)),
        }
    }
}

impl Drop for CancelScope {
    fn drop(&mut self) {
        // SAFETY: taken once, here, and the field is not used after.
        spare::give_back(unsafe { ManuallyDrop::take(&mut self.node) });
    }
}

/// Scope nodes kept for reuse by the next scope made on the same thread. A timed scope is made
/// and dropped on every `move_on_after` and `fail_after`; reusing its allocation saves a
/// `malloc` and a `free` each time. Only a node nothing else refers to comes back (checked
/// with `Arc::get_mut`: no tree link, no timer, no other handle), emptied on the way in.
mod spare {
    use std::cell::RefCell;
    use std::sync::Arc;
    use std::time::Instant;

    use crate::cancel::node::{NodeKind, PlainNode};

    /// Nodes kept per thread: enough for scopes nested a few deep, re-made in a loop.
    const KEEP: usize = 8;

    thread_local! {
        static SPARE: RefCell<Vec<Arc<PlainNode>>> = const { RefCell::new(Vec::new()) };
    }

    /// A fresh scope node with `deadline`: a kept one if there is one.
    pub(super) fn take(deadline: Option<Instant>) -> Arc<PlainNode> {
        let kept = SPARE.try_with(|s| s.borrow_mut().pop()).ok().flatten();
        match kept {
            Some(mut node) => {
                // Unique when given back, and nothing has seen it since.
                match Arc::get_mut(&mut node) {
                    Some(n) => n.set_unshared_deadline(deadline),
                    None => unreachable!("a kept scope node is referred to elsewhere"),
                }
                node
            }
            None => PlainNode::with_deadline(NodeKind::Scope, deadline),
        }
    }

    /// The last handle of a scope lets go of its node: kept, emptied, if nothing else refers to
    /// it and there is room; dropped otherwise.
    pub(super) fn give_back(mut node: Arc<PlainNode>) {
        // What the old node held (wakers, child references, extras) is dropped here, before the
        // list is borrowed: dropping a waker may drop a task, and with it other scopes.
        if !PlainNode::reset_if_unshared(&mut node, None) {
            return;
        }
        let refused = SPARE
            .try_with(|s| {
                let mut s = s.borrow_mut();
                if s.len() < KEEP {
                    s.push(node);
                    None
                } else {
                    Some(node)
                }
            })
            .unwrap_or(None);
        // Dropped (freed) outside the borrow.
        drop(refused);
    }
}

impl fmt::Debug for CancelScope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = self.node.lock();
        f.debug_struct("CancelScope")
            .field("cancel_called", &self.node.cancel_called())
            .field("deadline", &s.deadline())
            .field("shield", &s.shield)
            .finish()
    }
}

impl Default for CancelScope {
    fn default() -> Self {
        Self::new()
    }
}

impl CancelScope {
    /// A scope with no deadline and no shield.
    ///
    /// ```
    /// use trellis::CancelScope;
    ///
    /// let scope = CancelScope::new();
    /// assert_eq!(scope.deadline(), None);
    /// assert!(!scope.shield());
    /// assert!(!scope.cancel_called());
    /// ```
    pub fn new() -> Self {
        CancelScope {
            node: ManuallyDrop::new(spare::take(None)),
        }
    }

    /// A handle on an existing node (a nursery's scope). Such a scope is already entered.
    pub(crate) fn from_node(node: Arc<PlainNode>) -> Self {
        CancelScope {
            node: ManuallyDrop::new(node),
        }
    }

    /// A scope that cancels itself at `deadline`.
    ///
    /// ```
    /// use std::time::Duration;
    /// use trellis::CancelScope;
    ///
    /// trellis::run(async {
    ///     let scope = CancelScope::with_deadline(trellis::now() + Duration::from_millis(5));
    ///     let out = scope.run(trellis::sleep_forever()).await;
    ///     assert!(out.is_none());
    ///     assert_eq!(scope.cancel_reason(), Some(trellis::CancelReason::Deadline));
    /// });
    /// ```
    pub fn with_deadline(deadline: Instant) -> Self {
        Self::with_optional_deadline(Some(deadline))
    }

    /// A scope that cancels itself `timeout` after now (read from the runtime's clock). A
    /// timeout too large to add to the clock's time (`Duration::MAX`) means no deadline.
    ///
    /// # Panics
    /// Outside a runtime: "now" is the runtime clock's.
    ///
    /// ```
    /// use std::time::Duration;
    /// use trellis::CancelScope;
    ///
    /// trellis::run(async {
    ///     let scope = CancelScope::with_timeout(Duration::from_millis(5));
    ///     // Finishes in time: the output comes through.
    ///     assert_eq!(scope.run(async { Ok::<_, trellis::Cancelled>(7) }).await, Some(Ok(7)));
    ///     assert!(!scope.cancelled_caught());
    /// });
    /// ```
    pub fn with_timeout(timeout: Duration) -> Self {
        Self::with_optional_deadline(deadline_after("CancelScope::with_timeout", timeout))
    }

    fn with_optional_deadline(deadline: Option<Instant>) -> Self {
        CancelScope {
            node: ManuallyDrop::new(spare::take(deadline)),
        }
    }

    /// Sets the shield (builder style). See [`set_shield`](CancelScope::set_shield).
    ///
    /// ```
    /// use std::time::Duration;
    /// use trellis::CancelScope;
    ///
    /// trellis::run(async {
    ///     let outer = CancelScope::new();
    ///     outer.cancel();
    ///     let out = outer
    ///         .run(async {
    ///             // Cleanup that must finish even though the outer scope is cancelled.
    ///             let cleanup = CancelScope::new().shielded(true);
    ///             let done = cleanup.run(trellis::sleep(Duration::from_millis(1))).await;
    ///             assert_eq!(done, Some(Ok(())));
    ///             trellis::checkpoint().await // the outer cancellation shows here
    ///         })
    ///         .await;
    ///     assert!(out.is_none());
    /// });
    /// ```
    pub fn shielded(self, shield: bool) -> Self {
        self.set_shield(shield);
        self
    }

    /// Runs `future` inside this scope. The output is `None` if this scope's cancellation ended
    /// the future (it returned a cancellation this scope absorbs, C3), else `Some(output)`.
    ///
    /// # Panics
    /// When polled, if this scope (or a clone of it) was already entered: a scope is entered
    /// once. Create a new one instead.
    ///
    /// ```
    /// use trellis::CancelScope;
    ///
    /// trellis::run(async {
    ///     let scope = CancelScope::new();
    ///     let out = scope
    ///         .run(async {
    ///             scope.cancel(); // from inside: the next checkpoint fails...
    ///             trellis::checkpoint().await?;
    ///             Ok::<_, trellis::Cancelled>("not reached")
    ///         })
    ///         .await;
    ///     assert_eq!(out, None); // ...and the scope absorbs its own cancellation
    ///     assert!(scope.cancelled_caught());
    /// });
    /// ```
    pub fn run<F>(&self, future: F) -> Scoped<F>
    where
        F: Future,
        F::Output: Outcome,
    {
        self.clone().into_scoped("CancelScope::run", future)
    }

    /// [`run`](CancelScope::run) for a scope made only to run `future` (no clone), naming
    /// `function` in the panic raised outside a runtime (R2).
    fn into_scoped<F>(self, function: &'static str, future: F) -> Scoped<F>
    where
        F: Future,
        F::Output: Outcome,
    {
        Scoped {
            scope: self,
            future: Some(future),
            state: ScopedState::New(function),
        }
    }

    /// Cancels the scope (idempotent; from anywhere).
    ///
    /// ```
    /// use trellis::CancelScope;
    ///
    /// trellis::run(async {
    ///     let scope = CancelScope::new();
    ///     trellis::nursery(|n| {
    ///         let scope = scope.clone();
    ///         async move {
    ///             let inner = scope.clone();
    ///             n.spawn(async move {
    ///                 inner.run(trellis::sleep_forever()).await;
    ///                 Ok(())
    ///             })?;
    ///             trellis::testing::wait_all_tasks_blocked().await?;
    ///             scope.cancel(); // from another task
    ///             Ok::<_, trellis::Error>(())
    ///         }
    ///     })
    ///     .await
    ///     .unwrap();
    ///     assert!(scope.cancelled_caught());
    /// });
    /// ```
    pub fn cancel(&self) {
        node::cancel(self.node.as_ref(), CancelReason::Explicit(None));
    }

    /// Cancels the scope and records why; the first reason given wins (C8).
    ///
    /// ```
    /// use trellis::{CancelReason, CancelScope};
    ///
    /// let scope = CancelScope::new();
    /// scope.cancel_with_reason("user pressed stop");
    /// scope.cancel_with_reason("too late"); // ignored
    /// assert_eq!(
    ///     scope.cancel_reason(),
    ///     Some(CancelReason::Explicit(Some("user pressed stop".into())))
    /// );
    /// ```
    pub fn cancel_with_reason(&self, reason: impl Into<Arc<str>>) {
        node::cancel(
            self.node.as_ref(),
            CancelReason::Explicit(Some(reason.into())),
        );
    }

    /// Whether `cancel` was called or the deadline passed (C2).
    ///
    /// As in trio, a deadline seen to have passed while the scope is active or not yet entered
    /// cancels the scope then and there, so the answer never turns back to `false` (moving the
    /// deadline later does not un-cancel). A deadline that passes after the scope exited does not
    /// count: the scope no longer guards any code.
    ///
    /// ```
    /// use trellis::CancelScope;
    ///
    /// let scope = CancelScope::new();
    /// assert!(!scope.cancel_called());
    /// scope.cancel();
    /// assert!(scope.cancel_called());
    /// ```
    pub fn cancel_called(&self) -> bool {
        let (called, deadline, exited) = {
            let s = self.node.lock();
            (
                self.node.cancel_called(),
                s.deadline(),
                s.entered && !node::is_linked(&s),
            )
        };
        if called {
            return true;
        }
        if exited {
            return false;
        }
        let passed = deadline
            .is_some_and(|d| context::with_shared(|rt| rt.is_some_and(|rt| rt.driver.now() >= d)));
        if passed {
            node::cancel(self.node.as_ref(), CancelReason::Deadline);
        }
        passed
    }

    /// Whether a cancellation of this scope actually ended the code run in it (C2).
    ///
    /// ```
    /// use trellis::CancelScope;
    ///
    /// trellis::run(async {
    ///     // Cancelled, but the code finished without meeting a checkpoint: nothing was caught.
    ///     let scope = CancelScope::new();
    ///     scope.cancel();
    ///     assert_eq!(scope.run(async { Ok::<_, trellis::Cancelled>(1) }).await, Some(Ok(1)));
    ///     assert!(scope.cancel_called());
    ///     assert!(!scope.cancelled_caught());
    /// });
    /// ```
    pub fn cancelled_caught(&self) -> bool {
        self.node
            .lock()
            .plain_ref()
            .is_some_and(|f| f.cancelled_caught)
    }

    /// The reason this scope was cancelled with, if it was.
    ///
    /// ```
    /// use trellis::{CancelReason, CancelScope};
    ///
    /// let scope = CancelScope::new();
    /// assert_eq!(scope.cancel_reason(), None);
    /// scope.cancel();
    /// assert_eq!(scope.cancel_reason(), Some(CancelReason::Explicit(None)));
    /// ```
    pub fn cancel_reason(&self) -> Option<CancelReason> {
        self.node.reason(&self.node.lock())
    }

    /// The deadline, if any.
    ///
    /// ```
    /// use std::time::{Duration, Instant};
    /// use trellis::CancelScope;
    ///
    /// let at = Instant::now() + Duration::from_secs(60);
    /// assert_eq!(CancelScope::with_deadline(at).deadline(), Some(at));
    /// assert_eq!(CancelScope::new().deadline(), None);
    /// ```
    pub fn deadline(&self) -> Option<Instant> {
        self.node.lock().deadline()
    }

    /// Moves the deadline, earlier or later, or removes it; takes effect at once, and a deadline
    /// already past cancels the scope if it has been entered (C5).
    ///
    /// ```
    /// use std::time::Duration;
    /// use trellis::CancelScope;
    ///
    /// trellis::run(async {
    ///     let scope = CancelScope::with_timeout(Duration::from_millis(1));
    ///     let out = scope
    ///         .run(async {
    ///             // More time is needed after all: push the deadline back, then remove it.
    ///             scope.set_deadline(Some(trellis::now() + Duration::from_secs(3600)));
    ///             scope.set_deadline(None);
    ///             trellis::sleep(Duration::from_millis(5)).await
    ///         })
    ///         .await;
    ///     assert_eq!(out, Some(Ok(())));
    /// });
    /// ```
    pub fn set_deadline(&self, deadline: Option<Instant>) {
        node::set_deadline(&self.node, deadline);
    }

    /// Whether the scope is shielded.
    ///
    /// ```
    /// use trellis::CancelScope;
    ///
    /// let scope = CancelScope::new().shielded(true);
    /// assert!(scope.shield());
    /// ```
    pub fn shield(&self) -> bool {
        self.node.lock().shield
    }

    /// Sets this scope's grace period (contract B3): once it is cancelled, code under it gets
    /// `period` to finish, foreign waits included; whatever is still waiting then is dropped,
    /// as a forced teardown drops it (N11), and [`grace_expired`](Self::grace_expired) says so.
    /// Shielded code inside is not dropped (B4): a shield means "this must finish". `None` (the
    /// default) uses the runtime's default ([`Builder::grace_period`]). Takes effect for a
    /// cancellation that happens after the call.
    ///
    /// [`Builder::grace_period`]: crate::Builder::grace_period
    ///
    /// ```
    /// use std::time::Duration;
    ///
    /// trellis::run(async {
    ///     let scope = trellis::CancelScope::with_timeout(Duration::from_millis(1))
    ///         .with_grace_period(Some(Duration::from_millis(2)));
    ///     // A wait trellis cannot see: given the grace period, then dropped.
    ///     let out = scope.run(std::future::pending::<()>()).await;
    ///     assert!(out.is_none());
    ///     assert!(scope.grace_expired());
    /// });
    /// ```
    pub fn set_grace_period(&self, period: Option<Duration>) {
        node::set_grace_period(&self.node, period);
    }

    /// [`set_grace_period`](Self::set_grace_period), builder style.
    ///
    /// ```
    /// use std::time::Duration;
    ///
    /// let scope = trellis::CancelScope::new().with_grace_period(Some(Duration::from_secs(1)));
    /// assert_eq!(scope.grace_period(), Some(Duration::from_secs(1)));
    /// ```
    pub fn with_grace_period(self, period: Option<Duration>) -> Self {
        self.set_grace_period(period);
        self
    }

    /// This scope's own grace period (`None`: the runtime's default applies).
    ///
    /// ```
    /// assert_eq!(trellis::CancelScope::new().grace_period(), None);
    /// ```
    pub fn grace_period(&self) -> Option<Duration> {
        node::grace_period(&self.node)
    }

    /// Whether a grace period that reached this scope ran out, so that what was left of its
    /// code was dropped instead of finishing (B3).
    ///
    /// ```
    /// assert!(!trellis::CancelScope::new().grace_expired());
    /// ```
    pub fn grace_expired(&self) -> bool {
        node::is_forced(&self.node)
    }

    /// Raises or lowers the shield; takes effect at once (C4). A shielded scope hides
    /// cancellation from enclosing scopes; its own cancel and deadline still apply.
    ///
    /// ```
    /// use std::time::Duration;
    /// use trellis::CancelScope;
    ///
    /// trellis::run(async {
    ///     let outer = CancelScope::new();
    ///     let inner = CancelScope::new();
    ///     inner.set_shield(true);
    ///     outer.cancel();
    ///     let out = outer
    ///         .run(async {
    ///             let step = inner.run(trellis::sleep(Duration::from_millis(1))).await;
    ///             assert_eq!(step, Some(Ok(()))); // the shield hid the outer cancellation
    ///             inner.set_shield(false);
    ///             trellis::checkpoint().await
    ///         })
    ///         .await;
    ///     assert!(out.is_none());
    /// });
    /// ```
    pub fn set_shield(&self, shield: bool) {
        node::set_shield(self.node.as_ref(), shield);
    }
}

/// The deadline `timeout` from now, or `None` if that is past what an `Instant` can hold.
///
/// Read fresh from the clock, not from the per-poll cache: a task may have run for a long time
/// since its poll began, and a deadline computed from a stale reading would fire early.
pub(crate) fn deadline_after(function: &str, timeout: Duration) -> Option<Instant> {
    context::with_shared(|rt| match rt {
        Some(rt) => rt.driver.fresh_now().checked_add(timeout),
        None => outside_runtime(function),
    })
}

enum ScopedState {
    /// Not entered yet; the public function that made the future, for the panic outside a
    /// runtime.
    New(&'static str),
    /// Entered; the deadline, while its timer may still be deferred (see `node::enter_scope`).
    Entered(Option<Instant>),
    Done,
}

pin_project_lite::pin_project! {
    /// Future of [`CancelScope::run`] and [`move_on_after`]/[`move_on_at`].
    ///
    /// ```
    /// use std::time::Duration;
    /// use trellis::{CancelScope, Scoped};
    ///
    /// trellis::run(async {
    ///     let scope = CancelScope::new();
    ///     let future: Scoped<_> = scope.run(trellis::sleep(Duration::from_millis(1)));
    ///     // `None` only if this scope's cancellation ended the future.
    ///     assert_eq!(future.await, Some(Ok(())));
    /// });
    /// ```
    #[must_use = "futures do nothing unless awaited"]
    pub struct Scoped<F> {
        // The scope itself, not only its node: its last handle gives the node back for reuse.
        scope: CancelScope,
        // `None` once dropped in a foreign wait (contract B1).
        #[pin]
        future: Option<F>,
        state: ScopedState,
    }

    impl<F> PinnedDrop for Scoped<F> {
        fn drop(this: Pin<&mut Self>) {
            let this = this.project();
            if let ScopedState::Entered(_) = this.state {
                node::unlink(this.scope.node.as_ref());
            }
        }
    }
}

impl<F> Scoped<F> {
    /// The scope this future runs its body in. Keep it to learn, after the future completed,
    /// whether its deadline passed or it was cancelled although the body finished anyway
    /// ([`cancel_called`](CancelScope::cancel_called) is true, the output is `Some`): a body
    /// that shields itself, waits for a thread, or finishes in the same poll its deadline passes.
    ///
    /// ```
    /// use std::time::Duration;
    ///
    /// trellis::run(async {
    ///     let work = trellis::move_on_after(Duration::from_millis(1), async {
    ///         // Cleanup that must finish: it outlives the deadline.
    ///         trellis::CancelScope::new()
    ///             .shielded(true)
    ///             .run(trellis::sleep(Duration::from_millis(5)))
    ///             .await;
    ///         Ok::<_, trellis::Cancelled>("done")
    ///     });
    ///     let scope = work.cancel_scope();
    ///     let out = work.await;
    ///     assert_eq!(out, Some(Ok("done")));
    ///     assert!(scope.cancel_called()); // the deadline passed all the same
    /// });
    /// ```
    pub fn cancel_scope(&self) -> CancelScope {
        self.scope.clone()
    }
}

/// How a scope's body ended.
pub(crate) enum Exit<O> {
    /// It returned `output`; `absorbed`: the output carries this scope's own cancellation,
    /// which the scope absorbs (C3).
    Returned { output: O, absorbed: bool },
    /// The scope's cancellation found it in a foreign wait, and it was dropped (B1).
    Dropped,
}

impl<F> Scoped<F>
where
    F: Future,
    F::Output: Outcome,
{
    /// Polls the body to its end; unlike `poll`, keeps an output that the scope absorbs (a
    /// race hands a losing `send`'s value back to its caller).
    pub(crate) fn poll_exit(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Exit<F::Output>> {
        let mut this = self.project();
        let deferred = match this.state {
            ScopedState::New(function) => {
                let deferred = enter(&this.scope.node, function);
                *this.state = ScopedState::Entered(deferred);
                deferred
            }
            ScopedState::Entered(deferred) => *deferred,
            ScopedState::Done => panic!("Scoped future polled after completion"),
        };
        let node = this.scope.node.as_ref();
        if node::must_end(node, false) && node::absorbs_cancellation(node) {
            // This scope's cancellation found its body parked where it cannot see it (B1), or
            // its grace period ran out (B3): end the body, and the scope with its own
            // cancellation, as if the body had returned it.
            {
                let _guard = current::set_node(node);
                this.future.set(None);
            }
            *this.state = ScopedState::Done;
            context::with_shared(|rt| {
                let rt = rt.expect("a node is set, so a runtime is entered");
                node::exit_scope(node, rt, true)
            });
            return Poll::Ready(Exit::Dropped);
        }
        let output = {
            let _guard = current::set_node(node);
            let outer_watch = current::begin_park_watch();
            let outer_deferred = current::enter_deferred(deferred);
            let polled = this
                .future
                .as_mut()
                .as_pin_mut()
                .expect("the body is present until the scope is done")
                .poll(cx);
            current::set_deferred_deadline(outer_deferred);
            let parked = current::end_park_watch(outer_watch);
            match polled {
                Poll::Ready(out) => out,
                Poll::Pending => {
                    if deferred.is_some() && parked != current::YIELDED {
                        // The body waits, or returned `Pending` with no trellis operation at all
                        // (anything but a schedule point, which leaves the task runnable): the
                        // deadline needs its timer now.
                        context::with_shared(|rt| {
                            let rt = rt.expect("a node is set, so a runtime is entered");
                            node::arm_deferred(&this.scope.node, rt);
                        });
                        *this.state = ScopedState::Entered(None);
                    }
                    node::record_poll(node, parked != 0, cx.waker(), || {
                        node::absorbs_cancellation(node)
                    });
                    return Poll::Pending;
                }
            }
        };
        *this.state = ScopedState::Done;
        let returned_cancellation = output.cancellation().is_some();
        let absorbed = context::with_shared(|rt| {
            let rt = rt.expect("a node is set, so a runtime is entered");
            if let Some(deadline) = deferred {
                // A deferred deadline that passed while the body ran to its end: cancelled now,
                // as its timer would have (`cancel_called` then reads true after the exit).
                let now = rt.driver.now();
                if deadline <= now {
                    node::expire_deferred_above(
                        Some(node::NodeRef::from(Arc::clone(&this.scope.node))),
                        now,
                    );
                }
            }
            node::exit_scope(node, rt, returned_cancellation)
        });
        Poll::Ready(Exit::Returned { output, absorbed })
    }
}

impl<F> Future for Scoped<F>
where
    F: Future,
    F::Output: Outcome,
{
    type Output = Option<F::Output>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.poll_exit(cx).map(|exit| match exit {
            Exit::Returned {
                output,
                absorbed: false,
            } => Some(output),
            Exit::Returned { absorbed: true, .. } | Exit::Dropped => None,
        })
    }
}

/// Enters the scope under the current node; returns its deadline if its timer is deferred.
fn enter(node: &Arc<PlainNode>, function: &str) -> Option<Instant> {
    let Some(parent) = current::current_node_ref() else {
        outside_runtime(function);
    };
    context::with_shared(|rt| {
        let rt = rt.expect("a node is set, so a runtime is entered");
        node::enter_scope(parent, node, rt)
    })
}

/// Runs `future` with a deadline `timeout` from now; `None` if the deadline (or a cancel of
/// this scope) ended it (C6).
///
/// ```
/// use std::time::Duration;
///
/// trellis::run(async {
///     let out = trellis::move_on_after(Duration::from_millis(5), async {
///         trellis::sleep_forever().await?;
///         Ok::<(), trellis::Cancelled>(())
///     })
///     .await;
///     assert!(out.is_none());
/// });
/// ```
pub fn move_on_after<F>(timeout: Duration, future: F) -> Scoped<F>
where
    F: Future,
    F::Output: Outcome,
{
    CancelScope::with_optional_deadline(deadline_after("move_on_after", timeout))
        .into_scoped("move_on_after", future)
}

/// Runs `future` with a deadline; `None` if the deadline ended it (C6).
///
/// ```
/// use std::time::Duration;
///
/// trellis::run(async {
///     let deadline = trellis::now() + Duration::from_millis(5);
///     assert!(trellis::move_on_at(deadline, trellis::sleep_forever()).await.is_none());
///     // Done before the deadline: the output comes through.
///     let later = trellis::now() + Duration::from_secs(60);
///     let quick = trellis::move_on_at(later, async { Ok::<_, trellis::Cancelled>(5) }).await;
///     assert_eq!(quick, Some(Ok(5)));
/// });
/// ```
pub fn move_on_at<F>(deadline: Instant, future: F) -> Scoped<F>
where
    F: Future,
    F::Output: Outcome,
{
    CancelScope::with_deadline(deadline).into_scoped("move_on_at", future)
}

/// Runs `future` with a deadline `timeout` from now; `Err(TimedOut)` if the deadline ended it
/// (C6). Other outcomes, errors included, pass through in `Ok`.
///
/// ```
/// use std::time::Duration;
///
/// trellis::run(async {
///     let out = trellis::fail_after(Duration::from_millis(5), trellis::sleep_forever()).await;
///     assert_eq!(out, Err(trellis::TimedOut));
/// });
/// ```
pub fn fail_after<F>(timeout: Duration, future: F) -> FailAt<F>
where
    F: Future,
    F::Output: Outcome,
{
    FailAt {
        inner: CancelScope::with_optional_deadline(deadline_after("fail_after", timeout))
            .into_scoped("fail_after", future),
    }
}

/// Runs `future` with a deadline; `Err(TimedOut)` if the deadline ended it (C6).
///
/// ```
/// use std::time::Duration;
///
/// trellis::run(async {
///     let soon = trellis::now() + Duration::from_millis(5);
///     assert_eq!(trellis::fail_at(soon, trellis::sleep_forever()).await, Err(trellis::TimedOut));
///     let later = trellis::now() + Duration::from_secs(60);
///     let quick = trellis::fail_at(later, async { Ok::<_, trellis::Cancelled>(1) }).await;
///     assert_eq!(quick, Ok(Ok(1)));
/// });
/// ```
pub fn fail_at<F>(deadline: Instant, future: F) -> FailAt<F>
where
    F: Future,
    F::Output: Outcome,
{
    FailAt {
        inner: CancelScope::with_deadline(deadline).into_scoped("fail_at", future),
    }
}

pin_project_lite::pin_project! {
    /// Future of [`fail_after`] and [`fail_at`].
    ///
    /// ```
    /// use std::time::Duration;
    /// use trellis::FailAt;
    ///
    /// trellis::run(async {
    ///     let future: FailAt<_> =
    ///         trellis::fail_after(Duration::from_millis(5), trellis::sleep_forever());
    ///     assert!(future.await.is_err());
    /// });
    /// ```
    #[must_use = "futures do nothing unless awaited"]
    pub struct FailAt<F> {
        #[pin]
        inner: Scoped<F>,
    }
}

impl<F> FailAt<F> {
    /// The scope this future runs its body in; see [`Scoped::cancel_scope`].
    ///
    /// ```
    /// use std::time::Duration;
    ///
    /// trellis::run(async {
    ///     let work = trellis::fail_after(Duration::from_secs(60), async { Ok::<_, trellis::Error>(1) });
    ///     let scope = work.cancel_scope();
    ///     assert_eq!(work.await.unwrap().unwrap(), 1);
    ///     assert!(!scope.cancel_called()); // finished well before its deadline
    /// });
    /// ```
    pub fn cancel_scope(&self) -> CancelScope {
        self.inner.cancel_scope()
    }
}

impl<F> Future for FailAt<F>
where
    F: Future,
    F::Output: Outcome,
{
    type Output = Result<F::Output, TimedOut>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.project().inner.poll(cx).map(|out| out.ok_or(TimedOut))
    }
}
