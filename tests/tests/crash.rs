//! Crash safety of a launch: a 2,000-router schedule, the engine killed with SIGKILL at
//! arbitrary moments several times and restarted. The routers' own logs must show the
//! script at most once each, exactly once where the store says it completed, and the
//! store must account for every job.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{TimeDelta, Utc};
use yardmaster::approval::{self, OrgPolicy, Principal};
use yardmaster::store::{JobStatus, ScheduleInput, Store};
use yardmaster_tests::{Engine, EngineOptions, Simulator, eventually, logged, seed};

const ROUTERS: usize = 2_000;
const MESSAGE: &str = "crash-test-ran";
const FIRST: [u8; 4] = [127, 8, 0, 1];

/// A small deterministic spread of kill moments, different on every run.
fn kill_after(round: u32) -> Duration {
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(7);
    let spread = (seed.wrapping_mul(2_654_435_761).wrapping_add(round * 97) % 2_500) as u64;
    Duration::from_millis(300 + spread)
}

#[test]
fn sigkill_during_a_launch_never_runs_a_script_twice() {
    let simulator = Simulator::start(ROUTERS, FIRST, &[]);

    // Seed the engine's state as an admin would have: sites, a schedule, a second
    // person's approval.
    let dir = tempfile::tempdir().expect("tmp");
    let sites: BTreeMap<String, usize>;
    let schedule_id = {
        let store = Store::open(dir.path().join("data")).expect("store");
        let now = Utc::now();
        sites = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime")
            .block_on(seed(&store, &simulator, "acme", ROUTERS));
        let schedule = store
            .create_schedule(
                ScheduleInput {
                    organization: "acme".into(),
                    description: "crash test".into(),
                    script: format!(":log info \"{MESSAGE}\""),
                    tags: vec!["fleet".into()],
                    launch_at: Some(now + TimeDelta::seconds(3)),
                    created_by: "alice".into(),
                    ..ScheduleInput::default()
                },
                now,
            )
            .expect("schedule");
        let bob = Principal {
            user_id: "bob".into(),
            organization: "acme".into(),
            scopes: vec!["script:authorize".into()],
        };
        approval::approve(&store, &schedule.id, &bob, None, OrgPolicy::default(), now)
            .expect("approved");
        schedule.id
    };

    // Kill the engine at arbitrary moments around and during the launch.
    let mut dir = Some(dir);
    for round in 0..4 {
        let engine = Engine::start(EngineOptions {
            bundled: true,
            reuse: dir.take(),
            ..EngineOptions::default()
        });
        std::thread::sleep(
            if round == 0 {
                Duration::from_secs(3)
            } else {
                Duration::ZERO
            } + kill_after(round),
        );
        dir = Some(engine.kill());
    }

    // Let it finish, then count.
    let mut finished = false;
    for _ in 0..6 {
        let engine = Engine::start(EngineOptions {
            bundled: true,
            reuse: dir.take(),
            ..EngineOptions::default()
        });
        std::thread::sleep(Duration::from_secs(10));
        let folder = engine.kill();
        let store = Store::open(folder.path().join("data")).expect("store");
        store.recover(Utc::now()).expect("recover");
        let jobs = store.run_jobs(&schedule_id, 0).expect("jobs");
        drop(store);
        dir = Some(folder);
        if jobs.len() == ROUTERS
            && jobs
                .iter()
                .all(|j| matches!(j.status, JobStatus::Completed | JobStatus::Failed))
        {
            finished = true;
            break;
        }
    }
    assert!(finished, "the launch never finished");

    let folder = dir.take().expect("folder");
    let store = Store::open(folder.path().join("data")).expect("store");
    let jobs = store.run_jobs(&schedule_id, 0).expect("jobs");
    assert_eq!(jobs.len(), ROUTERS, "one job per site, no more");
    let mut by_site: BTreeMap<String, JobStatus> = BTreeMap::new();
    for job in &jobs {
        assert!(
            by_site.insert(job.site_id.clone(), job.status).is_none(),
            "two jobs for {}",
            job.site_id
        );
    }
    let (mut completed, mut interrupted) = (0, 0);
    for job in &jobs {
        let i = sites[&job.site_id];
        let runs = logged(simulator.addr(i), MESSAGE);
        assert!(runs <= 1, "router {i} ran the script {runs} times");
        match job.status {
            JobStatus::Completed => {
                completed += 1;
                assert_eq!(
                    runs, 1,
                    "router {i}: completed in the store but not on the router"
                );
            }
            JobStatus::Failed => {
                let code = job
                    .error
                    .as_ref()
                    .map(|e| e.code.as_str())
                    .unwrap_or_default();
                assert_eq!(code, "interrupted", "router {i}: {:?}", job.error);
                interrupted += 1;
            }
            other => panic!("router {i}: job left {other:?}"),
        }
    }
    eprintln!(
        "crash test: {completed} completed, {interrupted} interrupted (run at most once), every router at most once"
    );
    assert!(completed > 0);
    drop(simulator);
}

/// Job submissions are committed in groups: a SIGKILL in the middle of a burst from many
/// clients must lose no job whose submission was answered. Every key a client saw
/// accepted names a job after the restart.
#[test]
fn sigkill_during_a_burst_of_submissions_loses_no_acknowledged_job() {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::{Arc, Mutex};

    const CLIENTS: usize = 16;
    let engine = Engine::start(EngineOptions {
        bundled: true,
        ..EngineOptions::default()
    });
    // Nothing listens there: the jobs wait and retry, which is all this test needs.
    let site = engine.add_site(&serde_json::json!({
        "name": "unreachable",
        "address": "127.8.250.1",
        "port": 9,
        "username": "admin",
        "password": "pw",
    }));
    let token = engine.token(&["script:run"]);
    let addr = engine.addr;
    let stop = Arc::new(AtomicBool::new(false));
    let acknowledged = Arc::new(Mutex::new(Vec::<String>::new()));
    let clients: Vec<_> = (0..CLIENTS)
        .map(|client| {
            let (stop, acknowledged) = (stop.clone(), acknowledged.clone());
            let (token, path) = (token.clone(), format!("/api/asynchronous/{site}"));
            std::thread::spawn(move || {
                for n in 0.. {
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                    let key = format!("burst-{client}-{n}");
                    let body = serde_json::json!({
                        "description": "burst",
                        "script": ":log info burst",
                        "express_execute": false,
                        "idempotency_key": key,
                    });
                    match yardmaster_tests::http_as(addr, "POST", &path, Some(&body), Some(&token))
                    {
                        Ok(reply) if reply.status == 202 => {
                            acknowledged.lock().expect("keys").push(key);
                        }
                        Ok(reply) => {
                            panic!("submission {key} answered {}: {}", reply.status, reply.text)
                        }
                        // The engine is gone: this answer never came, so nothing was promised.
                        Err(_) => break,
                    }
                }
            })
        })
        .collect();
    eventually("a few hundred acknowledged submissions", || {
        (acknowledged.lock().expect("keys").len() >= 300).then_some(())
    });
    std::thread::sleep(kill_after(1) / 4);
    let folder = engine.kill();
    stop.store(true, Ordering::Relaxed);
    for client in clients {
        client.join().expect("client");
    }

    let keys = acknowledged.lock().expect("keys").clone();
    let store = Store::open(folder.path().join("data")).expect("store");
    let missing: Vec<&String> = keys
        .iter()
        .filter(|key| {
            store
                .job_by_idempotency_key(yardmaster_tests::TEST_ORG, key)
                .expect("lookup")
                .is_none()
        })
        .collect();
    assert!(
        missing.is_empty(),
        "{} of {} acknowledged submissions were lost, e.g. {:?}",
        missing.len(),
        keys.len(),
        &missing[..missing.len().min(5)]
    );
}
