//! `TaskHandle`: awaits a child's value, or cancels just that child.

use std::cell::UnsafeCell;
use std::fmt;
use std::future::Future;
use std::marker::PhantomData;
use std::mem::ManuallyDrop;
use std::ops::Deref;
use std::pin::Pin;
use std::ptr::NonNull;
use std::task::{Context, Poll, Waker};

use crate::cancel::node::{Node, NodeState, TreeNode};
use crate::cancel::{CancelWaiter, YieldOnce};
use crate::error::Error;
use crate::state_lock::ByteGuard;

/// Where a child's result waits for its handle, as it is passed around. The slot keeps it
/// packed (see [`JoinSlot`]).
pub(crate) enum JoinState<T> {
    /// Still running; the waker of a task awaiting the handle (see [`Payload`]).
    Pending(Option<Box<Waker>>),
    /// Returned `Ok(value)`.
    Ready(T),
    /// Returned an error or panicked; that went to the nursery.
    Failed,
    /// Ended by cancellation (its nursery's, its handle's, or a forced teardown).
    Cancelled,
    /// The value was taken by the handle.
    Taken,
}

/// Which [`JoinState`] a slot holds, so what its payload holds: the handle's waker while
/// `Pending`, the value while `Ready`, nothing otherwise.
#[derive(Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
enum Tag {
    Pending,
    Ready,
    Failed,
    Cancelled,
    Taken,
}

/// A slot's tag. It lives in the cell beside the slot, in bytes the cell pads anyway: inside
/// the slot it would round the slot up by a word (16 bytes for a task returning `()`, where the
/// boxed waker and the value, never there together, need 8). Guarded, as the slot is, by the
/// task's node's lock.
pub(crate) struct JoinTag(UnsafeCell<Tag>);

impl JoinTag {
    pub(crate) fn new() -> JoinTag {
        JoinTag(UnsafeCell::new(Tag::Pending))
    }
}

/// The handle's waker or the task's value, whichever the tag says is there.
///
/// The waker is boxed: a thin pointer, so that the slot of a task whose value fits in a word
/// (`()` most often) is one word, where a waker takes two (an idle task's size is a
/// benchmarked figure). Only a handle awaited while its task runs makes the box, once (a
/// replaced waker is written into it).
union Payload<T> {
    waker: ManuallyDrop<Option<Box<Waker>>>,
    value: ManuallyDrop<T>,
}

/// A task's result slot: a [`JoinState`] packed as a payload here and a [`JoinTag`] beside it.
/// It has no lock of its own: the task's node's lock guards both (a lock of its own would make
/// every task 8 bytes bigger, and a parked task's size is a benchmarked figure). Reached only
/// through [`JoinSlot::lock`] and [`JoinSlot::complete_locked`]; its owner drops the payload
/// with [`JoinSlot::drop_payload`].
pub(crate) struct JoinSlot<T>(UnsafeCell<Payload<T>>);

impl<T> JoinSlot<T> {
    /// A slot for a running task with no handle waiting; its tag is [`JoinTag::new`].
    pub(crate) fn new() -> JoinSlot<T> {
        JoinSlot(UnsafeCell::new(Payload {
            waker: ManuallyDrop::new(None),
        }))
    }

    /// The slot, under `node`'s lock for as long as the guard lives.
    ///
    /// # Safety
    /// `tag` must be this slot's and `node` the node of the task whose cell holds both: every
    /// access to the slot then holds that one lock.
    #[inline]
    pub(crate) unsafe fn lock<'a>(&'a self, tag: &'a JoinTag, node: &'a Node) -> JoinGuard<'a, T> {
        let held = node.lock();
        // SAFETY: the slot and its tag are only reached under the lock of their cell's node
        // (the caller's contract), which `held` keeps for as long as the references live.
        let (tag, payload) = unsafe { (&mut *tag.0.get(), &mut *self.0.get()) };
        JoinGuard {
            tag,
            payload,
            _held: held,
        }
    }

    /// Stores the final state (first completion wins), the node's lock being held already by
    /// whoever lent `_held`. Returns the waker to wake and what is to be dropped, both for after
    /// the lock is released.
    ///
    /// # Safety
    /// As for [`lock`](Self::lock), with `_held` the state of that node, borrowed from its
    /// lock.
    #[inline]
    pub(crate) unsafe fn complete_locked(
        &self,
        tag: &JoinTag,
        _held: &mut NodeState,
        state: JoinState<T>,
    ) -> Completion<T> {
        // SAFETY: the node's lock is held (the caller's contract) for as long as `_held` is
        // borrowed, which outlives these references.
        let (tag, payload) = unsafe { (&mut *tag.0.get(), &mut *self.0.get()) };
        if *tag != Tag::Pending {
            return Completion {
                waker: None,
                left: state,
            };
        }
        // SAFETY: `Pending`: the payload holds the waker, moved out here and overwritten next.
        let waker = unsafe { ManuallyDrop::take(&mut payload.waker) };
        write(tag, payload, state);
        Completion {
            waker,
            left: JoinState::Pending(None),
        }
    }

    /// Drops what the payload holds. For the cell's drop, once.
    ///
    /// # Safety
    /// `tag` must be this slot's, and the slot must not be used afterwards.
    pub(crate) unsafe fn drop_payload(&mut self, tag: &mut JoinTag) {
        // SAFETY: the tag says what the payload holds (the caller's contract); it is moved out
        // once and dropped, and the slot is not read again.
        drop(unsafe { read(*tag.0.get_mut(), self.0.get_mut()) });
    }
}

/// Moves the state out of a payload, which must be written (or never read) afterwards.
///
/// # Safety
/// `tag` must say what `payload` holds.
unsafe fn read<T>(tag: Tag, payload: &mut Payload<T>) -> JoinState<T> {
    // SAFETY: each arm reads the field the tag says is there (the caller's contract).
    unsafe {
        match tag {
            Tag::Pending => JoinState::Pending(ManuallyDrop::take(&mut payload.waker)),
            Tag::Ready => JoinState::Ready(ManuallyDrop::take(&mut payload.value)),
            Tag::Failed => JoinState::Failed,
            Tag::Cancelled => JoinState::Cancelled,
            Tag::Taken => JoinState::Taken,
        }
    }
}

/// Packs `state` into a payload whose contents were moved out (or never were).
fn write<T>(tag: &mut Tag, payload: &mut Payload<T>, state: JoinState<T>) {
    // A union's fields are `ManuallyDrop`: assigning one drops nothing.
    *tag = match state {
        JoinState::Pending(waker) => {
            payload.waker = ManuallyDrop::new(waker);
            Tag::Pending
        }
        JoinState::Ready(value) => {
            payload.value = ManuallyDrop::new(value);
            Tag::Ready
        }
        JoinState::Failed => Tag::Failed,
        JoinState::Cancelled => Tag::Cancelled,
        JoinState::Taken => Tag::Taken,
    };
}

/// What [`JoinSlot::complete_locked`] leaves for after the lock: the handle's waker to wake,
/// and the state that lost (the slot's old one, or a second completion) to drop.
pub(crate) struct Completion<T> {
    waker: Option<Box<Waker>>,
    left: JoinState<T>,
}

impl<T> Completion<T> {
    /// Drops what lost, then wakes the handle. Called with no lock held.
    pub(crate) fn finish(self) {
        drop(self.left);
        if let Some(w) = self.waker {
            (*w).wake();
        }
    }
}

/// A task's result slot, its node's lock held.
pub(crate) struct JoinGuard<'a, T> {
    tag: &'a mut Tag,
    payload: &'a mut Payload<T>,
    _held: ByteGuard<'a, NodeState>,
}

impl<T> JoinGuard<'_, T> {
    /// Is the task still running?
    pub(crate) fn is_pending(&self) -> bool {
        *self.tag == Tag::Pending
    }

    /// The waker of the task awaiting the handle, while the task runs.
    pub(crate) fn pending_waker(&mut self) -> Option<&mut Option<Box<Waker>>> {
        // SAFETY: `Pending`: the payload holds the waker.
        self.is_pending()
            .then(|| unsafe { &mut *self.payload.waker })
    }

    /// Puts `state` in the slot and returns what was there.
    pub(crate) fn replace(&mut self, state: JoinState<T>) -> JoinState<T> {
        // SAFETY: the tag is the payload's (the guard was made from the pair), and the payload
        // is written right after.
        let old = unsafe { read(*self.tag, self.payload) };
        write(self.tag, self.payload, state);
        old
    }
}

/// The parts of a child cell a handle needs, with the future's type erased.
pub(crate) trait JoinCell<T>: TreeNode {
    /// The result slot, under the task's node's lock.
    fn lock_join(&self) -> JoinGuard<'_, T>;
}

/// A counted reference to a task's cell, typed by the task's value: what a handle holds. It
/// counts through the cell's [`Counter`](crate::cancel::node::Counter), as the tree's
/// references do.
pub(crate) struct JoinRef<T: 'static> {
    cell: NonNull<dyn JoinCell<T>>,
}

// SAFETY: a shared reference to a `JoinCell`, which is `Send + Sync` (it is a `TreeNode`), with a
// count kept by atomics. (`TaskHandle` adds the bound on `T`.)
unsafe impl<T: 'static> Send for JoinRef<T> {}
// SAFETY: as above.
unsafe impl<T: 'static> Sync for JoinRef<T> {}

impl<T: 'static> JoinRef<T> {
    /// The reference to `cell` that its count already includes (a spawn counts its handle's
    /// reference when it makes the cell: an atomic add fewer).
    ///
    /// # Safety
    /// `cell` must be alive, and its counter must hold a count that no other reference owns,
    /// which this one takes over.
    pub(crate) unsafe fn adopt(cell: &dyn JoinCell<T>) -> Self {
        JoinRef {
            cell: NonNull::from(cell),
        }
    }
}

impl<T: 'static> Deref for JoinRef<T> {
    type Target = dyn JoinCell<T>;

    fn deref(&self) -> &(dyn JoinCell<T> + 'static) {
        // SAFETY: the count this reference holds keeps the cell alive.
        unsafe { self.cell.as_ref() }
    }
}

impl<T: 'static> Drop for JoinRef<T> {
    fn drop(&mut self) {
        // Read before the count is given back: giving it back may free the cell.
        let release = self.node().counter().release;
        // SAFETY: this reference owns one count, given back exactly once, here.
        unsafe { release(self.cell.as_ptr() as *const ()) }
    }
}

/// A handle on a task spawned in a nursery. Awaiting it gives the task's value.
///
/// Dropping the handle does not cancel or detach anything: the nursery owns the task either way.
/// Awaiting is a checkpoint.
///
/// ```
/// trellis::run(async {
///     let total = trellis::nursery(|n| async move {
///         let a = n.spawn(async { Ok::<_, trellis::Error>(40) })?;
///         let b = n.spawn(async { Ok::<_, trellis::Error>(2) })?;
///         Ok::<_, trellis::Error>(a.await? + b.await?)
///     })
///     .await
///     .unwrap();
///     assert_eq!(total, 42);
/// });
/// ```
pub struct TaskHandle<T: 'static> {
    cell: JoinRef<T>,
    cancel: CancelWaiter,
    yield_once: YieldOnce,
    /// The handle hands out a `T`, so it may cross threads only if `T` may. (`JoinCell` is
    /// `Send + Sync` whatever `T` is, so without this a `spawn_local` task's `!Send` value could
    /// be awaited, and so moved, on another thread.)
    _value: PhantomData<T>,
}

// The value is never pinned in the handle (it lives in the task's cell), so the handle moves
// freely whatever `T` is.
impl<T: 'static> Unpin for TaskHandle<T> {}

impl<T: 'static> fmt::Debug for TaskHandle<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TaskHandle")
            .field("id", &self.id())
            .finish()
    }
}

impl<T: 'static> TaskHandle<T> {
    pub(crate) fn new(cell: JoinRef<T>) -> Self {
        TaskHandle {
            cell,
            cancel: CancelWaiter::new(),
            yield_once: YieldOnce::default(),
            _value: PhantomData,
        }
    }
}

impl<T: 'static> TaskHandle<T> {
    /// The task's id (unique within its runtime).
    ///
    /// ```
    /// trellis::run(async {
    ///     trellis::nursery(|n| async move {
    ///         let a = n.spawn(async { Ok(trellis::lowlevel::current_task().id) })?;
    ///         let b = n.spawn(async { Ok(()) })?;
    ///         assert_ne!(a.id(), b.id());
    ///         let id = a.id();
    ///         assert_eq!(a.await?, id);
    ///         Ok::<_, trellis::Error>(())
    ///     })
    ///     .await
    ///     .unwrap();
    /// });
    /// ```
    pub fn id(&self) -> u64 {
        self.cell.node().task_info().map_or(0, |info| info.id)
    }

    /// Cancels this task alone (its own scope); its nursery and siblings go on.
    ///
    /// ```
    /// trellis::run(async {
    ///     trellis::nursery(|n| async move {
    ///         let stuck = n.spawn(async {
    ///             trellis::sleep_forever().await?;
    ///             Ok(())
    ///         })?;
    ///         let sibling = n.spawn(async { Ok("fine") })?;
    ///         stuck.cancel();
    ///         assert!(stuck.await.is_err()); // it ended cancelled...
    ///         assert_eq!(sibling.await?, "fine"); // ...and the rest went on
    ///         Ok::<_, trellis::Error>(())
    ///     })
    ///     .await
    ///     .unwrap();
    /// });
    /// ```
    pub fn cancel(&self) {
        super::cancel_task(&*self.cell);
    }

    /// Whether the task has finished (its future is gone).
    ///
    /// ```
    /// use std::sync::Arc;
    /// use trellis::sync::Event;
    ///
    /// trellis::run(async {
    ///     let go = Arc::new(Event::new());
    ///     trellis::nursery(|n| {
    ///         let go = go.clone();
    ///         async move {
    ///             let gate = go.clone();
    ///             let task = n.spawn(async move {
    ///                 gate.wait().await?;
    ///                 Ok(1)
    ///             })?;
    ///             trellis::testing::wait_all_tasks_blocked().await?;
    ///             assert!(!task.is_finished()); // waiting for the event
    ///             go.set();
    ///             trellis::testing::wait_all_tasks_blocked().await?;
    ///             assert!(task.is_finished());
    ///             assert_eq!(task.await?, 1);
    ///             Ok::<_, trellis::Error>(())
    ///         }
    ///     })
    ///     .await
    ///     .unwrap();
    /// });
    /// ```
    pub fn is_finished(&self) -> bool {
        !self.cell.lock_join().is_pending()
    }
}

impl<T: 'static> Future for TaskHandle<T> {
    /// The task's value; [`Error::TaskFailed`] if it failed or panicked (its error went to the
    /// nursery); [`Error::TaskCancelled`] if it was cancelled; [`Error::Cancelled`] if the
    /// *awaiting* code was cancelled.
    type Output = Result<T, Error>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = &mut *self;
        let cell = &this.cell;
        let finished = this.cancel.poll_attempt("TaskHandle::await", cx, |cx| {
            let mut state = cell.lock_join();
            let Some(waker) = state.pending_waker() else {
                return Poll::Ready(());
            };
            // A waker replaced is dropped once the lock is released; its box is reused.
            let _replaced = match waker {
                Some(w) if w.will_wake(cx.waker()) => None,
                Some(w) => Some(std::mem::replace(&mut **w, cx.waker().clone())),
                None => {
                    *waker = Some(Box::new(cx.waker().clone()));
                    None
                }
            };
            drop(state);
            Poll::Pending
        });
        match finished {
            Poll::Ready(Err(c)) => return Poll::Ready(Err(Error::Cancelled(c))),
            Poll::Pending => {
                this.yield_once.blocked();
                return Poll::Pending;
            }
            Poll::Ready(Ok(())) => {
                if this.yield_once.poll_yield(cx).is_pending() {
                    return Poll::Pending;
                }
            }
        }
        let taken = this.cell.lock_join().replace(JoinState::Taken);
        Poll::Ready(match taken {
            JoinState::Ready(value) => Ok(value),
            JoinState::Failed => Err(Error::TaskFailed),
            JoinState::Cancelled => Err(Error::TaskCancelled),
            JoinState::Taken => panic!("TaskHandle polled after it returned the value"),
            JoinState::Pending(_) => unreachable!("checked above"),
        })
    }
}
