//! Glue to crates with traits of their own, behind features, so that they run on trellis
//! without code of the user's.
//!
//! - [`hyper`] (feature `hyper`): hyper 1.x's I/O traits over trellis streams, its executor as
//!   a nursery, its timer on trellis's clock, and an HTTP/1 connection server that shuts down
//!   gracefully when cancelled.
//! - [`tracing`] (feature `tracing`): each task a `tracing` span, through the runtime's
//!   instrument hooks.
//!
//! The common case, an HTTP/1 exchange with hyper on both ends (here over an in-memory stream;
//! a [`TcpStream`](crate::net::TcpStream) works the same way):
//!
//! ```
//! # #[cfg(feature = "hyper")]
//! # {
//! use std::convert::Infallible;
//! use trellis::compat::hyper::{serve_http1, HyperIo};
//!
//! trellis::run(async {
//!     let (server_side, client_side) = trellis::testing::memory_stream_pair();
//!     trellis::nursery(|n| async move {
//!         let hello = hyper::service::service_fn(|_req| async {
//!             Ok::<_, Infallible>(hyper::Response::new("hello".to_string()))
//!         });
//!         n.spawn(serve_http1(server_side, hello))?;
//!         let (mut send, conn) = hyper::client::conn::http1::handshake(HyperIo::new(client_side))
//!             .await
//!             .map_err(std::io::Error::other)?;
//!         n.spawn(async move { conn.await.map_err(std::io::Error::other) })?;
//!         let request = hyper::Request::get("/").body(String::new()).unwrap();
//!         let response = send.send_request(request).await.map_err(std::io::Error::other)?;
//!         assert_eq!(response.status(), 200);
//!         drop(send); // closes the connection: both tasks end
//!         Ok::<_, std::io::Error>(())
//!     })
//!     .await
//!     .map_err(std::io::Error::from)
//! })
//! .unwrap();
//! # }
//! ```

#[cfg(feature = "hyper")]
pub mod hyper;
#[cfg(feature = "tracing")]
pub mod tracing;
