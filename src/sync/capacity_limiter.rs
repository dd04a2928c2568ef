//! `CapacityLimiter`: at most `total_tokens` borrowers at once, one token each (trio's
//! `CapacityLimiter`).
//!
//! State: the total, the set of borrowers holding a token (with the order they got it, for
//! statistics), and the lot of waiting borrowers. Invariant: a waiter is parked only while no
//! token is free, except right after `set_total_tokens` or a release, which serve the front of
//! the line before returning. A token handed to a waiter is recorded for the waiter's borrower
//! at hand-off; if the waiter is dropped before it runs, redelivery releases it for that
//! borrower, which passes it to the next waiter.

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use super::parking_lot::{self, lock, Op, ParkingLot, Site, WakeList, MAIN};
use crate::cancel::outside_runtime;
use crate::error::{Cancelled, Error};

/// Who holds a [`CapacityLimiter`] token. Each borrower may hold at most one token of a given
/// limiter.
///
/// By default the borrower is the task that calls [`acquire`](CapacityLimiter::acquire); use
/// [`Borrower::unique`] for work that is not tied to one task (a job handed to a thread pool), or
/// [`Borrower::from_id`] to name borrowers yourself.
///
/// ```
/// use trellis::sync::{Borrower, CapacityLimiter};
///
/// let limiter = CapacityLimiter::new(2);
/// // Two jobs not tied to a task, each its own borrower.
/// let (job_a, job_b) = (Borrower::unique(), Borrower::unique());
/// let a = limiter.try_acquire_on_behalf_of(job_a).unwrap();
/// let _b = limiter.try_acquire_on_behalf_of(job_b).unwrap();
/// assert_eq!(a.borrower(), job_a);
/// assert_eq!(limiter.available_tokens(), 0);
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Borrower(BorrowerKind);

#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
enum BorrowerKind {
    Task(u64),
    Unique(u64),
    Id(u64),
}

impl Borrower {
    /// The task running the calling code.
    ///
    /// # Panics
    /// Outside a trellis task.
    ///
    /// ```
    /// use trellis::sync::{Borrower, CapacityLimiter};
    ///
    /// trellis::run(async {
    ///     let limiter = CapacityLimiter::new(1);
    ///     let token = limiter.acquire().await.unwrap();
    ///     assert_eq!(token.borrower(), Borrower::current_task());
    /// });
    /// ```
    pub fn current_task() -> Borrower {
        match parking_lot::current_task_id() {
            Some(id) => Borrower(BorrowerKind::Task(id)),
            None => outside_runtime("sync::Borrower::current_task"),
        }
    }

    /// A borrower distinct from every other borrower created in this process.
    ///
    /// ```
    /// use trellis::sync::Borrower;
    ///
    /// assert_ne!(Borrower::unique(), Borrower::unique());
    /// ```
    pub fn unique() -> Borrower {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        Borrower(BorrowerKind::Unique(NEXT.fetch_add(1, Ordering::Relaxed)))
    }

    /// A borrower named by the caller: equal ids are the same borrower (never equal to a task or
    /// a [`unique`](Borrower::unique) borrower).
    ///
    /// ```
    /// use trellis::sync::{Borrower, CapacityLimiter};
    ///
    /// assert_eq!(Borrower::from_id(7), Borrower::from_id(7));
    /// let limiter = CapacityLimiter::new(5);
    /// let _held = limiter.try_acquire_on_behalf_of(Borrower::from_id(7)).unwrap();
    /// // The same borrower may not hold two tokens.
    /// assert!(limiter.try_acquire_on_behalf_of(Borrower::from_id(7)).is_err());
    /// ```
    pub fn from_id(id: u64) -> Borrower {
        Borrower(BorrowerKind::Id(id))
    }
}

impl fmt::Debug for Borrower {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            BorrowerKind::Task(id) => write!(f, "Borrower(task {id})"),
            BorrowerKind::Unique(n) => write!(f, "Borrower(unique {n})"),
            BorrowerKind::Id(id) => write!(f, "Borrower({id})"),
        }
    }
}

/// Limits how many borrowers may use a resource at once (trio's `CapacityLimiter`).
///
/// Like a semaphore whose permits ("tokens") are tied to a borrower: each borrower holds at most
/// one token, so a limiter of 10 tokens means "at most 10 tasks (or jobs) at a time". Waiters are
/// served in FIFO order, the total can be changed at run time (raising it serves waiters at once),
/// and [`statistics`](CapacityLimiter::statistics) shows who holds tokens. The handle is cheap to
/// clone; clones share the tokens.
///
/// Acquiring gives a [`LimiterToken`] that gives the token back when dropped; it is `'static` and
/// `Send`, so it can travel with the work (into a thread, for example).
///
/// ```
/// use trellis::sync::CapacityLimiter;
///
/// trellis::run(async {
///     let limiter = CapacityLimiter::new(2);
///     trellis::nursery(|n| async move {
///         for _ in 0..10 {
///             let limiter = limiter.clone();
///             n.spawn(async move {
///                 let _token = limiter.acquire().await?; // at most 2 tasks past here at once
///                 assert!(limiter.borrowed_tokens() <= 2);
///                 trellis::checkpoint().await?;
///                 Ok(())
///             })?;
///         }
///         Ok::<_, trellis::Error>(())
///     })
///     .await
///     .unwrap();
/// });
/// ```
///
/// Cancel safety: a cancelled or dropped `acquire` holds no token and keeps no place in the
/// line; a token handed to a waiter that is dropped before it runs passes to the next waiter.
#[derive(Clone)]
pub struct CapacityLimiter {
    inner: Arc<Mutex<State>>,
}

struct State {
    total: usize,
    /// Borrowers holding a token, with the sequence number of their acquisition.
    borrowers: HashMap<Borrower, u64>,
    seq: u64,
    /// A waiter is handed `true` with its token, or `false` if its borrower got one meanwhile.
    lot: ParkingLot<bool, Borrower>,
}

impl State {
    fn grant(&mut self, borrower: Borrower) {
        self.seq += 1;
        self.borrowers.insert(borrower, self.seq);
    }

    /// Hands free tokens to the front of the line.
    fn serve(&mut self, wakes: &mut WakeList) {
        while self.borrowers.len() < self.total {
            let Some((key, &mut borrower)) = self.lot.front(MAIN) else {
                break;
            };
            // Two tasks waiting with one explicit borrower: the second is refused, not given a
            // second token the limiter would count once.
            let fresh = !self.borrowers.contains_key(&borrower);
            if fresh {
                self.grant(borrower);
            }
            self.lot.unpark_key(key, fresh, wakes);
        }
    }

    fn release(&mut self, borrower: Borrower, wakes: &mut WakeList) -> bool {
        if self.borrowers.remove(&borrower).is_none() {
            return false;
        }
        self.serve(wakes);
        true
    }
}

/// Counters of a [`CapacityLimiter`] (trio's `CapacityLimiterStatistics`).
///
/// ```
/// use trellis::sync::{Borrower, CapacityLimiter};
///
/// let limiter = CapacityLimiter::new(3);
/// let who = Borrower::from_id(1);
/// let _token = limiter.try_acquire_on_behalf_of(who).unwrap();
/// let stats = limiter.statistics();
/// assert_eq!((stats.borrowed_tokens, stats.total_tokens), (1, 3));
/// assert_eq!(stats.borrowers, [who]);
/// assert_eq!(stats.tasks_waiting, 0);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct CapacityLimiterStatistics {
    /// Tokens held.
    pub borrowed_tokens: usize,
    /// The limiter's total.
    pub total_tokens: usize,
    /// The borrowers holding tokens, in the order they got them.
    pub borrowers: Vec<Borrower>,
    /// Tasks blocked in `acquire`.
    pub tasks_waiting: usize,
}

struct AcquireSite;

/// Why a borrower's second acquire is refused.
const ALREADY_HOLDS: &str = "CapacityLimiter: this borrower already holds one of the limiter's \
     tokens, and a borrower holds at most one; acquire on behalf of a distinct Borrower \
     (Borrower::unique()) for several at once from one task";

impl Site for AcquireSite {
    type State = State;
    /// `false`: refused, the borrower already holds a token (`ALREADY_HOLDS`).
    type Value = bool;
    type Request = Borrower;
    type Output = Borrower;
    type Error = Error;
    const NAME: &'static str = "sync::CapacityLimiter::acquire";

    fn lot(state: &mut State) -> &mut ParkingLot<bool, Borrower> {
        &mut state.lot
    }

    fn attempt(state: &mut State, borrower: &mut Borrower, _: &mut WakeList) -> Option<bool> {
        if state.borrowers.contains_key(borrower) {
            return Some(false);
        }
        // Fairness: a free token is not taken past waiters (there are none when a token is free,
        // see the module comment; checked anyway).
        if state.borrowers.len() < state.total && state.lot.is_empty(MAIN) {
            state.grant(*borrower);
            Some(true)
        } else {
            None
        }
    }

    fn finish(granted: bool, borrower: Borrower) -> Result<Borrower, Error> {
        if granted {
            Ok(borrower)
        } else {
            Err(Error::InvalidArgument(ALREADY_HOLDS))
        }
    }

    fn cancelled(c: Cancelled, _: Borrower) -> Error {
        c.into()
    }

    fn redeliver(
        state: &mut State,
        granted: bool,
        borrower: &mut Borrower,
        wakes: &mut WakeList,
    ) -> Option<bool> {
        if granted {
            state.release(*borrower, wakes);
        }
        None
    }
}

impl CapacityLimiter {
    /// A limiter with `total_tokens` tokens (`usize::MAX` for no limit; 0 lets nobody through
    /// until the total is raised).
    ///
    /// ```
    /// let limiter = trellis::sync::CapacityLimiter::new(4);
    /// assert_eq!(limiter.total_tokens(), 4);
    /// assert_eq!(limiter.available_tokens(), 4);
    /// ```
    pub fn new(total_tokens: usize) -> Self {
        CapacityLimiter {
            inner: Arc::new(Mutex::new(State {
                total: total_tokens,
                borrowers: HashMap::new(),
                seq: 0,
                lot: ParkingLot::new(),
            })),
        }
    }

    /// Takes a token for the current task, waiting for one if none is free. A checkpoint.
    ///
    /// The current task is the borrower, and a borrower holds at most one token (as in trio).
    /// Several acquires from one task at once (futures run together with `join!` or
    /// `buffer_unordered`, which all run in the calling task) need a borrower each:
    /// `acquire_on_behalf_of(Borrower::unique())`.
    ///
    /// # Errors
    /// [`Error::Cancelled`] if the enclosing scope was cancelled before a token was handed
    /// over (no token is then held); [`Error::InvalidArgument`] if the task already holds one
    /// of this limiter's tokens (trio raises `RuntimeError`).
    ///
    /// # Panics
    /// Outside a runtime.
    ///
    /// ```
    /// use std::sync::atomic::{AtomicUsize, Ordering};
    /// use std::sync::Arc;
    /// use trellis::sync::CapacityLimiter;
    ///
    /// // The current-thread flavour runs tasks in a fixed order, so the count is exact.
    /// let rt = trellis::Runtime::builder()
    ///     .flavor(trellis::Flavor::CurrentThread)
    ///     .build()
    ///     .unwrap();
    /// rt.block_on(async {
    ///     // At most two tasks do the expensive part at once.
    ///     let limiter = CapacityLimiter::new(2);
    ///     let (inside, most) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    ///     trellis::nursery(|n| {
    ///         let (limiter, inside, most) = (limiter.clone(), inside.clone(), most.clone());
    ///         async move {
    ///             for _ in 0..6 {
    ///                 let (lim, inside, most) = (limiter.clone(), inside.clone(), most.clone());
    ///                 n.spawn(async move {
    ///                     let _token = lim.acquire().await?;
    ///                     let now = inside.fetch_add(1, Ordering::SeqCst) + 1;
    ///                     most.fetch_max(now, Ordering::SeqCst);
    ///                     trellis::checkpoint().await?;
    ///                     inside.fetch_sub(1, Ordering::SeqCst);
    ///                     Ok(())
    ///                 })?;
    ///             }
    ///             Ok::<_, trellis::Error>(())
    ///         }
    ///     })
    ///     .await
    ///     .unwrap();
    ///     assert_eq!(most.load(Ordering::SeqCst), 2);
    /// });
    /// ```
    pub async fn acquire(&self) -> Result<LimiterToken, Error> {
        self.acquire_on_behalf_of(Borrower::current_task()).await
    }

    /// Takes a token for `borrower`, waiting for one if none is free. A checkpoint.
    ///
    /// # Errors
    /// As for [`acquire`](CapacityLimiter::acquire).
    ///
    /// # Panics
    /// Outside a runtime.
    ///
    /// ```
    /// use trellis::sync::{Borrower, CapacityLimiter};
    ///
    /// trellis::run(async {
    ///     let limiter = CapacityLimiter::new(2);
    ///     // One task holding two tokens, for two jobs it hands out.
    ///     let one = limiter.acquire_on_behalf_of(Borrower::unique()).await.unwrap();
    ///     let two = limiter.acquire_on_behalf_of(Borrower::unique()).await.unwrap();
    ///     assert_eq!(limiter.borrowed_tokens(), 2);
    ///     drop((one, two));
    ///     assert_eq!(limiter.borrowed_tokens(), 0);
    /// });
    /// ```
    pub async fn acquire_on_behalf_of(&self, borrower: Borrower) -> Result<LimiterToken, Error> {
        let borrower = Op::<AcquireSite>::new(&self.inner, borrower).await?;
        Ok(self.token(borrower))
    }

    /// Takes a token for the current task if one is free now. Not a checkpoint.
    ///
    /// # Errors
    /// [`Error::WouldBlock`] if no token is free or others are waiting;
    /// [`Error::InvalidArgument`] if the task already holds one.
    ///
    /// # Panics
    /// Outside a runtime.
    ///
    /// ```
    /// use trellis::sync::CapacityLimiter;
    ///
    /// trellis::run(async {
    ///     let limiter = CapacityLimiter::new(1);
    ///     let token = limiter.try_acquire().unwrap();
    ///     // This task already holds the only token.
    ///     assert!(limiter.try_acquire().is_err());
    ///     drop(token);
    ///     assert!(limiter.try_acquire().is_ok());
    /// });
    /// ```
    pub fn try_acquire(&self) -> Result<LimiterToken, Error> {
        self.try_acquire_on_behalf_of(Borrower::current_task())
    }

    /// Takes a token for `borrower` if one is free now. Not a checkpoint; works outside a
    /// runtime.
    ///
    /// # Errors
    /// [`Error::WouldBlock`] if no token is free or others are waiting;
    /// [`Error::InvalidArgument`] if `borrower` already holds one.
    ///
    /// ```
    /// use trellis::sync::{Borrower, CapacityLimiter};
    ///
    /// let limiter = CapacityLimiter::new(1);
    /// let _held = limiter.try_acquire_on_behalf_of(Borrower::unique()).unwrap();
    /// let refused = limiter.try_acquire_on_behalf_of(Borrower::unique());
    /// assert!(matches!(refused, Err(trellis::Error::WouldBlock)));
    /// ```
    pub fn try_acquire_on_behalf_of(&self, borrower: Borrower) -> Result<LimiterToken, Error> {
        let mut wakes = WakeList::new();
        let mut b = borrower;
        let mut state = lock(&self.inner);
        match AcquireSite::attempt(&mut state, &mut b, &mut wakes) {
            Some(true) => Ok(self.token(borrower)),
            Some(false) => Err(Error::InvalidArgument(ALREADY_HOLDS)),
            None => Err(Error::WouldBlock),
        }
    }

    fn token(&self, borrower: Borrower) -> LimiterToken {
        LimiterToken {
            limiter: self.clone(),
            borrower,
            armed: true,
        }
    }

    /// Gives back the token `borrower` holds (one kept by [`LimiterToken::forget`]); the next
    /// waiter gets it.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] if `borrower` holds no token of this limiter.
    ///
    /// ```
    /// use trellis::sync::{Borrower, CapacityLimiter};
    ///
    /// let limiter = CapacityLimiter::new(1);
    /// let job = limiter.try_acquire_on_behalf_of(Borrower::unique()).unwrap().forget();
    /// assert_eq!(limiter.available_tokens(), 0);
    /// // Later, when the job is done:
    /// limiter.release_on_behalf_of(job).unwrap();
    /// assert_eq!(limiter.available_tokens(), 1);
    /// // It holds nothing now.
    /// assert!(limiter.release_on_behalf_of(job).is_err());
    /// ```
    pub fn release_on_behalf_of(&self, borrower: Borrower) -> Result<(), Error> {
        let mut wakes = WakeList::new();
        let released = lock(&self.inner).release(borrower, &mut wakes);
        wakes.wake_all();
        if released {
            Ok(())
        } else {
            Err(Error::InvalidArgument(
                "this borrower holds no token of this CapacityLimiter",
            ))
        }
    }

    /// The total number of tokens.
    ///
    /// ```
    /// assert_eq!(trellis::sync::CapacityLimiter::new(8).total_tokens(), 8);
    /// ```
    pub fn total_tokens(&self) -> usize {
        lock(&self.inner).total
    }

    /// Changes the total. Raising it hands the new tokens to waiters at once; lowering it below
    /// the tokens held takes effect as they are given back.
    ///
    /// ```
    /// use trellis::sync::{Borrower, CapacityLimiter};
    ///
    /// let limiter = CapacityLimiter::new(2);
    /// let _a = limiter.try_acquire_on_behalf_of(Borrower::unique()).unwrap();
    /// let _b = limiter.try_acquire_on_behalf_of(Borrower::unique()).unwrap();
    /// limiter.set_total_tokens(1); // held tokens stay held
    /// assert_eq!(limiter.borrowed_tokens(), 2);
    /// assert_eq!(limiter.available_tokens(), 0);
    /// limiter.set_total_tokens(3);
    /// assert_eq!(limiter.available_tokens(), 1);
    /// ```
    pub fn set_total_tokens(&self, total_tokens: usize) {
        let mut wakes = WakeList::new();
        let mut st = lock(&self.inner);
        st.total = total_tokens;
        st.serve(&mut wakes);
        drop(st);
        wakes.wake_all();
    }

    /// Tokens currently held.
    ///
    /// ```
    /// use trellis::sync::{Borrower, CapacityLimiter};
    ///
    /// let limiter = CapacityLimiter::new(2);
    /// let token = limiter.try_acquire_on_behalf_of(Borrower::unique()).unwrap();
    /// assert_eq!(limiter.borrowed_tokens(), 1);
    /// drop(token);
    /// assert_eq!(limiter.borrowed_tokens(), 0);
    /// ```
    pub fn borrowed_tokens(&self) -> usize {
        lock(&self.inner).borrowers.len()
    }

    /// Tokens free now (0 when more are held than the total, after lowering it).
    ///
    /// ```
    /// use trellis::sync::{Borrower, CapacityLimiter};
    ///
    /// let limiter = CapacityLimiter::new(2);
    /// let _token = limiter.try_acquire_on_behalf_of(Borrower::unique()).unwrap();
    /// assert_eq!(limiter.available_tokens(), 1);
    /// ```
    pub fn available_tokens(&self) -> usize {
        let st = lock(&self.inner);
        st.total.saturating_sub(st.borrowers.len())
    }

    /// Counters, for debugging.
    ///
    /// ```
    /// let limiter = trellis::sync::CapacityLimiter::new(1);
    /// assert!(limiter.statistics().borrowers.is_empty());
    /// ```
    pub fn statistics(&self) -> CapacityLimiterStatistics {
        let st = lock(&self.inner);
        let mut borrowers: Vec<(u64, Borrower)> =
            st.borrowers.iter().map(|(b, seq)| (*seq, *b)).collect();
        borrowers.sort_unstable_by_key(|(seq, _)| *seq);
        CapacityLimiterStatistics {
            borrowed_tokens: st.borrowers.len(),
            total_tokens: st.total,
            borrowers: borrowers.into_iter().map(|(_, b)| b).collect(),
            tasks_waiting: st.lot.len(MAIN),
        }
    }
}

impl fmt::Debug for CapacityLimiter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let st = lock(&self.inner);
        f.debug_struct("CapacityLimiter")
            .field("borrowed_tokens", &st.borrowers.len())
            .field("total_tokens", &st.total)
            .field("tasks_waiting", &st.lot.len(MAIN))
            .finish()
    }
}

/// A token of a [`CapacityLimiter`], held for one borrower. Dropping it gives the token back.
///
/// ```
/// use trellis::sync::{Borrower, CapacityLimiter, LimiterToken};
///
/// let limiter = CapacityLimiter::new(1);
/// {
///     let _token: LimiterToken = limiter.try_acquire_on_behalf_of(Borrower::unique()).unwrap();
///     assert_eq!(limiter.available_tokens(), 0);
/// }
/// assert_eq!(limiter.available_tokens(), 1); // given back when dropped
/// ```
#[must_use = "dropping the token gives it back at once"]
pub struct LimiterToken {
    limiter: CapacityLimiter,
    borrower: Borrower,
    armed: bool,
}

impl LimiterToken {
    /// The borrower holding this token.
    ///
    /// ```
    /// use trellis::sync::{Borrower, CapacityLimiter};
    ///
    /// let limiter = CapacityLimiter::new(1);
    /// let who = Borrower::from_id(42);
    /// assert_eq!(limiter.try_acquire_on_behalf_of(who).unwrap().borrower(), who);
    /// ```
    pub fn borrower(&self) -> Borrower {
        self.borrower
    }

    /// Keeps the token held after this value is gone; give it back later with
    /// [`CapacityLimiter::release_on_behalf_of`] (trio's explicit-release style).
    ///
    /// ```
    /// use trellis::sync::{Borrower, CapacityLimiter};
    ///
    /// let limiter = CapacityLimiter::new(1);
    /// let token = limiter.try_acquire_on_behalf_of(Borrower::unique()).unwrap();
    /// let holder = token.forget(); // still held after `token` is gone
    /// assert_eq!(limiter.borrowed_tokens(), 1);
    /// limiter.release_on_behalf_of(holder).unwrap();
    /// assert_eq!(limiter.borrowed_tokens(), 0);
    /// ```
    pub fn forget(mut self) -> Borrower {
        self.armed = false;
        self.borrower
    }
}

impl fmt::Debug for LimiterToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LimiterToken")
            .field("borrower", &self.borrower)
            .finish()
    }
}

impl Drop for LimiterToken {
    fn drop(&mut self) {
        if self.armed {
            // Already released explicitly through `release_on_behalf_of`: nothing to do.
            let _ = self.limiter.release_on_behalf_of(self.borrower);
        }
    }
}
