//! Forcing an order of steps across tasks (trio's `Sequencer`).

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard};

use crate::error::Error;
use crate::state_lock::lock_blocking;
use crate::sync::Event;

/// Makes tasks take turns in a fixed order, whatever order the scheduler runs them in: a test
/// writes each step as `let _turn = seq.turn(n).await?;` and step `n` starts only once steps
/// `0..n` have ended (their [`Turn`] was dropped). For tests of races: force the interleaving
/// that exposes the bug, every time.
///
/// Each position is used once. If a task waiting for its turn is cancelled, the sequence is
/// broken (a later step could never come): every waiting and later `turn` fails with
/// [`Error::BrokenResource`], as trio's raises `BrokenResourceError`.
///
/// ```
/// use std::sync::{Arc, Mutex};
/// use trellis::testing::Sequencer;
///
/// trellis::run(async {
///     let seq = Sequencer::new();
///     let log = Arc::new(Mutex::new(Vec::new()));
///     let shared_log = log.clone();
///     trellis::nursery(|n| async move {
///         let log = shared_log;
///         for (task, steps) in [("a", [1, 2]), ("b", [0, 3])] {
///             let (seq, log) = (seq.clone(), log.clone());
///             n.spawn(async move {
///                 for step in steps {
///                     let _turn = seq.turn(step).await?;
///                     log.lock().unwrap().push(format!("{task}{step}"));
///                 }
///                 Ok::<_, trellis::Error>(())
///             })?;
///         }
///         Ok::<_, trellis::Error>(())
///     })
///     .await
///     .unwrap();
///     assert_eq!(*log.lock().unwrap(), ["b0", "a1", "a2", "b3"]);
/// });
/// ```
#[derive(Clone, Default)]
pub struct Sequencer {
    state: Arc<Mutex<State>>,
}

#[derive(Default)]
struct State {
    /// The position whose turn it is.
    next: usize,
    /// Positions already asked for.
    claimed: HashSet<usize>,
    /// Set when a position's turn comes; created by whoever needs it first.
    turns: HashMap<usize, Arc<Event>>,
    broken: bool,
}

impl State {
    fn turn_of(&mut self, position: usize) -> Arc<Event> {
        self.turns.entry(position).or_default().clone()
    }
}

impl fmt::Debug for Sequencer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = self.lock();
        f.debug_struct("Sequencer")
            .field("next", &s.next)
            .field("broken", &s.broken)
            .finish()
    }
}

impl Sequencer {
    /// A sequence whose first position is 0.
    ///
    /// ```
    /// let seq = trellis::testing::Sequencer::new();
    /// # let _ = seq;
    /// ```
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        lock_blocking(&self.state)
    }

    /// Waits until it is `position`'s turn (every earlier position's [`Turn`] was dropped), and
    /// returns the turn; the next position goes when it is dropped. A checkpoint.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] if `position` was already used;
    /// [`Error::BrokenResource`] if a task waiting for its turn was cancelled (now or before);
    /// [`Error::Cancelled`] if this wait is cancelled (which breaks the sequence).
    ///
    /// ```
    /// use trellis::testing::Sequencer;
    ///
    /// trellis::run(async {
    ///     let seq = Sequencer::new();
    ///     let first = seq.turn(0).await.unwrap();
    ///     drop(first); // position 1 may go now
    ///     let _second = seq.turn(1).await.unwrap();
    ///     // Each position is used once.
    ///     assert!(seq.turn(1).await.is_err());
    /// });
    /// ```
    pub async fn turn(&self, position: usize) -> Result<Turn, Error> {
        let turn = {
            let mut s = self.lock();
            if s.broken {
                return Err(Error::BrokenResource);
            }
            if !s.claimed.insert(position) {
                return Err(Error::InvalidArgument(
                    "Sequencer::turn: each position can be used only once",
                ));
            }
            let turn = s.turn_of(position);
            if s.next == position {
                turn.set();
            }
            turn
        };
        if let Err(cancelled) = turn.wait().await {
            let mut s = self.lock();
            s.broken = true;
            // Wake every waiter: none of their turns can come any more.
            s.turns.values().for_each(|turn| turn.set());
            return Err(cancelled.into());
        }
        if self.lock().broken {
            return Err(Error::BrokenResource);
        }
        Ok(Turn {
            state: self.state.clone(),
            position,
        })
    }
}

/// A step's turn in a [`Sequencer`]; dropping it lets the next position go.
///
/// ```
/// use std::sync::{Arc, Mutex};
/// use trellis::testing::{Sequencer, Turn};
///
/// trellis::run(async {
///     let seq = Sequencer::new();
///     let log = Arc::new(Mutex::new(Vec::new()));
///     trellis::nursery(|n| {
///         let (seq, log) = (seq.clone(), log.clone());
///         async move {
///             let (seq2, log2) = (seq.clone(), log.clone());
///             n.spawn(async move {
///                 let _turn: Turn = seq2.turn(1).await?;
///                 log2.lock().unwrap().push("second");
///                 Ok(())
///             })?;
///             let turn: Turn = seq.turn(0).await?;
///             log.lock().unwrap().push("first");
///             drop(turn); // only now may position 1 run
///             Ok::<_, trellis::Error>(())
///         }
///     })
///     .await
///     .unwrap();
///     assert_eq!(*log.lock().unwrap(), ["first", "second"]);
/// });
/// ```
#[must_use = "the next step starts when the turn is dropped"]
pub struct Turn {
    state: Arc<Mutex<State>>,
    position: usize,
}

impl fmt::Debug for Turn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Turn")
            .field("position", &self.position)
            .finish()
    }
}

impl Drop for Turn {
    fn drop(&mut self) {
        let mut s = lock_blocking(&self.state);
        s.next = self.position + 1;
        let next = s.next;
        s.turn_of(next).set();
    }
}
