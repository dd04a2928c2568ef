//! `MockClock` (principle 5): jumping, running at a rate, and autojump, and how autojump gets
//! along with `wait_all_tasks_blocked`. Ports trio's `test_mock_clock.py`; the rate tests use a
//! few milliseconds of real time only.

mod common;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{current_thread, current_thread_on, ms, secs, Log};
use trellis::testing::{wait_all_tasks_blocked, wait_all_tasks_blocked_for, MockClock};
use trellis::{checkpoint, now, nursery, sleep, Clock, Error, Flavor, Runtime};

/// Reads the clock before and after `real` of real time, and checks that it advanced by `rate`
/// times the real time between the two reads: at least `rate * real`, at most `rate` times the
/// real time measured around both reads.
fn check_rate(clock: &MockClock, rate: f64, real: Duration) {
    let outer_start = Instant::now();
    let v0 = Clock::now(clock);
    std::thread::sleep(real);
    let v1 = Clock::now(clock);
    let outer = outer_start.elapsed();
    let advanced = v1 - v0;
    assert!(
        advanced >= real.mul_f64(rate),
        "rate {rate}: {advanced:?} in at least {real:?} of real time"
    );
    assert!(
        advanced <= outer.mul_f64(rate),
        "rate {rate}: {advanced:?} in at most {outer:?} of real time"
    );
}

// principle 5 (trio test_mock_clock): a new clock is stopped; jump moves it exactly; rate makes
// it follow real time at that speed; a bad rate is refused and changes nothing.
#[test]
fn jump_and_rate() {
    let clock = MockClock::new();
    assert_eq!(clock.rate(), 0.0);
    assert_eq!(clock.autojump_threshold(), None);
    let start = Clock::now(&clock);
    std::thread::sleep(ms(2));
    assert_eq!(Clock::now(&clock), start, "a stopped clock does not move");

    clock.jump(Duration::from_millis(1_200));
    assert_eq!(Clock::now(&clock) - start, Duration::from_millis(1_200));
    clock.jump(Duration::ZERO);
    assert_eq!(Clock::now(&clock) - start, Duration::from_millis(1_200));

    // A stopped clock cannot say how long to wait for a future deadline; a past one is now.
    let t = Clock::now(&clock);
    assert_eq!(clock.real_duration_until(t + secs(1)), None);

    for bad in [-1.0, f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
        let err = clock.set_rate(bad).unwrap_err();
        assert!(
            matches!(err, Error::InvalidArgument(_)),
            "rate {bad}: {err:?}"
        );
        assert_eq!(clock.rate(), 0.0);
    }
    assert_eq!(Clock::now(&clock), t);

    clock.set_rate(2.0).unwrap();
    assert_eq!(clock.rate(), 2.0);
    check_rate(&clock, 2.0, ms(3));
    // At rate 2, one virtual second is half a real second away (less the time since the read).
    let wait = clock
        .real_duration_until(Clock::now(&clock) + secs(1))
        .unwrap();
    assert!(wait <= ms(500) && wait > ms(400), "{wait:?}");
    assert_eq!(
        clock.real_duration_until(Clock::now(&clock) - secs(1)),
        Some(Duration::ZERO)
    );

    clock.set_rate(0.5).unwrap();
    check_rate(&clock, 0.5, ms(4));
    let wait = clock
        .real_duration_until(Clock::now(&clock) + secs(1))
        .unwrap();
    assert!(wait <= secs(2) && wait > ms(1_900), "{wait:?}");

    // A jump adds to a running clock.
    let before = Clock::now(&clock);
    clock.jump(Duration::from_millis(800));
    assert!(Clock::now(&clock) - before >= Duration::from_millis(800));

    clock.set_rate(0.0).unwrap();
    let stopped = Clock::now(&clock);
    std::thread::sleep(ms(2));
    assert_eq!(Clock::now(&clock), stopped);
}

// principle 5, contract R*: inside a runtime, set_rate refuses a negative, NaN or infinite rate
// with Error::InvalidArgument, and the runtime's time is unchanged.
#[test]
fn set_rate_rejects_bad_rates_inside_the_runtime() {
    let clock = MockClock::new();
    let rt = current_thread_on(Some(&clock));
    rt.block_on(async {
        let t0 = now();
        for bad in [-0.5, f64::NAN, f64::INFINITY] {
            match clock.set_rate(bad) {
                Err(Error::InvalidArgument(msg)) => assert!(msg.contains("rate"), "{msg}"),
                other => panic!("rate {bad}: {other:?}"),
            }
        }
        assert_eq!(clock.rate(), 0.0);
        checkpoint().await.unwrap();
        assert_eq!(now(), t0);
    });
}

// principle 5: the runtime's now() is the mock clock's, and a jump shows at once (trio
// test_current_time_with_mock_clock).
#[test]
fn the_runtime_reads_the_mock_clock() {
    let clock = MockClock::new();
    let rt = current_thread_on(Some(&clock));
    rt.block_on(async {
        let start = Clock::now(&clock);
        assert_eq!(now(), start);
        clock.jump(Duration::from_millis(3_150));
        assert_eq!(now(), start + Duration::from_millis(3_150));
        assert_eq!(Clock::now(&clock), now());
    });
}

// principle 5: with a running clock, sleeps wait for virtual time to pass at the clock's rate:
// 100 ms of virtual time at rate 50 take 2 ms of real time.
#[test]
fn a_running_clock_drives_sleeps() {
    let clock = MockClock::new();
    clock.set_rate(50.0).unwrap();
    let rt = current_thread_on(Some(&clock));
    rt.block_on(async {
        let real = Instant::now();
        let t0 = now();
        sleep(ms(100)).await.unwrap();
        assert!(now() - t0 >= ms(100));
        assert!(real.elapsed() >= ms(2));
    });
}

// principle 5 (trio test_mock_clock_autojump): with autojump at zero, sleeps take exactly their
// virtual time and almost no real time.
#[test]
fn autojump_sleeps_take_exact_virtual_time() {
    let clock = MockClock::new();
    let rt = current_thread_on(Some(&clock));
    rt.block_on(async {
        clock.set_autojump_threshold(Some(Duration::ZERO));
        assert_eq!(clock.autojump_threshold(), Some(Duration::ZERO));
        let real_start = Instant::now();
        let mut virtual_start = now();
        for i in 0..10 {
            sleep(secs(10 * i)).await.unwrap();
            assert_eq!(now(), virtual_start + secs(10 * i));
            virtual_start = now();
        }
        assert!(real_start.elapsed() < secs(1));
    });
}

// principle 5 (trio test_mock_clock_autojump): a waiter of wait_all_tasks_blocked wakes before
// an autojump (time does not move), and changing the threshold takes effect at once.
#[test]
fn autojump_threshold_changes_take_effect_at_once() {
    let clock = MockClock::new();
    let rt = current_thread_on(Some(&clock));
    rt.block_on(async {
        clock.set_autojump_threshold(Some(ms(20)));
        let t = now();
        wait_all_tasks_blocked().await.unwrap();
        assert_eq!(now(), t);
        wait_all_tasks_blocked_for(ms(10)).await.unwrap();
        assert_eq!(now(), t);

        // The driver now waits with a very long autojump threshold ...
        clock.set_autojump_threshold(Some(secs(10_000)));
        wait_all_tasks_blocked().await.unwrap();
        // ... and must notice this at once, or the sleep below would take 10 000 s of real time.
        clock.set_autojump_threshold(Some(Duration::ZERO));
        let real = Instant::now();
        sleep(secs(100_000)).await.unwrap();
        assert_eq!(now() - t, secs(100_000));
        assert!(real.elapsed() < secs(1));
    });
}

// principle 5 (trio test_mock_clock_autojump_interference): only the runtime's own clock jumps;
// the threshold of another mock clock does not matter.
#[test]
fn another_clocks_threshold_does_not_interfere() {
    let clock = MockClock::new();
    let rt = current_thread_on(Some(&clock));
    rt.block_on(async {
        clock.set_autojump_threshold(Some(ms(20)));
        let other = MockClock::new();
        other.set_autojump_threshold(Some(ms(1)));
        let t = now();
        wait_all_tasks_blocked_for(ms(15)).await.unwrap();
        assert_eq!(now(), t);
        sleep(secs(100_000)).await.unwrap();
        assert_eq!(now() - t, secs(100_000));
        assert_eq!(Clock::now(&other), Clock::now(&other));
    });
}

// principle 5 (trio test_mock_clock_autojump_preset): a threshold set before the runtime starts
// is used from the start.
#[test]
fn autojump_threshold_set_before_the_runtime() {
    let clock = MockClock::new();
    clock.set_autojump_threshold(Some(ms(100)));
    clock.set_autojump_threshold(Some(ms(1)));
    let rt = current_thread_on(Some(&clock));
    let real = Instant::now();
    let slept = rt.block_on(async {
        let t0 = now();
        sleep(secs(10_000)).await.unwrap();
        now() - t0
    });
    assert_eq!(slept, secs(10_000));
    assert!(real.elapsed() < secs(1));
}

// principle 5 (trio test_mock_clock_autojump_0_and_wait_all_tasks_blocked_0): autojump at zero
// and a waiter with cushion zero: the waiter wakes first, then time jumps.
#[test]
fn autojump_zero_and_wait_all_tasks_blocked_zero() {
    let (rt, _clock) = current_thread();
    rt.block_on(async {
        let t0 = now();
        let log = Log::default();
        let result = nursery(|n| {
            let log = log.clone();
            async move {
                let l = log.clone();
                n.spawn(async move {
                    sleep(secs(100)).await?;
                    l.push(format!("yawn at {:?}", now() - t0));
                    Ok(())
                })?;
                let l = log.clone();
                n.spawn(async move {
                    wait_all_tasks_blocked().await?;
                    l.push(format!("waiter woke at {:?}", now() - t0));
                    sleep(secs(1_000)).await?;
                    l.push(format!("waiter done at {:?}", now() - t0));
                    Ok(())
                })?;
                Ok::<_, Error>(())
            }
        })
        .await;
        result.unwrap();
        assert_eq!(
            log.take(),
            ["waiter woke at 0ns", "yawn at 100s", "waiter done at 1000s"]
        );
    });
}

// principle 5 (trio test_mock_clock_autojump_0_and_wait_all_tasks_blocked_nonzero): while a
// task waits in wait_all_tasks_blocked, autojump holds off, even with a threshold (zero)
// smaller than the waiter's cushion (trio's run loop: a pending waiter disables autojump). The
// cushion is 5 ms here instead of trio's 1 s.
#[test]
fn autojump_zero_waits_for_a_waiter_with_a_cushion() {
    let (rt, _clock) = current_thread();
    rt.block_on(async {
        let t0 = now();
        let log = Log::default();
        let real = Instant::now();
        let result = nursery(|n| {
            let log = log.clone();
            async move {
                let l = log.clone();
                n.spawn(async move {
                    sleep(secs(100)).await?;
                    l.push(format!("yawn at {:?}", now() - t0));
                    Ok(())
                })?;
                let l = log.clone();
                n.spawn(async move {
                    wait_all_tasks_blocked_for(ms(5)).await?;
                    l.push(format!("waiter done at {:?}", now() - t0));
                    Ok(())
                })?;
                Ok::<_, Error>(())
            }
        })
        .await;
        result.unwrap();
        assert_eq!(log.take(), ["waiter done at 0ns", "yawn at 100s"]);
        assert!(real.elapsed() >= ms(5));
    });
}

// principle 5: autojump never moves time while a task is runnable: a busy task's 1 000
// checkpoints all see the same time, and the sleeper wakes after it is done.
#[test]
fn autojump_does_not_jump_while_a_task_is_runnable() {
    let (rt, _clock) = current_thread();
    rt.block_on(async {
        let t0 = now();
        let log = Log::default();
        let result = nursery(|n| {
            let log = log.clone();
            async move {
                let l = log.clone();
                n.spawn(async move {
                    sleep(secs(1)).await?;
                    l.push(format!("sleeper woke at {:?}", now() - t0));
                    Ok(())
                })?;
                let l = log.clone();
                n.spawn(async move {
                    for _ in 0..1_000 {
                        checkpoint().await?;
                        assert_eq!(now(), t0);
                    }
                    l.push("busy done");
                    Ok(())
                })?;
                Ok::<_, Error>(())
            }
        })
        .await;
        result.unwrap();
        assert_eq!(log.take(), ["busy done", "sleeper woke at 1s"]);
    });
}

// principle 5: without autojump a stopped clock only moves when told: a jump from a task fires
// every timer that became due, at once (trio test_wait_all_tasks_blocked_with_timeouts).
#[test]
fn jump_fires_due_timers() {
    let clock = MockClock::new();
    let rt = current_thread_on(Some(&clock));
    rt.block_on(async {
        let t0 = now();
        let log = Log::default();
        let result = nursery(|n| {
            let (log, clock) = (log.clone(), clock.clone());
            async move {
                for d in [5, 7, 20] {
                    let l = log.clone();
                    n.spawn(async move {
                        l.push(format!("{d} start"));
                        sleep(secs(d)).await?;
                        l.push(format!("{d} finished at {:?}", now() - t0));
                        Ok(())
                    })?;
                }
                wait_all_tasks_blocked().await?;
                assert_eq!(log.take(), ["5 start", "7 start", "20 start"]);
                clock.jump(secs(10));
                wait_all_tasks_blocked().await?;
                assert_eq!(log.take(), ["5 finished at 10s", "7 finished at 10s"]);
                clock.jump(secs(10));
                Ok::<_, Error>(())
            }
        })
        .await;
        result.unwrap();
        assert_eq!(log.take(), ["20 finished at 20s"]);
    });
}

// principle 5: autojump on a multi-threaded runtime: tasks on several workers each wake at
// exactly their virtual time.
#[test]
fn autojump_on_a_multi_threaded_runtime() {
    let clock = MockClock::new();
    clock.set_autojump_threshold(Some(Duration::ZERO));
    let rt = Runtime::builder()
        .flavor(Flavor::MultiThread)
        .worker_threads(2)
        .clock(clock.clone())
        .build()
        .unwrap();
    let woke = rt.block_on(async {
        let t0 = now();
        let woke = Arc::new(Mutex::new(Vec::new()));
        let w = woke.clone();
        let result = nursery(|n| async move {
            for i in 1..=20u64 {
                let w = w.clone();
                n.spawn(async move {
                    sleep(secs(i)).await?;
                    w.lock().unwrap().push((i, now() - t0));
                    Ok(())
                })?;
            }
            Ok::<_, Error>(())
        })
        .await;
        result.unwrap();
        assert_eq!(now() - t0, secs(20));
        let mut woke = woke.lock().unwrap().clone();
        woke.sort();
        woke
    });
    assert_eq!(woke, (1..=20u64).map(|i| (i, secs(i))).collect::<Vec<_>>());
}
