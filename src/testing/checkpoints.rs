//! Asserting where code checkpoints (trio's `assert_checkpoints` / `assert_no_checkpoints`).
//!
//! Every trellis operation that lets the scheduler switch tasks (a yield, or parking until it
//! can go on) first checks for cancellation (principle 3), and tells the runtime it parked.
//! These assertions watch that signal through each poll of the future they wrap, so they work
//! on any future: a trellis operation, user code built from them, or a foreign future (which
//! never checkpoints).
//!
//! The wrapped future is polled under trio's rule (every operation that completes without
//! blocking yields once, whatever `Builder::yield_budget` says): the assertions are about where
//! the code *can* be cancelled and switched, which is the same under any budget.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use crate::cancel::current;
use crate::runtime::context;

/// Runs `future` and panics unless it passed through at least one checkpoint: a trellis
/// operation that yielded to the scheduler or parked, having checked for cancellation first.
/// Returns the future's output.
///
/// ```
/// use trellis::testing::assert_checkpoints;
///
/// trellis::run(async {
///     // A ready channel send still yields once (principle 3).
///     let (tx, rx) = trellis::channel::bounded(1);
///     assert_checkpoints(tx.send(1)).await.unwrap();
///     assert_eq!(rx.try_recv().unwrap(), 1);
/// });
/// ```
///
/// # Panics
/// If `future` completed without a checkpoint, with a message saying so; outside a runtime
/// only if `future` itself does.
#[track_caller]
pub fn assert_checkpoints<F: Future>(future: F) -> AssertCheckpoints<F> {
    AssertCheckpoints {
        future,
        expect: true,
        seen: false,
        caller: std::panic::Location::caller(),
    }
}

/// Runs `future` and panics if it passed through a checkpoint, or did not finish in its first
/// poll: code that must run without giving other tasks a chance in between. Returns the
/// future's output.
///
/// ```
/// use trellis::testing::assert_no_checkpoints;
///
/// trellis::run(async {
///     let lock = trellis::sync::Mutex::new(0);
///     // `try_lock` never waits: no checkpoint.
///     let guard = assert_no_checkpoints(async { lock.try_lock() }).await;
///     assert!(guard.is_ok());
/// });
/// ```
///
/// # Panics
/// If `future` checkpointed or returned `Pending`, with a message saying so.
#[track_caller]
pub fn assert_no_checkpoints<F: Future>(future: F) -> AssertCheckpoints<F> {
    AssertCheckpoints {
        future,
        expect: false,
        seen: false,
        caller: std::panic::Location::caller(),
    }
}

pin_project_lite::pin_project! {
    /// Future of [`assert_checkpoints`] and [`assert_no_checkpoints`].
    ///
    /// ```
    /// use trellis::testing::{assert_checkpoints, AssertCheckpoints};
    ///
    /// trellis::run(async {
    ///     let checked: AssertCheckpoints<_> = assert_checkpoints(trellis::checkpoint());
    ///     assert!(checked.await.is_ok());
    /// });
    /// ```
    #[must_use = "futures do nothing unless awaited"]
    pub struct AssertCheckpoints<F> {
        #[pin]
        future: F,
        expect: bool,
        seen: bool,
        caller: &'static std::panic::Location<'static>,
    }
}

impl<F: Future> Future for AssertCheckpoints<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = self.project();
        let outer = current::begin_park_watch();
        let polled = context::with_every_ready_operation_yielding(|| this.future.poll(cx));
        *this.seen |= current::end_park_watch(outer) != 0;
        match polled {
            Poll::Pending if !*this.expect => panic!(
                "assert_no_checkpoints (at {}): the future did not finish in one poll",
                this.caller
            ),
            Poll::Pending => Poll::Pending,
            Poll::Ready(out) => {
                if *this.expect && !*this.seen {
                    panic!(
                        "assert_checkpoints (at {}): the future finished without a checkpoint",
                        this.caller
                    );
                }
                if !*this.expect && *this.seen {
                    panic!(
                        "assert_no_checkpoints (at {}): the future passed through a checkpoint",
                        this.caller
                    );
                }
                Poll::Ready(out)
            }
        }
    }
}
