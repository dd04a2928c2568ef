//! What happens when Ctrl-C arrives: every task is cancelled, shielded cleanup still runs to its
//! end, and then the program carries on to report what happened.
//!
//! What it shows:
//! - `Runtime::builder().ctrl_c(CtrlC::Cancel)`: `SIGINT` cancels the main future with the
//!   reason `CancelReason::Interrupted`, and `block_on` returns afterwards instead of ending the
//!   process (the default, `CtrlC::Exit`, would end it as killed by `SIGINT`, status 130);
//! - workers that notice the cancellation at their next checkpoint and then do their cleanup
//!   in a shielded cancel scope (with a deadline of its own, so a stuck cleanup cannot hang the
//!   program), where a checkpoint would otherwise fail at once;
//! - the program exits 0 after printing a summary.
//!
//! So that it finishes unattended, the program sends `SIGINT` to itself after a moment with
//! `trellis::signal::raise`. Press Ctrl-C sooner and the result is the same.
//!
//! Run it with `cargo run --example ctrl_c`.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use trellis::signal::{self, Signal};
use trellis::{CancelReason, CancelScope, CtrlC, Error, NurseryError, Runtime};

/// What each worker did, for the summary at the end.
type Log = Arc<Mutex<Vec<String>>>;

/// A worker that processes items until it is cancelled, then saves its progress.
async fn worker(id: u32, log: Log) -> Result<(), Error> {
    let mut done = 0u32;
    // Each sleep is a checkpoint: this is where the cancellation will be noticed.
    let cancelled = loop {
        match trellis::sleep(Duration::from_millis(1 + u64::from(id))).await {
            Ok(()) => done += 1,
            Err(cancelled) => break cancelled,
        }
    };
    log.lock().unwrap().push(format!(
        "worker {id}: cancelled ({}) after {done} items",
        cancelled.reason()
    ));

    // Cleanup. Without the shield, this sleep would fail at once, because the surrounding
    // scope is cancelled (cancellation is level-triggered). With it, the cleanup runs, within
    // its own 100 ms deadline.
    let saved = CancelScope::with_timeout(Duration::from_millis(100))
        .shielded(true)
        .run(async {
            trellis::sleep(Duration::from_millis(2)).await?; // "write the progress to disk"
            Ok::<_, trellis::Cancelled>(done)
        })
        .await;
    let line = match saved {
        Some(Ok(n)) => format!("worker {id}: cleanup finished, saved {n} items"),
        _ => format!("worker {id}: cleanup ran out of time"),
    };
    log.lock().unwrap().push(line);

    // Hand the cancellation back, so the nursery knows why this task ended.
    Err(cancelled.into())
}

fn main() {
    let rt = Runtime::builder()
        .ctrl_c(CtrlC::Cancel)
        .build()
        .expect("runtime");
    let log: Log = Arc::default();

    let result = rt.block_on({
        let log = log.clone();
        async move {
            trellis::nursery(|n| async move {
                for id in 1..=3 {
                    n.spawn(worker(id, log.clone()))?;
                }
                // The "user" presses Ctrl-C after 20 ms.
                trellis::sleep(Duration::from_millis(20)).await?;
                log.lock().unwrap().push("main: raising SIGINT".into());
                signal::raise(Signal::INT)?;
                // Wait to be cancelled, as a program blocked in its real work would.
                trellis::sleep_forever().await?;
                Ok::<_, Error>(())
            })
            .await
        }
    });

    // block_on has returned: every task has ended, and we are still running.
    for line in log.lock().unwrap().iter() {
        println!("{line}");
    }
    match result {
        Err(NurseryError::Cancelled(c)) if *c.reason() == CancelReason::Interrupted => {
            println!("main: interrupted by Ctrl-C; every task cleaned up; exiting normally");
        }
        other => {
            eprintln!("ctrl_c: expected an interruption, got {other:?}");
            std::process::exit(1);
        }
    }
}
