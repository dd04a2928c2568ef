//! Tasks: the cell that owns a child's future, the runner the scheduler polls, and the handle
//! that awaits the child's value.
//!
//! A task is one allocation, `async-task`'s: its header (state, waker vtable), its schedule
//! function, a small [`ChildRunner`] as its future, and a [`ChildCell`] as its metadata (moved
//! into place once the allocation exists, see [`CellSlot`]), which holds the task's node in the
//! cancel tree and the user's future. The cell, not `async-task`, owns the user's future so
//! that a nursery torn down by `drop` can drop every child's future *synchronously* (N11):
//! `poll_state` and the `CLOSING` flag are a tiny lock, with plain stores on the runner's side
//! (it runs for every poll) and the cost on the teardown's (it runs rarely). The runner stores
//! `POLLING`, then reads `CLOSING`: raised, it lets go without polling. The teardown raises
//! `CLOSING`, then reads `poll_state`, waiting (yielding the thread) while a poll on another
//! thread finishes. Between each side's store and load, an asymmetric fence (see
//! `asymmetric_fence`: nothing on the runner's side, a system call on the teardown's) makes at
//! least one see the other's store: either the teardown sees the poll, or the runner sees the
//! teardown. So a teardown waits for one poll at most, and drops the future only once no poll
//! can begin. It does not wait where the poll could never end first, as when the task's own
//! code drops the nursery it is a child of: it leaves the task, cancelled, to end as soon as
//! that use of its future is over (see [`DEFERRED`]).
//!
//! The metadata lives as long as the allocation, that is as long as anything counts a reference
//! to the task: the tree's and the handle's references ([`NodeRef`], `JoinRef`) are counted in
//! the cell and together hold one count of the allocation (see [`ChildCell::OPS`]). So a
//! task's node outlives its future, as the tree needs (a task is unlinked after its future is
//! dropped).
//!
//! Life of a child: linked under its nursery's node → polled by the runner → its output goes to
//! the handle (`Ok`), the nursery's error list (`Err`, and the nursery is cancelled, N2) or the
//! panic list (N10) → future dropped → node unlinked (which may wake the nursery's owner).

mod handle;
pub(crate) mod local;
mod waits;

use std::any::Any;
use std::cell::UnsafeCell;
use std::future::Future;
use std::marker::PhantomData;
use std::mem::{ManuallyDrop, MaybeUninit};
use std::panic::{self, AssertUnwindSafe};
use std::pin::Pin;
use std::ptr::NonNull;
use std::sync::atomic::{fence, AtomicU32, AtomicU8, Ordering};
use std::sync::Arc;

use std::task::{Context, Poll};
use std::thread::ThreadId;

use async_task::{Builder, Runnable, ScheduleInfo, WithInfo};

use crate::asymmetric_fence;
use crate::cancel::current;
use crate::cancel::node::{self, Counter, Node, NodeOps, NodeRef, TaskInfo, TreeNode};
use crate::error::{AsCancelled, CancelReason, Cancelled};
#[cfg(feature = "instrument")]
use crate::runtime::instrument::{self, TaskEvent};
use crate::runtime::instrument::{Hook, PollEnd};
use crate::runtime::job::Job;
use crate::runtime::Shared;
pub use handle::TaskHandle;
pub(crate) use handle::{JoinCell, JoinGuard, JoinSlot, JoinState, JoinTag};
pub use local::{TaskLocal, TaskLocalError, TaskLocalFuture};

/// `poll_state`: nobody holds the future.
const IDLE: u8 = 0;
/// `poll_state`: the runner polls the future, or a teardown or the task's exit drops it.
const POLLING: u8 = 1;
/// `poll_state`: the future is gone.
const DONE: u8 = 2;

/// Flag of the cell's `flags`: a `spawn_local` task.
const LOCAL: u8 = 1;
/// Flag of the cell's `flags`: the task inherited task-locals.
const INHERITS_LOCALS: u8 = 2;
/// Flag of the cell's `flags`, raised by a teardown: no new poll may start. Without it a
/// teardown could wait indefinitely behind a busy task that another worker re-polls as soon as
/// each poll ends (its `IDLE` window is a few instructions wide). Kept out of `poll_state`, so
/// that the runner takes and gives back the lock with stores: an atomic read-modify-write costs
/// a poll a tenth of `yield`'s time.
const CLOSING: u8 = 4;
/// Flag of the cell's `flags`: a teardown has taken it upon itself to drop the future (the
/// first to raise this flag; another one waits for `CLOSED`).
const CLAIMED: u8 = 8;
/// Flag of the cell's `flags`: the teardown that claimed the task is over.
const CLOSED: u8 = 16;
/// Flag of the cell's `flags`: the teardown that claimed the task found its future in use where
/// it could never wait for it: below itself on its own thread (the task's code, or a destructor
/// run from inside it, dropped the nursery the task is a child of; or its runner or another
/// teardown is dropping the future), or on another thread that waits, through a chain of
/// teardowns, for a future in use on this one (see `waits`). That teardown gives up its claim
/// instead and wakes the task: a poll that parks is followed by one more run, whose runner
/// finds `CLOSING`, polls nothing, and whose drop tears the task down. The first teardown that
/// raises [`RECLAIMED`] (that one, one that was waiting for the first one's end, or the
/// runtime's shutdown) drops the future once its use is over.
const DEFERRED: u8 = 32;
/// Flag of the cell's `flags`: the claim that [`DEFERRED`] gave up is taken again.
const RECLAIMED: u8 = 64;

/// Where a child's failure goes: its nursery, or, before `TaskStatus::started`, the `start` call.
pub(crate) trait Report<E>: Send + Sync {
    /// The child returned an error that is not its own cancellation.
    fn failed(&self, error: E);
    /// The child panicked.
    fn panicked(&self, payload: Box<dyn Any + Send>);
    /// The child ended with its own cancellation (not an error for a nursery, N3).
    fn cancelled(&self, error: E) {
        drop(error);
    }
    /// The child's future was dropped because it waited where its cancellation could not reach
    /// it (contract B1): it ended with `cancelled`, as if it had returned it.
    fn dropped(&self, cancelled: Cancelled) {
        drop(cancelled);
    }
    /// The child finished, whatever the outcome (after `failed`/`panicked`/`cancelled`). `start`
    /// uses this to report "finished without calling started".
    fn finished(&self) {}
    /// The runtime the child runs on. The cell reaches it through its reporter rather than a
    /// reference of its own: a task 8 bytes smaller (a benchmarked figure), and a spawn and an
    /// exit that touch no count every task of the runtime shares.
    fn runtime(&self) -> &Arc<Shared>;
}

/// `repr(C)` with the node first: the node's address is the cell's, so a [`NodeRef`] (a thin
/// pointer to the node) reaches the cell through the node's [`NodeOps`] without an offset. The
/// other fields are in falling order of alignment, so that the fixed order wastes no padding
/// (a parked task's size is a benchmarked figure).
#[repr(C)]
pub(crate) struct ChildCell<F, T, E, R> {
    /// Dropped by the cell's `Drop`, and only if it holds something (see
    /// [`Node::holds_nothing`]).
    node: ManuallyDrop<Node>,
    future: UnsafeCell<ManuallyDrop<F>>,
    join: JoinSlot<T>,
    /// Where the task's outcome goes, and through which the cell reaches its runtime (see
    /// [`Report::runtime`]).
    reporter: Arc<R>,
    /// References to this cell ([`NodeRef`], `JoinRef`) that exist, counted here as an `Arc`
    /// counts its own (see [`ChildCell::OPS`]). Starts at 2: the tree's and the handle's,
    /// which the spawn makes without counting them again.
    refs: AtomicU32,
    /// IDLE, POLLING (the future is being polled or dropped) or DONE (the future is gone).
    poll_state: AtomicU8,
    /// `LOCAL`: a `spawn_local` task, whose future may be polled or dropped only on the
    /// runtime's thread (`Shared::thread`; `spawn_local` is only allowed on the current-thread
    /// flavour). `INHERITS_LOCALS`: the task inherited task-locals from the code that spawned
    /// it (not set for nearly every task: then its polls cost one test of this flag, see
    /// `local`); they are kept in the box behind its node's one pointer (see
    /// `Node::inherit_locals`), where a field of the cell would make every task 8 bytes bigger
    /// (an idle task's size is a benchmarked figure), and a task that has them locks its node
    /// to copy them at each poll. Both are set at the spawn. `CLOSING`: a teardown has begun;
    /// `CLAIMED` and `CLOSED`: which teardown drops the future, and when it is done;
    /// `DEFERRED` and `RECLAIMED`: a claim given up, and taken up again (see the constants).
    flags: AtomicU8,
    /// What `join` holds (see [`JoinTag`]): here, in bytes the cell pads anyway.
    join_tag: JoinTag,
    /// The error type the reporter takes (the future's, through `F`).
    error: PhantomData<fn(E)>,
}

// SAFETY: the future is only touched by whoever holds the poll lock (the runner that stored
// POLLING and then saw no CLOSING, or the teardown that claimed the task and then saw it IDLE:
// see the module's documentation), so it is never accessed from two threads at once. The spawn
// functions require `F: Send` and `T: Send` except for `spawn_local`, which is only allowed on
// the current-thread runtime, where every poll and drop happens on the runtime's one thread.
// `E` is required `Send` by `Nursery`.
unsafe impl<F, T, E, R> Send for ChildCell<F, T, E, R> {}
// SAFETY: as above; shared access goes through `poll_state`, mutexes and atomics.
unsafe impl<F, T, E, R> Sync for ChildCell<F, T, E, R> {}

impl<F, T, E, R> Drop for ChildCell<F, T, E, R> {
    fn drop(&mut self) {
        // SAFETY: the tag is the slot's, and the cell is going: the slot is not used again.
        unsafe { self.join.drop_payload(&mut self.join_tag) }
        // A task that ended normally left its node unlinked and empty: nothing to free there.
        if !self.node.holds_nothing() {
            // SAFETY: dropped once, here, as the cell goes; not used after.
            unsafe { ManuallyDrop::drop(&mut self.node) }
        }
    }
}

impl<F, T, E, R> ChildCell<F, T, E, R>
where
    F: Future<Output = Result<T, E>> + 'static,
    T: 'static,
    E: AsCancelled + 'static,
    R: Report<E> + 'static,
{
    /// References to a task's cell are counted in the cell, as an `Arc` counts its own, and
    /// all of them together hold one count of the task's `async-task` allocation: the task's
    /// own waker, which its node keeps as its owner waker from the spawn on (see
    /// `Node::own_task`), given back when the last reference goes. The allocation, and with it
    /// the cell, is freed when that count and the task's own (its `Runnable`, its wakers) are
    /// all gone. (The waker rather than `async-task`'s handle: the node has the owner waker's
    /// two halves anyway, so the cell keeps no field for the count, and the first wait through
    /// the owner waker finds it in place.)
    /// (Counting each reference on the allocation itself, through the waker's vtable, cost
    /// every park and wake-up two calls more: about 35 instructions per wait.)
    const OPS: NodeOps = NodeOps {
        counter: Counter {
            retain: Self::retain,
            release: Self::release,
        },
        close: Self::close_at,
        teardown: Self::teardown_at,
        local_thread: Self::local_thread_at,
    };

    /// # Safety
    /// `cell` must point at a live cell that some reference counts (so `refs` is not 0). (A
    /// `NodeRef` passes its node's address: the same, the node being the cell's first field.)
    unsafe fn retain(cell: *const ()) {
        // SAFETY: by the function's contract.
        let cell = unsafe { &*(cell as *const Self) };
        // Relaxed, as `Arc::clone`: a new reference is made from one that already exists.
        let before = cell.refs.fetch_add(1, Ordering::Relaxed);
        debug_assert!(before != 0, "a task cell's reference made from none");
        if before > u32::MAX / 2 {
            // As `Arc`, an abort rather than a count that could wrap (2^31 references to one
            // task: one for the tree, one per handle and per operation parked in its node).
            std::process::abort();
        }
    }

    /// # Safety
    /// As for [`retain`](Self::retain), and the caller gives up one reference it owns.
    unsafe fn release(cell: *const ()) {
        let cell = cell as *const Self;
        // SAFETY: by the function's contract.
        if unsafe { &(*cell).refs }.fetch_sub(1, Ordering::Release) != 1 {
            return;
        }
        // The last reference: everything done through the others happens before the cell may
        // be freed (as in `Arc`'s drop).
        fence(Ordering::Acquire);
        // SAFETY: the shared count is still held, so the cell is alive, and this was its last
        // reference: nothing else reaches the node. The cell is not touched once the count is
        // given back (which may free it).
        let count = unsafe { (*cell).node.take_own_task() };
        drop(count);
    }

    /// [`NodeOps::close`] of a task's node.
    ///
    /// # Safety
    /// `node` must be the address of the node of a live cell of this type, made from a pointer
    /// to the cell (a `NodeRef`'s), so that it reaches the whole cell.
    unsafe fn close_at(node: *const ()) -> bool {
        // SAFETY: the cell's node is its first field (`repr(C)`): same address.
        unsafe { &*(node as *const Self) }.close();
        true
    }

    /// [`NodeOps::teardown`] of a task's node.
    ///
    /// # Safety
    /// As for [`close_at`](Self::close_at).
    unsafe fn teardown_at(node: *const ()) -> bool {
        // SAFETY: as in `close_at`.
        unsafe { &*(node as *const Self) }.teardown()
    }

    /// [`NodeOps::local_thread`] of a task's node.
    ///
    /// # Safety
    /// As for [`teardown_at`](Self::teardown_at).
    unsafe fn local_thread_at(node: *const ()) -> Option<ThreadId> {
        // SAFETY: as in `teardown_at`.
        let cell = unsafe { &*(node as *const Self) };
        cell.is_local().then_some(cell.rt().thread)
    }

    /// A teardown's first step: from here on a runner that takes the lock lets it go without
    /// polling, so the teardown waits for one poll at most.
    fn close(&self) {
        self.flags.fetch_or(CLOSING, Ordering::SeqCst);
    }

    /// A teardown's last step, after [`close`](Self::close) and a heavy fence: drops the task's
    /// future now, waiting for a poll in progress on another thread to end, or, if another
    /// teardown claimed the task first, for that one to end. Where that wait could never end
    /// (see `waits`), returns `false` at once and leaves the task to end once its future is let
    /// go (see [`DEFERRED`]).
    fn teardown(&self) -> bool {
        let mut waiting = waits::Waiting::new(self.node.owner_id());
        if self.flags.fetch_or(CLAIMED, Ordering::AcqRel) & CLAIMED != 0 {
            loop {
                let flags = self.flags.load(Ordering::Acquire);
                if flags & CLOSED != 0 {
                    return true;
                }
                // Checked before a reclaim: a claim given up for a future in use below us
                // cannot be taken up here either.
                if !waiting.may_go_on() {
                    return false;
                }
                if flags & DEFERRED != 0 && self.reclaim() {
                    break;
                }
                std::thread::yield_now();
            }
        }
        // The fence since `close` makes a poll that began before it visible here, and any later
        // runner sees `CLOSING` and polls nothing. A runner that sees `CLOSING` may still store
        // `POLLING`, then `IDLE`, in the state: it touches nothing else, and once this sees
        // `IDLE` or `DONE`, nothing reads the state but this teardown.
        let done = loop {
            match self.poll_state.load(Ordering::Acquire) {
                IDLE => break false,
                DONE => break true,
                // Being polled, or dropped by its runner: polls are short, wait for this one
                // to end, unless it never would.
                _ if !waiting.may_go_on() => {
                    self.give_up_claim();
                    return false;
                }
                _ => std::thread::yield_now(),
            }
        };
        drop(waiting);
        if done {
            self.flags.fetch_or(CLOSED, Ordering::Release);
        } else {
            self.end_torn_down();
        }
        true
    }

    /// Takes the claim that a teardown gave up (see [`DEFERRED`]); `false` if another did.
    fn reclaim(&self) -> bool {
        self.flags.fetch_or(RECLAIMED, Ordering::AcqRel) & RECLAIMED == 0
    }

    /// A claimer that cannot wait for the poll in progress lets another teardown take the task
    /// over once it is let go, and wakes the task, so that a poll that parks is followed by
    /// one more run, whose runner ends it (see [`DEFERRED`]).
    #[cold]
    fn give_up_claim(&self) {
        self.flags.fetch_and(!RECLAIMED, Ordering::Release);
        self.flags.fetch_or(DEFERRED, Ordering::Release);
        self.node.wake_owner();
    }

    /// Ends a task that a teardown claimed, its caller holding the poll lock: drops the future,
    /// delivers `Cancelled` to the handle, unlinks the node and lets other teardowns go on.
    fn end_torn_down(&self) {
        // Possibly from inside another task's poll: the destructors run as this task's code.
        let identity = self.node.owner_id();
        if let Some(payload) = current::as_task(self.id(), identity, || self.exit()) {
            self.reporter.panicked(payload);
        }
        self.complete_and_unlink(JoinState::Cancelled);
        self.flags.fetch_or(CLOSED, Ordering::Release);
    }

    /// The runner's side of the poll lock: takes it unless a teardown has begun.
    #[inline]
    fn lock_for_poll(&self) -> bool {
        // Stores only: the teardown, which is rare, pays for the fence (see the module's
        // documentation). Relaxed: what the previous poll did is ordered by `async-task`'s
        // handing of the task from one run to the next.
        self.poll_state.store(POLLING, Ordering::Relaxed);
        asymmetric_fence::light();
        if self.flags.load(Ordering::Relaxed) & CLOSING != 0 {
            // Being torn down: the teardown takes over once the lock is let go. (One that its
            // own poll deferred is taken over by the runner's drop, which follows.)
            self.poll_state.store(IDLE, Ordering::Release);
            return false;
        }
        true
    }

    /// Tells the runtime's instrument, if there may be one, of `hook`. Without the feature
    /// `instrument` this is empty, and the hook points compile to nothing.
    #[inline]
    fn report(&self, hook: Hook) {
        #[cfg(feature = "instrument")]
        if instrument::any() {
            self.report_to_instrument(hook);
        }
        #[cfg(not(feature = "instrument"))]
        let _ = hook;
    }

    #[cfg(feature = "instrument")]
    #[cold]
    #[inline(never)]
    fn report_to_instrument(&self, hook: Hook) {
        if let Some(instrument) = &self.rt().instrument {
            // The name is read under the node's lock, which no caller of `tell` holds.
            let name = self.node.task_name();
            let task = TaskEvent {
                id: self.id(),
                name: name.as_deref(),
            };
            hook.tell(instrument.as_ref(), task);
        }
    }

    /// Stores the task's final state for its handle and unlinks its node, in one pass of the
    /// node's lock (which guards the result slot); the handle is woken once the lock is
    /// released, before the parent hears of the exit.
    fn complete_and_unlink(&self, state: JoinState<T>) {
        node::unlink_with(
            self,
            // SAFETY: the state is lent by this cell's own node's lock.
            |held| unsafe { self.join.complete_locked(&self.join_tag, held, state) },
            handle::Completion::finish,
        );
    }

    /// The runtime the task runs on.
    #[inline]
    fn rt(&self) -> &Arc<Shared> {
        self.reporter.runtime()
    }

    /// The task's id.
    #[inline]
    fn id(&self) -> u64 {
        self.node.task_id()
    }

    /// A `spawn_local` task?
    #[inline]
    fn is_local(&self) -> bool {
        self.flags.load(Ordering::Relaxed) & LOCAL != 0
    }

    /// Did the task inherit task-locals?
    #[inline]
    fn inherits_locals(&self) -> bool {
        self.flags.load(Ordering::Relaxed) & INHERITS_LOCALS != 0
    }

    /// The task-locals the task inherited, a copy (one count); `None` without taking the node's
    /// lock if it inherited none.
    #[inline]
    fn inherited_locals(&self) -> Option<local::Chain> {
        if self.inherits_locals() {
            self.node.inherited_locals()
        } else {
            None
        }
    }

    /// Drops the future; the caller holds the poll lock. Returns a panic from the destructor.
    fn drop_future(&self) -> Option<Box<dyn Any + Send>> {
        let _guard = current::set_node(self);
        // A teardown drops the future from inside another task's poll: its destructors see this
        // task's values, not that task's.
        let _locals = local::enter_task(self.inherited_locals());
        let result = panic::catch_unwind(AssertUnwindSafe(|| {
            // SAFETY: we hold the poll lock, and the state becomes DONE right after (a teardown's
            // claim keeps any other teardown away), so the future is dropped exactly once and
            // never touched again.
            unsafe { ManuallyDrop::drop(&mut *self.future.get()) }
        }));
        self.poll_state.store(DONE, Ordering::Release);
        // Counted here, where the future goes, and before the task unlinks from its nursery: so
        // once a nursery is done, `statistics().live_tasks` no longer counts its tasks. (The
        // runner that `async-task` drops a little later may still be in flight on a worker.)
        self.rt().task_ended();
        result.err()
    }

    /// [`drop_future`](Self::drop_future) for a task that was spawned: the instrument hears
    /// that it exited (a refused spawn reported nothing, so it drops its future without this).
    fn exit(&self) -> Option<Box<dyn Any + Send>> {
        let dropped = self.drop_future();
        self.report(Hook::Exited);
        dropped
    }

    /// Delivers the outcome, then unlinks the node from its parent.
    fn finish(&self, outcome: Result<Result<T, E>, Box<dyn Any + Send>>) {
        let reporter = &self.reporter;
        let state = match outcome {
            Ok(Ok(value)) => JoinState::Ready(value),
            Ok(Err(e)) if ended_by_cancellation(&e, &self.node) => {
                // Its own cancellation, caused from above, or one a nursery inside it already
                // absorbed (that nursery cancelled itself): not an error (N3).
                reporter.cancelled(e);
                JoinState::Cancelled
            }
            Ok(Err(e)) => {
                reporter.failed(e);
                JoinState::Failed
            }
            Err(payload) => {
                reporter.panicked(payload);
                JoinState::Failed
            }
        };
        reporter.finished();
        self.complete_and_unlink(state);
    }

    /// Ends a task parked in a foreign wait after its cancellation (B1), or still running when
    /// its grace period ran out (B3): drops its future and reports the cancellation; the caller
    /// holds the poll lock.
    fn end_foreign_wait(&self) {
        let cancelled = node::cancelled_error(&self.node);
        match self.exit() {
            Some(payload) => self.reporter.panicked(payload),
            None => self.reporter.dropped(cancelled),
        }
        self.reporter.finished();
        self.complete_and_unlink(JoinState::Cancelled);
    }
}

impl<F, T, E, R> JoinCell<T> for ChildCell<F, T, E, R>
where
    F: Future<Output = Result<T, E>> + 'static,
    T: 'static,
    E: AsCancelled + 'static,
    R: Report<E> + 'static,
{
    fn lock_join(&self) -> JoinGuard<'_, T> {
        // SAFETY: the slot is this cell's and the node is this cell's.
        unsafe { self.join.lock(&self.join_tag, &self.node) }
    }
}

impl<F, T, E, R> TreeNode for ChildCell<F, T, E, R>
where
    F: Future<Output = Result<T, E>> + 'static,
    T: 'static,
    E: AsCancelled + 'static,
    R: Report<E> + 'static,
{
    fn node(&self) -> &Node {
        &self.node
    }

    #[inline]
    fn lock(&self) -> node::Locked<'_> {
        node::Locked::task(&self.node)
    }
}

/// A task's `async-task` metadata: its [`ChildCell`], written in place once the allocation
/// exists (in the future-making closure `async-task` calls with the metadata's final address).
///
/// Handing `async-task` the finished cell by value instead cost three copies of it per spawn
/// (into its builder, through the spawn call, into the allocation: about 90 instructions and
/// 15 % of a chained spawn's time); an uninitialised slot is moved for free.
#[repr(transparent)]
struct CellSlot<F, T, E, R>(UnsafeCell<MaybeUninit<ChildCell<F, T, E, R>>>);

// SAFETY: the slot is written once, before any reference to it leaves `spawn_child`, and is only
// read after that; the cell inside is `Send + Sync` (see its impls).
unsafe impl<F, T, E, R> Send for CellSlot<F, T, E, R> {}
// SAFETY: as above.
unsafe impl<F, T, E, R> Sync for CellSlot<F, T, E, R> {}

impl<F, T, E, R> CellSlot<F, T, E, R> {
    fn cell(&self) -> &ChildCell<F, T, E, R> {
        // SAFETY: `spawn_child` writes the cell inside `async-task`'s allocation call, before the
        // task (and so this slot) can be reached by anything else.
        unsafe { (*self.0.get()).assume_init_ref() }
    }
}

impl<F, T, E, R> Drop for CellSlot<F, T, E, R> {
    fn drop(&mut self) {
        // SAFETY: written before anything could drop the task (see `cell`), dropped once here.
        unsafe { self.0.get_mut().assume_init_drop() }
    }
}

/// The future `async-task` polls: runs one poll of the child inside its node.
///
/// It points at its cell, the metadata of the same `async-task` allocation, without counting a
/// reference: the cell lives as long as the allocation, and `async-task` never polls or drops
/// the runner after freeing it.
struct ChildRunner<F, T, E, R>
where
    F: Future<Output = Result<T, E>> + 'static,
    T: 'static,
    E: AsCancelled + 'static,
    R: Report<E> + 'static,
{
    cell: NonNull<ChildCell<F, T, E, R>>,
}

impl<F, T, E, R> ChildRunner<F, T, E, R>
where
    F: Future<Output = Result<T, E>> + 'static,
    T: 'static,
    E: AsCancelled + 'static,
    R: Report<E> + 'static,
{
    fn cell(&self) -> &ChildCell<F, T, E, R> {
        // SAFETY: the cell is the metadata of the allocation the runner lives in, which
        // `async-task` drops only when it frees that allocation, after the runner is gone.
        unsafe { self.cell.as_ref() }
    }
}

/// `async-task` drops the runner without running it when the task is dropped unscheduled: at
/// runtime shutdown, or when it is woken after the runtime's queues closed. The cell still owns
/// the user's future then; drop it now, so that nothing it holds (a channel end another thread
/// waits on, for one) outlives the runtime.
impl<F, T, E, R> Drop for ChildRunner<F, T, E, R>
where
    F: Future<Output = Result<T, E>> + 'static,
    T: 'static,
    E: AsCancelled + 'static,
    R: Report<E> + 'static,
{
    fn drop(&mut self) {
        let cell = self.cell();
        if cell.poll_state.load(Ordering::Acquire) != DONE {
            // No heavy fence: the runner is dropped where the task would run, so no poll of it
            // is in progress, and every earlier one happened before this (`async-task` hands
            // the task from one run to the next, and to its drop).
            cell.close();
            // Left to its user if its future is in use below us: then that user ends it.
            cell.teardown();
        }
    }
}

impl<F, T, E, R> Future for ChildRunner<F, T, E, R>
where
    F: Future<Output = Result<T, E>> + 'static,
    T: 'static,
    E: AsCancelled + 'static,
    R: Report<E> + 'static,
{
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let cell = self.cell();
        if !cell.lock_for_poll() {
            // Torn down (or being torn down) by its nursery: nothing left to run.
            return Poll::Ready(());
        }
        current::begin_poll();
        current::begin_task_poll(cx.waker(), cell.id());
        if node::must_end(&cell.node, false) {
            // Cancelled while parked where the cancellation cannot reach it (B1), or its grace
            // period ran out (B3).
            // Its future is dropped while its poll still counts as in progress on this thread:
            // a teardown that the drop makes finds the future in use (`current::in_use_list`).
            cell.end_foreign_wait();
            current::end_task_poll();
            return Poll::Ready(());
        }
        cell.report(Hook::BeforePoll);
        // The output leaves the poll through `output`, and only a flag through the unwinding
        // guard: passing the whole `Poll` through it copied the result with loads wider than
        // the stores of a `Pending` (its tag alone), which wait for those stores, on every poll.
        // (The flag, not `output.is_some()`: reading the output's tag back cost `yield` 6 %.)
        let mut output = None;
        let polled = {
            let _guard = current::set_node(cell);
            let mut poll = || {
                panic::catch_unwind(AssertUnwindSafe(|| {
                    // SAFETY: we hold the poll lock (exclusive access), and the future lives in the
                    // task's allocation, which never moves, so pinning it is sound.
                    let future = unsafe { Pin::new_unchecked(&mut **cell.future.get()) };
                    match future.poll(cx) {
                        Poll::Ready(out) => {
                            output = Some(out);
                            true
                        }
                        Poll::Pending => false,
                    }
                }))
            };
            // Nothing is in effect outside a poll (see `local`), so a task that inherited nothing
            // needs no write; one that did sets its chain in a function of its own, out of the
            // way of the common path.
            if cell.inherits_locals() {
                local::with_chain(cell.node.inherited_locals(), poll)
            } else {
                poll()
            }
        };
        let parked = current::parked_in_poll();
        let poll_panic = match polled {
            Ok(false) => {
                current::end_task_poll();
                cell.report(Hook::AfterPoll(PollEnd::Parked));
                node::record_poll(&cell.node, parked, cx.waker(), || true);
                // A store: nothing else writes the state while the lock is held.
                cell.poll_state.store(IDLE, Ordering::Release);
                return Poll::Pending;
            }
            Ok(true) => None,
            Err(payload) => Some(payload),
        };
        cell.report(Hook::AfterPoll(PollEnd::Finished));
        // Dropped while the poll still counts as in progress, as above.
        let drop_panic = cell.exit();
        current::end_task_poll();
        // The outcome is put together here, where it is handed on, and not before the future's
        // drop: built there, it was copied across the call and read back with loads wider than
        // the stores that had just written it.
        let outcome = match (poll_panic, drop_panic) {
            // A panicking destructor after a panicking poll: the poll's panic is reported.
            (Some(payload), _) => Err(payload),
            (None, Some(payload)) => {
                drop(output);
                Err(payload)
            }
            (None, None) => Ok(output.expect("a finished poll left its output")),
        };
        cell.finish(outcome);
        Poll::Ready(())
    }
}

/// What to spawn, and under which node.
pub(crate) struct SpawnSpec<'a, R> {
    /// The runtime to spawn on, the reporter's (kept by the caller for the call).
    pub(crate) rt: &'a Arc<Shared>,
    pub(crate) parent: NodeRef,
    pub(crate) name: Option<Arc<str>>,
    pub(crate) service: bool,
    pub(crate) reporter: Arc<R>,
    /// Called with the task's node once it is linked and before it is first scheduled, so the
    /// caller can record it before the task can possibly run (`start` needs this: it is the only
    /// caller that keeps a reference to the task's node).
    pub(crate) on_linked: Option<&'a OnLinked<'a>>,
    /// A `spawn_local` task: its future is tied to the calling thread.
    pub(crate) local: bool,
}

/// See [`SpawnSpec::on_linked`].
pub(crate) type OnLinked<'a> = dyn Fn(&NodeRef) + 'a;

/// Spawns a child. `local` futures need not be `Send`; the caller checked the flavour.
///
/// # Safety
/// If `F` or `T` is not `Send`, the runtime must be current-thread and the caller on its thread.
pub(crate) unsafe fn spawn_child<F, T, E, R>(
    spec: SpawnSpec<'_, R>,
    future: F,
) -> Result<TaskHandle<T>, crate::Error>
where
    F: Future<Output = Result<T, E>> + 'static,
    T: 'static,
    E: AsCancelled + 'static,
    R: Report<E> + 'static,
{
    let rt = spec.rt;
    debug_assert!(
        Arc::ptr_eq(rt, spec.reporter.runtime()),
        "a task is spawned on its reporter's runtime"
    );
    // What takes a call or an atomic first, so that the cell below is plain values written
    // straight into place: a part built aside (the node, say) and then moved stalls on reading
    // back the small fields just written.
    let (id, locals) = (rt.next_task_id(), local::snapshot());
    // Moved into the task's allocation by the closure below (see `CellSlot`), then forgotten.
    let cell = ChildCell {
        node: ManuallyDrop::new(Node::in_cell(
            &ChildCell::<F, T, E, R>::OPS,
            TaskInfo {
                id,
                service: spec.service,
            },
        )),
        poll_state: AtomicU8::new(IDLE),
        future: UnsafeCell::new(ManuallyDrop::new(future)),
        join: JoinSlot::new(),
        join_tag: JoinTag::new(),
        reporter: spec.reporter,
        flags: AtomicU8::new(
            if spec.local { LOCAL } else { 0 } | if locals.is_some() { INHERITS_LOCALS } else { 0 },
        ),
        error: PhantomData,
        refs: AtomicU32::new(2),
    };
    // The id counted the task among the spawned ones, before linking: the refused path below,
    // which drops the future through `drop_future` (and so counts it as ended), stays balanced.
    // The schedule function captures nothing (8 bytes less per task), so `async-task` does not
    // keep the task alive while calling it (it would, with a waker clone per call): the task may
    // run, finish and be freed on another worker as soon as it is queued, so the task is not
    // touched once queued, and the runtime is reached through its own address, not through the
    // cell.
    let schedule = |runnable: Runnable<CellSlot<F, T, E, R>>, info: ScheduleInfo| {
        let cell = runnable.metadata().cell();
        cell.report(Hook::Scheduled);
        let cell_rt: *const Arc<Shared> = cell.rt();
        // SAFETY: the cell's reporter keeps the runtime alive until the job is queued; once it
        // is, this thread is one of the runtime's workers (else the job comes back unqueued),
        // and the runtime lives at least as long as its workers. No count is taken, so the
        // wake-ups on workers touch no counter that every task shares.
        let rt = unsafe { &**cell_rt };
        if let Err(job) = rt
            .scheduler
            .schedule_on_worker(&rt.driver, Job::new(runnable), info)
        {
            // Any other thread (a waker used outside the runtime, possibly after it ended):
            // the task's reference may be the runtime's last, so hold one of our own.
            // SAFETY: the job came back unqueued and holds the task, so the cell is alive.
            let rt = unsafe { (*cell_rt).clone() };
            rt.scheduler.schedule_remote(&rt.driver, job);
        }
    };
    // SAFETY: the runner only points at the cell, which may be shared across threads when `F`
    // and `T` are `Send` (the caller guarantees the current-thread condition otherwise); it is
    // valid for the task's life (see `ChildRunner::cell`); the schedule function is
    // `Send + Sync + 'static`; the closure moves the cell into its slot (see the comment in it).
    // Panics are not propagated (`async-task`'s default): the runner catches its future's own.
    let (runnable, task) = unsafe {
        Builder::new()
            .metadata(CellSlot(UnsafeCell::new(MaybeUninit::uninit())))
            .spawn_unchecked(
                |slot: &CellSlot<F, T, E, R>| {
                    let at = slot.0.get().cast::<ChildCell<F, T, E, R>>();
                    // The slot is this task's, uninitialised and reachable by nothing else
                    // yet. `async-task` calls this closure exactly once and cannot unwind
                    // (it aborts if the allocation fails or the closure panics), and `cell` is
                    // forgotten right after, so the cell is moved, not duplicated.
                    std::ptr::copy_nonoverlapping(&cell, at, 1);
                    ChildRunner {
                        cell: NonNull::new(at).expect("a slot in an allocation is not null"),
                    }
                },
                WithInfo(schedule),
            )
    };
    std::mem::forget(cell);
    let cell_ptr = NonNull::from(runnable.metadata().cell());
    // The task runs detached: the count of its allocation that the cell's references share is
    // its own waker, kept by its node (see `ChildCell::OPS`). Detached before that waker is
    // made, while the task's state is the fresh one `detach` expects (one compare-and-swap).
    task.detach();
    // SAFETY: nothing else can reach the cell yet (no reference to it exists), so this
    // borrow is the only one.
    unsafe { (*cell_ptr.as_ptr()).node.own_task(runnable.waker()) };
    // SAFETY: the waker just stored holds the count of the allocation that the cell's
    // references share, and `refs` starts at 2: the tree's reference is one of them.
    let tree = unsafe { NodeRef::adopt(cell_ptr.cast::<Node>()) };
    #[cfg(feature = "instrument")]
    let spawned_by =
        (instrument::any() && rt.instrument.is_some()).then(|| node::nearest_task_id(&spec.parent));
    // SAFETY: nothing else can reach the cell yet: the task is not queued, and the tree's
    // reference (`tree`, a pointer) goes into the parent's list inside the call, under the
    // parent's lock. No reference to the cell is alive across this borrow.
    let fresh = unsafe { &mut (*cell_ptr.as_ptr()).node };
    if let Some(name) = spec.name {
        fresh.name_task(name);
    }
    if let Some(chain) = locals {
        fresh.inherit_locals(chain);
    }
    let linked = node::link_fresh(spec.parent, tree, fresh);
    // SAFETY: `runnable` holds a reference to the task until it is scheduled, at the end, so
    // the cell lives at least that long; it is not used after.
    let cell = unsafe { cell_ptr.as_ref() };
    if let Err(tree) = linked {
        // Never polled: drop the future through the normal path so the state is consistent,
        // then the never-scheduled task (its runner finds the future gone).
        cell.poll_state.store(POLLING, Ordering::Relaxed);
        let _ = current::as_task(cell.id(), cell.node.owner_id(), || cell.drop_future());
        drop(runnable);
        drop(tree);
        // SAFETY: `refs` counts the handle's reference, which no handle will own.
        drop(unsafe { handle::JoinRef::adopt(cell) });
        return Err(crate::Error::NurseryClosed);
    }
    if let Some(on_linked) = spec.on_linked {
        // SAFETY: the tree counts the cell now.
        on_linked(&unsafe { NodeRef::retained(cell_ptr.cast()) });
    }
    #[cfg(feature = "instrument")]
    if let Some(spawned_by) = spawned_by {
        cell.report(Hook::Spawned(spawned_by));
        cell.report(Hook::Scheduled);
    }
    // The handle's reference is made before the task is queued (from then on it may run and
    // end on another worker), the handle after: built before the call, it was kept on the
    // stack across it and copied out in pieces whose read-back stalled.
    // SAFETY: `refs` counts the handle's reference from the start.
    let join = unsafe { handle::JoinRef::adopt(cell) };
    rt.scheduler.schedule_new(&rt.driver, Job::new(runnable));
    Ok(TaskHandle::new(join))
}

/// Did a task's error end it by a cancellation that is not a failure (N3): its own, caused from
/// above, or one that a nursery inside it already absorbed (that nursery cancelled itself)?
/// The error's `Cancelled` is looked at where `cancelled` returned it: moved on to a test, it was
/// read back with loads wider than the stores that wrote it, and stalled (a tenth of a task
/// poll's samples in `cancel_blocked`).
#[inline]
fn ended_by_cancellation<E: AsCancelled>(e: &E, node: &Node) -> bool {
    let cancelled = e.cancelled();
    match &cancelled {
        Some(c) => c.is_absorbed() || node.is_cancelled(),
        None => false,
    }
}

/// Cancels a task's node with an explicit reason (used by `TaskHandle::cancel`).
pub(crate) fn cancel_task(node: &dyn TreeNode) {
    node::cancel(node, CancelReason::Explicit(None));
}
