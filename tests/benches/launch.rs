//! Launch benchmark with durable state: jobs for N simulated routers (default 10,000) in
//! a store on disk, run by the engine's runner through the RouterOS plugin with the
//! default limits; prints launch-to-done and jobs per second. Then restart time:
//! `Store::open` plus `recover` over M stored jobs (default 1,000,000; all pending, the
//! worst case for recovery's count, with 1,000 left running and sent to be interrupted).
//!
//! The runner gets the limits the engine's start-up budget gives it on this machine
//! (counting two sockets per router in flight, since the routers live in this process).
//! Latency mode: `LAUNCH_DELAY_MS=100` makes every simulated router send each reply that
//! late; beside launch-to-done it then prints the floor the waiting sets (round trips per
//! router x delay x routers / concurrency), with the round trips counted by the routers.
//! After the launch it prints the process's peak resident memory (fleet included).
//! `LAUNCH_CONCURRENCY` sets the per-launch limit instead (e.g. 64, the old default, to
//! compare with a script of 64 threads), and `LAUNCH_ABORT_IF_OFFLINE=1` runs the jobs as
//! a schedule with `abort_if_offline` does (a probe of each router first).
//!
//! Last, punctuality: S schedules (default 100), 50 ms apart, each launched by the
//! engine's launcher on a router of its own; prints how long after `launch_at` each
//! launch committed and its first job started (p50, p90, p99, max).
//!
//! `cargo bench -p yardmaster-tests --bench launch [-- ROUTERS [STORED_JOBS [SCHEDULES]]]`;
//! a STORED_JOBS of 0 makes the restart part quick.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::Instant;

use yardmaster::budget::{Budget, Requested, Resources};
use yardmaster::config::Limits;
use yardmaster::plugins::{HostOptions, PluginHost};
use yardmaster::runner::fanout::{RunOptions, Runner, RunnerSettings, Selection};
use yardmaster::server::Shutdown;
use yardmaster::simulate::{Fleet, FleetConfig, Profile};
use yardmaster::store::{JobInput, JobTransition, Store};
use yardmaster_tests::bench;

#[path = "launch/punctual.rs"]
mod punctual;

const PASSWORD: &str = "bench";
const MARKER: &str = "launch-bench";

/// A fixed instant for the store's timestamps; this crate does not depend on chrono, and
/// the store takes any `DateTime<Utc>` through its serde form.
macro_rules! instant {
    () => {
        serde_json::from_str("\"2030-01-01T00:00:00Z\"").map_err(|e| e.to_string())?
    };
}

fn job(site: &str) -> JobInput {
    JobInput {
        organization: "bench".into(),
        site_id: site.into(),
        request_id: None,
        idempotency_key: None,
        description: "launch benchmark".into(),
        script: format!(":log info \"{MARKER}\""),
        make_backup: false,
        express_execute: false,
        needs_acknowledgement: false,
        notify_url: None,
        rollback_after_secs: None,
        script_origin: None,
    }
}

async fn launch(routers: usize) -> Result<(), String> {
    let delay = bench::reply_delay("LAUNCH_DELAY_MS");
    // Raised to the hard limit before the fleet takes its listeners, as the engine does.
    Resources::detect();
    let (fleet_stop, stopped) = tokio::sync::watch::channel(false);
    let fleet = Fleet::start(
        FleetConfig {
            routers,
            bind: Ipv4Addr::new(127, 6, 0, 1),
            port: 8728,
            tls_port: None,
            profile: Profile::V7_18,
            user: "admin".into(),
            password: PASSWORD.into(),
            faults: bench::delay_faults(delay),
            ssh_port: None,
            ssh_authorized_keys: Vec::new(),
        },
        async move {
            let mut stopped = stopped;
            let _ = stopped.wait_for(|s| *s).await;
        },
    )
    .await
    .map_err(|e| e.to_string())?;
    let mut cost = yardmaster::plugins::call_cost(Limits::default().memory_bytes);
    cost.files = 2;
    let budget = Budget::plan(Requested::default(), &Resources::detect(), cost);
    println!(
        "engine budget with the fleet in this process: {}",
        budget.summary()
    );
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let plugins = dir.path().join("plugins");
    yardmaster::plugins::install_bundled(&plugins, &dir.path().join("data"))
        .map_err(|e| e.to_string())?;
    let host = PluginHost::new(HostOptions {
        plugins_dir: plugins,
        cache_dir: Some(dir.path().join("cache")),
        defaults: Limits::default(),
        plugins: BTreeMap::new(),
        max_concurrent_calls: budget.plugin_calls,
        organization_share: 1.0,
        max_memory_bytes: Limits::default().memory_bytes,
        trusted_certificates: Vec::new(),
        sites_allow: yardmaster::plugins::SiteAllow::with_loopback(),
        ssh_algorithms: Default::default(),
    })
    .map_err(|e| e.to_string())?;
    host.reconcile().await;
    let store = Arc::new(Store::open(dir.path().join("data")).map_err(|e| e.to_string())?);

    let setup = Instant::now();
    let sites = yardmaster_tests::router_sites(&fleet, "bench", PASSWORD);
    let inputs: Vec<JobInput> = store
        .import_sites("bench", sites, "bench", instant!())
        .map_err(|e| e.to_string())?
        .map_err(|refused| format!("sites refused: {refused:?}"))?
        .iter()
        .map(|site| job(&site.id))
        .collect();
    let ids: Vec<String> = store
        .create_jobs(inputs, instant!())
        .map_err(|e| e.to_string())?
        .into_iter()
        .map(|(j, _)| j.id)
        .collect();
    println!(
        "setup: {routers} sites and jobs stored in {:.1} s",
        setup.elapsed().as_secs_f64()
    );

    let settings = RunnerSettings {
        global_concurrency: budget.jobs,
        run_concurrency: std::env::var("LAUNCH_CONCURRENCY")
            .ok()
            .and_then(|c| c.parse().ok())
            .unwrap_or(budget.jobs_per_launch)
            .max(1),
        ..RunnerSettings::default()
    };
    // One organization's jobs hold at most its share of the global slots.
    let concurrency = settings
        .run_concurrency
        .min(((settings.global_concurrency as f64 * settings.organization_share) as usize).max(1));
    println!(
        "limits: global {}, per run {}, so {concurrency} of this organization's jobs at once; {}",
        settings.global_concurrency,
        settings.run_concurrency,
        match delay {
            Some(d) => format!("every reply {} ms late (LAUNCH_DELAY_MS)", d.as_millis()),
            None => "replies immediate (LAUNCH_DELAY_MS=100 for latency mode)".to_owned(),
        }
    );
    let runner = Runner::new(
        std::sync::Arc::new(yardmaster::store::Backend::Redb(store.clone())),
        host,
        settings,
    );
    let (_signal, shutdown) = Shutdown::new();
    let (rss_before, _) = bench::memory();
    let before = bench::Seen::of(&fleet, routers);
    let started = Instant::now();
    let report = runner
        .run_jobs(
            Selection::Jobs(ids),
            RunOptions {
                abort_if_offline: std::env::var("LAUNCH_ABORT_IF_OFFLINE").is_ok_and(|v| v == "1"),
                ..RunOptions::default()
            },
            shutdown,
        )
        .await
        .map_err(|e| e.to_string())?;
    let elapsed = started.elapsed().as_secs_f64();
    println!(
        "launch-to-done: {routers} jobs in {elapsed:.2} s, {:.0} jobs/s ({report:?})",
        routers as f64 / elapsed
    );
    let mut seen = bench::Seen::default();
    seen.add_since(bench::Seen::of(&fleet, routers), before);
    let (round_trips, requests, opened) = seen.per_router(routers, 1);
    let floor = match delay {
        Some(d) => format!(
            "; latency floor {:.2?} ({round_trips:.2} x {} ms x {routers} / {concurrency})",
            bench::latency_floor(round_trips, d, routers, concurrency),
            d.as_millis()
        ),
        None => String::new(),
    };
    println!(
        "per router: {round_trips:.2} round trips ({requests:.2} requests), {opened:.2} \
         connections{floor}"
    );
    let (rss, peak) = bench::memory();
    println!(
        "memory: peak RSS {:.0} MiB (VmHWM, fleet included), {:.0} MiB after, {:.0} MiB before \
         the launch",
        bench::mib(peak),
        bench::mib(rss),
        bench::mib(rss_before)
    );
    let once = fleet.routers().all(|r| {
        r.log_messages()
            .iter()
            .filter(|m| m.as_str() == MARKER)
            .count()
            == 1
    });
    if report.completed != routers as u64 || !once {
        return Err(format!(
            "not every router ran the script exactly once: {report:?}"
        ));
    }
    let _ = fleet_stop.send(true);
    fleet.wait().await;
    Ok(())
}

fn restart(stored: usize) -> Result<(), String> {
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let fill = Instant::now();
    {
        let store = Store::open(dir.path()).map_err(|e| e.to_string())?;
        let mut first = Vec::new();
        let chunk = 100_000;
        let mut done = 0;
        while done < stored {
            let n = chunk.min(stored - done);
            let created = store
                .create_jobs(
                    (0..n)
                        .map(|i| job(&format!("site-{}", (done + i) % 10_000)))
                        .collect(),
                    instant!(),
                )
                .map_err(|e| e.to_string())?;
            if first.is_empty() {
                first = created.into_iter().take(1000).map(|(j, _)| j.id).collect();
            }
            done += n;
        }
        let crash_state = first
            .into_iter()
            .map(|id| {
                let steps = vec![
                    JobTransition::Load,
                    JobTransition::Start,
                    JobTransition::MarkSent,
                ];
                (id, steps)
            })
            .collect();
        store
            .transition_each(crash_state, instant!())
            .map_err(|e| e.to_string())?;
    }
    println!(
        "restart setup: {stored} jobs stored in {:.1} s",
        fill.elapsed().as_secs_f64()
    );
    let started = Instant::now();
    let store = Store::open(dir.path()).map_err(|e| e.to_string())?;
    let opened = started.elapsed().as_secs_f64();
    let recovery = store.recover(instant!()).map_err(|e| e.to_string())?;
    let elapsed = started.elapsed().as_secs_f64();
    println!(
        "restart: Store::open {opened:.3} s, open + recover {elapsed:.3} s with {stored} jobs \
         ({} interrupted, {} pending)",
        recovery.interrupted.len(),
        recovery.pending
    );
    Ok(())
}

fn main() {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let routers = args.first().copied().unwrap_or(10_000);
    let stored = args.get(1).copied().unwrap_or(1_000_000);
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("cannot start a runtime: {e}");
            std::process::exit(1);
        }
    };
    if let Err(e) = runtime.block_on(launch(routers)) {
        eprintln!("launch: {e}");
        std::process::exit(1);
    }
    if let Err(e) = restart(stored) {
        eprintln!("restart: {e}");
        std::process::exit(1);
    }
    let schedules = args.get(2).copied().unwrap_or(100);
    if let Err(e) = runtime.block_on(punctual::run(
        schedules,
        std::time::Duration::from_millis(50),
    )) {
        eprintln!("punctuality: {e}");
        std::process::exit(1);
    }
}
