//! Receiving Unix signals as an async stream (trio's `open_signal_receiver`).
//!
//! For a program that should react to `SIGTERM`, `SIGHUP` or a user signal: receive them with
//! [`receiver`] and wait with [`SignalReceiver::recv`], typically in a task of the program's
//! nursery. (Ctrl-C has its own handling in the runtime: see
//! [`Builder::ctrl_c`](crate::Builder::ctrl_c).)
//!
//! ```
//! use trellis::signal::{self, Signal};
//!
//! trellis::run(async {
//!     let mut stop = signal::receiver(&[Signal::TERM, Signal::HUP])?;
//!     // Elsewhere, `kill -HUP <pid>`; here the program sends it to itself.
//!     signal::raise(Signal::HUP)?;
//!     match stop.recv().await? {
//!         Signal::HUP => println!("reloading the configuration"),
//!         other => println!("{other}: stopping"),
//!     }
//!     Ok::<_, std::io::Error>(())
//! })
//! .unwrap();
//! ```
//!
//! The details:
//!
//! [`receiver`] installs a handler for the given signals and returns a [`SignalReceiver`];
//! while it exists, those signals are delivered to it instead of having their usual effect.
//! Dropping the last receiver of a signal restores exactly the handling that was in place
//! before (the previous `sigaction`), as trio does; then, as trio does, each signal that was
//! delivered to the receiver but never returned by it is raised again once (with [`raise`], on
//! the dropping thread), so the previous handling sees it: a previous handler runs, an ignored
//! signal stays ignored, a signal whose default action ends the process ends it. A signal that
//! another receiver still receives is not raised again: that receiver has the same arrival.
//!
//! Delivery: a signal that arrives several times before it is read is reported once
//! (coalescing, as in trio). Signals that arrive together are reported in ascending signal
//! number; a signal is never reported twice for one arrival.
//!
//! How it works, and why it is safe inside a signal handler: a process-wide table of receiver
//! slots, each with the write end of a non-blocking pipe, the mask of signals it wants and a
//! mask of signals pending. The handler only does async-signal-safe things: atomic operations
//! and `write(2)` of one byte to wake the reader. The reader (an [`AsyncFd`] on the pipe's read
//! end) drains the pipe, then takes the pending mask. A slot being freed is guarded by a `busy`
//! count that the handler holds while it uses the slot's descriptor: the freeing side first
//! unpublishes the descriptor, then waits for `busy` to reach zero, and only then closes it, so
//! the handler never writes to a descriptor number that was closed and reused.

pub(crate) mod ctrl_c;

use std::fmt;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::pin::Pin;
use std::sync::atomic::{AtomicI32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::task::{Context, Poll};

use crate::cancel::CancelWaiter;
use crate::io::{AsyncFd, Direction};
use crate::state_lock::lock_blocking;

/// A Unix signal number.
///
/// ```
/// use trellis::signal::Signal;
///
/// assert_eq!(Signal::TERM.as_raw(), 15);
/// assert_eq!(Signal::from_raw(1), Signal::HUP);
/// assert_eq!(Signal::INT.to_string(), "SIGINT");
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Signal(i32);

impl Signal {
    /// Hangup.
    pub const HUP: Signal = Signal(libc::SIGHUP);
    /// Interrupt (Ctrl-C).
    pub const INT: Signal = Signal(libc::SIGINT);
    /// Quit (Ctrl-\).
    pub const QUIT: Signal = Signal(libc::SIGQUIT);
    /// Kill (cannot be caught; for sending).
    pub const KILL: Signal = Signal(libc::SIGKILL);
    /// User signal 1.
    pub const USR1: Signal = Signal(libc::SIGUSR1);
    /// User signal 2.
    pub const USR2: Signal = Signal(libc::SIGUSR2);
    /// Broken pipe.
    pub const PIPE: Signal = Signal(libc::SIGPIPE);
    /// Timer alarm.
    pub const ALRM: Signal = Signal(libc::SIGALRM);
    /// Termination request.
    pub const TERM: Signal = Signal(libc::SIGTERM);
    /// A child process stopped or ended.
    pub const CHLD: Signal = Signal(libc::SIGCHLD);
    /// Continue after a stop.
    pub const CONT: Signal = Signal(libc::SIGCONT);
    /// Stop (cannot be caught; for sending).
    pub const STOP: Signal = Signal(libc::SIGSTOP);
    /// Terminal stop (Ctrl-Z).
    pub const TSTP: Signal = Signal(libc::SIGTSTP);
    /// Terminal window size changed.
    pub const WINCH: Signal = Signal(libc::SIGWINCH);

    /// The signal with this number (not checked: [`receiver`] and the senders check).
    ///
    /// ```
    /// use trellis::signal::Signal;
    ///
    /// let rtmin = Signal::from_raw(libc::SIGRTMIN() + 1); // a real-time signal has no constant
    /// assert_eq!(rtmin.as_raw(), libc::SIGRTMIN() + 1);
    /// ```
    pub const fn from_raw(number: i32) -> Signal {
        Signal(number)
    }

    /// The signal's number.
    ///
    /// ```
    /// use trellis::signal::Signal;
    ///
    /// assert_eq!(Signal::TERM.as_raw(), libc::SIGTERM);
    /// assert_eq!(Signal::from_raw(Signal::USR1.as_raw()), Signal::USR1);
    /// ```
    pub const fn as_raw(self) -> i32 {
        self.0
    }

    fn name(self) -> Option<&'static str> {
        Some(match self.0 {
            libc::SIGHUP => "SIGHUP",
            libc::SIGINT => "SIGINT",
            libc::SIGQUIT => "SIGQUIT",
            libc::SIGILL => "SIGILL",
            libc::SIGTRAP => "SIGTRAP",
            libc::SIGABRT => "SIGABRT",
            libc::SIGBUS => "SIGBUS",
            libc::SIGFPE => "SIGFPE",
            libc::SIGKILL => "SIGKILL",
            libc::SIGUSR1 => "SIGUSR1",
            libc::SIGSEGV => "SIGSEGV",
            libc::SIGUSR2 => "SIGUSR2",
            libc::SIGPIPE => "SIGPIPE",
            libc::SIGALRM => "SIGALRM",
            libc::SIGTERM => "SIGTERM",
            libc::SIGCHLD => "SIGCHLD",
            libc::SIGCONT => "SIGCONT",
            libc::SIGSTOP => "SIGSTOP",
            libc::SIGTSTP => "SIGTSTP",
            libc::SIGTTIN => "SIGTTIN",
            libc::SIGTTOU => "SIGTTOU",
            libc::SIGURG => "SIGURG",
            libc::SIGXCPU => "SIGXCPU",
            libc::SIGXFSZ => "SIGXFSZ",
            libc::SIGVTALRM => "SIGVTALRM",
            libc::SIGPROF => "SIGPROF",
            libc::SIGWINCH => "SIGWINCH",
            libc::SIGIO => "SIGIO",
            libc::SIGPWR => "SIGPWR",
            libc::SIGSYS => "SIGSYS",
            _ => return None,
        })
    }

    /// Why this signal cannot be received, if it cannot.
    fn unreceivable(self) -> Option<String> {
        let n = self.0;
        if !(1..=MAX_SIGNAL).contains(&n) {
            return Some(format!(
                "{self} does not exist (valid numbers are 1 to {MAX_SIGNAL})"
            ));
        }
        if n == libc::SIGKILL || n == libc::SIGSTOP {
            return Some(format!("{self} cannot be caught or ignored"));
        }
        if [libc::SIGSEGV, libc::SIGBUS, libc::SIGILL, libc::SIGFPE].contains(&n) {
            return Some(format!(
                "{self} reports a fault in the running code and cannot be received asynchronously"
            ));
        }
        if n > libc::SIGSYS && n < libc::SIGRTMIN() {
            return Some(format!("{self} is reserved by the C library"));
        }
        None
    }
}

impl fmt::Display for Signal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name() {
            Some(name) => f.write_str(name),
            None => write!(f, "signal {}", self.0),
        }
    }
}

impl fmt::Debug for Signal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// Sends `signal` to the calling thread (C's `raise`, as Python's `signal.raise_signal`): unless
/// the thread blocks it, the signal is handled before this returns, so a receiver sees it at its
/// next `recv`. (A signal sent to the whole process with `kill` may be handled later, on any
/// thread.)
///
/// # Errors
/// If the signal number is invalid.
///
/// ```
/// use trellis::signal::{self, Signal};
///
/// trellis::run(async {
///     let mut usr2 = signal::receiver(&[Signal::USR2])?;
///     signal::raise(Signal::USR2)?; // handled before `raise` returns
///     assert_eq!(usr2.recv().await?, Signal::USR2);
///     Ok::<_, std::io::Error>(())
/// })
/// .unwrap();
/// ```
pub fn raise(signal: Signal) -> io::Result<()> {
    // SAFETY: a plain C library call with an integer argument.
    if unsafe { libc::raise(signal.0) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Highest signal number on Linux (`SIGRTMAX`), and the width of the masks below.
const MAX_SIGNAL: i32 = 64;
/// Receivers that can exist at once in the process.
const SLOTS: usize = 64;

struct Slot {
    /// Write end of the receiver's pipe; -1 while the slot is free.
    write_fd: AtomicI32,
    /// Signals the receiver wants (bit `n - 1` for signal `n`).
    mask: AtomicU64,
    /// Signals delivered and not yet taken by the reader.
    pending: AtomicU64,
    /// Handlers currently using `write_fd`.
    busy: AtomicUsize,
}

impl Slot {
    const fn new() -> Slot {
        Slot {
            write_fd: AtomicI32::new(-1),
            mask: AtomicU64::new(0),
            pending: AtomicU64::new(0),
            busy: AtomicUsize::new(0),
        }
    }
}

static TABLE: [Slot; SLOTS] = [const { Slot::new() }; SLOTS];

/// Installation bookkeeping; never touched by the handler.
struct Registry {
    used: [bool; SLOTS],
    /// Receivers per signal number.
    users: [usize; MAX_SIGNAL as usize + 1],
    /// The handling in place before ours, per signal, to restore.
    previous: Vec<(i32, libc::sigaction)>,
}

static REGISTRY: Mutex<Registry> = Mutex::new(Registry {
    used: [false; SLOTS],
    users: [0; MAX_SIGNAL as usize + 1],
    previous: Vec::new(),
});

fn registry() -> MutexGuard<'static, Registry> {
    lock_blocking(&REGISTRY)
}

fn bit(signal: i32) -> u64 {
    1u64 << (signal - 1)
}

extern "C" fn on_signal(signal: libc::c_int) {
    // SAFETY: reading and restoring this thread's errno, which `write` below may change; the
    // interrupted code must see its own errno afterwards.
    let errno = unsafe { *libc::__errno_location() };
    if (1..=MAX_SIGNAL).contains(&signal) {
        let b = bit(signal);
        for slot in &TABLE {
            if slot.mask.load(Ordering::Relaxed) & b == 0 {
                continue;
            }
            slot.busy.fetch_add(1, Ordering::SeqCst);
            let fd = slot.write_fd.load(Ordering::SeqCst);
            if fd >= 0 && slot.mask.load(Ordering::SeqCst) & b != 0 {
                slot.pending.fetch_or(b, Ordering::SeqCst);
                let byte = 1u8;
                // SAFETY: `fd` stays open while `busy` is non-zero (see the module comment);
                // `write` is async-signal-safe. A full pipe (EAGAIN) is fine: a wake-up byte is
                // already waiting.
                unsafe { libc::write(fd, (&byte as *const u8).cast(), 1) };
            }
            slot.busy.fetch_sub(1, Ordering::SeqCst);
        }
    }
    // SAFETY: see above.
    unsafe { *libc::__errno_location() = errno };
}

/// Starts receiving `signals`: until the receiver is dropped, they are delivered to it instead
/// of having their usual effect. Those it was delivered but did not return are raised again when
/// it is dropped, for the handling in place before (see the [module docs](self)).
///
/// ```
/// use trellis::signal::{self, Signal};
///
/// trellis::run(async {
///     let mut signals = signal::receiver(&[Signal::USR1])?;
///     signal::raise(Signal::USR1)?;
///     assert_eq!(signals.recv().await?, Signal::USR1);
///     Ok::<_, std::io::Error>(())
/// })
/// .unwrap();
/// ```
///
/// # Errors
/// `InvalidInput` naming the signal for a number that does not exist, `SIGKILL`/`SIGSTOP`
/// (cannot be caught), fault signals (`SIGSEGV`, `SIGBUS`, `SIGILL`, `SIGFPE`) and the real-time
/// signals reserved by the C library; `InvalidInput` for an empty list; an error if 64
/// receivers already exist or no pipe can be made.
///
/// # Panics
/// Outside a runtime.
pub fn receiver(signals: &[Signal]) -> io::Result<SignalReceiver> {
    if signals.is_empty() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "signal::receiver needs at least one signal",
        ));
    }
    for signal in signals {
        if let Some(why) = signal.unreceivable() {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, why));
        }
    }
    let (subscription, read) = Subscription::open(signals)?;
    Ok(SignalReceiver {
        read: AsyncFd::new(read)?,
        subscription,
        queue: Vec::new(),
        waiter: CancelWaiter::new(),
    })
}

/// A slot of the table, with our handler installed for its signals, from opening to close. The
/// read end of its wake-up pipe goes to whoever waits for the signals (a [`SignalReceiver`] on
/// the reactor, or the runtime's Ctrl-C watcher thread).
pub(crate) struct Subscription {
    slot: usize,
    signals: Vec<i32>,
    write: Option<OwnedFd>,
}

impl Subscription {
    /// Takes a slot for `signals` (already validated) and installs our handler for those that
    /// have no subscription yet. Returns the read end of the wake-up pipe (non-blocking).
    pub(crate) fn open(signals: &[Signal]) -> io::Result<(Subscription, OwnedFd)> {
        let (read, write) = pipe()?;
        let mask = signals.iter().fold(0u64, |m, s| m | bit(s.0));
        let mut reg = registry();
        let slot = reg.used.iter().position(|used| !used).ok_or_else(|| {
            io::Error::other(format!(
                "too many signal receivers: at most {SLOTS} can exist at once"
            ))
        })?;
        // Install our handler for signals that have no receiver yet, remembering what was there.
        let mut installed = Vec::new();
        for signal in signals {
            let n = signal.0;
            if reg.users[n as usize] == 0 && !installed.contains(&n) {
                match install(n) {
                    Ok(previous) => {
                        reg.previous.push((n, previous));
                        installed.push(n);
                    }
                    Err(e) => {
                        for &n in &installed {
                            restore(&mut reg, n);
                        }
                        return Err(e);
                    }
                }
            }
        }
        let mut wanted: Vec<i32> = signals.iter().map(|s| s.0).collect();
        wanted.sort_unstable();
        wanted.dedup();
        for &n in &wanted {
            reg.users[n as usize] += 1;
        }
        reg.used[slot] = true;
        let entry = &TABLE[slot];
        entry.pending.store(0, Ordering::SeqCst);
        entry.mask.store(mask, Ordering::SeqCst);
        entry.write_fd.store(write.as_raw_fd(), Ordering::SeqCst);
        drop(reg);
        let subscription = Subscription {
            slot,
            signals: wanted,
            write: Some(write),
        };
        Ok((subscription, read))
    }

    /// Signals delivered since the last call, as a mask (bit `n - 1` for signal `n`).
    pub(crate) fn take_pending(&self) -> u64 {
        TABLE[self.slot].pending.swap(0, Ordering::SeqCst)
    }

    /// The signals delivered and not yet taken, once nothing can deliver any more: restores
    /// the previous handling of the signals this was the last subscription of (returned too),
    /// unpublishes the slot, waits for handlers still using it, closes the pipe's write end
    /// (whoever reads it sees the end) and frees the slot.
    fn close(&mut self) -> (u64, Vec<i32>) {
        let mut reg = registry();
        // Give back the handling of the signals this was the last receiver of before the slot
        // is unpublished: an arrival in between is then recorded here (and re-raised by the
        // receiver) or goes to the previous handler, never lost.
        let mut restored = Vec::new();
        for &n in &self.signals {
            reg.users[n as usize] -= 1;
            if reg.users[n as usize] == 0 {
                restore(&mut reg, n);
                restored.push(n);
            }
        }
        let entry = &TABLE[self.slot];
        entry.write_fd.store(-1, Ordering::SeqCst);
        entry.mask.store(0, Ordering::SeqCst);
        // A handler running on another thread finishes in a few instructions.
        while entry.busy.load(Ordering::SeqCst) != 0 {
            std::thread::yield_now();
        }
        drop(self.write.take());
        // No handler uses the slot any more: what it recorded is final.
        let pending = self.take_pending();
        reg.used[self.slot] = false;
        (pending, restored)
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        if self.write.is_some() {
            self.close();
        }
    }
}

fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0 as RawFd; 2];
    // SAFETY: `fds` has room for the two descriptors pipe2 writes.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC | libc::O_NONBLOCK) } < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: pipe2 succeeded, so both descriptors are open and owned by nobody else.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

fn install(signal: i32) -> io::Result<libc::sigaction> {
    // SAFETY: zeroed `sigaction` structs are valid; the handler is an `extern "C" fn(c_int)`
    // that is async-signal-safe (see `on_signal`).
    unsafe {
        let mut action: libc::sigaction = std::mem::zeroed();
        action.sa_sigaction = on_signal as extern "C" fn(libc::c_int) as libc::sighandler_t;
        action.sa_flags = libc::SA_RESTART;
        libc::sigemptyset(&mut action.sa_mask);
        let mut previous: libc::sigaction = std::mem::zeroed();
        if libc::sigaction(signal, &action, &mut previous) < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(previous)
    }
}

fn restore(reg: &mut Registry, signal: i32) {
    if let Some(index) = reg.previous.iter().position(|(n, _)| *n == signal) {
        let (_, previous) = reg.previous.swap_remove(index);
        // SAFETY: `previous` is the action `sigaction` returned when we installed ours.
        unsafe { libc::sigaction(signal, &previous, std::ptr::null_mut()) };
    }
}

/// Delivered signals; see [`receiver`]. Also a `futures_core::Stream` of `io::Result<Signal>`
/// that never ends.
///
/// ```
/// use futures_lite::StreamExt;
/// use trellis::signal::{self, Signal};
///
/// trellis::run(async {
///     let mut signals = signal::receiver(&[Signal::USR1, Signal::USR2])?;
///     signal::raise(Signal::USR2)?;
///     signal::raise(Signal::USR1)?;
///     // As a stream; signals pending together come in ascending number (USR1 = 10, USR2 = 12).
///     assert_eq!(signals.next().await.unwrap()?, Signal::USR1);
///     assert_eq!(signals.next().await.unwrap()?, Signal::USR2);
///     Ok::<_, std::io::Error>(())
/// })
/// .unwrap();
/// ```
pub struct SignalReceiver {
    subscription: Subscription,
    read: AsyncFd<OwnedFd>,
    /// Delivered, not yet returned (each signal at most once).
    queue: Vec<Signal>,
    waiter: CancelWaiter,
}

impl fmt::Debug for SignalReceiver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let signals: Vec<Signal> = self
            .subscription
            .signals
            .iter()
            .map(|&n| Signal(n))
            .collect();
        f.debug_struct("SignalReceiver")
            .field("signals", &signals)
            .field("queued", &self.queue)
            .finish()
    }
}

impl SignalReceiver {
    /// Waits for the next signal. A checkpoint; a cancelled `recv` loses no signal.
    ///
    /// ```
    /// use std::time::Duration;
    /// use trellis::signal::{self, Signal};
    ///
    /// trellis::run(async {
    ///     let mut hup = signal::receiver(&[Signal::HUP])?;
    ///     // Nothing arrives: the wait is cancelled by its deadline, and no signal is lost.
    ///     assert!(trellis::move_on_after(Duration::from_millis(2), hup.recv()).await.is_none());
    ///     signal::raise(Signal::HUP)?;
    ///     assert_eq!(hup.recv().await?, Signal::HUP);
    ///     Ok::<_, std::io::Error>(())
    /// })
    /// .unwrap();
    /// ```
    pub async fn recv(&mut self) -> io::Result<Signal> {
        loop {
            if !self.queue.is_empty() {
                crate::checkpoint().await?;
                return Ok(self.queue.remove(0));
            }
            self.read.read_with(drain).await?;
            self.collect();
        }
    }

    /// Moves the pending mask into the queue, skipping signals already queued (coalescing).
    fn collect(&mut self) {
        let pending = self.subscription.take_pending();
        self.queue_mask(pending);
    }

    fn queue_mask(&mut self, pending: u64) {
        for n in 1..=MAX_SIGNAL {
            let signal = Signal(n);
            if pending & bit(n) != 0 && !self.queue.contains(&signal) {
                self.queue.push(signal);
            }
        }
    }
}

/// Empties the wake-up pipe; `WouldBlock` if it was empty.
fn drain(fd: &OwnedFd) -> io::Result<()> {
    let mut buf = [0u8; 64];
    let mut any = false;
    loop {
        // SAFETY: reads into a local buffer of the given length.
        let n = unsafe { libc::read(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
        if n > 0 {
            any = true;
            continue;
        }
        let err = io::Error::last_os_error();
        if n < 0 && err.kind() == io::ErrorKind::Interrupted {
            continue;
        }
        if n < 0 && err.kind() != io::ErrorKind::WouldBlock {
            return Err(err);
        }
        return if any {
            Ok(())
        } else {
            Err(io::ErrorKind::WouldBlock.into())
        };
    }
}

impl futures_core::Stream for SignalReceiver {
    type Item = io::Result<Signal>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        loop {
            if !this.queue.is_empty() {
                if let Some(c) = crate::cancel::current_cancellation("signal::SignalReceiver") {
                    return Poll::Ready(Some(Err(c.into())));
                }
                return Poll::Ready(Some(Ok(this.queue.remove(0))));
            }
            match this
                .read
                .poll_io(Direction::Read, &mut this.waiter, cx, drain, |_| false)
            {
                Poll::Ready(Ok(())) => this.collect(),
                Poll::Ready(Err(e)) => return Poll::Ready(Some(Err(e))),
                Poll::Pending => return Poll::Pending,
            }
        }
    }
}

impl Drop for SignalReceiver {
    fn drop(&mut self) {
        let (pending, restored) = self.subscription.close();
        self.queue_mask(pending);
        // Delivered, never returned: re-raise each once, in number order, for the handling now
        // in place (as trio does). A signal that another receiver still receives is not
        // re-raised: that receiver was delivered the same arrival.
        let mut unread: Vec<Signal> = std::mem::take(&mut self.queue)
            .into_iter()
            .filter(|s| restored.contains(&s.0))
            .collect();
        unread.sort_unstable();
        for signal in unread {
            // Only fails for an invalid number, and these were validated by `receiver`.
            let _ = raise(signal);
        }
    }
}
