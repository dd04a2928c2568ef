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

/// Takes a pipe end back from the reactor, blocking again (the next process expects a plain
/// descriptor: a non-blocking standard input makes `sort`'s reads fail), as a [`sp::Stdio`].
fn into_stdio(fd: Arc<AsyncFd<File>>, name: &str) -> io::Result<sp::Stdio> {
    let fd = Arc::try_unwrap(fd).map_err(|_| {
        io::Error::other(format!(
            "the child's {name} is still in use by a read or write in flight; finish it first"
        ))
    })?;
    Ok(sp::Stdio::from(fd.into_blocking()?))
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

    /// Hands this pipe to another child, as its standard output: the two processes then talk
    /// directly (`b | a`, with `a` spawned first with `Stdio::piped()` stdin), without this
    /// process copying the bytes. Data this end already wrote stays in the pipe.
    ///
    /// # Errors
    /// `BrokenPipe` if this end was closed; an OS error if the pipe cannot be made blocking.
    ///
    /// ```
    /// use trellis::process::{Command, Stdio};
    ///
    /// trellis::run(async {
    ///     let mut sort = Command::new("sort").stdin(Stdio::piped()).stdout(Stdio::piped()).spawn()?;
    ///     let into_sort = sort.stdin.take().unwrap().into_stdio()?;
    ///     let mut printf = Command::new("printf").arg("b\\na\\n").stdout(into_sort).spawn()?;
    ///     printf.wait().await?;
    ///     assert_eq!(sort.wait_with_output().await?.stdout, b"a\nb\n");
    ///     Ok::<_, std::io::Error>(())
    /// })
    /// .unwrap();
    /// ```
    pub fn into_stdio(mut self) -> io::Result<sp::Stdio> {
        match self.writer.take() {
            Some(writer) => into_stdio(writer.fd, "stdin"),
            None => Err(io::Error::new(
                io::ErrorKind::BrokenPipe,
                "the child's stdin was closed: there is no pipe left to hand to another child",
            )),
        }
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

    /// Hands this pipe to another child, as its standard input: a pipeline `a | b` whose
    /// processes talk directly, without this process copying the bytes. What `a` wrote and
    /// nobody read yet stays in the pipe for `b`. Also `Stdio::try_from(stdout)`.
    ///
    /// # Errors
    /// An OS error if the pipe cannot be made blocking again (the next process expects a plain
    /// descriptor).
    ///
    /// ```
    /// use trellis::process::{Command, Stdio};
    ///
    /// trellis::run(async {
    ///     let mut printf = Command::new("printf").arg("b\\na\\n").stdout(Stdio::piped()).spawn()?;
    ///     let from_printf = printf.stdout.take().unwrap().into_stdio()?;
    ///     let sorted = Command::new("sort").stdin(from_printf).output().await?;
    ///     printf.wait().await?;
    ///     assert_eq!(sorted.stdout, b"a\nb\n");
    ///     Ok::<_, std::io::Error>(())
    /// })
    /// .unwrap();
    /// ```
    pub fn into_stdio(self) -> io::Result<sp::Stdio> {
        into_stdio(self.reader.fd, "stdout")
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

    /// Hands this pipe to another child, as its standard input (`a 2>&1 >/dev/null | b` in
    /// shell terms), as [`ChildStdout::into_stdio`] does. Also `Stdio::try_from(stderr)`.
    ///
    /// # Errors
    /// An OS error if the pipe cannot be made blocking again.
    ///
    /// ```
    /// use trellis::process::{Command, Stdio};
    ///
    /// trellis::run(async {
    ///     let mut sh = Command::new("sh").args(["-c", "echo oops >&2"]).stderr(Stdio::piped()).spawn()?;
    ///     let errors = sh.stderr.take().unwrap().into_stdio()?;
    ///     let shouted = Command::new("tr").args(["a-z", "A-Z"]).stdin(errors).output().await?;
    ///     sh.wait().await?;
    ///     assert_eq!(shouted.stdout, b"OOPS\n");
    ///     Ok::<_, std::io::Error>(())
    /// })
    /// .unwrap();
    /// ```
    pub fn into_stdio(self) -> io::Result<sp::Stdio> {
        into_stdio(self.reader.fd, "stderr")
    }
}

macro_rules! try_from_pipe {
    ($($ty:ident),*) => {$(
        #[doc = concat!(
            "The pipe as another child's standard stream: [`into_stdio`](",
            stringify!($ty),
            "::into_stdio)."
        )]
        ///
        /// ```
        /// use trellis::process::{Command, Stdio};
        ///
        /// trellis::run(async {
        ///     let mut echo = Command::new("echo").arg("three words here").stdout(Stdio::piped()).spawn()?;
        ///     let stdin = Stdio::try_from(echo.stdout.take().unwrap())?;
        ///     let counted = Command::new("wc").arg("-w").stdin(stdin).output().await?;
        ///     echo.wait().await?;
        ///     assert_eq!(String::from_utf8_lossy(&counted.stdout).trim(), "3");
        ///     Ok::<_, std::io::Error>(())
        /// })
        /// .unwrap();
        /// ```
        impl TryFrom<$ty> for sp::Stdio {
            type Error = io::Error;

            fn try_from(pipe: $ty) -> io::Result<sp::Stdio> {
                pipe.into_stdio()
            }
        }
    )*};
}
try_from_pipe!(ChildStdin, ChildStdout, ChildStderr);

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
