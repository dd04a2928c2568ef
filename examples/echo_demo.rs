//! The echo server and many clients in one process: starts the server, drives it with
//! concurrent clients (connected by happy eyeballs to "localhost"), checks every echo, then
//! cancels the server while idle connections are still open and shows that every handler
//! ended.
//!
//! Run it with `cargo run --release --example echo_demo [clients] [messages-per-client]`.

use std::io;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

use trellis::net::{connect_tcp, serve_tcp_on, TcpStream};
use trellis::{CancelScope, NurseryError};

/// Counts handlers that are running.
struct Live(Arc<AtomicUsize>);

impl Drop for Live {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

async fn echo(mut stream: TcpStream, live: Live) -> io::Result<()> {
    let _live = live;
    stream.set_nodelay(true)?;
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = stream.read(&mut buf).await?;
        if n == 0 {
            return Ok(());
        }
        stream.write_all(&buf[..n]).await?;
    }
}

/// One client: `messages` round trips of a 64-byte message; returns the bytes echoed.
async fn client(port: u16, id: usize, messages: usize) -> io::Result<usize> {
    let mut stream = connect_tcp("localhost", port).await?;
    stream.set_nodelay(true)?;
    let mut reply = [0u8; 64];
    for i in 0..messages {
        let mut message = [b'.'; 64];
        let text = format!("client {id} message {i}");
        message[..text.len()].copy_from_slice(text.as_bytes());
        stream.write_all(&message).await?;
        let mut got = 0;
        while got < reply.len() {
            let n = stream.read(&mut reply[got..]).await?;
            if n == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "server closed",
                ));
            }
            got += n;
        }
        assert_eq!(reply, message, "client {id}: wrong echo");
    }
    Ok(messages * 64)
}

fn first(e: NurseryError<io::Error>) -> io::Error {
    match e {
        NurseryError::Cancelled(c) => c.into(),
        NurseryError::Failed(mut errors) => errors.remove(0),
    }
}

fn main() {
    if let Err(e) = run() {
        eprintln!("echo_demo: {e}");
        std::process::exit(1);
    }
}

fn run() -> io::Result<()> {
    let mut args = std::env::args().skip(1);
    let clients: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(200);
    let messages: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(100);
    let live = Arc::new(AtomicUsize::new(0));
    let live_at_end = live.clone();
    trellis::run(async move {
        let server = CancelScope::new();
        let stop = server.clone();
        trellis::nursery(|n| async move {
            let counter = live.clone();
            let addrs = n
                .start(|status| async move {
                    let handler = move |stream| {
                        counter.fetch_add(1, Ordering::SeqCst);
                        echo(stream, Live(counter.clone()))
                    };
                    server
                        .run(serve_tcp_on(handler, "127.0.0.1:0", status))
                        .await;
                    Ok::<_, io::Error>(())
                })
                .await?;
            let port = addrs[0].port();
            println!("server listening on {}", addrs[0]);

            let started = Instant::now();
            let bytes = Arc::new(AtomicUsize::new(0));
            let total = bytes.clone();
            trellis::nursery(|c| async move {
                for id in 0..clients {
                    let bytes = bytes.clone();
                    c.spawn(async move {
                        bytes.fetch_add(client(port, id, messages).await?, Ordering::SeqCst);
                        Ok::<_, io::Error>(())
                    })?;
                }
                Ok::<_, io::Error>(())
            })
            .await
            .map_err(first)?;
            let elapsed = started.elapsed();
            let round_trips = clients * messages;
            println!(
                "{clients} clients x {messages} round trips = {round_trips} echoes of 64 bytes \
                 ({} bytes) in {elapsed:.2?}: {:.0} round trips/s",
                total.load(Ordering::SeqCst),
                round_trips as f64 / elapsed.as_secs_f64()
            );

            // Leave some connections open and idle, then stop the server.
            let mut idle = Vec::new();
            for _ in 0..10 {
                idle.push(TcpStream::connect(addrs[0]).await?);
            }
            while live.load(Ordering::SeqCst) < 10 {
                trellis::sleep(std::time::Duration::from_millis(1)).await?;
            }
            println!(
                "{} handlers running for idle connections; cancelling the server",
                live.load(Ordering::SeqCst)
            );
            stop.cancel();
            for mut conn in idle {
                let n = conn.read(&mut [0u8; 1]).await.unwrap_or(0);
                assert_eq!(n, 0, "the server closed every connection");
            }
            println!("every idle connection was closed by the server");
            Ok::<_, io::Error>(())
        })
        .await
        .map_err(first)
    })?;
    println!(
        "handlers still running after the server returned: {}",
        live_at_end.load(Ordering::SeqCst)
    );
    Ok(())
}
