//! Time at its edges: deadlines computed after long synchronous work (C5) and durations too
//! large to add to the clock (`Duration::MAX`, trio's `inf`).

mod common;

use std::time::{Duration, Instant};

use common::*;
use trellis::testing::{wait_all_tasks_blocked_for, MockClock};
use trellis::{
    current_effective_deadline, fail_after, move_on_after, sleep, CancelScope, Clock, Flavor,
};

/// Spins (synchronous work inside one poll) until `clock` reads `until`.
fn busy_until(clock: &MockClock, until: Instant) {
    while clock.now() < until {
        std::hint::spin_loop();
    }
}

/// A mock clock that runs 1 000 times faster than real time: 50 ms of virtual work is 50 µs.
fn fast_clock() -> MockClock {
    let clock = MockClock::new();
    clock.set_rate(1000.0).unwrap();
    clock
}

// contract C5: a relative deadline starts when it is set, even if the task has been running
// synchronously since its poll began (the runtime caches the clock per poll).
#[test]
fn a_timeout_set_after_long_synchronous_work_starts_when_it_is_set() {
    let clock = fast_clock();
    current_thread_on(Some(&clock)).block_on(async {
        let t0 = trellis::now();
        busy_until(&clock, t0 + ms(50));
        let scope = CancelScope::with_timeout(ms(20));
        assert!(scope.deadline().unwrap() >= t0 + ms(70), "with_timeout");

        let t1 = trellis::now();
        busy_until(&clock, t1 + ms(50));
        let deadline = move_on_after(ms(20), async {
            Ok::<_, trellis::Error>(current_effective_deadline())
        })
        .await
        .unwrap()
        .unwrap()
        .unwrap();
        assert!(deadline >= t1 + ms(70), "move_on_after");

        let t2 = trellis::now();
        busy_until(&clock, t2 + ms(50));
        let out = fail_after(ms(20), async {
            Ok::<_, trellis::Error>(current_effective_deadline())
        })
        .await;
        assert!(out.unwrap().unwrap().unwrap() >= t2 + ms(70), "fail_after");
    });
}

// contract C5: a sleep set after long synchronous work sleeps its whole duration.
#[test]
fn a_sleep_set_after_long_synchronous_work_sleeps_its_whole_duration() {
    let clock = fast_clock();
    current_thread_on(Some(&clock)).block_on(async {
        let t0 = trellis::now();
        busy_until(&clock, t0 + ms(50));
        sleep(ms(20)).await.unwrap();
        assert!(clock.now() >= t0 + ms(70));
    });
}

// `Duration::MAX` means "never": no panic, no deadline, a sleep that only cancellation ends.
#[test]
fn duration_max_means_no_deadline_everywhere() {
    let (rt, clock) = current_thread();
    rt.block_on(async {
        let t0 = trellis::now();
        assert_eq!(CancelScope::with_timeout(Duration::MAX).deadline(), None);
        let out = move_on_after(Duration::MAX, async {
            assert_eq!(current_effective_deadline(), None);
            sleep(secs(5)).await
        })
        .await;
        assert_eq!(out, Some(Ok(())));
        assert_eq!(since(t0), secs(5));
        let out = fail_after(Duration::MAX, sleep(secs(5))).await;
        assert_eq!(out, Ok(Ok(())));
        assert_eq!(since(t0), secs(10));
        // A sleep of Duration::MAX ends only by cancellation.
        let out = move_on_after(secs(1), sleep(Duration::MAX)).await;
        assert_eq!(out, None);
        assert_eq!(since(t0), secs(11));
    });
    // Jumping the mock clock by Duration::MAX stops at the far future instead of panicking.
    let before = clock.now();
    clock.jump(Duration::MAX);
    assert!(clock.now() > before + Duration::from_secs(100 * 365 * 86_400));
    // A rate so fast that time overflows at once does not panic either.
    let fast = MockClock::new();
    let start = fast.now();
    fast.set_rate(1e300).unwrap();
    assert!(fast.now() >= start);
}

// `wait_all_tasks_blocked_for(Duration::MAX)` waits (it does not panic) until cancelled.
#[test]
fn waiting_for_blocked_tasks_with_an_infinite_cushion_waits_until_cancelled() {
    for flavor in [Flavor::CurrentThread, Flavor::MultiThread] {
        runtime(flavor).block_on(async {
            let out = move_on_after(ms(2), wait_all_tasks_blocked_for(Duration::MAX)).await;
            assert_eq!(out, None, "{flavor:?}");
        });
    }
}
