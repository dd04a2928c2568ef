//! TLS (feature `tls`): rustls over trellis sockets with a certificate made at test time.
//! Handshake, echo, close_notify, an untrusted certificate as a clear error, and what a
//! deadline around a pending read does to the connection (drop-style vs cancellation).

mod common;

use std::sync::Arc;

use common::*;
use futures_lite::{AsyncReadExt, AsyncWriteExt};
use trellis::tls::{self, rustls};
use trellis::{move_on_after, nursery, timeout, TimedOut};

/// Server and client configurations for "localhost", with a certificate made now.
fn configs() -> (Arc<rustls::ServerConfig>, Arc<rustls::ClientConfig>) {
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
    let der = cert.cert.der().clone();
    let key = rustls::pki_types::PrivateKeyDer::Pkcs8(cert.signing_key.serialize_der().into());
    let server = rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(vec![der.clone()], key)
        .unwrap();
    let mut roots = rustls::RootCertStore::empty();
    roots.add(der).unwrap();
    let client = rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    (Arc::new(server), Arc::new(client))
}

/// Echoes what it reads until the client's close_notify, then closes (close_notify back).
async fn echo(mut stream: tls::ServerTlsStream<trellis::net::TcpStream>) -> std::io::Result<()> {
    let mut buf = [0u8; 64];
    loop {
        let n = stream.read(&mut buf).await?;
        if n == 0 {
            return stream.close().await;
        }
        stream.write_all(&buf[..n]).await?;
    }
}

#[test]
fn handshake_echo_and_close_notify() {
    for flavor in FLAVORS {
        autojump_runtime(flavor).block_on(async move {
            let (server, client) = configs();
            nursery(|n| async move {
                let addrs = n
                    .start(|status| tls::serve_tls_on(echo, ("127.0.0.1", 0), server, status))
                    .await?;
                let mut stream = tls::connect_tls("localhost", addrs[0].port(), client).await?;
                stream.write_all(b"hello").await?;
                let mut buf = [0u8; 5];
                stream.read_exact(&mut buf).await?;
                assert_eq!(&buf, b"hello", "{flavor:?}");
                // close_notify each way: the server's read ends, it closes, ours ends.
                stream.close().await?;
                let mut rest = Vec::new();
                stream.read_to_end(&mut rest).await?;
                assert!(rest.is_empty(), "{flavor:?}");
                n.cancel();
                Ok::<_, std::io::Error>(())
            })
            .await
            .map_err(|e| e.into_errors().remove(0))
            .unwrap();
        });
    }
}

// A certificate the client does not trust: a clear handshake error, and the server goes on.
#[test]
fn an_untrusted_certificate_is_a_clear_error() {
    block_on_current(async {
        let (server, _) = configs();
        let (_, stranger) = configs(); // trusts a different certificate
        nursery(|n| async move {
            let addrs = n
                .start(|status| tls::serve_tls_on(echo, ("127.0.0.1", 0), server, status))
                .await?;
            let err = tls::connect_tls("localhost", addrs[0].port(), stranger)
                .await
                .map(drop)
                .unwrap_err();
            assert!(
                err.to_string().contains("invalid peer certificate"),
                "{err}"
            );
            let err = tls::connect_tls("not a name!", 1, configs().1)
                .await
                .map(drop)
                .unwrap_err();
            assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput, "{err}");
            n.cancel();
            Ok::<_, std::io::Error>(())
        })
        .await
        .map_err(|e| e.into_errors().remove(0))
        .unwrap();
    });
}

// A deadline around a read that gets no data: dropped (`timeout`), the connection goes on;
// cancelled (`move_on_after`), the read fails with the cancellation and the connection still
// works afterwards too (the cancelled transport read consumed nothing).
#[test]
fn a_timed_out_read_leaves_the_connection_usable() {
    block_on_current(async {
        let (server, client) = configs();
        nursery(|n| async move {
            let addrs = n
                .start(|status| tls::serve_tls_on(echo, ("127.0.0.1", 0), server, status))
                .await?;
            let mut stream = tls::connect_tls("localhost", addrs[0].port(), client).await?;
            let mut buf = [0u8; 4];
            let out = timeout(secs(1), stream.read(&mut buf)).await;
            assert!(matches!(out, Err(TimedOut)));
            stream.write_all(b"one!").await?;
            stream.read_exact(&mut buf).await?;
            assert_eq!(&buf, b"one!");

            let out = move_on_after(secs(1), async { stream.read(&mut buf).await }).await;
            assert!(out.is_none());
            stream.write_all(b"two!").await?;
            stream.read_exact(&mut buf).await?;
            assert_eq!(&buf, b"two!");
            n.cancel();
            Ok::<_, std::io::Error>(())
        })
        .await
        .map_err(|e| e.into_errors().remove(0))
        .unwrap();
    });
}
