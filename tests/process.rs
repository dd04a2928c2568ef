//! Child processes with real programs (`sh`, `cat`, `sleep`): piped streams, exit statuses,
//! clear errors, and what cancellation does (terminate, kill after the grace period, always
//! reap).

mod common;

use std::io;
use std::os::unix::process::ExitStatusExt;
use std::time::Duration;

use common::{autojump_clock, current_thread_on};
use trellis::process::{Command, ExitError, Stdio};
use trellis::Runtime;

/// A mock clock that jumps once every task has been blocked for 300 ms of real time: real
/// processes need real time to react to signals, and a zero threshold would jump over that.
fn mock_runtime() -> Runtime {
    current_thread_on(Some(&autojump_clock(Duration::from_millis(300))))
}

/// True once `pid` has been reaped: waitpid says it is not our child any more.
fn reaped(pid: u32) -> bool {
    let mut status = 0;
    // SAFETY: waitpid with WNOHANG on a pid; writes a local integer.
    let r = unsafe { libc::waitpid(pid as i32, &mut status, libc::WNOHANG) };
    r == -1 && io::Error::last_os_error().raw_os_error() == Some(libc::ECHILD)
}

#[test]
fn cat_echoes_what_is_written_to_its_stdin() {
    current_thread_on(None)
        .block_on(async {
            let mut child = Command::new("cat")
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .spawn()?;
            let mut stdin = child.stdin.take().unwrap();
            let mut stdout = child.stdout.take().unwrap();
            let message: Vec<u8> = (0..200_000u32).map(|i| (i % 253) as u8).collect();
            let expected = message.clone();
            let got = trellis::nursery(|n| async move {
                n.spawn(async move {
                    stdin.write_all(&message).await?;
                    drop(stdin); // end of file for cat
                    Ok(())
                })?;
                let mut got = Vec::new();
                let mut buf = [0u8; 8192];
                loop {
                    let k = stdout.read(&mut buf).await?;
                    if k == 0 {
                        break;
                    }
                    got.extend_from_slice(&buf[..k]);
                }
                Ok::<_, io::Error>(got)
            })
            .await
            .map_err(|e| e.into_errors().remove(0))?;
            assert_eq!(got, expected);
            let status = child.wait().await?;
            assert!(status.success());
            assert!(reaped(child.id()));
            Ok::<_, io::Error>(())
        })
        .unwrap();
}

#[test]
fn output_collects_stdout_stderr_and_the_exit_code() {
    current_thread_on(None)
        .block_on(async {
            let out = Command::new("sh")
                .args(["-c", "echo out; echo err >&2; exit 3"])
                .output()
                .await?;
            assert_eq!(out.status.code(), Some(3));
            assert_eq!(out.stdout, b"out\n");
            assert_eq!(out.stderr, b"err\n");

            let status = Command::new("sh").args(["-c", "exit 0"]).status().await?;
            assert!(status.success());

            let err = Command::new("sh")
                .args(["-c", "echo to stdout; echo something broke >&2; exit 2"])
                .output_checked()
                .await
                .unwrap_err();
            let failed = ExitError::of(&err).expect("an ExitError");
            assert_eq!(failed.status().code(), Some(2));
            assert_eq!(failed.output().stdout, b"to stdout\n");
            assert_eq!(
                err.to_string(),
                "`sh` failed with exit status: 2: something broke"
            );
            let err = Command::new("false").status_checked().await.unwrap_err();
            assert_eq!(err.to_string(), "`false` failed with exit status: 1");
            Ok::<_, io::Error>(())
        })
        .unwrap();
}

#[test]
fn a_command_that_does_not_exist_is_a_clear_error() {
    current_thread_on(None).block_on(async {
        let err = Command::new("trellis-no-such-program").spawn().unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::NotFound);
        assert_eq!(
            err.to_string(),
            "could not run `trellis-no-such-program`: No such file or directory (os error 2)"
        );
        let err = Command::new("trellis-no-such-program")
            .output()
            .await
            .unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::NotFound);
    });
}

#[test]
fn cancelling_a_wait_or_terminate_sends_sigterm_and_reaps_the_child() {
    mock_runtime().block_on(async {
        let mut child = Command::new("sleep").arg("30").spawn().unwrap();
        let t0 = trellis::now();
        let out = trellis::fail_after(Duration::from_secs(1), child.wait_or_terminate()).await;
        assert!(out.is_err(), "timed out");
        assert_eq!(trellis::now() - t0, Duration::from_secs(1));
        let status = child.try_wait().unwrap().expect("reaped before returning");
        assert_eq!(status.signal(), Some(libc::SIGTERM));
        assert!(reaped(child.id()));
    });
}

#[test]
fn a_child_ignoring_sigterm_is_killed_after_the_grace_period() {
    mock_runtime().block_on(async {
        let mut child = Command::new("sh")
            .args(["-c", "trap '' TERM; echo ready; exec sleep 30"])
            .stdout(Stdio::piped())
            .grace_period(Duration::from_secs(5))
            .spawn()
            .unwrap();
        // Wait until the trap is installed before cancelling.
        let mut stdout = child.stdout.take().unwrap();
        let mut buf = [0u8; 6];
        let mut got = 0;
        while got < 6 {
            got += stdout.read(&mut buf[got..]).await.unwrap();
        }
        assert_eq!(&buf, b"ready\n");
        let t0 = trellis::now();
        let out = trellis::move_on_after(Duration::from_secs(1), child.wait_or_terminate()).await;
        assert!(out.is_none(), "cancelled by the deadline");
        // 1 s until the deadline, then the 5 s grace period, then SIGKILL.
        assert_eq!(trellis::now() - t0, Duration::from_secs(6));
        let status = child.try_wait().unwrap().unwrap();
        assert_eq!(status.signal(), Some(libc::SIGKILL));
        assert!(reaped(child.id()));
    });
}

#[test]
fn cancelled_output_terminates_and_reaps_then_reraises() {
    mock_runtime().block_on(async {
        let scope = trellis::CancelScope::with_timeout(Duration::from_secs(2));
        let out = scope
            .run(
                Command::new("sh")
                    .args(["-c", "echo partial; exec sleep 30"])
                    .output(),
            )
            .await;
        assert!(out.is_none(), "the cancellation came back out of output()");
        assert!(scope.cancelled_caught());
    });
}

#[test]
fn a_cancelled_plain_wait_leaves_the_child_running() {
    current_thread_on(None).block_on(async {
        let mut child = Command::new("sleep").arg("30").spawn().unwrap();
        let out = trellis::move_on_after(Duration::from_millis(2), child.wait()).await;
        assert!(out.is_none());
        assert_eq!(child.try_wait().unwrap(), None, "still running");
        child.kill().unwrap();
        assert_eq!(child.wait().await.unwrap().signal(), Some(libc::SIGKILL));
        // Waiting again gives the same status.
        assert_eq!(child.wait().await.unwrap().signal(), Some(libc::SIGKILL));
    });
}

#[test]
fn a_dropped_child_is_killed_and_reaped_in_the_background() {
    let pid = current_thread_on(None).block_on(async {
        let child = Command::new("sleep").arg("30").spawn().unwrap();
        child.id()
    });
    // Reaping happens on a pool thread; give it up to 2 s of real time (it takes ~1 ms).
    let proc_entry = format!("/proc/{pid}");
    for _ in 0..2000 {
        if !std::path::Path::new(&proc_entry).exists() {
            return;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    panic!("process {pid} is still there (running or a zombie)");
}

#[test]
fn many_children_at_once_on_a_multi_thread_runtime() {
    trellis::run(async {
        trellis::nursery(|n| async move {
            for i in 0..20 {
                n.spawn(async move {
                    let out = Command::new("sh")
                        .args(["-c", &format!("echo {i}")])
                        .output_checked()
                        .await?;
                    assert_eq!(out.stdout, format!("{i}\n").as_bytes());
                    Ok::<_, io::Error>(())
                })?;
            }
            Ok::<_, io::Error>(())
        })
        .await
        .unwrap();
    });
}

/// Whether `pid` still runs: it exists and is not a zombie waiting for its parent.
fn running(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state is the field after the command name, which is in parentheses.
        Ok(stat) => stat
            .rsplit_once(") ")
            .is_some_and(|(_, rest)| !rest.starts_with('Z')),
        Err(_) => false,
    }
}

/// Runs `sh -c "sleep 600 & echo $!; wait"` (as a group leader if `group`), reads the
/// grandchild's pid, cancels the call, and returns that pid once the shell is reaped.
fn cancel_a_shell_with_a_grandchild(group: bool) -> u32 {
    current_thread_on(None)
        .block_on(async {
            let mut cmd = Command::new("sh");
            cmd.args(["-c", "sleep 600 & echo $!; wait"])
                .stdout(Stdio::piped());
            if group {
                cmd.process_group(0);
            }
            let mut child = cmd.spawn()?;
            let mut stdout = child.stdout.take().unwrap();
            let mut line = Vec::new();
            let mut byte = [0u8; 1];
            while stdout.read(&mut byte).await? == 1 && byte[0] != b'\n' {
                line.push(byte[0]);
            }
            let grandchild: u32 = String::from_utf8(line).unwrap().trim().parse().unwrap();
            let scope = trellis::CancelScope::new();
            scope.cancel();
            let out = scope.run(child.wait_or_terminate()).await;
            assert!(out.is_none());
            Ok::<_, io::Error>(grandchild)
        })
        .unwrap()
}

// A cancelled call on a child that leads its own process group ends the whole group: the
// shell's background `sleep` does not survive it. Without the group, it does (which is why the
// option exists); it is killed by hand then.
#[test]
fn cancelling_a_group_leader_ends_its_grandchildren() {
    let survivor = cancel_a_shell_with_a_grandchild(false);
    assert!(running(survivor), "without a group the grandchild lives on");
    // SAFETY: a plain kill of the test's own leftover `sleep`.
    unsafe { libc::kill(survivor as i32, libc::SIGKILL) };

    let grandchild = cancel_a_shell_with_a_grandchild(true);
    for _ in 0..200 {
        if !running(grandchild) {
            return;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    panic!("the grandchild {grandchild} survived the group's termination");
}
