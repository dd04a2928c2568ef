//! `Semaphore`: a counter of permits, with an optional maximum (trio's `Semaphore`).
//!
//! State: the free permits (`value`), the optional maximum, and the lot of waiters. Invariant:
//! while waiters are parked, `value` is 0; a release while they wait hands the permit to the
//! first of them instead of raising `value`.

use std::fmt;
use std::sync::{Arc, Mutex};

use super::parking_lot::{lock, Op, ParkingLot, Site, WakeList, MAIN};
use crate::error::{Cancelled, Error};

/// A semaphore: [`acquire`](Semaphore::acquire) takes one permit, waiting if none is free;
/// [`release`](Semaphore::release) adds one. Waiters are served in FIFO order.
///
/// `acquire` returns a [`SemaphorePermit`] that releases its permit when dropped; use
/// [`SemaphorePermit::forget`] to keep it taken and [`release`](Semaphore::release) later
/// (trio's explicit style). With a maximum ([`Semaphore::with_max`]), releasing past it is an
/// error, which catches a release without a matching acquire.
///
/// ```
/// use trellis::sync::Semaphore;
///
/// trellis::run(async {
///     let sem = Semaphore::new(2);
///     let a = sem.acquire().await?;
///     let _b = sem.acquire().await?;
///     assert_eq!(sem.value(), 0);
///     assert!(sem.try_acquire().is_err()); // would block
///     drop(a);
///     assert_eq!(sem.value(), 1);
///     Ok::<_, trellis::Cancelled>(())
/// })
/// .unwrap();
/// ```
///
/// Cancel safety: a cancelled or dropped `acquire` holds no permit and keeps no place in line;
/// a permit handed to a waiter that is dropped before it runs passes to the next waiter.
pub struct Semaphore {
    state: Mutex<State>,
}

struct State {
    value: usize,
    max: Option<usize>,
    lot: ParkingLot<(), ()>,
}

impl State {
    /// Adds a permit: to the first waiter if any, else to `value`. `false` if that would pass
    /// the maximum.
    fn release(&mut self, wakes: &mut WakeList) -> bool {
        if self.lot.unpark(MAIN, (), wakes).is_ok() {
            return true;
        }
        if self.max.is_some_and(|max| self.value >= max) {
            return false;
        }
        self.value += 1;
        true
    }
}

/// Counters of a [`Semaphore`].
///
/// ```
/// use std::sync::Arc;
/// use trellis::sync::Semaphore;
///
/// trellis::run(async {
///     let sem = Arc::new(Semaphore::new(0));
///     trellis::nursery(|n| {
///         let sem = sem.clone();
///         async move {
///             let waiter = sem.clone();
///             n.spawn(async move {
///                 waiter.acquire().await?.forget();
///                 Ok(())
///             })?;
///             trellis::testing::wait_all_tasks_blocked().await?;
///             assert_eq!(sem.statistics().tasks_waiting, 1);
///             sem.release()?;
///             Ok::<_, trellis::Error>(())
///         }
///     })
///     .await
///     .unwrap();
/// });
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct SemaphoreStatistics {
    /// Tasks blocked in `acquire`.
    pub tasks_waiting: usize,
}

struct AcquireSite;

impl Site for AcquireSite {
    type State = State;
    type Value = ();
    type Request = ();
    type Output = ();
    type Error = Cancelled;
    const NAME: &'static str = "sync::Semaphore::acquire";

    fn lot(state: &mut State) -> &mut ParkingLot<(), ()> {
        &mut state.lot
    }

    fn attempt(state: &mut State, (): &mut (), _: &mut WakeList) -> Option<()> {
        if state.value == 0 {
            return None;
        }
        state.value -= 1;
        Some(())
    }

    fn finish((): (), (): ()) -> Result<(), Cancelled> {
        Ok(())
    }

    fn cancelled(c: Cancelled, (): ()) -> Cancelled {
        c
    }

    fn redeliver(state: &mut State, (): (), _: &mut (), wakes: &mut WakeList) -> Option<()> {
        state.release(wakes);
        None
    }
}

impl Semaphore {
    /// A semaphore with `permits` free permits and no maximum.
    ///
    /// ```
    /// let sem = trellis::sync::Semaphore::new(3);
    /// assert_eq!(sem.value(), 3);
    /// assert_eq!(sem.max_value(), None);
    /// ```
    pub fn new(permits: usize) -> Self {
        Semaphore {
            state: Mutex::new(State {
                value: permits,
                max: None,
                lot: ParkingLot::new(),
            }),
        }
    }

    /// A semaphore with `permits` free permits that may never hold more than `max` (a bounded
    /// semaphore).
    ///
    /// # Panics
    /// If `max < permits`.
    ///
    /// ```
    /// let sem = trellis::sync::Semaphore::with_max(1, 2);
    /// sem.release().unwrap(); // 2 permits: the maximum
    /// assert!(sem.release().is_err()); // a third would exceed it
    /// assert_eq!(sem.value(), 2);
    /// ```
    pub fn with_max(permits: usize, max: usize) -> Self {
        assert!(
            max >= permits,
            "Semaphore::with_max: max ({max}) must be >= the initial permits ({permits})"
        );
        let sem = Semaphore::new(permits);
        lock(&sem.state).max = Some(max);
        sem
    }

    /// Takes a permit, waiting for one if none is free. A checkpoint, also when one is free.
    ///
    /// # Errors
    /// [`Cancelled`] if the enclosing scope was cancelled before a permit was handed over; no
    /// permit is then held.
    ///
    /// ```
    /// use std::sync::atomic::{AtomicUsize, Ordering};
    /// use std::sync::Arc;
    /// use trellis::sync::Semaphore;
    ///
    /// // The current-thread flavour runs tasks in a fixed order, so the count is exact.
    /// let rt = trellis::Runtime::builder()
    ///     .flavor(trellis::Flavor::CurrentThread)
    ///     .build()
    ///     .unwrap();
    /// rt.block_on(async {
    ///     // At most two tasks inside at once.
    ///     let sem = Arc::new(Semaphore::new(2));
    ///     let (inside, most) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    ///     trellis::nursery(|n| {
    ///         let (sem, inside, most) = (sem.clone(), inside.clone(), most.clone());
    ///         async move {
    ///             for _ in 0..5 {
    ///                 let (sem, inside, most) = (sem.clone(), inside.clone(), most.clone());
    ///                 n.spawn(async move {
    ///                     let _permit = sem.acquire().await?;
    ///                     let now = inside.fetch_add(1, Ordering::SeqCst) + 1;
    ///                     most.fetch_max(now, Ordering::SeqCst);
    ///                     trellis::checkpoint().await?;
    ///                     inside.fetch_sub(1, Ordering::SeqCst);
    ///                     Ok(())
    ///                 })?;
    ///             }
    ///             Ok::<_, trellis::Error>(())
    ///         }
    ///     })
    ///     .await
    ///     .unwrap();
    ///     assert_eq!(most.load(Ordering::SeqCst), 2);
    /// });
    /// ```
    pub async fn acquire(&self) -> Result<SemaphorePermit<'_>, Cancelled> {
        Op::<AcquireSite>::new(&self.state, ()).await?;
        Ok(SemaphorePermit { sem: self })
    }

    /// [`acquire`](Semaphore::acquire) for a semaphore in an `Arc`: the permit owns a
    /// reference to the semaphore, so it can move into a spawned task (`'static`).
    ///
    /// # Errors
    /// [`Cancelled`], as for [`acquire`](Semaphore::acquire).
    ///
    /// ```
    /// use std::sync::Arc;
    /// use trellis::sync::Semaphore;
    ///
    /// trellis::run(async {
    ///     let slots = Arc::new(Semaphore::new(2));
    ///     trellis::nursery(|n| async move {
    ///         for _ in 0..4 {
    ///             let permit = slots.clone().acquire_owned().await?;
    ///             n.spawn(async move {
    ///                 let _permit = permit; // at most two tasks hold one at a time
    ///                 trellis::sleep(std::time::Duration::from_millis(1)).await?;
    ///                 Ok(())
    ///             })?;
    ///         }
    ///         Ok::<_, trellis::Error>(())
    ///     })
    ///     .await
    ///     .unwrap();
    /// });
    /// ```
    pub async fn acquire_owned(self: Arc<Self>) -> Result<OwnedSemaphorePermit, Cancelled> {
        Op::<AcquireSite>::new(&self.state, ()).await?;
        Ok(OwnedSemaphorePermit { sem: Some(self) })
    }

    /// Takes a permit if one is free now and nobody waits. Not a checkpoint.
    ///
    /// # Errors
    /// [`Error::WouldBlock`] otherwise.
    ///
    /// ```
    /// let sem = trellis::sync::Semaphore::new(1);
    /// let permit = sem.try_acquire().unwrap();
    /// assert!(matches!(sem.try_acquire(), Err(trellis::Error::WouldBlock)));
    /// drop(permit); // given back
    /// assert!(sem.try_acquire().is_ok());
    /// ```
    pub fn try_acquire(&self) -> Result<SemaphorePermit<'_>, Error> {
        let mut wakes = WakeList::new();
        match AcquireSite::attempt(&mut lock(&self.state), &mut (), &mut wakes) {
            Some(()) => Ok(SemaphorePermit { sem: self }),
            None => Err(Error::WouldBlock),
        }
    }

    /// Adds a permit: the first waiter gets it, or the count goes up. Not a checkpoint.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] if the count is already at its maximum (the semaphore was
    /// released more often than acquired); nothing changes then.
    ///
    /// ```
    /// let sem = trellis::sync::Semaphore::new(0);
    /// sem.release().unwrap();
    /// assert_eq!(sem.value(), 1);
    /// ```
    pub fn release(&self) -> Result<(), Error> {
        let mut wakes = WakeList::new();
        let ok = lock(&self.state).release(&mut wakes);
        wakes.wake_all();
        if ok {
            Ok(())
        } else {
            Err(Error::InvalidArgument("semaphore released too many times"))
        }
    }

    /// Free permits now.
    ///
    /// ```
    /// let sem = trellis::sync::Semaphore::new(2);
    /// let _permit = sem.try_acquire().unwrap();
    /// assert_eq!(sem.value(), 1);
    /// ```
    pub fn value(&self) -> usize {
        lock(&self.state).value
    }

    /// The maximum, if any.
    ///
    /// ```
    /// use trellis::sync::Semaphore;
    ///
    /// assert_eq!(Semaphore::with_max(0, 4).max_value(), Some(4));
    /// assert_eq!(Semaphore::new(0).max_value(), None);
    /// ```
    pub fn max_value(&self) -> Option<usize> {
        lock(&self.state).max
    }

    /// Counters, for debugging.
    ///
    /// ```
    /// let sem = trellis::sync::Semaphore::new(1);
    /// assert_eq!(sem.statistics().tasks_waiting, 0);
    /// ```
    pub fn statistics(&self) -> SemaphoreStatistics {
        SemaphoreStatistics {
            tasks_waiting: lock(&self.state).lot.len(MAIN),
        }
    }
}

impl fmt::Debug for Semaphore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let st = lock(&self.state);
        f.debug_struct("Semaphore")
            .field("value", &st.value)
            .field("max_value", &st.max)
            .field("tasks_waiting", &st.lot.len(MAIN))
            .finish()
    }
}

/// A permit taken from a [`Semaphore`]; released when dropped.
///
/// ```
/// use trellis::sync::{Semaphore, SemaphorePermit};
///
/// trellis::run(async {
///     let sem = Semaphore::new(1);
///     {
///         let _permit: SemaphorePermit<'_> = sem.acquire().await.unwrap();
///         assert_eq!(sem.value(), 0);
///     }
///     assert_eq!(sem.value(), 1); // released when dropped
/// });
/// ```
#[must_use = "dropping the permit releases it at once"]
pub struct SemaphorePermit<'a> {
    sem: &'a Semaphore,
}

impl SemaphorePermit<'_> {
    /// Keeps the permit taken; give it back later with [`Semaphore::release`].
    ///
    /// ```
    /// let sem = trellis::sync::Semaphore::new(1);
    /// sem.try_acquire().unwrap().forget();
    /// assert_eq!(sem.value(), 0); // still taken
    /// sem.release().unwrap(); // given back by hand
    /// assert_eq!(sem.value(), 1);
    /// ```
    pub fn forget(self) {
        std::mem::forget(self);
    }
}

impl fmt::Debug for SemaphorePermit<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SemaphorePermit").finish_non_exhaustive()
    }
}

/// A permit of a [`Semaphore`] in an `Arc`, owning a reference to it (see
/// [`Semaphore::acquire_owned`]); given back when dropped.
///
/// ```
/// use std::sync::Arc;
/// use trellis::sync::{OwnedSemaphorePermit, Semaphore};
///
/// trellis::run(async {
///     let sem = Arc::new(Semaphore::new(1));
///     trellis::nursery(|n| {
///         let sem = sem.clone();
///         async move {
///             // Taken here, held by the task until it ends.
///             let permit: OwnedSemaphorePermit = sem.clone().acquire_owned().await?;
///             assert_eq!(sem.value(), 0);
///             n.spawn(async move {
///                 let _permit = permit;
///                 trellis::checkpoint().await?;
///                 Ok(())
///             })?;
///             Ok::<_, trellis::Error>(())
///         }
///     })
///     .await
///     .unwrap();
///     assert_eq!(sem.value(), 1); // given back when the task dropped it
/// });
/// ```
#[must_use = "dropping the permit gives it back at once"]
pub struct OwnedSemaphorePermit {
    /// `None` once forgotten: the permit stays taken, but the semaphore is not kept alive.
    sem: Option<Arc<Semaphore>>,
}

impl OwnedSemaphorePermit {
    /// Keeps the permit taken; give it back later with [`Semaphore::release`].
    ///
    /// ```
    /// # trellis::run(async {
    /// let sem = std::sync::Arc::new(trellis::sync::Semaphore::new(1));
    /// sem.clone().acquire_owned().await.unwrap().forget();
    /// assert_eq!(sem.value(), 0);
    /// # });
    /// ```
    pub fn forget(mut self) {
        self.sem = None;
    }
}

impl fmt::Debug for OwnedSemaphorePermit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OwnedSemaphorePermit")
            .finish_non_exhaustive()
    }
}

impl Drop for OwnedSemaphorePermit {
    fn drop(&mut self) {
        // As for `SemaphorePermit`.
        if let Some(sem) = &self.sem {
            let _ = sem.release();
        }
    }
}

impl Drop for SemaphorePermit<'_> {
    fn drop(&mut self) {
        // Past the maximum only if `release` was also called for this permit; the count then
        // stays at the maximum, which is what a bounded semaphore promises.
        let _ = self.sem.release();
    }
}
