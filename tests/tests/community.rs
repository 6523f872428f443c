//! The community library end to end: the bundled `github` plugin against a GitHub
//! stand-in on loopback (the REST routes it calls, answered with GitHub's documented JSON
//! shapes and headers), through a running engine.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};
use yardmaster_tests::{Engine, EngineOptions, Response, eventually, http_as};

const FIRST: &str = "1111111111111111111111111111111111111111";
const SECOND: &str = "2222222222222222222222222222222222222222";
const SCRIPT_V1: &str = "# keep a nightly backup\n/system backup save name=nightly\n";
const SCRIPT_V2: &str =
    "# keep two backups\n/system backup save name=nightly\n/export file=nightly\n";

/// A GitHub stand-in: `main` of `acme/scripts` names a commit the test can move.
struct GitHub {
    addr: SocketAddr,
    main: Arc<Mutex<String>>,
    /// Answers wait this long (for a restart in the middle of a fetch).
    slow: Arc<AtomicBool>,
    requests: Arc<Mutex<Vec<String>>>,
}

fn reply(stream: &mut TcpStream, status: &str, headers: &[(&str, String)], body: &str) {
    let mut head = format!(
        "HTTP/1.1 {status}\r\ncontent-length: {}\r\nconnection: close\r\n",
        body.len()
    );
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    let _ = stream.write_all(head.as_bytes());
    let _ = stream.write_all(body.as_bytes());
}

impl GitHub {
    fn start() -> GitHub {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr");
        let main = Arc::new(Mutex::new(FIRST.to_owned()));
        let slow = Arc::new(AtomicBool::new(false));
        let requests = Arc::new(Mutex::new(Vec::new()));
        let (m, s, r) = (main.clone(), slow.clone(), requests.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let (m, s, r) = (m.clone(), s.clone(), r.clone());
                std::thread::spawn(move || serve(stream, &m, &s, &r));
            }
        });
        GitHub {
            addr,
            main,
            slow,
            requests,
        }
    }

    fn base(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn config(&self) -> String {
        format!(
            "[plugins.github]\nallow = [\"{addr}\"]\n[plugins.github.config]\napi_url = \"{b}/api\"\nraw_url = \"{b}/raw\"\nweb_url = \"{b}/web\"\n",
            addr = self.addr,
            b = self.base()
        )
    }
}

fn serve(
    mut stream: TcpStream,
    main: &Mutex<String>,
    slow: &AtomicBool,
    requests: &Mutex<Vec<String>>,
) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    let mut reader = BufReader::new(stream.try_clone().expect("clone"));
    let mut line = String::new();
    if reader.read_line(&mut line).is_err() {
        return;
    }
    let path = line.split_whitespace().nth(1).unwrap_or("").to_owned();
    let mut headers = BTreeMap::new();
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h).is_err() || h.trim().is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_owned());
        }
    }
    if let Some(n) = headers
        .get("content-length")
        .and_then(|n| n.parse::<usize>().ok())
    {
        let mut body = vec![0; n];
        let _ = reader.read_exact(&mut body);
    }
    requests.lock().expect("lock").push(path.clone());
    if slow.load(Ordering::SeqCst) {
        std::thread::sleep(Duration::from_secs(3));
    }
    let json_headers = [("content-type", "application/json; charset=utf-8".to_owned())];
    let main = main.lock().expect("lock").clone();
    let not_found = r#"{"message":"Not Found","documentation_url":"https://docs.github.com/rest"}"#;
    match path.as_str() {
        "/api/repos/acme/scripts/commits/main" => reply(
            &mut stream,
            "200 OK",
            &json_headers,
            &json!({"sha": main, "commit": {"message": "scripts"}}).to_string(),
        ),
        p if p == format!("/api/repos/acme/scripts/commits/{FIRST}")
            || p == format!("/api/repos/acme/scripts/commits/{SECOND}") =>
        {
            let sha = p.rsplit('/').next().unwrap_or_default();
            reply(
                &mut stream,
                "200 OK",
                &json_headers,
                &json!({"sha": sha}).to_string(),
            )
        }
        "/api/repos/acme/scripts/commits/limited" => reply(
            &mut stream,
            "403 Forbidden",
            &[
                ("content-type", "application/json".to_owned()),
                ("x-ratelimit-limit", "60".to_owned()),
                ("x-ratelimit-remaining", "0".to_owned()),
                ("x-ratelimit-reset", "1893456000".to_owned()),
            ],
            r#"{"message":"API rate limit exceeded for 127.0.0.1."}"#,
        ),
        "/api/repos/acme/scripts" => reply(
            &mut stream,
            "200 OK",
            &json_headers,
            &json!({
                "full_name": "acme/scripts", "html_url": "https://github.com/acme/scripts",
                "description": "RouterOS maintenance scripts", "stargazers_count": 128,
                "created_at": "2019-03-04T05:06:07Z", "license": {"key": "mit", "spdx_id": "MIT"}
            })
            .to_string(),
        ),
        "/api/users/acme" => reply(
            &mut stream,
            "200 OK",
            &json_headers,
            &json!({
                "login": "acme", "name": "Acme Networks", "html_url": "https://github.com/acme",
                "avatar_url": "https://avatars.githubusercontent.com/u/4242", "followers": 31,
                "created_at": "2012-01-02T03:04:05Z"
            })
            .to_string(),
        ),
        p if p == format!("/raw/acme/scripts/{FIRST}/ros/backup.rsc") => {
            reply(&mut stream, "200 OK", &[], SCRIPT_V1)
        }
        p if p == format!("/raw/acme/scripts/{SECOND}/ros/backup.rsc") => {
            reply(&mut stream, "200 OK", &[], SCRIPT_V2)
        }
        p if p.starts_with("/raw/acme/scripts/") && p.ends_with("/README.md") => {
            reply(&mut stream, "200 OK", &[], "# Backups\nRun nightly.\n")
        }
        _ => reply(&mut stream, "404 Not Found", &json_headers, not_found),
    }
}

fn start(github: &GitHub, reuse: Option<tempfile::TempDir>) -> Engine {
    let engine = Engine::start(EngineOptions {
        config: github.config(),
        bundled: true,
        reuse,
        ..EngineOptions::default()
    });
    engine.wait_for_file("github.wasm", "github", |p| p["status"] == "active");
    engine
}

fn call(engine: &Engine, method: &str, path: &str, body: Option<&Value>, token: &str) -> Response {
    http_as(engine.addr, method, path, body, Some(token))
        .unwrap_or_else(|e| panic!("{method} {path}: {e}"))
}

fn wait_done(engine: &Engine, token: &str, id: &str) -> Value {
    eventually("the submission to be processed", || {
        let r = call(
            engine,
            "GET",
            &format!("/scripts/community-scripts/{id}"),
            None,
            token,
        );
        (r.body["status"] != "processing").then_some(r.body)
    })
}

#[test]
fn a_submission_is_pinned_to_its_commit_and_refreshed_into_a_new_record() {
    let github = GitHub::start();
    let engine = start(&github, None);
    let alice = engine.token_for("alice", "community-a", &["all"], 3600);
    let bob = engine.token_for("bob", "community-b", &["script:view"], 3600);

    let submitted = call(
        &engine,
        "POST",
        "/scripts/community-scripts",
        Some(&json!({
            "github_url": format!("{}/web/acme/scripts/blob/main/ros/backup.rsc", github.base()),
            "readme_url": format!("{}/raw/acme/scripts/main/README.md", github.base()),
        })),
        &alice,
    );
    assert_eq!(submitted.status, 201, "{}", submitted.text);
    assert_eq!(submitted.body["status"], "processing");
    let id = submitted.body["id"].as_str().expect("id").to_owned();
    assert_eq!(id.len(), 26, "a ULID: {id}");

    let s = wait_done(&engine, &alice, &id);
    assert_eq!(s["status"], "ready", "{s}");
    assert_eq!(s["name"], "backup.rsc");
    assert_eq!(s["description"], "RouterOS maintenance scripts");
    assert_eq!(s["content"], SCRIPT_V1);
    assert_eq!(s["size"], SCRIPT_V1.len());
    assert_eq!(s["commit"], FIRST);
    assert_eq!(s["reference"], "main");
    assert_eq!(
        s["sha"],
        yardmaster::store::git_blob_sha(SCRIPT_V1.as_bytes()),
        "git's blob hash"
    );
    assert_eq!(
        s["raw_url"],
        format!("{}/raw/acme/scripts/{FIRST}/ros/backup.rsc", github.base())
    );
    assert_eq!(
        s["github_url"],
        format!(
            "{}/web/acme/scripts/blob/{FIRST}/ros/backup.rsc",
            github.base()
        )
    );
    assert_eq!(
        s["readme_url"],
        format!("{}/raw/acme/scripts/{FIRST}/README.md", github.base())
    );
    assert_eq!(s["readme"], "# Backups\nRun nightly.\n");
    assert_eq!(s["repository"]["name"], "acme/scripts");
    assert_eq!(s["repository"]["url"], "https://github.com/acme/scripts");
    assert_eq!(s["repository"]["stars"], 128);
    assert_eq!(s["repository"]["created_at"], "2019-03-04T05:06:07Z");
    assert_eq!(s["repository"]["license"], "MIT");
    assert_eq!(s["user"]["name"], "Acme Networks");
    assert_eq!(s["user"]["url"], "https://github.com/acme");
    assert_eq!(
        s["user"]["avatar"],
        "https://avatars.githubusercontent.com/u/4242"
    );
    assert_eq!(s["user"]["followers"], 31);
    assert_eq!(s["user"]["created_at"], "2012-01-02T03:04:05Z");
    assert_eq!(s["lint"]["syntax_ok"], true);

    // The library is shared: another organization reads it, and finds it.
    let seen = call(
        &engine,
        "GET",
        "/scripts/community-scripts?search=maintenance",
        None,
        &bob,
    );
    assert_eq!(seen.status, 200, "{}", seen.text);
    assert_eq!(seen.body["meta"]["total"], 1, "{}", seen.text);
    assert_eq!(seen.body["data"][0]["id"], id.as_str());
    assert!(
        seen.body["data"][0].get("content").is_none(),
        "the listing leaves content out"
    );
    let none = call(
        &engine,
        "GET",
        "/scripts/community-scripts?search=wireguard",
        None,
        &bob,
    );
    assert_eq!(none.body["meta"]["total"], 0);

    // `main` moves on: the stored script stays at the first commit...
    *github.main.lock().expect("lock") = SECOND.to_owned();
    let again = call(
        &engine,
        "GET",
        &format!("/scripts/community-scripts/{id}"),
        None,
        &alice,
    );
    assert_eq!(again.body["content"], SCRIPT_V1);
    assert_eq!(again.body["commit"], FIRST);
    // ...until a refresh, which makes a new record and leaves the old one alone.
    let refreshed = call(
        &engine,
        "POST",
        &format!("/scripts/community-scripts/{id}/refresh"),
        None,
        &alice,
    );
    assert_eq!(refreshed.status, 201, "{}", refreshed.text);
    let new_id = refreshed.body["id"].as_str().expect("id").to_owned();
    assert_ne!(new_id, id);
    let new = wait_done(&engine, &alice, &new_id);
    assert_eq!(new["status"], "ready", "{new}");
    assert_eq!(new["commit"], SECOND);
    assert_eq!(new["content"], SCRIPT_V2);
    assert_eq!(new["refreshed_from"], id.as_str());
    let old = call(
        &engine,
        "GET",
        &format!("/scripts/community-scripts/{id}"),
        None,
        &alice,
    );
    assert_eq!(old.body["content"], SCRIPT_V1);

    // A URL naming a commit already fetched is that record.
    let pinned = call(
        &engine,
        "POST",
        "/scripts/community-scripts",
        Some(
            &json!({"github_url": format!("{}/raw/acme/scripts/{FIRST}/ros/backup.rsc", github.base())}),
        ),
        &alice,
    );
    assert_eq!(pinned.status, 201, "{}", pinned.text);
    let pinned_id = pinned.body["id"].as_str().expect("id").to_owned();
    assert_eq!(wait_done(&engine, &alice, &pinned_id)["status"], "ready");
    let twice = call(
        &engine,
        "POST",
        "/scripts/community-scripts",
        Some(
            &json!({"github_url": format!("{}/raw/acme/scripts/{FIRST}/ros/backup.rsc", github.base())}),
        ),
        &alice,
    );
    assert_eq!(twice.status, 200, "{}", twice.text);
    assert_eq!(twice.body["id"], pinned_id.as_str());

    // Reading is not submitting.
    let refused = call(
        &engine,
        "POST",
        "/scripts/community-scripts",
        Some(&json!({"github_url": "https://raw.githubusercontent.com/a/b/main/c.rsc"})),
        &bob,
    );
    assert_eq!(refused.status, 403, "{}", refused.text);
}

#[test]
fn failures_say_why_and_a_restart_finishes_what_was_in_flight() {
    let github = GitHub::start();
    let engine = start(&github, None);
    let alice = engine.token_for("alice", "community-a", &["all"], 3600);
    let submit = |url: String| {
        let r = call(
            &engine,
            "POST",
            "/scripts/community-scripts",
            Some(&json!({"github_url": url})),
            &alice,
        );
        assert_eq!(r.status, 201, "{}", r.text);
        r.body["id"].as_str().expect("id").to_owned()
    };
    let missing = submit(format!(
        "{}/raw/acme/scripts/main/ros/nope.rsc",
        github.base()
    ));
    let limited = submit(format!(
        "{}/raw/acme/scripts/limited/ros/backup.rsc",
        github.base()
    ));
    let elsewhere = submit("https://gitlab.example/acme/scripts/-/raw/main/a.rsc".into());

    let m = wait_done(&engine, &alice, &missing);
    assert_eq!(m["status"], "failed", "{m}");
    assert!(
        m["failure"]
            .as_str()
            .expect("failure")
            .contains("not found"),
        "{m}"
    );
    let e = wait_done(&engine, &alice, &elsewhere);
    assert_eq!(e["status"], "failed", "{e}");
    assert!(
        e["failure"]
            .as_str()
            .expect("failure")
            .contains("not a GitHub file URL"),
        "{e}"
    );
    // A spent rate limit is retried, then fails naming it.
    let l = wait_done(&engine, &alice, &limited);
    assert_eq!(l["status"], "failed", "{l}");
    let why = l["failure"].as_str().expect("failure");
    assert!(
        why.contains("rate limit") && why.contains("1893456000"),
        "{l}"
    );
    assert!(why.contains("4 attempts"), "{l}");

    // The engine stops in the middle of a fetch; started again, it finishes it.
    github.slow.store(true, Ordering::SeqCst);
    let in_flight = submit(format!(
        "{}/raw/acme/scripts/main/ros/backup.rsc",
        github.base()
    ));
    eventually("the fetch to start", || {
        let asked = github.requests.lock().expect("lock");
        asked
            .iter()
            .any(|p| p.ends_with("/commits/main"))
            .then_some(())
    });
    let dir = engine.kill();
    github.slow.store(false, Ordering::SeqCst);
    let engine = start(&github, Some(dir));
    let alice = engine.token_for("alice", "community-a", &["all"], 3600);
    let done = wait_done(&engine, &alice, &in_flight);
    assert_eq!(done["status"], "ready", "{done}");
    assert_eq!(done["content"], SCRIPT_V1);
}
