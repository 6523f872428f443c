//! HTTP API load benchmark: the real `yardmaster` binary with a simulated fleet, N sites
//! (default 1,000, 200 of them simulated routers on 127.13.x.x) imported in one call and
//! M scheduled scripts (default 1,000), loaded by `wrk` (Debian package `wrk`) over
//! loopback. Prints requests per second and latency percentiles for
//!
//! - `GET /scripts/scheduled?paginate=true&page=1&page_size=50` (listing), and
//! - `POST /api/asynchronous/{router_id}` (job submission; a Lua script gives every
//!   request its own idempotency key and cycles through the simulated routers, which
//!   really run the jobs meanwhile).
//!
//! `cargo build --release -p yardmaster && cargo bench -p yardmaster-tests --bench http [-- SITES SCHEDULES SECONDS CONNECTIONS]`
//!
//! It prints, never asserts on time, and exits by itself.

use std::net::{Ipv4Addr, SocketAddr};
use std::process::Command;
use std::time::Instant;

use serde_json::{Value, json};
use yardmaster::simulate::Profile;
use yardmaster_tests::{Engine, EngineOptions, fleet, http};

const ROUTERS: usize = 200;
const PASSWORD: &str = "bench";

fn arg(n: usize, default: usize) -> usize {
    std::env::args()
        .filter(|a| !a.starts_with('-'))
        .nth(n)
        .and_then(|a| a.parse().ok())
        .unwrap_or(default)
}

/// One request with a bearer token (the harness's `http` sends none).
fn call(addr: SocketAddr, token: &str, method: &str, path: &str, body: Option<&Value>) -> Value {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(addr).expect("connect");
    let payload = body.map(Value::to_string).unwrap_or_default();
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nAuthorization: Bearer {token}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{payload}",
        payload.len()
    );
    stream.write_all(request.as_bytes()).expect("send");
    let mut raw = String::new();
    stream.read_to_string(&mut raw).expect("read");
    let (head, body) = raw.split_once("\r\n\r\n").expect("an HTTP answer");
    let status = head.split_whitespace().nth(1).unwrap_or("?");
    assert!(
        status.starts_with('2'),
        "{method} {path} answered {status}: {body}"
    );
    serde_json::from_str(body).unwrap_or(Value::Null)
}

/// What wrk reported.
#[derive(Debug, Default)]
struct Load {
    requests_per_sec: String,
    p50: String,
    p99: String,
    requests: String,
    errors: String,
}

fn parse_wrk(text: &str) -> Load {
    let mut load = Load::default();
    for line in text.lines().map(str::trim) {
        let mut words = line.split_whitespace();
        match words.next() {
            Some("Requests/sec:") => load.requests_per_sec = words.next().unwrap_or("?").into(),
            Some("50%") => load.p50 = words.next().unwrap_or("?").into(),
            Some("99%") => load.p99 = words.next().unwrap_or("?").into(),
            _ => {}
        }
        if line.contains("requests in") {
            load.requests = line.split_whitespace().next().unwrap_or("?").into();
        }
        if let Some(n) = line.strip_prefix("Non-2xx or 3xx responses:") {
            load.errors = n.trim().into();
        }
    }
    if load.errors.is_empty() {
        load.errors = "0".into();
    }
    load
}

fn wrk(
    name: &str,
    url: &str,
    token: &str,
    script: Option<&std::path::Path>,
    seconds: usize,
    connections: usize,
) {
    let mut cmd = Command::new("wrk");
    cmd.args([
        "-t2",
        &format!("-c{connections}"),
        &format!("-d{seconds}s"),
        "--latency",
        "--timeout",
        "10s",
        "-H",
        &format!("Authorization: Bearer {token}"),
    ]);
    if let Some(script) = script {
        cmd.arg("-s").arg(script);
    }
    cmd.arg(url);
    let out = cmd.output().expect("run wrk");
    let text = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        eprintln!("wrk failed: {}{text}", String::from_utf8_lossy(&out.stderr));
        return;
    }
    let load = parse_wrk(&text);
    println!(
        "{name:<44} {:>10} req/s   p50 {:>9}   p99 {:>9}   ({} requests, {} not 2xx)",
        load.requests_per_sec, load.p50, load.p99, load.requests, load.errors
    );
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let sites = arg(1, 1000).max(ROUTERS);
    let schedules = arg(2, 1000);
    let seconds = arg(3, 10).max(1);
    let connections = arg(4, 32).max(2);
    let engine_binary = std::env::current_exe()
        .ok()
        .and_then(|exe| Some(exe.parent()?.parent()?.join("yardmaster")));
    if !engine_binary
        .as_deref()
        .is_some_and(std::path::Path::exists)
    {
        println!(
            "http bench: the yardmaster binary is not built for this profile; run `cargo build --release -p yardmaster` first"
        );
        return;
    }
    if Command::new("wrk").arg("--version").output().is_err() {
        println!(
            "http bench: wrk is not installed (Debian: apt-get install wrk); nothing measured"
        );
        return;
    }
    let routers = fleet(
        Ipv4Addr::new(127, 13, 0, 1),
        ROUTERS,
        Profile::V7_18,
        PASSWORD,
    )
    .await;
    let addresses = routers.addresses();
    let engine = tokio::task::spawn_blocking(|| {
        Engine::start(EngineOptions {
            bundled: true,
            ..EngineOptions::default()
        })
    })
    .await
    .expect("engine");
    let auth = yardmaster::auth::Authenticator::open(&engine.dir.path().join("data"))
        .expect("the engine's key");
    let token = auth.issue(&yardmaster::auth::Claims::new(
        "bench",
        "bench",
        yardmaster::auth::scopes::ALL
            .iter()
            .map(|s| s.to_string())
            .collect(),
        chrono::Utc::now(),
        chrono::TimeDelta::hours(2),
    ));
    let addr = engine.addr;

    let seeded = {
        let token = token.clone();
        tokio::task::spawn_blocking(move || seed(addr, &token, &addresses, sites, schedules))
            .await
            .expect("seed")
    };
    let base = format!("http://{addr}");
    println!(
        "http bench: engine at {base}, {sites} sites ({ROUTERS} simulated routers), {schedules} scheduled scripts; wrk -t2 -c{connections} -d{seconds}s"
    );

    let list_url = format!("{base}/scripts/scheduled?paginate=true&page=1&page_size=50");
    {
        let token = token.clone();
        tokio::task::spawn_blocking(move || {
            wrk(
                "GET /scripts/scheduled (page of 50)",
                &list_url,
                &token,
                None,
                seconds,
                connections,
            );
        })
        .await
        .expect("wrk");
    }

    let dir = tempfile::tempdir().expect("dir");
    let lua = dir.path().join("submit.lua");
    std::fs::write(&lua, submit_script(&seeded)).expect("lua");
    {
        let token = token.clone();
        let base = base.clone();
        tokio::task::spawn_blocking(move || {
            wrk(
                "POST /api/asynchronous/{router_id}",
                &base,
                &token,
                Some(&lua),
                seconds,
                connections,
            );
        })
        .await
        .expect("wrk");
    }
    let health = http(addr, "GET", "/healthz", None).expect("healthz");
    println!(
        "engine still healthy after the load: {}",
        health.status == 200
    );
    drop(engine);
    routers.fleet.shutdown().await;
}

/// Imports the sites in one call and creates the schedules; gives the router site ids.
fn seed(
    addr: SocketAddr,
    token: &str,
    routers: &[SocketAddr],
    sites: usize,
    schedules: usize,
) -> Vec<String> {
    let started = Instant::now();
    let rows: Vec<Value> = (0..sites)
        .map(|i| match routers.get(i) {
            Some(a) => json!({
                "name": format!("router-{i:05}"), "address": a.ip().to_string(), "port": a.port(),
                "username": "admin", "password": PASSWORD, "tags": ["simulated"],
            }),
            None => json!({
                "name": format!("router-{i:05}"), "address": format!("10.{}.{}.{}", i >> 16 & 255, i >> 8 & 255, i & 255),
                "username": "admin", "password": PASSWORD,
            }),
        })
        .collect();
    call(
        addr,
        token,
        "POST",
        "/sites/import",
        Some(&Value::Array(rows)),
    );
    let mut ids = Vec::new();
    for page in 1.. {
        let listed = call(
            addr,
            token,
            "GET",
            &format!("/sites?tag=simulated&page={page}&page_size=1000"),
            None,
        );
        let batch = listed["data"].as_array().cloned().unwrap_or_default();
        ids.extend(
            batch
                .iter()
                .filter_map(|s| s["id"].as_str().map(str::to_string)),
        );
        if batch.is_empty() || ids.len() >= routers.len() {
            break;
        }
    }
    assert_eq!(ids.len(), routers.len(), "every router is a site");
    let launch = (chrono::Utc::now() + chrono::TimeDelta::days(30))
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    for i in 0..schedules {
        let targets: Vec<&String> = ids.iter().skip(i % ids.len()).take(10).collect();
        call(
            addr,
            token,
            "POST",
            "/scripts/scheduled",
            Some(&json!({
                "description": format!("bench schedule {i}"),
                "script": format!(":log info \"bench {i}\""),
                "launch_at": launch,
                "sites": targets,
            })),
        );
    }
    println!(
        "seeded {sites} sites and {schedules} schedules in {:.1}s",
        started.elapsed().as_secs_f64()
    );
    ids
}

/// A wrk script: POSTs seed 001's job body to the routers in turn, each request with an
/// idempotency key of its own (run, thread and request numbers).
fn submit_script(site_ids: &[String]) -> String {
    let list = site_ids
        .iter()
        .map(|id| format!("\"{id}\""))
        .collect::<Vec<_>>()
        .join(", ");
    let run = std::process::id();
    format!(
        r#"local sites = {{ {list} }}
local threads = 0
function setup(thread)
  threads = threads + 1
  thread:set("tid", threads)
end
function init(args)
  n = 0
end
function request()
  n = n + 1
  local site = sites[(n % #sites) + 1]
  local body = string.format(
    '{{"description":"http bench","script":":log info \\"bench\\"","make_backup":false,"express_execute":false,"needs_acknowledgement":true,"idempotency_key":"bench-{run}-%d-%d"}}',
    tid, n)
  -- Headers given to wrk.format replace wrk.headers (which hold -H Authorization).
  local headers = {{}}
  for k, v in pairs(wrk.headers) do headers[k] = v end
  headers["Content-Type"] = "application/json"
  return wrk.format("POST", "/api/asynchronous/" .. site, headers, body)
end
"#
    )
}
