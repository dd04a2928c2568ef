//! `Nursery::start` on the multi-threaded runtime, where the started task may call
//! `TaskStatus::started` on another worker before `start` has finished spawning it.

use trellis::{nursery, Error, Runtime};

// contract N9: start returns the value passed to started, every time.
#[test]
fn started_on_another_worker_is_never_lost() {
    let rt = Runtime::builder().worker_threads(2).build().unwrap();
    rt.block_on(async {
        for i in 0..2_000u32 {
            let got = nursery(|n| async move {
                let v = n
                    .start(move |status| async move {
                        status.started(i);
                        Ok::<_, Error>(())
                    })
                    .await?;
                Ok::<_, Error>(v)
            })
            .await
            .unwrap();
            assert_eq!(got, i);
        }
    });
}
