//! `POST /scripts/lint`: the script linter ([`crate::lint`]) over HTTP, for checking a
//! script before scheduling it. Needs `script:view`; nothing is stored or run.

use axum::extract::DefaultBodyLimit;
use axum::extract::rejection::JsonRejection;
use axum::routing::post;
use axum::{Json, Router};
use serde::Deserialize;
use utoipa::{OpenApi, ToSchema};

use super::error::ErrorBody;
use super::{ApiError, AppState, Caller};
use crate::auth::scopes;
use crate::lint::{Finding, LintReport, Severity};
use crate::store::MAX_SCHEDULE_SCRIPT_CHARS;

/// Most bytes a lint request body may hold: the longest schedule script, every
/// character escaped as `\uXXXX` at worst, and room for the JSON around it.
const MAX_BODY_BYTES: usize = MAX_SCHEDULE_SCRIPT_CHARS * 6 + 1024;

#[derive(OpenApi)]
#[openapi(
    paths(lint),
    components(schemas(LintBody, LintReport, Finding, Severity, ErrorBody)),
    tags((name = "Script lint", description = "Syntax and safety checks of RouterOS scripts."))
)]
pub(super) struct Doc;

pub(super) fn routes() -> Router<AppState> {
    Router::new().route(
        "/scripts/lint",
        post(lint).layer(DefaultBodyLimit::max(MAX_BODY_BYTES)),
    )
}

/// A script to check.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct LintBody {
    /// RouterOS script text, at most as long as a scheduled script may be.
    script: String,
}

fn too_large() -> ApiError {
    ApiError::validation(
        "script",
        format!("longer than a scheduled script may be ({MAX_SCHEDULE_SCRIPT_CHARS} characters)"),
    )
}

/// Check a RouterOS script: syntax errors and risky commands, each with its line and
/// column. The script is neither stored nor run.
#[utoipa::path(
    post,
    path = "/scripts/lint",
    tag = "Script lint",
    request_body = LintBody,
    security(("bearer" = [])),
    responses(
        (status = 200, description = "What the linter found", body = LintReport),
        (status = 400, description = "The body is not JSON", body = ErrorBody),
        (status = 401, description = "No valid bearer token", body = ErrorBody),
        (status = 403, description = "The token lacks script:view", body = ErrorBody),
        (status = 422, description = "`script` is missing or longer than a scheduled script may be", body = ErrorBody),
    )
)]
async fn lint(
    caller: Caller,
    body: Result<Json<LintBody>, JsonRejection>,
) -> Result<Json<LintReport>, ApiError> {
    caller.require(scopes::SCRIPT_VIEW)?;
    let Json(body) = match body {
        Ok(body) => body,
        // Past the body limit: the script is too long, whatever else the body holds.
        Err(JsonRejection::BytesRejection(_)) => return Err(too_large()),
        Err(e) => return Err(e.into()),
    };
    if body.script.chars().count() > MAX_SCHEDULE_SCRIPT_CHARS {
        return Err(too_large());
    }
    // Linting is linear in the script, a few milliseconds at the longest allowed: no
    // need for the blocking pool.
    Ok(Json(crate::lint::lint(&body.script)))
}

#[cfg(test)]
mod tests {
    use axum::body::Body;
    use axum::http::{Request, StatusCode};
    use serde_json::{Value, json};
    use tower::ServiceExt;

    use crate::api::app;
    use crate::api::test_support::{TestState, state};
    use crate::auth::scopes;
    use crate::store::MAX_SCHEDULE_SCRIPT_CHARS;

    async fn call(t: &TestState, token: Option<&str>, body: String) -> (StatusCode, Value) {
        let mut req = Request::post("/scripts/lint").header("content-type", "application/json");
        if let Some(token) = token {
            req = req.header("authorization", format!("Bearer {token}"));
        }
        let resp = app(t.state.clone())
            .oneshot(req.body(Body::from(body)).expect("request"))
            .await
            .expect("response");
        let status = resp.status();
        let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX)
            .await
            .expect("body");
        (
            status,
            serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        )
    }

    #[tokio::test]
    async fn lints_with_script_view_only() {
        let t = state();
        let viewer = t.token("ana", "org-a", &[scopes::SCRIPT_VIEW]);
        let body = json!({"script": "/system reset-configuration\n:put $x"}).to_string();
        let (status, v) = call(&t, Some(&viewer), body.clone()).await;
        assert_eq!(status, StatusCode::OK, "{v}");
        assert_eq!(v["syntax_ok"], false);
        let findings = v["findings"].as_array().expect("findings");
        assert!(findings.iter().any(|f| f["rule"] == "factory-reset"
            && f["severity"] == "critical"
            && f["line"] == 1
            && f["column"] == 1));
        assert!(
            findings
                .iter()
                .any(|f| f["rule"] == "syntax" && f["line"] == 2)
        );

        let runner = t.token("ana", "org-a", &[scopes::SCRIPT_RUN, scopes::SCRIPT_CREATE]);
        let (status, v) = call(&t, Some(&runner), body.clone()).await;
        assert_eq!(status, StatusCode::FORBIDDEN);
        assert!(v.get("findings").is_none());
        let (status, _) = call(&t, None, body).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
    }

    #[tokio::test]
    async fn a_script_longer_than_a_schedule_may_hold_is_422() {
        let t = state();
        let viewer = t.token("ana", "org-a", &[scopes::SCRIPT_VIEW]);
        let at_limit = json!({"script": "x".repeat(MAX_SCHEDULE_SCRIPT_CHARS)}).to_string();
        assert_eq!(call(&t, Some(&viewer), at_limit).await.0, StatusCode::OK);
        let over = json!({"script": "x".repeat(MAX_SCHEDULE_SCRIPT_CHARS + 1)}).to_string();
        assert_eq!(
            call(&t, Some(&viewer), over).await.0,
            StatusCode::UNPROCESSABLE_ENTITY
        );
        let huge = json!({"script": "\\".repeat(MAX_SCHEDULE_SCRIPT_CHARS * 4)}).to_string();
        assert_eq!(
            call(&t, Some(&viewer), huge).await.0,
            StatusCode::UNPROCESSABLE_ENTITY
        );
    }
}
