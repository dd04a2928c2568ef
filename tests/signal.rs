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

/// Calls of [`count_call`] per signal number.
static CALLS: [std::sync::atomic::AtomicUsize; 65] =
    [const { std::sync::atomic::AtomicUsize::new(0) }; 65];

extern "C" fn count_call(signal: libc::c_int) {
    CALLS[signal as usize].fetch_add(1, std::sync::atomic::Ordering::SeqCst);
}

fn calls(signal: i32) -> usize {
    CALLS[signal as usize].load(std::sync::atomic::Ordering::SeqCst)
}

/// Sets the handling of `signal` to `handler` (a function address, or `SIG_DFL`).
fn set_handler(signal: i32, handler: libc::sighandler_t) {
    // SAFETY: a zeroed sigaction with an empty mask and a handler that is either the default or
    // `count_call`, which only does an atomic increment (async-signal-safe).
    unsafe {
        let mut action: libc::sigaction = std::mem::zeroed();
        action.sa_sigaction = handler;
        libc::sigemptyset(&mut action.sa_mask);
        assert_eq!(libc::sigaction(signal, &action, std::ptr::null_mut()), 0);
    }
}

/// Issue 16, item 3: as in trio, signals a receiver was delivered but did not return are raised
/// again, once each, when it is dropped, so the handling that was in place before sees them.
/// Signals it returned are not; a signal another receiver still receives is not either (that
/// receiver was delivered the same arrival).
#[test]
fn unread_signals_go_to_the_previous_handler_when_the_receiver_is_dropped() {
    const XCPU: i32 = libc::SIGXCPU;
    const PWR: i32 = libc::SIGPWR;
    let counter = count_call as extern "C" fn(libc::c_int) as libc::sighandler_t;
    set_handler(XCPU, counter);
    set_handler(PWR, counter);
    current_thread_on(None)
        .block_on(async {
            // Pending, never read: arrivals coalesce, so it is re-raised once.
            let rx = signal::receiver(&[Signal::from_raw(PWR)])?;
            signal::raise(Signal::from_raw(PWR))?;
            signal::raise(Signal::from_raw(PWR))?;
            assert_eq!(calls(PWR), 0, "the receiver took both arrivals");
            drop(rx);
            assert_eq!(calls(PWR), 1);
            assert_eq!(handler_of(PWR), counter);

            // One returned, one queued behind it: only the queued one is re-raised.
            let mut rx = signal::receiver(&[Signal::from_raw(XCPU), Signal::from_raw(PWR)])?;
            signal::raise(Signal::from_raw(PWR))?;
            signal::raise(Signal::from_raw(XCPU))?;
            assert_eq!(rx.recv().await?, Signal::from_raw(XCPU));
            drop(rx);
            assert_eq!((calls(XCPU), calls(PWR)), (0, 2));

            // Another receiver of the signal remains: it has the arrival, nothing is re-raised.
            let mut outer = signal::receiver(&[Signal::from_raw(PWR)])?;
            let inner = signal::receiver(&[Signal::from_raw(PWR)])?;
            signal::raise(Signal::from_raw(PWR))?;
            drop(inner);
            assert_eq!(calls(PWR), 2);
            assert_eq!(outer.recv().await?, Signal::from_raw(PWR));
            drop(outer);
            assert_eq!((calls(XCPU), calls(PWR)), (0, 2));
            Ok::<_, io::Error>(())
        })
        .unwrap();
    set_handler(XCPU, libc::SIG_DFL);
    set_handler(PWR, libc::SIG_DFL);
}
