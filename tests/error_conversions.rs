//! `trellis::error_conversions!` makes a user's error enum a full trellis error: `?` converts
//! trellis's errors, cancellations and I/O errors into it, and scopes and nurseries recognise a
//! cancellation inside it (C3, N3) while every other variant passes through as a failure.

// The macro allows the unreachable `_` arm it writes for an enum whose only variant is the trellis
// one; rustc reports that lint inside macros from other crates only sometimes, so deny it here.
#![deny(unreachable_patterns)]

mod common;

use std::future::Future;
use std::io;

use common::*;
use trellis::testing::memory_stream_pair;
use trellis::{
    move_on_after, nursery, sleep, sleep_forever, AsCancelled, CancelReason, CancelScope, Error,
    NurseryError, Outcome,
};

#[derive(Debug)]
enum AppError {
    Trellis(Error),
    Parse(String),
}

trellis::error_conversions!(AppError::Trellis);

/// An enum with nothing but the trellis variant.
#[derive(Debug)]
enum OnlyTrellis {
    Runtime(Error),
}

trellis::error_conversions!(OnlyTrellis::Runtime);

/// A plain wait converted with `?` (`From<Cancelled>`), then a parse that may fail.
async fn wait_then_parse(text: &str) -> Result<u32, AppError> {
    sleep(secs(1)).await?;
    text.parse().map_err(|_| AppError::Parse(text.to_string()))
}

/// Runs `f` in a scope cancelled before it starts: the scope's output, and whether it caught a
/// cancellation (C2's `cancelled_caught`).
async fn in_cancelled_scope<F>(f: F) -> (Option<F::Output>, bool)
where
    F: Future,
    F::Output: Outcome,
{
    let scope = CancelScope::new();
    scope.cancel();
    let out = scope.run(f).await;
    (out, scope.cancelled_caught())
}

// contract C3, C6: a deadline's cancellation travels out of user code as an AppError and the
// deadline's own scope absorbs it (`None`), at the deadline exactly.
#[test]
fn a_deadline_absorbs_its_cancellation_carried_in_the_user_enum() {
    let (rt, _clock) = current_thread();
    rt.block_on(async {
        let t0 = trellis::now();
        let out = move_on_after(secs(1), async {
            sleep_forever().await?;
            Ok::<(), AppError>(())
        })
        .await;
        assert!(out.is_none(), "{out:?}");
        assert_eq!(since(t0), secs(1));

        // The work finishes first: its value comes back.
        let out = move_on_after(secs(2), wait_then_parse("12")).await;
        assert!(matches!(out, Some(Ok(12))), "{out:?}");
    });
}

// contract C1, C2, C3: an explicitly cancelled scope around user code absorbs the cancellation
// (the checkpoint's `Cancelled` converted into AppError by `?`) and says it caught it.
#[test]
fn a_cancelled_scope_absorbs_the_user_enum_cancellation() {
    let (rt, _clock) = current_thread();
    rt.block_on(async {
        let (out, caught) = in_cancelled_scope(wait_then_parse("12")).await;
        assert!(out.is_none(), "{out:?}");
        assert!(caught);

        // Through the only-variant enum too.
        let (out, caught) = in_cancelled_scope(async {
            trellis::checkpoint().await?;
            Ok::<(), OnlyTrellis>(())
        })
        .await;
        assert!(out.is_none(), "{out:?}");
        assert!(caught);
    });
}

// contract C6: any other error passes through a cancelled scope untouched; the scope did not
// catch a cancellation.
#[test]
fn another_variant_is_not_mistaken_for_a_cancellation() {
    let (rt, _clock) = current_thread();
    rt.block_on(async {
        let (out, caught) =
            in_cancelled_scope(async { Err::<(), _>(AppError::Parse("x".into())) }).await;
        assert!(
            matches!(out, Some(Err(AppError::Parse(ref t))) if t == "x"),
            "{out:?}"
        );
        assert!(!caught);

        assert!(AppError::Parse("x".into()).cancelled().is_none());
        // A trellis error that is not a cancellation is not one either.
        assert!(AppError::from(Error::NurseryClosed).cancelled().is_none());
        assert!(OnlyTrellis::from(Error::TaskFailed).cancelled().is_none());
    });
}

// contract N2, N3: a task fails with a non-trellis variant; the nursery cancels its siblings and
// reports exactly that one failure, not the siblings' cancellations (carried in AppError).
#[test]
fn a_nursery_reports_the_failure_and_not_the_cancelled_siblings() {
    let (rt, _clock) = current_thread();
    rt.block_on(async {
        let t0 = trellis::now();
        let result = nursery(|n| async move {
            n.spawn(async {
                sleep_forever().await?;
                Ok(())
            })?;
            n.spawn(async { wait_then_parse("twelve").await.map(drop) })?;
            sleep_forever().await?;
            Ok::<_, AppError>(())
        })
        .await;
        let Err(NurseryError::Failed(errors)) = result else {
            panic!("{result:?}")
        };
        assert!(
            matches!(&errors[..], [AppError::Parse(t)] if t == "twelve"),
            "{errors:?}"
        );
        assert_eq!(since(t0), secs(1));
    });
}

// contract N7, C3: a deadline around a nursery of AppError tasks reaches them all, and the
// nursery's cancellation (its NurseryError) is absorbed by the deadline's scope.
#[test]
fn a_deadline_around_a_nursery_of_the_user_enum_absorbs_its_cancellation() {
    let (rt, _clock) = current_thread();
    rt.block_on(async {
        let t0 = trellis::now();
        let out = move_on_after(
            secs(3),
            nursery(|n| async move {
                for _ in 0..3 {
                    n.spawn(async {
                        sleep_forever().await?;
                        Ok::<_, AppError>(())
                    })?;
                }
                sleep_forever().await?;
                Ok::<_, AppError>(())
            }),
        )
        .await;
        assert!(out.is_none(), "{out:?}");
        assert_eq!(since(t0), secs(3));

        // A nursery that cancels itself: its cancelled body carries the cancellation out.
        let result = nursery(|n| async move {
            n.cancel();
            sleep_forever().await?;
            Ok::<_, OnlyTrellis>(())
        })
        .await;
        let Err(NurseryError::Cancelled(c)) = result else {
            panic!("{result:?}")
        };
        assert_eq!(c.reason(), &CancelReason::Explicit(None));
    });
}

// I/O errors convert with `?` into the trellis variant: an ordinary one as `Error::Io` with its
// kind, a cancellation carried in an `io::Error` as `Error::Cancelled` (so scopes still see it).
#[test]
fn io_errors_convert_into_the_trellis_variant() {
    fn open(kind: io::ErrorKind) -> Result<(), AppError> {
        Err(io::Error::from(kind))?;
        Ok(())
    }
    let err = open(io::ErrorKind::NotFound).unwrap_err();
    assert!(
        matches!(&err, AppError::Trellis(Error::Io(e)) if e.kind() == io::ErrorKind::NotFound),
        "{err:?}"
    );
    assert!(err.cancelled().is_none());

    let (rt, _clock) = current_thread();
    rt.block_on(async {
        // A read on a memory stream under a deadline fails with an io::Error carrying the
        // cancellation; `?` turns it into AppError::Trellis(Error::Cancelled), which the
        // deadline's scope absorbs.
        let (_a, mut b) = memory_stream_pair();
        let out = move_on_after(secs(1), async {
            let mut buf = [0u8; 8];
            let read: Result<usize, AppError> = b.read(&mut buf).await.map_err(Into::into);
            let err = read.unwrap_err();
            assert!(
                matches!(&err, AppError::Trellis(Error::Cancelled(c)) if c.reason() == &CancelReason::Deadline),
                "{err:?}"
            );
            Err::<(), _>(err)
        })
        .await;
        assert!(out.is_none(), "{out:?}");

        // `?` on a runtime call (From<trellis::Error>): spawning into a closed nursery.
        let mut kept = None;
        nursery(|n| {
            kept = Some(n.clone());
            async { Ok::<_, AppError>(()) }
        })
        .await
        .unwrap();
        let spawn = || -> Result<(), AppError> {
            kept.as_ref().unwrap().spawn(async { Ok(()) })?;
            Ok(())
        };
        let err = spawn().unwrap_err();
        assert!(matches!(err, AppError::Trellis(Error::NurseryClosed)), "{err:?}");
    });
}
