//! `POST /scripts/gen-ai` (seed 002): a RouterOS script written from a prompt by the
//! generator plugin (`openai`), checked by the linter.
//!
//! Generation is a conversation: when the linter finds a syntax error in what the model
//! wrote, its findings go back to the model, which answers with a corrected script, for
//! at most two repair rounds. What still does not parse is returned with `error` saying
//! why; `destructive` says the linter found a critical or high risk. The call needs
//! `script:create` and is audited with its prompt. With `site_id`, the site's name is
//! given to the model as context, never its address, credentials or configuration.

use axum::extract::State;
use axum::extract::rejection::JsonRejection;
use axum::http::StatusCode;
use axum::routing::post;
use axum::{Json, Router};
use chrono::Utc;
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::{OpenApi, ToSchema};

use super::error::ErrorBody;
use super::support::{self, blocking};
use super::{ApiError, AppState, Caller};
use crate::auth::scopes;
use crate::lint::{Severity, lint};
use crate::plugins::generator::{Request, Turn};
use crate::plugins::{Failure, PluginKind};
use crate::store::{AuditInput, Operations};

/// The generator plugin the route uses.
pub const GENERATOR_PLUGIN: &str = "openai";
/// Longest prompt (the seed's limit).
const MAX_PROMPT: usize = 200;
/// Rounds in all: the first answer and up to two repairs.
const MAX_ROUNDS: usize = 3;
pub const AUDIT_SCRIPT_GENERATED: &str = "script.generated";

#[derive(OpenApi)]
#[openapi(
    paths(generate),
    components(schemas(GenBody, GenReply, GenScript, TokenUsage, ErrorBody)),
    tags((name = "AI script generation", description = "RouterOS scripts written from a prompt, checked by the linter."))
)]
pub(super) struct Doc;

pub(super) fn routes() -> Router<AppState> {
    Router::new().route("/scripts/gen-ai", post(generate))
}

/// What to write.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct GenBody {
    /// What the script should do, at most 200 characters.
    #[schema(
        example = "Block incoming telnet on the WAN interface",
        max_length = 200
    )]
    prompt: String,
    /// The RouterOS version to write for (`7.18`); RouterOS 7 when absent.
    #[serde(default)]
    routeros_version: Option<String>,
    /// A site of your organization the script is for: its name is given to the model.
    #[serde(default)]
    site_id: Option<String>,
}

/// One generated script.
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct GenScript {
    /// The script.
    content: String,
    /// What is still wrong with it (a syntax error the repairs did not fix, or why the
    /// model wrote none); null when nothing is.
    error: Option<String>,
    /// The linter found a critical or high risk in it.
    destructive: bool,
}

#[derive(Debug, Default, Serialize, ToSchema)]
pub(super) struct TokenUsage {
    prompt: u64,
    completion: u64,
    total: u64,
}

/// The seed's answer.
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct GenReply {
    response: Vec<GenScript>,
    /// Over every round; zeros when the model's server reports no usage.
    #[serde(rename = "tokenUsage")]
    token_usage: TokenUsage,
    /// The model service's id of the last answer.
    response_id: Option<String>,
}

/// The linter's syntax errors, as the model is told them and the caller shown.
fn syntax_errors(script: &str) -> Option<String> {
    let report = lint(script);
    if report.syntax_ok {
        return None;
    }
    Some(
        report
            .findings
            .iter()
            .filter(|f| f.rule == "syntax")
            .map(|f| format!("line {}, column {}: {}", f.line, f.column, f.message))
            .collect::<Vec<_>>()
            .join("; "),
    )
}

fn destructive(script: &str) -> bool {
    lint(script)
        .findings
        .iter()
        .any(|f| f.rule != "syntax" && f.severity <= Severity::High)
}

/// Write a RouterOS script from a prompt.
#[utoipa::path(
    post,
    path = "/scripts/gen-ai",
    tag = "AI script generation",
    request_body = GenBody,
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The script, linted; `error` says what is still wrong", body = GenReply),
        (status = 400, description = "The body is not JSON", body = ErrorBody),
        (status = 401, description = "No valid bearer token", body = ErrorBody),
        (status = 403, description = "The token lacks script:create", body = ErrorBody),
        (status = 422, description = "The prompt is empty or longer than 200 characters, or `site_id` is not a site of your organization", body = ErrorBody),
        (status = 502, description = "The model's service failed or refused the key (`plugin_error`)", body = ErrorBody),
        (status = 503, description = "No generator plugin is loaded (`generator_unavailable`)", body = ErrorBody),
        (status = 504, description = "The generator did not finish in time", body = ErrorBody),
    )
)]
async fn generate(
    State(state): State<AppState>,
    caller: Caller,
    body: Result<Json<GenBody>, JsonRejection>,
) -> Result<Json<GenReply>, ApiError> {
    caller.require(scopes::SCRIPT_CREATE)?;
    let body = support::json_body(body)?;
    let prompt = body.prompt.trim().to_owned();
    if prompt.is_empty() {
        return Err(ApiError::validation("prompt", "must not be empty"));
    }
    if prompt.chars().count() > MAX_PROMPT {
        return Err(ApiError::validation(
            "prompt",
            format!("at most {MAX_PROMPT} characters"),
        ));
    }
    let mut context: Vec<(String, String)> = vec![(
        "linter-rules".into(),
        "factory-reset, backup-load, package-removal, disk-format, device-mode, management-service, input-drop-without-accept, management-address, default-route".into(),
    )];
    if let Some(v) = body.routeros_version.filter(|v| !v.trim().is_empty()) {
        if v.len() > 32 || !v.chars().all(|c| c.is_ascii_alphanumeric() || c == '.') {
            return Err(ApiError::validation(
                "routeros_version",
                "a version such as 7.18",
            ));
        }
        context.push(("routeros-version".into(), v));
    }
    if let Some(site_id) = body.site_id {
        let org = caller.org().to_owned();
        let site = blocking(&state.store, move |store| async move {
            match store.get_site(&site_id).await {
                Ok(site) if site.organization == org => Ok(site),
                _ => Err(ApiError::validation(
                    "site_id",
                    format!("no site {site_id} in your organization"),
                )),
            }
        })
        .await?;
        context.push(("site-name".into(), site.name));
    }
    let generator = state.plugins.generator(GENERATOR_PLUGIN).map_err(|e| {
        let kind_loaded = state
            .plugins
            .list()
            .iter()
            .any(|p| p.kind == Some(PluginKind::Generator));
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "generator_unavailable",
            format!(
                "{e}; put the bundled openai plugin in the plugins folder and point it at a model \
                 ([plugins.openai.config] base_url, model){}",
                if kind_loaded {
                    " (another generator is loaded, but the route uses the one named openai)"
                } else {
                    ""
                }
            ),
        )
    })?;
    let request = Request {
        prompt: prompt.clone(),
        context,
    };
    let mut history: Vec<Turn> = Vec::new();
    let mut usage = TokenUsage::default();
    let mut response_id = None;
    let mut model = String::new();
    let mut rounds = 0;
    let result = loop {
        rounds += 1;
        let reply = match generator.generate_turns(&request, &history).await {
            Ok(reply) => reply,
            Err(Failure::Plugin {
                error: crate::plugins::generator::GenerateError::Refused(why),
                ..
            }) => {
                break GenScript {
                    content: String::new(),
                    error: Some(format!("the model declined: {why}")),
                    destructive: false,
                };
            }
            Err(f) => return Err(super::plugins::failure(f)),
        };
        if let Some(u) = &reply.usage {
            usage.prompt += u64::from(u.prompt);
            usage.completion += u64::from(u.completion);
            usage.total += u64::from(u.total);
        }
        response_id = reply.response_id.clone().or(response_id);
        model = reply.model.clone();
        if reply.script.trim().is_empty() {
            break GenScript {
                content: String::new(),
                error: Some(if reply.explanation.is_empty() {
                    "the model wrote no script".to_owned()
                } else {
                    reply.explanation
                }),
                destructive: false,
            };
        }
        match syntax_errors(&reply.script) {
            Some(errors) if rounds < MAX_ROUNDS => {
                history.push(Turn {
                    role: "assistant".into(),
                    content: json!({"script": reply.script, "explanation": reply.explanation})
                        .to_string(),
                });
                history.push(Turn {
                    role: "user".into(),
                    content: format!(
                        "RouterOS would refuse this script: {errors}. Answer with the whole corrected script in the same JSON form."
                    ),
                });
            }
            errors => {
                break GenScript {
                    destructive: destructive(&reply.script),
                    error: errors.map(|e| format!("syntax error after {rounds} rounds: {e}")),
                    content: reply.script,
                };
            }
        }
    };
    let audit = AuditInput {
        at: Utc::now(),
        organization: caller.org().to_owned(),
        actor: caller.user_id().to_owned(),
        action: AUDIT_SCRIPT_GENERATED.into(),
        target: response_id.clone().unwrap_or_else(|| "gen-ai".into()),
        detail: json!({
            "prompt": prompt,
            "model": model,
            "rounds": rounds,
            "destructive": result.destructive,
            "error": result.error,
            "response_id": response_id,
        }),
    };
    blocking(&state.store, move |store| async move {
        Ok(store.append_audit(audit).await?)
    })
    .await?;
    Ok(Json(GenReply {
        response: vec![result],
        token_usage: usage,
        response_id,
    }))
}
