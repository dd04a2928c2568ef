//! Forced teardown (contract N11, principle 1): dropping a nursery future mid-flight drops every
//! child future — grandchildren included — before the drop returns, and none is polled again.

mod common;

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use common::*;
use trellis::lowlevel;
use trellis::{
    cancel_shielded_checkpoint, checkpoint, nursery, sleep, sleep_forever, Error, Nursery,
    TaskHandle,
};

type Res<T = ()> = Result<T, TestError>;

/// Counts the polls of the future it wraps.
struct CountPolls<F> {
    fut: Pin<Box<F>>,
    polls: Arc<AtomicUsize>,
}

impl<F: Future> Future for CountPolls<F> {
    type Output = F::Output;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        self.polls.fetch_add(1, Ordering::SeqCst);
        self.fut.as_mut().poll(cx)
    }
}

/// A child that owns a guard and ignores cancellation, so only a drop ends it. `busy`: it loops
/// on schedule points (for the multi-threaded runtime, where it keeps a worker busy); else it
/// blocks in a shielded sleep (so a mock clock can still autojump).
fn stubborn(
    drops: &DropCounter,
    polls: &Arc<AtomicUsize>,
    busy: bool,
) -> impl Future<Output = Res> + Send {
    let guard = drops.guard();
    let fut = async move {
        let _guard = guard;
        loop {
            if busy {
                // A poll long enough that a teardown often finds it in progress.
                let mut x = 0u64;
                for i in 0..5_000u64 {
                    x = x.wrapping_add(std::hint::black_box(i));
                }
                std::hint::black_box(x);
                cancel_shielded_checkpoint().await?;
            } else {
                let _ = trellis::CancelScope::new()
                    .shielded(true)
                    .run(sleep_forever())
                    .await;
            }
        }
    };
    CountPolls {
        fut: Box::pin(fut),
        polls: polls.clone(),
    }
}

/// A child that owns a guard and sleeps (a timer entry) until cancelled; it then cleans up in a
/// shielded sleep, so a drop is what ends it.
fn sleepy(drops: &DropCounter) -> impl Future<Output = Res> + Send {
    let guard = drops.guard();
    async move {
        let _guard = guard;
        if sleep(secs(3600)).await.is_err() {
            trellis::CancelScope::new()
                .shielded(true)
                .run(sleep(secs(3600)))
                .await;
        }
        Ok(())
    }
}

/// Runs `fut` until `timeout` passes, then drops it (inside this poll) and gives `None`: what an
/// outer `select!` with a timer branch does.
struct DropAfter<F> {
    fut: Option<Pin<Box<F>>>,
    timer: Pin<Box<trellis::Sleep>>,
}

fn drop_after<F: Future>(timeout: Duration, fut: F) -> DropAfter<F> {
    DropAfter {
        fut: Some(Box::pin(fut)),
        timer: Box::pin(sleep(timeout)),
    }
}

impl<F: Future> Future for DropAfter<F> {
    type Output = Option<F::Output>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        if let Some(fut) = self.fut.as_mut() {
            if let Poll::Ready(v) = fut.as_mut().poll(cx) {
                return Poll::Ready(Some(v));
            }
        }
        if self.timer.as_mut().poll(cx).is_ready() {
            self.fut = None;
            return Poll::Ready(None);
        }
        Poll::Pending
    }
}

/// Builds a nursery with `stubborn` stubborn children, `sleepy` sleeping children and one child
/// that holds a nested nursery with two stubborn grandchildren. Every future owns a guard of
/// `drops` (the body too). The nursery and one handle are sent out through `out`.
fn busy_nursery(
    drops: &DropCounter,
    polls: &Arc<AtomicUsize>,
    stubborn_children: usize,
    sleepy_children: usize,
    busy: bool,
    out: std::sync::mpsc::Sender<(Nursery<TestError>, TaskHandle<()>)>,
) -> impl Future<Output = Result<(), trellis::NurseryError<TestError>>> + Send {
    let (d, p) = (drops.clone(), polls.clone());
    nursery(move |n| async move {
        let _body_guard = d.guard();
        let first = n.spawn(stubborn(&d, &p, busy))?;
        for _ in 1..stubborn_children {
            n.spawn(stubborn(&d, &p, busy))?;
        }
        for _ in 0..sleepy_children {
            n.spawn(sleepy(&d))?;
        }
        let (d2, p2) = (d.clone(), p.clone());
        n.spawn(async move {
            let _guard = d2.guard();
            nursery(|inner| async move {
                inner.spawn(stubborn(&d2, &p2, busy))?;
                inner.spawn(stubborn(&d2, &p2, busy))?;
                sleep_forever().await?;
                Ok::<_, TestError>(())
            })
            .await
            .map_err(|_| TestError::Fail("inner"))
        })?;
        out.send((n.clone(), first)).unwrap();
        sleep_forever().await?;
        Ok::<_, TestError>(())
    })
}

/// Guards in a [`busy_nursery`]: body, children, the nested child, its two grandchildren.
fn guards(stubborn_children: usize, sleepy_children: usize) -> usize {
    1 + stubborn_children + sleepy_children + 1 + 2
}

// contract N11 on the current-thread runtime: drop the nursery future by hand.
#[test]
fn dropping_a_nursery_future_drops_every_child_future_before_returning() {
    block_on_current(async {
        let drops = DropCounter::new();
        let polls = Arc::new(AtomicUsize::new(0));
        let (tx, rx) = std::sync::mpsc::channel();
        let mut fut = Box::pin(busy_nursery(&drops, &polls, 5, 5, false, tx));
        assert!(poll_once(fut.as_mut()).await.is_pending());
        let (n, handle) = rx.recv().unwrap();
        sleep(secs(1)).await.unwrap(); // the children run meanwhile
        let stats = lowlevel::statistics();
        assert_eq!((stats.live_tasks, stats.timers), (5 + 5 + 1 + 2, 5));
        assert_eq!(drops.count(), 0);

        drop(fut);
        assert_eq!(drops.count(), guards(5, 5));
        let stats = lowlevel::statistics();
        assert_eq!((stats.live_tasks, stats.timers), (0, 0));
        assert_eq!(lowlevel::task_tree(), "task 0 \"main\"\n");

        // None is polled again.
        let seen = polls.load(Ordering::SeqCst);
        for _ in 0..10 {
            checkpoint().await.unwrap();
        }
        sleep(secs(1)).await.unwrap();
        assert_eq!(polls.load(Ordering::SeqCst), seen);

        // What is left of the nursery refuses work; the handle reports the cancellation.
        assert!(n.is_closed());
        assert!(matches!(
            n.spawn(async { Ok(()) }),
            Err(Error::NurseryClosed)
        ));
        assert!(matches!(handle.await, Err(Error::TaskCancelled)));
    });
}

// contract N11: a timeout that drops the nursery future (an outer select) tears it down.
#[test]
fn an_outer_timeout_that_drops_the_nursery_tears_it_down() {
    block_on_current(async {
        let t0 = trellis::now();
        let drops = DropCounter::new();
        let polls = Arc::new(AtomicUsize::new(0));
        let (tx, _rx) = std::sync::mpsc::channel();
        let out = drop_after(secs(2), busy_nursery(&drops, &polls, 3, 3, false, tx)).await;
        assert!(out.is_none());
        assert_eq!(since(t0), secs(2));
        assert_eq!(drops.count(), guards(3, 3));
        let stats = lowlevel::statistics();
        assert_eq!((stats.live_tasks, stats.timers), (0, 0));
    });
}

// contract N11: dropping the future before its first poll runs nothing and drops the body.
#[test]
fn dropping_an_unpolled_nursery_future_runs_nothing() {
    block_on_current(async {
        let drops = DropCounter::new();
        let guard = drops.guard();
        let ran = Arc::new(AtomicUsize::new(0));
        let r = ran.clone();
        let fut = nursery(move |_n| {
            r.fetch_add(1, Ordering::SeqCst);
            async move {
                let _guard = guard;
                Ok::<_, TestError>(())
            }
        });
        drop(fut);
        assert_eq!((ran.load(Ordering::SeqCst), drops.count()), (0, 1));
    });
}

// contract N11 on the multi-threaded runtime, the nursery owned by a task: children busy on other
// workers are waited for (a poll in progress finishes) and dropped before the drop returns.
#[test]
fn dropping_a_nursery_on_the_multi_thread_runtime_waits_for_running_polls() {
    const STUBBORN: usize = 8;
    const SLEEPY: usize = 4;
    let rt = multi_thread(4);
    for round in 0..20 {
        let drops = DropCounter::new();
        let polls = Arc::new(AtomicUsize::new(0));
        let (d, p) = (drops.clone(), polls.clone());
        let (seen, stats) = rt.block_on(async move {
            nursery(|outer| async move {
                let h = outer.spawn(async move {
                    let (tx, _rx) = std::sync::mpsc::channel();
                    let mut fut = Box::pin(busy_nursery(&d, &p, STUBBORN, SLEEPY, true, tx));
                    assert!(poll_once(fut.as_mut()).await.is_pending());
                    // Let the children get going on the other workers, and wait until the
                    // nested child has run: its guard and its children's are made in its body.
                    while p.load(Ordering::SeqCst) < 4 * STUBBORN
                        || d.created() < guards(STUBBORN, SLEEPY)
                    {
                        cancel_shielded_checkpoint().await?;
                    }
                    drop(fut);
                    Ok::<_, TestError>((d.count(), lowlevel::statistics()))
                })?;
                Ok::<_, TestError>(h.await?)
            })
            .await
            .unwrap()
        });
        assert_eq!(seen, guards(STUBBORN, SLEEPY), "round {round}");
        // The one live task is the one that dropped the nursery.
        assert_eq!((stats.live_tasks, stats.timers), (1, 0), "round {round}");
    }
}

/// Wraps a future and counts, in `overlaps`, every time its drop finds a poll of it in progress
/// or a poll begins after its drop: what a teardown must never allow. (Such a poll may also
/// crash the test first: the future it polls is gone.)
struct Exclusive<F> {
    fut: Pin<Box<F>>,
    in_poll: AtomicBool,
    dropped: AtomicBool,
    overlaps: Arc<AtomicUsize>,
}

impl<F: Future> Future for Exclusive<F> {
    type Output = F::Output;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        if self.dropped.load(Ordering::SeqCst) {
            self.overlaps.fetch_add(1, Ordering::SeqCst);
        }
        self.in_poll.store(true, Ordering::SeqCst);
        let out = self.fut.as_mut().poll(cx);
        self.in_poll.store(false, Ordering::SeqCst);
        out
    }
}

impl<F> Drop for Exclusive<F> {
    fn drop(&mut self) {
        if self.in_poll.load(Ordering::SeqCst) {
            self.overlaps.fetch_add(1, Ordering::SeqCst);
        }
        self.dropped.store(true, Ordering::SeqCst);
    }
}

/// A child that re-polls itself as fast as it can, counting its polls in `polls`, until dropped.
async fn spinning(polls: Arc<AtomicUsize>) -> Res {
    loop {
        polls.fetch_add(1, Ordering::Relaxed);
        cancel_shielded_checkpoint().await?;
    }
}

// contract N11 on the multi-threaded runtime: a teardown never drops a future while another
// worker polls it, nor lets a poll begin after. The children re-poll themselves as fast as they
// can (a shielded checkpoint per poll), so that teardowns land in every instant of a poll's
// start, where the runner's lock and the teardown's close meet. It checks the protocol (the
// teardown's wait, the runner's reading of the flag); whether the fences order the two sides'
// store and load, a window too narrow to hit here, is `asymmetric_fence`'s own test.
#[test]
fn a_teardown_never_overlaps_a_poll_of_the_same_future() {
    const CHILDREN: usize = 8;
    let rt = multi_thread(2);
    let overlaps = Arc::new(AtomicUsize::new(0));
    for _ in 0..200 {
        let o = overlaps.clone();
        rt.block_on(async move {
            let polls = Arc::new(AtomicUsize::new(0));
            let p = polls.clone();
            let mut fut = Box::pin(nursery(move |n: Nursery<TestError>| async move {
                for _ in 0..CHILDREN {
                    let p = p.clone();
                    n.spawn(Exclusive {
                        fut: Box::pin(spinning(p)),
                        in_poll: AtomicBool::new(false),
                        dropped: AtomicBool::new(false),
                        overlaps: o.clone(),
                    })?;
                }
                sleep_forever().await?;
                Ok(())
            }));
            assert!(poll_once(fut.as_mut()).await.is_pending());
            // Let the children spin on the other worker before the drop.
            while polls.load(Ordering::Relaxed) < 10 * CHILDREN {
                std::thread::yield_now();
            }
            drop(fut);
        });
    }
    assert_eq!(overlaps.load(Ordering::SeqCst), 0);
}

// contract N11 with N10: a child whose destructor panics during a forced teardown does not abort
// the process or stop the teardown; the other children are dropped too, and the panic resumes
// from the drop once the teardown is complete (as a task's panic resumes in its owner).
#[test]
fn a_panicking_child_destructor_during_teardown_is_raised_after_it() {
    block_on_current(async {
        let drops = DropCounter::new();
        let d = drops.clone();
        let mut fut = Box::pin(nursery(|n| async move {
            for i in 0..3 {
                let guard = d.guard();
                n.spawn(async move {
                    let _bomb = (i == 1).then_some(DropBomb);
                    let _guard = guard;
                    sleep_forever().await?;
                    Ok(())
                })?;
            }
            sleep_forever().await?;
            Ok::<_, TestError>(())
        }));
        assert!(poll_once(fut.as_mut()).await.is_pending());
        checkpoint().await.unwrap();
        assert_eq!(panic_text(move || drop(fut)), "drop bomb");
        assert_eq!(drops.count(), 3);
        assert_eq!(lowlevel::statistics().live_tasks, 0);
    });
}

// contract N11 with N10: a nursery body whose destructor panics during a forced teardown still
// has every task torn down before the drop returns; then the body's panic resumes. On both
// flavours, with tasks blocked where only a drop ends them.
#[test]
fn a_panicking_body_destructor_during_teardown_still_drops_every_task() {
    for flavor in [trellis::Flavor::CurrentThread, trellis::Flavor::MultiThread] {
        runtime(flavor).block_on(async move {
            let drops = DropCounter::new();
            let d = drops.clone();
            let mut fut = Box::pin(nursery(|n| async move {
                let _bomb = DropBomb;
                for _ in 0..3 {
                    n.spawn(sleepy(&d))?;
                }
                sleep_forever().await?;
                Ok::<_, TestError>(())
            }));
            assert!(poll_once(fut.as_mut()).await.is_pending());
            while drops.created() < 3 {
                checkpoint().await.unwrap();
            }
            assert_eq!(panic_text(move || drop(fut)), "drop bomb", "{flavor:?}");
            assert_eq!(drops.count(), 3, "{flavor:?}: every task dropped");
            assert_eq!(lowlevel::statistics().live_tasks, 0, "{flavor:?}");
        });
    }
}

// contract N11 with N9: a `start` into a nursery that is torn down before the task is ready fails
// with NurseryClosed, and the task, which has nowhere to go, is dropped.
#[test]
fn a_start_into_a_nursery_torn_down_meanwhile_fails_and_drops_the_task() {
    block_on_current(async {
        let t0 = trellis::now();
        let drops = DropCounter::new();
        let d = drops.clone();
        let (tx, rx) = std::sync::mpsc::channel();
        let mut target = Box::pin(nursery(move |n| async move {
            tx.send(n.clone()).unwrap();
            sleep_forever().await?;
            Ok::<_, TestError>(())
        }));
        assert!(poll_once(target.as_mut()).await.is_pending());
        let target_handle: Nursery<TestError> = rx.recv().unwrap();
        nursery(|n| async move {
            n.spawn(async move {
                let guard = d.guard();
                let out = target_handle
                    .start(|status| async move {
                        let _guard = guard;
                        sleep(secs(2)).await?;
                        status.started(7);
                        sleep(secs(3600)).await?;
                        Ok(())
                    })
                    .await;
                assert_eq!(
                    out,
                    Err(TestError::Trellis(Error::NurseryClosed.to_string()))
                );
                assert_eq!(d.count(), 1);
                Ok(())
            })?;
            sleep(secs(1)).await?;
            drop(target);
            Ok::<_, TestError>(())
        })
        .await
        .unwrap();
        assert_eq!(since(t0), secs(2));
        assert_eq!(drops.count(), 1);
        assert_eq!(lowlevel::statistics().live_tasks, 0);
    });
}

/// Records the thread its drop ran on.
struct ThreadRecorder(Arc<Mutex<Option<std::thread::ThreadId>>>);

impl Drop for ThreadRecorder {
    fn drop(&mut self) {
        *self.0.lock().unwrap() = Some(std::thread::current().id());
    }
}

// contract N11 with `spawn_local`: a nursery future moved to another thread and dropped there
// must not drop its `!Send` children on that thread; they are cancelled and end on the runtime's
// own thread, before `block_on` returns.
#[test]
fn local_children_of_a_nursery_dropped_elsewhere_end_on_their_own_thread() {
    let dropped_on = Arc::new(Mutex::new(None));
    let recorder = dropped_on.clone();
    let runtime_thread = std::thread::current().id();
    let rt = current_thread_on(None);
    rt.block_on(async move {
        let mut fut = nursery(move |n: Nursery<Error>| async move {
            n.spawn_local(async move {
                let _guard = ThreadRecorder(recorder);
                let _not_send = std::rc::Rc::new(());
                sleep_forever().await?;
                Ok::<_, Error>(())
            })?;
            sleep_forever().await?;
            Ok::<_, Error>(())
        });
        assert!(poll_once(Pin::new(&mut fut)).await.is_pending());
        checkpoint().await.unwrap(); // the local child starts and parks
        std::thread::spawn(move || drop(fut)).join().unwrap();
    });
    assert_eq!(*dropped_on.lock().unwrap(), Some(runtime_thread));
}
