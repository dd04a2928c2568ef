//! Networking: TCP, UDP and Unix-domain sockets on the runtime's reactor, happy-eyeballs
//! connection, and a server loop.
//!
//! Every operation that can wait is a checkpoint, and a cancelled operation leaves no trace
//! (principle 4): a cancelled `read` or `recv_from` consumed nothing, a cancelled `accept` lost
//! no connection (the connection stays queued for the next `accept`), a cancelled `write` wrote
//! nothing; a cancelled `write_all` says how much it wrote (see [`PartialWrite`]); a cancelled
//! `connect` closed its socket.
//!
//! Host names are resolved off the runtime threads (on the [`thread`](crate::thread) pool), so a
//! slow DNS server never stalls other tasks. Addresses given as IP literals are never looked up.
//!
//! ```
//! use trellis::net::{TcpListener, TcpStream};
//!
//! trellis::run(async {
//!     let mut listener = TcpListener::bind("127.0.0.1:0").await?;
//!     let addr = listener.local_addr()?;
//!     trellis::nursery(|n| async move {
//!         n.spawn(async move {
//!             let (mut conn, _) = listener.accept().await?;
//!             let mut buf = [0u8; 5];
//!             let got = conn.read(&mut buf).await?;
//!             conn.write_all(&buf[..got]).await?;
//!             Ok(())
//!         })?;
//!         let mut client = TcpStream::connect(addr).await?;
//!         client.write_all(b"hello").await?;
//!         let mut echo = [0u8; 5];
//!         let got = client.read(&mut echo).await?;
//!         assert_eq!(&echo[..got], b"hello");
//!         Ok::<_, std::io::Error>(())
//!     })
//!     .await
//!     .map_err(std::io::Error::from)
//! })
//! .unwrap();
//! ```
//!
//! # Unix-domain addresses
//!
//! [`UnixListener`], [`UnixStream`] and [`UnixDatagram`] take paths. On Linux a path whose first
//! byte is NUL names a socket in the abstract namespace instead: the bytes after the NUL are the
//! name, no file is made, and the name goes away with the last socket bound to it. That holds
//! for binding, connecting and sending alike (`std::os::linux::net::SocketAddrExt` reads such
//! an address back); error messages show the name as `@name`. A NUL byte anywhere else in a path
//! is an `InvalidInput` error.
//!
//! [`PartialWrite`]: crate::io::PartialWrite

mod addr;
pub mod happy_eyeballs;
mod serve;
mod socket;
mod tcp;
mod udp;
mod unix;

pub use addr::{lookup_host, ToSocketAddrs};
pub use happy_eyeballs::{connect_tcp, ConnectError};
pub use serve::{serve_listeners, serve_tcp, serve_tcp_on, Listener, ACCEPT_RETRY_DELAY};
pub use tcp::{Incoming, TcpListener, TcpReadHalf, TcpStream, TcpWriteHalf};
pub use udp::UdpSocket;
pub use unix::{UnixDatagram, UnixListener, UnixReadHalf, UnixStream, UnixWriteHalf};

use std::error::Error as StdError;
use std::fmt;
use std::io;

use crate::error::AsCancelled;

/// The backlog every listener asks for: "as many as allowed", as trio does; the system caps it
/// at `net.core.somaxconn`.
const LISTEN_BACKLOG: i32 = if libc::SOMAXCONN > 4096 {
    libc::SOMAXCONN
} else {
    4096
};

/// An I/O error with the operation and address it concerned ("could not bind 127.0.0.1:80"),
/// keeping the original error's kind and the original error as its source. Cancellations pass
/// through unwrapped.
pub(crate) fn with_context(err: io::Error, what: impl FnOnce() -> String) -> io::Error {
    if err.cancelled().is_some() {
        return err;
    }
    io::Error::new(
        err.kind(),
        Context {
            what: what(),
            source: err,
        },
    )
}

#[derive(Debug)]
struct Context {
    what: String,
    source: io::Error,
}

impl fmt::Display for Context {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.what, self.source)
    }
}

impl StdError for Context {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        Some(&self.source)
    }
}
