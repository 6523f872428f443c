//! The SSH transport against a real OpenSSH server, driving the real binary: the engine
//! does the SSH (russh, in the host), the bundled `ssh` plugin says what to run.
//!
//! Each test starts its own `/usr/sbin/sshd -D -e -f <config>` as a child process on
//! loopback and a free port, with a host key and `authorized_keys` made by `ssh-keygen`
//! in a temporary folder, and kills it at the end. Logins use a key the engine holds
//! for the site; password logins need an account with a password on this machine
//! (sshd checks passwords against the system's accounts), which a test should not
//! create, so they are exercised against the simulator only (`ssh_routeros.rs`).
//!
//! What it shows: key login, a script's exit status and stderr, a changed host key
//! refused before sending, servers offering only the RouterOS 6 algorithms or only
//! diffie-hellman-group-exchange-sha256, the Linux probe, a backup by the plugin's
//! `backup_command`, a script ended by a signal, and output cut at `max_output` with a
//! notice.

use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::{Value, json};
use yardmaster_tests::{Engine, EngineOptions, eventually};

const SSHD: &str = "/usr/sbin/sshd";

/// The algorithms RouterOS 6 speaks, and nothing newer.
const LEGACY_ONLY: &str = "KexAlgorithms diffie-hellman-group14-sha1\n\
                           Ciphers aes128-ctr\n\
                           MACs hmac-sha1\n\
                           HostKeyAlgorithms ssh-rsa\n";

/// An OpenSSH server of its own, killed when dropped.
struct Sshd {
    dir: tempfile::TempDir,
    addr: SocketAddr,
    key_type: &'static str,
    extra: String,
    child: Option<Child>,
}

fn keygen(key_type: &str, path: &Path) {
    let _ = std::fs::remove_file(path);
    let _ = std::fs::remove_file(path.with_extension("pub"));
    let status = Command::new("ssh-keygen")
        .args([
            "-q",
            "-t",
            key_type,
            "-N",
            "",
            "-C",
            "yardmaster-test",
            "-f",
        ])
        .arg(path)
        .stdin(Stdio::null())
        .status()
        .expect("ssh-keygen runs");
    assert!(status.success(), "ssh-keygen -t {key_type}");
}

/// `SHA256:...` of a public key file, as `ssh-keygen -l` prints it.
fn fingerprint(public: &Path) -> String {
    let out = Command::new("ssh-keygen")
        .args(["-l", "-E", "sha256", "-f"])
        .arg(public)
        .output()
        .expect("ssh-keygen -l");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.split_whitespace()
        .find(|w| w.starts_with("SHA256:"))
        .unwrap_or_else(|| panic!("no fingerprint in {text}"))
        .to_owned()
}

fn free_port() -> u16 {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

fn whoami() -> String {
    let out = Command::new("id").arg("-un").output().expect("id -un");
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

impl Sshd {
    /// A server with a host key of `key_type` and `extra` lines of configuration.
    fn start(key_type: &'static str, extra: &str) -> Sshd {
        assert!(
            Path::new(SSHD).exists(),
            "{SSHD} is missing: apt-get install openssh-server"
        );
        let dir = tempfile::tempdir().expect("sshd folder");
        keygen("ed25519", &dir.path().join("user"));
        std::fs::copy(
            dir.path().join("user.pub"),
            dir.path().join("authorized_keys"),
        )
        .expect("authorized_keys");
        let mut sshd = Sshd {
            addr: SocketAddr::from((Ipv4Addr::LOCALHOST, free_port())),
            dir,
            key_type,
            extra: extra.to_owned(),
            child: None,
        };
        sshd.new_host_key();
        sshd.run();
        sshd
    }

    fn host_key(&self) -> PathBuf {
        self.dir.path().join("host_key")
    }

    fn host_fingerprint(&self) -> String {
        fingerprint(&self.host_key().with_extension("pub"))
    }

    fn user_key(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("user")).expect("the user key")
    }

    fn new_host_key(&self) {
        keygen(self.key_type, &self.host_key());
    }

    fn run(&mut self) {
        // sshd insists on its privilege separation folder even when it runs as root.
        std::fs::create_dir_all("/run/sshd").expect("/run/sshd");
        let config = self.dir.path().join("sshd_config");
        std::fs::write(
            &config,
            format!(
                "Port {port}\n\
                 ListenAddress 127.0.0.1\n\
                 HostKey {host_key}\n\
                 PidFile {dir}/sshd.pid\n\
                 AuthorizedKeysFile {dir}/authorized_keys\n\
                 StrictModes no\n\
                 UsePAM no\n\
                 PermitRootLogin yes\n\
                 PasswordAuthentication no\n\
                 KbdInteractiveAuthentication no\n\
                 LogLevel VERBOSE\n\
                 {extra}",
                port = self.addr.port(),
                host_key = self.host_key().display(),
                dir = self.dir.path().display(),
                extra = self.extra,
            ),
        )
        .expect("sshd_config");
        let child = Command::new(SSHD)
            .args(["-D", "-e", "-f"])
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start sshd");
        self.child = Some(child);
        let addr = self.addr;
        eventually("sshd to listen", || {
            TcpStream::connect_timeout(&addr, Duration::from_millis(200))
                .ok()
                .map(drop)
        });
    }

    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Sshd {
    fn drop(&mut self) {
        self.stop();
    }
}

fn add_ssh_site(engine: &Engine, sshd: &Sshd, extra: Value) -> String {
    let mut site = json!({
        "name": format!("host-{}", sshd.addr.port()),
        "address": "127.0.0.1",
        "port": sshd.addr.port(),
        "transport": "ssh",
        "username": whoami(),
        "private_key": sshd.user_key(),
    });
    if let (Value::Object(site), Value::Object(extra)) = (&mut site, extra) {
        site.extend(extra);
    }
    engine.add_site(&site)
}

/// Submits `script` to the site and waits for the job to end; the job as
/// `GET /api/jobs/{id}` shows it.
fn run_job(engine: &Engine, site: &str, script: &str) -> Value {
    let seen: Vec<Value> = jobs(engine, site).iter().map(|j| j["id"].clone()).collect();
    let submitted = engine
        .post(
            &format!("/api/asynchronous/{site}"),
            &json!({"description": "ssh test", "script": script}),
        )
        .expect("submit");
    assert!(
        submitted.status == 200 || submitted.status == 202,
        "{}",
        submitted.text
    );
    eventually("the job to end", || {
        let job = jobs(engine, site)
            .into_iter()
            .find(|j| !seen.contains(&j["id"]))?;
        if job["status"] != "completed" && job["status"] != "failed" {
            return None;
        }
        let id = job["id"].as_str()?.to_owned();
        let shown = engine.get(&format!("/api/jobs/{id}")).ok()?;
        Some(shown.body["data"].clone())
    })
}

fn jobs(engine: &Engine, site: &str) -> Vec<Value> {
    engine
        .get(&format!("/api/routers/{site}/jobs"))
        .ok()
        .and_then(|r| r.body["data"].as_array().cloned())
        .unwrap_or_default()
}

fn site(engine: &Engine, id: &str) -> Value {
    engine.get(&format!("/sites/{id}")).expect("GET site").body
}

#[test]
fn key_login_runs_scripts_and_a_changed_host_key_stops_the_job_before_sending() {
    let mut sshd = Sshd::start("ed25519", "");
    let engine = Engine::start(EngineOptions {
        bundled: true,
        ..EngineOptions::default()
    });
    let key = sshd.user_key();
    let id = add_ssh_site(&engine, &sshd, json!({}));
    let shown = site(&engine, &id);
    assert_eq!(shown["has_private_key"], true, "{shown}");
    assert_eq!(shown["has_password"], false, "{shown}");
    assert!(shown.get("private_key").is_none());
    assert!(!shown.to_string().contains("PRIVATE KEY"));
    assert_eq!(shown["ssh"]["host_keys"], json!([]), "{shown}");

    // A script runs through `sh -s`; stdout is the job's output. No platform was set,
    // so the plugin told Linux from the server's version string.
    let done = run_job(
        &engine,
        &id,
        "echo hello from $(uname -s)\necho warning >&2\n",
    );
    assert_eq!(done["status"], "completed", "{done}\n{}", engine.log());
    let output = done["output"].as_str().unwrap_or_default();
    assert!(output.contains("hello from Linux"), "{done}");

    // Trust on first use: the key the server showed is now the site's.
    let first = sshd.host_fingerprint();
    let shown = site(&engine, &id);
    assert_eq!(shown["ssh"]["host_keys"], json!([first]), "{shown}");

    // A non-zero exit status fails the job with the status and the tail of stderr.
    let failed = run_job(&engine, &id, "echo partial\necho it broke >&2\nexit 3\n");
    assert_eq!(failed["status"], "failed", "{failed}");
    assert_eq!(failed["error"]["code"], "script", "{failed}");
    let message = failed["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("status 3"), "{message}");
    assert!(message.contains("it broke"), "{message}");

    // The server's host key changes (as a machine in the middle would show): the job
    // fails as host_key_changed, naming both keys, and the script never runs.
    sshd.stop();
    sshd.new_host_key();
    sshd.run();
    let second = sshd.host_fingerprint();
    assert_ne!(first, second);
    let marker = sshd.dir.path().join("marker");
    let script = format!("touch {}\n", marker.display());
    let refused = run_job(&engine, &id, &script);
    assert_eq!(refused["status"], "failed", "{refused}");
    assert_eq!(refused["error"]["code"], "host_key_changed", "{refused}");
    let message = refused["error"]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains(&first) && message.contains(&second),
        "{message}"
    );
    assert!(
        !marker.exists(),
        "the script ran despite the changed host key"
    );
    // The stored key is not replaced by the new one.
    assert_eq!(site(&engine, &id)["ssh"]["host_keys"], json!([first]));

    // An operator who accepts the new key sets it; the same script then runs, so the
    // refusal above was the host key's doing.
    let mut accepted = site(&engine, &id);
    accepted["ssh"]["host_keys"] = json!([second]);
    let put = engine_put(&engine, &format!("/sites/{id}"), &accepted);
    assert_eq!(put.status, 200, "{}", put.text);
    let ran = run_job(&engine, &id, &script);
    assert_eq!(ran["status"], "completed", "{ran}");
    assert!(
        marker.exists(),
        "the script did not run with the accepted key"
    );

    // Neither the private key nor any part of it reached the log.
    let body = key
        .lines()
        .find(|l| !l.starts_with("-----") && l.len() > 20)
        .unwrap_or("none");
    assert!(!engine.log().contains(body));
}

#[test]
fn a_server_with_only_the_routeros_6_algorithms_is_reached_unless_legacy_is_off() {
    let sshd = Sshd::start("rsa", LEGACY_ONLY);
    let engine = Engine::start(EngineOptions {
        bundled: true,
        ..EngineOptions::default()
    });
    let id = add_ssh_site(&engine, &sshd, json!({"ssh": {"platform": "linux"}}));
    let done = run_job(&engine, &id, "echo legacy-ok\n");
    assert_eq!(done["status"], "completed", "{done}\n{}", engine.log());
    assert!(
        done["output"]
            .as_str()
            .unwrap_or_default()
            .contains("legacy-ok"),
        "{done}"
    );
    drop(engine);

    // With the legacy set turned off, the same server is not reached, and the error
    // says which algorithms each side offered.
    let strict = Engine::start(EngineOptions {
        bundled: true,
        // One attempt: the failure is the same each time.
        config: "[ssh]\nlegacy_algorithms = false\n[runner]\nmax_attempts = 1\n".into(),
        ..EngineOptions::default()
    });
    let id = add_ssh_site(&strict, &sshd, json!({"ssh": {"platform": "linux"}}));
    let failed = run_job(&strict, &id, "echo never\n");
    assert_eq!(failed["status"], "failed", "{failed}");
    let message = failed["error"]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("diffie-hellman-group14-sha1") && message.contains("curve25519-sha256"),
        "{message}"
    );
}

fn engine_put(engine: &Engine, path: &str, body: &Value) -> yardmaster_tests::Response {
    let token = engine.token(&["all"]);
    yardmaster_tests::http_as(engine.addr, "PUT", path, Some(body), Some(&token))
        .expect("the engine answers")
}

/// A second user of the organization, who may manage sites, points an SSH site that
/// logs in with a key at a host of theirs without bringing a key: the stored key stays
/// behind, the job fails before anything connects, and the listener sees nothing.
#[test]
fn a_repointed_ssh_site_never_uses_its_key_on_the_new_address() {
    let sshd = Sshd::start("ed25519", "");
    let engine = Engine::start(EngineOptions {
        bundled: true,
        ..EngineOptions::default()
    });
    let id = add_ssh_site(&engine, &sshd, json!({}));
    let works = run_job(&engine, &id, "echo before\n");
    assert_eq!(works["status"], "completed", "{works}");

    // Mallory's host: a listener that counts whoever connects.
    let trap = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind");
    trap.set_nonblocking(true).expect("nonblocking");
    let mallory = engine.token_for(
        "mallory",
        yardmaster_tests::TEST_ORG,
        &["site:view", "site:manage", "script:run", "script:view"],
        3600,
    );
    let mut repointed = site(&engine, &id);
    repointed["port"] = json!(trap.local_addr().expect("address").port());
    let put = yardmaster_tests::http_as(
        engine.addr,
        "PUT",
        &format!("/sites/{id}"),
        Some(&repointed),
        Some(&mallory),
    )
    .expect("the engine answers");
    assert_eq!(put.status, 200, "{}", put.text);
    assert_eq!(put.body["has_private_key"], false, "{}", put.text);
    assert!(!put.text.contains("PRIVATE KEY"));

    let failed = run_job(&engine, &id, "echo after\n");
    assert_eq!(failed["status"], "failed", "{failed}");
    assert_eq!(failed["error"]["code"], "password-missing", "{failed}");
    assert!(
        trap.accept().is_err(),
        "the engine connected to the new address"
    );
}

/// A key the server does not know fails the job as `auth`, before anything is sent.
#[test]
fn a_key_the_server_does_not_know_fails_as_auth() {
    let sshd = Sshd::start("ed25519", "");
    let engine = Engine::start(EngineOptions {
        bundled: true,
        config: "[runner]\nmax_attempts = 1\n".into(),
        ..EngineOptions::default()
    });
    let stranger = sshd.dir.path().join("stranger");
    keygen("ed25519", &stranger);
    let key = std::fs::read_to_string(&stranger).expect("the other key");
    let id = add_ssh_site(&engine, &sshd, json!({"private_key": key}));
    let marker = sshd.dir.path().join("marker");
    let failed = run_job(&engine, &id, &format!("touch {}\n", marker.display()));
    assert_eq!(failed["status"], "failed", "{failed}");
    assert_eq!(failed["error"]["code"], "auth", "{failed}");
    assert!(!marker.exists());
}

/// The Linux side beyond scripts: the probe, a backup by the plugin's `backup_command`,
/// a script ended by a signal, and output beyond the plugin's `max_output` cut with a
/// notice the job shows.
#[test]
fn linux_probe_backup_command_signal_and_output_cap() {
    let sshd = Sshd::start("ed25519", "");
    let saved = sshd.dir.path().join("saved-config");
    std::fs::write(&saved, "hostname edge-linux\nroute 10.0.0.0/8\n").expect("config file");
    let engine = Engine::start(EngineOptions {
        bundled: true,
        config: format!(
            "[runner]\nmax_attempts = 1\n[plugins.ssh.config]\nbackup_command = \"cat {}\"\nmax_output = \"2048\"\n",
            saved.display()
        ),
        ..EngineOptions::default()
    });
    let id = add_ssh_site(&engine, &sshd, json!({}));

    // The probe: `uname -srm` as the version, the host name as the identity.
    let probe = engine
        .post(
            "/plugins/ssh/call",
            &json!({"operation": "probe", "target": {"site_id": id}}),
        )
        .expect("plugin call");
    assert_eq!(probe.status, 200, "{}", probe.text);
    let result = &probe.body["result"];
    assert_eq!(result["online"], true, "{result}");
    let uname = |arg: &str| {
        let out = Command::new("uname").arg(arg).output().expect("uname");
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    };
    assert_eq!(result["identity"], json!(uname("-n")), "{result}");
    assert!(
        result["version"]
            .as_str()
            .is_some_and(|v| v.starts_with("Linux ") && v.contains(&uname("-r"))),
        "{result}"
    );

    // A backup before the script is the output of `backup_command`.
    let submitted = engine
        .post(
            &format!("/api/asynchronous/{id}"),
            &json!({"description": "with backup", "script": "echo after\n", "make_backup": true}),
        )
        .expect("submit");
    assert!(submitted.status == 200 || submitted.status == 202);
    let done = eventually("the backed-up job to end", || {
        let job = jobs(&engine, &id)
            .into_iter()
            .find(|j| j["status"] == "completed" || j["status"] == "failed")?;
        let id = job["id"].as_str()?.to_owned();
        Some(engine.get(&format!("/api/jobs/{id}")).ok()?.body["data"].clone())
    });
    assert_eq!(done["status"], "completed", "{done}\n{}", engine.log());
    assert_eq!(done["has_backup"], true, "{done}");
    assert_eq!(
        done["backup"],
        json!("hostname edge-linux\nroute 10.0.0.0/8\n"),
        "{done}"
    );

    // A script that ends by a signal fails with the signal's name.
    let killed = run_job(
        &engine,
        &id,
        "echo before the end >&2\nkill -TERM $$\necho never\n",
    );
    assert_eq!(killed["status"], "failed", "{killed}");
    assert_eq!(killed["error"]["code"], "script", "{killed}");
    let message = killed["error"]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("ended by signal TERM") && message.contains("before the end"),
        "{message}"
    );

    // 100,000 bytes against a cap of 2,048: the job keeps what fits and says so.
    let long = run_job(&engine, &id, "head -c 100000 /dev/zero | tr '\\0' x\n");
    assert_eq!(long["status"], "completed", "{long}");
    let output = long["output"].as_str().unwrap_or_default();
    assert!(output.len() <= 2048, "{}", output.len());
    assert!(output.starts_with("xxxx"), "{output}");
    assert!(
        output.ends_with("[output truncated: the site sent more than 2048 bytes]\n"),
        "{output}"
    );
    // Output under the cap is whole, with no notice.
    let short = run_job(&engine, &id, "head -c 1000 /dev/zero | tr '\\0' y\n");
    assert_eq!(short["output"], json!("y".repeat(1000)), "{short}");
}

/// RouterOS with strong crypto offers only diffie-hellman-group-exchange-sha256; the
/// engine asks for a group of at least 2048 bits and gets through.
#[test]
fn a_server_offering_only_group_exchange_sha256_is_reached() {
    let sshd = Sshd::start(
        "rsa",
        "KexAlgorithms diffie-hellman-group-exchange-sha256\n",
    );
    let engine = Engine::start(EngineOptions {
        bundled: true,
        config: "[runner]\nmax_attempts = 1\n".into(),
        ..EngineOptions::default()
    });
    let id = add_ssh_site(&engine, &sshd, json!({"ssh": {"platform": "linux"}}));
    let done = run_job(&engine, &id, "echo gex-ok\n");
    assert_eq!(done["status"], "completed", "{done}\n{}", engine.log());
    assert_eq!(done["output"], json!("gex-ok\n"), "{done}");

    // The same server is out of reach with the legacy set off, and the error names
    // the one algorithm it offered.
    let strict = Engine::start(EngineOptions {
        bundled: true,
        config: "[ssh]\nlegacy_algorithms = false\n[runner]\nmax_attempts = 1\n".into(),
        ..EngineOptions::default()
    });
    let id = add_ssh_site(&strict, &sshd, json!({"ssh": {"platform": "linux"}}));
    let failed = run_job(&strict, &id, "echo never\n");
    assert_eq!(failed["status"], "failed", "{failed}");
    let message = failed["error"]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("diffie-hellman-group-exchange-sha256"),
        "{message}"
    );
}
