//! The one-shot channel: one value, sent once, received once; `recv` is a checkpoint and
//! cancel-safe (principle 4): cancelled while waiting, or dropped after it took the value but
//! before it returned it, the value stays for the next `recv`.

mod common;

use common::*;
use trellis::channel::oneshot;
use trellis::testing::assert_checkpoints;
use trellis::{move_on_after, nursery, sleep, Error};

#[test]
fn a_value_sent_is_received_once() {
    for flavor in FLAVORS {
        autojump_runtime(flavor).block_on(async move {
            let t0 = trellis::now();
            let (tx, mut rx) = oneshot::<&str>();
            nursery(|n| async move {
                n.spawn(async move {
                    sleep(secs(1)).await?;
                    tx.send("reply").unwrap();
                    Ok(())
                })?;
                assert_eq!(rx.recv().await?, "reply");
                assert_eq!(since(t0), secs(1));
                assert!(matches!(rx.recv().await, Err(Error::EndOfChannel)));
                Ok::<_, Error>(())
            })
            .await
            .unwrap();
        });
    }
}

// principle 3: a recv whose value is already there still yields once.
#[test]
fn recv_is_a_checkpoint() {
    block_on_current(async {
        let (tx, mut rx) = oneshot::<u8>();
        tx.send(1).unwrap();
        assert_eq!(assert_checkpoints(rx.recv()).await.unwrap(), 1);
    });
}

// principle 4: cancelled while waiting, or dropped holding the value during its schedule
// point: the value stays in the channel.
#[test]
fn a_cancelled_or_dropped_recv_consumes_nothing() {
    block_on_trio_order(async {
        let (tx, mut rx) = oneshot::<u8>();
        assert!(move_on_after(secs(1), rx.recv()).await.is_none());
        tx.send(7).unwrap();
        {
            let mut recv = Box::pin(rx.recv());
            // Takes the value, then yields: dropped there, it must give the value back.
            assert!(poll_once(recv.as_mut()).await.is_pending());
        }
        assert_eq!(rx.recv().await.unwrap(), 7);
    });
}

// A dropped sender ends the wait with BrokenResource; a dropped receiver hands the value back.
#[test]
fn dropped_halves_are_reported_not_hung() {
    block_on_current(async {
        let t0 = trellis::now();
        let (tx, mut rx) = oneshot::<u8>();
        nursery(|n| async move {
            n.spawn(async move {
                sleep(secs(2)).await?;
                drop(tx);
                Ok(())
            })?;
            assert!(matches!(rx.recv().await, Err(Error::BrokenResource)));
            Ok::<_, Error>(())
        })
        .await
        .unwrap();
        assert_eq!(since(t0), secs(2));
        let (tx, rx) = oneshot::<String>();
        drop(rx);
        assert!(tx.is_closed());
        assert_eq!(tx.send("back".into()), Err("back".to_string()));
    });
}

/// Principle 3: a `recv` whose value is already there still lets other tasks run, and returns
/// the value after it.
#[test]
fn a_ready_recv_is_a_schedule_point() {
    block_on_trio_order(async {
        let (tx, mut rx) = oneshot();
        tx.send(3).unwrap();
        assert_eq!(assert_yields(rx.recv()).await.unwrap(), 3);
    });
}
