//! The SSH transport's RouterOS side, driving the real binary against simulated
//! routers that serve SSH as RouterOS does (`yardmaster simulate --ssh-port`): version
//! line `SSH-2.0-ROSSSH`, password or public-key login, each exec request run as a
//! console script with exit status 0 whatever it reports. The fleets run in the test's
//! process (the code `yardmaster simulate` runs), so each router's `/log` and counters
//! can be read, except for the key login, which starts `yardmaster simulate` itself. The
//! scheduled fan-out runs the engine's store, approval, launcher and runner in process,
//! as `schedules.rs` does.
//!
//! What it shows: the platform is told from the version line, the login name carries
//! `+cet1024w`, a password login works, a multi-line script runs whole, output that
//! reports a RouterOS error fails the job though the exit status is 0, a backup is the
//! `/export` text, and the first host key is stored on the site. A scheduled script
//! reaches 50 routers of both profiles (RouterOS 6 and 7 algorithm sets) over SSH and
//! runs once on each; a wrong password fails as `auth`; a changed host key stops the
//! job before the router sees a login; `yardmaster simulate --ssh-authorized-keys`
//! lets the engine log in with the site's key. An approval survives the host keys
//! learned on first use and is voided by a host key pinned after it.

use std::io::{BufRead, BufReader};
use std::net::{Ipv4Addr, SocketAddr};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use chrono::{TimeDelta, Utc};
use serde_json::{Value, json};
use yardmaster::approval::{self, OrgPolicy, Principal};
use yardmaster::runner::fanout::{Runner, RunnerSettings};
use yardmaster::scheduler::launcher::{Launcher, Outcome};
use yardmaster::server::Shutdown;
use yardmaster::simulate::{Fleet, FleetConfig, Profile};
use yardmaster::store::{
    JobStatus, ScheduleInput, ScheduledScript, Secret, SiteInput, SshSettings, Store, User,
};
use yardmaster_tests::{Engine, EngineOptions, binary, bundled_host, eventually};

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

/// A fleet serving SSH (and the API, which these tests do not use) on free ports.
async fn ssh_fleet(bind: Ipv4Addr, routers: usize, profile: Profile, ssh_port: u16) -> Fleet {
    Fleet::start(
        FleetConfig {
            routers,
            bind,
            port: 0,
            tls_port: None,
            profile,
            user: "admin".into(),
            password: PASSWORD.into(),
            faults: Vec::new(),
            ssh_port: Some(ssh_port),
            ssh_authorized_keys: Vec::new(),
        },
        std::future::pending(),
    )
    .await
    .expect("the simulated fleet starts")
}

fn ssh_site(engine: &Engine, addr: SocketAddr, name: &str, extra: Value) -> String {
    let mut site = json!({
        "name": name,
        "address": addr.ip().to_string(),
        "port": addr.port(),
        "transport": "ssh",
        "username": "admin",
    });
    if let (Value::Object(site), Value::Object(extra)) = (&mut site, extra) {
        site.extend(extra);
    }
    engine.add_site(&site)
}

/// A schedule created by alice logging `message` on every `ssh` site, approved by bob.
fn approved(store: &Store, message: &str) -> ScheduledScript {
    let now = Utc::now();
    let schedule = store
        .create_schedule(
            ScheduleInput {
                organization: "acme".into(),
                description: message.into(),
                script: format!(":log info \"{message}\"\n"),
                tags: vec!["ssh".into()],
                launch_at: Some(now + TimeDelta::seconds(2)),
                created_by: "alice".into(),
                ..ScheduleInput::default()
            },
            now,
        )
        .expect("schedule");
    approval::approve(
        store,
        &schedule.id,
        &person("bob", &["script:authorize"]),
        None,
        OrgPolicy::default(),
        now,
    )
    .expect("approved by bob");
    store.get_schedule(&schedule.id).expect("schedule")
}

fn person(id: &str, scopes: &[&str]) -> Principal {
    Principal {
        user_id: id.into(),
        organization: "acme".into(),
        scopes: scopes.iter().map(|s| s.to_string()).collect(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scheduled_script_runs_once_on_each_of_50_routers_of_both_profiles() {
    // Half the fleet speaks only the RouterOS 6 algorithms, half only modern ones.
    let old = ssh_fleet(Ipv4Addr::new(127, 63, 0, 1), 25, Profile::V6_45, 0).await;
    let new = ssh_fleet(Ipv4Addr::new(127, 63, 1, 1), 25, Profile::V7_18, 0).await;
    let routers: Vec<_> = old.routers().chain(new.routers()).collect();
    assert_eq!(routers.len(), 50);

    let dir = tempfile::tempdir().expect("tmp");
    let host = bundled_host(dir.path(), 64).await;
    let store = Arc::new(Store::open(dir.path().join("data")).expect("store"));
    let now = Utc::now();
    for id in ["alice", "bob"] {
        store
            .put_user(&User {
                id: id.into(),
                name: id.into(),
                email: format!("{id}@example.com"),
                organization: "acme".into(),
                created_at: now,
            })
            .expect("user");
    }
    let mut sites = Vec::new();
    for (i, router) in routers.iter().enumerate() {
        let addr = router.ssh_address().expect("ssh is served");
        let site = store
            .create_site(
                SiteInput {
                    organization: "acme".into(),
                    name: format!("ssh-{i}"),
                    address: addr.ip().to_string(),
                    port: Some(addr.port()),
                    transport: "ssh".into(),
                    username: "admin".into(),
                    password: Some(Secret::new(PASSWORD)),
                    tls: Default::default(),
                    tags: vec!["ssh".into()],
                    private_key: None,
                    private_key_passphrase: None,
                    ssh: None,
                },
                now,
            )
            .expect("site");
        sites.push(site.id);
    }
    let runner = Runner::new(
        std::sync::Arc::new(yardmaster::store::Backend::Redb(store.clone())),
        host,
        RunnerSettings {
            job_timeout: Duration::from_secs(60),
            ..RunnerSettings::default()
        },
    );
    let launcher = Launcher::new(
        runner.store().clone(),
        runner.clone(),
        Duration::from_millis(200),
    );
    let (_stop, shutdown) = Shutdown::new();

    let schedule = approved(&store, "scheduled over ssh");
    // Approved while no site had a host key: the keys learned by the first launch are
    // what that approval covered, so it still holds after them.
    let second = approved(&store, "second over ssh");
    let outcome = launcher
        .launch(
            schedule.clone(),
            now + TimeDelta::seconds(3),
            shutdown.clone(),
        )
        .await
        .expect("launch");
    assert_eq!(
        outcome,
        Outcome::Launched {
            occurrence: 0,
            sites: 50
        }
    );
    let jobs = store.run_jobs(&schedule.id, 0).expect("jobs");
    assert_eq!(jobs.len(), 50);
    assert!(
        jobs.iter().all(|j| j.status == JobStatus::Completed),
        "{:?}",
        jobs.iter()
            .filter(|j| j.status != JobStatus::Completed)
            .map(|j| &j.error)
            .collect::<Vec<_>>()
    );
    let runs: Vec<usize> = routers
        .iter()
        .map(|r| {
            r.log_messages()
                .iter()
                .filter(|m| *m == "scheduled over ssh")
                .count()
        })
        .collect();
    assert_eq!(runs, vec![1; 50]);
    // Every router was reached over SSH, with its profile's host key now pinned. (A
    // connection that failed before the script went out may be made again, so a router
    // can see more than one login; each gives the same name and terminal options.)
    for router in &routers {
        let logins = router.ssh_logins();
        assert!(
            !logins.is_empty() && logins.iter().all(|l| l == "admin+cet1024w"),
            "{logins:?}"
        );
    }
    for (i, site) in sites.iter().enumerate() {
        let site = store.get_site(site).expect("site");
        let fleet = if i < 25 { &old } else { &new };
        let pinned = site.ssh.host_keys;
        assert_eq!(pinned, [fleet.ssh_fingerprint().expect("a host key")]);
    }
    assert_ne!(old.ssh_fingerprint(), new.ssh_fingerprint());

    let outcome = launcher
        .launch(
            second.clone(),
            now + TimeDelta::seconds(3),
            shutdown.clone(),
        )
        .await
        .expect("launch");
    assert_eq!(
        outcome,
        Outcome::Launched {
            occurrence: 0,
            sites: 50
        }
    );
    assert!(routers.iter().all(|r| {
        r.log_messages()
            .iter()
            .filter(|m| *m == "second over ssh")
            .count()
            == 1
    }));

    // An operator pins another host key on one site after a third approval: that
    // approval no longer covers the fleet, and nothing runs anywhere.
    let third = approved(&store, "third over ssh");
    let addr = routers[7].ssh_address().expect("ssh");
    store
        .update_site(
            &sites[7],
            SiteInput {
                organization: "acme".into(),
                name: "ssh-7".into(),
                address: addr.ip().to_string(),
                port: Some(addr.port()),
                transport: "ssh".into(),
                username: "admin".into(),
                password: None,
                tls: Default::default(),
                tags: vec!["ssh".into()],
                private_key: None,
                private_key_passphrase: None,
                ssh: Some(SshSettings {
                    host_keys: vec![format!("SHA256:{}", "Q".repeat(43))],
                    platform: None,
                }),
            },
            Utc::now(),
        )
        .expect("re-pinned");
    let outcome = launcher
        .launch(third, now + TimeDelta::seconds(3), shutdown.clone())
        .await
        .expect("launch");
    assert!(
        matches!(&outcome, Outcome::Refused(why) if why.contains("pinned SSH host keys")),
        "{outcome:?}"
    );
    assert!(
        routers
            .iter()
            .all(|r| !r.log_messages().contains(&"third over ssh".to_owned()))
    );
    drop(launcher);
    drop(runner);
    old.shutdown().await;
    new.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_profiles_are_reached_and_6_45_needs_the_legacy_algorithms() {
    let old = ssh_fleet(Ipv4Addr::new(127, 63, 2, 1), 1, Profile::V6_45, 0).await;
    let new = ssh_fleet(Ipv4Addr::new(127, 63, 3, 1), 1, Profile::V7_18, 0).await;
    let old_addr = old.router(0).ssh_address().expect("ssh");
    let new_addr = new.router(0).ssh_address().expect("ssh");
    let engine = Engine::start(EngineOptions {
        bundled: true,
        ..EngineOptions::default()
    });
    for (addr, name) in [(old_addr, "ros6"), (new_addr, "ros7")] {
        let id = ssh_site(&engine, addr, name, json!({"password": PASSWORD}));
        let script =
            format!("/system identity set name={name}\n:put [/system resource get version]\n");
        let done = run_job(&engine, &id, json!({"description": "id", "script": script}));
        assert_eq!(done["status"], "completed", "{done}\n{}", engine.log());
    }
    assert_eq!(old.router(0).identity(), "ros6");
    assert_eq!(new.router(0).identity(), "ros7");
    drop(engine);

    // Without the legacy set, the RouterOS 6 profile is not reached, and the error says
    // what each side offered; the RouterOS 7 one still is.
    let strict = Engine::start(EngineOptions {
        bundled: true,
        config: "[ssh]\nlegacy_algorithms = false\n[runner]\nmax_attempts = 1\n".into(),
        ..EngineOptions::default()
    });
    let id = ssh_site(
        &strict,
        old_addr,
        "ros6-strict",
        json!({"password": PASSWORD}),
    );
    let failed = run_job(
        &strict,
        &id,
        json!({"description": "id", "script": ":log info \"strict\"\n"}),
    );
    assert_eq!(failed["status"], "failed", "{failed}");
    let message = failed["error"]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("diffie-hellman-group14-sha1") && message.contains("curve25519-sha256"),
        "{failed}"
    );
    assert!(!old.router(0).log_messages().contains(&"strict".to_owned()));
    let id = ssh_site(
        &strict,
        new_addr,
        "ros7-strict",
        json!({"password": PASSWORD}),
    );
    let done = run_job(
        &strict,
        &id,
        json!({"description": "id", "script": ":log info \"strict\"\n"}),
    );
    assert_eq!(done["status"], "completed", "{done}");
    old.shutdown().await;
    new.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_password_fails_as_auth_and_runs_nothing() {
    let fleet = ssh_fleet(Ipv4Addr::new(127, 63, 4, 1), 1, Profile::V7_18, 0).await;
    let router = fleet.router(0);
    let engine = Engine::start(EngineOptions {
        bundled: true,
        config: "[runner]\nmax_attempts = 1\n".into(),
        ..EngineOptions::default()
    });
    let id = ssh_site(
        &engine,
        router.ssh_address().expect("ssh"),
        "wrong-pw",
        json!({"password": "not-the-password"}),
    );
    let failed = run_job(
        &engine,
        &id,
        json!({"description": "pw", "script": ":log info \"with a wrong password\"\n"}),
    );
    assert_eq!(failed["status"], "failed", "{failed}");
    assert_eq!(failed["error"]["code"], "auth", "{failed}");
    let message = failed["error"]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("authentication failed")
            && message.contains("password of user `admin+cet1024w`"),
        "{message}"
    );
    assert!(router.stats().failed_logins >= 1);
    assert_eq!(router.stats().commands, 0);
    assert!(
        router
            .log_messages()
            .iter()
            .all(|m| m != "with a wrong password")
    );
    fleet.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_host_key_refuses_before_the_router_sees_a_login() {
    let bind = Ipv4Addr::new(127, 63, 5, 1);
    let first = ssh_fleet(bind, 1, Profile::V7_18, 0).await;
    let addr = first.router(0).ssh_address().expect("ssh");
    let first_key = first.ssh_fingerprint().expect("a host key").to_owned();
    let engine = Engine::start(EngineOptions {
        bundled: true,
        ..EngineOptions::default()
    });
    let id = ssh_site(&engine, addr, "rekeyed", json!({"password": PASSWORD}));
    let done = run_job(
        &engine,
        &id,
        json!({"description": "first", "script": ":log info \"first\"\n"}),
    );
    assert_eq!(done["status"], "completed", "{done}");
    first.shutdown().await;

    // Another machine answers on the same address and port, with its own host key.
    let second = ssh_fleet(bind, 1, Profile::V7_18, addr.port()).await;
    let second_key = second.ssh_fingerprint().expect("a host key").to_owned();
    assert_ne!(first_key, second_key);
    let refused = run_job(
        &engine,
        &id,
        json!({"description": "second", "script": ":log info \"second\"\n"}),
    );
    assert_eq!(refused["status"], "failed", "{refused}");
    assert_eq!(refused["error"]["code"], "host_key_changed", "{refused}");
    let message = refused["error"]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains(&first_key) && message.contains(&second_key),
        "{message}"
    );
    let router = second.router(0);
    assert!(router.ssh_logins().is_empty(), "the password was sent");
    let stats = router.stats();
    assert_eq!(
        (stats.logins, stats.failed_logins, stats.commands),
        (0, 0, 0)
    );
    assert!(router.log_messages().iter().all(|m| m != "second"));
    let site = engine.get(&format!("/sites/{id}")).expect("site").body;
    assert_eq!(site["ssh"]["host_keys"], json!([first_key]), "{site}");
    second.shutdown().await;
}

/// `yardmaster simulate` as a child process, killed when dropped.
struct Simulator(Child);

impl Drop for Simulator {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn keygen(path: &std::path::Path) {
    let status = Command::new("ssh-keygen")
        .args([
            "-q",
            "-t",
            "ed25519",
            "-N",
            "",
            "-C",
            "yardmaster-test",
            "-f",
        ])
        .arg(path)
        .stdin(Stdio::null())
        .status()
        .expect("ssh-keygen runs");
    assert!(status.success(), "ssh-keygen");
}

#[test]
fn the_simulator_takes_a_key_login_from_its_authorized_keys_file() {
    let dir = tempfile::tempdir().expect("tmp");
    let (key, stranger) = (dir.path().join("key"), dir.path().join("stranger"));
    keygen(&key);
    keygen(&stranger);
    let authorized = dir.path().join("authorized_keys");
    std::fs::copy(key.with_extension("pub"), &authorized).expect("authorized_keys");
    let ssh_port = std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let mut child = Command::new(binary())
        .args([
            "simulate",
            "--routers",
            "1",
            "--bind",
            "127.63.6.1",
            "--no-tls",
        ])
        .args(["--ssh-port", &ssh_port.to_string(), "--ssh-authorized-keys"])
        .arg(&authorized)
        .args(["--password", PASSWORD])
        .env("YARDMASTER_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("the simulator starts");
    let stdout = child.stdout.take().expect("stdout");
    let simulator = Simulator(child);
    let mut ssh_line = String::new();
    for line in BufReader::new(stdout).lines() {
        let line = line.expect("the simulator prints");
        if line.starts_with("ssh:") {
            ssh_line = line.clone();
        }
        if line == "ready" {
            break;
        }
    }
    assert!(ssh_line.contains("authorized keys"), "{ssh_line}");
    let fingerprint = ssh_line
        .split_whitespace()
        .find(|w| w.starts_with("SHA256:"))
        .unwrap_or_else(|| panic!("no host key in {ssh_line}"))
        .to_owned();

    let engine = Engine::start(EngineOptions {
        bundled: true,
        config: "[runner]\nmax_attempts = 1\n".into(),
        ..EngineOptions::default()
    });
    let addr = SocketAddr::from((Ipv4Addr::new(127, 63, 6, 1), ssh_port));
    let read = |path: &std::path::Path| std::fs::read_to_string(path).expect("key");
    // The host key is pinned up front, as an operator who read the simulator's output
    // would; no password at all.
    let id = ssh_site(
        &engine,
        addr,
        "by-key",
        json!({"private_key": read(&key), "ssh": {"host_keys": [fingerprint]}}),
    );
    let done = run_job(
        &engine,
        &id,
        json!({"description": "key", "script": ":put [/system identity get name]\n"}),
    );
    assert_eq!(done["status"], "completed", "{done}\n{}", engine.log());
    assert!(
        done["output"]
            .as_str()
            .unwrap_or_default()
            .contains("router-0"),
        "{done}"
    );

    let id = ssh_site(
        &engine,
        addr,
        "by-stranger",
        json!({"private_key": read(&stranger), "ssh": {"host_keys": [fingerprint]}}),
    );
    let failed = run_job(
        &engine,
        &id,
        json!({"description": "key", "script": ":put [/system identity get name]\n"}),
    );
    assert_eq!(failed["status"], "failed", "{failed}");
    assert_eq!(failed["error"]["code"], "auth", "{failed}");
    drop(simulator);
}
