//! Every allowed and forbidden transition of the workflow, against a real store.

use chrono::{NaiveDate, NaiveTime, TimeDelta};

use super::*;
use crate::store::test_support::{open, t};
use crate::store::{
    LaunchPlan, Page, Recurrence, RecurrenceKind, ScheduleInput, SchedulePatch, ScheduleStatus,
    ScheduledScript, Store, User,
};

const CREATOR: &str = "auth0|creator";
const APPROVER: &str = "auth0|approver";
const TTL: TimeDelta = TimeDelta::hours(24);

fn who(user: &str, org: &str, scopes: &[&str]) -> Principal {
    Principal {
        user_id: user.into(),
        organization: org.into(),
        scopes: scopes.iter().map(|s| (*s).to_owned()).collect(),
    }
}

fn creator() -> Principal {
    who(
        CREATOR,
        "org1",
        &[SCOPE_CREATE, SCOPE_UPDATE, SCOPE_DELETE, SCOPE_AUTHORIZE],
    )
}

fn approver() -> Principal {
    who(APPROVER, "org1", &[SCOPE_AUTHORIZE])
}

/// A user of the organization with no scope at all, holding a link that was sent to
/// them: the link alone approves nothing.
fn link_holder() -> Principal {
    who(APPROVER, "org1", &[])
}

const FOUR_EYES: OrgPolicy = OrgPolicy {
    allow_self_approval: false,
};

fn input(name: &str) -> ScheduleInput {
    ScheduleInput {
        organization: "org1".into(),
        description: name.into(),
        script: "/routing bgp peer disable [find name=peer1]".into(),
        sites: vec!["site-a".into(), "site-b".into()],
        launch_at: Some(t(3600)),
        notify: vec![APPROVER.into()],
        created_by: CREATOR.into(),
        ..ScheduleInput::default()
    }
}

fn created(store: &Store) -> ScheduledScript {
    store
        .create_schedule(input("Nightly BGP peer maintenance"), t(0))
        .expect("create")
}

/// Requests approval and returns the token from the link the event carries.
fn requested(store: &Store, id: &str) -> String {
    let r = request(store, id, &creator(), t(10), TTL).expect("request");
    link_token(store, r.event_id)
}

fn link_token(store: &Store, event_id: u64) -> String {
    let event = store.get_event(event_id).expect("event");
    let link = event.payload["links"][APPROVER]
        .as_str()
        .expect("the approver's link")
        .to_owned();
    link.split_once("?token=")
        .expect("token in link")
        .1
        .to_owned()
}

/// The approval binding of a schedule as it stands, its targets resolved now.
fn binding(store: &Store, s: &ScheduledScript) -> String {
    store.approval_binding(s).expect("binding").0
}

fn status(store: &Store, id: &str) -> ScheduleStatus {
    store.get_schedule(id).expect("get").status
}

fn events_of(store: &Store, kind: &str) -> Vec<serde_json::Value> {
    store
        .due_events(t(1_000_000), 1000)
        .expect("events")
        .into_iter()
        .filter(|e| e.kind == kind)
        .map(|e| e.payload)
        .collect()
}

fn audit_actions(store: &Store) -> Vec<(String, String)> {
    store
        .list_audit(&Page::first(1000))
        .expect("audit")
        .into_iter()
        .map(|a| (a.action, a.actor))
        .collect()
}

fn daily(start: (i32, u32, u32), end: Option<(i32, u32, u32)>) -> Recurrence {
    let date = |(y, m, d)| NaiveDate::from_ymd_opt(y, m, d).expect("date");
    Recurrence {
        kind: RecurrenceKind::Daily,
        interval: None,
        days_of_week: vec![],
        day_of_month: None,
        start_date: date(start),
        end_date: end.map(date),
        start_time: NaiveTime::from_hms_opt(4, 0, 0).expect("time"),
        timezone: "Europe/Berlin".into(),
    }
}

#[test]
fn a_second_user_approves_an_unauthorized_schedule() {
    let (_dir, store) = open();
    let s = created(&store);
    let done = approve(&store, &s.id, &approver(), None, FOUR_EYES, t(20)).expect("approve");
    assert!(!done.via_link);
    assert_eq!(done.next_launch_at, t(3600));
    let after = store.get_schedule(&s.id).expect("get");
    assert_eq!(after.status, ScheduleStatus::Scheduled);
    assert_eq!(after.authorized_by.as_deref(), Some(APPROVER));
    assert_eq!(after.authorized_at, Some(t(20)));
    assert_eq!(
        after.approval.as_deref(),
        Some(binding(&store, &s).as_str())
    );
    assert_eq!(after.next_launch_at, Some(t(3600)));
    assert_eq!(
        audit_actions(&store),
        vec![
            (crate::store::AUDIT_CREATED.to_owned(), CREATOR.to_owned()),
            (EVENT_AUTHORIZED.to_owned(), APPROVER.to_owned())
        ]
    );
    let events = events_of(&store, EVENT_AUTHORIZED);
    assert_eq!(events.len(), 1);
    assert_eq!(events[0]["authorized_by"], APPROVER);
    assert_eq!(events[0]["approval"], binding(&store, &s));
    // The store launches it under the approval it was given.
    let plan = LaunchPlan {
        schedule_id: s.id.clone(),
        occurrence: 0,
        scheduled_for: t(3600),
        approval: binding(&store, &after),
        sites: after.sites.clone(),
        more_batches: false,
        next_launch_at: None,
    };
    store.launch(plan, t(3600)).expect("launch");
}

#[test]
fn the_creator_is_refused_without_the_org_policy() {
    let (_dir, store) = open();
    let s = created(&store);
    let err = approve(&store, &s.id, &creator(), None, FOUR_EYES, t(20)).expect_err("four eyes");
    assert!(matches!(err, ApprovalError::SelfApproval), "{err}");
    assert_eq!(err.http_status(), 403);
    assert_eq!(status(&store, &s.id), ScheduleStatus::Unauthorized);
    assert!(events_of(&store, EVENT_AUTHORIZED).is_empty());
}

#[test]
fn the_creator_may_approve_when_the_org_allows_it() {
    let (_dir, store) = open();
    let s = created(&store);
    let policy = OrgPolicy {
        allow_self_approval: true,
    };
    approve(&store, &s.id, &creator(), None, policy, t(20)).expect("self-approval");
    assert_eq!(status(&store, &s.id), ScheduleStatus::Scheduled);
    let audit = store.list_audit(&Page::first(10)).expect("audit");
    let approval = audit
        .iter()
        .find(|a| a.action == EVENT_AUTHORIZED)
        .expect("audited");
    assert_eq!(approval.detail["self_approval"], true);
}

#[test]
fn a_user_without_the_scope_or_a_link_is_forbidden() {
    let (_dir, store) = open();
    let s = created(&store);
    let only_update = who(APPROVER, "org1", &[SCOPE_UPDATE, SCOPE_CREATE]);
    let err = approve(&store, &s.id, &only_update, None, FOUR_EYES, t(20)).expect_err("scope");
    assert!(
        matches!(err, ApprovalError::Forbidden { scope } if scope == SCOPE_AUTHORIZE),
        "{err}"
    );
    assert_eq!(err.http_status(), 403);
    assert_eq!(status(&store, &s.id), ScheduleStatus::Unauthorized);
}

#[test]
fn another_organization_gets_not_found_and_never_the_data() {
    let (_dir, store) = open();
    let s = created(&store);
    let token = requested(&store, &s.id);
    let stranger = who(
        "auth0|stranger",
        "org2",
        &[SCOPE_CREATE, SCOPE_UPDATE, SCOPE_DELETE, SCOPE_AUTHORIZE],
    );
    let errors = [
        approve(&store, &s.id, &stranger, None, FOUR_EYES, t(20)).map(|_| ()),
        approve(&store, &s.id, &stranger, Some(&token), FOUR_EYES, t(20)).map(|_| ()),
        request(&store, &s.id, &stranger, t(20), TTL).map(|_| ()),
        cancel(&store, &s.id, &stranger, t(20)).map(|_| ()),
    ];
    for err in errors {
        let err = err.expect_err("refused");
        assert!(matches!(err, ApprovalError::NotFound { .. }), "{err}");
        assert_eq!(err.http_status(), 404);
        let msg = err.to_string();
        assert!(!msg.contains("bgp") && !msg.contains("Nightly"), "{msg}");
    }
    // Exactly what an unknown id answers.
    let unknown =
        approve(&store, "no-such-id", &stranger, None, FOUR_EYES, t(20)).expect_err("unknown");
    assert!(
        matches!(unknown, ApprovalError::NotFound { .. }),
        "{unknown}"
    );
    assert_eq!(status(&store, &s.id), ScheduleStatus::Unauthorized);
    // The stranger's attempt with the link did not use it up.
    approve(&store, &s.id, &approver(), Some(&token), FOUR_EYES, t(30)).expect("link");
}

#[test]
fn a_request_records_itself_and_sends_a_single_use_link_to_the_recipients() {
    let (_dir, store) = open();
    let s = created(&store);
    let r = request(&store, &s.id, &creator(), t(10), TTL).expect("request");
    assert_eq!(r.schedule.authorization_requested_at, Some(t(10)));
    assert_eq!(r.recipients, vec![APPROVER.to_owned()]);
    assert_eq!(r.expires_at, t(10) + TTL);
    let event = store.get_event(r.event_id).expect("event");
    assert_eq!(event.kind, EVENT_REQUESTED);
    assert_eq!(event.payload["recipients"], serde_json::json!([APPROVER]));
    assert_eq!(event.payload["recipients_from"], "notify");
    let link = event.payload["links"][APPROVER].as_str().expect("link");
    let prefix = format!("/scripts/scheduled/{}/authorize?token=", s.id);
    let token = link.strip_prefix(prefix.as_str()).expect("link path");
    assert_eq!(token.len(), 64, "256 bits in hex");
    assert!(token.bytes().all(|b| b.is_ascii_hexdigit()));
    assert_eq!(
        audit_actions(&store),
        vec![
            (crate::store::AUDIT_CREATED.to_owned(), CREATOR.to_owned()),
            (EVENT_REQUESTED.to_owned(), CREATOR.to_owned())
        ]
    );
    // A second request gives a different link.
    let again = request(&store, &s.id, &creator(), t(11), TTL).expect("again");
    assert_ne!(link_token(&store, again.event_id), token);
}

#[test]
fn without_notify_users_every_user_of_the_organization_is_a_recipient() {
    let (_dir, store) = open();
    for (id, org) in [("u-1", "org1"), ("u-2", "org1"), ("u-3", "org2")] {
        store
            .put_user(&User {
                id: id.into(),
                name: id.into(),
                email: format!("{id}@example.com"),
                organization: org.into(),
                created_at: t(0),
            })
            .expect("user");
    }
    let mut i = input("No recipients named");
    i.notify.clear();
    let s = store.create_schedule(i, t(0)).expect("create");
    let r = request(&store, &s.id, &creator(), t(10), TTL).expect("request");
    assert_eq!(r.recipients, vec!["u-1".to_owned(), "u-2".to_owned()]);
    let event = store.get_event(r.event_id).expect("event");
    assert_eq!(event.payload["recipients_from"], "organization");
}

#[test]
fn a_request_needs_a_writer_and_an_unauthorized_schedule() {
    let (_dir, store) = open();
    let s = created(&store);
    let err = request(&store, &s.id, &approver(), t(10), TTL).expect_err("scope");
    assert!(matches!(err, ApprovalError::Forbidden { .. }), "{err}");
    let err = request(&store, &s.id, &creator(), t(10), TimeDelta::zero()).expect_err("ttl");
    assert!(matches!(err, ApprovalError::Invalid { .. }), "{err}");
    approve(&store, &s.id, &approver(), None, FOUR_EYES, t(20)).expect("approve");
    let err = request(&store, &s.id, &creator(), t(30), TTL).expect_err("scheduled");
    assert!(matches!(err, ApprovalError::Conflict { .. }), "{err}");
    assert_eq!(err.http_status(), 409);
}

#[test]
fn a_link_never_approves_without_the_scope() {
    let (_dir, store) = open();
    let s = created(&store);
    let token = requested(&store, &s.id);
    let err = approve(
        &store,
        &s.id,
        &link_holder(),
        Some(&token),
        FOUR_EYES,
        t(19),
    )
    .expect_err("a link is no scope");
    assert!(
        matches!(err, ApprovalError::Forbidden { scope } if scope == SCOPE_AUTHORIZE),
        "{err}"
    );
    assert_eq!(status(&store, &s.id), ScheduleStatus::Unauthorized);
    // Its recipient, holding the scope, approves with it.
    let done = approve(&store, &s.id, &approver(), Some(&token), FOUR_EYES, t(20))
        .expect("approve by link");
    assert!(done.via_link);
    let after = store.get_schedule(&s.id).expect("get");
    assert_eq!(after.status, ScheduleStatus::Scheduled);
    assert_eq!(after.authorized_by.as_deref(), Some(APPROVER));
    let audit = store.list_audit(&Page::first(10)).expect("audit");
    assert_eq!(
        audit.last().map(|a| a.detail["via"].clone()),
        Some("link".into())
    );
}

#[test]
fn a_link_does_not_let_the_creator_approve() {
    let (_dir, store) = open();
    let s = created(&store);
    let token = requested(&store, &s.id);
    let err =
        approve(&store, &s.id, &creator(), Some(&token), FOUR_EYES, t(20)).expect_err("four eyes");
    assert!(matches!(err, ApprovalError::SelfApproval), "{err}");
    // The refusal left the link for someone else.
    approve(&store, &s.id, &approver(), Some(&token), FOUR_EYES, t(21)).expect("other user");
}

#[test]
fn an_expired_link_is_refused_even_for_a_holder_of_the_scope() {
    let (_dir, store) = open();
    let s = created(&store);
    let ttl = TimeDelta::minutes(10);
    let r = request(&store, &s.id, &creator(), t(10), ttl).expect("request");
    let token = link_token(&store, r.event_id);
    let expiry = t(10) + ttl;
    let err =
        approve(&store, &s.id, &approver(), Some(&token), FOUR_EYES, expiry).expect_err("expired");
    assert!(matches!(err, ApprovalError::ExpiredToken), "{err}");
    assert_eq!(err.http_status(), 410);
    assert_eq!(status(&store, &s.id), ScheduleStatus::Unauthorized);
    // One second before expiry it still works.
    approve(
        &store,
        &s.id,
        &approver(),
        Some(&token),
        FOUR_EYES,
        expiry - TimeDelta::seconds(1),
    )
    .expect("in time");
}

#[test]
fn a_used_link_does_not_approve_again() {
    let (_dir, store) = open();
    let s = created(&store);
    let token = requested(&store, &s.id);
    approve(&store, &s.id, &approver(), Some(&token), FOUR_EYES, t(20)).expect("first use");
    // Straight after: the schedule is already scheduled.
    let err =
        approve(&store, &s.id, &approver(), Some(&token), FOUR_EYES, t(21)).expect_err("reuse");
    assert!(matches!(err, ApprovalError::Conflict { .. }), "{err}");
    // Edited away and back to the very version the link was issued for: its hash
    // matches again, and still the link is spent.
    let original = s.script.clone();
    let edit = |script: &str, at| {
        store
            .update_schedule(
                &s.id,
                SchedulePatch {
                    script: Some(script.into()),
                    ..SchedulePatch::default()
                },
                CREATOR,
                at,
            )
            .expect("edit")
    };
    edit("/system reboot", t(30));
    let back = edit(&original, t(31));
    assert_eq!(back.status, ScheduleStatus::Unauthorized);
    assert_eq!(binding(&store, &back), binding(&store, &s));
    let err =
        approve(&store, &s.id, &approver(), Some(&token), FOUR_EYES, t(32)).expect_err("reuse");
    assert!(
        matches!(err, ApprovalError::InvalidToken { reason } if reason.contains("already been used")),
        "{err}"
    );
}

#[test]
fn forged_and_foreign_links_are_refused() {
    let (_dir, store) = open();
    let s = created(&store);
    let other = store
        .create_schedule(input("Another schedule"), t(0))
        .expect("create");
    let foreign = requested(&store, &other.id);
    let forged = "0".repeat(64);
    for token in [foreign.as_str(), forged.as_str(), "", "not hex at all"] {
        let err = approve(&store, &s.id, &approver(), Some(token), FOUR_EYES, t(20))
            .expect_err("refused");
        assert!(matches!(err, ApprovalError::InvalidToken { .. }), "{err}");
        assert_eq!(err.http_status(), 403);
    }
    assert_eq!(status(&store, &s.id), ScheduleStatus::Unauthorized);
    // The attempt on the wrong schedule did not spend the link of the right one.
    approve(
        &store,
        &other.id,
        &approver(),
        Some(&foreign),
        FOUR_EYES,
        t(21),
    )
    .expect("own");
}

#[test]
fn a_link_sent_before_an_edit_does_not_approve_the_edited_script() {
    let (_dir, store) = open();
    let s = created(&store);
    let token = requested(&store, &s.id);
    let edited = store
        .update_schedule(
            &s.id,
            SchedulePatch {
                sites: Some(vec!["site-a".into(), "site-b".into(), "site-c".into()]),
                ..SchedulePatch::default()
            },
            CREATOR,
            t(15),
        )
        .expect("edit");
    assert_ne!(binding(&store, &edited), binding(&store, &s));
    let err = approve(&store, &s.id, &approver(), Some(&token), FOUR_EYES, t(20))
        .expect_err("stale link");
    assert!(
        matches!(err, ApprovalError::InvalidToken { reason } if reason.contains("changed")),
        "{err}"
    );
    assert_eq!(status(&store, &s.id), ScheduleStatus::Unauthorized);
    // A new request for the edited version gives a link that works.
    let fresh = requested(&store, &s.id);
    approve(&store, &s.id, &approver(), Some(&fresh), FOUR_EYES, t(30)).expect("fresh link");
    let after = store.get_schedule(&s.id).expect("get");
    assert_eq!(after.approval, Some(binding(&store, &edited)));
}

#[test]
fn an_edit_after_approval_returns_the_schedule_to_unauthorized() {
    let (_dir, store) = open();
    let s = created(&store);
    approve(&store, &s.id, &approver(), None, FOUR_EYES, t(20)).expect("approve");
    type Patch = fn() -> SchedulePatch;
    let patches: [(&str, Patch); 8] = [
        ("script", || SchedulePatch {
            script: Some(
                "/ip firewall filter add chain=input action=drop\n/user remove [find name=old]"
                    .into(),
            ),
            acknowledged_risks: Some(vec!["input-drop-without-accept".into()]),
            ..SchedulePatch::default()
        }),
        ("sites", || SchedulePatch {
            sites: Some(vec!["site-a".into()]),
            ..SchedulePatch::default()
        }),
        ("tags", || SchedulePatch {
            tags: Some(vec!["core".into()]),
            ..SchedulePatch::default()
        }),
        ("test site", || SchedulePatch {
            test_site_id: Some(Some("site-a".into())),
            ..SchedulePatch::default()
        }),
        ("launch_at", || SchedulePatch {
            launch_at: Some(Some(t(7200))),
            ..SchedulePatch::default()
        }),
        ("make_backup", || SchedulePatch {
            make_backup: Some(true),
            ..SchedulePatch::default()
        }),
        ("abort_if_offline", || SchedulePatch {
            abort_if_offline: Some(true),
            ..SchedulePatch::default()
        }),
        ("acknowledged_risks", || SchedulePatch {
            acknowledged_risks: Some(vec![
                "user-change".into(),
                "input-drop-without-accept".into(),
            ]),
            ..SchedulePatch::default()
        }),
    ];
    for (i, (what, patch)) in patches.into_iter().enumerate() {
        let at = 100 + i as i64 * 10;
        let before = store.get_schedule(&s.id).expect("get");
        assert_eq!(before.status, ScheduleStatus::Scheduled, "{what}");
        let edited = store
            .update_schedule(&s.id, patch(), CREATOR, t(at))
            .expect("edit");
        assert_eq!(edited.status, ScheduleStatus::Unauthorized, "{what}");
        assert_eq!(edited.approval, None, "{what}");
        assert_eq!(edited.authorized_by, None, "{what}");
        assert_eq!(edited.next_launch_at, None, "{what}");
        assert_ne!(binding(&store, &edited), binding(&store, &before), "{what}");
        // It needs, and gets, a new approval bound to the new version.
        approve(&store, &s.id, &approver(), None, FOUR_EYES, t(at + 1)).expect("re-approve");
        let again = store.get_schedule(&s.id).expect("get");
        assert_eq!(again.approval, Some(binding(&store, &edited)), "{what}");
    }
    // An edit of something that does not run keeps the approval.
    let kept = store
        .update_schedule(
            &s.id,
            SchedulePatch {
                description: Some("Renamed".into()),
                ..SchedulePatch::default()
            },
            CREATOR,
            t(500),
        )
        .expect("rename");
    assert_eq!(kept.status, ScheduleStatus::Scheduled);
    assert_eq!(kept.approval, Some(binding(&store, &kept)));
}

#[test]
fn a_cancelled_schedule_cannot_be_approved() {
    let (_dir, store) = open();
    let s = created(&store);
    let token = requested(&store, &s.id);
    let err = cancel(&store, &s.id, &approver(), t(15)).expect_err("scope");
    assert!(matches!(err, ApprovalError::Forbidden { .. }), "{err}");
    let deleter = who("auth0|deleter", "org1", &[SCOPE_DELETE]);
    let cancelled = cancel(&store, &s.id, &deleter, t(16)).expect("cancel");
    assert_eq!(cancelled.status, ScheduleStatus::Cancelled);
    assert_eq!(cancelled.cancelled_at, Some(t(16)));
    for token in [None, Some(token.as_str())] {
        let err =
            approve(&store, &s.id, &approver(), token, FOUR_EYES, t(20)).expect_err("cancelled");
        assert!(
            matches!(&err, ApprovalError::Conflict { reason, .. } if reason.contains("cancelled")),
            "{err}"
        );
    }
    let err = cancel(&store, &s.id, &creator(), t(30)).expect_err("twice");
    assert!(matches!(err, ApprovalError::Conflict { .. }), "{err}");
    let events = events_of(&store, EVENT_CANCELLED);
    assert_eq!(events.len(), 1);
    assert_eq!(events[0]["cancelled_by"], "auth0|deleter");
    assert_eq!(events[0]["previous_status"], "unauthorized");
    assert!(
        audit_actions(&store).contains(&(EVENT_CANCELLED.to_owned(), "auth0|deleter".to_owned()))
    );
}

#[test]
fn a_scheduled_schedule_can_be_cancelled_and_leaves_the_due_index() {
    let (_dir, store) = open();
    let s = created(&store);
    approve(&store, &s.id, &approver(), None, FOUR_EYES, t(20)).expect("approve");
    assert_eq!(store.due_schedules(t(3600), 10).expect("due").len(), 1);
    cancel(&store, &s.id, &creator(), t(30)).expect("cancel");
    assert!(store.due_schedules(t(3600), 10).expect("due").is_empty());
}

#[test]
fn a_launched_schedule_can_be_neither_edited_nor_approved() {
    let (_dir, store) = open();
    let mut i = input("Recurring");
    i.launch_at = None;
    i.recurrence = Some(daily((2027, 1, 1), None));
    let s = store.create_schedule(i, t(0)).expect("create");
    let done = approve(&store, &s.id, &approver(), None, FOUR_EYES, t(20)).expect("approve");
    let plan = LaunchPlan {
        schedule_id: s.id.clone(),
        occurrence: 15,
        scheduled_for: done.next_launch_at,
        approval: binding(&store, &done.schedule),
        sites: done.schedule.sites.clone(),
        more_batches: false,
        next_launch_at: Some(done.next_launch_at + TimeDelta::days(1)),
    };
    store.launch(plan, done.next_launch_at).expect("launch");
    assert_eq!(status(&store, &s.id), ScheduleStatus::Launched);
    let err = store
        .update_schedule(
            &s.id,
            SchedulePatch {
                script: Some("/system reboot".into()),
                ..SchedulePatch::default()
            },
            CREATOR,
            t(100_000),
        )
        .expect_err("launched cannot be edited");
    assert!(err.is_conflict(), "{err}");
    let err = approve(&store, &s.id, &approver(), None, FOUR_EYES, t(100_000))
        .expect_err("launched cannot be approved");
    assert!(
        matches!(&err, ApprovalError::Conflict { reason, .. } if reason.contains("launched")),
        "{err}"
    );
    let err = request(&store, &s.id, &creator(), t(100_000), TTL).expect_err("request");
    assert!(matches!(err, ApprovalError::Conflict { .. }), "{err}");
    // A launched schedule can still be stopped.
    cancel(&store, &s.id, &creator(), t(100_001)).expect("cancel launched");
}

#[test]
fn a_recurrence_is_approved_for_its_next_occurrence() {
    let (_dir, store) = open();
    let mut i = input("Daily at four in Berlin");
    i.launch_at = None;
    i.recurrence = Some(daily((2027, 1, 1), None));
    let s = store.create_schedule(i, t(0)).expect("create");
    let done = approve(&store, &s.id, &approver(), None, FOUR_EYES, t(0)).expect("approve");
    // t(0) is 2027-01-15 08:00 UTC; 04:00 in Berlin (CET) is 03:00 UTC the next day.
    assert_eq!(
        done.next_launch_at.to_rfc3339(),
        "2027-01-16T03:00:00+00:00"
    );
    assert_eq!(done.schedule.next_launch_at, Some(done.next_launch_at));
}

#[test]
fn a_recurrence_with_no_future_occurrence_is_refused() {
    let (_dir, store) = open();
    let mut i = input("Ended last year");
    i.launch_at = None;
    i.recurrence = Some(daily((2026, 1, 1), Some((2026, 1, 31))));
    let s = store.create_schedule(i, t(0)).expect("create");
    let err = approve(&store, &s.id, &approver(), None, FOUR_EYES, t(20)).expect_err("no future");
    assert!(
        matches!(
            err,
            ApprovalError::Invalid {
                field: "recurrence",
                ..
            }
        ),
        "{err}"
    );
    assert_eq!(err.http_status(), 422);
    assert_eq!(status(&store, &s.id), ScheduleStatus::Unauthorized);
}

#[test]
fn a_launch_time_in_the_past_or_an_invalid_rule_is_refused() {
    let (_dir, store) = open();
    let s = created(&store);
    let err = approve(&store, &s.id, &approver(), None, FOUR_EYES, t(3600)).expect_err("past");
    assert!(
        matches!(
            err,
            ApprovalError::Invalid {
                field: "launch_at",
                ..
            }
        ),
        "{err}"
    );

    let mut i = input("Nowhere");
    i.launch_at = None;
    let mut rule = daily((2027, 1, 1), None);
    rule.timezone = "Mars/Olympus_Mons".into();
    i.recurrence = Some(rule);
    let s = store.create_schedule(i, t(0)).expect("create");
    let err = approve(&store, &s.id, &approver(), None, FOUR_EYES, t(20)).expect_err("zone");
    assert!(
        matches!(&err, ApprovalError::Invalid { reason, .. } if reason.contains("timezone")),
        "{err}"
    );
}

#[test]
fn every_error_has_its_http_status() {
    let cases = [
        (
            ApprovalError::Forbidden {
                scope: SCOPE_AUTHORIZE,
            },
            403,
        ),
        (ApprovalError::SelfApproval, 403),
        (ApprovalError::NotFound { id: "x".into() }, 404),
        (
            ApprovalError::Conflict {
                id: "x".into(),
                reason: "r".into(),
            },
            409,
        ),
        (ApprovalError::ExpiredToken, 410),
        (ApprovalError::InvalidToken { reason: "r" }, 403),
        (
            ApprovalError::Invalid {
                field: "f",
                reason: "r".into(),
            },
            422,
        ),
    ];
    for (err, code) in cases {
        assert_eq!(err.http_status(), code, "{err}");
    }
}

#[test]
fn a_schedule_never_launches_under_an_approval_its_edit_made_stale() {
    // Whatever the store does with an edit of the missed-run policy (reset the approval
    // or keep it), the approval hash covers the policy, so the old approval cannot
    // launch the edited schedule.
    let (_dir, store) = open();
    let mut i = input("Policy edit");
    i.launch_at = None;
    i.recurrence = Some(daily((2027, 1, 1), None));
    let s = store.create_schedule(i, t(0)).expect("create");
    let done = approve(&store, &s.id, &approver(), None, FOUR_EYES, t(20)).expect("approve");
    let edited = store
        .update_schedule(
            &s.id,
            SchedulePatch {
                missed_runs: Some(crate::store::MissedRunPolicy::RunOnce),
                ..SchedulePatch::default()
            },
            CREATOR,
            t(30),
        )
        .expect("edit");
    assert_eq!(edited.status, crate::store::ScheduleStatus::Unauthorized);
    assert_ne!(binding(&store, &edited), binding(&store, &done.schedule));
    let plan = LaunchPlan {
        schedule_id: s.id.clone(),
        occurrence: 15,
        scheduled_for: done.next_launch_at,
        approval: binding(&store, &edited),
        sites: edited.sites.clone(),
        more_batches: false,
        next_launch_at: None,
    };
    let err = store
        .launch(plan, done.next_launch_at)
        .expect_err("stale approval");
    assert!(err.is_conflict(), "{err}");
}

const EDITOR: &str = "auth0|editor";

/// A user who may edit and approve, as an organization's admin often can.
fn editor() -> Principal {
    who(EDITOR, "org1", &[SCOPE_UPDATE, SCOPE_AUTHORIZE])
}

fn script_edit(script: &str) -> SchedulePatch {
    SchedulePatch {
        script: Some(script.into()),
        ..SchedulePatch::default()
    }
}

#[test]
fn the_last_editor_cannot_approve_by_scope_or_by_link() {
    let (_dir, store) = open();
    let mut i = input("Edited by a second user");
    i.notify = vec![EDITOR.into(), APPROVER.into()];
    let s = store.create_schedule(i, t(0)).expect("create");
    // Bob rewrites Alice's script, then tries to approve it himself.
    let edited = store
        .update_schedule(&s.id, script_edit("/user remove [find]"), EDITOR, t(5))
        .expect("edit");
    assert_eq!(edited.editors, vec![CREATOR.to_owned(), EDITOR.to_owned()]);
    assert_eq!(edited.updated_by.as_deref(), Some(EDITOR));
    assert_eq!(edited.version, 2);
    let err = approve(&store, &s.id, &editor(), None, FOUR_EYES, t(10)).expect_err("scope");
    assert!(matches!(err, ApprovalError::SelfApproval), "{err}");
    // The link sent to him (he put himself on `notify`) does not help either.
    let r = request(&store, &s.id, &editor(), t(11), TTL).expect("request");
    let event = store.get_event(r.event_id).expect("event");
    let link = event.payload["links"][EDITOR].as_str().expect("his link");
    let token = link.split_once("?token=").expect("token").1;
    let err = approve(&store, &s.id, &editor(), Some(token), FOUR_EYES, t(12)).expect_err("link");
    assert!(matches!(err, ApprovalError::SelfApproval), "{err}");
    assert_eq!(status(&store, &s.id), ScheduleStatus::Unauthorized);
    assert!(events_of(&store, EVENT_AUTHORIZED).is_empty());
    // Nor does the store take it from him, whatever a caller skipped.
    let (hash, _) = store.approval_binding(&edited).expect("binding");
    let decision = crate::store::approvals::Decision {
        audit: crate::store::AuditInput {
            at: t(13),
            organization: "org1".into(),
            actor: EDITOR.into(),
            action: EVENT_AUTHORIZED.into(),
            target: s.id.clone(),
            detail: serde_json::Value::Null,
        },
        event: EVENT_AUTHORIZED,
        payload: serde_json::Value::Null,
    };
    let refused = store
        .authorize_schedule(
            &s.id,
            EDITOR,
            &hash,
            false,
            Some(t(3600)),
            None,
            decision,
            t(13),
        )
        .expect("store");
    assert!(matches!(
        refused,
        Err(crate::store::schedules::Refusal::OwnWork)
    ));
    assert_eq!(status(&store, &s.id), ScheduleStatus::Unauthorized);
    // A third user approves.
    approve(&store, &s.id, &approver(), None, FOUR_EYES, t(14)).expect("four eyes");
}

#[test]
fn an_edit_of_what_runs_is_remembered_after_it_is_undone() {
    let (_dir, store) = open();
    let s = created(&store);
    store
        .update_schedule(&s.id, script_edit("/system reboot"), EDITOR, t(5))
        .expect("edit");
    let back = store
        .update_schedule(&s.id, script_edit(&s.script), CREATOR, t(6))
        .expect("back");
    assert_eq!(back.script, s.script);
    assert!(back.editors.contains(&EDITOR.to_owned()));
    let err = approve(&store, &s.id, &editor(), None, FOUR_EYES, t(10)).expect_err("shaped it");
    assert!(matches!(err, ApprovalError::SelfApproval), "{err}");
}

#[test]
fn an_edit_of_who_is_told_does_not_make_an_editor() {
    let (_dir, store) = open();
    let s = created(&store);
    let edited = store
        .update_schedule(
            &s.id,
            SchedulePatch {
                notify: Some(vec![EDITOR.into()]),
                ..SchedulePatch::default()
            },
            EDITOR,
            t(5),
        )
        .expect("edit");
    assert_eq!(edited.editors, vec![CREATOR.to_owned()]);
    assert_eq!(edited.version, 1);
    approve(&store, &s.id, &editor(), None, FOUR_EYES, t(10)).expect("not the script's author");
}

#[test]
fn a_link_is_for_its_recipient_only() {
    let (_dir, store) = open();
    let carol = who("auth0|carol", "org1", &[SCOPE_AUTHORIZE]);
    let mut i = input("Two recipients");
    i.notify = vec![APPROVER.into(), carol.user_id.clone()];
    let s = store.create_schedule(i, t(0)).expect("create");
    let r = request(&store, &s.id, &creator(), t(10), TTL).expect("request");
    let event = store.get_event(r.event_id).expect("event");
    let links = event.payload["links"].as_object().expect("links");
    assert_eq!(links.len(), 2, "one link per recipient");
    assert_ne!(links[APPROVER], links[carol.user_id.as_str()]);
    let token = link_token(&store, r.event_id);
    let err = approve(&store, &s.id, &carol, Some(&token), FOUR_EYES, t(20)).expect_err("not hers");
    assert!(
        matches!(err, ApprovalError::InvalidToken { reason } if reason.contains("another user")),
        "{err}"
    );
    assert_eq!(status(&store, &s.id), ScheduleStatus::Unauthorized);
    // Her attempt did not spend it.
    approve(&store, &s.id, &approver(), Some(&token), FOUR_EYES, t(21)).expect("recipient");
}

#[test]
fn a_schedules_life_is_audited_with_who_and_what() {
    let (_dir, store) = open();
    let s = created(&store);
    store
        .update_schedule(&s.id, script_edit("/system identity print"), EDITOR, t(5))
        .expect("edit");
    request(&store, &s.id, &creator(), t(6), TTL).expect("request");
    approve(&store, &s.id, &approver(), None, FOUR_EYES, t(7)).expect("approve");
    cancel(&store, &s.id, &creator(), t(8)).expect("cancel");
    store.delete_schedule(&s.id, CREATOR, t(9)).expect("delete");
    let audit = store.list_audit(&Page::first(100)).expect("audit");
    let lines: Vec<(&str, &str)> = audit
        .iter()
        .map(|a| (a.action.as_str(), a.actor.as_str()))
        .collect();
    assert_eq!(
        lines,
        vec![
            (crate::store::AUDIT_CREATED, CREATOR),
            (crate::store::AUDIT_UPDATED, EDITOR),
            (EVENT_REQUESTED, CREATOR),
            (EVENT_AUTHORIZED, APPROVER),
            (EVENT_CANCELLED, CREATOR),
            (crate::store::AUDIT_DELETED, CREATOR),
        ]
    );
    assert_eq!(audit[1].detail["changed"], serde_json::json!(["script"]));
    assert_eq!(audit[1].detail["version"], 2);
    assert!(
        !audit[1].detail.to_string().contains("identity print"),
        "the audit names the script by its digest"
    );
    assert_eq!(
        audit[3].detail["editors"],
        serde_json::json!([CREATOR, EDITOR])
    );
}

/// A schedule on sites of the store, tagged `core`, approved; returns it and its sites.
fn approved_on_tag(store: &Store) -> (ScheduledScript, Vec<crate::store::Site>) {
    let sites: Vec<_> = ["r1", "r2"]
        .iter()
        .map(|name| {
            store
                .create_site(crate::store::sites::tests::input("org1", name), t(0))
                .expect("site")
        })
        .collect();
    let mut i = input("Tagged");
    i.sites.clear();
    i.tags = vec!["core".into()];
    let s = store.create_schedule(i, t(0)).expect("create");
    approve(store, &s.id, &approver(), None, FOUR_EYES, t(20)).expect("approve");
    (store.get_schedule(&s.id).expect("get"), sites)
}

fn launch_plan(s: &ScheduledScript, sites: Vec<String>) -> LaunchPlan {
    LaunchPlan {
        schedule_id: s.id.clone(),
        occurrence: 0,
        scheduled_for: t(3600),
        approval: s.approval.clone().expect("approved"),
        sites,
        more_batches: false,
        next_launch_at: None,
    }
}

fn assert_voided(store: &Store, s: &ScheduledScript, err: crate::store::StoreError, why: &str) {
    assert!(
        matches!(&err, crate::store::StoreError::ApprovalVoid { reasons, .. }
            if reasons.iter().any(|r| r.contains(why))),
        "{err}"
    );
    let after = store.get_schedule(&s.id).expect("get");
    assert_eq!(after.status, ScheduleStatus::Unauthorized);
    assert_eq!(after.approval, None);
    assert_eq!(after.next_launch_at, None);
    assert!(store.get_run(&s.id, 0).is_err(), "nothing launched");
    let voided = events_of(store, crate::store::EVENT_APPROVAL_VOIDED);
    assert_eq!(voided.len(), 1);
    assert_eq!(voided[0]["recipients"][0], APPROVER, "the approver is told");
    assert!(voided[0]["reasons"].to_string().contains(why));
}

#[test]
fn tags_are_resolved_when_approved_and_a_site_tagged_since_voids_the_launch() {
    let (_dir, store) = open();
    let (s, sites) = approved_on_tag(&store);
    let mut approved: Vec<String> = sites.iter().map(|x| x.id.clone()).collect();
    approved.sort();
    assert_eq!(
        s.approved_targets.as_ref().map(|t| t.sites.clone()),
        Some(approved.clone())
    );
    // A third router is tagged after the approval.
    let late = store
        .create_site(crate::store::sites::tests::input("org1", "r3"), t(30))
        .expect("late site");
    let mut with_late = approved.clone();
    with_late.push(late.id.clone());
    let err = store
        .launch(launch_plan(&s, with_late), t(3600))
        .expect_err("not covered");
    assert_voided(&store, &s, err, &format!("site {} was added", late.id));
}

#[test]
fn a_target_re_pointed_after_approval_voids_the_launch() {
    let (_dir, store) = open();
    let (s, sites) = approved_on_tag(&store);
    let mut moved = crate::store::sites::tests::input("org1", "r1");
    moved.address = "198.51.100.7".into();
    store
        .update_site(&sites[0].id, moved, t(30))
        .expect("re-point");
    let ids = sites.iter().map(|x| x.id.clone()).collect();
    let err = store
        .launch(launch_plan(&s, ids), t(3600))
        .expect_err("re-pointed");
    assert_voided(
        &store,
        &s,
        err,
        &format!("site {} changed: address", sites[0].id),
    );
}

#[test]
fn a_target_given_new_credentials_after_approval_voids_the_launch() {
    let (_dir, store) = open();
    let (s, sites) = approved_on_tag(&store);
    let mut rekeyed = crate::store::sites::tests::input("org1", "r2");
    rekeyed.password = Some(crate::store::Secret::new("another password"));
    store
        .update_site(&sites[1].id, rekeyed, t(30))
        .expect("new password");
    let ids = sites.iter().map(|x| x.id.clone()).collect();
    let err = store
        .launch(launch_plan(&s, ids), t(3600))
        .expect_err("new credential");
    assert_voided(&store, &s, err, "credentials");
}

#[test]
fn an_unchanged_fleet_launches_on_exactly_the_approved_sites() {
    let (_dir, store) = open();
    let (s, sites) = approved_on_tag(&store);
    let ids: Vec<String> = sites.iter().map(|x| x.id.clone()).collect();
    let launch = store
        .launch(launch_plan(&s, ids.clone()), t(3600))
        .expect("launch");
    assert_eq!(launch.created.len(), 2);
    assert!(events_of(&store, crate::store::EVENT_APPROVAL_VOIDED).is_empty());
}
