//! TCP, UDP and Unix sockets over loopback: round trips, half-close, cancellation that loses
//! nothing (principle 4), and clear errors for bad input.

mod common;

use std::io;
use std::net::{Shutdown, SocketAddr};
use std::time::Duration;

use common::{current_thread_on, tcp_pair};
use trellis::io::PartialWrite;
use trellis::net::{TcpListener, TcpStream, UdpSocket, UnixDatagram, UnixListener, UnixStream};
use trellis::testing::wait_all_tasks_blocked;
use trellis::{AsCancelled, CancelScope};

fn first_error<T>(r: Result<T, trellis::NurseryError<io::Error>>) -> io::Result<T> {
    r.map_err(|e| match e {
        trellis::NurseryError::Cancelled(c) => c.into(),
        trellis::NurseryError::Failed(mut errors) => errors.remove(0),
    })
}

async fn read_to_end(stream: &mut TcpStream) -> io::Result<Vec<u8>> {
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let n = stream.read(&mut buf).await?;
        if n == 0 {
            return Ok(out);
        }
        out.extend_from_slice(&buf[..n]);
    }
}

#[test]
fn tcp_echo_round_trip() {
    trellis::run(async {
        let mut listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        first_error(
            trellis::nursery(|n| async move {
                n.spawn(async move {
                    let (mut conn, _) = listener.accept().await?;
                    let got = read_to_end(&mut conn).await?;
                    conn.write_all(&got).await?;
                    Ok(())
                })?;
                let mut client = TcpStream::connect(addr).await?;
                let message: Vec<u8> = (0..100_000u32).map(|i| i as u8).collect();
                client.write_all(&message).await?;
                client.shutdown(Shutdown::Write)?;
                assert_eq!(read_to_end(&mut client).await?, message);
                Ok(())
            })
            .await,
        )
    })
    .unwrap();
}

#[test]
fn half_close_lets_the_peer_finish_writing() {
    // The client closes its writing side; the server reads to end of stream, then still
    // answers on the open direction.
    current_thread_on(None)
        .block_on(async {
            let mut listener = TcpListener::bind("127.0.0.1:0").await?;
            let addr = listener.local_addr()?;
            first_error(
                trellis::nursery(|n| async move {
                    n.spawn(async move {
                        let (mut conn, _) = listener.accept().await?;
                        let got = read_to_end(&mut conn).await?;
                        assert_eq!(got, b"question");
                        // End of stream is sticky.
                        assert_eq!(conn.read(&mut [0u8; 8]).await?, 0);
                        conn.write_all(b"answer").await?;
                        Ok(())
                    })?;
                    let mut client = TcpStream::connect(addr).await?;
                    client.write_all(b"question").await?;
                    trellis::io::WriteStream::shutdown_write(&mut client).await?;
                    assert_eq!(read_to_end(&mut client).await?, b"answer");
                    Ok(())
                })
                .await,
            )
        })
        .unwrap();
}

#[test]
fn cancelled_read_consumes_nothing() {
    // principle 4: a read in a cancelled scope fails before touching the socket, and a read
    // cancelled while blocked leaves later data for the next read.
    current_thread_on(None)
        .block_on(async {
            let (mut a, mut b) = tcp_pair().await?;
            b.write_all(b"hello").await?;
            let scope = CancelScope::new();
            scope.cancel();
            let out = scope
                .run(async {
                    let mut buf = [0u8; 5];
                    a.read(&mut buf).await
                })
                .await;
            assert!(
                out.is_none(),
                "the read must fail with the scope's cancellation"
            );
            let mut buf = [0u8; 5];
            assert_eq!(a.read(&mut buf).await?, 5);
            assert_eq!(&buf, b"hello");

            // Blocked, then cancelled by a deadline.
            let out = trellis::move_on_after(Duration::from_millis(2), async {
                let mut buf = [0u8; 5];
                a.read(&mut buf).await
            })
            .await;
            assert!(out.is_none());
            b.write_all(b"world").await?;
            assert_eq!(a.read(&mut buf).await?, 5);
            assert_eq!(&buf, b"world");
            Ok::<_, io::Error>(())
        })
        .unwrap();
}

#[test]
fn cancelled_accept_loses_no_connection() {
    // principle 4: the connection stays queued for the next accept.
    current_thread_on(None)
        .block_on(async {
            let mut listener = TcpListener::bind("127.0.0.1:0").await?;
            let client = TcpStream::connect(listener.local_addr()?).await?;
            let scope = CancelScope::new();
            scope.cancel();
            assert!(scope.run(listener.accept()).await.is_none());
            let (_server, peer) = listener.accept().await?;
            assert_eq!(peer, client.local_addr()?);
            let blocked = trellis::move_on_after(Duration::from_millis(2), listener.accept()).await;
            assert!(blocked.is_none(), "no second connection was made");
            Ok::<_, io::Error>(())
        })
        .unwrap();
}

#[test]
fn cancelled_write_all_reports_how_much_was_written() {
    // The peer never reads, so the kernel buffers fill and write_all blocks; cancelling it then
    // yields a PartialWrite whose count is exactly what the peer can read.
    current_thread_on(None)
        .block_on(async {
            let (mut writer, mut reader) = tcp_pair().await?;
            let data: Vec<u8> = (0..64 * 1024 * 1024u32).map(|i| (i % 251) as u8).collect();
            let scope = CancelScope::new();
            let cancel = scope.clone();
            let data_ref = &data;
            let written = first_error(
                trellis::nursery(|n| async move {
                    n.spawn(async move {
                        wait_all_tasks_blocked().await?;
                        cancel.cancel();
                        Ok(())
                    })?;
                    // The scope absorbs the cancellation, so the count is read inside it.
                    let mut written = None;
                    let out = scope
                        .run(async {
                            let result = writer.write_all(data_ref).await;
                            if let Err(err) = &result {
                                assert!(err.cancelled().is_some(), "still a cancellation");
                                written = PartialWrite::of(err).map(PartialWrite::written);
                            }
                            result
                        })
                        .await;
                    assert!(out.is_none(), "the scope absorbed its cancellation");
                    drop(writer);
                    Ok(written.expect("some bytes were written"))
                })
                .await,
            )?;
            assert!(written > 0 && written < data.len(), "written = {written}");
            let got = read_to_end(&mut reader).await?;
            assert_eq!(got.len(), written);
            assert_eq!(got, &data[..written]);
            Ok::<_, io::Error>(())
        })
        .unwrap();
}

#[test]
fn connect_to_a_closed_port_is_refused_with_the_address_in_the_message() {
    current_thread_on(None)
        .block_on(async {
            let listener = TcpListener::bind("127.0.0.1:0").await?;
            let addr = listener.local_addr()?;
            drop(listener);
            let err = TcpStream::connect(addr).await.unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::ConnectionRefused);
            assert!(err.to_string().contains(&addr.to_string()), "{err}");
            Ok::<_, io::Error>(())
        })
        .unwrap();
}

#[test]
fn binding_an_address_in_use_says_which() {
    current_thread_on(None)
        .block_on(async {
            let listener = TcpListener::bind("127.0.0.1:0").await?;
            let addr = listener.local_addr()?;
            let err = TcpListener::bind(addr).await.unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::AddrInUse);
            assert_eq!(
                err.to_string(),
                format!("could not bind {addr}: Address already in use (os error 98)")
            );
            Ok::<_, io::Error>(())
        })
        .unwrap();
}

#[test]
fn unknown_host_and_bad_address_are_clear_errors() {
    current_thread_on(None)
        .block_on(async {
            let err = TcpStream::connect("no-such-host.invalid:80")
                .await
                .unwrap_err();
            assert!(err.to_string().contains("no-such-host.invalid"), "{err}");
            let err = trellis::net::connect_tcp("no-such-host.invalid", 80)
                .await
                .unwrap_err();
            assert!(err.to_string().contains("no-such-host.invalid"), "{err}");
            let err = TcpStream::connect("not an address").await.unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
            assert!(err.to_string().contains("not an address"), "{err}");
            Ok::<_, io::Error>(())
        })
        .unwrap();
}

#[test]
fn nodelay_and_addresses() {
    current_thread_on(None)
        .block_on(async {
            let (a, b) = tcp_pair().await?;
            a.set_nodelay(true)?;
            assert!(a.nodelay()?);
            a.set_nodelay(false)?;
            assert!(!a.nodelay()?);
            assert_eq!(a.peer_addr()?, b.local_addr()?);
            assert_eq!(b.peer_addr()?, a.local_addr()?);
            Ok::<_, io::Error>(())
        })
        .unwrap();
}

/// Issue 16, item 4: `TCP_NODELAY` is on for every stream trellis connects or accepts
/// (`TcpStream::connect`, `connect_tcp`, `TcpListener::accept`, `poll_accept`/`incoming`, the
/// streams `serve_tcp_on` hands to its handler), and the setter still turns it off.
#[test]
fn connected_and_accepted_streams_have_nodelay_on() {
    current_thread_on(None)
        .block_on(async {
            let mut listener = TcpListener::bind("127.0.0.1:0").await?;
            let addr = listener.local_addr()?;
            let connected = TcpStream::connect(addr).await?;
            let (accepted, _) = listener.accept().await?;
            let happy = trellis::net::connect_tcp("127.0.0.1", addr.port()).await?;
            let polled = futures_lite::StreamExt::next(&mut listener.incoming())
                .await
                .expect("never ends")?;
            let served = first_error(
                trellis::nursery(|n| async move {
                    let (tx, rx) = trellis::channel::bounded(1);
                    let addrs = n
                        .start(|status| {
                            trellis::net::serve_tcp_on(
                                move |stream: TcpStream| {
                                    let tx = tx.clone();
                                    async move {
                                        tx.send(stream.nodelay()?).await.map_err(io::Error::other)
                                    }
                                },
                                "127.0.0.1:0",
                                status,
                            )
                        })
                        .await?;
                    let _client = TcpStream::connect(addrs[0]).await?;
                    let served = rx.recv().await.map_err(io::Error::other)?;
                    n.cancel();
                    Ok(served)
                })
                .await,
            )?;
            let streams = [&connected, &accepted, &happy, &polled];
            let on = streams.map(|s| s.nodelay().unwrap());
            assert_eq!(
                (on, served),
                ([true; 4], true),
                "connect, accept, connect_tcp, incoming; serve_tcp_on"
            );
            connected.set_nodelay(false)?;
            assert!(!connected.nodelay()?);
            Ok::<_, io::Error>(())
        })
        .unwrap();
}

#[test]
fn split_halves_work_from_two_tasks() {
    // One task writes 4 MiB through the write half while another reads the echo through the
    // read half: full duplex, no deadlock.
    trellis::run(async {
        let mut listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        const TOTAL: usize = 4 * 1024 * 1024;
        first_error(
            trellis::nursery(|n| async move {
                n.spawn(async move {
                    let (conn, _) = listener.accept().await?;
                    let (mut r, mut w) = conn.into_split();
                    let mut buf = vec![0u8; 16 * 1024];
                    loop {
                        let got = r.read(&mut buf).await?;
                        if got == 0 {
                            return Ok(());
                        }
                        w.write_all(&buf[..got]).await?;
                    }
                })?;
                let (mut r, mut w) = TcpStream::connect(addr).await?.into_split();
                n.spawn(async move {
                    let chunk = vec![7u8; 64 * 1024];
                    for _ in 0..TOTAL / chunk.len() {
                        w.write_all(&chunk).await?;
                    }
                    drop(w); // shuts down the writing direction
                    Ok(())
                })?;
                let mut total = 0;
                let mut buf = vec![0u8; 64 * 1024];
                loop {
                    let got = r.read(&mut buf).await?;
                    if got == 0 {
                        break;
                    }
                    assert!(buf[..got].iter().all(|&b| b == 7));
                    total += got;
                }
                assert_eq!(total, TOTAL);
                Ok(())
            })
            .await,
        )
    })
    .unwrap();
}

#[test]
fn futures_io_traits_work_with_ecosystem_helpers() {
    use futures_lite::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
    use futures_lite::StreamExt;

    current_thread_on(None)
        .block_on(async {
            let mut listener = TcpListener::bind("127.0.0.1:0").await?;
            let addr = listener.local_addr()?;
            first_error(
                trellis::nursery(|n| async move {
                    n.spawn(async move {
                        let conn = listener.incoming().next().await.expect("never ends")?;
                        let (r, mut w) = conn.into_split();
                        let mut lines = BufReader::new(r).lines();
                        while let Some(line) = lines.next().await {
                            let line = line?;
                            AsyncWriteExt::write_all(&mut w, line.to_uppercase().as_bytes())
                                .await?;
                            AsyncWriteExt::write_all(&mut w, b"\n").await?;
                        }
                        Ok(())
                    })?;
                    let client = TcpStream::connect(addr).await?;
                    let (r, mut w) = client.into_split();
                    AsyncWriteExt::write_all(&mut w, b"one\ntwo\n").await?;
                    AsyncWriteExt::close(&mut w).await?;
                    let mut reader = BufReader::new(r);
                    let mut line = String::new();
                    reader.read_line(&mut line).await?;
                    assert_eq!(line, "ONE\n");
                    line.clear();
                    reader.read_line(&mut line).await?;
                    assert_eq!(line, "TWO\n");
                    line.clear();
                    assert_eq!(reader.read_line(&mut line).await?, 0);
                    Ok(())
                })
                .await,
            )
        })
        .unwrap();
}

#[test]
fn poll_read_in_a_cancelled_scope_fails_and_consumes_nothing() {
    use futures_lite::io::AsyncReadExt;
    current_thread_on(None)
        .block_on(async {
            let (mut a, mut b) = tcp_pair().await?;
            b.write_all(b"kept").await?;
            let scope = CancelScope::new();
            scope.cancel();
            let out = scope
                .run(async {
                    let mut buf = [0u8; 4];
                    AsyncReadExt::read(&mut a, &mut buf).await
                })
                .await;
            assert!(out.is_none());
            // A blocked poll read is woken by a cancellation (level-triggered, C1).
            let blocked = trellis::move_on_after(Duration::from_millis(2), async {
                let mut buf = [0u8; 4];
                AsyncReadExt::read(&mut a, &mut buf[..]).await?;
                AsyncReadExt::read(&mut a, &mut buf[..]).await
            })
            .await;
            assert!(blocked.is_none());
            Ok::<_, io::Error>(())
        })
        .unwrap();
}

#[test]
fn udp_round_trip_and_cancelled_receive_keeps_the_datagram() {
    current_thread_on(None)
        .block_on(async {
            let a = UdpSocket::bind("127.0.0.1:0").await?;
            let b = UdpSocket::bind("127.0.0.1:0").await?;
            a.send_to(b"first", b.local_addr()?).await?;
            let scope = CancelScope::new();
            scope.cancel();
            let mut buf = [0u8; 16];
            assert!(scope.run(b.recv_from(&mut buf)).await.is_none());
            let (n, from) = b.recv_from(&mut buf).await?;
            assert_eq!((&buf[..n], from), (&b"first"[..], a.local_addr()?));
            // Connected sockets.
            a.connect(b.local_addr()?).await?;
            b.connect(a.local_addr()?).await?;
            b.send(b"reply").await?;
            assert_eq!(a.recv(&mut buf).await?, 5);
            assert_eq!(&buf[..5], b"reply");
            assert_eq!(a.peer_addr()?, b.local_addr()?);
            Ok::<_, io::Error>(())
        })
        .unwrap();
}

/// Issue 16, item 8: `send_to` picks the first address of the socket's own family, as when
/// "localhost" resolves to `::1` first and then `127.0.0.1` (the list stands for that lookup);
/// with no address of that family it says so.
#[test]
fn udp_send_to_picks_an_address_of_the_sockets_family() {
    current_thread_on(None)
        .block_on(async {
            let a = UdpSocket::bind("127.0.0.1:0").await?;
            let b = UdpSocket::bind("127.0.0.1:0").await?;
            let port = b.local_addr()?.port();
            let v6_first: Vec<SocketAddr> = vec![
                SocketAddr::from((std::net::Ipv6Addr::LOCALHOST, port)),
                SocketAddr::from(([127, 0, 0, 1], port)),
            ];
            assert_eq!(a.send_to(b"via v4", &v6_first).await?, 6);
            let mut buf = [0u8; 16];
            let (n, from) = b.recv_from(&mut buf).await?;
            assert_eq!((&buf[..n], from), (&b"via v4"[..], a.local_addr()?));

            let err = a.send_to(b"x", &v6_first[..1]).await.unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
            assert_eq!(
                err.to_string(),
                format!("no IPv4 address to send to from an IPv4 socket among [::1]:{port}")
            );

            // An IPv6 socket given IPv4 addresses only sends to the IPv4-mapped form.
            let Ok(c) = UdpSocket::bind("[::]:0").await else {
                return Ok(()); // no IPv6 on this host
            };
            let v4_only = [SocketAddr::from(([127, 0, 0, 1], port))];
            assert_eq!(c.send_to(b"via v6", &v4_only[..]).await?, 6);
            let (n, from) = b.recv_from(&mut buf).await?;
            assert_eq!(&buf[..n], b"via v6");
            assert_eq!(
                from,
                SocketAddr::from(([127, 0, 0, 1], c.local_addr()?.port()))
            );
            Ok::<_, io::Error>(())
        })
        .unwrap();
}

#[test]
fn two_tasks_receiving_on_one_udp_socket_is_a_busy_error() {
    current_thread_on(None)
        .block_on(async {
            let socket = std::sync::Arc::new(UdpSocket::bind("127.0.0.1:0").await?);
            let other = socket.clone();
            first_error(
                trellis::nursery(|n| async move {
                    n.spawn(async move {
                        let mut buf = [0u8; 4];
                        let _ = other.recv_from(&mut buf).await; // blocks until cancelled
                        Ok(())
                    })?;
                    wait_all_tasks_blocked().await?;
                    let mut buf = [0u8; 4];
                    let err = socket.recv_from(&mut buf).await.unwrap_err();
                    assert_eq!(err.kind(), io::ErrorKind::ResourceBusy);
                    assert_eq!(
                        err.to_string(),
                        "another task is already using this resource"
                    );
                    n.cancel();
                    Ok(())
                })
                .await,
            )
        })
        .unwrap();
}

#[test]
fn unix_stream_and_datagram_round_trips() {
    let dir = std::env::temp_dir().join(format!("trellis-unix-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("stream.sock");
    let dgram_a = dir.join("a.sock");
    let dgram_b = dir.join("b.sock");
    current_thread_on(None)
        .block_on(async {
            let mut listener = UnixListener::bind(&path)?;
            let mut client = UnixStream::connect(&path).await?;
            let (mut server, _) = listener.accept().await?;
            client.write_all(b"over unix").await?;
            client.shutdown(Shutdown::Write)?;
            let mut got = Vec::new();
            let mut buf = [0u8; 4];
            loop {
                let n = server.read(&mut buf).await?;
                if n == 0 {
                    break;
                }
                got.extend_from_slice(&buf[..n]);
            }
            assert_eq!(got, b"over unix");

            let a = UnixDatagram::bind(&dgram_a)?;
            let b = UnixDatagram::bind(&dgram_b)?;
            a.send_to(b"dgram", &dgram_b).await?;
            let mut buf = [0u8; 16];
            let (n, from) = b.recv_from(&mut buf).await?;
            assert_eq!(&buf[..n], b"dgram");
            assert_eq!(from.as_pathname(), Some(dgram_a.as_path()));

            let err = UnixStream::connect(dir.join("nobody.sock"))
                .await
                .unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::NotFound);
            assert!(err.to_string().contains("nobody.sock"), "{err}");
            let err = UnixListener::bind(&path).unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::AddrInUse);
            Ok::<_, io::Error>(())
        })
        .unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Issue 16, item 5: Linux abstract socket names (a leading NUL byte, no file) work for binding
/// as well as connecting, for streams and datagrams; the addresses say so.
#[cfg(target_os = "linux")]
#[test]
fn abstract_unix_names_bind_and_connect() {
    use std::ffi::OsStr;
    use std::os::linux::net::SocketAddrExt;
    use std::os::unix::ffi::OsStrExt;

    let stream_name = format!("trellis-abstract-stream-{}", std::process::id());
    let dgram_a = format!("trellis-abstract-a-{}", std::process::id());
    let dgram_b = format!("trellis-abstract-b-{}", std::process::id());
    let path = |name: &str| OsStr::from_bytes(&[b"\0", name.as_bytes()].concat()).to_owned();
    current_thread_on(None)
        .block_on(async {
            let mut listener = UnixListener::bind(path(&stream_name))?;
            assert_eq!(
                listener.local_addr()?.as_abstract_name(),
                Some(stream_name.as_bytes())
            );
            let mut client = UnixStream::connect(path(&stream_name)).await?;
            let (mut server, _) = listener.accept().await?;
            client.write_all(b"abstract").await?;
            let mut buf = [0u8; 8];
            let mut got = 0;
            while got < buf.len() {
                got += server.read(&mut buf[got..]).await?;
            }
            server.write_all(&buf).await?;
            let mut echo = [0u8; 8];
            let mut got = 0;
            while got < echo.len() {
                got += client.read(&mut echo[got..]).await?;
            }
            assert_eq!(&echo, b"abstract");
            // The name is taken while the listener exists.
            let err = UnixListener::bind(path(&stream_name)).unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::AddrInUse);
            assert!(
                err.to_string().contains(&format!("@{stream_name}")),
                "{err}"
            );

            let a = UnixDatagram::bind(path(&dgram_a))?;
            let b = UnixDatagram::bind(path(&dgram_b))?;
            a.send_to(b"dgram", path(&dgram_b)).await?;
            let mut buf = [0u8; 16];
            let (n, from) = b.recv_from(&mut buf).await?;
            assert_eq!(&buf[..n], b"dgram");
            assert_eq!(from.as_abstract_name(), Some(dgram_a.as_bytes()));
            b.connect(path(&dgram_a))?;
            b.send(b"reply").await?;
            let (n, from) = a.recv_from(&mut buf).await?;
            assert_eq!(&buf[..n], b"reply");
            assert_eq!(from.as_abstract_name(), Some(dgram_b.as_bytes()));
            Ok::<_, io::Error>(())
        })
        .unwrap();
}

/// A NUL byte inside a path (not the leading one of an abstract name) is a clear error, not a
/// silently shortened path (issue 16, item 5).
#[test]
fn a_nul_inside_a_unix_path_is_an_error() {
    use std::ffi::OsStr;
    use std::os::unix::ffi::OsStrExt;

    let path = OsStr::from_bytes(b"/tmp/trellis\0nul.sock");
    current_thread_on(None)
        .block_on(async {
            let errors = [
                UnixListener::bind(path).unwrap_err(),
                UnixStream::connect(path).await.unwrap_err(),
                UnixDatagram::bind(path).unwrap_err(),
                UnixDatagram::unbound()?.connect(path).unwrap_err(),
                UnixDatagram::unbound()?
                    .send_to(b"x", path)
                    .await
                    .unwrap_err(),
            ];
            for err in errors {
                assert_eq!(err.kind(), io::ErrorKind::InvalidInput, "{err}");
                assert!(err.to_string().contains("null byte"), "{err}");
            }
            Ok::<_, io::Error>(())
        })
        .unwrap();
}

#[test]
fn connect_is_a_checkpoint_in_a_cancelled_scope() {
    current_thread_on(None)
        .block_on(async {
            let listener = TcpListener::bind("127.0.0.1:0").await?;
            let addr: SocketAddr = listener.local_addr()?;
            let scope = CancelScope::new();
            scope.cancel();
            assert!(scope.run(TcpStream::connect(addr)).await.is_none());
            Ok::<_, io::Error>(())
        })
        .unwrap();
}

fn panic_message(payload: Box<dyn std::any::Any + Send>) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_default()
}

/// A stream's futures-io traits polled by another executor, with no trellis runtime on the
/// thread: a panic whose message says what happened and what to do, never a wait that cannot
/// end (its readiness would only ever reach the reactor that registered it).
#[test]
fn a_stream_polled_outside_the_runtime_panics_with_a_clear_message() {
    let rt = current_thread_on(None);
    let (mut client, _server) = rt.block_on(tcp_pair()).unwrap();
    let outside = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let mut buf = [0u8; 8];
        futures_lite::future::block_on(futures_lite::AsyncReadExt::read(&mut client, &mut buf))
    }));
    let message = panic_message(outside.expect_err("polling outside the runtime must not return"));
    assert!(
        message.contains("polled outside a trellis runtime"),
        "{message}"
    );
}

/// Each `block_on` has its own reactor: a stream made in one run and read in the next used to
/// wait forever; now a read that must wait panics and says to create the stream inside the run
/// that uses it. A read that can complete at once still does (net_serve relies on it).
#[test]
fn a_stream_used_in_a_later_run_panics_instead_of_hanging() {
    let rt = current_thread_on(None);
    let (mut client, mut server) = rt.block_on(tcp_pair()).unwrap();
    rt.block_on(server.write_all(b"ready")).unwrap();
    let ready = rt.block_on(async {
        let mut buf = [0u8; 8];
        let n = client.read(&mut buf).await?;
        io::Result::Ok(buf[..n].to_vec())
    });
    assert_eq!(ready.unwrap(), b"ready");
    let later = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        rt.block_on(async {
            let mut buf = [0u8; 8];
            client.read(&mut buf).await
        })
    }));
    let message = panic_message(later.expect_err("a read in a later run must not return"));
    assert!(
        message.contains("different run than the one that created it"),
        "{message}"
    );
}
