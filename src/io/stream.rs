//! Byte-stream traits shared by sockets, pipes and in-memory streams, and the contract of a
//! write that was cut short.
//!
//! These are trellis's counterpart of trio's `ReceiveStream` / `SendStream` /
//! `HalfCloseableStream`: async methods that are checkpoints, so generic code (protocols, the
//! conformance check in [`testing`](crate::testing)) can run over TCP, Unix sockets, pipes and
//! memory streams alike. The stream types also implement `futures_io::AsyncRead` /
//! `AsyncWrite` for the ecosystem's codecs.
//!
//! Cancellation (principle 4):
//! - a cancelled [`read`](ReadStream::read) consumed nothing: the bytes are still there for the
//!   next read;
//! - a cancelled [`write`](WriteStream::write) wrote nothing: a write is one system call, done
//!   entirely or not at all;
//! - [`write_all`](WriteStream::write_all) is a loop of writes, so a cancellation (or any error)
//!   can arrive after part of the buffer went out. The error then carries a [`PartialWrite`]
//!   that says exactly how many bytes were written, so the caller can resume or give up
//!   knowingly. Its error kind and its cancellation (seen by cancel scopes through
//!   [`AsCancelled`](crate::AsCancelled)) are those of the error that stopped the loop.

use std::error::Error as StdError;
use std::fmt;
use std::future::Future;
use std::io;

/// The reading side of a byte stream.
pub trait ReadStream: Send {
    /// Reads at least one byte into `buf` and returns how many, waiting until some are
    /// available; `Ok(0)` means end of stream (or an empty `buf`). A checkpoint; if cancelled,
    /// nothing was consumed.
    fn read(&mut self, buf: &mut [u8]) -> impl Future<Output = io::Result<usize>> + Send;
}

/// The writing side of a byte stream.
pub trait WriteStream: Send {
    /// Writes some of `buf` (at least one byte unless it is empty) and returns how many, waiting
    /// until the stream can take some. A checkpoint; if cancelled, nothing was written.
    fn write(&mut self, buf: &[u8]) -> impl Future<Output = io::Result<usize>> + Send;

    /// Writes all of `buf`. If an error or a cancellation stops it after some bytes were
    /// written, the error carries a [`PartialWrite`] with the count (see the module docs); if
    /// nothing was written, the error is returned as it is.
    fn write_all(&mut self, buf: &[u8]) -> impl Future<Output = io::Result<()>> + Send {
        async move {
            let mut written = 0;
            while written < buf.len() {
                match self.write(&buf[written..]).await {
                    Ok(0) => {
                        let err = io::Error::new(
                            io::ErrorKind::WriteZero,
                            "the stream accepted no more bytes",
                        );
                        return Err(PartialWrite::wrap(written, err));
                    }
                    Ok(n) => written += n,
                    Err(err) => return Err(PartialWrite::wrap(written, err)),
                }
            }
            Ok(())
        }
    }

    /// Closes the writing direction: the peer reads end of stream once it has read everything
    /// written before. Reading is unaffected. A checkpoint.
    fn shutdown_write(&mut self) -> impl Future<Output = io::Result<()>> + Send;
}

/// A two-way stream that can be split into halves owned by two tasks.
pub trait SplitStream: ReadStream + WriteStream + Sized {
    /// The reading half.
    type ReadHalf: ReadStream + 'static;
    /// The writing half.
    type WriteHalf: WriteStream + 'static;

    /// Splits the stream; each half can move to its own task.
    fn into_split(self) -> (Self::ReadHalf, Self::WriteHalf);
}

/// Carried inside the `io::Error` of a [`WriteStream::write_all`] that stopped after writing
/// part of its buffer: how much was written, and why it stopped.
///
/// When a cancellation stopped the write, the cancel scope that was cancelled absorbs the error
/// (contract C3), so read the count where the error first arrives, inside the scope.
///
/// ```
/// use std::io;
/// use trellis::io::PartialWrite;
///
/// fn report(err: &io::Error) {
///     match PartialWrite::of(err) {
///         Some(partial) => println!("{} bytes went out before: {}", partial.written(), partial.error()),
///         None => println!("nothing was written: {err}"),
///     }
/// }
/// # report(&io::Error::other("x"));
/// ```
#[derive(Debug)]
pub struct PartialWrite {
    written: usize,
    error: io::Error,
}

impl PartialWrite {
    /// `error` as it is when nothing was written, else wrapped with the count (same kind).
    pub(crate) fn wrap(written: usize, error: io::Error) -> io::Error {
        if written == 0 {
            return error;
        }
        io::Error::new(error.kind(), PartialWrite { written, error })
    }

    /// The `PartialWrite` inside `err`, if `err` came from a `write_all` that wrote part of its
    /// buffer.
    pub fn of(err: &io::Error) -> Option<&PartialWrite> {
        err.get_ref().and_then(|e| e.downcast_ref::<PartialWrite>())
    }

    /// Bytes written before the error.
    pub fn written(&self) -> usize {
        self.written
    }

    /// The error (or cancellation) that stopped the write.
    pub fn error(&self) -> &io::Error {
        &self.error
    }

    /// Takes the error out.
    pub fn into_error(self) -> io::Error {
        self.error
    }
}

impl fmt::Display for PartialWrite {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} (after {} bytes were written)",
            self.error, self.written
        )
    }
}

impl StdError for PartialWrite {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        Some(&self.error)
    }
}
