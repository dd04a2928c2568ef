mod common;

use common::current_thread;
use std::time::Duration;
// The glob brings `trellis::test` too; this import keeps `#[test]` the standard one.
use core::prelude::v1::test;
use trellis::*;

#[test]
fn smoke_multi() {
    let v = trellis::run(async {
        let r = nursery(|n| async move {
            let h = n.spawn(async {
                sleep(Duration::from_millis(2)).await?;
                Ok::<_, Error>(5)
            })?;
            let mut sum = 0;
            for i in 0..100 {
                let h = n.spawn(async move {
                    checkpoint().await?;
                    Ok::<_, Error>(i)
                })?;
                sum += h.await?;
            }
            Ok::<_, Error>(h.await? + sum)
        })
        .await;
        r.unwrap()
    });
    assert_eq!(v, 5 + 4950);
}

#[test]
fn smoke_current() {
    let (rt, _clock) = current_thread();
    rt.block_on(async {
        let t0 = now();
        let r = move_on_after(Duration::from_secs(10), async {
            sleep_forever().await?;
            Ok::<(), Cancelled>(())
        })
        .await;
        assert!(r.is_none());
        assert_eq!(now() - t0, Duration::from_secs(10));
        let r = nursery(|n| async move {
            n.spawn(async {
                sleep(Duration::from_secs(1)).await?;
                Err::<(), _>(Error::InvalidArgument("x"))
            })?;
            sleep_forever().await?;
            Ok::<_, Error>(())
        })
        .await;
        assert_eq!(r.unwrap_err().errors().len(), 1);
        assert_eq!(now() - t0, Duration::from_secs(11));
        println!("{}", lowlevel::task_tree());
    });
}
