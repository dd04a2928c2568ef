//! Running a test under many task orders (`Builder::schedule_seed`), to find the ordering bugs
//! that the default wake order hides, and to replay the one that failed.

use std::future::Future;
use std::ops::Range;
use std::panic::{self, AssertUnwindSafe};

use crate::testing::{panic_message, virtual_time_runtime};

/// Runs `test` once per seed in `seeds`, each time on a fresh current-thread runtime whose
/// scheduler picks the next task at random with that seed
/// ([`Builder::schedule_seed`](crate::Builder::schedule_seed)), on a [`MockClock`](crate::testing::MockClock) with
/// autojump and with deadlock detection on. Returns how many seeds ran.
///
/// # Panics
/// When `test` panics (or deadlocks) under some seed: the message names the seed, which
/// replays the same order with `Builder::schedule_seed`, and carries the test's own message.
///
/// ```
/// use std::sync::atomic::{AtomicBool, Ordering};
/// use std::sync::Arc;
/// use trellis::testing::explore_schedules;
///
/// // Correct code passes under every order.
/// let seeds = explore_schedules(0..50, || async {
///     let ready = Arc::new(AtomicBool::new(false));
///     let event = Arc::new(trellis::sync::Event::new());
///     trellis::nursery(|n| async move {
///         let (r, e) = (ready.clone(), event.clone());
///         n.spawn(async move {
///             r.store(true, Ordering::SeqCst);
///             e.set();
///             Ok(())
///         })?;
///         event.wait().await?; // waits for the other task, whatever the order
///         assert!(ready.load(Ordering::SeqCst));
///         Ok::<_, trellis::Error>(())
///     })
///     .await
///     .unwrap();
/// });
/// assert_eq!(seeds, 50);
/// ```
#[track_caller]
pub fn explore_schedules<F, Fut>(seeds: Range<u64>, mut test: F) -> u64
where
    F: FnMut() -> Fut,
    Fut: Future<Output = ()>,
{
    let mut ran = 0;
    for seed in seeds {
        let rt = virtual_time_runtime(Some(seed));
        let outcome = panic::catch_unwind(AssertUnwindSafe(|| rt.block_on(test())));
        if let Err(payload) = outcome {
            let message = panic_message(payload.as_ref());
            panic!(
                "the test failed under schedule seed {seed} (after {ran} seeds passed); replay \
                 it with Runtime::builder().flavor(Flavor::CurrentThread)\
                 .schedule_seed({seed}): {message}"
            );
        }
        ran += 1;
    }
    ran
}
