//! What a plugin's `Store` holds, and the host side of `yardmaster:host`: logging into
//! the engine's tracing, the plugin's own configuration, and TCP/TLS connections made by
//! the host (rustls) under the plugin's allow-list. SSH sessions live in `ssh.rs`.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use wasmtime::component::{Resource, ResourceTable};
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;
use wasmtime_wasi::sockets::SocketAddrUse;
use wasmtime_wasi::{WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpView};

use super::bindings::host::yardmaster::host::{config, log, tls};
use super::net::Policy;
use super::tls_client::TlsClients;

/// The most a plugin may ask the host to read or write in one call.
const MAX_IO_CHUNK: usize = 1024 * 1024;
/// Log lines are cut here, so a plugin cannot flood the engine's log.
const MAX_LOG_LINE: usize = 8 * 1024;
/// Log lines one call may write; the rest are counted, and reported in one line when the
/// call ends ([`CallOutcome::log_dropped`]).
pub(crate) const MAX_LOG_LINES_PER_CALL: u32 = 100;
/// Connections one call may hold open at once.
const MAX_CONNECTIONS: usize = 64;
const DEFAULT_NET_TIMEOUT: Duration = Duration::from_secs(10);

/// Who is calling, for log lines and errors.
#[derive(Debug, Clone)]
pub(crate) struct Caller {
    pub name: String,
    pub version: String,
}

/// Stderr a guest writes (a panic message, typically) is kept up to this size and quoted
/// in the error of a call that trapped.
const STDERR_CAPTURE: usize = 16 * 1024;

/// What one call's store leaves for the code that made the call to read once the store
/// is gone.
#[derive(Default)]
pub(crate) struct CallOutcome {
    /// Whether the memory cap refused a growth, so the resulting trap can be reported
    /// as what it is.
    pub memory_cap_hit: AtomicBool,
    /// What the guest wrote to stderr; there only if it used WASI at all.
    pub stderr: OnceLock<MemoryOutputPipe>,
    /// Log lines the call wrote, and those refused past [`MAX_LOG_LINES_PER_CALL`].
    log_lines: AtomicU32,
    log_dropped: AtomicU64,
}

impl CallOutcome {
    /// Whether the call may write one more log line; a refused one is counted.
    pub(crate) fn admit_log_line(&self) -> bool {
        let admitted = self
            .log_lines
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
                (n < MAX_LOG_LINES_PER_CALL).then_some(n + 1)
            })
            .is_ok();
        if !admitted {
            self.log_dropped.fetch_add(1, Ordering::Relaxed);
        }
        admitted
    }

    /// How many log lines the call was refused.
    pub(crate) fn log_dropped(&self) -> u64 {
        self.log_dropped.load(Ordering::Relaxed)
    }
}

/// Caps the linear memory of one instance and remembers whether the cap was hit.
pub(crate) struct MemoryLimiter {
    pub cap: usize,
    pub outcome: Arc<CallOutcome>,
}

impl wasmtime::ResourceLimiter for MemoryLimiter {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.cap {
            self.outcome.memory_cap_hit.store(true, Ordering::Relaxed);
            return Ok(false);
        }
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= 100_000)
    }
}

/// The data of one call's `Store`.
pub(crate) struct HostState {
    pub caller: Arc<Caller>,
    pub config: Arc<BTreeMap<String, String>>,
    pub policy: Policy,
    pub limiter: MemoryLimiter,
    /// Made on the guest's first WASI call: most calls make none, and building a
    /// context (random generators, clocks, stdio) is a good part of a short call's cost.
    pub wasi: Option<WasiCtx>,
    pub http: WasiHttpCtx,
    /// Also holds the TLS clients, which the host's own connections use too.
    pub http_hooks: super::http::Hooks,
    pub table: ResourceTable,
    /// TCP connections and SSH sessions held open, together.
    pub connections: usize,
    /// What the host offers in SSH key exchange (`[ssh]`).
    pub ssh_algorithms: super::ssh::Algorithms,
    /// For a call that serves a site: its SSH key and host keys.
    pub ssh_site: Option<Arc<super::ssh::SiteSsh>>,
}

impl WasiView for HostState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        let (caller, policy, outcome) = (&self.caller, &self.policy, &self.limiter.outcome);
        let ctx = self
            .wasi
            .get_or_insert_with(|| wasi_context(caller, policy, outcome));
        WasiCtxView {
            ctx,
            table: &mut self.table,
        }
    }
}

/// A call's WASI context: no files, no environment, stderr captured, TCP only where the
/// allow-list grants it.
fn wasi_context(caller: &Arc<Caller>, policy: &Policy, outcome: &CallOutcome) -> WasiCtx {
    let stderr = outcome
        .stderr
        .get_or_init(|| MemoryOutputPipe::new(STDERR_CAPTURE))
        .clone();
    let mut wasi = WasiCtxBuilder::new();
    wasi.allow_tcp(true)
        .allow_udp(false)
        .allow_ip_name_lookup(true)
        .stderr(stderr);
    let (policy, caller) = (policy.clone(), caller.clone());
    wasi.socket_addr_check(move |addr, use_| {
        let (policy, caller) = (policy.clone(), caller.clone());
        Box::pin(async move {
            match use_ {
                SocketAddrUse::TcpConnect => {
                    if policy.allows_addr(addr) {
                        // The plugin resolved the site's name itself; this is the address
                        // it is about to connect to, so `[sites] allow` is checked here.
                        let Some(why) = policy.site_refusal(addr) else {
                            return true;
                        };
                        tracing::warn!(
                            plugin = %caller.name,
                            version = %caller.version,
                            "refused tcp connect to {addr}: {why}"
                        );
                        policy.record_denial(why);
                        return false;
                    }
                    let what = format!("tcp connect to {addr}");
                    tracing::warn!(
                        plugin = %caller.name,
                        version = %caller.version,
                        "refused {what}: not in the plugin's allow-list"
                    );
                    policy.record_denial(what);
                    false
                }
                // The implicit bind before a connect uses the wildcard address and an
                // ephemeral port; plugins never listen or pick their own ports.
                SocketAddrUse::TcpBind => addr.ip().is_unspecified() && addr.port() == 0,
                _ => false,
            }
        })
    });
    wasi.build()
}

impl WasiHttpView for HostState {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView {
            ctx: &mut self.http,
            table: &mut self.table,
            hooks: &mut self.http_hooks,
        }
    }
}

impl log::Host for HostState {
    async fn log(&mut self, level: log::Level, message: String) -> wasmtime::Result<()> {
        if !self.limiter.outcome.admit_log_line() {
            return Ok(());
        }
        let message = truncate(&message, MAX_LOG_LINE);
        let (plugin, version) = (&self.caller.name, &self.caller.version);
        match level {
            log::Level::Trace => tracing::trace!(target: "plugin", plugin, version, "{message}"),
            log::Level::Debug => tracing::debug!(target: "plugin", plugin, version, "{message}"),
            log::Level::Info => tracing::info!(target: "plugin", plugin, version, "{message}"),
            log::Level::Warn => tracing::warn!(target: "plugin", plugin, version, "{message}"),
            log::Level::Error => tracing::error!(target: "plugin", plugin, version, "{message}"),
        }
        Ok(())
    }
}

impl config::Host for HostState {
    async fn get(&mut self, key: String) -> wasmtime::Result<Option<String>> {
        Ok(self.config.get(&key).cloned())
    }
}

impl tls::Host for HostState {}

impl super::bindings::host::yardmaster::host::types::Host for HostState {}

/// A connection a plugin opened through the host.
pub struct Connection {
    host: String,
    port: u16,
    stream: Option<Stream>,
    peer_sha256: Option<String>,
}

enum Stream {
    Plain(TcpStream),
    Tls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
}

fn truncate(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

fn timeout_of(ms: u32) -> Duration {
    if ms == 0 {
        DEFAULT_NET_TIMEOUT
    } else {
        Duration::from_millis(u64::from(ms))
    }
}

fn io_error(host: &str, port: u16, err: &std::io::Error) -> tls::NetError {
    use std::io::ErrorKind::*;
    let text = format!("{host}:{port}: {err}");
    match err.kind() {
        ConnectionRefused | HostUnreachable | NetworkUnreachable => tls::NetError::Refused(text),
        ConnectionReset | ConnectionAborted | BrokenPipe | UnexpectedEof => {
            tls::NetError::Reset(text)
        }
        TimedOut => tls::NetError::Timeout(text),
        InvalidData => tls::NetError::Tls(text),
        _ => tls::NetError::Io(text),
    }
}

impl HostState {
    /// Resolves `host:port` and connects, if the allow-list grants it.
    pub(super) async fn open(
        &mut self,
        host: &str,
        port: u16,
        limit: Duration,
    ) -> Result<TcpStream, tls::NetError> {
        if self.connections >= MAX_CONNECTIONS {
            return Err(tls::NetError::TooLarge(format!(
                "a call may hold at most {MAX_CONNECTIONS} connections open"
            )));
        }
        let endpoint = || format!("{host}:{port}");
        let bare = host.trim_start_matches('[').trim_end_matches(']');
        // tokio answers an address at once, without a resolver thread.
        let lookup = tokio::time::timeout(limit, tokio::net::lookup_host((bare, port))).await;
        let mut addrs: Vec<std::net::SocketAddr> = match lookup {
            Err(_) => return Err(tls::NetError::Timeout(format!("resolving {}", endpoint()))),
            Ok(Err(e)) => return Err(tls::NetError::Dns(format!("{}: {e}", endpoint()))),
            Ok(Ok(addrs)) => addrs.collect(),
        };
        // An address grant covers only that address; a name grant covers whatever the
        // name resolves to (asked only when an address is not granted by itself).
        let mut by_name = None;
        addrs.retain(|a| {
            self.policy.allows_addr(*a)
                || *by_name.get_or_insert_with(|| self.policy.allows_name(host, port))
        });
        if addrs.is_empty() {
            let what = format!("tls connect to {}", endpoint());
            tracing::warn!(
                plugin = %self.caller.name,
                version = %self.caller.version,
                "refused {what}: not in the plugin's allow-list"
            );
            self.policy.record_denial(what);
            return Err(tls::NetError::Denied(format!(
                "{} is not in this plugin's allow-list",
                endpoint()
            )));
        }
        // For a site, `[sites] allow` judges the addresses the name resolved to, the ones
        // connected to below, so a lookup cannot be answered differently in between.
        let mut site_refused = None;
        addrs.retain(|a| match self.policy.site_refusal(*a) {
            None => true,
            Some(why) => {
                site_refused.get_or_insert(why);
                false
            }
        });
        if let (true, Some(why)) = (addrs.is_empty(), site_refused) {
            tracing::warn!(
                plugin = %self.caller.name,
                version = %self.caller.version,
                "refused connect to {}: {why}",
                endpoint()
            );
            self.policy.record_denial(why.clone());
            return Err(tls::NetError::Denied(why));
        }
        let mut last = None;
        for addr in addrs {
            match tokio::time::timeout(limit, TcpStream::connect(addr)).await {
                Err(_) => {
                    last = Some(tls::NetError::Timeout(format!(
                        "connecting to {}",
                        endpoint()
                    )))
                }
                Ok(Err(e)) => last = Some(io_error(host, port, &e)),
                Ok(Ok(stream)) => {
                    let _ = stream.set_nodelay(true);
                    self.connections += 1;
                    return Ok(stream);
                }
            }
        }
        Err(last.unwrap_or(tls::NetError::Refused(endpoint())))
    }
}

async fn handshake(
    clients: Arc<TlsClients>,
    host: &str,
    port: u16,
    tcp: TcpStream,
    options: &tls::TlsOptions,
) -> Result<(tokio_rustls::client::TlsStream<TcpStream>, Option<String>), tls::NetError> {
    let name = options.server_name.clone().unwrap_or_else(|| {
        host.trim_start_matches('[')
            .trim_end_matches(']')
            .to_string()
    });
    let connector = clients
        .connector(options.verify, options.pinned_sha256.as_deref())
        .map_err(tls::NetError::Tls)?;
    let server_name = rustls::pki_types::ServerName::try_from(name.clone())
        .map_err(|_| tls::NetError::Tls(format!("`{name}` is not a valid TLS server name")))?;
    let stream = match tokio::time::timeout(
        timeout_of(options.timeout_ms),
        connector.connect(server_name, tcp),
    )
    .await
    {
        Err(_) => {
            return Err(tls::NetError::Timeout(format!(
                "TLS handshake with {host}:{port}"
            )));
        }
        Ok(Err(e)) => {
            return Err(tls::NetError::Tls(format!(
                "TLS handshake with {host}:{port}: {e}"
            )));
        }
        Ok(Ok(s)) => s,
    };
    let fingerprint = stream
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|certs| certs.first())
        .map(|cert| super::tls_client::sha256_hex(cert.as_ref()));
    Ok((stream, fingerprint))
}

impl HostState {
    fn connection(&mut self, this: &Resource<Connection>) -> wasmtime::Result<&mut Connection> {
        Ok(self.table.get_mut(this)?)
    }
}

impl tls::HostConnection for HostState {
    async fn connect(
        &mut self,
        host: String,
        port: u16,
        options: tls::TlsOptions,
    ) -> wasmtime::Result<Result<Resource<Connection>, tls::NetError>> {
        let tcp = match self.open(&host, port, timeout_of(options.timeout_ms)).await {
            Ok(tcp) => tcp,
            Err(e) => return Ok(Err(e)),
        };
        let (stream, peer_sha256) =
            match handshake(self.http_hooks.tls.clone(), &host, port, tcp, &options).await {
                Ok(done) => done,
                Err(e) => {
                    self.connections -= 1;
                    return Ok(Err(e));
                }
            };
        let conn = Connection {
            host,
            port,
            stream: Some(Stream::Tls(Box::new(stream))),
            peer_sha256,
        };
        Ok(Ok(self.table.push(conn)?))
    }

    async fn connect_plain(
        &mut self,
        host: String,
        port: u16,
        timeout_ms: u32,
    ) -> wasmtime::Result<Result<Resource<Connection>, tls::NetError>> {
        let tcp = match self.open(&host, port, timeout_of(timeout_ms)).await {
            Ok(tcp) => tcp,
            Err(e) => return Ok(Err(e)),
        };
        let conn = Connection {
            host,
            port,
            stream: Some(Stream::Plain(tcp)),
            peer_sha256: None,
        };
        Ok(Ok(self.table.push(conn)?))
    }

    async fn start_tls(
        &mut self,
        this: Resource<Connection>,
        options: tls::TlsOptions,
    ) -> wasmtime::Result<Result<(), tls::NetError>> {
        let conn = self.connection(&this)?;
        let (host, port) = (conn.host.clone(), conn.port);
        let tcp = match conn.stream.take() {
            Some(Stream::Plain(tcp)) => tcp,
            Some(tls @ Stream::Tls(_)) => {
                conn.stream = Some(tls);
                return Ok(Err(tls::NetError::Tls(
                    "the connection already uses TLS".into(),
                )));
            }
            None => return Ok(Err(tls::NetError::Io("the connection is closed".into()))),
        };
        let result = handshake(self.http_hooks.tls.clone(), &host, port, tcp, &options).await;
        let conn = self.connection(&this)?;
        Ok(match result {
            Ok((stream, fingerprint)) => {
                conn.stream = Some(Stream::Tls(Box::new(stream)));
                conn.peer_sha256 = fingerprint;
                Ok(())
            }
            Err(e) => Err(e),
        })
    }

    async fn read(
        &mut self,
        this: Resource<Connection>,
        max: u32,
        timeout_ms: u32,
    ) -> wasmtime::Result<Result<Vec<u8>, tls::NetError>> {
        let conn = self.connection(&this)?;
        let Some(stream) = conn.stream.as_mut() else {
            return Ok(Err(tls::NetError::Io("the connection is closed".into())));
        };
        let max = (max as usize).clamp(1, MAX_IO_CHUNK);
        // Read into spare capacity: nothing to zero first, and only what arrived is moved.
        let mut buf = Vec::with_capacity(max.min(64 * 1024));
        let read = async {
            match stream {
                Stream::Plain(s) => s.read_buf(&mut buf).await,
                Stream::Tls(s) => s.read_buf(&mut buf).await,
            }
        };
        let outcome = if timeout_ms == 0 {
            Ok(read.await)
        } else {
            tokio::time::timeout(Duration::from_millis(u64::from(timeout_ms)), read).await
        };
        let conn = self.connection(&this)?;
        Ok(match outcome {
            Err(_) => Err(tls::NetError::Timeout(format!(
                "reading from {}:{}",
                conn.host, conn.port
            ))),
            Ok(Err(e)) => Err(io_error(&conn.host, conn.port, &e)),
            Ok(Ok(_)) => Ok(buf),
        })
    }

    async fn write(
        &mut self,
        this: Resource<Connection>,
        data: Vec<u8>,
        timeout_ms: u32,
    ) -> wasmtime::Result<Result<(), tls::NetError>> {
        if data.len() > MAX_IO_CHUNK {
            return Ok(Err(tls::NetError::TooLarge(format!(
                "a write may carry at most {MAX_IO_CHUNK} bytes, not {}",
                data.len()
            ))));
        }
        let conn = self.connection(&this)?;
        let Some(stream) = conn.stream.as_mut() else {
            return Ok(Err(tls::NetError::Io("the connection is closed".into())));
        };
        let write = async {
            match stream {
                Stream::Plain(s) => s.write_all(&data).await,
                Stream::Tls(s) => {
                    s.write_all(&data).await?;
                    s.flush().await
                }
            }
        };
        let outcome = tokio::time::timeout(timeout_of(timeout_ms), write).await;
        let conn = self.connection(&this)?;
        Ok(match outcome {
            Err(_) => Err(tls::NetError::Timeout(format!(
                "writing to {}:{}",
                conn.host, conn.port
            ))),
            Ok(Err(e)) => Err(io_error(&conn.host, conn.port, &e)),
            Ok(Ok(())) => Ok(()),
        })
    }

    async fn peer_sha256(
        &mut self,
        this: Resource<Connection>,
    ) -> wasmtime::Result<Option<String>> {
        Ok(self.connection(&this)?.peer_sha256.clone())
    }

    async fn close(&mut self, this: Resource<Connection>) -> wasmtime::Result<()> {
        let conn = self.connection(&this)?;
        if let Some(stream) = conn.stream.take() {
            self.connections = self.connections.saturating_sub(1);
            shutdown(stream).await;
        }
        Ok(())
    }

    async fn drop(&mut self, this: Resource<Connection>) -> wasmtime::Result<()> {
        let conn = self.table.delete(this)?;
        if let Some(stream) = conn.stream {
            self.connections = self.connections.saturating_sub(1);
            shutdown(stream).await;
        }
        Ok(())
    }
}

async fn shutdown(stream: Stream) {
    match stream {
        // Closing the socket sends the FIN; nothing else is owed to the peer.
        Stream::Plain(s) => drop(s),
        // TLS says goodbye with close_notify first. Best effort: a peer that is gone
        // already needs no goodbye.
        Stream::Tls(mut s) => {
            let _ = tokio::time::timeout(Duration::from_secs(1), s.shutdown()).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_call_logs_a_bounded_number_of_lines_and_counts_the_rest() {
        let outcome = CallOutcome::default();
        let admitted = (0..250).filter(|_| outcome.admit_log_line()).count();
        assert_eq!(admitted, MAX_LOG_LINES_PER_CALL as usize);
        assert_eq!(outcome.log_dropped(), 150);
        // The next call starts afresh.
        let next = CallOutcome::default();
        assert!(next.admit_log_line());
        assert_eq!(next.log_dropped(), 0);
    }
}
