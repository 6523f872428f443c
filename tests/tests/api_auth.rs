//! Authentication against the real binary: the plugin routes answer 401 without a usable
//! token and 403 without the scope; the open routes need none; RS256 tokens of an issuer
//! named in `[auth]` are accepted; `/metrics` counts what happened.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value, json};
use yardmaster_tests::{Engine, EngineOptions, TEST_ORG, TEST_USER, transport_call};

fn active(p: &Value) -> bool {
    p["status"] == "active"
}

fn echo_engine(config: &str) -> Engine {
    let engine = Engine::start(EngineOptions {
        plugins: vec!["echo".into()],
        config: config.into(),
        ..EngineOptions::default()
    });
    engine.wait_for_file("echo.wasm", "echo", active);
    engine.add_site(&json!({
        "name": ECHO_SITE, "address": "127.0.0.1", "port": 1, "transport": "echo",
        "password": "unused",
    }));
    engine
}

/// The site of [`TEST_ORG`] the echo plugin's calls name.
const ECHO_SITE: &str = "echo-site";

fn echo_site(engine: &Engine) -> String {
    let sites = engine
        .get(&format!("/sites?name={ECHO_SITE}"))
        .expect("sites");
    sites.body["data"][0]["id"]
        .as_str()
        .expect("the echo site")
        .to_owned()
}

fn echo_call(engine: &Engine, script: &str) -> Value {
    transport_call(
        &echo_site(engine),
        "run-script",
        json!({ "script": script }),
    )
}

/// The three plugin routes: (method, path).
const ROUTES: [(&str, &str); 3] = [
    ("GET", "/plugins"),
    ("GET", "/plugins/echo"),
    ("POST", "/plugins/echo/call"),
];

fn send(engine: &Engine, (method, path): (&str, &str), token: Option<&str>) -> (u16, Value) {
    let response = if method == "GET" {
        engine.get_as(path, token)
    } else {
        engine.post_as(path, &echo_call(engine, "hi"), token)
    }
    .expect("request");
    (response.status, response.body)
}

/// The value of the sample named exactly `series` in a scrape, if present.
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|v| v.parse().ok())
}

fn scrape(engine: &Engine) -> String {
    let response = engine.get_as("/metrics", None).expect("scrape");
    assert_eq!(response.status, 200, "{}", response.text);
    response.text
}

#[test]
fn plugin_routes_answer_401_then_403_then_200() {
    let engine = echo_engine("");

    for route in ROUTES {
        let (status, body) = send(&engine, route, None);
        assert_eq!(status, 401, "{route:?}: {body}");
        assert_eq!(body["code"], "missing_token");
        assert_eq!(body["doc_url"], "/docs/errors#missing_token");
    }

    let foreign = yardmaster::auth::Authenticator::from_secret(b"another engine's key").issue(
        &serde_json::from_value(json!({
            "sub": TEST_USER, "org": TEST_ORG, "scopes": ["plugin:view", "plugin:manage"],
            "iat": 0, "exp": 4_000_000_000i64,
        }))
        .expect("claims"),
    );
    let unsigned = {
        let good = engine.token(&["all"]);
        let mut parts: Vec<&str> = good.split('.').collect();
        let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"JWT"}"#);
        parts[0] = &header;
        parts[2] = "";
        parts.join(".")
    };
    for bad in ["garbage", "a.b.c", foreign.as_str(), unsigned.as_str()] {
        for route in ROUTES {
            let (status, body) = send(&engine, route, Some(bad));
            assert_eq!(status, 401, "{route:?} with {bad}: {body}");
            assert_eq!(body["code"], "invalid_token", "{body}");
        }
    }

    let expired = engine.token_for(TEST_USER, TEST_ORG, &["all"], -300);
    for route in ROUTES {
        let (status, body) = send(&engine, route, Some(&expired));
        assert_eq!(status, 401, "{route:?}: {body}");
        assert_eq!(body["code"], "token_expired");
    }

    let scripts = engine.token(&["script:view", "script:run", "site:manage"]);
    for route in ROUTES {
        let (status, body) = send(&engine, route, Some(&scripts));
        assert_eq!(status, 403, "{route:?}: {body}");
        assert_eq!(body["code"], "missing_scope");
        assert_eq!(body["type"], "forbidden");
    }

    let viewer = engine.token(&["plugin:view"]);
    let (status, list) = send(&engine, ROUTES[0], Some(&viewer));
    assert_eq!(status, 200, "{list}");
    assert_eq!(list[0]["name"], "echo");
    let (status, show) = send(&engine, ROUTES[1], Some(&viewer));
    assert_eq!(status, 200, "{show}");
    assert_eq!(show["kind"], "transport");
    let (status, body) = send(&engine, ROUTES[2], Some(&viewer));
    assert_eq!(status, 403, "{body}");
    assert!(
        body["message"]
            .as_str()
            .is_some_and(|m| m.contains("engine:admin")),
        "{body}"
    );
    // Neither `plugin:manage` nor every scope `all` grants is enough for a call.
    for scopes in [&["plugin:manage"][..], &["all"]] {
        let (status, body) = send(&engine, ROUTES[2], Some(&engine.token(scopes)));
        assert_eq!(status, 403, "{scopes:?}: {body}");
    }

    let operator = engine.token(&["engine:admin"]);
    let (status, body) = send(&engine, ROUTES[2], Some(&operator));
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["result"]["output"], "1.0.0: hi");
    let manager = engine.token(&["plugin:manage"]);
    let (status, _) = send(&engine, ROUTES[0], Some(&manager));
    assert_eq!(status, 403, "manage does not imply view");

    for open in ["/healthz", "/openapi.json", "/metrics", "/docs/errors"] {
        let response = engine.get_as(open, None).expect("open route");
        assert_eq!(response.status, 200, "{open}: {}", response.text);
    }
}

#[test]
fn metrics_count_plugin_calls_failures_and_requests() {
    let engine = echo_engine("");
    let calls = "yardmaster_plugin_calls_total{plugin=\"echo\",operation=\"run-script\"}";
    let plugin_failures = "yardmaster_plugin_call_failures_total{plugin=\"echo\",operation=\"run-script\",reason=\"plugin\"}";
    let before = scrape(&engine);
    let calls_before = sample(&before, calls).unwrap_or(0.0);
    let failures_before = sample(&before, plugin_failures).unwrap_or(0.0);
    assert!(before.contains("# TYPE yardmaster_plugin_calls_total counter"));
    assert_eq!(
        sample(&before, "yardmaster_plugins{status=\"active\"}"),
        Some(1.0)
    );
    assert_eq!(
        sample(&before, "yardmaster_jobs{status=\"pending\"}"),
        Some(0.0)
    );
    assert!(sample(&before, "yardmaster_uptime_seconds").is_some());

    for script in ["one", "two", "fail on purpose"] {
        engine
            .post("/plugins/echo/call", &echo_call(&engine, script))
            .expect("call");
    }
    // Refused before reaching the plugin: not a plugin call.
    let refused = engine
        .post_as("/plugins/echo/call", &echo_call(&engine, "x"), None)
        .expect("call");
    assert_eq!(refused.status, 401);

    let after = scrape(&engine);
    assert_eq!(sample(&after, calls), Some(calls_before + 3.0), "{after}");
    assert_eq!(
        sample(&after, plugin_failures),
        Some(failures_before + 1.0),
        "{after}"
    );
    let route = "route=\"/plugins/{name}/call\",method=\"POST\"";
    let ok =
        format!("yardmaster_http_request_duration_seconds_count{{{route},status_class=\"2xx\"}}");
    let failed =
        format!("yardmaster_http_request_duration_seconds_count{{{route},status_class=\"5xx\"}}");
    let unauthorized =
        format!("yardmaster_http_request_duration_seconds_count{{{route},status_class=\"4xx\"}}");
    assert_eq!(sample(&after, &ok), Some(2.0), "{after}");
    assert_eq!(
        sample(&after, &failed),
        Some(1.0),
        "a plugin error is a 502"
    );
    assert_eq!(sample(&after, &unauthorized), Some(1.0));
    assert!(!after.contains("route=\"/plugins/echo/call\""));
}

const ISSUER: &str = "https://sso.example.com/";

/// An RS256 token signed with one of the engine's test keys.
fn rs256(key: &str, kid: &str, claims: &Value) -> String {
    let der = std::fs::read(testdata(&format!("{key}.key.der"))).expect("test key");
    let input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(json!({"alg": "RS256", "typ": "JWT", "kid": kid}).to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    );
    let pair = ring::signature::RsaKeyPair::from_der(&der).expect("rsa key");
    let mut signature = vec![0; pair.public().modulus_len()];
    pair.sign(
        &ring::signature::RSA_PKCS1_SHA256,
        &ring::rand::SystemRandom::new(),
        input.as_bytes(),
        &mut signature,
    )
    .expect("sign");
    format!("{input}.{}", URL_SAFE_NO_PAD.encode(signature))
}

fn testdata(name: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../engine/src/auth/testdata")
        .join(name)
}

#[test]
fn an_issuer_named_in_the_config_signs_rs256_tokens() {
    let jwks = testdata("issuer.jwks.json");
    let engine = echo_engine(&format!(
        "[auth]\nissuer = \"{ISSUER}\"\naudience = \"yardmaster\"\njwks_file = \"{}\"\n",
        jwks.display()
    ));
    assert!(
        engine
            .log()
            .contains(&format!("accepting RS256 tokens issued by {ISSUER}")),
        "{}",
        engine.log()
    );
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs();
    let claims = |iss: &str, aud: &str| {
        json!({
            "iss": iss, "aud": aud, "sub": "carol", "org": "acme",
            "scope": "plugin:view", "iat": now, "exp": now + 600,
        })
    };

    let good = rs256("issuer", "issuer-2026", &claims(ISSUER, "yardmaster"));
    let list = engine.get_as("/plugins", Some(&good)).expect("list");
    assert_eq!(list.status, 200, "{}", list.text);
    let call = engine
        .post_as("/plugins/echo/call", &echo_call(&engine, "x"), Some(&good))
        .expect("call");
    assert_eq!(call.status, 403, "{}", call.text);

    let refused = [
        rs256("other", "issuer-2026", &claims(ISSUER, "yardmaster")),
        rs256("other", "other-2026", &claims(ISSUER, "yardmaster")),
        rs256(
            "issuer",
            "issuer-2026",
            &claims("https://evil.example.com/", "yardmaster"),
        ),
        rs256("issuer", "issuer-2026", &claims(ISSUER, "grafana")),
    ];
    for token in &refused {
        let response = engine.get_as("/plugins", Some(token)).expect("list");
        assert_eq!(response.status, 401, "{}", response.text);
        assert_eq!(response.body["code"], "invalid_token");
    }
    // The engine's own tokens still work beside the issuer's.
    assert_eq!(engine.get("/plugins").expect("list").status, 200);
}

#[test]
fn a_wrong_issuer_key_file_stops_the_engine_at_start() {
    let dir = tempfile::tempdir().expect("dir");
    let config = dir.path().join("yardmaster.toml");
    std::fs::write(
        &config,
        format!(
            "install_bundled_plugins = false\n[auth]\nissuer = \"{ISSUER}\"\njwks_file = \"{}\"\n",
            dir.path().join("missing.json").display()
        ),
    )
    .expect("config");
    let out = std::process::Command::new(yardmaster_tests::binary())
        .arg("serve")
        .arg("--config")
        .arg(&config)
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .arg("--plugins-dir")
        .arg(dir.path().join("plugins"))
        .arg("--listen")
        .arg("127.0.0.1:0")
        .env_remove("YARDMASTER_CONFIG")
        .output()
        .expect("run yardmaster");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("auth.jwks_file") && stderr.contains("missing.json"),
        "{stderr}"
    );
}
