//! Running blocking code on other threads, and the way back.
//!
//! For code that would block the runtime's threads: a blocking library call, heavy computation,
//! a C library with no async interface. Hand it to [`run_blocking`] and await the result; the
//! other tasks run meanwhile.
//!
//! ```
//! trellis::run(async {
//!     let sum = trellis::thread::run_blocking(|| (1..=1_000u64).sum::<u64>()).await?;
//!     assert_eq!(sum, 500_500);
//!     Ok::<_, trellis::Cancelled>(())
//! })
//! .unwrap();
//! ```
//!
//! - [`run_blocking`] runs a closure on a pool thread and waits for it without blocking the
//!   runtime (trio's `to_thread.run_sync`, tokio's `spawn_blocking`). At most 40 such threads run
//!   at once by default, as with trio's default thread limiter.
//! - [`from_thread`] lets code on such a thread run async code (or a closure) back on the
//!   runtime and get the result: trio's `from_thread.run` / `run_sync`. On a thread started by
//!   `run_blocking`, the work runs inside the task that is waiting for the thread, under that
//!   task's cancel scopes (as trio does since 0.23). From any other plain thread, use a
//!   [`Portal`] taken from inside the runtime (anyio's blocking portal).
//!
//! Cancellation (principle 4): a thread cannot be interrupted. By default a cancelled
//! `run_blocking` keeps waiting until the thread finishes and returns its result, so no work is
//! lost; the cancellation is then seen at the caller's next checkpoint (trio's default,
//! `abandon_on_cancel=False`). With [`abandon_on_cancel`](RunBlocking::abandon_on_cancel) it
//! returns `Cancelled` at once and the thread's eventual result is dropped; the thread keeps its
//! slot under the limit until it really finishes. Code on the thread can poll for cancellation
//! with [`check_cancelled`].
//!
//! The code is split by concept: `offload` (run_blocking, its builder and the thread limit),
//! `call` (what a running call shares between its thread and the waiting task), `forward`
//! (work a thread hands to the runtime, and the reply), `from_thread`, `portal`, and `pool`
//! (the threads themselves).

mod call;
mod forward;
pub mod from_thread;
mod offload;
mod pool;
mod portal;

pub use call::check_cancelled;
pub use forward::FromThreadError;
pub(crate) use offload::{acquire_default_token, execute_detached, start_with_token};
pub use offload::{default_limiter, run_blocking, RunBlocking, DEFAULT_LIMIT};
pub use portal::Portal;
