//! Shared harness for the end-to-end tests: start the real `yardmaster` binary on a
//! temporary data and plugins folder, talk HTTP to it over loopback, and read its log.
//!
//! The tests themselves live in `tests/tests/`, grouped by theme. Fixture plugins are
//! built once per run by this crate's build script (see [`fixture`]).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use yardmaster::store::{Operations, Secret, SiteInput, User};

pub mod bench;
pub mod openai;
pub mod postgres;

/// How long a test waits for something the engine does eventually (a reload, a start).
/// Generous on purpose: speed is the benchmarks' business, not the tests'.
pub const PATIENCE: Duration = Duration::from_secs(120);

/// The `yardmaster` binary built by this `cargo test` run.
pub fn binary() -> PathBuf {
    let exe = std::env::current_exe().expect("the test knows its own path");
    // target/<profile>/deps/<test> -> target/<profile>/yardmaster
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("tests run from target/<profile>/deps");
    let bin = dir.join(format!("yardmaster{}", std::env::consts::EXE_SUFFIX));
    assert!(
        bin.exists(),
        "{} is missing: run the tests with `cargo test` from the workspace root, which builds it",
        bin.display()
    );
    bin
}

/// A fixture plugin built by the build script, e.g. `fixture("echo")` for `echo.wasm`.
pub fn fixture(name: &str) -> PathBuf {
    Path::new(env!("YARDMASTER_FIXTURES_DIR")).join(format!("{name}.wasm"))
}

/// Waits until `check` gives a value, or panics after [`PATIENCE`] with `what`.
pub fn eventually<T>(what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(value) = check() {
            return value;
        }
        assert!(start.elapsed() < PATIENCE, "gave up waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// An HTTP response: status and JSON body (or `Null` when the body is not JSON).
#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    pub body: serde_json::Value,
    pub text: String,
}

/// One HTTP/1.1 request over a fresh loopback connection, without a token.
pub fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: Option<&serde_json::Value>,
) -> std::io::Result<Response> {
    http_as(addr, method, path, body, None)
}

/// One HTTP/1.1 request over a fresh loopback connection, with `token` as its bearer
/// token when given.
pub fn http_as(
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: Option<&serde_json::Value>,
    token: Option<&str>,
) -> std::io::Result<Response> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(10))?;
    stream.set_read_timeout(Some(PATIENCE))?;
    let payload = body.map(|b| b.to_string()).unwrap_or_default();
    let mut request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nAccept: application/json\r\nContent-Length: {}\r\n",
        payload.len()
    );
    if let Some(token) = token {
        request.push_str(&format!("Authorization: Bearer {token}\r\n"));
    }
    if body.is_some() {
        request.push_str("Content-Type: application/json\r\n");
    }
    request.push_str("\r\n");
    request.push_str(&payload);
    stream.write_all(request.as_bytes())?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw)?;
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| std::io::Error::other(format!("not an HTTP response: {text:?}")))?;
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("no status in {head:?}")))?;
    let chunked = head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked");
    let body = if chunked {
        dechunk(body)
    } else {
        body.to_string()
    };
    Ok(Response {
        status,
        body: serde_json::from_str(&body).unwrap_or(serde_json::Value::Null),
        text: body,
    })
}

fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let Ok(size) = usize::from_str_radix(size.trim(), 16) else {
            break;
        };
        if size == 0 || rest.len() < size {
            break;
        }
        out.push_str(&rest[..size]);
        body = rest[size..].trim_start_matches("\r\n");
    }
    out
}

/// A fleet of simulated routers in its own `yardmaster simulate` process (plain API on
/// port 8728, user `admin`, password `pw`), stopped when dropped.
pub struct Simulator {
    child: Child,
    first: [u8; 4],
}

impl Simulator {
    /// Starts `routers` routers, the first at `first` and each next one at the next
    /// address, with `extra` arguments (`--fault ...`); returns once the last answers.
    pub fn start(routers: usize, first: [u8; 4], extra: &[&str]) -> Simulator {
        let child = Command::new(binary())
            .args(["simulate", "--routers", &routers.to_string(), "--bind"])
            .arg(std::net::Ipv4Addr::from(first).to_string())
            .args(["--no-tls", "--password", "pw"])
            .args(extra)
            .env("YARDMASTER_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start the simulator");
        let simulator = Simulator { child, first };
        let last = simulator.addr(routers - 1);
        eventually("the last simulated router to answer", || {
            TcpStream::connect_timeout(&last, Duration::from_millis(200))
                .ok()
                .map(|_| ())
        });
        simulator
    }

    /// Router `i`'s API address.
    pub fn addr(&self, i: usize) -> SocketAddr {
        let base = u32::from_be_bytes(self.first) + i as u32;
        SocketAddr::from((base.to_be_bytes(), 8728))
    }

    /// A site of `organization` for router `i`, named `router-<i>`, over the API
    /// transport, tagged `tags`.
    pub fn site(&self, organization: &str, i: usize, tags: &[&str]) -> SiteInput {
        let addr = self.addr(i);
        SiteInput {
            organization: organization.into(),
            name: format!("router-{i}"),
            address: addr.ip().to_string(),
            port: Some(addr.port()),
            transport: "routeros-api".into(),
            username: "admin".into(),
            password: Some(Secret::new("pw")),
            tls: Default::default(),
            tags: tags.iter().map(|t| t.to_string()).collect(),
            private_key: None,
            private_key_passphrase: None,
            ssh: None,
        }
    }
}

impl Drop for Simulator {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The token key the engines on the shared `store` sign with, read from the database as
/// an engine without a key file of its own reads it (see [`Engine::sign_with`]).
pub async fn shared_token_key(store: &yardmaster::store::postgres::PgStore) -> Vec<u8> {
    let empty = tempfile::tempdir().expect("an empty data dir");
    yardmaster::store::backend::signing_secret(
        Some(store),
        empty.path(),
        yardmaster::auth::KEY_FILE,
        yardmaster::auth::KEY_LEN,
    )
    .await
    .expect("the shared token key")
}

/// Writes what an admin would before a launch, through either store: the users `alice`
/// (who creates schedules) and `bob` (who approves them) of `organization`, and a site
/// per router of `fleet` tagged `fleet`. Returns each site's id with its router's index.
pub async fn seed(
    store: &impl Operations,
    fleet: &Simulator,
    organization: &str,
    routers: usize,
) -> std::collections::BTreeMap<String, usize> {
    let now = chrono::Utc::now();
    for id in ["alice", "bob"] {
        store
            .put_user(&User {
                id: id.into(),
                name: id.into(),
                email: format!("{id}@example.com"),
                organization: organization.into(),
                created_at: now,
            })
            .await
            .expect("user");
    }
    let inputs = (0..routers)
        .map(|i| fleet.site(organization, i, &["fleet"]))
        .collect();
    store
        .import_sites(organization, inputs, "admin", now)
        .await
        .expect("import")
        .expect("every site accepted")
        .into_iter()
        .map(|site| {
            let i = site.name["router-".len()..].parse().expect("index");
            (site.id, i)
        })
        .collect()
}

/// How many lines of a simulated router's log (`yardmaster simulate --password pw`) are
/// `message`, asked over its RouterOS API as user `admin`: the router's own count of the
/// times a script ran there.
pub fn logged(router: SocketAddr, message: &str) -> usize {
    use yardmaster_plugin_sdk::routeros::{Decoder, Reply, encode_sentence};
    let mut stream = TcpStream::connect_timeout(&router, Duration::from_secs(5)).expect("router");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let mut decoder = Decoder::new();
    let send = |words: &[&str], stream: &mut TcpStream| {
        stream.write_all(&encode_sentence(words)).expect("write");
    };
    let mut read_until_done = |stream: &mut TcpStream| -> usize {
        let mut rows = 0;
        let mut buf = [0u8; 4096];
        loop {
            while let Some(sentence) = decoder.next_sentence().expect("protocol") {
                match Reply::parse(&sentence).expect("reply") {
                    Reply::Re { .. } => rows += 1,
                    Reply::Done { .. } => return rows,
                    Reply::Trap { message, .. } => panic!("router {router}: {message}"),
                    _ => {}
                }
            }
            let n = stream.read(&mut buf).expect("read");
            assert!(n > 0, "router {router} closed the connection");
            decoder.feed(&buf[..n]);
        }
    };
    send(&["/login", "=name=admin", "=password=pw"], &mut stream);
    read_until_done(&mut stream);
    send(&["/log/print", &format!("?message={message}")], &mut stream);
    read_until_done(&mut stream)
}

/// A running engine on a temporary folder, killed when dropped.
pub struct Engine {
    pub dir: tempfile::TempDir,
    pub addr: SocketAddr,
    child: Child,
    log: Arc<Mutex<String>>,
    /// The token [`Engine::get`] and [`Engine::post`] send: every scope, `engine:admin`
    /// included, made on first use.
    admin: std::sync::OnceLock<String>,
    /// The key tokens are signed with, when not the data dir's (see [`Engine::sign_with`]).
    token_key: std::sync::OnceLock<Vec<u8>>,
}

/// The user and organization of the tokens [`Engine::token`] issues.
pub const TEST_USER: &str = "tester";
pub const TEST_ORG: &str = "test-org";

/// The `[sites]` section every test engine gets unless its config has its own: the
/// default policy, plus loopback for the simulated routers.
pub const LOOPBACK_SITES: &str = "[sites]\nallow = [\"*\", \"127.0.0.0/8\", \"::1\"]\n";

/// How to start an [`Engine`].
#[derive(Debug, Default)]
pub struct EngineOptions {
    /// Extra TOML appended to the generated config file.
    pub config: String,
    /// Fixture plugins copied into the plugins folder before start.
    pub plugins: Vec<String>,
    /// Keep the bundled first-party plugins (off by default, so tests see only theirs).
    pub bundled: bool,
    /// Reuse this folder (data and plugins) instead of a fresh one, as after a restart.
    pub reuse: Option<tempfile::TempDir>,
}

impl Engine {
    pub fn start(options: EngineOptions) -> Engine {
        let dir = match options.reuse {
            Some(dir) => dir,
            None => tempfile::tempdir().expect("temporary folder"),
        };
        let plugins = dir.path().join("plugins");
        std::fs::create_dir_all(&plugins).expect("plugins folder");
        for name in &options.plugins {
            std::fs::copy(fixture(name), plugins.join(format!("{name}.wasm")))
                .expect("copy fixture");
        }
        let config = dir.path().join("yardmaster.toml");
        // Tests point sites at simulated routers on loopback, which `[sites] allow`
        // refuses unless listed; a test that sets its own `[sites]` section keeps it.
        let sites = if options.config.contains("[sites]") {
            ""
        } else {
            LOOPBACK_SITES
        };
        std::fs::write(
            &config,
            format!(
                "install_bundled_plugins = {}\n{}\n{sites}",
                options.bundled, options.config
            ),
        )
        .expect("config file");
        let mut child = Command::new(binary())
            .arg("serve")
            .arg("--config")
            .arg(&config)
            .arg("--data-dir")
            .arg(dir.path().join("data"))
            .arg("--plugins-dir")
            .arg(&plugins)
            .arg("--listen")
            .arg("127.0.0.1:0")
            .env("YARDMASTER_LOG", "info,yardmaster=debug")
            .env_remove("YARDMASTER_CONFIG")
            .env_remove("YARDMASTER_SITES_ALLOW")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start yardmaster");
        let log = Arc::new(Mutex::new(String::new()));
        let stderr = child.stderr.take().expect("piped stderr");
        let sink = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Ok(mut log) = sink.lock() {
                    log.push_str(&line);
                    log.push('\n');
                }
            }
        });
        let mut engine = Engine {
            dir,
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            child,
            log,
            admin: std::sync::OnceLock::new(),
            token_key: std::sync::OnceLock::new(),
        };
        engine.addr = eventually("the engine to listen", || {
            if let Ok(Some(status)) = engine.child.try_wait() {
                panic!("yardmaster exited with {status}:\n{}", engine.log());
            }
            let log = engine.log();
            let line = log.lines().find(|l| l.contains("listening on http://"))?;
            let addr = line.split("listening on http://").nth(1)?.trim();
            addr.parse().ok()
        });
        eventually("the engine to be ready", || {
            let r = engine.get_as("/healthz", None).ok()?;
            (r.status == 200).then_some(())
        });
        engine
    }

    /// An engine with the bundled plugins and `config` appended to its configuration,
    /// on a fresh folder or on `reuse` (a restart).
    pub fn start_bundled(config: &str, reuse: Option<tempfile::TempDir>) -> Engine {
        Engine::start(EngineOptions {
            bundled: true,
            config: config.to_owned(),
            reuse,
            ..EngineOptions::default()
        })
    }

    pub fn plugins_dir(&self) -> PathBuf {
        self.dir.path().join("plugins")
    }

    /// Everything the engine has logged so far.
    pub fn log(&self) -> String {
        self.log.lock().map(|l| l.clone()).unwrap_or_default()
    }

    /// The engine's data dir (`--data-dir`).
    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// Signs this engine's tokens with `key` from now on, instead of the data dir's: the
    /// key the engines on a shared store share, read from the database. Set once, before
    /// the first token.
    pub fn sign_with(&self, key: &[u8]) {
        assert!(
            self.token_key.set(key.to_vec()).is_ok() && self.admin.get().is_none(),
            "sign_with is called once, before any token is made"
        );
    }

    /// A token for [`TEST_USER`] of [`TEST_ORG`] with `scopes` (`&["all"]` for every
    /// one), valid for an hour, signed with the engine's token key (its data dir's, or
    /// [`Engine::sign_with`]'s).
    pub fn token(&self, scopes: &[&str]) -> String {
        self.token_for(TEST_USER, TEST_ORG, scopes, 3600)
    }

    /// A token for `sub` of `org` with `scopes`, valid for `ttl_secs` from now (negative:
    /// already expired).
    pub fn token_for(&self, sub: &str, org: &str, scopes: &[&str], ttl_secs: i64) -> String {
        let scopes: Vec<String> = if scopes == ["all"] {
            yardmaster::auth::scopes::ALL
                .iter()
                .map(|s| s.to_string())
                .collect()
        } else {
            scopes.iter().map(|s| s.to_string()).collect()
        };
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64);
        let claims: yardmaster::auth::Claims = serde_json::from_value(serde_json::json!({
            "sub": sub,
            "org": org,
            "scopes": scopes,
            "iat": now,
            "exp": now + ttl_secs,
        }))
        .expect("claims");
        match self.token_key.get() {
            Some(key) => yardmaster::auth::Authenticator::from_secret(key),
            None => yardmaster::auth::Authenticator::open(&self.data_dir())
                .expect("the engine's token key"),
        }
        .issue(&claims)
    }

    fn admin_token(&self) -> &str {
        self.admin.get_or_init(|| {
            let mut scopes: Vec<&str> = yardmaster::auth::scopes::ALL.to_vec();
            scopes.extend(yardmaster::auth::scopes::BY_NAME_ONLY);
            self.token(&scopes)
        })
    }

    /// Registers a site of [`TEST_ORG`] through `POST /sites` (`name`, `address`,
    /// `transport`, optional `port`, `username`, `password`, `tls`) and returns its id.
    pub fn add_site(&self, site: &serde_json::Value) -> String {
        let reply = self.post("/sites", site).expect("POST /sites");
        assert_eq!(reply.status, 201, "{}", reply.text);
        reply.body["id"]
            .as_str()
            .expect("the new site's id")
            .to_owned()
    }

    /// `GET path` with a token carrying every scope.
    pub fn get(&self, path: &str) -> std::io::Result<Response> {
        self.get_as(path, Some(self.admin_token()))
    }

    /// `POST path` with a token carrying every scope.
    pub fn post(&self, path: &str, body: &serde_json::Value) -> std::io::Result<Response> {
        self.post_as(path, body, Some(self.admin_token()))
    }

    /// `GET path` with `token`, or with none.
    pub fn get_as(&self, path: &str, token: Option<&str>) -> std::io::Result<Response> {
        http_as(self.addr, "GET", path, None, token)
    }

    /// `POST path` with `token`, or with none.
    pub fn post_as(
        &self,
        path: &str,
        body: &serde_json::Value,
        token: Option<&str>,
    ) -> std::io::Result<Response> {
        http_as(self.addr, "POST", path, Some(body), token)
    }

    /// The `/plugins` entry for `file`, if listed.
    pub fn plugin_file(&self, file: &str) -> Option<serde_json::Value> {
        let list = self.get("/plugins").ok()?;
        list.body
            .as_array()?
            .iter()
            .find(|p| p["file"] == file)
            .cloned()
    }

    /// Waits until `file` is listed and `check` accepts its entry.
    pub fn wait_for_file(
        &self,
        file: &str,
        what: &str,
        check: impl Fn(&serde_json::Value) -> bool,
    ) -> serde_json::Value {
        eventually(what, || self.plugin_file(file).filter(|p| check(p)))
    }

    /// Stops the engine abruptly and gives back its folder, for a restart.
    pub fn kill(mut self) -> tempfile::TempDir {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let dir = tempfile::tempdir().expect("placeholder folder");
        std::mem::replace(&mut self.dir, dir)
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A transport call body for `POST /plugins/{name}/call` on the site `site_id`.
pub fn transport_call(
    site_id: &str,
    operation: &str,
    extra: serde_json::Value,
) -> serde_json::Value {
    let mut body = serde_json::json!({
        "operation": operation,
        "target": {"site_id": site_id},
    });
    if let (Some(body), Some(extra)) = (body.as_object_mut(), extra.as_object()) {
        for (k, v) in extra {
            body.insert(k.clone(), v.clone());
        }
    }
    body
}

/// A simulated fleet running in this process, stopped when dropped.
pub struct InProcessFleet {
    pub fleet: yardmaster::simulate::Fleet,
    _stop: tokio::sync::watch::Sender<bool>,
}

impl std::ops::Deref for InProcessFleet {
    type Target = yardmaster::simulate::Fleet;
    fn deref(&self) -> &Self::Target {
        &self.fleet
    }
}

/// Starts `routers` simulated routers from `bind`, API only (port 8728), user `admin`
/// with `password`.
pub async fn fleet(
    bind: std::net::Ipv4Addr,
    routers: usize,
    profile: yardmaster::simulate::Profile,
    password: &str,
) -> InProcessFleet {
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let fleet = yardmaster::simulate::Fleet::start(
        yardmaster::simulate::FleetConfig {
            routers,
            bind,
            port: 8728,
            tls_port: None,
            profile,
            user: "admin".into(),
            password: password.into(),
            faults: Vec::new(),
            ssh_port: None,
            ssh_authorized_keys: Vec::new(),
        },
        async move {
            let mut stopped = stopped;
            let _ = stopped.wait_for(|s| *s).await;
        },
    )
    .await
    .expect("the simulated fleet starts");
    InProcessFleet { fleet, _stop: stop }
}

/// A site of `organization` for each router of `fleet`, reached over the RouterOS API as
/// `admin` with `password`, named `r0`, `r1`, ... by the router's index.
pub fn router_sites(
    fleet: &yardmaster::simulate::Fleet,
    organization: &str,
    password: &str,
) -> Vec<yardmaster::store::SiteInput> {
    fleet
        .routers()
        .map(|router| {
            let addr = router.address();
            yardmaster::store::SiteInput {
                organization: organization.into(),
                name: format!("r{}", router.index()),
                address: addr.ip().to_string(),
                port: Some(addr.port()),
                transport: "routeros-api".into(),
                username: "admin".into(),
                password: Some(yardmaster::store::Secret::new(password)),
                tls: Default::default(),
                tags: Vec::new(),
                private_key: None,
                private_key_passphrase: None,
                ssh: None,
            }
        })
        .collect()
}

/// A plugin host on `dir` serving the bundled plugins (the RouterOS transport).
pub async fn bundled_host(
    dir: &Path,
    max_concurrent_calls: u32,
) -> yardmaster::plugins::PluginHost {
    use yardmaster::config::Limits;
    let plugins = dir.join("plugins");
    yardmaster::plugins::install_bundled(&plugins, &dir.join("data")).expect("bundled plugins");
    let host = yardmaster::plugins::PluginHost::new(yardmaster::plugins::HostOptions {
        plugins_dir: plugins,
        cache_dir: Some(dir.join("cache")),
        defaults: Limits::default(),
        plugins: std::collections::BTreeMap::new(),
        max_concurrent_calls,
        organization_share: 1.0,
        max_memory_bytes: Limits::default().memory_bytes,
        trusted_certificates: Vec::new(),
        // The simulated routers listen on loopback.
        sites_allow: yardmaster::plugins::SiteAllow::with_loopback(),
        ssh_algorithms: Default::default(),
    })
    .expect("plugin host");
    host.reconcile().await;
    host
}
