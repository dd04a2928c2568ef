//! Hand-off races on the multi-threaded runtime, in bounded loops: waiters are dropped or
//! cancelled at arbitrary moments while other threads hand them values, and at the end every
//! message was received exactly once and every lock, permit and token was given back
//! (principle 4). The state machines are mutex-protected (no hand-rolled atomics), so these
//! runs stand in for a loom model.

mod common;

use std::future::{poll_fn, Future};
use std::pin::pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex as StdMutex};
use std::task::Poll;
use std::time::Duration;

use common::multi_thread;
use trellis::channel::bounded;
use trellis::sync::{CapacityLimiter, Mutex, RwLock, Semaphore};
use trellis::{move_on_after, nursery, Error};

const WORKERS: usize = 4;
const ROUNDS: usize = 20;

/// Polls `f` until it completes or `yields` schedule points have passed; then drops it.
async fn race<F: Future>(f: F, yields: u32) -> Option<F::Output> {
    let mut f = pin!(f);
    let mut left = yields;
    poll_fn(|cx| {
        if let Poll::Ready(v) = f.as_mut().poll(cx) {
            return Poll::Ready(Some(v));
        }
        if left == 0 {
            return Poll::Ready(None);
        }
        left -= 1;
        cx.waker().wake_by_ref();
        Poll::Pending
    })
    .await
}

/// A small deterministic pseudo-random sequence per task.
fn lcg(seed: &mut u64) -> u32 {
    *seed = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    (*seed >> 33) as u32
}

fn channel_round(capacity: usize) {
    const PRODUCERS: u64 = 4;
    const CONSUMERS: u64 = 4;
    const PER_PRODUCER: u64 = 300;
    let received = Arc::new(StdMutex::new(Vec::new()));
    let r2 = received.clone();
    multi_thread(WORKERS).block_on(async move {
        let (tx, rx) = bounded::<u64>(capacity);
        nursery(|n| async move {
            for p in 0..PRODUCERS {
                let tx = tx.clone();
                n.spawn(async move {
                    let mut seed = p;
                    for i in 0..PER_PRODUCER {
                        let value = p * PER_PRODUCER + i;
                        // Sends are cancelled by short deadlines: a cancelled send has not
                        // happened (the scope absorbs it: `None`), so it is sent again; one
                        // that completed is never repeated.
                        loop {
                            let deadline = Duration::from_micros(u64::from(lcg(&mut seed) % 30));
                            match move_on_after(deadline, tx.send(value)).await {
                                Some(result) => break result?,
                                None => continue,
                            }
                        }
                    }
                    Ok(())
                })?;
            }
            drop(tx);
            for c in 0..CONSUMERS {
                let (rx, received) = (rx.clone(), r2.clone());
                n.spawn(async move {
                    let mut seed = 100 + c;
                    let mut mine = Vec::new();
                    loop {
                        let pick = lcg(&mut seed) % 4;
                        let got = if pick == 0 {
                            // Cancelled by a deadline rather than dropped.
                            move_on_after(Duration::from_micros(20), rx.recv()).await
                        } else {
                            race(rx.recv(), pick).await
                        };
                        match got {
                            None => continue,
                            Some(Ok(v)) => mine.push(v),
                            Some(Err(Error::EndOfChannel)) => break,
                            Some(Err(e)) => return Err(e),
                        }
                    }
                    received.lock().unwrap().extend(mine);
                    Ok(())
                })?;
            }
            Ok::<_, Error>(())
        })
        .await
        .unwrap();
    });
    let mut got = received.lock().unwrap().clone();
    got.sort_unstable();
    // Every message exactly once: none lost by an abandoned receive, none sent twice.
    let expected: Vec<u64> = (0..PRODUCERS * PER_PRODUCER).collect();
    assert_eq!(
        got.len(),
        expected.len(),
        "capacity {capacity}: lost or duplicated messages"
    );
    assert_eq!(got, expected);
}

#[test]
fn channel_hand_off_races_lose_nothing() {
    for _ in 0..ROUNDS {
        channel_round(0);
        channel_round(3);
    }
}

/// Senders on several workers and one receiver take the channel's state turn about, once per
/// message, so most of its locks find it held and spin (or block) before they get it: each
/// sender's messages still arrive exactly once and in the order sent (trio's FIFO channel).
#[test]
fn contended_channel_keeps_each_senders_order() {
    const SENDERS: u64 = 4;
    const PER_SENDER: u64 = 5_000;
    let received = multi_thread(WORKERS).block_on(async move {
        let (tx, rx) = bounded::<(u64, u64)>(8);
        nursery(|n| async move {
            for s in 0..SENDERS {
                let tx = tx.clone();
                n.spawn(async move {
                    for i in 0..PER_SENDER {
                        tx.send((s, i)).await?;
                    }
                    Ok(())
                })?;
            }
            drop(tx);
            let mut received = Vec::new();
            loop {
                match rx.recv().await {
                    Ok(message) => received.push(message),
                    Err(Error::EndOfChannel) => break,
                    Err(e) => return Err(e),
                }
            }
            Ok::<_, Error>(received)
        })
        .await
        .unwrap()
    });
    assert_eq!(received.len() as u64, SENDERS * PER_SENDER);
    let mut next = [0u64; SENDERS as usize];
    for (sender, i) in received {
        assert_eq!(
            i, next[sender as usize],
            "sender {sender}'s messages out of order"
        );
        next[sender as usize] += 1;
    }
    assert_eq!(next, [PER_SENDER; SENDERS as usize]);
}

#[test]
fn lock_hand_off_races_leak_nothing() {
    for round in 0..ROUNDS {
        let mutex = Arc::new(Mutex::new(0usize));
        let sem = Arc::new(Semaphore::new(2));
        let limiter = CapacityLimiter::new(2);
        let inside = Arc::new(AtomicUsize::new(0));
        let taken = Arc::new(AtomicUsize::new(0));
        let (m2, s2, l2, in2, t2) = (
            mutex.clone(),
            sem.clone(),
            limiter.clone(),
            inside.clone(),
            taken.clone(),
        );
        multi_thread(WORKERS).block_on(async move {
            nursery(|n| async move {
                for task in 0..8u64 {
                    let (m, s, l, inside, taken) =
                        (m2.clone(), s2.clone(), l2.clone(), in2.clone(), t2.clone());
                    n.spawn(async move {
                        let mut seed = task * 31 + round as u64;
                        for _ in 0..150 {
                            let patience = lcg(&mut seed) % 4;
                            if let Some(g) = race(m.lock(), patience).await {
                                let mut g = g?;
                                *g += 1;
                                taken.fetch_add(1, Ordering::Relaxed);
                            }
                            if let Some(p) = race(s.acquire(), patience).await {
                                let _p = p?;
                                assert!(inside.fetch_add(1, Ordering::SeqCst) < 2);
                                trellis::checkpoint().await?;
                                inside.fetch_sub(1, Ordering::SeqCst);
                            }
                            let deadline = Duration::from_micros(u64::from(patience) * 10);
                            if let Some(t) = move_on_after(deadline, l.acquire()).await {
                                let _t = t?;
                                assert!(l.borrowed_tokens() <= 2);
                            }
                        }
                        Ok(())
                    })?;
                }
                Ok::<_, Error>(())
            })
            .await
            .unwrap();
        });
        assert_eq!(*mutex.try_lock().unwrap(), taken.load(Ordering::Relaxed));
        let stats = mutex.statistics();
        assert_eq!((stats.locked, stats.tasks_waiting), (false, 0));
        assert_eq!(sem.value(), 2, "a permit leaked");
        assert_eq!(sem.statistics().tasks_waiting, 0);
        assert_eq!(limiter.borrowed_tokens(), 0, "a token leaked");
        assert_eq!(limiter.statistics().tasks_waiting, 0);
    }
}

/// Many tasks on several workers taking permits and tokens back to back: the state of the
/// semaphore and of the limiter is taken turn about, once per acquire and once per release, so
/// most of those locks find it held and spin (or block). No more than the limit ever hold at
/// once, every acquisition is counted, and everything is given back.
#[test]
fn contended_permits_and_tokens_stay_within_their_limits() {
    const TASKS: usize = 16;
    const ROUNDS: usize = 2_000;
    const LIMIT: usize = 3;
    let sem = Arc::new(Semaphore::new(LIMIT));
    let limiter = CapacityLimiter::new(LIMIT);
    // Tasks inside with a permit, and with a token.
    let with_permit = Arc::new(AtomicUsize::new(0));
    let with_token = Arc::new(AtomicUsize::new(0));
    let acquired = Arc::new(AtomicUsize::new(0));
    let (s2, l2, p2, t2, a2) = (
        sem.clone(),
        limiter.clone(),
        with_permit.clone(),
        with_token.clone(),
        acquired.clone(),
    );
    multi_thread(WORKERS).block_on(async move {
        nursery(|n| async move {
            for _ in 0..TASKS {
                let (s, l, with_permit, with_token, acquired) =
                    (s2.clone(), l2.clone(), p2.clone(), t2.clone(), a2.clone());
                n.spawn(async move {
                    for _ in 0..ROUNDS {
                        // Each holder stays inside across a checkpoint, so that holders on other
                        // workers overlap it if the limit lets them.
                        let permit = s.acquire().await?;
                        assert!(with_permit.fetch_add(1, Ordering::SeqCst) < LIMIT);
                        trellis::checkpoint().await?;
                        with_permit.fetch_sub(1, Ordering::SeqCst);
                        drop(permit);
                        let token = l.acquire().await?;
                        assert!(with_token.fetch_add(1, Ordering::SeqCst) < LIMIT);
                        assert!(l.borrowed_tokens() <= LIMIT);
                        trellis::checkpoint().await?;
                        with_token.fetch_sub(1, Ordering::SeqCst);
                        drop(token);
                        acquired.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(())
                })?;
            }
            Ok::<_, Error>(())
        })
        .await
        .unwrap();
    });
    assert_eq!(acquired.load(Ordering::Relaxed), TASKS * ROUNDS);
    assert_eq!(sem.value(), LIMIT, "a permit leaked");
    assert_eq!(limiter.borrowed_tokens(), 0, "a token leaked");
    assert_eq!(
        (
            sem.statistics().tasks_waiting,
            limiter.statistics().tasks_waiting
        ),
        (0, 0)
    );
}

/// Readers and writers of one `RwLock` on several workers, taking it back to back: its state is
/// taken turn about, once per access and once per release, so most of those locks find it held
/// and spin (or block). A reader never sees a half-done write, and every write counts.
#[test]
fn contended_rwlock_readers_never_see_a_half_done_write() {
    const TASKS: u64 = 16;
    const ROUNDS: u64 = 2_000;
    const WRITE_EVERY: u64 = 50;
    let rw = Arc::new(RwLock::new((0u64, 0u64)));
    let r2 = rw.clone();
    multi_thread(WORKERS).block_on(async move {
        nursery(|n| async move {
            for task in 0..TASKS {
                let rw = r2.clone();
                n.spawn(async move {
                    for i in 0..ROUNDS {
                        if (task + i) % WRITE_EVERY == 0 {
                            let mut pair = rw.write().await?;
                            pair.0 += 1;
                            trellis::checkpoint().await?;
                            pair.1 += 1;
                        } else {
                            let pair = rw.read().await?;
                            assert_eq!(pair.0, pair.1, "a reader saw a write half done");
                        }
                    }
                    Ok(())
                })?;
            }
            Ok::<_, Error>(())
        })
        .await
        .unwrap();
    });
    let writes = (0..TASKS)
        .flat_map(|task| (0..ROUNDS).map(move |i| task + i))
        .filter(|k| k % WRITE_EVERY == 0)
        .count() as u64;
    assert_eq!(*rw.try_read().unwrap(), (writes, writes));
}
