//! In-memory byte streams (trio's `memory_stream_pair`): two connected ends that behave like a
//! socket pair, for testing protocol code without the operating system.

use std::collections::VecDeque;
use std::fmt;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};

use crate::cancel::{CancelWaiter, YieldOnce};
use crate::io::{ReadStream, SplitStream, WriteStream};
use crate::state_lock::lock_blocking;

/// Bytes a direction buffers before a write blocks, unless set: a typical socket buffer.
pub const DEFAULT_CAPACITY: usize = 64 * 1024;

/// Two connected in-memory streams: what one writes, the other reads. Each direction buffers
/// up to [`DEFAULT_CAPACITY`] bytes; a write blocks while the buffer is full, like a socket's.
///
/// ```
/// use trellis::testing::memory_stream_pair;
///
/// trellis::run(async {
///     let (mut a, mut b) = memory_stream_pair();
///     a.write_all(b"ping").await?;
///     let mut buf = [0u8; 4];
///     assert_eq!(b.read(&mut buf).await?, 4);
///     assert_eq!(&buf, b"ping");
///     Ok::<_, std::io::Error>(())
/// })
/// .unwrap();
/// ```
///
/// Deviation from trio: trio's pair is unbounded unless a pump limits it; here the buffer is
/// bounded by default so that writers meet back-pressure as they would on a socket.
pub fn memory_stream_pair() -> (MemoryStream, MemoryStream) {
    memory_stream_pair_with_capacity(DEFAULT_CAPACITY)
}

/// Like [`memory_stream_pair`] with `capacity` bytes of buffer per direction.
///
/// # Panics
/// If `capacity` is zero (a write could never complete).
///
/// ```
/// use std::time::Duration;
/// use trellis::testing::memory_stream_pair_with_capacity;
///
/// trellis::run(async {
///     let (mut a, mut b) = memory_stream_pair_with_capacity(4);
///     // Only 4 bytes fit: a bigger write takes what fits...
///     assert_eq!(a.write(b"abcdef").await?, 4);
///     // ...and the next one waits for the reader (here it is abandoned after 5 ms).
///     let blocked = trellis::move_on_after(Duration::from_millis(5), a.write(b"ef")).await;
///     assert!(blocked.is_none());
///     let mut buf = [0u8; 8];
///     assert_eq!(b.read(&mut buf).await?, 4);
///     Ok::<_, std::io::Error>(())
/// })
/// .unwrap();
/// ```
pub fn memory_stream_pair_with_capacity(capacity: usize) -> (MemoryStream, MemoryStream) {
    assert!(
        capacity > 0,
        "memory_stream_pair_with_capacity: capacity must be > 0"
    );
    let ab = Arc::new(Pipe::new(capacity));
    let ba = Arc::new(Pipe::new(capacity));
    (
        MemoryStream {
            reader: MemoryReadHalf::new(ba.clone()),
            writer: MemoryWriteHalf::new(ab.clone()),
        },
        MemoryStream {
            reader: MemoryReadHalf::new(ab),
            writer: MemoryWriteHalf::new(ba),
        },
    )
}

/// One direction: a bounded byte queue with the wakers of its reader and writer.
struct Pipe {
    state: Mutex<PipeState>,
}

struct PipeState {
    buf: VecDeque<u8>,
    capacity: usize,
    /// The writer shut down or was dropped: the reader sees end of stream after the buffer.
    write_closed: bool,
    /// The reader was dropped: writes fail.
    read_closed: bool,
    reader: Option<Waker>,
    writer: Option<Waker>,
}

impl Pipe {
    fn new(capacity: usize) -> Pipe {
        Pipe {
            state: Mutex::new(PipeState {
                buf: VecDeque::new(),
                capacity,
                write_closed: false,
                read_closed: false,
                reader: None,
                writer: None,
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, PipeState> {
        lock_blocking(&self.state)
    }

    /// Takes up to `buf.len()` bytes; `Pending` (waker stored) when empty and still open.
    fn poll_take(&self, cx: &mut Context<'_>, buf: &mut [u8]) -> Poll<io::Result<usize>> {
        let mut s = self.lock();
        if buf.is_empty() {
            return Poll::Ready(Ok(0));
        }
        if s.buf.is_empty() {
            if s.write_closed {
                return Poll::Ready(Ok(0));
            }
            s.reader = Some(cx.waker().clone());
            return Poll::Pending;
        }
        let n = buf.len().min(s.buf.len());
        for (slot, byte) in buf.iter_mut().zip(s.buf.drain(..n)) {
            *slot = byte;
        }
        let writer = s.writer.take();
        drop(s);
        if let Some(w) = writer {
            w.wake();
        }
        Poll::Ready(Ok(n))
    }

    /// Appends as much of `buf` as fits; `Pending` while full.
    fn poll_put(&self, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let mut s = self.lock();
        if s.write_closed {
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::BrokenPipe,
                "write after the writing direction was shut down",
            )));
        }
        if s.read_closed {
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::BrokenPipe,
                "the other end of the memory stream was dropped",
            )));
        }
        if buf.is_empty() {
            return Poll::Ready(Ok(0));
        }
        let room = s.capacity - s.buf.len();
        if room == 0 {
            s.writer = Some(cx.waker().clone());
            return Poll::Pending;
        }
        let n = room.min(buf.len());
        s.buf.extend(&buf[..n]);
        let reader = s.reader.take();
        drop(s);
        if let Some(w) = reader {
            w.wake();
        }
        Poll::Ready(Ok(n))
    }

    fn close_write(&self) {
        let mut s = self.lock();
        s.write_closed = true;
        let reader = s.reader.take();
        drop(s);
        if let Some(w) = reader {
            w.wake();
        }
    }

    fn close_read(&self) {
        let mut s = self.lock();
        s.read_closed = true;
        s.buf.clear();
        let writer = s.writer.take();
        drop(s);
        if let Some(w) = writer {
            w.wake();
        }
    }
}

/// One end of a [`memory_stream_pair`]. Reading and writing are checkpoints with the same
/// cancellation contract as sockets (see [`trellis::io`](crate::io)).
///
/// ```
/// use trellis::testing::{memory_stream_pair, MemoryStream};
///
/// trellis::run(async {
///     let (mut client, mut server): (MemoryStream, MemoryStream) = memory_stream_pair();
///     client.write_all(b"request").await?;
///     let mut buf = [0u8; 16];
///     let n = server.read(&mut buf).await?;
///     server.write_all(&buf[..n]).await?; // echo
///     let n = client.read(&mut buf).await?;
///     assert_eq!(&buf[..n], b"request");
///     Ok::<_, std::io::Error>(())
/// })
/// .unwrap();
/// ```
pub struct MemoryStream {
    reader: MemoryReadHalf,
    writer: MemoryWriteHalf,
}

/// The reading half of a [`MemoryStream`]. Implements `futures_io::AsyncBufRead`.
///
/// ```
/// use futures_lite::AsyncBufReadExt;
/// use trellis::testing::memory_stream_pair;
///
/// trellis::run(async {
///     let (a, b) = memory_stream_pair();
///     let (mut reader, _w) = b.into_split();
///     let (_r, mut writer) = a.into_split();
///     writer.write_all(b"line one\nline two\n").await?;
///     let mut line = String::new();
///     reader.read_line(&mut line).await?; // AsyncBufRead
///     assert_eq!(line, "line one\n");
///     Ok::<_, std::io::Error>(())
/// })
/// .unwrap();
/// ```
pub struct MemoryReadHalf {
    pipe: Arc<Pipe>,
    waiter: CancelWaiter,
    /// Bytes taken from the pipe by `poll_fill_buf` and not yet consumed.
    local: Vec<u8>,
    pos: usize,
}

/// The writing half of a [`MemoryStream`]; dropping it ends the stream for the reader.
///
/// ```
/// use trellis::testing::memory_stream_pair;
///
/// trellis::run(async {
///     let (a, mut b) = memory_stream_pair();
///     let (_reader, mut writer) = a.into_split();
///     writer.write_all(b"bye").await?;
///     drop(writer); // the other end reads to the end of the stream
///     let mut buf = [0u8; 8];
///     assert_eq!(b.read(&mut buf).await?, 3);
///     assert_eq!(b.read(&mut buf).await?, 0);
///     Ok::<_, std::io::Error>(())
/// })
/// .unwrap();
/// ```
pub struct MemoryWriteHalf {
    pipe: Arc<Pipe>,
    waiter: CancelWaiter,
}

impl fmt::Debug for MemoryStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("MemoryStream")
    }
}

impl fmt::Debug for MemoryReadHalf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("MemoryReadHalf")
    }
}

impl fmt::Debug for MemoryWriteHalf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("MemoryWriteHalf")
    }
}

impl MemoryReadHalf {
    fn new(pipe: Arc<Pipe>) -> Self {
        MemoryReadHalf {
            pipe,
            waiter: CancelWaiter::new(),
            local: Vec::new(),
            pos: 0,
        }
    }

    /// Reads from the local buffer first, then the pipe. Not cancel-aware by itself.
    fn poll_take(&mut self, cx: &mut Context<'_>, buf: &mut [u8]) -> Poll<io::Result<usize>> {
        if self.pos < self.local.len() {
            let n = buf.len().min(self.local.len() - self.pos);
            buf[..n].copy_from_slice(&self.local[self.pos..self.pos + n]);
            self.pos += n;
            return Poll::Ready(Ok(n));
        }
        self.pipe.poll_take(cx, buf)
    }

    /// Reads some bytes; `Ok(0)` at end of stream. A checkpoint; a cancelled read consumed
    /// nothing.
    ///
    /// ```
    /// use trellis::testing::memory_stream_pair;
    ///
    /// trellis::run(async {
    ///     let (mut a, b) = memory_stream_pair();
    ///     let (mut read, _write) = b.into_split();
    ///     a.write_all(b"half").await?;
    ///     let mut buf = [0u8; 8];
    ///     assert_eq!(read.read(&mut buf).await?, 4);
    ///     Ok::<_, std::io::Error>(())
    /// })
    /// .unwrap();
    /// ```
    pub async fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        Op::new(|cx| self.poll_take(cx, buf)).await
    }
}

impl MemoryWriteHalf {
    fn new(pipe: Arc<Pipe>) -> Self {
        MemoryWriteHalf {
            pipe,
            waiter: CancelWaiter::new(),
        }
    }

    /// Writes some bytes (as many as fit). A checkpoint; a cancelled write wrote nothing.
    ///
    /// ```
    /// use trellis::testing::memory_stream_pair;
    ///
    /// trellis::run(async {
    ///     let (a, mut b) = memory_stream_pair();
    ///     let (_read, mut write) = a.into_split();
    ///     assert_eq!(write.write(b"abc").await?, 3);
    ///     let mut buf = [0u8; 3];
    ///     assert_eq!(b.read(&mut buf).await?, 3);
    ///     Ok::<_, std::io::Error>(())
    /// })
    /// .unwrap();
    /// ```
    pub async fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let pipe = &self.pipe;
        Op::new(|cx| pipe.poll_put(cx, buf)).await
    }

    /// Writes all of `buf` (see [`PartialWrite`](crate::io::PartialWrite)).
    ///
    /// ```
    /// use trellis::testing::memory_stream_pair;
    ///
    /// trellis::run(async {
    ///     let (a, mut b) = memory_stream_pair();
    ///     let (_read, mut write) = a.into_split();
    ///     write.write_all(b"everything").await?;
    ///     let mut buf = [0u8; 10];
    ///     assert_eq!(b.read(&mut buf).await?, 10);
    ///     Ok::<_, std::io::Error>(())
    /// })
    /// .unwrap();
    /// ```
    pub async fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        WriteStream::write_all(self, buf).await
    }
}

impl Drop for MemoryReadHalf {
    fn drop(&mut self) {
        self.pipe.close_read();
    }
}

impl Drop for MemoryWriteHalf {
    fn drop(&mut self) {
        self.pipe.close_write();
    }
}

impl MemoryStream {
    /// Reads some bytes; `Ok(0)` at end of stream. A checkpoint.
    ///
    /// ```
    /// use trellis::testing::memory_stream_pair;
    ///
    /// trellis::run(async {
    ///     let (mut a, mut b) = memory_stream_pair();
    ///     a.write_all(b"xy").await?;
    ///     drop(a);
    ///     let mut buf = [0u8; 4];
    ///     assert_eq!(b.read(&mut buf).await?, 2);
    ///     assert_eq!(b.read(&mut buf).await?, 0); // the other end is gone
    ///     Ok::<_, std::io::Error>(())
    /// })
    /// .unwrap();
    /// ```
    pub async fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.reader.read(buf).await
    }

    /// Writes some bytes. A checkpoint.
    ///
    /// ```
    /// use trellis::testing::memory_stream_pair;
    ///
    /// trellis::run(async {
    ///     let (mut a, mut b) = memory_stream_pair();
    ///     let n = a.write(b"some").await?;
    ///     let mut buf = [0u8; 4];
    ///     assert_eq!(b.read(&mut buf).await?, n);
    ///     Ok::<_, std::io::Error>(())
    /// })
    /// .unwrap();
    /// ```
    pub async fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.writer.write(buf).await
    }

    /// Writes all of `buf`.
    ///
    /// ```
    /// use trellis::testing::memory_stream_pair;
    ///
    /// trellis::run(async {
    ///     let (mut a, mut b) = memory_stream_pair();
    ///     a.write_all(&[9u8; 100]).await?;
    ///     let mut buf = [0u8; 100];
    ///     let mut got = 0;
    ///     while got < 100 {
    ///         got += b.read(&mut buf[got..]).await?;
    ///     }
    ///     assert!(buf.iter().all(|&x| x == 9));
    ///     Ok::<_, std::io::Error>(())
    /// })
    /// .unwrap();
    /// ```
    pub async fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        self.writer.write_all(buf).await
    }

    /// Splits into halves for two tasks.
    ///
    /// ```
    /// use trellis::testing::memory_stream_pair;
    ///
    /// trellis::run(async {
    ///     let (a, mut b) = memory_stream_pair();
    ///     let (mut read, mut write) = a.into_split();
    ///     write.write_all(b"out").await?;
    ///     b.write_all(b"in").await?;
    ///     let mut buf = [0u8; 3];
    ///     assert_eq!(read.read(&mut buf).await?, 2);
    ///     assert_eq!(b.read(&mut buf).await?, 3);
    ///     Ok::<_, std::io::Error>(())
    /// })
    /// .unwrap();
    /// ```
    pub fn into_split(self) -> (MemoryReadHalf, MemoryWriteHalf) {
        (self.reader, self.writer)
    }
}

/// A checkpoint around a poll function (as `IoOp` does for descriptors): cancellation checked
/// first, the registration for a cancellation's wake-up made only when the poll has to wait, a
/// result that came without blocking kept across one yield.
struct Op<F> {
    poll: F,
    cancel: CancelWaiter,
    yield_once: YieldOnce,
    done: Option<io::Result<usize>>,
}

impl<F: FnMut(&mut Context<'_>) -> Poll<io::Result<usize>> + Unpin> Op<F> {
    fn new(poll: F) -> Self {
        Op {
            poll,
            cancel: CancelWaiter::new(),
            yield_once: YieldOnce::default(),
            done: None,
        }
    }
}

impl<F: FnMut(&mut Context<'_>) -> Poll<io::Result<usize>> + Unpin> Future for Op<F> {
    type Output = io::Result<usize>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = &mut *self;
        if let Some(done) = this.done.take() {
            if this.yield_once.poll_yield(cx).is_pending() {
                this.done = Some(done);
                return Poll::Pending;
            }
            return Poll::Ready(done);
        }
        match this
            .cancel
            .poll_attempt("testing::MemoryStream", cx, &mut this.poll)
        {
            Poll::Ready(Err(c)) => Poll::Ready(Err(c.into())),
            Poll::Pending => {
                this.yield_once.blocked();
                Poll::Pending
            }
            Poll::Ready(Ok(result)) => {
                if this.yield_once.poll_yield(cx).is_pending() {
                    this.done = Some(result);
                    return Poll::Pending;
                }
                Poll::Ready(result)
            }
        }
    }
}

/// Cancel-aware poll for the `futures_io` traits: fails when cancelled, registers for a
/// cancellation wake-up while blocked; no schedule point.
fn poll_traits(
    waiter: &mut CancelWaiter,
    cx: &mut Context<'_>,
    op: impl FnOnce(&mut Context<'_>) -> Poll<io::Result<usize>>,
) -> Poll<io::Result<usize>> {
    waiter
        .poll_attempt("testing::MemoryStream", cx, op)
        .map(|attempt| attempt.unwrap_or_else(|c| Err(c.into())))
}

impl ReadStream for MemoryReadHalf {
    async fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        MemoryReadHalf::read(self, buf).await
    }
}

impl WriteStream for MemoryWriteHalf {
    async fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        MemoryWriteHalf::write(self, buf).await
    }

    async fn shutdown_write(&mut self) -> io::Result<()> {
        crate::checkpoint().await?;
        self.pipe.close_write();
        Ok(())
    }
}

impl ReadStream for MemoryStream {
    async fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.reader.read(buf).await
    }
}

impl WriteStream for MemoryStream {
    async fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.writer.write(buf).await
    }

    async fn shutdown_write(&mut self) -> io::Result<()> {
        WriteStream::shutdown_write(&mut self.writer).await
    }
}

impl SplitStream for MemoryStream {
    type ReadHalf = MemoryReadHalf;
    type WriteHalf = MemoryWriteHalf;

    fn into_split(self) -> (MemoryReadHalf, MemoryWriteHalf) {
        MemoryStream::into_split(self)
    }
}

impl futures_io::AsyncRead for MemoryReadHalf {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let mut waiter = std::mem::take(&mut this.waiter);
        let out = poll_traits(&mut waiter, cx, |cx| this.poll_take(cx, buf));
        this.waiter = waiter;
        out
    }
}

impl futures_io::AsyncBufRead for MemoryReadHalf {
    fn poll_fill_buf(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<&[u8]>> {
        let this = self.get_mut();
        if this.pos >= this.local.len() {
            let mut chunk = vec![0u8; 8 * 1024];
            let pipe = this.pipe.clone();
            match poll_traits(&mut this.waiter, cx, |cx| pipe.poll_take(cx, &mut chunk)) {
                Poll::Ready(Ok(n)) => {
                    chunk.truncate(n);
                    this.local = chunk;
                    this.pos = 0;
                }
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => return Poll::Pending,
            }
        }
        Poll::Ready(Ok(&this.local[this.pos..]))
    }

    fn consume(self: Pin<&mut Self>, amt: usize) {
        let this = self.get_mut();
        this.pos = (this.pos + amt).min(this.local.len());
    }
}

impl futures_io::AsyncWrite for MemoryWriteHalf {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let pipe = &this.pipe;
        poll_traits(&mut this.waiter, cx, |cx| pipe.poll_put(cx, buf))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_close(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.pipe.close_write();
        Poll::Ready(Ok(()))
    }
}

impl futures_io::AsyncRead for MemoryStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().reader).poll_read(cx, buf)
    }
}

impl futures_io::AsyncBufRead for MemoryStream {
    fn poll_fill_buf(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<&[u8]>> {
        Pin::new(&mut self.get_mut().reader).poll_fill_buf(cx)
    }

    fn consume(self: Pin<&mut Self>, amt: usize) {
        Pin::new(&mut self.get_mut().reader).consume(amt);
    }
}

impl futures_io::AsyncWrite for MemoryStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().writer).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().writer).poll_flush(cx)
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().writer).poll_close(cx)
    }
}
