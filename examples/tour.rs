//! A tour of trellis: a nursery of workers, a deadline, a shield, and an error that cancels the
//! rest. Run it with `cargo run --release --example tour`.

use std::time::{Duration, Instant};

use trellis::{CancelScope, Error, NurseryError};

/// A worker that reports progress every `step` until cancelled.
async fn ticker(name: &'static str, step: Duration) -> Result<(), Error> {
    let mut ticks = 0;
    loop {
        trellis::sleep(step).await?; // a checkpoint: returns Err(Cancelled) once cancelled
        ticks += 1;
        println!("  {name}: tick {ticks}");
    }
}

/// A worker that fails after a while; its failure cancels its siblings.
async fn flaky(after: Duration) -> Result<(), Error> {
    trellis::sleep(after).await?;
    println!("  flaky: giving up");
    Err(Error::InvalidArgument("flaky worker gave up"))
}

async fn tour() -> Result<(), Error> {
    let start = Instant::now();
    let ms = |d: Duration| d.as_millis();

    println!("1. a deadline around a nursery: its tasks are cancelled when it passes");
    let outcome = trellis::move_on_after(Duration::from_millis(35), async {
        trellis::nursery(|n| async move {
            n.spawn(ticker("fast", Duration::from_millis(10)))?;
            n.spawn(ticker("slow", Duration::from_millis(15)))?;
            Ok::<_, Error>(())
        })
        .await
    })
    .await;
    println!(
        "   moved on: {} after {} ms\n",
        outcome.is_none(),
        ms(start.elapsed())
    );

    println!("2. a failing task cancels its siblings; the nursery reports the error");
    let result = trellis::nursery(|n| async move {
        n.spawn(ticker("steady", Duration::from_millis(10)))?;
        n.spawn(flaky(Duration::from_millis(25)))?;
        Ok::<_, Error>(())
    })
    .await;
    match result {
        Err(NurseryError::Failed(errors)) => println!("   nursery failed with {errors:?}\n"),
        other => println!("   unexpected: {other:?}\n"),
    }

    println!("3. a shielded scope finishes its cleanup even though its surroundings are cancelled");
    let outer = CancelScope::new();
    let canceller = outer.clone();
    outer
        .run(async move {
            canceller.cancel();
            let cleanup = CancelScope::new().shielded(true);
            cleanup
                .run(async {
                    trellis::sleep(Duration::from_millis(5)).await?;
                    println!("   cleanup finished inside the shield");
                    Ok::<_, Error>(())
                })
                .await;
            trellis::checkpoint().await?; // outside the shield: cancelled here
            println!("   not printed");
            Ok::<_, Error>(())
        })
        .await;
    println!(
        "   outer scope caught its cancellation: {}\n",
        outer.cancelled_caught()
    );

    println!("4. fail_after turns a deadline into an error");
    let slow = trellis::fail_after(
        Duration::from_millis(5),
        trellis::sleep(Duration::from_secs(1)),
    )
    .await;
    println!("   {slow:?}");
    Ok(())
}

fn main() {
    if let Err(e) = trellis::run(tour()) {
        eprintln!("tour failed: {e}");
        std::process::exit(1);
    }
}
