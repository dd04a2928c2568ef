//! A small web crawler over a fake, in-memory site.
//!
//! What it shows:
//! - one task per page, all in one nursery, started as links are discovered;
//! - a [`CapacityLimiter`] so that at most three "fetches" run at a time, however many tasks
//!   are waiting;
//! - a per-job deadline with [`trellis::fail_after`]: a page that takes too long is abandoned
//!   (its fetch is cancelled) and reported as timed out, while the rest of the crawl goes on;
//! - the runtime's clock: the program runs on a [`MockClock`] with autojump, so the "network
//!   latencies" of up to 1.5 s pass in virtual time, the run takes a few milliseconds and its
//!   report is the same every time. Delete the `.clock(..)` line to crawl in real time.
//!
//! Run it with `cargo run --example crawler`.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use trellis::channel;
use trellis::sync::CapacityLimiter;
use trellis::testing::MockClock;
use trellis::{Error, Flavor, Runtime, TimedOut};

/// How long one page may take before its job gives up.
const DEADLINE: Duration = Duration::from_millis(500);
/// How many fetches may run at once.
const CONCURRENCY: usize = 3;

/// The fake site: each page, how long the "server" takes to answer it, and its links.
fn site() -> HashMap<&'static str, (Duration, Vec<&'static str>)> {
    let ms = Duration::from_millis;
    HashMap::from([
        ("/", (ms(50), vec!["/about", "/blog", "/shop"])),
        ("/about", (ms(80), vec!["/", "/team"])),
        ("/team", (ms(120), vec!["/about"])),
        ("/blog", (ms(60), vec!["/blog/1", "/blog/2", "/blog/3"])),
        ("/blog/1", (ms(90), vec!["/blog"])),
        ("/blog/2", (ms(700), vec!["/blog", "/archive"])), // too slow: times out
        ("/blog/3", (ms(100), vec!["/blog", "/missing"])), // links to a page that is not there
        ("/shop", (ms(1500), vec!["/shop/cart"])),         // too slow: times out
        ("/archive", (ms(40), vec![])), // never visited: only a page that timed out links here
        ("/shop/cart", (ms(40), vec![])), // never visited, likewise
    ])
}

/// What became of one page.
#[derive(Debug)]
enum Outcome {
    Fetched { links: usize },
    TimedOut,
    Failed(Error),
}

/// The fake "HTTP GET": waits for the page's latency, then returns its links. The sleep is a
/// checkpoint, so a deadline that passes meanwhile cancels it there.
async fn fetch(
    site: &HashMap<&'static str, (Duration, Vec<&'static str>)>,
    url: &str,
    running: &AtomicUsize,
    peak: &AtomicUsize,
) -> Result<Vec<&'static str>, Error> {
    let now_running = running.fetch_add(1, Ordering::SeqCst) + 1;
    peak.fetch_max(now_running, Ordering::SeqCst);
    let result = match site.get(url) {
        Some((latency, links)) => trellis::sleep(*latency).await.map(|()| links.clone()),
        None => trellis::sleep(Duration::from_millis(10))
            .await
            .map(|()| vec![]),
    };
    running.fetch_sub(1, Ordering::SeqCst);
    match result {
        Ok(_) if !site.contains_key(url) => Err(Error::InvalidArgument("404 not found")),
        Ok(links) => Ok(links),
        Err(cancelled) => Err(cancelled.into()),
    }
}

fn main() {
    // Virtual time: sleeps complete as soon as every task is waiting (autojump at zero).
    let clock = MockClock::new();
    clock.set_autojump_threshold(Some(Duration::ZERO));
    let rt = Runtime::builder()
        .flavor(Flavor::CurrentThread)
        .clock(clock)
        .build()
        .expect("runtime");

    let result = rt.block_on(async {
        let site = Arc::new(site());
        let limiter = CapacityLimiter::new(CONCURRENCY);
        let running = Arc::new(AtomicUsize::new(0));
        let peak = Arc::new(AtomicUsize::new(0));
        let started = trellis::now();
        // Jobs report back here: the page, what happened, and the links to follow.
        let (report_tx, report_rx) = channel::unbounded::<(&str, Outcome, Vec<&str>)>();

        let report = trellis::nursery(|n| {
            let peak = peak.clone();
            async move {
                let mut seen = HashSet::new();
                let mut report = BTreeMap::new();
                let mut in_flight = 0;
                let mut to_visit = vec!["/"];
                loop {
                    // Start a job for every link not seen before.
                    for url in to_visit.drain(..) {
                        if !seen.insert(url) {
                            continue;
                        }
                        in_flight += 1;
                        let (site, limiter, tx) =
                            (site.clone(), limiter.clone(), report_tx.clone());
                        let (running, peak) = (running.clone(), peak.clone());
                        n.spawn(async move {
                            // Wait for a free slot first: the deadline is for the fetch
                            // itself, not for the time spent queueing behind other jobs.
                            let _slot = limiter.acquire().await?;
                            let job = fetch(&site, url, &running, &peak);
                            let (outcome, links) = match trellis::fail_after(DEADLINE, job).await {
                                Ok(Ok(links)) => (Outcome::Fetched { links: links.len() }, links),
                                Ok(Err(e)) => (Outcome::Failed(e), vec![]),
                                Err(TimedOut) => (Outcome::TimedOut, vec![]),
                            };
                            tx.send((url, outcome, links)).await?;
                            Ok::<_, Error>(())
                        })?;
                    }
                    if in_flight == 0 {
                        break; // every job has reported: the crawl is complete
                    }
                    let (url, outcome, links) = report_rx.recv().await?;
                    in_flight -= 1;
                    report.insert(url, outcome);
                    to_visit = links;
                }
                Ok::<_, Error>(report)
            }
        })
        .await?;
        Ok::<_, trellis::NurseryError<Error>>((
            report,
            trellis::now() - started,
            peak.load(Ordering::SeqCst),
        ))
    });

    let (report, took, peak) = match result {
        Ok(r) => r,
        Err(e) => {
            eprintln!("crawl failed: {e}");
            std::process::exit(1);
        }
    };
    for (url, outcome) in &report {
        match outcome {
            Outcome::Fetched { links } => println!("{url:<12} fetched, {links} links"),
            Outcome::TimedOut => println!("{url:<12} TIMED OUT after {DEADLINE:?}"),
            Outcome::Failed(e) => println!("{url:<12} failed: {e}"),
        }
    }
    let timed_out: Vec<_> = report
        .iter()
        .filter(|(_, o)| matches!(o, Outcome::TimedOut))
        .map(|(url, _)| *url)
        .collect();
    println!("timed out: {timed_out:?}");
    println!(
        "{} pages visited in {took:?} of virtual time, at most {peak} fetches at once",
        report.len()
    );
    assert_eq!(timed_out, ["/blog/2", "/shop"]);
    assert!(peak <= CONCURRENCY);
}
