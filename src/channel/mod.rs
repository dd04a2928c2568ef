//! Channels between tasks: trio's memory channels in Rust idiom.
//!
//! [`bounded(n)`](bounded) makes a channel whose buffer holds `n` messages (`n = 0`: a
//! rendezvous, each send waits for a receiver); [`unbounded()`](unbounded) one whose buffer
//! grows as needed. Both halves are cloneable, for many producers and many consumers.
//!
//! Besides these: [`oneshot()`](oneshot) for a single reply, [`watch`] for a value that
//! receivers read the latest of, and [`broadcast`] for messages that every receiver sees.
//!
//! Semantics, as in trio:
//! - **Fair**: waiting senders and receivers are served in FIFO order. A message sent while a
//!   receiver waits belongs to that receiver; room freed while senders wait belongs to the first
//!   of them, not to a later `try_send`.
//! - **Every async method is a checkpoint** (principle 3), also when it did not need to wait.
//! - **Closing**: each clone is closed on its own, by [`Sender::close`] /
//!   [`Receiver::close`] or by dropping it, and closing one wakes only that clone's waiters
//!   (with [`Error::Closed`](crate::Error::Closed)). When every sender is closed, receivers
//!   drain the buffer and then get [`Error::EndOfChannel`](crate::Error::EndOfChannel); when
//!   every receiver is closed, senders fail with
//!   [`Error::BrokenResource`](crate::Error::BrokenResource).
//! - **Cancel-safe** (principle 4): a cancelled or dropped `recv` never consumes a message,
//!   even one that was already handed to it (the next receiver gets it); a cancelled `send`
//!   returns the message inside its [`SendError`], so a send is either complete or has not
//!   happened.
//!
//! ```
//! use trellis::channel;
//!
//! trellis::run(async {
//!     let (tx, rx) = channel::bounded::<u32>(0);
//!     let total = trellis::nursery(|n| async move {
//!         for id in 0..3 {
//!             let tx = tx.clone();
//!             n.spawn(async move {
//!                 tx.send(id).await?;
//!                 Ok(())
//!             })?;
//!         }
//!         drop(tx); // only the producers' clones keep the channel open
//!         let mut total = 0;
//!         loop {
//!             match rx.recv().await {
//!                 Ok(v) => total += v,
//!                 Err(trellis::Error::EndOfChannel) => break,
//!                 Err(e) => return Err(e),
//!             }
//!         }
//!         Ok::<_, trellis::Error>(total)
//!     })
//!     .await
//!     .unwrap();
//!     assert_eq!(total, 3);
//! });
//! ```

pub mod broadcast;
mod oneshot;
mod receiver;
mod send_error;
mod sender;
mod state;
pub mod watch;

use std::sync::Arc;

pub use oneshot::{oneshot, OneshotReceiver, OneshotSender};
pub use receiver::Receiver;
pub use send_error::SendError;
pub use sender::Sender;

/// A channel whose buffer holds up to `capacity` messages; `send` waits while it is full.
/// `capacity = 0` makes a rendezvous channel: each send waits until a receiver takes the
/// message.
///
/// The buffer grows up to `capacity` as it is used, then is reused: sending and receiving
/// allocate nothing per message in the steady state.
///
/// ```
/// trellis::run(async {
///     let (tx, rx) = trellis::channel::bounded::<&str>(1);
///     tx.send("first").await.unwrap();
///     // The buffer is full: a second send would wait, so `try_send` refuses it.
///     assert!(tx.try_send("second").is_err());
///     assert_eq!(rx.recv().await.unwrap(), "first");
///     tx.try_send("second").unwrap();
///     assert_eq!(rx.recv().await.unwrap(), "second");
/// });
/// ```
pub fn bounded<T>(capacity: usize) -> (Sender<T>, Receiver<T>) {
    channel(capacity)
}

/// A channel whose buffer grows as needed; `send` never waits (`try_send` never reports
/// `WouldBlock`).
///
/// ```
/// trellis::run(async {
///     let (tx, rx) = trellis::channel::unbounded();
///     for i in 0..1000 {
///         tx.try_send(i).unwrap(); // never full
///     }
///     drop(tx);
///     let mut sum = 0;
///     while let Ok(v) = rx.recv().await {
///         sum += v;
///     }
///     assert_eq!(sum, 499_500);
/// });
/// ```
pub fn unbounded<T>() -> (Sender<T>, Receiver<T>) {
    channel(usize::MAX)
}

fn channel<T>(capacity: usize) -> (Sender<T>, Receiver<T>) {
    let chan = Arc::new(state::Chan::new(capacity));
    // `Chan::new` made handle 0 for the sender and handle 1 for the receiver.
    (Sender::new(chan.clone(), 0), Receiver::new(chan, 1))
}

/// Counters of a channel (trio's `MemoryChannelStatistics`).
///
/// ```
/// trellis::run(async {
///     let (tx, rx) = trellis::channel::bounded::<u8>(4);
///     let _tx2 = tx.clone();
///     tx.send(7).await.unwrap();
///     let stats = rx.statistics();
///     assert_eq!(stats.current_buffer_used, 1);
///     assert_eq!(stats.max_buffer_size, Some(4));
///     assert_eq!(stats.open_send_channels, 2);
///     assert_eq!(stats.open_receive_channels, 1);
///     assert_eq!(stats.tasks_waiting_receive, 0);
/// });
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct ChannelStatistics {
    /// Messages in the buffer now.
    pub current_buffer_used: usize,
    /// The capacity; `None` for an unbounded channel (trio's `math.inf`).
    pub max_buffer_size: Option<usize>,
    /// Open (not closed) sender handles.
    pub open_send_channels: usize,
    /// Open receiver handles.
    pub open_receive_channels: usize,
    /// Tasks blocked in `send`, over all handles.
    pub tasks_waiting_send: usize,
    /// Tasks blocked in `recv`, over all handles.
    pub tasks_waiting_receive: usize,
    /// The most messages the buffer has held at once.
    pub peak_buffer_used: usize,
}
