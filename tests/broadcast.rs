//! `channel::broadcast`: every receiver sees every message from a bounded ring; `send` never
//! waits and overwrites; a receiver that falls behind gets `Lagged(n)` with the exact count.
//! `recv` is a checkpoint (principle 3, C1) and cancel-safe (principle 4: a cancelled or dropped
//! `recv` consumes nothing).

mod common;

use std::sync::{Arc, Mutex};

use common::*;
use trellis::channel::broadcast::{self, RecvError};
use trellis::{move_on_after, nursery, sleep, Error};

/// Receives until the end, recording messages and lags.
async fn drain(rx: &mut broadcast::Receiver<u32>) -> Vec<String> {
    let mut got = Vec::new();
    loop {
        match rx.recv().await {
            Ok(v) => got.push(v.to_string()),
            Err(RecvError::Lagged(n)) => got.push(format!("lagged {n}")),
            Err(RecvError::EndOfChannel) => return got,
            Err(RecvError::Cancelled(c)) => panic!("unexpected {c}"),
        }
    }
}

// Every receiver sees every message, in order, then the end; on both flavours.
#[test]
fn every_receiver_sees_every_message_in_order() {
    for flavor in FLAVORS {
        autojump_runtime(flavor).block_on(async {
            let (tx, rx) = broadcast::channel::<u32>(8);
            let results = Arc::new(Mutex::new(Vec::new()));
            let r = results.clone();
            nursery(|n| async move {
                for _ in 0..20 {
                    let (mut rx, results) = (rx.resubscribe(), r.clone());
                    n.spawn(async move {
                        let got = drain(&mut rx).await;
                        results.lock().unwrap().push(got);
                        Ok(())
                    })?;
                }
                drop(rx);
                for v in 1..=5 {
                    assert_eq!(tx.send(v).unwrap(), 20);
                    sleep(ms(1)).await?;
                }
                Ok::<_, Error>(())
            })
            .await
            .unwrap();
            let results = results.lock().unwrap();
            assert_eq!(results.len(), 20);
            assert!(results.iter().all(|got| got == &["1", "2", "3", "4", "5"]));
        });
    }
}

// Principle 3: `recv` yields when a message is there; C1: it fails in a cancelled scope even
// then, and (principle 4) the message is still there afterwards.
#[test]
fn recv_is_a_checkpoint_and_a_cancelled_one_consumes_nothing() {
    block_on_trio_order(async {
        let (tx, mut rx) = broadcast::channel(4);
        tx.send("m").unwrap();
        assert!(run_cancelled(rx.recv()).await.is_none());
        assert_eq!(rx.len(), 1);
        assert_eq!(assert_yields(rx.recv()).await, Ok("m"));
        assert_eq!(rx.len(), 0);
    });
}

// Principle 4: cancelled while waiting, woken by a send and dropped before it ran, or dropped
// during its schedule point: the receiver is where it was.
#[test]
fn cancelled_or_dropped_recv_consumes_nothing() {
    block_on_trio_order(async {
        let t0 = trellis::now();
        let (tx, mut rx) = broadcast::channel(4);
        assert!(move_on_after(secs(1), rx.recv()).await.is_none());
        assert_eq!(since(t0), secs(1));
        {
            let mut waiting = Box::pin(rx.recv());
            assert!(poll_once(waiting.as_mut()).await.is_pending()); // parked
            tx.send(1).unwrap(); // wakes it...
        } // ...and it is dropped before it ran
        assert_eq!(rx.len(), 1);
        {
            let mut ready = Box::pin(rx.recv());
            assert!(poll_once(ready.as_mut()).await.is_pending()); // its schedule point
        }
        assert_eq!(rx.len(), 1);
        tx.send(2).unwrap();
        assert_eq!(rx.recv().await, Ok(1));
        assert_eq!(rx.recv().await, Ok(2));
    });
}

// A slow receiver gets `Lagged(n)` with the number of messages overwritten before it looked,
// then continues from the oldest kept; a receiver that keeps up sees all of them.
#[test]
fn a_slow_receiver_gets_lagged_with_the_exact_count() {
    block_on_current(async {
        let (tx, mut slow) = broadcast::channel::<u32>(3);
        let mut fast = tx.subscribe();
        let mut fast_got = Vec::new();
        for v in 0..10 {
            tx.send(v).unwrap();
            fast_got.push(fast.recv().await.unwrap());
        }
        assert_eq!(fast_got, (0..10).collect::<Vec<_>>());
        assert_eq!(slow.len(), 3);
        assert_eq!(slow.recv().await, Err(RecvError::Lagged(7)));
        for v in 7..10 {
            assert_eq!(slow.recv().await, Ok(v));
        }
        for v in 10..15 {
            tx.send(v).unwrap();
        }
        assert_eq!(slow.recv().await, Err(RecvError::Lagged(2)));
        drop(tx);
        assert_eq!(drain(&mut slow).await, ["12", "13", "14"]);
        assert_eq!(
            drain(&mut fast).await,
            ["lagged 2", "12", "13", "14"],
            "the fast receiver stopped at 10 and lagged too"
        );
    });
}

// Close semantics: dropping one sender clone ends nothing; after the last, receivers drain what
// is kept, then get `EndOfChannel`; a parked receiver is woken by the drop.
#[test]
fn the_last_sender_ends_the_channel_after_the_kept_messages() {
    block_on_current(async {
        let t0 = trellis::now();
        let (tx, mut rx) = broadcast::channel::<u32>(4);
        let tx2 = tx.clone();
        tx.send(1).unwrap();
        drop(tx);
        tx2.send(2).unwrap();
        let mut parked = tx2.subscribe();
        nursery(|n| async move {
            n.spawn(async move {
                sleep(secs(2)).await?;
                drop(tx2);
                Ok(())
            })?;
            assert_eq!(drain(&mut parked).await, Vec::<String>::new());
            assert_eq!(since(t0), secs(2));
            Ok::<_, Error>(())
        })
        .await
        .unwrap();
        assert_eq!(drain(&mut rx).await, ["1", "2"]);
        assert_eq!(rx.recv().await, Err(RecvError::EndOfChannel));
    });
}

// `send` without receivers hands the value back (BrokenResource) and keeps nothing; a receiver
// that subscribes later starts at the end.
#[test]
fn send_without_receivers_fails_and_keeps_nothing() {
    let (tx, rx) = broadcast::channel(4);
    tx.send(1).unwrap();
    drop(rx);
    assert_eq!(tx.receiver_count(), 0);
    let err = tx.send(2).unwrap_err();
    assert!(matches!(err.reason(), Error::BrokenResource));
    assert_eq!(err.into_inner(), 2);
    let rx = tx.subscribe();
    assert!(rx.is_empty());
    tx.send(3).unwrap();
    assert_eq!(rx.len(), 1);
}

// Edge values: capacity 0 is refused at creation with a clear message; `usize::MAX` is an
// unbounded ring (no up-front allocation, no lag).
#[test]
fn capacity_edges() {
    let msg = panic_text(|| broadcast::channel::<u8>(0));
    assert!(
        msg.starts_with("broadcast::channel: capacity must be at least 1"),
        "{msg}"
    );
    block_on_current(async {
        let (tx, mut rx) = broadcast::channel::<u32>(usize::MAX);
        for v in 0..10_000 {
            tx.send(v).unwrap();
        }
        assert_eq!(rx.len(), 10_000);
        drop(tx);
        let mut next = 0;
        while let Ok(v) = rx.recv().await {
            assert_eq!(v, next);
            next += 1;
        }
        assert_eq!(next, 10_000);
    });
    block_on_current(async {
        // Capacity 1: only the last message is kept.
        let (tx, mut rx) = broadcast::channel(1);
        tx.send('a').unwrap();
        tx.send('b').unwrap();
        assert_eq!(rx.recv().await, Err(RecvError::Lagged(1)));
        assert_eq!(rx.recv().await, Ok('b'));
    });
}

// `resubscribe` makes a receiver that starts at the end; the original keeps its position.
#[test]
fn resubscribe_starts_at_the_end() {
    block_on_current(async {
        let (tx, mut rx) = broadcast::channel(4);
        tx.send(1).unwrap();
        let mut fresh = rx.resubscribe();
        tx.send(2).unwrap();
        assert_eq!(tx.receiver_count(), 2);
        assert_eq!(rx.recv().await, Ok(1));
        assert_eq!(rx.recv().await, Ok(2));
        assert_eq!(fresh.recv().await, Ok(2));
    });
}

// A recv cancelled by its scope is absorbed by that scope (the error carries the
// cancellation), and the receiver keeps its place among others that go on receiving.
#[test]
fn a_cancelled_receiver_keeps_its_place_among_others() {
    block_on_current(async {
        let t0 = trellis::now();
        let (tx, mut rx) = broadcast::channel::<u32>(4);
        let mut other = tx.subscribe();
        nursery(|n| async move {
            n.spawn(async move {
                sleep(secs(2)).await?;
                tx.send(7).unwrap();
                Ok(())
            })?;
            let out = move_on_after(secs(1), rx.recv()).await;
            assert!(out.is_none());
            assert_eq!(other.recv().await, Ok(7));
            assert_eq!(since(t0), secs(2));
            assert_eq!(rx.recv().await, Ok(7));
            Ok::<_, Error>(())
        })
        .await
        .unwrap();
    });
}

// Principle 4 across threads: with a small ring and receivers racing the sender, every message
// is either received (in increasing order) or counted in a `Lagged(n)`: nothing is lost or seen
// twice.
#[test]
fn across_threads_every_message_is_received_or_counted_as_lagged() {
    for _ in 0..10 {
        multi_thread(4).block_on(async {
            const TOTAL: u32 = 2_000;
            let (tx, rx) = broadcast::channel::<u32>(8);
            let results = Arc::new(Mutex::new(Vec::new()));
            let r = results.clone();
            nursery(|n| async move {
                for _ in 0..4 {
                    let (mut rx, results) = (rx.resubscribe(), r.clone());
                    n.spawn(async move {
                        let (mut received, mut lagged, mut last) = (0u64, 0u64, None);
                        loop {
                            match rx.recv().await {
                                Ok(v) => {
                                    assert!(last.is_none_or(|l| v > l), "{v} after {last:?}");
                                    last = Some(v);
                                    received += 1;
                                }
                                Err(RecvError::Lagged(k)) => lagged += k,
                                Err(RecvError::EndOfChannel) => break,
                                Err(RecvError::Cancelled(c)) => return Err(c.into()),
                            }
                        }
                        results.lock().unwrap().push((received, lagged, last));
                        Ok(())
                    })?;
                }
                drop(rx);
                for v in 0..TOTAL {
                    tx.send(v).unwrap();
                    if v % 3 == 0 {
                        trellis::checkpoint().await?;
                    }
                }
                Ok::<_, Error>(())
            })
            .await
            .unwrap();
            for &(received, lagged, last) in results.lock().unwrap().iter() {
                assert_eq!(received + lagged, u64::from(TOTAL));
                assert_eq!(last, Some(TOTAL - 1));
            }
        });
    }
}

// The same across threads with a ring that holds every message, so nothing can lag: the
// receivers on other workers take the channel's state turn about with the sender, once per
// message, and each still receives every message once, in order.
#[test]
fn across_threads_with_room_for_all_every_receiver_gets_every_message_in_order() {
    const TOTAL: u32 = 20_000;
    const RECEIVERS: usize = 3;
    let results = multi_thread(4).block_on(async {
        let (tx, rx) = broadcast::channel::<u32>(TOTAL as usize);
        nursery(|n| async move {
            let results = Arc::new(Mutex::new(Vec::new()));
            for _ in 0..RECEIVERS {
                let (mut rx, results) = (rx.resubscribe(), results.clone());
                n.spawn(async move {
                    let mut got = Vec::new();
                    loop {
                        match rx.recv().await {
                            Ok(v) => got.push(v),
                            Err(RecvError::EndOfChannel) => break,
                            Err(RecvError::Lagged(k)) => panic!("lagged by {k} with room for all"),
                            Err(RecvError::Cancelled(c)) => return Err(c.into()),
                        }
                    }
                    results.lock().unwrap().push(got);
                    Ok(())
                })?;
            }
            drop(rx);
            for v in 0..TOTAL {
                tx.send(v).unwrap();
                if v % 64 == 0 {
                    trellis::checkpoint().await?;
                }
            }
            drop(tx);
            Ok::<_, Error>(results)
        })
        .await
        .unwrap()
    });
    let results = results.lock().unwrap();
    assert_eq!(results.len(), RECEIVERS);
    let expected: Vec<u32> = (0..TOTAL).collect();
    for got in results.iter() {
        assert_eq!(*got, expected);
    }
}
