//! The API against its own description: schemathesis (PyPI) reads `/openapi.json` from a
//! running engine, generates requests for every operation, valid and invalid, and checks
//! that no answer is a server error and every answer matches the documented status
//! codes, content types and schemas.
//!
//! Nothing generated may reach beyond loopback: the engine serves only the RouterOS
//! transport (the notifier plugins are removed, so a generated `notify_url` is never
//! called), routes that run something on a router are pointed at a site whose address is
//! a simulated router on 127.13.0.1, and routes that edit or delete a site get another
//! site, so a generated address is never dialled; the generator plugin is pointed at an
//! OpenAI-compatible stand-in on loopback. The stateful phase, which would chain
//! created resources into later calls, is left out for the same reason.

use std::process::{Child, Command, Stdio};

use serde_json::json;
use yardmaster::auth::{Authenticator, Claims, scopes};
use yardmaster_tests::{Engine, EngineOptions, binary, eventually, http_as};

/// One simulated router on 127.13.0.1, stopped when dropped.
struct Router(Child);

impl Router {
    fn start() -> Router {
        let child = Command::new(binary())
            .args(["simulate", "--routers", "1", "--bind", "127.13.0.1"])
            .args(["--password", "conformance"])
            .env("YARDMASTER_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start the simulator");
        eventually("the simulated router to listen", || {
            std::net::TcpStream::connect(("127.13.0.1", 8728)).ok()
        });
        Router(child)
    }
}

impl Drop for Router {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn schemathesis() -> Command {
    let probe = Command::new("st").arg("--version").output();
    assert!(
        matches!(probe, Ok(ref out) if out.status.success()),
        "schemathesis is not installed: `python3 -m pip install schemathesis` (.ci/run does)"
    );
    Command::new("st")
}

#[test]
fn every_operation_answers_as_documented() {
    let _router = Router::start();
    // The generator answers from a stand-in on loopback, never a real model.
    let model = yardmaster_tests::openai::OpenAiStandIn::start();
    let engine = Engine::start(EngineOptions {
        config: model.config(5000),
        bundled: true,
        ..EngineOptions::default()
    });
    for notifier in ["webhook", "email"] {
        let _ = std::fs::remove_file(engine.plugins_dir().join(format!("{notifier}.wasm")));
    }
    let auth = Authenticator::open(&engine.dir.path().join("data")).expect("token key");
    let token = auth.issue(&Claims::new(
        "conformance",
        "conformance-org",
        // Every scope, the operator's `engine:admin` too, so plugin calls are exercised.
        scopes::ALL
            .iter()
            .chain(scopes::BY_NAME_ONLY)
            .map(|s| s.to_string())
            .collect(),
        chrono::Utc::now(),
        chrono::TimeDelta::hours(2),
    ));

    let document = engine.get("/openapi.json").expect("document");
    assert_eq!(document.status, 200);
    let paths = document.body["paths"].as_object().expect("paths").len();
    assert!(paths >= 10, "only {paths} paths are described");

    // Real resources, so operations on an id are exercised beyond their 404s; each route
    // family gets the id of its own kind of resource.
    let call = |method: &str, path: &str, body: serde_json::Value| {
        let r = http_as(engine.addr, method, path, Some(&body), Some(&token)).expect(path);
        assert!(r.status < 300, "{method} {path}: {} {}", r.status, r.text);
        r.body
    };
    let plugins = || {
        http_as(engine.addr, "GET", "/plugins", None, Some(&token))
            .expect("plugins")
            .text
    };
    eventually("the notifier plugins to be unloaded", || {
        let list = plugins();
        (list.contains("routeros-api")
            && list.contains("openai")
            && !list.contains("webhook")
            && !list.contains("email"))
        .then_some(())
    });
    let site = call(
        "POST",
        "/sites",
        json!({"name": "edge-1", "address": "127.13.0.1", "username": "admin", "password": "conformance"}),
    );
    let site_id = site["id"].as_str().expect("site id").to_owned();
    let spare = call(
        "POST",
        "/sites",
        json!({"name": "spare", "address": "127.13.0.2", "username": "admin", "password": "x"}),
    );
    let spare_id = spare["id"].as_str().expect("site id").to_owned();
    let user = call(
        "POST",
        "/users",
        json!({"id": "approver", "name": "Approver", "email": "approver@example.test"}),
    );
    let user_id = user["id"].as_str().unwrap_or("approver").to_owned();
    let schedule = call(
        "POST",
        "/scripts/scheduled",
        json!({
            "description": "conformance",
            "script": ":log info conformance",
            "sites": [site_id],
            "launch_at": "2099-01-01T00:00:00Z",
        }),
    );
    let schedule_id = schedule["id"].as_str().expect("schedule id").to_owned();
    call(
        "POST",
        &format!("/api/asynchronous/{site_id}"),
        json!({"description": "conformance", "script": ":log info job"}),
    );
    let jobs = http_as(
        engine.addr,
        "GET",
        &format!("/api/routers/{site_id}/jobs"),
        None,
        Some(&token),
    )
    .expect("jobs");
    let job_id = jobs.body["data"][0]["id"]
        .as_str()
        .unwrap_or_else(|| panic!("a job id in {}", jobs.text))
        .to_owned();
    let config = engine.dir.path().join("schemathesis.toml");
    std::fs::write(
        &config,
        format!(
            r#"
[[operations]]
include-path-regex = "^/sites/"
parameters = {{ id = "{spare_id}" }}

[[operations]]
include-path-regex = "^/users/"
parameters = {{ id = "{user_id}" }}

[[operations]]
include-path-regex = "^/scripts/scheduled/"
parameters = {{ id = "{schedule_id}" }}

[[operations]]
include-path-regex = "^/api/jobs/"
parameters = {{ id = "{job_id}" }}

[[operations]]
include-path-regex = "^/api/(synchronous|asynchronous|routers)/"
parameters = {{ router_id = "{site_id}" }}
"#
        ),
    )
    .expect("schemathesis config");

    let report = engine.dir.path().join("schemathesis");
    let out = schemathesis()
        .arg("--config-file")
        .arg(&config)
        .arg("run")
        .arg(format!("http://{}/openapi.json", engine.addr))
        .args(["--header", &format!("Authorization: Bearer {token}")])
        .args([
            "--checks",
            "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance",
        ])
        .args(["--phases", "examples,coverage,fuzzing"])
        .args(["--max-examples", "30"])
        // One worker: the generator parses Python source while it draws, and CPython 3.11's
        // parser is not safe to run on two threads at once ("AST constructor recursion depth
        // mismatch").
        .args(["--workers", "1"])
        .args(["--request-timeout", "30"])
        .args(["--seed", "20261122"])
        .args(["--suppress-health-check", "all"])
        .args(["--generation-database", "none"])
        .args(["--report-dir"])
        .arg(&report)
        .env("NO_COLOR", "1")
        .current_dir(engine.dir.path())
        .output()
        .expect("run schemathesis");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "schemathesis found answers that break the API's description:\n{stdout}\n{stderr}\n--- engine log ---\n{}",
        engine.log()
    );
    assert!(
        !engine.log().contains("internal error"),
        "the engine logged an internal error:\n{}",
        engine.log()
    );
}
