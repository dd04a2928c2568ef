//! `RwLock<T>`: many readers or one writer, served in FIFO order.
//!
//! trio has no reader-writer lock; this one follows the same rules as the other primitives. One
//! line holds both kinds of waiter in arrival order. A new reader waits if anyone is queued
//! (so a stream of readers cannot starve a writer); when the lock is released, the first writer
//! is served alone, or the run of readers at the front is served together.
//!
//! State: the number of readers inside, whether a writer is inside, and the lot (requests say
//! `Read` or `Write`). Invariant: a waiter is parked only if it could not enter when it arrived
//! or someone was ahead of it; `grant` runs after every release and every withdrawal, so the
//! front of the line is never left waiting for a lock it could take.

use std::cell::UnsafeCell;
use std::fmt;
use std::marker::PhantomData;
use std::ops::{Deref, DerefMut};
use std::sync::Mutex as StdMutex;

use super::parking_lot::{lock, try_now, Op, ParkingLot, Site, WakeList, MAIN};
use crate::error::{Cancelled, Error};

#[derive(Clone, Copy, PartialEq, Eq)]
enum Access {
    Read,
    Write,
}

#[derive(Default)]
struct State {
    readers: usize,
    writer: bool,
    lot: ParkingLot<(), Access>,
}

impl State {
    fn can_enter(&self, access: Access) -> bool {
        match access {
            Access::Read => !self.writer,
            Access::Write => !self.writer && self.readers == 0,
        }
    }

    fn enter(&mut self, access: Access) {
        match access {
            Access::Read => self.readers += 1,
            Access::Write => self.writer = true,
        }
    }

    /// Serves the front of the line: one writer, or every reader up to the first writer.
    fn grant(&mut self, wakes: &mut WakeList) {
        while let Some((key, &mut access)) = self.lot.front(MAIN) {
            if !self.can_enter(access) {
                break;
            }
            self.enter(access);
            self.lot.unpark_key(key, (), wakes);
            if access == Access::Write {
                break;
            }
        }
    }

    fn leave(&mut self, access: Access, wakes: &mut WakeList) {
        match access {
            Access::Read => self.readers -= 1,
            Access::Write => self.writer = false,
        }
        self.grant(wakes);
    }
}

struct AccessSite;

impl Site for AccessSite {
    type State = State;
    type Value = ();
    type Request = Access;
    type Output = ();
    type Error = Cancelled;
    const NAME: &'static str = "sync::RwLock::read/write";

    fn lot(state: &mut State) -> &mut ParkingLot<(), Access> {
        &mut state.lot
    }

    fn attempt(state: &mut State, access: &mut Access, _: &mut WakeList) -> Option<()> {
        if state.lot.is_empty(MAIN) && state.can_enter(*access) {
            state.enter(*access);
            Some(())
        } else {
            None
        }
    }

    fn finish((): (), _: Access) -> Result<(), Cancelled> {
        Ok(())
    }

    fn cancelled(c: Cancelled, _: Access) -> Cancelled {
        c
    }

    fn redeliver(
        state: &mut State,
        (): (),
        access: &mut Access,
        wakes: &mut WakeList,
    ) -> Option<()> {
        state.leave(*access, wakes);
        None
    }

    fn withdrawn(state: &mut State, _: &Access, wakes: &mut WakeList) {
        // A writer at the front that gives up may unblock the readers behind it.
        state.grant(wakes);
    }
}

/// Counters of an [`RwLock`].
///
/// ```
/// use trellis::sync::RwLock;
///
/// trellis::run(async {
///     let lock = RwLock::new(0);
///     let (a, b) = (lock.read().await.unwrap(), lock.read().await.unwrap());
///     let stats = lock.statistics();
///     assert_eq!(stats.readers, 2);
///     assert!(!stats.writer);
///     assert_eq!((stats.readers_waiting, stats.writers_waiting), (0, 0));
///     drop((a, b));
/// });
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct RwLockStatistics {
    /// Readers holding the lock.
    pub readers: usize,
    /// Whether a writer holds the lock.
    pub writer: bool,
    /// Tasks blocked in `read`.
    pub readers_waiting: usize,
    /// Tasks blocked in `write`.
    pub writers_waiting: usize,
}

/// An async reader-writer lock protecting a `T`: any number of readers, or one writer.
///
/// Fair: waiters are served in arrival order, readers and writers alike, so a steady stream of
/// readers cannot starve a writer; consecutive readers at the front enter together.
///
/// ```
/// use trellis::sync::RwLock;
///
/// trellis::run(async {
///     let lock = RwLock::new(vec![1, 2]);
///     {
///         let a = lock.read().await?;
///         let b = lock.read().await?; // readers share the lock
///         assert_eq!(a.len() + b.len(), 4);
///         assert!(lock.try_write().is_err()); // a writer must wait for them
///     }
///     lock.write().await?.push(3);
///     assert_eq!(*lock.read().await?, [1, 2, 3]);
///     Ok::<_, trellis::Cancelled>(())
/// })
/// .unwrap();
/// ```
///
/// Cancel safety: a cancelled or dropped `read`/`write` holds nothing and keeps no place in
/// line (a writer that gives up lets the readers queued behind it in); access handed to a
/// waiter that is dropped before it runs passes on.
pub struct RwLock<T: ?Sized> {
    state: StdMutex<State>,
    data: UnsafeCell<T>,
}

// SAFETY: readers get `&T` on several threads at once (needs `T: Sync`); a writer gets `&mut T`
// on some thread (needs `T: Send`). Access is granted only under `state`.
unsafe impl<T: ?Sized + Send + Sync> Sync for RwLock<T> {}
// SAFETY: moving the lock moves the `T`.
unsafe impl<T: ?Sized + Send> Send for RwLock<T> {}

impl<T> RwLock<T> {
    /// A new, unlocked lock holding `value`.
    ///
    /// ```
    /// let lock = trellis::sync::RwLock::new("config");
    /// assert_eq!(*lock.try_read().unwrap(), "config");
    /// ```
    pub fn new(value: T) -> Self {
        RwLock {
            state: StdMutex::new(State::default()),
            data: UnsafeCell::new(value),
        }
    }

    /// Consumes the lock and returns the data.
    ///
    /// ```
    /// trellis::run(async {
    ///     let lock = trellis::sync::RwLock::new(vec![1]);
    ///     lock.write().await.unwrap().push(2);
    ///     assert_eq!(lock.into_inner(), [1, 2]);
    /// });
    /// ```
    pub fn into_inner(self) -> T {
        self.data.into_inner()
    }
}

impl<T: ?Sized> RwLock<T> {
    /// Waits for shared access. A checkpoint.
    ///
    /// # Errors
    /// [`Cancelled`] if the enclosing scope was cancelled first; nothing is held then.
    ///
    /// ```
    /// use std::sync::Arc;
    /// use trellis::sync::RwLock;
    ///
    /// trellis::run(async {
    ///     let lock = Arc::new(RwLock::new(10));
    ///     trellis::nursery(|n| {
    ///         let lock = lock.clone();
    ///         async move {
    ///             // Readers share the lock: all three hold it at once.
    ///             for _ in 0..3 {
    ///                 let lock = lock.clone();
    ///                 n.spawn(async move {
    ///                     let value = lock.read().await?;
    ///                     trellis::checkpoint().await?;
    ///                     assert_eq!(*value, 10);
    ///                     Ok(())
    ///                 })?;
    ///             }
    ///             Ok::<_, trellis::Error>(())
    ///         }
    ///     })
    ///     .await
    ///     .unwrap();
    /// });
    /// ```
    pub async fn read(&self) -> Result<RwLockReadGuard<'_, T>, Cancelled> {
        Op::<AccessSite>::new(&self.state, Access::Read).await?;
        Ok(RwLockReadGuard {
            lock: self,
            _marker: PhantomData,
        })
    }

    /// Waits for exclusive access. A checkpoint.
    ///
    /// # Errors
    /// [`Cancelled`] if the enclosing scope was cancelled first; nothing is held then.
    ///
    /// ```
    /// use std::time::Duration;
    /// use trellis::sync::RwLock;
    ///
    /// trellis::run(async {
    ///     let lock = RwLock::new(1);
    ///     let reader = lock.read().await.unwrap();
    ///     // A writer waits for every reader to leave.
    ///     let early = trellis::move_on_after(Duration::from_millis(5), lock.write()).await;
    ///     assert!(early.is_none());
    ///     drop(reader);
    ///     *lock.write().await.unwrap() = 2;
    ///     assert_eq!(*lock.read().await.unwrap(), 2);
    /// });
    /// ```
    pub async fn write(&self) -> Result<RwLockWriteGuard<'_, T>, Cancelled> {
        Op::<AccessSite>::new(&self.state, Access::Write).await?;
        Ok(RwLockWriteGuard {
            lock: self,
            _marker: PhantomData,
        })
    }

    /// Takes shared access if possible now (no writer inside, nobody queued). Not a checkpoint.
    ///
    /// # Errors
    /// [`Error::WouldBlock`] otherwise.
    ///
    /// ```
    /// let lock = trellis::sync::RwLock::new(0);
    /// let r1 = lock.try_read().unwrap();
    /// let _r2 = lock.try_read().unwrap(); // readers share
    /// assert!(lock.try_write().is_err());
    /// drop(r1);
    /// ```
    pub fn try_read(&self) -> Result<RwLockReadGuard<'_, T>, Error> {
        match try_now::<AccessSite>(&self.state, Access::Read) {
            Ok(_) => Ok(RwLockReadGuard {
                lock: self,
                _marker: PhantomData,
            }),
            Err(_) => Err(Error::WouldBlock),
        }
    }

    /// Takes exclusive access if the lock is free now and nobody is queued. Not a checkpoint.
    ///
    /// # Errors
    /// [`Error::WouldBlock`] otherwise.
    ///
    /// ```
    /// let lock = trellis::sync::RwLock::new(0);
    /// let mut w = lock.try_write().unwrap();
    /// *w += 1;
    /// assert!(matches!(lock.try_read(), Err(trellis::Error::WouldBlock)));
    /// drop(w);
    /// assert_eq!(*lock.try_read().unwrap(), 1);
    /// ```
    pub fn try_write(&self) -> Result<RwLockWriteGuard<'_, T>, Error> {
        match try_now::<AccessSite>(&self.state, Access::Write) {
            Ok(_) => Ok(RwLockWriteGuard {
                lock: self,
                _marker: PhantomData,
            }),
            Err(_) => Err(Error::WouldBlock),
        }
    }

    /// The data, through a unique borrow (no locking needed).
    ///
    /// ```
    /// let mut lock = trellis::sync::RwLock::new(String::new());
    /// lock.get_mut().push_str("no locking");
    /// assert_eq!(lock.into_inner(), "no locking");
    /// ```
    pub fn get_mut(&mut self) -> &mut T {
        self.data.get_mut()
    }

    /// Counters, for debugging.
    ///
    /// ```
    /// let lock = trellis::sync::RwLock::new(());
    /// let _w = lock.try_write().unwrap();
    /// assert!(lock.statistics().writer);
    /// ```
    pub fn statistics(&self) -> RwLockStatistics {
        let st = lock(&self.state);
        let writers = st
            .lot
            .keys(MAIN)
            .into_iter()
            .filter(|&k| *st.lot.request(k) == Access::Write)
            .count();
        RwLockStatistics {
            readers: st.readers,
            writer: st.writer,
            readers_waiting: st.lot.len(MAIN) - writers,
            writers_waiting: writers,
        }
    }

    fn release(&self, access: Access) {
        let mut wakes = WakeList::new();
        lock(&self.state).leave(access, &mut wakes);
        wakes.wake_all();
    }
}

impl<T: Default> Default for RwLock<T> {
    fn default() -> Self {
        RwLock::new(T::default())
    }
}

impl<T: ?Sized> fmt::Debug for RwLock<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RwLock")
            .field("statistics", &self.statistics())
            .finish_non_exhaustive()
    }
}

/// Shared access to the data of an [`RwLock`]; released when dropped.
///
/// ```
/// use trellis::sync::{RwLock, RwLockReadGuard};
///
/// let lock = RwLock::new(vec![1, 2, 3]);
/// let guard: RwLockReadGuard<'_, Vec<i32>> = lock.try_read().unwrap();
/// assert_eq!(guard.len(), 3); // Deref to the data
/// drop(guard);
/// assert_eq!(lock.statistics().readers, 0);
/// ```
#[must_use = "dropping the guard releases the lock at once"]
pub struct RwLockReadGuard<'a, T: ?Sized> {
    lock: &'a RwLock<T>,
    // Send and Sync iff T: Sync, like `&T`.
    _marker: PhantomData<&'a T>,
}

impl<T: ?Sized> Deref for RwLockReadGuard<'_, T> {
    type Target = T;

    fn deref(&self) -> &T {
        // SAFETY: while a read guard exists no writer is inside (the `writer` flag, changed only
        // under `state`), so only shared references to the data are live.
        unsafe { &*self.lock.data.get() }
    }
}

impl<T: ?Sized> Drop for RwLockReadGuard<'_, T> {
    fn drop(&mut self) {
        self.lock.release(Access::Read);
    }
}

impl<T: ?Sized + fmt::Debug> fmt::Debug for RwLockReadGuard<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&**self, f)
    }
}

/// Exclusive access to the data of an [`RwLock`]; released when dropped.
///
/// ```
/// use trellis::sync::{RwLock, RwLockWriteGuard};
///
/// let lock = RwLock::new(vec![1]);
/// let mut guard: RwLockWriteGuard<'_, Vec<i32>> = lock.try_write().unwrap();
/// guard.push(2); // DerefMut to the data
/// drop(guard);
/// assert_eq!(*lock.try_read().unwrap(), [1, 2]);
/// ```
#[must_use = "dropping the guard releases the lock at once"]
pub struct RwLockWriteGuard<'a, T: ?Sized> {
    lock: &'a RwLock<T>,
    // Send iff T: Send, Sync iff T: Sync, like `&mut T`.
    _marker: PhantomData<&'a mut T>,
}

impl<T: ?Sized> Deref for RwLockWriteGuard<'_, T> {
    type Target = T;

    fn deref(&self) -> &T {
        // SAFETY: while the write guard exists nobody else is inside the lock.
        unsafe { &*self.lock.data.get() }
    }
}

impl<T: ?Sized> DerefMut for RwLockWriteGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: as in `deref`, and `&mut self` makes this borrow unique.
        unsafe { &mut *self.lock.data.get() }
    }
}

impl<T: ?Sized> Drop for RwLockWriteGuard<'_, T> {
    fn drop(&mut self) {
        self.lock.release(Access::Write);
    }
}

impl<T: ?Sized + fmt::Debug> fmt::Debug for RwLockWriteGuard<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&**self, f)
    }
}
