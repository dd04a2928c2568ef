//! `OnceCell`: a value initialised once, by the first task that asks, while the others wait.
//!
//! # The protocol
//!
//! The value lives in a `std::sync::OnceLock`, so [`OnceCell::get`] is a plain load that never
//! takes a lock. Who may initialise it is decided under the primitive's mutex, by one *turn*:
//!
//! ```text
//!   empty ──get_or_init: take the turn──► initialising ──init Ok──► initialised (wake all: Ready)
//!                                           │   ▲
//!                     init failed,          │   │ the first parked waiter is handed the turn
//!                     cancelled, dropped,   └───┘ (nobody waits: back to empty)
//!                     or panicked
//! ```
//!
//! While a task holds the turn, every other `get_or_init` parks in the lot. The turn is held by
//! an `InitGuard` for as long as the initialiser runs; if the guard is dropped without a value
//! (the initialiser returned an error, its scope was cancelled, its future was dropped, or it
//! panicked), the turn is handed to the *first* parked waiter, exactly one, which then runs its
//! own initialiser. The turn is a value handed through the lot like a lock, so the lot's rules
//! make it cancel-safe: a waiter handed the turn and dropped before it ran passes it on
//! ([`Site::redeliver`]); one that sees its scope cancelled after being handed the turn passes it
//! on before returning `Cancelled`, without calling its initialiser. There is never more than one
//! initialiser, and a turn is never lost while a waiter is parked.

use std::fmt;
use std::future::Future;
use std::sync::{Mutex, OnceLock};

use super::parking_lot::{lock, Op, ParkingLot, Site, WakeList, MAIN};
use crate::cancel::current_cancellation;
use crate::error::Cancelled;

/// A cell that is written once, by the first task that calls
/// [`get_or_init`](OnceCell::get_or_init) (or [`set`](OnceCell::set)); later readers get a shared
/// reference to the value (tokio's `OnceCell`, for lazily initialised shared state).
///
/// While one task runs the initialiser, the others wait for its value. If the initialiser fails,
/// is cancelled or is dropped, the cell stays empty and exactly one of the waiting tasks takes
/// over with its own initialiser; the rest keep waiting.
///
/// ```
/// use std::sync::Arc;
/// use trellis::sync::OnceCell;
///
/// trellis::run(async {
///     let config = Arc::new(OnceCell::new());
///     trellis::nursery(|n| {
///         let config = config.clone();
///         async move {
///             for _ in 0..3 {
///                 let config = config.clone();
///                 n.spawn(async move {
///                     // Only the first task runs the initialiser; the others wait for it.
///                     let value = config.get_or_init(|| async { "loaded".to_string() }).await?;
///                     assert_eq!(value, "loaded");
///                     Ok(())
///                 })?;
///             }
///             Ok::<_, trellis::Error>(())
///         }
///     })
///     .await
///     .unwrap();
///     assert_eq!(config.get().map(String::as_str), Some("loaded"));
/// });
/// ```
///
/// Differences from tokio's `OnceCell`: [`get_or_init`](OnceCell::get_or_init) and
/// [`get_or_try_init`](OnceCell::get_or_try_init) are checkpoints (principle 3), also when the
/// value is already there, so they return `Result`s that carry a cancellation; use
/// [`get`](OnceCell::get) for a plain read. trio has no such cell; its users build one from an
/// `Event` and a flag, which is what this packages, with the hand-over made cancel-safe.
pub struct OnceCell<T> {
    value: OnceLock<T>,
    state: Mutex<State>,
}

struct State {
    /// Mirrors `value.get().is_some()` under the mutex, for the lot's decisions.
    initialized: bool,
    /// A task holds the turn (it runs the initialiser, or was handed the turn and will).
    initializing: bool,
    lot: ParkingLot<Handoff, ()>,
}

/// What a waiter of `get_or_init` is handed.
enum Handoff {
    /// The value is there.
    Ready,
    /// The initialiser before failed: run yours.
    Turn,
}

impl State {
    /// The holder of the turn gives it up without a value: to the first waiter, or to nobody.
    fn pass_turn(&mut self, wakes: &mut WakeList) {
        debug_assert!(self.initializing && !self.initialized);
        if self.lot.unpark(MAIN, Handoff::Turn, wakes).is_err() {
            self.initializing = false;
        }
    }
}

/// Why [`OnceCell::set`] refused a value; the value comes back inside.
///
/// ```
/// use trellis::sync::{OnceCell, SetError};
///
/// let cell = OnceCell::new();
/// cell.set(1).unwrap();
/// let err = cell.set(2).unwrap_err();
/// assert!(matches!(err, SetError::AlreadyInitialized(2)));
/// assert_eq!(err.into_inner(), 2);
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SetError<T> {
    /// The cell already holds a value.
    #[error("the cell is already initialised")]
    AlreadyInitialized(T),
    /// A task is running an initialiser right now (that task decides the value).
    #[error("the cell is being initialised by another task")]
    Initializing(T),
}

impl<T> SetError<T> {
    /// The value that was not stored.
    ///
    /// ```
    /// let cell = trellis::sync::OnceCell::from("first");
    /// assert_eq!(cell.set("second").unwrap_err().into_inner(), "second");
    /// ```
    pub fn into_inner(self) -> T {
        match self {
            SetError::AlreadyInitialized(v) | SetError::Initializing(v) => v,
        }
    }
}

struct InitSite;

impl Site for InitSite {
    type State = State;
    type Value = Handoff;
    type Request = ();
    type Output = Handoff;
    type Error = Cancelled;
    const NAME: &'static str = "sync::OnceCell::get_or_init";

    fn lot(state: &mut State) -> &mut ParkingLot<Handoff, ()> {
        &mut state.lot
    }

    fn attempt(state: &mut State, (): &mut (), _: &mut WakeList) -> Option<Handoff> {
        if state.initialized {
            return Some(Handoff::Ready);
        }
        if state.initializing {
            return None;
        }
        state.initializing = true;
        Some(Handoff::Turn)
    }

    fn finish(value: Handoff, (): ()) -> Result<Handoff, Cancelled> {
        Ok(value)
    }

    fn cancelled(c: Cancelled, (): ()) -> Cancelled {
        c
    }

    // A turn handed to (or taken by) a waiter dropped before it ran goes to the next waiter;
    // being told the value is ready holds nothing.
    fn redeliver(
        state: &mut State,
        value: Handoff,
        _: &mut (),
        wakes: &mut WakeList,
    ) -> Option<Handoff> {
        if let Handoff::Turn = value {
            state.pass_turn(wakes);
        }
        None
    }
}

/// Holds the turn while an initialiser runs; dropped without a value, it passes the turn on.
struct InitGuard<'a> {
    state: &'a Mutex<State>,
}

impl Drop for InitGuard<'_> {
    fn drop(&mut self) {
        let mut wakes = WakeList::new();
        lock(self.state).pass_turn(&mut wakes);
        wakes.wake_all();
    }
}

impl<T> OnceCell<T> {
    /// An empty cell. A `const fn`, so a cell can be a `static`.
    ///
    /// ```
    /// use trellis::sync::OnceCell;
    ///
    /// static GREETING: OnceCell<String> = OnceCell::new();
    ///
    /// trellis::run(async {
    ///     let g = GREETING.get_or_init(|| async { "hello".to_string() }).await?;
    ///     assert_eq!(g, "hello");
    ///     Ok::<_, trellis::Cancelled>(())
    /// })
    /// .unwrap();
    /// ```
    pub const fn new() -> Self {
        OnceCell {
            value: OnceLock::new(),
            state: Mutex::new(State {
                initialized: false,
                initializing: false,
                lot: ParkingLot::new(),
            }),
        }
    }

    /// The value, if the cell is initialised. Never waits; not a checkpoint; usable anywhere.
    ///
    /// ```
    /// let cell = trellis::sync::OnceCell::new();
    /// assert_eq!(cell.get(), None);
    /// cell.set(5).unwrap();
    /// assert_eq!(cell.get(), Some(&5));
    /// ```
    pub fn get(&self) -> Option<&T> {
        self.value.get()
    }

    /// Whether the cell holds a value.
    ///
    /// ```
    /// let cell = trellis::sync::OnceCell::new();
    /// assert!(!cell.initialized());
    /// cell.set(()).unwrap();
    /// assert!(cell.initialized());
    /// ```
    pub fn initialized(&self) -> bool {
        self.value.get().is_some()
    }

    /// Stores `value` if the cell is empty and nobody is initialising it; wakes the tasks
    /// waiting in [`get_or_init`](OnceCell::get_or_init) (there are none unless an initialiser
    /// runs, and then `set` refuses). Not a checkpoint; usable outside a runtime.
    ///
    /// # Errors
    /// The value comes back in [`SetError::AlreadyInitialized`] or, while a task runs an
    /// initialiser, [`SetError::Initializing`].
    ///
    /// ```
    /// use trellis::sync::{OnceCell, SetError};
    ///
    /// let cell = OnceCell::new();
    /// assert_eq!(cell.set("a"), Ok(()));
    /// assert_eq!(cell.set("b"), Err(SetError::AlreadyInitialized("b")));
    /// assert_eq!(cell.get(), Some(&"a"));
    /// ```
    pub fn set(&self, value: T) -> Result<(), SetError<T>> {
        let mut st = lock(&self.state);
        if st.initialized {
            return Err(SetError::AlreadyInitialized(value));
        }
        if st.initializing {
            return Err(SetError::Initializing(value));
        }
        // Nobody holds the turn, so nobody else stores a value: this cannot fail.
        if self.value.set(value).is_err() {
            unreachable!("the cell is filled only under its lock, by the holder of the turn");
        }
        st.initialized = true;
        Ok(())
    }

    /// The value, initialising the cell with `init().await` if it is empty. If another task is
    /// initialising it, waits for that task's value; if that task's initialiser fails, is
    /// cancelled or is dropped, exactly one waiter (the one that waited longest) runs its own
    /// `init` instead.
    ///
    /// A checkpoint, also when the value is already there (use [`get`](OnceCell::get) for a
    /// plain read). Cancel-safe: a cancelled wait leaves the queue and keeps no turn; a
    /// cancelled initialiser leaves the cell empty and passes the turn on.
    ///
    /// # Errors
    /// [`Cancelled`] if the enclosing scope was cancelled before the value was there (`init`
    /// was then not called, or its future was dropped). An initialiser that cannot finish
    /// because of a cancellation should use [`get_or_try_init`](OnceCell::get_or_try_init),
    /// which lets it fail.
    ///
    /// ```
    /// use trellis::sync::OnceCell;
    ///
    /// trellis::run(async {
    ///     let cell = OnceCell::new();
    ///     assert_eq!(*cell.get_or_init(|| async { 1 + 1 }).await?, 2);
    ///     // Already initialised: the new initialiser is not called.
    ///     assert_eq!(*cell.get_or_init(|| async { unreachable!() }).await?, 2);
    ///     Ok::<_, trellis::Cancelled>(())
    /// })
    /// .unwrap();
    /// ```
    pub async fn get_or_init<F, Fut>(&self, init: F) -> Result<&T, Cancelled>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = T>,
    {
        self.get_or_try_init(|| async { Ok(init().await) }).await
    }

    /// As [`get_or_init`](OnceCell::get_or_init), with an initialiser that may fail: its error
    /// is returned to this caller, the cell stays empty, and the first waiting task (if any)
    /// takes over with its own initialiser.
    ///
    /// # Errors
    /// The initialiser's error, or the cancellation (converted with `From<Cancelled>`) if the
    /// enclosing scope was cancelled while waiting or before starting.
    ///
    /// ```
    /// use trellis::sync::OnceCell;
    ///
    /// trellis::run(async {
    ///     let cell = OnceCell::new();
    ///     let failed = cell
    ///         .get_or_try_init(|| async { Err::<u32, _>(trellis::Error::BrokenResource) })
    ///         .await;
    ///     assert!(matches!(failed, Err(trellis::Error::BrokenResource)));
    ///     assert!(!cell.initialized()); // a failure stores nothing
    ///     let value = cell.get_or_try_init(|| async { Ok::<_, trellis::Error>(7) }).await?;
    ///     assert_eq!(*value, 7);
    ///     Ok::<_, trellis::Error>(())
    /// })
    /// .unwrap();
    /// ```
    pub async fn get_or_try_init<E, F, Fut>(&self, init: F) -> Result<&T, E>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<T, E>>,
        E: From<Cancelled>,
    {
        match Op::<InitSite>::new(&self.state, ()).await? {
            Handoff::Ready => Ok(self
                .value
                .get()
                .expect("Ready is handed once the value is set")),
            Handoff::Turn => {
                let guard = InitGuard { state: &self.state };
                // A turn handed over after this task's scope was cancelled is passed on before
                // `init` is called: a cancelled caller never starts an initialiser.
                if let Some(c) = current_cancellation(InitSite::NAME) {
                    drop(guard);
                    return Err(c.into());
                }
                let value = init().await?;
                std::mem::forget(guard);
                Ok(self.complete(value))
            }
        }
    }

    /// The holder of the turn stores the value and wakes every waiter.
    fn complete(&self, value: T) -> &T {
        let mut wakes = WakeList::new();
        let mut st = lock(&self.state);
        if self.value.set(value).is_err() {
            unreachable!("only the holder of the turn stores a value while it holds it");
        }
        st.initialized = true;
        st.initializing = false;
        st.lot
            .unpark_n(MAIN, usize::MAX, |_| Handoff::Ready, &mut wakes);
        drop(st);
        wakes.wake_all();
        self.value.get().expect("stored above")
    }

    /// The value, if any, consuming the cell.
    ///
    /// ```
    /// let cell = trellis::sync::OnceCell::from(vec![1, 2]);
    /// assert_eq!(cell.into_inner(), Some(vec![1, 2]));
    /// assert_eq!(trellis::sync::OnceCell::<u8>::new().into_inner(), None);
    /// ```
    pub fn into_inner(self) -> Option<T> {
        self.value.into_inner()
    }
}

impl<T> Default for OnceCell<T> {
    /// An empty cell.
    ///
    /// ```
    /// let cell: trellis::sync::OnceCell<u8> = Default::default();
    /// assert!(!cell.initialized());
    /// ```
    fn default() -> Self {
        OnceCell::new()
    }
}

impl<T> From<T> for OnceCell<T> {
    /// A cell that already holds `value`.
    ///
    /// ```
    /// let cell = trellis::sync::OnceCell::from(3);
    /// assert_eq!(cell.get(), Some(&3));
    /// ```
    fn from(value: T) -> Self {
        let cell = OnceCell::new();
        if cell.set(value).is_err() {
            unreachable!("a new cell is empty");
        }
        cell
    }
}

impl<T: fmt::Debug> fmt::Debug for OnceCell<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The user's `Debug` runs after the lock is released.
        let (initializing, waiting) = {
            let st = lock(&self.state);
            (st.initializing, st.lot.len(MAIN))
        };
        f.debug_struct("OnceCell")
            .field("value", &self.value.get())
            .field("initializing", &initializing)
            .field("tasks_waiting", &waiting)
            .finish()
    }
}
