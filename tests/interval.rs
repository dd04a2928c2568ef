//! `interval`: ticks on the schedule `start + k * period` in virtual time; a cancelled tick
//! consumes nothing (principle 4); a caller that falls behind gets the late tick once and the
//! missed ones are skipped; edge periods (zero, `Duration::MAX`) neither panic nor spin.

mod common;

use std::time::Duration;

use common::*;
use trellis::{interval, move_on_after, sleep};

#[test]
fn ticks_keep_to_the_schedule() {
    for flavor in FLAVORS {
        autojump_runtime(flavor).block_on(async move {
            let t0 = trellis::now();
            let mut ticks = interval(secs(1));
            let mut seen = Vec::new();
            for _ in 0..4 {
                let at = ticks.tick().await.unwrap();
                seen.push(at - t0);
                // Work shorter than a period does not shift the schedule.
                sleep(ms(300)).await.unwrap();
            }
            assert_eq!(seen, [secs(0), secs(1), secs(2), secs(3)], "{flavor:?}");
        });
    }
}

// principle 4: a tick cancelled before it is due consumes nothing.
#[test]
fn a_cancelled_tick_consumes_nothing() {
    block_on_current(async {
        let t0 = trellis::now();
        let mut ticks = interval(secs(1));
        assert_eq!(ticks.tick().await.unwrap(), t0);
        assert_eq!(move_on_after(ms(500), ticks.tick()).await, None);
        assert_eq!(ticks.tick().await.unwrap() - t0, secs(1));
        assert_eq!(since(t0), secs(1));
    });
}

// Falling behind: the late tick comes once, at once; the missed ones are skipped.
#[test]
fn missed_ticks_are_skipped_not_burst() {
    block_on_current(async {
        let t0 = trellis::now();
        let mut ticks = interval(secs(1));
        ticks.tick().await.unwrap();
        sleep(ms(3500)).await.unwrap();
        assert_eq!(ticks.tick().await.unwrap() - t0, secs(1)); // late, delivered at 3.5 s
        assert_eq!(since(t0), ms(3500));
        assert_eq!(ticks.tick().await.unwrap() - t0, secs(4)); // 2 s and 3 s skipped
        assert_eq!(since(t0), secs(4));
    });
}

// Edge periods: zero ticks at every call (each a checkpoint, no time passes); Duration::MAX
// ticks once and then never (a deadline ends the wait).
#[test]
fn edge_periods_neither_panic_nor_spin() {
    block_on_current(async {
        let t0 = trellis::now();
        let mut every_call = interval(Duration::ZERO);
        for _ in 0..3 {
            assert_eq!(every_call.tick().await.unwrap(), t0);
        }
        let mut never_again = interval(Duration::MAX);
        assert_eq!(never_again.tick().await.unwrap(), t0);
        assert_eq!(move_on_after(secs(5), never_again.tick()).await, None);
        assert_eq!(since(t0), secs(5));
    });
}
