//! A structured race: the first future to finish wins, the others are cancelled and waited for.
//!
//! The answer to `select!` that keeps trellis's guarantees. Each future runs in a cancel scope
//! of its own, polled by the task that awaits the race (no spawn: the futures may borrow). When
//! one finishes, the scopes of the others are cancelled: a loser parked in a trellis operation
//! gets `Cancelled` there and may clean up (a losing `send` returns its value, a losing `recv`
//! consumes nothing), a loser in a foreign wait is dropped (contract B1). The race returns only
//! once every loser has ended, with the winner's output and what each loser returned.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use crate::cancel::{CancelScope, Exit, Scoped};
use crate::error::Outcome;

/// Runs `futures` concurrently in the calling task; the first to finish wins and the others are
/// cancelled, cooperatively where they can see it, by drop where they cannot. Returns once all
/// have ended. What each loser returned is in [`Raced::losers`], its cancellation's error
/// included, so a losing `send` hands its value back there; a loser dropped in a foreign wait
/// has nothing to return.
///
/// A cancellation of the enclosing scope reaches every future; the first to end with it wins
/// and the caller gets that cancellation to pass on.
///
/// # Panics
/// If `futures` is empty: a race with no runner has no winner.
///
/// ```
/// use std::future::Future;
/// use std::pin::Pin;
/// use std::time::Duration;
/// use trellis::channel;
///
/// type Arm<'a> = Pin<Box<dyn Future<Output = Result<&'static str, trellis::Error>> + 'a>>;
///
/// trellis::run(async {
///     let (tx, rx) = channel::bounded::<&str>(0); // a rendezvous nobody answers
///     let arms: [Arm; 2] = [
///         Box::pin(async {
///             trellis::sleep(Duration::from_millis(2)).await?;
///             Ok("timer")
///         }),
///         Box::pin(async {
///             tx.send("message").await?;
///             Ok("sent")
///         }),
///     ];
///     let raced = trellis::race(arms).await;
///     assert_eq!((raced.index, raced.winner.unwrap()), (0, "timer"));
///     // The send lost: it was cancelled, and sent nothing.
///     assert!(rx.try_recv().is_err());
/// });
/// ```
pub fn race<I>(futures: I) -> Race<I::Item>
where
    I: IntoIterator,
    I::Item: Future,
    <I::Item as Future>::Output: Outcome,
{
    let arms = futures
        .into_iter()
        .map(|future| {
            let scope = CancelScope::new();
            Arm {
                running: Some(Box::pin(scope.run(future))),
                scope,
            }
        })
        .collect::<Vec<_>>();
    assert!(
        !arms.is_empty(),
        "trellis::race needs at least one future: an empty race has no winner"
    );
    Race {
        arms,
        winner: None,
        losers: Vec::new(),
    }
}

/// What a [`race`] ended with.
///
/// ```
/// use std::future::Future;
/// use std::pin::Pin;
/// use trellis::Raced;
///
/// trellis::run(async {
///     type Arm = Pin<Box<dyn Future<Output = Result<u32, trellis::Cancelled>>>>;
///     let arms: Vec<Arm> = vec![
///         Box::pin(async {
///             trellis::sleep_forever().await?;
///             Ok(1)
///         }),
///         Box::pin(async { Ok(2) }),
///     ];
///     let raced: Raced<_> = trellis::race(arms).await;
///     assert_eq!(raced.index, 1);
///     assert_eq!(raced.winner, Ok(2));
///     // The loser ended with its cancellation.
///     assert_eq!(raced.losers.len(), 1);
///     assert_eq!(raced.losers[0].0, 0);
///     assert!(raced.losers[0].1.is_err());
/// });
/// ```
#[derive(Debug)]
pub struct Raced<T> {
    /// Position of the winner among the futures given.
    pub index: usize,
    /// The winner's output.
    pub winner: T,
    /// What the losers returned (usually their cancellation, perhaps with what they held), with
    /// their position, in the order they ended. A loser dropped in a foreign wait is missing.
    pub losers: Vec<(usize, T)>,
}

struct Arm<F: Future> {
    scope: CancelScope,
    /// `None` once ended.
    running: Option<Pin<Box<Scoped<F>>>>,
}

/// Future of [`race`].
///
/// ```
/// use std::future::Future;
/// use std::pin::Pin;
/// use trellis::Race;
///
/// trellis::run(async {
///     type Arm = Pin<Box<dyn Future<Output = Result<&'static str, trellis::Cancelled>>>>;
///     let arms: [Arm; 2] = [Box::pin(async { Ok("a") }), Box::pin(async { Ok("b") })];
///     let race: Race<Arm> = trellis::race(arms);
///     let raced = race.await;
///     assert!(raced.index < 2); // one of them won
/// });
/// ```
#[must_use = "futures do nothing unless awaited"]
pub struct Race<F: Future> {
    arms: Vec<Arm<F>>,
    winner: Option<(usize, F::Output)>,
    losers: Vec<(usize, F::Output)>,
}

impl<F: Future> Unpin for Race<F> {}

impl<F> Future for Race<F>
where
    F: Future,
    F::Output: Outcome,
{
    type Output = Raced<F::Output>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = &mut *self;
        let mut pending = false;
        for index in 0..this.arms.len() {
            let arm = &mut this.arms[index];
            let Some(running) = arm.running.as_mut() else {
                continue;
            };
            let Poll::Ready(exit) = running.as_mut().poll_exit(cx) else {
                pending = true;
                continue;
            };
            arm.running = None;
            match exit {
                Exit::Returned { output, .. } if this.winner.is_none() => {
                    this.winner = Some((index, output));
                    for (other, arm) in this.arms.iter().enumerate() {
                        if other != index {
                            arm.scope.cancel();
                        }
                    }
                }
                // A loser keeps what it returned, its cancellation's error included: a losing
                // `send` hands its value back there.
                Exit::Returned { output, .. } => this.losers.push((index, output)),
                // A loser dropped in a foreign wait has no output.
                Exit::Dropped => {}
            }
        }
        // Losers still running were woken by their cancellation (or a foreign wait's owner was).
        if pending {
            return Poll::Pending;
        }
        let (index, winner) = this.winner.take().expect("checked above");
        Poll::Ready(Raced {
            index,
            winner,
            losers: std::mem::take(&mut this.losers),
        })
    }
}
