//! Ctrl-C (SIGINT) cancels the main future: cleanup runs, shields are honoured, then the
//! process ends as interrupted (`CtrlC::Exit`, the default) or `block_on` returns
//! (`CtrlC::Cancel`); a second Ctrl-C during the cleanup ends the process at once.
//!
//! SIGINT reaches every runtime of a process, so each scenario runs in a child process: this
//! test binary again, running only the ignored `child` test with the scenario in the
//! environment.

mod common;

use std::os::unix::process::ExitStatusExt;
use std::process::{Command, Output};

use common::*;
use trellis::signal::{self, Signal};
use trellis::testing::wait_all_tasks_blocked;
use trellis::{nursery, sleep, sleep_forever, CancelScope, CtrlC, Error, Flavor, Runtime};

const SCENARIO: &str = "TRELLIS_CTRL_C_SCENARIO";

fn run_child(scenario: &str) -> (Output, String) {
    let output = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "child",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(SCENARIO, scenario)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    (output, stdout)
}

/// The program the scenarios run: a task that cleans up (shielded) when cancelled, and a main
/// future that presses Ctrl-C once every task is blocked. `twice`: the cleanup presses it again
/// and then waits for ever.
fn program(ctrl_c: CtrlC, twice: bool) {
    let clock = autojump_clock(std::time::Duration::ZERO);
    let rt = Runtime::builder()
        .flavor(Flavor::CurrentThread)
        .clock(clock)
        .ctrl_c(ctrl_c)
        .build()
        .unwrap();
    let out = rt.block_on(async move {
        nursery(|n| async move {
            n.spawn(async move {
                let Err(c) = sleep_forever().await;
                println!("task cancelled: {}", c.reason());
                if twice {
                    println!("pressing Ctrl-C again");
                    signal::raise(Signal::INT).unwrap();
                    let _ = CancelScope::new().shielded(true).run(sleep_forever()).await;
                }
                CancelScope::new().shielded(true).run(sleep(secs(5))).await;
                println!("cleanup done");
                Ok(())
            })?;
            wait_all_tasks_blocked().await?;
            signal::raise(Signal::INT).unwrap();
            sleep_forever().await?;
            Ok::<_, Error>(())
        })
        .await
    });
    println!("block_on returned: {out:?}");
}

#[test]
#[ignore = "a scenario of the ctrl_c tests, run by them in a child process"]
fn child() {
    match std::env::var(SCENARIO).as_deref() {
        Ok("exit") => program(CtrlC::Exit, false),
        Ok("cancel") => program(CtrlC::Cancel, false),
        Ok("twice") => program(CtrlC::Exit, true),
        other => panic!("unknown scenario {other:?}"),
    }
}

// The default: the interrupt cancels the main future, the task's shielded cleanup runs to its
// end, then the process ends by SIGINT instead of going on after `block_on`.
#[test]
fn ctrl_c_cancels_then_cleanup_runs_then_the_process_ends_as_interrupted() {
    let (output, stdout) = run_child("exit");
    assert_eq!(
        output.status.signal(),
        Some(libc::SIGINT),
        "{:?} {stdout}",
        output.status
    );
    assert!(
        stdout.contains("task cancelled: interrupted (Ctrl-C)\ncleanup done\n"),
        "{stdout}"
    );
    assert!(!stdout.contains("block_on returned"), "{stdout}");
}

// `CtrlC::Cancel`: the same cancellation and cleanup, then `block_on` returns and the program
// goes on.
#[test]
fn ctrl_c_in_cancel_mode_returns_from_block_on() {
    let (output, stdout) = run_child("cancel");
    assert!(output.status.success(), "{:?} {stdout}", output.status);
    assert!(
        stdout.contains("task cancelled: interrupted (Ctrl-C)\ncleanup done\n"),
        "{stdout}"
    );
    assert!(
        stdout.contains("block_on returned: Err(Cancelled(Cancelled { reason: Interrupted }))"),
        "{stdout}"
    );
}

// A second Ctrl-C while cleaning up ends the process at once: the cleanup never finishes.
#[test]
fn a_second_ctrl_c_during_cleanup_ends_the_process_at_once() {
    let (output, stdout) = run_child("twice");
    assert_eq!(
        output.status.signal(),
        Some(libc::SIGINT),
        "{:?} {stdout}",
        output.status
    );
    assert!(stdout.contains("pressing Ctrl-C again"), "{stdout}");
    assert!(!stdout.contains("cleanup done"), "{stdout}");
    assert!(!stdout.contains("block_on returned"), "{stdout}");
}
