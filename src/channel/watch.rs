//! A watch channel: one value that a sender replaces and many receivers look at (tokio's
//! `watch`), for configuration, state or progress that consumers want the *latest* of, not every
//! version.
//!
//! # The protocol
//!
//! The value and its *version* (how many times it was sent) sit behind a `std::sync::RwLock`, so
//! borrows by many receivers do not exclude each other. Each receiver remembers the version it
//! has *seen*. The channel's version is mirrored under the mutex that holds the parking lot, where
//! [`Receiver::changed`] waits: it completes at once when the channel's version differs from the
//! receiver's, and otherwise parks until a send hands every parked receiver `Ok`. A send updates
//! the value and both copies of the version while holding the write lock (lock order: value, then
//! state), so a receiver never sees a version whose value is not there yet.
//!
//! A receiver marks a version seen only when `changed` *returns* (or when it borrows with
//! [`borrow_and_update`](Receiver::borrow_and_update)): a cancelled or dropped `changed` leaves
//! the receiver as it was, so the change is still reported by the next call (principle 4).
//!
//! When the sender is dropped, parked receivers are handed [`Error::EndOfChannel`]; a receiver
//! that has not seen the last value still gets `Ok` from `changed` first.
//!
//! ```
//! use trellis::channel::watch;
//!
//! trellis::run(async {
//!     let (tx, mut rx) = watch::channel("starting");
//!     trellis::nursery(|n| async move {
//!         n.spawn(async move {
//!             tx.send("ready").ok();
//!             Ok(())
//!         })?;
//!         rx.changed().await?;
//!         assert_eq!(*rx.borrow_and_update(), "ready");
//!         // The sender is gone and the last value was seen: the end.
//!         assert!(matches!(rx.changed().await, Err(trellis::Error::EndOfChannel)));
//!         Ok::<_, trellis::Error>(())
//!     })
//!     .await
//!     .unwrap();
//! });
//! ```

use std::fmt;
use std::mem;
use std::ops::Deref;
use std::sync::{Arc, Mutex, RwLock, RwLockReadGuard, RwLockWriteGuard};

use super::send_error::SendError;
use crate::error::{Cancelled, Error};
use crate::sync::parking_lot::{lock, Op, ParkingLot, Site, WakeList, MAIN};

/// Makes a watch channel holding `init`. The receiver starts having seen `init`, so its first
/// [`changed`](Receiver::changed) waits for a send.
///
/// ```
/// use trellis::channel::watch;
///
/// let (tx, rx) = watch::channel(0);
/// assert_eq!(*rx.borrow(), 0);
/// assert!(!rx.has_changed().unwrap());
/// tx.send(1).unwrap();
/// assert!(rx.has_changed().unwrap());
/// assert_eq!(*rx.borrow(), 1);
/// ```
pub fn channel<T>(init: T) -> (Sender<T>, Receiver<T>) {
    let shared = Arc::new(Shared {
        value: RwLock::new(Versioned {
            value: init,
            version: 0,
        }),
        state: Mutex::new(State {
            version: 0,
            sender_gone: false,
            receivers: 1,
            changed_lot: ParkingLot::new(),
            closed_lot: ParkingLot::new(),
        }),
    });
    (
        Sender {
            shared: shared.clone(),
        },
        Receiver { shared, seen: 0 },
    )
}

struct Shared<T> {
    value: RwLock<Versioned<T>>,
    state: Mutex<State>,
}

struct Versioned<T> {
    value: T,
    version: u64,
}

struct State {
    /// The version of the value: the number of sends so far.
    version: u64,
    sender_gone: bool,
    /// Live `Receiver`s.
    receivers: usize,
    /// Receivers in `changed`, with the version each has seen.
    changed_lot: ParkingLot<Result<(), Error>, u64>,
    /// The sender in `closed`.
    closed_lot: ParkingLot<(), ()>,
}

impl<T> Shared<T> {
    /// The value's lock. A panic while it was held (in `send_modify`'s closure) leaves a value
    /// that is whole, only perhaps half-modified, so poisoning is ignored.
    fn read(&self) -> RwLockReadGuard<'_, Versioned<T>> {
        self.value.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> RwLockWriteGuard<'_, Versioned<T>> {
        self.value.write().unwrap_or_else(|e| e.into_inner())
    }
}

struct ChangedSite;

impl Site for ChangedSite {
    type State = State;
    type Value = Result<(), Error>;
    type Request = u64;
    type Output = ();
    type Error = Error;
    const NAME: &'static str = "channel::watch::Receiver::changed";

    fn lot(state: &mut State) -> &mut ParkingLot<Result<(), Error>, u64> {
        &mut state.changed_lot
    }

    fn attempt(st: &mut State, seen: &mut u64, _: &mut WakeList) -> Option<Result<(), Error>> {
        if st.version != *seen {
            Some(Ok(()))
        } else if st.sender_gone {
            Some(Err(Error::EndOfChannel))
        } else {
            None
        }
    }

    fn finish(value: Result<(), Error>, _: u64) -> Result<(), Error> {
        value
    }

    fn cancelled(c: Cancelled, _: u64) -> Error {
        Error::Cancelled(c)
    }

    // Being told of a change consumes nothing: the change stays unseen.
    fn redeliver(
        _: &mut State,
        _: Result<(), Error>,
        _: &mut u64,
        _: &mut WakeList,
    ) -> Option<Result<(), Error>> {
        None
    }
}

struct ClosedSite;

impl Site for ClosedSite {
    type State = State;
    type Value = ();
    type Request = ();
    type Output = ();
    type Error = Cancelled;
    const NAME: &'static str = "channel::watch::Sender::closed";

    fn lot(state: &mut State) -> &mut ParkingLot<(), ()> {
        &mut state.closed_lot
    }

    fn attempt(st: &mut State, (): &mut (), _: &mut WakeList) -> Option<()> {
        (st.receivers == 0).then_some(())
    }

    fn finish((): (), (): ()) -> Result<(), Cancelled> {
        Ok(())
    }

    fn cancelled(c: Cancelled, (): ()) -> Cancelled {
        c
    }

    fn redeliver(_: &mut State, (): (), _: &mut (), _: &mut WakeList) -> Option<()> {
        None
    }
}

/// A borrow of the value in a watch channel, from [`Sender::borrow`], [`Receiver::borrow`] or
/// [`Receiver::borrow_and_update`]. It holds a read lock: sends wait while it lives, so keep it
/// short, never across an `.await` (it is not `Send`, so a spawned task cannot do that by
/// accident) and never while sending on the same thread, which would deadlock.
///
/// ```
/// let (tx, rx) = trellis::channel::watch::channel(vec![1, 2]);
/// {
///     let v = rx.borrow();
///     assert_eq!(v.len(), 2); // derefs to the value
///     assert!(!v.has_changed());
/// } // released before the next send
/// tx.send(vec![3]).unwrap();
/// assert!(rx.borrow().has_changed());
/// ```
pub struct Ref<'a, T> {
    guard: RwLockReadGuard<'a, Versioned<T>>,
    has_changed: bool,
}

impl<T> Ref<'_, T> {
    /// Whether the borrowing receiver had not seen this value yet when it borrowed it (always
    /// `false` for a borrow through the sender).
    ///
    /// ```
    /// let (tx, mut rx) = trellis::channel::watch::channel('a');
    /// tx.send('b').unwrap();
    /// assert!(rx.borrow_and_update().has_changed()); // new to this receiver...
    /// assert!(!rx.borrow().has_changed()); // ...and now seen
    /// ```
    pub fn has_changed(&self) -> bool {
        self.has_changed
    }
}

impl<T> Deref for Ref<'_, T> {
    type Target = T;

    fn deref(&self) -> &T {
        &self.guard.value
    }
}

impl<T: fmt::Debug> fmt::Debug for Ref<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.guard.value, f)
    }
}

/// The sending half of a [watch channel](channel). There is one sender; share it (in an `Arc`)
/// to send from several tasks. Dropping it ends the channel for receivers once they have seen
/// the last value.
///
/// ```
/// use trellis::channel::watch;
///
/// let (tx, rx) = watch::channel(String::from("v1"));
/// let old = tx.send_replace("v2".into());
/// assert_eq!(old, "v1");
/// assert_eq!(*tx.borrow(), "v2");
/// assert_eq!(tx.receiver_count(), 1);
/// drop(rx);
/// assert!(tx.is_closed());
/// ```
pub struct Sender<T> {
    shared: Arc<Shared<T>>,
}

impl<T> Sender<T> {
    /// Replaces the value and tells every receiver it changed, if any receiver exists. Never
    /// waits; not a checkpoint; usable outside a runtime.
    ///
    /// # Errors
    /// With no receiver left, the value is not stored and comes back in the [`SendError`], with
    /// [`Error::BrokenResource`] as its reason (tokio's rule; [`send_replace`](Sender::send_replace)
    /// stores it anyway).
    ///
    /// ```
    /// let (tx, rx) = trellis::channel::watch::channel(1);
    /// tx.send(2).unwrap();
    /// drop(rx);
    /// let err = tx.send(3).unwrap_err();
    /// assert!(matches!(err.reason(), trellis::Error::BrokenResource));
    /// assert_eq!(err.into_inner(), 3);
    /// assert_eq!(*tx.borrow(), 2);
    /// ```
    pub fn send(&self, value: T) -> Result<(), SendError<T>> {
        if lock(&self.shared.state).receivers == 0 {
            return Err(SendError::new(value, Error::BrokenResource));
        }
        drop(self.send_replace(value));
        Ok(())
    }

    /// Replaces the value, whether or not a receiver exists, tells every receiver it changed,
    /// and returns the old value. Never waits; not a checkpoint.
    ///
    /// ```
    /// let (tx, _) = trellis::channel::watch::channel(1);
    /// assert_eq!(tx.send_replace(2), 1); // no receiver left: stored anyway
    /// assert_eq!(*tx.borrow(), 2);
    /// ```
    pub fn send_replace(&self, mut value: T) -> T {
        self.send_modify(|v| mem::swap(v, &mut value));
        value
    }

    /// Modifies the value in place and tells every receiver it changed. `modify` runs under the
    /// write lock: it must not use this channel. If it panics, no receiver is told.
    ///
    /// ```
    /// let (tx, rx) = trellis::channel::watch::channel(vec![1]);
    /// tx.send_modify(|v| v.push(2));
    /// assert!(rx.has_changed().unwrap());
    /// assert_eq!(*rx.borrow(), [1, 2]);
    /// ```
    pub fn send_modify(&self, modify: impl FnOnce(&mut T)) {
        let mut wakes = WakeList::new();
        {
            let mut v = self.shared.write();
            modify(&mut v.value);
            v.version += 1;
            let mut st = lock(&self.shared.state);
            st.version = v.version;
            st.changed_lot
                .unpark_n(MAIN, usize::MAX, |_| Ok(()), &mut wakes);
        }
        wakes.wake_all();
    }

    /// Borrows the value (see [`Ref`] for how long to hold it).
    ///
    /// ```
    /// let (tx, _rx) = trellis::channel::watch::channel("config");
    /// assert_eq!(*tx.borrow(), "config");
    /// ```
    pub fn borrow(&self) -> Ref<'_, T> {
        Ref {
            guard: self.shared.read(),
            has_changed: false,
        }
    }

    /// A new receiver, which has seen the current value.
    ///
    /// ```
    /// let (tx, rx) = trellis::channel::watch::channel(0);
    /// drop(rx);
    /// tx.send_replace(5);
    /// let rx = tx.subscribe(); // receivers can come back
    /// assert_eq!(*rx.borrow(), 5);
    /// assert!(!rx.has_changed().unwrap());
    /// ```
    pub fn subscribe(&self) -> Receiver<T> {
        let mut st = lock(&self.shared.state);
        st.receivers += 1;
        Receiver {
            shared: self.shared.clone(),
            seen: st.version,
        }
    }

    /// How many receivers exist.
    ///
    /// ```
    /// let (tx, rx) = trellis::channel::watch::channel(());
    /// let rx2 = rx.clone();
    /// assert_eq!(tx.receiver_count(), 2);
    /// drop((rx, rx2));
    /// assert_eq!(tx.receiver_count(), 0);
    /// ```
    pub fn receiver_count(&self) -> usize {
        lock(&self.shared.state).receivers
    }

    /// Whether every receiver is gone ([`send`](Sender::send) would fail).
    ///
    /// ```
    /// let (tx, rx) = trellis::channel::watch::channel(());
    /// assert!(!tx.is_closed());
    /// drop(rx);
    /// assert!(tx.is_closed());
    /// ```
    pub fn is_closed(&self) -> bool {
        self.receiver_count() == 0
    }

    /// Waits until every receiver is gone. A checkpoint, also when they already are.
    ///
    /// # Errors
    /// [`Cancelled`] if the enclosing scope is cancelled first.
    ///
    /// ```
    /// use trellis::channel::watch;
    ///
    /// trellis::run(async {
    ///     let (tx, rx) = watch::channel(0);
    ///     trellis::nursery(|n| async move {
    ///         n.spawn(async move {
    ///             trellis::checkpoint().await?;
    ///             drop(rx);
    ///             Ok(())
    ///         })?;
    ///         tx.closed().await?; // returns once the task dropped the receiver
    ///         assert!(tx.send(1).is_err());
    ///         Ok::<_, trellis::Error>(())
    ///     })
    ///     .await
    ///     .unwrap();
    /// });
    /// ```
    pub async fn closed(&self) -> Result<(), Cancelled> {
        Op::<ClosedSite>::new(&self.shared.state, ()).await
    }
}

impl<T> Drop for Sender<T> {
    fn drop(&mut self) {
        let mut wakes = WakeList::new();
        let mut st = lock(&self.shared.state);
        st.sender_gone = true;
        // Receivers park only when they have seen the last value: all of them are at the end.
        st.changed_lot
            .break_lot(|_| Err(Error::EndOfChannel), &mut wakes);
        drop(st);
        wakes.wake_all();
    }
}

/// The receiving half of a [watch channel](channel). Clone it for more receivers; a clone has
/// seen what the original has seen.
///
/// ```
/// use trellis::channel::watch;
///
/// trellis::run(async {
///     let (tx, mut rx) = watch::channel(0u32);
///     trellis::nursery(|n| async move {
///         n.spawn(async move {
///             for i in 1..=3 {
///                 tx.send(i).ok();
///                 trellis::checkpoint().await?;
///             }
///             Ok(())
///         })?;
///         // A slow reader sees the latest value, not every value.
///         while rx.changed().await.is_ok() {
///             let _latest = *rx.borrow_and_update();
///         }
///         assert_eq!(*rx.borrow(), 3);
///         Ok::<_, trellis::Error>(())
///     })
///     .await
///     .unwrap();
/// });
/// ```
pub struct Receiver<T> {
    shared: Arc<Shared<T>>,
    /// The version this receiver has seen.
    seen: u64,
}

impl<T> Receiver<T> {
    /// Borrows the current value without marking it seen (see [`Ref`] for how long to hold it).
    ///
    /// ```
    /// let (tx, rx) = trellis::channel::watch::channel(1);
    /// tx.send(2).unwrap();
    /// assert_eq!(*rx.borrow(), 2);
    /// assert!(rx.has_changed().unwrap()); // still unseen
    /// ```
    pub fn borrow(&self) -> Ref<'_, T> {
        let guard = self.shared.read();
        let has_changed = guard.version != self.seen;
        Ref { guard, has_changed }
    }

    /// Borrows the current value and marks it seen.
    ///
    /// ```
    /// let (tx, mut rx) = trellis::channel::watch::channel(1);
    /// tx.send(2).unwrap();
    /// assert_eq!(*rx.borrow_and_update(), 2);
    /// assert!(!rx.has_changed().unwrap());
    /// ```
    pub fn borrow_and_update(&mut self) -> Ref<'_, T> {
        let guard = self.shared.read();
        let has_changed = guard.version != self.seen;
        self.seen = guard.version;
        Ref { guard, has_changed }
    }

    /// Whether a value this receiver has not seen is there: `Ok(true)` exactly when
    /// [`changed`](Receiver::changed) would return `Ok` at once. Not a checkpoint.
    ///
    /// # Errors
    /// [`Error::EndOfChannel`] when the sender is gone and the last value was seen (when
    /// `changed` would fail).
    ///
    /// ```
    /// let (tx, rx) = trellis::channel::watch::channel(1);
    /// assert!(!rx.has_changed().unwrap());
    /// tx.send(2).unwrap();
    /// drop(tx);
    /// assert!(rx.has_changed().unwrap()); // the last value is still unseen
    /// ```
    pub fn has_changed(&self) -> Result<bool, Error> {
        let st = lock(&self.shared.state);
        if st.version != self.seen {
            Ok(true)
        } else if st.sender_gone {
            Err(Error::EndOfChannel)
        } else {
            Ok(false)
        }
    }

    /// Waits for a value this receiver has not seen, and marks the newest value seen. A
    /// checkpoint, also when such a value is already there.
    ///
    /// Cancel-safe: a cancelled or dropped `changed` marks nothing seen, so the next call still
    /// reports the change.
    ///
    /// # Errors
    /// [`Error::Cancelled`] (nothing was marked seen), [`Error::EndOfChannel`] (the sender is
    /// gone and the last value was seen).
    ///
    /// ```
    /// use std::time::Duration;
    /// use trellis::channel::watch;
    ///
    /// trellis::run(async {
    ///     let (tx, mut rx) = watch::channel("a");
    ///     // Nothing new: the wait times out.
    ///     let waited = trellis::move_on_after(Duration::from_millis(1), rx.changed()).await;
    ///     assert!(waited.is_none());
    ///     tx.send("b").unwrap();
    ///     rx.changed().await.unwrap(); // returns at once (after yielding)
    ///     assert_eq!(*rx.borrow(), "b");
    /// });
    /// ```
    pub async fn changed(&mut self) -> Result<(), Error> {
        Op::<ChangedSite>::new(&self.shared.state, self.seen).await?;
        self.seen = lock(&self.shared.state).version;
        Ok(())
    }

    /// Marks the current value seen without borrowing it.
    ///
    /// ```
    /// let (tx, mut rx) = trellis::channel::watch::channel(0);
    /// tx.send(1).unwrap();
    /// rx.mark_unchanged();
    /// assert!(!rx.has_changed().unwrap());
    /// ```
    pub fn mark_unchanged(&mut self) {
        self.seen = self.shared.read().version;
    }
}

impl<T> Clone for Receiver<T> {
    /// Another receiver that has seen what this one has.
    ///
    /// ```
    /// let (tx, rx) = trellis::channel::watch::channel(0);
    /// tx.send(1).unwrap();
    /// let clone = rx.clone();
    /// assert!(clone.has_changed().unwrap()); // like `rx`, it has not seen 1 yet
    /// assert_eq!(tx.receiver_count(), 2);
    /// ```
    fn clone(&self) -> Self {
        lock(&self.shared.state).receivers += 1;
        Receiver {
            shared: self.shared.clone(),
            seen: self.seen,
        }
    }
}

impl<T> Drop for Receiver<T> {
    fn drop(&mut self) {
        let mut wakes = WakeList::new();
        let mut st = lock(&self.shared.state);
        st.receivers -= 1;
        if st.receivers == 0 {
            st.closed_lot.unpark_n(MAIN, usize::MAX, |_| (), &mut wakes);
        }
        drop(st);
        wakes.wake_all();
    }
}

impl<T: fmt::Debug> fmt::Debug for Sender<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("watch::Sender")
            .field("value", &*self.borrow())
            .field("receivers", &self.receiver_count())
            .finish()
    }
}

impl<T: fmt::Debug> fmt::Debug for Receiver<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let v = self.borrow();
        f.debug_struct("watch::Receiver")
            .field("value", &*v)
            .field("has_changed", &v.has_changed())
            .finish()
    }
}
