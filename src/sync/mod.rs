//! Synchronisation primitives for tasks: trio's set, in Rust idiom.
//!
//! | type | what for |
//! |------|----------|
//! | [`Event`] | wait until something happened (set once, never cleared) |
//! | [`Mutex`] | exclusive access to data, held across `.await` |
//! | [`RwLock`] | many readers or one writer |
//! | [`Semaphore`] | a counter of permits, optionally bounded |
//! | [`CapacityLimiter`] | at most N borrowers at once, one token each |
//! | [`Condition`] | a lock plus "wait until notified" |
//! | [`Barrier`] | N tasks wait for each other |
//! | [`OnceCell`] | a value initialised once, by the first task that asks |
//!
//! The common case: tasks share state behind a [`Mutex`] and tell each other that something
//! happened with an [`Event`].
//!
//! ```
//! use std::sync::Arc;
//! use trellis::sync::{Event, Mutex};
//!
//! trellis::run(async {
//!     let log = Arc::new(Mutex::new(Vec::new()));
//!     let ready = Arc::new(Event::new());
//!     trellis::nursery(|n| {
//!         let (log, ready) = (log.clone(), ready.clone());
//!         async move {
//!             let (log2, ready2) = (log.clone(), ready.clone());
//!             n.spawn(async move {
//!                 ready2.wait().await?; // runs only after the event is set
//!                 log2.lock().await?.push("consumer");
//!                 Ok(())
//!             })?;
//!             log.lock().await?.push("producer");
//!             ready.set();
//!             Ok::<_, trellis::Error>(())
//!         }
//!     })
//!     .await
//!     .unwrap();
//!     assert_eq!(*log.lock().await.unwrap(), ["producer", "consumer"]);
//! });
//! ```
//!
//! Every primitive follows the same rules, implemented once in the parking lot underneath them
//! all (`parking_lot.rs`):
//!
//! - **Every async method is a checkpoint** (principle 3): it fails with
//!   [`Cancelled`](crate::Cancelled) if the enclosing scope is cancelled, and yields to the
//!   scheduler even when it did not need to wait.
//! - **Fair**: waiters are served in the order they started waiting; a resource released while
//!   tasks wait is handed to the first of them, never taken by a newcomer.
//! - **Cancel-safe** (principle 4): a cancelled or dropped wait holds nothing and keeps no place
//!   in line; a lock, permit or token handed to a waiter that is dropped before it runs passes
//!   to the next waiter. A waiter that is handed the resource and then sees its scope cancelled
//!   before it runs still gets the resource (the hand-off completed the operation, as in trio);
//!   the cancellation shows at its next checkpoint.
//!
//! The state of each primitive is a plain `std::sync::Mutex`-protected structure (no hand-rolled
//! atomics), held only for a few instructions and never across an `.await`.

mod barrier;
mod capacity_limiter;
mod condition;
mod event;
mod mutex;
mod once_cell;
pub(crate) mod parking_lot;
mod rwlock;
mod semaphore;

pub use barrier::{Barrier, BarrierStatistics, BarrierWaitResult};
pub use capacity_limiter::{Borrower, CapacityLimiter, CapacityLimiterStatistics, LimiterToken};
pub use condition::{Condition, ConditionGuard, ConditionStatistics, WaitCancelled};
pub use event::{Event, EventStatistics};
pub use mutex::{LockStatistics, Mutex, MutexGuard, OwnedMutexGuard};
pub use once_cell::{OnceCell, SetError};
pub use rwlock::{RwLock, RwLockReadGuard, RwLockStatistics, RwLockWriteGuard};
pub use semaphore::{OwnedSemaphorePermit, Semaphore, SemaphorePermit, SemaphoreStatistics};
