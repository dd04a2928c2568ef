//! What a runtime does when every task is blocked (trio's rules): wake the
//! `wait_all_tasks_blocked` waiters, jump a mock clock to its next timer (autojump), or, with
//! `Builder::detect_deadlocks`, stop the run when nothing can wake any task. The scheduler asks
//! through its `Host` trait, which this implements: the scheduler knows nothing of the cancel
//! tree that the deadlock check reads.

use std::sync::atomic::Ordering;
use std::time::Duration;

use crate::cancel::node::{self, Node};
use crate::runtime::driver::Driver;
use crate::runtime::scheduler::Host;
use crate::runtime::shared::Shared;

/// The scheduler's view of one runtime: its shared state and the root of its cancel tree.
pub(crate) struct RuntimeHost<'a> {
    pub(crate) shared: &'a Shared,
    pub(crate) root: &'a Node,
}

/// What to do if the runtime is still quiescent after the driver's wait.
pub(crate) enum IdleAction {
    /// Nothing can wake any task: report the deadlock (`Builder::detect_deadlocks`).
    Deadlock,
    /// Wake the `wait_all_tasks_blocked` waiters with this cushion.
    WakeWaiters(Duration),
    /// Jump the mock clock to the next timer.
    Autojump,
}

impl Host for RuntimeHost<'_> {
    type IdleAction = IdleAction;

    fn driver(&self) -> &Driver {
        &self.shared.driver
    }

    /// trio's rules: the smallest waiter cushion wins if it is shorter than the timer timeout;
    /// autojump is considered only when no task waits in `wait_all_tasks_blocked`, so a waiter
    /// with any cushion runs before time jumps (a test that waits for quiescence sees the state
    /// *before* the jump).
    fn idle_plan(&self, quiescent: bool) -> (Option<Duration>, Option<IdleAction>) {
        let driver = &self.shared.driver;
        let mut timeout = driver.timer_timeout();
        let mut action = None;
        if quiescent {
            let shorter = |t: Duration, current: Option<Duration>| current.is_none_or(|c| t < c);
            if let Some(cushion) = self.shared.first_idle_cushion() {
                if shorter(cushion, timeout) {
                    timeout = Some(cushion);
                    action = Some(IdleAction::WakeWaiters(cushion));
                }
            } else if let Some(threshold) = driver.clock.autojump_threshold() {
                if driver.timers.next_live_deadline().is_some() && shorter(threshold, timeout) {
                    timeout = Some(threshold);
                    action = Some(IdleAction::Autojump);
                }
            }
            if action.is_none() && self.nothing_can_wake() {
                timeout = Some(Duration::ZERO);
                action = Some(IdleAction::Deadlock);
            }
        }
        (timeout, action)
    }

    fn run_idle_action(&self, action: IdleAction) {
        let shared = self.shared;
        match action {
            IdleAction::WakeWaiters(cushion) => {
                shared
                    .take_idle_waiters(cushion)
                    .into_iter()
                    .for_each(|w| w.wake());
            }
            IdleAction::Autojump => {
                if let Some(next) = shared.driver.timers.next_live_deadline() {
                    shared.driver.clock.autojump_to(next);
                    shared.driver.fire_due_timers();
                }
            }
            IdleAction::Deadlock => {
                // Checked again now that the driver found nothing to do.
                if !self.nothing_can_wake() {
                    return;
                }
                shared
                    .watchdog
                    .set_report(crate::lowlevel::snapshot_of(self.root, true).to_string());
                // Let `block_on` see it: its thread may be parked (multi-threaded flavour) or
                // be this one (current-thread flavour, which checks after parking).
                shared.scheduler.main.parker.unpark();
            }
        }
    }

    fn has_idle_watchers(&self) -> bool {
        self.shared.has_idle_watchers()
    }

    fn must_stop(&self) -> bool {
        self.shared.watchdog.tripped()
    }
}

impl RuntimeHost<'_> {
    /// Every task is blocked (the caller saw the scheduler quiescent): can anything still wake
    /// one? Only when deadlock detection is on; a false "nothing" would stop a healthy run, so
    /// anything trellis cannot see through counts as "something".
    fn nothing_can_wake(&self) -> bool {
        let shared = self.shared;
        let w = &shared.watchdog;
        // A timer the clock will never reach by itself (a stopped mock clock without autojump)
        // counts as none.
        w.enabled
            && shared.driver.timer_timeout().is_none()
            && !shared.driver.reactor.has_sources()
            && w.offloaded.load(Ordering::SeqCst) == 0
            && w.portals.load(Ordering::SeqCst) == 0
            && !w.main_foreign.load(Ordering::SeqCst)
            && !node::any_foreign_wait(self.root)
    }
}
