//! Tasks as [`tracing`] spans (feature `tracing`): [`TaskSpans`] is an
//! [`Instrument`] that gives each task a span, so that logs and
//! span-aware tools follow the task tree.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};

use tracing::{Level, Span};

use crate::runtime::instrument::{Instrument, PollEnd, TaskEvent};
use crate::state_lock::lock_blocking;

/// Gives each task a `tracing` span named `task`, at level `TRACE`, with the fields `task.id`
/// and (when the task was spawned with a name) `task.name`. The span of the task it was spawned
/// from is its parent (for a task spawned by the main future, the span current where it was
/// spawned); it is entered for each poll of the task, so events the task logs fall inside it,
/// and closed when the task exits.
///
/// ```
/// use std::sync::Arc;
/// use trellis::compat::tracing::TaskSpans;
///
/// let rt = trellis::Runtime::builder()
///     .instrument(Arc::new(TaskSpans::new()))
///     .build()
///     .unwrap();
/// rt.block_on(async {
///     trellis::nursery(|n| async move {
///         n.spawn_named("worker", async {
///             tracing::info!("inside the span of task \"worker\"");
///             Ok(())
///         })?;
///         Ok::<_, trellis::Error>(())
///     })
///     .await
///     .unwrap();
/// });
/// ```
#[derive(Debug, Default)]
pub struct TaskSpans {
    /// The span of each live task, by task id.
    spans: Mutex<HashMap<u64, Span>>,
}

impl TaskSpans {
    /// An instrument with no task yet.
    ///
    /// ```
    /// let spans = trellis::compat::tracing::TaskSpans::new();
    /// # let _ = spans;
    /// ```
    pub fn new() -> TaskSpans {
        TaskSpans::default()
    }

    fn spans(&self) -> MutexGuard<'_, HashMap<u64, Span>> {
        lock_blocking(&self.spans)
    }
}

impl Instrument for TaskSpans {
    fn task_spawned(&self, task: TaskEvent<'_>, parent: Option<u64>) {
        let mut spans = self.spans();
        let span = match parent.and_then(|p| spans.get(&p)) {
            Some(parent) => tracing::span!(
                parent: parent,
                Level::TRACE,
                "task",
                task.id = task.id,
                task.name = task.name
            ),
            None => tracing::span!(
                Level::TRACE,
                "task",
                task.id = task.id,
                task.name = task.name
            ),
        };
        spans.insert(task.id, span);
    }

    fn before_task_poll(&self, task: TaskEvent<'_>) {
        if let Some(span) = self.spans().get(&task.id) {
            span.with_subscriber(|(id, dispatch)| dispatch.enter(id));
        }
    }

    fn after_task_poll(&self, task: TaskEvent<'_>, _end: PollEnd) {
        if let Some(span) = self.spans().get(&task.id) {
            span.with_subscriber(|(id, dispatch)| dispatch.exit(id));
        }
    }

    fn task_exited(&self, task: TaskEvent<'_>) {
        // Dropped outside the lock: closing a span calls into the subscriber.
        let span = self.spans().remove(&task.id);
        drop(span);
    }
}
