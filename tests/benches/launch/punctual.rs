//! Punctual launches: schedules approved ahead of their `launch_at`, each on one simulated
//! router, launched by the engine's own launcher (the production tick, so only its
//! wake-ups make it punctual). For each occurrence it measures, from `launch_at`, when
//! the launch was committed (the run's start) and when the first job started, and prints
//! the distribution of both. A launch is never early; a negative figure would be a bug,
//! and is reported as such.

use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use yardmaster::approval::{self, OrgPolicy, Principal};
use yardmaster::runner::fanout::{Runner, RunnerSettings};
use yardmaster::scheduler::launcher::Launcher;
use yardmaster::server::Shutdown;
use yardmaster::simulate::Profile;
use yardmaster::store::{ScheduleInput, Store, User};

const PASSWORD: &str = "bench";
/// The engine's own: the launcher looks at least this often, and otherwise only when it
/// is due to or a schedule changed.
const TICK: Duration = Duration::from_secs(10);

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}

fn describe(name: &str, mut ms: Vec<f64>) {
    ms.sort_by(f64::total_cmp);
    let early = ms.iter().filter(|m| **m < 0.0).count();
    println!(
        "  {name:<38} p50 {:>6.1} ms   p90 {:>6.1} ms   p99 {:>6.1} ms   max {:>6.1} ms{}",
        percentile(&ms, 50.0),
        percentile(&ms, 90.0),
        percentile(&ms, 99.0),
        ms.last().copied().unwrap_or(f64::NAN),
        if early > 0 {
            format!("   ({early} EARLY: a bug)")
        } else {
            String::new()
        }
    );
}

fn millis(from: DateTime<Utc>, to: DateTime<Utc>) -> f64 {
    (to - from).num_microseconds().unwrap_or(i64::MAX) as f64 / 1000.0
}

/// `schedules` schedules, `spacing` apart, each on a router of its own.
pub async fn run(schedules: usize, spacing: Duration) -> Result<(), String> {
    let fleet = yardmaster_tests::fleet(
        Ipv4Addr::new(127, 7, 0, 1),
        schedules,
        Profile::V7_18,
        PASSWORD,
    )
    .await;
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let host = yardmaster_tests::bundled_host(dir.path(), 256).await;
    let store = Arc::new(Store::open(dir.path().join("data")).map_err(|e| e.to_string())?);
    let now = Utc::now();
    for id in ["alice", "bob"] {
        store
            .put_user(&User {
                id: id.into(),
                name: id.into(),
                email: format!("{id}@example.com"),
                organization: "bench".into(),
                created_at: now,
            })
            .map_err(|e| e.to_string())?;
    }
    let sites = yardmaster_tests::router_sites(&fleet, "bench", PASSWORD);
    let sites = store
        .import_sites("bench", sites, "bench", now)
        .map_err(|e| e.to_string())?
        .map_err(|refused| format!("sites refused: {refused:?}"))?;

    let runner = Runner::new(
        std::sync::Arc::new(yardmaster::store::Backend::Redb(store.clone())),
        host,
        RunnerSettings::default(),
    );
    let launcher = Launcher::new(runner.store().clone(), runner, TICK);
    let (_signal, shutdown) = Shutdown::new();
    // The launcher is asleep before the first schedule exists, as in a running engine.
    let serving = tokio::spawn({
        let launcher = launcher.clone();
        async move { launcher.serve(shutdown).await }
    });
    tokio::time::sleep(Duration::from_millis(200)).await;

    let bob = Principal {
        user_id: "bob".into(),
        organization: "bench".into(),
        scopes: vec!["script:authorize".into()],
    };
    // Room for the setup: each schedule is created and approved in commits of its own.
    let first = Utc::now() + TimeDelta::seconds(2) + TimeDelta::milliseconds(20 * schedules as i64);
    let mut made = Vec::new();
    for (i, site) in sites.iter().enumerate() {
        let launch_at =
            first + TimeDelta::from_std(spacing * i as u32).map_err(|e| e.to_string())?;
        let now = Utc::now();
        let schedule = store
            .create_schedule(
                ScheduleInput {
                    organization: "bench".into(),
                    description: format!("punctual {i}"),
                    script: format!(":log info \"punctual {i}\""),
                    sites: vec![site.id.clone()],
                    launch_at: Some(launch_at),
                    created_by: "alice".into(),
                    ..ScheduleInput::default()
                },
                now,
            )
            .map_err(|e| e.to_string())?;
        approval::approve(&store, &schedule.id, &bob, None, OrgPolicy::default(), now)
            .map_err(|e| e.to_string())?;
        made.push((schedule.id, launch_at));
    }
    let setup_done = Utc::now();
    if setup_done > first {
        return Err(format!(
            "setting up took past the first launch_at by {:.0} ms; use fewer schedules",
            millis(first, setup_done)
        ));
    }

    let mut committed = Vec::new();
    let mut started = Vec::new();
    let deadline =
        tokio::time::Instant::now() + Duration::from_secs(30) + spacing * schedules as u32;
    for (id, launch_at) in &made {
        let run = loop {
            match store.last_run(id).map_err(|e| e.to_string())? {
                Some(run) if run.finished_at.is_some() => break run,
                _ if tokio::time::Instant::now() > deadline => {
                    return Err(format!("schedule {id} did not finish its run"));
                }
                _ => tokio::time::sleep(Duration::from_millis(20)).await,
            }
        };
        committed.push(millis(*launch_at, run.started_at));
        let jobs = store
            .run_jobs(id, run.occurrence)
            .map_err(|e| e.to_string())?;
        let first_start = jobs
            .iter()
            .filter_map(|j| j.started_at)
            .min()
            .ok_or_else(|| format!("schedule {id}: no job started"))?;
        started.push(millis(*launch_at, first_start));
    }
    println!(
        "punctuality: {schedules} schedules {} ms apart, the launcher's tick {} s; from launch_at:",
        spacing.as_millis(),
        TICK.as_secs()
    );
    describe("launch committed (jobs and ledger)", committed);
    describe("first job started", started);
    serving.abort();
    fleet.fleet.shutdown().await;
    Ok(())
}
