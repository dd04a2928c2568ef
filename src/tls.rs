//! TLS on trellis streams (feature `tls`): rustls through `futures-rustls`, with ring for the
//! cryptography.
//!
//! [`connect_tls`] connects (happy eyeballs) and shakes hands as a client; [`serve_tls_on`] is
//! [`serve_tcp_on`] with a TLS handshake in front of every connection. The stream types are
//! `futures-rustls`'s, re-exported: they implement `futures-io`'s traits, so codecs, hyper
//! (through [`compat::hyper`](crate::compat)) and `AsyncReadExt` work on them as on a plain
//! stream.
//!
//! Cancellation: a cancelled read of a TLS stream fails with `Cancelled` inside the
//! `io::Error`, like any trellis stream's; the transport read it was waiting in consumed
//! nothing, so the TLS stream stays usable (tested both with `move_on_after` and with the
//! drop-style [`timeout`](crate::timeout)). A codec on top that treats every error as fatal (a
//! websocket, say) is another matter: give it `timeout`, which drops its pending read instead.
//!
//! ```
//! use std::sync::Arc;
//! use futures_lite::{AsyncReadExt, AsyncWriteExt};
//! use trellis::tls::{self, rustls};
//!
//! // A certificate for "localhost", made for the example (real programs load theirs).
//! let cert = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
//! let cert_der = cert.cert.der().clone();
//! let key = rustls::pki_types::PrivateKeyDer::Pkcs8(cert.signing_key.serialize_der().into());
//! let server = Arc::new(
//!     rustls::ServerConfig::builder()
//!         .with_no_client_auth()
//!         .with_single_cert(vec![cert_der.clone()], key)
//!         .unwrap(),
//! );
//! let mut roots = rustls::RootCertStore::empty();
//! roots.add(cert_der).unwrap();
//! let client = Arc::new(
//!     rustls::ClientConfig::builder()
//!         .with_root_certificates(roots)
//!         .with_no_client_auth(),
//! );
//!
//! trellis::run(async move {
//!     trellis::nursery(|n| async move {
//!         let addrs = n
//!             .start(|status| {
//!                 tls::serve_tls_on(
//!                     |mut stream| async move {
//!                         let mut buf = [0u8; 4];
//!                         stream.read_exact(&mut buf).await?;
//!                         stream.write_all(&buf).await?;
//!                         stream.close().await // close_notify
//!                     },
//!                     ("127.0.0.1", 0),
//!                     server,
//!                     status,
//!                 )
//!             })
//!             .await?;
//!         let mut stream = tls::connect_tls("localhost", addrs[0].port(), client).await?;
//!         stream.write_all(b"ping").await?;
//!         let mut back = Vec::new();
//!         stream.read_to_end(&mut back).await?; // ends at the server's close_notify
//!         assert_eq!(back, b"ping");
//!         n.cancel();
//!         Ok::<_, std::io::Error>(())
//!     })
//!     .await
//!     .map_err(std::io::Error::from)
//! })
//! .unwrap();
//! ```

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;

pub use futures_rustls::client::TlsStream as ClientTlsStream;
pub use futures_rustls::rustls;
pub use futures_rustls::server::TlsStream as ServerTlsStream;
pub use futures_rustls::{TlsAcceptor, TlsConnector};

use crate::error::{AsCancelled, Error};
use crate::net::{serve_tcp_on, TcpStream, ToSocketAddrs};
use crate::nursery::TaskStatus;

/// Connects to `host:port` (happy eyeballs, [`connect_tcp`](crate::net::connect_tcp)) and
/// performs the TLS handshake, checking the server's certificate for `host` with `config`.
///
/// # Errors
/// `InvalidInput` if `host` is not a valid TLS server name; the connection's errors; the
/// handshake's, such as an untrusted certificate ("invalid peer certificate: UnknownIssuer").
///
/// See the [module](self) for a complete exchange; here, a name is rejected before any
/// connection is made.
///
/// ```
/// use std::sync::Arc;
/// use trellis::tls::{self, rustls};
///
/// let client = Arc::new(
///     rustls::ClientConfig::builder()
///         .with_root_certificates(rustls::RootCertStore::empty())
///         .with_no_client_auth(),
/// );
/// trellis::run(async {
///     let err = tls::connect_tls("not a host name", 443, client).await.unwrap_err();
///     assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput);
/// });
/// ```
pub async fn connect_tls(
    host: &str,
    port: u16,
    config: Arc<rustls::ClientConfig>,
) -> io::Result<ClientTlsStream<TcpStream>> {
    let name = rustls::pki_types::ServerName::try_from(host.to_string()).map_err(|e| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("`{host}` is not a valid TLS server name: {e}"),
        )
    })?;
    let stream = crate::net::connect_tcp(host, port).await?;
    TlsConnector::from(config).connect(name, stream).await
}

/// [`serve_tcp_on`] for TLS: every accepted connection shakes hands with `config` first, then
/// runs `handler` on the TLS stream. A connection whose handshake fails (a client that does not
/// trust the certificate, a port scanner) is closed and skipped: it does not stop the server.
///
/// See the [module](self) for an echo server; here, a client that does not trust the
/// certificate fails its handshake and the server goes on serving.
///
/// # Errors
/// As [`serve_tcp_on`].
///
/// ```
/// use std::sync::Arc;
/// use futures_lite::AsyncReadExt;
/// use trellis::tls::{self, rustls};
///
/// # let cert = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
/// # let cert_der = cert.cert.der().clone();
/// # let key = rustls::pki_types::PrivateKeyDer::Pkcs8(cert.signing_key.serialize_der().into());
/// // `server` holds a certificate for "localhost"; `trusting` trusts it, `wary` trusts nothing.
/// let server = Arc::new(
///     rustls::ServerConfig::builder()
///         .with_no_client_auth()
///         .with_single_cert(vec![cert_der.clone()], key)
///         .unwrap(),
/// );
/// let client = |roots| {
///     Arc::new(
///         rustls::ClientConfig::builder()
///             .with_root_certificates(roots)
///             .with_no_client_auth(),
///     )
/// };
/// let mut roots = rustls::RootCertStore::empty();
/// roots.add(cert_der).unwrap();
/// let (trusting, wary) = (client(roots), client(rustls::RootCertStore::empty()));
///
/// trellis::run(async move {
///     trellis::nursery(|n| async move {
///         let addrs = n
///             .start(|status| {
///                 tls::serve_tls_on(
///                     |mut stream| async move {
///                         futures_lite::AsyncWriteExt::write_all(&mut stream, b"welcome").await?;
///                         futures_lite::AsyncWriteExt::close(&mut stream).await
///                     },
///                     ("127.0.0.1", 0),
///                     server,
///                     status,
///                 )
///             })
///             .await?;
///         let port = addrs[0].port();
///         // A failed handshake ends that connection only...
///         assert!(tls::connect_tls("localhost", port, wary).await.is_err());
///         // ...and the server goes on serving.
///         let mut stream = tls::connect_tls("localhost", port, trusting).await?;
///         let mut greeting = String::new();
///         stream.read_to_string(&mut greeting).await?;
///         assert_eq!(greeting, "welcome");
///         n.cancel();
///         Ok::<_, std::io::Error>(())
///     })
///     .await
///     .map_err(std::io::Error::from)
/// })
/// .unwrap();
/// ```
pub async fn serve_tls_on<H, Fut, E>(
    handler: H,
    addr: impl ToSocketAddrs,
    config: Arc<rustls::ServerConfig>,
    status: TaskStatus<Vec<SocketAddr>, E>,
) -> Result<Infallible, E>
where
    H: Fn(ServerTlsStream<TcpStream>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<(), E>> + Send + 'static,
    E: AsCancelled + From<io::Error> + From<Error> + Send + 'static,
{
    let acceptor = TlsAcceptor::from(config);
    let handler = Arc::new(handler);
    serve_tcp_on(
        move |stream| {
            let (acceptor, handler) = (acceptor.clone(), handler.clone());
            async move {
                match acceptor.accept(stream).await {
                    Ok(tls) => handler(tls).await,
                    // Cancelled mid-handshake: the cancellation goes on, as from any handler.
                    Err(e) if e.cancelled().is_some() => Err(e.into()),
                    // The handshake failed: this connection only.
                    Err(_) => Ok(()),
                }
            }
        },
        addr,
        status,
    )
    .await
}
