//! `testing::wait_all_tasks_blocked`: it wakes only when every other task is blocked; waiters
//! with smaller cushions wake first, in the order they started waiting; it is a checkpoint.
//! Ports the wait_all_tasks_blocked scenarios of trio's `test_testing.py`.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{current_thread, current_thread_on, ms, multi_thread, Log};
use trellis::testing::{wait_all_tasks_blocked, wait_all_tasks_blocked_for, MockClock};
use trellis::{checkpoint, now, nursery, sleep, sleep_forever, CancelReason, CancelScope, Error};

// trio test_wait_all_tasks_blocked: the waiters wake only once the busy task has stopped
// running; both wake, in the order they started waiting.
#[test]
fn waiters_wake_once_every_other_task_is_blocked() {
    let rt = current_thread_on(None);
    rt.block_on(async {
        let log = Log::default();
        let result = nursery(|n| {
            let log = log.clone();
            async move {
                let l = log.clone();
                n.spawn(async move {
                    for _ in 0..10 {
                        checkpoint().await?;
                    }
                    l.push("busy bee exhausted");
                    Ok(())
                })?;
                for name in ["first", "second"] {
                    let l = log.clone();
                    n.spawn(async move {
                        wait_all_tasks_blocked().await?;
                        l.push(format!("quiet at last! ({name})"));
                        Ok(())
                    })?;
                }
                Ok::<_, Error>(())
            }
        })
        .await;
        result.unwrap();
        assert_eq!(
            log.take(),
            [
                "busy bee exhausted",
                "quiet at last! (first)",
                "quiet at last! (second)"
            ]
        );
    });
}

// trio test_wait_all_tasks_blocked ("check cancellation"), contract C1: a waiter whose scope is
// cancelled wakes at once with Cancelled.
#[test]
fn a_waiter_is_cancellable() {
    let rt = current_thread_on(None);
    rt.block_on(async {
        let log = Log::default();
        let result = nursery(|n| {
            let log = log.clone();
            async move {
                let l = log.clone();
                n.spawn(async move {
                    let r = wait_all_tasks_blocked().await;
                    if let Err(c) = &r {
                        l.push(format!("ok: {:?}", c.reason()));
                    }
                    r?;
                    Ok(())
                })?;
                n.cancel();
                Ok::<_, Error>(())
            }
        })
        .await;
        // The body returned its value before any checkpoint; the nursery absorbed its own cancel.
        result.unwrap();
        assert_eq!(log.take(), ["ok: Explicit(None)"]);

        // Blocked in the wait when the cancel comes: the main task keeps a task running, so the
        // waiter cannot be woken by quiescence, only by the cancel.
        let scope = CancelScope::new();
        let result = nursery(|n| {
            let (log, scope) = (log.clone(), scope.clone());
            async move {
                let (l, s) = (log.clone(), scope.clone());
                n.spawn(async move {
                    s.run(async {
                        let r = wait_all_tasks_blocked().await;
                        l.push(format!("cancelled: {}", r.is_err()));
                        r
                    })
                    .await;
                    Ok(())
                })?;
                checkpoint().await?;
                scope.cancel_with_reason("stop waiting");
                checkpoint().await?;
                Ok::<_, Error>(())
            }
        })
        .await;
        result.unwrap();
        assert_eq!(log.take(), ["cancelled: true"]);
        assert!(scope.cancelled_caught());
        assert_eq!(
            scope.cancel_reason(),
            Some(CancelReason::Explicit(Some("stop waiting".into())))
        );
    });
}

// trio test_wait_all_tasks_blocked_with_timeouts: with a stopped mock clock (no autojump), a
// sleeping task counts as blocked; after a jump it runs before the next wait returns.
#[test]
fn sleeping_tasks_count_as_blocked() {
    let clock = MockClock::new();
    let rt = current_thread_on(Some(&clock));
    rt.block_on(async {
        let log = Log::default();
        let result = nursery(|n| {
            let log = log.clone();
            async move {
                let l = log.clone();
                n.spawn(async move {
                    l.push("tt start");
                    sleep(Duration::from_secs(5)).await?;
                    l.push("tt finished");
                    Ok(())
                })?;
                wait_all_tasks_blocked().await?;
                assert_eq!(log.take(), ["tt start"]);
                clock.jump(Duration::from_secs(10));
                wait_all_tasks_blocked().await?;
                assert_eq!(log.take(), ["tt finished"]);
                Ok::<_, Error>(())
            }
        })
        .await;
        result.unwrap();
    });
}

// trio test_wait_all_tasks_blocked_with_cushion: a cushion is how long every task must stay
// blocked. A task that blocks for 1 ms at a time does not satisfy a 20 ms cushion; once it is
// done, the waiters wake by cushion (smallest first), equal cushions in the order they started
// waiting. (Real time, scaled down from trio's 10/20/30 ms; the margins are 19 ms and more.)
#[test]
fn cushions_order_the_waiters() {
    let rt = current_thread_on(None);
    rt.block_on(async {
        let log = Log::default();
        let real = Instant::now();
        let result = nursery(|n| {
            let log = log.clone();
            async move {
                let l = log.clone();
                n.spawn(async move {
                    l.push("blink start");
                    for _ in 0..3 {
                        sleep(ms(1)).await?;
                    }
                    l.push("blink end");
                    Ok(())
                })?;
                let waiters: [(&str, u64); 4] = [
                    ("wait_no_cushion", 0),
                    ("wait_small_cushion", 20),
                    ("wait_small_cushion", 20),
                    ("wait_big_cushion", 30),
                ];
                for (name, cushion) in waiters {
                    let l = log.clone();
                    n.spawn(async move {
                        wait_all_tasks_blocked_for(ms(cushion)).await?;
                        l.push(format!("{name} end"));
                        Ok(())
                    })?;
                }
                Ok::<_, Error>(())
            }
        })
        .await;
        result.unwrap();
        assert_eq!(
            log.take(),
            [
                "blink start",
                "wait_no_cushion end",
                "blink end",
                "wait_small_cushion end",
                "wait_small_cushion end",
                "wait_big_cushion end",
            ]
        );
        assert!(real.elapsed() >= ms(3 + 20 + 30));
    });
}

// Waiters started in a scrambled order of cushions wake sorted by cushion, ties in start order;
// with nothing else running, each group wakes after its own cushion of quiet.
#[test]
fn waiters_wake_by_cushion_then_start_order() {
    let rt = current_thread_on(None);
    rt.block_on(async {
        let log = Log::default();
        let result = nursery(|n| {
            let log = log.clone();
            async move {
                let waiters: [(&str, u64); 6] = [
                    ("c3-a", 3),
                    ("c0-a", 0),
                    ("c2-a", 2),
                    ("c0-b", 0),
                    ("c3-b", 3),
                    ("c2-b", 2),
                ];
                for (name, cushion) in waiters {
                    let l = log.clone();
                    n.spawn(async move {
                        wait_all_tasks_blocked_for(ms(cushion)).await?;
                        l.push(name);
                        Ok(())
                    })?;
                }
                Ok::<_, Error>(())
            }
        })
        .await;
        result.unwrap();
        assert_eq!(log.take(), ["c0-a", "c0-b", "c2-a", "c2-b", "c3-a", "c3-b"]);
    });
}

// The main task can wait too: it wakes once all its children are blocked, and a child spawned
// later that keeps running holds it back.
#[test]
fn the_main_task_waits_for_children_to_block() {
    let rt = current_thread_on(None);
    rt.block_on(async {
        let steps = Arc::new(AtomicUsize::new(0));
        let result = nursery(|n| {
            let steps = steps.clone();
            async move {
                for _ in 0..5 {
                    let s = steps.clone();
                    n.spawn(async move {
                        for _ in 0..100 {
                            s.fetch_add(1, Ordering::Relaxed);
                            checkpoint().await?;
                        }
                        sleep_forever().await?;
                        Ok(())
                    })?;
                }
                wait_all_tasks_blocked().await?;
                assert_eq!(steps.load(Ordering::Relaxed), 500);
                n.cancel();
                Ok::<_, Error>(())
            }
        })
        .await;
        // The body finished before the nursery's own cancel ended the tasks: its value stands.
        result.unwrap();
    });
}

// On a multi-threaded runtime, "every task blocked" means every worker idle and every queue
// empty: the waiter sees all the work of tasks spread over the workers done.
#[test]
fn waiting_on_a_multi_threaded_runtime() {
    let rt = multi_thread(2);
    for _ in 0..20 {
        rt.block_on(async {
            let steps = Arc::new(AtomicUsize::new(0));
            let result = nursery(|n| {
                let steps = steps.clone();
                async move {
                    for _ in 0..8 {
                        let s = steps.clone();
                        n.spawn(async move {
                            for _ in 0..100 {
                                s.fetch_add(1, Ordering::Relaxed);
                                checkpoint().await?;
                            }
                            sleep_forever().await?;
                            Ok(())
                        })?;
                    }
                    wait_all_tasks_blocked().await?;
                    assert_eq!(steps.load(Ordering::Relaxed), 800);
                    n.cancel();
                    Ok::<_, Error>(())
                }
            })
            .await;
            result.unwrap();
        });
    }
}

// principle 5: with a mock clock, a waiter wakes before any autojump, at the same virtual time.
#[test]
fn waiters_wake_before_autojump() {
    let (rt, _clock) = current_thread();
    rt.block_on(async {
        let t0 = now();
        let log = Log::default();
        let result = nursery(|n| {
            let log = log.clone();
            async move {
                let l = log.clone();
                n.spawn(async move {
                    sleep(Duration::from_secs(60)).await?;
                    l.push(format!("sleeper at {:?}", now() - t0));
                    Ok(())
                })?;
                wait_all_tasks_blocked().await?;
                log.push(format!("waiter at {:?}", now() - t0));
                Ok::<_, Error>(())
            }
        })
        .await;
        result.unwrap();
        assert_eq!(log.take(), ["waiter at 0ns", "sleeper at 60s"]);
    });
}
