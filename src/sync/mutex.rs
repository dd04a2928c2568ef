//! `Mutex<T>`: an async mutual-exclusion lock with FIFO hand-off (trio's `Lock`), and the raw
//! lock state that `Condition` shares.
//!
//! State: `locked`, the `owner` (task that acquired, for statistics) and the lot of waiters.
//! Invariant: while waiters are parked in `MAIN`, the lock is held. Release hands the lock
//! straight to the first waiter (it stays locked, the owner changes), so a task that calls
//! `lock` later cannot barge in ahead of it.
//!
//! A `Mutex` adds a [`LockWord`] in front of that state: while nobody waits, taking and
//! releasing the lock is one compare-and-swap on the word each, without the state's `std` mutex
//! or the parking lot. The first task that must wait moves the lock into the state (the word
//! says `QUEUED`, and the state decides from then on) and it moves back to the word when a
//! release finds nobody waiting. While the word says `QUEUED` no compare-and-swap can take the
//! lock, so queued waiters keep their FIFO hand-off.
//!
//! A panic while the guard is held does not poison the mutex (as in trio, tokio and
//! async-std): the guard's drop releases the lock during unwinding, and the panic itself travels
//! to the task's nursery, which cancels the siblings (N10). Code that must not see
//! half-updated data after a panic should restore it in its own `Drop` or catch the panic.

use std::cell::UnsafeCell;
use std::fmt;
use std::future::Future;
use std::marker::PhantomData;
use std::ops::{Deref, DerefMut};
use std::pin::Pin;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::sync::Mutex as StdMutex;
use std::task::{ready, Context, Poll};

use super::parking_lot::{self, lock, Op, ParkingLot, Site, WakeList, MAIN};
use crate::cancel::current_cancellation;
use crate::cancel::waiting::LockWatch;
use crate::error::{Cancelled, Error};
use crate::runtime::context;

/// The lock word's low two bits: the lock is free, and nobody waits.
const FREE: u64 = 0;
/// Held, taken through the word; the owner's task id + 1 is in the bits above (0: no task).
const HELD: u64 = 1;
/// Somebody waits or waited: the [`RawLock`] behind the `std` mutex decides.
const QUEUED: u64 = 2;
const STATE_BITS: u64 = 0b11;

/// The fast path of a [`Mutex`]: the lock's state and owner in one atomic word, so that an
/// uncontended lock and unlock are a compare-and-swap each (see the module documentation).
pub(crate) struct LockWord(AtomicU64);

impl LockWord {
    const fn new() -> Self {
        LockWord(AtomicU64::new(FREE))
    }

    /// Takes the lock if it is free and nobody waits.
    #[inline]
    fn try_take(&self, owner: Option<u64>) -> bool {
        let held = (owner.map_or(0, |id| id.wrapping_add(1)) << 2) | HELD;
        self.0
            .compare_exchange(FREE, held, Ordering::Acquire, Ordering::Relaxed)
            .is_ok()
    }

    /// Releases a lock taken through the word; `false` if it has moved into the state since
    /// (a waiter queued), where the release must happen instead.
    #[inline]
    fn try_release(&self) -> bool {
        let word = self.0.load(Ordering::Relaxed);
        word & STATE_BITS == HELD
            && self
                .0
                .compare_exchange(word, FREE, Ordering::Release, Ordering::Relaxed)
                .is_ok()
    }

    fn is_held(&self) -> bool {
        self.0.load(Ordering::Relaxed) & STATE_BITS == HELD
    }

    /// Under the state's lock: makes the state decide from now on (`QUEUED`), carrying a lock
    /// held through the word, with its owner, into it.
    fn hand_to_state(&self, state: &mut RawLock) {
        let mut word = self.0.load(Ordering::Acquire);
        loop {
            if word & STATE_BITS == QUEUED {
                return;
            }
            match self
                .0
                .compare_exchange(word, QUEUED, Ordering::Acquire, Ordering::Acquire)
            {
                Ok(_) => break,
                Err(now) => word = now,
            }
        }
        if word & STATE_BITS == HELD {
            state.locked = true;
            state.set_owner((word >> 2).checked_sub(1));
        }
    }

    /// Under the state's lock, once it is free with nobody waiting: the word decides again.
    fn take_back(&self) {
        self.0.store(FREE, Ordering::Release);
    }

    /// `(locked, owner)` while the word decides; `None` while the state does.
    fn statistics(&self) -> Option<(bool, Option<u64>)> {
        let word = self.0.load(Ordering::Acquire);
        match word & STATE_BITS {
            FREE => Some((false, None)),
            HELD => Some((true, (word >> 2).checked_sub(1))),
            _ => None,
        }
    }
}

/// What a lock waiter brings: its task id (the owner once the lock is handed over) and, for a
/// [`Mutex`], its lock word.
pub(crate) struct LockRequest {
    owner: Option<u64>,
    word: Option<NonNull<LockWord>>,
}

// SAFETY: `word` points at an atomic, which any thread may use; see `LockRequest::word`.
unsafe impl Send for LockRequest {}
// SAFETY: as above; a shared `LockRequest` gives only shared access to the atomic.
unsafe impl Sync for LockRequest {}

impl LockRequest {
    /// A request for a lock without a word (a [`Condition`](super::Condition)'s).
    pub(crate) fn plain(owner: Option<u64>) -> Self {
        LockRequest { owner, word: None }
    }

    fn with_word(owner: Option<u64>, word: &LockWord) -> Self {
        LockRequest {
            owner,
            word: Some(NonNull::from(word)),
        }
    }

    fn word(&self) -> Option<&LockWord> {
        // SAFETY: a request with a word is made by a `Mutex` operation that borrows the mutex
        // (so the word can neither move nor be dropped) for as long as the request exists, in the
        // operation or in the lot entry the operation owns and removes before it ends.
        self.word.map(|w| unsafe { w.as_ref() })
    }
}

/// Lock state shared by [`Mutex`] and [`Condition`](super::Condition). Waiters bring the id of
/// their task, which becomes the owner when the lock is handed to them.
#[derive(Default)]
pub(crate) struct RawLock {
    locked: bool,
    owner: Option<u64>,
    /// The owner as the deadlock report reads it, once a waiter parked with detection on.
    watch: Option<Arc<LockWatch>>,
    pub(crate) lot: ParkingLot<(), LockRequest>,
}

impl RawLock {
    fn set_owner(&mut self, owner: Option<u64>) {
        self.owner = owner;
        if let Some(watch) = &self.watch {
            watch.set_holder(owner);
        }
    }

    /// Releases the lock: the first waiter of `MAIN` gets it, or it becomes free (and a
    /// `Mutex`'s `word` takes it back).
    pub(crate) fn release(&mut self, wakes: &mut WakeList, word: Option<&LockWord>) {
        match self.lot.front(MAIN) {
            Some((key, request)) => {
                let owner = request.owner;
                self.set_owner(owner);
                self.lot.unpark_key(key, (), wakes);
            }
            None => {
                self.locked = false;
                self.set_owner(None);
                if let Some(word) = word {
                    word.take_back();
                }
            }
        }
    }

    /// If the lock is free, gives it to the first waiter of `MAIN` (one that joined the line
    /// while the lock was free: a cancelled condition waiter).
    pub(crate) fn grant_if_free(&mut self, wakes: &mut WakeList) {
        if !self.locked {
            if let Some((key, request)) = self.lot.front(MAIN) {
                let owner = request.owner;
                self.locked = true;
                self.set_owner(owner);
                self.lot.unpark_key(key, (), wakes);
            }
        }
    }

    pub(crate) fn statistics(&self) -> LockStatistics {
        LockStatistics {
            locked: self.locked,
            owner: self.owner,
            tasks_waiting: self.lot.len(MAIN),
        }
    }
}

/// The `lock` operation on a [`RawLock`].
pub(crate) struct LockSite;

impl Site for LockSite {
    type State = RawLock;
    type Value = ();
    type Request = LockRequest;
    type Output = ();
    type Error = Cancelled;
    const NAME: &'static str = "sync::Mutex::lock";

    fn lot(state: &mut RawLock) -> &mut ParkingLot<(), LockRequest> {
        &mut state.lot
    }

    fn attempt(state: &mut RawLock, request: &mut LockRequest, _: &mut WakeList) -> Option<()> {
        if let Some(word) = request.word() {
            word.hand_to_state(state);
        }
        if state.locked {
            return None;
        }
        state.locked = true;
        state.set_owner(request.owner);
        Some(())
    }

    fn finish((): (), _: LockRequest) -> Result<(), Cancelled> {
        Ok(())
    }

    fn cancelled(c: Cancelled, _: LockRequest) -> Cancelled {
        c
    }

    fn redeliver(
        state: &mut RawLock,
        (): (),
        request: &mut LockRequest,
        wakes: &mut WakeList,
    ) -> Option<()> {
        state.release(wakes, request.word());
        None
    }

    fn lock_watch(state: &mut RawLock) -> Option<Arc<LockWatch>> {
        let owner = state.owner;
        Some(
            state
                .watch
                .get_or_insert_with(|| Arc::new(LockWatch::new(owner)))
                .clone(),
        )
    }
}

/// Counters of a [`Mutex`] (trio's `LockStatistics`).
///
/// ```
/// use trellis::sync::Mutex;
///
/// trellis::run(async {
///     let mutex = Mutex::new(());
///     assert!(!mutex.statistics().locked);
///     let guard = mutex.lock().await.unwrap();
///     let stats = mutex.statistics();
///     assert!(stats.locked);
///     assert_eq!(stats.owner, Some(trellis::lowlevel::current_task().id));
///     assert_eq!(stats.tasks_waiting, 0);
///     drop(guard);
/// });
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct LockStatistics {
    /// Whether the lock is held.
    pub locked: bool,
    /// The id of the task that acquired it (`None` when free, or when taken outside a task).
    pub owner: Option<u64>,
    /// Tasks blocked waiting for it.
    pub tasks_waiting: usize,
}

/// An async mutex protecting a `T` (trio's `Lock`, with the data inside as Rust prefers).
///
/// [`lock`](Mutex::lock) waits for the lock and returns a guard that gives access to the data
/// and releases the lock when dropped. Waiters get the lock in the order they asked for it: a
/// release hands it to the first waiter directly. Holding the guard across `.await` is the
/// point; the guard is `Send` when `T` is, so tasks on a multi-threaded runtime can hold it.
///
/// A panic while the guard is held releases the lock without poisoning it; the panic reaches
/// the task's nursery (see the module documentation of `trellis::sync`).
///
/// ```
/// use std::sync::Arc;
/// use trellis::sync::Mutex;
///
/// trellis::run(async {
///     let counter = Arc::new(Mutex::new(0));
///     trellis::nursery(|n| {
///         let counter = counter.clone();
///         async move {
///             for _ in 0..10 {
///                 let counter = counter.clone();
///                 n.spawn(async move {
///                     let mut guard = counter.lock().await?;
///                     let seen = *guard;
///                     trellis::checkpoint().await?; // other tasks run; none gets the lock
///                     *guard = seen + 1;
///                     Ok(())
///                 })?;
///             }
///             Ok::<_, trellis::Error>(())
///         }
///     })
///     .await
///     .unwrap();
///     assert_eq!(*counter.lock().await.unwrap(), 10);
/// });
/// ```
///
/// Cancel safety: a cancelled or dropped `lock` holds nothing and keeps no place in line; a
/// lock handed to a waiter that is dropped before it runs passes to the next waiter.
pub struct Mutex<T: ?Sized> {
    word: LockWord,
    state: StdMutex<RawLock>,
    data: UnsafeCell<T>,
}

// SAFETY: the mutex hands out access to `T` to one guard at a time (the lock word's
// compare-and-swap, or the `locked` flag changed only under `state` once the word says `QUEUED`),
// so sharing the mutex across threads needs only `T: Send`, as for `std::sync::Mutex`.
unsafe impl<T: ?Sized + Send> Sync for Mutex<T> {}
// SAFETY: moving the mutex moves the `T`.
unsafe impl<T: ?Sized + Send> Send for Mutex<T> {}

impl<T> Mutex<T> {
    /// A new, unlocked mutex holding `value`.
    ///
    /// ```
    /// let mutex = trellis::sync::Mutex::new(vec![1, 2]);
    /// assert!(!mutex.is_locked());
    /// ```
    pub fn new(value: T) -> Self {
        Mutex {
            word: LockWord::new(),
            state: StdMutex::new(RawLock::default()),
            data: UnsafeCell::new(value),
        }
    }

    /// Consumes the mutex and returns the data.
    ///
    /// ```
    /// trellis::run(async {
    ///     let mutex = trellis::sync::Mutex::new(String::from("a"));
    ///     mutex.lock().await.unwrap().push('b');
    ///     assert_eq!(mutex.into_inner(), "ab");
    /// });
    /// ```
    pub fn into_inner(self) -> T {
        self.data.into_inner()
    }
}

impl<T: ?Sized> Mutex<T> {
    /// Waits for the lock. A checkpoint, also when the lock is free.
    ///
    /// ```
    /// use std::time::Duration;
    /// use trellis::sync::Mutex;
    ///
    /// trellis::run(async {
    ///     let mutex = Mutex::new(0);
    ///     let held = mutex.lock().await.unwrap();
    ///     // While it is held, a second `lock` waits; a deadline ends the wait, holding nothing.
    ///     let second = trellis::move_on_after(Duration::from_millis(5), mutex.lock()).await;
    ///     assert!(second.is_none());
    ///     drop(held);
    ///     *mutex.lock().await.unwrap() += 1;
    ///     assert_eq!(*mutex.lock().await.unwrap(), 1);
    /// });
    /// ```
    ///
    /// # Errors
    /// [`Cancelled`] if the enclosing scope was cancelled before the lock was handed over; the
    /// lock is then not held.
    pub fn lock(&self) -> impl Future<Output = Result<MutexGuard<'_, T>, Cancelled>> + '_ {
        Lock {
            mutex: self,
            phase: LockPhase::Start,
        }
    }

    /// [`lock`](Mutex::lock) for a mutex in an `Arc`: the guard owns a reference to the mutex
    /// instead of borrowing it, so it can move into a spawned task (`'static`).
    ///
    /// # Errors
    /// [`Cancelled`], as for [`lock`](Mutex::lock).
    ///
    /// ```
    /// use std::sync::Arc;
    /// use trellis::sync::Mutex;
    ///
    /// trellis::run(async {
    ///     let count = Arc::new(Mutex::new(0));
    ///     trellis::nursery(|n| async move {
    ///         let mut guard = count.clone().lock_owned().await?;
    ///         n.spawn(async move {
    ///             *guard += 1; // the task holds the lock until it ends
    ///             Ok(())
    ///         })?;
    ///         assert_eq!(*count.lock().await?, 1); // waits for the task's guard
    ///         Ok::<_, trellis::Error>(())
    ///     })
    ///     .await
    ///     .unwrap();
    /// });
    /// ```
    pub async fn lock_owned(self: Arc<Self>) -> Result<OwnedMutexGuard<T>, Cancelled> {
        let guard = self.lock().await?;
        // The lock passes to the owned guard made next, which releases it.
        std::mem::forget(guard);
        Ok(OwnedMutexGuard {
            mutex: self,
            _marker: PhantomData,
        })
    }

    /// Takes the lock if it is free now. Not a checkpoint; usable outside a runtime.
    ///
    /// ```
    /// use trellis::sync::Mutex;
    ///
    /// let mutex = Mutex::new(5);
    /// let guard = mutex.try_lock().unwrap();
    /// assert!(matches!(mutex.try_lock(), Err(trellis::Error::WouldBlock)));
    /// drop(guard);
    /// assert_eq!(*mutex.try_lock().unwrap(), 5);
    /// ```
    ///
    /// # Errors
    /// [`Error::WouldBlock`] if the lock is held.
    pub fn try_lock(&self) -> Result<MutexGuard<'_, T>, Error> {
        let owner = parking_lot::current_task_id();
        let taken = !self.word.is_held()
            && (self.word.try_take(owner)
                || parking_lot::try_now::<LockSite>(
                    &self.state,
                    LockRequest::with_word(owner, &self.word),
                )
                .is_ok());
        if taken {
            Ok(MutexGuard {
                mutex: self,
                _marker: PhantomData,
            })
        } else {
            Err(Error::WouldBlock)
        }
    }

    /// Whether the lock is held.
    ///
    /// ```
    /// let mutex = trellis::sync::Mutex::new(());
    /// let guard = mutex.try_lock().unwrap();
    /// assert!(mutex.is_locked());
    /// drop(guard);
    /// assert!(!mutex.is_locked());
    /// ```
    pub fn is_locked(&self) -> bool {
        self.statistics().locked
    }

    /// The data, through a unique borrow (no locking needed).
    ///
    /// ```
    /// let mut mutex = trellis::sync::Mutex::new(1);
    /// *mutex.get_mut() += 1; // no other reference can exist, so no lock is taken
    /// assert_eq!(mutex.into_inner(), 2);
    /// ```
    pub fn get_mut(&mut self) -> &mut T {
        self.data.get_mut()
    }

    /// Counters, for debugging.
    ///
    /// ```
    /// let mutex = trellis::sync::Mutex::new(());
    /// let stats = mutex.statistics();
    /// assert!(!stats.locked);
    /// assert_eq!(stats.owner, None);
    /// ```
    pub fn statistics(&self) -> LockStatistics {
        // While the word decides nobody waits, and the word alone is a consistent snapshot.
        match self.word.statistics() {
            Some((locked, owner)) => LockStatistics {
                locked,
                owner,
                tasks_waiting: 0,
            },
            None => lock(&self.state).statistics(),
        }
    }

    /// The fast path of [`lock`](Mutex::lock): the checkpoint's cancel check, then the lock
    /// through the word, when the lock is free, nobody waits and the task's yield budget lets
    /// this operation skip its schedule point. `Ok(false)`: go the parking lot's way (which
    /// yields when the budget is spent, or after acting under trio's rule, and queues when the
    /// lock is held).
    #[inline]
    fn acquire_at_once(&self) -> Result<bool, Cancelled> {
        if !context::may_skip_yield() {
            return Ok(false);
        }
        if let Some(c) = current_cancellation(LockSite::NAME) {
            return Err(c);
        }
        if !self.word.try_take(parking_lot::current_task_id()) {
            return Ok(false);
        }
        let must_yield = context::must_yield();
        debug_assert!(!must_yield, "the budget was checked above");
        Ok(true)
    }

    #[inline]
    fn unlock(&self) {
        if !self.word.try_release() {
            self.unlock_queued();
        }
    }

    /// A release once the lock has moved into the state, out of line (see `Lock::poll_queued`).
    #[inline(never)]
    fn unlock_queued(&self) {
        let mut wakes = WakeList::new();
        lock(&self.state).release(&mut wakes, Some(&self.word));
        wakes.wake_all();
    }
}

/// The future of [`Mutex::lock`]: on its first poll, the lock through the word when it can
/// be taken at once ([`Mutex::acquire_at_once`]); otherwise the parking lot's operation, which
/// yields, queues and hands over. Written out rather than as an `async fn` around that
/// operation, whose two nested state machines a free lock paid for on every call: with the
/// inlining below, 143 → 103 instructions per lock and unlock in `lock_contention`.
struct Lock<'a, T: ?Sized> {
    mutex: &'a Mutex<T>,
    phase: LockPhase<'a>,
}

enum LockPhase<'a> {
    /// Not polled yet.
    Start,
    /// Going the parking lot's way.
    Queued(Op<'a, LockSite>),
    /// Returned its result.
    Finished,
}

// The operation never pins its fields (see `Op`), and the rest are references.
impl<T: ?Sized> Unpin for Lock<'_, T> {}

impl<'a, T: ?Sized> Future for Lock<'a, T> {
    type Output = Result<MutexGuard<'a, T>, Cancelled>;

    // Always inlined into the awaiting state machine, as `Checkpoint::poll` is: a call of its
    // own paid an entry and exit longer than the free lock's path.
    #[inline(always)]
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = &mut *self;
        let at_once = match this.phase {
            LockPhase::Start => this.mutex.acquire_at_once(),
            _ => Ok(false),
        };
        let taken = match at_once {
            Ok(true) => Ok(()),
            Ok(false) => ready!(this.poll_queued(cx)),
            Err(c) => Err(c),
        };
        this.phase = LockPhase::Finished;
        Poll::Ready(taken.map(|()| MutexGuard {
            mutex: this.mutex,
            _marker: PhantomData,
        }))
    }
}

impl<'a, T: ?Sized> Lock<'a, T> {
    /// The parking lot's way, out of line: inlined, its registers and calls made the free
    /// lock's path pay a longer entry and exit on every lock.
    #[inline(never)]
    fn poll_queued(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Cancelled>> {
        let mutex = self.mutex;
        let op = match &mut self.phase {
            LockPhase::Start => {
                let request = LockRequest::with_word(parking_lot::current_task_id(), &mutex.word);
                self.phase.queue(Op::new(&mutex.state, request))
            }
            LockPhase::Queued(op) => op,
            LockPhase::Finished => panic!("{} future polled after it completed", LockSite::NAME),
        };
        Pin::new(op).poll(cx)
    }
}

impl<'a> LockPhase<'a> {
    /// Moves to `Queued` with `op`, and lends it back to be polled.
    fn queue(&mut self, op: Op<'a, LockSite>) -> &mut Op<'a, LockSite> {
        *self = LockPhase::Queued(op);
        match self {
            LockPhase::Queued(op) => op,
            _ => unreachable!("just set"),
        }
    }
}

impl<T: Default> Default for Mutex<T> {
    fn default() -> Self {
        Mutex::new(T::default())
    }
}

impl<T: ?Sized> fmt::Debug for Mutex<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Mutex")
            .field("statistics", &self.statistics())
            .finish_non_exhaustive()
    }
}

/// Access to the data of a locked [`Mutex`]; releases the lock when dropped.
///
/// ```
/// use trellis::sync::{Mutex, MutexGuard};
///
/// trellis::run(async {
///     let mutex = Mutex::new(vec![1]);
///     {
///         let mut guard: MutexGuard<'_, Vec<i32>> = mutex.lock().await.unwrap();
///         guard.push(2); // DerefMut to the data
///         assert_eq!(guard.len(), 2);
///     } // released here
///     assert!(!mutex.is_locked());
/// });
/// ```
#[must_use = "dropping the guard releases the lock at once"]
pub struct MutexGuard<'a, T: ?Sized> {
    mutex: &'a Mutex<T>,
    // Send iff T: Send, Sync iff T: Sync, like `&mut T`.
    _marker: PhantomData<&'a mut T>,
}

impl<T: ?Sized> Deref for MutexGuard<'_, T> {
    type Target = T;

    fn deref(&self) -> &T {
        // SAFETY: the guard exists only while this task holds the lock, so no other reference to
        // the data is live.
        unsafe { &*self.mutex.data.get() }
    }
}

impl<T: ?Sized> DerefMut for MutexGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: as in `deref`, and `&mut self` makes this borrow unique.
        unsafe { &mut *self.mutex.data.get() }
    }
}

impl<T: ?Sized> Drop for MutexGuard<'_, T> {
    fn drop(&mut self) {
        self.mutex.unlock();
    }
}

/// Access to the data of a locked [`Mutex`] in an `Arc`, owning a reference to it (see
/// [`Mutex::lock_owned`]); releases the lock when dropped.
///
/// ```
/// use std::sync::Arc;
/// use trellis::sync::Mutex;
///
/// trellis::run(async {
///     let mutex = Arc::new(Mutex::new(0));
///     trellis::nursery(|n| {
///         let mutex = mutex.clone();
///         async move {
///             // The guard owns an `Arc`, so it can move into a task with no borrow to outlive.
///             let mut guard = mutex.clone().lock_owned().await?;
///             n.spawn(async move {
///                 *guard += 1;
///                 Ok(())
///             })?;
///             Ok::<_, trellis::Error>(())
///         }
///     })
///     .await
///     .unwrap();
///     assert_eq!(*mutex.lock().await.unwrap(), 1);
/// });
/// ```
#[must_use = "dropping the guard releases the lock at once"]
pub struct OwnedMutexGuard<T: ?Sized> {
    mutex: Arc<Mutex<T>>,
    // Send iff T: Send, Sync iff T: Sync (the `Arc` alone would be Sync for any `T: Send`).
    _marker: PhantomData<T>,
}

impl<T: ?Sized> Deref for OwnedMutexGuard<T> {
    type Target = T;

    fn deref(&self) -> &T {
        // SAFETY: the guard exists only while its holder holds the lock, so no other reference
        // to the data is live.
        unsafe { &*self.mutex.data.get() }
    }
}

impl<T: ?Sized> DerefMut for OwnedMutexGuard<T> {
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: as in `deref`, and `&mut self` makes this borrow unique.
        unsafe { &mut *self.mutex.data.get() }
    }
}

impl<T: ?Sized> Drop for OwnedMutexGuard<T> {
    fn drop(&mut self) {
        self.mutex.unlock();
    }
}

impl<T: ?Sized + fmt::Debug> fmt::Debug for OwnedMutexGuard<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&**self, f)
    }
}

impl<T: ?Sized + fmt::Debug> fmt::Debug for MutexGuard<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&**self, f)
    }
}
