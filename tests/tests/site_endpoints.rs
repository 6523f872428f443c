//! A site's credentials stay with its endpoint, and sites reach only the addresses the
//! operator permits (`[sites] allow`), tried the way an attacker would against the real
//! binary: a second user of the organization who may manage sites but never read their
//! passwords re-points a site at a listener of theirs, and sites are aimed at loopback,
//! at cloud metadata addresses and at names that resolve to loopback.
//!
//! The attacker's listener is a plain TCP listener on loopback that records every byte
//! it receives; a RouterOS API login carries the password in the clear, so the old
//! password reaching it would show in those bytes.

use std::io::Read;
use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};
use yardmaster::simulate::Profile;
use yardmaster_tests::{Engine, EngineOptions, Response, TEST_ORG, eventually, fleet, http_as};

const PASSWORD: &str = "the-routers-real-password";

/// A listener that records what connects to it and every byte it is sent; it stops when
/// dropped.
struct Capture {
    addr: SocketAddr,
    received: Arc<Mutex<(usize, Vec<u8>)>>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Capture {
    fn start() -> Capture {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind the capture");
        listener.set_nonblocking(true).expect("nonblocking");
        let addr = listener.local_addr().expect("address");
        let received = Arc::new(Mutex::new((0, Vec::new())));
        let stop = Arc::new(AtomicBool::new(false));
        let (sink, stopped) = (received.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            while !stopped.load(Ordering::Relaxed) {
                let Ok((mut conn, _)) = listener.accept() else {
                    std::thread::sleep(Duration::from_millis(20));
                    continue;
                };
                let _ = conn.set_nonblocking(false);
                let _ = conn.set_read_timeout(Some(Duration::from_secs(5)));
                if let Ok(mut got) = sink.lock() {
                    got.0 += 1;
                }
                // Read the first API sentence (the login, which ends with an empty
                // word), then hang up so the caller fails at once.
                let mut buf = [0u8; 4096];
                while let Ok(n) = conn.read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                    if let Ok(mut got) = sink.lock() {
                        got.1.extend_from_slice(&buf[..n]);
                    }
                    if buf[..n].contains(&0) {
                        break;
                    }
                }
            }
        });
        Capture {
            addr,
            received,
            stop,
            thread: Some(thread),
        }
    }

    /// Connections accepted and bytes received so far.
    fn seen(&self) -> (usize, Vec<u8>) {
        self.received.lock().map(|g| g.clone()).unwrap_or_default()
    }
}

impl Drop for Capture {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w == needle.as_bytes())
}

fn call(engine: &Engine, token: &str, method: &str, path: &str, body: Option<&Value>) -> Response {
    http_as(engine.addr, method, path, body, Some(token)).expect("the engine answers")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_repointed_site_never_sends_its_old_password_to_the_new_address() {
    let fleet = fleet(Ipv4Addr::new(127, 61, 0, 1), 1, Profile::V7_18, PASSWORD).await;
    let router = fleet.addresses()[0];
    let capture = Capture::start();
    let engine = Engine::start(EngineOptions {
        bundled: true,
        ..EngineOptions::default()
    });
    let admin = engine.token_for(
        "alice",
        TEST_ORG,
        &["site:view", "site:manage", "script:run", "script:view"],
        3600,
    );
    // A second user of the same organization: may manage sites and run commands, but no
    // response ever shows a password.
    let mallory = engine.token_for(
        "mallory",
        TEST_ORG,
        &["site:view", "site:manage", "script:run", "script:view"],
        3600,
    );

    // Loopback is listed in this engine's `[sites] allow`, so the router is accepted.
    let created = call(
        &engine,
        &admin,
        "POST",
        "/sites",
        Some(&json!({
            "name": "core-1",
            "address": router.ip().to_string(),
            "port": router.port(),
            "username": "admin",
            "password": PASSWORD,
        })),
    );
    assert_eq!(created.status, 201, "{}", created.text);
    let id = created.body["id"].as_str().expect("id").to_owned();
    let identity = json!({"command": "/system/identity/print"});
    let sync = format!("/api/synchronous/{id}");
    let works = call(&engine, &admin, "POST", &sync, Some(&identity));
    assert_eq!(works.status, 200, "{}\n{}", works.text, engine.log());

    // Mallory points the site at their listener and leaves the password out.
    let mut repointed = created.body.clone();
    repointed["address"] = json!(capture.addr.ip().to_string());
    repointed["port"] = json!(capture.addr.port());
    let updated = call(
        &engine,
        &mallory,
        "PUT",
        &format!("/sites/{id}"),
        Some(&repointed),
    );
    assert_eq!(updated.status, 200, "{}", updated.text);
    assert_eq!(updated.body["has_password"], false, "{}", updated.text);
    let shown = call(&engine, &admin, "GET", &format!("/sites/{id}"), None);
    assert_eq!(shown.body["has_password"], false);

    // A synchronous call is refused before anything connects, naming the field.
    let refused = call(&engine, &mallory, "POST", &sync, Some(&identity));
    assert_eq!(refused.status, 409, "{}", refused.text);
    assert_eq!(refused.body["code"], "password_missing");
    let message = refused.body["message"].as_str().unwrap_or_default();
    assert!(message.contains("`password`"), "{message}");

    // So does a job: it fails, naming the password, and nothing is retried.
    let job = json!({
        "description": "collect the password",
        "script": ":log info \"never runs\"",
    });
    let submitted = call(
        &engine,
        &mallory,
        "POST",
        &format!("/api/asynchronous/{id}"),
        Some(&job),
    );
    assert!(
        submitted.status == 200 || submitted.status == 202,
        "{}",
        submitted.text
    );
    let failed = eventually("the job to fail", || {
        let list = call(
            &engine,
            &admin,
            "GET",
            &format!("/api/routers/{id}/jobs"),
            None,
        );
        let job = list.body["data"].as_array()?.first()?.clone();
        assert_ne!(job["status"], "completed", "{job}");
        (job["status"] == "failed").then_some(job)
    });
    assert_eq!(failed["error"]["code"], "password-missing", "{failed}");
    let reason = failed["error"]["message"].as_str().unwrap_or_default();
    assert!(reason.contains("`password`"), "{reason}");

    // Nothing ever reached the attacker's listener: no connection, no byte.
    let (connections, bytes) = capture.seen();
    assert_eq!(connections, 0, "the engine connected to the new address");
    assert!(!contains(&bytes, PASSWORD));

    // The listener does see a login when the site has a password for it, so its silence
    // above is the engine's doing: with a password of their own, Mallory gets only that.
    repointed["password"] = json!("mallorys-own-password");
    let updated = call(
        &engine,
        &mallory,
        "PUT",
        &format!("/sites/{id}"),
        Some(&repointed),
    );
    assert_eq!(updated.status, 200, "{}", updated.text);
    assert_eq!(updated.body["has_password"], true);
    let answered = call(&engine, &mallory, "POST", &sync, Some(&identity));
    assert_ne!(answered.status, 200, "{}", answered.text);
    let (connections, bytes) = eventually("the login to reach the listener", || {
        let seen = capture.seen();
        contains(&seen.1, "mallorys-own-password").then_some(seen)
    });
    assert!(connections >= 1);
    assert!(
        !contains(&bytes, PASSWORD),
        "the old password reached the new address"
    );
    assert!(!engine.log().contains(PASSWORD));
}

#[test]
fn loopback_and_metadata_addresses_are_refused_unless_the_operator_lists_them() {
    let capture = Capture::start();
    // `[sites]` without `allow`: the default policy, loopback refused.
    let engine = Engine::start(EngineOptions {
        bundled: true,
        config: "[sites]\n".into(),
        ..EngineOptions::default()
    });
    let admin = engine.token_for(
        "alice",
        TEST_ORG,
        &["site:view", "site:manage", "script:run"],
        3600,
    );
    let site = |name: &str, address: &str| {
        json!({"name": name, "address": address, "port": capture.addr.port(),
               "username": "admin", "password": PASSWORD})
    };

    for address in [
        "127.0.0.1",
        "127.3.2.1",
        "::1",
        "0.0.0.0",
        "169.254.169.254",
        "100.100.100.200",
        "fd00:ec2::254",
        "metadata.google.internal",
    ] {
        let refused = call(&engine, &admin, "POST", "/sites", Some(&site("r", address)));
        assert_eq!(refused.status, 422, "{address}: {}", refused.text);
        let message = refused.body["message"].as_str().unwrap_or_default();
        assert!(
            message.contains(&format!("`{address}`")) && message.contains("[sites] allow"),
            "{address}: {message}"
        );
    }

    // An update to a refused address is refused too, and changes nothing.
    let created = call(
        &engine,
        &admin,
        "POST",
        "/sites",
        Some(&site("edge", "192.0.2.10")),
    );
    assert_eq!(created.status, 201, "{}", created.text);
    let id = created.body["id"].as_str().expect("id").to_owned();
    let moved = call(
        &engine,
        &admin,
        "PUT",
        &format!("/sites/{id}"),
        Some(&site("edge", "127.0.0.1")),
    );
    assert_eq!(moved.status, 422, "{}", moved.text);
    assert!(moved.text.contains("127.0.0.1"), "{}", moved.text);
    let shown = call(&engine, &admin, "GET", &format!("/sites/{id}"), None);
    assert_eq!(shown.body["address"], "192.0.2.10");

    // An import with one refused row writes nothing and names the row.
    let rows = json!([site("a", "192.0.2.11"), site("b", "169.254.169.254")]);
    let refused = call(&engine, &admin, "POST", "/sites/import", Some(&rows));
    assert_eq!(refused.status, 422, "{}", refused.text);
    assert_eq!(refused.body["errors"][0]["row"], 2, "{}", refused.text);
    assert_eq!(refused.body["errors"][0]["field"], "address");

    // A name is accepted as written; what it resolves to is checked when the engine
    // connects, on the address it connects to.
    let named = call(
        &engine,
        &admin,
        "POST",
        "/sites",
        Some(&site("named", "localhost")),
    );
    assert_eq!(named.status, 201, "{}", named.text);
    let id = named.body["id"].as_str().expect("id");
    let answer = call(
        &engine,
        &admin,
        "POST",
        &format!("/api/synchronous/{id}"),
        Some(&json!({"command": "/system/identity/print"})),
    );
    assert_eq!(answer.status, 502, "{}", answer.text);
    let message = answer.body["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("site address localhost resolves to")
            && message.contains("which [sites] allow does not permit"),
        "{message}\n{}",
        engine.log()
    );
    let (connections, bytes) = capture.seen();
    assert_eq!(connections, 0, "nothing may connect to loopback");
    assert!(bytes.is_empty());
}
