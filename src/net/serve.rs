//! Server loops: accept connections forever, one handler task per connection.
//!
//! As trio's `serve_listeners` / `serve_tcp`:
//! - each listener gets its own accept loop; each connection gets its own handler task, in a
//!   nursery owned by the server, so cancelling the server ends every handler and closes every
//!   connection;
//! - accept errors that mean "out of resources" (`EMFILE`, `ENFILE`, `ENOBUFS`, `ENOMEM`) are
//!   retried after [`ACCEPT_RETRY_DELAY`], because the condition passes once some connection
//!   closes; errors that concern only one dying connection (`ECONNABORTED`, `EPROTO`, ...) are
//!   skipped; any other accept error, and any handler error, stops the server and is reported;
//! - [`serve_tcp`] is made for [`Nursery::start`](crate::Nursery::start): it binds, reports the
//!   bound addresses through `started`, then serves.

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use super::addr::{resolve, ToSocketAddrs};
use super::{TcpListener, TcpStream, UnixListener, UnixStream};
use crate::error::{AsCancelled, Error, NurseryError};
use crate::nursery::{Nursery, TaskStatus};

/// How long an accept loop waits before retrying after running out of descriptors or memory
/// (trio waits the same 100 ms).
pub const ACCEPT_RETRY_DELAY: Duration = Duration::from_millis(100);

/// Something that accepts connections: [`TcpListener`], [`UnixListener`], or your own (a test
/// double, a TLS wrapper).
///
/// ```
/// use std::io;
/// use trellis::channel::Receiver;
/// use trellis::net::{serve_listeners, Listener};
/// use trellis::testing::{memory_stream_pair, MemoryStream};
///
/// /// Connections handed over a channel: a listener for tests, with no sockets.
/// struct InMemory(Receiver<MemoryStream>);
///
/// impl Listener for InMemory {
///     type Stream = MemoryStream;
///
///     async fn accept(&mut self) -> io::Result<MemoryStream> {
///         self.0.recv().await.map_err(io::Error::other)
///     }
/// }
///
/// trellis::run(async {
///     let (connect, incoming) = trellis::channel::unbounded();
///     let server = trellis::CancelScope::new();
///     trellis::nursery(|n| {
///         let server = server.clone();
///         async move {
///             let scope = server.clone();
///             n.spawn(async move {
///                 let echo = |mut stream: MemoryStream| async move {
///                     let mut buf = [0u8; 16];
///                     let k = stream.read(&mut buf).await?;
///                     stream.write_all(&buf[..k]).await
///                 };
///                 scope.run(serve_listeners(vec![InMemory(incoming)], echo)).await;
///                 Ok(())
///             })?;
///             let (mut client, server_end) = memory_stream_pair();
///             connect.send(server_end).await.map_err(io::Error::other)?;
///             client.write_all(b"echo").await?;
///             let mut buf = [0u8; 16];
///             let k = client.read(&mut buf).await?;
///             assert_eq!(&buf[..k], b"echo");
///             server.cancel(); // stops the accept loop and every handler
///             Ok::<_, io::Error>(())
///         }
///     })
///     .await
///     .unwrap();
/// });
/// ```
pub trait Listener: Send + 'static {
    /// The connection type.
    type Stream: Send + 'static;

    /// Waits for the next connection. A checkpoint that loses no connection when cancelled.
    ///
    /// ```
    /// use trellis::net::{Listener, TcpListener, TcpStream};
    ///
    /// trellis::run(async {
    ///     let mut listener = TcpListener::bind("127.0.0.1:0").await?;
    ///     let client = TcpStream::connect(listener.local_addr()?).await?;
    ///     // The trait's accept returns the stream alone.
    ///     let server = Listener::accept(&mut listener).await?;
    ///     assert_eq!(server.peer_addr()?, client.local_addr()?);
    ///     Ok::<_, std::io::Error>(())
    /// })
    /// .unwrap();
    /// ```
    fn accept(&mut self) -> impl Future<Output = io::Result<Self::Stream>> + Send;

    /// A name for the task that handles `stream`, shown by
    /// [`task_tree`](crate::lowlevel::task_tree) (TCP: the peer's address). `None`: unnamed.
    ///
    /// ```
    /// use trellis::net::{Listener, TcpListener, TcpStream};
    ///
    /// trellis::run(async {
    ///     let mut listener = TcpListener::bind("127.0.0.1:0").await?;
    ///     let client = TcpStream::connect(listener.local_addr()?).await?;
    ///     let (server, _) = listener.accept().await?;
    ///     let name = <TcpListener as Listener>::name(&server).unwrap();
    ///     assert_eq!(name, format!("connection from {}", client.local_addr()?));
    ///     Ok::<_, std::io::Error>(())
    /// })
    /// .unwrap();
    /// ```
    fn name(stream: &Self::Stream) -> Option<String> {
        let _ = stream;
        None
    }
}

impl Listener for TcpListener {
    type Stream = TcpStream;

    async fn accept(&mut self) -> io::Result<TcpStream> {
        TcpListener::accept(self).await.map(|(stream, _)| stream)
    }

    fn name(stream: &TcpStream) -> Option<String> {
        stream
            .peer_addr()
            .ok()
            .map(|peer| format!("connection from {peer}"))
    }
}

impl Listener for UnixListener {
    type Stream = UnixStream;

    async fn accept(&mut self) -> io::Result<UnixStream> {
        UnixListener::accept(self).await.map(|(stream, _)| stream)
    }
}

/// The bounds every server function puts on its connection handler: called once per
/// connection, from the accept loops' tasks, and its future runs as a task of its own. The
/// public functions spell the bounds out (so their documentation shows them); the private
/// helpers name them with this trait.
trait Handler<S, E>: Fn(S) -> Self::Fut + Send + Sync + 'static {
    type Fut: Future<Output = Result<(), E>> + Send + 'static;
}

impl<S, E, H, Fut> Handler<S, E> for H
where
    H: Fn(S) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<(), E>> + Send + 'static,
{
    type Fut = Fut;
}

/// The bounds every server function puts on its error type: it carries cancellations (so the
/// server's nursery recognises them) and takes accept and runtime errors. Named once for the
/// private helpers, as [`Handler`].
trait ServeError: AsCancelled + From<io::Error> + From<Error> + Send + 'static {}

impl<E> ServeError for E where E: AsCancelled + From<io::Error> + From<Error> + Send + 'static {}

/// Accept errors that mean the system is out of a resource that frees up as connections close.
fn is_capacity_error(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM)
    )
}

/// Accept errors that concern only the connection being accepted (it died in the queue): skip
/// it and accept the next. The same list as trio's.
fn is_connection_error(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(
            libc::ECONNABORTED
                | libc::EPROTO
                | libc::EPERM
                | libc::ENETDOWN
                | libc::ENOPROTOOPT
                | libc::EHOSTDOWN
                | libc::ENONET
                | libc::EHOSTUNREACH
                | libc::EOPNOTSUPP
                | libc::ENETUNREACH
        )
    )
}

/// Serves every listener until cancelled: one accept loop per listener, one task per
/// connection running `handler(stream)`, all in a nursery of the server's own.
///
/// ```
/// use std::io;
/// use trellis::net::{serve_listeners, TcpListener, TcpStream};
///
/// trellis::run(async {
///     // Two listeners, one server.
///     let a = TcpListener::bind("127.0.0.1:0").await?;
///     let b = TcpListener::bind("127.0.0.1:0").await?;
///     let addrs = [a.local_addr()?, b.local_addr()?];
///     let hello = |mut stream: TcpStream| async move { stream.write_all(b"hello").await };
///     trellis::nursery(|n| async move {
///         n.spawn(async move {
///             let _ = serve_listeners(vec![a, b], hello).await;
///             Ok(())
///         })?;
///         for addr in addrs {
///             let mut client = TcpStream::connect(addr).await?;
///             let mut buf = [0u8; 5];
///             let mut got = 0;
///             while got < 5 {
///                 got += client.read(&mut buf[got..]).await?;
///             }
///             assert_eq!(&buf, b"hello");
///         }
///         n.cancel();
///         Ok::<_, io::Error>(())
///     })
///     .await
///     .map_err(std::io::Error::from)?;
///     Ok::<_, io::Error>(())
/// })
/// .unwrap();
/// ```
///
/// # Errors
/// Every handler error and fatal accept error, together (the first one stops the server); or
/// the cancellation that stopped it. It never returns `Ok`.
pub async fn serve_listeners<L, H, Fut, E>(
    listeners: Vec<L>,
    handler: H,
) -> Result<Infallible, NurseryError<E>>
where
    L: Listener,
    H: Fn(L::Stream) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<(), E>> + Send + 'static,
    E: AsCancelled + From<io::Error> + From<Error> + Send + 'static,
{
    let handler = Arc::new(handler);
    crate::nursery(|n| async move {
        for listener in listeners {
            n.spawn(accept_loop(listener, handler.clone(), n.clone()))?;
        }
        Ok(())
    })
    .await?;
    // No listener: nothing to serve; wait for cancellation like a server with idle listeners.
    match crate::sleep_forever().await {
        Ok(never) => match never {},
        Err(c) => Err(NurseryError::Cancelled(c)),
    }
}

async fn accept_loop<L, H, E>(
    mut listener: L,
    handler: Arc<H>,
    handlers: Nursery<E>,
) -> Result<(), E>
where
    L: Listener,
    H: Handler<L::Stream, E>,
    E: ServeError,
{
    loop {
        match listener.accept().await {
            Ok(stream) => {
                match L::name(&stream) {
                    Some(name) => handlers.spawn_named(name, handler(stream))?,
                    None => handlers.spawn(handler(stream))?,
                };
            }
            Err(e) if e.cancelled().is_some() => return Err(e.into()),
            Err(e) if is_capacity_error(&e) => {
                crate::sleep(ACCEPT_RETRY_DELAY)
                    .await
                    .map_err(Error::from)?;
            }
            Err(e) if is_connection_error(&e) => {}
            Err(e) => return Err(e.into()),
        }
    }
}

/// Binds TCP listeners on every interface at `port` (IPv6 and IPv4, as available; port 0
/// picks a free port, the same for both families), reports their addresses with
/// `status.started`, then serves them with [`serve_listeners`]. Made for [`Nursery::start`](crate::Nursery::start):
///
/// ```no_run
/// use trellis::net::{serve_tcp, TcpStream};
///
/// async fn echo(mut stream: TcpStream) -> Result<(), trellis::Error> {
///     let mut buf = [0u8; 1024];
///     loop {
///         let n = stream.read(&mut buf).await?;
///         if n == 0 {
///             return Ok(());
///         }
///         stream.write_all(&buf[..n]).await?;
///     }
/// }
///
/// trellis::run(async {
///     trellis::nursery(|n| async move {
///         let addrs = n.start(|status| serve_tcp(echo, 8080, status)).await?;
///         println!("listening on {addrs:?}");
///         Ok::<_, trellis::Error>(())
///     })
///     .await
/// })
/// .unwrap();
/// ```
///
/// # Errors
/// A bind error (before `started`, so `start` returns it); afterwards as [`serve_listeners`]:
/// each handler error is reported to the nursery the server was started in.
pub async fn serve_tcp<H, Fut, E>(
    handler: H,
    port: u16,
    status: TaskStatus<Vec<SocketAddr>, E>,
) -> Result<Infallible, E>
where
    H: Fn(TcpStream) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<(), E>> + Send + 'static,
    E: AsCancelled + From<io::Error> + From<Error> + Send + 'static,
{
    let mut listeners: Vec<TcpListener> = Vec::new();
    let mut unsupported = None;
    for ip in [
        std::net::IpAddr::from(std::net::Ipv6Addr::UNSPECIFIED),
        std::net::IpAddr::from(std::net::Ipv4Addr::UNSPECIFIED),
    ] {
        // Port 0 picks a free port for the first family; the second binds the same one, so the
        // server has one port whichever family a client uses.
        let port = match listeners.first() {
            Some(first) if port == 0 => first.local_addr()?.port(),
            _ => port,
        };
        match TcpListener::bind((ip, port)).await {
            Ok(listener) => listeners.push(listener),
            // A family this host does not have (no IPv6, say) is skipped, as trio does.
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::AddrNotAvailable | io::ErrorKind::Unsupported
                ) || e.raw_os_error() == Some(libc::EAFNOSUPPORT) =>
            {
                unsupported = Some(e);
            }
            Err(e) => return Err(e.into()),
        }
    }
    if listeners.is_empty() {
        return Err(unsupported
            .unwrap_or_else(|| io::Error::other("no address family available"))
            .into());
    }
    serve_bound(listeners, handler, status).await
}

/// Like [`serve_tcp`], binding every address `addr` resolves to instead of every interface
/// (e.g. `"127.0.0.1:0"` for a server reachable only from this machine).
///
/// ```
/// use trellis::net::{serve_tcp_on, TcpStream};
///
/// trellis::run(async {
///     trellis::nursery(|n| async move {
///         // `start` returns once the server is listening, with its addresses.
///         let addrs = n
///             .start(|status| {
///                 serve_tcp_on(
///                     |stream: TcpStream| async move {
///                         let (mut read, mut write) = stream.into_split();
///                         let mut buf = [0u8; 64];
///                         loop {
///                             match read.read(&mut buf).await? {
///                                 0 => return Ok(()),
///                                 k => write.write_all(&buf[..k]).await?,
///                             }
///                         }
///                     },
///                     "127.0.0.1:0",
///                     status,
///                 )
///             })
///             .await?;
///         let mut client = TcpStream::connect(addrs[0]).await?;
///         client.write_all(b"echo").await?;
///         let mut buf = [0u8; 4];
///         let mut got = 0;
///         while got < 4 {
///             got += client.read(&mut buf[got..]).await?;
///         }
///         assert_eq!(&buf, b"echo");
///         n.cancel(); // stops the server
///         Ok::<_, std::io::Error>(())
///     })
///     .await
///     .map_err(std::io::Error::from)
/// })
/// .unwrap();
/// ```
///
/// # Errors
/// As [`serve_tcp`].
pub async fn serve_tcp_on<H, Fut, E>(
    handler: H,
    addr: impl ToSocketAddrs,
    status: TaskStatus<Vec<SocketAddr>, E>,
) -> Result<Infallible, E>
where
    H: Fn(TcpStream) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<(), E>> + Send + 'static,
    E: AsCancelled + From<io::Error> + From<Error> + Send + 'static,
{
    let mut listeners = Vec::new();
    for addr in resolve(&addr).await? {
        listeners.push(TcpListener::bind(addr).await?);
    }
    serve_bound(listeners, handler, status).await
}

async fn serve_bound<H, E>(
    listeners: Vec<TcpListener>,
    handler: H,
    status: TaskStatus<Vec<SocketAddr>, E>,
) -> Result<Infallible, E>
where
    H: Handler<TcpStream, E>,
    E: ServeError,
{
    let addrs = listeners
        .iter()
        .map(TcpListener::local_addr)
        .collect::<io::Result<Vec<_>>>()?;
    let target = status.target_reporter();
    status.started(addrs);
    match serve_listeners(listeners, handler).await {
        Ok(never) => match never {},
        Err(NurseryError::Cancelled(c)) => Err(Error::Cancelled(c).into()),
        Err(NurseryError::Failed(mut errors)) => {
            // Principle 4: every error reaches the nursery, not just the one returned.
            let last = errors
                .pop()
                .expect("a failed nursery has at least one error");
            for e in errors {
                target.failed(e);
            }
            Err(last)
        }
    }
}
