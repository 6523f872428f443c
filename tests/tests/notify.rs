//! Notifications end to end: the real `yardmaster` binary, its bundled webhook and email
//! plugins, and real receivers on loopback (127.12.x.x, used by no other test): a webhook
//! receiver in this file that checks signatures and answers the first attempts with
//! 500, one that never answers, and aiosmtpd (`tests/peers/smtp_sink.py`), which parses
//! the mail with Python's email package.
//!
//! Work is put in the store before the engine starts (users, sites on a simulated fleet,
//! jobs with a `notify_url`, channels, an approval request), so the engine's own runner
//! and deliverer produce every event.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{TimeDelta, Utc};
use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::Sha256;
use yardmaster::approval::{self, Principal};
use yardmaster::auth::{Authenticator, Claims};
use yardmaster::simulate::Profile;
use yardmaster::store::{
    ChannelInput, ChannelKind, JobInput, OutboxState, Page, ScheduleInput, Secret, SiteInput,
    Store, User,
};
use yardmaster_tests::{Engine, EngineOptions, InProcessFleet, Response, eventually, fleet};

const ORG: &str = "acme";
/// The fields of seed 001's notification payload.
const SEED_FIELDS: &[&str] = &[
    "job_id",
    "customer_id",
    "description",
    "router_id",
    "idempotency_key",
    "express_execute",
    "needs_acknowledgement",
    "make_backup",
    "seq_id",
    "started_at",
    "completed_at",
    "failed_at",
    "deleted_at",
    "status",
];

/// One request the webhook receiver got, and what it answered.
#[derive(Debug, Clone)]
struct Hit {
    headers: HashMap<String, String>,
    body: String,
    answered: u16,
}

impl Hit {
    fn header(&self, name: &str) -> &str {
        self.headers.get(name).map(String::as_str).unwrap_or("")
    }
    fn event_id(&self) -> u64 {
        self.header("x-yardmaster-event-id").parse().unwrap_or(0)
    }
    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or(Value::Null)
    }
}

/// A webhook receiver: HTTP/1.1 (or HTTPS) on loopback, one thread per connection.
struct Receiver {
    addr: SocketAddr,
    hits: Arc<Mutex<Vec<Hit>>>,
    /// Answer nothing at all while set.
    silent: Arc<AtomicBool>,
    scheme: &'static str,
}

impl Receiver {
    /// `failures`: how many attempts of each event id get a 500 before a 200.
    fn start(ip: Ipv4Addr, failures: usize) -> Receiver {
        Receiver::listen(ip, failures, None)
    }

    /// An HTTPS receiver with a self-signed certificate for `ip`, whose PEM is written
    /// into `dir`; returns the receiver and the certificate's file.
    fn start_tls(ip: Ipv4Addr, dir: &std::path::Path) -> (Receiver, std::path::PathBuf) {
        let made = rcgen::generate_simple_self_signed(vec![ip.to_string()])
            .expect("a self-signed certificate");
        let file = dir.join("receiver.pem");
        std::fs::write(&file, made.cert.pem()).expect("certificate file");
        let key = rustls::pki_types::PrivateKeyDer::Pkcs8(
            rustls::pki_types::PrivatePkcs8KeyDer::from(made.signing_key.serialize_der()),
        );
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("protocol versions")
            .with_no_client_auth()
            .with_single_cert(vec![made.cert.der().clone()], key)
            .expect("server config");
        (Receiver::listen(ip, 0, Some(Arc::new(config))), file)
    }

    fn listen(ip: Ipv4Addr, failures: usize, tls: Option<Arc<rustls::ServerConfig>>) -> Receiver {
        let listener = TcpListener::bind((ip, 0)).expect("bind receiver");
        let addr = listener.local_addr().expect("addr");
        let hits = Arc::new(Mutex::new(Vec::<Hit>::new()));
        let silent = Arc::new(AtomicBool::new(false));
        let (h, s) = (hits.clone(), silent.clone());
        let scheme = if tls.is_some() { "https" } else { "http" };
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { continue };
                let (hits, silent, tls) = (h.clone(), s.clone(), tls.clone());
                std::thread::spawn(move || match tls {
                    None => serve(stream, &hits, &silent, failures),
                    Some(config) => {
                        let Ok(session) = rustls::ServerConnection::new(config) else {
                            return;
                        };
                        let stream = rustls::StreamOwned::new(session, stream);
                        serve(stream, &hits, &silent, failures);
                    }
                });
            }
        });
        Receiver {
            addr,
            hits,
            silent,
            scheme,
        }
    }

    fn url(&self) -> String {
        format!("{}://{}/hook?source=yardmaster", self.scheme, self.addr)
    }

    fn hits(&self) -> Vec<Hit> {
        self.hits.lock().map(|h| h.clone()).unwrap_or_default()
    }

    /// Event ids answered 200.
    fn delivered(&self) -> BTreeSet<u64> {
        self.hits()
            .iter()
            .filter(|h| h.answered == 200)
            .map(Hit::event_id)
            .collect()
    }
}

fn serve(stream: impl Read + Write, hits: &Mutex<Vec<Hit>>, silent: &AtomicBool, failures: usize) {
    let mut reader = BufReader::new(stream);
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let mut headers = HashMap::new();
        loop {
            let mut header = String::new();
            if reader.read_line(&mut header).unwrap_or(0) == 0 {
                return;
            }
            let header = header.trim_end();
            if header.is_empty() {
                break;
            }
            if let Some((k, v)) = header.split_once(':') {
                headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_owned());
            }
        }
        let len: usize = headers
            .get("content-length")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        let mut body = vec![0u8; len];
        if reader.read_exact(&mut body).is_err() {
            return;
        }
        if silent.load(Ordering::SeqCst) {
            // Never answer; hold the connection until the sender gives up.
            std::thread::sleep(Duration::from_secs(600));
            return;
        }
        let mut hits = match hits.lock() {
            Ok(h) => h,
            Err(_) => return,
        };
        let id = headers
            .get("x-yardmaster-event-id")
            .cloned()
            .unwrap_or_default();
        let earlier = hits
            .iter()
            .filter(|h| h.header("x-yardmaster-event-id") == id)
            .count();
        let status = if earlier < failures { 500 } else { 200 };
        hits.push(Hit {
            headers,
            body: String::from_utf8_lossy(&body).into_owned(),
            answered: status,
        });
        drop(hits);
        let reason = if status == 200 {
            "OK"
        } else {
            "Internal Server Error"
        };
        let reply = format!("HTTP/1.1 {status} {reason}\r\nContent-Length: 2\r\n\r\nok");
        let stream = reader.get_mut();
        if stream
            .write_all(reply.as_bytes())
            .and_then(|()| stream.flush())
            .is_err()
        {
            return;
        }
    }
}

/// The SMTP sink, killed when dropped.
struct Smtp {
    child: Child,
    addr: SocketAddr,
    out: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

impl Smtp {
    fn start(ip: Ipv4Addr, extra: &[&str]) -> Smtp {
        let dir = tempfile::tempdir().expect("tmp");
        let out = dir.path().join("mail.jsonl");
        let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("peers/smtp_sink.py");
        let mut child = Command::new("python3")
            .arg(script)
            .arg(ip.to_string())
            .arg(&out)
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("python3 runs tests/peers/smtp_sink.py (pip install aiosmtpd)");
        let stdout = child.stdout.take().expect("stdout");
        let mut line = String::new();
        BufReader::new(stdout)
            .read_line(&mut line)
            .expect("the SMTP sink says where it listens");
        let addr = line
            .trim()
            .strip_prefix("listening on ")
            .and_then(|a| a.parse().ok())
            .unwrap_or_else(|| {
                panic!("the SMTP sink did not start (is aiosmtpd installed?): {line:?}")
            });
        Smtp {
            child,
            addr,
            out,
            _dir: dir,
        }
    }

    fn messages(&self) -> Vec<Value> {
        std::fs::read_to_string(&self.out)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }
}

impl Drop for Smtp {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn config(allow_http: &[SocketAddr]) -> String {
    let hosts: Vec<String> = allow_http
        .iter()
        .map(|a| format!("\"{}\"", a.ip()))
        .collect();
    format!(
        r#"
[notify]
max_attempts = 5
backoff = "100ms"
max_backoff = "400ms"
allow_http = [{}]

[plugins.webhook]
allow = ["127.12.0.0/16"]

[plugins.email]
allow = ["127.12.0.0/16"]
"#,
        hosts.join(", ")
    )
}

/// The engine with the bundled plugins over `dir`, whose store the test has filled.
fn engine_in(dir: tempfile::TempDir, config: String) -> Engine {
    tokio::task::block_in_place(|| {
        Engine::start(EngineOptions {
            config,
            bundled: true,
            reuse: Some(dir),
            ..Default::default()
        })
    })
}

/// The store of a not-yet-started engine's folder.
fn store_of(dir: &tempfile::TempDir) -> Store {
    Store::open(dir.path().join("data")).expect("store")
}

fn user(id: &str) -> User {
    User {
        id: id.into(),
        name: id.to_uppercase(),
        email: format!("{id}@example.com"),
        organization: ORG.into(),
        created_at: Utc::now(),
    }
}

/// A site for each router of `fleet`; their ids.
fn sites(store: &Store, fleet: &InProcessFleet) -> Vec<String> {
    let now = Utc::now();
    fleet
        .addresses()
        .iter()
        .enumerate()
        .map(|(i, addr)| {
            store
                .create_site(
                    SiteInput {
                        organization: ORG.into(),
                        name: format!("router-{i}"),
                        address: addr.ip().to_string(),
                        port: Some(addr.port()),
                        transport: "routeros-api".into(),
                        username: "admin".into(),
                        password: Some(Secret::new("pw")),
                        tls: Default::default(),
                        tags: Vec::new(),
                        private_key: None,
                        private_key_passphrase: None,
                        ssh: None,
                    },
                    now,
                )
                .expect("site")
                .id
        })
        .collect()
}

/// Sites on `fleet` and `per_site` jobs on each, all reporting to `notify_url`.
fn jobs(store: &Store, fleet: &InProcessFleet, per_site: usize, notify_url: &str) -> Vec<String> {
    let mut inputs = Vec::new();
    for (i, site) in sites(store, fleet).into_iter().enumerate() {
        for j in 0..per_site {
            inputs.push(JobInput {
                organization: ORG.into(),
                site_id: site.clone(),
                request_id: None,
                idempotency_key: Some(format!("job-{i}-{j}")),
                description: format!("Log test message {i}/{j}"),
                script: format!(":log info \"notify test {i} {j}\""),
                make_backup: false,
                express_execute: false,
                needs_acknowledgement: true,
                notify_url: Some(notify_url.to_owned()),
                rollback_after_secs: None,
                script_origin: None,
            });
        }
    }
    store
        .create_jobs(inputs, Utc::now())
        .expect("jobs")
        .into_iter()
        .map(|(job, _)| job.id)
        .collect()
}

/// An email channel of the organization to `smtp`, with `settings` over the defaults.
fn mail_channel(
    name: &str,
    smtp: &Smtp,
    settings: &[(&str, &str)],
    password: Option<&str>,
) -> ChannelInput {
    let mut all = BTreeMap::from([
        ("host".to_owned(), smtp.addr.ip().to_string()),
        ("port".to_owned(), smtp.addr.port().to_string()),
        ("from".to_owned(), "yardmaster@example.com".to_owned()),
        ("from_name".to_owned(), "Yardmaster".to_owned()),
    ]);
    for (k, v) in settings {
        all.insert((*k).to_owned(), (*v).to_owned());
    }
    ChannelInput {
        organization: ORG.into(),
        name: name.into(),
        kind: ChannelKind::Email,
        plugin: None,
        events: vec!["script.authorization_requested".into()],
        settings: all,
        secrets: password
            .map(|p| BTreeMap::from([("password".to_owned(), p.to_owned())]))
            .unwrap_or_default(),
        created_by: "alice".into(),
    }
}

/// Users, `channels`, and a schedule of alice's whose authorization she requested from
/// bob and carol; returns the schedule's id.
fn approval_requested(dir: &tempfile::TempDir, channels: Vec<ChannelInput>) -> String {
    let store = store_of(dir);
    for u in ["alice", "bob", "carol", "dave"] {
        store.put_user(&user(u)).expect("user");
    }
    let now = Utc::now();
    let schedule = store
        .create_schedule(
            ScheduleInput {
                organization: ORG.into(),
                description: "Rotate the backup keys".into(),
                script: "/system script run rotate\n.dot-line stays\n.\n:log info done\n\
                         /user remove [find name=old]\n/system reset-configuration"
                    .into(),
                launch_at: Some(now + TimeDelta::days(1)),
                notify: vec!["bob".into(), "carol".into()],
                acknowledged_risks: vec!["factory-reset".into()],
                created_by: "alice".into(),
                ..ScheduleInput::default()
            },
            now,
        )
        .expect("schedule");
    for channel in channels {
        store.create_channel(channel, now).expect("channel");
    }
    approval::request(
        &store,
        &schedule.id,
        &Principal {
            user_id: "alice".into(),
            organization: ORG.into(),
            scopes: vec!["script:update".into()],
        },
        now,
        TimeDelta::hours(24),
    )
    .expect("requested");
    schedule.id
}

/// A self-signed certificate for `ip` (written as PEM for the SMTP server), and its
/// SHA-256 fingerprint as `AB:CD:...`.
fn certificate(dir: &std::path::Path, ip: Ipv4Addr) -> (String, String, String) {
    use sha2::Digest;
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    let made = rcgen::generate_simple_self_signed(vec!["mail.test".to_owned(), ip.to_string()])
        .expect("a self-signed certificate");
    std::fs::write(&cert, made.cert.pem()).expect("certificate file");
    std::fs::write(&key, made.signing_key.serialize_pem()).expect("key file");
    let digest = sha2::Sha256::digest(made.cert.der());
    let fingerprint = digest
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect::<Vec<_>>()
        .join(":");
    (
        cert.display().to_string(),
        key.display().to_string(),
        fingerprint,
    )
}

fn token(engine: &Engine, scopes: &[&str]) -> String {
    let auth = Authenticator::open(&engine.dir.path().join("data")).expect("token key");
    auth.issue(&Claims::new(
        "admin",
        ORG,
        scopes.iter().map(|s| s.to_string()).collect(),
        Utc::now(),
        TimeDelta::hours(1),
    ))
}

/// One request to the engine with a bearer token.
fn call(engine: &Engine, method: &str, path: &str, token: &str) -> Response {
    let mut stream = TcpStream::connect(engine.addr).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(60)))
        .expect("timeout");
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {token}\r\nConnection: close\r\nContent-Length: 0\r\n\r\n",
        engine.addr
    );
    stream.write_all(request.as_bytes()).expect("send");
    let mut raw = String::new();
    stream.read_to_string(&mut raw).expect("read");
    let (head, body) = raw.split_once("\r\n\r\n").expect("an HTTP response");
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("status");
    Response {
        status,
        body: serde_json::from_str(body).unwrap_or(Value::Null),
        text: body.to_owned(),
    }
}

fn signed(secret: &str, hit: &Hit) -> bool {
    signed_in("x-yardmaster-signature", secret, hit)
}

/// Whether the signature in `header` is `secret`'s.
fn signed_in(header: &str, secret: &str, hit: &Hit) -> bool {
    let Some(hex_sig) = hit.header(header).strip_prefix("sha256=") else {
        return false;
    };
    let Ok(sig) = hex::decode(hex_sig) else {
        return false;
    };
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("key");
    mac.update(hit.header("x-yardmaster-timestamp").as_bytes());
    mac.update(b".");
    mac.update(hit.body.as_bytes());
    mac.verify_slice(&sig).is_ok()
}

const LIFECYCLE: &[&str] = &[
    "pending",
    "loaded",
    "running",
    "completed",
    "failed",
    "deleted",
];

fn rank(status: &str) -> usize {
    LIFECYCLE
        .iter()
        .position(|s| *s == status)
        .map(|p| p.min(3))
        .unwrap_or(usize::MAX)
}

/// Per job: no request for a later event before every earlier event of the job was
/// answered 200, and statuses in lifecycle order.
fn assert_in_order(hits: &[Hit]) {
    let mut by_job: BTreeMap<String, Vec<&Hit>> = BTreeMap::new();
    for hit in hits {
        let job = hit.json()["job_id"].as_str().unwrap_or("").to_owned();
        by_job.entry(job).or_default().push(hit);
    }
    for (job, hits) in by_job {
        let mut acknowledged: BTreeSet<u64> = BTreeSet::new();
        let mut last_rank = 0;
        for hit in hits {
            let id = hit.event_id();
            let status = hit.json()["status"].as_str().unwrap_or("").to_owned();
            assert!(
                acknowledged.iter().all(|a| *a < id) || acknowledged.contains(&id),
                "job {job}: event {id} ({status}) arrived after a later event was delivered"
            );
            if !acknowledged.contains(&id) {
                assert!(
                    rank(&status) >= last_rank,
                    "job {job}: {status} arrived after a later status"
                );
                last_rank = rank(&status);
            }
            if hit.answered == 200 {
                acknowledged.insert(id);
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn job_updates_are_signed_retried_after_500s_and_in_order() {
    let routers = fleet(Ipv4Addr::new(127, 12, 1, 1), 3, Profile::V7_18, "pw").await;
    let receiver = Receiver::start(Ipv4Addr::new(127, 12, 0, 1), 2);
    let dir = tempfile::tempdir().expect("tmp");
    let ids = {
        let store = store_of(&dir);
        jobs(&store, &routers, 2, &receiver.url())
    };
    let engine = engine_in(dir, config(&[receiver.addr]));
    let done = tokio::task::block_in_place(|| {
        eventually("every job's completion to be delivered", || {
            let hits = receiver.hits();
            let completed: BTreeSet<String> = hits
                .iter()
                .filter(|h| h.answered == 200 && h.json()["status"] == "completed")
                .map(|h| h.json()["job_id"].as_str().unwrap_or("").to_owned())
                .collect();
            (completed.len() == ids.len()).then_some(hits)
        })
    });
    let secret = tokio::task::block_in_place(|| {
        let t = token(&engine, &["plugin:manage"]);
        let r = call(&engine, "GET", "/notifications/signing-secret", &t);
        assert_eq!(r.status, 200, "{}", r.text);
        r.body["secret"].as_str().expect("secret").to_owned()
    });
    assert!(!done.is_empty());
    let mut attempts: BTreeMap<u64, Vec<u16>> = BTreeMap::new();
    for hit in &done {
        assert!(signed(&secret, hit), "bad signature on {hit:?}");
        assert!(!signed("another secret", hit));
        assert_eq!(hit.header("x-yardmaster-event"), "job.status");
        assert!(hit.header("x-yardmaster-timestamp").parse::<u64>().is_ok());
        assert_eq!(hit.header("content-type"), "application/json");
        let body = hit.json();
        let keys: BTreeSet<&str> = body
            .as_object()
            .expect("a JSON object")
            .keys()
            .map(String::as_str)
            .collect();
        assert_eq!(keys, SEED_FIELDS.iter().copied().collect::<BTreeSet<_>>());
        assert_eq!(body["customer_id"], ORG);
        assert!(ids.contains(&body["job_id"].as_str().unwrap_or("").to_owned()));
        attempts
            .entry(hit.event_id())
            .or_default()
            .push(hit.answered);
    }
    for (id, answers) in &attempts {
        assert_eq!(
            &answers[..3],
            [500, 500, 200],
            "event {id}: two 500s, then delivered"
        );
    }
    assert_in_order(&done);
    // Statuses the seed names, each job ending completed.
    for job in &ids {
        let statuses: Vec<String> = done
            .iter()
            .filter(|h| h.answered == 200 && h.json()["job_id"] == job.as_str())
            .map(|h| h.json()["status"].as_str().unwrap_or("").to_owned())
            .collect();
        assert_eq!(statuses.last().map(String::as_str), Some("completed"));
        assert!(statuses.contains(&"running".to_owned()), "{statuses:?}");
    }
    let t = token(&engine, &["plugin:view"]);
    let dead =
        tokio::task::block_in_place(|| call(&engine, "GET", "/notifications/dead-letters", &t));
    assert_eq!(dead.body["data"], json!([]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_approval_request_is_mailed_to_the_authorizers_over_smtp() {
    let smtp = tokio::task::block_in_place(|| {
        Smtp::start(
            Ipv4Addr::new(127, 12, 0, 2),
            &["--user", "mailer", "--password", "s3cret pass"],
        )
    });
    let dir = tempfile::tempdir().expect("tmp");
    let schedule_id = approval_requested(
        &dir,
        vec![mail_channel(
            "mail",
            &smtp,
            &[
                ("security", "opportunistic"),
                ("username", "mailer"),
                ("auth", "login"),
                ("auth_without_tls", "true"),
                ("to", "ops@example.com"),
            ],
            Some("s3cret pass"),
        )],
    );
    let engine = engine_in(dir, config(&[]));
    let mails = tokio::task::block_in_place(|| {
        eventually("the approval request to arrive by mail", || {
            let messages = smtp.messages();
            (messages.len() >= 2).then_some(messages)
        })
    });
    // Those asked to authorize, not the channel's own list, each in a message of their
    // own: the link in it is theirs alone.
    let mut to: Vec<String> = mails
        .iter()
        .map(|m| {
            let rcpt = m["rcpt_tos"].as_array().expect("recipients");
            assert_eq!(rcpt.len(), 1, "one recipient per message: {m}");
            rcpt[0].as_str().unwrap_or_default().to_owned()
        })
        .collect();
    to.sort_unstable();
    assert_eq!(to, ["bob@example.com", "carol@example.com"]);
    let mail = &mails[0];
    assert_eq!(
        mail["auth_user"], "mailer",
        "AUTH LOGIN with the channel's password"
    );
    let headers = &mail["headers"];
    assert_eq!(
        headers["Subject"],
        "Authorization requested: Rotate the backup keys"
    );
    assert_eq!(headers["From"], "Yardmaster <yardmaster@example.com>");
    assert_eq!(headers["MIME-Version"], "1.0");
    assert!(
        headers["X-Yardmaster-Event-Id"]
            .as_str()
            .is_some_and(|id| !id.is_empty())
    );
    assert_eq!(mail["content_type"], "multipart/alternative");
    let parts = mail["parts"].as_array().expect("parts");
    let part = |kind: &str| {
        parts
            .iter()
            .find(|p| p["content_type"] == kind)
            .and_then(|p| p["text"].as_str())
            .unwrap_or_else(|| panic!("no {kind} part in {mail}"))
            .replace("\r\n", "\n")
    };
    let text = part("text/plain");
    let html = part("text/html");
    let link = format!("/scripts/scheduled/{schedule_id}/authorize?token=");
    assert!(text.contains(&link), "{text}");
    assert!(html.contains(&link), "{html}");
    assert!(text.contains("alice asks you to authorize"), "{text}");
    // Lines that start with a dot survive SMTP's DATA: they were dot-stuffed.
    assert!(
        text.contains("\n.dot-line stays\n.\n:log info done"),
        "{text}"
    );
    // What the linter found, and what alice acknowledged, above the script.
    assert!(
        text.contains("- high user-change at line 5, column 1: "),
        "{text}"
    );
    assert!(
        text.contains("- critical factory-reset at line 6, column 1: "),
        "{text}"
    );
    assert!(
        text.contains("Acknowledged risks (approving accepts them): factory-reset."),
        "{text}"
    );
    assert!(html.contains("critical factory-reset at line 6"), "{html}");
    assert!(html.contains("<a href=\""), "{html}");
    let other = serde_json::to_string(&mails[1]).expect("json");
    let token_of = |text: &str| {
        text.split(&link)
            .nth(1)
            .map(|rest| rest.chars().take(64).collect::<String>())
            .unwrap_or_default()
    };
    let mine = token_of(&text);
    assert_eq!(mine.len(), 64, "{text}");
    assert!(!other.contains(&mine), "each recipient's link is different");
    assert_eq!(smtp.messages().len(), 2, "one message per recipient");

    // The page the mailed link opens shows its recipient the same findings.
    let page = yardmaster_tests::http(engine.addr, "GET", &format!("{link}{mine}"), None)
        .expect("confirm page");
    assert_eq!(page.status, 200, "{}", page.text);
    assert!(
        page.text
            .contains("<code>factory-reset</code></td><td>6</td><td>1</td>"),
        "{}",
        page.text
    );
    assert!(
        page.text
            .contains("<code>user-change</code></td><td>5</td><td>1</td>"),
        "{}",
        page.text
    );
    assert!(
        page.text
            .contains("Acknowledged risks (approving accepts them): <code>factory-reset</code>"),
        "{}",
        page.text
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_https_receiver_is_reached_only_when_its_certificate_is_trusted() {
    let routers = fleet(Ipv4Addr::new(127, 12, 5, 1), 1, Profile::V7_18, "pw").await;
    let certificates = tempfile::tempdir().expect("tmp");
    let (receiver, pem) = Receiver::start_tls(Ipv4Addr::new(127, 12, 0, 6), certificates.path());
    assert!(receiver.url().starts_with("https://127.12.0.6:"));

    // Without the receiver's certificate among the trusted ones, nothing gets through,
    // and the dead letters say why.
    let dir = tempfile::tempdir().expect("tmp");
    let untrusted = {
        let store = store_of(&dir);
        jobs(&store, &routers, 1, &receiver.url())
    };
    // The receiver is on loopback, so the operator lists it: internal receivers are
    // reached only when listed.
    let engine = engine_in(dir, config(&[receiver.addr]));
    let view = token(&engine, &["plugin:view"]);
    let dead = tokio::task::block_in_place(|| {
        eventually(
            "the updates to an untrusted receiver to become dead letters",
            || {
                let r = call(&engine, "GET", "/notifications/dead-letters", &view);
                let data = r.body["data"].as_array()?.clone();
                (data.len() >= 3).then_some(data)
            },
        )
    });
    for letter in &dead {
        assert_eq!(letter["payload"]["job_id"], untrusted[0].as_str());
        assert!(
            letter["last_error"]
                .as_str()
                .unwrap_or("")
                .contains("TLS failed: the receiver's certificate does not verify"),
            "{letter}"
        );
    }
    assert!(receiver.hits().is_empty(), "{:?}", receiver.hits());
    drop(engine);

    // Trusted through `[tls] ca_file`, every update arrives, signed. The secret was
    // just rotated, so the previous one signs too.
    let dir = tempfile::tempdir().expect("tmp");
    let trusted = {
        let store = store_of(&dir);
        store
            .rotate_notify_secret(ORG, "admin", TimeDelta::hours(1), Utc::now())
            .expect("rotate");
        jobs(&store, &routers, 1, &receiver.url())
    };
    let engine = engine_in(
        dir,
        format!(
            "{}\n[tls]\nca_file = {:?}\n",
            config(&[receiver.addr]),
            pem.to_string_lossy()
        ),
    );
    let hits = tokio::task::block_in_place(|| {
        eventually("the job's completion to arrive over https", || {
            let hits = receiver.hits();
            hits.iter()
                .any(|h| h.json()["status"] == "completed")
                .then_some(hits)
        })
    });
    let secrets = tokio::task::block_in_place(|| {
        let t = token(&engine, &["plugin:manage"]);
        let r = call(&engine, "GET", "/notifications/signing-secret", &t);
        assert_eq!(r.status, 200, "{}", r.text);
        assert_eq!(r.body["generation"], 1, "{}", r.text);
        r.body
    });
    let secret = secrets["secret"].as_str().expect("secret");
    let previous = secrets["previous_secret"]
        .as_str()
        .expect("previous secret");
    for hit in &hits {
        assert_eq!(hit.json()["job_id"], trusted[0].as_str());
        assert!(signed(secret, hit), "bad signature on {hit:?}");
        assert!(!signed(previous, hit));
        assert!(
            signed_in("x-yardmaster-signature-previous", previous, hit),
            "bad previous signature on {hit:?}"
        );
    }
    assert_in_order(&hits);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_receiver_that_never_answers_ends_in_a_dead_letter_that_can_be_retried() {
    let routers = fleet(Ipv4Addr::new(127, 12, 2, 1), 1, Profile::V7_18, "pw").await;
    let receiver = Receiver::start(Ipv4Addr::new(127, 12, 0, 3), 0);
    receiver.silent.store(true, Ordering::SeqCst);
    let dir = tempfile::tempdir().expect("tmp");
    let ids = {
        let store = store_of(&dir);
        jobs(&store, &routers, 1, &receiver.url())
    };
    let engine = engine_in(
        dir,
        // Each attempt is cut off by the plugin's time limit.
        config(&[receiver.addr]).replace(
            "[plugins.webhook]\n",
            "[plugins.webhook]\ntimeout = \"1s\"\n",
        ),
    );
    let view = token(&engine, &["plugin:view"]);
    let dead = tokio::task::block_in_place(|| {
        eventually("the job's updates to become dead letters", || {
            let r = call(&engine, "GET", "/notifications/dead-letters", &view);
            let data = r.body["data"].as_array()?.clone();
            // loaded, running, completed: each gives up in turn, in order.
            (data.len() >= 3).then_some(data)
        })
    });
    for letter in &dead {
        assert_eq!(letter["kind"], "job.status");
        assert_eq!(letter["attempts"], 5);
        assert!(
            letter["last_error"]
                .as_str()
                .unwrap_or("")
                .contains("time limit"),
            "{letter}"
        );
        assert_eq!(letter["payload"]["job_id"], ids[0].as_str());
    }
    assert!(receiver.delivered().is_empty());

    // The receiver recovers; the operator retries every dead letter.
    receiver.silent.store(false, Ordering::SeqCst);
    let manage = token(&engine, &["plugin:manage"]);
    tokio::task::block_in_place(|| {
        let other = Authenticator::open(&engine.dir.path().join("data"))
            .expect("key")
            .issue(&Claims::new(
                "eve",
                "other-org",
                vec!["plugin:manage".into()],
                Utc::now(),
                TimeDelta::hours(1),
            ));
        let first = dead[0]["id"].as_u64().expect("id");
        let r = call(
            &engine,
            "POST",
            &format!("/notifications/dead-letters/{first}/retry"),
            &other,
        );
        assert_eq!(
            r.status, 404,
            "another organization's dead letter is not found"
        );
        let r = call(
            &engine,
            "POST",
            &format!("/notifications/dead-letters/{first}/retry"),
            &view,
        );
        assert_eq!(r.status, 403, "retrying needs plugin:manage");
        for letter in &dead {
            let id = letter["id"].as_u64().expect("id");
            let r = call(
                &engine,
                "POST",
                &format!("/notifications/dead-letters/{id}/retry"),
                &manage,
            );
            assert_eq!(r.status, 202, "{}", r.text);
        }
        let wanted: BTreeSet<u64> = dead.iter().filter_map(|d| d["id"].as_u64()).collect();
        eventually("the retried letters to be delivered", || {
            (receiver.delivered() == wanted).then_some(())
        });
        eventually("the dead letters list to empty", || {
            let r = call(&engine, "GET", "/notifications/dead-letters", &view);
            (r.body["data"] == json!([])).then_some(())
        });
    });
    let delivered: Vec<Hit> = receiver
        .hits()
        .into_iter()
        .filter(|h| h.answered == 200)
        .collect();
    let statuses: Vec<String> = delivered
        .iter()
        .map(|h| h.json()["status"].as_str().unwrap_or("").to_owned())
        .collect();
    assert!(
        statuses.ends_with(&["completed".to_owned()]),
        "{statuses:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigkill_during_a_burst_loses_no_notification() {
    let routers = fleet(Ipv4Addr::new(127, 12, 3, 1), 10, Profile::V7_18, "pw").await;
    let receiver = Receiver::start(Ipv4Addr::new(127, 12, 0, 4), 0);
    let dir = tempfile::tempdir().expect("tmp");
    let ids = {
        let store = store_of(&dir);
        jobs(&store, &routers, 4, &receiver.url())
    };
    let options = |dir| EngineOptions {
        config: config(&[receiver.addr]),
        bundled: true,
        reuse: Some(dir),
        ..Default::default()
    };
    let engine = tokio::task::block_in_place(|| Engine::start(options(dir)));
    tokio::task::block_in_place(|| {
        eventually("a burst of notifications to be under way", || {
            (receiver.delivered().len() >= 10).then_some(())
        })
    });
    let dir = engine.kill();
    let before = receiver.delivered().len();
    let engine = tokio::task::block_in_place(|| Engine::start(options(dir)));
    tokio::task::block_in_place(|| {
        eventually("every job's last update to be delivered", || {
            let finished: BTreeSet<String> = receiver
                .hits()
                .iter()
                .filter(|h| h.answered == 200)
                .filter(|h| matches!(h.json()["status"].as_str(), Some("completed" | "failed")))
                .map(|h| h.json()["job_id"].as_str().unwrap_or("").to_owned())
                .collect();
            (finished.len() == ids.len()).then_some(())
        })
    });
    let dir = engine.kill();
    let store = store_of(&dir);
    let mut events = Vec::new();
    let mut page = Page::first(1000);
    loop {
        let batch = store.list_events(&page).expect("events");
        let Some(last) = batch.last().map(|e| e.id) else {
            break;
        };
        events.extend(batch);
        page.after = Some(last);
    }
    let delivered = receiver.delivered();
    let job_events: Vec<_> = events.iter().filter(|e| e.kind == "job.status").collect();
    assert!(
        job_events.len() >= ids.len() * 2,
        "{} events",
        job_events.len()
    );
    for event in &job_events {
        // Delivered, or received by the receiver with the engine killed before it
        // recorded so: then the next start delivers it again (at least once). Never dead.
        assert!(
            matches!(event.state, OutboxState::Delivered | OutboxState::Pending),
            "{event:?}"
        );
        assert!(
            delivered.contains(&event.id),
            "event {} ({}) was never received",
            event.id,
            event.payload["status"]
        );
    }
    eprintln!(
        "{} job events, {} received before the kill, {} requests in all",
        job_events.len(),
        before,
        receiver.hits().len()
    );
    assert_in_order(&receiver.hits());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn starttls_is_used_and_required_when_configured() {
    let certs = tempfile::tempdir().expect("tmp");
    let tls_ip = Ipv4Addr::new(127, 12, 0, 5);
    let (cert, key, fingerprint) = certificate(certs.path(), tls_ip);
    let (tls, plain) = tokio::task::block_in_place(|| {
        let tls = Smtp::start(
            tls_ip,
            &[
                "--user",
                "mailer",
                "--password",
                "pw",
                "--cert",
                &cert,
                "--key",
                &key,
                "--require-tls",
            ],
        );
        let plain = Smtp::start(Ipv4Addr::new(127, 12, 0, 6), &[]);
        (tls, plain)
    });
    let dir = tempfile::tempdir().expect("tmp");
    approval_requested(
        &dir,
        vec![
            mail_channel(
                "secure",
                &tls,
                &[
                    ("security", "starttls"),
                    ("pinned_sha256", &fingerprint),
                    ("username", "mailer"),
                ],
                Some("pw"),
            ),
            // STARTTLS required, and this server does not offer it: refused for good.
            mail_channel("insecure", &plain, &[("security", "starttls")], None),
        ],
    );
    let engine = engine_in(dir, config(&[]));
    let mail = tokio::task::block_in_place(|| {
        eventually("the mail over STARTTLS", || {
            tls.messages().into_iter().next()
        })
    });
    assert_eq!(mail["tls"], true, "the session was upgraded");
    assert_eq!(mail["auth_user"], "mailer", "AUTH PLAIN inside TLS");
    let view = token(&engine, &["plugin:view"]);
    let dead = tokio::task::block_in_place(|| {
        eventually("the refused delivery to become a dead letter", || {
            let r = call(&engine, "GET", "/notifications/dead-letters", &view);
            r.body["data"].as_array()?.first().cloned()
        })
    });
    let error = dead["last_error"].as_str().unwrap_or("");
    assert!(
        error.contains("insecure") && error.contains("STARTTLS"),
        "{dead}"
    );
    assert_eq!(dead["attempts"], 1, "a permanent refusal is not retried");
    assert_eq!(
        dead["delivered_to"].as_array().map(Vec::len),
        Some(2),
        "the secure channel's delivery to each recipient is recorded and not repeated: {dead}"
    );
    assert!(plain.messages().is_empty());
    assert!(
        dead["payload"].get("links").is_none() && !dead.to_string().contains("token="),
        "the approval links are not shown: {dead}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_scheduled_run_reaches_the_organization_webhook_in_order() {
    let routers = fleet(Ipv4Addr::new(127, 12, 4, 1), 3, Profile::V7_18, "pw").await;
    let receiver = Receiver::start(Ipv4Addr::new(127, 12, 0, 7), 1);
    let secret = "a channel secret of some length";
    let dir = tempfile::tempdir().expect("tmp");
    let schedule_id = {
        let store = store_of(&dir);
        for u in ["alice", "bob"] {
            store.put_user(&user(u)).expect("user");
        }
        let sites = sites(&store, &routers);
        let now = Utc::now();
        store
            .create_channel(
                ChannelInput {
                    organization: ORG.into(),
                    name: "ops hook".into(),
                    kind: ChannelKind::Webhook,
                    plugin: None,
                    events: vec!["script.*".into()],
                    settings: BTreeMap::from([("url".to_owned(), receiver.url())]),
                    secrets: BTreeMap::from([("secret".to_owned(), secret.to_owned())]),
                    created_by: "alice".into(),
                },
                now,
            )
            .expect("channel");
        let schedule = store
            .create_schedule(
                ScheduleInput {
                    organization: ORG.into(),
                    description: "Nightly log line".into(),
                    script: ":log info \"scheduled notify\"".into(),
                    sites,
                    launch_at: Some(now + TimeDelta::seconds(2)),
                    created_by: "alice".into(),
                    ..ScheduleInput::default()
                },
                now,
            )
            .expect("schedule");
        approval::approve(
            &store,
            &schedule.id,
            &Principal {
                user_id: "bob".into(),
                organization: ORG.into(),
                scopes: vec!["script:authorize".into()],
            },
            None,
            approval::OrgPolicy::default(),
            now,
        )
        .expect("approved");
        schedule.id
    };
    let _engine = engine_in(dir, config(&[receiver.addr]));
    let hits = tokio::task::block_in_place(|| {
        eventually("the run's outcome to reach the webhook", || {
            let hits = receiver.hits();
            hits.iter()
                .any(|h| h.answered == 200 && h.json()["type"] == "script.run_finished")
                .then_some(hits)
        })
    });
    let delivered: Vec<&Hit> = hits.iter().filter(|h| h.answered == 200).collect();
    for hit in &delivered {
        assert!(
            signed(secret, hit),
            "signed with the channel's secret: {hit:?}"
        );
        let body = hit.json();
        assert_eq!(body["id"], hit.header("x-yardmaster-event-id"));
        assert_eq!(body["organization"], ORG);
        assert_eq!(body["data"]["schedule_id"], schedule_id.as_str());
    }
    let kinds: Vec<String> = delivered
        .iter()
        .map(|h| h.json()["type"].as_str().unwrap_or("").to_owned())
        .collect();
    assert_eq!(
        kinds,
        [
            "script.authorized",
            "script.launched",
            "script.site_finished",
            "script.site_finished",
            "script.site_finished",
            "script.run_finished"
        ],
        "one schedule's events in order, each after its retry"
    );
    let last = delivered.last().expect("run finished").json();
    assert_eq!(last["subject"], "Completed: Nightly log line");
    assert_eq!(last["data"]["completed"], 3);
    for hit in &delivered[2..5] {
        assert_eq!(hit.json()["data"]["status"], "completed");
    }
    // Every event was answered 500 once before it was taken.
    assert_eq!(hits.len(), delivered.len() * 2);
    let ids: Vec<u64> = delivered.iter().map(|h| h.event_id()).collect();
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "{ids:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_webhook_copy_of_an_approval_request_carries_the_findings_but_no_link() {
    let receiver = Receiver::start(Ipv4Addr::new(127, 12, 0, 10), 0);
    let dir = tempfile::tempdir().expect("tmp");
    let schedule_id = approval_requested(
        &dir,
        vec![ChannelInput {
            organization: ORG.into(),
            name: "review hook".into(),
            kind: ChannelKind::Webhook,
            plugin: None,
            events: vec!["script.authorization_requested".into()],
            settings: BTreeMap::from([("url".to_owned(), receiver.url())]),
            secrets: BTreeMap::from([("secret".to_owned(), "a hook secret".to_owned())]),
            created_by: "alice".into(),
        }],
    );
    let _engine = engine_in(dir, config(&[receiver.addr]));
    let hit = tokio::task::block_in_place(|| {
        eventually("the approval request to reach the webhook", || {
            receiver.hits().into_iter().find(|h| h.answered == 200)
        })
    });
    let body = hit.json();
    assert_eq!(body["type"], "script.authorization_requested");
    let data = &body["data"];
    assert_eq!(data["schedule_id"], schedule_id.as_str());
    assert_eq!(data["acknowledged_risks"], json!(["factory-reset"]));
    let findings: Vec<(String, String, u64, u64)> = data["findings"]
        .as_array()
        .expect("findings")
        .iter()
        .map(|f| {
            assert!(f["message"].as_str().is_some_and(|m| !m.is_empty()), "{f}");
            (
                f["rule"].as_str().unwrap_or("").to_owned(),
                f["severity"].as_str().unwrap_or("").to_owned(),
                f["line"].as_u64().unwrap_or(0),
                f["column"].as_u64().unwrap_or(0),
            )
        })
        .collect();
    assert_eq!(
        findings,
        [
            ("user-change".into(), "high".into(), 5, 1),
            ("factory-reset".into(), "critical".into(), 6, 1),
        ]
    );
    assert!(data.get("links").is_none(), "{body}");
    assert!(!hit.body.contains("token="), "{}", hit.body);
}

/// A listener that only counts the connections it is offered.
struct Bystander {
    listener: TcpListener,
    addr: SocketAddr,
}

impl Bystander {
    fn bind(ip: Ipv4Addr) -> Bystander {
        let listener = TcpListener::bind((ip, 0)).expect("bind");
        listener.set_nonblocking(true).expect("nonblocking");
        let addr = listener.local_addr().expect("addr");
        Bystander { listener, addr }
    }

    fn connections(&self) -> usize {
        let mut n = 0;
        while self.listener.accept().is_ok() {
            n += 1;
        }
        n
    }
}

/// A job submitted through the API on `site` of the test organization.
fn submit(engine: &Engine, site: &str, key: &str, notify_url: &str) -> Response {
    engine
        .post_as(
            &format!("/api/asynchronous/{site}"),
            &json!({
                "description": format!("notify {key}"),
                "script": ":log info \"notify guard\"",
                "idempotency_key": key,
                "notify_url": notify_url,
            }),
            Some(&engine.token(&["script:run"])),
        )
        .expect("submit")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn notify_urls_reach_public_or_listed_receivers_only() {
    let routers = fleet(Ipv4Addr::new(127, 12, 6, 1), 1, Profile::V7_18, "pw").await;
    let listed = Receiver::start(Ipv4Addr::new(127, 12, 0, 8), 0);
    let internal = Bystander::bind(Ipv4Addr::new(127, 12, 0, 9));
    // `localhost` resolves to loopback; nothing there may be reached unless listed.
    let behind_a_name = Bystander::bind(Ipv4Addr::LOCALHOST);
    // The operator lists one receiver for plain http and grants the webhook plugin
    // nothing: a listed host needs no second entry.
    let engine = tokio::task::block_in_place(|| {
        Engine::start(EngineOptions {
            config: format!(
                "[notify]\nmax_attempts = 3\nbackoff = \"100ms\"\nmax_backoff = \"400ms\"\nallow_http = [\"{}\"]\n",
                listed.addr.ip()
            ),
            bundled: true,
            ..Default::default()
        })
    });
    tokio::task::block_in_place(|| {
        let router = routers.addresses()[0];
        let site = engine.add_site(&json!({
            "name": "edge", "address": router.ip().to_string(), "port": router.port(),
            "transport": "routeros-api", "username": "admin", "password": "pw",
        }));

        // A literal internal address the operator did not list: refused at submission,
        // naming the field, and no job exists to notify it.
        for url in [
            format!("https://{}/hook", internal.addr),
            format!("http://{}/hook", internal.addr),
            "https://169.254.169.254/latest/meta-data".to_owned(),
        ] {
            let reply = submit(&engine, &site, "refused", &url);
            assert_eq!(reply.status, 422, "{url}: {}", reply.text);
            assert!(
                reply.body["message"]
                    .as_str()
                    .unwrap_or_default()
                    .starts_with("notify_url:"),
                "{url}: {}",
                reply.text
            );
        }
        let jobs = engine
            .get_as(
                &format!("/api/routers/{site}/jobs"),
                Some(&engine.token(&["script:view"])),
            )
            .expect("jobs");
        assert_eq!(jobs.status, 200, "{}", jobs.text);
        assert!(!jobs.text.contains("refused"), "{}", jobs.text);

        // A name that resolves to loopback passes submission (names are judged when
        // connected to), and the delivery is refused then: a dead letter, and the
        // listener behind the name never sees a connection.
        let guarded = submit(
            &engine,
            &site,
            "by-name",
            &format!("https://localhost:{}/hook", behind_a_name.addr.port()),
        );
        assert_eq!(guarded.status, 202, "{}", guarded.text);

        // The listed receiver gets every update, signed, with no allow-list entry.
        let delivered = submit(
            &engine,
            &site,
            "listed",
            &format!("http://{}/hook", listed.addr),
        );
        assert_eq!(delivered.status, 202, "{}", delivered.text);
        let hits = eventually("the listed receiver to get the completion", || {
            let hits = listed.hits();
            hits.iter()
                .any(|h| h.answered == 200 && h.json()["status"] == "completed")
                .then_some(hits)
        });
        let secret = {
            let r = engine
                .get_as(
                    "/notifications/signing-secret",
                    Some(&engine.token(&["plugin:manage"])),
                )
                .expect("secret");
            assert_eq!(r.status, 200, "{}", r.text);
            r.body["secret"].as_str().expect("secret").to_owned()
        };
        for hit in &hits {
            assert!(signed(&secret, hit), "bad signature on {hit:?}");
            assert_eq!(hit.json()["description"], "notify listed");
        }

        let view = engine.token(&["plugin:view"]);
        let dead = eventually("the guarded updates to become dead letters", || {
            let r = engine
                .get_as("/notifications/dead-letters", Some(&view))
                .ok()?;
            let data = r.body["data"].as_array()?.clone();
            let refused: Vec<Value> = data
                .into_iter()
                .filter(|d| d["payload"]["description"] == "notify by-name")
                .collect();
            refused
                .iter()
                .any(|d| d["payload"]["status"] == "completed")
                .then_some(refused)
        });
        for letter in &dead {
            let error = letter["last_error"].as_str().unwrap_or_default();
            assert!(
                error.contains("not a public address") && error.contains("localhost"),
                "{letter}"
            );
            // Refused for good at the first attempt, not retried.
            assert_eq!(letter["attempts"], 1, "{letter}");
        }
        assert_eq!(
            behind_a_name.connections(),
            0,
            "a guarded delivery connected"
        );
        assert_eq!(
            internal.connections(),
            0,
            "a refused notify_url was reached"
        );
        assert!(
            listed
                .hits()
                .iter()
                .all(|h| h.json()["description"] == "notify listed"),
            "another job's update reached the listed receiver"
        );
    });
}
