//! `Nursery::start` leaves nothing behind (principle 4, contract N9): every value a started task
//! produced is dropped, and a runtime that ran `start` is freed with its descriptors when dropped.
//!
//! One test in this binary: it counts the process's open descriptors, which other tests running
//! in parallel threads would disturb.

mod common;

use common::*;
use trellis::{nursery, Flavor};

fn open_descriptors() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

// contract N9, principle 4: after N starts, the started tasks' outputs and the values passed to
// `started` are all dropped, and the runtime's epoll, eventfd and timer descriptors are closed
// once it is dropped.
#[test]
fn starting_tasks_leaks_neither_values_nor_the_runtime() {
    const STARTS: usize = 2_000;
    for flavor in [Flavor::CurrentThread, Flavor::MultiThread] {
        let before = open_descriptors();
        let outputs = DropCounter::new();
        let values = DropCounter::new();
        {
            let rt = runtime(flavor);
            let (o, v) = (outputs.clone(), values.clone());
            rt.block_on(async move {
                nursery(|n| async move {
                    for _ in 0..STARTS {
                        let (o, v) = (o.clone(), v.clone());
                        let value = n
                            .start(move |status| async move {
                                status.started(v.guard());
                                Ok::<_, trellis::Error>(o.guard())
                            })
                            .await?;
                        drop(value);
                    }
                    Ok::<_, trellis::Error>(())
                })
                .await
                .unwrap();
            });
        }
        assert_eq!(outputs.created(), STARTS, "{flavor:?}");
        assert_eq!(outputs.count(), STARTS, "{flavor:?}: outputs dropped");
        assert_eq!(values.count(), STARTS, "{flavor:?}: started values dropped");
        assert_eq!(
            open_descriptors(),
            before,
            "{flavor:?}: runtime descriptors closed"
        );
    }
}
