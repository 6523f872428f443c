//! The lint policy through the HTTP API of the real binary: a script with a syntax error
//! is refused (schedule create and update, asynchronous job) naming its line and column;
//! a schedule's critical findings must be acknowledged by rule id; the acknowledged list
//! is covered by the approval, so editing it needs a new one from someone else.

use chrono::{TimeDelta, Utc};
use serde_json::{Value, json};
use yardmaster_tests::{Engine, EngineOptions, Response, http_as};

use yardmaster_tests::TEST_ORG as ORG;

struct World {
    engine: Engine,
    site: String,
}

fn world() -> World {
    let engine = Engine::start(EngineOptions {
        bundled: true,
        ..EngineOptions::default()
    });
    let site = engine.add_site(&json!({
        "name": "r1",
        "address": "127.0.0.1",
        "port": 1,
        "transport": "routeros-api",
        "password": "pw",
    }));
    World { engine, site }
}

impl World {
    fn token(&self, user: &str, scopes: &[&str]) -> String {
        self.engine.token_for(user, ORG, scopes, 3600)
    }

    fn alice(&self) -> String {
        self.token(
            "alice",
            &[
                "script:view",
                "script:create",
                "script:update",
                "script:authorize",
                "script:run",
            ],
        )
    }

    fn call(&self, method: &str, path: &str, token: &str, body: Option<&Value>) -> Response {
        http_as(self.engine.addr, method, path, body, Some(token)).expect("HTTP")
    }

    fn schedule(&self, name: &str, script: &str, acknowledged: Value) -> Value {
        json!({
            "description": name,
            "script": script,
            "launch_at": Utc::now() + TimeDelta::hours(1),
            "sites": [self.site],
            "notify": ["bob"],
            "acknowledged_risks": acknowledged,
        })
    }
}

fn refused(reply: &Response, code: &str, needle: &str) {
    assert_eq!(reply.status, 422, "{}", reply.text);
    assert_eq!(reply.body["code"], code, "{}", reply.text);
    assert_eq!(reply.body["type"], "validation_error", "{}", reply.text);
    assert_eq!(
        reply.body["doc_url"],
        format!("/docs/errors#{code}"),
        "{}",
        reply.text
    );
    assert!(
        reply.body["message"]
            .as_str()
            .is_some_and(|m| m.contains(needle)),
        "`{needle}` not in {}",
        reply.text
    );
}

#[test]
fn a_script_with_a_syntax_error_is_refused_with_its_line_and_column() {
    let w = world();
    let alice = w.alice();

    let broken = ":log info \"start\"\n/ip address add address=10.0.0.1/24 interface={ether1";
    let reply = w.call(
        "POST",
        "/scripts/scheduled",
        &alice,
        Some(&w.schedule("broken", broken, json!([]))),
    );
    refused(&reply, "script_syntax_error", "line 2, column 47");
    let listed = w.call("GET", "/scripts/scheduled", &alice, None);
    assert_eq!(listed.body["data"]["total"], 0, "{}", listed.text);

    let made = w.call(
        "POST",
        "/scripts/scheduled",
        &alice,
        Some(&w.schedule("fine", ":log info \"fine\"", json!([]))),
    );
    assert_eq!(made.status, 201, "{}", made.text);
    let one = format!(
        "/scripts/scheduled/{}",
        made.body["id"].as_str().expect("id")
    );
    let reply = w.call(
        "PUT",
        &one,
        &alice,
        Some(&json!({"script": ":local a 1\n:put $a\n:put $b"})),
    );
    refused(&reply, "script_syntax_error", "line 3, column 6");
    let shown = w.call("GET", &one, &alice, None);
    assert_eq!(shown.body["script"], ":log info \"fine\"", "{}", shown.text);
    assert_eq!(shown.body["version"], 1);

    let job = |key: &str, script: &str| {
        json!({
            "description": "Lint policy",
            "script": script,
            "idempotency_key": key,
        })
    };
    let uri = format!("/api/asynchronous/{}", w.site);
    let reply = w.call(
        "POST",
        &uri,
        &alice,
        Some(&job(
            "k-broken",
            ":log info \"ok\"\n:put [/system identity get name",
        )),
    );
    refused(&reply, "script_syntax_error", "line 2, column 6");
    let jobs = w.call(
        "GET",
        &format!("/api/routers/{}/jobs", w.site),
        &alice,
        None,
    );
    assert_eq!(jobs.status, 200, "{}", jobs.text);
    assert!(
        !jobs.text.contains("Lint policy"),
        "nothing was queued: {}",
        jobs.text
    );
}

#[test]
fn critical_findings_are_acknowledged_and_the_approval_covers_the_list() {
    let w = world();
    let alice = w.alice();
    let bob = w.token("bob", &["script:view", "script:authorize"]);
    let carol = w.token(
        "carol",
        &["script:view", "script:update", "script:authorize"],
    );
    let script = "/system reset-configuration keep-users=yes\n/user remove [find name=old]";

    let reply = w.call(
        "POST",
        "/scripts/scheduled",
        &alice,
        Some(&w.schedule("reset", script, json!([]))),
    );
    refused(
        &reply,
        "risks_not_acknowledged",
        "factory-reset (line 1, column 1)",
    );
    let reply = w.call(
        "POST",
        "/scripts/scheduled",
        &alice,
        Some(&w.schedule("reset", script, json!(["factory-reset", "not-a-rule"]))),
    );
    refused(&reply, "validation_failed", "`not-a-rule` is not a rule");

    let made = w.call(
        "POST",
        "/scripts/scheduled",
        &alice,
        Some(&w.schedule("reset", script, json!(["factory-reset"]))),
    );
    assert_eq!(made.status, 201, "{}", made.text);
    assert_eq!(made.body["acknowledged_risks"], json!(["factory-reset"]));
    let one = format!(
        "/scripts/scheduled/{}",
        made.body["id"].as_str().expect("id")
    );
    let shown = w.call("GET", &one, &bob, None);
    assert_eq!(shown.body["acknowledged_risks"], json!(["factory-reset"]));
    assert!(
        shown.body["lint"]["findings"].as_array().is_some_and(|f| f
            .iter()
            .any(|f| f["rule"] == "factory-reset"
                && f["severity"] == "critical"
                && f["line"] == 1)),
        "{}",
        shown.text
    );

    // Approved, then carol acknowledges one more risk: the approval is void.
    let approved = w.call("POST", &format!("{one}/authorize"), &bob, None);
    assert_eq!(approved.status, 200, "{}", approved.text);
    assert_eq!(approved.body["status"], "scheduled");
    let edited = w.call(
        "PUT",
        &one,
        &carol,
        Some(&json!({"acknowledged_risks": ["factory-reset", "user-change"]})),
    );
    assert_eq!(edited.status, 200, "{}", edited.text);
    assert_eq!(edited.body["status"], "unauthorized");
    assert_eq!(edited.body["version"], 2);
    assert_eq!(edited.body["updated_by"], "carol");
    assert!(
        edited.body["editors"]
            .as_array()
            .is_some_and(|e| e.contains(&json!("carol"))),
        "{}",
        edited.text
    );
    let own = w.call("POST", &format!("{one}/authorize"), &carol, None);
    assert_eq!(own.status, 403, "{}", own.text);
    assert_eq!(own.body["code"], "self_approval");

    // Taking an acknowledgement away that the script still needs is refused.
    let reply = w.call(
        "PUT",
        &one,
        &alice,
        Some(&json!({"acknowledged_risks": ["user-change"]})),
    );
    refused(&reply, "risks_not_acknowledged", "factory-reset");

    let requested = w.call("GET", &format!("{one}/authorize"), &alice, None);
    assert_eq!(requested.status, 200, "{}", requested.text);
    let approved = w.call("POST", &format!("{one}/authorize"), &bob, None);
    assert_eq!(approved.status, 200, "{}", approved.text);
    assert_eq!(
        approved.body["acknowledged_risks"],
        json!(["factory-reset", "user-change"])
    );
}
