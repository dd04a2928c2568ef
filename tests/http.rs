//! hyper 1.x on trellis (feature `hyper`): a server of `serve_tcp_on` + `serve_http1` driven by
//! hyper's own client running on trellis too. GET, POST echo, keep-alive, many parallel
//! connections, and a server cancelled with a request in flight: the request finishes
//! (graceful shutdown), the connection closes, every handler ends.

mod common;
#[path = "common/http.rs"]
mod http_common;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use common::*;
use http_body_util::{BodyExt, Full};
use http_common::{build_request, read_response};
use hyper::body::Incoming;
use hyper::{Request, Response};
use trellis::compat::hyper::{serve_http1, HyperIo};
use trellis::net::{serve_tcp_on, TcpStream};
use trellis::{nursery, sleep, CancelScope, Nursery};

type Client = hyper::client::conn::http1::SendRequest<Full<Bytes>>;

/// `GET /slow` answers after 10 s of virtual time; `POST` echoes the body; anything else says
/// hello.
async fn app(req: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    let body = match (req.method().as_str(), req.uri().path()) {
        ("POST", _) => req.into_body().collect().await.unwrap().to_bytes(),
        (_, "/slow") => {
            let _ = sleep(secs(10)).await;
            Bytes::from("slow done")
        }
        _ => Bytes::from("hello"),
    };
    Ok(Response::new(Full::new(body)))
}

/// Starts the server in `n`; returns its address.
async fn start_server(n: &Nursery<std::io::Error>) -> std::io::Result<SocketAddr> {
    let addrs = n
        .start(|status| {
            serve_tcp_on(
                |stream| serve_http1(stream, hyper::service::service_fn(app)),
                ("127.0.0.1", 0),
                status,
            )
        })
        .await?;
    Ok(addrs[0])
}

/// A hyper client connection on trellis; its connection task runs in `n`.
async fn connect(n: &Nursery<std::io::Error>, addr: SocketAddr) -> std::io::Result<Client> {
    let stream = TcpStream::connect(addr).await?;
    let (send, conn) = hyper::client::conn::http1::handshake(HyperIo::new(stream))
        .await
        .map_err(std::io::Error::other)?;
    n.spawn(async move {
        let _ = conn.await; // ends when the server closes the connection
        Ok(())
    })?;
    Ok(send)
}

async fn request(
    client: &mut Client,
    method: &str,
    path: &str,
    body: &str,
) -> Result<(u16, String), hyper::Error> {
    // After a response the connection task may not have taken the connection back yet; hyper
    // refuses a request sent before then ("connection was not ready"), so wait for it.
    client.ready().await?;
    let response = client
        .send_request(build_request(method, path, body))
        .await?;
    read_response(response).await
}

#[test]
fn get_post_and_keep_alive_on_one_connection() {
    for flavor in FLAVORS {
        autojump_runtime(flavor).block_on(async move {
            nursery(|n| async move {
                let addr = start_server(&n).await?;
                let mut client = connect(&n, addr).await?;
                let get = request(&mut client, "GET", "/", "").await.unwrap();
                assert_eq!(get, (200, "hello".to_string()), "{flavor:?}");
                // The same connection again: keep-alive.
                let post = request(&mut client, "POST", "/echo", "ping").await.unwrap();
                assert_eq!(post, (200, "ping".to_string()), "{flavor:?}");
                n.cancel();
                Ok::<_, std::io::Error>(())
            })
            .await
            .unwrap();
        });
    }
}

#[test]
fn many_parallel_connections_are_served() {
    for flavor in FLAVORS {
        let served = autojump_runtime(flavor).block_on(async move {
            let served = Arc::new(std::sync::atomic::AtomicUsize::new(0));
            let s = served.clone();
            nursery(|n| async move {
                let addr = start_server(&n).await?;
                nursery(|clients| {
                    let n = n.clone();
                    async move {
                        for c in 0..10 {
                            let (n, s) = (n.clone(), s.clone());
                            clients.spawn(async move {
                                let mut client = connect(&n, addr).await?;
                                for r in 0..5 {
                                    let body = format!("{c}-{r}");
                                    let got = request(&mut client, "POST", "/", &body)
                                        .await
                                        .map_err(std::io::Error::other)?;
                                    assert_eq!(got, (200, body));
                                    s.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                                }
                                Ok(())
                            })?;
                        }
                        Ok::<_, std::io::Error>(())
                    }
                })
                .await
                .map_err(|e| e.into_errors().remove(0))?;
                n.cancel();
                Ok::<_, std::io::Error>(())
            })
            .await
            .unwrap();
            served.load(std::sync::atomic::Ordering::SeqCst)
        });
        assert_eq!(served, 50, "{flavor:?}");
    }
}

// Cancelling the server while a request is in flight: the request completes (graceful
// shutdown), the connection is closed after it, and the server's nursery ends then.
#[test]
fn a_cancelled_server_finishes_the_request_in_flight_then_closes() {
    for flavor in FLAVORS {
        autojump_runtime(flavor).block_on(async move {
            let t0 = trellis::now();
            nursery(|n| async move {
                let server_scope = CancelScope::new();
                let scope = server_scope.clone();
                let addr = n
                    .start(move |status| async move {
                        let out = scope
                            .run(nursery(|s| async move {
                                status.started(start_server(&s).await?);
                                Ok::<_, std::io::Error>(())
                            }))
                            .await;
                        match out {
                            None => Ok(()), // cancelled: the server stopped
                            Some(result) => result.map_err(|e| e.into_errors().remove(0)),
                        }
                    })
                    .await?;
                let mut client = connect(&n, addr).await?;
                let (slow, ()) =
                    futures_lite::future::zip(request(&mut client, "GET", "/slow", ""), async {
                        sleep(secs(1)).await.unwrap();
                        server_scope.cancel();
                    })
                    .await;
                assert_eq!(slow.unwrap(), (200, "slow done".to_string()), "{flavor:?}");
                assert_eq!(since(t0), secs(10), "{flavor:?}");
                // The server closed the connection after that request.
                assert!(
                    request(&mut client, "GET", "/", "").await.is_err(),
                    "{flavor:?}"
                );
                Ok::<_, std::io::Error>(())
            })
            .await
            .unwrap();
            // Every handler and the server ended with the nursery, at the same virtual time.
            assert_eq!(since(t0), secs(10), "{flavor:?}");
        });
    }
}
