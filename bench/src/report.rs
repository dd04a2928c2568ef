//! Turning samples into numbers people read: statistics, the trellis-vs-best ratio, the text
//! tables and the JSON file.
//!
//! Every sample is "lower is better" (a time, or bytes per task), so is the ratio: it divides
//! the median of the better trellis flavour by the median of the best other runtime, and a
//! value below 1 means trellis wins the row. The floor (a bare executor on trellis's own
//! foundations) is no other runtime: where it has a row, the better trellis flavour is also
//! divided by it, as "x floor". Throughputs (operations per second, e.g. TCP
//! requests per second) are shown next to the times but never used for the ratio.

use std::fmt::Write as _;

use crate::harness::{Plan, Row, WorkloadResult};
use crate::runtimes::{worker_threads, Runtime};
use crate::workloads::Metric;

/// Median, minimum and maximum of one row's samples.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Stats {
    pub median: f64,
    pub min: f64,
    pub max: f64,
}

impl Stats {
    /// `None` when there are no samples.
    pub fn of(samples: &[f64]) -> Option<Stats> {
        let mut sorted = samples.to_vec();
        sorted.sort_by(f64::total_cmp);
        let n = sorted.len();
        let median = match n {
            0 => return None,
            _ if n % 2 == 1 => sorted[n / 2],
            _ => (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0,
        };
        Some(Stats {
            median,
            min: sorted[0],
            max: sorted[n - 1],
        })
    }
}

/// The better trellis flavour against the best other runtime, by median.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Ratio {
    pub trellis: Runtime,
    pub other: Runtime,
    /// trellis median / other median: below 1 means trellis is faster (or smaller).
    pub value: f64,
}

impl Ratio {
    /// `None` unless at least one trellis row and one other row have samples.
    pub fn of(result: &WorkloadResult) -> Option<Ratio> {
        let (trellis, t) = best(result, Side::Trellis)?;
        let (other, o) = best(result, Side::Other)?;
        Some(Ratio {
            trellis,
            other,
            value: t / o,
        })
    }
}

/// The better trellis flavour's median over the floor's, where both have one.
pub fn over_floor(result: &WorkloadResult) -> Option<f64> {
    let (_, t) = best(result, Side::Trellis)?;
    let (_, f) = best(result, Side::Floor)?;
    Some(t / f)
}

/// Which rows a best median is taken among.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Side {
    Trellis,
    /// The competitors: neither trellis nor the floor.
    Other,
    Floor,
}

impl Side {
    fn of(rt: Runtime) -> Side {
        if rt.is_trellis() {
            Side::Trellis
        } else if rt.is_floor() {
            Side::Floor
        } else {
            Side::Other
        }
    }
}

/// The runtime with the lowest median among the rows of `side`.
fn best(result: &WorkloadResult, side: Side) -> Option<(Runtime, f64)> {
    result
        .rows
        .iter()
        .filter(|(rt, _)| Side::of(*rt) == side)
        .filter_map(|(rt, row)| Some((*rt, stats(row)?.median)))
        .min_by(|a, b| a.1.total_cmp(&b.1))
}

fn stats(row: &Row) -> Option<Stats> {
    match row {
        Row::Samples(samples) => Stats::of(samples),
        Row::NotAvailable | Row::Failed(_) => None,
    }
}

/// The table of one workload, as printed after it finishes.
pub fn table(plan: &Plan, result: &WorkloadResult) -> String {
    let w = result.workload;
    let metric = w.metric(&plan.sizes);
    let mut out = String::new();
    let _ = writeln!(out, "\n== {}: {}", w.name(), w.describe(&plan.sizes));
    match metric {
        Metric::Time { op, .. } => {
            let per_op = format!("per {op}");
            let rate = format!("{op}s/s");
            let _ = writeln!(
                out,
                "{:<12} {:>10} {:>10} {:>10} {:>14} {:>16}",
                "runtime", "median", "min", "max", per_op, rate
            );
        }
        Metric::BytesPerTask => {
            let _ = writeln!(
                out,
                "{:<12} {:>10} {:>10} {:>10}",
                "runtime", "median", "min", "max"
            );
        }
    }
    for (rt, row) in &result.rows {
        let _ = write!(out, "{:<12}", rt.name());
        match (row, stats(row)) {
            (_, Some(s)) => match metric {
                Metric::Time { ops, .. } => {
                    let _ = writeln!(
                        out,
                        " {:>10} {:>10} {:>10} {:>14} {:>16.0}",
                        fmt_time(s.median),
                        fmt_time(s.min),
                        fmt_time(s.max),
                        per_op(metric, s.median),
                        ops as f64 / (s.median * 1e-9)
                    );
                }
                Metric::BytesPerTask => {
                    let _ = writeln!(
                        out,
                        " {:>10} {:>10} {:>10}",
                        fmt_bytes(s.median),
                        fmt_bytes(s.min),
                        fmt_bytes(s.max)
                    );
                }
            },
            (Row::Failed(msg), None) => {
                let _ = writeln!(out, " failed: {}", msg.lines().next().unwrap_or(""));
            }
            (Row::NotAvailable | Row::Samples(_), None) => {
                let _ = writeln!(out, " {:>10}", "n/a");
            }
        }
    }
    let _ = writeln!(out, "{}", ratio_line(result));
    out
}

fn ratio_line(result: &WorkloadResult) -> String {
    let mut line = match Ratio::of(result) {
        Some(r) => format!(
            "ratio {} / {} = {:.2} ({})",
            r.trellis.name(),
            r.other.name(),
            r.value,
            if r.value < 1.0 {
                "trellis ahead"
            } else {
                "trellis behind"
            }
        ),
        None => "ratio n/a".to_owned(),
    };
    if let Some(x) = over_floor(result) {
        let _ = write!(line, "; {x:.2} x floor");
    }
    line
}

/// The closing summary: one line per workload with the best of each side, per operation
/// (or per task for memory), and the ratio.
pub fn summary(plan: &Plan, results: &[WorkloadResult]) -> String {
    let mut out = String::from(
        "\n== summary (per operation; ratio = better trellis median / best other median, \
         below 1: trellis ahead; x floor = better trellis median / the floor's)\n",
    );
    let _ = writeln!(
        out,
        "{:<18} {:<11} {:>10}   {:<11} {:>10} {:>7} {:>8}",
        "workload", "trellis", "", "best other", "", "ratio", "x floor"
    );
    for result in results {
        let metric = result.workload.metric(&plan.sizes);
        let side = |side| match best(result, side) {
            Some((rt, median)) => (rt.name(), per_op(metric, median)),
            None => ("n/a", String::new()),
        };
        let ((t, t_value), (o, o_value)) = (side(Side::Trellis), side(Side::Other));
        let ratio = Ratio::of(result).map_or("n/a".to_owned(), |r| format!("{:.2}", r.value));
        let floor = over_floor(result).map_or(String::new(), |x| format!("{x:.2}"));
        let _ = writeln!(
            out,
            "{:<18} {t:<11} {t_value:>10}   {o:<11} {o_value:>10} {ratio:>7} {floor:>8}",
            result.workload.name(),
        );
    }
    out
}

/// A median as the summary shows it: time per operation, or bytes per task.
fn per_op(metric: Metric, median: f64) -> String {
    match metric {
        Metric::Time { ops, .. } => fmt_time(median / ops as f64),
        Metric::BytesPerTask => fmt_bytes(median),
    }
}

/// A duration in nanoseconds with a unit that keeps 3-4 significant digits.
fn fmt_time(ns: f64) -> String {
    if ns < 1e3 {
        format!("{ns:.1} ns")
    } else if ns < 1e6 {
        format!("{:.2} µs", ns / 1e3)
    } else if ns < 1e9 {
        format!("{:.2} ms", ns / 1e6)
    } else {
        format!("{:.3} s", ns / 1e9)
    }
}

fn fmt_bytes(bytes: f64) -> String {
    format!("{bytes:.0} B")
}

/// The whole run as JSON (written by hand: the structure is small and fixed).
pub fn json(plan: &Plan, smoke: bool, results: &[WorkloadResult]) -> String {
    let mut out = String::new();
    out.push_str("{\n");
    let _ = writeln!(out, "  \"suite\": \"trellis-bench\",");
    let _ = writeln!(out, "  \"smoke\": {smoke},");
    let _ = writeln!(out, "  \"warmup\": {},", plan.warmup);
    let _ = writeln!(out, "  \"rounds\": {},", plan.rounds);
    let _ = writeln!(out, "  \"worker_threads\": {},", worker_threads());
    let _ = writeln!(
        out,
        "  \"trellis_yield_budget\": {},",
        plan.trellis_yield_budget
    );
    let _ = writeln!(out, "  \"allocator\": \"{}\",", crate::ALLOCATOR);
    let _ = writeln!(out, "  \"lower_is_better\": true,");
    out.push_str("  \"workloads\": [");
    for (i, result) in results.iter().enumerate() {
        out.push_str(if i == 0 { "\n" } else { ",\n" });
        workload_json(&mut out, plan, result);
    }
    out.push_str("\n  ]\n}\n");
    out
}

fn workload_json(out: &mut String, plan: &Plan, result: &WorkloadResult) {
    let w = result.workload;
    let metric = w.metric(&plan.sizes);
    let _ = write!(
        out,
        "    {{\"name\": {}, \"description\": {}, ",
        string(w.name()),
        string(&w.describe(&plan.sizes))
    );
    let ops = match metric {
        Metric::Time { ops, op } => {
            let _ = write!(
                out,
                "\"unit\": \"ns\", \"ops\": {ops}, \"op\": {}, ",
                string(op)
            );
            Some(ops as f64)
        }
        Metric::BytesPerTask => {
            out.push_str("\"unit\": \"bytes_per_task\", ");
            None
        }
    };
    out.push_str("\"runtimes\": [");
    for (i, (rt, row)) in result.rows.iter().enumerate() {
        out.push_str(if i == 0 { "\n" } else { ",\n" });
        let _ = write!(out, "      {{\"name\": {}, ", string(rt.name()));
        match row {
            Row::NotAvailable => out.push_str("\"status\": \"n/a\"}"),
            Row::Failed(msg) => {
                let _ = write!(out, "\"status\": \"failed\", \"error\": {}}}", string(msg));
            }
            Row::Samples(samples) => {
                let list: Vec<String> = samples.iter().map(|&v| number(v)).collect();
                let _ = write!(
                    out,
                    "\"status\": \"ok\", \"samples\": [{}]",
                    list.join(", ")
                );
                if let Some(s) = Stats::of(samples) {
                    let _ = write!(
                        out,
                        ", \"median\": {}, \"min\": {}, \"max\": {}",
                        number(s.median),
                        number(s.min),
                        number(s.max)
                    );
                    if let Some(ops) = ops {
                        let _ = write!(
                            out,
                            ", \"median_ns_per_op\": {}, \"median_ops_per_sec\": {}",
                            number(s.median / ops),
                            number(ops / (s.median * 1e-9))
                        );
                    }
                }
                out.push('}');
            }
        }
    }
    out.push_str("\n    ], \"ratio\": ");
    match Ratio::of(result) {
        Some(r) => {
            let _ = write!(
                out,
                "{{\"value\": {}, \"trellis\": {}, \"other\": {}}}",
                number(r.value),
                string(r.trellis.name()),
                string(r.other.name())
            );
        }
        None => out.push_str("null"),
    }
    let _ = write!(
        out,
        ", \"x_floor\": {}}}",
        over_floor(result).map_or("null".to_owned(), number)
    );
}

/// A JSON number (`null` for the non-finite values JSON cannot carry).
fn number(v: f64) -> String {
    if v.is_finite() {
        format!("{v}")
    } else {
        "null".to_owned()
    }
}

/// A JSON string literal.
fn string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::workloads::Workload;

    #[test]
    fn median_of_odd_and_even_counts() {
        assert_eq!(Stats::of(&[3.0, 1.0, 2.0]).unwrap().median, 2.0);
        assert_eq!(Stats::of(&[4.0, 1.0, 3.0, 2.0]).unwrap().median, 2.5);
        assert_eq!(Stats::of(&[]), None);
    }

    #[test]
    fn ratio_takes_the_best_of_each_side() {
        let result = WorkloadResult {
            workload: Workload::SpawnJoin,
            rows: vec![
                (Runtime::TrellisMt, Row::Samples(vec![30.0])),
                (Runtime::TrellisCt, Row::Samples(vec![20.0])),
                (Runtime::TokioMt, Row::Samples(vec![50.0])),
                (Runtime::TokioCt, Row::NotAvailable),
                (Runtime::Smol, Row::Samples(vec![40.0])),
            ],
        };
        let r = Ratio::of(&result).unwrap();
        assert_eq!(
            (r.trellis, r.other, r.value),
            (Runtime::TrellisCt, Runtime::Smol, 0.5)
        );
    }

    /// The floor is faster than every row here, yet the ratio is still against smol; the
    /// floor has its own figure.
    #[test]
    fn the_floor_is_not_in_the_ratio() {
        let result = WorkloadResult {
            workload: Workload::SpawnJoin,
            rows: vec![
                (Runtime::TrellisCt, Row::Samples(vec![30.0])),
                (Runtime::Smol, Row::Samples(vec![40.0])),
                (Runtime::Floor, Row::Samples(vec![10.0])),
            ],
        };
        let r = Ratio::of(&result).unwrap();
        assert_eq!((r.other, r.value), (Runtime::Smol, 0.75));
        assert_eq!(over_floor(&result), Some(3.0));
        assert!(ratio_line(&result).ends_with("; 3.00 x floor"));
        let no_floor = WorkloadResult {
            workload: Workload::Timers,
            rows: vec![
                (Runtime::TrellisCt, Row::Samples(vec![30.0])),
                (Runtime::Floor, Row::NotAvailable),
            ],
        };
        assert_eq!(over_floor(&no_floor), None);
    }

    #[test]
    fn no_ratio_without_a_trellis_row() {
        let result = WorkloadResult {
            workload: Workload::SpawnJoin,
            rows: vec![
                (Runtime::TrellisMt, Row::NotAvailable),
                (Runtime::TokioMt, Row::Samples(vec![50.0])),
            ],
        };
        assert_eq!(Ratio::of(&result), None);
    }

    #[test]
    fn json_strings_are_escaped() {
        assert_eq!(string("a\"b\\c\nd\u{1}"), "\"a\\\"b\\\\c\\nd\\u0001\"");
    }
}
