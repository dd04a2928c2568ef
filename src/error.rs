//! Errors of the runtime, and how a cancellation is recognised inside them.
//!
//! A cancellation is an ordinary error value ([`Cancelled`]) that travels outwards with `?` until
//! the cancel scope that caused it absorbs it (contract C3). Because people use many error types,
//! the scope does not look for one type: it asks the [`AsCancelled`] trait whether an error is,
//! or carries, a cancellation. The trait is implemented for [`Error`], [`std::io::Error`],
//! boxed errors, [`NurseryError`], `anyhow::Error` (feature `anyhow`) and [`Cancelled`] itself;
//! implement it for your own error type to let scopes see through it, or let
//! [`error_conversions!`](crate::error_conversions) write it for an enum.

use std::error::Error as StdError;
use std::fmt;
use std::io;
use std::sync::Arc;

/// Why a scope was cancelled (contract C8). The first reason given to a scope wins.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum CancelReason {
    /// [`CancelScope::cancel`](crate::CancelScope::cancel) or a nursery's `cancel` was called,
    /// with the reason given to [`CancelScope::cancel_with_reason`](crate::CancelScope::cancel_with_reason), if any.
    Explicit(Option<Arc<str>>),
    /// The scope's deadline passed.
    Deadline,
    /// A task in the nursery failed or panicked, so the nursery cancelled its other tasks (N2).
    Nursery,
    /// A service task was cancelled because the nursery's other work was done (N12).
    ServiceDone,
    /// The runtime is shutting down.
    Shutdown,
    /// Ctrl-C (SIGINT) interrupted the program (see [`CtrlC`](crate::CtrlC)).
    Interrupted,
}

impl fmt::Display for CancelReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CancelReason::Explicit(Some(why)) => write!(f, "cancelled explicitly: {why}"),
            CancelReason::Explicit(None) => f.write_str("cancelled explicitly"),
            CancelReason::Deadline => f.write_str("deadline expired"),
            CancelReason::Nursery => f.write_str("a sibling task failed"),
            CancelReason::ServiceDone => f.write_str("the nursery's other tasks finished"),
            CancelReason::Shutdown => f.write_str("the runtime is shutting down"),
            CancelReason::Interrupted => f.write_str("interrupted (Ctrl-C)"),
        }
    }
}

/// The error every checkpoint returns while its enclosing cancel scope is cancelled.
///
/// Let it travel outwards with `?`: the scope that was cancelled recognises it and turns it into
/// its own outcome (`None` for [`move_on_after`](crate::move_on_after), [`TimedOut`] for
/// [`fail_after`](crate::fail_after)).
#[derive(Clone, PartialEq, Eq, thiserror::Error)]
#[error("operation cancelled ({reason})")]
pub struct Cancelled {
    reason: CancelReason,
    absorbed: bool,
}

impl fmt::Debug for Cancelled {
    /// `Cancelled { reason: .. }`, plus `absorbed: true` only when set.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("Cancelled");
        d.field("reason", &self.reason);
        if self.absorbed {
            d.field("absorbed", &true);
        }
        d.finish()
    }
}

impl Cancelled {
    pub(crate) fn new(reason: CancelReason) -> Self {
        Cancelled {
            reason,
            absorbed: false,
        }
    }

    /// Marks a cancellation its own scope has already absorbed: a nursery that cancelled itself
    /// before its body finished returns it (there is no value to return), and code that passes
    /// it on with `?` only ends early. Tasks and nurseries further out treat it as a quiet stop,
    /// not a failure, as trio would (there the nursery simply exits).
    pub(crate) fn into_absorbed(mut self) -> Self {
        self.absorbed = true;
        self
    }

    /// Whether this cancellation was already absorbed by the nursery that caused it (the nursery
    /// cancelled itself). Such an error ends the code that propagates it but is never counted as
    /// a task failure.
    pub fn is_absorbed(&self) -> bool {
        self.absorbed
    }

    /// Why the scope that raised this was cancelled.
    pub fn reason(&self) -> &CancelReason {
        &self.reason
    }
}

/// A [`fail_after`](crate::fail_after) / [`fail_at`](crate::fail_at) deadline passed before the
/// work finished (contract C6).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("deadline expired before the operation finished")]
pub struct TimedOut;

/// The crate's general error.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The enclosing cancel scope was cancelled.
    #[error(transparent)]
    Cancelled(#[from] Cancelled),
    /// A `fail_after`/`fail_at` deadline passed.
    #[error(transparent)]
    TimedOut(#[from] TimedOut),
    /// The nursery no longer accepts tasks: its body and all its tasks have finished (N5).
    #[error("the nursery is closed: its body and all its tasks have finished")]
    NurseryClosed,
    /// The task behind a [`TaskHandle`](crate::TaskHandle) failed or panicked; its error went to
    /// its nursery.
    #[error("the task failed; its error was reported to its nursery")]
    TaskFailed,
    /// The task behind a [`TaskHandle`](crate::TaskHandle) was cancelled before it produced a
    /// value.
    #[error("the task was cancelled before it produced a value")]
    TaskCancelled,
    /// A task given to [`Nursery::start`](crate::Nursery::start) finished without calling
    /// [`TaskStatus::started`](crate::TaskStatus::started).
    #[error("the task finished without calling TaskStatus::started")]
    StartedNotCalled,
    /// `spawn_local` was used on a runtime that runs tasks on several threads.
    #[error("spawn_local needs a current-thread runtime (Flavor::CurrentThread)")]
    NotCurrentThread,
    /// The operation was used on something this handle (or one of its clones) has closed.
    #[error("the resource was closed")]
    Closed,
    /// The other side of the resource is gone (all receivers dropped, for example).
    #[error("the resource is broken: the other side is gone")]
    BrokenResource,
    /// The channel is closed and drained.
    #[error("end of channel")]
    EndOfChannel,
    /// A non-blocking operation could not complete now.
    #[error("the operation would block")]
    WouldBlock,
    /// Another task is already using the resource in a way that cannot be shared.
    #[error("another task is already using this resource")]
    BusyResource,
    /// An argument was out of its allowed range (a negative duration, a zero capacity...).
    #[error("invalid argument: {0}")]
    InvalidArgument(&'static str),
    /// Building the runtime or an operating-system operation failed.
    #[error("I/O error: {0}")]
    Io(Arc<io::Error>),
}

impl From<io::Error> for Error {
    fn from(err: io::Error) -> Self {
        match err.cancelled() {
            Some(c) => Error::Cancelled(c),
            None => Error::Io(Arc::new(err)),
        }
    }
}

impl From<Cancelled> for io::Error {
    /// Carries the cancellation inside an `io::Error` (kind `Other`) so that I/O code can use `?`;
    /// scopes still recognise it ([`AsCancelled`]).
    fn from(c: Cancelled) -> Self {
        io::Error::other(c)
    }
}

impl From<TimedOut> for io::Error {
    fn from(t: TimedOut) -> Self {
        io::Error::new(io::ErrorKind::TimedOut, t)
    }
}

impl From<Error> for io::Error {
    fn from(err: Error) -> Self {
        match err {
            Error::Cancelled(c) => c.into(),
            Error::TimedOut(t) => t.into(),
            Error::Io(e) => match Arc::try_unwrap(e) {
                Ok(e) => e,
                Err(e) => io::Error::new(e.kind(), e.to_string()),
            },
            Error::WouldBlock => io::ErrorKind::WouldBlock.into(),
            other => io::Error::other(other),
        }
    }
}

/// Tells whether an error is, or carries, a [`Cancelled`].
///
/// Cancel scopes and nurseries use it to recognise their own cancellation in whatever error type
/// a future returns (contract C3). For an enum with a variant that carries a [`trellis::Error`](Error),
/// [`error_conversions!`](crate::error_conversions) writes this impl and the `From` conversions
/// `?` needs. Otherwise implement it yourself:
///
/// ```
/// use trellis::{AsCancelled, Cancelled};
///
/// enum AppError { Runtime(trellis::Error), Parse(String) }
///
/// impl AsCancelled for AppError {
///     fn cancelled(&self) -> Option<Cancelled> {
///         match self {
///             AppError::Runtime(e) => e.cancelled(),
///             AppError::Parse(_) => None,
///         }
///     }
/// }
/// ```
pub trait AsCancelled {
    /// The cancellation this error is or carries, if any.
    fn cancelled(&self) -> Option<Cancelled>;
}

/// Makes an error enum of your own usable as the error of trellis tasks, nurseries and scopes,
/// given the variant that carries a [`trellis::Error`](Error):
/// `trellis::error_conversions!(AppError::Trellis);` writes the four impls that otherwise take
/// twenty lines by hand:
///
/// - `From<trellis::Error>`, so that `?` works on `n.spawn(..)` and other runtime calls;
/// - `From<trellis::Cancelled>`, so that `?` works on plain waits (`sleep`, `checkpoint`);
/// - `From<std::io::Error>`, so that `?` works on sockets, files and processes; the error goes
///   into the variant as a `trellis::Error` (a cancellation carried inside an `io::Error` becomes
///   `Error::Cancelled`, any other I/O error `Error::Io`);
/// - [`AsCancelled`], answering from that variant and `None` for every other one, so that a
///   scope or nursery recognises its own cancellation inside your type (contract C3) and a
///   nursery does not count a cancelled task as a failure (N3).
///
/// The enum must be named by a plain identifier (invoke the macro where the enum is in scope)
/// and must not be generic. An enum that converts `io::Error` into a variant of its own (say a
/// `thiserror` `#[from]`) cannot take this macro's `From<io::Error>`; write the impls by hand
/// then, as the [`AsCancelled`] example does, and have `cancelled` look into the I/O variant too.
///
/// ```
/// use std::time::Duration;
/// use trellis::testing::{memory_stream_pair, MemoryStream};
/// use trellis::{CancelScope, NurseryError};
///
/// #[derive(Debug)]
/// enum AppError {
///     Trellis(trellis::Error),
///     BadNumber(String),
/// }
///
/// trellis::error_conversions!(AppError::Trellis);
///
/// /// Reads a number sent as text.
/// async fn read_number(stream: &mut MemoryStream) -> Result<u32, AppError> {
///     let mut buf = [0u8; 16];
///     let len = stream.read(&mut buf).await?; // io::Error -> AppError
///     let text = String::from_utf8_lossy(&buf[..len]).into_owned();
///     text.parse().map_err(|_| AppError::BadNumber(text))
/// }
///
/// trellis::run(async {
///     let (mut a, mut b) = memory_stream_pair();
///
///     // Nothing arrives in time: the read fails with the deadline's cancellation, which travels
///     // out as an AppError, and move_on_after recognises it as its own.
///     let out = trellis::move_on_after(Duration::from_millis(1), read_number(&mut b)).await;
///     assert!(out.is_none());
///
///     // A cancelled scope does the same for an explicit cancel.
///     let scope = CancelScope::new();
///     scope.cancel();
///     assert!(scope.run(read_number(&mut b)).await.is_none());
///     assert!(scope.cancelled_caught());
///
///     // A task fails: the nursery cancels its sibling and reports the one failure, not the
///     // sibling's cancellation.
///     let result = trellis::nursery(|n| async move {
///         n.spawn(async move {
///             trellis::sleep_forever().await?; // Cancelled -> AppError
///             Ok(())
///         })?;
///         a.write_all(b"forty-two").await?;
///         read_number(&mut b).await?;
///         Ok::<_, AppError>(())
///     })
///     .await;
///     let Err(NurseryError::Failed(errors)) = result else { panic!("{result:?}") };
///     assert!(matches!(&errors[..], [AppError::BadNumber(t)] if t == "forty-two"));
/// });
/// ```
#[macro_export]
macro_rules! error_conversions {
    ($enum:ident :: $variant:ident $(,)?) => {
        impl ::core::convert::From<$crate::Error> for $enum {
            fn from(err: $crate::Error) -> Self {
                $enum::$variant(err)
            }
        }

        impl ::core::convert::From<$crate::Cancelled> for $enum {
            fn from(cancelled: $crate::Cancelled) -> Self {
                $enum::$variant($crate::Error::from(cancelled))
            }
        }

        impl ::core::convert::From<::std::io::Error> for $enum {
            fn from(err: ::std::io::Error) -> Self {
                $enum::$variant($crate::Error::from(err))
            }
        }

        impl $crate::AsCancelled for $enum {
            // An enum whose only variant is the trellis one makes the last arm unreachable.
            #[allow(unreachable_patterns)]
            fn cancelled(&self) -> ::core::option::Option<$crate::Cancelled> {
                match self {
                    $enum::$variant(err) => $crate::AsCancelled::cancelled(err),
                    _ => ::core::option::Option::None,
                }
            }
        }
    };
}

impl AsCancelled for Cancelled {
    fn cancelled(&self) -> Option<Cancelled> {
        Some(self.clone())
    }
}

impl AsCancelled for Error {
    fn cancelled(&self) -> Option<Cancelled> {
        match self {
            Error::Cancelled(c) => Some(c.clone()),
            Error::Io(e) => e.cancelled(),
            _ => None,
        }
    }
}

impl AsCancelled for io::Error {
    fn cancelled(&self) -> Option<Cancelled> {
        self.get_ref().and_then(|inner| dyn_cancelled(inner))
    }
}

/// Looks through a type-erased error (and the errors it wraps) for a cancellation.
fn dyn_cancelled(err: &(dyn StdError + 'static)) -> Option<Cancelled> {
    let mut next: Option<&(dyn StdError + 'static)> = Some(err);
    while let Some(e) = next {
        if let Some(c) = e.downcast_ref::<Cancelled>() {
            return Some(c.clone());
        }
        if let Some(e) = e.downcast_ref::<Error>() {
            return e.cancelled();
        }
        if let Some(e) = e.downcast_ref::<io::Error>() {
            return e.cancelled();
        }
        next = e.source();
    }
    None
}

impl AsCancelled for Box<dyn StdError + Send + Sync> {
    fn cancelled(&self) -> Option<Cancelled> {
        dyn_cancelled(self.as_ref())
    }
}

impl AsCancelled for Box<dyn StdError> {
    fn cancelled(&self) -> Option<Cancelled> {
        dyn_cancelled(self.as_ref())
    }
}

#[cfg(feature = "anyhow")]
impl AsCancelled for anyhow::Error {
    fn cancelled(&self) -> Option<Cancelled> {
        self.chain().find_map(dyn_cancelled)
    }
}

/// What a nursery returns when it did not produce its body's value (contract N3).
#[derive(Debug)]
pub enum NurseryError<E> {
    /// The body or a task failed; every failure is here, in the order they happened. Cancellations
    /// caused by the nursery's own cancellation are not errors and are left out.
    Failed(Vec<E>),
    /// The body was cancelled and no task failed. An enclosing scope that was cancelled absorbs
    /// this like any other cancellation.
    Cancelled(Cancelled),
}

impl<E> NurseryError<E> {
    /// The errors of the body and tasks (empty for a cancellation).
    pub fn errors(&self) -> &[E] {
        match self {
            NurseryError::Failed(errors) => errors,
            NurseryError::Cancelled(_) => &[],
        }
    }

    /// Takes the errors out (empty for a cancellation).
    pub fn into_errors(self) -> Vec<E> {
        match self {
            NurseryError::Failed(errors) => errors,
            NurseryError::Cancelled(_) => Vec::new(),
        }
    }
}

impl<E: fmt::Display> fmt::Display for NurseryError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NurseryError::Cancelled(c) => write!(f, "nursery cancelled: {c}"),
            NurseryError::Failed(errors) => {
                write!(f, "{} task(s) failed in the nursery", errors.len())?;
                for e in errors {
                    write!(f, "; {e}")?;
                }
                Ok(())
            }
        }
    }
}

/// The source of a cancelled nursery is its [`Cancelled`]: a nursery's cancellation boxed into
/// `Box<dyn Error>` or `anyhow::Error` is still recognised (and absorbed) by the scope that
/// caused it, since [`AsCancelled`] walks the source chain of type-erased errors.
impl<E: fmt::Debug + fmt::Display> StdError for NurseryError<E> {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        match self {
            NurseryError::Cancelled(c) => Some(c),
            NurseryError::Failed(_) => None,
        }
    }
}

impl<E> AsCancelled for NurseryError<E> {
    fn cancelled(&self) -> Option<Cancelled> {
        match self {
            NurseryError::Cancelled(c) => Some(c.clone()),
            NurseryError::Failed(_) => None,
        }
    }
}

impl<E> From<NurseryError<E>> for Error
where
    E: Into<Error>,
{
    /// Keeps a cancellation a cancellation; otherwise the first failure.
    fn from(err: NurseryError<E>) -> Self {
        match err {
            NurseryError::Cancelled(c) => Error::Cancelled(c),
            NurseryError::Failed(errors) => errors
                .into_iter()
                .next()
                .map(Into::into)
                .unwrap_or(Error::TaskFailed),
        }
    }
}

impl From<NurseryError<io::Error>> for io::Error {
    /// Lets I/O code use `?` on a nursery whose tasks fail with `io::Error`, losing nothing: a
    /// cancellation stays a cancellation (scopes still recognise it), a single failure comes
    /// back as it was (its kind kept), and several come back together inside one error of kind
    /// `Other` whose inner error is the `NurseryError` with every failure
    /// (`err.into_inner()` and a downcast give them back).
    ///
    /// ```
    /// use std::io;
    ///
    /// async fn two_failures() -> io::Result<()> {
    ///     trellis::nursery(|n| async move {
    ///         n.spawn(async { Err::<(), _>(io::Error::new(io::ErrorKind::NotFound, "a")) })?;
    ///         n.spawn(async { Err::<(), _>(io::Error::new(io::ErrorKind::NotFound, "b")) })?;
    ///         Ok::<_, io::Error>(())
    ///     })
    ///     .await?; // NurseryError<io::Error> -> io::Error
    ///     Ok(())
    /// }
    ///
    /// trellis::run(async {
    ///     let one = trellis::nursery(|_| async {
    ///         Err::<(), _>(io::Error::new(io::ErrorKind::NotFound, "gone"))
    ///     })
    ///     .await
    ///     .map_err(io::Error::from)
    ///     .unwrap_err();
    ///     assert_eq!(one.kind(), io::ErrorKind::NotFound); // one failure: itself
    ///
    ///     let both = two_failures().await.unwrap_err();
    ///     let inner = both.into_inner().unwrap();
    ///     let all = inner.downcast::<trellis::NurseryError<io::Error>>().unwrap();
    ///     assert_eq!(all.errors().len(), 2); // both failures kept
    /// });
    /// ```
    fn from(err: NurseryError<io::Error>) -> Self {
        match err {
            NurseryError::Cancelled(c) => c.into(),
            NurseryError::Failed(mut errors) if errors.len() == 1 => errors.remove(0),
            failed => io::Error::other(failed),
        }
    }
}

/// The outcome of a future run inside a cancel scope: lets the scope see a cancellation in it.
///
/// Implemented for `Result<T, E>` where `E: AsCancelled`, for `()`, and for `Option<O>` (the
/// output of another scope), so that scopes nest directly: `outer.run(inner.run(fut))`.
///
/// A plain value cannot say that the scope's cancellation ended the work, so the compiler
/// refuses it, with a note saying what to return instead:
///
/// ```compile_fail
/// trellis::run(async {
///     let _ = trellis::move_on_after(std::time::Duration::from_secs(1), async { 1 }).await;
/// });
/// ```
///
/// ```
/// trellis::run(async {
///     let out = trellis::move_on_after(std::time::Duration::from_secs(1), async {
///         Ok::<_, trellis::Cancelled>(1)
///     })
///     .await;
///     assert_eq!(out, Some(Ok(1)));
/// });
/// ```
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot carry a cancellation, so a cancel scope cannot run a future with \
               this output",
    label = "the future given to the scope outputs `{Self}`",
    note = "return a `Result` whose error can carry the cancellation, e.g. \
            `async {{ Ok::<_, trellis::Cancelled>(value) }}`, or `()`"
)]
pub trait Outcome {
    /// The cancellation this outcome carries, if any.
    fn cancellation(&self) -> Option<Cancelled>;
}

impl<T, E: AsCancelled> Outcome for Result<T, E> {
    fn cancellation(&self) -> Option<Cancelled> {
        match self {
            Ok(_) => None,
            Err(e) => e.cancelled(),
        }
    }
}

/// The output of a drop-style [`timeout`](crate::timeout): a timeout is not a cancellation, but
/// the work's own output may carry one (the enclosing scope was cancelled meanwhile).
impl<O: Outcome> Outcome for Result<O, TimedOut> {
    fn cancellation(&self) -> Option<Cancelled> {
        self.as_ref().ok().and_then(Outcome::cancellation)
    }
}

impl Outcome for () {
    fn cancellation(&self) -> Option<Cancelled> {
        None
    }
}

/// The output of a nested [`Scoped`](crate::Scoped): `None` means the inner scope absorbed its
/// own cancellation, so nothing travels further; `Some(out)` carries whatever `out` carries.
impl<O: Outcome> Outcome for Option<O> {
    fn cancellation(&self) -> Option<Cancelled> {
        self.as_ref().and_then(Outcome::cancellation)
    }
}
