//! `yardmaster serve`: load the plugins, serve the API, reload plugins on change, and
//! stop cleanly on SIGTERM or Ctrl-C.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::sync::watch;

use crate::api::{self, AppState};
use crate::budget::{Budget, Resources};
use crate::config::Config;
use crate::plugins::{self, Change, HostOptions, PluginHost};
use crate::runner::fanout::{RunReport, Runner};
use crate::scheduler::launcher::Launcher;
use crate::store::postgres::PgStore;
use crate::store::{Backend, CredentialKey, Store};

/// The longest the launcher sleeps between looks at the due schedules. It wakes for the
/// earliest launch, and whenever a schedule is created, edited, approved, cancelled or
/// deleted, so this only bounds how late a launch could be after the wall clock jumps.
const LAUNCHER_TICK: Duration = Duration::from_secs(10);

/// Why the engine could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("cannot create the data directory {path}: {source}")]
    DataDir {
        path: String,
        source: std::io::Error,
    },
    #[error("cannot install the bundled plugins into {path}: {source}")]
    Bundled {
        path: String,
        source: std::io::Error,
    },
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: std::net::SocketAddr,
        source: std::io::Error,
    },
    #[error("cannot start the plugin host: {0}")]
    Plugins(String),
    #[error("cannot read the token key: {0}")]
    Auth(String),
    #[error("cannot read the notification signing key: {0}")]
    Notify(String),
    #[error("the HTTP server failed: {0}")]
    Http(std::io::Error),
    #[error("cannot open the state in {path}: {source}")]
    Store {
        path: String,
        source: crate::store::StoreError,
    },
}

/// A shutdown signal many tasks can wait on.
#[derive(Clone)]
pub struct Shutdown(watch::Receiver<bool>);

impl Shutdown {
    pub fn new() -> (watch::Sender<bool>, Shutdown) {
        let (tx, rx) = watch::channel(false);
        (tx, Shutdown(rx))
    }

    /// Resolves once shutdown is signalled (or the sender is gone).
    pub async fn wait(mut self) {
        let _ = self.0.wait_for(|stop| *stop).await;
    }
}

/// Resolves on SIGTERM or Ctrl-C.
pub async fn termination() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = term => {}
    }
}

/// Sets the limits the operator left unset to what this machine holds, and says why.
fn size_concurrency(mut config: Config) -> Config {
    let budget = Budget::plan(
        config.concurrency,
        &Resources::detect(),
        plugins::call_cost(config.max_plugin_memory()),
    );
    tracing::info!("{}", budget.summary());
    for warning in budget.warnings() {
        tracing::warn!("{warning}");
    }
    config.max_concurrent_plugin_calls = budget.plugin_calls;
    config.runner.global_concurrency = budget.jobs;
    config.runner.run_concurrency = budget.jobs_per_launch;
    config
}

/// Runs the engine until `shutdown` resolves.
pub async fn run(
    config: Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError> {
    std::fs::create_dir_all(&config.data_dir).map_err(|source| ServeError::DataDir {
        path: config.data_dir.display().to_string(),
        source,
    })?;
    if config.install_bundled_plugins {
        let written =
            plugins::install_bundled(&config.plugins_dir, &config.data_dir).map_err(|source| {
                ServeError::Bundled {
                    path: config.plugins_dir.display().to_string(),
                    source,
                }
            })?;
        if !written.is_empty() {
            tracing::info!(
                "installed the bundled plugins into {}: {}",
                config.plugins_dir.display(),
                written.join(", ")
            );
        }
    }
    std::fs::create_dir_all(&config.plugins_dir).map_err(|source| ServeError::DataDir {
        path: config.plugins_dir.display().to_string(),
        source,
    })?;
    let store = Arc::new(open_store(&config).await?);
    // Before anything runs: a job this engine left running when it stopped is failed as
    // interrupted when its script may have reached the router, and queued again when it
    // cannot have.
    let recovery = store
        .recover(chrono::Utc::now())
        .await
        .map_err(|source| ServeError::Store {
            path: store.describe(),
            source,
        })?;
    if !recovery.interrupted.is_empty() || !recovery.requeued.is_empty() {
        tracing::warn!(
            interrupted = recovery.interrupted.len(),
            requeued = recovery.requeued.len(),
            "recovered jobs left running by the last stop"
        );
    }
    store.listen().await.map_err(|source| ServeError::Store {
        path: store.describe(),
        source,
    })?;
    let config = size_concurrency(config);
    let host = PluginHost::new(HostOptions::from_config(&config)).map_err(ServeError::Plugins)?;
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .map_err(|source| ServeError::Listen {
            addr: config.listen,
            source,
        })?;
    let addr = listener.local_addr().unwrap_or(config.listen);
    let ready = Arc::new(AtomicBool::new(false));
    let (stop, stopped) = Shutdown::new();
    let token_key = store
        .signing_secret(
            &config.data_dir,
            crate::auth::KEY_FILE,
            crate::auth::KEY_LEN,
        )
        .await
        .map_err(ServeError::Auth)?;
    let auth = crate::auth::Authenticator::with_issuer(&token_key, config.auth.as_ref())
        .map_err(|e| ServeError::Auth(e.to_string()))?;
    if let Some(issuer) = auth.issuer() {
        tracing::info!("accepting RS256 tokens issued by {issuer}");
    }
    let runner = Runner::new(store.clone(), host.clone(), config.runner.clone());
    let notify_key = store
        .signing_secret(
            &config.data_dir,
            crate::notify::SIGNING_KEY_FILE,
            crate::notify::SIGNING_KEY_LEN,
        )
        .await
        .map_err(ServeError::Notify)?;
    let notifications = crate::notify::Notifications::with_key(
        config.notify.clone(),
        &notify_key,
        format!("http://{addr}"),
    );
    match config.sites_allow.entries() {
        Some(list) => tracing::info!("sites may point at: {} ([sites] allow)", list.join(", ")),
        None => tracing::info!(
            "sites may point anywhere but loopback, link-local, unspecified and cloud \
             metadata addresses ([sites] allow is not set)"
        ),
    }
    for (organization, policy) in &config.organizations {
        if policy.allow_self_approval {
            tracing::warn!(
                "organization {organization}: creators may approve their own scheduled scripts \
                 (allow_self_approval)"
            );
        }
    }
    tokio::spawn(crate::summaries::run(
        store.clone(),
        host.clone(),
        stopped.clone().wait(),
    ));
    let community = crate::community::Wake::default();
    tokio::spawn(crate::community::run(
        store.clone(),
        host.clone(),
        community.clone(),
        stopped.clone().wait(),
    ));
    let state = AppState {
        store: store.clone(),
        runner: runner.clone(),
        auth: Arc::new(auth),
        plugins: host.clone(),
        shutdown: stopped.clone(),
        ready: ready.clone(),
        notifications: notifications.clone(),
        organizations: Arc::new(config.organizations.clone()),
        templates: global_templates(&config, &stopped),
        community: community.clone(),
        listings: Default::default(),
    };
    let server = tokio::spawn(api::serve(
        listener,
        state,
        config.http,
        stopped.clone().wait(),
    ));
    tracing::info!("listening on http://{addr}");

    let changes = host.reconcile().await;
    let failed = changes
        .iter()
        .filter(|c| matches!(c, Change::Failed { .. }))
        .count();
    tracing::info!(
        "loaded {} plugin(s) from {}{}",
        changes.len() - failed,
        config.plugins_dir.display(),
        if failed > 0 {
            format!(", {failed} failed (see GET /plugins)")
        } else {
            String::new()
        }
    );
    let watcher = tokio::spawn(plugins::watch(host.clone(), stopped.clone().wait()));
    let leases = store.as_postgres().is_some().then(|| {
        let (runner, stopped) = (runner.clone(), stopped.clone());
        tokio::spawn(async move { runner.keep_claims(stopped).await })
    });
    let jobs = {
        let (runner, stopped) = (runner.clone(), stopped.clone());
        tokio::spawn(async move {
            match runner.resume_pending(stopped.clone()).await {
                Ok(report) if report != RunReport::default() => {
                    tracing::info!(?report, "resumed the jobs pending at start");
                }
                Ok(_) => {}
                Err(e) => tracing::error!(error = %e, "cannot resume pending jobs"),
            }
            runner.serve(stopped).await;
        })
    };
    let launcher = Launcher::new(store.clone(), runner.clone(), LAUNCHER_TICK);
    let scheduler = {
        let stopped = stopped.clone();
        tokio::spawn(async move { launcher.serve(stopped).await })
    };
    let deliverer = {
        let deliverer = Arc::new(crate::notify::Deliverer::new(
            store.clone(),
            host.clone(),
            notifications,
        ));
        tokio::spawn(deliverer.serve(stopped.clone()))
    };
    ready.store(true, Ordering::Release);
    tracing::info!("ready");

    shutdown.await;
    tracing::info!("shutting down");
    ready.store(false, Ordering::Release);
    let _ = stop.send(true);
    let _ = watcher.await;
    if let Some(leases) = leases {
        let _ = leases.await;
    }
    let _ = scheduler.await;
    let _ = deliverer.await;
    let _ = jobs.await;
    runner.drain().await;
    match server.await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(ServeError::Http(e)),
        Err(e) => Err(ServeError::Http(std::io::Error::other(e.to_string()))),
    }
}

/// Opens the store the configuration names: the PostgreSQL database of `[store] url`
/// (its migrations applied, its credential key checked), listened to for what the other
/// engines change; otherwise the embedded store in the data dir.
async fn open_store(config: &Config) -> Result<Backend, ServeError> {
    let Some(url) = &config.store.url else {
        let store = Store::open(&config.data_dir).map_err(|source| ServeError::Store {
            path: config.data_dir.display().to_string(),
            source,
        })?;
        return Ok(Backend::redb(store));
    };
    let engine =
        crate::store::backend::engine_name(&config.data_dir, config.store.engine.as_deref())
            .map_err(shared_store_error)?;
    let pool = config
        .store
        .max_connections
        .unwrap_or(crate::store::postgres::POOL_SIZE);
    let store = connect_shared(config, url, pool).await?;
    tracing::info!(
        "keeping state in PostgreSQL at {} as engine {engine} (credential key: {})",
        store.address(),
        credential_key(config).describe()
    );
    Ok(Backend::postgres(store, engine))
}

/// Connects to the PostgreSQL database at `url` with a pool of `pool` connections, with
/// the credential key the configuration names: `YARDMASTER_CREDENTIAL_KEY`, else `[store]
/// credential_key_file`, else `credentials.key` in the data dir.
pub(crate) async fn connect_shared(
    config: &Config,
    url: &str,
    pool: usize,
) -> Result<PgStore, ServeError> {
    PgStore::connect_with(url, &credential_key(config), pool)
        .await
        .map_err(shared_store_error)
}

fn credential_key(config: &Config) -> CredentialKey {
    match std::env::var("YARDMASTER_CREDENTIAL_KEY") {
        Ok(hex) if !hex.is_empty() => CredentialKey::Hex(hex),
        _ => CredentialKey::File(
            config
                .store
                .credential_key_file
                .clone()
                .unwrap_or_else(|| config.data_dir.join(crate::store::CREDENTIAL_KEY_FILE)),
        ),
    }
}

/// The URL may hold a password: messages name the setting, and the store's own errors
/// the server's address.
fn shared_store_error(source: crate::store::StoreError) -> ServeError {
    ServeError::Store {
        path: "the PostgreSQL database of [store] url".to_owned(),
        source,
    }
}

/// Reads the global templates from `templates_dir` and keeps them in step with it until
/// the engine stops.
fn global_templates(config: &Config, stopped: &Shutdown) -> crate::templates::GlobalTemplates {
    let dir = config.templates_dir.clone();
    let (loaded, errors) = crate::templates::load_dir(&dir);
    for e in &errors {
        tracing::warn!(template = %e, "a global template was not loaded");
    }
    tracing::info!(
        "loaded {} global template(s) from {}",
        loaded.len(),
        dir.display()
    );
    let templates = crate::templates::GlobalTemplates::new(loaded);
    tokio::spawn(crate::templates::watch(
        dir,
        templates.clone(),
        stopped.clone().wait(),
    ));
    templates
}
