//! What a task costs in memory. How many heap allocations a spawn costs: one, the task's own
//! (its `async-task` allocation holds the header, the cancel-tree node, the future and the
//! result slot together). And how big the futures are that a parked task keeps in it.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::time::Duration;

use trellis::{Flavor, Nursery, Runtime};

/// Counts the allocations made on the thread that asked for counting, passes everything to
/// the system allocator.
struct Counting;

thread_local! {
    static COUNTING: Cell<bool> = const { Cell::new(false) };
    static ALLOCATIONS: Cell<usize> = const { Cell::new(0) };
    static BYTES: Cell<usize> = const { Cell::new(0) };
}

// SAFETY: every call is passed to the system allocator unchanged; the counters are
// thread-local cells that allocate nothing.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // `try_with`: a thread being torn down has no thread-locals left, and is not counted.
        let _ = COUNTING.try_with(|on| {
            if on.get() {
                ALLOCATIONS.with(|n| n.set(n.get() + 1));
                BYTES.with(|n| n.set(n.get() + layout.size()));
            }
        });
        // SAFETY: the caller's contract, passed on.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: the caller's contract, passed on.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// Counts this thread's allocations from now on, from zero.
fn start_counting() {
    ALLOCATIONS.with(|n| n.set(0));
    BYTES.with(|n| n.set(0));
    COUNTING.with(|on| on.set(true));
}

/// Stops counting; the allocations counted since [`start_counting`].
fn stop_counting() -> usize {
    COUNTING.with(|on| on.set(false));
    ALLOCATIONS.with(Cell::get)
}

/// Allocations made on this thread while `f` runs.
fn allocations_in(f: impl FnOnce()) -> usize {
    start_counting();
    f();
    stop_counting()
}

/// Spawning is one allocation per task: 1 000 spawns into a nursery whose child list and run
/// queue already have room make exactly 1 000 allocations (it was 2 000 when the cancel-tree
/// node and the future had an allocation of their own, beside `async-task`'s), of 136 bytes
/// each (152 where `async-task`'s `std` feature is on).
#[test]
fn a_spawn_is_one_allocation() {
    const TASKS: usize = 1_000;
    let rt = Runtime::builder()
        .flavor(Flavor::CurrentThread)
        .build()
        .unwrap();
    let counted = rt
        .block_on(trellis::nursery(|n: Nursery<trellis::Error>| async move {
            // Room for the measured round: the child list and the run queue grow to hold
            // `TASKS` tasks, which then finish.
            for _ in 0..TASKS {
                n.spawn(async { Ok(()) })?;
            }
            trellis::testing::wait_all_tasks_blocked().await?;
            // Spawned without a checkpoint in between: none of them runs while counted.
            let counted = allocations_in(|| {
                for _ in 0..TASKS {
                    let handle = n.spawn(async { Ok(()) }).unwrap();
                    drop(handle);
                }
            });
            Ok((counted, BYTES.with(Cell::get)))
        }))
        .unwrap();
    let (allocations, bytes) = counted;
    assert_eq!(allocations, TASKS);
    // What `async-task` adds in this build. Its `std` feature, which some crate in the build may
    // enable (this workspace's benchmark crate does, through `smol`), puts an 8-byte panic flag
    // in every task's header and makes the output slot hold a panic beside the output, 16
    // bytes where a `()` takes none: a bare task of a one-byte future is 33 bytes without the
    // feature and 56 with it. Each of trellis's tasks pays 16 bytes for it (the runner it
    // shares the slot with is 8).
    allocations_in(|| {
        let (runnable, task) = async_task::spawn(async {}, |_| {});
        drop(runnable);
        drop(task);
    });
    let std_feature = match BYTES.with(Cell::get) {
        33 => 0,
        56 => 16,
        other => panic!("a bare `async-task` task of a one-byte future took {other} bytes"),
    };
    // The allocation holds `async-task`'s header, the cell (cancel-tree node, future, result
    // slot) and the runner: 136 bytes for this trivial task on 64-bit targets, 152 where the
    // build has `async-task`'s `std` feature (the figures that follow are with it), since a
    // task's node carries neither the fields only scopes and nurseries use (312 with them) nor the
    // scope-only flag and the task name (280 with those), its result slot has no lock of its
    // own and its reporter is a thin pointer (264 with those), the count of the allocation
    // that the cell keeps is a pointer, not a waker (248 with a waker), the cell reaches its
    // runtime through its reporter (240 with a reference of its own), and the result slot's
    // tag sits in the cell's spare bytes, the handle's waker and the value sharing the rest
    // (232 with the tag inside the slot), the node's kind is one word (224 with a 16-byte enum)
    // and its state keeps no pointer to a plain node's fields, which a task's node never has
    // (216 with it), and the node keeps its owner's waker in two halves, one of them the
    // owner's identity that it keeps anyway (208 with a whole waker beside it), and what only
    // some nodes get (children, waiter slots, extras) is behind one pointer (200 with three),
    // the node's lock is a byte beside its flags (184 with `std`'s mutex), the task-locals a
    // task inherits are behind that pointer too (176 with a pointer to them in the cell), and
    // the count of the allocation that the cell's references share is the task's own waker,
    // which the node keeps as its owner waker (168 with `async-task`'s handle in the cell),
    // and the result slot boxes the waker of a handle awaited while its task runs (160 with
    // the waker in the slot).
    // Every build had the feature before the library turned it off.
    #[cfg(target_pointer_width = "64")]
    assert_eq!(
        bytes / TASKS,
        136 + std_feature,
        "bytes per task, {std_feature} of them for `async-task`'s `std` feature"
    );
}

/// A parked task keeps its wait's future inside its allocation, so the size of a sleep is part
/// of every sleeping task's. A sleep holds its deadline (a duration becomes one in place), a
/// timer key, a one-word cancel registration (a thin node reference; the rare wait with a waker
/// of its own boxes the reference with its slot key) and the schedule point's flag;
/// `sleep_forever` holds the registration alone. Before, they were 64 and 16 bytes (the
/// registration was a node reference and a word), and before that 96 and 104 (the
/// registration was 32, and `sleep_forever` was a `Sleep` with no deadline inside an
/// `async fn`).
#[cfg(target_pointer_width = "64")]
#[test]
fn a_sleep_is_56_bytes_and_sleep_forever_8() {
    assert_eq!(std::mem::size_of::<trellis::Sleep>(), 56);
    assert_eq!(std::mem::size_of::<trellis::SleepForever>(), 8);
    assert_eq!(std::mem::size_of_val(&trellis::sleep_forever()), 8);
}

/// Allocations made on a current-thread runtime by the second of two runs of `round` (the
/// first warms up what is kept for reuse: the timer store, spare scope nodes).
fn allocations_in_a_warm_round<F: std::future::Future<Output = ()>>(round: fn() -> F) -> usize {
    let rt = Runtime::builder()
        .flavor(Flavor::CurrentThread)
        .build()
        .unwrap();
    rt.block_on(async {
        round().await;
        start_counting();
        round().await;
        stop_counting()
    })
}

/// A handle awaited while its task still runs keeps its waker in a box of its own, so that a
/// task's result slot is one word for a value that fits in one (a parked task's size is a
/// benchmarked figure): one allocation per handle awaited that way, none for a handle awaited
/// once its task has ended. 100 one-task nurseries whose body awaits the task's handle at
/// once (the task still has checkpoints to pass) make exactly 100 allocations more than 100
/// whose body first lets the task end.
#[test]
fn a_handle_awaited_while_its_task_runs_boxes_the_waker() {
    const TASKS: usize = 100;
    async fn one_task(task_still_running: bool) -> Result<(), trellis::Error> {
        trellis::nursery(|n: Nursery<trellis::Error>| async move {
            let handle = n.spawn(async {
                for _ in 0..3 {
                    trellis::checkpoint().await?;
                }
                Ok(())
            })?;
            if !task_still_running {
                // The task takes four polls; each checkpoint here lets it take one.
                for _ in 0..8 {
                    trellis::checkpoint().await?;
                }
                assert!(handle.is_finished());
            }
            handle.await
        })
        .await?;
        Ok(())
    }
    async fn round(task_still_running: bool) {
        // From a task: the main future's waits take slots in the node they wait in, which
        // allocate, where a task's go through its owner waker.
        trellis::nursery(|outer: Nursery<trellis::Error>| async move {
            outer.spawn(async move {
                for _ in 0..TASKS {
                    one_task(task_still_running).await?;
                }
                Ok(())
            })?;
            Ok(())
        })
        .await
        .expect("nothing fails");
    }
    let running = allocations_in_a_warm_round(|| round(true));
    let ended = allocations_in_a_warm_round(|| round(false));
    assert_eq!(running - ended, TASKS);
}

/// A timed scope's node is kept for the next scope made on the same thread: 1 000 timeouts in
/// a row (`move_on_after` around a checkpoint) allocate nothing once the first round has warmed
/// the timer store up. Each made one allocation, its node, before nodes were reused.
#[test]
fn timeouts_in_a_row_reuse_their_scope_node() {
    const TIMEOUTS: usize = 1_000;
    async fn round() {
        for _ in 0..TIMEOUTS {
            let inner = trellis::move_on_after(Duration::from_secs(60), trellis::checkpoint());
            inner
                .await
                .expect("60 s do not pass")
                .expect("nothing cancels");
        }
    }
    assert_eq!(allocations_in_a_warm_round(round), 0);
}

/// A timeout that fires records why its scope was cancelled (`Deadline`, C8) in the node
/// itself, so its node is reused like that of a timeout that does not fire: 1 000 timeouts
/// that fire at once (a scope whose deadline is now, around a checkpoint) allocate nothing
/// once a first round has warmed up. Each made one allocation while the reason was kept in the
/// node's extras (a node that holds extras is not reused), two at 2270fcd (the extras behind
/// a second box).
#[test]
fn timeouts_that_fire_reuse_their_scope_node() {
    const TIMEOUTS: usize = 1_000;
    async fn round() {
        for _ in 0..TIMEOUTS {
            let scope = trellis::CancelScope::with_deadline(trellis::now());
            let out = scope.run(trellis::checkpoint()).await;
            assert!(
                out.is_none(),
                "the scope absorbs its own deadline's cancellation"
            );
            assert!(scope.cancelled_caught());
            assert_eq!(scope.cancel_reason(), Some(trellis::CancelReason::Deadline));
        }
    }
    assert_eq!(allocations_in_a_warm_round(round), 0);
}
