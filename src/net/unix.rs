//! Unix-domain sockets: streams, listeners and datagrams. Addresses are paths, or abstract
//! names on Linux (see the `net` module docs).

use std::fmt;
use std::io;
use std::net::Shutdown;
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::{self, SocketAddr};
use std::path::Path;
use std::task::{Context, Poll};

use socket2::{Domain, SockAddr, SockRef, Socket, Type};

use super::socket::{connect_stream, ListenerFd};
use super::with_context;
use crate::io::{fd_stream_impls, AsyncFd, FdReader, FdStream, SocketWriter, SplitStream};

/// A Unix-domain socket listening for connections.
///
/// ```
/// use trellis::net::{UnixListener, UnixStream};
///
/// trellis::run(async {
///     let dir = std::env::temp_dir().join(format!("trellis-doc-{}", std::process::id()));
///     std::fs::create_dir_all(&dir)?;
///     let path = dir.join("listener.sock");
///     let _ = std::fs::remove_file(&path);
///     let mut listener = UnixListener::bind(&path)?;
///     let mut client = UnixStream::connect(&path).await?;
///     let (mut server_side, _) = listener.accept().await?;
///     client.write_all(b"hi").await?;
///     let mut buf = [0u8; 2];
///     server_side.read(&mut buf).await?;
///     assert_eq!(&buf, b"hi");
///     std::fs::remove_dir_all(&dir)?;
///     Ok::<_, std::io::Error>(())
/// })
/// .unwrap();
/// ```
pub struct UnixListener {
    inner: ListenerFd<net::UnixListener>,
}

impl fmt::Debug for UnixListener {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UnixListener")
            .field("local_addr", &self.local_addr().ok())
            .finish()
    }
}

impl UnixListener {
    /// Binds to `path` and listens. Binding does not block, so this is not async. On Linux, a
    /// path starting with a NUL byte is an abstract name (see
    /// [Unix-domain addresses](crate::net#unix-domain-addresses)).
    ///
    /// ```
    /// # #[cfg(target_os = "linux")]
    /// # {
    /// use std::os::linux::net::SocketAddrExt;
    /// use trellis::net::{UnixListener, UnixStream};
    ///
    /// trellis::run(async {
    ///     let name = format!("\0trellis-doc-abstract-{}", std::process::id());
    ///     let mut listener = UnixListener::bind(&name)?;
    ///     assert_eq!(
    ///         listener.local_addr()?.as_abstract_name(),
    ///         Some(&name.as_bytes()[1..])
    ///     );
    ///     let _client = UnixStream::connect(&name).await?;
    ///     let (_server_side, _) = listener.accept().await?;
    ///     Ok::<_, std::io::Error>(())
    /// })
    /// .unwrap();
    /// # }
    /// ```
    ///
    /// # Errors
    /// If the path cannot be bound (it exists, say); the error names the path.
    ///
    /// # Panics
    /// Outside a runtime.
    pub fn bind(path: impl AsRef<Path>) -> io::Result<UnixListener> {
        let path = path.as_ref();
        let listener = bind_socket(path, Type::STREAM)
            .and_then(|socket| {
                socket.listen(super::LISTEN_BACKLOG)?;
                Ok(net::UnixListener::from(OwnedFd::from(socket)))
            })
            .map_err(|e| with_context(e, || format!("could not bind {}", describe(path))))?;
        UnixListener::from_std(listener)
    }

    /// Wraps a bound, listening std listener.
    ///
    /// # Panics
    /// Outside a runtime.
    ///
    /// ```
    /// use trellis::net::{UnixListener, UnixStream};
    ///
    /// trellis::run(async {
    ///     let path = std::env::temp_dir()
    ///         .join(format!("trellis-doc-unix-from-std-{}.sock", std::process::id()));
    ///     let std_listener = std::os::unix::net::UnixListener::bind(&path)?;
    ///     let mut listener = UnixListener::from_std(std_listener)?;
    ///     let _client = UnixStream::connect(&path).await?;
    ///     let (_server, _) = listener.accept().await?;
    ///     std::fs::remove_file(&path)?;
    ///     Ok::<_, std::io::Error>(())
    /// })
    /// .unwrap();
    /// ```
    pub fn from_std(listener: net::UnixListener) -> io::Result<UnixListener> {
        Ok(UnixListener {
            inner: ListenerFd::new(listener)?,
        })
    }

    /// Waits for a connection. A checkpoint; a cancelled accept loses no connection.
    ///
    /// ```
    /// use trellis::net::{UnixListener, UnixStream};
    ///
    /// trellis::run(async {
    ///     let path = std::env::temp_dir()
    ///         .join(format!("trellis-doc-unix-accept-{}.sock", std::process::id()));
    ///     let mut listener = UnixListener::bind(&path)?;
    ///     let mut client = UnixStream::connect(&path).await?;
    ///     let (mut server, peer) = listener.accept().await?;
    ///     assert!(peer.is_unnamed()); // the client did not bind a path
    ///     client.write_all(b"hi").await?;
    ///     let mut buf = [0u8; 2];
    ///     assert_eq!(server.read(&mut buf).await?, 2);
    ///     std::fs::remove_file(&path)?;
    ///     Ok::<_, std::io::Error>(())
    /// })
    /// .unwrap();
    /// ```
    pub async fn accept(&mut self) -> io::Result<(UnixStream, SocketAddr)> {
        self.inner
            .accept(net::UnixListener::accept, UnixStream::from_std)
            .await
    }

    /// Poll form of [`accept`](UnixListener::accept): cancellation-aware, not a schedule point.
    ///
    /// ```
    /// use trellis::net::{UnixListener, UnixStream};
    ///
    /// trellis::run(async {
    ///     let path = std::env::temp_dir()
    ///         .join(format!("trellis-doc-unix-poll-accept-{}.sock", std::process::id()));
    ///     let mut listener = UnixListener::bind(&path)?;
    ///     let _client = UnixStream::connect(&path).await?;
    ///     let (_server, _) = std::future::poll_fn(|cx| listener.poll_accept(cx)).await?;
    ///     std::fs::remove_file(&path)?;
    ///     Ok::<_, std::io::Error>(())
    /// })
    /// .unwrap();
    /// ```
    pub fn poll_accept(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<io::Result<(UnixStream, SocketAddr)>> {
        self.inner
            .poll_accept(cx, net::UnixListener::accept, UnixStream::from_std)
    }

    /// The bound address.
    ///
    /// ```
    /// use trellis::net::UnixListener;
    ///
    /// trellis::run(async {
    ///     let path = std::env::temp_dir()
    ///         .join(format!("trellis-doc-unix-listener-addr-{}.sock", std::process::id()));
    ///     let listener = UnixListener::bind(&path)?;
    ///     assert_eq!(listener.local_addr()?.as_pathname(), Some(path.as_path()));
    ///     std::fs::remove_file(&path)?;
    ///     Ok::<_, std::io::Error>(())
    /// })
    /// .unwrap();
    /// ```
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.inner.get_ref().local_addr()
    }
}

/// A Unix-domain stream connection. Like [`TcpStream`](crate::net::TcpStream): checkpoints,
/// the [`trellis::io`](crate::io) stream traits, `futures_io` traits, and halves.
///
/// ```
/// use trellis::net::UnixStream;
///
/// trellis::run(async {
///     let (mut a, mut b) = UnixStream::pair()?;
///     a.write_all(b"over a socketpair").await?;
///     let mut buf = [0u8; 32];
///     let n = b.read(&mut buf).await?;
///     assert_eq!(&buf[..n], b"over a socketpair");
///     Ok::<_, std::io::Error>(())
/// })
/// .unwrap();
/// ```
pub struct UnixStream {
    inner: FdStream<net::UnixStream>,
}

impl fmt::Debug for UnixStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UnixStream")
            .field("local_addr", &self.local_addr().ok())
            .finish()
    }
}

impl UnixStream {
    /// Connects to the listener at `path` (on Linux, an abstract name if it starts with a NUL
    /// byte: see [Unix-domain addresses](crate::net#unix-domain-addresses)). A checkpoint.
    ///
    /// # Errors
    /// If nothing listens there (the error names the path), or the listener's queue is full.
    ///
    /// ```
    /// use trellis::net::{UnixListener, UnixStream};
    ///
    /// trellis::run(async {
    ///     let path = std::env::temp_dir()
    ///         .join(format!("trellis-doc-unix-connect-{}.sock", std::process::id()));
    ///     let err = UnixStream::connect(&path).await.unwrap_err(); // nothing there yet
    ///     assert!(err.to_string().contains("trellis-doc-unix-connect"));
    ///     let _listener = UnixListener::bind(&path)?;
    ///     let stream = UnixStream::connect(&path).await?;
    ///     assert_eq!(stream.peer_addr()?.as_pathname(), Some(path.as_path()));
    ///     std::fs::remove_file(&path)?;
    ///     Ok::<_, std::io::Error>(())
    /// })
    /// .unwrap();
    /// ```
    pub async fn connect(path: impl AsRef<Path>) -> io::Result<UnixStream> {
        let path = path.as_ref();
        let context = |e| with_context(e, || format!("could not connect to {}", describe(path)));
        crate::checkpoint().await?;
        let addr = unix_addr(path).map_err(context)?;
        let socket = Socket::new(Domain::UNIX, Type::STREAM, None).map_err(context)?;
        Ok(UnixStream {
            inner: connect_stream(socket, &addr, context).await?,
        })
    }

    /// A connected pair of streams.
    ///
    /// # Panics
    /// Outside a runtime.
    ///
    /// ```
    /// use trellis::net::UnixStream;
    ///
    /// trellis::run(async {
    ///     let (mut a, mut b) = UnixStream::pair()?;
    ///     b.write_all(b"back").await?;
    ///     let mut buf = [0u8; 4];
    ///     assert_eq!(a.read(&mut buf).await?, 4);
    ///     Ok::<_, std::io::Error>(())
    /// })
    /// .unwrap();
    /// ```
    pub fn pair() -> io::Result<(UnixStream, UnixStream)> {
        let (a, b) = net::UnixStream::pair()?;
        Ok((UnixStream::from_std(a)?, UnixStream::from_std(b)?))
    }

    /// Wraps a connected std stream.
    ///
    /// # Panics
    /// Outside a runtime.
    ///
    /// ```
    /// use trellis::net::UnixStream;
    ///
    /// trellis::run(async {
    ///     let (x, y) = std::os::unix::net::UnixStream::pair()?;
    ///     let (mut a, mut b) = (UnixStream::from_std(x)?, UnixStream::from_std(y)?);
    ///     a.write_all(b"wrapped").await?;
    ///     let mut buf = [0u8; 7];
    ///     assert_eq!(b.read(&mut buf).await?, 7);
    ///     Ok::<_, std::io::Error>(())
    /// })
    /// .unwrap();
    /// ```
    pub fn from_std(stream: net::UnixStream) -> io::Result<UnixStream> {
        Ok(UnixStream {
            inner: FdStream::new(AsyncFd::new(stream)?),
        })
    }

    /// Reads some bytes; `Ok(0)` at end of stream. A checkpoint; a cancelled read consumed
    /// nothing.
    ///
    /// ```
    /// use trellis::net::UnixStream;
    ///
    /// trellis::run(async {
    ///     let (mut a, mut b) = UnixStream::pair()?;
    ///     a.write_all(b"abc").await?;
    ///     drop(a);
    ///     let mut buf = [0u8; 8];
    ///     assert_eq!(b.read(&mut buf).await?, 3);
    ///     assert_eq!(b.read(&mut buf).await?, 0); // end of stream
    ///     Ok::<_, std::io::Error>(())
    /// })
    /// .unwrap();
    /// ```
    pub async fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.inner.reader.read(buf).await
    }

    /// Writes some bytes. A checkpoint; a cancelled write wrote nothing.
    ///
    /// ```
    /// use trellis::net::UnixStream;
    ///
    /// trellis::run(async {
    ///     let (mut a, mut b) = UnixStream::pair()?;
    ///     let n = a.write(b"partial?").await?;
    ///     assert!(n > 0);
    ///     let mut buf = [0u8; 8];
    ///     assert_eq!(b.read(&mut buf).await?, n);
    ///     Ok::<_, std::io::Error>(())
    /// })
    /// .unwrap();
    /// ```
    pub async fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.inner.writer.write(buf).await
    }

    /// Writes all of `buf` (see [`PartialWrite`](crate::io::PartialWrite) for cancellation).
    ///
    /// ```
    /// use trellis::net::UnixStream;
    ///
    /// trellis::run(async {
    ///     let (mut a, mut b) = UnixStream::pair()?;
    ///     let big = vec![1u8; 1 << 20]; // more than the socket buffer: written in several steps
    ///     trellis::nursery(|n| async move {
    ///         n.spawn(async move { a.write_all(&big).await })?;
    ///         let mut total = 0;
    ///         let mut buf = vec![0u8; 65536];
    ///         while total < 1 << 20 {
    ///             total += b.read(&mut buf).await?;
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

    /// Shuts down one or both directions.
    ///
    /// ```
    /// use std::net::Shutdown;
    /// use trellis::net::UnixStream;
    ///
    /// trellis::run(async {
    ///     let (mut a, mut b) = UnixStream::pair()?;
    ///     a.shutdown(Shutdown::Write)?;
    ///     let mut buf = [0u8; 1];
    ///     assert_eq!(b.read(&mut buf).await?, 0); // b sees the end
    ///     b.write_all(b"!").await?; // the other direction still works
    ///     assert_eq!(a.read(&mut buf).await?, 1);
    ///     Ok::<_, std::io::Error>(())
    /// })
    /// .unwrap();
    /// ```
    pub fn shutdown(&self, how: Shutdown) -> io::Result<()> {
        self.inner.shutdown(how)
    }

    /// This end's address.
    ///
    /// ```
    /// use trellis::net::UnixStream;
    ///
    /// trellis::run(async {
    ///     let (a, _b) = UnixStream::pair()?;
    ///     assert!(a.local_addr()?.is_unnamed());
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
    /// use trellis::net::UnixStream;
    ///
    /// trellis::run(async {
    ///     let (a, _b) = UnixStream::pair()?;
    ///     assert!(a.peer_addr()?.as_pathname().is_none());
    ///     Ok::<_, std::io::Error>(())
    /// })
    /// .unwrap();
    /// ```
    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        self.inner.get_ref().peer_addr()
    }

    /// Splits into halves for two tasks; dropping the write half shuts down writing.
    ///
    /// ```
    /// use trellis::net::UnixStream;
    ///
    /// trellis::run(async {
    ///     let (mut a, mut b) = UnixStream::pair()?;
    ///     let (mut read, write) = b.into_split();
    ///     drop(write); // a reads end of stream
    ///     let mut buf = [0u8; 4];
    ///     assert_eq!(a.read(&mut buf).await?, 0);
    ///     a.write_all(b"data").await?; // b's read half still reads
    ///     assert_eq!(read.read(&mut buf).await?, 4);
    ///     Ok::<_, std::io::Error>(())
    /// })
    /// .unwrap();
    /// ```
    pub fn into_split(self) -> (UnixReadHalf, UnixWriteHalf) {
        let (reader, writer) = self.inner.into_split();
        (UnixReadHalf { reader }, UnixWriteHalf { writer })
    }
}

/// The reading half of a [`UnixStream`].
///
/// ```
/// use trellis::net::{UnixReadHalf, UnixStream};
///
/// trellis::run(async {
///     let (mut a, mut b) = UnixStream::pair()?;
///     let (mut read, _write): (UnixReadHalf, _) = b.into_split();
///     a.write_all(b"x").await?;
///     let mut buf = [0u8; 1];
///     assert_eq!(read.read(&mut buf).await?, 1);
///     Ok::<_, std::io::Error>(())
/// })
/// .unwrap();
/// ```
pub struct UnixReadHalf {
    reader: FdReader<net::UnixStream>,
}

/// The writing half of a [`UnixStream`]; dropping it shuts down the writing direction.
///
/// ```
/// use trellis::net::{UnixStream, UnixWriteHalf};
///
/// trellis::run(async {
///     let (mut a, mut b) = UnixStream::pair()?;
///     let (_read, mut write): (_, UnixWriteHalf) = b.into_split();
///     write.write_all(b"y").await?;
///     let mut buf = [0u8; 1];
///     assert_eq!(a.read(&mut buf).await?, 1);
///     Ok::<_, std::io::Error>(())
/// })
/// .unwrap();
/// ```
pub struct UnixWriteHalf {
    writer: SocketWriter<net::UnixStream>,
}

impl fmt::Debug for UnixReadHalf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("UnixReadHalf")
    }
}

impl fmt::Debug for UnixWriteHalf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("UnixWriteHalf")
    }
}

impl UnixReadHalf {
    /// As [`UnixStream::read`].
    pub async fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.reader.read(buf).await
    }
}

impl UnixWriteHalf {
    /// As [`UnixStream::write`].
    pub async fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.writer.write(buf).await
    }

    /// As [`UnixStream::write_all`].
    pub async fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        crate::io::WriteStream::write_all(self, buf).await
    }
}

fd_stream_impls!(read: UnixStream, inner.reader);
fd_stream_impls!(write: UnixStream, inner.writer);
fd_stream_impls!(read: UnixReadHalf, reader);
fd_stream_impls!(write: UnixWriteHalf, writer);

impl SplitStream for UnixStream {
    type ReadHalf = UnixReadHalf;
    type WriteHalf = UnixWriteHalf;

    fn into_split(self) -> (UnixReadHalf, UnixWriteHalf) {
        UnixStream::into_split(self)
    }
}

/// A Unix-domain datagram socket. Like [`UdpSocket`](crate::net::UdpSocket): `&self` methods,
/// one receiver and one sender at a time.
///
/// ```
/// use trellis::net::UnixDatagram;
///
/// trellis::run(async {
///     let (a, b) = UnixDatagram::pair()?;
///     a.send(b"one datagram").await?;
///     let mut buf = [0u8; 32];
///     let n = b.recv(&mut buf).await?;
///     assert_eq!(&buf[..n], b"one datagram");
///     Ok::<_, std::io::Error>(())
/// })
/// .unwrap();
/// ```
pub struct UnixDatagram {
    fd: AsyncFd<net::UnixDatagram>,
}

impl fmt::Debug for UnixDatagram {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UnixDatagram")
            .field("local_addr", &self.local_addr().ok())
            .finish()
    }
}

impl UnixDatagram {
    /// Binds to `path` (on Linux, an abstract name if it starts with a NUL byte: see
    /// [Unix-domain addresses](crate::net#unix-domain-addresses)).
    ///
    /// # Errors
    /// If the path cannot be bound; the error names the path.
    ///
    /// # Panics
    /// Outside a runtime.
    ///
    /// ```
    /// use trellis::net::UnixDatagram;
    ///
    /// trellis::run(async {
    ///     let path = std::env::temp_dir()
    ///         .join(format!("trellis-doc-unix-dgram-bind-{}.sock", std::process::id()));
    ///     let server = UnixDatagram::bind(&path)?;
    ///     assert_eq!(server.local_addr()?.as_pathname(), Some(path.as_path()));
    ///     // The path exists now: binding it again fails.
    ///     assert!(UnixDatagram::bind(&path).is_err());
    ///     std::fs::remove_file(&path)?;
    ///     Ok::<_, std::io::Error>(())
    /// })
    /// .unwrap();
    /// ```
    pub fn bind(path: impl AsRef<Path>) -> io::Result<UnixDatagram> {
        let path = path.as_ref();
        let socket = bind_socket(path, Type::DGRAM)
            .map_err(|e| with_context(e, || format!("could not bind {}", describe(path))))?;
        UnixDatagram::from_std(net::UnixDatagram::from(OwnedFd::from(socket)))
    }

    /// An unbound socket (it can send, and receive replies once connected).
    ///
    /// # Panics
    /// Outside a runtime.
    ///
    /// ```
    /// use trellis::net::UnixDatagram;
    ///
    /// trellis::run(async {
    ///     let path = std::env::temp_dir()
    ///         .join(format!("trellis-doc-unix-dgram-unbound-{}.sock", std::process::id()));
    ///     let server = UnixDatagram::bind(&path)?;
    ///     let client = UnixDatagram::unbound()?;
    ///     client.send_to(b"anonymous", &path).await?;
    ///     let mut buf = [0u8; 16];
    ///     let (n, from) = server.recv_from(&mut buf).await?;
    ///     assert_eq!(&buf[..n], b"anonymous");
    ///     assert!(from.is_unnamed()); // no address to reply to
    ///     std::fs::remove_file(&path)?;
    ///     Ok::<_, std::io::Error>(())
    /// })
    /// .unwrap();
    /// ```
    pub fn unbound() -> io::Result<UnixDatagram> {
        UnixDatagram::from_std(net::UnixDatagram::unbound()?)
    }

    /// A connected pair.
    ///
    /// # Panics
    /// Outside a runtime.
    ///
    /// ```
    /// use trellis::net::UnixDatagram;
    ///
    /// trellis::run(async {
    ///     let (a, b) = UnixDatagram::pair()?;
    ///     b.send(b"reply").await?;
    ///     let mut buf = [0u8; 8];
    ///     assert_eq!(a.recv(&mut buf).await?, 5);
    ///     Ok::<_, std::io::Error>(())
    /// })
    /// .unwrap();
    /// ```
    pub fn pair() -> io::Result<(UnixDatagram, UnixDatagram)> {
        let (a, b) = net::UnixDatagram::pair()?;
        Ok((UnixDatagram::from_std(a)?, UnixDatagram::from_std(b)?))
    }

    /// Wraps a std socket.
    ///
    /// # Panics
    /// Outside a runtime.
    ///
    /// ```
    /// use trellis::net::UnixDatagram;
    ///
    /// trellis::run(async {
    ///     let (x, y) = std::os::unix::net::UnixDatagram::pair()?;
    ///     let (a, b) = (UnixDatagram::from_std(x)?, UnixDatagram::from_std(y)?);
    ///     a.send(b"z").await?;
    ///     let mut buf = [0u8; 1];
    ///     assert_eq!(b.recv(&mut buf).await?, 1);
    ///     Ok::<_, std::io::Error>(())
    /// })
    /// .unwrap();
    /// ```
    pub fn from_std(socket: net::UnixDatagram) -> io::Result<UnixDatagram> {
        Ok(UnixDatagram {
            fd: AsyncFd::new(socket)?,
        })
    }

    /// Sets the default destination (a path, or an abstract name as for
    /// [`bind`](UnixDatagram::bind)). Does not block.
    ///
    /// ```
    /// use trellis::net::UnixDatagram;
    ///
    /// trellis::run(async {
    ///     let path = std::env::temp_dir()
    ///         .join(format!("trellis-doc-unix-dgram-connect-{}.sock", std::process::id()));
    ///     let server = UnixDatagram::bind(&path)?;
    ///     let client = UnixDatagram::unbound()?;
    ///     client.connect(&path)?;
    ///     client.send(b"to the default destination").await?;
    ///     let mut buf = [0u8; 32];
    ///     assert_eq!(server.recv(&mut buf).await?, 26);
    ///     std::fs::remove_file(&path)?;
    ///     Ok::<_, std::io::Error>(())
    /// })
    /// .unwrap();
    /// ```
    pub fn connect(&self, path: impl AsRef<Path>) -> io::Result<()> {
        let path = path.as_ref();
        unix_addr(path)
            .and_then(|addr| SockRef::from(self.fd.get_ref()).connect(&addr))
            .map_err(|e| with_context(e, || format!("could not connect to {}", describe(path))))
    }

    /// Sends a datagram to `path` (a path, or an abstract name as for
    /// [`bind`](UnixDatagram::bind)). A checkpoint.
    ///
    /// ```
    /// use trellis::net::UnixDatagram;
    ///
    /// trellis::run(async {
    ///     let path = std::env::temp_dir()
    ///         .join(format!("trellis-doc-unix-dgram-send-to-{}.sock", std::process::id()));
    ///     let server = UnixDatagram::bind(&path)?;
    ///     let client = UnixDatagram::unbound()?;
    ///     assert_eq!(client.send_to(b"abc", &path).await?, 3);
    ///     let mut buf = [0u8; 3];
    ///     assert_eq!(server.recv(&mut buf).await?, 3);
    ///     std::fs::remove_file(&path)?;
    ///     Ok::<_, std::io::Error>(())
    /// })
    /// .unwrap();
    /// ```
    pub async fn send_to(&self, buf: &[u8], path: impl AsRef<Path>) -> io::Result<usize> {
        let addr = unix_addr(path.as_ref())?;
        self.fd
            .write_with(|s| SockRef::from(s).send_to(buf, &addr))
            .await
    }

    /// Receives a datagram and its sender's address. A checkpoint; a cancelled receive leaves
    /// the datagram queued.
    ///
    /// ```
    /// use trellis::net::UnixDatagram;
    ///
    /// trellis::run(async {
    ///     let server_path = std::env::temp_dir()
    ///         .join(format!("trellis-doc-unix-dgram-server-{}.sock", std::process::id()));
    ///     let client_path = std::env::temp_dir()
    ///         .join(format!("trellis-doc-unix-dgram-client-{}.sock", std::process::id()));
    ///     let server = UnixDatagram::bind(&server_path)?;
    ///     let client = UnixDatagram::bind(&client_path)?;
    ///     client.send_to(b"question", &server_path).await?;
    ///     let mut buf = [0u8; 16];
    ///     let (_, from) = server.recv_from(&mut buf).await?;
    ///     // The client bound a path, so the server can answer it.
    ///     let reply_to = from.as_pathname().unwrap();
    ///     server.send_to(b"answer", reply_to).await?;
    ///     let n = client.recv(&mut buf).await?;
    ///     assert_eq!(&buf[..n], b"answer");
    ///     std::fs::remove_file(&server_path)?;
    ///     std::fs::remove_file(&client_path)?;
    ///     Ok::<_, std::io::Error>(())
    /// })
    /// .unwrap();
    /// ```
    pub async fn recv_from(&self, buf: &mut [u8]) -> io::Result<(usize, SocketAddr)> {
        self.fd.read_with(|s| s.recv_from(buf)).await
    }

    /// Sends to the connected peer. A checkpoint.
    ///
    /// ```
    /// use trellis::net::UnixDatagram;
    ///
    /// trellis::run(async {
    ///     let (a, b) = UnixDatagram::pair()?;
    ///     assert_eq!(a.send(b"1234").await?, 4);
    ///     let mut buf = [0u8; 4];
    ///     assert_eq!(b.recv(&mut buf).await?, 4);
    ///     Ok::<_, std::io::Error>(())
    /// })
    /// .unwrap();
    /// ```
    pub async fn send(&self, buf: &[u8]) -> io::Result<usize> {
        self.fd.write_with(|s| s.send(buf)).await
    }

    /// Receives from the connected peer. A checkpoint.
    ///
    /// ```
    /// use trellis::net::UnixDatagram;
    ///
    /// trellis::run(async {
    ///     let (a, b) = UnixDatagram::pair()?;
    ///     a.send(b"first").await?;
    ///     a.send(b"second").await?;
    ///     let mut buf = [0u8; 16];
    ///     // Datagrams keep their boundaries.
    ///     assert_eq!(b.recv(&mut buf).await?, 5);
    ///     assert_eq!(b.recv(&mut buf).await?, 6);
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
    /// use trellis::net::UnixDatagram;
    ///
    /// trellis::run(async {
    ///     let (a, _b) = UnixDatagram::pair()?;
    ///     assert!(a.local_addr()?.is_unnamed()); // a socketpair has no names
    ///     Ok::<_, std::io::Error>(())
    /// })
    /// .unwrap();
    /// ```
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.fd.get_ref().local_addr()
    }
}

/// Whether `path` names a socket in Linux's abstract namespace (a leading NUL byte).
fn is_abstract(path: &Path) -> bool {
    cfg!(any(target_os = "linux", target_os = "android"))
        && path.as_os_str().as_bytes().first() == Some(&0)
}

/// The socket address `path` stands for: an abstract name (Linux, leading NUL byte; any bytes
/// may follow) or a file path, which may not contain a NUL byte (the system would cut it there).
fn unix_addr(path: &Path) -> io::Result<SockAddr> {
    if !is_abstract(path) && path.as_os_str().as_bytes().contains(&0) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "paths must not contain interior null bytes",
        ));
    }
    SockAddr::unix(path)
}

/// A new Unix socket of type `ty` bound to `path`.
fn bind_socket(path: &Path, ty: Type) -> io::Result<Socket> {
    let addr = unix_addr(path)?;
    let socket = Socket::new(Domain::UNIX, ty, None)?;
    socket.bind(&addr)?;
    Ok(socket)
}

/// `path` for messages: an abstract name is shown as `@name`, as `ss` and systemd show it.
fn describe(path: &Path) -> String {
    if is_abstract(path) {
        let name = &path.as_os_str().as_bytes()[1..];
        format!("@{}", String::from_utf8_lossy(name))
    } else {
        path.display().to_string()
    }
}
