//! The workloads on trellis, multi-thread (one worker per core) or current-thread flavour.
//!
//! Structured form: every child lives in a nursery, and a nursery's return is the join. The
//! chained spawn hands the nursery down the chain, so the nursery's return is the completion
//! signal; cancellation is `n.cancel()` on the nursery's scope.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_lite::AsyncReadExt;
use trellis::net::{TcpListener, TcpStream};
use trellis::{
    checkpoint, move_on_after, nursery, sleep, sleep_forever, Error, Flavor, Nursery, NurseryError,
    Runtime,
};

use super::{nanos, worker_threads, Outcome};
use crate::memory::rss_bytes;
use crate::workloads::{Sizes, Workload, ECHO_MESSAGE, SLEEP, TIMER_TIMEOUT};

/// Runs one sample of `workload`: nanoseconds, or bytes per task for `IdleMemory`.
pub fn run(workload: Workload, multi_thread: bool, s: &Sizes) -> Outcome {
    let s = *s;
    let time = |d: Duration| Outcome::Value(nanos(d));
    match workload {
        Workload::SpawnJoin => time(block_on(multi_thread, spawn_join(s.spawn_tasks))),
        Workload::Yield => time(block_on(multi_thread, yield_many(s.yield_tasks, s.yields))),
        Workload::ChainedSpawn => time(block_on(multi_thread, chained_spawn(s.chain_depth))),
        Workload::PingPong => time(block_on(
            multi_thread,
            ping_pong(s.ping_pairs, s.ping_round_trips),
        )),
        Workload::Mpsc => time(block_on(
            multi_thread,
            mpsc_many(s.mpsc_producers, s.mpsc_messages, s.mpsc_capacity),
        )),
        Workload::LockContention => time(block_on(
            multi_thread,
            lock_contention(s.lock_tasks, s.lock_iterations),
        )),
        Workload::Timers => time(block_on(multi_thread, timers(s.timer_tasks, s.timeouts))),
        Workload::Sleep => time(block_on(multi_thread, sleeps(s.sleeps))),
        // A trellis cancellation always reaches the parked code (C1, B2): both rows do the
        // same work here.
        Workload::CancelBlocked | Workload::CancelCooperative => {
            time(block_on(multi_thread, cancel_blocked(s.cancel_tasks)))
        }
        Workload::TcpEcho => time(block_on(
            multi_thread,
            tcp_echo(s.tcp_connections, s.tcp_round_trips),
        )),
        Workload::IdleMemory => Outcome::Value(block_on(multi_thread, idle_memory(s.idle_tasks))),
    }
}

/// The `--yield-budget` option.
static YIELD_BUDGET: AtomicU32 = AtomicU32::new(trellis::DEFAULT_YIELD_BUDGET);

/// Sets the yield budget every trellis runtime of this run is built with.
pub fn set_yield_budget(n: u32) {
    YIELD_BUDGET.store(n, Ordering::Relaxed);
}

/// Builds a fresh runtime and runs `body` as a child task of a nursery on it.
fn block_on<F, T>(multi_thread: bool, body: F) -> T
where
    F: Future<Output = Result<T, Error>> + Send + 'static,
    T: Send + 'static,
{
    let builder = if multi_thread {
        Runtime::builder().worker_threads(worker_threads())
    } else {
        Runtime::builder().flavor(Flavor::CurrentThread)
    };
    let rt = builder
        .yield_budget(YIELD_BUDGET.load(Ordering::Relaxed))
        .build()
        .expect("build trellis runtime");
    rt.block_on(nursery(
        |n: Nursery<Error>| async move { n.spawn(body)?.await },
    ))
    .expect("benchmark body failed")
}

async fn spawn_join(tasks: usize) -> Result<Duration, Error> {
    let start = Instant::now();
    nursery(|n: Nursery<Error>| async move {
        for _ in 0..tasks {
            n.spawn(async { Ok::<_, Error>(()) })?;
        }
        Ok(())
    })
    .await?;
    Ok(start.elapsed())
}

async fn yield_many(tasks: usize, yields: usize) -> Result<Duration, Error> {
    let start = Instant::now();
    nursery(|n: Nursery<Error>| async move {
        for _ in 0..tasks {
            n.spawn(async move {
                for _ in 0..yields {
                    checkpoint().await?;
                }
                Ok::<_, Error>(())
            })?;
        }
        Ok(())
    })
    .await?;
    Ok(start.elapsed())
}

async fn chained_spawn(depth: usize) -> Result<Duration, Error> {
    fn link(n: Nursery<Error>, left: usize) -> Result<(), Error> {
        if left > 0 {
            let next = n.clone();
            n.spawn(async move { link(next, left - 1) })?;
        }
        Ok(())
    }
    let start = Instant::now();
    nursery(|n: Nursery<Error>| async move { link(n, depth) }).await?;
    Ok(start.elapsed())
}

async fn ping_pong(pairs: usize, round_trips: usize) -> Result<Duration, Error> {
    let start = Instant::now();
    nursery(|n: Nursery<Error>| async move {
        for _ in 0..pairs {
            let (ping_tx, ping_rx) = trellis::channel::bounded::<usize>(1);
            let (pong_tx, pong_rx) = trellis::channel::bounded::<usize>(1);
            n.spawn(async move {
                for i in 0..round_trips {
                    ping_tx.send(i).await?;
                    assert_eq!(pong_rx.recv().await?, i);
                }
                Ok::<_, Error>(())
            })?;
            n.spawn(async move {
                while let Ok(i) = ping_rx.recv().await {
                    pong_tx.send(i).await?;
                }
                Ok::<_, Error>(())
            })?;
        }
        Ok(())
    })
    .await
    .expect("ping_pong nursery");
    Ok(start.elapsed())
}

async fn mpsc_many(producers: usize, messages: usize, capacity: usize) -> Result<Duration, Error> {
    let start = Instant::now();
    nursery(|n: Nursery<Error>| async move {
        let (tx, rx) = trellis::channel::bounded::<usize>(capacity);
        for _ in 0..producers {
            let tx = tx.clone();
            n.spawn(async move {
                for i in 0..messages {
                    tx.send(i).await?;
                }
                Ok::<_, Error>(())
            })?;
        }
        drop(tx);
        n.spawn(async move {
            let mut received = 0;
            while rx.recv().await.is_ok() {
                received += 1;
            }
            assert_eq!(received, producers * messages);
            Ok::<_, Error>(())
        })?;
        Ok(())
    })
    .await
    .expect("mpsc nursery");
    Ok(start.elapsed())
}

async fn lock_contention(tasks: usize, iterations: usize) -> Result<Duration, Error> {
    let lock = Arc::new(trellis::sync::Mutex::new(0usize));
    let start = Instant::now();
    let total = lock.clone();
    nursery(|n: Nursery<Error>| async move {
        for _ in 0..tasks {
            let lock = lock.clone();
            n.spawn(async move {
                for _ in 0..iterations {
                    *lock.lock().await? += 1;
                }
                Ok::<_, Error>(())
            })?;
        }
        Ok(())
    })
    .await?;
    let elapsed = start.elapsed();
    assert_eq!(*total.lock().await?, tasks * iterations);
    Ok(elapsed)
}

async fn timers(tasks: usize, timeouts: usize) -> Result<Duration, Error> {
    let start = Instant::now();
    nursery(|n: Nursery<Error>| async move {
        for _ in 0..tasks {
            n.spawn(async move {
                for _ in 0..timeouts {
                    move_on_after(TIMER_TIMEOUT, checkpoint())
                        .await
                        .expect("timer fired")?;
                }
                Ok::<_, Error>(())
            })?;
        }
        Ok(())
    })
    .await?;
    Ok(start.elapsed())
}

async fn sleeps(count: usize) -> Result<Duration, Error> {
    let start = Instant::now();
    for _ in 0..count {
        sleep(SLEEP).await?;
    }
    Ok(start.elapsed())
}

/// Spawns `tasks` children of `n` that park forever and waits until all of them have parked.
async fn spawn_parked(n: &Nursery<Error>, tasks: usize) -> Result<(), Error> {
    let parked = Arc::new(AtomicUsize::new(0));
    for _ in 0..tasks {
        let parked = parked.clone();
        n.spawn(async move {
            parked.fetch_add(1, Ordering::Relaxed);
            // Err(Cancelled) once the nursery is cancelled; the nursery absorbs it.
            sleep_forever().await?;
            Ok::<_, Error>(())
        })?;
    }
    while parked.load(Ordering::Relaxed) < tasks {
        checkpoint().await?;
    }
    Ok(())
}

async fn cancel_blocked(tasks: usize) -> Result<Duration, Error> {
    let start = nursery(|n: Nursery<Error>| async move {
        spawn_parked(&n, tasks).await?;
        let start = Instant::now();
        n.cancel();
        Ok(start)
    })
    .await?;
    Ok(start.elapsed())
}

async fn tcp_echo(connections: usize, round_trips: usize) -> Result<Duration, Error> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let elapsed = nursery(|n: Nursery<Error>| async move {
        n.spawn(serve(listener))?;

        let start = Instant::now();
        nursery(|clients: Nursery<Error>| async move {
            for _ in 0..connections {
                clients.spawn(client(addr, round_trips))?;
            }
            Ok(())
        })
        .await?;
        let elapsed = start.elapsed();
        n.cancel();
        Ok(elapsed)
    })
    .await?;
    Ok(elapsed)
}

/// The echo server: accepts until cancelled, one handler task per connection.
async fn serve(mut listener: TcpListener) -> Result<(), Error> {
    let served: Result<(), NurseryError<Error>> = nursery(|handlers: Nursery<Error>| async move {
        loop {
            let (stream, _) = listener.accept().await?;
            handlers.spawn(echo(stream))?;
        }
    })
    .await;
    served.map_err(Error::from)
}

async fn echo(mut stream: TcpStream) -> Result<(), Error> {
    stream.set_nodelay(true)?;
    let mut buf = [0u8; 4096];
    loop {
        let n = stream.read(&mut buf).await?;
        if n == 0 {
            return Ok(());
        }
        stream.write_all(&buf[..n]).await?;
    }
}

async fn client(addr: SocketAddr, round_trips: usize) -> Result<(), Error> {
    let mut stream = TcpStream::connect(addr).await?;
    stream.set_nodelay(true)?;
    let mut buf = [7u8; ECHO_MESSAGE];
    for _ in 0..round_trips {
        stream.write_all(&buf).await?;
        stream.read_exact(&mut buf).await?;
    }
    Ok(())
}

async fn idle_memory(tasks: usize) -> Result<f64, Error> {
    let before = rss_bytes();
    let after = nursery(|n: Nursery<Error>| async move {
        spawn_parked(&n, tasks).await?;
        let after = rss_bytes();
        n.cancel();
        Ok(after)
    })
    .await?;
    Ok(after.saturating_sub(before) as f64 / tasks as f64)
}
