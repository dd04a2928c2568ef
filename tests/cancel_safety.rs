//! Cancel safety of every primitive and of channels (principle 4: a cancelled operation leaves
//! no trace). Each operation is cancelled at every point where it can be:
//! - before blocking (its scope is already cancelled),
//! - while blocked (its scope is cancelled, or its future dropped),
//! - after it was handed a value but before it ran (its scope cancelled: it still completes,
//!   as in trio; its future dropped: the value passes on),
//! - after it completed without blocking but before it returned (dropped during its yield),
//!
//! and each test checks that no message, permit, token or lock was lost or leaked. The lock-like
//! primitives go through `testing::CancelInjection`, which visits each of these points in turn;
//! so do the newer operations, in `cancel_safety_more.rs`.

mod common;

use std::future::{poll_fn, Future};
use std::pin::{pin, Pin};
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use common::{block_on_current, block_on_trio_order, poll_once, run_cancelled};
use futures_core::Stream;
use trellis::channel::{bounded, unbounded};
use trellis::sync::{Borrower, CapacityLimiter, Condition, Event, Mutex, RwLock, Semaphore};
use trellis::testing::{wait_all_tasks_blocked, CancelInjection};
use trellis::{checkpoint, nursery, sleep, CancelScope, Error};

#[test]
fn recv_cancelled_at_every_point_loses_no_message() {
    block_on_trio_order(async {
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
///
/// The harness (`testing::CancelInjection`) runs a contended acquisition and cancels it at each
/// of its checkpoints, then drops it at each of its suspensions, and checks every time that the
/// resource ends free with nobody waiting. The operation takes the resource uncontended, lets
/// helper `a` queue up behind it and hands it over, then queues behind `a` with helper `b`
/// behind it, so that its points are:
/// - checkpoints 1 and 3: a take before it starts (the scope is already cancelled): nothing
///   taken;
/// - checkpoint 4: the contended take as it parks (cancelled while blocked): it leaves its place;
/// - drop points 1 and 2: the uncontended take dropped during its yield: released again;
/// - drop point 5: the contended take dropped while blocked: no place kept;
/// - drop point 6: handed over by `a`, dropped before running: passes on to `b`;
/// - drop points 7 and 8: the nursery waiting for `b`, which was handed the resource: `b` is
///   dropped with it, and what it was handed is released.
///
/// The harness cannot place a cancellation between a hand-off and the poll that returns it (no
/// checkpoint runs there); that case stays written out below.
fn lock_cancel_safety<L, G, E, Fut>(
    make: fn() -> L,
    take: fn(L) -> Fut,
    held: fn(&L) -> bool,
    waiting: fn(&L) -> usize,
) where
    L: Clone + Send + Sync + 'static,
    Fut: Future<Output = Result<G, E>> + Send + 'static,
    G: Send + 'static,
    E: Into<Error> + trellis::AsCancelled + Send + 'static,
{
    let report = CancelInjection::new()
        .check(
            make,
            move |lock| async move {
                nursery(|n| async move {
                    let first = take(lock.clone()).await.map_err(Into::into)?;
                    let l = lock.clone();
                    n.spawn(async move {
                        let guard = take(l).await.map_err(Into::into)?; // helper a
                        sleep(Duration::from_millis(1)).await?;
                        drop(guard);
                        Ok::<_, Error>(())
                    })?;
                    let l = lock.clone();
                    n.spawn(async move {
                        checkpoint().await?; // queues behind the operation's second take
                        drop(take(l).await.map_err(Into::into)?); // helper b
                        Ok::<_, Error>(())
                    })?;
                    checkpoint().await?; // a queues up
                    drop(first); // handed to a
                    drop(take(lock).await.map_err(Into::into)?);
                    Ok::<_, Error>(())
                })
                .await?;
                Ok::<_, Error>(())
            },
            move |lock, _| async move {
                assert!(!held(&lock), "the resource is still held");
                assert_eq!(waiting(&lock), 0, "a waiter was left behind");
            },
        )
        .unwrap();
    assert_eq!((report.checkpoints, report.suspensions), (4, 4));

    block_on_current(async {
        let lock = make();
        // Blocked, then handed the resource and its scope cancelled before it ran: the take
        // completed (trio's rule), so it returns the guard, and dropping that releases it.
        let holder = take(lock.clone()).await.map_err(Into::into).unwrap();
        let scope = CancelScope::new();
        let (l2, s2) = (lock.clone(), scope.clone());
        let got = nursery(|n| async move {
            let l = l2.clone();
            let h = n.spawn(async move {
                let out = s2.run(take(l)).await;
                Ok(matches!(out, Some(Ok(_))))
            })?;
            wait_all_tasks_blocked().await?;
            assert_eq!(waiting(&l2), 1);
            drop(holder); // handed over
            scope.cancel(); // before the waiter runs
            h.await
        })
        .await
        .unwrap();
        assert!(got);
        assert!(!held(&lock));
        assert_eq!(waiting(&lock), 0);
    });
}

#[test]
fn mutex_cancel_safety() {
    lock_cancel_safety(
        || Arc::new(Mutex::new(())),
        |m| m.lock_owned(),
        |m| m.is_locked(),
        |m| m.statistics().tasks_waiting,
    );
}

#[test]
fn semaphore_cancel_safety() {
    lock_cancel_safety(
        || Arc::new(Semaphore::new(1)),
        |s| s.acquire_owned(),
        |s| s.value() == 0,
        |s| s.statistics().tasks_waiting,
    );
}

#[test]
fn capacity_limiter_cancel_safety() {
    lock_cancel_safety(
        || CapacityLimiter::new(1),
        |c| async move { c.acquire_on_behalf_of(Borrower::unique()).await },
        |c| c.borrowed_tokens() == 1,
        |c| c.statistics().tasks_waiting,
    );
}

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
