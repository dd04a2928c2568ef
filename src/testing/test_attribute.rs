//! What `#[trellis::async_test]` expands to calls: [`Config`], built from the attribute's options
//! over the flavour's defaults, and [`run`], which runs one test on a fresh runtime under a
//! real-time watchdog. Public for the generated code only (`trellis::testing::__private`); not
//! an API.
//!
//! The watchdog: the test runs on a thread of its own, named after the test, which sends its
//! outcome down a channel when it finishes; the test's thread waits on that channel for at most
//! `timeout_ms` of real time. A test that runs longer fails with a panic that names it; its
//! thread cannot be stopped from outside and is left to the end of the test process. A panic of
//! the test drops the channel's sender unsent: the test's thread then joins it and resumes the
//! panic, payload unchanged, so `#[should_panic(expected = "...")]` sees the test's own message.

use std::fmt;
use std::future::Future;
use std::panic;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::thread;
use std::time::Duration;

use crate::runtime::{CtrlC, Flavor, Runtime, DEFAULT_THREAD_STACK_SIZE};
use crate::testing::MockClock;

/// How long a test may run in real time when `timeout_ms` is not given.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);

/// One test's runtime settings. The attribute emits a constructor for its flavour, then one
/// call per option given.
#[derive(Debug, Clone)]
pub struct Config {
    flavor: Flavor,
    /// Worker threads of the multi-threaded flavour; `None`: one per core.
    workers: Option<usize>,
    /// A mock clock, rather than the system's.
    mock_clock: bool,
    /// Whether the mock clock jumps to the next timer as soon as every task is blocked.
    autojump: bool,
    detect_deadlocks: bool,
    yield_budget: u32,
    /// `Builder::schedule_seed`, if any.
    schedule_seed: Option<u64>,
    /// The watchdog's limit, in real time.
    timeout: Duration,
}

impl Config {
    /// The default: current-thread, a mock clock that autojumps at once (trio's
    /// `autojump_clock`), deadlock detection on, the runtime's default yield budget.
    pub const fn current_thread() -> Config {
        Config {
            flavor: Flavor::CurrentThread,
            workers: None,
            mock_clock: true,
            autojump: true,
            detect_deadlocks: true,
            yield_budget: crate::DEFAULT_YIELD_BUDGET,
            schedule_seed: None,
            timeout: DEFAULT_TIMEOUT,
        }
    }

    /// Multi-threaded with `workers` threads (`None`: one per core), on the system clock; no
    /// deadlock detection, which the runtime offers on the current-thread flavour only.
    pub const fn multi_thread(workers: Option<usize>) -> Config {
        Config {
            flavor: Flavor::MultiThread,
            workers,
            mock_clock: false,
            autojump: true,
            detect_deadlocks: false,
            yield_budget: crate::DEFAULT_YIELD_BUDGET,
            schedule_seed: None,
            timeout: DEFAULT_TIMEOUT,
        }
    }

    /// `clock = "mock"`.
    pub const fn mock_clock(mut self) -> Config {
        self.mock_clock = true;
        self
    }

    /// `clock = "real"`.
    pub const fn real_clock(mut self) -> Config {
        self.mock_clock = false;
        self
    }

    /// `autojump = ...`; `false` leaves the mock clock stopped until the test moves it.
    pub const fn autojump(mut self, on: bool) -> Config {
        self.autojump = on;
        self
    }

    /// `detect_deadlocks = ...`.
    pub const fn detect_deadlocks(mut self, on: bool) -> Config {
        self.detect_deadlocks = on;
        self
    }

    /// `yield_budget = ...`, as [`Builder::yield_budget`](crate::Builder::yield_budget).
    pub const fn yield_budget(mut self, n: u32) -> Config {
        self.yield_budget = n;
        self
    }

    /// `schedule_seed = ...`, as [`Builder::schedule_seed`](crate::Builder::schedule_seed).
    pub const fn schedule_seed(mut self, seed: u64) -> Config {
        self.schedule_seed = Some(seed);
        self
    }

    /// `timeout_ms = ...`.
    pub const fn timeout_ms(mut self, ms: u64) -> Config {
        self.timeout = Duration::from_millis(ms);
        self
    }

    /// A fresh runtime with these settings. Ctrl-C is left alone, so that it stops the test
    /// process as it would without trellis.
    fn runtime(&self, test: &str) -> Runtime {
        let mut builder = Runtime::builder()
            .flavor(self.flavor)
            .yield_budget(self.yield_budget)
            .detect_deadlocks(self.detect_deadlocks)
            .ctrl_c(CtrlC::Ignore);
        if let Some(n) = self.workers {
            builder = builder.worker_threads(n);
        }
        if let Some(seed) = self.schedule_seed {
            builder = builder.schedule_seed(seed);
        }
        if self.mock_clock {
            let clock = MockClock::new();
            clock.set_autojump_threshold(self.autojump.then_some(Duration::ZERO));
            builder = builder.clock(clock);
        }
        match builder.build() {
            Ok(rt) => rt,
            Err(e) => panic!("test `{test}`: could not build its runtime: {e}"),
        }
    }
}

/// What a test fn may return: `()`, or `Result<(), E>` with `E: Debug`, as for `#[test]`.
#[diagnostic::on_unimplemented(
    message = "a #[trellis::async_test] fn returns `()` or `Result<(), E>` with `E: Debug`, not `{Self}`",
    label = "return `()` or a `Result<(), E>` here"
)]
pub trait TestOutput: Sized {
    /// What the generated `#[test]` fn returns: `()`, or a `Result` whose error prints as the
    /// test's own error did.
    type Report;

    /// The failure this output reports, as the `Debug` text of its error.
    fn failure(self) -> Option<String>;

    /// The generated fn's return value for a failure found by [`failure`](TestOutput::failure)
    /// (always `None` for `()`).
    fn report(failure: Option<String>) -> Self::Report;
}

impl TestOutput for () {
    type Report = ();

    fn failure(self) -> Option<String> {
        None
    }

    fn report(_: Option<String>) {}
}

impl<E: fmt::Debug> TestOutput for Result<(), E> {
    type Report = Result<(), TestError>;

    fn failure(self) -> Option<String> {
        self.err().map(|e| format!("{e:?}"))
    }

    fn report(failure: Option<String>) -> Result<(), TestError> {
        failure.map_or(Ok(()), |text| Err(TestError(text)))
    }
}

/// A test's error, carried as its `Debug` text from the test's thread (the error itself need
/// not be `Send`). Its `Debug` is that text, so the harness prints `Error: ...` exactly as for
/// a `#[test]` that returned the error.
pub struct TestError(String);

impl fmt::Debug for TestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Runs `test` on a fresh runtime built from `config`, on a thread of its own, and fails with a
/// panic naming the test if it is still running after the configured timeout of real time.
/// `path` is `module_path!()` and the test's name; the crate name is dropped, as the test
/// harness does.
#[track_caller]
pub fn run<F, Fut>(
    config: Config,
    path: &'static str,
    test: F,
) -> <Fut::Output as TestOutput>::Report
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: Future,
    Fut::Output: TestOutput,
{
    let name = path.split_once("::").map_or(path, |(_, rest)| rest);
    let timeout = config.timeout;
    let (done, outcome) = mpsc::channel();
    let spawned = thread::Builder::new()
        .name(name.to_string())
        .stack_size(DEFAULT_THREAD_STACK_SIZE)
        .spawn(move || {
            let failure = config.runtime(name).block_on(test()).failure();
            let _ = done.send(failure);
        });
    let worker = match spawned {
        Ok(worker) => worker,
        Err(e) => panic!("test `{name}`: could not start its thread: {e}"),
    };
    match outcome.recv_timeout(timeout) {
        Ok(failure) => {
            let _ = worker.join();
            <Fut::Output as TestOutput>::report(failure)
        }
        Err(RecvTimeoutError::Disconnected) => match worker.join() {
            Err(panic) => panic::resume_unwind(panic),
            Ok(()) => unreachable!("the test's thread ended without sending its outcome"),
        },
        Err(RecvTimeoutError::Timeout) => panic!(
            "test `{name}` timed out: still running after {} ms of real time \
             (#[trellis::async_test(timeout_ms = ...)] sets the limit). Something blocks its thread \
             outside trellis, loops without reaching a checkpoint, or waits on the real clock \
             for longer than that",
            timeout.as_millis()
        ),
    }
}
