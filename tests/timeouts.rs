//! Time: sleeping, `move_on_*` / `fail_*` (contract C6), nested timeouts with exact virtual
//! times, and principle 4 for timers (a cancelled or dropped sleep leaves no timer behind).
//!
//! Ports trio's `test_timeouts.py`; every time is virtual (a `MockClock` with autojump at zero
//! on a current-thread runtime) and asserted exactly.

mod common;

use std::pin::pin;
use std::time::Duration;

use common::{current_thread, ms, poll_once, secs, Log};
use trellis::testing::wait_all_tasks_blocked;
use trellis::{
    checkpoint, current_effective_deadline, fail_after, fail_at, lowlevel, move_on_after,
    move_on_at, now, nursery, sleep, sleep_forever, sleep_until, CancelReason, CancelScope,
    Cancelled, Error, NurseryError, TimedOut,
};

// ---------------------------------------------------------------------------------------------
// Sleeping (trio test_sleep)

// principle 5: sleep and sleep_until take exactly their virtual duration.
#[test]
fn sleep_and_sleep_until_take_exactly_their_time() {
    let (rt, _clock) = current_thread();
    rt.block_on(async {
        let t0 = now();
        sleep_until(t0 + secs(1)).await.unwrap();
        assert_eq!(now() - t0, secs(1));
        sleep(secs(1)).await.unwrap();
        assert_eq!(now() - t0, secs(2));
        let odd = Duration::new(3, 999_999_999);
        sleep(odd).await.unwrap();
        assert_eq!(now() - t0, secs(2) + odd);
        // A thousand small steps do not drift.
        let t1 = now();
        for _ in 0..1_000 {
            sleep(ms(100)).await.unwrap();
        }
        assert_eq!(now() - t1, secs(100));
        assert_eq!(lowlevel::statistics().timers, 0);
    });
}

// principle 3: sleep(0) and sleep_until(the past) do not block but are still checkpoints: they
// yield (another task runs in between) ...
#[test]
fn zero_sleeps_yield() {
    let (rt, _clock) = current_thread();
    rt.block_on(async {
        let t0 = now();
        let log = Log::default();
        let result = nursery(|n| {
            let log = log.clone();
            async move {
                for name in ["first", "second"] {
                    let l = log.clone();
                    n.spawn(async move {
                        l.push(name);
                        Ok(())
                    })?;
                }
                log.push("before");
                sleep(Duration::ZERO).await?;
                log.push("after sleep(0)");
                Ok::<_, Error>(())
            }
        })
        .await;
        result.unwrap();
        assert_eq!(log.take(), ["before", "first", "second", "after sleep(0)"]);

        let result = nursery(|n| {
            let log = log.clone();
            async move {
                let l = log.clone();
                n.spawn(async move {
                    l.push("child");
                    Ok(())
                })?;
                log.push("before");
                sleep_until(t0 - secs(1)).await?;
                log.push("after sleep_until(past)");
                Ok::<_, Error>(())
            }
        })
        .await;
        result.unwrap();
        assert_eq!(log.take(), ["before", "child", "after sleep_until(past)"]);
        assert_eq!(now(), t0);
    });
}

// principle 3, C5 (trio test_sleep): ... and cancel points: in a scope whose deadline is now,
// sleep(0) fails.
#[test]
fn zero_sleep_in_an_expired_scope_is_cancelled() {
    let (rt, _clock) = current_thread();
    rt.block_on(async {
        let out = move_on_at(now(), async {
            let r = sleep(Duration::ZERO).await;
            assert_eq!(r.as_ref().unwrap_err().reason(), &CancelReason::Deadline);
            r
        })
        .await;
        assert_eq!(out, None);
    });
}

// principle 3: a sleep's duration counts from its first poll (the future is lazy); a timeout
// (move_on_after, fail_after, CancelScope::with_timeout) counts from the call that creates it.
// trio >= 0.27 starts a relative timeout when its scope is entered (test_timeout_deadline_on_entry);
// trellis reads the clock at the call, a decision recorded in docs/design.md.
#[test]
fn sleeps_count_from_the_first_poll_and_timeouts_from_the_call() {
    let (rt, clock) = current_thread();
    rt.block_on(async {
        let created = now();
        let nap = sleep(secs(1));
        clock.jump(secs(5));
        let polled = now();
        nap.await.unwrap();
        assert_eq!(now() - polled, secs(1));
        assert_eq!(now() - created, secs(6));

        let created = now();
        let scope = CancelScope::with_timeout(secs(5));
        assert_eq!(scope.deadline(), Some(created + secs(5)));
        clock.jump(secs(3));
        scope
            .run(async {
                assert_eq!(current_effective_deadline(), Some(created + secs(5)));
            })
            .await;

        let created = now();
        let timeout = move_on_after(secs(5), async {
            sleep_forever().await?;
            Ok::<(), Cancelled>(())
        });
        clock.jump(secs(3));
        let entered = now();
        assert_eq!(timeout.await, None);
        assert_eq!(now() - entered, secs(2));
        assert_eq!(now() - created, secs(5));

        let created = now();
        let timeout = fail_after(secs(5), async {
            Ok::<_, Cancelled>(current_effective_deadline())
        });
        clock.jump(secs(3));
        assert_eq!(timeout.await, Ok(Ok(Some(created + secs(5)))));
    });
}

// ---------------------------------------------------------------------------------------------
// move_on_* and fail_* (contract C6; trio test_move_on_after, test_fail)

// contract C6: move_on_after ends the work exactly at its deadline and gives None.
#[test]
fn move_on_after_gives_none_at_its_deadline() {
    let (rt, _clock) = current_thread();
    rt.block_on(async {
        let t0 = now();
        let out = move_on_after(secs(1), async {
            sleep(secs(100)).await?;
            Ok::<_, Cancelled>("slept")
        })
        .await;
        assert_eq!(out, None);
        assert_eq!(now() - t0, secs(1));

        // Work that finishes in time passes its value through.
        let out = move_on_after(secs(100), async {
            sleep(secs(1)).await?;
            Ok::<_, Cancelled>("slept")
        })
        .await;
        assert_eq!(out, Some(Ok("slept")));
        assert_eq!(now() - t0, secs(2));
        assert_eq!(lowlevel::statistics().timers, 0);
    });
}

// contract C6: fail_at / fail_after give Err(TimedOut) exactly at their deadline; work that
// finishes in time gives Ok(its output).
#[test]
fn fail_at_and_fail_after_time_out_exactly() {
    let (rt, _clock) = current_thread();
    rt.block_on(async {
        let t0 = now();
        let out = fail_at(t0 + secs(1), sleep(secs(100))).await;
        assert_eq!(out, Err(TimedOut));
        assert_eq!(now() - t0, secs(1));

        let out = fail_at(now() + secs(100), sleep(Duration::ZERO)).await;
        assert_eq!(out, Ok(Ok(())));

        let t1 = now();
        let out = fail_after(secs(1), sleep(secs(100))).await;
        assert_eq!(out, Err(TimedOut));
        assert_eq!(now() - t1, secs(1));

        let out = fail_after(secs(100), sleep(Duration::ZERO)).await;
        assert_eq!(out, Ok(Ok(())));
        assert_eq!(now() - t0, secs(2));

        // TimedOut converts into the crate's error and into io::Error for `?`.
        let e: Error = TimedOut.into();
        assert!(matches!(e, Error::TimedOut(TimedOut)));
        let e: std::io::Error = TimedOut.into();
        assert_eq!(e.kind(), std::io::ErrorKind::TimedOut);
    });
}

// contract C6: errors other than the scope's own cancellation pass through move_on_* (in Some)
// and fail_* (in Ok), even when the deadline has passed by then.
#[test]
fn other_errors_pass_through_timeouts() {
    let (rt, clock) = current_thread();
    rt.block_on(async {
        let out = move_on_after(secs(1), async {
            sleep(ms(500)).await.unwrap();
            Err::<(), _>(Error::InvalidArgument("bad input"))
        })
        .await;
        assert!(matches!(
            out,
            Some(Err(Error::InvalidArgument("bad input")))
        ));

        let out = fail_after(secs(1), async {
            Err::<(), _>(std::io::Error::new(std::io::ErrorKind::NotFound, "gone"))
        })
        .await;
        let inner = out.expect("not timed out").unwrap_err();
        assert_eq!(inner.kind(), std::io::ErrorKind::NotFound);

        // The deadline passed, but the code returned its own error without a checkpoint.
        let out = fail_after(secs(1), async {
            clock.jump(secs(2));
            Err::<(), _>(Error::InvalidArgument("mine"))
        })
        .await;
        assert!(matches!(out, Ok(Err(Error::InvalidArgument("mine")))));
    });
}

// contract C6: a cancellation from an enclosing scope passes through move_on_* and fail_*
// untouched (neither None nor TimedOut), and the enclosing scope absorbs it.
#[test]
fn outer_cancellations_pass_through_timeouts() {
    let (rt, _clock) = current_thread();
    rt.block_on(async {
        let t0 = now();
        let outer = CancelScope::new();
        let log = Log::default();
        let out = outer
            .run(async {
                let inner = move_on_after(secs(10), async {
                    outer.cancel_with_reason("outer");
                    sleep(secs(1)).await?;
                    Ok::<(), Cancelled>(())
                })
                .await;
                log.push(format!("move_on_after: {inner:?}"));
                let inner = fail_after(secs(10), async {
                    sleep(secs(1)).await?;
                    Ok::<(), Cancelled>(())
                })
                .await;
                log.push(format!("fail_after: {inner:?}"));
                inner.unwrap()
            })
            .await;
        assert_eq!(out, None);
        assert!(outer.cancelled_caught());
        assert_eq!(
            log.take(),
            [
                "move_on_after: Some(Err(Cancelled { reason: Explicit(Some(\"outer\")) }))",
                "fail_after: Ok(Err(Cancelled { reason: Explicit(Some(\"outer\")) }))",
            ]
        );
        assert_eq!(now(), t0);
    });
}

// contract C6 (trio: TooSlowError is raised on exit only if the scope caught a cancellation):
// a fail_after whose deadline passes while the code runs without a checkpoint gives the code's
// value; one whose code then reaches a checkpoint times out.
#[test]
fn fail_after_times_out_only_if_its_cancellation_ended_the_work() {
    let (rt, clock) = current_thread();
    rt.block_on(async {
        let out = fail_after(secs(1), async {
            clock.jump(secs(2));
            Ok::<_, Cancelled>(5)
        })
        .await;
        assert_eq!(out, Ok(Ok(5)));

        let out = fail_after(secs(1), async {
            clock.jump(secs(2));
            checkpoint().await?;
            Ok::<_, Cancelled>(5)
        })
        .await;
        assert_eq!(out, Err(TimedOut));

        // Swallowing the cancellation is not timing out either.
        let out = fail_after(secs(1), async {
            let r = sleep(secs(2)).await;
            Ok::<_, Cancelled>(r.is_err())
        })
        .await;
        assert_eq!(out, Ok(Ok(true)));
    });
}

// contract C5, C6: deadlines in the past: move_on_at / fail_at start the work, whose first
// checkpoint fails; work with no checkpoint completes.
#[test]
fn deadlines_in_the_past() {
    let (rt, _clock) = current_thread();
    rt.block_on(async {
        let t0 = now();
        let log = Log::default();
        let out = move_on_at(t0 - secs(10), async {
            log.push("started");
            sleep(secs(1)).await?;
            log.push("not reached");
            Ok::<(), Cancelled>(())
        })
        .await;
        assert_eq!(out, None);
        assert_eq!(log.take(), ["started"]);

        let out = fail_at(t0 - secs(10), sleep(secs(1))).await;
        assert_eq!(out, Err(TimedOut));

        let out = fail_at(t0 - secs(10), async { Ok::<_, Cancelled>("no checkpoint") }).await;
        assert_eq!(out, Ok(Ok("no checkpoint")));

        let out = move_on_after(Duration::ZERO, checkpoint()).await;
        assert_eq!(out, None);
        assert_eq!(now(), t0);
    });
}

// contract C3, C5, C6: nested timeouts end at exact virtual times, each absorbed by its own
// scope; when an outer deadline comes first, the inner timeout passes the cancellation on.
#[test]
fn nested_timeouts_with_exact_times() {
    let (rt, _clock) = current_thread();
    rt.block_on(async {
        let t0 = now();
        let log = Log::default();

        // Inner first: inner gives None at 5 s, outer at 10 s.
        let out = move_on_after(secs(10), async {
            let inner = move_on_after(secs(5), sleep_forever()).await;
            log.push(format!(
                "inner {:?} at {:?}",
                inner.map(|_| "value"),
                now() - t0
            ));
            sleep_forever().await?;
            Ok::<(), Cancelled>(())
        })
        .await;
        log.push(format!("outer {out:?} at {:?}", now() - t0));
        assert_eq!(log.take(), ["inner None at 5s", "outer None at 10s"]);

        // Outer first: at 15 s the outer deadline passes; the inner (due at 20 s) passes it on.
        let t1 = now();
        let out = move_on_after(secs(5), async {
            let inner = move_on_after(secs(10), async {
                sleep_forever().await?;
                Ok::<(), Cancelled>(())
            })
            .await;
            log.push(format!("inner {inner:?} at {:?}", now() - t1));
            inner.unwrap()
        })
        .await;
        log.push(format!("outer {out:?} at {:?}", now() - t1));
        assert_eq!(
            log.take(),
            [
                "inner Some(Err(Cancelled { reason: Deadline })) at 5s",
                "outer None at 5s"
            ]
        );

        // fail_after inside move_on_after, each ending first in turn.
        let t2 = now();
        let out = move_on_after(secs(3), async {
            let r = fail_after(secs(2), sleep_forever()).await;
            log.push(format!("fail_after(2) {r:?} at {:?}", now() - t2));
            let r = fail_after(secs(5), sleep_forever()).await;
            log.push(format!("fail_after(5) {r:?} at {:?}", now() - t2));
            r.unwrap()?;
            Ok::<(), Cancelled>(())
        })
        .await;
        assert_eq!(out, None);
        assert_eq!(
            log.take(),
            [
                "fail_after(2) Err(TimedOut) at 2s",
                "fail_after(5) Ok(Err(Cancelled { reason: Deadline })) at 3s",
            ]
        );

        // Three levels with the same deadline: the outermost absorbs.
        let t3 = now();
        let deadline = t3 + secs(4);
        let (a, b, c) = (
            CancelScope::with_deadline(deadline),
            CancelScope::with_deadline(deadline),
            CancelScope::with_deadline(deadline),
        );
        let out = a.run(b.run(c.run(sleep_forever()))).await;
        assert_eq!(out, None);
        assert_eq!(now() - t3, secs(4));
        assert!(a.cancelled_caught() && !b.cancelled_caught() && !c.cancelled_caught());
        assert!(a.cancel_called() && b.cancel_called() && c.cancel_called());
        assert_eq!(lowlevel::statistics().timers, 0);
    });
}

// contract C6, N2: a timeout around a nursery cancels all its tasks at the deadline; the
// nursery reports the cancellation, which the timeout absorbs.
#[test]
fn a_timeout_around_a_nursery() {
    let (rt, _clock) = current_thread();
    rt.block_on(async {
        let t0 = now();
        let log = Log::default();
        let out = move_on_after(secs(35), {
            let log = log.clone();
            nursery(|n| async move {
                for step in [10, 15] {
                    let l = log.clone();
                    n.spawn(async move {
                        loop {
                            sleep(secs(step)).await?;
                            l.push(format!("tick {step} at {:?}", now() - t0));
                        }
                        #[allow(unreachable_code)]
                        Ok::<(), Error>(())
                    })?;
                }
                Ok::<_, Error>(())
            })
        })
        .await;
        let out: Option<Result<(), NurseryError<Error>>> = out;
        assert!(out.is_none());
        assert_eq!(now() - t0, secs(35));
        assert_eq!(
            log.take(),
            [
                "tick 10 at 10s",
                "tick 15 at 15s",
                "tick 10 at 20s",
                // Both due at 30 s: timers with the same deadline fire in the order they were
                // set (the 15 s sleeper's at 15 s, the 10 s sleeper's at 20 s).
                "tick 15 at 30s",
                "tick 10 at 30s",
            ]
        );
    });
}

// ---------------------------------------------------------------------------------------------
// Principle 4: no timer left behind

// principle 4: a sleep cancelled while blocked removes its timer.
#[test]
fn a_cancelled_sleep_leaves_no_timer() {
    let (rt, _clock) = current_thread();
    rt.block_on(async {
        let scope = CancelScope::new();
        let result = nursery(|n| {
            let scope = scope.clone();
            async move {
                let s = scope.clone();
                n.spawn(async move {
                    s.run(sleep(secs(3600))).await;
                    Ok(())
                })?;
                wait_all_tasks_blocked().await?;
                assert_eq!(lowlevel::statistics().timers, 1);
                scope.cancel();
                Ok::<_, Error>(())
            }
        })
        .await;
        result.unwrap();
        assert!(scope.cancelled_caught());
        assert_eq!(lowlevel::statistics().timers, 0);

        // Many sleepers cancelled together by their nursery.
        let result = nursery(|n| async move {
            for i in 1..=100 {
                n.spawn(async move {
                    sleep(secs(i)).await?;
                    Ok(())
                })?;
            }
            wait_all_tasks_blocked().await?;
            assert_eq!(lowlevel::statistics().timers, 100);
            n.cancel();
            Ok::<_, Error>(())
        })
        .await;
        result.unwrap();
        assert_eq!(lowlevel::statistics().timers, 0);
    });
}

// principle 4: a sleep future dropped while pending (not cancelled, just dropped) removes its
// timer; so does a timeout scope dropped mid-flight.
#[test]
fn a_dropped_sleep_leaves_no_timer() {
    let (rt, _clock) = current_thread();
    rt.block_on(async {
        let t0 = now();
        {
            let mut nap = pin!(sleep(secs(10)));
            assert!(poll_once(nap.as_mut()).await.is_pending());
            assert_eq!(lowlevel::statistics().timers, 1);
        }
        assert_eq!(lowlevel::statistics().timers, 0);
        {
            let mut timeout = pin!(move_on_after(secs(10), sleep(secs(20))));
            assert!(poll_once(timeout.as_mut()).await.is_pending());
            // The scope's deadline and the sleep.
            assert_eq!(lowlevel::statistics().timers, 2);
        }
        assert_eq!(lowlevel::statistics().timers, 0);
        // A sleep that was never polled never had a timer.
        drop(sleep(secs(10)));
        assert_eq!(lowlevel::statistics().timers, 0);
        // Nothing fires later either: time does not move.
        checkpoint().await.unwrap();
        assert_eq!(now(), t0);
    });
}

// principle 4: a finished sleep, and a timeout scope whose work finished early, leave nothing.
#[test]
fn finished_sleeps_and_timeouts_leave_no_timer() {
    let (rt, _clock) = current_thread();
    rt.block_on(async {
        sleep(secs(1)).await.unwrap();
        assert_eq!(lowlevel::statistics().timers, 0);
        let out = fail_after(secs(100), sleep(secs(1))).await;
        assert_eq!(out, Ok(Ok(())));
        assert_eq!(lowlevel::statistics().timers, 0);
        let out = move_on_after(secs(1), sleep(secs(100))).await;
        assert_eq!(out, None);
        assert_eq!(lowlevel::statistics().timers, 0);
    });
}

// principle 5: sleep_forever ends only by cancellation, at the exact time of the cancel.
#[test]
fn sleep_forever_ends_only_by_cancellation() {
    let (rt, _clock) = current_thread();
    rt.block_on(async {
        let t0 = now();
        let out = move_on_at(t0 + secs(86_400 * 365), sleep_forever()).await;
        assert_eq!(out, None);
        assert_eq!(now() - t0, secs(86_400 * 365));
    });
}
