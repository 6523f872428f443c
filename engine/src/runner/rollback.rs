//! The dead-man rollback of a job (`rollback_after`): the router restores the binary
//! backup taken before the script unless the engine reaches it again afterwards.
//!
//! Around the script: the guard is written on the job before it is armed (with the
//! `MarkSent` that precedes every write to the router), so an engine that stops
//! mid-guard fails the job as interrupted and names the pending restore rather than
//! taking it for a success. After the script the engine opens a new connection and
//! probes, until the router's deadline; only a router that answers is disarmed (its
//! scheduler entry removed, then its backup file). A router never reached again fails the
//! job `rolled_back`, and [`watch_return`] keeps probing for a while after the deadline
//! to record on the job that it came back.

use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::time::Instant;

use super::execute::ExecError;
use crate::plugins::{Armed, Transport, transport};
use crate::store::{ROLLED_BACK, RollbackGuard};

/// The shortest rollback window: the router must have time to restart its services.
pub const MIN_ROLLBACK_SECS: u32 = 1;
/// The longest rollback window.
pub const MAX_ROLLBACK_SECS: u32 = 24 * 3600;
/// How often the engine tries the router again after the script.
const PROBE_EVERY: Duration = Duration::from_millis(500);
/// How long after the deadline the engine keeps looking for the router's return; at
/// least this, or the window itself when it is longer.
const RETURN_GRACE: Duration = Duration::from_secs(120);

/// Reads a window such as `5m`, `90s`, `1h30m` or `2h`, in seconds.
pub fn parse_window(text: &str) -> Result<u32, String> {
    let text = text.trim();
    let bad = || {
        format!(
            "`{text}` is not a duration such as `30s`, `5m` or `1h30m` between {MIN_ROLLBACK_SECS}s and 24h"
        )
    };
    if text.is_empty() {
        return Err(bad());
    }
    let mut total: u64 = 0;
    let mut digits = String::new();
    for c in text.chars() {
        if c.is_ascii_digit() {
            digits.push(c);
            continue;
        }
        let unit: u64 = match c {
            'h' => 3600,
            'm' => 60,
            's' => 1,
            _ => return Err(bad()),
        };
        let n: u64 = digits.parse().map_err(|_| bad())?;
        digits.clear();
        total = total.saturating_add(n.saturating_mul(unit));
    }
    if !digits.is_empty() {
        return Err(bad());
    }
    u32::try_from(total)
        .ok()
        .filter(|s| (MIN_ROLLBACK_SECS..=MAX_ROLLBACK_SECS).contains(s))
        .ok_or_else(bad)
}

/// A window in seconds as the API writes it: `5m`, `1h30m`, `45s`.
pub fn format_window(secs: u32) -> String {
    let (h, m, s) = (secs / 3600, (secs / 60) % 60, secs % 60);
    let mut out = String::new();
    if h > 0 {
        out.push_str(&format!("{h}h"));
    }
    if m > 0 {
        out.push_str(&format!("{m}m"));
    }
    if s > 0 || out.is_empty() {
        out.push_str(&format!("{s}s"));
    }
    out
}

/// The name of a job's backup and scheduler entry on its router.
pub fn guard_name(job_id: &str) -> String {
    let plain: String = job_id.chars().filter(char::is_ascii_alphanumeric).collect();
    format!("yardmaster-rollback-{plain}")
}

/// The guard of a job about to be armed, written before anything reaches the router.
pub fn plan(job_id: &str, secs: u32, now: DateTime<Utc>) -> RollbackGuard {
    RollbackGuard {
        name: guard_name(job_id),
        fires_at: now + chrono::TimeDelta::seconds(i64::from(secs)),
        backup_file: None,
        scheduler_entry: None,
        router_fires_at: None,
        disarmed_at: None,
        returned_at: None,
    }
}

/// `guard` once the router confirmed what it armed.
pub fn armed(mut guard: RollbackGuard, armed: &Armed) -> RollbackGuard {
    guard.backup_file = Some(armed.backup_file.clone());
    guard.scheduler_entry = Some(armed.scheduler_entry.clone());
    guard.router_fires_at = Some(armed.fires_at.clone());
    guard
}

/// What the router armed, from the guard written on the job.
pub fn armed_of(guard: &RollbackGuard) -> Armed {
    Armed {
        backup_file: guard
            .backup_file
            .clone()
            .unwrap_or_else(|| format!("{}.backup", guard.name)),
        scheduler_entry: guard
            .scheduler_entry
            .clone()
            .unwrap_or_else(|| guard.name.clone()),
        fires_at: guard.router_fires_at.clone().unwrap_or_default(),
    }
}

/// The engine's deadline for a guard, on the monotonic clock.
fn deadline_of(guard: &RollbackGuard) -> Instant {
    let left = (guard.fires_at - Utc::now())
        .to_std()
        .unwrap_or(Duration::ZERO);
    Instant::now() + left
}

/// How a guarded script's aftermath ended.
#[derive(Debug)]
pub enum Settled {
    /// The router answered on a new connection and was disarmed.
    Disarmed,
    /// The router was not reached again before its deadline: it restores itself.
    RolledBack(ExecError),
    /// The engine is stopping and the router did not answer the last try: the guard is
    /// left armed, and the job to recovery, which names the pending restore.
    Stopped,
}

/// After the script: reaches the router again over a new connection and probes it, then
/// disarms it; tries again until the deadline. Each disarm opens its own connection, so
/// a success proves the router takes new connections. Shutdown does not cut a try
/// short, but no new try starts after it.
pub async fn settle(
    transport: &Transport,
    target: &transport::Target,
    guard: &RollbackGuard,
    stopping: impl Fn() -> bool,
) -> Settled {
    let deadline = deadline_of(guard);
    let armed = armed_of(guard);
    let mut last = String::from("no attempt was made before the deadline");
    loop {
        let probed = tokio::time::timeout_at(deadline, transport.probe(target)).await;
        match probed {
            Ok(Ok(probe)) if probe.online => {
                match tokio::time::timeout_at(deadline, transport.disarm_rollback(target, &armed))
                    .await
                {
                    Ok(Ok(())) => return Settled::Disarmed,
                    Ok(Err(e)) => {
                        last = format!("the router answered but could not be disarmed: {e}")
                    }
                    Err(_) => break,
                }
            }
            Ok(Ok(probe)) => {
                last = probe.detail.unwrap_or_else(|| "offline".to_owned());
            }
            Ok(Err(e)) => last = e.to_string(),
            Err(_) => break,
        }
        if Instant::now() + PROBE_EVERY >= deadline {
            break;
        }
        if stopping() {
            return Settled::Stopped;
        }
        tokio::time::sleep(PROBE_EVERY).await;
    }
    Settled::RolledBack(ExecError {
        code: ROLLED_BACK.into(),
        message: format!(
            "the router could not be reached again over a new connection after the script \
             ({last}); it restores the backup taken before the script at {} (router clock {}), \
             undoing the script",
            guard.fires_at.to_rfc3339(),
            guard.router_fires_at.as_deref().unwrap_or("unknown"),
        ),
        category: None,
        maybe_sent: true,
    })
}

/// After a job failed `rolled_back`: probes the router from its deadline on, for a while,
/// and answers true once it answers again (it restored itself). Stops early on shutdown.
pub async fn watch_return(
    transport: &Transport,
    target: &transport::Target,
    guard: &RollbackGuard,
    window: u32,
    shutdown: crate::server::Shutdown,
) -> bool {
    let give_up = deadline_of(guard) + RETURN_GRACE.max(Duration::from_secs(u64::from(window)));
    loop {
        let answered = tokio::select! {
            biased;
            () = shutdown.clone().wait() => return false,
            r = tokio::time::timeout_at(give_up, transport.probe(target)) => match r {
                Ok(Ok(probe)) => probe.online,
                Ok(Err(_)) => false,
                Err(_) => return false,
            },
        };
        // Answering before the deadline would be the router before its restore; only
        // an answer after it says the router came back.
        if answered && Utc::now() >= guard.fires_at {
            return true;
        }
        if Instant::now() + PROBE_EVERY >= give_up {
            return false;
        }
        tokio::select! {
            biased;
            () = shutdown.clone().wait() => return false,
            () = tokio::time::sleep(PROBE_EVERY) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_read_and_write_alike() {
        assert_eq!(parse_window("5m"), Ok(300));
        assert_eq!(parse_window("1h30m"), Ok(5400));
        assert_eq!(parse_window(" 3s "), Ok(3));
        assert_eq!(format_window(5400), "1h30m");
        assert_eq!(format_window(3), "3s");
        for bad in ["", "0s", "5", "5x", "25h", "m"] {
            assert!(parse_window(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn guard_names_are_plain() {
        assert_eq!(
            guard_name("01a2-b3"),
            "yardmaster-rollback-01a2b3",
            "only letters and digits of the id"
        );
    }
}
