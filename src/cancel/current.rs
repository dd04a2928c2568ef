//! Which cancel-tree node the code being polled right now sits in, and whether a trellis
//! operation parked during the poll.
//!
//! The node pointer is set by whoever polls a task or enters a cancel scope, for the duration of
//! that poll only, and restored afterwards (a guard restores it even on panic). Operations read
//! it to find the enclosing scope without any argument being passed around. The park watch tells
//! a wait that cancellation can reach (a trellis operation registered with the tree) from a
//! foreign one (B1).

use std::cell::Cell;
use std::ptr;
use std::sync::Arc;

use crate::cancel::node::TreeNode;
use crate::runtime::context;

thread_local! {
    static NODE: Cell<Option<*const dyn TreeNode>> = const { Cell::new(None) };
    /// A trellis operation parked (registered with the cancel tree) or yielded during the poll
    /// being made; see `begin_park_watch`.
    static PARKED: Cell<bool> = const { Cell::new(false) };
}

/// Called at the start of every task poll: forgets the cached time, refills the yield budget
/// and starts the task's park watch.
pub(crate) fn begin_poll() {
    context::begin_poll();
    PARKED.with(|p| p.set(false));
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

/// Whether a trellis operation parked or yielded since the task poll began (`begin_poll`): the
/// watch of the outermost owner, the task itself, without a save and restore.
#[inline]
pub(crate) fn parked_in_poll() -> bool {
    PARKED.with(Cell::get)
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
