//! The runtime: building it, entering it with `block_on`/`run`, and shutting it down.
//!
//! A runtime is a [`Scheduler`](scheduler) (worker threads and run queues), a
//! [`Driver`](driver) (reactor, timer store, clock) and the root of the cancel tree. `block_on`
//! polls the given future on the calling thread, inside a task node named `main`; on the
//! current-thread flavour that thread is also the only worker.
//!
//! Shutdown, when the main future completes: (1) the root is cancelled with reason `Shutdown`,
//! which reaches anything still running on the runtime's behalf; (2) workers are woken and
//! joined; (3) every node of the cancel tree is closed to new tasks and every task still in it
//! (children of a nursery future that was leaked or returned out of the main future) is torn
//! down; timers, I/O registrations and queued tasks are dropped, repeatedly until nothing is
//! rescheduled, so every task future is gone before `block_on` returns; (4) the thread-local
//! context is restored, so another runtime can start on the same thread.

pub(crate) mod context;
pub(crate) mod driver;
mod idle;
pub(crate) mod instrument;
pub(crate) mod job;
pub(crate) mod park;
pub(crate) mod scheduler;
pub(crate) mod shared;
mod task_count;

pub use scheduler::Flavor;
pub(crate) use shared::Shared;

use std::future::Future;
use std::panic::{self, AssertUnwindSafe};
use std::pin::pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};
use std::thread;
use std::time::Duration;

use crate::cancel::current;
use crate::cancel::node::{self, NodeRef, PlainNode};
use crate::error::CancelReason;
use crate::task::local;
use crate::time::clock::{Clock, SystemClock};
use driver::Driver;
use idle::RuntimeHost;
use instrument::Hooks;
#[cfg(feature = "instrument")]
use instrument::Instrument;
use scheduler::WORKER_START_LIMIT;
use shared::Settings;

/// Configures and builds a [`Runtime`].
///
/// ```
/// use trellis::{Flavor, Runtime};
///
/// let rt = Runtime::builder()
///     .flavor(Flavor::MultiThread)
///     .worker_threads(2)
///     .thread_name("app-worker")
///     .build()
///     .unwrap();
/// assert_eq!(rt.block_on(async { 6 * 7 }), 42);
/// ```
#[derive(Debug)]
pub struct Builder {
    flavor: Flavor,
    workers: Option<usize>,
    yield_budget: u32,
    clock: Arc<dyn Clock>,
    thread_name: String,
    thread_stack_size: usize,
    ctrl_c: CtrlC,
    grace_period: Option<Duration>,
    detect_deadlocks: bool,
    schedule_seed: Option<u64>,
    instrument: Option<Hooks>,
}

/// What Ctrl-C (SIGINT) does while a runtime's [`block_on`](Runtime::block_on) runs; set with
/// [`Builder::ctrl_c`].
///
/// ```
/// use trellis::{CtrlC, Runtime};
///
/// // A program that handles SIGINT itself, with `trellis::signal::receiver`.
/// let rt = Runtime::builder().ctrl_c(CtrlC::Ignore).build().unwrap();
/// assert_eq!(rt.block_on(async { 1 }), 1);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum CtrlC {
    /// The default. The first Ctrl-C cancels the main future with
    /// [`CancelReason::Interrupted`](crate::CancelReason::Interrupted): every nursery is
    /// cancelled, cleanup runs and shields are honoured. Once `block_on` has shut down, the
    /// process ends as interrupted by SIGINT (status 130 in a shell), as an uncaught
    /// `KeyboardInterrupt` ends a Python program. A second Ctrl-C during the cleanup ends the
    /// process at once.
    #[default]
    Exit,
    /// As `Exit`, but `block_on` then returns the main future's output (which usually carries
    /// the cancellation) and the program goes on. A second Ctrl-C still ends it at once.
    Cancel,
    /// trellis leaves SIGINT alone: its usual action applies, or a
    /// [`signal::receiver`](crate::signal::receiver) of the program's own.
    Ignore,
}

/// Stack of each worker thread, by default. Rust polls nested futures recursively, so the depth
/// of nesting a task can reach is bounded by its worker's stack. 32 MiB holds 5 000 nested
/// nurseries (contract C9) even in a debug build, where a nursery level takes several KiB of
/// stack (a cancel scope level about 1.3 KiB; both far less in a release build). It is only
/// reserved address space: pages are committed as the stack actually grows, so an idle worker
/// costs no more than with a small stack.
pub const DEFAULT_THREAD_STACK_SIZE: usize = 32 << 20;

/// How many operations that complete without blocking may skip their schedule point in one poll
/// of a task, by default (see [`Builder::yield_budget`]). tokio's cooperative budget has the same
/// size; 0 gives trio's exact run order.
///
/// ```
/// assert_eq!(trellis::DEFAULT_YIELD_BUDGET, 128);
/// ```
pub const DEFAULT_YIELD_BUDGET: u32 = 128;

impl Default for Builder {
    fn default() -> Self {
        Builder {
            flavor: Flavor::MultiThread,
            workers: None,
            yield_budget: DEFAULT_YIELD_BUDGET,
            clock: Arc::new(SystemClock),
            thread_name: "trellis-worker".into(),
            thread_stack_size: DEFAULT_THREAD_STACK_SIZE,
            ctrl_c: CtrlC::default(),
            grace_period: None,
            detect_deadlocks: false,
            schedule_seed: None,
            instrument: None,
        }
    }
}

impl Builder {
    /// Multi-threaded (default) or current-thread.
    ///
    /// ```
    /// use trellis::{Flavor, Runtime};
    ///
    /// let rt = Runtime::builder().flavor(Flavor::CurrentThread).build().unwrap();
    /// assert_eq!(rt.block_on(async { 1 + 1 }), 2);
    /// ```
    pub fn flavor(mut self, flavor: Flavor) -> Self {
        self.flavor = flavor;
        self
    }

    /// Number of worker threads of the multi-threaded flavour (default: one per core). Zero is
    /// rejected by [`build`](Builder::build).
    ///
    /// ```
    /// use trellis::Runtime;
    ///
    /// let rt = Runtime::builder().worker_threads(2).build().unwrap();
    /// assert_eq!(rt.block_on(async { "on two workers" }), "on two workers");
    /// assert!(Runtime::builder().worker_threads(0).build().is_err());
    /// ```
    pub fn worker_threads(mut self, n: usize) -> Self {
        self.workers = Some(n);
        self
    }

    /// How many operations that complete without blocking (a `send` into a channel with room, a
    /// lock that is free, a read with data ready) may skip their schedule point in one poll of a
    /// task. Default [`DEFAULT_YIELD_BUDGET`] (128, as tokio's cooperative budget).
    ///
    /// Every operation is a cancel point whatever the budget: it checks cancellation and
    /// deadlines each time. What the budget spares is the *reschedule*: a task that keeps finding
    /// its operations ready runs on, and yields once every `n + 1` of them, so it can never
    /// starve the others (fairness), while message-heavy code stops paying a trip through the run
    /// queue per message. Once the budget is spent, an operation that takes something (a lock, a
    /// permit, a message) yields *before* taking it, so nothing is held across the yield. A
    /// write to a socket or pipe that completes at once always yields, whatever the budget: the
    /// read of the answer that usually follows it then more often finds it there, instead of
    /// failing and waiting (docs/design.md).
    ///
    /// `yield_budget(0)` is trio's rule: every ready operation yields once, after acting, and
    /// tasks run in exactly trio's order. Use it for tests that assert a run order across ready
    /// operations (`#[trellis::test(yield_budget = 0)]`). [`checkpoint`](crate::checkpoint)
    /// always yields, whatever the budget. Any value is accepted; a very large one (up to
    /// `u32::MAX`) lets a task whose operations keep completing at once run that many of them
    /// before another task gets a turn, so it trades fairness away for throughput.
    ///
    /// Measured (docs/benchmarks.md): 4 producers into one consumer, 152 → 37 ns per message;
    /// 8 tasks taking one mutex, 94 → 12 ns per lock (with the lock's own fast path).
    ///
    /// ```
    /// use trellis::Runtime;
    ///
    /// // trio's exact run order: every ready operation yields.
    /// let rt = Runtime::builder().yield_budget(0).build().unwrap();
    /// let sum = rt.block_on(async {
    ///     let (tx, rx) = trellis::channel::unbounded();
    ///     for i in 0..100u32 {
    ///         tx.send(i).await.unwrap();
    ///     }
    ///     drop(tx);
    ///     let mut sum = 0;
    ///     while let Ok(v) = rx.recv().await {
    ///         sum += v;
    ///     }
    ///     sum
    /// });
    /// assert_eq!(sum, 4950);
    /// ```
    pub fn yield_budget(mut self, n: u32) -> Self {
        self.yield_budget = n;
        self
    }

    /// The clock the runtime reads; e.g. a [`MockClock`](crate::testing::MockClock) in tests.
    ///
    /// ```
    /// use std::time::Duration;
    /// use trellis::testing::MockClock;
    ///
    /// let clock = MockClock::new();
    /// clock.set_autojump_threshold(Some(Duration::ZERO));
    /// let rt = trellis::Runtime::builder()
    ///     .flavor(trellis::Flavor::CurrentThread)
    ///     .clock(clock)
    ///     .build()
    ///     .unwrap();
    /// let slept = rt.block_on(async {
    ///     let start = trellis::now();
    ///     trellis::sleep(Duration::from_secs(600)).await.unwrap(); // virtual: no real wait
    ///     trellis::now() - start
    /// });
    /// assert!(slept >= Duration::from_secs(600));
    /// ```
    pub fn clock(mut self, clock: impl Clock) -> Self {
        self.clock = Arc::new(clock);
        self
    }

    /// Prefix of worker thread names (`{name}-{index}`).
    ///
    /// ```
    /// use trellis::Runtime;
    ///
    /// let rt = Runtime::builder().worker_threads(1).thread_name("app").build().unwrap();
    /// let name = rt.block_on(async {
    ///     trellis::nursery(|n| async move {
    ///         let task = n.spawn(async { Ok(std::thread::current().name().map(String::from)) })?;
    ///         task.await
    ///     })
    ///     .await
    ///     .unwrap()
    /// });
    /// assert_eq!(name.as_deref(), Some("app-0"));
    /// ```
    pub fn thread_name(mut self, name: impl Into<String>) -> Self {
        self.thread_name = name.into();
        self
    }

    /// Stack size in bytes of each worker thread of the multi-threaded flavour (default
    /// [`DEFAULT_THREAD_STACK_SIZE`], 32 MiB). Deeply nested futures need more: a future nested
    /// deeper than its worker's stack allows aborts the process with a stack overflow. Zero is
    /// rejected by [`build`](Builder::build). The current-thread flavour runs on the thread that
    /// calls `block_on` and uses that thread's stack.
    ///
    /// ```
    /// let rt = trellis::Runtime::builder()
    ///     .thread_stack_size(64 << 20)
    ///     .build()
    ///     .unwrap();
    /// assert_eq!(rt.block_on(async { 1 + 1 }), 2);
    /// ```
    pub fn thread_stack_size(mut self, bytes: usize) -> Self {
        self.thread_stack_size = bytes;
        self
    }

    /// What Ctrl-C does while the runtime runs (default [`CtrlC::Exit`]).
    ///
    /// ```
    /// let rt = trellis::Runtime::builder()
    ///     .ctrl_c(trellis::CtrlC::Cancel)
    ///     .build()
    ///     .unwrap();
    /// assert_eq!(rt.block_on(async { 2 }), 2);
    /// ```
    pub fn ctrl_c(mut self, ctrl_c: CtrlC) -> Self {
        self.ctrl_c = ctrl_c;
        self
    }

    /// The grace period of every cancel scope and nursery that sets none of its own (contract
    /// B3): once cancelled, code under it gets this long to finish cooperatively; whatever is
    /// left then is dropped, as a forced teardown drops it (N11). `None`, the default, is
    /// trio's behaviour: code parked in trellis operations is waited for however long its
    /// cleanup takes, and code in a wait trellis cannot see is dropped at once (B1).
    ///
    /// ```
    /// use std::time::Duration;
    ///
    /// let rt = trellis::Runtime::builder()
    ///     .grace_period(Some(Duration::from_secs(5)))
    ///     .build()
    ///     .unwrap();
    /// assert_eq!(rt.block_on(async { 3 }), 3);
    /// ```
    pub fn grace_period(mut self, period: Option<Duration>) -> Self {
        self.grace_period = period;
        self
    }

    /// Detects deadlocks instead of hanging (default off): when every task and the main future
    /// are blocked in trellis waits and nothing can wake any of them — no timer pending that
    /// the clock will reach (a stopped mock clock without autojump reaches none), no
    /// descriptor registered with the reactor, no `run_blocking` call in flight, no
    /// [`Portal`](crate::thread::Portal) alive, no task in a wait trellis cannot see — `block_on`
    /// panics with a message that shows the task tree, each task with the operation it waits in
    /// (`waits in sync::Mutex::lock`), instead of waiting for ever.
    ///
    /// A wake-up from a thread trellis does not know of (a plain thread setting an
    /// [`Event`](crate::sync::Event) or sending on a channel) would be missed: route such
    /// threads through a `Portal` or `run_blocking`, or leave detection off.
    ///
    /// Current-thread flavour only, where the one thread that runs every task also decides,
    /// so nothing can happen between "everything is blocked" and the report; `build` refuses
    /// it on the multi-threaded flavour.
    ///
    /// ```
    /// use trellis::{testing::MockClock, Flavor, Runtime};
    ///
    /// let rt = Runtime::builder()
    ///     .flavor(Flavor::CurrentThread)
    ///     .clock(MockClock::new())
    ///     .detect_deadlocks(true)
    ///     .build()
    ///     .unwrap();
    /// let deadlock = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
    ///     rt.block_on(async {
    ///         let never_set = trellis::sync::Event::new();
    ///         never_set.wait().await // nobody can ever set it
    ///     })
    /// }));
    /// assert!(deadlock.is_err());
    /// ```
    pub fn detect_deadlocks(mut self, detect: bool) -> Self {
        self.detect_deadlocks = detect;
        self
    }

    /// Runs tasks in an order chosen by `seed` instead of wake order: whenever the scheduler
    /// picks the next task, it picks one of all the runnable ones at random, from a generator
    /// seeded with `seed`. A test that passes under the default order can fail under another
    /// (an ordering bug: code that assumes a task it spawned already ran); running it under
    /// many seeds finds such orders, and the same seed replays the same order exactly, as long
    /// as nothing outside the runtime (real I/O, real time, other threads) decides what
    /// happens. When the main future panics, the seed is printed to standard error.
    /// [`testing::explore_schedules`](crate::testing::explore_schedules) runs a test under a
    /// range of seeds.
    ///
    /// Current-thread flavour only (on worker threads the order is the operating system's);
    /// `build` refuses it on the multi-threaded flavour.
    ///
    /// ```
    /// use std::sync::{Arc, Mutex};
    /// use trellis::{Flavor, Runtime};
    ///
    /// let order = |seed| {
    ///     let rt = Runtime::builder().flavor(Flavor::CurrentThread).schedule_seed(seed).build();
    ///     rt.unwrap().block_on(async {
    ///         let log = Arc::new(Mutex::new(Vec::new()));
    ///         trellis::nursery(|n| async move {
    ///             for i in 0..4 {
    ///                 let log = log.clone();
    ///                 n.spawn(async move {
    ///                     log.lock().unwrap().push(i);
    ///                     Ok(())
    ///                 })?;
    ///             }
    ///             Ok::<_, trellis::Error>(log)
    ///         })
    ///         .await
    ///         .unwrap()
    ///         .lock()
    ///         .unwrap()
    ///         .clone()
    ///     })
    /// };
    /// assert_eq!(order(7), order(7)); // the same seed, the same order
    /// ```
    pub fn schedule_seed(mut self, seed: u64) -> Self {
        self.schedule_seed = Some(seed);
        self
    }

    /// Calls `instrument`'s hooks as tasks are spawned, woken, polled and end (see
    /// [`lowlevel::Instrument`](crate::lowlevel::Instrument) for the events, their order and an
    /// example). Feature `instrument`: without it the hook points are compiled out, so a build
    /// that does not use them pays nothing; with it, a runtime without an instrument pays the
    /// load of one flag and a branch per hook point.
    ///
    /// ```
    /// use std::sync::atomic::{AtomicUsize, Ordering};
    /// use std::sync::Arc;
    /// use trellis::lowlevel::{Instrument, TaskEvent};
    ///
    /// #[derive(Default)]
    /// struct Spawns(AtomicUsize);
    /// impl Instrument for Spawns {
    ///     fn task_spawned(&self, _: TaskEvent<'_>, _: Option<u64>) {
    ///         self.0.fetch_add(1, Ordering::Relaxed);
    ///     }
    /// }
    ///
    /// let spawns = Arc::new(Spawns::default());
    /// let rt = trellis::Runtime::builder().instrument(spawns.clone()).build().unwrap();
    /// rt.block_on(async {
    ///     trellis::nursery(|n| async move {
    ///         n.spawn(async { Ok(()) })?;
    ///         Ok::<_, trellis::Error>(())
    ///     })
    ///     .await
    ///     .unwrap();
    /// });
    /// assert_eq!(spawns.0.load(Ordering::Relaxed), 1);
    /// ```
    #[cfg(feature = "instrument")]
    pub fn instrument(mut self, instrument: Arc<dyn Instrument>) -> Self {
        self.instrument = Some(Hooks(instrument));
        self
    }

    /// Builds the runtime. Fails if `worker_threads(0)` or `thread_stack_size(0)` was asked.
    ///
    /// ```
    /// use trellis::Runtime;
    ///
    /// let rt = Runtime::builder().build().unwrap();
    /// assert_eq!(rt.block_on(async { 3 }), 3);
    /// assert!(Runtime::builder().thread_stack_size(0).build().is_err());
    /// ```
    pub fn build(self) -> Result<Runtime, crate::Error> {
        if self.thread_stack_size == 0 {
            return Err(crate::Error::InvalidArgument(
                "thread_stack_size must be > 0",
            ));
        }
        if self.detect_deadlocks && self.flavor == Flavor::MultiThread {
            return Err(crate::Error::InvalidArgument(
                "detect_deadlocks needs the current-thread flavour (Flavor::CurrentThread)",
            ));
        }
        if self.schedule_seed.is_some() && self.flavor == Flavor::MultiThread {
            return Err(crate::Error::InvalidArgument(
                "schedule_seed needs the current-thread flavour (Flavor::CurrentThread)",
            ));
        }
        let workers = match self.flavor {
            Flavor::CurrentThread => 1,
            Flavor::MultiThread => match self.workers {
                Some(0) => return Err(crate::Error::InvalidArgument("worker_threads must be > 0")),
                Some(n) => n,
                None => thread::available_parallelism().map_or(1, |n| n.get()),
            },
        };
        // Decided before any task of the process runs, so that every poll takes the fast path.
        crate::asymmetric_fence::prepare();
        Ok(Runtime {
            config: self,
            workers,
            worker_start_limit: WORKER_START_LIMIT,
        })
    }
}

/// A trellis runtime. Each [`block_on`](Runtime::block_on) starts the worker threads, runs the
/// future, and shuts everything down again before returning.
///
/// ```
/// use std::time::Duration;
/// use trellis::Runtime;
///
/// let rt = Runtime::new().unwrap();
/// // The same runtime may run several futures, one after the other.
/// let first = rt.block_on(async {
///     trellis::sleep(Duration::from_millis(1)).await.unwrap();
///     "first"
/// });
/// let second = rt.block_on(async { "second" });
/// assert_eq!((first, second), ("first", "second"));
/// ```
#[derive(Debug)]
pub struct Runtime {
    /// The settings, checked by `build`.
    config: Builder,
    /// The number of workers, resolved from `config`.
    workers: usize,
    /// How long `block_on` waits for the workers to go idle before the first poll.
    worker_start_limit: Duration,
}

/// Wakes the main future.
struct MainWaker {
    shared: Arc<Shared>,
}

impl Wake for MainWaker {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }
    fn wake_by_ref(self: &Arc<Self>) {
        self.shared.scheduler.wake_main(&self.shared.driver);
    }
}

impl Runtime {
    /// A builder with the defaults: multi-threaded, one worker per core, system clock.
    ///
    /// ```
    /// let rt = trellis::Runtime::builder().worker_threads(1).build().unwrap();
    /// assert_eq!(rt.block_on(async { 'x' }), 'x');
    /// ```
    pub fn builder() -> Builder {
        Builder::default()
    }

    /// A multi-threaded runtime with the defaults.
    ///
    /// ```
    /// let rt = trellis::Runtime::new().unwrap();
    /// assert!(rt.block_on(async { trellis::checkpoint().await.is_ok() }));
    /// ```
    pub fn new() -> Result<Runtime, crate::Error> {
        Builder::default().build()
    }

    /// Runs `future` to completion on this runtime and returns its output (R1). A panic in it
    /// propagates out of `block_on` unchanged, after the runtime has shut down.
    ///
    /// # Panics
    /// If called from inside a trellis runtime (R2): blocking a worker on a nested runtime would
    /// deadlock. Use `.await` instead.
    ///
    /// ```
    /// use trellis::Runtime;
    ///
    /// let rt = Runtime::new().unwrap();
    /// let total = rt.block_on(async {
    ///     trellis::nursery(|n| async move {
    ///         let a = n.spawn(async { Ok(1) })?;
    ///         let b = n.spawn(async { Ok(2) })?;
    ///         Ok::<_, trellis::Error>(a.await? + b.await?)
    ///     })
    ///     .await
    ///     .unwrap()
    /// });
    /// assert_eq!(total, 3);
    /// ```
    pub fn block_on<F: Future>(&self, future: F) -> F::Output {
        if context::in_runtime() {
            panic!(
                "trellis::Runtime::block_on (or trellis::run) was called from inside a trellis \
                 runtime; await the future instead of starting a nested runtime"
            );
        }
        let driver = match Driver::new(self.config.clock.clone()) {
            Ok(d) => d,
            Err(e) => panic!("trellis: could not create the I/O poller: {e}"),
        };
        let settings = Settings {
            flavor: self.config.flavor,
            workers: self.workers,
            yield_budget: self.config.yield_budget,
            grace_period: self.config.grace_period,
            detect_deadlocks: self.config.detect_deadlocks,
            schedule_seed: self.config.schedule_seed,
            instrument: self.config.instrument.as_ref().map(|h| h.0.clone()),
        };
        let shared = Arc::new(Shared::new(driver, settings));
        let root = PlainNode::root(&shared);
        let _rt_guard = context::enter_runtime(shared.clone());
        let main = PlainNode::main_task();
        // A root is no nursery: it never refuses a child.
        let _ = node::link(root.clone().into(), main.clone().into(), &main);
        let main_node: NodeRef = main.into();
        // Ctrl-C handling is best effort: without a signal slot or pipe, the runtime still runs.
        let ctrl_c = match self.config.ctrl_c {
            CtrlC::Ignore => None,
            CtrlC::Exit | CtrlC::Cancel => crate::signal::ctrl_c::register(main_node.clone()).ok(),
        };

        // The main future counts as runnable from here on, before its first poll: the workers go
        // idle before it runs (see `wait_for_workers`), and a run whose main future has not even
        // started is not quiescent (no task is blocked yet).
        shared.scheduler.main.woken.store(true, Ordering::SeqCst);
        let mut threads = Vec::new();
        if self.config.flavor == Flavor::MultiThread {
            shared.scheduler.expect_workers();
            for index in 0..self.workers {
                let shared = shared.clone();
                let root = root.clone();
                let spawned = thread::Builder::new()
                    .name(format!("{}-{index}", self.config.thread_name))
                    .stack_size(self.config.thread_stack_size)
                    .spawn(move || {
                        let _guard = context::enter_runtime(shared.clone());
                        let host = RuntimeHost {
                            shared: &shared,
                            root: &root,
                        };
                        shared.scheduler.run_worker(&host, index, None);
                    });
                match spawned {
                    Ok(handle) => threads.push(handle),
                    Err(e) => panic!("trellis: could not start a worker thread: {e}"),
                }
            }
            shared.scheduler.wait_for_workers(self.worker_start_limit);
        }

        let waker = Waker::from(Arc::new(MainWaker {
            shared: shared.clone(),
        }));
        let host = RuntimeHost {
            shared: &shared,
            root: &root,
        };
        let mut future = pin!(future);
        let mut output = None;
        // Task-locals set around `block_on` (`TaskLocal::sync_scope`) belong to the main future
        // only; tasks polled on this thread must find none in effect (see `task::local`).
        let main_locals = local::snapshot();
        let _no_locals = local::enter(None);
        let outcome = {
            let mut poll_main = || {
                current::begin_poll();
                current::begin_other_poll();
                let _node = current::set_node_ref(&main_node);
                let _locals = main_locals.as_ref().map(|c| local::enter(Some(c.clone())));
                let mut cx = Context::from_waker(&waker);
                match future.as_mut().poll(&mut cx) {
                    Poll::Ready(v) => {
                        output = Some(v);
                        true
                    }
                    Poll::Pending => {
                        let parked = current::parked_in_poll();
                        shared
                            .watchdog
                            .main_foreign
                            .store(!parked, Ordering::SeqCst);
                        false
                    }
                }
            };
            panic::catch_unwind(AssertUnwindSafe(|| {
                match self.config.flavor {
                    Flavor::CurrentThread => {
                        shared.scheduler.run_worker(&host, 0, Some(&mut poll_main));
                    }
                    Flavor::MultiThread => loop {
                        let main = &shared.scheduler.main;
                        // `running` covers the poll (see `MainState::running`).
                        main.running.store(true, Ordering::SeqCst);
                        if main.woken.swap(false, Ordering::SeqCst) {
                            let done = poll_main();
                            main.running.store(false, Ordering::SeqCst);
                            if done {
                                break;
                            }
                            continue;
                        }
                        main.running.store(false, Ordering::SeqCst);
                        if shared.watchdog.tripped() {
                            break;
                        }
                        if shared.scheduler.is_quiescent() && shared.has_idle_watchers() {
                            shared.scheduler.kick_driver(&shared.driver);
                        }
                        shared.scheduler.main.parker.park();
                    },
                }
            }))
        };

        // Shutdown, steps 1-4 of the module comment.
        node::cancel(root.as_ref(), CancelReason::Shutdown);
        shared.scheduler.begin_shutdown(&shared.driver);
        for t in threads {
            let _ = t.join();
        }
        node::shut_down(root.as_ref());
        node::unlink(&main_node);
        shared.driver.timers.clear();
        shared.scheduler.drain();
        drop(waker);
        let report = shared.watchdog.take_report();
        // A report made in the instant between the main future's completion and the shutdown
        // (everything idle, nothing left to wake) is no deadlock: the run finished.
        if let Some(tree) = report.filter(|_| output.is_none() && outcome.is_ok()) {
            panic!(
                "trellis: deadlock: every task is blocked and nothing can wake any of them (no \
                 timer pending, no I/O registered, no thread or portal that could); the tasks \
                 were:\n{tree}"
            );
        }
        let interrupted = ctrl_c.as_ref().is_some_and(|c| c.interrupted());
        drop(ctrl_c);
        if interrupted && self.config.ctrl_c == CtrlC::Exit {
            crate::signal::ctrl_c::exit_now();
        }
        match outcome {
            Ok(()) => output.expect("main future completed"),
            Err(panic) => {
                if let Some(seed) = self.config.schedule_seed {
                    eprintln!(
                        "trellis: the run that panicked used schedule seed {seed}; \
                         Builder::schedule_seed({seed}) replays its order"
                    );
                }
                panic::resume_unwind(panic)
            }
        }
    }
}

/// Runs `future` on a new multi-threaded runtime (one worker per core) and returns its output.
///
/// ```
/// let answer = trellis::run(async {
///     trellis::sleep(std::time::Duration::from_millis(1)).await.unwrap();
///     42
/// });
/// assert_eq!(answer, 42);
/// ```
///
/// # Panics
/// Inside a running trellis runtime (R2), or if the operating system refuses a poller or threads.
pub fn run<F: Future>(future: F) -> F::Output {
    match Runtime::new() {
        Ok(rt) => rt.block_on(future),
        Err(e) => panic!("trellis::run could not build the runtime: {e}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The main future's first poll comes once every worker has started and gone idle
    /// (scheduler module comment, "Start-up"): the tasks it spawns reach workers that sleep, by
    /// wake-ups, never threads that are still starting. The wait ends on the last worker's
    /// wake-up, not at its limit, which is raised here so that a slow thread start cannot end it
    /// early.
    #[test]
    fn the_first_poll_of_the_main_future_finds_every_worker_idle() {
        for workers in [1, 2, 4] {
            let mut rt = Runtime::builder().worker_threads(workers).build().unwrap();
            rt.worker_start_limit = Duration::from_secs(10);
            let (idle, in_time) = rt.block_on(async {
                context::with_shared(|shared| shared.unwrap().scheduler.idle_workers())
            });
            assert_eq!(
                idle, workers,
                "idle workers at the first poll, of {workers}"
            );
            assert!(
                in_time,
                "the wait ended at its limit, with {workers} workers"
            );
        }
    }
}
