//! Typed calls into the four plugin kinds.
//!
//! Each kind has a handle ([`Transport`], [`Notifier`], [`ScriptSource`],
//! [`Generator`]) got from the [`PluginHost`]. A call answers `Ok` with the plugin's
//! value, or a [`Failure`]: the plugin's own error (a router refused, a mail server
//! is down) or a [`CallError`] from the host (trap, timeout, memory).

use std::fmt;
use std::sync::Arc;

use wasmtime::component::{Component, ComponentExportIndex, InstancePre};

use super::bindings;
use super::host::HostState;
use super::net::{Grant, Reach};
use super::{CallError, ConfigKey, DefaultPorts, LoadedPlugin, PluginHost, PluginInfo, PluginKind};

/// The types of the transport contract.
pub mod transport {
    pub use super::bindings::transport::exports::yardmaster::transport::plugin::{
        BackupResult, CommandReply, ProbeResult, Target, TlsSettings, TransportError, Trap,
    };
}

/// The types of the notifier contract.
pub mod notifier {
    pub use super::bindings::notifier::exports::yardmaster::notifier::plugin::{
        Channel, Event, NotifyError, Receipt, Recipient,
    };
}

/// The types of the script-source contract.
pub mod script_source {
    pub use super::bindings::script_source::exports::yardmaster::script_source::plugin::{
        Fetched, ScriptMeta, SourceError,
    };
    pub use super::bindings::script_source_catalog::exports::yardmaster::script_source::catalog::{
        Entry, Owner, Repository,
    };
}

/// The types of the generator contract.
pub mod generator {
    pub use super::bindings::generator::exports::yardmaster::generator::plugin::{
        GenerateError, Generated, Request,
    };
    pub use super::bindings::generator_chat::exports::yardmaster::generator::chat::{
        Reply, Turn, Usage,
    };
}

/// A cached, linked component, ready to instantiate for the kind it exports.
#[derive(Clone)]
pub(crate) enum Pre {
    Transport(bindings::transport::TransportPre<HostState>),
    Notifier(bindings::notifier::NotifierPre<HostState>),
    ScriptSource(SourcePre),
    Generator(GenPre),
}

/// A generator: the 1.0 bindings every 1.x component answers, and the `chat` bindings
/// when the component is built against 1.1 or later.
#[derive(Clone)]
pub(crate) struct GenPre {
    plugin: bindings::generator::GeneratorPre<HostState>,
    chat: Option<bindings::generator_chat::GeneratorPre<HostState>>,
}

impl GenPre {
    async fn instantiate_async(
        &self,
        store: impl wasmtime::AsContextMut<Data = HostState>,
    ) -> wasmtime::Result<bindings::generator::Generator> {
        self.plugin.instantiate_async(store).await
    }

    fn instance_pre(&self) -> &InstancePre<HostState> {
        self.plugin.instance_pre()
    }
}

/// A script source: the 1.0 bindings every 1.x component answers, and the `catalog`
/// bindings when the component is built against 1.1 or later.
#[derive(Clone)]
pub(crate) struct SourcePre {
    plugin: bindings::script_source::ScriptSourcePre<HostState>,
    catalog: Option<bindings::script_source_catalog::ScriptSourcePre<HostState>>,
}

impl SourcePre {
    async fn instantiate_async(
        &self,
        store: impl wasmtime::AsContextMut<Data = HostState>,
    ) -> wasmtime::Result<bindings::script_source::ScriptSource> {
        self.plugin.instantiate_async(store).await
    }

    fn instance_pre(&self) -> &InstancePre<HostState> {
        self.plugin.instance_pre()
    }
}

impl Pre {
    pub(crate) fn new(kind: PluginKind, pre: InstancePre<HostState>) -> wasmtime::Result<Pre> {
        Ok(match kind {
            PluginKind::Transport => Pre::Transport(bindings::transport::TransportPre::new(pre)?),
            PluginKind::Notifier => Pre::Notifier(bindings::notifier::NotifierPre::new(pre)?),
            PluginKind::ScriptSource => Pre::ScriptSource(SourcePre {
                catalog: bindings::script_source_catalog::ScriptSourcePre::new(pre.clone()).ok(),
                plugin: bindings::script_source::ScriptSourcePre::new(pre)?,
            }),
            PluginKind::Generator => Pre::Generator(GenPre {
                chat: bindings::generator_chat::GeneratorPre::new(pre.clone()).ok(),
                plugin: bindings::generator::GeneratorPre::new(pre)?,
            }),
        })
    }
}

/// The interface transport contract 1.1 added for default ports; a later 1.x matches too.
const PORTS_INTERFACE: &str = "yardmaster:transport/ports@1.1.0";

/// `ports.default-port` of a transport built against contract 1.1 or later.
pub(crate) fn ports_export(component: &Component) -> Option<ComponentExportIndex> {
    let interface = component.get_export_index(None, PORTS_INTERFACE)?;
    component.get_export_index(Some(&interface), "default-port")
}

/// The interface transport contract 1.2 added for the dead-man rollback; a later 1.x
/// matches too.
const GUARD_INTERFACE: &str = "yardmaster:transport/guard@1.2.0";

/// The functions of `guard` in a transport built against contract 1.2 or later.
#[derive(Debug, Clone, Copy)]
pub(crate) struct GuardExports {
    supported: ComponentExportIndex,
    arm: ComponentExportIndex,
    disarm: ComponentExportIndex,
}

pub(crate) fn guard_exports(component: &Component) -> Option<GuardExports> {
    let interface = component.get_export_index(None, GUARD_INTERFACE)?;
    let get = |name: &str| component.get_export_index(Some(&interface), name);
    Some(GuardExports {
        supported: get("supported")?,
        arm: get("arm")?,
        disarm: get("disarm")?,
    })
}

/// What a transport armed on a device for a dead-man rollback (`guard.armed`, contract
/// 1.2), handed back to disarm it.
#[derive(
    Debug,
    Clone,
    PartialEq,
    Eq,
    serde::Serialize,
    serde::Deserialize,
    wasmtime::component::ComponentType,
    wasmtime::component::Lift,
    wasmtime::component::Lower,
)]
#[component(record)]
pub struct Armed {
    #[component(name = "backup-file")]
    pub backup_file: String,
    #[component(name = "scheduler-entry")]
    pub scheduler_entry: String,
    #[component(name = "fires-at")]
    pub fires_at: String,
}

/// What went wrong in a call: the plugin said no, or the host stopped it.
#[derive(Debug, Clone)]
pub enum Failure<E> {
    /// The plugin answered with an error of its kind's contract.
    Plugin {
        error: E,
        /// Endpoints the allow-list refused during the call, which often explain it.
        denied: Vec<String>,
    },
    /// The call did not complete: trap, timeout, memory, no such plugin.
    Call(CallError),
}

impl<E> From<CallError> for Failure<E> {
    fn from(error: CallError) -> Self {
        Failure::Call(error)
    }
}

impl<E: Describe> fmt::Display for Failure<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Failure::Call(error) => write!(f, "{error}"),
            Failure::Plugin { error, denied } => {
                write!(f, "{}", error.describe())?;
                if !denied.is_empty() {
                    write!(f, " (refused by the allow-list: {})", denied.join(", "))?;
                }
                Ok(())
            }
        }
    }
}

impl<E: Describe + fmt::Debug> std::error::Error for Failure<E> {}

/// A one-line description of a plugin's own error, and a stable code for it.
pub trait Describe {
    fn code(&self) -> &'static str;
    fn message(&self) -> &str;
    fn describe(&self) -> String {
        format!("{}: {}", self.code(), self.message())
    }
}

impl Describe for transport::TransportError {
    fn code(&self) -> &'static str {
        use transport::TransportError::*;
        match self {
            Denied(_) => "denied",
            Refused(_) => "refused",
            Timeout(_) => "timeout",
            Reset(_) => "reset",
            Auth(_) => "auth",
            Protocol(_) => "protocol",
            Tls(_) => "tls",
            Trap(_) => "trap",
            Fatal(_) => "fatal",
            Script(_) => "script",
            Unsupported(_) => "unsupported",
            Other(_) => "other",
        }
    }

    fn message(&self) -> &str {
        use transport::TransportError::*;
        match self {
            Denied(m) | Refused(m) | Timeout(m) | Reset(m) | Auth(m) | Protocol(m) | Tls(m)
            | Fatal(m) | Script(m) | Unsupported(m) | Other(m) => m,
            Trap(trap) => &trap.message,
        }
    }
}

impl Describe for notifier::NotifyError {
    fn code(&self) -> &'static str {
        use notifier::NotifyError::*;
        match self {
            Rejected(_) => "rejected",
            Unavailable(_) => "unavailable",
            Denied(_) => "denied",
            Invalid(_) => "invalid",
        }
    }

    fn message(&self) -> &str {
        use notifier::NotifyError::*;
        match self {
            Rejected(m) | Unavailable(m) | Denied(m) | Invalid(m) => m,
        }
    }
}

impl Describe for script_source::SourceError {
    fn code(&self) -> &'static str {
        use script_source::SourceError::*;
        match self {
            InvalidUrl(_) => "invalid-url",
            NotFound(_) => "not-found",
            Unavailable(_) => "unavailable",
            Denied(_) => "denied",
            TooLarge(_) => "too-large",
            Other(_) => "other",
        }
    }

    fn message(&self) -> &str {
        use script_source::SourceError::*;
        match self {
            InvalidUrl(m) | NotFound(m) | Unavailable(m) | Denied(m) | TooLarge(m) | Other(m) => m,
        }
    }
}

impl Describe for generator::GenerateError {
    fn code(&self) -> &'static str {
        use generator::GenerateError::*;
        match self {
            Refused(_) => "refused",
            Unavailable(_) => "unavailable",
            Denied(_) => "denied",
            Invalid(_) => "invalid",
            Other(_) => "other",
        }
    }

    fn message(&self) -> &str {
        use generator::GenerateError::*;
        match self {
            Refused(m) | Unavailable(m) | Denied(m) | Invalid(m) | Other(m) => m,
        }
    }
}

fn settle<T, E>(outcome: Result<(Result<T, E>, Vec<String>), CallError>) -> Result<T, Failure<E>> {
    match outcome {
        Ok((Ok(value), _)) => Ok(value),
        Ok((Err(error), denied)) => Err(Failure::Plugin { error, denied }),
        Err(error) => Err(Failure::Call(error)),
    }
}

/// Converts the contract's plugin-info (shared by every kind through the host package).
fn info_from(
    raw: bindings::host::yardmaster::host::types::PluginInfo,
) -> Result<PluginInfo, String> {
    use bindings::host::yardmaster::host::types::PluginKind as Raw;
    let version = semver::Version::parse(&raw.version).map_err(|e| {
        format!(
            "its version `{}` is not a semantic version: {e}",
            raw.version
        )
    })?;
    Ok(PluginInfo {
        name: raw.name,
        version,
        kind: match raw.kind {
            Raw::Transport => PluginKind::Transport,
            Raw::Notifier => PluginKind::Notifier,
            Raw::ScriptSource => PluginKind::ScriptSource,
            Raw::Generator => PluginKind::Generator,
        },
        description: raw.description,
        config_keys: raw
            .config_keys
            .into_iter()
            .map(|k| ConfigKey {
                name: k.name,
                description: k.description,
                required: k.required,
                secret: k.secret,
            })
            .collect(),
        endpoints: raw.endpoints,
    })
}

macro_rules! call {
    // A call that serves a site: its connections are held to `[sites] allow` too.
    (@site $site:expr, $ssh:expr, $host:expr, $plugin:expr, $op:expr, $grants:expr, $variant:ident, $getter:ident, |$inst:ident, $store:ident| $body:expr) => {{
        let Pre::$variant(pre) = &$plugin.pre else {
            return Err(CallError::WrongKind {
                name: $plugin.info.name.clone(),
                expected: PluginKind::$variant,
                actual: $plugin.info.kind,
            }
            .into());
        };
        let pre = pre.clone();
        let outcome = $host
            .invoke_for(&$plugin, $op, Reach::from($grants), $site, $ssh, move |mut store| async move {
                let instance = pre.instantiate_async(&mut store).await?;
                let $inst = instance.$getter();
                let $store = &mut store;
                $body.await
            })
            .await;
        count_call(&$plugin.info.name, $op, &outcome);
        outcome
    }};
    ($host:expr, $plugin:expr, $op:expr, $grants:expr, $variant:ident, $getter:ident, |$inst:ident, $store:ident| $body:expr) => {
        call!(@site None, None, $host, $plugin, $op, $grants, $variant, $getter, |$inst, $store| $body)
    };
}

/// Calls of one plugin operation since the engine started, for `/metrics`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CallCount {
    pub calls: u64,
    /// Calls the plugin answered with an error of its own (a router refused).
    pub plugin_errors: u64,
    /// Calls the host stopped: trap, timeout, memory, shutdown.
    pub host_errors: u64,
}

/// Plugin name -> operation -> counts. One process-wide table, as the metrics it feeds are.
static CALL_COUNTS: std::sync::Mutex<
    std::collections::BTreeMap<String, std::collections::BTreeMap<&'static str, CallCount>>,
> = std::sync::Mutex::new(std::collections::BTreeMap::new());

/// What a plugin answered: an operation's result, or what `describe()` returns.
trait Answer {
    fn is_plugin_error(&self) -> bool;
}

impl<T, E> Answer for Result<T, E> {
    fn is_plugin_error(&self) -> bool {
        self.is_err()
    }
}

impl Answer for bindings::host::yardmaster::host::types::PluginInfo {
    fn is_plugin_error(&self) -> bool {
        false
    }
}

fn count_call<A: Answer>(
    plugin: &str,
    operation: &'static str,
    outcome: &Result<(A, Vec<String>), CallError>,
) {
    // describe() runs while a file loads, under the file's name: not a call anyone made.
    if operation == "describe" {
        return;
    }
    let mut counts = match CALL_COUNTS.lock() {
        Ok(counts) => counts,
        Err(poisoned) => poisoned.into_inner(),
    };
    let per_plugin = match counts.get_mut(plugin) {
        Some(per_plugin) => per_plugin,
        None => counts.entry(plugin.to_owned()).or_default(),
    };
    let count = per_plugin.entry(operation).or_default();
    count.calls += 1;
    match outcome {
        Ok((answer, _)) if answer.is_plugin_error() => count.plugin_errors += 1,
        Ok(_) => {}
        Err(_) => count.host_errors += 1,
    }
}

impl PluginHost {
    /// Calls `describe()` on a plugin of any kind.
    pub(crate) async fn describe(&self, plugin: &LoadedPlugin) -> Result<PluginInfo, String> {
        let (raw, _) = self.describe_raw(plugin).await.map_err(|e| e.to_string())?;
        info_from(raw)
    }

    async fn describe_raw(
        &self,
        plugin: &LoadedPlugin,
    ) -> Result<
        (
            bindings::host::yardmaster::host::types::PluginInfo,
            Vec<String>,
        ),
        CallError,
    > {
        match &plugin.pre {
            Pre::Transport(_) => call!(
                self,
                plugin,
                "describe",
                Vec::new(),
                Transport,
                yardmaster_transport_plugin,
                |i, s| i.call_describe(s)
            ),
            Pre::Notifier(_) => call!(
                self,
                plugin,
                "describe",
                Vec::new(),
                Notifier,
                yardmaster_notifier_plugin,
                |i, s| i.call_describe(s)
            ),
            Pre::ScriptSource(_) => call!(
                self,
                plugin,
                "describe",
                Vec::new(),
                ScriptSource,
                yardmaster_script_source_plugin,
                |i, s| i.call_describe(s)
            ),
            Pre::Generator(_) => call!(
                self,
                plugin,
                "describe",
                Vec::new(),
                Generator,
                yardmaster_generator_plugin,
                |i, s| i.call_describe(s)
            ),
        }
    }

    /// Asks a transport for its default ports, plain and TLS, in one instance.
    pub(crate) async fn default_ports(
        &self,
        plugin: &LoadedPlugin,
        export: ComponentExportIndex,
    ) -> Result<DefaultPorts, CallError> {
        let Pre::Transport(pre) = &plugin.pre else {
            return Ok(DefaultPorts::default());
        };
        let pre = pre.instance_pre().clone();
        let (ports, _) = self
            .invoke(
                plugin,
                "default-port",
                Vec::new(),
                move |mut store| async move {
                    let instance = pre.instantiate_async(&mut store).await?;
                    let func =
                        instance.get_typed_func::<(bool,), (Option<u16>,)>(&mut store, &export)?;
                    let (plain,) = func.call_async(&mut store, (false,)).await?;
                    let (tls,) = func.call_async(&mut store, (true,)).await?;
                    Ok(DefaultPorts { plain, tls })
                },
            )
            .await?;
        Ok(ports)
    }

    /// Asks a transport whether it can arm a dead-man rollback: the guard's functions
    /// when it can, none when it answers no.
    pub(crate) async fn guard(
        &self,
        plugin: &LoadedPlugin,
        exports: GuardExports,
    ) -> Result<Option<GuardExports>, CallError> {
        let Pre::Transport(pre) = &plugin.pre else {
            return Ok(None);
        };
        let pre = pre.instance_pre().clone();
        let (supported, _) = self
            .invoke(
                plugin,
                "supported",
                Vec::new(),
                move |mut store| async move {
                    let instance = pre.instantiate_async(&mut store).await?;
                    let func =
                        instance.get_typed_func::<(), (bool,)>(&mut store, &exports.supported)?;
                    let (supported,) = func.call_async(&mut store, ()).await?;
                    Ok(supported)
                },
            )
            .await?;
        Ok(supported.then_some(exports))
    }

    /// Makes a store and instantiates the plugin without calling into it: the cost every
    /// call pays before the plugin's own code runs. Used by the benchmarks.
    #[doc(hidden)]
    pub async fn instantiate_only(&self, name: &str) -> Result<(), CallError> {
        let plugin = self
            .get(name)
            .ok_or_else(|| CallError::NotFound(name.to_string()))?;
        let pre = match &plugin.pre {
            Pre::Transport(p) => p.instance_pre().clone(),
            Pre::Notifier(p) => p.instance_pre().clone(),
            Pre::ScriptSource(p) => p.instance_pre().clone(),
            Pre::Generator(p) => p.instance_pre().clone(),
        };
        self.invoke(
            &plugin,
            "instantiate",
            Vec::new(),
            move |mut store| async move { pre.instantiate_async(&mut store).await.map(|_| ()) },
        )
        .await
        .map(|_| ())
    }

    /// Each plugin operation called since the engine started, with its counts, ordered by
    /// plugin and operation.
    pub fn call_counts(&self) -> Vec<(String, &'static str, CallCount)> {
        let counts = match CALL_COUNTS.lock() {
            Ok(counts) => counts,
            Err(poisoned) => poisoned.into_inner(),
        };
        counts
            .iter()
            .flat_map(|(plugin, ops)| ops.iter().map(|(op, c)| (plugin.clone(), *op, *c)))
            .collect()
    }

    /// The transport plugin named `name`.
    pub fn transport(&self, name: &str) -> Result<Transport, CallError> {
        Ok(Transport {
            host: self.clone(),
            plugin: self.get_kind(name, PluginKind::Transport)?,
            ssh: None,
        })
    }

    /// The notifier plugin named `name`.
    pub fn notifier(&self, name: &str) -> Result<Notifier, CallError> {
        Ok(Notifier {
            host: self.clone(),
            plugin: self.get_kind(name, PluginKind::Notifier)?,
        })
    }

    /// The script-source plugin named `name`.
    pub fn script_source(&self, name: &str) -> Result<ScriptSource, CallError> {
        Ok(ScriptSource {
            host: self.clone(),
            plugin: self.get_kind(name, PluginKind::ScriptSource)?,
        })
    }

    /// The generator plugin named `name`.
    pub fn generator(&self, name: &str) -> Result<Generator, CallError> {
        Ok(Generator {
            host: self.clone(),
            plugin: self.get_kind(name, PluginKind::Generator)?,
        })
    }
}

/// A transport plugin, pinned to the version that was active when the handle was made.
#[derive(Debug, Clone)]
pub struct Transport {
    host: PluginHost,
    plugin: Arc<LoadedPlugin>,
    /// The site's SSH key and host keys, held by the host for the calls of this handle.
    ssh: Option<Arc<super::ssh::SiteSsh>>,
}

impl Transport {
    /// This transport's calls serve a site whose SSH credentials and host keys the host
    /// holds; a plugin reaches them only through `yardmaster:host/ssh`.
    pub(crate) fn with_ssh(mut self, ssh: Arc<super::ssh::SiteSsh>) -> Transport {
        self.ssh = Some(ssh);
        self
    }

    /// For callers outside the engine's runner (a benchmark, a program embedding the
    /// plugin host): this transport's calls serve site `site_id`, whose SSH server must
    /// show one of `host_keys` (`SHA256:...`), logging in with the target's password.
    pub fn with_pinned_ssh(self, site_id: &str, host_keys: Vec<String>) -> Transport {
        self.with_ssh(Arc::new(super::ssh::SiteSsh {
            site_id: site_id.to_owned(),
            private_key: None,
            host_keys,
            remember: None,
            refused: std::sync::Mutex::new(None),
        }))
    }

    /// Why a session of this handle's calls was refused for its host key, if one was.
    pub(crate) fn ssh_refusal(&self) -> Option<super::ssh::HostKeyRefusal> {
        self.ssh.as_ref().and_then(|s| s.refusal())
    }

    pub fn plugin(&self) -> &LoadedPlugin {
        &self.plugin
    }

    /// A transport may reach the site it is asked to serve, for that call only: its own
    /// port, or the plugin's default port when the site names none. A site without a
    /// port is refused when the plugin declares no default, so nothing broader is granted.
    /// A site whose address `[sites] allow` refuses is refused before the plugin runs
    /// (and every connection of the call is checked again on its resolved address).
    fn site_grant(
        &self,
        target: &transport::Target,
    ) -> Result<Vec<Grant>, Failure<transport::TransportError>> {
        if let Err(message) = self.host.sites_allow().check_address(&target.address) {
            return Err(Failure::Plugin {
                error: transport::TransportError::Denied(format!(
                    "site {}: {message}",
                    target.site_id
                )),
                denied: Vec::new(),
            });
        }
        let port = match target.port {
            0 => self.plugin.default_ports.get(target.tls.is_some()),
            port => Some(port),
        };
        let Some(port) = port else {
            return Err(Failure::Plugin {
                error: transport::TransportError::Unsupported(format!(
                    "site {} names no port and the {} plugin declares no default {}port; give the site a port",
                    target.site_id,
                    self.plugin.info.name,
                    if target.tls.is_some() { "TLS " } else { "" },
                )),
                denied: Vec::new(),
            });
        };
        Ok(vec![Grant::exact(&target.address, port)])
    }

    pub async fn run_command(
        &self,
        target: &transport::Target,
        words: &[String],
    ) -> Result<transport::CommandReply, Failure<transport::TransportError>> {
        let grants = self.site_grant(target)?;
        settle(call!(
            @site Some(target.address.clone()), self.ssh.clone(),
            self.host,
            self.plugin,
            "run-command",
            grants,
            Transport,
            yardmaster_transport_plugin,
            |i, s| i.call_run_command(s, target, words)
        ))
    }

    pub async fn run_script(
        &self,
        target: &transport::Target,
        script: &str,
    ) -> Result<String, Failure<transport::TransportError>> {
        let grants = self.site_grant(target)?;
        settle(call!(
            @site Some(target.address.clone()), self.ssh.clone(),
            self.host,
            self.plugin,
            "run-script",
            grants,
            Transport,
            yardmaster_transport_plugin,
            |i, s| i.call_run_script(s, target, script)
        ))
    }

    pub async fn backup(
        &self,
        target: &transport::Target,
        save_as: Option<&str>,
    ) -> Result<transport::BackupResult, Failure<transport::TransportError>> {
        let grants = self.site_grant(target)?;
        settle(call!(
            @site Some(target.address.clone()), self.ssh.clone(),
            self.host,
            self.plugin,
            "backup",
            grants,
            Transport,
            yardmaster_transport_plugin,
            |i, s| i.call_backup(s, target, save_as)
        ))
    }

    /// Whether this transport can arm a dead-man rollback (contract 1.2, and it says so).
    pub fn supports_rollback(&self) -> bool {
        self.plugin.supports_rollback()
    }

    fn guard_exports(&self) -> Result<GuardExports, Failure<transport::TransportError>> {
        self.plugin.guard.ok_or_else(|| Failure::Plugin {
            error: transport::TransportError::Unsupported(format!(
                "the {} plugin cannot arm a dead-man rollback (it needs transport contract 1.2 and a guard it supports)",
                self.plugin.info.name
            )),
            denied: Vec::new(),
        })
    }

    /// Saves a backup on the device and schedules its restore in `seconds`, under `name`.
    pub async fn arm_rollback(
        &self,
        target: &transport::Target,
        name: &str,
        seconds: u32,
    ) -> Result<Armed, Failure<transport::TransportError>> {
        let exports = self.guard_exports()?;
        let grants = self.site_grant(target)?;
        let Pre::Transport(pre) = &self.plugin.pre else {
            return Err(Failure::Call(CallError::WrongKind {
                name: self.plugin.info.name.clone(),
                expected: PluginKind::Transport,
                actual: self.plugin.info.kind,
            }));
        };
        let pre = pre.instance_pre().clone();
        let (target, name) = (target.clone(), name.to_owned());
        let outcome = self
            .host
            .invoke_for(
                &self.plugin,
                "arm",
                Reach::from(grants),
                Some(target.address.clone()),
                self.ssh.clone(),
                move |mut store| async move {
                    let instance = pre.instantiate_async(&mut store).await?;
                    let func = instance.get_typed_func::<
                        (&transport::Target, &str, u32),
                        (Result<Armed, transport::TransportError>,),
                    >(&mut store, &exports.arm)?;
                    let (armed,) = func
                        .call_async(&mut store, (&target, name.as_str(), seconds))
                        .await?;
                    Ok(armed)
                },
            )
            .await;
        count_call(&self.plugin.info.name, "arm", &outcome);
        settle(outcome)
    }

    /// Removes what [`Transport::arm_rollback`] armed, on a new connection.
    pub async fn disarm_rollback(
        &self,
        target: &transport::Target,
        armed: &Armed,
    ) -> Result<(), Failure<transport::TransportError>> {
        let exports = self.guard_exports()?;
        let grants = self.site_grant(target)?;
        let Pre::Transport(pre) = &self.plugin.pre else {
            return Err(Failure::Call(CallError::WrongKind {
                name: self.plugin.info.name.clone(),
                expected: PluginKind::Transport,
                actual: self.plugin.info.kind,
            }));
        };
        let pre = pre.instance_pre().clone();
        let (target, armed) = (target.clone(), armed.clone());
        let outcome = self
            .host
            .invoke_for(
                &self.plugin,
                "disarm",
                Reach::from(grants),
                Some(target.address.clone()),
                self.ssh.clone(),
                move |mut store| async move {
                    let instance = pre.instantiate_async(&mut store).await?;
                    let func = instance.get_typed_func::<
                        (&transport::Target, &Armed),
                        (Result<(), transport::TransportError>,),
                    >(&mut store, &exports.disarm)?;
                    let (done,) = func.call_async(&mut store, (&target, &armed)).await?;
                    Ok(done)
                },
            )
            .await;
        count_call(&self.plugin.info.name, "disarm", &outcome);
        settle(outcome)
    }

    pub async fn probe(
        &self,
        target: &transport::Target,
    ) -> Result<transport::ProbeResult, Failure<transport::TransportError>> {
        let grants = self.site_grant(target)?;
        settle(call!(
            @site Some(target.address.clone()), self.ssh.clone(),
            self.host,
            self.plugin,
            "probe",
            grants,
            Transport,
            yardmaster_transport_plugin,
            |i, s| i.call_probe(s, target)
        ))
    }
}

/// A notifier plugin.
#[derive(Debug, Clone)]
pub struct Notifier {
    host: PluginHost,
    plugin: Arc<LoadedPlugin>,
}

impl Notifier {
    pub fn plugin(&self) -> &LoadedPlugin {
        &self.plugin
    }

    /// Delivers under the plugin's allow-list.
    pub async fn deliver(
        &self,
        channel: &notifier::Channel,
        event: &notifier::Event,
    ) -> Result<notifier::Receipt, Failure<notifier::NotifyError>> {
        self.deliver_within(channel, event, Reach::AllowListAnd(Vec::new()))
            .await
    }

    /// Delivers where `reach` allows: the notifier reaches the receivers the engine
    /// grants for this delivery.
    pub async fn deliver_within(
        &self,
        channel: &notifier::Channel,
        event: &notifier::Event,
        reach: Reach,
    ) -> Result<notifier::Receipt, Failure<notifier::NotifyError>> {
        let (channel, event) = (channel.clone(), event.clone());
        settle(call!(
            self.host,
            self.plugin,
            "deliver",
            reach,
            Notifier,
            yardmaster_notifier_plugin,
            |i, s| i.call_deliver(s, &channel, &event)
        ))
    }
}

/// A script-source plugin.
#[derive(Debug, Clone)]
pub struct ScriptSource {
    host: PluginHost,
    plugin: Arc<LoadedPlugin>,
}

impl ScriptSource {
    pub fn plugin(&self) -> &LoadedPlugin {
        &self.plugin
    }

    pub async fn fetch(
        &self,
        url: &str,
    ) -> Result<script_source::Fetched, Failure<script_source::SourceError>> {
        let url = url.to_string();
        settle(call!(
            self.host,
            self.plugin,
            "fetch",
            Vec::new(),
            ScriptSource,
            yardmaster_script_source_plugin,
            |i, s| i.call_fetch(s, &url)
        ))
    }

    /// Whether the plugin offers `catalog.fetch-entry` (script source 1.1 or later).
    pub fn has_catalog(&self) -> bool {
        matches!(&self.plugin.pre, Pre::ScriptSource(p) if p.catalog.is_some())
    }

    /// Pins `url` (and `readme_url`) to a commit and reads the script with its
    /// repository's and owner's details (`catalog.fetch-entry`).
    pub async fn fetch_entry(
        &self,
        url: &str,
        readme_url: Option<&str>,
    ) -> Result<script_source::Entry, Failure<script_source::SourceError>> {
        let catalog = match &self.plugin.pre {
            Pre::ScriptSource(SourcePre {
                catalog: Some(c), ..
            }) => c.clone(),
            _ => {
                return Err(Failure::Plugin {
                    error: script_source::SourceError::Other(format!(
                        "plugin {} is built against script-source 1.0, which cannot pin a script \
                         with its repository's details; rebuild it against 1.1",
                        self.plugin.info.name
                    )),
                    denied: Vec::new(),
                });
            }
        };
        let (url, readme_url) = (url.to_owned(), readme_url.map(str::to_owned));
        let outcome = self
            .host
            .invoke_for(
                &self.plugin,
                "fetch-entry",
                Reach::from(Vec::new()),
                None,
                None,
                move |mut store| async move {
                    let instance = catalog.instantiate_async(&mut store).await?;
                    instance
                        .yardmaster_script_source_catalog()
                        .call_fetch_entry(&mut store, &url, readme_url.as_deref())
                        .await
                },
            )
            .await;
        count_call(&self.plugin.info.name, "fetch-entry", &outcome);
        settle(outcome).map_err(|f| match f {
            Failure::Plugin { error, denied } => Failure::Plugin {
                error: source_error_1_0(error),
                denied,
            },
            Failure::Call(e) => Failure::Call(e),
        })
    }
}

/// Script source 1.1's error (the same variants as 1.0's, in its own package).
fn source_error_1_0(
    e: bindings::script_source_catalog::exports::yardmaster::script_source::plugin::SourceError,
) -> script_source::SourceError {
    use bindings::script_source_catalog::exports::yardmaster::script_source::plugin::SourceError as New;
    use script_source::SourceError as Old;
    match e {
        New::InvalidUrl(m) => Old::InvalidUrl(m),
        New::NotFound(m) => Old::NotFound(m),
        New::Unavailable(m) => Old::Unavailable(m),
        New::Denied(m) => Old::Denied(m),
        New::TooLarge(m) => Old::TooLarge(m),
        New::Other(m) => Old::Other(m),
    }
}

/// A generator plugin.
#[derive(Debug, Clone)]
pub struct Generator {
    host: PluginHost,
    plugin: Arc<LoadedPlugin>,
}

impl Generator {
    pub fn plugin(&self) -> &LoadedPlugin {
        &self.plugin
    }

    pub async fn generate(
        &self,
        request: &generator::Request,
    ) -> Result<generator::Generated, Failure<generator::GenerateError>> {
        let request = request.clone();
        settle(call!(
            self.host,
            self.plugin,
            "generate",
            Vec::new(),
            Generator,
            yardmaster_generator_plugin,
            |i, s| i.call_generate(s, &request)
        ))
    }

    pub async fn summarize(
        &self,
        script: &str,
    ) -> Result<String, Failure<generator::GenerateError>> {
        let script = script.to_string();
        settle(call!(
            self.host,
            self.plugin,
            "summarize",
            Vec::new(),
            Generator,
            yardmaster_generator_plugin,
            |i, s| i.call_summarize(s, &script)
        ))
    }

    /// Writes a script continuing `history` (`chat.generate-turns`, generator 1.1), with
    /// the model's token usage. A 1.0 generator answers through `generate`, without
    /// usage, and only a first round.
    pub async fn generate_turns(
        &self,
        request: &generator::Request,
        history: &[generator::Turn],
    ) -> Result<generator::Reply, Failure<generator::GenerateError>> {
        let chat = match &self.plugin.pre {
            Pre::Generator(GenPre { chat: Some(c), .. }) => c.clone(),
            _ => {
                if !history.is_empty() {
                    return Err(Failure::Plugin {
                        error: generator::GenerateError::Other(format!(
                            "plugin {} is built against generator 1.0, which cannot take the \
                             linter's findings back; rebuild it against 1.1",
                            self.plugin.info.name
                        )),
                        denied: Vec::new(),
                    });
                }
                let g = self.generate(request).await?;
                return Ok(generator::Reply {
                    script: g.script,
                    explanation: g.explanation,
                    model: g.model,
                    response_id: None,
                    usage: None,
                });
            }
        };
        type New = bindings::generator_chat::exports::yardmaster::generator::plugin::Request;
        type NewTurn = bindings::generator_chat::exports::yardmaster::generator::chat::Turn;
        let request = New {
            prompt: request.prompt.clone(),
            context: request.context.clone(),
        };
        let history: Vec<NewTurn> = history
            .iter()
            .map(|t| NewTurn {
                role: t.role.clone(),
                content: t.content.clone(),
            })
            .collect();
        let outcome = self
            .host
            .invoke_for(
                &self.plugin,
                "generate-turns",
                Reach::from(Vec::new()),
                None,
                None,
                move |mut store| async move {
                    let instance = chat.instantiate_async(&mut store).await?;
                    instance
                        .yardmaster_generator_chat()
                        .call_generate_turns(&mut store, &request, &history)
                        .await
                },
            )
            .await;
        count_call(&self.plugin.info.name, "generate-turns", &outcome);
        settle(outcome).map_err(|f| match f {
            Failure::Plugin { error, denied } => Failure::Plugin {
                error: generate_error_1_0(error),
                denied,
            },
            Failure::Call(e) => Failure::Call(e),
        })
    }
}

/// Generator 1.1's error (the same variants as 1.0's, in its own package).
fn generate_error_1_0(
    e: bindings::generator_chat::exports::yardmaster::generator::plugin::GenerateError,
) -> generator::GenerateError {
    use bindings::generator_chat::exports::yardmaster::generator::plugin::GenerateError as New;
    use generator::GenerateError as Old;
    match e {
        New::Refused(m) => Old::Refused(m),
        New::Unavailable(m) => Old::Unavailable(m),
        New::Denied(m) => Old::Denied(m),
        New::Invalid(m) => Old::Invalid(m),
        New::Other(m) => Old::Other(m),
    }
}
