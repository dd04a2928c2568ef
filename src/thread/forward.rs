//! Work a thread hands to the runtime, and the reply it blocks on: what [`from_thread`] (work
//! run inside the task waiting for the thread) and [`Portal`] (work run as a task of its own)
//! have in common.
//!
//! The thread sends a [`Forward`] and blocks on a one-slot channel. The runtime polls the
//! `Forward`, which makes the future, runs it, drops it, then sends the output (or the panic)
//! back. If the `Forward` is dropped unrun (the task stopped waiting, the runtime shut down),
//! the channel closes and the thread gets the error it was given instead.
//!
//! [`from_thread`]: super::from_thread
//! [`Portal`]: super::Portal

use std::future::Future;
use std::panic::{self, AssertUnwindSafe};
use std::pin::Pin;
use std::sync::mpsc::SyncSender;
use std::task::{Context, Poll};

/// Why work sent from a plain thread to the runtime did not run.
///
/// ```
/// use trellis::thread::{from_thread, FromThreadError};
///
/// // A thread that `run_blocking` did not start cannot use `from_thread`.
/// let err = std::thread::spawn(|| from_thread::run_sync(|| 1)).join().unwrap();
/// assert_eq!(err, Err(FromThreadError::NotBlockingThread));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FromThreadError {
    /// The calling thread was not started by `run_blocking`; use a [`Portal`](super::Portal).
    #[error(
        "this thread was not started by trellis::thread::run_blocking; \
         take a trellis::thread::Portal inside the runtime and use it here"
    )]
    NotBlockingThread,
    /// The task that started this thread stopped waiting for it (it was cancelled with
    /// `abandon_on_cancel`, or dropped).
    #[error("the task that started this thread stopped waiting for it")]
    Abandoned,
    /// The runtime has finished (or is shutting down) and runs nothing more.
    #[error("the trellis runtime has finished")]
    RunFinished,
}

/// Blocks on the reply channel; a panic in the work resumes here.
pub(super) fn receive<T>(
    rx: std::sync::mpsc::Receiver<std::thread::Result<T>>,
    gone: FromThreadError,
) -> Result<T, FromThreadError> {
    match rx.recv() {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(payload)) => panic::resume_unwind(payload),
        Err(_) => Err(gone),
    }
}

/// Runs the work and sends its output (or panic) back to the blocked thread.
pub(super) struct Forward<F, Fut, T> {
    make: Option<F>,
    fut: Option<Pin<Box<Fut>>>,
    reply: SyncSender<std::thread::Result<T>>,
}

impl<F, Fut, T> Forward<F, Fut, T> {
    pub(super) fn new(make: F, reply: SyncSender<std::thread::Result<T>>) -> Self {
        Forward {
            make: Some(make),
            fut: None,
            reply,
        }
    }
}

impl<F, Fut, T> Future for Forward<F, Fut, T>
where
    F: FnOnce() -> Fut,
    Fut: Future<Output = T>,
{
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = &mut *self;
        let polled = panic::catch_unwind(AssertUnwindSafe(|| {
            if let Some(make) = this.make.take() {
                this.fut = Some(Box::pin(make()));
            }
            this.fut.as_mut().expect("created above").as_mut().poll(cx)
        }));
        let reply: std::thread::Result<T> = match polled {
            Ok(Poll::Pending) => return Poll::Pending,
            Ok(Poll::Ready(value)) => Ok(value),
            Err(payload) => Err(payload),
        };
        // The future is dropped before the reply goes, so the caller sees its cleanup done. A
        // panic in that drop does not cost the caller a value the work produced: the value is
        // delivered, then the panic resumes here, in the task, like a panic in a detached
        // thread after it handed its result over (the panic hook has reported it).
        let fut = this.fut.take();
        let drop_panic = panic::catch_unwind(AssertUnwindSafe(move || drop(fut))).err();
        // The thread may have given up (it cannot: it blocks until a reply or a drop).
        let _ = this.reply.send(reply);
        if let Some(payload) = drop_panic {
            panic::resume_unwind(payload);
        }
        Poll::Ready(())
    }
}

impl<F, Fut, T> Unpin for Forward<F, Fut, T> {}
