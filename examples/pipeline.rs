//! A three-stage pipeline: a producer, a transform stage and a consumer, joined by bounded
//! channels.
//!
//! What it shows:
//! - backpressure: the channels hold at most two items, so the fast producer is held back to the
//!   pace of the slow consumer instead of piling up a backlog (the channel statistics prove it);
//! - a clean shutdown without sentinel values: when the producer finishes it drops its sender,
//!   the transform stage sees the end of its input, finishes and drops *its* sender, and the
//!   consumer sees the end in turn;
//! - the whole pipeline lives in one nursery, so it is over when its last stage is, and an error
//!   in any stage would cancel the others.
//!
//! Run it with `cargo run --example pipeline`.

use std::time::Duration;

use trellis::channel::{self, Receiver, Sender};
use trellis::Error;

/// How many items the producer emits.
const ITEMS: u32 = 12;
/// Room in each channel's buffer: the most items that can wait between two stages.
const BUFFER: usize = 2;

/// Stage 1: emits the numbers 1..=ITEMS as fast as the channel lets it.
async fn produce(out: Sender<u32>) -> Result<(), Error> {
    for i in 1..=ITEMS {
        // Waits while the buffer is full: this is the backpressure.
        out.send(i).await?;
    }
    println!("producer: sent {ITEMS} items, closing its end");
    Ok(()) // `out` is dropped here, which closes the channel for the next stage
}

/// Stage 2: turns each number into a line of text.
async fn transform(input: Receiver<u32>, out: Sender<String>) -> Result<(), Error> {
    // `recv` fails with `EndOfChannel` once every sender is gone and the buffer is drained.
    loop {
        match input.recv().await {
            Ok(i) => out.send(format!("{i} squared is {}", i * i)).await?,
            Err(Error::EndOfChannel) => break,
            Err(e) => return Err(e),
        }
    }
    println!("transform: input ended, closing its output");
    Ok(())
}

/// Stage 3: a deliberately slow consumer (1 ms per item); returns what it received and the
/// largest backlog it ever saw waiting in its input channel.
async fn consume(input: Receiver<String>) -> Result<(Vec<String>, usize), Error> {
    let mut lines = Vec::new();
    loop {
        match input.recv().await {
            Ok(line) => {
                trellis::sleep(Duration::from_millis(1)).await?;
                lines.push(line);
            }
            Err(Error::EndOfChannel) => break,
            Err(e) => return Err(e),
        }
    }
    let peak = input.statistics().peak_buffer_used;
    Ok((lines, peak))
}

fn main() {
    let result = trellis::run(async {
        let (numbers_tx, numbers_rx) = channel::bounded::<u32>(BUFFER);
        let (lines_tx, lines_rx) = channel::bounded::<String>(BUFFER);
        trellis::nursery(|n| async move {
            // Each stage owns the ends it uses; moving them into the tasks means nobody else
            // holds a sender that would keep a channel open for ever.
            n.spawn(produce(numbers_tx))?;
            n.spawn(transform(numbers_rx, lines_tx))?;
            // The consumer runs in the nursery's body; the nursery still waits for the other
            // two stages before it returns.
            consume(lines_rx).await
        })
        .await
    });

    match result {
        Ok((lines, peak)) => {
            for line in &lines {
                println!("consumer: {line}");
            }
            println!(
                "consumer: received {} items; at most {peak} ever waited in a buffer of {BUFFER}",
                lines.len()
            );
            assert_eq!(lines.len(), ITEMS as usize);
            assert!(peak <= BUFFER);
        }
        Err(e) => {
            eprintln!("pipeline failed: {e}");
            std::process::exit(1);
        }
    }
}
