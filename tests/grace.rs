//! Grace periods (contract B3): once cancelled, code gets the grace period to finish
//! cooperatively, foreign waits included; then what is left is dropped as in a forced teardown
//! (N11), and the scope says so. A shield keeps its body from it (B4). Virtual time, both
//! flavours; drop counters prove what was dropped and when.

mod common;

use std::time::Duration;

use common::*;
use trellis::{
    move_on_after, nursery, sleep, sleep_forever, CancelScope, Cancelled, Error, Flavor, Runtime,
};

/// A runtime of `flavor` on an autojumping mock clock, with `grace` as its default.
fn runtime_with(flavor: Flavor, grace: Option<Duration>) -> Runtime {
    autojump_builder(flavor)
        .grace_period(grace)
        .build()
        .unwrap()
}

/// Cleanup that takes `cleanup` (shielded from the cancellation it follows), owning a guard.
async fn slow_cleanup(drops: DropCounter, cleanup: Duration, log: Log) -> Result<(), Cancelled> {
    let _guard = drops.guard();
    let t0 = trellis::now();
    let r = sleep_forever().await;
    CancelScope::new().shielded(true).run(sleep(cleanup)).await;
    log.push(format!("cleanup finished after {:?}", trellis::now() - t0));
    r.map(|_| ())
}

// B3: code still waiting when the grace period ends (here in a foreign wait, which without a
// grace period would have been dropped at once, B1) is dropped then; the scope's outcome is its
// cancellation, and it says the grace period ran out.
#[test]
fn code_still_waiting_when_the_grace_period_ends_is_dropped() {
    for flavor in FLAVORS {
        runtime_with(flavor, None).block_on(async move {
            let t0 = trellis::now();
            let drops = DropCounter::new();
            let guard = drops.guard();
            let scope = CancelScope::with_timeout(secs(1)).with_grace_period(Some(secs(2)));
            let out = scope
                .run(async move {
                    let _guard = guard;
                    std::future::pending::<()>().await;
                })
                .await;
            assert_eq!(out, None, "{flavor:?}");
            assert_eq!(
                since(t0),
                secs(3),
                "{flavor:?}: cancelled at 1 s, grace 2 s"
            );
            assert_eq!(drops.count(), 1, "{flavor:?}");
            assert!(scope.grace_expired(), "{flavor:?}");
        });
    }
}

// B3: cleanup within the grace period finishes normally; nothing is forced.
#[test]
fn cleanup_within_the_grace_period_finishes() {
    for flavor in FLAVORS {
        runtime_with(flavor, None).block_on(async move {
            let t0 = trellis::now();
            let drops = DropCounter::new();
            let log = Log::new();
            let scope = CancelScope::with_timeout(secs(1)).with_grace_period(Some(secs(2)));
            let out = scope
                .run(slow_cleanup(drops.clone(), ms(500), log.clone()))
                .await;
            assert_eq!(out, None, "{flavor:?}");
            assert_eq!(since(t0), ms(1500), "{flavor:?}");
            assert_eq!(
                log.take(),
                [format!("cleanup finished after {:?}", ms(1500))]
            );
            assert!(!scope.grace_expired(), "{flavor:?}");
        });
    }
}

// B3 with B1: with a grace period, a foreign wait is not dropped at once: a foreign future that
// completes within the grace period delivers its value.
#[test]
fn a_foreign_wait_gets_the_grace_period_too() {
    for flavor in FLAVORS {
        runtime_with(flavor, None).block_on(async move {
            let t0 = trellis::now();
            let (tx, rx) = futures_oneshot();
            let out = nursery(|n| async move {
                n.spawn(async move {
                    sleep(ms(1500)).await?;
                    tx.send(42);
                    Ok(())
                })?;
                let scope = CancelScope::with_timeout(secs(1)).with_grace_period(Some(secs(2)));
                let got = scope.run(async move { Ok::<_, Error>(rx.await) }).await;
                Ok::<_, Error>((got, scope.grace_expired()))
            })
            .await
            .unwrap();
            assert!(matches!(out, (Some(Ok(42)), false)), "{flavor:?}: {out:?}");
            assert_eq!(since(t0), ms(1500), "{flavor:?}");
        });
    }
}

// B3 for a nursery, with the runtime's default grace period: a task in a foreign wait that
// ends within it finishes, one that does not is dropped when it ends, and a task's shielded
// cleanup (B4) runs to its end.
#[test]
fn the_runtime_default_grace_period_ends_a_nurserys_waiting_tasks() {
    for flavor in FLAVORS {
        runtime_with(flavor, Some(secs(3))).block_on(async move {
            let t0 = trellis::now();
            let drops = DropCounter::new();
            let log = Log::new();
            let (d, l) = (drops.clone(), log.clone());
            let (tx, rx) = futures_oneshot();
            let out = nursery(|n| async move {
                n.spawn(as_task(slow_cleanup(d.clone(), secs(2), l.clone())))?;
                let l2 = l.clone();
                n.spawn(async move {
                    let got = rx.await;
                    l2.push(format!("foreign wait got {got} at {:?}", since(t0)));
                    Ok(())
                })?;
                n.spawn(async move {
                    // Sends at 2 s, within the grace period (shielded: the nursery is
                    // cancelled at 1 s).
                    CancelScope::new().shielded(true).run(sleep(secs(2))).await;
                    tx.send(7);
                    Ok(())
                })?;
                let guard = d.guard();
                n.spawn(async move {
                    let _guard = guard;
                    std::future::pending::<()>().await;
                    Ok(())
                })?;
                sleep(secs(1)).await?;
                n.cancel();
                Ok::<_, Error>(())
            })
            .await;
            out.unwrap();
            assert_eq!(
                since(t0),
                secs(4),
                "{flavor:?}: cancelled at 1 s, grace 3 s"
            );
            let mut events = log.take();
            events.sort();
            assert_eq!(
                events,
                [
                    format!("cleanup finished after {:?}", secs(3)),
                    format!("foreign wait got 7 at {:?}", secs(2)),
                ],
                "{flavor:?}"
            );
            assert_eq!(drops.count(), 2, "{flavor:?}");
        });
    }
}

// B4: a shield keeps its body from an outer grace period: the shielded work runs to its end
// (at 5 s), and only then does the scope around it end.
#[test]
fn a_shield_keeps_its_body_from_the_grace_period() {
    for flavor in FLAVORS {
        runtime_with(flavor, None).block_on(async move {
            let t0 = trellis::now();
            let log = Log::new();
            let l = log.clone();
            let scope = CancelScope::with_timeout(secs(1)).with_grace_period(Some(secs(1)));
            let out = scope
                .run(async move {
                    CancelScope::new().shielded(true).run(sleep(secs(5))).await;
                    l.push(format!("shielded work done at {:?}", since(t0)));
                    sleep(secs(1)).await
                })
                .await;
            assert_eq!(out, None, "{flavor:?}");
            assert_eq!(log.take(), [format!("shielded work done at {:?}", secs(5))]);
            assert_eq!(since(t0), secs(5), "{flavor:?}");
        });
    }
}

// Without any grace period (the default), behaviour is trio's: cleanup is waited for however
// long it takes.
#[test]
fn without_a_grace_period_cleanup_is_waited_for() {
    block_on_current(async {
        let t0 = trellis::now();
        let log = Log::new();
        let out = move_on_after(
            secs(1),
            slow_cleanup(DropCounter::new(), secs(60), log.clone()),
        )
        .await;
        assert_eq!(out, None);
        assert_eq!(since(t0), secs(61));
        assert_eq!(
            log.take(),
            [format!("cleanup finished after {:?}", secs(61))]
        );
    });
}

/// A task body's `Result<(), Cancelled>`, in the nursery's error type.
async fn as_task(
    body: impl std::future::Future<Output = Result<(), Cancelled>>,
) -> Result<(), Error> {
    body.await.map_err(Error::from)
}

/// A one-shot channel written without trellis (its receiver is a foreign wait).
fn futures_oneshot() -> (OneshotSender, OneshotReceiver) {
    let shared = std::sync::Arc::new(std::sync::Mutex::new((None, None)));
    (OneshotSender(shared.clone()), OneshotReceiver(shared))
}

type Slot = std::sync::Arc<std::sync::Mutex<(Option<u32>, Option<std::task::Waker>)>>;

struct OneshotSender(Slot);
struct OneshotReceiver(Slot);

impl OneshotSender {
    fn send(self, value: u32) {
        let mut s = self.0.lock().unwrap();
        s.0 = Some(value);
        if let Some(w) = s.1.take() {
            w.wake();
        }
    }
}

impl std::future::Future for OneshotReceiver {
    type Output = u32;
    fn poll(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<u32> {
        let mut s = self.0.lock().unwrap();
        match s.0.take() {
            Some(v) => std::task::Poll::Ready(v),
            None => {
                s.1 = Some(cx.waker().clone());
                std::task::Poll::Pending
            }
        }
    }
}
