//! A TCP echo server: one task per connection, stopped cleanly by Ctrl-C or SIGTERM.
//!
//! Run it with `cargo run --example echo_server [port]` (default 7878), then talk to it with
//! `cargo run --example echo_client -- localhost 7878 hello`.

use std::io;

use trellis::net::{serve_tcp_on, TcpStream};
use trellis::signal::{self, Signal};

/// Sends back everything it reads until the client closes its side.
async fn echo(mut stream: TcpStream) -> io::Result<()> {
    let peer = stream.peer_addr()?;
    println!("{peer}: connected");
    let mut buf = vec![0u8; 16 * 1024];
    let mut total = 0;
    loop {
        let n = stream.read(&mut buf).await?;
        if n == 0 {
            println!("{peer}: closed after {total} bytes");
            return Ok(());
        }
        stream.write_all(&buf[..n]).await?;
        total += n;
    }
}

fn main() {
    if let Err(e) = run() {
        eprintln!("echo_server: {e}");
        std::process::exit(1);
    }
}

fn run() -> io::Result<()> {
    let port: u16 = match std::env::args().nth(1) {
        Some(p) => p.parse().map_err(|_| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("not a port number: {p}"),
            )
        })?,
        None => 7878,
    };
    // This program handles Ctrl-C itself (a graceful stop that says so), so it asks the runtime
    // to leave SIGINT alone; by default Ctrl-C would cancel everything and end the process.
    let rt = trellis::Runtime::builder()
        .ctrl_c(trellis::CtrlC::Ignore)
        .build()
        .map_err(io::Error::other)?;
    rt.block_on(async move {
        // Receive the stop signals before starting, so none is missed.
        let mut stop = signal::receiver(&[Signal::INT, Signal::TERM])?;
        trellis::nursery(|n| async move {
            let addrs = n
                .start(|status| serve_tcp_on(echo, ("127.0.0.1", port), status))
                .await?;
            println!("echo server listening on {}", addrs[0]);
            let signal = stop.recv().await?;
            println!("{signal}: shutting down; open connections are closed");
            n.cancel();
            Ok::<_, io::Error>(())
        })
        .await
        .map_err(|e| match e {
            trellis::NurseryError::Cancelled(c) => c.into(),
            trellis::NurseryError::Failed(mut errors) => errors.remove(0),
        })
    })
}
