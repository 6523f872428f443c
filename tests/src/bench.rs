//! What the benchmarks share: the latency mode's delay and the floor it sets, the round
//! trips each router saw, and the process's memory.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::Semaphore;

use yardmaster::simulate::{Fault, FaultKind, Fleet};

/// The delay every simulated router adds to each reply, from `variable` (milliseconds);
/// unset or 0 leaves replies immediate.
pub fn reply_delay(variable: &str) -> Option<Duration> {
    let ms: u64 = std::env::var(variable).ok()?.parse().ok()?;
    (ms > 0).then_some(Duration::from_millis(ms))
}

/// The faults that make every router delay each reply by `delay`.
pub fn delay_faults(delay: Option<Duration>) -> Vec<Fault> {
    delay
        .map(|d| Fault::all(FaultKind::Delay(d)))
        .into_iter()
        .collect()
}

/// What the first routers of a fleet have served, summed over them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Seen {
    /// Every login and command but `/quit`.
    pub requests: u64,
    /// Requests that found no earlier answer of their connection held back: the waits
    /// a client sat through (requests sent together count once).
    pub round_trips: u64,
    pub connections: u64,
}

impl Seen {
    /// The counts of the first `routers` routers so far.
    pub fn of(fleet: &Fleet, routers: usize) -> Seen {
        fleet
            .routers()
            .take(routers)
            .fold(Seen::default(), |seen, r| {
                let stats = r.stats();
                Seen {
                    requests: seen.requests + stats.requests,
                    round_trips: seen.round_trips + stats.round_trips,
                    connections: seen.connections + stats.connections,
                }
            })
    }

    /// What was served since `before`, added to `self`.
    pub fn add_since(&mut self, now: Seen, before: Seen) {
        self.requests += now.requests - before.requests;
        self.round_trips += now.round_trips - before.round_trips;
        self.connections += now.connections - before.connections;
    }

    /// Each count per router, over `runs` runs on `routers` routers: (round trips,
    /// requests, connections).
    pub fn per_router(&self, routers: usize, runs: usize) -> (f64, f64, f64) {
        let n = (routers * runs.max(1)) as f64;
        (
            self.round_trips as f64 / n,
            self.requests as f64 / n,
            self.connections as f64 / n,
        )
    }
}

/// The least time `routers` routers can take when each needs `round_trips` replies, each
/// `delay` late, with `concurrency` of them at once: the waiting alone, with no work.
pub fn latency_floor(
    round_trips: f64,
    delay: Duration,
    routers: usize,
    concurrency: usize,
) -> Duration {
    let waves = routers as f64 / concurrency.max(1) as f64;
    Duration::from_secs_f64(round_trips * delay.as_secs_f64() * waves)
}

/// This process's resident memory now and at its peak (`VmRSS`, `VmHWM`), in bytes;
/// zero where /proc is not there.
pub fn memory() -> (u64, u64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
            .map_or(0, |kib| kib * 1024)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// Bytes as MiB, for printing.
pub fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

/// Runs `work` for each of `count` routers (by index) with at most `concurrency` at
/// once; returns the time taken and how many failed. Results are taken as tasks finish,
/// as a runner would, rather than all held to the end.
pub async fn fan_out<F, Fut>(count: usize, concurrency: usize, work: F) -> (Duration, usize)
where
    F: Fn(usize) -> Fut,
    Fut: Future<Output = Result<(), String>> + Send + 'static,
{
    let permits = Arc::new(Semaphore::new(concurrency));
    let start = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    let mut failed = 0;
    let mut tally = |result: Result<Result<(), String>, tokio::task::JoinError>| {
        if !matches!(result, Ok(Ok(()))) {
            failed += 1;
            if failed <= 3 {
                eprintln!("failure: {result:?}");
            }
        }
    };
    for i in 0..count {
        let permit = permits
            .clone()
            .acquire_owned()
            .await
            .expect("semaphore open");
        while let Some(result) = tasks.try_join_next() {
            tally(result);
        }
        let job = work(i);
        tasks.spawn(async move {
            let result = job.await;
            drop(permit);
            result
        });
    }
    while let Some(result) = tasks.join_next().await {
        tally(result);
    }
    (start.elapsed(), failed)
}
