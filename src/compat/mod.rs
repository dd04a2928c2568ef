//! Glue to crates with traits of their own, behind features, so that they run on trellis
//! without code of the user's.
//!
//! - [`hyper`] (feature `hyper`): hyper 1.x's I/O traits over trellis streams, its executor as
//!   a nursery, its timer on trellis's clock, and an HTTP/1 connection server that shuts down
//!   gracefully when cancelled.

#[cfg(feature = "hyper")]
pub mod hyper;
