//! trio's test_parking_lot.py scenarios, ported: FIFO unparking, unpark counts, cancellation,
//! repark (between the two lines of one lot), and breaking a lot.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::{lock, Op, ParkingLot, Site, WakeList, MAIN, STANDBY};
use crate::error::{Cancelled, Error};
use crate::testing::{wait_all_tasks_blocked, MockClock};
use crate::{nursery, CancelScope, Flavor, Runtime};

type Lot = Mutex<ParkingLot<Result<(), Error>, ()>>;

/// Parks in line `L` of a bare lot; fails at once if the lot is broken.
struct Park<const L: usize>;

impl<const L: usize> Site for Park<L> {
    type State = ParkingLot<Result<(), Error>, ()>;
    type Value = Result<(), Error>;
    type Request = ();
    type Output = ();
    type Error = Error;
    const NAME: &'static str = "park";
    const LINE: usize = L;

    fn lot(state: &mut Self::State) -> &mut Self::State {
        state
    }

    fn attempt(state: &mut Self::State, (): &mut (), _: &mut WakeList) -> Option<Self::Value> {
        state.is_broken().then_some(Err(Error::BrokenResource))
    }

    fn finish(value: Self::Value, (): ()) -> Result<(), Error> {
        value
    }

    fn cancelled(c: Cancelled, (): ()) -> Error {
        Error::Cancelled(c)
    }

    fn redeliver(
        _: &mut Self::State,
        _: Self::Value,
        _: &mut (),
        _: &mut WakeList,
    ) -> Option<Self::Value> {
        None
    }
}

fn block_on<F: std::future::Future>(f: F) -> F::Output {
    let clock = MockClock::new();
    clock.set_autojump_threshold(Some(Duration::ZERO));
    Runtime::builder()
        .flavor(Flavor::CurrentThread)
        .clock(clock)
        .build()
        .unwrap()
        .block_on(f)
}

type Record = Arc<Mutex<Vec<String>>>;

fn rec(r: &Record, s: String) {
    r.lock().unwrap().push(s);
}

fn get(r: &Record) -> Vec<String> {
    r.lock().unwrap().clone()
}

fn unpark(lot: &Lot, line: usize, n: usize) -> usize {
    let mut wakes = WakeList::new();
    lock(lot).unpark_n(line, n, |_| Ok(()), &mut wakes)
}

fn len(lot: &Lot, line: usize) -> usize {
    lock(lot).len(line)
}

/// trio's `cancellable_waiter`: parks in `line` inside its own scope, records the outcome.
fn spawn_waiter<const L: usize>(
    n: &crate::Nursery,
    lot: &Arc<Lot>,
    name: u32,
    record: &Record,
) -> CancelScope {
    let (lot, record) = (lot.clone(), record.clone());
    let scope = CancelScope::new();
    let s = scope.clone();
    n.spawn(async move {
        rec(&record, format!("sleep {name}"));
        let out = s.run(Op::<Park<L>>::new(&lot, ())).await;
        match out {
            Some(Ok(())) => rec(&record, format!("wake {name}")),
            Some(Err(e)) if e.to_string().contains("cancelled") => {
                rec(&record, format!("cancelled {name}"))
            }
            None => rec(&record, format!("cancelled {name}")),
            Some(Err(e)) => rec(&record, format!("error {name}: {e}")),
        }
        Ok(())
    })
    .unwrap();
    scope
}

#[test]
fn parking_lot_basic() {
    block_on(async {
        let lot: Arc<Lot> = Arc::default();
        let record: Record = Arc::default();
        let (l, r) = (lot.clone(), record.clone());
        nursery(|n| async move {
            assert_eq!(len(&l, MAIN), 0);
            for i in 0..3 {
                spawn_waiter::<MAIN>(&n, &l, i, &r);
            }
            wait_all_tasks_blocked().await?;
            assert_eq!(get(&r).len(), 3);
            assert_eq!(len(&l, MAIN), 3);
            unpark(&l, MAIN, usize::MAX);
            assert_eq!(len(&l, MAIN), 0);
            wait_all_tasks_blocked().await?;
            assert_eq!(get(&r).len(), 6);
            Ok::<_, Error>(())
        })
        .await
        .unwrap();
        let mut first: Vec<_> = get(&record)[..3].to_vec();
        let mut second: Vec<_> = get(&record)[3..].to_vec();
        first.sort();
        second.sort();
        assert_eq!(first, ["sleep 0", "sleep 1", "sleep 2"]);
        assert_eq!(second, ["wake 0", "wake 1", "wake 2"]);

        // One-by-one wake-ups are strict FIFO.
        record.lock().unwrap().clear();
        let (l, r) = (lot.clone(), record.clone());
        nursery(|n| async move {
            for i in 0..3 {
                spawn_waiter::<MAIN>(&n, &l, i, &r);
                wait_all_tasks_blocked().await?;
            }
            for _ in 0..3 {
                unpark(&l, MAIN, 1);
                wait_all_tasks_blocked().await?;
            }
            Ok::<_, Error>(())
        })
        .await
        .unwrap();
        assert_eq!(
            get(&record),
            ["sleep 0", "sleep 1", "sleep 2", "wake 0", "wake 1", "wake 2"]
        );

        // Unparking with nobody parked is a no-op.
        assert_eq!(unpark(&lot, MAIN, 1), 0);
        assert_eq!(unpark(&lot, MAIN, 100), 0);

        // Unpark with a count.
        record.lock().unwrap().clear();
        let (l, r) = (lot.clone(), record.clone());
        nursery(|n| async move {
            for i in 0..3 {
                spawn_waiter::<MAIN>(&n, &l, i, &r);
                wait_all_tasks_blocked().await?;
            }
            assert_eq!(unpark(&l, MAIN, 2), 2);
            wait_all_tasks_blocked().await?;
            let got = get(&r);
            assert_eq!(got[..3], ["sleep 0", "sleep 1", "sleep 2"]);
            let mut woken = got[3..].to_vec();
            woken.sort();
            assert_eq!(woken, ["wake 0", "wake 1"]);
            unpark(&l, MAIN, usize::MAX);
            Ok::<_, Error>(())
        })
        .await
        .unwrap();
    });
}

#[test]
fn parking_lot_cancel() {
    block_on(async {
        let lot: Arc<Lot> = Arc::default();
        let record: Record = Arc::default();
        let (l, r) = (lot.clone(), record.clone());
        nursery(|n| async move {
            let mut scopes = Vec::new();
            for i in 1..=3 {
                scopes.push(spawn_waiter::<MAIN>(&n, &l, i, &r));
                wait_all_tasks_blocked().await?;
            }
            assert_eq!(get(&r).len(), 3);
            scopes[1].cancel();
            wait_all_tasks_blocked().await?;
            assert_eq!(get(&r).len(), 4);
            assert_eq!(len(&l, MAIN), 2, "the cancelled waiter left the line");
            unpark(&l, MAIN, usize::MAX);
            wait_all_tasks_blocked().await?;
            assert_eq!(get(&r).len(), 6);
            Ok::<_, Error>(())
        })
        .await
        .unwrap();
        let got = get(&record);
        assert_eq!(got[..4], ["sleep 1", "sleep 2", "sleep 3", "cancelled 2"]);
        let mut woken = got[4..].to_vec();
        woken.sort();
        assert_eq!(woken, ["wake 1", "wake 3"]);
    });
}

#[test]
fn parking_lot_repark() {
    // trio's lot1 is the STANDBY line, lot2 the MAIN line.
    block_on(async {
        let lot: Arc<Lot> = Arc::default();
        let record: Record = Arc::default();
        let (l, r) = (lot.clone(), record.clone());
        nursery(|n| async move {
            let mut scopes = Vec::new();
            for i in 1..=3 {
                scopes.push(spawn_waiter::<STANDBY>(&n, &l, i, &r));
                wait_all_tasks_blocked().await?;
            }
            assert_eq!(get(&r).len(), 3);
            assert_eq!(len(&l, STANDBY), 3);
            assert_eq!(lock(&l).repark(STANDBY, MAIN, 1), 1);
            assert_eq!(len(&l, STANDBY), 2);
            assert_eq!(len(&l, MAIN), 1);
            unpark(&l, MAIN, usize::MAX);
            wait_all_tasks_blocked().await?;
            assert_eq!(get(&r), ["sleep 1", "sleep 2", "sleep 3", "wake 1"]);

            lock(&l).repark(STANDBY, MAIN, usize::MAX);
            assert_eq!(len(&l, STANDBY), 0);
            assert_eq!(len(&l, MAIN), 2);

            scopes[1].cancel();
            wait_all_tasks_blocked().await?;
            assert_eq!(len(&l, MAIN), 1);
            assert_eq!(
                get(&r),
                ["sleep 1", "sleep 2", "sleep 3", "wake 1", "cancelled 2"]
            );
            unpark(&l, MAIN, usize::MAX);
            wait_all_tasks_blocked().await?;
            assert_eq!(
                get(&r),
                [
                    "sleep 1",
                    "sleep 2",
                    "sleep 3",
                    "wake 1",
                    "cancelled 2",
                    "wake 3"
                ]
            );
            Ok::<_, Error>(())
        })
        .await
        .unwrap();
    });
}

#[test]
fn parking_lot_repark_with_count() {
    block_on(async {
        let lot: Arc<Lot> = Arc::default();
        let record: Record = Arc::default();
        let (l, r) = (lot.clone(), record.clone());
        nursery(|n| async move {
            for i in 1..=3 {
                spawn_waiter::<STANDBY>(&n, &l, i, &r);
                wait_all_tasks_blocked().await?;
            }
            assert_eq!((len(&l, STANDBY), len(&l, MAIN)), (3, 0));
            lock(&l).repark(STANDBY, MAIN, 2);
            assert_eq!((len(&l, STANDBY), len(&l, MAIN)), (1, 2));
            while len(&l, MAIN) > 0 {
                unpark(&l, MAIN, 1);
                wait_all_tasks_blocked().await?;
            }
            assert_eq!(
                get(&r),
                ["sleep 1", "sleep 2", "sleep 3", "wake 1", "wake 2"]
            );
            unpark(&l, STANDBY, usize::MAX);
            Ok::<_, Error>(())
        })
        .await
        .unwrap();
    });
}

#[test]
fn parking_lot_break_fails_parked_and_later_waiters() {
    // trio: test_parking_lot_breaker_basic / test_parking_lot_break_parking_tasks. trio records
    // which task broke a lot and breaks it when a registered task exits; trellis primitives
    // release on drop instead, so breaking is explicit.
    block_on(async {
        let lot: Arc<Lot> = Arc::default();
        let record: Record = Arc::default();
        let (l, r) = (lot.clone(), record.clone());
        nursery(|n| async move {
            spawn_waiter::<MAIN>(&n, &l, 1, &r);
            spawn_waiter::<STANDBY>(&n, &l, 2, &r);
            wait_all_tasks_blocked().await?;
            let mut wakes = WakeList::new();
            lock(&l).break_lot(|_| Err(Error::BrokenResource), &mut wakes);
            drop(wakes);
            assert!(lock(&l).is_broken());
            wait_all_tasks_blocked().await?;
            Ok::<_, Error>(())
        })
        .await
        .unwrap();
        let mut got = get(&record);
        got.sort();
        assert_eq!(
            got,
            [
                "error 1: the resource is broken: the other side is gone",
                "error 2: the resource is broken: the other side is gone",
                "sleep 1",
                "sleep 2"
            ]
        );
        // Trying to park in a broken lot fails.
        assert!(matches!(
            Op::<Park<MAIN>>::new(&lot, ()).await,
            Err(Error::BrokenResource)
        ));
    });
}

/// Counts the wake-ups of the wakers made from it.
#[derive(Default)]
struct Wakes(std::sync::atomic::AtomicUsize);

impl std::task::Wake for Wakes {
    fn wake(self: Arc<Self>) {
        self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    }
}

// A wake list wakes each waker it holds exactly once and frees it, whether it is woken
// explicitly or dropped, and whether it holds one waker (inline) or several (the vector). (The
// empty list dropped first takes the drop's inlined path, which frees nothing: the sanitizer
// run would report a double free or a leak there.)
#[test]
fn a_wake_list_wakes_each_waker_once_and_frees_it() {
    use std::sync::atomic::Ordering::SeqCst;
    let counter = Arc::new(Wakes::default());
    let waker = || std::task::Waker::from(counter.clone());
    drop(WakeList::new());
    for (n, explicit) in [(1, true), (1, false), (3, true), (3, false)] {
        let before = counter.0.load(SeqCst);
        let mut wakes = WakeList::new();
        for _ in 0..n {
            wakes.push(waker());
        }
        assert_eq!(Arc::strong_count(&counter), 1 + n);
        if explicit {
            wakes.wake_all();
            assert_eq!(Arc::strong_count(&counter), 1, "woken wakers are consumed");
        }
        drop(wakes);
        assert_eq!(
            counter.0.load(SeqCst) - before,
            n,
            "{n} wakers, each woken once"
        );
        assert_eq!(Arc::strong_count(&counter), 1, "nothing kept");
    }
    assert_eq!(counter.0.load(SeqCst), 8);
}
