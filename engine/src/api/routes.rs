//! Every route the API serves, with who may call it: [`routes`]. The list is the API's
//! inventory for reviews and for the end-to-end matrix that calls each route without a
//! token, without its scope and from another organization.
//!
//! The list cannot fall behind the router: [`listed_only`] wraps every route, and a
//! request that reaches a route missing from the list is refused as if the route did
//! not exist (and logged as an error), so a new route is unusable until it is listed.
//! The tests below check the other direction (every listed route is served) and that
//! the list and `/openapi.json` describe the same routes.
//!
//! Handlers still check their own scopes (`Caller::require`); [`Access`] records what
//! they check, and the matrix test holds each handler to it.

use axum::extract::{MatchedPath, Request};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::auth::scopes::{
    ENGINE_ADMIN, PLUGIN_MANAGE, PLUGIN_VIEW, SCRIPT_AUTHORIZE, SCRIPT_CREATE, SCRIPT_DELETE,
    SCRIPT_RUN, SCRIPT_UPDATE, SCRIPT_VIEW, SITE_MANAGE, SITE_VIEW,
};

/// Who may call a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Anyone, without a token.
    Public,
    /// Any valid token (of any organization; what it reaches is its own organization's).
    Token,
    /// A token carrying this scope.
    Scope(&'static str),
    /// A token carrying at least one of these scopes.
    AnyScope(&'static [&'static str]),
}

/// One route: an HTTP method and a path template as the router spells it
/// (`/sites/{id}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Route {
    pub method: &'static str,
    pub path: &'static str,
    pub access: Access,
}

const fn route(method: &'static str, path: &'static str, access: Access) -> Route {
    Route {
        method,
        path,
        access,
    }
}

use Access::{AnyScope, Public, Scope, Token};

/// Every route the API serves. A new route is added here in the same change that adds
/// it to its module's router; a route's scope changes here with its handler's.
static ROUTES: &[Route] = &[
    route("GET", "/healthz", Public),
    route("GET", "/openapi.json", Public),
    route("GET", "/metrics", Public),
    route("GET", "/docs/errors", Public),
    route("GET", "/plugins", Scope(PLUGIN_VIEW)),
    route("GET", "/plugins/{name}", Scope(PLUGIN_VIEW)),
    route("POST", "/plugins/{name}/call", Scope(ENGINE_ADMIN)),
    route("GET", "/sites", Scope(SITE_VIEW)),
    route("POST", "/sites", Scope(SITE_MANAGE)),
    route("POST", "/sites/import", Scope(SITE_MANAGE)),
    route("GET", "/sites/{id}", Scope(SITE_VIEW)),
    route("PUT", "/sites/{id}", Scope(SITE_MANAGE)),
    route("DELETE", "/sites/{id}", Scope(SITE_MANAGE)),
    route("GET", "/users", Token),
    route("POST", "/users", Scope(SITE_MANAGE)),
    route("GET", "/users/{id}", Token),
    route("DELETE", "/users/{id}", Scope(SITE_MANAGE)),
    route("POST", "/api/synchronous/{router_id}", Scope(SCRIPT_RUN)),
    route("POST", "/api/asynchronous/{router_id}", Scope(SCRIPT_RUN)),
    route("GET", "/api/routers/{router_id}/jobs", Scope(SCRIPT_VIEW)),
    route("GET", "/api/jobs/{id}", Scope(SCRIPT_VIEW)),
    route("POST", "/scripts/lint", Scope(SCRIPT_VIEW)),
    route("POST", "/scripts/gen-ai", Scope(SCRIPT_CREATE)),
    route("GET", "/scripts/templates", Scope(SCRIPT_VIEW)),
    route("POST", "/scripts/templates", Scope(SCRIPT_CREATE)),
    route("GET", "/scripts/templates/{id}", Scope(SCRIPT_VIEW)),
    route("PUT", "/scripts/templates/{id}", Scope(SCRIPT_UPDATE)),
    route("DELETE", "/scripts/templates/{id}", Scope(SCRIPT_DELETE)),
    route(
        "GET",
        "/scripts/templates/{id}/versions",
        Scope(SCRIPT_VIEW),
    ),
    route(
        "GET",
        "/scripts/templates/{id}/versions/{n}",
        Scope(SCRIPT_VIEW),
    ),
    route("POST", "/scripts/templates/{id}/render", Scope(SCRIPT_VIEW)),
    route("GET", "/scripts/community-scripts", Scope(SCRIPT_VIEW)),
    route("POST", "/scripts/community-scripts", Scope(SCRIPT_CREATE)),
    route("GET", "/scripts/community-scripts/{id}", Scope(SCRIPT_VIEW)),
    route(
        "POST",
        "/scripts/community-scripts/{id}/refresh",
        Scope(SCRIPT_CREATE),
    ),
    route("GET", "/scripts/scheduled", Scope(SCRIPT_VIEW)),
    route("POST", "/scripts/scheduled", Scope(SCRIPT_CREATE)),
    route("DELETE", "/scripts/scheduled", Scope(SCRIPT_DELETE)),
    route("GET", "/scripts/scheduled/{id}", Scope(SCRIPT_VIEW)),
    route("PUT", "/scripts/scheduled/{id}", Scope(SCRIPT_UPDATE)),
    route("DELETE", "/scripts/scheduled/{id}", Scope(SCRIPT_DELETE)),
    // With `?token=` (an approval link), this answers a confirm page without a token;
    // the page shows nothing of the schedule and approves nothing by itself.
    route(
        "GET",
        "/scripts/scheduled/{id}/authorize",
        AnyScope(&[SCRIPT_CREATE, SCRIPT_UPDATE]),
    ),
    route(
        "POST",
        "/scripts/scheduled/{id}/authorize",
        Scope(SCRIPT_AUTHORIZE),
    ),
    route(
        "POST",
        "/scripts/scheduled/{id}/cancel",
        AnyScope(&[SCRIPT_UPDATE, SCRIPT_DELETE]),
    ),
    route(
        "GET",
        "/scripts/scheduled/{id}/occurrences",
        Scope(SCRIPT_VIEW),
    ),
    route("GET", "/scripts/scheduled/{id}/runs", Scope(SCRIPT_VIEW)),
    route(
        "GET",
        "/scripts/scheduled/{id}/progress",
        Scope(SCRIPT_VIEW),
    ),
    route("GET", "/notifications/channels", Scope(PLUGIN_VIEW)),
    route("POST", "/notifications/channels", Scope(PLUGIN_MANAGE)),
    route("GET", "/notifications/channels/{id}", Scope(PLUGIN_VIEW)),
    route(
        "DELETE",
        "/notifications/channels/{id}",
        Scope(PLUGIN_MANAGE),
    ),
    route(
        "POST",
        "/notifications/channels/{id}/rotate-secret",
        Scope(PLUGIN_MANAGE),
    ),
    route("GET", "/notifications/dead-letters", Scope(PLUGIN_VIEW)),
    route(
        "POST",
        "/notifications/dead-letters/{id}/retry",
        Scope(PLUGIN_MANAGE),
    ),
    route("GET", "/notifications/signing-secret", Scope(PLUGIN_MANAGE)),
    route(
        "POST",
        "/notifications/signing-secret/rotate",
        Scope(PLUGIN_MANAGE),
    ),
];

/// Every route the API serves, with who may call it.
pub fn routes() -> &'static [Route] {
    ROUTES
}

/// The listed route `method` `path` (a template), if any. `HEAD` is served by `GET`.
fn listed(method: &str, path: &str) -> Option<&'static Route> {
    let method = if method == "HEAD" { "GET" } else { method };
    ROUTES.iter().find(|r| r.method == method && r.path == path)
}

/// Middleware on every route: refuses a request whose route is not in [`routes`], as
/// the router answers a path it does not know.
pub(super) async fn listed_only(request: Request, next: Next) -> Response {
    let path = request
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned());
    let method = request.method().as_str().to_owned();
    match path {
        Some(path) if listed(&method, &path).is_some() => next.run(request).await,
        path => {
            tracing::error!(
                %method,
                path = path.as_deref().unwrap_or("(unmatched)"),
                "refused: the route is not in api::routes(); list it with its scope"
            );
            super::error::not_found().await.into_response()
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use axum::http::StatusCode;

    use super::*;
    use crate::api::sites::testing::call;
    use crate::api::test_support::state;

    /// Routes that are not described in `/openapi.json`: the document itself, and the
    /// error page its answers link to.
    const UNDOCUMENTED: &[(&str, &str)] = &[("GET", "/openapi.json"), ("GET", "/docs/errors")];

    #[test]
    fn the_list_and_the_openapi_document_name_the_same_routes() {
        let doc = crate::api::openapi_document();
        let mut documented = BTreeSet::new();
        for (path, item) in &doc.paths.paths {
            for (method, op) in [
                ("GET", &item.get),
                ("PUT", &item.put),
                ("POST", &item.post),
                ("DELETE", &item.delete),
                ("OPTIONS", &item.options),
                ("HEAD", &item.head),
                ("PATCH", &item.patch),
                ("TRACE", &item.trace),
            ] {
                if op.is_some() {
                    documented.insert((method, path.as_str()));
                }
            }
        }
        let listed: BTreeSet<(&str, &str)> = ROUTES
            .iter()
            .map(|r| (r.method, r.path))
            .filter(|r| !UNDOCUMENTED.contains(r))
            .collect();
        assert_eq!(
            ROUTES.len(),
            listed.len() + UNDOCUMENTED.len(),
            "a route is listed twice"
        );
        assert_eq!(
            documented.difference(&listed).collect::<Vec<_>>(),
            Vec::<&(&str, &str)>::new(),
            "documented but not listed"
        );
        assert_eq!(
            listed.difference(&documented).collect::<Vec<_>>(),
            Vec::<&(&str, &str)>::new(),
            "listed but not documented"
        );
    }

    #[tokio::test]
    async fn every_listed_route_is_served() {
        let t = state();
        for r in ROUTES {
            let uri = r
                .path
                .replace("{id}", "x")
                .replace("{name}", "x")
                .replace("{router_id}", "x");
            // Without a token, so nothing but the public routes runs.
            let (status, body, text) = call(
                &t.state,
                r.method,
                &uri,
                None,
                None,
                axum::body::Body::empty(),
            )
            .await;
            assert_ne!(status, StatusCode::METHOD_NOT_ALLOWED, "{r:?}: {text}");
            let fallback = status == StatusCode::NOT_FOUND
                && body["message"]
                    .as_str()
                    .is_some_and(|m| m.starts_with("no such route"));
            assert!(!fallback, "{r:?} is listed but not served: {text}");
            if r.access != Access::Public {
                assert_eq!(status, StatusCode::UNAUTHORIZED, "{r:?}: {text}");
            }
        }
    }

    #[tokio::test]
    async fn a_route_missing_from_the_list_is_refused_unrun() {
        let ran = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = ran.clone();
        let app = axum::Router::new()
            .route(
                "/sites/{id}/unlisted",
                axum::routing::get(move || {
                    flag.store(true, std::sync::atomic::Ordering::SeqCst);
                    async { "ran" }
                }),
            )
            .route("/healthz", axum::routing::get(|| async { "listed" }))
            .route_layer(axum::middleware::from_fn(listed_only));
        let send = |uri: &str| {
            let request = axum::http::Request::builder()
                .uri(uri)
                .body(axum::body::Body::empty())
                .expect("request");
            tower::ServiceExt::oneshot(app.clone(), request)
        };
        let response = send("/sites/s1/unlisted").await.expect("response");
        assert_eq!(response.status(), StatusCode::NOT_FOUND);
        assert!(
            !ran.load(std::sync::atomic::Ordering::SeqCst),
            "the handler ran"
        );
        let response = send("/healthz").await.expect("response");
        assert_eq!(response.status(), StatusCode::OK);
    }
}
