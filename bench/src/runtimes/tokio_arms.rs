//! The workloads on tokio, multi-thread or current-thread scheduler.
//!
//! Structured form: children go into a `JoinSet` and are drained with `join_next`; the chained
//! spawn, which cannot hand a `JoinSet` down the chain, uses `tokio::spawn` and a oneshot.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot};
use tokio::task::{yield_now, JoinSet};
use tokio_util::sync::CancellationToken;

use super::{nanos, worker_threads};
use crate::memory::rss_bytes;
use crate::workloads::{Sizes, Workload, ECHO_MESSAGE, SLEEP, TIMER_TIMEOUT};

/// Runs one sample of `workload`; returns nanoseconds, or bytes per task for `IdleMemory`.
pub fn run(workload: Workload, multi_thread: bool, s: &Sizes) -> f64 {
    let s = *s;
    match workload {
        Workload::SpawnJoin => nanos(block_on(multi_thread, spawn_join(s.spawn_tasks))),
        Workload::Yield => nanos(block_on(multi_thread, yield_many(s.yield_tasks, s.yields))),
        Workload::ChainedSpawn => nanos(block_on(multi_thread, chained_spawn(s.chain_depth))),
        Workload::PingPong => nanos(block_on(
            multi_thread,
            ping_pong(s.ping_pairs, s.ping_round_trips),
        )),
        Workload::Mpsc => nanos(block_on(
            multi_thread,
            mpsc_many(s.mpsc_producers, s.mpsc_messages, s.mpsc_capacity),
        )),
        Workload::LockContention => nanos(block_on(
            multi_thread,
            lock_contention(s.lock_tasks, s.lock_iterations),
        )),
        Workload::Timers => nanos(block_on(multi_thread, timers(s.timer_tasks, s.timeouts))),
        Workload::Sleep => nanos(block_on(multi_thread, sleeps(s.sleeps))),
        Workload::CancelBlocked => nanos(block_on(multi_thread, cancel_blocked(s.cancel_tasks))),
        Workload::CancelCooperative => {
            nanos(block_on(multi_thread, cancel_cooperative(s.cancel_tasks)))
        }
        Workload::TcpEcho => nanos(block_on(
            multi_thread,
            tcp_echo(s.tcp_connections, s.tcp_round_trips),
        )),
        Workload::IdleMemory => block_on(multi_thread, idle_memory(s.idle_tasks)),
    }
}

/// Builds a fresh runtime and runs `body` as a spawned task on it.
fn block_on<F>(multi_thread: bool, body: F) -> F::Output
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    let mut builder = if multi_thread {
        let mut b = tokio::runtime::Builder::new_multi_thread();
        b.worker_threads(worker_threads());
        b
    } else {
        tokio::runtime::Builder::new_current_thread()
    };
    let rt = builder.enable_all().build().expect("build tokio runtime");
    rt.block_on(async move { tokio::spawn(body).await.expect("benchmark body panicked") })
}

/// Waits for every task in `set` and re-raises a child's panic.
async fn join_all<T: 'static>(set: &mut JoinSet<T>) {
    while let Some(res) = set.join_next().await {
        res.expect("child task failed");
    }
}

async fn spawn_join(tasks: usize) -> Duration {
    let start = Instant::now();
    let mut set = JoinSet::new();
    for _ in 0..tasks {
        set.spawn(async {});
    }
    join_all(&mut set).await;
    start.elapsed()
}

async fn yield_many(tasks: usize, yields: usize) -> Duration {
    let start = Instant::now();
    let mut set = JoinSet::new();
    for _ in 0..tasks {
        set.spawn(async move {
            for _ in 0..yields {
                yield_now().await;
            }
        });
    }
    join_all(&mut set).await;
    start.elapsed()
}

async fn chained_spawn(depth: usize) -> Duration {
    fn link(left: usize, done: oneshot::Sender<()>) {
        if left == 0 {
            done.send(()).expect("chain receiver gone");
        } else {
            tokio::spawn(async move { link(left - 1, done) });
        }
    }
    let start = Instant::now();
    let (tx, rx) = oneshot::channel();
    link(depth, tx);
    rx.await.expect("chain broken");
    start.elapsed()
}

async fn lock_contention(tasks: usize, iterations: usize) -> Duration {
    let lock = std::sync::Arc::new(tokio::sync::Mutex::new(0usize));
    let start = Instant::now();
    let mut set = JoinSet::new();
    for _ in 0..tasks {
        let lock = lock.clone();
        set.spawn(async move {
            for _ in 0..iterations {
                *lock.lock().await += 1;
            }
        });
    }
    join_all(&mut set).await;
    let elapsed = start.elapsed();
    assert_eq!(*lock.lock().await, tasks * iterations);
    elapsed
}

async fn ping_pong(pairs: usize, round_trips: usize) -> Duration {
    let start = Instant::now();
    let mut set = JoinSet::new();
    for _ in 0..pairs {
        let (ping_tx, mut ping_rx) = mpsc::channel::<usize>(1);
        let (pong_tx, mut pong_rx) = mpsc::channel::<usize>(1);
        set.spawn(async move {
            for i in 0..round_trips {
                ping_tx.send(i).await.expect("ponger gone");
                assert_eq!(pong_rx.recv().await, Some(i));
            }
        });
        set.spawn(async move {
            while let Some(i) = ping_rx.recv().await {
                pong_tx.send(i).await.expect("pinger gone");
            }
        });
    }
    join_all(&mut set).await;
    start.elapsed()
}

async fn mpsc_many(producers: usize, messages: usize, capacity: usize) -> Duration {
    let start = Instant::now();
    let mut set = JoinSet::new();
    let (tx, mut rx) = mpsc::channel::<usize>(capacity);
    for _ in 0..producers {
        let tx = tx.clone();
        set.spawn(async move {
            for i in 0..messages {
                tx.send(i).await.expect("consumer gone");
            }
        });
    }
    drop(tx);
    set.spawn(async move {
        let mut received = 0;
        while rx.recv().await.is_some() {
            received += 1;
        }
        assert_eq!(received, producers * messages);
    });
    join_all(&mut set).await;
    start.elapsed()
}

async fn timers(tasks: usize, timeouts: usize) -> Duration {
    let start = Instant::now();
    let mut set = JoinSet::new();
    for _ in 0..tasks {
        set.spawn(async move {
            for _ in 0..timeouts {
                tokio::time::timeout(TIMER_TIMEOUT, yield_now())
                    .await
                    .expect("timer fired");
            }
        });
    }
    join_all(&mut set).await;
    start.elapsed()
}

async fn sleeps(count: usize) -> Duration {
    let start = Instant::now();
    for _ in 0..count {
        tokio::time::sleep(SLEEP).await;
    }
    start.elapsed()
}

/// Spawns `tasks` tasks that park forever into `set` and waits until all of them have parked.
async fn spawn_parked(set: &mut JoinSet<()>, tasks: usize) {
    let parked = Arc::new(AtomicUsize::new(0));
    for _ in 0..tasks {
        let parked = parked.clone();
        set.spawn(async move {
            parked.fetch_add(1, Ordering::Relaxed);
            std::future::pending::<()>().await
        });
    }
    while parked.load(Ordering::Relaxed) < tasks {
        yield_now().await;
    }
}

async fn cancel_blocked(tasks: usize) -> Duration {
    let mut set = JoinSet::new();
    spawn_parked(&mut set, tasks).await;
    let start = Instant::now();
    set.abort_all();
    while let Some(res) = set.join_next().await {
        assert!(res.expect_err("parked task finished").is_cancelled());
    }
    start.elapsed()
}

async fn cancel_cooperative(tasks: usize) -> Duration {
    let token = CancellationToken::new();
    let parked = Arc::new(AtomicUsize::new(0));
    let mut set = JoinSet::new();
    for _ in 0..tasks {
        let parked = parked.clone();
        let token = token.clone();
        set.spawn(async move {
            parked.fetch_add(1, Ordering::Relaxed);
            token.cancelled().await;
        });
    }
    while parked.load(Ordering::Relaxed) < tasks {
        yield_now().await;
    }
    let start = Instant::now();
    token.cancel();
    join_all(&mut set).await;
    start.elapsed()
}

async fn tcp_echo(connections: usize, round_trips: usize) -> Duration {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("local_addr");
    let mut server = JoinSet::new();
    server.spawn(async move {
        // Dropping this set (when the server task is aborted) aborts every handler.
        let mut handlers = JoinSet::new();
        loop {
            let (stream, _) = listener.accept().await.expect("accept");
            handlers.spawn(echo(stream));
        }
    });

    let start = Instant::now();
    let mut clients = JoinSet::new();
    for _ in 0..connections {
        clients.spawn(client(addr, round_trips));
    }
    join_all(&mut clients).await;
    let elapsed = start.elapsed();

    server.abort_all();
    while server.join_next().await.is_some() {}
    elapsed
}

async fn echo(mut stream: TcpStream) {
    stream.set_nodelay(true).expect("nodelay");
    let mut buf = [0u8; 4096];
    loop {
        let n = stream.read(&mut buf).await.expect("server read");
        if n == 0 {
            return;
        }
        stream.write_all(&buf[..n]).await.expect("server write");
    }
}

async fn client(addr: SocketAddr, round_trips: usize) {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    stream.set_nodelay(true).expect("nodelay");
    let mut buf = [7u8; ECHO_MESSAGE];
    for _ in 0..round_trips {
        stream.write_all(&buf).await.expect("client write");
        stream.read_exact(&mut buf).await.expect("client read");
    }
}

async fn idle_memory(tasks: usize) -> f64 {
    let before = rss_bytes();
    let mut set = JoinSet::new();
    spawn_parked(&mut set, tasks).await;
    let after = rss_bytes();
    set.abort_all();
    while set.join_next().await.is_some() {}
    after.saturating_sub(before) as f64 / tasks as f64
}
