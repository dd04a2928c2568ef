//! Happy eyeballs (RFC 8305): connecting to a host with several addresses by racing staggered
//! attempts, so one dead address family costs a quarter second, not a timeout.
//!
//! The race, as trio's `open_tcp_stream` runs it:
//! 1. The addresses are put in RFC 8305 order: families interleaved (IPv6, IPv4, IPv6, ... when
//!    the resolver put IPv6 first), keeping the resolver's order within each family.
//! 2. Attempt 1 starts. Each next attempt starts when the previous one failed, or when
//!    [`DEFAULT_DELAY`] (250 ms, RFC 8305's recommended "connection attempt delay") has passed
//!    since it started, whichever comes first.
//! 3. The first attempt to succeed wins: every other attempt is cancelled, and a loser that
//!    connected anyway is closed.
//! 4. If every attempt fails, all the failures are reported together ([`ConnectError`]).
//!
//! The common case is [`connect_tcp`]. Here a resolver names a dead address before a live one:
//! the first attempt is refused, and the second starts at once and wins.
//!
//! ```
//! use trellis::net::happy_eyeballs::HappyEyeballs;
//!
//! trellis::run(async {
//!     let mut listener = trellis::net::TcpListener::bind("127.0.0.1:0").await?;
//!     let live = listener.local_addr()?;
//!     // A port that nothing listens on any more.
//!     let dead = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?;
//!     let connector = HappyEyeballs::new().resolver(move |_: &str, _: u16| async move {
//!         Ok::<_, std::io::Error>(vec![dead, live])
//!     });
//!     let stream = connector.connect("example.test", live.port()).await?;
//!     assert_eq!(stream.peer_addr()?, live);
//!     Ok::<_, std::io::Error>(())
//! })
//! .unwrap();
//! ```
//!
//! The attempts are tasks of a nursery, so none outlives the call. The resolver is pluggable
//! ([`HappyEyeballs::resolver`]) and the race itself is generic over the connection ([`race`]),
//! which is how it is tested under a mock clock with scripted delays.

use std::error::Error as StdError;
use std::fmt;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use super::tcp::{connect_addr, TcpStream};
use crate::cancel::CancelWaiter;
use crate::error::{AsCancelled, Cancelled};
use crate::state_lock::lock;

/// RFC 8305's recommended delay between starting two attempts.
pub const DEFAULT_DELAY: Duration = Duration::from_millis(250);

/// Connects to `host:port` with happy eyeballs: resolves `host` off the runtime threads, then
/// races the addresses (see the [module docs](self)). A checkpoint.
///
/// ```
/// trellis::run(async {
///     let mut listener = trellis::net::TcpListener::bind("127.0.0.1:0").await?;
///     let port = listener.local_addr()?.port();
///     let stream = trellis::net::connect_tcp("127.0.0.1", port).await?;
///     assert_eq!(stream.peer_addr()?.port(), port);
///     Ok::<_, std::io::Error>(())
/// })
/// .unwrap();
/// ```
///
/// # Errors
/// The resolver's error (naming the host) if `host` cannot be resolved; if every attempt
/// fails, an error carrying a [`ConnectError`] with each attempt's failure.
pub async fn connect_tcp(host: &str, port: u16) -> io::Result<TcpStream> {
    HappyEyeballs::new().connect(host, port).await
}

/// Resolves host names for [`HappyEyeballs`]. Implemented for closures
/// `Fn(&str, u16) -> impl Future<Output = io::Result<Vec<SocketAddr>>>`.
///
/// A fixed table of names, as a type of its own:
///
/// ```
/// use std::collections::HashMap;
/// use std::future::Future;
/// use std::io;
/// use std::net::{IpAddr, SocketAddr};
/// use std::pin::Pin;
/// use trellis::net::happy_eyeballs::Resolve;
///
/// struct Table(HashMap<String, IpAddr>);
///
/// impl Resolve for Table {
///     fn resolve(
///         &self,
///         host: &str,
///         port: u16,
///     ) -> Pin<Box<dyn Future<Output = io::Result<Vec<SocketAddr>>> + Send + 'static>> {
///         let found = self.0.get(host).map(|ip| vec![SocketAddr::new(*ip, port)]);
///         Box::pin(async move { found.ok_or_else(|| io::ErrorKind::NotFound.into()) })
///     }
/// }
///
/// trellis::run(async {
///     let table = Table(HashMap::from([("db.test".to_owned(), [127, 0, 0, 1].into())]));
///     let addrs = table.resolve("db.test", 5432).await.unwrap();
///     assert_eq!(addrs, vec![SocketAddr::from(([127, 0, 0, 1], 5432))]);
///     assert!(table.resolve("nowhere.test", 1).await.is_err());
/// });
/// ```
pub trait Resolve: Send + Sync {
    /// The addresses of `host`, each with `port`.
    ///
    /// ```
    /// use std::net::SocketAddr;
    /// use trellis::net::happy_eyeballs::Resolve;
    ///
    /// // A closure is a resolver.
    /// let fixed = |_: &str, port: u16| async move {
    ///     Ok::<_, std::io::Error>(vec![SocketAddr::from(([127, 0, 0, 1], port))])
    /// };
    /// trellis::run(async {
    ///     let addrs = fixed.resolve("anything", 8080).await.unwrap();
    ///     assert_eq!(addrs[0].port(), 8080);
    /// });
    /// ```
    fn resolve(
        &self,
        host: &str,
        port: u16,
    ) -> Pin<Box<dyn Future<Output = io::Result<Vec<SocketAddr>>> + Send + 'static>>;
}

impl<F, Fut> Resolve for F
where
    F: Fn(&str, u16) -> Fut + Send + Sync,
    Fut: Future<Output = io::Result<Vec<SocketAddr>>> + Send + 'static,
{
    fn resolve(
        &self,
        host: &str,
        port: u16,
    ) -> Pin<Box<dyn Future<Output = io::Result<Vec<SocketAddr>>> + Send + 'static>> {
        Box::pin(self(host, port))
    }
}

/// The system resolver (`getaddrinfo` on the thread pool): [`lookup_host`](super::lookup_host).
///
/// ```
/// use trellis::net::happy_eyeballs::{Resolve, SystemResolver};
///
/// trellis::run(async {
///     let addrs = SystemResolver.resolve("127.0.0.1", 443).await?;
///     assert_eq!(addrs, vec!["127.0.0.1:443".parse().unwrap()]);
///     Ok::<_, std::io::Error>(())
/// })
/// .unwrap();
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemResolver;

impl Resolve for SystemResolver {
    fn resolve(
        &self,
        host: &str,
        port: u16,
    ) -> Pin<Box<dyn Future<Output = io::Result<Vec<SocketAddr>>> + Send + 'static>> {
        let host = host.to_owned();
        Box::pin(async move { super::lookup_host(&host, port).await })
    }
}

/// A configured happy-eyeballs connector: which resolver, and the delay between attempts.
///
/// ```
/// use std::net::SocketAddr;
/// use std::time::Duration;
/// use trellis::net::happy_eyeballs::HappyEyeballs;
///
/// trellis::run(async {
///     let mut listener = trellis::net::TcpListener::bind("127.0.0.1:0").await?;
///     let port = listener.local_addr()?.port();
///     // A resolver that knows one name.
///     let connector = HappyEyeballs::new()
///         .delay(Duration::from_millis(100))
///         .resolver(|host: &str, port: u16| {
///             let known = host == "service.test";
///             async move {
///                 if known {
///                     Ok(vec![SocketAddr::from(([127, 0, 0, 1], port))])
///                 } else {
///                     Err(std::io::Error::new(std::io::ErrorKind::NotFound, "unknown host"))
///                 }
///             }
///         });
///     let stream = connector.connect("service.test", port).await?;
///     assert_eq!(stream.peer_addr()?.port(), port);
///     assert!(connector.connect("other.test", port).await.is_err());
///     Ok::<_, std::io::Error>(())
/// })
/// .unwrap();
/// ```
#[derive(Clone)]
pub struct HappyEyeballs {
    resolver: Arc<dyn Resolve>,
    delay: Duration,
}

impl fmt::Debug for HappyEyeballs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HappyEyeballs")
            .field("delay", &self.delay)
            .finish()
    }
}

impl Default for HappyEyeballs {
    fn default() -> Self {
        Self::new()
    }
}

impl HappyEyeballs {
    /// The system resolver and [`DEFAULT_DELAY`].
    ///
    /// ```
    /// use trellis::net::happy_eyeballs::HappyEyeballs;
    ///
    /// trellis::run(async {
    ///     let mut listener = trellis::net::TcpListener::bind("127.0.0.1:0").await?;
    ///     let port = listener.local_addr()?.port();
    ///     let stream = HappyEyeballs::new().connect("127.0.0.1", port).await?;
    ///     assert_eq!(stream.peer_addr()?.port(), port);
    ///     Ok::<_, std::io::Error>(())
    /// })
    /// .unwrap();
    /// ```
    pub fn new() -> Self {
        HappyEyeballs {
            resolver: Arc::new(SystemResolver),
            delay: DEFAULT_DELAY,
        }
    }

    /// Uses `resolver` to look host names up.
    ///
    /// ```
    /// use std::io;
    /// use trellis::net::happy_eyeballs::{ConnectError, HappyEyeballs};
    ///
    /// trellis::run(async {
    ///     // A resolver that finds no address: nothing to try.
    ///     let connector = HappyEyeballs::new()
    ///         .resolver(|_: &str, _: u16| async { Ok::<_, io::Error>(Vec::new()) });
    ///     let err = connector.connect("empty.test", 80).await.unwrap_err();
    ///     assert_eq!(err.kind(), io::ErrorKind::NotFound);
    ///     assert!(ConnectError::of(&err).unwrap().attempts().is_empty());
    /// });
    /// ```
    pub fn resolver(mut self, resolver: impl Resolve + 'static) -> Self {
        self.resolver = Arc::new(resolver);
        self
    }

    /// The delay before the next attempt starts when the previous one has neither failed nor
    /// succeeded.
    ///
    /// ```
    /// use std::time::Duration;
    /// use trellis::net::happy_eyeballs::HappyEyeballs;
    ///
    /// trellis::run(async {
    ///     let mut listener = trellis::net::TcpListener::bind("127.0.0.1:0").await?;
    ///     let port = listener.local_addr()?.port();
    ///     // Start the next attempt after 50 ms instead of the default 250 ms.
    ///     let connector = HappyEyeballs::new().delay(Duration::from_millis(50));
    ///     connector.connect("127.0.0.1", port).await?;
    ///     Ok::<_, std::io::Error>(())
    /// })
    /// .unwrap();
    /// ```
    pub fn delay(mut self, delay: Duration) -> Self {
        self.delay = delay;
        self
    }

    /// Resolves `host` and races connections to its addresses. A checkpoint.
    ///
    /// ```
    /// use trellis::net::happy_eyeballs::HappyEyeballs;
    ///
    /// trellis::run(async {
    ///     let mut listener = trellis::net::TcpListener::bind("127.0.0.1:0").await?;
    ///     let port = listener.local_addr()?.port();
    ///     let connector = HappyEyeballs::new();
    ///     // One connector serves any number of connections.
    ///     let a = connector.connect("127.0.0.1", port).await?;
    ///     let b = connector.connect("127.0.0.1", port).await?;
    ///     assert_ne!(a.local_addr()?, b.local_addr()?);
    ///     Ok::<_, std::io::Error>(())
    /// })
    /// .unwrap();
    /// ```
    ///
    /// # Errors
    /// As [`connect_tcp`].
    pub async fn connect(&self, host: &str, port: u16) -> io::Result<TcpStream> {
        let addrs = self.resolver.resolve(host, port).await.map_err(|e| {
            if e.cancelled().is_some() || e.to_string().contains(host) {
                e
            } else {
                io::Error::new(e.kind(), format!("could not resolve host {host:?}: {e}"))
            }
        })?;
        race_to(
            addrs,
            self.delay,
            connect_addr,
            Some(format!("{host}:{port}")),
        )
        .await
    }
}

/// Puts addresses in RFC 8305 order: alternate families, starting with the family of the
/// first address, keeping the order within each family.
///
/// ```
/// use std::net::SocketAddr;
/// use trellis::net::happy_eyeballs::interleave;
///
/// let a: Vec<SocketAddr> = ["[::1]:80", "[::2]:80", "10.0.0.1:80", "10.0.0.2:80"]
///     .iter()
///     .map(|s| s.parse().unwrap())
///     .collect();
/// let order: Vec<String> = interleave(a).iter().map(|a| a.to_string()).collect();
/// assert_eq!(order, ["[::1]:80", "10.0.0.1:80", "[::2]:80", "10.0.0.2:80"]);
/// ```
pub fn interleave(addrs: Vec<SocketAddr>) -> Vec<SocketAddr> {
    let Some(first) = addrs.first() else {
        return addrs;
    };
    let first_v6 = first.is_ipv6();
    let (mut same, mut other): (Vec<_>, Vec<_>) =
        addrs.into_iter().partition(|a| a.is_ipv6() == first_v6);
    let mut out = Vec::with_capacity(same.len() + other.len());
    same.reverse();
    other.reverse();
    loop {
        match (same.pop(), other.pop()) {
            (None, None) => return out,
            (a, b) => out.extend(a.into_iter().chain(b)),
        }
    }
}

/// Races `connect` over `addrs` (put in RFC 8305 order first) as described in the
/// [module docs](self); returns the winner. Losing connections are dropped (closed). A
/// checkpoint.
///
/// The connection can be anything; here the first address never answers, so after the delay
/// (virtual time, on a mock clock) the second attempt starts and wins.
///
/// ```
/// use std::net::SocketAddr;
/// use std::time::Duration;
/// use trellis::net::happy_eyeballs::race;
/// use trellis::testing::MockClock;
///
/// let clock = MockClock::new();
/// clock.set_autojump_threshold(Some(Duration::ZERO));
/// let rt = trellis::Runtime::builder()
///     .flavor(trellis::Flavor::CurrentThread)
///     .clock(clock)
///     .build()
///     .unwrap();
/// let slow: SocketAddr = "10.0.0.1:80".parse().unwrap();
/// let fast: SocketAddr = "10.0.0.2:80".parse().unwrap();
/// let winner = rt.block_on(async {
///     race(vec![slow, fast], Duration::from_millis(250), move |addr| async move {
///         if addr == slow {
///             trellis::sleep_forever().await?; // hangs until the race cancels it
///         }
///         Ok(addr)
///     })
///     .await
/// });
/// assert_eq!(winner.unwrap(), fast);
/// ```
///
/// # Errors
/// An error carrying a [`ConnectError`] if every attempt failed (or there was no address), or
/// the cancellation if the caller was cancelled.
pub async fn race<C, F, Fut>(addrs: Vec<SocketAddr>, delay: Duration, connect: F) -> io::Result<C>
where
    C: Send + 'static,
    F: FnMut(SocketAddr) -> Fut + Send,
    Fut: Future<Output = io::Result<C>> + Send + 'static,
{
    race_to(addrs, delay, connect, None).await
}

/// [`race`], naming the target (`host:port`) in the error.
async fn race_to<C, F, Fut>(
    addrs: Vec<SocketAddr>,
    delay: Duration,
    mut connect: F,
    target: Option<String>,
) -> io::Result<C>
where
    C: Send + 'static,
    F: FnMut(SocketAddr) -> Fut + Send,
    Fut: Future<Output = io::Result<C>> + Send + 'static,
{
    let addrs = interleave(addrs);
    if addrs.is_empty() {
        crate::checkpoint().await?;
        return Err(ConnectError {
            target,
            attempts: Vec::new(),
        }
        .into_io());
    }
    let shared = Arc::new(Mutex::new(RaceState::<C> {
        winner: None,
        failures: Vec::new(),
    }));
    let state = shared.clone();
    let outcome = crate::nursery(|n| async move {
        let last = addrs.len() - 1;
        for (index, addr) in addrs.into_iter().enumerate() {
            let failed = Arc::new(Flag::default());
            let attempt = connect(addr);
            let (state, failed_flag, nursery) = (state.clone(), failed.clone(), n.clone());
            n.spawn(async move {
                match attempt.await {
                    Ok(conn) => {
                        let mut s = lock(&state);
                        if s.winner.is_none() {
                            s.winner = Some(conn);
                            drop(s);
                            nursery.cancel();
                        }
                        // else: a loser that connected anyway; `conn` drops here, closed.
                        Ok(())
                    }
                    // The race was won (or the caller cancelled): not a failure of this address.
                    Err(e) if e.cancelled().is_some() => Err(e),
                    Err(e) => {
                        lock(&state).failures.push((index, addr, e));
                        failed_flag.set();
                        Ok(())
                    }
                }
            })?;
            if index == last {
                break;
            }
            // Wait for this attempt to fail, or for the delay; stop starting attempts once the
            // race is decided (the wait then fails with the nursery's cancellation).
            if let Some(Err(_)) = crate::move_on_after(delay, failed.wait()).await {
                break;
            }
        }
        Ok::<_, io::Error>(())
    })
    .await;
    let mut state = lock(&shared);
    match outcome {
        Err(crate::NurseryError::Cancelled(c)) => return Err(c.into()),
        Err(crate::NurseryError::Failed(mut errors)) => return Err(errors.remove(0)),
        Ok(()) => {}
    }
    if let Some(winner) = state.winner.take() {
        return Ok(winner);
    }
    let mut failures = std::mem::take(&mut state.failures);
    failures.sort_by_key(|(index, _, _)| *index);
    Err(ConnectError {
        target,
        attempts: failures.into_iter().map(|(_, a, e)| (a, e)).collect(),
    }
    .into_io())
}

struct RaceState<C> {
    winner: Option<C>,
    failures: Vec<(usize, SocketAddr, io::Error)>,
}

/// Every connection attempt failed. Carried inside the `io::Error` that
/// [`connect_tcp`] returns; get it with [`ConnectError::of`].
///
/// ```
/// use std::io;
/// use std::time::Duration;
/// use trellis::net::happy_eyeballs::race;
/// use trellis::net::ConnectError;
///
/// trellis::run(async {
///     let addrs = vec!["127.0.0.1:1".parse().unwrap(), "127.0.0.2:1".parse().unwrap()];
///     let err = race(addrs, Duration::from_millis(250), |_| async {
///         Err::<(), _>(io::Error::from(io::ErrorKind::ConnectionRefused))
///     })
///     .await
///     .unwrap_err();
///     // Every attempt failed the same way, so the error has that kind.
///     assert_eq!(err.kind(), io::ErrorKind::ConnectionRefused);
///     let all = ConnectError::of(&err).unwrap();
///     assert_eq!(all.attempts().len(), 2);
///     assert!(err.to_string().contains("all 2 attempts failed"));
/// });
/// ```
#[derive(Debug)]
pub struct ConnectError {
    target: Option<String>,
    attempts: Vec<(SocketAddr, io::Error)>,
}

impl ConnectError {
    /// The `ConnectError` inside `err`, if it is one.
    ///
    /// ```
    /// use std::io;
    /// use trellis::net::ConnectError;
    ///
    /// let other = io::Error::new(io::ErrorKind::Other, "not a connect error");
    /// assert!(ConnectError::of(&other).is_none());
    /// ```
    pub fn of(err: &io::Error) -> Option<&ConnectError> {
        err.get_ref().and_then(|e| e.downcast_ref::<ConnectError>())
    }

    /// Each attempt's address and error, in the order the attempts started.
    ///
    /// ```
    /// use std::io;
    /// use std::net::SocketAddr;
    /// use std::time::Duration;
    /// use trellis::net::happy_eyeballs::race;
    /// use trellis::net::ConnectError;
    ///
    /// trellis::run(async {
    ///     let first: SocketAddr = "127.0.0.1:1".parse().unwrap();
    ///     let second: SocketAddr = "127.0.0.1:2".parse().unwrap();
    ///     let err = race(vec![first, second], Duration::from_millis(250), |addr| async move {
    ///         let kind = if addr.port() == 1 {
    ///             io::ErrorKind::ConnectionRefused
    ///         } else {
    ///             io::ErrorKind::TimedOut
    ///         };
    ///         Err::<(), _>(io::Error::from(kind))
    ///     })
    ///     .await
    ///     .unwrap_err();
    ///     let attempts = ConnectError::of(&err).unwrap().attempts();
    ///     assert_eq!(attempts[0].0, first);
    ///     assert_eq!(attempts[0].1.kind(), io::ErrorKind::ConnectionRefused);
    ///     assert_eq!(attempts[1].0, second);
    ///     assert_eq!(attempts[1].1.kind(), io::ErrorKind::TimedOut);
    ///     // Different kinds: the combined error is `Other`.
    ///     assert_eq!(err.kind(), io::ErrorKind::Other);
    /// });
    /// ```
    pub fn attempts(&self) -> &[(SocketAddr, io::Error)] {
        &self.attempts
    }

    /// The kind shared by every failure, else `Other` (`NotFound` if there was no address).
    fn kind(&self) -> io::ErrorKind {
        let mut kinds = self.attempts.iter().map(|(_, e)| e.kind());
        match kinds.next() {
            None => io::ErrorKind::NotFound,
            Some(first) if kinds.all(|k| k == first) => first,
            Some(_) => io::ErrorKind::Other,
        }
    }

    fn into_io(self) -> io::Error {
        io::Error::new(self.kind(), self)
    }
}

impl fmt::Display for ConnectError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let target = self
            .target
            .as_deref()
            .map(|t| format!(" to {t}"))
            .unwrap_or_default();
        match self.attempts.as_slice() {
            [] => write!(f, "could not connect{target}: no address to try"),
            // The attempt's own error already names its address.
            [(addr, only)] if self.target.is_none() || self.target == Some(addr.to_string()) => {
                write!(f, "{only}")
            }
            [(_, only)] => write!(f, "could not connect{target}: {only}"),
            attempts => {
                write!(
                    f,
                    "could not connect{target}: all {} attempts failed",
                    attempts.len()
                )?;
                for (_, err) in attempts {
                    write!(f, "; {err}")?;
                }
                Ok(())
            }
        }
    }
}

impl StdError for ConnectError {}

/// A one-shot flag a task can wait on (cancellation-aware): "this attempt failed".
#[derive(Default)]
struct Flag {
    state: Mutex<(bool, Option<Waker>)>,
}

impl Flag {
    fn set(&self) {
        let waker = {
            let mut s = lock(&self.state);
            s.0 = true;
            s.1.take()
        };
        if let Some(w) = waker {
            w.wake();
        }
    }

    fn wait(&self) -> FlagWait<'_> {
        FlagWait {
            flag: self,
            cancel: CancelWaiter::new(),
        }
    }
}

struct FlagWait<'a> {
    flag: &'a Flag,
    cancel: CancelWaiter,
}

impl Future for FlagWait<'_> {
    type Output = Result<(), Cancelled>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = &mut *self;
        if let Poll::Ready(c) = this.cancel.poll_cancelled("net::happy_eyeballs", cx) {
            return Poll::Ready(Err(c));
        }
        let mut s = lock(&this.flag.state);
        if s.0 {
            drop(s);
            this.cancel.clear();
            return Poll::Ready(Ok(()));
        }
        s.1 = Some(cx.waker().clone());
        Poll::Pending
    }
}
