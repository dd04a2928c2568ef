//! Behaviour of nurseries (contract N1-N10, N12), task handles, introspection and
//! `spawn_local`. Forced teardown (N11) is in `teardown.rs`. Scenarios ported from trio's
//! `test_run.py` name the trio test they follow.
//!
//! Unless said otherwise, tests run on a current-thread runtime with an autojumping mock clock:
//! tasks run in spawn and wake order, so event logs are exact, and virtual times are exact.

mod common;

use std::panic;
use std::rc::Rc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use trellis::lowlevel::{self, TaskInfo};
use trellis::testing::wait_all_tasks_blocked;
use trellis::{
    cancel_shielded_checkpoint, checkpoint, current_effective_deadline, move_on_after, nursery,
    sleep, sleep_forever, CancelReason, CancelScope, Cancelled, Error, NurseryError,
};

type Res<T = ()> = Result<T, TestError>;
type Status<V> = trellis::TaskStatus<V, TestError>;

fn reason(c: &Cancelled) -> String {
    c.reason().to_string()
}

/// Sleeps forever; logs `"{name} cancelled: {reason}"` when cancelled and passes the error on.
async fn sleeper(log: Log, name: &'static str) -> Res {
    let c = sleep_forever().await.unwrap_err();
    log.push(format!("{name} cancelled: {}", reason(&c)));
    Err(c.into())
}

/// A shielded sleep: cleanup that must block even though its task is cancelled.
async fn shielded_sleep(d: Duration) {
    CancelScope::new()
        .shielded(true)
        .run(sleep(d))
        .await
        .unwrap()
        .unwrap();
}

// ---------------------------------------------------------------------------------------------
// N1: the body counts as a child.

// contract N1
#[test]
fn nursery_completes_when_body_and_all_children_are_done() {
    block_on_current(async {
        let t0 = trellis::now();
        let log = Log::new();
        // Children outlive the body.
        let l = log.clone();
        let out = nursery(|n| async move {
            for (name, s) in [("a", 3), ("b", 1)] {
                let l = l.clone();
                n.spawn(async move {
                    sleep(secs(s)).await?;
                    l.push(format!("{name} done at {}s", since(t0).as_secs()));
                    Ok(())
                })?;
            }
            l.push("body done");
            Ok::<_, TestError>("value")
        })
        .await;
        assert_eq!(out.unwrap(), "value");
        assert_eq!(since(t0), secs(3));
        assert_eq!(log.take(), ["body done", "b done at 1s", "a done at 3s"]);

        // The body outlives the children.
        let t1 = trellis::now();
        let l = log.clone();
        nursery(|n| async move {
            n.spawn(async { sleep(secs(1)).await.map_err(TestError::from) })?;
            sleep(secs(2)).await?;
            l.push("body done");
            Ok::<_, TestError>(())
        })
        .await
        .unwrap();
        assert_eq!(since(t1), secs(2));
        assert_eq!(log.take(), ["body done"]);
    });
}

// contract N1 (trio: test_basic_interleave): children run interleaved at their checkpoints, in
// spawn order.
#[test]
fn children_interleave_at_checkpoints_in_spawn_order() {
    block_on_current(async {
        let log = Log::new();
        let l = log.clone();
        nursery(|n| async move {
            for name in ["a", "b"] {
                let l = l.clone();
                n.spawn(async move {
                    for i in 0..3 {
                        l.push(format!("{name}{i}"));
                        checkpoint().await?;
                    }
                    Ok(())
                })?;
            }
            Ok::<_, TestError>(())
        })
        .await
        .unwrap();
        assert_eq!(log.take(), ["a0", "b0", "a1", "b1", "a2", "b2"]);
    });
}

// contract N1 on the current-thread flavour: spawn order is run order however many tasks are
// queued, also past the worker queue's 256 slots (which used to overflow into the injector,
// whose periodic turn then ran a later task early), and again when they all wake at once.
#[test]
fn a_thousand_children_run_in_spawn_order_and_wake_order() {
    const TASKS: usize = 1_000;
    block_on_current(async {
        let order = Arc::new(Mutex::new(Vec::with_capacity(2 * TASKS)));
        let o = order.clone();
        nursery(|n| async move {
            for i in 0..TASKS {
                let o = o.clone();
                n.spawn(async move {
                    o.lock().unwrap().push(i);
                    checkpoint().await?;
                    o.lock().unwrap().push(i);
                    Ok(())
                })?;
            }
            Ok::<_, TestError>(())
        })
        .await
        .unwrap();
        let order = order.lock().unwrap();
        let expected: Vec<usize> = (0..TASKS).chain(0..TASKS).collect();
        assert_eq!(*order, expected);
    });
}

// contract N1: an empty nursery completes at once with the body's value.
#[test]
fn empty_nursery_returns_the_body_value() {
    block_on_current(async {
        let t0 = trellis::now();
        let out = nursery(|_n| async { Ok::<_, TestError>(5) }).await;
        assert_eq!(out.unwrap(), 5);
        assert_eq!(since(t0), Duration::ZERO);
    });
}

// ---------------------------------------------------------------------------------------------
// N2: a failure cancels the siblings and the body.

// contract N2 (trio: test_task_crash_propagation, test_child_crash_wakes_parent)
#[test]
fn a_failing_child_cancels_its_siblings_and_the_body() {
    block_on_current(async {
        let t0 = trellis::now();
        let log = Log::new();
        let l = log.clone();
        let out = nursery(|n| async move {
            n.spawn(async {
                sleep(secs(1)).await?;
                Err::<(), _>(TestError::Fail("argh"))
            })?;
            n.spawn(sleeper(l.clone(), "sibling"))?;
            sleeper(l, "body").await?;
            Ok::<_, TestError>(())
        })
        .await;
        assert_eq!(out.unwrap_err().into_errors(), [TestError::Fail("argh")]);
        assert_eq!(since(t0), secs(1));
        // Wake-ups go out in tree order: the nursery's own waiter (the body) first, then each
        // child; on a current-thread runtime they run in that order.
        assert_eq!(
            log.take(),
            [
                "body cancelled: a sibling task failed",
                "sibling cancelled: a sibling task failed",
            ]
        );
    });
}

// contract N2: the checkpoints of a looping sibling fail with the nursery reason.
#[test]
fn a_looping_sibling_sees_cancelled_at_its_next_checkpoint() {
    block_on_current(async {
        let log = Log::new();
        let l = log.clone();
        let out = nursery(|n| async move {
            let l2 = l.clone();
            n.spawn(async move {
                let mut i = 0;
                loop {
                    l2.push(format!("loop {i}"));
                    i += 1;
                    if let Err(c) = checkpoint().await {
                        l2.push(format!("looper cancelled: {:?}", c.reason()));
                        return Err::<(), _>(c.into());
                    }
                }
            })?;
            n.spawn(async move {
                checkpoint().await?;
                l.push("crash");
                Err::<(), _>(TestError::Fail("crash"))
            })?;
            Ok::<_, TestError>(())
        })
        .await;
        assert_eq!(out.unwrap_err().into_errors(), [TestError::Fail("crash")]);
        assert_eq!(
            log.take(),
            ["loop 0", "loop 1", "crash", "looper cancelled: Nursery"]
        );
    });
}

// contract N2 (trio: test_nursery_main_block_error_basic): a failing body cancels the children.
#[test]
fn a_failing_body_cancels_the_children() {
    block_on_current(async {
        let t0 = trellis::now();
        let log = Log::new();
        let l = log.clone();
        let out = nursery(|n| async move {
            n.spawn(sleeper(l.clone(), "child"))?;
            sleep(secs(2)).await?;
            Err::<(), _>(TestError::Fail("body"))
        })
        .await;
        assert_eq!(out.unwrap_err().into_errors(), [TestError::Fail("body")]);
        assert_eq!(since(t0), secs(2));
        assert_eq!(log.take(), ["child cancelled: a sibling task failed"]);
    });
}

// ---------------------------------------------------------------------------------------------
// N3: every error is reported, in order; the nursery's own cancellations are not errors.

// contract N3 (trio: test_main_and_task_both_crash, test_two_child_crashes)
#[test]
fn all_errors_are_reported_in_the_order_they_happened() {
    block_on_current(async {
        let out = nursery(|n| async move {
            n.spawn(async { Err::<(), _>(TestError::Fail("first child")) })?;
            n.spawn(async { Err::<(), _>(TestError::Fail("second child")) })?;
            Err::<(), _>(TestError::Fail("body"))
        })
        .await;
        // The body fails first; the children still start (N6) and fail without a checkpoint.
        assert_eq!(
            out.unwrap_err().into_errors(),
            [
                TestError::Fail("body"),
                TestError::Fail("first child"),
                TestError::Fail("second child"),
            ]
        );

        let out = nursery(|n| async move {
            n.spawn(async { Err::<(), _>(TestError::Fail("k")) })?;
            n.spawn(async { Err::<(), _>(TestError::Fail("v")) })?;
            Ok::<_, TestError>(())
        })
        .await;
        assert_eq!(
            out.unwrap_err().into_errors(),
            [TestError::Fail("k"), TestError::Fail("v")]
        );
    });
}

// contract N3: a single error is still reported as a group.
#[test]
fn a_single_error_is_reported_as_a_group() {
    block_on_current(async {
        let out = nursery(|n| async move {
            n.spawn(async { Err::<(), _>(TestError::Fail("only")) })?;
            Ok::<_, TestError>(())
        })
        .await;
        match out {
            Err(NurseryError::Failed(errors)) => assert_eq!(errors, [TestError::Fail("only")]),
            other => panic!("expected Failed, got {other:?}"),
        }
    });
}

// contract N3 (trio: test_cancel_scope_exceptiongroup_filtering): cancellations, from the
// nursery or from an enclosing scope, are not errors; the enclosing scope absorbs its own, and
// the real error passes out alone.
#[test]
fn cancellations_are_filtered_out_of_the_error_group() {
    block_on_current(async {
        let outer = CancelScope::new();
        let o = outer.clone();
        let out = outer
            .run(async move {
                nursery(|n| async move {
                    let log = Log::new();
                    n.spawn(sleeper(log.clone(), "t1"))?;
                    n.spawn(sleeper(log.clone(), "t2"))?;
                    n.cancel();
                    CancelScope::new()
                        .shielded(true)
                        .run(wait_all_tasks_blocked())
                        .await
                        .unwrap()?;
                    n.spawn(sleeper(log.clone(), "t3"))?;
                    o.cancel();
                    n.spawn(async { Err::<(), _>(TestError::Fail("key")) })?;
                    checkpoint().await?;
                    Ok::<_, TestError>(())
                })
                .await
            })
            .await;
        let errors = out.expect("not absorbed: a real error").unwrap_err();
        assert_eq!(errors.into_errors(), [TestError::Fail("key")]);
        assert!(!outer.cancelled_caught());

        // Without the real error, the enclosing scope absorbs the cancellation.
        let outer = CancelScope::new();
        let o = outer.clone();
        let out = outer
            .run(async move {
                nursery(|n| async move {
                    n.spawn(sleeper(Log::new(), "t"))?;
                    o.cancel();
                    checkpoint().await?;
                    Ok::<_, TestError>(())
                })
                .await
            })
            .await;
        assert!(out.is_none());
        assert!(outer.cancelled_caught());
    });
}

// contract N3: a nursery cancelled through its own scope absorbs the cancellation.
#[test]
fn cancelling_the_nursery_itself_is_not_an_error() {
    block_on_current(async {
        let log = Log::new();
        let l = log.clone();
        let out = nursery(|n| async move {
            n.spawn(sleeper(l.clone(), "a"))?;
            n.spawn(sleeper(l.clone(), "b"))?;
            wait_all_tasks_blocked().await?;
            n.cancel();
            Ok::<_, TestError>("kept")
        })
        .await;
        assert_eq!(out.unwrap(), "kept");
        // Woken in tree order, so in spawn order.
        assert_eq!(
            log.take(),
            [
                "a cancelled: cancelled explicitly",
                "b cancelled: cancelled explicitly"
            ]
        );
    });
}

// contract N3, documented deviation (docs/design.md, "What a nursery returns"): a body ended by
// its own nursery's cancellation has no value to return, so the nursery reports that
// cancellation where trio's `async with` would just end; an enclosing scope that was not
// cancelled passes it through.
#[test]
fn a_body_cancelled_by_its_own_nursery_reports_the_cancellation() {
    block_on_current(async {
        let scope = CancelScope::new();
        let out = scope
            .run(nursery(|n| async move {
                n.cancel_scope().cancel_with_reason("stop");
                checkpoint().await?;
                Ok::<_, TestError>(())
            }))
            .await;
        match out {
            Some(Err(NurseryError::Cancelled(c))) => {
                assert_eq!(c.reason(), &CancelReason::Explicit(Some("stop".into())))
            }
            other => panic!("expected Some(Err(Cancelled)), got {other:?}"),
        }
        assert!(!scope.cancelled_caught());
    });
}

// contract N3: a nursery that cancelled itself stops quietly. Propagated with `?`, its
// (absorbed) cancellation ends the task that ran it, but is no failure of the nursery outside:
// the sibling finishes, the outer nursery succeeds (trio's nursery would simply exit).
#[test]
fn a_self_cancelled_inner_nursery_propagated_with_question_mark_fails_nothing_outside() {
    block_on_current(async {
        let out = nursery(|outer| async move {
            let stopper = outer.spawn(async {
                nursery(|inner| async move {
                    inner.cancel();
                    checkpoint().await?;
                    Ok::<_, trellis::Error>(())
                })
                .await?;
                Ok::<_, trellis::Error>("not reached")
            })?;
            let sibling = outer.spawn(async {
                checkpoint().await?;
                Ok::<_, trellis::Error>(7)
            })?;
            Ok::<_, trellis::Error>((stopper.await, sibling.await?))
        })
        .await
        .unwrap();
        assert!(
            matches!(out.0, Err(trellis::Error::TaskCancelled)),
            "{:?}",
            out.0
        );
        assert_eq!(out.1, 7);
    });
}

// ---------------------------------------------------------------------------------------------
// N4: exit is not a cancel point.

// contract N4 (trio: test_trivial_yields): opening and closing a nursery in a cancelled scope
// raises no cancellation of its own.
#[test]
fn exiting_a_nursery_is_not_a_cancel_point() {
    block_on_current(async {
        let scope = CancelScope::new();
        scope.cancel();
        let out = scope
            .run(nursery(|_n| async { Ok::<_, TestError>(1) }))
            .await;
        assert_eq!(out.unwrap().unwrap(), 1);
        assert!(!scope.cancelled_caught());

        let scope = CancelScope::new();
        scope.cancel();
        let out = scope
            .run(nursery(|n| async move {
                n.spawn(async { Ok(()) })?; // no checkpoint
                Ok::<_, TestError>(2)
            }))
            .await;
        assert_eq!(out.unwrap().unwrap(), 2);
        assert!(!scope.cancelled_caught());
    });
}

// contract N4: while the owner waits at exit, a cancellation of an enclosing scope reaches the
// children (N7) but is not raised in the owner: children that handle it let the nursery return
// its value.
#[test]
fn the_owner_waiting_at_exit_is_not_cancelled() {
    block_on_current(async {
        let t0 = trellis::now();
        let log = Log::new();
        let l = log.clone();
        let scope = CancelScope::with_timeout(secs(1));
        let out = scope
            .run(nursery(|n| async move {
                n.spawn(async move {
                    if let Err(c) = sleep(secs(5)).await {
                        l.push(format!("child cancelled: {}", reason(&c)));
                        shielded_sleep(secs(2)).await;
                        l.push(format!("child cleaned up at {}s", since(t0).as_secs()));
                    }
                    Ok(())
                })?;
                Ok::<_, TestError>(7)
            }))
            .await;
        assert_eq!(out.unwrap().unwrap(), 7);
        assert!(!scope.cancelled_caught());
        assert!(scope.cancel_called());
        assert_eq!(since(t0), secs(3));
        assert_eq!(
            log.take(),
            [
                "child cancelled: deadline expired",
                "child cleaned up at 3s"
            ]
        );
    });
}

// ---------------------------------------------------------------------------------------------
// N5: spawning while the owner waits at exit; afterwards NurseryClosed.

// contract N5 (trio: test_nursery_closure)
#[test]
fn children_may_spawn_while_the_owner_waits_then_the_nursery_closes() {
    block_on_current(async {
        let log = Log::new();
        let l = log.clone();
        let n = nursery(|n| async move {
            let n2 = n.clone();
            n.spawn(async move {
                l.push("child1");
                checkpoint().await?;
                // The body has finished; we still run, so spawning is allowed.
                n2.spawn(async move {
                    l.push("child2");
                    Ok(())
                })?;
                Ok(())
            })?;
            Ok::<_, TestError>(n.clone())
        })
        .await
        .unwrap();
        assert_eq!(log.take(), ["child1", "child2"]);

        assert!(n.is_closed());
        assert!(matches!(
            n.spawn(async { Ok(()) }),
            Err(Error::NurseryClosed)
        ));
        assert!(matches!(
            n.spawn_named("late", async { Ok(()) }),
            Err(Error::NurseryClosed)
        ));
        assert!(matches!(
            n.spawn_service(async { Ok(()) }),
            Err(Error::NurseryClosed)
        ));
        assert!(matches!(
            n.spawn_local(async { Ok(()) }),
            Err(Error::NurseryClosed)
        ));
        // `start` fails at once, without waiting for anything.
        let t0 = trellis::now();
        let started = n
            .start(|status| async move {
                sleep(secs(7)).await?;
                status.started(());
                Ok(())
            })
            .await;
        assert_eq!(
            started,
            Err(TestError::Trellis(Error::NurseryClosed.to_string()))
        );
        assert_eq!(since(t0), Duration::ZERO);
        assert_eq!(lowlevel::statistics().live_tasks, 0);
    });
}

// contract N5: the future given to a refused spawn is dropped, not leaked.
#[test]
fn a_refused_spawn_drops_the_future() {
    block_on_current(async {
        let n = nursery(|n| async move { Ok::<_, TestError>(n.clone()) })
            .await
            .unwrap();
        let drops = DropCounter::new();
        let guard = drops.guard();
        let refused = n.spawn(async move {
            let _guard = guard;
            Ok(())
        });
        assert!(matches!(refused, Err(Error::NurseryClosed)));
        assert_eq!(drops.count(), 1);
    });
}

// ---------------------------------------------------------------------------------------------
// N6: a task spawned into a cancelled nursery starts.

// contract N6 (trio: test_precancelled_task)
#[test]
fn a_task_spawned_into_a_cancelled_nursery_starts_then_fails_at_its_first_checkpoint() {
    block_on_current(async {
        let log = Log::new();
        let l = log.clone();
        nursery(|n| async move {
            n.cancel();
            n.spawn(async move {
                l.push("started");
                let c = sleep_forever().await.unwrap_err();
                l.push(format!("cancelled: {}", reason(&c)));
                Err::<(), _>(c.into())
            })?;
            Ok::<_, TestError>(())
        })
        .await
        .unwrap();
        assert_eq!(log.take(), ["started", "cancelled: cancelled explicitly"]);

        // The same inside an enclosing scope that is already cancelled.
        let l = log.clone();
        let scope = CancelScope::new();
        scope.cancel();
        let out = scope
            .run(nursery(|n| async move {
                n.spawn(async move {
                    l.push("started");
                    checkpoint().await?;
                    l.push("not reached");
                    Ok(())
                })?;
                Ok::<_, TestError>(())
            }))
            .await;
        assert!(
            out.is_none(),
            "the child's cancellation reaches the cancelled scope"
        );
        assert_eq!(log.take(), ["started"]);
    });
}

// ---------------------------------------------------------------------------------------------
// N7: cancellation reaches every descendant.

/// A task that opens its own nursery holding two sleepers, and sleeps in its body.
async fn subtree(log: Log, name: &'static str) -> Res {
    nursery(|n| async move {
        n.spawn(sleeper(
            log.clone(),
            if name == "a" { "a.1" } else { "b.1" },
        ))?;
        n.spawn(sleeper(
            log.clone(),
            if name == "a" { "a.2" } else { "b.2" },
        ))?;
        sleeper(log, name).await
    })
    .await
    .map_err(|e| match e {
        NurseryError::Cancelled(c) => TestError::Cancelled(c),
        NurseryError::Failed(mut errors) => errors.remove(0),
    })
}

// contract N7
#[test]
fn cancelling_a_nursery_reaches_every_descendant() {
    block_on_current(async {
        let log = Log::new();
        let l = log.clone();
        nursery(|n| async move {
            n.spawn(subtree(l.clone(), "a"))?;
            n.spawn(subtree(l.clone(), "b"))?;
            wait_all_tasks_blocked().await?;
            l.push("cancel");
            n.cancel();
            Ok::<_, TestError>(())
        })
        .await
        .unwrap();
        // Woken in tree order: each subtree in spawn order, within it the waiter of the task's
        // own nursery (its body) before that nursery's children.
        let mut expected = vec!["cancel".to_owned()];
        for who in ["a", "a.1", "a.2", "b", "b.1", "b.2"] {
            expected.push(format!("{who} cancelled: cancelled explicitly"));
        }
        assert_eq!(log.take(), expected);
    });
}

// contract N7: tasks without children of their own are reached in the same tree order as
// subtrees when the two are mixed (a childless task is visited under its parent's lock, a
// subtree through the walk's stack).
#[test]
fn cancellation_keeps_tree_order_across_leaves_and_subtrees() {
    block_on_current(async {
        let log = Log::new();
        let l = log.clone();
        nursery(|n| async move {
            n.spawn(sleeper(l.clone(), "x"))?;
            n.spawn(subtree(l.clone(), "a"))?;
            n.spawn(sleeper(l.clone(), "y"))?;
            n.spawn(subtree(l.clone(), "b"))?;
            n.spawn(sleeper(l.clone(), "z"))?;
            wait_all_tasks_blocked().await?;
            n.cancel();
            Ok::<_, TestError>(())
        })
        .await
        .unwrap();
        let expected: Vec<String> = ["x", "a", "a.1", "a.2", "y", "b", "b.1", "b.2", "z"]
            .iter()
            .map(|who| format!("{who} cancelled: cancelled explicitly"))
            .collect();
        assert_eq!(log.take(), expected);
    });
}

// contract N7: tree order holds when the first waiter reached is one that can only be woken
// once the tree's locks are released (a waker of its own, held in a slot): the children's
// owners, which the walk may wake on the spot, must then wait their turn behind it.
#[test]
fn tree_order_holds_when_the_first_waiter_has_a_waker_of_its_own() {
    block_on_current(async {
        let log = Log::new();
        let l = log.clone();
        let out = nursery(|n| async move {
            n.spawn(sleeper(l.clone(), "x"))?;
            n.spawn(sleeper(l.clone(), "y"))?;
            let scope = n.cancel_scope();
            n.spawn(async move {
                wait_all_tasks_blocked().await?;
                scope.cancel();
                Ok(())
            })?;
            let c = OwnWaker::new(sleep_forever()).await.unwrap_err();
            l.push(format!("body cancelled: {}", reason(&c)));
            Err::<(), _>(c.into())
        })
        .await;
        // The nursery's own cancellation, which it absorbed.
        assert!(
            matches!(&out, Err(NurseryError::Cancelled(c)) if c.is_absorbed()),
            "{out:?}"
        );
        assert_eq!(
            log.take(),
            [
                "body cancelled: cancelled explicitly",
                "x cancelled: cancelled explicitly",
                "y cancelled: cancelled explicitly",
            ]
        );
    });
}

// contract N7: a deadline of a scope around the outer nursery reaches the grandchildren.
#[test]
fn an_enclosing_deadline_reaches_nested_nurseries() {
    block_on_current(async {
        let t0 = trellis::now();
        let log = Log::new();
        let l = log.clone();
        let out = move_on_after(
            secs(5),
            nursery(|n| async move {
                n.spawn(subtree(l.clone(), "a"))?;
                sleep_forever().await?;
                Ok::<_, TestError>(())
            }),
        )
        .await;
        assert!(out.is_none());
        assert_eq!(since(t0), secs(5));
        let got = log.take();
        assert_eq!(
            got,
            [
                "a cancelled: deadline expired",
                "a.1 cancelled: deadline expired",
                "a.2 cancelled: deadline expired",
            ]
        );
    });
}

// ---------------------------------------------------------------------------------------------
// N8: children obey the scopes around the nursery, not around the spawn call.

// contract N8
#[test]
fn children_ignore_the_scopes_around_the_spawn_call() {
    block_on_current(async {
        let t0 = trellis::now();
        let log = Log::new();
        let l = log.clone();
        nursery(|n| async move {
            let out = move_on_after(secs(1), async {
                let l = l.clone();
                n.spawn(async move {
                    // The spawn site's deadline does not apply here.
                    assert_eq!(current_effective_deadline(), None);
                    sleep(secs(5)).await?;
                    l.push(format!("child done at {}s", since(t0).as_secs()));
                    Ok(())
                })?;
                sleep_forever().await?;
                Ok::<_, TestError>(())
            })
            .await;
            assert!(out.is_none());
            l.push(format!("body scope ended at {}s", since(t0).as_secs()));
            Ok::<_, TestError>(())
        })
        .await
        .unwrap();
        assert_eq!(log.take(), ["body scope ended at 1s", "child done at 5s"]);
    });
}

// contract N8: the scopes around the nursery do apply, deadline included.
#[test]
fn children_obey_the_scopes_around_the_nursery() {
    block_on_current(async {
        let t0 = trellis::now();
        let log = Log::new();
        let l = log.clone();
        let out = move_on_after(secs(3), async {
            nursery(|n| async move {
                move_on_after(secs(1), async {
                    n.spawn(async move {
                        assert_eq!(current_effective_deadline(), Some(t0 + secs(3)));
                        sleeper(l, "child").await
                    })?;
                    Ok::<_, TestError>(())
                })
                .await;
                Ok::<_, TestError>(())
            })
            .await
        })
        .await;
        assert!(out.is_none());
        assert_eq!(since(t0), secs(3));
        assert_eq!(log.take(), ["child cancelled: deadline expired"]);
    });
}

// contract N8: a task of one nursery spawning into another: the child belongs to the target.
#[test]
fn a_child_spawned_from_another_nursery_obeys_the_target_nursery() {
    block_on_current(async {
        let t0 = trellis::now();
        let log = Log::new();
        let l = log.clone();
        nursery(|target| async move {
            let l2 = l.clone();
            let out = nursery(|other| async move {
                other.spawn(async move {
                    target.spawn(async move {
                        sleep(secs(2)).await?;
                        l2.push(format!("target child done at {}s", since(t0).as_secs()));
                        Ok(())
                    })?;
                    sleep_forever().await?;
                    Ok(())
                })?;
                sleep(secs(1)).await?;
                other.cancel();
                Ok::<_, TestError>(())
            })
            .await;
            out.unwrap();
            l.push(format!("other nursery done at {}s", since(t0).as_secs()));
            Ok::<_, TestError>(())
        })
        .await
        .unwrap();
        assert_eq!(
            log.take(),
            ["other nursery done at 1s", "target child done at 2s"]
        );
    });
}

// ---------------------------------------------------------------------------------------------
// N9: start / TaskStatus::started.

// contract N9 (trio: test_nursery_start, happy path)
#[test]
fn start_returns_the_started_value_and_the_nursery_waits_for_the_task() {
    block_on_current(async {
        for s in [1, 2] {
            let t0 = trellis::now();
            nursery(|n| async move {
                let v = n
                    .start(|status| async move {
                        sleep(secs(s)).await?;
                        status.started(s);
                        sleep(secs(s)).await?;
                        Ok(())
                    })
                    .await?;
                assert_eq!(v, s);
                assert_eq!(since(t0), secs(s));
                Ok::<_, TestError>(())
            })
            .await
            .unwrap();
            assert_eq!(since(t0), secs(2 * s));
        }
    });
}

// contract N9: a task that ends right after `started` (before `start` resumes) still makes
// `start` return the value.
#[test]
fn a_task_that_ends_right_after_started_still_gives_the_value() {
    block_on_current(async {
        nursery(|n| async move {
            let v = n
                .start(|status| async move {
                    status.started("ready");
                    Ok(())
                })
                .await?;
            assert_eq!(v, "ready");
            Ok::<_, TestError>(())
        })
        .await
        .unwrap();
    });
}

// contract N9: an error before `started` comes out of `start` and does not cancel the target.
#[test]
fn an_error_before_started_is_returned_from_start_without_cancelling_the_target() {
    block_on_current(async {
        let t0 = trellis::now();
        let log = Log::new();
        let l = log.clone();
        nursery(|n| async move {
            let l2 = l.clone();
            n.spawn(async move {
                sleep(secs(2)).await?;
                l2.push("sibling done");
                Ok(())
            })?;
            let out = n
                .start(|_status: Status<()>| async {
                    sleep(secs(1)).await?;
                    Err::<(), _>(TestError::Fail("oops"))
                })
                .await;
            assert_eq!(out, Err(TestError::Fail("oops")));
            assert!(!n.cancel_scope().cancel_called());
            l.push("start failed");
            Ok::<_, TestError>(())
        })
        .await
        .unwrap();
        assert_eq!(since(t0), secs(2));
        assert_eq!(log.take(), ["start failed", "sibling done"]);
    });
}

// contract N9: finishing without `started` makes `start` fail with StartedNotCalled.
#[test]
fn a_task_that_never_calls_started_makes_start_fail() {
    block_on_current(async {
        nursery(|n| async move {
            let out = n
                .start(|_status: trellis::TaskStatus<u8>| async {
                    checkpoint().await.map_err(Error::from)
                })
                .await;
            assert!(matches!(out, Err(Error::StartedNotCalled)));
            assert_eq!(
                Error::StartedNotCalled.to_string(),
                "the task finished without calling TaskStatus::started"
            );
            Ok::<_, Error>(())
        })
        .await
        .unwrap();
    });
}

// contract N9 (trio: test_nursery_start_keeps_nursery_open)
#[test]
fn a_pending_start_keeps_the_target_nursery_open() {
    block_on_current(async {
        let t0 = trellis::now();
        nursery(|n1| async move {
            nursery(|n2| async move {
                // A task of n1 calls n2.start; the started task is ready after 2 s, done at 5 s.
                let start_in_background = || {
                    let n2 = n2.clone();
                    n1.spawn(async move {
                        n2.start(|status| async move {
                            sleep(secs(2)).await?;
                            status.started(());
                            sleep(secs(3)).await?;
                            Ok(())
                        })
                        .await
                    })
                };
                start_in_background()?;
                sleep(secs(1)).await?;
                start_in_background()?;
                // No task is in n2 now: only the pending starts keep it open, until 3 s, when
                // the second task moves in; it is done at 6 s.
                Ok::<_, TestError>(())
            })
            .await
            .unwrap();
            assert_eq!(since(t0), secs(6));
            Ok::<_, TestError>(())
        })
        .await
        .unwrap();

        // Also when the task crashes and never enters the nursery.
        let t0 = trellis::now();
        nursery(|n1| async move {
            nursery(|n2| async move {
                n1.spawn(async move {
                    let out = n2
                        .start(|_status: Status<()>| async {
                            sleep(secs(7)).await?;
                            Err::<(), _>(TestError::Fail("key"))
                        })
                        .await;
                    assert_eq!(out, Err(TestError::Fail("key")));
                    Ok(())
                })?;
                wait_all_tasks_blocked().await?;
                Ok::<_, TestError>(())
            })
            .await
            .unwrap();
            assert_eq!(since(t0), secs(7));
            Ok::<_, TestError>(())
        })
        .await
        .unwrap();
    });
}

fn task(id: u64, name: Option<&str>, parent: Option<u64>) -> TaskInfo {
    TaskInfo {
        id,
        name: name.map(str::to_owned),
        parent,
    }
}

// contract N9: before `started` the task runs under the caller (its scopes, its parent task);
// afterwards it belongs to the target nursery, and the caller's scopes no longer reach it.
#[test]
fn the_started_task_moves_under_the_target_nursery() {
    block_on_current(async {
        let t0 = trellis::now();
        let log = Log::new();
        let l = log.clone();
        nursery(|target| async move {
            let target2 = target.clone();
            let l2 = l.clone();
            // Task 1 calls start on main's nursery; the started task is task 2.
            target.spawn(async move {
                let caller = CancelScope::new();
                let c = caller.clone();
                let l3 = l2.clone();
                caller
                    .run(async move {
                        let v = target2
                            .start(|status| async move {
                                assert_eq!(lowlevel::current_task(), task(2, None, Some(1)));
                                sleep(secs(1)).await?;
                                status.started("ready");
                                assert_eq!(lowlevel::current_task(), task(2, None, Some(0)));
                                sleep(secs(2)).await?;
                                l3.push(format!("started task done at {}s", since(t0).as_secs()));
                                Ok(())
                            })
                            .await?;
                        assert_eq!(v, "ready");
                        // Cancelling the caller's scope no longer reaches the started task.
                        c.cancel();
                        checkpoint().await?;
                        Ok::<_, TestError>(())
                    })
                    .await;
                l2.push(format!("caller scope done at {}s", since(t0).as_secs()));
                Ok(())
            })?;
            Ok::<_, TestError>(())
        })
        .await
        .unwrap();
        assert_eq!(since(t0), secs(3));
        assert_eq!(
            log.take(),
            ["caller scope done at 1s", "started task done at 3s"]
        );
    });
}

// contract N9: before `started`, cancelling the caller's scope cancels the task; `start` returns
// that cancellation, the caller's scope absorbs it, and the target is not touched.
#[test]
fn before_started_the_task_obeys_the_callers_scopes() {
    block_on_current(async {
        let t0 = trellis::now();
        let log = Log::new();
        let l = log.clone();
        nursery(|n| async move {
            let out = move_on_after(secs(1), async {
                let l = l.clone();
                n.start(|status| async move {
                    let c = sleep(secs(5)).await.unwrap_err();
                    l.push(format!("task cancelled: {}", reason(&c)));
                    status.started(());
                    Err::<(), _>(c.into())
                })
                .await
            })
            .await;
            assert!(out.is_none());
            assert!(!n.cancel_scope().cancel_called());
            Ok::<_, TestError>(())
        })
        .await
        .unwrap();
        assert_eq!(since(t0), secs(1));
        assert_eq!(log.take(), ["task cancelled: deadline expired"]);
    });
}

// contract N9, as trio: when the caller of `start` is already cancelled, `started` does not move
// the task (it could carry a cancellation into a place where nothing absorbs it); the task stays
// under the caller and `start` reports how it ended.
#[test]
fn started_in_a_cancelled_caller_leaves_the_task_under_the_caller() {
    block_on_current(async {
        nursery(|n| async move {
            // Started, then a checkpoint: `start` returns the cancellation, the scope absorbs it.
            let scope = CancelScope::new();
            scope.cancel();
            let out = scope
                .run(n.start(|status| async move {
                    status.started("hi");
                    checkpoint().await?;
                    Ok(())
                }))
                .await;
            assert_eq!(out, None);
            assert!(scope.cancelled_caught());

            // Started, then done without a checkpoint: `start` returns the value.
            let scope = CancelScope::new();
            scope.cancel();
            let out = scope
                .run(n.start(|status| async move {
                    status.started(5);
                    Ok(())
                }))
                .await;
            assert_eq!(out, Some(Ok(5)));
            assert!(!scope.cancelled_caught());

            // Started, then failed: the error comes out of `start`, not out of the nursery.
            let scope = CancelScope::new();
            scope.cancel();
            let out = scope
                .run(n.start(|status| async move {
                    status.started(());
                    Err::<(), _>(TestError::Fail("whoops"))
                }))
                .await;
            assert_eq!(out, Some(Err(TestError::Fail("whoops"))));
            Ok::<_, TestError>(())
        })
        .await
        .unwrap();
    });
}

// contract N9 (trio: test_nursery_start_with_cancelled_nursery): a task that moves into a
// cancelled nursery, with its own children asleep, is cancelled there and everything ends.
#[test]
fn a_task_started_into_a_cancelled_nursery_is_cancelled_there() {
    for cancel_before_started in [true, false] {
        block_on_current(async move {
            let log = Log::new();
            let l = log.clone();
            nursery(|n| async move {
                let (target, scope) = n
                    .start(|status| async move {
                        nursery(|inner| async move {
                            status.started((inner.clone(), inner.cancel_scope()));
                            // Its own nursery's cancellation ends the body, which has nothing
                            // more to do.
                            let _ = sleep_forever().await;
                            Ok::<_, TestError>(())
                        })
                        .await
                        .map_err(|e| match e {
                            NurseryError::Cancelled(c) => TestError::Cancelled(c),
                            NurseryError::Failed(mut e) => e.remove(0),
                        })
                    })
                    .await?;
                let s2 = scope.clone();
                target
                    .start(|status| async move {
                        nursery(|kids| async move {
                            kids.spawn(sleeper(l.clone(), "k1"))?;
                            kids.spawn(sleeper(l.clone(), "k2"))?;
                            wait_all_tasks_blocked().await?;
                            if cancel_before_started {
                                s2.cancel();
                            }
                            status.started(());
                            Ok::<_, TestError>(())
                        })
                        .await
                        .map_err(|e| match e {
                            NurseryError::Cancelled(c) => TestError::Cancelled(c),
                            NurseryError::Failed(mut e) => e.remove(0),
                        })
                    })
                    .await?;
                scope.cancel();
                Ok::<_, TestError>(())
            })
            .await
            .unwrap();
            assert_eq!(
                log.take(),
                [
                    "k1 cancelled: cancelled explicitly",
                    "k2 cancelled: cancelled explicitly",
                ]
            );
        });
    }
}

// contract N9: dropping the `start` future before `started` drops the task's future at once and
// releases the target.
#[test]
fn dropping_a_pending_start_drops_the_task() {
    block_on_current(async {
        let t0 = trellis::now();
        let drops = DropCounter::new();
        let d = drops.clone();
        nursery(|n| async move {
            let guard = d.guard();
            let mut start = Box::pin(n.start(|status: Status<()>| async move {
                let _guard = guard;
                sleep(secs(10)).await?;
                status.started(());
                Ok(())
            }));
            assert!(poll_once(start.as_mut()).await.is_pending());
            sleep(secs(1)).await?;
            assert_eq!(d.count(), 0);
            drop(start);
            assert_eq!(d.count(), 1);
            assert_eq!(lowlevel::statistics().live_tasks, 0);
            Ok::<_, TestError>(())
        })
        .await
        .unwrap();
        assert_eq!(since(t0), secs(1));
        assert_eq!(drops.count(), 1);
    });
}

// contract N9 with N10: a panic before `started` resumes from `start`; the target goes on.
#[test]
fn a_panic_before_started_resumes_from_start() {
    block_on_current(async {
        nursery(|n| async move {
            let out = catch_unwind(n.start(|_status: Status<()>| async {
                checkpoint().await?;
                if true {
                    panic!("early");
                }
                Ok(())
            }))
            .await;
            assert_eq!(panic_message(out.unwrap_err().as_ref()), "early");
            assert!(!n.cancel_scope().cancel_called());
            Ok::<_, TestError>(())
        })
        .await
        .unwrap();
    });
}

// contract N9 with N2: after `started`, a failure goes to the target nursery and cancels it.
#[test]
fn a_failure_after_started_goes_to_the_target_nursery() {
    block_on_current(async {
        let log = Log::new();
        let l = log.clone();
        let out = nursery(|n| async move {
            n.spawn(sleeper(l.clone(), "sibling"))?;
            n.start(|status| async move {
                status.started(());
                sleep(secs(1)).await?;
                Err::<(), _>(TestError::Fail("late"))
            })
            .await?;
            l.push("start returned");
            Ok::<_, TestError>(())
        })
        .await;
        assert_eq!(out.unwrap_err().into_errors(), [TestError::Fail("late")]);
        assert_eq!(
            log.take(),
            ["start returned", "sibling cancelled: a sibling task failed"]
        );
    });
}

// ---------------------------------------------------------------------------------------------
// N10: panics.

#[derive(Debug, PartialEq)]
struct Payload(u32);

// contract N10: siblings are cancelled and awaited (cleanup included), then the panic resumes in
// the owner with its payload.
#[test]
fn a_child_panic_cancels_and_awaits_siblings_then_resumes_in_the_owner() {
    block_on_current(async {
        let t0 = trellis::now();
        let log = Log::new();
        let l = log.clone();
        let out = catch_unwind(nursery(|n| async move {
            n.spawn(async {
                sleep(secs(1)).await?;
                if true {
                    panic::panic_any(Payload(1));
                }
                Ok(())
            })?;
            let l2 = l.clone();
            n.spawn(async move {
                let c = sleep_forever().await.unwrap_err();
                l2.push(format!("sibling cancelled: {}", reason(&c)));
                shielded_sleep(secs(1)).await;
                l2.push(format!("sibling cleaned up at {}s", since(t0).as_secs()));
                Err::<(), _>(c.into())
            })?;
            sleeper(l, "body").await?;
            Ok::<_, TestError>(())
        }))
        .await;
        log.push(format!("panic caught at {}s", since(t0).as_secs()));
        let payload = out.unwrap_err();
        assert_eq!(payload.downcast_ref::<Payload>(), Some(&Payload(1)));
        assert_eq!(
            log.take(),
            [
                "body cancelled: a sibling task failed",
                "sibling cancelled: a sibling task failed",
                "sibling cleaned up at 2s",
                "panic caught at 2s",
            ]
        );
    });
}

// contract N10: a panic in the body also waits for the children.
#[test]
fn a_body_panic_cancels_and_awaits_the_children() {
    block_on_current(async {
        let t0 = trellis::now();
        let log = Log::new();
        let l = log.clone();
        let out = catch_unwind(nursery(|n| async move {
            n.spawn(async move {
                let c = sleep_forever().await.unwrap_err();
                shielded_sleep(secs(2)).await;
                l.push(format!("child cleaned up after {}", reason(&c)));
                Err::<(), _>(c.into())
            })?;
            checkpoint().await?;
            if true {
                panic::panic_any(Payload(2));
            }
            Ok::<_, TestError>(())
        }))
        .await;
        assert_eq!(
            out.unwrap_err().downcast_ref::<Payload>(),
            Some(&Payload(2))
        );
        assert_eq!(since(t0), secs(2));
        assert_eq!(log.take(), ["child cleaned up after a sibling task failed"]);
    });
}

// contract N10: several panics at once (and errors with them) never abort; the first panic
// resumes, the others are dropped.
#[test]
fn several_panics_at_once_resume_the_first() {
    block_on_current(async {
        let out = catch_unwind(nursery(|n| async move {
            n.spawn(async { Err::<(), _>(TestError::Fail("error")) })?;
            for i in 1..=3 {
                n.spawn(async move {
                    if true {
                        panic::panic_any(Payload(i));
                    }
                    Ok(())
                })?;
            }
            sleep_forever().await?;
            Ok::<_, TestError>(())
        }))
        .await;
        assert_eq!(
            out.unwrap_err().downcast_ref::<Payload>(),
            Some(&Payload(1))
        );

        // The body's panic comes first when it panics first.
        let out = catch_unwind(nursery(|n| async move {
            n.spawn(async {
                if true {
                    panic::panic_any(Payload(20));
                }
                Ok(())
            })?;
            if true {
                panic::panic_any(Payload(10));
            }
            Ok::<_, TestError>(())
        }))
        .await;
        assert_eq!(
            out.unwrap_err().downcast_ref::<Payload>(),
            Some(&Payload(10))
        );
        // The runtime is fine afterwards.
        checkpoint().await.unwrap();
    });
}

// contract N10: a panic from a child's destructor counts as the child panicking.
#[test]
fn a_panic_in_a_child_destructor_is_a_child_panic() {
    block_on_current(async {
        let log = Log::new();
        let l = log.clone();
        let out = catch_unwind(nursery(|n| async move {
            n.spawn(async {
                let _bomb = DropBomb;
                checkpoint().await?;
                Ok(())
            })?;
            sleeper(l, "body").await?;
            Ok::<_, TestError>(())
        }))
        .await;
        assert_eq!(panic_message(out.unwrap_err().as_ref()), "drop bomb");
        assert_eq!(log.take(), ["body cancelled: a sibling task failed"]);
    });
}

// contract N10 on the multi-threaded runtime: siblings busy on other workers are cancelled and
// awaited, and their futures dropped, before the panic reaches the owner.
#[test]
fn a_child_panic_on_the_multi_thread_runtime_waits_for_busy_siblings() {
    for _ in 0..20 {
        let drops = DropCounter::new();
        let d = drops.clone();
        let seen_drops = multi_thread(4).block_on(async move {
            let out = catch_unwind(nursery(|n| {
                let d = d.clone();
                async move {
                    let started = Arc::new(AtomicUsize::new(0));
                    for _ in 0..6 {
                        let guard = d.guard();
                        let started = started.clone();
                        n.spawn(async move {
                            let _guard = guard;
                            started.fetch_add(1, Ordering::SeqCst);
                            loop {
                                // Busy work between checkpoints.
                                let mut x = 0u64;
                                for i in 0..2_000 {
                                    x = x.wrapping_add(std::hint::black_box(i));
                                }
                                std::hint::black_box(x);
                                checkpoint().await?;
                            }
                            #[allow(unreachable_code)]
                            Ok::<(), TestError>(())
                        })?;
                    }
                    let started2 = started.clone();
                    n.spawn(async move {
                        while started2.load(Ordering::SeqCst) < 6 {
                            cancel_shielded_checkpoint().await?;
                        }
                        if true {
                            panic::panic_any(Payload(5));
                        }
                        Ok(())
                    })?;
                    Ok::<_, TestError>(())
                }
            }))
            .await;
            assert_eq!(
                out.unwrap_err().downcast_ref::<Payload>(),
                Some(&Payload(5))
            );
            (d.count(), lowlevel::statistics().live_tasks)
        });
        assert_eq!(seen_drops, (6, 0));
    }
}

// ---------------------------------------------------------------------------------------------
// N12: service tasks.

// contract N12: services are cancelled once the body and the ordinary children are done; their
// cancellation is not an error and does not hold the nursery open.
#[test]
fn services_are_cancelled_when_the_other_work_is_done() {
    block_on_current(async {
        let t0 = trellis::now();
        let log = Log::new();
        let l = log.clone();
        let out = nursery(|n| async move {
            let l2 = l.clone();
            let service = n.spawn_service(async move {
                let c = sleep_forever().await.unwrap_err();
                l2.push(format!(
                    "service cancelled at {}s: {}",
                    since(t0).as_secs(),
                    reason(&c)
                ));
                assert_eq!(c.reason(), &CancelReason::ServiceDone);
                Err::<(), _>(c.into())
            })?;
            let l3 = l.clone();
            n.spawn(async move {
                sleep(secs(3)).await?;
                l3.push("worker done");
                Ok(())
            })?;
            sleep(secs(1)).await?;
            l.push("body done");
            Ok::<_, TestError>(service)
        })
        .await;
        let service = out.unwrap();
        assert_eq!(since(t0), secs(3));
        assert!(matches!(service.await, Err(Error::TaskCancelled)));
        assert_eq!(
            log.take(),
            [
                "body done",
                "worker done",
                "service cancelled at 3s: the nursery's other tasks finished",
            ]
        );
    });
}

// contract N12: a service that takes time to shut down delays the nursery's exit by that much.
#[test]
fn a_service_may_clean_up_before_the_nursery_exits() {
    block_on_current(async {
        let t0 = trellis::now();
        nursery(|n| async move {
            n.spawn_service(async {
                if sleep_forever().await.is_err() {
                    shielded_sleep(secs(2)).await;
                }
                Ok(())
            })?;
            sleep(secs(1)).await?;
            Ok::<_, TestError>(())
        })
        .await
        .unwrap();
        assert_eq!(since(t0), secs(3));
    });
}

// contract N12 with N2: a failing service is an error like any child's.
#[test]
fn a_failing_service_cancels_the_nursery() {
    block_on_current(async {
        let log = Log::new();
        let l = log.clone();
        let out = nursery(|n| async move {
            n.spawn_service(async {
                sleep(secs(1)).await?;
                Err::<(), _>(TestError::Fail("service"))
            })?;
            n.spawn(sleeper(l.clone(), "worker"))?;
            sleeper(l, "body").await?;
            Ok::<_, TestError>(())
        })
        .await;
        assert_eq!(out.unwrap_err().into_errors(), [TestError::Fail("service")]);
        assert_eq!(
            log.take(),
            [
                "body cancelled: a sibling task failed",
                "worker cancelled: a sibling task failed",
            ]
        );
    });
}

// contract N12 with N9: a pending start counts as ordinary work, so services stay up until the
// started task is done.
#[test]
fn services_stay_up_while_a_start_is_pending() {
    block_on_current(async {
        let t0 = trellis::now();
        let log = Log::new();
        let l = log.clone();
        nursery(|n1| async move {
            nursery(|n2| async move {
                let l2 = l.clone();
                n2.spawn_service(async move {
                    let c = sleep_forever().await.unwrap_err();
                    l2.push(format!("service cancelled at {}s", since(t0).as_secs()));
                    Err::<(), _>(c.into())
                })?;
                let target = n2.clone();
                let l3 = l.clone();
                n1.spawn(async move {
                    target
                        .start(|status| async move {
                            sleep(secs(2)).await?;
                            status.started(());
                            sleep(secs(3)).await?;
                            l3.push(format!("started task done at {}s", since(t0).as_secs()));
                            Ok(())
                        })
                        .await
                })?;
                sleep(secs(1)).await?;
                Ok::<_, TestError>(())
            })
            .await
            .unwrap();
            Ok::<_, TestError>(())
        })
        .await
        .unwrap();
        assert_eq!(since(t0), secs(5));
        assert_eq!(
            log.take(),
            ["started task done at 5s", "service cancelled at 5s"]
        );
    });
}

// ---------------------------------------------------------------------------------------------
// TaskHandle.

#[test]
fn awaiting_a_handle_gives_the_childs_value() {
    block_on_current(async {
        let out = nursery(|n| async move {
            let h = n.spawn(async {
                sleep(secs(1)).await?;
                Ok((lowlevel::current_task().id, "forty-two"))
            })?;
            assert!(!h.is_finished());
            let id = h.id();
            let (seen_id, v) = h.await?;
            assert_eq!(seen_id, id);
            Ok::<_, TestError>(v)
        })
        .await;
        assert_eq!(out.unwrap(), "forty-two");

        // A handle outlives its nursery and still gives the value.
        let h = nursery(|n| async move { Ok::<_, TestError>(n.spawn(async { Ok(5) })?) })
            .await
            .unwrap();
        assert!(h.is_finished());
        assert_eq!(h.await.unwrap(), 5);
    });
}

// A failed child: its handle says TaskFailed, the error goes to the nursery. Awaiting is a
// checkpoint, so inside the nursery, which the failure cancelled, it reports that cancellation.
#[test]
fn a_failed_childs_handle_gives_task_failed() {
    block_on_current(async {
        let out = nursery(|n| async move {
            let failing = n.spawn(async {
                checkpoint().await?;
                Err::<u8, _>(TestError::Fail("child"))
            })?;
            let sleeping =
                n.spawn(async { sleeper(Log::new(), "sleeping").await.map(|()| 0u8) })?;
            let shielded = CancelScope::new()
                .shielded(true)
                .run(failing)
                .await
                .unwrap();
            assert!(matches!(shielded, Err(Error::TaskFailed)));
            match CancelScope::new().run(sleeping).await.unwrap() {
                Err(Error::Cancelled(c)) => assert_eq!(c.reason(), &CancelReason::Nursery),
                other => panic!("expected Cancelled, got {other:?}"),
            }
            Ok::<_, TestError>(())
        })
        .await;
        assert_eq!(out.unwrap_err().into_errors(), [TestError::Fail("child")]);
        assert_eq!(
            Error::TaskFailed.to_string(),
            "the task failed; its error was reported to its nursery"
        );
    });
}

// A cancelled child's handle says TaskCancelled.
#[test]
fn a_cancelled_childs_handle_gives_task_cancelled() {
    block_on_current(async {
        let h = nursery(|n| async move {
            let h = n.spawn(async { sleeper(Log::new(), "child").await.map(|()| 1) })?;
            wait_all_tasks_blocked().await?;
            n.cancel();
            Ok::<_, TestError>(h)
        })
        .await
        .unwrap();
        assert!(matches!(h.await, Err(Error::TaskCancelled)));
    });
}

// handle.cancel() cancels that child alone: the handle says TaskCancelled, siblings and the
// nursery go on, and the nursery's result is not a cancellation.
#[test]
fn cancelling_a_handle_cancels_only_that_child() {
    block_on_current(async {
        let t0 = trellis::now();
        let log = Log::new();
        let l = log.clone();
        let out = nursery(|n| async move {
            let victim = n.spawn(sleeper(l.clone(), "victim"))?;
            let l2 = l.clone();
            let sibling = n.spawn(async move {
                sleep(secs(2)).await?;
                l2.push("sibling done");
                Ok(3)
            })?;
            sleep(secs(1)).await?;
            victim.cancel();
            assert!(matches!(victim.await, Err(Error::TaskCancelled)));
            assert!(!n.cancel_scope().cancel_called());
            Ok::<_, TestError>(sibling.await? * 2)
        })
        .await;
        assert_eq!(out.unwrap(), 6);
        assert_eq!(since(t0), secs(2));
        assert_eq!(
            log.take(),
            ["victim cancelled: cancelled explicitly", "sibling done"]
        );
    });
}

// Awaiting a handle is a checkpoint: cancelled awaiting code gets Cancelled, the child goes on.
#[test]
fn awaiting_a_handle_in_a_cancelled_scope_fails_with_cancelled() {
    block_on_current(async {
        let t0 = trellis::now();
        nursery(|n| async move {
            let h = n.spawn(async {
                sleep(secs(2)).await?;
                Ok(1)
            })?;
            let scope = CancelScope::with_timeout(secs(1));
            let h = Arc::new(Mutex::new(Some(h)));
            let h2 = h.clone();
            let out = scope
                .run(async move {
                    let mut handle = h2.lock().unwrap().take().unwrap();
                    let r = poll_until_ready(&mut handle).await;
                    *h2.lock().unwrap() = Some(handle);
                    r
                })
                .await;
            assert!(out.is_none());
            assert_eq!(since(t0), secs(1));
            let handle = h.lock().unwrap().take().unwrap();
            assert_eq!(handle.await.unwrap(), 1);
            assert_eq!(since(t0), secs(2));
            Ok::<_, TestError>(())
        })
        .await
        .unwrap();
    });
}

/// Awaits an `Unpin` future through a mutable reference (so the caller keeps it afterwards).
async fn poll_until_ready<F: std::future::Future + Unpin>(fut: &mut F) -> F::Output {
    std::future::poll_fn(|cx| std::pin::Pin::new(&mut *fut).poll(cx)).await
}

// Dropping a handle neither cancels nor detaches the child.
#[test]
fn dropping_a_handle_does_not_cancel_the_child() {
    block_on_current(async {
        let t0 = trellis::now();
        let log = Log::new();
        let l = log.clone();
        nursery(|n| async move {
            drop(n.spawn(async move {
                sleep(secs(1)).await?;
                l.push("child done");
                Ok(())
            })?);
            Ok::<_, TestError>(())
        })
        .await
        .unwrap();
        assert_eq!(since(t0), secs(1));
        assert_eq!(log.take(), ["child done"]);
    });
}

// ---------------------------------------------------------------------------------------------
// Introspection.

// trio: test_current_task, test_task_tree_introspection
#[test]
fn current_task_reports_ids_names_and_parents() {
    block_on_current(async {
        assert_eq!(lowlevel::current_task(), task(0, Some("main"), None));
        nursery(|n| async move {
            // The body is part of the owner's task.
            assert_eq!(lowlevel::current_task(), task(0, Some("main"), None));
            n.spawn_named("worker", async {
                assert_eq!(lowlevel::current_task(), task(1, Some("worker"), Some(0)));
                nursery(|inner| async move {
                    inner.spawn(async {
                        assert_eq!(lowlevel::current_task(), task(3, None, Some(1)));
                        // Scopes do not change the task.
                        CancelScope::new()
                            .run(async {
                                assert_eq!(lowlevel::current_task(), task(3, None, Some(1)));
                            })
                            .await;
                        Ok(())
                    })?;
                    Ok::<_, TestError>(())
                })
                .await
                .unwrap();
                Ok(())
            })?;
            n.spawn(async {
                assert_eq!(lowlevel::current_task(), task(2, None, Some(0)));
                Ok(())
            })?;
            Ok::<_, TestError>(())
        })
        .await
        .unwrap();
    });
}

#[test]
fn task_tree_shows_the_live_tree() {
    block_on_current(async {
        let (before, after) = nursery(|n| async move {
            n.spawn_named("server", async {
                nursery(|conns| async move {
                    conns.spawn_named("conn", sleeper(Log::new(), "conn"))?;
                    sleep_forever().await?;
                    Ok::<_, TestError>(())
                })
                .await
                .map_err(|e| match e {
                    NurseryError::Cancelled(c) => TestError::Cancelled(c),
                    NurseryError::Failed(mut e) => e.remove(0),
                })
            })?;
            n.spawn(sleeper(Log::new(), "plain"))?;
            n.spawn_service(sleeper(Log::new(), "service"))?;
            wait_all_tasks_blocked().await?;
            let before = lowlevel::task_tree();
            n.cancel();
            let after = lowlevel::task_tree();
            Ok::<_, TestError>((before, after))
        })
        .await
        .unwrap();
        assert_eq!(
            before,
            "task 0 \"main\"\n\
             \x20 nursery\n\
             \x20   task 1 \"server\"\n\
             \x20     nursery\n\
             \x20       task 4 \"conn\"\n\
             \x20   task 2\n\
             \x20   task 3 (service)\n"
        );
        assert_eq!(
            after,
            "task 0 \"main\"\n\
             \x20 nursery\n\
             \x20   task 1 \"server\" [cancelled]\n\
             \x20     nursery\n\
             \x20       task 4 \"conn\" [cancelled]\n\
             \x20   task 2 [cancelled]\n\
             \x20   task 3 (service) [cancelled]\n"
        );
        assert_eq!(lowlevel::task_tree(), "task 0 \"main\"\n");
    });
}

// ---------------------------------------------------------------------------------------------
// spawn_local.

#[test]
fn spawn_local_runs_a_future_that_is_not_send_on_a_current_thread_runtime() {
    block_on_current(async {
        let out = nursery(|n| async move {
            let shared = Rc::new(std::cell::Cell::new(1));
            let s = shared.clone();
            let h = n.spawn_local(async move {
                checkpoint().await?;
                s.set(s.get() + 1);
                Ok(Rc::new("rc value"))
            })?;
            let v = h.await?;
            assert_eq!(shared.get(), 2);
            Ok::<_, TestError>(*v)
        })
        .await;
        assert_eq!(out.unwrap(), "rc value");

        // From another thread the call is refused.
        nursery(|n| async move {
            let n2 = n.clone();
            let refused = std::thread::spawn(move || {
                matches!(
                    n2.spawn_local(async { Ok(()) }),
                    Err(Error::NotCurrentThread)
                )
            })
            .join()
            .unwrap();
            assert!(refused);
            Ok::<_, TestError>(())
        })
        .await
        .unwrap();
    });
}

#[test]
fn spawn_local_on_a_multi_thread_runtime_is_refused() {
    multi_thread(2).block_on(async {
        nursery(|n| async move {
            let rc = Rc::new(1);
            let refused = n.spawn_local(async move {
                let _rc = rc;
                Ok(())
            });
            assert!(matches!(refused, Err(Error::NotCurrentThread)));
            assert_eq!(
                Error::NotCurrentThread.to_string(),
                "spawn_local needs a current-thread runtime (Flavor::CurrentThread)"
            );
            Ok::<_, TestError>(())
        })
        .await
        .unwrap();
    });
}

/// Compiles only if `T` is not `Send`: with `T: Send` both impls apply and the call is ambiguous.
trait AmbiguousIfSend<A> {
    fn check() {}
}
impl<T: ?Sized> AmbiguousIfSend<()> for T {}
impl<T: ?Sized + Send> AmbiguousIfSend<u8> for T {}

// The handle of a task whose value is not Send cannot leave the runtime's thread (it would hand
// the value to another thread); other handles can.
const _: fn() = || {
    <trellis::TaskHandle<Rc<u8>> as AmbiguousIfSend<_>>::check();
    fn is_send<T: Send>() {}
    is_send::<trellis::TaskHandle<u8>>();
};
