//! Behaviour of `run` / `Runtime::block_on` (contract R1, R2) and of the runtime's lifecycle:
//! building, starting again after a run, and dropping every task future before returning.

mod common;

use std::panic::{self, AssertUnwindSafe};
use std::rc::Rc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use trellis::lowlevel;
use trellis::testing::wait_all_tasks_blocked;
use trellis::{
    checkpoint, nursery, sleep, sleep_forever, CancelScope, Error, Flavor, Nursery, Runtime,
};

/// A payload that is neither `&str` nor `String`, to show it arrives untouched.
#[derive(Debug, PartialEq)]
struct Payload(u32);

// contract R1
#[test]
fn run_returns_the_output_of_the_main_future() {
    assert_eq!(trellis::run(async { String::from("out") }), "out");
    for flavor in FLAVORS {
        let out = runtime(flavor).block_on(async {
            let mut v = Vec::new();
            for i in 0..3 {
                checkpoint().await.unwrap();
                v.push(i);
            }
            v
        });
        assert_eq!(out, vec![0, 1, 2]);
    }
}

// contract R1: the main future need not be Send, nor its output.
#[test]
fn run_accepts_a_main_future_that_is_not_send() {
    let out = trellis::run(async {
        let rc = Rc::new(5);
        checkpoint().await.unwrap();
        rc
    });
    assert_eq!(*out, 5);
}

// contract R1
#[test]
fn a_panic_in_the_main_future_propagates_out_of_run_unchanged() {
    for flavor in FLAVORS {
        let err = panic::catch_unwind(AssertUnwindSafe(|| {
            runtime(flavor).block_on(async {
                checkpoint().await.unwrap();
                panic::panic_any(Payload(17));
            })
        }))
        .unwrap_err();
        assert_eq!(err.downcast_ref::<Payload>(), Some(&Payload(17)));
    }
    let message = panic_text(|| trellis::run(async { panic!("plain {}", 42) }));
    assert_eq!(message, "plain 42");
}

// contract R1 with N10: a child's panic reaches the caller of run with its payload intact.
#[test]
fn a_panic_in_a_child_propagates_out_of_run_unchanged() {
    for flavor in FLAVORS {
        let err = panic::catch_unwind(AssertUnwindSafe(|| {
            runtime(flavor).block_on(async {
                nursery(|n| async move {
                    n.spawn(async {
                        checkpoint().await?;
                        if true {
                            panic::panic_any(Payload(3));
                        }
                        Ok(())
                    })?;
                    sleep_forever().await?;
                    Ok::<_, Error>(())
                })
                .await
            })
        }))
        .unwrap_err();
        assert_eq!(err.downcast_ref::<Payload>(), Some(&Payload(3)));
    }
}

// contract R2
#[test]
fn run_inside_a_runtime_panics_naming_the_function() {
    const MESSAGE: &str = "trellis::Runtime::block_on (or trellis::run) was called from inside a \
                           trellis runtime; await the future instead of starting a nested runtime";
    for flavor in FLAVORS {
        runtime(flavor).block_on(async {
            assert_eq!(panic_text(|| trellis::run(async { 1 })), MESSAGE);
            let other = runtime(Flavor::CurrentThread);
            assert_eq!(panic_text(|| other.block_on(async { 1 })), MESSAGE);
            // The same from a task running on a worker.
            let from_task = nursery(|n| async move {
                let h =
                    n.spawn(async { Ok::<_, Error>(panic_text(|| trellis::run(async { 1 }))) })?;
                h.await
            })
            .await
            .unwrap();
            assert_eq!(from_task, MESSAGE);
            // The runtime is unharmed.
            checkpoint().await.unwrap();
        });
    }
}

// contract R2 is per thread: a plain thread started from a task may run its own runtime.
#[test]
fn a_runtime_may_run_on_a_thread_started_from_a_task() {
    let out = trellis::run(async {
        std::thread::spawn(|| runtime(Flavor::CurrentThread).block_on(async { 7 }))
            .join()
            .unwrap()
    });
    assert_eq!(out, 7);
}

fn outside_message(function: &str) -> String {
    format!(
        "trellis::{function} must be called from inside a trellis runtime (inside trellis::run \
         or Runtime::block_on)"
    )
}

// contract R2: each runtime function used outside a runtime panics, naming itself.
#[test]
fn runtime_functions_outside_a_runtime_panic_naming_the_function() {
    type Case = (&'static str, Box<dyn FnOnce()>);
    let cases: Vec<Case> = vec![
        (
            "checkpoint",
            Box::new(|| drop(poll_outside(trellis::checkpoint()))),
        ),
        (
            "cancel_shielded_checkpoint",
            Box::new(|| drop(poll_outside(trellis::cancel_shielded_checkpoint()))),
        ),
        (
            "checkpoint_if_cancelled",
            Box::new(|| drop(poll_outside(trellis::checkpoint_if_cancelled()))),
        ),
        (
            "sleep",
            Box::new(|| drop(poll_outside(sleep(Duration::from_secs(1))))),
        ),
        (
            "sleep_until",
            Box::new(|| drop(poll_outside(trellis::sleep_until(Instant::now())))),
        ),
        (
            "sleep_forever",
            Box::new(|| drop(poll_outside(sleep_forever()))),
        ),
        (
            "now",
            Box::new(|| {
                let _ = trellis::now();
            }),
        ),
        (
            "current_effective_deadline",
            Box::new(|| {
                let _ = trellis::current_effective_deadline();
            }),
        ),
        (
            "nursery",
            Box::new(|| {
                drop(poll_outside(nursery(|_n| async { Ok::<_, Error>(()) })));
            }),
        ),
        (
            "CancelScope::run",
            Box::new(|| {
                let _ = poll_outside(CancelScope::new().run(async {}));
            }),
        ),
        (
            "CancelScope::with_timeout",
            Box::new(|| drop(CancelScope::with_timeout(Duration::from_secs(1)))),
        ),
        (
            "move_on_after",
            Box::new(|| drop(trellis::move_on_after(Duration::from_secs(1), async {}))),
        ),
        (
            "move_on_at",
            Box::new(|| {
                let _ = poll_outside(trellis::move_on_at(Instant::now(), async {}));
            }),
        ),
        (
            "fail_after",
            Box::new(|| drop(trellis::fail_after(Duration::from_secs(1), async {}))),
        ),
        (
            "fail_at",
            Box::new(|| {
                let _ = poll_outside(trellis::fail_at(Instant::now(), async {}));
            }),
        ),
        (
            "lowlevel::current_task",
            Box::new(|| drop(lowlevel::current_task())),
        ),
        (
            "lowlevel::task_tree",
            Box::new(|| drop(lowlevel::task_tree())),
        ),
        (
            "lowlevel::task_tree_snapshot",
            Box::new(|| drop(lowlevel::task_tree_snapshot())),
        ),
        (
            "lowlevel::statistics",
            Box::new(|| {
                let _ = lowlevel::statistics();
            }),
        ),
        (
            "testing::wait_all_tasks_blocked",
            Box::new(|| drop(poll_outside(wait_all_tasks_blocked()))),
        ),
    ];
    for (function, call) in cases {
        assert_eq!(
            panic_text(call),
            outside_message(function),
            "for {function}"
        );
    }
}

// contract R2 and N5: handles that outlive their runtime fail cleanly.
#[test]
fn handles_that_outlive_the_runtime_fail_cleanly() {
    let (n, handle) = block_on_current(async {
        nursery(|n| async move {
            let h = n.spawn(async { Ok(()) })?;
            Ok::<_, Error>((n.clone(), h))
        })
        .await
        .unwrap()
    });
    // Spawning into a finished nursery is an error, not a panic.
    assert!(matches!(
        n.spawn(async { Ok::<_, Error>(()) }),
        Err(Error::NurseryClosed)
    ));
    // `start` checks for the runtime before anything else.
    let message = panic_text(|| {
        drop(poll_outside(n.start(|status| async move {
            status.started(());
            Ok::<_, Error>(())
        })))
    });
    assert_eq!(message, outside_message("Nursery::start"));
    let message = panic_text(|| drop(poll_outside(handle)));
    assert_eq!(message, outside_message("TaskHandle::await"));
}

#[test]
fn builder_rejects_zero_worker_threads() {
    let err = Runtime::builder()
        .flavor(Flavor::MultiThread)
        .worker_threads(0)
        .build()
        .unwrap_err();
    assert!(matches!(
        err,
        Error::InvalidArgument("worker_threads must be > 0")
    ));
    assert_eq!(
        err.to_string(),
        "invalid argument: worker_threads must be > 0"
    );
    // The worker count only applies to the multi-threaded flavour (as in tokio).
    let rt = Runtime::builder()
        .flavor(Flavor::CurrentThread)
        .worker_threads(0)
        .build()
        .unwrap();
    assert_eq!(rt.block_on(async { lowlevel::statistics().workers }), 1);
    let rt = Runtime::builder().worker_threads(3).build().unwrap();
    assert_eq!(rt.block_on(async { lowlevel::statistics().workers }), 3);
}

/// Spawns `children` tasks that each add their index to a sum, and returns the sum.
async fn sum_of_children(children: u64) -> u64 {
    nursery(|n| async move {
        let mut handles = Vec::new();
        for i in 0..children {
            handles.push(n.spawn(async move {
                checkpoint().await?;
                Ok::<_, Error>(i)
            })?);
        }
        let mut sum = 0;
        for h in handles {
            sum += h.await?;
        }
        Ok::<_, Error>(sum)
    })
    .await
    .unwrap()
}

// A runtime can start after another returned, on the same thread, in either flavour, and the same
// `Runtime` can run several times; each run starts with fresh counters.
#[test]
fn a_second_runtime_can_start_after_the_first_returns() {
    for round in 0..3 {
        for flavor in FLAVORS {
            let rt = runtime(flavor);
            for _ in 0..2 {
                let (sum, first_id, stats) = rt.block_on(async {
                    let first_id = nursery(|n| async move {
                        let h = n.spawn(async { Ok::<_, Error>(lowlevel::current_task().id) })?;
                        h.await
                    })
                    .await
                    .unwrap();
                    (sum_of_children(10).await, first_id, lowlevel::statistics())
                });
                assert_eq!(sum, 45, "round {round}, {flavor:?}");
                assert_eq!(first_id, 1, "task ids restart at 1 in each run");
                assert_eq!((stats.live_tasks, stats.timers), (0, 0));
            }
        }
    }
}

/// Children that never end on their own: they ignore cancellation (so only a drop ends them),
/// each owning a guard.
fn stubborn_child(
    drops: &DropCounter,
    polls: &Arc<AtomicUsize>,
) -> impl std::future::Future<Output = Result<(), Error>> + Send + 'static {
    let guard = drops.guard();
    let polls = polls.clone();
    async move {
        let _guard = guard;
        loop {
            polls.fetch_add(1, Ordering::SeqCst);
            trellis::cancel_shielded_checkpoint().await?;
        }
    }
}

// Every task future is dropped before block_on returns, even when the main future panics while
// its nursery's children still run (their futures are dropped during the unwinding, inside the
// runtime).
#[test]
fn every_task_future_is_dropped_before_block_on_returns_when_main_panics() {
    for flavor in FLAVORS {
        let drops = DropCounter::new();
        let polls = Arc::new(AtomicUsize::new(0));
        let (d, p) = (drops.clone(), polls.clone());
        let err = panic::catch_unwind(AssertUnwindSafe(|| {
            runtime(flavor).block_on(async move {
                let mut fut = Box::pin(nursery(|n| {
                    let (d, p) = (d.clone(), p.clone());
                    async move {
                        for _ in 0..8 {
                            n.spawn(stubborn_child(&d, &p))?;
                        }
                        sleep_forever().await?;
                        Ok::<_, Error>(())
                    }
                }));
                assert!(poll_once(fut.as_mut()).await.is_pending());
                while p.load(Ordering::SeqCst) < 16 {
                    trellis::cancel_shielded_checkpoint().await.unwrap();
                }
                panic::panic_any(Payload(9));
            })
        }))
        .unwrap_err();
        assert_eq!(err.downcast_ref::<Payload>(), Some(&Payload(9)));
        assert_eq!(drops.count(), 8, "{flavor:?}");
    }
}

// Every task future is dropped before block_on returns, even when the main future leaks a
// nursery future that still has children (the runtime tears them down at shutdown).
#[test]
fn every_task_future_is_dropped_before_block_on_returns_when_a_nursery_is_leaked() {
    for flavor in FLAVORS {
        let drops = DropCounter::new();
        let polls = Arc::new(AtomicUsize::new(0));
        // Polls of the grandchild alone: on the multi-thread runtime the four children can
        // reach any poll count before the task that spawns the grandchild has even run.
        let grandchild_polls = Arc::new(AtomicUsize::new(0));
        let (d, p, gp) = (drops.clone(), polls.clone(), grandchild_polls.clone());
        let leaked: Nursery = runtime(flavor).block_on(async move {
            let (tx, rx) = std::sync::mpsc::channel();
            let body_polls = p.clone();
            let mut fut = Box::pin(nursery(move |n| {
                tx.send(n.clone()).unwrap();
                async move {
                    let p = body_polls;
                    for _ in 0..4 {
                        n.spawn(stubborn_child(&d, &p))?;
                    }
                    // A grandchild, one level further down.
                    let (d2, p2) = (d.clone(), gp);
                    n.spawn(async move {
                        nursery(|n2| async move {
                            n2.spawn(stubborn_child(&d2, &p2))?;
                            sleep_forever().await?;
                            Ok::<_, Error>(())
                        })
                        .await
                        .map_err(Error::from)
                    })?;
                    sleep_forever().await?;
                    Ok::<_, Error>(())
                }
            }));
            assert!(poll_once(fut.as_mut()).await.is_pending());
            while p.load(Ordering::SeqCst) < 10 || grandchild_polls.load(Ordering::SeqCst) == 0 {
                trellis::cancel_shielded_checkpoint().await.unwrap();
            }
            std::mem::forget(fut);
            rx.recv().unwrap()
        });
        assert_eq!(drops.count(), 5, "{flavor:?}");
        // The leaked nursery refuses new tasks once its runtime is gone.
        assert!(leaked.is_closed());
        assert!(matches!(
            leaked.spawn(async { Ok::<_, Error>(()) }),
            Err(Error::NurseryClosed)
        ));
    }
}

// The main future may even return an unfinished nursery future: its children are dropped before
// block_on returns, and dropping the nursery future afterwards, outside any runtime, is harmless.
#[test]
#[allow(clippy::async_yields_async)] // returning the unfinished future is the point
fn a_nursery_future_returned_out_of_block_on_has_no_children_left() {
    let drops = DropCounter::new();
    let polls = Arc::new(AtomicUsize::new(0));
    let (d, p) = (drops.clone(), polls.clone());
    let fut = block_on_current(async move {
        let mut fut = Box::pin(nursery(move |n| async move {
            n.spawn(stubborn_child(&d, &p))?;
            n.spawn(stubborn_child(&d, &p))?;
            sleep_forever().await?;
            Ok::<_, Error>(())
        }));
        assert!(poll_once(fut.as_mut()).await.is_pending());
        checkpoint().await.unwrap();
        fut
    });
    assert_eq!(drops.count(), 2);
    drop(fut);
    assert_eq!(drops.count(), 2);
}

// Each run starts with clean counters.
#[test]
fn statistics_of_a_fresh_runtime_are_zero() {
    for (flavor, workers) in [(Flavor::CurrentThread, 1), (Flavor::MultiThread, 2)] {
        let stats = runtime(flavor).block_on(async { lowlevel::statistics() });
        assert_eq!(
            (stats.live_tasks, stats.timers, stats.workers),
            (0, 0, workers)
        );
    }
}

// contract R1 on the multi-threaded flavour, whose `block_on` waits (a bounded time) for its
// workers to go idle before the first poll: eight threads each run twenty runtimes of four
// workers at once, thirty-two workers on two cores, so that starts are slow and a wait may end
// at its limit (which this test cannot see; it checks that nothing hangs and nothing is lost).
// Every run returns its value, its children's work all done.
#[test]
fn runtimes_started_from_many_threads_at_once_all_return_their_value() {
    let threads: Vec<_> = (0..8u64)
        .map(|t| {
            std::thread::spawn(move || {
                (0..20u64)
                    .map(|i| {
                        let rt = Runtime::builder().worker_threads(4).build().unwrap();
                        rt.block_on(async move {
                            let sum = Arc::new(AtomicUsize::new(0));
                            let s = sum.clone();
                            nursery(|n| async move {
                                for k in 0..4 {
                                    let s = s.clone();
                                    n.spawn(async move {
                                        checkpoint().await?;
                                        s.fetch_add(k, Ordering::SeqCst);
                                        Ok::<_, Error>(())
                                    })?;
                                }
                                Ok::<_, Error>(())
                            })
                            .await
                            .unwrap();
                            sum.load(Ordering::SeqCst) as u64 + t * 100 + i
                        })
                    })
                    .sum::<u64>()
            })
        })
        .collect();
    let total: u64 = threads.into_iter().map(|h| h.join().unwrap()).sum();
    // Per run 0+1+2+3 = 6, plus t * 100 + i.
    let expected: u64 = (0..8u64)
        .flat_map(|t| (0..20u64).map(move |i| 6 + t * 100 + i))
        .sum();
    assert_eq!(total, expected);
}
