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

// A planted lock-order deadlock: each task holds one lock and waits for the other. The run fails
// with a message naming both tasks.
#[test]
fn a_lock_order_deadlock_is_reported_with_both_tasks() {
    {
        let flavor = Flavor::CurrentThread;
        let rt = detecting(MockClock::new());
        let text = panic_text(move || {
            rt.block_on(async {
                let a = Arc::new(Mutex::new("a"));
                let b = Arc::new(Mutex::new("b"));
                let seq = Sequencer::new();
                nursery(|n| async move {
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
                            // Both hold their first lock before either asks for its second.
                            drop(seq.turn(steps[1]).await?);
                            let _second = second.lock().await?;
                            Ok::<_, Error>(())
                        })?;
                    }
                    Ok::<_, Error>(())
                })
                .await
            })
        });
        assert!(text.contains("deadlock"), "{flavor:?}: {text}");
        assert!(text.contains("\"takes a then b\""), "{flavor:?}: {text}");
        assert!(text.contains("\"takes b then a\""), "{flavor:?}: {text}");
        // What each one waits in: both in a lock.
        assert_eq!(
            text.matches("waits in sync::Mutex::lock").count(),
            2,
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
