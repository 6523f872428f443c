//! Limits against one noisy or curious tenant, through the real binary: an organization
//! whose synchronous calls or jobs go to routers that never answer leaves room for
//! another's jobs; a client that sends its headers slowly, or nothing, is disconnected; a backup
//! taken before a job is sealed in the database and shown only with `site:backup`.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use serde_json::{Value, json};
use yardmaster::simulate::Profile;
use yardmaster_tests::{Engine, EngineOptions, PATIENCE, eventually, fleet, http_as};

const PASSWORD: &str = "limits-fleet-pw";

/// A loopback listener that accepts every connection and never answers: a router that
/// blackholes the API. Counts what it accepted; stops when dropped.
struct Blackhole {
    addr: SocketAddr,
    accepted: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Blackhole {
    fn start() -> Blackhole {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.set_nonblocking(true).expect("nonblocking");
        let addr = listener.local_addr().expect("addr");
        let accepted = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (accepted, stop) = (accepted.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut held = Vec::new();
                while !stop.load(Ordering::Relaxed) {
                    match listener.accept() {
                        Ok((stream, _)) => {
                            held.push(stream);
                            accepted.fetch_add(1, Ordering::SeqCst);
                        }
                        Err(_) => std::thread::sleep(Duration::from_millis(10)),
                    }
                }
            })
        };
        Blackhole {
            addr,
            accepted,
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for Blackhole {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn create_site(engine: &Engine, token: &str, name: &str, addr: SocketAddr) -> String {
    let site = engine
        .post_as(
            "/sites",
            &json!({
                "name": name,
                "address": addr.ip().to_string(),
                "port": addr.port(),
                "username": "admin",
                "password": PASSWORD,
            }),
            Some(token),
        )
        .expect("create site");
    assert_eq!(site.status, 201, "{}", site.text);
    site.body["id"].as_str().expect("site id").to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_organizations_blackholed_calls_leave_room_for_anothers_job() {
    let routers = fleet(Ipv4Addr::new(127, 9, 3, 1), 1, Profile::V7_18, PASSWORD).await;
    let blackhole = Blackhole::start();
    let engine = Engine::start(EngineOptions {
        bundled: true,
        // Two calls at once in all, one per organization. The plugin's own deadline is
        // long, so a blackholed call holds its place until the test is over.
        config: "max_concurrent_plugin_calls = 2\norganization_plugin_call_share = 0.5\n\
                 [plugin_defaults]\ntimeout = \"10m\"\n"
            .into(),
        ..EngineOptions::default()
    });
    let scopes = ["site:manage", "site:view", "script:run", "script:view"];
    let noisy = engine.token_for("mallory", "noisy", &scopes, 3600);
    let quiet = engine.token_for("alice", "quiet", &scopes, 3600);
    let dark = create_site(&engine, &noisy, "dark", blackhole.addr);
    let router = create_site(&engine, &quiet, "r1", routers.fleet.addresses()[0]);

    // The noisy organization fires four synchronous reads at the router that never
    // answers; each blocks its caller.
    let finished = Arc::new(AtomicUsize::new(0));
    let callers: Vec<_> = (0..4)
        .map(|_| {
            let (addr, token, path, finished) = (
                engine.addr,
                noisy.clone(),
                format!("/api/synchronous/{dark}"),
                finished.clone(),
            );
            std::thread::spawn(move || {
                let _ = http_as(
                    addr,
                    "POST",
                    &path,
                    Some(&json!({"command": "/system/identity/print"})),
                    Some(&token),
                );
                finished.fetch_add(1, Ordering::SeqCst);
            })
        })
        .collect();
    eventually("a blackholed call to hold its place", || {
        (blackhole.accepted.load(Ordering::SeqCst) >= 1).then_some(())
    });

    // The quiet organization's job still runs to the end.
    let submitted = engine
        .post_as(
            &format!("/api/asynchronous/{router}"),
            &json!({
                "description": "Quiet job",
                "script": ":log info \"quiet-org-job\"",
                "express_execute": true,
            }),
            Some(&quiet),
        )
        .expect("submit");
    assert_eq!(submitted.status, 202, "{}", submitted.text);
    let jobs_path = format!("/api/routers/{router}/jobs");
    let status = eventually("the quiet organization's job to finish", || {
        let list = engine.get_as(&jobs_path, Some(&quiet)).ok()?;
        let status = list.body["data"][0]["status"].as_str()?.to_owned();
        matches!(status.as_str(), "completed" | "failed").then_some(status)
    });
    assert_eq!(status, "completed", "{}", engine.log());
    assert_eq!(
        finished.load(Ordering::SeqCst),
        0,
        "the quiet job had to wait for blackholed calls to end"
    );
    assert_eq!(
        blackhole.accepted.load(Ordering::SeqCst),
        1,
        "the noisy organization held no more than its share of the calls"
    );
    assert!(
        routers
            .fleet
            .routers()
            .next()
            .is_some_and(|r| r.log_messages().iter().any(|m| m == "quiet-org-job")),
        "the script reached the router"
    );

    drop(engine);
    for caller in callers {
        let _ = caller.join();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_organizations_stuck_jobs_leave_room_for_anothers() {
    let routers = fleet(Ipv4Addr::new(127, 9, 5, 1), 1, Profile::V7_18, PASSWORD).await;
    let blackhole = Blackhole::start();
    let engine = Engine::start(EngineOptions {
        bundled: true,
        // Two jobs at once in all, one per organization.
        config: "[runner]\nmax_jobs = 2\norganization_share = 0.5\n\
                 [plugin_defaults]\ntimeout = \"10m\"\n"
            .into(),
        ..EngineOptions::default()
    });
    let scopes = ["site:manage", "site:view", "script:run", "script:view"];
    let noisy = engine.token_for("mallory", "noisy", &scopes, 3600);
    let quiet = engine.token_for("alice", "quiet", &scopes, 3600);
    let dark = create_site(&engine, &noisy, "dark", blackhole.addr);
    let router = create_site(&engine, &quiet, "r1", routers.fleet.addresses()[0]);
    let express = |description: &str, script: &str| json!({"description": description, "script": script, "express_execute": true});

    // The noisy organization's jobs go to a router that never answers.
    for i in 0..3 {
        let submitted = engine
            .post_as(
                &format!("/api/asynchronous/{dark}"),
                &express(&format!("Stuck {i}"), ":log info \"stuck\""),
                Some(&noisy),
            )
            .expect("submit");
        assert_eq!(submitted.status, 202, "{}", submitted.text);
    }
    eventually("a stuck job to hold its slot", || {
        (blackhole.accepted.load(Ordering::SeqCst) >= 1).then_some(())
    });

    let submitted = engine
        .post_as(
            &format!("/api/asynchronous/{router}"),
            &express("Quiet job", ":log info \"quiet-org-express\""),
            Some(&quiet),
        )
        .expect("submit");
    assert_eq!(submitted.status, 202, "{}", submitted.text);
    let status = eventually("the quiet organization's job to finish", || {
        let list = engine
            .get_as(&format!("/api/routers/{router}/jobs"), Some(&quiet))
            .ok()?;
        let status = list.body["data"][0]["status"].as_str()?.to_owned();
        matches!(status.as_str(), "completed" | "failed").then_some(status)
    });
    assert_eq!(status, "completed", "{}", engine.log());
    let stuck = engine
        .get_as(&format!("/api/routers/{dark}/jobs"), Some(&noisy))
        .expect("list");
    let statuses: Vec<&str> = stuck.body["data"]
        .as_array()
        .expect("jobs")
        .iter()
        .filter_map(|j| j["status"].as_str())
        .collect();
    assert_eq!(statuses.len(), 3, "{}", stuck.text);
    assert!(
        statuses.iter().all(|s| matches!(*s, "pending" | "running")),
        "the quiet job had to wait for stuck jobs to end: {statuses:?}"
    );
    assert_eq!(
        blackhole.accepted.load(Ordering::SeqCst),
        1,
        "the noisy organization held no more than its share of the job slots"
    );
}

/// Reads until the engine closes the connection, or `PATIENCE` passes; whether it
/// closed it.
fn closed_by_server(stream: &mut TcpStream) -> bool {
    stream.set_read_timeout(Some(PATIENCE)).expect("timeout");
    let mut buf = [0u8; 1024];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => {}
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                return false;
            }
            Err(_) => return true,
        }
    }
}

#[test]
fn slow_and_silent_clients_are_disconnected() {
    let engine = Engine::start(EngineOptions {
        config: "[http]\nheader_read_timeout = \"1s\"\nidle_timeout = \"2s\"\n".into(),
        ..EngineOptions::default()
    });

    // Slowloris: a header line every 200 ms, each well within the idle limit, the head
    // never complete. The engine hangs up long before 600 lines.
    let mut slow = TcpStream::connect(engine.addr).expect("connect");
    slow.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        .expect("request line");
    slow.set_read_timeout(Some(Duration::from_millis(1)))
        .expect("timeout");
    let mut sent = 0;
    while sent < 600 {
        std::thread::sleep(Duration::from_millis(200));
        if slow.write_all(b"X-Slow: 1\r\n").is_err() {
            break;
        }
        sent += 1;
        let mut probe = [0u8; 1];
        if matches!(slow.read(&mut probe), Ok(0)) {
            break;
        }
    }
    assert!(sent < 600, "the engine kept reading headers for ever");

    // A connection that sends nothing is closed.
    let mut silent = TcpStream::connect(engine.addr).expect("connect");
    assert!(
        closed_by_server(&mut silent),
        "a silent connection stayed open"
    );

    // A kept-alive connection is answered, then closed once idle.
    let mut kept = TcpStream::connect(engine.addr).expect("connect");
    kept.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .expect("request");
    assert!(
        closed_by_server(&mut kept),
        "an idle connection stayed open"
    );

    // Prompt clients are served as before.
    let health = engine.get_as("/healthz", None).expect("healthz");
    assert_eq!(health.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_backup_is_sealed_on_disk_and_shown_only_with_site_backup() {
    let routers = fleet(Ipv4Addr::new(127, 9, 4, 1), 1, Profile::V7_18, PASSWORD).await;
    let engine = Engine::start(EngineOptions {
        bundled: true,
        ..EngineOptions::default()
    });
    let runner = engine.token_for(
        "alice",
        "acme",
        &["site:manage", "script:run", "script:view"],
        3600,
    );
    let router = create_site(&engine, &runner, "r1", routers.fleet.addresses()[0]);
    let submitted = engine
        .post_as(
            &format!("/api/asynchronous/{router}"),
            &json!({
                "description": "With a backup",
                "script": ":log info \"backed-up\"",
                "make_backup": true,
                "express_execute": true,
            }),
            Some(&runner),
        )
        .expect("submit");
    assert_eq!(submitted.status, 202, "{}", submitted.text);
    let jobs_path = format!("/api/routers/{router}/jobs");
    let id = eventually("the job to complete", || {
        let list = engine.get_as(&jobs_path, Some(&runner)).ok()?;
        let job = &list.body["data"][0];
        (job["status"] == "completed").then(|| job["id"].as_str().map(str::to_owned))?
    });
    let job_path = format!("/api/jobs/{id}");

    // A second user of the organization who reads jobs but holds no `site:backup`.
    let viewer = engine.token_for("bob", "acme", &["script:view"], 3600);
    let shown = engine.get_as(&job_path, Some(&viewer)).expect("show");
    assert_eq!(shown.status, 200, "{}", shown.text);
    assert_eq!(shown.body["data"]["has_backup"], true);
    assert_eq!(shown.body["data"]["backup"], Value::Null);
    assert_eq!(shown.body["data"]["backup_withheld"], true);
    // A user of another organization with `site:backup` does not find the job.
    let stranger = engine.token_for("eve", "globex", &["script:view", "site:backup"], 3600);
    let refused = engine.get_as(&job_path, Some(&stranger)).expect("show");
    assert_eq!(refused.status, 404, "{}", refused.text);

    let auditor = engine.token_for("carol", "acme", &["script:view", "site:backup"], 3600);
    let shown = engine.get_as(&job_path, Some(&auditor)).expect("show");
    let backup = shown.body["data"]["backup"]
        .as_str()
        .expect("the backup, to a holder of site:backup")
        .to_owned();
    assert!(!backup.is_empty());
    assert!(!refused.text.contains(&backup) && !refused.text.contains("/system"));

    // The export is nowhere in the database file in the clear.
    let db = std::fs::read(engine.data_dir().join("yardmaster.redb")).expect("database");
    let needle = backup
        .lines()
        .map(str::trim)
        .filter(|l| l.len() >= 12)
        .max_by_key(|l| l.len())
        .expect("a line of the export")
        .to_owned();
    assert!(
        !db.windows(needle.len()).any(|w| w == needle.as_bytes()),
        "`{needle}` is in the database file in the clear"
    );
}
