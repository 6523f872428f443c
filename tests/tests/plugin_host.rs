//! The plugin host end to end: the real binary, a real plugins folder, real reloads.

use std::collections::BTreeMap;
use std::net::TcpListener;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};
use yardmaster_tests::{Engine, EngineOptions, eventually, fixture, transport_call};

/// The site `plugin` serves in `engine`'s store (127.0.0.1 port 1), registered on first
/// use: a transport call names a site of the organization, nothing else.
fn site_for(engine: &Engine, plugin: &str) -> String {
    static SITES: Mutex<BTreeMap<(PathBuf, String), String>> = Mutex::new(BTreeMap::new());
    let mut sites = SITES.lock().unwrap_or_else(|p| p.into_inner());
    sites
        .entry((engine.data_dir(), plugin.to_owned()))
        .or_insert_with(|| {
            engine.add_site(&json!({
                "name": format!("{plugin}-site"),
                "address": "127.0.0.1",
                "port": 1,
                "transport": plugin,
                "password": "unused",
            }))
        })
        .clone()
}

fn run_script(engine: &Engine, plugin: &str, script: &str) -> yardmaster_tests::Response {
    let site = site_for(engine, plugin);
    engine
        .post(
            &format!("/plugins/{plugin}/call"),
            &transport_call(&site, "run-script", json!({"script": script})),
        )
        .expect("call")
}

fn active(entry: &Value) -> bool {
    entry["status"] == "active"
}

#[test]
fn a_plugin_copied_in_becomes_active_and_answers() {
    let engine = Engine::start(EngineOptions {
        config: "[plugins.echo.config]\ngreeting = \"hello from the config\"\n".into(),
        ..EngineOptions::default()
    });
    assert_eq!(engine.get("/plugins").expect("list").body, json!([]));

    std::fs::copy(fixture("echo"), engine.plugins_dir().join("echo.wasm")).expect("copy");
    let entry = engine.wait_for_file("echo.wasm", "echo to become active", active);
    assert_eq!(entry["name"], "echo");
    assert_eq!(entry["kind"], "transport");
    assert_eq!(entry["version"], "1.0.0");
    assert_eq!(entry["wit_version"], "1.2.0");
    assert_eq!(entry["error"], Value::Null);
    assert_eq!(entry["sha256"].as_str().map(str::len), Some(64));
    assert!(entry["loaded_at"].is_string());
    assert_eq!(entry["default_port"], Value::Null, "{entry}");

    let show = engine.get("/plugins/echo").expect("show");
    assert_eq!(show.body["default_port"], Value::Null, "{}", show.text);
    // A site without a port of its own, served by a transport that declares no default
    // port, is refused before the plugin runs: nothing broader than the site is granted.
    let portless_site = engine.add_site(&json!({
        "name": "portless", "address": "127.0.0.1", "transport": "echo",
        "password": "unused",
    }));
    let portless = transport_call(
        &portless_site,
        "run-script",
        json!({"script": "/log info hi"}),
    );
    let reply = engine.post("/plugins/echo/call", &portless).expect("call");
    assert!(
        reply
            .text
            .contains(&format!("site {portless_site} names no port"))
            && reply.text.contains("give the site a port"),
        "{} {}",
        reply.status,
        reply.text
    );

    let reply = run_script(&engine, "echo", "/log info hi");
    assert_eq!(reply.status, 200, "{}", reply.text);
    assert_eq!(
        reply.body["result"]["output"],
        "1.0.0: hello from the config: /log info hi"
    );

    let reply = engine
        .post(
            "/plugins/echo/call",
            &transport_call(
                &site_for(&engine, "echo"),
                "run-command",
                json!({"words": ["/system/identity/print", "=.proplist=name"]}),
            ),
        )
        .expect("call");
    assert_eq!(reply.status, 200, "{}", reply.text);
    assert_eq!(
        reply.body["result"]["rows"][0]["word"],
        "/system/identity/print"
    );
    assert_eq!(reply.body["result"]["rows"][2]["version"], "1.0.0");
    let site = site_for(&engine, "echo");
    assert_eq!(reply.body["result"]["done"]["site"], site.as_str());

    // The plugin's own log line lands in the engine's log with its name and version.
    eventually("the plugin's log line", || {
        let log = engine.log();
        log.lines()
            .find(|l| l.contains(&format!("echo 1.0.0 run-script on {site}")))
            .filter(|l| l.contains("echo") && l.contains("version") && l.contains("1.0.0"))
            .map(|_| ())
    });
}

#[test]
fn a_replacement_takes_over_while_calls_run_and_none_fails() {
    let engine = Arc::new(Engine::start(EngineOptions {
        plugins: vec!["echo".into()],
        ..EngineOptions::default()
    }));
    engine.wait_for_file("echo.wasm", "echo 1.0.0", |p| p["version"] == "1.0.0");

    let stop = Arc::new(AtomicBool::new(false));
    let calls = Arc::new(AtomicUsize::new(0));
    let saw_v2 = Arc::new(AtomicBool::new(false));
    let workers: Vec<_> = (0..4)
        .map(|_| {
            let (engine, stop, calls, saw_v2) =
                (engine.clone(), stop.clone(), calls.clone(), saw_v2.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    let reply = run_script(&engine, "echo", "sleep 20");
                    assert_eq!(
                        reply.status, 200,
                        "a call failed during the swap: {}",
                        reply.text
                    );
                    let output = reply.body["result"]["output"]
                        .as_str()
                        .unwrap_or_default()
                        .to_string();
                    assert!(output.ends_with(": sleep 20"), "{output}");
                    if output.starts_with("2.0.0") {
                        saw_v2.store(true, Ordering::Relaxed);
                    }
                    calls.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();

    eventually("calls to run", || {
        (calls.load(Ordering::Relaxed) > 8).then_some(())
    });
    // An operator's `cp` over the live file: truncate, then write.
    std::fs::copy(fixture("echo-v2"), engine.plugins_dir().join("echo.wasm")).expect("replace");
    eventually("version 2.0.0 to answer", || {
        saw_v2.load(Ordering::Relaxed).then_some(())
    });
    let before = calls.load(Ordering::Relaxed);
    eventually("more calls on the new version", || {
        (calls.load(Ordering::Relaxed) > before + 8).then_some(())
    });
    stop.store(true, Ordering::Relaxed);
    for worker in workers {
        worker.join().expect("no call failed");
    }
    let entry = engine.wait_for_file("echo.wasm", "echo 2.0.0 listed", |p| {
        p["version"] == "2.0.0"
    });
    assert_eq!(entry["status"], "active");
    assert_eq!(entry["error"], Value::Null);
}

#[test]
fn garbage_over_a_plugin_leaves_the_old_version_serving_then_delete_unloads() {
    let engine = Engine::start(EngineOptions {
        plugins: vec!["echo".into()],
        ..EngineOptions::default()
    });
    let file = engine.plugins_dir().join("echo.wasm");
    let first = engine.wait_for_file("echo.wasm", "echo", active);

    std::fs::write(&file, b"this is not a plugin").expect("garbage");
    let entry = engine.wait_for_file("echo.wasm", "the garbage to be refused", |p| {
        !p["error"].is_null()
    });
    assert_eq!(entry["status"], "active");
    assert_eq!(entry["version"], "1.0.0");
    assert_eq!(entry["sha256"], first["sha256"]);
    let error = entry["error"].as_str().unwrap_or_default();
    assert!(error.contains("not a WebAssembly component"), "{error}");
    assert_eq!(
        run_script(&engine, "echo", "still here").body["result"]["output"],
        "1.0.0: still here"
    );

    // A truncated component is refused the same way.
    let bytes = std::fs::read(fixture("echo-v2")).expect("fixture");
    std::fs::write(&file, &bytes[..bytes.len() / 2]).expect("truncated");
    let entry = engine.wait_for_file("echo.wasm", "the truncated file to be refused", |p| {
        p["error"]
            .as_str()
            .is_some_and(|e| e.contains("not a valid component"))
    });
    assert_eq!(entry["version"], "1.0.0");
    assert_eq!(
        run_script(&engine, "echo", "again").body["result"]["output"],
        "1.0.0: again"
    );

    std::fs::remove_file(&file).expect("delete");
    eventually("echo to be unloaded", || {
        engine.plugin_file("echo.wasm").is_none().then_some(())
    });
    let reply = run_script(&engine, "echo", "gone?");
    assert_eq!(reply.status, 404, "{}", reply.text);
    assert_eq!(reply.body["code"], "plugin_not_found");
    assert_eq!(reply.body["type"], "not_found");
    assert!(
        reply.body["doc_url"]
            .as_str()
            .is_some_and(|u| u.ends_with("#plugin_not_found"))
    );
}

#[test]
fn each_fixture_fails_its_own_call_and_the_engine_keeps_serving() {
    let granted = TcpListener::bind("127.0.0.1:0").expect("listener");
    let refused = TcpListener::bind("127.0.0.1:0").expect("listener");
    let granted_port = granted.local_addr().expect("addr").port();
    let refused_port = refused.local_addr().expect("addr").port();
    // The granted endpoint answers HTTP too, so the wasi:http path can succeed.
    let responder = granted.try_clone().expect("listener");
    std::thread::spawn(move || {
        use std::io::{Read, Write};
        for mut conn in responder.incoming().flatten() {
            let mut buf = [0u8; 2048];
            if matches!(conn.read(&mut buf), Ok(n) if n > 0) {
                let _ = conn.write_all(
                    b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
                );
            }
        }
    });
    let engine = Engine::start(EngineOptions {
        plugins: [
            "echo",
            "trap",
            "trap-describe",
            "spin",
            "memory-bomb",
            "wit-v2",
            "trespasser",
        ]
        .map(String::from)
        .to_vec(),
        config: format!(
            "[plugins.spin]\ntimeout = \"2s\"\n[plugins.memory-bomb]\nmemory = \"32MiB\"\n[plugins.trespasser]\nallow = [\"127.0.0.1:{granted_port}\"]\n"
        ),
        ..EngineOptions::default()
    });
    for file in [
        "echo.wasm",
        "trap.wasm",
        "spin.wasm",
        "memory-bomb.wasm",
        "trespasser.wasm",
    ] {
        engine.wait_for_file(file, &format!("{file} to load"), active);
    }

    let v2 = engine.wait_for_file("wit-v2.wasm", "wit-v2 to be refused", |p| {
        !p["error"].is_null()
    });
    assert_eq!(v2["status"], "failed");
    let error = v2["error"].as_str().unwrap_or_default();
    assert!(error.contains("yardmaster:transport@2.0.0"), "{error}");
    assert!(error.contains("yardmaster:transport@1.2.0"), "{error}");

    let describe = engine.wait_for_file("trap-describe.wasm", "trap-describe to be refused", |p| {
        !p["error"].is_null()
    });
    assert_eq!(describe["status"], "failed");
    let error = describe["error"].as_str().unwrap_or_default();
    assert!(error.contains("describe() failed"), "{error}");
    assert!(error.contains("panicked"), "{error}");

    let trap = run_script(&engine, "trap", "anything");
    assert_eq!(trap.status, 502, "{}", trap.text);
    assert_eq!(trap.body["code"], "plugin_crashed");
    let message = trap.body["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("crashed (trap) in run-script"),
        "{message}"
    );
    assert!(message.contains("panicked at"), "{message}");

    let spin = run_script(&engine, "spin", "anything");
    assert_eq!(spin.status, 504, "{}", spin.text);
    assert_eq!(spin.body["code"], "plugin_timeout");
    assert!(
        spin.body["message"]
            .as_str()
            .unwrap_or_default()
            .contains("within its time limit of 2s")
    );

    let bomb = run_script(&engine, "memory-bomb", "anything");
    assert_eq!(bomb.status, 502, "{}", bomb.text);
    let message = bomb.body["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("ran out of memory in run-script: it may use at most 32 MiB"),
        "{message}"
    );

    let trespass = |words: Vec<String>| {
        engine
            .post(
                "/plugins/trespasser/call",
                &transport_call(
                    &site_for(&engine, "trespasser"),
                    "run-command",
                    json!({ "words": words }),
                ),
            )
            .expect("call")
    };
    for (word, refusal) in [
        (
            "tcp",
            format!("refused by the allow-list: tcp connect to 127.0.0.1:{refused_port}"),
        ),
        (
            "plain",
            format!("127.0.0.1:{refused_port} is not in this plugin's allow-list"),
        ),
        (
            "http",
            format!("refused by the allow-list: http request to 127.0.0.1:{refused_port}"),
        ),
    ] {
        let reply = trespass(vec![format!("{word}=127.0.0.1:{refused_port}")]);
        assert_eq!(reply.status, 502, "{}", reply.text);
        let message = reply.body["message"].as_str().unwrap_or_default();
        assert!(message.contains(&refusal), "{word}: {message}");
    }

    // The same plugin reaches what it was granted, by every path.
    let allowed = trespass(
        ["tcp", "plain", "http"]
            .map(|word| format!("{word}=127.0.0.1:{granted_port}"))
            .to_vec(),
    );
    assert_eq!(allowed.status, 200, "{}", allowed.text);
    let refusals = engine.log();
    assert!(
        refusals.contains(&format!("refused tcp connect to 127.0.0.1:{refused_port}")),
        "{refusals}"
    );

    // After all of that, the engine and the good plugin carry on.
    assert_eq!(
        run_script(&engine, "echo", "fine").body["result"]["output"],
        "1.0.0: fine"
    );
    assert_eq!(engine.get("/healthz").expect("health").status, 200);
    drop((granted, refused));
}

#[test]
fn a_restart_loads_plugins_from_the_compiled_cache() {
    let engine = Engine::start(EngineOptions {
        plugins: vec!["echo".into()],
        ..EngineOptions::default()
    });
    engine.wait_for_file("echo.wasm", "echo", active);
    // The load is logged once the plugin serves; the log reader may be a line behind.
    eventually("the load to be logged", || {
        engine.log().contains("cached=false").then_some(())
    });
    let dir = engine.kill();
    let engine = Engine::start(EngineOptions {
        reuse: Some(dir),
        ..EngineOptions::default()
    });
    engine.wait_for_file("echo.wasm", "echo after restart", active);
    // The load is logged once the plugin serves; the log reader may be a line behind.
    eventually("the load to be logged", || {
        engine.log().contains("cached=true").then_some(())
    });
    assert_eq!(
        run_script(&engine, "echo", "warm").body["result"]["output"],
        "1.0.0: warm"
    );
}

#[test]
fn bad_requests_get_clear_errors() {
    let engine = Engine::start(EngineOptions {
        plugins: vec!["echo".into()],
        ..EngineOptions::default()
    });
    engine.wait_for_file("echo.wasm", "echo", active);
    let raw = engine
        .post("/plugins/echo/call", &json!("not an object"))
        .expect("call");
    assert_eq!(raw.status, 422, "{}", raw.text);
    assert_eq!(raw.body["code"], "validation_failed");
    let unknown = engine
        .post("/plugins/echo/call", &json!({"operation": "explode"}))
        .expect("call");
    assert_eq!(unknown.status, 422, "{}", unknown.text);
    assert!(
        unknown.body["message"]
            .as_str()
            .unwrap_or_default()
            .contains("explode")
    );
    let wrong_kind = engine
        .post(
            "/plugins/echo/call",
            &json!({"operation": "summarize", "script": ":put 1"}),
        )
        .expect("call");
    assert_eq!(wrong_kind.status, 422, "{}", wrong_kind.text);
    assert_eq!(wrong_kind.body["code"], "wrong_plugin_kind");
    let missing = engine.get("/nowhere").expect("call");
    assert_eq!(missing.status, 404);
    assert_eq!(missing.body["code"], "not_found");
    let _ = Duration::ZERO;
}

#[test]
fn the_bundled_plugins_seed_an_empty_folder_once() {
    let engine = Engine::start(EngineOptions {
        bundled: true,
        ..EngineOptions::default()
    });
    let entry = engine.wait_for_file("routeros-api.wasm", "the bundled RouterOS plugin", active);
    assert_eq!(entry["name"], "routeros-api");
    assert_eq!(entry["kind"], "transport");
    assert_eq!(entry["default_port"], 8728, "{entry}");
    assert_eq!(entry["default_tls_port"], 8729, "{entry}");
    let show = engine.get("/plugins/routeros-api").expect("show");
    assert_eq!(show.status, 200, "{}", show.text);
    assert!(
        show.body["description"]
            .as_str()
            .is_some_and(|d| d.contains("RouterOS API")),
        "{}",
        show.text
    );
    // The transport says which ports it uses when a site names none.
    assert_eq!(show.body["default_port"], 8728, "{}", show.text);
    assert_eq!(show.body["default_tls_port"], 8729, "{}", show.text);

    // The operator removes them all; a restart respects that.
    for name in yardmaster::plugins::bundled_names() {
        let _ = std::fs::remove_file(engine.plugins_dir().join(name));
    }
    eventually("the plugins to be unloaded", || {
        let list = engine.get("/plugins").ok()?;
        (list.body == json!([])).then_some(())
    });
    let dir = engine.kill();
    let engine = Engine::start(EngineOptions {
        bundled: true,
        reuse: Some(dir),
        ..EngineOptions::default()
    });
    assert_eq!(engine.get("/plugins").expect("list").body, json!([]));
}

#[test]
fn a_plugin_flooding_the_log_is_cut_to_a_hundred_lines_a_call() {
    let engine = Engine::start(EngineOptions {
        plugins: vec!["echo".into()],
        ..EngineOptions::default()
    });
    let response = run_script(&engine, "echo", "log 500");
    assert_eq!(response.status, 200, "{}", response.body);
    // The call's own line ("run-script on site-1") and 99 of the flood get through.
    let log = eventually("the dropped-lines line", || {
        let log = engine.log();
        log.contains("401 log lines dropped").then_some(log)
    });
    let written = log.lines().filter(|l| l.contains("echo flood ")).count();
    assert_eq!(written, 99, "{log}");
    assert!(log.contains("echo flood 98") && !log.contains("echo flood 99"));
}
