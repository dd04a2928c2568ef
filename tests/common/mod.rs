//! Helpers shared by the behaviour tests: runtimes, event logs, drop counters, and small future
//! combinators (poll once, catch a panic) written out here so the tests need no extra crates.

#![allow(dead_code)] // each test file uses a different subset

use std::any::Any;
use std::future::Future;
use std::panic::{self, AssertUnwindSafe};
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use trellis::testing::MockClock;
use trellis::{Flavor, Runtime};

/// A current-thread runtime on a mock clock that autojumps as soon as every task is blocked:
/// tasks run in spawn/wake order and virtual times are exact.
pub fn current_thread() -> (Runtime, MockClock) {
    let clock = MockClock::new();
    clock.set_autojump_threshold(Some(Duration::ZERO));
    let rt = Runtime::builder()
        .flavor(Flavor::CurrentThread)
        .clock(clock.clone())
        .build()
        .expect("a current-thread runtime builds");
    (rt, clock)
}

/// Runs `f` on a fresh [`current_thread`] runtime.
pub fn block_on_current<F: Future>(f: F) -> F::Output {
    current_thread().0.block_on(f)
}

/// A multi-threaded runtime with `workers` workers and the system clock.
pub fn multi_thread(workers: usize) -> Runtime {
    Runtime::builder()
        .flavor(Flavor::MultiThread)
        .worker_threads(workers)
        .build()
        .expect("a multi-thread runtime builds")
}

/// An ordered record of what happened, shared between tasks.
#[derive(Clone, Default)]
pub struct Log(Arc<Mutex<Vec<String>>>);

impl Log {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn push(&self, event: impl Into<String>) {
        self.0.lock().unwrap().push(event.into());
    }

    pub fn take(&self) -> Vec<String> {
        std::mem::take(&mut *self.0.lock().unwrap())
    }
}

/// Counts drops: each [`DropCounter::guard`] increments the count when it is dropped. A child
/// future that owns a guard proves, by the count, that the future itself was dropped.
#[derive(Clone, Default)]
pub struct DropCounter(Arc<AtomicUsize>);

impl DropCounter {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn guard(&self) -> DropGuard {
        DropGuard(self.0.clone())
    }

    pub fn count(&self) -> usize {
        self.0.load(Ordering::SeqCst)
    }
}

pub struct DropGuard(Arc<AtomicUsize>);

impl Drop for DropGuard {
    fn drop(&mut self) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

/// Polls `fut` exactly once with the current task's waker and reports whether it finished.
pub async fn poll_once<F: Future + Unpin>(fut: &mut F) -> Poll<F::Output> {
    std::future::poll_fn(|cx| Poll::Ready(Pin::new(&mut *fut).poll(cx))).await
}

/// Polls `fut` once with a no-op waker, outside any runtime.
pub fn poll_outside<F: Future>(fut: F) -> Poll<F::Output> {
    let mut fut = std::pin::pin!(fut);
    fut.as_mut().poll(&mut Context::from_waker(Waker::noop()))
}

/// Resolves to the future's output, or to the payload of a panic raised while polling it.
pub struct CatchUnwind<F>(pub Pin<Box<F>>);

pub fn catch_unwind<F: Future>(fut: F) -> CatchUnwind<F> {
    CatchUnwind(Box::pin(fut))
}

impl<F: Future> Future for CatchUnwind<F> {
    type Output = Result<F::Output, Box<dyn Any + Send>>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match panic::catch_unwind(AssertUnwindSafe(|| self.0.as_mut().poll(cx))) {
            Ok(Poll::Pending) => Poll::Pending,
            Ok(Poll::Ready(v)) => Poll::Ready(Ok(v)),
            Err(payload) => Poll::Ready(Err(payload)),
        }
    }
}

/// The text of a panic payload (`&str` or `String`), for asserting on messages.
pub fn panic_message(payload: &(dyn Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        panic!("panic payload is neither &str nor String")
    }
}

/// Runs `f`, expects it to panic, and returns the panic's message.
pub fn panic_text<R>(f: impl FnOnce() -> R) -> String {
    match panic::catch_unwind(AssertUnwindSafe(f)) {
        Ok(_) => panic!("expected a panic"),
        Err(payload) => panic_message(payload.as_ref()),
    }
}

/// Virtual seconds elapsed since `t0` on the runtime's clock.
pub fn since(t0: std::time::Instant) -> Duration {
    trellis::now() - t0
}

pub fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

/// An error type for tests: comparable with `assert_eq!`, and it carries cancellations so that
/// scopes and nurseries recognise them.
#[derive(Debug, Clone, PartialEq)]
pub enum TestError {
    Cancelled(trellis::Cancelled),
    Fail(&'static str),
    Trellis(String),
}

impl From<trellis::Cancelled> for TestError {
    fn from(c: trellis::Cancelled) -> Self {
        TestError::Cancelled(c)
    }
}

impl From<trellis::Error> for TestError {
    fn from(e: trellis::Error) -> Self {
        match e {
            trellis::Error::Cancelled(c) => TestError::Cancelled(c),
            other => TestError::Trellis(other.to_string()),
        }
    }
}

impl trellis::AsCancelled for TestError {
    fn cancelled(&self) -> Option<trellis::Cancelled> {
        match self {
            TestError::Cancelled(c) => Some(c.clone()),
            _ => None,
        }
    }
}
