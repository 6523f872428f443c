//! Launch-to-done of one occurrence on N simulated routers (default 10,000), each job
//! durable, through the real engine binary and its bundled RouterOS API plugin: on the
//! embedded redb store with one engine, and on PostgreSQL with one and with three
//! engines sharing the database. A schedule is created through the first engine's API
//! and approved through the second's (the first's, alone); the clock runs from its
//! `launch_at` to the moment its progress counts every site finished. Prints the time,
//! jobs per second, and checks that every site completed.
//!
//! The simulated fleet (127.40.x.x, plain API, no reply delay) and PostgreSQL (private,
//! on loopback, `fsync` on) run on the same machine as the engines.
//!
//! Build the release binary first, then run:
//! `cargo build --release -p yardmaster --bin yardmaster && cargo bench -p yardmaster-tests --bench engines [-- ROUTERS [redb|1|3]...]`,
//! for example `-- 10000 redb 1 3`.

use std::time::{Duration, Instant};

use chrono::{DateTime, TimeDelta, Utc};
use serde_json::json;
use yardmaster::store::postgres::PgStore;
use yardmaster::store::{CredentialKey, Store};
use yardmaster_tests::postgres::Postgres;
use yardmaster_tests::{Engine, Simulator, binary, http_as, seed, shared_token_key};

const FIRST: [u8; 4] = [127, 40, 0, 1];
const ORG: &str = "bench";
/// From the approval to `launch_at`: every engine is up and idle when the clock starts.
const LEAD: TimeDelta = TimeDelta::seconds(5);

/// Creates the schedule through `creator`, approves it through `approver`, and returns
/// its id and launch time.
fn schedule(creator: &Engine, approver: &Engine) -> (String, DateTime<Utc>) {
    let launch_at = Utc::now() + LEAD;
    let alice = creator.token_for("alice", ORG, &["script:view", "script:create"], 3600);
    let created = http_as(
        creator.addr,
        "POST",
        "/scripts/scheduled",
        Some(&json!({
            "description": "engines benchmark",
            "script": ":log info \"bench\"",
            "launch_at": launch_at,
            "tags": ["fleet"],
        })),
        Some(&alice),
    )
    .expect("create");
    assert_eq!(created.status, 201, "{}", created.text);
    let id = created.body["id"].as_str().expect("id").to_owned();
    let bob = approver.token_for("bob", ORG, &["script:view", "script:authorize"], 3600);
    let approved = http_as(
        approver.addr,
        "POST",
        &format!("/scripts/scheduled/{id}/authorize"),
        None,
        Some(&bob),
    )
    .expect("approve");
    assert_eq!(approved.status, 200, "{}", approved.text);
    (id, launch_at)
}

/// Waits for every site of the schedule to finish; returns when, and how many completed.
fn finish(engine: &Engine, id: &str, routers: usize) -> (DateTime<Utc>, u64) {
    let token = engine.token_for("alice", ORG, &["script:view"], 3600);
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        let reply = http_as(
            engine.addr,
            "GET",
            &format!("/scripts/scheduled/{id}/progress"),
            None,
            Some(&token),
        );
        if let Ok(reply) = reply
            && reply.status == 200
        {
            let counts = &reply.body["counts"];
            let completed = counts["completed"].as_u64().unwrap_or(0);
            let failed = counts["failed"].as_u64().unwrap_or(0);
            if completed + failed >= routers as u64 {
                return (Utc::now(), completed);
            }
        }
        assert!(
            Instant::now() < deadline,
            "the launch did not finish in 10 minutes"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// One configuration: `engines` on PostgreSQL, or one on redb with `None`.
fn measure(
    fleet: &Simulator,
    routers: usize,
    engines: Option<usize>,
    runtime: &tokio::runtime::Runtime,
) -> String {
    let mut pg = None;
    let mut keys = None;
    let mut token_key = None;
    let (config, reuse) = match engines {
        None => {
            let dir = tempfile::tempdir().expect("dir");
            let store = Store::open(dir.path().join("data")).expect("store");
            runtime.block_on(seed(&store, fleet, ORG, routers));
            (String::new(), Some(dir))
        }
        Some(_) => {
            let server = Postgres::start();
            let dir = tempfile::tempdir().expect("key dir");
            let key = dir.path().join("credentials.key");
            runtime.block_on(async {
                let store = PgStore::connect(&server.url(), &CredentialKey::File(key.clone()))
                    .await
                    .expect("connect");
                seed(&store, fleet, ORG, routers).await;
                token_key = Some(shared_token_key(&store).await);
            });
            let config = format!(
                "[store]\nurl = \"{}\"\ncredential_key_file = \"{}\"\n",
                server.url(),
                key.display()
            );
            pg = Some(server);
            keys = Some(dir);
            (config, None)
        }
    };
    let count = engines.unwrap_or(1);
    let mut reuse = reuse;
    let running: Vec<Engine> = (0..count)
        .map(|_| Engine::start_bundled(&config, reuse.take()))
        .collect();
    if let Some(key) = &token_key {
        running.iter().for_each(|engine| engine.sign_with(key));
    }
    let (id, launch_at) = schedule(&running[0], &running[1 % count]);
    let (done_at, completed) = finish(&running[0], &id, routers);
    let took = (done_at - launch_at).num_milliseconds() as f64 / 1000.0;
    assert_eq!(completed, routers as u64, "every site completed");
    drop(running);
    drop(pg);
    drop(keys);
    let store = match engines {
        None => "redb, one engine".to_owned(),
        Some(1) => "PostgreSQL, one engine".to_owned(),
        Some(n) => format!("PostgreSQL, {n} engines"),
    };
    format!(
        "{store:<28} {routers} jobs launch-to-done {took:>7.2} s  {:>7.0} jobs/s",
        routers as f64 / took
    )
}

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let routers: usize = args.first().and_then(|a| a.parse().ok()).unwrap_or(10_000);
    let configs: Vec<Option<usize>> = if args.len() > 1 {
        args[1..]
            .iter()
            .map(|a| match a.as_str() {
                "redb" => None,
                n => Some(n.parse().expect("an engine count or redb")),
            })
            .collect()
    } else {
        vec![None, Some(1), Some(3)]
    };
    println!(
        "engines benchmark: {routers} simulated routers, {} (release binary {})",
        std::env::consts::ARCH,
        binary().display()
    );
    let fleet = Simulator::start(routers, FIRST, &[]);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    for config in configs {
        println!("{}", measure(&fleet, routers, config, &runtime));
    }
}
