//! The way back for plain threads: a [`Portal`] runs work on a runtime from a thread that
//! [`run_blocking`](super::run_blocking) did not start (anyio's blocking portal).
//!
//! Work sent through a portal runs as a task of its own under the runtime's root, not inside any
//! nursery, and the calling thread blocks on its reply. A portal holds the runtime weakly, so it
//! never keeps a finished runtime alive; live portals are counted on the runtime, since a thread
//! holding one may still wake a task (the deadlock detector must know).

use std::any::Any;
use std::fmt;
use std::future::Future;
use std::sync::atomic::Ordering;
use std::sync::mpsc::sync_channel;
use std::sync::{Arc, Weak};

use super::forward::{receive, Forward};
use super::FromThreadError;
use crate::cancel::node::{self, PlainNode};
use crate::cancel::{current, outside_runtime};
use crate::error::Cancelled;
use crate::runtime::{context, Shared};
use crate::task::{spawn_child, Report, SpawnSpec};

/// A handle on a runtime that plain threads use to run work on it (anyio's blocking portal,
/// trio's `TrioToken`). Take it inside the runtime with [`Portal::current`]; it is cheap to
/// clone and does not keep the runtime alive.
///
/// Work sent through a portal runs as a task of the runtime itself, not of any nursery: it is
/// cancelled when the runtime shuts down, and nothing else cancels it.
///
/// ```
/// trellis::run(async {
///     let portal = trellis::thread::Portal::current();
///     let answer = trellis::thread::run_blocking(move || {
///         std::thread::spawn(move || portal.run_sync(|| 6 * 7)).join().unwrap()
///     })
///     .await?;
///     assert_eq!(answer, Ok(42));
///     Ok::<_, trellis::Cancelled>(())
/// })
/// .unwrap();
/// ```
pub struct Portal {
    rt: Weak<Shared>,
    /// The root of the runtime's cancel tree: portal tasks are its children.
    root: Weak<PlainNode>,
}

/// Live portals are counted on their runtime: a plain thread holding one may wake a task, which
/// the deadlock detector must know.
impl Clone for Portal {
    fn clone(&self) -> Self {
        if let Some(rt) = self.rt.upgrade() {
            rt.watchdog.portals.fetch_add(1, Ordering::SeqCst);
        }
        Portal {
            rt: self.rt.clone(),
            root: self.root.clone(),
        }
    }
}

impl Drop for Portal {
    fn drop(&mut self) {
        if let Some(rt) = self.rt.upgrade() {
            rt.watchdog.portals.fetch_sub(1, Ordering::SeqCst);
        }
    }
}

impl fmt::Debug for Portal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Portal")
            .field("running", &(self.rt.strong_count() > 0))
            .finish()
    }
}

/// Failures of portal tasks go nowhere: the output (or panic) is sent to the calling thread.
struct Detached {
    rt: Arc<Shared>,
}

impl Report<Cancelled> for Detached {
    fn failed(&self, _error: Cancelled) {}
    fn panicked(&self, _payload: Box<dyn Any + Send>) {}
    fn runtime(&self) -> &Arc<Shared> {
        &self.rt
    }
}

impl Portal {
    /// The portal of the runtime the caller runs on.
    ///
    /// # Panics
    /// Outside a runtime.
    ///
    /// ```
    /// trellis::run(async {
    ///     let portal = trellis::thread::Portal::current();
    ///     // A thread of our own, not one from `run_blocking`.
    ///     let worker = std::thread::spawn(move || portal.run(|| async { trellis::now() }).is_ok());
    ///     let ok = trellis::thread::run_blocking(move || worker.join().unwrap()).await?;
    ///     assert!(ok);
    ///     Ok::<_, trellis::Cancelled>(())
    /// })
    /// .unwrap();
    /// ```
    pub fn current() -> Portal {
        match context::try_current().zip(current::current_node_ref()) {
            Some((rt, here)) => {
                rt.watchdog.portals.fetch_add(1, Ordering::SeqCst);
                Portal {
                    rt: Arc::downgrade(&rt),
                    root: Arc::downgrade(
                        &node::root_of(&here)
                            .plain()
                            .expect("a tree's root is a plain node"),
                    ),
                }
            }
            None => outside_runtime("thread::Portal::current"),
        }
    }

    /// Runs `f()` to completion as a task of the runtime and returns its output, blocking this
    /// thread meanwhile. A panic in the future resumes here. A future that produced its value
    /// and then panics in its destructor still delivers the value; that panic is reported by the
    /// panic hook, as a detached thread's would be.
    ///
    /// # Errors
    /// [`FromThreadError::RunFinished`] if the runtime has finished or shuts down before the
    /// work completes.
    ///
    /// # Panics
    /// On a thread of the runtime itself (blocking it could deadlock); use `.await` there.
    ///
    /// ```
    /// use std::time::Duration;
    /// use trellis::thread::{FromThreadError, Portal};
    ///
    /// let portal = trellis::run(async {
    ///     let portal = Portal::current();
    ///     let copy = portal.clone();
    ///     let slept = trellis::thread::run_blocking(move || {
    ///         std::thread::spawn(move || {
    ///             copy.run(|| async { trellis::sleep(Duration::from_millis(1)).await.is_ok() })
    ///         })
    ///         .join()
    ///         .unwrap()
    ///     })
    ///     .await
    ///     .unwrap();
    ///     assert_eq!(slept, Ok(true));
    ///     portal
    /// });
    /// // After the runtime has finished, a portal runs nothing.
    /// assert_eq!(portal.run(|| async { 1 }), Err(FromThreadError::RunFinished));
    /// ```
    pub fn run<F, Fut, T>(&self, f: F) -> Result<T, FromThreadError>
    where
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = T> + Send + 'static,
        T: Send + 'static,
    {
        if context::in_runtime() {
            panic!(
                "trellis::thread::Portal::run blocks the calling thread; call it from a plain \
                 thread, not from inside a trellis runtime (await the work there instead)"
            );
        }
        let rt = self.rt.upgrade().ok_or(FromThreadError::RunFinished)?;
        let root = self.root.upgrade().ok_or(FromThreadError::RunFinished)?;
        let (tx, rx) = sync_channel(1);
        let forward = Forward::new(f, tx);
        let task = async move {
            forward.await;
            Ok::<(), Cancelled>(())
        };
        let spec = SpawnSpec {
            rt: &rt,
            parent: root.into(),
            name: Some("portal".into()),
            service: false,
            reporter: Arc::new(Detached { rt: rt.clone() }),
            on_linked: None,
            local: false,
        };
        // SAFETY: the future and its output are `Send`.
        let spawned = unsafe { spawn_child(spec, task) };
        drop(rt);
        if spawned.is_err() {
            return Err(FromThreadError::RunFinished);
        }
        receive(rx, FromThreadError::RunFinished)
    }

    /// Like [`run`](Portal::run) for a plain closure.
    ///
    /// ```
    /// use trellis::thread::Portal;
    ///
    /// trellis::run(async {
    ///     let portal = Portal::current();
    ///     let (tx, rx) = trellis::channel::unbounded();
    ///     // A thread of its own hands a value to the runtime with a plain closure.
    ///     let sent = trellis::thread::run_blocking(move || {
    ///         std::thread::spawn(move || portal.run_sync(move || tx.try_send("from a thread")))
    ///             .join()
    ///             .unwrap()
    ///     })
    ///     .await?;
    ///     assert!(matches!(sent, Ok(Ok(()))));
    ///     assert_eq!(rx.recv().await.unwrap(), "from a thread");
    ///     Ok::<_, trellis::Cancelled>(())
    /// })
    /// .unwrap();
    /// ```
    ///
    /// # Errors
    /// As [`run`](Portal::run).
    pub fn run_sync<F, T>(&self, f: F) -> Result<T, FromThreadError>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        self.run(|| async move { f() })
    }
}
