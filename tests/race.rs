//! The structured race (first result wins, the others are cancelled and waited for, nothing is
//! lost) and the supervising nursery (a task's failure does not cancel its siblings).

mod common;

use std::future::Future;
use std::pin::Pin;

use common::*;
use trellis::channel::{self, SendError};
use trellis::{nursery, race, sleep, sleep_forever, supervisor, AsCancelled, Cancelled, Error};

type Arm<'a> = Pin<Box<dyn Future<Output = Result<&'static str, ArmError>> + Send + 'a>>;
type Borrowing<'a> = Pin<Box<dyn Future<Output = Result<usize, Cancelled>> + 'a>>;

#[derive(Debug)]
enum ArmError {
    Send(SendError<u32>),
    Other(Error),
}

impl AsCancelled for ArmError {
    fn cancelled(&self) -> Option<Cancelled> {
        match self {
            ArmError::Send(e) => e.cancelled(),
            ArmError::Other(e) => e.cancelled(),
        }
    }
}

impl From<Error> for ArmError {
    fn from(e: Error) -> Self {
        ArmError::Other(e)
    }
}

// The first arm to finish wins; the losers are cancelled at the same instant and waited for: a
// losing send hands its value back, a losing receive consumed nothing, a loser in a foreign wait
// is dropped (B1). Both flavours, virtual time.
#[test]
fn the_first_result_wins_and_nothing_is_lost() {
    for flavor in [trellis::Flavor::CurrentThread, trellis::Flavor::MultiThread] {
        let rt = autojump_runtime(flavor);
        rt.block_on(async move {
            let t0 = trellis::now();
            let (tx, _rx) = channel::bounded::<u32>(0); // nobody receives
            let (tx2, rx2) = channel::bounded::<u32>(1);
            let drops = DropCounter::new();
            let guard = drops.guard();
            let arms: [Arm; 4] = [
                Box::pin(async {
                    sleep(secs(2)).await.map_err(Error::from)?;
                    Ok("timer")
                }),
                Box::pin(async {
                    tx.send(7).await.map_err(ArmError::Send)?;
                    Ok("sent")
                }),
                Box::pin(async {
                    rx2.recv().await?;
                    Ok("received")
                }),
                Box::pin(async move {
                    let _guard = guard;
                    std::future::pending::<()>().await;
                    Ok("never")
                }),
            ];
            let raced = race(arms).await;
            assert_eq!(since(t0), secs(2), "{flavor:?}");
            assert_eq!(raced.index, 0, "{flavor:?}");
            assert_eq!(raced.winner.unwrap(), "timer", "{flavor:?}");
            let mut losers = raced.losers;
            losers.sort_by_key(|(i, _)| *i);
            assert_eq!(
                losers.len(),
                2,
                "{flavor:?}: the foreign loser has no output"
            );
            match losers.remove(0) {
                (1, Err(ArmError::Send(e))) => {
                    assert!(e.cancelled().is_some());
                    assert_eq!(e.into_inner(), 7, "{flavor:?}: the losing send's value");
                }
                other => panic!("{flavor:?}: {other:?}"),
            }
            match losers.remove(0) {
                (2, Err(ArmError::Other(e))) => assert!(e.cancelled().is_some(), "{flavor:?}"),
                other => panic!("{flavor:?}: {other:?}"),
            }
            assert_eq!(
                drops.count(),
                1,
                "{flavor:?}: the foreign loser was dropped"
            );
            // The channel whose receive lost still works (its waiter was removed cleanly).
            tx2.send(5).await.unwrap();
            assert_eq!(rx2.recv().await.unwrap(), 5, "{flavor:?}");
        });
    }
}

// A race whose arms borrow from the caller, and whose enclosing scope is cancelled: the first
// arm to end with the cancellation wins, and the caller passes it on.
#[test]
fn a_race_passes_the_enclosing_cancellation_on() {
    block_on_current(async {
        let t0 = trellis::now();
        let local = String::from("borrowed");
        let out = trellis::move_on_after(secs(1), async {
            let arms: [Borrowing; 2] = [
                Box::pin(async {
                    sleep_forever().await?;
                    Ok(local.len())
                }),
                Box::pin(async {
                    sleep(secs(5)).await?;
                    Ok(0)
                }),
            ];
            race(arms).await.winner
        })
        .await;
        assert_eq!(out, None);
        assert_eq!(since(t0), secs(1));
    });
}

// An empty race is refused with a message, not a hang.
#[test]
fn an_empty_race_is_refused() {
    let arms: Vec<std::future::Ready<Result<(), Error>>> = Vec::new();
    let text = panic_text(move || race(arms));
    assert!(text.contains("at least one future"), "{text}");
}

// A supervising nursery: a task's failure does not cancel its siblings; every failure is
// returned at the end. A failure of the body still cancels the tasks.
#[test]
fn a_supervisor_keeps_siblings_running_after_a_failure() {
    block_on_current(async {
        let t0 = trellis::now();
        let log = Log::new();
        let l = log.clone();
        let out = supervisor(|n| async move {
            n.spawn(async {
                sleep(secs(1)).await?;
                Err::<(), _>(Error::InvalidArgument("first"))
            })?;
            n.spawn(async {
                sleep(secs(2)).await?;
                Err::<(), _>(Error::InvalidArgument("second"))
            })?;
            let l2 = l.clone();
            n.spawn(async move {
                sleep(secs(3)).await?;
                l2.push(format!("third finished at {:?}", since(t0)));
                Ok(())
            })?;
            Ok::<_, Error>(())
        })
        .await;
        let errors = out.unwrap_err().into_errors();
        let texts: Vec<String> = errors.iter().map(ToString::to_string).collect();
        assert_eq!(
            texts,
            [
                Error::InvalidArgument("first").to_string(),
                Error::InvalidArgument("second").to_string()
            ]
        );
        assert_eq!(log.take(), [format!("third finished at {:?}", secs(3))]);
        assert_eq!(since(t0), secs(3));

        // The body's failure cancels, as in a plain nursery.
        let out = supervisor(|n| async move {
            n.spawn(async {
                sleep_forever().await?;
                Ok(())
            })?;
            sleep(secs(1)).await?;
            Err::<(), _>(Error::InvalidArgument("body"))
        })
        .await;
        assert_eq!(out.unwrap_err().into_errors().len(), 1);
        assert_eq!(since(t0), secs(4));

        // And a plain nursery still cancels siblings on a failure (N2).
        let out = nursery(|n| async move {
            n.spawn(async {
                sleep(secs(1)).await?;
                Err::<(), _>(Error::InvalidArgument("fails"))
            })?;
            n.spawn(async {
                sleep(secs(10)).await?;
                Ok(())
            })?;
            Ok::<_, Error>(())
        })
        .await;
        assert_eq!(out.unwrap_err().into_errors().len(), 1);
        assert_eq!(since(t0), secs(5));
    });
}
