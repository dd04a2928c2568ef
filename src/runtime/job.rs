//! A scheduled task as the run queues hold it, whatever the task's metadata type.
//!
//! `async-task` types a task's [`Runnable`] by the metadata kept in its allocation. A task keeps
//! its cancel-tree node and its future there (one allocation per task, see `task`), so every
//! kind of task has a metadata type of its own, and the queues cannot hold `Runnable`s of one
//! type. A [`Job`] is a `Runnable` with that type erased: the task's pointer and the two
//! functions, made for its metadata type, that run it and drop it.

use std::marker::PhantomData;
use std::ptr::NonNull;

use async_task::Runnable;

/// An owned [`Runnable`] of any metadata type: run it, or drop it (which drops the task's
/// future, as dropping the `Runnable` does).
pub(crate) struct Job {
    task: NonNull<()>,
    vtable: &'static JobVTable,
}

struct JobVTable {
    run: unsafe fn(NonNull<()>) -> bool,
    drop: unsafe fn(NonNull<()>),
}

/// The vtable of the jobs whose metadata is `M`.
struct VTableOf<M>(PhantomData<M>);

impl<M: Send + Sync + 'static> VTableOf<M> {
    const VTABLE: JobVTable = JobVTable {
        run: run_task::<M>,
        drop: drop_task::<M>,
    };
}

/// # Safety
/// `task` must come from `Runnable::<M>::into_raw`, and be used at most once.
unsafe fn run_task<M>(task: NonNull<()>) -> bool {
    // SAFETY: by the function's contract the pointer is an owned `Runnable<M>`.
    unsafe { Runnable::<M>::from_raw(task) }.run()
}

/// # Safety
/// As for [`run_task`].
unsafe fn drop_task<M>(task: NonNull<()>) {
    // SAFETY: as in `run_task`.
    drop(unsafe { Runnable::<M>::from_raw(task) });
}

impl Job {
    /// Erases the metadata type of `runnable`.
    #[inline]
    pub(crate) fn new<M: Send + Sync + 'static>(runnable: Runnable<M>) -> Job {
        Job {
            task: runnable.into_raw(),
            vtable: &VTableOf::<M>::VTABLE,
        }
    }

    /// Runs the task: polls its future once (see `Runnable::run`).
    #[inline]
    pub(crate) fn run(self) -> bool {
        let job = std::mem::ManuallyDrop::new(self);
        // SAFETY: `job.task` came from `into_raw` of a `Runnable` whose metadata type the vtable
        // was made for, and `job` is consumed here, so it is used once.
        unsafe { (job.vtable.run)(job.task) }
    }
}

impl Drop for Job {
    fn drop(&mut self) {
        // SAFETY: as in `run`; a job is either run or dropped, not both.
        unsafe { (self.vtable.drop)(self.task) }
    }
}

// SAFETY: a `Runnable<M>` is `Send` and `Sync` when `M` is, which `Job::new` requires; a job is
// nothing more than one.
unsafe impl Send for Job {}
// SAFETY: as above; a shared `&Job` gives no access to the task.
unsafe impl Sync for Job {}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::{Arc, Mutex};

    #[test]
    fn a_job_runs_its_task_and_a_dropped_job_drops_its_future() {
        let polls = Arc::new(AtomicUsize::new(0));
        let queue: Arc<Mutex<Vec<Job>>> = Arc::default();
        let schedule = {
            let queue = queue.clone();
            move |runnable: Runnable<u32>| queue.lock().unwrap().push(Job::new(runnable))
        };
        let counted = polls.clone();
        let (runnable, task) = async_task::Builder::new().metadata(7u32).spawn(
            move |meta: &u32| {
                let meta = *meta;
                async move {
                    counted.fetch_add(1, Ordering::SeqCst);
                    meta
                }
            },
            schedule,
        );
        runnable.schedule();
        let job = queue.lock().unwrap().pop().expect("scheduled");
        assert!(!job.run());
        assert_eq!(polls.load(Ordering::SeqCst), 1);
        assert!(task.is_finished());

        // A job dropped unrun drops its future: the task ends without being polled.
        let (runnable, task) = async_task::spawn(async { 1 }, |_| {});
        drop(Job::new(runnable));
        assert!(task.is_finished());
    }
}
