//! Three engines on one PostgreSQL database, end to end: a schedule created through the
//! first engine's API and approved through the second's is launched on 2,000 simulated
//! routers. Mid-launch, the engine holding the scheduler lease and the one holding the
//! most claimed jobs of the others are killed with SIGKILL; the survivor finishes. Then
//! the killed engines come back, a second schedule is launched, and the database is
//! restarted mid-launch: the engines reconnect and finish. Each time, the routers' own
//! logs must show the script at most once each, exactly once where the store says
//! completed, and the store must account for every job.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use chrono::{TimeDelta, Utc};
use serde_json::json;
use yardmaster::auth::KEY_FILE;
use yardmaster::notify::SIGNING_KEY_FILE;
use yardmaster::store::postgres::{PgStore, SCHEDULER_LEASE};
use yardmaster::store::{CredentialKey, JobStatus};
use yardmaster_tests::postgres::Postgres;
use yardmaster_tests::{Engine, PATIENCE, Simulator, binary, logged, seed, shared_token_key};

const ROUTERS: usize = 2_000;
const FIRST: [u8; 4] = [127, 30, 0, 1];
const ORG: &str = "acme";
/// How late every router answers: long enough for a launch to be caught under way.
const REPLY_DELAY_MS: u32 = 150;

/// The three engines' configuration: the shared database and credential key, a small
/// pool each, and few jobs at once each, so a launch lasts long enough to be interrupted.
fn config(pg: &Postgres, key_file: &std::path::Path) -> String {
    format!(
        "[store]\nurl = \"{}\"\ncredential_key_file = \"{}\"\nmax_connections = 8\n\n\
         [runner]\nmax_jobs = 120\n",
        pg.url(),
        key_file.display()
    )
}

/// The name an engine goes by in claims and leases, as it keeps it in its data dir.
fn name_of(engine: &Engine) -> String {
    std::fs::read_to_string(engine.data_dir().join("engine-name"))
        .expect("engine name")
        .trim()
        .to_owned()
}

/// Creates a schedule through `creator`'s API and approves it through `approver`'s, to
/// launch a few seconds from now on every site of the fleet.
fn schedule_through(creator: &Engine, approver: &Engine, message: &str) -> String {
    let alice = creator.token_for("alice", ORG, &["script:view", "script:create"], 3600);
    let created = yardmaster_tests::http_as(
        creator.addr,
        "POST",
        "/scripts/scheduled",
        Some(&json!({
            "description": format!("three engines: {message}"),
            "script": format!(":log info \"{message}\""),
            "launch_at": Utc::now() + TimeDelta::seconds(6),
            "tags": ["fleet"],
        })),
        Some(&alice),
    )
    .expect("POST /scripts/scheduled");
    assert_eq!(created.status, 201, "{}", created.text);
    assert_eq!(created.body["status"], "unauthorized");
    let id = created.body["id"].as_str().expect("id").to_owned();
    let bob = approver.token_for("bob", ORG, &["script:view", "script:authorize"], 3600);
    let approved = yardmaster_tests::http_as(
        approver.addr,
        "POST",
        &format!("/scripts/scheduled/{id}/authorize"),
        None,
        Some(&bob),
    )
    .expect("POST authorize");
    assert_eq!(approved.status, 200, "{}", approved.text);
    assert_eq!(approved.body["status"], "scheduled");
    id
}

/// Jobs of the run by status, and claimed jobs by engine.
async fn census(
    store: &PgStore,
    client: &tokio_postgres::Client,
    schedule: &str,
) -> (BTreeMap<&'static str, usize>, BTreeMap<String, i64>) {
    let mut statuses = BTreeMap::new();
    // Read errors (the database restarting) count as nothing seen yet.
    for job in store.run_jobs(schedule, 0).await.unwrap_or_default() {
        *statuses.entry(job.status.as_str()).or_insert(0) += 1;
    }
    let mut claims = BTreeMap::new();
    let rows = client
        .query(
            "SELECT owner, count(*) FROM jobs WHERE owner IS NOT NULL GROUP BY owner",
            &[],
        )
        .await
        .unwrap_or_default();
    for row in rows {
        claims.insert(row.get::<_, String>(0), row.get::<_, i64>(1));
    }
    (statuses, claims)
}

fn finished(statuses: &BTreeMap<&'static str, usize>) -> usize {
    statuses
        .iter()
        .filter(|(s, _)| matches!(**s, "completed" | "failed"))
        .map(|(_, n)| n)
        .sum()
}

/// Waits until every job of the run has ended, then checks each against its router's
/// log: at most once everywhere, exactly once where completed, and a failure only as
/// `interrupted` (the script may have reached the router before its engine stopped).
async fn settle_and_check(
    fleet: &Simulator,
    store: &PgStore,
    schedule: &str,
    message: &str,
    sites: &BTreeMap<String, usize>,
) {
    let start = Instant::now();
    let jobs = loop {
        let jobs = store.run_jobs(schedule, 0).await.unwrap_or_default();
        if jobs.len() == ROUTERS
            && jobs
                .iter()
                .all(|j| matches!(j.status, JobStatus::Completed | JobStatus::Failed))
        {
            break jobs;
        }
        assert!(
            start.elapsed() < PATIENCE * 2,
            "the run never finished: {} jobs, {} ended",
            jobs.len(),
            jobs.iter()
                .filter(|j| matches!(j.status, JobStatus::Completed | JobStatus::Failed))
                .count()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    let mut seen = BTreeMap::new();
    for job in &jobs {
        assert!(
            seen.insert(job.site_id.clone(), ()).is_none(),
            "two jobs for site {}",
            job.site_id
        );
    }
    // Asked of the routers many at a time: each answers as late as it runs scripts.
    let counts: BTreeMap<usize, usize> = std::thread::scope(|scope| {
        let chunks: Vec<Vec<usize>> = jobs
            .chunks(jobs.len().div_ceil(64))
            .map(|chunk| chunk.iter().map(|j| sites[&j.site_id]).collect())
            .collect();
        let askers: Vec<_> = chunks
            .into_iter()
            .map(|routers| {
                scope.spawn(move || {
                    routers
                        .into_iter()
                        .map(|i| (i, logged(fleet.addr(i), message)))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        askers
            .into_iter()
            .flat_map(|asker| asker.join().expect("router log reader"))
            .collect()
    });
    let (mut completed, mut interrupted) = (0, 0);
    for job in &jobs {
        let i = sites[&job.site_id];
        let runs = counts[&i];
        assert!(runs <= 1, "router {i} ran the script {runs} times");
        match job.status {
            JobStatus::Completed => {
                completed += 1;
                assert_eq!(
                    runs, 1,
                    "router {i}: completed in the store, not on the router"
                );
            }
            JobStatus::Failed => {
                let code = job.error.as_ref().map(|e| e.code.as_str()).unwrap_or("");
                assert_eq!(code, "interrupted", "router {i}: {:?}", job.error);
                interrupted += 1;
            }
            other => panic!("router {i}: job left {other:?}"),
        }
    }
    eprintln!(
        "{message}: {completed} completed, {interrupted} interrupted (ran at most once), \
         every router at most once"
    );
    assert!(completed > 0);
}

#[test]
fn three_engines_share_a_launch_and_survive_kills_and_a_database_restart() {
    let mut pg = Postgres::start();
    let keys = tempfile::tempdir().expect("key folder");
    let key_file = keys.path().join("credentials.key");
    let delay = format!("delay={REPLY_DELAY_MS}");
    let simulator = Simulator::start(ROUTERS, FIRST, &["--fault", &delay]);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");

    // The fleet and the people, written as an admin's import would.
    let (store, client, sites) = runtime.block_on(async {
        let store = PgStore::connect(&pg.url(), &CredentialKey::File(key_file.clone()))
            .await
            .expect("connect");
        let sites = seed(&store, &simulator, ORG, ROUTERS).await;
        let (client, connection) = tokio_postgres::connect(&pg.url(), tokio_postgres::NoTls)
            .await
            .expect("connect");
        tokio::spawn(connection);
        (store, client, sites)
    });

    let config = config(&pg, &key_file);
    let mut engines: Vec<Option<Engine>> = (0..3)
        .map(|_| Some(Engine::start_bundled(&config, None)))
        .collect();
    let names: Vec<String> = engines
        .iter()
        .map(|e| name_of(e.as_ref().expect("engine")))
        .collect();
    // Every engine signs and checks tokens with the key kept sealed in the database, and
    // none made one of its own.
    let token_key = runtime.block_on(shared_token_key(&store));
    for engine in engines.iter().flatten() {
        assert!(!engine.data_dir().join(KEY_FILE).exists());
        assert!(!engine.data_dir().join(SIGNING_KEY_FILE).exists());
        engine.sign_with(&token_key);
    }
    // Every engine signs deliveries to an organization's notify URLs with one secret.
    let secrets: Vec<serde_json::Value> = engines
        .iter()
        .flatten()
        .map(|engine| {
            let answer = engine.get("/notifications/signing-secret").expect("secret");
            assert_eq!(answer.status, 200, "{}", answer.body);
            answer.body["secret"].clone()
        })
        .collect();
    assert!(secrets[0].is_string(), "{secrets:?}");
    assert!(secrets.iter().all(|s| *s == secrets[0]), "{secrets:?}");
    // A token `yardmaster token create` makes with the third engine's configuration is
    // taken by the first.
    let made = std::process::Command::new(binary())
        .args(["token", "create", "--sub", "carol", "--org", ORG])
        .args(["--scopes", "script:view", "--config"])
        .arg(
            engines[2]
                .as_ref()
                .expect("engine")
                .dir
                .path()
                .join("yardmaster.toml"),
        )
        .arg("--data-dir")
        .arg(engines[2].as_ref().expect("engine").data_dir())
        .env_remove("YARDMASTER_CONFIG")
        .env_remove("YARDMASTER_DATA_DIR")
        .output()
        .expect("yardmaster token create");
    assert!(
        made.status.success(),
        "{}",
        String::from_utf8_lossy(&made.stderr)
    );
    let carol = String::from_utf8(made.stdout).expect("utf-8");
    let listed = engines[0]
        .as_ref()
        .expect("engine")
        .get_as("/scripts/scheduled", Some(carol.trim()))
        .expect("list");
    assert_eq!(listed.status, 200, "{}", listed.body);

    // Created through the first engine, approved through the second.
    let first = schedule_through(
        engines[0].as_ref().expect("engine"),
        engines[1].as_ref().expect("engine"),
        "three-engines-ran",
    );

    // Mid-launch: some sites done, others claimed and at work.
    let (holder, busiest) = runtime.block_on(async {
        let start = Instant::now();
        loop {
            let (statuses, claims) = census(&store, &client, &first).await;
            let done = finished(&statuses);
            let holder = store.lease_holder(SCHEDULER_LEASE).await.ok().flatten();
            if (100..ROUTERS - 200).contains(&done)
                && let Some((holder, _)) = holder
            {
                let busiest = claims
                    .iter()
                    .filter(|(engine, _)| **engine != holder)
                    .max_by_key(|(_, n)| **n)
                    .map(|(engine, _)| engine.clone());
                if let Some(busiest) = busiest {
                    eprintln!("mid-launch: {statuses:?}; claims {claims:?}; lease holder {holder}");
                    break (holder, busiest);
                }
            }
            assert!(
                start.elapsed() < PATIENCE,
                "the launch was never caught under way: {statuses:?}, {claims:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    });
    let mut killed = Vec::new();
    for victim in [&holder, &busiest] {
        let i = names
            .iter()
            .position(|n| n == victim)
            .expect("a known engine");
        killed.push((i, engines[i].take().expect("running").kill()));
    }
    let survivor = engines
        .iter()
        .position(Option::is_some)
        .expect("one engine left");
    eprintln!(
        "killed {holder} and {busiest}; {} finishes",
        names[survivor]
    );

    // The survivor takes the lease over, settles the killed engines' claims once they
    // lapse, and runs what is left.
    runtime.block_on(settle_and_check(
        &simulator,
        &store,
        &first,
        "three-engines-ran",
        &sites,
    ));
    let lease = runtime
        .block_on(store.lease_holder(SCHEDULER_LEASE))
        .expect("lease");
    assert_eq!(
        lease.map(|(engine, _)| engine),
        Some(names[survivor].clone()),
        "the survivor holds the scheduler lease"
    );

    // The killed engines come back under their names; a second launch, and the database
    // restarted while it is under way.
    for (i, dir) in killed {
        let engine = Engine::start_bundled(&config, Some(dir));
        engine.sign_with(&token_key);
        engines[i] = Some(engine);
    }
    let second = schedule_through(
        engines[survivor].as_ref().expect("engine"),
        engines[(survivor + 1) % 3].as_ref().expect("engine"),
        "restart-ran",
    );
    runtime.block_on(async {
        let start = Instant::now();
        loop {
            let (statuses, _) = census(&store, &client, &second).await;
            let done = finished(&statuses);
            if (100..ROUTERS - 200).contains(&done) {
                eprintln!("restarting PostgreSQL mid-launch: {statuses:?}");
                break;
            }
            assert!(
                start.elapsed() < PATIENCE,
                "the second launch was never caught under way: {statuses:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    });
    drop(client);
    pg.restart();
    runtime.block_on(settle_and_check(
        &simulator,
        &store,
        &second,
        "restart-ran",
        &sites,
    ));
    for engine in engines.iter().flatten() {
        let health = engine.get_as("/healthz", None).expect("healthz");
        assert_eq!(
            health.status,
            200,
            "an engine did not survive:\n{}",
            engine.log()
        );
    }
    drop(engines);
    drop(simulator);
}
