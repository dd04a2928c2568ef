//! A fence in two halves for a handshake between a side that runs all the time and a side that
//! runs rarely: [`light`] for the first, [`heavy`] for the second.
//!
//! The handshake (Dekker's): each side stores its own flag, then reads the other's, and at
//! least one of the two must see the other's store. Without a fence between the store and the
//! load a CPU may satisfy the load before its store leaves the store buffer, and both sides miss.
//! A full fence on each side is the usual answer, but on the machines trellis is measured on a
//! fence, like any atomic read-modify-write, waits for the thread's stores to drain: a tenth of
//! the time of a task's poll (see `task`, whose poll lock is the frequent side, and a teardown
//! the rare one).
//!
//! On Linux the rare side can instead make every other thread of the process execute a full
//! fence, with `membarrier(MEMBARRIER_CMD_PRIVATE_EXPEDITED)`: the kernel interrupts each CPU
//! that runs one of them (a thread that is not running passes a full fence when it is switched
//! back in). The frequent side then needs only to keep the compiler from reordering its store
//! and its load, and costs nothing at run time. Either the frequent side's store came before the
//! interrupt, which drains it, and the rare side's load (after the call) sees it; or its load
//! comes after the interrupt, and sees the rare side's store, made before the call.
//!
//! Where the call is missing or refused (another system, an old kernel, a sandbox that filters
//! it), both halves are full fences. Which of the two ways is used is decided once per process
//! ([`prepare`]), before anything can rely on it: until then [`light`] is a full fence, which is
//! correct with either kind of [`heavy`].

use std::sync::atomic::{compiler_fence, fence, AtomicU8, Ordering};
use std::sync::Once;

/// [`MODE`]: not decided yet.
const UNDECIDED: u8 = 0;
/// [`MODE`]: the rare side calls `membarrier`, the frequent side needs no fence instruction.
const SYSTEM_CALL: u8 = 1;
/// [`MODE`]: full fences on both sides.
const FENCES: u8 = 2;

/// How the two halves are made, decided once by [`prepare`] and never changed after.
static MODE: AtomicU8 = AtomicU8::new(UNDECIDED);

/// Decides how the fence is made, once per process; later calls return at once. The runtime's
/// builder calls it, so that tasks' polls take the cheap path from the first.
pub(crate) fn prepare() {
    static DECIDED: Once = Once::new();
    DECIDED.call_once(|| {
        let mode = if membarrier::register() {
            SYSTEM_CALL
        } else {
            FENCES
        };
        MODE.store(mode, Ordering::SeqCst);
    });
}

/// The frequent side's half: between its store and its load.
#[inline]
pub(crate) fn light() {
    light_in(MODE.load(Ordering::Relaxed));
}

#[inline]
fn light_in(mode: u8) {
    if mode == SYSTEM_CALL {
        // The rare side's `membarrier` orders the CPU; only the compiler must keep the order.
        compiler_fence(Ordering::SeqCst);
    } else {
        fence(Ordering::SeqCst);
    }
}

/// The rare side's half: between its store and its load. Once it returns, every store that a
/// thread made before its own [`light`] and the load after it is seen by this thread's next
/// loads, unless that thread's load sees this thread's store instead.
pub(crate) fn heavy() {
    prepare();
    heavy_in(MODE.load(Ordering::Relaxed));
}

fn heavy_in(mode: u8) {
    fence(Ordering::SeqCst);
    if mode == SYSTEM_CALL {
        membarrier::all_threads();
    }
}

#[cfg(any(target_os = "linux", target_os = "android"))]
mod membarrier {
    /// `MEMBARRIER_CMD_QUERY` (`linux/membarrier.h`): which commands the kernel supports.
    const QUERY: libc::c_int = 0;
    /// `MEMBARRIER_CMD_GLOBAL`: every thread of every process; slow, but needs no registration.
    const GLOBAL: libc::c_int = 1;
    /// `MEMBARRIER_CMD_PRIVATE_EXPEDITED`: every running thread of this process.
    const PRIVATE_EXPEDITED: libc::c_int = 1 << 3;
    /// `MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED`: the process's intent to use the former.
    const REGISTER_PRIVATE_EXPEDITED: libc::c_int = 1 << 4;

    fn call(command: libc::c_int) -> libc::c_long {
        // SAFETY: `membarrier` reads no memory of ours; with flags 0 it takes no third argument.
        unsafe { libc::syscall(libc::SYS_membarrier, command, 0 as libc::c_uint) }
    }

    /// Registers the process for the expedited command: true if it may use it from now on.
    pub(super) fn register() -> bool {
        let supported = call(QUERY);
        supported >= 0
            && supported & libc::c_long::from(PRIVATE_EXPEDITED) != 0
            && call(REGISTER_PRIVATE_EXPEDITED) == 0
    }

    /// Makes every running thread of the process execute a full fence.
    pub(super) fn all_threads() {
        if call(PRIVATE_EXPEDITED) == 0 || call(GLOBAL) == 0 {
            return;
        }
        // The registration succeeded, so the kernel cannot refuse this: if it does anyway, the
        // other side's polls are unordered and going on would let two threads use one future.
        eprintln!("trellis: membarrier failed after its registration; aborting");
        std::process::abort();
    }
}

#[cfg(not(any(target_os = "linux", target_os = "android")))]
mod membarrier {
    /// No such call here: both halves are full fences.
    pub(super) fn register() -> bool {
        false
    }

    pub(super) fn all_threads() {
        unreachable!("the fence is made of system calls only where they were registered")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, AtomicUsize};
    use std::sync::Arc;

    /// The two sides' flags and what each side saw of the other's, for one round.
    #[derive(Default)]
    struct Round {
        frequent: AtomicBool,
        rare: AtomicBool,
        frequent_saw_rare: AtomicBool,
    }

    /// Waits, spinning then yielding, until `counter` reaches `value`.
    fn wait_for(counter: &AtomicUsize, value: usize) {
        let mut spins = 0u32;
        while counter.load(Ordering::Acquire) < value {
            spins += 1;
            if spins < 1_000 {
                std::hint::spin_loop();
            } else {
                std::thread::yield_now();
            }
        }
    }

    /// Dekker's handshake in the way `prepare` chose for this process (the system call on
    /// Linux where it is allowed), then with full fences on both sides, the way taken where it
    /// is not. Without the fences, this test counts dozens of rounds in which both sides missed.
    #[test]
    fn at_least_one_side_sees_the_other() {
        prepare();
        handshakes(light, heavy);
        handshakes(|| light_in(FENCES), || heavy_in(FENCES));
    }

    /// Runs the handshake many times over: in each round a frequent side (store, `light`,
    /// load) and a rare side (store, `heavy`, load) start together, spinning on a shared
    /// counter, and at least one of them must see the other's store.
    fn handshakes(light: fn(), heavy: fn()) {
        const ROUNDS: usize = 20_000;
        let rounds: Arc<Vec<Round>> = Arc::new((0..ROUNDS).map(|_| Round::default()).collect());
        // Round `r` starts when `started` reaches `r + 1`; the frequent side raises `finished`
        // to `r + 1` when it has recorded what it saw.
        let started = Arc::new(AtomicUsize::new(0));
        let finished = Arc::new(AtomicUsize::new(0));
        let frequent = {
            let (rounds, started, finished) = (rounds.clone(), started.clone(), finished.clone());
            std::thread::spawn(move || {
                for (r, round) in rounds.iter().enumerate() {
                    wait_for(&started, r + 1);
                    round.frequent.store(true, Ordering::Relaxed);
                    light();
                    let saw = round.rare.load(Ordering::Relaxed);
                    round.frequent_saw_rare.store(saw, Ordering::Relaxed);
                    finished.store(r + 1, Ordering::Release);
                }
            })
        };
        let mut both_missed = 0;
        for (r, round) in rounds.iter().enumerate() {
            started.store(r + 1, Ordering::Release);
            round.rare.store(true, Ordering::Relaxed);
            heavy();
            let saw = round.frequent.load(Ordering::Relaxed);
            wait_for(&finished, r + 1);
            if !saw && !round.frequent_saw_rare.load(Ordering::Relaxed) {
                both_missed += 1;
            }
        }
        frequent.join().unwrap();
        assert_eq!(both_missed, 0, "rounds in which neither side saw the other");
    }
}
