//! Notifications: an organization's channels (`GET/POST /notifications/channels`,
//! `GET/DELETE /notifications/channels/{id}`), its dead letters
//! (`GET /notifications/dead-letters`, `POST /notifications/dead-letters/{id}/retry`)
//! and the secret that signs deliveries to its jobs' `notify_url`s
//! (`GET /notifications/signing-secret`, `POST /notifications/signing-secret/rotate`).
//!
//! Scopes: a channel configures a notifier plugin for the organization, so reading
//! channels and dead letters needs `plugin:view`, and creating or deleting a channel,
//! rotating a secret, retrying a dead letter or reading the signing secret needs
//! `plugin:manage`. Secret
//! settings (a webhook's signing secret, an SMTP password) are write-only: a channel
//! shows which are set, never their values; a webhook secret the engine generates is
//! shown once, in the answer to the create. Channels and dead letters of another
//! organization answer 404.

use std::collections::BTreeMap;

use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use chrono::{DateTime, TimeDelta, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::error::ErrorBody;
use super::support::{blocking, json_body, query};
use super::{ApiError, AppState, Caller};
use crate::auth::scopes::{PLUGIN_MANAGE, PLUGIN_VIEW};
use crate::store::{
    Channel, ChannelInput, ChannelKind, MAX_NAME_CHARS, Operations, OutboxEvent, Page,
    SecretGeneration, StoreError,
};

/// Settings each kind of channel takes; anything else is refused by name.
const WEBHOOK_SETTINGS: &[&str] = &["url", "timeout_ms"];
const EMAIL_SETTINGS: &[&str] = &[
    "host",
    "port",
    "security",
    "verify",
    "pinned_sha256",
    "server_name",
    "username",
    "auth",
    "auth_without_tls",
    "from",
    "from_name",
    "helo",
    "timeout_ms",
    "to",
];
const MAX_EVENTS: usize = 50;
const MAX_SETTING_CHARS: usize = 2000;

/// A notification channel as the API shows it.
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct ChannelView {
    id: String,
    name: String,
    #[schema(value_type = String, example = "webhook")]
    kind: ChannelKind,
    /// The notifier plugin that delivers to it.
    plugin: String,
    /// Event kinds it takes (exact, `prefix.*` or `*`); empty means all.
    events: Vec<String>,
    /// Its settings, secrets excluded.
    settings: BTreeMap<String, String>,
    /// Names of the secret settings that are set (`secret`, `password`).
    secret_settings: Vec<String>,
    created_by: String,
    created_at: DateTime<Utc>,
}

impl From<Channel> for ChannelView {
    fn from(c: Channel) -> ChannelView {
        ChannelView {
            id: c.id,
            name: c.name,
            kind: c.kind,
            plugin: c.plugin,
            events: c.events,
            settings: c.settings,
            secret_settings: c.secret_settings,
            created_by: c.created_by,
            created_at: c.created_at,
        }
    }
}

/// A created channel; `secret` is the webhook signing secret, shown this once.
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct CreatedChannel {
    #[serde(flatten)]
    channel: ChannelView,
    /// The webhook's signing secret, when the engine generated it. Not shown again.
    #[serde(skip_serializing_if = "Option::is_none")]
    secret: Option<String>,
}

/// A new channel of the caller's organization.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct NewChannel {
    /// Unique within the organization.
    #[schema(max_length = 200)]
    name: String,
    /// `webhook` or `email`.
    #[schema(example = "webhook")]
    kind: String,
    /// The notifier plugin; the first-party one of the kind by default.
    plugin: Option<String>,
    /// Event kinds it takes: `script.authorization_requested`, `script.authorized`,
    /// `script.launched`, `script.site_finished`, `script.run_finished`,
    /// `script.cancelled`, `job.status`; or `script.*`, or `*`. All when absent.
    #[serde(default)]
    events: Vec<String>,
    /// Webhook: `url` (https, or http to a host the operator allows), `timeout_ms`.
    /// E-mail: `host`, `port`, `security` (starttls, opportunistic, tls, none),
    /// `verify`, `pinned_sha256`, `server_name`, `username`, `auth` (plain, login),
    /// `auth_without_tls`, `from`, `from_name`, `helo`, `timeout_ms`, `to` (addresses,
    /// comma-separated, that get every event the channel takes but approval links).
    #[serde(default)]
    settings: BTreeMap<String, String>,
    /// Webhook signing secret (HMAC-SHA256); generated when absent. Write-only.
    secret: Option<String>,
    /// SMTP password. Write-only.
    password: Option<String>,
}

fn check_text(field: &str, value: &str, max: usize) -> Result<(), ApiError> {
    if value.trim().is_empty() {
        return Err(ApiError::validation(field, "must not be empty"));
    }
    if value.chars().take(max + 1).count() > max {
        return Err(ApiError::validation(
            field,
            format!("at most {max} characters"),
        ));
    }
    if value.chars().any(char::is_control) {
        return Err(ApiError::validation(
            field,
            "must not hold control characters",
        ));
    }
    Ok(())
}

fn check_address(field: &str, address: &str) -> Result<(), ApiError> {
    let ok = address
        .split_once('@')
        .is_some_and(|(l, d)| !l.is_empty() && !d.is_empty() && !d.contains('@'))
        && !address
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || matches!(c, '<' | '>' | ',' | '"'));
    if ok {
        Ok(())
    } else {
        Err(ApiError::validation(
            field,
            format!("`{address}` is not an email address like ada@example.com"),
        ))
    }
}

impl NewChannel {
    /// Checks the body and splits it into the record and its secrets; the second value
    /// is a generated webhook secret, to show once.
    fn into_input(
        self,
        state: &AppState,
        caller: &Caller,
    ) -> Result<(ChannelInput, Option<String>), ApiError> {
        check_text("name", &self.name, MAX_NAME_CHARS)?;
        let kind = match self.kind.as_str() {
            "webhook" => ChannelKind::Webhook,
            "email" => ChannelKind::Email,
            other => {
                return Err(ApiError::validation(
                    "kind",
                    format!("`{other}` is not a channel kind; use webhook or email"),
                ));
            }
        };
        if let Some(plugin) = &self.plugin {
            check_text("plugin", plugin, MAX_NAME_CHARS)?;
        }
        if self.events.len() > MAX_EVENTS {
            return Err(ApiError::validation(
                "events",
                format!("at most {MAX_EVENTS} entries"),
            ));
        }
        for event in &self.events {
            check_text("events", event, 100)?;
        }
        let allowed = match kind {
            ChannelKind::Webhook => WEBHOOK_SETTINGS,
            ChannelKind::Email => EMAIL_SETTINGS,
        };
        for (key, value) in &self.settings {
            if !allowed.contains(&key.as_str()) {
                return Err(ApiError::validation(
                    "settings",
                    format!(
                        "`{key}` is not a {} setting; known: {}",
                        self.kind,
                        allowed.join(", ")
                    ),
                ));
            }
            if value.chars().take(MAX_SETTING_CHARS + 1).count() > MAX_SETTING_CHARS
                || value.chars().any(char::is_control)
            {
                return Err(ApiError::validation(
                    "settings",
                    format!(
                        "`{key}` must be at most {MAX_SETTING_CHARS} characters, without control characters"
                    ),
                ));
            }
        }
        let setting = |k: &str| self.settings.get(k).map(String::as_str);
        let number = |k: &str, max: u32| -> Result<(), ApiError> {
            match setting(k) {
                Some(v) if !v.trim().parse::<u32>().is_ok_and(|n| n >= 1 && n <= max) => {
                    Err(ApiError::validation(
                        "settings",
                        format!("`{k}` must be a number from 1 to {max}"),
                    ))
                }
                _ => Ok(()),
            }
        };
        let mut secrets = BTreeMap::new();
        let mut generated = None;
        match kind {
            ChannelKind::Webhook => {
                let url = setting("url")
                    .ok_or_else(|| ApiError::validation("settings", "a webhook needs `url`"))?;
                state
                    .notifications
                    .check_url(url)
                    .map_err(|m| ApiError::validation("settings", format!("`url` {m}")))?;
                number("timeout_ms", 120_000)?;
                if self.password.is_some() {
                    return Err(ApiError::validation(
                        "password",
                        "a webhook has no password",
                    ));
                }
                let secret = match self.secret {
                    Some(s) => {
                        if s.len() < 16 || s.len() > 512 || s.chars().any(char::is_control) {
                            return Err(ApiError::validation(
                                "secret",
                                "must be 16 to 512 characters without control characters",
                            ));
                        }
                        s
                    }
                    None => {
                        let s = random_secret();
                        generated = Some(s.clone());
                        s
                    }
                };
                secrets.insert("secret".to_owned(), secret);
            }
            ChannelKind::Email => {
                let host = setting("host").ok_or_else(|| {
                    ApiError::validation("settings", "an email channel needs `host`")
                })?;
                check_text("settings", host, 253)?;
                let from = setting("from").ok_or_else(|| {
                    ApiError::validation("settings", "an email channel needs `from`")
                })?;
                check_address("settings", from)?;
                number("port", 65_535)?;
                number("timeout_ms", 300_000)?;
                if let Some(security) = setting("security")
                    && !["starttls", "opportunistic", "tls", "none"].contains(&security)
                {
                    return Err(ApiError::validation(
                        "settings",
                        "`security` must be starttls, opportunistic, tls or none",
                    ));
                }
                if let Some(auth) = setting("auth")
                    && !["plain", "login"].contains(&auth)
                {
                    return Err(ApiError::validation(
                        "settings",
                        "`auth` must be plain or login",
                    ));
                }
                for key in ["verify", "auth_without_tls"] {
                    if let Some(v) = setting(key)
                        && !["true", "false"].contains(&v)
                    {
                        return Err(ApiError::validation(
                            "settings",
                            format!("`{key}` must be true or false"),
                        ));
                    }
                }
                for address in setting("to").unwrap_or("").split(',').map(str::trim) {
                    if !address.is_empty() {
                        check_address("settings", address)?;
                    }
                }
                if self.secret.is_some() {
                    return Err(ApiError::validation(
                        "secret",
                        "an email channel has no signing secret",
                    ));
                }
                if let Some(password) = self.password {
                    if setting("username").is_none() {
                        return Err(ApiError::validation(
                            "password",
                            "a password needs `username` in settings",
                        ));
                    }
                    check_text("password", &password, 512)?;
                    secrets.insert("password".to_owned(), password);
                }
            }
        }
        Ok((
            ChannelInput {
                organization: caller.org().to_owned(),
                name: self.name.trim().to_owned(),
                kind,
                plugin: self.plugin,
                events: self.events,
                settings: self.settings,
                secrets,
                created_by: caller.user_id().to_owned(),
            },
            generated,
        ))
    }
}

/// 32 random bytes, hex.
fn random_secret() -> String {
    use ring::rand::SecureRandom;
    let mut bytes = [0u8; 32];
    if ring::rand::SystemRandom::new().fill(&mut bytes).is_err() {
        // Without the system's randomness, fall back on the engine's own generator.
        use chacha20poly1305::aead::{OsRng, rand_core::RngCore};
        OsRng.fill_bytes(&mut bytes);
    }
    hex::encode(bytes)
}

/// A dead letter: an event that gave up.
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct DeadLetter {
    /// The event id, as receivers saw it in `x-yardmaster-event-id`.
    id: u64,
    kind: String,
    created_at: DateTime<Utc>,
    attempts: u32,
    last_error: Option<String>,
    dead_at: Option<DateTime<Utc>>,
    /// Deliveries that did succeed (`channel:<id>`, `channel:<id>:<user>` for an approval
    /// request's message to one recipient, `notify_url`); a retry skips them.
    delivered_to: Vec<String>,
    /// The event; approval links are left out.
    #[schema(value_type = Object)]
    payload: serde_json::Value,
}

impl From<OutboxEvent> for DeadLetter {
    fn from(e: OutboxEvent) -> DeadLetter {
        let mut payload = e.payload;
        if let Some(map) = payload.as_object_mut() {
            map.remove("links");
            map.remove("link");
        }
        DeadLetter {
            id: e.id,
            kind: e.kind,
            created_at: e.created_at,
            attempts: e.attempts,
            last_error: e.last_error,
            dead_at: e.dead_at,
            delivered_to: e.delivered_to,
            payload,
        }
    }
}

/// One page of dead letters.
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct DeadLetterPage {
    data: Vec<DeadLetter>,
    /// Pass as `after` for the next page; absent on the last.
    next_after: Option<u64>,
}

/// Paging of `GET /notifications/dead-letters`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(super) struct DeadLetterQuery {
    /// Dead letters with ids after this one.
    after: Option<u64>,
    /// At most this many, 1 to 1000.
    #[param(minimum = 1, maximum = 1000, default = 100)]
    limit: Option<usize>,
}

/// The secret that signs deliveries to the organization's jobs' `notify_url`s.
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct SigningSecret {
    /// HMAC-SHA256 key: `x-yardmaster-signature` is `sha256=` and the hex HMAC of
    /// `<x-yardmaster-timestamp>.<body>`.
    secret: String,
    /// Which secret this is: 0 until the first rotation, then one more per rotation.
    generation: u32,
    /// When the secret was last rotated; null before the first rotation.
    rotated_at: Option<DateTime<Utc>>,
    /// The secret before the last rotation, while deliveries still carry its signature
    /// too, in `x-yardmaster-signature-previous`; null once that has ended.
    previous_secret: Option<String>,
    /// Until when the previous secret's signature is sent.
    previous_until: Option<DateTime<Utc>>,
}

/// How long the previous secret keeps signing beside the new one.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(super) struct RotateQuery {
    /// A duration such as `24h`, `90m` or `0s` (stop at once), at most 30 days.
    #[param(default = "24h", example = "24h")]
    grace: Option<String>,
}

impl RotateQuery {
    fn grace(&self) -> Result<TimeDelta, ApiError> {
        let Some(text) = self.grace.as_deref() else {
            return Ok(DEFAULT_GRACE);
        };
        crate::config::parse_duration(text)
            .and_then(|d| TimeDelta::from_std(d).ok())
            .filter(|d| *d <= MAX_GRACE)
            .ok_or_else(|| {
                ApiError::new(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "validation_failed",
                    format!("grace: `{text}` is not a duration like 24h or 0s of at most 30 days"),
                )
            })
    }
}

/// A webhook channel's new signing secret, shown this once.
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct RotatedChannel {
    #[serde(flatten)]
    channel: ChannelView,
    /// The new signing secret. Not shown again.
    secret: String,
    /// Until when deliveries also carry `x-yardmaster-signature-previous` under the
    /// previous secret; null when it stopped at once.
    previous_until: Option<DateTime<Utc>>,
}

/// The longest a previous signing secret stays valid after a rotation.
const MAX_GRACE: TimeDelta = TimeDelta::days(30);
/// The grace when the rotation names none.
const DEFAULT_GRACE: TimeDelta = TimeDelta::hours(24);

impl SigningSecret {
    fn of(
        notifications: &crate::notify::Notifications,
        organization: &str,
        generation: SecretGeneration,
        now: DateTime<Utc>,
    ) -> SigningSecret {
        let previous = generation.previous_at(now);
        SigningSecret {
            secret: notifications.signing_secret(organization, generation.generation),
            generation: generation.generation,
            rotated_at: generation.rotated_at,
            previous_secret: previous.map(|p| notifications.signing_secret(organization, p)),
            previous_until: previous.and(generation.previous_until),
        }
    }
}

#[utoipa::path(
    get,
    path = "/notifications/channels",
    tag = "notifications",
    summary = "List the organization's notification channels",
    description = "Needs `plugin:view`. Secret settings are named, never shown.",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The channels, oldest first", body = [ChannelView]),
        (status = 401, description = "No valid bearer token", body = ErrorBody),
        (status = 403, description = "The token lacks `plugin:view`", body = ErrorBody),
    )
)]
async fn list_channels(
    caller: Caller,
    State(state): State<AppState>,
) -> Result<Json<Vec<ChannelView>>, ApiError> {
    caller.require(PLUGIN_VIEW)?;
    let org = caller.org().to_owned();
    let channels = blocking(&state.store, move |store| async move {
        store.list_channels(&org).await.map_err(ApiError::from)
    })
    .await?;
    Ok(Json(channels.into_iter().map(ChannelView::from).collect()))
}

#[utoipa::path(
    post,
    path = "/notifications/channels",
    tag = "notifications",
    summary = "Add a notification channel",
    description = "Needs `plugin:manage`. A webhook's `url` must be https unless the operator allows plain http for its host (`--allow-http-notify`). A generated webhook secret is in this answer only.",
    request_body = NewChannel,
    security(("bearer" = [])),
    responses(
        (status = 201, description = "The channel", body = CreatedChannel),
        (status = 400, description = "The body is not JSON", body = ErrorBody),
        (status = 401, description = "No valid bearer token", body = ErrorBody),
        (status = 403, description = "The token lacks `plugin:manage`", body = ErrorBody),
        (status = 413, description = "The body is too large", body = ErrorBody),
        (status = 422, description = "A field is missing or wrong, or the name is taken; the message names the field", body = ErrorBody),
    )
)]
async fn create_channel(
    caller: Caller,
    State(state): State<AppState>,
    body: Result<Json<NewChannel>, JsonRejection>,
) -> Result<(StatusCode, Json<CreatedChannel>), ApiError> {
    caller.require(PLUGIN_MANAGE)?;
    let (input, secret) = json_body(body)?.into_input(&state, &caller)?;
    let channel = blocking(&state.store, move |store| async move {
        store
            .create_channel(input, Utc::now())
            .await
            .map_err(ApiError::from)
    })
    .await?;
    tracing::info!(channel = %channel.id, name = %channel.name, actor = caller.user_id(), "notification channel added");
    Ok((
        StatusCode::CREATED,
        Json(CreatedChannel {
            channel: channel.into(),
            secret,
        }),
    ))
}

#[utoipa::path(
    get,
    path = "/notifications/channels/{id}",
    tag = "notifications",
    summary = "Show a notification channel",
    description = "Needs `plugin:view`.",
    params(("id" = String, Path, description = "Channel id")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The channel", body = ChannelView),
        (status = 401, description = "No valid bearer token", body = ErrorBody),
        (status = 403, description = "The token lacks `plugin:view`", body = ErrorBody),
        (status = 404, description = "No such channel in the organization", body = ErrorBody),
    )
)]
async fn show_channel(
    caller: Caller,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<ChannelView>, ApiError> {
    caller.require(PLUGIN_VIEW)?;
    let org = caller.org().to_owned();
    let channel = blocking(&state.store, move |store| async move {
        store.get_channel(&org, &id).await.map_err(ApiError::from)
    })
    .await?;
    Ok(Json(channel.into()))
}

#[utoipa::path(
    delete,
    path = "/notifications/channels/{id}",
    tag = "notifications",
    summary = "Remove a notification channel",
    description = "Needs `plugin:manage`. Events not yet delivered to it are not delivered to it.",
    params(("id" = String, Path, description = "Channel id")),
    security(("bearer" = [])),
    responses(
        (status = 204, description = "Removed"),
        (status = 401, description = "No valid bearer token", body = ErrorBody),
        (status = 403, description = "The token lacks `plugin:manage`", body = ErrorBody),
        (status = 404, description = "No such channel in the organization", body = ErrorBody),
    )
)]
async fn delete_channel(
    caller: Caller,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    caller.require(PLUGIN_MANAGE)?;
    let org = caller.org().to_owned();
    let channel = blocking(&state.store, move |store| async move {
        store
            .delete_channel(&org, &id)
            .await
            .map_err(ApiError::from)
    })
    .await?;
    tracing::info!(channel = %channel.id, actor = caller.user_id(), "notification channel removed");
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(
    post,
    path = "/notifications/channels/{id}/rotate-secret",
    tag = "notifications",
    summary = "Give a webhook channel a new signing secret",
    description = "Needs `plugin:manage`. The engine generates the new secret and shows it this once. For `grace` (24h unless given, at most 30 days, `0s` for none) deliveries also carry `x-yardmaster-signature-previous` under the previous secret, so the receiver can switch over without losing a delivery. Audited as `channel.secret_rotated`.",
    params(("id" = String, Path, description = "Channel id"), RotateQuery),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The channel and its new secret", body = RotatedChannel),
        (status = 400, description = "The query is not valid", body = ErrorBody),
        (status = 401, description = "No valid bearer token", body = ErrorBody),
        (status = 403, description = "The token lacks `plugin:manage`", body = ErrorBody),
        (status = 404, description = "No such channel in the organization", body = ErrorBody),
        (status = 422, description = "`grace` is not a duration of at most 30 days, or the channel is not a webhook", body = ErrorBody),
        (status = 507, description = "The engine's disk is full", body = ErrorBody),
    )
)]
async fn rotate_channel_secret(
    caller: Caller,
    State(state): State<AppState>,
    Path(id): Path<String>,
    params: Result<Query<RotateQuery>, QueryRejection>,
) -> Result<Json<RotatedChannel>, ApiError> {
    caller.require(PLUGIN_MANAGE)?;
    let grace = query(params)?.grace()?;
    let org = caller.org().to_owned();
    let actor = caller.user_id().to_owned();
    let secret = random_secret();
    let shown = secret.clone();
    let (channel, previous_until) = blocking(&state.store, move |store| async move {
        Ok(store
            .rotate_channel_secret(&org, &id, &secret, grace, &actor, Utc::now())
            .await?)
    })
    .await?;
    tracing::info!(channel = %channel.id, actor = caller.user_id(), "channel signing secret rotated");
    Ok(Json(RotatedChannel {
        channel: channel.into(),
        secret: shown,
        previous_until,
    }))
}

#[utoipa::path(
    get,
    path = "/notifications/dead-letters",
    tag = "notifications",
    summary = "List the organization's dead letters",
    description = "Needs `plugin:view`. Events whose delivery gave up (after the configured attempts, or at once when the receiver refused for good), oldest first.",
    params(DeadLetterQuery),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "One page of dead letters", body = DeadLetterPage),
        (status = 400, description = "Bad query parameters", body = ErrorBody),
        (status = 401, description = "No valid bearer token", body = ErrorBody),
        (status = 403, description = "The token lacks `plugin:view`", body = ErrorBody),
        (status = 422, description = "`limit` out of range", body = ErrorBody),
    )
)]
async fn dead_letters(
    caller: Caller,
    State(state): State<AppState>,
    params: Result<Query<DeadLetterQuery>, QueryRejection>,
) -> Result<Json<DeadLetterPage>, ApiError> {
    caller.require(PLUGIN_VIEW)?;
    let params = query(params)?;
    let limit = params.limit.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return Err(ApiError::validation("limit", "must be from 1 to 1000"));
    }
    let page = Page {
        limit,
        after: params.after,
    };
    let org = caller.org().to_owned();
    let events = blocking(&state.store, move |store| async move {
        store.dead_events(&org, &page).await.map_err(ApiError::from)
    })
    .await?;
    let next_after = (events.len() == limit)
        .then(|| events.last().map(|e| e.id))
        .flatten();
    Ok(Json(DeadLetterPage {
        data: events.into_iter().map(DeadLetter::from).collect(),
        next_after,
    }))
}

#[utoipa::path(
    post,
    path = "/notifications/dead-letters/{id}/retry",
    tag = "notifications",
    summary = "Deliver a dead letter again",
    description = "Needs `plugin:manage`. The event goes back in the queue with a fresh count of attempts; deliveries that succeeded before are not repeated.",
    params(("id" = String, Path, description = "Event id (a number)")),
    security(("bearer" = [])),
    responses(
        (status = 202, description = "Queued again", body = DeadLetter),
        (status = 401, description = "No valid bearer token", body = ErrorBody),
        (status = 403, description = "The token lacks `plugin:manage`", body = ErrorBody),
        (status = 404, description = "No such dead letter in the organization", body = ErrorBody),
    )
)]
async fn retry_dead_letter(
    caller: Caller,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<(StatusCode, Json<DeadLetter>), ApiError> {
    caller.require(PLUGIN_MANAGE)?;
    // Event ids are numbers; anything else names no dead letter.
    let id: u64 = id
        .parse()
        .map_err(|_| ApiError::not_found(format!("no dead letter `{id}` in your organization")))?;
    let org = caller.org().to_owned();
    let event = blocking(&state.store, move |store| async move {
        store
            .retry_dead_event(&org, id, Utc::now())
            .await
            .map_err(|e| match e {
                StoreError::NotFound { .. } => {
                    ApiError::not_found(format!("no dead letter {id} in your organization"))
                }
                other => other.into(),
            })
    })
    .await?;
    tracing::info!(
        event = id,
        actor = caller.user_id(),
        "dead letter queued again"
    );
    Ok((StatusCode::ACCEPTED, Json(event.into())))
}

#[utoipa::path(
    get,
    path = "/notifications/signing-secret",
    tag = "notifications",
    summary = "The secret that signs job notifications",
    description = "Needs `plugin:manage`. Deliveries to a job's `notify_url` carry `x-yardmaster-signature: sha256=<hex HMAC-SHA256 of \"<x-yardmaster-timestamp>.<body>\">` under this secret, and `x-yardmaster-event-id` to drop duplicates. For a while after a rotation they also carry `x-yardmaster-signature-previous` under the previous secret.",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The organization's secret", body = SigningSecret),
        (status = 401, description = "No valid bearer token", body = ErrorBody),
        (status = 403, description = "The token lacks `plugin:manage`", body = ErrorBody),
    )
)]
async fn signing_secret(
    caller: Caller,
    State(state): State<AppState>,
) -> Result<Json<SigningSecret>, ApiError> {
    caller.require(PLUGIN_MANAGE)?;
    let org = caller.org().to_owned();
    let generation = blocking(&state.store, move |store| async move {
        Ok(store.notify_secret_generation(&org).await?)
    })
    .await?;
    Ok(Json(SigningSecret::of(
        &state.notifications,
        caller.org(),
        generation,
        Utc::now(),
    )))
}

#[utoipa::path(
    post,
    path = "/notifications/signing-secret/rotate",
    tag = "notifications",
    summary = "Rotate the secret that signs job notifications",
    description = "Needs `plugin:manage`. Deliveries are signed with a new secret from now on; for `grace` (24h unless given, at most 30 days, `0s` for none) they also carry `x-yardmaster-signature-previous` under the previous secret, so a receiver that accepts either signature can switch over without losing a delivery. Audited as `notify.secret_rotated`. Answers the new secret.",
    params(RotateQuery),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The new secret, and the previous one while it still signs", body = SigningSecret),
        (status = 400, description = "The query is not valid", body = ErrorBody),
        (status = 401, description = "No valid bearer token", body = ErrorBody),
        (status = 403, description = "The token lacks `plugin:manage`", body = ErrorBody),
        (status = 422, description = "`grace` is not a duration of at most 30 days", body = ErrorBody),
        (status = 507, description = "The engine's disk is full", body = ErrorBody),
    )
)]
async fn rotate_signing_secret(
    caller: Caller,
    State(state): State<AppState>,
    params: Result<Query<RotateQuery>, QueryRejection>,
) -> Result<Json<SigningSecret>, ApiError> {
    caller.require(PLUGIN_MANAGE)?;
    let grace = query(params)?.grace()?;
    let org = caller.org().to_owned();
    let actor = caller.user_id().to_owned();
    let now = Utc::now();
    let generation = blocking(&state.store, move |store| async move {
        Ok(store.rotate_notify_secret(&org, &actor, grace, now).await?)
    })
    .await?;
    tracing::info!(
        organization = caller.org(),
        actor = caller.user_id(),
        generation = generation.generation,
        "notify-url signing secret rotated"
    );
    Ok(Json(SigningSecret::of(
        &state.notifications,
        caller.org(),
        generation,
        now,
    )))
}

#[derive(utoipa::OpenApi)]
#[openapi(
    paths(
        list_channels,
        create_channel,
        show_channel,
        delete_channel,
        rotate_channel_secret,
        dead_letters,
        retry_dead_letter,
        signing_secret,
        rotate_signing_secret
    ),
    components(schemas(
        ChannelView,
        CreatedChannel,
        NewChannel,
        DeadLetter,
        DeadLetterPage,
        SigningSecret,
        RotatedChannel
    ))
)]
pub(super) struct Doc;

pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route(
            "/notifications/channels",
            get(list_channels).post(create_channel),
        )
        .route(
            "/notifications/channels/{id}",
            get(show_channel).delete(delete_channel),
        )
        .route(
            "/notifications/channels/{id}/rotate-secret",
            post(rotate_channel_secret),
        )
        .route("/notifications/dead-letters", get(dead_letters))
        .route(
            "/notifications/dead-letters/{id}/retry",
            post(retry_dead_letter),
        )
        .route("/notifications/signing-secret", get(signing_secret))
        .route(
            "/notifications/signing-secret/rotate",
            post(rotate_signing_secret),
        )
}

#[cfg(test)]
mod tests {
    use axum::body::Body;
    use axum::http::Request;
    use serde_json::{Value, json};
    use tower::ServiceExt;

    use crate::api::test_support::state;
    use crate::store::Operations;

    async fn call(
        app: &axum::Router,
        method: &str,
        path: &str,
        token: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let mut req = Request::builder()
            .method(method)
            .uri(path)
            .header("authorization", format!("Bearer {token}"));
        let body = match body {
            Some(b) => {
                req = req.header("content-type", "application/json");
                Body::from(b.to_string())
            }
            None => Body::empty(),
        };
        let resp = app
            .clone()
            .oneshot(req.body(body).expect("request"))
            .await
            .expect("response");
        let status = resp.status().as_u16();
        let bytes = axum::body::to_bytes(resp.into_body(), 1 << 20)
            .await
            .expect("body");
        (
            status,
            serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        )
    }

    #[tokio::test]
    async fn channels_are_per_organization_with_write_only_secrets() {
        let t = state();
        let app = crate::api::app(t.state.clone());
        let admin = t.token("ada", "org1", &["plugin:view", "plugin:manage"]);
        let viewer = t.token("bob", "org1", &["plugin:view"]);
        let other = t.token("eve", "org2", &["plugin:view", "plugin:manage"]);

        let hook = json!({"name": "ops", "kind": "webhook", "settings": {"url": "https://hooks.example/y"}});
        let (status, created) = call(
            &app,
            "POST",
            "/notifications/channels",
            &admin,
            Some(hook.clone()),
        )
        .await;
        assert_eq!(status, 201, "{created}");
        let secret = created["secret"]
            .as_str()
            .expect("generated secret")
            .to_owned();
        assert_eq!(secret.len(), 64);
        assert_eq!(created["secret_settings"], json!(["secret"]));
        let id = created["id"].as_str().expect("id").to_owned();

        let (status, _) = call(
            &app,
            "POST",
            "/notifications/channels",
            &viewer,
            Some(hook.clone()),
        )
        .await;
        assert_eq!(status, 403);
        let (status, body) =
            call(&app, "POST", "/notifications/channels", &admin, Some(hook)).await;
        assert_eq!(
            (status, body["code"].as_str()),
            (422, Some("validation_failed"))
        );

        let (status, list) = call(&app, "GET", "/notifications/channels", &viewer, None).await;
        assert_eq!(status, 200);
        assert_eq!(list.as_array().map(Vec::len), Some(1));
        assert!(
            !list.to_string().contains(&secret),
            "the secret is never shown again"
        );

        let (status, _) = call(
            &app,
            "GET",
            &format!("/notifications/channels/{id}"),
            &other,
            None,
        )
        .await;
        assert_eq!(status, 404);
        let (status, _) = call(
            &app,
            "DELETE",
            &format!("/notifications/channels/{id}"),
            &other,
            None,
        )
        .await;
        assert_eq!(status, 404);
        let (status, _) = call(
            &app,
            "DELETE",
            &format!("/notifications/channels/{id}"),
            &admin,
            None,
        )
        .await;
        assert_eq!(status, 204);
    }

    #[tokio::test]
    async fn the_signing_secret_rotates_with_a_grace_for_the_previous_one() {
        let t = state();
        let app = crate::api::app(t.state.clone());
        let admin = t.token("ada", "org1", &["plugin:manage"]);
        let viewer = t.token("bob", "org1", &["plugin:view"]);
        let other = t.token("eve", "org2", &["plugin:manage"]);
        let path = "/notifications/signing-secret";
        let rotate = "/notifications/signing-secret/rotate";

        let (status, first) = call(&app, "GET", path, &admin, None).await;
        assert_eq!(status, 200, "{first}");
        assert_eq!(first["generation"], 0);
        assert_eq!(first["previous_secret"], Value::Null);
        assert_eq!(first["secret"].as_str().map(str::len), Some(64));
        let (status, _) = call(&app, "POST", rotate, &viewer, None).await;
        assert_eq!(status, 403);

        let (status, rotated) = call(&app, "POST", rotate, &admin, None).await;
        assert_eq!(status, 200, "{rotated}");
        assert_eq!(rotated["generation"], 1);
        assert_ne!(rotated["secret"], first["secret"]);
        assert_eq!(rotated["previous_secret"], first["secret"]);
        assert!(rotated["previous_until"].is_string(), "{rotated}");
        assert!(rotated["rotated_at"].is_string(), "{rotated}");
        let (_, shown) = call(&app, "GET", path, &admin, None).await;
        assert_eq!(shown, rotated);
        // Another organization's secret is its own.
        let (_, theirs) = call(&app, "GET", path, &other, None).await;
        assert_eq!(theirs["generation"], 0);

        let (status, at_once) =
            call(&app, "POST", &format!("{rotate}?grace=0s"), &admin, None).await;
        assert_eq!(status, 200, "{at_once}");
        assert_eq!(at_once["generation"], 2);
        assert_eq!(at_once["previous_secret"], Value::Null);
        assert_eq!(at_once["previous_until"], Value::Null);

        for bad in ["31d", "soon"] {
            let (status, body) =
                call(&app, "POST", &format!("{rotate}?grace={bad}"), &admin, None).await;
            assert_eq!(status, 422, "{bad}: {body}");
            assert!(
                body["message"].as_str().unwrap_or("").starts_with("grace:"),
                "{body}"
            );
        }
        let (status, body) = call(&app, "POST", &format!("{rotate}?graze=1h"), &admin, None).await;
        assert_eq!(status, 400, "{body}");

        let audit = t
            .state
            .store
            .list_audit(&crate::store::Page::first(10))
            .await
            .expect("audit");
        let rotations = audit
            .iter()
            .filter(|a| a.action == crate::store::AUDIT_NOTIFY_SECRET_ROTATED)
            .count();
        assert_eq!(rotations, 2);
    }

    #[tokio::test]
    async fn a_webhook_channel_secret_rotates_and_is_shown_once() {
        let t = state();
        let app = crate::api::app(t.state.clone());
        let admin = t.token("ada", "org1", &["plugin:view", "plugin:manage"]);
        let viewer = t.token("bob", "org1", &["plugin:view"]);
        let other = t.token("eve", "org2", &["plugin:manage"]);
        let hook = json!({"name": "ops", "kind": "webhook", "settings": {"url": "https://hooks.example/y"}});
        let (status, created) =
            call(&app, "POST", "/notifications/channels", &admin, Some(hook)).await;
        assert_eq!(status, 201, "{created}");
        let id = created["id"].as_str().expect("id").to_owned();
        let rotate = format!("/notifications/channels/{id}/rotate-secret");

        let (status, _) = call(&app, "POST", &rotate, &viewer, None).await;
        assert_eq!(status, 403);
        let (status, _) = call(&app, "POST", &rotate, &other, None).await;
        assert_eq!(status, 404);
        let (status, rotated) = call(&app, "POST", &rotate, &admin, None).await;
        assert_eq!(status, 200, "{rotated}");
        let secret = rotated["secret"].as_str().expect("new secret");
        assert_eq!(secret.len(), 64);
        assert_ne!(rotated["secret"], created["secret"]);
        assert!(rotated["previous_until"].is_string(), "{rotated}");
        assert_eq!(rotated["id"], id.as_str());
        let (_, shown) = call(
            &app,
            "GET",
            &format!("/notifications/channels/{id}"),
            &admin,
            None,
        )
        .await;
        assert!(!shown.to_string().contains(secret), "shown once: {shown}");
        let secrets = t
            .state
            .store
            .channel_secrets("org1", &id, chrono::Utc::now())
            .await
            .expect("secrets");
        assert_eq!(secrets["secret"], secret);
        assert_eq!(
            secrets["previous_secret"],
            created["secret"].as_str().expect("old")
        );

        let (status, at_once) =
            call(&app, "POST", &format!("{rotate}?grace=0s"), &admin, None).await;
        assert_eq!(status, 200, "{at_once}");
        assert_eq!(at_once["previous_until"], Value::Null);

        let mail = json!({"name": "mail", "kind": "email", "settings": {
            "host": "smtp.example", "from": "ym@example.com", "to": "ops@example.com"}});
        let (status, created) =
            call(&app, "POST", "/notifications/channels", &admin, Some(mail)).await;
        assert_eq!(status, 201, "{created}");
        let mail_id = created["id"].as_str().expect("id");
        let (status, body) = call(
            &app,
            "POST",
            &format!("/notifications/channels/{mail_id}/rotate-secret"),
            &admin,
            None,
        )
        .await;
        assert_eq!(status, 422, "{body}");
    }

    #[tokio::test]
    async fn bad_channels_are_422_naming_the_field() {
        let t = state();
        let app = crate::api::app(t.state.clone());
        let admin = t.token("ada", "org1", &["plugin:manage"]);
        for (body, field) in [
            (json!({"name": "a", "kind": "pager"}), "kind"),
            (
                json!({"name": "a", "kind": "webhook", "settings": {"url": "http://hooks.example/"}}),
                "settings",
            ),
            (
                json!({"name": "a", "kind": "webhook", "settings": {"url": "https://h/", "colour": "red"}}),
                "settings",
            ),
            (
                json!({"name": "a", "kind": "webhook", "settings": {"url": "https://h/"}, "secret": "short"}),
                "secret",
            ),
            (
                json!({"name": "a", "kind": "email", "settings": {"host": "mx"}}),
                "settings",
            ),
            (
                json!({"name": "a", "kind": "email", "settings": {"host": "mx", "from": "nope"}}),
                "settings",
            ),
            (
                json!({"name": "a", "kind": "email", "settings": {"host": "mx", "from": "y@x", "port": "0"}}),
                "settings",
            ),
            (json!({"name": "", "kind": "webhook"}), "name"),
        ] {
            let (status, err) = call(
                &app,
                "POST",
                "/notifications/channels",
                &admin,
                Some(body.clone()),
            )
            .await;
            assert_eq!(status, 422, "{body} -> {err}");
            assert!(
                err["message"].as_str().unwrap_or("").contains(field),
                "{body} -> {err}"
            );
        }
        let (status, err) = call(
            &app,
            "POST",
            "/notifications/channels",
            &admin,
            Some(json!({"name": "a"})),
        )
        .await;
        assert_eq!(status, 422, "{err}");
    }

    #[tokio::test]
    async fn dead_letters_are_listed_and_retried_per_organization() {
        let t = state();
        let store = t.state.store.clone();
        let id = store
            .append_event(
                "job.status",
                json!({"job_id": "j", "customer_id": "org1"}),
                chrono::Utc::now(),
            )
            .await
            .expect("event");
        store
            .record_event_attempt(
                id,
                &crate::store::EventAttempt {
                    error: Some("notify_url (webhook): rejected: HTTP 404"),
                    retry_at: None,
                    organization: Some("org1"),
                    delivered_to: &[],
                    now: chrono::Utc::now(),
                },
            )
            .await
            .expect("dead");
        let app = crate::api::app(t.state.clone());
        let admin = t.token("ada", "org1", &["plugin:view", "plugin:manage"]);
        let other = t.token("eve", "org2", &["plugin:view", "plugin:manage"]);
        let (status, page) = call(&app, "GET", "/notifications/dead-letters", &admin, None).await;
        assert_eq!(status, 200);
        assert_eq!(page["data"][0]["id"], id);
        assert!(
            page["data"][0]["last_error"]
                .as_str()
                .unwrap_or("")
                .contains("404")
        );
        let (_, page) = call(&app, "GET", "/notifications/dead-letters", &other, None).await;
        assert_eq!(page["data"], json!([]));
        let retry = format!("/notifications/dead-letters/{id}/retry");
        let (status, _) = call(&app, "POST", &retry, &other, None).await;
        assert_eq!(status, 404);
        let (status, body) = call(&app, "POST", &retry, &admin, None).await;
        assert_eq!(status, 202, "{body}");
        assert_eq!(body["attempts"], 0);
        let (status, _) = call(&app, "POST", &retry, &admin, None).await;
        assert_eq!(status, 404, "no longer a dead letter");
        let (status, _) = call(
            &app,
            "POST",
            "/notifications/dead-letters/x/retry",
            &admin,
            None,
        )
        .await;
        assert_eq!(status, 404);
        let (status, _) = call(
            &app,
            "GET",
            "/notifications/dead-letters?limit=0",
            &admin,
            None,
        )
        .await;
        assert_eq!(status, 422);
    }
}
