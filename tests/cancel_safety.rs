//! Cancel safety of every primitive and of channels (principle 4: a cancelled operation leaves
//! no trace). Each operation is cancelled at every point where it can be:
//! - before blocking (its scope is already cancelled),
//! - while blocked (its scope is cancelled, or its future dropped),
//! - after it was handed a value but before it ran (its scope cancelled: it still completes,
//!   as in trio; its future dropped: the value passes on),
//! - after it completed without blocking but before it returned (dropped during its yield),
//!
//! and each test checks that no message, permit, token or lock was lost or leaked.

mod common;

use std::future::poll_fn;
use std::pin::{pin, Pin};
use std::sync::Arc;
use std::task::Poll;

use common::{block_on_current, poll_once, run_cancelled};
use futures_core::Stream;
use trellis::channel::{bounded, unbounded};
use trellis::sync::{Borrower, CapacityLimiter, Condition, Event, Mutex, RwLock, Semaphore};
use trellis::testing::wait_all_tasks_blocked;
use trellis::{nursery, CancelScope, Error};

#[test]
fn recv_cancelled_at_every_point_loses_no_message() {
    block_on_current(async {
        let (tx, rx) = bounded::<u32>(2);

        // Before blocking: a message is ready, but the scope is cancelled: nothing consumed.
        tx.try_send(1).unwrap();
        assert!(run_cancelled(rx.recv()).await.is_none());
        assert_eq!(rx.statistics().current_buffer_used, 1);
        assert_eq!(rx.try_recv().unwrap(), 1);

        // While blocked, by scope: no place kept in line, nothing consumed.
        let scope = CancelScope::new();
        let (rx2, s2) = (Arc::new(rx.clone()), scope.clone());
        nursery(|n| async move {
            let r = rx2.clone();
            n.spawn(async move {
                assert!(s2.run(r.recv()).await.is_none());
                Ok(())
            })?;
            wait_all_tasks_blocked().await?;
            assert_eq!(rx2.statistics().tasks_waiting_receive, 1);
            scope.cancel();
            wait_all_tasks_blocked().await?;
            assert_eq!(rx2.statistics().tasks_waiting_receive, 0);
            Ok::<_, Error>(())
        })
        .await
        .unwrap();
        tx.try_send(2).unwrap();
        assert_eq!(rx.try_recv().unwrap(), 2);

        // While blocked, by drop.
        {
            let mut fut = pin!(rx.recv());
            assert!(poll_once(fut.as_mut()).await.is_pending());
            assert_eq!(rx.statistics().tasks_waiting_receive, 1);
        }
        assert_eq!(rx.statistics().tasks_waiting_receive, 0);

        // Handed a message, then dropped before running: the next receiver gets it.
        let mut first = Box::pin(rx.recv());
        let mut second = Box::pin(rx.recv());
        assert!(poll_once(first.as_mut()).await.is_pending());
        assert!(poll_once(second.as_mut()).await.is_pending());
        tx.try_send(3).unwrap(); // belongs to `first` now
        assert!(matches!(rx.try_recv(), Err(Error::WouldBlock)));
        drop(first);
        assert_eq!(second.await.unwrap(), 3);

        // Handed, dropped, and nobody else waiting: back to the *front* of the buffer.
        let mut fut = Box::pin(rx.recv());
        assert!(poll_once(fut.as_mut()).await.is_pending());
        tx.try_send(4).unwrap();
        tx.try_send(5).unwrap(); // buffered behind the handed message
        drop(fut);
        assert_eq!(rx.try_recv().unwrap(), 4);
        assert_eq!(rx.try_recv().unwrap(), 5);

        // Completed without blocking, dropped during its yield: the message goes back first.
        tx.try_send(6).unwrap();
        tx.try_send(7).unwrap();
        let mut fut = Box::pin(rx.recv());
        assert!(poll_once(fut.as_mut()).await.is_pending()); // took 6, yielding
        assert_eq!(rx.statistics().current_buffer_used, 1);
        drop(fut);
        assert_eq!(rx.try_recv().unwrap(), 6);
        assert_eq!(rx.try_recv().unwrap(), 7);

        // Handed, then the scope is cancelled before the receiver runs: the receive completed
        // (trio's rule), so the receiver has the message; it is not lost.
        let scope = CancelScope::new();
        let (rx2, tx2, s2) = (Arc::new(rx.clone()), tx.clone(), scope.clone());
        let got = nursery(|n| async move {
            let r = rx2.clone();
            let h = n.spawn(async move { Ok(s2.run(r.recv()).await) })?;
            wait_all_tasks_blocked().await?;
            tx2.try_send(8).unwrap();
            scope.cancel();
            h.await
        })
        .await
        .unwrap();
        assert_eq!(got.unwrap().unwrap(), 8);
        assert_eq!(rx.statistics().current_buffer_used, 0);
    });
}

#[test]
fn stream_dropped_after_hand_off_returns_the_message() {
    block_on_current(async {
        let (tx, rx) = unbounded::<u32>();
        let mut stream = rx.clone();
        let polled = poll_fn(|cx| Poll::Ready(Pin::new(&mut stream).poll_next(cx))).await;
        assert!(polled.is_pending());
        tx.try_send(1).unwrap(); // handed to the stream's receive
        drop(stream);
        assert_eq!(rx.try_recv().unwrap(), 1);
    });
}

#[test]
fn send_cancelled_at_every_point_returns_the_message_or_completes() {
    block_on_current(async {
        let (tx, rx) = bounded::<String>(1);

        // Before blocking: the message comes back, nothing was sent.
        let out = CancelScope::new();
        out.cancel();
        let err = out
            .run(async { Ok::<_, Error>(tx.send("a".into()).await) })
            .await
            .unwrap()
            .unwrap()
            .unwrap_err();
        assert!(matches!(err.reason(), Error::Cancelled(_)));
        assert_eq!(err.into_inner(), "a");
        assert_eq!(tx.statistics().current_buffer_used, 0);

        // While blocked (buffer full), by scope: the message comes back.
        tx.try_send("full".into()).unwrap();
        let scope2 = CancelScope::new();
        let (tx2, s2) = (Arc::new(tx.clone()), scope2.clone());
        let back = nursery(|n| async move {
            let t = tx2.clone();
            let h = n.spawn(async move {
                let out = s2
                    .run(async { Ok::<_, Error>(t.send("c".into()).await) })
                    .await;
                Ok(out.unwrap().unwrap().unwrap_err().into_inner())
            })?;
            wait_all_tasks_blocked().await?;
            assert_eq!(tx2.statistics().tasks_waiting_send, 1);
            scope2.cancel();
            h.await
        })
        .await
        .unwrap();
        assert_eq!(back, "c");
        assert_eq!(tx.statistics().tasks_waiting_send, 0);
        assert_eq!(tx.statistics().current_buffer_used, 1);

        // Blocked, then its message taken (handed `Ok`), then dropped: the send happened.
        let mut fut = Box::pin(tx.send("d".into()));
        assert!(poll_once(fut.as_mut()).await.is_pending());
        assert_eq!(rx.try_recv().unwrap(), "full"); // moves "d" into the buffer
        drop(fut);
        assert_eq!(rx.try_recv().unwrap(), "d");

        // Blocked, message taken, scope cancelled before the sender runs: it reports success.
        tx.try_send("full".into()).unwrap();
        let scope = CancelScope::new();
        let (tx2, rx2, s2) = (Arc::new(tx.clone()), rx.clone(), scope.clone());
        let sent = nursery(|n| async move {
            let t = tx2.clone();
            let h = n.spawn(async move {
                Ok(s2
                    .run(async { Ok::<_, Error>(t.send("e".into()).await.is_ok()) })
                    .await)
            })?;
            wait_all_tasks_blocked().await?;
            assert_eq!(rx2.try_recv().unwrap(), "full");
            scope.cancel();
            h.await
        })
        .await
        .unwrap();
        assert!(sent.unwrap().unwrap());
        assert_eq!(rx.try_recv().unwrap(), "e");

        // Rendezvous: a cancelled send leaves nothing for a later receiver.
        let (tx, rx) = bounded::<u32>(0);
        let mut fut = Box::pin(tx.send(9));
        assert!(poll_once(fut.as_mut()).await.is_pending());
        drop(fut);
        assert!(matches!(rx.try_recv(), Err(Error::WouldBlock)));
    });
}

/// The lock-like cases shared by Mutex, Semaphore(1) and CapacityLimiter(1): `take` acquires
/// (a future resolving to a held guard), `held` says whether the resource is taken, `waiting`
/// counts waiters.
macro_rules! lock_cancel_safety {
    ($name:ident, $make:expr, $take:expr, $held:expr, $waiting:expr) => {
        #[test]
        fn $name() {
            block_on_current(async {
                let lock = $make;
                let take = $take;
                let held = $held;
                let waiting = $waiting;

                // Before blocking: free, but the scope is cancelled: nothing taken.
                assert!(run_cancelled(take(&lock)).await.is_none());
                assert!(!held(&lock));

                // Completed without blocking, dropped during its yield: released again.
                {
                    let mut fut = Box::pin(take(&lock));
                    assert!(poll_once(fut.as_mut()).await.is_pending());
                    assert!(held(&lock));
                }
                assert!(!held(&lock));

                // While blocked, by drop: no place kept.
                let holder = take(&lock).await.unwrap();
                {
                    let mut fut = Box::pin(take(&lock));
                    assert!(poll_once(fut.as_mut()).await.is_pending());
                    assert_eq!(waiting(&lock), 1);
                }
                assert_eq!(waiting(&lock), 0);

                // Handed over, then dropped before running: passes to the next waiter.
                let mut first = Box::pin(take(&lock));
                let mut second = Box::pin(take(&lock));
                assert!(poll_once(first.as_mut()).await.is_pending());
                assert!(poll_once(second.as_mut()).await.is_pending());
                drop(holder); // hands it to `first`
                assert_eq!(waiting(&lock), 1);
                drop(first); // passes it to `second`
                let g = second.await.unwrap();
                assert!(held(&lock));
                assert_eq!(waiting(&lock), 0);
                drop(g);
                assert!(!held(&lock));

                // While blocked, by scope; then handed and the scope cancelled before it ran:
                // the first waiter leaves, the second one gets it and (cancelled after the
                // hand-off) still returns it, so it is released when dropped: nothing leaks.
                let holder = take(&lock).await.unwrap();
                let (sa, sb) = (CancelScope::new(), CancelScope::new());
                let (l2, sa2, sb2) = (lock.clone(), sa.clone(), sb.clone());
                let results = nursery(|n| async move {
                    let l = l2.clone();
                    let a = n.spawn(async move { Ok(sa2.run(take(&l)).await.is_some()) })?;
                    wait_all_tasks_blocked().await?;
                    let l = l2.clone();
                    let b = n.spawn(async move {
                        let out = sb2.run(take(&l)).await;
                        Ok(matches!(out, Some(Ok(_))))
                    })?;
                    wait_all_tasks_blocked().await?;
                    assert_eq!(waiting(&l2), 2);
                    sa.cancel();
                    wait_all_tasks_blocked().await?;
                    assert_eq!(waiting(&l2), 1);
                    drop(holder); // handed to b
                    sb.cancel(); // before b runs
                    Ok::<_, Error>((a.await?, b.await?))
                })
                .await
                .unwrap();
                assert_eq!(results, (false, true));
                assert!(!held(&lock));
                assert_eq!(waiting(&lock), 0);
            });
        }
    };
}

lock_cancel_safety!(
    mutex_cancel_safety,
    Arc::new(Mutex::new(())),
    |m: &Arc<Mutex<()>>| {
        let m = m.clone();
        async move { m.lock_owned().await }
    },
    |m: &Arc<Mutex<()>>| m.is_locked(),
    |m: &Arc<Mutex<()>>| m.statistics().tasks_waiting
);

lock_cancel_safety!(
    semaphore_cancel_safety,
    Arc::new(Semaphore::new(1)),
    |s: &Arc<Semaphore>| {
        let s = s.clone();
        async move { s.acquire_owned().await }
    },
    |s: &Arc<Semaphore>| s.value() == 0,
    |s: &Arc<Semaphore>| s.statistics().tasks_waiting
);

lock_cancel_safety!(
    capacity_limiter_cancel_safety,
    CapacityLimiter::new(1),
    |c: &CapacityLimiter| {
        let c = c.clone();
        async move { c.acquire_on_behalf_of(Borrower::unique()).await }
    },
    |c: &CapacityLimiter| c.borrowed_tokens() == 1,
    |c: &CapacityLimiter| c.statistics().tasks_waiting
);

#[test]
fn rwlock_cancel_safety() {
    block_on_current(async {
        let lock = RwLock::new(());
        // Before blocking.
        assert!(run_cancelled(lock.write()).await.is_none());
        assert!(lock.try_write().is_ok());
        // A write handed over and dropped before running lets the queued reader in.
        let reader = lock.read().await.unwrap();
        let mut w = Box::pin(lock.write());
        let mut r = Box::pin(lock.read());
        assert!(poll_once(w.as_mut()).await.is_pending());
        assert!(poll_once(r.as_mut()).await.is_pending()); // queued behind the writer
        drop(reader); // hands the lock to the writer
        assert!(lock.statistics().writer);
        drop(w); // the writer never ran: passes on to the reader
        let g = r.await.unwrap();
        assert_eq!(lock.statistics().readers, 1);
        drop(g);
        let stats = lock.statistics();
        assert_eq!(
            (stats.readers, stats.writer, stats.readers_waiting),
            (0, false, 0)
        );
    });
}

#[test]
fn condition_wait_cancelled_while_blocked_reacquires_before_returning() {
    block_on_current(async {
        let cond = Arc::new(Condition::new(0u32));
        let scope = CancelScope::new();
        let (c2, s2) = (cond.clone(), scope.clone());
        let order = Arc::new(std::sync::Mutex::new(Vec::new()));
        let o2 = order.clone();
        nursery(|n| async move {
            let (c, o) = (c2.clone(), o2.clone());
            n.spawn(async move {
                let g = c.lock().await?;
                let out = s2.run(async { g.wait().await.map(drop) }).await;
                // Cancelled: the guard came back inside the error and was dropped there.
                assert!(out.is_none());
                o.lock().unwrap().push("waiter returned");
                Ok(())
            })?;
            wait_all_tasks_blocked().await?;
            assert_eq!(c2.statistics().tasks_waiting, 1);
            let mut g = c2.lock().await?;
            scope.cancel();
            wait_all_tasks_blocked().await?;
            // The waiter cannot return without the lock, which we hold.
            assert!(o2.lock().unwrap().is_empty());
            assert_eq!(c2.statistics().lock_statistics.tasks_waiting, 1);
            assert_eq!(c2.statistics().tasks_waiting, 0);
            *g += 1;
            o2.lock().unwrap().push("holder released");
            drop(g);
            wait_all_tasks_blocked().await?;
            Ok::<_, Error>(())
        })
        .await
        .unwrap();
        assert_eq!(
            *order.lock().unwrap(),
            ["holder released", "waiter returned"]
        );
        assert!(!cond.is_locked());

        // A wait dropped after it was notified and handed the lock passes the lock on.
        let g = cond.lock().await.unwrap();
        let mut wait = Box::pin(g.wait());
        assert!(poll_once(wait.as_mut()).await.is_pending()); // released the lock, parked
        assert!(!cond.is_locked());
        cond.lock().await.unwrap().notify_all(); // handed the lock on our release
        assert!(cond.is_locked());
        drop(wait);
        assert!(!cond.is_locked());
        assert_eq!(cond.statistics().lock_statistics.tasks_waiting, 0);
    });
}

#[test]
fn event_wait_cancelled_keeps_no_place() {
    block_on_current(async {
        let e = Event::new();
        let mut fut = Box::pin(e.wait());
        assert!(poll_once(fut.as_mut()).await.is_pending());
        assert_eq!(e.statistics().tasks_waiting, 1);
        drop(fut);
        assert_eq!(e.statistics().tasks_waiting, 0);
        assert!(run_cancelled(e.wait()).await.is_none());
    });
}
