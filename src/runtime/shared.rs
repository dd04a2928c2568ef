//! The state every part of one runtime shares: its scheduler, its driver, its settings and its
//! counters. Tasks, I/O sources, timers and cancel-tree nodes reach their runtime through it
//! (an `Arc<Shared>`, or the thread-local context for the code being polled), so this is the
//! one interface the runtime offers the layers above it: schedule a task, insert a timer, read
//! the clock, register with the reactor, read a setting.
//!
//! It holds nothing of the layers above: the root of the cancel tree belongs to `block_on`,
//! and what the runtime does when every task is blocked lives in `idle`.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::Waker;
use std::thread::ThreadId;
use std::time::{Duration, Instant};

use crate::runtime::driver::Driver;
use crate::runtime::instrument::Instrument;
use crate::runtime::scheduler::{Flavor, Scheduler};
use crate::runtime::task_count::TaskCounts;
use crate::state_lock::lock_blocking;
use crate::time::timers::{TimerKey, TimerTarget};

/// State shared by everything running on one runtime.
pub(crate) struct Shared {
    pub(crate) scheduler: Scheduler,
    pub(crate) driver: Driver,
    flavor: Flavor,
    /// The thread that made it (in `block_on`): on the current-thread flavour, the one thread
    /// that polls every task, and so the owner of the `spawn_local` ones.
    pub(crate) thread: ThreadId,
    /// Task ids, and the count of live tasks, kept per worker.
    tasks: TaskCounts,
    idle_waiters: Mutex<IdleWaiters>,
    yield_budget: u32,
    grace_period: Option<Duration>,
    /// Deadlock detection (`Builder::detect_deadlocks`), and its findings.
    pub(crate) watchdog: Watchdog,
    /// `Builder::instrument`: told of every task event.
    #[cfg_attr(not(feature = "instrument"), allow(dead_code))]
    pub(crate) instrument: Option<Arc<dyn Instrument>>,
}

/// Some runtime of the process was built with a default grace period (B3): until then a
/// cancellation need not look for one.
static ANY_DEFAULT_GRACE: AtomicBool = AtomicBool::new(false);

/// Might a scope without a grace period of its own have one from its runtime?
#[inline]
pub(crate) fn any_default_grace_period() -> bool {
    ANY_DEFAULT_GRACE.load(Ordering::Relaxed)
}

/// Some runtime of the process detects deadlocks: until then a wait need not leave the name of
/// its operation for the detector's report.
static ANY_DEADLOCK_DETECTION: AtomicBool = AtomicBool::new(false);

/// Might the current runtime detect deadlocks? One load of a static.
#[inline]
pub(crate) fn any_deadlock_detection() -> bool {
    ANY_DEADLOCK_DETECTION.load(Ordering::Relaxed)
}

/// What the deadlock detector needs to know, beyond the scheduler and the driver: things that
/// may still wake a blocked task from outside.
#[derive(Default)]
pub(crate) struct Watchdog {
    pub(crate) enabled: bool,
    /// The main future's last poll waited where trellis cannot see (it may be woken from
    /// anywhere).
    pub(crate) main_foreign: AtomicBool,
    /// `run_blocking` calls in flight.
    pub(crate) offloaded: AtomicUsize,
    /// `Portal`s alive.
    pub(crate) portals: AtomicUsize,
    /// The report, once a deadlock was found.
    report: Mutex<Option<String>>,
}

impl Watchdog {
    fn report(&self) -> MutexGuard<'_, Option<String>> {
        lock_blocking(&self.report)
    }

    /// Records the deadlock found (the task tree as `lowlevel::task_tree` shows it).
    pub(crate) fn set_report(&self, tree: String) {
        *self.report() = Some(tree);
    }

    /// Takes the report, if a deadlock was found.
    pub(crate) fn take_report(&self) -> Option<String> {
        self.report().take()
    }

    /// A deadlock was found: `block_on` must stop.
    pub(crate) fn tripped(&self) -> bool {
        self.enabled && self.report().is_some()
    }
}

#[derive(Default)]
struct IdleWaiters {
    waiters: BTreeMap<(Duration, u64), Waker>,
    seq: u64,
}

/// The settings a runtime is built with, as `Shared` keeps them.
pub(crate) struct Settings {
    pub(crate) flavor: Flavor,
    pub(crate) workers: usize,
    pub(crate) yield_budget: u32,
    pub(crate) grace_period: Option<Duration>,
    pub(crate) detect_deadlocks: bool,
    pub(crate) schedule_seed: Option<u64>,
    pub(crate) instrument: Option<Arc<dyn Instrument>>,
}

impl Shared {
    pub(crate) fn new(driver: Driver, settings: Settings) -> Self {
        if settings.grace_period.is_some() {
            ANY_DEFAULT_GRACE.store(true, Ordering::Relaxed);
        }
        if settings.detect_deadlocks {
            ANY_DEADLOCK_DETECTION.store(true, Ordering::Relaxed);
        }
        if settings.instrument.is_some() {
            crate::runtime::instrument::installed();
        }
        Shared {
            scheduler: Scheduler::new(settings.workers, settings.flavor, settings.schedule_seed),
            driver,
            flavor: settings.flavor,
            thread: std::thread::current().id(),
            tasks: TaskCounts::new(settings.workers),
            idle_waiters: Mutex::new(IdleWaiters::default()),
            yield_budget: settings.yield_budget,
            grace_period: settings.grace_period,
            watchdog: Watchdog {
                enabled: settings.detect_deadlocks,
                ..Watchdog::default()
            },
            instrument: settings.instrument,
        }
    }

    pub(crate) fn yield_budget(&self) -> u32 {
        self.yield_budget
    }

    /// The grace period of scopes that set none (B3).
    pub(crate) fn grace_period(&self) -> Option<Duration> {
        self.grace_period
    }

    pub(crate) fn flavor(&self) -> Flavor {
        self.flavor
    }

    /// An id for a task about to be spawned, which counts it among the live ones.
    #[inline]
    pub(crate) fn next_task_id(&self) -> u64 {
        self.tasks.spawned(self.scheduler.current_worker())
    }

    /// Counts a task whose future has been dropped.
    #[inline]
    pub(crate) fn task_ended(&self) {
        self.tasks.ended(self.scheduler.current_worker());
    }

    /// Task futures alive: spawned and not yet dropped.
    pub(crate) fn live_tasks(&self) -> usize {
        self.tasks.live()
    }

    /// Adds a timer, waking the driver if it is now the earliest (the driver may be blocked with
    /// a longer timeout).
    pub(crate) fn insert_timer(&self, deadline: Instant, target: TimerTarget) -> TimerKey {
        let (key, first) = self.driver.timers.insert(deadline, target);
        if first {
            self.scheduler.kick_driver(&self.driver);
        }
        key
    }

    fn idle_waiters(&self) -> MutexGuard<'_, IdleWaiters> {
        lock_blocking(&self.idle_waiters)
    }

    pub(crate) fn has_idle_watchers(&self) -> bool {
        self.watchdog.enabled
            || self.driver.clock.autojump_threshold().is_some()
            || !self.idle_waiters().waiters.is_empty()
    }

    /// Registers a `wait_all_tasks_blocked` waiter; returns its key.
    pub(crate) fn add_idle_waiter(&self, cushion: Duration, waker: &Waker) -> (Duration, u64) {
        let key = {
            let mut w = self.idle_waiters();
            w.seq += 1;
            let key = (cushion, w.seq);
            w.waiters.insert(key, waker.clone());
            key
        };
        // The driver may be blocked with no idle timeout; make it re-plan.
        self.scheduler.kick_driver(&self.driver);
        key
    }

    /// Refreshes a waiter's waker; false if it was already woken (removed).
    pub(crate) fn update_idle_waiter(&self, key: (Duration, u64), waker: &Waker) -> bool {
        match self.idle_waiters().waiters.get_mut(&key) {
            Some(w) => {
                w.clone_from(waker);
                true
            }
            None => false,
        }
    }

    pub(crate) fn remove_idle_waiter(&self, key: (Duration, u64)) {
        self.idle_waiters().waiters.remove(&key);
    }

    /// The smallest cushion a `wait_all_tasks_blocked` waiter asked for.
    pub(crate) fn first_idle_cushion(&self) -> Option<Duration> {
        self.idle_waiters()
            .waiters
            .keys()
            .next()
            .map(|&(cushion, _)| cushion)
    }

    /// Removes the waiters with `cushion` (the smallest), to be woken outside the lock.
    pub(crate) fn take_idle_waiters(&self, cushion: Duration) -> Vec<Waker> {
        let mut woken = Vec::new();
        let mut w = self.idle_waiters();
        while let Some(entry) = w.waiters.first_entry() {
            if entry.key().0 != cushion {
                break;
            }
            woken.push(entry.remove());
        }
        woken
    }
}
