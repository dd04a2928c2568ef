//! Introspection: who is running, the live task tree, and runtime counters.
//!
//! For debugging and for tools: which task is running ([`current_task`]), what the whole tree of
//! tasks and nurseries looks like right now ([`task_tree`], also printed by the deadlock
//! detector), a few counters ([`statistics`]), and hooks that a runtime calls on every task
//! event ([`Instrument`], feature `instrument`). Name tasks with
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

pub use crate::runtime::instrument::{Instrument, PollEnd, TaskEvent};

use std::fmt::Write as _;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use crate::cancel::current;
use crate::cancel::node::{self, Node, NodeKind, TreeNode};
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
                    name: info.name.as_deref().map(str::to_owned),
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

/// The live tree of tasks and nurseries, indented, for debugging:
///
/// ```text
/// task 0 "main"
///   nursery
///     task 3 "server"
///     task 4
/// ```
///
/// # Panics
/// Outside a runtime.
///
/// ```
/// trellis::run(async {
///     trellis::nursery(|n| async move {
///         n.spawn_service(async {
///             // Print the tree from anywhere, e.g. when something seems stuck.
///             println!("{}", trellis::lowlevel::task_tree());
///             Ok(())
///         })?;
///         Ok::<_, trellis::Error>(())
///     })
///     .await
///     .unwrap();
/// });
/// ```
pub fn task_tree() -> String {
    let Some(here) = current::current_node_arc().filter(|_| context::in_runtime()) else {
        outside_runtime("lowlevel::task_tree");
    };
    tree_of(node::root_of(&here).node())
}

/// [`task_tree`] below a given root (for the deadlock report).
pub(crate) fn tree_of(root: &Node) -> String {
    let mut out = String::new();
    let mut stack: Vec<(Arc<dyn TreeNode>, usize)> =
        root.children().into_iter().rev().map(|c| (c, 0)).collect();
    while let Some((n, depth)) = stack.pop() {
        let node = n.node();
        let shown = match node.kind() {
            NodeKind::Task(info) => {
                let _ = write!(out, "{:indent$}task {}", "", info.id, indent = depth * 2);
                if let Some(name) = &info.name {
                    let _ = write!(out, " {name:?}");
                }
                if info.service {
                    out.push_str(" (service)");
                }
                if node.is_cancelled() {
                    out.push_str(" [cancelled]");
                }
                out.push('\n');
                true
            }
            NodeKind::Nursery => {
                let _ = writeln!(out, "{:indent$}nursery", "", indent = depth * 2);
                true
            }
            NodeKind::Scope | NodeKind::Root(_) => false,
        };
        if let Some(operation) = node.waiting_in() {
            let indent = if shown { depth + 1 } else { depth } * 2;
            let _ = writeln!(out, "{:indent$}waits in {operation}", "");
        }
        let depth = if shown { depth + 1 } else { depth };
        for child in n.node().children().into_iter().rev() {
            stack.push((child, depth));
        }
    }
    out
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
    /// Entries in the timer store (sleeps and scope deadlines).
    pub timers: usize,
    /// Worker threads.
    pub workers: usize,
}

/// Counters of the runtime the caller runs on.
///
/// # Panics
/// Outside a runtime.
///
/// ```
/// trellis::run(async {
///     let before = trellis::lowlevel::statistics().timers;
///     // A deadline is an entry in the timer store while its scope is open.
///     trellis::move_on_after(std::time::Duration::from_secs(60), async {
///         assert!(trellis::lowlevel::statistics().timers > before);
///         Ok::<_, trellis::Cancelled>(())
///     })
///     .await;
/// });
/// ```
pub fn statistics() -> RuntimeStatistics {
    let Some(rt) = context::try_current() else {
        outside_runtime("lowlevel::statistics");
    };
    RuntimeStatistics {
        live_tasks: rt.live_tasks.load(Ordering::Relaxed),
        timers: rt.driver.timers.len(),
        workers: rt.scheduler.num_workers(),
    }
}
