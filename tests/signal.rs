//! Signals delivered to a receiver: coalescing, no signal lost to a cancellation, the previous
//! handling restored on drop, and clear errors for signals that cannot be received.
//!
//! Each test uses its own signals: the tests of this file run in parallel in one process.

mod common;

use std::io;
use std::time::Duration;

use common::current_thread_on;
use futures_lite::StreamExt;
use trellis::signal::{self, Signal};
use trellis::CancelScope;

/// The handler now installed for `signal` (`SIG_DFL`, `SIG_IGN` or a function address).
fn handler_of(signal: i32) -> libc::sighandler_t {
    // SAFETY: querying (not changing) the action; a zeroed sigaction is valid to write into.
    unsafe {
        let mut current: libc::sigaction = std::mem::zeroed();
        assert_eq!(libc::sigaction(signal, std::ptr::null(), &mut current), 0);
        current.sa_sigaction
    }
}

#[test]
fn a_raised_signal_is_delivered() {
    current_thread_on(None)
        .block_on(async {
            let mut rx = signal::receiver(&[Signal::USR1])?;
            signal::raise(Signal::USR1)?;
            assert_eq!(rx.recv().await?, Signal::USR1);
            // Delivered again on the next arrival.
            signal::raise(Signal::USR1)?;
            assert_eq!(rx.next().await.expect("never ends")?, Signal::USR1);
            Ok::<_, io::Error>(())
        })
        .unwrap();
}

#[test]
fn repeats_before_a_read_are_coalesced() {
    current_thread_on(None)
        .block_on(async {
            let mut rx = signal::receiver(&[Signal::USR2])?;
            for _ in 0..3 {
                signal::raise(Signal::USR2)?;
            }
            assert_eq!(rx.recv().await?, Signal::USR2);
            let again = trellis::move_on_after(Duration::from_millis(5), rx.recv()).await;
            assert!(
                again.is_none(),
                "three arrivals before a read are one delivery"
            );
            Ok::<_, io::Error>(())
        })
        .unwrap();
}

#[test]
fn signals_arriving_together_come_in_number_order_and_a_cancelled_recv_loses_none() {
    current_thread_on(None)
        .block_on(async {
            let mut rx = signal::receiver(&[Signal::from_raw(libc::SIGURG), Signal::CONT])?;
            signal::raise(Signal::from_raw(libc::SIGURG))?;
            signal::raise(Signal::CONT)?;
            let scope = CancelScope::new();
            scope.cancel();
            assert!(scope.run(rx.recv()).await.is_none());
            assert_eq!(rx.recv().await?, Signal::CONT);
            assert_eq!(rx.recv().await?, Signal::from_raw(libc::SIGURG));
            Ok::<_, io::Error>(())
        })
        .unwrap();
}

#[test]
fn dropping_the_receiver_restores_the_previous_handling() {
    current_thread_on(None)
        .block_on(async {
            // Default handling before, default after.
            assert_eq!(handler_of(libc::SIGWINCH), libc::SIG_DFL);
            let rx = signal::receiver(&[Signal::WINCH])?;
            assert_ne!(handler_of(libc::SIGWINCH), libc::SIG_DFL);
            // A second receiver of the same signal; the first one dropped keeps ours in place.
            let rx2 = signal::receiver(&[Signal::WINCH])?;
            drop(rx);
            assert_ne!(handler_of(libc::SIGWINCH), libc::SIG_DFL);
            drop(rx2);
            assert_eq!(handler_of(libc::SIGWINCH), libc::SIG_DFL);

            // "Ignored" before, ignored after.
            // SAFETY: setting SIGHUP to be ignored; restored to the default below.
            unsafe { libc::signal(libc::SIGHUP, libc::SIG_IGN) };
            let rx = signal::receiver(&[Signal::HUP])?;
            drop(rx);
            assert_eq!(handler_of(libc::SIGHUP), libc::SIG_IGN);
            // SAFETY: back to the default.
            unsafe { libc::signal(libc::SIGHUP, libc::SIG_DFL) };
            Ok::<_, io::Error>(())
        })
        .unwrap();
}

#[test]
fn signals_that_cannot_be_received_are_clear_errors() {
    current_thread_on(None).block_on(async {
        let cases = [
            (vec![Signal::KILL], "SIGKILL cannot be caught or ignored"),
            (vec![Signal::STOP], "SIGSTOP cannot be caught or ignored"),
            (
                vec![Signal::from_raw(libc::SIGSEGV)],
                "SIGSEGV reports a fault in the running code and cannot be received asynchronously",
            ),
            (
                vec![Signal::from_raw(0)],
                "signal 0 does not exist (valid numbers are 1 to 64)",
            ),
            (
                vec![Signal::from_raw(99)],
                "signal 99 does not exist (valid numbers are 1 to 64)",
            ),
            (vec![], "signal::receiver needs at least one signal"),
        ];
        for (signals, message) in cases {
            let err = signal::receiver(&signals).unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
            assert_eq!(err.to_string(), message);
        }
    });
}
