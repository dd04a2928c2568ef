//! Helpers for the hyper tests (`tests/http.rs`, `tests/http2.rs`), included with `#[path]` by
//! those two only, so that the other tests do not compile hyper code.

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response};

/// A request with `body`, for `uri`.
pub fn build_request(method: &str, uri: &str, body: &str) -> Request<Full<Bytes>> {
    Request::builder()
        .method(method)
        .uri(uri)
        .header("host", "localhost")
        .body(Full::new(Bytes::from(body.to_string())))
        .unwrap()
}

/// The status and the whole body (as text) of `response`.
pub async fn read_response(response: Response<Incoming>) -> Result<(u16, String), hyper::Error> {
    let status = response.status().as_u16();
    let bytes = response.into_body().collect().await?.to_bytes();
    Ok((status, String::from_utf8(bytes.to_vec()).unwrap()))
}
