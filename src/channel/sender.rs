//! The sending half of a channel, and the error that gives an unsent message back.

use std::fmt;
use std::future::Future;
use std::sync::Arc;

use super::send_error::SendError;
use super::state::{Chan, SendRequest, SendSite, Side};
use super::ChannelStatistics;
use crate::error::Error;
use crate::sync::parking_lot::{try_now, Op};

/// The sending half of a channel made by [`bounded`](super::bounded) or
/// [`unbounded`](super::unbounded). Clone it for more producers: receivers see the end of the
/// channel once every clone is closed or dropped.
///
/// ```
/// trellis::run(async {
///     let (tx, rx) = trellis::channel::bounded(1);
///     tx.send("hello").await?;
///     assert!(tx.try_send("full").is_err()); // the buffer holds one message
///     assert_eq!(rx.recv().await?, "hello");
///     Ok::<_, trellis::Error>(())
/// })
/// .unwrap();
/// ```
pub struct Sender<T> {
    chan: Arc<Chan<T>>,
    handle: usize,
}

impl<T> Sender<T> {
    pub(crate) fn new(chan: Arc<Chan<T>>, handle: usize) -> Self {
        Sender { chan, handle }
    }

    /// Sends `value`, waiting for room in the buffer (or, for a rendezvous channel, for a
    /// receiver). A checkpoint, also when there is room.
    ///
    /// If a receiver is waiting, the message is handed to it directly: it is that receiver's
    /// even if another task asks first.
    ///
    /// # Errors
    /// The message comes back inside the [`SendError`], whose
    /// [`reason`](SendError::reason) is [`Error::Cancelled`] (the enclosing scope was cancelled
    /// before the message was taken: the send did not happen), [`Error::Closed`] (this handle
    /// was closed) or [`Error::BrokenResource`] (every receiver is gone).
    ///
    /// Dropping the future (rather than cancelling its scope) cannot give the message back: if
    /// a receiver had not taken it yet, it is dropped with the future and was not sent.
    ///
    /// ```
    /// trellis::run(async {
    ///     let (tx, rx) = trellis::channel::bounded(1);
    ///     tx.send("queued").await.unwrap(); // room in the buffer: returns at once
    ///     drop(rx); // every receiver gone
    ///     let err = tx.send("lost?").await.unwrap_err();
    ///     assert!(matches!(err.reason(), trellis::Error::BrokenResource));
    ///     assert_eq!(err.into_inner(), "lost?"); // the message comes back
    /// });
    /// ```
    pub fn send(&self, value: T) -> impl Future<Output = Result<(), SendError<T>>> + '_ {
        Op::<SendSite<T>>::new(&self.chan.state, self.request(value))
    }

    /// Sends `value` if that is possible now. Not a checkpoint; usable outside a runtime.
    ///
    /// # Errors
    /// As [`send`](Sender::send), with [`Error::WouldBlock`] when the buffer is full (or, at
    /// capacity 0, no receiver waits). Senders already waiting go first.
    ///
    /// ```
    /// let (tx, rx) = trellis::channel::bounded(1);
    /// tx.try_send(1).unwrap();
    /// let full = tx.try_send(2).unwrap_err();
    /// assert!(matches!(full.reason(), trellis::Error::WouldBlock));
    /// assert_eq!(rx.try_recv().unwrap(), 1);
    /// ```
    pub fn try_send(&self, value: T) -> Result<(), SendError<T>> {
        match try_now::<SendSite<T>>(&self.chan.state, self.request(value)) {
            Ok(result) => result,
            Err(request) => Err(SendError::new(request.unsent(), Error::WouldBlock)),
        }
    }

    fn request(&self, value: T) -> SendRequest<T> {
        SendRequest {
            handle: self.handle,
            value: Some(value),
        }
    }

    /// Closes this handle (trio's `close`): its own blocked sends fail with [`Error::Closed`],
    /// and later sends on it too. Once every sender is closed, receivers drain the buffer and
    /// then get [`Error::EndOfChannel`]. Idempotent; dropping the handle does the same.
    ///
    /// ```
    /// trellis::run(async {
    ///     let (tx, rx) = trellis::channel::unbounded();
    ///     tx.send("last").await.unwrap();
    ///     tx.close();
    ///     // The receiver drains what was sent, then sees the end.
    ///     assert_eq!(rx.recv().await.unwrap(), "last");
    ///     assert!(matches!(rx.recv().await, Err(trellis::Error::EndOfChannel)));
    /// });
    /// ```
    pub fn close(&self) {
        self.chan.close(Side::Send, self.handle);
    }

    /// Whether this handle was closed.
    ///
    /// ```
    /// let (tx, _rx) = trellis::channel::unbounded::<()>();
    /// let other = tx.clone();
    /// tx.close();
    /// assert!(tx.is_closed());
    /// assert!(!other.is_closed()); // each handle is closed on its own
    /// ```
    pub fn is_closed(&self) -> bool {
        self.chan.is_closed(self.handle)
    }

    /// Counters of the channel (shared by all its handles).
    ///
    /// ```
    /// let (tx, _rx) = trellis::channel::bounded::<u8>(2);
    /// tx.try_send(1).unwrap();
    /// assert_eq!(tx.statistics().current_buffer_used, 1);
    /// ```
    pub fn statistics(&self) -> ChannelStatistics {
        self.chan.statistics()
    }
}

impl<T> Clone for Sender<T> {
    /// Another handle on the same channel. The clone of a closed handle is closed too (trio
    /// raises instead; `Clone` cannot fail).
    fn clone(&self) -> Self {
        Sender {
            chan: self.chan.clone(),
            handle: self.chan.clone_handle(Side::Send, self.handle),
        }
    }
}

impl<T> Drop for Sender<T> {
    fn drop(&mut self) {
        self.chan.close(Side::Send, self.handle);
        self.chan.remove_handle(self.handle);
    }
}

impl<T> fmt::Debug for Sender<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sender")
            .field("closed", &self.is_closed())
            .field("statistics", &self.statistics())
            .finish()
    }
}
