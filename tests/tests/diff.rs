//! What a script changed, end to end: an asynchronous job with `make_backup` on a
//! simulated router exports the configuration before and after its script, and
//! `GET /api/jobs/{id}` shows the unified diff (its secret values masked for a token
//! without `site:backup`).

use std::net::Ipv4Addr;

use serde_json::{Value, json};
use yardmaster::simulate::Profile;
use yardmaster_tests::{Engine, EngineOptions, eventually, fleet};

const PASSWORD: &str = "diff-pw";

/// The id of the job a submission answered with its request id.
fn job_id(engine: &Engine, site: &str, submitted: &yardmaster_tests::Response) -> String {
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

fn job_of(engine: &Engine, token: &str, id: &str) -> Value {
    let shown = engine
        .get_as(&format!("/api/jobs/{id}"), Some(token))
        .expect("show the job");
    assert_eq!(shown.status, 200, "{}", shown.text);
    shown.body["data"].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_with_a_backup_records_the_diff_of_what_its_script_changed() {
    let fleet = fleet(Ipv4Addr::new(127, 22, 0, 1), 1, Profile::V7_18, PASSWORD).await;
    let engine = Engine::start(EngineOptions {
        bundled: true,
        ..EngineOptions::default()
    });
    engine.wait_for_file("routeros-api.wasm", "the RouterOS plugin", |p| {
        p["status"] == "active"
    });
    let addr = fleet.addresses()[0];
    let site = engine.add_site(&json!({
        "name": "diff-router",
        "address": addr.ip().to_string(),
        "port": addr.port(),
        "username": "admin",
        "password": PASSWORD,
    }));
    let submitted = engine
        .post(
            &format!("/api/asynchronous/{site}"),
            &json!({
                "description": "Add an address and a script with a secret",
                "script": "/ip address add address=10.77.0.1/24 interface=ether1\n\
                           /system script add name=vpn source=\":put 1\" comment=\"password=hunter2\"",
                "make_backup": true,
                "express_execute": true,
            }),
        )
        .expect("submit");
    let id = job_id(&engine, &site, &submitted);

    let admin = engine.token(&["script:view", "site:backup"]);
    let job = eventually("the job to finish", || {
        let job = job_of(&engine, &admin, &id);
        matches!(job["status"].as_str(), Some("completed" | "failed")).then_some(job)
    });
    assert_eq!(job["status"], "completed", "{job}\n{}", engine.log());
    // Two menu headers and the two lines added under them.
    assert_eq!(job["changes"]["added"], 4, "{job}");
    assert_eq!(job["changes"]["removed"], 0, "{job}");
    let diff = job["diff"].as_str().expect("a diff");
    assert!(diff.starts_with("--- before\n+++ after\n"), "{diff}");
    assert!(
        diff.contains("+/ip address\n+add address=10.77.0.1/24 interface=ether1"),
        "{diff}"
    );
    assert!(
        diff.contains("hunter2"),
        "site:backup sees the whole diff: {diff}"
    );
    assert_eq!(job["diff_masked"], false);
    assert!(
        !diff.contains("by RouterOS"),
        "the export's header is not a change: {diff}"
    );

    // A reader without `site:backup` sees the same diff with secret values masked.
    let viewer = engine.token(&["script:view"]);
    let job = job_of(&engine, &viewer, &id);
    let masked = job["diff"].as_str().expect("a masked diff");
    assert_eq!(job["diff_masked"], true);
    assert!(!masked.contains("hunter2"), "{masked}");
    assert!(masked.contains("+add address=10.77.0.1/24"), "{masked}");
    assert_eq!(job["backup"], Value::Null);

    // Without `make_backup` there is no export to compare, so no diff.
    let plain = engine
        .post(
            &format!("/api/asynchronous/{site}"),
            &json!({
                "description": "No backup",
                "script": "/ip address add address=10.78.0.1/24 interface=ether1",
                "express_execute": true,
            }),
        )
        .expect("submit");
    let plain_id = job_id(&engine, &site, &plain);
    let job = eventually("the second job to finish", || {
        let job = job_of(&engine, &admin, &plain_id);
        (job["status"] == "completed").then_some(job)
    });
    assert_eq!(job["diff"], Value::Null);
    assert_eq!(job["changes"], Value::Null);
}
