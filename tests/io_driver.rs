//! The I/O driver through `io::AsyncFd`, on real Unix sockets and pipes: readiness wakes blocked
//! tasks, waits are checkpoints (principle 3), a cancelled read consumes nothing (principle 4),
//! a reused descriptor number gets no stale wake-up, and a full socket buffer blocks a writer
//! until the peer drains it.

#![cfg(unix)]

mod common;

use std::io::{self, Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::sync::Arc;

use common::{block_on_trio_order, current_thread, runtime, secs, Log};
use trellis::io::AsyncFd;
use trellis::testing::wait_all_tasks_blocked;
use trellis::{
    checkpoint, move_on_after, now, nursery, sleep, AsCancelled, CancelReason, CancelScope, Error,
    Flavor,
};

/// One non-blocking read of up to 64 bytes, as text.
async fn read_text(fd: &AsyncFd<UnixStream>) -> io::Result<String> {
    let mut buf = [0u8; 64];
    let n = fd.read_with(|s| (&*s).read(&mut buf)).await?;
    Ok(String::from_utf8_lossy(&buf[..n]).into_owned())
}

/// The reason of the cancellation an I/O error carries; panics if it carries none.
fn cancel_reason(err: &io::Error) -> CancelReason {
    err.cancelled()
        .expect("the error carries a cancellation")
        .reason()
        .clone()
}

// Readiness of a socket wakes the task blocked reading it, and only then does it read.
#[test]
fn readiness_wakes_a_blocked_reader() {
    let rt = current_thread().0;
    rt.block_on(async {
        let (a, mut b) = UnixStream::pair()?;
        let a = Arc::new(AsyncFd::new(a)?);
        let log = Log::default();
        let result = nursery(|n| {
            let (log, a) = (log.clone(), a.clone());
            async move {
                let l = log.clone();
                n.spawn(async move {
                    l.push("reading");
                    let text = read_text(&a).await?;
                    l.push(format!("read {text:?}"));
                    Ok(())
                })?;
                wait_all_tasks_blocked().await?;
                log.push("writing");
                b.write_all(b"hello")?;
                Ok::<_, Error>(())
            }
        })
        .await;
        result.unwrap();
        assert_eq!(log.take(), ["reading", "writing", "read \"hello\""]);
        Ok::<_, io::Error>(())
    })
    .unwrap();
}

// The same through a pipe (std::io::pipe): the reader blocks until the writer writes; EOF
// after the writer closes.
#[test]
fn a_pipe_wakes_a_blocked_reader() {
    let rt = current_thread().0;
    rt.block_on(async {
        let (reader, mut writer) = io::pipe()?;
        let reader = Arc::new(AsyncFd::new(reader)?);
        let log = Log::default();
        let result = nursery(|n| {
            let (log, reader) = (log.clone(), reader.clone());
            async move {
                let l = log.clone();
                n.spawn(async move {
                    let mut received = Vec::new();
                    loop {
                        let mut buf = [0u8; 16];
                        let n = reader.read_with(|r| (&*r).read(&mut buf)).await?;
                        if n == 0 {
                            break;
                        }
                        received.extend_from_slice(&buf[..n]);
                        l.push(format!("got {n}"));
                    }
                    l.push(format!(
                        "eof after {:?}",
                        String::from_utf8(received).unwrap()
                    ));
                    Ok(())
                })?;
                wait_all_tasks_blocked().await?;
                writer.write_all(b"through")?;
                wait_all_tasks_blocked().await?;
                writer.write_all(b" a pipe")?;
                wait_all_tasks_blocked().await?;
                drop(writer);
                Ok::<_, Error>(())
            }
        })
        .await;
        result.unwrap();
        assert_eq!(
            log.take(),
            ["got 7", "got 7", "eof after \"through a pipe\""]
        );
        Ok::<_, io::Error>(())
    })
    .unwrap();
}

// principle 4: a read cancelled while blocked consumes no bytes; the next reader gets them all.
#[test]
fn a_cancelled_read_consumes_nothing() {
    let rt = current_thread().0;
    rt.block_on(async {
        let t0 = now();
        let (a, mut b) = UnixStream::pair()?;
        let a = Arc::new(AsyncFd::new(a)?);
        let scope = CancelScope::new();
        let log = Log::default();
        let result = nursery(|n| {
            let (log, a, scope) = (log.clone(), a.clone(), scope.clone());
            async move {
                let (l, s) = (log.clone(), scope.clone());
                n.spawn(async move {
                    let out = s
                        .run(async {
                            let r = read_text(&a).await;
                            let e = r.as_ref().unwrap_err();
                            l.push(format!(
                                "read cancelled at {:?}: {:?}",
                                now() - t0,
                                cancel_reason(e)
                            ));
                            r
                        })
                        .await;
                    assert!(
                        out.is_none(),
                        "the scope absorbs the cancellation inside io::Error"
                    );
                    Ok(())
                })?;
                sleep(secs(3)).await?;
                scope.cancel();
                Ok::<_, Error>(())
            }
        })
        .await;
        result.unwrap();
        assert_eq!(log.take(), ["read cancelled at 3s: Explicit(None)"]);

        b.write_all(b"every byte")?;
        assert_eq!(read_text(&a).await?, "every byte");
        Ok::<_, io::Error>(())
    })
    .unwrap();
}

// principle 4, principle 3: a read in a cancelled scope fails before reading, even when data is
// waiting: the data stays for the next reader.
#[test]
fn a_read_in_a_cancelled_scope_leaves_the_data() {
    let rt = current_thread().0;
    rt.block_on(async {
        let (a, mut b) = UnixStream::pair()?;
        let a = AsyncFd::new(a)?;
        b.write_all(b"waiting")?;
        // Let the reactor see the readiness first.
        a.readable().await?;
        let scope = CancelScope::new();
        let out = scope
            .run(async {
                scope.cancel();
                let r = read_text(&a).await;
                assert_eq!(
                    cancel_reason(r.as_ref().unwrap_err()),
                    CancelReason::Explicit(None)
                );
                r
            })
            .await;
        assert!(out.is_none());
        assert_eq!(read_text(&a).await?, "waiting");
        Ok::<_, io::Error>(())
    })
    .unwrap();
}

// principle 4: a read that completed is never lost to a cancellation that arrives during the
// yield after it (the checkpoint's schedule point): the reader gets its bytes.
#[test]
fn a_completed_read_survives_a_cancel_during_its_yield() {
    block_on_trio_order(async {
        let (a, mut b) = UnixStream::pair()?;
        let a = Arc::new(AsyncFd::new(a)?);
        b.write_all(b"done")?;
        a.readable().await?;
        let scope = CancelScope::new();
        let log = Log::default();
        let result = nursery(|n| {
            let (log, a, scope) = (log.clone(), a.clone(), scope.clone());
            async move {
                let (l, s) = (log.clone(), scope.clone());
                n.spawn(async move {
                    let out = s.run(read_text(&a)).await;
                    l.push(format!("reader got {out:?}"));
                    Ok(())
                })?;
                let (l, s) = (log.clone(), scope.clone());
                n.spawn(async move {
                    // Runs during the reader's yield, after its read completed.
                    l.push("cancelling");
                    s.cancel();
                    Ok(())
                })?;
                Ok::<_, Error>(())
            }
        })
        .await;
        result.unwrap();
        assert_eq!(log.take(), ["cancelling", "reader got Some(Ok(\"done\"))"]);
        assert!(!scope.cancelled_caught());
        Ok::<_, io::Error>(())
    })
    .unwrap();
}

// principle 3: readable() is a checkpoint: it fails when the scope is cancelled before it
// blocks and when cancelled while blocked (at the exact virtual time), and it yields even when
// the descriptor is ready.
#[test]
fn readable_is_a_checkpoint() {
    let rt = current_thread().0;
    rt.block_on(async {
        let t0 = now();
        let (a, mut b) = UnixStream::pair()?;
        let a = Arc::new(AsyncFd::new(a)?);

        // Cancelled before: fails without blocking.
        let scope = CancelScope::new();
        let out = scope
            .run(async {
                scope.cancel_with_reason("before");
                let r = a.readable().await;
                assert_eq!(
                    cancel_reason(r.as_ref().unwrap_err()),
                    CancelReason::Explicit(Some("before".into()))
                );
                r
            })
            .await;
        assert!(out.is_none());

        // Cancelled while blocked: wakes at the time of the cancel.
        let out = move_on_after(secs(7), a.readable()).await;
        assert!(out.is_none());
        assert_eq!(now() - t0, secs(7));

        // Ready: completes, but other tasks run before it returns.
        b.write_all(b"x")?;
        let log = Log::default();
        let result = nursery(|n| {
            let (log, a) = (log.clone(), a.clone());
            async move {
                let l = log.clone();
                n.spawn(async move {
                    l.push("other task");
                    Ok(())
                })?;
                a.readable().await?;
                log.push("readable");
                Ok::<_, Error>(())
            }
        })
        .await;
        result.unwrap();
        assert_eq!(log.take(), ["other task", "readable"]);
        assert_eq!(now() - t0, secs(7));
        Ok::<_, io::Error>(())
    })
    .unwrap();
}

// Many round trips between two tasks over a socket pair: every message arrives, in order.
#[test]
fn many_round_trips() {
    const ROUNDS: u32 = 2_000;
    for flavor in [Flavor::CurrentThread, Flavor::MultiThread] {
        let rt = runtime(flavor);
        let total = rt.block_on(async {
            let (a, b) = UnixStream::pair()?;
            let (a, b) = (AsyncFd::new(a)?, AsyncFd::new(b)?);
            let result = nursery(|n| async move {
                n.spawn(async move {
                    // Echo each 4-byte number back, plus one.
                    for _ in 0..ROUNDS {
                        let mut buf = [0u8; 4];
                        let mut got = 0;
                        while got < 4 {
                            got += b.read_with(|s| (&*s).read(&mut buf[got..])).await?;
                        }
                        let reply = (u32::from_le_bytes(buf) + 1).to_le_bytes();
                        b.write_with(|s| (&*s).write_all(&reply)).await?;
                    }
                    Ok::<_, Error>(())
                })?;
                let mut total = 0u64;
                for i in 0..ROUNDS {
                    a.write_with(|s| (&*s).write_all(&i.to_le_bytes())).await?;
                    let mut buf = [0u8; 4];
                    let mut got = 0;
                    while got < 4 {
                        got += a.read_with(|s| (&*s).read(&mut buf[got..])).await?;
                    }
                    let reply = u32::from_le_bytes(buf);
                    assert_eq!(reply, i + 1);
                    total += u64::from(reply);
                }
                Ok::<_, Error>(total)
            })
            .await;
            Ok::<_, io::Error>(result.unwrap())
        });
        let expected: u64 = (1..=u64::from(ROUNDS)).sum();
        assert_eq!(total.unwrap(), expected, "{flavor:?}");
    }
}

// Deregistration and re-registration of the same descriptor (into_inner, then AsyncFd::new):
// the new registration starts with no readiness, so a wait on it times out exactly, and real
// readiness afterwards still wakes it.
#[test]
fn a_reregistered_descriptor_gets_no_stale_readiness() {
    let rt = current_thread().0;
    rt.block_on(async {
        let t0 = now();
        let (a, mut b) = UnixStream::pair()?;
        let first = AsyncFd::new(a)?;
        b.write_all(b"old")?;
        first.readable().await?;
        assert_eq!(read_text(&first).await?, "old");
        b.write_all(b"more")?;
        first.readable().await?; // readiness seen, data left unread on purpose
        let fd = first.get_ref().as_raw_fd();
        let stream = first.into_inner()?;
        // Drain it behind the reactor's back: nothing is readable any more.
        let mut buf = [0u8; 4];
        (&stream).read_exact(&mut buf)?;
        let second = AsyncFd::new(stream)?;
        assert_eq!(second.get_ref().as_raw_fd(), fd);
        let out = move_on_after(secs(10), second.readable()).await;
        assert!(
            out.is_none(),
            "no stale readiness from the first registration"
        );
        assert_eq!(now() - t0, secs(10));
        b.write_all(b"new")?;
        assert_eq!(read_text(&second).await?, "new");
        Ok::<_, io::Error>(())
    })
    .unwrap();
}

// A descriptor closed while readable, whose number is then reused by a new socket, gives the
// new registration no spurious wake-up: readable() on the new socket waits until its own data.
#[test]
fn a_reused_descriptor_number_gets_no_stale_wakeup() {
    let rt = current_thread().0;
    rt.block_on(async {
        // Other tests open descriptors concurrently, so the kernel may hand the freed number to
        // them; try a few times until the new socket gets the old number.
        let mut reused = 0;
        for _ in 0..50 {
            let (a1, mut b1) = UnixStream::pair()?;
            let old = AsyncFd::new(a1)?;
            b1.write_all(b"stale")?;
            old.readable().await?;
            let fd = old.get_ref().as_raw_fd();
            drop(old); // deregistered, then closed, with data unread
            let (a2, mut b2) = UnixStream::pair()?;
            if a2.as_raw_fd() != fd {
                continue;
            }
            reused += 1;
            let new = AsyncFd::new(a2)?;
            let t0 = now();
            let out = move_on_after(secs(5), new.readable()).await;
            assert!(
                out.is_none(),
                "spurious readiness on a reused descriptor number"
            );
            assert_eq!(now() - t0, secs(5));
            b2.write_all(b"fresh")?;
            assert_eq!(read_text(&new).await?, "fresh");
            drop(b1);
            if reused == 3 {
                break;
            }
        }
        assert!(reused > 0, "the descriptor number was never reused");
        Ok::<_, io::Error>(())
    })
    .unwrap();
}

/// Fills the socket's send buffer (and the peer's receive buffer) with non-blocking writes.
fn fill(fd: &AsyncFd<UnixStream>) -> usize {
    let chunk = [7u8; 4096];
    let mut filled = 0;
    loop {
        match fd.get_ref().write(&chunk) {
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return filled,
            Err(e) => panic!("filling the socket: {e}"),
        }
    }
}

// A writer blocked on a full socket buffer (writable(), then write_with) stays blocked until
// the peer drains it, and then completes.
#[test]
fn writable_on_a_full_buffer_blocks_until_the_peer_drains() {
    let rt = current_thread().0;
    rt.block_on(async {
        let (a, mut b) = UnixStream::pair()?;
        let a = Arc::new(AsyncFd::new(a)?);
        let filled = fill(&a);
        assert!(filled > 0);
        let log = Log::default();
        let mut peer = b.try_clone()?;
        let result = nursery(|n| {
            let (log, a) = (log.clone(), a.clone());
            async move {
                let (l, w) = (log.clone(), a.clone());
                n.spawn(async move {
                    w.writable().await?;
                    l.push("writable");
                    let n = w.write_with(|s| (&*s).write(b"after")).await?;
                    l.push(format!("wrote {n}"));
                    Ok(())
                })?;
                wait_all_tasks_blocked().await?;
                // Still blocked: nothing was drained.
                assert!(log.take().is_empty());
                log.push("draining");
                let mut sink = vec![0u8; filled];
                peer.read_exact(&mut sink)?;
                assert!(sink.iter().all(|&x| x == 7));
                Ok::<_, Error>(())
            }
        })
        .await;
        result.unwrap();
        assert_eq!(log.take(), ["draining", "writable", "wrote 5"]);
        let mut tail = [0u8; 5];
        b.read_exact(&mut tail)?;
        assert_eq!(&tail, b"after");

        // The same with write_with blocking directly, cancelled at an exact time: nothing written.
        let filled = fill(&a);
        let t0 = now();
        let out = move_on_after(secs(2), a.write_with(|s| (&*s).write(b"never"))).await;
        assert!(out.is_none());
        assert_eq!(now() - t0, secs(2));
        let mut sink = vec![0u8; filled];
        b.read_exact(&mut sink)?;
        b.set_nonblocking(true)?;
        let mut extra = [0u8; 8];
        let err = b.read(&mut extra).unwrap_err();
        assert_eq!(
            err.kind(),
            io::ErrorKind::WouldBlock,
            "the cancelled write wrote nothing"
        );
        checkpoint().await?;
        Ok::<_, io::Error>(())
    })
    .unwrap();
}

// trio's wait_readable: readiness tells the truth. After the data is read behind the reactor's
// back (a plain read, not `read_with`), `readable()` waits for new data instead of returning at
// once forever (which made a `readable()` + read loop spin).
#[test]
fn readable_waits_again_once_the_data_was_read_by_other_means() {
    let rt = current_thread().0;
    rt.block_on(async {
        let t0 = now();
        let (a, mut b) = UnixStream::pair()?;
        let a = AsyncFd::new(a)?;
        b.write_all(b"ping")?;
        a.readable().await?;
        let mut buf = [0u8; 4];
        a.get_ref().read_exact(&mut buf)?;
        assert_eq!(&buf, b"ping");
        let out = move_on_after(secs(3), a.readable()).await;
        assert!(out.is_none(), "nothing is readable: the wait must block");
        assert_eq!(now() - t0, secs(3));
        b.write_all(b"pong")?;
        a.readable().await?;
        assert_eq!(read_text(&a).await?, "pong");
        Ok::<_, io::Error>(())
    })
    .unwrap();
}

// trio's test_wait_basic: after the send buffer is filled, `writable()` waits until the peer
// drains it, even though the descriptor was writable before.
#[test]
fn writable_waits_once_the_buffer_was_filled_by_other_means() {
    let rt = current_thread().0;
    rt.block_on(async {
        let t0 = now();
        let (a, mut b) = UnixStream::pair()?;
        let a = AsyncFd::new(a)?;
        a.writable().await?;
        let filled = fill(&a);
        let out = move_on_after(secs(2), a.writable()).await;
        assert!(out.is_none(), "the buffer is full: the wait must block");
        assert_eq!(now() - t0, secs(2));
        let mut sink = vec![0u8; filled];
        b.read_exact(&mut sink)?;
        a.writable().await?;
        Ok::<_, io::Error>(())
    })
    .unwrap();
}

// Two tasks waiting in the same direction on one AsyncFd: the second gets BusyResource (as
// trio's wait_readable raises BusyResourceError) instead of silently never being woken; the
// first is woken by the data, and afterwards another wait is accepted. Reading and writing at
// the same time is fine. Both flavours.
#[test]
fn a_second_waiter_in_the_same_direction_gets_busy_resource() {
    for flavor in [Flavor::CurrentThread, Flavor::MultiThread] {
        runtime(flavor)
            .block_on(async {
                let (a, mut b) = UnixStream::pair()?;
                let a = Arc::new(AsyncFd::new(a)?);
                let result = nursery(|n| {
                    let a = a.clone();
                    async move {
                        let first = a.clone();
                        let reader = n.spawn(async move { Ok(read_text(&first).await?) })?;
                        wait_all_tasks_blocked().await?;
                        let err = a.readable().await.unwrap_err();
                        assert_eq!(err.kind(), io::ErrorKind::ResourceBusy);
                        assert_eq!(
                            err.get_ref().unwrap().to_string(),
                            Error::BusyResource.to_string()
                        );
                        let err = read_text(&a).await.unwrap_err();
                        assert_eq!(err.kind(), io::ErrorKind::ResourceBusy);
                        // The other direction is free.
                        a.writable().await?;
                        b.write_all(b"hello")?;
                        assert_eq!(reader.await?, "hello");
                        b.write_all(b"again")?;
                        assert_eq!(read_text(&a).await?, "again");
                        Ok::<_, Error>(())
                    }
                })
                .await;
                result.map_err(|e| io::Error::other(e.to_string()))
            })
            .unwrap_or_else(|e| panic!("{flavor:?}: {e}"));
    }
}
