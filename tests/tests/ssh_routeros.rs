//! The SSH transport's RouterOS side, driving the real binary against a simulated
//! router that serves SSH as RouterOS does (`yardmaster simulate --ssh-port`): version
//! line `SSH-2.0-ROSSSH`, password login, each exec request run as a console script
//! with exit status 0 whatever it reports.
//!
//! What it shows: the platform is told from the version line, the login name carries
//! `+cet1024w`, a password login works, a multi-line script runs whole, output that
//! reports a RouterOS error fails the job though the exit status is 0, a backup is the
//! `/export` text, and the first host key is stored on the site.

use std::net::Ipv4Addr;

use serde_json::{Value, json};
use yardmaster::simulate::{Fleet, FleetConfig, Profile};
use yardmaster_tests::{Engine, EngineOptions, eventually};

const PASSWORD: &str = "ros-ssh-password";

fn run_job(engine: &Engine, site: &str, body: Value) -> Value {
    let jobs = |engine: &Engine| -> Vec<Value> {
        engine
            .get(&format!("/api/routers/{site}/jobs"))
            .ok()
            .and_then(|r| r.body["data"].as_array().cloned())
            .unwrap_or_default()
    };
    let seen: Vec<Value> = jobs(engine).iter().map(|j| j["id"].clone()).collect();
    let submitted = engine
        .post(&format!("/api/asynchronous/{site}"), &body)
        .expect("submit");
    assert!(
        submitted.status == 200 || submitted.status == 202,
        "{}",
        submitted.text
    );
    eventually("the job to end", || {
        let job = jobs(engine)
            .into_iter()
            .find(|j| !seen.contains(&j["id"]))?;
        if job["status"] != "completed" && job["status"] != "failed" {
            return None;
        }
        let id = job["id"].as_str()?.to_owned();
        let shown = engine.get(&format!("/api/jobs/{id}")).ok()?;
        Some(shown.body["data"].clone())
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routeros_over_ssh_logs_in_with_its_options_and_reads_errors_from_the_output() {
    let (stop, mut stopped) = tokio::sync::watch::channel(false);
    let fleet = Fleet::start(
        FleetConfig {
            routers: 1,
            bind: Ipv4Addr::new(127, 62, 0, 1),
            port: 0,
            tls_port: None,
            profile: Profile::V7_18,
            user: "admin".into(),
            password: PASSWORD.into(),
            faults: Vec::new(),
            ssh_port: Some(0),
            ssh_authorized_keys: Vec::new(),
        },
        async move {
            let _ = stopped.wait_for(|s| *s).await;
        },
    )
    .await
    .expect("the simulated fleet starts");
    let router = fleet.router(0);
    let addr = router.ssh_address().expect("ssh is served");
    let engine = Engine::start(EngineOptions {
        bundled: true,
        ..EngineOptions::default()
    });
    // No platform: the plugin tells RouterOS by the version line.
    let id = engine.add_site(&json!({
        "name": "ros-ssh",
        "address": addr.ip().to_string(),
        "port": addr.port(),
        "transport": "ssh",
        "username": "admin",
        "password": PASSWORD,
    }));

    let script = ":log info \"over ssh\"\n/system identity set name=edge-ssh\n";
    let done = run_job(
        &engine,
        &id,
        json!({"description": "ros", "script": script, "make_backup": true}),
    );
    assert_eq!(done["status"], "completed", "{done}\n{}", engine.log());
    assert!(router.log_messages().iter().any(|m| m == "over ssh"));
    assert_eq!(router.identity(), "edge-ssh");
    let logins = router.ssh_logins();
    assert!(!logins.is_empty());
    assert!(logins.iter().all(|u| u == "admin+cet1024w"), "{logins:?}");
    // The backup taken before the script is the `/export` text, with the name the
    // router had then.
    assert_eq!(done["has_backup"], true, "{done}");
    let backup = done["backup"].as_str().unwrap_or_default();
    assert!(
        backup.contains("/system identity") && backup.contains("set name=router-0"),
        "{done}"
    );

    // A RouterOS error in the output fails the job, though the exit status was 0.
    let failed = run_job(
        &engine,
        &id,
        json!({"description": "ros", "script": "/frobnicate now\n"}),
    );
    assert_eq!(failed["status"], "failed", "{failed}");
    assert_eq!(failed["error"]["code"], "script", "{failed}");
    let message = failed["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("bad command name"), "{message}");

    // The site learned the simulator's host key on first use.
    let site = engine.get(&format!("/sites/{id}")).expect("site").body;
    assert_eq!(
        site["ssh"]["host_keys"],
        json!([fleet.ssh_fingerprint().expect("a host key")]),
        "{site}"
    );
    drop(engine);
    stop.send_replace(true);
    fleet.shutdown().await;
}
