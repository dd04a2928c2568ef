//! A child's pipe handed to another child as its standard stream (`a | b`): the bytes go from
//! one process to the other, and no descriptor is left open in this process afterwards. One
//! test in this binary, so that no other test opens descriptors while it counts them.

use std::io;

use trellis::process::{Command, Stdio};

fn open_descriptors() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

async fn printf_into_sort() -> io::Result<Vec<u8>> {
    let mut printf = Command::new("printf")
        .arg("b\\na\\n")
        .stdout(Stdio::piped())
        .spawn()?;
    let from_printf = printf.stdout.take().unwrap().into_stdio()?;
    let sorted = Command::new("sort").stdin(from_printf).output().await?;
    printf.wait().await?;
    Ok(sorted.stdout)
}

async fn stderr_into_tr() -> io::Result<Vec<u8>> {
    let mut sh = Command::new("sh")
        .args(["-c", "echo to-stdout; echo shout >&2"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()?;
    let errors = Stdio::try_from(sh.stderr.take().unwrap())?;
    let upper = Command::new("tr")
        .args(["a-z", "A-Z"])
        .stdin(errors)
        .output()
        .await?;
    sh.wait().await?;
    Ok(upper.stdout)
}

/// `b | a` built from the other end: `a`'s stdin pipe becomes `b`'s stdout.
async fn printf_into_sorts_stdin() -> io::Result<Vec<u8>> {
    let mut sort = Command::new("sort")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()?;
    let into_sort = sort.stdin.take().unwrap().into_stdio()?;
    let mut printf = Command::new("printf")
        .arg("d\\nc\\n")
        .stdout(into_sort)
        .spawn()?;
    printf.wait().await?;
    Ok(sort.wait_with_output().await?.stdout)
}

/// The next process gets a blocking pipe (it was non-blocking while this process owned it,
/// and a reader that starts before any byte comes would fail with `EAGAIN`): the flags of
/// `grep`'s standard input, as Linux shows them, lack `O_NONBLOCK`.
async fn the_next_process_gets_a_blocking_pipe() -> io::Result<u32> {
    let mut late = Command::new("sh")
        .args(["-c", "sleep 0.1; echo late"])
        .stdout(Stdio::piped())
        .spawn()?;
    let from_late = late.stdout.take().unwrap().into_stdio()?;
    let grep = Command::new("grep")
        .args(["^flags", "/proc/self/fdinfo/0"])
        .stdin(from_late)
        .output()
        .await?;
    late.wait().await?;
    let text = String::from_utf8_lossy(&grep.stdout).into_owned();
    let octal = text.trim().trim_start_matches("flags:").trim();
    Ok(u32::from_str_radix(octal, 8).expect("fdinfo flags are octal"))
}

async fn closed_stdin_is_refused() -> io::Result<(io::ErrorKind, String)> {
    let mut cat = Command::new("cat").stdin(Stdio::piped()).spawn()?;
    let mut stdin = cat.stdin.take().unwrap();
    stdin.close().await?;
    let err = stdin.into_stdio().unwrap_err();
    cat.wait().await?;
    Ok((err.kind(), err.to_string()))
}

#[test]
fn pipes_become_other_childrens_stdio_and_leak_no_descriptor() {
    // The first run creates what a process keeps for all later ones (the child-exit watch).
    trellis::run(printf_into_sort()).unwrap();

    let before = open_descriptors();
    let got = trellis::run(async {
        Ok::<_, io::Error>((
            printf_into_sort().await?,
            stderr_into_tr().await?,
            printf_into_sorts_stdin().await?,
            closed_stdin_is_refused().await?,
            the_next_process_gets_a_blocking_pipe().await?,
        ))
    })
    .unwrap();
    let after = open_descriptors();

    assert_eq!(got.0, b"a\nb\n");
    assert_eq!(got.1, b"SHOUT\n");
    assert_eq!(got.2, b"c\nd\n");
    assert_eq!(
        got.3,
        (
            io::ErrorKind::BrokenPipe,
            "the child's stdin was closed: there is no pipe left to hand to another child"
                .to_string()
        )
    );
    assert_eq!(got.4 & libc::O_NONBLOCK as u32, 0, "flags {:o}", got.4);
    assert_eq!(
        after, before,
        "descriptors open before and after the pipelines"
    );
}
