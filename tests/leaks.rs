//! Nothing outlives a runtime that is dropped (principle 4): every value a started task produced
//! is dropped (contract N9), and the runtime is freed, with its descriptors, whatever its tasks
//! did.
//!
//! The tests count the process's open descriptors, so they take turns (`SERIAL`).

mod common;

use std::sync::Mutex;

use common::*;
use trellis::{nursery, Flavor};

/// Held by each test while it counts descriptors.
static SERIAL: Mutex<()> = Mutex::new(());

fn open_descriptors() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

// contract N9, principle 4: after N starts, the started tasks' outputs and the values passed to
// `started` are all dropped, and the runtime's epoll, eventfd and timer descriptors are closed
// once it is dropped.
#[test]
fn starting_tasks_leaks_neither_values_nor_the_runtime() {
    const STARTS: usize = 2_000;
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    for flavor in [Flavor::CurrentThread, Flavor::MultiThread] {
        let before = open_descriptors();
        let outputs = DropCounter::new();
        let values = DropCounter::new();
        {
            let rt = runtime(flavor);
            let (o, v) = (outputs.clone(), values.clone());
            rt.block_on(async move {
                nursery(|n| async move {
                    for _ in 0..STARTS {
                        let (o, v) = (o.clone(), v.clone());
                        let value = n
                            .start(move |status| async move {
                                status.started(v.guard());
                                Ok::<_, trellis::Error>(o.guard())
                            })
                            .await?;
                        drop(value);
                    }
                    Ok::<_, trellis::Error>(())
                })
                .await
                .unwrap();
            });
        }
        assert_eq!(outputs.created(), STARTS, "{flavor:?}");
        assert_eq!(outputs.count(), STARTS, "{flavor:?}: outputs dropped");
        assert_eq!(values.count(), STARTS, "{flavor:?}: started values dropped");
        assert_eq!(
            open_descriptors(),
            before,
            "{flavor:?}: runtime descriptors closed"
        );
    }
}

// N11, principle 4: a task pending in a wait that stored no waker (a foreign future such as
// `std::future::pending()`) is freed by the task library without its future being dropped. The
// runtime's own handle on the task must not be lost with it: after a forced teardown drops the
// task's future, the runtime and its descriptors are freed when it is dropped.
#[test]
fn a_task_pending_with_no_waker_does_not_keep_its_runtime_alive() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    for flavor in [Flavor::CurrentThread, Flavor::MultiThread] {
        let before = open_descriptors();
        let drops = DropCounter::new();
        {
            let d = drops.clone();
            runtime(flavor).block_on(async move {
                let d2 = d.clone();
                let mut n = Box::pin(nursery(|n| async move {
                    let guard = d2.guard();
                    n.spawn(async move {
                        let _guard = guard;
                        std::future::pending::<()>().await;
                        Ok(())
                    })?;
                    trellis::sleep_forever().await?;
                    Ok::<_, trellis::Error>(())
                }));
                assert!(poll_once(n.as_mut()).await.is_pending());
                while d.created() < 1 {
                    trellis::checkpoint().await.unwrap();
                }
                // Let the task's poll finish everywhere: it now has no waker at all.
                for _ in 0..10 {
                    trellis::checkpoint().await.unwrap();
                }
                drop(n);
                assert_eq!(
                    d.count(),
                    1,
                    "{flavor:?}: the forced teardown dropped the task"
                );
            });
        }
        assert_eq!(drops.count(), 1, "{flavor:?}");
        assert_eq!(
            open_descriptors(),
            before,
            "{flavor:?}: runtime descriptors closed"
        );
    }
}
