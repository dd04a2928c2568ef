//! Fairness under ready operations (C5, C7, principle 3): code that keeps finding its operations
//! ready (a channel with room, a set event, a memory stream or UDP socket with data) still sees
//! its deadline at the first operation after the clock passed it, and does not starve the
//! reactor: a task blocked on a socket is woken while such a loop runs. On both flavours, with
//! the loop in the main future and in a spawned task.

mod common;

use std::io::Write;
use std::os::unix::net::UnixStream as StdUnixStream;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::*;
use trellis::channel;
use trellis::io::AsyncFd;
use trellis::net::UdpSocket;
use trellis::sync::Event;
use trellis::testing::{memory_stream_pair, MemoryStream, MockClock};
use trellis::{move_on_after, nursery, Error, Flavor, Runtime};

/// Rounds allowed after the clock passed the deadline (or the data arrived) before the test
/// calls it starvation. The runtime services timers and I/O every few dozen polls.
const SLACK: u64 = 10_000;

#[derive(Clone, Copy, Debug)]
enum Workload {
    Channel,
    Event,
    MemoryStream,
    Udp,
}

const WORKLOADS: [Workload; 4] = [
    Workload::Channel,
    Workload::Event,
    Workload::MemoryStream,
    Workload::Udp,
];

/// The state one workload's rounds work on; every round completes without blocking.
enum Ready {
    Channel(channel::Sender<u64>, channel::Receiver<u64>),
    Event(Event),
    MemoryStream(MemoryStream, MemoryStream),
    Udp(UdpSocket, UdpSocket),
}

impl Ready {
    async fn new(workload: Workload) -> Result<Ready, Error> {
        Ok(match workload {
            Workload::Channel => {
                let (tx, rx) = channel::bounded(4);
                Ready::Channel(tx, rx)
            }
            Workload::Event => {
                let event = Event::new();
                event.set();
                Ready::Event(event)
            }
            Workload::MemoryStream => {
                let (a, b) = memory_stream_pair();
                Ready::MemoryStream(a, b)
            }
            Workload::Udp => {
                let a = UdpSocket::bind("127.0.0.1:0").await?;
                let b = UdpSocket::bind("127.0.0.1:0").await?;
                a.connect(b.local_addr()?).await?;
                b.connect(a.local_addr()?).await?;
                Ready::Udp(a, b)
            }
        })
    }

    /// One round trip of ready operations.
    async fn round(&mut self) -> Result<(), Error> {
        match self {
            Ready::Channel(tx, rx) => {
                tx.send(1).await?;
                rx.recv().await?;
            }
            Ready::Event(event) => event.wait().await?,
            Ready::MemoryStream(a, b) => {
                a.write_all(b"x").await?;
                let mut buf = [0u8; 1];
                b.read(&mut buf).await?;
            }
            Ready::Udp(a, b) => {
                a.send(b"x").await?;
                let mut buf = [0u8; 1];
                b.recv(&mut buf).await?;
            }
        }
        Ok(())
    }
}

/// Loops rounds of `workload` under a 50 ms deadline while another thread jumps the (stopped)
/// mock clock to 60 ms once 100 rounds have run. Returns the rounds run after the jump and the
/// virtual time the loop ended at; panics if the deadline is not seen within `SLACK` rounds.
async fn deadline_under_ready_loop(workload: Workload, clock: MockClock) -> (u64, Duration) {
    let t0 = trellis::now();
    let jumped = Arc::new(AtomicBool::new(false));
    let after_jump = Arc::new(AtomicU64::new(0));
    let (j, a) = (jumped.clone(), after_jump.clone());
    let mut ready = Ready::new(workload).await.unwrap();
    let out = move_on_after(ms(50), async move {
        let mut rounds = 0u64;
        loop {
            ready.round().await?;
            rounds += 1;
            if rounds == 100 {
                let (clock, j) = (clock.clone(), j.clone());
                std::thread::spawn(move || {
                    clock.jump(ms(60));
                    j.store(true, Ordering::SeqCst);
                });
            }
            if j.load(Ordering::SeqCst) {
                let n = a.fetch_add(1, Ordering::SeqCst) + 1;
                assert!(n < SLACK, "{workload:?}: the deadline never fired");
            }
        }
        #[allow(unreachable_code)]
        Ok::<(), Error>(())
    })
    .await;
    assert!(out.is_none(), "{workload:?}: the deadline ended the loop");
    (after_jump.load(Ordering::SeqCst), since(t0))
}

fn on_mock_clock(flavor: Flavor) -> (Runtime, MockClock) {
    let clock = MockClock::new();
    let rt = match flavor {
        Flavor::CurrentThread => current_thread_on(Some(&clock)),
        Flavor::MultiThread => Runtime::builder()
            .worker_threads(2)
            .clock(clock.clone())
            .build()
            .unwrap(),
    };
    (rt, clock)
}

// contract C5, C7: a deadline fires under a loop of ready operations in the main future, at the
// virtual time the clock reached (the loop ends at 60 ms, the only time after 50 ms there is).
#[test]
fn a_deadline_fires_under_a_ready_loop_in_the_main_future() {
    for flavor in [Flavor::CurrentThread, Flavor::MultiThread] {
        for workload in WORKLOADS {
            let (rt, clock) = on_mock_clock(flavor);
            let (rounds, at) = rt.block_on(deadline_under_ready_loop(workload, clock));
            assert_eq!(at, ms(60), "{flavor:?} {workload:?}");
            assert!(rounds < SLACK, "{flavor:?} {workload:?}: {rounds} rounds");
        }
    }
}

// contract C5, C7: the same with the loop in a spawned task.
#[test]
fn a_deadline_fires_under_a_ready_loop_in_a_task() {
    for flavor in [Flavor::CurrentThread, Flavor::MultiThread] {
        for workload in WORKLOADS {
            let (rt, clock) = on_mock_clock(flavor);
            let (rounds, at) = rt.block_on(async move {
                nursery(|n| async move {
                    let handle = n.spawn(async move {
                        Ok::<_, Error>(deadline_under_ready_loop(workload, clock).await)
                    })?;
                    handle.await
                })
                .await
                .unwrap()
            });
            assert_eq!(at, ms(60), "{flavor:?} {workload:?}");
            assert!(rounds < SLACK, "{flavor:?} {workload:?}: {rounds} rounds");
        }
    }
}

/// Rounds a loop may run before the blocked reader must have been woken. On the current-thread
/// flavour the loop and the reactor share the one thread, so the bound is the maintenance
/// interval's (`SLACK`); on the multi-threaded flavour another worker wakes the reader in
/// parallel, as fast as the system schedules it, so the bound only catches a reader that is
/// never woken.
fn reader_slack(flavor: Flavor) -> u64 {
    match flavor {
        Flavor::CurrentThread => SLACK,
        Flavor::MultiThread => 50_000_000,
    }
}

/// Loops rounds of `workload` until a task blocked reading a socket has been woken by the data
/// written to it before the loop started; returns the rounds it took.
async fn reader_woken_under_ready_loop(workload: Workload, slack: u64) -> u64 {
    let (a, mut b) = StdUnixStream::pair().unwrap();
    let reader = AsyncFd::new(a).unwrap();
    let got = Arc::new(AtomicBool::new(false));
    let mut ready = Ready::new(workload).await.unwrap();
    nursery(|n| {
        let got = got.clone();
        async move {
            let g = got.clone();
            n.spawn(async move {
                let mut buf = [0u8; 4];
                let k = reader
                    .read_with(|s| std::io::Read::read(&mut &*s, &mut buf))
                    .await?;
                assert_eq!(&buf[..k], b"data");
                g.store(true, Ordering::SeqCst);
                Ok(())
            })?;
            trellis::testing::wait_all_tasks_blocked().await?;
            b.write_all(b"data").unwrap();
            let mut rounds = 0u64;
            while !got.load(Ordering::SeqCst) {
                ready.round().await?;
                rounds += 1;
                assert!(
                    rounds < slack,
                    "{workload:?}: the blocked reader was never woken within {slack} rounds"
                );
            }
            Ok::<_, Error>(rounds)
        }
    })
    .await
    .unwrap()
}

// principle 3: I/O readiness reaches a blocked task while another loops on ready operations,
// in the main future and in a task, on both flavours.
#[test]
fn a_blocked_reader_is_woken_under_a_ready_loop() {
    for flavor in [Flavor::CurrentThread, Flavor::MultiThread] {
        for workload in WORKLOADS {
            let slack = reader_slack(flavor);
            let rounds = runtime(flavor).block_on(reader_woken_under_ready_loop(workload, slack));
            assert!(rounds < slack, "{flavor:?} {workload:?}");
            let rounds = runtime(flavor).block_on(async move {
                nursery(|n| async move {
                    let h = n.spawn(async move {
                        Ok::<_, Error>(reader_woken_under_ready_loop(workload, slack).await)
                    })?;
                    h.await
                })
                .await
                .unwrap()
            });
            assert!(rounds < slack, "{flavor:?} {workload:?} in a task");
        }
    }
}
