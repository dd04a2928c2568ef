//! The same stream contract checked over TCP, Unix sockets and memory streams
//! (`testing::check_two_way_stream`, trio's `check_two_way_stream`).

mod common;

use std::io;

use common::{current_thread_on, tcp_pair};
use trellis::net::UnixStream;
use trellis::testing::{
    check_two_way_stream, memory_stream_pair, memory_stream_pair_with_capacity,
};

#[test]
fn tcp_streams_conform() {
    current_thread_on(None)
        .block_on(check_two_way_stream(tcp_pair))
        .unwrap();
}

#[test]
fn tcp_streams_conform_on_a_multi_thread_runtime() {
    trellis::run(check_two_way_stream(tcp_pair)).unwrap();
}

#[test]
fn unix_streams_conform() {
    current_thread_on(None)
        .block_on(check_two_way_stream(|| async { UnixStream::pair() }))
        .unwrap();
}

#[test]
fn memory_streams_conform() {
    current_thread_on(None)
        .block_on(check_two_way_stream(|| async { Ok(memory_stream_pair()) }))
        .unwrap();
    current_thread_on(None)
        .block_on(check_two_way_stream(|| async {
            Ok(memory_stream_pair_with_capacity(7))
        }))
        .unwrap();
}

#[test]
fn memory_streams_work_with_futures_io_helpers() {
    use futures_lite::io::{AsyncBufReadExt, AsyncWriteExt};
    current_thread_on(None)
        .block_on(async {
            let (mut a, mut b) = memory_stream_pair();
            a.write_all(b"line one\nline two\n").await?;
            AsyncWriteExt::close(&mut a).await?;
            let mut line = String::new();
            b.read_line(&mut line).await?;
            assert_eq!(line, "line one\n");
            line.clear();
            b.read_line(&mut line).await?;
            assert_eq!(line, "line two\n");
            line.clear();
            assert_eq!(b.read_line(&mut line).await?, 0);
            Ok::<_, io::Error>(())
        })
        .unwrap();
}
