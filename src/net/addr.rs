//! Turning what the user wrote ("localhost:8080", `(ip, port)`, a `SocketAddr`) into socket
//! addresses, looking host names up on the thread pool.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};

use crate::thread::run_blocking;

/// Things that name one or more socket addresses: a [`SocketAddr`], an `(IpAddr, u16)` pair, a
/// `"host:port"` string, a `(&str, u16)` pair, or a slice of addresses. IP literals are used as
/// they are; host names are looked up with [`lookup_host`], off the runtime threads.
///
/// Sealed: implemented for the types above only.
///
/// ```
/// use std::net::{Ipv4Addr, SocketAddr};
/// use trellis::net::TcpListener;
///
/// trellis::run(async {
///     let by_str = TcpListener::bind("127.0.0.1:0").await?;
///     let by_pair = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await?;
///     let by_host = TcpListener::bind(("127.0.0.1", 0)).await?;
///     let by_addr = TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0))).await?;
///     for listener in [by_str, by_pair, by_host, by_addr] {
///         assert!(listener.local_addr()?.ip().is_loopback());
///     }
///     // Not an address at all:
///     let err = TcpListener::bind("no port here").await.unwrap_err();
///     assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput);
///     Ok::<_, std::io::Error>(())
/// })
/// .unwrap();
/// ```
pub trait ToSocketAddrs: sealed::Sealed {}

pub(crate) mod sealed {
    use std::net::SocketAddr;

    /// What an address argument stands for.
    pub enum Addrs {
        Resolved(Vec<SocketAddr>),
        Lookup(String, u16),
        Invalid(String),
    }

    pub trait Sealed {
        fn to_addrs(&self) -> Addrs;
    }
}

use sealed::{Addrs, Sealed};

/// Resolves an address argument (a checkpoint when a lookup is needed).
pub(crate) async fn resolve(addr: &impl ToSocketAddrs) -> io::Result<Vec<SocketAddr>> {
    match addr.to_addrs() {
        Addrs::Resolved(addrs) => Ok(addrs),
        Addrs::Lookup(host, port) => lookup_host(&host, port).await,
        Addrs::Invalid(text) => Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("invalid socket address {text:?}: expected \"host:port\" or \"ip:port\""),
        )),
    }
}

/// Looks up `host` (a name or an IP literal) with the system resolver (`getaddrinfo`) on the
/// thread pool, and returns its addresses with `port`. A checkpoint; if cancelled, the lookup
/// thread is abandoned (its answer dropped), as trio does for `getaddrinfo`.
///
/// # Errors
/// An error naming the host when it cannot be resolved (kind as the system reports it), or
/// `Cancelled` inside the `io::Error`.
///
/// ```
/// trellis::run(async {
///     let addrs = trellis::net::lookup_host("127.0.0.1", 80).await?;
///     assert_eq!(addrs, vec!["127.0.0.1:80".parse().unwrap()]);
///     Ok::<_, std::io::Error>(())
/// })
/// .unwrap();
/// ```
pub async fn lookup_host(host: &str, port: u16) -> io::Result<Vec<SocketAddr>> {
    if let Ok(ip) = host.parse::<IpAddr>() {
        crate::checkpoint().await?;
        return Ok(vec![SocketAddr::new(ip, port)]);
    }
    let name = host.to_owned();
    let looked_up = run_blocking(move || {
        std::net::ToSocketAddrs::to_socket_addrs(&(name.as_str(), port))
            .map(|addrs| addrs.collect::<Vec<_>>())
    })
    .abandon_on_cancel(true)
    .await?;
    let addrs = looked_up
        .map_err(|e| io::Error::new(e.kind(), format!("could not resolve host {host:?}: {e}")))?;
    if addrs.is_empty() {
        return Err(io::Error::new(
            io::ErrorKind::NotFound,
            format!("host {host:?} has no addresses"),
        ));
    }
    Ok(addrs)
}

impl ToSocketAddrs for SocketAddr {}
impl Sealed for SocketAddr {
    fn to_addrs(&self) -> Addrs {
        Addrs::Resolved(vec![*self])
    }
}

impl ToSocketAddrs for SocketAddrV4 {}
impl Sealed for SocketAddrV4 {
    fn to_addrs(&self) -> Addrs {
        Addrs::Resolved(vec![SocketAddr::V4(*self)])
    }
}

impl ToSocketAddrs for SocketAddrV6 {}
impl Sealed for SocketAddrV6 {
    fn to_addrs(&self) -> Addrs {
        Addrs::Resolved(vec![SocketAddr::V6(*self)])
    }
}

impl ToSocketAddrs for (IpAddr, u16) {}
impl Sealed for (IpAddr, u16) {
    fn to_addrs(&self) -> Addrs {
        Addrs::Resolved(vec![SocketAddr::new(self.0, self.1)])
    }
}

impl ToSocketAddrs for (Ipv4Addr, u16) {}
impl Sealed for (Ipv4Addr, u16) {
    fn to_addrs(&self) -> Addrs {
        Addrs::Resolved(vec![SocketAddr::new(self.0.into(), self.1)])
    }
}

impl ToSocketAddrs for (Ipv6Addr, u16) {}
impl Sealed for (Ipv6Addr, u16) {
    fn to_addrs(&self) -> Addrs {
        Addrs::Resolved(vec![SocketAddr::new(self.0.into(), self.1)])
    }
}

impl ToSocketAddrs for (&str, u16) {}
impl Sealed for (&str, u16) {
    fn to_addrs(&self) -> Addrs {
        let host = self.0.trim_start_matches('[').trim_end_matches(']');
        match host.parse::<IpAddr>() {
            Ok(ip) => Addrs::Resolved(vec![SocketAddr::new(ip, self.1)]),
            Err(_) => Addrs::Lookup(host.to_owned(), self.1),
        }
    }
}

impl ToSocketAddrs for (String, u16) {}
impl Sealed for (String, u16) {
    fn to_addrs(&self) -> Addrs {
        (self.0.as_str(), self.1).to_addrs()
    }
}

impl ToSocketAddrs for str {}
impl Sealed for str {
    fn to_addrs(&self) -> Addrs {
        if let Ok(addr) = self.parse::<SocketAddr>() {
            return Addrs::Resolved(vec![addr]);
        }
        match self.rsplit_once(':') {
            Some((host, port)) if !host.is_empty() => match port.parse::<u16>() {
                Ok(port) => (host, port).to_addrs(),
                Err(_) => Addrs::Invalid(self.to_owned()),
            },
            _ => Addrs::Invalid(self.to_owned()),
        }
    }
}

impl ToSocketAddrs for String {}
impl Sealed for String {
    fn to_addrs(&self) -> Addrs {
        self.as_str().to_addrs()
    }
}

impl ToSocketAddrs for [SocketAddr] {}
impl Sealed for [SocketAddr] {
    fn to_addrs(&self) -> Addrs {
        Addrs::Resolved(self.to_vec())
    }
}

impl ToSocketAddrs for Vec<SocketAddr> {}
impl Sealed for Vec<SocketAddr> {
    fn to_addrs(&self) -> Addrs {
        Addrs::Resolved(self.clone())
    }
}

impl<T: ToSocketAddrs + ?Sized> ToSocketAddrs for &T {}
impl<T: Sealed + ?Sized> Sealed for &T {
    fn to_addrs(&self) -> Addrs {
        (**self).to_addrs()
    }
}
