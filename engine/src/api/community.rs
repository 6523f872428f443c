//! Community scripts (seed 002): public RouterOS scripts from GitHub, shared by every
//! organization, each pinned to the commit it was fetched at.
//!
//! - `POST /scripts/community-scripts` `{github_url, readme_url?}` queues a submission
//!   (201, `status: processing`); the engine fetches it in the background
//!   ([`crate::community`]). The same URL still processing, or naming a commit already
//!   fetched, answers that record (200).
//! - `GET /scripts/community-scripts` lists and searches (name, description, repository)
//!   with the templates' paging; `GET .../{id}` answers one with its content and lint.
//! - `POST .../{id}/refresh` fetches the URL again into a new record at the reference's
//!   current commit; the old record stays as it was.
//!
//! Scopes: `script:view` to read, `script:create` to submit and refresh. Who submitted a
//! script is audited, never shown: the library is public.

use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, OpenApi, ToSchema};

use super::error::ErrorBody;
use super::support::{self, blocking};
use super::{ApiError, AppState, Caller};
use crate::auth::scopes;
use crate::lint::{LintReport, lint};
use crate::store::{CommunityScript, CommunityStatus, Operations, Submitted};

const PATH: &str = "/scripts/community-scripts";
const DEFAULT_PER_PAGE: usize = 15;
const MAX_PER_PAGE: usize = 100;
/// Longest URL accepted.
const MAX_URL: usize = 2048;

#[derive(OpenApi)]
#[openapi(
    paths(submit, list, show, refresh),
    components(schemas(
        ErrorBody,
        SubmitBody,
        CommunityView,
        CommunityPage,
        RepositoryView,
        UserView,
        StatusView,
        LintReport
    )),
    tags((name = "Community scripts", description = "Public RouterOS scripts from GitHub, each pinned to a commit."))
)]
pub(super) struct Doc;

pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route(PATH, get(list).post(submit))
        .route("/scripts/community-scripts/{id}", get(show))
        .route("/scripts/community-scripts/{id}/refresh", post(refresh))
}

/// A script to add to the library.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct SubmitBody {
    /// The raw URL of the `.rsc` file on GitHub, or its page (`.../blob/REF/PATH`).
    github_url: String,
    /// A raw URL of a README to keep beside it.
    #[serde(default)]
    readme_url: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub(super) enum StatusView {
    Processing,
    Ready,
    Failed,
}

#[derive(Debug, Serialize, ToSchema)]
pub(super) struct RepositoryView {
    /// `owner/name`.
    name: String,
    url: String,
    description: Option<String>,
    license: Option<String>,
    stars: u32,
    created_at: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub(super) struct UserView {
    /// The display name, or the login when the account has none.
    name: String,
    login: String,
    url: String,
    avatar: Option<String>,
    followers: u32,
    created_at: Option<String>,
}

/// A community script. Until it is `ready`, only `id`, `status`, `failure`,
/// `github_url`, `readme_url` and the times are known.
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct CommunityView {
    /// A ULID.
    id: String,
    status: StatusView,
    /// Why it failed, or why the last attempt did while it is retried.
    failure: Option<String>,
    /// The file name.
    name: Option<String>,
    /// The repository's description.
    description: Option<String>,
    /// What the script does, in a sentence, written by the engine once it is ready.
    summary: Option<String>,
    /// Bytes of content.
    size: Option<usize>,
    readme_url: Option<String>,
    /// The file's page on GitHub, at the pinned commit.
    github_url: String,
    /// The URL it was submitted by.
    submitted_url: String,
    raw_url: Option<String>,
    /// Shown on one script, not in the listing.
    #[serde(skip_serializing_if = "Option::is_none")]
    content: Option<String>,
    /// git's blob hash of the content.
    sha: Option<String>,
    sha256: Option<String>,
    /// The commit the script is pinned at, and the reference that named it.
    commit: Option<String>,
    reference: Option<String>,
    repository: Option<RepositoryView>,
    user: Option<UserView>,
    /// The README's text (one script only).
    #[serde(skip_serializing_if = "Option::is_none")]
    readme: Option<String>,
    /// The record this one refreshed.
    refreshed_from: Option<String>,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
    /// What the linter says of the content (one ready script only).
    #[serde(skip_serializing_if = "Option::is_none")]
    lint: Option<LintReport>,
}

fn view(s: CommunityScript, full: bool) -> CommunityView {
    let f = s.fetched;
    CommunityView {
        id: s.id,
        status: match s.status {
            CommunityStatus::Processing => StatusView::Processing,
            CommunityStatus::Ready => StatusView::Ready,
            CommunityStatus::Failed => StatusView::Failed,
        },
        failure: s.failure,
        name: f.as_ref().map(|f| f.name.clone()),
        description: f.as_ref().and_then(|f| f.repository.description.clone()),
        summary: s.summary,
        size: f.as_ref().map(|f| f.content.len()),
        readme_url: f
            .as_ref()
            .and_then(|f| f.readme_raw_url.clone())
            .or(s.readme_url),
        github_url: f
            .as_ref()
            .map(|f| f.web_url.clone())
            .unwrap_or_else(|| s.github_url.clone()),
        submitted_url: s.github_url,
        raw_url: f.as_ref().map(|f| f.raw_url.clone()),
        lint: full.then(|| f.as_ref().map(|f| lint(&f.content))).flatten(),
        content: full
            .then(|| f.as_ref().map(|f| f.content.clone()))
            .flatten(),
        sha: s.sha,
        sha256: s.sha256,
        commit: f.as_ref().map(|f| f.commit.clone()),
        reference: f.as_ref().map(|f| f.reference.clone()),
        repository: f.as_ref().map(|f| RepositoryView {
            name: f.repository.name.clone(),
            url: f.repository.url.clone(),
            description: f.repository.description.clone(),
            license: f.repository.license.clone(),
            stars: f.repository.stars,
            created_at: f.repository.created_at.clone(),
        }),
        user: f.as_ref().map(|f| UserView {
            name: f.user.name.clone().unwrap_or_else(|| f.user.login.clone()),
            login: f.user.login.clone(),
            url: f.user.url.clone(),
            avatar: f.user.avatar.clone(),
            followers: f.user.followers,
            created_at: f.user.created_at.clone(),
        }),
        readme: full
            .then(|| f.as_ref().and_then(|f| f.readme.clone()))
            .flatten(),
        refreshed_from: s.refreshed_from,
        created_at: s.created_at,
        updated_at: s.updated_at,
    }
}

fn check_url(field: &str, url: &str) -> Result<(), ApiError> {
    if url.len() > MAX_URL {
        return Err(ApiError::validation(
            field,
            format!("longer than {MAX_URL} characters"),
        ));
    }
    if !(url.starts_with("https://") || url.starts_with("http://")) {
        return Err(ApiError::validation(field, "an http(s) URL"));
    }
    Ok(())
}

async fn queue(
    state: &AppState,
    caller: &Caller,
    github_url: String,
    readme_url: Option<String>,
    refreshed_from: Option<String>,
) -> Result<(StatusCode, Json<CommunityView>), ApiError> {
    let org = caller.org().to_owned();
    let user = caller.user_id().to_owned();
    let submitted = blocking(&state.store, move |store| async move {
        Ok(store
            .submit_community_script(
                &org,
                &user,
                &github_url,
                readme_url.as_deref(),
                refreshed_from.as_deref(),
                Utc::now(),
            )
            .await?)
    })
    .await?;
    Ok(match submitted {
        Submitted::New(s) => {
            state.community.notify();
            (StatusCode::CREATED, Json(view(s, false)))
        }
        Submitted::Existing(s) => (StatusCode::OK, Json(view(s, false))),
    })
}

/// Submit a script: it is fetched in the background, pinned to the commit its reference
/// names then.
#[utoipa::path(
    post,
    path = "/scripts/community-scripts",
    tag = "Community scripts",
    request_body = SubmitBody,
    security(("bearer" = [])),
    responses(
        (status = 201, description = "The script was submitted and is being processed", body = CommunityView),
        (status = 200, description = "The same URL is still processing, or names a commit already fetched: that record", body = CommunityView),
        (status = 400, description = "The body is not JSON", body = ErrorBody),
        (status = 401, description = "No valid bearer token", body = ErrorBody),
        (status = 403, description = "The token lacks script:create", body = ErrorBody),
        (status = 422, description = "A URL is not an http(s) URL, or too long", body = ErrorBody),
    )
)]
async fn submit(
    State(state): State<AppState>,
    caller: Caller,
    body: Result<Json<SubmitBody>, JsonRejection>,
) -> Result<(StatusCode, Json<CommunityView>), ApiError> {
    caller.require(scopes::SCRIPT_CREATE)?;
    let body = support::json_body(body)?;
    let url = body.github_url.trim().to_owned();
    check_url("github_url", &url)?;
    let readme = body
        .readme_url
        .map(|u| u.trim().to_owned())
        .filter(|u| !u.is_empty());
    if let Some(r) = &readme {
        check_url("readme_url", r)?;
    }
    queue(&state, &caller, url, readme, None).await
}

/// Fetch a script's URL again, into a new record at its reference's current commit.
#[utoipa::path(
    post,
    path = "/scripts/community-scripts/{id}/refresh",
    tag = "Community scripts",
    params(("id" = String, Path, description = "Community script id")),
    security(("bearer" = [])),
    responses(
        (status = 201, description = "The new record, being processed; the old one is unchanged", body = CommunityView),
        (status = 401, description = "No valid bearer token", body = ErrorBody),
        (status = 403, description = "The token lacks script:create", body = ErrorBody),
        (status = 404, description = "No such community script", body = ErrorBody),
    )
)]
async fn refresh(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<(StatusCode, Json<CommunityView>), ApiError> {
    caller.require(scopes::SCRIPT_CREATE)?;
    let lookup = id.clone();
    let old = blocking(&state.store, move |store| async move {
        Ok(store.get_community_script(&lookup).await?)
    })
    .await?;
    queue(&state, &caller, old.github_url, old.readme_url, Some(id)).await
}

/// Read one community script, with its content, README and lint.
#[utoipa::path(
    get,
    path = "/scripts/community-scripts/{id}",
    tag = "Community scripts",
    params(("id" = String, Path, description = "Community script id")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The script", body = CommunityView),
        (status = 401, description = "No valid bearer token", body = ErrorBody),
        (status = 403, description = "The token lacks script:view", body = ErrorBody),
        (status = 404, description = "No such community script", body = ErrorBody),
    )
)]
async fn show(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<CommunityView>, ApiError> {
    caller.require(scopes::SCRIPT_VIEW)?;
    let s = blocking(&state.store, move |store| async move {
        Ok(store.get_community_script(&id).await?)
    })
    .await?;
    Ok(Json(view(s, true)))
}

/// The listing's query.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(super) struct ListParams {
    /// Only scripts whose name, description or repository contains this text (any case).
    search: Option<String>,
    /// `processing`, `ready` or `failed`; all when absent.
    status: Option<String>,
    /// Page number, from 1.
    #[param(minimum = 1)]
    page: Option<usize>,
    /// Scripts per page, 1 to 100 (default 15).
    #[param(minimum = 1, maximum = 100)]
    per_page: Option<usize>,
}

/// A page of community scripts.
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct CommunityPage {
    data: Vec<CommunityView>,
    links: super::templates::PageLinks,
    meta: super::templates::PageMeta,
}

/// List and search the community library, oldest first.
#[utoipa::path(
    get,
    path = "/scripts/community-scripts",
    tag = "Community scripts",
    params(ListParams),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "A page of community scripts", body = CommunityPage),
        (status = 400, description = "A query parameter is not valid; the message names it", body = ErrorBody),
        (status = 401, description = "No valid bearer token", body = ErrorBody),
        (status = 403, description = "The token lacks script:view", body = ErrorBody),
    )
)]
async fn list(
    State(state): State<AppState>,
    caller: Caller,
    params: Result<Query<ListParams>, QueryRejection>,
) -> Result<Json<CommunityPage>, ApiError> {
    caller.require(scopes::SCRIPT_VIEW)?;
    let params = support::query(params)?;
    let status = match params.status.as_deref().map(str::to_ascii_lowercase) {
        None => None,
        Some(s) if s == "processing" => Some(CommunityStatus::Processing),
        Some(s) if s == "ready" => Some(CommunityStatus::Ready),
        Some(s) if s == "failed" => Some(CommunityStatus::Failed),
        Some(s) => {
            return Err(super::templates::bad_query(format!(
                "status: `{s}` is not processing, ready or failed"
            )));
        }
    };
    let (page, per_page) =
        super::templates::page_of(params.page, params.per_page, DEFAULT_PER_PAGE, MAX_PER_PAGE)?;
    let search = params
        .search
        .filter(|s| !s.trim().is_empty())
        .map(|s| s.trim().to_lowercase());
    let all = blocking(&state.store, |store| async move {
        Ok(store.list_community_scripts().await?)
    })
    .await?;
    let matching: Vec<CommunityView> = all
        .into_iter()
        .filter(|s| status.is_none_or(|st| s.status == st))
        .filter(|s| {
            search.as_ref().is_none_or(|q| {
                let f = s.fetched.as_ref();
                [
                    f.map(|f| f.name.as_str()),
                    f.and_then(|f| f.repository.description.as_deref()),
                    f.map(|f| f.repository.name.as_str()),
                ]
                .into_iter()
                .flatten()
                .any(|t| t.to_lowercase().contains(q))
            })
        })
        .map(|s| view(s, false))
        .collect();
    let (data, links, meta) = super::templates::paginate(matching, page, per_page, PATH);
    Ok(Json(CommunityPage { data, links, meta }))
}
