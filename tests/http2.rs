//! HTTP/2 (h2c, prior knowledge) through `compat::hyper`'s pieces: hyper's http2 server and
//! client with `HyperIo` streams, `NurseryExecutor` for the per-stream tasks and `TrellisTimer`,
//! all on trellis. hyper's `http2` feature is enabled for tests only (see Cargo.toml): the library
//! itself offers nothing HTTP/2-specific and needs nothing more.
//!
//! GET and POST echo, 50 requests multiplexed on one connection (all in flight at once), and a
//! server cancelled with a request in flight: the handler ends and the client gets an error.

mod common;
#[path = "common/http.rs"]
mod http_common;

use std::io;
use std::sync::Arc;

use bytes::Bytes;
use common::*;
use futures_io::{AsyncRead, AsyncWrite};
use http_body_util::{BodyExt, Full};
use http_common::{build_request, read_response};
use hyper::body::Incoming;
use hyper::{Request, Response, Version};
use trellis::compat::hyper::{run_connection, HyperIo, NurseryExecutor, TrellisTimer};
use trellis::sync::{Barrier, Event};
use trellis::testing::memory_stream_pair;
use trellis::{fail_after, nursery, sleep_forever, CancelScope, Error, Nursery, TaskHandle};

type Client = hyper::client::conn::http2::SendRequest<Full<Bytes>>;

/// Requests sent at once by the multiplexing test.
const CONCURRENT: usize = 50;

/// What the handlers share with the test.
#[derive(Clone)]
struct Server {
    /// `POST /together` answers once this many requests are being handled at the same time.
    together: Arc<Barrier>,
    /// Set when `GET /stuck` is being handled.
    stuck: Arc<Event>,
    /// One guard per `GET /stuck` handler, dropped when the handler ends.
    handlers: DropCounter,
}

impl Server {
    fn new() -> Self {
        Server {
            together: Arc::new(Barrier::new(CONCURRENT)),
            stuck: Arc::new(Event::new()),
            handlers: DropCounter::new(),
        }
    }

    /// `GET /stuck` waits until cancelled; `POST /together` echoes its body once all
    /// [`CONCURRENT`] of them are in; any other `POST` echoes its body; anything else says hello.
    async fn handle(self, req: Request<Incoming>) -> io::Result<Response<Full<Bytes>>> {
        assert_eq!(req.version(), Version::HTTP_2);
        let path = req.uri().path().to_string();
        let body = match (req.method().as_str(), path.as_str()) {
            ("GET", "/stuck") => {
                let _guard = self.handlers.guard();
                self.stuck.set();
                sleep_forever().await?;
                unreachable!("sleep_forever ends only by cancellation")
            }
            ("POST", path) => {
                let body = req.into_body().collect().await.map_err(io::Error::other)?;
                if path == "/together" {
                    self.together.wait().await?;
                }
                body.to_bytes()
            }
            _ => Bytes::from("hello over h2"),
        };
        Ok(Response::new(Full::new(body)))
    }

    /// Serves one HTTP/2 connection. Its streams run as tasks of a nursery of their own (through
    /// `NurseryExecutor`), so no handler outlives the connection; `run_connection` turns a
    /// cancellation into hyper's graceful shutdown (`GOAWAY`, then close once the open streams
    /// have ended).
    async fn serve<T>(self, stream: T) -> Result<(), Error>
    where
        T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        nursery(|streams: Nursery<Error>| async move {
            let service = hyper::service::service_fn(move |req| self.clone().handle(req));
            let conn = hyper::server::conn::http2::Builder::new(NurseryExecutor::new(streams))
                .timer(TrellisTimer)
                .serve_connection(HyperIo::new(stream), service);
            Ok(run_connection(conn, |conn| conn.graceful_shutdown()).await?)
        })
        .await
        .map_err(Error::from)
    }
}

/// A hyper HTTP/2 client on `stream`; its connection task runs in `n` and ends, with hyper's
/// error if any, when the connection does.
async fn connect<T>(n: &Nursery<Error>, stream: T) -> io::Result<Client>
where
    T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let exec = NurseryExecutor::new(n.clone());
    let (send, conn) = hyper::client::conn::http2::handshake(exec, HyperIo::new(stream))
        .await
        .map_err(io::Error::other)?;
    n.spawn(async move {
        // The server going away ends the connection with an error; the requests see it.
        let _ = conn.await;
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
    client.ready().await?;
    let req = build_request(method, &format!("http://localhost{path}"), body);
    let response = client.send_request(req).await?;
    assert_eq!(response.version(), Version::HTTP_2);
    read_response(response).await
}

/// A server connection running in a cancel scope of its own.
struct Running {
    scope: CancelScope,
    task: TaskHandle<Option<Result<(), Error>>>,
}

impl Running {
    /// Spawns `server.serve(stream)` into `n`.
    fn spawn<T>(n: &Nursery<Error>, server: Server, stream: T) -> Result<Running, Error>
    where
        T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let scope = CancelScope::new();
        let serving = scope.run(server.serve(stream));
        let task = n.spawn(async move { Ok(serving.await) })?;
        Ok(Running { scope, task })
    }

    /// Cancels the server and waits for it: it shuts down gracefully and returns `Ok(())`.
    async fn stop(self) -> Result<(), Error> {
        self.scope.cancel();
        let out = self.task.await?;
        assert!(matches!(out, Some(Ok(()))), "{out:?}");
        Ok(())
    }
}

/// Runs `test` with a fresh server state in a nursery, on each flavour, under a watchdog of
/// virtual time: a test that would hang fails with `TimedOut` instead. The nursery ends only
/// once every connection task has, so a passing test also shows that both ends closed.
fn on_each_flavor<F, Fut>(test: F)
where
    F: Fn(Nursery<Error>, Server) -> Fut,
    Fut: std::future::Future<Output = Result<(), Error>> + Send + 'static,
{
    for flavor in FLAVORS {
        let server = Server::new();
        let outcome = autojump_runtime(flavor)
            .block_on(async { fail_after(secs(60), nursery(|n| test(n, server))).await });
        outcome
            .unwrap_or_else(|e| panic!("{flavor:?}: {e}"))
            .unwrap_or_else(|e| panic!("{flavor:?}: {e:?}"));
    }
}

// A GET and a POST echo over HTTP/2 on one loopback TCP connection; stopping the server then
// closes the connection at both ends.
#[test]
fn get_and_post_over_h2c() {
    on_each_flavor(|n, server| async move {
        let (server_io, client_io) = tcp_pair().await?;
        let running = Running::spawn(&n, server, server_io)?;
        let mut client = connect(&n, client_io).await?;
        let get = request(&mut client, "GET", "/", "").await.unwrap();
        assert_eq!(get, (200, "hello over h2".to_string()));
        let post = request(&mut client, "POST", "/echo", "ping").await.unwrap();
        assert_eq!(post, (200, "ping".to_string()));
        running.stop().await
    });
}

// 50 requests on one connection, each answered only once all 50 are being handled together (a
// barrier in the handler): they are multiplexed, not queued, and each gets its own body back.
#[test]
fn fifty_concurrent_requests_share_one_connection() {
    on_each_flavor(|n, server| async move {
        let (server_io, client_io) = memory_stream_pair();
        let running = Running::spawn(&n, server, server_io)?;
        let client = connect(&n, client_io).await?;
        let answers = nursery(|requests| async move {
            let mut handles = Vec::new();
            for i in 0..CONCURRENT {
                let mut client = client.clone();
                handles.push(requests.spawn(async move {
                    let body = format!("request {i}");
                    request(&mut client, "POST", "/together", &body)
                        .await
                        .map_err(|e| Error::from(io::Error::other(e)))
                })?);
            }
            let mut answers = Vec::new();
            for handle in handles {
                answers.push(handle.await?);
            }
            Ok::<_, Error>(answers)
        })
        .await?;
        let expected: Vec<_> = (0..CONCURRENT)
            .map(|i| (200, format!("request {i}")))
            .collect();
        assert_eq!(answers, expected);
        running.stop().await
    });
}

// contract N7, C4, B2: cancelling the server with a request in flight cancels its handler (a task
// of the connection's nursery: its checkpoint fails, it returns, its guard drops), hyper resets
// that stream and closes the connection gracefully; the client's request fails with an error
// rather than waiting forever, and no virtual time passes.
#[test]
fn a_cancelled_server_ends_the_handler_and_the_client_gets_an_error() {
    on_each_flavor(|n, server| async move {
        let t0 = trellis::now();
        let (server_io, client_io) = memory_stream_pair();
        let running = Running::spawn(&n, server.clone(), server_io)?;
        let mut client = connect(&n, client_io).await?;
        let (stuck, stopped) =
            futures_lite::future::zip(request(&mut client, "GET", "/stuck", ""), async {
                server.stuck.wait().await?;
                running.stop().await
            })
            .await;
        stopped?;
        // The handler gave up with the cancellation, so hyper reset its stream; the client sees
        // that reset, or the server's closing GOAWAY if that reached it first.
        let err = format!("{:?}", stuck.unwrap_err());
        assert!(
            err.contains("Reset(StreamId(1), INTERNAL_ERROR, Remote)")
                || err.contains("GoAway(b\"\", NO_ERROR, Remote)"),
            "{err}"
        );
        assert_eq!(server.handlers.created(), 1);
        assert_eq!(server.handlers.count(), 1, "the handler ended");
        assert_eq!(since(t0), secs(0));
        Ok(())
    });
}
