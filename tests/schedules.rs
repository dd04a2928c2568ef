//! Seeded scheduling (`Builder::schedule_seed`) and `testing::explore_schedules`: a seed
//! permutes the choice among runnable tasks on the current-thread runtime, finds an ordering bug
//! the default wake order hides, and replays the failing order exactly.

use std::panic::{self, AssertUnwindSafe};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use trellis::testing::explore_schedules;
use trellis::{checkpoint, nursery, Error, Flavor, Runtime};

fn runtime(seed: Option<u64>) -> Runtime {
    let builder = Runtime::builder().flavor(Flavor::CurrentThread);
    match seed {
        Some(seed) => builder.schedule_seed(seed),
        None => builder,
    }
    .build()
    .unwrap()
}

/// The order in which four tasks, each checkpointing twice, take their steps.
fn steps(seed: Option<u64>) -> Vec<(u32, u32)> {
    runtime(seed).block_on(async {
        let log = Arc::new(Mutex::new(Vec::new()));
        let out = log.clone();
        nursery(|n| async move {
            for task in 0..4 {
                let log = log.clone();
                n.spawn(async move {
                    for step in 0..3 {
                        log.lock().unwrap().push((task, step));
                        checkpoint().await?;
                    }
                    Ok(())
                })?;
            }
            Ok::<_, Error>(())
        })
        .await
        .unwrap();
        let steps = out.lock().unwrap().clone();
        steps
    })
}

#[test]
fn without_a_seed_tasks_run_in_wake_order() {
    // Principle 3, current-thread flavour: each checkpoint sends the task to the back of the
    // queue, so the four tasks take their steps in turn.
    let expected: Vec<(u32, u32)> = (0..3).flat_map(|s| (0..4).map(move |t| (t, s))).collect();
    assert_eq!(steps(None), expected);
}

#[test]
fn the_same_seed_replays_the_same_order_and_seeds_differ() {
    let orders: Vec<Vec<(u32, u32)>> = (0..16).map(|seed| steps(Some(seed))).collect();
    for (seed, order) in orders.iter().enumerate() {
        assert_eq!(&steps(Some(seed as u64)), order, "seed {seed} replays");
        // Each task still takes its own steps in order, and all of them.
        for task in 0..4 {
            let own: Vec<u32> = order.iter().filter(|s| s.0 == task).map(|s| s.1).collect();
            assert_eq!(own, [0, 1, 2]);
        }
    }
    let mut distinct = orders.clone();
    distinct.sort();
    distinct.dedup();
    assert!(
        distinct.len() > 8,
        "16 seeds gave only {} orders",
        distinct.len()
    );
}

/// A planted ordering bug: the second task assumes the first one, spawned before it, has
/// already run. True in wake order, false in some others.
async fn config_then_use() {
    let config: Arc<Mutex<Option<u32>>> = Arc::default();
    nursery(|n| async move {
        let c = config.clone();
        n.spawn(async move {
            *c.lock().unwrap() = Some(42);
            Ok(())
        })?;
        let c = config.clone();
        n.spawn(async move {
            let value = c.lock().unwrap().expect("the configuration is set");
            assert_eq!(value, 42);
            Ok(())
        })?;
        Ok::<_, Error>(())
    })
    .await
    .unwrap();
}

fn panic_message(payload: Box<dyn std::any::Any + Send>) -> String {
    payload
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_default()
}

#[test]
fn a_seed_finds_an_ordering_bug_that_wake_order_hides_and_replays_it() {
    // The default order never shows it.
    for _ in 0..5 {
        runtime(None).block_on(config_then_use());
    }
    // Some seed does, and the message names it.
    let failure = panic::catch_unwind(AssertUnwindSafe(|| {
        explore_schedules(0..64, config_then_use);
    }))
    .expect_err("some order runs the user before the configuration");
    let message = panic_message(failure);
    assert!(message.contains("the configuration is set"), "{message}");
    let seed: u64 = message
        .split("schedule seed ")
        .nth(1)
        .and_then(|rest| rest.split(' ').next())
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no seed in {message:?}"));
    // The seed replays the failure, every time.
    for _ in 0..3 {
        let replay = panic::catch_unwind(AssertUnwindSafe(|| {
            runtime(Some(seed)).block_on(config_then_use());
        }));
        assert!(replay.is_err(), "seed {seed} replays the failure");
    }
    // And the seeds before it pass, every time.
    for earlier in 0..seed {
        runtime(Some(earlier)).block_on(config_then_use());
    }
}

#[test]
fn every_task_runs_to_the_end_under_a_seed() {
    // Nothing is lost in the shuffled pool: 200 tasks x 20 checkpoints, all counted.
    let count = Arc::new(AtomicUsize::new(0));
    let total = count.clone();
    runtime(Some(99)).block_on(async move {
        nursery(|n| async move {
            for _ in 0..200 {
                let count = count.clone();
                n.spawn(async move {
                    for _ in 0..20 {
                        checkpoint().await?;
                        count.fetch_add(1, Ordering::SeqCst);
                    }
                    Ok(())
                })?;
            }
            Ok::<_, Error>(())
        })
        .await
        .unwrap();
    });
    assert_eq!(total.load(Ordering::SeqCst), 4000);
}

#[test]
fn a_schedule_seed_on_the_multi_threaded_flavour_is_refused() {
    let refused = Runtime::builder()
        .flavor(Flavor::MultiThread)
        .schedule_seed(1)
        .build()
        .unwrap_err();
    assert!(
        matches!(refused, Error::InvalidArgument(m) if m.contains("current-thread")),
        "{refused:?}"
    );
}
