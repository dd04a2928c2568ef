//! Nothing outlives a runtime that is dropped (principle 4): every value a started task produced
//! is dropped (contract N9), and the runtime is freed, with its descriptors, whatever its tasks
//! did.
//!
//! Some tests count the process's open descriptors, so all take turns (`SERIAL`).

mod common;

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Wake, Waker};

use common::*;
use trellis::sync::Event;
use trellis::testing::wait_all_tasks_blocked;
use trellis::{nursery, Flavor, TaskHandle};

/// Held by each test while it counts descriptors, and by the others while their runtimes hold
/// some open.
static SERIAL: Mutex<()> = Mutex::new(());

fn open_descriptors() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

/// Runs `body` once for each flavour (it makes its runtime with `runtime(flavour)`, drops it,
/// and checks its own counts), then checks that the runtime's descriptors are closed: nothing
/// kept the runtime alive. Holds `SERIAL` throughout.
fn on_each_flavour_leaving_no_runtime(mut body: impl FnMut(Flavor)) {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    for flavor in [Flavor::CurrentThread, Flavor::MultiThread] {
        let before = open_descriptors();
        body(flavor);
        assert_eq!(
            open_descriptors(),
            before,
            "{flavor:?}: runtime descriptors closed"
        );
    }
}

// contract N9, principle 4: after N starts, the started tasks' outputs and the values passed to
// `started` are all dropped, and the runtime's epoll, eventfd and timer descriptors are closed
// once it is dropped.
#[test]
fn starting_tasks_leaks_neither_values_nor_the_runtime() {
    const STARTS: usize = 2_000;
    on_each_flavour_leaving_no_runtime(|flavor| {
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
    });
}

// N11, principle 4: a task pending in a wait that stored no waker (a foreign future such as
// `std::future::pending()`) is freed by the task library without its future being dropped. The
// runtime's own handle on the task must not be lost with it: after a forced teardown drops the
// task's future, the runtime and its descriptors are freed when it is dropped.
#[test]
fn a_task_pending_with_no_waker_does_not_keep_its_runtime_alive() {
    on_each_flavour_leaving_no_runtime(|flavor| {
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
    });
}

// N5, principle 4: a spawn that a finished nursery refuses frees its task (the future, and the
// cell with the handle's reference it was made with, which holds the nursery and so the
// runtime): the runtime's descriptors are closed when it is dropped.
#[test]
fn a_refused_spawn_frees_its_task_and_keeps_no_runtime_alive() {
    const SPAWNS: usize = 100;
    on_each_flavour_leaving_no_runtime(|flavor| {
        let drops = DropCounter::new();
        {
            let d = drops.clone();
            runtime(flavor).block_on(async move {
                let kept = nursery(|n| async move { Ok::<_, trellis::Error>(n.clone()) })
                    .await
                    .unwrap();
                for _ in 0..SPAWNS {
                    let guard = d.guard();
                    let refused = kept.spawn(async move {
                        let _guard = guard;
                        Ok(())
                    });
                    assert!(matches!(refused, Err(trellis::Error::NurseryClosed)));
                }
            });
        }
        assert_eq!(drops.created(), SPAWNS, "{flavor:?}");
        assert_eq!(drops.count(), SPAWNS, "{flavor:?}: futures dropped");
    });
}

/// Counts the wake-ups of a waker made from it.
#[derive(Default)]
struct Wakes(AtomicUsize);

impl Wake for Wakes {
    fn wake(self: Arc<Self>) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

/// Polls `handle` once with `waker` in place of the task's own.
fn poll_with<T>(handle: &mut TaskHandle<T>, waker: &Waker) -> bool {
    Pin::new(handle)
        .poll(&mut Context::from_waker(waker))
        .is_pending()
}

// N9, principle 4: a task's value is dropped exactly once wherever it ends: returned through
// the awaited handle, left behind by a handle dropped before the task finished or after, or
// never made (the task cancelled first). The awaiting waker the result slot keeps is given
// back: dropped when another replaces it, woken once (and so consumed) when the task ends. (The
// slot keeps its state apart from the waker and the value, which share its memory.)
#[test]
fn a_task_value_and_its_handle_waker_are_dropped_once() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    for flavor in [Flavor::CurrentThread, Flavor::MultiThread] {
        let values = DropCounter::new();
        let (first, second) = (Arc::new(Wakes::default()), Arc::new(Wakes::default()));
        {
            let v = values.clone();
            let (w1, w2) = (Waker::from(first.clone()), Waker::from(second.clone()));
            let (f, s) = (first.clone(), second.clone());
            runtime(flavor).block_on(async move {
                nursery(|n| async move {
                    let value = |v: &DropCounter| {
                        let v = v.clone();
                        async move { Ok::<_, trellis::Error>(v.guard()) }
                    };
                    drop(n.spawn(value(&v))?.await?);
                    drop(n.spawn(value(&v))?);
                    let kept = n.spawn(value(&v))?;
                    wait_all_tasks_blocked().await?;
                    assert!(kept.is_finished());
                    drop(kept);

                    let go = Arc::new(Event::new());
                    let mut waited = n.spawn({
                        let (go, v) = (go.clone(), v.clone());
                        async move {
                            go.wait().await?;
                            Ok::<_, trellis::Error>(v.guard())
                        }
                    })?;
                    wait_all_tasks_blocked().await?;
                    assert!(poll_with(&mut waited, &w1));
                    assert!(poll_with(&mut waited, &w2));
                    // Held here: the test's `Arc`, the clone moved in, and `w1` (`w2`); the
                    // second waker also by the result slot and by the await's cancel
                    // registration.
                    assert_eq!(Arc::strong_count(&f), 3, "the replaced waker was dropped");
                    assert_eq!(Arc::strong_count(&s), 5, "the slot keeps the new one");
                    go.set();
                    wait_all_tasks_blocked().await?;
                    assert_eq!(s.0.load(Ordering::SeqCst), 1, "woken once");
                    assert_eq!(Arc::strong_count(&s), 4, "the slot's copy was consumed");
                    assert_eq!(f.0.load(Ordering::SeqCst), 0);
                    drop((w1, w2));
                    drop(waited.await?);

                    let never = n.spawn({
                        let v = v.clone();
                        async move {
                            trellis::sleep_forever().await?;
                            Ok::<_, trellis::Error>(v.guard())
                        }
                    })?;
                    wait_all_tasks_blocked().await?;
                    never.cancel();
                    assert!(matches!(never.await, Err(trellis::Error::TaskCancelled)));
                    Ok::<_, trellis::Error>(())
                })
                .await
                .unwrap();
            });
        }
        assert_eq!(values.created(), 4, "{flavor:?}");
        assert_eq!(values.count(), 4, "{flavor:?}: every value dropped once");
        assert_eq!(Arc::strong_count(&first), 1, "{flavor:?}");
        assert_eq!(Arc::strong_count(&second), 1, "{flavor:?}");
    }
}

// N9, principle 4: a finished task's cell frees what its node still holds. A named task keeps
// its name beside its node; the name is dropped with the cell whether the task returned, was
// cancelled while parked, or was never awaited. (A finished task's cell skips its node's drop
// when the node holds nothing.)
#[test]
fn a_named_task_frees_its_name() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    for flavor in [Flavor::CurrentThread, Flavor::MultiThread] {
        let name: Arc<str> = Arc::from("worker");
        {
            let name = name.clone();
            runtime(flavor).block_on(async move {
                nursery(|n| async move {
                    n.spawn_named(name.clone(), async { Ok::<_, trellis::Error>(()) })?
                        .await?;
                    let parked = n.spawn_named(name.clone(), async {
                        trellis::sleep_forever().await?;
                        Ok::<_, trellis::Error>(())
                    })?;
                    drop(n.spawn_named(name.clone(), async { Ok::<_, trellis::Error>(()) })?);
                    wait_all_tasks_blocked().await?;
                    parked.cancel();
                    assert!(matches!(parked.await, Err(trellis::Error::TaskCancelled)));
                    Ok::<_, trellis::Error>(())
                })
                .await
                .unwrap();
            });
        }
        assert_eq!(Arc::strong_count(&name), 1, "{flavor:?}: every copy freed");
    }
}
