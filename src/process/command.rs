//! Building and starting a process ([`Command`]), running one to completion, and the error an
//! unsuccessful exit becomes ([`ExitError`]).

use std::ffi::OsStr;
use std::fmt;
use std::io;
use std::path::Path;
use std::process as sp;
use std::time::Duration;

use std::process::{ExitStatus, Output, Stdio};

use super::child::{kill_and_reap_in_background, Child};
use super::exit::Exit;
use super::pipes::{ChildStderr, ChildStdin, ChildStdout};

/// How long a child gets between `SIGTERM` and `SIGKILL` when the call that owns it is
/// cancelled (trio's default for `run_process`).
pub const DEFAULT_GRACE_PERIOD: Duration = Duration::from_secs(5);

/// A process to run: program, arguments, environment, directory, standard streams.
///
/// ```
/// use trellis::process::Command;
///
/// trellis::run(async {
///     let out = Command::new("sh").arg("-c").arg("echo hello; echo oops >&2").output().await?;
///     assert!(out.status.success());
///     assert_eq!(out.stdout, b"hello\n");
///     assert_eq!(out.stderr, b"oops\n");
///     Ok::<_, std::io::Error>(())
/// })
/// .unwrap();
/// ```
pub struct Command {
    inner: sp::Command,
    grace: Duration,
    /// `process_group(0)`: the child leads a new process group.
    group: bool,
    stdin_set: bool,
    stdout_set: bool,
    stderr_set: bool,
}

impl fmt::Debug for Command {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.inner, f)
    }
}

impl Command {
    /// A command running `program` (looked up in `PATH` if it has no slash).
    ///
    /// ```
    /// use trellis::process::Command;
    ///
    /// trellis::run(async {
    ///     let out = Command::new("echo").arg("hi").output().await?;
    ///     assert_eq!(out.stdout, b"hi\n");
    ///     Ok::<_, std::io::Error>(())
    /// })
    /// .unwrap();
    /// ```
    pub fn new(program: impl AsRef<OsStr>) -> Command {
        Command {
            inner: sp::Command::new(program),
            grace: DEFAULT_GRACE_PERIOD,
            group: false,
            stdin_set: false,
            stdout_set: false,
            stderr_set: false,
        }
    }

    /// Adds an argument.
    ///
    /// ```
    /// use trellis::process::Command;
    ///
    /// trellis::run(async {
    ///     // One argument, spaces and all: no shell splits it.
    ///     let out = Command::new("printf").arg("[%s]").arg("a b").output().await?;
    ///     assert_eq!(out.stdout, b"[a b]");
    ///     Ok::<_, std::io::Error>(())
    /// })
    /// .unwrap();
    /// ```
    pub fn arg(&mut self, arg: impl AsRef<OsStr>) -> &mut Command {
        self.inner.arg(arg);
        self
    }

    /// Adds arguments.
    ///
    /// ```
    /// use trellis::process::Command;
    ///
    /// trellis::run(async {
    ///     let out = Command::new("printf").args(["%s-%s", "x", "y"]).output().await?;
    ///     assert_eq!(out.stdout, b"x-y");
    ///     Ok::<_, std::io::Error>(())
    /// })
    /// .unwrap();
    /// ```
    pub fn args<I, S>(&mut self, args: I) -> &mut Command
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.inner.args(args);
        self
    }

    /// Sets an environment variable.
    ///
    /// ```
    /// use trellis::process::Command;
    ///
    /// trellis::run(async {
    ///     let out = Command::new("sh")
    ///         .args(["-c", "printf %s \"$GREETING\""])
    ///         .env("GREETING", "hello")
    ///         .output()
    ///         .await?;
    ///     assert_eq!(out.stdout, b"hello");
    ///     Ok::<_, std::io::Error>(())
    /// })
    /// .unwrap();
    /// ```
    pub fn env(&mut self, key: impl AsRef<OsStr>, value: impl AsRef<OsStr>) -> &mut Command {
        self.inner.env(key, value);
        self
    }

    /// Removes an environment variable.
    ///
    /// ```
    /// use trellis::process::Command;
    ///
    /// trellis::run(async {
    ///     let out = Command::new("sh")
    ///         .args(["-c", "printf %s \"${GREETING-unset}\""])
    ///         .env("GREETING", "hello")
    ///         .env_remove("GREETING")
    ///         .output()
    ///         .await?;
    ///     assert_eq!(out.stdout, b"unset");
    ///     Ok::<_, std::io::Error>(())
    /// })
    /// .unwrap();
    /// ```
    pub fn env_remove(&mut self, key: impl AsRef<OsStr>) -> &mut Command {
        self.inner.env_remove(key);
        self
    }

    /// Starts from an empty environment.
    ///
    /// ```
    /// use trellis::process::Command;
    ///
    /// trellis::run(async {
    ///     // Nothing is inherited (not even PATH, hence the full path of the shell).
    ///     let out = Command::new("/bin/sh")
    ///         .args(["-c", "printf %s \"${HOME-unset} $ONLY\""])
    ///         .env_clear()
    ///         .env("ONLY", "this")
    ///         .output()
    ///         .await?;
    ///     assert_eq!(out.stdout, b"unset this");
    ///     Ok::<_, std::io::Error>(())
    /// })
    /// .unwrap();
    /// ```
    pub fn env_clear(&mut self) -> &mut Command {
        self.inner.env_clear();
        self
    }

    /// Sets the working directory.
    ///
    /// ```
    /// use trellis::process::Command;
    ///
    /// trellis::run(async {
    ///     let dir = std::env::temp_dir().canonicalize()?;
    ///     let out = Command::new("pwd").current_dir(&dir).output().await?;
    ///     let printed = String::from_utf8(out.stdout).unwrap();
    ///     assert_eq!(std::path::Path::new(printed.trim_end()).canonicalize()?, dir);
    ///     Ok::<_, std::io::Error>(())
    /// })
    /// .unwrap();
    /// ```
    pub fn current_dir(&mut self, dir: impl AsRef<Path>) -> &mut Command {
        self.inner.current_dir(dir);
        self
    }

    /// The child's standard input: [`Stdio::piped`] makes [`Child::stdin`] an async stream.
    /// Default: inherited for `spawn` and `status`, empty (`null`) for `output`.
    ///
    /// ```
    /// use trellis::process::{Command, Stdio};
    ///
    /// trellis::run(async {
    ///     let mut child = Command::new("cat")
    ///         .stdin(Stdio::piped())
    ///         .stdout(Stdio::piped())
    ///         .spawn()?;
    ///     let mut input = child.stdin.take().unwrap();
    ///     input.write_all(b"through cat").await?;
    ///     drop(input); // end of input: cat exits
    ///     let out = child.wait_with_output().await?;
    ///     assert_eq!(out.stdout, b"through cat");
    ///     Ok::<_, std::io::Error>(())
    /// })
    /// .unwrap();
    /// ```
    pub fn stdin(&mut self, cfg: impl Into<Stdio>) -> &mut Command {
        self.inner.stdin(cfg);
        self.stdin_set = true;
        self
    }

    /// The child's standard output. Default: inherited for `spawn` and `status`, piped for
    /// `output`.
    ///
    /// ```
    /// use trellis::process::{Command, Stdio};
    ///
    /// trellis::run(async {
    ///     // Discard what the child prints; `output` then collects nothing.
    ///     let out = Command::new("echo").arg("noise").stdout(Stdio::null()).output().await?;
    ///     assert!(out.status.success());
    ///     assert!(out.stdout.is_empty());
    ///     Ok::<_, std::io::Error>(())
    /// })
    /// .unwrap();
    /// ```
    pub fn stdout(&mut self, cfg: impl Into<Stdio>) -> &mut Command {
        self.inner.stdout(cfg);
        self.stdout_set = true;
        self
    }

    /// The child's standard error. Defaults as for [`stdout`](Command::stdout).
    ///
    /// ```
    /// use trellis::process::{Command, Stdio};
    ///
    /// trellis::run(async {
    ///     let mut child = Command::new("sh")
    ///         .args(["-c", "echo warning >&2"])
    ///         .stderr(Stdio::piped())
    ///         .spawn()?;
    ///     let mut err = child.stderr.take().unwrap();
    ///     let mut buf = [0u8; 64];
    ///     let n = err.read(&mut buf).await?;
    ///     assert_eq!(&buf[..n], b"warning\n");
    ///     assert!(child.wait().await?.success());
    ///     Ok::<_, std::io::Error>(())
    /// })
    /// .unwrap();
    /// ```
    pub fn stderr(&mut self, cfg: impl Into<Stdio>) -> &mut Command {
        self.inner.stderr(cfg);
        self.stderr_set = true;
        self
    }

    /// Time between `SIGTERM` and `SIGKILL` when a call owning the child is cancelled
    /// ([`DEFAULT_GRACE_PERIOD`] unless set).
    ///
    /// ```
    /// use std::time::Duration;
    /// use trellis::process::Command;
    ///
    /// trellis::run(async {
    ///     // This child ignores SIGTERM, so only SIGKILL, 10 ms later, ends it.
    ///     let mut stubborn = Command::new("sh");
    ///     stubborn.args(["-c", "trap '' TERM; while :; do sleep 1; done"]);
    ///     stubborn.grace_period(Duration::from_millis(10));
    ///     let out = trellis::move_on_after(Duration::from_millis(20), stubborn.status()).await;
    ///     assert!(out.is_none()); // cancelled; the child was killed and reaped
    /// });
    /// ```
    pub fn grace_period(&mut self, grace: Duration) -> &mut Command {
        self.grace = grace;
        self
    }

    /// Puts the child in process group `pgid`; 0 makes it the leader of a new group of its own.
    /// Then, and only then, the signals sent through [`Child`] and the termination of a
    /// cancelled call go to the whole group: cancelling `sh -c "a | b"` ends `a` and `b` too,
    /// not only the shell. Another `pgid` joins that group (signals still go to the child
    /// alone).
    ///
    /// ```
    /// use std::time::Duration;
    /// use trellis::process::Command;
    ///
    /// trellis::run(async {
    ///     let mut shell = Command::new("sh");
    ///     shell.args(["-c", "sleep 60 & wait"]).process_group(0);
    ///     // Cancelled: SIGTERM goes to the shell and to its `sleep`.
    ///     let out = trellis::move_on_after(Duration::from_millis(5), shell.status()).await;
    ///     assert!(out.is_none());
    /// });
    /// ```
    pub fn process_group(&mut self, pgid: i32) -> &mut Command {
        use std::os::unix::process::CommandExt;
        self.inner.process_group(pgid);
        self.group = pgid == 0;
        self
    }

    /// Starts the process. Not async: `fork`/`exec` does not wait for the program.
    ///
    /// ```
    /// use trellis::process::Command;
    ///
    /// trellis::run(async {
    ///     let mut child = Command::new("sh").args(["-c", "exit 0"]).spawn()?;
    ///     assert!(child.id() > 0);
    ///     assert!(child.wait().await?.success());
    ///
    ///     let missing = Command::new("trellis-no-such-program").spawn().unwrap_err();
    ///     assert_eq!(missing.kind(), std::io::ErrorKind::NotFound);
    ///     Ok::<_, std::io::Error>(())
    /// })
    /// .unwrap();
    /// ```
    ///
    /// # Errors
    /// If the program cannot be started; the error names it ("could not run `nosuch`: No such
    /// file or directory (os error 2)") and keeps the system's kind (`NotFound`, say).
    ///
    /// # Panics
    /// Outside a runtime.
    pub fn spawn(&mut self) -> io::Result<Child> {
        let program = self.inner.get_program().to_string_lossy().into_owned();
        let mut child = self
            .inner
            .spawn()
            .map_err(|e| io::Error::new(e.kind(), format!("could not run `{program}`: {e}")))?;
        let stdin = child.stdin.take().map(ChildStdin::new).transpose();
        let stdout = child.stdout.take().map(ChildStdout::new).transpose();
        let stderr = child.stderr.take().map(ChildStderr::new).transpose();
        let pid = child.id();
        // From here on this module reaps the process itself; std's handle does nothing on drop.
        drop(child);
        let exit = match Exit::watch(pid) {
            Ok(exit) => exit,
            Err(e) => {
                // Cannot watch it: do not leave it running unobserved.
                kill_and_reap_in_background(pid, self.group);
                return Err(e);
            }
        };
        let mut child = Child {
            pid,
            program,
            exit,
            status: None,
            grace: self.grace,
            group: self.group,
            stdin: None,
            stdout: None,
            stderr: None,
        };
        child.stdin = stdin?;
        child.stdout = stdout?;
        child.stderr = stderr?;
        Ok(child)
    }

    /// Runs the process with inherited standard streams (unless set) and returns its exit
    /// status. A checkpoint; if cancelled, the child is terminated and reaped first (see the
    /// module docs).
    ///
    /// ```
    /// use trellis::process::Command;
    ///
    /// trellis::run(async {
    ///     let status = Command::new("sh").args(["-c", "exit 4"]).status().await?;
    ///     assert_eq!(status.code(), Some(4));
    ///     Ok::<_, std::io::Error>(())
    /// })
    /// .unwrap();
    /// ```
    ///
    /// # Errors
    /// As [`spawn`](Command::spawn), or the cancellation.
    pub async fn status(&mut self) -> io::Result<ExitStatus> {
        let mut child = self.spawn()?;
        child.wait_or_terminate().await
    }

    /// Like [`status`](Command::status), failing unless the exit status is success.
    ///
    /// ```
    /// use trellis::process::Command;
    ///
    /// trellis::run(async {
    ///     assert!(Command::new("true").status_checked().await.is_ok());
    ///     let err = Command::new("false").status_checked().await.unwrap_err();
    ///     assert_eq!(err.to_string(), "`false` failed with exit status: 1");
    /// });
    /// ```
    ///
    /// # Errors
    /// As `status`, or an error carrying an [`ExitError`] for an unsuccessful exit.
    pub async fn status_checked(&mut self) -> io::Result<ExitStatus> {
        let status = self.status().await?;
        self.check(Output {
            status,
            stdout: Vec::new(),
            stderr: Vec::new(),
        })
        .map(|out| out.status)
    }

    /// Runs the process, collecting its standard output and error (piped unless set; standard
    /// input empty unless set). A checkpoint; if cancelled, the child is terminated and reaped
    /// first, and what it wrote is dropped.
    ///
    /// ```
    /// use trellis::process::Command;
    ///
    /// trellis::run(async {
    ///     let out = Command::new("sh")
    ///         .args(["-c", "echo out; echo err >&2; exit 2"])
    ///         .output()
    ///         .await?;
    ///     assert_eq!(out.status.code(), Some(2)); // not an error: see `output_checked`
    ///     assert_eq!(out.stdout, b"out\n");
    ///     assert_eq!(out.stderr, b"err\n");
    ///     Ok::<_, std::io::Error>(())
    /// })
    /// .unwrap();
    /// ```
    ///
    /// # Errors
    /// As [`spawn`](Command::spawn), a read error, or the cancellation.
    pub async fn output(&mut self) -> io::Result<Output> {
        if !self.stdin_set {
            self.inner.stdin(Stdio::null());
        }
        if !self.stdout_set {
            self.inner.stdout(Stdio::piped());
        }
        if !self.stderr_set {
            self.inner.stderr(Stdio::piped());
        }
        let mut child = self.spawn()?;
        child.wait_with_output().await
    }

    /// Like [`output`](Command::output), failing unless the exit status is success (trio's
    /// `run_process(check=True)`).
    ///
    /// ```
    /// use trellis::process::{Command, ExitError};
    ///
    /// trellis::run(async {
    ///     let err = Command::new("sh").args(["-c", "echo bad input >&2; exit 3"])
    ///         .output_checked()
    ///         .await
    ///         .unwrap_err();
    ///     let failed = ExitError::of(&err).unwrap();
    ///     assert_eq!(failed.status().code(), Some(3));
    ///     assert_eq!(err.to_string(), "`sh` failed with exit status: 3: bad input");
    /// });
    /// ```
    ///
    /// # Errors
    /// As `output`, or an error carrying an [`ExitError`] (with the output) for an
    /// unsuccessful exit.
    pub async fn output_checked(&mut self) -> io::Result<Output> {
        let output = self.output().await?;
        self.check(output)
    }

    fn check(&self, output: Output) -> io::Result<Output> {
        if output.status.success() {
            return Ok(output);
        }
        Err(io::Error::other(ExitError {
            program: self.inner.get_program().to_string_lossy().into_owned(),
            output,
        }))
    }
}

/// A process exited unsuccessfully; carried inside the `io::Error` of the `*_checked` calls.
///
/// ```
/// use trellis::process::{Command, ExitError};
///
/// trellis::run(async {
///     let err = Command::new("sh").args(["-c", "exit 7"]).status_checked().await.unwrap_err();
///     let failed: &ExitError = ExitError::of(&err).unwrap();
///     assert_eq!(failed.status().code(), Some(7));
/// });
/// ```
#[derive(Debug)]
pub struct ExitError {
    program: String,
    output: Output,
}

impl ExitError {
    /// The `ExitError` inside `err`, if there is one.
    ///
    /// ```
    /// use trellis::process::{Command, ExitError};
    ///
    /// trellis::run(async {
    ///     // A program that cannot start is not an exit error.
    ///     let err = Command::new("trellis-no-such-program").status_checked().await.unwrap_err();
    ///     assert!(ExitError::of(&err).is_none());
    ///     let err = Command::new("false").status_checked().await.unwrap_err();
    ///     assert!(ExitError::of(&err).is_some());
    /// });
    /// ```
    pub fn of(err: &io::Error) -> Option<&ExitError> {
        err.get_ref().and_then(|e| e.downcast_ref::<ExitError>())
    }

    /// The exit status.
    ///
    /// ```
    /// use trellis::process::{Command, ExitError};
    ///
    /// trellis::run(async {
    ///     let err = Command::new("false").output_checked().await.unwrap_err();
    ///     let status = ExitError::of(&err).unwrap().status();
    ///     assert!(!status.success());
    ///     assert_eq!(status.code(), Some(1));
    /// });
    /// ```
    pub fn status(&self) -> ExitStatus {
        self.output.status
    }

    /// What the process wrote (empty for `status_checked`).
    ///
    /// ```
    /// use trellis::process::{Command, ExitError};
    ///
    /// trellis::run(async {
    ///     let err = Command::new("sh")
    ///         .args(["-c", "echo partial; echo broken >&2; exit 1"])
    ///         .output_checked()
    ///         .await
    ///         .unwrap_err();
    ///     let out = ExitError::of(&err).unwrap().output();
    ///     assert_eq!(out.stdout, b"partial\n");
    ///     assert_eq!(out.stderr, b"broken\n");
    /// });
    /// ```
    pub fn output(&self) -> &Output {
        &self.output
    }
}

impl fmt::Display for ExitError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "`{}` failed with {}", self.program, self.output.status)?;
        let stderr = String::from_utf8_lossy(&self.output.stderr);
        let stderr = stderr.trim();
        if !stderr.is_empty() {
            let shown: String = stderr.chars().take(500).collect();
            write!(f, ": {shown}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ExitError {}
