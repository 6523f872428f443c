//! `yardmaster simulate` checked against RouterOS clients nobody here wrote: PyPI's
//! librouteros (tests/peers/librouteros_check.py) and npm's node-routeros
//! (tests/peers/node_routeros_check.js, installed into tests/peers by
//! `npm ci --prefix tests/peers`) log in (plain, challenge, and over API-SSL with the
//! printed fingerprint pinned), print with proplists and queries, add, set, remove and
//! run `/execute`; these tests assert on what they saw.
//!
//! Without a client's runtime or package its tests say so loudly and pass, except
//! under CI (`CI` set), where a missing client is a failure.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use serde_json::Value;
use yardmaster_tests::binary;

/// A running `yardmaster simulate`, stopped when dropped.
struct Simulator {
    child: Child,
    lines: Vec<String>,
}

impl Drop for Simulator {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Simulator {
    fn start(args: &[&str]) -> Self {
        let mut child = Command::new(binary())
            .arg("simulate")
            .args(args)
            .env("YARDMASTER_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start yardmaster simulate");
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut sim = Self {
            child,
            lines: Vec::new(),
        };
        loop {
            match rx.recv_timeout(Duration::from_secs(60)) {
                Ok(line) if line == "ready" => return sim,
                Ok(line) => sim.lines.push(line),
                Err(_) => panic!(
                    "yardmaster simulate never printed ready; it printed {:?}",
                    sim.lines
                ),
            }
        }
    }

    fn fingerprint(&self) -> String {
        self.lines
            .iter()
            .find_map(|l| l.split("sha256 ").nth(1))
            .expect("the simulator prints its certificate fingerprint")
            .trim()
            .to_owned()
    }
}

fn peers_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("peers")
}

/// A client of another maker, run as a peer process.
struct Peer {
    program: &'static str,
    /// What proves the client is installed, e.g. `["-c", "import librouteros"]`.
    probe: [&'static str; 2],
    script: &'static str,
    client: &'static str,
    install: &'static str,
}

const LIBROUTEROS: Peer = Peer {
    program: "python3",
    probe: ["-c", "import librouteros"],
    script: "librouteros_check.py",
    client: "librouteros",
    install: "pip install librouteros",
};

const NODE_ROUTEROS: Peer = Peer {
    program: "node",
    probe: ["-e", "require('node-routeros')"],
    script: "node_routeros_check.js",
    client: "node-routeros",
    install: "npm ci --prefix tests/peers",
};

impl Peer {
    /// Whether the client is here; under CI its absence fails the test.
    fn available(&self) -> bool {
        let ok = Command::new(self.program)
            .current_dir(peers_dir())
            .args(self.probe)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            assert!(
                std::env::var_os("CI").is_none(),
                "{} with {} is required in CI: {}",
                self.program,
                self.client,
                self.install
            );
            eprintln!(
                "\n!!!!! SKIPPED: {} or {} is missing ({}); the simulator was NOT checked against {} !!!!!\n",
                self.program, self.client, self.install, self.client
            );
        }
        ok
    }

    /// Runs the peer's check script and returns what it reports.
    fn run(&self, args: &[&str]) -> Value {
        let out = Command::new(self.program)
            .current_dir(peers_dir())
            .arg(self.script)
            .args(args)
            .output()
            .unwrap_or_else(|e| panic!("run {}: {e}", self.program));
        peer_output(self.script, out)
    }
}

fn peer_output(peer: &str, out: std::process::Output) -> Value {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{peer} failed:\n{stderr}");
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "bad JSON from the peer ({e}): {}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

#[test]
fn librouteros_talks_to_the_simulator() {
    if !LIBROUTEROS.available() {
        return;
    }
    let sim = Simulator::start(&[
        "--routers",
        "3",
        "--bind",
        "127.1.61.1",
        "--port",
        "8728",
        "--tls-port",
        "8729",
        "--password",
        "s3cret",
    ]);
    let fingerprint = sim.fingerprint();
    let seen = LIBROUTEROS.run(&[
        "127.1.61.2",
        "8728",
        "admin",
        "s3cret",
        "8729",
        &fingerprint,
    ]);
    let plain = &seen["plain"];
    assert_eq!(plain["identity"][0]["name"], "router-1", "{seen}");
    assert_eq!(plain["resource"][0]["version"], "7.18.2 (stable)");
    assert_eq!(plain["resource"][0]["board-name"], "CHR");
    assert_eq!(
        plain["interfaces"],
        serde_json::json!(["ether1", "ether2", "ether3", "ether4"])
    );
    assert_eq!(plain["added_id"], "*1");
    assert_eq!(
        plain["queried"],
        serde_json::json!([{".id": "*1", "address": "10.9.0.1/24", "network": "10.9.0.0"}])
    );
    assert_eq!(plain["not_found"], serde_json::json!([]));
    assert_eq!(plain["comment_after_set"], serde_json::json!(["changed"]));
    assert_eq!(plain["execute_output"], "hello\r\n");
    assert_eq!(plain["log"], serde_json::json!(["from librouteros"]));
    assert_eq!(plain["trap"], "input does not match any value of interface");
    assert_eq!(plain["after_remove"], serde_json::json!([]));
    assert_eq!(seen["bad_password"], "invalid user name or password (6)");
    assert_eq!(seen["tls"]["fingerprint_matches"], true, "{seen}");
    assert_eq!(seen["tls"]["identity"][0]["name"], "router-1");
}

#[test]
fn librouteros_challenge_login_on_a_6_42_fleet() {
    if !LIBROUTEROS.available() {
        return;
    }
    let _sim = Simulator::start(&[
        "--routers",
        "1",
        "--bind",
        "127.1.62.1",
        "--port",
        "8728",
        "--no-tls",
        "--profile",
        "6.42",
        "--password",
        "pw",
    ]);
    let seen = LIBROUTEROS.run(&["--legacy", "127.1.62.1", "8728", "admin", "pw"]);
    assert_eq!(seen["identity"][0]["name"], "router-0", "{seen}");
    assert_eq!(seen["addresses_empty"], serde_json::json!([]));
}

/// The part of a node-routeros run that every profile answers alike.
fn assert_node_common(seen: &Value, version: &str) {
    let plain = &seen["plain"];
    assert_eq!(plain["identity"][0]["name"], "router-1", "{seen}");
    assert_eq!(plain["resource"][0]["version"], version);
    assert_eq!(plain["resource"][0]["board-name"], "CHR");
    assert_eq!(
        plain["interfaces"],
        serde_json::json!(["ether1", "ether2", "ether3", "ether4"])
    );
    assert_eq!(plain["added_id"], "*1");
    assert_eq!(
        plain["queried"],
        serde_json::json!([{".id": "*1", "address": "10.9.0.1/24", "network": "10.9.0.0"}])
    );
    assert_eq!(plain["comment_after_set"], serde_json::json!(["changed"]));
    assert_eq!(plain["log"], serde_json::json!(["from node-routeros"]));
    assert_eq!(plain["trap"], "input does not match any value of interface");
    // node-routeros replaces the router's login trap with its own wording.
    assert_eq!(seen["bad_password"], "Username or password is invalid");
    assert_eq!(seen["tls"]["fingerprint_matches"], true, "{seen}");
    assert_eq!(seen["tls"]["identity"][0]["name"], "router-1");
}

#[test]
fn node_routeros_talks_to_a_7_18_fleet() {
    if !NODE_ROUTEROS.available() {
        return;
    }
    let sim = Simulator::start(&[
        "--routers",
        "2",
        "--bind",
        "127.1.63.1",
        "--port",
        "8728",
        "--tls-port",
        "8729",
        "--password",
        "s3cret",
    ]);
    let fingerprint = sim.fingerprint();
    let seen = NODE_ROUTEROS.run(&[
        "--v7",
        "127.1.63.2",
        "8728",
        "admin",
        "s3cret",
        "8729",
        &fingerprint,
    ]);
    assert_node_common(&seen, "7.18.2 (stable)");
    assert_eq!(seen["plain"]["execute_output"], "hello\r\n");
}

#[test]
fn node_routeros_talks_to_a_6_45_fleet() {
    if !NODE_ROUTEROS.available() {
        return;
    }
    let sim = Simulator::start(&[
        "--routers",
        "2",
        "--bind",
        "127.1.64.1",
        "--port",
        "8728",
        "--tls-port",
        "8729",
        "--profile",
        "6.45",
        "--password",
        "s3cret",
    ]);
    let fingerprint = sim.fingerprint();
    let seen = NODE_ROUTEROS.run(&[
        "127.1.64.2",
        "8728",
        "admin",
        "s3cret",
        "8729",
        &fingerprint,
    ]);
    assert_node_common(&seen, "6.45.9 (long-term)");
    assert_eq!(seen["plain"]["not_found"], serde_json::json!([]));
    assert_eq!(seen["plain"]["after_remove"], serde_json::json!([]));
}

#[test]
fn node_routeros_challenge_login_on_a_6_42_fleet() {
    if !NODE_ROUTEROS.available() {
        return;
    }
    let _sim = Simulator::start(&[
        "--routers",
        "1",
        "--bind",
        "127.1.65.1",
        "--port",
        "8728",
        "--no-tls",
        "--profile",
        "6.42",
        "--password",
        "pw",
    ]);
    let seen = NODE_ROUTEROS.run(&["--legacy", "127.1.65.1", "8728", "admin", "pw"]);
    assert_eq!(seen["identity"][0]["name"], "router-0", "{seen}");
    assert_eq!(seen["addresses_empty"], serde_json::json!([]));
}
