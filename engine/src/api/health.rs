//! `GET /healthz`: 200 once the engine is ready, 503 before (and while it stops). Open:
//! a load balancer or an orchestrator's probe sends no token.

use std::sync::atomic::Ordering;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::Serialize;
use utoipa::ToSchema;

use super::AppState;

/// The engine is ready.
#[derive(Debug, Serialize, ToSchema)]
struct Healthy {
    #[schema(example = "ok")]
    status: String,
    /// The engine's version.
    version: String,
    plugins: PluginTally,
}

/// Plugin files by state.
#[derive(Debug, Serialize, ToSchema)]
struct PluginTally {
    active: usize,
    /// Files that did not load; `GET /plugins` gives each reason.
    failed: usize,
}

/// The engine is starting or stopping.
#[derive(Debug, Serialize, ToSchema)]
struct NotReady {
    #[schema(example = "starting")]
    status: String,
}

#[utoipa::path(
    get,
    path = "/healthz",
    tag = "operations",
    summary = "Is the engine ready",
    description = "200 once the plugins folder has been loaded and the engine serves, 503 before that and while it stops. Needs no token.",
    responses(
        (status = 200, description = "Ready", body = Healthy),
        (status = 503, description = "Starting or stopping", body = NotReady),
    )
)]
async fn healthz(State(state): State<AppState>) -> Response {
    if state.ready.load(Ordering::Acquire) {
        let plugins = state.plugins.list();
        let active = plugins.iter().filter(|p| p.status == "active").count();
        let body = Healthy {
            status: "ok".to_owned(),
            version: env!("CARGO_PKG_VERSION").to_owned(),
            plugins: PluginTally {
                active,
                failed: plugins.len() - active,
            },
        };
        (StatusCode::OK, Json(body)).into_response()
    } else {
        let body = NotReady {
            status: "starting".to_owned(),
        };
        (StatusCode::SERVICE_UNAVAILABLE, Json(body)).into_response()
    }
}

#[derive(utoipa::OpenApi)]
#[openapi(
    paths(healthz),
    components(schemas(Healthy, PluginTally, NotReady)),
    tags((name = "operations", description = "Health and metrics; open, no token."))
)]
pub(super) struct Doc;

pub(super) fn routes() -> Router<AppState> {
    Router::new().route("/healthz", get(healthz))
}

#[cfg(test)]
mod tests {
    use axum::body::Body;
    use axum::http::{Request, StatusCode};
    use tower::ServiceExt;

    use crate::api::app;
    use crate::api::test_support::state;

    #[tokio::test]
    async fn ready_is_200_and_starting_is_503_without_a_token() {
        let test = state();
        let get = || {
            Request::get("/healthz")
                .body(Body::empty())
                .expect("request")
        };
        let response = app(test.state.clone())
            .oneshot(get())
            .await
            .expect("response");
        assert_eq!(response.status(), StatusCode::OK);
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 16)
            .await
            .expect("body");
        let body: serde_json::Value = serde_json::from_slice(&bytes).expect("json");
        assert_eq!(body["status"], "ok");
        assert_eq!(body["plugins"]["active"], 0);

        test.state
            .ready
            .store(false, std::sync::atomic::Ordering::Release);
        let response = app(test.state.clone())
            .oneshot(get())
            .await
            .expect("response");
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    }
}
