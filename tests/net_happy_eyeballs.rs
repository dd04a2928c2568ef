//! Happy eyeballs (RFC 8305) under a mock clock with scripted connection attempts: exact
//! virtual start times, the winner, the losers closed, all failures reported together.

mod common;

use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{current_thread, current_thread_on};
use trellis::net::happy_eyeballs::{interleave, race, HappyEyeballs, DEFAULT_DELAY};
use trellis::net::{ConnectError, TcpListener};
use trellis::{AsCancelled, CancelScope};

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

/// What a scripted attempt does.
#[derive(Clone, Copy)]
enum Script {
    /// Never completes (until cancelled).
    Hang,
    /// Fails after this long.
    FailAfter(u64),
    /// Connects after this long.
    ConnectAfter(u64),
    /// Connects after this long even if cancelled meanwhile (a loser that connected anyway).
    ConnectShielded(u64),
}

/// A fake connection that records when it is closed (dropped).
struct FakeConn {
    addr: SocketAddr,
    log: Arc<Mutex<Vec<String>>>,
}

impl Drop for FakeConn {
    fn drop(&mut self) {
        self.log
            .lock()
            .unwrap()
            .push(format!("closed {}", self.addr));
    }
}

/// The log with the `cancelled` lines (whose relative order the runtime does not promise:
/// cancelled tasks wake together) sorted among themselves, in place.
fn normalized(log: &Mutex<Vec<String>>) -> Vec<String> {
    let mut log = log.lock().unwrap().clone();
    let slots: Vec<usize> = (0..log.len())
        .filter(|&i| log[i].starts_with("cancelled"))
        .collect();
    let mut cancelled: Vec<String> = slots.iter().map(|&i| log[i].clone()).collect();
    cancelled.sort();
    for (slot, line) in slots.into_iter().zip(cancelled) {
        log[slot] = line;
    }
    log
}

/// Runs a race over `script`, logging `start <addr> at <ms>` for each attempt.
async fn scripted_race(
    script: Vec<(SocketAddr, Script)>,
    log: Arc<Mutex<Vec<String>>>,
) -> io::Result<FakeConn> {
    let t0 = trellis::now();
    let addrs = script.iter().map(|(a, _)| *a).collect();
    let script = Arc::new(script);
    race(addrs, DEFAULT_DELAY, move |a| {
        let plan = script.iter().find(|(s, _)| *s == a).unwrap().1;
        let log = log.clone();
        async move {
            let ms = (trellis::now() - t0).as_millis();
            log.lock().unwrap().push(format!("start {a} at {ms}"));
            let result: io::Result<()> = match plan {
                Script::Hang => match trellis::sleep_forever().await {
                    Ok(never) => match never {},
                    Err(c) => Err(io::Error::from(c)),
                },
                Script::FailAfter(ms) => {
                    trellis::sleep(Duration::from_millis(ms)).await?;
                    Err(io::Error::new(
                        io::ErrorKind::ConnectionRefused,
                        format!("refused by {a}"),
                    ))
                }
                Script::ConnectAfter(ms) => trellis::sleep(Duration::from_millis(ms))
                    .await
                    .map_err(io::Error::from),
                Script::ConnectShielded(ms) => CancelScope::new()
                    .shielded(true)
                    .run(trellis::sleep(Duration::from_millis(ms)))
                    .await
                    .expect("a shielded scope is not cancelled from outside")
                    .map_err(io::Error::from),
            };
            if let Err(e) = &result {
                if e.cancelled().is_some() {
                    log.lock().unwrap().push(format!("cancelled {a}"));
                }
            }
            result?;
            let ms = (trellis::now() - t0).as_millis();
            log.lock().unwrap().push(format!("connected {a} at {ms}"));
            Ok(FakeConn { addr: a, log })
        }
    })
    .await
}

#[test]
fn addresses_are_interleaved_by_family() {
    let v6a = addr("[2001:db8::1]:80");
    let v6b = addr("[2001:db8::2]:80");
    let v6c = addr("[2001:db8::3]:80");
    let v4a = addr("192.0.2.1:80");
    let v4b = addr("192.0.2.2:80");
    assert_eq!(
        interleave(vec![v6a, v6b, v6c, v4a, v4b]),
        vec![v6a, v4a, v6b, v4b, v6c]
    );
    assert_eq!(interleave(vec![v4a, v6a, v6b]), vec![v4a, v6a, v6b]);
    assert_eq!(interleave(vec![v4b, v4a]), vec![v4b, v4a]);
    assert_eq!(interleave(vec![]), Vec::<SocketAddr>::new());
}

#[test]
fn attempts_start_250ms_apart_or_on_failure_and_the_first_success_wins() {
    let v6a = addr("[2001:db8::1]:80");
    let v6b = addr("[2001:db8::2]:80");
    let v6c = addr("[2001:db8::3]:80");
    let v4a = addr("192.0.2.1:80");
    let log = Arc::new(Mutex::new(Vec::new()));
    let log2 = log.clone();
    let winner = current_thread().0.block_on(async move {
        let t0 = trellis::now();
        let conn = scripted_race(
            vec![
                (v6a, Script::Hang),
                (v6b, Script::Hang),
                (v6c, Script::ConnectAfter(50)),
                (v4a, Script::FailAfter(100)),
            ],
            log2,
        )
        .await
        .unwrap();
        assert_eq!(trellis::now() - t0, Duration::from_millis(650));
        conn.addr
    });
    assert_eq!(winner, v6c);
    // Order v6a, v4a, v6b, v6c. v4a fails at 350, so v6b starts then instead of at 500; v6c
    // starts 250 ms after v6b and wins at 650; the hanging attempts are cancelled.
    assert_eq!(
        normalized(&log),
        vec![
            format!("start {v6a} at 0"),
            format!("start {v4a} at 250"),
            format!("start {v6b} at 350"),
            format!("start {v6c} at 600"),
            format!("connected {v6c} at 650"),
            format!("cancelled {v6a}"),
            format!("cancelled {v6b}"),
            format!("closed {v6c}"),
        ]
    );
}

#[test]
fn a_loser_that_connects_anyway_is_closed() {
    let v6 = addr("[2001:db8::1]:80");
    let v4 = addr("192.0.2.1:80");
    let log = Arc::new(Mutex::new(Vec::new()));
    let log2 = log.clone();
    let winner = current_thread().0.block_on(async move {
        let conn = scripted_race(
            vec![
                (v6, Script::ConnectShielded(400)),
                (v4, Script::ConnectAfter(50)),
            ],
            log2,
        )
        .await
        .unwrap();
        // Keep the winner open while the loser finishes, to see the order.
        conn.addr
    });
    assert_eq!(winner, v4);
    assert_eq!(
        normalized(&log),
        vec![
            format!("start {v6} at 0"),
            format!("start {v4} at 250"),
            format!("connected {v4} at 300"),
            format!("connected {v6} at 400"),
            format!("closed {v6}"),
            format!("closed {v4}"),
        ]
    );
}

#[test]
fn when_every_attempt_fails_all_failures_are_reported_in_start_order() {
    let v6 = addr("[2001:db8::1]:80");
    let v4 = addr("192.0.2.1:80");
    let log = Arc::new(Mutex::new(Vec::new()));
    current_thread().0.block_on(async move {
        let t0 = trellis::now();
        let err = scripted_race(
            vec![(v6, Script::FailAfter(300)), (v4, Script::FailAfter(10))],
            log,
        )
        .await
        .err()
        .unwrap();
        assert_eq!(trellis::now() - t0, Duration::from_millis(300));
        assert_eq!(err.kind(), io::ErrorKind::ConnectionRefused);
        let failed = ConnectError::of(&err).expect("a ConnectError");
        let attempts: Vec<_> = failed
            .attempts()
            .iter()
            .map(|(a, e)| (*a, e.to_string()))
            .collect();
        assert_eq!(
            attempts,
            vec![
                (v6, format!("refused by {v6}")),
                (v4, format!("refused by {v4}")),
            ]
        );
        assert_eq!(
            err.to_string(),
            format!("could not connect: all 2 attempts failed; refused by {v6}; refused by {v4}")
        );
    });
}

#[test]
fn cancelling_the_caller_cancels_every_attempt() {
    let v6 = addr("[2001:db8::1]:80");
    let v4 = addr("192.0.2.1:80");
    let log = Arc::new(Mutex::new(Vec::new()));
    let log2 = log.clone();
    current_thread().0.block_on(async move {
        let out = trellis::fail_after(
            Duration::from_secs(1),
            scripted_race(vec![(v6, Script::Hang), (v4, Script::Hang)], log2),
        )
        .await;
        assert!(out.is_err(), "timed out");
    });
    assert_eq!(
        normalized(&log),
        vec![
            format!("start {v6} at 0"),
            format!("start {v4} at 250"),
            format!("cancelled {v4}"),
            format!("cancelled {v6}"),
        ]
    );
}

#[test]
fn no_address_is_an_error_not_a_hang() {
    current_thread().0.block_on(async {
        let err = race(Vec::new(), DEFAULT_DELAY, |_| async {
            Ok::<_, io::Error>(())
        })
        .await
        .unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::NotFound);
        assert_eq!(err.to_string(), "could not connect: no address to try");
    });
}

#[test]
fn real_connections_through_a_fake_resolver() {
    // The resolver names a closed port first, then a listening one: the refused attempt fails
    // fast and the second attempt starts at once and connects.
    let rt = current_thread_on(None);
    rt.block_on(async {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let open = listener.local_addr()?;
        let closed = {
            let l = TcpListener::bind("127.0.0.1:0").await?;
            l.local_addr()?
        };
        let connector = HappyEyeballs::new().resolver(move |host: &str, _port: u16| {
            let known = host == "db.internal";
            async move {
                if known {
                    Ok(vec![closed, open])
                } else {
                    Err(io::Error::new(io::ErrorKind::NotFound, "no such host"))
                }
            }
        });
        let start = std::time::Instant::now();
        let stream = connector.connect("db.internal", 0).await?;
        assert!(
            start.elapsed() < DEFAULT_DELAY,
            "did not wait for the delay"
        );
        assert_eq!(stream.peer_addr()?, open);

        let err = connector
            .connect("elsewhere.internal", 80)
            .await
            .unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::NotFound);
        assert_eq!(
            err.to_string(),
            "could not resolve host \"elsewhere.internal\": no such host"
        );

        drop(listener);
        let err = connector.connect("db.internal", 0).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::ConnectionRefused);
        let failed = ConnectError::of(&err).unwrap();
        assert_eq!(failed.attempts().len(), 2);
        assert!(
            err.to_string()
                .starts_with("could not connect to db.internal:0: all 2 attempts failed"),
            "{err}"
        );
        Ok::<_, io::Error>(())
    })
    .unwrap();
}
