//! An HTTP/1 server with hyper on trellis (feature `hyper`): `GET /` says hello, `POST /echo`
//! sends the body back, every connection is a task of the server's nursery, and Ctrl-C stops it
//! gracefully (requests in flight finish, then the connections close).
//!
//! ```sh
//! cargo run --release --features hyper --example http_server -- 8080
//! curl http://127.0.0.1:8080/
//! curl -d 'hello' http://127.0.0.1:8080/echo
//! ```

use std::convert::Infallible;
use std::io;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use trellis::compat::hyper::serve_http1;
use trellis::net::serve_tcp_on;

async fn app(req: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    let response = match (req.method().as_str(), req.uri().path()) {
        ("GET", "/") => Response::new(Full::new(Bytes::from("hello from trellis\n"))),
        ("POST", "/echo") => match req.into_body().collect().await {
            Ok(body) => Response::new(Full::new(body.to_bytes())),
            Err(_) => bad_request(),
        },
        _ => {
            let mut not_found = Response::new(Full::new(Bytes::from("not found\n")));
            *not_found.status_mut() = StatusCode::NOT_FOUND;
            not_found
        }
    };
    Ok(response)
}

fn bad_request() -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::new()));
    *response.status_mut() = StatusCode::BAD_REQUEST;
    response
}

fn main() -> io::Result<()> {
    let port: u16 = match std::env::args().nth(1) {
        Some(p) => p
            .parse()
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, format!("bad port: {p}")))?,
        None => 8080,
    };
    trellis::run(async move {
        trellis::nursery(|n| async move {
            let addrs = n
                .start(|status| {
                    serve_tcp_on(
                        |stream| serve_http1(stream, hyper::service::service_fn(app)),
                        ("127.0.0.1", port),
                        status,
                    )
                })
                .await?;
            println!("listening on http://{}/ (Ctrl-C stops)", addrs[0]);
            Ok::<_, io::Error>(())
        })
        .await
        .map_err(|e| match e {
            trellis::NurseryError::Cancelled(c) => c.into(),
            trellis::NurseryError::Failed(mut errors) => errors.remove(0),
        })
    })
}
