//! Cancel scopes: the contract rules C1-C5 and C7-C9, checkpoint semantics, and how a
//! cancellation travels with `?` through the error types people use.
//!
//! Everything runs on a current-thread runtime with a `MockClock` whose autojump threshold is
//! zero, so orders are exact and virtual times are asserted to the nanosecond.

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{current_thread, current_thread_on, multi_thread, secs, Log};
use trellis::testing::{wait_all_tasks_blocked, MockClock};
use trellis::{
    cancel_shielded_checkpoint, checkpoint, checkpoint_if_cancelled, current_effective_deadline,
    lowlevel, now, nursery, sleep, sleep_forever, AsCancelled, CancelReason, CancelScope,
    Cancelled, Error, Nursery, NurseryError, Runtime,
};

// ---------------------------------------------------------------------------------------------
// Helpers

const SECOND: Duration = Duration::from_secs(1);

fn explicit() -> CancelReason {
    CancelReason::Explicit(None)
}

fn explicit_with(why: &str) -> CancelReason {
    CancelReason::Explicit(Some(why.into()))
}

/// The reason of a cancellation returned by a checkpoint; panics if it was not one.
fn reason<T: std::fmt::Debug>(result: &Result<T, Cancelled>) -> CancelReason {
    match result {
        Err(c) => c.reason().clone(),
        Ok(v) => panic!("expected Err(Cancelled), got Ok({v:?})"),
    }
}

/// Turns a scope's output back into the inner result (`None`: absorbed, treated as success).
fn passed<T, E>(out: Option<Result<T, E>>) -> Result<Option<T>, E> {
    match out {
        Some(Ok(v)) => Ok(Some(v)),
        Some(Err(e)) => Err(e),
        None => Ok(None),
    }
}

// ---------------------------------------------------------------------------------------------
// C1: level-triggered cancellation

// contract C1: after cancel(), every checkpoint inside the scope fails, again and again, until
// the code leaves the scope: checkpoint, checkpoint_if_cancelled, sleep, sleep_forever,
// wait_all_tasks_blocked and awaiting a TaskHandle.
#[test]
fn c1_every_checkpoint_fails_repeatedly_until_the_scope_exits() {
    let (rt, _clock) = current_thread();
    rt.block_on(async {
        let t0 = now();
        let result = nursery(|n| async move {
            let mut handle = n.spawn(async {
                sleep(SECOND).await?;
                Ok::<_, Error>(7)
            })?;
            let scope = CancelScope::new();
            let failures = scope
                .run(async {
                    scope.cancel();
                    let mut failures = 0;
                    for _ in 0..3 {
                        assert_eq!(reason(&checkpoint().await), explicit());
                        assert_eq!(reason(&checkpoint_if_cancelled().await), explicit());
                        assert_eq!(reason(&sleep(Duration::ZERO).await), explicit());
                        assert_eq!(reason(&sleep(secs(3600)).await), explicit());
                        assert_eq!(reason(&sleep_forever().await), explicit());
                        assert_eq!(reason(&wait_all_tasks_blocked().await), explicit());
                        match (&mut handle).await {
                            Err(Error::Cancelled(c)) => assert_eq!(c.reason(), &explicit()),
                            other => panic!("awaiting a handle in a cancelled scope: {other:?}"),
                        }
                        failures += 7;
                    }
                    // No virtual time passed: none of these blocked.
                    assert_eq!(now(), t0);
                    Ok::<_, Cancelled>(failures)
                })
                .await;
            // The code swallowed every error and returned Ok: nothing was absorbed.
            assert_eq!(failures, Some(Ok(21)));
            assert!(scope.cancel_called());
            assert!(!scope.cancelled_caught());
            // Outside the scope the same operations work again.
            checkpoint().await?;
            checkpoint_if_cancelled().await?;
            assert_eq!(handle.await?, 7);
            assert_eq!(now() - t0, SECOND);
            Ok::<_, Error>(())
        })
        .await;
        result.unwrap();
    });
}

// contract C1: operations already blocked when the scope is cancelled wake at once (same virtual
// time) and fail: a sleep, a sleep_forever and a TaskHandle await.
#[test]
fn c1_blocked_operations_wake_and_fail_when_cancelled() {
    let (rt, _clock) = current_thread();
    rt.block_on(async {
        let t0 = now();
        let log = Log::default();
        let scope = CancelScope::new();
        let result = nursery(|n| {
            let log = log.clone();
            let scope = scope.clone();
            async move {
                // Runs in the outer nursery, so the cancel below does not reach it.
                let slow = n.spawn(async {
                    sleep(secs(10)).await?;
                    Ok::<_, Error>("slow done")
                })?;
                let canceller = scope.clone();
                n.spawn(async move {
                    sleep(secs(3)).await?;
                    canceller.cancel();
                    Ok(())
                })?;
                let inner_log = log.clone();
                let out = scope
                    .run(nursery(move |inner| async move {
                        let l = inner_log.clone();
                        inner.spawn(async move {
                            let r = sleep(secs(3600)).await;
                            l.push(format!(
                                "sleep {:?} at {:?}",
                                r.as_ref().map_err(|_| "Cancelled"),
                                now() - t0
                            ));
                            r?;
                            Ok(())
                        })?;
                        let l = inner_log.clone();
                        inner.spawn(async move {
                            let r = sleep_forever().await;
                            l.push(format!(
                                "sleep_forever Cancelled={} at {:?}",
                                r.is_err(),
                                now() - t0
                            ));
                            r?;
                            Ok(())
                        })?;
                        let r = slow.await;
                        inner_log.push(format!(
                            "handle cancelled={} at {:?}",
                            matches!(r, Err(Error::Cancelled(_))),
                            now() - t0
                        ));
                        r?;
                        Ok::<_, Error>(())
                    }))
                    .await;
                assert!(out.is_none(), "the scope absorbs the cancellation");
                log.push(format!("scope exited at {:?}", now() - t0));
                Ok::<_, Error>(())
            }
        })
        .await;
        result.unwrap();
        assert!(scope.cancelled_caught());
        assert_eq!(
            log.take(),
            [
                "handle cancelled=true at 3s",
                "sleep Err(\"Cancelled\") at 3s",
                "sleep_forever Cancelled=true at 3s",
                "scope exited at 3s",
            ]
        );
        // The slow task was outside the scope and ran to its end.
        assert_eq!(now() - t0, secs(10));
    });
}

// ---------------------------------------------------------------------------------------------
// C2: cancel() and the two flags

// contract C2: cancel() is idempotent; the first call decides the reason.
#[test]
fn c2_cancel_is_idempotent() {
    let (rt, _clock) = current_thread();
    rt.block_on(async {
        let scope = CancelScope::new();
        let out = scope
            .run(async {
                scope.cancel();
                scope.cancel();
                scope.cancel_with_reason("too late to matter");
                checkpoint().await?;
                Ok::<_, Cancelled>(())
            })
            .await;
        assert_eq!(out, None);
        assert!(scope.cancel_called());
        assert!(scope.cancelled_caught());
        assert_eq!(scope.cancel_reason(), Some(explicit()));
        // Cancelling an exited scope again changes nothing.
        scope.cancel();
        assert!(scope.cancelled_caught());
    });
}

// contract C2: cancel() may be called before the scope is entered; the code in it then starts
// and fails at its first checkpoint.
#[test]
fn c2_cancel_before_entering() {
    let (rt, _clock) = current_thread();
    rt.block_on(async {
        let log = Log::default();
        let scope = CancelScope::new();
        scope.cancel_with_reason("before entry");
        assert!(scope.cancel_called());
        assert!(!scope.cancelled_caught());
        let out = scope
            .run(async {
                log.push("started");
                let r = checkpoint().await;
                log.push(format!(
                    "checkpoint: {:?}",
                    r.as_ref().map_err(Cancelled::reason)
                ));
                r
            })
            .await;
        assert_eq!(out, None);
        assert!(scope.cancelled_caught());
        assert_eq!(
            log.take(),
            [
                "started",
                "checkpoint: Err(Explicit(Some(\"before entry\")))"
            ]
        );
    });
}

// contract C2: cancel() may be called from another OS thread; it wakes a task blocked on the
// runtime (whose only thread is parked in the reactor at that moment).
#[test]
fn c2_cancel_from_another_thread_wakes_a_blocked_task() {
    let (rt, _clock) = current_thread();
    let (go_tx, go_rx) = std::sync::mpsc::channel::<()>();
    let scope = CancelScope::new();
    let remote = scope.clone();
    let thread = std::thread::spawn(move || {
        go_rx.recv().unwrap();
        remote.cancel_with_reason("from a thread");
    });
    rt.block_on(async {
        let t0 = now();
        let result = nursery(|n| {
            let scope = scope.clone();
            async move {
                n.spawn(async move {
                    // Everyone else (the body below) is blocked in sleep_forever now.
                    wait_all_tasks_blocked().await?;
                    go_tx.send(()).unwrap();
                    Ok(())
                })?;
                let out = scope
                    .run(async {
                        let r = sleep_forever().await;
                        assert_eq!(reason(&r), explicit_with("from a thread"));
                        r?;
                        Ok::<(), Cancelled>(())
                    })
                    .await;
                assert_eq!(out, None);
                Ok::<_, Error>(())
            }
        })
        .await;
        result.unwrap();
        assert_eq!(now(), t0);
    });
    thread.join().unwrap();
    assert!(scope.cancelled_caught());
}

// contract C2: the truth table of cancel_called() and cancelled_caught().
#[test]
fn c2_cancel_called_and_cancelled_caught_truth_table() {
    let (rt, _clock) = current_thread();
    rt.block_on(async {
        // Never cancelled.
        let s = CancelScope::new();
        assert_eq!(s.run(checkpoint()).await, Some(Ok(())));
        assert_eq!((s.cancel_called(), s.cancelled_caught()), (false, false));

        // Cancelled; a checkpoint raised and the error reached the scope.
        let s = CancelScope::new();
        let out = s
            .run(async {
                s.cancel();
                checkpoint().await
            })
            .await;
        assert_eq!(out, None);
        assert_eq!((s.cancel_called(), s.cancelled_caught()), (true, true));

        // Cancelled, but the code finished without reaching a checkpoint.
        let s = CancelScope::new();
        let out = s
            .run(async {
                s.cancel();
                Ok::<_, Cancelled>(5)
            })
            .await;
        assert_eq!(out, Some(Ok(5)));
        assert_eq!((s.cancel_called(), s.cancelled_caught()), (true, false));

        // Cancelled; the code saw the error and swallowed it.
        let s = CancelScope::new();
        let out = s
            .run(async {
                s.cancel();
                let _ = checkpoint().await;
                Ok::<_, Cancelled>(6)
            })
            .await;
        assert_eq!(out, Some(Ok(6)));
        assert_eq!((s.cancel_called(), s.cancelled_caught()), (true, false));

        // Cancelled after it exited (trio: "Can't reuse").
        let s = CancelScope::new();
        assert_eq!(s.run(checkpoint()).await, Some(Ok(())));
        s.cancel();
        checkpoint().await.unwrap();
        assert_eq!((s.cancel_called(), s.cancelled_caught()), (true, false));

        // A future whose output carries no error at all (`()`).
        let s = CancelScope::new();
        let out = s
            .run(async {
                s.cancel();
                let _ = sleep_forever().await;
            })
            .await;
        assert_eq!(out, Some(()));
        assert_eq!((s.cancel_called(), s.cancelled_caught()), (true, false));
    });
}

// contract C2 (trio test_cancel_unbound): before a scope is entered, cancel_called() turns true
// once the deadline has passed, and never turns false again, even if the deadline moves later.
#[test]
fn c2_cancel_called_before_entry_follows_the_deadline_and_sticks() {
    let (rt, _clock) = current_thread();
    rt.block_on(async {
        let t0 = now();
        let scope = CancelScope::with_deadline(t0 + SECOND);
        assert!(!scope.cancel_called());
        scope.set_deadline(Some(t0));
        assert!(scope.cancel_called());
        scope.set_deadline(Some(t0 + SECOND));
        assert!(scope.cancel_called(), "a scope never becomes un-cancelled");
        assert_eq!(scope.cancel_reason(), Some(CancelReason::Deadline));
        let out = scope.run(checkpoint()).await;
        assert_eq!(out, None);
        assert!(scope.cancelled_caught());
        assert_eq!(now(), t0);
    });
}

// contract C2, C5 (trio test_basic_timeout): a deadline that passes after the scope exited does
// not make it "cancel called"; one that passes while it runs does.
#[test]
fn c2_c5_basic_timeout() {
    let (rt, clock) = current_thread();
    rt.block_on(async {
        let start = now();
        let scope = CancelScope::new();
        let out = scope
            .run(async {
                assert_eq!(scope.deadline(), None);
                scope.set_deadline(Some(start + SECOND));
                assert_eq!(scope.deadline(), Some(start + SECOND));
                Ok::<_, Cancelled>(())
            })
            .await;
        assert_eq!(out, Some(Ok(())));
        assert!(!scope.cancel_called());
        clock.jump(secs(2));
        checkpoint().await.unwrap();
        checkpoint().await.unwrap();
        checkpoint().await.unwrap();
        assert!(
            !scope.cancel_called(),
            "the deadline passed after the scope exited"
        );

        let start = now();
        let scope = CancelScope::with_deadline(start + SECOND);
        let out = scope
            .run(async {
                clock.jump(secs(2));
                sleep_forever().await?;
                Ok::<(), Cancelled>(())
            })
            .await;
        assert_eq!(out, None);
        assert!(scope.cancel_called());
        assert!(scope.cancelled_caught());

        // Changing the deadline of a running scope.
        let start = now();
        let scope = CancelScope::new();
        let out = scope
            .run(async {
                checkpoint().await.unwrap();
                scope.set_deadline(Some(start + secs(10)));
                checkpoint().await.unwrap();
                clock.jump(secs(5));
                checkpoint().await.unwrap();
                scope.set_deadline(Some(start + SECOND));
                assert_eq!(reason(&checkpoint().await), CancelReason::Deadline);
                assert_eq!(reason(&checkpoint().await), CancelReason::Deadline);
                Ok::<_, Cancelled>(())
            })
            .await;
        assert_eq!(out, Some(Ok(())));
        assert_eq!(now() - start, secs(5));
    });
}

// contract C2: a scope is entered once; a second entry is a bug in the caller and panics with a
// message that says what to do.
#[test]
#[should_panic(expected = "a CancelScope can be entered only once")]
fn c2_a_scope_cannot_be_entered_twice() {
    let (rt, _clock) = current_thread();
    rt.block_on(async {
        let scope = CancelScope::new();
        let _ = scope.run(checkpoint()).await;
        let _ = scope.run(checkpoint()).await;
    });
}

// ---------------------------------------------------------------------------------------------
// C3: which scope absorbs

// contract C3 (trio test_cancel_scope_nesting): with nested cancelled scopes, the outermost
// cancelled one absorbs the cancellation; the inner cancelled one lets it pass.
#[test]
fn c3_the_outermost_cancelled_scope_absorbs() {
    let (rt, _clock) = current_thread();
    rt.block_on(async {
        let (s1, s2, s3) = (CancelScope::new(), CancelScope::new(), CancelScope::new());
        let log = Log::default();
        let out1 = s1
            .run(async {
                let out2 = s2
                    .run(async {
                        let out3 = s3
                            .run(async {
                                s3.cancel_with_reason("s3");
                                s2.cancel_with_reason("s2");
                                let r = sleep_forever().await;
                                // The error names the scope that will absorb it.
                                assert_eq!(reason(&r), explicit_with("s2"));
                                r?;
                                Ok::<(), Cancelled>(())
                            })
                            .await;
                        log.push(format!(
                            "s3 gave Some(Err)={}",
                            matches!(out3, Some(Err(_)))
                        ));
                        passed(out3)?;
                        log.push("not reached");
                        Ok::<(), Cancelled>(())
                    })
                    .await;
                log.push(format!("s2 gave None={}", out2.is_none()));
                Ok::<(), Cancelled>(())
            })
            .await;
        assert_eq!(out1, Some(Ok(())));
        assert_eq!(log.take(), ["s3 gave Some(Err)=true", "s2 gave None=true"]);
        assert_eq!((s3.cancel_called(), s3.cancelled_caught()), (true, false));
        assert_eq!((s2.cancel_called(), s2.cancelled_caught()), (true, true));
        assert_eq!((s1.cancel_called(), s1.cancelled_caught()), (false, false));
    });
}

// contract C3: a shield stops visibility: with a shielded scope between a cancelled outer and a
// cancelled inner scope, the inner one absorbs its own cancellation.
#[test]
fn c3_with_a_shield_between_the_inner_scope_absorbs() {
    let (rt, _clock) = current_thread();
    rt.block_on(async {
        let outer = CancelScope::new();
        let middle = CancelScope::new().shielded(true);
        let inner = CancelScope::new();
        let out = outer
            .run(async {
                outer.cancel_with_reason("outer");
                let out_middle = middle
                    .run(async {
                        let out_inner = inner
                            .run(async {
                                inner.cancel_with_reason("inner");
                                let r = sleep_forever().await;
                                assert_eq!(reason(&r), explicit_with("inner"));
                                r?;
                                Ok::<(), Cancelled>(())
                            })
                            .await;
                        assert_eq!(out_inner, None);
                        // Still shielded from `outer`.
                        checkpoint().await?;
                        Ok::<_, Cancelled>("middle done")
                    })
                    .await;
                assert_eq!(out_middle, Some(Ok("middle done")));
                let r = checkpoint().await;
                assert_eq!(reason(&r), explicit_with("outer"));
                r
            })
            .await;
        assert_eq!(out, None);
        assert_eq!(
            (inner.cancel_called(), inner.cancelled_caught()),
            (true, true)
        );
        assert_eq!(
            (middle.cancel_called(), middle.cancelled_caught()),
            (false, false)
        );
        assert_eq!(
            (outer.cancel_called(), outer.cancelled_caught()),
            (true, true)
        );
    });
}

// contract C3: a scope whose cancellation is pending but that exits without the error reaching
// it does not report it; the cancellation does not leak to the code after it.
#[test]
fn c3_a_pending_cancel_is_not_delivered_after_exit() {
    let (rt, _clock) = current_thread();
    rt.block_on(async {
        let scope = CancelScope::new();
        let out = scope
            .run(async {
                scope.cancel();
                cancel_shielded_checkpoint().await
            })
            .await;
        assert_eq!(out, Some(Ok(())));
        checkpoint().await.unwrap();
        assert!(!scope.cancelled_caught());
    });
}

// ---------------------------------------------------------------------------------------------
// C4: shields

// contract C4 (trio test_cancel_shielding): a shield blocks an outer cancel; a scope inside the
// shield, and the shielded scope itself, can still cancel; the shield can be lowered and raised
// with immediate effect.
#[test]
fn c4_shield_blocks_outer_cancel_but_not_its_own() {
    let (rt, _clock) = current_thread();
    rt.block_on(async {
        let outer = CancelScope::new();
        let inner = CancelScope::new();
        let innerest = CancelScope::new();
        let out = outer
            .run(async {
                let out = inner
                    .run(async {
                        checkpoint().await.unwrap();
                        outer.cancel();
                        assert!(checkpoint().await.is_err());

                        assert!(!inner.shield());
                        inner.set_shield(true);
                        assert!(inner.shield());
                        // The shield protects us from `outer`.
                        checkpoint().await.unwrap();

                        let out = innerest
                            .run(async {
                                innerest.cancel();
                                // ... but not from a scope inside it.
                                checkpoint().await
                            })
                            .await;
                        assert_eq!(out, None);
                        checkpoint().await.unwrap();

                        inner.set_shield(false);
                        assert!(checkpoint().await.is_err());

                        inner.set_shield(true);
                        checkpoint().await.unwrap();
                        // The shield does not protect us from `inner` itself; `inner` absorbs.
                        inner.cancel();
                        checkpoint().await?;
                        Ok::<(), Cancelled>(())
                    })
                    .await;
                assert_eq!(out, None);
                Ok::<(), Cancelled>(())
            })
            .await;
        assert_eq!(out, Some(Ok(())));
        assert!(innerest.cancelled_caught());
        assert!(inner.cancelled_caught());
        assert!(!outer.cancelled_caught());
    });
}

// contract C4: a shielded scope's own deadline still applies inside a cancelled outer scope.
#[test]
fn c4_a_shielded_scope_keeps_its_own_deadline() {
    let (rt, _clock) = current_thread();
    rt.block_on(async {
        let t0 = now();
        let outer = CancelScope::new();
        let shielded = CancelScope::with_deadline(t0 + secs(5)).shielded(true);
        let out = outer
            .run(async {
                outer.cancel();
                let out = shielded
                    .run(async {
                        let r = sleep_forever().await;
                        assert_eq!(reason(&r), CancelReason::Deadline);
                        r?;
                        Ok::<(), Cancelled>(())
                    })
                    .await;
                assert_eq!(out, None);
                assert_eq!(now() - t0, secs(5));
                checkpoint().await
            })
            .await;
        assert_eq!(out, None);
        assert!(shielded.cancelled_caught());
        assert!(outer.cancelled_caught());
    });
}

// contract C4 (trio test_cancel_shield_abort): lowering the shield of a scope inside a cancelled
// outer scope wakes its blocked task at once, and the task gets Cancelled.
#[test]
fn c4_lowering_the_shield_wakes_a_blocked_task_at_once() {
    let (rt, _clock) = current_thread();
    rt.block_on(async {
        let t0 = now();
        let log = Log::default();
        let outer = CancelScope::new();
        let out = outer
            .run(nursery(|n| {
                let log = log.clone();
                let outer = outer.clone();
                async move {
                    outer.cancel();
                    n.cancel_scope().set_shield(true);
                    let l = log.clone();
                    n.spawn(async move {
                        l.push("sleeping");
                        let r = sleep(secs(100)).await;
                        if r.is_err() {
                            l.push(format!("cancelled at {:?}", now() - t0));
                        }
                        r?;
                        Ok(())
                    })?;
                    wait_all_tasks_blocked().await?;
                    assert_eq!(log.take(), ["sleeping"]);
                    sleep(secs(5)).await?;
                    n.cancel_scope().set_shield(false);
                    CancelScope::new()
                        .shielded(true)
                        .run(async {
                            wait_all_tasks_blocked().await?;
                            assert_eq!(log.take(), ["cancelled at 5s"]);
                            Ok::<_, Cancelled>(())
                        })
                        .await
                        .unwrap()?;
                    Ok::<_, Error>(())
                }
            }))
            .await;
        // The task's cancellation came from `outer`: the nursery passes it on, `outer` absorbs.
        assert!(out.is_none());
        assert!(outer.cancelled_caught());
        assert_eq!(now() - t0, secs(5));
    });
}

// contract C4: lowering the shield of a blocked task's own scope (not the nursery's) works the
// same, at an exact virtual time, from another task.
#[test]
fn c4_lowering_the_shield_from_another_task() {
    let (rt, _clock) = current_thread();
    rt.block_on(async {
        let t0 = now();
        let log = Log::default();
        let outer = CancelScope::new();
        let shield = CancelScope::new().shielded(true);
        let result = nursery(|n| {
            let (log, outer, shield) = (log.clone(), outer.clone(), shield.clone());
            async move {
                let (o, s, l) = (outer.clone(), shield.clone(), log.clone());
                n.spawn(async move {
                    let out = o
                        .run(s.run(async {
                            let r = sleep(secs(100)).await;
                            l.push(format!(
                                "sleep {:?} at {:?}",
                                r.as_ref().map_err(Cancelled::reason),
                                now() - t0
                            ));
                            r
                        }))
                        .await;
                    assert_eq!(out, None);
                    Ok(())
                })?;
                sleep(secs(2)).await?;
                outer.cancel_with_reason("outer");
                sleep(secs(3)).await?;
                log.push("lowering the shield");
                shield.set_shield(false);
                Ok::<_, Error>(())
            }
        })
        .await;
        result.unwrap();
        assert_eq!(
            log.take(),
            [
                "lowering the shield",
                "sleep Err(Explicit(Some(\"outer\"))) at 5s"
            ]
        );
        assert!(!shield.cancelled_caught());
        assert!(outer.cancelled_caught());
    });
}

// contract C4: raising the shield while a task is blocked keeps a later outer cancel away from
// it: it sleeps to its end, and the cancellation hits at the first checkpoint after the shield.
#[test]
fn c4_raising_the_shield_while_blocked_protects_the_task() {
    let (rt, _clock) = current_thread();
    rt.block_on(async {
        let t0 = now();
        let log = Log::default();
        let outer = CancelScope::new();
        let shield = CancelScope::new();
        let result = nursery(|n| {
            let (log, outer, shield) = (log.clone(), outer.clone(), shield.clone());
            async move {
                let (o, s, l) = (outer.clone(), shield.clone(), log.clone());
                n.spawn(async move {
                    let out = o
                        .run(async {
                            let out = s
                                .run(async {
                                    let r = sleep(secs(10)).await;
                                    l.push(format!("sleep {:?} at {:?}", r, now() - t0));
                                    r
                                })
                                .await;
                            assert_eq!(out, Some(Ok(())));
                            let r = checkpoint().await;
                            l.push(format!(
                                "checkpoint after the shield: {:?}",
                                r.as_ref().map_err(Cancelled::reason)
                            ));
                            r
                        })
                        .await;
                    assert_eq!(out, None);
                    Ok(())
                })?;
                sleep(secs(2)).await?;
                shield.set_shield(true);
                outer.cancel();
                log.push(format!("cancelled outer at {:?}", now() - t0));
                Ok::<_, Error>(())
            }
        })
        .await;
        result.unwrap();
        assert_eq!(
            log.take(),
            [
                "cancelled outer at 2s",
                "sleep Ok(()) at 10s",
                "checkpoint after the shield: Err(Explicit(None))",
            ]
        );
        assert!(outer.cancelled_caught());
        assert!(!shield.cancel_called());
    });
}

// contract C4: the shield is read when the blocked task runs, not when it was woken: a task
// woken by an outer cancel whose scope is shielded before it gets to run keeps sleeping.
// (trio would already have delivered the Cancelled when the cancel aborted the sleep; trellis
// re-checks at each poll, which is what "takes effect at once" means for a level.)
#[test]
fn c4_shield_raised_before_the_woken_task_runs_keeps_it_asleep() {
    let (rt, _clock) = current_thread();
    rt.block_on(async {
        let t0 = now();
        let log = Log::default();
        let outer = CancelScope::new();
        let shield = CancelScope::new();
        let result = nursery(|n| {
            let (log, outer, shield) = (log.clone(), outer.clone(), shield.clone());
            async move {
                let (o, s, l) = (outer.clone(), shield.clone(), log.clone());
                n.spawn(async move {
                    let out = o
                        .run(s.run(async {
                            let r = sleep(secs(10)).await;
                            l.push(format!("sleep {:?} at {:?}", r, now() - t0));
                            r
                        }))
                        .await;
                    // The sleep ended normally; `outer` saw no error, so it caught nothing.
                    assert_eq!(out, Some(Some(Ok(()))));
                    Ok(())
                })?;
                sleep(secs(2)).await?;
                outer.cancel();
                shield.set_shield(true);
                Ok::<_, Error>(())
            }
        })
        .await;
        result.unwrap();
        assert_eq!(log.take(), ["sleep Ok(()) at 10s"]);
        assert!(!outer.cancelled_caught());
    });
}

// contract C4 (trio test_unshield_while_cancel_propagating, trio#1175): raising the shield of an
// inner scope while an outer cancellation is already travelling out of it does not stop it; the
// outer scope absorbs it.
#[test]
fn c4_raising_the_shield_while_a_cancellation_propagates() {
    let (rt, _clock) = current_thread();
    rt.block_on(async {
        let outer = CancelScope::new();
        let inner = CancelScope::new();
        let out = outer
            .run(async {
                let out = inner
                    .run(async {
                        outer.cancel();
                        let r = checkpoint().await;
                        inner.set_shield(true); // like trio's `finally:` block
                        r
                    })
                    .await;
                passed(out)?;
                Ok::<(), Cancelled>(())
            })
            .await;
        assert_eq!(out, None);
        assert!(outer.cancelled_caught());
        assert!(!inner.cancelled_caught());
    });
}

// contract C4 (trio test_cancel_unbound, "shield before entry"): a shield set before entry
// applies from entry on, and lowering it lets the outer cancel in.
#[test]
fn c4_shield_set_before_entry() {
    let (rt, _clock) = current_thread();
    rt.block_on(async {
        let outer = CancelScope::new();
        let scope = CancelScope::new();
        scope.set_shield(true);
        let out = outer
            .run(async {
                outer.cancel();
                let out = scope
                    .run(async {
                        checkpoint().await.unwrap();
                        scope.set_shield(false);
                        checkpoint().await
                    })
                    .await;
                passed(out)?;
                Ok::<(), Cancelled>(())
            })
            .await;
        assert_eq!(out, None);
        assert!(outer.cancelled_caught());
        assert!(!scope.cancelled_caught());
    });
}

// ---------------------------------------------------------------------------------------------
// C5: deadlines

// contract C5: a scope cancels itself exactly when the clock reaches its deadline.
#[test]
fn c5_a_deadline_fires_at_the_exact_virtual_time() {
    let (rt, _clock) = current_thread();
    rt.block_on(async {
        let t0 = now();
        let odd = Duration::new(7, 123_456_789);
        let scope = CancelScope::with_deadline(t0 + odd);
        let out = scope
            .run(async {
                let r = sleep_forever().await;
                assert_eq!(reason(&r), CancelReason::Deadline);
                r?;
                Ok::<(), Cancelled>(())
            })
            .await;
        assert_eq!(out, None);
        assert_eq!(now() - t0, odd);
        assert!(scope.cancel_called());
        assert!(scope.cancelled_caught());
        assert_eq!(scope.cancel_reason(), Some(CancelReason::Deadline));
        // The scope's timer went with it.
        assert_eq!(lowlevel::statistics().timers, 0);
    });
}

// contract C5: moving the deadline of a scope whose task is blocked takes effect at once:
// later, earlier, into the past, or removing it.
#[test]
fn c5_moving_the_deadline_while_blocked() {
    // (new deadline relative to t0, set at t0 + 2 s) -> when the blocked task is cancelled
    let cases: [(Option<u64>, u64); 4] = [(Some(20), 20), (Some(5), 5), (Some(1), 2), (None, 32)];
    for (new_deadline, expected) in cases {
        let (rt, _clock) = current_thread();
        rt.block_on(async {
            let t0 = now();
            let scope = CancelScope::with_deadline(t0 + secs(10));
            let ended = Arc::new(Mutex::new(None));
            let result = nursery(|n| {
                let (scope, ended) = (scope.clone(), ended.clone());
                async move {
                    let (s, e) = (scope.clone(), ended.clone());
                    n.spawn(async move {
                        let out = s
                            .run(async {
                                let r = sleep_forever().await;
                                *e.lock().unwrap() = Some((now() - t0, r.clone().unwrap_err()));
                                r
                            })
                            .await;
                        assert!(out.is_none());
                        Ok(())
                    })?;
                    sleep(secs(2)).await?;
                    scope.set_deadline(new_deadline.map(|d| t0 + secs(d)));
                    if new_deadline.is_none() {
                        sleep(secs(30)).await?;
                        scope.cancel();
                    }
                    Ok::<_, Error>(())
                }
            })
            .await;
            result.unwrap();
            let (at, err) = ended.lock().unwrap().take().unwrap();
            assert_eq!(at, secs(expected), "new deadline {new_deadline:?}");
            let want = if new_deadline.is_some() {
                CancelReason::Deadline
            } else {
                explicit()
            };
            assert_eq!(err.reason(), &want);
            assert_eq!(lowlevel::statistics().timers, 0);
        });
    }
}

// contract C5: a deadline already past (or equal to now) cancels the scope on entry: the code
// starts, and its first checkpoint fails without any time passing.
#[test]
fn c5_a_past_deadline_cancels_on_entry() {
    let (rt, _clock) = current_thread();
    rt.block_on(async {
        let t0 = now();
        for deadline in [t0 - SECOND, t0] {
            let log = Log::default();
            let scope = CancelScope::with_deadline(deadline);
            let out = scope
                .run(async {
                    log.push("entered");
                    let r = checkpoint_if_cancelled().await;
                    log.push(format!("{:?}", r.as_ref().map_err(Cancelled::reason)));
                    r
                })
                .await;
            assert_eq!(out, None);
            assert_eq!(log.take(), ["entered", "Err(Deadline)"]);
            assert!(scope.cancelled_caught());
        }
        // Moving the deadline of a running scope into the past cancels it at once, too.
        let scope = CancelScope::new();
        let out = scope
            .run(async {
                checkpoint_if_cancelled().await.unwrap();
                scope.set_deadline(Some(now() - SECOND));
                checkpoint_if_cancelled().await
            })
            .await;
        assert_eq!(out, None);
        assert_eq!(now(), t0);
        assert_eq!(lowlevel::statistics().timers, 0);
    });
}

// contract C5: current_effective_deadline() is the minimum of the deadlines of the enclosing
// scopes, up to and including the first shielded one; tasks see the scopes around their
// nursery (N8); a cancelled scope reports a deadline no later than now.
#[test]
fn c5_effective_deadline_is_the_minimum_up_to_the_first_shield() {
    let (rt, _clock) = current_thread();
    rt.block_on(async {
        let t0 = now();
        let at = |s: u64| Some(t0 + secs(s));
        assert_eq!(current_effective_deadline(), None);
        let a = CancelScope::with_deadline(t0 + secs(10));
        a.run(async {
            assert_eq!(current_effective_deadline(), at(10));
            let b = CancelScope::with_deadline(t0 + secs(5));
            b.run(async {
                assert_eq!(current_effective_deadline(), at(5));
                CancelScope::with_deadline(t0 + secs(20))
                    .run(async { assert_eq!(current_effective_deadline(), at(5)) })
                    .await;
                CancelScope::with_deadline(t0 + secs(30))
                    .shielded(true)
                    .run(async {
                        assert_eq!(current_effective_deadline(), at(30));
                        CancelScope::new()
                            .run(async { assert_eq!(current_effective_deadline(), at(30)) })
                            .await;
                        CancelScope::with_deadline(t0 + secs(25))
                            .run(async { assert_eq!(current_effective_deadline(), at(25)) })
                            .await;
                    })
                    .await;
                CancelScope::new()
                    .shielded(true)
                    .run(async { assert_eq!(current_effective_deadline(), None) })
                    .await;
                // Moving an enclosing deadline shows at once.
                b.set_deadline(Some(t0 + secs(3)));
                assert_eq!(current_effective_deadline(), at(3));
                b.set_deadline(None);
                assert_eq!(current_effective_deadline(), at(10));
                // A task spawned in a nursery sees the scopes around the nursery.
                let result = nursery(|n| async move {
                    let h = n.spawn(async { Ok::<_, Error>(current_effective_deadline()) })?;
                    h.await
                })
                .await;
                assert_eq!(result.unwrap(), at(10));
            })
            .await;
        })
        .await;
        let cancelled = CancelScope::new();
        cancelled
            .run(async {
                cancelled.cancel();
                assert_eq!(current_effective_deadline(), Some(now()));
            })
            .await;
        let late = CancelScope::with_deadline(t0 + secs(50));
        late.run(async {
            late.cancel();
            assert_eq!(current_effective_deadline(), Some(now()));
        })
        .await;
    });
}

// contract C5, C2: a deadline set from a task of a *different* runtime arms the timer in the
// runtime the scope lives in (its tree's root), not in the caller's: the blocked task is
// cancelled exactly then, and the other runtime holds no timer.
#[test]
fn c5_a_deadline_set_from_another_runtime_arms_the_scopes_own_runtime() {
    let (rt, _clock) = current_thread();
    rt.block_on(async {
        let t0 = now();
        let scope = CancelScope::new();
        let result = nursery(|n| {
            let scope = scope.clone();
            async move {
                let remote = scope.clone();
                n.spawn(async move {
                    wait_all_tasks_blocked().await?;
                    let other_timers = std::thread::spawn(move || {
                        let (other, _other_clock) = current_thread();
                        other.block_on(async move {
                            remote.set_deadline(Some(t0 + secs(5)));
                            trellis::lowlevel::statistics().timers
                        })
                    })
                    .join()
                    .unwrap();
                    assert_eq!(other_timers, 0, "the timer went to the caller's runtime");
                    assert_eq!(trellis::lowlevel::statistics().timers, 1);
                    Ok(())
                })?;
                let out = scope.run(sleep_forever()).await;
                assert_eq!(out, None, "the deadline ended the sleep");
                Ok::<_, Error>(())
            }
        })
        .await;
        result.unwrap();
        assert_eq!(now() - t0, secs(5));
        assert!(scope.cancelled_caught());
    });
}

// contract C5, C2: a deadline set from another OS thread on a scope that had none arms a timer
// at once; the blocked task is cancelled exactly then.
#[test]
fn c5_a_deadline_set_from_another_thread_takes_effect() {
    let (rt, _clock) = current_thread();
    rt.block_on(async {
        let t0 = now();
        let scope = CancelScope::new();
        let guard = CancelScope::with_deadline(t0 + secs(60));
        let result = nursery(|n| {
            let (scope, guard) = (scope.clone(), guard.clone());
            async move {
                let remote = scope.clone();
                n.spawn(async move {
                    wait_all_tasks_blocked().await?;
                    // Blocking this (only) runtime thread for the join is fine: the other thread
                    // needs nothing from it.
                    std::thread::spawn(move || remote.set_deadline(Some(t0 + secs(5))))
                        .join()
                        .unwrap();
                    Ok(())
                })?;
                let out = guard
                    .run(scope.run(async {
                        let r = sleep_forever().await;
                        assert_eq!(reason(&r), CancelReason::Deadline);
                        r?;
                        Ok::<(), Cancelled>(())
                    }))
                    .await;
                assert_eq!(out, Some(None), "the scope's own deadline ended the sleep");
                Ok::<_, Error>(())
            }
        })
        .await;
        result.unwrap();
        assert_eq!(now() - t0, secs(5));
        assert!(scope.cancelled_caught());
        assert!(!guard.cancel_called());
    });
}

// contract C5, with the timer of a timeout deferred until its code waits: a body that only
// passes schedule points leaves the timer store empty; its first wait arms the deadline, which
// then fires at the exact virtual time.
#[test]
fn c5_a_timeout_arms_its_timer_when_its_code_first_waits() {
    let (rt, _clock) = current_thread();
    rt.block_on(async {
        let t0 = now();
        let out = trellis::move_on_after(SECOND, async {
            checkpoint().await?;
            checkpoint().await?;
            assert_eq!(lowlevel::statistics().timers, 0, "no timer while runnable");
            sleep(Duration::from_millis(1)).await?;
            assert_eq!(lowlevel::statistics().timers, 1, "armed by the wait");
            let r = sleep_forever().await;
            assert_eq!(reason(&r), CancelReason::Deadline);
            r
        })
        .await;
        assert_eq!(out, None);
        assert_eq!(now() - t0, SECOND);
        assert_eq!(lowlevel::statistics().timers, 0);
    });
}

// contract C5, C7: the deadline of a timeout whose timer is still deferred (its code only
// passes schedule points) passes because another task moves the clock: the next checkpoint of
// the timed code sees it, exactly as it would see a fired timer.
#[test]
fn c5_a_deferred_deadline_passed_by_another_task_is_seen_at_the_next_checkpoint() {
    let (rt, clock) = current_thread();
    rt.block_on(async {
        let t0 = now();
        let rounds = Arc::new(AtomicUsize::new(0));
        let counted = rounds.clone();
        nursery(|n| async move {
            n.spawn(async move {
                let out = trellis::move_on_after(SECOND, async {
                    loop {
                        checkpoint().await?;
                        counted.fetch_add(1, Ordering::Relaxed);
                    }
                    #[allow(unreachable_code)]
                    Ok::<(), Cancelled>(())
                })
                .await;
                assert_eq!(out, None);
                assert_eq!(now() - t0, secs(2));
                Ok(())
            })?;
            n.spawn(async move {
                for _ in 0..3 {
                    checkpoint().await?;
                }
                clock.jump(secs(2));
                Ok::<_, Error>(())
            })?;
            Ok::<_, Error>(())
        })
        .await
        .unwrap();
        // Tasks alternate: the timed loop completed three checkpoints before the jump, and
        // its fourth, the first after it, failed.
        assert_eq!(rounds.load(Ordering::Relaxed), 3);
    });
}

// contract C5 (no child outlives its deadline): a nursery opened inside a timeout arms the
// timeout's timer at once. Here the timed future is polled once, its nursery's body keeps
// passing schedule points, and then nothing polls it for 5 s: only the timer can cancel the
// nursery's sleeping child, and it does so at 1 s.
#[test]
fn c5_a_nursery_inside_a_timeout_is_reached_by_the_deadline_while_the_timeout_is_not_polled() {
    let (rt, _clock) = current_thread();
    rt.block_on(async {
        let t0 = now();
        let child_ended = Arc::new(Mutex::new(None));
        let ended = child_ended.clone();
        let mut timed = Box::pin(trellis::move_on_after(
            SECOND,
            nursery(move |n| async move {
                n.spawn(async move {
                    let r = sleep_forever().await;
                    *ended.lock().unwrap() = Some((now() - t0, reason(&r)));
                    r.map_err(Error::from)
                })?;
                loop {
                    checkpoint().await?;
                }
                #[allow(unreachable_code)]
                Ok::<(), Error>(())
            }),
        ));
        std::future::poll_fn(|cx| {
            assert!(timed.as_mut().poll(cx).is_pending());
            std::task::Poll::Ready(())
        })
        .await;
        sleep(secs(5)).await.unwrap();
        assert_eq!(
            child_ended.lock().unwrap().take(),
            Some((SECOND, CancelReason::Deadline))
        );
        assert!(timed.await.is_none());
    });
}

// contract C5 on both flavours: timeouts whose code passes schedule points first and then
// waits (their timers are armed by the wait, on whichever worker polls them) all fire at the
// exact virtual time.
#[test]
fn c5_timeouts_armed_by_a_wait_fire_on_time_on_both_flavours() {
    for flavor in common::FLAVORS {
        let rt = common::autojump_runtime(flavor);
        let ended = rt.block_on(async {
            let t0 = now();
            let ended = Arc::new(Mutex::new(Vec::new()));
            nursery(|n| {
                let ended = ended.clone();
                async move {
                    for i in 1..=50u64 {
                        let ended = ended.clone();
                        n.spawn(async move {
                            let out = trellis::move_on_after(secs(i), async {
                                for _ in 0..i {
                                    checkpoint().await?;
                                }
                                sleep_forever().await
                            })
                            .await;
                            assert!(out.is_none());
                            ended.lock().unwrap().push((i, now() - t0));
                            Ok(())
                        })?;
                    }
                    Ok::<_, Error>(())
                }
            })
            .await
            .unwrap();
            assert_eq!(lowlevel::statistics().timers, 0);
            let mut ended = ended.lock().unwrap().clone();
            ended.sort();
            ended
        });
        let expected: Vec<(u64, Duration)> = (1..=50).map(|i| (i, secs(i))).collect();
        assert_eq!(ended, expected, "{flavor:?}");
    }
}

// contract C5: a deadline moved from another thread, into the past, while the timed code only
// passes schedule points (its timer still deferred), cancels it at its next checkpoint.
#[test]
fn c5_a_deferred_deadline_moved_from_another_thread_cancels_at_once() {
    let rt = multi_thread(2);
    rt.block_on(async {
        let scope = CancelScope::with_deadline(now() + secs(3600));
        let handle = scope.clone();
        let (started_tx, started_rx) = std::sync::mpsc::channel();
        let mover = std::thread::spawn(move || {
            started_rx.recv().unwrap();
            handle.set_deadline(Some(std::time::Instant::now() - Duration::from_millis(1)));
        });
        let mut started = Some(started_tx);
        let out = scope
            .run(async {
                loop {
                    if let Some(tx) = started.take() {
                        tx.send(()).unwrap();
                    }
                    checkpoint().await?;
                }
                #[allow(unreachable_code)]
                Ok::<(), Cancelled>(())
            })
            .await;
        mover.join().unwrap();
        assert_eq!(out, None);
        assert_eq!(scope.cancel_reason(), Some(CancelReason::Deadline));
    });
}

// contract C4, C5: a shielded scope inside a timeout whose timer is deferred keeps the passed
// deadline out; the deadline takes effect at the first checkpoint after the shield is left.
#[test]
fn c5_a_shield_keeps_out_a_deferred_deadline_until_it_is_left() {
    let (rt, clock) = current_thread();
    rt.block_on(async {
        let t0 = now();
        let log = Log::default();
        let out = trellis::move_on_after(SECOND, async {
            let shielded = CancelScope::new()
                .shielded(true)
                .run(async {
                    clock.jump(secs(2));
                    checkpoint().await?;
                    log.push("shielded checkpoint passed");
                    Ok::<(), Cancelled>(())
                })
                .await;
            assert_eq!(shielded, Some(Ok(())));
            let r = checkpoint().await;
            log.push(format!("{:?}", r.as_ref().map_err(Cancelled::reason)));
            r
        })
        .await;
        assert_eq!(out, None);
        assert_eq!(log.take(), ["shielded checkpoint passed", "Err(Deadline)"]);
        assert_eq!(now() - t0, secs(2));
    });
}

// contract C5: moving the deadline of a scope whose timer is still deferred arms it: the new
// deadline fires when the clock passes it, whoever moves the clock.
#[test]
fn c5_moving_a_deferred_deadline_arms_it() {
    let (rt, clock) = current_thread();
    rt.block_on(async {
        let t0 = now();
        let scope = CancelScope::with_deadline(t0 + secs(10));
        let handle = scope.clone();
        nursery(|n| async move {
            n.spawn(async move {
                let out = scope
                    .run(async {
                        loop {
                            checkpoint().await?;
                        }
                        #[allow(unreachable_code)]
                        Ok::<(), Cancelled>(())
                    })
                    .await;
                assert_eq!(out, None);
                assert_eq!(now() - t0, secs(4));
                assert_eq!(scope.cancel_reason(), Some(CancelReason::Deadline));
                Ok(())
            })?;
            n.spawn(async move {
                checkpoint().await?;
                handle.set_deadline(Some(t0 + secs(3)));
                assert_eq!(lowlevel::statistics().timers, 1);
                clock.jump(secs(4));
                Ok::<_, Error>(())
            })?;
            Ok::<_, Error>(())
        })
        .await
        .unwrap();
    });
}

// ---------------------------------------------------------------------------------------------
// C7: a deadline that passes while a task runs

// contract C7: the deadline passes while the task runs without reaching a checkpoint (the clock
// is moved inside the task); the very next checkpoint sees it.
#[test]
fn c7_a_deadline_passed_while_running_is_seen_at_the_next_checkpoint() {
    let (rt, clock) = current_thread();
    rt.block_on(async {
        let t0 = now();
        let log = Log::default();
        let scope = CancelScope::with_deadline(t0 + SECOND);
        let out = scope
            .run(async {
                checkpoint().await.unwrap();
                clock.jump(secs(2)); // "a long computation"
                log.push("computed");
                let r = checkpoint().await;
                log.push(format!(
                    "checkpoint {:?}",
                    r.as_ref().map_err(Cancelled::reason)
                ));
                r
            })
            .await;
        assert_eq!(out, None);
        assert_eq!(log.take(), ["computed", "checkpoint Err(Deadline)"]);
        assert_eq!(now() - t0, secs(2));

        // Same with checkpoint_if_cancelled, which does not yield.
        let t1 = now();
        let scope = CancelScope::with_deadline(t1 + SECOND);
        let out = scope
            .run(async {
                clock.jump(secs(2));
                checkpoint_if_cancelled().await
            })
            .await;
        assert_eq!(out, None);

        // Without a checkpoint after the deadline, nothing is cancelled ... but cancel_called
        // says the deadline passed.
        let t2 = now();
        let scope = CancelScope::with_deadline(t2 + SECOND);
        let out = scope
            .run(async {
                clock.jump(secs(2));
                Ok::<_, Cancelled>("finished")
            })
            .await;
        assert_eq!(out, Some(Ok("finished")));
        assert!(scope.cancel_called());
        assert!(!scope.cancelled_caught());
    });
}

// contract C7: with a clock that runs (here 1000x real time), a deadline can pass while a task
// computes and no one fires the timers; the checkpoint itself looks at the clock.
#[test]
fn c7_a_checkpoint_notices_a_deadline_no_one_has_fired_yet() {
    let clock = MockClock::new();
    clock.set_rate(1000.0).unwrap();
    let rt = current_thread_on(Some(&clock));
    rt.block_on(async {
        let scope = CancelScope::with_deadline(now() + Duration::from_millis(100));
        let out = scope
            .run(async {
                // 2 ms of real time is 2 s of virtual time: the deadline is long past.
                std::thread::sleep(Duration::from_millis(2));
                let r = checkpoint_if_cancelled().await;
                assert_eq!(reason(&r), CancelReason::Deadline);
                let r = checkpoint().await;
                assert_eq!(reason(&r), CancelReason::Deadline);
                r
            })
            .await;
        assert_eq!(out, None);
        let scope = CancelScope::with_deadline(now() + Duration::from_millis(100));
        let out = scope
            .run(async {
                std::thread::sleep(Duration::from_millis(2));
                checkpoint().await
            })
            .await;
        assert_eq!(out, None);
        assert_eq!(scope.cancel_reason(), Some(CancelReason::Deadline));
    });
}

// ---------------------------------------------------------------------------------------------
// C8: reasons

// contract C8: an explicit cancel carries its text, to the error, the scope and Display.
#[test]
fn c8_explicit_reason_with_text() {
    let (rt, _clock) = current_thread();
    rt.block_on(async {
        let scope = CancelScope::new();
        let out = scope
            .run(async {
                scope.cancel_with_reason("user pressed stop");
                let r = sleep(secs(1)).await;
                let c = r.clone().unwrap_err();
                assert_eq!(c.reason(), &explicit_with("user pressed stop"));
                assert_eq!(
                    c.to_string(),
                    "operation cancelled (cancelled explicitly: user pressed stop)"
                );
                r
            })
            .await;
        assert_eq!(out, None);
        assert_eq!(
            scope.cancel_reason(),
            Some(explicit_with("user pressed stop"))
        );
    });
}

// contract C8: a deadline's cancellation says so.
#[test]
fn c8_deadline_reason() {
    let (rt, _clock) = current_thread();
    rt.block_on(async {
        let scope = CancelScope::with_deadline(now() + secs(3));
        let out = scope
            .run(async {
                let c = sleep(secs(10)).await.unwrap_err();
                assert_eq!(c.reason(), &CancelReason::Deadline);
                assert_eq!(c.to_string(), "operation cancelled (deadline expired)");
                Err::<(), _>(c)
            })
            .await;
        assert_eq!(out, None);
    });
}

// contract C8, N2: a task failing in a nursery cancels its siblings with reason `Nursery`.
#[test]
fn c8_nursery_reason_when_a_sibling_fails() {
    let (rt, _clock) = current_thread();
    rt.block_on(async {
        let t0 = now();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let s = seen.clone();
        let result = nursery(|n| async move {
            let s2 = s.clone();
            n.spawn(async move {
                let r = sleep_forever().await;
                s2.lock()
                    .unwrap()
                    .push((now() - t0, r.clone().unwrap_err().reason().clone()));
                r?;
                Ok(())
            })?;
            n.spawn(async {
                sleep(secs(4)).await?;
                Err::<(), _>(Error::InvalidArgument("sibling failed"))
            })?;
            let r = sleep_forever().await;
            s.lock()
                .unwrap()
                .push((now() - t0, r.clone().unwrap_err().reason().clone()));
            r?;
            Ok::<_, Error>(())
        })
        .await;
        match result {
            Err(NurseryError::Failed(errors)) => {
                assert_eq!(errors.len(), 1);
                assert!(matches!(
                    errors[0],
                    Error::InvalidArgument("sibling failed")
                ));
            }
            other => panic!("expected the sibling's failure, got {other:?}"),
        }
        assert_eq!(
            *seen.lock().unwrap(),
            [
                (secs(4), CancelReason::Nursery),
                (secs(4), CancelReason::Nursery)
            ]
        );
    });
}

// contract C8: the first reason wins, whichever kind it is.
#[test]
fn c8_the_first_reason_wins() {
    let (rt, _clock) = current_thread();
    rt.block_on(async {
        let t0 = now();
        // Explicit first; then the deadline passes.
        let scope = CancelScope::with_deadline(t0 + SECOND);
        let out = scope
            .run(async {
                scope.cancel_with_reason("first");
                scope.cancel_with_reason("second");
                scope.cancel();
                let _ = sleep(secs(2)).await;
                sleep(secs(2)).await // still cancelled: fails at once
            })
            .await;
        assert_eq!(out, None);
        assert_eq!(scope.cancel_reason(), Some(explicit_with("first")));
        assert_eq!(now(), t0);

        // The deadline first; then an explicit cancel.
        let scope = CancelScope::with_deadline(t0 + SECOND);
        let out = scope
            .run(async {
                let r = sleep(secs(2)).await;
                scope.cancel_with_reason("too late");
                assert_eq!(reason(&r), CancelReason::Deadline);
                let r = checkpoint().await;
                assert_eq!(reason(&r), CancelReason::Deadline);
                r
            })
            .await;
        assert_eq!(out, None);
        assert_eq!(scope.cancel_reason(), Some(CancelReason::Deadline));
        assert_eq!(now() - t0, SECOND);
    });
}

// contract C8, C3: the error raised carries the reason of the scope that will absorb it, the
// outermost cancelled one visible from the checkpoint.
#[test]
fn c8_the_reason_is_that_of_the_absorbing_scope() {
    let (rt, _clock) = current_thread();
    rt.block_on(async {
        let outer = CancelScope::new();
        let inner = CancelScope::new();
        let out = outer
            .run(async {
                let out = inner
                    .run(async {
                        inner.cancel_with_reason("inner");
                        assert_eq!(reason(&checkpoint().await), explicit_with("inner"));
                        outer.cancel_with_reason("outer");
                        let r = checkpoint().await;
                        assert_eq!(reason(&r), explicit_with("outer"));
                        r
                    })
                    .await;
                passed(out)?;
                Ok::<(), Cancelled>(())
            })
            .await;
        assert_eq!(out, None);
        assert!(outer.cancelled_caught());
        assert!(!inner.cancelled_caught());
    });
}

// contract C8, C3: a task's error carries the reason of the outermost cancelled scope above it,
// not its nursery's own, when both are cancelled: the scope absorbs it. (A shortcut that stopped
// at the task's parent would report the nursery's reason.)
#[test]
fn c8_a_task_below_a_cancelled_nursery_gets_the_outermost_reason() {
    let (rt, _clock) = current_thread();
    rt.block_on(async {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let s = seen.clone();
        let outer = CancelScope::new();
        let also_outer = outer.clone();
        let out = outer
            .run(async {
                nursery(|n: Nursery<Error>| async move {
                    for _ in 0..2 {
                        let s = s.clone();
                        n.spawn(async move {
                            let r = sleep_forever().await;
                            s.lock().unwrap().push(reason(&r));
                            Ok::<_, Error>(r?)
                        })?;
                    }
                    wait_all_tasks_blocked().await?;
                    n.cancel();
                    also_outer.cancel_with_reason("outer");
                    Ok(())
                })
                .await
            })
            .await;
        assert!(
            out.is_none(),
            "the outer scope absorbs the cancellation: {out:?}"
        );
        assert!(outer.cancelled_caught());
        assert_eq!(
            *seen.lock().unwrap(),
            [explicit_with("outer"), explicit_with("outer")]
        );
    });
}

/// Spawns `tasks` tasks in a nursery under `outer` on `rt`, cancels `outer` with the message
/// "outer" once every task has started, lets `cancel_nursery` cancel (and perhaps shield) the
/// nursery first, and returns the reasons the tasks' sleeps failed with, in the order they
/// failed.
fn reasons_seen_below(
    rt: &Runtime,
    tasks: usize,
    cancel_nursery: fn(&CancelScope),
) -> Vec<CancelReason> {
    rt.block_on(async {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let started = Arc::new(AtomicUsize::new(0));
        let s = seen.clone();
        let outer = CancelScope::new();
        let also_outer = outer.clone();
        outer
            .run(async {
                let _ = nursery(|n: Nursery<Error>| async move {
                    for _ in 0..tasks {
                        let s = s.clone();
                        let started = started.clone();
                        n.spawn(async move {
                            started.fetch_add(1, Ordering::Relaxed);
                            let r = sleep_forever().await;
                            s.lock().unwrap().push(reason(&r));
                            Ok::<_, Error>(r?)
                        })?;
                    }
                    while started.load(Ordering::Relaxed) < tasks {
                        checkpoint().await?;
                    }
                    cancel_nursery(&n.cancel_scope());
                    also_outer.cancel_with_reason("outer");
                    Ok(())
                })
                .await;
            })
            .await;
        let seen = seen.lock().unwrap().clone();
        seen
    })
}

// contract C8, C3: the reason a task reads is its nursery's, message and all, when the nursery
// is cancelled with a message and shielded from the cancelled scope above it: the shield ends
// the walk up at the nursery, whose message is read under its lock.
#[test]
fn c8_a_shielded_nursery_cancelled_with_a_message_gives_its_tasks_that_message() {
    let (rt, _clock) = current_thread();
    let seen = reasons_seen_below(&rt, 2, |scope| {
        scope.set_shield(true);
        scope.cancel_with_reason("nursery");
    });
    assert_eq!(seen, [explicit_with("nursery"), explicit_with("nursery")]);
}

// contract C8, C3: the same on two workers, with tasks building their errors on both while the
// nursery's lock is taken by their siblings leaving it: each of 1 000 reads the nursery's
// message (the tag read without the lock, the message under it).
#[test]
fn c8_a_shielded_nursery_s_message_reaches_every_task_on_two_workers() {
    let seen = reasons_seen_below(&multi_thread(2), 1_000, |scope| {
        scope.set_shield(true);
        scope.cancel_with_reason("nursery");
    });
    assert_eq!(seen.len(), 1_000);
    assert!(
        seen.iter().all(|r| *r == explicit_with("nursery")),
        "{seen:?}"
    );
}

// contract C8, C3: without the shield, the same tasks read the outer scope's reason: the walk
// goes on past the cancelled nursery to the outermost cancelled scope.
#[test]
fn c8_an_unshielded_nursery_cancelled_with_a_message_passes_on_the_outer_reason() {
    let (rt, _clock) = current_thread();
    let seen = reasons_seen_below(&rt, 2, |scope| scope.cancel_with_reason("nursery"));
    assert_eq!(seen, [explicit_with("outer"), explicit_with("outer")]);
}

// contract C8: a nursery shielded and not cancelled keeps the outer cancellation from its tasks
// until its own cancel; then they read its reason (a timeout here), not the outer one.
#[test]
fn c8_a_shielded_nursery_cancelled_by_its_deadline_gives_its_tasks_the_deadline() {
    let (rt, _clock) = current_thread();
    let seen = reasons_seen_below(&rt, 2, |scope| {
        scope.set_shield(true);
        scope.set_deadline(Some(now()));
    });
    assert_eq!(seen, [CancelReason::Deadline, CancelReason::Deadline]);
}

// ---------------------------------------------------------------------------------------------
// C9: deep nesting and many deadline moves

type BoxedScope = Pin<Box<dyn Future<Output = Result<(), Cancelled>> + Send>>;

/// Enters `scopes[depth..]`, one inside the other, and blocks in the innermost.
fn nest(scopes: Arc<Vec<CancelScope>>, depth: usize, exits: Arc<AtomicUsize>) -> BoxedScope {
    Box::pin(async move {
        if depth == scopes.len() {
            sleep_forever().await?;
            unreachable!("sleep_forever ends only by cancellation");
        }
        let out = scopes[depth]
            .run(nest(scopes.clone(), depth + 1, exits.clone()))
            .await;
        exits.fetch_add(1, Ordering::Relaxed);
        passed(out).map(|_| ())
    })
}

/// Runs `f` on a new thread with `stack` bytes of stack.
fn on_thread<R: Send + 'static>(stack: usize, f: impl FnOnce() -> R + Send + 'static) -> R {
    std::thread::Builder::new()
        .stack_size(stack)
        .spawn(f)
        .unwrap()
        .join()
        .unwrap()
}

/// Far too small for anything that recurses once per level of 5 000.
const SMALL_STACK: usize = 128 * 1024;
/// Rust polls nested futures recursively: each level of `nest` costs about 1.3 KiB of stack in a
/// debug build (the async block, the box, `Scoped::poll`), more than a test thread's 2 MiB for
/// 5 000 levels. That part belongs to the futures, not the runtime, so the runtime thread gets
/// room for it; what the runtime does per level is checked on `SMALL_STACK` threads.
const NESTING_STACK: usize = 64 << 20;

/// Enters `DEPTH` nested scopes in a task, lets `cancel` (run on a small-stack thread, so cancel
/// propagation must not recurse) cancel them once the task is blocked, and returns the scopes and
/// how many levels exited.
fn nested_scopes(cancel: fn(&[CancelScope])) -> (Vec<CancelScope>, usize) {
    const DEPTH: usize = 5_000;
    on_thread(NESTING_STACK, move || {
        let (rt, _clock) = current_thread();
        let scopes: Arc<Vec<CancelScope>> =
            Arc::new((0..DEPTH).map(|_| CancelScope::new()).collect());
        let exits = Arc::new(AtomicUsize::new(0));
        rt.block_on(async {
            let t0 = now();
            let result = nursery(|n| {
                let (scopes, exits) = (scopes.clone(), exits.clone());
                async move {
                    let (s, e) = (scopes.clone(), exits.clone());
                    n.spawn(async move {
                        nest(s, 0, e).await?;
                        Ok(())
                    })?;
                    wait_all_tasks_blocked().await?;
                    on_thread(SMALL_STACK, move || cancel(&scopes));
                    Ok::<_, Error>(())
                }
            })
            .await;
            result.unwrap();
            assert_eq!(now(), t0);
        });
        drop(rt);
        let scopes = Arc::try_unwrap(scopes).unwrap_or_else(|_| panic!("scopes still shared"));
        (scopes, exits.load(Ordering::Relaxed))
    })
}

// contract C9: 5 000 nested scopes are entered, cancelled from the outermost, and all exit; only
// the outermost absorbs. Cancelling (propagation through 5 000 levels) and dropping the exited
// scopes happen on threads with a 128 KiB stack: neither recurses per level.
#[test]
fn c9_five_thousand_nested_scopes() {
    let (scopes, exits) = nested_scopes(|scopes| scopes[0].cancel());
    assert_eq!(exits, 5_000);
    assert!(scopes[0].cancelled_caught());
    assert!(scopes[1..]
        .iter()
        .all(|s| !s.cancel_called() && !s.cancelled_caught()));
    on_thread(SMALL_STACK, move || drop(scopes));
}

// contract C9, C3: all 5 000 nested scopes cancelled at once (innermost first): only the
// outermost reports that it caught the cancellation.
#[test]
fn c9_five_thousand_nested_cancelled_scopes() {
    let (scopes, exits) = nested_scopes(|scopes| scopes.iter().rev().for_each(CancelScope::cancel));
    assert_eq!(exits, 5_000);
    assert!(scopes[0].cancelled_caught());
    assert!(scopes[1..]
        .iter()
        .all(|s| s.cancel_called() && !s.cancelled_caught()));
    on_thread(SMALL_STACK, move || drop(scopes));
}

/// Counts the bytes allocated and not yet freed by the current thread, so a test on a
/// current-thread runtime can tell whether memory grows (other tests run on other threads).
struct CountingAllocator;

thread_local! {
    static LIVE_BYTES: Cell<isize> = const { Cell::new(0) };
}

fn track(delta: isize) {
    // `try_with`: allocations may happen while the thread's locals are being torn down.
    let _ = LIVE_BYTES.try_with(|b| b.set(b.get() + delta));
}

fn live_bytes() -> isize {
    LIVE_BYTES.with(Cell::get)
}

// SAFETY: every call is forwarded unchanged to the system allocator; the bookkeeping touches
// only a thread-local integer that needs no allocation.
unsafe impl GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: same contract as the caller's.
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            track(layout.size() as isize);
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(ptr, layout) };
        track(-(layout.size() as isize));
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: same contract as the caller's.
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            track(new_size as isize - layout.size() as isize);
        }
        p
    }
}

#[global_allocator]
static ALLOCATOR: CountingAllocator = CountingAllocator;

// contract C9, principle 4: moving a running scope's deadline 10 000 times leaves exactly one
// timer entry, and the memory in use does not grow.
#[test]
fn c9_moving_a_deadline_ten_thousand_times_keeps_one_timer_and_no_memory() {
    let (rt, _clock) = current_thread();
    rt.block_on(async {
        let t0 = now();
        let scope = CancelScope::with_deadline(t0 + secs(1_000_000));
        let out = scope
            .run(async {
                let move_deadline = |i: u64| {
                    // Alternately later and earlier, always in the future.
                    let offset = if i % 2 == 0 { 500_000 + i } else { 1_000 + i };
                    scope.set_deadline(Some(t0 + secs(offset)));
                };
                for i in 0..100 {
                    move_deadline(i);
                }
                assert_eq!(lowlevel::statistics().timers, 1);
                let before = live_bytes();
                // The counter sees this thread's allocations.
                let probe = vec![0u8; 4096];
                assert_eq!(live_bytes() - before, 4096);
                drop(probe);
                for i in 100..10_100 {
                    move_deadline(i);
                    if i % 1_000 == 0 {
                        assert_eq!(lowlevel::statistics().timers, 1);
                    }
                }
                let grown = live_bytes() - before;
                assert_eq!(lowlevel::statistics().timers, 1);
                assert_eq!(scope.deadline(), Some(t0 + secs(1_000 + 10_099)));
                assert!(
                    grown <= 0,
                    "memory grew by {grown} bytes over 10 000 deadline moves"
                );
                // The last deadline is the one that fires.
                sleep_forever().await?;
                Ok::<(), Cancelled>(())
            })
            .await;
        assert_eq!(out, None);
        assert_eq!(now() - t0, secs(11_099));
        assert_eq!(lowlevel::statistics().timers, 0);
    });
}

// ---------------------------------------------------------------------------------------------
// Checkpoint semantics (principle 3, trio test_cancel_points)

// principle 3: checkpoint() is a schedule point: a task spawned before it runs during it.
// checkpoint_if_cancelled() is not: nothing else runs.
#[test]
fn checkpoint_yields_and_checkpoint_if_cancelled_does_not() {
    let (rt, _clock) = current_thread();
    rt.block_on(async {
        let log = Log::default();
        let result = nursery(|n| {
            let log = log.clone();
            async move {
                let l = log.clone();
                n.spawn(async move {
                    l.push("child ran");
                    Ok(())
                })?;
                log.push("spawned");
                checkpoint_if_cancelled().await?;
                log.push("after checkpoint_if_cancelled");
                checkpoint().await?;
                log.push("after checkpoint");
                Ok::<_, Error>(())
            }
        })
        .await;
        result.unwrap();
        assert_eq!(
            log.take(),
            [
                "spawned",
                "after checkpoint_if_cancelled",
                "child ran",
                "after checkpoint"
            ]
        );
    });
}

// principle 3: cancel_shielded_checkpoint() yields and ignores cancellation; checkpoint() after
// it still fails (trio test_cancel_points main4).
#[test]
fn cancel_shielded_checkpoint_yields_and_ignores_cancellation() {
    let (rt, _clock) = current_thread();
    rt.block_on(async {
        let log = Log::default();
        let scope = CancelScope::new();
        let out = scope
            .run(nursery(|n| {
                let (log, scope) = (log.clone(), scope.clone());
                async move {
                    scope.cancel();
                    let l = log.clone();
                    n.spawn(async move {
                        l.push("child ran");
                        Ok(())
                    })?;
                    cancel_shielded_checkpoint().await?;
                    log.push("after first");
                    cancel_shielded_checkpoint().await?;
                    log.push("after second");
                    let r = checkpoint().await;
                    log.push(format!("checkpoint cancelled: {}", r.is_err()));
                    r?;
                    Ok::<_, Error>(())
                }
            }))
            .await;
        assert!(out.is_none());
        assert!(scope.cancelled_caught());
        assert_eq!(
            log.take(),
            [
                "child ran",
                "after first",
                "after second",
                "checkpoint cancelled: true"
            ]
        );
    });
}

// principle 3 (trio test_cancel_points main1-3): each kind of checkpoint passes before the
// cancel and fails after it.
#[test]
fn checkpoints_pass_before_cancel_and_fail_after() {
    let (rt, _clock) = current_thread();
    rt.block_on(async {
        let scope = CancelScope::new();
        let out = scope
            .run(async {
                checkpoint_if_cancelled().await.unwrap();
                checkpoint().await.unwrap();
                sleep(Duration::ZERO).await.unwrap();
                scope.cancel();
                assert!(checkpoint_if_cancelled().await.is_err());
                assert!(checkpoint().await.is_err());
                assert!(sleep(Duration::ZERO).await.is_err());
                sleep_forever().await?;
                Ok::<(), Cancelled>(())
            })
            .await;
        assert_eq!(out, None);
    });
}

// principle 3: on a current-thread runtime, a checkpoint of the main task lets every runnable
// task run once and no more: the main task and its children interleave step by step.
#[test]
fn checkpoints_interleave_the_main_task_and_children() {
    let (rt, _clock) = current_thread();
    rt.block_on(async {
        let log = Log::default();
        let result = nursery(|n| {
            let log = log.clone();
            async move {
                for name in ["a", "b"] {
                    let l = log.clone();
                    n.spawn(async move {
                        for i in 0..3 {
                            l.push(format!("{name}{i}"));
                            checkpoint().await?;
                        }
                        Ok(())
                    })?;
                }
                for i in 0..3 {
                    log.push(format!("main{i}"));
                    checkpoint().await?;
                }
                Ok::<_, Error>(())
            }
        })
        .await;
        result.unwrap();
        assert_eq!(
            log.take(),
            ["main0", "a0", "b0", "main1", "a1", "b1", "main2", "a2", "b2"]
        );
    });
}

// ---------------------------------------------------------------------------------------------
// Cancellation through `?` in the error types people use (C3)

/// Runs the same scenario for an error type `E`: an outer cancel travels out of an inner scope
/// that was not cancelled (which passes it on) and is absorbed by the outer one; an unrelated
/// error in a cancelled scope passes through untouched.
macro_rules! absorbs_through {
    ($err:ty, $unrelated:expr, $check_unrelated:expr) => {{
        let (rt, _clock) = current_thread();
        rt.block_on(async {
            let outer = CancelScope::new();
            let inner = CancelScope::new();
            let out = outer
                .run(async {
                    let out = inner
                        .run(async {
                            outer.cancel_with_reason("outer");
                            sleep(secs(1)).await?;
                            Ok::<(), $err>(())
                        })
                        .await;
                    // The inner scope was not cancelled: it hands the error on untouched.
                    let err: $err = match out {
                        Some(Err(e)) => e,
                        _ => panic!("the inner scope must pass the cancellation on"),
                    };
                    let c = err
                        .cancelled()
                        .expect("the error still carries the cancellation");
                    assert_eq!(c.reason(), &explicit_with("outer"));
                    Err::<(), $err>(err)
                })
                .await;
            assert!(
                out.is_none(),
                "the outer scope absorbs its own cancellation"
            );
            assert!(outer.cancelled_caught());
            assert!(!inner.cancelled_caught());

            // An unrelated error passes through a cancelled scope unchanged.
            let scope = CancelScope::new();
            let out = scope
                .run(async {
                    scope.cancel();
                    let r: Result<(), $err> = Err($unrelated);
                    r
                })
                .await;
            match out {
                Some(Err(e)) => {
                    assert!(e.cancelled().is_none());
                    let check: fn(&$err) = $check_unrelated;
                    check(&e);
                }
                _ => panic!("an unrelated error must pass through"),
            }
            assert!(!scope.cancelled_caught());
        });
    }};
}

// contract C3: cancellation through `?` in trellis::Error.
#[test]
fn cancellation_travels_in_trellis_error() {
    absorbs_through!(Error, Error::InvalidArgument("unrelated"), |e| {
        assert!(matches!(e, Error::InvalidArgument("unrelated")))
    });
}

// contract C3: cancellation through `?` in std::io::Error (what the I/O API returns).
#[test]
fn cancellation_travels_in_io_error() {
    absorbs_through!(
        io::Error,
        io::Error::new(io::ErrorKind::NotFound, "no such thing"),
        |e| {
            assert_eq!(e.kind(), io::ErrorKind::NotFound);
            assert_eq!(e.to_string(), "no such thing");
        }
    );
}

// contract C3: cancellation through `?` in Box<dyn Error + Send + Sync>.
#[test]
fn cancellation_travels_in_boxed_error() {
    type Boxed = Box<dyn std::error::Error + Send + Sync>;
    absorbs_through!(Boxed, "unrelated".into(), |e| assert_eq!(
        e.to_string(),
        "unrelated"
    ));
}

// contract C3: cancellation through `?` in anyhow::Error, also under added context.
#[cfg(feature = "anyhow")]
#[test]
fn cancellation_travels_in_anyhow_error() {
    absorbs_through!(anyhow::Error, anyhow::anyhow!("unrelated"), |e| {
        assert_eq!(e.to_string(), "unrelated")
    });
    let (rt, _clock) = current_thread();
    rt.block_on(async {
        use anyhow::Context as _;
        let scope = CancelScope::new();
        let out = scope
            .run(async {
                scope.cancel();
                sleep(secs(1))
                    .await
                    .context("while waiting for the reply")?;
                Ok::<(), anyhow::Error>(())
            })
            .await;
        assert!(out.is_none());
        assert!(scope.cancelled_caught());
    });
}

// contract C3: a cancellation converted between error types on its way out (io::Error into
// trellis::Error, into a box, wrapped as the source of another error) is still recognised.
#[test]
fn cancellation_survives_conversions_between_error_types() {
    #[derive(Debug)]
    struct Wrapper(io::Error);
    impl std::fmt::Display for Wrapper {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("request failed")
        }
    }
    impl std::error::Error for Wrapper {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            Some(&self.0)
        }
    }

    let (rt, _clock) = current_thread();
    rt.block_on(async {
        async fn io_step() -> io::Result<()> {
            sleep(secs(1)).await?;
            Ok(())
        }
        async fn trellis_step() -> Result<(), Error> {
            io_step().await?;
            Ok(())
        }
        async fn boxed_step() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
            match io_step().await {
                Err(e) => Err(Box::new(Wrapper(e))),
                Ok(()) => Ok(()),
            }
        }

        let scope = CancelScope::new();
        let out = scope
            .run(async {
                scope.cancel();
                trellis_step().await
            })
            .await;
        assert!(out.is_none());

        let scope = CancelScope::new();
        let out = scope
            .run(async {
                scope.cancel();
                boxed_step().await
            })
            .await;
        assert!(out.is_none());
        assert!(scope.cancelled_caught());
    });
}

/// A scope's node is reused by the next scope made on the thread once nothing refers to it, and
/// comes back empty (C2, C5, C8): a scope made right after one that timed out, was shielded and
/// caught its cancellation sees none of that, and runs its body uncancelled.
#[test]
fn a_scope_made_after_one_that_timed_out_starts_fresh() {
    let (rt, _clock) = current_thread();
    rt.block_on(async {
        for _ in 0..3 {
            let shielded = trellis::move_on_after(Duration::ZERO, sleep_forever());
            shielded.cancel_scope().set_shield(true);
            assert!(shielded.await.is_none(), "a zero timeout ends the body");
            let fresh = CancelScope::new();
            assert!(!fresh.cancel_called());
            assert!(!fresh.cancelled_caught());
            assert_eq!(fresh.cancel_reason(), None);
            assert_eq!(fresh.deadline(), None);
            assert!(!fresh.shield());
            assert_eq!(fresh.run(checkpoint()).await, Some(Ok(())));
            let timed = CancelScope::with_timeout(SECOND);
            assert_eq!(timed.deadline(), Some(now() + SECOND));
            assert!(!timed.cancel_called());
        }
    });
}
