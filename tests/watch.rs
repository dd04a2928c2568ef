//! `channel::watch`: one value, many receivers that see the latest of it. `changed` is a
//! checkpoint (principle 3, C1) and cancel-safe (principle 4: a cancelled or dropped `changed`
//! marks nothing seen); the end of the sender is reported after the last value.

mod common;

use common::*;
use trellis::channel::watch;
use trellis::{move_on_after, nursery, sleep, Error};

// Receivers see the latest value, not every value: two sends before they run count as one
// change. Each receiver sees each later change once, then the end.
#[test]
fn receivers_see_the_latest_value_then_the_end() {
    block_on_current(async {
        let t0 = trellis::now();
        let (tx, rx) = watch::channel(0u32);
        let log = Log::new();
        let l = log.clone();
        nursery(|n| async move {
            for id in 0..3 {
                let (mut rx, log) = (rx.clone(), l.clone());
                n.spawn(async move {
                    loop {
                        match rx.changed().await {
                            Ok(()) => {
                                let v = *rx.borrow_and_update();
                                log.push(format!("r{id}: {v} at {}", since(t0).as_secs()));
                            }
                            Err(Error::EndOfChannel) => {
                                log.push(format!("r{id}: end at {}", since(t0).as_secs()));
                                return Ok(());
                            }
                            Err(e) => return Err(e),
                        }
                    }
                })?;
            }
            drop(rx);
            n.spawn(async move {
                tx.send(1).unwrap();
                tx.send(2).unwrap();
                sleep(secs(1)).await?;
                tx.send(3).unwrap();
                sleep(secs(1)).await?;
                Ok(()) // the sender is dropped at 2 s
            })?;
            Ok::<_, Error>(())
        })
        .await
        .unwrap();
        assert_eq!(
            log.take(),
            [
                "r0: 2 at 0",
                "r1: 2 at 0",
                "r2: 2 at 0",
                "r0: 3 at 1",
                "r1: 3 at 1",
                "r2: 3 at 1",
                "r0: end at 2",
                "r1: end at 2",
                "r2: end at 2",
            ]
        );
    });
}

// Principle 3: `changed` yields even when a change is there; C1: in a cancelled scope it fails
// even then, and (principle 4) the change is still unseen afterwards.
#[test]
fn changed_is_a_checkpoint_and_a_cancelled_one_marks_nothing_seen() {
    block_on_trio_order(async {
        let (tx, mut rx) = watch::channel('a');
        tx.send('b').unwrap();
        assert!(run_cancelled(rx.changed()).await.is_none());
        assert_eq!(rx.has_changed().ok(), Some(true));
        assert_yields(rx.changed()).await.unwrap();
        assert_eq!(rx.has_changed().ok(), Some(false));
        assert_eq!(*rx.borrow(), 'b');
    });
}

// Principle 4: a `changed` cancelled while waiting, one handed the change and dropped before it
// ran, and one dropped during its schedule point all leave the change unseen.
#[test]
fn cancelled_or_dropped_changed_leaves_the_change_unseen() {
    block_on_trio_order(async {
        let t0 = trellis::now();
        let (tx, mut rx) = watch::channel(0);
        assert!(move_on_after(secs(1), rx.changed()).await.is_none());
        assert_eq!(since(t0), secs(1));
        assert_eq!(rx.has_changed().ok(), Some(false));
        {
            let mut waiting = Box::pin(rx.changed());
            assert!(poll_once(waiting.as_mut()).await.is_pending()); // parked
            tx.send(1).unwrap(); // hands it the change...
        } // ...and it is dropped before it ran
        assert_eq!(rx.has_changed().ok(), Some(true));
        {
            let mut ready = Box::pin(rx.changed());
            assert!(poll_once(ready.as_mut()).await.is_pending()); // its schedule point
        }
        assert_eq!(rx.has_changed().ok(), Some(true));
        rx.changed().await.unwrap();
        assert_eq!(*rx.borrow_and_update(), 1);
        assert_eq!(rx.has_changed().ok(), Some(false));
    });
}

// Close semantics: a parked receiver gets `EndOfChannel` when the sender goes; one that has not
// seen the last value gets it first; the last value stays readable.
#[test]
fn the_end_of_the_sender_is_reported_after_the_last_value() {
    block_on_current(async {
        let t0 = trellis::now();
        let (tx, mut rx) = watch::channel("first");
        let mut behind = rx.clone();
        nursery(|n| async move {
            n.spawn(async move {
                sleep(secs(2)).await?;
                tx.send("last").unwrap();
                Ok(())
            })?;
            rx.changed().await?;
            assert_eq!(since(t0), secs(2));
            assert_eq!(*rx.borrow_and_update(), "last");
            assert!(matches!(rx.changed().await, Err(Error::EndOfChannel)));
            assert!(matches!(rx.has_changed(), Err(Error::EndOfChannel)));
            assert_eq!(*rx.borrow(), "last");
            // `behind` never looked: the last value first, then the end.
            assert_eq!(behind.has_changed().ok(), Some(true));
            behind.changed().await?;
            assert_eq!(*behind.borrow(), "last");
            assert!(matches!(behind.changed().await, Err(Error::EndOfChannel)));
            Ok::<_, Error>(())
        })
        .await
        .unwrap();
        // A parked receiver is woken by the drop itself.
        let (tx, mut rx) = watch::channel(());
        nursery(|n| async move {
            n.spawn(async move {
                sleep(secs(1)).await?;
                drop(tx);
                Ok(())
            })?;
            assert!(matches!(rx.changed().await, Err(Error::EndOfChannel)));
            Ok::<_, Error>(())
        })
        .await
        .unwrap();
        assert_eq!(since(t0), secs(3));
    });
}

// `send` without receivers stores nothing and hands the value back (BrokenResource);
// `send_replace` stores it; `subscribe` brings receivers back, having seen the current value.
#[test]
fn send_needs_a_receiver_and_send_replace_does_not() {
    let (tx, rx) = watch::channel(String::from("a"));
    assert_eq!(tx.receiver_count(), 1);
    drop(rx);
    assert!(tx.is_closed());
    let err = tx.send("b".into()).unwrap_err();
    assert!(matches!(err.reason(), Error::BrokenResource));
    assert_eq!(err.into_inner(), "b");
    assert_eq!(*tx.borrow(), "a");
    assert_eq!(tx.send_replace("c".into()), "a");
    let mut rx = tx.subscribe();
    assert_eq!(tx.receiver_count(), 1);
    assert_eq!(rx.has_changed().ok(), Some(false));
    assert_eq!(*rx.borrow(), "c");
    tx.send_modify(|v| v.push('!'));
    let seen = rx.borrow_and_update();
    assert!(seen.has_changed());
    assert_eq!(*seen, "c!");
}

// `Sender::closed` waits for the last receiver (clones and subscribers count); a checkpoint.
#[test]
fn closed_waits_for_every_receiver() {
    block_on_trio_order(async {
        let t0 = trellis::now();
        let (tx, rx) = watch::channel(0);
        let rx2 = tx.subscribe();
        let rx3 = rx.clone();
        nursery(|n| async move {
            for (i, rx) in [rx, rx2, rx3].into_iter().enumerate() {
                n.spawn(async move {
                    sleep(secs(i as u64 + 1)).await?;
                    drop(rx);
                    Ok(())
                })?;
            }
            assert_eq!(run_cancelled(tx.closed()).await, None);
            tx.closed().await?;
            assert_eq!(since(t0), secs(3));
            assert_eq!(tx.receiver_count(), 0);
            assert_yields(tx.closed()).await?;
            Ok::<_, Error>(())
        })
        .await
        .unwrap();
    });
}

// Many receivers on both flavours: sends spaced in time reach every receiver, each change once.
#[test]
fn many_receivers_each_see_every_spaced_change_once() {
    for flavor in FLAVORS {
        autojump_runtime(flavor).block_on(async {
            let (tx, rx) = watch::channel(0u32);
            let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
            let s = seen.clone();
            nursery(|n| async move {
                for _ in 0..50 {
                    let (mut rx, seen) = (rx.clone(), s.clone());
                    n.spawn(async move {
                        let mut mine = Vec::new();
                        while rx.changed().await.is_ok() {
                            mine.push(*rx.borrow_and_update());
                        }
                        seen.lock().unwrap().push(mine);
                        Ok(())
                    })?;
                }
                drop(rx);
                for v in 1..=5 {
                    sleep(secs(1)).await?;
                    tx.send(v).unwrap();
                }
                sleep(secs(1)).await?;
                drop(tx);
                Ok::<_, Error>(())
            })
            .await
            .unwrap();
            let seen = seen.lock().unwrap();
            assert_eq!(seen.len(), 50);
            assert!(seen.iter().all(|mine| mine == &[1, 2, 3, 4, 5]));
        });
    }
}

// A clone has seen what its original had; `borrow` does not mark, `mark_unchanged` does.
#[test]
fn clones_share_what_was_seen_and_borrow_marks_nothing() {
    let (tx, mut rx) = watch::channel(1);
    tx.send(2).unwrap();
    let mut clone = rx.clone();
    assert!(rx.borrow().has_changed());
    assert_eq!(rx.has_changed().ok(), Some(true));
    rx.mark_unchanged();
    assert_eq!(rx.has_changed().ok(), Some(false));
    assert_eq!(clone.has_changed().ok(), Some(true));
    let fresh = rx.clone();
    assert_eq!(fresh.has_changed().ok(), Some(false));
    assert_eq!(*clone.borrow_and_update(), 2);
    assert!(!tx.borrow().has_changed());
}
