//! The plugin host: every integration with the outside world is a WebAssembly component
//! loaded from the plugins folder.
//!
//! - [`PluginHost`] owns the wasmtime engine, the linker and the registry of loaded
//!   plugins, one slot per `*.wasm` file. Calls go through the kind's handle
//!   ([`PluginHost::transport`], ...), each on a fresh `Store` made from a cached
//!   `InstancePre`, under the plugin's memory cap, deadline and network allow-list.
//! - `loader` compiles (with an on-disk cache keyed by the file's sha256 and the
//!   engine's compatibility hash) and validates a file: contract versions, `describe()`.
//! - `watcher` reloads the folder on change: debounced, one task loads and unloads.
//! - `host`, `http`, `tls_client` and `net` are the host side of `yardmaster:host`,
//!   wasi:http and the allow-list; `version` says which contract versions are spoken.
//! - `site_allow` is the operator's `[sites] allow`: every connection a transport makes
//!   for a site is checked against it on the address actually connected to.
//! - `kinds` holds the typed call wrappers of the four plugin kinds.

mod bindings;
mod bundled;
pub(crate) mod host;
mod http;
mod kinds;
mod loader;
pub mod net;
mod site_allow;
pub(crate) mod ssh;
mod tls_client;
mod version;
mod watcher;

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;
use tokio::sync::Semaphore;
use wasmtime::component::Linker;
use wasmtime::{Engine, Store};

use crate::config::{Config, Limits, PluginSettings};
use host::{CallOutcome, Caller, HostState, MemoryLimiter};
use net::{Grant, Policy, Reach};

pub use bundled::{bundled_names, install_bundled};
pub use kinds::{
    Armed, Describe, Failure, Generator, Notifier, ScriptSource, Transport, generator, notifier,
    script_source, transport,
};
pub use loader::{Change, call_cost};
pub use site_allow::SiteAllow;
pub use ssh::Algorithms as SshAlgorithms;
pub(crate) use ssh::SiteSsh;
pub(crate) use tls_client::load_trusted;
pub use watcher::watch;

/// The four kinds of plugin.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PluginKind {
    Transport,
    Notifier,
    ScriptSource,
    Generator,
}

impl fmt::Display for PluginKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PluginKind::Transport => "transport",
            PluginKind::Notifier => "notifier",
            PluginKind::ScriptSource => "script-source",
            PluginKind::Generator => "generator",
        })
    }
}

/// A configuration key a plugin reads.
#[derive(Debug, Clone, Serialize)]
pub struct ConfigKey {
    pub name: String,
    pub description: String,
    pub required: bool,
    pub secret: bool,
}

/// What a plugin says about itself in `describe()`.
#[derive(Debug, Clone, Serialize)]
pub struct PluginInfo {
    pub name: String,
    pub version: semver::Version,
    pub kind: PluginKind,
    pub description: String,
    pub config_keys: Vec<ConfigKey>,
    pub endpoints: Vec<String>,
}

/// Why loading a plugin file failed.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{file}: {reason}")]
pub struct LoadError {
    pub file: String,
    pub reason: String,
}

/// Why a call into a plugin failed, as opposed to the plugin answering with an error of
/// its own (see [`Failure`]).
#[derive(Debug, Clone, thiserror::Error)]
pub enum CallError {
    #[error("no plugin named `{0}` is loaded")]
    NotFound(String),
    #[error("plugin `{name}` is a {actual} plugin, not a {expected} plugin")]
    WrongKind {
        name: String,
        expected: PluginKind,
        actual: PluginKind,
    },
    #[error("plugin {plugin} did not finish {operation} within its time limit of {}", humantime(*.limit))]
    Timeout {
        plugin: String,
        operation: String,
        limit: Duration,
    },
    #[error("plugin {plugin} ran out of memory in {operation}: it may use at most {} MiB", .limit_bytes / (1024 * 1024))]
    OutOfMemory {
        plugin: String,
        operation: String,
        limit_bytes: u64,
    },
    #[error("plugin {plugin} crashed (trap) in {operation}: {message}")]
    Trap {
        plugin: String,
        operation: String,
        message: String,
    },
    #[error("plugin {plugin} failed in {operation}: {message}")]
    Host {
        plugin: String,
        operation: String,
        message: String,
    },
    #[error("the plugin host is shutting down")]
    ShuttingDown,
}

fn humantime(d: Duration) -> String {
    if d.subsec_millis() == 0 {
        format!("{}s", d.as_secs())
    } else {
        format!("{}ms", d.as_millis())
    }
}

/// The compiled, validated plugin that calls run on. Calls hold an `Arc` to it, so a
/// reload never pulls it from under a call in flight.
pub struct LoadedPlugin {
    pub info: PluginInfo,
    pub wit_version: semver::Version,
    pub sha256: String,
    pub file: PathBuf,
    pub loaded_at: DateTime<Utc>,
    pub from_cache: bool,
    /// The interfaces the component imports, e.g. `yardmaster:host/log@1.0.0`.
    pub imports: Vec<String>,
    /// The ports a transport uses when a site names none (transport contract 1.1).
    pub default_ports: DefaultPorts,
    /// The dead-man rollback of a transport built against contract 1.2 that says it can
    /// arm one.
    guard: Option<kinds::GuardExports>,
    caller: Arc<Caller>,
    pre: kinds::Pre,
    limits: Limits,
    grants: Vec<Grant>,
    config: Arc<BTreeMap<String, String>>,
}

/// A transport's default ports, from its `ports` export; none for other kinds and for
/// transports built against contract 1.0, which has no way to say.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct DefaultPorts {
    #[serde(rename = "default_port")]
    pub plain: Option<u16>,
    #[serde(rename = "default_tls_port")]
    pub tls: Option<u16>,
}

impl DefaultPorts {
    pub fn get(&self, tls: bool) -> Option<u16> {
        if tls { self.tls } else { self.plain }
    }
}

impl fmt::Debug for LoadedPlugin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LoadedPlugin")
            .field("name", &self.info.name)
            .field("version", &self.info.version)
            .field("file", &self.file)
            .finish_non_exhaustive()
    }
}

impl LoadedPlugin {
    /// `name@version`, as errors and logs name it.
    pub fn id(&self) -> String {
        format!("{}@{}", self.info.name, self.info.version)
    }

    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// Whether this transport can arm a dead-man rollback: built against transport
    /// contract 1.2 or later, and its `guard.supported()` said so when it loaded.
    pub fn supports_rollback(&self) -> bool {
        self.guard.is_some()
    }

    /// The allow-list the operator granted, as written back in canonical form.
    pub fn allow_list(&self) -> Vec<String> {
        self.grants.iter().map(ToString::to_string).collect()
    }
}

/// One entry of `GET /plugins`: one plugin file and what became of it.
#[derive(Debug, Clone, Serialize)]
pub struct PluginStatus {
    pub name: Option<String>,
    pub kind: Option<PluginKind>,
    pub version: Option<String>,
    pub wit_version: Option<String>,
    pub sha256: Option<String>,
    pub file: String,
    pub status: &'static str,
    pub error: Option<String>,
    pub loaded_at: Option<DateTime<Utc>>,
    pub description: Option<String>,
    pub endpoints: Vec<String>,
    pub allow: Vec<String>,
    #[serde(flatten)]
    pub default_ports: DefaultPorts,
}

/// What is known of one file in the plugins folder.
#[derive(Default)]
struct Slot {
    active: Option<Arc<LoadedPlugin>>,
    /// The last failure for this file, if its newest content did not load.
    error: Option<String>,
    /// (length, modified time, sha256) of the content last looked at, so an unchanged
    /// file is neither rehashed nor retried.
    seen: Option<loader::Fingerprint>,
}

/// Options for building a [`PluginHost`].
#[derive(Debug, Clone)]
pub struct HostOptions {
    pub plugins_dir: PathBuf,
    /// Where compiled components are cached; none disables the cache.
    pub cache_dir: Option<PathBuf>,
    pub defaults: Limits,
    pub plugins: BTreeMap<String, PluginSettings>,
    pub max_concurrent_calls: u32,
    /// The part of `max_concurrent_calls` the work of one organization may hold at once
    /// (more than 0, at most 1); calls made outside any organization's work are bound
    /// only by the whole.
    pub organization_share: f64,
    /// The largest memory cap any plugin may get; sizes the instance pool.
    pub max_memory_bytes: u64,
    /// Certificates trusted beside the public roots when the host verifies a TLS peer
    /// for a plugin (`[tls] ca_file`).
    pub trusted_certificates: Vec<rustls::pki_types::CertificateDer<'static>>,
    /// Where a transport may connect for a site (`[sites] allow`).
    pub sites_allow: SiteAllow,
    /// The SSH algorithms the host offers (`[ssh] legacy_algorithms`).
    pub ssh_algorithms: ssh::Algorithms,
}

impl HostOptions {
    pub fn from_config(config: &Config) -> HostOptions {
        HostOptions {
            plugins_dir: config.plugins_dir.clone(),
            cache_dir: Some(config.data_dir.join("plugin-cache")),
            defaults: config.plugin_defaults,
            plugins: config.plugins.clone(),
            max_concurrent_calls: config.max_concurrent_plugin_calls,
            organization_share: config.organization_plugin_call_share,
            max_memory_bytes: config.max_plugin_memory(),
            trusted_certificates: config.trusted_certificates.clone(),
            sites_allow: config.sites_allow.clone(),
            ssh_algorithms: ssh::Algorithms {
                legacy: config.ssh_legacy_algorithms,
            },
        }
    }

    fn settings(&self, name: &str) -> PluginSettings {
        let mut settings = self.plugins.get(name).cloned().unwrap_or(PluginSettings {
            limits: self.defaults,
            ..PluginSettings::default()
        });
        // A first-party plugin's fixed public endpoints, unless the operator lists its own.
        if settings.allow.is_empty()
            && let Some((_, allow)) = FIRST_PARTY_ALLOW.iter().find(|(n, _)| *n == name)
        {
            settings.allow = allow.iter().map(|a| (*a).to_owned()).collect();
        }
        settings
    }
}

/// What the bundled plugins that reach fixed public services are granted when the
/// operator's `[plugins.<name>] allow` says nothing: a fresh install can fetch community
/// scripts from github.com. An `allow` of the operator's own replaces this list.
const FIRST_PARTY_ALLOW: &[(&str, &[&str])] = &[
    (
        "github",
        &["api.github.com:443", "raw.githubusercontent.com:443"],
    ),
    ("openai", &["api.openai.com:443"]),
];

/// The plugin host. Cheap to clone; all clones share one registry.
#[derive(Clone)]
pub struct PluginHost {
    inner: Arc<Inner>,
}

impl fmt::Debug for PluginHost {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PluginHost")
            .field("plugins_dir", &self.inner.options.plugins_dir)
            .finish_non_exhaustive()
    }
}

struct Inner {
    engine: Engine,
    linker: Linker<HostState>,
    tls: Arc<tls_client::TlsClients>,
    options: HostOptions,
    slots: RwLock<BTreeMap<String, Slot>>,
    permits: Arc<Semaphore>,
    organizations: OrganizationShares,
    reconcile: tokio::sync::Mutex<()>,
    _ticker: Ticker,
}

/// Advances the engine's epoch, which makes running guests yield to tokio regularly so
/// deadlines and other calls are served even while a guest computes. A guest yields at
/// most once every `YIELD_AFTER_TICKS` ticks (20 ms): a spinning guest gives its worker
/// up at least that often, and a call that is over within that time (almost every
/// call) is never interrupted.
struct Ticker {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

const EPOCH_TICK: Duration = Duration::from_millis(5);
const YIELD_AFTER_TICKS: u64 = 4;

impl Ticker {
    fn start(engine: Engine) -> std::io::Result<Ticker> {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::Builder::new()
            .name("plugin-epoch".into())
            .spawn(move || {
                while !flag.load(Ordering::Relaxed) {
                    std::thread::sleep(EPOCH_TICK);
                    engine.increment_epoch();
                }
            })?;
        Ok(Ticker {
            stop,
            thread: Some(thread),
        })
    }
}

impl Drop for Ticker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl PluginHost {
    /// Builds the engine and linker. Plugins are loaded by [`PluginHost::reconcile`].
    pub fn new(options: HostOptions) -> Result<PluginHost, String> {
        let engine = loader::engine(&options)?;
        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker)
            .map_err(|e| format!("linking wasi: {e}"))?;
        wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker)
            .map_err(|e| format!("linking wasi:http: {e}"))?;
        bindings::host::Imports::add_to_linker::<_, wasmtime::component::HasSelf<HostState>>(
            &mut linker,
            |state| state,
        )
        .map_err(|e| format!("linking yardmaster:host: {e}"))?;
        let ticker = Ticker::start(engine.clone()).map_err(|e| format!("epoch thread: {e}"))?;
        let tls = Arc::new(tls_client::TlsClients::new(&options.trusted_certificates)?);
        let slots = options.max_concurrent_calls.max(1) as usize;
        let permits = Arc::new(Semaphore::new(slots));
        let organizations = OrganizationShares::new(slots, options.organization_share);
        Ok(PluginHost {
            inner: Arc::new(Inner {
                engine,
                linker,
                tls,
                options,
                slots: RwLock::default(),
                permits,
                organizations,
                reconcile: tokio::sync::Mutex::new(()),
                _ticker: ticker,
            }),
        })
    }

    pub fn plugins_dir(&self) -> &Path {
        &self.inner.options.plugins_dir
    }

    /// Which addresses sites may have (`[sites] allow`).
    pub fn sites_allow(&self) -> &SiteAllow {
        &self.inner.options.sites_allow
    }

    /// Every plugin file and its state, ordered by file name.
    pub fn list(&self) -> Vec<PluginStatus> {
        let slots = match self.inner.slots.read() {
            Ok(slots) => slots,
            Err(poisoned) => poisoned.into_inner(),
        };
        slots
            .iter()
            .map(|(file, slot)| {
                let active = slot.active.as_deref();
                PluginStatus {
                    name: active.map(|p| p.info.name.clone()),
                    kind: active.map(|p| p.info.kind),
                    version: active.map(|p| p.info.version.to_string()),
                    wit_version: active.map(|p| p.wit_version.to_string()),
                    sha256: active.map(|p| p.sha256.clone()),
                    file: file.clone(),
                    status: if active.is_some() { "active" } else { "failed" },
                    error: slot.error.clone(),
                    loaded_at: active.map(|p| p.loaded_at),
                    description: active.map(|p| p.info.description.clone()),
                    endpoints: active.map(|p| p.info.endpoints.clone()).unwrap_or_default(),
                    allow: active
                        .map(|p| p.grants.iter().map(ToString::to_string).collect())
                        .unwrap_or_default(),
                    default_ports: active.map(|p| p.default_ports).unwrap_or_default(),
                }
            })
            .collect()
    }

    /// The active plugin named `name`.
    pub fn get(&self, name: &str) -> Option<Arc<LoadedPlugin>> {
        let slots = match self.inner.slots.read() {
            Ok(slots) => slots,
            Err(poisoned) => poisoned.into_inner(),
        };
        slots
            .values()
            .filter_map(|s| s.active.as_ref())
            .find(|p| p.info.name == name)
            .cloned()
    }

    fn get_kind(&self, name: &str, kind: PluginKind) -> Result<Arc<LoadedPlugin>, CallError> {
        let plugin = self
            .get(name)
            .ok_or_else(|| CallError::NotFound(name.to_string()))?;
        if plugin.info.kind != kind {
            return Err(CallError::WrongKind {
                name: name.to_string(),
                expected: kind,
                actual: plugin.info.kind,
            });
        }
        Ok(plugin)
    }

    /// Makes one call's `Store`: what the call may reach (the plugin's allow-list plus
    /// the call's own grants, or those alone, and, for a call that serves the site at
    /// `site`, `[sites] allow`), its memory cap and an epoch deadline that yields to
    /// tokio. WASI state is made only if the guest calls WASI.
    fn store(
        &self,
        plugin: &LoadedPlugin,
        reach: Reach,
        site: Option<String>,
        ssh_site: Option<Arc<ssh::SiteSsh>>,
    ) -> CallContext {
        let grants = match reach {
            Reach::AllowListAnd(extra) => plugin.grants.iter().cloned().chain(extra).collect(),
            Reach::Only(grants) => grants,
        };
        let mut policy = Policy::new(grants);
        if let Some(address) = site {
            policy = policy.for_site(self.inner.options.sites_allow.clone(), address);
        }
        let outcome = Arc::new(CallOutcome::default());
        let state = HostState {
            caller: plugin.caller.clone(),
            config: plugin.config.clone(),
            policy: policy.clone(),
            limiter: MemoryLimiter {
                cap: usize::try_from(plugin.limits.memory_bytes).unwrap_or(usize::MAX),
                outcome: outcome.clone(),
            },
            wasi: None,
            http: wasmtime_wasi_http::WasiHttpCtx::new(),
            http_hooks: http::Hooks {
                caller: plugin.caller.clone(),
                policy: policy.clone(),
                tls: self.inner.tls.clone(),
            },
            table: wasmtime::component::ResourceTable::new(),
            connections: 0,
            ssh_algorithms: self.inner.options.ssh_algorithms,
            ssh_site,
        };
        let mut store = Store::new(&self.inner.engine, state);
        store.limiter(|state| &mut state.limiter);
        store.set_epoch_deadline(YIELD_AFTER_TICKS);
        store.epoch_deadline_async_yield_and_update(YIELD_AFTER_TICKS);
        CallContext {
            store,
            outcome,
            policy,
        }
    }

    /// Runs one call of `plugin` under its limits and turns wasmtime's failures into
    /// [`CallError`]s that say what happened.
    async fn invoke<T, Fut>(
        &self,
        plugin: &LoadedPlugin,
        operation: &str,
        reach: impl Into<Reach>,
        call: impl FnOnce(Store<HostState>) -> Fut,
    ) -> Result<(T, Vec<String>), CallError>
    where
        Fut: Future<Output = wasmtime::Result<T>>,
    {
        self.invoke_for(plugin, operation, reach.into(), None, None, call)
            .await
    }

    /// [`PluginHost::invoke`] for a call that serves the site at `site`, when there is
    /// one: its connections are held to `[sites] allow` as well.
    async fn invoke_for<T, Fut>(
        &self,
        plugin: &LoadedPlugin,
        operation: &str,
        reach: Reach,
        site: Option<String>,
        ssh_site: Option<Arc<ssh::SiteSsh>>,
        call: impl FnOnce(Store<HostState>) -> Fut,
    ) -> Result<(T, Vec<String>), CallError>
    where
        Fut: Future<Output = wasmtime::Result<T>>,
    {
        // The organization's share first, so calls waiting for it hold none of the whole.
        let _share = match ORGANIZATION.try_with(Arc::clone) {
            Ok(organization) => Some(
                self.inner
                    .organizations
                    .of(&organization)
                    .acquire_owned()
                    .await
                    .map_err(|_| CallError::ShuttingDown)?,
            ),
            Err(_) => None,
        };
        let _permit = self
            .inner
            .permits
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| CallError::ShuttingDown)?;
        let CallContext {
            store,
            outcome: left,
            policy,
        } = self.store(plugin, reach, site, ssh_site);
        let limit = plugin.limits.timeout;
        let outcome = tokio::time::timeout(limit, call(store)).await;
        let dropped = left.log_dropped();
        if dropped > 0 {
            let (name, version) = (&plugin.caller.name, &plugin.caller.version);
            tracing::warn!(
                target: "plugin",
                plugin = name,
                version,
                "{dropped} log lines dropped: one {operation} call may log {} lines",
                host::MAX_LOG_LINES_PER_CALL
            );
        }
        let denials = policy.denials();
        match outcome {
            Ok(Ok(value)) => Ok((value, denials)),
            Err(_) => Err(CallError::Timeout {
                plugin: plugin.id(),
                operation: operation.to_string(),
                limit,
            }),
            Ok(Err(error)) => {
                if left.memory_cap_hit.load(Ordering::Relaxed) {
                    return Err(CallError::OutOfMemory {
                        plugin: plugin.id(),
                        operation: operation.to_string(),
                        limit_bytes: plugin.limits.memory_bytes,
                    });
                }
                let mut message = error_text(&error);
                let stderr = left.stderr.get().map(|pipe| pipe.contents());
                if let Some(said) = stderr.as_deref().and_then(last_words) {
                    message = format!("{said} ({message})");
                }
                if !denials.is_empty() {
                    message.push_str(&format!(
                        "; refused by the allow-list: {}",
                        denials.join(", ")
                    ));
                }
                if error.downcast_ref::<wasmtime::Trap>().is_some() {
                    Err(CallError::Trap {
                        plugin: plugin.id(),
                        operation: operation.to_string(),
                        message,
                    })
                } else {
                    Err(CallError::Host {
                        plugin: plugin.id(),
                        operation: operation.to_string(),
                        message,
                    })
                }
            }
        }
    }
}

tokio::task_local! {
    /// The organization whose work the current task does, if it does one's: its plugin
    /// calls count against that organization's share of the calls at once.
    static ORGANIZATION: Arc<str>;
}

/// Runs `work` as `organization`'s: every plugin call in it waits for a place in that
/// organization's share of the concurrent calls, then in the whole. One organization's
/// calls to routers that never answer can then fill its share, never everyone's.
pub async fn on_behalf_of<F: Future>(organization: &str, work: F) -> F::Output {
    ORGANIZATION.scope(Arc::from(organization), work).await
}

/// Each organization's own semaphore, made on its first use and forgotten when none of
/// its work holds or awaits a place. Used for plugin calls here, and by the runner for
/// its job slots.
pub(crate) struct OrganizationShares {
    per_organization: usize,
    shares: std::sync::Mutex<std::collections::HashMap<Arc<str>, Arc<Semaphore>>>,
}

impl OrganizationShares {
    /// Shares of `slots`: each organization gets `share` of them, rounded down, at least
    /// one.
    pub(crate) fn new(slots: usize, share: f64) -> Self {
        let share = if share.is_finite() {
            share.clamp(0.0, 1.0)
        } else {
            1.0
        };
        // Rounded down, but at least one: a share never shuts an organization out.
        let per_organization = ((slots as f64 * share).floor() as usize).clamp(1, slots);
        OrganizationShares {
            per_organization,
            shares: Default::default(),
        }
    }

    /// The semaphore of `organization`'s share.
    pub(crate) fn of(&self, organization: &Arc<str>) -> Arc<Semaphore> {
        let mut shares = match self.shares.lock() {
            Ok(shares) => shares,
            Err(poisoned) => poisoned.into_inner(),
        };
        if let Some(share) = shares.get(organization) {
            return share.clone();
        }
        // Every permit or waiter holds a clone: one held only here is unused.
        shares.retain(|_, share| Arc::strong_count(share) > 1);
        let share = Arc::new(Semaphore::new(self.per_organization));
        shares.insert(organization.clone(), share.clone());
        share
    }
}

struct CallContext {
    store: Store<HostState>,
    outcome: Arc<CallOutcome>,
    policy: Policy,
}

/// The error and its causes on one line, without wasmtime's backtrace.
fn error_text(error: &wasmtime::Error) -> String {
    let mut parts: Vec<String> = Vec::new();
    for cause in error.chain() {
        let text = cause.to_string();
        let first = text.lines().next().unwrap_or_default().trim().to_string();
        if !first.is_empty() && !parts.contains(&first) {
            parts.push(first);
        }
    }
    parts.join(": ")
}

/// The last meaningful line a guest wrote to stderr, such as Rust's panic message.
fn last_words(stderr: &[u8]) -> Option<String> {
    let text = String::from_utf8_lossy(stderr);
    let lines: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    // Rust prints "thread '<unnamed>' panicked at src/lib.rs:3:5:" then the message.
    if let Some(i) = lines.iter().rposition(|l| l.contains("panicked at")) {
        let message = lines.get(i + 1).copied().unwrap_or_default();
        let place = lines[i]
            .split("panicked at ")
            .nth(1)
            .unwrap_or_default()
            .trim_end_matches(':');
        return Some(format!("panicked at {place}: {message}"));
    }
    lines.last().map(|l| l.chars().take(500).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn panic_messages_are_quoted() {
        let stderr = b"\nthread '<unnamed>' panicked at src/lib.rs:12:9:\nboom\nnote: run with `RUST_BACKTRACE=1`\n";
        assert_eq!(
            last_words(stderr).as_deref(),
            Some("panicked at src/lib.rs:12:9: boom")
        );
        assert_eq!(last_words(b"").as_deref(), None);
        assert_eq!(last_words(b"oops\n").as_deref(), Some("oops"));
    }

    #[tokio::test]
    async fn an_organization_holds_at_most_its_share_of_the_calls() {
        let shares = OrganizationShares::new(4, 0.5);
        let a: Arc<str> = Arc::from("a");
        let b: Arc<str> = Arc::from("b");
        let held: Vec<_> = (0..2)
            .map(|_| shares.of(&a).try_acquire_owned().expect("within the share"))
            .collect();
        assert!(
            shares.of(&a).try_acquire_owned().is_err(),
            "a third call of `a` waits"
        );
        let other = shares
            .of(&b)
            .try_acquire_owned()
            .expect("`b` has its own share");
        drop(held);
        assert!(shares.of(&a).try_acquire_owned().is_ok());
        drop(other);
        // Unused shares are forgotten when a new organization comes.
        shares.of(&Arc::from("c"));
        let kept = shares.shares.lock().expect("lock").len();
        assert_eq!(kept, 1, "only `c`, just made");
        // A share never rounds down to nothing.
        assert_eq!(OrganizationShares::new(1, 0.1).per_organization, 1);
        assert_eq!(OrganizationShares::new(256, 0.5).per_organization, 128);
    }

    #[test]
    fn durations_read_well() {
        assert_eq!(humantime(Duration::from_secs(30)), "30s");
        assert_eq!(humantime(Duration::from_millis(1500)), "1500ms");
    }
}
