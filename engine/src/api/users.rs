//! Users: `GET/POST /users`, `GET/DELETE /users/{id}`, the people of an organization
//! (id, name, email). A user's id is the `sub` of their tokens, and names a user only
//! within the token's organization (`org`): `bob` of one organization and `bob` of
//! another are two users, neither visible to the other. Schedules name users as `notify`
//! recipients, and notifications (approval links among them) go to their email.
//!
//! Scopes: reading needs only a valid token of the organization, since anyone who
//! schedules a script must be able to pick its recipients. Adding or removing a user
//! needs `site:manage`: an organization's users receive its approval links, so this is
//! an administrator's act, and the holders of `site:manage` already decide where the
//! organization's scripts run and with which credentials.
//!
//! Every lookup is within the caller's organization, so another organization's user
//! answers exactly as an id that never existed: 404 to read or remove it, and creating
//! the same id succeeds (409 only for an id the caller's own organization already has).

use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::error::ErrorBody;
use super::support::{Paging, blocking, json_body, query};
use super::{ApiError, AppState, Caller};
use crate::auth::scopes::SITE_MANAGE;
use crate::store::backend::Approvals;
use crate::store::{MAX_NAME_CHARS, Operations, StoreError, User};

/// Longest email address (RFC 5321's path limit).
const MAX_EMAIL_CHARS: usize = 254;

/// A user as the API shows it.
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct UserView {
    /// The `sub` of the user's tokens.
    id: String,
    name: String,
    email: String,
    organization: String,
    created_at: DateTime<Utc>,
}

impl From<User> for UserView {
    fn from(u: User) -> UserView {
        UserView {
            id: u.id,
            name: u.name,
            email: u.email,
            organization: u.organization,
            created_at: u.created_at,
        }
    }
}

/// A new user of the caller's organization.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct NewUser {
    /// The `sub` of the user's tokens; a new id is made when absent.
    #[schema(max_length = 200)]
    id: Option<String>,
    #[schema(max_length = 200)]
    name: String,
    #[schema(max_length = 254)]
    email: String,
}

impl NewUser {
    fn into_user(self, organization: &str, now: DateTime<Utc>) -> Result<User, ApiError> {
        let id = match self.id {
            Some(id) => {
                check_text("id", &id, MAX_NAME_CHARS)?;
                id
            }
            None => new_user_id(),
        };
        check_text("name", &self.name, MAX_NAME_CHARS)?;
        let email = self.email.trim().to_owned();
        check_text("email", &email, MAX_EMAIL_CHARS)?;
        let valid = email.split_once('@').is_some_and(|(local, domain)| {
            !local.is_empty()
                && !domain.is_empty()
                && !domain.contains('@')
                && !email.chars().any(|c| c.is_whitespace() || c.is_control())
        });
        if !valid {
            return Err(ApiError::validation(
                "email",
                "must be an email address like ada@example.com",
            ));
        }
        Ok(User {
            id,
            name: self.name.trim().to_owned(),
            email,
            organization: organization.to_owned(),
            created_at: now,
        })
    }
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

/// A random id in the form of a UUID (version 4).
fn new_user_id() -> String {
    use ring::rand::SecureRandom;
    let mut bytes = [0u8; 16];
    // The system's random source does not fail on the platforms the engine supports;
    // should it, the id is still unique enough with the clock folded in.
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

/// One page of users.
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct UserPage {
    data: Vec<UserView>,
    page: usize,
    page_size: usize,
    /// Users matching the filter in all pages.
    total: usize,
}

/// Filter of `GET /users`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(super) struct UserFilter {
    /// Keeps the users whose name or email contains this, ignoring case.
    name: Option<String>,
}

#[utoipa::path(
    get,
    path = "/users",
    tag = "users",
    summary = "List the organization's users",
    description = "Users in name order, a page at a time. Any valid token of the organization may read them.",
    params(Paging, UserFilter),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "One page of users", body = UserPage),
        (status = 400, description = "Bad paging or filter parameters", body = ErrorBody),
        (status = 401, description = "No valid bearer token", body = ErrorBody),
    )
)]
async fn list(
    caller: Caller,
    State(state): State<AppState>,
    paging: Result<Query<Paging>, QueryRejection>,
    filter: Result<Query<UserFilter>, QueryRejection>,
) -> Result<Json<UserPage>, ApiError> {
    let (page, page_size, offset) = query(paging)?.resolve()?;
    let needle = query(filter)?.name.map(|n| n.to_lowercase());
    let org = caller.org().to_owned();
    let mut users = blocking(&state.store, move |store| async move {
        store.organization_users(&org).await.map_err(ApiError::from)
    })
    .await?;
    if let Some(needle) = needle.filter(|n| !n.is_empty()) {
        users.retain(|u| {
            u.name.to_lowercase().contains(&needle) || u.email.to_lowercase().contains(&needle)
        });
    }
    users.sort_by(|a, b| a.name.cmp(&b.name).then_with(|| a.id.cmp(&b.id)));
    let total = users.len();
    let data = users
        .into_iter()
        .skip(offset)
        .take(page_size)
        .map(UserView::from)
        .collect();
    Ok(Json(UserPage {
        data,
        page,
        page_size,
        total,
    }))
}

#[utoipa::path(
    post,
    path = "/users",
    tag = "users",
    summary = "Add a user to the organization",
    description = "Needs `site:manage`: the organization's users receive its notifications, approval links among them.",
    request_body = NewUser,
    security(("bearer" = [])),
    responses(
        (status = 201, description = "The user", body = UserView),
        (status = 400, description = "The body is not JSON", body = ErrorBody),
        (status = 401, description = "No valid bearer token", body = ErrorBody),
        (status = 403, description = "The token lacks `site:manage`", body = ErrorBody),
        (status = 409, description = "The organization has a user with that id", body = ErrorBody),
        (status = 413, description = "The body is too large", body = ErrorBody),
        (status = 422, description = "A field is missing or wrong; the message names it", body = ErrorBody),
    )
)]
async fn create(
    caller: Caller,
    State(state): State<AppState>,
    body: Result<Json<NewUser>, JsonRejection>,
) -> Result<(StatusCode, Json<UserView>), ApiError> {
    caller.require(SITE_MANAGE)?;
    let user = json_body(body)?.into_user(caller.org(), Utc::now())?;
    let stored = user.clone();
    let created = blocking(&state.store, move |store| async move {
        store.create_user(&stored).await.map_err(ApiError::from)
    })
    .await?;
    if !created {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "user_exists",
            format!(
                "your organization already has a user with the id `{}`",
                user.id
            ),
        ));
    }
    tracing::info!(user = %user.id, actor = caller.user_id(), "user added");
    Ok((StatusCode::CREATED, Json(user.into())))
}

#[utoipa::path(
    get,
    path = "/users/{id}",
    tag = "users",
    summary = "Show a user",
    description = "Any valid token of the organization may read it.",
    params(("id" = String, Path, description = "User id (the `sub` of their tokens)")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The user", body = UserView),
        (status = 401, description = "No valid bearer token", body = ErrorBody),
        (status = 404, description = "No such user in the organization", body = ErrorBody),
    )
)]
async fn show(
    caller: Caller,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<UserView>, ApiError> {
    let org = caller.org().to_owned();
    let user = blocking(&state.store, move |store| async move {
        match store.get_user(&org, &id).await {
            Ok(user) => Ok(user),
            Err(StoreError::NotFound { .. }) => Err(no_such_user(&id)),
            Err(e) => Err(e.into()),
        }
    })
    .await?;
    Ok(Json(user.into()))
}

/// The one answer for an id the caller's organization does not have, whether or not
/// another organization has it.
fn no_such_user(id: &str) -> ApiError {
    ApiError::not_found(format!("no user {id} in your organization"))
}

#[utoipa::path(
    delete,
    path = "/users/{id}",
    tag = "users",
    summary = "Remove a user from the organization",
    description = "Needs `site:manage`. The user's tokens keep verifying until they expire (tokens are not stored), but the user no longer receives the organization's notifications.",
    params(("id" = String, Path, description = "User id (the `sub` of their tokens)")),
    security(("bearer" = [])),
    responses(
        (status = 204, description = "Removed"),
        (status = 401, description = "No valid bearer token", body = ErrorBody),
        (status = 403, description = "The token lacks `site:manage`", body = ErrorBody),
        (status = 404, description = "No such user in the organization", body = ErrorBody),
    )
)]
async fn remove(
    caller: Caller,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    caller.require(SITE_MANAGE)?;
    let org = caller.org().to_owned();
    let user = id.clone();
    let removed = blocking(&state.store, move |store| async move {
        store.delete_user(&org, &user).await.map_err(ApiError::from)
    })
    .await?;
    if !removed {
        return Err(no_such_user(&id));
    }
    tracing::info!(user = %id, actor = caller.user_id(), "user removed");
    Ok(StatusCode::NO_CONTENT)
}

#[derive(utoipa::OpenApi)]
#[openapi(
    paths(list, create, show, remove),
    components(schemas(ErrorBody, UserView, NewUser, UserPage)),
    tags((name = "users", description = "The people of the organization: notification recipients and approvers."))
)]
pub(super) struct Doc;

pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route("/users", get(list).post(create))
        .route("/users/{id}", get(show).delete(remove))
}

#[cfg(test)]
mod tests {
    use axum::http::StatusCode;
    use serde_json::json;

    use super::super::sites::testing::{call, json};
    use crate::api::test_support::state;
    use crate::store::Operations;

    #[tokio::test]
    async fn create_list_show_with_scopes_and_organizations() {
        let t = state();
        let admin = t.token("alice", "acme", &["site:manage"]);
        let reader = t.token("bob", "acme", &["script:view"]);
        let body = json!({"id": "auth0|ada", "name": "Ada", "email": "ada@example.com"});

        let (status, err, _) = json(&t.state, "POST", "/users", None, Some(&body)).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        assert_eq!(err["code"], "missing_token");
        let (status, err, _) = json(&t.state, "POST", "/users", Some(&reader), Some(&body)).await;
        assert_eq!(status, StatusCode::FORBIDDEN);
        assert_eq!(err["code"], "missing_scope");

        let (status, user, text) =
            json(&t.state, "POST", "/users", Some(&admin), Some(&body)).await;
        assert_eq!(status, StatusCode::CREATED, "{text}");
        assert_eq!(user["organization"], "acme");
        let (status, _, _) = json(
            &t.state,
            "POST",
            "/users",
            Some(&admin),
            Some(&json!({"name": "Grace", "email": "grace@example.com"})),
        )
        .await;
        assert_eq!(status, StatusCode::CREATED);

        let (status, shown, _) =
            json(&t.state, "GET", "/users/auth0%7Cada", Some(&reader), None).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(shown, user);
        let (status, page, _) =
            json(&t.state, "GET", "/users?name=GRACE", Some(&reader), None).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(page["total"], 1);
        assert_eq!(page["data"][0]["email"], "grace@example.com");
        let (status, _, _) = json(&t.state, "GET", "/users", None, None).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);

        let other = t.token("mallory", "globex", &["site:manage"]);
        let (status, err, text) =
            json(&t.state, "GET", "/users/auth0%7Cada", Some(&other), None).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert_eq!(err["code"], "not_found");
        assert!(!text.contains("ada@example.com"));
        let (_, page, _) = json(&t.state, "GET", "/users", Some(&other), None).await;
        assert_eq!(page["total"], 0);
        let (status, _, _) = json(&t.state, "GET", "/users", None, None).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
    }

    #[tokio::test]
    async fn the_same_id_in_another_organization_is_another_user() {
        let t = state();
        let acme = t.token("alice", "acme", &["site:manage"]);
        let globex = t.token("mallory", "globex", &["site:manage"]);
        let ada = json!({"id": "bob", "name": "Bob Acme", "email": "bob@acme.example"});
        let (status, _, text) = json(&t.state, "POST", "/users", Some(&acme), Some(&ada)).await;
        assert_eq!(status, StatusCode::CREATED, "{text}");

        // What globex sees of acme's `bob` is what it sees of an id no one has.
        for (method, status) in [
            ("GET", StatusCode::NOT_FOUND),
            ("DELETE", StatusCode::NOT_FOUND),
        ] {
            let (got, taken, taken_text) =
                json(&t.state, method, "/users/bob", Some(&globex), None).await;
            let (never_status, never, _) =
                json(&t.state, method, "/users/nobody", Some(&globex), None).await;
            assert_eq!(got, status, "{method}: {taken_text}");
            assert_eq!(never_status, status);
            assert_eq!(taken["code"], never["code"]);
            assert_eq!(
                taken["message"]
                    .as_str()
                    .map(|m| m.replace("bob", "nobody")),
                never["message"].as_str().map(str::to_owned)
            );
            assert!(!taken_text.contains("acme"), "{taken_text}");
        }

        // Creating `bob` in globex succeeds, and each organization sees only its own.
        let mine = json!({"id": "bob", "name": "Bob Globex", "email": "bob@globex.example"});
        let (status, created, text) =
            json(&t.state, "POST", "/users", Some(&globex), Some(&mine)).await;
        assert_eq!(status, StatusCode::CREATED, "{text}");
        assert_eq!(created["organization"], "globex");
        let (_, shown, _) = json(&t.state, "GET", "/users/bob", Some(&acme), None).await;
        assert_eq!(shown["email"], "bob@acme.example");
        let (_, shown, text) = json(&t.state, "GET", "/users/bob", Some(&globex), None).await;
        assert_eq!(shown["email"], "bob@globex.example");
        assert!(!text.contains("acme"), "{text}");
        let (_, page, text) = json(&t.state, "GET", "/users", Some(&globex), None).await;
        assert_eq!(page["total"], 1);
        assert!(!text.contains("acme"), "{text}");

        // A second `bob` in the same organization is a conflict, and changes nothing.
        let again = json!({"id": "bob", "name": "Mallory", "email": "m@evil.example"});
        let (status, err, _) = json(&t.state, "POST", "/users", Some(&globex), Some(&again)).await;
        assert_eq!(status, StatusCode::CONFLICT);
        assert_eq!(err["code"], "user_exists");
        assert_eq!(
            t.state
                .store
                .get_user("globex", "bob")
                .await
                .expect("user")
                .name,
            "Bob Globex"
        );

        // Removing globex's `bob` leaves acme's.
        let (status, _, _) = json(&t.state, "DELETE", "/users/bob", Some(&globex), None).await;
        assert_eq!(status, StatusCode::NO_CONTENT);
        let (status, _, _) = json(&t.state, "GET", "/users/bob", Some(&globex), None).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert_eq!(
            t.state
                .store
                .get_user("acme", "bob")
                .await
                .expect("user")
                .email,
            "bob@acme.example"
        );
        let reader = t.token("carol", "acme", &["script:view", "site:view"]);
        let (status, err, _) = json(&t.state, "DELETE", "/users/bob", Some(&reader), None).await;
        assert_eq!(status, StatusCode::FORBIDDEN);
        assert_eq!(err["code"], "missing_scope");
        assert!(t.state.store.get_user("acme", "bob").await.is_ok());
    }

    #[tokio::test]
    async fn bad_bodies() {
        let t = state();
        let admin = t.token("alice", "acme", &["site:manage"]);
        let (status, err, _) = call(
            &t.state,
            "POST",
            "/users",
            Some(&admin),
            Some("application/json"),
            "{",
        )
        .await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_eq!(err["code"], "malformed_json");
        for (body, field) in [
            (json!({"name": "Ada", "email": "not-an-address"}), "email"),
            (json!({"name": " ", "email": "a@b.c"}), "name"),
            (json!({"id": "", "name": "Ada", "email": "a@b.c"}), "id"),
        ] {
            let (status, err, text) =
                json(&t.state, "POST", "/users", Some(&admin), Some(&body)).await;
            assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{text}");
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
            "/users",
            Some(&admin),
            Some(&json!({"name": "Ada"})),
        )
        .await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
        assert!(
            err["message"]
                .as_str()
                .unwrap_or_default()
                .contains("email")
        );
    }
}
