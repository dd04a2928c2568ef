//! The workloads on smol's parts: an `async_executor::Executor` run by one thread per core
//! (the calling thread plus `cores - 1` runners, each in `async_io::block_on`, so whichever
//! thread is idle drives the async-io reactor), `async-channel` channels, `async_io::Timer`
//! and `async_io::Async<TcpStream>`.
//!
//! Structured form: tasks are collected in a `Vec<Task<_>>` and awaited; dropping a `Task`
//! cancels it. The chained spawn detaches its tasks and signals completion over a channel.

use std::future::Future;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use async_executor::{Executor, Task};
use async_io::{Async, Timer};
use futures_lite::future::{self, yield_now};
use futures_lite::{AsyncReadExt, AsyncWriteExt};

use super::{nanos, worker_threads};
use crate::memory::rss_bytes;
use crate::workloads::{Sizes, Workload, ECHO_MESSAGE, SLEEP, TIMER_TIMEOUT};

type Ex = Arc<Executor<'static>>;

/// Runs one sample of `workload`; returns nanoseconds, or bytes per task for `IdleMemory`.
pub fn run(workload: Workload, s: &Sizes) -> f64 {
    let s = *s;
    match workload {
        Workload::SpawnJoin => nanos(block_on(move |ex| spawn_join(ex, s.spawn_tasks))),
        Workload::Yield => nanos(block_on(move |ex| yield_many(ex, s.yield_tasks, s.yields))),
        Workload::ChainedSpawn => nanos(block_on(move |ex| chained_spawn(ex, s.chain_depth))),
        Workload::PingPong => nanos(block_on(move |ex| {
            ping_pong(ex, s.ping_pairs, s.ping_round_trips)
        })),
        Workload::Mpsc => nanos(block_on(move |ex| {
            mpsc_many(ex, s.mpsc_producers, s.mpsc_messages, s.mpsc_capacity)
        })),
        Workload::LockContention => nanos(block_on(move |ex| {
            lock_contention(ex, s.lock_tasks, s.lock_iterations)
        })),
        Workload::Timers => nanos(block_on(move |ex| timers(ex, s.timer_tasks, s.timeouts))),
        Workload::Sleep => nanos(block_on(move |_| sleeps(s.sleeps))),
        Workload::CancelBlocked => nanos(block_on(move |ex| cancel_blocked(ex, s.cancel_tasks))),
        Workload::CancelCooperative => {
            nanos(block_on(move |ex| cancel_cooperative(ex, s.cancel_tasks)))
        }
        Workload::TcpEcho => nanos(block_on(move |ex| {
            tcp_echo(ex, s.tcp_connections, s.tcp_round_trips)
        })),
        Workload::IdleMemory => block_on(move |ex| idle_memory(ex, s.idle_tasks)),
    }
}

/// Builds a fresh executor with one runner per core and runs the body made by `make` as a
/// spawned task on it.
fn block_on<M, F>(make: M) -> F::Output
where
    M: FnOnce(Ex) -> F,
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    let ex: Ex = Arc::new(Executor::new());
    let (stop_tx, stop_rx) = async_channel::bounded::<()>(1);
    let runners: Vec<_> = (1..worker_threads())
        .map(|_| {
            let ex = ex.clone();
            let stop_rx = stop_rx.clone();
            thread::spawn(move || async_io::block_on(ex.run(stop_rx.recv())))
        })
        .collect();
    let body = ex.spawn(make(ex.clone()));
    let out = async_io::block_on(ex.run(body));
    drop(stop_tx);
    for runner in runners {
        let _ = runner.join().expect("smol runner thread panicked");
    }
    out
}

/// Waits for every task, in order.
async fn join_all<T>(tasks: Vec<Task<T>>) {
    for task in tasks {
        task.await;
    }
}

async fn spawn_join(ex: Ex, tasks: usize) -> Duration {
    let start = Instant::now();
    let handles: Vec<_> = (0..tasks).map(|_| ex.spawn(async {})).collect();
    join_all(handles).await;
    start.elapsed()
}

async fn yield_many(ex: Ex, tasks: usize, yields: usize) -> Duration {
    let start = Instant::now();
    let handles: Vec<_> = (0..tasks)
        .map(|_| {
            ex.spawn(async move {
                for _ in 0..yields {
                    yield_now().await;
                }
            })
        })
        .collect();
    join_all(handles).await;
    start.elapsed()
}

async fn chained_spawn(ex: Ex, depth: usize) -> Duration {
    fn link(ex: Ex, left: usize, done: async_channel::Sender<()>) {
        if left == 0 {
            done.try_send(()).expect("chain receiver gone");
        } else {
            let next = ex.clone();
            ex.spawn(async move { link(next, left - 1, done) }).detach();
        }
    }
    let start = Instant::now();
    let (tx, rx) = async_channel::bounded(1);
    link(ex, depth, tx);
    rx.recv().await.expect("chain broken");
    start.elapsed()
}

async fn lock_contention(ex: Ex, tasks: usize, iterations: usize) -> Duration {
    let lock = Arc::new(async_lock::Mutex::new(0usize));
    let start = Instant::now();
    let mut handles = Vec::with_capacity(tasks);
    for _ in 0..tasks {
        let lock = lock.clone();
        handles.push(ex.spawn(async move {
            for _ in 0..iterations {
                *lock.lock().await += 1;
            }
        }));
    }
    join_all(handles).await;
    let elapsed = start.elapsed();
    assert_eq!(*lock.lock().await, tasks * iterations);
    elapsed
}

async fn ping_pong(ex: Ex, pairs: usize, round_trips: usize) -> Duration {
    let start = Instant::now();
    let mut handles = Vec::with_capacity(2 * pairs);
    for _ in 0..pairs {
        let (ping_tx, ping_rx) = async_channel::bounded::<usize>(1);
        let (pong_tx, pong_rx) = async_channel::bounded::<usize>(1);
        handles.push(ex.spawn(async move {
            for i in 0..round_trips {
                ping_tx.send(i).await.expect("ponger gone");
                assert_eq!(pong_rx.recv().await, Ok(i));
            }
        }));
        handles.push(ex.spawn(async move {
            while let Ok(i) = ping_rx.recv().await {
                pong_tx.send(i).await.expect("pinger gone");
            }
        }));
    }
    join_all(handles).await;
    start.elapsed()
}

async fn mpsc_many(ex: Ex, producers: usize, messages: usize, capacity: usize) -> Duration {
    let start = Instant::now();
    let (tx, rx) = async_channel::bounded::<usize>(capacity);
    let mut handles: Vec<_> = (0..producers)
        .map(|_| {
            let tx = tx.clone();
            ex.spawn(async move {
                for i in 0..messages {
                    tx.send(i).await.expect("consumer gone");
                }
            })
        })
        .collect();
    drop(tx);
    handles.push(ex.spawn(async move {
        let mut received = 0;
        while rx.recv().await.is_ok() {
            received += 1;
        }
        assert_eq!(received, producers * messages);
    }));
    join_all(handles).await;
    start.elapsed()
}

async fn sleeps(count: usize) -> Duration {
    let start = Instant::now();
    for _ in 0..count {
        Timer::after(SLEEP).await;
    }
    start.elapsed()
}

async fn timers(ex: Ex, tasks: usize, timeouts: usize) -> Duration {
    let start = Instant::now();
    let handles: Vec<_> = (0..tasks)
        .map(|_| {
            ex.spawn(async move {
                for _ in 0..timeouts {
                    let completed = future::or(
                        async {
                            yield_now().await;
                            true
                        },
                        async {
                            Timer::after(TIMER_TIMEOUT).await;
                            false
                        },
                    )
                    .await;
                    assert!(completed, "timer fired");
                }
            })
        })
        .collect();
    join_all(handles).await;
    start.elapsed()
}

/// Spawns `tasks` tasks that park forever, each holding a clone of `alive`, and waits until
/// all of them have parked.
async fn spawn_parked(ex: &Ex, tasks: usize, alive: &async_channel::Sender<()>) -> Vec<Task<()>> {
    let parked = Arc::new(AtomicUsize::new(0));
    let handles = (0..tasks)
        .map(|_| {
            let parked = parked.clone();
            let alive = alive.clone();
            ex.spawn(async move {
                let _alive = alive;
                parked.fetch_add(1, Ordering::Relaxed);
                future::pending::<()>().await
            })
        })
        .collect();
    while parked.load(Ordering::Relaxed) < tasks {
        yield_now().await;
    }
    handles
}

async fn cancel_blocked(ex: Ex, tasks: usize) -> Duration {
    // Every parked task holds a sender; `recv` fails once the last one has been dropped, that
    // is once every cancelled future is gone.
    let (alive, all_gone) = async_channel::bounded::<()>(1);
    let handles = spawn_parked(&ex, tasks, &alive).await;
    drop(alive);
    let start = Instant::now();
    drop(handles);
    assert!(all_gone.recv().await.is_err());
    start.elapsed()
}

async fn cancel_cooperative(ex: Ex, tasks: usize) -> Duration {
    // Every task waits on the channel; closing it fails every `recv`.
    let (stop, stopped) = async_channel::bounded::<()>(1);
    let parked = Arc::new(AtomicUsize::new(0));
    let handles: Vec<_> = (0..tasks)
        .map(|_| {
            let parked = parked.clone();
            let stopped = stopped.clone();
            ex.spawn(async move {
                parked.fetch_add(1, Ordering::Relaxed);
                assert!(stopped.recv().await.is_err());
            })
        })
        .collect();
    drop(stopped);
    while parked.load(Ordering::Relaxed) < tasks {
        yield_now().await;
    }
    let start = Instant::now();
    stop.close();
    join_all(handles).await;
    start.elapsed()
}

async fn tcp_echo(ex: Ex, connections: usize, round_trips: usize) -> Duration {
    let listener = Async::<TcpListener>::bind(([127, 0, 0, 1], 0)).expect("bind");
    let addr = listener.get_ref().local_addr().expect("local_addr");
    let server_ex = ex.clone();
    let server = ex.spawn(async move {
        // Dropping this vector (when the server task is dropped) cancels every handler.
        let mut handlers = Vec::new();
        loop {
            let (stream, _) = listener.accept().await.expect("accept");
            handlers.push(server_ex.spawn(echo(stream)));
        }
    });

    let start = Instant::now();
    let clients: Vec<_> = (0..connections)
        .map(|_| ex.spawn(client(addr, round_trips)))
        .collect();
    join_all(clients).await;
    let elapsed = start.elapsed();

    server.cancel().await;
    elapsed
}

async fn echo(mut stream: Async<TcpStream>) {
    stream.get_ref().set_nodelay(true).expect("nodelay");
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
    let mut stream = Async::<TcpStream>::connect(addr).await.expect("connect");
    stream.get_ref().set_nodelay(true).expect("nodelay");
    let mut buf = [7u8; ECHO_MESSAGE];
    for _ in 0..round_trips {
        stream.write_all(&buf).await.expect("client write");
        stream.read_exact(&mut buf).await.expect("client read");
    }
}

async fn idle_memory(ex: Ex, tasks: usize) -> f64 {
    let (alive, all_gone) = async_channel::bounded::<()>(1);
    let before = rss_bytes();
    let handles = spawn_parked(&ex, tasks, &alive).await;
    let after = rss_bytes();
    drop(alive);
    drop(handles);
    let _ = all_gone.recv().await;
    after.saturating_sub(before) as f64 / tasks as f64
}
