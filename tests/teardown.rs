//! Forced teardown (contract N11, principle 1): dropping a nursery future mid-flight drops every
//! child future — grandchildren included — before the drop returns, and none is polled again.

mod common;

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::RecvTimeoutError;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use common::*;
use trellis::lowlevel;
use trellis::{
    cancel_shielded_checkpoint, checkpoint, checkpoint_if_cancelled, nursery, sleep, sleep_forever,
    Error, Nursery, TaskHandle,
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

/// A nursery future, boxed with its output erased, as a task that drops it holds it.
type HeldNursery = Pin<Box<dyn Future<Output = ()> + Send>>;
/// Where a test puts a nursery future for one of its own tasks to take.
type Slot = Arc<Mutex<Option<HeldNursery>>>;

/// Takes the nursery future out of `slot` once the test has put it there.
async fn take_from(slot: &Slot) -> Result<HeldNursery, TestError> {
    loop {
        if let Some(held) = slot.lock().unwrap().take() {
            return Ok(held);
        }
        checkpoint().await?;
    }
}

/// How a task that holds the nursery it is a child of lets it go.
#[derive(Clone, Copy, Debug, PartialEq)]
enum LetGo {
    /// It drops it, then parks where nothing wakes it: its poll returns `Pending`.
    DropsThenParks,
    /// It drops it, then returns: its poll returns `Ready`.
    DropsThenReturns,
    /// It drops it by dropping a nursery of its own, whose task holds it: the drop comes from
    /// a destructor that a teardown runs inside the task's poll. Then it parks.
    DropsThroughATask,
    /// It returns, holding it: its runner drops it with the task's future.
    ReturnsHoldingIt,
    /// It parks, holding it, until the runtime's shutdown drops the task's future.
    ParksHoldingIt,
}

/// Runs `scenario` on its own thread, and gives its outcome, or fails after ten seconds: a
/// teardown that waits for a future in use below it never returns.
fn within_ten_seconds<T: Send + 'static>(
    case: &str,
    scenario: impl FnOnce() -> T + Send + 'static,
) -> T {
    let (done, outcome) = std::sync::mpsc::channel();
    std::thread::spawn(move || done.send(scenario()));
    match outcome.recv_timeout(Duration::from_secs(10)) {
        Ok(outcome) => outcome,
        Err(RecvTimeoutError::Timeout) => {
            panic!("{case}: a teardown waited for a future in use below it")
        }
        Err(RecvTimeoutError::Disconnected) => panic!("{case}: the scenario panicked"),
    }
}

/// A nursery whose one task takes the nursery future in `slot` and holds it until dropped; it
/// raises `took` once it holds it.
fn holding_nursery(slot: &Slot, took: &Arc<AtomicBool>) -> HeldNursery {
    let (slot, took) = (slot.clone(), took.clone());
    Box::pin(async move {
        let _ = nursery(|m: Nursery<TestError>| async move {
            m.spawn(async move {
                let _held = take_from(&slot).await?;
                took.store(true, Ordering::SeqCst);
                sleep_forever().await?;
                Ok(())
            })?;
            sleep_forever().await?;
            Ok::<_, TestError>(())
        })
        .await;
    })
}

/// What a task logs right after dropping the nursery it is a child of: how many guards were
/// dropped (the sibling's is gone by then, N11), and whether it is cancelled.
async fn log_after_the_drop(log: &Log, drops: &DropCounter) {
    log.push(format!(
        "after the drop: {} guard(s) dropped",
        drops.count()
    ));
    // Cancelled with the nursery (checked without yielding: a yield would end the task).
    let checked = checkpoint_if_cancelled().await;
    log.push(format!("checkpoint cancelled: {}", checked.is_err()));
}

/// [`log_after_the_drop`]'s lines when the sibling is gone and the task cancelled.
const AFTER_THE_DROP: [&str; 2] = [
    "after the drop: 1 guard(s) dropped",
    "checkpoint cancelled: true",
];

/// Builds a nursery with a parked sibling (one guard) and a task (one guard) that takes the
/// nursery's own future from `slot` and lets it go as `how` says. Where the task's code goes
/// on after the drop, it logs what it saw.
fn self_dropping_nursery(drops: &DropCounter, slot: &Slot, log: &Log, how: LetGo) -> HeldNursery {
    let (d, slot, log) = (drops.clone(), slot.clone(), log.clone());
    nursery_of_two(drops, async move {
        let _guard = d.guard();
        match how {
            LetGo::DropsThenParks | LetGo::DropsThenReturns => drop(take_from(&slot).await?),
            LetGo::DropsThroughATask => {
                let took = Arc::new(AtomicBool::new(false));
                let mut inner = holding_nursery(&slot, &took);
                assert!(poll_once(inner.as_mut()).await.is_pending());
                while !took.load(Ordering::SeqCst) {
                    checkpoint().await?;
                }
                drop(inner);
            }
            LetGo::ReturnsHoldingIt => {
                let _held = take_from(&slot).await?;
                return Ok(());
            }
            LetGo::ParksHoldingIt => {
                let _held = take_from(&slot).await?;
                log.push("holding it");
                std::future::pending::<()>().await;
            }
        }
        log_after_the_drop(&log, &d).await;
        if how != LetGo::DropsThenReturns {
            std::future::pending::<()>().await;
        }
        Ok(())
    })
}

/// A nursery with two tasks, a parked sibling (one guard of `drops`) and `task`, whose body
/// sleeps until cancelled.
fn nursery_of_two(
    drops: &DropCounter,
    task: impl Future<Output = Res> + Send + 'static,
) -> HeldNursery {
    let sibling = sleepy(drops);
    Box::pin(async move {
        let _ = nursery(|n: Nursery<TestError>| async move {
            n.spawn(sibling)?;
            n.spawn(task)?;
            sleep_forever().await?;
            Ok::<_, TestError>(())
        })
        .await;
    })
}

/// Runs [`self_dropping_nursery`] on a runtime of `flavor` whose main future hands the nursery
/// to its task and returns once `done` holds; gives the task's log and the guards dropped once
/// `block_on` returned. Fails after ten seconds (see [`within_ten_seconds`]).
fn self_drop(
    case: &str,
    flavor: trellis::Flavor,
    how: LetGo,
    done: impl Fn(&Log, &DropCounter) -> bool + Send + 'static,
) -> (Vec<String>, usize) {
    within_ten_seconds(case, move || {
        let drops = DropCounter::new();
        let d = drops.clone();
        let lines = runtime(flavor).block_on(async move {
            let (slot, log) = (Slot::default(), Log::new());
            let mut held = self_dropping_nursery(&d, &slot, &log, how);
            assert!(poll_once(held.as_mut()).await.is_pending());
            *slot.lock().unwrap() = Some(held);
            while !done(&log, &d) {
                cancel_shielded_checkpoint().await.unwrap();
            }
            log.take()
        });
        (lines, drops.count())
    })
}

/// N11 at its edge: a task that holds the nursery future it is a child of, and lets it go
/// inside its own poll (directly, or through a destructor that a teardown inside its poll
/// runs), or in its runner's drop of its future, or in the shutdown's. The nursery's drop
/// cannot wait for that task: its future's use ends only once the drop returns. So the drop
/// tears the other children down before it returns, as N11 says, and leaves this one
/// cancelled, to end once that use is over: its future is dropped then, whether its poll
/// parked or finished. `block_on` returns once every task future is gone. (Each of these
/// waited forever before.)
#[test]
fn a_task_that_lets_go_of_its_own_nursery_ends_once_its_future_is_let_go() {
    use LetGo::*;
    for flavor in FLAVORS {
        for how in [
            DropsThenParks,
            DropsThenReturns,
            DropsThroughATask,
            ReturnsHoldingIt,
            ParksHoldingIt,
        ] {
            let case = format!("{flavor:?}, {how:?}");
            // Both guards gone; for the last case, the task holds the nursery.
            let (lines, dropped) = self_drop(&case, flavor, how, move |log, drops| {
                if how == ParksHoldingIt {
                    !log.snapshot().is_empty()
                } else {
                    drops.count() == 2
                }
            });
            let expected: &[&str] = match how {
                ReturnsHoldingIt => &[],
                ParksHoldingIt => &["holding it"],
                _ => &AFTER_THE_DROP,
            };
            assert_eq!(lines, expected, "{case}");
            assert_eq!(dropped, 2, "{case}");
        }
    }
}

/// As above, but the runtime's main future returns as soon as the task's poll has dropped the
/// nursery: the task is left cancelled, still linked, its future in place (on the
/// current-thread flavour it has not run again yet). `block_on` still returns only once that
/// future is dropped, whoever ends it: the shutdown's teardown, or the task's own next run.
#[test]
fn a_task_left_to_end_after_dropping_its_own_nursery_ends_before_block_on_returns() {
    for flavor in FLAVORS {
        for how in [LetGo::DropsThenParks, LetGo::DropsThroughATask] {
            let case = format!("{flavor:?}, {how:?}");
            let (lines, dropped) =
                self_drop(&case, flavor, how, |log, _| log.snapshot().len() == 2);
            assert_eq!(lines, AFTER_THE_DROP, "{case}");
            assert_eq!(dropped, 2, "{case}");
        }
    }
}

/// Raises `mine` when dropped, then waits (a few seconds at most) until `theirs` is raised:
/// what makes two threads' drops meet.
struct Rendezvous {
    mine: Arc<AtomicBool>,
    theirs: Arc<AtomicBool>,
}

impl Drop for Rendezvous {
    fn drop(&mut self) {
        self.mine.store(true, Ordering::SeqCst);
        let start = std::time::Instant::now();
        while !self.theirs.load(Ordering::SeqCst) {
            assert!(since(start) < secs(5), "the other thread never came");
            std::thread::yield_now();
        }
    }
}

/// A cycle of waits across two threads, made on purpose: task C (on one runtime's thread) is a
/// child of nursery N and holds nursery M; task D (on another runtime's thread) is M's child
/// and holds N. D returns, and its runner's drop of its future drops N, whose teardown would
/// wait for C's poll; at the same time C's poll drops M, whose teardown would wait for D's
/// runner. Whichever wait comes second sees the first and is not made: that teardown leaves its
/// task to end once the other thread lets go of its future. Both drops return, and every task
/// future is dropped (N11 for every task but the one whose use could not end, which ends right
/// after).
#[test]
fn two_tasks_that_drop_each_others_nursery_at_once_on_two_threads_both_end() {
    let case = "two threads";
    let (lines, dropped) = within_ten_seconds(case, || {
        let drops = DropCounter::new();
        let log = Log::new();
        let (for_c, for_d) = (Slot::default(), Slot::default());
        let (d_exiting, c_dropping) = (
            Arc::new(AtomicBool::new(false)),
            Arc::new(AtomicBool::new(false)),
        );

        // Thread 2: nursery M, whose task D takes N and returns, meeting C in its future's drop.
        let m_side = {
            let (for_c, for_d, drops) = (for_c.clone(), for_d.clone(), drops.clone());
            let (d_exiting, c_dropping) = (d_exiting.clone(), c_dropping.clone());
            std::thread::spawn(move || {
                current_thread_on(None).block_on(async move {
                    let m: HeldNursery = Box::pin(async move {
                        let _ = nursery(|m: Nursery<TestError>| async move {
                            m.spawn(async move {
                                let _n = take_from(&for_d).await?;
                                // Dropped before `_n`: N goes once C is dropping M.
                                let _meet = Rendezvous {
                                    mine: d_exiting,
                                    theirs: c_dropping,
                                };
                                Ok(())
                            })?;
                            sleep_forever().await?;
                            Ok::<_, TestError>(())
                        })
                        .await;
                    });
                    let mut m = m;
                    assert!(poll_once(m.as_mut()).await.is_pending());
                    *for_c.lock().unwrap() = Some(m);
                    while drops.count() < 2 {
                        cancel_shielded_checkpoint().await.unwrap();
                    }
                })
            })
        };

        // Thread 1 (this one): nursery N, with a parked sibling and task C, which takes M and
        // drops it once D is in its runner's drop.
        let (d, l, watch) = (drops.clone(), log.clone(), drops.clone());
        current_thread_on(None).block_on(async move {
            let mut n = nursery_of_two(&d.clone(), async move {
                let _guard = d.guard();
                let m = take_from(&for_c).await?;
                while !d_exiting.load(Ordering::SeqCst) {
                    checkpoint().await?;
                }
                c_dropping.store(true, Ordering::SeqCst);
                drop(m);
                log_after_the_drop(&l, &d).await;
                std::future::pending::<()>().await;
                Ok(())
            });
            assert!(poll_once(n.as_mut()).await.is_pending());
            *for_d.lock().unwrap() = Some(n);
            while watch.count() < 2 {
                cancel_shielded_checkpoint().await.unwrap();
            }
        });
        m_side.join().unwrap();
        (log.take(), drops.count())
    });
    assert_eq!(lines, AFTER_THE_DROP);
    assert_eq!(dropped, 2);
}
