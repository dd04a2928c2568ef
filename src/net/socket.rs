//! What TCP and Unix-domain sockets share below their public types: a listener on the reactor,
//! and the non-blocking connect that makes a stream.
//!
//! Accepting: a listener's descriptor is readable when a connection is queued. `accept(2)` takes
//! it off the queue only once the wait is over, so a cancelled accept loses no connection.
//!
//! Connecting: `connect(2)` on a non-blocking socket starts the handshake and says
//! `EINPROGRESS`; the socket becomes writable when the handshake is over, and `SO_ERROR` then
//! says whether it succeeded. A connect cancelled during the wait drops the socket, which closes
//! the half-open connection.

use std::io;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::task::{Context, Poll};

use socket2::{SockAddr, SockRef, Socket};

use crate::cancel::CancelWaiter;
use crate::io::{AsyncFd, Direction, FdStream};

/// A listening socket registered with the reactor. `L` is the standard library's listener type.
pub(crate) struct ListenerFd<L: AsRawFd> {
    fd: AsyncFd<L>,
    /// For [`poll_accept`](ListenerFd::poll_accept), the poll-based accept.
    waiter: CancelWaiter,
}

impl<L: AsRawFd> ListenerFd<L> {
    /// Registers `listener`, bound and listening.
    pub(crate) fn new(listener: L) -> io::Result<Self> {
        Ok(ListenerFd {
            fd: AsyncFd::new(listener)?,
            waiter: CancelWaiter::new(),
        })
    }

    /// The listener, for its address.
    pub(crate) fn get_ref(&self) -> &L {
        self.fd.get_ref()
    }

    /// Deregisters the listener and gives it back.
    pub(crate) fn into_inner(self) -> io::Result<L> {
        self.fd.into_inner()
    }

    /// Waits for a connection and takes it with `accept` (the std listener's own), then makes
    /// it a trellis stream with `wrap`. A checkpoint.
    pub(crate) async fn accept<S, A, T>(
        &mut self,
        accept: impl FnMut(&L) -> io::Result<(S, A)>,
        wrap: impl FnOnce(S) -> io::Result<T>,
    ) -> io::Result<(T, A)> {
        let (stream, peer) = self.fd.read_with(accept).await?;
        Ok((wrap(stream)?, peer))
    }

    /// Poll form of [`accept`](ListenerFd::accept): cancellation-aware, not a schedule point.
    pub(crate) fn poll_accept<S, A, T>(
        &mut self,
        cx: &mut Context<'_>,
        accept: impl FnMut(&L) -> io::Result<(S, A)>,
        wrap: impl FnOnce(S) -> io::Result<T>,
    ) -> Poll<io::Result<(T, A)>> {
        self.fd
            .poll_io(Direction::Read, &mut self.waiter, cx, accept, |_| false)
            .map(|accepted| accepted.and_then(|(stream, peer)| Ok((wrap(stream)?, peer))))
    }
}

/// Connects `socket` to `addr` without blocking the runtime and returns the stream (see the
/// module docs). The wait for the handshake is cancellable; callers checkpoint before making
/// the socket. Errors of the connection go through `context`, so they name the address.
pub(crate) async fn connect_stream<S>(
    socket: Socket,
    addr: &SockAddr,
    context: impl Fn(io::Error) -> io::Error,
) -> io::Result<FdStream<S>>
where
    S: AsRawFd + AsFd + From<OwnedFd>,
    for<'a> &'a S: io::Read + io::Write,
{
    socket.set_nonblocking(true).map_err(&context)?;
    match socket.connect(addr) {
        Ok(()) => {}
        Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => {}
        Err(e) => return Err(context(e)),
    }
    let fd = AsyncFd::new(S::from(OwnedFd::from(socket)))?;
    // If cancelled here, `fd` drops and the half-open socket is closed.
    fd.writable().await?;
    if let Some(e) = SockRef::from(fd.get_ref()).take_error()? {
        return Err(context(e));
    }
    Ok(FdStream::new(fd))
}
