//! How a parked operation learns of its cancellation (C1, B2). An operation parked with its own
//! task's waker is woken through its node's owner waker; one polled with any other waker (by a
//! foreign combinator that gives each future a waker of its own, or after its future moved to
//! another task) must still be woken itself, or it would hang, or be dropped as if it were in a
//! foreign wait (B1) instead of seeing `Cancelled` at its checkpoint.

mod common;

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use common::{poll_once, secs, Log, OwnWaker};
use trellis::channel::{bounded, oneshot};
use trellis::{move_on_after, now, nursery, Error};

// B2: a `recv` parked inside a combinator that polls it with its own waker is woken by its
// scope's deadline, sees `Cancelled` and can clean up; it is not dropped as a foreign wait.
// (Deadlock detection off: with it on, every wait registers on its own and the owner waker is
// not used. The watchdog turns a missed wake-up into a failure instead of a hang.)
#[trellis::async_test(detect_deadlocks = false, timeout_ms = 10_000)]
async fn an_operation_polled_with_a_waker_of_its_own_sees_its_cancellation() {
    {
        let (_tx, rx) = bounded::<u32>(1);
        let log = Log::new();
        let l = log.clone();
        let t0 = now();
        let out = move_on_after(
            secs(1),
            OwnWaker::new(async move {
                let got = rx.recv().await;
                l.push(format!(
                    "recv returned {:?}",
                    got.as_ref().err().map(|e| e.to_string())
                ));
                got
            }),
        )
        .await;
        assert!(out.is_none());
        assert_eq!(now() - t0, secs(1));
        assert_eq!(
            log.take(),
            ["recv returned Some(\"operation cancelled (deadline expired)\")"]
        );
    }
}

// C1 after a move: a scope whose `recv` parked while one task polled it, then moved to another
// task, wakes that other task when its deadline passes.
#[trellis::async_test(detect_deadlocks = false, timeout_ms = 10_000)]
async fn a_parked_operation_moved_to_another_task_is_woken_there() {
    {
        let (_tx, rx) = bounded::<u32>(1);
        let (hand_tx, mut hand_rx) = oneshot::<Pin<Box<dyn Future<Output = _> + Send>>>();
        let t0 = now();
        let elapsed = nursery(|n| async move {
            n.spawn(async move {
                let mut work: Pin<Box<dyn Future<Output = _> + Send>> =
                    Box::pin(move_on_after(secs(1), async move { rx.recv().await }));
                assert!(poll_once(work.as_mut()).await.is_pending()); // parked, in this task
                hand_tx.send(work).map_err(|_| Error::BrokenResource)?;
                trellis::sleep(Duration::from_millis(10)).await?;
                Ok::<_, Error>(())
            })?;
            let receiver = n.spawn(async move {
                let work = hand_rx.recv().await?;
                let out = work.await;
                assert!(out.is_none(), "the deadline ended the wait");
                Ok::<_, Error>(now() - t0)
            })?;
            receiver.await
        })
        .await
        .unwrap();
        assert_eq!(elapsed, secs(1));
    }
}

// C1 under real concurrency: tasks on two workers park and wake on a channel through their
// owner wakers while the nursery is cancelled from another task at an arbitrary moment. A
// cancellation that slipped between a task's count and its check would leave that task parked
// for ever: every run must end, 30 times over, with every task gone.
#[test]
fn cancelling_tasks_that_park_and_wake_on_two_workers_never_loses_one() {
    const TASKS: usize = 16;
    for round in 0..30u64 {
        let rt = common::multi_thread(2);
        let ended = rt.block_on(async move {
            let ended = Arc::new(std::sync::atomic::AtomicUsize::new(0));
            let e = ended.clone();
            let out = nursery(|n| async move {
                let (tx, rx) = bounded::<u64>(4);
                for _ in 0..TASKS {
                    let (rx, e) = (rx.clone(), e.clone());
                    n.spawn(async move {
                        let got = async {
                            loop {
                                match rx.recv().await {
                                    Ok(_) => {}
                                    // The producer was cancelled first and its sender dropped.
                                    Err(Error::EndOfChannel) => return Ok(()),
                                    Err(e) => return Err(e),
                                }
                            }
                        };
                        let r: Result<(), Error> = got.await;
                        e.fetch_add(1, Ordering::SeqCst);
                        r
                    })?;
                }
                n.spawn(async move {
                    let mut i = 0;
                    loop {
                        match tx.send(i).await.map_err(|e| e.into_parts().1) {
                            Ok(()) => i += 1,
                            // Every receiver was cancelled first.
                            Err(Error::BrokenResource) => return Ok(()),
                            Err(e) => return Err(e),
                        }
                    }
                })?;
                // Let them run for a while (real time: the workers race), then cancel.
                trellis::sleep(Duration::from_micros(200 + round * 37)).await?;
                n.cancel();
                Ok::<_, Error>(())
            })
            .await;
            assert!(out.is_ok(), "{out:?}");
            ended.load(Ordering::SeqCst)
        });
        assert_eq!(ended, TASKS, "round {round}");
    }
}
