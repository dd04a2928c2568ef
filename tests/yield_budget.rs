//! `Builder::yield_budget`: operations that complete without blocking skip their schedule point
//! while the task's budget lasts; cancellation is still checked at every one (principle 3).

mod common;

use common::send_and_yield_interleaving;
use trellis::{channel, CancelScope, Error, Flavor, Runtime};

fn runtime(budget: u32) -> Runtime {
    Runtime::builder()
        .flavor(Flavor::CurrentThread)
        .yield_budget(budget)
        .build()
        .unwrap()
}

/// [`send_and_yield_interleaving`] on a current-thread runtime with this yield budget.
fn interleaving(budget: u32) -> Vec<String> {
    runtime(budget).block_on(send_and_yield_interleaving())
}

// principle 3: by default every ready operation is a schedule point, as in trio.
#[test]
fn without_a_budget_every_ready_send_yields() {
    let log = interleaving(0);
    // Each of a's sends lets b run once, until b is done.
    let expected = [
        "b1", "a1", "b2", "a2", "b3", "a3", "a4", "a5", "a6", "a7", "a8", "a9", "a10",
    ];
    assert_eq!(log, expected);
}

// With a budget of 4, four ready sends run back to back, the fifth yields.
#[test]
fn a_budget_spaces_out_the_schedule_points() {
    let log = interleaving(4);
    // Four sends per poll of `a` skip their yield; the fifth yields, and the budget refills.
    let expected = [
        "a1", "a2", "a3", "a4", "b1", "a5", "a6", "a7", "a8", "a9", "b2", "a10", "b3",
    ];
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
