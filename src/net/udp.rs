//! UDP sockets.

use std::fmt;
use std::io;
use std::net::{self, SocketAddr};

use super::addr::{resolve, ToSocketAddrs};
use super::{with_context, Busy};
use crate::io::AsyncFd;

/// A UDP socket.
///
/// Its methods take `&self`, so one socket can be shared (in an `Arc`) by a task that receives
/// and a task that sends. Two tasks receiving (or two sending) at the same time is an error
/// ([`Error::BusyResource`](crate::Error::BusyResource) inside the `io::Error`), as in trio. A
/// cancelled receive consumed no datagram; a cancelled send sent nothing.
///
/// ```
/// use trellis::net::UdpSocket;
///
/// trellis::run(async {
///     let a = UdpSocket::bind("127.0.0.1:0").await?;
///     let b = UdpSocket::bind("127.0.0.1:0").await?;
///     a.send_to(b"ping", b.local_addr()?).await?;
///     let mut buf = [0u8; 16];
///     let (n, from) = b.recv_from(&mut buf).await?;
///     assert_eq!((&buf[..n], from), (&b"ping"[..], a.local_addr()?));
///     Ok::<_, std::io::Error>(())
/// })
/// .unwrap();
/// ```
pub struct UdpSocket {
    fd: AsyncFd<net::UdpSocket>,
    receiving: Busy,
    sending: Busy,
}

impl fmt::Debug for UdpSocket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UdpSocket")
            .field("local_addr", &self.local_addr().ok())
            .finish()
    }
}

impl UdpSocket {
    /// Binds to `addr` (the first of its addresses that can be bound). A checkpoint.
    ///
    /// # Errors
    /// If no address can be bound; the error names the address.
    pub async fn bind(addr: impl ToSocketAddrs) -> io::Result<UdpSocket> {
        let addrs = resolve(&addr).await?;
        crate::checkpoint().await?;
        let mut last = None;
        for addr in addrs {
            match net::UdpSocket::bind(addr) {
                Ok(socket) => return UdpSocket::from_std(socket),
                Err(e) => last = Some(with_context(e, || format!("could not bind {addr}"))),
            }
        }
        Err(last.unwrap_or_else(|| {
            io::Error::new(io::ErrorKind::InvalidInput, "no address to bind to")
        }))
    }

    /// Wraps a bound std socket.
    ///
    /// # Panics
    /// Outside a runtime.
    pub fn from_std(socket: net::UdpSocket) -> io::Result<UdpSocket> {
        Ok(UdpSocket {
            fd: AsyncFd::new(socket)?,
            receiving: Busy::new(),
            sending: Busy::new(),
        })
    }

    /// Sets the default destination of [`send`](UdpSocket::send) and accepts datagrams only from
    /// it. A checkpoint.
    pub async fn connect(&self, addr: impl ToSocketAddrs) -> io::Result<()> {
        let addrs = resolve(&addr).await?;
        crate::checkpoint().await?;
        let mut last = None;
        for addr in addrs {
            match self.fd.get_ref().connect(addr) {
                Ok(()) => return Ok(()),
                Err(e) => last = Some(with_context(e, || format!("could not connect to {addr}"))),
            }
        }
        Err(last.unwrap_or_else(|| {
            io::Error::new(io::ErrorKind::InvalidInput, "no address to connect to")
        }))
    }

    /// Sends a datagram to `addr` (its first address); returns the bytes sent. A checkpoint.
    pub async fn send_to(&self, buf: &[u8], addr: impl ToSocketAddrs) -> io::Result<usize> {
        let target = *resolve(&addr)
            .await?
            .first()
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "no address to send to"))?;
        let _busy = self.sending.enter()?;
        self.fd.write_with(|s| s.send_to(buf, target)).await
    }

    /// Receives a datagram; returns its length (truncated to `buf`) and sender. A checkpoint; a
    /// cancelled receive leaves the datagram queued.
    pub async fn recv_from(&self, buf: &mut [u8]) -> io::Result<(usize, SocketAddr)> {
        let _busy = self.receiving.enter()?;
        self.fd.read_with(|s| s.recv_from(buf)).await
    }

    /// Sends a datagram to the connected peer. A checkpoint.
    pub async fn send(&self, buf: &[u8]) -> io::Result<usize> {
        let _busy = self.sending.enter()?;
        self.fd.write_with(|s| s.send(buf)).await
    }

    /// Receives a datagram from the connected peer. A checkpoint.
    pub async fn recv(&self, buf: &mut [u8]) -> io::Result<usize> {
        let _busy = self.receiving.enter()?;
        self.fd.read_with(|s| s.recv(buf)).await
    }

    /// The bound address.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.fd.get_ref().local_addr()
    }

    /// The connected peer's address.
    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        self.fd.get_ref().peer_addr()
    }
}
