//! The receiving half of a channel, also a `Stream`.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use futures_core::stream::FusedStream;
use futures_core::Stream;

use super::state::{Chan, RecvSite, Side};
use super::ChannelStatistics;
use crate::cancel::CancelWaiter;
use crate::error::Error;
use crate::sync::parking_lot::{abandon, poll_op, try_now, Op, Phase};

/// The receiving half of a channel made by [`bounded`](super::bounded) or
/// [`unbounded`](super::unbounded). Clone it for more consumers: each message goes to exactly
/// one of them, in FIFO order of their waits.
///
/// It is also a [`Stream`] of `Result<T, Error>`: the stream ends (`None`) at the end of the
/// channel, and yields `Err` for a cancellation ([`Error::Cancelled`]: the enclosing scope was
/// cancelled, nothing was consumed) or a closed handle ([`Error::Closed`]).
///
/// ```
/// trellis::run(async {
///     let (tx, rx) = trellis::channel::unbounded();
///     for i in 0..3 {
///         tx.try_send(i).unwrap();
///     }
///     drop(tx); // the last sender: receivers drain the buffer, then see the end
///     let mut got = Vec::new();
///     loop {
///         match rx.recv().await {
///             Ok(v) => got.push(v),
///             Err(trellis::Error::EndOfChannel) => break,
///             Err(e) => return Err(e),
///         }
///     }
///     assert_eq!(got, [0, 1, 2]);
///     Ok(())
/// })
/// .unwrap();
/// ```
pub struct Receiver<T> {
    chan: Arc<Chan<T>>,
    handle: usize,
    /// The receive in progress for the `Stream` implementation (`Finished` when idle).
    stream: Phase<RecvSite<T>>,
    stream_cancel: CancelWaiter,
    /// The stream returned `None` (the channel ended): `FusedStream` says so from then on.
    stream_ended: bool,
}

// SAFETY: `&Receiver` gives access only to the shared channel (a mutex around the state, like
// `Sender`, which is `Sync` for `T: Send`); the `stream` fields that hold a `T` in flight are
// touched only through `&mut self` (`poll_next` and `drop`).
unsafe impl<T: Send> Sync for Receiver<T> {}

// `poll_next` never pins a field: the message in flight is moved in and out by value.
impl<T> Unpin for Receiver<T> {}

impl<T> Receiver<T> {
    pub(crate) fn new(chan: Arc<Chan<T>>, handle: usize) -> Self {
        Receiver {
            chan,
            handle,
            stream: Phase::Finished,
            stream_cancel: CancelWaiter::new(),
            stream_ended: false,
        }
    }

    /// Receives the next message, waiting for one. A checkpoint, also when one is ready.
    ///
    /// Cancel-safe: if the enclosing scope is cancelled or the future is dropped before it
    /// returns the message, the message stays in the channel for the next receiver (even one
    /// already handed to this receive).
    ///
    /// # Errors
    /// [`Error::Cancelled`] (nothing was consumed), [`Error::EndOfChannel`] (every sender is
    /// closed and the buffer is empty), [`Error::Closed`] (this handle was closed).
    ///
    /// ```
    /// trellis::run(async {
    ///     let (tx, rx) = trellis::channel::bounded(0);
    ///     trellis::nursery(|n| async move {
    ///         n.spawn(async move {
    ///             tx.send("ping").await?; // a rendezvous: waits for the receiver
    ///             Ok(())
    ///         })?;
    ///         assert_eq!(rx.recv().await?, "ping");
    ///         // The only sender is gone: end of channel.
    ///         assert!(matches!(rx.recv().await, Err(trellis::Error::EndOfChannel)));
    ///         Ok::<_, trellis::Error>(())
    ///     })
    ///     .await
    ///     .unwrap();
    /// });
    /// ```
    pub fn recv(&self) -> impl Future<Output = Result<T, Error>> + '_ {
        Op::<RecvSite<T>>::new(&self.chan.state, self.handle)
    }

    /// Receives a message if one is ready now. Not a checkpoint; usable outside a runtime.
    ///
    /// # Errors
    /// As [`recv`](Receiver::recv), with [`Error::WouldBlock`] when nothing is ready.
    ///
    /// ```
    /// let (tx, rx) = trellis::channel::unbounded();
    /// assert!(matches!(rx.try_recv(), Err(trellis::Error::WouldBlock)));
    /// tx.try_send(3).unwrap();
    /// assert_eq!(rx.try_recv().unwrap(), 3);
    /// ```
    pub fn try_recv(&self) -> Result<T, Error> {
        match try_now::<RecvSite<T>>(&self.chan.state, self.handle) {
            Ok(result) => result,
            Err(_) => Err(Error::WouldBlock),
        }
    }

    /// Closes this handle (trio's `close`): its own blocked receives fail with
    /// [`Error::Closed`], and later receives on it too. Once every receiver is closed, senders
    /// fail with [`Error::BrokenResource`] and buffered messages are dropped. Idempotent;
    /// dropping the handle does the same.
    ///
    /// ```
    /// let (tx, rx) = trellis::channel::unbounded::<u8>();
    /// rx.close();
    /// assert!(matches!(rx.try_recv(), Err(trellis::Error::Closed)));
    /// // With every receiver closed, sends fail.
    /// let err = tx.try_send(1).unwrap_err();
    /// assert!(matches!(err.reason(), trellis::Error::BrokenResource));
    /// ```
    pub fn close(&self) {
        self.chan.close(Side::Receive, self.handle);
    }

    /// Whether this handle was closed.
    ///
    /// ```
    /// let (_tx, rx) = trellis::channel::unbounded::<()>();
    /// assert!(!rx.is_closed());
    /// rx.close();
    /// assert!(rx.is_closed());
    /// ```
    pub fn is_closed(&self) -> bool {
        self.chan.is_closed(self.handle)
    }

    /// Counters of the channel (shared by all its handles).
    ///
    /// ```
    /// let (_tx, rx) = trellis::channel::unbounded::<()>();
    /// let stats = rx.statistics();
    /// assert_eq!(stats.max_buffer_size, None); // unbounded
    /// assert_eq!(stats.open_receive_channels, 1);
    /// ```
    pub fn statistics(&self) -> ChannelStatistics {
        self.chan.statistics()
    }
}

impl<T> Stream for Receiver<T> {
    type Item = Result<T, Error>;

    /// Like [`recv`](Receiver::recv): a checkpoint per item; `None` at the end of the channel.
    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        if let Phase::Finished = this.stream {
            this.stream = Phase::Start(this.handle);
        }
        match poll_op(
            &this.chan.state,
            &mut this.stream,
            &mut this.stream_cancel,
            cx,
        ) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Err(Error::EndOfChannel)) => {
                this.stream_ended = true;
                Poll::Ready(None)
            }
            Poll::Ready(item) => Poll::Ready(Some(item)),
        }
    }
}

/// The stream ends for good once the channel has ended (all senders gone and the buffer
/// drained), so `futures::select!` may skip it from then on.
///
/// ```
/// use futures_core::stream::{FusedStream, Stream};
///
/// trellis::run(async {
///     let (tx, mut rx) = trellis::channel::unbounded::<u8>();
///     drop(tx);
///     assert!(!rx.is_terminated());
///     assert!(std::future::poll_fn(|cx| std::pin::Pin::new(&mut rx).poll_next(cx)).await.is_none());
///     assert!(rx.is_terminated());
/// });
/// ```
impl<T> FusedStream for Receiver<T> {
    fn is_terminated(&self) -> bool {
        self.stream_ended
    }
}

impl<T> Clone for Receiver<T> {
    /// Another handle on the same channel. The clone of a closed handle is closed too (trio
    /// raises instead; `Clone` cannot fail).
    fn clone(&self) -> Self {
        Receiver::new(
            self.chan.clone(),
            self.chan.clone_handle(Side::Receive, self.handle),
        )
    }
}

impl<T> Drop for Receiver<T> {
    fn drop(&mut self) {
        // A message the stream was handed but did not return goes back first.
        abandon(&self.chan.state, &mut self.stream);
        self.chan.close(Side::Receive, self.handle);
        self.chan.remove_handle(self.handle);
    }
}

impl<T> fmt::Debug for Receiver<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Receiver")
            .field("closed", &self.is_closed())
            .field("statistics", &self.statistics())
            .finish()
    }
}
