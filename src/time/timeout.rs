//! Drop-style timeouts: at the deadline the future is dropped, not cancelled.
//!
//! `move_on_after`/`fail_after` cancel: the code inside sees `Cancelled` at its next trellis
//! operation and may clean up, which is what trellis code wants. A stateful foreign codec (a
//! websocket, a TLS stream, a framed reader) usually treats any error from its transport as
//! fatal, so a read that fails with `Cancelled` kills the connection. Dropping the pending
//! `next()` future instead, as tokio's `timeout` does, leaves the codec as it was: its pending
//! read consumed nothing and it can be polled again.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use super::{sleep, sleep_until, Sleep};
use crate::error::TimedOut;

/// Runs `future` for at most `duration`; at the deadline the future is *dropped* and the result
/// is `Err(TimedOut)`. The code inside never sees a cancellation: pick this for a stateful
/// foreign codec whose transport errors are fatal, and [`fail_after`](crate::fail_after) for
/// trellis code, which should get the chance to clean up.
///
/// Cancellation of the enclosing scope still reaches the future as usual (its trellis
/// operations fail with `Cancelled`); only the deadline drops it.
///
/// ```
/// use std::time::Duration;
///
/// trellis::run(async {
///     let out = trellis::timeout(Duration::from_millis(5), std::future::pending::<()>()).await;
///     assert_eq!(out, Err(trellis::TimedOut));
///     let out = trellis::timeout(Duration::from_secs(5), async { 7 }).await;
///     assert_eq!(out, Ok(7));
/// });
/// ```
pub fn timeout<F: Future>(duration: Duration, future: F) -> Timeout<F> {
    Timeout::new(sleep(duration), future)
}

/// Like [`timeout`], with the deadline as a point in time.
///
/// ```
/// use std::time::Duration;
///
/// trellis::run(async {
///     let deadline = trellis::now() + Duration::from_millis(5);
///     let out = trellis::timeout_at(deadline, std::future::pending::<()>()).await;
///     assert_eq!(out, Err(trellis::TimedOut));
/// });
/// ```
pub fn timeout_at<F: Future>(deadline: Instant, future: F) -> Timeout<F> {
    Timeout::new(sleep_until(deadline), future)
}

pin_project_lite::pin_project! {
    /// Future of [`timeout`] and [`timeout_at`].
    ///
    /// ```
    /// use std::time::Duration;
    /// use trellis::Timeout;
    ///
    /// trellis::run(async {
    ///     let deadline = trellis::now() + Duration::from_millis(5);
    ///     let slow: Timeout<_> = trellis::timeout_at(deadline, std::future::pending::<()>());
    ///     assert_eq!(slow.await, Err(trellis::TimedOut));
    ///     let fast = trellis::timeout(Duration::from_secs(60), async { 3 });
    ///     assert_eq!(fast.await, Ok(3));
    /// });
    /// ```
    #[must_use = "futures do nothing unless awaited"]
    pub struct Timeout<F> {
        #[pin]
        future: Option<F>,
        // `None` once the enclosing scope's cancellation ended the timer: from then on only the
        // future decides (it sees the same cancellation).
        timer: Option<Sleep>,
    }
}

impl<F: Future> Timeout<F> {
    fn new(timer: Sleep, future: F) -> Self {
        Timeout {
            future: Some(future),
            timer: Some(timer),
        }
    }
}

impl<F: Future> Future for Timeout<F> {
    type Output = Result<F::Output, TimedOut>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        let future = this
            .future
            .as_mut()
            .as_pin_mut()
            .expect("Timeout polled after it completed");
        if let Poll::Ready(out) = future.poll(cx) {
            this.future.set(None);
            return Poll::Ready(Ok(out));
        }
        if let Some(timer) = this.timer.as_mut() {
            match Pin::new(timer).poll(cx) {
                Poll::Ready(Ok(())) => {
                    this.future.set(None);
                    return Poll::Ready(Err(TimedOut));
                }
                Poll::Ready(Err(_cancelled)) => *this.timer = None,
                Poll::Pending => {}
            }
        }
        Poll::Pending
    }
}
