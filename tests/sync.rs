//! Synchronisation primitives: trio's test_sync.py scenarios (Event, Semaphore, Lock,
//! Condition, the generic lock tests) ported with their asserted orders and statistics, plus
//! RwLock and Barrier, which trio lacks. Principle 3 (every async method is a checkpoint).

mod common;

use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex as StdMutex};
use std::task::Poll;

use common::{
    assert_yields, block_on_current, block_on_trio_order, catch_unwind, multi_thread,
    panic_message, poll_once, Log,
};
use trellis::channel::{bounded, Receiver, Sender};
use trellis::lowlevel::current_task;
use trellis::sync::{
    Barrier, CapacityLimiter, Condition, Event, LimiterToken, Mutex, MutexGuard, RwLock, Semaphore,
    SemaphorePermit,
};
use trellis::testing::wait_all_tasks_blocked;
use trellis::{checkpoint, nursery, sleep_forever, CancelScope, Error};

#[test]
fn event_wakes_all_waiters() {
    // trio: test_Event
    block_on_trio_order(async {
        let e = Event::new();
        assert!(!e.is_set());
        assert_eq!(e.statistics().tasks_waiting, 0);
        e.set();
        assert!(e.is_set());
        assert_yields(e.wait()).await.unwrap();

        let e = Arc::new(Event::new());
        let rec = Log::new();
        let (e2, rec2) = (e.clone(), rec.clone());
        nursery(|n| async move {
            for _ in 0..2 {
                let (e, rec) = (e2.clone(), rec2.clone());
                n.spawn(async move {
                    rec.push("sleeping");
                    e.wait().await?;
                    rec.push("woken");
                    Ok(())
                })?;
            }
            wait_all_tasks_blocked().await?;
            assert_eq!(rec2.snapshot(), ["sleeping", "sleeping"]);
            assert_eq!(e2.statistics().tasks_waiting, 2);
            e2.set();
            wait_all_tasks_blocked().await?;
            assert_eq!(rec2.snapshot(), ["sleeping", "sleeping", "woken", "woken"]);
            Ok::<_, Error>(())
        })
        .await
        .unwrap();
        assert_eq!(e.statistics().tasks_waiting, 0);
    });
}

#[test]
fn semaphore_counts_and_hands_off_fairly() {
    // trio: test_Semaphore
    block_on_trio_order(async {
        let s = Semaphore::new(1);
        assert_eq!(s.value(), 1);
        assert_eq!(s.max_value(), None);
        s.release().unwrap();
        assert_eq!(s.value(), 2);
        assert_eq!(s.statistics().tasks_waiting, 0);
        s.try_acquire().unwrap().forget();
        assert_eq!(s.value(), 1);
        assert_yields(s.acquire()).await.unwrap().forget();
        assert_eq!(s.value(), 0);
        assert!(matches!(s.try_acquire(), Err(Error::WouldBlock)));

        s.release().unwrap();
        assert_eq!(s.value(), 1);
        {
            let _permit = assert_yields(s.acquire()).await.unwrap();
            assert_eq!(s.value(), 0);
        }
        assert_eq!(s.value(), 1);
        s.try_acquire().unwrap().forget();

        let s = Arc::new(s);
        let rec = Log::new();
        let (s2, rec2) = (s.clone(), rec.clone());
        nursery(|n| async move {
            let (s, rec) = (s2.clone(), rec2.clone());
            n.spawn(async move {
                rec.push("started");
                s.acquire().await?.forget();
                rec.push("finished");
                Ok(())
            })?;
            wait_all_tasks_blocked().await?;
            assert_eq!(rec2.snapshot(), ["started"]);
            assert_eq!(s2.value(), 0);
            s2.release()?;
            // Fairness: the permit went to the waiter.
            assert_eq!(s2.value(), 0);
            assert!(matches!(s2.try_acquire(), Err(Error::WouldBlock)));
            Ok::<_, Error>(())
        })
        .await
        .unwrap();
        assert_eq!(rec.snapshot(), ["started", "finished"]);
    });
}

#[test]
fn bounded_semaphore_refuses_release_past_max() {
    // trio: test_Semaphore_bounded
    assert!(std::panic::catch_unwind(|| Semaphore::with_max(2, 1)).is_err());
    let bs = Semaphore::with_max(1, 1);
    assert_eq!(bs.max_value(), Some(1));
    assert!(matches!(
        bs.release(),
        Err(Error::InvalidArgument("semaphore released too many times"))
    ));
    assert_eq!(bs.value(), 1);
    bs.try_acquire().unwrap().forget();
    assert_eq!(bs.value(), 0);
    bs.release().unwrap();
    assert_eq!(bs.value(), 1);
}

#[test]
fn mutex_lock_and_statistics() {
    // trio: test_Lock_and_StrictFIFOLock
    block_on_trio_order(async {
        let l = Arc::new(Mutex::new(()));
        assert!(!l.is_locked());
        {
            let _g = assert_yields(l.lock()).await.unwrap();
            assert!(l.is_locked());
        }
        assert!(!l.is_locked());
        let g = l.try_lock().unwrap();
        assert!(l.is_locked());
        // Taking it again while held would block (trio: RuntimeError, as the same task owns it).
        assert!(matches!(l.try_lock(), Err(Error::WouldBlock)));
        drop(g);
        assert!(!l.is_locked());
        let g = assert_yields(l.lock()).await.unwrap();
        assert!(l.is_locked());
        drop(g);

        let holder_id = Arc::new(AtomicU64::new(u64::MAX));
        let (l2, hid) = (l.clone(), holder_id.clone());
        nursery(|n| async move {
            let holder = |l: Arc<Mutex<()>>, hid: Arc<AtomicU64>| async move {
                hid.store(current_task().id, Ordering::SeqCst);
                let _g = l.lock().await?;
                sleep_forever().await?;
                Ok::<_, Error>(())
            };
            assert!(!l2.is_locked());
            n.spawn(holder(l2.clone(), hid.clone()))?;
            wait_all_tasks_blocked().await?;
            assert!(l2.is_locked());
            assert!(matches!(l2.try_lock(), Err(Error::WouldBlock)));
            let stats = l2.statistics();
            assert!(stats.locked);
            assert_eq!(stats.owner, Some(hid.load(Ordering::SeqCst)));
            assert_eq!(stats.tasks_waiting, 0);

            n.spawn(holder(l2.clone(), Arc::new(AtomicU64::new(0))))?;
            wait_all_tasks_blocked().await?;
            assert_eq!(l2.statistics().tasks_waiting, 1);
            n.cancel();
            Ok::<_, Error>(())
        })
        .await
        .unwrap();
        let stats = l.statistics();
        assert!(!stats.locked);
        assert_eq!(stats.owner, None);
        assert_eq!(stats.tasks_waiting, 0);
    });
}

// Misuse gets a message (principle: bad input gets a clear error): a `Mutex::lock` future
// polled again after it returned its guard panics naming the operation, whether it took the
// lock at once (the lock word) or after queueing behind a holder (the parking lot), and the
// lock is left as the returned guard says.
#[test]
fn a_lock_future_polled_after_it_completed_panics_with_its_name() {
    block_on_current(async {
        let l = Mutex::new(0);
        let mut at_once = std::pin::pin!(l.lock());
        let Poll::Ready(Ok(guard)) = poll_once(at_once.as_mut()).await else {
            panic!("a free lock is taken at once");
        };
        let text = panic_message(&*catch_unwind(poll_once(at_once.as_mut())).await.unwrap_err());
        assert_eq!(text, "sync::Mutex::lock future polled after it completed");
        assert!(l.is_locked());

        let mut queued = std::pin::pin!(l.lock());
        assert!(poll_once(queued.as_mut()).await.is_pending());
        assert_eq!(l.statistics().tasks_waiting, 1);
        drop(guard);
        let Poll::Ready(Ok(guard)) = poll_once(queued.as_mut()).await else {
            panic!("the lock was handed over");
        };
        let text = panic_message(&*catch_unwind(poll_once(queued.as_mut())).await.unwrap_err());
        assert_eq!(text, "sync::Mutex::lock future polled after it completed");
        drop(guard);
        assert!(!l.is_locked());
    });
}

#[test]
fn condition_notify_reparks_onto_the_lock() {
    // trio: test_Condition
    block_on_trio_order(async {
        let c = Arc::new(Condition::new(()));
        assert!(!c.is_locked());
        {
            let _g = assert_yields(c.lock()).await.unwrap();
            assert!(c.is_locked());
        }
        let g = c.try_lock().unwrap();
        assert!(c.is_locked());
        assert!(matches!(c.try_lock(), Err(Error::WouldBlock)));
        drop(g);
        // trio's "can't wait or notify without holding the lock" is a compile-time rule here:
        // `wait` and `notify` are methods of the guard.

        let finished = Arc::new(StdMutex::new(Vec::<u32>::new()));
        let spawn_waiter = |n: &trellis::Nursery, c: &Arc<Condition<()>>, i: u32| {
            let (c, finished) = (c.clone(), finished.clone());
            n.spawn(async move {
                let g = c.lock().await?;
                let g = g.wait().await?;
                drop(g);
                finished.lock().unwrap().push(i);
                Ok(())
            })
            .map(drop)
        };
        let fin = finished.clone();
        let c2 = c.clone();
        nursery(|n| async move {
            for i in 0..3 {
                spawn_waiter(&n, &c2, i)?;
                wait_all_tasks_blocked().await?;
            }
            c2.lock().await?.notify(1);
            assert!(c2.is_locked()); // handed to the notified waiter
            wait_all_tasks_blocked().await?;
            assert_eq!(*fin.lock().unwrap(), [0]);
            c2.lock().await?.notify_all();
            wait_all_tasks_blocked().await?;
            let mut f = fin.lock().unwrap().clone();
            f.sort();
            assert_eq!(f, [0, 1, 2]);
            Ok::<_, Error>(())
        })
        .await
        .unwrap();

        finished.lock().unwrap().clear();
        let fin = finished.clone();
        let c2 = c.clone();
        nursery(|n| async move {
            for i in 0..3 {
                spawn_waiter(&n, &c2, i)?;
                wait_all_tasks_blocked().await?;
            }
            {
                let g = c2.lock().await?;
                assert_eq!(g.notify(2), 2);
                let stats = c2.statistics();
                assert_eq!(stats.tasks_waiting, 1);
                assert_eq!(stats.lock_statistics.tasks_waiting, 2);
            }
            // Releasing the guard hands the lock to the first notified task.
            assert_eq!(c2.statistics().lock_statistics.tasks_waiting, 1);
            wait_all_tasks_blocked().await?;
            assert_eq!(*fin.lock().unwrap(), [0, 1]);
            c2.lock().await?.notify_all();
            Ok::<_, Error>(())
        })
        .await
        .unwrap();

        // After being cancelled, still hold the lock.
        let scope = CancelScope::new();
        let out = scope
            .run(async {
                let g = c.lock().await?;
                scope.cancel();
                match g.wait().await {
                    Ok(_) => unreachable!("the scope is cancelled"),
                    Err(cancelled) => {
                        assert!(c.is_locked());
                        let (guard, cancelled) = cancelled.into_parts();
                        drop(guard);
                        assert!(!c.is_locked());
                        Err::<(), Error>(cancelled.into())
                    }
                }
            })
            .await;
        assert!(out.is_none());
    });
}

// ---- The generic lock contract (trio's generic_lock_test) ----

trait LockLike: Send + Sync + 'static {
    type Guard<'a>: Send
    where
        Self: 'a;
    fn acquire(&self) -> impl Future<Output = Result<Self::Guard<'_>, Error>> + Send;
    fn try_acquire(&self) -> Result<Self::Guard<'_>, Error>;
}

impl LockLike for Mutex<()> {
    type Guard<'a> = MutexGuard<'a, ()>;
    async fn acquire(&self) -> Result<MutexGuard<'_, ()>, Error> {
        Ok(self.lock().await?)
    }
    fn try_acquire(&self) -> Result<MutexGuard<'_, ()>, Error> {
        self.try_lock()
    }
}

impl LockLike for Semaphore {
    type Guard<'a> = SemaphorePermit<'a>;
    async fn acquire(&self) -> Result<SemaphorePermit<'_>, Error> {
        Ok(Semaphore::acquire(self).await?)
    }
    fn try_acquire(&self) -> Result<SemaphorePermit<'_>, Error> {
        Semaphore::try_acquire(self)
    }
}

impl LockLike for CapacityLimiter {
    type Guard<'a> = LimiterToken;
    async fn acquire(&self) -> Result<LimiterToken, Error> {
        CapacityLimiter::acquire(self).await
    }
    fn try_acquire(&self) -> Result<LimiterToken, Error> {
        CapacityLimiter::try_acquire(self)
    }
}

/// trio's ChannelLock1: a channel with `capacity - 1` items preloaded; acquiring sends one.
struct ChannelLock1 {
    s: Sender<()>,
    r: Receiver<()>,
}

/// trio's ChannelLock2: one token in a buffered channel; acquiring receives it.
struct ChannelLock2 {
    s: Sender<()>,
    r: Receiver<()>,
}

/// trio's ChannelLock3: a rendezvous channel plus an "acquired" flag.
struct ChannelLock3 {
    s: Sender<()>,
    r: Receiver<()>,
    acquired: StdMutex<bool>,
}

impl ChannelLock1 {
    fn new(capacity: usize) -> Self {
        let (s, r) = bounded(capacity);
        for _ in 0..capacity - 1 {
            s.try_send(()).unwrap();
        }
        ChannelLock1 { s, r }
    }
}

impl ChannelLock2 {
    fn new() -> Self {
        let (s, r) = bounded(10);
        s.try_send(()).unwrap();
        ChannelLock2 { s, r }
    }
}

impl ChannelLock3 {
    fn new() -> Self {
        let (s, r) = bounded(0);
        ChannelLock3 {
            s,
            r,
            acquired: StdMutex::new(false),
        }
    }
}

struct ChanGuard<'a>(Box<dyn FnOnce() + Send + 'a>);

impl Drop for ChanGuard<'_> {
    fn drop(&mut self) {
        let release = std::mem::replace(&mut self.0, Box::new(|| {}));
        release();
    }
}

impl LockLike for ChannelLock1 {
    type Guard<'a> = ChanGuard<'a>;
    async fn acquire(&self) -> Result<ChanGuard<'_>, Error> {
        self.s.send(()).await?;
        Ok(ChanGuard(Box::new(|| self.r.try_recv().unwrap())))
    }
    fn try_acquire(&self) -> Result<ChanGuard<'_>, Error> {
        self.s.try_send(())?;
        Ok(ChanGuard(Box::new(|| self.r.try_recv().unwrap())))
    }
}

impl LockLike for ChannelLock2 {
    type Guard<'a> = ChanGuard<'a>;
    async fn acquire(&self) -> Result<ChanGuard<'_>, Error> {
        self.r.recv().await?;
        Ok(ChanGuard(Box::new(|| self.s.try_send(()).unwrap())))
    }
    fn try_acquire(&self) -> Result<ChanGuard<'_>, Error> {
        self.r.try_recv()?;
        Ok(ChanGuard(Box::new(|| self.s.try_send(()).unwrap())))
    }
}

impl ChannelLock3 {
    fn release(&self) {
        match self.r.try_recv() {
            Ok(()) => {}
            Err(Error::WouldBlock) => {
                let mut acquired = self.acquired.lock().unwrap();
                assert!(*acquired);
                *acquired = false;
            }
            Err(e) => panic!("{e}"),
        }
    }
}

impl LockLike for ChannelLock3 {
    type Guard<'a> = ChanGuard<'a>;
    async fn acquire(&self) -> Result<ChanGuard<'_>, Error> {
        let was = std::mem::replace(&mut *self.acquired.lock().unwrap(), true);
        if was {
            self.s.send(()).await?;
        } else {
            checkpoint().await?;
        }
        Ok(ChanGuard(Box::new(|| self.release())))
    }
    fn try_acquire(&self) -> Result<ChanGuard<'_>, Error> {
        let mut acquired = self.acquired.lock().unwrap();
        assert!(!*acquired);
        *acquired = true;
        Ok(ChanGuard(Box::new(|| self.release())))
    }
}

/// Runs `test` against every lock-like the contract covers.
type Factory = Arc<dyn Fn() -> LockBox + Send + Sync>;

fn for_each_lock(test: impl Fn(&'static str, Factory)) {
    let factories: Vec<(&'static str, Factory)> = vec![
        (
            "CapacityLimiter(1)",
            Arc::new(|| LockBox::Limiter(Arc::new(CapacityLimiter::new(1)))),
        ),
        (
            "Semaphore(1)",
            Arc::new(|| LockBox::Semaphore(Arc::new(Semaphore::new(1)))),
        ),
        (
            "Mutex",
            Arc::new(|| LockBox::Mutex(Arc::new(Mutex::new(())))),
        ),
        (
            "ChannelLock1(10)",
            Arc::new(|| LockBox::Chan1(Arc::new(ChannelLock1::new(10)))),
        ),
        (
            "ChannelLock1(1)",
            Arc::new(|| LockBox::Chan1(Arc::new(ChannelLock1::new(1)))),
        ),
        (
            "ChannelLock2",
            Arc::new(|| LockBox::Chan2(Arc::new(ChannelLock2::new()))),
        ),
        (
            "ChannelLock3",
            Arc::new(|| LockBox::Chan3(Arc::new(ChannelLock3::new()))),
        ),
    ];
    for (name, factory) in factories {
        test(name, factory);
    }
}

#[derive(Clone)]
enum LockBox {
    Limiter(Arc<CapacityLimiter>),
    Semaphore(Arc<Semaphore>),
    Mutex(Arc<Mutex<()>>),
    Chan1(Arc<ChannelLock1>),
    Chan2(Arc<ChannelLock2>),
    Chan3(Arc<ChannelLock3>),
}

/// Runs `body` with the lock held (taken with `acquire`).
async fn with_lock<R>(lock: &LockBox, body: impl AsyncFnOnce() -> R) -> Result<R, Error> {
    async fn run<L: LockLike, R>(l: &L, body: impl AsyncFnOnce() -> R) -> Result<R, Error> {
        let _guard = l.acquire().await?;
        Ok(body().await)
    }
    match lock {
        LockBox::Limiter(l) => run(&**l, body).await,
        LockBox::Semaphore(l) => run(&**l, body).await,
        LockBox::Mutex(l) => run(&**l, body).await,
        LockBox::Chan1(l) => run(&**l, body).await,
        LockBox::Chan2(l) => run(&**l, body).await,
        LockBox::Chan3(l) => run(&**l, body).await,
    }
}

/// Takes the lock with `try_acquire` and returns a closure that releases it.
fn try_hold(lock: &LockBox) -> Box<dyn FnOnce() + '_> {
    fn hold<L: LockLike>(l: &L) -> Box<dyn FnOnce() + '_> {
        let guard = l.try_acquire().unwrap();
        Box::new(move || drop(guard))
    }
    match lock {
        LockBox::Limiter(l) => hold(&**l),
        LockBox::Semaphore(l) => hold(&**l),
        LockBox::Mutex(l) => hold(&**l),
        LockBox::Chan1(l) => hold(&**l),
        LockBox::Chan2(l) => hold(&**l),
        LockBox::Chan3(l) => hold(&**l),
    }
}

#[test]
fn generic_lock_exclusion() {
    // trio: test_generic_lock_exclusion
    for_each_lock(|name, factory| {
        const LOOPS: usize = 10;
        const WORKERS: usize = 5;
        let in_critical = Arc::new(AtomicBool::new(false));
        let acquires = Arc::new(AtomicUsize::new(0));
        let (ic, acq) = (in_critical.clone(), acquires.clone());
        block_on_current(async move {
            let lock = factory();
            nursery(|n| async move {
                for _ in 0..WORKERS {
                    let (lock, ic, acq) = (lock.clone(), ic.clone(), acq.clone());
                    n.spawn(async move {
                        for _ in 0..LOOPS {
                            with_lock(&lock, async || {
                                acq.fetch_add(1, Ordering::SeqCst);
                                assert!(!ic.swap(true, Ordering::SeqCst), "{name}: two inside");
                                checkpoint().await.unwrap();
                                checkpoint().await.unwrap();
                                assert!(ic.swap(false, Ordering::SeqCst));
                            })
                            .await?;
                        }
                        Ok(())
                    })?;
                }
                Ok::<_, Error>(())
            })
            .await
            .unwrap();
        });
        assert!(!in_critical.load(Ordering::SeqCst));
        assert_eq!(acquires.load(Ordering::SeqCst), LOOPS * WORKERS, "{name}");
    });
}

#[test]
fn generic_lock_fifo_fairness() {
    // trio: test_generic_lock_fifo_fairness
    for_each_lock(|name, factory| {
        const LOOPS: usize = 5;
        let initial = Arc::new(StdMutex::new(Vec::new()));
        let rec = Arc::new(StdMutex::new(Vec::new()));
        let (ini, r) = (initial.clone(), rec.clone());
        block_on_trio_order(async move {
            let lock = factory();
            nursery(|n| async move {
                for name in 1..=3 {
                    let (lock, ini, r) = (lock.clone(), ini.clone(), r.clone());
                    n.spawn(async move {
                        ini.lock().unwrap().push(name);
                        for _ in 0..LOOPS {
                            with_lock(&lock, async || r.lock().unwrap().push(name)).await?;
                        }
                        Ok(())
                    })?;
                }
                Ok::<_, Error>(())
            })
            .await
            .unwrap();
        });
        let initial = initial.lock().unwrap().clone();
        let rec = rec.lock().unwrap().clone();
        for i in 0..LOOPS {
            assert_eq!(rec[3 * i..3 * (i + 1)], initial[..], "{name}: {rec:?}");
        }
    });
}

#[test]
fn generic_lock_try_acquire_blocks_acquire() {
    // trio: test_generic_lock_acquire_nowait_blocks_acquire
    for_each_lock(|name, factory| {
        block_on_current(async move {
            let lock = factory();
            let rec = Log::new();
            let release = try_hold(&lock);
            let (l2, r2) = (lock.clone(), rec.clone());
            nursery(|n| async move {
                n.spawn(async move {
                    r2.push("started");
                    with_lock(&l2, async || ()).await?;
                    r2.push("finished");
                    Ok(())
                })?;
                wait_all_tasks_blocked().await?;
                assert_eq!(rec.snapshot(), ["started"], "{name}");
                release();
                Ok::<_, Error>(())
            })
            .await
            .unwrap();
        });
    });
}

#[test]
fn rwlock_readers_share_and_writers_queue_fairly() {
    block_on_trio_order(async {
        let lock = Arc::new(RwLock::new(0u32));
        let r1 = lock.read().await.unwrap();
        let r2 = assert_yields(lock.read()).await.unwrap();
        assert_eq!(lock.statistics().readers, 2);
        assert!(matches!(lock.try_write(), Err(Error::WouldBlock)));
        let rec = Log::new();
        let (l2, rec2) = (lock.clone(), rec.clone());
        nursery(|n| async move {
            let (l, r) = (l2.clone(), rec2.clone());
            n.spawn(async move {
                let mut w = l.write().await?;
                r.push("writer in");
                *w += 1;
                checkpoint().await?;
                r.push("writer out");
                Ok(())
            })?;
            wait_all_tasks_blocked().await?;
            // A new reader queues behind the waiting writer (no starvation).
            let (l, r) = (l2.clone(), rec2.clone());
            n.spawn(async move {
                let g = l.read().await?;
                r.push(format!("reader saw {}", *g));
                Ok(())
            })?;
            wait_all_tasks_blocked().await?;
            assert!(matches!(l2.try_read(), Err(Error::WouldBlock)));
            let stats = l2.statistics();
            assert_eq!((stats.readers, stats.writer), (2, false));
            assert_eq!((stats.readers_waiting, stats.writers_waiting), (1, 1));
            drop(r1);
            drop(r2);
            wait_all_tasks_blocked().await?;
            Ok::<_, Error>(())
        })
        .await
        .unwrap();
        assert_eq!(rec.snapshot(), ["writer in", "writer out", "reader saw 1"]);
        assert_eq!(*lock.read().await.unwrap(), 1);
    });
}

#[test]
fn rwlock_writer_giving_up_lets_queued_readers_in() {
    block_on_current(async {
        let lock = Arc::new(RwLock::new(()));
        let held = lock.read().await.unwrap();
        let writer_scope = CancelScope::new();
        let (l2, ws) = (lock.clone(), writer_scope.clone());
        nursery(|n| async move {
            let l = l2.clone();
            n.spawn(async move {
                ws.run(async { l.write().await.map(drop) }).await;
                Ok(())
            })?;
            wait_all_tasks_blocked().await?;
            let l = l2.clone();
            let reader = n.spawn(async move {
                let _g = l.read().await?;
                Ok(())
            })?;
            wait_all_tasks_blocked().await?;
            assert_eq!(l2.statistics().readers_waiting, 1);
            writer_scope.cancel();
            reader.await?; // entered beside `held`
            assert_eq!(l2.statistics().readers, 1);
            Ok::<_, Error>(())
        })
        .await
        .unwrap();
        drop(held);
        assert_eq!(lock.statistics().readers, 0);
    });
}

#[test]
fn barrier_releases_all_parties_with_one_leader() {
    block_on_trio_order(async {
        let barrier = Arc::new(Barrier::new(3));
        let b2 = barrier.clone();
        let leaders = nursery(|n| async move {
            let mut handles = Vec::new();
            for _ in 0..2 {
                let b = b2.clone();
                handles.push(n.spawn(async move { Ok(b.wait().await?.is_leader()) })?);
            }
            wait_all_tasks_blocked().await?;
            assert_eq!(b2.statistics().tasks_waiting, 2);
            let me = assert_yields(b2.wait()).await?.is_leader();
            let mut leaders = usize::from(me);
            for h in handles {
                leaders += usize::from(h.await?);
            }
            Ok::<_, Error>((me, leaders))
        })
        .await
        .unwrap();
        assert_eq!(leaders, (true, 1)); // the last to arrive leads
        let stats = barrier.statistics();
        assert_eq!(
            (stats.parties, stats.tasks_waiting, stats.rounds),
            (3, 0, 1)
        );
    });
}

#[test]
fn barrier_waiter_cancelled_no_longer_counts() {
    block_on_current(async {
        let barrier = Arc::new(Barrier::new(2));
        let b2 = barrier.clone();
        nursery(|n| async move {
            let b = b2.clone();
            let scope = CancelScope::new();
            let s2 = scope.clone();
            n.spawn(async move {
                assert!(s2.run(b.wait()).await.is_none());
                Ok(())
            })?;
            wait_all_tasks_blocked().await?;
            assert_eq!(b2.statistics().tasks_waiting, 1);
            scope.cancel();
            wait_all_tasks_blocked().await?;
            assert_eq!(b2.statistics().tasks_waiting, 0);
            let b = b2.clone();
            n.spawn(async move {
                b.wait().await?;
                Ok(())
            })?;
            wait_all_tasks_blocked().await?;
            assert_eq!(
                b2.statistics().tasks_waiting,
                1,
                "the cancelled wait did not count"
            );
            b2.wait().await?;
            Ok::<_, Error>(())
        })
        .await
        .unwrap();
        assert_eq!(barrier.statistics().rounds, 1);
    });
}

#[test]
fn guards_are_send_when_the_data_is() {
    fn assert_send<T: Send>() {}
    assert_send::<MutexGuard<'static, Vec<u8>>>();
    assert_send::<trellis::sync::ConditionGuard<'static, Vec<u8>>>();
    assert_send::<SemaphorePermit<'static>>();
    assert_send::<LimiterToken>();
    // A task holding a guard across .await can run on the multi-threaded runtime.
    multi_thread(2).block_on(async {
        let m = Arc::new(Mutex::new(0));
        nursery(|n| async move {
            for _ in 0..4 {
                let m = m.clone();
                n.spawn(async move {
                    let mut g = m.lock().await?;
                    checkpoint().await?;
                    *g += 1;
                    Ok(())
                })?;
            }
            Ok::<_, Error>(())
        })
        .await
        .unwrap();
    });
}

/// A forgotten owned permit stays taken but does not keep the semaphore alive (it used to leak
/// the `Arc`, and the semaphore with it).
#[test]
fn a_forgotten_owned_permit_stays_taken_without_leaking_the_semaphore() {
    trellis::run(async {
        let sem = std::sync::Arc::new(trellis::sync::Semaphore::new(2));
        sem.clone().acquire_owned().await.unwrap().forget();
        assert_eq!(sem.value(), 1);
        assert_eq!(std::sync::Arc::strong_count(&sem), 1);
        drop(sem.clone().acquire_owned().await.unwrap());
        assert_eq!(sem.value(), 1);
    });
}
