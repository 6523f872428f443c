//! HTTP API load benchmark: the real `yardmaster` binary with a simulated fleet, N sites
//! (default 2,000, 200 of them simulated routers on 127.13.x.x) and M scheduled scripts
//! (default 1,000) stored before it starts, on 10 sites each but the last, which has a
//! finished run on 2,000 sites; loaded by `wrk` (Debian package `wrk`) over
//! loopback. Prints requests per second and latency percentiles for
//!
//! - `GET /healthz` (what the server does with no work, for scale),
//! - `GET /scripts/scheduled?paginate=true&page=1&page_size=50` (a page of listing),
//! - `GET /scripts/scheduled?id=...` (the one schedule with the 2,000-site run: 2,000
//!   site ids in each of `sites`, `approved_sites` and `progress`),
//! - `GET /api/jobs/{id}` (one job), and
//! - `POST /api/asynchronous/{router_id}` (job submission; a Lua script gives every
//!   request its own idempotency key and cycles through the simulated routers, which
//!   really run the jobs meanwhile).
//!
//! Run it with M = 1,000 and M = 100,000 to see that a page costs the same whatever the
//! table holds, and with `HTTP_MAX_JOBS=1` to measure submissions with the jobs' execution
//! held back to one at a time (the engine's `[runner] max_jobs`).
//!
//! `cargo build --release -p yardmaster && cargo bench -p yardmaster-tests --bench http [-- SITES SCHEDULES SECONDS CONNECTIONS]`
//!
//! It prints, never asserts on time, and exits by itself.

use std::net::{Ipv4Addr, SocketAddr};
use std::process::Command;
use std::time::Instant;

use yardmaster::simulate::Profile;
use yardmaster_tests::{Engine, EngineOptions, fleet, http};

const ROUTERS: usize = 200;
const ORG: &str = "bench";
const PASSWORD: &str = "bench";

fn arg(n: usize, default: usize) -> usize {
    std::env::args()
        .filter(|a| !a.starts_with('-'))
        .nth(n)
        .and_then(|a| a.parse().ok())
        .unwrap_or(default)
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
    let sites = arg(1, 2000).max(ROUTERS);
    let schedules = arg(2, 1000).max(1);
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
    let dir = tempfile::tempdir().expect("engine folder");
    let data = dir.path().join("data");
    let seeded = tokio::task::spawn_blocking(move || seed(&data, &addresses, sites, schedules))
        .await
        .expect("seed");
    // HTTP_MAX_JOBS=1 holds the jobs' execution back (one at a time), so the submissions
    // are measured with the cores to themselves; by default the jobs run meanwhile.
    let max_jobs = std::env::var("HTTP_MAX_JOBS")
        .ok()
        .and_then(|v| v.parse::<usize>().ok());
    let config = max_jobs.map_or_else(String::new, |n| format!("[runner]\nmax_jobs = {n}\n"));
    let engine = tokio::task::spawn_blocking(move || {
        Engine::start(EngineOptions {
            bundled: true,
            reuse: Some(dir),
            config,
            ..EngineOptions::default()
        })
    })
    .await
    .expect("engine");
    let auth = yardmaster::auth::Authenticator::open(&engine.dir.path().join("data"))
        .expect("the engine's key");
    let token = auth.issue(&yardmaster::auth::Claims::new(
        "bench",
        ORG,
        yardmaster::auth::scopes::ALL
            .iter()
            .map(|s| s.to_string())
            .collect(),
        chrono::Utc::now(),
        chrono::TimeDelta::hours(2),
    ));
    let addr = engine.addr;
    let base = format!("http://{addr}");
    println!(
        "http bench: engine at {base}, {sites} sites ({ROUTERS} simulated routers), {schedules} scheduled scripts (one with a finished run on {} sites); wrk -t2 -c{connections} -d{seconds}s; {}",
        seeded.big_run,
        match max_jobs {
            Some(n) => format!("submitted jobs run at most {n} at a time (HTTP_MAX_JOBS)"),
            None => "submitted jobs run meanwhile".to_owned(),
        }
    );
    let load = |name: &'static str, url: String, script: Option<std::path::PathBuf>| {
        let token = token.clone();
        tokio::task::spawn_blocking(move || {
            wrk(name, &url, &token, script.as_deref(), seconds, connections);
        })
    };
    load("GET /healthz", format!("{base}/healthz"), None)
        .await
        .expect("wrk");
    load(
        "GET /scripts/scheduled (page of 50)",
        format!("{base}/scripts/scheduled?paginate=true&page=1&page_size=50"),
        None,
    )
    .await
    .expect("wrk");
    load(
        "GET /scripts/scheduled (the 2,000-site run)",
        format!("{base}/scripts/scheduled?id={}", seeded.big_schedule),
        None,
    )
    .await
    .expect("wrk");
    load(
        "GET /api/jobs/{id}",
        format!("{base}/api/jobs/{}", seeded.job_id),
        None,
    )
    .await
    .expect("wrk");

    let scripts = tempfile::tempdir().expect("dir");
    let lua = scripts.path().join("submit.lua");
    std::fs::write(&lua, submit_script(&seeded.routers)).expect("lua");
    load(
        "POST /api/asynchronous/{router_id}",
        base.clone(),
        Some(lua),
    )
    .await
    .expect("wrk");
    let health = http(addr, "GET", "/healthz", None).expect("healthz");
    println!(
        "engine still healthy after the load: {}",
        health.status == 200
    );
    drop(engine);
    routers.fleet.shutdown().await;
}

/// What the seeding left for the load.
struct Seeded {
    /// Site ids of the simulated routers.
    routers: Vec<String>,
    /// A job of the big run.
    job_id: String,
    /// The schedule of the big run.
    big_schedule: String,
    /// Sites of the big run.
    big_run: usize,
}

/// Stores the sites, the schedules and one finished run on up to 2,000 sites, as an
/// engine that has been working for a while holds them, before the engine starts.
fn seed(data: &std::path::Path, routers: &[SocketAddr], sites: usize, schedules: usize) -> Seeded {
    use yardmaster::store::{
        JobTransition, LaunchPlan, ScheduleInput, Secret, SiteInput, Store, User,
    };
    let started = Instant::now();
    let store = Store::open(data).expect("store");
    let now = chrono::Utc::now();
    for id in ["alice", "bob"] {
        store
            .put_user(&User {
                id: id.into(),
                name: id.into(),
                email: format!("{id}@example.com"),
                organization: ORG.into(),
                created_at: now,
            })
            .expect("user");
    }
    let inputs: Vec<SiteInput> = (0..sites)
        .map(|i| {
            let (address, port) = match routers.get(i) {
                Some(a) => (a.ip().to_string(), Some(a.port())),
                None => (
                    format!("10.{}.{}.{}", i >> 16 & 255, i >> 8 & 255, i & 255),
                    None,
                ),
            };
            SiteInput {
                organization: ORG.into(),
                name: format!("router-{i:05}"),
                address,
                port,
                transport: "routeros-api".into(),
                username: "admin".into(),
                password: Some(Secret::new(PASSWORD)),
                tls: Default::default(),
                tags: Vec::new(),
                private_key: None,
                private_key_passphrase: None,
                ssh: None,
            }
        })
        .collect();
    let ids: Vec<String> = store
        .import_sites(ORG, inputs, "alice", now)
        .expect("import")
        .expect("sites accepted")
        .into_iter()
        .map(|s| s.id)
        .collect();
    let launch_at = now + chrono::TimeDelta::days(30);
    let schedule = |i: usize, sites: Vec<String>| ScheduleInput {
        organization: ORG.into(),
        description: format!("bench schedule {i}"),
        script: format!(":log info \"bench {i}\""),
        sites,
        launch_at: Some(launch_at),
        created_by: "alice".into(),
        ..ScheduleInput::default()
    };

    let mut made = 0;
    while made + 1 < schedules {
        let n = (schedules - 1 - made).min(10_000);
        let batch = (made..made + n)
            .map(|i| {
                schedule(
                    i,
                    ids.iter()
                        .cycle()
                        .skip(i % ids.len())
                        .take(10)
                        .cloned()
                        .collect(),
                )
            })
            .collect();
        store.create_schedules(batch, now).expect("schedules");
        made += n;
    }
    // The last schedule, alone on the last page, ran on up to 2,000 sites.
    let big: Vec<String> = ids.iter().take(2000).cloned().collect();
    let first = store
        .create_schedule(schedule(schedules - 1, big.clone()), now)
        .expect("schedule");
    let bob = yardmaster::approval::Principal {
        user_id: "bob".into(),
        organization: ORG.into(),
        scopes: vec!["script:authorize".into()],
    };
    yardmaster::approval::approve(
        &store,
        &first.id,
        &bob,
        None,
        yardmaster::approval::OrgPolicy::default(),
        now,
    )
    .expect("approved");
    let approved = store.get_schedule(&first.id).expect("schedule");
    let launch = store
        .launch(
            LaunchPlan {
                schedule_id: first.id.clone(),
                occurrence: 0,
                scheduled_for: launch_at,
                approval: approved.approval.clone().expect("approval"),
                sites: big.clone(),
                more_batches: false,
                next_launch_at: None,
            },
            now,
        )
        .expect("launch");
    let done = launch
        .created
        .iter()
        .enumerate()
        .map(|(i, job)| {
            let end = if i % 10 == 0 {
                JobTransition::Fail {
                    error: yardmaster::store::JobError {
                        code: "timeout".into(),
                        message: "no answer".into(),
                    },
                    output: None,
                }
            } else {
                JobTransition::Complete {
                    output: Some("ok".into()),
                }
            };
            (
                job.id.clone(),
                vec![JobTransition::Start, JobTransition::MarkSent, end],
            )
        })
        .collect();
    store.transition_each(done, now).expect("finish the run");

    println!(
        "seeded {sites} sites, {schedules} schedules and a {}-site run in {:.1}s",
        big.len(),
        started.elapsed().as_secs_f64()
    );
    listing_costs(&store, now);
    Seeded {
        routers: ids.into_iter().take(routers.len()).collect(),
        job_id: launch.created[0].id.clone(),
        big_schedule: first.id.clone(),
        big_run: big.len(),
    }
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

/// What a page of 50 costs the store itself, without HTTP and without the API's page
/// cache (which serves a page asked again before the next commit as rendered), for
/// each kind of filter: the figures that must not grow with the schedules stored.
fn listing_costs(store: &yardmaster::store::Store, now: chrono::DateTime<chrono::Utc>) {
    use yardmaster::store::RecurrenceKind;
    use yardmaster::store::listing::{ScheduleFilter, ScheduleType};
    let filters = [
        ("no filter", ScheduleFilter::default()),
        (
            "by creator",
            ScheduleFilter {
                created_by: Some("alice".into()),
                ..ScheduleFilter::default()
            },
        ),
        (
            "by type (one-time)",
            ScheduleFilter {
                schedule_type: Some(ScheduleType::OneTime),
                ..ScheduleFilter::default()
            },
        ),
        (
            "by frequency (daily: none match)",
            ScheduleFilter {
                frequency: Some(RecurrenceKind::Daily),
                ..ScheduleFilter::default()
            },
        ),
        (
            "by creation time (the last hour)",
            ScheduleFilter {
                created_from: Some(now - chrono::TimeDelta::hours(1)),
                ..ScheduleFilter::default()
            },
        ),
        (
            "by name (a scan of the names)",
            ScheduleFilter {
                name: Some("schedule 7".into()),
                ..ScheduleFilter::default()
            },
        ),
    ];
    for (name, filter) in filters {
        const ROUNDS: u32 = 200;
        let started = Instant::now();
        let mut total = 0;
        for _ in 0..ROUNDS {
            total = store
                .filter_schedules(ORG, &filter, 0, Some(50))
                .expect("listing")
                .total;
        }
        println!(
            "store listing, page of 50, {name:<34} {:>9.1} us a page ({total} match)",
            started.elapsed().as_secs_f64() * 1e6 / f64::from(ROUNDS)
        );
    }
}
