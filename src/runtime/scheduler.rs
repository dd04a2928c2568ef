//! The scheduler: worker threads, their run queues, and how idle workers park and wake.
//!
//! Queues:
//! - each worker has a bounded local queue (others steal half of it when they run dry) and, on
//!   the multi-threaded flavour, a LIFO slot: a task woken by the running task runs next on the
//!   same thread, which keeps message ping-pong on one warm core with no thread wake-up. At most
//!   `MAX_LIFO_STREAK` LIFO tasks run in a row so two tasks waking each other cannot starve the
//!   queue. The current-thread flavour has no LIFO slot: it runs tasks strictly in wake order,
//!   which keeps single-threaded programs (and tests of exact orders) deterministic.
//! - one global injector takes tasks scheduled from outside the workers and local overflow.
//! - the current-thread flavour's one worker keeps its queue in a plain deque that only its
//!   thread touches (everything else schedules through the injector): no atomics per push and
//!   pop, and no overflow, so tasks past the 256th run in wake order too.
//!
//! Parking (no lost wake-ups): a worker that finds no task announces itself idle
//! (`num_idle += 1`, SeqCst), then looks at every queue once more, then sleeps. A producer pushes,
//! issues a SeqCst fence, then reads `num_idle`. One of the two sees the other. The first idle
//! worker becomes the *driver*: it blocks in the reactor (`Poller::wait`) with a timeout set by
//! the next timer; the others sleep on their `Parker`. `notify_one` wakes a sleeper, or the driver
//! through `Poller::notify`. Wake-ups are sparing, as in tokio: while one woken worker is still
//! searching for work, no other is woken; when it finds work it passes the baton on. A spawn on a
//! worker wakes one only once two tasks wait there (see `schedule_new`).
//!
//! Start-up (multi-threaded flavour): `block_on` spawns the workers and sleeps until each has
//! gone idle once, or [`WORKER_START_LIMIT`] has passed, before it polls the main future. The
//! last worker to go idle wakes it. Work then reaches sleeping workers through wake-ups, which
//! the OS places on idle cores. Polled at once instead, the main future handed its first tasks
//! to workers that had just been forked and were still starting, all of them placed away from
//! the busy `block_on` thread, often on one core; once the `block_on` thread slept, that core
//! ran them in turns for tens of milliseconds while the other stood idle (docs/design.md).
//!
//! Quiescence: when every worker is idle, no queue holds a task and the main future is not
//! runnable, every task is blocked. The driver then serves `wait_all_tasks_blocked` waiters or
//! jumps a mock clock forward (autojump), as trio does.
//!
//! Shutdown: `shutdown` is set, every worker is woken and joined, then the queues are drained
//! (dropping a `Job` drops its future) until nothing is rescheduled.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::ptr;
use std::sync::atomic::{fence, AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use async_task::ScheduleInfo;
use concurrent_queue::ConcurrentQueue;

use crate::runtime::driver::Driver;
use crate::runtime::job::Job;
use crate::runtime::park::Parker;
use crate::state_lock::lock_blocking;

/// How a runtime runs its tasks.
///
/// ```
/// use trellis::{Flavor, Runtime};
///
/// assert_eq!(Flavor::default(), Flavor::MultiThread);
/// let rt = Runtime::builder().flavor(Flavor::CurrentThread).build().unwrap();
/// // Everything runs on the thread that calls `block_on`.
/// let caller = std::thread::current().id();
/// let inside = rt.block_on(async { std::thread::current().id() });
/// assert_eq!(inside, caller);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Flavor {
    /// Worker threads (one per core by default) with work stealing. Tasks must be `Send`.
    #[default]
    MultiThread,
    /// Everything on the thread that calls `block_on`. Accepts `!Send` tasks
    /// ([`Nursery::spawn_local`](crate::Nursery::spawn_local)) and runs tasks in wake order,
    /// which makes runs deterministic.
    CurrentThread,
}

/// What the scheduler needs from the runtime above it when its workers run out of work:
/// the driver to block in, and the runtime's rules for a quiescent run (trio's
/// `wait_all_tasks_blocked`, autojump, deadlock detection), which read layers the scheduler
/// does not know. Generic, so the calls compile to direct ones.
pub(crate) trait Host {
    /// What to do if the run is still quiescent after the driver's wait.
    type IdleAction;

    fn driver(&self) -> &Driver;

    /// How long the driver may block, and what to do if every task is still blocked after.
    fn idle_plan(&self, quiescent: bool) -> (Option<Duration>, Option<Self::IdleAction>);

    fn run_idle_action(&self, action: Self::IdleAction);

    /// Does anything want to know when every task is blocked (then the last worker to go idle
    /// wakes the driver so that it plans for it)?
    fn has_idle_watchers(&self) -> bool;

    /// The run must end now (a deadlock was reported).
    fn must_stop(&self) -> bool;
}

/// Capacity of a worker's local queue; overflow goes to the injector. 256 as in tokio: large
/// enough that a burst of spawns rarely touches the shared injector.
const LOCAL_QUEUE_CAPACITY: usize = 256;
/// LIFO tasks run in a row before the local queue gets a turn (tokio uses 3 for the same reason).
const MAX_LIFO_STREAK: u32 = 3;
/// Every this many tasks a worker checks the injector first and polls the reactor without
/// blocking, so neither remote wake-ups nor I/O starve under a busy local queue. Prime, as in
/// tokio, so it does not beat in step with task loops.
const MAINTENANCE_INTERVAL: u32 = 61;
/// A current-thread worker's queue bigger than this many tasks (64 KiB) and at most a quarter
/// full is shrunk at the next maintenance.
const TRIM_QUEUE_ABOVE: usize = 4096;
/// At most this many tasks move from the injector to a local queue in one go.
const INJECTOR_BATCH: usize = 32;
/// How long `block_on` waits for new workers to go idle before it polls the main future anyway
/// (a thread starts in tens of microseconds; a loaded machine may take longer, and the wait only
/// helps placement, so it never holds the run up for more than this).
pub(crate) const WORKER_START_LIMIT: Duration = Duration::from_millis(20);

pub(crate) struct Scheduler {
    injector: ConcurrentQueue<Job>,
    workers: Box<[WorkerSlot]>,
    idle: Mutex<Idle>,
    num_idle: AtomicUsize,
    num_searching: AtomicUsize,
    /// Idle workers woken because work arrived (see [`worker_wakeups`](Self::worker_wakeups)).
    wakeups: AtomicU64,
    shutdown: AtomicBool,
    /// `block_on` waits for the workers to go idle (see [`wait_for_workers`](Self::wait_for_workers)).
    starting: AtomicBool,
    /// The last `wait_for_workers` saw every worker idle before its limit (the last one's
    /// wake-up came, rather than the deadline).
    idle_in_time: AtomicBool,
    /// Multi-threaded flavour: workers keep a LIFO slot.
    use_lifo: bool,
    flavor: Flavor,
    /// `Builder::schedule_seed`: pick the next task at random among the runnable ones.
    seed: Option<u64>,
    pub(crate) main: MainState,
}

struct WorkerSlot {
    queue: ConcurrentQueue<Job>,
    parker: Parker,
}

#[derive(Default)]
struct Idle {
    /// Workers asleep on their parker.
    sleepers: Vec<usize>,
    /// Some worker holds the driver role.
    driver_taken: bool,
    /// The driver is blocked in the reactor and counted in `num_idle`.
    driver_waiting: bool,
    /// The driver was woken by `notify_one` (and counted as searching).
    driver_notified: bool,
}

/// The future given to `block_on`.
#[derive(Default)]
pub(crate) struct MainState {
    /// Its waker fired since it was last polled.
    pub(crate) woken: AtomicBool,
    /// Multi-threaded flavour: the `block_on` thread is polling it right now. Set before `woken`
    /// is cleared and cleared after the poll, so that between the two flags the main future is
    /// never seen as blocked while it runs (it may be spawning tasks the workers have not seen
    /// yet: an autojump then would move time under it).
    pub(crate) running: AtomicBool,
    /// Multi-threaded flavour: the `block_on` thread parks here.
    pub(crate) parker: Parker,
}

impl MainState {
    /// Woken and not yet polled, or being polled.
    fn runnable(&self) -> bool {
        self.woken.load(Ordering::SeqCst) || self.running.load(Ordering::SeqCst)
    }
}

/// Per-worker state only its own thread touches.
struct Local {
    /// The scheduler this worker belongs to (a thread may serve one runtime inside another's
    /// `run_blocking` thread, never two at once, but wakers of the other may run here).
    scheduler: *const Scheduler,
    index: usize,
    lifo: Cell<Option<Job>>,
    lifo_streak: Cell<u32>,
    searching: Cell<bool>,
    tick: Cell<u32>,
    /// Tasks pushed onto, and popped from, this worker's own queue: positions in its FIFO order.
    pushed: Cell<u64>,
    popped: Cell<u64>,
    /// Current-thread flavour: the main future was woken on this thread when `pushed` had this
    /// value; it is polled once the tasks queued before that have run (strict wake order).
    main_ticket: Cell<Option<u64>>,
    /// With a schedule seed: the runnable tasks taken off the queues, to pick from at random.
    shuffled: Option<Shuffled>,
    /// Current-thread flavour: this worker's run queue, in place of its slot's shared one.
    thread_queue: Option<RefCell<VecDeque<Job>>>,
}

/// The tasks a seeded worker picks from, and its generator.
struct Shuffled {
    pool: RefCell<Vec<Job>>,
    rng: Cell<SplitMix64>,
}

impl Shuffled {
    fn new(seed: u64) -> Self {
        Shuffled {
            pool: RefCell::new(Vec::new()),
            rng: Cell::new(SplitMix64::new(seed)),
        }
    }

    fn next(&self) -> u64 {
        let mut rng = self.rng.get();
        let value = rng.next_u64();
        self.rng.set(rng);
        value
    }
}

/// The generator behind seeds (schedule seeds here, the injection harness's seeded mode):
/// SplitMix64, small and the same sequence on every platform, so a seed replays anywhere.
#[derive(Clone, Copy)]
pub(crate) struct SplitMix64(u64);

impl SplitMix64 {
    pub(crate) fn new(seed: u64) -> Self {
        SplitMix64(seed)
    }

    pub(crate) fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

thread_local! {
    static LOCAL: Cell<*const Local> = const { Cell::new(ptr::null()) };
}

/// Runs `f` with this thread's worker state if it is a worker of `scheduler`.
#[inline(always)]
fn with_local<R>(scheduler: &Scheduler, f: impl FnOnce(Option<&Local>) -> R) -> R {
    let local = LOCAL.with(Cell::get);
    // SAFETY: `LOCAL` points at the `Local` on the stack of `run_worker`, which resets it before
    // returning; so a non-null pointer read on this thread is live.
    let local = unsafe { local.as_ref() };
    f(local.filter(|l| ptr::eq(l.scheduler, scheduler)))
}

impl Scheduler {
    pub(crate) fn new(workers: usize, flavor: Flavor, seed: Option<u64>) -> Self {
        Scheduler {
            injector: ConcurrentQueue::unbounded(),
            workers: (0..workers)
                .map(|_| WorkerSlot {
                    // Unused by the current-thread flavour (its worker's `thread_queue`).
                    queue: ConcurrentQueue::bounded(match flavor {
                        Flavor::CurrentThread => 1,
                        Flavor::MultiThread => LOCAL_QUEUE_CAPACITY,
                    }),
                    parker: Parker::default(),
                })
                .collect(),
            idle: Mutex::new(Idle::default()),
            num_idle: AtomicUsize::new(0),
            num_searching: AtomicUsize::new(0),
            wakeups: AtomicU64::new(0),
            shutdown: AtomicBool::new(false),
            starting: AtomicBool::new(false),
            idle_in_time: AtomicBool::new(false),
            use_lifo: flavor == Flavor::MultiThread,
            flavor,
            seed,
            main: MainState::default(),
        }
    }

    /// How many workers are idle now, and whether the start-up wait saw them all idle before
    /// its limit.
    #[cfg(test)]
    pub(crate) fn idle_workers(&self) -> (usize, bool) {
        (
            self.num_idle.load(Ordering::SeqCst),
            self.idle_in_time.load(Ordering::SeqCst),
        )
    }

    pub(crate) fn num_workers(&self) -> usize {
        self.workers.len()
    }

    /// How many times a worker that had run out of work was woken because work arrived (a task
    /// queued, the main future woken), since the scheduler was made (at `block_on`).
    pub(crate) fn worker_wakeups(&self) -> u64 {
        self.wakeups.load(Ordering::Relaxed)
    }

    /// Counts one wake-up of an idle worker for work.
    fn count_wakeup(&self) {
        self.wakeups.fetch_add(1, Ordering::Relaxed);
    }

    /// Wakes an idle worker, just taken off the idle ones under `idle`, to search for work:
    /// `wake` unparks it (a sleeper) or notifies the reactor (the driver).
    fn wake_idle(&self, idle: MutexGuard<'_, Idle>, wake: impl FnOnce()) {
        self.num_idle.fetch_sub(1, Ordering::SeqCst);
        self.num_searching.fetch_add(1, Ordering::SeqCst);
        drop(idle);
        self.count_wakeup();
        wake();
    }

    /// The index of the worker the calling thread runs, if it runs one of this scheduler's.
    #[inline]
    pub(crate) fn current_worker(&self) -> Option<usize> {
        with_local(self, |local| local.map(|l| l.index))
    }

    fn idle(&self) -> MutexGuard<'_, Idle> {
        lock_blocking(&self.idle)
    }

    /// Schedules a woken task from one of this scheduler's workers (its LIFO slot or its own
    /// queue); anywhere else, gives the job back untouched, for
    /// [`schedule_remote`](Self::schedule_remote). (A task's schedule function borrows the
    /// runtime on a worker, which keeps it alive, and takes a reference of its own elsewhere.)
    #[inline]
    pub(crate) fn schedule_on_worker(
        &self,
        driver: &Driver,
        job: Job,
        info: ScheduleInfo,
    ) -> Result<(), Job> {
        with_local(self, |local| {
            let Some(local) = local else {
                return Err(job);
            };
            if self.use_lifo && !info.woken_while_running {
                match local.lifo.replace(Some(job)) {
                    Some(previous) => self.push_local(local, previous),
                    None => return Ok(()),
                }
            } else {
                self.push_local(local, job);
            }
            self.notify_if_idle(driver);
            Ok(())
        })
    }

    /// Schedules a woken task from a thread that is not one of the workers: through the
    /// injector, waking an idle worker.
    pub(crate) fn schedule_remote(&self, driver: &Driver, job: Job) {
        self.push_remote(job);
        self.notify_one(driver);
    }

    /// Queues a newly spawned task at the back of the queue (never the LIFO slot: spawn order
    /// stays run order).
    pub(crate) fn schedule_new(&self, driver: &Driver, job: Job) {
        with_local(self, |local| match local {
            Some(local) => {
                self.push_local(local, job);
                // A new task that is the only one waiting here runs as soon as the spawning
                // task's poll ends. Waking a worker to steal it moved it to the other core and
                // the next one back, for nothing: a chain of tasks that each spawn the next
                // woke a worker at every other link. Once two wait, a helper has work. (A lone
                // worker has no helper: its spawns skip the count.)
                if self.workers.len() > 1 && self.waiting_here(local) > 1 {
                    self.notify_one(driver);
                }
            }
            None => {
                self.push_remote(job);
                self.notify_one(driver);
            }
        })
    }

    /// Tasks waiting to run on this worker: its queue's and its LIFO slot's.
    fn waiting_here(&self, local: &Local) -> usize {
        let lifo = local.lifo.take();
        let in_lifo = usize::from(lifo.is_some());
        local.lifo.set(lifo);
        let queued = match &local.thread_queue {
            Some(queue) => queue.borrow().len(),
            None => self.workers[local.index].queue.len(),
        };
        queued + in_lifo
    }

    fn push_local(&self, local: &Local, job: Job) {
        if let Err(job) = self.push_own(local, job) {
            self.push_remote(job);
        }
    }

    /// Pushes onto this worker's own queue, counting the push; gives the task back if it is full.
    #[inline]
    fn push_own(&self, local: &Local, job: Job) -> Result<(), Job> {
        if let Some(queue) = &local.thread_queue {
            queue.borrow_mut().push_back(job);
            local.pushed.set(local.pushed.get() + 1);
            return Ok(());
        }
        match self.workers[local.index].queue.push(job) {
            Ok(()) => {
                local.pushed.set(local.pushed.get() + 1);
                Ok(())
            }
            Err(e) => Err(e.into_inner()),
        }
    }

    fn push_remote(&self, job: Job) {
        // The injector is unbounded; it is closed when the runtime drains its queues at
        // shutdown. After that a push fails and the task is dropped right here, its future with
        // it (see `ChildRunner`'s `Drop`), which is what shutdown does to queued tasks anyway.
        let _ = self.injector.push(job);
    }

    /// A worker queued work for itself: wake a helper if some worker sleeps and none is already
    /// searching.
    fn notify_if_idle(&self, driver: &Driver) {
        if self.workers.len() > 1 {
            self.notify_one(driver);
        }
    }

    /// Wakes one idle worker (a sleeper, else the driver) unless one is already searching.
    pub(crate) fn notify_one(&self, driver: &Driver) {
        fence(Ordering::SeqCst);
        if self.num_idle.load(Ordering::SeqCst) == 0
            || self.num_searching.load(Ordering::SeqCst) > 0
        {
            return;
        }
        let mut idle = self.idle();
        if let Some(index) = idle.sleepers.pop() {
            self.wake_idle(idle, || self.workers[index].parker.unpark());
        } else if idle.driver_waiting {
            idle.driver_waiting = false;
            idle.driver_notified = true;
            self.wake_idle(idle, || driver.notify());
        }
    }

    /// Wakes the driver (if blocked in the reactor) so it re-evaluates, without counting it as
    /// woken for work.
    pub(crate) fn kick_driver(&self, driver: &Driver) {
        if self.idle().driver_waiting {
            driver.notify();
        }
    }

    /// The main future was woken: on the current-thread flavour the lone worker runs it, so wake
    /// that worker; on the multi-threaded flavour unpark the `block_on` thread.
    pub(crate) fn wake_main(&self, driver: &Driver) {
        self.main.woken.store(true, Ordering::SeqCst);
        if self.flavor == Flavor::CurrentThread {
            let on_worker = with_local(self, |l| match l {
                Some(l) => {
                    // Its place in the run order: after everything queued so far.
                    if l.main_ticket.get().is_none() {
                        l.main_ticket.set(Some(l.pushed.get()));
                    }
                    true
                }
                None => false,
            });
            if on_worker {
                return;
            }
            let mut idle = self.idle();
            if idle.driver_waiting {
                drop(idle);
                self.count_wakeup();
                driver.notify();
            } else if let Some(index) = idle.sleepers.pop() {
                self.wake_idle(idle, || self.workers[index].parker.unpark());
            }
        } else {
            self.main.parker.unpark();
        }
    }

    /// Pops from this worker's own queue (not counted: see `find_task`).
    #[inline]
    fn pop_own(&self, local: &Local) -> Option<Job> {
        match &local.thread_queue {
            Some(queue) => queue.borrow_mut().pop_front(),
            None => self.workers[local.index].queue.pop().ok(),
        }
    }

    /// Whether any queue holds a task. A current-thread worker's own queue is seen only from
    /// its thread, the only one that asks on that flavour.
    fn has_work(&self) -> bool {
        !self.injector.is_empty()
            || self.workers.iter().any(|w| !w.queue.is_empty())
            || with_local(self, |local| {
                local
                    .and_then(|l| l.thread_queue.as_ref())
                    .is_some_and(|queue| !queue.borrow().is_empty())
            })
    }

    /// Every task is blocked: all workers idle, nothing queued, the main future not runnable.
    pub(crate) fn is_quiescent(&self) -> bool {
        self.num_idle.load(Ordering::SeqCst) == self.workers.len()
            && !self.has_work()
            && !self.main.runnable()
    }

    fn find_task(&self, local: &Local) -> Option<Job> {
        let tick = local.tick.get().wrapping_add(1);
        local.tick.set(tick);
        if let Some(shuffled) = &local.shuffled {
            return self.pick_at_random(local, shuffled);
        }
        if tick % MAINTENANCE_INTERVAL == 0 {
            if let Ok(r) = self.injector.pop() {
                return Some(r);
            }
        }
        if let Some(r) = local.lifo.take() {
            let streak = local.lifo_streak.get();
            if streak < MAX_LIFO_STREAK {
                local.lifo_streak.set(streak + 1);
                return Some(r);
            }
            self.push_local(local, r);
        }
        local.lifo_streak.set(0);
        if let Some(r) = self.pop_own(local) {
            local.popped.set(local.popped.get() + 1);
            return Some(r);
        }
        if let Ok(r) = self.injector.pop() {
            for _ in 0..INJECTOR_BATCH.min(self.injector.len()) {
                match self.injector.pop() {
                    Ok(extra) => {
                        if let Err(extra) = self.push_own(local, extra) {
                            self.push_remote(extra);
                            break;
                        }
                    }
                    Err(_) => break,
                }
            }
            return Some(r);
        }
        self.steal(local)
    }

    /// `find_task` with a schedule seed (current-thread flavour): everything runnable is moved
    /// into the pool, in queue order, and one task is picked from it at random. The main
    /// future keeps its place in the count of tasks run (`popped`), so it still gets its turn.
    fn pick_at_random(&self, local: &Local, shuffled: &Shuffled) -> Option<Job> {
        let mut pool = shuffled.pool.borrow_mut();
        while let Some(r) = self.pop_own(local) {
            pool.push(r);
        }
        while let Ok(r) = self.injector.pop() {
            pool.push(r);
        }
        if pool.is_empty() {
            return None;
        }
        let i = (shuffled.next() % pool.len() as u64) as usize;
        local.popped.set(local.popped.get() + 1);
        Some(pool.swap_remove(i))
    }

    fn steal(&self, local: &Local) -> Option<Job> {
        let n = self.workers.len();
        if n == 1 {
            return None;
        }
        let start = local.tick.get() as usize % n;
        let own = &self.workers[local.index].queue;
        for i in 0..n {
            let victim = (start + i) % n;
            if victim == local.index {
                continue;
            }
            let queue = &self.workers[victim].queue;
            let Ok(first) = queue.pop() else { continue };
            let half = queue.len() / 2;
            for _ in 0..half {
                match queue.pop() {
                    Ok(r) => {
                        if let Err(e) = own.push(r) {
                            self.push_remote(e.into_inner());
                            break;
                        }
                    }
                    Err(_) => break,
                }
            }
            return Some(first);
        }
        None
    }

    fn stop_searching(&self, driver: &Driver, local: &Local) {
        if local.searching.replace(false) && self.num_searching.fetch_sub(1, Ordering::SeqCst) == 1
        {
            // The last searcher found work; there may be more, so pass the baton.
            self.notify_one(driver);
        }
    }

    /// Runs queued tasks until none is left or `budget` ran. Returns how many ran.
    ///
    /// `main_here`: the main future is polled by this thread between batches (current-thread
    /// flavour). Once it is woken, the batch ends when the tasks queued before its wake-up have
    /// run, so the main future too runs in wake order: a checkpoint in it lets every task that
    /// was already runnable run once, and no more. (Without this a task that yields in a loop ran
    /// up to `budget` times before the main future's next poll.) While the main future is
    /// blocked this costs one load per task.
    fn run_tasks(&self, driver: &Driver, local: &Local, budget: usize, main_here: bool) -> usize {
        let mut ran = 0;
        while ran < budget {
            if main_here && self.main.woken.load(Ordering::Relaxed) {
                // Woken from another thread, the main future has no ticket yet: it queues now.
                let ticket = match local.main_ticket.get() {
                    Some(ticket) => ticket,
                    None => {
                        local.main_ticket.set(Some(local.pushed.get()));
                        local.pushed.get()
                    }
                };
                if local.popped.get() >= ticket {
                    break;
                }
            }
            if self.shutdown.load(Ordering::Relaxed) {
                break;
            }
            if local.tick.get() % MAINTENANCE_INTERVAL == 0 {
                self.maintenance(driver, local);
            }
            let Some(job) = self.find_task(local) else {
                break;
            };
            self.stop_searching(driver, local);
            job.run();
            ran += 1;
        }
        ran
    }

    /// Periodic upkeep of a busy worker: fire due timers, give back the memory of a past burst
    /// (see [`trim_thread_queue`]), and poll the reactor without blocking if no one else is
    /// driving it.
    fn maintenance(&self, driver: &Driver, local: &Local) {
        driver.fire_due_timers();
        trim_thread_queue(local);
        if !driver.reactor.has_sources() {
            return;
        }
        let mut idle = self.idle();
        if idle.driver_taken {
            return;
        }
        idle.driver_taken = true;
        drop(idle);
        driver.turn(Some(Duration::ZERO));
        self.idle().driver_taken = false;
    }

    /// Parks an idle worker: as the driver if the role is free, else on its parker.
    fn park<H: Host>(&self, host: &H, local: &Local) {
        let mut idle = self.idle();
        if local.searching.replace(false) {
            self.num_searching.fetch_sub(1, Ordering::SeqCst);
        }
        let now_idle = self.num_idle.fetch_add(1, Ordering::SeqCst) + 1;
        if now_idle == self.workers.len() && self.starting.load(Ordering::SeqCst) {
            self.main.parker.unpark();
        }
        if self.has_work()
            || self.shutdown.load(Ordering::SeqCst)
            || (self.flavor == Flavor::CurrentThread && self.main.woken.load(Ordering::SeqCst))
        {
            self.num_idle.fetch_sub(1, Ordering::SeqCst);
            return;
        }
        if !idle.driver_taken {
            idle.driver_taken = true;
            idle.driver_waiting = true;
            drop(idle);
            let (timeout, action) = host.idle_plan(self.is_quiescent());
            let progressed = host.driver().turn(timeout);
            let mut idle = self.idle();
            idle.driver_taken = false;
            if idle.driver_waiting {
                idle.driver_waiting = false;
                self.num_idle.fetch_sub(1, Ordering::SeqCst);
            }
            if std::mem::take(&mut idle.driver_notified) {
                local.searching.set(true);
            }
            drop(idle);
            if let Some(action) = action.filter(|_| !progressed && self.is_quiescent_but_me()) {
                host.run_idle_action(action);
            }
        } else {
            idle.sleepers.push(local.index);
            let all_idle = self.num_idle.load(Ordering::SeqCst) == self.workers.len();
            drop(idle);
            if all_idle && host.has_idle_watchers() {
                self.kick_driver(host.driver());
            }
            self.workers[local.index].parker.park();
            local.searching.set(true);
        }
    }

    /// Quiescent, counting the calling worker (which is awake) as idle.
    fn is_quiescent_but_me(&self) -> bool {
        self.num_idle.load(Ordering::SeqCst) + 1 >= self.workers.len()
            && !self.has_work()
            && !self.main.runnable()
    }

    /// The loop of a worker thread (and of the `block_on` thread on the current-thread flavour,
    /// which also polls the main future through `poll_main`). Returns when shutdown is set or
    /// `poll_main` reports the main future done.
    pub(crate) fn run_worker<H: Host>(
        &self,
        host: &H,
        index: usize,
        mut poll_main: Option<&mut dyn FnMut() -> bool>,
    ) {
        let driver = host.driver();
        let local = Local {
            scheduler: self,
            index,
            lifo: Cell::new(None),
            lifo_streak: Cell::new(0),
            searching: Cell::new(false),
            tick: Cell::new(0),
            pushed: Cell::new(0),
            popped: Cell::new(0),
            main_ticket: Cell::new(None),
            shuffled: self.seed.map(Shuffled::new),
            thread_queue: (self.flavor == Flavor::CurrentThread)
                .then(|| RefCell::new(VecDeque::new())),
        };
        LOCAL.with(|l| l.set(&local));
        struct Reset;
        impl Drop for Reset {
            fn drop(&mut self) {
                LOCAL.with(|l| l.set(ptr::null()));
            }
        }
        let _reset = Reset;
        loop {
            if let Some(poll_main) = poll_main.as_mut() {
                if self.main.woken.swap(false, Ordering::SeqCst) {
                    local.main_ticket.set(None);
                    if poll_main() {
                        break;
                    }
                    // The main future's polls count toward the maintenance interval as tasks'
                    // do: a main future that keeps finding its operations ready (and so wakes
                    // itself) must not starve timers and I/O, with no task queued to count.
                    let tick = local.tick.get().wrapping_add(1);
                    local.tick.set(tick);
                    if tick % MAINTENANCE_INTERVAL == 0 {
                        self.maintenance(driver, &local);
                    }
                }
            }
            if self.shutdown.load(Ordering::SeqCst) {
                break;
            }
            // Between two polls of the main future, run a bounded batch so it is not starved.
            if self.run_tasks(driver, &local, 256, poll_main.is_some()) == 0 {
                self.park(host, &local);
                if host.must_stop() {
                    break;
                }
            }
        }
        // A task left in the LIFO slot, the thread's queue or the seeded pool goes where the
        // final drain finds it.
        if let Some(r) = local.lifo.take() {
            self.push_remote(r);
        }
        if let Some(queue) = &local.thread_queue {
            queue.take().into_iter().for_each(|r| self.push_remote(r));
        }
        if let Some(shuffled) = &local.shuffled {
            shuffled
                .pool
                .take()
                .into_iter()
                .for_each(|r| self.push_remote(r));
        }
    }

    /// Multi-threaded flavour, before the first poll of the main future: sleeps on the main
    /// parker until every worker has gone idle, or until `limit` has passed (module comment,
    /// "Start-up"). Call after spawning the workers, and [`expect_workers`](Self::expect_workers)
    /// before.
    pub(crate) fn wait_for_workers(&self, limit: Duration) {
        let deadline = Instant::now() + limit;
        let mut in_time = true;
        while self.num_idle.load(Ordering::SeqCst) < self.workers.len() {
            if !self.main.parker.park_until(deadline) {
                in_time = false;
                break;
            }
        }
        self.starting.store(false, Ordering::SeqCst);
        self.idle_in_time.store(in_time, Ordering::SeqCst);
    }

    /// Asks the last worker to go idle to wake the `block_on` thread (see
    /// [`wait_for_workers`](Self::wait_for_workers)). Call before spawning the workers.
    pub(crate) fn expect_workers(&self) {
        self.starting.store(true, Ordering::SeqCst);
    }

    /// Stops the workers; they exit their loops.
    pub(crate) fn begin_shutdown(&self, driver: &Driver) {
        self.shutdown.store(true, Ordering::SeqCst);
        let sleepers = std::mem::take(&mut self.idle().sleepers);
        for index in sleepers {
            self.workers[index].parker.unpark();
        }
        driver.notify();
    }

    /// Drops every queued task (after workers stopped). Dropping a task may reschedule others
    /// (their last waker went away), so repeat until the queues stay empty.
    pub(crate) fn drain(&self) {
        // From now on a push fails and drops its task at once (`push_remote`): a task woken or
        // spawned after this point (from another thread) can no longer be stranded in a queue
        // nobody empties, which would also keep the runtime alive through its schedule function.
        self.injector.close();
        loop {
            let mut dropped = false;
            while let Ok(r) = self.injector.pop() {
                drop(r);
                dropped = true;
            }
            for w in self.workers.iter() {
                while let Ok(r) = w.queue.pop() {
                    drop(r);
                    dropped = true;
                }
            }
            if !dropped {
                break;
            }
        }
    }
}

/// A current-thread worker's queue is a `VecDeque`, which keeps the capacity of its longest
/// burst: 100 000 tasks spawned at once leave 2 MiB behind (21 bytes for each task, after they
/// have all parked). Halved at each maintenance while at most a quarter full, down to
/// [`TRIM_QUEUE_ABOVE`], so memory follows the queue back down; each element is moved at most
/// twice per burst on its way (amortised O(1)). The multi-thread flavour's queues are bounded,
/// or give their blocks back as they drain.
fn trim_thread_queue(local: &Local) {
    if let Some(queue) = &local.thread_queue {
        trim_queue(&mut queue.borrow_mut());
    }
}

/// One step of [`trim_thread_queue`].
fn trim_queue<T>(queue: &mut VecDeque<T>) {
    if queue.capacity() > TRIM_QUEUE_ABOVE && queue.len() <= queue.capacity() / 4 {
        queue.shrink_to((queue.capacity() / 2).max(TRIM_QUEUE_ABOVE));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A burst's capacity is given back step by step as the queue drains, never below what it
    /// holds or below the floor; a queue in use at more than a quarter keeps its capacity.
    #[test]
    fn a_drained_queue_gives_its_burst_capacity_back() {
        let mut queue: VecDeque<u32> = (0..100_000).collect();
        let burst = queue.capacity();
        assert!(burst >= 100_000);
        trim_queue(&mut queue);
        assert_eq!(queue.capacity(), burst, "a full queue keeps its capacity");

        queue.drain(..99_000);
        let mut steps = 0;
        while queue.capacity() > TRIM_QUEUE_ABOVE {
            let before = queue.capacity();
            trim_queue(&mut queue);
            assert!(queue.capacity() < before, "each step shrinks");
            steps += 1;
        }
        // 100 000 → 50 000 → 25 000 → 12 500 → 6 250 → 4 096: one halving per maintenance.
        assert_eq!(steps, 5);
        assert_eq!(queue.capacity(), TRIM_QUEUE_ABOVE);
        assert_eq!(queue.len(), 1_000);
        assert!(
            queue.iter().copied().eq(99_000..100_000),
            "order and contents kept"
        );
        trim_queue(&mut queue);
        assert_eq!(queue.capacity(), TRIM_QUEUE_ABOVE, "not below the floor");
    }
}
