//! Sites and seed 001's jobs through the HTTP API of the real binary, against a
//! simulated fleet on 127.9.0.x: import the fleet as sites in one call (after a refused
//! import that wrote nothing), call `/system/identity/print` synchronously, submit an
//! asynchronous job twice under one idempotency key, and see it completed once in the
//! router's job list, with the router's own log proving the script ran exactly once.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::time::Duration;

use chrono::{TimeDelta, Utc};
use serde_json::{Value, json};
use yardmaster::auth::{Authenticator, Claims};
use yardmaster::simulate::Profile;
use yardmaster::store::{Page, Store};
use yardmaster_tests::{Engine, EngineOptions, PATIENCE, eventually, fleet};

const ROUTERS: usize = 12;
const PASSWORD: &str = "fleet-pw-never-shown";

/// One request with a bearer token: status, JSON body (or `Null`) and the body's text.
fn call(
    addr: SocketAddr,
    method: &str,
    path: &str,
    token: &str,
    content_type: &str,
    body: &str,
) -> (u16, Value, String) {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(10)).expect("connect");
    stream.set_read_timeout(Some(PATIENCE)).expect("timeout");
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nAuthorization: Bearer {token}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).expect("send");
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).expect("read");
    let raw = String::from_utf8(raw).expect("UTF-8 response");
    let (head, mut rest) = raw.split_once("\r\n\r\n").expect("an HTTP response");
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("a status");
    let text = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        let mut out = String::new();
        while let Some((size, tail)) = rest.split_once("\r\n") {
            let size = usize::from_str_radix(size.trim(), 16).expect("chunk size");
            if size == 0 {
                break;
            }
            out.push_str(&tail[..size]);
            rest = &tail[size + 2..];
        }
        out
    } else {
        rest.to_owned()
    };
    let json = serde_json::from_str(&text).unwrap_or(Value::Null);
    (status, json, text)
}

fn json_call(
    addr: SocketAddr,
    method: &str,
    path: &str,
    token: &str,
    body: Option<&Value>,
) -> (u16, Value, String) {
    let body = body.map(Value::to_string).unwrap_or_default();
    call(addr, method, path, token, "application/json", &body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_fleet_imported_in_one_call_runs_a_synchronous_read_and_an_idempotent_job_once() {
    let fleet = fleet(
        Ipv4Addr::new(127, 9, 0, 1),
        ROUTERS,
        Profile::V7_18,
        PASSWORD,
    )
    .await;
    let engine = Engine::start(EngineOptions {
        bundled: true,
        ..EngineOptions::default()
    });
    let addr = engine.addr;
    let data = engine.dir.path().join("data");
    let auth = Authenticator::open(&data).expect("the engine's token key");
    let token = |sub: &str, org: &str, scopes: &[&str]| {
        auth.issue(&Claims::new(
            sub,
            org,
            scopes.iter().map(|s| s.to_string()).collect(),
            Utc::now(),
            TimeDelta::hours(1),
        ))
    };
    let admin = token(
        "alice",
        "acme",
        &["site:view", "site:manage", "script:run", "script:view"],
    );

    // A JSON import with one bad row is refused whole: nothing is written.
    let mut rows: Vec<Value> = fleet
        .addresses()
        .iter()
        .enumerate()
        .map(|(i, a)| {
            json!({
                "name": format!("router-{i:02}"),
                "address": a.ip().to_string(),
                "port": a.port(),
                "username": "admin",
                "password": PASSWORD,
                "tags": ["e2e"],
            })
        })
        .collect();
    rows[5]["port"] = json!("eighty");
    let (status, refused, text) =
        json_call(addr, "POST", "/sites/import", &admin, Some(&json!(rows)));
    assert_eq!(status, 422, "{text}");
    assert_eq!(refused["code"], "import_rejected");
    assert_eq!(
        refused["errors"],
        json!([{"row": 6, "field": "port", "message": "must be a port number from 1 to 65535"}])
    );
    let (_, listed, _) = json_call(addr, "GET", "/sites", &admin, None);
    assert_eq!(listed["total"], 0, "{listed}");

    // The fleet as CSV, in one call.
    let mut csv = String::from("name,address,port,username,password,tags\r\n");
    for (i, a) in fleet.addresses().iter().enumerate() {
        csv.push_str(&format!(
            "router-{i:02},{},{},admin,{PASSWORD},e2e;edge\r\n",
            a.ip(),
            a.port()
        ));
    }
    let (status, report, text) = call(addr, "POST", "/sites/import", &admin, "text/csv", &csv);
    assert_eq!(status, 201, "{text}\n{}", engine.log());
    assert_eq!(report["created"], ROUTERS);
    assert!(!text.contains(PASSWORD));
    let site_ids: Vec<String> = report["results"]
        .as_array()
        .expect("results")
        .iter()
        .map(|r| r["id"].as_str().expect("id").to_owned())
        .collect();

    let (status, page, text) = json_call(
        addr,
        "GET",
        "/sites?tag=edge&page_size=5&page=3",
        &admin,
        None,
    );
    assert_eq!(status, 200, "{text}");
    assert_eq!(page["total"], ROUTERS);
    assert_eq!(page["data"][0]["name"], "router-10");
    assert_eq!(page["data"][0]["has_password"], true);
    assert!(!text.contains(PASSWORD));

    // Another organization sees none of it.
    let stranger = token(
        "mallory",
        "globex",
        &["site:view", "script:run", "script:view"],
    );
    let (status, _, _) = json_call(
        addr,
        "GET",
        &format!("/sites/{}", site_ids[0]),
        &stranger,
        None,
    );
    assert_eq!(status, 404);

    // A synchronous read through the RouterOS plugin.
    let (status, identity, text) = json_call(
        addr,
        "POST",
        &format!("/api/synchronous/{}", site_ids[3]),
        &admin,
        Some(&json!({"command": "/system/identity/print"})),
    );
    assert_eq!(status, 200, "{text}\n{}", engine.log());
    assert_eq!(identity["status"], "success");
    assert_eq!(
        identity["data"][0]["name"],
        fleet.router(3).identity().as_str(),
        "{text}"
    );
    let (status, _, _) = json_call(
        addr,
        "POST",
        &format!("/api/synchronous/{}", site_ids[3]),
        &stranger,
        Some(&json!({"command": "/system/identity/print"})),
    );
    assert_eq!(status, 404);

    // A router's own refusal of the command is the caller's to fix: 422, never a 500.
    let (status, trap, text) = json_call(
        addr,
        "POST",
        &format!("/api/synchronous/{}", site_ids[3]),
        &admin,
        Some(&json!({"command": "/ip/nothing/print"})),
    );
    assert_eq!(status, 422, "{text}");
    assert_eq!(trap["code"], "router_trap");
    let (_, mut site, _) = json_call(
        addr,
        "GET",
        &format!("/sites/{}", site_ids[4]),
        &admin,
        None,
    );
    site["password"] = json!("wrong");
    let (status, _, text) = json_call(
        addr,
        "PUT",
        &format!("/sites/{}", site_ids[4]),
        &admin,
        Some(&site),
    );
    assert_eq!(status, 200, "{text}");
    let (status, denied, text) = json_call(
        addr,
        "POST",
        &format!("/api/synchronous/{}", site_ids[4]),
        &admin,
        Some(&json!({"command": "/system/identity/print", "parameters": "=.proplist=name"})),
    );
    assert_eq!(status, 502, "{text}");
    assert_eq!(denied["code"], "router_auth_failed", "{text}");
    assert!(!text.contains(PASSWORD));

    // The same asynchronous job twice at once, under one key: one job, run once.
    let router = site_ids[7].clone();
    let job = json!({
        "description": "Log test message",
        "script": ":log info \"api-sites-jobs-once\"",
        "make_backup": false,
        "express_execute": false,
        "needs_acknowledgement": true,
        "notify_url": "https://example.com/notify",
        "idempotency_key": "e2e-once",
    });
    let submit = {
        let (router, admin, job) = (router.clone(), admin.clone(), job.clone());
        move || {
            json_call(
                addr,
                "POST",
                &format!("/api/asynchronous/{router}"),
                &admin,
                Some(&job),
            )
        }
    };
    let (a, b) = std::thread::scope(|s| {
        let a = s.spawn(submit.clone());
        let b = s.spawn(submit.clone());
        (a.join().expect("first"), b.join().expect("second"))
    });
    let mut statuses = [a.0, b.0];
    statuses.sort();
    assert_eq!(statuses, [200, 202], "{}\n{}", a.2, b.2);
    assert_eq!(a.1["data"]["request_id"], b.1["data"]["request_id"]);
    assert_eq!(a.1["data"]["target"], router.as_str());
    assert_eq!(a.1["data"]["idempotency_key"], "e2e-once");

    let jobs_path = format!("/api/routers/{router}/jobs");
    let done = eventually("the job to complete", || {
        let (status, list, text) = json_call(addr, "GET", &jobs_path, &admin, None);
        assert_eq!(status, 200, "{text}");
        let job = list["data"].as_array()?.first()?.clone();
        assert_ne!(job["status"], "failed", "{job}\n{}", engine.log());
        (job["status"] == "completed").then_some(list)
    });
    assert_eq!(done["total"], 1, "one job for the key: {done}");
    let listed = &done["data"][0];
    assert_eq!(listed["idempotency_key"], "e2e-once");
    assert_eq!(listed["token"], a.1["data"]["request_id"]);
    assert!(
        listed["completed_at"]
            .as_str()
            .is_some_and(|t| t.ends_with("+00:00"))
    );

    // Submitted again after it ran: the same job, and nothing new to run. A second job
    // on the router, run after that, shows the queue has moved past the first.
    let (status, again, _) = submit();
    assert_eq!(status, 200);
    assert_eq!(again["data"]["request_id"], a.1["data"]["request_id"]);
    let (status, _, text) = json_call(
        addr,
        "POST",
        &format!("/api/asynchronous/{router}"),
        &admin,
        Some(&json!({
            "description": "After",
            "script": ":log info \"api-sites-jobs-after\"",
            "express_execute": true,
            "idempotency_key": "e2e-after",
        })),
    );
    assert_eq!(status, 202, "{text}");
    eventually("the second job to complete", || {
        let (_, list, _) = json_call(addr, "GET", &jobs_path, &admin, None);
        (list["total"] == 2 && list["data"][0]["status"] == "completed").then_some(())
    });
    let log = fleet.router(7).log_messages();
    assert_eq!(
        log.iter().filter(|m| *m == "api-sites-jobs-once").count(),
        1,
        "the router's log: {log:?}"
    );
    assert_eq!(
        log.iter().filter(|m| *m == "api-sites-jobs-after").count(),
        1
    );
    for (i, router) in fleet.routers().enumerate() {
        if i != 7 {
            assert!(
                !router
                    .log_messages()
                    .iter()
                    .any(|m| m.starts_with("api-sites-jobs")),
                "router {i} ran a script meant for router 7"
            );
        }
    }

    let id = listed["id"].as_str().expect("id");
    let (status, shown, text) = json_call(addr, "GET", &format!("/api/jobs/{id}"), &admin, None);
    assert_eq!(status, 200, "{text}");
    assert_eq!(shown["data"]["status"], "completed");
    assert_eq!(shown["data"]["attempts"], 1);
    let (status, _, _) = json_call(addr, "GET", &format!("/api/jobs/{id}"), &stranger, None);
    assert_eq!(status, 404);

    // Every synchronous call is in the audit log, the password of none of them.
    let dir = engine.kill();
    let store = Store::open(dir.path().join("data")).expect("store after stop");
    let audit = store.list_audit(&Page::first(100)).expect("audit");
    let calls: Vec<_> = audit
        .iter()
        .filter(|e| e.action == "site.sync_call")
        .collect();
    assert_eq!(calls.len(), 3, "{audit:?}");
    assert!(
        calls
            .iter()
            .all(|e| e.actor == "alice" && e.organization == "acme")
    );
    assert_eq!(calls[0].target, site_ids[3]);
    assert_eq!(calls[0].detail["command"], "/system/identity/print");
    assert!(!format!("{audit:?}").contains(PASSWORD));
}
