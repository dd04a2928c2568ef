//! The reading and writing ends of a descriptor-backed byte stream (sockets, pipes), shared by
//! the public stream types of `net` and `process`.
//!
//! A stream's descriptor lives in an `Arc<AsyncFd>` so it can be split into halves owned by two
//! tasks. Each end has its own [`CancelWaiter`] for the poll-based trait implementations, and the
//! reactor keeps one reader and one writer waker per descriptor, which is why an end is used
//! through `&mut` (one task at a time per direction).

use std::io::{self, IoSlice, Read, Write};
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::task::{Context, Poll};

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

/// Implements [`ReadStream`](crate::io::ReadStream) and `futures_io::AsyncRead` for a type with
/// an `FdReader` field, and/or [`WriteStream`](crate::io::WriteStream) and
/// `futures_io::AsyncWrite` for a type with an `FdWriter` field and a
/// `fn close_write(&mut self) -> io::Result<()>` method.
macro_rules! fd_stream_impls {
    (read: $ty:ty, $field:ident) => {
        impl $crate::io::ReadStream for $ty {
            async fn read(&mut self, buf: &mut [u8]) -> ::std::io::Result<usize> {
                self.$field.read(buf).await
            }
        }

        impl ::futures_io::AsyncRead for $ty {
            fn poll_read(
                self: ::std::pin::Pin<&mut Self>,
                cx: &mut ::std::task::Context<'_>,
                buf: &mut [u8],
            ) -> ::std::task::Poll<::std::io::Result<usize>> {
                self.get_mut().$field.poll_read(cx, buf)
            }
        }
    };
    (write: $ty:ty, $field:ident) => {
        impl $crate::io::WriteStream for $ty {
            async fn write(&mut self, buf: &[u8]) -> ::std::io::Result<usize> {
                self.$field.write(buf).await
            }

            async fn shutdown_write(&mut self) -> ::std::io::Result<()> {
                $crate::checkpoint().await?;
                self.close_write()
            }
        }

        impl ::futures_io::AsyncWrite for $ty {
            fn poll_write(
                self: ::std::pin::Pin<&mut Self>,
                cx: &mut ::std::task::Context<'_>,
                buf: &[u8],
            ) -> ::std::task::Poll<::std::io::Result<usize>> {
                self.get_mut().$field.poll_write(cx, buf)
            }

            fn poll_write_vectored(
                self: ::std::pin::Pin<&mut Self>,
                cx: &mut ::std::task::Context<'_>,
                bufs: &[::std::io::IoSlice<'_>],
            ) -> ::std::task::Poll<::std::io::Result<usize>> {
                self.get_mut().$field.poll_write_vectored(cx, bufs)
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
                ::std::task::Poll::Ready(self.get_mut().close_write())
            }
        }
    };
}

pub(crate) use fd_stream_impls;
