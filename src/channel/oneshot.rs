//! A one-shot channel: one value, sent once, received once.
//!
//! The sender is consumed by [`send`](OneshotSender::send), which never waits; the receiver
//! waits in [`recv`](OneshotReceiver::recv), a checkpoint that is cancel-safe: a cancelled or
//! dropped `recv` leaves the value in the channel for the next call.

use std::fmt;
use std::future::poll_fn;
use std::sync::{Arc, Mutex};
use std::task::{Poll, Waker};

use crate::cancel::{current_cancellation, CancelWaiter, YieldOnce};
use crate::error::Error;
use crate::runtime::context;
use crate::state_lock::lock;

/// Makes a one-shot channel (tokio's `oneshot`; the receiver waits in a method, a checkpoint,
/// rather than being a future): for a single reply, such as the answer to a request sent to
/// another task.
///
/// ```
/// use trellis::channel::oneshot;
///
/// trellis::run(async {
///     let (reply_tx, mut reply_rx) = oneshot::<u32>();
///     trellis::nursery(|n| async move {
///         n.spawn(async move {
///             reply_tx.send(42).ok(); // `Err(42)` if the receiver were gone
///             Ok(())
///         })?;
///         assert_eq!(reply_rx.recv().await?, 42);
///         Ok::<_, trellis::Error>(())
///     })
///     .await
///     .unwrap();
/// });
/// ```
pub fn oneshot<T>() -> (OneshotSender<T>, OneshotReceiver<T>) {
    let shared = Arc::new(Mutex::new(Slot {
        value: None,
        received: false,
        sender_gone: false,
        receiver_gone: false,
        waker: None,
    }));
    (
        OneshotSender {
            shared: shared.clone(),
        },
        OneshotReceiver { shared },
    )
}

struct Slot<T> {
    value: Option<T>,
    /// The value was returned by `recv`.
    received: bool,
    sender_gone: bool,
    receiver_gone: bool,
    /// The receiver waiting for the value.
    waker: Option<Waker>,
}

/// The sending half of [`oneshot`].
///
/// ```
/// use trellis::channel::{oneshot, OneshotSender};
///
/// let (tx, rx): (OneshotSender<u8>, _) = oneshot();
/// drop(rx);
/// // The receiver is gone: the value comes back.
/// assert_eq!(tx.send(9), Err(9));
/// ```
pub struct OneshotSender<T> {
    shared: Arc<Mutex<Slot<T>>>,
}

/// The receiving half of [`oneshot`].
///
/// ```
/// use trellis::channel::{oneshot, OneshotReceiver};
///
/// trellis::run(async {
///     let (tx, mut rx): (_, OneshotReceiver<&str>) = oneshot();
///     trellis::nursery(|n| async move {
///         n.spawn(async move {
///             tx.send("result").unwrap();
///             Ok(())
///         })?;
///         assert_eq!(rx.recv().await?, "result");
///         Ok::<_, trellis::Error>(())
///     })
///     .await
///     .unwrap();
/// });
/// ```
pub struct OneshotReceiver<T> {
    shared: Arc<Mutex<Slot<T>>>,
}

impl<T> OneshotSender<T> {
    /// Sends the value. Never waits (not a checkpoint).
    ///
    /// # Errors
    /// The value back if the receiver is gone.
    ///
    /// ```
    /// let (tx, rx) = trellis::channel::oneshot::<&str>();
    /// drop(rx);
    /// assert_eq!(tx.send("lost?"), Err("lost?")); // handed back, not lost
    /// ```
    pub fn send(self, value: T) -> Result<(), T> {
        let waker = {
            let mut s = lock(&self.shared);
            if s.receiver_gone {
                return Err(value);
            }
            s.value = Some(value);
            s.waker.take()
        };
        if let Some(w) = waker {
            w.wake();
        }
        Ok(())
    }

    /// Whether the receiver is gone (a send would fail).
    ///
    /// ```
    /// let (tx, rx) = trellis::channel::oneshot::<()>();
    /// assert!(!tx.is_closed());
    /// drop(rx);
    /// assert!(tx.is_closed());
    /// ```
    pub fn is_closed(&self) -> bool {
        lock(&self.shared).receiver_gone
    }
}

impl<T> Drop for OneshotSender<T> {
    fn drop(&mut self) {
        let waker = {
            let mut s = lock(&self.shared);
            s.sender_gone = true;
            s.waker.take()
        };
        if let Some(w) = waker {
            w.wake();
        }
    }
}

impl<T> OneshotReceiver<T> {
    /// Waits for the value. A checkpoint, also when the value is already there. Cancel-safe:
    /// if the enclosing scope is cancelled or the future is dropped first, the value stays for
    /// the next call.
    ///
    /// # Errors
    /// [`Error::Cancelled`] if the scope is cancelled; [`Error::BrokenResource`] if the sender
    /// was dropped without sending; [`Error::EndOfChannel`] if the value was already received.
    ///
    /// ```
    /// trellis::run(async {
    ///     let (tx, mut rx) = trellis::channel::oneshot::<u8>();
    ///     drop(tx);
    ///     assert!(matches!(rx.recv().await, Err(trellis::Error::BrokenResource)));
    /// });
    /// ```
    pub async fn recv(&mut self) -> Result<T, Error> {
        let mut op = Recv {
            shared: &self.shared,
            cancel: CancelWaiter::new(),
            yield_once: YieldOnce::default(),
            taken: None,
        };
        poll_fn(|cx| op.poll(cx)).await
    }
}

impl<T> Drop for OneshotReceiver<T> {
    fn drop(&mut self) {
        lock(&self.shared).receiver_gone = true;
    }
}

/// One `recv` in progress.
struct Recv<'a, T> {
    shared: &'a Mutex<Slot<T>>,
    cancel: CancelWaiter,
    yield_once: YieldOnce,
    /// The value, taken from the slot and held across the schedule point that follows.
    taken: Option<T>,
}

impl<T> Recv<'_, T> {
    fn poll(&mut self, cx: &mut std::task::Context<'_>) -> Poll<Result<T, Error>> {
        const NAME: &str = "channel::OneshotReceiver::recv";
        if self.taken.is_none() {
            // As `sync`'s operations: a plain cancellation check first, and a registration with
            // the cancel tree only when about to wait.
            if let Some(c) = current_cancellation(NAME) {
                self.cancel.clear();
                return Poll::Ready(Err(Error::Cancelled(c)));
            }
            let mut s = lock(self.shared);
            let value = match s.value.take() {
                Some(value) => value,
                None if s.received => return Poll::Ready(Err(Error::EndOfChannel)),
                None if s.sender_gone => return Poll::Ready(Err(Error::BrokenResource)),
                None => {
                    if !s.waker.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
                        s.waker = Some(cx.waker().clone());
                    }
                    drop(s);
                    if let Poll::Ready(c) = self.cancel.poll_cancelled(NAME, cx) {
                        return Poll::Ready(Err(Error::Cancelled(c)));
                    }
                    self.yield_once.blocked();
                    return Poll::Pending;
                }
            };
            self.cancel.clear();
            // Ready without blocking: still a schedule point (principle 3), taken when the
            // task's yield budget is spent or after a wait (which was one).
            if self.yield_once.has_yielded() || !context::must_yield() {
                s.received = true;
                return Poll::Ready(Ok(value));
            }
            drop(s);
            // The value is held across the yield, and put back if this operation is dropped.
            self.taken = Some(value);
        }
        if self.yield_once.poll_yield(cx).is_pending() {
            return Poll::Pending;
        }
        lock(self.shared).received = true;
        Poll::Ready(Ok(self.taken.take().expect("taken above")))
    }
}

impl<T> Drop for Recv<'_, T> {
    fn drop(&mut self) {
        if let Some(value) = self.taken.take() {
            lock(self.shared).value = Some(value);
        }
    }
}

impl<T> fmt::Debug for OneshotSender<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OneshotSender")
            .field("closed", &self.is_closed())
            .finish()
    }
}

impl<T> fmt::Debug for OneshotReceiver<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = lock(&self.shared);
        f.debug_struct("OneshotReceiver")
            .field("value_waiting", &s.value.is_some())
            .field("sender_gone", &s.sender_gone)
            .finish()
    }
}
