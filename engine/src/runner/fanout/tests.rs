//! The fan-out against an in-process simulated fleet through the bundled RouterOS plugin:
//! what each router's own log and counters say is the proof that a script ran once,
//! or never.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use tokio::sync::watch;

use super::*;
use crate::config::Limits;
use crate::plugins::HostOptions;
use crate::simulate::{Fault, FaultKind, Fleet, FleetConfig, Profile};
use crate::store::{Secret, SiteInput, Store, TlsSettings};

const PASSWORD: &str = "pw";

struct Env {
    fleet: Fleet,
    runner: Runner,
    store: Arc<Store>,
    shutdown: Shutdown,
    _signal: watch::Sender<bool>,
    _fleet_stop: watch::Sender<bool>,
    _dir: tempfile::TempDir,
}

async fn env(bind: Ipv4Addr, routers: usize, faults: Vec<Fault>, settings: RunnerSettings) -> Env {
    let (fleet_stop, stopped) = watch::channel(false);
    let fleet = Fleet::start(
        FleetConfig {
            routers,
            bind,
            port: 0,
            tls_port: None,
            profile: Profile::V7_18,
            user: "admin".into(),
            password: PASSWORD.into(),
            faults,
            ssh_port: None,
            ssh_authorized_keys: Vec::new(),
        },
        async move {
            let mut stopped = stopped;
            let _ = stopped.wait_for(|s| *s).await;
        },
    )
    .await
    .expect("fleet");
    let dir = tempfile::tempdir().expect("tmp");
    let plugins = dir.path().join("plugins");
    crate::plugins::install_bundled(&plugins, &dir.path().join("data")).expect("bundled");
    let host = PluginHost::new(HostOptions {
        plugins_dir: plugins,
        cache_dir: Some(dir.path().join("cache")),
        defaults: Limits::default(),
        plugins: BTreeMap::new(),
        max_concurrent_calls: 64,
        organization_share: 1.0,
        max_memory_bytes: Limits::default().memory_bytes,
        trusted_certificates: Vec::new(),
        // The simulated routers listen on loopback.
        sites_allow: crate::plugins::SiteAllow::with_loopback(),
        ssh_algorithms: Default::default(),
    })
    .expect("host");
    host.reconcile().await;
    let store = Arc::new(Store::open(dir.path().join("data")).expect("store"));
    let runner = Runner::new(Arc::new(Backend::Redb(store.clone())), host, settings);
    let (signal, shutdown) = Shutdown::new();
    Env {
        fleet,
        runner,
        store,
        shutdown,
        _signal: signal,
        _fleet_stop: fleet_stop,
        _dir: dir,
    }
}

fn quick() -> RunnerSettings {
    RunnerSettings {
        job_timeout: Duration::from_secs(20),
        max_attempts: 3,
        backoff_initial: Duration::from_millis(20),
        backoff_max: Duration::from_millis(200),
        ..RunnerSettings::default()
    }
}

fn add_site(store: &Store, name: &str, addr: SocketAddr, password: &str) -> String {
    store
        .create_site(
            SiteInput {
                organization: "org1".into(),
                name: name.into(),
                address: addr.ip().to_string(),
                port: Some(addr.port()),
                transport: "routeros-api".into(),
                username: "admin".into(),
                password: Some(Secret::new(password)),
                tls: TlsSettings::default(),
                tags: Vec::new(),
                private_key: None,
                private_key_passphrase: None,
                ssh: None,
            },
            Utc::now(),
        )
        .expect("site")
        .id
}

/// One site per router (the first `wrong` with a wrong password) and one job per site.
fn fleet_jobs(env: &Env, script: &str, make_backup: bool, wrong: usize) -> Vec<String> {
    let inputs = env
        .fleet
        .routers()
        .enumerate()
        .map(|(i, r)| {
            let password = if i < wrong { "wrong" } else { PASSWORD };
            let site = add_site(&env.store, &format!("r{i}"), r.address(), password);
            job_input(&site, script, make_backup)
        })
        .collect();
    env.store
        .create_jobs(inputs, Utc::now())
        .expect("jobs")
        .into_iter()
        .map(|(j, _)| j.id)
        .collect()
}

fn job_input(site: &str, script: &str, make_backup: bool) -> JobInput {
    JobInput {
        organization: "org1".into(),
        site_id: site.into(),
        request_id: None,
        idempotency_key: None,
        description: "fan-out test".into(),
        script: script.into(),
        make_backup,
        express_execute: false,
        needs_acknowledgement: false,
        notify_url: None,
        rollback_after_secs: None,
        script_origin: None,
    }
}

fn runs_of(fleet: &Fleet, i: usize, marker: &str) -> usize {
    fleet
        .router(i)
        .log_messages()
        .iter()
        .filter(|m| m.as_str() == marker)
        .count()
}

fn job(store: &Store, id: &str) -> Job {
    store.get_job(id).expect("job")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_sites_complete_and_each_runs_the_script_once() {
    let env = env(Ipv4Addr::new(127, 40, 0, 1), 50, Vec::new(), quick()).await;
    let ids = fleet_jobs(&env, ":log info \"fanout-50\"; :put \"ok\"", false, 0);
    let report = env
        .runner
        .run_jobs(
            Selection::Jobs(ids.clone()),
            RunOptions::default(),
            env.shutdown.clone(),
        )
        .await
        .expect("run");
    assert_eq!(report.completed, 50, "{report:?}");
    for (i, id) in ids.iter().enumerate() {
        let j = job(&env.store, id);
        assert_eq!(j.status, JobStatus::Completed, "{j:?}");
        assert!(j.sent);
        assert_eq!(j.attempts, 1);
        assert_eq!(j.output.as_deref().map(str::trim), Some("ok"));
        assert_eq!(runs_of(&env.fleet, i, "fanout-50"), 1, "router {i}");
    }
    // Running the same jobs again does nothing: they are no longer pending.
    let again = env
        .runner
        .run_jobs(
            Selection::Jobs(ids),
            RunOptions::default(),
            env.shutdown.clone(),
        )
        .await
        .expect("again");
    assert_eq!(again.not_run, 50);
    assert!((0..50).all(|i| runs_of(&env.fleet, i, "fanout-50") == 1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_is_taken_and_kept_before_the_script() {
    let env = env(Ipv4Addr::new(127, 40, 1, 1), 2, Vec::new(), quick()).await;
    let ids = fleet_jobs(&env, ":log info \"fanout-backup\"", true, 0);
    let report = env
        .runner
        .run_jobs(
            Selection::Jobs(ids.clone()),
            RunOptions::default(),
            env.shutdown.clone(),
        )
        .await
        .expect("run");
    assert_eq!(report.completed, 2, "{report:?}");
    for id in &ids {
        assert!(job(&env.store, id).has_backup);
        let backup = env.store.get_backup(id).expect("read").expect("backup");
        assert!(String::from_utf8_lossy(&backup).contains("/system identity"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offline_sites_are_skipped_without_being_contacted() {
    let faults = vec![Fault {
        kind: FaultKind::Offline(Duration::from_secs(600)),
        fraction: 0.25,
    }];
    let env = env(Ipv4Addr::new(127, 40, 2, 1), 8, faults, quick()).await;
    let ids = fleet_jobs(&env, ":log info \"fanout-offline\"", true, 0);
    let options = RunOptions {
        abort_if_offline: true,
        ..RunOptions::default()
    };
    let report = env
        .runner
        .run_jobs(Selection::Jobs(ids.clone()), options, env.shutdown.clone())
        .await
        .expect("run");
    assert_eq!((report.completed, report.skipped), (6, 2), "{report:?}");
    for (i, id) in ids.iter().enumerate() {
        let j = job(&env.store, id);
        let router = env.fleet.router(i);
        if router.faults().offline.is_some() {
            assert_eq!(j.status, JobStatus::Failed);
            assert_eq!(j.error.as_ref().map(|e| e.code.as_str()), Some(SKIPPED));
            assert!(!j.sent, "nothing was sent to an offline site");
            assert!(!j.has_backup);
            assert_eq!(router.stats().connections, 0, "router {i} was contacted");
            assert_eq!(runs_of(&env.fleet, i, "fanout-offline"), 0);
        } else {
            assert_eq!(j.status, JobStatus::Completed);
            assert_eq!(runs_of(&env.fleet, i, "fanout-offline"), 1);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_script_fails_once_with_the_routers_text() {
    let env = env(Ipv4Addr::new(127, 40, 3, 1), 1, Vec::new(), quick()).await;
    let ids = fleet_jobs(
        &env,
        ":log info \"fanout-fail\"; :error \"failure: disk is full\"",
        false,
        0,
    );
    let report = env
        .runner
        .run_jobs(
            Selection::Jobs(ids.clone()),
            RunOptions::default(),
            env.shutdown.clone(),
        )
        .await
        .expect("run");
    assert_eq!(report.failed, 1, "{report:?}");
    let j = job(&env.store, &ids[0]);
    let error = j.error.expect("error");
    assert!(error.message.contains("disk is full"), "{error:?}");
    assert_eq!(j.attempts, 1, "a script error is never retried");
    assert!(j.sent);
    assert_eq!(runs_of(&env.fleet, 0, "fanout-fail"), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failures_before_sending_are_retried_and_others_are_not() {
    let settings = RunnerSettings {
        job_timeout: Duration::from_millis(1500),
        backoff_initial: Duration::from_millis(100),
        backoff_max: Duration::from_secs(2),
        ..quick()
    };
    let env = env(Ipv4Addr::new(127, 40, 4, 1), 1, Vec::new(), settings).await;
    // A closed port: refused, as an offline site is, until the job's timeout.
    let closed = std::net::TcpListener::bind("127.40.4.200:0").expect("bind");
    let closed_addr = closed.local_addr().expect("addr");
    drop(closed);
    let offline = add_site(&env.store, "closed", closed_addr, PASSWORD);
    let wrong = add_site(&env.store, "wrong", env.fleet.router(0).address(), "nope");
    let jobs: Vec<String> = env
        .store
        .create_jobs(
            vec![
                job_input(&offline, ":log info \"fanout-retry\"", false),
                job_input(&wrong, ":log info \"fanout-retry\"", false),
            ],
            Utc::now(),
        )
        .expect("jobs")
        .into_iter()
        .map(|(j, _)| j.id)
        .collect();
    let started = std::time::Instant::now();
    let report = env
        .runner
        .run_jobs(
            Selection::Jobs(jobs.clone()),
            RunOptions::default(),
            env.shutdown.clone(),
        )
        .await
        .expect("run");
    assert_eq!(report.failed, 2, "{report:?}");
    let refused = job(&env.store, &jobs[0]);
    let error = refused.error.as_ref().expect("error");
    assert_eq!(error.code, "refused", "{error:?}");
    // 100 + 200 + 400 ms of backoff fit in 1.5 s, the next 800 do not.
    assert_eq!(refused.attempts, 4, "{refused:?}");
    assert!(error.message.contains("after 4 attempts"), "{error:?}");
    assert!(started.elapsed() < Duration::from_millis(1500));

    let auth = job(&env.store, &jobs[1]);
    assert_eq!(auth.error.as_ref().map(|e| e.code.as_str()), Some("auth"));
    assert_eq!(
        auth.attempts, 3,
        "max_attempts bounds failures other than offline"
    );
    assert_eq!(env.fleet.router(0).stats().failed_logins, 3);
    assert_eq!(runs_of(&env.fleet, 0, "fanout-retry"), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failure_rate_past_the_threshold_halts_the_rest() {
    let settings = RunnerSettings {
        run_concurrency: 1,
        max_attempts: 1,
        ..quick()
    };
    let env = env(Ipv4Addr::new(127, 40, 5, 1), 12, Vec::new(), settings).await;
    let ids = fleet_jobs(&env, ":log info \"fanout-halt\"", false, 12);
    let options = RunOptions {
        halt_failure_rate: Some(0.5),
        halt_min_finished: 3,
        ..RunOptions::default()
    };
    let report = env
        .runner
        .run_jobs(Selection::Jobs(ids.clone()), options, env.shutdown.clone())
        .await
        .expect("run");
    assert_eq!((report.failed, report.halted), (3, 9), "{report:?}");
    for (i, id) in ids.iter().enumerate().skip(3) {
        let j = job(&env.store, id);
        let error = j.error.expect("halted");
        assert_eq!(error.code, HALTED);
        assert!(
            error.message.contains("3 of 3 finished jobs failed"),
            "{error:?}"
        );
        assert_eq!(j.attempts, 0);
        assert_eq!(env.fleet.router(i).stats().connections, 0);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_canary_batch_stops_the_rest() {
    let settings = RunnerSettings {
        max_attempts: 1,
        ..quick()
    };
    let env = env(Ipv4Addr::new(127, 40, 6, 1), 6, Vec::new(), settings).await;
    // One of the two canary sites fails.
    let ids = fleet_jobs(&env, ":log info \"fanout-canary\"", false, 1);
    let options = RunOptions {
        canary: 2,
        ..RunOptions::default()
    };
    let report = env
        .runner
        .run_jobs(Selection::Jobs(ids.clone()), options, env.shutdown.clone())
        .await
        .expect("run");
    assert_eq!(
        (report.failed, report.completed, report.halted),
        (1, 1, 4),
        "{report:?}"
    );
    assert_eq!(runs_of(&env.fleet, 1, "fanout-canary"), 1);
    for (i, id) in ids.iter().enumerate().skip(2) {
        let j = job(&env.store, id);
        let error = j.error.expect("halted");
        assert!(
            error.message.contains("canary batch failed on 1 of 2"),
            "{error:?}"
        );
        assert_eq!(env.fleet.router(i).stats().connections, 0);
    }

    // A canary batch that passes lets the rest run.
    let ids = fleet_jobs_again(&env, ":log info \"fanout-canary-ok\"");
    let report = env
        .runner
        .run_jobs(
            Selection::Jobs(ids),
            RunOptions {
                canary: 2,
                ..RunOptions::default()
            },
            env.shutdown.clone(),
        )
        .await
        .expect("run");
    assert_eq!(report.completed, 5, "{report:?}");
}

/// New jobs on the sites already created, skipping the one with the wrong password.
fn fleet_jobs_again(env: &Env, script: &str) -> Vec<String> {
    let sites = env
        .store
        .list_sites("org1", &Page::first(100))
        .expect("sites");
    let mut inputs: Vec<(String, JobInput)> = sites
        .iter()
        .filter(|s| s.name != "r0")
        .map(|s| (s.name.clone(), job_input(&s.id, script, false)))
        .collect();
    inputs.sort_by(|a, b| a.0.cmp(&b.0));
    env.store
        .create_jobs(inputs.into_iter().map(|(_, i)| i).collect(), Utc::now())
        .expect("jobs")
        .into_iter()
        .map(|(j, _)| j.id)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resume_pending_never_runs_a_sent_job_again() {
    let env = env(Ipv4Addr::new(127, 40, 7, 1), 3, Vec::new(), quick()).await;
    let ids = fleet_jobs(&env, ":log info \"fanout-resume\"", false, 0);
    let now = Utc::now();
    // As a crash leaves them: sent, started but not sent, and pending.
    env.store
        .transition_each(
            vec![
                (
                    ids[0].clone(),
                    vec![
                        JobTransition::Load,
                        JobTransition::Start,
                        JobTransition::MarkSent,
                    ],
                ),
                (
                    ids[1].clone(),
                    vec![JobTransition::Load, JobTransition::Start],
                ),
            ],
            now,
        )
        .expect("crash state");
    let recovery = env.store.recover(now).expect("recover");
    assert_eq!(recovery.interrupted, vec![ids[0].clone()]);
    let report = env
        .runner
        .resume_pending(env.shutdown.clone())
        .await
        .expect("resume");
    assert_eq!(report.completed, 2, "{report:?}");
    assert_eq!(runs_of(&env.fleet, 0, "fanout-resume"), 0);
    assert_eq!(runs_of(&env.fleet, 1, "fanout-resume"), 1);
    assert_eq!(runs_of(&env.fleet, 2, "fanout-resume"), 1);
    let interrupted = job(&env.store, &ids[0]);
    assert_eq!(
        interrupted.error.map(|e| e.code),
        Some(crate::store::INTERRUPTED.to_owned())
    );
    // A second start finds nothing to do.
    let again = env
        .runner
        .resume_pending(env.shutdown.clone())
        .await
        .expect("resume");
    assert_eq!(again, RunReport::default());
    assert_eq!(env.fleet.router(0).stats().connections, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idempotent_express_job_runs_once() {
    let env = env(Ipv4Addr::new(127, 40, 8, 1), 1, Vec::new(), quick()).await;
    let site = add_site(&env.store, "r0", env.fleet.router(0).address(), PASSWORD);
    let mut input = job_input(&site, ":log info \"fanout-express\"", false);
    input.express_execute = true;
    input.idempotency_key = Some("key-1".into());
    let (first, created) = env
        .runner
        .submit_async(input.clone(), "tester", env.shutdown.clone())
        .await
        .expect("submit");
    assert!(created);
    env.runner.drain().await;
    let (again, created) = env
        .runner
        .submit_async(input, "tester", env.shutdown.clone())
        .await
        .expect("again");
    assert!(!created);
    assert_eq!(again.id, first.id);
    env.runner.drain().await;
    assert_eq!(job(&env.store, &first.id).status, JobStatus::Completed);
    assert_eq!(runs_of(&env.fleet, 0, "fanout-express"), 1);

    // A queued (not express) job waits for `serve`.
    let queued = job_input(&site, ":log info \"fanout-queued\"", false);
    let (queued, _) = env
        .runner
        .submit_async(queued, "tester", env.shutdown.clone())
        .await
        .expect("queued");
    assert_eq!(job(&env.store, &queued.id).status, JobStatus::Pending);
    let (signal, shutdown) = Shutdown::new();
    let serve = tokio::spawn({
        let runner = env.runner.clone();
        async move { runner.serve(shutdown).await }
    });
    for _ in 0..200 {
        if job(&env.store, &queued.id).status == JobStatus::Completed {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let _ = signal.send(true);
    serve.await.expect("serve ends at shutdown");
    assert_eq!(job(&env.store, &queued.id).status, JobStatus::Completed);
    assert_eq!(runs_of(&env.fleet, 0, "fanout-queued"), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_leaves_unstarted_jobs_pending() {
    let settings = RunnerSettings {
        run_concurrency: 1,
        ..quick()
    };
    let faults = vec![Fault::all(FaultKind::Delay(Duration::from_millis(300)))];
    let env = env(Ipv4Addr::new(127, 40, 9, 1), 4, faults, settings).await;
    let ids = fleet_jobs(&env, ":log info \"fanout-stop\"", false, 0);
    let (signal, shutdown) = Shutdown::new();
    let run = tokio::spawn({
        let runner = env.runner.clone();
        let ids = ids.clone();
        async move {
            runner
                .run_jobs(Selection::Jobs(ids), RunOptions::default(), shutdown)
                .await
        }
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    let _ = signal.send(true);
    let report = run.await.expect("join").expect("run");
    // The job in flight finished; the others were never started.
    assert_eq!(
        (report.completed, report.left_pending),
        (1, 3),
        "{report:?}"
    );
    let statuses: Vec<JobStatus> = ids.iter().map(|id| job(&env.store, id).status).collect();
    assert_eq!(
        statuses
            .iter()
            .filter(|s| **s == JobStatus::Pending)
            .count(),
        3,
        "{statuses:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_guarded_job_on_a_transport_without_rollback_fails_once_and_sends_nothing() {
    let env = env(Ipv4Addr::new(127, 40, 30, 1), 1, Vec::new(), quick()).await;
    let router = env.fleet.router(0);
    let site = env
        .store
        .create_site(
            SiteInput {
                organization: "org1".into(),
                name: "over-ssh".into(),
                address: router.address().ip().to_string(),
                port: Some(router.address().port()),
                transport: "ssh".into(),
                username: "admin".into(),
                password: Some(Secret::new(PASSWORD)),
                tls: TlsSettings::default(),
                tags: Vec::new(),
                private_key: None,
                private_key_passphrase: None,
                ssh: None,
            },
            Utc::now(),
        )
        .expect("site")
        .id;
    let mut input = job_input(&site, ":log info \"guarded-over-ssh\"", false);
    input.rollback_after_secs = Some(5);
    let (created, _) = env.store.create_job(input, Utc::now()).expect("job");
    let report = env
        .runner
        .run_jobs(
            Selection::Jobs(vec![created.id.clone()]),
            RunOptions::default(),
            env.shutdown.clone(),
        )
        .await
        .expect("run");
    assert_eq!(report.failed, 1, "{report:?}");
    let j = job(&env.store, &created.id);
    assert_eq!(
        j.error.as_ref().map(|e| e.code.as_str()),
        Some(ROLLBACK_UNSUPPORTED),
        "{j:?}"
    );
    assert_eq!((j.sent, j.attempts), (false, 1), "{j:?}");
    assert_eq!(j.rollback, None, "nothing was planned on the router");
    assert_eq!(runs_of(&env.fleet, 0, "guarded-over-ssh"), 0);
}

/// A queued job on a router that never answers holds back nobody queued after it: the
/// queue reader starts each newly queued job beside the ones still at work.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_router_holds_back_no_job_queued_after_it() {
    let settings = RunnerSettings {
        job_timeout: Duration::from_secs(8),
        ..quick()
    };
    let env = env(Ipv4Addr::new(127, 40, 12, 1), 1, Vec::new(), settings).await;
    // Accepts connections (the kernel's backlog does) and never answers.
    let silent = std::net::TcpListener::bind("127.40.12.200:0").expect("bind");
    let silent_site = add_site(
        &env.store,
        "silent",
        silent.local_addr().expect("addr"),
        PASSWORD,
    );
    let site = add_site(&env.store, "r0", env.fleet.router(0).address(), PASSWORD);
    let (signal, shutdown) = Shutdown::new();
    let serve = tokio::spawn({
        let runner = env.runner.clone();
        async move { runner.serve(shutdown).await }
    });
    let (stuck, _) = env
        .runner
        .submit_async(
            job_input(&silent_site, ":log info \"fanout-silent\"", false),
            "tester",
            env.shutdown.clone(),
        )
        .await
        .expect("queued");
    while job(&env.store, &stuck.id).status == JobStatus::Pending {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let (next, _) = env
        .runner
        .submit_async(
            job_input(&site, ":log info \"fanout-after-silent\"", false),
            "tester",
            env.shutdown.clone(),
        )
        .await
        .expect("queued");
    while !matches!(
        job(&env.store, &next.id).status,
        JobStatus::Completed | JobStatus::Failed
    ) {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(job(&env.store, &next.id).status, JobStatus::Completed);
    assert_eq!(
        job(&env.store, &stuck.id).status,
        JobStatus::Running,
        "the silent router's job is still waiting"
    );
    let _ = signal.send(true);
    serve.await.expect("serve ends at shutdown");
    assert_eq!(runs_of(&env.fleet, 0, "fanout-after-silent"), 1);
    drop(silent);
}
