//! The testing kit: `Sequencer` forces an order of steps across tasks; `assert_checkpoints` and
//! `assert_no_checkpoints` check where code lets the scheduler in (principle 3), on any future.

mod common;

use common::*;
use trellis::channel;
use trellis::sync::Mutex;
use trellis::testing::{assert_checkpoints, assert_no_checkpoints, Sequencer};
use trellis::{nursery, sleep, CancelScope, Error};

// Tasks take their turns in sequence order whatever order they were spawned (and run) in, on
// both flavours.
#[test]
fn a_sequencer_forces_the_order_of_steps() {
    for flavor in FLAVORS {
        autojump_runtime(flavor).block_on(async move {
            let seq = Sequencer::new();
            let log = Log::new();
            let plan: [(&str, &[usize]); 3] = [("c", &[4, 5]), ("b", &[1, 3]), ("a", &[0, 2])];
            nursery(|n| {
                let (seq, log) = (seq.clone(), log.clone());
                async move {
                    for (task, steps) in plan {
                        let (seq, log) = (seq.clone(), log.clone());
                        n.spawn(async move {
                            for &step in steps {
                                let _turn = seq.turn(step).await?;
                                // A step may wait inside its turn: the next one still waits.
                                sleep(ms(1)).await?;
                                log.push(format!("{task}{step}"));
                            }
                            Ok::<_, Error>(())
                        })?;
                    }
                    Ok::<_, Error>(())
                }
            })
            .await
            .unwrap();
            assert_eq!(
                log.take(),
                ["a0", "b1", "a2", "b3", "c4", "c5"],
                "{flavor:?}"
            );
        });
    }
}

// A position used twice is refused with a clear error.
#[test]
fn a_sequencer_position_is_used_once() {
    block_on_current(async {
        let seq = Sequencer::new();
        drop(seq.turn(0).await.unwrap());
        let err = seq.turn(0).await.unwrap_err();
        assert!(matches!(err, Error::InvalidArgument(_)), "{err:?}");
    });
}

// A task cancelled while waiting for its turn breaks the sequence: it gets its cancellation,
// every other waiter and every later turn gets BrokenResource instead of waiting for ever.
#[test]
fn a_cancelled_wait_breaks_the_sequence() {
    block_on_current(async {
        let seq = Sequencer::new();
        let log = Log::new();
        let (s, l) = (seq.clone(), log.clone());
        nursery(|n| async move {
            let (s2, l2) = (s.clone(), l.clone());
            n.spawn(async move {
                let out = s2.turn(2).await;
                l2.push(format!(
                    "turn 2: {:?}",
                    out.map(|_| ()).unwrap_err().to_string()
                ));
                Ok(())
            })?;
            let scope = CancelScope::new();
            let (s3, l3, sc) = (s.clone(), l.clone(), scope.clone());
            n.spawn(async move {
                let out = sc.run(s3.turn(1)).await;
                l3.push(format!("turn 1 cancelled: {}", out.is_none()));
                Ok(())
            })?;
            trellis::testing::wait_all_tasks_blocked().await?;
            scope.cancel();
            Ok::<_, Error>(())
        })
        .await
        .unwrap();
        let mut events = log.take();
        events.sort();
        assert_eq!(
            events,
            [
                "turn 1 cancelled: true".to_string(),
                format!("turn 2: {:?}", Error::BrokenResource.to_string()),
            ]
        );
        assert!(matches!(seq.turn(0).await, Err(Error::BrokenResource)));
    });
}

// principle 3: trellis operations checkpoint even when they complete at once; plain code and
// foreign futures do not; `try_*` operations never do.
#[test]
fn checkpoints_are_asserted_on_any_future() {
    block_on_current(async {
        let (tx, rx) = channel::bounded(1);
        assert_checkpoints(tx.send(1)).await.unwrap();
        assert_eq!(assert_checkpoints(rx.recv()).await.unwrap(), 1);
        assert_checkpoints(sleep(std::time::Duration::ZERO))
            .await
            .unwrap();
        let lock = Mutex::new(0);
        drop(assert_checkpoints(lock.lock()).await.unwrap());
        assert_eq!(assert_no_checkpoints(async { 7 }).await, 7);
        assert!(assert_no_checkpoints(async { lock.try_lock() })
            .await
            .is_ok());

        let text = catch_unwind(assert_checkpoints(async { 1 }))
            .await
            .unwrap_err();
        assert!(
            panic_message(text.as_ref()).contains("finished without a checkpoint"),
            "{}",
            panic_message(text.as_ref())
        );
        let text = catch_unwind(assert_checkpoints(std::future::ready(())))
            .await
            .unwrap_err();
        assert!(panic_message(text.as_ref()).contains("without a checkpoint"));
        let text = catch_unwind(assert_no_checkpoints(trellis::checkpoint()))
            .await
            .unwrap_err();
        assert!(
            panic_message(text.as_ref()).contains("did not finish in one poll"),
            "{}",
            panic_message(text.as_ref())
        );
    });
}
