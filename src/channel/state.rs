//! The shared state of a channel and the rules of its two waits (send and receive).
//!
//! One mutex guards the buffer, the handle table and both lots. Invariants, as in trio's memory
//! channels:
//! - receivers are parked only while the buffer is empty, so a send with a receiver waiting
//!   hands its message straight to the first receiver (it belongs to that receiver);
//! - senders are parked only while the buffer is full; a receive that takes from a full buffer
//!   moves the first waiting sender's message into it at once, so the freed room goes to that
//!   sender and never to a later `try_send`.
//!
//! Redelivery: a message handed to (or taken by) a receive that is dropped before returning it
//! goes to the next waiting receiver, or back to the *front* of the buffer, so order is kept and
//! nothing is lost. The buffer may then hold one message more than its capacity for a moment;
//! senders simply see it full.
//!
//! Each handle (each clone of a `Sender` or `Receiver`) has an entry in `handles` saying whether
//! it was closed; waiters carry their handle's key, so closing one clone wakes only its own
//! waiters.

use std::collections::VecDeque;
use std::marker::PhantomData;
use std::mem;
use std::sync::Mutex;

use slab::Slab;

use crate::error::{Cancelled, Error};
use crate::sync::parking_lot::{lock, ParkingLot, Site, WakeList, MAIN};

use super::send_error::SendError;
use super::ChannelStatistics;

pub(crate) struct Chan<T> {
    pub(crate) state: Mutex<State<T>>,
}

pub(crate) struct State<T> {
    buffer: VecDeque<T>,
    /// `usize::MAX` for an unbounded channel.
    capacity: usize,
    peak: usize,
    open_senders: usize,
    open_receivers: usize,
    /// Per handle: closed?
    handles: Slab<bool>,
    send_lot: ParkingLot<Result<(), Error>, SendRequest<T>>,
    recv_lot: ParkingLot<Result<T, Error>, usize>,
}

/// What a waiting sender brings: its handle and its message (taken by the receiver that is
/// served by it; still there if the send fails).
pub(crate) struct SendRequest<T> {
    pub(crate) handle: usize,
    pub(crate) value: Option<T>,
}

impl<T> SendRequest<T> {
    /// The message of a send that failed.
    pub(crate) fn unsent(self) -> T {
        self.value.expect("a failed send still holds its message")
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Side {
    Send,
    Receive,
}

impl<T> Chan<T> {
    /// A channel with one open sender handle (key 0) and one open receiver handle (key 1).
    pub(crate) fn new(capacity: usize) -> Self {
        let mut handles = Slab::with_capacity(2);
        handles.insert(false);
        handles.insert(false);
        Chan {
            state: Mutex::new(State {
                buffer: VecDeque::new(),
                capacity,
                peak: 0,
                open_senders: 1,
                open_receivers: 1,
                handles,
                send_lot: ParkingLot::new(),
                recv_lot: ParkingLot::new(),
            }),
        }
    }

    /// A new handle on `side`, closed if `from` (the handle being cloned) is closed.
    pub(crate) fn clone_handle(&self, side: Side, from: usize) -> usize {
        let mut st = lock(&self.state);
        let closed = st.handles[from];
        if !closed {
            match side {
                Side::Send => st.open_senders += 1,
                Side::Receive => st.open_receivers += 1,
            }
        }
        st.handles.insert(closed)
    }

    pub(crate) fn is_closed(&self, handle: usize) -> bool {
        lock(&self.state).handles[handle]
    }

    /// Closes one handle (trio's `close`): its own waiters fail with `Closed`; closing the last
    /// sender ends the channel for receivers once the buffer is drained (`EndOfChannel`);
    /// closing the last receiver breaks it for senders (`BrokenResource`) and drops the
    /// buffered messages.
    pub(crate) fn close(&self, side: Side, handle: usize) {
        let mut wakes = WakeList::new();
        let mut st = lock(&self.state);
        if mem::replace(&mut st.handles[handle], true) {
            return;
        }
        let mine = |h: &usize| *h == handle;
        let dropped = match side {
            Side::Send => {
                st.send_lot.unpark_where(
                    MAIN,
                    |r| mine(&r.handle),
                    |_| Err(Error::Closed),
                    &mut wakes,
                );
                st.open_senders -= 1;
                if st.open_senders == 0 {
                    // Receivers wait only on an empty buffer, so all of them are at the end.
                    st.recv_lot
                        .break_lot(|_| Err(Error::EndOfChannel), &mut wakes);
                }
                VecDeque::new()
            }
            Side::Receive => {
                st.recv_lot
                    .unpark_where(MAIN, mine, |_| Err(Error::Closed), &mut wakes);
                st.open_receivers -= 1;
                if st.open_receivers == 0 {
                    st.send_lot
                        .break_lot(|_| Err(Error::BrokenResource), &mut wakes);
                    mem::take(&mut st.buffer)
                } else {
                    VecDeque::new()
                }
            }
        };
        drop(st);
        wakes.wake_all();
        // Messages are dropped outside the lock: their `Drop` may use this channel.
        drop(dropped);
    }

    /// Forgets a handle that was closed (its `Sender`/`Receiver` is being dropped).
    pub(crate) fn remove_handle(&self, handle: usize) {
        lock(&self.state).handles.remove(handle);
    }

    pub(crate) fn statistics(&self) -> ChannelStatistics {
        let st = lock(&self.state);
        ChannelStatistics {
            current_buffer_used: st.buffer.len(),
            max_buffer_size: (st.capacity != usize::MAX).then_some(st.capacity),
            open_send_channels: st.open_senders,
            open_receive_channels: st.open_receivers,
            tasks_waiting_send: st.send_lot.len(MAIN),
            tasks_waiting_receive: st.recv_lot.len(MAIN),
            peak_buffer_used: st.peak,
        }
    }
}

/// The send operation.
pub(crate) struct SendSite<T>(PhantomData<T>);

impl<T> Site for SendSite<T> {
    type State = State<T>;
    type Value = Result<(), Error>;
    type Request = SendRequest<T>;
    type Output = ();
    type Error = SendError<T>;
    const NAME: &'static str = "channel::Sender::send";

    fn lot(state: &mut State<T>) -> &mut ParkingLot<Result<(), Error>, SendRequest<T>> {
        &mut state.send_lot
    }

    #[inline]
    fn attempt(
        st: &mut State<T>,
        request: &mut SendRequest<T>,
        wakes: &mut WakeList,
    ) -> Option<Result<(), Error>> {
        if st.handles[request.handle] {
            return Some(Err(Error::Closed));
        }
        // Broken when the last receiver closed.
        if st.send_lot.is_broken() {
            return Some(Err(Error::BrokenResource));
        }
        if let Some((key, _)) = st.recv_lot.front(MAIN) {
            debug_assert!(
                st.buffer.is_empty(),
                "receivers wait only on an empty buffer"
            );
            let value = request.value.take().expect("a send carries its message");
            st.recv_lot.unpark_key(key, Ok(value), wakes);
            return Some(Ok(()));
        }
        if st.buffer.len() < st.capacity {
            st.buffer
                .push_back(request.value.take().expect("a send carries its message"));
            st.peak = st.peak.max(st.buffer.len());
            return Some(Ok(()));
        }
        None
    }

    fn finish(value: Result<(), Error>, request: SendRequest<T>) -> Result<(), SendError<T>> {
        value.map_err(|reason| SendError::new(request.unsent(), reason))
    }

    fn cancelled(c: Cancelled, request: SendRequest<T>) -> SendError<T> {
        SendError::new(request.unsent(), Error::Cancelled(c))
    }

    // A send handed `Ok` has delivered its message; one handed an error still holds it, and
    // it is dropped with the abandoned future. Nothing to pass on either way.
    fn redeliver(
        _: &mut State<T>,
        _: Result<(), Error>,
        _: &mut SendRequest<T>,
        _: &mut WakeList,
    ) -> Option<Result<(), Error>> {
        None
    }
}

/// The receive operation.
pub(crate) struct RecvSite<T>(PhantomData<T>);

impl<T> Site for RecvSite<T> {
    type State = State<T>;
    type Value = Result<T, Error>;
    type Request = usize;
    type Output = T;
    type Error = Error;
    const NAME: &'static str = "channel::Receiver::recv";

    fn lot(state: &mut State<T>) -> &mut ParkingLot<Result<T, Error>, usize> {
        &mut state.recv_lot
    }

    #[inline]
    fn attempt(
        st: &mut State<T>,
        handle: &mut usize,
        wakes: &mut WakeList,
    ) -> Option<Result<T, Error>> {
        if st.handles[*handle] {
            return Some(Err(Error::Closed));
        }
        // The room this receive frees goes to the first waiting sender (fairness).
        if let Some((key, request)) = st.send_lot.front(MAIN) {
            let value = request
                .value
                .take()
                .expect("a parked send holds its message");
            st.send_lot.unpark_key(key, Ok(()), wakes);
            st.buffer.push_back(value);
        }
        if let Some(value) = st.buffer.pop_front() {
            return Some(Ok(value));
        }
        if st.open_senders == 0 {
            return Some(Err(Error::EndOfChannel));
        }
        None
    }

    fn finish(value: Result<T, Error>, _: usize) -> Result<T, Error> {
        value
    }

    fn cancelled(c: Cancelled, _: usize) -> Error {
        Error::Cancelled(c)
    }

    fn redeliver(
        st: &mut State<T>,
        value: Result<T, Error>,
        _: &mut usize,
        wakes: &mut WakeList,
    ) -> Option<Result<T, Error>> {
        let Ok(message) = value else {
            return None;
        };
        if st.open_receivers == 0 {
            // Nobody can receive it any more; the caller drops it outside the lock.
            return Some(Ok(message));
        }
        // It was the oldest message: the next receiver gets it, or it goes back to the front.
        if let Err(Ok(message)) = st.recv_lot.unpark(MAIN, Ok(message), wakes) {
            st.buffer.push_front(message);
        }
        None
    }
}
