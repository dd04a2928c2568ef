//! Introspection: who is running, the live task tree, and runtime counters.
//!
//! For debugging and for tools: which task is running ([`current_task`]), what the whole tree of
//! tasks and nurseries looks like right now ([`task_tree`], also printed by the deadlock
//! detector, and [`task_tree_snapshot`], the same as data), a few counters ([`statistics`]),
//! and hooks that a runtime calls on every task event and cancellation ([`Instrument`], feature
//! `instrument`). Name tasks with
//! [`Nursery::spawn_named`](crate::Nursery::spawn_named) so that they are easy to spot.
//!
//! ```
//! use trellis::lowlevel;
//! use trellis::testing::wait_all_tasks_blocked;
//!
//! trellis::run(async {
//!     trellis::nursery(|n| async move {
//!         n.spawn_named("worker", async {
//!             assert_eq!(lowlevel::current_task().name.as_deref(), Some("worker"));
//!             trellis::sleep_forever().await?;
//!             Ok(())
//!         })?;
//!         wait_all_tasks_blocked().await?;
//!         let tree = lowlevel::task_tree();
//!         assert!(tree.starts_with("task 0 \"main\""));
//!         assert!(tree.contains("\"worker\""));
//!         assert!(lowlevel::statistics().live_tasks >= 1);
//!         n.cancel();
//!         Ok::<_, trellis::Error>(())
//!     })
//!     .await
//!     .ok();
//! });
//! ```

pub use crate::runtime::instrument::{CancelEvent, Instrument, PollEnd, ScopeKind, TaskEvent};
pub use tree::{task_tree, task_tree_snapshot, EntryKind, LockWait, TaskTree, TreeEntry, Wait};

pub(crate) use tree::snapshot_of;

mod tree;

use crate::cancel::current;
use crate::cancel::node::Node;
use crate::cancel::outside_runtime;
use crate::runtime::context;

/// Identity of a task.
///
/// ```
/// use trellis::lowlevel;
///
/// trellis::run(async {
///     let main = trellis::lowlevel::current_task();
///     assert_eq!((main.id, main.name.as_deref(), main.parent), (0, Some("main"), None));
///     let child = trellis::nursery(|n| async move {
///         let handle = n.spawn(async { Ok::<_, trellis::Error>(lowlevel::current_task()) })?;
///         handle.await
///     })
///     .await
///     .unwrap();
///     assert_eq!(child.parent, Some(0)); // spawned in a nursery of the main task
/// });
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskInfo {
    /// Unique within the runtime; the `main` future is task 0.
    pub id: u64,
    /// The name given at spawn (`main` for the main future).
    pub name: Option<String>,
    /// The id of the task whose nursery this task belongs to (`None` for `main`).
    pub parent: Option<u64>,
}

/// The first task node at or above `node`, with the id of the task above that.
fn task_of(node: &Node) -> Option<TaskInfo> {
    let mut found: Option<TaskInfo> = None;
    let mut visit = |n: &Node| -> bool {
        let Some(info) = n.task_info() else {
            return true;
        };
        match &mut found {
            None => {
                found = Some(TaskInfo {
                    id: info.id,
                    name: n.task_name().map(|name| name.to_string()),
                    parent: None,
                });
                true
            }
            Some(task) => {
                task.parent = Some(info.id);
                false
            }
        }
    };
    if visit(node) {
        let mut next = node.parent();
        while let Some(p) = next {
            if !visit(p.node()) {
                break;
            }
            next = p.node().parent();
        }
    }
    found
}

/// The task running the calling code.
///
/// # Panics
/// Outside a runtime.
///
/// ```
/// use trellis::lowlevel;
///
/// trellis::run(async {
///     let id = trellis::nursery(|n| async move {
///         let handle = n.spawn(async { Ok::<_, trellis::Error>(lowlevel::current_task().id) })?;
///         let id = handle.id();
///         Ok::<_, trellis::Error>((handle.await?, id))
///     })
///     .await
///     .unwrap();
///     assert_eq!(id.0, id.1); // a task sees the id its handle reports
/// });
/// ```
pub fn current_task() -> TaskInfo {
    current::with_node(|node| match node {
        Some(n) => task_of(n.node()).expect("every node hangs below a task"),
        None => outside_runtime("lowlevel::current_task"),
    })
}

/// Counters of the running runtime.
///
/// ```
/// let rt = trellis::Runtime::builder().worker_threads(2).build().unwrap();
/// let stats = rt.block_on(async { trellis::lowlevel::statistics() });
/// assert_eq!(stats.workers, 2);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct RuntimeStatistics {
    /// Spawned tasks whose futures have not been dropped yet.
    pub live_tasks: usize,
    /// Entries in the timer store (sleeps and scope deadlines). A timeout's deadline is in the
    /// store from the first time its code waits, opens a nursery or has its deadline moved;
    /// before that it has no entry.
    pub timers: usize,
    /// Worker threads.
    pub workers: usize,
    /// How many times a worker that had run out of work was woken because work arrived (a task
    /// spawned or woken, the main future woken), since this `block_on` began: each is a thread
    /// wake-up, a few microseconds of system time. A task spawned on a worker where no other
    /// task waits runs there once the spawning task's poll ends, and wakes no one.
    ///
    /// ```
    /// use trellis::{Flavor, Runtime};
    ///
    /// let rt = Runtime::builder().flavor(Flavor::CurrentThread).build().unwrap();
    /// rt.block_on(async {
    ///     let before = trellis::lowlevel::statistics().worker_wakeups;
    ///     // Work that never runs out on the one worker wakes nobody.
    ///     trellis::checkpoint().await.unwrap();
    ///     assert_eq!(trellis::lowlevel::statistics().worker_wakeups, before);
    /// });
    /// ```
    pub worker_wakeups: u64,
}

/// Counters of the runtime the caller runs on.
///
/// # Panics
/// Outside a runtime.
///
/// ```
/// trellis::run(async {
///     let before = trellis::lowlevel::statistics().timers;
///     trellis::move_on_after(std::time::Duration::from_secs(60), async {
///         // A timeout's deadline has no entry in the timer store until its code waits...
///         assert_eq!(trellis::lowlevel::statistics().timers, before);
///         trellis::sleep(std::time::Duration::from_millis(1)).await?;
///         // ...and then keeps it while its scope is open.
///         assert_eq!(trellis::lowlevel::statistics().timers, before + 1);
///         Ok::<_, trellis::Cancelled>(())
///     })
///     .await;
///     assert_eq!(trellis::lowlevel::statistics().timers, before);
/// });
/// ```
pub fn statistics() -> RuntimeStatistics {
    let Some(rt) = context::try_current() else {
        outside_runtime("lowlevel::statistics");
    };
    RuntimeStatistics {
        live_tasks: rt.live_tasks(),
        timers: rt.driver.timers.len(),
        workers: rt.scheduler.num_workers(),
        worker_wakeups: rt.scheduler.worker_wakeups(),
    }
}
