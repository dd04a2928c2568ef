//! Offloading blocking work to threads: results and panics, cancellation both ways (wait for
//! the thread by default, abandon it on request), the thread limit, and the way back from a
//! thread to the runtime.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use trellis::sync::CapacityLimiter;
use trellis::thread::{self, from_thread, FromThreadError, Portal};
use trellis::{CancelScope, Cancelled, Error};

/// Waits (polling every millisecond, at most 5 s of real time) until `flag` is set.
async fn until(flag: &AtomicBool) {
    for _ in 0..5000 {
        if flag.load(Ordering::SeqCst) {
            return;
        }
        trellis::sleep(Duration::from_millis(1)).await.unwrap();
    }
    panic!("condition not reached in 5 s");
}

#[test]
fn results_and_panics_come_back() {
    trellis::run(async {
        assert_eq!(thread::run_blocking(|| 6 * 7).await.unwrap(), 42);
        let name = thread::run_blocking(|| std::thread::current().name().map(str::to_owned))
            .await
            .unwrap();
        assert_eq!(name.as_deref(), Some("trellis-blocking"));
    });
    let panicked = std::panic::catch_unwind(|| {
        trellis::run(async {
            let _ = thread::run_blocking(|| panic!("boom on a thread")).await;
        })
    });
    let payload = panicked.unwrap_err();
    assert_eq!(payload.downcast_ref::<&str>(), Some(&"boom on a thread"));
}

#[test]
fn by_default_a_cancelled_call_waits_for_its_thread_and_returns_its_result() {
    let started = Arc::new(AtomicBool::new(false));
    let (release, released) = mpsc::channel::<()>();
    let got = Arc::new(Mutex::new(None));
    let got2 = got.clone();
    let flag = started.clone();
    let scope = trellis::run(async move {
        let scope = CancelScope::new();
        let cancel = scope.clone();
        let inner = scope.clone();
        trellis::nursery(|n| async move {
            n.spawn(async move {
                inner
                    .run(async move {
                        let value = thread::run_blocking(move || {
                            flag.store(true, Ordering::SeqCst);
                            released.recv().unwrap();
                            "finished"
                        })
                        .await?;
                        *got2.lock().unwrap() = Some(value);
                        trellis::checkpoint().await?; // the cancellation shows here
                        Ok::<_, Cancelled>(())
                    })
                    .await;
                Ok(())
            })?;
            until(&started).await;
            cancel.cancel();
            trellis::sleep(Duration::from_millis(2)).await?;
            assert!(
                got.lock().unwrap().is_none(),
                "still waiting for the thread"
            );
            release.send(()).unwrap();
            Ok::<_, Error>(())
        })
        .await
        .unwrap();
        scope
    });
    assert!(scope.cancelled_caught());
}

#[test]
fn an_abandoned_thread_keeps_its_token_until_it_finishes() {
    let started = Arc::new(AtomicBool::new(false));
    let finished = Arc::new(AtomicBool::new(false));
    let (release, released) = mpsc::channel::<()>();
    let (s, f) = (started.clone(), finished.clone());
    trellis::run(async move {
        let limiter = CapacityLimiter::new(1);
        let scope = CancelScope::new();
        let cancel = scope.clone();
        let lim = limiter.clone();
        trellis::nursery(|n| async move {
            n.spawn(async move {
                until(&s).await;
                cancel.cancel();
                Ok(())
            })?;
            let out = scope
                .run(
                    thread::run_blocking(move || {
                        s_flag(&started);
                        released.recv().unwrap();
                        f.store(true, Ordering::SeqCst);
                    })
                    .abandon_on_cancel(true)
                    .limiter(&lim),
                )
                .await;
            assert!(out.is_none(), "returned Cancelled without waiting");
            assert!(!finished.load(Ordering::SeqCst), "the thread still runs");
            assert_eq!(
                lim.borrowed_tokens(),
                1,
                "the abandoned thread holds its token"
            );
            release.send(()).unwrap();
            until(&finished).await;
            for _ in 0..5000 {
                if lim.borrowed_tokens() == 0 {
                    return Ok::<_, Error>(());
                }
                trellis::sleep(Duration::from_millis(1)).await?;
            }
            panic!("token not released");
        })
        .await
        .unwrap();
        assert_eq!(limiter.borrowed_tokens(), 0);
    });
}

fn s_flag(flag: &AtomicBool) {
    flag.store(true, Ordering::SeqCst);
}

#[test]
fn the_limiter_caps_threads_running_at_once() {
    let running = Arc::new(AtomicUsize::new(0));
    let most = Arc::new(AtomicUsize::new(0));
    let (r, m) = (running.clone(), most.clone());
    trellis::run(async move {
        let limiter = CapacityLimiter::new(2);
        trellis::nursery(|n| async move {
            for _ in 0..6 {
                let (r, m, limiter) = (r.clone(), m.clone(), limiter.clone());
                n.spawn(async move {
                    thread::run_blocking(move || {
                        let now = r.fetch_add(1, Ordering::SeqCst) + 1;
                        m.fetch_max(now, Ordering::SeqCst);
                        // Wait (at most 2 s) for a second thread, so that the limit is
                        // reached however slowly threads start; a third would show up in `m`.
                        for _ in 0..2000 {
                            if r.load(Ordering::SeqCst) >= 2 {
                                break;
                            }
                            std::thread::sleep(Duration::from_millis(1));
                        }
                        std::thread::sleep(Duration::from_millis(3));
                        m.fetch_max(r.load(Ordering::SeqCst), Ordering::SeqCst);
                        r.fetch_sub(1, Ordering::SeqCst);
                    })
                    .limiter(&limiter)
                    .await?;
                    Ok(())
                })?;
            }
            Ok::<_, Error>(())
        })
        .await
        .unwrap();
    });
    assert_eq!(most.load(Ordering::SeqCst), 2);
    assert_eq!(
        thread::default_limiter().total_tokens(),
        thread::DEFAULT_LIMIT
    );
}

#[test]
fn from_thread_runs_inside_the_waiting_task() {
    trellis::run(async {
        let me = trellis::lowlevel::current_task().id;
        let (id, sum) = thread::run_blocking(|| {
            let id = from_thread::run(|| async {
                trellis::sleep(Duration::from_millis(1)).await.unwrap();
                trellis::lowlevel::current_task().id
            })
            .unwrap();
            let sum = from_thread::run_sync(|| 40 + 2).unwrap();
            (id, sum)
        })
        .await
        .unwrap();
        assert_eq!(id, me, "the work ran in the task that called run_blocking");
        assert_eq!(sum, 42);
    });
    let plain = std::thread::spawn(|| from_thread::run_sync(|| ()))
        .join()
        .unwrap();
    assert_eq!(plain, Err(FromThreadError::NotBlockingThread));
}

#[test]
fn check_cancelled_lets_blocking_work_stop_early() {
    trellis::run(async {
        // The thread itself cancels the scope (allowed from any thread, C2) after three steps,
        // so the count does not depend on how fast the thread starts.
        let scope = CancelScope::new();
        let handle = scope.clone();
        let steps = scope
            .run(thread::run_blocking(move || {
                let mut steps = 0u64;
                while thread::check_cancelled().is_ok() {
                    steps += 1;
                    if steps == 3 {
                        handle.cancel();
                    }
                }
                steps
            }))
            .await;
        // The call waited for the thread (default), which saw the cancellation and stopped; the
        // scope absorbed nothing because the call returned Ok.
        let steps = steps
            .expect("run_blocking returned the thread's value")
            .unwrap();
        assert_eq!(steps, 3);
    });
}

#[test]
fn a_portal_runs_work_from_plain_threads() {
    let portal = trellis::run(async {
        let portal = Portal::current();
        let p = portal.clone();
        let got = thread::run_blocking(move || {
            std::thread::spawn(move || {
                p.run(|| async {
                    trellis::sleep(Duration::from_millis(1)).await.unwrap();
                    "from a plain thread"
                })
            })
            .join()
            .unwrap()
        })
        .await
        .unwrap();
        assert_eq!(got, Ok("from a plain thread"));
        portal
    });
    // The runtime is gone.
    assert_eq!(portal.run_sync(|| 1), Err(FromThreadError::RunFinished));
}

/// A future that is ready at once with `value` and panics when dropped.
struct ReadyThenPanicOnDrop(Option<u32>);

impl std::future::Future for ReadyThenPanicOnDrop {
    type Output = u32;
    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<u32> {
        std::task::Poll::Ready(self.0.take().expect("polled once"))
    }
}

impl Drop for ReadyThenPanicOnDrop {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            panic!("work's destructor panicked");
        }
    }
}

// Work sent through a portal that produced its value and then panicked in its destructor: the
// caller gets the value (it was produced), the runtime goes on, and a later call still works.
#[test]
fn a_portal_delivers_a_value_whose_future_panics_when_dropped() {
    trellis::run(async {
        let portal = Portal::current();
        let (first, second) = thread::run_blocking(move || {
            std::thread::spawn(move || {
                let first = portal.run(|| ReadyThenPanicOnDrop(Some(42)));
                let second = portal.run_sync(|| 7);
                (first, second)
            })
            .join()
            .unwrap()
        })
        .await
        .unwrap();
        assert_eq!(first, Ok(42));
        assert_eq!(second, Ok(7));
    });
}
