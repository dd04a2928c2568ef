//! The pool of threads behind [`run_blocking`](super::run_blocking): a cache of idle threads
//! (like trio's `start_thread_soon`), not a fixed set.
//!
//! A job goes to an idle thread if there is one, else a new thread is started for it, so a job
//! never waits behind another job (how many run at once is the limiter's business, not the
//! pool's). A thread that finds no work for `IDLE_TIMEOUT` exits.
//!
//! Hand-off protocol (under one mutex): `idle` counts threads waiting on the condition
//! variable; a producer that finds `idle > 0` takes one of them out of the count (`idle -= 1`,
//! `handoffs += 1`) and notifies. A waiting thread leaves its wait only by consuming a hand-off
//! (`handoffs -= 1`), or by timing out while none is pending. So every queued job has either a
//! claimed idle thread or a freshly started one, whatever order the threads wake in.

use std::collections::VecDeque;
use std::sync::{Condvar, Mutex, MutexGuard, OnceLock};
use std::thread;
use std::time::Duration;

use crate::state_lock::lock_blocking;

/// How long an idle thread waits for a job before exiting. Long enough that a burst of calls
/// reuses threads, short enough that an idle program does not keep dozens of threads (trio uses
/// 10 s for the same cache).
const IDLE_TIMEOUT: Duration = Duration::from_secs(10);

type Job = Box<dyn FnOnce() + Send>;

struct Pool {
    state: Mutex<State>,
    wake: Condvar,
}

#[derive(Default)]
struct State {
    jobs: VecDeque<Job>,
    idle: usize,
    handoffs: usize,
}

fn pool() -> &'static Pool {
    static POOL: OnceLock<Pool> = OnceLock::new();
    POOL.get_or_init(|| Pool {
        state: Mutex::new(State::default()),
        wake: Condvar::new(),
    })
}

impl Pool {
    fn lock(&self) -> MutexGuard<'_, State> {
        lock_blocking(&self.state)
    }
}

/// Runs `job` on a pool thread as soon as possible. The job must not unwind (callers catch
/// panics themselves).
///
/// # Panics
/// If the operating system refuses to start a thread.
pub(crate) fn execute(job: Job) {
    let pool = pool();
    let mut state = pool.lock();
    state.jobs.push_back(job);
    if state.idle > 0 {
        state.idle -= 1;
        state.handoffs += 1;
        drop(state);
        pool.wake.notify_one();
        return;
    }
    drop(state);
    let spawned = thread::Builder::new()
        .name("trellis-blocking".into())
        .spawn(worker);
    if let Err(e) = spawned {
        panic!("trellis::thread::run_blocking could not start a thread: {e}");
    }
}

fn worker() {
    let pool = pool();
    let mut state = pool.lock();
    loop {
        if let Some(job) = state.jobs.pop_front() {
            drop(state);
            job();
            state = pool.lock();
            continue;
        }
        state.idle += 1;
        loop {
            let (guard, timeout) = pool
                .wake
                .wait_timeout(state, IDLE_TIMEOUT)
                .unwrap_or_else(|e| e.into_inner());
            state = guard;
            if state.handoffs > 0 {
                state.handoffs -= 1;
                break;
            }
            if timeout.timed_out() {
                state.idle -= 1;
                return;
            }
        }
    }
}
