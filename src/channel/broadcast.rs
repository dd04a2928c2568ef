//! A broadcast channel: every receiver sees every message, from a bounded ring that a send
//! overwrites when it is full (tokio's `broadcast`).
//!
//! # The protocol
//!
//! The channel keeps the last `capacity` messages in a ring, with the *position* (the count of
//! messages sent before it) of the oldest one. Each receiver owns the position of the next
//! message it will receive; nothing is ever taken out of the ring by a receive, so a receiver's
//! progress is its own and a cancelled receive has nothing to give back: it did not move its
//! position (principle 4).
//!
//! A send never waits: with the ring full it drops the oldest message. A receiver whose next
//! position was dropped that way has *lagged*: its next receive fails with
//! [`RecvError::Lagged`]`(n)`, `n` being how many messages it missed, and moves it to the oldest
//! message still there.
//!
//! Receivers wait in the parking lot while they are at the end of the ring; a send wakes all of
//! them (they are handed `()`, a wake-up, not the message), and each then reads the ring at its
//! own position. The message is cloned for each receiver under the channel's lock; its `Clone`
//! must not use the channel. When the last sender goes, the lot is broken: receivers drain what
//! is left, then get [`RecvError::EndOfChannel`].
//!
//! ```
//! use trellis::channel::broadcast;
//!
//! trellis::run(async {
//!     let (tx, mut rx1) = broadcast::channel::<&str>(16);
//!     let mut rx2 = tx.subscribe();
//!     tx.send("hello").unwrap();
//!     drop(tx);
//!     // Every receiver sees every message, then the end.
//!     assert_eq!(rx1.recv().await, Ok("hello"));
//!     assert_eq!(rx2.recv().await, Ok("hello"));
//!     assert_eq!(rx1.recv().await, Err(broadcast::RecvError::EndOfChannel));
//! });
//! ```

use std::collections::VecDeque;
use std::fmt;
use std::marker::PhantomData;
use std::sync::{Arc, Mutex};

use super::send_error::SendError;
use crate::error::{AsCancelled, Cancelled, Error};
use crate::sync::parking_lot::{lock, Op, ParkingLot, Site, WakeList, MAIN};

/// Makes a broadcast channel that keeps the last `capacity` messages for receivers that have not
/// received them yet. Exactly `capacity`: unlike tokio it is not rounded up to a power of two,
/// so lag counts are exact. The ring grows as it is used, so a large capacity (even
/// `usize::MAX`, an unbounded ring) costs nothing up front.
///
/// # Panics
/// If `capacity` is 0: a broadcast channel must keep a message at least until receivers can
/// look at it (tokio panics too). The check is at creation, so a running program never meets it.
///
/// ```
/// use trellis::channel::broadcast;
///
/// let (tx, rx) = broadcast::channel::<u8>(4);
/// assert_eq!(tx.receiver_count(), 1);
/// assert!(rx.is_empty());
/// ```
///
/// ```should_panic
/// // "broadcast::channel: capacity must be at least 1"
/// let _ = trellis::channel::broadcast::channel::<u8>(0);
/// ```
pub fn channel<T>(capacity: usize) -> (Sender<T>, Receiver<T>) {
    assert!(
        capacity > 0,
        "broadcast::channel: capacity must be at least 1 (a message is kept until receivers \
         have had the chance to see it)"
    );
    let shared = Arc::new(Mutex::new(State {
        ring: VecDeque::new(),
        capacity,
        head: 0,
        senders: 1,
        receivers: 1,
        lot: ParkingLot::new(),
    }));
    (
        Sender {
            shared: shared.clone(),
        },
        Receiver { shared, next: 0 },
    )
}

struct State<T> {
    /// The last messages sent, oldest first; at most `capacity`.
    ring: VecDeque<T>,
    capacity: usize,
    /// The position of `ring[0]`: how many messages were dropped from the ring so far.
    head: u64,
    senders: usize,
    receivers: usize,
    /// Receivers at the end of the ring, with their next position.
    lot: ParkingLot<(), u64>,
}

impl<T> State<T> {
    /// The position the next message sent will have.
    fn tail(&self) -> u64 {
        self.head + self.ring.len() as u64
    }
}

/// Why [`Receiver::recv`] returned no message.
///
/// It carries a cancellation for `?` and for the scope that absorbs it ([`AsCancelled`]), and
/// converts from [`Cancelled`]; code whose error type is [`trellis::Error`](crate::Error) handles
/// `Lagged` where it receives (there is no `Error` variant for it).
///
/// ```
/// use trellis::channel::broadcast::{self, RecvError};
///
/// trellis::run(async {
///     let (tx, mut rx) = broadcast::channel(2);
///     for i in 0..5 {
///         tx.send(i).unwrap();
///     }
///     // Three messages were overwritten before this receiver looked.
///     assert_eq!(rx.recv().await, Err(RecvError::Lagged(3)));
///     assert_eq!(rx.recv().await, Ok(3));
/// });
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecvError {
    /// The receiver fell behind: this many messages were overwritten before it received them.
    /// It now continues from the oldest message still kept.
    #[error("the receiver lagged: {0} messages were overwritten before it received them")]
    Lagged(u64),
    /// Every sender is gone and this receiver has received every message kept.
    #[error("end of channel")]
    EndOfChannel,
    /// The enclosing scope was cancelled; nothing was received.
    #[error(transparent)]
    Cancelled(#[from] Cancelled),
}

impl AsCancelled for RecvError {
    /// ```
    /// use trellis::channel::broadcast::RecvError;
    /// use trellis::AsCancelled;
    ///
    /// assert!(RecvError::Lagged(1).cancelled().is_none());
    /// ```
    fn cancelled(&self) -> Option<Cancelled> {
        match self {
            RecvError::Cancelled(c) => Some(c.clone()),
            RecvError::Lagged(_) | RecvError::EndOfChannel => None,
        }
    }
}

struct RecvSite<T>(PhantomData<T>);

impl<T> Site for RecvSite<T> {
    type State = State<T>;
    type Value = ();
    type Request = u64;
    type Output = ();
    type Error = Cancelled;
    const NAME: &'static str = "channel::broadcast::Receiver::recv";

    fn lot(state: &mut State<T>) -> &mut ParkingLot<(), u64> {
        &mut state.lot
    }

    // Ready when there is something at (or, lagged, past) the receiver's position, or the end.
    fn attempt(st: &mut State<T>, next: &mut u64, _: &mut WakeList) -> Option<()> {
        (st.tail() > *next || st.senders == 0).then_some(())
    }

    fn finish((): (), _: u64) -> Result<(), Cancelled> {
        Ok(())
    }

    fn cancelled(c: Cancelled, _: u64) -> Cancelled {
        c
    }

    // A wake-up holds no message: nothing to pass on.
    fn redeliver(_: &mut State<T>, (): (), _: &mut u64, _: &mut WakeList) -> Option<()> {
        None
    }
}

/// The sending half of a [broadcast channel](channel). Clone it for more producers; receivers
/// see the end once every clone is dropped.
///
/// ```
/// use trellis::channel::broadcast;
///
/// let (tx, mut rx) = broadcast::channel(8);
/// let tx2 = tx.clone();
/// tx.send(1).unwrap();
/// tx2.send(2).unwrap();
/// assert_eq!(rx.len(), 2);
/// ```
pub struct Sender<T> {
    shared: Arc<Mutex<State<T>>>,
}

impl<T> Sender<T> {
    /// Sends `value` to every receiver; returns how many receivers there are. Never waits (not a
    /// checkpoint; usable outside a runtime): with the ring full, the oldest message is dropped
    /// and receivers that had not received it will see [`RecvError::Lagged`].
    ///
    /// # Errors
    /// With no receiver, the value comes back in the [`SendError`], with
    /// [`Error::BrokenResource`] as its reason.
    ///
    /// ```
    /// let (tx, rx) = trellis::channel::broadcast::channel(1);
    /// assert_eq!(tx.send("a").unwrap(), 1); // one receiver
    /// drop(rx);
    /// let err = tx.send("b").unwrap_err();
    /// assert!(matches!(err.reason(), trellis::Error::BrokenResource));
    /// assert_eq!(err.into_inner(), "b");
    /// ```
    pub fn send(&self, value: T) -> Result<usize, SendError<T>> {
        let mut wakes = WakeList::new();
        let mut st = lock(&self.shared);
        if st.receivers == 0 {
            return Err(SendError::new(value, Error::BrokenResource));
        }
        let overwritten = if st.ring.len() == st.capacity {
            st.head += 1;
            st.ring.pop_front()
        } else {
            None
        };
        st.ring.push_back(value);
        st.lot.unpark_n(MAIN, usize::MAX, |_| (), &mut wakes);
        let receivers = st.receivers;
        drop(st);
        wakes.wake_all();
        // Dropped outside the lock: its `Drop` may use this channel.
        drop(overwritten);
        Ok(receivers)
    }

    /// A new receiver, which will receive the messages sent from now on.
    ///
    /// ```
    /// let (tx, _rx) = trellis::channel::broadcast::channel(4);
    /// tx.send("before").unwrap();
    /// let late = tx.subscribe();
    /// assert!(late.is_empty()); // it starts after "before"
    /// ```
    pub fn subscribe(&self) -> Receiver<T> {
        Receiver::at_tail(&self.shared)
    }

    /// How many receivers exist.
    ///
    /// ```
    /// let (tx, rx) = trellis::channel::broadcast::channel::<()>(1);
    /// let rx2 = rx.resubscribe();
    /// assert_eq!(tx.receiver_count(), 2);
    /// drop((rx, rx2));
    /// assert_eq!(tx.receiver_count(), 0);
    /// ```
    pub fn receiver_count(&self) -> usize {
        lock(&self.shared).receivers
    }
}

impl<T> Clone for Sender<T> {
    /// Another sender on the same channel.
    ///
    /// ```
    /// let (tx, mut rx) = trellis::channel::broadcast::channel(2);
    /// let tx2 = tx.clone();
    /// drop(tx);
    /// tx2.send("still open").unwrap(); // one sender is left
    /// assert_eq!(rx.len(), 1);
    /// ```
    fn clone(&self) -> Self {
        lock(&self.shared).senders += 1;
        Sender {
            shared: self.shared.clone(),
        }
    }
}

impl<T> Drop for Sender<T> {
    fn drop(&mut self) {
        let mut wakes = WakeList::new();
        let mut st = lock(&self.shared);
        st.senders -= 1;
        if st.senders == 0 {
            // Receivers wait only at the end of the ring: every one of them is at the end.
            st.lot.break_lot(|_| (), &mut wakes);
        }
        drop(st);
        wakes.wake_all();
    }
}

/// The receiving half of a [broadcast channel](channel): it receives every message sent after
/// it was made, in order, unless it lags behind by more than the capacity.
///
/// ```
/// use trellis::channel::broadcast;
///
/// trellis::run(async {
///     let (tx, mut rx) = broadcast::channel(4);
///     trellis::nursery(|n| async move {
///         n.spawn(async move {
///             for i in 0..3 {
///                 tx.send(i).unwrap();
///                 trellis::checkpoint().await?;
///             }
///             Ok(())
///         })?;
///         let mut got = Vec::new();
///         while let Ok(v) = rx.recv().await {
///             got.push(v);
///         }
///         assert_eq!(got, [0, 1, 2]);
///         Ok::<_, trellis::Error>(())
///     })
///     .await
///     .unwrap();
/// });
/// ```
pub struct Receiver<T> {
    shared: Arc<Mutex<State<T>>>,
    /// The position of the next message this receiver receives.
    next: u64,
}

impl<T: Clone> Receiver<T> {
    /// Receives the next message (a clone of it), waiting for one. A checkpoint, also when one
    /// is there.
    ///
    /// Cancel-safe: a cancelled or dropped `recv` does not move this receiver on, so the next
    /// call receives the same message.
    ///
    /// # Errors
    /// [`RecvError::Lagged`] when messages this receiver had not received were overwritten (it
    /// continues from the oldest one kept), [`RecvError::EndOfChannel`] when every sender is
    /// gone and nothing is left, [`RecvError::Cancelled`] when the enclosing scope is cancelled.
    ///
    /// ```
    /// use std::time::Duration;
    /// use trellis::channel::broadcast;
    ///
    /// trellis::run(async {
    ///     let (tx, mut rx) = broadcast::channel(4);
    ///     // Nothing sent: the wait times out, and consumes nothing.
    ///     let waited = trellis::move_on_after(Duration::from_millis(1), rx.recv()).await;
    ///     assert!(waited.is_none());
    ///     tx.send('x').unwrap();
    ///     assert_eq!(rx.recv().await, Ok('x'));
    /// });
    /// ```
    pub async fn recv(&mut self) -> Result<T, RecvError> {
        loop {
            Op::<RecvSite<T>>::new(&self.shared, self.next).await?;
            if let Some(result) = self.take() {
                return result;
            }
        }
    }

    /// Takes what is at this receiver's position: a message, a lag or the end. `None` if there
    /// is nothing yet (not expected after a wake-up, but then the caller waits again).
    fn take(&mut self) -> Option<Result<T, RecvError>> {
        let st = lock(&self.shared);
        if self.next < st.head {
            let missed = st.head - self.next;
            self.next = st.head;
            return Some(Err(RecvError::Lagged(missed)));
        }
        // `next - head` is below `ring.len()` when a message is there, so it fits a usize.
        let index = usize::try_from(self.next - st.head).unwrap_or(usize::MAX);
        if let Some(message) = st.ring.get(index) {
            let message = message.clone();
            self.next += 1;
            return Some(Ok(message));
        }
        (st.senders == 0).then_some(Err(RecvError::EndOfChannel))
    }
}

impl<T> Receiver<T> {
    /// A new receiver that will receive the messages sent from now on (tokio's `resubscribe`;
    /// `Receiver` is not `Clone`, since a clone's position would be ambiguous).
    ///
    /// ```
    /// let (tx, mut rx) = trellis::channel::broadcast::channel(4);
    /// tx.send(1).unwrap();
    /// let fresh = rx.resubscribe();
    /// assert_eq!(rx.len(), 1);
    /// assert_eq!(fresh.len(), 0);
    /// ```
    pub fn resubscribe(&self) -> Receiver<T> {
        Receiver::at_tail(&self.shared)
    }

    /// A new receiver that gets what is sent from now on.
    fn at_tail(shared: &Arc<Mutex<State<T>>>) -> Receiver<T> {
        let mut st = lock(shared);
        st.receivers += 1;
        Receiver {
            shared: shared.clone(),
            next: st.tail(),
        }
    }

    /// How many kept messages this receiver has not received yet (at most the capacity).
    ///
    /// ```
    /// let (tx, rx) = trellis::channel::broadcast::channel(2);
    /// for i in 0..5 {
    ///     tx.send(i).unwrap();
    /// }
    /// assert_eq!(rx.len(), 2); // the ring keeps two
    /// ```
    pub fn len(&self) -> usize {
        let st = lock(&self.shared);
        let from = self.next.max(st.head);
        usize::try_from(st.tail() - from).unwrap_or(usize::MAX)
    }

    /// Whether this receiver has received every kept message.
    ///
    /// ```
    /// let (tx, rx) = trellis::channel::broadcast::channel(2);
    /// assert!(rx.is_empty());
    /// tx.send(()).unwrap();
    /// assert!(!rx.is_empty());
    /// ```
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl<T> Drop for Receiver<T> {
    fn drop(&mut self) {
        let mut st = lock(&self.shared);
        st.receivers -= 1;
        // Without receivers nobody can reach the kept messages (new ones start at the end).
        let unreachable = if st.receivers == 0 {
            st.head = st.tail();
            std::mem::take(&mut st.ring)
        } else {
            VecDeque::new()
        };
        drop(st);
        drop(unreachable);
    }
}

impl<T> fmt::Debug for Sender<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let st = lock(&self.shared);
        f.debug_struct("broadcast::Sender")
            .field("capacity", &st.capacity)
            .field("kept", &st.ring.len())
            .field("receivers", &st.receivers)
            .finish()
    }
}

impl<T> fmt::Debug for Receiver<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("broadcast::Receiver")
            .field("pending", &self.len())
            .finish()
    }
}
