//! `Event`: a flag that tasks can wait for (trio's `Event`: set once, never cleared).

use std::fmt;
use std::future::Future;
use std::sync::Mutex;

use super::parking_lot::{lock, Op, ParkingLot, Site, WakeList, MAIN};
use crate::error::Cancelled;

/// A one-shot flag: [`wait`](Event::wait) blocks until [`set`](Event::set) is called, and
/// returns at once afterwards. As in trio there is no `clear`: to signal again, make a new
/// `Event` (an event that can be reset invites races between "set" and "reset").
///
/// ```
/// use std::sync::Arc;
/// use trellis::sync::Event;
///
/// trellis::run(async {
///     let ready = Arc::new(Event::new());
///     trellis::nursery(|n| {
///         let ready = ready.clone();
///         async move {
///             let waiter = ready.clone();
///             n.spawn(async move {
///                 waiter.wait().await?; // blocks until set
///                 Ok(())
///             })?;
///             ready.set();
///             Ok::<_, trellis::Error>(())
///         }
///     })
///     .await
///     .unwrap();
///     assert!(ready.is_set());
/// });
/// ```
#[derive(Default)]
pub struct Event {
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    set: bool,
    lot: ParkingLot<(), ()>,
}

/// Counters of an [`Event`].
///
/// ```
/// use std::sync::Arc;
/// use trellis::sync::Event;
///
/// trellis::run(async {
///     let event = Arc::new(Event::new());
///     trellis::nursery(|n| {
///         let event = event.clone();
///         async move {
///             let waiter = event.clone();
///             n.spawn(async move { Ok(waiter.wait().await?) })?;
///             trellis::testing::wait_all_tasks_blocked().await?;
///             assert_eq!(event.statistics().tasks_waiting, 1);
///             event.set();
///             Ok::<_, trellis::Error>(())
///         }
///     })
///     .await
///     .unwrap();
///     assert_eq!(event.statistics().tasks_waiting, 0);
/// });
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct EventStatistics {
    /// Tasks blocked in [`Event::wait`].
    pub tasks_waiting: usize,
}

struct WaitSite;

impl Site for WaitSite {
    type State = State;
    type Value = ();
    type Request = ();
    type Output = ();
    type Error = Cancelled;
    const NAME: &'static str = "sync::Event::wait";

    fn lot(state: &mut State) -> &mut ParkingLot<(), ()> {
        &mut state.lot
    }

    fn attempt(state: &mut State, (): &mut (), _: &mut WakeList) -> Option<()> {
        state.set.then_some(())
    }

    fn finish((): (), (): ()) -> Result<(), Cancelled> {
        Ok(())
    }

    fn cancelled(c: Cancelled, (): ()) -> Cancelled {
        c
    }

    // Being woken by `set` holds nothing: a waiter dropped after it was woken gives nothing back.
    fn redeliver(_: &mut State, (): (), _: &mut (), _: &mut WakeList) -> Option<()> {
        None
    }
}

impl Event {
    /// A new, unset event.
    ///
    /// ```
    /// let event = trellis::sync::Event::new();
    /// assert!(!event.is_set());
    /// ```
    pub fn new() -> Self {
        Event::default()
    }

    /// Sets the flag and wakes every waiter. Idempotent; not a checkpoint; usable from any
    /// thread, inside or outside the runtime.
    ///
    /// ```
    /// use std::sync::Arc;
    /// use trellis::sync::Event;
    ///
    /// let event = Arc::new(Event::new());
    /// let setter = event.clone();
    /// // From a plain thread, no runtime needed.
    /// std::thread::spawn(move || setter.set()).join().unwrap();
    /// event.set(); // again: no effect
    /// assert!(event.is_set());
    /// ```
    pub fn set(&self) {
        let mut wakes = WakeList::new();
        let mut st = lock(&self.state);
        st.set = true;
        st.lot.unpark_n(MAIN, usize::MAX, |_| (), &mut wakes);
        drop(st);
        wakes.wake_all();
    }

    /// Whether [`set`](Event::set) has been called.
    ///
    /// ```
    /// let event = trellis::sync::Event::new();
    /// assert!(!event.is_set());
    /// event.set();
    /// assert!(event.is_set());
    /// ```
    pub fn is_set(&self) -> bool {
        lock(&self.state).set
    }

    /// Waits until the flag is set. A checkpoint, also when the flag is already set.
    ///
    /// ```
    /// use std::sync::Arc;
    /// use trellis::sync::Event;
    ///
    /// trellis::run(async {
    ///     let done = Arc::new(Event::new());
    ///     trellis::nursery(|n| {
    ///         let done = done.clone();
    ///         async move {
    ///             let signal = done.clone();
    ///             n.spawn(async move {
    ///                 trellis::checkpoint().await?;
    ///                 signal.set();
    ///                 Ok(())
    ///             })?;
    ///             done.wait().await?; // returns once the task has set it
    ///             assert!(done.is_set());
    ///             Ok::<_, trellis::Error>(())
    ///         }
    ///     })
    ///     .await
    ///     .unwrap();
    /// });
    /// ```
    ///
    /// # Errors
    /// [`Cancelled`] if the enclosing scope is cancelled first.
    pub fn wait(&self) -> impl Future<Output = Result<(), Cancelled>> + '_ {
        Op::<WaitSite>::new(&self.state, ())
    }

    /// Counters, for debugging.
    ///
    /// ```
    /// let event = trellis::sync::Event::new();
    /// assert_eq!(event.statistics().tasks_waiting, 0);
    /// ```
    pub fn statistics(&self) -> EventStatistics {
        EventStatistics {
            tasks_waiting: lock(&self.state).lot.len(MAIN),
        }
    }
}

impl fmt::Debug for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let st = lock(&self.state);
        f.debug_struct("Event")
            .field("set", &st.set)
            .field("tasks_waiting", &st.lot.len(MAIN))
            .finish()
    }
}
