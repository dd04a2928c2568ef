//! The default limit on threads running blocking calls at once (40, as trio's default thread
//! limiter): a FIFO counting semaphore whose permits can be released from any thread.
//!
//! A released permit is handed directly to the oldest waiter (`granted`), so a late arrival
//! cannot overtake a waiter that was already woken. A waiter cancelled after being granted
//! passes the permit on.

use std::collections::{HashSet, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::task::{Context, Poll, Waker};

use crate::cancel::{CancelWaiter, YieldOnce};
use crate::error::Cancelled;

/// How many threads may run blocking calls at once unless told otherwise (trio's default).
pub const DEFAULT_THREAD_LIMIT: usize = 40;

pub(crate) struct Slots {
    state: Mutex<SlotsState>,
}

struct SlotsState {
    available: usize,
    queue: VecDeque<(u64, Waker)>,
    granted: HashSet<u64>,
    next_id: u64,
}

/// A held slot; released on drop (from any thread).
pub(crate) struct SlotPermit {
    slots: Arc<Slots>,
}

impl Drop for SlotPermit {
    fn drop(&mut self) {
        self.slots.release();
    }
}

/// The process-wide default limiter.
pub(crate) fn default_slots() -> Arc<Slots> {
    static DEFAULT: OnceLock<Arc<Slots>> = OnceLock::new();
    DEFAULT
        .get_or_init(|| Arc::new(Slots::new(DEFAULT_THREAD_LIMIT)))
        .clone()
}

impl Slots {
    pub(crate) fn new(total: usize) -> Self {
        Slots {
            state: Mutex::new(SlotsState {
                available: total,
                queue: VecDeque::new(),
                granted: HashSet::new(),
                next_id: 0,
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, SlotsState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn release(&self) {
        let mut state = self.lock();
        match state.queue.pop_front() {
            Some((id, waker)) => {
                state.granted.insert(id);
                drop(state);
                waker.wake();
            }
            None => state.available += 1,
        }
    }

    /// Waits for a slot. A checkpoint; a cancelled acquire holds nothing.
    pub(crate) fn acquire(self: &Arc<Self>) -> Acquire {
        Acquire {
            slots: self.clone(),
            id: None,
            cancel: CancelWaiter::new(),
            yield_once: YieldOnce::default(),
            got: false,
        }
    }
}

pub(crate) struct Acquire {
    slots: Arc<Slots>,
    id: Option<u64>,
    cancel: CancelWaiter,
    yield_once: YieldOnce,
    got: bool,
}

impl Future for Acquire {
    type Output = Result<SlotPermit, Cancelled>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = &mut *self;
        if !this.got {
            if let Poll::Ready(c) = this.cancel.poll_cancelled("thread::run_blocking", cx) {
                this.leave_queue();
                return Poll::Ready(Err(c));
            }
            let mut state = this.slots.lock();
            match this.id {
                Some(id) if state.granted.remove(&id) => {
                    this.id = None;
                    this.got = true;
                }
                Some(id) => {
                    if let Some(entry) = state.queue.iter_mut().find(|(i, _)| *i == id) {
                        entry.1.clone_from(cx.waker());
                    }
                    return Poll::Pending;
                }
                None if state.available > 0 && state.queue.is_empty() => {
                    state.available -= 1;
                    this.got = true;
                }
                None => {
                    let id = state.next_id;
                    state.next_id += 1;
                    state.queue.push_back((id, cx.waker().clone()));
                    this.id = Some(id);
                    this.yield_once.blocked();
                    return Poll::Pending;
                }
            }
        }
        if this.yield_once.poll_yield(cx).is_pending() {
            return Poll::Pending;
        }
        this.cancel.clear();
        this.got = false;
        Poll::Ready(Ok(SlotPermit {
            slots: this.slots.clone(),
        }))
    }
}

impl Acquire {
    /// Leaves the queue; a permit granted meanwhile is passed on.
    fn leave_queue(&mut self) {
        let Some(id) = self.id.take() else {
            return;
        };
        let mut state = self.slots.lock();
        state.queue.retain(|(i, _)| *i != id);
        let granted = state.granted.remove(&id);
        drop(state);
        if granted {
            self.slots.release();
        }
    }
}

impl Drop for Acquire {
    fn drop(&mut self) {
        self.leave_queue();
        if self.got {
            // Acquired, then dropped during the schedule point: give the slot back.
            self.slots.release();
        }
    }
}
