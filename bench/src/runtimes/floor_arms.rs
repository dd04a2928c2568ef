//! The floor: the two crates trellis schedules with, `async-task` and `concurrent-queue`, and
//! nothing else. One thread pops runnables off an unbounded queue and runs them; a task is an
//! `async_task::spawn` whose schedule function pushes onto that queue. No cancel tree, no
//! nursery, no timers, no I/O, no fairness rule.
//!
//! It is not a competitor (it is never in the ratio): it is what the speed goal measures the
//! scheduler-bound rows against, as "trellis's cost over its own foundations". It runs only
//! those rows (`spawn_join`, `yield`, `chained_spawn`); the others need what it leaves out.

use std::future::Future;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use async_task::{Runnable, Task};
use concurrent_queue::ConcurrentQueue;
use futures_lite::future::{self, yield_now};

use super::{nanos, Outcome};
use crate::workloads::{Sizes, Workload};

/// Runs one sample of `workload`, or says the floor has no such row.
pub fn run(workload: Workload, s: &Sizes) -> Outcome {
    let s = *s;
    let time = |d: Duration| Outcome::Value(nanos(d));
    match workload {
        Workload::SpawnJoin => time(block_on(move |ex| spawn_join(ex, s.spawn_tasks))),
        Workload::Yield => time(block_on(move |ex| yield_many(ex, s.yield_tasks, s.yields))),
        Workload::ChainedSpawn => time(chained_spawn(s.chain_depth)),
        _ => Outcome::NotAvailable,
    }
}

/// Whether the floor has a row for `workload`.
pub fn runs(workload: Workload) -> bool {
    matches!(
        workload,
        Workload::SpawnJoin | Workload::Yield | Workload::ChainedSpawn
    )
}

/// The whole executor: a handle to the run queue.
#[derive(Clone)]
struct Ex {
    queue: Arc<ConcurrentQueue<Runnable>>,
}

impl Ex {
    fn spawn<F>(&self, future: F) -> Task<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        let queue = self.queue.clone();
        // An unbounded queue is never full, and it is never closed.
        let schedule = move |runnable| queue.push(runnable).expect("the run queue is open");
        let (runnable, task) = async_task::spawn(future, schedule);
        runnable.schedule();
        task
    }
}

/// Runs the body made by `make` as a task, and every task it spawns, until none is runnable.
/// The workloads only compute, so the body has finished then.
fn block_on<M, F>(make: M) -> F::Output
where
    M: FnOnce(Ex) -> F,
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    let ex = Ex {
        queue: Arc::new(ConcurrentQueue::unbounded()),
    };
    let body = ex.spawn(make(ex.clone()));
    while let Ok(runnable) = ex.queue.pop() {
        runnable.run();
    }
    assert!(body.is_finished(), "the floor's body waits for something");
    future::block_on(body)
}

/// Spawns `tasks` tasks running `body()` and waits for each in turn.
async fn spawn_and_join<F>(ex: Ex, tasks: usize, body: impl Fn() -> F) -> Duration
where
    F: Future<Output = ()> + Send + 'static,
{
    let start = Instant::now();
    let handles: Vec<_> = (0..tasks).map(|_| ex.spawn(body())).collect();
    for handle in handles {
        handle.await;
    }
    start.elapsed()
}

async fn spawn_join(ex: Ex, tasks: usize) -> Duration {
    spawn_and_join(ex, tasks, || async {}).await
}

async fn yield_many(ex: Ex, tasks: usize, yields: usize) -> Duration {
    spawn_and_join(ex, tasks, || async move {
        for _ in 0..yields {
            yield_now().await;
        }
    })
    .await
}

/// Each task spawns the next and ends; the last one notes the time. The body only starts the
/// chain: `block_on` runs until the queue is empty, which is when the chain has ended.
fn chained_spawn(depth: usize) -> Duration {
    fn link(ex: Ex, left: usize, end: Arc<OnceLock<Instant>>) {
        if left == 0 {
            end.set(Instant::now()).expect("one chain, one end");
        } else {
            let next = ex.clone();
            ex.spawn(async move { link(next, left - 1, end) }).detach();
        }
    }
    let end = Arc::new(OnceLock::new());
    let chain_end = end.clone();
    let start = block_on(move |ex| async move {
        let start = Instant::now();
        link(ex, depth, chain_end);
        start
    });
    *end.get().expect("the chain ran to its end") - start
}
