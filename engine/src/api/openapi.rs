//! `GET /openapi.json`: the API described from the code. Each resource module documents
//! its handlers with `#[utoipa::path]` and its bodies with `ToSchema`, and offers its own
//! `Doc`; this module merges them, so a route cannot be served without being described
//! unless its module forgets to list it (the test below checks the router against the
//! document).

use axum::routing::get;
use axum::{Json, Router};
use utoipa::OpenApi;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};

use super::AppState;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Yardmaster",
        description = "Schedules, authorizes and executes RouterOS scripts across fleets of routers. Every route but /healthz, /openapi.json, /metrics and /docs/errors takes `Authorization: Bearer <token>`; errors are `{type, code, message, doc_url}`. A job with `make_backup` carries the diff of what its script changed in the router's export; a job or schedule with `rollback_after` is guarded by a dead-man rollback: the router restores the backup taken before the script unless the engine reaches it again afterwards (a job cut off fails `rolled_back`).",
    ),
    modifiers(&BearerAuth)
)]
struct Root;

struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        let components = doc.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .build(),
            ),
        );
    }
}

/// The whole document.
pub fn document() -> utoipa::openapi::OpenApi {
    let mut doc = Root::openapi();
    doc.merge(super::sites::Doc::openapi());
    doc.merge(super::users::Doc::openapi());
    doc.merge(super::jobs::Doc::openapi());
    doc.merge(super::scripts::Doc::openapi());
    doc.merge(super::lint::Doc::openapi());
    doc.merge(super::templates::Doc::openapi());
    doc.merge(super::community::Doc::openapi());
    doc.merge(super::genai::Doc::openapi());
    doc.merge(super::notifications::Doc::openapi());
    doc.merge(super::metrics::Doc::openapi());
    doc.merge(super::health::Doc::openapi());
    doc.merge(super::plugins::Doc::openapi());
    // Resource modules merge their own `Doc` here as they are described.
    doc
}

async fn serve_document() -> Json<utoipa::openapi::OpenApi> {
    Json(document())
}

pub(super) fn routes() -> Router<AppState> {
    Router::new().route("/openapi.json", get(serve_document))
}
