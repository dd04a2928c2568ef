//! `MockClock`: virtual time for tests.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::error::Error;
use crate::runtime::{context, driver};
use crate::state_lock::lock_blocking;
use crate::time::clock::saturating_add;
use crate::time::clock::Clock;

/// A clock whose time moves only when told: by [`jump`](MockClock::jump), by running at a
/// [`rate`](MockClock::set_rate) of real time, or by *autojump* — when every task is blocked for
/// the [threshold](MockClock::set_autojump_threshold), time jumps to the next deadline. With
/// autojump at zero, a test of a 30-second timeout finishes in microseconds, deterministically.
///
/// ```
/// use std::time::Duration;
/// use trellis::{testing::MockClock, Flavor, Runtime};
///
/// let clock = MockClock::new();
/// clock.set_autojump_threshold(Some(Duration::ZERO));
/// let rt = Runtime::builder().flavor(Flavor::CurrentThread).clock(clock.clone()).build().unwrap();
/// rt.block_on(async {
///     let start = trellis::now();
///     trellis::sleep(Duration::from_secs(30)).await.unwrap();
///     assert_eq!(trellis::now() - start, Duration::from_secs(30));
/// });
/// ```
#[derive(Debug, Clone)]
pub struct MockClock {
    inner: Arc<Mutex<State>>,
}

#[derive(Debug)]
struct State {
    /// Virtual time at `real_base`.
    virtual_base: Instant,
    /// Real time when `virtual_base` was last set (rate changes rebase here).
    real_base: Instant,
    rate: f64,
    autojump: Option<Duration>,
}

impl State {
    fn now(&self) -> Instant {
        if self.rate == 0.0 {
            return self.virtual_base;
        }
        let real = self.real_base.elapsed().as_secs_f64() * self.rate;
        let elapsed = Duration::try_from_secs_f64(real).unwrap_or(Duration::MAX);
        saturating_add(self.virtual_base, elapsed)
    }

    fn rebase(&mut self) {
        self.virtual_base = self.now();
        self.real_base = Instant::now();
    }
}

impl Default for MockClock {
    fn default() -> Self {
        Self::new()
    }
}

impl MockClock {
    /// A stopped clock (rate 0, no autojump).
    ///
    /// ```
    /// use std::time::Duration;
    /// use trellis::testing::MockClock;
    /// use trellis::Clock;
    ///
    /// let clock = MockClock::new();
    /// assert_eq!(clock.rate(), 0.0); // stopped: time moves only when told to
    /// assert_eq!(clock.autojump_threshold(), None);
    /// let t = clock.now();
    /// std::thread::sleep(Duration::from_millis(2));
    /// assert_eq!(clock.now(), t);
    /// ```
    pub fn new() -> Self {
        let now = Instant::now();
        MockClock {
            inner: Arc::new(Mutex::new(State {
                virtual_base: now,
                real_base: now,
                rate: 0.0,
                autojump: None,
            })),
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        lock_blocking(&self.inner)
    }

    /// Moves time forward by `by`. Timers that became due fire at once when called inside the
    /// runtime, so the next checkpoint sees a passed deadline. A jump past the latest time an
    /// `Instant` can hold stops there.
    ///
    /// ```
    /// use std::time::Duration;
    /// use trellis::testing::MockClock;
    ///
    /// let clock = MockClock::new();
    /// let rt = trellis::Runtime::builder()
    ///     .flavor(trellis::Flavor::CurrentThread)
    ///     .clock(clock.clone())
    ///     .build()
    ///     .unwrap();
    /// rt.block_on(async {
    ///     trellis::nursery(|n| async move {
    ///         let sleeper = n.spawn(async {
    ///             trellis::sleep(Duration::from_secs(10)).await?;
    ///             Ok("woke")
    ///         })?;
    ///         trellis::testing::wait_all_tasks_blocked().await?;
    ///         clock.jump(Duration::from_secs(10)); // the sleep is due: it ends at once
    ///         assert_eq!(sleeper.await?, "woke");
    ///         Ok::<_, trellis::Error>(())
    ///     })
    ///     .await
    ///     .unwrap();
    /// });
    /// ```
    pub fn jump(&self, by: Duration) {
        {
            let mut s = self.state();
            s.rebase();
            s.virtual_base = saturating_add(s.virtual_base, by);
        }
        self.time_changed();
    }

    /// The speed of virtual time relative to real time (0 = stopped, the default).
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for a negative or non-finite rate.
    ///
    /// ```
    /// use std::time::Duration;
    /// use trellis::testing::MockClock;
    /// use trellis::Clock;
    ///
    /// let clock = MockClock::new();
    /// clock.set_rate(1000.0).unwrap(); // a virtual second per real millisecond
    /// let t = clock.now();
    /// std::thread::sleep(Duration::from_millis(5));
    /// assert!(clock.now() - t >= Duration::from_secs(5));
    /// assert!(clock.set_rate(-1.0).is_err());
    /// ```
    pub fn set_rate(&self, rate: f64) -> Result<(), Error> {
        if !rate.is_finite() || rate < 0.0 {
            return Err(Error::InvalidArgument(
                "MockClock rate must be finite and >= 0",
            ));
        }
        let mut s = self.state();
        s.rebase();
        s.rate = rate;
        drop(s);
        self.time_changed();
        Ok(())
    }

    /// The current rate.
    ///
    /// ```
    /// let clock = trellis::testing::MockClock::new();
    /// clock.set_rate(2.5).unwrap();
    /// assert_eq!(clock.rate(), 2.5);
    /// ```
    pub fn rate(&self) -> f64 {
        self.state().rate
    }

    /// Enables autojump: once every task has been blocked for `threshold` of real time, time
    /// jumps to the next deadline. `None` disables it.
    ///
    /// ```
    /// use std::time::{Duration, Instant};
    /// use trellis::testing::MockClock;
    ///
    /// let clock = MockClock::new();
    /// clock.set_autojump_threshold(Some(Duration::ZERO));
    /// let rt = trellis::Runtime::builder()
    ///     .flavor(trellis::Flavor::CurrentThread)
    ///     .clock(clock)
    ///     .build()
    ///     .unwrap();
    /// let real = Instant::now();
    /// rt.block_on(async {
    ///     // A day of virtual time, in no time at all.
    ///     trellis::sleep(Duration::from_secs(86_400)).await.unwrap();
    /// });
    /// assert!(real.elapsed() < Duration::from_secs(10));
    /// ```
    pub fn set_autojump_threshold(&self, threshold: Option<Duration>) {
        self.state().autojump = threshold;
        self.time_changed();
    }

    /// The autojump threshold.
    ///
    /// ```
    /// use std::time::Duration;
    ///
    /// let clock = trellis::testing::MockClock::new();
    /// clock.set_autojump_threshold(Some(Duration::from_millis(10)));
    /// assert_eq!(clock.autojump_threshold(), Some(Duration::from_millis(10)));
    /// clock.set_autojump_threshold(None);
    /// assert_eq!(clock.autojump_threshold(), None);
    /// ```
    pub fn autojump_threshold(&self) -> Option<Duration> {
        self.state().autojump
    }

    fn time_changed(&self) {
        driver::forget_cached_now();
        if let Some(rt) = context::try_current() {
            rt.driver.fire_due_timers();
            rt.scheduler.kick_driver(&rt.driver);
        }
    }
}

impl Clock for MockClock {
    fn now(&self) -> Instant {
        self.state().now()
    }

    fn real_duration_until(&self, deadline: Instant) -> Option<Duration> {
        let s = self.state();
        if s.rate == 0.0 {
            return None;
        }
        // A wait too long to express is no timeout at all.
        Duration::try_from_secs_f64(
            deadline.saturating_duration_since(s.now()).as_secs_f64() / s.rate,
        )
        .ok()
    }

    fn autojump_threshold(&self) -> Option<Duration> {
        self.state().autojump
    }

    fn autojump_to(&self, deadline: Instant) {
        driver::forget_cached_now();
        let mut s = self.state();
        s.rebase();
        if deadline > s.virtual_base {
            s.virtual_base = deadline;
        }
    }
}
