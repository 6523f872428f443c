//! Sites: the organization's routers. `GET/POST /sites`, `GET/PUT/DELETE /sites/{id}`
//! and `POST /sites/import`.
//!
//! Reading needs `site:view`, writing `site:manage`; every site belongs to the caller's
//! organization and another organization's site answers 404. The password is
//! write-only: it goes in with a create, an update or an import and is sealed by the
//! store; no response carries it (a site says only `has_password`), and it is never
//! logged. `PUT` replaces the site's fields; leaving `password` out keeps the stored one
//! only while the endpoint (address, port, transport, TLS settings) stays the same: a
//! changed endpoint clears it (the answer shows `has_password: false`, the audit line
//! says why), so a password is never sent to an address it was not given for. A site
//! without a password is not connected to until one is set.
//!
//! An address `[sites] allow` does not permit (by default loopback, link-local,
//! unspecified and cloud metadata addresses) is refused with 422 naming the address and
//! the setting, on create, update and import alike.
//! Every write is recorded in the audit log in its own commit (`site.created`,
//! `site.updated`, `site.deleted`, `site.imported`), saying whether a password came with
//! it but never what it is.
//!
//! A body's fields are read one by one, so a wrong value is answered 422 naming its
//! field (`port: must be a port number from 1 to 65535`); fields a `GET` returns but a
//! client cannot set (`id`, `organization`, `has_password`, `created_at`, `updated_at`)
//! are ignored, so a fetched site can be sent back edited.
//!
//! Import takes a JSON array of site bodies, or CSV (`Content-Type: text/csv`) whose
//! header row names the columns (`name,address,port,transport,username,password,tags,
//! tls_enabled,tls_verify,tls_pinned_sha256,tls_server_name`; tags separated by `;`).
//! Every row is checked before anything is written: one bad row (a bad field, a name
//! already taken or repeated in the file) rejects the whole import with 422 listing
//! every bad row by its number (1 for the first site) and field, and nothing is
//! written. A good import is written in one transaction, so a fleet of 10,000 sites
//! costs one commit. Import bodies may be up to 32 MiB, other bodies up to 2 MiB;
//! larger ones are answered 413.

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, JsonRejection, QueryRejection};
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::header::CONTENT_TYPE;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use utoipa::{IntoParams, ToSchema};

use super::error::ErrorBody;
use super::support::{Paging, blocking, json_body, query, too_large};
use super::{ApiError, AppState, Caller};
use crate::auth::scopes::{SITE_MANAGE, SITE_VIEW};
use crate::plugins::SiteAllow;
use crate::store::{
    DEFAULT_TRANSPORT, Operations, Secret, Site, SiteInput, SshSettings, StoreError, TlsSettings,
};

/// Largest import body.
pub const MAX_IMPORT_BYTES: usize = 32 * 1024 * 1024;
/// Most sites one import may carry.
pub const MAX_IMPORT_ROWS: usize = 100_000;
/// Most bad rows a refused import lists; the message counts them all.
const MAX_LISTED_ERRORS: usize = 1000;
/// How a site's traffic is protected.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct TlsBody {
    /// Speak TLS to the site (RouterOS `api-ssl`).
    #[serde(default)]
    enabled: bool,
    /// Verify the certificate chain; routers usually carry self-signed certificates, so
    /// pinning is the common alternative.
    #[serde(default = "yes")]
    verify: bool,
    /// Hex sha256 of the certificate the site must present.
    #[serde(default)]
    pinned_sha256: Option<String>,
    /// Name to verify the certificate against, when it is not the address.
    #[serde(default)]
    server_name: Option<String>,
}

fn yes() -> bool {
    true
}

impl From<TlsSettings> for TlsBody {
    fn from(t: TlsSettings) -> TlsBody {
        TlsBody {
            enabled: t.enabled,
            verify: t.verify,
            pinned_sha256: t.pinned_sha256,
            server_name: t.server_name,
        }
    }
}

/// A site as it is created, replaced or imported.
#[derive(Debug, Clone, Default, ToSchema)]
pub(super) struct SiteBody {
    /// Unique within the organization.
    #[schema(max_length = 200)]
    name: String,
    /// IP address or host name.
    #[schema(max_length = 200)]
    address: String,
    /// Port of the transport; its default when absent (8728 for the RouterOS API).
    #[schema(minimum = 1, maximum = 65535)]
    port: Option<u16>,
    /// Name of the transport plugin.
    #[schema(default = "routeros-api", max_length = 200)]
    transport: Option<String>,
    #[schema(max_length = 200)]
    username: Option<String>,
    /// Write-only: stored encrypted, never returned. Left out of a `PUT`, the stored
    /// password stays if the address, port, transport and TLS settings do; if any of
    /// them changes, the stored password is cleared.
    #[schema(write_only, value_type = Option<String>)]
    password: Option<Secret>,
    tls: Option<TlsBody>,
    tags: Option<Vec<String>>,
    /// Write-only, for `transport: "ssh"`: a private key in OpenSSH or PEM form, stored
    /// encrypted and never returned; kept or cleared on a `PUT` as the password is.
    #[schema(write_only, value_type = Option<String>)]
    private_key: Option<Secret>,
    /// Write-only: the private key's passphrase, when it has one.
    #[schema(write_only, value_type = Option<String>)]
    private_key_passphrase: Option<Secret>,
    /// SSH settings. Left out of a `PUT`, the stored ones stay (the host keys learned
    /// are forgotten if the endpoint changes); given, they replace them, which is how a
    /// changed host key is accepted.
    #[schema(value_type = Option<SshBody>)]
    ssh: Option<SshSettings>,
}

/// A site's SSH settings.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub(super) struct SshBody {
    /// Accepted host keys, OpenSSH fingerprints (`SHA256:...`). Empty: the first key
    /// the server shows is stored here, and a later different key fails the job with
    /// `host_key_changed` before anything is sent.
    host_keys: Vec<String>,
    /// `routeros` or `linux`; absent, told from the server's version string.
    platform: Option<String>,
}

/// What is wrong with one site body: the field (when one is to blame) and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct FieldError {
    field: Option<String>,
    message: String,
}

impl FieldError {
    fn new(field: &str, message: impl Into<String>) -> FieldError {
        FieldError {
            field: Some(field.to_owned()),
            message: message.into(),
        }
    }

    fn into_api(self) -> ApiError {
        match self.field {
            Some(field) => ApiError::validation(&field, self.message),
            None => ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "validation_failed",
                self.message,
            ),
        }
    }
}

impl From<StoreError> for FieldError {
    fn from(e: StoreError) -> FieldError {
        match e {
            StoreError::Invalid { field, reason, .. } => FieldError::new(field, reason),
            StoreError::SiteNameTaken { name } => FieldError::new(
                "name",
                format!("a site named `{name}` already exists in the organization"),
            ),
            other => FieldError {
                field: None,
                message: other.to_string(),
            },
        }
    }
}

/// Fields a `GET` returns that a client cannot set; a body may carry them back.
const READ_ONLY: &[&str] = &[
    "id",
    "organization",
    "has_password",
    "has_private_key",
    "created_at",
    "updated_at",
];

fn field<T: serde::de::DeserializeOwned>(
    name: &str,
    value: Value,
    expected: &str,
) -> Result<T, FieldError> {
    serde_json::from_value(value).map_err(|_| FieldError::new(name, format!("must be {expected}")))
}

impl SiteBody {
    /// Reads a site body field by field, so an error names its field.
    fn from_json(value: Value) -> Result<SiteBody, FieldError> {
        let Value::Object(map) = value else {
            return Err(FieldError {
                field: None,
                message: "a site is a JSON object".into(),
            });
        };
        let mut body = SiteBody::default();
        let (mut name, mut address) = (None, None);
        for (key, value) in map {
            match key.as_str() {
                "name" => name = Some(field(&key, value, "a string")?),
                "address" => address = Some(field(&key, value, "a string")?),
                "port" => {
                    body.port = field::<Option<u16>>(&key, value, "a port number from 1 to 65535")?;
                    if body.port == Some(0) {
                        return Err(FieldError::new(
                            "port",
                            "must be a port number from 1 to 65535",
                        ));
                    }
                }
                "transport" => body.transport = field(&key, value, "a plugin name")?,
                "username" => body.username = field(&key, value, "a string")?,
                "password" => {
                    body.password =
                        field::<Option<String>>(&key, value, "a string")?.map(Secret::new)
                }
                "tls" => {
                    body.tls = serde_json::from_value(value).map_err(|e| {
                        FieldError::new(
                            "tls",
                            format!("must be {{enabled, verify, pinned_sha256, server_name}}: {e}"),
                        )
                    })?
                }
                "tags" => body.tags = field(&key, value, "a list of strings")?,
                "private_key" => {
                    body.private_key =
                        field::<Option<String>>(&key, value, "a string")?.map(Secret::new)
                }
                "private_key_passphrase" => {
                    body.private_key_passphrase =
                        field::<Option<String>>(&key, value, "a string")?.map(Secret::new)
                }
                "ssh" => {
                    body.ssh = serde_json::from_value(value).map_err(|e| {
                        FieldError::new("ssh", format!("must be {{host_keys, platform}}: {e}"))
                    })?
                }
                k if READ_ONLY.contains(&k) => {}
                _ => return Err(FieldError::new(&key, "unknown field")),
            }
        }
        body.name = name.ok_or_else(|| FieldError::new("name", "is required"))?;
        body.address = address.ok_or_else(|| FieldError::new("address", "is required"))?;
        if body
            .address
            .chars()
            .any(|c| c.is_whitespace() || c.is_control())
        {
            return Err(FieldError::new(
                "address",
                "must be an IP address or a host name, without spaces",
            ));
        }
        Ok(body)
    }

    fn into_input(self, organization: &str) -> Result<SiteInput, FieldError> {
        let input = SiteInput {
            organization: organization.to_owned(),
            name: self.name,
            address: self.address,
            port: self.port,
            transport: self
                .transport
                .unwrap_or_else(|| DEFAULT_TRANSPORT.to_owned()),
            username: self.username.unwrap_or_default(),
            password: self.password,
            tls: self
                .tls
                .map(|t| TlsSettings {
                    enabled: t.enabled,
                    verify: t.verify,
                    pinned_sha256: t.pinned_sha256,
                    server_name: t.server_name,
                })
                .unwrap_or_default(),
            tags: self.tags.unwrap_or_default(),
            private_key: self.private_key,
            private_key_passphrase: self.private_key_passphrase,
            ssh: self.ssh,
        };
        input.validate()?;
        Ok(input)
    }
}

/// Reads one site body for `organization`.
fn site_input(value: Value, organization: &str) -> Result<SiteInput, FieldError> {
    SiteBody::from_json(value)?.into_input(organization)
}

/// Refuses a site whose address `[sites] allow` does not permit; the message names the
/// address and the setting.
fn permitted(allow: &SiteAllow, input: SiteInput) -> Result<SiteInput, FieldError> {
    allow
        .check_address(&input.address)
        .map_err(|message| FieldError::new("address", message))?;
    Ok(input)
}

/// A site as the API shows it; the password never appears, only whether one is stored.
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct SiteView {
    id: String,
    organization: String,
    name: String,
    address: String,
    port: Option<u16>,
    transport: String,
    username: String,
    has_password: bool,
    tls: TlsBody,
    tags: Vec<String>,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
    has_private_key: bool,
    ssh: SshBody,
}

impl From<Site> for SiteView {
    fn from(s: Site) -> SiteView {
        SiteView {
            id: s.id,
            organization: s.organization,
            name: s.name,
            address: s.address,
            port: s.port,
            transport: s.transport,
            username: s.username,
            has_password: s.has_password,
            tls: s.tls.into(),
            tags: s.tags,
            created_at: s.created_at,
            updated_at: s.updated_at,
            has_private_key: s.has_private_key,
            ssh: SshBody {
                host_keys: s.ssh.host_keys,
                platform: s.ssh.platform,
            },
        }
    }
}

/// One page of sites.
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct SitePage {
    data: Vec<SiteView>,
    page: usize,
    page_size: usize,
    /// Sites matching the filters in all pages.
    total: usize,
}

/// Filters of `GET /sites`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(super) struct SiteFilter {
    /// Keeps the sites whose name contains this, ignoring case.
    name: Option<String>,
    /// Keeps the sites that carry this tag.
    tag: Option<String>,
}

/// The caller's site `id`, or 404 when it does not exist in the caller's organization.
pub(super) async fn site_of(
    state: &AppState,
    caller: &Caller,
    id: String,
) -> Result<Site, ApiError> {
    // A point read, served on this worker: on redb one record from the page cache
    // costs less than the hop to the blocking pool.
    match state.store.get_site(&id).await {
        Ok(site) if site.organization == caller.org() => Ok(site),
        Ok(_) | Err(StoreError::NotFound { .. }) => Err(ApiError::not_found(format!(
            "no site {id} in your organization"
        ))),
        Err(e) => Err(e.into()),
    }
}

#[utoipa::path(
    get,
    path = "/sites",
    tag = "sites",
    summary = "List the organization's sites",
    description = "Sites in name order, a page at a time, filtered by part of the name and by tag. Needs `site:view`.",
    params(Paging, SiteFilter),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "One page of sites", body = SitePage),
        (status = 400, description = "Bad paging or filter parameters", body = ErrorBody),
        (status = 401, description = "No valid bearer token", body = ErrorBody),
        (status = 403, description = "The token lacks `site:view`", body = ErrorBody),
    )
)]
async fn list(
    caller: Caller,
    State(state): State<AppState>,
    paging: Result<Query<Paging>, QueryRejection>,
    filter: Result<Query<SiteFilter>, QueryRejection>,
) -> Result<Json<SitePage>, ApiError> {
    caller.require(SITE_VIEW)?;
    let (page, page_size, offset) = query(paging)?.resolve()?;
    let filter = query(filter)?;
    let org = caller.org().to_owned();
    let (sites, total) = blocking(&state.store, move |store| async move {
        store
            .search_sites(
                &org,
                filter.name.as_deref().filter(|n| !n.is_empty()),
                filter.tag.as_deref().filter(|t| !t.is_empty()),
                offset,
                page_size,
            )
            .await
            .map_err(ApiError::from)
    })
    .await?;
    Ok(Json(SitePage {
        data: sites.into_iter().map(SiteView::from).collect(),
        page,
        page_size,
        total,
    }))
}

#[utoipa::path(
    post,
    path = "/sites",
    tag = "sites",
    summary = "Add a site",
    description = "Needs `site:manage`. The password is stored encrypted and never returned.",
    request_body = SiteBody,
    security(("bearer" = [])),
    responses(
        (status = 201, description = "The site, as stored", body = SiteView),
        (status = 400, description = "The body is not JSON", body = ErrorBody),
        (status = 401, description = "No valid bearer token", body = ErrorBody),
        (status = 403, description = "The token lacks `site:manage`", body = ErrorBody),
        (status = 409, description = "The organization has a site of that name", body = ErrorBody),
        (status = 413, description = "The body is too large", body = ErrorBody),
        (status = 422, description = "A field is missing or wrong, or `[sites] allow` does not permit the address; the message names the field", body = ErrorBody),
    )
)]
async fn create(
    caller: Caller,
    State(state): State<AppState>,
    body: Result<Json<Value>, JsonRejection>,
) -> Result<(StatusCode, Json<SiteView>), ApiError> {
    caller.require(SITE_MANAGE)?;
    let input = site_input(json_body(body)?, caller.org())
        .and_then(|input| permitted(state.plugins.sites_allow(), input))
        .map_err(FieldError::into_api)?;
    let actor = caller.user_id().to_owned();
    let site = blocking(&state.store, move |store| async move {
        store
            .create_site_by(input, &actor, Utc::now())
            .await
            .map_err(ApiError::from)
    })
    .await?;
    tracing::info!(site = %site.id, name = %site.name, actor = caller.user_id(), "site added");
    Ok((StatusCode::CREATED, Json(site.into())))
}

#[utoipa::path(
    get,
    path = "/sites/{id}",
    tag = "sites",
    summary = "Show a site",
    description = "Needs `site:view`.",
    params(("id" = String, Path, description = "Site id")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The site", body = SiteView),
        (status = 401, description = "No valid bearer token", body = ErrorBody),
        (status = 403, description = "The token lacks `site:view`", body = ErrorBody),
        (status = 404, description = "No such site in the organization", body = ErrorBody),
    )
)]
async fn show(
    caller: Caller,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<SiteView>, ApiError> {
    caller.require(SITE_VIEW)?;
    Ok(Json(site_of(&state, &caller, id).await?.into()))
}

#[utoipa::path(
    put,
    path = "/sites/{id}",
    tag = "sites",
    summary = "Replace a site's fields",
    description = "Needs `site:manage`. Every field is replaced; a body without `password` keeps the stored one only if the address, port, transport and TLS settings stay the same. If any of them changes, the stored password is cleared (`has_password: false`) and the site is not connected to until a new one is set.",
    params(("id" = String, Path, description = "Site id")),
    request_body = SiteBody,
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The site, as stored", body = SiteView),
        (status = 400, description = "The body is not JSON", body = ErrorBody),
        (status = 401, description = "No valid bearer token", body = ErrorBody),
        (status = 403, description = "The token lacks `site:manage`", body = ErrorBody),
        (status = 404, description = "No such site in the organization", body = ErrorBody),
        (status = 409, description = "The organization has another site of that name", body = ErrorBody),
        (status = 413, description = "The body is too large", body = ErrorBody),
        (status = 422, description = "A field is missing or wrong, or `[sites] allow` does not permit the address; the message names the field", body = ErrorBody),
    )
)]
async fn update(
    caller: Caller,
    State(state): State<AppState>,
    Path(id): Path<String>,
    body: Result<Json<Value>, JsonRejection>,
) -> Result<Json<SiteView>, ApiError> {
    caller.require(SITE_MANAGE)?;
    let body = json_body(body)?;
    let old = site_of(&state, &caller, id).await?;
    let input = site_input(body, caller.org())
        .and_then(|input| permitted(state.plugins.sites_allow(), input))
        .map_err(FieldError::into_api)?;
    let actor = caller.user_id().to_owned();
    let id = old.id.clone();
    let site = blocking(&state.store, move |store| async move {
        store
            .update_site_by(&id, input, &actor, Utc::now())
            .await
            .map_err(ApiError::from)
    })
    .await?;
    if old.has_password && !site.has_password {
        tracing::warn!(
            site = %site.id,
            name = %site.name,
            actor = caller.user_id(),
            "site updated; its password was cleared because its endpoint changed"
        );
    } else {
        tracing::info!(site = %site.id, name = %site.name, actor = caller.user_id(), "site updated");
    }
    Ok(Json(site.into()))
}

#[utoipa::path(
    delete,
    path = "/sites/{id}",
    tag = "sites",
    summary = "Remove a site",
    description = "Needs `site:manage`. The site's jobs stay in the history.",
    params(("id" = String, Path, description = "Site id")),
    security(("bearer" = [])),
    responses(
        (status = 204, description = "Removed"),
        (status = 401, description = "No valid bearer token", body = ErrorBody),
        (status = 403, description = "The token lacks `site:manage`", body = ErrorBody),
        (status = 404, description = "No such site in the organization", body = ErrorBody),
        (status = 409, description = "Schedules that may still run name the site, or jobs on it are unfinished; the message lists them", body = ErrorBody),
    )
)]
async fn remove(
    caller: Caller,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    caller.require(SITE_MANAGE)?;
    let site = site_of(&state, &caller, id).await?;
    let id = site.id.clone();
    let actor = caller.user_id().to_owned();
    blocking(&state.store, move |store| async move {
        store
            .delete_site_by(&id, &actor, Utc::now())
            .await
            .map_err(ApiError::from)
    })
    .await?;
    tracing::info!(site = %site.id, name = %site.name, actor = caller.user_id(), "site removed");
    Ok(StatusCode::NO_CONTENT)
}

/// One imported site.
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct ImportedRow {
    /// Position in the import, from 1.
    row: usize,
    /// Always `created`: an import is written whole or not at all.
    status: String,
    id: String,
    name: String,
}

/// What an import wrote.
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct ImportReport {
    created: usize,
    results: Vec<ImportedRow>,
}

/// One refused row of an import.
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct RowError {
    /// Position in the import, from 1 (the first site; a CSV header is row 0).
    row: usize,
    /// The field to blame, when one is.
    field: Option<String>,
    message: String,
}

/// A refused import: the error body, plus every bad row (the first 1,000).
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct ImportRejected {
    #[serde(rename = "type")]
    kind: String,
    code: String,
    message: String,
    doc_url: String,
    errors: Vec<RowError>,
}

fn rejected(total_rows: usize, mut errors: Vec<RowError>) -> Response {
    let bad = errors.len();
    errors.truncate(MAX_LISTED_ERRORS);
    let listed = if bad > MAX_LISTED_ERRORS {
        format!(" (the first {MAX_LISTED_ERRORS} are listed)")
    } else {
        String::new()
    };
    refused_import(
        format!("{bad} of {total_rows} rows cannot be imported{listed}; nothing was imported"),
        errors,
    )
}

/// A 422 for the import as a whole, in the same shape as one listing bad rows.
fn refused_import(message: String, errors: Vec<RowError>) -> Response {
    let body = ImportRejected {
        kind: "validation_error".into(),
        code: "import_rejected".into(),
        message,
        doc_url: "/docs/errors#import_rejected".into(),
        errors,
    };
    (StatusCode::UNPROCESSABLE_ENTITY, Json(body)).into_response()
}

/// The CSV's header is refused: row 0, field `header`.
fn bad_header(message: String) -> Response {
    refused_import(
        format!("the CSV header is refused: {message}; nothing was imported"),
        vec![RowError {
            row: 0,
            field: Some("header".into()),
            message,
        }],
    )
}

#[utoipa::path(
    post,
    path = "/sites/import",
    tag = "sites",
    summary = "Add many sites in one transaction",
    description = "A JSON array of site bodies, or CSV (`Content-Type: text/csv`) with a header row naming the columns: name, address, port, transport, username, password, tags (separated by `;`), tls_enabled, tls_verify, tls_pinned_sha256, tls_server_name. Every row is checked first; any bad row rejects the whole import with 422 listing every bad row, and nothing is written. Otherwise all sites are written in one commit. Up to 100,000 rows and 32 MiB. Needs `site:manage`.",
    request_body(content(
        (Vec<SiteBody> = "application/json"),
        (String = "text/csv"),
    )),
    security(("bearer" = [])),
    responses(
        (status = 201, description = "Every site was created", body = ImportReport),
        (status = 400, description = "The body is not a JSON array or not CSV", body = ErrorBody),
        (status = 401, description = "No valid bearer token", body = ErrorBody),
        (status = 403, description = "The token lacks `site:manage`", body = ErrorBody),
        (status = 409, description = "A name was taken while the import was written; nothing was written", body = ErrorBody),
        (status = 413, description = "The body is larger than 32 MiB", body = ErrorBody),
        (status = 415, description = "Neither JSON nor CSV", body = ErrorBody),
        (status = 422, description = "Some rows are bad; nothing was imported", body = ImportRejected),
    )
)]
async fn import(
    caller: Caller,
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    caller.require(SITE_MANAGE)?;
    let bytes = body.map_err(|rejection| {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            too_large(format!(
                "an import may be at most {} MiB",
                MAX_IMPORT_BYTES >> 20
            ))
        } else {
            ApiError::new(rejection.status(), "malformed_body", rejection.body_text())
        }
    })?;
    let content_type = headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("application/json");
    let essence = content_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    let rows = match essence.as_str() {
        "application/json" => json_rows(&bytes)?,
        "text/csv" => match csv_rows(&bytes)? {
            Ok(rows) => rows,
            Err(refused) => return Ok(refused),
        },
        other => {
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                format!(
                    "an import is `application/json` (an array of sites) or `text/csv`, not `{other}`"
                ),
            ));
        }
    };
    if rows.len() > MAX_IMPORT_ROWS {
        return Ok(refused_import(
            format!(
                "an import may carry at most {MAX_IMPORT_ROWS} sites, this one has {}; nothing was imported",
                rows.len()
            ),
            Vec::new(),
        ));
    }
    let total = rows.len();
    let org = caller.org().to_owned();
    let mut inputs = Vec::with_capacity(total);
    let mut rows_of_inputs = Vec::with_capacity(total);
    let mut errors = Vec::new();
    for (i, row) in rows.into_iter().enumerate() {
        let allow = state.plugins.sites_allow();
        match row.and_then(|value| site_input(value, &org).and_then(|i| permitted(allow, i))) {
            Ok(input) => {
                inputs.push(input);
                rows_of_inputs.push(i + 1);
            }
            Err(e) => errors.push(RowError {
                row: i + 1,
                field: e.field,
                message: e.message,
            }),
        }
    }
    if !errors.is_empty() {
        // The good rows are still checked against the organization's names, so one
        // answer lists every bad row.
        let org = org.clone();
        let refused = blocking(&state.store, move |store| async move {
            store
                .check_import(&org, &inputs)
                .await
                .map_err(ApiError::from)
        })
        .await?;
        errors.extend(refused.into_iter().map(|(i, e)| {
            let e = FieldError::from(e);
            RowError {
                row: rows_of_inputs[i],
                field: e.field,
                message: e.message,
            }
        }));
        errors.sort_by_key(|e| e.row);
        return Ok(rejected(total, errors));
    }
    let actor = caller.user_id().to_owned();
    let outcome = blocking(&state.store, move |store| async move {
        store
            .import_sites(&org, inputs, &actor, Utc::now())
            .await
            .map_err(ApiError::from)
    })
    .await?;
    let sites = match outcome {
        Ok(sites) => sites,
        Err(refused) => {
            let errors = refused
                .into_iter()
                .map(|(i, e)| {
                    let e = FieldError::from(e);
                    RowError {
                        row: i + 1,
                        field: e.field,
                        message: e.message,
                    }
                })
                .collect();
            return Ok(rejected(total, errors));
        }
    };
    tracing::info!(
        sites = sites.len(),
        actor = caller.user_id(),
        "sites imported"
    );
    let report = ImportReport {
        created: sites.len(),
        results: sites
            .into_iter()
            .enumerate()
            .map(|(i, s)| ImportedRow {
                row: i + 1,
                status: "created".into(),
                id: s.id,
                name: s.name,
            })
            .collect(),
    };
    Ok((StatusCode::CREATED, Json(report)).into_response())
}

type Row = Result<Value, FieldError>;

fn json_rows(bytes: &[u8]) -> Result<Vec<Row>, ApiError> {
    let rows: Vec<Value> = serde_json::from_slice(bytes).map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "malformed_json",
            format!("an import is a JSON array of sites: {e}"),
        )
    })?;
    Ok(rows.into_iter().map(Ok).collect())
}

/// The CSV columns an import reads.
const CSV_COLUMNS: &[&str] = &[
    "name",
    "address",
    "port",
    "transport",
    "username",
    "password",
    "tags",
    "tls_enabled",
    "tls_verify",
    "tls_pinned_sha256",
    "tls_server_name",
];

/// The CSV's records as site bodies; a refused header is answered at once (the inner
/// error), unreadable CSV is 400.
fn csv_rows(bytes: &[u8]) -> Result<Result<Vec<Row>, Response>, ApiError> {
    let text = std::str::from_utf8(bytes).map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "malformed_csv",
            format!("the CSV is not UTF-8: {e}"),
        )
    })?;
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut records = parse_csv(text)
        .map_err(|message| ApiError::new(StatusCode::BAD_REQUEST, "malformed_csv", message))?;
    if records.is_empty() {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "malformed_csv",
            "the CSV has no header row naming its columns",
        ));
    }
    let header: Vec<String> = records
        .remove(0)
        .into_iter()
        .map(|h| h.trim().to_ascii_lowercase())
        .collect();
    for (i, column) in header.iter().enumerate() {
        if !CSV_COLUMNS.contains(&column.as_str()) {
            return Ok(Err(bad_header(format!(
                "column {} `{column}` is unknown; the columns are {}",
                i + 1,
                CSV_COLUMNS.join(", ")
            ))));
        }
        if header[..i].contains(column) {
            return Ok(Err(bad_header(format!("column `{column}` appears twice"))));
        }
    }
    Ok(Ok(records
        .into_iter()
        .map(|record| csv_record(&header, record))
        .collect()))
}

fn csv_bool(column: &str, value: &str) -> Result<bool, FieldError> {
    match value.trim().to_ascii_lowercase().as_str() {
        "true" | "yes" | "1" => Ok(true),
        "false" | "no" | "0" => Ok(false),
        _ => Err(FieldError::new(column, "must be true or false")),
    }
}

/// One CSV record as a site body; empty cells are absent fields.
fn csv_record(header: &[String], record: Vec<String>) -> Row {
    if record.len() != header.len() {
        return Err(FieldError {
            field: None,
            message: format!(
                "has {} cells where the header names {} columns",
                record.len(),
                header.len()
            ),
        });
    }
    let mut site = Map::new();
    let mut tls = Map::new();
    for (column, cell) in header.iter().zip(record) {
        if cell.is_empty() {
            continue;
        }
        let column = column.as_str();
        match column {
            "port" => {
                let port: u16 = cell.trim().parse().map_err(|_| {
                    FieldError::new("port", "must be a port number from 1 to 65535")
                })?;
                site.insert("port".into(), json!(port));
            }
            "tags" => {
                let tags: Vec<&str> = cell
                    .split(';')
                    .map(str::trim)
                    .filter(|t| !t.is_empty())
                    .collect();
                site.insert("tags".into(), json!(tags));
            }
            "tls_enabled" | "tls_verify" => {
                let flag = csv_bool(column, &cell)?;
                tls.insert(column.trim_start_matches("tls_").into(), json!(flag));
            }
            "tls_pinned_sha256" | "tls_server_name" => {
                tls.insert(column.trim_start_matches("tls_").into(), json!(cell.trim()));
            }
            "password" => {
                // Taken as written: a password may begin or end with a space.
                site.insert("password".into(), Value::String(cell));
            }
            _ => {
                site.insert(column.into(), Value::String(cell.trim().to_owned()));
            }
        }
    }
    if !tls.is_empty() {
        site.insert("tls".into(), Value::Object(tls));
    }
    Ok(Value::Object(site))
}

/// Parses RFC 4180 CSV: commas between cells, double quotes around cells holding
/// commas, quotes or line breaks (a quote inside is doubled), CRLF or LF between
/// records. Blank lines are skipped.
fn parse_csv(text: &str) -> Result<Vec<Vec<String>>, String> {
    let mut records = Vec::new();
    let mut record: Vec<String> = Vec::new();
    let mut cell = String::new();
    let mut chars = text.chars().peekable();
    let mut line = 1;
    let mut quoted_cell = false;
    while let Some(c) = chars.next() {
        match c {
            '"' if cell.is_empty() && !quoted_cell => {
                quoted_cell = true;
                let start = line;
                loop {
                    match chars.next() {
                        Some('"') if chars.peek() == Some(&'"') => {
                            chars.next();
                            cell.push('"');
                        }
                        Some('"') => break,
                        Some(c) => {
                            if c == '\n' {
                                line += 1;
                            }
                            cell.push(c);
                        }
                        None => return Err(format!("line {start}: a quoted cell is never closed")),
                    }
                }
                if let Some(&next) = chars.peek()
                    && !matches!(next, ',' | '\r' | '\n')
                {
                    return Err(format!(
                        "line {line}: text after the closing quote of a cell"
                    ));
                }
            }
            ',' => {
                record.push(std::mem::take(&mut cell));
                quoted_cell = false;
            }
            '\r' if chars.peek() == Some(&'\n') => {}
            '\n' => {
                line += 1;
                record.push(std::mem::take(&mut cell));
                quoted_cell = false;
                if !(record.len() == 1 && record[0].is_empty()) {
                    records.push(std::mem::take(&mut record));
                } else {
                    record.clear();
                }
            }
            '"' => return Err(format!("line {line}: a quote inside an unquoted cell")),
            c => cell.push(c),
        }
    }
    if !cell.is_empty() || !record.is_empty() || quoted_cell {
        record.push(cell);
        records.push(record);
    }
    Ok(records)
}

#[derive(utoipa::OpenApi)]
#[openapi(
    paths(list, create, show, update, remove, import),
    components(schemas(
        ErrorBody,
        SiteBody,
        TlsBody,
        SshBody,
        SiteView,
        SitePage,
        ImportReport,
        ImportedRow,
        ImportRejected,
        RowError
    )),
    tags((name = "sites", description = "The organization's routers; the password is write-only."))
)]
pub(super) struct Doc;

pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route("/sites", get(list).post(create))
        .route(
            "/sites/import",
            post(import).layer(DefaultBodyLimit::max(MAX_IMPORT_BYTES)),
        )
        .route("/sites/{id}", get(show).put(update).delete(remove))
}

/// What the route tests of the API's resource modules share: one request through
/// `oneshot`, answered as status and JSON.
#[cfg(test)]
pub(super) mod testing {
    use axum::body::Body;
    use axum::http::{Request, StatusCode};
    use serde_json::Value;
    use tower::ServiceExt;

    use crate::api::AppState;

    pub(in crate::api) async fn call(
        state: &AppState,
        method: &str,
        uri: &str,
        token: Option<&str>,
        content_type: Option<&str>,
        body: impl Into<Body>,
    ) -> (StatusCode, Value, String) {
        let mut request = Request::builder().method(method).uri(uri);
        if let Some(token) = token {
            request = request.header("authorization", format!("Bearer {token}"));
        }
        if let Some(content_type) = content_type {
            request = request.header("content-type", content_type);
        }
        let request = request.body(body.into()).expect("request");
        let response = crate::api::app(state.clone())
            .oneshot(request)
            .await
            .expect("response");
        let status = response.status();
        let bytes = axum::body::to_bytes(response.into_body(), 64 << 20)
            .await
            .expect("body");
        let text = String::from_utf8_lossy(&bytes).into_owned();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::Null),
            text,
        )
    }

    pub(in crate::api) async fn json(
        state: &AppState,
        method: &str,
        uri: &str,
        token: Option<&str>,
        body: Option<&Value>,
    ) -> (StatusCode, Value, String) {
        match body {
            Some(b) => {
                call(
                    state,
                    method,
                    uri,
                    token,
                    Some("application/json"),
                    b.to_string(),
                )
                .await
            }
            None => call(state, method, uri, token, None, axum::body::Body::empty()).await,
        }
    }
}

#[cfg(test)]
mod tests {
    use axum::http::StatusCode;
    use serde_json::{Value, json};

    use super::testing::{call, json};
    use crate::api::test_support::{TestState, state};
    use crate::store::Operations;

    const SECRET: &str = "s3cret-never-shown";

    fn site(name: &str) -> Value {
        json!({
            "name": name,
            "address": "192.0.2.10",
            "port": 8729,
            "username": "admin",
            "password": SECRET,
            "tls": {"enabled": true, "pinned_sha256": "ab".repeat(32)},
            "tags": ["edge", "core"],
        })
    }

    fn admin(t: &TestState, org: &str) -> String {
        t.token("alice", org, &["site:view", "site:manage"])
    }

    async fn create(t: &TestState, token: &str, body: &Value) -> (StatusCode, Value, String) {
        json(&t.state, "POST", "/sites", Some(token), Some(body)).await
    }

    #[tokio::test]
    async fn crud_round_trip_never_shows_the_password() {
        let t = state();
        let token = admin(&t, "acme");
        let (status, created, text) = create(&t, &token, &site("r1")).await;
        assert_eq!(status, StatusCode::CREATED, "{text}");
        assert_eq!(created["transport"], "routeros-api");
        assert_eq!(created["has_password"], true);
        assert_eq!(created["organization"], "acme");
        assert_eq!(created["tags"], json!(["core", "edge"]));
        assert_eq!(created["tls"]["verify"], true);
        assert!(!text.contains(SECRET) && created.get("password").is_none());
        let id = created["id"].as_str().expect("id").to_owned();

        let (status, shown, text) =
            json(&t.state, "GET", &format!("/sites/{id}"), Some(&token), None).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(shown, created);
        assert!(!text.contains(SECRET));

        // A fetched site sent back edited: read-only fields are ignored, and the password
        // is kept, since the endpoint is the same.
        let mut edited = shown.clone();
        edited["name"] = json!("r1-renamed");
        edited["tags"] = json!(["moved"]);
        let (status, updated, text) = json(
            &t.state,
            "PUT",
            &format!("/sites/{id}"),
            Some(&token),
            Some(&edited),
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{text}");
        assert_eq!(updated["name"], "r1-renamed");
        assert_eq!(updated["has_password"], true);
        assert_eq!(
            t.state.store.site_password(&id).await.expect("pw").expose(),
            SECRET
        );

        let (status, page, text) =
            json(&t.state, "GET", "/sites?name=RENAMED", Some(&token), None).await;
        assert_eq!(status, StatusCode::OK, "{text}");
        assert_eq!(page["total"], 1);
        assert_eq!(page["data"][0]["id"], id.as_str());
        assert!(!text.contains(SECRET));

        let (status, _, _) = json(
            &t.state,
            "DELETE",
            &format!("/sites/{id}"),
            Some(&token),
            None,
        )
        .await;
        assert_eq!(status, StatusCode::NO_CONTENT);
        let (status, body, _) =
            json(&t.state, "GET", &format!("/sites/{id}"), Some(&token), None).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert_eq!(body["code"], "not_found");

        let audit = t
            .state
            .store
            .list_audit(&crate::store::Page::first(10))
            .await
            .expect("audit");
        let actions: Vec<(&str, &str, bool)> = audit
            .iter()
            .map(|e| {
                (
                    e.action.as_str(),
                    e.actor.as_str(),
                    e.detail["password_set"] == true,
                )
            })
            .collect();
        assert_eq!(
            actions,
            [
                ("site.created", "alice", true),
                ("site.updated", "alice", false),
                ("site.deleted", "alice", false)
            ]
        );
        assert!(
            audit
                .iter()
                .all(|e| e.target == id && e.organization == "acme")
        );
        assert!(!format!("{audit:?}").contains(SECRET));
    }

    /// Another member who may manage sites moves one to an address of theirs without a
    /// password: the update succeeds, the password is gone, and the audit says why.
    #[tokio::test]
    async fn a_changed_endpoint_clears_the_password() {
        let t = state();
        let (_, created, _) = create(&t, &admin(&t, "acme"), &site("r1")).await;
        let id = created["id"].as_str().expect("id").to_owned();
        let mallory = t.token("mallory", "acme", &["site:view", "site:manage"]);
        let mut moved = created.clone();
        moved["address"] = json!("203.0.113.66");
        let (status, updated, text) = json(
            &t.state,
            "PUT",
            &format!("/sites/{id}"),
            Some(&mallory),
            Some(&moved),
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{text}");
        assert_eq!(updated["has_password"], false);
        assert!(matches!(
            t.state.store.site_password(&id).await,
            Err(crate::store::StoreError::PasswordMissing { .. })
        ));
        let audit = t
            .state
            .store
            .list_audit(&crate::store::Page::first(10))
            .await
            .expect("audit");
        let line = audit
            .iter()
            .find(|e| e.action == "site.updated")
            .expect("the update's line");
        assert_eq!(line.actor, "mallory");
        assert_eq!(line.detail["password_cleared"], true);
        assert_eq!(line.detail["endpoint_changed"], json!(["address"]));
        assert!(!format!("{audit:?}").contains(SECRET));
    }

    /// Even with loopback allowed (as in these tests), metadata addresses stay refused,
    /// on create, update and import, naming the address and the setting.
    #[tokio::test]
    async fn metadata_addresses_are_refused_naming_the_setting() {
        let t = state();
        let token = admin(&t, "acme");
        for address in [
            "169.254.169.254",
            "metadata.google.internal",
            "fd00:ec2::254",
        ] {
            let mut body = site("meta");
            body["address"] = json!(address);
            let (status, err, text) = create(&t, &token, &body).await;
            assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{text}");
            let message = err["message"].as_str().unwrap_or_default();
            assert!(
                message.contains(&format!("`{address}`")) && message.contains("[sites] allow"),
                "{message}"
            );
        }
        let (_, created, _) = create(&t, &token, &site("r1")).await;
        let id = created["id"].as_str().expect("id").to_owned();
        let mut moved = created.clone();
        moved["address"] = json!("169.254.169.254");
        let (status, _, text) = json(
            &t.state,
            "PUT",
            &format!("/sites/{id}"),
            Some(&token),
            Some(&moved),
        )
        .await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{text}");
        assert_eq!(
            t.state.store.get_site(&id).await.expect("site").address,
            "192.0.2.10"
        );
        let mut bad = site("m2");
        bad["address"] = json!("100.100.100.200");
        let (status, refused, text) = json(
            &t.state,
            "POST",
            "/sites/import",
            Some(&token),
            Some(&json!([site("ok"), bad])),
        )
        .await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{text}");
        assert_eq!(refused["errors"][0]["row"], 2);
        assert_eq!(refused["errors"][0]["field"], "address");
    }

    #[tokio::test]
    async fn tokens_scopes_and_organizations() {
        let t = state();
        let (_, created, _) = create(&t, &admin(&t, "acme"), &site("r1")).await;
        let id = created["id"].as_str().expect("id").to_owned();
        let one = format!("/sites/{id}");
        let body = site("r2");

        for (method, uri) in [
            ("GET", "/sites"),
            ("GET", one.as_str()),
            ("POST", "/sites"),
            ("DELETE", one.as_str()),
        ] {
            let (status, err, _) = json(&t.state, method, uri, None, Some(&body)).await;
            assert_eq!(status, StatusCode::UNAUTHORIZED, "{method} {uri}");
            assert_eq!(err["code"], "missing_token");
        }
        let viewer = t.token("bob", "acme", &["site:view"]);
        for (method, uri) in [
            ("POST", "/sites"),
            ("PUT", one.as_str()),
            ("DELETE", one.as_str()),
            ("POST", "/sites/import"),
        ] {
            let (status, err, _) = json(&t.state, method, uri, Some(&viewer), Some(&body)).await;
            assert_eq!(status, StatusCode::FORBIDDEN, "{method} {uri}");
            assert_eq!(err["code"], "missing_scope");
            assert!(
                err["message"]
                    .as_str()
                    .unwrap_or_default()
                    .contains("site:manage")
            );
        }
        let manager = t.token("carol", "acme", &["site:manage"]);
        for uri in ["/sites", one.as_str()] {
            let (status, err, _) = json(&t.state, "GET", uri, Some(&manager), None).await;
            assert_eq!(status, StatusCode::FORBIDDEN, "{uri}");
            assert!(
                err["message"]
                    .as_str()
                    .unwrap_or_default()
                    .contains("site:view")
            );
        }

        let other = admin(&t, "globex");
        for method in ["GET", "PUT", "DELETE"] {
            let (status, err, text) = json(&t.state, method, &one, Some(&other), Some(&body)).await;
            assert_eq!(status, StatusCode::NOT_FOUND, "{method}");
            assert_eq!(err["code"], "not_found");
            assert!(!text.contains("192.0.2.10"));
        }
        let (_, page, _) = json(&t.state, "GET", "/sites", Some(&other), None).await;
        assert_eq!(page["total"], 0);
        // The other organization may use the same name.
        let (status, _, _) = create(&t, &other, &site("r1")).await;
        assert_eq!(status, StatusCode::CREATED);
        assert!(
            t.state.store.get_site(&id).await.is_ok(),
            "the other org's delete did nothing"
        );
    }

    #[tokio::test]
    async fn bad_bodies_are_400_413_and_422_naming_the_field() {
        let t = state();
        let token = admin(&t, "acme");
        let (status, err, _) = call(
            &t.state,
            "POST",
            "/sites",
            Some(&token),
            Some("application/json"),
            "{\"name\": ",
        )
        .await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_eq!(err["code"], "malformed_json");

        for (field, value, needle) in [
            ("port", json!(70000), "port: must be a port number"),
            ("port", json!(0), "port: must be a port number"),
            ("port", json!("x"), "port: must be a port number"),
            ("name", json!(""), "name: must not be empty"),
            ("address", json!("10.0.0.1 evil"), "address: "),
            ("tags", json!("core"), "tags: must be a list"),
            ("colour", json!("red"), "colour: unknown field"),
            (
                "tls",
                json!({"pinned_sha256": "zz"}),
                "tls.pinned_sha256: must be 64 hex digits",
            ),
        ] {
            let mut body = site("r1");
            body[field] = value;
            let (status, err, text) = create(&t, &token, &body).await;
            assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{field}: {text}");
            assert_eq!(err["code"], "validation_failed");
            assert!(
                err["message"]
                    .as_str()
                    .unwrap_or_default()
                    .starts_with(needle),
                "{text}"
            );
            assert!(!text.contains(SECRET));
        }
        let (status, err, _) = create(&t, &token, &json!({"address": "10.0.0.1"})).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(err["message"], "name: is required");

        let (status, _, _) = create(&t, &token, &site("r1")).await;
        assert_eq!(status, StatusCode::CREATED);
        let (status, err, _) = create(&t, &token, &site("r1")).await;
        assert_eq!(status, StatusCode::CONFLICT);
        assert_eq!(err["code"], "name_taken");

        let huge = json!({"name": "x".repeat(3 << 20), "address": "10.0.0.1"});
        let (status, err, _) = create(&t, &token, &huge).await;
        assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
        assert_eq!(err["code"], "body_too_large");

        for query in ["page=0", "page_size=5000", "page=abc"] {
            let (status, err, _) = json(
                &t.state,
                "GET",
                &format!("/sites?{query}"),
                Some(&token),
                None,
            )
            .await;
            assert_eq!(status, StatusCode::BAD_REQUEST, "{query}");
            assert_eq!(err["code"], "invalid_query");
        }
    }

    #[tokio::test]
    async fn import_of_many_rows_rejects_all_for_one_bad_row_then_writes_all_at_once() {
        let t = state();
        let token = admin(&t, "acme");
        let mut rows: Vec<Value> = (0..2000).map(|i| site(&format!("r{i:05}"))).collect();
        rows[10]["port"] = json!(-1);
        rows[1500]["name"] = json!("r00001");
        let (status, err, text) = json(
            &t.state,
            "POST",
            "/sites/import",
            Some(&token),
            Some(&json!(rows)),
        )
        .await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{text}");
        assert_eq!(err["code"], "import_rejected");
        assert_eq!(err["errors"].as_array().map(Vec::len), Some(2), "{text}");
        assert_eq!(err["errors"][0]["row"], 11);
        assert_eq!(err["errors"][0]["field"], "port");
        assert_eq!(err["errors"][1]["row"], 1501);
        assert_eq!(err["errors"][1]["field"], "name");
        assert!(!text.contains(SECRET));
        let (_, page, _) = json(&t.state, "GET", "/sites", Some(&token), None).await;
        assert_eq!(page["total"], 0, "nothing of a refused import is written");

        rows[10]["port"] = json!(8728);
        rows[1500]["name"] = json!("r01500");
        let (status, report, text) = json(
            &t.state,
            "POST",
            "/sites/import",
            Some(&token),
            Some(&json!(rows)),
        )
        .await;
        assert_eq!(
            status,
            StatusCode::CREATED,
            "{}",
            &text[..text.len().min(500)]
        );
        assert_eq!(report["created"], 2000);
        assert_eq!(report["results"][1499]["row"], 1500);
        assert_eq!(report["results"][1499]["status"], "created");
        assert!(!text.contains(SECRET));
        let (_, page, _) = json(
            &t.state,
            "GET",
            "/sites?page=40&page_size=50&tag=edge",
            Some(&token),
            None,
        )
        .await;
        assert_eq!(page["total"], 2000);
        assert_eq!(page["data"].as_array().map(Vec::len), Some(50));
        assert_eq!(page["data"][49]["name"], "r01999");

        // Again: every name is taken now, and each row says so.
        let (status, err, _) = json(
            &t.state,
            "POST",
            "/sites/import",
            Some(&token),
            Some(&json!(rows[..3])),
        )
        .await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(err["errors"].as_array().map(Vec::len), Some(3));
        assert_eq!(err["errors"][2]["field"], "name");
    }

    #[tokio::test]
    async fn csv_import() {
        let t = state();
        let token = admin(&t, "acme");
        let csv = "name,address,port,username,password,tags,tls_enabled\r\n\
                   core-1,10.0.0.1,8728,admin,\"pa,ss\"\"word\",core;edge,no\r\n\
                   core-2,10.0.0.2,,admin,,core,yes\r\n";
        let (status, report, text) = call(
            &t.state,
            "POST",
            "/sites/import",
            Some(&token),
            Some("text/csv; charset=utf-8"),
            csv,
        )
        .await;
        assert_eq!(status, StatusCode::CREATED, "{text}");
        assert_eq!(report["created"], 2);
        let id = report["results"][0]["id"].as_str().expect("id");
        assert_eq!(
            t.state.store.site_password(id).await.expect("pw").expose(),
            "pa,ss\"word"
        );
        let second = t
            .state
            .store
            .get_site(report["results"][1]["id"].as_str().expect("id"))
            .await
            .expect("site");
        assert!(second.tls.enabled && !second.has_password && second.port.is_none());

        let bad = "name,address,port\nok,10.0.0.3,1\nbad,10.0.0.4,http\n";
        let (status, err, _) = call(
            &t.state,
            "POST",
            "/sites/import",
            Some(&token),
            Some("text/csv"),
            bad,
        )
        .await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(err["errors"][0]["row"], 2);
        assert_eq!(err["errors"][0]["field"], "port");

        let (status, err, _) = call(
            &t.state,
            "POST",
            "/sites/import",
            Some(&token),
            Some("text/csv"),
            "name,colour\nx,red\n",
        )
        .await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(err["code"], "import_rejected");
        assert_eq!(err["errors"][0]["row"], 0);
        assert_eq!(err["errors"][0]["field"], "header");
        assert!(
            err["message"]
                .as_str()
                .unwrap_or_default()
                .contains("colour")
        );
        let (status, err, _) = call(
            &t.state,
            "POST",
            "/sites/import",
            Some(&token),
            Some("text/csv"),
            "name,address\n\"x,1\n",
        )
        .await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_eq!(err["code"], "malformed_csv");
        let (status, err, _) = call(
            &t.state,
            "POST",
            "/sites/import",
            Some(&token),
            Some("application/xml"),
            "<x/>",
        )
        .await;
        assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
        assert_eq!(err["code"], "unsupported_media_type");
        let (status, err, _) =
            call(&t.state, "POST", "/sites/import", Some(&token), None, "{}").await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_eq!(err["code"], "malformed_json");
    }

    #[tokio::test]
    async fn an_import_over_32_mib_is_413() {
        let t = state();
        let token = admin(&t, "acme");
        let body = vec![b' '; super::MAX_IMPORT_BYTES + 1];
        let (status, err, _) = call(
            &t.state,
            "POST",
            "/sites/import",
            Some(&token),
            Some("application/json"),
            body,
        )
        .await;
        assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
        assert_eq!(err["code"], "body_too_large");
    }
}
