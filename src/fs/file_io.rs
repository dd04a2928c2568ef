//! The poll-based side of [`File`](super::File): what its `futures-io` traits (`AsyncRead`,
//! `AsyncWrite`, `AsyncSeek`) and its async methods share.
//!
//! A file's system calls block, so each read, write or seek runs on a pool thread, one at a time
//! per file, in the order they were asked for. A call goes through two steps:
//! 1. take a token of the thread limiter ([`run_blocking`](crate::thread::run_blocking)'s
//!    default one): a checkpoint; cancelled or dropped here, nothing was asked of the file;
//! 2. run on its thread. From here the call happens whatever the caller does: a thread cannot be
//!    interrupted. The call is kept in the file, not in the caller's future, so a caller that
//!    stops polling (a dropped future, a drop-style timeout) or that is cancelled (the poll then
//!    returns the `Cancelled` error at once) leaves it running, and the next operation on the
//!    file collects its outcome first:
//!    - a read's bytes are kept and handed to the next reads (nothing lost); a read that asked
//!      for more than the next caller's buffer holds keeps the rest the same way;
//!    - a write's bytes were accepted (`poll_write` returns as soon as the thread has them, as
//!      tokio's and async-std's files do); if the write fails, the next operation returns its
//!      error, and `flush`/`close` wait for it;
//!    - a seek moves the position; a `poll_seek` asked again for the same target gets its
//!      result.
//!
//! Bytes kept from a read are ahead of the position the caller sees: a write or a seek relative
//! to the current position first moves back over them.

use std::future::Future;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use crate::cancel::{current_cancellation, CancelWaiter};
use crate::error::Cancelled;
use crate::net::with_context;
use crate::sync::LimiterToken;
use crate::thread::{acquire_default_token, start_with_token};

/// The largest read one call makes on its thread, whatever the caller's buffer.
const MAX_READ: usize = 256 * 1024;

const POLL_NAME: &str = "fs::File (AsyncRead/AsyncWrite/AsyncSeek)";

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

/// What a call on the thread did.
enum Done {
    Read(io::Result<Vec<u8>>),
    Write(io::Result<()>),
    Seek(io::Result<u64>),
}

/// Which kind of call is in flight; a seek remembers the target it was asked for.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Read,
    Write,
    Seek(SeekFrom),
}

/// See the module comment.
#[derive(Default)]
pub(super) struct FileIo {
    /// Bytes a finished read brought in that no read has taken yet, from `read_pos` on.
    read_ahead: Vec<u8>,
    read_pos: usize,
    /// The last read found the end of the file, and no read has reported it yet.
    eof: bool,
    /// Waiting for a thread slot: nothing is asked of the file yet.
    token: Option<BoxFuture<Result<LimiterToken, Cancelled>>>,
    /// The call running on its thread.
    op: Option<(Kind, BoxFuture<Result<Done, Cancelled>>)>,
    /// A call nobody waited for failed: the next operation returns this.
    error: Option<io::Error>,
    /// A seek nobody waited for ended here: for a `poll_seek` that asks again for that target.
    last_seek: Option<(SeekFrom, io::Result<u64>)>,
    /// Wakes a poll waiting for the thread when its scope is cancelled.
    waiter: CancelWaiter,
}

impl FileIo {
    fn unread(&self) -> usize {
        self.read_ahead.len() - self.read_pos
    }

    fn check_cancelled() -> io::Result<()> {
        match current_cancellation(POLL_NAME) {
            Some(c) => Err(c.into()),
            None => Ok(()),
        }
    }

    /// Collects the call in flight, if any. `Pending` while it runs; the `Cancelled` error if the
    /// scope is cancelled meanwhile (the call stays, for the next operation to collect).
    fn poll_op(&mut self, cx: &mut Context<'_>, path: &Path) -> Poll<io::Result<()>> {
        let Some((kind, op)) = &mut self.op else {
            return Poll::Ready(Ok(()));
        };
        let kind = *kind;
        match op.as_mut().poll(cx) {
            Poll::Ready(done) => {
                self.waiter.clear();
                self.op = None;
                self.absorb(kind, done, path);
                Poll::Ready(Ok(()))
            }
            Poll::Pending => match self.waiter.poll_cancelled(POLL_NAME, cx) {
                Poll::Ready(c) => Poll::Ready(Err(c.into())),
                Poll::Pending => Poll::Pending,
            },
        }
    }

    fn absorb(&mut self, kind: Kind, done: Result<Done, Cancelled>, path: &Path) {
        let context = |e: io::Error, what: &str| {
            with_context(e, || format!("could not {what} {}", path.display()))
        };
        match (kind, done) {
            (_, Err(c)) => self.error = Some(c.into()),
            (_, Ok(Done::Read(Ok(data)))) => {
                self.eof = data.is_empty();
                self.read_ahead = data;
                self.read_pos = 0;
            }
            (_, Ok(Done::Read(Err(e)))) => self.error = Some(context(e, "read")),
            (_, Ok(Done::Write(Ok(())))) => {}
            (_, Ok(Done::Write(Err(e)))) => self.error = Some(context(e, "write")),
            (Kind::Seek(target), Ok(Done::Seek(result))) => {
                self.last_seek = Some((target, result.map_err(|e| context(e, "seek in"))));
            }
            (_, Ok(Done::Seek(_))) => unreachable!("a seek's outcome comes from a seek"),
        }
    }

    /// Takes a thread slot, then starts the call `make()` builds on its thread (and forgets what
    /// reads had kept: the caller accounted for it).
    fn poll_start<F>(
        &mut self,
        cx: &mut Context<'_>,
        kind: Kind,
        make: impl FnOnce(usize) -> F,
    ) -> Poll<io::Result<()>>
    where
        F: FnOnce() -> Done + Send + 'static,
    {
        let token = self
            .token
            .get_or_insert_with(|| Box::pin(acquire_default_token()));
        let token = match ready!(token.as_mut().poll(cx)) {
            Ok(token) => token,
            Err(c) => {
                self.token = None;
                return Poll::Ready(Err(c.into()));
            }
        };
        self.token = None;
        let call = make(self.unread());
        self.read_ahead.clear();
        self.read_pos = 0;
        self.eof = false;
        let started = start_with_token(call, token);
        self.op = Some((kind, Box::pin(started.wait(false))));
        Poll::Ready(Ok(()))
    }

    /// Collects the call in flight and returns the error of one nobody waited for.
    pub(super) fn poll_settled(
        &mut self,
        cx: &mut Context<'_>,
        path: &Path,
    ) -> Poll<io::Result<()>> {
        ready!(self.poll_op(cx, path))?;
        match self.error.take() {
            Some(e) => Poll::Ready(Err(e)),
            None => Poll::Ready(Ok(())),
        }
    }

    /// Hands over what reads kept, leaving the position the caller sees where it was.
    pub(super) fn take_read_ahead(&mut self) -> Vec<u8> {
        let mut kept = std::mem::take(&mut self.read_ahead);
        kept.drain(..self.read_pos);
        self.read_pos = 0;
        kept
    }

    pub(super) fn poll_read(
        &mut self,
        cx: &mut Context<'_>,
        buf: &mut [u8],
        file: &Arc<std::fs::File>,
        path: &Path,
    ) -> Poll<io::Result<usize>> {
        Self::check_cancelled()?;
        loop {
            if self.unread() > 0 {
                let n = buf.len().min(self.unread());
                buf[..n].copy_from_slice(&self.read_ahead[self.read_pos..self.read_pos + n]);
                self.read_pos += n;
                return Poll::Ready(Ok(n));
            }
            ready!(self.poll_settled(cx, path))?;
            if self.unread() > 0 {
                continue;
            }
            if std::mem::take(&mut self.eof) || buf.is_empty() {
                return Poll::Ready(Ok(0));
            }
            let file = file.clone();
            let len = buf.len().min(MAX_READ);
            ready!(self.poll_start(cx, Kind::Read, move |_| {
                move || {
                    let mut data = vec![0u8; len];
                    Done::Read((&*file).read(&mut data).map(|n| {
                        data.truncate(n);
                        data
                    }))
                }
            }))?;
        }
    }

    pub(super) fn poll_write(
        &mut self,
        cx: &mut Context<'_>,
        buf: &[u8],
        file: &Arc<std::fs::File>,
        path: &Path,
    ) -> Poll<io::Result<usize>> {
        Self::check_cancelled()?;
        ready!(self.poll_settled(cx, path))?;
        if buf.is_empty() {
            return Poll::Ready(Ok(0));
        }
        let file = file.clone();
        ready!(self.poll_start(cx, Kind::Write, |unread| {
            let data = buf.to_vec();
            move || Done::Write(write_at_caller_position(&file, unread, &data))
        }))?;
        Poll::Ready(Ok(buf.len()))
    }

    pub(super) fn poll_flush(&mut self, cx: &mut Context<'_>, path: &Path) -> Poll<io::Result<()>> {
        Self::check_cancelled()?;
        self.poll_settled(cx, path)
    }

    pub(super) fn poll_seek(
        &mut self,
        cx: &mut Context<'_>,
        pos: SeekFrom,
        file: &Arc<std::fs::File>,
        path: &Path,
    ) -> Poll<io::Result<u64>> {
        Self::check_cancelled()?;
        loop {
            if let Some((target, result)) = self.last_seek.take() {
                if target == pos {
                    return Poll::Ready(result);
                }
            }
            let asked_before = matches!(self.op, Some((Kind::Seek(t), _)) if t == pos);
            ready!(self.poll_settled(cx, path))?;
            if asked_before {
                continue;
            }
            self.last_seek = None;
            let file = file.clone();
            ready!(self.poll_start(cx, Kind::Seek(pos), move |unread| {
                let target = match pos {
                    // Relative to the position the caller sees, behind the bytes kept.
                    SeekFrom::Current(k) => SeekFrom::Current(k - unread as i64),
                    other => other,
                };
                move || Done::Seek((&*file).seek(target))
            }))?;
        }
    }
}

/// Writes `data` at the position the caller sees: `unread` bytes behind the file's own.
fn write_at_caller_position(file: &std::fs::File, unread: usize, data: &[u8]) -> io::Result<()> {
    let mut file = file;
    if unread > 0 {
        file.seek(SeekFrom::Current(-(unread as i64)))?;
    }
    file.write_all(data)
}
