//! Unix-domain sockets: streams, listeners and datagrams. Addresses are paths, or abstract
//! names on Linux (see the `net` module docs).

use std::fmt;
use std::io;
use std::net::Shutdown;
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::{self, SocketAddr};
use std::path::Path;
use std::sync::Arc;
use std::task::{Context, Poll};

use socket2::{Domain, SockAddr, SockRef, Socket, Type};

use super::with_context;
use crate::cancel::CancelWaiter;
use crate::io::{fd_stream_impls, AsyncFd, Direction, FdReader, FdWriter, SplitStream};

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
    fd: AsyncFd<net::UnixListener>,
    waiter: CancelWaiter,
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
                // The system caps this at net.core.somaxconn (as for TCP listeners).
                socket.listen(libc::SOMAXCONN.max(4096))?;
                Ok(net::UnixListener::from(OwnedFd::from(socket)))
            })
            .map_err(|e| with_context(e, || format!("could not bind {}", describe(path))))?;
        UnixListener::from_std(listener)
    }

    /// Wraps a bound, listening std listener.
    ///
    /// # Panics
    /// Outside a runtime.
    pub fn from_std(listener: net::UnixListener) -> io::Result<UnixListener> {
        Ok(UnixListener {
            fd: AsyncFd::new(listener)?,
            waiter: CancelWaiter::new(),
        })
    }

    /// Waits for a connection. A checkpoint; a cancelled accept loses no connection.
    pub async fn accept(&mut self) -> io::Result<(UnixStream, SocketAddr)> {
        let (stream, peer) = self.fd.read_with(|l| l.accept()).await?;
        Ok((UnixStream::from_std(stream)?, peer))
    }

    /// Poll form of [`accept`](UnixListener::accept): cancellation-aware, not a schedule point.
    pub fn poll_accept(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<io::Result<(UnixStream, SocketAddr)>> {
        match self
            .fd
            .poll_io(Direction::Read, &mut self.waiter, cx, |l| l.accept())
        {
            Poll::Ready(Ok((stream, peer))) => {
                Poll::Ready(UnixStream::from_std(stream).map(|s| (s, peer)))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => Poll::Pending,
        }
    }

    /// The bound address.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.fd.get_ref().local_addr()
    }
}

/// A Unix-domain stream connection. Like [`TcpStream`](crate::net::TcpStream): checkpoints,
/// the [`trellis::io`](crate::io) stream traits, `futures_io` traits, and halves.
pub struct UnixStream {
    reader: FdReader<net::UnixStream>,
    writer: FdWriter<net::UnixStream>,
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
    pub async fn connect(path: impl AsRef<Path>) -> io::Result<UnixStream> {
        let path = path.as_ref();
        let context = |e| with_context(e, || format!("could not connect to {}", describe(path)));
        crate::checkpoint().await?;
        let addr = unix_addr(path).map_err(context)?;
        let socket = Socket::new(Domain::UNIX, Type::STREAM, None).map_err(context)?;
        socket.set_nonblocking(true).map_err(context)?;
        match socket.connect(&addr) {
            Ok(()) => {}
            Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => {}
            Err(e) => return Err(context(e)),
        }
        let fd = AsyncFd::new(net::UnixStream::from(OwnedFd::from(socket)))?;
        fd.writable().await?;
        if let Some(e) = fd.get_ref().take_error()? {
            return Err(context(e));
        }
        let fd = Arc::new(fd);
        Ok(UnixStream {
            reader: FdReader::new(fd.clone()),
            writer: FdWriter::new(fd),
        })
    }

    /// A connected pair of streams.
    ///
    /// # Panics
    /// Outside a runtime.
    pub fn pair() -> io::Result<(UnixStream, UnixStream)> {
        let (a, b) = net::UnixStream::pair()?;
        Ok((UnixStream::from_std(a)?, UnixStream::from_std(b)?))
    }

    /// Wraps a connected std stream.
    ///
    /// # Panics
    /// Outside a runtime.
    pub fn from_std(stream: net::UnixStream) -> io::Result<UnixStream> {
        let fd = Arc::new(AsyncFd::new(stream)?);
        Ok(UnixStream {
            reader: FdReader::new(fd.clone()),
            writer: FdWriter::new(fd),
        })
    }

    /// Reads some bytes; `Ok(0)` at end of stream. A checkpoint; a cancelled read consumed
    /// nothing.
    pub async fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.reader.read(buf).await
    }

    /// Writes some bytes. A checkpoint; a cancelled write wrote nothing.
    pub async fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.writer.write(buf).await
    }

    /// Writes all of `buf` (see [`PartialWrite`](crate::io::PartialWrite) for cancellation).
    pub async fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        crate::io::WriteStream::write_all(self, buf).await
    }

    /// Shuts down one or both directions.
    pub fn shutdown(&self, how: Shutdown) -> io::Result<()> {
        self.reader.fd.get_ref().shutdown(how)
    }

    fn close_write(&mut self) -> io::Result<()> {
        self.shutdown(Shutdown::Write)
    }

    /// This end's address.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.reader.fd.get_ref().local_addr()
    }

    /// The peer's address.
    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        self.reader.fd.get_ref().peer_addr()
    }

    /// Splits into halves for two tasks; dropping the write half shuts down writing.
    pub fn into_split(self) -> (UnixReadHalf, UnixWriteHalf) {
        (
            UnixReadHalf {
                reader: self.reader,
            },
            UnixWriteHalf {
                writer: self.writer,
            },
        )
    }
}

/// The reading half of a [`UnixStream`].
pub struct UnixReadHalf {
    reader: FdReader<net::UnixStream>,
}

/// The writing half of a [`UnixStream`]; dropping it shuts down the writing direction.
pub struct UnixWriteHalf {
    writer: FdWriter<net::UnixStream>,
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

    fn close_write(&mut self) -> io::Result<()> {
        self.writer.fd.get_ref().shutdown(Shutdown::Write)
    }
}

impl Drop for UnixWriteHalf {
    fn drop(&mut self) {
        let _ = self.close_write();
    }
}

fd_stream_impls!(read: UnixStream, reader);
fd_stream_impls!(write: UnixStream, writer);
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
    pub fn unbound() -> io::Result<UnixDatagram> {
        UnixDatagram::from_std(net::UnixDatagram::unbound()?)
    }

    /// A connected pair.
    ///
    /// # Panics
    /// Outside a runtime.
    pub fn pair() -> io::Result<(UnixDatagram, UnixDatagram)> {
        let (a, b) = net::UnixDatagram::pair()?;
        Ok((UnixDatagram::from_std(a)?, UnixDatagram::from_std(b)?))
    }

    /// Wraps a std socket.
    ///
    /// # Panics
    /// Outside a runtime.
    pub fn from_std(socket: net::UnixDatagram) -> io::Result<UnixDatagram> {
        Ok(UnixDatagram {
            fd: AsyncFd::new(socket)?,
        })
    }

    /// Sets the default destination (a path, or an abstract name as for
    /// [`bind`](UnixDatagram::bind)). Does not block.
    pub fn connect(&self, path: impl AsRef<Path>) -> io::Result<()> {
        let path = path.as_ref();
        unix_addr(path)
            .and_then(|addr| SockRef::from(self.fd.get_ref()).connect(&addr))
            .map_err(|e| with_context(e, || format!("could not connect to {}", describe(path))))
    }

    /// Sends a datagram to `path` (a path, or an abstract name as for
    /// [`bind`](UnixDatagram::bind)). A checkpoint.
    pub async fn send_to(&self, buf: &[u8], path: impl AsRef<Path>) -> io::Result<usize> {
        let addr = unix_addr(path.as_ref())?;
        self.fd
            .write_with(|s| SockRef::from(s).send_to(buf, &addr))
            .await
    }

    /// Receives a datagram and its sender's address. A checkpoint; a cancelled receive leaves
    /// the datagram queued.
    pub async fn recv_from(&self, buf: &mut [u8]) -> io::Result<(usize, SocketAddr)> {
        self.fd.read_with(|s| s.recv_from(buf)).await
    }

    /// Sends to the connected peer. A checkpoint.
    pub async fn send(&self, buf: &[u8]) -> io::Result<usize> {
        self.fd.write_with(|s| s.send(buf)).await
    }

    /// Receives from the connected peer. A checkpoint.
    pub async fn recv(&self, buf: &mut [u8]) -> io::Result<usize> {
        self.fd.read_with(|s| s.recv(buf)).await
    }

    /// The bound address.
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
