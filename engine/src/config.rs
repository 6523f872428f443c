//! The engine's configuration: one TOML file, `YARDMASTER_*` environment variables and
//! command-line flags, in rising order of precedence, over defaults that work as they are.
//!
//! ```toml
//! data_dir = "./yardmaster-data"
//! plugins_dir = "./plugins"
//! templates_dir = "./templates"   # global script templates (.toml, .rsc), read-only
//! listen = "127.0.0.1:8080"
//!
//! [plugin_defaults]
//! memory = "64MiB"
//! timeout = "30s"
//!
//! [plugins.webhook]
//! allow = ["hooks.example.com:443"]
//! timeout = "10s"
//! [plugins.webhook.config]
//! secret = "..."
//!
//! # Accept RS256 tokens from an external issuer, beside the engine's own HS256 tokens.
//! [auth]
//! issuer = "https://sso.example.com/"       # must equal the token's `iss`
//! audience = "yardmaster"                    # optional; then `aud` must name it
//! jwks_file = "/etc/yardmaster/jwks.json"    # RSA keys (`n`, `e`) chosen by `kid`
//! # or: public_key_pem = "/etc/yardmaster/issuer.pem" (SPKI PEM, its path or the text)
//!
//! # Left unset, max_jobs (4096), max_jobs_per_launch (2048) and
//! # max_concurrent_plugin_calls (4096) are lowered at start to what memory and the
//! # open-file limit hold (see `budget`); a value set here is kept, with a warning when
//! # the machine cannot hold it.
//! [runner]
//! max_jobs = 4096            # jobs at work on their sites at once, across all launches
//! organization_share = 0.5   # the part of max_jobs one organization's jobs may hold
//! max_jobs_per_launch = 2048 # within one launch (a schedule's rollout may lower it)
//! job_timeout = "5m"         # one job from its start to its end, retries included
//! max_attempts = 5           # for failures before the script was sent
//!
//! # Let this organization's members approve the scheduled scripts they created
//! # themselves; every other organization keeps four eyes.
//! [organizations.lab]
//! allow_self_approval = true
//!
//! # The HTTP server's patience with its clients.
//! [http]
//! header_read_timeout = "10s"  # a request's line and headers, from their first byte
//! idle_timeout = "60s"         # a connection with no request under way
//!
//! # Certificates (PEM) trusted beside the public roots whenever the engine verifies a
//! # TLS peer for a plugin (a router's API-SSL, a mail server, a webhook receiver).
//! [tls]
//! ca_file = "/etc/yardmaster/routers-ca.pem"
//!
//! # Which addresses sites may have, checked when a site is written and again on the
//! # resolved address when the engine connects (plugin allow-list grammar). Unset:
//! # anything but loopback, link-local, unspecified and cloud metadata addresses.
//! [sites]
//! allow = ["10.0.0.0/8", "*.routers.example"]
//!
//! # SSH: offer the algorithms RouterOS 6 needs after the modern ones (default true).
//! [ssh]
//! legacy_algorithms = true
//!
//! # Several engines on one PostgreSQL database instead of the embedded store in
//! # data_dir. Every engine is given the same credential key (this file, or the key as
//! # 64 hex digits in YARDMASTER_CREDENTIAL_KEY); the default is data_dir's own.
//! [store]
//! url = "postgres://yardmaster@db.example:5432/yardmaster"
//! credential_key_file = "/etc/yardmaster/credentials.key"
//! engine = "engine-a"   # this engine's name in claims and leases; default: made once
//!                       # per data_dir and kept there
//! max_connections = 16  # the engine's pool (plus one connection listening)
//! ```
//!
//! Each `[auth]` key has an environment variable: `YARDMASTER_AUTH_ISSUER`,
//! `YARDMASTER_AUTH_AUDIENCE`, `YARDMASTER_AUTH_JWKS_FILE` and
//! `YARDMASTER_AUTH_PUBLIC_KEY_PEM`. A key source set in the environment replaces the
//! file's, so `jwks_file` from one and `public_key_pem` from the other never mix.
//! `YARDMASTER_TLS_CA_FILE` sets `[tls] ca_file`. `YARDMASTER_SITES_ALLOW` (entries
//! separated by commas) replaces `[sites] allow`. `YARDMASTER_STORE_URL` (and `serve
//! --store-url`) sets `[store] url`.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use rustls::pki_types::CertificateDer;
use serde::Deserialize;

use crate::approval::OrgPolicy;
use crate::runner::fanout::RunnerSettings;

/// Where the configuration went wrong.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config file {path} is not valid: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("{key}: {message}")]
    Value { key: String, message: String },
}

/// Settings as written in the TOML file; every field may be left out.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    data_dir: Option<PathBuf>,
    plugins_dir: Option<PathBuf>,
    templates_dir: Option<PathBuf>,
    listen: Option<String>,
    install_bundled_plugins: Option<bool>,
    max_concurrent_plugin_calls: Option<u32>,
    organization_plugin_call_share: Option<f64>,
    #[serde(default)]
    http: FileHttp,
    #[serde(default)]
    plugin_defaults: FileLimits,
    #[serde(default)]
    plugins: BTreeMap<String, FilePlugin>,
    #[serde(default)]
    notify: crate::notify::NotifyConfig,
    #[serde(default)]
    auth: FileAuth,
    #[serde(default)]
    runner: FileRunner,
    #[serde(default)]
    tls: FileTls,
    #[serde(default)]
    organizations: BTreeMap<String, FileOrganization>,
    #[serde(default)]
    sites: FileSites,
    #[serde(default)]
    ssh: FileSsh,
    #[serde(default)]
    store: StoreSettings,
}

/// The `[store]` section: where the engine keeps its state.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreSettings {
    /// A PostgreSQL URL (`postgres://user@host:port/database`) that several engines share;
    /// unset, the embedded store in `data_dir`.
    pub url: Option<String>,
    /// The credential key file every engine on the database reads; unset, the key in
    /// `data_dir`. `YARDMASTER_CREDENTIAL_KEY` (64 hex digits) wins over both.
    pub credential_key_file: Option<PathBuf>,
    /// This engine's name in claims and leases, unique among the engines of a database;
    /// unset, a name made on first start and kept in `data_dir`.
    pub engine: Option<String>,
    /// Connections this engine keeps open to the database at most (its pool; one more
    /// listens for the other engines' changes); unset, 16.
    pub max_connections: Option<usize>,
}

/// The `[ssh]` section: what the host offers in SSH key exchange.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileSsh {
    legacy_algorithms: Option<bool>,
}

/// The `[sites]` section: which addresses sites may have.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileSites {
    allow: Option<Vec<String>>,
}

/// An `[organizations.<id>]` section: one organization's approval rules.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileOrganization {
    allow_self_approval: Option<bool>,
}

/// The `[http]` section: how long the server waits on a client.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileHttp {
    header_read_timeout: Option<String>,
    idle_timeout: Option<String>,
}

impl FileHttp {
    fn resolve(self) -> Result<HttpSettings, ConfigError> {
        let mut settings = HttpSettings::default();
        let duration = |key: &str, text: &str| {
            parse_duration(text)
                .filter(|d| !d.is_zero())
                .ok_or_else(|| value_error(key, &format!("`{text}` is not a duration like 10s")))
        };
        if let Some(text) = &self.header_read_timeout {
            settings.header_read_timeout = duration("http.header_read_timeout", text)?;
        }
        if let Some(text) = &self.idle_timeout {
            settings.idle_timeout = duration("http.idle_timeout", text)?;
        }
        Ok(settings)
    }
}

/// How long the HTTP server waits on a client before it closes the connection, so slow
/// or silent clients cannot hold connections (and their memory) for ever.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HttpSettings {
    /// From the first byte of a request to the end of its headers.
    pub header_read_timeout: Duration,
    /// A connection with no request under way (just opened, or kept alive after a
    /// response) that long is closed.
    pub idle_timeout: Duration,
}

impl Default for HttpSettings {
    fn default() -> Self {
        HttpSettings {
            header_read_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
        }
    }
}

/// The `[tls]` section.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileTls {
    ca_file: Option<PathBuf>,
}

/// The `[runner]` section: how many jobs run at once, and how long one may take.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileRunner {
    max_jobs: Option<usize>,
    organization_share: Option<f64>,
    max_jobs_per_launch: Option<usize>,
    job_timeout: Option<String>,
    max_attempts: Option<u32>,
}

impl FileRunner {
    fn resolve(self) -> Result<RunnerSettings, ConfigError> {
        let mut settings = RunnerSettings::default();
        let at_least_one = |key: &str, n: usize| {
            if n == 0 {
                Err(value_error(key, "must be at least 1"))
            } else {
                Ok(n)
            }
        };
        if let Some(n) = self.max_jobs {
            settings.global_concurrency = at_least_one("runner.max_jobs", n)?;
        }
        if let Some(share) = self.organization_share {
            if !(share > 0.0 && share <= 1.0) {
                return Err(value_error(
                    "runner.organization_share",
                    "must be more than 0 and at most 1",
                ));
            }
            settings.organization_share = share;
        }
        if let Some(n) = self.max_jobs_per_launch {
            settings.run_concurrency = at_least_one("runner.max_jobs_per_launch", n)?;
        }
        if let Some(text) = &self.job_timeout {
            settings.job_timeout =
                parse_duration(text)
                    .filter(|d| !d.is_zero())
                    .ok_or_else(|| {
                        value_error(
                            "runner.job_timeout",
                            &format!("`{text}` is not a duration like 90s or 5m"),
                        )
                    })?;
        }
        if let Some(n) = self.max_attempts {
            if !(1..=100).contains(&n) {
                return Err(value_error("runner.max_attempts", "must be from 1 to 100"));
            }
            settings.max_attempts = n;
        }
        Ok(settings)
    }
}

/// The `[auth]` section, and its `YARDMASTER_AUTH_*` environment variables.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileAuth {
    issuer: Option<String>,
    audience: Option<String>,
    jwks_file: Option<PathBuf>,
    public_key_pem: Option<String>,
}

impl FileAuth {
    fn from_env() -> FileAuth {
        FileAuth {
            issuer: env_var("YARDMASTER_AUTH_ISSUER"),
            audience: env_var("YARDMASTER_AUTH_AUDIENCE"),
            jwks_file: env_var("YARDMASTER_AUTH_JWKS_FILE").map(PathBuf::from),
            public_key_pem: env_var("YARDMASTER_AUTH_PUBLIC_KEY_PEM"),
        }
    }

    /// `over` on top of `self`: its values win, and a key source in `over` replaces both
    /// of `self`'s.
    fn layered(self, over: FileAuth) -> FileAuth {
        let source_over = over.jwks_file.is_some() || over.public_key_pem.is_some();
        FileAuth {
            issuer: over.issuer.or(self.issuer),
            audience: over.audience.or(self.audience),
            jwks_file: if source_over {
                over.jwks_file
            } else {
                self.jwks_file
            },
            public_key_pem: if source_over {
                over.public_key_pem
            } else {
                self.public_key_pem
            },
        }
    }

    fn resolve(self) -> Result<Option<IssuerSettings>, ConfigError> {
        let keys = match (self.jwks_file, self.public_key_pem) {
            (Some(_), Some(_)) => {
                return Err(value_error(
                    "auth",
                    "give either jwks_file or public_key_pem, not both",
                ));
            }
            (Some(path), None) => Some(IssuerKeys::JwksFile(path)),
            (None, Some(pem)) => Some(IssuerKeys::PublicKeyPem(pem)),
            (None, None) => None,
        };
        let issuer = self.issuer.filter(|i| !i.trim().is_empty());
        match (issuer, keys) {
            (Some(issuer), Some(keys)) => Ok(Some(IssuerSettings {
                issuer,
                audience: self.audience.filter(|a| !a.trim().is_empty()),
                keys,
            })),
            (Some(_), None) => Err(value_error(
                "auth",
                "an issuer needs its public keys: set jwks_file or public_key_pem",
            )),
            (None, Some(_)) => Err(value_error(
                "auth.issuer",
                "must be set with the issuer's keys; it is checked against each token's `iss`",
            )),
            (None, None) if self.audience.is_some() => Err(value_error(
                "auth.audience",
                "applies to an external issuer; set issuer and its keys too",
            )),
            (None, None) => Ok(None),
        }
    }
}

/// An external issuer whose RS256 tokens the engine accepts, beside its own HS256 ones.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IssuerSettings {
    /// Must equal each token's `iss`.
    pub issuer: String,
    /// When set, each token's `aud` must name it.
    pub audience: Option<String>,
    pub keys: IssuerKeys,
}

/// Where an issuer's public keys are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IssuerKeys {
    /// A JWKS document of RSA keys, chosen by each token's `kid`.
    JwksFile(PathBuf),
    /// One SPKI PEM public key: its text, or the path of a file holding it.
    PublicKeyPem(String),
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileLimits {
    memory: Option<String>,
    timeout: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FilePlugin {
    memory: Option<String>,
    timeout: Option<String>,
    #[serde(default)]
    allow: Vec<String>,
    #[serde(default)]
    config: BTreeMap<String, toml::Value>,
}

/// Overrides from the command line (highest precedence) or the environment.
#[derive(Debug, Default, Clone)]
pub struct Overrides {
    pub data_dir: Option<PathBuf>,
    pub plugins_dir: Option<PathBuf>,
    pub listen: Option<String>,
    pub tls_ca_file: Option<PathBuf>,
    /// `[sites] allow` as comma-separated entries (`YARDMASTER_SITES_ALLOW`).
    pub sites_allow: Option<String>,
    /// `[store] url` (`YARDMASTER_STORE_URL`).
    pub store_url: Option<String>,
}

/// Resource limits for one plugin's calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Linear memory one instance may grow to.
    pub memory_bytes: u64,
    /// Wall-clock time one call may take, instantiation included.
    pub timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            memory_bytes: 64 * 1024 * 1024,
            timeout: Duration::from_secs(30),
        }
    }
}

/// What the operator grants one plugin, by the name it gives in `describe()`.
#[derive(Debug, Clone, Default)]
pub struct PluginSettings {
    pub limits: Limits,
    /// Allow-list entries, parsed by `plugins::net::Policy`.
    pub allow: Vec<String>,
    /// Values the plugin reads through `config.get`.
    pub config: BTreeMap<String, String>,
}

/// The complete, resolved configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub data_dir: PathBuf,
    pub plugins_dir: PathBuf,
    /// Global script templates, shared by every organization and read-only through the
    /// API; reloaded when a file changes (`YARDMASTER_TEMPLATES_DIR`).
    pub templates_dir: PathBuf,
    pub listen: SocketAddr,
    /// Copy the first-party plugins into an empty plugins folder on start.
    pub install_bundled_plugins: bool,
    /// Plugin calls running at once, across all plugins; more wait their turn.
    pub max_concurrent_plugin_calls: u32,
    /// The concurrency limits the operator set (`max_concurrent_plugin_calls`,
    /// `[runner] max_jobs` and `max_jobs_per_launch`); at start, those left unset are
    /// sized by [`crate::budget`] to what the machine holds.
    pub concurrency: crate::budget::Requested,
    /// The part of those calls one organization's work may hold at once (0 < share
    /// <= 1), so one organization's calls to routers that never answer leave room for
    /// the others'.
    pub organization_plugin_call_share: f64,
    /// The HTTP server's timeouts (`[http]`).
    pub http: HttpSettings,
    pub plugin_defaults: Limits,
    pub plugins: BTreeMap<String, PluginSettings>,
    /// Notification delivery (`[notify]`): retries and plain-http receivers.
    pub notify: crate::notify::NotifyConfig,
    /// An external issuer of RS256 tokens (`[auth]`); none by default.
    pub auth: Option<IssuerSettings>,
    /// Jobs at once and per job (`[runner]`).
    pub runner: RunnerSettings,
    /// Certificates trusted beside the public roots when a TLS peer is verified for a
    /// plugin (`[tls] ca_file`), read and checked when the configuration is loaded.
    pub trusted_certificates: Vec<CertificateDer<'static>>,
    /// Approval rules by organization id (`[organizations.<id>]`); an organization not
    /// named keeps the defaults (four eyes).
    pub organizations: BTreeMap<String, OrgPolicy>,
    /// Which addresses sites may have (`[sites] allow`); unset, anything but the
    /// reserved ranges (loopback, link-local, unspecified, cloud metadata).
    pub sites_allow: crate::plugins::SiteAllow,
    /// Offer the algorithms RouterOS 6 needs (diffie-hellman-group14-sha1, group exchange
    /// with SHA-256, hmac-sha1, ssh-rsa, aes-ctr) after the modern ones (`[ssh]
    /// legacy_algorithms`, on by default).
    pub ssh_legacy_algorithms: bool,
    /// Where the state is kept (`[store]`): the embedded store unless a URL is set.
    pub store: StoreSettings,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            data_dir: PathBuf::from("./yardmaster-data"),
            plugins_dir: PathBuf::from("./plugins"),
            templates_dir: PathBuf::from("./templates"),
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            install_bundled_plugins: true,
            max_concurrent_plugin_calls: crate::budget::DEFAULT_PLUGIN_CALLS,
            concurrency: crate::budget::Requested::default(),
            organization_plugin_call_share: 0.5,
            http: HttpSettings::default(),
            plugin_defaults: Limits::default(),
            plugins: BTreeMap::new(),
            notify: crate::notify::NotifyConfig::default(),
            auth: None,
            runner: RunnerSettings::default(),
            trusted_certificates: Vec::new(),
            organizations: BTreeMap::new(),
            sites_allow: crate::plugins::SiteAllow::default(),
            ssh_legacy_algorithms: true,
            store: StoreSettings::default(),
        }
    }
}

impl Config {
    /// Resolves the configuration: defaults, then the file (from `file`, or
    /// `YARDMASTER_CONFIG`, or `./yardmaster.toml` when it exists), then the environment,
    /// then `flags`.
    pub fn load(file: Option<&Path>, flags: &Overrides) -> Result<Config, ConfigError> {
        let env = Overrides {
            data_dir: env_var("YARDMASTER_DATA_DIR").map(PathBuf::from),
            plugins_dir: env_var("YARDMASTER_PLUGINS_DIR").map(PathBuf::from),
            listen: env_var("YARDMASTER_LISTEN"),
            tls_ca_file: env_var("YARDMASTER_TLS_CA_FILE").map(PathBuf::from),
            sites_allow: env_var("YARDMASTER_SITES_ALLOW"),
            store_url: env_var("YARDMASTER_STORE_URL"),
        };
        let file = file
            .map(Path::to_path_buf)
            .or_else(|| env_var("YARDMASTER_CONFIG").map(PathBuf::from))
            .or_else(|| {
                let default = PathBuf::from("yardmaster.toml");
                default.exists().then_some(default)
            });
        let text = match &file {
            Some(path) => {
                Some(
                    std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                        path: path.clone(),
                        source,
                    })?,
                )
            }
            None => None,
        };
        Self::resolve_with(
            file.as_deref(),
            text.as_deref(),
            &env,
            flags,
            FileAuth::from_env(),
        )
    }

    /// The pure part of [`Config::load`], so it can be tested without touching the process.
    #[cfg(test)]
    fn resolve(
        path: Option<&Path>,
        text: Option<&str>,
        env: &Overrides,
        flags: &Overrides,
    ) -> Result<Config, ConfigError> {
        Self::resolve_with(path, text, env, flags, FileAuth::default())
    }

    /// [`Config::resolve`] with the `YARDMASTER_AUTH_*` values of the environment.
    fn resolve_with(
        path: Option<&Path>,
        text: Option<&str>,
        env: &Overrides,
        flags: &Overrides,
        env_auth: FileAuth,
    ) -> Result<Config, ConfigError> {
        let parsed: FileConfig = match text {
            Some(text) => toml::from_str(text).map_err(|e| ConfigError::Parse {
                path: path.map(Path::to_path_buf).unwrap_or_default(),
                message: e.to_string(),
            })?,
            None => FileConfig::default(),
        };
        let mut config = Config {
            auth: parsed.auth.layered(env_auth).resolve()?,
            ..Config::default()
        };
        if let Some(dir) = parsed.data_dir {
            config.data_dir = dir;
        }
        if let Some(dir) = parsed.plugins_dir {
            config.plugins_dir = dir;
        }
        if let Some(dir) = parsed.templates_dir {
            config.templates_dir = dir;
        }
        if let Some(dir) = env_var("YARDMASTER_TEMPLATES_DIR") {
            config.templates_dir = PathBuf::from(dir);
        }
        let mut listen = parsed.listen;
        if let Some(install) = parsed.install_bundled_plugins {
            config.install_bundled_plugins = install;
        }
        if let Some(max) = parsed.max_concurrent_plugin_calls {
            if max == 0 {
                return Err(value_error(
                    "max_concurrent_plugin_calls",
                    "must be at least 1",
                ));
            }
            config.max_concurrent_plugin_calls = max;
            config.concurrency.plugin_calls = Some(max);
        }
        if let Some(share) = parsed.organization_plugin_call_share {
            if !(share > 0.0 && share <= 1.0) {
                return Err(value_error(
                    "organization_plugin_call_share",
                    "must be more than 0 and at most 1",
                ));
            }
            config.organization_plugin_call_share = share;
        }
        config.http = parsed.http.resolve()?;
        config.plugin_defaults = limits(
            "plugin_defaults",
            &parsed.plugin_defaults.memory,
            &parsed.plugin_defaults.timeout,
            Limits::default(),
        )?;
        for (name, plugin) in parsed.plugins {
            let key = format!("plugins.{name}");
            let settings = PluginSettings {
                limits: limits(
                    &key,
                    &plugin.memory,
                    &plugin.timeout,
                    config.plugin_defaults,
                )?,
                allow: plugin.allow,
                config: plugin
                    .config
                    .into_iter()
                    .map(|(k, v)| {
                        let text = match v {
                            toml::Value::String(s) => s,
                            other => other.to_string(),
                        };
                        (k, text)
                    })
                    .collect(),
            };
            config.plugins.insert(name, settings);
        }
        config.notify = parsed.notify;
        config.concurrency.jobs = parsed.runner.max_jobs;
        config.concurrency.jobs_per_launch = parsed.runner.max_jobs_per_launch;
        config.runner = parsed.runner.resolve()?;
        for (id, organization) in parsed.organizations {
            if id.trim().is_empty() {
                return Err(value_error("organizations", "an organization id is empty"));
            }
            let policy = OrgPolicy {
                allow_self_approval: organization.allow_self_approval.unwrap_or(false),
            };
            config.organizations.insert(id, policy);
        }
        if let Some(legacy) = parsed.ssh.legacy_algorithms {
            config.ssh_legacy_algorithms = legacy;
        }
        config.store = parsed.store;
        let mut ca_file = parsed.tls.ca_file;
        let mut sites_allow = parsed.sites.allow;
        for layer in [env, flags] {
            if let Some(file) = &layer.tls_ca_file {
                ca_file = Some(file.clone());
            }
            if let Some(list) = &layer.sites_allow {
                sites_allow = Some(
                    list.split(',')
                        .map(str::trim)
                        .filter(|e| !e.is_empty())
                        .map(String::from)
                        .collect(),
                );
            }
            if let Some(dir) = &layer.data_dir {
                config.data_dir = dir.clone();
            }
            if let Some(dir) = &layer.plugins_dir {
                config.plugins_dir = dir.clone();
            }
            if let Some(addr) = &layer.listen {
                listen = Some(addr.clone());
            }
            if let Some(url) = &layer.store_url {
                config.store.url = Some(url.clone());
            }
        }
        if let Some(url) = &config.store.url
            && !(url.starts_with("postgres://") || url.starts_with("postgresql://"))
        {
            return Err(value_error(
                "store.url",
                "must be a PostgreSQL URL like postgres://user@host:5432/database",
            ));
        }
        if config
            .store
            .max_connections
            .is_some_and(|n| !(2..=1000).contains(&n))
        {
            return Err(value_error(
                "store.max_connections",
                "must be from 2 to 1000",
            ));
        }
        if config
            .store
            .engine
            .as_deref()
            .is_some_and(|name| !crate::store::backend::valid_engine_name(name))
        {
            return Err(value_error(
                "store.engine",
                "must be 1 to 64 letters, digits, '-', '_' or '.'",
            ));
        }
        if let Some(entries) = sites_allow {
            config.sites_allow = crate::plugins::SiteAllow::parse(&entries)
                .map_err(|e| value_error("sites.allow", &e.to_string()))?;
        }
        if let Some(file) = ca_file {
            config.trusted_certificates = crate::plugins::load_trusted(&file)
                .map_err(|message| value_error("tls.ca_file", &message))?;
        }
        if let Some(addr) = listen {
            config.listen = addr.parse().map_err(|_| {
                value_error(
                    "listen",
                    &format!("`{addr}` is not an address like 127.0.0.1:8080"),
                )
            })?;
        }
        Ok(config)
    }

    /// The settings for the plugin named `name`, or the defaults.
    pub fn plugin(&self, name: &str) -> PluginSettings {
        self.plugins.get(name).cloned().unwrap_or(PluginSettings {
            limits: self.plugin_defaults,
            ..PluginSettings::default()
        })
    }

    /// The largest memory limit any plugin may have; it sizes the instance pool.
    pub fn max_plugin_memory(&self) -> u64 {
        self.plugins
            .values()
            .map(|p| p.limits.memory_bytes)
            .chain([self.plugin_defaults.memory_bytes])
            .max()
            .unwrap_or(self.plugin_defaults.memory_bytes)
    }
}

fn env_var(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

fn value_error(key: &str, message: &str) -> ConfigError {
    ConfigError::Value {
        key: key.to_string(),
        message: message.to_string(),
    }
}

fn limits(
    section: &str,
    memory: &Option<String>,
    timeout: &Option<String>,
    base: Limits,
) -> Result<Limits, ConfigError> {
    let mut limits = base;
    if let Some(text) = memory {
        limits.memory_bytes = parse_size(text).ok_or_else(|| {
            value_error(
                &format!("{section}.memory"),
                &format!("`{text}` is not a size like 64MiB"),
            )
        })?;
        if limits.memory_bytes < 1024 * 1024 || limits.memory_bytes > 4 * 1024 * 1024 * 1024 {
            return Err(value_error(
                &format!("{section}.memory"),
                "must be between 1MiB and 4GiB",
            ));
        }
    }
    if let Some(text) = timeout {
        limits.timeout = parse_duration(text).ok_or_else(|| {
            value_error(
                &format!("{section}.timeout"),
                &format!("`{text}` is not a duration like 30s, 500ms or 2m"),
            )
        })?;
        if limits.timeout.is_zero() {
            return Err(value_error(
                &format!("{section}.timeout"),
                "must be more than 0",
            ));
        }
    }
    Ok(limits)
}

/// Parses `64MiB`, `512KiB`, `1GiB`, `100MB` or a plain number of bytes.
pub fn parse_size(text: &str) -> Option<u64> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: u64 = number.parse().ok()?;
    let factor: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" => 1000,
        "kib" => 1024,
        "m" | "mb" => 1000 * 1000,
        "mib" => 1024 * 1024,
        "g" | "gb" => 1000 * 1000 * 1000,
        "gib" => 1024 * 1024 * 1024,
        _ => return None,
    };
    number.checked_mul(factor)
}

/// Parses `500ms`, `30s`, `2m`, `1h`, or a combination such as `1m30s`.
pub fn parse_duration(text: &str) -> Option<Duration> {
    let mut rest = text.trim();
    if rest.is_empty() {
        return None;
    }
    let mut total = Duration::ZERO;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        if digits == 0 {
            return None;
        }
        let number: u64 = rest[..digits].parse().ok()?;
        rest = &rest[digits..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(rest.len());
        let part = match &rest[..unit_len] {
            "ms" => Duration::from_millis(number),
            "s" => Duration::from_secs(number),
            "m" => Duration::from_secs(number.checked_mul(60)?),
            "h" => Duration::from_secs(number.checked_mul(3600)?),
            "d" => Duration::from_secs(number.checked_mul(86400)?),
            _ => return None,
        };
        total = total.checked_add(part)?;
        rest = &rest[unit_len..];
    }
    Some(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn organizations_keep_four_eyes_unless_their_section_says_otherwise() {
        let text = "[organizations.lab]\nallow_self_approval = true\n\
                    [organizations.prod]\nallow_self_approval = false\n";
        let config = Config::resolve(
            None,
            Some(text),
            &Overrides::default(),
            &Overrides::default(),
        )
        .expect("resolves");
        let allowed = |id: &str| config.organizations.get(id).map(|p| p.allow_self_approval);
        assert_eq!(allowed("lab"), Some(true));
        assert_eq!(allowed("prod"), Some(false));
        assert_eq!(allowed("unnamed"), None);
        let err = Config::resolve(
            None,
            Some("[organizations.lab]\nself_approval = true\n"),
            &Overrides::default(),
            &Overrides::default(),
        )
        .expect_err("a misspelt key");
        assert!(
            err.to_string().contains("unknown field `self_approval`"),
            "{err}"
        );
    }

    #[test]
    fn the_store_is_embedded_unless_a_postgresql_url_is_given_and_flags_win() {
        let none = Overrides::default();
        let embedded = Config::resolve(None, None, &none, &none).expect("defaults");
        assert_eq!(embedded.store, StoreSettings::default());
        let text = "[store]\nurl = \"postgres://ym@db:5432/ym\"\n\
                    credential_key_file = \"/etc/ym/credentials.key\"\nengine = \"engine-a\"\n";
        let file = Config::resolve(None, Some(text), &none, &none).expect("resolves");
        assert_eq!(file.store.url.as_deref(), Some("postgres://ym@db:5432/ym"));
        assert_eq!(
            file.store.credential_key_file.as_deref(),
            Some(Path::new("/etc/ym/credentials.key"))
        );
        assert_eq!(file.store.engine.as_deref(), Some("engine-a"));
        let env = Overrides {
            store_url: Some("postgres://ym@env:5432/ym".into()),
            ..Overrides::default()
        };
        let flags = Overrides {
            store_url: Some("postgresql://ym@flag:5432/ym".into()),
            ..Overrides::default()
        };
        let layered = Config::resolve(None, Some(text), &env, &none).expect("env");
        assert_eq!(
            layered.store.url.as_deref(),
            Some("postgres://ym@env:5432/ym")
        );
        let layered = Config::resolve(None, Some(text), &env, &flags).expect("flags");
        assert_eq!(
            layered.store.url.as_deref(),
            Some("postgresql://ym@flag:5432/ym")
        );
        let err = Config::resolve(
            None,
            Some("[store]\nurl = \"mysql://db/ym\"\n"),
            &none,
            &none,
        )
        .expect_err("not PostgreSQL");
        assert!(err.to_string().contains("store.url"), "{err}");
        let err = Config::resolve(None, Some("[store]\nmax_connections = 1\n"), &none, &none)
            .expect_err("too small a pool");
        assert!(err.to_string().contains("store.max_connections"), "{err}");
        let err = Config::resolve(None, Some("[store]\nengine = \"a b\"\n"), &none, &none)
            .expect_err("a name with a space");
        assert!(err.to_string().contains("store.engine"), "{err}");
    }

    #[test]
    fn tls_ca_file_is_read_and_checked_when_loaded() {
        let dir = tempfile::tempdir().expect("tmp");
        let resolve = |file: &Path| {
            let text = format!("[tls]\nca_file = {:?}\n", file.to_string_lossy());
            Config::resolve(
                None,
                Some(&text),
                &Overrides::default(),
                &Overrides::default(),
            )
        };
        let err = resolve(&dir.path().join("missing.pem")).expect_err("a missing file");
        assert!(
            err.to_string().starts_with("tls.ca_file: cannot read"),
            "{err}"
        );

        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "not a certificate\n").expect("write");
        let err = resolve(&empty).expect_err("no certificate in it");
        assert!(err.to_string().contains("holds no certificate"), "{err}");

        let broken = dir.path().join("broken.pem");
        std::fs::write(
            &broken,
            "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
        )
        .expect("write");
        let err = resolve(&broken).expect_err("not a certificate");
        assert!(
            err.to_string().starts_with("tls.ca_file: certificate 1 of")
                && err.to_string().contains("cannot be trusted"),
            "{err}"
        );

        let names = vec!["routers.example".to_owned()];
        let pem = [
            rcgen::generate_simple_self_signed(names.clone()).expect("cert"),
            rcgen::generate_simple_self_signed(names).expect("cert"),
        ]
        .map(|key| key.cert.pem())
        .concat();
        let good = dir.path().join("ca.pem");
        std::fs::write(&good, pem).expect("write");
        let config = resolve(&good).expect("two certificates");
        assert_eq!(config.trusted_certificates.len(), 2);

        // The environment's file replaces the config file's.
        let env = Overrides {
            tls_ca_file: Some(dir.path().join("missing-too.pem")),
            ..Overrides::default()
        };
        let text = format!("[tls]\nca_file = {:?}\n", good.to_string_lossy());
        let err = Config::resolve(None, Some(&text), &env, &Overrides::default())
            .expect_err("the environment's file is missing");
        assert!(err.to_string().contains("missing-too.pem"), "{err}");
    }

    #[test]
    fn http_timeouts_and_the_organization_share_are_read_and_checked() {
        let none = Overrides::default();
        let config = Config::resolve(None, None, &none, &none).expect("defaults");
        assert_eq!(config.http, HttpSettings::default());
        assert_eq!(config.organization_plugin_call_share, 0.5);
        let file = "organization_plugin_call_share = 0.25\n[http]\nheader_read_timeout = \"2s\"\nidle_timeout = \"1m\"\n";
        let config = Config::resolve(None, Some(file), &none, &none).expect("resolves");
        assert_eq!(config.http.header_read_timeout, Duration::from_secs(2));
        assert_eq!(config.http.idle_timeout, Duration::from_secs(60));
        assert_eq!(config.organization_plugin_call_share, 0.25);
        let config = Config::resolve(
            None,
            Some("[runner]\norganization_share = 0.75\n"),
            &none,
            &none,
        )
        .expect("resolves");
        assert_eq!(config.runner.organization_share, 0.75);
        assert!(
            Config::resolve(
                None,
                Some("[runner]\norganization_share = 0.0\n"),
                &none,
                &none
            )
            .is_err()
        );
        for bad in [
            "organization_plugin_call_share = 0.0",
            "organization_plugin_call_share = 1.5",
            "[http]\nheader_read_timeout = \"0s\"",
            "[http]\nidle_timeout = \"soon\"",
        ] {
            assert!(
                Config::resolve(None, Some(bad), &none, &none).is_err(),
                "{bad} accepted"
            );
        }
    }

    #[test]
    fn defaults_work_without_a_file() {
        let config = Config::resolve(None, None, &Overrides::default(), &Overrides::default())
            .expect("defaults resolve");
        assert_eq!(config.data_dir, PathBuf::from("./yardmaster-data"));
        assert_eq!(config.plugins_dir, PathBuf::from("./plugins"));
        assert_eq!(config.listen.to_string(), "127.0.0.1:8080");
        assert_eq!(config.plugin_defaults.memory_bytes, 64 * 1024 * 1024);
        assert_eq!(config.plugin_defaults.timeout, Duration::from_secs(30));
    }

    #[test]
    fn flags_beat_environment_beat_file() {
        let file =
            "data_dir = \"/file\"\nplugins_dir = \"/file-plugins\"\nlisten = \"127.0.0.1:1\"\n";
        let env = Overrides {
            data_dir: Some("/env".into()),
            listen: Some("127.0.0.1:2".into()),
            ..Overrides::default()
        };
        let flags = Overrides {
            listen: Some("127.0.0.1:3".into()),
            ..Overrides::default()
        };
        let config = Config::resolve(None, Some(file), &env, &flags).expect("resolves");
        assert_eq!(config.data_dir, PathBuf::from("/env"));
        assert_eq!(config.plugins_dir, PathBuf::from("/file-plugins"));
        assert_eq!(config.listen.to_string(), "127.0.0.1:3");
    }

    #[test]
    fn plugin_sections_inherit_defaults() {
        let file = r#"
            [plugin_defaults]
            timeout = "5s"
            [plugins.webhook]
            memory = "128MiB"
            allow = ["hooks.example.com:443"]
            [plugins.webhook.config]
            secret = "s3cret"
            retries = 3
        "#;
        let config = Config::resolve(
            None,
            Some(file),
            &Overrides::default(),
            &Overrides::default(),
        )
        .expect("resolves");
        let webhook = config.plugin("webhook");
        assert_eq!(webhook.limits.memory_bytes, 128 * 1024 * 1024);
        assert_eq!(webhook.limits.timeout, Duration::from_secs(5));
        assert_eq!(webhook.allow, vec!["hooks.example.com:443".to_string()]);
        assert_eq!(
            webhook.config.get("secret").map(String::as_str),
            Some("s3cret")
        );
        assert_eq!(webhook.config.get("retries").map(String::as_str), Some("3"));
        assert_eq!(
            config.plugin("other").limits.timeout,
            Duration::from_secs(5)
        );
        assert_eq!(config.max_plugin_memory(), 128 * 1024 * 1024);
    }

    #[test]
    fn bad_values_name_their_key() {
        let err = Config::resolve(
            None,
            Some("[plugins.x]\ntimeout = \"soon\"\n"),
            &Overrides::default(),
            &Overrides::default(),
        )
        .expect_err("bad timeout");
        assert_eq!(
            err.to_string(),
            "plugins.x.timeout: `soon` is not a duration like 30s, 500ms or 2m"
        );
        let err = Config::resolve(
            None,
            Some("lisen = 1\n"),
            &Overrides::default(),
            &Overrides::default(),
        )
        .expect_err("unknown key");
        assert!(err.to_string().contains("unknown field `lisen`"), "{err}");
        let flags = Overrides {
            listen: Some("localhost".into()),
            ..Overrides::default()
        };
        let err =
            Config::resolve(None, None, &Overrides::default(), &flags).expect_err("bad listen");
        assert!(err.to_string().starts_with("listen: `localhost`"), "{err}");
    }

    #[test]
    fn the_runner_section_sets_the_limits() {
        let none = Overrides::default();
        let file = "[runner]\nmax_jobs = 512\nmax_jobs_per_launch = 128\njob_timeout = \"90s\"\nmax_attempts = 2\n";
        let config = Config::resolve(None, Some(file), &none, &none).expect("valid");
        assert_eq!(config.runner.global_concurrency, 512);
        assert_eq!(config.runner.run_concurrency, 128);
        assert_eq!(config.runner.job_timeout, Duration::from_secs(90));
        assert_eq!(config.runner.max_attempts, 2);
        // Set by the operator, so the start-up budget keeps them.
        assert_eq!(
            config.concurrency,
            crate::budget::Requested {
                jobs: Some(512),
                jobs_per_launch: Some(128),
                plugin_calls: None,
            }
        );
        let defaults = Config::resolve(None, None, &none, &none).expect("defaults");
        assert_eq!(
            defaults.runner.run_concurrency,
            RunnerSettings::default().run_concurrency
        );
        // Left to the budget, from defaults sized for waiting on routers.
        assert_eq!(defaults.concurrency, crate::budget::Requested::default());
        assert_eq!(
            defaults.runner.global_concurrency,
            crate::budget::DEFAULT_JOBS
        );
        assert_eq!(
            defaults.max_concurrent_plugin_calls,
            crate::budget::DEFAULT_PLUGIN_CALLS
        );
        let calls = Config::resolve(
            None,
            Some("max_concurrent_plugin_calls = 100\n"),
            &none,
            &none,
        )
        .expect("valid");
        assert_eq!(calls.concurrency.plugin_calls, Some(100));

        for (text, message) in [
            (
                "[runner]\nmax_jobs = 0\n",
                "runner.max_jobs: must be at least 1",
            ),
            (
                "[runner]\nmax_jobs_per_launch = 0\n",
                "runner.max_jobs_per_launch: must be at least 1",
            ),
            (
                "[runner]\njob_timeout = \"later\"\n",
                "runner.job_timeout: `later` is not a duration like 90s or 5m",
            ),
            (
                "[runner]\nmax_attempts = 0\n",
                "runner.max_attempts: must be from 1 to 100",
            ),
        ] {
            let err = Config::resolve(None, Some(text), &none, &none).expect_err(text);
            assert_eq!(err.to_string(), message);
        }
    }

    #[test]
    fn an_issuer_comes_from_the_file_and_the_environment() {
        let file = "[auth]\nissuer = \"https://sso.example.com/\"\naudience = \"yardmaster\"\njwks_file = \"/etc/jwks.json\"\n";
        let none = Overrides::default();
        let config = Config::resolve(None, Some(file), &none, &none).expect("resolves");
        assert_eq!(
            config.auth,
            Some(IssuerSettings {
                issuer: "https://sso.example.com/".into(),
                audience: Some("yardmaster".into()),
                keys: IssuerKeys::JwksFile("/etc/jwks.json".into()),
            })
        );
        assert_eq!(Config::default().auth, None);

        // A key source from the environment replaces the file's.
        let env = FileAuth {
            public_key_pem: Some("/etc/issuer.pem".into()),
            ..FileAuth::default()
        };
        let config = Config::resolve_with(None, Some(file), &none, &none, env).expect("resolves");
        let auth = config.auth.expect("issuer");
        assert_eq!(
            auth.keys,
            IssuerKeys::PublicKeyPem("/etc/issuer.pem".into())
        );
        assert_eq!(auth.issuer, "https://sso.example.com/");

        let env = FileAuth {
            issuer: Some("https://env.example.com/".into()),
            jwks_file: Some("/env/jwks.json".into()),
            ..FileAuth::default()
        };
        let auth = Config::resolve_with(None, None, &none, &none, env)
            .expect("resolves")
            .auth
            .expect("issuer");
        assert_eq!(auth.issuer, "https://env.example.com/");
        assert_eq!(auth.audience, None);
    }

    #[test]
    fn an_incomplete_issuer_is_refused() {
        let none = Overrides::default();
        let refused = |text: &str| {
            Config::resolve(None, Some(text), &none, &none)
                .expect_err(text)
                .to_string()
        };
        assert!(refused("[auth]\nissuer = \"x\"\n").contains("jwks_file or public_key_pem"));
        assert!(refused("[auth]\njwks_file = \"k.json\"\n").starts_with("auth.issuer:"));
        assert!(
            refused("[auth]\nissuer = \"x\"\njwks_file = \"a\"\npublic_key_pem = \"b\"\n")
                .contains("not both")
        );
        assert!(refused("[auth]\naudience = \"y\"\n").starts_with("auth.audience:"));
        assert!(refused("[auth]\nkey = \"y\"\n").contains("unknown field `key`"));
    }

    #[test]
    fn ssh_legacy_algorithms_are_on_unless_turned_off() {
        let none = Overrides::default();
        let config = Config::resolve(None, Some(""), &none, &none).expect("defaults");
        assert!(config.ssh_legacy_algorithms);
        let file = "[ssh]\nlegacy_algorithms = false\n";
        let config = Config::resolve(None, Some(file), &none, &none).expect("file");
        assert!(!config.ssh_legacy_algorithms);
        assert!(
            Config::resolve(None, Some("[ssh]\nciphers = []\n"), &none, &none)
                .expect_err("unknown key")
                .to_string()
                .contains("unknown field `ciphers`")
        );
    }

    #[test]
    fn sites_allow_comes_from_the_file_or_the_environment() {
        let none = Overrides::default();
        let config = Config::resolve(None, None, &none, &none).expect("defaults");
        assert_eq!(config.sites_allow.entries(), None);
        assert!(config.sites_allow.check_address("127.0.0.1").is_err());

        let file = "[sites]\nallow = [\"10.0.0.0/8\", \"127.0.0.0/8\"]\n";
        let config = Config::resolve(None, Some(file), &none, &none).expect("resolves");
        assert_eq!(
            config.sites_allow.entries(),
            Some(vec!["10.0.0.0/8".to_owned(), "127.0.0.0/8".to_owned()])
        );
        assert!(config.sites_allow.check_address("127.0.0.1").is_ok());
        assert!(config.sites_allow.check_address("192.0.2.1").is_err());

        let env = Overrides {
            sites_allow: Some("*, 169.254.0.0/16".into()),
            ..Overrides::default()
        };
        let config = Config::resolve(None, Some(file), &env, &none).expect("resolves");
        assert_eq!(
            config.sites_allow.entries(),
            Some(vec!["*".to_owned(), "169.254.0.0/16".to_owned()])
        );

        let err = Config::resolve(
            None,
            Some("[sites]\nallow = [\"10.0.0.0/33\"]\n"),
            &none,
            &none,
        )
        .expect_err("a bad entry");
        assert!(
            err.to_string()
                .starts_with("sites.allow: allow-list entry `10.0.0.0/33`"),
            "{err}"
        );
    }

    #[test]
    fn sizes_and_durations() {
        assert_eq!(parse_size("64MiB"), Some(64 << 20));
        assert_eq!(parse_size("1 GiB"), Some(1 << 30));
        assert_eq!(parse_size("4096"), Some(4096));
        assert_eq!(parse_size("lots"), None);
        assert_eq!(parse_duration("1m30s"), Some(Duration::from_secs(90)));
        assert_eq!(parse_duration("250ms"), Some(Duration::from_millis(250)));
        assert_eq!(parse_duration("30"), None);
        assert_eq!(parse_duration(""), None);
    }
}
