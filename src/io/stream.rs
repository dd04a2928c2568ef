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
///
/// ```
/// use trellis::io::ReadStream;
/// use trellis::testing::memory_stream_pair;
///
/// /// Reads until end of stream, from any trellis stream.
/// async fn read_all(stream: &mut impl ReadStream) -> std::io::Result<Vec<u8>> {
///     let mut out = Vec::new();
///     let mut buf = [0u8; 1024];
///     loop {
///         match stream.read(&mut buf).await? {
///             0 => return Ok(out),
///             n => out.extend_from_slice(&buf[..n]),
///         }
///     }
/// }
///
/// trellis::run(async {
///     let (a, mut b) = memory_stream_pair();
///     let (_r, mut w) = a.into_split();
///     w.write_all(b"all of it").await?;
///     drop(w);
///     assert_eq!(read_all(&mut b).await?, b"all of it");
///     Ok::<_, std::io::Error>(())
/// })
/// .unwrap();
/// ```
pub trait ReadStream: Send {
    /// Reads at least one byte into `buf` and returns how many, waiting until some are
    /// available; `Ok(0)` means end of stream (or an empty `buf`). A checkpoint; if cancelled,
    /// nothing was consumed.
    ///
    /// ```
    /// use trellis::io::{ReadStream, WriteStream};
    /// use trellis::testing::memory_stream_pair;
    ///
    /// trellis::run(async {
    ///     let (mut a, mut b) = memory_stream_pair();
    ///     WriteStream::write_all(&mut a, b"abc").await?;
    ///     let mut buf = [0u8; 2];
    ///     assert_eq!(ReadStream::read(&mut b, &mut buf).await?, 2); // no more than fits
    ///     assert_eq!(ReadStream::read(&mut b, &mut buf).await?, 1);
    ///     Ok::<_, std::io::Error>(())
    /// })
    /// .unwrap();
    /// ```
    fn read(&mut self, buf: &mut [u8]) -> impl Future<Output = io::Result<usize>> + Send;
}

/// The writing side of a byte stream.
///
/// ```
/// use trellis::io::WriteStream;
/// use trellis::testing::memory_stream_pair;
///
/// /// Writes a length-prefixed frame to any trellis stream.
/// async fn send_frame(stream: &mut impl WriteStream, body: &[u8]) -> std::io::Result<()> {
///     stream.write_all(&(body.len() as u32).to_be_bytes()).await?;
///     stream.write_all(body).await
/// }
///
/// trellis::run(async {
///     let (mut a, mut b) = memory_stream_pair();
///     send_frame(&mut a, b"hi").await?;
///     let mut buf = [0u8; 6];
///     let mut got = 0;
///     while got < 6 {
///         got += b.read(&mut buf[got..]).await?;
///     }
///     assert_eq!(buf, [0, 0, 0, 2, b'h', b'i']);
///     Ok::<_, std::io::Error>(())
/// })
/// .unwrap();
/// ```
pub trait WriteStream: Send {
    /// Writes some of `buf` (at least one byte unless it is empty) and returns how many, waiting
    /// until the stream can take some. A checkpoint; if cancelled, nothing was written.
    ///
    /// ```
    /// use trellis::io::WriteStream;
    /// use trellis::testing::memory_stream_pair_with_capacity;
    ///
    /// trellis::run(async {
    ///     let (mut a, _b) = memory_stream_pair_with_capacity(3);
    ///     // Takes what fits now, and says how much.
    ///     assert_eq!(WriteStream::write(&mut a, b"abcdef").await?, 3);
    ///     Ok::<_, std::io::Error>(())
    /// })
    /// .unwrap();
    /// ```
    fn write(&mut self, buf: &[u8]) -> impl Future<Output = io::Result<usize>> + Send;

    /// Writes all of `buf`. If an error or a cancellation stops it after some bytes were
    /// written, the error carries a [`PartialWrite`] with the count (see the module docs); if
    /// nothing was written, the error is returned as it is.
    ///
    /// ```
    /// use trellis::io::WriteStream;
    /// use trellis::testing::memory_stream_pair_with_capacity;
    ///
    /// trellis::run(async {
    ///     let (mut a, mut b) = memory_stream_pair_with_capacity(4);
    ///     trellis::nursery(|n| async move {
    ///         // Needs several writes: the buffer holds 4 bytes at a time.
    ///         n.spawn(async move { WriteStream::write_all(&mut a, b"0123456789").await })?;
    ///         let mut got = Vec::new();
    ///         let mut buf = [0u8; 4];
    ///         while got.len() < 10 {
    ///             let k = b.read(&mut buf).await?;
    ///             got.extend_from_slice(&buf[..k]);
    ///         }
    ///         assert_eq!(got, b"0123456789");
    ///         Ok::<_, std::io::Error>(())
    ///     })
    ///     .await
    ///     .map_err(std::io::Error::from)?;
    ///     Ok::<_, std::io::Error>(())
    /// })
    /// .unwrap();
    /// ```
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
    ///
    /// ```
    /// use trellis::io::WriteStream;
    /// use trellis::testing::memory_stream_pair;
    ///
    /// trellis::run(async {
    ///     let (mut a, mut b) = memory_stream_pair();
    ///     a.write_all(b"done").await?;
    ///     WriteStream::shutdown_write(&mut a).await?;
    ///     let mut buf = [0u8; 8];
    ///     assert_eq!(b.read(&mut buf).await?, 4); // what was written before...
    ///     assert_eq!(b.read(&mut buf).await?, 0); // ...then end of stream
    ///     b.write_all(b"ok").await?; // the other direction still works
    ///     assert_eq!(a.read(&mut buf).await?, 2);
    ///     Ok::<_, std::io::Error>(())
    /// })
    /// .unwrap();
    /// ```
    fn shutdown_write(&mut self) -> impl Future<Output = io::Result<()>> + Send;
}

/// A two-way stream that can be split into halves owned by two tasks.
///
/// ```
/// use trellis::io::{ReadStream, SplitStream, WriteStream};
/// use trellis::testing::memory_stream_pair;
///
/// /// Echoes everything back, reading and writing from two tasks.
/// async fn echo<S: SplitStream>(stream: S) -> std::io::Result<()> {
///     let (mut read, mut write) = stream.into_split();
///     let (tx, rx) = trellis::channel::bounded::<Vec<u8>>(1);
///     trellis::nursery(|n| async move {
///         n.spawn(async move {
///             let mut buf = [0u8; 64];
///             loop {
///                 match read.read(&mut buf).await? {
///                     0 => return Ok(()),
///                     k => tx.send(buf[..k].to_vec()).await.map_err(std::io::Error::other)?,
///                 }
///             }
///         })?;
///         while let Ok(chunk) = rx.recv().await {
///             write.write_all(&chunk).await?;
///         }
///         Ok::<_, std::io::Error>(())
///     })
///     .await
///     .map_err(std::io::Error::from)
/// }
///
/// trellis::run(async {
///     let (mut client, server) = memory_stream_pair();
///     trellis::nursery(|n| async move {
///         n.spawn(echo(server))?;
///         client.write_all(b"round trip").await?;
///         let mut buf = [0u8; 10];
///         let mut got = 0;
///         while got < 10 {
///             got += client.read(&mut buf[got..]).await?;
///         }
///         assert_eq!(&buf, b"round trip");
///         Ok::<_, std::io::Error>(()) // dropping the client ends the echo
///     })
///     .await
///     .map_err(std::io::Error::from)
/// })
/// .unwrap();
/// ```
pub trait SplitStream: ReadStream + WriteStream + Sized {
    /// The reading half.
    type ReadHalf: ReadStream + 'static;
    /// The writing half.
    type WriteHalf: WriteStream + 'static;

    /// Splits the stream; each half can move to its own task.
    ///
    /// ```
    /// use trellis::io::SplitStream;
    /// use trellis::testing::memory_stream_pair;
    ///
    /// trellis::run(async {
    ///     let (a, mut b) = memory_stream_pair();
    ///     let (_read, mut write) = SplitStream::into_split(a);
    ///     write.write_all(b"from a half").await?;
    ///     let mut buf = [0u8; 16];
    ///     let k = b.read(&mut buf).await?;
    ///     assert_eq!(&buf[..k], b"from a half");
    ///     Ok::<_, std::io::Error>(())
    /// })
    /// .unwrap();
    /// ```
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
    ///
    /// ```
    /// use std::time::Duration;
    /// use trellis::io::PartialWrite;
    /// use trellis::testing::memory_stream_pair_with_capacity;
    ///
    /// trellis::run(async {
    ///     // Room for 4 bytes, nobody reading: a 10-byte write_all is cut short by the deadline.
    ///     let (mut a, _b) = memory_stream_pair_with_capacity(4);
    ///     let scope = trellis::CancelScope::with_timeout(Duration::from_millis(5));
    ///     let out = scope
    ///         .run(async {
    ///             let err = a.write_all(b"0123456789").await.unwrap_err();
    ///             // Read the count inside the scope, where the error arrives.
    ///             assert_eq!(PartialWrite::of(&err).unwrap().written(), 4);
    ///             Err::<(), _>(err)
    ///         })
    ///         .await;
    ///     assert!(out.is_none()); // the scope absorbed the cancellation inside the error
    ///     Ok::<_, std::io::Error>(())
    /// })
    /// .unwrap();
    /// ```
    pub fn of(err: &io::Error) -> Option<&PartialWrite> {
        err.get_ref().and_then(|e| e.downcast_ref::<PartialWrite>())
    }

    /// Bytes written before the error.
    ///
    /// ```
    /// use std::time::Duration;
    /// use trellis::io::PartialWrite;
    /// use trellis::testing::memory_stream_pair_with_capacity;
    ///
    /// trellis::run(async {
    ///     // Room for 4 bytes, nobody reading: a 10-byte write_all is cut short by the deadline.
    ///     let (mut a, _b) = memory_stream_pair_with_capacity(4);
    ///     let scope = trellis::CancelScope::with_timeout(Duration::from_millis(5));
    ///     let out = scope
    ///         .run(async {
    ///             let err = a.write_all(b"0123456789").await.unwrap_err();
    ///             let partial = PartialWrite::of(&err).unwrap();
    ///             assert_eq!(partial.written(), 4); // resume from byte 4, or give up
    ///             Err::<(), _>(err)
    ///         })
    ///         .await;
    ///     assert!(out.is_none()); // the scope absorbed the cancellation inside the error
    ///     Ok::<_, std::io::Error>(())
    /// })
    /// .unwrap();
    /// ```
    pub fn written(&self) -> usize {
        self.written
    }

    /// The error (or cancellation) that stopped the write.
    ///
    /// ```
    /// use std::time::Duration;
    /// use trellis::io::PartialWrite;
    /// use trellis::testing::memory_stream_pair_with_capacity;
    ///
    /// trellis::run(async {
    ///     // Room for 4 bytes, nobody reading: a 10-byte write_all is cut short by the deadline.
    ///     let (mut a, _b) = memory_stream_pair_with_capacity(4);
    ///     let scope = trellis::CancelScope::with_timeout(Duration::from_millis(5));
    ///     let out = scope
    ///         .run(async {
    ///             let err = a.write_all(b"0123456789").await.unwrap_err();
    ///             let partial = PartialWrite::of(&err).unwrap();
    ///             // The cause: the scope's cancellation.
    ///             assert!(partial.error().to_string().contains("cancel"));
    ///             Err::<(), _>(err)
    ///         })
    ///         .await;
    ///     assert!(out.is_none()); // the scope absorbed the cancellation inside the error
    ///     Ok::<_, std::io::Error>(())
    /// })
    /// .unwrap();
    /// ```
    pub fn error(&self) -> &io::Error {
        &self.error
    }

    /// Takes the error out.
    ///
    /// ```
    /// use std::time::Duration;
    /// use trellis::io::PartialWrite;
    /// use trellis::testing::memory_stream_pair_with_capacity;
    ///
    /// trellis::run(async {
    ///     // Room for 4 bytes, nobody reading: a 10-byte write_all is cut short by the deadline.
    ///     let (mut a, _b) = memory_stream_pair_with_capacity(4);
    ///     let scope = trellis::CancelScope::with_timeout(Duration::from_millis(5));
    ///     let out = scope
    ///         .run(async {
    ///             let err = a.write_all(b"0123456789").await.unwrap_err();
    ///             let partial = err.into_inner().unwrap().downcast::<PartialWrite>().unwrap();
    ///             let cause: std::io::Error = partial.into_error();
    ///             Err::<(), _>(cause)
    ///         })
    ///         .await;
    ///     assert!(out.is_none()); // the scope absorbed the cancellation inside the error
    ///     Ok::<_, std::io::Error>(())
    /// })
    /// .unwrap();
    /// ```
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
