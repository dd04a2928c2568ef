//! `Barrier`: lets a fixed number of tasks wait for each other.
//!
//! trio has no barrier; this one follows the other primitives' rules. State: the number of
//! parties and the lot of tasks that arrived. The barrier trips when the last party arrives:
//! every waiter is handed "released" and the arriving task, the leader, goes on at once; the
//! lot is then empty and the barrier is ready for the next round. A waiter that is cancelled
//! before the barrier trips leaves the count (it no longer counts as arrived).

use std::fmt;
use std::sync::Mutex;

use super::parking_lot::{lock, Op, ParkingLot, Site, WakeList, MAIN};
use crate::error::Cancelled;

/// A barrier for `parties` tasks: each [`wait`](Barrier::wait) blocks until `parties` tasks are
/// waiting, then all go on. Reusable: the next `parties` waits form the next round.
///
/// ```
/// use std::sync::Arc;
/// use trellis::sync::Barrier;
///
/// trellis::run(async {
///     let barrier = Arc::new(Barrier::new(3));
///     let leaders = trellis::nursery(|n| {
///         let barrier = barrier.clone();
///         async move {
///             let mut handles = Vec::new();
///             for _ in 0..3 {
///                 let barrier = barrier.clone();
///                 handles.push(n.spawn(async move {
///                     Ok(barrier.wait().await?.is_leader())
///                 })?);
///             }
///             let mut leaders = 0;
///             for h in handles {
///                 leaders += h.await? as usize;
///             }
///             Ok::<_, trellis::Error>(leaders)
///         }
///     })
///     .await
///     .unwrap();
///     assert_eq!(leaders, 1); // exactly one task per round is the leader
/// });
/// ```
///
/// Cancel safety: a task cancelled while waiting no longer counts as arrived, so the barrier
/// still needs `parties` live waiters to trip.
pub struct Barrier {
    state: Mutex<State>,
}

struct State {
    parties: usize,
    /// Completed rounds.
    generation: u64,
    lot: ParkingLot<bool, ()>,
}

/// What [`Barrier::wait`] returns.
///
/// ```
/// use std::sync::Arc;
/// use trellis::sync::{Barrier, BarrierWaitResult};
///
/// trellis::run(async {
///     let barrier = Arc::new(Barrier::new(1));
///     // A barrier for one trips at once, and that task is the leader.
///     let result: BarrierWaitResult = barrier.wait().await.unwrap();
///     assert!(result.is_leader());
/// });
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BarrierWaitResult {
    leader: bool,
}

impl BarrierWaitResult {
    /// Whether this task was the last to arrive (exactly one per round).
    ///
    /// ```
    /// use std::sync::atomic::{AtomicUsize, Ordering};
    /// use std::sync::Arc;
    /// use trellis::sync::Barrier;
    ///
    /// trellis::run(async {
    ///     let barrier = Arc::new(Barrier::new(3));
    ///     let leaders = Arc::new(AtomicUsize::new(0));
    ///     trellis::nursery(|n| {
    ///         let (barrier, leaders) = (barrier.clone(), leaders.clone());
    ///         async move {
    ///             for _ in 0..3 {
    ///                 let (barrier, leaders) = (barrier.clone(), leaders.clone());
    ///                 n.spawn(async move {
    ///                     if barrier.wait().await?.is_leader() {
    ///                         leaders.fetch_add(1, Ordering::SeqCst);
    ///                     }
    ///                     Ok(())
    ///                 })?;
    ///             }
    ///             Ok::<_, trellis::Error>(())
    ///         }
    ///     })
    ///     .await
    ///     .unwrap();
    ///     assert_eq!(leaders.load(Ordering::SeqCst), 1); // exactly one per round
    /// });
    /// ```
    pub fn is_leader(&self) -> bool {
        self.leader
    }
}

/// Counters of a [`Barrier`].
///
/// ```
/// use std::sync::Arc;
/// use trellis::sync::Barrier;
///
/// trellis::run(async {
///     let barrier = Arc::new(Barrier::new(2));
///     trellis::nursery(|n| {
///         let barrier = barrier.clone();
///         async move {
///             let other = barrier.clone();
///             n.spawn(async move {
///                 other.wait().await?;
///                 Ok(())
///             })?;
///             trellis::testing::wait_all_tasks_blocked().await?;
///             let stats = barrier.statistics();
///             assert_eq!((stats.parties, stats.tasks_waiting, stats.rounds), (2, 1, 0));
///             barrier.wait().await?;
///             assert_eq!(barrier.statistics().rounds, 1);
///             Ok::<_, trellis::Error>(())
///         }
///     })
///     .await
///     .unwrap();
/// });
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct BarrierStatistics {
    /// Tasks needed to trip the barrier.
    pub parties: usize,
    /// Tasks waiting in the current round.
    pub tasks_waiting: usize,
    /// Rounds completed so far.
    pub rounds: u64,
}

struct WaitSite;

impl Site for WaitSite {
    type State = State;
    type Value = bool;
    type Request = ();
    type Output = BarrierWaitResult;
    type Error = Cancelled;
    const NAME: &'static str = "sync::Barrier::wait";

    fn lot(state: &mut State) -> &mut ParkingLot<bool, ()> {
        &mut state.lot
    }

    fn attempt(state: &mut State, (): &mut (), wakes: &mut WakeList) -> Option<bool> {
        if state.lot.len(MAIN) + 1 < state.parties {
            return None;
        }
        state.lot.unpark_n(MAIN, usize::MAX, |_| false, wakes);
        state.generation += 1;
        Some(true)
    }

    fn finish(leader: bool, (): ()) -> Result<BarrierWaitResult, Cancelled> {
        Ok(BarrierWaitResult { leader })
    }

    fn cancelled(c: Cancelled, (): ()) -> Cancelled {
        c
    }

    // The round completed; a waiter dropped after it was released gives nothing back.
    fn redeliver(_: &mut State, _: bool, _: &mut (), _: &mut WakeList) -> Option<bool> {
        None
    }
}

impl Barrier {
    /// A barrier for `parties` tasks.
    ///
    /// # Panics
    /// If `parties` is 0.
    ///
    /// ```
    /// let barrier = trellis::sync::Barrier::new(4);
    /// assert_eq!(barrier.statistics().parties, 4);
    /// ```
    pub fn new(parties: usize) -> Self {
        assert!(parties > 0, "Barrier::new: parties must be at least 1");
        Barrier {
            state: Mutex::new(State {
                parties,
                generation: 0,
                lot: ParkingLot::new(),
            }),
        }
    }

    /// Waits until `parties` tasks are waiting. A checkpoint, also for the task that completes
    /// the round.
    ///
    /// # Errors
    /// [`Cancelled`] if the enclosing scope was cancelled before the round completed; the task
    /// then no longer counts as arrived.
    ///
    /// ```
    /// use std::sync::Arc;
    /// use trellis::sync::{Barrier, Mutex};
    ///
    /// trellis::run(async {
    ///     // Two tasks finish phase 1 before either starts phase 2.
    ///     let barrier = Arc::new(Barrier::new(2));
    ///     let log = Arc::new(Mutex::new(Vec::new()));
    ///     trellis::nursery(|n| {
    ///         let (barrier, log) = (barrier.clone(), log.clone());
    ///         async move {
    ///             for id in 0..2 {
    ///                 let (barrier, log) = (barrier.clone(), log.clone());
    ///                 n.spawn(async move {
    ///                     log.lock().await?.push((1, id));
    ///                     barrier.wait().await?;
    ///                     log.lock().await?.push((2, id));
    ///                     Ok(())
    ///                 })?;
    ///             }
    ///             Ok::<_, trellis::Error>(())
    ///         }
    ///     })
    ///     .await
    ///     .unwrap();
    ///     let phases: Vec<u8> = log.lock().await.unwrap().iter().map(|(p, _)| *p).collect();
    ///     assert_eq!(phases, [1, 1, 2, 2]);
    /// });
    /// ```
    pub async fn wait(&self) -> Result<BarrierWaitResult, Cancelled> {
        Op::<WaitSite>::new(&self.state, ()).await
    }

    /// Counters, for debugging.
    ///
    /// ```
    /// let barrier = trellis::sync::Barrier::new(2);
    /// let stats = barrier.statistics();
    /// assert_eq!((stats.tasks_waiting, stats.rounds), (0, 0));
    /// ```
    pub fn statistics(&self) -> BarrierStatistics {
        let st = lock(&self.state);
        BarrierStatistics {
            parties: st.parties,
            tasks_waiting: st.lot.len(MAIN),
            rounds: st.generation,
        }
    }
}

impl fmt::Debug for Barrier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Barrier")
            .field("statistics", &self.statistics())
            .finish()
    }
}
