//! The RouterOS API plugin in the real engine against `yardmaster simulate`: every reply
//! kind, both login flows, API-SSL, and every fault the simulator can show.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use serde_json::{Value, json};
use yardmaster_tests::{Engine, EngineOptions, Response, binary, eventually};

/// A `yardmaster simulate` fleet, stopped when dropped.
struct Fleet {
    child: Child,
    output: Arc<Mutex<Vec<String>>>,
    first: String,
}

impl Fleet {
    fn start(bind: &str, routers: usize, extra: &[&str]) -> Fleet {
        let mut child = Command::new(binary())
            .args([
                "simulate",
                "--routers",
                &routers.to_string(),
                "--bind",
                bind,
            ])
            .args(["--password", "s3cret"])
            .args(extra)
            .env("YARDMASTER_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start the simulator");
        let output = Arc::new(Mutex::new(Vec::new()));
        let stdout = child.stdout.take().expect("piped");
        let sink = output.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Ok(mut lines) = sink.lock() {
                    lines.push(line);
                }
            }
        });
        let fleet = Fleet {
            child,
            output,
            first: bind.to_string(),
        };
        eventually("the simulator to be ready", || {
            fleet.lines().iter().any(|l| l == "ready").then_some(())
        });
        fleet
    }

    fn lines(&self) -> Vec<String> {
        self.output.lock().map(|l| l.clone()).unwrap_or_default()
    }

    fn fingerprint(&self) -> String {
        self.lines()
            .iter()
            .find_map(|l| l.split("certificate sha256 ").nth(1).map(str::to_string))
            .expect("the simulator prints its certificate's fingerprint")
    }

    fn target(&self) -> Value {
        json!({"site_id": "r1", "address": self.first, "username": "admin", "password": "s3cret"})
    }
}

impl Drop for Fleet {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn engine() -> Engine {
    let engine = Engine::start(EngineOptions {
        bundled: true,
        ..EngineOptions::default()
    });
    engine.wait_for_file("routeros-api.wasm", "the RouterOS plugin", |p| {
        p["status"] == "active"
    });
    engine
}

/// Runs one operation. A call names a site of the organization, so the endpoint a test
/// describes (address, port, credentials, TLS) is registered as a site first, and the
/// call names it, keeping the call's own settings (timeouts).
fn call(engine: &Engine, mut body: Value) -> Response {
    if let Some(endpoint) = body.get("target").filter(|t| t.get("address").is_some()) {
        body["target"] = on_site(engine, endpoint);
    }
    engine
        .post("/plugins/routeros-api/call", &body)
        .expect("call")
}

fn on_site(engine: &Engine, endpoint: &Value) -> Value {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let mut site = json!({"name": format!("router-{n}"), "transport": "routeros-api"});
    for key in ["address", "port", "username", "password"] {
        if let Some(value) = endpoint.get(key) {
            site[key] = value.clone();
        }
    }
    if let Some(tls) = endpoint.get("tls") {
        let mut tls = tls.clone();
        tls["enabled"] = json!(true);
        site["tls"] = tls;
    }
    let mut target = json!({"site_id": engine.add_site(&site)});
    for key in ["connect_timeout_ms", "reply_timeout_ms", "options"] {
        if let Some(value) = endpoint.get(key) {
            target[key] = value.clone();
        }
    }
    target
}

fn command(engine: &Engine, target: &Value, words: &[&str]) -> Response {
    call(
        engine,
        json!({"operation": "run-command", "target": target, "words": words}),
    )
}

fn script(engine: &Engine, target: &Value, text: &str) -> Response {
    call(
        engine,
        json!({"operation": "run-script", "target": target, "script": text}),
    )
}

fn ok(response: &Response) -> &Value {
    assert_eq!(response.status, 200, "{}", response.text);
    &response.body["result"]
}

fn failed(response: &Response, code: &str) -> String {
    assert_eq!(response.status, 502, "{}", response.text);
    let message = response.body["message"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(
        message.starts_with(&format!("[{code}]")),
        "expected a {code} error, got {message}"
    );
    message
}

#[test]
fn every_reply_kind_on_routeros_7() {
    let fleet = Fleet::start("127.3.0.1", 2, &["--no-tls"]);
    let engine = engine();
    let target = fleet.target();

    let probe = call(&engine, json!({"operation": "probe", "target": target}));
    let probe = ok(&probe);
    assert_eq!(probe["online"], true);
    assert!(
        probe["version"]
            .as_str()
            .is_some_and(|v| v.starts_with("7.18.2")),
        "{probe}"
    );
    assert!(
        probe["identity"].is_string() && probe["board"].is_string(),
        "{probe}"
    );

    let added = command(
        &engine,
        &target,
        &[
            "/ip/address/add",
            "=address=10.9.9.1/24",
            "=interface=ether1",
        ],
    );
    let ret = ok(&added)["done"]["ret"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(ret.starts_with('*'), "add answers =ret=*N, got {ret:?}");

    let printed = command(
        &engine,
        &target,
        &[
            "/ip/address/print",
            "?address=10.9.9.1/24",
            "=.proplist=.id,address,interface",
        ],
    );
    let rows = ok(&printed)["rows"].as_array().cloned().unwrap_or_default();
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0][".id"], ret.as_str());
    assert_eq!(rows[0]["interface"], "ether1");
    assert!(
        rows[0].get("network").is_none(),
        ".proplist limits the columns: {rows:?}"
    );

    let empty = command(
        &engine,
        &target,
        &["/ip/address/print", "?address=192.0.2.99/32"],
    );
    assert_eq!(ok(&empty)["empty"], true);
    assert_eq!(ok(&empty)["rows"], json!([]));

    let trap = command(&engine, &target, &["/ip/nothing/print"]);
    let message = failed(&trap, "trap");
    assert!(message.contains("no such command"), "{message}");

    let output = script(
        &engine,
        &target,
        ":log info \"yardmaster was here\"; :put \"hello\"",
    );
    assert_eq!(ok(&output)["output"].as_str().map(str::trim), Some("hello"));
    let log = command(
        &engine,
        &target,
        &["/log/print", "?message=yardmaster was here"],
    );
    assert_eq!(
        ok(&log)["rows"].as_array().map(Vec::len),
        Some(1),
        "the script ran exactly once"
    );

    let broken = script(&engine, &target, ":put \"unterminated");
    let message = failed(&broken, "script");
    assert!(
        message.contains("syntax error") || message.contains("expected"),
        "{message}"
    );
    let unknown = script(&engine, &target, "/frobnicate now");
    let message = failed(&unknown, "script");
    assert!(message.contains("bad command name"), "{message}");

    let backup = call(
        &engine,
        json!({"operation": "backup", "target": target, "save_as": "before-change"}),
    );
    let backup = ok(&backup);
    assert!(
        backup["config"]
            .as_str()
            .is_some_and(|c| c.contains("/ip address")),
        "{backup}"
    );
    assert_eq!(backup["saved_file"], "before-change.backup");
    let files = command(
        &engine,
        &target,
        &["/file/print", "?name=before-change.backup"],
    );
    assert_eq!(ok(&files)["rows"].as_array().map(Vec::len), Some(1));
}

#[test]
fn legacy_challenge_login_and_file_output_on_6_42() {
    let fleet = Fleet::start("127.3.1.1", 1, &["--no-tls", "--profile", "6.42"]);
    let engine = engine();
    let target = fleet.target();
    let probe = call(&engine, json!({"operation": "probe", "target": target}));
    assert!(
        ok(&probe)["version"]
            .as_str()
            .is_some_and(|v| v.starts_with("6.42.12")),
        "{}",
        probe.text
    );
    let output = script(&engine, &target, ":put \"from an old router\"");
    assert_eq!(
        ok(&output)["output"].as_str().map(str::trim),
        Some("from an old router")
    );
    let empty = command(
        &engine,
        &target,
        &["/ip/address/print", "?address=192.0.2.99/32"],
    );
    assert_eq!(ok(&empty)["empty"], false, "6.x has no !empty");
    assert_eq!(ok(&empty)["rows"], json!([]));
}

#[test]
fn plain_login_on_6_45_and_bad_credentials() {
    let fleet = Fleet::start("127.3.2.1", 1, &["--no-tls", "--profile", "6.45"]);
    let engine = engine();
    let target = fleet.target();
    let output = script(&engine, &target, ":put \"six four five\"");
    assert_eq!(
        ok(&output)["output"].as_str().map(str::trim),
        Some("six four five")
    );
    let mut wrong = target.clone();
    wrong["password"] = json!("wrong");
    let message = failed(
        &command(&engine, &wrong, &["/system/identity/print"]),
        "auth",
    );
    assert!(
        message.contains("invalid user name or password"),
        "{message}"
    );
}

#[test]
fn api_ssl_verified_pinned_or_unverified() {
    let fleet = Fleet::start("127.3.3.1", 1, &[]);
    let engine = engine();
    let pin = fleet.fingerprint();
    let mut target = fleet.target();

    target["tls"] = json!({"verify": false, "pinned_sha256": pin});
    let probe = call(&engine, json!({"operation": "probe", "target": target}));
    assert_eq!(ok(&probe)["online"], true);

    target["tls"] = json!({"verify": false});
    let probe = call(&engine, json!({"operation": "probe", "target": target}));
    assert_eq!(ok(&probe)["online"], true);

    target["tls"] = json!({"verify": true});
    let message = failed(
        &command(&engine, &target, &["/system/identity/print"]),
        "tls",
    );
    assert!(
        message.contains("certificate"),
        "a self-signed certificate does not verify: {message}"
    );

    target["tls"] = json!({"pinned_sha256": "00".repeat(32)});
    let message = failed(
        &command(&engine, &target, &["/system/identity/print"]),
        "tls",
    );
    assert!(message.contains("does not match the pinned"), "{message}");
}

#[test]
fn api_ssl_verified_against_a_certificate_the_operator_trusts() {
    let dir = tempfile::tempdir().expect("tmp");
    let pem = dir.path().join("simulator.pem");
    let fleet = Fleet::start("127.3.9.1", 2, &["--cert-out", pem.to_str().expect("path")]);
    assert!(
        fleet
            .lines()
            .iter()
            .any(|l| l.starts_with("api-ssl certificate written to")),
        "{:?}",
        fleet.lines()
    );
    let engine = Engine::start(EngineOptions {
        bundled: true,
        config: format!("[tls]\nca_file = {:?}\n", pem.to_string_lossy()),
        ..EngineOptions::default()
    });
    engine.wait_for_file("routeros-api.wasm", "the RouterOS plugin", |p| {
        p["status"] == "active"
    });

    // The certificate names the first router's address, so that router verifies as it is.
    let mut first = fleet.target();
    first["tls"] = json!({"verify": true});
    let probe = call(&engine, json!({"operation": "probe", "target": first}));
    assert_eq!(ok(&probe)["online"], true, "{}", probe.text);

    // The second router is reached by address and verified by the name on the
    // certificate, as a site's `tls.server_name` says.
    let mut second = fleet.target();
    second["address"] = json!("127.3.9.2");
    second["tls"] = json!({"verify": true, "server_name": "yardmaster-simulator"});
    let output = script(&engine, &second, ":put \"verified\"");
    assert_eq!(
        ok(&output)["output"].as_str().map(str::trim),
        Some("verified")
    );

    // Without the name it does not verify: the certificate does not name 127.3.9.2.
    second["tls"] = json!({"verify": true});
    let message = failed(
        &command(&engine, &second, &["/system/identity/print"]),
        "tls",
    );
    assert!(message.contains("127.3.9.2"), "{message}");
}

#[test]
fn faults_get_distinct_errors() {
    let engine = engine();

    let drop = Fleet::start("127.3.4.1", 1, &["--no-tls", "--fault", "drop"]);
    let message = failed(
        &command(&engine, &drop.target(), &["/system/identity/print"]),
        "reset",
    );
    assert!(message.contains("middle of a sentence"), "{message}");

    let slow = Fleet::start("127.3.5.1", 1, &["--no-tls", "--fault", "delay=3000"]);
    let mut target = slow.target();
    target["reply_timeout_ms"] = json!(500);
    let message = failed(
        &command(&engine, &target, &["/system/identity/print"]),
        "timeout",
    );
    assert!(message.contains("no reply"), "{message}");

    let refusing = Fleet::start("127.3.6.1", 1, &["--no-tls", "--fault", "refuse-login"]);
    failed(
        &command(&engine, &refusing.target(), &["/system/identity/print"]),
        "auth",
    );

    let fatal = Fleet::start("127.3.7.1", 1, &["--no-tls", "--fault", "fatal"]);
    failed(
        &command(&engine, &fatal.target(), &["/system/identity/print"]),
        "fatal",
    );

    let offline = Fleet::start("127.3.8.1", 1, &["--no-tls", "--fault", "offline=600"]);
    let probe = call(
        &engine,
        json!({"operation": "probe", "target": offline.target()}),
    );
    assert_eq!(ok(&probe)["online"], false);
    assert!(ok(&probe)["detail"].is_string());
    failed(
        &command(&engine, &offline.target(), &["/system/identity/print"]),
        "refused",
    );

    // A peer that is no RouterOS: it answers the login with a control byte.
    let impostor = std::net::TcpListener::bind("127.3.10.1:0").expect("listener");
    let port = impostor.local_addr().expect("addr").port();
    let server = std::thread::spawn(move || {
        use std::io::{Read, Write};
        if let Ok((mut conn, _)) = impostor.accept() {
            let mut buf = [0u8; 256];
            let _ = conn.read(&mut buf);
            let _ = conn.write_all(&[0xF8, 0x01, 0x02]);
            std::thread::sleep(std::time::Duration::from_millis(200));
        }
    });
    let target =
        json!({"address": "127.3.10.1", "port": port, "username": "admin", "password": ""});
    let message = failed(
        &command(&engine, &target, &["/system/identity/print"]),
        "protocol",
    );
    assert!(
        message.contains("control byte") || message.contains("0xf8") || message.contains("0xF8"),
        "{message}"
    );
    server.join().expect("impostor");

    // Nothing listens there at all.
    let nobody = json!({"address": "127.3.9.1", "username": "admin", "password": ""});
    failed(
        &command(&engine, &nobody, &["/system/identity/print"]),
        "refused",
    );
}
