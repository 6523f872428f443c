//! The dead-man rollback end to end: the real engine and its RouterOS API plugin against
//! simulated routers. A guarded script that disables the API cuts the engine off: the
//! router restores the backup taken before it when its scheduler entry fires, the job
//! fails `rolled_back`, and the router answers the API again with the service enabled;
//! the job then records that it came back. A guarded benign script completes, and leaves
//! neither a scheduler entry nor a backup file behind. Windows are a few seconds; nothing
//! here asserts on how long anything took.

use std::net::Ipv4Addr;

use serde_json::{Value, json};
use yardmaster::simulate::Profile;
use yardmaster_tests::{Engine, EngineOptions, InProcessFleet, eventually, fixture, fleet};

const PASSWORD: &str = "rollback-pw";

fn engine() -> Engine {
    let engine = Engine::start(EngineOptions {
        bundled: true,
        ..EngineOptions::default()
    });
    engine.wait_for_file("routeros-api.wasm", "the RouterOS plugin", |p| {
        p["status"] == "active"
    });
    engine
}

fn site(engine: &Engine, fleet: &InProcessFleet, i: usize) -> String {
    let addr = fleet.addresses()[i];
    engine.add_site(&json!({
        "name": format!("guarded-{i}"),
        "address": addr.ip().to_string(),
        "port": addr.port(),
        "username": "admin",
        "password": PASSWORD,
    }))
}

/// Submits an express job and answers its id.
fn submit(engine: &Engine, site: &str, body: Value) -> String {
    let submitted = engine
        .post(&format!("/api/asynchronous/{site}"), &body)
        .expect("submit");
    assert_eq!(submitted.status, 202, "{}", submitted.text);
    let request = submitted.body["data"]["request_id"].clone();
    let jobs = engine
        .get(&format!("/api/routers/{site}/jobs"))
        .expect("list jobs");
    jobs.body["data"]
        .as_array()
        .and_then(|jobs| jobs.iter().find(|j| j["request_id"] == request))
        .and_then(|j| j["id"].as_str())
        .expect("the job in the router's list")
        .to_owned()
}

fn job(engine: &Engine, id: &str) -> Value {
    let shown = engine.get(&format!("/api/jobs/{id}")).expect("show");
    assert_eq!(shown.status, 200, "{}", shown.text);
    shown.body["data"].clone()
}

fn finished(engine: &Engine, id: &str) -> Value {
    eventually("the job to finish", || {
        let job = job(engine, id);
        matches!(job["status"].as_str(), Some("completed" | "failed")).then_some(job)
    })
}

/// What the router's API answers now, over a new connection through the engine.
fn identity(engine: &Engine, site: &str) -> Option<String> {
    let r = engine
        .post(
            &format!("/api/synchronous/{site}"),
            &json!({"command": "/system/identity/print"}),
        )
        .ok()?;
    (r.status == 200).then(|| r.body["data"][0]["name"].as_str().unwrap_or("").to_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_script_that_cuts_the_api_off_is_rolled_back_by_the_router() {
    let fleet = fleet(Ipv4Addr::new(127, 21, 0, 1), 1, Profile::V7_18, PASSWORD).await;
    let engine = engine();
    let site = site(&engine, &fleet, 0);
    let router = fleet.router(0);

    let id = submit(
        &engine,
        &site,
        json!({
            "description": "Lock the API out",
            "script": "/system identity set name=cut-off\n/ip service disable api",
            "express_execute": true,
            "rollback_after": "3s",
        }),
    );
    let failed = finished(&engine, &id);
    assert_eq!(failed["status"], "failed", "{failed}\n{}", engine.log());
    assert_eq!(failed["error"]["code"], "rolled_back", "{failed}");
    let message = failed["error"]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("could not be reached again") && message.contains("restores the backup"),
        "{message}"
    );
    assert_eq!(failed["rollback_after"], "3s");
    assert!(
        failed["rollback"]["router_fires_at"].is_string(),
        "{failed}"
    );
    assert_eq!(failed["rollback"]["disarmed_at"], Value::Null);

    // The router restores itself: the API answers again, with the configuration from
    // before the script, the service enabled and the scheduler entry gone with it.
    let name = eventually("the router to answer the API again", || {
        identity(&engine, &site)
    });
    assert_eq!(name, "router-0");
    assert!(router.service_enabled("api"));
    let services = router.rows("/ip/service").expect("services");
    let api = services
        .iter()
        .find(|r| r.iter().any(|(k, v)| k == "name" && v == "api"))
        .expect("the api service");
    assert!(
        api.iter().any(|(k, v)| k == "disabled" && v == "false"),
        "{api:?}"
    );
    assert_eq!(
        router.rows("/system/scheduler").expect("scheduler"),
        Vec::<Vec<(String, String)>>::new()
    );

    // The engine saw it come back, and says so on the job.
    let back = eventually("the job to record the router's return", || {
        let job = job(&engine, &id);
        job["rollback"]["returned_at"].is_string().then_some(job)
    });
    assert_eq!(back["status"], "failed");
    assert_eq!(back["error"]["code"], "rolled_back");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_benign_guarded_script_completes_and_leaves_nothing_behind() {
    let fleet = fleet(Ipv4Addr::new(127, 21, 1, 1), 1, Profile::V7_18, PASSWORD).await;
    let engine = engine();
    let site = site(&engine, &fleet, 0);
    let router = fleet.router(0);

    let id = submit(
        &engine,
        &site,
        json!({
            "description": "Rename, guarded",
            "script": "/system identity set name=renamed",
            "express_execute": true,
            "make_backup": true,
            "rollback_after": "30s",
        }),
    );
    let done = finished(&engine, &id);
    assert_eq!(done["status"], "completed", "{done}\n{}", engine.log());
    assert!(done["rollback"]["disarmed_at"].is_string(), "{done}");
    assert_eq!(router.identity(), "renamed");
    assert_eq!(
        router.rows("/system/scheduler").expect("scheduler"),
        Vec::<Vec<(String, String)>>::new(),
        "no scheduler entry is left"
    );
    let files = router.rows("/file").expect("files");
    assert!(
        !files
            .iter()
            .flatten()
            .any(|(k, v)| k == "name" && v.ends_with(".backup")),
        "no backup file is left: {files:?}"
    );
    // The diff shows the script's change, and nothing of the guard.
    let diff = done["diff"].as_str().expect("a diff");
    assert!(diff.contains("+set name=renamed"), "{diff}");
    assert!(!diff.contains("scheduler"), "{diff}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rollback_after_is_refused_where_it_cannot_be_armed() {
    let fleet = fleet(Ipv4Addr::new(127, 21, 2, 1), 1, Profile::V7_18, PASSWORD).await;
    let engine = engine();
    // A transport built against contract 1.1 keeps loading beside 1.2 ones.
    std::fs::copy(
        fixture("transport-v1-1"),
        engine.plugins_dir().join("transport-v1-1.wasm"),
    )
    .expect("copy the fixture");
    let old = engine.wait_for_file("transport-v1-1.wasm", "the 1.1 transport", |p| {
        p["status"] == "active"
    });
    assert_eq!(old["wit_version"], "1.1.0");
    for (plugin, rollback) in [
        ("transport-v1-1", false),
        ("ssh", false),
        ("routeros-api", true),
    ] {
        let shown = engine.get(&format!("/plugins/{plugin}")).expect("plugin");
        assert_eq!(shown.status, 200, "{}", shown.text);
        assert_eq!(shown.body["rollback"], rollback, "{plugin}: {}", shown.text);
    }
    let guarded = site(&engine, &fleet, 0);

    let refused = engine
        .post(
            &format!("/api/asynchronous/{guarded}"),
            &json!({"description": "x", "script": ":put 1", "rollback_after": "soon"}),
        )
        .expect("submit");
    assert_eq!(refused.status, 422, "{}", refused.text);
    assert!(refused.text.contains("rollback_after"), "{}", refused.text);

    for transport in ["transport-v1-1", "ssh"] {
        let unguarded = engine.add_site(&json!({
            "name": format!("unguarded-{transport}"),
            "address": "127.21.2.1",
            "port": 9999,
            "transport": transport,
            "username": "admin",
            "password": PASSWORD,
        }));
        let refused = engine
            .post(
                &format!("/api/asynchronous/{unguarded}"),
                &json!({"description": "x", "script": ":put 1", "rollback_after": "5m"}),
            )
            .expect("submit");
        assert_eq!(refused.status, 422, "{transport}: {}", refused.text);
        assert_eq!(
            refused.body["code"], "rollback_unsupported",
            "{}",
            refused.text
        );
        let jobs = engine
            .get(&format!("/api/routers/{unguarded}/jobs"))
            .expect("jobs");
        assert_eq!(jobs.body["total"], 0, "nothing was stored: {}", jobs.text);

        let schedule = engine
            .post(
                "/scripts/scheduled",
                &json!({
                    "description": format!("guarded on {transport}"),
                    "script": ":put 1",
                    "launch_at": "2099-01-01T00:00:00Z",
                    "sites": [unguarded],
                    "rollback_after": "5m",
                }),
            )
            .expect("create");
        assert_eq!(schedule.status, 422, "{}", schedule.text);
        assert_eq!(schedule.body["code"], "rollback_unsupported");
    }

    let schedule = engine
        .post(
            "/scripts/scheduled",
            &json!({
                "description": "guarded on the API",
                "script": ":put 1",
                "launch_at": "2099-01-01T00:00:00Z",
                "sites": [guarded],
                "rollback_after": "90s",
            }),
        )
        .expect("create");
    assert_eq!(schedule.status, 201, "{}", schedule.text);
    assert_eq!(schedule.body["rollback_after"], "1m30s");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_engine_killed_mid_guard_says_so_and_the_router_still_restores_itself() {
    // Every reply of this router comes a little late, so the engine can be killed while
    // it arms the rollback.
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let fleet = yardmaster::simulate::Fleet::start(
        yardmaster::simulate::FleetConfig {
            routers: 1,
            bind: Ipv4Addr::new(127, 21, 3, 1),
            port: 8728,
            tls_port: None,
            profile: Profile::V7_18,
            user: "admin".into(),
            password: PASSWORD.into(),
            faults: vec!["delay=700".parse().expect("a fault")],
            ssh_port: None,
            ssh_authorized_keys: Vec::new(),
        },
        async move {
            let mut stopped = stopped;
            let _ = stopped.wait_for(|s| *s).await;
        },
    )
    .await
    .expect("the simulated router starts");
    let router = fleet.router(0);
    let engine = engine();
    let addr = fleet.addresses()[0];
    let site = engine.add_site(&json!({
        "name": "slow",
        "address": addr.ip().to_string(),
        "port": addr.port(),
        "username": "admin",
        "password": PASSWORD,
    }));
    let id = submit(
        &engine,
        &site,
        json!({
            "description": "Rename, guarded, interrupted",
            "script": "/system identity set name=mid-guard",
            "express_execute": true,
            "rollback_after": "6s",
        }),
    );
    eventually("the rollback to be armed on the router", || {
        let entries = router.rows("/system/scheduler")?;
        (!entries.is_empty()).then_some(())
    });
    let dir = engine.kill();

    let engine = Engine::start(EngineOptions {
        bundled: true,
        reuse: Some(dir),
        ..EngineOptions::default()
    });
    let failed = job(&engine, &id);
    assert_eq!(failed["status"], "failed", "{failed}");
    assert_eq!(failed["error"]["code"], "interrupted", "{failed}");
    let message = failed["error"]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("dead-man rollback") && message.contains("not disarmed"),
        "the job names the restore still pending on the router: {message}"
    );
    // Nothing disarmed it, so the router restores itself: the entry goes with the
    // restore, and the configuration is as it was before the script.
    eventually("the router to restore itself", || {
        let entries = router.rows("/system/scheduler")?;
        (entries.is_empty() && router.is_online()).then_some(())
    });
    assert_eq!(router.identity(), "router-0");
    let _ = stop.send(true);
}
