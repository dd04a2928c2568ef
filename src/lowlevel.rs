//! Introspection: who is running, the live task tree, and runtime counters.

use std::fmt::Write as _;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use crate::cancel::node::{Node, NodeKind, TreeNode};
use crate::cancel::outside_runtime;
use crate::runtime::{context, Shared};

/// Identity of a task.
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
pub fn current_task() -> TaskInfo {
    context::with_node(|node| match node {
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
pub fn task_tree() -> String {
    let Some(rt) = context::try_current() else {
        outside_runtime("lowlevel::task_tree");
    };
    tree_of(&rt)
}

/// [`task_tree`] of a given runtime (for the deadlock report).
pub(crate) fn tree_of(rt: &Shared) -> String {
    let mut out = String::new();
    let mut stack: Vec<(Arc<dyn TreeNode>, usize)> = rt
        .root
        .children()
        .into_iter()
        .rev()
        .map(|c| (c, 0))
        .collect();
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
        let depth = if shown { depth + 1 } else { depth };
        for child in n.node().children().into_iter().rev() {
            stack.push((child, depth));
        }
    }
    out
}

/// Counters of the running runtime.
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
