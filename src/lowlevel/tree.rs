//! The live tree of tasks and nurseries, as text and as data (`task_tree`, the deadlock
//! report, and `task_tree_snapshot`).

use std::fmt::Write as _;

use super::TaskInfo;
use crate::cancel::current;
use crate::cancel::node::{self, Node, NodeKind};
use crate::cancel::outside_runtime;
use crate::runtime::context;

/// The live tree of tasks and nurseries, indented, for debugging; the text of
/// [`task_tree_snapshot`]:
///
/// ```text
/// task 0 "main"
///   nursery
///     task 3 "server"
///       waits in net::TcpListener::accept
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
    snapshot_here("lowlevel::task_tree").to_string()
}

/// The live tree of tasks and nurseries as data: what [`task_tree`] prints and the deadlock
/// detector reports, for tools and tests to inspect.
///
/// What each task waits in is known only where deadlock detection is on
/// ([`Builder::detect_deadlocks`](crate::runtime::Builder::detect_deadlocks), the default of
/// [`#[trellis::async_test]`](crate::async_test)), and there a nursery whose body is done shows
/// the wait `nursery join` (for its tasks to finish); elsewhere every [`TreeEntry::waits`] is
/// empty and the text is the plain tree.
///
/// # Panics
/// Outside a runtime.
///
/// ```
/// use trellis::lowlevel::{self, EntryKind};
/// use trellis::testing::wait_all_tasks_blocked;
///
/// trellis::run(async {
///     trellis::nursery(|n| async move {
///         n.spawn_named("worker", async {
///             trellis::sleep_forever().await?;
///             Ok(())
///         })?;
///         wait_all_tasks_blocked().await?;
///         let tree = lowlevel::task_tree_snapshot();
///         let main = &tree.roots[0];
///         assert!(matches!(&main.kind, EntryKind::Task(t) if t.id == 0));
///         let nursery = &main.children[0];
///         assert_eq!(nursery.kind, EntryKind::Nursery);
///         let EntryKind::Task(worker) = &nursery.children[0].kind else { unreachable!() };
///         assert_eq!((worker.name.as_deref(), worker.parent), (Some("worker"), Some(0)));
///         n.cancel();
///         Ok::<_, trellis::Error>(())
///     })
///     .await
///     .ok();
/// });
/// ```
pub fn task_tree_snapshot() -> TaskTree {
    snapshot_here("lowlevel::task_tree_snapshot")
}

/// The snapshot of the caller's runtime; `function` names the caller if there is none.
fn snapshot_here(function: &str) -> TaskTree {
    let Some(here) = current::current_node_ref().filter(|_| context::in_runtime()) else {
        outside_runtime(function);
    };
    let with_waits = context::with_shared(|rt| rt.is_some_and(|rt| rt.watchdog.enabled));
    snapshot_of(node::root_of(&here).node(), with_waits)
}

/// A snapshot of a runtime's tree of tasks and nurseries (see [`task_tree_snapshot`]). Its
/// `Display` is the text of [`task_tree`]: one line per task and nursery, indented by depth,
/// with what each waits in below it, and for lock waits which lock (numbered in the order the
/// report meets them) and which task holds it.
///
/// ```
/// use trellis::lowlevel::{EntryKind, TaskInfo, TaskTree, TreeEntry};
///
/// let mut main = TreeEntry::new(EntryKind::Task(TaskInfo {
///     id: 0,
///     name: Some("main".into()),
///     parent: None,
/// }));
/// main.children.push(TreeEntry::new(EntryKind::Nursery));
/// let tree = TaskTree { roots: vec![main] };
/// assert_eq!(tree.to_string(), "task 0 \"main\"\n  nursery\n");
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TaskTree {
    /// The tasks at the top: the main future (task 0), and tasks with no task above them
    /// (those a portal starts from another thread).
    pub roots: Vec<TreeEntry>,
}

/// One task or nursery of a [`TaskTree`], with what is below it.
///
/// ```
/// use trellis::lowlevel::{EntryKind, TreeEntry};
///
/// let nursery = TreeEntry::new(EntryKind::Nursery);
/// assert!(!nursery.cancelled && nursery.waits.is_empty() && nursery.children.is_empty());
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct TreeEntry {
    /// A task or a nursery.
    pub kind: EntryKind,
    /// A checkpoint here fails: its own cancellation, or one from above not held off by a
    /// shield.
    pub cancelled: bool,
    /// What code directly in this entry (or in a cancel scope inside it) waits in.
    pub waits: Vec<Wait>,
    /// The nurseries a task runs, the tasks a nursery holds, in the order they were made.
    pub children: Vec<TreeEntry>,
}

impl TreeEntry {
    /// An entry with no waits and no children, not cancelled.
    ///
    /// ```
    /// let entry = trellis::lowlevel::TreeEntry::new(trellis::lowlevel::EntryKind::Nursery);
    /// assert!(entry.children.is_empty());
    /// ```
    pub fn new(kind: EntryKind) -> Self {
        TreeEntry {
            kind,
            cancelled: false,
            waits: Vec::new(),
            children: Vec::new(),
        }
    }
}

/// What a [`TreeEntry`] is.
///
/// ```
/// use trellis::lowlevel::EntryKind;
///
/// let service = EntryKind::Service(trellis::lowlevel::TaskInfo { id: 3, name: None, parent: Some(0) });
/// assert!(service.task().is_some_and(|t| t.id == 3));
/// assert!(EntryKind::Nursery.task().is_none());
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EntryKind {
    /// A task.
    Task(TaskInfo),
    /// A service task ([`Nursery::spawn_service`](crate::Nursery::spawn_service)).
    Service(TaskInfo),
    /// A nursery.
    Nursery,
}

impl EntryKind {
    /// The task, for a task or service entry.
    ///
    /// ```
    /// assert!(trellis::lowlevel::EntryKind::Nursery.task().is_none());
    /// ```
    pub fn task(&self) -> Option<&TaskInfo> {
        match self {
            EntryKind::Task(info) | EntryKind::Service(info) => Some(info),
            EntryKind::Nursery => None,
        }
    }
}

/// A wait of a blocked operation, as the deadlock report names it.
///
/// ```
/// use trellis::lowlevel::Wait;
///
/// let wait = Wait { operation: "sync::Event::wait", lock: None };
/// assert_eq!(wait.operation, "sync::Event::wait");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Wait {
    /// The operation, as `module::Type::method` (`sync::Mutex::lock`, `channel::Receiver::recv`),
    /// or `nursery join` for a nursery whose body is done and waits for its tasks.
    pub operation: &'static str,
    /// For a lock wait, the lock and who holds it.
    pub lock: Option<LockWait>,
}

/// The lock a [`Wait`] waits for.
///
/// ```
/// use trellis::lowlevel::LockWait;
///
/// let wait = LockWait { lock: 0x1000, held_by: Some(2) };
/// assert_eq!(wait.held_by, Some(2));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LockWait {
    /// Identifies the lock among the waits of one snapshot (two waits for the same lock have
    /// the same value); not meaningful across snapshots.
    pub lock: usize,
    /// The id of the task that holds the lock when the snapshot is taken (`None`: held outside
    /// a task, or just released).
    pub held_by: Option<u64>,
}

/// The wait of a nursery whose body finished: its owner waits for the nursery's tasks.
const NURSERY_JOIN: &str = "nursery join";

/// Snapshots the tree below a runtime's root (for [`task_tree_snapshot`] and the deadlock
/// report). `with_waits`: the runtime detects deadlocks, so waits are labelled; then nursery
/// joins are shown too, and without it the tree shows no waits at all (its text stays the
/// plain tree).
pub(crate) fn snapshot_of(root: &Node, with_waits: bool) -> TaskTree {
    let mut roots = Vec::new();
    collect_below(root, None, with_waits, &mut roots, &mut Vec::new());
    TaskTree { roots }
}

/// Collects the entries for the nodes below `node`: tasks and nurseries become entries; the
/// scopes in between are looked through, their waits going to the entry above (`waits`).
fn collect_below(
    node: &Node,
    parent_task: Option<u64>,
    with_waits: bool,
    entries: &mut Vec<TreeEntry>,
    waits: &mut Vec<Wait>,
) {
    for child in node.children() {
        let child = child.node();
        let kind = match child.kind() {
            NodeKind::Task(info) => {
                let task = TaskInfo {
                    id: info.id,
                    name: child.task_name().map(|name| name.to_string()),
                    parent: parent_task,
                };
                if info.service {
                    EntryKind::Service(task)
                } else {
                    EntryKind::Task(task)
                }
            }
            NodeKind::Nursery => EntryKind::Nursery,
            NodeKind::Scope | NodeKind::Root => {
                waits.extend(wait_of(child));
                collect_below(child, parent_task, with_waits, entries, waits);
                continue;
            }
        };
        let below_task = kind.task().map(|t| t.id).or(parent_task);
        let mut entry = TreeEntry::new(kind);
        entry.cancelled = child.is_cancelled();
        entry.waits.extend(wait_of(child));
        if with_waits && entry.kind == EntryKind::Nursery && child.joining() {
            entry.waits.push(Wait {
                operation: NURSERY_JOIN,
                lock: None,
            });
        }
        collect_below(
            child,
            below_task,
            with_waits,
            &mut entry.children,
            &mut entry.waits,
        );
        entries.push(entry);
    }
}

fn wait_of(node: &Node) -> Option<Wait> {
    node.waiting().map(|label| Wait {
        operation: label.operation,
        lock: label.lock.map(|watch| LockWait {
            lock: watch.id(),
            held_by: watch.holder(),
        }),
    })
}

impl std::fmt::Display for TaskTree {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Names for the report: tasks by id; locks (id and holder) numbered in the order the
        // text below mentions them, a holder's "holds" line coming before its waits.
        let mut names = std::collections::HashMap::new();
        let mut holders: Vec<(usize, Option<u64>)> = Vec::new();
        self.visit(&mut |entry, _| {
            if let Some(task) = entry.kind.task() {
                names.insert(task.id, task.name.clone());
            }
            for lock in entry.waits.iter().filter_map(|w| w.lock) {
                if !holders.iter().any(|(id, _)| *id == lock.lock) {
                    holders.push((lock.lock, lock.held_by));
                }
            }
        });
        let held_by = |task: u64| holders.iter().filter(move |(_, h)| *h == Some(task));
        let mut locks: Vec<(usize, Option<u64>)> = Vec::new();
        self.visit(&mut |entry, _| {
            let held = entry.kind.task().into_iter().flat_map(|t| held_by(t.id));
            let waited = entry.waits.iter().filter_map(|w| w.lock);
            for lock in held.copied().chain(waited.map(|l| (l.lock, l.held_by))) {
                if !locks.iter().any(|(id, _)| *id == lock.0) {
                    locks.push(lock);
                }
            }
        });
        let number = |id: usize| {
            locks
                .iter()
                .position(|(l, _)| *l == id)
                .map_or(0, |p| p + 1)
        };
        let task_name = |id: u64| {
            let mut text = format!("task {id}");
            if let Some(Some(name)) = names.get(&id) {
                let _ = write!(text, " {name:?}");
            }
            text
        };
        let mut out = String::new();
        self.visit(&mut |entry, depth| {
            let indent = depth * 2;
            match entry.kind.task() {
                Some(task) => {
                    let _ = write!(out, "{:indent$}{}", "", task_name(task.id));
                    if matches!(entry.kind, EntryKind::Service(_)) {
                        out.push_str(" (service)");
                    }
                    if entry.cancelled {
                        out.push_str(" [cancelled]");
                    }
                    out.push('\n');
                    for (n, _) in locks
                        .iter()
                        .enumerate()
                        .filter(|(_, (_, h))| *h == Some(task.id))
                    {
                        let _ = writeln!(out, "{:indent$}  holds lock #{}", "", n + 1);
                    }
                }
                None => {
                    let _ = writeln!(out, "{:indent$}nursery", "");
                }
            }
            for wait in &entry.waits {
                let _ = write!(out, "{:indent$}  waits in {}", "", wait.operation);
                if let Some(lock) = wait.lock {
                    let _ = write!(out, " for lock #{}", number(lock.lock));
                    match lock.held_by {
                        Some(holder) => {
                            let _ = write!(out, ", held by {}", task_name(holder));
                        }
                        None => out.push_str(", held outside any task"),
                    }
                }
                out.push('\n');
            }
        });
        f.write_str(&out)
    }
}

impl TaskTree {
    /// Visits every entry depth first, in order, with its depth.
    fn visit(&self, f: &mut impl FnMut(&TreeEntry, usize)) {
        fn go(entries: &[TreeEntry], depth: usize, f: &mut impl FnMut(&TreeEntry, usize)) {
            for entry in entries {
                f(entry, depth);
                go(&entry.children, depth + 1, f);
            }
        }
        go(&self.roots, 0, f);
    }
}
