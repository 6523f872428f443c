//! Plugin host benchmark: instantiation per call, plugin load time (cold compile and
//! from the cache), and reload latency from file write to serving, with calls running
//! throughout the swaps. Prints its figures; asserts nothing about time.
//!
//! `cargo bench -p yardmaster-tests --bench plugin_host`

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use yardmaster::config::Limits;
use yardmaster::plugins::{HostOptions, PluginHost, transport};
use yardmaster_tests::fixture;

fn options(plugins_dir: &Path, cache_dir: Option<&Path>) -> HostOptions {
    HostOptions {
        plugins_dir: plugins_dir.to_path_buf(),
        cache_dir: cache_dir.map(Path::to_path_buf),
        defaults: Limits::default(),
        plugins: BTreeMap::new(),
        max_concurrent_calls: 256,
        organization_share: 1.0,
        max_memory_bytes: Limits::default().memory_bytes,
        trusted_certificates: Vec::new(),
        sites_allow: yardmaster::plugins::SiteAllow::with_loopback(),
        ssh_algorithms: Default::default(),
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn report(what: &str, mut samples: Vec<Duration>) {
    samples.sort();
    println!(
        "{what:<44} n={:<6} median={:>10.1?} p99={:>10.1?} max={:>10.1?}",
        samples.len(),
        percentile(&samples, 0.5),
        percentile(&samples, 0.99),
        samples.last().copied().unwrap_or_default(),
    );
}

fn target() -> transport::Target {
    transport::Target {
        site_id: "bench".into(),
        address: "127.0.0.1".into(),
        port: 1,
        username: String::new(),
        password: String::new(),
        tls: None,
        connect_timeout_ms: 0,
        reply_timeout_ms: 0,
        options: Vec::new(),
    }
}

#[tokio::main]
async fn main() {
    let work = tempfile::tempdir().expect("temporary folder");
    let plugins = work.path().join("plugins");
    let cache = work.path().join("cache");
    std::fs::create_dir_all(&plugins).expect("plugins folder");
    let echo_v1 = std::fs::read(fixture("echo")).expect("echo fixture");
    let echo_v2 = std::fs::read(fixture("echo-v2")).expect("echo-v2 fixture");
    let file = plugins.join("echo.wasm");

    println!(
        "plugin host benchmark (echo fixture, {} KiB)",
        echo_v1.len() / 1024
    );

    // Load time: compile from scratch, then from the on-disk cache.
    let mut cold = Vec::new();
    for _ in 0..3 {
        let host = PluginHost::new(options(&plugins, None)).expect("host");
        let start = Instant::now();
        host.inspect(&file, Arc::new(echo_v1.clone()))
            .await
            .expect("loads");
        cold.push(start.elapsed());
    }
    report("load: cold compile + validate", cold);
    let host = PluginHost::new(options(&plugins, Some(&cache))).expect("host");
    host.inspect(&file, Arc::new(echo_v1.clone()))
        .await
        .expect("warms the cache");
    let mut cached = Vec::new();
    for _ in 0..20 {
        let host = PluginHost::new(options(&plugins, Some(&cache))).expect("host");
        let start = Instant::now();
        let plugin = host
            .inspect(&file, Arc::new(echo_v1.clone()))
            .await
            .expect("loads");
        assert!(
            plugin.from_cache,
            "the second load must come from the cache"
        );
        cached.push(start.elapsed());
    }
    report("load: from compiled cache + validate", cached);

    // Per-call cost on a loaded plugin.
    std::fs::write(&file, &echo_v1).expect("install echo");
    let host = PluginHost::new(options(&plugins, Some(&cache))).expect("host");
    host.reconcile().await;
    for _ in 0..1000 {
        host.instantiate_only("echo").await.expect("warm up");
    }
    let mut inst = Vec::with_capacity(20_000);
    for _ in 0..20_000 {
        let start = Instant::now();
        host.instantiate_only("echo").await.expect("instantiates");
        inst.push(start.elapsed());
    }
    report("call: fresh store + instantiate", inst);
    let echo = host.transport("echo").expect("transport");
    let target = target();
    let mut calls = Vec::with_capacity(20_000);
    for _ in 0..20_000 {
        let start = Instant::now();
        echo.probe(&target).await.expect("probe");
        calls.push(start.elapsed());
    }
    report("call: instantiate + probe() round trip", calls);

    let parallel = 20_000u64;
    let start = Instant::now();
    let tasks: Vec<_> = (0..64)
        .map(|_| {
            let echo = echo.clone();
            let target = target.clone();
            tokio::spawn(async move {
                for _ in 0..parallel / 64 {
                    echo.probe(&target).await.expect("probe");
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.expect("task");
    }
    let elapsed = start.elapsed();
    println!(
        "{:<44} {:.0} calls/s ({} calls, 64 tasks)",
        "call: concurrent throughput",
        (parallel / 64 * 64) as f64 / elapsed.as_secs_f64(),
        parallel / 64 * 64
    );

    // Reload latency: from the file landing in the folder to the new version serving,
    // with calls running all the while.
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let watcher = tokio::spawn(yardmaster::plugins::watch(host.clone(), async move {
        let mut rx = stop_rx;
        let _ = rx.wait_for(|s| *s).await;
    }));
    let running = Arc::new(AtomicBool::new(true));
    let (ok, failed) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let callers: Vec<_> = (0..8)
        .map(|_| {
            let (host, running, ok, failed, target) = (
                host.clone(),
                running.clone(),
                ok.clone(),
                failed.clone(),
                target.clone(),
            );
            tokio::spawn(async move {
                while running.load(Ordering::Relaxed) {
                    let result = match host.transport("echo") {
                        Ok(echo) => echo
                            .run_script(&target, "x")
                            .await
                            .map(|_| ())
                            .map_err(|e| e.to_string()),
                        Err(e) => Err(e.to_string()),
                    };
                    match result {
                        Ok(()) => ok.fetch_add(1, Ordering::Relaxed),
                        Err(_) => failed.fetch_add(1, Ordering::Relaxed),
                    };
                }
            })
        })
        .collect();
    let mut reloads = Vec::new();
    for round in 0..10 {
        let (bytes, version) = if round % 2 == 0 {
            (&echo_v2, "2.0.0")
        } else {
            (&echo_v1, "1.0.0")
        };
        let tmp = plugins.join(".echo.wasm.tmp");
        std::fs::write(&tmp, bytes).expect("write");
        let start = Instant::now();
        std::fs::rename(&tmp, &file).expect("swap");
        loop {
            if host
                .get("echo")
                .is_some_and(|p| p.info.version.to_string() == version)
            {
                break;
            }
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "reload never happened"
            );
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        reloads.push(start.elapsed());
    }
    running.store(false, Ordering::Relaxed);
    for caller in callers {
        caller.await.expect("caller");
    }
    let _ = stop_tx.send(true);
    watcher.await.expect("watcher");
    report("reload: file written -> new version serving", reloads);
    println!(
        "{:<44} {} ok, {} failed",
        "calls during the 10 reloads",
        ok.load(Ordering::Relaxed),
        failed.load(Ordering::Relaxed)
    );
    println!("targets: instantiation < 50us, reload < 1s, no failed call");
}
