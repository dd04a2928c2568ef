//! The deadlock detector (`Builder::detect_deadlocks`): a run in which every task is blocked and
//! nothing can wake any of them fails with the task tree instead of hanging; runs that something
//! outside the tasks will wake (I/O, a thread, a portal, a foreign future, a timer) go on.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use trellis::sync::{Event, Mutex};
use trellis::testing::{MockClock, Sequencer};
use trellis::{nursery, Error, Flavor, Runtime};

fn detecting(clock: MockClock) -> Runtime {
    Runtime::builder()
        .flavor(Flavor::CurrentThread)
        .clock(clock)
        .detect_deadlocks(true)
        .build()
        .unwrap()
}

/// Plants a lock-order deadlock in `n`: task "takes a then b" and task "takes b then a" each
/// take their first lock, and only then (both hold one) ask for their second.
fn spawn_lock_order_deadlock(n: &trellis::Nursery<Error>) -> Result<(), Error> {
    let a = Arc::new(Mutex::new("a"));
    let b = Arc::new(Mutex::new("b"));
    let seq = Sequencer::new();
    for (name, first, second, steps) in [
        ("takes a then b", a.clone(), b.clone(), [0, 2]),
        ("takes b then a", b, a, [1, 3]),
    ] {
        let seq = seq.clone();
        n.spawn_named(name, async move {
            let _first = {
                let _turn = seq.turn(steps[0]).await?;
                first.lock().await?
            };
            drop(seq.turn(steps[1]).await?);
            let _second = second.lock().await?;
            Ok::<_, Error>(())
        })?;
    }
    Ok(())
}

// A planted lock-order deadlock: each task holds one lock and waits for the other. The run fails
// with a message naming both tasks.
#[test]
fn a_lock_order_deadlock_is_reported_with_both_tasks() {
    {
        let flavor = Flavor::CurrentThread;
        let rt = detecting(MockClock::new());
        let text = panic_text(move || {
            rt.block_on(nursery(|n| async move { spawn_lock_order_deadlock(&n) }))
        });
        assert!(text.contains("deadlock"), "{flavor:?}: {text}");
        assert!(text.contains("\"takes a then b\""), "{flavor:?}: {text}");
        assert!(text.contains("\"takes b then a\""), "{flavor:?}: {text}");
        // What each one waits in, which lock, and who holds it: the cycle can be read off.
        assert!(
            text.contains(
                "    task 1 \"takes a then b\"\n      \
                   holds lock #1\n      \
                   waits in sync::Mutex::lock for lock #2, held by task 2 \"takes b then a\"\n    \
                 task 2 \"takes b then a\"\n      \
                   holds lock #2\n      \
                   waits in sync::Mutex::lock for lock #1, held by task 1 \"takes a then b\"\n"
            ),
            "{flavor:?}: {text}"
        );
    }
}

// An event nobody can set blocks the main future alone: reported too.
#[test]
fn an_event_nobody_can_set_is_reported() {
    let rt = detecting(MockClock::new());
    let text = panic_text(move || rt.block_on(async { Event::new().wait().await }));
    assert!(text.contains("deadlock"), "{text}");
    assert!(
        text.contains("task 0 \"main\"\n  waits in sync::Event::wait"),
        "{text}"
    );
}

// No false positives: every task blocked, but a thread, a portal, a foreign future, registered
// I/O or a reachable timer will wake one. Each finishes normally.
#[test]
fn blocked_runs_that_something_will_wake_are_not_deadlocks() {
    {
        let flavor = Flavor::CurrentThread;
        // A run_blocking thread.
        let rt = detecting(MockClock::new());
        let v = rt.block_on(async {
            trellis::thread::run_blocking(|| {
                std::thread::sleep(Duration::from_millis(2));
                5
            })
            .await
        });
        assert_eq!(v, Ok(5), "{flavor:?}");

        // A plain thread with a portal.
        let rt = detecting(MockClock::new());
        rt.block_on(async {
            let event = Arc::new(Event::new());
            let (portal, e) = (trellis::thread::Portal::current(), event.clone());
            let thread = std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(2));
                portal.run_sync(move || e.set()).unwrap();
            });
            event.wait().await.unwrap();
            thread.join().unwrap();
        });

        // A foreign future completed by a plain thread.
        let rt = detecting(MockClock::new());
        let got = rt.block_on(async {
            let (tx, rx) = std::sync::mpsc::channel::<u8>();
            let done = Arc::new(std::sync::Mutex::new(None));
            let d = done.clone();
            let thread = std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(2));
                tx.send(9).unwrap();
            });
            let value = std::future::poll_fn(move |cx| match rx.try_recv() {
                Ok(v) => std::task::Poll::Ready(v),
                Err(_) => {
                    *d.lock().unwrap() = Some(cx.waker().clone());
                    let w = cx.waker().clone();
                    std::thread::spawn(move || {
                        std::thread::sleep(Duration::from_millis(1));
                        w.wake();
                    });
                    std::task::Poll::Pending
                }
            })
            .await;
            thread.join().unwrap();
            value
        });
        assert_eq!(got, 9, "{flavor:?}");

        // Registered I/O: a read that a plain thread's write completes.
        let rt = detecting(MockClock::new());
        let got = rt.block_on(async {
            let (a, mut b) = std::os::unix::net::UnixStream::pair().unwrap();
            let a = trellis::io::AsyncFd::new(a).unwrap();
            let thread = std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(2));
                std::io::Write::write_all(&mut b, b"x").unwrap();
            });
            let mut buf = [0u8; 1];
            let n = a
                .read_with(|s| std::io::Read::read(&mut &*s, &mut buf))
                .await
                .unwrap();
            thread.join().unwrap();
            n
        });
        assert_eq!(got, 1, "{flavor:?}");

        // A timer the clock reaches (autojump).
        let rt = Runtime::builder()
            .flavor(Flavor::CurrentThread)
            .clock(autojump_clock(Duration::ZERO))
            .detect_deadlocks(true)
            .build()
            .unwrap();
        rt.block_on(async { trellis::sleep(secs(60)).await.unwrap() });
    }
}

// The multi-threaded flavour refuses the option with a clear error instead of racing.
#[test]
fn deadlock_detection_needs_the_current_thread_flavour() {
    let err = Runtime::builder()
        .worker_threads(2)
        .detect_deadlocks(true)
        .build()
        .unwrap_err();
    assert!(err.to_string().contains("current-thread"), "{err}");
}

// The same report as data (`lowlevel::task_tree_snapshot`): with detection on, each blocked
// task's wait names its operation, the lock, and the lock's holder, so a tool can find the cycle.
#[test]
fn the_task_tree_snapshot_gives_each_lock_wait_its_lock_and_holder() {
    use trellis::lowlevel::{self, EntryKind, TreeEntry, Wait};
    use trellis::testing::wait_all_tasks_blocked;

    let rt = detecting(MockClock::new());
    rt.block_on(async {
        nursery(|n| async move {
            spawn_lock_order_deadlock(&n)?;
            wait_all_tasks_blocked().await?;
            let tree = lowlevel::task_tree_snapshot();
            let nursery = &tree.roots[0].children[0];
            assert_eq!(nursery.kind, EntryKind::Nursery);
            let tasks: Vec<&TreeEntry> = nursery.children.iter().collect();
            let ids: Vec<u64> = tasks.iter().map(|t| t.kind.task().unwrap().id).collect();
            let lock_wait = |t: &TreeEntry| match t.waits.as_slice() {
                [Wait {
                    operation: "sync::Mutex::lock",
                    lock: Some(lock),
                }] => *lock,
                other => panic!("one lock wait expected, got {other:?}"),
            };
            let (first, second) = (lock_wait(tasks[0]), lock_wait(tasks[1]));
            // Each waits for a different lock, held by the other.
            assert_ne!(first.lock, second.lock);
            assert_eq!(first.held_by, Some(ids[1]));
            assert_eq!(second.held_by, Some(ids[0]));
            n.cancel();
            Ok::<_, Error>(())
        })
        .await
        .unwrap();
    });
}

// The holder a report names is the one at the time of the report, not the one when the waiter
// parked: the lock passed from task 1 to task 2 (the first in line) while task 3 waited.
#[test]
fn a_lock_wait_names_the_current_holder_after_a_hand_off() {
    let rt = detecting(MockClock::new());
    let text = panic_text(move || {
        rt.block_on(async {
            let lock = Arc::new(Mutex::new(()));
            let seq = Sequencer::new();
            nursery(|n| async move {
                for (name, step) in [("first", 0), ("second", 1), ("third", 2)] {
                    let (lock, seq) = (lock.clone(), seq.clone());
                    n.spawn_named(name, async move {
                        let guard = {
                            let _turn = seq.turn(step).await?;
                            lock.lock()
                        };
                        let guard = guard.await?;
                        if name == "first" {
                            // Hold until both others wait, then pass the lock on.
                            drop(seq.turn(3).await?);
                            drop(guard);
                        } else {
                            // "second" gets the lock and blocks forever holding it.
                            trellis::sync::Event::new().wait().await?;
                        }
                        Ok::<_, Error>(())
                    })?;
                }
                Ok::<_, Error>(())
            })
            .await
        })
    });
    assert!(
        text.contains(
            "  nursery\n    \
               waits in nursery join\n    \
             task 2 \"second\"\n      \
               holds lock #1\n      \
               waits in sync::Event::wait\n    \
             task 3 \"third\"\n      \
               waits in sync::Mutex::lock for lock #1, held by task 2 \"second\"\n"
        ),
        "{text}"
    );
}

// Without deadlock detection nothing labels the waits, and the tree is the plain one: no
// `waits in` line, not even the nursery join of a body that is done (its text is what tools
// and tests that compare it exactly expect).
#[test]
fn without_detection_the_task_tree_shows_no_waits() {
    let rt = Runtime::builder()
        .flavor(Flavor::CurrentThread)
        .clock(MockClock::new())
        .build()
        .unwrap();
    let (tree, snapshot) = rt.block_on(async {
        let lock = Arc::new(Mutex::new(()));
        let guard = lock.clone().lock_owned().await.unwrap();
        let seen = Arc::new(std::sync::Mutex::new(None));
        let out = seen.clone();
        nursery(|n| async move {
            n.spawn_named("waiter", async move {
                drop(lock.lock().await?);
                Ok(())
            })?;
            n.spawn_named("looker", async move {
                trellis::testing::wait_all_tasks_blocked().await?;
                *out.lock().unwrap() = Some((
                    trellis::lowlevel::task_tree(),
                    trellis::lowlevel::task_tree_snapshot(),
                ));
                drop(guard);
                Ok(())
            })?;
            Ok::<_, Error>(()) // the body is done: the nursery joins its tasks
        })
        .await
        .unwrap();
        let taken = seen.lock().unwrap().take();
        taken.unwrap()
    });
    assert_eq!(
        tree,
        "task 0 \"main\"\n  nursery\n    task 1 \"waiter\"\n    task 2 \"looker\"\n"
    );
    let nursery = &snapshot.roots[0].children[0];
    assert!(nursery.waits.is_empty());
    assert!(nursery.children.iter().all(|t| t.waits.is_empty()));
}
