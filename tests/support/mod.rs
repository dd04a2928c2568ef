//! Helpers shared by the sync and channel tests.
#![allow(dead_code)]

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use trellis::testing::MockClock;
use trellis::{CancelScope, Cancelled, Flavor, Outcome, Runtime};

/// Runs `f` on a current-thread runtime with an autojumping mock clock (deterministic order).
pub fn block_on<F: Future>(f: F) -> F::Output {
    let clock = MockClock::new();
    clock.set_autojump_threshold(Some(Duration::ZERO));
    Runtime::builder()
        .flavor(Flavor::CurrentThread)
        .clock(clock)
        .build()
        .unwrap()
        .block_on(f)
}

/// Runs `f` on a multi-threaded runtime with `workers` threads.
pub fn block_on_multi<F: Future>(workers: usize, f: F) -> F::Output {
    Runtime::builder()
        .flavor(Flavor::MultiThread)
        .worker_threads(workers)
        .build()
        .unwrap()
        .block_on(f)
}

/// trio's `assert_checkpoints` for an operation that completes without blocking: it must yield
/// to the scheduler (a task spawned before it runs before it returns). Returns its output.
pub async fn assert_yields<F: Future>(f: F) -> F::Output {
    let ran = Arc::new(AtomicBool::new(false));
    let flag = ran.clone();
    let out = trellis::nursery(|n| async move {
        n.spawn(async move {
            flag.store(true, Ordering::SeqCst);
            Ok(())
        })?;
        let out = f.await;
        assert!(ran.load(Ordering::SeqCst), "the operation did not yield");
        Ok::<_, trellis::Error>(out)
    })
    .await;
    out.unwrap()
}

/// Runs `f` inside a scope that is cancelled before `f` starts; returns the scope's view.
pub async fn run_cancelled<F>(f: F) -> Option<F::Output>
where
    F: Future,
    F::Output: Outcome,
{
    let scope = CancelScope::new();
    scope.cancel();
    scope.run(f).await
}

/// The cancellation error a checkpoint in a cancelled scope gives.
pub fn is_cancelled<T, E: trellis::AsCancelled>(r: &Result<T, E>) -> bool {
    matches!(r, Err(e) if e.cancelled().is_some())
}

pub fn cancelled_unit() -> Result<(), Cancelled> {
    Ok(())
}
