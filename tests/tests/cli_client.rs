//! The command line as an API client, end to end against the real binary: tokens from
//! the engine's key, sites, jobs, and a scheduled script created by one user, approved
//! by another and watched until every simulated router (127.11.0.x) has run it; and
//! `yardmaster demo` with its 50 routers (127.11.1.x).

use std::io::{BufRead, BufReader};
use std::net::Ipv4Addr;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};

use yardmaster::simulate::Profile;
use yardmaster_tests::{Engine, EngineOptions, binary, eventually, fleet, http};

/// Runs `yardmaster args`; gives the exit status, stdout and stderr.
fn yardmaster(args: &[&str]) -> (Option<i32>, String, String) {
    let out = Command::new(binary())
        .args(args)
        .env("YARDMASTER_LOG", "warn")
        .env_remove("YARDMASTER_URL")
        .env_remove("YARDMASTER_TOKEN")
        .env_remove("YARDMASTER_DATA_DIR")
        .env_remove("YARDMASTER_CONFIG")
        .output()
        .expect("run yardmaster");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Runs `yardmaster args` and expects success; gives stdout.
fn ok(args: &[&str]) -> String {
    let (code, stdout, stderr) = yardmaster(args);
    assert_eq!(
        code,
        Some(0),
        "yardmaster {args:?}\nstdout: {stdout}\nstderr: {stderr}"
    );
    stdout
}

fn token(engine: &Engine, sub: &str, org: &str, scopes: &str) -> String {
    let data = engine.dir.path().join("data");
    let out = ok(&[
        "token",
        "create",
        "--sub",
        sub,
        "--org",
        org,
        "--scopes",
        scopes,
        "--ttl",
        "1h",
        "--data-dir",
        data.to_str().expect("path"),
    ]);
    let token = out.trim().to_string();
    assert_eq!(token.split('.').count(), 3, "{out:?}");
    assert!(!token.contains(char::is_whitespace));
    token
}

#[test]
fn token_create_refuses_unknown_scopes_and_bad_ttls() {
    let dir = tempfile::tempdir().expect("dir");
    let data = dir.path().to_str().expect("path");
    let (code, stdout, stderr) = yardmaster(&[
        "token",
        "create",
        "--sub",
        "a",
        "--org",
        "o",
        "--scopes",
        "script:fly",
        "--data-dir",
        data,
    ]);
    assert_ne!(code, Some(0));
    assert!(stdout.is_empty(), "{stdout}");
    assert!(stderr.contains("unknown scope `script:fly`"), "{stderr}");
    let (code, _, stderr) = yardmaster(&[
        "token",
        "create",
        "--sub",
        "a",
        "--org",
        "o",
        "--scopes",
        "all",
        "--ttl",
        "forever",
        "--data-dir",
        data,
    ]);
    assert_ne!(code, Some(0));
    assert!(stderr.contains("--ttl"), "{stderr}");
    assert!(
        !dir.path().join("jwt.key").exists(),
        "a refused token creates no key"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sites_jobs_and_a_script_approved_by_a_second_user_and_watched() {
    let routers = fleet(Ipv4Addr::new(127, 11, 0, 1), 3, Profile::V7_18, "cli").await;
    let engine = tokio::task::spawn_blocking(|| {
        Engine::start(EngineOptions {
            bundled: true,
            ..EngineOptions::default()
        })
    })
    .await
    .expect("engine");
    let url = format!("http://{}", engine.addr);
    let alice = token(&engine, "alice", "acme", "all");
    let bob = token(&engine, "bob", "acme", "script:view,script:authorize");
    let viewer = token(&engine, "carol", "acme", "site:view");
    let outsider = token(&engine, "mallory", "other", "all");
    let addresses = routers.addresses();

    let result = tokio::task::spawn_blocking(move || {
        let base = ["--url", url.as_str()];
        let with = |tok: &str, args: &[&str]| -> Vec<String> {
            let mut all: Vec<String> = args.iter().map(|s| s.to_string()).collect();
            all.extend(base.iter().map(|s| s.to_string()));
            all.push("--token".into());
            all.push(tok.to_string());
            all
        };
        let run = |tok: &str, args: &[&str]| {
            let all = with(tok, args);
            let refs: Vec<&str> = all.iter().map(String::as_str).collect();
            yardmaster(&refs)
        };
        let expect_ok = |tok: &str, args: &[&str]| {
            let (code, stdout, stderr) = run(tok, args);
            assert_eq!(
                code,
                Some(0),
                "{args:?}\nstdout: {stdout}\nstderr: {stderr}"
            );
            stdout
        };

        // Sites.
        let mut ids = Vec::new();
        for (i, addr) in addresses.iter().enumerate() {
            let name = format!("edge-{i}");
            let ip = addr.ip().to_string();
            let port = addr.port().to_string();
            let out = expect_ok(
                &alice,
                &[
                    "site",
                    "add",
                    "--name",
                    &name,
                    "--address",
                    &ip,
                    "--port",
                    &port,
                    "--username",
                    "admin",
                    "--password",
                    "cli",
                    "--tag",
                    "cli",
                    "--json",
                ],
            );
            let site: serde_json::Value = serde_json::from_str(&out).expect("site json");
            assert_eq!(site["name"], name.as_str());
            assert!(site.get("password").is_none(), "{site}");
            ids.push(site["id"].as_str().expect("id").to_string());
        }
        let listed = expect_ok(&viewer, &["site", "list"]);
        assert!(listed.starts_with("ID"), "{listed}");
        for (i, id) in ids.iter().enumerate() {
            let line = listed
                .lines()
                .find(|l| l.starts_with(id.as_str()))
                .unwrap_or_else(|| panic!("{id} not listed:\n{listed}"));
            assert!(line.contains(&format!("edge-{i}")), "{line}");
        }
        // Another organization sees none of them.
        let theirs = expect_ok(&outsider, &["site", "list"]);
        assert_eq!(theirs.trim(), "no sites");

        // An API error: printed with its code and documentation, exit non-zero.
        let (code, _, stderr) = run(
            &viewer,
            &["site", "add", "--name", "x", "--address", "127.0.0.1"],
        );
        assert_ne!(code, Some(0));
        let line = stderr
            .lines()
            .find(|l| l.starts_with("error: "))
            .unwrap_or_default();
        assert!(line.contains("(missing_scope, see "), "{stderr}");
        assert!(line.contains("site:manage"), "{stderr}");
        let (code, _, stderr) = run(&alice, &["script", "show", "no-such-script"]);
        assert_ne!(code, Some(0));
        assert!(stderr.contains("(not_found, see "), "{stderr}");

        // A job on one router.
        let out = expect_ok(
            &alice,
            &[
                "job",
                "run",
                &ids[0],
                "--script",
                ":log info \"cli-job\"",
                "--description",
                "cli job",
                "--express",
                "--wait",
            ],
        );
        assert!(out.contains("completed"), "{out}");
        let jobs = expect_ok(&alice, &["job", "list", &ids[0]]);
        let line = jobs
            .lines()
            .find(|l| l.contains("cli job"))
            .unwrap_or_else(|| panic!("job not listed:\n{jobs}"));
        assert!(line.contains("completed"), "{line}");

        // A scheduled script: alice creates it, cannot approve it herself, bob does.
        let sites = ids.join(",");
        // A critical finding must be acknowledged by its rule id.
        let risky = |extra: &[&str]| {
            let mut args = vec![
                "script",
                "schedule",
                "--description",
                "cli reset",
                "--script",
                "/system reset-configuration",
                "--site",
                &sites,
                "--in",
                "1h",
                "--quiet",
            ];
            args.extend_from_slice(extra);
            run(&alice, &args)
        };
        let (code, _, stderr) = risky(&[]);
        assert_ne!(code, Some(0), "an unacknowledged reset was scheduled");
        assert!(
            stderr.contains("factory-reset (line 1, column 1)"),
            "{stderr}"
        );
        let (code, stdout, stderr) = risky(&["--acknowledge", "factory-reset"]);
        assert_eq!(code, Some(0), "{stdout}\n{stderr}");
        let shown = expect_ok(&bob, &["script", "show", stdout.trim()]);
        assert!(
            shown
                .lines()
                .any(|l| l.starts_with("acknowledged:") && l.ends_with("factory-reset")),
            "{shown}"
        );
        let id = expect_ok(
            &alice,
            &[
                "script",
                "schedule",
                "--description",
                "cli rollout",
                "--script",
                ":log info \"cli-scheduled\"",
                "--site",
                &sites,
                "--in",
                "10s",
                "--quiet",
            ],
        )
        .trim()
        .to_string();
        assert!(!id.is_empty() && !id.contains(' '), "{id:?}");
        let (code, _, stderr) = run(&alice, &["script", "authorize", &id]);
        assert_ne!(code, Some(0), "the creator approved her own script");
        assert!(stderr.starts_with("error: "), "{stderr}");
        let out = expect_ok(&bob, &["script", "authorize", &id]);
        assert!(out.contains("authorized: scheduled"), "{out}");
        let shown = expect_ok(&bob, &["script", "show", &id]);
        assert!(shown.contains("cli rollout"), "{shown}");
        let listed = expect_ok(&bob, &["script", "list"]);
        assert!(
            listed.lines().any(|l| l.starts_with(id.as_str())),
            "{listed}"
        );

        let (code, stdout, stderr) = run(&bob, &["script", "watch", &id, "--interval", "200ms"]);
        assert_eq!(code, Some(0), "watch:\n{stdout}\n{stderr}");
        assert!(
            stdout.contains(&format!("scheduled script {id} completed on 3 site(s)")),
            "{stdout}"
        );
        let progress: Vec<&str> = stdout.lines().filter(|l| l.starts_with('[')).collect();
        let last = progress.last().expect("a progress line");
        assert!(
            last.contains("3/3 completed, 0 failed, 0 pending"),
            "{stdout}"
        );
        assert!(last.starts_with(&format!("[{}]", "#".repeat(40))), "{last}");

        // Cancelling a finished script is refused; watching it again returns at once.
        let (code, _, _) = run(&alice, &["script", "cancel", &id]);
        assert_ne!(code, Some(0));
        expect_ok(&bob, &["script", "watch", &id]);
        ids
    })
    .await
    .expect("the CLI steps");
    assert_eq!(result.len(), 3);
    for router in routers.routers() {
        let log = router.log_messages();
        assert_eq!(
            log.iter().filter(|m| m.contains("cli-scheduled")).count(),
            1,
            "router {}: {log:?}",
            router.index()
        );
    }
    assert_eq!(
        routers
            .router(0)
            .log_messages()
            .iter()
            .filter(|m| m.contains("cli-job"))
            .count(),
        1
    );
}

#[test]
fn templates_from_the_command_line_make_schedules() {
    let engine = Engine::start(EngineOptions::default());
    let url = format!("http://{}", engine.addr);
    let alice = token(&engine, "alice", "acme", "all");
    let api = ["--url", url.as_str(), "--token", alice.as_str()];
    let with = |args: &[&str]| -> String {
        let mut all: Vec<&str> = args.to_vec();
        all.extend_from_slice(&api);
        ok(&all)
    };
    let file = engine.dir.path().join("dns.rsc");
    std::fs::write(&file, "/ip dns set servers={{dns}}\n").expect("write");
    let created = with(&[
        "template",
        "create",
        "--name",
        "DNS",
        "--description",
        "resolvers",
        "--file",
        file.to_str().expect("path"),
        "--var",
        "dns:ip=1.1.1.1",
        "--json",
    ]);
    let created: serde_json::Value = serde_json::from_str(&created).expect("json");
    let id = created["id"].as_str().expect("id").to_owned();
    assert_eq!(created["variables"][0]["default"], "1.1.1.1");
    std::fs::write(
        &file,
        "/ip dns set servers={{dns}} allow-remote-requests=no\n",
    )
    .expect("write");
    let updated = with(&[
        "template",
        "update",
        &id,
        "--name",
        "DNS",
        "--file",
        file.to_str().expect("path"),
    ]);
    assert!(updated.contains("version 2"), "{updated}");
    let listed = with(&["template", "list"]);
    assert!(listed.contains("DNS") && listed.contains(&id), "{listed}");
    let shown = with(&["template", "show", &id]);
    assert!(shown.contains("{{dns}}: ip = 1.1.1.1"), "{shown}");

    let site = with(&[
        "site",
        "add",
        "--name",
        "edge",
        "--address",
        "127.11.3.1",
        "--json",
    ]);
    let site: serde_json::Value = serde_json::from_str(&site).expect("json");
    let site = site["id"].as_str().expect("id").to_owned();
    let schedule = with(&[
        "script",
        "schedule",
        "--description",
        "dns from template",
        "--template",
        &id,
        "--var",
        "dns=9.9.9.9",
        "--site",
        &site,
        "--in",
        "1h",
        "-q",
    ]);
    let shown = with(&["script", "show", schedule.trim(), "--json"]);
    let shown: serde_json::Value = serde_json::from_str(&shown).expect("json");
    let shown = shown.get("data").unwrap_or(&shown);
    assert_eq!(
        shown["script"],
        "/ip dns set servers=9.9.9.9 allow-remote-requests=no\n"
    );
    assert_eq!(shown["origin"]["template_version"], 2);

    let community = with(&["community", "list"]);
    assert!(community.contains("no community scripts"), "{community}");
}

#[test]
fn a_watch_of_a_cancelled_script_exits_non_zero() {
    let engine = Engine::start(EngineOptions::default());
    let url = format!("http://{}", engine.addr);
    let alice = token(&engine, "alice", "acme", "all");
    let out = ok(&[
        "site",
        "add",
        "--name",
        "far",
        "--address",
        "127.11.2.1",
        "--json",
        "--url",
        &url,
        "--token",
        &alice,
    ]);
    let site: serde_json::Value = serde_json::from_str(&out).expect("json");
    let site = site["id"].as_str().expect("id");
    let id = ok(&[
        "script",
        "schedule",
        "--description",
        "never",
        "--script",
        ":log info x",
        "--site",
        site,
        "--in",
        "1h",
        "-q",
        "--url",
        &url,
        "--token",
        &alice,
    ]);
    let id = id.trim();
    ok(&["script", "cancel", id, "--url", &url, "--token", &alice]);
    let (code, stdout, stderr) =
        yardmaster(&["script", "watch", id, "--url", &url, "--token", &alice]);
    assert_eq!(code, Some(1), "{stdout}\n{stderr}");
    assert!(stdout.contains("finished: cancelled"), "{stdout}");
}

#[test]
fn the_demo_serves_fifty_sites_and_stops_on_ctrl_c() {
    let dir = tempfile::tempdir().expect("dir");
    let mut child = Command::new(binary())
        .arg("demo")
        .arg("--dir")
        .arg(dir.path())
        .args(["--listen", "127.0.0.1:0", "--fleet-bind", "127.11.1.1"])
        .env("YARDMASTER_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the demo");
    let out = Arc::new(Mutex::new(String::new()));
    let sink = out.clone();
    let stdout = child.stdout.take().expect("stdout");
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Ok(mut out) = sink.lock() {
                out.push_str(&line);
                out.push('\n');
            }
        }
    });
    let text = eventually("the demo's welcome", || {
        if let Ok(Some(status)) = child.try_wait() {
            let mut err = String::new();
            if let Some(mut e) = child.stderr.take() {
                let _ = std::io::Read::read_to_string(&mut e, &mut err);
            }
            panic!("the demo exited with {status}: {err}");
        }
        let text = out.lock().ok()?.clone();
        text.contains("Press Ctrl-C to stop.").then_some(text)
    });
    let value = |key: &str| -> String {
        text.lines()
            .find_map(|l| l.trim().strip_prefix(&format!("export {key}=")))
            .unwrap_or_else(|| panic!("no {key} in:\n{text}"))
            .to_string()
    };
    let url = value("YARDMASTER_URL");
    let admin = value("YARDMASTER_TOKEN");
    let approver = value("APPROVER_TOKEN");
    assert_ne!(admin, approver);
    let addr = url.trim_start_matches("http://").parse().expect("address");
    assert_eq!(
        http(addr, "GET", "/healthz", None).expect("healthz").status,
        200
    );
    let listed = ok(&[
        "site",
        "list",
        "--page-size",
        "100",
        "--json",
        "--url",
        &url,
        "--token",
        &admin,
    ]);
    let page: serde_json::Value = serde_json::from_str(&listed).expect("json");
    let sites = page["data"].as_array().expect("data");
    assert_eq!(sites.len(), 50, "{listed}");
    assert_eq!(sites[0]["name"], "router-001");
    assert_eq!(sites[49]["address"], "127.11.1.50");
    // The approver sees the sites too, but cannot add one.
    let (code, _, stderr) = yardmaster(&[
        "site",
        "add",
        "--name",
        "x",
        "--address",
        "127.11.1.200",
        "--url",
        &url,
        "--token",
        &approver,
    ]);
    assert_ne!(code, Some(0));
    assert!(stderr.contains("missing_scope"), "{stderr}");

    let pid = child.id().to_string();
    // Ctrl-C is SIGINT; the shell's own `kill` sends it.
    let status = Command::new("sh")
        .args(["-c", &format!("kill -INT {pid}")])
        .status()
        .expect("sh");
    assert!(status.success());
    let status = child.wait().expect("wait");
    assert!(status.success(), "the demo exited with {status}");
    let _ = reader.join();
    assert!(
        out.lock()
            .map(|o| o.contains("demo stopped"))
            .unwrap_or(false)
    );
}
