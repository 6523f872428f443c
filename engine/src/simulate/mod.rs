//! A fleet of simulated RouterOS devices on loopback (`yardmaster simulate`), speaking
//! the real API protocol (plain on 8728, API-SSL on 8729) through the SDK's codec, so
//! operators can try scripts and plugins, and tests can drive transports, without a
//! real router.
//!
//! Router `i` listens on the bind address plus `i` (127.1.0.1, 127.1.0.2, ...: Linux
//! routes all of 127/8 to loopback). Each router has one listener task, serving both
//! its ports, and keeps its own state (`state`), built on first use so that an idle
//! fleet of 10,000 costs little. `conn` serves one API connection, `script` runs
//! console scripts, `faults` describes what can be made to go wrong, and `tls` makes
//! the shared self-signed certificate. `ssh` answers SSH as RouterOS does, when asked
//! for (`--ssh-port`), running each exec request as a console script; its listener is
//! one more port of the router task, so offline periods and faults apply to it too.
//!
//! Version profiles change what clients see: 6.42 knows only the challenge login,
//! 6.45 takes the plain login (and still the challenge), 7.18 answers `!empty` for
//! prints that find nothing and is the only one to accept `/execute =as-string=`.
//! API `/export` answers its text in `=ret=`; `/execute =script=/export =as-string=`
//! works as it does on a real 7.x router. Over SSH, 6.42 and 6.45 offer only the
//! RouterOS 6 algorithms and 7.18 only modern ones.

mod conn;
mod faults;
mod script;
mod ssh;
mod state;
mod tls;

use std::future::Future;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;

pub use faults::{BadFault, Fault, FaultKind, RouterFaults};

use state::{Ctx, State};

/// How long a TLS client may take to finish its handshake.
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a router that loaded a backup stays away while it restarts.
const RESTART_PAUSE: Duration = Duration::from_secs(1);

/// The RouterOS version a fleet pretends to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Profile {
    /// Before 6.43: only the challenge login.
    #[value(name = "6.42")]
    V6_42,
    /// Plain login; no `!empty`, no `/execute =as-string=`.
    #[value(name = "6.45")]
    V6_45,
    /// Plain login, `!empty` for empty prints.
    #[default]
    #[value(name = "7.18")]
    V7_18,
}

impl Profile {
    pub fn version(self) -> &'static str {
        match self {
            Self::V6_42 => "6.42.12",
            Self::V6_45 => "6.45.9",
            Self::V7_18 => "7.18.2",
        }
    }
}

/// Why a fleet could not start.
#[derive(Debug, thiserror::Error)]
pub enum SimulateError {
    #[error("a fleet needs at least one router")]
    NoRouters,
    #[error("simulated routers listen on loopback only (127.0.0.0/8); {0} is not")]
    NotLoopback(Ipv4Addr),
    #[error("{routers} routers starting at {bind} run past the end of 127.0.0.0/8")]
    RangeTooLarge { bind: Ipv4Addr, routers: usize },
    #[error(
        "{needed} open files are needed for {routers} routers but the limit is {limit}; raise it (ulimit -n) or use fewer routers{tls_hint}"
    )]
    TooFewFiles {
        needed: u64,
        limit: u64,
        routers: usize,
        tls_hint: &'static str,
    },
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("cannot make the API-SSL certificate: {0}")]
    Tls(String),
    #[error("--cert-out: {0}")]
    CertOut(String),
    #[error("cannot make the SSH host key: {0}")]
    Ssh(String),
}

/// What to simulate.
#[derive(Debug, Clone)]
pub struct FleetConfig {
    pub routers: usize,
    /// The first router's address; router `i` listens on this plus `i`.
    pub bind: Ipv4Addr,
    /// The API port; 0 picks a free port per router (for tests).
    pub port: u16,
    /// The API-SSL port, when API-SSL is served; 0 picks a free port per router.
    pub tls_port: Option<u16>,
    pub profile: Profile,
    pub user: String,
    pub password: String,
    pub faults: Vec<Fault>,
    /// The SSH port, when SSH is served; 0 picks a free port per router.
    pub ssh_port: Option<u16>,
    /// Public keys (OpenSSH `authorized_keys` lines) the fleet's user may log in with
    /// over SSH, besides the password.
    pub ssh_authorized_keys: Vec<String>,
}

impl Default for FleetConfig {
    fn default() -> Self {
        Self {
            routers: 1,
            bind: Ipv4Addr::new(127, 1, 0, 1),
            port: 8728,
            tls_port: Some(8729),
            profile: Profile::default(),
            user: "admin".into(),
            password: String::new(),
            faults: Vec::new(),
            ssh_port: None,
            ssh_authorized_keys: Vec::new(),
        }
    }
}

/// Settings every router of a fleet shares.
struct Shared {
    profile: Profile,
    user: String,
    password: String,
    started: Instant,
    ssh_authorized_keys: Vec<russh::keys::PublicKey>,
}

/// Counters a test can read to see what a router was asked.
#[derive(Debug, Default)]
struct Stats {
    connections: AtomicU64,
    logins: AtomicU64,
    failed_logins: AtomicU64,
    commands: AtomicU64,
    requests: AtomicU64,
    round_trips: AtomicU64,
    jobs: AtomicU64,
}

/// A snapshot of a router's counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RouterStats {
    pub connections: u64,
    pub logins: u64,
    pub failed_logins: u64,
    pub commands: u64,
    /// Sentences the router answered for a client that waits for the answer: every
    /// login and command but `/quit`, whose answer no client reads. A client that sends
    /// one request at a time makes this many round trips.
    pub requests: u64,
    /// Those of the requests that came while no earlier answer on their connection was
    /// still being held back by a `delay` fault: the round trips a client waited out.
    /// Requests sent together (pipelined) count once. Without a delay every answer is
    /// sent before the next request is read, so this equals `requests`.
    pub round_trips: u64,
}

/// One line of a router's `/log`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogEntry {
    pub time: String,
    pub topics: String,
    pub message: String,
}

/// One simulated router.
pub struct Router {
    index: usize,
    address: SocketAddr,
    tls_address: Option<SocketAddr>,
    shared: Arc<Shared>,
    faults: RouterFaults,
    state: Mutex<Option<Box<State>>>,
    online: watch::Sender<bool>,
    offline_until: Mutex<Option<tokio::time::Instant>>,
    /// Bumped when the services or the scheduler change, so the listeners and the
    /// scheduler's timer follow.
    changes: watch::Sender<u64>,
    stats: Stats,
    ssh_address: Option<SocketAddr>,
    /// The login names SSH clients gave, console options (`+cet1024w`) and all.
    ssh_logins: Mutex<Vec<String>>,
}

impl std::fmt::Debug for Router {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Router")
            .field("index", &self.index)
            .field("address", &self.address)
            .finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding the lock leaves plain data behind; carry on with it.
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Router {
    pub fn index(&self) -> usize {
        self.index
    }

    /// The API address (plain TCP).
    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// The API-SSL address, when served.
    pub fn tls_address(&self) -> Option<SocketAddr> {
        self.tls_address
    }

    pub fn faults(&self) -> RouterFaults {
        self.faults
    }

    fn with_state<R>(&self, f: impl FnOnce(&mut State, &Ctx<'_>) -> R) -> R {
        let ctx = Ctx {
            profile: self.shared.profile,
            index: self.index,
            user: &self.shared.user,
            uptime: self.shared.started.elapsed(),
        };
        let mut guard = lock(&self.state);
        let state = guard.get_or_insert_with(|| Box::new(State::new(self.index)));
        let before = state.revision;
        let out = f(state, &ctx);
        let changed = state.revision != before;
        let restart = std::mem::take(&mut state.restart);
        drop(guard);
        if changed {
            self.changes.send_modify(|n| *n = n.wrapping_add(1));
        }
        if restart {
            // As a router does after `/system backup load`: every connection drops, and
            // its services answer again once it is back.
            self.go_offline(RESTART_PAUSE);
        }
        out
    }

    /// Whether the service `name` (`api`, `api-ssl`, `ssh`) accepts new connections. A
    /// router nobody has used yet has its defaults: every service on.
    pub fn service_enabled(&self, name: &str) -> bool {
        lock(&self.state)
            .as_ref()
            .is_none_or(|s| s.service_enabled(name))
    }

    /// Runs the scheduler entries due by now, as their owner.
    fn run_due(&self) {
        self.with_state(|s, ctx| {
            for source in s.take_due(chrono::Utc::now()) {
                script::execute(s, ctx, &source);
            }
        });
    }

    /// When the router's next scheduler entry is due, on this process's clock.
    fn next_scheduled(&self) -> Option<tokio::time::Instant> {
        let now = chrono::Utc::now();
        // Read without building the state: an idle router has no scheduler entries.
        let at = lock(&self.state).as_ref()?.next_scheduled(now)?;
        let wait = (at - now).to_std().unwrap_or(Duration::ZERO);
        Some(tokio::time::Instant::now() + wait)
    }

    pub fn identity(&self) -> String {
        self.with_state(|s, _| s.identity.clone())
    }

    /// The router's `/log`, oldest first (the last 1,000 lines, as RouterOS keeps).
    pub fn log(&self) -> Vec<LogEntry> {
        self.with_state(|s, _| {
            s.table(state::TableId::Log)
                .rows
                .iter()
                .map(|r| {
                    let v = |i: usize| r.values.get(i).cloned().flatten().unwrap_or_default();
                    LogEntry {
                        time: v(0),
                        topics: v(1),
                        message: v(2),
                    }
                })
                .collect()
        })
    }

    /// Just the messages of [`Router::log`].
    pub fn log_messages(&self) -> Vec<String> {
        self.log().into_iter().map(|e| e.message).collect()
    }

    /// How many log lines were ever written, including those rolled out of the buffer.
    pub fn log_total(&self) -> u64 {
        self.with_state(|s, _| s.log_total)
    }

    /// The rows of a menu (`/ip/address`, `/interface`, `/system/script`, ...) as the API
    /// would print them; `None` for a menu the simulator does not have.
    pub fn rows(&self, menu_path: &str) -> Option<Vec<Vec<(String, String)>>> {
        let menu = state::menu(menu_path.trim_start_matches('/'))?;
        self.with_state(|s, ctx| s.print(menu, &[], None, ctx).ok())
    }

    /// Where the router serves SSH, when the fleet does.
    pub fn ssh_address(&self) -> Option<SocketAddr> {
        self.ssh_address
    }

    /// The login names SSH clients gave so far, oldest first.
    pub fn ssh_logins(&self) -> Vec<String> {
        lock(&self.ssh_logins).clone()
    }

    /// Runs a console script as `/execute` would, returning its output.
    pub fn run_script(&self, source: &str) -> String {
        self.with_state(|s, ctx| script::execute(s, ctx, source))
    }

    /// Takes the router offline for `duration`: connections close and new ones are refused.
    pub fn go_offline(&self, duration: Duration) {
        *lock(&self.offline_until) = Some(tokio::time::Instant::now() + duration);
        self.online.send_replace(false);
    }

    /// Ends an offline period early.
    pub fn come_online(&self) {
        *lock(&self.offline_until) = None;
        self.online.send_replace(true);
    }

    pub fn is_online(&self) -> bool {
        *self.online.borrow()
    }

    pub fn stats(&self) -> RouterStats {
        RouterStats {
            connections: self.stats.connections.load(Ordering::Relaxed),
            logins: self.stats.logins.load(Ordering::Relaxed),
            failed_logins: self.stats.failed_logins.load(Ordering::Relaxed),
            commands: self.stats.commands.load(Ordering::Relaxed),
            requests: self.stats.requests.load(Ordering::Relaxed),
            round_trips: self.stats.round_trips.load(Ordering::Relaxed),
        }
    }
}

/// A running fleet. Stop it with [`Fleet::shutdown`], or let the shutdown future given
/// to [`Fleet::start`] fire and await [`Fleet::wait`].
pub struct Fleet {
    routers: Vec<Arc<Router>>,
    tasks: JoinSet<()>,
    stop: watch::Sender<bool>,
    fingerprint: Option<String>,
    certificate_der: Option<Vec<u8>>,
    certificate_pem: Option<String>,
    config: FleetConfig,
    ssh_fingerprint: Option<String>,
}

impl std::fmt::Debug for Fleet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Fleet")
            .field("routers", &self.routers.len())
            .finish_non_exhaustive()
    }
}

/// The soft limit on open files, where the platform tells it.
fn open_files_limit() -> Option<u64> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line.split_whitespace().nth(3)?.parse().ok()
}

async fn bind(addr: SocketAddr) -> Result<TcpListener, SimulateError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| SimulateError::Bind { addr, source })
}

/// A second listener of a router (API-SSL, SSH) on `ip`, when the fleet serves one.
async fn bind_optional(
    ip: Ipv4Addr,
    port: Option<u16>,
) -> Result<Option<(TcpListener, SocketAddr)>, SimulateError> {
    let Some(port) = port else { return Ok(None) };
    let addr = SocketAddr::from((ip, port));
    let listener = bind(addr).await?;
    let local = listener
        .local_addr()
        .map_err(|source| SimulateError::Bind { addr, source })?;
    Ok(Some((listener, local)))
}

impl Fleet {
    /// Binds every router's listeners (so address and permission problems surface
    /// here), then serves until `shutdown` completes or [`Fleet::shutdown`] is called.
    pub async fn start(
        config: FleetConfig,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<Self, SimulateError> {
        if config.routers == 0 {
            return Err(SimulateError::NoRouters);
        }
        if !config.bind.is_loopback() {
            return Err(SimulateError::NotLoopback(config.bind));
        }
        let first = u32::from(config.bind);
        let last = u64::from(first) + config.routers as u64 - 1;
        if last > u64::from(u32::from(Ipv4Addr::new(127, 255, 255, 254))) {
            return Err(SimulateError::RangeTooLarge {
                bind: config.bind,
                routers: config.routers,
            });
        }
        let per_router =
            1 + u64::from(config.tls_port.is_some()) + u64::from(config.ssh_port.is_some());
        let needed = config.routers as u64 * per_router + 256;
        if let Some(limit) = open_files_limit()
            && limit < needed
        {
            let tls_hint = if config.tls_port.is_some() {
                ", or serve without API-SSL"
            } else {
                ""
            };
            return Err(SimulateError::TooFewFiles {
                needed,
                limit,
                routers: config.routers,
                tls_hint,
            });
        }
        let tls = match config.tls_port {
            Some(_) => Some(tls::self_signed(config.bind)?),
            None => None,
        };
        let ssh_server = match config.ssh_port {
            Some(_) => Some(ssh::SshServer::new(config.profile).map_err(SimulateError::Ssh)?),
            None => None,
        };
        let ssh_authorized_keys =
            ssh::parse_authorized_keys(&config.ssh_authorized_keys.join("\n"))
                .map_err(SimulateError::Ssh)?;
        let shared = Arc::new(Shared {
            profile: config.profile,
            user: config.user.clone(),
            password: config.password.clone(),
            started: Instant::now(),
            ssh_authorized_keys,
        });
        let (stop, stop_rx) = watch::channel(false);
        let mut tasks = JoinSet::new();
        let mut routers = Vec::with_capacity(config.routers);
        for index in 0..config.routers {
            let ip = Ipv4Addr::from(first + index as u32);
            let plain = bind(SocketAddr::from((ip, config.port))).await?;
            let address = plain.local_addr().map_err(|source| SimulateError::Bind {
                addr: SocketAddr::from((ip, config.port)),
                source,
            })?;
            let secure = bind_optional(ip, config.tls_port).await?;
            let ssh_listener = bind_optional(ip, config.ssh_port).await?;
            let faults = RouterFaults::resolve(&config.faults, index);
            let router = Arc::new(Router {
                index,
                address,
                tls_address: secure.as_ref().map(|(_, a)| *a),
                shared: shared.clone(),
                faults,
                state: Mutex::new(None),
                online: watch::Sender::new(true),
                offline_until: Mutex::new(None),
                changes: watch::Sender::new(0),
                stats: Stats::default(),
                ssh_address: ssh_listener.as_ref().map(|(_, a)| *a),
                ssh_logins: Mutex::new(Vec::new()),
            });
            if let Some(d) = faults.offline {
                router.go_offline(d);
            }
            let acceptor = tls.as_ref().map(|t| t.acceptor.clone());
            let listeners = Listeners {
                plain,
                secure: secure.map(|(l, _)| l).zip(acceptor),
                ssh: ssh_listener
                    .map(|(l, _)| l)
                    .zip(ssh_server.as_ref().map(|s| s.config.clone())),
            };
            tasks.spawn(router_task(router.clone(), listeners, stop_rx.clone()));
            routers.push(router);
        }
        let trigger = stop.clone();
        let mut stopped = stop_rx.clone();
        tasks.spawn(async move {
            tokio::select! {
                () = shutdown => { trigger.send_replace(true); }
                () = until(&mut stopped, true) => {}
            }
        });
        Ok(Self {
            routers,
            tasks,
            stop,
            fingerprint: tls.as_ref().map(|t| t.fingerprint.clone()),
            certificate_pem: tls.as_ref().map(|t| t.certificate_pem.clone()),
            certificate_der: tls.map(|t| t.certificate_der),
            config,
            ssh_fingerprint: ssh_server.map(|s| s.fingerprint),
        })
    }

    pub fn len(&self) -> usize {
        self.routers.len()
    }

    pub fn is_empty(&self) -> bool {
        self.routers.is_empty()
    }

    /// Router `i`.
    ///
    /// # Panics
    /// If `i` is not below [`Fleet::len`].
    pub fn router(&self, i: usize) -> &Router {
        &self.routers[i]
    }

    pub fn get(&self, i: usize) -> Option<&Router> {
        self.routers.get(i).map(|r| &**r)
    }

    pub fn routers(&self) -> impl Iterator<Item = &Router> {
        self.routers.iter().map(|r| &**r)
    }

    /// Every router's API address, in router order.
    pub fn addresses(&self) -> Vec<SocketAddr> {
        self.routers.iter().map(|r| r.address).collect()
    }

    /// Every router's API-SSL address, when API-SSL is served.
    pub fn tls_addresses(&self) -> Option<Vec<SocketAddr>> {
        self.routers.iter().map(|r| r.tls_address).collect()
    }

    /// SHA-256 of the API-SSL certificate (lowercase hex), when API-SSL is served.
    pub fn tls_fingerprint(&self) -> Option<&str> {
        self.fingerprint.as_deref()
    }

    /// The API-SSL certificate (DER), for clients that want to trust it as a root.
    pub fn tls_certificate_der(&self) -> Option<&[u8]> {
        self.certificate_der.as_deref()
    }

    /// The same certificate as PEM text.
    pub fn tls_certificate_pem(&self) -> Option<&str> {
        self.certificate_pem.as_deref()
    }

    /// Every router's SSH address, when SSH is served.
    pub fn ssh_addresses(&self) -> Option<Vec<SocketAddr>> {
        self.routers.iter().map(|r| r.ssh_address).collect()
    }

    /// The SSH host key's fingerprint (`SHA256:...`), when SSH is served.
    pub fn ssh_fingerprint(&self) -> Option<&str> {
        self.ssh_fingerprint.as_deref()
    }

    pub fn config(&self) -> &FleetConfig {
        &self.config
    }

    /// Waits until the shutdown future given to [`Fleet::start`] fires and every
    /// listener and connection has ended.
    pub async fn wait(mut self) {
        while self.tasks.join_next().await.is_some() {}
    }

    /// Stops every router, closing their connections, and waits for all of it.
    pub async fn shutdown(self) {
        self.stop.send_replace(true);
        self.wait().await;
    }
}

struct Listeners {
    plain: TcpListener,
    secure: Option<(TcpListener, TlsAcceptor)>,
    ssh: Option<(TcpListener, Arc<russh::server::Config>)>,
}

async fn accept_on(listener: Option<&TcpListener>) -> std::io::Result<tokio::net::TcpStream> {
    match listener {
        Some(l) => l.accept().await.map(|(s, _)| s),
        None => std::future::pending().await,
    }
}

/// Resolves once the watched value is `wanted`, or its sender is gone. Returns nothing,
/// so no borrow of the channel lives across the caller's awaits.
async fn until(rx: &mut watch::Receiver<bool>, wanted: bool) {
    let _ = rx.wait_for(|&v| v == wanted).await;
}

async fn sleep_until_opt(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

/// Accepts on one router's ports, going offline and back when told, until shutdown;
/// then waits for its connections to end. A port whose service is disabled
/// (`/ip service disable api`) is closed, so new connections are refused, and opened
/// again when it is enabled; scheduler entries run when due while the router is up.
async fn router_task(router: Arc<Router>, listeners: Listeners, mut stop: watch::Receiver<bool>) {
    let acceptor = listeners.secure.as_ref().map(|(_, a)| a.clone());
    let ssh_config = listeners.ssh.as_ref().map(|(_, c)| c.clone());
    let mut plain: Option<TcpListener> = Some(listeners.plain);
    let mut secure: Option<TcpListener> = listeners.secure.map(|(l, _)| l);
    let mut ssh: Option<TcpListener> = listeners.ssh.map(|(l, _)| l);
    let mut online = router.online.subscribe();
    let mut changes = router.changes.subscribe();
    let mut conns: JoinSet<()> = JoinSet::new();
    loop {
        if *stop.borrow() {
            break;
        }
        if !*online.borrow_and_update() {
            // Dropping the listeners makes connection attempts fail as refused.
            (plain, secure, ssh) = (None, None, None);
            let deadline = *lock(&router.offline_until);
            tokio::select! {
                () = until(&mut stop, true) => break,
                _ = online.changed() => {}
                () = sleep_until_opt(deadline) => router.come_online(),
                Some(_) = conns.join_next() => {}
            }
            continue;
        }
        changes.borrow_and_update();
        // A service disabled by `/ip service` stops listening, so new connections to it
        // are refused; enabled again (or restored from a backup), it listens again.
        let wanted = [
            (
                router.service_enabled("api").then_some(router.address),
                &mut plain,
            ),
            (
                router
                    .tls_address
                    .filter(|_| router.service_enabled("api-ssl")),
                &mut secure,
            ),
            (
                router.ssh_address.filter(|_| router.service_enabled("ssh")),
                &mut ssh,
            ),
        ];
        let mut failed = None;
        for (want, listener) in wanted {
            match want {
                None => *listener = None,
                Some(addr) if listener.is_none() => match bind(addr).await {
                    Ok(l) => *listener = Some(l),
                    Err(e) => failed = Some(e),
                },
                Some(_) => {}
            }
        }
        if let Some(e) = failed {
            tracing::warn!(router = router.index, "cannot listen again: {e}");
            tokio::select! {
                () = until(&mut stop, true) => break,
                () = tokio::time::sleep(Duration::from_secs(1)) => {}
            }
            continue;
        }
        let conn_stop = stop.clone();
        let due = router.next_scheduled();
        tokio::select! {
            () = until(&mut stop, true) => break,
            _ = online.changed() => {}
            _ = changes.changed() => {}
            () = sleep_until_opt(due) => router.run_due(),
            Some(_) = conns.join_next() => {}
            accepted = accept_on(plain.as_ref()) => {
                if let Ok(stream) = accepted {
                    let _ = stream.set_nodelay(true);
                    conns.spawn(conn::serve(stream, router.clone(), conn_stop));
                }
            }
            accepted = accept_on(secure.as_ref()) => {
                if let (Ok(stream), Some(acceptor)) = (accepted, acceptor.clone()) {
                    let _ = stream.set_nodelay(true);
                    let router = router.clone();
                    conns.spawn(async move {
                        match tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                            Ok(Ok(tls)) => conn::serve(tls, router, conn_stop).await,
                            Ok(Err(e)) => tracing::debug!(router = router.index, "TLS handshake failed: {e}"),
                            Err(_) => tracing::debug!(router = router.index, "TLS handshake timed out"),
                        }
                    });
                }
            }
            accepted = accept_on(ssh.as_ref()) => {
                if let (Ok(stream), Some(config)) = (accepted, ssh_config.clone()) {
                    conns.spawn(ssh::serve(stream, router.clone(), config, conn_stop));
                }
            }
        }
    }
    drop((plain, secure, ssh));
    while conns.join_next().await.is_some() {}
}

/// `yardmaster simulate`: a fleet of simulated RouterOS devices on loopback.
#[derive(Debug, Clone, clap::Args)]
pub struct SimulateArgs {
    /// How many routers to simulate.
    #[arg(long, default_value_t = 1)]
    pub routers: usize,
    /// The first router's address; router i listens on this plus i.
    #[arg(long, default_value_t = Ipv4Addr::new(127, 1, 0, 1))]
    pub bind: Ipv4Addr,
    /// The API port of every router.
    #[arg(long, default_value_t = 8728)]
    pub port: u16,
    /// The API-SSL port of every router.
    #[arg(long, default_value_t = 8729)]
    pub tls_port: u16,
    /// Serve the plain API only.
    #[arg(long)]
    pub no_tls: bool,
    /// Also serve SSH on this port of every router, answering as RouterOS does.
    #[arg(long, value_name = "PORT")]
    pub ssh_port: Option<u16>,
    /// Public keys (an OpenSSH authorized_keys file) the user may also log in with
    /// over SSH.
    #[arg(long, value_name = "FILE", requires = "ssh_port")]
    pub ssh_authorized_keys: Option<std::path::PathBuf>,
    /// The RouterOS version to behave as.
    #[arg(long, value_enum, default_value_t = Profile::V7_18)]
    pub profile: Profile,
    /// The API user.
    #[arg(long, default_value = "admin")]
    pub user: String,
    /// The API user's password.
    #[arg(
        long,
        env = "YARDMASTER_SIMULATE_PASSWORD",
        default_value = "",
        hide_env_values = true
    )]
    pub password: String,
    /// A fault: drop, delay=MS, refuse-login, fatal or offline=SECS, each optionally
    /// followed by @FRACTION of the fleet (e.g. delay=200@0.1). Repeatable.
    #[arg(long = "fault", value_name = "FAULT")]
    pub faults: Vec<Fault>,
    /// Write the API-SSL certificate (PEM) to this file, for clients that verify it
    /// rather than pin its fingerprint (the engine's `[tls] ca_file`). It names
    /// localhost, yardmaster-simulator and the first router's address.
    #[arg(long, value_name = "FILE")]
    pub cert_out: Option<std::path::PathBuf>,
}

impl From<&SimulateArgs> for FleetConfig {
    fn from(args: &SimulateArgs) -> Self {
        Self {
            routers: args.routers,
            bind: args.bind,
            port: args.port,
            tls_port: (!args.no_tls).then_some(args.tls_port),
            profile: args.profile,
            user: args.user.clone(),
            password: args.password.clone(),
            faults: args.faults.clone(),
            ssh_port: args.ssh_port,
            ssh_authorized_keys: Vec::new(),
        }
    }
}

/// Runs `yardmaster simulate` until `shutdown` completes. Prints one line per fact a
/// client needs (addresses, certificate fingerprint, credentials, faults), then
/// `ready` once every router is listening.
pub async fn run(
    args: SimulateArgs,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), SimulateError> {
    if args.no_tls && args.cert_out.is_some() {
        return Err(SimulateError::CertOut(
            "there is no certificate without API-SSL; leave out --no-tls".into(),
        ));
    }
    let mut config = FleetConfig::from(&args);
    if let Some(file) = &args.ssh_authorized_keys {
        let text = std::fs::read_to_string(file)
            .map_err(|e| SimulateError::Ssh(format!("cannot read {}: {e}", file.display())))?;
        config.ssh_authorized_keys = text.lines().map(str::to_owned).collect();
    }
    let keys = config.ssh_authorized_keys.len();
    let fleet = Fleet::start(config, shutdown).await?;
    let addresses = fleet.addresses();
    let (first, last) = (addresses[0], addresses[addresses.len() - 1]);
    println!(
        "routers: {} listening on {}-{} port {} (RouterOS {} profile)",
        fleet.len(),
        first.ip(),
        last.ip(),
        first.port(),
        args.profile.version()
    );
    match (fleet.tls_addresses(), fleet.tls_fingerprint()) {
        (Some(tls), Some(fingerprint)) => {
            println!(
                "api-ssl: port {} certificate sha256 {fingerprint}",
                tls[0].port()
            );
            if let (Some(file), Some(pem)) = (&args.cert_out, fleet.tls_certificate_pem()) {
                std::fs::write(file, pem).map_err(|e| {
                    SimulateError::CertOut(format!("cannot write {}: {e}", file.display()))
                })?;
                println!(
                    "api-ssl certificate written to {} (names localhost, yardmaster-simulator \
                     and {})",
                    file.display(),
                    first.ip()
                );
            }
        }
        _ => println!("api-ssl: off"),
    }
    if let (Some(ssh), Some(fingerprint)) = (fleet.ssh_addresses(), fleet.ssh_fingerprint()) {
        let algorithms = match args.profile {
            Profile::V6_42 | Profile::V6_45 => "RouterOS 6 algorithms",
            Profile::V7_18 => "modern algorithms",
        };
        println!(
            "ssh: port {} host key {fingerprint} ({algorithms}; password login{})",
            ssh[0].port(),
            if keys > 0 { " and authorized keys" } else { "" }
        );
    }
    println!(
        "credentials: user {:?} password {:?}",
        args.user, args.password
    );
    if args.faults.is_empty() {
        println!("faults: none");
    } else {
        let list: Vec<String> = args.faults.iter().map(Fault::to_string).collect();
        println!("faults: {}", list.join(" "));
    }
    println!("ready");
    fleet.wait().await;
    Ok(())
}

#[cfg(test)]
mod tests;
