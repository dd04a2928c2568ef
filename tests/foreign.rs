//! Cancellation at the border with futures trellis did not write (contracts B1, B2, B4): code
//! parked in a wait no trellis operation registered is dropped when its scope or nursery is
//! cancelled; code parked in a trellis operation (directly, or inside a foreign combinator) is
//! cancelled cooperatively; a shield keeps its body from being dropped. Drop counters prove what
//! was dropped and when, in virtual time, on both flavours.

mod common;

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};

use common::*;
use trellis::{
    fail_after, move_on_after, nursery, sleep, sleep_forever, CancelScope, Cancelled, Error,
    NurseryError, TimedOut,
};

/// A one-shot channel written without trellis: its receiver is a foreign wait.
struct Shared<T> {
    value: Option<T>,
    waker: Option<Waker>,
    receiver_gone: bool,
}

struct ForeignSender<T>(Arc<Mutex<Shared<T>>>);
struct ForeignReceiver<T>(Arc<Mutex<Shared<T>>>);

fn foreign_oneshot<T>() -> (ForeignSender<T>, ForeignReceiver<T>) {
    let shared = Arc::new(Mutex::new(Shared {
        value: None,
        waker: None,
        receiver_gone: false,
    }));
    (ForeignSender(shared.clone()), ForeignReceiver(shared))
}

impl<T> ForeignSender<T> {
    /// Sends; gives the value back if the receiver is gone.
    fn send(self, value: T) -> Result<(), T> {
        let mut s = self.0.lock().unwrap();
        if s.receiver_gone {
            return Err(value);
        }
        s.value = Some(value);
        if let Some(w) = s.waker.take() {
            w.wake();
        }
        Ok(())
    }
}

impl<T> Future for ForeignReceiver<T> {
    type Output = T;
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<T> {
        let mut s = self.0.lock().unwrap();
        match s.value.take() {
            Some(v) => Poll::Ready(v),
            None => {
                s.waker = Some(cx.waker().clone());
                Poll::Pending
            }
        }
    }
}

impl<T> Drop for ForeignReceiver<T> {
    fn drop(&mut self) {
        self.0.lock().unwrap().receiver_gone = true;
    }
}

/// A foreign wait that never ends, owning a guard of `drops`.
fn never(drops: &DropCounter) -> impl Future<Output = ()> + Send + 'static {
    let guard = drops.guard();
    async move {
        let _guard = guard;
        std::future::pending::<()>().await
    }
}

// B1: a deadline ends a foreign wait that never wakes: the body is dropped at the deadline and
// the scope reports its own cancellation (None).
#[test]
fn move_on_after_ends_a_foreign_wait_at_its_deadline() {
    for flavor in FLAVORS {
        autojump_runtime(flavor).block_on(async move {
            let t0 = trellis::now();
            let drops = DropCounter::new();
            let out = move_on_after(ms(20), never(&drops)).await;
            assert_eq!(out, None, "{flavor:?}");
            assert_eq!(since(t0), ms(20), "{flavor:?}");
            assert_eq!(drops.count(), 1, "{flavor:?}");
        });
    }
}

// B1, C6: fail_after around a foreign oneshot whose sender is alive: TimedOut at the deadline;
// the receiver was dropped, so a later send gets its value back.
#[test]
fn fail_after_ends_a_foreign_oneshot_wait() {
    for flavor in FLAVORS {
        autojump_runtime(flavor).block_on(async move {
            let t0 = trellis::now();
            let (tx, rx) = foreign_oneshot::<u32>();
            let out = fail_after(ms(20), async move { Ok::<_, Error>(rx.await) }).await;
            assert!(matches!(out, Err(TimedOut)), "{flavor:?}");
            assert_eq!(since(t0), ms(20), "{flavor:?}");
            assert_eq!(tx.send(7), Err(7), "{flavor:?}: the receiver is gone");
        });
    }
}

// B1: a nursery cancelled while a child awaits a foreign future drops that child and finishes;
// cancelled by the body, by a failing sibling, and by an outer deadline.
#[test]
fn a_cancelled_nursery_drops_a_child_in_a_foreign_wait() {
    for flavor in FLAVORS {
        autojump_runtime(flavor).block_on(async move {
            // The body cancels the nursery.
            let t0 = trellis::now();
            let drops = DropCounter::new();
            let d = drops.clone();
            let out = nursery(|n| async move {
                n.spawn(async move {
                    never(&d).await;
                    Ok(())
                })?;
                sleep(secs(1)).await?;
                n.cancel();
                Ok::<_, Error>(5)
            })
            .await;
            assert_eq!(out.unwrap(), 5, "{flavor:?}");
            assert_eq!(since(t0), secs(1), "{flavor:?}");
            assert_eq!(drops.count(), 1, "{flavor:?}");

            // A sibling fails.
            let drops = DropCounter::new();
            let d = drops.clone();
            let out = nursery(|n| async move {
                n.spawn(async move {
                    never(&d).await;
                    Ok(())
                })?;
                n.spawn(async {
                    sleep(secs(2)).await?;
                    Err::<(), _>(Error::InvalidArgument("boom"))
                })?;
                Ok::<_, Error>(())
            })
            .await;
            match out {
                Err(NurseryError::Failed(errors)) => {
                    assert_eq!(errors.len(), 1, "{flavor:?}");
                    assert!(matches!(errors[0], Error::InvalidArgument("boom")));
                }
                other => panic!("{flavor:?}: {other:?}"),
            }
            assert_eq!(since(t0), secs(3), "{flavor:?}");
            assert_eq!(drops.count(), 1, "{flavor:?}");

            // An outer deadline.
            let drops = DropCounter::new();
            let d = drops.clone();
            let out = move_on_after(
                secs(1),
                nursery(|n| async move {
                    n.spawn(async move {
                        never(&d).await;
                        Ok(())
                    })?;
                    Ok::<_, Error>(())
                }),
            )
            .await;
            assert!(out.is_none(), "{flavor:?}: {out:?}");
            assert_eq!(since(t0), secs(4), "{flavor:?}");
            assert_eq!(drops.count(), 1, "{flavor:?}");
        });
    }
}

// B1: a nursery whose body is in a foreign wait ends at an outer deadline, and by its own
// cancellation (a child cancels it).
#[test]
fn a_nursery_body_in_a_foreign_wait_is_dropped() {
    for flavor in FLAVORS {
        autojump_runtime(flavor).block_on(async move {
            let t0 = trellis::now();
            let drops = DropCounter::new();
            let d = drops.clone();
            let out = move_on_after(
                secs(2),
                nursery(|_n| async move {
                    never(&d).await;
                    Ok::<_, Error>(())
                }),
            )
            .await;
            assert!(out.is_none(), "{flavor:?}");
            assert_eq!(since(t0), secs(2), "{flavor:?}");
            assert_eq!(drops.count(), 1, "{flavor:?}");

            let drops = DropCounter::new();
            let d = drops.clone();
            let out = nursery(|n| async move {
                let canceller = n.clone();
                n.spawn(async move {
                    sleep(secs(1)).await?;
                    canceller.cancel();
                    Ok(())
                })?;
                never(&d).await;
                Ok::<_, Error>(())
            })
            .await;
            match out {
                Err(NurseryError::Cancelled(c)) => assert!(c.is_absorbed(), "{flavor:?}"),
                other => panic!("{flavor:?}: {other:?}"),
            }
            assert_eq!(since(t0), secs(3), "{flavor:?}");
            assert_eq!(drops.count(), 1, "{flavor:?}");
        });
    }
}

// B2: a foreign combinator racing a trellis operation against a foreign wait stays cooperative:
// the trellis operation sees the cancellation and its code cleans up; nothing is dropped early.
#[test]
fn a_foreign_combinator_over_a_trellis_wait_stays_cooperative() {
    for flavor in FLAVORS {
        autojump_runtime(flavor).block_on(async move {
            let t0 = trellis::now();
            let log = Log::new();
            let l = log.clone();
            let drops = DropCounter::new();
            let foreign = never(&drops);
            let out = move_on_after(
                secs(1),
                futures_lite::future::or(
                    async move {
                        let r = sleep_forever().await;
                        l.push(format!("trellis wait ended at {:?}", since(t0)));
                        // Cleanup may still await trellis operations, shielded.
                        CancelScope::new().shielded(true).run(sleep(secs(2))).await;
                        l.push(format!("cleanup done at {:?}", since(t0)));
                        r.map(|_| ())
                    },
                    async move {
                        foreign.await;
                        Ok::<(), Cancelled>(())
                    },
                ),
            )
            .await;
            assert_eq!(out, None, "{flavor:?}");
            assert_eq!(
                log.take(),
                [
                    format!("trellis wait ended at {:?}", secs(1)),
                    format!("cleanup done at {:?}", secs(3)),
                ],
                "{flavor:?}"
            );
            assert_eq!(
                drops.count(),
                1,
                "{flavor:?}: dropped with the scope's body"
            );
        });
    }
}

// B1 with B2: a child in a foreign wait is dropped at once when its nursery is cancelled, while
// its sibling's shielded cleanup still runs to its end; the nursery waits for the cleanup.
#[test]
fn shielded_cleanup_completes_next_to_a_dropped_foreign_sibling() {
    for flavor in FLAVORS {
        autojump_runtime(flavor).block_on(async move {
            let t0 = trellis::now();
            let drops = DropCounter::new();
            let d = drops.clone();
            let log = Log::new();
            let l = log.clone();
            let out = nursery(|n| async move {
                let d2 = d.clone();
                n.spawn(async move {
                    never(&d2).await;
                    Ok(())
                })?;
                let l2 = l.clone();
                n.spawn(async move {
                    if sleep_forever().await.is_err() {
                        CancelScope::new().shielded(true).run(sleep(secs(5))).await;
                        l2.push(format!("cleanup done at {:?}", since(t0)));
                    }
                    Ok(())
                })?;
                sleep(secs(1)).await?;
                n.cancel();
                // Wait (shielded: the body is cancelled) until every task is blocked: the woken
                // child has run by then, and was dropped. No virtual time passes meanwhile.
                CancelScope::new()
                    .shielded(true)
                    .run(trellis::testing::wait_all_tasks_blocked())
                    .await
                    .unwrap()
                    .unwrap();
                l.push(format!(
                    "foreign child dropped: {} at {:?}",
                    d.count(),
                    since(t0)
                ));
                Ok::<_, Error>(())
            })
            .await;
            out.unwrap();
            assert_eq!(
                log.take(),
                [
                    format!("foreign child dropped: 1 at {:?}", secs(1)),
                    format!("cleanup done at {:?}", secs(6)),
                ],
                "{flavor:?}"
            );
            assert_eq!(since(t0), secs(6), "{flavor:?}");
        });
    }
}

// B4: a shield keeps its body from being dropped by a cancellation from outside: the body in a
// foreign wait runs until the foreign future completes (sent by a task at 3 s).
#[test]
fn a_shield_keeps_a_foreign_wait_from_being_dropped() {
    for flavor in FLAVORS {
        autojump_runtime(flavor).block_on(async move {
            let t0 = trellis::now();
            let (tx, rx) = foreign_oneshot::<u32>();
            let out = nursery(|n| async move {
                n.spawn(async move {
                    sleep(secs(3)).await?;
                    tx.send(42).ok();
                    Ok(())
                })?;
                let got = move_on_after(
                    secs(1),
                    CancelScope::new()
                        .shielded(true)
                        .run(async move { Ok::<_, Error>(rx.await) }),
                )
                .await;
                Ok::<_, Error>(got)
            })
            .await
            .unwrap();
            assert!(matches!(out, Some(Some(Ok(42)))), "{flavor:?}: {out:?}");
            assert_eq!(since(t0), secs(3), "{flavor:?}");
        });
    }
}

// B1 leaves trellis waits alone: a task parked in a trellis operation when its nursery is
// cancelled is not dropped; it sees `Cancelled` at its checkpoint (C1) and its cleanup runs.
#[test]
fn a_task_in_a_trellis_wait_is_cancelled_not_dropped() {
    for flavor in FLAVORS {
        autojump_runtime(flavor).block_on(async move {
            let log = Log::new();
            let l = log.clone();
            let out = nursery(|n| async move {
                n.spawn(async move {
                    let r = sleep_forever().await;
                    l.push(format!("saw {:?}", r.map(|_| ()).unwrap_err().reason()));
                    Ok(())
                })?;
                sleep(secs(1)).await?;
                n.cancel();
                Ok::<_, Error>(())
            })
            .await;
            out.unwrap();
            assert_eq!(log.take(), ["saw Explicit(None)"], "{flavor:?}");
        });
    }
}
