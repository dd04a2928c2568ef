//! Task-locals: a value set for a future and for every task it spawns (trio's context variables,
//! tokio's `task_local!`).
//!
//! The values in effect form a chain of immutable frames, newest first, shared through `Arc`s:
//!
//! ```text
//!   CURRENT ──> frame (REQUEST_ID = 8) ──> frame (USER = "ann") ──> frame (REQUEST_ID = 7)
//!               ^ the inner scope           ^ the outer scopes, shadowed where the key repeats
//! ```
//!
//! `CURRENT`, a thread-local, holds the chain of the code being polled. Three things set it, each
//! for the length of one poll (or one call), restoring the previous chain with a guard, also on
//! panic:
//! - `TaskLocalFuture::poll` (what [`TaskLocal::scope`] returns): its own frame, whose parent is the
//!   chain in effect where it was first polled;
//! - the task runner: the chain the task inherited when it was spawned (a copy of the spawner's
//!   `CURRENT`, one reference count), if it inherited any; a `run_blocking` thread likewise;
//! - [`TaskLocal::sync_scope`], around a closure.
//!
//! Invariant: outside every poll, `CURRENT` is empty (`block_on` empties it for its run and
//! hands what was there to the main future only). So a task that inherited nothing needs no
//! write: the runner tests one field and moves on. That is the whole cost for programs that use
//! no task-local: one branch per task poll, one thread-local read per spawn and per task end,
//! and a pointer in each task cell.
//!
//! Frames are never changed, only dropped, so a child keeps its copy however its parent's scopes
//! come and go, and a lookup needs no lock: it walks the chain comparing keys (the address of
//! the `static` [`TaskLocal`]).

use std::any::Any;
use std::cell::Cell;
use std::fmt;
use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use pin_project_lite::pin_project;

/// The values in effect: the newest frame, which links to the older ones.
pub(crate) type Chain = Arc<dyn Link>;

/// One frame of a [`Chain`]: a key, its value, and the frames below.
pub(crate) trait Link: Send + Sync {
    fn key(&self) -> usize;
    fn parent(&self) -> Option<&Chain>;
    fn value(&self) -> &dyn Any;
}

struct Frame<T> {
    key: usize,
    parent: Option<Chain>,
    value: T,
}

impl<T: Send + Sync + 'static> Link for Frame<T> {
    fn key(&self) -> usize {
        self.key
    }

    fn parent(&self) -> Option<&Chain> {
        self.parent.as_ref()
    }

    fn value(&self) -> &dyn Any {
        &self.value
    }
}

thread_local! {
    /// The chain of the code being polled on this thread; empty outside every poll.
    static CURRENT: Cell<Option<Chain>> = const { Cell::new(None) };
}

/// Some task-local value was ever set in this process. Until then no chain exists anywhere, and
/// the spawn and poll paths skip the thread-local above, whose `Arc` makes every access go
/// through the lazy registration of its destructor (measured: +2 to +5 % instructions on the
/// scheduling benchmarks of programs that use no task-local).
static IN_USE: AtomicBool = AtomicBool::new(false);

#[inline]
fn in_use() -> bool {
    IN_USE.load(Ordering::Relaxed)
}

/// A copy of the chain in effect (one reference count), for a task being spawned or a blocking
/// call being handed to a thread: they inherit the values of the code that started them.
#[inline]
pub(crate) fn snapshot() -> Option<Chain> {
    if !in_use() {
        return None;
    }
    snapshot_in_use()
}

// Out of line: inlined, the thread-local access made every spawn's code larger, in programs
// that never set a task-local too.
#[inline(never)]
fn snapshot_in_use() -> Option<Chain> {
    CURRENT.with(|current| {
        let chain = current.take();
        let copy = chain.clone();
        current.set(chain);
        copy
    })
}

/// Makes `chain` the one in effect until the guard is dropped.
pub(crate) fn enter(chain: Option<Chain>) -> LocalsGuard {
    LocalsGuard {
        previous: CURRENT.with(|current| current.replace(chain)),
    }
}

/// Runs `f` (a task's poll) with `chain` in effect.
#[cold]
#[inline(never)]
pub(crate) fn with_chain<R>(chain: Option<Chain>, f: impl FnOnce() -> R) -> R {
    let _guard = enter(chain);
    f()
}

/// Makes a task's inherited chain the one in effect, where that changes anything: when the task
/// inherited nothing and nothing is in effect (every task of a program without task-locals), it
/// writes nothing and returns `None`.
#[inline]
pub(crate) fn enter_task(inherited: Option<Chain>) -> Option<LocalsGuard> {
    if inherited.is_none() && !in_use() {
        return None;
    }
    enter_task_in_use(inherited)
}

// Out of line, as `snapshot_in_use`: every task's drop makes the test above.
#[inline(never)]
fn enter_task_in_use(inherited: Option<Chain>) -> Option<LocalsGuard> {
    if inherited.is_none() && CURRENT.with(is_empty) {
        return None;
    }
    Some(enter(inherited))
}

fn is_empty(current: &Cell<Option<Chain>>) -> bool {
    let chain = current.take();
    let empty = chain.is_none();
    current.set(chain);
    empty
}

/// Restores the chain that was in effect before [`enter`].
pub(crate) struct LocalsGuard {
    previous: Option<Chain>,
}

impl Drop for LocalsGuard {
    fn drop(&mut self) {
        let previous = self.previous.take();
        // The chain being left is dropped after the cell is restored: a value's destructor that
        // reads a task-local sees a consistent state.
        let left = CURRENT.with(|current| current.replace(previous));
        drop(left);
    }
}

/// The frame of `key` in the chain in effect, newest first (a counted reference, so that no
/// borrow of the thread-local is held while the caller uses the value).
fn find(key: usize) -> Option<Chain> {
    let chain = snapshot()?;
    let mut link: &Chain = &chain;
    loop {
        if link.key() == key {
            return Some(link.clone());
        }
        link = link.parent()?;
    }
}

/// A value that code sees for as long as it runs inside [`scope`](TaskLocal::scope), and that
/// every task spawned there inherits: trio's `ContextVar`, tokio's `task_local!`.
///
/// Declare it as a `static` (the constructor is `const`); declaring it as a `const` does not
/// compile where it is used, because each use of a `const` would be a different variable:
///
/// ```compile_fail
/// const NOT_A_STATIC: trellis::TaskLocal<u8> = trellis::TaskLocal::new();
/// NOT_A_STATIC.sync_scope(1, || ()); // error: temporary value dropped while borrowed
/// ```
///
/// - [`scope(value, future)`](TaskLocal::scope) sets it for `future`, and for the tasks
///   spawned inside `future`, which keep the value they saw when they were spawned (as trio's
///   tasks copy their spawner's context). An inner `scope` of the same task-local shadows the
///   outer value until it ends.
/// - [`with`](TaskLocal::with), [`get`](TaskLocal::get) and [`try_with`](TaskLocal::try_with)
///   read it; outside any scope, `try_with` returns [`TaskLocalError`] and the others panic.
/// - A [`run_blocking`](crate::thread::run_blocking) closure sees the values of the task that
///   called it (trio's `to_thread.run_sync` does the same).
///
/// The value is shared, not copied, between a scope and the tasks that inherit it: it must be
/// `Send + Sync`. Put a [`Mutex`](std::sync::Mutex) or an atomic inside for state that changes.
///
/// ```
/// use trellis::TaskLocal;
///
/// static REQUEST_ID: TaskLocal<u64> = TaskLocal::new();
///
/// trellis::run(async {
///     REQUEST_ID
///         .scope(7, async {
///             assert_eq!(REQUEST_ID.get(), 7);
///             trellis::nursery(|n| async move {
///                 // The child inherits the value in effect where it was spawned.
///                 n.spawn(async { Ok(assert_eq!(REQUEST_ID.get(), 7)) })?;
///                 Ok(())
///             })
///             .await
///         })
///         .await?;
///     assert!(REQUEST_ID.try_with(|_| ()).is_err());
///     Ok::<_, trellis::NurseryError<trellis::Error>>(())
/// })
/// .unwrap();
/// ```
pub struct TaskLocal<T: 'static> {
    /// Never read. Interior mutability keeps a `const` declaration from compiling at its uses (a
    /// `&CONST` of such a type is not promoted to `'static`), and the non-zero size gives every
    /// `static` its own address, which is the key.
    _no_const: AtomicU8,
    _value: PhantomData<fn() -> T>,
}

impl<T: Send + Sync + 'static> TaskLocal<T> {
    /// A task-local with no value anywhere yet. Declare it as a `static`.
    ///
    /// ```
    /// static NAME: trellis::TaskLocal<String> = trellis::TaskLocal::new();
    ///
    /// trellis::run(async {
    ///     let greeting = NAME.scope("ann".to_string(), async { format!("hello {}", NAME.get()) });
    ///     assert_eq!(greeting.await, "hello ann");
    /// });
    /// ```
    #[must_use]
    pub const fn new() -> Self {
        TaskLocal {
            _no_const: AtomicU8::new(0),
            _value: PhantomData,
        }
    }

    fn key(&'static self) -> usize {
        self as *const Self as usize
    }

    /// Runs `future` with this task-local set to `value`; the tasks spawned inside inherit it.
    ///
    /// Not a checkpoint by itself: the returned future polls `future` and returns its output. The
    /// enclosing values (of other task-locals, and of this one, which `value` shadows) are those
    /// in effect where the returned future is first polled. Dropping it once polled drops
    /// `future` with the value still set, so destructors see it.
    ///
    /// ```
    /// static DEPTH: trellis::TaskLocal<u32> = trellis::TaskLocal::new();
    ///
    /// trellis::run(async {
    ///     DEPTH
    ///         .scope(1, async {
    ///             DEPTH.scope(2, async { assert_eq!(DEPTH.get(), 2) }).await;
    ///             assert_eq!(DEPTH.get(), 1); // restored after the inner scope
    ///         })
    ///         .await;
    /// });
    /// ```
    pub fn scope<F: Future>(&'static self, value: T, future: F) -> TaskLocalFuture<T, F> {
        TaskLocalFuture {
            local: self,
            value: Some(value),
            frame: None,
            future: Some(future),
        }
    }

    /// Calls `f` with this task-local set to `value`, outside of any future: for synchronous
    /// code, or to start a runtime whose main future sees the value.
    ///
    /// ```
    /// static MODE: trellis::TaskLocal<&'static str> = trellis::TaskLocal::new();
    ///
    /// let seen = MODE.sync_scope("test", || trellis::run(async { MODE.get() }));
    /// assert_eq!(seen, "test");
    /// ```
    pub fn sync_scope<R>(&'static self, value: T, f: impl FnOnce() -> R) -> R {
        let frame = self.frame(value, snapshot());
        let _guard = enter(Some(frame));
        f()
    }

    fn frame(&'static self, value: T, parent: Option<Chain>) -> Chain {
        IN_USE.store(true, Ordering::Relaxed);
        Arc::new(Frame {
            key: self.key(),
            parent,
            value,
        })
    }

    /// Calls `f` with the value in effect here.
    ///
    /// # Panics
    /// If no enclosing [`scope`](TaskLocal::scope) set it (in this task, or where this task was
    /// spawned). Use [`try_with`](TaskLocal::try_with) where that can happen.
    ///
    /// ```
    /// static PATH: trellis::TaskLocal<Vec<&'static str>> = trellis::TaskLocal::new();
    ///
    /// trellis::run(async {
    ///     PATH.scope(vec!["a", "b"], async { assert_eq!(PATH.with(|p| p.len()), 2) }).await;
    /// });
    /// ```
    #[track_caller]
    pub fn with<R>(&'static self, f: impl FnOnce(&T) -> R) -> R {
        match self.try_with(f) {
            Ok(r) => r,
            Err(e) => panic!(
                "{e}: wrap the code in `scope(value, future)` of this TaskLocal<{}>, or use try_with",
                std::any::type_name::<T>()
            ),
        }
    }

    /// Calls `f` with the value in effect here, or returns [`TaskLocalError`] where no enclosing
    /// [`scope`](TaskLocal::scope) set one.
    ///
    /// ```
    /// static USER: trellis::TaskLocal<String> = trellis::TaskLocal::new();
    ///
    /// trellis::run(async {
    ///     assert_eq!(USER.try_with(|u| u.clone()), Err(trellis::TaskLocalError));
    ///     let inside = USER.scope("ann".into(), async { USER.try_with(|u| u.clone()) }).await;
    ///     assert_eq!(inside, Ok("ann".to_string()));
    /// });
    /// ```
    pub fn try_with<R>(&'static self, f: impl FnOnce(&T) -> R) -> Result<R, TaskLocalError> {
        let frame = find(self.key()).ok_or(TaskLocalError)?;
        let value = frame
            .value()
            .downcast_ref::<T>()
            .expect("a task-local's frame holds a value of its own type");
        Ok(f(value))
    }

    /// A clone of the value in effect here.
    ///
    /// # Panics
    /// As [`with`](TaskLocal::with): if no enclosing scope set it.
    ///
    /// ```
    /// static ATTEMPT: trellis::TaskLocal<u32> = trellis::TaskLocal::new();
    ///
    /// trellis::run(async {
    ///     assert_eq!(ATTEMPT.scope(3, async { ATTEMPT.get() + 1 }).await, 4);
    /// });
    /// ```
    #[track_caller]
    pub fn get(&'static self) -> T
    where
        T: Clone,
    {
        self.with(T::clone)
    }
}

impl<T: Send + Sync + 'static> Default for TaskLocal<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T: 'static> fmt::Debug for TaskLocal<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TaskLocal<{}>", std::any::type_name::<T>())
    }
}

/// A [`TaskLocal`] was read where no enclosing [`scope`](TaskLocal::scope) set it.
///
/// ```
/// static LOCAL: trellis::TaskLocal<u8> = trellis::TaskLocal::new();
///
/// let err = LOCAL.try_with(|_| ()).unwrap_err();
/// assert_eq!(err, trellis::TaskLocalError);
/// assert_eq!(err.to_string(), "no value of this task-local is set here");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("no value of this task-local is set here")]
pub struct TaskLocalError;

pin_project! {
    /// The future of [`TaskLocal::scope`]: polls the inner future with the value set.
    ///
    /// ```
    /// static LEVEL: trellis::TaskLocal<u8> = trellis::TaskLocal::new();
    ///
    /// trellis::run(async {
    ///     let scoped: trellis::TaskLocalFuture<u8, _> = LEVEL.scope(2, async { LEVEL.get() });
    ///     assert_eq!(scoped.await, 2);
    /// });
    /// ```
    #[must_use = "a task-local future does nothing unless awaited"]
    pub struct TaskLocalFuture<T: 'static, F> {
        local: &'static TaskLocal<T>,
        // Until the first poll (or the drop) builds `frame` from it.
        value: Option<T>,
        frame: Option<Chain>,
        #[pin]
        future: Option<F>,
    }

    impl<T: 'static, F> PinnedDrop for TaskLocalFuture<T, F> {
        fn drop(this: Pin<&mut Self>) {
            let mut this = this.project();
            if this.future.is_some() {
                // Dropped with the value set, so the inner future's destructors see it. A scope
                // never polled has no frame; it never ran, so it needs none.
                let _guard = this.frame.take().map(|frame| enter(Some(frame)));
                this.future.set(None);
            }
        }
    }
}

impl<T: Send + Sync + 'static, F: Future> Future for TaskLocalFuture<T, F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let mut this = self.project();
        let local = *this.local;
        let value = &mut *this.value;
        let frame = this.frame.get_or_insert_with(|| {
            let value = value.take().expect("set until the first poll");
            local.frame(value, snapshot())
        });
        let _guard = enter(Some(frame.clone()));
        let out = match this.future.as_mut().as_pin_mut() {
            Some(future) => future.poll(cx),
            None => panic!("`TaskLocalFuture` polled after it completed"),
        };
        if out.is_ready() {
            this.future.set(None);
        }
        out
    }
}

impl<T: 'static, F> fmt::Debug for TaskLocalFuture<T, F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TaskLocalFuture")
            .field("local", &self.local)
            .finish()
    }
}
