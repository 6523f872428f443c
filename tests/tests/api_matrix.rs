//! The scope x organization matrix over every route the engine serves, against the real
//! binary. The routes come from `yardmaster::api::routes()`, the list the engine itself
//! refuses to serve a route without, so a new route cannot be left out: the test fails
//! until [`CASES`] says how to call it.
//!
//! Organization A owns one of everything (a site, a user, a scheduled script, a job, a
//! notification channel, a dead letter). For every route:
//! (a) without a token the answer is 401 (the public routes excepted, listed in the
//!     engine's route list);
//! (b) a token of A with every scope but the route's is 403, and changes nothing;
//! (c) a token of organization B with every scope, aimed at A's ids, is 404 exactly as
//!     for an id that never existed, and routes without an id answer only B's own data.
//!
//! No answer to B, nor any 401/403, ever holds A's names, addresses, secrets or ids
//! (other than ids the request itself carried); and A's state reads the same after
//! the whole matrix as before it.

use serde_json::{Value, json};
use yardmaster::api::{Access, Route};
use yardmaster::auth::scopes;
use yardmaster_tests::{Engine, EngineOptions, Response, eventually, http_as, transport_call};

const ORG_A: &str = "matrix-org-alpha";
const ORG_B: &str = "matrix-org-beta";

/// A's data, each value unlike anything B ever sends or owns.
const SITE_NAME: &str = "alpha-edge-router";
const SITE_ADDRESS: &str = "127.77.0.1";
const SITE_USERNAME: &str = "alpha-admin-login";
const SITE_PASSWORD: &str = "alpha-site-password-7f3";
const USER_ID: &str = "matrix-bob";
const USER_NAME: &str = "Alpha Bob";
const USER_EMAIL: &str = "alpha-bob@alpha.example";
const SCHEDULE_DESCRIPTION: &str = "alpha nightly schedule";
const SCHEDULE_SCRIPT: &str = ":log info alpha-schedule-script";
const JOB_DESCRIPTION: &str = "alpha job description";
const JOB_SCRIPT: &str = ":log info alpha-job-script";
const CHANNEL_NAME: &str = "alpha-hook";
const CHANNEL_URL: &str = "https://alpha-hooks.example/matrix";
const CHANNEL_SECRET: &str = "alpha-channel-secret-9d2e";
const DEAD_LETTER_ERROR: &str = "alpha-dead-letter-error";
const DEAD_LETTER_MARK: &str = "alpha-dead-letter-payload";
const TEMPLATE_NAME: &str = "alpha private template";
const TEMPLATE_CONTENT: &str = ":log info alpha-template-{{who}}";

/// Which of A's resources fills a route's path parameter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Param {
    None,
    Site,
    User,
    Schedule,
    Template,
    /// A community script: the library is shared by every organization.
    Community,
    Job,
    Channel,
    DeadLetter,
    /// A plugin name: plugins are the engine's, shared by every organization.
    Plugin,
    /// A plugin name in the path, and A's site in the body: a plugin call on a site.
    PluginOnSite,
}

/// What B's full-scope token gets from the route, aimed at A's ids.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Cross {
    /// 404, the same answer as for an id no organization has.
    NotFound,
    /// Refused (a 4xx other than 401/403/404): B named A's resource inside its body.
    Refused,
    /// B's own data, or the engine's shared data: any answer but 401/403/5xx.
    Own,
}

/// How the matrix calls one route.
struct Case {
    method: &'static str,
    path: &'static str,
    param: Param,
    body: fn(&Fixture) -> Option<Value>,
    cross: Cross,
}

const fn case(
    method: &'static str,
    path: &'static str,
    param: Param,
    body: fn(&Fixture) -> Option<Value>,
    cross: Cross,
) -> Case {
    Case {
        method,
        path,
        param,
        body,
        cross,
    }
}

fn no_body(_: &Fixture) -> Option<Value> {
    None
}

/// One entry per route the engine serves. A route added to the engine without an entry
/// here fails [`every_route_answers_by_scope_and_organization`].
const CASES: &[Case] = &[
    case("GET", "/healthz", Param::None, no_body, Cross::Own),
    case("GET", "/openapi.json", Param::None, no_body, Cross::Own),
    case("GET", "/metrics", Param::None, no_body, Cross::Own),
    case("GET", "/docs/errors", Param::None, no_body, Cross::Own),
    case("GET", "/plugins", Param::None, no_body, Cross::Own),
    case("GET", "/plugins/{name}", Param::Plugin, no_body, Cross::Own),
    case(
        "POST",
        "/plugins/{name}/call",
        Param::PluginOnSite,
        |f| {
            Some(transport_call(
                &f.site,
                "run-script",
                json!({"script": "beta"}),
            ))
        },
        Cross::NotFound,
    ),
    case("GET", "/sites", Param::None, no_body, Cross::Own),
    case(
        "POST",
        "/sites",
        Param::None,
        |_| Some(beta_site("beta-site")),
        Cross::Own,
    ),
    case(
        "POST",
        "/sites/import",
        Param::None,
        |_| Some(json!([beta_site("beta-imported")])),
        Cross::Own,
    ),
    case("GET", "/sites/{id}", Param::Site, no_body, Cross::NotFound),
    case(
        "PUT",
        "/sites/{id}",
        Param::Site,
        |_| Some(beta_site("hijacked")),
        Cross::NotFound,
    ),
    case(
        "DELETE",
        "/sites/{id}",
        Param::Site,
        no_body,
        Cross::NotFound,
    ),
    case("GET", "/users", Param::None, no_body, Cross::Own),
    case(
        "POST",
        "/users",
        Param::None,
        |_| Some(json!({"id": "beta-carol", "name": "Beta Carol", "email": "carol@beta.example"})),
        Cross::Own,
    ),
    case("GET", "/users/{id}", Param::User, no_body, Cross::NotFound),
    case(
        "DELETE",
        "/users/{id}",
        Param::User,
        no_body,
        Cross::NotFound,
    ),
    case(
        "POST",
        "/api/synchronous/{router_id}",
        Param::Site,
        |_| Some(json!({"command": "/system/identity/print"})),
        Cross::NotFound,
    ),
    case(
        "POST",
        "/api/asynchronous/{router_id}",
        Param::Site,
        |_| Some(json!({"description": "beta job", "script": ":log info beta"})),
        Cross::NotFound,
    ),
    case(
        "GET",
        "/api/routers/{router_id}/jobs",
        Param::Site,
        no_body,
        Cross::NotFound,
    ),
    case(
        "GET",
        "/api/jobs/{id}",
        Param::Job,
        no_body,
        Cross::NotFound,
    ),
    case(
        "POST",
        "/scripts/gen-ai",
        Param::None,
        |f| Some(json!({"prompt": "log a line", "site_id": f.site})),
        Cross::Refused,
    ),
    case(
        "POST",
        "/scripts/lint",
        Param::None,
        |_| Some(json!({"script": "/system reboot"})),
        Cross::Own,
    ),
    case(
        "GET",
        "/scripts/community-scripts",
        Param::None,
        no_body,
        Cross::Own,
    ),
    case(
        "POST",
        "/scripts/community-scripts",
        Param::None,
        |_| Some(json!({"github_url": "https://raw.githubusercontent.com/beta/s/main/b.rsc"})),
        Cross::Own,
    ),
    case(
        "GET",
        "/scripts/community-scripts/{id}",
        Param::Community,
        no_body,
        Cross::Own,
    ),
    case(
        "POST",
        "/scripts/community-scripts/{id}/refresh",
        Param::Community,
        no_body,
        Cross::Own,
    ),
    case(
        "GET",
        "/scripts/templates",
        Param::None,
        no_body,
        Cross::Own,
    ),
    case(
        "POST",
        "/scripts/templates",
        Param::None,
        |_| Some(json!({"name": "beta template", "description": "b", "content": ":log info beta"})),
        Cross::Own,
    ),
    case(
        "GET",
        "/scripts/templates/{id}",
        Param::Template,
        no_body,
        Cross::NotFound,
    ),
    case(
        "PUT",
        "/scripts/templates/{id}",
        Param::Template,
        |_| Some(json!({"name": "hijacked", "description": "x", "content": "/system reboot"})),
        Cross::NotFound,
    ),
    case(
        "DELETE",
        "/scripts/templates/{id}",
        Param::Template,
        no_body,
        Cross::NotFound,
    ),
    case(
        "GET",
        "/scripts/templates/{id}/versions",
        Param::Template,
        no_body,
        Cross::NotFound,
    ),
    case(
        "GET",
        "/scripts/templates/{id}/versions/{n}",
        Param::Template,
        no_body,
        Cross::NotFound,
    ),
    case(
        "POST",
        "/scripts/templates/{id}/render",
        Param::Template,
        |_| Some(json!({"variables": {"who": "beta"}})),
        Cross::NotFound,
    ),
    case(
        "GET",
        "/scripts/scheduled",
        Param::None,
        no_body,
        Cross::Own,
    ),
    case(
        "POST",
        "/scripts/scheduled",
        Param::None,
        |f| {
            Some(json!({
                "description": "beta schedule on alpha's site",
                "script": ":log info beta",
                "sites": [f.site],
                "launch_at": "2099-01-01T00:00:00Z",
            }))
        },
        Cross::Refused,
    ),
    case(
        "DELETE",
        "/scripts/scheduled",
        Param::None,
        |f| Some(json!({"schedules_ids": [f.schedule]})),
        Cross::NotFound,
    ),
    case(
        "GET",
        "/scripts/scheduled/{id}",
        Param::Schedule,
        no_body,
        Cross::NotFound,
    ),
    case(
        "PUT",
        "/scripts/scheduled/{id}",
        Param::Schedule,
        |_| Some(json!({"description": "hijacked", "script": ":log info hijacked"})),
        Cross::NotFound,
    ),
    case(
        "DELETE",
        "/scripts/scheduled/{id}",
        Param::Schedule,
        no_body,
        Cross::NotFound,
    ),
    case(
        "GET",
        "/scripts/scheduled/{id}/authorize",
        Param::Schedule,
        no_body,
        Cross::NotFound,
    ),
    case(
        "POST",
        "/scripts/scheduled/{id}/authorize",
        Param::Schedule,
        no_body,
        Cross::NotFound,
    ),
    case(
        "POST",
        "/scripts/scheduled/{id}/cancel",
        Param::Schedule,
        no_body,
        Cross::NotFound,
    ),
    case(
        "GET",
        "/scripts/scheduled/{id}/occurrences",
        Param::Schedule,
        no_body,
        Cross::NotFound,
    ),
    case(
        "GET",
        "/scripts/scheduled/{id}/progress",
        Param::Schedule,
        no_body,
        Cross::NotFound,
    ),
    case(
        "GET",
        "/scripts/scheduled/{id}/runs",
        Param::Schedule,
        no_body,
        Cross::NotFound,
    ),
    case(
        "GET",
        "/notifications/channels",
        Param::None,
        no_body,
        Cross::Own,
    ),
    case(
        "POST",
        "/notifications/channels",
        Param::None,
        |_| {
            Some(json!({
                "name": "beta-hook",
                "kind": "webhook",
                "settings": {"url": "https://beta-hooks.example/matrix"},
            }))
        },
        Cross::Own,
    ),
    case(
        "GET",
        "/notifications/channels/{id}",
        Param::Channel,
        no_body,
        Cross::NotFound,
    ),
    case(
        "DELETE",
        "/notifications/channels/{id}",
        Param::Channel,
        no_body,
        Cross::NotFound,
    ),
    case(
        "POST",
        "/notifications/channels/{id}/rotate-secret",
        Param::Channel,
        no_body,
        Cross::NotFound,
    ),
    case(
        "GET",
        "/notifications/dead-letters",
        Param::None,
        no_body,
        Cross::Own,
    ),
    case(
        "POST",
        "/notifications/dead-letters/{id}/retry",
        Param::DeadLetter,
        no_body,
        Cross::NotFound,
    ),
    case(
        "GET",
        "/notifications/signing-secret",
        Param::None,
        no_body,
        Cross::Own,
    ),
    case(
        "POST",
        "/notifications/signing-secret/rotate",
        Param::None,
        no_body,
        Cross::Own,
    ),
];

fn beta_site(name: &str) -> Value {
    json!({"name": name, "address": "127.78.0.1", "username": "beta", "password": "beta-password"})
}

/// A's resources, created through the API (the dead letter through the store).
struct Fixture {
    site: String,
    schedule: String,
    template: String,
    community: String,
    job: String,
    channel: String,
    dead_letter: String,
    /// A's signing secret for jobs' notify URLs.
    signing_secret: String,
}

impl Fixture {
    fn id(&self, param: Param) -> &str {
        match param {
            Param::None => "",
            Param::Site => &self.site,
            Param::User => USER_ID,
            Param::Schedule => &self.schedule,
            Param::Template => &self.template,
            Param::Community => &self.community,
            Param::Job => &self.job,
            Param::Channel => &self.channel,
            Param::DeadLetter => &self.dead_letter,
            Param::Plugin => "echo",
            Param::PluginOnSite => &self.site,
        }
    }

    /// What fills the path's parameter: the id, but a plugin call's path names its plugin.
    fn path_id(&self, param: Param) -> &str {
        match param {
            Param::PluginOnSite => "echo",
            param => self.id(param),
        }
    }

    /// Everything of A that must never reach B.
    fn secrets(&self) -> Vec<&str> {
        vec![
            ORG_A,
            SITE_NAME,
            SITE_ADDRESS,
            SITE_USERNAME,
            SITE_PASSWORD,
            USER_ID,
            USER_NAME,
            USER_EMAIL,
            SCHEDULE_DESCRIPTION,
            SCHEDULE_SCRIPT,
            JOB_DESCRIPTION,
            JOB_SCRIPT,
            CHANNEL_NAME,
            CHANNEL_URL,
            CHANNEL_SECRET,
            DEAD_LETTER_ERROR,
            DEAD_LETTER_MARK,
            TEMPLATE_NAME,
            "alpha-template-",
            &self.site,
            &self.schedule,
            &self.template,
            &self.job,
            &self.channel,
            &self.signing_secret,
        ]
    }
}

/// The path of `case` with `param`'s id of A (or `id` when given) filled in.
fn uri(case: &Case, id: &str) -> String {
    ["{id}", "{name}", "{router_id}"]
        .iter()
        .fold(case.path.to_owned(), |path, p| path.replace(p, id))
        .replace("{n}", "1")
}

fn send(
    engine: &Engine,
    method: &str,
    uri: &str,
    body: Option<&Value>,
    token: Option<&str>,
) -> Response {
    http_as(engine.addr, method, uri, body, token).unwrap_or_else(|e| panic!("{method} {uri}: {e}"))
}

/// Panics if `response` holds any of `secrets` that the request did not carry itself
/// (a 404 may name the id it was asked for).
fn assert_no_leak(what: &str, request: &str, response: &Response, secrets: &[&str]) {
    for secret in secrets {
        if !request.contains(secret) {
            assert!(
                !response.text.contains(secret),
                "{what} answered {} holding `{secret}`: {}",
                response.status,
                response.text
            );
        }
    }
}

/// Every scope but `access`'s (all of them, for a route that takes any one of several).
fn scopes_without(access: Access) -> Vec<&'static str> {
    let needed: Vec<&str> = match access {
        Access::Scope(scope) => vec![scope],
        Access::AnyScope(any) => any.to_vec(),
        Access::Public | Access::Token => Vec::new(),
    };
    scopes::ALL
        .iter()
        .chain(scopes::BY_NAME_ONLY)
        .copied()
        .filter(|s| !needed.contains(s))
        .collect()
}

/// What A reads of its own state: compared before and after the matrix.
fn snapshot(engine: &Engine, token: &str, f: &Fixture) -> Value {
    let get = |path: &str| {
        let r = send(engine, "GET", path, None, Some(token));
        assert_eq!(r.status, 200, "GET {path}: {}", r.text);
        r.body
    };
    let ids = |v: &Value| -> Vec<Value> {
        v["data"]
            .as_array()
            .map(|items| items.iter().map(|i| i["id"].clone()).collect())
            .unwrap_or_default()
    };
    let schedule = get(&format!("/scripts/scheduled/{}", f.schedule));
    json!({
        "sites": get("/sites"),
        "site": get(&format!("/sites/{}", f.site)),
        "users": get("/users"),
        "user": get(&format!("/users/{USER_ID}")),
        "schedule": [
            schedule["id"], schedule["description"], schedule["script"], schedule["status"],
            schedule["sites"], schedule["notify"], schedule["launch_at"],
            schedule["authorization_requested_at"], schedule["authorized_at"],
            schedule["cancelled_at"],
        ],
        "template": get(&format!("/scripts/templates/{}", f.template)),
        "template_versions": get(&format!("/scripts/templates/{}/versions", f.template)),
        "jobs": ids(&get(&format!("/api/routers/{}/jobs", f.site))),
        "channels": get("/notifications/channels"),
        "dead_letters": ids(&get("/notifications/dead-letters")),
        "signing_secret": get("/notifications/signing-secret")["secret"],
    })
}

/// A's resources, and a dead letter of A written before the engine starts.
fn start() -> (Engine, Fixture) {
    let dir = tempfile::tempdir().expect("folder");
    let dead_letter = {
        let store = yardmaster::store::Store::open(dir.path().join("data")).expect("store");
        let now = chrono::Utc::now();
        let id = store
            .append_event(
                "job.status",
                json!({"job_id": "alpha-job", "status": "failed", "mark": DEAD_LETTER_MARK}),
                now,
            )
            .expect("event");
        store
            .record_event_attempt(
                id,
                &yardmaster::store::EventAttempt {
                    error: Some(DEAD_LETTER_ERROR),
                    retry_at: None,
                    organization: Some(ORG_A),
                    delivered_to: &[],
                    now,
                },
            )
            .expect("dead letter");
        id.to_string()
    };
    let engine = Engine::start(EngineOptions {
        plugins: vec!["echo".into()],
        reuse: Some(dir),
        ..EngineOptions::default()
    });
    engine.wait_for_file("echo.wasm", "echo", |p| p["status"] == "active");

    let admin = engine.token_for("alpha-admin", ORG_A, &["all"], 3600);
    let create = |path: &str, body: Value| {
        let r = send(&engine, "POST", path, Some(&body), Some(&admin));
        assert!(r.status < 300, "POST {path}: {} {}", r.status, r.text);
        r.body
    };
    let site = create(
        "/sites",
        json!({"name": SITE_NAME, "address": SITE_ADDRESS, "username": SITE_USERNAME, "password": SITE_PASSWORD}),
    )["id"]
        .as_str()
        .expect("site id")
        .to_owned();
    create(
        "/users",
        json!({"id": USER_ID, "name": USER_NAME, "email": USER_EMAIL}),
    );
    let schedule = create(
        "/scripts/scheduled",
        json!({
            "description": SCHEDULE_DESCRIPTION,
            "script": SCHEDULE_SCRIPT,
            "sites": [site],
            "launch_at": "2099-01-01T00:00:00Z",
            "notify": [USER_ID],
        }),
    );
    let schedule = schedule["id"]
        .as_str()
        .unwrap_or_else(|| panic!("schedule id in {schedule}"))
        .to_owned();
    let template = create(
        "/scripts/templates",
        json!({
            "name": TEMPLATE_NAME,
            "description": "alpha",
            "content": TEMPLATE_CONTENT,
            "variables": [{"name": "who", "type": "string", "default": "noc"}],
        }),
    )["id"]
        .as_str()
        .expect("template id")
        .to_owned();
    let community = create(
        "/scripts/community-scripts",
        json!({"github_url": "https://raw.githubusercontent.com/acme/scripts/main/a.rsc"}),
    )["id"]
        .as_str()
        .expect("community script id")
        .to_owned();
    create(
        &format!("/api/asynchronous/{site}"),
        json!({"description": JOB_DESCRIPTION, "script": JOB_SCRIPT}),
    );
    let jobs = send(
        &engine,
        "GET",
        &format!("/api/routers/{site}/jobs"),
        None,
        Some(&admin),
    );
    let job = jobs.body["data"][0]["id"]
        .as_str()
        .unwrap_or_else(|| panic!("a job id in {}", jobs.text))
        .to_owned();
    // The job meets no router; once it has failed, A's state stays still.
    eventually("A's job to finish", || {
        let r = send(
            &engine,
            "GET",
            &format!("/api/jobs/{job}"),
            None,
            Some(&admin),
        );
        let status = r.body["data"]["status"].as_str()?.to_owned();
        (!["pending", "loaded", "running"].contains(&status.as_str())).then_some(())
    });
    let channel = create(
        "/notifications/channels",
        json!({"name": CHANNEL_NAME, "kind": "webhook", "settings": {"url": CHANNEL_URL}, "secret": CHANNEL_SECRET}),
    )["id"]
        .as_str()
        .expect("channel id")
        .to_owned();
    let signing = send(
        &engine,
        "GET",
        "/notifications/signing-secret",
        None,
        Some(&admin),
    );
    let signing_secret = signing.body["secret"]
        .as_str()
        .unwrap_or_else(|| panic!("a secret in {}", signing.text))
        .to_owned();
    let fixture = Fixture {
        site,
        schedule,
        template,
        community,
        job,
        channel,
        dead_letter,
        signing_secret,
    };
    (engine, fixture)
}

#[test]
fn every_route_answers_by_scope_and_organization() {
    let routes: &[Route] = yardmaster::api::routes();
    // The matrix covers exactly the routes the engine serves.
    for route in routes {
        let entries = CASES
            .iter()
            .filter(|c| c.method == route.method && c.path == route.path)
            .count();
        assert_eq!(
            entries, 1,
            "{} {} needs exactly one entry in CASES (has {entries})",
            route.method, route.path
        );
    }
    for case in CASES {
        assert!(
            routes
                .iter()
                .any(|r| r.method == case.method && r.path == case.path),
            "{} {} is in CASES but the engine does not serve it",
            case.method,
            case.path
        );
    }

    let (engine, f) = start();
    let secrets = f.secrets();
    let owner = engine.token_for("alpha-admin", ORG_A, &["all"], 3600);
    let before = snapshot(&engine, &owner, &f);
    let every: Vec<&str> = scopes::ALL
        .iter()
        .chain(scopes::BY_NAME_ONLY)
        .copied()
        .collect();
    let beta = engine.token_for("beta-admin", ORG_B, &every, 3600);

    for route in routes {
        let case = CASES
            .iter()
            .find(|c| c.method == route.method && c.path == route.path)
            .expect("checked above");
        let what = format!("{} {}", route.method, route.path);
        let path = uri(case, f.path_id(case.param));
        let body = (case.body)(&f);
        let request = format!(
            "{path} {}",
            body.as_ref().map(Value::to_string).unwrap_or_default()
        );

        // (a) Without a token.
        let r = send(&engine, route.method, &path, body.as_ref(), None);
        assert_no_leak(&format!("{what} without a token"), &request, &r, &secrets);
        if route.access == Access::Public {
            assert_eq!(r.status, 200, "{what} is public: {}", r.text);
            continue;
        }
        assert_eq!(r.status, 401, "{what} without a token: {}", r.text);
        assert_eq!(r.body["code"], "missing_token", "{what}: {}", r.text);

        // (b) A's own token, with every scope but the route's.
        if route.access == Access::Token {
            let none = engine.token_for("alpha-second", ORG_A, &[], 3600);
            let r = send(&engine, route.method, &path, body.as_ref(), Some(&none));
            assert!(
                (200..300).contains(&r.status),
                "{what} takes any token of the organization: {} {}",
                r.status,
                r.text
            );
        } else {
            let lacking = scopes_without(route.access);
            let token = engine.token_for("alpha-second", ORG_A, &lacking, 3600);
            let r = send(&engine, route.method, &path, body.as_ref(), Some(&token));
            assert_eq!(r.status, 403, "{what} without its scope: {}", r.text);
            assert_eq!(r.body["code"], "missing_scope", "{what}: {}", r.text);
            assert_no_leak(&format!("{what} without its scope"), &request, &r, &secrets);
        }

        // (c) B, with every scope, aimed at A's ids.
        let r = send(&engine, route.method, &path, body.as_ref(), Some(&beta));
        assert_no_leak(
            &format!("{what} from another organization"),
            &request,
            &r,
            &secrets,
        );
        match case.cross {
            Cross::NotFound => {
                assert_eq!(
                    r.status, 404,
                    "{what} from another organization: {}",
                    r.text
                );
                assert_eq!(r.body["code"], "not_found", "{what}: {}", r.text);
                // The same answer as for an id that never existed anywhere.
                let id = match case.param {
                    Param::None => f.schedule.as_str(),
                    param => f.id(param),
                };
                // Dead letters are numbered; another number is the id no one has.
                let never = match case.param {
                    Param::DeadLetter => "987654321",
                    _ => "never-existed-anywhere",
                };
                let never_body: Option<Value> = body.as_ref().map(|b| {
                    serde_json::from_str(&b.to_string().replace(id, never)).expect("json")
                });
                let n = send(
                    &engine,
                    route.method,
                    &uri(
                        case,
                        if case.param == Param::PluginOnSite {
                            "echo"
                        } else {
                            never
                        },
                    ),
                    never_body.as_ref(),
                    Some(&beta),
                );
                assert_eq!(n.status, r.status, "{what}: {} vs {}", n.text, r.text);
                assert_eq!(n.body["code"], r.body["code"], "{what}");
                assert_eq!(
                    r.body["message"].as_str().map(|m| m.replace(id, never)),
                    n.body["message"].as_str().map(str::to_owned),
                    "{what}: the 404 differs from a never-existing id's"
                );
            }
            Cross::Refused => {
                assert!(
                    (400..500).contains(&r.status) && ![401, 403].contains(&r.status),
                    "{what} from another organization: {} {}",
                    r.status,
                    r.text
                );
            }
            Cross::Own => {
                assert!(
                    ![401, 403].contains(&r.status) && r.status < 500,
                    "{what} from another organization: {} {}",
                    r.status,
                    r.text
                );
            }
        }
    }

    // The approval link's confirm page needs no token and shows nothing of the schedule.
    let page = send(
        &engine,
        "GET",
        &format!("/scripts/scheduled/{}/authorize?token=abc", f.schedule),
        None,
        None,
    );
    assert_eq!(page.status, 200, "{}", page.text);
    assert_no_leak("the confirm page", &f.schedule, &page, &secrets);

    // Nothing B or the scope-less tokens sent changed A's state.
    let after = snapshot(&engine, &owner, &f);
    assert_eq!(before, after, "A's state changed during the matrix");
    let log = engine.log();
    assert!(
        !log.contains("is not in api::routes()"),
        "a route was refused as unlisted:\n{log}"
    );
}

/// User ids are scoped by organization: B may create A's `matrix-bob` as its own user,
/// and then each organization reads, lists and removes only its own.
#[test]
fn the_same_user_id_in_two_organizations_is_two_users() {
    let engine = Engine::start(EngineOptions::default());
    let a = engine.token_for("alpha-admin", ORG_A, &["all"], 3600);
    let b = engine.token_for("beta-admin", ORG_B, &["all"], 3600);
    let create = |token: &str, name: &str, email: &str| {
        send(
            &engine,
            "POST",
            "/users",
            Some(&json!({"id": USER_ID, "name": name, "email": email})),
            Some(token),
        )
    };
    assert_eq!(create(&a, USER_NAME, USER_EMAIL).status, 201);
    let r = create(&b, "Beta Bob", "beta-bob@beta.example");
    assert_eq!(r.status, 201, "{}", r.text);
    assert_eq!(r.body["organization"], ORG_B);
    // A second one in the same organization is a conflict that names nothing of A.
    let r = create(&b, "Beta Bob 2", "beta-bob-2@beta.example");
    assert_eq!(r.status, 409, "{}", r.text);
    assert!(
        !r.text.contains(ORG_A) && !r.text.contains(USER_EMAIL),
        "{}",
        r.text
    );

    let user = |token: &str| {
        send(
            &engine,
            "GET",
            &format!("/users/{USER_ID}"),
            None,
            Some(token),
        )
    };
    assert_eq!(user(&a).body["email"], USER_EMAIL);
    let theirs = user(&b);
    assert_eq!(theirs.body["email"], "beta-bob@beta.example");
    assert!(!theirs.text.contains(USER_EMAIL), "{}", theirs.text);
    let list = send(&engine, "GET", "/users", None, Some(&b));
    assert_eq!(list.body["total"], 1, "{}", list.text);
    assert!(!list.text.contains(USER_EMAIL), "{}", list.text);

    // B removes its own bob; A's stays, and B cannot remove it.
    let r = send(
        &engine,
        "DELETE",
        &format!("/users/{USER_ID}"),
        None,
        Some(&b),
    );
    assert_eq!(r.status, 204, "{}", r.text);
    let r = send(
        &engine,
        "DELETE",
        &format!("/users/{USER_ID}"),
        None,
        Some(&b),
    );
    assert_eq!(r.status, 404, "{}", r.text);
    assert_eq!(user(&b).status, 404);
    assert_eq!(user(&a).body["email"], USER_EMAIL);
}
