//! `Builder::yield_budget`: operations that complete without blocking skip their schedule point
//! while the task's budget lasts; cancellation is still checked at every one (principle 3).

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::send_and_yield_interleaving;
use trellis::sync::Mutex;
use trellis::testing::MockClock;
use trellis::{channel, move_on_after, nursery, CancelScope, Error, Flavor, Runtime};

fn runtime(budget: u32) -> Runtime {
    Runtime::builder()
        .flavor(Flavor::CurrentThread)
        .yield_budget(budget)
        .build()
        .unwrap()
}

/// [`send_and_yield_interleaving`] on a current-thread runtime with this yield budget.
fn interleaving(budget: u32) -> Vec<String> {
    runtime(budget).block_on(send_and_yield_interleaving())
}

// principle 3: by default every ready operation is a schedule point, as in trio.
#[test]
fn without_a_budget_every_ready_send_yields() {
    let log = interleaving(0);
    // Each of a's sends lets b run once, until b is done.
    let expected = [
        "b1", "a1", "b2", "a2", "b3", "a3", "a4", "a5", "a6", "a7", "a8", "a9", "a10",
    ];
    assert_eq!(log, expected);
}

// With a budget of 4, four ready sends run back to back, the fifth yields.
#[test]
fn a_budget_spaces_out_the_schedule_points() {
    let log = interleaving(4);
    // Four sends per poll of `a` skip their yield; the fifth yields before it sends, and runs
    // with the refilled budget.
    let expected = [
        "a1", "a2", "a3", "a4", "b1", "a5", "a6", "a7", "a8", "b2", "a9", "a10", "b3",
    ];
    assert_eq!(log, expected);
}

// principle 3: a skipped yield is still a cancel point.
#[test]
fn a_budget_never_skips_the_cancel_check() {
    runtime(1_000).block_on(async {
        let (tx, rx) = channel::unbounded::<u32>();
        let scope = CancelScope::new();
        let handle = scope.clone();
        let sent = scope
            .run(async move {
                let mut sent = 0;
                for i in 0..10 {
                    if i == 3 {
                        handle.cancel();
                    }
                    tx.send(i).await?;
                    sent += 1;
                }
                Ok::<_, Error>(sent)
            })
            .await;
        assert!(sent.is_none());
        assert_eq!(rx.statistics().current_buffer_used, 3);
    });
}

/// How many ready sends a task spinning until another task sets a flag makes on `rt` before
/// that other task gets its turn (and sets the flag).
fn sends_before_another_task_runs(rt: &Runtime) -> u64 {
    rt.block_on(async {
        let (tx, _rx) = channel::unbounded::<u64>();
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        nursery(|n| async move {
            let spinner = n.spawn(async move {
                let mut sent = 0u64;
                while !stop.load(Ordering::SeqCst) {
                    tx.send(sent).await?;
                    sent += 1;
                }
                Ok::<_, Error>(sent)
            })?;
            n.spawn(async move {
                flag.store(true, Ordering::SeqCst);
                Ok(())
            })?;
            spinner.await
        })
        .await
        .unwrap()
    })
}

// The default: tokio's budget size, and what a runtime built without `yield_budget` uses: 128
// ready sends run back to back, the 129th yields before it sends (and sends once resumed).
#[test]
fn the_default_budget_is_128_ready_operations_per_poll() {
    assert_eq!(trellis::DEFAULT_YIELD_BUDGET, 128);
    let default = Runtime::builder()
        .flavor(Flavor::CurrentThread)
        .build()
        .unwrap();
    assert_eq!(sends_before_another_task_runs(&default), 129);
    let log = default.block_on(send_and_yield_interleaving());
    let expected = [
        "a1", "a2", "a3", "a4", "a5", "a6", "a7", "a8", "a9", "a10", "b1", "b2", "b3",
    ];
    assert_eq!(log, expected);
}

// Fairness under a budget: a task whose operations never block still yields every `n + 1`
// operations, so a task spinning on ready sends until another task stops it cannot starve
// that task. Exactly one poll's budget of sends happens before the other task runs; the send
// that yielded then completes, and the loop sees the flag.
#[test]
fn a_task_looping_on_ready_operations_cannot_starve_others() {
    for budget in [1, 4, trellis::DEFAULT_YIELD_BUDGET] {
        let sent = sends_before_another_task_runs(&runtime(budget));
        assert_eq!(sent, u64::from(budget) + 1, "budget {budget}");
    }
}

// Once the budget is spent, an operation that takes something yields *before* taking it: a
// lock is never held across that yield, so tasks taking turns on a lock do not queue on it and
// pay a hand-off each. Under trio's rule (budget 0) the yield comes after, with the lock held.
#[test]
fn a_spent_budget_yields_before_taking_a_lock_not_while_holding_it() {
    for (budget, free_during_yield) in [(2, true), (0, false)] {
        let seen = runtime(budget).block_on(async {
            let lock = Arc::new(Mutex::new(0));
            let l = lock.clone();
            nursery(|n| async move {
                // With budget 2 the third `lock` yields; with budget 0 the first does.
                let taker = n.spawn(async move {
                    for _ in 0..3 {
                        *l.lock().await? += 1;
                    }
                    Ok::<_, Error>(())
                })?;
                let probe = n.spawn(async move {
                    // Runs during the taker's first yield.
                    Ok::<_, Error>(lock.try_lock().is_ok())
                })?;
                taker.await?;
                probe.await
            })
            .await
            .unwrap()
        });
        assert_eq!(seen, free_during_yield, "budget {budget}");
    }
}

// C5/C7 under a budget: a deadline that passes while a task runs ready operations is seen at
// the next one, though it does not yield: exactly the sends before the clock moved get through.
#[test]
fn a_budget_sees_a_deadline_at_the_next_ready_operation() {
    let clock = MockClock::new();
    let rt = Runtime::builder()
        .flavor(Flavor::CurrentThread)
        .clock(clock.clone())
        .build()
        .unwrap();
    let (sent, buffered) = rt.block_on(async move {
        let (tx, rx) = channel::unbounded::<u32>();
        let mut sent = 0;
        let out = move_on_after(Duration::from_secs(1), async {
            for i in 0..100 {
                tx.send(i).await?;
                sent += 1;
                if i == 5 {
                    clock.jump(Duration::from_secs(2));
                }
            }
            Ok::<_, Error>(())
        })
        .await;
        assert!(out.is_none(), "the deadline ended the loop");
        (sent, rx.statistics().current_buffer_used)
    });
    assert_eq!((sent, buffered), (6, 6));
}

// An edge value: the largest budget is accepted; every ready send is still a cancel point (a
// cancel after 5 000 sends stops the loop at the next one, with exactly 5 000 sent).
#[test]
fn the_largest_budget_is_accepted_and_still_checks_cancellation() {
    let (sent, buffered) = runtime(u32::MAX).block_on(async {
        let (tx, rx) = channel::unbounded::<u32>();
        let scope = CancelScope::new();
        let handle = scope.clone();
        let mut sent = 0;
        let out = scope
            .run(async {
                for i in 0..10_000 {
                    if i == 5_000 {
                        handle.cancel();
                    }
                    tx.send(i).await?;
                    sent += 1;
                }
                Ok::<_, Error>(())
            })
            .await;
        assert!(out.is_none());
        (sent, rx.statistics().current_buffer_used)
    });
    assert_eq!((sent, buffered), (5_000, 5_000));
}

/// Task `a` does one socket operation that completes at once (a write if `write`, else a read),
/// then logs; task `b`, spawned after it, only logs. On a current-thread runtime with the
/// default budget, the log says whether the operation took its schedule point (`b` runs before
/// `a` logs) or not.
fn order_around_a_ready_socket_operation(write: bool) -> Vec<&'static str> {
    runtime(trellis::DEFAULT_YIELD_BUDGET).block_on(async move {
        let (mut near, mut far) = trellis::net::UnixStream::pair().unwrap();
        // One operation of the same kind first, so the reactor has seen the socket ready and
        // `a`'s operation completes at once (a first one may wait for that event).
        if write {
            near.write_all(b"p").await.unwrap();
        } else {
            far.write_all(b"px").await.unwrap();
            near.read(&mut [0u8; 1]).await.unwrap();
        }
        let log = Arc::new(std::sync::Mutex::new(Vec::new()));
        let (la, lb) = (log.clone(), log.clone());
        nursery(|n| async move {
            n.spawn(async move {
                if write {
                    near.write_all(b"x").await?;
                } else {
                    let mut buf = [0u8; 1];
                    near.read(&mut buf).await?;
                }
                la.lock().unwrap().push("a done");
                drop(far);
                Ok::<_, Error>(())
            })?;
            n.spawn(async move {
                lb.lock().unwrap().push("b ran");
                Ok::<_, Error>(())
            })?;
            Ok::<_, Error>(())
        })
        .await
        .unwrap();
        Arc::try_unwrap(log).unwrap().into_inner().unwrap()
    })
}

// principle 3 with a budget: a write that completes at once still yields (the read of the
// answer that usually follows then more often finds it), where a ready read, within the budget,
// runs on.
#[test]
fn a_ready_write_yields_whatever_the_budget_and_a_ready_read_runs_on() {
    assert_eq!(
        order_around_a_ready_socket_operation(true),
        ["b ran", "a done"]
    );
    assert_eq!(
        order_around_a_ready_socket_operation(false),
        ["a done", "b ran"]
    );
}
