//! The error a send returns: the message that was not sent, and why.
//!
//! It lives apart from the sender so that the channel's state, which decides the outcome of a
//! send, and the sender, which returns it, both look down at it.

use std::error::Error as StdError;
use std::fmt;

use crate::error::{AsCancelled, Cancelled, Error};

/// A send that did not happen; holds the message and the reason.
///
/// `?` converts it into [`Error`] (the reason; the message is dropped), and scopes recognise a
/// cancellation inside it ([`AsCancelled`]).
///
/// ```
/// use trellis::channel::SendError;
///
/// let (tx, rx) = trellis::channel::bounded(0);
/// drop(rx);
/// let err: SendError<String> = tx.try_send("hello".to_string()).unwrap_err();
/// assert!(matches!(err.reason(), trellis::Error::BrokenResource));
/// assert_eq!(err.value(), "hello");
/// // `?` turns it into the reason.
/// let as_error: trellis::Error = err.into();
/// assert!(matches!(as_error, trellis::Error::BrokenResource));
/// ```
pub struct SendError<T> {
    value: T,
    reason: Error,
}

impl<T> SendError<T> {
    pub(crate) fn new(value: T, reason: Error) -> Self {
        SendError { value, reason }
    }

    /// Why the send failed: [`Error::Cancelled`], [`Error::Closed`],
    /// [`Error::BrokenResource`] or (for `try_send`) [`Error::WouldBlock`].
    ///
    /// ```
    /// let (tx, _rx) = trellis::channel::bounded(0);
    /// tx.close();
    /// let err = tx.try_send(1).unwrap_err();
    /// assert!(matches!(err.reason(), trellis::Error::Closed));
    /// ```
    pub fn reason(&self) -> &Error {
        &self.reason
    }

    /// The message that was not sent.
    ///
    /// ```
    /// let (tx, _rx) = trellis::channel::bounded(0);
    /// let err = tx.try_send(vec![1, 2]).unwrap_err(); // no receiver waiting
    /// assert_eq!(err.value(), &[1, 2]);
    /// ```
    pub fn value(&self) -> &T {
        &self.value
    }

    /// Takes the message back.
    ///
    /// ```
    /// let (tx, rx) = trellis::channel::bounded(1);
    /// tx.try_send("first").unwrap();
    /// // Full: keep the message and try again once there is room.
    /// let msg = tx.try_send("second").unwrap_err().into_inner();
    /// assert_eq!(rx.try_recv().unwrap(), "first");
    /// tx.try_send(msg).unwrap();
    /// assert_eq!(rx.try_recv().unwrap(), "second");
    /// ```
    pub fn into_inner(self) -> T {
        self.value
    }

    /// The message and the reason.
    ///
    /// ```
    /// let (tx, rx) = trellis::channel::unbounded();
    /// drop(rx);
    /// let (msg, reason) = tx.try_send(5).unwrap_err().into_parts();
    /// assert_eq!(msg, 5);
    /// assert!(matches!(reason, trellis::Error::BrokenResource));
    /// ```
    pub fn into_parts(self) -> (T, Error) {
        (self.value, self.reason)
    }
}

impl<T> fmt::Debug for SendError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SendError")
            .field("reason", &self.reason)
            .finish_non_exhaustive()
    }
}

impl<T> fmt::Display for SendError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "message not sent: {}", self.reason)
    }
}

impl<T> StdError for SendError<T> {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        Some(&self.reason)
    }
}

impl<T> AsCancelled for SendError<T> {
    fn cancelled(&self) -> Option<Cancelled> {
        self.reason.cancelled()
    }
}

impl<T> From<SendError<T>> for Error {
    fn from(err: SendError<T>) -> Self {
        err.reason
    }
}
