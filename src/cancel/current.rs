//! Which cancel-tree node the code being polled right now sits in, and whether a trellis
//! operation parked during the poll.
//!
//! The node pointer is set by whoever polls a task or enters a cancel scope, for the duration of
//! that poll only, and restored afterwards (a guard restores it even on panic). Operations read
//! it to find the enclosing scope without any argument being passed around. The park watch tells
//! a wait that cancellation can reach (a trellis operation registered with the tree) from a
//! foreign one (B1). A checkpoint hook, installed only by the testing kit's cancellation
//! injection, sees every cancel check made on this thread.

use std::cell::{Cell, RefCell};
use std::marker::PhantomData;
use std::ptr::{self, NonNull};
use std::task::Waker;
use std::time::Instant;

use crate::cancel::node::{Node, NodeRef, TreeNode};
use crate::runtime::context;

thread_local! {
    static NODE: Cell<Option<*const Node>> = const { Cell::new(None) };
    /// What the trellis operations polled so far did: nothing (0), only yield ([`YIELDED`]:
    /// woke their task and returned `Pending`), or wait ([`WAITED`]: parked, registered with
    /// the cancel tree); see `begin_park_watch`.
    static PARKED: Cell<u8> = const { Cell::new(0) };
    /// The earliest deadline whose timer is deferred among the scopes being polled on this
    /// thread now; see [`enter_deferred`].
    static DEFERRED: Cell<Option<Instant>> = const { Cell::new(None) };
    /// The checkpoint hook, while one is installed; see [`set_checkpoint_hook`].
    static HOOK: Cell<Option<NonNull<dyn CheckpointHook>>> = const { Cell::new(None) };
    /// The task being polled: see [`TaskPoll`].
    static TASK: Cell<TaskPoll> = const { Cell::new(TaskPoll { waker: ptr::null(), id: 0 }) };
    /// The identities of the tasks whose futures are in use below the code running now on
    /// this thread, besides the task being polled (`TASK`): each [`as_task`] adds the task it
    /// runs as, and the poll it interrupted. For [`in_use_list`]; written only by `as_task`,
    /// so task polls pay nothing for it.
    static IN_USE: RefCell<Vec<usize>> = const { RefCell::new(Vec::new()) };
}

/// The task whose code runs on this thread now.
#[derive(Clone, Copy)]
struct TaskPoll {
    /// Its waker, for the poll in progress (null outside a task poll: `end_task_poll` resets
    /// it); see [`own_task_waker`].
    waker: *const Waker,
    /// Its id (0: not known here; task ids start at 1). Left set after the poll, for the task's
    /// own exit; whatever polls code outside a task poll clears it (`begin_other_poll`).
    id: u64,
}

/// An operation yielded: it woke its own task, which is runnable again.
pub(crate) const YIELDED: u8 = 0b01;
/// An operation parked: it waits for a wake-up registered with the cancel tree. Its bits cover
/// a yield's, so noting it is a plain store (every park does it), and a watch reads exactly
/// [`YIELDED`] only when nothing but yields happened in it.
pub(crate) const WAITED: u8 = 0b11;

/// Called at the start of every task poll: forgets the cached time, refills the yield budget
/// and starts the task's park watch.
#[inline]
pub(crate) fn begin_poll() {
    context::begin_poll();
    PARKED.with(|p| p.set(0));
    DEFERRED.with(|d| d.set(None));
}

/// Called before a poll that is not a task's (the main future): no task owns its code.
#[inline]
pub(crate) fn begin_other_poll() {
    TASK.with(|t| {
        t.set(TaskPoll {
            waker: ptr::null(),
            id: 0,
        })
    });
}

/// The task with id `id` is being polled with this waker, until [`end_task_poll`]: an
/// operation parked with it can be woken through its node's owner waker (see `CancelWaiter`),
/// and a lock taken now is owned by that task.
#[inline]
pub(crate) fn begin_task_poll(waker: &Waker, id: u64) {
    TASK.with(|t| t.set(TaskPoll { waker, id }));
}

/// The task poll that [`begin_task_poll`] began is over (its waker is gone; its id stays for
/// the task's exit, which follows on this thread).
#[inline]
pub(crate) fn end_task_poll() {
    TASK.with(|t| {
        t.set(TaskPoll {
            waker: ptr::null(),
            id: t.get().id,
        })
    });
}

/// The id of the task whose code runs now, where known without a walk up the tree.
#[inline]
pub(crate) fn polled_task_id() -> Option<u64> {
    match TASK.with(Cell::get).id {
        0 => None,
        id => Some(id),
    }
}

/// Runs `f` as code of task `id`, whose waker has identity `identity` (a task's future dropped
/// by a teardown, from inside whatever poll is in progress: its destructors belong to the task
/// being dropped).
pub(crate) fn as_task<R>(id: u64, identity: usize, f: impl FnOnce() -> R) -> R {
    struct Restore(TaskPoll, usize);
    impl Drop for Restore {
        fn drop(&mut self) {
            TASK.with(|t| t.set(self.0));
            IN_USE.with(|u| u.borrow_mut().truncate(self.1));
        }
    }
    let outer = TASK.with(|t| {
        t.replace(TaskPoll {
            waker: ptr::null(),
            id,
        })
    });
    let depth = IN_USE.with(|u| {
        let mut u = u.borrow_mut();
        let depth = u.len();
        // The poll this interrupts, if any, is still in progress.
        u.extend(waker_identity(outer.waker));
        u.push(identity);
        depth
    });
    let _restore = Restore(outer, depth);
    f()
}

/// The identity of the waker `waker` points at, if it is not null.
fn waker_identity(waker: *const Waker) -> Option<usize> {
    // SAFETY: a non-null `TaskPoll::waker` was set by `begin_task_poll` from the waker of the
    // task poll in progress on this thread, which outlives that poll; it is reset before the
    // poll ends, and `as_task` puts it back only inside that poll.
    unsafe { waker.as_ref() }.map(|waker| waker.data() as usize)
}

/// The identities (`Waker::data`, as a node's [`owner_id`](Node::owner_id) keeps them) of every
/// task whose future is in use below the code running now on this thread: being polled (that
/// code is the task's own, or a destructor a teardown runs from inside it), or being dropped
/// (by a teardown, or by the task's runner once it finished). Such a future cannot be waited
/// for here: its use ends only once this code returns.
pub(crate) fn in_use_list() -> Vec<usize> {
    let mut list = IN_USE.with(|u| u.borrow().clone());
    list.extend(waker_identity(TASK.with(Cell::get).waker));
    list
}

/// If `waker` is the waker of the task being polled, its identity (the address of the task it
/// wakes). `None` outside a task poll, for any other waker (an operation polled by a foreign
/// combinator with a waker of its own), and while the checkpoint hook or deadlock detection
/// wants every wait registered on its own.
#[inline]
pub(crate) fn own_task_waker(waker: &Waker) -> Option<usize> {
    let task = TASK.with(Cell::get).waker;
    if task.is_null() || hook_installed() || crate::runtime::shared::any_deadlock_detection() {
        return None;
    }
    // SAFETY: set by `begin_task_poll` from the waker of the task poll in progress on this
    // thread, which outlives that poll, and reset by `end_task_poll` when it ends; no other
    // code polls futures on a worker thread between task polls.
    let task = unsafe { &*task };
    waker.will_wake(task).then(|| waker.data() as usize)
}

/// A trellis operation is about to return `Pending` having registered its wake-up with the
/// cancel tree: the code being polled waits where cancellation can reach it.
#[inline]
pub(crate) fn note_parked() {
    PARKED.with(|p| p.set(WAITED));
}

/// A trellis operation is about to return `Pending` having woken its own task (a schedule
/// point): the code being polled is runnable, and cancellation reaches it when it runs.
#[inline]
pub(crate) fn note_yielded() {
    PARKED.with(|p| p.set(p.get() | YIELDED));
}

/// Starts watching one poll of an inner future for trellis waits; returns the outer watch's
/// state, to hand to [`end_park_watch`].
#[inline]
pub(crate) fn begin_park_watch() -> u8 {
    PARKED.with(|p| p.replace(0))
}

/// Ends a watch: returns what the trellis operations polled during it did (0, [`YIELDED`] or
/// [`WAITED`]), and folds that into the outer watch.
#[inline]
pub(crate) fn end_park_watch(outer: u8) -> u8 {
    PARKED.with(|p| {
        let inner = p.get();
        p.set(outer | inner);
        inner
    })
}

/// Whether a trellis operation parked or yielded since the task poll began (`begin_poll`): the
/// watch of the outermost owner, the task itself, without a save and restore.
#[inline]
pub(crate) fn parked_in_poll() -> bool {
    PARKED.with(Cell::get) != 0
}

/// A scope whose deadline timer is deferred (`deadline`, see `Scoped`) is about to poll its
/// body: its deadline joins the earliest deferred one seen by the cancel checks made inside.
/// Returns the outer value, to put back with [`set_deferred_deadline`].
#[inline]
pub(crate) fn enter_deferred(deadline: Option<Instant>) -> Option<Instant> {
    DEFERRED.with(|d| {
        let outer = d.get();
        if let Some(deadline) = deadline {
            d.set(Some(outer.map_or(deadline, |o| o.min(deadline))));
        }
        outer
    })
}

/// The earliest deferred deadline among the scopes being polled on this thread now.
#[inline]
pub(crate) fn deferred_deadline() -> Option<Instant> {
    DEFERRED.with(Cell::get)
}

/// Replaces [`deferred_deadline`]: with the outer value [`enter_deferred`] returned once the
/// body's poll is over, or with what is left after the enclosing scopes were looked at.
#[inline]
pub(crate) fn set_deferred_deadline(deadline: Option<Instant>) {
    DEFERRED.with(|d| d.set(deadline));
}

/// Sets the current node for the duration of a poll. `node` is the node's container (a task's
/// cell, a `PlainNode`), whose first field is the node: the pointer kept is made from it, so a
/// reference counted from it later (see `NodeRef::retained`) may reach the whole container.
#[inline]
pub(crate) fn set_node<N: TreeNode + ?Sized>(node: &N) -> NodeGuard {
    let ptr = NonNull::from(node).cast::<Node>();
    debug_assert!(
        ptr::eq(ptr.as_ptr(), node.node()),
        "the node is its container's first field"
    );
    set_node_ptr(ptr)
}

/// [`set_node`] for the node a reference holds.
#[inline]
pub(crate) fn set_node_ref(node: &NodeRef) -> NodeGuard {
    set_node_ptr(node.as_ptr())
}

#[inline]
fn set_node_ptr(ptr: NonNull<Node>) -> NodeGuard {
    // SAFETY (of later reads): the caller keeps the node alive, and does not move it, for as
    // long as the guard lives; the guard restores the previous value when dropped.
    let previous = NODE.with(|cell| cell.replace(Some(ptr.as_ptr())));
    NodeGuard { previous }
}

pub(crate) struct NodeGuard {
    previous: Option<*const Node>,
}

impl Drop for NodeGuard {
    #[inline]
    fn drop(&mut self) {
        NODE.with(|cell| cell.set(self.previous));
    }
}

/// Runs `f` with the node the current code sits in; `None` outside any task.
#[inline]
pub(crate) fn with_node<R>(f: impl FnOnce(Option<&Node>) -> R) -> R {
    let ptr = NODE.with(Cell::get);
    match ptr {
        // SAFETY: a pointer is only stored by `set_node`, whose guard keeps the node alive and in
        // place until it restores the previous value; we are inside that window.
        Some(p) => f(Some(unsafe { &*p })),
        None => f(None),
    }
}

/// A counted reference to the current node (for registrations that outlive this poll).
pub(crate) fn current_node_ref() -> Option<NodeRef> {
    let ptr = current_node_ptr()?;
    // SAFETY: read just now, in the poll that set it.
    Some(unsafe { node_ref(ptr) })
}

/// The current node as a pointer (`None` outside any task), for a caller that compares its
/// address and then may need [`node_ref`]: one thread-local read serves both.
#[inline]
pub(crate) fn current_node_ptr() -> Option<*const Node> {
    NODE.with(Cell::get)
}

/// A counted reference to the node `ptr` points at.
///
/// # Safety
/// `ptr` must come from [`current_node_ptr`] during the poll still in progress.
#[inline]
pub(crate) unsafe fn node_ref(ptr: *const Node) -> NodeRef {
    // SAFETY: every pointer stored by `set_node` is that of a node counted by its counter (a
    // task's cell, or a scope's or nursery's `Arc<PlainNode>`), made from its container, which
    // its owner keeps alive while polling; the caller read it during that poll.
    unsafe { NodeRef::retained(NonNull::new_unchecked(ptr as *mut Node)) }
}

/// Address identity of the current node, for cheap "same node as before?" checks.
#[inline]
pub(crate) fn current_node_addr() -> *const () {
    NODE.with(Cell::get).map_or(ptr::null(), |p| p as *const ())
}

/// Watches the checkpoints made on this thread (the testing kit's cancellation injection).
///
/// Every cancel check of a checkpoint that is about to pass (its node is not cancelled) calls
/// [`check`](CheckpointHook::check) first; the hook may cancel a scope there, and the check then
/// looks again, so the checkpoint fails exactly as if that scope had been cancelled a moment
/// earlier. Checks in a node that is already cancelled fail anyway and are not reported.
pub(crate) trait CheckpointHook {
    /// A checkpoint of `function` (`module::Type::method`) is about to check for cancellation.
    /// Returns whether the hook cancelled something, so that the check must look again.
    fn check(&self, function: &'static str) -> bool;

    /// `checkpoint()` (or `cancel_shielded_checkpoint()`) is about to yield before its check: a
    /// point where the code is suspended without having checked yet.
    fn yielding(&self, function: &'static str);
}

/// Installs `hook` for this thread until the guard is dropped (which restores the previous
/// one, also on panic).
pub(crate) fn set_checkpoint_hook<'a>(hook: &'a (dyn CheckpointHook + 'static)) -> HookGuard<'a> {
    // SAFETY (of later reads): the guard borrows `hook`, so it outlives the guard, and the guard
    // restores the previous value when dropped; the pointer is only read while it is installed.
    let previous = HOOK.with(|cell| cell.replace(Some(NonNull::from(hook))));
    HookGuard {
        previous,
        _hook: PhantomData,
    }
}

pub(crate) struct HookGuard<'a> {
    previous: Option<NonNull<dyn CheckpointHook>>,
    _hook: PhantomData<&'a dyn CheckpointHook>,
}

impl Drop for HookGuard<'_> {
    fn drop(&mut self) {
        HOOK.with(|cell| cell.set(self.previous));
    }
}

/// Is a checkpoint hook installed (one thread-local read)?
#[inline]
pub(crate) fn hook_installed() -> bool {
    HOOK.with(|hook| hook.get().is_some())
}

/// Reports a cancel check to the hook, if one is installed (one thread-local read otherwise).
/// Returns whether the hook cancelled something.
#[inline]
pub(crate) fn checkpoint_hook(function: &'static str) -> bool {
    match HOOK.with(Cell::get) {
        None => false,
        Some(hook) => report_check(hook, function),
    }
}

/// Reports a yield that comes before a checkpoint's check to the hook, if one is installed.
#[inline]
pub(crate) fn checkpoint_hook_yielding(function: impl FnOnce() -> &'static str) {
    if let Some(hook) = HOOK.with(Cell::get) {
        report_yield(hook, function());
    }
}

// Out of line and cold, so that the checkpoints without a hook (all of them outside the
// injection harness) keep their code small: inlined, the calls cost every checkpoint a few
// more saved registers (measured: about 40 instructions per yield).
#[cold]
#[inline(never)]
fn report_check(hook: NonNull<dyn CheckpointHook>, function: &'static str) -> bool {
    // SAFETY: only `set_checkpoint_hook` stores the pointer, and its guard keeps the hook
    // alive until it restores the previous value; we are inside that window.
    unsafe { hook.as_ref() }.check(function)
}

#[cold]
#[inline(never)]
fn report_yield(hook: NonNull<dyn CheckpointHook>, function: &'static str) {
    // SAFETY: as in `report_check`.
    unsafe { hook.as_ref() }.yielding(function);
}
