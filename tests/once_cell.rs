//! `sync::OnceCell`: one initialiser at a time, waiters get its value; `get_or_init` is a
//! checkpoint (principle 3) and cancel-safe (principle 4): a cancelled wait leaves the queue, and
//! a failed, cancelled, dropped or panicking initialiser leaves the cell empty and hands the turn
//! to exactly one waiter (C1: a cancelled caller never starts an initialiser).

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use common::*;
use trellis::sync::{OnceCell, SetError};
use trellis::{move_on_after, nursery, sleep, CancelScope, Cancelled, Error};

type Cell = Arc<OnceCell<String>>;

/// A waiter task: `get_or_try_init` with an initialiser that logs `name`, sleeps `secs_` and
/// returns `name`; logs what it got and when.
fn waiter(
    n: &trellis::Nursery<TestError>,
    cell: &Cell,
    log: &Log,
    name: &'static str,
    init_secs: u64,
) -> Result<(), Error> {
    let (cell, log) = (cell.clone(), log.clone());
    n.spawn(async move {
        let t0 = trellis::now();
        let got = cell
            .get_or_try_init(|| async {
                log.push(format!("{name} init"));
                sleep(secs(init_secs)).await?;
                Ok::<_, TestError>(name.to_string())
            })
            .await?;
        log.push(format!("{name} got {got} after {}s", since(t0).as_secs()));
        Ok(())
    })?;
    Ok(())
}

/// Initialiser A: logs "A init", takes 1 s and fails; returns what its caller gets.
async fn init_failing_as_a(cell: &Cell, log: &Log) -> Result<String, TestError> {
    cell.get_or_try_init(|| async {
        log.push("A init");
        sleep(secs(1)).await?;
        Err::<String, _>(TestError::Fail("A failed"))
    })
    .await
    .cloned()
}

// The first caller initialises; the others wait for its value (and never call their own).
#[test]
fn one_initialiser_runs_and_every_waiter_gets_its_value() {
    for flavor in FLAVORS {
        autojump_runtime(flavor).block_on(async {
            let cell: Cell = Arc::new(OnceCell::new());
            let calls = Arc::new(AtomicUsize::new(0));
            let t0 = trellis::now();
            nursery(|n| {
                let (cell, calls) = (cell.clone(), calls.clone());
                async move {
                    for _ in 0..5 {
                        let (cell, calls) = (cell.clone(), calls.clone());
                        n.spawn(async move {
                            let v = cell
                                .get_or_init(|| async {
                                    calls.fetch_add(1, Ordering::SeqCst);
                                    sleep(secs(1)).await.unwrap();
                                    "value".to_string()
                                })
                                .await?;
                            assert_eq!(v, "value");
                            assert_eq!(since(t0), secs(1));
                            Ok(())
                        })?;
                    }
                    Ok::<_, Error>(())
                }
            })
            .await
            .unwrap();
            assert_eq!(calls.load(Ordering::SeqCst), 1);
            assert_eq!(cell.get().map(String::as_str), Some("value"));
        });
    }
}

// Principle 3: a checkpoint also when the value is there; C1: it fails in a cancelled scope,
// even then.
#[test]
fn get_or_init_is_a_checkpoint_even_when_initialised() {
    block_on_trio_order(async {
        let cell = OnceCell::from(4u8);
        assert_eq!(
            *assert_yields(cell.get_or_init(|| async { 0 }))
                .await
                .unwrap(),
            4
        );
        assert_eq!(run_cancelled(cell.get_or_init(|| async { 0 })).await, None);
        // The initialiser of a cancelled first caller is never called.
        let empty = OnceCell::<u8>::new();
        let out = run_cancelled(empty.get_or_init(|| async { unreachable!("cancelled first") }));
        assert_eq!(out.await, None);
        assert!(!empty.initialized());
        assert_eq!(empty.set(1), Ok(())); // and it kept no turn
    });
}

// Principle 4: a waiter cancelled while waiting leaves the queue. When the initialiser then
// fails, nobody is handed the turn: the cell is free for the next caller at once.
#[test]
fn a_cancelled_waiter_leaves_no_trace() {
    block_on_current(async {
        let cell: Cell = Arc::new(OnceCell::new());
        let log = Log::new();
        let t0 = trellis::now();
        let c = cell.clone();
        let l = log.clone();
        nursery(|n| async move {
            let (cell, log) = (c.clone(), l.clone());
            n.spawn(async move {
                let r = cell
                    .get_or_try_init(|| async {
                        sleep(secs(5)).await?;
                        Err::<String, _>(TestError::Fail("init failed"))
                    })
                    .await;
                assert_eq!(r, Err(TestError::Fail("init failed")));
                log.push(format!("first failed at {}", since(t0).as_secs()));
                Ok(())
            })?;
            trellis::checkpoint().await?; // let the first task take the turn
            let waited = move_on_after(secs(1), c.get_or_init(|| async { unreachable!() })).await;
            assert_eq!(waited, None);
            l.push(format!("waiter cancelled at {}", since(t0).as_secs()));
            Ok::<_, TestError>(())
        })
        .await
        .unwrap();
        assert_eq!(log.take(), ["waiter cancelled at 1", "first failed at 5"]);
        // Nobody holds the turn: `set` succeeds, and no initialiser ran for the cancelled waiter.
        assert_eq!(cell.set("later".into()), Ok(()));
        assert_eq!(since(t0), secs(5));
    });
}

// Principle 4, C1: the initialiser's scope is cancelled at 1 s; its error is its own, the cell
// stays empty, and exactly the first waiter (B) takes over; C gets B's value.
#[test]
fn a_cancelled_initialiser_hands_over_to_exactly_one_waiter() {
    block_on_current(async {
        let cell: Cell = Arc::new(OnceCell::new());
        let log = Log::new();
        let (c, l) = (cell.clone(), log.clone());
        nursery(|n| async move {
            let scope = CancelScope::new();
            let (cell, log, a_scope) = (c.clone(), l.clone(), scope.clone());
            n.spawn(async move {
                let out = a_scope
                    .run(cell.get_or_try_init(|| async {
                        log.push("A init");
                        sleep(secs(10)).await?;
                        Ok::<_, TestError>("A".to_string())
                    }))
                    .await;
                assert_eq!(out, None); // absorbed by A's scope
                log.push("A cancelled");
                Ok(())
            })?;
            waiter(&n, &c, &l, "B", 1)?;
            waiter(&n, &c, &l, "C", 1)?;
            sleep(secs(1)).await?;
            scope.cancel();
            Ok::<_, TestError>(())
        })
        .await
        .unwrap();
        assert_eq!(
            log.take(),
            [
                "A init",
                "A cancelled",
                "B init",
                "B got B after 2s",
                "C got B after 2s"
            ]
        );
        assert_eq!(cell.get().map(String::as_str), Some("B"));
    });
}

// Principle 4: an initialiser's error goes to its caller only; the next waiter takes over.
#[test]
fn a_failed_initialiser_hands_over_and_keeps_its_error() {
    block_on_current(async {
        let cell: Cell = Arc::new(OnceCell::new());
        let log = Log::new();
        let (c, l) = (cell.clone(), log.clone());
        nursery(|n| async move {
            let (cell, log) = (c.clone(), l.clone());
            n.spawn(async move {
                let r = init_failing_as_a(&cell, &log).await;
                assert_eq!(r, Err(TestError::Fail("A failed")));
                Ok(())
            })?;
            waiter(&n, &c, &l, "B", 2)?;
            waiter(&n, &c, &l, "C", 2)?;
            Ok::<_, TestError>(())
        })
        .await
        .unwrap();
        assert_eq!(
            log.take(),
            ["A init", "B init", "B got B after 3s", "C got B after 3s"]
        );
    });
}

// Principle 4 (forced teardown): an initialiser whose future is dropped passes the turn on, and
// so does a waiter that was handed the turn and dropped before it ran.
#[test]
fn dropped_initialisers_and_dropped_heirs_pass_the_turn_on() {
    block_on_current(async {
        let cell: Cell = Arc::new(OnceCell::new());
        let log = Log::new();
        let (c, l) = (cell.clone(), log.clone());
        nursery(|n| async move {
            // A: holds the turn in its initialiser; dropped at 1 s.
            let mut a = Box::pin(c.get_or_try_init(|| async {
                l.push("A init");
                sleep(secs(60)).await?;
                Ok::<_, TestError>("A".to_string())
            }));
            // The first poll takes the turn and yields (the checkpoint); the second starts `init`.
            assert!(poll_once(a.as_mut()).await.is_pending());
            assert!(poll_once(a.as_mut()).await.is_pending());
            assert_eq!(l.snapshot(), ["A init"]);
            // B: queued first behind A; never polled again once handed the turn.
            let mut b = Box::pin(c.get_or_init(|| async { unreachable!("B is dropped") }));
            assert!(poll_once(b.as_mut()).await.is_pending());
            waiter(&n, &c, &l, "C", 1)?;
            trellis::testing::wait_all_tasks_blocked().await?;
            sleep(secs(1)).await?;
            drop(a); // B is handed the turn...
            sleep(secs(1)).await?;
            drop(b); // ...and, dropped before it ran, passes it to C.
            Ok::<_, TestError>(())
        })
        .await
        .unwrap();
        assert_eq!(log.take(), ["A init", "C init", "C got C after 3s"]);
    });
}

// C1 + principle 4: a waiter handed the turn whose scope is cancelled before it runs does not
// call its initialiser; it passes the turn to the next waiter and returns `Cancelled`.
#[test]
fn a_cancelled_heir_passes_the_turn_without_initialising() {
    block_on_current(async {
        let cell: Cell = Arc::new(OnceCell::new());
        let log = Log::new();
        let (c, l) = (cell.clone(), log.clone());
        nursery(|n| async move {
            let b_scope = CancelScope::new();
            let (cell, log, scope) = (c.clone(), l.clone(), b_scope.clone());
            n.spawn(async move {
                let r = init_failing_as_a(&cell, &log).await;
                // B was handed the turn just now and has not run yet: cancel it.
                scope.cancel();
                assert_eq!(r, Err(TestError::Fail("A failed")));
                Ok(())
            })?;
            let (cell, log) = (c.clone(), l.clone());
            n.spawn(async move {
                let out = b_scope
                    .run(cell.get_or_try_init(|| async {
                        log.push("B init");
                        Ok::<_, TestError>("B".to_string())
                    }))
                    .await;
                assert_eq!(out, None);
                log.push("B cancelled");
                Ok(())
            })?;
            waiter(&n, &c, &l, "C", 1)?;
            Ok::<_, TestError>(())
        })
        .await
        .unwrap();
        assert_eq!(
            log.take(),
            ["A init", "B cancelled", "C init", "C got C after 2s"]
        );
    });
}

// Principle 4: a panicking initialiser leaves the cell empty and the turn free.
#[test]
fn a_panicking_initialiser_leaves_the_cell_empty() {
    block_on_current(async {
        let cell = OnceCell::<u8>::new();
        let caught = catch_unwind(cell.get_or_init(|| async { panic!("init panicked") })).await;
        assert_eq!(panic_message(caught.unwrap_err().as_ref()), "init panicked");
        assert!(!cell.initialized());
        assert_eq!(*cell.get_or_init(|| async { 9 }).await.unwrap(), 9);
    });
}

// `set` refuses while an initialiser runs and once initialised, giving the value back;
// `into_inner` hands the value out.
#[test]
fn set_refuses_while_initialising_and_once_initialised() {
    block_on_current(async {
        let cell: Cell = Arc::new(OnceCell::new());
        let c = cell.clone();
        nursery(|n| async move {
            let cell = c.clone();
            n.spawn(async move {
                cell.get_or_init(|| async {
                    sleep(secs(1)).await.unwrap();
                    "init".to_string()
                })
                .await?;
                Ok(())
            })?;
            trellis::checkpoint().await?;
            assert_eq!(
                c.set("set".into()),
                Err(SetError::Initializing("set".to_string()))
            );
            Ok::<_, Error>(())
        })
        .await
        .unwrap();
        assert_eq!(
            cell.set("again".into()).unwrap_err().into_inner(),
            "again".to_string()
        );
        let cell = Arc::into_inner(cell).unwrap();
        assert_eq!(cell.into_inner().as_deref(), Some("init"));
    });
}

// Stress, multi-thread: initialisers that fail the first three times. Never two at once,
// exactly four calls, and every task ends with the one value.
#[test]
fn failing_initialisers_hand_over_one_at_a_time_across_threads() {
    for _ in 0..20 {
        multi_thread(4).block_on(async {
            let cell = Arc::new(OnceCell::<usize>::new());
            let (calls, running) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
            nursery(|n| {
                let (cell, calls, running) = (cell.clone(), calls.clone(), running.clone());
                async move {
                    for _ in 0..16 {
                        let (cell, calls, running) = (cell.clone(), calls.clone(), running.clone());
                        n.spawn(async move {
                            let r = cell
                                .get_or_try_init(|| async {
                                    assert_eq!(running.fetch_add(1, Ordering::SeqCst), 0);
                                    let call = calls.fetch_add(1, Ordering::SeqCst);
                                    trellis::checkpoint().await?;
                                    running.fetch_sub(1, Ordering::SeqCst);
                                    if call < 3 {
                                        Err(Error::BrokenResource)
                                    } else {
                                        Ok(call)
                                    }
                                })
                                .await;
                            match r {
                                Ok(v) => assert_eq!(*v, 3),
                                Err(e) => assert!(matches!(e, Error::BrokenResource)),
                            }
                            Ok::<_, Error>(())
                        })?;
                    }
                    Ok::<_, Error>(())
                }
            })
            .await
            .unwrap();
            assert_eq!(calls.load(Ordering::SeqCst), 4);
            assert_eq!(cell.get(), Some(&3));
        });
    }
}

// The error type of `get_or_init` is the cancellation itself.
#[test]
fn get_or_init_reports_the_cancellation() {
    block_on_current(async {
        let cell = OnceCell::<u8>::new();
        let scope = CancelScope::new();
        scope.cancel();
        let r: Option<Result<&u8, Cancelled>> = scope.run(cell.get_or_init(|| async { 1 })).await;
        assert!(r.is_none());
        assert!(scope.cancelled_caught());
    });
}

// Principle 4: a caller that took the turn at once and is dropped during its schedule point
// (before `init` started) keeps no turn.
#[test]
fn a_caller_dropped_at_its_checkpoint_keeps_no_turn() {
    block_on_trio_order(async {
        let cell = OnceCell::<u8>::new();
        {
            let mut first = Box::pin(cell.get_or_init(|| async { unreachable!("dropped first") }));
            assert!(poll_once(first.as_mut()).await.is_pending());
            assert_eq!(cell.set(1), Err(SetError::Initializing(1))); // it holds the turn
        }
        assert_eq!(cell.set(2), Ok(()));
        assert_eq!(cell.get(), Some(&2));
    });
}
