//! Thread-local context: which runtime this thread serves, and which cancel-tree node the code
//! being polled right now sits in.
//!
//! The node pointer is set by whoever polls a task or enters a cancel scope, for the duration of
//! that poll only, and restored afterwards (a guard restores it even on panic). Runtime functions
//! read it to find the enclosing scope without any argument being passed around.

use std::cell::{Cell, RefCell};
use std::ptr;
use std::sync::Arc;
use std::time::Instant;

use crate::cancel::node::TreeNode;
use crate::runtime::Shared;

thread_local! {
    /// The runtime clock's time as of the current poll; see `Driver::now`.
    static NOW: Cell<Option<Instant>> = const { Cell::new(None) };
    /// Yields an operation may still skip in this task poll; see `must_yield`.
    static BUDGET: Cell<u32> = const { Cell::new(0) };
    /// The runtime's `yield_budget`, copied here when the thread enters the runtime.
    static BUDGET_REFILL: Cell<u32> = const { Cell::new(0) };
    static RUNTIME: RefCell<Option<Arc<Shared>>> = const { RefCell::new(None) };
    /// `RUNTIME`'s runtime as a plain pointer, for the hottest paths: a thread-local without a
    /// destructor is read directly, where one holding an `Arc` goes through its lazy
    /// registration each time (tens of instructions per operation, measured).
    static RUNTIME_PTR: Cell<*const Shared> = const { Cell::new(ptr::null()) };
    static NODE: Cell<Option<*const dyn TreeNode>> = const { Cell::new(None) };
    /// A trellis operation parked (registered with the cancel tree) or yielded during the poll
    /// being made; see `begin_park_watch`.
    static PARKED: Cell<bool> = const { Cell::new(false) };
}

/// A trellis operation is about to return `Pending` having registered its wake-up with the
/// cancel tree (or woken itself): the code being polled waits where cancellation can reach it.
#[inline]
pub(crate) fn note_parked() {
    PARKED.with(|p| p.set(true));
}

/// Starts watching one poll of an inner future for trellis waits; returns the outer watch's
/// state, to hand to [`end_park_watch`].
#[inline]
pub(crate) fn begin_park_watch() -> bool {
    PARKED.with(|p| p.replace(false))
}

/// Ends a watch: returns whether a trellis operation parked or yielded during it, and folds
/// that into the outer watch.
#[inline]
pub(crate) fn end_park_watch(outer: bool) -> bool {
    PARKED.with(|p| {
        let inner = p.get();
        p.set(outer || inner);
        inner
    })
}

/// The runtime this thread serves, if any.
pub(crate) fn try_current() -> Option<Arc<Shared>> {
    RUNTIME.with(|rt| rt.borrow().clone())
}

/// Runs `f` with a borrow of the runtime this thread serves (no reference-count traffic: use
/// this on hot paths instead of `try_current`).
#[inline]
pub(crate) fn with_runtime<R>(f: impl FnOnce(Option<&Arc<Shared>>) -> R) -> R {
    RUNTIME.with(|rt| f(rt.borrow().as_ref()))
}

/// Runs `f` with the runtime this thread serves, read through the plain-pointer mirror.
#[inline]
pub(crate) fn with_shared<R>(f: impl FnOnce(Option<&Shared>) -> R) -> R {
    let ptr = RUNTIME_PTR.with(Cell::get);
    // SAFETY: the pointer is set by `enter_runtime` from the `Arc` it stores in `RUNTIME`, which
    // keeps the runtime alive until the guard restores the previous pointer and value together.
    f(unsafe { ptr.as_ref() })
}

/// The runtime this thread serves, as an address for identity checks (null outside any).
#[inline]
pub(crate) fn current_runtime_addr() -> *const Shared {
    RUNTIME_PTR.with(Cell::get)
}

pub(crate) fn cached_now() -> Option<Instant> {
    NOW.with(Cell::get)
}

pub(crate) fn set_cached_now(now: Instant) {
    NOW.with(|c| c.set(Some(now)));
}

/// Forgets the cached time (a mock clock moved).
pub(crate) fn clear_cached_now() {
    NOW.with(|c| c.set(None));
}

/// Called at the start of every task poll: forgets the cached time, refills the budget of
/// skipped yields (see `Builder::yield_budget`) and starts the task's park watch.
pub(crate) fn begin_poll() {
    NOW.with(|c| c.set(None));
    BUDGET.with(|b| b.set(BUDGET_REFILL.with(Cell::get)));
    PARKED.with(|p| p.set(false));
}

/// Whether a trellis operation parked or yielded since the task poll began (`begin_poll`): the
/// watch of the outermost owner, the task itself, without a save and restore.
#[inline]
pub(crate) fn parked_in_poll() -> bool {
    PARKED.with(Cell::get)
}

/// Must an operation that completed without blocking yield now? Spends one unit of the task's
/// budget; says yes once it is spent (and outside a task poll, where there is no budget).
pub(crate) fn must_yield() -> bool {
    BUDGET.with(|b| match b.get() {
        0 => true,
        n => {
            b.set(n - 1);
            false
        }
    })
}

/// Is this thread inside a runtime?
pub(crate) fn in_runtime() -> bool {
    RUNTIME.with(|rt| rt.borrow().is_some())
}

/// Makes this thread serve `rt` until the guard is dropped.
pub(crate) fn enter_runtime(rt: Arc<Shared>) -> RuntimeGuard {
    let refill = rt.yield_budget();
    let previous_budget = BUDGET_REFILL.with(|b| b.replace(refill));
    let previous_ptr = RUNTIME_PTR.with(|p| p.replace(Arc::as_ptr(&rt)));
    let previous = RUNTIME.with(|cell| cell.borrow_mut().replace(rt));
    RuntimeGuard {
        previous,
        previous_ptr,
        previous_budget,
    }
}

pub(crate) struct RuntimeGuard {
    previous: Option<Arc<Shared>>,
    previous_ptr: *const Shared,
    previous_budget: u32,
}

impl Drop for RuntimeGuard {
    fn drop(&mut self) {
        let previous = self.previous.take();
        RUNTIME_PTR.with(|p| p.set(self.previous_ptr));
        RUNTIME.with(|cell| *cell.borrow_mut() = previous);
        BUDGET_REFILL.with(|b| b.set(self.previous_budget));
    }
}

/// Sets the current node for the duration of a poll.
pub(crate) fn set_node(node: &dyn TreeNode) -> NodeGuard {
    let ptr: *const dyn TreeNode = node;
    // SAFETY (of later reads): the caller keeps `node` alive, and does not move it, for as long
    // as the guard lives; the guard restores the previous value when dropped.
    let previous = NODE.with(|cell| cell.replace(Some(ptr)));
    NodeGuard { previous }
}

pub(crate) struct NodeGuard {
    previous: Option<*const dyn TreeNode>,
}

impl Drop for NodeGuard {
    fn drop(&mut self) {
        NODE.with(|cell| cell.set(self.previous));
    }
}

/// Runs `f` with the node the current code sits in; `None` outside any task.
pub(crate) fn with_node<R>(f: impl FnOnce(Option<&dyn TreeNode>) -> R) -> R {
    let ptr = NODE.with(Cell::get);
    match ptr {
        // SAFETY: a pointer is only stored by `set_node`, whose guard keeps the node alive and in
        // place until it restores the previous value; we are inside that window.
        Some(p) => f(Some(unsafe { &*p })),
        None => f(None),
    }
}

/// A counted reference to the current node (for registrations that outlive this poll).
pub(crate) fn current_node_arc() -> Option<Arc<dyn TreeNode>> {
    let ptr = NODE.with(Cell::get)?;
    // SAFETY: every pointer stored by `set_node` comes from `Arc::as_ptr` of a live
    // `Arc<dyn TreeNode>` (tasks and scopes hold theirs while polling), so bumping the strong
    // count and rebuilding an `Arc` from it is sound.
    unsafe {
        Arc::increment_strong_count(ptr);
        Some(Arc::from_raw(ptr))
    }
}

/// Address identity of the current node, for cheap "same node as before?" checks.
pub(crate) fn current_node_addr() -> *const () {
    NODE.with(Cell::get).map_or(ptr::null(), |p| p as *const ())
}
