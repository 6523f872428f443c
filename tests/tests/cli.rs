//! The `yardmaster` command line: `plugin inspect` without an engine, `plugin list`
//! against a running one, and clear failures.

use std::process::Command;

use yardmaster_tests::{Engine, EngineOptions, binary, fixture};

fn yardmaster(args: &[&str]) -> (bool, String, String) {
    yardmaster_with_token(args, None)
}

fn yardmaster_with_token(args: &[&str], token: Option<&str>) -> (bool, String, String) {
    let mut command = Command::new(binary());
    command
        .args(args)
        .env("YARDMASTER_LOG", "warn")
        .env_remove("YARDMASTER_TOKEN");
    if let Some(token) = token {
        command.env("YARDMASTER_TOKEN", token);
    }
    let out = command.output().expect("run yardmaster");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn inspect_prints_what_a_plugin_is() {
    let echo = fixture("echo");
    let (ok, stdout, stderr) = yardmaster(&["plugin", "inspect", echo.to_str().expect("path")]);
    assert!(ok, "{stderr}");
    assert!(
        stdout.starts_with("echo 1.0.0 (transport plugin)"),
        "{stdout}"
    );
    assert!(
        stdout.contains("contract:  yardmaster:transport@1.2.0"),
        "{stdout}"
    );
    assert!(
        stdout.contains(
            "ports:     none (sites must name one) plain, none (sites must name one) TLS"
        ),
        "{stdout}"
    );
    assert!(stdout.contains("yardmaster:host/log@1.0.0"), "{stdout}");
    assert!(
        stdout.contains("greeting: Put between the version"),
        "{stdout}"
    );

    let (ok, stdout, stderr) =
        yardmaster(&["plugin", "inspect", "--json", echo.to_str().expect("path")]);
    assert!(ok, "{stderr}");
    let json: serde_json::Value = serde_json::from_str(&stdout).expect("json");
    assert_eq!(json["name"], "echo");
    assert_eq!(json["kind"], "transport");
    assert_eq!(json["wit_version"], "1.2.0");
    assert_eq!(json["default_port"], serde_json::Value::Null);
    assert_eq!(json["config_keys"][0]["name"], "greeting");
}

#[test]
fn inspect_refuses_what_the_engine_cannot_run() {
    let v2 = fixture("wit-v2");
    let (ok, _, stderr) = yardmaster(&["plugin", "inspect", v2.to_str().expect("path")]);
    assert!(!ok);
    assert!(stderr.contains("yardmaster:transport@2.0.0"), "{stderr}");
    assert!(stderr.contains("yardmaster:transport@1.2.0"), "{stderr}");

    let dir = tempfile::tempdir().expect("tmp");
    let missing = dir.path().join("missing.wasm");
    let (ok, _, stderr) = yardmaster(&["plugin", "inspect", missing.to_str().expect("path")]);
    assert!(!ok);
    assert!(stderr.contains("cannot read"), "{stderr}");
}

#[test]
fn list_reads_the_running_engine() {
    let engine = Engine::start(EngineOptions {
        plugins: vec!["echo".into(), "wit-v2".into()],
        ..EngineOptions::default()
    });
    engine.wait_for_file("echo.wasm", "echo", |p| p["status"] == "active");
    engine.wait_for_file("wit-v2.wasm", "wit-v2", |p| p["status"] == "failed");
    let url = format!("http://{}", engine.addr);
    let (ok, _, stderr) = yardmaster(&["plugin", "list", "--url", &url]);
    assert!(!ok);
    assert!(stderr.contains("no bearer token"), "{stderr}");
    let viewer = engine.token(&["plugin:view"]);
    let (ok, stdout, stderr) =
        yardmaster_with_token(&["plugin", "list", "--url", &url], Some(&viewer));
    assert!(ok, "{stderr}");
    let echo = stdout
        .lines()
        .find(|l| l.starts_with("echo "))
        .unwrap_or_default();
    // NAME KIND VERSION WIT STATUS PORTS FILE; echo declares no default ports.
    assert_eq!(
        echo.split_whitespace().collect::<Vec<_>>(),
        [
            "echo",
            "transport",
            "1.0.0",
            "1.2.0",
            "active",
            "-",
            "echo.wasm"
        ],
        "{stdout}"
    );
    assert!(stdout.contains("wit-v2.wasm"), "{stdout}");
    assert!(
        stdout.contains(
            "error: wit-v2.wasm: the component was built against yardmaster:transport@2.0.0"
        ),
        "{stdout}"
    );

    let (ok, _, stderr) = yardmaster(&["plugin", "list", "--url", "http://127.0.0.1:9"]);
    assert!(!ok);
    assert!(
        stderr.contains("cannot reach the engine at http://127.0.0.1:9"),
        "{stderr}"
    );
}

#[test]
fn serve_fails_clearly_on_a_bad_config() {
    let dir = tempfile::tempdir().expect("tmp");
    let config = dir.path().join("bad.toml");
    std::fs::write(&config, "[plugins.echo]\nmemory = \"lots\"\n").expect("write");
    let (ok, _, stderr) = yardmaster(&["serve", "--config", config.to_str().expect("path")]);
    assert!(!ok);
    assert!(
        stderr.contains("plugins.echo.memory: `lots` is not a size like 64MiB"),
        "{stderr}"
    );
}
