//! Scheduled scripts (seed 000, seed 003's listing, seed 004's recurrences):
//!
//! - `GET /scripts/scheduled` lists with pagination and filters, `POST` creates,
//!   `DELETE` deletes several by id (all or none);
//! - `GET`, `PUT` (before launch; an edit of what runs returns it to `unauthorized`) and
//!   `DELETE /scripts/scheduled/{id}`;
//! - `GET /scripts/scheduled/{id}/authorize` asks for approval: the recipients are sent a
//!   single-use link. Opening that link (`?token=...`) shows a confirm page whose button
//!   POSTs the token; a GET never approves. `POST .../authorize` approves, with the
//!   `script:authorize` scope (never the creator: four eyes) or the link's token;
//! - `POST .../cancel`, `GET .../occurrences?count=N` (the next N launches) and
//!   `GET .../runs` (the run history, each run with its jobs).
//!
//! The script must parse, and every critical lint finding's rule id must be listed in
//! `acknowledged_risks` ([`crate::lint::policy`]); the store checks both, in the
//! transaction that writes the schedule, and answers 422 otherwise.
//!
//! Scopes: `script:view` to read, `script:create`, `script:update`, `script:delete`,
//! `script:authorize`. A schedule of another organization is answered 404.
//!
//! Store and approval calls wait on the disk (redb) or the database (PostgreSQL), so
//! handlers run them off the async workers.

mod model;
pub(crate) mod pages;
mod query;

#[cfg(test)]
mod tests;

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, JsonRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use serde::Deserialize;
use utoipa::{IntoParams, OpenApi};

use super::error::ErrorBody;
use super::support::{self, blocking};
use super::{ApiError, AppState, Caller};
use crate::approval;
use crate::auth::scopes;
use crate::store::{
    Backend, Operations, Page, ScheduleInput, SchedulePatch, ScheduledScript, StoreError,
};
use model::{
    ApproveBody, AuthorizationRequestData, AuthorizationRequested, BulkDeleteBody, BulkDeleted,
    CreateBody, ListData, ListResponse, OccurrenceView, OccurrencesView, RunView, RunsPage,
    ScheduleView, UpdateBody,
};
use query::{FrequencyParam, ListParams, ListQuery, TypeParam};

/// Occurrences previewed when the caller does not say how many.
const DEFAULT_PREVIEW: usize = 5;
/// Runs per page of the history when the caller does not say.
const DEFAULT_RUNS: usize = 20;
/// Most runs per page of the history: each run carries all its jobs.
const MAX_RUNS: usize = 100;
/// Most schedules listed without pagination (`paginate=false`); past it, 422.
const MAX_UNPAGED: usize = 1000;
/// Most jobs one page of the run history carries, over all its runs: a run can have
/// thousands of jobs, so the page ends early, and one run alone is cut at this many.
const MAX_RUN_JOBS: usize = 1000;
/// Most schedules one bulk delete may name.
const MAX_BULK: usize = 1000;

#[derive(OpenApi)]
#[openapi(
    paths(
        list,
        create,
        bulk_delete,
        show,
        update,
        delete_one,
        request_authorization,
        approve,
        cancel,
        occurrences,
        progress,
        runs
    ),
    components(schemas(
        ErrorBody,
        CreateBody,
        UpdateBody,
        ApproveBody,
        BulkDeleteBody,
        ScheduleView,
        ListResponse,
        RunsPage,
        OccurrencesView,
        AuthorizationRequested,
        BulkDeleted,
        TypeParam,
        FrequencyParam,
        crate::runner::diff::ChangesSummary,
        crate::runner::diff::ChangeGroup
    )),
    tags((name = "Scheduled scripts", description = "Scripts run on many sites at a future time, once or on a recurrence, after a second person approves them."))
)]
pub(super) struct Doc;

pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route(
            "/scripts/scheduled",
            get(list).post(create).delete(bulk_delete),
        )
        .route(
            "/scripts/scheduled/{id}",
            get(show).put(update).delete(delete_one),
        )
        .route(
            "/scripts/scheduled/{id}/authorize",
            get(request_authorization).post(approve),
        )
        .route("/scripts/scheduled/{id}/cancel", post(cancel))
        .route("/scripts/scheduled/{id}/occurrences", get(occurrences))
        .route("/scripts/scheduled/{id}/progress", get(progress))
        .route("/scripts/scheduled/{id}/runs", get(runs))
}

fn not_found(id: &str) -> ApiError {
    ApiError::from(StoreError::not_found("schedule", id))
}

/// The schedule, if it belongs to the caller's organization; any other is not found.
async fn owned(store: &Backend, id: &str, caller: &Caller) -> Result<ScheduledScript, ApiError> {
    match store.get_schedule(id).await {
        Ok(s) if s.organization == caller.org() => Ok(s),
        Ok(_) => Err(not_found(id)),
        Err(e) => Err(e.into()),
    }
}

/// The schedule as the API shows it, with the progress of its latest run and what it
/// changed.
async fn view(
    store: &Backend,
    s: ScheduledScript,
    now: DateTime<Utc>,
) -> Result<ScheduleView, ApiError> {
    let id = s.id.clone();
    let mut views = views(store, vec![s], now).await?;
    views
        .pop()
        .ok_or_else(|| ApiError::not_found(format!("schedule {id}")))
}

/// Several schedules as the API shows them; their latest runs are read in one snapshot,
/// from where each site stands rather than from the jobs themselves.
async fn views(
    store: &Backend,
    schedules: Vec<ScheduledScript>,
    now: DateTime<Utc>,
) -> Result<Vec<ScheduleView>, ApiError> {
    let ids: Vec<&str> = schedules.iter().map(|s| s.id.as_str()).collect();
    let latest = store.latest_runs(&ids).await?;
    let mut views = Vec::with_capacity(schedules.len());
    for (s, latest) in schedules.into_iter().zip(latest) {
        let progress = progress_of(store, &s, &latest).await?;
        let changes = crate::runner::diff::summarize_sites(
            latest
                .sites
                .iter()
                .map(|site| (site.site_id.as_str(), site.changes.as_ref())),
        );
        let mut view = ScheduleView::new(s, progress, now);
        view.changes = changes;
        views.push(view);
    }
    Ok(views)
}

/// Where the schedule's latest run stands, site by site; before the fleet is launched,
/// the sites its tags reach now are pending too.
async fn progress_of(
    store: &Backend,
    s: &ScheduledScript,
    latest: &crate::store::LatestRun,
) -> Result<model::Progress, ApiError> {
    let awaiting = latest
        .run
        .as_ref()
        .is_none_or(|r| r.awaiting_batches && r.finished_at.is_none());
    let mut tagged = Vec::new();
    if awaiting {
        for tag in &s.tags {
            tagged.extend(store.site_ids_with_tag(&s.organization, tag).await?);
        }
    }
    Ok(model::progress(s, latest, &tagged))
}

/// Where a scheduled script's latest run stands (seed 002): the sites it completed on,
/// failed on, and has still to finish (or reach), plus those skipped as offline.
#[utoipa::path(
    get,
    path = "/scripts/scheduled/{id}/progress",
    tag = "Scheduled scripts",
    params(("id" = String, Path, description = "Schedule id")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Site ids by outcome in the latest run; before the first launch every target is pending", body = model::Progress),
        (status = 401, description = "No valid bearer token", body = ErrorBody),
        (status = 403, description = "The token lacks script:view", body = ErrorBody),
        (status = 404, description = "No such schedule in your organization", body = ErrorBody),
    )
)]
async fn progress(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<model::Progress>, ApiError> {
    caller.require(scopes::SCRIPT_VIEW)?;
    let p = blocking(&state.store, move |store| async move {
        let s = owned(&store, &id, &caller).await?;
        let latest = store.latest_runs(&[s.id.as_str()]).await?;
        progress_of(&store, &s, latest.first().unwrap_or(&Default::default())).await
    })
    .await?;
    Ok(Json(p))
}

/// Every site named must be a site of the organization; a schedule must target something.
async fn check_targets(
    store: &Backend,
    org: &str,
    sites: &[String],
    tags: &[String],
    test_site: Option<&str>,
) -> Result<(), ApiError> {
    if sites.is_empty() && tags.is_empty() {
        return Err(ApiError::validation(
            "sites",
            "name at least one site (or a tag in `tags`)",
        ));
    }
    let known = async |id: &str| match store.get_site(id).await {
        Ok(site) => Ok(site.organization == org),
        Err(StoreError::NotFound { .. }) => Ok(false),
        Err(e) => Err(ApiError::from(e)),
    };
    for id in sites {
        if !known(id).await? {
            return Err(ApiError::validation(
                "sites",
                format!("no site `{id}` in your organization"),
            ));
        }
    }
    if let Some(id) = test_site
        && !known(id).await?
    {
        return Err(ApiError::validation(
            "test_site_id",
            format!("no site `{id}` in your organization"),
        ));
    }
    Ok(())
}

/// `rollback_after` in seconds, or 422 naming the field.
fn window(text: Option<&str>) -> Result<Option<u32>, ApiError> {
    text.map(crate::runner::rollback::parse_window)
        .transpose()
        .map_err(|m| ApiError::validation("rollback_after", m))
}

/// Every site named (and the test site) must be reached through a transport that can arm
/// a dead-man rollback; a site a tag brings in is checked when its job runs, and fails
/// there before anything is sent.
async fn check_rollback(
    state: &AppState,
    sites: &[String],
    test_site: Option<&str>,
) -> Result<(), ApiError> {
    for id in sites.iter().map(String::as_str).chain(test_site) {
        let site = state.store.get_site(id).await?;
        super::jobs::check_rollback(state, &site)?;
    }
    Ok(())
}

fn future(at: DateTime<Utc>, now: DateTime<Utc>) -> Result<(), ApiError> {
    if at <= now {
        return Err(ApiError::validation(
            "launch_at",
            format!("{} is not in the future", at.to_rfc3339()),
        ));
    }
    Ok(())
}

fn recurrence(
    spec: crate::scheduler::RecurrenceSpec,
) -> Result<crate::store::Recurrence, ApiError> {
    model::recurrence_of(spec).map_err(|e| {
        ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
            format!("recurrence.{e}"),
        )
    })
}

/// List scheduled scripts, paginated and filtered (seed 003).
#[utoipa::path(
    get,
    path = "/scripts/scheduled",
    tag = "Scheduled scripts",
    params(ListParams),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "A page of schedules in creation order", body = ListResponse),
        (status = 400, description = "A pagination field or filter is not valid; the message names it", body = ErrorBody),
        (status = 401, description = "No valid bearer token", body = ErrorBody),
        (status = 403, description = "The token lacks script:view", body = ErrorBody),
        (status = 422, description = "`paginate=false` and more than 1000 schedules match (`too_many_to_list`): ask for pages", body = ErrorBody),
    )
)]
async fn list(
    State(state): State<AppState>,
    caller: Caller,
    pairs: Result<Query<Vec<(String, String)>>, QueryRejection>,
) -> Result<Response, ApiError> {
    caller.require(scopes::SCRIPT_VIEW)?;
    let pairs = support::query(pairs)?;
    let query = ListQuery::parse(&pairs)?;
    let org = caller.org().to_owned();
    // The commit count is read before the store is: a page kept under it can only be
    // as new as what it says, or newer.
    let now = Utc::now();
    let generation = state.store.generation();
    let render = || async {
        let organization = org.clone();
        let data = blocking(&state.store, move |store| async move {
            list_data(&store, &organization, &query, now, MAX_UNPAGED).await
        })
        .await?;
        let body = serde_json::to_vec(&ListResponse {
            status: "ok".into(),
            message: "List of scheduled scripts".into(),
            data,
        })
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()))?;
        Ok::<_, ApiError>(Bytes::from(body))
    };
    // A store that cannot tell whether anything changed (one other engines write too)
    // keeps no pages: every listing is read and rendered anew.
    let page = match generation {
        Some(generation) => {
            let moment = pages::Moment {
                generation,
                second: now.timestamp(),
            };
            let key = serde_json::to_string(&pairs).unwrap_or_default();
            let slot = state.listings.slot(moment, &org, &key);
            slot.get_or_try_init(render).await?.clone()
        }
        None => render().await?,
    };
    Ok((
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        page,
    )
        .into_response())
}

/// A page of runs carrying at most `max_jobs` jobs over all of them: it ends before the
/// first run that no longer fits, and a first run too large alone is cut short
/// (`jobs_truncated`). `next_after` then points past the last run shown.
async fn runs_page(
    store: &Backend,
    id: &str,
    runs: Vec<crate::store::Run>,
    limit: usize,
    max_jobs: usize,
) -> Result<RunsPage, ApiError> {
    let full = runs.len() == limit;
    let mut budget = max_jobs;
    let mut views: Vec<RunView> = Vec::new();
    let mut ended_early = false;
    for run in runs {
        let (jobs, total) = store.run_jobs_limited(id, run.occurrence, budget).await?;
        if total > budget && !views.is_empty() {
            ended_early = true;
            break;
        }
        budget = budget.saturating_sub(jobs.len());
        let mut view = RunView::new(run, jobs);
        view.jobs_truncated = total > view.jobs.len();
        views.push(view);
    }
    let next_after = (full || ended_early)
        .then(|| views.last().map(|r| r.occurrence))
        .flatten();
    Ok(RunsPage {
        runs: views,
        next_after,
    })
}

/// One listing's data. Unpaged (`paginate=false`), it holds every match, so more than
/// `max_unpaged` matches are refused with 422 `too_many_to_list` rather than cut short: a
/// client can never take a partial list for the whole one.
async fn list_data(
    store: &Backend,
    org: &str,
    query: &ListQuery,
    now: DateTime<Utc>,
    max_unpaged: usize,
) -> Result<ListData, ApiError> {
    let (offset, limit) = match query.paging {
        Some((page, size)) => (page.saturating_sub(1).saturating_mul(size), size),
        // One past the cap is enough to know the cap is passed; no more is decoded.
        None => (0, max_unpaged.saturating_add(1)),
    };
    let listing = store
        .filter_schedules(org, &query.filter, offset, Some(limit))
        .await?;
    if query.paging.is_none() && listing.total > max_unpaged as u64 {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "too_many_to_list",
            format!(
                "{} schedules match, more than the {max_unpaged} listed without pagination; \
                 ask for pages (paginate=true&page_size=1000) or narrow the filters",
                listing.total
            ),
        ));
    }
    let registries = views(store, listing.items, now).await?;
    Ok(ListData {
        registries,
        paginate: query.paging.is_some(),
        page: query.paging.map(|(p, _)| p as u64),
        page_size: query.paging.map(|(_, s)| s as u64),
        total: listing.total,
        pages: query.paging.map(|(_, s)| listing.total.div_ceil(s as u64)),
    })
}

/// Schedule a script: it starts `unauthorized` until another user approves it.
#[utoipa::path(
    post,
    path = "/scripts/scheduled",
    tag = "Scheduled scripts",
    request_body = CreateBody,
    security(("bearer" = [])),
    responses(
        (status = 201, description = "The scheduled script, unauthorized", body = ScheduleView),
        (status = 400, description = "The body is not JSON", body = ErrorBody),
        (status = 401, description = "No valid bearer token", body = ErrorBody),
        (status = 403, description = "The token lacks script:create", body = ErrorBody),
        (status = 409, description = "A schedule with the same name already exists: <name>", body = ErrorBody),
        (status = 422, description = "A field is missing or not valid (launch_at in the past, an unknown site): `validation_failed`, naming it; the script has a syntax error: `script_syntax_error`, naming its line, column and message; the script has critical lint findings whose rule ids `acknowledged_risks` does not list: `risks_not_acknowledged`, naming each; `acknowledged_risks` names an unknown rule or one the script does not trigger at critical or high severity: `validation_failed`", body = ErrorBody),
        (status = 507, description = "The engine's disk is full; nothing was written", body = ErrorBody),
    )
)]
async fn create(
    State(state): State<AppState>,
    caller: Caller,
    body: Result<Json<CreateBody>, JsonRejection>,
) -> Result<(StatusCode, Json<ScheduleView>), ApiError> {
    caller.require(scopes::SCRIPT_CREATE)?;
    let Json(body) = body?;
    let now = Utc::now();
    let recurrence = body.recurrence.map(recurrence).transpose()?;
    if let Some(at) = body.launch_at {
        future(at, now)?;
    } else if recurrence.is_none() {
        return Err(ApiError::validation(
            "launch_at",
            "required (a future UTC time) unless a recurrence is given",
        ));
    }
    let (script, origin) = library_script(
        &state,
        &caller,
        LibraryChoice {
            script: body.script,
            template_id: body.template_id,
            template_version: body.template_version,
            variables: body.variables,
            community_script_id: body.community_script_id,
        },
    )
    .await?;
    let rollback_after_secs = window(body.rollback_after.as_deref())?;
    let input = ScheduleInput {
        rollback_after_secs,
        organization: caller.org().to_owned(),
        description: body.description,
        script,
        origin,
        sites: body.sites,
        tags: body.tags,
        excluded_sites: body.excluded_sites,
        launch_at: body.launch_at,
        recurrence,
        make_backup: body.make_backup,
        abort_if_offline: body.abort_if_offline,
        test_site_id: body.test_site_id,
        notify: body.notify,
        missed_runs: body.missed_runs.map(Into::into).unwrap_or_default(),
        acknowledged_risks: body.acknowledged_risks,
        created_by: caller.user_id().to_owned(),
        ..ScheduleInput::default()
    };
    let store = state.store.clone();
    let view = blocking(&store, move |store| async move {
        check_targets(
            &store,
            &input.organization,
            &input.sites,
            &input.tags,
            input.test_site_id.as_deref(),
        )
        .await?;
        if input.rollback_after_secs.is_some() {
            check_rollback(&state, &input.sites, input.test_site_id.as_deref()).await?;
        }
        let created = store.create_schedule(input, now).await?;
        view(&store, created, now).await
    })
    .await?;
    Ok((StatusCode::CREATED, Json(view)))
}

/// Where a new schedule's script comes from: given, or from the library.
pub(super) struct LibraryChoice {
    pub script: Option<String>,
    pub template_id: Option<String>,
    pub template_version: Option<u64>,
    pub variables: std::collections::BTreeMap<String, String>,
    pub community_script_id: Option<String>,
}

/// The script a schedule will run, with its origin when it comes from the library: a
/// template rendered with the caller's values (a private one of the caller's
/// organization, or a global one), or a community script as pinned. Exactly one source.
pub(super) async fn library_script(
    state: &AppState,
    caller: &Caller,
    choice: LibraryChoice,
) -> Result<(String, Option<crate::store::ScriptOrigin>), ApiError> {
    use crate::store::{CommunityStatus, ScriptOrigin};
    let given = [
        choice.script.is_some(),
        choice.template_id.is_some(),
        choice.community_script_id.is_some(),
    ]
    .iter()
    .filter(|g| **g)
    .count();
    if given != 1 {
        return Err(ApiError::validation(
            "script",
            "give exactly one of `script`, `template_id` and `community_script_id`",
        ));
    }
    let from_template = choice.template_id.is_some();
    if !from_template && (choice.template_version.is_some() || !choice.variables.is_empty()) {
        return Err(ApiError::validation(
            "template_id",
            "`template_version` and `variables` go with `template_id`",
        ));
    }
    if let Some(script) = choice.script {
        return Ok((script, None));
    }
    if let Some(id) = choice.template_id {
        let (version, content, variables) = match state.templates.get(&id) {
            Some(t) => match choice.template_version {
                None | Some(1) => (1, t.content, t.variables),
                Some(n) => {
                    return Err(ApiError::validation(
                        "template_version",
                        format!("global template {id} has only version 1, not {n}"),
                    ));
                }
            },
            None => {
                let org = caller.org().to_owned();
                let (id, wanted) = (id.clone(), choice.template_version);
                blocking(&state.store, move |store| async move {
                    let found = match wanted {
                        Some(n) => store
                            .template_version(&org, &id, n)
                            .await
                            .map(|v| (v.version, v.content, v.variables)),
                        None => store
                            .get_template(&org, &id)
                            .await
                            .map(|t| (t.version, t.content, t.variables)),
                    };
                    found.map_err(|e| match e {
                        StoreError::NotFound { .. } => ApiError::validation(
                            "template_id",
                            format!(
                                "no template {id}{} in your organization or among the global ones",
                                wanted.map(|n| format!(" version {n}")).unwrap_or_default()
                            ),
                        ),
                        other => other.into(),
                    })
                })
                .await?
            }
        };
        let script = crate::templates::render(&content, &variables, &choice.variables)
            .map_err(|e| ApiError::validation("variables", e))?;
        return Ok((
            script,
            Some(ScriptOrigin::Template {
                template_id: id,
                template_version: version,
                variables: choice.variables,
            }),
        ));
    }
    let id = choice.community_script_id.unwrap_or_default();
    let lookup = id.clone();
    let s = blocking(&state.store, move |store| async move {
        store
            .get_community_script(&lookup)
            .await
            .map_err(|e| match e {
                StoreError::NotFound { .. } => ApiError::validation(
                    "community_script_id",
                    format!("no community script {lookup}"),
                ),
                other => other.into(),
            })
    })
    .await?;
    match (s.status, s.fetched, s.sha256) {
        (CommunityStatus::Ready, Some(f), Some(sha256)) => Ok((
            f.content,
            Some(ScriptOrigin::Community {
                community_script_id: id,
                commit: f.commit,
                sha256,
            }),
        )),
        (status, _, _) => Err(ApiError::validation(
            "community_script_id",
            format!(
                "community script {id} is {}, not ready{}",
                match status {
                    CommunityStatus::Processing => "still processing",
                    CommunityStatus::Failed => "failed",
                    CommunityStatus::Ready => "incomplete",
                },
                s.failure.map(|f| format!(": {f}")).unwrap_or_default()
            ),
        )),
    }
}

/// Delete several scheduled scripts by id (seed 003): all of them, or none when one is
/// missing or launched.
#[utoipa::path(
    delete,
    path = "/scripts/scheduled",
    tag = "Scheduled scripts",
    request_body = BulkDeleteBody,
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Schedules successfully deleted", body = BulkDeleted),
        (status = 400, description = "The body is not JSON", body = ErrorBody),
        (status = 401, description = "No valid bearer token", body = ErrorBody),
        (status = 403, description = "The token lacks script:delete", body = ErrorBody),
        (status = 404, description = "An id names no schedule of your organization; nothing was deleted", body = ErrorBody),
        (status = 409, description = "A schedule is launched (cancel it first); nothing was deleted", body = ErrorBody),
        (status = 422, description = "The list is empty or too long", body = ErrorBody),
        (status = 507, description = "The engine's disk is full", body = ErrorBody),
    )
)]
async fn bulk_delete(
    State(state): State<AppState>,
    caller: Caller,
    body: Result<Json<BulkDeleteBody>, JsonRejection>,
) -> Result<Json<BulkDeleted>, ApiError> {
    caller.require(scopes::SCRIPT_DELETE)?;
    let Json(body) = body?;
    let mut ids = body.schedules_ids;
    ids.sort();
    ids.dedup();
    if ids.is_empty() {
        return Err(ApiError::validation(
            "schedules_ids",
            "name at least one id",
        ));
    }
    if ids.len() > MAX_BULK {
        return Err(ApiError::validation(
            "schedules_ids",
            format!("at most {MAX_BULK} ids at once"),
        ));
    }
    let deleted = blocking(&state.store, move |store| async move {
        for id in &ids {
            let s = owned(&store, id, &caller).await?;
            if s.status == crate::store::ScheduleStatus::Launched {
                return Err(ApiError::new(
                    StatusCode::CONFLICT,
                    "state_conflict",
                    format!("schedule {id} is launched; cancel it first. Nothing was deleted"),
                ));
            }
        }
        let now = Utc::now();
        for id in &ids {
            store.delete_schedule(id, caller.user_id(), now).await?;
        }
        Ok(ids)
    })
    .await?;
    Ok(Json(BulkDeleted {
        status: "ok".into(),
        message: "Schedules successfully deleted".into(),
        deleted,
    }))
}

/// One scheduled script, with the progress of its latest run.
#[utoipa::path(
    get,
    path = "/scripts/scheduled/{id}",
    tag = "Scheduled scripts",
    params(("id" = String, Path, description = "Schedule id")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The scheduled script, with what the linter finds in it (`lint`)", body = ScheduleView),
        (status = 401, description = "No valid bearer token", body = ErrorBody),
        (status = 403, description = "The token lacks script:view", body = ErrorBody),
        (status = 404, description = "No such schedule in your organization", body = ErrorBody),
    )
)]
async fn show(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<ScheduleView>, ApiError> {
    caller.require(scopes::SCRIPT_VIEW)?;
    let now = Utc::now();
    let mut view = blocking(&state.store, move |store| async move {
        let s = owned(&store, &id, &caller).await?;
        view(&store, s, now).await
    })
    .await?;
    view.lint = Some(crate::lint::lint(&view.script));
    Ok(Json(view))
}

/// Edit a scheduled script before its launch. Changing the script, its targets, launch
/// time, recurrence, test site, missed-run policy, backup or offline policy returns it to
/// `unauthorized`, and makes the editor one of those who may not approve it.
#[utoipa::path(
    put,
    path = "/scripts/scheduled/{id}",
    tag = "Scheduled scripts",
    params(("id" = String, Path, description = "Schedule id")),
    request_body = UpdateBody,
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The scheduled script as edited", body = ScheduleView),
        (status = 400, description = "The body is not JSON", body = ErrorBody),
        (status = 401, description = "No valid bearer token", body = ErrorBody),
        (status = 403, description = "The token lacks script:update", body = ErrorBody),
        (status = 404, description = "No such schedule in your organization", body = ErrorBody),
        (status = 409, description = "Launched, finished or cancelled schedules cannot be edited; or the new name is taken", body = ErrorBody),
        (status = 422, description = "A field is not valid (`validation_failed`, naming it); or the script or `acknowledged_risks` as edited break the lint policy, as on create: `script_syntax_error` (line, column, message), `risks_not_acknowledged` (each missing rule id), or `validation_failed` for an id that is no rule or not a critical or high finding of the script", body = ErrorBody),
        (status = 507, description = "The engine's disk is full", body = ErrorBody),
    )
)]
async fn update(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    body: Result<Json<UpdateBody>, JsonRejection>,
) -> Result<Json<ScheduleView>, ApiError> {
    caller.require(scopes::SCRIPT_UPDATE)?;
    let now = Utc::now();
    let store = state.store.clone();
    let view = blocking(&store, move |store| async move {
        // A schedule that is not the caller's is not found, whatever the body says.
        let current = owned(&store, &id, &caller).await?;
        let Json(body) = body?;
        if let Some(Some(at)) = body.launch_at {
            future(at, now)?;
        }
        let recurrence = match body.recurrence {
            Some(Some(spec)) => Some(Some(recurrence(spec)?)),
            Some(None) => Some(None),
            None => None,
        };
        let rollback_after_secs = match &body.rollback_after {
            Some(Some(text)) => Some(window(Some(text))?),
            Some(None) => Some(None),
            None => None,
        };
        let patch = SchedulePatch {
            rollback_after_secs,
            description: body.description,
            script: body.script,
            sites: body.sites,
            tags: body.tags,
            excluded_sites: body.excluded_sites,
            launch_at: body.launch_at,
            recurrence,
            make_backup: body.make_backup,
            abort_if_offline: body.abort_if_offline,
            test_site_id: body.test_site_id,
            notify: body.notify,
            missed_runs: body.missed_runs.map(Into::into),
            acknowledged_risks: body.acknowledged_risks,
            ..SchedulePatch::default()
        };
        if patch.sites.is_some() || patch.tags.is_some() || patch.test_site_id.is_some() {
            let sites = patch.sites.as_ref().unwrap_or(&current.sites);
            let tags = patch.tags.as_ref().unwrap_or(&current.tags);
            let test_site = match &patch.test_site_id {
                Some(t) => t.as_deref(),
                None => current.test_site_id.as_deref(),
            };
            check_targets(&store, caller.org(), sites, tags, test_site).await?;
        }
        let guarded = match patch.rollback_after_secs {
            Some(secs) => secs.is_some(),
            None => current.rollback_after_secs.is_some(),
        };
        if guarded {
            let sites = patch.sites.as_ref().unwrap_or(&current.sites);
            let test_site = match &patch.test_site_id {
                Some(t) => t.as_deref(),
                None => current.test_site_id.as_deref(),
            };
            check_rollback(&state, sites, test_site).await?;
        }
        let updated = store
            .update_schedule(&id, patch, caller.user_id(), now)
            .await?;
        view(&store, updated, now).await
    })
    .await?;
    Ok(Json(view))
}

/// Delete a scheduled script that is not launched (cancel a launched one first). Its run
/// history stays.
#[utoipa::path(
    delete,
    path = "/scripts/scheduled/{id}",
    tag = "Scheduled scripts",
    params(("id" = String, Path, description = "Schedule id")),
    security(("bearer" = [])),
    responses(
        (status = 204, description = "Deleted"),
        (status = 401, description = "No valid bearer token", body = ErrorBody),
        (status = 403, description = "The token lacks script:delete", body = ErrorBody),
        (status = 404, description = "No such schedule in your organization", body = ErrorBody),
        (status = 409, description = "The schedule is launched; cancel it first", body = ErrorBody),
        (status = 507, description = "The engine's disk is full", body = ErrorBody),
    )
)]
async fn delete_one(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    caller.require(scopes::SCRIPT_DELETE)?;
    blocking(&state.store, move |store| async move {
        owned(&store, &id, &caller).await?;
        store
            .delete_schedule(&id, caller.user_id(), Utc::now())
            .await?;
        Ok(())
    })
    .await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct AuthorizeQuery {
    /// The token of an approval link: answers the page that confirms the approval
    /// (it POSTs the token) instead of requesting authorization. A GET never approves.
    #[param(pattern = "^[A-Za-z0-9_-]{1,256}$")]
    token: Option<String>,
}

/// Request authorization (seed route): records the request and sends the recipients
/// (`notify`, or everyone in the organization) a single-use link that expires, with the
/// script's critical and high lint findings and its acknowledged risks. Opened with the
/// link's `token`, it answers a page that confirms the approval with a POST and, while
/// the token would still approve, shows those findings and risks.
#[utoipa::path(
    get,
    path = "/scripts/scheduled/{id}/authorize",
    tag = "Scheduled scripts",
    params(("id" = String, Path, description = "Schedule id"), AuthorizeQuery),
    security(("bearer" = []), ()),
    responses(
        (status = 200, description = "Authorization requested; or, with `token`, the confirm page", content(
            (AuthorizationRequested = "application/json"),
            (String = "text/html")
        )),
        (status = 400, description = "The query is not valid (a malformed token)", body = ErrorBody),
        (status = 401, description = "No valid bearer token (needed without `token`)", body = ErrorBody),
        (status = 403, description = "The token lacks script:create and script:update", body = ErrorBody),
        (status = 404, description = "No such schedule in your organization", body = ErrorBody),
        (status = 409, description = "Only an unauthorized schedule asks for approval", body = ErrorBody),
        (status = 422, description = "The schedule (stored before the lint policy) breaks it: a syntax error (`script_syntax_error`) or unacknowledged critical findings (`risks_not_acknowledged`); edit it first", body = ErrorBody),
        (status = 507, description = "The engine's disk is full", body = ErrorBody),
    )
)]
async fn request_authorization(
    State(state): State<AppState>,
    caller: Result<Caller, ApiError>,
    Path(id): Path<String>,
    query: Result<Query<AuthorizeQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let query = support::query(query)?;
    if let Some(token) = query.token {
        return confirm_page(&state.store, id, token).await;
    }
    let caller = caller?;
    let now = Utc::now();
    let data = blocking(&state.store, move |store| async move {
        let requested =
            approval::request_with(&*store, &id, &caller.0, now, approval::DEFAULT_LINK_TTL)
                .await?;
        Ok(AuthorizationRequestData {
            schedule: view(&store, requested.schedule, now).await?,
            recipients: requested.recipients,
            expires_at: requested.expires_at,
        })
    })
    .await?;
    Ok(Json(AuthorizationRequested {
        status: "ok".into(),
        message: format!(
            "Authorization requested; {} recipient(s) are sent a link to approve",
            data.recipients.len()
        ),
        data,
    })
    .into_response())
}

/// The page an approval link opens: it shows what the link is for and approves only
/// when its button POSTs the token with the approver's bearer token. The page needs no
/// authentication, so it shows the schedule's name, the linter's critical and high
/// findings and the acknowledged risks only while the token is one that would still
/// approve the schedule as it stands ([`approval::linked_with`]): the recipient
/// reviewing it. Any other token gets the page without them.
async fn confirm_page(
    store: &std::sync::Arc<Backend>,
    id: String,
    token: String,
) -> Result<Response, ApiError> {
    let plain = |s: &str, max: usize| {
        !s.is_empty()
            && s.len() <= max
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    };
    if !plain(&token, 256) {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_query",
            "token: not the token of an approval link",
        ));
    }
    if !plain(&id, crate::store::MAX_NAME_CHARS) {
        return Err(not_found(&id));
    }
    let (lookup_id, lookup_token) = (id.clone(), token.clone());
    let linked = blocking(store, move |store| async move {
        Ok(approval::linked_with(&*store, &lookup_id, &lookup_token, Utc::now()).await?)
    })
    .await?;
    let review = match linked {
        Some(s) => review_section(&s),
        None => "<p>This link does not show the script's details: it is not valid for the \
                 scheduled script as it stands (used, expired, or the script changed since \
                 it was sent).</p>"
            .to_owned(),
    };
    let (id, token) = (id.as_str(), token.as_str());
    let page = format!(
        r#"<!doctype html>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Approve scheduled script</title>
<h1>Approve scheduled script</h1>
<p>Scheduled script <code>{id}</code> is waiting for approval. Approving lets it run at its launch time on its sites.</p>
{review}
<form id="approve">
  <label>Your API token <input id="bearer" type="password" autocomplete="off" required></label>
  <button type="submit">Approve</button>
</form>
<p id="result" role="status"></p>
<p>Or from a shell:</p>
<pre>curl -X POST -H "Authorization: Bearer $YARDMASTER_TOKEN" -H "Content-Type: application/json" \
  -d '{{"token":"{token}"}}' "$YARDMASTER_URL/scripts/scheduled/{id}/authorize"</pre>
<script>
document.getElementById("approve").addEventListener("submit", async (event) => {{
  event.preventDefault();
  const out = document.getElementById("result");
  const bearer = document.getElementById("bearer").value.trim();
  const response = await fetch("/scripts/scheduled/{id}/authorize", {{
    method: "POST",
    headers: {{"Content-Type": "application/json", "Authorization": "Bearer " + bearer}},
    body: JSON.stringify({{token: "{token}"}}),
  }});
  const body = await response.json().catch(() => ({{}}));
  out.textContent = response.ok
    ? "Approved: \u201c" + body.description + "\u201d launches " + (body.t_minus || "as scheduled") + "."
    : "Not approved: " + (body.message || ("HTTP " + response.status));
}});
</script>
"#
    );
    let mut response = Html(page).into_response();
    let headers = response.headers_mut();
    // The URL carries the token: keep it out of caches and other sites' logs.
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert("referrer-policy", HeaderValue::from_static("no-referrer"));
    Ok(response)
}

/// What the confirm page shows the recipient of a valid link: the schedule's name and
/// version, the linter's critical and high findings, and the risks its author
/// acknowledged, which approving accepts.
fn review_section(s: &ScheduledScript) -> String {
    use crate::notify::escape_html as esc;
    let report = crate::lint::lint(&s.script);
    let findings = crate::lint::policy::shown_to_approvers(&report);
    let mut html = format!(
        "<section id=\"review\">\n<h2>{} (version {})</h2>\n",
        esc(&s.description),
        s.version
    );
    if findings.is_empty() {
        html.push_str(
            "<p id=\"findings\">The linter finds nothing critical or high in the script.</p>\n",
        );
    } else {
        html.push_str("<p>The linter's critical and high findings:</p>\n<table id=\"findings\">\n<tr><th>Severity</th><th>Rule</th><th>Line</th><th>Column</th><th>Message</th></tr>\n");
        for f in &findings {
            html.push_str(&format!(
                "<tr><td>{}</td><td><code>{}</code></td><td>{}</td><td>{}</td><td>{}</td></tr>\n",
                f.severity.as_str(),
                esc(&f.rule),
                f.line,
                f.column,
                esc(&f.message)
            ));
        }
        html.push_str("</table>\n");
    }
    if s.acknowledged_risks.is_empty() {
        html.push_str("<p id=\"acknowledged\">Acknowledged risks: none.</p>\n");
    } else {
        let ids: Vec<String> = s
            .acknowledged_risks
            .iter()
            .map(|id| format!("<code>{}</code>", esc(id)))
            .collect();
        html.push_str(&format!(
            "<p id=\"acknowledged\">Acknowledged risks (approving accepts them): {}</p>\n",
            ids.join(", ")
        ));
    }
    html.push_str("</section>");
    html
}

/// Approve a scheduled script. Always needs the `script:authorize` scope; nobody who
/// created it or edited what the approval covers may approve it (four eyes). The token of
/// an approval link in the body is optional proof of receipt, accepted only from the
/// user it was sent to.
#[utoipa::path(
    post,
    path = "/scripts/scheduled/{id}/authorize",
    tag = "Scheduled scripts",
    params(("id" = String, Path, description = "Schedule id")),
    request_body(content = Option<ApproveBody>, description = "Optional: the approval link's token"),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Approved: the schedule is `scheduled`", body = ScheduleView),
        (status = 400, description = "The body is not JSON, or could not be read", body = ErrorBody),
        (status = 401, description = "No valid bearer token", body = ErrorBody),
        (status = 413, description = "The body is larger than 2 MiB", body = ErrorBody),
        (status = 403, description = "The token lacks script:authorize; the caller created or edited the schedule; or the link is not valid for this schedule and caller", body = ErrorBody),
        (status = 404, description = "No such schedule in your organization", body = ErrorBody),
        (status = 409, description = "Only an unauthorized schedule can be approved", body = ErrorBody),
        (status = 410, description = "The approval link has expired", body = ErrorBody),
        (status = 422, description = "The schedule has no launch in the future; a body field is not valid; or the schedule breaks the lint policy (`script_syntax_error`, `risks_not_acknowledged`)", body = ErrorBody),
        (status = 507, description = "The engine's disk is full", body = ErrorBody),
    )
)]
async fn approve(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<ScheduleView>, ApiError> {
    let body = body.map_err(|e| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::new(e.status(), "body_too_large", e.body_text())
        } else {
            ApiError::new(StatusCode::BAD_REQUEST, "malformed_body", e.body_text())
        }
    })?;
    let body = if body.iter().all(u8::is_ascii_whitespace) {
        ApproveBody::default()
    } else {
        // `null` is no body too.
        serde_json::from_slice::<Option<ApproveBody>>(&body)
            .map(Option::unwrap_or_default)
            .map_err(|e| {
                if e.is_data() {
                    ApiError::new(
                        StatusCode::UNPROCESSABLE_ENTITY,
                        "validation_failed",
                        format!("body: {e}"),
                    )
                } else {
                    ApiError::new(
                        StatusCode::BAD_REQUEST,
                        "malformed_json",
                        format!("the body is not JSON: {e}"),
                    )
                }
            })?
    };
    let now = Utc::now();
    let policy = state
        .organizations
        .get(&caller.0.organization)
        .copied()
        .unwrap_or_default();
    let view = blocking(&state.store, move |store| async move {
        let approved =
            approval::approve_with(&*store, &id, &caller.0, body.token.as_deref(), policy, now)
                .await?;
        view(&store, approved.schedule, now).await
    })
    .await?;
    Ok(Json(view))
}

/// Cancel a scheduled script that has not finished; a launched one stops before the
/// jobs it has not started.
#[utoipa::path(
    post,
    path = "/scripts/scheduled/{id}/cancel",
    tag = "Scheduled scripts",
    params(("id" = String, Path, description = "Schedule id")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Cancelled", body = ScheduleView),
        (status = 401, description = "No valid bearer token", body = ErrorBody),
        (status = 403, description = "The token lacks script:update and script:delete", body = ErrorBody),
        (status = 404, description = "No such schedule in your organization", body = ErrorBody),
        (status = 409, description = "The schedule has already finished or been cancelled", body = ErrorBody),
        (status = 507, description = "The engine's disk is full", body = ErrorBody),
    )
)]
async fn cancel(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<ScheduleView>, ApiError> {
    let now = Utc::now();
    let view = blocking(&state.store, move |store| async move {
        let cancelled = approval::cancel_with(&*store, &id, &caller.0, now).await?;
        view(&store, cancelled, now).await
    })
    .await?;
    Ok(Json(view))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct PreviewQuery {
    /// How many occurrences, 1 to 1000 (default 5).
    #[param(minimum = 1, maximum = 1000, value_type = Option<u32>)]
    count: Option<String>,
}

/// A whole number in `min..=max` from a query parameter; anything else (an empty value
/// too) is a 400 naming it.
fn whole(
    param: &str,
    value: Option<&str>,
    default: u64,
    min: u64,
    max: u64,
) -> Result<u64, ApiError> {
    let Some(value) = value else {
        return Ok(default);
    };
    match value.trim().parse::<u64>() {
        Ok(n) if (min..=max).contains(&n) => Ok(n),
        _ => Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_query",
            format!("{param}: `{value}` is not a whole number from {min} to {max}"),
        )),
    }
}

/// The next launches of a scheduled script: its recurrence's next occurrences, or its
/// `launch_at` while that is ahead. A cancelled or finished schedule has none.
#[utoipa::path(
    get,
    path = "/scripts/scheduled/{id}/occurrences",
    tag = "Scheduled scripts",
    params(("id" = String, Path, description = "Schedule id"), PreviewQuery),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Upcoming occurrences, earliest first", body = OccurrencesView),
        (status = 400, description = "`count` is not from 1 to 1000", body = ErrorBody),
        (status = 401, description = "No valid bearer token", body = ErrorBody),
        (status = 403, description = "The token lacks script:view", body = ErrorBody),
        (status = 404, description = "No such schedule in your organization", body = ErrorBody),
    )
)]
async fn occurrences(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    query: Result<Query<PreviewQuery>, QueryRejection>,
) -> Result<Json<OccurrencesView>, ApiError> {
    caller.require(scopes::SCRIPT_VIEW)?;
    let query = support::query(query)?;
    let count = whole(
        "count",
        query.count.as_deref(),
        DEFAULT_PREVIEW as u64,
        1,
        crate::scheduler::MAX_PREVIEW as u64,
    )? as usize;
    let now = Utc::now();
    let s = blocking(&state.store, move |store| async move {
        owned(&store, &id, &caller).await
    })
    .await?;
    use crate::store::ScheduleStatus as S;
    let over = matches!(
        s.status,
        S::Cancelled | S::Completed | S::Failed | S::PartiallyFailed
    );
    let mut upcoming = Vec::new();
    if !over {
        match &s.recurrence {
            Some(rule) => {
                let rule = approval::scheduler_rule(rule)?;
                upcoming.extend(
                    rule.preview(now, count)
                        .into_iter()
                        .map(|o| (o.index, o.at)),
                );
            }
            None => {
                if let Some(at) = s.launch_at.filter(|at| *at > now) {
                    upcoming.push((0, at));
                }
            }
        }
    }
    Ok(Json(OccurrencesView {
        schedule_id: s.id,
        occurrences: upcoming
            .into_iter()
            .map(|(index, at)| OccurrenceView {
                index,
                at,
                t_minus: crate::scheduler::t_minus(now, at),
            })
            .collect(),
    }))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct RunsQuery {
    /// Only runs after this occurrence number (the previous page's `next_after`).
    #[param(value_type = Option<i64>, minimum = 0)]
    after: Option<String>,
    /// Runs per page, 1 to 100 (default 20).
    #[param(minimum = 1, maximum = 100, value_type = Option<u32>)]
    limit: Option<String>,
}

/// The run history of a scheduled script, oldest occurrence first, each run with its
/// jobs: site, status, timestamps and error. A page carries at most 1000 jobs over all
/// its runs: it ends early (follow `next_after`), and a run with more lists its first
/// 1000 with `jobs_truncated`.
#[utoipa::path(
    get,
    path = "/scripts/scheduled/{id}/runs",
    tag = "Scheduled scripts",
    params(("id" = String, Path, description = "Schedule id"), RunsQuery),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "A page of runs", body = RunsPage),
        (status = 400, description = "`after` or `limit` is not valid", body = ErrorBody),
        (status = 401, description = "No valid bearer token", body = ErrorBody),
        (status = 403, description = "The token lacks script:view", body = ErrorBody),
        (status = 404, description = "No such schedule in your organization", body = ErrorBody),
    )
)]
async fn runs(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    query: Result<Query<RunsQuery>, QueryRejection>,
) -> Result<Json<RunsPage>, ApiError> {
    caller.require(scopes::SCRIPT_VIEW)?;
    let query = support::query(query)?;
    let limit = whole(
        "limit",
        query.limit.as_deref(),
        DEFAULT_RUNS as u64,
        1,
        MAX_RUNS as u64,
    )? as usize;
    let after = match query.after.as_deref() {
        Some(after) => Some(whole("after", Some(after), 0, 0, i64::MAX as u64)?),
        None => None,
    };
    let page = blocking(&state.store, move |store| async move {
        owned(&store, &id, &caller).await?;
        let runs = store.list_runs(&id, &Page { limit, after }).await?;
        runs_page(&store, &id, runs, limit, MAX_RUN_JOBS).await
    })
    .await?;
    Ok(Json(page))
}
