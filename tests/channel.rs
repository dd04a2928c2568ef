//! Channels: trio's test_channel.py scenarios, ported with their asserted values, orders and
//! statistics; contract principle 3 (checkpoints) and principle 4 (nothing lost).

mod common;

use std::future::poll_fn;
use std::pin::Pin;
use std::sync::{Arc, Mutex as StdMutex};
use std::time::Duration;

use common::{assert_yields, block_on_current, block_on_trio_order};
use futures_core::Stream;
use trellis::channel::{bounded, unbounded, ChannelStatistics, Receiver, Sender};
use trellis::testing::wait_all_tasks_blocked;
use trellis::{nursery, CancelScope, Error};

async fn next<T>(rx: &mut Receiver<T>) -> Option<Result<T, Error>> {
    poll_fn(|cx| Pin::new(&mut *rx).poll_next(cx)).await
}

async fn collect<T>(mut rx: Receiver<T>) -> Vec<T> {
    let mut out = Vec::new();
    while let Some(item) = next(&mut rx).await {
        out.push(item.unwrap());
    }
    out
}

fn reason<T>(r: Result<(), trellis::channel::SendError<T>>) -> Error {
    r.unwrap_err().reason().clone()
}

#[test]
fn channel_basics() {
    // trio: test_channel
    block_on_trio_order(async {
        let (s, r) = bounded::<&str>(2);
        s.try_send("1").unwrap();
        assert_yields(s.send("2")).await.unwrap();
        assert!(matches!(reason(s.try_send("x")), Error::WouldBlock));

        assert_eq!(assert_yields(r.recv()).await.unwrap(), "1");
        assert_eq!(r.try_recv().unwrap(), "2");
        assert!(matches!(r.try_recv(), Err(Error::WouldBlock)));

        s.try_send("last").unwrap();
        s.close();
        assert!(matches!(reason(s.send("too late").await), Error::Closed));
        assert!(matches!(reason(s.try_send("too late")), Error::Closed));
        // trio raises on cloning a closed handle; here the clone is closed too.
        assert!(s.clone().is_closed());
        s.close();

        assert_eq!(r.try_recv().unwrap(), "last");
        assert!(matches!(r.recv().await, Err(Error::EndOfChannel)));
        r.close();
        assert!(matches!(r.recv().await, Err(Error::Closed)));
        assert!(matches!(r.try_recv(), Err(Error::Closed)));
        r.close();
    });
}

#[test]
fn timed_out_receive_leaves_the_channel_usable() {
    // trio: test_553
    block_on_current(async {
        let (s, r) = bounded::<&str>(1);
        let scope = CancelScope::with_timeout(Duration::from_secs(10));
        assert!(scope.run(r.recv()).await.is_none());
        assert!(scope.cancelled_caught());
        s.send("Test for PR #553").await.unwrap();
        assert_eq!(r.try_recv().unwrap(), "Test for PR #553");
    });
}

#[test]
fn channel_multiple_producers() {
    // trio: test_channel_multiple_producers
    block_on_current(async {
        let (send, receive) = bounded::<u32>(0);
        let got = nursery(|n| async move {
            for i in 0..10 {
                let tx = send.clone();
                n.spawn(async move {
                    for j in 3 * i..3 * (i + 1) {
                        tx.send(j).await?;
                    }
                    Ok(())
                })?;
            }
            drop(send);
            Ok::<_, Error>(collect(receive).await)
        })
        .await
        .unwrap();
        let mut got = got;
        got.sort();
        assert_eq!(got, (0..30).collect::<Vec<_>>());
    });
}

#[test]
fn channel_multiple_consumers() {
    // trio: test_channel_multiple_consumers
    block_on_current(async {
        let receivers = Arc::new(StdMutex::new(Vec::new()));
        let received = Arc::new(StdMutex::new(Vec::new()));
        let (rs, rv) = (receivers.clone(), received.clone());
        nursery(|n| async move {
            let (send, receive) = bounded::<u32>(1);
            for i in 0..5 {
                let mut rx = receive.clone();
                let (rs, rv) = (rs.clone(), rv.clone());
                n.spawn(async move {
                    while let Some(v) = next(&mut rx).await {
                        rs.lock().unwrap().push(i);
                        rv.lock().unwrap().push(v?);
                    }
                    Ok(())
                })?;
            }
            drop(receive);
            wait_all_tasks_blocked().await?;
            for i in 0..10 {
                send.send(i).await?;
            }
            Ok::<_, Error>(())
        })
        .await
        .unwrap();
        let mut who = receivers.lock().unwrap().clone();
        who.sort();
        who.dedup();
        assert_eq!(who, [0, 1, 2, 3, 4]);
        let mut got = received.lock().unwrap().clone();
        assert_eq!(got.len(), 10);
        got.sort();
        assert_eq!(got, (0..10).collect::<Vec<_>>());
    });
}

async fn send_block(s: Arc<Sender<()>>, expect: fn(&Error) -> bool) -> Result<(), Error> {
    let err = s.send(()).await.unwrap_err();
    assert!(expect(err.reason()), "unexpected {err:?}");
    Ok(())
}

#[test]
fn close_basics() {
    // trio: test_close_basics and test_close_sync (close is synchronous here)
    block_on_current(async {
        // Closing the sender: its blocked send gets Closed...
        let (s, r) = bounded::<()>(0);
        let s = Arc::new(s);
        let s2 = s.clone();
        nursery(|n| async move {
            n.spawn(send_block(s2.clone(), |e| matches!(e, Error::Closed)))?;
            wait_all_tasks_blocked().await?;
            s2.close();
            Ok::<_, Error>(())
        })
        .await
        .unwrap();
        // ...and it's persistent.
        assert!(matches!(reason(s.try_send(())), Error::Closed));
        assert!(matches!(reason(s.send(()).await), Error::Closed));
        // And receive gets EndOfChannel.
        assert!(matches!(r.try_recv(), Err(Error::EndOfChannel)));
        assert!(matches!(r.recv().await, Err(Error::EndOfChannel)));

        // Closing the receiver: a blocked send gets BrokenResource...
        let (s, r) = bounded::<()>(0);
        let s = Arc::new(s);
        let s2 = s.clone();
        nursery(|n| async move {
            n.spawn(send_block(s2, |e| matches!(e, Error::BrokenResource)))?;
            wait_all_tasks_blocked().await?;
            r.close();
            Ok::<_, Error>(())
        })
        .await
        .unwrap();
        // ...and it's persistent.
        assert!(matches!(reason(s.try_send(())), Error::BrokenResource));
        assert!(matches!(reason(s.send(()).await), Error::BrokenResource));

        // Closing the receiver: its own blocked receive gets Closed.
        let (_s, r) = bounded::<i32>(0);
        let r = Arc::new(r);
        let r2 = r.clone();
        nursery(|n| async move {
            let r3 = r2.clone();
            n.spawn(async move {
                assert!(matches!(r3.recv().await, Err(Error::Closed)));
                Ok(())
            })?;
            wait_all_tasks_blocked().await?;
            r2.close();
            Ok::<_, Error>(())
        })
        .await
        .unwrap();
        assert!(matches!(r.try_recv(), Err(Error::Closed)));
        assert!(matches!(r.recv().await, Err(Error::Closed)));
    });
}

#[test]
fn receive_channel_clone_and_close() {
    // trio: test_receive_channel_clone_and_close
    block_on_current(async {
        let (s, r) = bounded::<()>(10);
        let r2 = r.clone();
        let r3 = r.clone();
        s.try_send(()).unwrap();
        r.close();
        r2.close();
        assert!(r.clone().is_closed());
        assert!(r2.clone().is_closed());
        // Can still send: r3 is open.
        s.try_send(()).unwrap();
        r3.close();
        // Now the receiving side is really closed.
        assert!(matches!(reason(s.try_send(())), Error::BrokenResource));
        assert_eq!(s.statistics().current_buffer_used, 0); // buffered messages were dropped
    });
}

#[test]
fn close_one_send_handle_wakes_only_its_waiters() {
    // trio: test_close_multiple_send_handles
    block_on_current(async {
        let (s1, r) = bounded::<&str>(0);
        let s1 = Arc::new(s1);
        let s2 = s1.clone();
        let s2 = Arc::new((*s2).clone());
        nursery(|n| async move {
            let a = s1.clone();
            n.spawn(async move {
                assert!(matches!(reason(a.send("nope").await), Error::Closed));
                Ok(())
            })?;
            n.spawn(async move {
                s2.send("ok").await?;
                Ok(())
            })?;
            wait_all_tasks_blocked().await?;
            s1.close();
            assert_eq!(r.recv().await?, "ok");
            Ok::<_, Error>(())
        })
        .await
        .unwrap();
    });
}

#[test]
fn close_one_receive_handle_wakes_only_its_waiters() {
    // trio: test_close_multiple_receive_handles
    block_on_current(async {
        let (s, r1) = bounded::<&str>(0);
        let r2 = r1.clone();
        let r1 = Arc::new(r1);
        nursery(|n| async move {
            let a = r1.clone();
            n.spawn(async move {
                assert!(matches!(a.recv().await, Err(Error::Closed)));
                Ok(())
            })?;
            n.spawn(async move {
                assert_eq!(r2.recv().await?, "ok");
                Ok(())
            })?;
            wait_all_tasks_blocked().await?;
            r1.close();
            s.send("ok").await?;
            Ok::<_, Error>(())
        })
        .await
        .unwrap();
    });
}

#[test]
fn unbounded_capacity() {
    // trio: test_inf_capacity
    block_on_current(async {
        let (send, receive) = unbounded::<u32>();
        for i in 0..10 {
            send.try_send(i).unwrap();
        }
        drop(send);
        assert_eq!(collect(receive).await, (0..10).collect::<Vec<_>>());
    });
}

#[test]
fn channel_statistics() {
    // trio: test_statistics
    block_on_current(async {
        let (s, r) = bounded::<()>(2);
        assert_eq!(s.statistics(), r.statistics());
        let stats: ChannelStatistics = s.statistics();
        assert_eq!(stats.current_buffer_used, 0);
        assert_eq!(stats.max_buffer_size, Some(2));
        assert_eq!(stats.open_send_channels, 1);
        assert_eq!(stats.open_receive_channels, 1);
        assert_eq!(stats.tasks_waiting_send, 0);
        assert_eq!(stats.tasks_waiting_receive, 0);
        assert_eq!(stats.peak_buffer_used, 0);
        s.try_send(()).unwrap();
        assert_eq!(s.statistics().current_buffer_used, 1);
        assert_eq!(s.statistics().peak_buffer_used, 1);

        let s2 = Arc::new(s.clone());
        assert_eq!(s.statistics().open_send_channels, 2);
        s.close();
        assert_eq!(s2.statistics().open_send_channels, 1);

        let r2 = r.clone();
        assert_eq!(s2.statistics().open_receive_channels, 2);
        r2.close();
        assert_eq!(s2.statistics().open_receive_channels, 1);

        let s3 = s2.clone();
        nursery(|n| async move {
            s3.try_send(()).unwrap(); // fill up the buffer
            assert_eq!(s3.statistics().current_buffer_used, 2);
            assert_eq!(s3.statistics().peak_buffer_used, 2);
            for _ in 0..2 {
                let s = s3.clone();
                n.spawn(async move {
                    s.send(()).await?;
                    Ok(())
                })?;
            }
            wait_all_tasks_blocked().await?;
            assert_eq!(s3.statistics().tasks_waiting_send, 2);
            n.cancel();
            Ok::<_, Error>(())
        })
        .await
        .unwrap();
        assert_eq!(s.statistics().tasks_waiting_send, 0);

        // Empty out the buffer again.
        while r.try_recv().is_ok() {}
        // Draining the buffer doesn't reset the high-water mark.
        assert_eq!(s.statistics().current_buffer_used, 0);
        assert_eq!(s.statistics().peak_buffer_used, 2);

        let r = Arc::new(r);
        let r3 = r.clone();
        nursery(|n| async move {
            let r = r3.clone();
            n.spawn(async move {
                r.recv().await?;
                Ok(())
            })?;
            wait_all_tasks_blocked().await?;
            assert_eq!(r3.statistics().tasks_waiting_receive, 1);
            n.cancel();
            Ok::<_, Error>(())
        })
        .await
        .unwrap();
        assert_eq!(s.statistics().tasks_waiting_receive, 0);
        assert_eq!(unbounded::<()>().0.statistics().max_buffer_size, None);
    });
}

#[test]
fn channel_fairness() {
    // trio: test_channel_fairness
    block_on_current(async {
        // We can remove an item we just sent, and send one back in after, if nobody waits.
        let (s, r) = bounded::<i32>(1);
        s.try_send(1).unwrap();
        assert_eq!(r.try_recv().unwrap(), 1);
        s.try_send(2).unwrap();
        assert_eq!(r.try_recv().unwrap(), 2);

        // But if someone else is waiting to receive, they "own" the item we send, so we
        // can't receive it (even though we run first).
        let result = Arc::new(StdMutex::new(None));
        let r = Arc::new(r);
        let (res, r2) = (result.clone(), r.clone());
        nursery(|n| async move {
            let rr = r2.clone();
            n.spawn(async move {
                *res.lock().unwrap() = Some(rr.recv().await?);
                Ok(())
            })?;
            wait_all_tasks_blocked().await?;
            s.try_send(2).unwrap();
            assert!(matches!(r2.try_recv(), Err(Error::WouldBlock)));
            Ok::<_, Error>(())
        })
        .await
        .unwrap();
        assert_eq!(*result.lock().unwrap(), Some(2));

        // And the same for send: if we free up a space, we can't immediately send something in
        // it if someone is already waiting to do that.
        let (s, r) = bounded::<i32>(1);
        s.try_send(1).unwrap();
        assert!(matches!(reason(s.try_send(0)), Error::WouldBlock));
        let s = Arc::new(s);
        nursery(|n| async move {
            let ss = s.clone();
            n.spawn(async move {
                ss.send(2).await?;
                Ok(())
            })?;
            wait_all_tasks_blocked().await?;
            assert_eq!(r.try_recv().unwrap(), 1);
            assert!(matches!(reason(s.try_send(3)), Error::WouldBlock));
            assert_eq!(r.recv().await?, 2);
            Ok::<_, Error>(())
        })
        .await
        .unwrap();
    });
}

#[test]
fn rendezvous_channel() {
    // trio: test_unbuffered
    block_on_trio_order(async {
        let (s, r) = bounded::<i32>(0);
        assert!(matches!(r.try_recv(), Err(Error::WouldBlock)));
        assert!(matches!(reason(s.try_send(1)), Error::WouldBlock));
        let s2 = s.clone(); // `s` stays open: the channel must not end
        nursery(|n| async move {
            n.spawn(async move {
                assert_yields(s2.send(1)).await?;
                Ok(())
            })?;
            assert_eq!(assert_yields(r.recv()).await?, 1);
            assert!(matches!(r.try_recv(), Err(Error::WouldBlock)));
            Ok::<_, Error>(())
        })
        .await
        .unwrap();
        drop(s);
    });
}

#[test]
fn stream_yields_cancellation_as_an_item_and_ends_at_end_of_channel() {
    block_on_current(async {
        let (s, mut r) = bounded::<i32>(1);
        let scope = CancelScope::new();
        scope.cancel();
        let item = scope.run(async { next(&mut r).await.unwrap() }).await;
        assert!(item.is_none(), "the scope absorbed the cancellation item");
        s.try_send(5).unwrap();
        assert_eq!(next(&mut r).await.unwrap().unwrap(), 5);
        drop(s);
        assert!(next(&mut r).await.is_none());
    });
}

#[test]
fn send_error_converts_and_is_seen_as_cancellation() {
    block_on_current(async {
        let (s, _r) = bounded::<String>(0);
        let out = trellis::move_on_after(Duration::from_secs(1), async {
            s.send("kept".to_owned()).await?;
            Ok::<_, Error>(())
        })
        .await;
        assert!(
            out.is_none(),
            "the scope recognised its cancellation in the SendError"
        );
        let scope = CancelScope::new();
        scope.cancel();
        let err = scope
            .run(async { Ok::<_, Error>(s.send("back".to_owned()).await) })
            .await
            .unwrap()
            .unwrap()
            .unwrap_err();
        assert!(matches!(err.reason(), Error::Cancelled(_)));
        assert_eq!(err.into_inner(), "back");
    });
}

// tokio's `Notify` on trellis is a channel of capacity 1 (docs/from-tokio.md): `try_send(())`
// is `notify_one` (a wake with no waiter is stored, and wakes coalesce into that one permit),
// `recv` is `notified` (a cancel-safe checkpoint: a cancelled wait takes no permit).
#[test]
fn a_capacity_one_channel_serves_as_tokios_notify() {
    block_on_current(async {
        let (notify, notified) = bounded::<()>(1);
        // Two wakes before anyone waits: one permit is kept, the second coalesces into it.
        assert!(notify.try_send(()).is_ok());
        assert!(matches!(reason(notify.try_send(())), Error::WouldBlock));
        notified.recv().await.unwrap();
        // A cancelled wait consumes nothing: a stored wake stays for the next wait.
        notify.try_send(()).unwrap();
        let scope = CancelScope::new();
        scope.cancel();
        assert!(scope.run(notified.recv()).await.is_none());
        assert_eq!(notified.statistics().current_buffer_used, 1);
        notified.recv().await.unwrap();
        // A wake given while a task waits goes to it.
        let got = nursery(|n| {
            let notified = notified.clone();
            async move {
                let waiter = n.spawn(async move { notified.recv().await })?;
                wait_all_tasks_blocked().await?;
                notify.try_send(()).unwrap();
                waiter.await
            }
        })
        .await;
        assert!(got.is_ok());
        assert_eq!(notified.statistics().current_buffer_used, 0);
    });
}
