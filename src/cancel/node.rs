//! The cancel tree: the internal structure behind cancel scopes, nurseries and tasks.
//!
//! ```text
//!   root (runtime)
//!    └─ task "main"                      every task is a node; its nested scopes hang below it
//!        └─ scope (move_on_after)
//!            └─ nursery                  a nursery is a scope; its tasks are its children
//!                ├─ task 7
//!                │   └─ scope (shield) ─ cancellation from above stops here
//!                └─ task 8
//! ```
//!
//! Each node keeps its children, the wakers of operations blocked directly inside it, and its own
//! cancel state (called, reason, shield, deadline). Its cancel byte (`CancelBits`) caches "a
//! checkpoint here fails" (the effective flag): the node's own cancel was called, or its parent
//! is effectively cancelled and the node is not shielded. Checkpoints read only that atomic. The
//! byte also holds the reason of the node's own cancel and which half of the rule holds, so
//! that a cancelled checkpoint finds the scope that absorbs it without locking the nodes above.
//!
//! Who touches what:
//! - The cancel byte is written only under the node's own lock, and once the node is linked
//!   also under the process-wide `TREE_LOCK`. Cancelling, changing a shield and re-parenting a
//!   task take `TREE_LOCK`, so two propagations never interleave. They walk the subtree
//!   top-down, one node lock at a time, setting flags before snapshotting children and waking
//!   waiters after unlocking.
//! - Linking a new child reads the parent's effective flag under the parent's lock, so it either
//!   sees a propagation's flag or is in the snapshot the propagation walks next.
//! - A blocked operation registers its waker in the node it is blocked in, under that node's
//!   lock, and re-reads the effective flag after registering: it cannot miss a cancellation. One
//!   parked with its own task's waker (the usual case) instead counts itself in the node's
//!   `owner_parked` (SeqCst) and then reads the effective flag (SeqCst), having made sure once,
//!   under the lock, that the node keeps that waker as its owner waker; a cancellation sets
//!   the effective flag (SeqCst) and then reads the count: one of the two sees the other, so
//!   either the operation fails at once or the cancellation wakes the owner.
//! - Two node locks are held together only child first, then parent (linking and re-parenting
//!   a node), with one exception that never waits: a propagation holding a node's lock *tries*
//!   the lock of each childless child, visiting it in place if it gets it (see `visit_leaf`).
//!   Everything else holds one node lock at a time.
//!
//! Invariant behind "no child outlives its parent": a task node is unlinked from its nursery
//! only after its future has been dropped, and a nursery completes only when it has no task
//! children left.

use std::cell::UnsafeCell;
use std::mem::ManuallyDrop;
use std::num::NonZeroU32;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::task::{RawWakerVTable, Waker};
use std::time::{Duration, Instant};

use slab::Slab;

use super::waiting::WaitLabel;
use crate::asymmetric_fence;
use crate::error::{CancelReason, Cancelled};
use crate::runtime::Shared;
use crate::state_lock::{lock_blocking, ByteGuard, ByteLock};
use crate::task::local::Chain;
use crate::time::timers::{Expire, TimerKey, TimerTarget};

/// Serialises every change that propagates through the tree. Such changes are rare (a cancel, a
/// shield flip, a deadline firing), so one lock for the process costs nothing measurable.
static TREE_LOCK: Mutex<()> = Mutex::new(());

fn tree_lock() -> MutexGuard<'static, ()> {
    lock_blocking(&TREE_LOCK)
}

/// Something that sits in the tree: a plain node (scope, nursery, root) or a task cell that
/// embeds its node. What differs between them (how references are counted, what a teardown
/// does) is in the node's [`NodeOps`], so a reference to either is a thin pointer to the node.
pub(crate) trait TreeNode: Send + Sync + 'static {
    fn node(&self) -> &Node;

    /// Locks the node, its state coming with the fields beside it if it is a plain node (see
    /// [`Locked`]).
    fn lock(&self) -> Locked<'_>;
}

/// The two functions that count references to a node, given the node's address: an `Arc`'s
/// strong count for a plain node, a count in the cell for a task (see `task::ChildCell`, whose
/// node is its first field, so the node's address is the cell's).
pub(crate) struct Counter {
    /// Adds one reference.
    pub(crate) retain: unsafe fn(*const ()),
    /// Gives one back; the node may be freed before it returns.
    pub(crate) release: unsafe fn(*const ()),
}

/// What a node does that depends on where it lives: kept in the node (one pointer), so that a
/// [`NodeRef`] is a thin pointer (8 bytes, not a trait object's 16). Every parent, every entry
/// of a child list and every parked operation holds one.
pub(crate) struct NodeOps {
    pub(crate) counter: Counter,
    /// The first step of a teardown (see [`tear_down`]): from now on no poll of the task's
    /// future may begin. Only task cells do anything, and say so (true: a poll may hold a
    /// future of theirs). Given the node's address.
    pub(crate) close: unsafe fn(*const ()) -> bool,
    /// The last step of a teardown, after [`close`](Self::close) and a heavy fence: drops the
    /// task's future now, waiting for a poll in progress on another thread to end, or for
    /// another teardown of the same task to end. Only task cells do anything. Returns `false`
    /// where waiting could never end (the future is in use below the caller, on its own
    /// thread or, through a chain of such waits, on another), and the task is left to end once
    /// that use is over. Given the node's address.
    pub(crate) teardown: unsafe fn(*const ()) -> bool,
    /// For a task spawned with `spawn_local`, the thread its future belongs to. Given the
    /// node's address.
    pub(crate) local_thread: unsafe fn(*const ()) -> Option<std::thread::ThreadId>,
}

/// A counted reference to a node of the tree: what parents, children, registrations and
/// handles hold. It is `Arc<PlainNode>` in all but the count: a task's node lives in the task's own
/// `async-task` allocation (one allocation per task), not in an `Arc`, so the reference counts
/// through the node's [`NodeOps`].
pub(crate) struct NodeRef {
    ptr: NonNull<Node>,
}

// SAFETY: a `NodeRef` is a shared reference to a `Node`, which is `Send + Sync`, plus a count
// that its counter keeps with atomics.
unsafe impl Send for NodeRef {}
// SAFETY: as above.
unsafe impl Sync for NodeRef {}

impl NodeRef {
    /// Takes over one reference already counted for the node at `ptr`.
    ///
    /// # Safety
    /// `ptr` must point at a live node, and the caller must own one count of it, which the
    /// returned reference gives back when dropped.
    pub(crate) unsafe fn adopt(ptr: NonNull<Node>) -> NodeRef {
        NodeRef { ptr }
    }

    /// A new counted reference to the node at `ptr`.
    ///
    /// A pointer, not a `&Node`: a task's cell is reached from its node's address (the node is
    /// its first field), so the pointer must carry the whole container's provenance, as one
    /// made from the container (the cell, the `PlainNode`) or held by another `NodeRef` does; a
    /// reference to the node covers the node only.
    ///
    /// # Safety
    /// `ptr` must point at a live node counted by its [`Counter`] (held by a `NodeRef`, by its
    /// own `Arc`, or the node of a task's cell whose allocation is alive), and be made from a
    /// pointer to its container.
    pub(crate) unsafe fn retained(ptr: NonNull<Node>) -> NodeRef {
        // SAFETY: the node is alive and counted by its counter (the caller's contract).
        unsafe { (ptr.as_ref().ops.counter.retain)(ptr.as_ptr() as *const ()) };
        NodeRef { ptr }
    }

    /// Gives up the reference as its pointer, keeping its count, for [`adopt`](Self::adopt)
    /// to take over.
    pub(crate) fn into_raw(self) -> NonNull<Node> {
        let ptr = self.ptr;
        std::mem::forget(self);
        ptr
    }

    /// The pointer this reference holds, with its container's provenance (see [`retained`](Self::retained)).
    #[inline]
    pub(crate) fn as_ptr(&self) -> NonNull<Node> {
        self.ptr
    }

    /// Drops the future of the task this node belongs to now (nothing for a plain node),
    /// waiting for a poll in progress on another thread to end. Tearing down several tasks,
    /// [`tear_down`] is cheaper.
    pub(crate) fn teardown(&self) {
        tear_down(std::slice::from_ref(self));
    }

    /// For the node of a task spawned with `spawn_local`, the thread its future belongs to.
    pub(crate) fn local_thread(&self) -> Option<std::thread::ThreadId> {
        // SAFETY: as in `teardown`.
        unsafe { (self.ops.local_thread)(self.addr()) }
    }

    /// The node's address, for identity checks.
    #[inline]
    pub(crate) fn addr(&self) -> *const () {
        self.ptr.as_ptr() as *const ()
    }

    /// Locks the node; its state comes with the fields beside it if it is a plain node.
    #[inline]
    pub(crate) fn lock(&self) -> Locked<'_> {
        let plain = if self.is_plain() {
            // A plain node is the first field of its `repr(C)` `PlainNode`: same address.
            let base = self.ptr.as_ptr() as *const PlainNode;
            // SAFETY: a node with the plain operations is the node of a live `PlainNode` (`self`
            // counts it), and `self.ptr` carries the container's provenance; no reference is
            // made on the way.
            NonNull::new(unsafe { UnsafeCell::raw_get(std::ptr::addr_of!((*base).fields)) })
        } else {
            None
        };
        Locked {
            state: Node::lock(self),
            plain,
        }
    }

    /// The `Arc` of a plain node (a scope, nursery or root); `None` for a task's node.
    pub(crate) fn plain(&self) -> Option<Arc<PlainNode>> {
        if !self.is_plain() {
            return None;
        }
        // A plain node is the first field of its `repr(C)` `PlainNode`: same address.
        let node = self.ptr.as_ptr() as *const PlainNode;
        // SAFETY: a node with the plain operations is a `Node` in an `Arc` of its own, and
        // `self` holds one of its counts, so it is alive; the new `Arc` takes a count of its own.
        unsafe {
            Arc::increment_strong_count(node);
            Some(Arc::from_raw(node))
        }
    }
}

impl From<Arc<PlainNode>> for NodeRef {
    /// The tree's reference to a plain node: the `Arc`'s count becomes the reference's.
    fn from(node: Arc<PlainNode>) -> NodeRef {
        debug_assert!(node.is_plain(), "an `Arc`'s node is plain");
        // The node is the first field of its `repr(C)` `PlainNode`: same address.
        let ptr = Arc::into_raw(node);
        NodeRef {
            // SAFETY: `Arc::into_raw` never returns null.
            ptr: unsafe { NonNull::new_unchecked(ptr as *mut Node) },
        }
    }
}

impl Clone for NodeRef {
    #[inline]
    fn clone(&self) -> NodeRef {
        // SAFETY: `self` holds a count, so the node is alive and counted by its counter, and its
        // pointer was made from the container.
        unsafe { NodeRef::retained(self.ptr) }
    }
}

impl Drop for NodeRef {
    #[inline]
    fn drop(&mut self) {
        // The counter is read before the count is given back: releasing may free the node.
        let release = self.ops.counter.release;
        // SAFETY: `self` owns one count, given back exactly once, here.
        unsafe { release(self.addr()) }
    }
}

impl std::ops::Deref for NodeRef {
    type Target = Node;

    #[inline]
    fn deref(&self) -> &Node {
        // SAFETY: the count `self` holds keeps the node alive.
        unsafe { self.ptr.as_ref() }
    }
}

/// The operations of plain nodes: each lives in an `Arc` of its own, and has no future.
static PLAIN: NodeOps = NodeOps {
    counter: Counter {
        retain: arc_retain,
        release: arc_release,
    },
    close: |_| false,
    teardown: |_| true,
    local_thread: |_| None,
};

/// Drops the futures of the tasks these nodes belong to now, in order (nothing for a plain
/// node), waiting for polls in progress on other threads to end. Each task is closed to new
/// polls first, then one heavy fence (`asymmetric_fence`) makes every poll that had already
/// begun visible, so that a runner's poll lock costs it no fence of its own (see `task`); the
/// fence is a system call, paid once for all of them. Returns how many tasks were left to end
/// once their future's use below the caller is over (see [`NodeOps::teardown`]): they stay
/// linked until then.
pub(crate) fn tear_down(tasks: &[NodeRef]) -> usize {
    let mut futures = false;
    for task in tasks {
        // SAFETY: the node is alive (`task` counts it), its operations were made for where it
        // lives, and `task.ptr` carries its container's provenance.
        futures |= unsafe { (task.ops.close)(task.addr()) };
    }
    // No system call where no poll can be in progress: a runtime's shutdown usually finds only
    // the main future's node, a plain one.
    if futures {
        asymmetric_fence::heavy();
    }
    let mut left = 0;
    for task in tasks {
        // SAFETY: as above.
        if !unsafe { (task.ops.teardown)(task.addr()) } {
            left += 1;
        }
    }
    left
}

/// # Safety
/// `node` must come from `Arc::<PlainNode>::into_raw` (or `as_ptr`) of a live `Arc`.
unsafe fn arc_retain(node: *const ()) {
    // SAFETY: by the function's contract.
    unsafe { Arc::increment_strong_count(node as *const PlainNode) }
}

/// # Safety
/// As for [`arc_retain`], and the caller gives up one count it owns.
unsafe fn arc_release(node: *const ()) {
    // SAFETY: by the function's contract.
    unsafe { Arc::decrement_strong_count(node as *const PlainNode) }
}

/// Timers fire a scope's deadline through [`Expire`] (the timer store sits below the tree).
impl Expire for PlainNode {
    fn expire(&self) {
        deadline_fired(self);
    }
}

/// A grace timer's hold on the cancelled node it ends (B3). A task's node has no weak form, so
/// the timer holds it; the timer is removed when the node leaves the tree.
struct GraceOf(NodeRef);

impl Expire for GraceOf {
    fn expire(&self) {
        grace_expired(&self.0);
    }
}

/// What a node stands for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum NodeKind {
    /// The root of a runtime's tree. It knows its runtime (in its extras), so that code on a
    /// thread outside the runtime can find it from any linked node (a deadline set from another
    /// thread, C2/C5).
    Root,
    Task(TaskInfo),
    Scope,
    Nursery,
}

/// Identity of a task, for introspection. (Its name, which few tasks have, is kept in the
/// node's extras: see [`Node::task_name`].)
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TaskInfo {
    pub(crate) id: u64,
    pub(crate) service: bool,
}

/// A [`NodeKind`] in one word, as a node keeps it: 8 bytes where the enum takes 16 (an idle
/// task's size is a benchmarked figure). The two low bits say which kind; a task's word holds
/// its service flag in bit 2 and its id in the 61 bits above.
#[derive(Clone, Copy)]
struct PackedKind(u64);

impl PackedKind {
    const ROOT: u64 = 0;
    const SCOPE: u64 = 1;
    const NURSERY: u64 = 2;
    const TASK: u64 = 3;

    /// Task ids are counted from 0 by a runtime: one past this, 2^61 spawns later (decades at
    /// a billion a second), they would start again from 0 in what introspection shows.
    const ID_BITS: u64 = u64::MAX >> 3;

    #[inline]
    fn new(kind: NodeKind) -> PackedKind {
        match kind {
            NodeKind::Root => PackedKind(Self::ROOT),
            NodeKind::Scope => PackedKind(Self::SCOPE),
            NodeKind::Nursery => PackedKind(Self::NURSERY),
            NodeKind::Task(info) => PackedKind::task(info),
        }
    }

    /// A task's word, with no branch (see [`Node::in_cell`]).
    #[inline(always)]
    fn task(info: TaskInfo) -> PackedKind {
        PackedKind((info.id & Self::ID_BITS) << 3 | u64::from(info.service) << 2 | Self::TASK)
    }

    #[inline]
    fn get(self) -> NodeKind {
        match self.0 & 3 {
            Self::ROOT => NodeKind::Root,
            Self::SCOPE => NodeKind::Scope,
            Self::NURSERY => NodeKind::Nursery,
            _ => NodeKind::Task(TaskInfo {
                id: self.0 >> 3,
                service: self.0 & 4 != 0,
            }),
        }
    }
}

pub(crate) struct Node {
    /// How the node is counted and torn down (see [`NodeOps`]).
    ops: &'static NodeOps,
    kind: PackedKind,
    /// The node's cancel state, readable without its lock: whether a checkpoint inside it fails,
    /// whether that comes from its parent, and why its own cancel was called (see
    /// [`CancelBits`]). Written only under the node's lock; see the module comment for who
    /// writes what.
    cancel: CancelBits,
    /// The last poll of the code this node owns (a task's future, a scope's or nursery's body)
    /// returned `Pending` with no trellis operation parked or yielding in it: it waits where
    /// cancellation cannot reach (contract B1). Written by the owner after each poll.
    foreign_wait: AtomicBool,
    /// The grace period of a cancellation that reaches this node ran out (B3): its owner drops
    /// what is left. Set under `TREE_LOCK`, never cleared.
    forced: AtomicBool,
    /// Operations parked here through the owner waker (see [`NodeState::owner`]): they hold no slot,
    /// so this count is what tells a trellis wait from a foreign one below a cancelled node (B1).
    owner_parked: AtomicU32,
    /// Identity (`Waker::data`) of the owner waker, 0 while there is none: read without the lock
    /// by an operation about to park. Also the owner waker's data half (see [`NodeState::owner`]).
    owner_id: AtomicUsize,
    /// Guards `state`: a byte of the node's own, in what would be padding beside the flags,
    /// where `std`'s mutex took 8 bytes more (see `state_lock::ByteLock`).
    lock: ByteLock,
    state: UnsafeCell<NodeState>,
}

// SAFETY: `state`, the one field that is not `Sync` of itself, is only reached under `lock`
// (`Node::lock`, `try_lock`) or through `&mut Node`.
unsafe impl Sync for Node {}

/// A [`CancelReason`] in three bits (see [`CancelBits`]): the reasons without a payload have a
/// variant each; an explicit cancel with a message has one, the message kept in the extras.
/// Numbered from 1: 0 is "not called".
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
enum ReasonTag {
    Explicit = 1,
    /// Explicit, with a message in the extras.
    ExplicitWithMessage,
    Deadline,
    Nursery,
    ServiceDone,
    Shutdown,
    Interrupted,
}

impl ReasonTag {
    /// The tag of `reason`, and its message if it has one.
    fn of(reason: CancelReason) -> (ReasonTag, Option<Arc<str>>) {
        match reason {
            CancelReason::Explicit(None) => (Self::Explicit, None),
            CancelReason::Explicit(Some(message)) => (Self::ExplicitWithMessage, Some(message)),
            CancelReason::Deadline => (Self::Deadline, None),
            CancelReason::Nursery => (Self::Nursery, None),
            CancelReason::ServiceDone => (Self::ServiceDone, None),
            CancelReason::Shutdown => (Self::Shutdown, None),
            CancelReason::Interrupted => (Self::Interrupted, None),
        }
    }

    /// The tag numbered `n`; `None` for 0.
    fn from_number(n: u8) -> Option<ReasonTag> {
        Some(match n {
            0 => return None,
            1 => Self::Explicit,
            2 => Self::ExplicitWithMessage,
            3 => Self::Deadline,
            4 => Self::Nursery,
            5 => Self::ServiceDone,
            6 => Self::Shutdown,
            _ => Self::Interrupted,
        })
    }

    /// The reason this tags, `message` being the extras' message.
    fn reason(self, message: Option<&Arc<str>>) -> CancelReason {
        match self {
            Self::Explicit => CancelReason::Explicit(None),
            Self::ExplicitWithMessage => CancelReason::Explicit(message.cloned()),
            Self::Deadline => CancelReason::Deadline,
            Self::Nursery => CancelReason::Nursery,
            Self::ServiceDone => CancelReason::ServiceDone,
            Self::Shutdown => CancelReason::Shutdown,
            Self::Interrupted => CancelReason::Interrupted,
        }
    }
}

/// A node's cancel state in one atomic byte: bit 0, a checkpoint inside the node fails
/// ("effectively cancelled": its own cancel was called, or its parent is effectively cancelled
/// and it is not shielded); bit 1, the second half of that holds; bits 2 to 4, the
/// [`ReasonTag`] of its own cancel, 0 while it was not called (C8: set once, the first reason
/// wins). Readable without the node's lock, so that the error of a cancelled checkpoint finds
/// the scope that absorbs it without locking the nodes above (see [`cancelled_error`]); every
/// write is made under the node's lock, so a write can read the byte and store it whole.
struct CancelBits(AtomicU8);

impl CancelBits {
    const EFFECTIVE: u8 = 1;
    const THROUGH_PARENT: u8 = 2;
    const REASON_SHIFT: u32 = 2;

    const fn new() -> CancelBits {
        CancelBits(AtomicU8::new(0))
    }

    /// Does a checkpoint inside the node fail? `order` is `SeqCst` where the read pairs with
    /// a count (see [`Node::park_owner`]).
    #[inline]
    fn effective(&self, order: Ordering) -> bool {
        self.0.load(order) & Self::EFFECTIVE != 0
    }

    /// Is the node effectively cancelled through its parent (not shielded, parent cancelled)?
    #[inline]
    fn through_parent(&self) -> bool {
        self.0.load(Ordering::Acquire) & Self::THROUGH_PARENT != 0
    }

    /// Why the node's own cancel was called, if it was.
    #[inline]
    fn reason(&self) -> Option<ReasonTag> {
        ReasonTag::from_number(self.0.load(Ordering::Acquire) >> Self::REASON_SHIFT)
    }

    /// Records the reason of the node's own cancel (under its lock; it was not called before).
    fn set_reason(&self, tag: ReasonTag) {
        self.0
            .fetch_or((tag as u8) << Self::REASON_SHIFT, Ordering::Release);
    }

    /// Sets whether the node is cancelled through its parent (under the node's lock), and so
    /// whether it is effectively cancelled; returns that flag's previous and new values.
    /// `SeqCst`: paired with `park_owner`'s count and check.
    #[inline]
    fn set_through_parent(&self, through_parent: bool) -> (bool, bool) {
        let reason = self.0.load(Ordering::Relaxed) & !(Self::EFFECTIVE | Self::THROUGH_PARENT);
        let effective = reason != 0 || through_parent;
        let bits = reason
            | if effective { Self::EFFECTIVE } else { 0 }
            | if through_parent {
                Self::THROUGH_PARENT
            } else {
                0
            };
        let was = self.0.swap(bits, Ordering::SeqCst) & Self::EFFECTIVE != 0;
        (was, effective)
    }

    /// Back to a fresh node's state, through `&mut`.
    fn reset(&mut self) {
        *self.0.get_mut() = 0;
    }
}

/// Whether an operation may park through a node's owner waker.
pub(crate) enum OwnerPark {
    /// It may: the node's owner waker wakes it.
    Parked,
    /// The node is cancelled: the operation fails instead.
    Cancelled,
    /// Another task's waker is the node's owner waker: register on its own.
    Taken,
}

/// A node's locked state. (A field that owns something is also checked by
/// [`Node::holds_nothing`], which lets a finished task's cell skip dropping the node; a field
/// that is a plain value is also reset by [`Node::reset_empty`], as are the node's own.)
pub(crate) struct NodeState {
    parent: Option<NodeRef>,
    /// Our key in the parent's `children`, while linked.
    slot: Option<ChildKey>,
    /// The vtable half of the owner waker, whose data half is the node's `owner_id`: together
    /// they are a clone of the owner's waker that the node owns (one count of the owner task),
    /// taken apart because the identity must be readable without the lock, and a whole waker
    /// beside it would repeat the data pointer (8 bytes more in every node; an idle task's size
    /// is a benchmarked figure). Some exactly while `owner_id` is not 0; put together again by
    /// [`Node::owner_waker`] and [`Node::take_owner`], and given back by the node's drop. (See
    /// [`WaiterSlots`] for how operations park.)
    owner: Option<&'static RawWakerVTable>,
    pub(crate) shield: bool,
    /// No new task children (a finished nursery, N5).
    pub(crate) closed: bool,
    pub(crate) entered: bool,
    /// Children, waiter slots, extras and a task's inherited task-locals, allocated on first
    /// use (see [`More`]).
    more: Option<Box<More>>,
}

/// What a node has only once it needs it, behind one pointer: a plain task never gets a
/// child, a waiter slot or an extra, and an idle task's size is a benchmarked figure (three
/// pointers in every node, where one is enough). The child list is inline: a node that gets
/// one child usually gets more (a nursery, a task with a timeout inside), and a second box
/// would be a second allocation for it; the rarer parts stay boxed, so that the box stays
/// small: 64 bytes, an 80-byte `malloc` block where the child list alone took a 64-byte one
/// (with a second allocation for its vacancies), which the node's 24 bytes less make up.
#[derive(Default)]
struct More {
    children: ChildList,
    waiters: WaiterSlots,
    extras: Option<Box<Extras>>,
    /// The task-locals a task inherited from the code that spawned it (see `task::local`):
    /// here rather than in every task's cell (8 bytes of every task), and not among the
    /// extras, which would make such a task take their whole box too. Inline: such a task
    /// makes one allocation for them, this box, as it made one for the chain's own box when
    /// the cell held it (a second one cost a spawn about 400 instructions more).
    locals: Option<Chain>,
}

#[derive(Default)]
struct Extras {
    /// The message of an explicit cancel that gave one (see [`ReasonTag`]).
    cancel_message: Option<Arc<str>>,
    /// The owner's waker while its code is in a foreign wait: woken when the node becomes
    /// cancelled, or a task leaves it while it is cancelled, so the owner can end the wait (B1).
    foreign: Option<Waker>,
    /// A nursery's owner waiting for its tasks: woken when the number of non-service task
    /// children drops (kept here, not in every task's node: only nurseries that wait need it).
    exit_waker: Option<Waker>,
    /// The node's own grace period (B3); `None`: the runtime's default applies.
    grace_period: Option<Duration>,
    /// The timer that ends the grace period, once the node is cancelled.
    grace_timer: Option<TimerKey>,
    /// What a waiter registered here waits in, kept only where deadlock detection is on, for
    /// its report.
    waiting: Option<WaitLabel>,
    /// A task's name, given with `spawn_named`. Here rather than in every task's node: an idle
    /// task's size is a benchmarked figure, and only named tasks pay for the extras.
    name: Option<Arc<str>>,
    /// The runtime, in the root's node only (see [`PlainNode::root`]).
    runtime: Option<Weak<Shared>>,
}

/// What a scope, a nursery or the root keeps that a task's node never needs: fields that every
/// task would otherwise carry (an idle task's size is a benchmarked figure).
#[derive(Default)]
pub(crate) struct PlainFields {
    /// Number of task children, and how many of them are services (N12). Counted in every
    /// plain node; only a nursery reads them. (A task started with `start` sits under its
    /// caller's node until it is started, and a task's node does not count it.)
    pub(crate) tasks: u32,
    pub(crate) services: u32,
    /// `start` calls in flight that will add a task (N9: keeps a nursery open).
    pub(crate) pending_starts: u32,
    pub(crate) deadline: Option<Instant>,
    /// The timer entry of `deadline` while the node is linked. Its store is the runtime at the
    /// root of this node's tree (see `runtime_of`), so only the key is kept.
    armed: Option<TimerKey>,
    /// A scope's body ended with the scope's own cancellation, which the scope absorbed (C3).
    pub(crate) cancelled_caught: bool,
    /// The deadline's timer is deferred: the scope is linked with a deadline to come but
    /// `armed` is empty until its owner's code waits (see [`enter_scope`]).
    deferred: bool,
}

/// A plain node (scope, nursery, root, or the main task's) in its `Arc`: the node, then the
/// fields only plain nodes have. `repr(C)` with the node first, so a [`NodeRef`] to the node
/// is a pointer to the whole.
#[repr(C)]
pub(crate) struct PlainNode {
    node: Node,
    /// Reached only through [`Locked::plain`], under the node's lock.
    fields: UnsafeCell<PlainFields>,
}

// SAFETY: `fields` is only touched under the node's lock (see `Locked::plain`); the rest is
// `Node`, which is `Send + Sync`.
unsafe impl Send for PlainNode {}
// SAFETY: as above.
unsafe impl Sync for PlainNode {}

impl PlainNode {
    /// A plain node in an `Arc` of its own.
    pub(crate) fn new(kind: NodeKind) -> Arc<PlainNode> {
        PlainNode::with_deadline(kind, None)
    }

    /// The root of a runtime's tree, which knows its runtime.
    pub(crate) fn root(rt: &Arc<Shared>) -> Arc<PlainNode> {
        let root = PlainNode::new(NodeKind::Root);
        root.node.lock().extras().runtime = Some(Arc::downgrade(rt));
        root
    }

    /// The node of a runtime's main task (`block_on`'s future): a plain node, task 0, named
    /// "main".
    pub(crate) fn main_task() -> Arc<PlainNode> {
        let mut main = PlainNode::new(NodeKind::Task(TaskInfo {
            id: 0,
            service: false,
        }));
        Arc::get_mut(&mut main)
            .expect("a node just made has no other reference")
            .node
            .name_task("main".into());
        main
    }

    /// A plain node with its deadline already set: a timed scope is made on every
    /// `move_on_after`, and setting the deadline afterwards would cost a lock pass.
    pub(crate) fn with_deadline(kind: NodeKind, deadline: Option<Instant>) -> Arc<PlainNode> {
        Arc::new(PlainNode {
            node: Node::with_ops(&PLAIN, PackedKind::new(kind)),
            fields: UnsafeCell::new(PlainFields {
                deadline,
                ..PlainFields::default()
            }),
        })
    }

    /// Makes a plain node a fresh scope node with `deadline`, for reuse (see `scope::spare`),
    /// if nothing else refers to it; says whether it did. What the old node held is dropped here.
    /// Inline: every timeout's exit calls it (left to the compiler, it was sometimes a call).
    #[inline]
    pub(crate) fn reset_if_unshared(plain: &mut Arc<PlainNode>, deadline: Option<Instant>) -> bool {
        let Some(this) = Arc::get_mut(plain) else {
            return false;
        };
        let scope = PackedKind::new(NodeKind::Scope);
        if this.node.holds_nothing() {
            this.node.reset_empty(scope);
        } else {
            this.node = Node::with_ops(&PLAIN, scope);
        }
        // Field by field, for the reason given at `reset_empty`.
        let fields = this.fields.get_mut();
        fields.tasks = 0;
        fields.services = 0;
        fields.pending_starts = 0;
        fields.deadline = deadline;
        fields.armed = None;
        fields.cancelled_caught = false;
        fields.deferred = false;
        true
    }

    /// Sets the deadline of a plain node nothing else refers to (a reused one), without locking.
    pub(crate) fn set_unshared_deadline(&mut self, deadline: Option<Instant>) {
        self.fields.get_mut().deadline = deadline;
    }

    /// Locks the node; its state comes with the fields beside it.
    #[inline]
    pub(crate) fn lock(&self) -> Locked<'_> {
        Locked {
            state: self.node.lock(),
            plain: NonNull::new(self.fields.get()),
        }
    }
}

impl std::ops::Deref for PlainNode {
    type Target = Node;

    #[inline]
    fn deref(&self) -> &Node {
        &self.node
    }
}

impl TreeNode for PlainNode {
    fn node(&self) -> &Node {
        &self.node
    }

    #[inline]
    fn lock(&self) -> Locked<'_> {
        PlainNode::lock(self)
    }
}

/// A node's state under its lock, with the fields beside the node if it is a plain one (see
/// [`PlainNode`]). Made only by [`NodeRef::lock`] and [`PlainNode::lock`]: their pointers cover
/// the whole container, where a `&Node` covers the node alone. So the state needs no pointer to
/// the fields, 8 bytes that every task's node would carry for nothing (an idle task's size is
/// a benchmarked figure).
pub(crate) struct Locked<'a> {
    state: ByteGuard<'a, NodeState>,
    /// The fields beside the node, `None` for a task's node. Points into the container the
    /// guard's node lives in, which outlives the guard.
    plain: Option<NonNull<PlainFields>>,
}

impl std::ops::Deref for Locked<'_> {
    type Target = NodeState;

    #[inline]
    fn deref(&self) -> &NodeState {
        &self.state
    }
}

impl std::ops::DerefMut for Locked<'_> {
    #[inline]
    fn deref_mut(&mut self) -> &mut NodeState {
        &mut self.state
    }
}

impl<'a> Locked<'a> {
    /// Locks a task's node, which has no fields beside it.
    #[inline]
    pub(crate) fn task(node: &'a Node) -> Locked<'a> {
        debug_assert!(!node.is_plain(), "a task's node is not plain");
        Locked {
            state: node.lock(),
            plain: None,
        }
    }

    /// The fields only plain nodes have; `None` in a task's node.
    #[inline]
    pub(crate) fn plain(&mut self) -> Option<&mut PlainFields> {
        // SAFETY: `plain` points at the fields beside this node in its `PlainNode`, made from a
        // pointer to the whole container, which lives as long as the node; they are only
        // reached through a `Locked`, so under the node's lock, which `self` holds, and `&mut
        // self` makes this the only reference made through it now.
        self.plain.map(|p| unsafe { &mut *p.as_ptr() })
    }

    /// [`plain`](Self::plain), to read.
    #[inline]
    pub(crate) fn plain_ref(&self) -> Option<&PlainFields> {
        // SAFETY: as in `plain`; `&self` allows no `plain` borrow at the same time.
        self.plain.map(|p| unsafe { &*p.as_ptr() })
    }

    /// The fields of a nursery's node, which is always plain.
    pub(crate) fn nursery(&mut self) -> &mut PlainFields {
        self.plain().expect("a nursery's node is a plain node")
    }

    /// The node's deadline (a task's node has none).
    pub(crate) fn deadline(&self) -> Option<Instant> {
        self.plain_ref().and_then(|f| f.deadline)
    }

    fn armed(&self) -> bool {
        self.plain_ref().is_some_and(|f| f.armed.is_some())
    }

    fn take_armed(&mut self) -> Option<TimerKey> {
        self.plain().and_then(|f| f.armed.take())
    }
}

impl NodeState {
    #[inline]
    fn more(&mut self) -> &mut More {
        self.more.get_or_insert_with(Default::default)
    }

    fn extras(&mut self) -> &mut Extras {
        self.more().extras.get_or_insert_with(Default::default)
    }

    #[inline]
    fn extras_ref(&self) -> Option<&Extras> {
        self.more.as_ref()?.extras.as_deref()
    }

    #[inline]
    fn extras_mut(&mut self) -> Option<&mut Extras> {
        self.more.as_mut()?.extras.as_deref_mut()
    }

    /// The child list, if the node ever had a child.
    #[inline]
    fn child_list(&self) -> Option<&ChildList> {
        self.more
            .as_ref()
            .map(|m| &m.children)
            .filter(|list| !list.slots.is_empty())
    }

    /// The children, in slot order.
    fn children(&self) -> impl DoubleEndedIterator<Item = &NodeRef> {
        self.child_list().into_iter().flat_map(ChildList::iter)
    }

    #[inline]
    fn insert_child(&mut self, child: NodeRef) -> ChildKey {
        self.more().children.insert(child)
    }

    #[inline]
    fn remove_child(&mut self, key: ChildKey) {
        if let Some(more) = &mut self.more {
            more.children.remove(key);
        }
    }

    fn child(&self, key: ChildKey) -> Option<&NodeRef> {
        self.more.as_ref()?.children.get(key)
    }

    /// The wakers in waiter slots.
    fn slot_wakers(&self) -> impl Iterator<Item = &Waker> {
        self.more.iter().flat_map(|m| m.waiters.iter())
    }

    /// Is any operation waiting in a slot?
    #[inline]
    fn any_waiter_slot(&self) -> bool {
        self.more.as_ref().is_some_and(|m| m.waiters.any_slot())
    }

    /// The message of an explicit cancel that gave one.
    fn cancel_message(&self) -> Option<&Arc<str>> {
        self.extras_ref().and_then(|e| e.cancel_message.as_ref())
    }

    /// The name of the task this node is, if it was given one.
    pub(crate) fn task_name(&self) -> Option<&Arc<str>> {
        self.extras_ref().and_then(|e| e.name.as_ref())
    }

    /// The nursery owner's waker, if it waits for its tasks.
    pub(crate) fn take_exit_waker(&mut self) -> Option<Waker> {
        self.extras_mut().and_then(|e| e.exit_waker.take())
    }

    /// The nursery's owner waits for its tasks, with `waker`.
    pub(crate) fn set_exit_waker(&mut self, waker: &Waker) {
        match &mut self.extras().exit_waker {
            Some(w) if w.will_wake(waker) => {}
            slot => *slot = Some(waker.clone()),
        }
    }

    fn take_foreign(&mut self) -> Option<Waker> {
        self.extras_mut().and_then(|e| e.foreign.take())
    }

    fn grace_period(&self) -> Option<Duration> {
        self.extras_ref().and_then(|e| e.grace_period)
    }

    fn take_grace_timer(&mut self) -> Option<TimerKey> {
        self.extras_mut().and_then(|e| e.grace_timer.take())
    }
}

/// The child list: a slot per child, 8 bytes each (a slab's entries, which hold a child or a
/// vacancy's link, take 16, and a nursery's list holds a slot per live task). A vacant slot
/// holds the index of the next vacant one (see [`Slot`]), so the vacancies, filled first
/// (newest first, as a slab does), need no list of their own: 32 bytes in the box behind the
/// node's one pointer, where a second vector made them 48 and the box, which every node with a
/// child has, a 96-byte `malloc` block instead of 80, with the vector's buffer a second
/// allocation. Like a slab's, its room is that of the most children it held at once.
struct ChildList {
    slots: Vec<Slot>,
    /// The newest vacant slot's index; [`NO_VACANCY`] if none is.
    vacant: u32,
}

/// What [`ChildList::vacant`] and a vacancy's link hold where there is no vacant slot (more).
const NO_VACANCY: u32 = u32::MAX;

/// The most children a list holds: an index is below [`NO_VACANCY`], and a vacancy's link
/// (`index << 1 | 1`) fits a word.
const MAX_CHILDREN: usize = if (u32::MAX as usize) < usize::MAX >> 1 {
    u32::MAX as usize
} else {
    usize::MAX >> 1
};

/// One slot of a [`ChildList`]: a child's reference, or, while vacant, the index of the next
/// vacant slot as an odd word (`index << 1 | 1`). A reference is a node's address, which is
/// even (a node is aligned to 8), so the low bit says which the slot holds.
union Slot {
    child: ManuallyDrop<NodeRef>,
    link: usize,
}

impl Slot {
    fn vacant(next: u32) -> Slot {
        Slot {
            link: (next as usize) << 1 | 1,
        }
    }

    /// The child in this slot, `None` if it is vacant.
    #[inline]
    fn child(&self) -> Option<&NodeRef> {
        // SAFETY: either field is one initialised word; read as an integer, a reference is its
        // address, whose low bit is 0 (nodes are aligned to 8), and a vacancy's link has it 1.
        if unsafe { self.link } & 1 == 0 {
            // SAFETY: the low bit is 0: the slot holds a child.
            Some(unsafe { &self.child })
        } else {
            None
        }
    }

    /// The next vacancy's index, for a vacant slot.
    fn next_vacancy(&self) -> u32 {
        // SAFETY: as in `child`; the caller knows the slot to be vacant, so the word is a link
        // made by `vacant` from a `u32`.
        (unsafe { self.link } >> 1) as u32
    }
}

/// A child's key in its parent's `Children`: 32 bits, and never zero, so that a node's
/// `Option<ChildKey>` takes 4 bytes (an idle task's size is a benchmarked figure, and no scope
/// holds 4 billion children).
#[derive(Clone, Copy)]
struct ChildKey(NonZeroU32);

impl ChildKey {
    fn index(self) -> usize {
        self.0.get() as usize - 1
    }
}

impl Default for ChildList {
    fn default() -> ChildList {
        ChildList {
            slots: Vec::new(),
            vacant: NO_VACANCY,
        }
    }
}

impl ChildList {
    #[inline]
    fn insert(&mut self, child: NodeRef) -> ChildKey {
        let slot = Slot {
            child: ManuallyDrop::new(child),
        };
        let index = if self.vacant != NO_VACANCY {
            let index = self.vacant;
            let vacant = &mut self.slots[index as usize];
            self.vacant = vacant.next_vacancy();
            // A `Slot` has no drop glue: the vacancy's link is overwritten, nothing dropped.
            *vacant = slot;
            index
        } else {
            let index = self.slots.len();
            assert!(
                index < MAX_CHILDREN,
                "over {MAX_CHILDREN} children in one scope"
            );
            self.slots.push(slot);
            index as u32
        };
        ChildKey(NonZeroU32::new(index + 1).expect("index below u32::MAX"))
    }

    fn get(&self, key: ChildKey) -> Option<&NodeRef> {
        self.slots.get(key.index()).and_then(Slot::child)
    }

    /// Forgets the child at `key` (nothing if it has gone already).
    #[inline]
    fn remove(&mut self, key: ChildKey) {
        let index = key.index();
        let Some(slot) = self.slots.get_mut(index) else {
            return;
        };
        if slot.child().is_none() {
            return;
        }
        let left = std::mem::replace(slot, Slot::vacant(self.vacant));
        // Below `MAX_CHILDREN`, so below `u32::MAX`: it was made from a `u32`.
        self.vacant = index as u32;
        // SAFETY: the slot held a child (checked above), whose reference is dropped once, here.
        drop(ManuallyDrop::into_inner(unsafe { left.child }));
    }

    fn iter(&self) -> impl DoubleEndedIterator<Item = &NodeRef> {
        self.slots.iter().filter_map(Slot::child)
    }
}

impl Drop for ChildList {
    fn drop(&mut self) {
        for slot in &mut self.slots {
            if slot.child().is_some() {
                // SAFETY: the slot holds a child, dropped once, here, as the list goes.
                unsafe { ManuallyDrop::drop(&mut slot.child) }
            }
        }
    }
}

/// Wakers of operations blocked in a node, other than its owner's.
///
/// The owner waker (see [`NodeState::owner`]) is the waker of the task whose code runs in the
/// node, kept from the first time one of its operations parks here until the node is
/// unlinked: an operation parked with that waker (the usual case: a task waiting in its own
/// code) only counts itself in the node's `owner_parked`, with no slot, no waker clone and no
/// lock. A cancellation wakes the owner, which polls its operations again; each sees the
/// cancellation at its checkpoint. Operations with another waker (polled by a foreign
/// combinator that gives each future its own) register that waker in a slot, allocated on
/// first use.
#[derive(Default)]
struct WaiterSlots(Option<Box<Slab<Waker>>>);

impl WaiterSlots {
    fn insert(&mut self, waker: &Waker) -> usize {
        self.0
            .get_or_insert_with(Default::default)
            .insert(waker.clone())
    }

    fn get_mut(&mut self, key: usize) -> Option<&mut Waker> {
        self.0.as_mut().and_then(|slab| slab.get_mut(key))
    }

    fn remove(&mut self, key: usize) {
        if let Some(slab) = &mut self.0 {
            if slab.contains(key) {
                slab.remove(key);
            }
        }
    }

    /// The wakers in slots.
    fn iter(&self) -> impl Iterator<Item = &Waker> {
        self.0.iter().flat_map(|slab| slab.iter().map(|(_, w)| w))
    }

    fn any_slot(&self) -> bool {
        self.0.as_ref().is_some_and(|slab| !slab.is_empty())
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        // The owner waker is kept in halves (see `NodeState::owner`), which no field's drop
        // frees on its own.
        let Node {
            state, owner_id, ..
        } = self;
        drop(take_owner_halves(owner_id, state.get_mut()));
    }
}

/// Takes the owner waker out of its two halves (see `NodeState::owner`), clearing both: the
/// node's count of it goes to the caller. Under the node's lock (or with the node owned).
#[inline]
fn take_owner_halves(owner_id: &AtomicUsize, s: &mut NodeState) -> Option<Waker> {
    let vtable = s.owner.take()?;
    let data = owner_id.swap(0, Ordering::Release);
    // SAFETY: `data` and `vtable` are the halves of the waker clone the node owns, and both are
    // cleared, so its count is handed over exactly once.
    Some(unsafe { Waker::new(data as *const (), vtable) })
}

impl Node {
    /// The node of a task cell, which counts its references and tears its task down with
    /// `ops`. A plain value, with no branch (the name, if any, is set once the node is in
    /// place: [`name_task`](Self::name_task)), so that it is built where the cell is: a node
    /// built aside and then moved costs every spawn a copy, and stalls on reading back the
    /// small fields just written.
    #[inline]
    pub(crate) fn in_cell(ops: &'static NodeOps, info: TaskInfo) -> Node {
        Node::with_ops(ops, PackedKind::task(info))
    }

    /// Makes a node that holds nothing ([`holds_nothing`](Self::holds_nothing)) and that
    /// nothing else refers to a fresh node of `kind`, in place: only its plain values are
    /// written. A reused scope node is reset so on every timeout; a fresh node built aside and
    /// written over it was copied in pieces whose read-back stalled (a measured hot spot), and
    /// an assignment would also run the drop glue over the emptied parts.
    fn reset_empty(&mut self, kind: PackedKind) {
        debug_assert!(self.holds_nothing(), "only plain values are reset");
        self.kind = kind;
        self.cancel.reset();
        *self.foreign_wait.get_mut() = false;
        *self.forced.get_mut() = false;
        *self.owner_parked.get_mut() = 0;
        *self.owner_id.get_mut() = 0;
        let s = self.state_mut();
        s.slot = None;
        s.shield = false;
        s.closed = false;
        s.entered = false;
    }

    /// Names a task's node (a spawned task's, or the main task's) before anything else can
    /// reach it, so without its lock. Out of line: few tasks are named.
    #[cold]
    #[inline(never)]
    pub(crate) fn name_task(&mut self, name: Arc<str>) {
        self.state_mut().extras().name = Some(name);
    }

    /// Gives a task's node the task-locals its task inherited, before anything else can reach
    /// the node, so without its lock. Out of line: few tasks inherit any.
    #[cold]
    #[inline(never)]
    pub(crate) fn inherit_locals(&mut self, chain: Chain) {
        self.state_mut().more().locals = Some(chain);
    }

    /// The task-locals given with [`inherit_locals`](Self::inherit_locals): a copy (one count).
    #[cold]
    #[inline(never)]
    pub(crate) fn inherited_locals(&self) -> Option<Chain> {
        self.lock().more.as_ref()?.locals.clone()
    }

    #[inline]
    fn with_ops(ops: &'static NodeOps, kind: PackedKind) -> Node {
        Node {
            ops,
            kind,
            cancel: CancelBits::new(),
            foreign_wait: AtomicBool::new(false),
            forced: AtomicBool::new(false),
            owner_parked: AtomicU32::new(0),
            owner_id: AtomicUsize::new(0),
            lock: ByteLock::new(),
            state: UnsafeCell::new(NodeState {
                parent: None,
                slot: None,
                owner: None,
                shield: false,
                closed: false,
                entered: false,
                more: None,
            }),
        }
    }

    /// Does this node own nothing that its drop would free: no parent, children, waiters or
    /// extras (the root's are never empty)? True of a task's node once the task is unlinked
    /// and of a scope's once it has exited, in the common case: a task's cell then skips the
    /// node's drop glue (four calls that would each find nothing), and a scope node kept for
    /// reuse is reset in place. (A field added to [`NodeState`] that owns something must be
    /// checked here.)
    #[inline]
    pub(crate) fn holds_nothing(&mut self) -> bool {
        let s = self.state_mut();
        s.parent.is_none() && s.owner.is_none() && s.more.is_none()
    }

    /// Is this the node of a [`PlainNode`] (a scope, nursery, root, or the main task's), with
    /// the plain fields beside it? Its operations say so.
    #[inline]
    fn is_plain(&self) -> bool {
        std::ptr::eq(self.ops, &PLAIN)
    }

    #[inline]
    pub(crate) fn kind(&self) -> NodeKind {
        self.kind.get()
    }

    /// Spins a little before it blocks: a nursery's node is taken by the worker that spawns
    /// and by those whose tasks exit (see `state_lock`).
    #[inline]
    pub(crate) fn lock(&self) -> ByteGuard<'_, NodeState> {
        // SAFETY: `lock` guards `state`: every access to it goes through here, `try_lock` or
        // `&mut self`.
        unsafe { self.lock.lock_data(&self.state) }
    }

    /// [`lock`](Self::lock) if the lock is free.
    #[inline]
    fn try_lock(&self) -> Option<ByteGuard<'_, NodeState>> {
        // SAFETY: as in `lock`.
        unsafe { self.lock.try_lock_data(&self.state) }
    }

    /// The state of a node nothing else refers to yet, without locking.
    fn state_mut(&mut self) -> &mut NodeState {
        self.state.get_mut()
    }

    /// Does a checkpoint inside this node fail?
    #[inline]
    pub(crate) fn is_cancelled(&self) -> bool {
        self.cancel.effective(Ordering::Acquire)
    }

    /// Was the node's own cancel called? Needs no lock: the answer, once yes, stays yes.
    #[inline]
    pub(crate) fn cancel_called(&self) -> bool {
        self.cancel.reason().is_some()
    }

    /// Why the node's own cancel was called, if it was; `s` is the node's state, for the
    /// message of an explicit cancel that gave one.
    pub(crate) fn reason(&self, s: &NodeState) -> Option<CancelReason> {
        let tag = self.cancel.reason()?;
        Some(tag.reason(s.cancel_message()))
    }

    /// Records why the node's own cancel was called (once: it was not before); `s` is the
    /// node's locked state.
    fn set_reason(&self, s: &mut NodeState, reason: CancelReason) {
        let (tag, message) = ReasonTag::of(reason);
        if message.is_some() {
            s.extras().cancel_message = message;
        }
        self.cancel.set_reason(tag);
    }

    pub(crate) fn parent(&self) -> Option<NodeRef> {
        self.lock().parent.clone()
    }

    /// The name of the task this node is, if it was given one.
    pub(crate) fn task_name(&self) -> Option<Arc<str>> {
        self.lock().task_name().cloned()
    }

    /// The id of a task's node, read without decoding the kind: a task's cell, whose node is
    /// always a task's, reads it on every poll.
    #[inline]
    pub(crate) fn task_id(&self) -> u64 {
        debug_assert!(matches!(self.kind(), NodeKind::Task(_)), "a task's node");
        self.kind.0 >> 3
    }

    #[inline]
    pub(crate) fn task_info(&self) -> Option<TaskInfo> {
        match self.kind() {
            NodeKind::Task(info) => Some(info),
            _ => None,
        }
    }

    /// The children, snapshotted.
    pub(crate) fn children(&self) -> Vec<NodeRef> {
        self.lock().children().cloned().collect()
    }

    /// Registers the waker of an operation blocked in this node. Returns the key, or `None` if
    /// the node is already cancelled (the operation must fail instead of blocking).
    pub(crate) fn add_waiter(&self, waker: &Waker) -> Option<usize> {
        let mut state = self.lock();
        if self.is_cancelled() {
            return None;
        }
        Some(state.more().waiters.insert(waker))
    }

    /// An operation of the task whose waker has identity `id` parks here through the owner
    /// waker (see [`WaiterSlots`]), making `waker` the owner waker if there is none yet. On
    /// `Parked` the caller has been counted in `owner_parked`, and must uncount itself with
    /// [`unpark_owner`](Self::unpark_owner) when it stops waiting.
    #[inline]
    pub(crate) fn park_owner(&self, waker: &Waker, id: usize) -> OwnerPark {
        let owner = self.owner_id.load(Ordering::Acquire);
        if owner != id {
            if owner != 0 {
                return OwnerPark::Taken;
            }
            match self.set_owner(waker, id) {
                OwnerPark::Parked => {}
                other => return other,
            }
        }
        // Counted before the check, which a cancellation's wake-up follows: either the check
        // sees the cancellation, or the cancellation sees the owner waker (stored earlier,
        // under the node's lock) and wakes it.
        self.owner_parked.fetch_add(1, Ordering::SeqCst);
        if self.cancel.effective(Ordering::SeqCst) {
            self.unpark_owner();
            return OwnerPark::Cancelled;
        }
        OwnerPark::Parked
    }

    #[cold]
    #[inline(never)]
    fn set_owner(&self, waker: &Waker, id: usize) -> OwnerPark {
        let mut state = self.lock();
        if self.is_cancelled() {
            return OwnerPark::Cancelled;
        }
        match self.owner_id.load(Ordering::Acquire) {
            0 => {
                let owner = waker.clone();
                // Kept in halves keyed by its identity: a clone with another identity (no
                // `async-task` waker makes one) registers on its own instead.
                if owner.data() as usize != id {
                    return OwnerPark::Taken;
                }
                state.owner = Some(owner.vtable());
                self.owner_id.store(id, Ordering::Release);
                // Its count is the node's now, given back through the two halves.
                std::mem::forget(owner);
                OwnerPark::Parked
            }
            owner if owner == id => OwnerPark::Parked,
            _ => OwnerPark::Taken,
        }
    }

    /// Forgets the owner waker of a plain node leaving the tree: its owner is the task whose
    /// code entered it, which the node must not keep alive. A task cell's node keeps its own
    /// task's waker: it is the count of the task's allocation that the cell's references share
    /// (see [`own_task`](Self::own_task)), given back with the last of them, not as the node
    /// leaves the tree (those references may outlive that, a handle's for one).
    #[inline]
    fn take_owner(&self, s: &mut NodeState) -> Option<Waker> {
        if self.is_plain() {
            take_owner_halves(&self.owner_id, s)
        } else {
            None
        }
    }

    /// Makes `waker`, the waker of a task cell's own task, the owner waker of that cell's node
    /// for the node's life, before anything else can reach the node. It holds the count of the
    /// task's allocation that the cell's references share (see `task::ChildCell`), given back
    /// by [`take_own_task`](Self::take_own_task). Every operation of the task that parks here
    /// with the task's waker finds it in place (no lock taken to set it at the first wait).
    #[inline]
    pub(crate) fn own_task(&mut self, waker: Waker) {
        let waker = ManuallyDrop::new(waker);
        self.state_mut().owner = Some(waker.vtable());
        // Its count is the node's now, given back through the two halves.
        *self.owner_id.get_mut() = waker.data() as usize;
    }

    /// Takes back the waker given with [`own_task`](Self::own_task), with its count.
    ///
    /// # Safety
    /// Nothing else refers to the node: its cell's last reference is being given back.
    #[inline]
    pub(crate) unsafe fn take_own_task(&self) -> Option<Waker> {
        // SAFETY: no other reference to the node exists (the caller's contract), so none to its
        // state either.
        let s = unsafe { &mut *self.state.get() };
        take_owner_halves(&self.owner_id, s)
    }

    /// A new count of the owner waker, if there is one (for a wake-up once the lock is
    /// released). Under the node's lock.
    #[inline]
    fn owner_waker(&self, s: &NodeState) -> Option<Waker> {
        self.borrow_owner(s).map(|owner| Waker::clone(&owner))
    }

    /// Wakes the owner waker where it is, under the node's lock, without a clone.
    #[inline]
    fn wake_owner_by_ref(&self, s: &NodeState) {
        if let Some(owner) = self.borrow_owner(s) {
            owner.wake_by_ref();
        }
    }

    /// The owner waker put together from its halves, borrowed: the node keeps its count, so
    /// the result must not be dropped as a `Waker` (hence `ManuallyDrop`), and not outlive `s`.
    #[inline]
    fn borrow_owner(&self, s: &NodeState) -> Option<ManuallyDrop<Waker>> {
        let vtable = s.owner?;
        let data = self.owner_id.load(Ordering::Relaxed) as *const ();
        // SAFETY: under the node's lock, `data` and `vtable` are the halves of the waker clone
        // the node owns; it is only borrowed here (never dropped), to be cloned or woken
        // through its own vtable.
        Some(ManuallyDrop::new(unsafe { Waker::new(data, vtable) }))
    }

    /// Wakes the owner waker, if there is one (outside the node's lock).
    pub(crate) fn wake_owner(&self) {
        let owner = {
            let s = self.lock();
            self.owner_waker(&s)
        };
        if let Some(owner) = owner {
            owner.wake();
        }
    }

    /// The identity of the owner waker (`Waker::data`), 0 while there is none.
    #[inline]
    pub(crate) fn owner_id(&self) -> usize {
        self.owner_id.load(Ordering::Acquire)
    }

    /// An operation parked through [`park_owner`](Self::park_owner) stopped waiting.
    #[inline]
    pub(crate) fn unpark_owner(&self) {
        self.owner_parked.fetch_sub(1, Ordering::Release);
    }

    /// Does an operation wait here (parked through the owner waker or in a slot)? Under the
    /// node's lock.
    fn has_waiters(&self, s: &NodeState) -> bool {
        self.owner_parked.load(Ordering::Acquire) > 0 || s.any_waiter_slot()
    }

    /// Names what a waiter just registered here waits in, for the deadlock report (only where
    /// detection is on; out of line, off the common path).
    #[cold]
    #[inline(never)]
    pub(crate) fn label_waiting(&self, label: WaitLabel) {
        self.lock().extras().waiting = Some(label);
    }

    /// What the last labelled waiter registered here waits in, while it waits.
    pub(crate) fn waiting(&self) -> Option<WaitLabel> {
        self.lock().extras_ref().and_then(|x| x.waiting.clone())
    }

    /// The owner of this nursery node waits for its tasks to finish (the end of `nursery`).
    pub(crate) fn joining(&self) -> bool {
        self.lock()
            .extras_ref()
            .is_some_and(|e| e.exit_waker.is_some())
    }

    /// Refreshes the waker under `key` (the operation was polled again). Returns false if the node
    /// got cancelled meanwhile.
    pub(crate) fn update_waiter(&self, key: usize, waker: &Waker) -> bool {
        let mut state = self.lock();
        if let Some(w) = state.more.as_mut().and_then(|m| m.waiters.get_mut(key)) {
            if !w.will_wake(waker) {
                w.clone_from(waker);
            }
        }
        !self.is_cancelled()
    }

    pub(crate) fn remove_waiter(&self, key: usize) {
        let mut state = self.lock();
        if let Some(more) = &mut state.more {
            more.waiters.remove(key);
        }
        if crate::runtime::shared::any_deadlock_detection() {
            forget_waiting(&mut state);
        }
    }
}

impl TreeNode for NodeRef {
    fn node(&self) -> &Node {
        self
    }

    #[inline]
    fn lock(&self) -> Locked<'_> {
        NodeRef::lock(self)
    }
}

impl Node {
    /// Itself: code that holds a node, a [`NodeRef`] or a task cell reaches the node alike.
    #[inline]
    pub(crate) fn node(&self) -> &Node {
        self
    }

    /// How references to this node are counted.
    pub(crate) fn counter(&self) -> &'static Counter {
        &self.ops.counter
    }
}

/// Forgets the operation named by `Node::label_waiting` (its waiter left).
#[cold]
#[inline(never)]
fn forget_waiting(state: &mut NodeState) {
    if let Some(extras) = state.extras_mut() {
        extras.waiting = None;
    }
}

/// Is the node whose state this is linked into the tree (entered and not yet exited)?
pub(crate) fn is_linked(state: &NodeState) -> bool {
    state.slot.is_some()
}

/// Links `child` under `parent`, both references moving into the tree, and sets the child's
/// cached cancellation from the parent. `node` is the child's node, which the caller keeps
/// alive by other means for the call (the reference moves into the parent's list). Gives the
/// child's reference back, linking nothing, if `child` is a task and `parent` is closed.
pub(crate) fn link(parent: NodeRef, child: NodeRef, node: &Node) -> Result<(), NodeRef> {
    debug_assert!(std::ptr::eq(node, child.node()), "`node` is the child's");
    link_locked(parent, child, &mut node.lock())
}

/// [`link`] for a task's node that nothing else can reach yet (its task is neither queued nor
/// linked): its state is written without its lock, which a spawn took and gave back for
/// nothing. The caller's `&mut` proves the exclusive access; `child` is a reference to the same
/// node (its address only: it is dereferenced for fields outside the state's mutex).
pub(crate) fn link_fresh(parent: NodeRef, child: NodeRef, node: &mut Node) -> Result<(), NodeRef> {
    debug_assert!(
        std::ptr::eq(node as *const Node, child.as_ptr().as_ptr()),
        "`node` is the child's"
    );
    link_locked(parent, child, node.state_mut())
}

/// `link`, with the child's lock already held (taken through a borrow other than `child`).
/// References move in rather than being cloned: each clone of a task's reference is a call
/// through its counter, on the path of every spawn and every timed scope.
fn link_locked(parent: NodeRef, child: NodeRef, cs: &mut NodeState) -> Result<(), NodeRef> {
    let c = child.node();
    let (is_task, service) = match c.kind() {
        NodeKind::Task(info) => (true, info.service),
        _ => (false, false),
    };
    // The child's state is written in full before the parent's lock is released: from then on
    // the child is in the parent's list, where a propagation finds it (and, for a node linked
    // by `link_fresh`, locks it for the first time).
    let NodeState {
        parent: parent_field,
        slot,
        shield,
        entered,
        ..
    } = cs;
    let parent = &*parent_field.insert(parent);
    let p = parent.node();
    let mut ps = parent.lock();
    if is_task && ps.closed {
        drop(ps);
        *parent_field = None;
        return Err(child);
    }
    // Set before the child is in the list, under the same lock: a propagation snapshots the
    // list under it, so it sees both or neither.
    c.cancel.set_through_parent(!*shield && p.is_cancelled());
    if !*shield && is_forced(p) {
        // Born under a scope whose grace period ran out (B3).
        c.forced.store(true, Ordering::Release);
    }
    let key = ps.insert_child(child);
    if let Some(counts) = ps.plain().filter(|_| is_task) {
        counts.tasks += 1;
        if service {
            counts.services += 1;
        }
    }
    *slot = Some(key);
    *entered = true;
    drop(ps);
    Ok(())
}

/// Enters a cancel scope: links it under `parent`, with its deadline's timer deferred (C5: a
/// deadline already past cancels at once). Panics if the scope was entered before.
///
/// The timer is not armed here: a timeout whose body ends before it waits (the common case:
/// a checkpoint, a ready operation) never needs one. Until it is armed, the scope's owner sees
/// the deadline itself: the cancel checks made inside the body compare the clock with it
/// ([`expire_deferred_above`], also called when the body ends), `Scoped` arms it when the body
/// waits ([`arm_deferred`]), and a nursery opened inside arms it at once
/// ([`arm_deferred_above`]), as its tasks may wait while the body does not. Returns the
/// deadline if its timer was deferred.
pub(crate) fn enter_scope(parent: NodeRef, child: &Arc<PlainNode>, rt: &Shared) -> Option<Instant> {
    let mut cs = child.lock();
    if cs.entered {
        drop(cs);
        panic!("a CancelScope can be entered only once; create a new CancelScope for each run");
    }
    // A scope is never refused (only tasks are, by a closed nursery).
    let _ = link_locked(parent, NodeRef::from(child.clone()), &mut cs);
    let cancelled_before = child.cancel_called();
    let (past, deferred) = defer_locked(&mut cs, cancelled_before, rt);
    drop(cs);
    if past {
        cancel(child.as_ref(), CancelReason::Deadline);
    } else if cancelled_before {
        // Cancelled before it was entered (C2): it takes effect now.
        took_effect(child.as_ref());
    }
    deferred
}

/// Defers the timer of a just-linked node's deadline; the caller holds the node's lock and
/// says whether its cancel was called. Returns whether the deadline has already passed (the
/// caller then cancels the node), and the deadline if its timer is deferred.
fn defer_locked(s: &mut Locked<'_>, cancel_called: bool, rt: &Shared) -> (bool, Option<Instant>) {
    match deadline_ahead(s, cancel_called, rt) {
        Some((fields, Watch::At(deadline))) => {
            fields.deferred = true;
            (false, Some(deadline))
        }
        Some((_, Watch::Passed)) => (true, None),
        _ => (false, None),
    }
}

/// What a linked node's deadline asks for, as [`deadline_ahead`] sees it.
enum Watch {
    /// Nothing: no deadline, or the node is cancelled already.
    None,
    /// A cancel: the deadline has passed (C5).
    Passed,
    /// A timer at this time.
    At(Instant),
}

/// The node's deadline against the clock (this poll's reading), with the fields it is kept in;
/// `None` for a task's node, which has none. The caller holds the node's lock and says whether
/// its cancel was called.
fn deadline_ahead<'s>(
    s: &'s mut Locked<'_>,
    cancel_called: bool,
    rt: &Shared,
) -> Option<(&'s mut PlainFields, Watch)> {
    let fields = s.plain()?;
    let watch = match fields.deadline {
        None => Watch::None,
        Some(_) if cancel_called => Watch::None,
        Some(deadline) if deadline <= rt.driver.now() => Watch::Passed,
        Some(deadline) => Watch::At(deadline),
    };
    Some((fields, watch))
}

/// The code of a scope whose deadline's timer is deferred waits: arm the timer now (the owner
/// may not run again before the deadline). Nothing if it was armed meanwhile (`set_deadline`)
/// or the scope has left the tree.
pub(crate) fn arm_deferred(node: &Arc<PlainNode>, rt: &Shared) {
    let mut s = node.lock();
    let past = s.slot.is_some() && arm_if_deferred(node, &mut s, rt);
    drop(s);
    if past {
        cancel(node.as_ref(), CancelReason::Deadline);
    }
}

/// [`arm_locked`] for a node whose deadline's timer is deferred; nothing for any other.
fn arm_if_deferred(node: &Arc<PlainNode>, s: &mut Locked<'_>, rt: &Shared) -> bool {
    s.plain_ref().is_some_and(|f| f.deferred) && arm_locked(node, s, rt)
}

/// Where a scope's deferred deadline stands at `now`, as [`settle_deferred`] found it.
enum Deferred {
    /// Not deferred (or no longer: armed, or settled by an earlier look).
    No,
    /// Still ahead.
    Ahead(Instant),
    /// Passed: no longer deferred, and the scope is to be cancelled once the lock is released.
    Passed,
}

/// Looks at a node's deferred deadline at `now`, under its lock; one that has passed, or whose
/// scope is cancelled already, is deferred no more.
fn settle_deferred(s: &mut Locked<'_>, cancel_called: bool, now: Instant) -> Deferred {
    let Some(fields) = s.plain().filter(|f| f.deferred) else {
        return Deferred::No;
    };
    match fields.deadline {
        Some(deadline) if deadline > now && !cancel_called => Deferred::Ahead(deadline),
        deadline => {
            fields.deferred = false;
            if deadline.is_some() && !cancel_called {
                Deferred::Passed
            } else {
                Deferred::No
            }
        }
    }
}

/// A cancel check at `now` in `node` (the current node), inside scopes whose timers are
/// deferred, with the earliest of their deadlines passed: cancels each scope at or above `node`
/// in its task whose deferred deadline has passed. Returns the earliest deferred deadline left.
pub(crate) fn expire_deferred_above(node: Option<NodeRef>, now: Instant) -> Option<Instant> {
    let mut due = Vec::new();
    let mut left: Option<Instant> = None;
    for_each_scope_above(node, |plain, s| {
        match settle_deferred(s, plain.cancel_called(), now) {
            Deferred::No => {}
            Deferred::Ahead(deadline) => left = Some(left.map_or(deadline, |l| l.min(deadline))),
            Deferred::Passed => due.push(plain),
        }
    });
    for plain in due {
        cancel(plain.as_ref(), CancelReason::Deadline);
    }
    left
}

/// A nursery is opened in `node` (the current node), inside scopes whose timers are deferred:
/// arm them, since the nursery's tasks may wait while the scopes' owner keeps running.
pub(crate) fn arm_deferred_above(node: Option<NodeRef>, rt: &Shared) {
    let mut passed = Vec::new();
    for_each_scope_above(node, |plain, s| {
        if arm_if_deferred(&plain, s, rt) {
            passed.push(plain);
        }
    });
    for plain in passed {
        cancel(plain.as_ref(), CancelReason::Deadline);
    }
}

/// Calls `f` with each plain node from `node` up to its task's node (not included: a task's
/// scopes are below it), under the node's lock.
fn for_each_scope_above(node: Option<NodeRef>, mut f: impl FnMut(Arc<PlainNode>, &mut Locked<'_>)) {
    let mut next = node;
    while let Some(at) = next {
        if matches!(at.node().kind(), NodeKind::Task(_) | NodeKind::Root) {
            return;
        }
        let Some(plain) = at.plain() else {
            return;
        };
        let mut s = plain.lock();
        next = s.parent.clone();
        f(plain.clone(), &mut s);
    }
}

/// Leaves a cancel scope: unlinks it and drops its deadline timer. Returns whether the scope
/// absorbs the cancellation its code ended with (`returned_cancellation`): it does if it was
/// cancelled itself and no enclosing cancellation is visible from it (C3).
pub(crate) fn exit_scope(child: &dyn TreeNode, rt: &Shared, returned_cancellation: bool) -> bool {
    let c = child.node();
    // Wakers taken out are dropped after the lock is released.
    let (parent, slot, armed, grace, absorbed, _wakers) = {
        let mut cs = child.lock();
        let absorbed = returned_cancellation && c.cancel_called() && !parent_cancel_visible(&cs);
        if absorbed {
            if let Some(fields) = cs.plain() {
                fields.cancelled_caught = true;
            }
        }
        // Forget the parent, the owner's foreign-wait waker and the owner waker (see `unlink`);
        // the grace timer and the foreign-wait waker are looked for only in a node that has
        // extras (few have).
        let (grace, foreign) = if cs.extras_ref().is_some() {
            (cs.take_grace_timer(), cs.take_foreign())
        } else {
            (None, None)
        };
        let owner = c.take_owner(&mut cs);
        (
            cs.parent.take(),
            cs.slot.take(),
            cs.take_armed(),
            grace,
            absorbed,
            [foreign, owner],
        )
    };
    if let Some(key) = armed {
        rt.driver.timers.remove(key);
    }
    if let Some(key) = grace {
        rt.driver.timers.remove(key);
    }
    if let (Some(parent), Some(slot)) = (parent, slot) {
        parent.node().lock().remove_child(slot);
    }
    absorbed
}

/// Unlinks `child` from its parent (idempotent). Wakes the parent's owner if this was a task and
/// only services (or nothing) remain. Also drops the node's pending deadline timer.
///
/// The node forgets its parent here: an exited node that kept its parent alive would make the
/// last drop of a deep chain of nested scopes recurse once per level (C9).
pub(crate) fn unlink(child: &dyn TreeNode) {
    unlink_with(child, |_| (), |()| ());
}

/// [`unlink`], running `first` under the node's lock before anything else, in the same lock
/// pass (a task stores its result there: that lock guards it), and `then` with what `first`
/// returned once the lock is released, before the parent hears of the unlink.
#[inline(always)]
pub(crate) fn unlink_with<R>(
    child: &dyn TreeNode,
    first: impl FnOnce(&mut NodeState) -> R,
    then: impl FnOnce(R),
) {
    let c = child.node();
    let (parent, slot, owner, out) = {
        let mut cs = child.lock();
        let out = first(&mut cs);
        if holds_timer_or_waker(&cs) {
            drop(cs);
            then(out);
            return unlink_holding(child);
        }
        let owner = c.take_owner(&mut cs);
        (cs.parent.take(), cs.slot.take(), owner, out)
    };
    then(out);
    drop(owner);
    leave_parent(c, parent, slot);
}

/// Does the node hold a timer (its deadline, a grace period) or its owner's waker? Every task
/// ends with an unlink, so the common case, none, takes one lock pass.
#[inline]
fn holds_timer_or_waker(s: &Locked<'_>) -> bool {
    s.armed()
        || s.extras_ref()
            .is_some_and(|e| e.grace_timer.is_some() || e.foreign.is_some())
}

/// [`unlink`] for a node that holds a timer or its owner's waker.
#[cold]
#[inline(never)]
fn unlink_holding(child: &dyn TreeNode) {
    let c = child.node();
    // A pending deadline's store is found at the root, so look before forgetting the parent.
    let timer_store = {
        let s = child.lock();
        s.armed() || s.extras_ref().is_some_and(|e| e.grace_timer.is_some())
    }
    .then(|| runtime_of(c))
    .flatten();
    let (parent, slot, armed, grace, wakers) = {
        let mut cs = child.lock();
        // The owner's wakers go too: a task's node keeping its own task's waker would keep the
        // task, its cell and its runtime alive in a cycle.
        let owner = c.take_owner(&mut cs);
        (
            cs.parent.take(),
            cs.slot.take(),
            cs.take_armed(),
            cs.take_grace_timer(),
            [cs.take_foreign(), owner],
        )
    };
    drop(wakers);
    if armed.is_some() || grace.is_some() {
        // `None` only if the runtime is gone, and its timers with it.
        if let Some(rt) = timer_store.or_else(crate::runtime::context::try_current) {
            for key in armed.into_iter().chain(grace) {
                rt.driver.timers.remove(key);
            }
        }
    }
    leave_parent(c, parent, slot);
}

/// The parent's side of an unlink: forgets the child and, for a task, wakes the parent's owner
/// when it may have to act.
#[inline]
fn leave_parent(c: &Node, parent: Option<NodeRef>, slot: Option<ChildKey>) {
    let (Some(parent), Some(slot)) = (parent, slot) else {
        return;
    };
    let (waker, foreign) = {
        let mut ps = parent.lock();
        ps.remove_child(slot);
        if let NodeKind::Task(info) = c.kind() {
            let all_services = ps.plain().is_some_and(|counts| {
                counts.tasks -= 1;
                if info.service {
                    counts.services -= 1;
                }
                counts.tasks == counts.services
            });
            let exit = if all_services {
                ps.take_exit_waker()
            } else {
                None
            };
            // A task leaving a cancelled node may leave its owner with nothing but a foreign
            // wait: let the owner look again (B1).
            let foreign = if parent.is_cancelled() {
                ps.take_foreign()
            } else {
                None
            };
            (exit, foreign)
        } else {
            (None, None)
        }
    };
    if let Some(w) = waker {
        w.wake();
    }
    if let Some(w) = foreign {
        w.wake();
    }
}

/// Cancels `target` with `reason` (the first reason wins) and propagates to the subtree.
pub(crate) fn cancel(target: &dyn TreeNode, reason: CancelReason) {
    {
        let _tree = tree_lock();
        {
            let node = target.node();
            let mut s = node.lock();
            if node.cancel_called() {
                return;
            }
            node.set_reason(&mut s, reason);
        }
        propagate(target);
    }
    took_effect(target);
}

/// A cancellation reached the code under `target` (at once, or when a scope cancelled before
/// it was entered is entered): the instrument hears of it, and its grace period starts.
fn took_effect(target: &dyn TreeNode) {
    #[cfg(feature = "instrument")]
    if crate::runtime::instrument::any() {
        report_cancel(target.node());
    }
    start_grace(target);
}

/// Tells the runtime's instrument that `node` was cancelled (out of line: a cancel is rare, and
/// without an instrument this is never reached). A node not linked yet finds no runtime: it is
/// reported when it is entered.
#[cfg(feature = "instrument")]
#[cold]
#[inline(never)]
fn report_cancel(node: &Node) {
    use crate::runtime::instrument::{CancelEvent, ScopeKind, TaskEvent};

    let Some(instrument) = runtime_of(node).and_then(|rt| rt.instrument.clone()) else {
        return;
    };
    let Some(reason) = node.reason(&node.lock()) else {
        return;
    };
    let kind = match node.kind() {
        NodeKind::Root => ScopeKind::Runtime,
        NodeKind::Task(_) => ScopeKind::Task,
        NodeKind::Scope => ScopeKind::Scope,
        NodeKind::Nursery => ScopeKind::Nursery,
    };
    let task = nearest_task(node);
    instrument.scope_cancelled(CancelEvent {
        kind,
        task: task.as_ref().map(|(info, name)| TaskEvent {
            id: info.id,
            name: name.as_deref(),
        }),
        reason: &reason,
    });
}

/// A scope was just cancelled: if a grace period applies to it (its own, else the runtime's
/// default), arm the timer that ends it (B3). Scopes that never set one and runtimes without a
/// default pay one lock pass here, on a path that runs once per cancellation.
fn start_grace(target: &dyn TreeNode) {
    let node = target.node();
    let own = node.lock().grace_period();
    if own.is_none() && !crate::runtime::shared::any_default_grace_period() {
        // The common case, without the walk to the root that finds the runtime.
        return;
    }
    let Some(rt) = runtime_of(node) else {
        return;
    };
    let Some(period) = own.or(rt.grace_period()) else {
        return;
    };
    let mut s = node.lock();
    if !is_linked(&s) {
        return;
    }
    let Some(this) = tree_ref(target, &s) else {
        return;
    };
    let at = crate::time::clock::saturating_add(rt.driver.fresh_now(), period);
    let key = rt.insert_timer(at, TimerTarget::Grace(Box::new(GraceOf(this))));
    if let Some(old) = s.extras().grace_timer.replace(key) {
        rt.driver.timers.remove(old);
    }
}

/// The tree's reference to `target` (a linked node), found through the parent's child list:
/// a counted reference for a timer, taken from the one that certainly counts it.
fn tree_ref(target: &dyn TreeNode, s: &NodeState) -> Option<NodeRef> {
    let parent = s.parent.as_ref()?;
    let slot = s.slot?;
    let ps = parent.node().lock();
    let this = ps.child(slot)?;
    let same = std::ptr::eq(this.addr(), target.node() as *const Node as *const ());
    same.then(|| this.clone())
}

/// Sets a scope's own grace period (B3); `None` leaves the runtime's default.
pub(crate) fn set_grace_period(node: &Node, period: Option<Duration>) {
    let mut s = node.lock();
    if period.is_some() || s.extras_ref().is_some() {
        s.extras().grace_period = period;
    }
}

/// A scope's own grace period.
pub(crate) fn grace_period(node: &Node) -> Option<Duration> {
    node.lock().grace_period()
}

/// Called by the timer store when a cancelled scope's grace period runs out (B3): what is left
/// under it is to be dropped. Marks the scope and its subtree forced, stopping at shields (B4),
/// and wakes the owners and blocked operations there so the owners act.
fn grace_expired(target: &NodeRef) {
    target.node().lock().take_grace_timer();
    let mut wake = Vec::new();
    {
        let _tree = tree_lock();
        let mut stack: Vec<NodeRef> = vec![target.clone()];
        let mut first = true;
        while let Some(n) = stack.pop() {
            let node = n.node();
            let mut s = node.lock();
            if !first && s.shield {
                continue;
            }
            first = false;
            node.forced.store(true, Ordering::Release);
            wake.extend(node.owner_waker(&s));
            wake.extend(s.slot_wakers().cloned());
            wake.extend(s.take_foreign());
            stack.extend(s.children().cloned());
        }
    }
    wake.into_iter().for_each(Waker::wake);
}

/// Did a grace period that reached this node run out (B3)?
#[inline]
pub(crate) fn is_forced(node: &Node) -> bool {
    node.forced.load(Ordering::Acquire)
}

/// Recomputes the effective flag from `start` downwards, waking what became cancelled. Caller holds
/// `TREE_LOCK`. Iterative so 5 000 nested scopes do not overflow the stack (C9).
fn propagate(start: &dyn TreeNode) {
    let mut wake = Vec::new();
    let mut stack: Vec<(NodeRef, bool)> = Vec::new();
    let parent_eff = start
        .node()
        .parent()
        .is_some_and(|p| p.node().is_cancelled());
    visit(start.node(), parent_eff, &mut stack, &mut wake);
    while let Some((n, parent_eff)) = stack.pop() {
        visit(n.node(), parent_eff, &mut stack, &mut wake);
    }
    wake.into_iter().for_each(Waker::wake);
}

/// Sets one node's cached flag from its parent's; if it changed, queues its children with the
/// new value as their parent's.
fn visit(node: &Node, parent_eff: bool, stack: &mut Vec<(NodeRef, bool)>, wake: &mut Vec<Waker>) {
    mark(node, &mut node.lock(), parent_eff, stack, wake);
}

/// [`visit`]'s work on a node whose lock the caller holds.
#[inline]
fn mark(
    node: &Node,
    s: &mut NodeState,
    parent_eff: bool,
    stack: &mut Vec<(NodeRef, bool)>,
    wake: &mut Vec<Waker>,
) {
    let (was, eff) = node.cancel.set_through_parent(!s.shield && parent_eff);
    if eff != was {
        changed(node, s, eff, stack, wake);
    }
}

/// May an owner waker be woken under tree locks? An owner waker is a trellis task's own (see
/// `current::own_task_waker`), whose wake-up queues the task and takes no node's lock, except
/// through an instrument's `Scheduled` hook, which reads the task's name under its node's lock
/// (and runs the instrument's own code).
#[inline]
fn wakes_lock_no_node() -> bool {
    #[cfg(feature = "instrument")]
    {
        !crate::runtime::instrument::any()
    }
    #[cfg(not(feature = "instrument"))]
    {
        true
    }
}

/// A node's cached flag just changed to `eff`: queue its waiters and its owner's foreign-wait
/// waker (if it became cancelled) and its children.
fn changed(
    node: &Node,
    s: &mut NodeState,
    eff: bool,
    stack: &mut Vec<(NodeRef, bool)>,
    wake: &mut Vec<Waker>,
) {
    if eff {
        if node.owner_parked.load(Ordering::SeqCst) > 0 {
            if wake.is_empty() && wakes_lock_no_node() {
                // Nothing is queued ahead of it, so waking it now keeps the order the list
                // would give, and does it while the task is in cache: a list of wake-ups for
                // a large nursery's tasks went through every task's memory a second time.
                node.wake_owner_by_ref(s);
            } else {
                wake.extend(node.owner_waker(s));
            }
        }
        // Tested first: an `extend` over an empty list is a call and a loop set-up.
        if s.any_waiter_slot() {
            wake.extend(s.slot_wakers().cloned());
        }
        if s.extras_ref().is_some() {
            wake.extend(s.take_foreign());
        }
    }
    // Un-cancelling (a shield was raised) wakes nothing: blocked operations keep waiting.
    // Wake-ups go out in tree order (a node's own waiters, then each child's subtree in turn),
    // which on a current-thread runtime is the order the woken tasks run in.
    let Some(list) = s.child_list() else {
        return;
    };
    // Room first for the wake-ups likely to follow (one per parked child): the list's iterator
    // cannot say how many children it holds, and extending a vector from it checked and grew
    // the room one child at a time (about 110 instructions per child of a cancelled nursery).
    // Not while the list is empty: then the children's owners are woken at once (see above).
    if eff && !wake.is_empty() {
        wake.reserve(list.slots.len());
    }
    // The leading children that have none of their own (a nursery's tasks, typically) are
    // visited here, in slot order, under this node's lock, which keeps them in the tree: no
    // counted reference each, no trip through the stack. The first child that is not such a
    // leaf, or whose lock is busy, and every child after it go on the stack, so that each
    // subtree is still visited whole before the next sibling.
    let deferred = list
        .slots
        .iter()
        .position(|slot| {
            slot.child()
                .is_some_and(|c| !visit_leaf(c, eff, stack, wake))
        })
        .unwrap_or(list.slots.len());
    let rest = &list.slots[deferred..];
    stack.reserve(rest.len());
    // Pushed in reverse so they are popped in slot order.
    for child in rest.iter().rev().filter_map(Slot::child) {
        stack.push((child.clone(), eff));
    }
}

/// [`visit`] for a child whose parent's lock the caller holds (so the child stays in the tree
/// without a counted reference of its own), if the child has no children and its lock is free.
/// Returns false, having done nothing, otherwise. The lock is only tried: the usual order is
/// child, then parent (see the module comment), so waiting for it here could deadlock.
fn visit_leaf(
    child: &Node,
    parent_eff: bool,
    stack: &mut Vec<(NodeRef, bool)>,
    wake: &mut Vec<Waker>,
) -> bool {
    let Some(mut cs) = child.try_lock() else {
        return false;
    };
    if cs.child_list().is_some() {
        return false;
    }
    // A leaf: nothing goes on the stack.
    mark(child, &mut cs, parent_eff, stack, wake);
    true
}

/// Raises or lowers a node's shield with immediate effect (C4).
pub(crate) fn set_shield(target: &dyn TreeNode, shield: bool) {
    let _tree = tree_lock();
    {
        let mut s = target.node().lock();
        if s.shield == shield {
            return;
        }
        s.shield = shield;
        if !s.entered {
            return;
        }
    }
    propagate(target);
}

/// Moves a task node under a new parent (a started task joins its nursery, N9). Returns false,
/// leaving the node where it was, if `new_parent` is closed.
///
/// The node is linked under its new parent before it leaves the old one, so it is in some
/// parent's children at every instant: a forced teardown of either parent (N11) either finds it
/// or knows it has moved on.
pub(crate) fn reparent(child: &NodeRef, new_parent: &NodeRef) -> bool {
    let _tree = tree_lock();
    let was = child.node().is_cancelled();
    {
        let mut cs = child.node().lock();
        let old_parent = cs.parent.take();
        let old_slot = cs.slot.take();
        if link_locked(new_parent.clone(), child.clone(), &mut cs).is_err() {
            cs.parent = old_parent;
            cs.slot = old_slot;
            return false;
        }
        if let (Some(parent), Some(slot)) = (old_parent, old_slot) {
            // Lock order child, then parent, as in `link_locked`. No wake-up: the old parent
            // loses a task only to an owner that is still running (`start`'s caller).
            let mut ps = parent.lock();
            ps.remove_child(slot);
            if let (NodeKind::Task(info), Some(counts)) = (child.node().kind(), ps.plain()) {
                counts.tasks -= 1;
                if info.service {
                    counts.services -= 1;
                }
            }
        }
    }
    // `link` has already set the moved node's own flag from its new parent, so `propagate`
    // would see no change there and stop: the node's waiters and its subtree (a started task
    // with its own nursery of sleeping children, moved into a cancelled nursery) would never
    // learn of the cancellation. Carry the change down from here instead. `TREE_LOCK` is held,
    // so the flag cannot change between `link` and this.
    let now = child.node().is_cancelled();
    if now != was {
        let mut wake = Vec::new();
        let mut stack = Vec::new();
        let node = child.node();
        changed(node, &mut node.lock(), now, &mut stack, &mut wake);
        while let Some((n, parent_eff)) = stack.pop() {
            visit(n.node(), parent_eff, &mut stack, &mut wake);
        }
        wake.into_iter().for_each(Waker::wake);
    }
    true
}

/// Runtime shutdown, once no worker runs any more: closes every node below `root` to new tasks,
/// then tears down every task still in the tree, parents before children. Normally there is
/// none — nurseries wait for their tasks — but a nursery future that was leaked
/// (`mem::forget`) or moved out of the runtime's main future still holds tasks, and every task
/// future must be gone before `block_on` returns. Iterative, like `propagate`.
pub(crate) fn shut_down(root: &dyn TreeNode) {
    // The root too: a task spawned under it later (a portal call from another thread) is refused.
    root.node().lock().closed = true;
    let mut tasks = Vec::new();
    let mut stack = root.node().children();
    while let Some(n) = stack.pop() {
        let children = {
            let mut s = n.node().lock();
            s.closed = true;
            s.children().cloned().collect::<Vec<_>>()
        };
        if n.node().task_info().is_some() {
            tasks.push(n);
        }
        stack.extend(children);
    }
    // Tearing a task down drops its future, which tears down its own nurseries' tasks first;
    // those are then already done, and their turn here returns at once.
    tear_down(&tasks);
}

/// Called by the timer store when a scope's deadline arrives.
fn deadline_fired(node: &PlainNode) {
    node.lock().take_armed();
    cancel(node, CancelReason::Deadline);
}

/// Sets (or clears) a node's deadline. If the node is linked, its timer is replaced; a deadline
/// already past cancels at once (C5).
pub(crate) fn set_deadline(target: &Arc<PlainNode>, deadline: Option<Instant>) {
    let node: &PlainNode = target;
    {
        let mut s = node.lock();
        if let Some(fields) = s.plain() {
            fields.deadline = deadline;
        }
        if !s.entered || s.slot.is_none() {
            return;
        }
    }
    // The runtime at the root of the node's tree owns its timers, whichever thread (or other
    // runtime) this is called from. Found before the node is locked again: the walk locks it.
    let Some(rt) = runtime_of(node) else {
        return;
    };
    let mut s = node.lock();
    if let Some(key) = s.take_armed() {
        rt.driver.timers.remove(key);
    }
    if s.slot.is_none() {
        return;
    }
    let past = arm_locked(target, &mut s, &rt);
    drop(s);
    if past {
        cancel(node, CancelReason::Deadline);
    }
}

/// Arms the timer of a linked node's deadline; the caller holds the node's lock and has removed
/// any earlier timer. Lock order: node, then timer store (the store never takes a node lock:
/// targets fire after it is released). Returns whether the deadline has already passed: the
/// caller then cancels the node with reason `Deadline` once the lock is released (C5).
fn arm_locked(target: &Arc<PlainNode>, s: &mut Locked<'_>, rt: &Shared) -> bool {
    let Some((fields, watch)) = deadline_ahead(s, target.cancel_called(), rt) else {
        return false;
    };
    // Whatever it was, the deadline is the store's business from here on.
    fields.deferred = false;
    match watch {
        Watch::None => false,
        Watch::Passed => true,
        Watch::At(deadline) => {
            fields.armed = Some(rt.insert_timer(
                deadline,
                TimerTarget::Deadline(Arc::downgrade(target) as Weak<dyn Expire>),
            ));
            false
        }
    }
}

/// The runtime whose tree `node` is linked into, found at the root.
fn runtime_of(node: &Node) -> Option<Arc<Shared>> {
    let mut rt = None;
    walk_up(node, |n, s| match n.kind() {
        NodeKind::Root => {
            rt = s.extras_ref().and_then(|e| e.runtime.as_ref()?.upgrade());
            false
        }
        _ => true,
    });
    rt
}

/// Would this node absorb the cancellation its code ends with (C3): it was cancelled itself and
/// no enclosing cancellation is visible from it?
pub(crate) fn absorbs_cancellation(node: &Node) -> bool {
    node.cancel_called() && !parent_cancel_visible(&node.lock())
}

/// Is cancellation from outside this node visible inside it? (the parent is effectively
/// cancelled and this node is not shielded). `s` is the node's locked state, whose reference
/// keeps the parent while its flag is read.
fn parent_cancel_visible(s: &NodeState) -> bool {
    !s.shield && s.parent.as_ref().is_some_and(|p| p.node().is_cancelled())
}

/// The id of the task `node` is, or sits in (the nearest task at or above it); `None` when no
/// task is above it (a portal's tasks hang from the root).
#[cfg(feature = "instrument")]
pub(crate) fn nearest_task_id(node: &NodeRef) -> Option<u64> {
    nearest_task(node.node()).map(|(info, _)| info.id)
}

/// The task `node` is, or sits in (see [`nearest_task_id`]), with its name.
#[cfg(feature = "instrument")]
fn nearest_task(node: &Node) -> Option<(TaskInfo, Option<Arc<str>>)> {
    let mut task = None;
    walk_up(node, |n, s| match n.kind() {
        NodeKind::Task(info) => {
            task = Some((info, s.task_name().cloned()));
            false
        }
        _ => true,
    });
    task
}

/// The root of the tree `node` is linked into (`node` itself once unlinked).
pub(crate) fn root_of(node: &NodeRef) -> NodeRef {
    let mut at = node.clone();
    loop {
        let parent = at.node().lock().parent.clone();
        match parent {
            Some(parent) => at = parent,
            None => return at,
        }
    }
}

/// Visits `node` and then its ancestors, one lock at a time, while `f` returns true.
fn walk_up(node: &Node, mut f: impl FnMut(&Node, &NodeState) -> bool) {
    let mut next = {
        let s = node.lock();
        if !f(node, &s) {
            return;
        }
        s.parent.clone()
    };
    while let Some(p) = next {
        let s = p.node().lock();
        if !f(p.node(), &s) {
            return;
        }
        next = s.parent.clone();
    }
}

/// Builds the `Cancelled` error raised at a checkpoint in `node`: the reason is that of the
/// outermost cancelled scope visible from here (the one that will absorb it, C3).
pub(crate) fn cancelled_error(node: &Node) -> Cancelled {
    // Walks up while a node is cancelled through its parent. Each node on the way is locked
    // for its parent pointer, which the lock keeps; the parent's cancel state is read without
    // the parent's lock (see `CancelBits`), so the walk ends at the first node not cancelled
    // through its parent having locked nothing above it. For a task cancelled with its nursery
    // that is the task's own lock, where the nursery's was taken too: the lock every task of
    // the nursery takes again to leave it, on every worker. A loop, not a recursion holding
    // each lock: scopes can nest deeply.
    if !node.is_cancelled() {
        return Cancelled::new(CancelReason::Explicit(None));
    }
    let mut reason = None;
    let mut held: Option<NodeRef> = None;
    let mut at = node;
    loop {
        let further = {
            let s = at.lock();
            if let Some(own) = at.reason(&s) {
                reason = Some(own);
            }
            if !at.cancel.through_parent() {
                break;
            }
            let Some(parent) = &s.parent else {
                break;
            };
            let p = parent.node();
            match p.cancel.reason() {
                // The message is in the parent's extras, under its lock (child, then parent).
                Some(ReasonTag::ExplicitWithMessage) => reason = p.reason(&p.lock()),
                Some(tag) => reason = Some(tag.reason(None)),
                None => {}
            }
            if !p.cancel.through_parent() {
                break;
            }
            let grandparent = p.lock().parent.clone();
            match grandparent {
                Some(grandparent) => grandparent,
                None => break,
            }
        };
        at = held.insert(further).node();
    }
    Cancelled::new(reason.unwrap_or(CancelReason::Explicit(None)))
}

/// The earliest deadline visible from `node`: the minimum over it and its ancestors up to and
/// including the first shielded one (C5).
pub(crate) fn effective_deadline(node: &NodeRef) -> Option<Instant> {
    let mut best: Option<Instant> = None;
    let mut held: Option<NodeRef> = None;
    let mut at = node;
    loop {
        let parent = {
            // Through the reference, not `walk_up`'s nodes: a deadline is among the fields
            // beside a plain node (see `Locked`).
            let s = at.lock();
            if let Some(d) = s.deadline() {
                best = Some(best.map_or(d, |b| b.min(d)));
            }
            if s.shield {
                break;
            }
            s.parent.clone()
        };
        let Some(parent) = parent else {
            break;
        };
        at = held.insert(parent);
    }
    best
}

/// Records how a poll of the code `node` owns ended (contract B1): `parked` says a trellis
/// operation parked or yielded in it. If it did not, the code waits where cancellation cannot
/// reach; the owner's `waker` is kept so that cancelling the node wakes the owner, which then
/// ends the wait. `can_end` says whether this owner would end it (a task always; a scope or
/// nursery only for a cancellation it absorbs): if the node is already cancelled and its code
/// is in a foreign wait, the owner is woken at once to do so.
#[inline]
pub(crate) fn record_poll(
    node: &Node,
    parked: bool,
    waker: &Waker,
    can_end: impl FnOnce() -> bool,
) {
    if parked {
        // The common case, on every poll of every task: one load.
        if node.foreign_wait.load(Ordering::Relaxed) {
            node.foreign_wait.store(false, Ordering::Release);
        }
        return;
    }
    record_foreign_wait(node, waker, can_end);
}

#[cold]
fn record_foreign_wait(node: &Node, waker: &Waker, can_end: impl FnOnce() -> bool) {
    node.foreign_wait.store(true, Ordering::Release);
    {
        let mut s = node.lock();
        let foreign = &mut s.extras().foreign;
        match foreign {
            Some(w) if w.will_wake(waker) => {}
            _ => *foreign = Some(waker.clone()),
        }
    }
    if in_foreign_wait(node, false) && can_end() {
        waker.wake_by_ref();
    }
}

/// Is the code `node` owns parked only in a foreign wait while its cancellation is due (B1)? It
/// is when the node is cancelled, its owner's last poll parked in no trellis operation, and
/// nothing below it is a trellis wait: no operation registered in any node of the subtree, no
/// node shielded from the cancellation (B4), no task. `own_tasks_apart`: the node's own task
/// children do not count (a nursery's body is judged apart from its tasks, which end on their
/// own).
#[inline]
pub(crate) fn in_foreign_wait(node: &Node, own_tasks_apart: bool) -> bool {
    // The common case, at the start of every owner's poll: one load.
    if !node.is_cancelled() || !node.foreign_wait.load(Ordering::Acquire) {
        return false;
    }
    subtree_in_foreign_wait(node, own_tasks_apart)
}

/// Must the owner of `node` end its code now, by dropping it? Yes when a grace period that
/// reaches the node ran out (B3), or when its code is in a foreign wait after a cancellation
/// that has no grace period (B1). `own_tasks_apart` as for [`in_foreign_wait`].
#[inline]
pub(crate) fn must_end(node: &Node, own_tasks_apart: bool) -> bool {
    if !node.is_cancelled() {
        return false;
    }
    (is_forced(node) && nothing_shielded_below(node)) || in_foreign_wait(node, own_tasks_apart)
}

/// Is every node below a forced `node` forced too? A shield stops the forcing (B4), and its
/// body must not be dropped with the code around it: the owner waits until it has left.
#[cold]
fn nothing_shielded_below(node: &Node) -> bool {
    let mut stack: Vec<NodeRef> = node.lock().children().cloned().collect();
    while let Some(n) = stack.pop() {
        if !is_forced(n.node()) {
            return false;
        }
        stack.extend(n.node().lock().children().cloned());
    }
    true
}

/// Does a grace period apply to the cancellation visible at `node` (that of the scope that
/// absorbs it, C3, or the runtime's default)? Then even a foreign wait gets that long (B3).
fn grace_applies(node: &Node) -> bool {
    let mut absorber: Option<Option<Duration>> = None;
    walk_up(node, |n, s| {
        if !n.is_cancelled() {
            return false;
        }
        if n.cancel_called() {
            absorber = Some(s.grace_period());
        }
        !s.shield
    });
    match absorber {
        None => false,
        Some(Some(_)) => true,
        Some(None) => crate::runtime::context::with_shared(|rt| {
            rt.is_some_and(|rt| rt.grace_period().is_some())
        }),
    }
}

/// The walk of [`in_foreign_wait`], once the node is cancelled and its code in a foreign wait.
#[cold]
fn subtree_in_foreign_wait(node: &Node, own_tasks_apart: bool) -> bool {
    if grace_applies(node) {
        return false;
    }
    let mut stack: Vec<NodeRef> = Vec::new();
    {
        let s = node.lock();
        if node.has_waiters(&s) {
            return false;
        }
        for child in s.children() {
            if child.node().task_info().is_some() {
                if own_tasks_apart {
                    continue;
                }
                return false;
            }
            stack.push(child.clone());
        }
    }
    while let Some(n) = stack.pop() {
        let n = n.node();
        if !n.is_cancelled() || n.task_info().is_some() {
            return false;
        }
        let s = n.lock();
        if n.has_waiters(&s) {
            return false;
        }
        stack.extend(s.children().cloned());
    }
    true
}

/// Is any code below `root` in a foreign wait (B1)? Such code may be woken by something trellis
/// cannot see, so the deadlock detector counts it as "something could still happen".
pub(crate) fn any_foreign_wait(root: &Node) -> bool {
    let mut stack: Vec<NodeRef> = root.children();
    while let Some(n) = stack.pop() {
        if n.node().foreign_wait.load(Ordering::Acquire) {
            return true;
        }
        stack.extend(n.node().children());
    }
    false
}

#[cfg(all(test, target_pointer_width = "64"))]
mod tests {
    use std::num::NonZeroU32;
    use std::sync::atomic::Ordering;
    use std::sync::Arc;

    use crate::cancel::node::{
        CancelBits, ChildKey, ChildList, More, Node, NodeKind, NodeRef, NodeState, PackedKind,
        PlainNode, ReasonTag, Slot, TaskInfo,
    };

    /// Every task carries a node: its size is in an idle task's, a benchmarked figure. The
    /// scope-only flags live beside plain nodes, a task's name in the extras, the owner waker in
    /// two halves, one of them the owner's identity (96 bytes with a whole waker), the
    /// children, waiter slots and extras behind one pointer (88 bytes with three), and the lock
    /// in a byte beside the flags (72 bytes with `std`'s mutex).
    #[test]
    fn a_task_node_is_64_bytes() {
        assert_eq!(std::mem::size_of::<NodeState>(), 32);
        assert_eq!(std::mem::size_of::<PackedKind>(), 8);
        assert_eq!(std::mem::size_of::<Node>(), 64);
        // What a node gets on first use: the child list inline, the rest boxed.
        assert_eq!(std::mem::size_of::<More>(), 64);
        // A nursery keeps one slot per live task.
        assert_eq!(std::mem::size_of::<Slot>(), 8);
    }

    /// The owner waker kept in halves is one count of the owner's waker: a clone made from the
    /// halves is a new count, taking it hands the node's count over, and a node dropped while
    /// holding it gives it back.
    #[test]
    fn the_owner_waker_in_halves_counts_like_a_waker() {
        struct Owner;
        impl std::task::Wake for Owner {
            fn wake(self: Arc<Self>) {}
        }
        let owner = Arc::new(Owner);
        let waker = std::task::Waker::from(owner.clone());
        let id = waker.data() as usize;
        let counted = || Arc::strong_count(&owner) - 2; // less `owner` and `waker`
        for take in [false, true] {
            let scope = PlainNode::new(NodeKind::Scope);
            assert!(matches!(
                scope.node.park_owner(&waker, id),
                super::OwnerPark::Parked
            ));
            scope.node.unpark_owner();
            assert_eq!((scope.node.owner_id(), counted()), (id, 1));
            {
                let mut s = scope.lock();
                let clone = scope.node.owner_waker(&s).expect("an owner waker");
                assert!(clone.will_wake(&waker));
                assert_eq!(counted(), 2);
                drop(clone);
                if take {
                    let taken = scope.node.take_owner(&mut s).expect("an owner waker");
                    assert_eq!((scope.node.owner_id(), counted()), (0, 1));
                    assert!(scope.node.owner_waker(&s).is_none());
                    drop(taken);
                    assert_eq!(counted(), 0);
                }
            }
            drop(scope);
            assert_eq!(counted(), 0, "taken first: {take}");
        }
    }

    /// Every reason tag reads back from the cancel byte as it was set, the effective flag is
    /// the own cancel or the parent's, and setting where it comes from keeps the reason.
    #[test]
    fn the_cancel_byte_keeps_each_reason_beside_the_flags() {
        let tags = [
            ReasonTag::Explicit,
            ReasonTag::ExplicitWithMessage,
            ReasonTag::Deadline,
            ReasonTag::Nursery,
            ReasonTag::ServiceDone,
            ReasonTag::Shutdown,
            ReasonTag::Interrupted,
        ];
        let fresh = CancelBits::new();
        assert_eq!(fresh.reason(), None);
        assert_eq!(fresh.set_through_parent(true), (false, true));
        assert!(fresh.through_parent() && fresh.effective(Ordering::Relaxed));
        assert_eq!(fresh.set_through_parent(false), (true, false));
        assert!(!fresh.through_parent() && !fresh.effective(Ordering::Relaxed));
        for tag in tags {
            let bits = CancelBits::new();
            bits.set_reason(tag);
            assert_eq!(bits.reason(), Some(tag));
            // The own cancel keeps the node cancelled whatever its parent does.
            assert_eq!(bits.set_through_parent(false), (false, true));
            assert_eq!(bits.set_through_parent(true), (true, true));
            assert!(bits.through_parent());
            assert_eq!(bits.set_through_parent(false), (true, true));
            assert!(!bits.through_parent());
            assert_eq!(bits.reason(), Some(tag));
        }
    }

    /// A scope node kept for reuse is reset in place to a fresh one: every plain value of the
    /// node, its state and its fields goes back to a new node's, the deadline is the new one.
    #[test]
    fn a_reused_scope_node_is_reset_to_a_fresh_one() {
        let then = std::time::Instant::now();
        let later = then + std::time::Duration::from_secs(5);
        let mut scope = PlainNode::with_deadline(NodeKind::Nursery, Some(then));
        {
            let node = &scope.node;
            node.cancel.set_reason(ReasonTag::Deadline);
            node.cancel.set_through_parent(true);
            node.foreign_wait.store(true, Ordering::Relaxed);
            node.forced.store(true, Ordering::Relaxed);
            node.owner_parked.store(3, Ordering::Relaxed);
            node.owner_id.store(8, Ordering::Relaxed);
            let mut s = scope.lock();
            s.slot = NonZeroU32::new(4).map(ChildKey);
            s.shield = true;
            s.closed = true;
            s.entered = true;
            let fields = s.plain().expect("a plain node");
            fields.tasks = 2;
            fields.services = 1;
            fields.pending_starts = 1;
            fields.cancelled_caught = true;
            fields.deferred = true;
        }
        assert!(PlainNode::reset_if_unshared(&mut scope, Some(later)));
        let node = &scope.node;
        assert_eq!(node.kind(), NodeKind::Scope);
        assert_eq!(node.cancel.0.load(Ordering::Relaxed), 0);
        assert!(!node.foreign_wait.load(Ordering::Relaxed));
        assert!(!node.forced.load(Ordering::Relaxed));
        assert_eq!(node.owner_parked.load(Ordering::Relaxed), 0);
        assert_eq!(node.owner_id.load(Ordering::Relaxed), 0);
        let mut s = scope.lock();
        // A reused node that kept the last scope's reason would report it for the new one.
        assert_eq!(node.reason(&s), None);
        assert!(s.slot.is_none());
        assert!(!(node.cancel_called() || s.shield || s.closed || s.entered));
        let fields = s.plain().expect("a plain node");
        assert_eq!(
            (fields.tasks, fields.services, fields.pending_starts),
            (0, 0, 0)
        );
        assert!(!(fields.cancelled_caught || fields.deferred) && fields.armed.is_none());
        assert_eq!(fields.deadline, Some(later));
    }

    /// A node's kind reads back as it was made, a task's id and service flag included, up to
    /// the largest id the word holds.
    #[test]
    fn a_packed_kind_reads_back_as_made() {
        let largest = u64::MAX >> 3;
        let kinds = [
            NodeKind::Root,
            NodeKind::Scope,
            NodeKind::Nursery,
            NodeKind::Task(TaskInfo {
                id: 0,
                service: false,
            }),
            NodeKind::Task(TaskInfo {
                id: 1,
                service: true,
            }),
            NodeKind::Task(TaskInfo {
                id: largest,
                service: false,
            }),
            NodeKind::Task(TaskInfo {
                id: largest,
                service: true,
            }),
        ];
        for kind in kinds {
            assert_eq!(PackedKind::new(kind).get(), kind);
        }
        // One past the largest starts again from 0; the flag is kept.
        let wrapped = NodeKind::Task(TaskInfo {
            id: largest + 1,
            service: true,
        });
        let again = NodeKind::Task(TaskInfo {
            id: 0,
            service: true,
        });
        assert_eq!(PackedKind::new(wrapped).get(), again);
    }

    /// Slots are reused, newest vacancy first; a key removed twice removes nothing the second
    /// time.
    #[test]
    fn child_slots_are_reused_newest_vacancy_first() {
        let nodes: Vec<Arc<PlainNode>> = (0..3).map(|_| PlainNode::new(NodeKind::Scope)).collect();
        let mut children = ChildList::default();
        let keys: Vec<ChildKey> = nodes
            .iter()
            .map(|n| children.insert(NodeRef::from(n.clone())))
            .collect();
        assert_eq!(
            keys.iter().map(|k| k.index()).collect::<Vec<_>>(),
            [0, 1, 2]
        );
        children.remove(keys[0]);
        children.remove(keys[1]);
        children.remove(keys[1]);
        assert_eq!(children.iter().count(), 1);
        assert!(children.get(keys[1]).is_none());
        assert!(std::ptr::eq(
            children.get(keys[2]).unwrap().node(),
            nodes[2].node()
        ));
        // Each node is held by the test and, while listed, by the list.
        assert_eq!(Arc::strong_count(&nodes[0]), 1);
        assert_eq!(Arc::strong_count(&nodes[2]), 2);
        // Slots 0 and 1 are vacant once each, whatever the second removal of `keys[1]` did:
        // two children fill them, newest vacancy first, and a third takes a new slot.
        let again: Vec<ChildKey> = [0, 1, 0]
            .iter()
            .map(|&i| children.insert(NodeRef::from(nodes[i].clone())))
            .collect();
        assert_eq!(
            again.iter().map(|k| k.index()).collect::<Vec<_>>(),
            [1, 0, 3]
        );
        assert_eq!(children.iter().count(), 4);
        assert!(std::ptr::eq(
            children.get(again[0]).unwrap().node(),
            nodes[0].node()
        ));
        assert!(std::ptr::eq(
            children.get(again[1]).unwrap().node(),
            nodes[1].node()
        ));
        drop(children);
        assert!(nodes.iter().all(|n| Arc::strong_count(n) == 1));
    }

    /// Vacancies are linked through the vacant slots themselves: over a long run of inserts
    /// and removals in a scrambled order, the list holds exactly the children a plain model
    /// holds, under the same keys, reuses a vacancy before it grows (its room is the most
    /// children it held at once), and gives every reference back when dropped.
    #[test]
    fn child_slots_linked_through_vacancies_match_a_model() {
        let nodes: Vec<Arc<PlainNode>> = (0..8).map(|_| PlainNode::new(NodeKind::Scope)).collect();
        let mut children = ChildList::default();
        // (key, which node) for every child listed, in the model.
        let mut model: Vec<(ChildKey, usize)> = Vec::new();
        let mut most = 0;
        let mut seed: u32 = 12345;
        for step in 0..2_000 {
            seed = seed.wrapping_mul(1_103_515_245).wrapping_add(12_345);
            let remove = model.len() > 40 || (!model.is_empty() && (seed >> 16) % 3 == 0);
            if remove {
                let (key, _) = model.swap_remove((seed >> 8) as usize % model.len());
                children.remove(key);
                // A second removal of the same key removes nothing.
                children.remove(key);
            } else {
                let which = step % nodes.len();
                let key = children.insert(NodeRef::from(nodes[which].clone()));
                assert!(model.iter().all(|(k, _)| k.index() != key.index()));
                model.push((key, which));
            }
            most = most.max(model.len());
            assert_eq!(children.iter().count(), model.len());
            assert_eq!(children.slots.len(), most);
            for (key, which) in &model {
                let listed = children.get(*key).expect("a listed child");
                assert!(std::ptr::eq(listed.node(), nodes[*which].node()));
            }
        }
        for (which, node) in nodes.iter().enumerate() {
            let listed = model.iter().filter(|(_, w)| *w == which).count();
            assert_eq!(Arc::strong_count(node), 1 + listed);
        }
        drop(children);
        assert!(nodes.iter().all(|n| Arc::strong_count(n) == 1));
    }
}
