//! TCP: listeners and streams.

use std::fmt;
use std::io;
use std::net::{self, Shutdown, SocketAddr};
use std::pin::Pin;
use std::task::{Context, Poll};

use socket2::{Domain, Protocol, SockAddr, Socket, Type};

use super::addr::{resolve, ToSocketAddrs};
use super::socket::{connect_stream, ListenerFd};
use super::with_context;
use crate::io::{fd_stream_impls, AsyncFd, FdReader, FdStream, SocketWriter, SplitStream};

/// A TCP socket listening for connections.
///
/// ```
/// use trellis::net::{TcpListener, TcpStream};
///
/// trellis::run(async {
///     let mut listener = TcpListener::bind("127.0.0.1:0").await?;
///     let client = TcpStream::connect(listener.local_addr()?).await?;
///     let (server_side, peer) = listener.accept().await?;
///     assert_eq!(peer, client.local_addr()?);
///     assert_eq!(server_side.peer_addr()?, client.local_addr()?);
///     Ok::<_, std::io::Error>(())
/// })
/// .unwrap();
/// ```
pub struct TcpListener {
    inner: ListenerFd<net::TcpListener>,
}

impl fmt::Debug for TcpListener {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TcpListener")
            .field("local_addr", &self.local_addr().ok())
            .finish()
    }
}

impl TcpListener {
    /// Binds to `addr` (the first of its addresses that can be bound) with `SO_REUSEADDR`, and
    /// listens. Port 0 picks a free port; [`local_addr`](TcpListener::local_addr) tells which.
    /// A checkpoint.
    ///
    /// # Errors
    /// If no address can be bound; the error names the address ("could not bind
    /// 127.0.0.1:80: Address already in use"), with the system's error kind.
    ///
    /// ```
    /// use trellis::net::TcpListener;
    ///
    /// trellis::run(async {
    ///     let listener = TcpListener::bind("127.0.0.1:0").await?;
    ///     let addr = listener.local_addr()?;
    ///     assert_ne!(addr.port(), 0); // the system picked a free port
    ///     // That port is taken now; the error names the address.
    ///     let err = TcpListener::bind(addr).await.unwrap_err();
    ///     assert_eq!(err.kind(), std::io::ErrorKind::AddrInUse);
    ///     assert!(err.to_string().contains(&addr.to_string()));
    ///     Ok::<_, std::io::Error>(())
    /// })
    /// .unwrap();
    /// ```
    pub async fn bind(addr: impl ToSocketAddrs) -> io::Result<TcpListener> {
        let addrs = resolve(&addr).await?;
        crate::checkpoint().await?;
        let mut last = None;
        for addr in addrs {
            match bind_listener(addr) {
                Ok(listener) => return TcpListener::from_std(listener),
                Err(e) => last = Some(with_context(e, || format!("could not bind {addr}"))),
            }
        }
        Err(last.unwrap_or_else(|| {
            io::Error::new(io::ErrorKind::InvalidInput, "no address to bind to")
        }))
    }

    /// Wraps a bound, listening std listener.
    ///
    /// # Panics
    /// Outside a runtime.
    ///
    /// ```
    /// use trellis::net::{TcpListener, TcpStream};
    ///
    /// trellis::run(async {
    ///     let std_listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    ///     let addr = std_listener.local_addr()?;
    ///     let mut listener = TcpListener::from_std(std_listener)?;
    ///     let _client = TcpStream::connect(addr).await?;
    ///     let (_server, _) = listener.accept().await?;
    ///     Ok::<_, std::io::Error>(())
    /// })
    /// .unwrap();
    /// ```
    pub fn from_std(listener: net::TcpListener) -> io::Result<TcpListener> {
        Ok(TcpListener {
            inner: ListenerFd::new(listener)?,
        })
    }

    /// Waits for a connection and returns it with the peer's address. A checkpoint; a cancelled
    /// accept takes no connection off the queue, so none is lost. The stream has `TCP_NODELAY`
    /// on (see [`TcpStream::set_nodelay`]).
    ///
    /// ```
    /// use trellis::net::{TcpListener, TcpStream};
    ///
    /// trellis::run(async {
    ///     let mut listener = TcpListener::bind("127.0.0.1:0").await?;
    ///     let client = TcpStream::connect(listener.local_addr()?).await?;
    ///     let (server, peer) = listener.accept().await?;
    ///     assert_eq!(peer, client.local_addr()?);
    ///     assert!(server.nodelay()?);
    ///     Ok::<_, std::io::Error>(())
    /// })
    /// .unwrap();
    /// ```
    pub async fn accept(&mut self) -> io::Result<(TcpStream, SocketAddr)> {
        self.inner
            .accept(net::TcpListener::accept, TcpStream::accepted)
            .await
    }

    /// Poll form of [`accept`](TcpListener::accept): cancellation-aware, not a schedule point.
    ///
    /// ```
    /// use trellis::net::{TcpListener, TcpStream};
    ///
    /// trellis::run(async {
    ///     let mut listener = TcpListener::bind("127.0.0.1:0").await?;
    ///     let client = TcpStream::connect(listener.local_addr()?).await?;
    ///     let (_server, peer) = std::future::poll_fn(|cx| listener.poll_accept(cx)).await?;
    ///     assert_eq!(peer, client.local_addr()?);
    ///     Ok::<_, std::io::Error>(())
    /// })
    /// .unwrap();
    /// ```
    pub fn poll_accept(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<io::Result<(TcpStream, SocketAddr)>> {
        self.inner
            .poll_accept(cx, net::TcpListener::accept, TcpStream::accepted)
    }

    /// The accepted connections as a stream (`futures_core::Stream`); it never ends by itself.
    ///
    /// ```
    /// use futures_lite::StreamExt;
    /// use trellis::net::{TcpListener, TcpStream};
    ///
    /// trellis::run(async {
    ///     let mut listener = TcpListener::bind("127.0.0.1:0").await?;
    ///     let addr = listener.local_addr()?;
    ///     let _clients = (TcpStream::connect(addr).await?, TcpStream::connect(addr).await?);
    ///     let mut incoming = listener.incoming();
    ///     for _ in 0..2 {
    ///         let stream = incoming.next().await.unwrap()?;
    ///         assert_eq!(stream.local_addr()?, addr);
    ///     }
    ///     Ok::<_, std::io::Error>(())
    /// })
    /// .unwrap();
    /// ```
    pub fn incoming(&mut self) -> Incoming<'_> {
        Incoming { listener: self }
    }

    /// The address the listener is bound to.
    ///
    /// ```
    /// use trellis::net::TcpListener;
    ///
    /// trellis::run(async {
    ///     let listener = TcpListener::bind("127.0.0.1:0").await?;
    ///     assert!(listener.local_addr()?.ip().is_loopback());
    ///     Ok::<_, std::io::Error>(())
    /// })
    /// .unwrap();
    /// ```
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.inner.get_ref().local_addr()
    }

    /// Deregisters the listener and returns the std listener (non-blocking).
    ///
    /// ```
    /// use trellis::net::TcpListener;
    ///
    /// trellis::run(async {
    ///     let listener = TcpListener::bind("127.0.0.1:0").await?;
    ///     let addr = listener.local_addr()?;
    ///     let std_listener = listener.into_std()?;
    ///     assert_eq!(std_listener.local_addr()?, addr);
    ///     Ok::<_, std::io::Error>(())
    /// })
    /// .unwrap();
    /// ```
    pub fn into_std(self) -> io::Result<net::TcpListener> {
        self.inner.into_inner()
    }
}

fn bind_listener(addr: SocketAddr) -> io::Result<net::TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    if addr.is_ipv6() {
        // Like trio: an IPv6 listener takes IPv6 only, so a second listener can take IPv4.
        socket.set_only_v6(true)?;
    }
    socket.set_nonblocking(true)?;
    socket.bind(&SockAddr::from(addr))?;
    socket.listen(super::LISTEN_BACKLOG)?;
    Ok(socket.into())
}

/// Stream of accepted connections; see [`TcpListener::incoming`].
///
/// ```
/// use futures_lite::StreamExt;
/// use trellis::net::{Incoming, TcpListener, TcpStream};
///
/// trellis::run(async {
///     let mut listener = TcpListener::bind("127.0.0.1:0").await?;
///     let _client = TcpStream::connect(listener.local_addr()?).await?;
///     let mut incoming: Incoming<'_> = listener.incoming();
///     assert!(incoming.next().await.unwrap().is_ok());
///     Ok::<_, std::io::Error>(())
/// })
/// .unwrap();
/// ```
pub struct Incoming<'a> {
    listener: &'a mut TcpListener,
}

impl fmt::Debug for Incoming<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Incoming")
            .field("listener", &self.listener)
            .finish()
    }
}

impl futures_core::Stream for Incoming<'_> {
    type Item = io::Result<TcpStream>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.listener
            .poll_accept(cx)
            .map(|accepted| Some(accepted.map(|(stream, _)| stream)))
    }
}

/// A TCP connection.
///
/// Reading and writing are checkpoints (see the [module docs](crate::net) for cancellation).
/// It implements the stream traits of [`trellis::io`](crate::io) and `futures_io`'s
/// `AsyncRead` / `AsyncWrite`, and splits into halves for two tasks with
/// [`into_split`](TcpStream::into_split).
///
/// ```
/// use futures_lite::{AsyncReadExt, AsyncWriteExt};
/// use trellis::net::{TcpListener, TcpStream};
///
/// trellis::run(async {
///     let mut listener = TcpListener::bind("127.0.0.1:0").await?;
///     let mut client = TcpStream::connect(listener.local_addr()?).await?;
///     let (mut server, _) = listener.accept().await?;
///     // The futures-io traits work too, for code written against them.
///     AsyncWriteExt::write_all(&mut client, b"GET /\n").await?;
///     client.shutdown(std::net::Shutdown::Write)?;
///     let mut request = String::new();
///     AsyncReadExt::read_to_string(&mut server, &mut request).await?;
///     assert_eq!(request, "GET /\n");
///     Ok::<_, std::io::Error>(())
/// })
/// .unwrap();
/// ```
pub struct TcpStream {
    inner: FdStream<net::TcpStream>,
}

impl fmt::Debug for TcpStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TcpStream")
            .field("local_addr", &self.local_addr().ok())
            .field("peer_addr", &self.peer_addr().ok())
            .finish()
    }
}

impl TcpStream {
    /// Connects to `addr`, trying its addresses one after the other until one accepts. A
    /// checkpoint; a cancelled connect closes its socket. For host names with several
    /// addresses, [`connect_tcp`](crate::net::connect_tcp) races them (happy eyeballs). The
    /// stream has `TCP_NODELAY` on (see [`set_nodelay`](TcpStream::set_nodelay)).
    ///
    /// # Errors
    /// The last attempt's error, naming its address ("could not connect to 127.0.0.1:1:
    /// Connection refused").
    ///
    /// ```
    /// use trellis::net::{TcpListener, TcpStream};
    ///
    /// trellis::run(async {
    ///     let listener = TcpListener::bind("127.0.0.1:0").await?;
    ///     let stream = TcpStream::connect(listener.local_addr()?).await?;
    ///     assert_eq!(stream.peer_addr()?, listener.local_addr()?);
    ///     // Nothing listens on a port whose listener is gone.
    ///     let free = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?;
    ///     let err = TcpStream::connect(free).await.unwrap_err();
    ///     assert_eq!(err.kind(), std::io::ErrorKind::ConnectionRefused);
    ///     Ok::<_, std::io::Error>(())
    /// })
    /// .unwrap();
    /// ```
    pub async fn connect(addr: impl ToSocketAddrs) -> io::Result<TcpStream> {
        let addrs = resolve(&addr).await?;
        let mut last = None;
        for addr in addrs {
            match connect_addr(addr).await {
                Ok(stream) => return Ok(stream),
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| {
            io::Error::new(io::ErrorKind::InvalidInput, "no address to connect to")
        }))
    }

    /// Wraps a connected std stream, keeping its options as they are (`TCP_NODELAY` included).
    ///
    /// # Panics
    /// Outside a runtime.
    ///
    /// ```
    /// use trellis::net::{TcpListener, TcpStream};
    ///
    /// trellis::run(async {
    ///     let listener = TcpListener::bind("127.0.0.1:0").await?;
    ///     let std_stream = std::net::TcpStream::connect(listener.local_addr()?)?;
    ///     let stream = TcpStream::from_std(std_stream)?;
    ///     assert_eq!(stream.peer_addr()?, listener.local_addr()?);
    ///     Ok::<_, std::io::Error>(())
    /// })
    /// .unwrap();
    /// ```
    pub fn from_std(stream: net::TcpStream) -> io::Result<TcpStream> {
        Ok(TcpStream {
            inner: FdStream::new(AsyncFd::new(stream)?),
        })
    }

    /// Reads some bytes; `Ok(0)` at end of stream. A checkpoint; a cancelled read consumed
    /// nothing.
    ///
    /// ```
    /// use trellis::net::{TcpListener, TcpStream};
    ///
    /// trellis::run(async {
    ///     let mut listener = TcpListener::bind("127.0.0.1:0").await?;
    ///     let mut client = TcpStream::connect(listener.local_addr()?).await?;
    ///     let (mut server, _) = listener.accept().await?;
    ///     client.write_all(b"hello").await?;
    ///     drop(client);
    ///     let mut buf = [0u8; 16];
    ///     let n = server.read(&mut buf).await?;
    ///     assert_eq!(&buf[..n], b"hello");
    ///     assert_eq!(server.read(&mut buf).await?, 0); // end of stream: the client is gone
    ///     Ok::<_, std::io::Error>(())
    /// })
    /// .unwrap();
    /// ```
    pub async fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.inner.reader.read(buf).await
    }

    /// Writes some bytes and returns how many. A checkpoint; a cancelled write wrote nothing.
    ///
    /// ```
    /// use trellis::net::{TcpListener, TcpStream};
    ///
    /// trellis::run(async {
    ///     let mut listener = TcpListener::bind("127.0.0.1:0").await?;
    ///     let mut client = TcpStream::connect(listener.local_addr()?).await?;
    ///     let (mut server, _) = listener.accept().await?;
    ///     let n = client.write(b"some bytes").await?;
    ///     assert!(n > 0); // as many as the socket took: maybe fewer than asked
    ///     let mut buf = [0u8; 16];
    ///     assert!(server.read(&mut buf).await? > 0);
    ///     Ok::<_, std::io::Error>(())
    /// })
    /// .unwrap();
    /// ```
    pub async fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.inner.writer.write(buf).await
    }

    /// Writes all of `buf`. On an error or cancellation after part of it was written, the error
    /// carries a [`PartialWrite`](crate::io::PartialWrite) with the count.
    ///
    /// ```
    /// use trellis::net::{TcpListener, TcpStream};
    ///
    /// trellis::run(async {
    ///     let mut listener = TcpListener::bind("127.0.0.1:0").await?;
    ///     let mut client = TcpStream::connect(listener.local_addr()?).await?;
    ///     let (mut server, _) = listener.accept().await?;
    ///     let message = vec![7u8; 100_000];
    ///     trellis::nursery(|n| async move {
    ///         n.spawn(async move { client.write_all(&message).await })?;
    ///         let mut total = 0;
    ///         let mut buf = [0u8; 8192];
    ///         while total < 100_000 {
    ///             total += server.read(&mut buf).await?;
    ///         }
    ///         Ok::<_, std::io::Error>(())
    ///     })
    ///     .await
    ///     .map_err(std::io::Error::from)?;
    ///     Ok::<_, std::io::Error>(())
    /// })
    /// .unwrap();
    /// ```
    pub async fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        crate::io::WriteStream::write_all(self, buf).await
    }

    /// Shuts down one or both directions (`shutdown(2)`): after `Shutdown::Write` the peer reads
    /// end of stream, and this side can still read.
    ///
    /// ```
    /// use std::net::Shutdown;
    /// use trellis::net::{TcpListener, TcpStream};
    ///
    /// trellis::run(async {
    ///     let mut listener = TcpListener::bind("127.0.0.1:0").await?;
    ///     let mut client = TcpStream::connect(listener.local_addr()?).await?;
    ///     let (mut server, _) = listener.accept().await?;
    ///     client.write_all(b"request").await?;
    ///     client.shutdown(Shutdown::Write)?; // "that is all": the server reads end of stream
    ///     let mut request = Vec::new();
    ///     let mut buf = [0u8; 16];
    ///     loop {
    ///         match server.read(&mut buf).await? {
    ///             0 => break,
    ///             n => request.extend_from_slice(&buf[..n]),
    ///         }
    ///     }
    ///     assert_eq!(request, b"request");
    ///     server.write_all(b"reply").await?; // the client can still read
    ///     let n = client.read(&mut buf).await?;
    ///     assert_eq!(&buf[..n], b"reply");
    ///     Ok::<_, std::io::Error>(())
    /// })
    /// .unwrap();
    /// ```
    pub fn shutdown(&self, how: Shutdown) -> io::Result<()> {
        self.inner.shutdown(how)
    }

    /// A stream a listener accepted, with `TCP_NODELAY` turned on.
    fn accepted(stream: net::TcpStream) -> io::Result<TcpStream> {
        // Best effort, as in trio: an option that cannot be set is no reason to drop the
        // connection (a socket already reset by its peer reports that on its first read).
        let _ = stream.set_nodelay(true);
        TcpStream::from_std(stream)
    }

    /// Sets `TCP_NODELAY` (disables Nagle's algorithm: small writes go out at once). It is on
    /// for streams trellis connects or accepts, as in trio: a stream API of separate `write`
    /// calls otherwise waits for ACKs on small messages. Turn it off to let the system coalesce
    /// small writes.
    ///
    /// ```
    /// use trellis::net::{TcpListener, TcpStream};
    ///
    /// trellis::run(async {
    ///     let listener = TcpListener::bind("127.0.0.1:0").await?;
    ///     let stream = TcpStream::connect(listener.local_addr()?).await?;
    ///     assert!(stream.nodelay()?);
    ///     stream.set_nodelay(false)?;
    ///     assert!(!stream.nodelay()?);
    ///     Ok::<_, std::io::Error>(())
    /// })
    /// .unwrap();
    /// ```
    pub fn set_nodelay(&self, nodelay: bool) -> io::Result<()> {
        self.inner.get_ref().set_nodelay(nodelay)
    }

    /// Whether `TCP_NODELAY` is set.
    ///
    /// ```
    /// use trellis::net::{TcpListener, TcpStream};
    ///
    /// trellis::run(async {
    ///     let listener = TcpListener::bind("127.0.0.1:0").await?;
    ///     let stream = TcpStream::connect(listener.local_addr()?).await?;
    ///     assert!(stream.nodelay()?); // on by default
    ///     Ok::<_, std::io::Error>(())
    /// })
    /// .unwrap();
    /// ```
    pub fn nodelay(&self) -> io::Result<bool> {
        self.inner.get_ref().nodelay()
    }

    /// This end's address.
    ///
    /// ```
    /// use trellis::net::{TcpListener, TcpStream};
    ///
    /// trellis::run(async {
    ///     let mut listener = TcpListener::bind("127.0.0.1:0").await?;
    ///     let mut client = TcpStream::connect(listener.local_addr()?).await?;
    ///     let (mut server, _) = listener.accept().await?;
    ///     assert_eq!(client.local_addr()?, server.peer_addr()?);
    ///     Ok::<_, std::io::Error>(())
    /// })
    /// .unwrap();
    /// ```
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.inner.get_ref().local_addr()
    }

    /// The peer's address.
    ///
    /// ```
    /// use trellis::net::{TcpListener, TcpStream};
    ///
    /// trellis::run(async {
    ///     let mut listener = TcpListener::bind("127.0.0.1:0").await?;
    ///     let mut client = TcpStream::connect(listener.local_addr()?).await?;
    ///     let (mut server, _) = listener.accept().await?;
    ///     assert_eq!(client.peer_addr()?, listener.local_addr()?);
    ///     assert_eq!(server.peer_addr()?, client.local_addr()?);
    ///     Ok::<_, std::io::Error>(())
    /// })
    /// .unwrap();
    /// ```
    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        self.inner.get_ref().peer_addr()
    }

    /// Splits into a read half and a write half that can be moved to two tasks. Dropping the
    /// write half shuts down the writing direction; the socket closes when both are dropped.
    ///
    /// ```
    /// use trellis::net::{TcpListener, TcpStream};
    ///
    /// trellis::run(async {
    ///     let mut listener = TcpListener::bind("127.0.0.1:0").await?;
    ///     let mut client = TcpStream::connect(listener.local_addr()?).await?;
    ///     let (mut server, _) = listener.accept().await?;
    ///     let (mut read, mut write) = server.into_split();
    ///     // The halves can go to different tasks: here an echo.
    ///     trellis::nursery(|n| async move {
    ///         n.spawn(async move {
    ///             let mut buf = [0u8; 64];
    ///             let k = read.read(&mut buf).await?;
    ///             write.write_all(&buf[..k]).await
    ///         })?;
    ///         client.write_all(b"echo me").await?;
    ///         let mut buf = [0u8; 64];
    ///         let k = client.read(&mut buf).await?;
    ///         assert_eq!(&buf[..k], b"echo me");
    ///         Ok::<_, std::io::Error>(())
    ///     })
    ///     .await
    ///     .map_err(std::io::Error::from)?;
    ///     Ok::<_, std::io::Error>(())
    /// })
    /// .unwrap();
    /// ```
    pub fn into_split(self) -> (TcpReadHalf, TcpWriteHalf) {
        let (reader, writer) = self.inner.into_split();
        (TcpReadHalf { reader }, TcpWriteHalf { writer })
    }
}

/// Connects one address without blocking: a non-blocking `connect`, then wait for writability
/// and read the outcome from `SO_ERROR`. Used by [`TcpStream::connect`] and by happy eyeballs.
pub(crate) async fn connect_addr(addr: SocketAddr) -> io::Result<TcpStream> {
    let context = |e| with_context(e, || format!("could not connect to {addr}"));
    crate::checkpoint().await?;
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))
        .map_err(context)?;
    // On by default, as in trio (see `TcpStream::set_nodelay`); best effort, as on accept.
    let _ = socket.set_tcp_nodelay(true);
    Ok(TcpStream {
        inner: connect_stream(socket, &SockAddr::from(addr), context).await?,
    })
}

/// The reading half of a [`TcpStream`].
///
/// ```
/// use trellis::net::{TcpListener, TcpReadHalf, TcpStream};
///
/// trellis::run(async {
///     let mut listener = TcpListener::bind("127.0.0.1:0").await?;
///     let mut client = TcpStream::connect(listener.local_addr()?).await?;
///     let (mut server, _) = listener.accept().await?;
///     let (mut read, _write): (TcpReadHalf, _) = server.into_split();
///     client.write_all(b"x").await?;
///     let mut buf = [0u8; 1];
///     assert_eq!(read.read(&mut buf).await?, 1);
///     Ok::<_, std::io::Error>(())
/// })
/// .unwrap();
/// ```
pub struct TcpReadHalf {
    reader: FdReader<net::TcpStream>,
}

/// The writing half of a [`TcpStream`]; dropping it shuts down the writing direction.
///
/// ```
/// use trellis::net::{TcpListener, TcpStream, TcpWriteHalf};
///
/// trellis::run(async {
///     let mut listener = TcpListener::bind("127.0.0.1:0").await?;
///     let mut client = TcpStream::connect(listener.local_addr()?).await?;
///     let (mut server, _) = listener.accept().await?;
///     let (_read, write): (_, TcpWriteHalf) = server.into_split();
///     drop(write); // shuts down writing: the client reads end of stream
///     let mut buf = [0u8; 1];
///     assert_eq!(client.read(&mut buf).await?, 0);
///     Ok::<_, std::io::Error>(())
/// })
/// .unwrap();
/// ```
pub struct TcpWriteHalf {
    writer: SocketWriter<net::TcpStream>,
}

impl fmt::Debug for TcpReadHalf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TcpReadHalf")
    }
}

impl fmt::Debug for TcpWriteHalf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TcpWriteHalf")
    }
}

impl TcpReadHalf {
    /// As [`TcpStream::read`].
    pub async fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.reader.read(buf).await
    }

    /// Puts the halves back together.
    ///
    /// # Panics
    /// If the halves come from different streams.
    ///
    /// ```
    /// use trellis::net::{TcpListener, TcpStream};
    ///
    /// trellis::run(async {
    ///     let mut listener = TcpListener::bind("127.0.0.1:0").await?;
    ///     let mut client = TcpStream::connect(listener.local_addr()?).await?;
    ///     let (mut server, _) = listener.accept().await?;
    ///     let (read, write) = server.into_split();
    ///     let mut server = read.reunite(write); // whole again; writing was not shut down
    ///     server.write_all(b"still open").await?;
    ///     let mut buf = [0u8; 16];
    ///     let n = client.read(&mut buf).await?;
    ///     assert_eq!(&buf[..n], b"still open");
    ///     Ok::<_, std::io::Error>(())
    /// })
    /// .unwrap();
    /// ```
    pub fn reunite(self, write: TcpWriteHalf) -> TcpStream {
        TcpStream {
            inner: FdStream::reunite(self.reader, write.writer)
                .expect("TcpReadHalf::reunite: the halves come from different streams"),
        }
    }
}

impl TcpWriteHalf {
    /// As [`TcpStream::write`].
    pub async fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.writer.write(buf).await
    }

    /// As [`TcpStream::write_all`].
    pub async fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        crate::io::WriteStream::write_all(self, buf).await
    }
}

fd_stream_impls!(read: TcpStream, inner.reader);
fd_stream_impls!(write: TcpStream, inner.writer);
fd_stream_impls!(read: TcpReadHalf, reader);
fd_stream_impls!(write: TcpWriteHalf, writer);

impl SplitStream for TcpStream {
    type ReadHalf = TcpReadHalf;
    type WriteHalf = TcpWriteHalf;

    fn into_split(self) -> (TcpReadHalf, TcpWriteHalf) {
        TcpStream::into_split(self)
    }
}
