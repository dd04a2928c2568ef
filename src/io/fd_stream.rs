//! The reading and writing ends of a descriptor-backed byte stream (sockets, pipes), shared by
//! the public stream types of `net` and `process`, and the two-way socket stream built from them.
//!
//! A stream's descriptor lives in an `Arc<AsyncFd>` so it can be split into halves owned by two
//! tasks. Each end has its own [`CancelWaiter`] for the poll-based trait implementations, and the
//! reactor keeps one reader and one writer waker per descriptor, which is why an end is used
//! through `&mut` (one task at a time per direction).
//!
//! A pipe is one-way: the child's stdin is an [`FdWriter`], its stdout an [`FdReader`]. A
//! connected socket (TCP, Unix) is an [`FdStream`]: a reader and a [`SocketWriter`] over one
//! descriptor, which the public stream types wrap. Splitting it hands the two ends to two owners;
//! the descriptor closes only when both are gone, so the write half shuts down the writing
//! direction (`shutdown(2)`) when dropped, or the peer would never read end of stream.
//! Reuniting the halves takes that duty back.

use std::io::{self, IoSlice, Read, Write};
use std::net::Shutdown;
use std::os::fd::{AsFd, AsRawFd};
use std::sync::Arc;
use std::task::{Context, Poll};

use socket2::SockRef;

use super::{AsyncFd, Direction};
use crate::cancel::CancelWaiter;

/// The reading end.
pub(crate) struct FdReader<S: AsRawFd> {
    pub(crate) fd: Arc<AsyncFd<S>>,
    waiter: CancelWaiter,
}

/// The writing end.
pub(crate) struct FdWriter<S: AsRawFd> {
    pub(crate) fd: Arc<AsyncFd<S>>,
    waiter: CancelWaiter,
}

/// Did a write move fewer than the `want` bytes asked for? Then it filled the send buffer, and
/// the next attempt would fail with `WouldBlock`: [`AsyncFd::poll_op`] forgets the readiness
/// instead, and the next write waits for the event that says there is room (or that the
/// connection failed: errors and hang-ups are edges too).
///
/// Reads do not use this rule, although a short read usually drained the receive buffer: a
/// peer's end of stream (FIN) that arrived with the last data is still queued behind it, and
/// only `EPOLLRDHUP`, which `polling` does not report, would say so. Forgetting the readiness
/// there would leave the reader waiting for an event that already came.
fn short(want: usize) -> impl Fn(&usize) -> bool {
    move |&n| n > 0 && n < want
}

impl<S: AsRawFd> FdReader<S>
where
    for<'a> &'a S: Read,
{
    pub(crate) fn new(fd: Arc<AsyncFd<S>>) -> Self {
        FdReader {
            fd,
            waiter: CancelWaiter::new(),
        }
    }

    /// A checkpoint; a cancelled read consumed nothing. `&mut self` already makes this the
    /// only reader, so it skips `read_with`'s busy check.
    pub(crate) async fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.fd.ready(Direction::Read, |mut s| s.read(buf)).await
    }

    pub(crate) fn poll_read(
        &mut self,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        self.fd.poll_io(
            Direction::Read,
            &mut self.waiter,
            cx,
            |mut s| s.read(buf),
            |_| false,
        )
    }
}

impl<S: AsRawFd> FdWriter<S>
where
    for<'a> &'a S: Write,
{
    pub(crate) fn new(fd: Arc<AsyncFd<S>>) -> Self {
        FdWriter {
            fd,
            waiter: CancelWaiter::new(),
        }
    }

    /// A checkpoint; a cancelled write wrote nothing. The only writer (`&mut self`), as for
    /// reading.
    pub(crate) async fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let want = buf.len();
        self.fd
            .ready_draining(Direction::Write, |mut s| s.write(buf), short(want))
            .await
    }

    pub(crate) fn poll_write(
        &mut self,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let want = buf.len();
        self.fd.poll_io(
            Direction::Write,
            &mut self.waiter,
            cx,
            |mut s| s.write(buf),
            short(want),
        )
    }

    pub(crate) fn poll_write_vectored(
        &mut self,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.fd.poll_io(
            Direction::Write,
            &mut self.waiter,
            cx,
            |mut s| s.write_vectored(bufs),
            short(bufs.iter().map(|b| b.len()).sum()),
        )
    }
}

/// A connected socket as a two-way stream: both ends over one registered descriptor. `S` is the
/// standard library's socket type (`std::net::TcpStream`, `std::os::unix::net::UnixStream`).
pub(crate) struct FdStream<S: AsRawFd + AsFd> {
    pub(crate) reader: FdReader<S>,
    pub(crate) writer: SocketWriter<S>,
}

impl<S: AsRawFd + AsFd> FdStream<S>
where
    for<'a> &'a S: Read + Write,
{
    /// The stream over `fd`, a connected socket.
    pub(crate) fn new(fd: AsyncFd<S>) -> Self {
        let fd = Arc::new(fd);
        FdStream {
            reader: FdReader::new(fd.clone()),
            writer: SocketWriter {
                writer: FdWriter::new(fd),
                shutdown_on_drop: false,
            },
        }
    }

    /// The socket, for its addresses and options.
    pub(crate) fn get_ref(&self) -> &S {
        self.reader.fd.get_ref()
    }

    /// `shutdown(2)`: after `Shutdown::Write` the peer reads end of stream.
    pub(crate) fn shutdown(&self, how: Shutdown) -> io::Result<()> {
        SockRef::from(self.get_ref()).shutdown(how)
    }

    /// The two ends, for two owners; the writing end now shuts down writing when dropped.
    pub(crate) fn into_split(self) -> (FdReader<S>, SocketWriter<S>) {
        let FdStream { reader, mut writer } = self;
        writer.shutdown_on_drop = true;
        (reader, writer)
    }

    /// The stream again from its two ends, or `None` if they come from different streams.
    pub(crate) fn reunite(reader: FdReader<S>, mut writer: SocketWriter<S>) -> Option<Self> {
        if !Arc::ptr_eq(&reader.fd, &writer.writer.fd) {
            return None;
        }
        writer.shutdown_on_drop = false;
        Some(FdStream { reader, writer })
    }
}

/// The writing end of a socket stream: an [`FdWriter`] that can also close the writing direction
/// (the [`fd_stream_impls`] `write` arm uses that for `shutdown_write` and `poll_close`).
pub(crate) struct SocketWriter<S: AsRawFd + AsFd> {
    writer: FdWriter<S>,
    /// Set while this end is a half of its own (see the module docs): the read half keeps the
    /// descriptor open, so closing it would not tell the peer that writing is over.
    shutdown_on_drop: bool,
}

impl<S: AsRawFd + AsFd> SocketWriter<S>
where
    for<'a> &'a S: Write,
{
    /// As [`FdWriter::write`].
    pub(crate) async fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.writer.write(buf).await
    }

    pub(crate) fn poll_write(
        &mut self,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.writer.poll_write(cx, buf)
    }

    pub(crate) fn poll_write_vectored(
        &mut self,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.writer.poll_write_vectored(cx, bufs)
    }
}

impl<S: AsRawFd + AsFd> SocketWriter<S> {
    /// Shuts down the writing direction: the peer reads end of stream.
    pub(crate) fn close_write(&self) -> io::Result<()> {
        SockRef::from(self.writer.fd.get_ref()).shutdown(Shutdown::Write)
    }
}

impl<S: AsRawFd + AsFd> Drop for SocketWriter<S> {
    fn drop(&mut self) {
        if self.shutdown_on_drop {
            // The peer may already be gone; nothing to report then.
            let _ = self.close_write();
        }
    }
}

/// Implements [`ReadStream`](crate::io::ReadStream) and `futures_io::AsyncRead` for a type with
/// an [`FdReader`] at the field path given (`reader`, `inner.reader`), and/or
/// [`WriteStream`](crate::io::WriteStream) and `futures_io::AsyncWrite` for a type with a
/// [`SocketWriter`] there.
macro_rules! fd_stream_impls {
    (read: $ty:ty, $($field:ident).+) => {
        impl $crate::io::ReadStream for $ty {
            async fn read(&mut self, buf: &mut [u8]) -> ::std::io::Result<usize> {
                self.$($field).+.read(buf).await
            }
        }

        impl ::futures_io::AsyncRead for $ty {
            fn poll_read(
                self: ::std::pin::Pin<&mut Self>,
                cx: &mut ::std::task::Context<'_>,
                buf: &mut [u8],
            ) -> ::std::task::Poll<::std::io::Result<usize>> {
                self.get_mut().$($field).+.poll_read(cx, buf)
            }
        }
    };
    (write: $ty:ty, $($field:ident).+) => {
        impl $crate::io::WriteStream for $ty {
            async fn write(&mut self, buf: &[u8]) -> ::std::io::Result<usize> {
                self.$($field).+.write(buf).await
            }

            async fn shutdown_write(&mut self) -> ::std::io::Result<()> {
                $crate::checkpoint().await?;
                self.$($field).+.close_write()
            }
        }

        impl ::futures_io::AsyncWrite for $ty {
            fn poll_write(
                self: ::std::pin::Pin<&mut Self>,
                cx: &mut ::std::task::Context<'_>,
                buf: &[u8],
            ) -> ::std::task::Poll<::std::io::Result<usize>> {
                self.get_mut().$($field).+.poll_write(cx, buf)
            }

            fn poll_write_vectored(
                self: ::std::pin::Pin<&mut Self>,
                cx: &mut ::std::task::Context<'_>,
                bufs: &[::std::io::IoSlice<'_>],
            ) -> ::std::task::Poll<::std::io::Result<usize>> {
                self.get_mut().$($field).+.poll_write_vectored(cx, bufs)
            }

            fn poll_flush(
                self: ::std::pin::Pin<&mut Self>,
                _cx: &mut ::std::task::Context<'_>,
            ) -> ::std::task::Poll<::std::io::Result<()>> {
                // Nothing is buffered in user space.
                ::std::task::Poll::Ready(Ok(()))
            }

            /// Closes the writing direction (like `WriteStream::shutdown_write`).
            fn poll_close(
                self: ::std::pin::Pin<&mut Self>,
                _cx: &mut ::std::task::Context<'_>,
            ) -> ::std::task::Poll<::std::io::Result<()>> {
                ::std::task::Poll::Ready(self.get_mut().$($field).+.close_write())
            }
        }
    };
}

pub(crate) use fd_stream_impls;

#[cfg(test)]
mod tests {
    use std::os::fd::RawFd;
    use std::os::unix::net::UnixStream;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    use super::*;
    use crate::{Flavor, Runtime};

    /// A Unix stream socket that counts the `write` calls made on it.
    struct Counting {
        socket: UnixStream,
        writes: AtomicUsize,
    }

    impl AsRawFd for Counting {
        fn as_raw_fd(&self) -> RawFd {
            self.socket.as_raw_fd()
        }
    }

    impl Write for &Counting {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.writes.fetch_add(1, Ordering::SeqCst);
            (&self.socket).write(buf)
        }

        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    fn current_thread() -> Runtime {
        Runtime::builder()
            .flavor(Flavor::CurrentThread)
            .build()
            .unwrap()
    }

    /// A write that took fewer bytes than offered filled the send buffer: the next write waits
    /// for room without first trying (and failing with `WouldBlock`).
    #[test]
    fn a_short_write_waits_for_room_without_a_failing_write() {
        current_thread().block_on(async {
            let (ours, mut peer) = UnixStream::pair().unwrap();
            ours.set_nonblocking(true).unwrap();
            let counting = Counting {
                socket: ours,
                writes: AtomicUsize::new(0),
            };
            let fd = Arc::new(AsyncFd::new(counting).unwrap());
            let mut writer = FdWriter::new(fd.clone());
            let data = vec![7u8; 16 << 20];
            let first = writer.write(&data).await.unwrap();
            assert!(first < data.len(), "the send buffer took all {first} bytes");
            assert_eq!(fd.get_ref().writes.load(Ordering::SeqCst), 1);
            let watched = fd.clone();
            // Borrowed, so the peer stays open until the second write is done.
            let peer = &mut peer;
            crate::nursery(|n| async move {
                n.spawn(async move {
                    let more = writer.write(&data[first..]).await?;
                    assert!(more > 0);
                    Ok::<_, io::Error>(())
                })?;
                // The writer is parked until there is room: no second, failing write.
                crate::testing::wait_all_tasks_blocked().await?;
                assert_eq!(watched.get_ref().writes.load(Ordering::SeqCst), 1);
                let mut sink = vec![0u8; first];
                peer.read_exact(&mut sink)?;
                Ok::<_, io::Error>(())
            })
            .await
            .unwrap();
            assert_eq!(fd.get_ref().writes.load(Ordering::SeqCst), 2);
        });
    }

    /// The end of stream that arrived with the last data is read after a short read: the
    /// reader does not forget the readiness and wait for an event that already came.
    #[test]
    fn the_end_of_stream_after_a_short_read_is_read_at_once() {
        current_thread().block_on(async {
            let (ours, mut peer) = UnixStream::pair().unwrap();
            ours.set_nonblocking(true).unwrap();
            let fd = Arc::new(AsyncFd::new(ours).unwrap());
            let mut reader = FdReader::new(fd);
            peer.write_all(b"last words").unwrap();
            drop(peer);
            let mut buf = [0u8; 64];
            assert_eq!(reader.read(&mut buf).await.unwrap(), 10);
            let end = crate::fail_after(Duration::from_secs(10), reader.read(&mut buf)).await;
            assert_eq!(end.unwrap().unwrap(), 0);
        });
    }
}
