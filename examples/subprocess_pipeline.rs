//! A shell-style pipeline of child processes, plumbed by trellis instead of by the shell.
//!
//! What it shows:
//! - `Command::output_checked` for the common case: run a program, collect what it prints, and
//!   turn a non-zero exit into an error (`ExitError` says which status and what it printed);
//! - the equivalent of `printf ... | tr a-z A-Z | sort | cat -n`: four children started with
//!   piped standard streams, and one task per pipe copying one child's output into the next
//!   child's input, all in one nursery, so the pipeline ends when its last byte has been
//!   copied and every child has been reaped;
//! - the same pipeline with the processes talking to each other directly: each child's output
//!   pipe handed to the next child as its standard input (`into_stdio`), so no byte passes
//!   through this program;
//! - feeding a child's standard input from the program itself.
//!
//! Only `sh`, `printf`, `tr`, `sort` and `cat` are used, all present on a Debian system.
//!
//! Run it with `cargo run --example subprocess_pipeline`.

use std::io;

use trellis::io::{ReadStream, WriteStream};
use trellis::process::{Child, Command, ExitError, Stdio};

/// Copies everything from `from` to `to`, then closes `to` so the next process sees end of
/// file. Returns the number of bytes copied.
async fn copy(mut from: impl ReadStream, mut to: impl WriteStream) -> io::Result<u64> {
    let mut buf = [0u8; 4096];
    let mut total = 0;
    loop {
        let n = from.read(&mut buf).await?;
        if n == 0 {
            to.shutdown_write().await?;
            return Ok(total);
        }
        to.write_all(&buf[..n]).await?;
        total += n as u64;
    }
}

/// Starts one stage of the pipeline with the given streams piped.
fn stage(program: &str, args: &[&str], stdin: bool) -> io::Result<Child> {
    let mut command = Command::new(program);
    command.args(args).stdout(Stdio::piped());
    if stdin {
        command.stdin(Stdio::piped());
    }
    command.spawn()
}

/// Waits for a stage and fails if it did not exit successfully.
async fn check(child: &mut Child, name: &str) -> io::Result<()> {
    let status = child.wait().await?;
    if status.success() {
        Ok(())
    } else {
        Err(io::Error::other(format!("{name} failed: {status}")))
    }
}

/// Reads the last stage's output to the end, then checks that every stage exited successfully.
async fn finish(last: &mut Child, stages: [(&mut Child, &str); 3]) -> io::Result<String> {
    let out = last.wait_with_output().await?;
    for (child, name) in stages {
        check(child, name).await?;
    }
    if !out.status.success() {
        return Err(io::Error::other(format!("cat failed: {}", out.status)));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

async fn pipeline() -> io::Result<String> {
    let mut printf = stage("printf", &["pear\\napple\\nfig\\nbanana\\n"], false)?;
    let mut tr = stage("tr", &["a-z", "A-Z"], true)?;
    let mut sort = stage("sort", &[], true)?;
    let mut number = stage("cat", &["-n"], true)?;

    // Take the pipe ends out of the children: each moves into the task that copies it.
    let printf_out = printf.stdout.take().expect("piped");
    let (tr_in, tr_out) = (
        tr.stdin.take().expect("piped"),
        tr.stdout.take().expect("piped"),
    );
    let (sort_in, sort_out) = (
        sort.stdin.take().expect("piped"),
        sort.stdout.take().expect("piped"),
    );
    let number_in = number.stdin.take().expect("piped");

    let output = trellis::nursery(|n| async move {
        n.spawn(copy(printf_out, tr_in))?;
        n.spawn(copy(tr_out, sort_in))?;
        n.spawn(copy(sort_out, number_in))?;
        // The last child's output is ours to keep: `finish` reads it to the end and reaps it.
        finish(
            &mut number,
            [
                (&mut printf, "printf"),
                (&mut tr, "tr"),
                (&mut sort, "sort"),
            ],
        )
        .await
    })
    .await
    .map_err(io::Error::from)?;
    Ok(output)
}

/// The same pipeline with no copying: each child's standard output becomes the next child's
/// standard input, as a shell would plumb it.
async fn direct_pipeline() -> io::Result<String> {
    let mut printf = stage("printf", &["pear\\napple\\nfig\\nbanana\\n"], false)?;
    let mut tr = Command::new("tr")
        .args(["a-z", "A-Z"])
        .stdin(printf.stdout.take().expect("piped").into_stdio()?)
        .stdout(Stdio::piped())
        .spawn()?;
    let mut sort = Command::new("sort")
        .stdin(tr.stdout.take().expect("piped").into_stdio()?)
        .stdout(Stdio::piped())
        .spawn()?;
    let mut number = Command::new("cat")
        .arg("-n")
        .stdin(sort.stdout.take().expect("piped").into_stdio()?)
        .stdout(Stdio::piped())
        .spawn()?;
    finish(
        &mut number,
        [
            (&mut printf, "printf"),
            (&mut tr, "tr"),
            (&mut sort, "sort"),
        ],
    )
    .await
}

async fn examples() -> io::Result<()> {
    // 1. One command, its output collected.
    let out = Command::new("sh")
        .args(["-c", "printf 'hello, %s\\n' \"$1\"", "sh", "world"])
        .output_checked()
        .await?;
    print!("one command:\n{}", String::from_utf8_lossy(&out.stdout));

    // 2. A command that fails: output_checked turns the exit status into an error.
    let err = Command::new("sh")
        .args(["-c", "echo 'something went wrong' >&2; exit 3"])
        .output_checked()
        .await
        .unwrap_err();
    let exit = ExitError::of(&err).expect("the error is an exit status");
    println!(
        "a failing command: {}, stderr {:?}",
        exit.status(),
        String::from_utf8_lossy(&exit.output().stderr).trim_end()
    );

    // 3. Our own bytes into a child's standard input.
    let mut cat = Command::new("cat")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()?;
    let mut stdin = cat.stdin.take().expect("piped");
    stdin.write_all(b"written by the parent\n").await?;
    drop(stdin); // closing the pipe lets `cat` finish
    let out = cat.wait_with_output().await?;
    print!("through cat: {}", String::from_utf8_lossy(&out.stdout));

    // 4. Four processes piped into each other.
    let sorted = pipeline().await?;
    print!("printf | tr a-z A-Z | sort | cat -n:\n{sorted}");
    assert!(sorted.contains("APPLE") && sorted.contains("PEAR"));

    // 5. The same, with the children piped straight into each other.
    let direct = direct_pipeline().await?;
    assert_eq!(direct, sorted);
    println!("the same with the pipes handed from child to child: identical");
    Ok(())
}

fn main() {
    if let Err(e) = trellis::run(examples()) {
        eprintln!("subprocess_pipeline: {e}");
        std::process::exit(1);
    }
}
