//! The embedded HTTP API (axum). [`app`] builds the router, so tests drive it with
//! `oneshot` and no socket; [`serve`] runs it on a listener until shutdown.
//!
//! One file per resource; every error is an [`ApiError`], answered as
//! `{type, code, message, doc_url}` with the status that fits.

mod auth;
mod error;
mod health;
mod openapi;
mod plugins;

use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use axum::Router;

use crate::auth::Authenticator;
use crate::plugins::PluginHost;
use crate::runner::fanout::Runner;
use crate::store::Store;

pub use auth::Caller;
pub use error::ApiError;
pub use openapi::document as openapi_document;

/// What every handler can reach.
#[derive(Clone)]
pub struct AppState {
    pub store: Arc<Store>,
    /// Runs jobs; asynchronous submissions and synchronous calls go through it.
    pub runner: Runner,
    pub auth: Arc<Authenticator>,
    pub plugins: PluginHost,
    /// Set once the plugins folder has been loaded; `/healthz` answers 503 until then.
    pub ready: Arc<AtomicBool>,
    /// Serve `POST /plugins/{name}/call`. Until the API authenticates callers, the engine
    /// turns it on only when it listens on loopback: a transport call reaches whatever
    /// target it is given, which must not be open to a network.
    pub plugin_calls: bool,
}

/// The whole API.
pub fn app(state: AppState) -> Router {
    Router::new()
        .merge(health::routes())
        .merge(plugins::routes())
        .merge(error::routes())
        .merge(openapi::routes())
        .fallback(error::not_found)
        .with_state(state)
}

/// Serves `app` on `listener` until `shutdown` resolves, letting requests in flight finish.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, app(state))
        .with_graceful_shutdown(shutdown)
        .await
}
