//! UDP sockets.

use std::fmt;
use std::io;
use std::net::{self, SocketAddr};

use super::addr::{resolve, ToSocketAddrs};
use super::with_context;
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
    /// The socket's family, fixed at creation: `send_to` picks a destination of it without
    /// asking the kernel each time.
    ipv6: bool,
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
    ///
    /// ```
    /// use trellis::net::UdpSocket;
    ///
    /// trellis::run(async {
    ///     let socket = UdpSocket::bind("127.0.0.1:0").await?;
    ///     assert_ne!(socket.local_addr()?.port(), 0);
    ///     Ok::<_, std::io::Error>(())
    /// })
    /// .unwrap();
    /// ```
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
    ///
    /// ```
    /// use trellis::net::UdpSocket;
    ///
    /// trellis::run(async {
    ///     let std_socket = std::net::UdpSocket::bind("127.0.0.1:0")?;
    ///     let addr = std_socket.local_addr()?;
    ///     let socket = UdpSocket::from_std(std_socket)?;
    ///     assert_eq!(socket.local_addr()?, addr);
    ///     Ok::<_, std::io::Error>(())
    /// })
    /// .unwrap();
    /// ```
    pub fn from_std(socket: net::UdpSocket) -> io::Result<UdpSocket> {
        let ipv6 = socket.local_addr()?.is_ipv6();
        Ok(UdpSocket {
            fd: AsyncFd::new(socket)?,
            ipv6,
        })
    }

    /// Sets the default destination of [`send`](UdpSocket::send) and accepts datagrams only from
    /// it. A checkpoint.
    ///
    /// ```
    /// use trellis::net::UdpSocket;
    ///
    /// trellis::run(async {
    ///     let a = UdpSocket::bind("127.0.0.1:0").await?;
    ///     let b = UdpSocket::bind("127.0.0.1:0").await?;
    ///     a.connect(b.local_addr()?).await?;
    ///     a.send(b"no address needed").await?;
    ///     let mut buf = [0u8; 32];
    ///     let (n, from) = b.recv_from(&mut buf).await?;
    ///     assert_eq!(&buf[..n], b"no address needed");
    ///     assert_eq!(from, a.local_addr()?);
    ///     Ok::<_, std::io::Error>(())
    /// })
    /// .unwrap();
    /// ```
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

    /// Sends a datagram to `addr`; returns the bytes sent. A checkpoint.
    ///
    /// Of the addresses `addr` stands for, the first of the socket's own family is used (a
    /// name such as `"localhost"` may resolve to `::1` before `127.0.0.1`, and an IPv4 socket
    /// cannot send to `::1`). An IPv6 socket with no IPv6 address to choose sends to the first
    /// IPv4 one in its IPv4-mapped form (`::ffff:a.b.c.d`), which a dual-stack socket reaches.
    ///
    /// # Errors
    /// `InvalidInput` naming the addresses if an IPv4 socket is given no IPv4 address; the
    /// resolver's error; the system's error for the send.
    ///
    /// ```
    /// use trellis::net::UdpSocket;
    ///
    /// trellis::run(async {
    ///     let a = UdpSocket::bind("127.0.0.1:0").await?;
    ///     let b = UdpSocket::bind("127.0.0.1:0").await?;
    ///     assert_eq!(a.send_to(b"hi", b.local_addr()?).await?, 2);
    ///     let mut buf = [0u8; 8];
    ///     let (n, _) = b.recv_from(&mut buf).await?;
    ///     assert_eq!(&buf[..n], b"hi");
    ///     // An IPv4 socket given only an IPv6 address:
    ///     let err = a.send_to(b"hi", "[::1]:9").await.unwrap_err();
    ///     assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput);
    ///     Ok::<_, std::io::Error>(())
    /// })
    /// .unwrap();
    /// ```
    pub async fn send_to(&self, buf: &[u8], addr: impl ToSocketAddrs) -> io::Result<usize> {
        let addrs = resolve(&addr).await?;
        let target = destination(self.ipv6, &addrs)?;
        self.fd.write_with(|s| s.send_to(buf, target)).await
    }

    /// Receives a datagram; returns its length (truncated to `buf`) and sender. A checkpoint; a
    /// cancelled receive leaves the datagram queued.
    ///
    /// ```
    /// use trellis::net::UdpSocket;
    ///
    /// trellis::run(async {
    ///     let a = UdpSocket::bind("127.0.0.1:0").await?;
    ///     let b = UdpSocket::bind("127.0.0.1:0").await?;
    ///     a.send_to(b"0123456789", b.local_addr()?).await?;
    ///     let mut small = [0u8; 4];
    ///     let (n, from) = b.recv_from(&mut small).await?;
    ///     assert_eq!((n, &small), (4, b"0123")); // truncated to the buffer
    ///     assert_eq!(from, a.local_addr()?);
    ///     Ok::<_, std::io::Error>(())
    /// })
    /// .unwrap();
    /// ```
    pub async fn recv_from(&self, buf: &mut [u8]) -> io::Result<(usize, SocketAddr)> {
        self.fd.read_with(|s| s.recv_from(buf)).await
    }

    /// Sends a datagram to the connected peer. A checkpoint.
    ///
    /// ```
    /// use trellis::net::UdpSocket;
    ///
    /// trellis::run(async {
    ///     let a = UdpSocket::bind("127.0.0.1:0").await?;
    ///     let b = UdpSocket::bind("127.0.0.1:0").await?;
    ///     a.connect(b.local_addr()?).await?;
    ///     assert_eq!(a.send(b"ping").await?, 4);
    ///     let mut buf = [0u8; 8];
    ///     assert_eq!(b.recv_from(&mut buf).await?.0, 4);
    ///     Ok::<_, std::io::Error>(())
    /// })
    /// .unwrap();
    /// ```
    pub async fn send(&self, buf: &[u8]) -> io::Result<usize> {
        self.fd.write_with(|s| s.send(buf)).await
    }

    /// Receives a datagram from the connected peer. A checkpoint.
    ///
    /// ```
    /// use trellis::net::UdpSocket;
    ///
    /// trellis::run(async {
    ///     let a = UdpSocket::bind("127.0.0.1:0").await?;
    ///     let b = UdpSocket::bind("127.0.0.1:0").await?;
    ///     a.connect(b.local_addr()?).await?;
    ///     b.connect(a.local_addr()?).await?;
    ///     b.send(b"pong").await?;
    ///     let mut buf = [0u8; 8];
    ///     let n = a.recv(&mut buf).await?;
    ///     assert_eq!(&buf[..n], b"pong");
    ///     Ok::<_, std::io::Error>(())
    /// })
    /// .unwrap();
    /// ```
    pub async fn recv(&self, buf: &mut [u8]) -> io::Result<usize> {
        self.fd.read_with(|s| s.recv(buf)).await
    }

    /// The bound address.
    ///
    /// ```
    /// use trellis::net::UdpSocket;
    ///
    /// trellis::run(async {
    ///     let socket = UdpSocket::bind("127.0.0.1:0").await?;
    ///     assert!(socket.local_addr()?.ip().is_loopback());
    ///     Ok::<_, std::io::Error>(())
    /// })
    /// .unwrap();
    /// ```
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.fd.get_ref().local_addr()
    }

    /// The connected peer's address.
    ///
    /// ```
    /// use trellis::net::UdpSocket;
    ///
    /// trellis::run(async {
    ///     let a = UdpSocket::bind("127.0.0.1:0").await?;
    ///     let b = UdpSocket::bind("127.0.0.1:0").await?;
    ///     assert!(a.peer_addr().is_err()); // not connected yet
    ///     a.connect(b.local_addr()?).await?;
    ///     assert_eq!(a.peer_addr()?, b.local_addr()?);
    ///     Ok::<_, std::io::Error>(())
    /// })
    /// .unwrap();
    /// ```
    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        self.fd.get_ref().peer_addr()
    }
}

/// Where a socket bound to `local` sends a datagram for `addrs`: the first address of its own
/// family; for an IPv6 socket without one, the first IPv4 address, IPv4-mapped.
fn destination(local_ipv6: bool, addrs: &[SocketAddr]) -> io::Result<SocketAddr> {
    if addrs.is_empty() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "no address to send to",
        ));
    }
    if let Some(same) = addrs.iter().find(|a| a.is_ipv6() == local_ipv6) {
        return Ok(*same);
    }
    match addrs[0] {
        SocketAddr::V4(v4) if local_ipv6 => {
            Ok(SocketAddr::new(v4.ip().to_ipv6_mapped().into(), v4.port()))
        }
        _ => {
            let listed: Vec<String> = addrs.iter().map(ToString::to_string).collect();
            Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "no IPv4 address to send to from an IPv4 socket among {}",
                    listed.join(", ")
                ),
            ))
        }
    }
}
