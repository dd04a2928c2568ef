//! The cancellation injection harness (`testing::CancelInjection`): it cancels an operation at
//! each of its checkpoints in turn (C1, level-triggered), drops it at each of its suspensions
//! (N11, the forced path), or cancels random checkpoints of every task per seed, and checks an
//! invariant after every run (principle 4: a cancelled operation leaves no trace).

use std::cell::Cell;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex as StdMutex};
use std::time::Duration;

use trellis::channel::{bounded, oneshot, Receiver, Sender};
use trellis::sync::{Borrower, CapacityLimiter, Condition, Event, Mutex, RwLock, Semaphore};
use trellis::testing::{CancelInjection, Ending, InjectMode, InjectReport};
use trellis::{checkpoint, nursery, sleep, CancelScope, Error};

/// Values recorded by the operation, shared with the invariant.
type Log = Arc<StdMutex<Vec<u32>>>;

fn log() -> Log {
    Arc::new(StdMutex::new(Vec::new()))
}

fn read(log: &Log) -> Vec<u32> {
    log.lock().unwrap().clone()
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

thread_local! {
    /// The line of the planted bug's checkpoint, as the operation runs it.
    static BUG_LINE: Cell<u32> = const { Cell::new(0) };
}

/// A message buffered in a channel; the planted bug receives it, then passes another checkpoint
/// before it stores it.
fn one_message() -> (Receiver<u32>, Log) {
    let (tx, rx) = bounded(1);
    tx.try_send(7).unwrap();
    (rx, log())
}

async fn received_once((rx, got): (Receiver<u32>, Log), _: Ending<Result<(), Error>>) {
    let mut seen = read(&got);
    seen.extend(rx.try_recv().ok());
    assert_eq!(seen, [7], "the message was lost or duplicated");
}

async fn recv_then_checkpoint_then_store((rx, got): (Receiver<u32>, Log)) -> Result<(), Error> {
    let message = rx.recv().await?;
    BUG_LINE.set(line!() + 1);
    checkpoint().await?;
    got.lock().unwrap().push(message);
    Ok(())
}

// Principle 4, C1: the planted bug loses the message when the checkpoint after `recv` fails.
// Checkpoint 1 is `recv`'s own check (cancelled there, it consumes nothing: the invariant
// holds); checkpoint 2 is the `checkpoint()` holding the message: found there, exactly.

/// What a report counted: checkpoints, suspensions, runs, and injections that found nothing.
fn counts(report: &InjectReport) -> (usize, usize, usize, usize) {
    (
        report.checkpoints,
        report.suspensions,
        report.runs,
        report.missed,
    )
}

#[test]
fn cancel_mode_finds_a_message_lost_after_its_first_checkpoint() {
    let failure = CancelInjection::new()
        .check(one_message, recv_then_checkpoint_then_store, received_once)
        .unwrap_err();
    assert_eq!(failure.mode, InjectMode::Cancel);
    assert_eq!((failure.checkpoint, failure.checkpoints), (2, 2));
    assert_eq!(failure.operation, Some("checkpoint"));
    assert_eq!(failure.task, Some(0));
    assert!(failure.invariant_failed);
    assert!(failure
        .message
        .contains("the message was lost or duplicated"));
    let line = BUG_LINE.get();
    let location = failure
        .location
        .clone()
        .expect("tests build with debug information");
    assert!(
        location.starts_with(&format!("tests/inject.rs:{line}:")),
        "{location}"
    );
    let text = failure.to_string();
    assert!(text.contains("checkpoint 2 of 2"), "{text}");
    assert!(text.contains("shielded"), "{text}");
    assert!(text.contains(".at(2)"), "{text}");
    assert!(text.contains("task 0 \"main\""), "{text}");
}

// The same operation with the message stored at once passes: 2 checkpoints (the recv's check,
// then the checkpoint's), 2 suspensions (the recv's yield, the checkpoint's), 1 + 2 + 4 runs.
#[test]
fn cancel_mode_passes_when_the_message_is_stored_before_the_next_checkpoint() {
    let report = CancelInjection::new()
        .check(
            one_message,
            |(rx, got)| async move {
                let message = rx.recv().await?;
                got.lock().unwrap().push(message);
                checkpoint().await?;
                Ok(())
            },
            received_once,
        )
        .unwrap();
    assert_eq!(counts(&report), (2, 2, 7, 0));
}

// N11: dropped as the `checkpoint()` suspends (drop point 3: suspension 2, as it begins), the
// message is lost; dropped during the recv's yield (points 1 and 2) it goes back to the
// channel.
#[test]
fn drop_mode_finds_the_same_bug_on_the_forced_path() {
    let failure = CancelInjection::new()
        .mode(InjectMode::Drop)
        .check(one_message, recv_then_checkpoint_then_store, received_once)
        .unwrap_err();
    assert_eq!(failure.mode, InjectMode::Drop);
    assert_eq!((failure.checkpoint, failure.checkpoints), (3, 4));
    assert_eq!(failure.operation, Some("checkpoint"));
    assert!(failure.invariant_failed);
    let text = failure.to_string();
    assert!(
        text.contains("its suspension 2, as soon as it suspended"),
        "{text}"
    );
    assert!(text.contains("mode(InjectMode::Drop).at(3)"), "{text}");
}

// `at(k)` replays one case: the same failure, from two runs.
#[test]
fn at_replays_one_checkpoint() {
    let failure = CancelInjection::new()
        .mode(InjectMode::Cancel)
        .at(2)
        .check(one_message, recv_then_checkpoint_then_store, received_once)
        .unwrap_err();
    assert_eq!(
        (failure.checkpoint, failure.operation),
        (2, Some("checkpoint"))
    );
    let report = CancelInjection::new()
        .mode(InjectMode::Cancel)
        .at(1)
        .check(one_message, recv_then_checkpoint_then_store, received_once)
        .unwrap();
    assert_eq!(report.runs, 2);
}

// A failing run without injection is reported as k = 0: the test itself is wrong.
#[test]
fn a_failure_without_injection_is_reported_first() {
    let failure = CancelInjection::new()
        .check(
            || (),
            |()| async { checkpoint().await },
            |(), _| async { panic!("wrong invariant") },
        )
        .unwrap_err();
    assert_eq!((failure.checkpoint, failure.checkpoints), (0, 1));
    assert_eq!(failure.message, "wrong invariant");
    assert!(failure.to_string().contains("in the run without injection"));
}

// An operation that panics after the cancellation is reported as such, not as a failed
// invariant.
#[test]
fn a_panic_in_the_operation_is_reported() {
    let failure = CancelInjection::new()
        .check(
            || (),
            |()| async {
                if checkpoint().await.is_err() {
                    panic!("cleanup went wrong");
                }
                Ok::<_, Error>(())
            },
            |(), _| async {},
        )
        .unwrap_err();
    assert_eq!((failure.mode, failure.checkpoint), (InjectMode::Cancel, 1));
    assert!(!failure.invariant_failed);
    assert_eq!(failure.message, "cleanup went wrong");
}

// An operation that hangs after the cancellation (it swallows `Cancelled` and waits for an
// event nobody sets) fails through the runtime's deadlock detection instead of hanging.
#[test]
fn an_operation_that_hangs_after_cancellation_fails() {
    let failure = CancelInjection::new()
        .mode(InjectMode::Cancel)
        .check(
            || Arc::new(Event::new()),
            |event| async move {
                if checkpoint().await.is_err() {
                    let _ = CancelScope::new()
                        .shielded(true)
                        .run(async { event.wait().await })
                        .await;
                }
                Ok::<_, Error>(())
            },
            |_, _| async {},
        )
        .unwrap_err();
    assert_eq!(failure.checkpoint, 1);
    assert!(!failure.invariant_failed);
    assert!(failure.message.contains("deadlock"), "{}", failure.message);
}

// ---------------------------------------------------------------------------------------------
// trellis's own operations pass (principle 4): whatever checkpoint is cancelled and wherever the
// future is dropped, nothing is lost, duplicated, held or left waiting.

/// A channel between two tasks, with what each side did. The sending side takes the only
/// `Sender`, so the channel closes when it is done or dropped, and a receiver never waits for
/// a sender that is gone.
#[derive(Clone)]
struct Pipe {
    tx: Arc<StdMutex<Option<Sender<u32>>>>,
    rx: Receiver<u32>,
    /// Values whose send was started.
    attempted: Log,
    /// Values received.
    got: Log,
    /// Values a failed send gave back.
    back: Log,
}

fn pipe(capacity: usize) -> Pipe {
    let (tx, rx) = bounded(capacity);
    Pipe {
        tx: Arc::new(StdMutex::new(Some(tx))),
        rx,
        attempted: log(),
        got: log(),
        back: log(),
    }
}

async fn send_three(p: Pipe) -> Result<(), Error> {
    let tx = p.tx.lock().unwrap().take().expect("one sender");
    for i in 0..3 {
        p.attempted.lock().unwrap().push(i);
        if let Err(e) = tx.send(i).await {
            let (value, reason) = e.into_parts();
            p.back.lock().unwrap().push(value);
            return Err(reason);
        }
    }
    Ok(())
}

async fn recv_three(p: Pipe) -> Result<(), Error> {
    for _ in 0..3 {
        let v = p.rx.recv().await?;
        p.got.lock().unwrap().push(v);
    }
    Ok(())
}

/// Every value whose send started was received exactly once, is still in the channel, or came
/// back from its send; the receiver saw them in order. A dropped send cannot give its value back
/// (`Sender::send`): when the operation was dropped, the last value a sender attempted may be
/// gone, and only that one.
async fn nothing_lost(p: Pipe, ending: Ending<Result<(), Error>>) {
    let mut delivered = read(&p.got);
    while let Ok(v) = p.rx.try_recv() {
        delivered.push(v);
    }
    assert!(
        delivered.windows(2).all(|w| w[0] < w[1]),
        "out of order or duplicated: {delivered:?}"
    );
    let mut all = delivered;
    all.extend(read(&p.back));
    all.sort_unstable();
    let mut attempted = read(&p.attempted);
    if matches!(ending, Ending::Dropped) && all.len() < attempted.len() {
        attempted.pop(); // dropped with the send in flight
    }
    assert_eq!(all, attempted, "a message was lost or duplicated");
}

// The operation receives three values from a producer task. Each recv finds the channel empty
// (the producer runs only once the operation waits): it checks on entry and again as it parks,
// 6 checkpoints; it is handed the value while parked, 3 suspensions, and the nursery waits once
// for the producer to finish its last send's yield.
#[test]
fn channel_recv_passes() {
    for capacity in [0, 1] {
        let report = CancelInjection::new()
            .check(
                || pipe(capacity),
                |p| async move {
                    nursery(|n| async move {
                        n.spawn(send_three(p.clone()))?;
                        recv_three(p).await
                    })
                    .await?;
                    Ok(())
                },
                nothing_lost,
            )
            .unwrap();
        assert_eq!(counts(&report), (6, 4, 15, 0), "capacity {capacity}");
    }
}

// The operation sends three values to a consumer task. Rendezvous: each send parks until the
// consumer takes the value (2 checks each); a dropped parked send may lose only its own value
// (`nothing_lost`). Capacity 1: the sends complete at once or after the consumer made room.
#[test]
fn channel_send_passes() {
    for (capacity, checkpoints, runs) in [(0, 6, 15), (1, 3, 12)] {
        let report = CancelInjection::new()
            .check(
                || pipe(capacity),
                |p| async move {
                    nursery(|n| async move {
                        n.spawn(recv_three(p.clone()))?;
                        send_three(p).await
                    })
                    .await?;
                    Ok(())
                },
                nothing_lost,
            )
            .unwrap();
        assert_eq!(
            counts(&report),
            (checkpoints, 4, runs, 0),
            "capacity {capacity}"
        );
    }
}

/// Checks a lock-like resource (one holder at a time) under injection: the operation takes it
/// uncontended, lets a helper task queue up behind it, hands it over, then takes it again
/// contended, so it is cancelled or dropped before blocking, while blocked, after being handed
/// the resource and during the yield of an uncontended take. Afterwards the resource must be
/// free with nobody waiting.
fn lock_like<L, G, E, Fut>(
    make: fn() -> L,
    take: fn(L) -> Fut,
    held: fn(&L) -> bool,
    waiting: fn(&L) -> usize,
) -> trellis::testing::InjectReport
where
    L: Clone + Send + 'static,
    Fut: std::future::Future<Output = Result<G, E>> + Send + 'static,
    G: Send + 'static,
    E: Into<Error> + Send + 'static,
{
    CancelInjection::new()
        .check(
            make,
            move |lock| async move {
                nursery(|n| async move {
                    let first = take(lock.clone()).await.map_err(Into::into)?;
                    let other = lock.clone();
                    n.spawn(async move {
                        let guard = take(other).await.map_err(Into::into)?;
                        sleep(ms(1)).await?;
                        drop(guard);
                        Ok::<_, Error>(())
                    })?;
                    checkpoint().await?; // the helper queues up behind us
                    drop(first); // handed to the helper
                    let again = take(lock).await.map_err(Into::into)?;
                    drop(again);
                    Ok::<_, Error>(())
                })
                .await?;
                Ok::<_, Error>(())
            },
            move |lock, _| async move {
                assert!(!held(&lock), "still held after the operation");
                assert_eq!(waiting(&lock), 0, "a waiter was left behind");
            },
        )
        .unwrap()
}

// Checkpoints 1 and 3: the two takes before they start; 4: the contended take as it parks
// (cancelled there it withdraws); 2: the `checkpoint()`. Drop points 1-2: the uncontended take
// during its yield (the resource goes back); 5: the contended take parked (no place kept); 6:
// woken with the resource handed over, dropped before it ran (passed on, here released).
const LOCK_LIKE: (usize, usize, usize) = (4, 3, 11);

#[test]
fn mutex_lock_passes() {
    let report = lock_like(
        || Arc::new(Mutex::new(())),
        |m| m.lock_owned(),
        |m| m.is_locked(),
        |m| m.statistics().tasks_waiting,
    );
    assert_eq!(
        (report.checkpoints, report.suspensions, report.runs),
        LOCK_LIKE
    );
}

#[test]
fn semaphore_acquire_passes() {
    let report = lock_like(
        || Arc::new(Semaphore::new(1)),
        |s| s.acquire_owned(),
        |s| s.value() == 0,
        |s| s.statistics().tasks_waiting,
    );
    assert_eq!(
        (report.checkpoints, report.suspensions, report.runs),
        LOCK_LIKE
    );
}

#[test]
fn capacity_limiter_acquire_passes() {
    let report = lock_like(
        || CapacityLimiter::new(1),
        |c| async move { c.acquire_on_behalf_of(Borrower::unique()).await },
        |c| c.borrowed_tokens() != 0,
        |c| c.statistics().tasks_waiting,
    );
    assert_eq!(
        (report.checkpoints, report.suspensions, report.runs),
        LOCK_LIKE
    );
}

// RwLock: the operation writes while a reader task holds the lock, then reads.
#[test]
fn rwlock_passes() {
    let report = CancelInjection::new()
        .check(
            || Arc::new(RwLock::new(0u32)),
            |lock| async move {
                nursery(|n| async move {
                    let reader = lock.clone();
                    n.spawn(async move {
                        let guard = reader.read().await?;
                        sleep(ms(1)).await?;
                        drop(guard);
                        Ok::<_, Error>(())
                    })?;
                    checkpoint().await?; // the reader takes it
                    *lock.write().await? += 1; // waits for the reader
                    let value = *lock.read().await?;
                    assert_eq!(value, 1);
                    Ok::<_, Error>(())
                })
                .await?;
                Ok::<_, Error>(())
            },
            |lock, ending| async move {
                let stats = lock.statistics();
                assert_eq!(
                    (
                        stats.readers,
                        stats.writer,
                        stats.readers_waiting,
                        stats.writers_waiting
                    ),
                    (0, false, 0, 0)
                );
                if ending.returned().is_some_and(|r| r.is_ok()) {
                    assert_eq!(*lock.try_read().unwrap(), 1);
                }
            },
        )
        .unwrap();
    // The reader's sleep makes the write park: 4 checkpoints as for the lock-like ones.
    assert_eq!(
        (report.checkpoints, report.suspensions, report.runs),
        (4, 3, 11)
    );
}

// Event: the operation waits for an event a helper task sets.
#[test]
fn event_wait_passes() {
    let report = CancelInjection::new()
        .check(
            || Arc::new(Event::new()),
            |event| async move {
                nursery(|n| async move {
                    let setter = event.clone();
                    n.spawn(async move {
                        sleep(ms(1)).await?;
                        setter.set();
                        Ok::<_, Error>(())
                    })?;
                    event.wait().await?;
                    Ok::<_, Error>(())
                })
                .await?;
                Ok::<_, Error>(())
            },
            |event, ending| async move {
                assert_eq!(event.statistics().tasks_waiting, 0);
                if ending.returned().is_some_and(|r| r.is_ok()) {
                    assert!(event.is_set());
                }
            },
        )
        .unwrap();
    // `wait` checks on entry and as it parks; it is suspended once, until the event is set.
    assert_eq!(
        (report.checkpoints, report.suspensions, report.runs),
        (2, 1, 5)
    );
}

// Condition: the operation waits until a helper task sets the flag and notifies; cancelled in
// `wait`, it gets the lock back before it returns, so nothing stays locked.
#[test]
fn condition_wait_passes() {
    let report = CancelInjection::new()
        .check(
            || Arc::new(Condition::new(false)),
            |cond| async move {
                nursery(|n| async move {
                    let notifier = cond.clone();
                    n.spawn(async move {
                        sleep(ms(1)).await?;
                        let mut ready = notifier.lock().await?;
                        *ready = true;
                        ready.notify_all();
                        Ok::<_, Error>(())
                    })?;
                    let mut ready = cond.lock().await?;
                    while !*ready {
                        ready = ready.wait().await?;
                    }
                    Ok::<_, Error>(())
                })
                .await?;
                Ok::<_, Error>(())
            },
            |cond, _| async move {
                assert!(!cond.is_locked());
                let stats = cond.statistics();
                assert_eq!(
                    (stats.tasks_waiting, stats.lock_statistics.tasks_waiting),
                    (0, 0)
                );
            },
        )
        .unwrap();
    // `lock` (check, yield), then `wait` checks on entry and as it parks, and is woken with
    // the lock handed back.
    assert_eq!(
        (report.checkpoints, report.suspensions, report.runs),
        (3, 2, 8)
    );
}

/// A oneshot channel whose receiver the operation borrows, and the sender a helper task uses.
#[derive(Clone)]
struct Oneshot {
    tx: Arc<StdMutex<Option<trellis::channel::OneshotSender<u32>>>>,
    rx: Arc<Mutex<trellis::channel::OneshotReceiver<u32>>>,
    sent: Arc<AtomicUsize>,
    got: Log,
}

// oneshot: the operation receives the value a helper task sends; cancelled or dropped before it
// returned, the value stays for a later `recv` (the invariant awaits it).
#[test]
fn oneshot_recv_passes() {
    let report = CancelInjection::new()
        .check(
            || {
                let (tx, rx) = oneshot();
                Oneshot {
                    tx: Arc::new(StdMutex::new(Some(tx))),
                    rx: Arc::new(Mutex::new(rx)),
                    sent: Arc::new(AtomicUsize::new(0)),
                    got: log(),
                }
            },
            |o| async move {
                nursery(|n| async move {
                    let (tx, sent) = (o.tx.clone(), o.sent.clone());
                    n.spawn(async move {
                        sleep(ms(1)).await?;
                        let tx = tx.lock().unwrap().take().unwrap();
                        tx.send(5).unwrap();
                        sent.store(1, Ordering::SeqCst);
                        Ok::<_, Error>(())
                    })?;
                    let value = o.rx.lock().await?.recv().await?;
                    o.got.lock().unwrap().push(value);
                    Ok::<_, Error>(())
                })
                .await?;
                Ok::<_, Error>(())
            },
            |o, _| async move {
                let got = read(&o.got);
                match (o.sent.load(Ordering::SeqCst), got.as_slice()) {
                    (1, [5]) | (0, []) => {}
                    (1, []) => {
                        // Not received: it must still be there.
                        let value = o.rx.lock().await.unwrap().recv().await.unwrap();
                        assert_eq!(value, 5);
                    }
                    other => panic!("unexpected: {other:?}"),
                }
            },
        )
        .unwrap();
    assert_eq!(
        (report.checkpoints, report.suspensions, report.runs),
        (4, 2, 9)
    );
}

// ---------------------------------------------------------------------------------------------
// C1 at the border with the operating system: a socket write is cancelled at each of its
// checkpoints with nothing sent, and a write that can complete at once is still a checkpoint
// (its cancel check comes before the write). Socket operations check as the parking-lot ones
// do: on entry and again as they park. The first write waits for the new socket's first
// readiness: checkpoints 1 (entry), 2 (as it parks) and 3 (woken), suspension 1. The second is
// ready at once: checkpoint 4, and its schedule point after the write is suspension 2.
#[test]
fn a_ready_socket_write_is_a_checkpoint_and_sends_nothing_when_cancelled_there() {
    use std::io::Read;
    use std::os::unix::net::UnixStream as StdUnixStream;

    let report = CancelInjection::new()
        .check(
            || {
                let (a, b) = StdUnixStream::pair().unwrap();
                b.set_nonblocking(true).unwrap();
                Arc::new((a, b))
            },
            |pair| async move {
                let mut a = trellis::net::UnixStream::from_std(pair.0.try_clone()?)?;
                a.write_all(b"pi").await?;
                a.write_all(b"ng").await
            },
            |pair, ending| async move {
                let mut got = Vec::new();
                let mut buf = [0u8; 16];
                while let Ok(n @ 1..) = (&pair.1).read(&mut buf) {
                    got.extend_from_slice(&buf[..n]);
                }
                match ending {
                    Ending::Returned(Ok(())) => assert_eq!(got, b"ping"),
                    // Cancelled at a checkpoint: the write there sent nothing.
                    Ending::Cancelled => assert!(
                        [&b""[..], b"pi"].contains(&&got[..]),
                        "a cancelled write sent bytes: {got:?}"
                    ),
                    // Dropped: possibly at the second write's schedule point, after it sent.
                    Ending::Dropped => assert!(
                        [&b""[..], b"pi", b"ping"].contains(&&got[..]),
                        "a write sent part of its bytes: {got:?}"
                    ),
                    Ending::Returned(Err(e)) => panic!("the write failed: {e}"),
                }
            },
        )
        .unwrap();
    assert_eq!(
        (report.checkpoints, report.suspensions, report.missed),
        (4, 2, 0)
    );
}

// Seeded mode: random checkpoints of every task.

async fn recv_three_then_checkpoint(p: Pipe) -> Result<(), Error> {
    for _ in 0..3 {
        let v = p.rx.recv().await?;
        checkpoint().await?; // planted bug: the value is held across a checkpoint
        p.got.lock().unwrap().push(v);
    }
    Ok(())
}

/// A producer and a consumer task, the consumer with the planted bug; the operation's own task
/// only spawns them and waits, so it has no checkpoint of its own.
async fn buggy_pipeline(p: Pipe) -> Result<(), Error> {
    nursery(|n| async move {
        n.spawn(send_three(p.clone()))?;
        n.spawn(recv_three_then_checkpoint(p))?;
        Ok::<_, Error>(())
    })
    .await?;
    Ok(())
}

async fn pipeline(p: Pipe) -> Result<(), Error> {
    nursery(|n| async move {
        n.spawn(send_three(p.clone()))?;
        n.spawn(recv_three(p))?;
        Ok::<_, Error>(())
    })
    .await?;
    Ok(())
}

#[test]
fn seeded_mode_finds_a_bug_in_a_spawned_task_and_its_seed_replays_it() {
    // The operation's own task never checkpoints: `check` has nothing to cancel, and dropping
    // the whole pipeline (at its one suspension, the nursery waiting) loses nothing either.
    let report = CancelInjection::new()
        .check(|| pipe(3), buggy_pipeline, nothing_lost)
        .unwrap();
    assert_eq!(
        (report.checkpoints, report.suspensions, report.runs),
        (0, 1, 3)
    );

    let failure = CancelInjection::new()
        .check_seeded(|| pipe(3), buggy_pipeline, nothing_lost)
        .unwrap_err();
    // Seed 1 cancels the producer at its send (checkpoint 3 of all tasks' 9), then the consumer
    // at the checkpoint where it holds a received value (4): the value is lost.
    assert_eq!(failure.seed, Some(1));
    assert_eq!((failure.checkpoint, failure.checkpoints), (3, 9));
    assert_eq!(
        (failure.operation, failure.task),
        (Some("channel::Sender::send"), Some(1))
    );
    assert!(failure.invariant_failed);
    let text = failure.to_string();
    assert!(
        text.contains("checkpoint 4 checkpoint, in task 2"),
        "{text}"
    );
    assert!(text.contains(".seeds(1..2)"), "{text}");
    let seed = failure.seed.unwrap();
    let replay = CancelInjection::new()
        .seeds(seed..seed + 1)
        .check_seeded(|| pipe(3), buggy_pipeline, nothing_lost)
        .unwrap_err();
    assert_eq!(
        (
            replay.seed,
            replay.checkpoint,
            replay.checkpoints,
            replay.operation,
            replay.task
        ),
        (
            failure.seed,
            failure.checkpoint,
            failure.checkpoints,
            failure.operation,
            failure.task
        )
    );
    assert_eq!(replay.message, failure.message);
    assert_eq!(replay.to_string(), failure.to_string());
}

#[test]
fn seeded_mode_passes_on_a_correct_pipeline() {
    let report = CancelInjection::new()
        .check_seeded(|| pipe(3), pipeline, nothing_lost)
        .unwrap();
    // 3 sends and 3 recvs (the buffer holds them all), one check each; 100 seeds.
    assert_eq!(
        (report.checkpoints, report.runs, report.missed),
        (6, 101, 0)
    );
}

// ---------------------------------------------------------------------------------------------
// User code: moving money between two accounts, each behind its own lock.

#[derive(Clone)]
struct Bank {
    from: Arc<Mutex<i64>>,
    to: Arc<Mutex<i64>>,
}

fn bank() -> Bank {
    Bank {
        from: Arc::new(Mutex::new(100)),
        to: Arc::new(Mutex::new(100)),
    }
}

/// No money created or destroyed, no lock left held.
async fn balanced(bank: Bank, _: Ending<Result<(), Error>>) {
    let from = *bank.from.try_lock().expect("`from` left locked");
    let to = *bank.to.try_lock().expect("`to` left locked");
    assert_eq!(
        from + to,
        200,
        "money was created or destroyed: {from} + {to}"
    );
}

/// Takes the money out, then waits for the other lock: cancelled there, the money is gone.
async fn transfer_buggy(bank: Bank) -> Result<(), Error> {
    *bank.from.lock().await? -= 10;
    *bank.to.lock().await? += 10;
    Ok(())
}

/// Takes both locks first, then changes both balances with no checkpoint in between.
async fn transfer_ordered(bank: Bank) -> Result<(), Error> {
    let mut from = bank.from.lock().await?;
    let mut to = bank.to.lock().await?;
    *from -= 10;
    *to += 10;
    Ok(())
}

/// Finishes the deposit in a shielded scope: safe from cancellation, not from a drop.
async fn transfer_shielded(bank: Bank) -> Result<(), Error> {
    *bank.from.lock().await? -= 10;
    CancelScope::new()
        .shielded(true)
        .run(async {
            *bank.to.lock().await? += 10;
            Ok::<_, Error>(())
        })
        .await
        .expect("a shielded scope is not cancelled from outside")
}

// Checkpoint 2 is the second `lock`: cancelled there, the withdrawal is done and the deposit
// never happens.
#[test]
fn a_transfer_that_withdraws_before_locking_the_other_account_is_caught() {
    let failure = CancelInjection::new()
        .check(bank, transfer_buggy, balanced)
        .unwrap_err();
    assert_eq!(
        (failure.mode, failure.checkpoint, failure.checkpoints),
        (InjectMode::Cancel, 2, 2)
    );
    assert_eq!(failure.operation, Some("sync::Mutex::lock"));
    assert!(failure
        .message
        .contains("money was created or destroyed: 90 + 100"));
}

#[test]
fn a_transfer_that_locks_both_accounts_first_passes() {
    let report = CancelInjection::new()
        .check(bank, transfer_ordered, balanced)
        .unwrap();
    assert_eq!(
        (report.checkpoints, report.suspensions, report.runs),
        (2, 2, 7)
    );
}

#[test]
fn a_shielded_deposit_survives_cancellation_but_not_a_drop() {
    let report = CancelInjection::new()
        .mode(InjectMode::Cancel)
        .check(bank, transfer_shielded, balanced)
        .unwrap();
    // Cancelled at checkpoint 2 (inside the shield), the deposit still happens.
    assert_eq!((report.checkpoints, report.runs), (2, 3));
    // Dropped as the deposit's lock yields (drop point 3: suspension 2, as it begins), it does
    // not: a shield stops cancellation, not a drop.
    let failure = CancelInjection::new()
        .check(bank, transfer_shielded, balanced)
        .unwrap_err();
    assert_eq!(
        (failure.mode, failure.checkpoint, failure.checkpoints),
        (InjectMode::Drop, 3, 4)
    );
    assert_eq!(failure.operation, Some("sync::Mutex::lock"));
}
