//! `sync::CapacityLimiter`: trio's test_sync.py CapacityLimiter scenarios, ported with their
//! asserted orders and statistics.

mod common;

use common::{assert_yields, block_on_current, block_on_trio_order};
use trellis::sync::{Borrower, CapacityLimiter};
use trellis::testing::wait_all_tasks_blocked;
use trellis::{nursery, Error};

fn id(n: u64) -> Borrower {
    Borrower::from_id(n)
}

fn borrower_set(c: &CapacityLimiter) -> Vec<Borrower> {
    let mut b = c.statistics().borrowers;
    b.sort_by_key(|b| format!("{b:?}"));
    b
}

fn ids(ns: &[u64]) -> Vec<Borrower> {
    let mut b: Vec<_> = ns.iter().map(|&n| id(n)).collect();
    b.sort_by_key(|b| format!("{b:?}"));
    b
}

#[test]
fn capacity_limiter_basics_and_fairness() {
    // trio: test_CapacityLimiter
    block_on_trio_order(async {
        assert_eq!(CapacityLimiter::new(0).total_tokens(), 0);
        let c = CapacityLimiter::new(2);
        assert_eq!(c.total_tokens(), 2);
        assert_eq!(c.borrowed_tokens(), 0);
        assert_eq!(c.available_tokens(), 2);
        let me = Borrower::current_task();
        assert!(matches!(
            c.release_on_behalf_of(me),
            Err(Error::InvalidArgument(_))
        ));
        assert_eq!(c.borrowed_tokens(), 0);
        c.try_acquire().unwrap().forget();
        assert_eq!(c.borrowed_tokens(), 1);
        assert_eq!(c.available_tokens(), 1);

        let stats = c.statistics();
        assert_eq!(stats.borrowed_tokens, 1);
        assert_eq!(stats.total_tokens, 2);
        assert_eq!(stats.borrowers, vec![me]);
        assert_eq!(stats.tasks_waiting, 0);

        // Can't re-acquire when we already have it: an error, not a panic.
        assert!(matches!(
            c.try_acquire().map(drop),
            Err(trellis::Error::InvalidArgument(_))
        ));
        assert_eq!(c.borrowed_tokens(), 1);

        // We can acquire on behalf of someone else though.
        let someone = id(100);
        assert_yields(c.acquire_on_behalf_of(someone))
            .await
            .unwrap()
            .forget();

        // But then we've run out of capacity.
        assert_eq!(c.borrowed_tokens(), 2);
        assert!(matches!(
            c.try_acquire_on_behalf_of(id(101)),
            Err(Error::WouldBlock)
        ));
        assert_eq!(c.statistics().borrowers, vec![me, someone]);

        // Until we release one.
        c.release_on_behalf_of(me).unwrap();
        assert_eq!(c.statistics().borrowers, vec![someone]);
        c.release_on_behalf_of(someone).unwrap();
        assert_eq!(c.borrowed_tokens(), 0);
        {
            let _token = assert_yields(c.acquire()).await.unwrap();
            assert_eq!(c.borrowed_tokens(), 1);
        }
        assert_eq!(c.borrowed_tokens(), 0);

        let (v1, v2, v3) = (id(1), id(2), id(3));
        let c2 = c.clone();
        nursery(|n| async move {
            c2.acquire_on_behalf_of(v1).await?.forget();
            c2.acquire_on_behalf_of(v2).await?.forget();
            let c3 = c2.clone();
            n.spawn(async move {
                c3.acquire_on_behalf_of(v3).await?.forget();
                Ok(())
            })?;
            wait_all_tasks_blocked().await?;
            assert_eq!(c2.borrowed_tokens(), 2);
            assert_eq!(c2.statistics().tasks_waiting, 1);
            c2.release_on_behalf_of(v2).unwrap();
            // Fairness: the waiter got the token; we cannot take it.
            assert_eq!(c2.borrowed_tokens(), 2);
            assert!(matches!(c2.try_acquire(), Err(Error::WouldBlock)));
            Ok::<_, Error>(())
        })
        .await
        .unwrap();
        c.release_on_behalf_of(v3).unwrap();
        c.release_on_behalf_of(v1).unwrap();
        assert_eq!(c.borrowed_tokens(), 0);
    });
}

// trio raises RuntimeError from `await c.acquire()` when the task already holds a token;
// trellis returns an error saying what to do instead (a usage that compiles never panics), and
// several acquires from one task at once (`join!`, `buffer_unordered`) work with a borrower each.
#[test]
fn capacity_limiter_acquire_twice_is_an_error_not_a_panic() {
    block_on_current(async {
        let c = CapacityLimiter::new(2);
        let held = c.acquire().await.unwrap();
        let again = c.acquire().await.map(drop).unwrap_err();
        assert!(
            again
                .to_string()
                .contains("already holds one of the limiter's tokens"),
            "{again}"
        );
        assert!(matches!(
            c.try_acquire().map(drop),
            Err(trellis::Error::InvalidArgument(_))
        ));
        assert_eq!(c.borrowed_tokens(), 1);
        drop(held);
        // Two acquires polled together by one task, each on behalf of its own borrower.
        let (a, b) = futures_lite::future::zip(
            c.acquire_on_behalf_of(Borrower::unique()),
            c.acquire_on_behalf_of(Borrower::unique()),
        )
        .await;
        let (_a, _b) = (a.unwrap(), b.unwrap());
        assert_eq!(c.borrowed_tokens(), 2);
    });
}

#[test]
fn capacity_limiter_unlimited() {
    // trio: test_CapacityLimiter_inf (usize::MAX stands for math.inf)
    block_on_current(async {
        let c = CapacityLimiter::new(usize::MAX);
        assert_eq!(c.total_tokens(), usize::MAX);
        assert_eq!(c.borrowed_tokens(), 0);
        assert_eq!(c.available_tokens(), usize::MAX);
        assert!(c.release_on_behalf_of(Borrower::current_task()).is_err());
        c.try_acquire().unwrap().forget();
        assert_eq!(c.borrowed_tokens(), 1);
        assert_eq!(c.available_tokens(), usize::MAX - 1);
    });
}

#[test]
fn capacity_limiter_change_total_tokens_serves_waiters() {
    // trio: test_CapacityLimiter_change_total_tokens
    block_on_current(async {
        let c = CapacityLimiter::new(2);
        assert_eq!(c.total_tokens(), 2);
        let c2 = c.clone();
        nursery(|n| async move {
            for i in 0..5 {
                let c = c2.clone();
                n.spawn(async move {
                    c.acquire_on_behalf_of(id(i)).await?.forget();
                    Ok(())
                })?;
                wait_all_tasks_blocked().await?;
            }
            assert_eq!(borrower_set(&c2), ids(&[0, 1]));
            assert_eq!(c2.statistics().tasks_waiting, 3);
            c2.set_total_tokens(c2.total_tokens() + 2);
            assert_eq!(borrower_set(&c2), ids(&[0, 1, 2, 3]));
            assert_eq!(c2.statistics().tasks_waiting, 1);
            c2.set_total_tokens(c2.total_tokens() - 3);
            assert_eq!(c2.borrowed_tokens(), 4);
            assert_eq!(c2.total_tokens(), 1);
            c2.release_on_behalf_of(id(0))?;
            c2.release_on_behalf_of(id(1))?;
            c2.release_on_behalf_of(id(2))?;
            assert_eq!(borrower_set(&c2), ids(&[3]));
            assert_eq!(c2.statistics().tasks_waiting, 1);
            c2.release_on_behalf_of(id(3))?;
            assert_eq!(borrower_set(&c2), ids(&[4]));
            assert_eq!(c2.statistics().tasks_waiting, 0);
            Ok::<_, Error>(())
        })
        .await
        .unwrap();
        c.release_on_behalf_of(id(4)).unwrap();
    });
}

#[test]
fn capacity_limiter_cancelled_acquire_leaves_no_waiter() {
    // trio: test_CapacityLimiter_memleak_548
    block_on_current(async {
        let limiter = CapacityLimiter::new(1);
        let _held = limiter.acquire().await.unwrap();
        let l2 = limiter.clone();
        let l3 = limiter.clone();
        nursery(|n| async move {
            let limiter = l3;
            n.spawn(async move {
                let _t = l2.acquire_on_behalf_of(id(9)).await?;
                Ok(())
            })?;
            wait_all_tasks_blocked().await?;
            assert_eq!(limiter.statistics().tasks_waiting, 1);
            n.cancel();
            Ok::<_, Error>(())
        })
        .await
        .unwrap();
        // The cancelled acquire left nothing behind in the limiter.
        assert_eq!(limiter.statistics().tasks_waiting, 0);
        assert_eq!(limiter.borrowed_tokens(), 1);
    });
}

#[test]
fn capacity_limiter_zero_tokens_lets_nobody_through() {
    // trio: test_CapacityLimiter_zero_limit_tokens
    block_on_current(async {
        let c = CapacityLimiter::new(5);
        assert_eq!(c.total_tokens(), 5);
        let c2 = c.clone();
        let spawn_acquire = |n: &trellis::Nursery, i: u64| {
            let c = c2.clone();
            n.spawn(async move {
                c.acquire_on_behalf_of(id(i)).await?.forget();
                Ok(())
            })
            .map(drop)
        };
        let c3 = c.clone();
        let out = nursery(|n| async move {
            let c = c3;
            c.set_total_tokens(0);
            for i in 0..5 {
                spawn_acquire(&n, i)?;
                wait_all_tasks_blocked().await?;
            }
            assert_eq!(borrower_set(&c), vec![]);
            assert_eq!(c.statistics().tasks_waiting, 5);
            c.set_total_tokens(5);
            assert_eq!(borrower_set(&c), ids(&[0, 1, 2, 3, 4]));

            spawn_acquire(&n, 5)?;
            wait_all_tasks_blocked().await?;
            assert_eq!(c.statistics().tasks_waiting, 1);
            for i in 0..5 {
                c.release_on_behalf_of(id(i))?;
            }
            assert_eq!(c.statistics().tasks_waiting, 0);
            c.release_on_behalf_of(id(5))?;

            // A zero-token limiter lets no task through.
            c.set_total_tokens(0);
            assert!(matches!(c.try_acquire(), Err(Error::WouldBlock)));
            spawn_acquire(&n, 6)?;
            wait_all_tasks_blocked().await?;
            assert_eq!(c.statistics().tasks_waiting, 1);
            assert_eq!(c.statistics().borrowers, vec![]);
            c.set_total_tokens(1);
            assert_eq!(c.statistics().tasks_waiting, 0);
            assert_eq!(c.statistics().borrowers, vec![id(6)]);
            c.release_on_behalf_of(id(6))?;

            c.acquire_on_behalf_of(id(0)).await?.forget(); // total is 1
            spawn_acquire(&n, 1)?;
            wait_all_tasks_blocked().await?;
            c.set_total_tokens(0);
            assert_eq!(c.statistics().borrowers, vec![id(0)]);
            c.release_on_behalf_of(id(0))?;
            wait_all_tasks_blocked().await?;
            assert_eq!(c.statistics().borrowers, vec![]);
            assert_eq!(c.statistics().tasks_waiting, 1);
            c.set_total_tokens(1);
            wait_all_tasks_blocked().await?;
            assert_eq!(c.statistics().borrowers, vec![id(1)]);
            assert_eq!(c.statistics().tasks_waiting, 0);
            c.release_on_behalf_of(id(1))?;
            c.set_total_tokens(0);
            n.cancel();
            Ok::<_, Error>(())
        })
        .await;
        out.unwrap();
        assert_eq!(c.total_tokens(), 0);
        assert_eq!(c.statistics().borrowers, vec![]);
        assert_eq!(c.statistics().tasks_waiting, 0);
    });
}

#[test]
fn limiter_token_is_send_and_static() {
    fn assert_send_static<T: Send + 'static>(_: &T) {}
    block_on_current(async {
        let c = CapacityLimiter::new(1);
        let token = c.try_acquire_on_behalf_of(Borrower::unique()).unwrap();
        assert_send_static(&token);
        let handle = std::thread::spawn(move || drop(token));
        handle.join().unwrap();
        assert_eq!(c.borrowed_tokens(), 0);
    });
}

/// Two tasks waiting with one explicit borrower: when tokens come back, the first gets one and
/// the second is refused with `InvalidArgument`, instead of a second token the limiter counted
/// once (which let one more holder through than its total).
#[test]
fn two_waiters_with_one_borrower_get_one_token_between_them() {
    block_on_current(async {
        let limiter = CapacityLimiter::new(2);
        let z1 = limiter.acquire_on_behalf_of(id(1)).await.unwrap();
        let z2 = limiter.acquire_on_behalf_of(id(2)).await.unwrap();
        let results = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        nursery(|n| {
            let (limiter, results) = (limiter.clone(), results.clone());
            async move {
                for task in 0..2 {
                    let (limiter, results) = (limiter.clone(), results.clone());
                    n.spawn(async move {
                        let got = limiter.acquire_on_behalf_of(id(7)).await;
                        results
                            .lock()
                            .unwrap()
                            .push((task, got.map(|t| t.forget()).is_ok()));
                        Ok(())
                    })?;
                }
                wait_all_tasks_blocked().await?;
                drop(z1);
                drop(z2);
                Ok::<_, Error>(())
            }
        })
        .await
        .unwrap();
        assert_eq!(*results.lock().unwrap(), [(0, true), (1, false)]);
        assert_eq!(borrower_set(&limiter), ids(&[7]));
        assert_eq!(limiter.available_tokens(), 1);
    });
}
