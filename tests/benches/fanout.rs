//! Fan-out benchmark: one script to 1,000 and to 10,000 simulated routers over real TCP,
//! through the RouterOS API plugin in the engine's plugin host, against the same
//! protocol work (connect, login, `/execute`, quit) done by a native Rust client in the
//! same run. The two paths run in alternating rounds; it prints each round, then
//! routers per second for both from their best rounds (a shared machine's noise only
//! ever adds time) with the CPU time each took, and the ratio of the two: of the best
//! rounds, and the median of each round's ratio to the native round just before it.
//! Asserts nothing about time, only that every router ran the script.
//!
//! Latency mode: `FANOUT_DELAY_MS=100` makes every simulated router send each reply that
//! late, as real routers over a WAN do. Beside each path's time it then prints the floor
//! the waiting sets (round trips per router x delay x routers / concurrency), with the
//! round trips counted by the routers (every login and command a client waited for).
//! Both paths run at the same concurrency: the engine's per-launch limit as its start-up
//! budget sizes it on this machine (`FANOUT_CONCURRENCY` sets another), and the plugin
//! host gets as many concurrent calls as the engine would. The peak resident memory
//! of the process (fleet included) is printed at the end.
//!
//! `cargo bench -p yardmaster-tests --bench fanout [-- ROUTERS...]`; set
//! `FANOUT_ONLY=plugin` (or `native`) to run one path alone, e.g. under a profiler, and
//! `FANOUT_AGAINST=other.wasm` to measure the plugin against another build of it (in a
//! plugin host of its own) instead of the native client: alternating rounds in one
//! process compare two builds far more precisely than separate runs can.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use yardmaster::budget::{Budget, Requested, Resources};
use yardmaster::config::Limits;
use yardmaster::plugins::{HostOptions, PluginHost, Transport, transport};
use yardmaster::simulate::{Fleet, FleetConfig, Profile};
use yardmaster_plugin_sdk::routeros::{Decoder, Reply, encode_sentence};
use yardmaster_tests::bench;

const PASSWORD: &str = "bench";

/// Each path runs at least this many routers over its rounds.
const ROUTER_RUNS: usize = 20_000;

async fn read_reply(stream: &mut TcpStream, decoder: &mut Decoder) -> Result<Reply, String> {
    let mut buf = [0u8; 4096];
    loop {
        if let Some(sentence) = decoder.next_sentence().map_err(|e| e.to_string())? {
            return Reply::parse(&sentence).map_err(|e| e.to_string());
        }
        let n = stream.read(&mut buf).await.map_err(|e| e.to_string())?;
        if n == 0 {
            return Err("closed".into());
        }
        decoder.feed(&buf[..n]);
    }
}

/// Reads until `!done`, failing on `!trap`.
async fn until_done(stream: &mut TcpStream, decoder: &mut Decoder) -> Result<(), String> {
    loop {
        match read_reply(stream, decoder).await? {
            Reply::Done { .. } => return Ok(()),
            Reply::Trap { message, .. } => return Err(message),
            Reply::Fatal { reason } => return Err(reason),
            _ => {}
        }
    }
}

/// The same protocol work as the plugin's `run-script`, natively.
async fn native_run(addr: SocketAddr, script: &str) -> Result<(), String> {
    let mut stream = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
    stream.set_nodelay(true).map_err(|e| e.to_string())?;
    let mut decoder = Decoder::new();
    let login = encode_sentence(&["/login", "=name=admin", &format!("=password={PASSWORD}")]);
    stream.write_all(&login).await.map_err(|e| e.to_string())?;
    until_done(&mut stream, &mut decoder).await?;
    let execute = encode_sentence(&[
        "/execute",
        &format!("=script={script}"),
        "=as-string=",
        ".tag=1",
    ]);
    stream
        .write_all(&execute)
        .await
        .map_err(|e| e.to_string())?;
    until_done(&mut stream, &mut decoder).await?;
    stream
        .write_all(&encode_sentence(&["/quit"]))
        .await
        .map_err(|e| e.to_string())?;
    Ok(())
}

/// The plugin's `run-script` on router `i`.
async fn plugin_run(
    routeros: Transport,
    targets: Arc<[transport::Target]>,
    i: usize,
    script: &'static str,
) -> Result<(), String> {
    routeros
        .run_script(&targets[i], script)
        .await
        .map(|_| ())
        .map_err(|e| e.to_string())
}

fn target(addr: SocketAddr) -> transport::Target {
    transport::Target {
        site_id: addr.ip().to_string(),
        address: addr.ip().to_string(),
        port: addr.port(),
        username: "admin".into(),
        password: PASSWORD.into(),
        tls: None,
        connect_timeout_ms: 10_000,
        reply_timeout_ms: 30_000,
        options: Vec::new(),
    }
}

/// The rounds of one path: each one's wall time and the process's CPU time during it,
/// and the round trips and connections its routers saw.
#[derive(Default)]
struct Rounds {
    times: Vec<(Duration, Duration)>,
    failed: usize,
    seen: bench::Seen,
}

impl Rounds {
    fn add(&mut self, wall: Duration, cpu: Duration, failed: usize) {
        self.times.push((wall, cpu));
        self.failed += failed;
    }

    fn count(&self) -> usize {
        self.times.len()
    }

    /// The fastest round (noise on a shared machine only ever adds time).
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

/// A plugin host serving the plugins in `dir`, and its RouterOS transport.
async fn routeros_in(
    dir: std::path::PathBuf,
    cache: &std::path::Path,
    max_concurrent_calls: u32,
) -> Transport {
    let host = PluginHost::new(HostOptions {
        plugins_dir: dir,
        cache_dir: Some(cache.to_path_buf()),
        defaults: Limits::default(),
        plugins: BTreeMap::new(),
        max_concurrent_calls,
        organization_share: 1.0,
        max_memory_bytes: Limits::default().memory_bytes,
        trusted_certificates: Vec::new(),
        sites_allow: yardmaster::plugins::SiteAllow::with_loopback(),
        ssh_algorithms: Default::default(),
    })
    .expect("plugin host");
    host.reconcile().await;
    host.transport("routeros-api")
        .expect("a RouterOS transport named routeros-api")
}

#[tokio::main]
async fn main() {
    let sizes: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let sizes = if sizes.is_empty() {
        vec![1_000, 10_000]
    } else {
        sizes
    };
    let largest = sizes.iter().copied().max().unwrap_or(1_000);
    let delay = bench::reply_delay("FANOUT_DELAY_MS");
    // Raised to the hard limit before the fleet takes its listeners, as the engine does.
    Resources::detect();

    let (stop, stopped) = tokio::sync::watch::channel(false);
    let fleet = Fleet::start(
        FleetConfig {
            routers: largest,
            bind: Ipv4Addr::new(127, 4, 0, 1),
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
    .expect("the simulated fleet starts (needs ~routers+300 open files)");
    // The engine's budget, on what the fleet leaves: each router in flight holds two
    // sockets here, the client's and the simulated router's.
    let mut cost = yardmaster::plugins::call_cost(Limits::default().memory_bytes);
    cost.files = 2;
    let budget = Budget::plan(Requested::default(), &Resources::detect(), cost);
    println!(
        "engine budget with the fleet in this process: {}",
        budget.summary()
    );
    let concurrency: usize = std::env::var("FANOUT_CONCURRENCY")
        .ok()
        .and_then(|c| c.parse().ok())
        // By default as many routers at once as the engine's runner works on in one
        // launch of a script.
        .unwrap_or(budget.jobs_per_launch)
        .max(1);
    let calls = budget
        .plugin_calls
        .max(u32::try_from(concurrency).unwrap_or(u32::MAX));

    let work = tempfile::tempdir().expect("temporary folder");
    let plugins = work.path().join("plugins");
    yardmaster::plugins::install_bundled(&plugins, &work.path().join("data"))
        .expect("bundled plugins");
    let routeros = routeros_in(plugins, &work.path().join("cache"), calls).await;
    // Another build of the plugin, in a host of its own, in place of the native client:
    // two builds compared round by round under the same conditions.
    let against = match std::env::var_os("FANOUT_AGAINST") {
        Some(file) => {
            let dir = work.path().join("against");
            std::fs::create_dir_all(&dir).expect("a folder for the other build");
            std::fs::copy(&file, dir.join("routeros-api.wasm"))
                .unwrap_or_else(|e| panic!("FANOUT_AGAINST={}: {e}", file.to_string_lossy()));
            Some(routeros_in(dir, &work.path().join("cache"), calls).await)
        }
        None => None,
    };
    let base = if against.is_some() {
        "against"
    } else {
        "native"
    };

    println!(
        "fan-out benchmark: {} simulated routers on loopback, concurrency {concurrency} \
         ({calls} plugin calls), {} cores, {}",
        largest,
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1),
        match delay {
            Some(d) => format!("every reply {} ms late (FANOUT_DELAY_MS)", d.as_millis()),
            None => "replies immediate (FANOUT_DELAY_MS=100 for latency mode)".to_owned(),
        }
    );
    let (rss_at_start, _) = bench::memory();
    let only = match std::env::var("FANOUT_ONLY").unwrap_or_default() {
        only if only == "native" => base.to_owned(),
        only => only,
    };
    let min_rounds: usize = std::env::var("FANOUT_ROUNDS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(5)
        .max(1);
    println!(
        "each path runs at least {min_rounds} times (FANOUT_ROUNDS), and a small fleet as \
         often as it takes to reach {ROUTER_RUNS} routers, alternating; CPU is the time of \
         the whole process (fleet included) during a round"
    );
    let all = fleet.addresses();
    for &size in &sizes {
        let addrs = &all[..size];
        // The sites, as the engine holds them: made once, not on every call.
        let targets: Arc<[transport::Target]> = addrs.iter().map(|&a| target(a)).collect();
        let before: u64 = fleet.routers().take(size).map(|r| r.log_total()).sum();
        let mut baseline = Rounds::default();
        let mut plugin = Rounds::default();
        // A short round is the more exposed to a moment's noise, so a small fleet gets as
        // many rounds as a large one gets routers: the best round and the median are
        // then as steady for 1,000 routers as for 10,000.
        let rounds = min_rounds.max(ROUTER_RUNS.div_ceil(size));
        for round in 1..=rounds {
            if only != "plugin" {
                let cpu = cpu_time();
                let seen = bench::Seen::of(&fleet, size);
                let (wall, failed) = match &against {
                    Some(other) => {
                        bench::fan_out(size, concurrency, |i| {
                            plugin_run(other.clone(), targets.clone(), i, ":log info \"against\"")
                        })
                        .await
                    }
                    None => {
                        bench::fan_out(size, concurrency, |i| {
                            native_run(addrs[i], ":log info \"native\"")
                        })
                        .await
                    }
                };
                baseline.add(wall, cpu_time().saturating_sub(cpu), failed);
                baseline.seen.add_since(bench::Seen::of(&fleet, size), seen);
            }
            if only != base {
                let cpu = cpu_time();
                let seen = bench::Seen::of(&fleet, size);
                let (wall, failed) = bench::fan_out(size, concurrency, |i| {
                    plugin_run(routeros.clone(), targets.clone(), i, ":log info \"plugin\"")
                })
                .await;
                plugin.add(wall, cpu_time().saturating_sub(cpu), failed);
                plugin.seen.add_since(bench::Seen::of(&fleet, size), seen);
            }
            let show = |r: &Rounds| match r.times.last() {
                Some((wall, cpu)) => format!("{wall:>8.2?} (CPU {cpu:>8.2?})"),
                None => "-".to_owned(),
            };
            println!(
                "{size:>6} routers  round {round}/{rounds}: {base} {}  plugin {}",
                show(&baseline),
                show(&plugin)
            );
        }
        let after: u64 = fleet.routers().take(size).map(|r| r.log_total()).sum();
        for (name, path) in [(base, &baseline), ("plugin", &plugin)] {
            if path.count() > 0 {
                let (wall, cpu) = path.best();
                println!(
                    "{size:>6} routers  {name}  {:>8.2?} ({:>7.0}/s, {} failed)  CPU {:>8.2?} ({:.0} us per router)",
                    wall,
                    size as f64 / wall.as_secs_f64(),
                    path.failed,
                    cpu,
                    cpu.as_secs_f64() * 1e6 / size as f64,
                );
                let (round_trips, requests, connections) = path.seen.per_router(size, path.count());
                let floor = match delay {
                    Some(d) => format!(
                        "; latency floor {:.2?} ({round_trips:.2} x {} ms x {size} / {concurrency})",
                        bench::latency_floor(round_trips, d, size, concurrency),
                        d.as_millis()
                    ),
                    None => String::new(),
                };
                println!(
                    "{size:>6} routers  {name}  per router: {round_trips:.2} round trips \
                     ({requests:.2} requests), {connections:.2} connections{floor}"
                );
            }
        }
        if baseline.count() > 0 && plugin.count() > 0 {
            let ((base_wall, base_cpu), (plugin_wall, plugin_cpu)) =
                (baseline.best(), plugin.best());
            // Each round of the plugin against the other round just before it: the two
            // ran under the same conditions, so their ratio is steadier than either time.
            let pairs = baseline.times.iter().zip(&plugin.times);
            let time_ratios = pairs
                .clone()
                .map(|(n, p)| p.0.as_secs_f64() / n.0.as_secs_f64());
            let cpu_ratios = pairs.map(|(n, p)| p.1.as_secs_f64() / n.1.as_secs_f64());
            println!(
                "{size:>6} routers  plugin/{base}: best rounds time {:.2}x, CPU {:.2}x; \
                 median of the rounds' ratios time {:.2}x, CPU {:.2}x",
                plugin_wall.as_secs_f64() / base_wall.as_secs_f64(),
                plugin_cpu.as_secs_f64() / base_cpu.as_secs_f64(),
                median(time_ratios.collect()),
                median(cpu_ratios.collect()),
            );
        }
        let runs = (baseline.count() + plugin.count()) * size;
        println!(
            "        the routers logged the script {} times (expected once per router per run: {runs})",
            after - before,
        );
    }
    let (rss, peak) = bench::memory();
    println!(
        "memory: peak RSS {:.0} MiB (VmHWM, fleet included), {:.0} MiB now, {:.0} MiB before \
         the rounds; {:.0} KiB more at the peak per router in flight",
        bench::mib(peak),
        bench::mib(rss),
        bench::mib(rss_at_start),
        peak.saturating_sub(rss_at_start) as f64 / 1024.0 / concurrency as f64
    );
    println!(
        "targets: 10,000 routers in under 3 s through the plugin, plugin/native at most 1.5x; \
         with FANOUT_DELAY_MS=100, near the latency floor"
    );
    let _ = stop.send(true);
    fleet.wait().await;
}
