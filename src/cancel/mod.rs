//! Cancel scopes, checkpoints, and the waiting helper every blocking operation uses.
//!
//! [`CancelScope`] is the object users hold; the tree behind it lives in [`node`]. The
//! [`CancelWaiter`] is the one place where a blocked operation learns about cancellation: every
//! sleep, lock, channel and socket wait goes through it, so "a cancelled operation wakes and
//! fails" is implemented once.

pub(crate) mod current;
pub(crate) mod node;
mod scope;
pub(crate) mod waiting;

pub(crate) use scope::Exit;
pub use scope::{fail_after, fail_at, move_on_after, move_on_at, CancelScope, FailAt, Scoped};

use std::future::Future;
use std::num::NonZeroUsize;
use std::pin::Pin;
use std::ptr::NonNull;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use crate::error::Cancelled;
use crate::runtime::context;
use node::{NodeRef, OwnerPark};
use waiting::{LockWatch, WaitLabel};

/// Registration of a blocked operation with the cancel tree: while registered, cancelling any
/// enclosing scope (not hidden by a shield) wakes the operation's waker.
///
/// Every blocking operation's future holds one, so its size is part of every parked task's
/// (a benchmarked figure): one word, a [`Registration`], whose null doubles as the "not
/// registered" state.
#[derive(Default)]
pub(crate) struct CancelWaiter {
    registration: Option<Registration>,
}

/// Where and how a blocked operation is registered, in one word (16 bytes before: the node and
/// a word for the way). The usual way, parked with its own task's waker, which the node keeps
/// as its owner waker, needs only the node: a counted node reference, its pointer as it is. An
/// operation with a waker of its own (polled by a foreign combinator) also needs the key of its
/// waker's slot in the node: node and key then go in a box, whose pointer carries a low tag bit
/// (a node and a box are both at least 8-aligned, so that bit is free in either).
struct Registration(NonNull<u8>);

/// A [`Registration`] with a waker of its own.
struct SlotWait {
    node: NodeRef,
    key: usize,
}

/// [`Registration`], decoded.
enum Way {
    /// Parked with the waker of the task whose identity is the node's owner waker's: counted in
    /// the node, nothing else stored (see `node::Waiters`).
    Owner,
    /// Parked with another waker, kept in this slot of the node.
    Slot(usize),
}

/// The tag bit of a [`Registration`] that points at a boxed [`SlotWait`].
const SLOT_TAG: usize = 1;

// SAFETY: a registration owns a `NodeRef` (`Send + Sync`) or a box of one and a key.
unsafe impl Send for Registration {}
// SAFETY: as above; shared access only reads.
unsafe impl Sync for Registration {}

impl Registration {
    /// Parked through `node`'s owner waker; takes over the reference's count.
    fn owner(node: NodeRef) -> Registration {
        Registration(node.into_raw().cast())
    }

    /// Parked with its own waker in the slot `key` of `node`.
    fn slot(node: NodeRef, key: usize) -> Registration {
        let boxed = NonNull::from(Box::leak(Box::new(SlotWait { node, key })));
        Registration(boxed.cast::<u8>().map_addr(|a| a | SLOT_TAG))
    }

    /// The boxed wait of a tagged registration, untagged; `None` for an owner's.
    #[inline]
    fn boxed(&self) -> Option<NonNull<SlotWait>> {
        let addr = self.0.addr().get();
        if addr & SLOT_TAG == 0 {
            return None;
        }
        // Never 0: the tag is set on a box's pointer, which is not null.
        let untagged = NonZeroUsize::new(addr & !SLOT_TAG)?;
        Some(self.0.with_addr(untagged).cast())
    }

    /// The node the operation is registered in, and how: the tag read once.
    #[inline]
    fn decode(&self) -> (&node::Node, Way) {
        match self.boxed() {
            // SAFETY: an untagged pointer is a `NodeRef`'s (`owner`), whose count `self` holds.
            None => (unsafe { self.0.cast::<node::Node>().as_ref() }, Way::Owner),
            Some(wait) => {
                // SAFETY: the leaked `Box<SlotWait>` of `slot`, which `self` owns until its drop.
                let wait = unsafe { wait.as_ref() };
                (wait.node.node(), Way::Slot(wait.key))
            }
        }
    }
}

impl Drop for Registration {
    #[inline]
    fn drop(&mut self) {
        match self.boxed() {
            Some(wait) => free_slot_wait(wait),
            // SAFETY: an untagged pointer is a `NodeRef`'s (`owner`), whose count is given back
            // once, here.
            None => drop(unsafe { NodeRef::adopt(self.0.cast()) }),
        }
    }
}

/// Frees the box of a registration with a waker of its own. Out of line: the rare way, kept
/// out of the code of every operation that deregisters.
#[cold]
#[inline(never)]
fn free_slot_wait(wait: NonNull<SlotWait>) {
    // SAFETY: the leaked box of `Registration::slot`, whose registration is being dropped: freed
    // once, here.
    drop(unsafe { Box::from_raw(wait.as_ptr()) })
}

impl CancelWaiter {
    pub(crate) const fn new() -> Self {
        CancelWaiter { registration: None }
    }

    /// `Ready(cancelled)` if the code being polled is cancelled; otherwise `Pending`, having made
    /// sure a later cancellation wakes `cx`. `function` names the caller for the message given
    /// when it is used outside a runtime (R2).
    pub(crate) fn poll_cancelled(
        &mut self,
        function: &'static str,
        cx: &mut Context<'_>,
    ) -> Poll<Cancelled> {
        self.poll_cancelled_on(function, || None, cx)
    }

    /// [`poll_cancelled`](Self::poll_cancelled) for a wait that can say what it waits for:
    /// `lock` is asked, only where deadlock detection is on, for the lock being waited for, so
    /// the report can name it and its holder.
    pub(crate) fn poll_cancelled_on(
        &mut self,
        function: &'static str,
        lock: impl FnOnce() -> Option<Arc<LockWatch>>,
        cx: &mut Context<'_>,
    ) -> Poll<Cancelled> {
        let Some(current) = current::current_node_ptr() else {
            outside_runtime(function);
        };
        let here = current as *const ();
        let owner = current::own_task_waker(cx.waker());
        if let Some(registration) = &self.registration {
            let (node, way) = registration.decode();
            // Polled again in the same node by the same task: still registered there. (Polled
            // by another task, the future was moved: it registers again, for that task.)
            let registered_here = std::ptr::eq(node as *const node::Node as *const (), here)
                && match way {
                    Way::Owner => owner.is_some_and(|id| id == node.owner_id()),
                    Way::Slot(_) => true,
                };
            if registered_here {
                let waiting = !fails_here(node, function)
                    && match way {
                        // Counted in the node: nothing to refresh.
                        Way::Owner => true,
                        // Woken by a cancellation (the usual reason to be polled again while
                        // registered): answer without refreshing the waker under the lock.
                        Way::Slot(key) => node.update_waiter(key, cx.waker()),
                    };
                if waiting {
                    current::note_parked();
                    return Poll::Pending;
                }
                let err = node::cancelled_error(node);
                self.clear();
                return Poll::Ready(err);
            }
            self.clear();
        }
        fire_passed_deadlines();
        // SAFETY: read above, in this poll.
        let node = unsafe { current::node_ref(current) };
        if let Some(id) = owner {
            match node.node().park_owner(cx.waker(), id) {
                OwnerPark::Parked => {
                    self.registration = Some(Registration::owner(node));
                    current::note_parked();
                    return Poll::Pending;
                }
                OwnerPark::Cancelled => return Poll::Ready(node::cancelled_error(node.node())),
                OwnerPark::Taken => {}
            }
        }
        if current::hook_installed() && !node.node().is_cancelled() {
            // The injection hook may cancel here; `add_waiter` sees it under the node's lock.
            hook_cancels(node.node(), function);
        }
        match node.node().add_waiter(cx.waker()) {
            Some(key) => {
                // Where deadlock detection is on, the node keeps the operation's name for the
                // report.
                if crate::runtime::shared::any_deadlock_detection()
                    && context::with_shared(|rt| rt.is_some_and(|rt| rt.watchdog.enabled))
                {
                    node.node().label_waiting(WaitLabel {
                        operation: function,
                        lock: lock(),
                    });
                }
                self.registration = Some(Registration::slot(node, key));
                current::note_parked();
                Poll::Pending
            }
            None => Poll::Ready(node::cancelled_error(node.node())),
        }
    }

    /// The cancel check of an operation that may have to wait: `Err` at once if the code being
    /// polled is cancelled (the operation does nothing then); otherwise the operation's
    /// `attempt`, and only if that has to wait, the registration that makes a later
    /// cancellation wake `cx` (with the cancellation if one came in between). An operation that
    /// completes at once deregisters what an earlier wait registered.
    #[inline]
    pub(crate) fn poll_attempt<R>(
        &mut self,
        function: &'static str,
        cx: &mut Context<'_>,
        attempt: impl FnOnce(&mut Context<'_>) -> Poll<R>,
    ) -> Poll<Result<R, Cancelled>> {
        if let Some(c) = current_cancellation(function) {
            self.clear();
            return Poll::Ready(Err(c));
        }
        match attempt(cx) {
            Poll::Ready(out) => {
                self.clear();
                Poll::Ready(Ok(out))
            }
            Poll::Pending => self.poll_cancelled(function, cx).map(Err),
        }
    }

    /// Is the operation registered for a cancellation's wake-up (so `clear` has work to do)?
    #[inline]
    pub(crate) fn is_registered(&self) -> bool {
        self.registration.is_some()
    }

    /// Deregisters (the operation completed). Also done on drop.
    #[inline]
    pub(crate) fn clear(&mut self) {
        if let Some(registration) = self.registration.take() {
            match registration.decode() {
                (node, Way::Owner) => node.unpark_owner(),
                (node, Way::Slot(key)) => node.remove_waiter(key),
            }
        }
    }
}

impl Drop for CancelWaiter {
    #[inline]
    fn drop(&mut self) {
        self.clear();
    }
}

#[cold]
#[track_caller]
pub(crate) fn outside_runtime(function: &str) -> ! {
    panic!(
        "trellis::{function} must be called from inside a trellis runtime \
         (inside trellis::run or Runtime::block_on)"
    )
}

/// Fires the deadlines that passed by the time of this poll, so the cancel check that follows
/// sees them (C7): an operation that keeps completing at once must not outrun its deadline just
/// because no worker got round to the timers.
#[inline]
fn fire_passed_deadlines() {
    context::with_shared(|rt| {
        if let Some(rt) = rt {
            rt.driver.fire_timers_due_this_poll();
            if current::deferred_deadline().is_some() {
                expire_deferred_deadlines_as_cached(rt);
            }
        }
    });
}

/// [`fire_passed_deadlines`] for the deadlines of the scopes being polled whose timers are
/// deferred (see `node::enter_scope`), against this poll's cached time. Out of line: only code
/// inside such a scope gets here.
#[cold]
#[inline(never)]
fn expire_deferred_deadlines_as_cached(rt: &crate::runtime::Shared) {
    expire_deferred_deadlines(rt.driver.now());
}

/// [`checkpoint_cancellation`]'s look at the deferred deadlines: against a fresh clock reading,
/// as it looks at the store. Out of line, as [`expire_deferred_deadlines_as_cached`].
#[cold]
#[inline(never)]
fn expire_deferred_deadlines_as_of_now(rt: &crate::runtime::Shared) {
    expire_deferred_deadlines(rt.driver.fresh_now());
}

/// The deferred deadlines of the scopes being polled that `now` has passed cancel their scopes,
/// as their timers would have.
#[inline]
fn expire_deferred_deadlines(now: std::time::Instant) {
    if current::deferred_deadline().is_some_and(|earliest| earliest <= now) {
        let left = node::expire_deferred_above(current::current_node_ref(), now);
        current::set_deferred_deadline(left);
    }
}

/// Is the code being polled right now inside a cancelled scope? If so, the error to return.
/// Fires the deadlines that passed by the time of this poll first.
#[inline]
pub(crate) fn current_cancellation(function: &'static str) -> Option<Cancelled> {
    fire_passed_deadlines();
    cancellation_here(function)
}

/// The cancel check of an explicit checkpoint: [`current_cancellation`] with the due timers
/// fired against a fresh clock reading, not this poll's cached one (C7: a deadline that passed
/// while this task ran is seen here, even if no worker has looked at the timers since).
#[inline]
fn checkpoint_cancellation(function: &'static str) -> Option<Cancelled> {
    context::with_shared(|rt| {
        if let Some(rt) = rt {
            rt.driver.fire_due_timers();
            if current::deferred_deadline().is_some() {
                expire_deferred_deadlines_as_of_now(rt);
            }
        }
    });
    cancellation_here(function)
}

/// [`current_cancellation`] for callers that have just fired the due timers themselves.
#[inline]
fn cancellation_here(function: &'static str) -> Option<Cancelled> {
    current::with_node(|node| match node {
        Some(n) if fails_here(n.node(), function) => Some(node::cancelled_error(n.node())),
        Some(_) => None,
        None => outside_runtime(function),
    })
}

/// Does a checkpoint of `function` in `node` fail now? The node's cached flag; only when it is
/// clear, the checkpoint hook (installed by the testing kit's cancellation injection, otherwise
/// one thread-local read) is told, and may cancel an enclosing scope right here.
#[inline]
fn fails_here(node: &node::Node, function: &'static str) -> bool {
    node.is_cancelled() || (current::hook_installed() && hook_cancels(node, function))
}

/// The hook's part of [`fails_here`], out of line: inlined, it made every cancel check's code
/// larger (measured: tens of instructions per operation with no hook installed).
#[cold]
#[inline(never)]
fn hook_cancels(node: &node::Node, function: &'static str) -> bool {
    current::checkpoint_hook(function) && node.is_cancelled()
}

/// A schedule point: on the first poll, wake ourselves and return `Pending`, so the scheduler
/// runs everything already queued before we continue (principle 3).
#[derive(Default)]
pub(crate) struct YieldOnce {
    yielded: bool,
}

impl YieldOnce {
    pub(crate) fn poll_yield(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        if self.yielded {
            Poll::Ready(())
        } else {
            self.yielded = true;
            cx.waker().wake_by_ref();
            current::note_yielded();
            Poll::Pending
        }
    }

    /// Has the schedule point been taken (a yield, or a wait)?
    pub(crate) fn has_yielded(&self) -> bool {
        self.yielded
    }

    /// Marks the schedule point done because the operation blocked (blocking is one).
    pub(crate) fn blocked(&mut self) {
        self.yielded = true;
    }
}

/// Yields to the scheduler, then fails if the enclosing scope is cancelled: the basic checkpoint
/// (principle 3, C7).
///
/// ```
/// trellis::run(async {
///     for _ in 0..3 {
///         trellis::checkpoint().await?; // lets other tasks run; stops here once cancelled
///     }
///     Ok::<_, trellis::Cancelled>(())
/// })
/// .unwrap();
/// ```
pub fn checkpoint() -> Checkpoint {
    Checkpoint {
        yield_once: YieldOnce::default(),
        check: true,
    }
}

/// Yields to the scheduler without looking at cancellation (trio's
/// `cancel_shielded_checkpoint`).
///
/// ```
/// trellis::run(async {
///     let scope = trellis::CancelScope::new();
///     scope.cancel();
///     let out = scope
///         .run(async {
///             // Yields, but does not fail although the scope is cancelled.
///             trellis::cancel_shielded_checkpoint().await?;
///             trellis::checkpoint().await // this one fails
///         })
///         .await;
///     assert!(out.is_none());
///     assert!(scope.cancelled_caught());
/// });
/// ```
pub fn cancel_shielded_checkpoint() -> Checkpoint {
    Checkpoint {
        yield_once: YieldOnce::default(),
        check: false,
    }
}

/// Future of [`checkpoint`] and [`cancel_shielded_checkpoint`].
///
/// ```
/// use trellis::Checkpoint;
///
/// trellis::run(async {
///     let yielded: Checkpoint = trellis::checkpoint();
///     assert!(yielded.await.is_ok());
/// });
/// ```
#[must_use = "futures do nothing unless awaited"]
pub struct Checkpoint {
    yield_once: YieldOnce,
    check: bool,
}

impl Checkpoint {
    /// The name the checkpoint goes by in messages (only needed off the fast path).
    fn function(&self) -> &'static str {
        if self.check {
            "checkpoint"
        } else {
            "cancel_shielded_checkpoint"
        }
    }
}

impl Future for Checkpoint {
    type Output = Result<(), Cancelled>;

    /// Inline, into the caller's state machine: out of line, every yield paid a call and
    /// passed its result (the size of a `Cancelled`) back through memory (callgrind, the
    /// `yield` row: 436 → 393 instructions per yield).
    #[inline(always)]
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        if !self.yield_once.yielded {
            if current::current_node_addr().is_null() {
                outside_runtime(self.function());
            }
            current::checkpoint_hook_yielding(|| self.function());
            return self.yield_once.poll_yield(cx).map(Ok);
        }
        if !self.check {
            return Poll::Ready(Ok(()));
        }
        match checkpoint_cancellation("checkpoint") {
            Some(c) => Poll::Ready(Err(c)),
            None => Poll::Ready(Ok(())),
        }
    }
}

/// Fails at once, without yielding, if the enclosing scope is cancelled (trio's
/// `checkpoint_if_cancelled`).
///
/// ```
/// trellis::run(async {
///     // Not cancelled: returns at once, without yielding.
///     let check = trellis::checkpoint_if_cancelled();
///     let quick = trellis::testing::assert_no_checkpoints(check).await;
///     assert!(quick.is_ok());
///     let scope = trellis::CancelScope::new();
///     scope.cancel();
///     assert!(scope.run(trellis::checkpoint_if_cancelled()).await.is_none());
/// });
/// ```
pub async fn checkpoint_if_cancelled() -> Result<(), Cancelled> {
    match checkpoint_cancellation("checkpoint_if_cancelled") {
        Some(c) => Err(c),
        None => Ok(()),
    }
}

/// The earliest deadline that applies to the code calling it: the minimum over the enclosing
/// scopes up to the first shield (C5). `None` when no deadline applies. If the code is already
/// cancelled, a time no later than [`now`](crate::now) is returned.
///
/// ```
/// use std::time::Duration;
///
/// trellis::run(async {
///     assert_eq!(trellis::current_effective_deadline(), None);
///     let outer = trellis::now() + Duration::from_secs(10);
///     let inner = trellis::now() + Duration::from_secs(60);
///     trellis::move_on_at(outer, async {
///         trellis::move_on_at(inner, async {
///             // The earlier of the two applies.
///             assert_eq!(trellis::current_effective_deadline(), Some(outer));
///             Ok::<_, trellis::Cancelled>(())
///         })
///         .await;
///         Ok::<_, trellis::Cancelled>(())
///     })
///     .await;
/// });
/// ```
pub fn current_effective_deadline() -> Option<Instant> {
    let Some(node) = current::current_node_ref() else {
        outside_runtime("current_effective_deadline");
    };
    let deadline = node::effective_deadline(&node);
    if node.is_cancelled() {
        let now = context::fresh_now().expect("a node is set only inside a runtime");
        return Some(deadline.map_or(now, |d| d.min(now)));
    }
    deadline
}

#[cfg(all(test, target_pointer_width = "64"))]
mod tests {
    use std::sync::Arc;

    use super::node::{NodeKind, NodeRef, PlainNode};
    use super::{CancelWaiter, Registration, Way};

    /// Every blocking operation's future holds a `CancelWaiter`, so it is in every parked task's
    /// size (a benchmarked figure): one word, registered or not.
    #[test]
    fn a_cancel_registration_is_one_word() {
        assert_eq!(std::mem::size_of::<CancelWaiter>(), 8);
        assert_eq!(std::mem::size_of::<Option<Registration>>(), 8);
    }

    /// Both ways read back as made, point at their node, and give the node's count back when
    /// dropped (the boxed way frees its box: the sanitizer stage's leak check sees it).
    #[test]
    fn a_registration_reads_back_its_way_and_node_and_gives_its_count_back() {
        let scope = PlainNode::new(NodeKind::Scope);
        let node_addr = Arc::as_ptr(&scope) as *const ();
        for key in [0, 1, 7, usize::MAX >> 1] {
            let slot = Registration::slot(NodeRef::from(scope.clone()), key);
            assert_eq!(Arc::strong_count(&scope), 2);
            let (node, way) = slot.decode();
            assert!(matches!(way, Way::Slot(k) if k == key));
            assert_eq!(node as *const _ as *const (), node_addr);
            drop(slot);
            assert_eq!(Arc::strong_count(&scope), 1);
        }
        let owner = Registration::owner(NodeRef::from(scope.clone()));
        assert_eq!(Arc::strong_count(&scope), 2);
        let (node, way) = owner.decode();
        assert!(matches!(way, Way::Owner));
        assert_eq!(node as *const _ as *const (), node_addr);
        drop(owner);
        assert_eq!(Arc::strong_count(&scope), 1);
    }
}
