//! `trellis-bench`: the same workloads on trellis, tokio and smol, interleaved in one run.
//!
//! ```text
//! cargo run --release -p trellis-bench                      # full run: warm-up + 7 rounds
//! cargo run --release -p trellis-bench -- --smoke           # tiny sizes, 1 round (CI)
//! cargo run --release -p trellis-bench -- --only tcp_echo --runtimes trellis,tokio-mt
//! ```
//!
//! See `docs/benchmarks.md` for what each workload measures and how to read the output.

mod harness;
mod memory;
mod report;
mod runtimes;
mod workloads;

#[cfg(feature = "mimalloc")]
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The global allocator every runtime of this build allocates through (see `GLOBAL`): the
/// system's (`malloc` of the C library), or mimalloc with the `mimalloc` feature.
const ALLOCATOR: &str = if cfg!(feature = "mimalloc") {
    "mimalloc"
} else {
    "system"
};

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use harness::{Plan, Row};
use runtimes::Runtime;
use workloads::{Sizes, Workload};

const USAGE: &str = "\
usage: trellis-bench [OPTIONS]

  --smoke            tiny sizes, 1 round, no warm-up (a few seconds; for CI)
  --rounds N         measured rounds per workload (default 7; 1 with --smoke)
  --no-warmup        skip the discarded warm-up round
  --only NAMES       run only these workloads (comma-separated, option may repeat)
  --runtimes NAMES   run only these runtimes (comma-separated); `trellis` and `tokio`
                     select both flavours
  --json PATH        also write the results as JSON to PATH
  --yield-budget N   build the trellis runtimes with `Builder::yield_budget(N)` (default: the
                     library's, 128; 0 is trio's rule: every ready operation yields)
  --workers N        worker threads of trellis-mt, tokio-mt and smol (default: one per core;
                     1 to 1024): run it for 1, 2, 4... to draw a scaling curve
  -h, --help         this text

workloads: spawn_join yield chained_spawn ping_pong mpsc lock_contention timers
           cancel_blocked cancel_cooperative tcp_echo idle_memory sleep
runtimes:  trellis-mt trellis-ct tokio-mt tokio-ct smol
";

/// The parsed command line.
struct Args {
    smoke: bool,
    rounds: Option<usize>,
    warmup: bool,
    workloads: Vec<Workload>,
    runtimes: Vec<Runtime>,
    json: Option<PathBuf>,
    yield_budget: u32,
    workers: Option<usize>,
}

fn main() -> ExitCode {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    if argv.first().map(String::as_str) == Some(memory::CHILD_FLAG) {
        memory::child_main(&argv[1..]);
        return ExitCode::SUCCESS;
    }
    let args = match parse(&argv) {
        Ok(Some(args)) => args,
        Ok(None) => {
            print!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(msg) => {
            eprintln!("trellis-bench: {msg}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };

    let plan = Plan {
        sizes: if args.smoke {
            Sizes::SMOKE
        } else {
            Sizes::FULL
        },
        warmup: args.warmup && !args.smoke,
        rounds: args.rounds.unwrap_or(if args.smoke { 1 } else { 7 }),
        workloads: args.workloads,
        runtimes: args.runtimes,
        sample_limit: Duration::from_secs(if args.smoke { 30 } else { 120 }),
        trellis_yield_budget: args.yield_budget,
    };
    runtimes::trellis_arms::set_yield_budget(args.yield_budget);
    if let Some(n) = args.workers {
        runtimes::set_worker_threads(n);
    }
    println!(
        "trellis-bench: {} worker threads, {} round(s){}, {} allocator, runtimes: {}{}",
        runtimes::worker_threads(),
        plan.rounds,
        if plan.warmup { " after a warm-up" } else { "" },
        ALLOCATOR,
        plan.runtimes
            .iter()
            .map(|r| r.name())
            .collect::<Vec<_>>()
            .join(" "),
        match args.yield_budget {
            trellis::DEFAULT_YIELD_BUDGET => String::new(),
            n => format!(" (trellis yield budget {n})"),
        }
    );
    let results = harness::run(&plan, |result| print!("{}", report::table(&plan, result)));
    print!("{}", report::summary(&plan, &results));

    if let Some(path) = &args.json {
        if let Err(e) = std::fs::write(path, report::json(&plan, args.smoke, &results)) {
            eprintln!("trellis-bench: cannot write {}: {e}", path.display());
            return ExitCode::FAILURE;
        }
    }
    let failed = results
        .iter()
        .flat_map(|r| &r.rows)
        .any(|(_, row)| matches!(row, Row::Failed(_)));
    if failed {
        eprintln!("trellis-bench: some samples failed (see above)");
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}

/// Parses the command line; `Ok(None)` asks for the usage text.
fn parse(argv: &[String]) -> Result<Option<Args>, String> {
    let mut args = Args {
        smoke: false,
        rounds: None,
        warmup: true,
        workloads: Vec::new(),
        runtimes: Vec::new(),
        json: None,
        yield_budget: trellis::DEFAULT_YIELD_BUDGET,
        workers: None,
    };
    let mut it = argv.iter();
    while let Some(flag) = it.next() {
        let mut value = || {
            it.next()
                .ok_or_else(|| format!("{flag} needs a value"))
                .cloned()
        };
        match flag.as_str() {
            "-h" | "--help" => return Ok(None),
            "--smoke" => args.smoke = true,
            "--no-warmup" => args.warmup = false,
            "--rounds" => {
                let v = value()?;
                match v.parse() {
                    Ok(n) if n > 0 => args.rounds = Some(n),
                    _ => return Err(format!("--rounds wants a positive integer, not {v:?}")),
                }
            }
            "--only" => {
                for name in value()?.split(',').filter(|s| !s.is_empty()) {
                    let w = Workload::from_name(name)
                        .ok_or_else(|| format!("unknown workload {name:?}"))?;
                    if !args.workloads.contains(&w) {
                        args.workloads.push(w);
                    }
                }
            }
            "--runtimes" => {
                for name in value()?.split(',').filter(|s| !s.is_empty()) {
                    let selected: Vec<Runtime> = Runtime::ALL
                        .into_iter()
                        .filter(|r| r.name() == name || r.name().split('-').next() == Some(name))
                        .collect();
                    if selected.is_empty() {
                        return Err(format!("unknown runtime {name:?}"));
                    }
                    for r in selected {
                        if !args.runtimes.contains(&r) {
                            args.runtimes.push(r);
                        }
                    }
                }
            }
            "--json" => args.json = Some(PathBuf::from(value()?)),
            "--yield-budget" => {
                let v = value()?;
                args.yield_budget = v.parse().map_err(|_| {
                    format!("--yield-budget wants a non-negative integer, not {v:?}")
                })?;
            }
            "--workers" => {
                let v = value()?;
                match v.parse() {
                    Ok(n) if (1..=runtimes::MAX_WORKERS).contains(&n) => args.workers = Some(n),
                    _ => {
                        return Err(format!(
                            "--workers wants an integer from 1 to {}, not {v:?}",
                            runtimes::MAX_WORKERS
                        ))
                    }
                }
            }
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    // Keep the canonical order whatever order the filters were given in.
    args.workloads = if args.workloads.is_empty() {
        Workload::ALL.to_vec()
    } else {
        Workload::ALL
            .into_iter()
            .filter(|w| args.workloads.contains(w))
            .collect()
    };
    args.runtimes = if args.runtimes.is_empty() {
        Runtime::ALL.to_vec()
    } else {
        Runtime::ALL
            .into_iter()
            .filter(|r| args.runtimes.contains(r))
            .collect()
    };
    Ok(Some(args))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_args(args: &[&str]) -> Result<Option<Args>, String> {
        parse(&args.iter().map(|a| a.to_string()).collect::<Vec<_>>())
    }

    #[test]
    fn every_workload_is_listed_in_the_usage_and_found_by_its_name() {
        let listed: Vec<&str> = USAGE
            .split_once("workloads:")
            .and_then(|(_, rest)| rest.split_once("runtimes:"))
            .map(|(names, _)| names.split_whitespace().collect())
            .unwrap();
        let all: Vec<&str> = Workload::ALL.iter().map(|w| w.name()).collect();
        assert_eq!(listed, all);
        for w in Workload::ALL {
            assert_eq!(Workload::from_name(w.name()), Some(w));
        }
    }

    #[test]
    fn workers_takes_a_count_from_one_to_the_maximum() {
        let args = parse_args(&["--workers", "4"]).unwrap().unwrap();
        assert_eq!(args.workers, Some(4));
        let args = parse_args(&["--workers", "1024"]).unwrap().unwrap();
        assert_eq!(args.workers, Some(runtimes::MAX_WORKERS));
        assert_eq!(parse_args(&[]).unwrap().unwrap().workers, None);
    }

    #[test]
    fn workers_refuses_zero_too_many_and_words_with_a_message() {
        for bad in ["0", "1025", "-1", "many", ""] {
            let err = parse_args(&["--workers", bad]).err().unwrap();
            assert_eq!(
                err,
                format!("--workers wants an integer from 1 to 1024, not {bad:?}")
            );
        }
        assert_eq!(
            parse_args(&["--workers"]).err().unwrap(),
            "--workers needs a value"
        );
    }
}
