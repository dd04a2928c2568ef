//! `#[trellis::async_test]`: each test runs on a fresh runtime, by default current-thread on a mock
//! clock that autojumps at once, with deadlock detection, under a real-time watchdog; every
//! option changes exactly that, and the attributes of `#[test]` pass through.

mod common;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use common::send_and_yield_interleaving;
use trellis::sync::Event;
use trellis::testing::__private::{run, Config, TestOutput};
use trellis::{checkpoint, now, nursery, sleep, sleep_forever, Error, TimedOut};

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

// The default: a sleep of a minute passes in virtual time, by exactly a minute.
#[trellis::async_test]
async fn a_sleep_passes_in_virtual_time_by_exactly_its_length() {
    let (start, real_start) = (now(), Instant::now());
    sleep(secs(60)).await.unwrap();
    assert_eq!(now() - start, secs(60));
    // The minute was virtual (the bound only guards against a real wait).
    assert!(real_start.elapsed() < secs(30));
}

// contract C5, C6 under the default clock: a deadline fires at its exact virtual time.
#[trellis::async_test]
async fn a_timeout_fires_at_its_exact_virtual_time() {
    let start = now();
    let out = trellis::fail_after(secs(30), sleep_forever()).await;
    assert!(matches!(out, Err(TimedOut { .. })), "{out:?}");
    assert_eq!(now() - start, secs(30));
    let out = trellis::move_on_after(secs(5), sleep(secs(4))).await;
    assert_eq!(out.map(|r| r.is_ok()), Some(true));
    assert_eq!(now() - start, secs(34));
}

// The default flavour is current-thread: the test and its tasks run on one thread, the test's
// own, which carries the test's name.
#[trellis::async_test]
async fn tasks_run_on_the_test_thread_named_after_the_test() {
    let here = thread::current().id();
    assert_eq!(
        thread::current().name(),
        Some("tasks_run_on_the_test_thread_named_after_the_test")
    );
    let ids = nursery(|n| async move {
        let a = n.spawn(async { Ok(thread::current().id()) })?;
        let b = n.spawn(async { Ok(thread::current().id()) })?;
        Ok::<_, Error>([a.await?, b.await?])
    })
    .await
    .unwrap();
    assert_eq!(ids, [here, here]);
}

// Deadlock detection is on by default: a test whose tasks all wait for ever fails with the
// detector's report instead of hanging.
#[trellis::async_test]
#[should_panic(expected = "deadlock")]
async fn a_test_whose_tasks_all_block_forever_fails_as_a_deadlock() {
    let never_set = Event::new();
    nursery(|n| async move {
        n.spawn(async {
            Event::new().wait().await?;
            Ok(())
        })?;
        never_set.wait().await?;
        Ok::<_, Error>(())
    })
    .await
    .unwrap();
}

// `detect_deadlocks = false`: a wake-up from a plain thread, which the detector cannot see
// coming (it would report a deadlock), is waited for.
#[trellis::async_test(detect_deadlocks = false)]
async fn without_deadlock_detection_a_wake_up_from_a_plain_thread_is_waited_for() {
    let event = Arc::new(Event::new());
    let setter = event.clone();
    let plain = thread::spawn(move || {
        thread::sleep(Duration::from_millis(2));
        setter.set();
    });
    let start = now();
    event.wait().await.unwrap();
    plain.join().unwrap();
    // No timer was pending, so the mock clock had nothing to jump to.
    assert_eq!(now(), start);
}

// `autojump = false`: the mock clock stands still, in real time too; a sleep then can never
// end, which the deadlock detector reports.
#[trellis::async_test(autojump = false)]
#[should_panic(expected = "deadlock")]
async fn without_autojump_the_mock_clock_stands_still() {
    let start = now();
    thread::sleep(Duration::from_millis(2));
    checkpoint().await.unwrap();
    assert_eq!(now(), start);
    sleep(secs(1)).await.unwrap();
}

// `clock = "real"`: time is the system's; a 2 ms sleep takes at least 2 ms of real time.
#[trellis::async_test(clock = "real")]
async fn with_the_real_clock_a_sleep_takes_real_time() {
    let (start, real_start) = (now(), Instant::now());
    sleep(Duration::from_millis(2)).await.unwrap();
    assert!(now() - start >= Duration::from_millis(2));
    assert!(real_start.elapsed() >= Duration::from_millis(2));
}

// `flavor = "multi_thread"`: two tasks that each block their thread until the other has come
// too can only meet if they run on two threads at once.
#[trellis::async_test(flavor = "multi_thread", worker_threads = 2)]
async fn the_multi_threaded_flavour_runs_tasks_on_several_threads() {
    let meet = Arc::new(std::sync::Barrier::new(2));
    let names = nursery(|n| async move {
        let mut handles = Vec::new();
        for _ in 0..2 {
            let meet = meet.clone();
            handles.push(n.spawn(async move {
                meet.wait(); // blocks the worker for real, on purpose
                Ok(thread::current().name().unwrap_or_default().to_string())
            })?);
        }
        let mut names = BTreeSet::new();
        for h in handles {
            names.insert(h.await?);
        }
        Ok::<_, Error>(names)
    })
    .await
    .unwrap();
    let expected = BTreeSet::from(["trellis-worker-0".to_string(), "trellis-worker-1".into()]);
    assert_eq!(names, expected);
}

// The multi-threaded flavour runs on the real clock unless told otherwise; with
// `clock = "mock"` it autojumps as the default flavour does.
#[trellis::async_test(flavor = "multi_thread", worker_threads = 2, clock = "mock")]
async fn the_multi_threaded_flavour_takes_the_mock_clock_on_request() {
    let start = now();
    nursery(|n| async move {
        for i in 1..=3 {
            n.spawn(async move { Ok::<_, Error>(sleep(secs(10 * i)).await?) })?;
        }
        Ok::<_, Error>(())
    })
    .await
    .unwrap();
    assert_eq!(now() - start, secs(30));
}

// principle 3, trio's rule: with `yield_budget = 0` every ready operation yields.
#[trellis::async_test(yield_budget = 0)]
async fn yield_budget_0_makes_every_ready_operation_yield() {
    let expected = [
        "b1", "a1", "b2", "a2", "b3", "a3", "a4", "a5", "a6", "a7", "a8", "a9", "a10",
    ];
    assert_eq!(send_and_yield_interleaving().await, expected);
}

// By default a test runs with the runtime's default budget (128): ten ready sends run back to
// back before `b` gets its turn.
#[trellis::async_test]
async fn by_default_ready_operations_spend_the_default_budget() {
    let expected = [
        "a1", "a2", "a3", "a4", "a5", "a6", "a7", "a8", "a9", "a10", "b1", "b2", "b3",
    ];
    assert_eq!(send_and_yield_interleaving().await, expected);
}

// `yield_budget = 4`: four ready sends run back to back, the fifth yields before it sends.
#[trellis::async_test(yield_budget = 4)]
async fn yield_budget_spaces_out_the_schedule_points() {
    let expected = [
        "a1", "a2", "a3", "a4", "b1", "a5", "a6", "a7", "a8", "b2", "a9", "a10", "b3",
    ];
    assert_eq!(send_and_yield_interleaving().await, expected);
}

// A test may return a `Result`, as a `#[test]` may; `?` works in its body. The error need not
// be `Send`: it crosses from the test's thread as text.
#[trellis::async_test]
async fn a_test_may_return_a_result() -> Result<(), std::rc::Rc<str>> {
    checkpoint()
        .await
        .map_err(|e| std::rc::Rc::from(e.to_string()))?;
    Ok(())
}

#[trellis::async_test]
async fn a_test_may_use_question_mark_on_trellis_errors() -> Result<(), Error> {
    let start = now();
    sleep(secs(3)).await?;
    assert_eq!(now() - start, secs(3));
    Ok(())
}

// A failing `Result` fails the test with the error's `Debug` text, as `#[test]` prints it
// (`Error: ...`).
#[test]
fn an_error_returned_by_a_test_is_reported_by_its_debug_text() {
    let report = run(Config::current_thread(), "krate::failing", || async {
        checkpoint().await?;
        Err::<(), _>(Error::InvalidArgument("bad input"))
    });
    let error = report.unwrap_err();
    assert_eq!(
        format!("{error:?}"),
        format!("{:?}", Error::InvalidArgument("bad input"))
    );
    assert_eq!(
        <Result<(), Error> as TestOutput>::report(None).ok(),
        Some(())
    );
}

// The watchdog: a test that blocks its thread for real past `timeout_ms` fails with a panic
// that names it, after that long, not after the block ends.
#[trellis::async_test(timeout_ms = 5)]
#[should_panic(
    expected = "test `a_test_that_blocks_past_its_timeout_fails_naming_itself` timed out"
)]
async fn a_test_that_blocks_past_its_timeout_fails_naming_itself() {
    // Blocks the only worker: no checkpoint, no timer, nothing trellis could see. The thread
    // is left behind when the watchdog fires, and ends on its own a little later.
    thread::sleep(Duration::from_millis(300));
}

#[test]
fn the_watchdog_fires_after_the_timeout_not_after_the_block() {
    let real_start = Instant::now();
    let outcome = std::panic::catch_unwind(|| {
        run(
            Config::current_thread().timeout_ms(5),
            "krate::stuck",
            || async {
                thread::sleep(Duration::from_secs(2));
            },
        )
    });
    let elapsed = real_start.elapsed();
    let panic = outcome.unwrap_err();
    let text = panic.downcast_ref::<String>().unwrap();
    assert!(
        text.starts_with("test `stuck` timed out: still running after 5 ms"),
        "{text}"
    );
    assert!(elapsed >= Duration::from_millis(5), "{elapsed:?}");
    assert!(elapsed < Duration::from_secs(1), "{elapsed:?}");
}

// A test that ends well within its timeout passes; the watchdog only watches.
#[trellis::async_test(timeout_ms = 10_000, clock = "real")]
async fn a_test_within_its_timeout_passes() {
    sleep(Duration::from_millis(1)).await.unwrap();
}

// `#[should_panic]` passes through, written after the attribute or before it, and the panic's
// own message reaches it unchanged.
#[trellis::async_test]
#[should_panic(expected = "boom after a minute")]
async fn should_panic_written_after_passes_through() {
    sleep(secs(60)).await.unwrap();
    panic!("boom after a minute");
}

#[should_panic(expected = "boom in a task")]
#[trellis::async_test]
async fn should_panic_written_before_passes_through() {
    nursery(|n| async move {
        n.spawn(async {
            checkpoint().await?;
            panic!("boom in a task");
            #[allow(unreachable_code)]
            Ok(())
        })?;
        Ok::<_, Error>(())
    })
    .await
    .unwrap();
}

// `#[ignore]` passes through: the harness lists this test as ignored (it passes if run).
#[trellis::async_test]
#[ignore = "shows that #[ignore] passes through"]
async fn ignore_passes_through() {
    checkpoint().await.unwrap();
}

/// Tests in a module, with doc comments and a `pub` fn, see the module's names.
mod nested {
    use super::secs;

    /// A test's doc comment stays on it.
    #[trellis::async_test(detect_deadlocks = true, autojump = true, clock = "mock")]
    pub async fn a_test_in_a_module_is_named_by_its_path() {
        assert_eq!(
            std::thread::current().name(),
            Some("nested::a_test_in_a_module_is_named_by_its_path")
        );
        let start = trellis::now();
        trellis::sleep(secs(1)).await.unwrap();
        assert_eq!(trellis::now() - start, secs(1));
    }
}

/// The generated code names everything by absolute path, so it works where no prelude is.
#[no_implicit_prelude]
mod without_the_prelude {
    #[::trellis::async_test(flavor = "multi_thread", worker_threads = 1)]
    async fn the_generated_code_needs_no_prelude() -> ::core::result::Result<(), ::trellis::Error> {
        ::trellis::checkpoint().await?;
        ::core::result::Result::Ok(())
    }
}

/// The order four tasks take their steps in, logged.
async fn step_order() -> Vec<(u32, u32)> {
    let log = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let out = log.clone();
    trellis::nursery(|n| async move {
        for task in 0..4 {
            let log = log.clone();
            n.spawn(async move {
                for step in 0..3 {
                    log.lock().unwrap().push((task, step));
                    trellis::checkpoint().await?;
                }
                Ok(())
            })?;
        }
        Ok::<_, trellis::Error>(())
    })
    .await
    .unwrap();
    let order = out.lock().unwrap().clone();
    order
}

#[trellis::async_test(schedule_seed = 3)]
async fn a_schedule_seed_orders_the_tasks_as_the_builder_does() {
    // The same seed through the attribute and through the builder: the same order, and not wake
    // order.
    let here = step_order().await;
    let replay = std::thread::spawn(|| {
        trellis::Runtime::builder()
            .flavor(trellis::Flavor::CurrentThread)
            .schedule_seed(3)
            .build()
            .unwrap()
            .block_on(step_order())
    })
    .join()
    .unwrap();
    assert_eq!(here, replay);
    let wake_order: Vec<(u32, u32)> = (0..3).flat_map(|s| (0..4).map(move |t| (t, s))).collect();
    assert_ne!(here, wake_order);
}
