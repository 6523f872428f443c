//! Scheduled scripts through the HTTP API of the real binary, against a simulated fleet
//! on 127.10.0.x: create a schedule a few seconds ahead, request and give approval as a
//! second user, watch every site complete, read the run history, and check on each
//! router's own log that the script ran there exactly once.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::time::Duration;

use chrono::{TimeDelta, Utc};
use serde_json::{Value, json};
use yardmaster::auth::{Authenticator, Claims};
use yardmaster::simulate::Profile;
use yardmaster::store::{Secret, SiteInput, Store, User};
use yardmaster_tests::{Engine, EngineOptions, PATIENCE, eventually, fleet};

const ROUTERS: usize = 4;

/// One request with a bearer token; the status and the JSON body.
fn call(
    addr: SocketAddr,
    method: &str,
    path: &str,
    token: &str,
    body: Option<&Value>,
) -> (u16, Value) {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(10)).expect("connect");
    stream.set_read_timeout(Some(PATIENCE)).expect("timeout");
    let payload = body.map(Value::to_string).unwrap_or_default();
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nAuthorization: Bearer {token}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{payload}",
        payload.len()
    );
    stream.write_all(request.as_bytes()).expect("send");
    let mut raw = String::new();
    stream.read_to_string(&mut raw).expect("read");
    let (head, body) = raw.split_once("\r\n\r\n").expect("an HTTP response");
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("a status");
    // Bodies here are small JSON documents; a chunked one is one chunk.
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        body.split_once("\r\n").map_or("", |(_, rest)| rest)
    } else {
        body
    };
    let json = serde_json::Deserializer::from_str(body)
        .into_iter::<Value>()
        .next()
        .and_then(Result::ok)
        .unwrap_or(Value::Null);
    (status, json)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_schedule_made_and_approved_through_the_api_runs_once_on_every_site() {
    let fleet = fleet(Ipv4Addr::new(127, 10, 0, 1), ROUTERS, Profile::V7_18, "pw").await;

    // Sites, users and the token key go into the data dir before the engine starts.
    let dir = tempfile::tempdir().expect("tmp");
    let data = dir.path().join("data");
    let now = Utc::now();
    let mut sites = Vec::new();
    {
        let store = Store::open(&data).expect("store");
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
        for (i, addr) in fleet.addresses().iter().enumerate() {
            let site = store
                .create_site(
                    SiteInput {
                        organization: "acme".into(),
                        name: format!("router-{i}"),
                        address: addr.ip().to_string(),
                        port: Some(addr.port()),
                        transport: "routeros-api".into(),
                        username: "admin".into(),
                        password: Some(Secret::new("pw")),
                        tls: Default::default(),
                        tags: Vec::new(),
                        private_key: None,
                        private_key_passphrase: None,
                        ssh: None,
                    },
                    now,
                )
                .expect("site");
            sites.push(site.id);
        }
    }
    let auth = Authenticator::open(&data).expect("token key");
    let token = |sub: &str, scopes: &[&str]| {
        auth.issue(&Claims::new(
            sub,
            "acme",
            scopes.iter().map(|s| s.to_string()).collect(),
            Utc::now(),
            TimeDelta::hours(1),
        ))
    };
    let alice = token(
        "alice",
        &["script:view", "script:create", "script:authorize"],
    );
    let bob = token("bob", &["script:view", "script:authorize"]);

    let engine = Engine::start(EngineOptions {
        bundled: true,
        reuse: Some(dir),
        ..EngineOptions::default()
    });
    let addr = engine.addr;

    let (status, created) = call(
        addr,
        "POST",
        "/scripts/scheduled",
        &alice,
        Some(&json!({
            "description": "Greeting through the API",
            "script": ":log info \"api-e2e\"",
            "launch_at": Utc::now() + TimeDelta::seconds(5),
            "sites": sites,
            "test_site_id": sites[0],
            "notify": ["bob"],
        })),
    );
    assert_eq!(status, 201, "{created}\n{}", engine.log());
    assert_eq!(created["status"], "unauthorized");
    let id = created["id"].as_str().expect("id").to_owned();
    let one = format!("/scripts/scheduled/{id}");

    let (status, requested) = call(addr, "GET", &format!("{one}/authorize"), &alice, None);
    assert_eq!(status, 200, "{requested}");
    assert_eq!(requested["data"]["recipients"], json!(["bob"]));
    assert_eq!(requested["data"]["schedule"]["status"], "unauthorized");

    let (status, refused) = call(addr, "POST", &format!("{one}/authorize"), &alice, None);
    assert_eq!(status, 403, "four eyes: {refused}");
    let (status, approved) = call(addr, "POST", &format!("{one}/authorize"), &bob, None);
    assert_eq!(status, 200, "{approved}");
    assert_eq!(approved["status"], "scheduled");
    assert_eq!(approved["authorized_by"], "bob");

    let done = eventually("every site to complete", || {
        let (status, shown) = call(addr, "GET", &one, &bob, None);
        assert_eq!(status, 200, "{shown}");
        assert!(
            shown["progress"]["failed"]
                .as_array()
                .is_some_and(Vec::is_empty),
            "a site failed: {shown}\n{}",
            engine.log()
        );
        (shown["outcome"] == "completed").then_some(shown)
    });
    assert_eq!(done["status"], "launched");
    assert!(done["started_at"].is_string());
    let mut completed: Vec<String> = done["progress"]["completed"]
        .as_array()
        .expect("completed")
        .iter()
        .filter_map(|s| s.as_str().map(str::to_owned))
        .collect();
    completed.sort();
    let mut expected = sites.clone();
    expected.sort();
    assert_eq!(completed, expected);
    assert_eq!(done["progress"]["pending"], json!([]));
    assert_eq!(done["progress"]["counts"]["completed"], ROUTERS);
    // The seed's progress route says the same, site by site.
    let (status, progress) = call(addr, "GET", &format!("{one}/progress"), &bob, None);
    assert_eq!(status, 200, "{progress}");
    let mut listed: Vec<String> = progress["completed"]
        .as_array()
        .expect("completed")
        .iter()
        .filter_map(|s| s.as_str().map(str::to_owned))
        .collect();
    listed.sort();
    assert_eq!(listed, expected);
    assert_eq!(progress["failed"], json!([]));
    assert_eq!(progress["pending"], json!([]));

    let (status, runs) = call(addr, "GET", &format!("{one}/runs"), &bob, None);
    assert_eq!(status, 200, "{runs}");
    let history = runs["runs"].as_array().expect("runs");
    assert_eq!(history.len(), 1, "{runs}");
    let run = &history[0];
    assert_eq!(run["status"], "completed");
    assert_eq!(run["counts"]["completed"], ROUTERS);
    let jobs = run["jobs"].as_array().expect("jobs");
    assert_eq!(jobs.len(), ROUTERS);
    for job in jobs {
        assert_eq!(job["status"], "completed", "{job}");
        assert!(job["completed_at"].is_string(), "{job}");
        assert!(job["error"].is_null(), "{job}");
        assert!(sites.iter().any(|s| *s == job["site_id"]), "{job}");
    }

    // Each router's own log: the script ran there once.
    let counts: Vec<usize> = fleet
        .routers()
        .map(|r| r.log_messages().iter().filter(|m| *m == "api-e2e").count())
        .collect();
    assert_eq!(counts, vec![1; ROUTERS]);

    // Listed as launched and completed; nothing left to preview.
    let (status, list) = call(addr, "GET", "/scripts/scheduled?name=greeting", &bob, None);
    assert_eq!(status, 200, "{list}");
    assert_eq!(list["data"]["total"], 1);
    assert_eq!(list["data"]["registries"][0]["outcome"], "completed");
    let (_, preview) = call(addr, "GET", &format!("{one}/occurrences"), &bob, None);
    assert_eq!(preview["occurrences"], json!([]));

    // A schedule made from a template: rendered with the caller's values (one trying to
    // break out of its string), approved as rendered, run once on every router.
    let (status, template) = call(
        addr,
        "POST",
        "/scripts/templates",
        &alice,
        Some(&json!({
            "name": "Log a marker",
            "description": "Writes a marker to the log",
            "content": ":log {{level}} \"marker {{text}}\"\n",
            "variables": [
                {"name": "level", "type": "enum", "allowed": ["info", "warning"], "default": "info"},
                {"name": "text", "type": "string"},
            ],
        })),
    );
    assert_eq!(status, 201, "{template}");
    let template_id = template["id"].as_str().expect("id").to_owned();
    let text = "x\"; /system reset-configuration; :put \"";
    let (status, created) = call(
        addr,
        "POST",
        "/scripts/scheduled",
        &alice,
        Some(&json!({
            "description": "From a template",
            "template_id": template_id,
            "variables": {"text": text},
            "launch_at": Utc::now() + TimeDelta::seconds(3),
            "sites": sites,
        })),
    );
    assert_eq!(status, 201, "{created}");
    assert_eq!(
        created["script"],
        ":log info \"marker x\\\"; /system reset-configuration; :put \\\"\"\n"
    );
    assert_eq!(created["origin"]["kind"], "template");
    assert_eq!(created["origin"]["template_id"], template_id.as_str());
    assert_eq!(created["origin"]["template_version"], 1);
    assert_eq!(created["origin"]["variables"]["text"], text);
    let from_template = format!("/scripts/scheduled/{}", created["id"].as_str().expect("id"));
    let (status, _) = call(
        addr,
        "POST",
        &format!("{from_template}/authorize"),
        &bob,
        None,
    );
    assert_eq!(status, 200);
    eventually("the templated schedule to complete", || {
        let (_, shown) = call(addr, "GET", &from_template, &bob, None);
        assert!(
            shown["progress"]["failed"]
                .as_array()
                .is_some_and(Vec::is_empty),
            "a site failed: {shown}"
        );
        (shown["outcome"] == "completed").then_some(())
    });
    let marker = format!("marker {text}");
    let counts: Vec<usize> = fleet
        .routers()
        .map(|r| r.log_messages().iter().filter(|m| **m == marker).count())
        .collect();
    assert_eq!(counts, vec![1; ROUTERS], "the value stayed text");

    // Exactly one source; a bad value names its variable.
    for (body, field) in [
        (
            json!({"script": ":log info x", "template_id": template_id}),
            "script",
        ),
        (
            json!({"template_id": template_id, "variables": {"level": "debug", "text": "a"}}),
            "level",
        ),
        (
            json!({"template_id": "nope", "variables": {}}),
            "template_id",
        ),
        (
            json!({"community_script_id": "01HZZZZZZZZZZZZZZZZZZZZZZZ"}),
            "community_script_id",
        ),
    ] {
        let mut body = body;
        body["description"] = json!(format!("refused {field}"));
        body["launch_at"] = json!(Utc::now() + TimeDelta::hours(1));
        body["sites"] = json!(sites);
        let (status, refused) = call(addr, "POST", "/scripts/scheduled", &alice, Some(&body));
        assert_eq!(status, 422, "{body}: {refused}");
        assert!(
            refused["message"].as_str().unwrap_or("").contains(field),
            "{refused}"
        );
    }
}
