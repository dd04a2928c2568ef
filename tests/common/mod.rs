//! Helpers shared by the behaviour tests: runtimes, event logs, drop counters, checkpoint
//! assertions, and small future combinators (poll once, catch a panic) written out here so the
//! tests need no extra crates.

// Every test binary compiles this module on its own and uses a different subset of it.
#![allow(dead_code)]

use std::any::Any;
use std::future::Future;
use std::panic::{self, AssertUnwindSafe};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Wake, Waker};
use std::time::Duration;

use trellis::net::{TcpListener, TcpStream};
use trellis::testing::MockClock;
use trellis::{CancelScope, Flavor, Outcome, Runtime};

/// A mock clock that autojumps once every task has been blocked for `threshold` of real time.
pub fn autojump_clock(threshold: Duration) -> MockClock {
    let clock = MockClock::new();
    clock.set_autojump_threshold(Some(threshold));
    clock
}

/// A current-thread runtime on `clock`, or on the system clock when `clock` is `None`.
pub fn current_thread_on(clock: Option<&MockClock>) -> Runtime {
    let mut builder = Runtime::builder().flavor(Flavor::CurrentThread);
    if let Some(clock) = clock {
        builder = builder.clock(clock.clone());
    }
    builder.build().expect("a current-thread runtime builds")
}

/// A current-thread runtime on a mock clock that autojumps as soon as every task is blocked:
/// tasks run in spawn/wake order and virtual times are exact.
pub fn current_thread() -> (Runtime, MockClock) {
    let clock = autojump_clock(Duration::ZERO);
    (current_thread_on(Some(&clock)), clock)
}

/// Runs `f` on a fresh [`current_thread`] runtime.
pub fn block_on_current<F: Future>(f: F) -> F::Output {
    current_thread().0.block_on(f)
}

/// Runs `f` as [`block_on_current`] does, under trio's rule: every operation that completes
/// without blocking yields once (`yield_budget(0)`). For tests that assert a schedule point at a
/// ready operation, or a run order that depends on one.
pub fn block_on_trio_order<F: Future>(f: F) -> F::Output {
    autojump_builder(Flavor::CurrentThread)
        .yield_budget(0)
        .build()
        .expect("a current-thread runtime builds")
        .block_on(f)
}

/// A multi-threaded runtime with `workers` workers and the system clock.
pub fn multi_thread(workers: usize) -> Runtime {
    Runtime::builder()
        .flavor(Flavor::MultiThread)
        .worker_threads(workers)
        .build()
        .expect("a multi-thread runtime builds")
}

/// The builder of a runtime of `flavor` on a mock clock that autojumps as soon as every task is
/// blocked; a multi-threaded one has two workers. Virtual times are exact on both flavours.
pub fn autojump_builder(flavor: Flavor) -> trellis::Builder {
    let builder = match flavor {
        Flavor::CurrentThread => Runtime::builder().flavor(Flavor::CurrentThread),
        Flavor::MultiThread => Runtime::builder().worker_threads(2),
    };
    builder.clock(autojump_clock(Duration::ZERO))
}

/// [`autojump_builder`], built.
pub fn autojump_runtime(flavor: Flavor) -> Runtime {
    autojump_builder(flavor).build().expect("a runtime builds")
}

/// Both flavours, for tests that check a rule on each.
pub const FLAVORS: [Flavor; 2] = [Flavor::CurrentThread, Flavor::MultiThread];

/// A runtime of either flavour on the system clock; a multi-threaded one has two workers.
pub fn runtime(flavor: Flavor) -> Runtime {
    match flavor {
        Flavor::CurrentThread => current_thread_on(None),
        Flavor::MultiThread => multi_thread(2),
    }
}

/// A connected TCP pair on the loopback interface: (the client end, the accepted end).
pub async fn tcp_pair() -> std::io::Result<(TcpStream, TcpStream)> {
    let mut listener = TcpListener::bind("127.0.0.1:0").await?;
    let client = TcpStream::connect(listener.local_addr()?).await?;
    let (server, _) = listener.accept().await?;
    Ok((client, server))
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

    /// Empties the log and returns what it held.
    pub fn take(&self) -> Vec<String> {
        std::mem::take(&mut *self.0.lock().unwrap())
    }

    /// What the log holds now, leaving it in place.
    pub fn snapshot(&self) -> Vec<String> {
        self.0.lock().unwrap().clone()
    }
}

/// Counts drops: each [`DropCounter::guard`] increments the count when it is dropped. A child
/// future that owns a guard proves, by the count, that the future itself was dropped. Guards
/// made inside a task's body exist only once the task has run; [`created`](Self::created) says
/// how many exist or existed, so a test can wait for them before it tears anything down.
#[derive(Clone, Default)]
pub struct DropCounter(Arc<Counts>);

#[derive(Default)]
pub struct Counts {
    created: AtomicUsize,
    dropped: AtomicUsize,
}

impl DropCounter {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn guard(&self) -> DropGuard {
        self.0.created.fetch_add(1, Ordering::SeqCst);
        DropGuard(self.0.clone())
    }

    /// Guards dropped so far.
    pub fn count(&self) -> usize {
        self.0.dropped.load(Ordering::SeqCst)
    }

    /// Guards made so far (dropped or not).
    #[allow(dead_code)]
    pub fn created(&self) -> usize {
        self.0.created.load(Ordering::SeqCst)
    }
}

pub struct DropGuard(Arc<Counts>);

impl Drop for DropGuard {
    fn drop(&mut self) {
        self.0.dropped.fetch_add(1, Ordering::SeqCst);
    }
}

/// Panics when dropped, unless already unwinding.
pub struct DropBomb;

impl Drop for DropBomb {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            panic!("drop bomb");
        }
    }
}

/// Polls `fut` exactly once with the current task's waker and reports whether it finished.
pub async fn poll_once<F: Future + ?Sized>(mut fut: Pin<&mut F>) -> Poll<F::Output> {
    std::future::poll_fn(|cx| Poll::Ready(fut.as_mut().poll(cx))).await
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

pub fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
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

/// Task `a` sends ten messages into an unbounded channel (never blocking) and records each;
/// task `b` records three times, yielding after each: the record shows which ready operations
/// yielded (principle 3, `Builder::yield_budget`).
pub async fn send_and_yield_interleaving() -> Vec<String> {
    let log = Arc::new(Mutex::new(Vec::new()));
    let (tx, _rx) = trellis::channel::unbounded::<u32>();
    let (la, lb) = (log.clone(), log.clone());
    trellis::nursery(|n| async move {
        n.spawn(async move {
            for i in 1..=10 {
                tx.send(i).await.map_err(trellis::Error::from)?;
                la.lock().unwrap().push(format!("a{i}"));
            }
            Ok(())
        })?;
        n.spawn(async move {
            for j in 1..=3 {
                lb.lock().unwrap().push(format!("b{j}"));
                trellis::checkpoint().await?;
            }
            Ok(())
        })?;
        Ok::<_, trellis::Error>(())
    })
    .await
    .unwrap();
    let log = log.lock().unwrap().clone();
    log
}

/// Polls its inner future with a waker of its own, and only when that waker was woken (or on
/// the first poll), as `FuturesUnordered` does with each of its futures.
pub struct OwnWaker<F> {
    inner: Pin<Box<F>>,
    flag: Arc<Flag>,
}

struct Flag {
    woken: AtomicBool,
    outer: Mutex<Option<Waker>>,
}

impl Wake for Flag {
    fn wake(self: Arc<Self>) {
        self.woken.store(true, Ordering::SeqCst);
        if let Some(w) = self.outer.lock().unwrap().take() {
            w.wake();
        }
    }
}

impl<F: Future> OwnWaker<F> {
    pub fn new(inner: F) -> Self {
        OwnWaker {
            inner: Box::pin(inner),
            flag: Arc::new(Flag {
                woken: AtomicBool::new(true),
                outer: Mutex::new(None),
            }),
        }
    }
}

impl<F: Future> Future for OwnWaker<F> {
    type Output = F::Output;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        *self.flag.outer.lock().unwrap() = Some(cx.waker().clone());
        if !self.flag.woken.swap(false, Ordering::SeqCst) {
            return Poll::Pending;
        }
        let waker = Waker::from(self.flag.clone());
        self.inner.as_mut().poll(&mut Context::from_waker(&waker))
    }
}
