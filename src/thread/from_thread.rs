//! Runs async work or closures back on the runtime from other threads.
//!
//! ```
//! use trellis::thread::{from_thread, run_blocking};
//!
//! trellis::run(async {
//!     // A blocking loop that reports progress to async code between its steps.
//!     let (tx, rx) = trellis::channel::unbounded::<u32>();
//!     let steps = run_blocking(move || {
//!         for step in 1..=3 {
//!             let tx = tx.clone();
//!             from_thread::run(move || async move { tx.send(step).await })
//!                 .expect("the task is waiting for this thread")
//!                 .expect("the receiver is still there");
//!         }
//!         3
//!     })
//!     .await?;
//!     assert_eq!(steps, 3);
//!     let got: Vec<u32> = std::iter::from_fn(|| rx.try_recv().ok()).collect();
//!     assert_eq!(got, [1, 2, 3]);
//!     Ok::<_, trellis::Cancelled>(())
//! })
//! .unwrap();
//! ```

// Only on a thread that `run_blocking` started: the work runs inside the task that waits for that
// thread, under its cancel scopes, while the thread blocks (see `call` for how requests reach
// the task). Any other thread uses a `Portal`.

use std::future::Future;
use std::sync::mpsc::sync_channel;

use super::call::current_call;
use super::forward::{receive, Forward};
use super::FromThreadError;

/// From a thread started by [`run_blocking`](super::run_blocking): runs `f()` to completion
/// inside the task that waits for this thread (under its cancel scopes) and returns the output.
/// Blocks this thread meanwhile. A panic in the future resumes here.
///
/// ```
/// use std::time::Duration;
///
/// trellis::run(async {
///     let got = trellis::thread::run_blocking(|| {
///         trellis::thread::from_thread::run(|| async {
///             trellis::sleep(Duration::from_millis(1)).await?;
///             Ok::<_, trellis::Cancelled>("slept on the runtime")
///         })
///     })
///     .await?;
///     assert_eq!(got, Ok(Ok("slept on the runtime")));
///     Ok::<_, trellis::Cancelled>(())
/// })
/// .unwrap();
/// ```
///
/// # Errors
/// [`FromThreadError::NotBlockingThread`] on another thread;
/// [`FromThreadError::Abandoned`] if the task no longer waits for this thread.
pub fn run<F, Fut, T>(f: F) -> Result<T, FromThreadError>
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: Future<Output = T> + Send + 'static,
    T: Send + 'static,
{
    let call = current_call().ok_or(FromThreadError::NotBlockingThread)?;
    let (tx, rx) = sync_channel(1);
    call.submit(Box::pin(Forward::new(f, tx)))?;
    drop(call);
    receive(rx, FromThreadError::Abandoned)
}

/// Like [`run`] for a plain closure: `f` runs on the runtime, inside the waiting task.
///
/// # Errors
/// As [`run`].
///
/// ```
/// use trellis::thread::{from_thread, run_blocking};
///
/// trellis::run(async {
///     let id = || trellis::lowlevel::current_task().id;
///     let on_runtime = run_blocking(move || from_thread::run_sync(id)).await?;
///     // The closure ran inside the task that waits for the thread: here, main.
///     assert_eq!(on_runtime, Ok(0));
///     Ok::<_, trellis::Cancelled>(())
/// })
/// .unwrap();
/// ```
pub fn run_sync<F, T>(f: F) -> Result<T, FromThreadError>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    run(|| async move { f() })
}
