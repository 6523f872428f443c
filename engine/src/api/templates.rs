//! Script templates (seed 002): reusable scripts with typed variables.
//!
//! - `GET /scripts/templates` lists the organization's private templates and the global
//!   ones (`type=public|private`, `search` over name and description), paginated as
//!   `{data, links, meta}`;
//! - `POST` creates a private template; `GET`, `PUT` (every edit a new numbered
//!   version) and `DELETE /scripts/templates/{id}`; global templates are read-only (403);
//! - `GET .../versions` and `.../versions/{n}` read the history;
//! - `POST .../render` fills the variables and answers the script with its lint, so a
//!   caller sees exactly what a schedule made from the template would run.
//!
//! Scopes: `script:view` to read and render, `script:create`, `script:update`,
//! `script:delete`. A private template of another organization is answered 404.

use std::collections::BTreeMap;

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
use crate::store::{Operations, Template, TemplateInput, TemplateVersion};
use crate::templates::{GlobalTemplate, Variable, VariableType, render};

/// Templates per page when the caller does not say.
const DEFAULT_PER_PAGE: usize = 15;
/// Most templates per page.
const MAX_PER_PAGE: usize = 100;
const PATH: &str = "/scripts/templates";

#[derive(OpenApi)]
#[openapi(
    paths(list, create, show, update, delete_one, versions, version, render_template),
    components(schemas(
        ErrorBody,
        TemplateBody,
        TemplateView,
        TemplatePage,
        PageLinks,
        PageMeta,
        VersionSummary,
        VersionView,
        RenderBody,
        Rendered,
        Variable,
        VariableType,
        LintReport
    )),
    tags((name = "Script templates", description = "Reusable scripts with typed variables, private to an organization or global."))
)]
pub(super) struct Doc;

pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route(PATH, get(list).post(create))
        .route(
            "/scripts/templates/{id}",
            get(show).put(update).delete(delete_one),
        )
        .route("/scripts/templates/{id}/versions", get(versions))
        .route("/scripts/templates/{id}/versions/{n}", get(version))
        .route("/scripts/templates/{id}/render", post(render_template))
}

/// A template to create, or the new version of one.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct TemplateBody {
    /// At most 100 characters.
    name: String,
    /// At most 200 characters.
    description: String,
    /// RouterOS script, at most 5000 characters; `{{name}}` stands for a variable.
    content: String,
    /// Keys of at most 50 characters, values of at most 1000. On `PUT`, absent keeps
    /// what the template has.
    #[serde(default)]
    metadata: Option<BTreeMap<String, String>>,
    /// The variables `content` uses. On `PUT`, absent keeps what the template has.
    #[serde(default)]
    variables: Option<Vec<Variable>>,
    /// On `PUT`: the version this edit was made from; refused (422) when the template
    /// has moved on since.
    #[serde(default)]
    version: Option<u64>,
}

/// A template, private or global.
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct TemplateView {
    id: String,
    name: String,
    description: String,
    content: String,
    metadata: BTreeMap<String, String>,
    variables: Vec<Variable>,
    /// The current version, from 1; a global template is always at 1.
    version: u64,
    /// The user who created it; null for a global template.
    author: Option<String>,
    /// Global templates are read-only.
    read_only: bool,
    /// What the content does, in a sentence, written by the engine; null until written
    /// (and for global templates).
    summary: Option<String>,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
    /// What the linter says of `content` (shown on one template, not in the listing).
    #[serde(skip_serializing_if = "Option::is_none")]
    lint: Option<LintReport>,
}

impl From<Template> for TemplateView {
    fn from(t: Template) -> Self {
        TemplateView {
            id: t.id,
            name: t.name,
            description: t.description,
            content: t.content,
            metadata: t.metadata,
            variables: t.variables,
            version: t.version,
            author: Some(t.author),
            read_only: false,
            summary: t.summary,
            created_at: t.created_at,
            updated_at: t.updated_at,
            lint: None,
        }
    }
}

impl From<GlobalTemplate> for TemplateView {
    fn from(t: GlobalTemplate) -> Self {
        let summary = crate::lint::describe(&t.content);
        TemplateView {
            id: t.id,
            name: t.name,
            description: t.description,
            content: t.content,
            metadata: t.metadata,
            variables: t.variables,
            version: 1,
            author: None,
            read_only: true,
            summary: Some(summary),
            created_at: t.updated_at,
            updated_at: t.updated_at,
            lint: None,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub(super) struct PageLinks {
    first: String,
    last: String,
    prev: Option<String>,
    next: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub(super) struct PageMeta {
    current_page: usize,
    /// The position of the first template on this page, from 1; null on an empty page.
    from: Option<usize>,
    last_page: usize,
    path: String,
    per_page: usize,
    /// The position of the last template on this page; null on an empty page.
    to: Option<usize>,
    total: usize,
}

/// A page of templates.
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct TemplatePage {
    data: Vec<TemplateView>,
    links: PageLinks,
    meta: PageMeta,
}

/// The listing's query.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(super) struct ListParams {
    /// `public` (global templates only) or `private` (the organization's only); both
    /// when absent.
    r#type: Option<String>,
    /// Only templates whose name or description contains this text (any case).
    search: Option<String>,
    /// Page number, from 1.
    #[param(minimum = 1)]
    page: Option<usize>,
    /// Templates per page, 1 to 100 (default 15).
    #[param(minimum = 1, maximum = 100)]
    per_page: Option<usize>,
}

pub(super) fn bad_query(message: String) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, "invalid_query", message)
}

/// `(page, per_page)` from the query, with their defaults and bounds checked.
pub(super) fn page_of(
    page: Option<usize>,
    per_page: Option<usize>,
    default: usize,
    max: usize,
) -> Result<(usize, usize), ApiError> {
    let page = page.unwrap_or(1);
    let per_page = per_page.unwrap_or(default);
    if page == 0 {
        return Err(bad_query("page: pages are numbered from 1".into()));
    }
    if !(1..=max).contains(&per_page) {
        return Err(bad_query(format!("per_page: must be between 1 and {max}")));
    }
    Ok((page, per_page))
}

/// One page of `all`, with the links and counts a `{data, links, meta}` page carries.
pub(super) fn paginate<T>(
    all: Vec<T>,
    page: usize,
    per_page: usize,
    path: &str,
) -> (Vec<T>, PageLinks, PageMeta) {
    let total = all.len();
    let last_page = total.div_ceil(per_page).max(1);
    let offset = (page - 1).saturating_mul(per_page);
    let data: Vec<T> = all.into_iter().skip(offset).take(per_page).collect();
    let link = |p: usize| format!("{path}?page={p}&per_page={per_page}");
    let (from, to) = if data.is_empty() {
        (None, None)
    } else {
        (Some(offset + 1), Some(offset + data.len()))
    };
    let links = PageLinks {
        first: link(1),
        last: link(last_page),
        prev: (page > 1).then(|| link((page - 1).min(last_page))),
        next: (page < last_page).then(|| link(page + 1)),
    };
    let meta = PageMeta {
        current_page: page,
        from,
        last_page,
        path: path.into(),
        per_page,
        to,
        total,
    };
    (data, links, meta)
}

/// List templates: the organization's private ones and the global ones.
#[utoipa::path(
    get,
    path = "/scripts/templates",
    tag = "Script templates",
    params(ListParams),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "A page of templates, global ones first, then private ones oldest first", body = TemplatePage),
        (status = 400, description = "A query parameter is not valid; the message names it", body = ErrorBody),
        (status = 401, description = "No valid bearer token", body = ErrorBody),
        (status = 403, description = "The token lacks script:view", body = ErrorBody),
    )
)]
async fn list(
    State(state): State<AppState>,
    caller: Caller,
    params: Result<Query<ListParams>, QueryRejection>,
) -> Result<Json<TemplatePage>, ApiError> {
    caller.require(scopes::SCRIPT_VIEW)?;
    let params = support::query(params)?;
    let (public, private) = match params.r#type.as_deref().map(str::to_ascii_lowercase) {
        None => (true, true),
        Some(t) if t == "public" => (true, false),
        Some(t) if t == "private" => (false, true),
        Some(t) => return Err(bad_query(format!("type: `{t}` is not public or private"))),
    };
    let (page, per_page) = page_of(params.page, params.per_page, DEFAULT_PER_PAGE, MAX_PER_PAGE)?;
    let search = params
        .search
        .filter(|s| !s.trim().is_empty())
        .map(|s| s.trim().to_lowercase());
    let matches = |name: &str, description: &str| {
        search.as_ref().is_none_or(|s| {
            name.to_lowercase().contains(s) || description.to_lowercase().contains(s)
        })
    };
    let mut all: Vec<TemplateView> = Vec::new();
    if public {
        all.extend(
            state
                .templates
                .all()
                .values()
                .filter(|t| matches(&t.name, &t.description))
                .cloned()
                .map(TemplateView::from),
        );
    }
    if private {
        let org = caller.org().to_owned();
        let mine = blocking(&state.store, move |store| async move {
            Ok(store.list_templates(&org).await?)
        })
        .await?;
        all.extend(
            mine.into_iter()
                .filter(|t| matches(&t.name, &t.description))
                .map(TemplateView::from),
        );
    }
    let (data, links, meta) = paginate(all, page, per_page, PATH);
    Ok(Json(TemplatePage { data, links, meta }))
}

/// A global template, or 403 when `id` names one.
fn refuse_global(state: &AppState, id: &str, verb: &str) -> Result<(), ApiError> {
    if state.templates.get(id).is_some() {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "read_only_template",
            format!(
                "{id} is a global template, read-only through the API; {verb} it in the engine's templates folder"
            ),
        ));
    }
    Ok(())
}

/// Create a private template of your organization.
#[utoipa::path(
    post,
    path = "/scripts/templates",
    tag = "Script templates",
    request_body = TemplateBody,
    security(("bearer" = [])),
    responses(
        (status = 201, description = "The template, at version 1", body = TemplateView),
        (status = 400, description = "The body is not JSON", body = ErrorBody),
        (status = 401, description = "No valid bearer token", body = ErrorBody),
        (status = 403, description = "The token lacks script:create", body = ErrorBody),
        (status = 422, description = "A field is not valid, or `content` uses an undeclared variable; the message names it", body = ErrorBody),
        (status = 507, description = "The engine's disk is full", body = ErrorBody),
    )
)]
async fn create(
    State(state): State<AppState>,
    caller: Caller,
    body: Result<Json<TemplateBody>, JsonRejection>,
) -> Result<(StatusCode, Json<TemplateView>), ApiError> {
    caller.require(scopes::SCRIPT_CREATE)?;
    let body = support::json_body(body)?;
    if body.version.is_some() {
        return Err(ApiError::validation(
            "version",
            "a new template starts at version 1",
        ));
    }
    let input = TemplateInput {
        name: body.name,
        description: body.description,
        content: body.content,
        metadata: body.metadata.unwrap_or_default(),
        variables: body.variables.unwrap_or_default(),
    };
    let org = caller.org().to_owned();
    let user = caller.user_id().to_owned();
    let t = blocking(&state.store, move |store| async move {
        Ok(store
            .create_template(&org, &user, input, Utc::now())
            .await?)
    })
    .await?;
    Ok((StatusCode::CREATED, Json(with_lint(t.into()))))
}

fn with_lint(mut view: TemplateView) -> TemplateView {
    view.lint = Some(lint(&view.content));
    view
}

/// The template `id`: a global one, or a private one of the caller's organization.
async fn find(state: &AppState, caller: &Caller, id: String) -> Result<TemplateView, ApiError> {
    if let Some(t) = state.templates.get(&id) {
        return Ok(t.into());
    }
    let org = caller.org().to_owned();
    let t = blocking(&state.store, move |store| async move {
        Ok(store.get_template(&org, &id).await?)
    })
    .await?;
    Ok(t.into())
}

/// Read a template, with the lint of its content.
#[utoipa::path(
    get,
    path = "/scripts/templates/{id}",
    tag = "Script templates",
    params(("id" = String, Path, description = "Template id")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The template", body = TemplateView),
        (status = 401, description = "No valid bearer token", body = ErrorBody),
        (status = 403, description = "The token lacks script:view", body = ErrorBody),
        (status = 404, description = "No such template in your organization or among the global ones", body = ErrorBody),
    )
)]
async fn show(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<TemplateView>, ApiError> {
    caller.require(scopes::SCRIPT_VIEW)?;
    Ok(Json(with_lint(find(&state, &caller, id).await?)))
}

/// Edit a private template: the previous content is kept as a numbered version.
#[utoipa::path(
    put,
    path = "/scripts/templates/{id}",
    tag = "Script templates",
    params(("id" = String, Path, description = "Template id")),
    request_body = TemplateBody,
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The template at its new version", body = TemplateView),
        (status = 400, description = "The body is not JSON", body = ErrorBody),
        (status = 401, description = "No valid bearer token", body = ErrorBody),
        (status = 403, description = "The token lacks script:update, or the template is global (`read_only_template`)", body = ErrorBody),
        (status = 404, description = "No such template in your organization", body = ErrorBody),
        (status = 422, description = "A field is not valid, or `version` is not the current one; the message names it", body = ErrorBody),
        (status = 507, description = "The engine's disk is full", body = ErrorBody),
    )
)]
async fn update(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    body: Result<Json<TemplateBody>, JsonRejection>,
) -> Result<Json<TemplateView>, ApiError> {
    caller.require(scopes::SCRIPT_UPDATE)?;
    refuse_global(&state, &id, "edit")?;
    let body = support::json_body(body)?;
    let org = caller.org().to_owned();
    let user = caller.user_id().to_owned();
    let t = blocking(&state.store, move |store| async move {
        let current = store.get_template(&org, &id).await?;
        let input = TemplateInput {
            name: body.name,
            description: body.description,
            content: body.content,
            metadata: body.metadata.unwrap_or(current.metadata),
            variables: body.variables.unwrap_or(current.variables),
        };
        Ok(store
            .update_template(&org, &id, &user, input, body.version, Utc::now())
            .await?)
    })
    .await?;
    Ok(Json(with_lint(t.into())))
}

/// Delete a private template and every version of it.
#[utoipa::path(
    delete,
    path = "/scripts/templates/{id}",
    tag = "Script templates",
    params(("id" = String, Path, description = "Template id")),
    security(("bearer" = [])),
    responses(
        (status = 204, description = "Deleted"),
        (status = 401, description = "No valid bearer token", body = ErrorBody),
        (status = 403, description = "The token lacks script:delete, or the template is global (`read_only_template`)", body = ErrorBody),
        (status = 404, description = "No such template in your organization", body = ErrorBody),
        (status = 507, description = "The engine's disk is full", body = ErrorBody),
    )
)]
async fn delete_one(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    caller.require(scopes::SCRIPT_DELETE)?;
    refuse_global(&state, &id, "remove")?;
    let org = caller.org().to_owned();
    let user = caller.user_id().to_owned();
    blocking(&state.store, move |store| async move {
        Ok(store.delete_template(&org, &id, &user, Utc::now()).await?)
    })
    .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// One version in the history (its content is read with `.../versions/{n}`).
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct VersionSummary {
    version: u64,
    name: String,
    description: String,
    /// Who wrote this version; null for a global template.
    author: Option<String>,
    created_at: DateTime<Utc>,
}

/// One version as it was written.
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct VersionView {
    version: u64,
    name: String,
    description: String,
    content: String,
    metadata: BTreeMap<String, String>,
    variables: Vec<Variable>,
    author: Option<String>,
    created_at: DateTime<Utc>,
}

impl From<TemplateVersion> for VersionView {
    fn from(v: TemplateVersion) -> Self {
        VersionView {
            version: v.version,
            name: v.name,
            description: v.description,
            content: v.content,
            metadata: v.metadata,
            variables: v.variables,
            author: Some(v.author),
            created_at: v.created_at,
        }
    }
}

/// The versions of a template, newest first.
#[utoipa::path(
    get,
    path = "/scripts/templates/{id}/versions",
    tag = "Script templates",
    params(("id" = String, Path, description = "Template id")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Every version, newest first", body = [VersionSummary]),
        (status = 401, description = "No valid bearer token", body = ErrorBody),
        (status = 403, description = "The token lacks script:view", body = ErrorBody),
        (status = 404, description = "No such template in your organization or among the global ones", body = ErrorBody),
    )
)]
async fn versions(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<Vec<VersionSummary>>, ApiError> {
    caller.require(scopes::SCRIPT_VIEW)?;
    if let Some(t) = state.templates.get(&id) {
        return Ok(Json(vec![VersionSummary {
            version: 1,
            name: t.name,
            description: t.description,
            author: None,
            created_at: t.updated_at,
        }]));
    }
    let org = caller.org().to_owned();
    let all = blocking(&state.store, move |store| async move {
        Ok(store.template_versions(&org, &id).await?)
    })
    .await?;
    Ok(Json(
        all.into_iter()
            .map(|v| VersionSummary {
                version: v.version,
                name: v.name,
                description: v.description,
                author: Some(v.author),
                created_at: v.created_at,
            })
            .collect(),
    ))
}

/// Version `n` of a template.
#[utoipa::path(
    get,
    path = "/scripts/templates/{id}/versions/{n}",
    tag = "Script templates",
    params(
        ("id" = String, Path, description = "Template id"),
        ("n" = u64, Path, description = "Version number, from 1")
    ),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The version as it was written", body = VersionView),
        (status = 400, description = "`n` is not a number", body = ErrorBody),
        (status = 401, description = "No valid bearer token", body = ErrorBody),
        (status = 403, description = "The token lacks script:view", body = ErrorBody),
        (status = 404, description = "No such template or version", body = ErrorBody),
    )
)]
async fn version(
    State(state): State<AppState>,
    caller: Caller,
    Path((id, n)): Path<(String, String)>,
) -> Result<Json<VersionView>, ApiError> {
    caller.require(scopes::SCRIPT_VIEW)?;
    let n: u64 = n.parse().map_err(|_| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_path",
            format!("version: `{n}` is not a number"),
        )
    })?;
    if let Some(t) = state.templates.get(&id) {
        if n != 1 {
            return Err(ApiError::not_found(format!(
                "template version {id} version {n} not found"
            )));
        }
        return Ok(Json(VersionView {
            version: 1,
            name: t.name,
            description: t.description,
            content: t.content,
            metadata: t.metadata,
            variables: t.variables,
            author: None,
            created_at: t.updated_at,
        }));
    }
    let org = caller.org().to_owned();
    let v = blocking(&state.store, move |store| async move {
        Ok(store.template_version(&org, &id, n).await?)
    })
    .await?;
    Ok(Json(v.into()))
}

/// Values for a template's variables.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct RenderBody {
    /// Name to value; declared defaults fill the rest.
    #[serde(default)]
    variables: BTreeMap<String, String>,
    /// Render this version instead of the current one.
    #[serde(default)]
    version: Option<u64>,
}

/// A rendered template.
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct Rendered {
    /// The template and the version rendered.
    template_id: String,
    template_version: u64,
    /// The script, every value checked against its type and escaped for where it stands.
    script: String,
    lint: LintReport,
}

/// Fill a template's variables and answer the script it makes, with its lint. Nothing is
/// stored or run.
#[utoipa::path(
    post,
    path = "/scripts/templates/{id}/render",
    tag = "Script templates",
    params(("id" = String, Path, description = "Template id")),
    request_body = RenderBody,
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The script", body = Rendered),
        (status = 400, description = "The body is not JSON", body = ErrorBody),
        (status = 401, description = "No valid bearer token", body = ErrorBody),
        (status = 403, description = "The token lacks script:view", body = ErrorBody),
        (status = 404, description = "No such template or version", body = ErrorBody),
        (status = 422, description = "A value is missing, unknown or not of its variable's type; the message names the variable", body = ErrorBody),
    )
)]
async fn render_template(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    body: Result<Json<RenderBody>, JsonRejection>,
) -> Result<Json<Rendered>, ApiError> {
    caller.require(scopes::SCRIPT_VIEW)?;
    let body = support::json_body(body)?;
    let (version, content, variables) = match (state.templates.get(&id), body.version) {
        (Some(t), None | Some(1)) => (1, t.content, t.variables),
        (Some(_), Some(n)) => {
            return Err(ApiError::not_found(format!(
                "template version {id} version {n} not found"
            )));
        }
        (None, wanted) => {
            let org = caller.org().to_owned();
            let id = id.clone();
            blocking(&state.store, move |store| async move {
                Ok(match wanted {
                    Some(n) => {
                        let v = store.template_version(&org, &id, n).await?;
                        (v.version, v.content, v.variables)
                    }
                    None => {
                        let t = store.get_template(&org, &id).await?;
                        (t.version, t.content, t.variables)
                    }
                })
            })
            .await?
        }
    };
    let script = render(&content, &variables, &body.variables)
        .map_err(|e| ApiError::validation("variables", e))?;
    let lint = lint(&script);
    Ok(Json(Rendered {
        template_id: id,
        template_version: version,
        script,
        lint,
    }))
}
