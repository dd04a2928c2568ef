//! A line-based TCP chat server, and three clients that use it, in one program.
//!
//! What it shows:
//! - `serve_tcp_on` started with `Nursery::start`, so the program learns the port the server
//!   bound (127.0.0.1, port 0: any free one) before any client connects;
//! - one handler per connection, itself a small nursery: a reader loop in the body and a writer
//!   task fed by a channel, so a slow client never holds up the others;
//! - broadcasting each line to every *other* client, and "joined"/"left" notices;
//! - shutting the server down by cancelling its nursery: every handler ends and every
//!   connection is closed, which the clients still connected see as end of stream.
//!
//! The clients take turns from one task, so the transcript is the same on every run; each wait
//! for a line has a deadline, so a bug shows up as an error instead of a hang.
//!
//! Run it with `cargo run --example chat_server`.

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use trellis::channel::{self, Sender};
use trellis::io::ReadStream;
use trellis::net::{serve_tcp_on, TcpStream};

/// How long a client waits for a line it expects.
const PATIENCE: Duration = Duration::from_secs(2);

/// Splits a byte stream into lines.
#[derive(Default)]
struct Lines {
    buf: Vec<u8>,
}

impl Lines {
    /// The next line without its `\n`, or `None` at end of stream. Cancel-safe: bytes already
    /// read stay in the buffer.
    async fn next(&mut self, stream: &mut impl ReadStream) -> io::Result<Option<String>> {
        loop {
            if let Some(end) = self.buf.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = self.buf.drain(..=end).collect();
                return Ok(Some(String::from_utf8_lossy(&line[..end]).into_owned()));
            }
            let mut chunk = [0u8; 512];
            let n = stream.read(&mut chunk).await?;
            if n == 0 {
                return Ok(None);
            }
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }
}

/// A member of the room: a name, and the queue of lines its connection's writer sends.
struct Member {
    name: String,
    queue: Sender<String>,
}

/// Who is in the room, by connection number.
#[derive(Clone, Default)]
struct Room {
    members: Arc<Mutex<HashMap<u64, Member>>>,
    next_id: Arc<Mutex<u64>>,
}

impl Room {
    /// Sends `line` to everyone except `from`. The queues are unbounded, so this never waits;
    /// a member whose connection is gone just misses it.
    fn broadcast(&self, from: u64, line: &str) {
        for (id, member) in self.members.lock().unwrap().iter() {
            if *id != from {
                let _ = member.queue.try_send(format!("{line}\n"));
            }
        }
    }

    fn join(&self, name: &str, queue: Sender<String>) -> u64 {
        let id = {
            let mut next = self.next_id.lock().unwrap();
            *next += 1;
            *next
        };
        self.broadcast(id, &format!("* {name} joined"));
        self.members.lock().unwrap().insert(
            id,
            Member {
                name: name.to_string(),
                queue,
            },
        );
        id
    }

    fn leave(&self, id: u64) {
        // Removing the member drops its queue's sender: its writer task sees the end.
        let gone = self.members.lock().unwrap().remove(&id);
        if let Some(member) = gone {
            self.broadcast(id, &format!("* {} left", member.name));
        }
    }
}

/// Takes the member out of the room however the handler ends: end of stream, error or
/// cancellation.
struct Membership {
    room: Room,
    id: u64,
}

impl Drop for Membership {
    fn drop(&mut self) {
        self.room.leave(self.id);
    }
}

/// One connection: the first line is the client's name, every later line is a message.
async fn handle(stream: TcpStream, room: Room) -> io::Result<()> {
    let (mut reader, mut writer) = stream.into_split();
    let mut lines = Lines::default();
    let Some(name) = lines.next(&mut reader).await? else {
        return Ok(()); // gone before saying who it was
    };
    let (queue, outgoing) = channel::unbounded::<String>();
    queue
        .try_send(format!("welcome, {name}\n"))
        .expect("a new unbounded queue takes a message");
    let membership = Membership {
        id: room.join(&name, queue),
        room: room.clone(),
    };
    trellis::nursery(|n| async move {
        // The writer: sends this member's queue to the socket until the queue's sender is
        // dropped (when the member leaves the room).
        n.spawn(async move {
            while let Ok(line) = outgoing.recv().await {
                writer.write_all(line.as_bytes()).await?;
            }
            Ok::<_, io::Error>(())
        })?;
        // The reader: every line goes to the others, until the client disconnects.
        while let Some(line) = lines.next(&mut reader).await? {
            room.broadcast(membership.id, &format!("{name}: {line}"));
        }
        drop(membership); // leave the room: the writer finishes its queue and ends
        Ok(())
    })
    .await
    .map_err(first_error)
}

/// A client, as a person at a terminal would drive one.
struct Client {
    name: &'static str,
    stream: TcpStream,
    lines: Lines,
}

impl Client {
    async fn connect(name: &'static str, server: SocketAddr) -> io::Result<Client> {
        let stream = TcpStream::connect(server).await?;
        let mut client = Client {
            name,
            stream,
            lines: Lines::default(),
        };
        client.say(name).await?; // the first line is our name
        client.expect().await?; // "welcome, <name>"
        Ok(client)
    }

    async fn say(&mut self, text: &str) -> io::Result<()> {
        println!("[{}] -> {text}", self.name);
        self.stream.write_all(format!("{text}\n").as_bytes()).await
    }

    /// Waits for the next line from the server and prints it.
    async fn expect(&mut self) -> io::Result<String> {
        let next = trellis::fail_after(PATIENCE, self.lines.next(&mut self.stream)).await?;
        let line = next?.ok_or_else(|| io::Error::other("the server hung up"))?;
        println!("[{}] <- {line}", self.name);
        Ok(line)
    }

    /// Waits for the server to close the connection.
    async fn expect_hangup(&mut self) -> io::Result<()> {
        match trellis::fail_after(PATIENCE, self.lines.next(&mut self.stream)).await?? {
            None => {
                println!("[{}] <- (connection closed by the server)", self.name);
                Ok(())
            }
            Some(line) => Err(io::Error::other(format!("unexpected line {line:?}"))),
        }
    }
}

fn first_error(e: trellis::NurseryError<io::Error>) -> io::Error {
    match e {
        trellis::NurseryError::Cancelled(c) => c.into(),
        trellis::NurseryError::Failed(mut errors) => errors.remove(0),
    }
}

async fn chat() -> io::Result<()> {
    let room = Room::default();
    let (mut alice, mut bob) = trellis::nursery(|n| async move {
        // Start the server and learn its address; it runs until this nursery is cancelled.
        let handler = move |stream| handle(stream, room.clone());
        let addrs = n
            .start(|status| serve_tcp_on(handler, "127.0.0.1:0", status))
            .await?;
        let server = addrs[0];
        println!("server listening on {server}");

        let mut alice = Client::connect("alice", server).await?;
        let mut bob = Client::connect("bob", server).await?;
        alice.expect().await?; // * bob joined
        let mut carol = Client::connect("carol", server).await?;
        alice.expect().await?; // * carol joined
        bob.expect().await?;

        alice.say("hi everyone").await?;
        bob.expect().await?;
        carol.expect().await?;
        bob.say("hello alice").await?;
        alice.expect().await?;
        carol.expect().await?;
        carol.say("bye, I have to go").await?;
        alice.expect().await?;
        bob.expect().await?;

        // Carol disconnects; the others are told.
        println!("[carol] disconnects");
        drop(carol);
        alice.expect().await?; // * carol left
        bob.expect().await?;

        // Shut the server down while alice and bob are still connected.
        println!("server: shutting down");
        n.cancel();
        Ok::<_, io::Error>((alice, bob))
    })
    .await
    .map_err(first_error)?;

    // The nursery has ended, so every handler has ended and closed its connection.
    alice.expect_hangup().await?;
    bob.expect_hangup().await?;
    Ok(())
}

fn main() {
    if let Err(e) = trellis::run(chat()) {
        eprintln!("chat_server: {e}");
        std::process::exit(1);
    }
}
