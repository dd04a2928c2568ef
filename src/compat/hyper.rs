//! hyper 1.x on trellis (feature `hyper`): HTTP/1 servers and clients over trellis sockets, with
//! no glue code or `unsafe` of the user's, and HTTP/2 as well once the application enables hyper's
//! `http2` feature (see [`run_connection`]).
//!
//! - [`HyperIo`] gives any `futures-io` stream (a [`TcpStream`](crate::net::TcpStream), a Unix
//!   stream, a memory stream) hyper's `Read`/`Write` traits.
//! - [`NurseryExecutor`] runs hyper's background tasks as tasks of a nursery, so they obey the
//!   structure (they end before the nursery does).
//! - [`TrellisTimer`] gives hyper trellis's clock (the mock clock in tests).
//! - [`serve_http1`] serves one connection; on cancellation it lets the request in flight finish
//!   and closes the connection (hyper's graceful shutdown), then returns.
//! - [`run_connection`] does the same for a connection built with hyper's own builders, HTTP/2
//!   included (enable hyper's `http2` feature in your Cargo.toml; this crate does not need it).
//!
//! A server is [`serve_tcp`](crate::net::serve_tcp) with `serve_http1` as the handler:
//!
//! ```
//! use std::convert::Infallible;
//! use trellis::compat::hyper::{serve_http1, HyperIo};
//!
//! async fn hello(
//!     _req: hyper::Request<hyper::body::Incoming>,
//! ) -> Result<hyper::Response<String>, Infallible> {
//!     Ok(hyper::Response::new("hello from trellis\n".to_string()))
//! }
//!
//! trellis::run(async {
//!     trellis::nursery(|n| async move {
//!         let addrs = n
//!             .start(|status| {
//!                 trellis::net::serve_tcp_on(
//!                     |stream| serve_http1(stream, hyper::service::service_fn(hello)),
//!                     ("127.0.0.1", 0),
//!                     status,
//!                 )
//!             })
//!             .await?;
//!         // A client on trellis too.
//!         let stream = trellis::net::TcpStream::connect(addrs[0]).await?;
//!         let (mut send, conn) = hyper::client::conn::http1::handshake(HyperIo::new(stream))
//!             .await
//!             .map_err(std::io::Error::other)?;
//!         n.spawn(async move { conn.await.map_err(std::io::Error::other) })?;
//!         let request = hyper::Request::get("/").body(String::new()).unwrap();
//!         let response = send.send_request(request).await.map_err(std::io::Error::other)?;
//!         assert_eq!(response.status(), 200);
//!         n.cancel(); // stops the server, and the client's connection task
//!         Ok::<_, std::io::Error>(())
//!     })
//!     .await
//!     .map_err(std::io::Error::from)
//! })
//! .unwrap();
//! ```

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use futures_io::{AsyncRead, AsyncWrite};
use hyper::rt::{Read, ReadBufCursor, Write};

use crate::error::Error;
use crate::nursery::Nursery;
use crate::state_lock::lock_blocking;

/// A `futures-io` stream with hyper's `Read` and `Write` traits.
///
/// ```
/// # trellis::run(async {
/// let (a, _b) = trellis::testing::memory_stream_pair();
/// let io = trellis::compat::hyper::HyperIo::new(a);
/// let _stream = io.into_inner();
/// # });
/// ```
#[derive(Debug)]
pub struct HyperIo<T> {
    io: T,
    /// Initialised memory to read into before copying into hyper's buffer, which may be
    /// uninitialised: allocated at the first read and reused, rather than zeroed on every poll.
    scratch: Vec<u8>,
}

impl<T> HyperIo<T> {
    /// Wraps `stream`.
    ///
    /// ```
    /// use trellis::compat::hyper::HyperIo;
    ///
    /// trellis::run(async {
    ///     let (a, mut b) = trellis::testing::memory_stream_pair();
    ///     // hyper's handshake takes the wrapped stream.
    ///     let io = HyperIo::new(a);
    ///     let mut a = io.into_inner();
    ///     a.write_all(b"still the same stream").await?;
    ///     let mut buf = [0u8; 64];
    ///     let n = b.read(&mut buf).await?;
    ///     assert_eq!(&buf[..n], b"still the same stream");
    ///     Ok::<_, std::io::Error>(())
    /// })
    /// .unwrap();
    /// ```
    pub fn new(stream: T) -> Self {
        HyperIo {
            io: stream,
            scratch: Vec::new(),
        }
    }

    /// The stream back.
    ///
    /// ```
    /// use trellis::compat::hyper::HyperIo;
    ///
    /// let io = HyperIo::new(std::io::Cursor::new(vec![1u8, 2, 3]));
    /// assert_eq!(io.into_inner().into_inner(), [1, 2, 3]);
    /// ```
    pub fn into_inner(self) -> T {
        self.io
    }
}

/// Bytes read per poll: hyper asks for at most what its buffer has room for.
const READ_CHUNK: usize = 8 * 1024;

impl<T: AsyncRead + Unpin> Read for HyperIo<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        mut buf: ReadBufCursor<'_>,
    ) -> Poll<io::Result<()>> {
        // Read into initialised memory, then copy: no `unsafe` for hyper's uninitialised buffer.
        let room = buf.remaining().min(READ_CHUNK);
        let this = &mut *self;
        if this.scratch.len() < room {
            this.scratch.resize(room, 0);
        }
        match Pin::new(&mut this.io).poll_read(cx, &mut this.scratch[..room]) {
            Poll::Ready(Ok(n)) => {
                buf.put_slice(&this.scratch[..n]);
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl<T: AsyncWrite + Unpin> Write for HyperIo<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_close(cx)
    }
}

/// hyper's executor as a nursery: every background task hyper spawns is a task of that
/// nursery. A task spawned after the nursery closed is dropped (hyper treats the work as gone).
///
/// ```
/// trellis::run(async {
///     trellis::nursery(|n| async move {
///         let exec = trellis::compat::hyper::NurseryExecutor::new(n.clone());
///         hyper::rt::Executor::execute(&exec, async { /* hyper's work */ });
///         Ok::<_, trellis::Error>(())
///     })
///     .await
///     .unwrap();
/// });
/// ```
#[derive(Clone, Debug)]
pub struct NurseryExecutor(Nursery<Error>);

impl NurseryExecutor {
    /// An executor spawning into `nursery`.
    ///
    /// ```
    /// use std::sync::atomic::{AtomicBool, Ordering};
    /// use std::sync::Arc;
    /// use trellis::compat::hyper::NurseryExecutor;
    ///
    /// trellis::run(async {
    ///     let ran = Arc::new(AtomicBool::new(false));
    ///     let flag = ran.clone();
    ///     trellis::nursery(|n| async move {
    ///         let exec = NurseryExecutor::new(n.clone());
    ///         let work = async move { flag.store(true, Ordering::SeqCst) };
    ///         hyper::rt::Executor::execute(&exec, work);
    ///         Ok::<_, trellis::Error>(())
    ///     })
    ///     .await
    ///     .unwrap();
    ///     // The nursery waited for the task hyper spawned.
    ///     assert!(ran.load(Ordering::SeqCst));
    /// });
    /// ```
    pub fn new(nursery: Nursery<Error>) -> Self {
        NurseryExecutor(nursery)
    }
}

impl<F> hyper::rt::Executor<F> for NurseryExecutor
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    fn execute(&self, future: F) {
        let _ = self.0.spawn(async move {
            future.await;
            Ok(())
        });
    }
}

/// hyper's timer on the runtime's clock (so a mock clock drives hyper's timeouts in tests).
///
/// ```
/// let mut builder = hyper::server::conn::http1::Builder::new();
/// builder.timer(trellis::compat::hyper::TrellisTimer);
/// ```
#[derive(Clone, Copy, Debug, Default)]
pub struct TrellisTimer;

impl hyper::rt::Timer for TrellisTimer {
    fn sleep(&self, duration: Duration) -> Pin<Box<dyn hyper::rt::Sleep>> {
        Box::pin(HyperSleep(crate::sleep(duration)))
    }

    fn sleep_until(&self, deadline: Instant) -> Pin<Box<dyn hyper::rt::Sleep>> {
        Box::pin(HyperSleep(crate::sleep_until(deadline)))
    }
}

/// A trellis sleep as hyper's `Sleep`. A cancellation of the scope around it ends it too, as if
/// it had elapsed: hyper then gives up on what it was timing.
struct HyperSleep(crate::Sleep);

impl Future for HyperSleep {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        Pin::new(&mut self.0).poll(cx).map(|_| ())
    }
}

impl hyper::rt::Sleep for HyperSleep {}

/// Serves HTTP/1 requests on one connection with `service` until the client closes it. When
/// the enclosing scope is cancelled, the request in flight (if any) is allowed to finish, the
/// connection is closed (hyper's graceful shutdown), and this returns `Ok(())`. hyper's errors
/// come back inside an `io::Error`.
///
/// See the [module](self) for a server.
///
/// ```
/// use std::convert::Infallible;
/// use trellis::compat::hyper::{serve_http1, HyperIo};
///
/// trellis::run(async {
///     // One connection over an in-memory stream: a server task and a hyper client.
///     let (server_side, client_side) = trellis::testing::memory_stream_pair();
///     trellis::nursery(|n| async move {
///         n.spawn(serve_http1(
///             server_side,
///             hyper::service::service_fn(|req: hyper::Request<_>| async move {
///                 let reply = format!("you asked for {}", req.uri().path());
///                 Ok::<_, Infallible>(hyper::Response::new(reply))
///             }),
///         ))?;
///         let (mut send, conn) = hyper::client::conn::http1::handshake(HyperIo::new(client_side))
///             .await
///             .map_err(std::io::Error::other)?;
///         n.spawn(async move { conn.await.map_err(std::io::Error::other) })?;
///         let request = hyper::Request::get("/status").body(String::new()).unwrap();
///         let response = send.send_request(request).await.map_err(std::io::Error::other)?;
///         assert_eq!(response.status(), 200);
///         // Dropping the client closes the connection; serve_http1 then returns Ok(()).
///         drop(send);
///         Ok::<_, std::io::Error>(())
///     })
///     .await
///     .map_err(std::io::Error::from)
/// })
/// .unwrap();
/// ```
///
/// # Errors
/// A protocol or I/O error of the connection, as hyper reports it.
pub async fn serve_http1<T, S, B>(stream: T, service: S) -> io::Result<()>
where
    T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    S: hyper::service::Service<
        hyper::Request<hyper::body::Incoming>,
        Response = hyper::Response<B>,
    >,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    S::Future: Send,
    B: hyper::body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(TrellisTimer)
        .serve_connection(HyperIo::new(stream), service);
    run_connection(conn, |conn| conn.graceful_shutdown()).await
}

/// Runs a server connection that hyper's builders made (`http1` or `http2`
/// `Builder::serve_connection`) until it ends. When the enclosing scope is cancelled, calls
/// `shutdown` on it once, which should be the connection's `graceful_shutdown`, and lets it
/// finish: HTTP/1 completes the request in flight and closes; HTTP/2 sends `GOAWAY`, lets the
/// open streams end and closes. Returns `Ok(())` then, also when the peer hangs up before the
/// last step of the shutdown (an HTTP/2 client often closes as soon as it has seen the
/// `GOAWAY`). hyper's other errors come back inside an `io::Error`. [`serve_http1`] is this with
/// an HTTP/1 connection.
///
/// This is how to serve HTTP/2 (hyper's `http2` feature, enabled in your own Cargo.toml) with
/// graceful shutdown: `run_connection(http2::Builder::new(NurseryExecutor::new(n))
/// .serve_connection(io, service), |c| c.graceful_shutdown())`. The connection's own reads and
/// writes run shielded (contract C4) so that the cancellation does not cut them short, which
/// matters because hyper's HTTP/2 keeps only the kind and message of an I/O error, so a
/// cancellation failing a read inside it would come back as an error no scope recognises.
/// HTTP/2's handlers run as tasks of the executor's nursery, outside the shield: a cancelled
/// one sees the cancellation at its next checkpoint, and its stream is reset if it gives up.
///
/// ```
/// use std::convert::Infallible;
/// use trellis::compat::hyper::{run_connection, HyperIo, TrellisTimer};
///
/// trellis::run(async {
///     let (server_side, _client_side) = trellis::testing::memory_stream_pair();
///     let conn = hyper::server::conn::http1::Builder::new()
///         .timer(TrellisTimer)
///         .serve_connection(
///             HyperIo::new(server_side),
///             hyper::service::service_fn(|_req| async {
///                 Ok::<_, Infallible>(hyper::Response::new(String::from("hi")))
///             }),
///         );
///     // No request comes: when the deadline cancels the scope, the connection is shut down
///     // gracefully and the call returns Ok(()) (the scope did not need to absorb anything).
///     let out = trellis::move_on_after(std::time::Duration::from_millis(2), async {
///         run_connection(conn, |conn| conn.graceful_shutdown()).await
///     })
///     .await;
///     assert!(matches!(out, Some(Ok(()))));
/// });
/// ```
///
/// # Errors
/// A protocol or I/O error of the connection, as hyper reports it.
pub async fn run_connection<C, S>(conn: C, shutdown: S) -> io::Result<()>
where
    C: Future<Output = Result<(), hyper::Error>>,
    S: FnOnce(Pin<&mut C>),
{
    // The connection runs in a shielded scope, so a cancellation does not cut its reads and
    // writes short; the cancellation is watched beside it, outside the shield, and turned into
    // hyper's graceful shutdown. (A grace period on an enclosing scope still bounds it, B3.)
    // A mutex, not a `RefCell`, only so that the future stays `Send` when `C` is: the two
    // borrows below never overlap.
    let conn = std::sync::Mutex::new(Box::pin(conn));
    let lock = || lock_blocking(&conn);
    let inner = std::future::poll_fn(|cx| lock().as_mut().poll(cx));
    let shielded = crate::CancelScope::new()
        .shielded(true)
        .run(async { inner.await.map_err(io::Error::other) });
    let mut shielded = std::pin::pin!(shielded);
    let mut cancelled = std::pin::pin!(crate::sleep_forever());
    let mut shutdown = Some(shutdown);
    let out = std::future::poll_fn(|cx| {
        if shutdown.is_some() && cancelled.as_mut().poll(cx).is_ready() {
            if let Some(shutdown) = shutdown.take() {
                shutdown(lock().as_mut());
            }
        }
        shielded.as_mut().poll(cx)
    })
    .await;
    match out {
        // Shutting down, the peer hung up first (an HTTP/2 client may close as soon as it has
        // answered the GOAWAY's ping, before our last write): the connection is closed, which
        // is what the shutdown was for.
        Some(Err(e)) if shutdown.is_none() && peer_closed(&e) => Ok(()),
        // `None` cannot happen (nothing cancels the shielded scope itself).
        out => out.unwrap_or(Ok(())),
    }
}

/// Whether `err`, or an error it wraps, says that the peer had already closed the connection.
fn peer_closed(err: &io::Error) -> bool {
    use io::ErrorKind::*;
    let mut next: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(e) = next {
        next = match e.downcast_ref::<io::Error>() {
            Some(e)
                if matches!(
                    e.kind(),
                    BrokenPipe | ConnectionReset | ConnectionAborted | NotConnected | UnexpectedEof
                ) =>
            {
                return true
            }
            // An `io::Error`'s `source` skips the error it wraps; look at that error itself.
            Some(e) => e
                .get_ref()
                .map(|inner| inner as &(dyn std::error::Error + 'static)),
            None => e.source(),
        };
    }
    false
}
