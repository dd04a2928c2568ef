//! `Mutex<T>`: an async mutual-exclusion lock with FIFO hand-off (trio's `Lock`), and the raw
//! lock state that `Condition` shares.
//!
//! State: `locked`, the `owner` (task that acquired, for statistics) and the lot of waiters.
//! Invariant: while waiters are parked in `MAIN`, the lock is held. Release hands the lock
//! straight to the first waiter (it stays locked, the owner changes), so a task that calls
//! `lock` later cannot barge in ahead of it.
//!
//! A panic while the guard is held does not poison the mutex (as in trio, tokio and
//! async-std): the guard's drop releases the lock during unwinding, and the panic itself travels
//! to the task's nursery, which cancels the siblings (N10). Code that must not see
//! half-updated data after a panic should restore it in its own `Drop` or catch the panic.

use std::cell::UnsafeCell;
use std::fmt;
use std::marker::PhantomData;
use std::ops::{Deref, DerefMut};
use std::sync::Arc;
use std::sync::Mutex as StdMutex;

use super::parking_lot::{self, lock, Op, ParkingLot, Site, WakeList, MAIN};
use crate::cancel::waiting::LockWatch;
use crate::error::{Cancelled, Error};

/// Lock state shared by [`Mutex`] and [`Condition`](super::Condition). Waiters bring the id of
/// their task, which becomes the owner when the lock is handed to them.
#[derive(Default)]
pub(crate) struct RawLock {
    locked: bool,
    owner: Option<u64>,
    /// The owner as the deadlock report reads it, once a waiter parked with detection on.
    watch: Option<Arc<LockWatch>>,
    pub(crate) lot: ParkingLot<(), Option<u64>>,
}

impl RawLock {
    fn set_owner(&mut self, owner: Option<u64>) {
        self.owner = owner;
        if let Some(watch) = &self.watch {
            watch.set_holder(owner);
        }
    }

    /// Releases the lock: the first waiter of `MAIN` gets it, or it becomes free.
    pub(crate) fn release(&mut self, wakes: &mut WakeList) {
        match self.lot.front(MAIN) {
            Some((key, &mut owner)) => {
                self.set_owner(owner);
                self.lot.unpark_key(key, (), wakes);
            }
            None => {
                self.locked = false;
                self.set_owner(None);
            }
        }
    }

    /// If the lock is free, gives it to the first waiter of `MAIN` (one that joined the line
    /// while the lock was free: a cancelled condition waiter).
    pub(crate) fn grant_if_free(&mut self, wakes: &mut WakeList) {
        if !self.locked {
            if let Some((key, &mut owner)) = self.lot.front(MAIN) {
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
    type Request = Option<u64>;
    type Output = ();
    type Error = Cancelled;
    const NAME: &'static str = "sync::Mutex::lock";

    fn lot(state: &mut RawLock) -> &mut ParkingLot<(), Option<u64>> {
        &mut state.lot
    }

    fn attempt(state: &mut RawLock, owner: &mut Option<u64>, _: &mut WakeList) -> Option<()> {
        if state.locked {
            return None;
        }
        state.locked = true;
        state.set_owner(*owner);
        Some(())
    }

    fn finish((): (), _: Option<u64>) -> Result<(), Cancelled> {
        Ok(())
    }

    fn cancelled(c: Cancelled, _: Option<u64>) -> Cancelled {
        c
    }

    fn redeliver(
        state: &mut RawLock,
        (): (),
        _: &mut Option<u64>,
        wakes: &mut WakeList,
    ) -> Option<()> {
        state.release(wakes);
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
    state: StdMutex<RawLock>,
    data: UnsafeCell<T>,
}

// SAFETY: the mutex hands out access to `T` to one guard at a time (the `locked` flag, changed
// only under `state`), so sharing the mutex across threads needs only `T: Send`, as for
// `std::sync::Mutex`.
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
    pub async fn lock(&self) -> Result<MutexGuard<'_, T>, Cancelled> {
        Op::<LockSite>::new(&self.state, parking_lot::current_task_id()).await?;
        Ok(MutexGuard {
            mutex: self,
            _marker: PhantomData,
        })
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
        Op::<LockSite>::new(&self.state, parking_lot::current_task_id()).await?;
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
        match parking_lot::try_now::<LockSite>(&self.state, parking_lot::current_task_id()) {
            Ok(_) => Ok(MutexGuard {
                mutex: self,
                _marker: PhantomData,
            }),
            Err(_) => Err(Error::WouldBlock),
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
        lock(&self.state).locked
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
        lock(&self.state).statistics()
    }

    fn unlock(&self) {
        let mut wakes = WakeList::new();
        lock(&self.state).release(&mut wakes);
        wakes.wake_all();
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
