//! `Condition<T>`: a lock plus a wait queue for "wake me when the data changes" (trio's
//! `Condition`).
//!
//! The condition's lock and its waiters share one lot: lock waiters in `MAIN`, condition
//! waiters in `STANDBY`. `wait` releases the lock and parks in `STANDBY` in one step (under the
//! state mutex, so a notify cannot slip in between). `notify` reparks waiters from `STANDBY` to
//! the back of `MAIN` (trio's `repark`): a notified waiter is then an ordinary lock waiter that
//! gets the lock by hand-off, ahead of tasks that ask for it later, and without a thundering
//! herd on `notify_all`.
//!
//! Cancellation: a cancelled `wait` must hold the lock again when it returns (trio's rule; the
//! caller's guard is still in scope). The waiter moves itself from `STANDBY` to the back of
//! `MAIN` (where it already is if it was notified) and keeps waiting, shielded, for the hand-off;
//! then it returns the cancellation together with the re-acquired guard.

use std::cell::UnsafeCell;
use std::error::Error as StdError;
use std::fmt;
use std::future::Future;
use std::marker::PhantomData;
use std::mem;
use std::ops::{Deref, DerefMut};
use std::pin::Pin;
use std::sync::Mutex as StdMutex;
use std::task::{Context, Poll};

use super::mutex::{LockRequest, LockSite, LockStatistics, RawLock};
use super::parking_lot::{self, lock, Key, Left, Op, WakeList, MAIN, STANDBY};
use crate::cancel::current;
use crate::cancel::{current_cancellation, CancelWaiter};
use crate::error::{AsCancelled, Cancelled, Error};

/// A lock protecting a `T`, with a queue of tasks waiting for the data to change (trio's
/// `Condition`).
///
/// Lock it, check the data, and if it is not what you need, [`wait`](ConditionGuard::wait): the
/// lock is released while you wait and held again when `wait` returns. Whoever changes the data
/// calls [`notify`](ConditionGuard::notify) or [`notify_all`](ConditionGuard::notify_all) while
/// holding the lock. Notified waiters get the lock in FIFO order.
///
/// ```
/// use std::sync::Arc;
/// use trellis::sync::Condition;
///
/// trellis::run(async {
///     let queue = Arc::new(Condition::new(Vec::<u32>::new()));
///     trellis::nursery(|n| {
///         let queue = queue.clone();
///         async move {
///             let consumer = queue.clone();
///             let got = n.spawn(async move {
///                 let mut items = consumer.lock().await?;
///                 while items.is_empty() {
///                     items = items.wait().await?; // lock released while waiting
///                 }
///                 Ok(items.pop().unwrap())
///             })?;
///             let mut items = queue.lock().await?;
///             items.push(7);
///             items.notify(1);
///             drop(items);
///             assert_eq!(got.await?, 7);
///             Ok::<_, trellis::Error>(())
///         }
///     })
///     .await
///     .unwrap();
/// });
/// ```
///
/// Where trio checks at run time that the caller holds the lock to `wait` or `notify`, these are
/// methods of the guard, so holding it is checked by the compiler.
pub struct Condition<T: ?Sized> {
    state: StdMutex<RawLock>,
    data: UnsafeCell<T>,
}

// SAFETY: as for `Mutex<T>`: one guard at a time has access to `T`.
unsafe impl<T: ?Sized + Send> Sync for Condition<T> {}
// SAFETY: moving the condition moves the `T`.
unsafe impl<T: ?Sized + Send> Send for Condition<T> {}

/// Counters of a [`Condition`] (trio's `ConditionStatistics`).
///
/// ```
/// use std::sync::Arc;
/// use trellis::sync::Condition;
///
/// trellis::run(async {
///     let cond = Arc::new(Condition::new(false));
///     trellis::nursery(|n| {
///         let cond = cond.clone();
///         async move {
///             for _ in 0..1 {
///                 let cond = cond.clone();
///                 n.spawn(async move {
///                     let mut ready = cond.lock().await?;
///                     while !*ready {
///                         ready = ready.wait().await?;
///                     }
///                     Ok(())
///                 })?;
///             }
///             trellis::testing::wait_all_tasks_blocked().await?;
///             let stats = cond.statistics();
///             assert_eq!(stats.tasks_waiting, 1);
///             assert!(!stats.lock_statistics.locked); // released while waiting
///             let mut ready = cond.lock().await?;
///             *ready = true;
///             ready.notify_all();
///             Ok::<_, trellis::Error>(())
///         }
///     })
///     .await
///     .unwrap();
/// });
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct ConditionStatistics {
    /// Tasks blocked in `wait` that have not been notified yet.
    pub tasks_waiting: usize,
    /// The lock's counters; notified waiters count in its `tasks_waiting`.
    pub lock_statistics: LockStatistics,
}

impl<T> Condition<T> {
    /// A new condition with its lock free, protecting `value`.
    ///
    /// ```
    /// let cond = trellis::sync::Condition::new(0u32);
    /// assert!(!cond.is_locked());
    /// ```
    pub fn new(value: T) -> Self {
        Condition {
            state: StdMutex::new(RawLock::default()),
            data: UnsafeCell::new(value),
        }
    }

    /// Consumes the condition and returns the data.
    ///
    /// ```
    /// let cond = trellis::sync::Condition::new(vec![1]);
    /// *cond.try_lock().unwrap() = vec![2];
    /// assert_eq!(cond.into_inner(), [2]);
    /// ```
    pub fn into_inner(self) -> T {
        self.data.into_inner()
    }
}

impl<T: ?Sized> Condition<T> {
    /// Waits for the lock. A checkpoint.
    ///
    /// # Errors
    /// [`Cancelled`] if the enclosing scope was cancelled first; the lock is then not held.
    ///
    /// ```
    /// trellis::run(async {
    ///     let cond = trellis::sync::Condition::new(1);
    ///     let mut guard = cond.lock().await.unwrap();
    ///     *guard += 1;
    ///     assert!(cond.is_locked());
    ///     drop(guard);
    ///     assert_eq!(*cond.lock().await.unwrap(), 2);
    /// });
    /// ```
    pub async fn lock(&self) -> Result<ConditionGuard<'_, T>, Cancelled> {
        Op::<LockSite>::new(
            &self.state,
            LockRequest::plain(parking_lot::current_task_id()),
        )
        .await?;
        Ok(self.guard())
    }

    /// Takes the lock if it is free now. Not a checkpoint.
    ///
    /// # Errors
    /// [`Error::WouldBlock`] if it is held.
    ///
    /// ```
    /// let cond = trellis::sync::Condition::new(());
    /// let guard = cond.try_lock().unwrap();
    /// assert!(matches!(cond.try_lock(), Err(trellis::Error::WouldBlock)));
    /// drop(guard);
    /// ```
    pub fn try_lock(&self) -> Result<ConditionGuard<'_, T>, Error> {
        match parking_lot::try_now::<LockSite>(
            &self.state,
            LockRequest::plain(parking_lot::current_task_id()),
        ) {
            Ok(_) => Ok(self.guard()),
            Err(_) => Err(Error::WouldBlock),
        }
    }

    /// Whether the lock is held.
    ///
    /// ```
    /// let cond = trellis::sync::Condition::new(());
    /// let guard = cond.try_lock().unwrap();
    /// assert!(cond.is_locked());
    /// drop(guard);
    /// assert!(!cond.is_locked());
    /// ```
    pub fn is_locked(&self) -> bool {
        lock(&self.state).statistics().locked
    }

    /// Counters, for debugging.
    ///
    /// ```
    /// let cond = trellis::sync::Condition::new(());
    /// let stats = cond.statistics();
    /// assert_eq!(stats.tasks_waiting, 0);
    /// assert!(!stats.lock_statistics.locked);
    /// ```
    pub fn statistics(&self) -> ConditionStatistics {
        let st = lock(&self.state);
        ConditionStatistics {
            tasks_waiting: st.lot.len(STANDBY),
            lock_statistics: st.statistics(),
        }
    }

    fn guard(&self) -> ConditionGuard<'_, T> {
        ConditionGuard {
            cond: self,
            _marker: PhantomData,
        }
    }

    fn unlock(&self) {
        let mut wakes = WakeList::new();
        lock(&self.state).release(&mut wakes, None);
        wakes.wake_all();
    }
}

impl<T: Default> Default for Condition<T> {
    fn default() -> Self {
        Condition::new(T::default())
    }
}

impl<T: ?Sized> fmt::Debug for Condition<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Condition")
            .field("statistics", &self.statistics())
            .finish_non_exhaustive()
    }
}

/// The locked data of a [`Condition`]; releases the lock when dropped.
///
/// ```
/// use trellis::sync::{Condition, ConditionGuard};
///
/// trellis::run(async {
///     let cond = Condition::new(String::from("a"));
///     {
///         let mut guard: ConditionGuard<'_, String> = cond.lock().await.unwrap();
///         guard.push('b'); // DerefMut to the data
///     } // released here
///     assert_eq!(cond.into_inner(), "ab");
/// });
/// ```
#[must_use = "dropping the guard releases the lock at once"]
pub struct ConditionGuard<'a, T: ?Sized> {
    cond: &'a Condition<T>,
    _marker: PhantomData<&'a mut T>,
}

impl<'a, T: ?Sized> ConditionGuard<'a, T> {
    /// Releases the lock, waits until notified, and takes the lock again (in FIFO order among
    /// notified waiters). A checkpoint.
    ///
    /// # Errors
    /// [`WaitCancelled`] if the enclosing scope was cancelled: it carries the guard, because a
    /// cancelled wait also holds the lock again before it returns (trio's rule). If the scope
    /// was already cancelled when `wait` was called, the lock was never released.
    ///
    /// ```
    /// use std::sync::Arc;
    /// use trellis::sync::Condition;
    ///
    /// trellis::run(async {
    ///     let cond = Arc::new(Condition::new(false));
    ///     trellis::nursery(|n| {
    ///         let cond = cond.clone();
    ///         async move {
    ///             for _ in 0..1 {
    ///                 let cond = cond.clone();
    ///                 n.spawn(async move {
    ///                     let mut ready = cond.lock().await?;
    ///                     while !*ready {
    ///                         ready = ready.wait().await?;
    ///                     }
    ///                     Ok(())
    ///                 })?;
    ///             }
    ///             trellis::testing::wait_all_tasks_blocked().await?;
    ///             // The waiter released the lock while it waits: we can take it.
    ///             let mut ready = cond.try_lock()?;
    ///             *ready = true;
    ///             ready.notify(1);
    ///             Ok::<_, trellis::Error>(())
    ///         }
    ///     })
    ///     .await
    ///     .unwrap();
    /// });
    /// ```
    pub async fn wait(self) -> Result<Self, WaitCancelled<Self>> {
        if let Some(cancelled) = current_cancellation("sync::Condition::wait") {
            return Err(WaitCancelled {
                guard: self,
                cancelled,
            });
        }
        let cond = self.cond;
        // The lock passes from the guard to the wait, which releases it when it parks (and gives
        // it back, or releases it, if dropped).
        mem::forget(self);
        let cancelled = CondWait {
            state: &cond.state,
            phase: WaitPhase::Holding,
            cancel: CancelWaiter::new(),
            cancelled: None,
        }
        .await;
        let guard = cond.guard();
        match cancelled {
            None => Ok(guard),
            Some(cancelled) => Err(WaitCancelled { guard, cancelled }),
        }
    }

    /// Wakes up to `n` waiting tasks (the longest-waiting first); each takes the lock in turn
    /// after this guard releases it. Returns how many were woken. Not a checkpoint.
    ///
    /// ```
    /// use std::sync::Arc;
    /// use trellis::sync::Condition;
    ///
    /// trellis::run(async {
    ///     let cond = Arc::new(Condition::new(false));
    ///     trellis::nursery(|n| {
    ///         let cond = cond.clone();
    ///         async move {
    ///             for _ in 0..3 {
    ///                 let cond = cond.clone();
    ///                 n.spawn(async move {
    ///                     let mut ready = cond.lock().await?;
    ///                     while !*ready {
    ///                         ready = ready.wait().await?;
    ///                     }
    ///                     Ok(())
    ///                 })?;
    ///             }
    ///             trellis::testing::wait_all_tasks_blocked().await?;
    ///             let mut ready = cond.lock().await?;
    ///             *ready = true;
    ///             assert_eq!(ready.notify(2), 2); // two of the three
    ///             assert_eq!(ready.notify(5), 1); // the last one
    ///             assert_eq!(ready.notify(1), 0); // nobody left
    ///             Ok::<_, trellis::Error>(())
    ///         }
    ///     })
    ///     .await
    ///     .unwrap();
    /// });
    /// ```
    pub fn notify(&self, n: usize) -> usize {
        lock(&self.cond.state).lot.repark(STANDBY, MAIN, n)
    }

    /// Wakes every waiting task. Returns how many were woken.
    ///
    /// ```
    /// use std::sync::Arc;
    /// use trellis::sync::Condition;
    ///
    /// trellis::run(async {
    ///     let cond = Arc::new(Condition::new(false));
    ///     trellis::nursery(|n| {
    ///         let cond = cond.clone();
    ///         async move {
    ///             for _ in 0..3 {
    ///                 let cond = cond.clone();
    ///                 n.spawn(async move {
    ///                     let mut ready = cond.lock().await?;
    ///                     while !*ready {
    ///                         ready = ready.wait().await?;
    ///                     }
    ///                     Ok(())
    ///                 })?;
    ///             }
    ///             trellis::testing::wait_all_tasks_blocked().await?;
    ///             let mut ready = cond.lock().await?;
    ///             *ready = true;
    ///             assert_eq!(ready.notify_all(), 3);
    ///             Ok::<_, trellis::Error>(())
    ///         }
    ///     })
    ///     .await
    ///     .unwrap();
    /// });
    /// ```
    pub fn notify_all(&self) -> usize {
        self.notify(usize::MAX)
    }
}

impl<T: ?Sized> Deref for ConditionGuard<'_, T> {
    type Target = T;

    fn deref(&self) -> &T {
        // SAFETY: the guard exists only while its holder has the lock.
        unsafe { &*self.cond.data.get() }
    }
}

impl<T: ?Sized> DerefMut for ConditionGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: as in `deref`, and `&mut self` makes this borrow unique.
        unsafe { &mut *self.cond.data.get() }
    }
}

impl<T: ?Sized> Drop for ConditionGuard<'_, T> {
    fn drop(&mut self) {
        self.cond.unlock();
    }
}

impl<T: ?Sized + fmt::Debug> fmt::Debug for ConditionGuard<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&**self, f)
    }
}

/// A [`ConditionGuard::wait`] that was cancelled; holds the re-acquired guard.
///
/// Converts into [`Error`] and [`Cancelled`] with `?`, and implements [`AsCancelled`], so the
/// cancelled scope recognises it.
///
/// ```
/// use trellis::sync::Condition;
///
/// trellis::run(async {
///     let cond = Condition::new(5);
///     let scope = trellis::CancelScope::new();
///     scope.cancel();
///     let out = scope
///         .run(async {
///             let guard = cond.try_lock().unwrap();
///             let cancelled = guard.wait().await.unwrap_err();
///             // The cancelled wait holds the lock again: the data can still be used.
///             let (guard, why) = cancelled.into_parts();
///             assert_eq!(*guard, 5);
///             drop(guard);
///             Err::<(), _>(why)
///         })
///         .await;
///     assert!(out.is_none()); // the scope absorbed its cancellation
///     assert!(!cond.is_locked());
/// });
/// ```
pub struct WaitCancelled<G> {
    guard: G,
    cancelled: Cancelled,
}

impl<G> WaitCancelled<G> {
    /// The guard: the lock is held again.
    ///
    /// ```
    /// use trellis::sync::Condition;
    ///
    /// trellis::run(async {
    ///     let cond = Condition::new(5);
    ///     let scope = trellis::CancelScope::new();
    ///     scope.cancel();
    ///     let out = scope
    ///         .run(async {
    ///             let guard = cond.try_lock().unwrap();
    ///             let cancelled = guard.wait().await.unwrap_err();
    ///             let guard = cancelled.into_guard();
    ///             assert!(cond.is_locked());
    ///             drop(guard);
    ///             trellis::checkpoint().await
    ///         })
    ///         .await;
    ///     assert!(out.is_none()); // the scope absorbed its cancellation
    ///     assert!(!cond.is_locked());
    /// });
    /// ```
    pub fn into_guard(self) -> G {
        self.guard
    }

    /// The cancellation.
    ///
    /// ```
    /// use trellis::sync::Condition;
    ///
    /// trellis::run(async {
    ///     let cond = Condition::new(5);
    ///     let scope = trellis::CancelScope::new();
    ///     scope.cancel();
    ///     let out = scope
    ///         .run(async {
    ///             let guard = cond.try_lock().unwrap();
    ///             let cancelled = guard.wait().await.unwrap_err();
    ///             let why = cancelled.cancelled().clone();
    ///             drop(cancelled); // releases the lock with the guard inside
    ///             Err::<(), _>(why)
    ///         })
    ///         .await;
    ///     assert!(out.is_none()); // the scope absorbed its cancellation
    ///     assert!(!cond.is_locked());
    /// });
    /// ```
    pub fn cancelled(&self) -> &Cancelled {
        &self.cancelled
    }

    /// Both parts.
    ///
    /// ```
    /// use trellis::sync::Condition;
    ///
    /// trellis::run(async {
    ///     let cond = Condition::new(5);
    ///     let scope = trellis::CancelScope::new();
    ///     scope.cancel();
    ///     let out = scope
    ///         .run(async {
    ///             let guard = cond.try_lock().unwrap();
    ///             let cancelled = guard.wait().await.unwrap_err();
    ///             let (guard, why) = cancelled.into_parts();
    ///             drop(guard);
    ///             Err::<(), _>(why)
    ///         })
    ///         .await;
    ///     assert!(out.is_none()); // the scope absorbed its cancellation
    ///     assert!(!cond.is_locked());
    /// });
    /// ```
    pub fn into_parts(self) -> (G, Cancelled) {
        (self.guard, self.cancelled)
    }
}

impl<G> fmt::Debug for WaitCancelled<G> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WaitCancelled")
            .field("cancelled", &self.cancelled)
            .finish_non_exhaustive()
    }
}

impl<G> fmt::Display for WaitCancelled<G> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "condition wait {}", self.cancelled)
    }
}

impl<G> StdError for WaitCancelled<G> {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        Some(&self.cancelled)
    }
}

impl<G> AsCancelled for WaitCancelled<G> {
    fn cancelled(&self) -> Option<Cancelled> {
        Some(self.cancelled.clone())
    }
}

impl<G> From<WaitCancelled<G>> for Cancelled {
    fn from(w: WaitCancelled<G>) -> Self {
        w.cancelled
    }
}

impl<G> From<WaitCancelled<G>> for Error {
    fn from(w: WaitCancelled<G>) -> Self {
        Error::Cancelled(w.cancelled)
    }
}

enum WaitPhase {
    /// Not polled yet: we hold the lock.
    Holding,
    /// Parked (in `STANDBY`, or in `MAIN` once notified or cancelled).
    Parked(Key),
    /// Returned; holds the lock again (the caller's new guard owns it).
    Done,
}

/// The wait itself; resolves to the cancellation it saw, if any, once it holds the lock again.
struct CondWait<'a> {
    state: &'a StdMutex<RawLock>,
    phase: WaitPhase,
    cancel: CancelWaiter,
    cancelled: Option<Cancelled>,
}

impl Future for CondWait<'_> {
    type Output = Option<Cancelled>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Cancelled>> {
        let this = &mut *self;
        let mut wakes = WakeList::new();
        let key = match this.phase {
            WaitPhase::Holding => {
                let mut st = lock(this.state);
                st.release(&mut wakes, None);
                let key = st.lot.park(
                    STANDBY,
                    cx.waker(),
                    LockRequest::plain(parking_lot::current_task_id()),
                );
                this.phase = WaitPhase::Parked(key);
                key
            }
            WaitPhase::Parked(key) => {
                if lock(this.state).lot.take(key, cx.waker()).is_some() {
                    this.phase = WaitPhase::Done;
                    this.cancel.clear();
                    return Poll::Ready(this.cancelled.take());
                }
                key
            }
            WaitPhase::Done => panic!("Condition::wait polled after it completed"),
        };
        if this.cancelled.is_some() {
            // Shielded from here on: waiting for the lock only (a trellis wait, B1).
            current::note_parked();
            return Poll::Pending;
        }
        let Poll::Ready(c) = this.cancel.poll_cancelled("sync::Condition::wait", cx) else {
            return Poll::Pending;
        };
        this.cancelled = Some(c);
        let mut st = lock(this.state);
        if st.lot.take(key, cx.waker()).is_some() {
            this.phase = WaitPhase::Done;
            return Poll::Ready(this.cancelled.take());
        }
        // Not notified yet: join the lock's line now, as trio's shielded re-acquire does.
        st.lot.move_to(key, MAIN);
        st.grant_if_free(&mut wakes);
        current::note_parked();
        Poll::Pending
    }
}

impl Drop for CondWait<'_> {
    fn drop(&mut self) {
        let mut wakes = WakeList::new();
        let mut st = lock(self.state);
        match mem::replace(&mut self.phase, WaitPhase::Done) {
            WaitPhase::Holding => st.release(&mut wakes, None),
            WaitPhase::Parked(key) => match st.lot.leave(key) {
                Left::Withdrawn(_) => {}
                // The lock was handed to us and we never took it: pass it on.
                Left::Handed((), _) => st.release(&mut wakes, None),
            },
            WaitPhase::Done => {}
        }
    }
}
