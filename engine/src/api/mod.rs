//! The embedded HTTP API (axum). [`app`] builds the router, so tests drive it with
//! `oneshot` and no socket; [`serve`] runs it on a listener until shutdown, `conn` holds
//! the accept loop and the timeouts that disconnect slow or idle clients.
//!
//! [`routes`] lists every route with the scope it needs; a route missing from it is not
//! served. One file per resource; every error is an [`ApiError`], answered as
//! `{type, code, message, doc_url}` with the status that fits.

mod auth;
mod community;
mod conn;
mod error;
mod genai;
mod health;
mod jobs;
mod lint;
mod metrics;
mod notifications;
mod openapi;
mod plugins;
mod routes;
mod scripts;
mod sites;
mod support;
mod templates;
mod users;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use axum::Router;

use crate::auth::Authenticator;
use crate::plugins::PluginHost;
use crate::runner::fanout::Runner;
use crate::store::Backend;

pub use auth::Caller;
pub use error::ApiError;
pub use genai::GENERATOR_PLUGIN;
pub use openapi::document as openapi_document;
pub use routes::{Access, Route, routes};

/// What every handler can reach.
#[derive(Clone)]
pub struct AppState {
    pub store: Arc<Backend>,
    /// Runs jobs; asynchronous submissions and synchronous calls go through it.
    pub runner: Runner,
    pub auth: Arc<Authenticator>,
    pub plugins: PluginHost,
    /// Resolves when the engine stops; work started by a request (an express job) ends
    /// with it.
    pub shutdown: crate::server::Shutdown,
    /// Set once the plugins folder has been loaded; `/healthz` answers 503 until then.
    pub ready: Arc<AtomicBool>,
    /// Notification settings: which receivers may use plain http, and the secret that
    /// signs deliveries to jobs' notify URLs.
    pub notifications: crate::notify::Notifications,
    /// Approval rules by organization (`[organizations.<id>]` in the config).
    pub organizations: Arc<BTreeMap<String, crate::approval::OrgPolicy>>,
    /// The global script templates, as last read from `templates_dir`.
    pub templates: crate::templates::GlobalTemplates,
    /// Wakes the community library's processor when a submission is queued.
    pub community: crate::community::Wake,
    /// Listing pages as rendered, until the store's next commit.
    pub listings: Arc<scripts::pages::ListingPages>,
}

/// The whole API.
pub fn app(state: AppState) -> Router {
    Router::new()
        .merge(health::routes())
        .merge(plugins::routes())
        .merge(scripts::routes())
        .merge(lint::routes())
        .merge(templates::routes())
        .merge(community::routes())
        .merge(genai::routes())
        .merge(sites::routes())
        .merge(users::routes())
        .merge(jobs::routes())
        .merge(notifications::routes())
        .merge(metrics::routes())
        .merge(error::routes())
        .merge(openapi::routes())
        // After every merge, so it wraps every route: one missing from `routes()` is
        // refused.
        .route_layer(axum::middleware::from_fn(routes::listed_only))
        .fallback(error::not_found)
        // Last, so it times every route merged above (and the fallback).
        .layer(axum::middleware::from_fn(metrics::track))
        .with_state(state)
}

/// Serves `app` on `listener` until `shutdown` resolves, letting requests in flight finish,
/// under the server's timeouts (see `conn`).
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: AppState,
    limits: crate::config::HttpSettings,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    conn::serve(listener, app(state), limits, shutdown).await
}

/// An application state over a fresh data dir and an empty plugins folder, for route
/// tests that drive [`app`] with `oneshot`.
#[cfg(test)]
pub(crate) mod test_support {
    use std::sync::Arc;
    use std::sync::atomic::AtomicBool;

    use super::AppState;
    use crate::auth::{Authenticator, Claims};
    use crate::config::Config;
    use crate::plugins::{HostOptions, PluginHost};
    use crate::runner::fanout::Runner;
    use crate::store::{Backend, Store};

    /// The state, and what must live as long as it does.
    pub(crate) struct TestState {
        pub(crate) state: AppState,
        /// The data dir, removed when the test ends.
        #[allow(dead_code)]
        pub(crate) dir: tempfile::TempDir,
        /// Dropping it would stop the engine's work at once.
        #[allow(dead_code)]
        pub(crate) stop: tokio::sync::watch::Sender<bool>,
    }

    impl TestState {
        /// A bearer token for `sub` of `org` with `scopes`, valid for an hour.
        pub(crate) fn token(&self, sub: &str, org: &str, scopes: &[&str]) -> String {
            self.state.auth.issue(&Claims::new(
                sub,
                org,
                scopes.iter().map(|s| s.to_string()).collect(),
                chrono::Utc::now(),
                chrono::TimeDelta::hours(1),
            ))
        }
    }

    pub(crate) fn state() -> TestState {
        let dir = tempfile::tempdir().expect("data dir");
        let mut options = HostOptions::from_config(&Config::default());
        options.plugins_dir = dir.path().join("plugins");
        options.cache_dir = None;
        options.max_concurrent_calls = 2;
        // Route tests point sites at loopback.
        options.sites_allow = crate::plugins::SiteAllow::with_loopback();
        let plugins = PluginHost::new(options).expect("plugin host");
        let store = Arc::new(Backend::redb(Store::open(dir.path()).expect("store")));
        let (stop, shutdown) = crate::server::Shutdown::new();
        let state = AppState {
            runner: Runner::new(store.clone(), plugins.clone(), Default::default()),
            store,
            auth: Arc::new(Authenticator::from_secret(b"test key")),
            plugins,
            shutdown,
            ready: Arc::new(AtomicBool::new(true)),
            notifications: crate::notify::Notifications::with_key(
                Default::default(),
                b"test key",
                "http://127.0.0.1:8080".into(),
            ),
            organizations: Default::default(),
            templates: Default::default(),
            community: Default::default(),
            listings: Default::default(),
        };
        TestState { state, dir, stop }
    }
}
