//! Server loops: `serve_tcp` with `Nursery::start`, many connections, cancellation that ends
//! every handler and closes every socket, accept errors retried or propagated.

mod common;

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{current_thread, current_thread_on};
use trellis::net::{serve_listeners, serve_tcp, serve_tcp_on, Listener, TcpStream};
use trellis::testing::wait_all_tasks_blocked;
use trellis::{CancelScope, Error, NurseryError};

async fn echo(mut stream: TcpStream) -> Result<(), Error> {
    let mut buf = [0u8; 4096];
    loop {
        let n = stream.read(&mut buf).await?;
        if n == 0 {
            return Ok(());
        }
        stream.write_all(&buf[..n]).await?;
    }
}

#[test]
fn start_returns_the_bound_addresses_and_many_clients_are_served_at_once() {
    const CLIENTS: usize = 200;
    trellis::run(async {
        trellis::nursery(|n| async move {
            let addrs: Vec<SocketAddr> = n
                .start(|status| serve_tcp_on(echo, "127.0.0.1:0", status))
                .await?;
            assert_eq!(addrs.len(), 1);
            assert!(addrs[0].ip().is_loopback() && addrs[0].port() != 0);
            let addr = addrs[0];
            let served = Arc::new(AtomicUsize::new(0));
            trellis::nursery(|clients| {
                let served = served.clone();
                async move {
                    for i in 0..CLIENTS {
                        let served = served.clone();
                        clients.spawn(async move {
                            let mut stream = TcpStream::connect(addr).await?;
                            let message = format!("client {i} says hello").repeat(50);
                            stream.write_all(message.as_bytes()).await?;
                            let mut back = vec![0u8; message.len()];
                            let mut got = 0;
                            while got < back.len() {
                                let n = stream.read(&mut back[got..]).await?;
                                assert_ne!(n, 0, "the server closed early");
                                got += n;
                            }
                            assert_eq!(back, message.as_bytes());
                            served.fetch_add(1, Ordering::SeqCst);
                            Ok::<_, Error>(())
                        })?;
                    }
                    Ok(())
                }
            })
            .await
            .map_err(Error::from)?;
            assert_eq!(served.load(Ordering::SeqCst), CLIENTS);
            n.cancel();
            Ok::<_, Error>(())
        })
        .await
    })
    .unwrap();
}

/// Counts live handlers: incremented on creation, decremented on drop.
struct Live(Arc<AtomicUsize>);

impl Live {
    fn new(count: &Arc<AtomicUsize>) -> Live {
        count.fetch_add(1, Ordering::SeqCst);
        Live(count.clone())
    }
}

impl Drop for Live {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

#[test]
fn cancelling_the_server_ends_every_handler_and_closes_every_connection() {
    const CLIENTS: usize = 20;
    let live = Arc::new(AtomicUsize::new(0));
    let counter = live.clone();
    let clients = trellis::run(async move {
        let server = CancelScope::new();
        let handle = server.clone();
        let mut clients = Vec::new();
        trellis::nursery(|n| async move {
            let counter2 = counter.clone();
            let addrs = n
                .start(|status| async move {
                    server
                        .run(serve_tcp_on(
                            move |stream: TcpStream| {
                                let live = Live::new(&counter2);
                                async move {
                                    let _live = live;
                                    echo(stream).await
                                }
                            },
                            "127.0.0.1:0",
                            status,
                        ))
                        .await;
                    Ok::<_, Error>(())
                })
                .await?;
            for _ in 0..CLIENTS {
                let mut c = TcpStream::connect(addrs[0]).await?;
                c.write_all(b"ping").await?;
                let mut buf = [0u8; 4];
                let mut got = 0;
                while got < 4 {
                    got += c.read(&mut buf[got..]).await?;
                }
                clients.push(c);
            }
            assert_eq!(counter.load(Ordering::SeqCst), CLIENTS);
            handle.cancel();
            Ok::<_, Error>(clients)
        })
        .await
        .map_err(Error::from)
    })
    .unwrap();
    assert_eq!(live.load(Ordering::SeqCst), 0, "every handler ended");
    trellis::run(async move {
        for mut c in clients {
            let mut buf = [0u8; 4];
            // The server side was closed: end of stream (or a reset), never a hang.
            match c.read(&mut buf).await {
                Ok(n) => assert_eq!(n, 0),
                Err(e) => assert_eq!(e.kind(), io::ErrorKind::ConnectionReset),
            }
        }
    });
}

#[test]
fn serve_tcp_binds_every_interface() {
    trellis::run(async {
        trellis::nursery(|n| async move {
            let addrs = n.start(|status| serve_tcp(echo, 0, status)).await?;
            let v4 = addrs
                .iter()
                .find(|a| a.is_ipv4())
                .expect("an IPv4 listener");
            assert!(v4.ip().is_unspecified());
            // Port 0: one free port, the same for every family.
            assert!(addrs.iter().all(|a| a.port() == v4.port()), "{addrs:?}");
            let mut c = TcpStream::connect(("127.0.0.1", v4.port())).await?;
            c.write_all(b"x").await?;
            let mut b = [0u8; 1];
            assert_eq!(c.read(&mut b).await?, 1);
            // The connection's handler task is named after its peer.
            let peer = c.local_addr()?;
            let tree = trellis::lowlevel::task_tree();
            assert!(tree.contains(&format!("connection from {peer}")), "{tree}");
            n.cancel();
            Ok::<_, Error>(())
        })
        .await
    })
    .unwrap();
}

#[test]
fn every_handler_error_reaches_the_nursery() {
    // principle 4: two handlers fail; both errors are reported, not just the one the server
    // task returns.
    let rt = current_thread_on(None);
    let errors = rt.block_on(async {
        let accepted = Arc::new(AtomicUsize::new(0));
        trellis::nursery(|n| async move {
            let addrs = n
                .start(|status| {
                    serve_tcp_on(
                        move |_stream: TcpStream| {
                            let accepted = accepted.clone();
                            async move {
                                let me = accepted.fetch_add(1, Ordering::SeqCst) + 1;
                                // The first handler waits (shielded) for the second, so both
                                // get to fail.
                                CancelScope::new()
                                    .shielded(true)
                                    .run(async {
                                        while accepted.load(Ordering::SeqCst) < 2 {
                                            trellis::sleep(Duration::from_millis(1)).await?;
                                        }
                                        Ok::<_, Error>(())
                                    })
                                    .await;
                                Err::<(), _>(Error::Io(Arc::new(io::Error::other(format!(
                                    "handler {me} failed"
                                )))))
                            }
                        },
                        "127.0.0.1:0",
                        status,
                    )
                })
                .await?;
            let _a = TcpStream::connect(addrs[0]).await?;
            let _b = TcpStream::connect(addrs[0]).await?;
            trellis::sleep_forever().await?;
            Ok::<_, Error>(())
        })
        .await
        .unwrap_err()
        .into_errors()
    });
    let mut messages: Vec<String> = errors.iter().map(|e| e.to_string()).collect();
    messages.sort();
    assert_eq!(
        messages,
        vec![
            "I/O error: handler 1 failed".to_owned(),
            "I/O error: handler 2 failed".to_owned()
        ]
    );
}

/// A listener that replays scripted accept results, logging virtual times.
struct ScriptedListener {
    script: Vec<io::Result<u32>>,
    log: Arc<Mutex<Vec<String>>>,
    t0: std::time::Instant,
}

impl Listener for ScriptedListener {
    type Stream = u32;

    async fn accept(&mut self) -> io::Result<u32> {
        let ms = (trellis::now() - self.t0).as_millis();
        trellis::checkpoint().await?;
        if self.script.is_empty() {
            self.log
                .lock()
                .unwrap()
                .push(format!("accept at {ms}: waits"));
            trellis::sleep_forever().await?;
        }
        let next = self.script.remove(0);
        let shown = match &next {
            Ok(id) => format!("connection {id}"),
            Err(e) => format!("errno {}", e.raw_os_error().unwrap_or(0)),
        };
        self.log
            .lock()
            .unwrap()
            .push(format!("accept at {ms}: {shown}"));
        next
    }
}

#[test]
fn out_of_descriptors_is_retried_after_100ms_and_dying_connections_are_skipped() {
    let log = Arc::new(Mutex::new(Vec::new()));
    let log2 = log.clone();
    current_thread().0.block_on(async move {
        let t0 = trellis::now();
        let listener = ScriptedListener {
            script: vec![
                Err(io::Error::from_raw_os_error(libc::EMFILE)),
                Err(io::Error::from_raw_os_error(libc::ENFILE)),
                Err(io::Error::from_raw_os_error(libc::ECONNABORTED)),
                Ok(7),
            ],
            log: log2.clone(),
            t0,
        };
        let handled = log2.clone();
        let out = trellis::move_on_after(
            Duration::from_secs(1),
            serve_listeners(vec![listener], move |id: u32| {
                let handled = handled.clone();
                async move {
                    let ms = (trellis::now() - t0).as_millis();
                    handled.lock().unwrap().push(format!("handle {id} at {ms}"));
                    Ok::<_, Error>(())
                }
            }),
        )
        .await;
        assert!(out.is_none(), "only the deadline stops the server");
        assert_eq!(trellis::now() - t0, Duration::from_secs(1));
    });
    assert_eq!(
        *log.lock().unwrap(),
        vec![
            "accept at 0: errno 24",
            "accept at 100: errno 23",
            "accept at 200: errno 103",
            "accept at 200: connection 7",
            // The handler task runs during the next accept's checkpoint.
            "handle 7 at 200",
            "accept at 200: waits",
        ]
    );
}

/// Issue 16, item 7: an accept error about only the connection being accepted (it died in the
/// queue: `ECONNABORTED` and the rest of trio's list) is skipped at once, and the server goes on
/// accepting and serving; only the deadline stops it.
#[test]
fn accept_errors_about_one_dying_connection_do_not_stop_the_server() {
    let per_connection = [
        libc::ECONNABORTED,
        libc::EPROTO,
        libc::EPERM,
        libc::ENETDOWN,
        libc::ENOPROTOOPT,
        libc::EHOSTDOWN,
        libc::ENONET,
        libc::EHOSTUNREACH,
        libc::EOPNOTSUPP,
        libc::ENETUNREACH,
    ];
    let log = Arc::new(Mutex::new(Vec::new()));
    let log2 = log.clone();
    current_thread().0.block_on(async move {
        let t0 = trellis::now();
        let mut script = vec![Ok(1)];
        for (i, errno) in per_connection.into_iter().enumerate() {
            script.push(Err(io::Error::from_raw_os_error(errno)));
            script.push(Ok(i as u32 + 2));
        }
        let listener = ScriptedListener {
            script,
            log: log2.clone(),
            t0,
        };
        let handled = log2.clone();
        let out = trellis::move_on_after(
            Duration::from_secs(1),
            serve_listeners(vec![listener], move |id: u32| {
                let handled = handled.clone();
                async move {
                    handled.lock().unwrap().push(format!("handle {id}"));
                    Ok::<_, Error>(())
                }
            }),
        )
        .await;
        assert!(out.is_none(), "only the deadline stops the server");
        assert_eq!(trellis::now() - t0, Duration::from_secs(1));
    });
    let mut expected = vec![
        "accept at 0: connection 1".to_owned(),
        "handle 1".to_owned(),
    ];
    for (i, errno) in per_connection.into_iter().enumerate() {
        expected.push(format!("accept at 0: errno {errno}"));
        expected.push(format!("accept at 0: connection {}", i + 2));
        expected.push(format!("handle {}", i + 2));
    }
    expected.push("accept at 0: waits".to_owned());
    assert_eq!(*log.lock().unwrap(), expected);
}

#[test]
fn other_accept_errors_stop_the_server_and_are_reported() {
    current_thread().0.block_on(async {
        let listener = ScriptedListener {
            script: vec![Err(io::Error::from_raw_os_error(libc::EBADF))],
            log: Arc::new(Mutex::new(Vec::new())),
            t0: trellis::now(),
        };
        let err = serve_listeners(vec![listener], |_: u32| async { Ok::<_, Error>(()) })
            .await
            .unwrap_err();
        match err {
            NurseryError::Failed(errors) => {
                assert_eq!(errors.len(), 1);
                assert!(
                    errors[0].to_string().contains("Bad file descriptor"),
                    "{}",
                    errors[0]
                );
            }
            NurseryError::Cancelled(c) => panic!("unexpected cancellation {c}"),
        }
        wait_all_tasks_blocked().await.unwrap();
    });
}
