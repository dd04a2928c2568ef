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
        self.fd
            .poll_io(Direction::Read, &mut self.waiter, cx, |mut s| s.read(buf))
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
        self.fd.ready(Direction::Write, |mut s| s.write(buf)).await
    }

    pub(crate) fn poll_write(
        &mut self,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.fd
            .poll_io(Direction::Write, &mut self.waiter, cx, |mut s| s.write(buf))
    }

    pub(crate) fn poll_write_vectored(
        &mut self,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.fd
            .poll_io(Direction::Write, &mut self.waiter, cx, |mut s| {
                s.write_vectored(bufs)
            })
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
