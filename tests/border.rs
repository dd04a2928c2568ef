//! The border's other tools: a drop-style timeout that leaves a stateful codec usable, and
//! deadlines that stay visible when the work finished anyway.

mod common;

use std::io;

use common::*;
use trellis::testing::{memory_stream_pair, MemoryStream};
use trellis::{move_on_after, sleep, timeout, CancelScope, Flavor, TimedOut};

/// A length-prefixed frame reader in the style of a websocket or TLS codec: any error from its
/// transport is fatal, and it keeps partial input between calls.
struct Framed {
    stream: MemoryStream,
    buf: Vec<u8>,
    dead: bool,
}

impl Framed {
    fn new(stream: MemoryStream) -> Self {
        Framed {
            stream,
            buf: Vec::new(),
            dead: false,
        }
    }

    async fn next_frame(&mut self) -> io::Result<Vec<u8>> {
        if self.dead {
            return Err(io::Error::new(io::ErrorKind::BrokenPipe, "codec is dead"));
        }
        loop {
            if let Some(&len) = self.buf.first() {
                let len = usize::from(len);
                if self.buf.len() > len {
                    let frame = self.buf[1..=len].to_vec();
                    self.buf.drain(..=len);
                    return Ok(frame);
                }
            }
            let mut chunk = [0u8; 16];
            match self.stream.read(&mut chunk).await {
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e) => {
                    self.dead = true;
                    return Err(e);
                }
            }
        }
    }
}

// A deadline around `next_frame` done by cancellation kills the codec (its transport read failed
// with `Cancelled`); the same deadline done by dropping (`timeout`) leaves it working, with the
// half frame it had already read kept.
#[test]
fn a_drop_style_timeout_leaves_a_stateful_codec_usable() {
    for flavor in [Flavor::CurrentThread, Flavor::MultiThread] {
        let rt = autojump_runtime(flavor);
        rt.block_on(async move {
            let t0 = trellis::now();
            // Cancellation: the codec dies.
            let (a, mut peer) = memory_stream_pair();
            let mut codec = Framed::new(a);
            let out = move_on_after(secs(1), codec.next_frame()).await;
            assert!(out.is_none(), "{flavor:?}");
            peer.write_all(&[2, b'h', b'i']).await.unwrap();
            assert!(codec.next_frame().await.is_err(), "{flavor:?}: dead");

            // Dropping: the codec survives, partial input included.
            let (a, mut peer) = memory_stream_pair();
            let mut codec = Framed::new(a);
            peer.write_all(&[3, b'a']).await.unwrap();
            let out = timeout(secs(1), codec.next_frame()).await;
            assert!(matches!(out, Err(TimedOut)), "{flavor:?}");
            assert_eq!(since(t0), secs(2), "{flavor:?}");
            peer.write_all(b"bc").await.unwrap();
            assert_eq!(codec.next_frame().await.unwrap(), b"abc", "{flavor:?}");
        });
    }
}

// `timeout` of work that finishes in time gives its output; the enclosing scope's cancellation
// still reaches the work cooperatively (it is not a drop).
#[test]
fn timeout_passes_results_through_and_enclosing_cancellation_in() {
    block_on_current(async {
        let t0 = trellis::now();
        let out = timeout(secs(5), async {
            sleep(secs(1)).await?;
            Ok::<_, trellis::Cancelled>(9)
        })
        .await;
        assert_eq!(out, Ok(Ok(9)));
        assert_eq!(since(t0), secs(1));
        let log = Log::new();
        let l = log.clone();
        let out = move_on_after(
            secs(1),
            timeout(secs(5), async move {
                let r = sleep(secs(10)).await;
                l.push(format!("inner saw cancellation: {}", r.is_err()));
                r
            }),
        )
        .await;
        assert_eq!(out, None);
        assert_eq!(log.take(), ["inner saw cancellation: true"]);
        assert_eq!(since(t0), secs(2));
    });
}

// C2, C6: the caller learns that a deadline passed even when the work finished anyway (a
// shielded cleanup outlived it): the output is `Some`, and the scope says it was cancelled.
#[test]
fn a_passed_deadline_stays_visible_when_the_work_finishes_anyway() {
    block_on_current(async {
        let t0 = trellis::now();
        let work = move_on_after(secs(1), async {
            CancelScope::new().shielded(true).run(sleep(secs(3))).await;
            Ok::<_, trellis::Cancelled>("finished")
        });
        let scope = work.cancel_scope();
        assert_eq!(work.await, Some(Ok("finished")));
        assert_eq!(since(t0), secs(3));
        assert!(scope.cancel_called());
        assert!(!scope.cancelled_caught());

        let work = trellis::fail_after(secs(1), async { Ok::<_, trellis::Cancelled>(1) });
        let scope = work.cancel_scope();
        assert_eq!(work.await, Ok(Ok(1)));
        assert!(!scope.cancel_called());
    });
}
