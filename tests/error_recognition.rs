//! A nursery's cancellation travels with `?` through every error type DESIGN names, and the
//! scope that caused it still recognises it (C3, N3): `trellis::Error`, `std::io::Error`,
//! `Box<dyn Error + Send + Sync>` and `anyhow::Error`, each carrying a `NurseryError`.

mod common;

use std::io;

use common::*;
use trellis::{move_on_after, nursery, sleep_forever, Error, NurseryError};

type Boxed = Box<dyn std::error::Error + Send + Sync>;

/// The two scenarios for one error type `$err`, into which an inner `NurseryError<Error>` is
/// converted with `$conv`.
macro_rules! nursery_cancellation_through {
    ($err:ty, $conv:expr) => {{
        let conv: fn(NurseryError<Error>) -> $err = $conv;

        // An outer deadline cancels a child that is inside an inner nursery: the inner
        // nursery's cancellation, carried out in `$err`, is absorbed by the deadline's scope,
        // not reported as a failure of the outer nursery.
        let (rt, _clock) = current_thread();
        rt.block_on(async move {
            let t0 = trellis::now();
            let out = move_on_after(
                secs(1),
                nursery(move |n| async move {
                    n.spawn(async move {
                        nursery(|inner| async move {
                            inner.spawn(async {
                                sleep_forever().await?;
                                Ok(())
                            })?;
                            sleep_forever().await?;
                            Ok::<_, Error>(())
                        })
                        .await
                        .map_err(conv)?;
                        Ok::<_, $err>(())
                    })?;
                    sleep_forever()
                        .await
                        .map_err(|c| conv(NurseryError::Cancelled(c)))?;
                    Ok::<_, $err>(())
                }),
            )
            .await;
            assert!(out.is_none(), "the deadline's scope absorbs it: {out:?}");
            assert_eq!(since(t0), secs(1));
        });

        // A child whose inner nursery cancels itself ends quietly: the outer nursery has no
        // failure to report.
        let (rt, _clock) = current_thread();
        rt.block_on(async move {
            let out = nursery(move |n| async move {
                n.spawn(async move {
                    nursery(|inner| async move {
                        inner.cancel();
                        sleep_forever().await?;
                        Ok::<_, Error>(())
                    })
                    .await
                    .map_err(conv)?;
                    Ok::<_, $err>(())
                })?;
                Ok::<_, $err>(7)
            })
            .await;
            assert!(matches!(out, Ok(7)), "{out:?}");
        });
    }};
}

// contract C3, N3: through trellis::Error.
#[test]
fn a_nursery_cancellation_travels_in_trellis_error() {
    nursery_cancellation_through!(Error, Error::from);
}

// contract C3, N3: through std::io::Error (wrapping the NurseryError as its inner error).
#[test]
fn a_nursery_cancellation_travels_in_io_error() {
    nursery_cancellation_through!(io::Error, io::Error::other);
}

// contract C3, N3: through Box<dyn Error + Send + Sync>.
#[test]
fn a_nursery_cancellation_travels_in_boxed_error() {
    nursery_cancellation_through!(Boxed, Boxed::from);
}

// contract C3, N3: through anyhow::Error.
#[cfg(feature = "anyhow")]
#[test]
fn a_nursery_cancellation_travels_in_anyhow_error() {
    nursery_cancellation_through!(anyhow::Error, anyhow::Error::from);
}

// The source of a cancelled nursery's error is the cancellation; a failed one has none.
#[test]
fn a_cancelled_nursery_error_has_its_cancellation_as_source() {
    use std::error::Error as _;
    let (rt, _clock) = current_thread();
    rt.block_on(async {
        let err = nursery(|inner| async move {
            inner.cancel();
            sleep_forever().await?;
            Ok::<_, Error>(())
        })
        .await
        .unwrap_err();
        let source = err.source().expect("a cancellation is the source");
        assert!(source.downcast_ref::<trellis::Cancelled>().is_some());
        let failed: NurseryError<Error> = NurseryError::Failed(vec![Error::TaskFailed]);
        assert!(failed.source().is_none());
    });
}
