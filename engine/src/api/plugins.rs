//! Plugins: `GET /plugins` lists every plugin file and its state, `GET /plugins/{name}`
//! shows one, and `POST /plugins/{name}/call` runs one operation of a plugin, so an
//! operator or a plugin author can try a plugin against a running engine.
//!
//! Reading takes `plugin:view`. A call is an operator's tool and takes `engine:admin`,
//! which `all` does not include. A transport call names a site of the caller's
//! organization by its id and nothing else: the engine fills in the site's address,
//! port, TLS settings and credentials and grants the plugin that endpoint for the one
//! call, so a call can never be aimed at an address of the caller's choosing.

use std::collections::BTreeMap;

use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use utoipa::ToSchema;

use super::error::ErrorBody;
use super::jobs::site_target;
use super::sites::site_of;
use super::support::blocking;
use super::{ApiError, AppState, Caller};
use crate::auth::scopes;
use crate::plugins::{
    CallError, Failure, PluginKind, PluginStatus, Transport, generator, notifier, transport,
};
use crate::store::{AuditInput, Operations, Site};

/// Kind names as the API writes them.
const KIND_EXAMPLE: &str = "transport";

/// One plugin file in the plugins folder and what became of it.
#[derive(Debug, Serialize, ToSchema)]
struct PluginEntry {
    /// The name the plugin gives in `describe()`; none when the file failed to load.
    name: Option<String>,
    /// `transport`, `notifier`, `script-source` or `generator`.
    #[schema(value_type = Option<String>, example = json!(KIND_EXAMPLE))]
    kind: Option<PluginKind>,
    version: Option<String>,
    /// The version of the WIT contract the component was built against.
    wit_version: Option<String>,
    sha256: Option<String>,
    /// The file name in the plugins folder.
    file: String,
    /// `active` or `failed`.
    #[schema(example = "active")]
    status: String,
    /// Why the newest content of the file did not load, if it did not.
    error: Option<String>,
    loaded_at: Option<DateTime<Utc>>,
    description: Option<String>,
    /// What the plugin says it needs to reach.
    endpoints: Vec<String>,
    /// What the operator's allow-list grants it.
    allow: Vec<String>,
    /// The port a transport uses, and is granted, when a site names none; null when it
    /// declares none, for other kinds and for a file that failed to load.
    default_port: Option<u16>,
    /// The same for sites reached over TLS.
    default_tls_port: Option<u16>,
}

impl From<PluginStatus> for PluginEntry {
    fn from(s: PluginStatus) -> PluginEntry {
        PluginEntry {
            name: s.name,
            kind: s.kind,
            version: s.version,
            wit_version: s.wit_version,
            sha256: s.sha256,
            file: s.file,
            status: s.status.to_owned(),
            error: s.error,
            loaded_at: s.loaded_at,
            description: s.description,
            endpoints: s.endpoints,
            allow: s.allow,
            default_port: s.default_ports.plain,
            default_tls_port: s.default_ports.tls,
        }
    }
}

/// A configuration key a plugin reads.
#[derive(Debug, Serialize, ToSchema)]
struct ConfigKeyView {
    name: String,
    description: String,
    required: bool,
    /// A secret's value is never shown.
    secret: bool,
}

#[derive(Debug, Serialize, ToSchema)]
struct LimitsView {
    /// Linear memory one instance may grow to.
    memory_bytes: u64,
    /// Wall-clock time one call may take.
    timeout_ms: u64,
}

/// One active plugin in detail.
#[derive(Debug, Serialize, ToSchema)]
struct PluginDetail {
    name: String,
    version: String,
    #[schema(value_type = String, example = json!(KIND_EXAMPLE))]
    kind: PluginKind,
    description: String,
    wit_version: String,
    sha256: String,
    file: Option<String>,
    /// Set when a newer content of the file failed to load; this version keeps serving.
    error: Option<String>,
    loaded_at: DateTime<Utc>,
    config_keys: Vec<ConfigKeyView>,
    endpoints: Vec<String>,
    allow: Vec<String>,
    /// The port a transport uses, and is granted, when a site names none (transport
    /// contract 1.1); null when the plugin declares none, and for other kinds.
    default_port: Option<u16>,
    /// The same for sites reached over TLS.
    default_tls_port: Option<u16>,
    /// Whether a transport can arm a dead-man rollback (contract 1.2, and it says so):
    /// `rollback_after` on its sites is refused otherwise.
    rollback: bool,
    /// The host interfaces the component imports.
    imports: Vec<String>,
    limits: LimitsView,
}

/// The answer to a call: the plugin (`name@version`) and its operation's result.
#[derive(Debug, Serialize, ToSchema)]
struct CallReply {
    #[schema(example = "routeros-api@1.0.0")]
    plugin: String,
    /// Shaped by the operation: `rows`, `done` and `empty` for `run-command`; `output` for
    /// `run-script`; `config` and `saved_file` for `backup`; `online`, `identity`,
    /// `version`, `board`, `uptime` and `detail` for `probe`; `detail` for `deliver`;
    /// `content` and `meta` for `fetch`; `script`, `explanation` and `model` for
    /// `generate`; `summary` for `summarize`; the plugin's self-description for `describe`.
    #[schema(value_type = Object)]
    result: Value,
}

#[utoipa::path(
    get,
    path = "/plugins",
    tag = "plugins",
    summary = "List the plugin files and their state",
    description = "Every file in the plugins folder, active or failed with its reason, in file name order. Needs `plugin:view`.",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Every plugin file", body = Vec<PluginEntry>),
        (status = 401, description = "No valid bearer token", body = ErrorBody),
        (status = 403, description = "The token lacks `plugin:view`", body = ErrorBody),
    )
)]
async fn list(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<Vec<PluginEntry>>, ApiError> {
    caller.require(scopes::PLUGIN_VIEW)?;
    Ok(Json(
        state
            .plugins
            .list()
            .into_iter()
            .map(PluginEntry::from)
            .collect(),
    ))
}

#[utoipa::path(
    get,
    path = "/plugins/{name}",
    tag = "plugins",
    summary = "Show an active plugin",
    description = "Its version, contract, configuration keys, allow-list, imports and limits. Needs `plugin:view`.",
    params(("name" = String, Path, description = "The plugin's name, as `describe()` gives it")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The plugin", body = PluginDetail),
        (status = 401, description = "No valid bearer token", body = ErrorBody),
        (status = 403, description = "The token lacks `plugin:view`", body = ErrorBody),
        (status = 404, description = "No active plugin of that name", body = ErrorBody),
    )
)]
async fn show(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
) -> Result<Json<PluginDetail>, ApiError> {
    caller.require(scopes::PLUGIN_VIEW)?;
    let plugin = state
        .plugins
        .get(&name)
        .ok_or_else(|| plugin_not_found(&name))?;
    let status = state
        .plugins
        .list()
        .into_iter()
        .find(|s| s.name.as_deref() == Some(name.as_str()));
    Ok(Json(PluginDetail {
        name: plugin.info.name.clone(),
        version: plugin.info.version.to_string(),
        kind: plugin.info.kind,
        description: plugin.info.description.clone(),
        wit_version: plugin.wit_version.to_string(),
        sha256: plugin.sha256.clone(),
        file: status.as_ref().map(|s| s.file.clone()),
        error: status.and_then(|s| s.error),
        loaded_at: plugin.loaded_at,
        config_keys: plugin
            .info
            .config_keys
            .iter()
            .map(|k| ConfigKeyView {
                name: k.name.clone(),
                description: k.description.clone(),
                required: k.required,
                secret: k.secret,
            })
            .collect(),
        endpoints: plugin.info.endpoints.clone(),
        allow: plugin.allow_list(),
        default_port: plugin.default_ports.plain,
        default_tls_port: plugin.default_ports.tls,
        rollback: plugin.supports_rollback(),
        imports: plugin.imports.clone(),
        limits: LimitsView {
            memory_bytes: plugin.limits().memory_bytes,
            timeout_ms: plugin.limits().timeout.as_millis() as u64,
        },
    }))
}

fn plugin_not_found(name: &str) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "plugin_not_found",
        format!("no plugin named `{name}` is loaded; GET /plugins lists them"),
    )
}

/// The site a transport call reaches, named by its id: a site of the caller's
/// organization. The engine takes its address, port, TLS settings and credentials from
/// the stored site, so a call can reach nothing but a site the organization registered.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct TargetBody {
    /// The id of one of the organization's sites.
    // Defaulted only so a body that gives an address instead is told so by name.
    #[serde(default)]
    #[schema(required = true)]
    site_id: String,
    #[serde(default)]
    connect_timeout_ms: u32,
    #[serde(default)]
    reply_timeout_ms: u32,
    /// Options passed to the plugin as they are.
    #[serde(default)]
    options: BTreeMap<String, String>,
    // What the site provides may not be given here. These are read only to be refused
    // with a message that says where they come from instead.
    #[serde(default)]
    #[schema(ignore)]
    address: Option<Value>,
    #[serde(default)]
    #[schema(ignore)]
    port: Option<Value>,
    #[serde(default)]
    #[schema(ignore)]
    username: Option<Value>,
    #[serde(default)]
    #[schema(ignore)]
    password: Option<Value>,
    #[serde(default)]
    #[schema(ignore)]
    tls: Option<Value>,
}

impl TargetBody {
    /// 422 naming the first field the body gives that only the stored site may say, or
    /// a missing site id.
    fn refuse_given(&self) -> Result<(), ApiError> {
        let given = [
            ("address", self.address.is_some()),
            ("port", self.port.is_some()),
            ("username", self.username.is_some()),
            ("password", self.password.is_some()),
            ("tls", self.tls.is_some()),
        ];
        if let Some((field, _)) = given.iter().find(|(_, given)| *given) {
            return Err(ApiError::validation(
                &format!("target.{field}"),
                "is not accepted: name the site with `target.site_id`; the engine takes its \
                 address, port, TLS settings and credentials from the stored site",
            ));
        }
        if self.site_id.trim().is_empty() {
            return Err(ApiError::validation(
                "target.site_id",
                "must name one of the organization's sites",
            ));
        }
        Ok(())
    }

    /// The stored site the body names, as the transport `plugin` sees it: 404 when it is
    /// not a site of the caller's organization, 422 when the body gives what only the
    /// site may say or names a site another transport serves.
    async fn resolve(
        self,
        state: &AppState,
        caller: &Caller,
        plugin: &str,
    ) -> Result<(Site, transport::Target), ApiError> {
        self.refuse_given()?;
        let site = site_of(state, caller, self.site_id).await?;
        // The site and its password in one snapshot; the checks below judge that snapshot.
        let (site, mut target) = site_target(state, &site).await?;
        if site.transport != plugin {
            return Err(ApiError::validation(
                "target.site_id",
                format!(
                    "site {} is served by the `{}` transport, not `{plugin}`",
                    site.id, site.transport
                ),
            ));
        }
        target.connect_timeout_ms = self.connect_timeout_ms;
        target.reply_timeout_ms = self.reply_timeout_ms;
        // The site's own SSH options (platform, key login) are the site's to say.
        let site_options = crate::runner::fanout::ssh_options(&site);
        target.options = self
            .options
            .into_iter()
            .filter(|(k, _)| !k.starts_with("ssh."))
            .chain(site_options)
            .collect();
        Ok((site, target))
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct ChannelBody {
    name: String,
    #[serde(default)]
    settings: BTreeMap<String, String>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct RecipientBody {
    name: Option<String>,
    address: String,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct EventBody {
    id: Option<String>,
    kind: String,
    subject: String,
    #[serde(default)]
    text: String,
    html: Option<String>,
    /// Any JSON, passed to the plugin as text.
    #[serde(default)]
    #[schema(value_type = Object)]
    payload: Value,
    #[serde(default)]
    recipients: Vec<RecipientBody>,
}

/// One operation of a plugin, named by `operation`; the plugin's kind must offer it.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(tag = "operation", rename_all = "kebab-case", deny_unknown_fields)]
enum CallBody {
    Describe,
    RunCommand {
        target: TargetBody,
        words: Vec<String>,
    },
    RunScript {
        target: TargetBody,
        script: String,
    },
    Backup {
        target: TargetBody,
        save_as: Option<String>,
    },
    Probe {
        target: TargetBody,
    },
    Deliver {
        channel: ChannelBody,
        event: EventBody,
    },
    Fetch {
        url: String,
    },
    Generate {
        prompt: String,
        #[serde(default)]
        context: BTreeMap<String, String>,
    },
    Summarize {
        script: String,
    },
}

impl CallBody {
    /// The site a transport operation names.
    fn target(&self) -> Option<&TargetBody> {
        match self {
            CallBody::RunCommand { target, .. }
            | CallBody::RunScript { target, .. }
            | CallBody::Backup { target, .. }
            | CallBody::Probe { target } => Some(target),
            _ => None,
        }
    }
}

fn attributes(pairs: &[(String, String)]) -> Value {
    Value::Object(
        pairs
            .iter()
            .map(|(k, v)| (k.clone(), Value::String(v.clone())))
            .collect(),
    )
}

/// Maps a failed call to the status that says whose fault it was. A plugin's own error
/// reads `[code] message`, with the endpoints the allow-list refused, if any.
pub(super) fn failure<E: crate::plugins::Describe>(failure: Failure<E>) -> ApiError {
    match failure {
        Failure::Plugin { error, denied } => {
            let mut message = format!("[{}] {}", error.code(), error.message());
            if !denied.is_empty() {
                message.push_str(&format!(
                    " (refused by the allow-list: {})",
                    denied.join(", ")
                ));
            }
            ApiError::new(StatusCode::BAD_GATEWAY, "plugin_error", message)
        }
        Failure::Call(call) => call_error(call),
    }
}

fn call_error(error: CallError) -> ApiError {
    let text = error.to_string();
    match error {
        CallError::NotFound(name) => plugin_not_found(&name),
        CallError::WrongKind { .. } => {
            ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "wrong_plugin_kind", text)
        }
        CallError::Timeout { .. } => {
            ApiError::new(StatusCode::GATEWAY_TIMEOUT, "plugin_timeout", text)
        }
        CallError::OutOfMemory { .. } | CallError::Trap { .. } | CallError::Host { .. } => {
            ApiError::new(StatusCode::BAD_GATEWAY, "plugin_crashed", text)
        }
        CallError::ShuttingDown => {
            ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", text)
        }
    }
}

/// Audit action of a transport call made through `POST /plugins/{name}/call`.
pub const AUDIT_PLUGIN_CALL: &str = "plugin.call";

/// The transport `name` and the caller's site it is to reach. The call is written to
/// the audit log before it is made, as a synchronous router call is.
async fn transport_call(
    state: &AppState,
    caller: &Caller,
    name: &str,
    target: TargetBody,
    operation: &str,
) -> Result<(Transport, transport::Target), ApiError> {
    let handle = state.plugins.transport(name).map_err(call_error)?;
    let (site, target) = target.resolve(state, caller, name).await?;
    // SSH sessions of this call get the site's key and host keys, as a job's do.
    let of = site.clone();
    let site_ssh = blocking(&state.store, move |store| async move {
        crate::runner::fanout::site_ssh(&store, &of)
            .await
            .map_err(ApiError::from)
    })
    .await?;
    let handle = handle.with_ssh(site_ssh);
    let audit = AuditInput {
        at: Utc::now(),
        organization: site.organization.clone(),
        actor: caller.user_id().to_owned(),
        action: AUDIT_PLUGIN_CALL.to_owned(),
        target: site.id.clone(),
        detail: json!({ "plugin": handle.plugin().id(), "operation": operation }),
    };
    blocking(&state.store, move |store| async move {
        store.append_audit(audit).await.map_err(ApiError::from)
    })
    .await?;
    Ok((handle, target))
}

#[utoipa::path(
    post,
    path = "/plugins/{name}/call",
    tag = "plugins",
    summary = "Run one operation of a plugin",
    description = "An operator's tool: lets an operator or a plugin author try a plugin against the running engine. Needs `engine:admin`, a scope `all` does not include. A transport operation names one of the organization's sites by `target.site_id`; the engine fills in its address, port, TLS settings and credentials (for SSH, its key and host keys, enforced by the host as for a job), grants the plugin that endpoint for this call only, and audits the call. A body that gives an address, port, credentials or TLS settings itself is refused (422 naming the field).",
    params(("name" = String, Path, description = "The plugin's name")),
    request_body = CallBody,
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The plugin's answer", body = CallReply),
        (status = 400, description = "The body is not JSON", body = ErrorBody),
        (status = 401, description = "No valid bearer token", body = ErrorBody),
        (status = 403, description = "The token lacks `engine:admin`", body = ErrorBody),
        (status = 404, description = "No active plugin of that name, or `target.site_id` is not a site of the organization", body = ErrorBody),
        (status = 422, description = "An unknown operation or field, a missing field, a target that gives its own address, port, credentials or TLS settings, a site served by another transport, an operation the plugin's kind does not offer, or a URL the script source does not serve", body = ErrorBody),
        (status = 502, description = "The plugin answered with its own error, trapped or ran out of memory", body = ErrorBody),
        (status = 503, description = "The engine is shutting down", body = ErrorBody),
        (status = 504, description = "The plugin did not finish within its time limit", body = ErrorBody),
    )
)]
async fn call(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
    body: Result<Json<CallBody>, JsonRejection>,
) -> Result<Json<CallReply>, ApiError> {
    caller.require(scopes::ENGINE_ADMIN)?;
    let Json(body) = body?;
    // Refused before anything is looked up: such a body never names a plugin's target.
    if let Some(target) = body.target() {
        target.refuse_given()?;
    }
    let host = &state.plugins;
    let plugin = host.get(&name).ok_or_else(|| plugin_not_found(&name))?;
    let result = match body {
        CallBody::Describe => json!({
            "name": plugin.info.name,
            "version": plugin.info.version.to_string(),
            "kind": plugin.info.kind,
            "description": plugin.info.description,
            "config_keys": plugin.info.config_keys,
            "endpoints": plugin.info.endpoints,
        }),
        CallBody::RunCommand { target, words } => {
            if words.is_empty() {
                return Err(ApiError::validation(
                    "words",
                    "must hold at least the command word",
                ));
            }
            let (transport, target) =
                transport_call(&state, &caller, &name, target, "run-command").await?;
            let reply = transport
                .run_command(&target, &words)
                .await
                .map_err(failure)?;
            json!({
                "rows": reply.rows.iter().map(|r| attributes(r)).collect::<Vec<_>>(),
                "done": attributes(&reply.done),
                "empty": reply.empty,
            })
        }
        CallBody::RunScript { target, script } => {
            let (transport, target) =
                transport_call(&state, &caller, &name, target, "run-script").await?;
            let output = transport
                .run_script(&target, &script)
                .await
                .map_err(failure)?;
            json!({ "output": output })
        }
        CallBody::Backup { target, save_as } => {
            let (transport, target) =
                transport_call(&state, &caller, &name, target, "backup").await?;
            let backup = transport
                .backup(&target, save_as.as_deref())
                .await
                .map_err(failure)?;
            json!({ "config": backup.config, "saved_file": backup.saved_file })
        }
        CallBody::Probe { target } => {
            let (transport, target) =
                transport_call(&state, &caller, &name, target, "probe").await?;
            let probe = transport.probe(&target).await.map_err(failure)?;
            json!({
                "online": probe.online,
                "identity": probe.identity,
                "version": probe.version,
                "board": probe.board,
                "uptime": probe.uptime,
                "detail": probe.detail,
            })
        }
        CallBody::Deliver { channel, event } => {
            let channel = notifier::Channel {
                name: channel.name,
                settings: channel.settings.into_iter().collect(),
            };
            let event = notifier::Event {
                id: event
                    .id
                    .unwrap_or_else(|| format!("manual-{}", chrono::Utc::now().timestamp_micros())),
                kind: event.kind,
                occurred_at: chrono::Utc::now().to_rfc3339(),
                subject: event.subject,
                text: event.text,
                html: event.html,
                payload: event.payload.to_string(),
                recipients: event
                    .recipients
                    .into_iter()
                    .map(|r| notifier::Recipient {
                        name: r.name,
                        address: r.address,
                    })
                    .collect(),
            };
            let receipt = host
                .notifier(&name)
                .map_err(call_error)?
                .deliver(&channel, &event)
                .await
                .map_err(failure)?;
            json!({ "detail": receipt.detail })
        }
        CallBody::Fetch { url } => {
            let fetched = host
                .script_source(&name)
                .map_err(call_error)?
                .fetch(&url)
                .await
                .map_err(|f| match f {
                    // The caller's URL is not one the source serves: the request's fault.
                    Failure::Plugin {
                        error: crate::plugins::script_source::SourceError::InvalidUrl(m),
                        ..
                    } => ApiError::validation("url", m),
                    other => failure(other),
                })?;
            let meta = fetched.meta;
            json!({
                "content": fetched.content,
                "meta": {
                    "name": meta.name,
                    "description": meta.description,
                    "author": meta.author,
                    "repository": meta.repository,
                    "commit": meta.commit,
                    "license": meta.license,
                    "stars": meta.stars,
                    "readme": meta.readme,
                    "source_url": meta.source_url,
                },
            })
        }
        CallBody::Generate { prompt, context } => {
            let request = generator::Request {
                prompt,
                context: context.into_iter().collect(),
            };
            let generated = host
                .generator(&name)
                .map_err(call_error)?
                .generate(&request)
                .await
                .map_err(failure)?;
            json!({
                "script": generated.script,
                "explanation": generated.explanation,
                "model": generated.model,
            })
        }
        CallBody::Summarize { script } => {
            let summary = host
                .generator(&name)
                .map_err(call_error)?
                .summarize(&script)
                .await
                .map_err(failure)?;
            json!({ "summary": summary })
        }
    };
    Ok(Json(CallReply {
        plugin: plugin.id(),
        result,
    }))
}

#[derive(utoipa::OpenApi)]
#[openapi(
    paths(list, show, call),
    components(schemas(
        PluginEntry,
        PluginDetail,
        ConfigKeyView,
        LimitsView,
        CallBody,
        TargetBody,
        ChannelBody,
        EventBody,
        RecipientBody,
        CallReply,
        ErrorBody
    )),
    tags((name = "plugins", description = "The WebAssembly plugins the engine runs; try one with a call."))
)]
pub(super) struct Doc;

pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route("/plugins", get(list))
        .route("/plugins/{name}", get(show))
        .route("/plugins/{name}/call", post(call))
}

#[cfg(test)]
mod tests {

    use axum::body::Body;
    use axum::http::{Request, StatusCode};
    use tower::ServiceExt;

    use crate::api::app;
    use crate::api::test_support::{TestState, state};
    use crate::auth::scopes;

    async fn send(
        test: &TestState,
        request: axum::http::request::Builder,
        token: Option<&str>,
        body: &str,
    ) -> (StatusCode, serde_json::Value) {
        let request = match token {
            Some(token) => request.header("authorization", format!("Bearer {token}")),
            None => request,
        };
        let request = request
            .header("content-type", "application/json")
            .body(Body::from(body.to_owned()))
            .expect("request");
        let response = app(test.state.clone())
            .oneshot(request)
            .await
            .expect("response");
        let status = response.status();
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 20)
            .await
            .expect("body");
        (status, serde_json::from_slice(&bytes).expect("json"))
    }

    const DESCRIBE: &str = r#"{"operation": "describe"}"#;

    fn post_call() -> axum::http::request::Builder {
        Request::post("/plugins/routeros-api/call")
    }

    #[tokio::test]
    async fn every_plugin_route_needs_a_token() {
        let test = state();
        for request in [
            Request::get("/plugins"),
            Request::get("/plugins/routeros-api"),
            post_call(),
        ] {
            let (status, body) = send(&test, request, None, DESCRIBE).await;
            assert_eq!(status, StatusCode::UNAUTHORIZED);
            assert_eq!(body["code"], "missing_token");
            assert_eq!(body["type"], "unauthenticated");
        }
        let (status, body) = send(&test, Request::get("/plugins"), Some("a.b.c"), "").await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        assert_eq!(body["code"], "invalid_token");
    }

    #[tokio::test]
    async fn reading_takes_plugin_view_and_calling_takes_engine_admin() {
        let test = state();
        let viewer = test.token("vic", "acme", &[scopes::PLUGIN_VIEW]);
        let manager = test.token("meg", "acme", &[scopes::PLUGIN_MANAGE]);
        let admin = test.token("ops", "acme", &[scopes::ENGINE_ADMIN]);
        let scripts = test.token("sam", "acme", &[scopes::SCRIPT_VIEW]);

        let (status, body) = send(&test, Request::get("/plugins"), Some(&viewer), "").await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body, serde_json::json!([]));
        let (status, body) = send(&test, Request::get("/plugins"), Some(&scripts), "").await;
        assert_eq!(status, StatusCode::FORBIDDEN);
        assert_eq!(body["code"], "missing_scope");
        assert!(
            body["message"]
                .as_str()
                .unwrap_or_default()
                .contains("plugin:view")
        );
        let (status, _) = send(
            &test,
            Request::get("/plugins/routeros-api"),
            Some(&manager),
            "",
        )
        .await;
        assert_eq!(status, StatusCode::FORBIDDEN);

        for token in [&viewer, &manager] {
            let (status, body) = send(&test, post_call(), Some(token), DESCRIBE).await;
            assert_eq!(status, StatusCode::FORBIDDEN);
            assert!(
                body["message"]
                    .as_str()
                    .unwrap_or_default()
                    .contains("engine:admin"),
                "{body}"
            );
        }
        // With the scope the call goes through to the (empty) plugin host.
        let (status, body) = send(&test, post_call(), Some(&admin), DESCRIBE).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert_eq!(body["code"], "plugin_not_found");
        assert_eq!(body["doc_url"], "/docs/errors#plugin_not_found");
        let (status, body) = send(
            &test,
            Request::get("/plugins/routeros-api"),
            Some(&viewer),
            "",
        )
        .await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert_eq!(body["code"], "plugin_not_found");
    }

    #[tokio::test]
    async fn the_scope_is_checked_before_the_body() {
        let test = state();
        let viewer = test.token("vic", "acme", &[scopes::PLUGIN_VIEW]);
        let (status, _) = send(&test, post_call(), Some(&viewer), "{not json").await;
        assert_eq!(status, StatusCode::FORBIDDEN);
        let manager = test.token("meg", "acme", &[scopes::PLUGIN_MANAGE]);
        let (status, _) = send(&test, post_call(), Some(&manager), "{not json").await;
        assert_eq!(status, StatusCode::FORBIDDEN);
        let admin = test.token("ops", "acme", &[scopes::ENGINE_ADMIN]);
        let (status, body) = send(&test, post_call(), Some(&admin), "{not json").await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_eq!(body["code"], "malformed_json");
    }

    #[tokio::test]
    async fn a_target_that_gives_its_own_endpoint_is_refused_naming_the_field() {
        let test = state();
        let admin = test.token("ops", "acme", &[scopes::ENGINE_ADMIN]);
        for (field, value) in [
            ("address", serde_json::json!("127.0.0.1")),
            ("port", serde_json::json!(6379)),
            ("username", serde_json::json!("admin")),
            ("password", serde_json::json!("x")),
            ("tls", serde_json::json!({"verify": false})),
        ] {
            for operation in ["run-command", "run-script", "backup", "probe"] {
                let mut body = serde_json::json!({
                    "operation": operation,
                    "target": {"site_id": "s1"},
                });
                match operation {
                    "run-command" => body["words"] = serde_json::json!(["/system/resource/print"]),
                    "run-script" => body["script"] = serde_json::json!(":put 1"),
                    _ => {}
                }
                body["target"][field] = value.clone();
                let (status, reply) =
                    send(&test, post_call(), Some(&admin), &body.to_string()).await;
                assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{reply}");
                assert_eq!(reply["code"], "validation_failed");
                let message = reply["message"].as_str().unwrap_or_default();
                assert!(
                    message.starts_with(&format!("target.{field}:")),
                    "{operation} {field}: {message}"
                );
            }
        }
        // A target with neither a site nor an address names the missing field.
        let body = r#"{"operation": "probe", "target": {}}"#;
        let (status, reply) = send(&test, post_call(), Some(&admin), body).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
        assert!(
            reply["message"]
                .as_str()
                .unwrap_or_default()
                .contains("site_id"),
            "{reply}"
        );
    }

    #[tokio::test]
    async fn the_document_names_engine_admin_and_site_id_and_no_free_address() {
        let doc = serde_json::to_value(crate::api::openapi::document()).expect("json");
        let call = &doc["paths"]["/plugins/{name}/call"]["post"];
        assert!(
            call["description"]
                .as_str()
                .unwrap_or_default()
                .contains("engine:admin"),
            "{call}"
        );
        let target = &doc["components"]["schemas"]["TargetBody"];
        let properties = target["properties"].as_object().expect("properties");
        assert!(properties.contains_key("site_id"), "{target}");
        for refused in ["address", "port", "username", "password", "tls"] {
            assert!(!properties.contains_key(refused), "{target}");
        }
        assert_eq!(target["required"], serde_json::json!(["site_id"]));
    }
}
