//! `Nursery::start` on the multi-threaded runtime, where the started task may call
//! `TaskStatus::started` on another worker before `start` has finished spawning it.

use trellis::{nursery, Error, Runtime};

// contract N9: start returns the value passed to started, every time.
#[test]
fn started_on_another_worker_is_never_lost() {
    let rt = Runtime::builder().worker_threads(2).build().unwrap();
    rt.block_on(async {
        for i in 0..2_000u32 {
            let got = nursery(|n| async move {
                let v = n
                    .start(move |status| async move {
                        status.started(i);
                        Ok::<_, Error>(())
                    })
                    .await?;
                Ok::<_, Error>(v)
            })
            .await
            .unwrap();
            assert_eq!(got, i);
        }
    });
}

mod common;

use std::sync::{Arc, Barrier};

use common::*;
use trellis::{sleep_forever, CancelScope};

// contract N11 with N9: a nursery force-dropped on one thread while its started task calls
// `started` on a worker at the same instant. Whichever wins, the drop returns only after the
// task's future was dropped: the task either moved into the nursery (and the teardown drops it)
// or stayed under the `start` call (and that call's drop tears it down). Never neither.
fn drop_nursery_while_child_calls_started(workers: usize, rounds: usize) {
    let rt = multi_thread(workers);
    rt.block_on(async move {
        for round in 0..rounds {
            let drops = DropCounter::new();
            let barrier = Arc::new(Barrier::new(2));
            let (d, b) = (drops.clone(), barrier.clone());
            let mut target = Box::pin(trellis::nursery(move |n| async move {
                n.start(move |status| async move {
                    let _guard = d.guard();
                    b.wait();
                    status.started(());
                    // Blocked where no cancellation reaches: only a drop ends it.
                    let _ = CancelScope::new().shielded(true).run(sleep_forever()).await;
                    Ok(())
                })
                .await?;
                sleep_forever().await?;
                Ok::<_, Error>(())
            }));
            assert!(poll_once(target.as_mut()).await.is_pending());
            barrier.wait();
            drop(target);
            assert_eq!(drops.created(), 1, "round {round}");
            assert_eq!(
                drops.count(),
                1,
                "round {round}: the task outlived its nursery"
            );
        }
    });
}

#[test]
fn a_nursery_dropped_while_its_task_calls_started_drops_the_task_two_workers() {
    drop_nursery_while_child_calls_started(2, 3_000);
}

#[test]
fn a_nursery_dropped_while_its_task_calls_started_drops_the_task_four_workers() {
    drop_nursery_while_child_calls_started(4, 3_000);
}
