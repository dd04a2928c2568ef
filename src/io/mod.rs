//! Byte streams and I/O readiness on the runtime's reactor.
//!
//! Two things live here. The stream traits, [`ReadStream`] and [`WriteStream`] (and
//! [`SplitStream`] for streams that split into halves), are what TCP and Unix sockets, the pipes
//! of a child process and the testing kit's memory streams have in common: write code against
//! them once and it works over any of those. [`AsyncFd`] is the layer below, for a file
//! descriptor of your own (a device, a pipe, a socket from another library).
//!
//! ```
//! use trellis::io::{ReadStream, WriteStream};
//!
//! /// Sends `request` and reads the reply until the peer closes its side; any stream will do.
//! async fn ask<S: ReadStream + WriteStream>(stream: &mut S, request: &[u8]) -> std::io::Result<Vec<u8>> {
//!     stream.write_all(request).await?;
//!     stream.shutdown_write().await?;
//!     let mut reply = Vec::new();
//!     let mut buf = [0u8; 1024];
//!     loop {
//!         match stream.read(&mut buf).await? {
//!             0 => return Ok(reply),
//!             n => reply.extend_from_slice(&buf[..n]),
//!         }
//!     }
//! }
//!
//! trellis::run(async {
//!     // Here over a Unix socket pair; a TcpStream or a MemoryStream works the same.
//!     let (mut client, mut server) = trellis::net::UnixStream::pair()?;
//!     trellis::nursery(|n| async move {
//!         n.spawn(async move {
//!             let mut buf = [0u8; 64];
//!             let got = server.read(&mut buf).await?;
//!             server.write_all(&buf[..got].to_ascii_uppercase()).await
//!         })?;
//!         assert_eq!(ask(&mut client, b"ping").await?, b"PING");
//!         Ok::<_, std::io::Error>(())
//!     })
//!     .await
//!     .map_err(std::io::Error::from)
//! })
//! .unwrap();
//! ```
//!
//! [`AsyncFd`] wraps a non-blocking file descriptor and waits for it to become readable or
//! writable. Every wait is a checkpoint (cancellation-aware: a cancelled wait fails with a
//! `Cancelled` carried in the `io::Error`, and the operation it guarded did not happen). The
//! socket types are built on it.

mod busy;
mod fd_stream;
pub(crate) mod reactor;
mod stream;

use busy::Busy;
pub(crate) use fd_stream::{fd_stream_impls, FdReader, FdStream, FdWriter, SocketWriter};

pub use stream::{PartialWrite, ReadStream, SplitStream, WriteStream};

use std::future::Future;
use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use crate::cancel::current;
use crate::cancel::{outside_runtime, CancelWaiter};
use crate::runtime::{context, Shared};
pub(crate) use reactor::Direction;
use reactor::Source;

/// A file descriptor registered with the runtime's reactor.
///
/// The descriptor is switched to non-blocking mode and deregistered (before it is closed) when
/// the `AsyncFd` is dropped or [`into_inner`](AsyncFd::into_inner) is called.
///
/// One task at a time may wait in each direction: the async methods take `&self`, so an
/// `AsyncFd` can be shared, but a second task that waits to read (or to write) while another
/// already does gets an `io::Error` of kind `ResourceBusy` carrying
/// [`Error::BusyResource`](crate::Error::BusyResource), as trio's `wait_readable` raises
/// `BusyResourceError`. Reading and writing at the same time, from two tasks, is fine.
///
/// [`readable`](AsyncFd::readable) and [`writable`](AsyncFd::writable) tell the truth at the
/// moment they return, like trio's `wait_readable`/`wait_writable`: data read by other means
/// (a plain `read` on the descriptor) or a send buffer filled meanwhile is noticed, and the wait
/// waits for the next readiness event instead of returning at once.
///
/// ```
/// use std::io::{Read, Write};
/// use std::os::unix::net::UnixStream;
/// use trellis::io::AsyncFd;
///
/// trellis::run(async {
///     let (a, mut b) = UnixStream::pair()?;
///     let a = AsyncFd::new(a)?;
///     b.write_all(b"ping")?;
///     let mut buf = [0u8; 4];
///     let n = a.read_with(|s| (&*s).read(&mut buf)).await?;
///     assert_eq!(&buf[..n], b"ping");
///     Ok::<_, std::io::Error>(())
/// })
/// .unwrap();
/// ```
pub struct AsyncFd<T: AsRawFd> {
    source: Arc<Source>,
    rt: Arc<Shared>,
    io: Option<T>,
    /// A task waits to read, or to write (the reactor wakes one waiter per direction).
    reading: Busy,
    writing: Busy,
}

impl<T: AsRawFd> std::fmt::Debug for AsyncFd<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AsyncFd")
            .field("fd", &self.source.fd())
            .finish()
    }
}

/// Sets (`on`) or clears the descriptor's `O_NONBLOCK` flag, if it is not already so.
fn set_nonblocking(fd: RawFd, on: bool) -> io::Result<()> {
    // SAFETY: plain fcntl calls on a descriptor the caller owns; no memory is passed.
    unsafe {
        let flags = libc::fcntl(fd, libc::F_GETFL);
        if flags < 0 {
            return Err(io::Error::last_os_error());
        }
        let wanted = if on {
            flags | libc::O_NONBLOCK
        } else {
            flags & !libc::O_NONBLOCK
        };
        if wanted != flags && libc::fcntl(fd, libc::F_SETFL, wanted) < 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

impl<T: AsRawFd> AsyncFd<T> {
    /// Registers `io` with the current runtime's reactor.
    ///
    /// # Errors
    /// If the descriptor cannot be made non-blocking or registered.
    ///
    /// # Panics
    /// Outside a runtime. Waiting on it later panics too where the wait is outside the run that
    /// created it (another executor, a later `block_on`): its readiness reaches only this run.
    ///
    /// ```
    /// use std::os::unix::net::UnixStream;
    /// use trellis::io::AsyncFd;
    ///
    /// trellis::run(async {
    ///     let (a, _b) = UnixStream::pair()?;
    ///     let a = AsyncFd::new(a)?; // now non-blocking, and registered
    ///     a.writable().await?;
    ///     Ok::<_, std::io::Error>(())
    /// })
    /// .unwrap();
    /// ```
    pub fn new(io: T) -> io::Result<Self> {
        let Some(rt) = context::try_current() else {
            outside_runtime("io::AsyncFd::new");
        };
        let fd = io.as_raw_fd();
        set_nonblocking(fd, true)?;
        let source = rt.driver.reactor.register(fd)?;
        Ok(AsyncFd {
            source,
            rt,
            io: Some(io),
            reading: Busy::new(),
            writing: Busy::new(),
        })
    }

    /// The wrapped I/O object.
    ///
    /// ```
    /// use std::os::unix::net::UnixStream;
    /// use trellis::io::AsyncFd;
    ///
    /// trellis::run(async {
    ///     let (a, _b) = UnixStream::pair()?;
    ///     let a = AsyncFd::new(a)?;
    ///     assert!(a.get_ref().peer_addr().is_ok()); // the std socket's own methods
    ///     Ok::<_, std::io::Error>(())
    /// })
    /// .unwrap();
    /// ```
    pub fn get_ref(&self) -> &T {
        self.io.as_ref().expect("present until into_inner")
    }

    /// The wrapped I/O object, mutably.
    ///
    /// ```
    /// use std::os::unix::net::UnixStream;
    /// use trellis::io::AsyncFd;
    ///
    /// trellis::run(async {
    ///     let (a, _b) = UnixStream::pair()?;
    ///     let mut a = AsyncFd::new(a)?;
    ///     a.get_mut().shutdown(std::net::Shutdown::Write)?;
    ///     Ok::<_, std::io::Error>(())
    /// })
    /// .unwrap();
    /// ```
    pub fn get_mut(&mut self) -> &mut T {
        self.io.as_mut().expect("present until into_inner")
    }

    /// Deregisters and returns the I/O object (still non-blocking).
    ///
    /// ```
    /// use std::os::unix::net::UnixStream;
    /// use trellis::io::AsyncFd;
    ///
    /// trellis::run(async {
    ///     let (a, _b) = UnixStream::pair()?;
    ///     let a: UnixStream = AsyncFd::new(a)?.into_inner()?;
    ///     a.set_nonblocking(false)?; // back to a plain blocking socket, if wanted
    ///     Ok::<_, std::io::Error>(())
    /// })
    /// .unwrap();
    /// ```
    pub fn into_inner(mut self) -> io::Result<T> {
        let result = self.rt.driver.reactor.deregister(&self.source);
        let io = self.io.take().expect("present until into_inner");
        result.map(|()| io)
    }

    /// [`into_inner`](AsyncFd::into_inner), and the descriptor made blocking again: for handing
    /// it to code that expects a plain descriptor (another process's standard stream).
    pub(crate) fn into_blocking(self) -> io::Result<T> {
        let io = self.into_inner()?;
        set_nonblocking(io.as_raw_fd(), false)?;
        Ok(io)
    }

    /// Waits until the descriptor is readable (data, end of file, or an error to read). A
    /// checkpoint.
    ///
    /// # Errors
    /// `Cancelled` (inside the `io::Error`) if the scope is cancelled;
    /// [`Error::BusyResource`](crate::Error::BusyResource) if another task is waiting to read.
    ///
    /// ```
    /// use std::io::{Read, Write};
    /// use std::os::unix::net::UnixStream;
    /// use trellis::io::AsyncFd;
    ///
    /// trellis::run(async {
    ///     let (a, mut b) = UnixStream::pair()?;
    ///     let a = AsyncFd::new(a)?;
    ///     b.write_all(b"x")?;
    ///     a.readable().await?;
    ///     let mut buf = [0u8; 1];
    ///     assert_eq!((&*a.get_ref()).read(&mut buf)?, 1);
    ///     Ok::<_, std::io::Error>(())
    /// })
    /// .unwrap();
    /// ```
    pub async fn readable(&self) -> io::Result<()> {
        let fd = self.source.fd();
        self.read_with(|_| probe(fd, libc::POLLIN)).await
    }

    /// Waits until the descriptor is writable (room to write, or an error to report). A
    /// checkpoint.
    ///
    /// # Errors
    /// As [`readable`](AsyncFd::readable), for writing.
    ///
    /// ```
    /// use std::io::Write;
    /// use std::os::unix::net::UnixStream;
    /// use trellis::io::AsyncFd;
    ///
    /// trellis::run(async {
    ///     let (a, _b) = UnixStream::pair()?;
    ///     let a = AsyncFd::new(a)?;
    ///     a.writable().await?; // an empty send buffer: at once
    ///     assert_eq!((&*a.get_ref()).write(b"hello")?, 5);
    ///     Ok::<_, std::io::Error>(())
    /// })
    /// .unwrap();
    /// ```
    pub async fn writable(&self) -> io::Result<()> {
        let fd = self.source.fd();
        self.write_with(|_| probe(fd, libc::POLLOUT)).await
    }

    /// Runs `op` (a non-blocking read) until it does not return `WouldBlock`, waiting for
    /// readability in between. A checkpoint; if cancelled, `op` is not called again, so a
    /// cancelled read consumes nothing.
    ///
    /// # Errors
    /// `op`'s error; `Cancelled` inside the `io::Error` if the scope is cancelled;
    /// [`Error::BusyResource`](crate::Error::BusyResource) if another task is waiting to read.
    ///
    /// ```
    /// use std::io::{Read, Write};
    /// use std::os::unix::net::UnixStream;
    /// use trellis::io::AsyncFd;
    ///
    /// trellis::run(async {
    ///     let (a, mut b) = UnixStream::pair()?;
    ///     let a = AsyncFd::new(a)?;
    ///     b.write_all(b"pong")?;
    ///     let mut buf = [0u8; 8];
    ///     let n = a.read_with(|s| (&*s).read(&mut buf)).await?;
    ///     assert_eq!(&buf[..n], b"pong");
    ///     Ok::<_, std::io::Error>(())
    /// })
    /// .unwrap();
    /// ```
    pub async fn read_with<R>(&self, op: impl FnMut(&T) -> io::Result<R>) -> io::Result<R> {
        let _busy = self.reading.enter()?;
        self.ready(Direction::Read, op).await
    }

    /// Runs `op` (a non-blocking write) until it does not return `WouldBlock`, waiting for
    /// writability in between. A checkpoint; if cancelled, `op` is not called again.
    ///
    /// # Errors
    /// As [`read_with`](AsyncFd::read_with), for writing.
    ///
    /// ```
    /// use std::io::{Read, Write};
    /// use std::os::unix::net::UnixStream;
    /// use trellis::io::AsyncFd;
    ///
    /// trellis::run(async {
    ///     let (a, mut b) = UnixStream::pair()?;
    ///     let a = AsyncFd::new(a)?;
    ///     let n = a.write_with(|s| (&*s).write(b"ping")).await?;
    ///     let mut buf = [0u8; 4];
    ///     b.read_exact(&mut buf[..n])?;
    ///     assert_eq!(&buf, b"ping");
    ///     Ok::<_, std::io::Error>(())
    /// })
    /// .unwrap();
    /// ```
    pub async fn write_with<R>(&self, op: impl FnMut(&T) -> io::Result<R>) -> io::Result<R> {
        let _busy = self.writing.enter()?;
        self.ready(Direction::Write, op).await
    }

    fn ready<'a, R: 'a, F: FnMut(&T) -> io::Result<R> + 'a>(
        &'a self,
        dir: Direction,
        op: F,
    ) -> impl Future<Output = io::Result<R>> + 'a {
        // A closure, not a `fn` pointer: a zero-sized type that inlines away, where a pointer
        // may stay an indirect call after every completed operation.
        self.ready_draining(dir, op, |_: &R| false)
    }

    /// As `ready`, with `drained` as in [`poll_op`](AsyncFd::poll_op).
    pub(crate) fn ready_draining<R, F, D>(
        &self,
        dir: Direction,
        op: F,
        drained: D,
    ) -> IoOp<'_, T, F, D, R>
    where
        F: FnMut(&T) -> io::Result<R>,
        D: Fn(&R) -> bool,
    {
        IoOp {
            fd: self,
            dir,
            op,
            drained,
            cancel: CancelWaiter::new(),
            blocked: false,
            done: None,
        }
    }

    /// Is this thread serving the run whose reactor this descriptor is registered with? Only
    /// that reactor delivers its readiness.
    #[inline]
    fn in_own_run(&self) -> bool {
        std::ptr::eq(context::current_runtime_addr(), Arc::as_ptr(&self.rt))
    }

    /// One non-blocking attempt of `op` once readiness in `dir` is known; `Pending` (waker
    /// stored) while not ready. Not a checkpoint: the building block of `poll_read`-style
    /// trait implementations.
    ///
    /// `drained(&r)` says that a completed attempt emptied the kernel buffer it worked on (a
    /// stream read or write that moved fewer bytes than asked): the readiness it used is then
    /// forgotten at once, so the next attempt waits for the next event instead of first
    /// failing with `WouldBlock`, which saves a system call per wait. A readiness event that
    /// arrived meanwhile is kept (the tick check of `clear_ready`).
    pub(crate) fn poll_op<R>(
        &self,
        dir: Direction,
        cx: &mut Context<'_>,
        mut op: impl FnMut(&T) -> io::Result<R>,
        drained: impl Fn(&R) -> bool,
    ) -> Poll<io::Result<R>> {
        loop {
            let event = match self.source.poll_ready(&self.rt.driver.reactor, dir, cx) {
                Poll::Ready(Ok(event)) => event,
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => {
                    if !self.in_own_run() {
                        // No readiness will ever reach this run: try once, and if the operation
                        // would have to wait, say why instead of waiting for ever.
                        match op(self.get_ref()) {
                            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                                used_outside_its_runtime(context::current_runtime_addr().is_null())
                            }
                            result => return Poll::Ready(result),
                        }
                    }
                    return Poll::Pending;
                }
            };
            match op(self.get_ref()) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => self.source.clear_ready(event),
                result => {
                    if result.as_ref().is_ok_and(&drained) {
                        self.source.clear_ready(event);
                    }
                    return Poll::Ready(result);
                }
            }
        }
    }
}

impl<T: AsRawFd> AsyncFd<T> {
    /// [`poll_op`](AsyncFd::poll_op) made cancellation-aware, for `poll_read`-style trait
    /// implementations (`futures_io::AsyncRead` and friends): fails with `Cancelled` (inside the
    /// `io::Error`) when the enclosing scope is cancelled, before attempting `op`, so a cancelled
    /// poll consumes nothing; while blocked, `waiter` makes a cancellation wake `cx`.
    ///
    /// Unlike the async methods it is a cancel point but not a schedule point: a trait poll
    /// that could complete at once does so, because the poll traits give no way to resume a
    /// finished operation after a yield (the caller may change the buffer between polls).
    pub(crate) fn poll_io<R>(
        &self,
        dir: Direction,
        waiter: &mut CancelWaiter,
        cx: &mut Context<'_>,
        op: impl FnMut(&T) -> io::Result<R>,
        drained: impl Fn(&R) -> bool,
    ) -> Poll<io::Result<R>> {
        // The futures-io traits are how another executor would reach a trellis stream: say so
        // rather than give the generic outside-a-runtime message.
        if context::current_runtime_addr().is_null() {
            used_outside_its_runtime(true);
        }
        waiter
            .poll_attempt("io::AsyncFd::poll_io", cx, |cx| {
                self.poll_op(dir, cx, op, drained)
            })
            .map(|attempt| attempt.unwrap_or_else(|c| Err(c.into())))
    }
}

/// A descriptor was waited on where its readiness can never arrive: with no trellis runtime on
/// the thread (typically another executor polling a stream through its `futures-io` traits), or
/// in a later `block_on` than the one that created it (each run has its own reactor). Both are
/// programming errors with nothing to fall back on, so the message says what to do instead.
#[cold]
#[track_caller]
fn used_outside_its_runtime(no_runtime: bool) -> ! {
    if no_runtime {
        panic!(
            "a trellis stream (TcpStream, UnixStream, a process pipe, an AsyncFd...) was polled \
             outside a trellis runtime, through its futures-io traits: it can only be driven by \
             the runtime that created it. If a library spawns the work onto an executor of its \
             own, run that work in a trellis task instead (a nursery's spawn)"
        )
    }
    panic!(
        "a trellis stream (TcpStream, UnixStream, a process pipe, an AsyncFd...) was used in a \
         different run than the one that created it: each `block_on` (or `trellis::run`) has its \
         own I/O reactor, and the stream's readiness arrives only at the one it was registered \
         with. Create the stream inside the run that uses it (a std socket can be kept between \
         runs and wrapped with from_std inside each)"
    )
}

/// Asks the kernel whether `fd` is ready for `events` now (`poll` with a zero timeout):
/// `WouldBlock` if not, so the caller forgets the cached readiness and waits for a new event.
/// Hang-up and error conditions count as ready: the operation that follows reports them.
fn probe(fd: RawFd, events: libc::c_short) -> io::Result<()> {
    let mut pollfd = libc::pollfd {
        fd,
        events,
        revents: 0,
    };
    loop {
        // SAFETY: one valid `pollfd` for the duration of the call; a zero timeout never blocks.
        let n = unsafe { libc::poll(&mut pollfd, 1, 0) };
        return match n {
            0 => Err(io::ErrorKind::WouldBlock.into()),
            n if n > 0 => Ok(()),
            _ => match io::Error::last_os_error() {
                e if e.kind() == io::ErrorKind::Interrupted => continue,
                e => Err(e),
            },
        };
    }
}

impl<T: AsRawFd> Drop for AsyncFd<T> {
    fn drop(&mut self) {
        if self.io.is_some() {
            // Deregister before `io` (dropped after this) closes the descriptor.
            let _ = self.rt.driver.reactor.deregister(&self.source);
        }
    }
}

/// A readiness wait plus operation; see [`AsyncFd::read_with`]. Checkpoint order as in trio:
/// cancellation is checked before the operation; an operation that completes without blocking
/// then yields once (blocking already was a schedule point; a read within the yield budget
/// skips it, a write never does), and its result is kept across that yield, so completed I/O
/// is never lost to a cancellation.
pub(crate) struct IoOp<'a, T: AsRawFd, F, D, R> {
    fd: &'a AsyncFd<T>,
    dir: Direction,
    op: F,
    drained: D,
    cancel: CancelWaiter,
    blocked: bool,
    done: Option<io::Result<R>>,
}

impl<T: AsRawFd, R, F, D> Future for IoOp<'_, T, F, D, R>
where
    F: FnMut(&T) -> io::Result<R>,
    D: Fn(&R) -> bool,
{
    type Output = io::Result<R>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        // SAFETY: no field is structurally pinned (the future holds only references, the closure
        // and a plain result), and nothing is moved out of `self` except the finished result.
        let this = unsafe { self.get_unchecked_mut() };
        if let Some(result) = this.done.take() {
            return Poll::Ready(result);
        }
        let (fd, dir, op, drained) = (this.fd, this.dir, &mut this.op, &this.drained);
        match this
            .cancel
            .poll_attempt("io::AsyncFd", cx, |cx| fd.poll_op(dir, cx, op, drained))
        {
            Poll::Ready(Err(c)) => Poll::Ready(Err(c.into())),
            Poll::Pending => {
                this.blocked = true;
                Poll::Pending
            }
            Poll::Ready(Ok(result)) => {
                // A completed write takes its schedule point whatever the yield budget: what
                // usually follows a write is a read of the peer's answer, which, tried at once,
                // fails and parks; after a yield it often finds the answer there. A write is a
                // system call, so the yield adds little to it (docs/design.md, "Schedule
                // points").
                let skip_yield = match this.dir {
                    Direction::Read => !context::must_yield(),
                    Direction::Write => false,
                };
                if this.blocked || skip_yield {
                    return Poll::Ready(result);
                }
                this.done = Some(result);
                cx.waker().wake_by_ref();
                current::note_parked();
                Poll::Pending
            }
        }
    }
}
