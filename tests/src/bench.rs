//! What the benchmarks share: the latency mode's delay and the floor it sets, the round
//! trips each router saw, and the process's memory.

use std::time::Duration;

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

/// Requests answered by the first `routers` routers so far (every login and command but
/// `/quit`): each is a round trip for a client that sends one at a time.
pub fn requests(fleet: &Fleet, routers: usize) -> u64 {
    fleet
        .routers()
        .take(routers)
        .map(|r| r.stats().requests)
        .sum()
}

/// Connections the first `routers` routers accepted so far.
pub fn connections(fleet: &Fleet, routers: usize) -> u64 {
    fleet
        .routers()
        .take(routers)
        .map(|r| r.stats().connections)
        .sum()
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
