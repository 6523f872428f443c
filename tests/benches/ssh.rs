//! SSH benchmark: one script over SSH to 1,000 simulated routers (`yardmaster simulate
//! --ssh-port`, RouterOS 7.18 profile) through the plugin path, the bundled `ssh` plugin
//! in the engine's plugin host with the host's russh session, against a native russh
//! client loop doing the same exchange (connect, check the pinned host key, password
//! login as `admin+cet1024w`, one exec of the script, read its output and exit status,
//! close) at the same concurrency in the same run. The two paths run in alternating
//! rounds; it prints each round, then routers per second and CPU per router of each
//! path's best round (a shared machine's noise only ever adds time), and the ratio of
//! the two: of the best rounds, and the median of each round's ratio. CPU is the whole
//! process's, so it includes the simulated routers' side of every session. Asserts
//! nothing about time, only that every router ran the script.
//!
//! `cargo bench -p yardmaster-tests --bench ssh [-- ROUTERS]`; `SSH_BENCH_ROUNDS` sets
//! the rounds per path (default 5), `SSH_BENCH_CONCURRENCY` the routers at once
//! (default: the runner's `run_concurrency`), `SSH_BENCH_ONLY=plugin` (or `native`)
//! runs one path alone, e.g. under a profiler, and `SSH_BENCH_DETECT=1` leaves the
//! sites' platform unset, so the plugin first reads each server's version line on a
//! connection of its own, as it does for a site that does not name its platform.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use russh::client;
use russh::keys::{HashAlg, PublicKeyOrCertificate};
use russh::{ChannelMsg, Disconnect};
use yardmaster::config::Limits;
use yardmaster::plugins::{HostOptions, PluginHost, Transport, transport};
use yardmaster::runner::fanout::RunnerSettings;
use yardmaster::simulate::{Fleet, FleetConfig, Profile};

const PASSWORD: &str = "bench";
const SSH_PORT: u16 = 8022;
const LOGIN: &str = "admin+cet1024w";

/// Accepts the server only if it shows the pinned key, as the engine does.
struct Pinned {
    fingerprint: Arc<str>,
}

impl client::Handler for Pinned {
    type Error = russh::Error;

    async fn check_server_key(
        &mut self,
        key: &PublicKeyOrCertificate,
    ) -> Result<bool, Self::Error> {
        let PublicKeyOrCertificate::PublicKey { key, .. } = key else {
            return Ok(false);
        };
        Ok(key.fingerprint(HashAlg::Sha256).to_string() == *self.fingerprint)
    }
}

/// The plugin's exchange, natively: connect, host key, login, one exec, close.
async fn native_run(
    config: Arc<client::Config>,
    addr: SocketAddr,
    fingerprint: Arc<str>,
    script: &'static str,
) -> Result<(), String> {
    let e = |e: russh::Error| e.to_string();
    let mut handle = client::connect(config, addr, Pinned { fingerprint })
        .await
        .map_err(e)?;
    if !handle
        .authenticate_password(LOGIN, PASSWORD)
        .await
        .map_err(e)?
        .success()
    {
        return Err("login refused".into());
    }
    let mut channel = handle.channel_open_session().await.map_err(e)?;
    channel.exec(true, script).await.map_err(e)?;
    let (mut output, mut status) = (Vec::new(), None);
    while let Some(msg) = channel.wait().await {
        match msg {
            ChannelMsg::Data { data } => output.extend_from_slice(&data),
            ChannelMsg::ExitStatus { exit_status } => status = Some(exit_status),
            _ => {}
        }
    }
    handle
        .disconnect(Disconnect::ByApplication, "", "")
        .await
        .map_err(e)?;
    match status {
        Some(0) => Ok(()),
        other => Err(format!(
            "exit status {other:?}: {}",
            String::from_utf8_lossy(&output)
        )),
    }
}

/// The plugin's `run-script` on router `i`.
async fn plugin_run(
    ssh: Transport,
    targets: Arc<[transport::Target]>,
    i: usize,
    script: &'static str,
) -> Result<(), String> {
    ssh.run_script(&targets[i], script)
        .await
        .map(|_| ())
        .map_err(|e| e.to_string())
}

fn target(addr: SocketAddr, detect: bool) -> transport::Target {
    transport::Target {
        site_id: addr.ip().to_string(),
        address: addr.ip().to_string(),
        port: addr.port(),
        username: "admin".into(),
        password: PASSWORD.into(),
        tls: None,
        connect_timeout_ms: 10_000,
        reply_timeout_ms: 30_000,
        // As a site that names its platform: the plugin logs in straight away rather
        // than first reading the version line on a connection of its own.
        options: if detect {
            Vec::new()
        } else {
            vec![("ssh.platform".into(), "routeros".into())]
        },
    }
}

/// The rounds of one path: each one's wall time and the process's CPU time during it.
#[derive(Default)]
struct Rounds {
    times: Vec<(Duration, Duration)>,
    failed: usize,
}

impl Rounds {
    fn add(&mut self, wall: Duration, cpu: Duration, failed: usize) {
        self.times.push((wall, cpu));
        self.failed += failed;
    }

    fn best(&self) -> (Duration, Duration) {
        self.times.iter().copied().min().unwrap_or_default()
    }
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    match values.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => values[n / 2],
        n => (values[n / 2 - 1] + values[n / 2]) / 2.0,
    }
}

/// CPU time this process's threads have used so far, from /proc (zero elsewhere).
fn cpu_time() -> Duration {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return Duration::ZERO;
    };
    let nanos: u64 = tasks
        .flatten()
        .filter_map(|t| std::fs::read_to_string(t.path().join("schedstat")).ok())
        .filter_map(|s| s.split_whitespace().next()?.parse::<u64>().ok())
        .sum();
    Duration::from_nanos(nanos)
}

fn env_number(name: &str) -> Option<usize> {
    std::env::var(name).ok().and_then(|v| v.parse().ok())
}

#[tokio::main]
async fn main() {
    let routers = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(1_000usize);
    let concurrency = env_number("SSH_BENCH_CONCURRENCY")
        .unwrap_or(RunnerSettings::default().run_concurrency)
        .max(1);
    let rounds = env_number("SSH_BENCH_ROUNDS").unwrap_or(5).max(1);
    let only = std::env::var("SSH_BENCH_ONLY").unwrap_or_default();

    let (stop, stopped) = tokio::sync::watch::channel(false);
    let fleet = Fleet::start(
        FleetConfig {
            routers,
            bind: Ipv4Addr::new(127, 66, 0, 1),
            port: 8728,
            tls_port: None,
            profile: Profile::V7_18,
            user: "admin".into(),
            password: PASSWORD.into(),
            faults: Vec::new(),
            ssh_port: Some(SSH_PORT),
            ssh_authorized_keys: Vec::new(),
        },
        async move {
            let mut stopped = stopped;
            let _ = stopped.wait_for(|s| *s).await;
        },
    )
    .await
    .expect("the simulated fleet starts (needs ~2x routers+300 open files)");
    let fingerprint: Arc<str> = fleet.ssh_fingerprint().expect("ssh is served").into();
    let addrs = fleet.ssh_addresses().expect("ssh is served");

    let work = tempfile::tempdir().expect("temporary folder");
    let plugins = work.path().join("plugins");
    yardmaster::plugins::install_bundled(&plugins, &work.path().join("data"))
        .expect("bundled plugins");
    let host = PluginHost::new(HostOptions {
        plugins_dir: plugins,
        cache_dir: Some(work.path().join("cache")),
        defaults: Limits::default(),
        plugins: BTreeMap::new(),
        max_concurrent_calls: 256,
        organization_share: 1.0,
        max_memory_bytes: Limits::default().memory_bytes,
        trusted_certificates: Vec::new(),
        sites_allow: yardmaster::plugins::SiteAllow::with_loopback(),
        ssh_algorithms: Default::default(),
    })
    .expect("plugin host");
    host.reconcile().await;
    let ssh = host
        .transport("ssh")
        .expect("the bundled ssh transport")
        .with_pinned_ssh("bench", vec![fingerprint.to_string()]);
    let detect = std::env::var("SSH_BENCH_DETECT").is_ok_and(|v| v == "1");
    let targets: Arc<[transport::Target]> = addrs.iter().map(|&a| target(a, detect)).collect();
    let config = Arc::new(client::Config {
        nodelay: true,
        ..client::Config::default()
    });

    println!(
        "ssh benchmark: {routers} simulated routers (RouterOS 7.18 profile) on loopback, \
         concurrency {concurrency}, {rounds} rounds per path, {} cores, platform {}; CPU is \
         the whole process's (the routers' side included)",
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1),
        if detect { "detected" } else { "named" },
    );
    let before: u64 = fleet.routers().map(|r| r.log_total()).sum();
    let mut native = Rounds::default();
    let mut plugin = Rounds::default();
    for round in 1..=rounds {
        if only != "plugin" {
            let cpu = cpu_time();
            let (wall, failed) = yardmaster_tests::bench::fan_out(routers, concurrency, |i| {
                native_run(
                    config.clone(),
                    addrs[i],
                    fingerprint.clone(),
                    ":log info \"native\"",
                )
            })
            .await;
            native.add(wall, cpu_time().saturating_sub(cpu), failed);
        }
        if only != "native" {
            let cpu = cpu_time();
            let (wall, failed) = yardmaster_tests::bench::fan_out(routers, concurrency, |i| {
                plugin_run(ssh.clone(), targets.clone(), i, ":log info \"plugin\"")
            })
            .await;
            plugin.add(wall, cpu_time().saturating_sub(cpu), failed);
        }
        let show = |r: &Rounds| match r.times.last() {
            Some((wall, cpu)) => format!("{wall:>8.2?} (CPU {cpu:>8.2?})"),
            None => "-".to_owned(),
        };
        println!(
            "{routers:>6} routers  round {round}/{rounds}: native {}  plugin {}",
            show(&native),
            show(&plugin)
        );
    }
    let after: u64 = fleet.routers().map(|r| r.log_total()).sum();
    for (name, path) in [("native", &native), ("plugin", &plugin)] {
        if !path.times.is_empty() {
            let (wall, cpu) = path.best();
            println!(
                "{routers:>6} routers  {name}  {:>8.2?} ({:>6.0} routers/s, {} failed)  CPU {:>8.2?} ({:.0} us per router)",
                wall,
                routers as f64 / wall.as_secs_f64(),
                path.failed,
                cpu,
                cpu.as_secs_f64() * 1e6 / routers as f64,
            );
        }
    }
    if !native.times.is_empty() && !plugin.times.is_empty() {
        let ((native_wall, native_cpu), (plugin_wall, plugin_cpu)) = (native.best(), plugin.best());
        let pairs = native.times.iter().zip(&plugin.times);
        let time_ratios = pairs
            .clone()
            .map(|(n, p)| p.0.as_secs_f64() / n.0.as_secs_f64());
        let cpu_ratios = pairs.map(|(n, p)| p.1.as_secs_f64() / n.1.as_secs_f64());
        println!(
            "{routers:>6} routers  plugin/native: best rounds time {:.2}x, CPU {:.2}x; \
             median of the rounds' ratios time {:.2}x, CPU {:.2}x",
            plugin_wall.as_secs_f64() / native_wall.as_secs_f64(),
            plugin_cpu.as_secs_f64() / native_cpu.as_secs_f64(),
            median(time_ratios.collect()),
            median(cpu_ratios.collect()),
        );
    }
    let runs = (native.times.len() + plugin.times.len()) * routers;
    println!(
        "        the routers logged the script {} times (expected once per router per run: {runs})",
        after - before,
    );
    println!("target: the plugin path within 1.5x of native");
    let _ = stop.send(true);
    fleet.wait().await;
    assert_eq!(
        (native.failed, plugin.failed, after - before),
        (0, 0, runs as u64),
        "every router ran the script once per run"
    );
}
