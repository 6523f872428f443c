//! `GET /healthz`: 200 once the engine is ready, 503 before.

use std::sync::atomic::Ordering;

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{Value, json};

use super::AppState;

async fn healthz(State(state): State<AppState>) -> (StatusCode, Json<Value>) {
    if state.ready.load(Ordering::Acquire) {
        let plugins = state.plugins.list();
        let active = plugins.iter().filter(|p| p.status == "active").count();
        (
            StatusCode::OK,
            Json(json!({
                "status": "ok",
                "version": env!("CARGO_PKG_VERSION"),
                "plugins": {"active": active, "failed": plugins.len() - active},
            })),
        )
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"status": "starting"})),
        )
    }
}

pub(super) fn routes() -> Router<AppState> {
    Router::new().route("/healthz", get(healthz))
}
