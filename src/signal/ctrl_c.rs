//! Ctrl-C: SIGINT cancels the main future of each runtime that runs with `CtrlC::Exit` or
//! `CtrlC::Cancel` (trio turns it into `KeyboardInterrupt` in the main task; asyncio's runner
//! cancels the main task).
//!
//! One watcher serves the whole process, however many runtimes run: while at least one such
//! runtime runs, it holds one subscription to SIGINT (so the handler is ours only then, and the
//! previous handling comes back after) and a thread that blocks on the subscription's pipe. On
//! a SIGINT the thread cancels the main node of every registered runtime with reason
//! `Interrupted`; a second SIGINT while one of them is still cleaning up ends the process at
//! once, with SIGINT's default action (as a second Ctrl-C does in Python). When the last runtime
//! leaves, the subscription is closed: the pipe's write end goes, and the thread, seeing the end,
//! exits.

use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use super::{Signal, Subscription};
use crate::cancel::node::{self, NodeRef};
use crate::error::CancelReason;
use crate::state_lock::lock_blocking;

struct Watched {
    id: u64,
    main: NodeRef,
    interrupted: Arc<AtomicBool>,
}

struct Watch {
    next_id: u64,
    runtimes: Vec<Watched>,
    /// The subscription to SIGINT and the thread that reads its pipe, while any runtime runs.
    watcher: Option<(Subscription, std::thread::JoinHandle<()>)>,
}

static WATCH: Mutex<Watch> = Mutex::new(Watch {
    next_id: 0,
    runtimes: Vec::new(),
    watcher: None,
});

fn watch() -> MutexGuard<'static, Watch> {
    lock_blocking(&WATCH)
}

/// A runtime's place on the watch list, for as long as its `block_on` runs.
pub(crate) struct Registration {
    id: u64,
    interrupted: Arc<AtomicBool>,
}

impl Registration {
    /// Did a Ctrl-C cancel this runtime's main future?
    pub(crate) fn interrupted(&self) -> bool {
        self.interrupted.load(Ordering::SeqCst)
    }
}

/// Puts a runtime whose main future sits at `main` on the watch list. If SIGINT cannot be
/// watched (no signal slot or pipe left), the runtime runs without Ctrl-C handling rather than
/// not at all: the error is returned for the caller to decide.
pub(crate) fn register(main: NodeRef) -> std::io::Result<Registration> {
    let mut w = watch();
    if w.watcher.is_none() {
        let (subscription, read) = Subscription::open(&[Signal::INT])?;
        let thread = std::thread::Builder::new()
            .name("trellis-ctrl-c".into())
            .spawn(move || watcher(read))?;
        w.watcher = Some((subscription, thread));
    }
    let id = w.next_id;
    w.next_id += 1;
    let interrupted = Arc::new(AtomicBool::new(false));
    w.runtimes.push(Watched {
        id,
        main,
        interrupted: interrupted.clone(),
    });
    Ok(Registration { id, interrupted })
}

impl Drop for Registration {
    fn drop(&mut self) {
        let watcher = {
            let mut w = watch();
            w.runtimes.retain(|r| r.id != self.id);
            if w.runtimes.is_empty() {
                w.watcher.take()
            } else {
                None
            }
        };
        // Outside the lock (the thread may be waiting for it): closing the subscription waits
        // for a handler in flight and closes the pipe's write end, which ends the thread; it is
        // joined so that its end of the pipe is closed too when the runtime is gone.
        if let Some((subscription, thread)) = watcher {
            drop(subscription);
            let _ = thread.join();
        }
    }
}

/// The watcher thread: waits on the pipe until its write end is closed.
fn watcher(read: OwnedFd) {
    let mut pollfd = libc::pollfd {
        fd: read.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    loop {
        // SAFETY: one valid `pollfd`; an infinite timeout only blocks this thread.
        let n = unsafe { libc::poll(&mut pollfd, 1, -1) };
        if n < 0 {
            continue; // EINTR
        }
        let mut buf = [0u8; 64];
        // SAFETY: reads into a local buffer of its length; the pipe is non-blocking.
        let got = unsafe { libc::read(read.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
        if got == 0 || pollfd.revents & (libc::POLLHUP | libc::POLLERR) != 0 && got <= 0 {
            return; // the subscription was closed
        }
        interrupt();
    }
}

/// One SIGINT arrived: cancel every watched runtime's main future, or, if one is already
/// cleaning up after an earlier one, end the process now.
fn interrupt() {
    let w = watch();
    let Some((subscription, _)) = w.watcher.as_ref() else {
        return;
    };
    if subscription.take_pending() == 0 {
        return;
    }
    if w.runtimes
        .iter()
        .any(|r| r.interrupted.load(Ordering::SeqCst))
    {
        exit_now();
    }
    for runtime in &w.runtimes {
        runtime.interrupted.store(true, Ordering::SeqCst);
        node::cancel(&runtime.main, CancelReason::Interrupted);
    }
}

/// Ends the process as SIGINT's default action does: restore that action and send the signal
/// to the process.
pub(crate) fn exit_now() -> ! {
    // SAFETY: plain C library calls: reset SIGINT to its default action, then send it.
    unsafe {
        libc::signal(libc::SIGINT, libc::SIG_DFL);
        libc::kill(libc::getpid(), libc::SIGINT);
    }
    // SIGINT's default action ends the process; should it be blocked, end it anyway with the
    // status a shell reports for it.
    std::process::exit(130)
}
