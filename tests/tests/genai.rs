//! `POST /scripts/gen-ai` through the real binary and the bundled `openai` plugin,
//! against an OpenAI-compatible stand-in on loopback: answers as JSON or in markdown
//! fences, a syntax error repaired on the second round, destructive scripts, retries on
//! 429 and 5xx, final 401s, timeouts, missing usage and cut-off answers. The stand-in
//! records every request, so the tests also check no credential ever reaches the model.

use std::time::Duration;

use serde_json::{Value, json};
use yardmaster_tests::openai::{Canned, OpenAiStandIn};
use yardmaster_tests::{Engine, EngineOptions, Response, eventually, http_as};

fn start() -> (Engine, OpenAiStandIn, String) {
    let model = OpenAiStandIn::start();
    let engine = Engine::start(EngineOptions {
        config: model.config(2000),
        bundled: true,
        ..EngineOptions::default()
    });
    engine.wait_for_file("openai.wasm", "openai", |p| p["status"] == "active");
    let token = engine.token_for("alice", "gen-org", &["all"], 3600);
    (engine, model, token)
}

fn generate(engine: &Engine, token: &str, body: Value) -> Response {
    http_as(
        engine.addr,
        "POST",
        "/scripts/gen-ai",
        Some(&body),
        Some(token),
    )
    .expect("gen-ai")
}

#[test]
fn scripts_are_generated_linted_and_repaired() {
    let (engine, model, token) = start();

    // A plain answer, with its usage and id.
    model.push(Canned::script("/ip dns set servers=1.1.1.1\n"));
    let r = generate(
        &engine,
        &token,
        json!({"prompt": "use Cloudflare DNS", "routeros_version": "7.18"}),
    );
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(
        r.body["response"][0]["content"],
        "/ip dns set servers=1.1.1.1\n"
    );
    assert_eq!(r.body["response"][0]["error"], Value::Null);
    assert_eq!(r.body["response"][0]["destructive"], false);
    assert_eq!(
        r.body["tokenUsage"],
        json!({"prompt": 100, "completion": 20, "total": 120})
    );
    assert_eq!(r.body["response_id"], "chatcmpl-standin");
    let sent = model.received().pop().expect("a request");
    assert_eq!(sent["model"], "standin-model");
    assert_eq!(sent["response_format"]["json_schema"]["strict"], true);
    let system = sent["messages"][0]["content"]
        .as_str()
        .expect("system prompt");
    assert!(
        system.contains("Never lock out the management connection"),
        "{system}"
    );
    assert!(system.contains("routeros-version: 7.18"), "{system}");

    // A local server that answers in markdown fences, without usage.
    model.push(Canned::content(
        "Sure:\n```routeros\n/system identity set name=edge\n```",
        None,
    ));
    let r = generate(&engine, &token, json!({"prompt": "rename the router"}));
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(
        r.body["response"][0]["content"],
        "/system identity set name=edge\n"
    );
    assert_eq!(r.body["tokenUsage"]["total"], 0);

    // A syntax error goes back to the model, which fixes it on the second round.
    let before = model.received().len();
    model.push(Canned::script(":if (1 = 1) do={ :log info \"x\"\n"));
    model.push(Canned::script(":if (1 = 1) do={ :log info \"x\" }\n"));
    let r = generate(&engine, &token, json!({"prompt": "log x"}));
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["response"][0]["error"], Value::Null, "{}", r.text);
    assert_eq!(
        r.body["response"][0]["content"],
        ":if (1 = 1) do={ :log info \"x\" }\n"
    );
    assert_eq!(r.body["tokenUsage"]["total"], 240, "both rounds count");
    let rounds = &model.received()[before..];
    assert_eq!(rounds.len(), 2);
    let repair = rounds[1]["messages"].as_array().expect("messages");
    let feedback = repair.last().expect("feedback")["content"]
        .as_str()
        .expect("text");
    assert!(feedback.contains("unclosed brace"), "{feedback}");

    // Still broken after two repairs: returned with the error.
    for _ in 0..3 {
        model.push(Canned::script(":put (1 +\n"));
    }
    let r = generate(&engine, &token, json!({"prompt": "add"}));
    assert_eq!(r.status, 200, "{}", r.text);
    let error = r.body["response"][0]["error"].as_str().expect("an error");
    assert!(
        error.contains("after 3 rounds") && error.contains("unclosed parenthesis"),
        "{error}"
    );

    // A destructive script is flagged.
    model.push(Canned::script("/ip service disable ssh\n"));
    let r = generate(&engine, &token, json!({"prompt": "turn off ssh"}));
    assert_eq!(r.body["response"][0]["destructive"], true, "{}", r.text);

    // A cut-off answer is an error, not half a script.
    model.push(Canned::json(200, json!({
        "id": "x", "model": "m",
        "choices": [{"finish_reason": "length", "message": {"content": "{\"script\": \"/ip fire"}}]
    })));
    let r = generate(&engine, &token, json!({"prompt": "a long one"}));
    assert_eq!(r.status, 502, "{}", r.text);
    assert!(r.text.contains("finish_reason: length"), "{}", r.text);

    // Bad requests.
    let long = "x".repeat(201);
    for body in [
        json!({"prompt": long}),
        json!({"prompt": "  "}),
        json!({"prompt": "x", "site_id": "nope"}),
    ] {
        let r = generate(&engine, &token, body.clone());
        assert_eq!(r.status, 422, "{body}: {}", r.text);
    }
    let viewer = engine.token_for("bob", "gen-org", &["script:view"], 3600);
    assert_eq!(
        generate(&engine, &viewer, json!({"prompt": "x"})).status,
        403
    );
}

#[test]
fn failures_are_retried_or_final_and_credentials_never_reach_the_model() {
    let (engine, model, token) = start();

    // 429 with retry-after, then success.
    model.push(
        Canned::json(
            429,
            json!({"error": {"message": "slow down", "type": "rate_limit"}}),
        )
        .header("retry-after", "1"),
    );
    model.push(Canned::script(":log info \"after a wait\"\n"));
    let r = generate(&engine, &token, json!({"prompt": "log"}));
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(
        r.body["response"][0]["content"],
        ":log info \"after a wait\"\n"
    );

    // 401 is final.
    let before = model.received().len();
    model.push(Canned::json(
        401,
        json!({"error": {"message": "Incorrect API key provided"}}),
    ));
    let r = generate(&engine, &token, json!({"prompt": "log"}));
    assert_eq!(r.status, 502, "{}", r.text);
    assert!(r.text.contains("refused the key"), "{}", r.text);
    assert_eq!(model.received().len(), before + 1, "a 401 is not retried");

    // 500 until the attempts run out.
    let before = model.received().len();
    for _ in 0..3 {
        model.push(Canned::json(500, json!({"error": {"message": "boom"}})));
    }
    let r = generate(&engine, &token, json!({"prompt": "log"}));
    assert_eq!(r.status, 502, "{}", r.text);
    assert!(r.text.contains("3 times"), "{}", r.text);
    assert_eq!(model.received().len(), before + 3);

    // An answer slower than the timeout.
    model.push(Canned::script(":log info late\n").delayed(Duration::from_secs(4)));
    let r = generate(&engine, &token, json!({"prompt": "log"}));
    assert_eq!(r.status, 502, "{}", r.text);
    assert!(r.text.contains("timeout"), "{}", r.text);

    // A site's name reaches the model; its address and credentials never do.
    let site = http_as(
        engine.addr,
        "POST",
        "/sites",
        Some(&json!({"name": "branch-edge", "address": "127.19.0.7", "username": "secret-admin", "password": "hunter2-secret"})),
        Some(&token),
    )
    .expect("site");
    assert_eq!(site.status, 201, "{}", site.text);
    let before = model.received().len();
    let r = generate(
        &engine,
        &token,
        json!({"prompt": "log", "site_id": site.body["id"]}),
    );
    assert_eq!(r.status, 200, "{}", r.text);
    let sent = model.received()[before..].to_vec();
    let text = serde_json::to_string(&sent).expect("json");
    assert!(text.contains("branch-edge"), "{text}");
    for secret in ["127.19.0.7", "secret-admin", "hunter2-secret"] {
        assert!(!text.contains(secret), "{secret} reached the model: {text}");
    }
    // Every request carried the key only in its header, never in a prompt.
    let all = serde_json::to_string(&model.received()).expect("json");
    assert!(!all.contains("sk-test"), "{all}");
}

/// A schedule whose summary appears once written, and whose edit is summarized again.
fn summary_of(engine: &Engine, token: &str, script: &str) -> (String, String) {
    let site = http_as(
        engine.addr,
        "POST",
        "/sites",
        Some(&json!({"name": "summarized", "address": "127.19.0.9", "username": "a", "password": "b"})),
        Some(token),
    )
    .expect("site");
    let created = http_as(
        engine.addr,
        "POST",
        "/scripts/scheduled",
        Some(&json!({
            "description": "summarized",
            "script": script,
            "sites": [site.body["id"]],
            "launch_at": "2099-01-01T00:00:00Z",
        })),
        Some(token),
    )
    .expect("schedule");
    assert_eq!(created.status, 201, "{}", created.text);
    let id = created.body["id"].as_str().expect("id").to_owned();
    let summary = eventually("the summary to be written", || {
        let r = http_as(
            engine.addr,
            "GET",
            &format!("/scripts/scheduled/{id}"),
            None,
            Some(token),
        )
        .ok()?;
        r.body["summary"].as_str().map(str::to_owned)
    });
    (id, summary)
}

#[test]
fn summaries_are_written_by_the_generator_or_from_the_parse() {
    let (engine, model, token) = start();
    model.push(Canned::content(
        "Writes a greeting to the router's log.",
        None,
    ));
    let (id, summary) = summary_of(&engine, &token, ":log info \"hello\"\n");
    assert_eq!(summary, "Writes a greeting to the router's log.");
    // The client does not write it.
    let refused = http_as(
        engine.addr,
        "PUT",
        &format!("/scripts/scheduled/{id}"),
        Some(&json!({"summary": "mine"})),
        Some(&token),
    )
    .expect("put");
    assert!(
        refused.status >= 400 && refused.status < 500,
        "{}",
        refused.text
    );

    // Without a generator the summary comes from the parse.
    let bare = Engine::start(EngineOptions::default());
    let token = bare.token_for("alice", "gen-org", &["all"], 3600);
    let (_, summary) = summary_of(
        &bare,
        &token,
        "/ip firewall filter add chain=input action=accept\n:log info \"done\"\n",
    );
    assert_eq!(
        summary,
        "Adds 1 entry to /ip firewall filter; logs 1 message."
    );
}
