//! The API's one error type and the page that documents its codes.

use axum::Json;
use axum::Router;
use axum::extract::rejection::JsonRejection;
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use serde::Serialize;
use utoipa::ToSchema;

use super::AppState;

/// The error body every route answers with, as `/openapi.json` describes it.
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct ErrorBody {
    /// Broad category: `invalid_request`, `unauthenticated`, `forbidden`, `not_found`,
    /// `conflict`, `validation_error`, `plugin_error`, ...
    #[serde(rename = "type")]
    #[schema(example = "validation_error")]
    kind: String,
    /// The specific error; `/docs/errors` lists every code.
    #[schema(example = "validation_failed")]
    code: String,
    #[schema(example = "launch_at: 2025-01-01T00:00:00+00:00 is not in the future")]
    message: String,
    /// Where the code is explained.
    #[schema(example = "/docs/errors#validation_failed")]
    doc_url: String,
}

/// An error answered to a client: `{type, code, message, doc_url}`.
#[derive(Debug, Clone)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: String,
    pub message: String,
}

/// Every code the API answers with, and what it means; served at `/docs/errors`.
const CODES: &[(&str, &str)] = &[
    (
        "malformed_json",
        "The body is not JSON, or not the JSON this route takes.",
    ),
    (
        "validation_failed",
        "A field has a value the route does not accept; the message names the field.",
    ),
    (
        "not_found",
        "No such route or resource (in your organization).",
    ),
    (
        "plugin_not_found",
        "No plugin of that name is loaded; see GET /plugins.",
    ),
    (
        "wrong_plugin_kind",
        "The plugin is of another kind than the operation needs.",
    ),
    (
        "plugin_error",
        "The plugin answered with an error of its own (a router refused, a server was down).",
    ),
    (
        "plugin_timeout",
        "The plugin did not finish within its time limit.",
    ),
    (
        "plugin_crashed",
        "The plugin trapped or ran out of memory; the engine and other calls are unaffected.",
    ),
    (
        "missing_token",
        "The request has no `Authorization: Bearer <token>` header; `yardmaster token create` issues tokens.",
    ),
    (
        "invalid_token",
        "The bearer token is malformed, signed with another key or algorithm, or its claims are unusable.",
    ),
    (
        "token_expired",
        "The bearer token has expired; ask for a new one.",
    ),
    (
        "missing_scope",
        "The token is valid but lacks the scope this request needs; the message names it.",
    ),
    (
        "name_taken",
        "Another resource of your organization already has that name.",
    ),
    (
        "state_conflict",
        "The resource's state does not allow this step (for example, editing a launched schedule).",
    ),
    (
        "site_in_use",
        "The site cannot be deleted while schedules that may still run name it or jobs on it are unfinished; the message lists them.",
    ),
    (
        "password_missing",
        "The site has no `password`: none was set, or it was cleared because the site's address, port, transport or TLS settings changed. Set one with PUT /sites/{id}; nothing was sent to the site.",
    ),
    (
        "script_syntax_error",
        "RouterOS would not parse the script; the message names the first error's line and column (POST /scripts/lint shows them all). Nothing was stored or queued.",
    ),
    (
        "risks_not_acknowledged",
        "The script has critical lint findings whose rule ids `acknowledged_risks` does not list; the message names each with its line and column.",
    ),
    (
        "self_approval",
        "The creator of a scheduled script cannot approve it; another user must (four eyes).",
    ),
    (
        "invalid_approval_link",
        "The approval link is not valid for this schedule as it stands now.",
    ),
    (
        "approval_link_expired",
        "The approval link has expired; request authorization again.",
    ),
    (
        "storage_full",
        "The engine's data disk is full; nothing was written. Free space and retry.",
    ),
    (
        "invalid_query",
        "A query parameter is malformed or out of range (for example `page=0`); the message names it.",
    ),
    (
        "invalid_path",
        "A part of the path is malformed (for example a version that is not a number).",
    ),
    (
        "generator_unavailable",
        "No generator plugin named openai is loaded; see the README's AI script generation.",
    ),
    (
        "read_only_template",
        "Global templates are files in the engine's templates folder; the API cannot change them.",
    ),
    (
        "body_too_large",
        "The request body is larger than the route accepts (32 MiB for an import, 2 MiB otherwise).",
    ),
    ("malformed_body", "The request body could not be read."),
    (
        "malformed_csv",
        "The CSV body is not valid CSV (an unclosed quote, text after a closing quote, not UTF-8) or has no header row.",
    ),
    (
        "unsupported_media_type",
        "The body's Content-Type is not one the route takes (an import takes application/json or text/csv).",
    ),
    (
        "import_rejected",
        "Some rows of an import are bad; `errors` lists each by row and field, and nothing was imported.",
    ),
    (
        "user_exists",
        "A user with that id already exists; a user's id is the `sub` of their tokens and stays with its first owner.",
    ),
    (
        "router_unreachable",
        "The router refused the connection or is offline; nothing was sent to it.",
    ),
    (
        "router_auth_failed",
        "The router refused the site's username or password; nothing was run.",
    ),
    (
        "router_trap",
        "The router answered the command with an error (`!trap`, such as `no such command`); the message quotes it.",
    ),
    (
        "idempotency_conflict",
        "The idempotency key was already used for a job with another router, script or description; use a new key.",
    ),
    (
        "too_many_to_list",
        "More records match than a listing without pagination returns; ask for pages or narrow the filters.",
    ),
    ("unavailable", "The engine is starting or shutting down."),
    (
        "internal",
        "Something failed inside the engine; the log has the details.",
    ),
];

impl ApiError {
    pub fn new(status: StatusCode, code: &str, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            code: code.to_string(),
            message: message.into(),
        }
    }

    pub fn not_found(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, "not_found", message)
    }

    pub fn validation(field: &str, message: impl std::fmt::Display) -> ApiError {
        ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
            format!("{field}: {message}"),
        )
    }

    fn kind(&self) -> &'static str {
        match self.status.as_u16() {
            400 => "invalid_request",
            401 => "unauthenticated",
            403 => "forbidden",
            404 => "not_found",
            409 => "conflict",
            422 => "validation_error",
            502 | 504 => "plugin_error",
            410 => "gone",
            503 => "unavailable",
            507 => "storage_full",
            _ => "internal_error",
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if self.status.is_server_error() && self.code == "internal" {
            // The details stay in the log; the client learns only that it failed.
            tracing::error!("internal error: {}", self.message);
        }
        let kind = self.kind();
        let message = if self.code == "internal" {
            "the engine failed to handle this request; its log has the details".to_string()
        } else {
            self.message
        };
        let body = ErrorBody {
            kind: kind.to_owned(),
            doc_url: format!("/docs/errors#{}", self.code),
            code: self.code,
            message,
        };
        (self.status, Json(body)).into_response()
    }
}

impl From<JsonRejection> for ApiError {
    fn from(rejection: JsonRejection) -> ApiError {
        let status = match &rejection {
            JsonRejection::JsonDataError(_) => StatusCode::UNPROCESSABLE_ENTITY,
            _ => StatusCode::BAD_REQUEST,
        };
        let code = if status == StatusCode::BAD_REQUEST {
            "malformed_json"
        } else {
            "validation_failed"
        };
        ApiError::new(status, code, rejection.body_text())
    }
}

pub(super) async fn not_found() -> ApiError {
    ApiError::not_found("no such route; see /docs/errors and the README for the API")
}

async fn error_docs() -> Html<String> {
    let mut page = String::from(
        "<!doctype html><meta charset=utf-8><title>Yardmaster API errors</title><h1>Yardmaster API errors</h1><p>Every error is answered as <code>{type, code, message, doc_url}</code>.</p><dl>",
    );
    for (code, meaning) in CODES {
        page.push_str(&format!(
            "<dt id=\"{code}\"><code>{code}</code></dt><dd>{meaning}</dd>"
        ));
    }
    page.push_str("</dl>");
    Html(page)
}

pub(super) fn routes() -> Router<AppState> {
    Router::new().route("/docs/errors", get(error_docs))
}

impl From<crate::store::StoreError> for ApiError {
    fn from(e: crate::store::StoreError) -> ApiError {
        use crate::store::StoreError as E;
        match &e {
            E::NotFound { .. } => ApiError::not_found(e.to_string()),
            E::ScheduleNameTaken { .. } | E::SiteNameTaken { .. } => {
                ApiError::new(StatusCode::CONFLICT, "name_taken", e.to_string())
            }
            E::IllegalTransition { .. } | E::ScheduleState { .. } => {
                ApiError::new(StatusCode::CONFLICT, "state_conflict", e.to_string())
            }
            E::SiteInUse { .. } => {
                ApiError::new(StatusCode::CONFLICT, "site_in_use", e.to_string())
            }
            E::ApprovalVoid { .. } => {
                ApiError::new(StatusCode::CONFLICT, "approval_void", e.to_string())
            }
            E::PasswordMissing { .. } => {
                ApiError::new(StatusCode::CONFLICT, "password_missing", e.to_string())
            }
            E::Invalid { field, reason, .. } => ApiError::validation(field, reason),
            E::LintPolicy(policy) => ApiError::from(policy.clone()),
            E::Db(redb::Error::Io(io)) | E::Io { source: io, .. }
                if io.raw_os_error() == Some(28) =>
            {
                // ENOSPC: the operator must act; nothing was written.
                ApiError::new(
                    StatusCode::INSUFFICIENT_STORAGE,
                    "storage_full",
                    "the data dir's disk is full; nothing was written, free space and retry",
                )
            }
            _ => ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()),
        }
    }
}

impl From<crate::lint::policy::PolicyError> for ApiError {
    fn from(e: crate::lint::policy::PolicyError) -> ApiError {
        ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, e.code(), e.to_string())
    }
}

impl From<crate::approval::ApprovalError> for ApiError {
    fn from(e: crate::approval::ApprovalError) -> ApiError {
        use crate::approval::ApprovalError as E;
        let e = match e {
            E::Store(inner) => return ApiError::from(inner),
            E::Invalid { field, reason } => return ApiError::validation(field, reason),
            E::Policy(policy) => return ApiError::from(policy),
            other => other,
        };
        let code = match &e {
            E::Forbidden { .. } => "missing_scope",
            E::SelfApproval => "self_approval",
            E::InvalidToken { .. } => "invalid_approval_link",
            E::NotFound { .. } => "not_found",
            E::Conflict { .. } => "state_conflict",
            E::ExpiredToken => "approval_link_expired",
            E::Invalid { .. } | E::Policy(_) | E::Store(_) => "internal",
        };
        let status =
            StatusCode::from_u16(e.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        ApiError::new(status, code, e.to_string())
    }
}
