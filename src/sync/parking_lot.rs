//! The parking lot: the one wait queue under every synchronisation primitive and channel.
//!
//! Every primitive keeps its state (lock flag, permit count, channel buffer...) and one
//! [`ParkingLot`] together behind a single `std::sync::Mutex`. No atomics are used directly, so
//! the state machines below need no loom model: every transition happens under that mutex, and a
//! waiter's future only ever sees the state through it.
//!
//! # The protocol
//!
//! A waiter that cannot complete at once *parks*: it appends an entry (its waker and its
//! *request*: what it asks for, e.g. the message a sender wants to send) to a FIFO *line* and
//! keeps the entry's key. Whoever frees a resource *unparks* the first waiter by placing the
//! *value* in the waiter's entry (a message, a permit, a lock) and waking it. That is the
//! hand-off: the value belongs to the waiter from that moment, even though the waiter has not
//! run yet, which is what makes the primitives fair (trio's rule: an item sent while a receiver
//! waits belongs to that receiver; a released lock goes to the first waiter, not to whoever
//! asks next).
//!
//! ```text
//!   park ──► Parked(waker) ──unpark(value)──► Handed(value) ──take──► the operation returns it
//!              │                                   │
//!              └─leave (cancelled/dropped)          └─leave (dropped before it ran)
//!                 ⇒ Withdrawn: nothing held            ⇒ the value is *redelivered*
//! ```
//!
//! The entry is removed only by its own waiter (`take` or `leave`), never by the unparker, so a
//! key stays valid for as long as its future holds it. The hard case of cancel safety is the
//! right-hand branch: a waiter that was handed a value and is dropped before it runs. The lot
//! returns the value to the primitive, whose [`Site::redeliver`] passes it on exactly as a
//! release would (to the next waiter, or back to the front of the channel buffer), so nothing is
//! lost and no lock or permit leaks.
//!
//! A waiter that is polled after the hand-off takes the value even if its scope was cancelled in
//! the meantime: as in trio, once the value was handed over the operation has completed, and the
//! cancellation is seen at the next checkpoint. Nothing is lost either way.
//!
//! # Lines
//!
//! A lot has two lines sharing one set of entries: [`MAIN`], where waiters are served, and
//! [`STANDBY`], where waiters sit until [`ParkingLot::repark`] moves them to the back of `MAIN`
//! (trio's `repark`, used by `Condition`: a notified waiter joins the lock's queue at once, ahead
//! of tasks that ask for the lock later). Both lines live in one lot so a waiter's key stays valid
//! when it moves.
//!
//! # Operations
//!
//! [`Op`] is the future shape every blocking operation shares, parameterised by a [`Site`] (the
//! primitive's rules): check for cancellation, try to complete at once (then yield once: every
//! operation is a checkpoint), otherwise park and wait for a hand-off or a cancellation
//! (registered through [`CancelWaiter`]). Dropping it at any point withdraws or redelivers.

use std::future::Future;
use std::marker::PhantomData;
use std::mem::{self, ManuallyDrop};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};

use slab::Slab;

use crate::cancel::current;
use crate::cancel::node::NodeKind;
use crate::cancel::waiting::LockWatch;
use crate::cancel::{current_cancellation, CancelWaiter};
use crate::error::Cancelled;
use crate::runtime::context;

pub(crate) use crate::state_lock::lock;

/// Names a waiter's entry in its lot; valid until the waiter takes or leaves it.
pub(crate) type Key = usize;

/// The line waiters are served from.
pub(crate) const MAIN: usize = 0;
/// The line waiters wait in until they are reparked to [`MAIN`].
pub(crate) const STANDBY: usize = 1;

const NIL: usize = usize::MAX;

enum Slot<T> {
    Parked(Waker),
    Handed(T),
}

struct Entry<T, R> {
    slot: Slot<T>,
    request: R,
    /// The line this entry is linked in, while `Parked`.
    line: usize,
    prev: usize,
    next: usize,
}

#[derive(Clone, Copy)]
struct Line {
    head: usize,
    tail: usize,
    len: usize,
}

impl Line {
    const EMPTY: Line = Line {
        head: NIL,
        tail: NIL,
        len: 0,
    };
}

/// What a waiter finds when it leaves its entry.
pub(crate) enum Left<T, R> {
    /// It was still parked: it held nothing; here is its request back.
    Withdrawn(R),
    /// It had been handed `T` but never took it: the caller must redeliver it.
    Handed(T, R),
}

/// A fair (FIFO) wait queue with hand-off slots. Not synchronised itself: it lives inside a
/// primitive's state, behind the primitive's mutex. `T` is what a waiter is handed, `R` what it
/// brings.
pub(crate) struct ParkingLot<T, R = ()> {
    entries: Slab<Entry<T, R>>,
    lines: [Line; 2],
    broken: bool,
}

impl<T, R> Default for ParkingLot<T, R> {
    fn default() -> Self {
        ParkingLot::new()
    }
}

impl<T, R> ParkingLot<T, R> {
    pub(crate) const fn new() -> Self {
        ParkingLot {
            entries: Slab::new(),
            lines: [Line::EMPTY; 2],
            broken: false,
        }
    }

    /// Waiters parked (not yet handed a value) in `line`.
    pub(crate) fn len(&self, line: usize) -> usize {
        self.lines[line].len
    }

    pub(crate) fn is_empty(&self, line: usize) -> bool {
        self.lines[line].len == 0
    }

    /// Whether [`break_lot`](Self::break_lot) was called.
    pub(crate) fn is_broken(&self) -> bool {
        self.broken
    }

    /// Appends a waiter to the back of `line`.
    pub(crate) fn park(&mut self, line: usize, waker: &Waker, request: R) -> Key {
        debug_assert!(
            !self.broken,
            "the primitive must refuse waiters once its lot is broken"
        );
        let key = self.entries.insert(Entry {
            slot: Slot::Parked(waker.clone()),
            request,
            line,
            prev: NIL,
            next: NIL,
        });
        self.link_back(line, key);
        key
    }

    fn link_back(&mut self, line: usize, key: Key) {
        let tail = self.lines[line].tail;
        {
            let e = &mut self.entries[key];
            e.line = line;
            e.prev = tail;
            e.next = NIL;
        }
        if tail == NIL {
            self.lines[line].head = key;
        } else {
            self.entries[tail].next = key;
        }
        self.lines[line].tail = key;
        self.lines[line].len += 1;
    }

    fn unlink(&mut self, key: Key) {
        let (line, prev, next) = {
            let e = &self.entries[key];
            (e.line, e.prev, e.next)
        };
        if prev == NIL {
            self.lines[line].head = next;
        } else {
            self.entries[prev].next = next;
        }
        if next == NIL {
            self.lines[line].tail = prev;
        } else {
            self.entries[next].prev = prev;
        }
        self.lines[line].len -= 1;
    }

    /// The first parked waiter of `line` and its request.
    pub(crate) fn front(&mut self, line: usize) -> Option<(Key, &mut R)> {
        let head = self.lines[line].head;
        if head == NIL {
            return None;
        }
        Some((head, &mut self.entries[head].request))
    }

    /// The keys of `line`, front to back (a snapshot: unparking some of them is fine).
    pub(crate) fn keys(&self, line: usize) -> Vec<Key> {
        let mut keys = Vec::with_capacity(self.lines[line].len);
        let mut k = self.lines[line].head;
        while k != NIL {
            keys.push(k);
            k = self.entries[k].next;
        }
        keys
    }

    /// The request of the waiter under `key`.
    pub(crate) fn request(&self, key: Key) -> &R {
        &self.entries[key].request
    }

    /// Hands `value` to the parked waiter under `key` and queues its waker on `wakes`.
    pub(crate) fn unpark_key(&mut self, key: Key, value: T, wakes: &mut WakeList) {
        self.unlink(key);
        let slot = mem::replace(&mut self.entries[key].slot, Slot::Handed(value));
        match slot {
            Slot::Parked(waker) => wakes.push(waker),
            Slot::Handed(_) => unreachable!("only parked entries are linked"),
        }
    }

    /// Hands `value` to the first waiter of `line`; gives it back if nobody waits.
    pub(crate) fn unpark(&mut self, line: usize, value: T, wakes: &mut WakeList) -> Result<(), T> {
        match self.lines[line].head {
            NIL => Err(value),
            head => {
                self.unpark_key(head, value, wakes);
                Ok(())
            }
        }
    }

    /// Unparks up to `n` waiters of `line` from the front, handing each `value(request)`.
    /// Returns how many were unparked.
    pub(crate) fn unpark_n(
        &mut self,
        line: usize,
        n: usize,
        mut value: impl FnMut(&mut R) -> T,
        wakes: &mut WakeList,
    ) -> usize {
        let mut done = 0;
        while done < n {
            let head = self.lines[line].head;
            if head == NIL {
                break;
            }
            let v = value(&mut self.entries[head].request);
            self.unpark_key(head, v, wakes);
            done += 1;
        }
        done
    }

    /// Unparks every waiter of `line` whose request matches, handing each `value(request)`.
    pub(crate) fn unpark_where(
        &mut self,
        line: usize,
        mut matches: impl FnMut(&R) -> bool,
        mut value: impl FnMut(&mut R) -> T,
        wakes: &mut WakeList,
    ) -> usize {
        let mut done = 0;
        let mut k = self.lines[line].head;
        while k != NIL {
            let next = self.entries[k].next;
            if matches(&self.entries[k].request) {
                let v = value(&mut self.entries[k].request);
                self.unpark_key(k, v, wakes);
                done += 1;
            }
            k = next;
        }
        done
    }

    /// Moves up to `n` waiters from the front of `from` to the back of `to`, keeping their order
    /// (trio's `repark`). Returns how many moved.
    pub(crate) fn repark(&mut self, from: usize, to: usize, n: usize) -> usize {
        let mut moved = 0;
        while moved < n {
            let head = self.lines[from].head;
            if head == NIL {
                break;
            }
            self.unlink(head);
            self.link_back(to, head);
            moved += 1;
        }
        moved
    }

    /// Moves the parked waiter under `key` to the back of `to` (no-op if it is there already or
    /// was handed a value).
    pub(crate) fn move_to(&mut self, key: Key, to: usize) {
        let e = &self.entries[key];
        if matches!(e.slot, Slot::Parked(_)) && e.line != to {
            self.unlink(key);
            self.link_back(to, key);
        }
    }

    /// Breaks the lot (trio's `break_lot`): every waiter of both lines is handed
    /// `value(request)` (an error, normally), and [`is_broken`](Self::is_broken) stays true so
    /// that the primitive refuses new waiters.
    pub(crate) fn break_lot(&mut self, mut value: impl FnMut(&mut R) -> T, wakes: &mut WakeList) {
        self.broken = true;
        for line in [MAIN, STANDBY] {
            self.unpark_n(line, usize::MAX, &mut value, wakes);
        }
    }

    /// If the waiter under `key` has been handed its value, removes the entry and returns the
    /// value and request; otherwise refreshes its waker.
    pub(crate) fn take(&mut self, key: Key, waker: &Waker) -> Option<(T, R)> {
        match &mut self.entries[key].slot {
            Slot::Parked(w) => {
                if !w.will_wake(waker) {
                    w.clone_from(waker);
                }
                None
            }
            Slot::Handed(_) => {
                let e = self.entries.remove(key);
                match e.slot {
                    Slot::Handed(v) => Some((v, e.request)),
                    Slot::Parked(_) => unreachable!("checked above"),
                }
            }
        }
    }

    /// The waiter under `key` leaves (it was cancelled or dropped); the entry is removed.
    pub(crate) fn leave(&mut self, key: Key) -> Left<T, R> {
        if let Slot::Parked(_) = self.entries[key].slot {
            self.unlink(key);
        }
        let e = self.entries.remove(key);
        match e.slot {
            Slot::Parked(_) => Left::Withdrawn(e.request),
            Slot::Handed(v) => Left::Handed(v, e.request),
        }
    }
}

/// Wakers collected under a primitive's lock and woken after it is released, so a woken task on
/// another thread does not run straight into the lock we still hold. Almost every operation wakes
/// at most one waiter, so the first is kept inline and the rest (an `unpark_all` of many
/// waiters) go to a vector that is only allocated when used. One is built on every operation,
/// including those that wake nobody, so dropping an empty one is two tests, inlined: the fields
/// are `ManuallyDrop`, freed by the drop's out-of-line part only when there is something to free
/// (as plain fields, their drop glue and the drop's body made a call of about 27 instructions,
/// four per `ping_pong` round trip).
pub(crate) struct WakeList {
    first: ManuallyDrop<Option<Waker>>,
    more: ManuallyDrop<Vec<Waker>>,
}

impl Default for WakeList {
    fn default() -> Self {
        WakeList {
            first: ManuallyDrop::new(None),
            more: ManuallyDrop::new(Vec::new()),
        }
    }
}

impl WakeList {
    #[inline]
    pub(crate) fn new() -> Self {
        WakeList::default()
    }

    #[inline]
    pub(crate) fn push(&mut self, waker: Waker) {
        if self.first.is_none() {
            *self.first = Some(waker);
        } else {
            self.more.push(waker);
        }
    }

    /// Wakes everything collected. Call after releasing the lock.
    #[inline]
    pub(crate) fn wake_all(&mut self) {
        if let Some(w) = self.first.take() {
            w.wake();
            if !self.more.is_empty() {
                self.wake_more();
            }
        }
    }

    #[cold]
    fn wake_more(&mut self) {
        for w in self.more.drain(..) {
            w.wake();
        }
    }

    /// The drop of a list that holds a waker or a vector's memory.
    #[inline(never)]
    fn wake_and_free(&mut self) {
        self.wake_all();
        // SAFETY: called once, from `drop`; the fields are not used after.
        unsafe {
            ManuallyDrop::drop(&mut self.first);
            ManuallyDrop::drop(&mut self.more);
        }
    }
}

impl Drop for WakeList {
    #[inline]
    fn drop(&mut self) {
        if self.first.is_some() || self.more.capacity() != 0 {
            self.wake_and_free();
        }
    }
}

/// The id of the task running the calling code, if any (for `owner` statistics).
#[inline]
pub(crate) fn current_task_id() -> Option<u64> {
    current::polled_task_id().or_else(task_id_from_tree)
}

/// [`current_task_id`] outside a task poll (the main future, a future dropped in a teardown):
/// the task above the current node in the tree.
#[cold]
fn task_id_from_tree() -> Option<u64> {
    current::with_node(|node| {
        let mut node = node.map(|n| n.node())?;
        if let NodeKind::Task(info) = node.kind() {
            return Some(info.id);
        }
        // Inside a cancel scope: walk up to the task the scope belongs to.
        let mut parent = node.parent();
        while let Some(p) = parent {
            node = p.node();
            if let NodeKind::Task(info) = node.kind() {
                return Some(info.id);
            }
            parent = node.parent();
        }
        None
    })
}

/// The rules of one kind of wait (one primitive operation): where its waiters park, how it
/// completes at once, and what happens to a value nobody took.
pub(crate) trait Site {
    /// The primitive's state, behind its mutex; holds the lot.
    type State;
    /// What a waiter is handed (a message, `()` for a lock or permit, or an error).
    type Value;
    /// What a waiter brings (the message to send, the borrower...).
    type Request;
    /// What the operation returns on success.
    type Output;
    /// What the operation returns on failure.
    type Error;

    /// `module::Type::method`, for the message given when used outside a runtime.
    const NAME: &'static str;
    /// The line waiters park in.
    const LINE: usize = MAIN;

    fn lot(state: &mut Self::State) -> &mut ParkingLot<Self::Value, Self::Request>;

    /// Completes at once if the state allows (returns the value; an immediate failure is a
    /// value too), or returns `None` to park with `request`.
    fn attempt(
        state: &mut Self::State,
        request: &mut Self::Request,
        wakes: &mut WakeList,
    ) -> Option<Self::Value>;

    /// Turns the value (and the request it answered) into the operation's result.
    fn finish(value: Self::Value, request: Self::Request) -> Result<Self::Output, Self::Error>;

    /// The error of an operation cancelled before it completed; gets the request back (a
    /// cancelled send returns its message).
    fn cancelled(cancelled: Cancelled, request: Self::Request) -> Self::Error;

    /// A value that was handed to (or obtained by) a waiter that was dropped before it returned
    /// it: pass it on as a release would. Returns whatever must be dropped once the lock is
    /// released (values are never dropped under it: their `Drop` might use the primitive).
    fn redeliver(
        state: &mut Self::State,
        value: Self::Value,
        request: &mut Self::Request,
        wakes: &mut WakeList,
    ) -> Option<Self::Value>;

    /// A parked waiter left without a value; the primitive may now be able to serve the waiters
    /// behind it (a reader queued behind a writer that gave up).
    fn withdrawn(_state: &mut Self::State, _request: &Self::Request, _wakes: &mut WakeList) {}

    /// For the deadlock report: the lock a parked waiter waits for, kept current by the
    /// primitive from now on. Asked only where deadlock detection is on; only locks have one.
    fn lock_watch(_state: &mut Self::State) -> Option<Arc<LockWatch>> {
        None
    }
}

/// Where an [`Op`] is.
pub(crate) enum Phase<S: Site> {
    /// Not polled yet.
    Start(S::Request),
    /// Parked under this key.
    Parked(Key),
    /// Took its schedule point before acting, because the task's yield budget was spent
    /// (`context::budget_spent`); acts at its next poll and does not yield again.
    Yielded(S::Request),
    /// Completed without blocking; yielding once before returning (the checkpoint).
    Done(S::Value, S::Request),
    /// Returned its result.
    Finished,
}

/// One poll of an operation; the state machine of [`Op`], callable on parts so that types
/// which embed an operation (a `Stream`) can drive it too.
pub(crate) fn poll_op<S: Site>(
    state: &Mutex<S::State>,
    phase: &mut Phase<S>,
    cancel: &mut CancelWaiter,
    cx: &mut Context<'_>,
) -> Poll<Result<S::Output, S::Error>> {
    match mem::replace(phase, Phase::Finished) {
        Phase::Start(request) if context::budget_spent() => {
            *phase = Phase::Yielded(request);
            cx.waker().wake_by_ref();
            current::note_parked();
            Poll::Pending
        }
        Phase::Start(request) => act(state, phase, cancel, request, cx, false),
        Phase::Yielded(request) => act(state, phase, cancel, request, cx, true),
        Phase::Parked(key) => poll_parked(state, phase, cancel, key, cx),
        Phase::Done(value, request) => Poll::Ready(S::finish(value, request)),
        Phase::Finished => panic!("{} future polled after it completed", S::NAME),
    }
}

/// A parked operation polled again: takes what it was handed, or checks for cancellation.
/// Out of line, as `act` is, so that the poll itself is a small dispatch.
#[inline(never)]
fn poll_parked<S: Site>(
    state: &Mutex<S::State>,
    phase: &mut Phase<S>,
    cancel: &mut CancelWaiter,
    key: Key,
    cx: &mut Context<'_>,
) -> Poll<Result<S::Output, S::Error>> {
    let taken = S::lot(&mut lock(state)).take(key, cx.waker());
    match taken {
        Some((value, request)) => {
            cancel.clear();
            Poll::Ready(S::finish(value, request))
        }
        None => poll_cancel(state, phase, cancel, key, cx),
    }
}

/// The operation's cancel check and attempt: completes, or parks. `yielded`: the schedule point
/// was already taken (before acting), so a completion returns at once.
#[inline(never)]
fn act<S: Site>(
    state: &Mutex<S::State>,
    phase: &mut Phase<S>,
    cancel: &mut CancelWaiter,
    mut request: S::Request,
    cx: &mut Context<'_>,
    yielded: bool,
) -> Poll<Result<S::Output, S::Error>> {
    if let Some(c) = current_cancellation(S::NAME) {
        return Poll::Ready(Err(S::cancelled(c, request)));
    }
    let mut wakes = WakeList::new();
    let mut st = lock(state);
    match S::attempt(&mut st, &mut request, &mut wakes) {
        Some(value) => {
            drop(st);
            wakes.wake_all();
            // Completed without blocking: still a schedule point (principle 3). With a yield
            // budget it was taken before acting once the budget was spent; without one it is
            // taken now, after acting, as trio does. The value is kept across the yield and
            // redelivered if we are dropped.
            // `must_yield` first: a yielded operation spends its unit of the refilled budget too,
            // so a task poll runs at most `n` ready operations (`Builder::yield_budget`).
            if !context::must_yield() || yielded {
                return Poll::Ready(S::finish(value, request));
            }
            *phase = Phase::Done(value, request);
            cx.waker().wake_by_ref();
            current::note_parked();
            Poll::Pending
        }
        None => {
            let key = S::lot(&mut st).park(S::LINE, cx.waker(), request);
            drop(st);
            poll_cancel(state, phase, cancel, key, cx)
        }
    }
}

/// An operation parked under `key` checks for cancellation (registering for wake-up if not
/// cancelled); its phase says `Parked` until it returns.
fn poll_cancel<S: Site>(
    state: &Mutex<S::State>,
    phase: &mut Phase<S>,
    cancel: &mut CancelWaiter,
    key: Key,
    cx: &mut Context<'_>,
) -> Poll<Result<S::Output, S::Error>> {
    *phase = Phase::Parked(key);
    let Poll::Ready(c) = cancel.poll_cancelled_on(S::NAME, || S::lock_watch(&mut lock(state)), cx)
    else {
        return Poll::Pending;
    };
    *phase = Phase::Finished;
    let mut wakes = WakeList::new();
    let mut st = lock(state);
    match S::lot(&mut st).leave(key) {
        Left::Withdrawn(request) => {
            S::withdrawn(&mut st, &request, &mut wakes);
            drop(st);
            wakes.wake_all();
            Poll::Ready(Err(S::cancelled(c, request)))
        }
        // Handed over before we saw the cancellation: the operation completed (trio's rule).
        Left::Handed(value, request) => {
            drop(st);
            Poll::Ready(S::finish(value, request))
        }
    }
}

/// Abandons an operation that is being dropped: withdraws its entry, or redelivers a value it
/// was handed (or obtained) but never returned. Nothing is lost, nothing stays held.
#[inline]
pub(crate) fn abandon<S: Site>(state: &Mutex<S::State>, phase: &mut Phase<S>) {
    // The common case: the operation returned its result, so there is nothing to give back.
    if matches!(phase, Phase::Start(_) | Phase::Yielded(_) | Phase::Finished) {
        return;
    }
    abandon_slow(state, phase);
}

#[inline(never)]
fn abandon_slow<S: Site>(state: &Mutex<S::State>, phase: &mut Phase<S>) {
    let mut wakes = WakeList::new();
    // Dropped after the lock is released, in this order: wakers first, then values.
    let (leftover, request) = match mem::replace(phase, Phase::Finished) {
        Phase::Parked(key) => {
            let mut st = lock(state);
            match S::lot(&mut st).leave(key) {
                Left::Withdrawn(request) => {
                    S::withdrawn(&mut st, &request, &mut wakes);
                    (None, request)
                }
                Left::Handed(value, mut request) => {
                    let leftover = S::redeliver(&mut st, value, &mut request, &mut wakes);
                    (leftover, request)
                }
            }
        }
        Phase::Done(value, mut request) => {
            let leftover = S::redeliver(&mut lock(state), value, &mut request, &mut wakes);
            (leftover, request)
        }
        Phase::Start(_) | Phase::Yielded(_) | Phase::Finished => {
            unreachable!("`abandon` handles these")
        }
    };
    wakes.wake_all();
    drop(leftover);
    drop(request);
}

/// A non-blocking attempt (`try_send`, `try_lock`...): the operation's result if it could
/// complete now, or the request back if it would have had to wait. Not a checkpoint, and usable
/// outside a runtime.
pub(crate) fn try_now<S: Site>(
    state: &Mutex<S::State>,
    mut request: S::Request,
) -> Result<Result<S::Output, S::Error>, S::Request> {
    let mut wakes = WakeList::new();
    let value = S::attempt(&mut lock(state), &mut request, &mut wakes);
    wakes.wake_all();
    match value {
        Some(value) => Ok(S::finish(value, request)),
        None => Err(request),
    }
}

/// The future of a blocking operation at `S`: see the module comment.
pub(crate) struct Op<'a, S: Site> {
    state: &'a Mutex<S::State>,
    /// `ManuallyDrop`, with `cancel`: an operation that returned its result holds nothing, and
    /// its drop is then one inlined test instead of the drop glue of both (see `Drop`).
    phase: ManuallyDrop<Phase<S>>,
    cancel: ManuallyDrop<CancelWaiter>,
    _site: PhantomData<S>,
}

impl<'a, S: Site> Op<'a, S> {
    pub(crate) fn new(state: &'a Mutex<S::State>, request: S::Request) -> Self {
        Op {
            state,
            phase: ManuallyDrop::new(Phase::Start(request)),
            cancel: ManuallyDrop::new(CancelWaiter::new()),
            _site: PhantomData,
        }
    }
}

// The op never pins its fields: values and requests are moved in and out by value.
impl<S: Site> Unpin for Op<'_, S> {}

impl<S: Site> Future for Op<'_, S> {
    type Output = Result<S::Output, S::Error>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = &mut *self;
        poll_op(this.state, &mut this.phase, &mut this.cancel, cx)
    }
}

impl<S: Site> Drop for Op<'_, S> {
    #[inline]
    fn drop(&mut self) {
        // The common case: the operation returned its result, which leaves it neither a value
        // to give back nor a registration (every way to `Finished` clears it).
        if matches!(*self.phase, Phase::Finished) && !self.cancel.is_registered() {
            return;
        }
        self.drop_slow();
    }
}

impl<S: Site> Op<'_, S> {
    /// The drop of an operation that did not return its result (or, defensively, one still
    /// registered): gives back what it holds, then drops its parts.
    #[inline(never)]
    fn drop_slow(&mut self) {
        abandon(self.state, &mut self.phase);
        // SAFETY: called once, from `drop`; the fields are not used after.
        unsafe {
            ManuallyDrop::drop(&mut self.phase);
            ManuallyDrop::drop(&mut self.cancel);
        }
    }
}

#[cfg(test)]
#[path = "parking_lot_tests.rs"]
mod tests;
