//! What a blocked operation waits for, as the deadlock report shows it.
//!
//! Kept only where deadlock detection is on (`Builder::detect_deadlocks`): a registering wait
//! leaves a [`WaitLabel`] on its cancel-tree node, and a lock wait adds the lock's
//! [`LockWatch`], through which the report reads who holds the lock *when the report is made*
//! (the holder may have changed since the waiter parked: a release hands the lock to the first
//! waiter, which need not be this one).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// The operation a waiter waits in, and the lock it waits for if it is a lock.
#[derive(Clone)]
pub(crate) struct WaitLabel {
    pub(crate) operation: &'static str,
    pub(crate) lock: Option<Arc<LockWatch>>,
}

/// A lock's identity and current holder, shared between the lock and the report. A lock
/// creates it when its first waiter parks with detection on, and keeps it current from then on.
pub(crate) struct LockWatch {
    /// The holder's task id; `NO_HOLDER` when free or held outside a task.
    holder: AtomicU64,
}

const NO_HOLDER: u64 = u64::MAX;

impl LockWatch {
    pub(crate) fn new(holder: Option<u64>) -> Self {
        LockWatch {
            holder: AtomicU64::new(holder.unwrap_or(NO_HOLDER)),
        }
    }

    /// The lock's identity: the watch's own address, which stays put while a waiter holds the
    /// watch (the lock's address would not: a lock that nobody borrows may be moved).
    pub(crate) fn id(self: &Arc<Self>) -> usize {
        Arc::as_ptr(self) as usize
    }

    pub(crate) fn holder(&self) -> Option<u64> {
        Some(self.holder.load(Ordering::Relaxed)).filter(|&h| h != NO_HOLDER)
    }

    pub(crate) fn set_holder(&self, holder: Option<u64>) {
        self.holder
            .store(holder.unwrap_or(NO_HOLDER), Ordering::Relaxed);
    }
}
