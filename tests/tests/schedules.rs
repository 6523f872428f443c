//! Scheduled scripts end to end in one process: simulated routers, the durable store,
//! the approval workflow, the launcher and the runner with the real RouterOS plugin.
//! Each router's own log proves how often the script ran.

use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::Duration;

use chrono::{TimeDelta, Utc};
use yardmaster::approval::{self, OrgPolicy, Principal};
use yardmaster::runner::fanout::{Runner, RunnerSettings};
use yardmaster::scheduler::launcher::{Launcher, Outcome};
use yardmaster::server::Shutdown;
use yardmaster::simulate::Profile;
use yardmaster::store::{
    Backend, JobInput, JobStatus, ScheduleInput, ScheduleStatus, ScheduledScript, Secret,
    SiteInput, Store, User,
};
use yardmaster_tests::{InProcessFleet, bundled_host, fleet};

struct World {
    fleet: InProcessFleet,
    store: Arc<Store>,
    launcher: Launcher,
    runner: Runner,
    sites: Vec<String>,
    shutdown: Shutdown,
    _stop: tokio::sync::watch::Sender<bool>,
    _dir: tempfile::TempDir,
}

async fn world(bind: Ipv4Addr, routers: usize) -> World {
    let fleet = fleet(bind, routers, Profile::V7_18, "pw").await;
    let dir = tempfile::tempdir().expect("tmp");
    let host = bundled_host(dir.path(), 64).await;
    let store = Arc::new(Store::open(dir.path().join("data")).expect("store"));
    let now = Utc::now();
    for (id, name) in [("alice", "Alice"), ("bob", "Bob")] {
        store
            .put_user(&User {
                id: id.into(),
                name: name.into(),
                email: format!("{id}@example.com"),
                organization: "acme".into(),
                created_at: now,
            })
            .expect("user");
    }
    let mut sites = Vec::new();
    for (i, addr) in fleet.addresses().iter().enumerate() {
        let site = store
            .create_site(router_site(*addr, i, &["edge"]), now)
            .expect("site");
        sites.push(site.id);
    }
    let runner = Runner::new(
        Arc::new(Backend::Redb(store.clone())),
        host,
        RunnerSettings {
            job_timeout: Duration::from_secs(30),
            ..RunnerSettings::default()
        },
    );
    let launcher = Launcher::new(
        runner.store().clone(),
        runner.clone(),
        Duration::from_millis(200),
    );
    let (stop, shutdown) = Shutdown::new();
    World {
        fleet,
        store,
        launcher,
        runner,
        sites,
        shutdown,
        _stop: stop,
        _dir: dir,
    }
}

fn person(id: &str, scopes: &[&str]) -> Principal {
    Principal {
        user_id: id.into(),
        organization: "acme".into(),
        scopes: scopes.iter().map(|s| s.to_string()).collect(),
    }
}

/// A schedule created by alice and authorized by bob, launching in two seconds.
fn authorized(w: &World, description: &str, script: &str, input: ScheduleInput) -> ScheduledScript {
    let now = Utc::now();
    let schedule = w
        .store
        .create_schedule(
            ScheduleInput {
                organization: "acme".into(),
                description: description.into(),
                script: script.into(),
                launch_at: Some(now + TimeDelta::seconds(2)),
                created_by: "alice".into(),
                ..input
            },
            now,
        )
        .expect("schedule");
    approval::approve(
        &w.store,
        &schedule.id,
        &person("bob", &["script:authorize"]),
        None,
        OrgPolicy::default(),
        now,
    )
    .expect("approved by bob");
    w.store.get_schedule(&schedule.id).expect("schedule")
}

fn runs_of(world: &World, message: &str) -> Vec<usize> {
    world
        .fleet
        .routers()
        .map(|r| r.log_messages().iter().filter(|m| *m == message).count())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn authorized_by_a_second_user_then_launched_once_on_every_site() {
    let w = world(Ipv4Addr::new(127, 6, 0, 1), 5).await;
    let now = Utc::now();
    let schedule = w
        .store
        .create_schedule(
            ScheduleInput {
                organization: "acme".into(),
                description: "rotate the log".into(),
                script: ":log info \"rotated\"".into(),
                tags: vec!["edge".into()],
                excluded_sites: vec![w.sites[4].clone()],
                launch_at: Some(now + TimeDelta::seconds(2)),
                created_by: "alice".into(),
                ..ScheduleInput::default()
            },
            now,
        )
        .expect("schedule");
    assert_eq!(schedule.status, ScheduleStatus::Unauthorized);

    // Unauthorized: the launcher refuses.
    let outcome = w
        .launcher
        .launch(
            schedule.clone(),
            now + TimeDelta::seconds(3),
            w.shutdown.clone(),
        )
        .await
        .expect("launch");
    assert!(matches!(outcome, Outcome::Refused(_)), "{outcome:?}");

    let creator = person("alice", &["script:create", "script:authorize"]);
    let err = approval::approve(
        &w.store,
        &schedule.id,
        &creator,
        None,
        OrgPolicy::default(),
        now,
    )
    .expect_err("four eyes");
    assert!(
        err.to_string().to_lowercase().contains("creator") || err.http_status() == 403,
        "{err}"
    );
    let approved = approval::approve(
        &w.store,
        &schedule.id,
        &person("bob", &["script:authorize"]),
        None,
        OrgPolicy::default(),
        now,
    )
    .expect("approved by bob");
    assert_eq!(approved.schedule.status, ScheduleStatus::Scheduled);

    let schedule = w.store.get_schedule(&schedule.id).expect("schedule");
    let outcome = w
        .launcher
        .launch(
            schedule.clone(),
            now + TimeDelta::seconds(3),
            w.shutdown.clone(),
        )
        .await
        .expect("launch");
    assert_eq!(
        outcome,
        Outcome::Launched {
            occurrence: 0,
            sites: 4
        }
    );
    assert_eq!(
        runs_of(&w, "rotated"),
        vec![1, 1, 1, 1, 0],
        "excluded site untouched"
    );
    let jobs = w.store.run_jobs(&schedule.id, 0).expect("jobs");
    assert_eq!(jobs.len(), 4);
    assert!(
        jobs.iter().all(|j| j.status == JobStatus::Completed),
        "{jobs:?}"
    );
    let run = w.store.get_run(&schedule.id, 0).expect("run");
    assert_eq!((run.completed, run.failed, run.pending), (4, 0, 0));

    // Launching the same occurrence again runs nothing anywhere.
    let again = w
        .launcher
        .launch(schedule, now + TimeDelta::seconds(4), w.shutdown.clone())
        .await;
    assert!(
        !matches!(again, Ok(Outcome::Launched { sites, .. }) if sites > 0),
        "{again:?}"
    );
    assert_eq!(runs_of(&w, "rotated"), vec![1, 1, 1, 1, 0]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_test_site_keeps_the_fleet_untouched() {
    let w = world(Ipv4Addr::new(127, 6, 1, 1), 4).await;
    let now = Utc::now();
    let schedule = authorized(
        &w,
        "broken change",
        ":log info \"fleet touched\"; /frobnicate now",
        ScheduleInput {
            sites: w.sites.clone(),
            test_site_id: Some(w.sites[0].clone()),
            ..ScheduleInput::default()
        },
    );
    let outcome = w
        .launcher
        .launch(
            schedule.clone(),
            now + TimeDelta::seconds(3),
            w.shutdown.clone(),
        )
        .await
        .expect("launch");
    assert!(
        matches!(&outcome, Outcome::Refused(reason) if reason.contains("test site")),
        "{outcome:?}"
    );
    // RouterOS parses a whole script before running it, so the test site refused it
    // outright; the fleet never saw it.
    assert_eq!(runs_of(&w, "fleet touched"), vec![0, 0, 0, 0]);
    let jobs = w.store.run_jobs(&schedule.id, 0).expect("jobs");
    assert_eq!(jobs.len(), 1, "{jobs:?}");
    assert_eq!(jobs[0].status, JobStatus::Failed);
    assert!(
        jobs[0]
            .error
            .as_ref()
            .is_some_and(|e| e.message.contains("bad command name")),
        "{jobs:?}"
    );
    let run = w.store.get_run(&schedule.id, 0).expect("run");
    assert_eq!((run.completed, run.failed, run.pending), (0, 1, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_edit_after_approval_is_not_launched() {
    let w = world(Ipv4Addr::new(127, 6, 2, 1), 2).await;
    let now = Utc::now();
    let schedule = authorized(
        &w,
        "edited",
        ":log info \"v1\"",
        ScheduleInput {
            sites: w.sites.clone(),
            ..ScheduleInput::default()
        },
    );
    let edited = w
        .store
        .update_schedule(
            &schedule.id,
            yardmaster::store::SchedulePatch {
                script: Some(":log info \"v2\"".into()),
                ..Default::default()
            },
            "auth0|editor",
            now,
        )
        .expect("edit");
    assert_eq!(edited.status, ScheduleStatus::Unauthorized);
    let outcome = w
        .launcher
        .launch(edited, now + TimeDelta::seconds(3), w.shutdown.clone())
        .await
        .expect("launch");
    assert!(matches!(outcome, Outcome::Refused(_)), "{outcome:?}");
    assert_eq!(runs_of(&w, "v1"), vec![0, 0]);
    assert_eq!(runs_of(&w, "v2"), vec![0, 0]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelled_before_launch_never_runs() {
    let w = world(Ipv4Addr::new(127, 6, 3, 1), 2).await;
    let now = Utc::now();
    let schedule = authorized(
        &w,
        "called off",
        ":log info \"called off\"",
        ScheduleInput {
            sites: w.sites.clone(),
            ..ScheduleInput::default()
        },
    );
    let cancelled = approval::cancel(
        &w.store,
        &schedule.id,
        &person("alice", &["script:update"]),
        now,
    )
    .expect("cancelled");
    assert_eq!(cancelled.status, ScheduleStatus::Cancelled);
    assert!(cancelled.cancelled_at.is_some());
    assert!(
        w.store
            .due_schedules(now + TimeDelta::seconds(10), 10)
            .expect("due")
            .is_empty()
    );
    let outcome = w
        .launcher
        .launch(cancelled, now + TimeDelta::seconds(3), w.shutdown.clone())
        .await;
    assert!(
        !matches!(outcome, Ok(Outcome::Launched { .. })),
        "{outcome:?}"
    );
    assert_eq!(runs_of(&w, "called off"), vec![0, 0]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idempotency_key_reused_returns_the_same_job_and_runs_once() {
    let w = world(Ipv4Addr::new(127, 6, 4, 1), 1).await;
    let input = JobInput {
        organization: "acme".into(),
        site_id: w.sites[0].clone(),
        request_id: None,
        idempotency_key: Some("7bbb8378-1675-515d-8ef4-ddb784fd0e52".into()),
        description: "Log test message".into(),
        script: ":log info \"once only\"".into(),
        make_backup: false,
        express_execute: true,
        needs_acknowledgement: false,
        notify_url: None,
        rollback_after_secs: None,
        script_origin: None,
    };
    let (first, created) = w
        .runner
        .submit_async(input.clone(), "tester", w.shutdown.clone())
        .await
        .expect("submit");
    assert!(created);
    w.runner.drain().await;
    let (second, created) = w
        .runner
        .submit_async(input, "tester", w.shutdown.clone())
        .await
        .expect("submit");
    assert!(!created, "the same key must not create a second job");
    assert_eq!(first.id, second.id);
    w.runner.drain().await;
    assert_eq!(
        w.store.get_job(&first.id).expect("job").status,
        JobStatus::Completed
    );
    assert_eq!(runs_of(&w, "once only"), vec![1]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stop_between_the_test_site_and_the_fleet_is_picked_up_again() {
    let w = world(Ipv4Addr::new(127, 6, 5, 1), 3).await;
    let schedule = authorized(
        &w,
        "resumed",
        ":log info \"resumed\"",
        ScheduleInput {
            sites: w.sites.clone(),
            test_site_id: Some(w.sites[0].clone()),
            ..ScheduleInput::default()
        },
    );
    // What an engine that stopped right after its test site had done: the test batch
    // launched (the schedule kept due at this occurrence) and ran.
    let approval = schedule.approval.clone().expect("authorized");
    let at = schedule.launch_at.expect("launch_at");
    w.store
        .launch(
            yardmaster::store::LaunchPlan {
                schedule_id: schedule.id.clone(),
                occurrence: 0,
                scheduled_for: at,
                approval,
                sites: vec![w.sites[0].clone()],
                more_batches: true,
                next_launch_at: Some(at),
            },
            Utc::now(),
        )
        .expect("test batch");
    w.runner
        .run_jobs(
            yardmaster::runner::fanout::Selection::Run {
                schedule_id: schedule.id.clone(),
                occurrence: 0,
            },
            Default::default(),
            w.shutdown.clone(),
        )
        .await
        .expect("test site ran");
    assert_eq!(runs_of(&w, "resumed"), vec![1, 0, 0]);

    // The restarted engine finds the schedule due and finishes the occurrence.
    let later = at + TimeDelta::seconds(5);
    let due = w.store.due_schedules(later, 10).expect("due");
    assert_eq!(due.len(), 1, "still due: {due:?}");
    let outcome = w
        .launcher
        .launch(due[0].clone(), later, w.shutdown.clone())
        .await
        .expect("launch");
    assert_eq!(
        outcome,
        Outcome::Launched {
            occurrence: 0,
            sites: 2
        }
    );
    assert_eq!(
        runs_of(&w, "resumed"),
        vec![1, 1, 1],
        "the test site did not run twice"
    );
    let run = w.store.get_run(&schedule.id, 0).expect("run");
    assert_eq!((run.completed, run.failed, run.pending), (3, 0, 0));
    assert!(run.finished_at.is_some());
    assert!(w.store.due_schedules(later, 10).expect("due").is_empty());
}

/// A loopback listener that counts the connections it is offered and the bytes sent
/// to it; a router re-pointed here must never be reached.
async fn capture(bind: Ipv4Addr) -> (std::net::SocketAddr, Arc<std::sync::atomic::AtomicUsize>) {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use tokio::io::AsyncReadExt;
    let listener = tokio::net::TcpListener::bind((bind, 0))
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let seen = Arc::new(AtomicUsize::new(0));
    let counter = seen.clone();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            counter.fetch_add(1, Ordering::SeqCst);
            let counter = counter.clone();
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                while let Ok(n) = stream.read(&mut buf).await {
                    if n == 0 {
                        break;
                    }
                    counter.fetch_add(n, Ordering::SeqCst);
                }
            });
        }
    });
    (addr, seen)
}

/// Points router `i`'s site at a fresh capture listener on `bind`, with `password` when
/// given; returns the listener's count of what reached it.
async fn re_point(
    w: &World,
    i: usize,
    bind: Ipv4Addr,
    password: Option<&str>,
) -> Arc<std::sync::atomic::AtomicUsize> {
    let (trap, seen) = capture(bind).await;
    let mut moved = site_input(w, i, &["edge"]);
    moved.address = trap.ip().to_string();
    moved.port = Some(trap.port());
    moved.password = password.map(Secret::new);
    w.store
        .update_site(&w.sites[i], moved, Utc::now())
        .expect("re-point");
    seen
}

/// Launches `schedule` now and expects the refusal to name `why`.
async fn launch_refused(w: &World, schedule: &ScheduledScript, why: &str) {
    let outcome = w
        .launcher
        .launch(
            schedule.clone(),
            Utc::now() + TimeDelta::seconds(3),
            w.shutdown.clone(),
        )
        .await
        .expect("launch");
    assert!(
        matches!(&outcome, Outcome::Refused(reason) if reason.contains(why)),
        "{outcome:?}"
    );
}

fn site_input(w: &World, i: usize, tags: &[&str]) -> SiteInput {
    router_site(w.fleet.addresses()[i], i, tags)
}

/// The site of simulated router `i` at `addr`, with `tags`.
fn router_site(addr: std::net::SocketAddr, i: usize, tags: &[&str]) -> SiteInput {
    SiteInput {
        organization: "acme".into(),
        name: format!("router-{i}"),
        address: addr.ip().to_string(),
        port: Some(addr.port()),
        transport: "routeros-api".into(),
        username: "admin".into(),
        password: Some(Secret::new("pw")),
        tls: Default::default(),
        tags: tags.iter().map(|t| (*t).to_owned()).collect(),
        private_key: None,
        private_key_passphrase: None,
        ssh: None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_site_tagged_after_approval_is_not_run_on_until_approved_again() {
    let w = world(Ipv4Addr::new(127, 6, 7, 1), 3).await;
    // The third router is not tagged when the schedule is approved.
    w.store
        .update_site(&w.sites[2], site_input(&w, 2, &["spare"]), Utc::now())
        .expect("untag");
    let schedule = authorized(
        &w,
        "tagged fleet",
        ":log info \"tagged run\"",
        ScheduleInput {
            tags: vec!["edge".into()],
            ..ScheduleInput::default()
        },
    );
    let mut approved = vec![w.sites[0].clone(), w.sites[1].clone()];
    approved.sort();
    assert_eq!(
        schedule.approved_targets.as_ref().map(|t| t.sites.clone()),
        Some(approved)
    );
    // Someone who may manage sites tags it afterwards.
    w.store
        .update_site(&w.sites[2], site_input(&w, 2, &["edge"]), Utc::now())
        .expect("tag");
    launch_refused(&w, &schedule, &format!("site {} was added", w.sites[2])).await;
    assert_eq!(
        runs_of(&w, "tagged run"),
        vec![0, 0, 0],
        "nothing ran anywhere"
    );
    let after = w.store.get_schedule(&schedule.id).expect("schedule");
    assert_eq!(after.status, ScheduleStatus::Unauthorized);
    assert!(w.store.get_run(&schedule.id, 0).is_err());
    let voided: Vec<_> = w
        .store
        .due_events(Utc::now() + TimeDelta::days(1), 1000)
        .expect("events")
        .into_iter()
        .filter(|e| e.kind == "script.approval_voided")
        .collect();
    assert_eq!(voided.len(), 1);
    assert_eq!(voided[0].payload["recipients"], serde_json::json!(["bob"]));

    // Approved again, it covers the tagged router too.
    let now = Utc::now();
    approval::approve(
        &w.store,
        &schedule.id,
        &person("bob", &["script:authorize"]),
        None,
        OrgPolicy::default(),
        now,
    )
    .expect("approved again");
    let schedule = w.store.get_schedule(&schedule.id).expect("schedule");
    let outcome = w
        .launcher
        .launch(schedule, now + TimeDelta::seconds(3), w.shutdown.clone())
        .await
        .expect("launch");
    assert!(
        matches!(outcome, Outcome::Launched { sites: 3, .. }),
        "{outcome:?}"
    );
    assert_eq!(runs_of(&w, "tagged run"), vec![1, 1, 1]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_target_re_pointed_after_approval_is_never_reached() {
    let w = world(Ipv4Addr::new(127, 6, 8, 1), 2).await;
    let schedule = authorized(
        &w,
        "re-pointed",
        ":log info \"re-pointed run\"",
        ScheduleInput {
            sites: w.sites.clone(),
            ..ScheduleInput::default()
        },
    );
    let seen = re_point(&w, 1, Ipv4Addr::new(127, 6, 8, 200), None).await;
    let why = format!("site {} changed: address, port", w.sites[1]);
    launch_refused(&w, &schedule, &why).await;
    assert_eq!(runs_of(&w, "re-pointed run"), vec![0, 0]);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        seen.load(std::sync::atomic::Ordering::SeqCst),
        0,
        "the new address was never contacted"
    );
    assert_eq!(
        w.store.get_schedule(&schedule.id).expect("schedule").status,
        ScheduleStatus::Unauthorized
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_site_re_pointed_between_launch_and_its_turn_is_not_run() {
    use yardmaster::runner::fanout::{RunOptions, Selection};
    let w = world(Ipv4Addr::new(127, 6, 9, 1), 2).await;
    let schedule = authorized(
        &w,
        "slow rollout",
        ":log info \"late run\"",
        ScheduleInput {
            sites: w.sites.clone(),
            ..ScheduleInput::default()
        },
    );
    // Launched as approved: the jobs exist, none has run yet.
    let now = Utc::now();
    let launch = w
        .store
        .launch(
            yardmaster::store::LaunchPlan {
                schedule_id: schedule.id.clone(),
                occurrence: 0,
                scheduled_for: now,
                approval: schedule.approval.clone().expect("approved"),
                sites: w.sites.clone(),
                more_batches: false,
                next_launch_at: None,
            },
            now,
        )
        .expect("launch");
    assert_eq!(launch.created.len(), 2);
    // Before its turn, one site is re-pointed (with a password given for the new place).
    let seen = re_point(&w, 1, Ipv4Addr::new(127, 6, 9, 200), Some("a new password")).await;
    w.runner
        .run_jobs(
            Selection::Run {
                schedule_id: schedule.id.clone(),
                occurrence: 0,
            },
            RunOptions::for_schedule(&schedule),
            w.shutdown.clone(),
        )
        .await
        .expect("run");
    assert_eq!(runs_of(&w, "late run"), vec![1, 0]);
    assert_eq!(
        seen.load(std::sync::atomic::Ordering::SeqCst),
        0,
        "the new address was never contacted"
    );
    let jobs = w.store.run_jobs(&schedule.id, 0).expect("jobs");
    let moved_job = jobs.iter().find(|j| j.site_id == w.sites[1]).expect("job");
    assert_eq!(moved_job.status, JobStatus::Failed);
    let error = moved_job.error.as_ref().expect("error");
    assert_eq!(error.code, "site-changed", "{error:?}");
    assert!(!moved_job.sent);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_groups_its_sites_by_what_the_script_changed() {
    let w = world(Ipv4Addr::new(127, 6, 30, 1), 4).await;
    // One router already has the comment the script sets on the others.
    w.fleet
        .router(3)
        .run_script("/interface set ether2 comment=lan");
    let now = Utc::now();
    let schedule = authorized(
        &w,
        "label the uplink",
        "/interface set ether2 comment=uplink",
        ScheduleInput {
            sites: w.sites.clone(),
            make_backup: true,
            ..ScheduleInput::default()
        },
    );
    let outcome = w
        .launcher
        .launch(
            schedule.clone(),
            now + TimeDelta::seconds(3),
            w.shutdown.clone(),
        )
        .await
        .expect("launch");
    assert!(
        matches!(outcome, Outcome::Launched { sites: 4, .. }),
        "{outcome:?}"
    );
    let jobs = w.store.run_jobs(&schedule.id, 0).expect("jobs");
    assert!(
        jobs.iter().all(|j| j.status == JobStatus::Completed),
        "{jobs:?}"
    );
    let summary = yardmaster::runner::diff::summarize(&jobs).expect("a summary");
    assert_eq!(
        summary.summary, "3 sites changed the same 2 lines; 1 site differs",
        "{summary:?}"
    );
    assert_eq!(summary.groups[1].sites, vec![w.sites[3].clone()]);
    let diff = w
        .store
        .get_diff(&jobs[0].id)
        .expect("read")
        .expect("a diff");
    assert!(
        diff.contains("+/interface ethernet\n+set [ find default-name=ether2 ] comment=uplink"),
        "{diff}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_schedule_approved_while_the_launcher_sleeps_launches_on_its_time_without_a_poll() {
    let w = world(Ipv4Addr::new(127, 6, 31, 1), 2).await;
    // A tick of an hour: the launcher looks once at start, finds nothing, and would not
    // look again within this test unless the approval woke it.
    let launcher = Launcher::new(
        w.runner.store().clone(),
        w.runner.clone(),
        Duration::from_secs(3600),
    );
    let serving = tokio::spawn({
        let (launcher, shutdown) = (launcher.clone(), w.shutdown.clone());
        async move { launcher.serve(shutdown).await }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let schedule = authorized(
        &w,
        "woken",
        ":log info \"woken\"",
        ScheduleInput {
            sites: w.sites.clone(),
            ..ScheduleInput::default()
        },
    );
    let launch_at = schedule.launch_at.expect("launch_at");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let run = loop {
        match w.store.last_run(&schedule.id).expect("run") {
            Some(run) if run.finished_at.is_some() => break run,
            _ if tokio::time::Instant::now() > deadline => {
                panic!("the schedule never launched: the launcher was not woken")
            }
            _ => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    };
    assert_eq!((run.completed, run.failed), (2, 0));
    assert_eq!(runs_of(&w, "woken"), vec![1, 1]);
    for job in w.store.run_jobs(&schedule.id, 0).expect("jobs") {
        let started = job.started_at.expect("started");
        assert!(started >= launch_at, "started {started} before {launch_at}");
    }
    serving.abort();
}
