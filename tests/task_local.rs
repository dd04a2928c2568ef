//! `TaskLocal`: a value set by `scope` for a future and inherited by the tasks spawned inside it,
//! with the value in effect at the spawn (trio's tasks copy their spawner's context); inner
//! scopes shadow, and the outer value comes back after them; a sibling spawned elsewhere does not
//! see it; it survives `.await` points, thread hops on the multi-threaded runtime and
//! `run_blocking`.

mod common;

use std::sync::{Arc, Mutex};

use common::*;
use trellis::thread::run_blocking;
use trellis::{
    checkpoint, move_on_after, nursery, sleep, Error, Nursery, TaskLocal, TaskLocalError,
};

static ID: TaskLocal<u32> = TaskLocal::new();
static NAME: TaskLocal<String> = TaskLocal::new();
/// Same type as `ID`, a different variable: the two never mix.
static OTHER_ID: TaskLocal<u32> = TaskLocal::new();

fn id() -> Result<u32, TaskLocalError> {
    ID.try_with(|v| *v)
}

#[test]
fn value_is_seen_in_the_body_and_across_await_points() {
    let seen = block_on_current(async {
        ID.scope(7, async {
            let mut seen = vec![ID.get()];
            checkpoint().await.unwrap();
            seen.push(ID.get());
            sleep(secs(5)).await.unwrap();
            seen.push(ID.with(|v| v + 1));
            seen
        })
        .await
    });
    assert_eq!(seen, [7, 7, 8]);
}

#[test]
fn outside_any_scope_try_with_fails_and_with_panics_saying_what_to_do() {
    assert_eq!(id(), Err(TaskLocalError));
    let inside_runtime = block_on_current(async { id() });
    assert_eq!(inside_runtime, Err(TaskLocalError));
    let message = panic_text(|| ID.get());
    assert_eq!(
        message,
        "no value of this task-local is set here: wrap the code in `scope(value, future)` of \
         this TaskLocal<u32>, or use try_with"
    );
}

#[test]
fn inner_scope_shadows_and_the_outer_value_comes_back_after_it() {
    let log = block_on_current(async {
        ID.scope(1, async {
            let mut log = vec![id()];
            let inner = ID
                .scope(2, async {
                    let before = id();
                    checkpoint().await.unwrap();
                    let deeper = ID.scope(3, async { id() }).await;
                    (before, deeper, id())
                })
                .await;
            log.extend([inner.0, inner.1, inner.2, id()]);
            log
        })
        .await
    });
    assert_eq!(log, [Ok(1), Ok(2), Ok(3), Ok(2), Ok(1)]);
    assert_eq!(id(), Err(TaskLocalError));
}

#[test]
fn different_task_locals_are_independent_even_of_the_same_type() {
    let got = block_on_current(async {
        ID.scope(1, async {
            OTHER_ID
                .scope(
                    2,
                    NAME.scope("ann".into(), async {
                        (ID.get(), OTHER_ID.get(), NAME.get())
                    }),
                )
                .await
        })
        .await
    });
    assert_eq!(got, (1, 2, "ann".to_string()));
}

#[test]
fn children_inherit_the_value_in_effect_where_they_are_spawned() {
    let log = Log::new();
    let l = log.clone();
    block_on_current(async move {
        ID.scope(1, async move {
            nursery(|n: Nursery<Error>| async move {
                let l2 = l.clone();
                // Spawned under an inner scope of a nursery opened in the outer one: the spawn
                // site decides (the nursery's own position in the tree does not).
                ID.scope(2, async {
                    n.spawn(async move {
                        l2.push(format!("child {:?}", id()));
                        nursery(|n: Nursery<Error>| async move {
                            n.spawn(async move {
                                sleep(secs(1)).await?;
                                l2.push(format!("grandchild {:?}", id()));
                                Ok(())
                            })?;
                            Ok(())
                        })
                        .await
                        .map_err(|_| Error::TaskFailed)
                    })
                })
                .await?;
                l.push(format!("body {:?}", id()));
                Ok(())
            })
            .await
        })
        .await
        .unwrap();
    });
    assert_eq!(
        log.take(),
        ["body Ok(1)", "child Ok(2)", "grandchild Ok(2)"]
    );
}

#[test]
fn a_child_keeps_its_value_after_the_spawners_scope_ended() {
    let log = Log::new();
    let l = log.clone();
    block_on_current(async move {
        nursery(|n: Nursery<Error>| async move {
            ID.scope(5, async {
                let l = l.clone();
                n.spawn(async move {
                    sleep(secs(3)).await?;
                    l.push(format!("child after 3s {:?}", id()));
                    Ok(())
                })
            })
            .await?;
            l.push(format!("body after the scope {:?}", id()));
            Ok(())
        })
        .await
        .unwrap();
    });
    assert_eq!(
        log.take(),
        [
            "body after the scope Err(TaskLocalError)",
            "child after 3s Ok(5)"
        ]
    );
}

#[test]
fn a_sibling_spawned_outside_the_scope_does_not_see_it() {
    let log = Log::new();
    let l = log.clone();
    block_on_current(async move {
        nursery(|n: Nursery<Error>| async move {
            let (inside, outside) = (l.clone(), l.clone());
            ID.scope(9, async {
                n.spawn(async move {
                    checkpoint().await?;
                    inside.push(format!("inside {:?}", id()));
                    Ok(())
                })
            })
            .await?;
            n.spawn(async move {
                checkpoint().await?;
                outside.push(format!("outside {:?}", id()));
                Ok(())
            })?;
            Ok(())
        })
        .await
        .unwrap();
    });
    assert_eq!(log.take(), ["inside Ok(9)", "outside Err(TaskLocalError)"]);
}

#[test]
fn a_started_task_inherits_from_the_start_call() {
    let got = block_on_current(async {
        nursery(|n: Nursery<Error>| async move {
            let value = ID
                .scope(
                    4,
                    n.start(|status| async move {
                        status.started(id());
                        Ok(())
                    }),
                )
                .await?;
            Ok(value)
        })
        .await
        .unwrap()
    });
    assert_eq!(got, Ok(4));
}

#[test]
fn values_follow_tasks_across_threads_and_into_run_blocking() {
    let rt = multi_thread(2);
    let seen: Arc<Mutex<Vec<(u32, bool)>>> = Arc::default();
    let s = seen.clone();
    rt.block_on(async move {
        nursery(|n: Nursery<Error>| async move {
            for i in 0..8u32 {
                let s = s.clone();
                n.spawn(ID.scope(i, async move {
                    let mut threads = std::collections::HashSet::new();
                    let mut all_equal = true;
                    for round in 0..200 {
                        threads.insert(std::thread::current().id());
                        all_equal &= id() == Ok(i);
                        if round % 50 == 0 {
                            sleep(ms(1)).await?;
                        } else {
                            checkpoint().await?;
                        }
                    }
                    // A pool thread sees the caller's value.
                    let (on_thread, thread) =
                        run_blocking(|| (id(), std::thread::current().id())).await?;
                    all_equal &= on_thread == Ok(i) && !threads.contains(&thread);
                    s.lock().unwrap().push((i, all_equal));
                    Ok(())
                }))?;
            }
            Ok(())
        })
        .await
        .unwrap();
    });
    let mut seen = seen.lock().unwrap().clone();
    seen.sort();
    assert_eq!(seen, (0..8).map(|i| (i, true)).collect::<Vec<_>>());
}

#[test]
fn sync_scope_around_block_on_gives_the_main_future_and_its_children_the_value() {
    let (rt, _clock) = current_thread();
    let got = ID.sync_scope(11, || {
        rt.block_on(async {
            let main = id();
            let child = nursery(|n: Nursery<Error>| async move {
                let handle = n.spawn(async { Ok(id()) })?;
                handle.await
            })
            .await
            .unwrap();
            (main, child)
        })
    });
    assert_eq!(got, (Ok(11), Ok(11)));
    assert_eq!(ID.sync_scope(12, id), Ok(12));
    assert_eq!(id(), Err(TaskLocalError));
}

/// Records the value in effect when it is dropped.
struct SeesOnDrop(Arc<Mutex<Option<Result<u32, TaskLocalError>>>>);

impl Drop for SeesOnDrop {
    fn drop(&mut self) {
        *self.0.lock().unwrap() = Some(id());
    }
}

#[test]
fn a_cancelled_scope_drops_its_future_with_the_value_still_set() {
    let seen: Arc<Mutex<Option<Result<u32, TaskLocalError>>>> = Arc::default();
    let s = seen.clone();
    let outcome = block_on_current(async move {
        move_on_after(
            secs(1),
            ID.scope(3, async move {
                let _guard = SeesOnDrop(s);
                // A foreign wait: the deadline drops this future (contract B1).
                std::future::pending::<()>().await;
            }),
        )
        .await
    });
    assert_eq!(outcome, None);
    assert_eq!(*seen.lock().unwrap(), Some(Ok(3)));
}

#[test]
fn a_torn_down_child_is_dropped_with_its_own_value() {
    let seen: Arc<Mutex<Option<Result<u32, TaskLocalError>>>> = Arc::default();
    let s = seen.clone();
    block_on_current(async move {
        ID.scope(1, async move {
            // The nursery future is dropped by the deadline while its child waits in a foreign
            // wait: the child's future is dropped from the owner's poll (N11).
            move_on_after(
                secs(1),
                nursery(|n: Nursery<Error>| async move {
                    ID.scope(2, async {
                        n.spawn(async move {
                            let _guard = SeesOnDrop(s);
                            std::future::pending::<()>().await;
                            Ok(())
                        })
                    })
                    .await?;
                    std::future::pending::<()>().await;
                    Ok(())
                }),
            )
            .await
        })
        .await
    });
    assert_eq!(*seen.lock().unwrap(), Some(Ok(2)));
}
