//! A conformance check for two-way byte streams (trio's `check_two_way_stream`): the same
//! behaviour asserted over TCP, Unix sockets, pipes or memory streams.

use std::future::Future;
use std::io;

use crate::error::{AsCancelled, Outcome};
use crate::io::{PartialWrite, ReadStream, SplitStream, WriteStream};
use crate::testing::wait_all_tasks_blocked;
use crate::CancelScope;

/// Checks that streams made by `make_pair` (two connected ends) behave as the stream traits of
/// [`trellis::io`](crate::io) promise; panics with a message naming the failed property.
///
/// Each property gets a fresh pair:
/// 1. bytes written on one end are read, in order and intact, on the other, both ways;
/// 2. both directions carry 1 MiB at once, with the ends split into halves in four tasks;
/// 3. after `shutdown_write`, the peer reads the data then end of stream (sticky), and can
///    still write back;
/// 4. a read in a cancelled scope fails and consumes nothing, including a read cancelled while
///    blocked;
/// 5. a `write_all` cancelled while the stream is clogged reports exactly how much went out
///    ([`PartialWrite`]), and that is exactly what the peer reads;
/// 6. dropping an end gives the peer end of stream, and writing to a dropped peer fails
///    (`BrokenPipe` or `ConnectionReset`) instead of hanging;
/// 7. empty reads and writes return 0.
///
/// Property 5 assumes the stream's buffers are smaller than 16 MiB and uses
/// [`wait_all_tasks_blocked`], so run the check where nothing else is going on.
///
/// ```
/// use trellis::testing::{check_two_way_stream, memory_stream_pair};
///
/// trellis::run(async {
///     check_two_way_stream(|| async { Ok(memory_stream_pair()) }).await
/// })
/// .unwrap();
/// ```
///
/// # Errors
/// An error from `make_pair`, or an unexpected I/O error.
pub async fn check_two_way_stream<S, F, Fut>(mut make_pair: F) -> io::Result<()>
where
    S: SplitStream + 'static,
    F: FnMut() -> Fut,
    Fut: Future<Output = io::Result<(S, S)>>,
{
    let (a, b) = make_pair().await?;
    round_trip(a, b).await?;
    let (a, b) = make_pair().await?;
    full_duplex(a, b).await?;
    let (a, b) = make_pair().await?;
    half_close(a, b).await?;
    let (a, b) = make_pair().await?;
    cancelled_read(a, b).await?;
    let (a, b) = make_pair().await?;
    cancelled_write_all(a, b).await?;
    let (a, b) = make_pair().await?;
    dropped_peer(a, b).await?;
    let (a, b) = make_pair().await?;
    empty_operations(a, b).await
}

async fn read_exact<R: ReadStream>(r: &mut R, len: usize, what: &str) -> io::Result<Vec<u8>> {
    let mut out = vec![0u8; len];
    let mut got = 0;
    while got < len {
        let n = r.read(&mut out[got..]).await?;
        assert!(n != 0, "{what}: end of stream after {got} of {len} bytes");
        got += n;
    }
    Ok(out)
}

async fn read_to_end<R: ReadStream>(r: &mut R) -> io::Result<Vec<u8>> {
    let mut out = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = r.read(&mut buf).await?;
        if n == 0 {
            return Ok(out);
        }
        out.extend_from_slice(&buf[..n]);
    }
}

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

fn first<T>(r: Result<T, crate::NurseryError<io::Error>>) -> io::Result<T> {
    r.map_err(|e| match e {
        crate::NurseryError::Cancelled(c) => c.into(),
        crate::NurseryError::Failed(mut errors) => errors.remove(0),
    })
}

/// Runs `op` in a cancel scope that is cancelled once every task is blocked, that is while `op`
/// waits: how properties 4 and 5 cancel an operation in the middle of its wait rather than
/// before it starts. Returns the scope's output: `None` when the cancellation stopped `op`.
async fn cancel_once_blocked<F>(op: F) -> io::Result<Option<F::Output>>
where
    F: Future,
    F::Output: Outcome,
{
    let scope = CancelScope::new();
    let cancel = scope.clone();
    first(
        crate::nursery(|n| async move {
            n.spawn(async move {
                wait_all_tasks_blocked().await?;
                cancel.cancel();
                Ok(())
            })?;
            Ok(scope.run(op).await)
        })
        .await,
    )
}

async fn round_trip<S: SplitStream + 'static>(a: S, b: S) -> io::Result<()> {
    let (mut ar, mut aw) = a.into_split();
    let (mut br, mut bw) = b.into_split();
    aw.write_all(b"x").await?;
    assert_eq!(read_exact(&mut br, 1, "round trip a->b").await?, b"x");
    // The writer runs in its own task: the stream may buffer less than the message.
    let message = pattern(10_000, 1);
    first(
        crate::nursery(|n| async move {
            let sent = message.clone();
            n.spawn(async move { bw.write_all(&sent).await })?;
            let got = read_exact(&mut ar, message.len(), "round trip b->a").await?;
            assert!(got == message, "round trip b->a: bytes changed");
            Ok(())
        })
        .await,
    )
}

async fn full_duplex<S: SplitStream + 'static>(a: S, b: S) -> io::Result<()> {
    const LEN: usize = 1024 * 1024;
    let (mut ar, mut aw) = a.into_split();
    let (mut br, mut bw) = b.into_split();
    first(
        crate::nursery(|n| async move {
            n.spawn(async move { aw.write_all(&pattern(LEN, 2)).await })?;
            n.spawn(async move { bw.write_all(&pattern(LEN, 3)).await })?;
            n.spawn(async move {
                let got = read_exact(&mut br, LEN, "full duplex a->b").await?;
                assert!(got == pattern(LEN, 2), "full duplex a->b: bytes changed");
                Ok(())
            })?;
            n.spawn(async move {
                let got = read_exact(&mut ar, LEN, "full duplex b->a").await?;
                assert!(got == pattern(LEN, 3), "full duplex b->a: bytes changed");
                Ok(())
            })?;
            Ok(())
        })
        .await,
    )
}

async fn half_close<S: SplitStream + 'static>(a: S, b: S) -> io::Result<()> {
    let (mut ar, mut aw) = a.into_split();
    let (mut br, mut bw) = b.into_split();
    first(
        crate::nursery(|n| async move {
            n.spawn(async move {
                aw.write_all(b"last words").await?;
                aw.shutdown_write().await?;
                // Keep the half alive: end of stream must come from the shutdown, not a drop.
                crate::sleep_forever().await?;
                Ok(())
            })?;
            assert_eq!(
                read_to_end(&mut br).await?,
                b"last words",
                "half close: data before EOF"
            );
            assert_eq!(
                br.read(&mut [0u8; 8]).await?,
                0,
                "half close: end of stream is sticky"
            );
            n.spawn(async move { bw.write_all(b"reply").await })?;
            assert_eq!(
                read_exact(&mut ar, 5, "half close: the other direction").await?,
                b"reply"
            );
            n.cancel();
            Ok(())
        })
        .await,
    )
}

async fn cancelled_read<S: SplitStream + 'static>(a: S, mut b: S) -> io::Result<()> {
    let (mut ar, _aw) = a.into_split();
    b.write_all(b"kept").await?;
    let scope = CancelScope::new();
    scope.cancel();
    let out = scope.run(async { ar.read(&mut [0u8; 4]).await }).await;
    assert!(
        out.is_none(),
        "cancelled read: a read in a cancelled scope must fail"
    );
    assert_eq!(
        read_exact(&mut ar, 4, "cancelled read").await?,
        b"kept",
        "cancelled read: the bytes must still be there"
    );
    // Cancelled while blocked.
    let out = cancel_once_blocked(async { ar.read(&mut [0u8; 4]).await }).await?;
    assert!(
        out.is_none(),
        "cancelled read: a blocked read must be cancellable"
    );
    b.write_all(b"after").await?;
    assert_eq!(
        read_exact(&mut ar, 5, "after a cancelled read").await?,
        b"after"
    );
    Ok(())
}

async fn cancelled_write_all<S: SplitStream + 'static>(a: S, b: S) -> io::Result<()> {
    const LEN: usize = 16 * 1024 * 1024;
    let data = pattern(LEN, 4);
    let (_ar, mut aw) = a.into_split();
    let (mut br, _bw) = b.into_split();
    let mut written = None;
    let out = cancel_once_blocked(async {
        let result = aw.write_all(&data).await;
        if let Err(e) = &result {
            assert!(e.cancelled().is_some(), "cancelled write_all: {e}");
            written = Some(PartialWrite::of(e).map_or(0, PartialWrite::written));
        }
        result
    })
    .await?;
    assert!(
        out.is_none(),
        "cancelled write_all: the stream never clogged"
    );
    drop(aw);
    let written = written.expect("cancelled");
    assert!(written < LEN, "cancelled write_all: everything was written");
    let got = read_to_end(&mut br).await?;
    assert_eq!(
        got.len(),
        written,
        "cancelled write_all: the count must be what the peer receives"
    );
    assert!(
        got == pattern(LEN, 4)[..written],
        "cancelled write_all: bytes changed"
    );
    Ok(())
}

async fn dropped_peer<S: SplitStream>(a: S, mut b: S) -> io::Result<()> {
    drop(a);
    assert_eq!(
        b.read(&mut [0u8; 4]).await?,
        0,
        "dropped peer: end of stream"
    );
    let chunk = [0u8; 4096];
    for _ in 0..10_000 {
        match b.write(&chunk).await {
            Ok(_) => crate::checkpoint().await?,
            Err(e) => {
                assert!(
                    matches!(
                        e.kind(),
                        io::ErrorKind::BrokenPipe | io::ErrorKind::ConnectionReset
                    ),
                    "dropped peer: unexpected error {e}"
                );
                return Ok(());
            }
        }
    }
    panic!("dropped peer: 10 000 writes to a dropped peer succeeded");
}

async fn empty_operations<S: SplitStream>(mut a: S, mut b: S) -> io::Result<()> {
    assert_eq!(a.write(&[]).await?, 0, "an empty write returns 0");
    a.write_all(b"z").await?;
    assert_eq!(b.read(&mut []).await?, 0, "an empty read returns 0");
    assert_eq!(read_exact(&mut b, 1, "after empty operations").await?, b"z");
    Ok(())
}
