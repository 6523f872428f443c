//! Route tests of the scheduled-script API through `oneshot`: fields, validation, the
//! authorization matrix (each scope, each organization, four eyes, links), listing.

use axum::body::Body;
use axum::http::{Request, StatusCode};
use chrono::{TimeDelta, Utc};
use serde_json::{Value, json};
use tower::ServiceExt;

use crate::api::test_support::{TestState, state};
use crate::auth::scopes;
use crate::store::{JobTransition, LaunchPlan, Operations, SiteInput};

const ALL: &[&str] = &[
    scopes::SCRIPT_VIEW,
    scopes::SCRIPT_CREATE,
    scopes::SCRIPT_UPDATE,
    scopes::SCRIPT_DELETE,
    scopes::SCRIPT_AUTHORIZE,
];

struct World {
    t: TestState,
    /// Sites of `acme`.
    sites: Vec<String>,
    /// A site of `globex`.
    foreign_site: String,
}

async fn world() -> World {
    let t = state();
    let now = Utc::now();
    let site = async |org: &str, name: &str| {
        t.state
            .store
            .create_site(
                SiteInput {
                    organization: org.into(),
                    name: name.into(),
                    address: "127.0.0.1".into(),
                    port: Some(8728),
                    transport: "routeros-api".into(),
                    username: "admin".into(),
                    password: None,
                    tls: Default::default(),
                    tags: vec!["edge".into()],
                    private_key: None,
                    private_key_passphrase: None,
                    ssh: None,
                },
                now,
            )
            .await
            .expect("site")
            .id
    };
    let mut sites = Vec::new();
    for i in 0..3 {
        sites.push(site("acme", &format!("r{i}")).await);
    }
    let foreign_site = site("globex", "g0").await;
    World {
        t,
        sites,
        foreign_site,
    }
}

impl World {
    fn token(&self, sub: &str, org: &str, scopes: &[&str]) -> String {
        self.t.token(sub, org, scopes)
    }

    fn alice(&self) -> String {
        self.token("alice", "acme", ALL)
    }

    fn bob(&self) -> String {
        self.token("bob", "acme", ALL)
    }

    async fn raw(
        &self,
        method: &str,
        uri: &str,
        token: Option<&str>,
        body: Option<String>,
    ) -> (StatusCode, Value, String) {
        let mut request = Request::builder().method(method).uri(uri);
        if let Some(token) = token {
            request = request.header("authorization", format!("Bearer {token}"));
        }
        let body = match body {
            Some(b) => {
                request = request.header("content-type", "application/json");
                Body::from(b)
            }
            None => Body::empty(),
        };
        let response = crate::api::app(self.t.state.clone())
            .oneshot(request.body(body).expect("request"))
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

    async fn call(
        &self,
        method: &str,
        uri: &str,
        token: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let (status, json, _) = self
            .raw(method, uri, Some(token), body.map(|b| b.to_string()))
            .await;
        (status, json)
    }

    fn body(&self, name: &str) -> Value {
        json!({
            "description": name,
            "script": ":log info \"hello\"",
            "launch_at": Utc::now() + TimeDelta::hours(1),
            "sites": self.sites,
            "notify": ["bob"],
            "test_site_id": self.sites[0],
            "make_backup": true,
            "abort_if_offline": true,
        })
    }

    /// A schedule created by alice; its id.
    async fn create(&self, name: &str) -> String {
        let (status, body) = self
            .call(
                "POST",
                "/scripts/scheduled",
                &self.alice(),
                Some(self.body(name)),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        body["id"].as_str().expect("id").to_owned()
    }

    /// Approves `id` as bob.
    async fn approve(&self, id: &str) {
        let uri = format!("/scripts/scheduled/{id}/authorize");
        let (status, body) = self.call("POST", &uri, &self.bob(), None).await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }

    /// The token of the latest approval link sent for `id` to bob, read from the outbox.
    fn link_token(&self, id: &str) -> String {
        self.link_token_for(id, "bob")
    }

    /// The token of the latest approval link sent for `id` to `user`.
    fn link_token_for(&self, id: &str, user: &str) -> String {
        let events = self
            .t
            .state
            .store
            .as_redb()
            .expect("redb")
            .due_events(Utc::now() + TimeDelta::days(1), 1000)
            .expect("events");
        let link = events
            .iter()
            .rev()
            .filter(|e| e.kind == crate::approval::EVENT_REQUESTED)
            .find(|e| e.payload["schedule_id"] == id)
            .and_then(|e| e.payload["links"][user].as_str().map(str::to_owned))
            .expect("an approval link in the outbox");
        link.split_once("token=")
            .expect("token in link")
            .1
            .to_owned()
    }
}

fn assert_error(status: StatusCode, body: &Value, want: u16, code: &str) {
    assert_eq!(status.as_u16(), want, "{body}");
    assert_eq!(body["code"], code, "{body}");
    for field in ["type", "message", "doc_url"] {
        assert!(body[field].is_string(), "{field} missing in {body}");
    }
}

#[tokio::test]
async fn create_answers_every_seed_field_and_show_reads_it_back() {
    let w = world().await;
    let (status, created) = w
        .call(
            "POST",
            "/scripts/scheduled",
            &w.alice(),
            Some(w.body("Nightly BGP peer maintenance")),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    for field in [
        "id",
        "created_by",
        "test_site_id",
        "make_backup",
        "abort_if_offline",
        "description",
        "summary",
        "script",
        "status",
        "authorized_at",
        "authorized_by",
        "cancelled_at",
        "launch_at",
        "t_minus",
        "started_at",
        "sites",
        "notify",
        "progress",
        "recurrence",
        "created_at",
        "updated_at",
    ] {
        assert!(created.get(field).is_some(), "{field} missing in {created}");
    }
    assert_eq!(created["status"], "unauthorized");
    assert_eq!(created["created_by"], "alice");
    assert_eq!(created["make_backup"], true);
    assert_eq!(created["test_site_id"], w.sites[0].as_str());
    assert!(created["authorized_at"].is_null());
    assert!(
        created["t_minus"]
            .as_str()
            .expect("t_minus")
            .starts_with("in ")
    );
    let progress = &created["progress"];
    for list in ["completed", "failed", "pending", "skipped"] {
        assert!(progress[list].is_array(), "{list} in {progress}");
    }
    assert_eq!(progress["pending"].as_array().map(Vec::len), Some(3));
    assert_eq!(progress["counts"]["total"], 3);

    let id = created["id"].as_str().expect("id");
    let (status, shown) = w
        .call(
            "GET",
            &format!("/scripts/scheduled/{id}"),
            &w.token("carol", "acme", &[scopes::SCRIPT_VIEW]),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(shown["description"], "Nightly BGP peer maintenance");
    assert_eq!(shown["script"], created["script"]);
}

#[tokio::test]
async fn bad_bodies_are_400_or_422_naming_the_field() {
    let w = world().await;
    let alice = w.alice();
    let (status, body, _) = w
        .raw(
            "POST",
            "/scripts/scheduled",
            Some(&alice),
            Some("{\"description\": ".into()),
        )
        .await;
    assert_error(status, &body, 400, "malformed_json");

    let cases: Vec<(Value, &str)> = vec![
        (
            json!({"launch_at": Utc::now() - TimeDelta::minutes(1)}),
            "launch_at",
        ),
        (json!({"launch_at": null}), "launch_at"),
        (json!({"description": ""}), "description"),
        (json!({"script": "  "}), "script"),
        (json!({"sites": ["no-such-site"]}), "sites"),
        (json!({"sites": [w.foreign_site]}), "sites"),
        (json!({"sites": []}), "sites"),
        (json!({"test_site_id": w.foreign_site}), "test_site_id"),
        (json!({"launch_at": "tomorrow"}), "launch_at"),
        (json!({"colour": "blue"}), "colour"),
        (
            json!({"recurrence": {"schedule_type": "DAILY", "start_date": "2030-01-01", "start_time": "04:00", "timezone": "Mars/Olympus"}}),
            "recurrence.timezone",
        ),
        (
            json!({"recurrence": {"schedule_type": "WEEKLY", "start_date": "2030-01-01", "start_time": "04:00"}}),
            "recurrence.days_of_week",
        ),
    ];
    for (patch, field) in cases {
        let mut body = w.body("Invalid");
        for (k, v) in patch.as_object().expect("object") {
            body[k] = v.clone();
        }
        let (status, answer) = w
            .call("POST", "/scripts/scheduled", &alice, Some(body))
            .await;
        assert_error(status, &answer, 422, "validation_failed");
        assert!(
            answer["message"]
                .as_str()
                .is_some_and(|m| m.contains(field)),
            "{field} not named in {answer}"
        );
    }
    let mut body = w.body("No description");
    body.as_object_mut().map(|o| o.remove("description"));
    let (status, answer) = w
        .call("POST", "/scripts/scheduled", &alice, Some(body))
        .await;
    assert_error(status, &answer, 422, "validation_failed");
    assert!(
        answer["message"]
            .as_str()
            .is_some_and(|m| m.contains("description"))
    );

    // Nothing was created by any of them.
    let (_, list) = w.call("GET", "/scripts/scheduled", &alice, None).await;
    assert_eq!(list["data"]["total"], 0, "{list}");
}

#[tokio::test]
async fn a_name_is_unique_within_an_organization() {
    let w = world().await;
    w.create("Firewall update").await;
    let (status, body) = w
        .call(
            "POST",
            "/scripts/scheduled",
            &w.bob(),
            Some(w.body("Firewall update")),
        )
        .await;
    assert_error(status, &body, 409, "name_taken");
    assert_eq!(
        body["message"],
        "A schedule with the same name already exists: Firewall update"
    );
    // The same name in another organization is another schedule.
    let mut other = w.body("Firewall update");
    other["sites"] = json!([w.foreign_site]);
    other["test_site_id"] = Value::Null;
    let (status, body) = w
        .call(
            "POST",
            "/scripts/scheduled",
            &w.token("gina", "globex", ALL),
            Some(other),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    // Renaming onto a taken name is refused the same way.
    let second = w.create("Second").await;
    let (status, body) = w
        .call(
            "PUT",
            &format!("/scripts/scheduled/{second}"),
            &w.alice(),
            Some(json!({"description": "Firewall update"})),
        )
        .await;
    assert_error(status, &body, 409, "name_taken");
}

/// Every route, with the scope it needs: without the token 401, without the scope 403,
/// from another organization 404 (and never the schedule's data), with it a success.
#[tokio::test]
async fn every_route_needs_its_scope_and_hides_other_organizations() {
    let w = world().await;
    let id = w.create("Matrix").await;
    let one = format!("/scripts/scheduled/{id}");
    let routes: Vec<(&str, String, Option<Value>, &[&str])> = vec![
        (
            "GET",
            "/scripts/scheduled".into(),
            None,
            &[scopes::SCRIPT_VIEW],
        ),
        ("GET", one.clone(), None, &[scopes::SCRIPT_VIEW]),
        (
            "PUT",
            one.clone(),
            Some(json!({"notify": []})),
            &[scopes::SCRIPT_UPDATE],
        ),
        (
            "GET",
            format!("{one}/occurrences?count=2"),
            None,
            &[scopes::SCRIPT_VIEW],
        ),
        ("GET", format!("{one}/runs"), None, &[scopes::SCRIPT_VIEW]),
        (
            "GET",
            format!("{one}/authorize"),
            None,
            &[scopes::SCRIPT_CREATE, scopes::SCRIPT_UPDATE],
        ),
        (
            "POST",
            format!("{one}/authorize"),
            None,
            &[scopes::SCRIPT_AUTHORIZE],
        ),
        (
            "POST",
            format!("{one}/cancel"),
            None,
            &[scopes::SCRIPT_UPDATE, scopes::SCRIPT_DELETE],
        ),
        ("DELETE", one.clone(), None, &[scopes::SCRIPT_DELETE]),
    ];
    for (method, uri, body, needs) in &routes {
        let (status, answer, _) = w
            .raw(method, uri, None, body.as_ref().map(Value::to_string))
            .await;
        assert_error(status, &answer, 401, "missing_token");

        let without: Vec<&str> = ALL.iter().copied().filter(|s| !needs.contains(s)).collect();
        let (status, answer) = w
            .call(method, uri, &w.token("bob", "acme", &without), body.clone())
            .await;
        assert_error(status, &answer, 403, "missing_scope");

        if uri != "/scripts/scheduled" {
            let (status, answer) = w
                .call(method, uri, &w.token("gina", "globex", ALL), body.clone())
                .await;
            assert_error(status, &answer, 404, "not_found");
            assert!(!answer.to_string().contains("Matrix"), "{answer}");
        } else {
            let (status, answer) = w
                .call(method, uri, &w.token("gina", "globex", ALL), None)
                .await;
            assert_eq!(status, StatusCode::OK);
            assert_eq!(answer["data"]["total"], 0, "another organization's list");
        }
    }
    // Each route with exactly its scope succeeds, in an order that keeps the schedule
    // in a state every step allows.
    for (method, uri, body, needs) in &routes {
        let token = w.token("bob", "acme", &needs[..1]);
        let (status, answer) = w.call(method, uri, &token, body.clone()).await;
        assert!(
            status.is_success(),
            "{method} {uri} with {needs:?}: {status} {answer}"
        );
    }
    let (status, _) = w.call("GET", &one, &w.alice(), None).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "deleted at the end");

    // Creation and bulk deletion need their scopes too.
    let no_create = w.token("bob", "acme", &[scopes::SCRIPT_VIEW, scopes::SCRIPT_UPDATE]);
    let (status, answer) = w
        .call("POST", "/scripts/scheduled", &no_create, Some(w.body("x")))
        .await;
    assert_error(status, &answer, 403, "missing_scope");
    let id = w.create("Bulk").await;
    let (status, answer) = w
        .call(
            "DELETE",
            "/scripts/scheduled",
            &w.token("bob", "acme", &[scopes::SCRIPT_VIEW]),
            Some(json!({"schedules_ids": [id]})),
        )
        .await;
    assert_error(status, &answer, 403, "missing_scope");
    let (status, answer) = w
        .call(
            "DELETE",
            "/scripts/scheduled",
            &w.token("gina", "globex", ALL),
            Some(json!({"schedules_ids": [id]})),
        )
        .await;
    assert_error(status, &answer, 404, "not_found");
}

#[tokio::test]
async fn four_eyes_the_creator_cannot_approve_and_another_user_can() {
    let w = world().await;
    let id = w.create("Four eyes").await;
    let uri = format!("/scripts/scheduled/{id}/authorize");
    let (status, body) = w.call("POST", &uri, &w.alice(), None).await;
    assert_error(status, &body, 403, "self_approval");
    let (status, body) = w
        .call(
            "POST",
            &uri,
            &w.token("bob", "acme", &[scopes::SCRIPT_VIEW, scopes::SCRIPT_UPDATE]),
            None,
        )
        .await;
    assert_error(status, &body, 403, "missing_scope");

    let (status, body) = w
        .call(
            "POST",
            &uri,
            &w.token("bob", "acme", &[scopes::SCRIPT_AUTHORIZE]),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["status"], "scheduled");
    assert_eq!(body["authorized_by"], "bob");
    assert!(body["authorized_at"].is_string());
    assert!(body["next_launch_at"].is_string());

    let (status, body) = w.call("POST", &uri, &w.bob(), None).await;
    assert_error(status, &body, 409, "state_conflict");
    let (status, body, _) = w
        .raw("POST", &uri, Some(&w.bob()), Some("{not json".into()))
        .await;
    assert_error(status, &body, 400, "malformed_json");
}

#[tokio::test]
async fn an_organization_that_allows_self_approval_lets_the_creator_approve() {
    let mut w = world().await;
    w.t.state.organizations = std::sync::Arc::new(
        [(
            "acme".to_owned(),
            crate::approval::OrgPolicy {
                allow_self_approval: true,
            },
        )]
        .into(),
    );
    let id = w.create("Self-approved").await;
    let uri = format!("/scripts/scheduled/{id}/authorize");
    // The creator still needs the scope to authorize.
    let (status, body) = w
        .call(
            "POST",
            &uri,
            &w.token(
                "alice",
                "acme",
                &[scopes::SCRIPT_VIEW, scopes::SCRIPT_CREATE],
            ),
            None,
        )
        .await;
    assert_error(status, &body, 403, "missing_scope");
    let (status, body) = w.call("POST", &uri, &w.alice(), None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["status"], "scheduled");
    assert_eq!(body["authorized_by"], "alice");

    // Another organization's rules are its own: globex keeps four eyes.
    let gina = w.token("gina", "globex", ALL);
    let (status, created) = w
        .call(
            "POST",
            "/scripts/scheduled",
            &gina,
            Some(json!({
                "description": "Four eyes at globex",
                "script": ":log info \"g\"",
                "launch_at": Utc::now() + TimeDelta::hours(1),
                "sites": [w.foreign_site],
            })),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let uri = format!(
        "/scripts/scheduled/{}/authorize",
        created["id"].as_str().expect("id")
    );
    let (status, body) = w.call("POST", &uri, &gina, None).await;
    assert_error(status, &body, 403, "self_approval");
}

#[tokio::test]
async fn a_get_of_authorize_never_approves_and_the_link_confirms_with_a_post() {
    let w = world().await;
    let id = w.create("Linked").await;
    let uri = format!("/scripts/scheduled/{id}/authorize");
    let show = format!("/scripts/scheduled/{id}");

    // Requesting records the request and sends the link; the schedule stays unauthorized,
    // even when the requester could approve.
    let (status, body) = w.call("GET", &uri, &w.bob(), None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["data"]["recipients"], json!(["bob"]));
    assert_eq!(body["data"]["schedule"]["status"], "unauthorized");
    assert!(body["data"]["schedule"]["authorization_requested_at"].is_string());
    assert!(body["data"]["expires_at"].is_string());
    assert!(
        !body.to_string().contains("token="),
        "the link goes only to the recipients"
    );
    let token = w.link_token(&id);

    // Opening the link, with or without a bearer token, only shows the confirm page.
    for bearer in [None, Some(w.bob())] {
        let (status, _, page) = w
            .raw(
                "GET",
                &format!("{uri}?token={token}"),
                bearer.as_deref(),
                None,
            )
            .await;
        assert_eq!(status, StatusCode::OK);
        assert!(page.contains("method: \"POST\""), "{page}");
        assert!(page.contains(&token));
        let (_, now) = w.call("GET", &show, &w.alice(), None).await;
        assert_eq!(now["status"], "unauthorized", "a GET approved: {now}");
    }
    let (status, body, _) = w
        .raw("GET", &format!("{uri}?token=%3Cscript%3E"), None, None)
        .await;
    assert_error(status, &body, 400, "invalid_query");

    // A wrong token does not approve; the creator cannot approve even with the link.
    let (status, body) = w
        .call(
            "POST",
            &uri,
            &w.token("dave", "acme", ALL),
            Some(json!({"token": "00".repeat(32)})),
        )
        .await;
    assert_error(status, &body, 403, "invalid_approval_link");
    let (status, body) = w
        .call("POST", &uri, &w.alice(), Some(json!({"token": token})))
        .await;
    assert_error(status, &body, 403, "self_approval");

    // The link is no scope: without script:authorize it approves nothing, even for its
    // recipient; with the scope, only its recipient may use it.
    let (status, body) = w
        .call(
            "POST",
            &uri,
            &w.token("bob", "acme", &[scopes::SCRIPT_VIEW]),
            Some(json!({"token": token})),
        )
        .await;
    assert_error(status, &body, 403, "missing_scope");
    let (status, body) = w
        .call(
            "POST",
            &uri,
            &w.token("dave", "acme", ALL),
            Some(json!({"token": token})),
        )
        .await;
    assert_error(status, &body, 403, "invalid_approval_link");
    assert!(
        body["message"]
            .as_str()
            .is_some_and(|m| m.contains("another user")),
        "{body}"
    );
    let (_, now) = w.call("GET", &show, &w.alice(), None).await;
    assert_eq!(now["status"], "unauthorized");

    // Its recipient, with the scope, approves with it.
    let (status, body) = w
        .call("POST", &uri, &w.bob(), Some(json!({"token": token})))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["status"], "scheduled");
    assert_eq!(body["authorized_by"], "bob");
}

#[tokio::test]
async fn whoever_edited_what_runs_cannot_approve_it_by_scope_or_by_link() {
    let w = world().await;
    let id = w.create("Rewritten by bob").await;
    let one = format!("/scripts/scheduled/{id}");
    let uri = format!("{one}/authorize");
    // Bob, who may edit and approve, rewrites alice's script and puts himself on notify.
    let (status, body) = w
        .call(
            "PUT",
            &one,
            &w.bob(),
            Some(json!({"script": "/user remove [find]", "notify": ["bob"]})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["editors"], json!(["alice", "bob"]));
    assert_eq!(body["updated_by"], "bob");
    assert_eq!(body["version"], 2);
    let (status, body) = w.call("POST", &uri, &w.bob(), None).await;
    assert_error(status, &body, 403, "self_approval");
    // He asks for approval; the link comes to him, and still does not let him approve.
    let (status, body) = w.call("GET", &uri, &w.bob(), None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let token = w.link_token_for(&id, "bob");
    let (status, body) = w
        .call("POST", &uri, &w.bob(), Some(json!({"token": token})))
        .await;
    assert_error(status, &body, 403, "self_approval");
    // A user who may only edit cannot approve through a link sent to them either.
    let eve = w.token(
        "eve",
        "acme",
        &[
            scopes::SCRIPT_VIEW,
            scopes::SCRIPT_UPDATE,
            scopes::SCRIPT_CREATE,
        ],
    );
    let (status, body) = w
        .call("PUT", &one, &eve, Some(json!({"notify": ["eve"]})))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) = w.call("GET", &uri, &eve, None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let token = w.link_token_for(&id, "eve");
    let (status, body) = w
        .call("POST", &uri, &eve, Some(json!({"token": token})))
        .await;
    assert_error(status, &body, 403, "missing_scope");
    let (_, now) = w.call("GET", &one, &w.alice(), None).await;
    assert_eq!(now["status"], "unauthorized", "nobody approved: {now}");
    assert!(now["authorized_by"].is_null());
    // A third user, who shaped none of it, approves.
    let (status, body) = w
        .call("POST", &uri, &w.token("carol", "acme", ALL), None)
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["authorized_by"], "carol");
}

#[tokio::test]
async fn an_edit_of_what_runs_resets_authorization_and_other_edits_do_not() {
    let w = world().await;
    let id = w.create("Editable").await;
    let one = format!("/scripts/scheduled/{id}");
    w.approve(&id).await;
    let (status, body) = w
        .call(
            "PUT",
            &one,
            &w.alice(),
            Some(json!({"description": "Editable (renamed)", "notify": []})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        body["status"], "scheduled",
        "a new name does not change what runs"
    );

    for change in [
        json!({"script": ":log info \"changed\""}),
        json!({"sites": [w.sites[1]]}),
        json!({"launch_at": Utc::now() + TimeDelta::hours(2)}),
        json!({"test_site_id": null}),
        json!({"make_backup": false}),
        json!({"abort_if_offline": false}),
    ] {
        let (status, body) = w.call("PUT", &one, &w.alice(), Some(change.clone())).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["status"], "unauthorized", "{change} kept the approval");
        assert!(body["authorized_at"].is_null());
        assert!(body["authorized_by"].is_null());
        w.approve(&id).await;
    }
    // Bad edits are refused and change nothing.
    for (change, field) in [
        (
            json!({"launch_at": Utc::now() - TimeDelta::hours(1)}),
            "launch_at",
        ),
        (json!({"sites": [w.foreign_site]}), "sites"),
        (json!({"status": "scheduled"}), "status"),
    ] {
        let (status, body) = w.call("PUT", &one, &w.alice(), Some(change)).await;
        assert_error(status, &body, 422, "validation_failed");
        assert!(
            body["message"].as_str().is_some_and(|m| m.contains(field)),
            "{body}"
        );
    }
    let (_, now) = w.call("GET", &one, &w.alice(), None).await;
    assert_eq!(now["status"], "scheduled");
}

#[tokio::test]
async fn listing_filters_and_pages() {
    let w = world().await;
    let mut ids = Vec::new();
    for i in 0..7 {
        // Ids begin with the creation millisecond: one apart keeps their order.
        tokio::time::sleep(std::time::Duration::from_millis(2)).await;
        let creator = if i < 4 { w.alice() } else { w.bob() };
        let mut body = w.body(&format!("Backup {i}"));
        if i >= 5 {
            body["description"] = json!(format!("Daily cleanup {i}"));
            body["launch_at"] = Value::Null;
            body["recurrence"] = json!({
                "scheduleType": "DAILY", "startDate": "2031-01-01", "startTime": "04:00:00",
                "timezone": "Europe/Berlin"
            });
        }
        let (status, created) = w
            .call("POST", "/scripts/scheduled", &creator, Some(body))
            .await;
        assert_eq!(status, StatusCode::CREATED, "{created}");
        ids.push(created["id"].as_str().expect("id").to_owned());
    }
    let alice = w.alice();
    let list = |query: &str| {
        let uri = format!("/scripts/scheduled{query}");
        let alice = alice.clone();
        let w = &w;
        async move {
            let (status, body) = w.call("GET", &uri, &alice, None).await;
            assert_eq!(status, StatusCode::OK, "{uri}: {body}");
            let names: Vec<String> = body["data"]["registries"]
                .as_array()
                .expect("registries")
                .iter()
                .map(|s| s["description"].as_str().unwrap_or_default().to_owned())
                .collect();
            (body, names)
        }
    };

    let (body, names) = list("?paginate=true&page=2&page_size=3").await;
    assert_eq!(names, ["Backup 3", "Backup 4", "Daily cleanup 5"]);
    assert_eq!(body["status"], "ok");
    assert_eq!(body["data"]["total"], 7);
    assert_eq!(body["data"]["pages"], 3);
    assert_eq!(body["data"]["page"], 2);
    let (_, names) = list("?page=3&page_size=3").await;
    assert_eq!(names, ["Daily cleanup 6"]);
    let (_, names) = list("?page=4&page_size=3").await;
    assert!(names.is_empty());
    let (body, names) = list("?paginate=false").await;
    assert_eq!(names.len(), 7);
    assert!(body["data"]["page"].is_null());

    let (_, names) = list("?name=CLEANUP").await;
    assert_eq!(names, ["Daily cleanup 5", "Daily cleanup 6"]);
    let (_, names) = list("?type=recurring").await;
    assert_eq!(names, ["Daily cleanup 5", "Daily cleanup 6"]);
    let (_, names) = list("?type=one_time&scheduled_by=bob").await;
    assert_eq!(names, ["Backup 4"]);
    let (_, names) = list("?schedule=daily&scheduled_by=alice").await;
    assert!(names.is_empty());
    let (_, names) = list("?schedule=WEEKLY").await;
    assert!(names.is_empty());
    let (_, names) = list(&format!("?id_list={}&id_list={}", ids[6], ids[1])).await;
    assert_eq!(names, ["Backup 1", "Daily cleanup 6"]);
    let (_, names) = list(&format!("?id_list={},{}", ids[0], ids[2])).await;
    assert_eq!(names, ["Backup 0", "Backup 2"]);
    let (_, names) = list(&format!("?id={}", ids[3])).await;
    assert_eq!(names, ["Backup 3"]);
    let future = (Utc::now() + TimeDelta::hours(1)).timestamp_micros();
    let (_, names) = list(&format!("?scheduled_at_start={future}")).await;
    assert!(names.is_empty());
    let (_, names) = list(&format!("?scheduled_by_end={future}&name=Backup%204")).await;
    assert_eq!(names, ["Backup 4"]);

    for bad in [
        "?page=0",
        "?page_size=0",
        "?page_size=100000",
        "?paginate=sometimes",
        "?type=yearly",
        "?schedule=sometimes",
        "?scheduled_at_start=yesterday",
    ] {
        let (status, body) = w
            .call("GET", &format!("/scripts/scheduled{bad}"), &alice, None)
            .await;
        assert_error(status, &body, 400, "invalid_query");
    }

    // Bulk delete: all or nothing.
    let (status, body) = w
        .call(
            "DELETE",
            "/scripts/scheduled",
            &alice,
            Some(json!({"schedules_ids": [ids[0], "no-such-id"]})),
        )
        .await;
    assert_error(status, &body, 404, "not_found");
    let (status, body) = w
        .call(
            "DELETE",
            "/scripts/scheduled",
            &alice,
            Some(json!({"id_list": [ids[0], ids[1]]})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["deleted"].as_array().map(Vec::len), Some(2));
    let (status, body) = w
        .call(
            "DELETE",
            "/scripts/scheduled",
            &alice,
            Some(json!({"schedules_ids": []})),
        )
        .await;
    assert_error(status, &body, 422, "validation_failed");
    let (body, _) = list("").await;
    assert_eq!(body["data"]["total"], 5);
}

#[tokio::test]
async fn occurrences_preview_the_next_launches() {
    let w = world().await;
    let mut body = w.body("Weekly");
    body["launch_at"] = Value::Null;
    body["recurrence"] = json!({
        "schedule_type": "WEEKLY", "days_of_week": [1, 4], "start_date": "2031-01-01",
        "start_time": "22:30", "timezone": "America/New_York"
    });
    let (status, created) = w
        .call("POST", "/scripts/scheduled", &w.alice(), Some(body))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    assert_eq!(created["recurrence"]["schedule_type"], "WEEKLY");
    assert_eq!(created["recurrence"]["days_of_week"], json!([1, 4]));
    let id = created["id"].as_str().expect("id");
    let (status, body) = w
        .call(
            "GET",
            &format!("/scripts/scheduled/{id}/occurrences?count=4"),
            &w.alice(),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let at: Vec<&str> = body["occurrences"]
        .as_array()
        .expect("occurrences")
        .iter()
        .filter_map(|o| o["at"].as_str())
        .collect();
    // Thursday 2031-01-02 22:30 EST is 03:30 UTC the next day; then Monday the 6th.
    assert_eq!(
        at,
        [
            "2031-01-03T03:30:00Z",
            "2031-01-07T03:30:00Z",
            "2031-01-10T03:30:00Z",
            "2031-01-14T03:30:00Z"
        ]
    );
    for bad in ["count=0", "count=1001", "count=many", "count="] {
        let (status, body) = w
            .call(
                "GET",
                &format!("/scripts/scheduled/{id}/occurrences?{bad}"),
                &w.alice(),
                None,
            )
            .await;
        assert_error(status, &body, 400, "invalid_query");
    }

    let once = w.create("Once").await;
    let (_, body) = w
        .call(
            "GET",
            &format!("/scripts/scheduled/{once}/occurrences"),
            &w.alice(),
            None,
        )
        .await;
    assert_eq!(body["occurrences"].as_array().map(Vec::len), Some(1));
    assert_eq!(body["occurrences"][0]["index"], 0);
    let (status, cancelled) = w
        .call(
            "POST",
            &format!("/scripts/scheduled/{once}/cancel"),
            &w.alice(),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(cancelled["status"], "cancelled");
    assert!(cancelled["cancelled_at"].is_string());
    assert!(cancelled["t_minus"].is_null());
    let (_, body) = w
        .call(
            "GET",
            &format!("/scripts/scheduled/{once}/occurrences"),
            &w.alice(),
            None,
        )
        .await;
    assert_eq!(body["occurrences"], json!([]));
    let (status, body) = w
        .call(
            "POST",
            &format!("/scripts/scheduled/{once}/cancel"),
            &w.alice(),
            None,
        )
        .await;
    assert_error(status, &body, 409, "state_conflict");
}

#[tokio::test]
async fn runs_and_progress_follow_the_jobs_of_a_launch() {
    let w = world().await;
    let id = w.create("Launched").await;
    let one = format!("/scripts/scheduled/{id}");
    let (status, _) = w
        .call("POST", &format!("{one}/authorize"), &w.bob(), None)
        .await;
    assert_eq!(status, StatusCode::OK);
    let (_, runs) = w
        .call("GET", &format!("{one}/runs"), &w.alice(), None)
        .await;
    assert_eq!(runs["runs"], json!([]));

    // Launch as the scheduler would, then finish two of the jobs.
    let store = &w.t.state.store;
    let schedule = store.get_schedule(&id).await.expect("schedule");
    let now = Utc::now();
    let launch = store
        .launch(
            LaunchPlan {
                schedule_id: id.clone(),
                occurrence: 0,
                scheduled_for: now,
                approval: schedule.approval.clone().expect("approved"),
                sites: w.sites.clone(),
                more_batches: false,
                next_launch_at: None,
            },
            0,
            now,
        )
        .await
        .expect("launch");
    let jobs: Vec<_> = launch.created.iter().map(|j| j.id.clone()).collect();
    for (job, last) in [
        (&jobs[0], JobTransition::Complete { output: None }),
        (
            &jobs[1],
            JobTransition::Fail {
                error: crate::store::JobError {
                    code: "refused".into(),
                    message: "connection refused".into(),
                },
                output: None,
            },
        ),
    ] {
        store
            .transition_jobs(
                vec![
                    (job.clone(), JobTransition::Start),
                    (job.clone(), JobTransition::MarkSent),
                    (job.clone(), last),
                ],
                now,
            )
            .await
            .expect("transitions");
    }
    let (_, shown) = w.call("GET", &one, &w.alice(), None).await;
    assert_eq!(shown["status"], "launched");
    assert!(shown["started_at"].is_string());
    let site_of = |job: &str| {
        launch
            .created
            .iter()
            .find(|j| j.id == job)
            .map(|j| j.site_id.clone())
            .expect("job")
    };
    assert_eq!(shown["progress"]["completed"], json!([site_of(&jobs[0])]));
    assert_eq!(shown["progress"]["failed"], json!([site_of(&jobs[1])]));
    assert_eq!(shown["progress"]["pending"], json!([site_of(&jobs[2])]));
    assert_eq!(shown["progress"]["counts"]["total"], 3);

    let (status, runs) = w
        .call("GET", &format!("{one}/runs"), &w.alice(), None)
        .await;
    assert_eq!(status, StatusCode::OK, "{runs}");
    let run = &runs["runs"][0];
    assert_eq!(run["occurrence"], 0);
    assert_eq!(run["status"], "launched");
    assert_eq!(run["counts"]["completed"], 1);
    assert_eq!(run["jobs"].as_array().map(Vec::len), Some(3));
    let failed = run["jobs"]
        .as_array()
        .and_then(|j| j.iter().find(|j| j["status"] == "failed"))
        .expect("failed job");
    assert_eq!(failed["error"]["code"], "refused");
    assert!(failed["failed_at"].is_string());
    assert!(runs["next_after"].is_null());

    // A launched schedule cannot be edited or deleted, alone or in bulk.
    let (status, body) = w
        .call("PUT", &one, &w.alice(), Some(json!({"script": ":put 1"})))
        .await;
    assert_error(status, &body, 409, "state_conflict");
    let (status, body) = w.call("DELETE", &one, &w.alice(), None).await;
    assert_error(status, &body, 409, "state_conflict");
    let (status, body) = w
        .call(
            "DELETE",
            "/scripts/scheduled",
            &w.alice(),
            Some(json!({"schedules_ids": [id]})),
        )
        .await;
    assert_error(status, &body, 409, "state_conflict");
}

#[tokio::test]
async fn the_openapi_document_describes_every_route() {
    let doc = serde_json::to_value(crate::api::openapi_document()).expect("json");
    for (path, methods) in [
        ("/scripts/scheduled", &["get", "post", "delete"][..]),
        ("/scripts/scheduled/{id}", &["get", "put", "delete"]),
        ("/scripts/scheduled/{id}/authorize", &["get", "post"]),
        ("/scripts/scheduled/{id}/cancel", &["post"]),
        ("/scripts/scheduled/{id}/occurrences", &["get"]),
        ("/scripts/scheduled/{id}/runs", &["get"]),
    ] {
        for method in methods {
            let op = &doc["paths"][path][method];
            assert!(op.is_object(), "{method} {path} is not described");
            for status in ["401", "403"] {
                assert!(
                    op["responses"][status].is_object(),
                    "{method} {path} {status}"
                );
            }
        }
    }
    let view = &doc["components"]["schemas"]["ScheduleView"]["properties"];
    for field in ["t_minus", "progress", "authorized_by", "recurrence"] {
        assert!(view[field].is_object(), "{field}");
    }
    let error = &doc["components"]["schemas"]["ErrorBody"]["properties"];
    assert!(error["type"].is_object(), "{error}");

    // Every schema referenced is defined.
    fn refs(v: &Value, out: &mut Vec<String>) {
        match v {
            Value::Object(map) => {
                if let Some(Value::String(r)) = map.get("$ref") {
                    out.push(r.clone());
                }
                map.values().for_each(|v| refs(v, out));
            }
            Value::Array(items) => items.iter().for_each(|v| refs(v, out)),
            _ => {}
        }
    }
    let mut all = Vec::new();
    refs(&doc["paths"], &mut all);
    refs(&doc["components"], &mut all);
    assert!(!all.is_empty());
    for r in all {
        let name = r.trim_start_matches("#/components/schemas/");
        assert!(
            doc["components"]["schemas"][name].is_object(),
            "{r} is referenced but not defined"
        );
    }
}

#[tokio::test]
async fn extreme_dates_are_answered_without_a_server_error() {
    let w = world().await;
    let bodies = [
        json!({"launch_at": "+262142-12-31T23:59:59Z"}),
        json!({"launch_at": null, "recurrence": {"schedule_type": "HOURLY", "hourly_interval": 8784,
            "start_date": "+262142-12-31", "start_time": "23:59:59", "timezone": "Pacific/Kiritimati"}}),
        json!({"launch_at": null, "recurrence": {"schedule_type": "MONTHLY", "recurrence_date": 31,
            "start_date": "-262143-01-01", "start_time": "00:00", "timezone": "Etc/GMT+12"}}),
        json!({"launch_at": null, "recurrence": {"schedule_type": "DAILY",
            "start_date": "1970-01-01", "end_date": "1970-01-02", "start_time": "00:00"}}),
    ];
    for (i, patch) in bodies.into_iter().enumerate() {
        let mut body = w.body(&format!("Extreme {i}"));
        for (k, v) in patch.as_object().expect("object") {
            body[k] = v.clone();
        }
        let (status, created) = w
            .call("POST", "/scripts/scheduled", &w.alice(), Some(body))
            .await;
        assert!(!status.is_server_error(), "{status} {created}");
        if status != StatusCode::CREATED {
            continue;
        }
        let id = created["id"].as_str().expect("id");
        for (method, path) in [
            (
                "GET",
                format!("/scripts/scheduled/{id}/occurrences?count=1000"),
            ),
            ("POST", format!("/scripts/scheduled/{id}/authorize")),
            ("GET", format!("/scripts/scheduled/{id}")),
            ("GET", "/scripts/scheduled".to_owned()),
        ] {
            let (status, answer) = w.call(method, &path, &w.bob(), None).await;
            assert!(
                !status.is_server_error(),
                "{method} {path}: {status} {answer}"
            );
        }
    }
}

#[tokio::test]
async fn an_unpaged_listing_past_its_cap_is_refused_not_cut_short() {
    let w = world().await;
    for i in 0..4 {
        w.create(&format!("Listed {i}")).await;
    }
    let store = &w.t.state.store;
    let unpaged =
        super::query::ListQuery::parse(&[("paginate".into(), "false".into())]).expect("query");
    let err = super::list_data(store, "acme", &unpaged, Utc::now(), 3)
        .await
        .expect_err("4 matches, cap 3");
    assert_eq!(err.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(err.code, "too_many_to_list");
    assert!(err.message.contains("4 schedules match"), "{}", err.message);
    let all = super::list_data(store, "acme", &unpaged, Utc::now(), 4)
        .await
        .expect("at the cap");
    assert_eq!(all.registries.len(), 4);
    // Pages are not capped by it.
    let paged = super::query::ListQuery::parse(&[("page_size".into(), "2".into())]).expect("query");
    let page = super::list_data(store, "acme", &paged, Utc::now(), 1)
        .await
        .expect("paged");
    assert_eq!((page.registries.len(), page.total), (2, 4));
    // Through the route, under the real cap, every match comes back.
    let (status, body) = w
        .call("GET", "/scripts/scheduled?paginate=false", &w.alice(), None)
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["data"]["registries"].as_array().map(Vec::len), Some(4));
}

#[tokio::test]
async fn a_page_of_runs_carries_a_bounded_number_of_jobs() {
    let w = world().await;
    let id = w.create("Many runs").await;
    w.approve(&id).await;
    let store = &w.t.state.store;
    let schedule = store.get_schedule(&id).await.expect("schedule");
    let now = Utc::now();
    for occurrence in 0..3 {
        store
            .launch(
                LaunchPlan {
                    schedule_id: id.clone(),
                    occurrence,
                    scheduled_for: now,
                    approval: schedule.approval.clone().expect("approved"),
                    sites: w.sites.clone(),
                    more_batches: true,
                    next_launch_at: None,
                },
                0,
                now,
            )
            .await
            .expect("launch");
    }
    let runs = async |after| {
        store
            .list_runs(&id, &crate::store::Page { limit: 10, after })
            .await
            .expect("runs")
    };
    // Three runs of three jobs; seven jobs fit: two whole runs, the page ends there.
    let page = super::runs_page(store, &id, runs(None).await, 10, 7)
        .await
        .expect("page");
    assert_eq!(page.runs.len(), 2);
    assert!(
        page.runs
            .iter()
            .all(|r| r.jobs.len() == 3 && !r.jobs_truncated)
    );
    assert_eq!(page.next_after, Some(1), "the rest is on the next page");
    let rest = super::runs_page(store, &id, runs(Some(1)).await, 10, 7)
        .await
        .expect("page");
    assert_eq!(rest.runs.len(), 1);
    assert_eq!(rest.next_after, None);
    // A run larger than the whole budget is shown alone, cut short, and says so.
    let page = super::runs_page(store, &id, runs(None).await, 10, 2)
        .await
        .expect("page");
    assert_eq!(page.runs.len(), 1);
    assert_eq!(page.runs[0].jobs.len(), 2);
    assert!(page.runs[0].jobs_truncated);
    assert_eq!(page.runs[0].counts.total, 3);
    assert_eq!(page.next_after, Some(0));
    // The route under its real budget: all nine jobs.
    let (status, body) = w
        .call(
            "GET",
            &format!("/scripts/scheduled/{id}/runs"),
            &w.alice(),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["runs"].as_array().map(Vec::len), Some(3));
    assert_eq!(body["runs"][0]["jobs_truncated"], false);
}

#[tokio::test]
async fn show_carries_the_lint_of_the_script_and_the_listing_does_not() {
    let w = world().await;
    let mut body = w.body("risky");
    body["script"] = json!(":log info \"x\"\n/system reset-configuration");
    body["acknowledged_risks"] = json!(["factory-reset"]);
    let (status, created) = w
        .call("POST", "/scripts/scheduled", &w.alice(), Some(body))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let id = created["id"].as_str().expect("id").to_owned();
    assert!(created.get("lint").is_none());
    let (status, shown) = w
        .call("GET", &format!("/scripts/scheduled/{id}"), &w.bob(), None)
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(shown["lint"]["syntax_ok"], true);
    let finding = &shown["lint"]["findings"][0];
    assert_eq!(finding["rule"], "factory-reset");
    assert_eq!(finding["severity"], "critical");
    assert_eq!(
        (finding["line"].as_u64(), finding["column"].as_u64()),
        (Some(2), Some(1))
    );
    let (_, listed) = w.call("GET", "/scripts/scheduled", &w.bob(), None).await;
    assert!(!listed.to_string().contains("\"lint\""), "{listed}");
}

#[tokio::test]
async fn a_script_with_a_syntax_error_is_refused_naming_its_line_and_column() {
    let w = world().await;
    let mut body = w.body("broken");
    body["script"] = json!(":log info \"ok\"\n:put (1 + 2");
    let (status, refused) = w
        .call("POST", "/scripts/scheduled", &w.alice(), Some(body))
        .await;
    assert_error(status, &refused, 422, "script_syntax_error");
    let message = refused["message"].as_str().expect("message");
    assert!(message.contains("line 2, column 6"), "{message}");
    let (_, listed) = w.call("GET", "/scripts/scheduled", &w.bob(), None).await;
    assert_eq!(listed["data"]["total"], 0, "nothing was stored: {listed}");

    let id = w.create("fine").await;
    let one = format!("/scripts/scheduled/{id}");
    let (status, refused) = w
        .call(
            "PUT",
            &one,
            &w.alice(),
            Some(json!({"script": "/ip address add address=10.0.0.1/24 interface=\"ether1"})),
        )
        .await;
    assert_error(status, &refused, 422, "script_syntax_error");
    assert!(
        refused["message"]
            .as_str()
            .is_some_and(|m| m.contains("line 1, column 47")),
        "{refused}"
    );
    let (_, shown) = w.call("GET", &one, &w.bob(), None).await;
    assert_eq!(shown["script"], ":log info \"hello\"");
    assert_eq!(shown["version"], 1);
}

#[tokio::test]
async fn critical_findings_need_their_rule_ids_in_acknowledged_risks() {
    let w = world().await;
    let script = "/system reset-configuration no-defaults=yes\n/user remove [find name=old]";
    let with = |acks: Value| {
        let mut body = w.body("reset");
        body["script"] = json!(script);
        body["acknowledged_risks"] = acks;
        body
    };
    let (status, refused) = w
        .call(
            "POST",
            "/scripts/scheduled",
            &w.alice(),
            Some(with(json!([]))),
        )
        .await;
    assert_error(status, &refused, 422, "risks_not_acknowledged");
    assert!(
        refused["message"]
            .as_str()
            .is_some_and(|m| m.contains("factory-reset (line 1, column 1)")),
        "{refused}"
    );
    for (acks, names) in [
        (json!(["factory-reset", "no-such-rule"]), "no-such-rule"),
        (json!(["factory-reset", "disk-format"]), "disk-format"),
    ] {
        let (status, refused) = w
            .call("POST", "/scripts/scheduled", &w.alice(), Some(with(acks)))
            .await;
        assert_error(status, &refused, 422, "validation_failed");
        assert!(
            refused["message"]
                .as_str()
                .is_some_and(|m| m.starts_with("acknowledged_risks: ") && m.contains(names)),
            "{refused}"
        );
    }
    let (status, created) = w
        .call(
            "POST",
            "/scripts/scheduled",
            &w.alice(),
            Some(with(json!([
                "user-change",
                "factory-reset",
                "factory-reset"
            ]))),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    assert_eq!(
        created["acknowledged_risks"],
        json!(["factory-reset", "user-change"])
    );
    let id = created["id"].as_str().expect("id");
    let (_, shown) = w
        .call("GET", &format!("/scripts/scheduled/{id}"), &w.bob(), None)
        .await;
    assert_eq!(
        shown["acknowledged_risks"],
        json!(["factory-reset", "user-change"])
    );
    let rules: Vec<&str> = shown["lint"]["findings"]
        .as_array()
        .expect("findings")
        .iter()
        .filter_map(|f| f["rule"].as_str())
        .collect();
    assert!(
        rules.contains(&"factory-reset") && rules.contains(&"user-change"),
        "{shown}"
    );
}

#[tokio::test]
async fn the_approval_covers_the_acknowledged_risks() {
    let w = world().await;
    let mut body = w.body("acknowledged");
    body["script"] = json!("/system reset-configuration\n/user remove [find name=old]");
    body["acknowledged_risks"] = json!(["factory-reset"]);
    let (status, created) = w
        .call("POST", "/scripts/scheduled", &w.alice(), Some(body))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let id = created["id"].as_str().expect("id").to_owned();
    let one = format!("/scripts/scheduled/{id}");
    let uri = format!("{one}/authorize");
    let carol = w.token("carol", "acme", ALL);

    // Approved as it stands, then the list is edited: the approval is void.
    w.approve(&id).await;
    let (status, edited) = w
        .call(
            "PUT",
            &one,
            &carol,
            Some(json!({"acknowledged_risks": ["user-change", "factory-reset"]})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{edited}");
    assert_eq!(edited["status"], "unauthorized");
    assert!(edited["authorized_by"].is_null());
    assert_eq!(edited["version"], 2);
    assert!(
        edited["editors"]
            .as_array()
            .is_some_and(|e| e.contains(&json!("carol"))),
        "{edited}"
    );
    // Whoever edited the list may not approve it.
    let (status, refused) = w.call("POST", &uri, &carol, None).await;
    assert_error(status, &refused, 403, "self_approval");

    // A link sent for one list does not approve another.
    let (status, body) = w.call("GET", &uri, &w.alice(), None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let stale = w.link_token(&id);
    let (status, body) = w
        .call(
            "PUT",
            &one,
            &carol,
            Some(json!({"acknowledged_risks": ["factory-reset"]})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["version"], 3);
    let (status, refused) = w
        .call("POST", &uri, &w.bob(), Some(json!({"token": stale})))
        .await;
    assert_error(status, &refused, 403, "invalid_approval_link");
    let (_, shown) = w.call("GET", &one, &w.bob(), None).await;
    assert_eq!(shown["status"], "unauthorized");
    // The same list in another order, or repeated, is no edit.
    let (status, same) = w
        .call(
            "PUT",
            &one,
            &w.alice(),
            Some(json!({"acknowledged_risks": ["factory-reset", "factory-reset"]})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{same}");
    assert_eq!(same["version"], 3);
    w.approve(&id).await;
}

#[tokio::test]
async fn the_request_and_the_confirm_page_show_approvers_the_findings() {
    let w = world().await;
    let mut body = w.body("shown");
    body["script"] = json!(
        ":log info \"go\"\n/system reset-configuration\n/user remove [find name=old]\n/system reboot"
    );
    body["acknowledged_risks"] = json!(["factory-reset"]);
    let (status, created) = w
        .call("POST", "/scripts/scheduled", &w.alice(), Some(body))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let id = created["id"].as_str().expect("id").to_owned();
    let uri = format!("/scripts/scheduled/{id}/authorize");
    let (status, body) = w.call("GET", &uri, &w.alice(), None).await;
    assert_eq!(status, StatusCode::OK, "{body}");

    // The request's event: what the e-mail and the webhook copies are made from.
    let events =
        w.t.state
            .store
            .as_redb()
            .expect("redb")
            .due_events(Utc::now() + TimeDelta::days(1), 1000)
            .expect("events");
    let event = events
        .iter()
        .find(|e| e.kind == crate::approval::EVENT_REQUESTED && e.payload["schedule_id"] == id)
        .expect("the request's event");
    assert_eq!(
        event.payload["acknowledged_risks"],
        json!(["factory-reset"])
    );
    let findings = event.payload["findings"].as_array().expect("findings");
    let shown: Vec<(&str, &str, u64)> = findings
        .iter()
        .map(|f| {
            (
                f["rule"].as_str().unwrap_or(""),
                f["severity"].as_str().unwrap_or(""),
                f["line"].as_u64().unwrap_or(0),
            )
        })
        .collect();
    assert_eq!(
        shown,
        [("factory-reset", "critical", 2), ("user-change", "high", 3)],
        "warnings are not shown: {findings:?}"
    );
    assert!(findings.iter().all(|f| f["message"].is_string()));

    // The page the link opens shows them to the link's holder.
    let token = w.link_token(&id);
    let (status, _, page) = w
        .raw("GET", &format!("{uri}?token={token}"), None, None)
        .await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        page.contains("<code>factory-reset</code></td><td>2</td><td>1</td>"),
        "{page}"
    );
    assert!(
        page.contains("<code>user-change</code></td><td>3</td>"),
        "{page}"
    );
    assert!(!page.contains("reboot"), "{page}");
    assert!(
        page.contains("Acknowledged risks (approving accepts them): <code>factory-reset</code>"),
        "{page}"
    );
    assert!(page.contains("shown (version 1)"), "{page}");
    // Any other token, or the same one once the schedule changed, shows none of it.
    let (_, _, page) = w
        .raw(
            "GET",
            &format!("{uri}?token={}", "ab".repeat(32)),
            None,
            None,
        )
        .await;
    assert!(
        !page.contains("factory-reset") && !page.contains("shown"),
        "{page}"
    );
    let (status, body) = w
        .call(
            "PUT",
            &format!("/scripts/scheduled/{id}"),
            &w.alice(),
            Some(json!({"launch_at": Utc::now() + TimeDelta::hours(2)})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (_, _, page) = w
        .raw("GET", &format!("{uri}?token={token}"), None, None)
        .await;
    assert!(!page.contains("factory-reset"), "{page}");
    assert!(
        page.contains("not valid for the scheduled script as it stands"),
        "{page}"
    );
}
