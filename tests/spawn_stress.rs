//! Stress: children linked into a nursery on one worker while a cancellation walks that nursery
//! from another (contract N1, C1). A spawn writes its new task's place in the tree without the
//! task's lock (nothing else can reach the task yet), and the walk may reach the task as soon as
//! it is in its nursery's list: every child must still be linked whole, reached by the
//! cancellation or born cancelled, and see its `Cancelled` exactly once.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use common::*;
use trellis::{checkpoint, lowlevel, nursery, sleep_forever, Error, Nursery, NurseryError};

const ROUNDS: usize = 20;
const CHILDREN: usize = 5_000;
/// The canceller waits for this many children to have parked, so that the walk runs while the
/// body is still spawning the rest (in about two rounds of three on two cores).
const CANCEL_AFTER: usize = 1_000;

#[test]
fn children_spawned_while_their_nursery_is_cancelled_each_see_it_once() {
    let rt = multi_thread(4);
    for round in 0..ROUNDS {
        let spawned = Arc::new(AtomicUsize::new(0));
        let parked = Arc::new(AtomicUsize::new(0));
        let saw_cancelled = Arc::new(AtomicUsize::new(0));
        let (sp, pk, seen) = (spawned.clone(), parked.clone(), saw_cancelled.clone());
        let out = rt.block_on(nursery(|n: Nursery<Error>| async move {
            let scope = n.cancel_scope();
            let waiting_for = pk.clone();
            n.spawn(async move {
                while waiting_for.load(Ordering::Acquire) < CANCEL_AFTER {
                    checkpoint().await?;
                }
                scope.cancel();
                Ok(())
            })?;
            // No checkpoint in this loop: the body keeps spawning while the canceller, on
            // another worker, walks the nursery.
            for _ in 0..CHILDREN {
                let (pk, seen) = (pk.clone(), seen.clone());
                n.spawn(async move {
                    pk.fetch_add(1, Ordering::Release);
                    let r = sleep_forever().await;
                    if r.is_err() {
                        seen.fetch_add(1, Ordering::Relaxed);
                    }
                    r?;
                    Ok(())
                })?;
                sp.fetch_add(1, Ordering::Relaxed);
            }
            sleep_forever().await?;
            Ok(())
        }));
        assert!(
            matches!(&out, Err(NurseryError::Cancelled(c)) if c.is_absorbed()),
            "round {round}: {out:?}"
        );
        assert_eq!(spawned.load(Ordering::Relaxed), CHILDREN, "round {round}");
        assert_eq!(
            saw_cancelled.load(Ordering::Relaxed),
            CHILDREN,
            "round {round}"
        );
        assert_eq!(parked.load(Ordering::Relaxed), CHILDREN, "round {round}");
        assert_eq!(rt.block_on(async { lowlevel::statistics().live_tasks }), 0);
    }
}
