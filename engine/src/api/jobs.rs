//! Jobs on one router (seed 001): `POST /api/synchronous/{router_id}` runs a RouterOS
//! API command now and answers its rows; `POST /api/asynchronous/{router_id}` queues a
//! script as a job; `GET /api/routers/{router_id}/jobs` lists a router's jobs and
//! `GET /api/jobs/{id}` shows one with its output, error and backup. A `router_id` is a
//! site id of the caller's organization; another organization's site or job is 404.
//!
//! Answers carry the seed's envelope, `{"status": "success", "data": ...}`; errors are
//! the API's `{type, code, message, doc_url}`, and a router's or plugin's failure is
//! never a 500. A command the router refuses (`!trap`: no such command, a bad argument)
//! is the caller's to fix, 422 `router_trap` quoting the router; an unreachable router,
//! a refused login or any other failure of the transport is 502 with a code saying
//! which, a timeout is 504.
//!
//! Scopes: running (either way) needs `script:run`, reading jobs `script:view`, and
//! reading a job's backup `site:backup` besides (an export holds secrets). Every
//! synchronous call is written to the audit log before it is sent (who, which router,
//! the command and its parameters, with the values of password-like attributes
//! redacted), so a call is on record even if the engine stops during it. An asynchronous
//! job is audited as `job.submitted` by its submitter, in the commit that creates it.
//!
//! An asynchronous job is created once per idempotency key (per organization): the same
//! key again answers the same job (200 instead of 202) and never runs it twice; the
//! same key with another router, script or description is 409. A request without a
//! key gets one made for it, returned in the answer for the client's retries.

use std::collections::BTreeMap;

use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::ToSchema;

use super::error::ErrorBody;
use super::sites::site_of;
use super::support::{Paging, blocking, json_body, query};
use super::{ApiError, AppState, Caller};
use crate::auth::scopes::{SCRIPT_RUN, SCRIPT_VIEW, SITE_BACKUP};
use crate::plugins::{CallError, Failure, transport};
use crate::runner::execute::{self, ExecError};
use crate::runner::fanout::RunnerError;
use crate::store::{AuditInput, Job, JobInput, JobStatus, Operations, Site, StoreError};

/// Longest `command` of a synchronous call.
const MAX_COMMAND_CHARS: usize = 200;
/// Longest `parameters` of a synchronous call.
const MAX_PARAMETERS_CHARS: usize = 64 * 1024;
/// Audit action of a synchronous call.
pub const AUDIT_SYNC_CALL: &str = "site.sync_call";

/// Seed 001's timestamps: `2024-05-28T08:05:28+00:00`.
fn stamp(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Secs, false)
}

fn stamp_opt(at: Option<DateTime<Utc>>) -> Option<String> {
    at.map(stamp)
}

/// A synchronous RouterOS API call.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct SyncCall {
    /// The API command, such as `/ip/arp/print`.
    #[schema(example = "/ip/arp/print", max_length = 200)]
    command: String,
    /// API parameters as the MikroTik API documents them, such as
    /// `=script=/ip address add address=10.0.0.1/30 interface=ether1` with `/execute`.
    #[serde(default)]
    parameters: Option<String>,
}

/// The rows a command answered, keys spelled as seed 001 does (`id`, `mac_address`).
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct SyncReply {
    /// Always `success`.
    #[schema(example = "success")]
    status: String,
    data: Vec<BTreeMap<String, String>>,
}

/// Seed 001's asynchronous job request.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct AsyncJob {
    /// What the job does, up to 100 characters.
    #[schema(max_length = 100, example = "Log test message")]
    description: String,
    /// RouterOS commands, up to 2000 characters. Required unless the script comes from
    /// the library (`template_id` or `community_script_id`).
    #[schema(max_length = 2000, example = ":log info test")]
    #[serde(default)]
    script: Option<String>,
    /// Render this template (of your organization, or a global one) as the script.
    #[serde(default)]
    template_id: Option<String>,
    /// The template's version to render; the current one when absent.
    #[serde(default)]
    template_version: Option<u64>,
    /// Values for the template's variables.
    #[serde(default)]
    variables: BTreeMap<String, String>,
    /// Run this community script, as pinned (it must be `ready`).
    #[serde(default)]
    community_script_id: Option<String>,
    /// Export the configuration before running the script; default false.
    #[serde(default)]
    make_backup: Option<bool>,
    /// Run now instead of waiting for the queue; default false.
    #[serde(default)]
    express_execute: Option<bool>,
    /// Wait for the script's outcome before marking the job completed; default true.
    #[serde(default)]
    needs_acknowledgement: Option<bool>,
    /// Where job updates are posted: an https URL on a public address. Plain http, and
    /// internal addresses (loopback, private, link-local, metadata), only for hosts the
    /// operator lists with `--allow-http-notify`; a literal internal address that is not
    /// listed is refused here, and a name that resolves to one is refused when the update
    /// is delivered.
    #[serde(default)]
    #[schema(example = "https://example.com/notify")]
    notify_url: Option<String>,
    /// The same key again answers the same job and never runs it twice; made for the
    /// request when absent.
    #[serde(default)]
    #[schema(max_length = 200)]
    idempotency_key: Option<String>,
    /// Dead-man rollback: before the script the router saves a backup and schedules
    /// its restore this long after (`30s`, `5m`, `1h30m`; 1s to 24h); the engine removes
    /// both once it reaches the router again after the script. A router it cannot reach
    /// restores itself, and the job fails `rolled_back`. Refused (422
    /// `rollback_unsupported`) on a router whose transport cannot arm one.
    #[serde(default)]
    #[schema(example = "5m")]
    rollback_after: Option<String>,
}

/// What an asynchronous submission answers (seeds/README.md).
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct Accepted {
    idempotency_key: String,
    request_id: String,
    /// The router (site) id.
    target: String,
    notify_url: Option<String>,
    /// When the job was created.
    #[schema(example = "2024-05-28T08:05:28+00:00")]
    date: String,
}

/// `{"status": "success", "data": {idempotency_key, request_id, target, notify_url, date}}`.
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct AcceptedReply {
    #[schema(example = "success")]
    status: String,
    data: Accepted,
}

/// Why a job failed.
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct JobErrorView {
    code: String,
    message: String,
}

/// A job as seed 001 lists it, plus its request id, router and creation time.
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct JobSummary {
    id: String,
    /// The job's request id (seed 001 calls it `token` in lists).
    token: String,
    request_id: String,
    seq_id: u64,
    router_id: String,
    idempotency_key: Option<String>,
    description: String,
    express_execute: bool,
    needs_acknowledgement: bool,
    make_backup: bool,
    created_at: String,
    started_at: Option<String>,
    completed_at: Option<String>,
    failed_at: Option<String>,
    deleted_at: Option<String>,
    /// `pending`, `loaded`, `running`, `completed`, `failed` or `deleted`.
    #[schema(value_type = String, example = "completed")]
    status: JobStatus,
    error: Option<JobErrorView>,
}

impl From<&Job> for JobSummary {
    fn from(job: &Job) -> JobSummary {
        JobSummary {
            id: job.id.clone(),
            token: job.request_id.clone(),
            request_id: job.request_id.clone(),
            seq_id: job.seq_id,
            router_id: job.site_id.clone(),
            idempotency_key: job.idempotency_key.clone(),
            description: job.description.clone(),
            express_execute: job.express_execute,
            needs_acknowledgement: job.needs_acknowledgement,
            make_backup: job.make_backup,
            created_at: stamp(job.created_at),
            started_at: stamp_opt(job.started_at),
            completed_at: stamp_opt(job.completed_at),
            failed_at: stamp_opt(job.failed_at),
            deleted_at: stamp_opt(job.deleted_at),
            status: job.status,
            error: job.error.as_ref().map(|e| JobErrorView {
                code: e.code.clone(),
                message: e.message.clone(),
            }),
        }
    }
}

/// One page of a router's jobs, newest first.
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct JobList {
    #[schema(example = "success")]
    status: String,
    data: Vec<JobSummary>,
    page: usize,
    page_size: usize,
    /// The router's jobs in all pages.
    total: usize,
}

/// The schedule occurrence a job belongs to.
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct OriginView {
    schedule_id: String,
    occurrence: u64,
}

/// One job in full.
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct JobDetail {
    #[serde(flatten)]
    summary: JobSummary,
    script: String,
    notify_url: Option<String>,
    loaded_at: Option<String>,
    attempts: u32,
    /// What the script printed.
    output: Option<String>,
    /// The schedule run that made the job, if one did.
    origin: Option<OriginView>,
    has_backup: bool,
    /// The configuration exported before the script ran, when `make_backup` was set and
    /// the token carries `site:backup` (an export holds the router's secrets).
    backup: Option<String>,
    /// True when the job has a backup that is not shown because the token lacks
    /// `site:backup`: `backup` is then null although `has_backup` is true.
    backup_withheld: bool,
    /// How many lines of the export the script added and removed, when `make_backup`
    /// was set and the export after the script was taken.
    changes: Option<ChangesView>,
    /// The unified diff of the export before and after the script. The values of secret
    /// attributes (`password=`, `secret=`, `*-key=`, `passphrase=`, ...) are masked unless
    /// the token carries `site:backup`, as the backup itself is withheld.
    diff: Option<String>,
    /// True when `diff` has its secret values masked.
    diff_masked: bool,
    /// The dead-man rollback window asked for (`5m`), if any.
    rollback_after: Option<String>,
    /// The rollback as armed on the router and settled, if one was.
    rollback: Option<RollbackView>,
    /// Where the script came from, when the job was made from a template or a community
    /// script.
    #[serde(skip_serializing_if = "Option::is_none")]
    script_origin: Option<crate::store::ScriptOrigin>,
}

/// A job's dead-man rollback: when the router restores its backup unless disarmed,
/// whether it was disarmed, and whether a router cut off by its script came back.
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct RollbackView {
    /// The name of the backup and of the scheduler entry on the router.
    name: String,
    /// When the router restores the backup taken before the script (engine clock).
    fires_at: String,
    /// The same deadline as the router's clock reads it, once armed.
    router_fires_at: Option<String>,
    /// Set when the engine reached the router again after the script and removed the
    /// scheduler entry and the backup file.
    disarmed_at: Option<String>,
    /// Set when a router that could not be reached (the job failed `rolled_back`)
    /// answered again after restoring itself.
    returned_at: Option<String>,
}

/// The size of a job's diff, and a digest shared by jobs that changed the same lines.
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct ChangesView {
    added: u32,
    removed: u32,
    digest: String,
}

/// `{"status": "success", "data": job}`.
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct JobReply {
    #[schema(example = "success")]
    status: String,
    data: JobDetail,
}

fn success() -> String {
    "success".to_owned()
}

/// A dead-man rollback can be armed only by a transport that says it can (transport
/// contract 1.2): 422 `rollback_unsupported` otherwise, before anything is stored.
pub(super) fn check_rollback(state: &AppState, site: &Site) -> Result<(), ApiError> {
    let supported = state
        .plugins
        .transport(&site.transport)
        .is_ok_and(|t| t.supports_rollback());
    if supported {
        return Ok(());
    }
    Err(ApiError::new(
        StatusCode::UNPROCESSABLE_ENTITY,
        "rollback_unsupported",
        format!(
            "rollback_after: site {} is reached through the {} transport, which cannot arm a \
             dead-man rollback (it needs transport contract 1.2 and says it can); leave \
             rollback_after out or use a transport that can, such as routeros-api",
            site.id, site.transport
        ),
    ))
}

/// Maps a failed call on a router to the status that says whose failure it was.
fn exec_error(e: ExecError) -> ApiError {
    let (status, code) = match e.code.as_str() {
        "invalid" => {
            return ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "validation_failed",
                e.message,
            );
        }
        "timeout" | "plugin-timeout" => (StatusCode::GATEWAY_TIMEOUT, "plugin_timeout"),
        "plugin-crashed" => (StatusCode::BAD_GATEWAY, "plugin_crashed"),
        "plugin-not-found" => (StatusCode::BAD_GATEWAY, "plugin_not_found"),
        "plugin-wrong-kind" => (StatusCode::BAD_GATEWAY, "wrong_plugin_kind"),
        "shutting-down" => (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
        "refused" => (StatusCode::BAD_GATEWAY, "router_unreachable"),
        "auth" => (StatusCode::BAD_GATEWAY, "router_auth_failed"),
        // The router understood the request and refused it: retrying will not help,
        // changing the command will.
        "trap" => (StatusCode::UNPROCESSABLE_ENTITY, "router_trap"),
        _ => (StatusCode::BAD_GATEWAY, "plugin_error"),
    };
    ApiError::new(status, code, format!("[{}] {}", e.code, e.message))
}

fn runner_error(e: RunnerError) -> ApiError {
    match e {
        RunnerError::Store(e) => e.into(),
        other => ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            other.to_string(),
        ),
    }
}

/// Parameters for the audit log, with the values of password-like attributes hidden.
fn redacted(parameters: &str) -> String {
    execute::parse_parameters(parameters)
        .into_iter()
        .map(|word| {
            let attribute = word
                .strip_prefix('=')
                .and_then(|rest| rest.split_once('='))
                .map(|(name, _)| name.to_ascii_lowercase());
            match attribute {
                Some(name) if crate::store::is_secret_name(&name) => {
                    format!("={name}=<redacted>")
                }
                _ => word,
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// The site as its transport plugin sees it, with the password from the store, read
/// together in one snapshot: the password goes only to the endpoint it was sealed for,
/// whatever edits the site meanwhile. A site without a password is 409
/// `password_missing`, naming the field to set.
pub(super) async fn site_target(
    state: &AppState,
    site: &Site,
) -> Result<(Site, transport::Target), ApiError> {
    let id = site.id.clone();
    let (site, password) = blocking(&state.store, move |store| async move {
        store.site_with_password(&id).await.map_err(ApiError::from)
    })
    .await?;
    let target = transport::Target {
        site_id: site.id.clone(),
        address: site.address.clone(),
        port: site.port.unwrap_or(0),
        username: site.username.clone(),
        password: password.expose().to_owned(),
        tls: site.tls.enabled.then(|| transport::TlsSettings {
            verify: site.tls.verify,
            pinned_sha256: site.tls.pinned_sha256.clone(),
            server_name: site.tls.server_name.clone(),
        }),
        connect_timeout_ms: 0,
        reply_timeout_ms: 0,
        options: Vec::new(),
    };
    Ok((site, target))
}

#[utoipa::path(
    post,
    path = "/api/synchronous/{router_id}",
    tag = "jobs",
    summary = "Run a RouterOS API command now",
    description = "A wrapper around the RouterOS API through the site's transport plugin: the command's rows, keys spelled `id`, `mac_address`. Meant for reads; it has no delivery guarantee. Audited. Needs `script:run`.",
    params(("router_id" = String, Path, description = "Site id")),
    request_body = SyncCall,
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The command's rows", body = SyncReply),
        (status = 400, description = "The body is not JSON", body = ErrorBody),
        (status = 401, description = "No valid bearer token", body = ErrorBody),
        (status = 403, description = "The token lacks `script:run`", body = ErrorBody),
        (status = 404, description = "No such router in the organization", body = ErrorBody),
        (status = 409, description = "The site has no `password` (none was set, or it was cleared when the site's endpoint changed): `password_missing`; nothing was sent", body = ErrorBody),
        (status = 413, description = "The body is too large", body = ErrorBody),
        (status = 422, description = "A field is missing or wrong (the message names it); the script of an `/execute` (`=script=`) has a syntax error (`script_syntax_error`, naming its line, column and message); or the router refused the command (`router_trap`, quoting the router)", body = ErrorBody),
        (status = 502, description = "The router or its plugin failed: `router_unreachable`, `router_auth_failed`, `plugin_error`, `plugin_crashed`, `plugin_not_found`", body = ErrorBody),
        (status = 503, description = "The engine is shutting down", body = ErrorBody),
        (status = 504, description = "The router or plugin did not answer in time", body = ErrorBody),
    )
)]
async fn synchronous(
    caller: Caller,
    State(state): State<AppState>,
    Path(router_id): Path<String>,
    body: Result<Json<SyncCall>, JsonRejection>,
) -> Result<Json<SyncReply>, ApiError> {
    caller.require(SCRIPT_RUN)?;
    let call = json_body(body)?;
    let command = call.command.trim().to_owned();
    if command.is_empty() {
        return Err(ApiError::validation("command", "must not be empty"));
    }
    if command.chars().take(MAX_COMMAND_CHARS + 1).count() > MAX_COMMAND_CHARS {
        return Err(ApiError::validation(
            "command",
            format!("at most {MAX_COMMAND_CHARS} characters"),
        ));
    }
    let parameters = call.parameters.unwrap_or_default();
    if parameters.chars().take(MAX_PARAMETERS_CHARS + 1).count() > MAX_PARAMETERS_CHARS {
        return Err(ApiError::validation(
            "parameters",
            format!("at most {MAX_PARAMETERS_CHARS} characters"),
        ));
    }
    check_executed_script(&command, &parameters)?;
    let site = site_of(&state, &caller, router_id).await?;
    let (site, target) = site_target(&state, &site).await?;
    let transport = state
        .plugins
        .transport(&site.transport)
        .map_err(|e: CallError| {
            exec_error(ExecError::from(Failure::<transport::TransportError>::Call(
                e,
            )))
        })?;
    let audit = AuditInput {
        at: Utc::now(),
        organization: site.organization.clone(),
        actor: caller.user_id().to_owned(),
        action: AUDIT_SYNC_CALL.to_owned(),
        target: site.id.clone(),
        detail: json!({
            "command": command,
            "parameters": redacted(&parameters),
            "transport": site.transport,
        }),
    };
    blocking(&state.store, move |store| async move {
        store.append_audit(audit).await.map_err(ApiError::from)
    })
    .await?;
    // Counted against the organization's share of the plugin calls at once: a caller
    // sending commands to routers that never answer fills its own share, not the engine.
    let rows = crate::plugins::on_behalf_of(
        &site.organization,
        execute::command(&transport, &target, &command, &parameters),
    )
    .await
    .map_err(exec_error)?;
    Ok(Json(SyncReply {
        status: success(),
        data: rows,
    }))
}

/// `/execute` runs the script in its `=script=` word at once: one RouterOS would not
/// parse is refused, as an asynchronous job's would be. Other commands carry no script
/// to run now (a `=source=` is stored code, linted where it runs).
fn check_executed_script(command: &str, parameters: &str) -> Result<(), ApiError> {
    if command.trim_end_matches('/') != "/execute" {
        return Ok(());
    }
    for word in execute::parse_parameters(parameters) {
        if let Some(script) = word.strip_prefix("=script=") {
            crate::lint::policy::check_syntax(script)?;
        }
    }
    Ok(())
}

/// A random idempotency key in the form of a UUID (version 4).
fn new_key() -> String {
    use ring::rand::SecureRandom;
    let mut bytes = [0u8; 16];
    if ring::rand::SystemRandom::new().fill(&mut bytes).is_err() {
        let nanos = Utc::now().timestamp_nanos_opt().unwrap_or_default();
        bytes[..8].copy_from_slice(&nanos.to_be_bytes());
    }
    bytes[6] = (bytes[6] & 0x0f) | 0x40;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    let h = hex::encode(bytes);
    format!(
        "{}-{}-{}-{}-{}",
        &h[..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..]
    )
}

#[utoipa::path(
    post,
    path = "/api/asynchronous/{router_id}",
    tag = "jobs",
    summary = "Queue a script as a job",
    description = "Creates a job once per idempotency key: the same key again answers the same job (200) and never runs it twice; with another router, script or description it is 409. An express job starts at once; others are taken by the queue. Needs `script:run`.",
    params(("router_id" = String, Path, description = "Site id")),
    request_body = AsyncJob,
    security(("bearer" = [])),
    responses(
        (status = 202, description = "The job was created", body = AcceptedReply),
        (status = 200, description = "A job already exists under the idempotency key; it is answered again and not run again", body = AcceptedReply),
        (status = 400, description = "The body is not JSON", body = ErrorBody),
        (status = 401, description = "No valid bearer token", body = ErrorBody),
        (status = 403, description = "The token lacks `script:run`", body = ErrorBody),
        (status = 404, description = "No such router in the organization", body = ErrorBody),
        (status = 409, description = "The idempotency key was used for another job", body = ErrorBody),
        (status = 413, description = "The body is too large", body = ErrorBody),
        (status = 422, description = "A field is missing or wrong (the message names it); the script has a syntax error (`script_syntax_error`, naming its line, column and message); or `rollback_after` names a router whose transport cannot arm a dead-man rollback (`rollback_unsupported`)", body = ErrorBody),
    )
)]
async fn asynchronous(
    caller: Caller,
    State(state): State<AppState>,
    Path(router_id): Path<String>,
    body: Result<Json<AsyncJob>, JsonRejection>,
) -> Result<(StatusCode, Json<AcceptedReply>), ApiError> {
    caller.require(SCRIPT_RUN)?;
    let body = json_body(body)?;
    if let Some(url) = &body.notify_url {
        // Refused now rather than when the first update could not be delivered.
        state
            .notifications
            .check_notify_url(url)
            .map_err(|m| ApiError::validation("notify_url", m))?;
    }
    let rollback_after_secs = body
        .rollback_after
        .as_deref()
        .map(crate::runner::rollback::parse_window)
        .transpose()
        .map_err(|m| ApiError::validation("rollback_after", m))?;
    let (script, script_origin) = super::scripts::library_script(
        &state,
        &caller,
        super::scripts::LibraryChoice {
            script: body.script,
            template_id: body.template_id,
            template_version: body.template_version,
            variables: body.variables,
            community_script_id: body.community_script_id,
        },
    )
    .await?;
    let input = JobInput {
        rollback_after_secs,
        organization: caller.org().to_owned(),
        site_id: router_id.clone(),
        request_id: None,
        idempotency_key: Some(body.idempotency_key.unwrap_or_else(new_key)),
        description: body.description,
        script,
        make_backup: body.make_backup.unwrap_or(false),
        express_execute: body.express_execute.unwrap_or(false),
        needs_acknowledgement: body.needs_acknowledgement.unwrap_or(true),
        notify_url: body.notify_url,
        script_origin,
    };
    input.validate().map_err(ApiError::from)?;
    // RouterOS would refuse the script after the engine reached the router: refused here.
    crate::lint::policy::check_syntax(&input.script)?;
    let site = site_of(&state, &caller, router_id).await?;
    if input.rollback_after_secs.is_some() {
        check_rollback(&state, &site)?;
    }
    let (script, description) = (input.script.clone(), input.description.clone());
    let (job, created) = state
        .runner
        .submit_async(input, caller.user_id(), state.shutdown.clone())
        .await
        .map_err(runner_error)?;
    if !created
        && (job.site_id != site.id || job.script != script || job.description != description)
    {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "idempotency_conflict",
            format!(
                "the idempotency key was used for job {} with another router, script or description; use a new key",
                job.id
            ),
        ));
    }
    if created {
        tracing::info!(job = %job.id, site = %site.id, actor = caller.user_id(), "job submitted");
    }
    let status = if created {
        StatusCode::ACCEPTED
    } else {
        StatusCode::OK
    };
    Ok((
        status,
        Json(AcceptedReply {
            status: success(),
            data: Accepted {
                idempotency_key: job.idempotency_key.clone().unwrap_or_default(),
                request_id: job.request_id.clone(),
                target: job.site_id.clone(),
                notify_url: job.notify_url.clone(),
                date: stamp(job.created_at),
            },
        }),
    ))
}

#[utoipa::path(
    get,
    path = "/api/routers/{router_id}/jobs",
    tag = "jobs",
    summary = "List a router's jobs",
    description = "Newest first, a page at a time. Needs `script:view`.",
    params(("router_id" = String, Path, description = "Site id"), Paging),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "One page of the router's jobs", body = JobList),
        (status = 400, description = "Bad paging parameters", body = ErrorBody),
        (status = 401, description = "No valid bearer token", body = ErrorBody),
        (status = 403, description = "The token lacks `script:view`", body = ErrorBody),
        (status = 404, description = "No such router in the organization", body = ErrorBody),
    )
)]
async fn router_jobs(
    caller: Caller,
    State(state): State<AppState>,
    Path(router_id): Path<String>,
    paging: Result<Query<Paging>, QueryRejection>,
) -> Result<Json<JobList>, ApiError> {
    caller.require(SCRIPT_VIEW)?;
    let (page, page_size, offset) = query(paging)?.resolve()?;
    let site = site_of(&state, &caller, router_id).await?;
    let (jobs, total) = blocking(&state.store, move |store| async move {
        store
            .site_jobs(&site.id, offset, page_size)
            .await
            .map_err(ApiError::from)
    })
    .await?;
    Ok(Json(JobList {
        status: success(),
        data: jobs.iter().map(JobSummary::from).collect(),
        page,
        page_size,
        total,
    }))
}

#[utoipa::path(
    get,
    path = "/api/jobs/{id}",
    tag = "jobs",
    summary = "Show a job",
    description = "The job with its script, output, error, the backup taken before it and the diff of what the script changed in the export, if any. Needs `script:view`; the backup (which holds the router's secrets) is shown only to a token that also carries `site:backup`, and is otherwise withheld (`backup_withheld`); the diff is shown to both, with the values of secret attributes masked (`diff_masked`) for a token without `site:backup`.",
    params(("id" = String, Path, description = "Job id")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The job", body = JobReply),
        (status = 401, description = "No valid bearer token", body = ErrorBody),
        (status = 403, description = "The token lacks `script:view`", body = ErrorBody),
        (status = 404, description = "No such job in the organization", body = ErrorBody),
    )
)]
async fn show(
    caller: Caller,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<JobReply>, ApiError> {
    caller.require(SCRIPT_VIEW)?;
    let may_read_backup = caller.0.has_scope(SITE_BACKUP);
    let store = &state.store;
    let org = caller.org();
    // A point read, awaited in place: on redb a few records from the page cache cost
    // less than the hop to the blocking pool.
    let (job, backup, diff) = async {
        let job = match store.get_job(&id).await {
            Ok(job) if job.organization == org => job,
            Ok(_) | Err(StoreError::NotFound { .. }) => {
                return Err(ApiError::not_found(format!(
                    "no job {id} in your organization"
                )));
            }
            Err(e) => return Err(e.into()),
        };
        let backup = if job.has_backup && may_read_backup {
            store.get_backup(&job.id).await?
        } else {
            None
        };
        let diff = match job.changes {
            Some(_) => store.get_diff(&job.id).await?,
            None => None,
        };
        Ok::<_, ApiError>((job, backup, diff))
    }
    .await?;
    let diff_masked = diff.is_some() && !may_read_backup;
    let diff = diff.map(|d| {
        if may_read_backup {
            d
        } else {
            crate::runner::diff::mask(&d)
        }
    });
    Ok(Json(JobReply {
        status: success(),
        data: JobDetail {
            summary: JobSummary::from(&job),
            script: job.script,
            notify_url: job.notify_url,
            loaded_at: stamp_opt(job.loaded_at),
            attempts: job.attempts,
            output: job.output,
            origin: job.origin.map(|o| OriginView {
                schedule_id: o.schedule_id,
                occurrence: o.occurrence,
            }),
            has_backup: job.has_backup,
            backup_withheld: job.has_backup && !may_read_backup,
            backup: backup.map(|b| String::from_utf8_lossy(&b).into_owned()),
            changes: job.changes.map(|c| ChangesView {
                added: c.added,
                removed: c.removed,
                digest: c.digest,
            }),
            diff,
            diff_masked,
            rollback_after: job
                .rollback_after_secs
                .map(crate::runner::rollback::format_window),
            rollback: job.rollback.map(|g| RollbackView {
                name: g.name,
                fires_at: stamp(g.fires_at),
                router_fires_at: g.router_fires_at,
                disarmed_at: stamp_opt(g.disarmed_at),
                returned_at: stamp_opt(g.returned_at),
            }),
            script_origin: job.script_origin,
        },
    }))
}

#[derive(utoipa::OpenApi)]
#[openapi(
    paths(synchronous, asynchronous, router_jobs, show),
    components(schemas(
        ErrorBody,
        SyncCall,
        SyncReply,
        AsyncJob,
        Accepted,
        AcceptedReply,
        JobSummary,
        ChangesView,
        RollbackView,
        JobErrorView,
        JobList,
        JobDetail,
        OriginView,
        JobReply
    )),
    tags((name = "jobs", description = "Seed 001: commands and scripts on one router."))
)]
pub(super) struct Doc;

pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/synchronous/{router_id}", post(synchronous))
        .route("/api/asynchronous/{router_id}", post(asynchronous))
        .route("/api/routers/{router_id}/jobs", get(router_jobs))
        .route("/api/jobs/{id}", get(show))
}

#[cfg(test)]
mod tests {
    use axum::http::StatusCode;
    use serde_json::{Value, json};

    use super::super::sites::testing::{call, json};
    use crate::api::test_support::{TestState, state};
    use crate::store::Operations;

    async fn site(t: &TestState, org: &str, name: &str) -> String {
        let token = t.token("admin", org, &["site:manage"]);
        let body = json!({"name": name, "address": "127.0.0.1", "port": 1, "password": "pw"});
        let (status, site, text) =
            json(&t.state, "POST", "/sites", Some(&token), Some(&body)).await;
        assert_eq!(status, StatusCode::CREATED, "{text}");
        site["id"].as_str().expect("id").to_owned()
    }

    fn job(key: &str) -> Value {
        json!({
            "description": "Log test message",
            "script": ":log info test",
            "make_backup": false,
            "express_execute": false,
            "needs_acknowledgement": false,
            "notify_url": "https://example.com/notify",
            "idempotency_key": key,
        })
    }

    #[tokio::test]
    async fn a_backup_is_shown_only_to_a_token_with_site_backup() {
        let t = state();
        let router = site(&t, "acme", "r1").await;
        let submitter = t.token("alice", "acme", &["script:run", "script:view"]);
        let (status, made, text) = json(
            &t.state,
            "POST",
            &format!("/api/asynchronous/{router}"),
            Some(&submitter),
            Some(&job("k-backup")),
        )
        .await;
        assert_eq!(status, StatusCode::ACCEPTED, "{text}");
        let request = made["data"]["request_id"].as_str().expect("request id");
        let id = t
            .state
            .store
            .jobs_for_site(&router, &crate::store::Page::first(10))
            .await
            .expect("jobs")
            .into_iter()
            .find(|j| j.request_id == request)
            .expect("the job")
            .id;
        let export = "/ip ipsec peer add secret=\"exported-psk\"\n";
        t.state
            .store
            .put_backup(&id, export.as_bytes())
            .await
            .expect("backup");
        let uri = format!("/api/jobs/{id}");

        // A second user of the organization who may read jobs, but not backups.
        let viewer = t.token("bob", "acme", &["script:view"]);
        let (status, shown, text) = json(&t.state, "GET", &uri, Some(&viewer), None).await;
        assert_eq!(status, StatusCode::OK, "{text}");
        assert!(!text.contains("exported-psk"), "{text}");
        assert_eq!(shown["data"]["has_backup"], true);
        assert_eq!(shown["data"]["backup"], Value::Null);
        assert_eq!(shown["data"]["backup_withheld"], true);
        // The submitter, who ran the job, does not see it either without the scope.
        let (_, _, text) = json(&t.state, "GET", &uri, Some(&submitter), None).await;
        assert!(!text.contains("exported-psk"), "{text}");

        // Another organization's holder of `site:backup` does not find the job at all.
        let outsider = t.token("eve", "other", &["script:view", "site:backup"]);
        let (status, _, text) = json(&t.state, "GET", &uri, Some(&outsider), None).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert!(!text.contains("exported-psk"), "{text}");

        let auditor = t.token("carol", "acme", &["script:view", "site:backup"]);
        let (status, shown, text) = json(&t.state, "GET", &uri, Some(&auditor), None).await;
        assert_eq!(status, StatusCode::OK, "{text}");
        assert_eq!(shown["data"]["backup"], export);
        assert_eq!(shown["data"]["backup_withheld"], false);
    }

    #[tokio::test]
    async fn a_script_with_a_syntax_error_is_refused_and_queues_nothing() {
        let t = state();
        let router = site(&t, "acme", "r1").await;
        let token = t.token("alice", "acme", &["script:run", "script:view"]);
        let uri = format!("/api/asynchronous/{router}");
        let mut broken = job("k-broken");
        broken["script"] = json!(":log info test\n/ip address add address=$missing");
        let (status, err, text) = json(&t.state, "POST", &uri, Some(&token), Some(&broken)).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{text}");
        assert_eq!(err["code"], "script_syntax_error");
        let message = err["message"].as_str().expect("message");
        assert!(message.contains("line 2, column 25"), "{message}");
        let jobs = t
            .state
            .store
            .jobs_for_site(&router, &crate::store::Page::first(10))
            .await
            .expect("jobs");
        assert!(jobs.is_empty(), "{jobs:?}");
        // A risky script is no syntax error: a job carries no acknowledgement.
        let mut risky = job("k-risky");
        risky["script"] = json!("/system reboot");
        let (status, _, text) = json(&t.state, "POST", &uri, Some(&token), Some(&risky)).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{text}");
    }

    #[tokio::test]
    async fn an_execute_whose_script_has_a_syntax_error_is_refused_before_the_router() {
        let t = state();
        let router = site(&t, "acme", "r1").await;
        let token = t.token("alice", "acme", &["script:run"]);
        let uri = format!("/api/synchronous/{router}");
        let call = json!({
            "command": "/execute",
            "parameters": "=script=:log info ok\n:put [/system identity get name",
        });
        let (status, err, text) = json(&t.state, "POST", &uri, Some(&token), Some(&call)).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{text}");
        assert_eq!(err["code"], "script_syntax_error");
        assert!(
            err["message"]
                .as_str()
                .is_some_and(|m| m.contains("line 2, column 6")),
            "{text}"
        );
        assert!(super::check_executed_script("/execute", "=script=:log info ok").is_ok());
        assert!(super::check_executed_script("/system/script/add", "=source=:put (").is_ok());
    }

    #[tokio::test]
    async fn asynchronous_jobs_are_created_once_per_key_and_listed() {
        let t = state();
        let router = site(&t, "acme", "r1").await;
        let other_router = site(&t, "acme", "r2").await;
        let token = t.token("alice", "acme", &["script:run", "script:view"]);
        let uri = format!("/api/asynchronous/{router}");

        let (status, first, text) =
            json(&t.state, "POST", &uri, Some(&token), Some(&job("k-1"))).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{text}");
        assert_eq!(first["status"], "success");
        let data = &first["data"];
        assert_eq!(data["idempotency_key"], "k-1");
        assert_eq!(data["target"], router.as_str());
        assert_eq!(data["notify_url"], "https://example.com/notify");
        assert!(
            data["date"].as_str().is_some_and(|d| d.ends_with("+00:00")),
            "{text}"
        );

        let (status, again, _) =
            json(&t.state, "POST", &uri, Some(&token), Some(&job("k-1"))).await;
        assert_eq!(status, StatusCode::OK, "the same key answers the same job");
        assert_eq!(again, first);

        let mut changed = job("k-1");
        changed["script"] = json!(":log info other");
        let (status, err, _) = json(&t.state, "POST", &uri, Some(&token), Some(&changed)).await;
        assert_eq!(status, StatusCode::CONFLICT);
        assert_eq!(err["code"], "idempotency_conflict");
        let (status, _, _) = json(
            &t.state,
            "POST",
            &format!("/api/asynchronous/{other_router}"),
            Some(&token),
            Some(&job("k-1")),
        )
        .await;
        assert_eq!(status, StatusCode::CONFLICT);

        let mut keyless = job("x");
        keyless.as_object_mut().map(|o| o.remove("idempotency_key"));
        let (status, made, _) = json(&t.state, "POST", &uri, Some(&token), Some(&keyless)).await;
        assert_eq!(status, StatusCode::ACCEPTED);
        assert_eq!(
            made["data"]["idempotency_key"].as_str().map(str::len),
            Some(36)
        );

        let (status, list, text) = json(
            &t.state,
            "GET",
            &format!("/api/routers/{router}/jobs?page_size=1"),
            Some(&token),
            None,
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{text}");
        assert_eq!(list["status"], "success");
        assert_eq!(list["total"], 2);
        let newest = &list["data"][0];
        assert_eq!(newest["idempotency_key"], made["data"]["idempotency_key"]);
        assert_eq!(newest["status"], "pending");
        assert_eq!(newest["needs_acknowledgement"], false);
        for field in [
            "id",
            "token",
            "description",
            "express_execute",
            "make_backup",
            "started_at",
            "completed_at",
            "failed_at",
            "deleted_at",
        ] {
            assert!(newest.get(field).is_some(), "{field} missing: {newest}");
        }
        let (_, page2, _) = json(
            &t.state,
            "GET",
            &format!("/api/routers/{router}/jobs?page=2&page_size=1"),
            Some(&token),
            None,
        )
        .await;
        assert_eq!(page2["data"][0]["idempotency_key"], "k-1");
        assert_eq!(page2["data"][0]["token"], first["data"]["request_id"]);

        let id = page2["data"][0]["id"].as_str().expect("id");
        let (status, shown, text) = json(
            &t.state,
            "GET",
            &format!("/api/jobs/{id}"),
            Some(&token),
            None,
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{text}");
        assert_eq!(shown["data"]["script"], ":log info test");
        assert_eq!(shown["data"]["id"], id);
        assert_eq!(shown["data"]["backup"], Value::Null);

        // Each job created is audited once, by who submitted it; answers under a known
        // key and refusals write nothing.
        let audit = t
            .state
            .store
            .list_audit(&crate::store::Page::first(100))
            .await
            .expect("audit");
        let submitted: Vec<_> = audit
            .iter()
            .filter(|e| e.action == crate::store::AUDIT_JOB_SUBMITTED)
            .collect();
        assert_eq!(submitted.len(), 2, "{audit:?}");
        assert!(submitted.iter().all(|e| e.actor == "alice"
            && e.organization == "acme"
            && e.detail["site_id"] == router.as_str()));
        assert_eq!(submitted[0].target, id);
        assert_eq!(submitted[0].detail["idempotency_key"], "k-1");

        // Another organization sees none of it.
        let stranger = t.token("mallory", "globex", &["script:run", "script:view"]);
        for (method, uri, body) in [
            ("POST", uri.clone(), Some(job("k-9"))),
            ("GET", format!("/api/routers/{router}/jobs"), None),
            ("GET", format!("/api/jobs/{id}"), None),
            (
                "POST",
                format!("/api/synchronous/{router}"),
                Some(json!({"command": "/system/identity/print"})),
            ),
        ] {
            let (status, err, text) =
                json(&t.state, method, &uri, Some(&stranger), body.as_ref()).await;
            assert_eq!(status, StatusCode::NOT_FOUND, "{method} {uri}");
            assert_eq!(err["code"], "not_found");
            assert!(!text.contains("Log test message"));
        }
        // Same key in another organization is another job: keys are per organization.
        let theirs = site(&t, "globex", "r1").await;
        let (status, _, _) = json(
            &t.state,
            "POST",
            &format!("/api/asynchronous/{theirs}"),
            Some(&stranger),
            Some(&job("k-1")),
        )
        .await;
        assert_eq!(status, StatusCode::ACCEPTED);
    }

    #[tokio::test]
    async fn scopes_tokens_and_bad_bodies() {
        let t = state();
        let router = site(&t, "acme", "r1").await;
        let sync = format!("/api/synchronous/{router}");
        let queue = format!("/api/asynchronous/{router}");
        let list = format!("/api/routers/{router}/jobs");
        let viewer = t.token("v", "acme", &["script:view"]);
        let runner = t.token("r", "acme", &["script:run"]);
        let command = json!({"command": "/system/identity/print"});

        for (method, uri) in [("POST", &sync), ("POST", &queue), ("GET", &list)] {
            let (status, err, _) = json(&t.state, method, uri, None, Some(&command)).await;
            assert_eq!(status, StatusCode::UNAUTHORIZED, "{uri}");
            assert_eq!(err["code"], "missing_token");
        }
        for uri in [&sync, &queue] {
            let (status, err, _) =
                json(&t.state, "POST", uri, Some(&viewer), Some(&job("k"))).await;
            assert_eq!(status, StatusCode::FORBIDDEN, "{uri}");
            assert!(
                err["message"]
                    .as_str()
                    .unwrap_or_default()
                    .contains("script:run")
            );
        }
        let (status, err, _) = json(&t.state, "GET", &list, Some(&runner), None).await;
        assert_eq!(status, StatusCode::FORBIDDEN);
        assert!(
            err["message"]
                .as_str()
                .unwrap_or_default()
                .contains("script:view")
        );

        for uri in [&sync, &queue] {
            let (status, err, _) = call(
                &t.state,
                "POST",
                uri,
                Some(&runner),
                Some("application/json"),
                "{not json",
            )
            .await;
            assert_eq!(status, StatusCode::BAD_REQUEST, "{uri}");
            assert_eq!(err["code"], "malformed_json");
        }
        for (field, value) in [
            ("description", json!("d".repeat(101))),
            ("description", json!("")),
            ("script", json!("s".repeat(2001))),
            ("script", json!(" ")),
            ("notify_url", json!("ftp://example.com")),
            ("notify_url", json!("http://example.com/plain")),
            ("notify_url", json!("https://127.0.0.1:6379/")),
            (
                "notify_url",
                json!("https://169.254.169.254/latest/meta-data"),
            ),
            ("notify_url", json!("https://[::1]/")),
            ("idempotency_key", json!("")),
        ] {
            let mut body = job("k");
            body[field] = value;
            let (status, err, text) =
                json(&t.state, "POST", &queue, Some(&runner), Some(&body)).await;
            assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{field}: {text}");
            assert!(
                err["message"]
                    .as_str()
                    .unwrap_or_default()
                    .starts_with(field),
                "{text}"
            );
        }
        let (status, err, _) = json(
            &t.state,
            "POST",
            &queue,
            Some(&runner),
            Some(&json!({"script": ":log info x"})),
        )
        .await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
        assert!(
            err["message"]
                .as_str()
                .unwrap_or_default()
                .contains("description")
        );
        let (status, err, _) = json(
            &t.state,
            "POST",
            &sync,
            Some(&runner),
            Some(&json!({"command": " "})),
        )
        .await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
        assert!(
            err["message"]
                .as_str()
                .unwrap_or_default()
                .starts_with("command")
        );

        // The test state loads no plugin: the site's transport is missing, which is the
        // engine's problem to report, not a 500.
        let (status, err, _) = json(&t.state, "POST", &sync, Some(&runner), Some(&command)).await;
        assert_eq!(status, StatusCode::BAD_GATEWAY);
        assert_eq!(err["code"], "plugin_not_found");
        assert_eq!(err["type"], "plugin_error");
    }

    #[test]
    fn audit_hides_password_like_values() {
        assert_eq!(
            super::redacted("=name=bob =password=hunter2 =comment=two words"),
            "=name=bob =password=<redacted> =comment=two words"
        );
        assert_eq!(
            super::redacted("=wpa2-pre-shared-key=abc =script=/ip address add"),
            "=wpa2-pre-shared-key=<redacted> =script=/ip address add"
        );
        assert_eq!(super::redacted("é ?type=ether"), "é ?type=ether");
    }
}

#[cfg(test)]
mod document {
    use serde_json::Value;

    /// Every route of sites, users and jobs is described, with the statuses it answers,
    /// and the password is write-only in the schema.
    #[test]
    fn the_openapi_document_describes_sites_users_and_jobs() {
        let doc = serde_json::to_value(crate::api::openapi_document()).expect("json");
        for (path, method, statuses) in [
            ("/sites", "get", &["200", "400", "401", "403"][..]),
            (
                "/sites",
                "post",
                &["201", "400", "401", "403", "409", "413", "422"],
            ),
            ("/sites/{id}", "get", &["200", "401", "403", "404"]),
            (
                "/sites/{id}",
                "put",
                &["200", "400", "401", "403", "404", "409", "413", "422"],
            ),
            ("/sites/{id}", "delete", &["204", "401", "403", "404"]),
            (
                "/sites/import",
                "post",
                &["201", "400", "401", "403", "409", "413", "415", "422"],
            ),
            ("/users", "get", &["200", "400", "401"]),
            (
                "/users",
                "post",
                &["201", "400", "401", "403", "409", "413", "422"],
            ),
            ("/users/{id}", "get", &["200", "401", "404"]),
            (
                "/api/synchronous/{router_id}",
                "post",
                &[
                    "200", "400", "401", "403", "404", "413", "422", "502", "503", "504",
                ],
            ),
            (
                "/api/asynchronous/{router_id}",
                "post",
                &[
                    "200", "202", "400", "401", "403", "404", "409", "413", "422",
                ],
            ),
            (
                "/api/routers/{router_id}/jobs",
                "get",
                &["200", "400", "401", "403", "404"],
            ),
            ("/api/jobs/{id}", "get", &["200", "401", "403", "404"]),
        ] {
            let op = &doc["paths"][path][method];
            assert!(op.is_object(), "{method} {path} is not described");
            assert!(op["security"].is_array(), "{method} {path} has no security");
            for status in statuses {
                assert!(
                    op["responses"][status].is_object(),
                    "{method} {path} {status}"
                );
            }
        }
        let site = &doc["components"]["schemas"]["SiteBody"]["properties"];
        assert_eq!(site["password"]["writeOnly"], true, "{site}");
        let view = &doc["components"]["schemas"]["SiteView"]["properties"];
        assert!(view.get("password").is_none() && view["has_password"].is_object());
        let job = &doc["components"]["schemas"]["JobSummary"]["properties"];
        for field in [
            "id",
            "token",
            "idempotency_key",
            "description",
            "express_execute",
            "needs_acknowledgement",
            "make_backup",
            "started_at",
            "completed_at",
            "failed_at",
            "deleted_at",
            "status",
        ] {
            assert!(job[field].is_object(), "{field}");
        }
        let accepted = &doc["components"]["schemas"]["Accepted"]["properties"];
        for field in [
            "idempotency_key",
            "request_id",
            "target",
            "notify_url",
            "date",
        ] {
            assert!(accepted[field].is_object(), "{field}");
        }
        assert!(matches!(
            &doc["components"]["schemas"]["ErrorBody"]["properties"]["type"],
            Value::Object(_)
        ));
    }
}
