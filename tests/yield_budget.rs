//! `Builder::yield_budget`: operations that complete without blocking skip their schedule point
//! while the task's budget lasts; cancellation is still checked at every one (principle 3).

use std::sync::{Arc, Mutex};

use trellis::{channel, nursery, CancelScope, Error, Flavor, Runtime};

fn runtime(budget: u32) -> Runtime {
    Runtime::builder()
        .flavor(Flavor::CurrentThread)
        .yield_budget(budget)
        .build()
        .unwrap()
}

/// Task `a` sends ten messages into an unbounded channel (never blocking); task `b` records once.
fn interleaving(budget: u32) -> Vec<String> {
    runtime(budget).block_on(async {
        let log = Arc::new(Mutex::new(Vec::new()));
        let (tx, _rx) = channel::unbounded::<u32>();
        let (la, lb) = (log.clone(), log.clone());
        nursery(|n| async move {
            n.spawn(async move {
                for i in 1..=10 {
                    tx.send(i).await.map_err(Error::from)?;
                    la.lock().unwrap().push(format!("a{i}"));
                }
                Ok(())
            })?;
            n.spawn(async move {
                lb.lock().unwrap().push("b".to_string());
                Ok(())
            })?;
            Ok::<_, Error>(())
        })
        .await
        .unwrap();
        let log = log.lock().unwrap().clone();
        log
    })
}

// principle 3: by default every ready operation is a schedule point, as in trio.
#[test]
fn without_a_budget_every_ready_send_yields() {
    let log = interleaving(0);
    assert_eq!(log[..3], ["b", "a1", "a2"]);
}

// With a budget of 4, four ready sends run back to back, the fifth yields.
#[test]
fn a_budget_spaces_out_the_schedule_points() {
    let log = interleaving(4);
    let expected: Vec<String> = [
        "a1", "a2", "a3", "a4", "b", "a5", "a6", "a7", "a8", "a9", "a10",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    assert_eq!(log, expected);
}

// principle 3: a skipped yield is still a cancel point.
#[test]
fn a_budget_never_skips_the_cancel_check() {
    runtime(1_000).block_on(async {
        let (tx, rx) = channel::unbounded::<u32>();
        let scope = CancelScope::new();
        let handle = scope.clone();
        let sent = scope
            .run(async move {
                let mut sent = 0;
                for i in 0..10 {
                    if i == 3 {
                        handle.cancel();
                    }
                    tx.send(i).await?;
                    sent += 1;
                }
                Ok::<_, Error>(sent)
            })
            .await;
        assert!(sent.is_none());
        assert_eq!(rx.statistics().current_buffer_used, 3);
    });
}
