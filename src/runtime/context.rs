//! Thread-local context: which runtime this thread serves, and the yield budget of the task poll
//! in progress. This is how code being polled finds its runtime without an argument being passed
//! around: the narrow interface the runtime offers the layers above (`with_shared`,
//! `try_current`). Which cancel-tree node that code sits in is the cancel layer's business
//! (`cancel::current`).

use std::cell::{Cell, RefCell};
use std::ptr;
use std::sync::Arc;
use std::time::Instant;

use crate::runtime::driver;
use crate::runtime::Shared;

thread_local! {
    /// Yields an operation may still skip in this task poll; see `must_yield`.
    static BUDGET: Cell<u32> = const { Cell::new(0) };
    /// The runtime's `yield_budget`, copied here when the thread enters the runtime.
    static BUDGET_REFILL: Cell<u32> = const { Cell::new(0) };
    static RUNTIME: RefCell<Option<Arc<Shared>>> = const { RefCell::new(None) };
    /// `RUNTIME`'s runtime as a plain pointer, for the hottest paths: a thread-local without a
    /// destructor is read directly, where one holding an `Arc` goes through its lazy
    /// registration each time (tens of instructions per operation, measured).
    static RUNTIME_PTR: Cell<*const Shared> = const { Cell::new(ptr::null()) };
}

/// The runtime this thread serves, if any.
pub(crate) fn try_current() -> Option<Arc<Shared>> {
    RUNTIME.with(|rt| rt.borrow().clone())
}

/// Runs `f` with the runtime this thread serves, read through the plain-pointer mirror (no
/// reference-count traffic: use this on hot paths instead of `try_current`).
#[inline]
pub(crate) fn with_shared<R>(f: impl FnOnce(Option<&Shared>) -> R) -> R {
    let ptr = RUNTIME_PTR.with(Cell::get);
    // SAFETY: the pointer is set by `enter_runtime` from the `Arc` it stores in `RUNTIME`, which
    // keeps the runtime alive until the guard restores the previous pointer and value together.
    f(unsafe { ptr.as_ref() })
}

/// The runtime clock's time now (a fresh reading, which also refreshes the per-poll cache);
/// `None` outside a runtime.
pub(crate) fn fresh_now() -> Option<Instant> {
    with_shared(|rt| rt.map(|rt| rt.driver.fresh_now()))
}

/// The runtime this thread serves, as an address for identity checks (null outside any).
#[inline]
pub(crate) fn current_runtime_addr() -> *const Shared {
    RUNTIME_PTR.with(Cell::get)
}

/// Called at the start of every task poll (through `cancel::current::begin_poll`): forgets the
/// cached time and refills the budget of skipped yields (see `Builder::yield_budget`).
#[inline]
pub(crate) fn begin_poll() {
    driver::forget_cached_now();
    BUDGET.with(|b| b.set(BUDGET_REFILL.with(Cell::get)));
}

/// Must an operation that completed without blocking yield now? Spends one unit of the task's
/// budget; says yes once it is spent (and outside a task poll, where there is no budget).
#[inline]
pub(crate) fn must_yield() -> bool {
    BUDGET.with(|b| match b.get() {
        0 => true,
        n => {
            b.set(n - 1);
            false
        }
    })
}

/// May an operation that completes now skip its schedule point (is there budget left in this
/// task poll)? Always `false` under trio's rule (budget 0) and outside a task poll. Does not
/// spend: `must_yield` does.
#[inline]
pub(crate) fn may_skip_yield() -> bool {
    BUDGET.with(Cell::get) > 0
}

/// Has this task poll spent its (nonzero) yield budget? An operation that would take or hold
/// something (a lock, a permit, a message) then takes its schedule point *before* acting, so
/// that nothing is held across the yield: yielding while holding a lock lets every other task
/// queue on it, and the hand-offs that follow cost a reschedule per acquisition (a lock convoy).
/// Always `false` with a budget of 0, where every ready operation yields after acting, as in trio.
#[inline]
pub(crate) fn budget_spent() -> bool {
    BUDGET.with(Cell::get) == 0 && BUDGET_REFILL.with(Cell::get) != 0
}

/// Runs `f` (one poll of some code) under trio's rule, whatever the runtime's yield budget: every
/// operation that completes without blocking yields once, after acting. The testing kit watches
/// code this way, so that what it finds (checkpoints, cancellation points) is the code's own and
/// not how a budget happened to spend them.
pub(crate) fn with_every_ready_operation_yielding<R>(f: impl FnOnce() -> R) -> R {
    struct Restore(u32, u32);
    impl Drop for Restore {
        fn drop(&mut self) {
            BUDGET.with(|b| b.set(self.0));
            BUDGET_REFILL.with(|b| b.set(self.1));
        }
    }
    let _restore = Restore(
        BUDGET.with(|b| b.replace(0)),
        BUDGET_REFILL.with(|b| b.replace(0)),
    );
    f()
}

/// Is this thread inside a runtime?
pub(crate) fn in_runtime() -> bool {
    RUNTIME.with(|rt| rt.borrow().is_some())
}

/// Makes this thread serve `rt` until the guard is dropped.
pub(crate) fn enter_runtime(rt: Arc<Shared>) -> RuntimeGuard {
    let refill = rt.yield_budget();
    let previous_budget = BUDGET_REFILL.with(|b| b.replace(refill));
    let previous_ptr = RUNTIME_PTR.with(|p| p.replace(Arc::as_ptr(&rt)));
    let previous = RUNTIME.with(|cell| cell.borrow_mut().replace(rt));
    RuntimeGuard {
        previous,
        previous_ptr,
        previous_budget,
    }
}

pub(crate) struct RuntimeGuard {
    previous: Option<Arc<Shared>>,
    previous_ptr: *const Shared,
    previous_budget: u32,
}

impl Drop for RuntimeGuard {
    fn drop(&mut self) {
        let previous = self.previous.take();
        RUNTIME_PTR.with(|p| p.set(self.previous_ptr));
        RUNTIME.with(|cell| *cell.borrow_mut() = previous);
        BUDGET_REFILL.with(|b| b.set(self.previous_budget));
    }
}
