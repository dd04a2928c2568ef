//! The child's standard streams as async streams over the reactor.

use std::fmt;
use std::fs::File;
use std::io;
use std::os::fd::OwnedFd;
use std::process as sp;
use std::sync::Arc;
use std::task::Poll;

use crate::io::{fd_stream_impls, AsyncFd, FdReader, FdWriter};

pub(super) fn pipe_file(fd: OwnedFd) -> io::Result<Arc<AsyncFd<File>>> {
    Ok(Arc::new(AsyncFd::new(File::from(fd))?))
}

/// The child's standard input: an async write stream. Dropping it (or
/// [`shutdown_write`](crate::io::WriteStream::shutdown_write)) closes the pipe, so the child
/// reads end of file.
///
/// ```
/// use trellis::process::{Command, Stdio};
///
/// trellis::run(async {
///     let mut sort = Command::new("sort").stdin(Stdio::piped()).stdout(Stdio::piped()).spawn()?;
///     let mut stdin = sort.stdin.take().unwrap();
///     stdin.write_all(b"pear\napple\n").await?;
///     stdin.close().await?; // `sort` sorts once its input ends
///     assert_eq!(sort.wait_with_output().await?.stdout, b"apple\npear\n");
///     Ok::<_, std::io::Error>(())
/// })
/// .unwrap();
/// ```
pub struct ChildStdin {
    writer: Option<FdWriter<File>>,
}

/// The child's standard output: an async read stream.
///
/// ```
/// use trellis::process::{Command, Stdio};
///
/// trellis::run(async {
///     let mut child = Command::new("printf").arg("abc").stdout(Stdio::piped()).spawn()?;
///     let mut stdout = child.stdout.take().unwrap();
///     let mut buf = [0u8; 8];
///     let mut got = Vec::new();
///     loop {
///         match stdout.read(&mut buf).await? {
///             0 => break, // end of file
///             n => got.extend_from_slice(&buf[..n]),
///         }
///     }
///     assert_eq!(got, b"abc");
///     child.wait().await?;
///     Ok::<_, std::io::Error>(())
/// })
/// .unwrap();
/// ```
pub struct ChildStdout {
    reader: FdReader<File>,
}

/// The child's standard error: an async read stream.
///
/// ```
/// use trellis::io::ReadStream;
/// use trellis::process::{Command, Stdio};
///
/// trellis::run(async {
///     let mut child = Command::new("sh")
///         .args(["-c", "echo warning >&2"])
///         .stderr(Stdio::piped())
///         .spawn()?;
///     let mut stderr = child.stderr.take().unwrap();
///     let mut buf = [0u8; 64];
///     // Through the `ReadStream` trait, as code generic over streams would read it.
///     let n = ReadStream::read(&mut stderr, &mut buf).await?;
///     assert_eq!(&buf[..n], b"warning\n");
///     child.wait().await?;
///     Ok::<_, std::io::Error>(())
/// })
/// .unwrap();
/// ```
pub struct ChildStderr {
    reader: FdReader<File>,
}

impl ChildStdin {
    pub(super) fn new(pipe: sp::ChildStdin) -> io::Result<ChildStdin> {
        Ok(ChildStdin {
            writer: Some(FdWriter::new(pipe_file(OwnedFd::from(pipe))?)),
        })
    }

    fn writer(&mut self) -> io::Result<&mut FdWriter<File>> {
        self.writer.as_mut().ok_or_else(|| {
            io::Error::new(io::ErrorKind::BrokenPipe, "the child's stdin was closed")
        })
    }

    /// Writes some bytes. A checkpoint; a cancelled write wrote nothing.
    pub async fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.writer()?.write(buf).await
    }

    /// Writes all of `buf` (see [`PartialWrite`](crate::io::PartialWrite) for cancellation).
    pub async fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        crate::io::WriteStream::write_all(self, buf).await
    }

    /// Closes the pipe: the child reads end of file. A checkpoint (it yields first, and fails
    /// only if the scope is cancelled before the pipe is closed), with the same shape as
    /// `AsyncWriteExt::close`, so `stdin.close().await?` does the same whichever is in scope.
    ///
    /// # Errors
    /// [`Cancelled`](crate::Cancelled) (inside the `io::Error`) if the enclosing scope is
    /// cancelled; the pipe is then left open.
    pub async fn close(&mut self) -> io::Result<()> {
        crate::checkpoint().await?;
        self.close_now();
        Ok(())
    }

    fn close_now(&mut self) {
        self.writer = None;
    }
}

impl crate::io::WriteStream for ChildStdin {
    async fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        ChildStdin::write(self, buf).await
    }

    async fn shutdown_write(&mut self) -> io::Result<()> {
        crate::checkpoint().await?;
        self.close_now();
        Ok(())
    }
}

impl futures_io::AsyncWrite for ChildStdin {
    fn poll_write(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut().writer() {
            Ok(w) => w.poll_write(cx, buf),
            Err(e) => Poll::Ready(Err(e)),
        }
    }

    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_close(
        self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> Poll<io::Result<()>> {
        self.get_mut().close_now();
        Poll::Ready(Ok(()))
    }
}

impl ChildStdout {
    pub(super) fn new(pipe: sp::ChildStdout) -> io::Result<ChildStdout> {
        Ok(ChildStdout {
            reader: FdReader::new(pipe_file(OwnedFd::from(pipe))?),
        })
    }

    /// Reads some bytes; `Ok(0)` at end of file. A checkpoint; a cancelled read consumed
    /// nothing.
    pub async fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.reader.read(buf).await
    }
}

impl ChildStderr {
    pub(super) fn new(pipe: sp::ChildStderr) -> io::Result<ChildStderr> {
        Ok(ChildStderr {
            reader: FdReader::new(pipe_file(OwnedFd::from(pipe))?),
        })
    }

    /// Reads some bytes; `Ok(0)` at end of file. A checkpoint.
    pub async fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.reader.read(buf).await
    }
}

fd_stream_impls!(read: ChildStdout, reader);
fd_stream_impls!(read: ChildStderr, reader);

macro_rules! debug_pipe {
    ($($ty:ident),*) => {$(
        impl fmt::Debug for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(stringify!($ty))
            }
        }
    )*};
}
debug_pipe!(ChildStdin, ChildStdout, ChildStderr);
