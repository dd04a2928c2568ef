//! `Builder::instrument`: the hooks see every task event, in order, with the right ids.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use trellis::lowlevel::{Instrument, PollEnd, TaskEvent};
use trellis::testing::MockClock;
use trellis::{checkpoint, nursery, Error, Flavor, Runtime};

/// Writes every event down as a line.
#[derive(Default)]
struct Log(Mutex<Vec<String>>);

impl Log {
    fn push(&self, line: String) {
        self.0.lock().unwrap().push(line);
    }

    fn lines(&self) -> Vec<String> {
        self.0.lock().unwrap().clone()
    }
}

fn who(task: TaskEvent<'_>) -> String {
    task.name
        .map_or_else(|| task.id.to_string(), str::to_string)
}

impl Instrument for Log {
    fn task_spawned(&self, task: TaskEvent<'_>, parent: Option<u64>) {
        self.push(format!("spawned {} under {parent:?}", who(task)));
    }
    fn task_scheduled(&self, task: TaskEvent<'_>) {
        self.push(format!("scheduled {}", who(task)));
    }
    fn before_task_poll(&self, task: TaskEvent<'_>) {
        self.push(format!("poll {}", who(task)));
    }
    fn after_task_poll(&self, task: TaskEvent<'_>, end: PollEnd) {
        self.push(format!("{} {end:?}", who(task)));
    }
    fn task_exited(&self, task: TaskEvent<'_>) {
        self.push(format!("exited {}", who(task)));
    }
}

fn runtime(log: &Arc<Log>) -> Runtime {
    let clock = MockClock::new();
    clock.set_autojump_threshold(Some(Duration::ZERO));
    Runtime::builder()
        .flavor(Flavor::CurrentThread)
        .clock(clock)
        .instrument(log.clone())
        .build()
        .unwrap()
}

#[test]
fn events_come_in_order_for_each_task() {
    // Principle 3 on the current-thread flavour: every checkpoint yields, so the order of the
    // polls is exact.
    let log = Arc::new(Log::default());
    runtime(&log).block_on(async {
        nursery(|n| async move {
            n.spawn_named("a", async {
                checkpoint().await?;
                checkpoint().await?;
                Ok(())
            })?;
            n.spawn_named("b", async { Ok(()) })?;
            Ok::<_, Error>(())
        })
        .await
        .unwrap();
    });
    assert_eq!(
        log.lines(),
        [
            "spawned a under Some(0)",
            "scheduled a",
            "spawned b under Some(0)",
            "scheduled b",
            "poll a",
            "a Parked",
            // A task that wakes itself during a poll (a checkpoint's yield) is queued when
            // that poll ends.
            "scheduled a",
            "poll b",
            "b Finished",
            "exited b",
            "poll a",
            "a Parked",
            "scheduled a",
            "poll a",
            "a Finished",
            "exited a",
        ]
    );
}

#[test]
fn a_child_names_the_task_it_was_spawned_from() {
    let log = Arc::new(Log::default());
    runtime(&log).block_on(async {
        nursery(|n| async move {
            n.spawn_named("outer", async {
                nursery(|inner| async move {
                    inner.spawn_named("inner", async { Ok(()) })?;
                    Ok::<_, Error>(())
                })
                .await
                .map_err(Error::from)
            })?;
            Ok::<_, Error>(())
        })
        .await
        .unwrap();
    });
    let spawned: Vec<String> = log
        .lines()
        .into_iter()
        .filter(|l| l.starts_with("spawned"))
        .collect();
    // "outer" is task 1 (the main future is 0).
    assert_eq!(
        spawned,
        ["spawned outer under Some(0)", "spawned inner under Some(1)"]
    );
}

#[test]
fn every_spawned_task_exits_once_also_when_torn_down() {
    // N11: a nursery cancelled from outside ends its parked children; whatever the path, each
    // spawned task reports its exit exactly once.
    let log = Arc::new(Log::default());
    runtime(&log).block_on(async {
        let out = trellis::move_on_after(Duration::from_secs(5), async {
            nursery(|n| async move {
                for _ in 0..10 {
                    n.spawn(async {
                        trellis::sleep_forever().await?;
                        Ok(())
                    })?;
                }
                trellis::sleep_forever().await?;
                Ok::<_, Error>(())
            })
            .await
        })
        .await;
        assert!(out.is_none());
    });
    let lines = log.lines();
    let count = |prefix: &str| lines.iter().filter(|l| l.starts_with(prefix)).count();
    assert_eq!(count("spawned"), 10);
    assert_eq!(count("exited"), 10);
    // Each was polled twice: once to park, once to see the cancellation and end.
    assert_eq!(lines.iter().filter(|l| l.ends_with("Parked")).count(), 10);
    assert_eq!(lines.iter().filter(|l| l.ends_with("Finished")).count(), 10);
}

#[test]
fn a_runtime_without_an_instrument_runs_its_tasks() {
    let out = Runtime::builder()
        .flavor(Flavor::CurrentThread)
        .build()
        .unwrap()
        .block_on(async {
            nursery(|n| async move {
                let h = n.spawn(async { Ok(2) })?;
                Ok::<_, Error>(h.await? * 21)
            })
            .await
            .unwrap()
        });
    assert_eq!(out, 42);
}

/// Writes down only the cancellations.
#[derive(Default)]
struct Cancels(Log);

impl Instrument for Cancels {
    fn scope_cancelled(&self, scope: trellis::lowlevel::CancelEvent<'_>) {
        self.0.push(scope.to_string());
    }
}

// `scope_cancelled` reports each scope whose cancel was called, once, with its kind, its task
// and its reason (C8: the first reason wins), and not the scopes cancelled only because an
// enclosing one was.
#[test]
fn each_cancelled_scope_is_reported_once_with_its_task_and_reason() {
    let log = Arc::new(Cancels::default());
    let clock = MockClock::new();
    clock.set_autojump_threshold(Some(Duration::ZERO));
    let rt = Runtime::builder()
        .flavor(Flavor::CurrentThread)
        .clock(clock)
        .instrument(log.clone())
        .build()
        .unwrap();
    rt.block_on(async {
        // A deadline, with a scope nested inside that is cancelled only through it.
        let outer = trellis::move_on_after(Duration::from_secs(1), async {
            trellis::move_on_after(Duration::from_secs(5), trellis::sleep_forever())
                .await
                .transpose()?;
            Ok::<_, trellis::Cancelled>(())
        })
        .await;
        assert_eq!(outer, None);
        // An explicit cancel with a reason, given twice before the scope is entered: one report
        // (when it is entered), with the first reason; then one from inside a running scope.
        let scope = trellis::CancelScope::new();
        scope.cancel_with_reason("enough");
        scope.cancel_with_reason("again");
        let _ = scope.run(async { Ok::<_, trellis::Cancelled>(()) }).await;
        let scope = trellis::CancelScope::new();
        let inside = scope.clone();
        let _ = scope
            .run(async move {
                inside.cancel();
                checkpoint().await
            })
            .await;
        // A failing task cancels its nursery, and its sibling with it.
        let failed = nursery(|n| async move {
            n.spawn_named("sleeper", async {
                trellis::sleep_forever().await?;
                Ok(())
            })?;
            n.spawn_named("failer", async {
                checkpoint().await?;
                Err::<(), _>(Error::WouldBlock)
            })?;
            Ok::<_, Error>(())
        })
        .await;
        assert!(failed.is_err());
    });
    assert_eq!(
        log.0.lines(),
        [
            "scope of task 0 \"main\" cancelled: deadline expired",
            "scope of task 0 \"main\" cancelled: cancelled explicitly: enough",
            "scope of task 0 \"main\" cancelled: cancelled explicitly",
            "nursery of task 0 \"main\" cancelled: a sibling task failed",
            // block_on's end cancels whatever is left.
            "runtime cancelled: the runtime is shutting down",
        ]
    );
}
