//! Cancel safety of the newer primitives and channel operations, through
//! `testing::CancelInjection` (principle 4: a cancelled operation leaves no trace; DESIGN §6:
//! cancel at every checkpoint of an operation and check that nothing was lost or held). The
//! older ones are in `cancel_safety.rs`.
//!
//! Each test runs one realistic, contended use of the operation, cancels it at each of its
//! checkpoints in turn, then drops it at each of its suspensions (as it suspends, and when it is
//! woken, just before it resumes), and checks an invariant that says what "nothing lost" means
//! for that operation. Each asserts the exact number of checkpoints and suspensions, and its doc
//! comment says which point is which, so that a change to an operation's checkpoint structure
//! shows up here. All runs are on virtual time (the harness's mock clock with autojump).

mod common;

use std::future::Future;
use std::ops::{Deref, DerefMut};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::ms;
use trellis::channel::{broadcast, oneshot, watch, OneshotReceiver, OneshotSender};
use trellis::sync::{Barrier, OnceCell};
use trellis::testing::{wait_all_tasks_blocked, CancelInjection, Ending};
use trellis::{
    checkpoint, interval, now, nursery, sleep, CancelScope, Cancelled, Error, Interval, Nursery,
};

/// What the operation under test ended with, as the invariant sees it.
type Ended = Ending<Result<(), Error>>;

/// A value the operation borrows from the test's state while it runs and that comes back
/// however it ends (returned, cancelled or dropped), so that the invariant can use it after:
/// a receiver's position, or an interval's schedule, is exactly what is checked, and those are
/// not `Clone`.
struct Shelf<T>(Arc<Mutex<Option<T>>>);

impl<T> Clone for Shelf<T> {
    fn clone(&self) -> Self {
        Shelf(self.0.clone())
    }
}

impl<T> Shelf<T> {
    fn new(value: T) -> Self {
        Shelf(Arc::new(Mutex::new(Some(value))))
    }

    fn empty() -> Self {
        Shelf(Arc::new(Mutex::new(None)))
    }

    /// Takes the value for good (a sender that sending consumes).
    fn take(&self) -> T {
        self.0
            .lock()
            .unwrap()
            .take()
            .expect("the value is on the shelf")
    }

    /// Lends the value, made by `make` if the shelf is empty; it comes back when the loan is
    /// dropped.
    fn lend_or(&self, make: impl FnOnce() -> T) -> Lent<T> {
        let value = self.0.lock().unwrap().take().unwrap_or_else(make);
        Lent {
            value: Some(value),
            shelf: self.clone(),
        }
    }

    fn lend(&self) -> Lent<T> {
        self.lend_or(|| panic!("the value is lent out already"))
    }
}

struct Lent<T> {
    value: Option<T>,
    shelf: Shelf<T>,
}

impl<T> Deref for Lent<T> {
    type Target = T;

    fn deref(&self) -> &T {
        self.value.as_ref().expect("lent until dropped")
    }
}

impl<T> DerefMut for Lent<T> {
    fn deref_mut(&mut self) -> &mut T {
        self.value.as_mut().expect("lent until dropped")
    }
}

impl<T> Drop for Lent<T> {
    fn drop(&mut self) {
        *self.shelf.0.lock().unwrap() = self.value.take();
    }
}

/// What happened, in order, shared between the operation, its tasks and the invariant.
struct Record<T>(Arc<Mutex<Vec<T>>>);

impl<T> Clone for Record<T> {
    fn clone(&self) -> Self {
        Record(self.0.clone())
    }
}

impl<T: Clone> Record<T> {
    fn new() -> Self {
        Record(Arc::new(Mutex::new(Vec::new())))
    }

    fn push(&self, item: T) {
        self.0.lock().unwrap().push(item);
    }

    fn get(&self) -> Vec<T> {
        self.0.lock().unwrap().clone()
    }
}

/// The operation of a check: `body`, in a nursery that owns the tasks it spawns.
async fn in_nursery<F, Fut>(body: F) -> Result<(), Error>
where
    F: FnOnce(Nursery<Error>) -> Fut,
    Fut: Future<Output = Result<(), Error>>,
{
    nursery(body).await?;
    Ok(())
}

/// A sender's part: 1 ms (virtual) later, sends `value` with `send` and records it as sent.
async fn send_later(send: impl FnOnce(u32), value: u32, sent: Record<u32>) -> Result<(), Error> {
    sleep(ms(1)).await?;
    send(value);
    sent.push(value);
    Ok(())
}

/// Runs the harness over `op` in both modes (cancelled at each checkpoint, dropped at each
/// suspension), and asserts how many checkpoints and suspensions it has: `points`.
fn assert_cancel_safe<S, Fut, Inv>(
    points: (usize, usize),
    setup: impl FnMut() -> S,
    op: impl FnMut(S) -> Fut,
    invariant: impl FnMut(S, Ended) -> Inv,
) where
    S: Clone,
    Fut: Future<Output = Result<(), Error>>,
    Inv: Future<Output = ()>,
{
    let report = CancelInjection::new().check(setup, op, invariant).unwrap();
    assert_eq!((report.checkpoints, report.suspensions), points);
}

type OneshotState = (
    (
        Shelf<OneshotReceiver<u32>>,
        Shelf<OneshotReceiver<u32>>,
        Shelf<OneshotSender<u32>>,
    ),
    Record<u32>,
    Record<u32>,
);

/// `channel::oneshot`'s `recv`: a cancelled or dropped `recv` leaves the value for the next
/// one (principle 4). Two channels: `ready` holds its value already, `later` gets its value from
/// a task 1 ms (virtual) in. The operation receives from `ready`, then waits on `later`.
///
/// Points:
/// - checkpoint 1: `ready.recv()` before it starts: nothing taken;
/// - drop points 1 and 2: `ready.recv()` took the value and yields (the schedule point of a
///   ready operation), dropped there: the value goes back into the channel;
/// - checkpoint 2: `later.recv()` before it starts;
/// - checkpoint 3, drop point 3: `later.recv()` as it parks (nothing sent yet);
/// - checkpoint 4, drop point 4: `later.recv()` woken by the send, as it looks again: the
///   value is in the channel and stays there for the next `recv`.
///
/// Invariant, per channel: a value sent is received exactly once, by the operation or by the
/// next `recv`; a value the operation got is not received again (the next `recv` says
/// `EndOfChannel`); a value never sent (the sending task was cancelled first) is reported as
/// `BrokenResource`, not waited for.
#[test]
fn oneshot_recv_cancel_safety() {
    let setup = || -> OneshotState {
        let (ready_tx, ready) = oneshot::<u32>();
        ready_tx.send(1).unwrap();
        let (later_tx, later) = oneshot::<u32>();
        let sent = Record::new();
        sent.push(1);
        let shelves = (Shelf::new(ready), Shelf::new(later), Shelf::new(later_tx));
        (shelves, sent, Record::new())
    };
    let op = |((ready, later, later_tx), sent, got): OneshotState| {
        in_nursery(|n| async move {
            let tx = later_tx.take();
            n.spawn(send_later(move |v| tx.send(v).unwrap(), 2, sent))?;
            got.push(ready.lend().recv().await?);
            got.push(later.lend().recv().await?);
            Ok(())
        })
    };
    assert_cancel_safe(
        (4, 2),
        setup,
        op,
        |((ready, later, _), sent, got), ending: Ended| async move {
            let (sent, got) = (sent.get(), got.get());
            assert_eq!(got, [1, 2][..got.len()], "received out of order");
            if matches!(ending, Ending::Returned(Ok(()))) {
                assert_eq!(got, [1, 2]);
            }
            for (rx, value) in [(ready, 1), (later, 2)] {
                let next = rx.lend().recv().await;
                if got.contains(&value) {
                    assert!(
                        matches!(next, Err(Error::EndOfChannel)),
                        "{value} received twice: {next:?}"
                    );
                } else if sent.contains(&value) {
                    assert_eq!(next.unwrap(), value, "the cancelled recv lost {value}");
                } else {
                    assert!(matches!(next, Err(Error::BrokenResource)), "{next:?}");
                }
            }
        },
    );
}

type BroadcastState = (
    broadcast::Sender<u32>,
    [Shelf<broadcast::Receiver<u32>>; 2],
    Record<u32>,
    [Record<u32>; 2],
);

/// Receives one message into `got`; a cancellation passes on, anything else is a failure of
/// the test's scenario (it neither lags nor ends).
async fn recv_into(rx: &mut broadcast::Receiver<u32>, got: &Record<u32>) -> Result<(), Error> {
    match rx.recv().await {
        Ok(message) => {
            got.push(message);
            Ok(())
        }
        Err(broadcast::RecvError::Cancelled(c)) => Err(c.into()),
        Err(e) => panic!("unexpected {e}"),
    }
}

/// `channel::broadcast`'s `Receiver::recv`: a cancelled or dropped `recv` does not move the
/// receiver on, so the next `recv` returns the same message (principle 4). Two receivers on a
/// channel of capacity 4: the operation's own, and one in a helper task; message 10 is sent
/// before the operation starts, 11 and 12 by a task 1 ms and 2 ms in. The operation receives
/// three messages.
///
/// Points:
/// - checkpoint 1: the first `recv` (10 is there) before it starts;
/// - drop points 1 and 2: the first `recv` completed without blocking and yields: dropped
///   there, the receiver has not moved on;
/// - checkpoints 2 and 4: the second and third `recv` before they start;
/// - checkpoints 3 and 5, drop points 3 and 5: the second and third `recv` as they park;
/// - drop points 4 and 6: woken by the send of 11 (12), dropped before taking it;
/// - drop points 7 and 8: the nursery waiting for the helper, which was woken by the send of
///   12 at the same time as the operation.
///
/// Invariant, for each receiver, the one cancelled with the operation and the helper that
/// gave up with it: what it received, then what a drain of it receives now, is exactly what
/// was sent, in order: nothing skipped, nothing twice.
#[test]
fn broadcast_recv_cancel_safety() {
    let setup = || -> BroadcastState {
        let (tx, own) = broadcast::channel(4);
        let helper = tx.subscribe();
        let sent = Record::new();
        tx.send(10).unwrap();
        sent.push(10);
        let got = [Record::new(), Record::new()];
        (tx, [Shelf::new(own), Shelf::new(helper)], sent, got)
    };
    let op = |(tx, [own, helper], sent, [got, helper_got]): BroadcastState| {
        in_nursery(|n| async move {
            n.spawn(async move {
                let mut rx = helper.lend();
                for _ in 0..3 {
                    recv_into(&mut rx, &helper_got).await?;
                }
                Ok(())
            })?;
            n.spawn(async move {
                for message in [11, 12] {
                    send_later(
                        |v| assert_eq!(tx.send(v).unwrap(), 2),
                        message,
                        sent.clone(),
                    )
                    .await?;
                }
                Ok(())
            })?;
            let mut rx = own.lend();
            for _ in 0..3 {
                recv_into(&mut rx, &got).await?;
            }
            Ok(())
        })
    };
    assert_cancel_safe(
        (5, 4),
        setup,
        op,
        |(_, receivers, sent, got), ending: Ended| async move {
            let sent = sent.get();
            if matches!(ending, Ending::Returned(Ok(()))) {
                assert_eq!(got[0].get(), [10, 11, 12]);
            }
            for (who, (rx, got)) in ["own", "helper"]
                .into_iter()
                .zip(receivers.iter().zip(&got))
            {
                let mut rx = rx.lend();
                let mut received = got.get();
                while !rx.is_empty() {
                    received.push(rx.recv().await.unwrap());
                }
                assert_eq!(
                    received, sent,
                    "the {who} receiver lost or repeated a message"
                );
            }
        },
    );
}

type WatchState = (
    Arc<watch::Sender<u32>>,
    Shelf<watch::Receiver<u32>>,
    Record<u32>,
    Record<u32>,
);

/// `channel::watch`'s `Receiver::changed`: a cancelled or dropped `changed` marks nothing
/// seen, so the next call still reports the change (principle 4). Value 1 is sent before the
/// operation starts, 2 by a task 1 ms in; the operation waits for two changes, reading the
/// value after each.
///
/// Points:
/// - checkpoint 1: the first `changed` (1 is unseen) before it starts;
/// - drop points 1 and 2: the first `changed` completed without blocking and yields: dropped
///   there, 1 stays unseen;
/// - checkpoint 2: the second `changed` before it starts;
/// - checkpoint 3, drop point 3: the second `changed` as it parks;
/// - drop point 4: the second `changed` told of the send of 2, dropped before it returned.
///
/// Invariant: the receiver reports a change (`has_changed`, and then `changed` returns and the
/// value is the last one sent) exactly when the operation did not read the last value sent
/// after a `changed` that returned.
#[test]
fn watch_changed_cancel_safety() {
    let setup = || -> WatchState {
        let (tx, rx) = watch::channel(0);
        tx.send(1).unwrap();
        let sent = Record::new();
        sent.push(1);
        (Arc::new(tx), Shelf::new(rx), sent, Record::new())
    };
    let op = |(tx, rx, sent, got): WatchState| {
        in_nursery(|n| async move {
            n.spawn(send_later(move |v| tx.send(v).unwrap(), 2, sent))?;
            let mut rx = rx.lend();
            for _ in 0..2 {
                rx.changed().await?;
                got.push(*rx.borrow());
            }
            Ok(())
        })
    };
    assert_cancel_safe(
        (3, 2),
        setup,
        op,
        |(tx, rx, sent, got), ending: Ended| async move {
            let (sent, got) = (sent.get(), got.get());
            assert_eq!(got, [1, 2][..got.len()]);
            if matches!(ending, Ending::Returned(Ok(()))) {
                assert_eq!(got, [1, 2]);
            }
            let last = *sent.last().unwrap();
            let unseen = got.last() != Some(&last);
            // With the sender gone, the receiver reports the end only once it has seen the
            // last value.
            drop(tx);
            let mut rx = rx.lend();
            match rx.has_changed() {
                Ok(true) => assert!(unseen, "a returned changed did not mark {last} seen"),
                Err(Error::EndOfChannel) => {
                    assert!(!unseen, "a cancelled changed marked {last} seen");
                }
                other => panic!("{other:?}"),
            }
            if unseen {
                rx.changed().await.unwrap();
                assert_eq!(*rx.borrow_and_update(), last);
            }
            assert!(matches!(rx.changed().await, Err(Error::EndOfChannel)));
        },
    );
}

type BarrierState = (Arc<Barrier>, Record<(&'static str, bool)>);

/// Waits at the barrier and records who got through, and whether as the leader.
async fn pass(
    barrier: &Barrier,
    who: &'static str,
    passed: &Record<(&'static str, bool)>,
) -> Result<(), Error> {
    let leader = barrier.wait().await?.is_leader();
    passed.push((who, leader));
    Ok(())
}

/// `sync::Barrier::wait`: a waiter cancelled before the barrier trips no longer counts as
/// arrived, and one released by the round keeps its release (principle 4). A barrier for
/// three: the operation and helper `a` arrive at once, helper `b` 1 ms later, as the leader.
///
/// Points:
/// - checkpoint 1: the operation's `wait` before it starts: it never arrives;
/// - checkpoint 2, drop point 1: its `wait` as it parks (arrived, the round incomplete): it
///   leaves, and no longer counts;
/// - drop point 2: released by `b`, dropped before it returned: the round completed;
/// - drop points 3 and 4: the nursery waiting for `a` and `b`, released by the round (`b`
///   completed it without blocking, and yields).
///
/// Invariant: nobody is left counted as arrived; the round completed exactly when someone got
/// through, and then with exactly one leader, `b`, and all three through unless their futures
/// were dropped; a fresh round of three still needs all three (a cancelled waiter left no
/// arrival behind that would trip it early) and has exactly one leader.
#[test]
fn barrier_wait_cancel_safety() {
    let setup = || -> BarrierState { (Arc::new(Barrier::new(3)), Record::new()) };
    let op = |(barrier, passed): BarrierState| {
        in_nursery(|n| async move {
            let (b, p) = (barrier.clone(), passed.clone());
            n.spawn(async move { pass(&b, "a", &p).await })?;
            let (b, p) = (barrier.clone(), passed.clone());
            n.spawn(async move {
                sleep(ms(1)).await?;
                pass(&b, "b", &p).await
            })?;
            pass(&barrier, "op", &passed).await
        })
    };
    assert_cancel_safe(
        (2, 2),
        setup,
        op,
        |(barrier, passed), ending: Ended| async move {
            let stats = barrier.statistics();
            assert_eq!(stats.tasks_waiting, 0, "a waiter still counts as arrived");
            let mut passed = passed.get();
            passed.sort_unstable();
            match stats.rounds {
                0 => assert_eq!(passed, []),
                1 => {
                    let leaders: Vec<_> = passed.iter().filter(|p| p.1).collect();
                    assert!(leaders.len() <= 1 && leaders.iter().all(|p| p.0 == "b"));
                    if !matches!(ending, Ending::Dropped) {
                        assert_eq!(passed, [("a", false), ("b", true), ("op", false)]);
                    }
                }
                n => panic!("{n} rounds"),
            }
            let rounds = stats.rounds;
            let leaders = nursery(|n| async move {
                let mut handles = Vec::new();
                for _ in 0..2 {
                    let b = barrier.clone();
                    handles.push(n.spawn(async move { Ok(b.wait().await?.is_leader()) })?);
                }
                wait_all_tasks_blocked().await?;
                assert_eq!(barrier.statistics().tasks_waiting, 2);
                assert_eq!(barrier.statistics().rounds, rounds, "tripped early");
                let mut leaders = usize::from(barrier.wait().await?.is_leader());
                for h in handles {
                    leaders += usize::from(h.await?);
                }
                assert_eq!(barrier.statistics().rounds, rounds + 1);
                Ok::<_, Error>(leaders)
            })
            .await
            .unwrap();
            assert_eq!(leaders, 1);
        },
    );
}

type IntervalState = (Shelf<(Instant, Interval)>, Record<Duration>);

/// `time::Interval::tick`: a cancelled or dropped `tick` consumes no tick, so the next one
/// returns the tick it would have (principle 4). A 10 ms interval: the first tick is due at
/// once; the operation then works 25 ms (virtual), so the tick due at 10 ms is late and
/// returned at once and the one at 20 ms is skipped; the third tick waits until 30 ms.
///
/// A sleep (the tick's included) checks for cancellation each time it is polled: as it starts
/// and as it resumes. Points:
/// - checkpoints 1 and 2, drop points 1 and 2: the first tick, due at once, as its sleep starts
///   (a sleep to a deadline that has come still yields) and as it resumes: cancelled there, the
///   tick was due but is not consumed;
/// - checkpoints 3 and 4, drop points 3 and 4: the 25 ms of work (a `sleep`);
/// - checkpoints 5 and 6, drop points 5 and 6: the late tick, due already;
/// - checkpoints 7 and 8, drop points 7 and 8: the third tick, as it starts waiting until
///   30 ms and as it resumes then.
///
/// Invariant: the ticks the operation got, then the next tick of the same interval, are the
/// schedule `0, 10, 30, 40` ms from its start, up to there: no tick lost or returned twice.
#[test]
fn interval_tick_cancel_safety() {
    let setup = || -> IntervalState { (Shelf::empty(), Record::new()) };
    let op = |(ticks, got): IntervalState| async move {
        let mut ticks = ticks.lend_or(|| (now(), interval(ms(10))));
        let start = ticks.0;
        got.push(ticks.1.tick().await? - start);
        sleep(ms(25)).await?;
        for _ in 0..2 {
            got.push(ticks.1.tick().await? - start);
        }
        Ok::<_, Error>(())
    };
    assert_cancel_safe(
        (8, 4),
        setup,
        op,
        |(ticks, got), ending: Ended| async move {
            let mut got = got.get();
            if matches!(ending, Ending::Returned(Ok(()))) {
                assert_eq!(got.len(), 3);
            }
            let mut ticks = ticks.lend();
            let start = ticks.0;
            got.push(ticks.1.tick().await.unwrap() - start);
            let schedule = [0, 10, 30, 40].map(ms);
            assert_eq!(
                got,
                schedule[..got.len()],
                "a tick was lost or returned twice"
            );
        },
    );
}

/// Who initialised: `(initialiser, "start" | "done" | "gave up")`, in order.
type InitLog = Record<(u32, &'static str)>;

type OnceCellState = (Arc<OnceCell<u32>>, InitLog, Record<(&'static str, u32)>);

fn empty_cell() -> OnceCellState {
    (Arc::new(OnceCell::new()), Record::new(), Record::new())
}

/// An initialiser that takes 1 ms (virtual) and returns its id; it logs its start, and its end
/// ("gave up" when it is cancelled or dropped).
async fn init(id: u32, log: InitLog) -> Result<u32, Cancelled> {
    struct Running(u32, InitLog, &'static str);
    impl Drop for Running {
        fn drop(&mut self) {
            self.1.push((self.0, self.2));
        }
    }
    log.push((id, "start"));
    let mut running = Running(id, log, "gave up");
    sleep(ms(1)).await?;
    running.2 = "done";
    Ok(id)
}

/// Runs `init(id)` in a scope shielded from the operation's cancellation, as a task elsewhere
/// that needs the value would: it finishes, or takes over, unless its future is dropped.
async fn shielded_get(
    (cell, log, seen): OnceCellState,
    who: &'static str,
    id: u32,
) -> Result<(), Error> {
    let shield = CancelScope::new().shielded(true);
    let value = shield.run(cell.get_or_try_init(|| init(id, log))).await;
    seen.push((who, *value.expect("shielded")?));
    Ok(())
}

/// What "initialised once" means: initialisers ran one at a time, at most one completed (the
/// last to run), and the cell holds its value, or is empty if none did; everyone that got a
/// value got that one; nobody waits and nobody holds the turn, so the next `get_or_init` is
/// given the value, or runs its own initialiser at once if the cell is empty.
async fn assert_initialised_once((cell, log, seen): OnceCellState) {
    let runs = log.get();
    for run in runs.chunks(2) {
        assert!(
            matches!(run, [(a, "start"), (b, "done" | "gave up")] if a == b),
            "initialisers overlapped: {runs:?}"
        );
    }
    let done: Vec<u32> = runs.iter().filter(|r| r.1 == "done").map(|r| r.0).collect();
    assert!(done.len() <= 1, "two initialisers completed: {runs:?}");
    assert!(
        done.is_empty() || runs.last().unwrap().1 == "done",
        "{runs:?}"
    );
    let value = cell.get().copied();
    assert_eq!(value, done.first().copied());
    for (who, got) in seen.get() {
        assert_eq!(Some(got), value, "{who} got a value the cell does not hold");
    }
    let next = *cell.get_or_try_init(|| init(9, log.clone())).await.unwrap();
    assert_eq!(next, value.unwrap_or(9));
    assert_eq!(
        log.get().len(),
        runs.len() + if value.is_none() { 2 } else { 0 }
    );
    assert_eq!(
        format!("{cell:?}"),
        format!("OnceCell {{ value: Some({next}), initializing: false, tasks_waiting: 0 }}")
    );
}

/// Checks `op` on a fresh cell as [`assert_cancel_safe`] does, with the invariant `check`
/// followed by [`assert_initialised_once`].
fn assert_cell_cancel_safe<Fut>(
    points: (usize, usize),
    op: impl FnMut(OnceCellState) -> Fut,
    check: impl Fn(&OnceCellState, Ended),
) where
    Fut: Future<Output = Result<(), Error>>,
{
    assert_cancel_safe(points, empty_cell, op, |state, ending| {
        check(&state, ending);
        assert_initialised_once(state)
    });
}

/// `sync::OnceCell::get_or_try_init` (what `get_or_init` runs) as the initialiser: a cancelled
/// or dropped initialiser leaves the cell empty and hands the turn to exactly one waiter
/// (principle 4). The operation takes the turn and runs initialiser 1 (1 ms); two tasks wait
/// behind it: an heir in the operation's own scope (`get_or_init`, cancelled with it, which
/// passes any turn it is handed on without initialising), and behind that a task shielded
/// from the operation's cancellation, as one elsewhere would be, with initialiser 2.
///
/// Points:
/// - checkpoint 1: `get_or_try_init` before it starts: it never takes the turn;
/// - drop points 1 and 2: it took the turn without blocking and yields: dropped there, the
///   turn passes to the first waiter (none yet as it suspends, the heir as it resumes);
/// - checkpoint 2: holding the turn, before it calls the initialiser (a cancelled caller never
///   starts one): the turn passes to the heir, which passes it to the shielded task;
/// - checkpoints 3 and 4, drop points 3 and 4: initialiser 1's sleep, as it starts and as it
///   resumes: the initialiser gives up, and the turn passes on;
/// - drop points 5 and 6: the nursery waiting for the two waiters, woken with the value.
///
/// Invariant: [`assert_initialised_once`]; the heir never initialised; when the operation was
/// cancelled, the shielded task took over and the cell holds 2.
#[test]
fn once_cell_initialiser_cancel_safety() {
    let op = |(cell, log, seen): OnceCellState| {
        in_nursery(|n| async move {
            let (c, l, s) = (cell.clone(), log.clone(), seen.clone());
            n.spawn(async move {
                let heir = c.get_or_init(|| async move {
                    l.push((3, "start"));
                    3
                });
                s.push(("heir", *heir.await?));
                Ok(())
            })?;
            let state = (cell.clone(), log.clone(), seen.clone());
            n.spawn(shielded_get(state, "shielded", 2))?;
            let value = cell.get_or_try_init(|| init(1, log)).await?;
            seen.push(("op", *value));
            Ok(())
        })
    };
    assert_cell_cancel_safe((4, 3), op, |(cell, log, seen), ending| {
        assert!(
            !log.get().iter().any(|r| r.0 == 3),
            "the cancelled heir initialised"
        );
        if matches!(ending, Ending::Cancelled) {
            assert_eq!(cell.get(), Some(&2), "nobody took over: {:?}", log.get());
            assert!(seen.get().contains(&("shielded", 2)));
        }
    });
}

/// `sync::OnceCell::get_or_init` as a waiter: a wait cancelled or dropped keeps no place and
/// no turn (principle 4). A task shielded from the operation's cancellation runs initialiser 5
/// (1 ms); the operation lets it start, waits for its value with `get_or_init`, then calls
/// `get_or_init` again on the initialised cell (still a checkpoint, principle 3).
///
/// Points:
/// - checkpoint 1, drop points 1 and 2: the `checkpoint()` that lets the initialiser start;
/// - checkpoint 2: the wait before it starts;
/// - checkpoint 3, drop point 3: the wait as it parks behind the initialiser: it leaves;
/// - drop point 4: handed the value, dropped before it returned: nothing to give back;
/// - checkpoint 4, drop points 5 and 6: the second call, as it starts and during its yield.
///
/// Invariant: [`assert_initialised_once`]; the initialiser finished whatever happened to the
/// operation unless its future was dropped with the operation's, and the operation's own
/// initialiser never ran.
#[test]
fn once_cell_get_or_init_cancel_safety() {
    let op = |(cell, log, seen): OnceCellState| {
        in_nursery(|n| async move {
            n.spawn(shielded_get(
                (cell.clone(), log.clone(), seen.clone()),
                "initialiser",
                5,
            ))?;
            checkpoint().await?;
            let value = cell.get_or_init(|| async { unreachable!("the task holds the turn") });
            seen.push(("op", *value.await?));
            let again = cell.get_or_init(|| async { unreachable!("initialised") });
            seen.push(("op again", *again.await?));
            Ok(())
        })
    };
    assert_cell_cancel_safe((4, 3), op, |(cell, _, _), ending| {
        if !matches!(ending, Ending::Dropped) {
            assert_eq!(cell.get(), Some(&5));
        }
    });
}
