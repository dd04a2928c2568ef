//! The catalogue of workloads: what each one measures, how big it is, and how its result is
//! read.
//!
//! Every runtime arm (`runtimes/*.rs`) implements the same work in that runtime's idiomatic
//! structured form: a trellis nursery, a tokio `JoinSet`, smol tasks collected and awaited. The
//! body always runs as a spawned task, never directly under `block_on` (driving work from
//! `block_on` measures the reactor's parking path instead of the scheduler).
//!
//! All results are "lower is better": a time (reported per run and per operation) or a number
//! of bytes per task.

use std::time::Duration;

/// One benchmark workload. The doc comment of each variant is what the row measures.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Workload {
    /// Spawn `tasks` trivial tasks from one task and wait for all of them: the cost of a
    /// spawn, a schedule, a poll and a join (per task).
    SpawnJoin,
    /// `tasks` tasks each yield `yields` times (trellis `checkpoint()`, tokio `yield_now`, smol
    /// `yield_now`): the cost of one reschedule through the run queue (per yield).
    Yield,
    /// Each task spawns the next, `depth` deep; the last one signals completion. The cost of a
    /// spawn from inside a running task, where the new task is the only runnable one (per
    /// link).
    ChainedSpawn,
    /// `pairs` pairs of tasks bounce a message back and forth `round_trips` times over two
    /// bounded(1) channels: the wake-up path between two tasks (per round trip).
    PingPong,
    /// `producers` tasks each send `messages` values into one consumer over a bounded channel
    /// of `capacity`: channel throughput under contention and back-pressure (per message).
    Mpsc,
    /// `tasks` tasks each take and release one shared async mutex `iterations` times, adding
    /// one to the value it guards: lock hand-off under contention (per lock and unlock).
    LockContention,
    /// `tasks` tasks each run `timeouts` sequential operations under a 60 s timeout that never
    /// fires (the guarded operation yields once, so the timer is really registered): the cost
    /// of setting and cancelling a timer (per timeout).
    Timers,
    /// One task sleeps [`SLEEP`] (1 ms) `sleeps` times in a row: the time from the call to
    /// the wake-up (per sleep). The request is the floor; what is over it is the timer's
    /// precision and the wake-up path (a runtime that rounds deadlines to a coarser tick, or
    /// wakes late, shows here).
    Sleep,
    /// Spawn `tasks` tasks that block forever, wait until every one of them has parked, then
    /// cancel them all and wait until all are gone. Only the cancellation is timed: the cost
    /// of cancelling and reaping one parked task (per task).
    CancelBlocked,
    /// As [`CancelBlocked`](Workload::CancelBlocked), but every runtime delivers the
    /// cancellation to the parked code, which returns on its own: trellis cancels the nursery
    /// (each task's wait fails with `Cancelled`, as trellis always does: C1, B2), tokio cancels
    /// a `tokio_util` `CancellationToken` whose `cancelled()` every task awaits, smol closes an
    /// `async_channel` on whose `recv` every task waits. The cost of a cancellation that the
    /// cancelled code sees and could clean up after (per task).
    CancelCooperative,
    /// `connections` TCP connections over loopback, each doing `round_trips` sequential 64-byte
    /// echo round trips against an echo server running in the same runtime. Reported as
    /// requests per second; the ratio uses the time per round trip (lower is better).
    TcpEcho,
    /// Resident-memory growth (`/proc/self/statm`) while `tasks` tasks are parked, divided by
    /// the number of tasks: bytes per idle task. Measured in a fresh child process per sample
    /// so that memory freed by earlier workloads does not hide the growth.
    IdleMemory,
}

/// How a workload's samples are read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Metric {
    /// Wall-clock time of the timed section; `ops` operations per run.
    Time { ops: u64, op: &'static str },
    /// Bytes of resident memory per task.
    BytesPerTask,
}

/// Problem sizes for one run of the whole suite.
#[derive(Clone, Copy, Debug)]
pub struct Sizes {
    pub spawn_tasks: usize,
    pub yield_tasks: usize,
    pub yields: usize,
    pub chain_depth: usize,
    pub ping_pairs: usize,
    pub ping_round_trips: usize,
    pub mpsc_producers: usize,
    pub mpsc_messages: usize,
    pub mpsc_capacity: usize,
    pub lock_tasks: usize,
    pub lock_iterations: usize,
    pub timer_tasks: usize,
    pub timeouts: usize,
    pub sleeps: usize,
    pub cancel_tasks: usize,
    pub tcp_connections: usize,
    pub tcp_round_trips: usize,
    pub idle_tasks: usize,
}

/// The size of one TCP echo message.
pub const ECHO_MESSAGE: usize = 64;

/// The timeout used by the timers workload; it never fires.
pub const TIMER_TIMEOUT: Duration = Duration::from_secs(60);

/// What each sleep of the sleep workload asks for.
pub const SLEEP: Duration = Duration::from_millis(1);

impl Sizes {
    /// The sizes of a real run.
    pub const FULL: Sizes = Sizes {
        spawn_tasks: 100_000,
        yield_tasks: 1_000,
        yields: 1_000,
        chain_depth: 100_000,
        ping_pairs: 100,
        ping_round_trips: 1_000,
        mpsc_producers: 4,
        mpsc_messages: 250_000,
        mpsc_capacity: 1_024,
        lock_tasks: 8,
        lock_iterations: 50_000,
        timer_tasks: 100,
        timeouts: 1_000,
        sleeps: 100,
        cancel_tasks: 100_000,
        tcp_connections: 64,
        tcp_round_trips: 1_000,
        idle_tasks: 100_000,
    };

    /// Tiny sizes for CI (`--smoke`): every arm runs, the whole suite takes a few seconds.
    pub const SMOKE: Sizes = Sizes {
        spawn_tasks: 1_000,
        yield_tasks: 10,
        yields: 10,
        chain_depth: 1_000,
        ping_pairs: 4,
        ping_round_trips: 10,
        mpsc_producers: 4,
        mpsc_messages: 1_000,
        mpsc_capacity: 16,
        lock_tasks: 4,
        lock_iterations: 100,
        timer_tasks: 4,
        timeouts: 100,
        sleeps: 3,
        cancel_tasks: 1_000,
        tcp_connections: 4,
        tcp_round_trips: 10,
        idle_tasks: 1_000,
    };
}

impl Workload {
    /// Every workload, in the order they run.
    pub const ALL: [Workload; 12] = [
        Workload::SpawnJoin,
        Workload::Yield,
        Workload::ChainedSpawn,
        Workload::PingPong,
        Workload::Mpsc,
        Workload::LockContention,
        Workload::Timers,
        Workload::CancelBlocked,
        Workload::CancelCooperative,
        Workload::TcpEcho,
        Workload::IdleMemory,
        // Last: it leaves the machine idle for seconds, after which the next row's
        // multi-thread samples can read up to twice as slow (seen on `cancel_blocked`, for
        // trellis-mt and smol alike).
        Workload::Sleep,
    ];

    /// The name used on the command line, in the table and in the JSON output.
    pub fn name(self) -> &'static str {
        match self {
            Workload::SpawnJoin => "spawn_join",
            Workload::Yield => "yield",
            Workload::ChainedSpawn => "chained_spawn",
            Workload::PingPong => "ping_pong",
            Workload::Mpsc => "mpsc",
            Workload::LockContention => "lock_contention",
            Workload::Timers => "timers",
            Workload::Sleep => "sleep",
            Workload::CancelBlocked => "cancel_blocked",
            Workload::CancelCooperative => "cancel_cooperative",
            Workload::TcpEcho => "tcp_echo",
            Workload::IdleMemory => "idle_memory",
        }
    }

    /// Looks a workload up by its name.
    pub fn from_name(name: &str) -> Option<Workload> {
        Workload::ALL.into_iter().find(|w| w.name() == name)
    }

    /// How the samples are read, at the given sizes.
    pub fn metric(self, s: &Sizes) -> Metric {
        let time = |ops: usize, op| Metric::Time {
            ops: ops as u64,
            op,
        };
        match self {
            Workload::SpawnJoin => time(s.spawn_tasks, "task"),
            Workload::Yield => time(s.yield_tasks * s.yields, "yield"),
            Workload::ChainedSpawn => time(s.chain_depth, "spawn"),
            Workload::PingPong => time(s.ping_pairs * s.ping_round_trips, "round trip"),
            Workload::Mpsc => time(s.mpsc_producers * s.mpsc_messages, "message"),
            Workload::LockContention => time(s.lock_tasks * s.lock_iterations, "lock"),
            Workload::Timers => time(s.timer_tasks * s.timeouts, "timeout"),
            Workload::Sleep => time(s.sleeps, "sleep"),
            Workload::CancelBlocked | Workload::CancelCooperative => time(s.cancel_tasks, "task"),
            Workload::TcpEcho => time(s.tcp_connections * s.tcp_round_trips, "request"),
            Workload::IdleMemory => Metric::BytesPerTask,
        }
    }

    /// A one-line description of the size of the workload, for the table heading.
    pub fn describe(self, s: &Sizes) -> String {
        match self {
            Workload::SpawnJoin => format!("spawn and join {} trivial tasks", s.spawn_tasks),
            Workload::Yield => format!("{} tasks x {} yields", s.yield_tasks, s.yields),
            Workload::ChainedSpawn => format!("chain of {} spawns", s.chain_depth),
            Workload::PingPong => format!(
                "{} pairs x {} round trips over bounded(1) channels",
                s.ping_pairs, s.ping_round_trips
            ),
            Workload::Mpsc => format!(
                "{} producers x {} messages, bounded({})",
                s.mpsc_producers, s.mpsc_messages, s.mpsc_capacity
            ),
            Workload::LockContention => format!(
                "{} tasks x {} lock/unlock of one mutex",
                s.lock_tasks, s.lock_iterations
            ),
            Workload::Timers => format!(
                "{} tasks x {} timeouts set and cancelled",
                s.timer_tasks, s.timeouts
            ),
            Workload::Sleep => format!("{} sleeps of {:?} in a row", s.sleeps, SLEEP),
            Workload::CancelBlocked => format!("cancel {} parked tasks", s.cancel_tasks),
            Workload::CancelCooperative => format!(
                "cancel {} parked tasks, delivered to their code",
                s.cancel_tasks
            ),
            Workload::TcpEcho => format!(
                "{} connections x {} round trips of {} bytes",
                s.tcp_connections, s.tcp_round_trips, ECHO_MESSAGE
            ),
            Workload::IdleMemory => format!("RSS growth for {} parked tasks", s.idle_tasks),
        }
    }
}
