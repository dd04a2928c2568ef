//! A TCP echo client: connects with happy eyeballs, sends a message, prints the echo.
//!
//! Run it with `cargo run --example echo_client -- [host] [port] [message...]`
//! (defaults: localhost 7878 "hello from trellis"), against `examples/echo_server.rs`.

use std::io;
use std::time::{Duration, Instant};

use trellis::net::connect_tcp;

fn main() {
    if let Err(e) = run() {
        eprintln!("echo_client: {e}");
        std::process::exit(1);
    }
}

fn run() -> io::Result<()> {
    let mut args = std::env::args().skip(1);
    let host = args.next().unwrap_or_else(|| "localhost".into());
    let port: u16 = match args.next() {
        Some(p) => p.parse().map_err(|_| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("not a port number: {p}"),
            )
        })?,
        None => 7878,
    };
    let words: Vec<String> = args.collect();
    let message = if words.is_empty() {
        "hello from trellis".to_owned()
    } else {
        words.join(" ")
    };
    trellis::run(async move {
        let started = Instant::now();
        // Give up after 10 s rather than hang on an unreachable host.
        let echoed = trellis::fail_after(Duration::from_secs(10), async {
            let mut stream = connect_tcp(&host, port).await?;
            println!(
                "connected to {} in {:?}",
                stream.peer_addr()?,
                started.elapsed()
            );
            stream.write_all(message.as_bytes()).await?;
            stream.shutdown(std::net::Shutdown::Write)?;
            let mut echoed = Vec::new();
            let mut buf = [0u8; 4096];
            loop {
                let n = stream.read(&mut buf).await?;
                if n == 0 {
                    return Ok::<_, io::Error>(echoed);
                }
                echoed.extend_from_slice(&buf[..n]);
            }
        })
        .await??;
        println!("echo: {}", String::from_utf8_lossy(&echoed));
        Ok(())
    })
}
