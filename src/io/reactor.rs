//! The reactor: the runtime's one `polling::Poller` and the table of registered descriptors.
//!
//! Protocol:
//! - A descriptor is registered once, with both read and write interest, and gets a [`Source`]:
//!   its readiness bits and the wakers of the tasks waiting on it.
//! - The key given to the poller is `slab index | generation << 32`. When a descriptor is
//!   deregistered and its slot reused, the generation differs, so an event still queued for the
//!   old descriptor is recognised as stale and dropped instead of waking the new owner.
//! - Where the poller supports it, interest is edge-triggered (`PollMode::Edge`): one event per
//!   change of readiness and no re-arming syscall after each event. Elsewhere it is one-shot and
//!   re-armed (`Poller::modify`) each time a task starts waiting.
//! - Readiness is cached in the source with a tick that changes on every event. A task that sees
//!   `WouldBlock` clears only the readiness it observed (same tick), so an event that arrived in
//!   between is not lost.
//! - Only one thread at a time waits in `Poller::wait` (the scheduler gives the driver role to
//!   one idle worker); others wake it with `notify`.
//! - Deregistration deletes the descriptor from the poller before the owner closes it.

use std::io;
use std::os::fd::{BorrowedFd, RawFd};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use polling::{Event, Events, PollMode, Poller};
use slab::Slab;

use crate::state_lock::lock_blocking;

/// Readiness direction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Direction {
    Read,
    Write,
}

impl Direction {
    fn bit(self) -> usize {
        match self {
            Direction::Read => READABLE,
            Direction::Write => WRITABLE,
        }
    }
}

const READABLE: usize = 0b01;
const WRITABLE: usize = 0b10;
const TICK_SHIFT: u32 = 2;

/// One registered descriptor.
pub(crate) struct Source {
    fd: RawFd,
    key: usize,
    /// `tick << 2 | readiness bits`.
    state: AtomicUsize,
    wakers: Mutex<Wakers>,
}

#[derive(Default)]
struct Wakers {
    reader: Option<Waker>,
    writer: Option<Waker>,
}

/// Readiness seen by [`Source::poll_ready`], to be cleared on `WouldBlock`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ReadyEvent {
    tick: usize,
    dir: Direction,
}

pub(crate) struct Reactor {
    poller: Poller,
    edge: bool,
    sources: Mutex<Slab<(u32, Arc<Source>)>>,
    /// Number of registered sources, readable without the lock: a busy worker skips its
    /// periodic non-blocking poll when nothing is registered (each poll with a timeout costs
    /// several syscalls: `epoll_pwait` plus `polling`'s timer descriptor upkeep).
    registered: AtomicUsize,
    generation: AtomicUsize,
    events: Mutex<Events>,
}

impl Reactor {
    pub(crate) fn new() -> io::Result<Self> {
        let poller = Poller::new()?;
        let edge = poller.supports_edge();
        Ok(Reactor {
            poller,
            edge,
            sources: Mutex::new(Slab::new()),
            registered: AtomicUsize::new(0),
            generation: AtomicUsize::new(0),
            events: Mutex::new(Events::new()),
        })
    }

    fn mode(&self) -> PollMode {
        if self.edge {
            PollMode::Edge
        } else {
            PollMode::Oneshot
        }
    }

    /// Registers `fd` (which must be non-blocking and stay open until [`Reactor::deregister`]).
    pub(crate) fn register(&self, fd: RawFd) -> io::Result<Arc<Source>> {
        let generation = (self.generation.fetch_add(1, Ordering::Relaxed) as u32) & 0x7fff_ffff;
        let mut sources = lock_blocking(&self.sources);
        let entry = sources.vacant_entry();
        let key = entry.key() | ((generation as usize) << 32);
        let source = Arc::new(Source {
            fd,
            key,
            state: AtomicUsize::new(0),
            wakers: Mutex::new(Wakers::default()),
        });
        // SAFETY: the caller promises `fd` stays open until `deregister`, which deletes it from
        // the poller before the descriptor is closed.
        unsafe {
            self.poller
                .add_with_mode(fd, Event::all(key), self.mode())?
        };
        entry.insert((generation, source.clone()));
        self.registered.fetch_add(1, Ordering::Relaxed);
        Ok(source)
    }

    /// Removes `source` from the poller; call before closing its descriptor.
    pub(crate) fn deregister(&self, source: &Source) -> io::Result<()> {
        let index = source.key & 0xffff_ffff;
        {
            let mut sources = lock_blocking(&self.sources);
            if sources.get(index).is_some_and(|(_, s)| s.key == source.key) {
                sources.remove(index);
                self.registered.fetch_sub(1, Ordering::Relaxed);
            }
        }
        // SAFETY: the descriptor is still open: the owner closes it only after this returns.
        let fd = unsafe { BorrowedFd::borrow_raw(source.fd) };
        let result = self.poller.delete(fd);
        source.wake_all();
        result
    }

    /// Is any descriptor registered?
    pub(crate) fn has_sources(&self) -> bool {
        self.registered.load(Ordering::Relaxed) > 0
    }

    pub(crate) fn notify(&self) {
        // A failed notify means the poller itself is gone; nothing useful can be done.
        let _ = self.poller.notify();
    }

    /// Waits for I/O events up to `timeout` and wakes the tasks waiting on them. Returns how many
    /// sources became ready.
    pub(crate) fn poll_events(&self, timeout: Option<Duration>) -> io::Result<usize> {
        let mut events = lock_blocking(&self.events);
        events.clear();
        match self.poller.wait(&mut events, timeout) {
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => return Ok(0),
            Err(e) => return Err(e),
        }
        let mut ready = 0;
        for event in events.iter() {
            if event.key == usize::MAX {
                continue;
            }
            let index = event.key & 0xffff_ffff;
            let source = {
                let sources = lock_blocking(&self.sources);
                match sources.get(index) {
                    Some((_, s)) if s.key == event.key => s.clone(),
                    // Stale: the descriptor was deregistered, maybe its slot reused.
                    _ => continue,
                }
            };
            let mut bits = 0;
            if event.readable {
                bits |= READABLE;
            }
            if event.writable {
                bits |= WRITABLE;
            }
            source.set_ready(bits);
            ready += 1;
        }
        Ok(ready)
    }

    fn rearm(&self, source: &Source) -> io::Result<()> {
        if self.edge {
            return Ok(());
        }
        let wakers = lock_blocking(&source.wakers);
        let event = Event::new(source.key, wakers.reader.is_some(), wakers.writer.is_some());
        drop(wakers);
        // SAFETY: the source is registered, so its descriptor is open.
        let fd = unsafe { BorrowedFd::borrow_raw(source.fd) };
        self.poller.modify_with_mode(fd, event, PollMode::Oneshot)
    }
}

impl Source {
    fn set_ready(&self, bits: usize) {
        let mut current = self.state.load(Ordering::Acquire);
        loop {
            let tick = (current >> TICK_SHIFT).wrapping_add(1);
            let next = (tick << TICK_SHIFT) | (current & (READABLE | WRITABLE)) | bits;
            match self.state.compare_exchange_weak(
                current,
                next,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => break,
                Err(actual) => current = actual,
            }
        }
        let mut wakers = lock_blocking(&self.wakers);
        let reader = if bits & READABLE != 0 {
            wakers.reader.take()
        } else {
            None
        };
        let writer = if bits & WRITABLE != 0 {
            wakers.writer.take()
        } else {
            None
        };
        drop(wakers);
        if let Some(w) = reader {
            w.wake();
        }
        if let Some(w) = writer {
            w.wake();
        }
    }

    fn wake_all(&self) {
        let mut wakers = lock_blocking(&self.wakers);
        let reader = wakers.reader.take();
        let writer = wakers.writer.take();
        drop(wakers);
        reader.into_iter().chain(writer).for_each(Waker::wake);
    }

    /// Ready if the cached readiness has `dir`; otherwise stores the waker (and re-arms a
    /// one-shot registration) and returns `Pending`.
    #[inline]
    pub(crate) fn poll_ready(
        &self,
        reactor: &Reactor,
        dir: Direction,
        cx: &mut Context<'_>,
    ) -> Poll<io::Result<ReadyEvent>> {
        let state = self.state.load(Ordering::Acquire);
        if state & dir.bit() != 0 {
            return Poll::Ready(Ok(ReadyEvent {
                tick: state >> TICK_SHIFT,
                dir,
            }));
        }
        self.register_waker(reactor, dir, cx)
    }

    /// [`poll_ready`](Self::poll_ready) once the source is not ready: stores the waker, looks
    /// again, and re-arms the interest. Out of line: inlined, its lock and calls gave the ready
    /// path, which most polls take, a longer entry and exit.
    #[inline(never)]
    fn register_waker(
        &self,
        reactor: &Reactor,
        dir: Direction,
        cx: &mut Context<'_>,
    ) -> Poll<io::Result<ReadyEvent>> {
        {
            let mut wakers = lock_blocking(&self.wakers);
            let slot = match dir {
                Direction::Read => &mut wakers.reader,
                Direction::Write => &mut wakers.writer,
            };
            match slot {
                Some(w) if w.will_wake(cx.waker()) => {}
                _ => *slot = Some(cx.waker().clone()),
            }
        }
        // An event may have arrived between the load and storing the waker.
        let state = self.state.load(Ordering::Acquire);
        if state & dir.bit() != 0 {
            return Poll::Ready(Ok(ReadyEvent {
                tick: state >> TICK_SHIFT,
                dir,
            }));
        }
        if let Err(e) = reactor.rearm(self) {
            return Poll::Ready(Err(e));
        }
        Poll::Pending
    }

    /// Forgets readiness seen as `event` after the operation returned `WouldBlock`, unless a newer
    /// event arrived meanwhile.
    pub(crate) fn clear_ready(&self, event: ReadyEvent) {
        let mut current = self.state.load(Ordering::Acquire);
        while current >> TICK_SHIFT == event.tick {
            let next = current & !event.dir.bit();
            match self.state.compare_exchange_weak(
                current,
                next,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => return,
                Err(actual) => current = actual,
            }
        }
    }

    pub(crate) fn fd(&self) -> RawFd {
        self.fd
    }
}
