use std::collections::BTreeMap;

use serde_json::{Value, json};

use super::route::{self, Routing};
use super::*;
use chrono::TimeDelta;

use crate::store::{ChannelInput, ChannelKind, Page, Store, User};

fn store() -> (tempfile::TempDir, Arc<Store>) {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Arc::new(Store::open(dir.path()).expect("store"));
    (dir, store)
}

fn routing<'a>(
    store: &'a Backend,
    secret: &'a (dyn Fn(&str, u32) -> String + Sync),
) -> Routing<'a> {
    Routing {
        store,
        public_url: "https://ym.example/",
        allow_http: &[],
        signing_secret: secret,
    }
}

/// A setting of the first delivery `plan` makes.
fn setting_of(plan: &route::Plan, key: &str) -> Option<String> {
    plan.deliveries[0]
        .channel
        .settings
        .iter()
        .find(|(name, _)| name == key)
        .map(|(_, value)| value.clone())
}

fn user(id: &str, org: &str) -> User {
    User {
        id: id.into(),
        name: id.to_uppercase(),
        email: format!("{id}@example.com"),
        organization: org.into(),
        created_at: Utc::now(),
    }
}

#[test]
fn backoff_doubles_within_its_cap_with_jitter() {
    let config = NotifyConfig {
        backoff: Duration::from_millis(1000),
        max_backoff: Duration::from_millis(5000),
        ..NotifyConfig::default()
    };
    for (attempts, full) in [(1, 1000), (2, 2000), (3, 4000), (4, 5000), (40, 5000)] {
        for _ in 0..50 {
            let d = backoff(&config, attempts).num_milliseconds();
            assert!(d >= full / 2 && d <= full, "attempt {attempts}: {d} ms");
        }
    }
}

#[tokio::test]
async fn a_job_notify_url_gets_exactly_the_seed_payload_signed_per_organization() {
    let (_dir, store) = store();
    let event = {
        let id = store
            .append_event(
                "job.status",
                json!({
                    "notify_url": "https://example.com/notify",
                    "job_id": "j1", "customer_id": "org1", "description": "Log test message",
                    "router_id": "r1", "idempotency_key": "k1", "express_execute": false,
                    "needs_acknowledgement": true, "make_backup": false, "seq_id": 7,
                    "started_at": "2024-05-28T06:14:19Z", "completed_at": null,
                    "failed_at": null, "deleted_at": null, "status": "running",
                }),
                Utc::now(),
            )
            .expect("event");
        store.get_event(id).expect("get")
    };
    let notifications = Notifications::with_key(NotifyConfig::default(), b"k", String::new());
    let secret = |org: &str, generation| notifications.signing_secret(org, generation);
    let plan = route::plan(&routing(&Backend::Redb(store.clone()), &secret), &event)
        .await
        .expect("plan");
    assert_eq!(plan.organization.as_deref(), Some("org1"));
    assert_eq!(plan.deliveries.len(), 1);
    let d = &plan.deliveries[0];
    assert_eq!(d.key, "notify_url");
    assert_eq!(d.plugin, "webhook");
    let body: serde_json::Map<String, Value> =
        serde_json::from_str(&d.event.payload).expect("json");
    let mut fields: Vec<&str> = JOB_PAYLOAD_FIELDS.to_vec();
    fields.sort_unstable();
    assert_eq!(body.keys().map(String::as_str).collect::<Vec<_>>(), fields);
    assert_eq!(body["seq_id"], 7);
    assert_eq!(body["status"], "running");
    assert!(
        d.event
            .payload
            .starts_with("{\"job_id\":\"j1\",\"customer_id\":\"org1\"")
    );
    assert!(d.event.payload.ends_with("\"status\":\"running\"}"));
    let setting = |k: &str| setting_of(&plan, k);
    assert_eq!(
        setting("secret"),
        Some(notifications.signing_secret("org1", 0))
    );
    assert_eq!(setting("previous_secret"), None);
    assert_ne!(
        notifications.signing_secret("org1", 0),
        notifications.signing_secret("org2", 0)
    );

    // A rotation: the new secret signs, and the previous one beside it for the grace.
    let now = Utc::now();
    let rotated = store
        .rotate_notify_secret("org1", "admin", TimeDelta::hours(1), now)
        .expect("rotate");
    assert_eq!(rotated.generation, 1);
    assert_eq!(rotated.previous_at(now), Some(0));
    assert_eq!(rotated.previous_at(now + TimeDelta::hours(2)), None);
    let plan = route::plan(&routing(&Backend::Redb(store.clone()), &secret), &event)
        .await
        .expect("plan");
    let setting = |k: &str| setting_of(&plan, k);
    assert_eq!(
        setting("secret"),
        Some(notifications.signing_secret("org1", 1))
    );
    assert_eq!(
        setting("previous_secret"),
        Some(notifications.signing_secret("org1", 0))
    );
    assert_ne!(
        notifications.signing_secret("org1", 1),
        notifications.signing_secret("org1", 0)
    );
    // Without a grace, the old secret stops at once; the other organization is untouched.
    store
        .rotate_notify_secret("org1", "admin", TimeDelta::zero(), now)
        .expect("rotate");
    let plan = route::plan(&routing(&Backend::Redb(store.clone()), &secret), &event)
        .await
        .expect("plan");
    let setting = |k: &str| setting_of(&plan, k);
    assert_eq!(
        setting("secret"),
        Some(notifications.signing_secret("org1", 2))
    );
    assert_eq!(setting("previous_secret"), None);
    assert_eq!(
        store.notify_secret_generation("org2").expect("org2"),
        Default::default()
    );
    let audit = store.list_audit(&Page::first(10)).expect("audit");
    let rotations: Vec<_> = audit
        .iter()
        .filter(|a| a.action == crate::store::AUDIT_NOTIFY_SECRET_ROTATED)
        .collect();
    assert_eq!(rotations.len(), 2, "{audit:?}");
    assert_eq!(rotations[0].actor, "admin");
}

#[tokio::test]
async fn an_approval_link_goes_only_to_the_authorizers_mailboxes() {
    let (_dir, store) = store();
    for u in [
        user("ada", "org1"),
        user("bob", "org1"),
        user("eve", "org2"),
        // Another organization's `bob` is another user, and gets nothing of org1's.
        User {
            email: "bob@org2.example".into(),
            ..user("bob", "org2")
        },
    ] {
        store.put_user(&u).expect("user");
    }
    let channel = |name: &str, kind: ChannelKind, settings: &[(&str, &str)]| ChannelInput {
        organization: "org1".into(),
        name: name.into(),
        kind,
        plugin: None,
        events: Vec::new(),
        settings: settings
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        secrets: BTreeMap::from([("secret".into(), "s".into())]),
        created_by: "ada".into(),
    };
    store
        .create_channel(
            channel("mail", ChannelKind::Email, &[("to", "ops@example.com")]),
            Utc::now(),
        )
        .expect("mail");
    store
        .create_channel(
            channel(
                "hook",
                ChannelKind::Webhook,
                &[("url", "https://h.example/")],
            ),
            Utc::now(),
        )
        .expect("hook");
    let id = store
        .append_event(
            "script.authorization_requested",
            json!({
                "schedule_id": "gone", "organization": "org1", "description": "Nightly",
                "requested_by": "ada", "recipients": ["bob", "eve", "nobody"],
                "links": {
                    "bob": "/scripts/scheduled/gone/authorize?token=SECRET",
                    "eve": "/scripts/scheduled/gone/authorize?token=EVESECRET",
                },
            }),
            Utc::now(),
        )
        .expect("event");
    let event = store.get_event(id).expect("get");
    let secret = |_: &str, _| String::new();
    let plan = route::plan(&routing(&Backend::Redb(store.clone()), &secret), &event)
        .await
        .expect("plan");
    assert_eq!(plan.deliveries.len(), 2);
    for d in &plan.deliveries {
        if d.plugin == "email" {
            let to: Vec<&str> = d
                .event
                .recipients
                .iter()
                .map(|r| r.address.as_str())
                .collect();
            // Not eve (another organization), not the channel's own list; bob's message
            // carries his link and no one else's.
            assert_eq!(to, ["bob@example.com"]);
            assert!(!d.event.text.contains("EVESECRET"));
            assert!(
                d.event
                    .text
                    .contains("https://ym.example/scripts/scheduled/gone/authorize?token=SECRET")
            );
            assert!(!d.event.payload.contains("SECRET"));
        } else {
            assert!(!d.event.payload.contains("SECRET"));
            assert!(!d.event.text.contains("SECRET"));
            let body: Value = serde_json::from_str(&d.event.payload).expect("json");
            assert_eq!(body["id"], id.to_string());
            assert_eq!(body["type"], "script.authorization_requested");
        }
    }
}

#[tokio::test]
async fn without_its_plugin_an_event_is_retried_in_order_then_dead() {
    let (dir, store) = store();
    let mut options = crate::plugins::HostOptions::from_config(&crate::config::Config::default());
    options.plugins_dir = dir.path().join("plugins");
    options.cache_dir = None;
    let plugins = PluginHost::new(options).expect("host");
    let config = NotifyConfig {
        max_attempts: 2,
        backoff: Duration::from_millis(1),
        max_backoff: Duration::from_millis(2),
        ..NotifyConfig::default()
    };
    let deliverer = Arc::new(Deliverer::new(
        Arc::new(Backend::Redb(store.clone())),
        plugins,
        Notifications::with_key(config, b"k", String::new()),
    ));
    let job = |status: &str| json!({"notify_url": "https://example.com/n", "job_id": "j1", "customer_id": "org1", "status": status});
    let first = store
        .append_event("job.status", job("loaded"), Utc::now())
        .expect("first");
    let second = store
        .append_event("job.status", job("running"), Utc::now())
        .expect("second");
    deliverer.clone().round().await.expect("round");
    let a = store.get_event(first).expect("first");
    let b = store.get_event(second).expect("second");
    assert_eq!(a.attempts, 1);
    assert!(a.last_error.as_deref().unwrap_or("").contains("webhook"));
    assert_eq!(b.attempts, 0, "the second waits for the first");
    assert!(b.next_attempt_at >= a.next_attempt_at);
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(20)).await;
        deliverer.clone().round().await.expect("round");
        if store.get_event(second).expect("b").state == crate::store::OutboxState::Dead {
            break;
        }
    }
    let a = store.get_event(first).expect("first");
    let b = store.get_event(second).expect("second");
    assert_eq!(a.state, crate::store::OutboxState::Dead);
    assert_eq!(b.state, crate::store::OutboxState::Dead);
    assert!(a.dead_at <= b.dead_at, "dead in order");
    let dead = store
        .dead_events("org1", &crate::store::Page::first(10))
        .expect("dead");
    assert_eq!(
        dead.iter().map(|e| e.id).collect::<Vec<_>>(),
        [first, second]
    );
    assert!(
        store
            .dead_events("org2", &crate::store::Page::first(10))
            .expect("none")
            .is_empty()
    );
    let again = store
        .retry_dead_event("org1", first, Utc::now())
        .expect("retry");
    assert_eq!(again.attempts, 0);
    assert!(store.retry_dead_event("org2", second, Utc::now()).is_err());
    assert_eq!(
        store
            .dead_events("org1", &crate::store::Page::first(10))
            .expect("dead")
            .len(),
        1
    );
}

#[test]
fn signing_labels_cannot_collide_across_organizations() {
    let notifications = Notifications::with_key(NotifyConfig::default(), b"k", String::new());
    // Pairs whose labels were equal under `notify-url:<org>[:<n>]`: an organization
    // whose id ends in `:<n>` held another's secret of generation n.
    let old = |org: &str, generation: u32| match generation {
        0 => format!("notify-url:{org}"),
        n => format!("notify-url:{org}:{n}"),
    };
    for ((org_a, gen_a), (org_b, gen_b)) in [(("a:1", 0), ("a", 1)), (("acme:7", 0), ("acme", 7))] {
        assert_eq!(
            old(org_a, gen_a),
            old(org_b, gen_b),
            "the old encoding collided"
        );
        assert_ne!(
            notifications.signing_secret(org_a, gen_a),
            notifications.signing_secret(org_b, gen_b),
            "{org_a}/{gen_a} and {org_b}/{gen_b}"
        );
    }
    // Every (organization, generation) over ids made of separators, digits and NULs
    // gets a label of its own.
    let mut seen = std::collections::HashMap::new();
    let ids = [
        "",
        "a",
        "a:",
        ":1",
        "a:1",
        "a1",
        "1",
        "a\u{0}",
        "\u{0}\u{0}\u{0}\u{1}",
    ];
    for org in ids {
        for generation in [0, 1, 2, 10, 256] {
            let label = signing_label(org, generation);
            if let Some(other) = seen.insert(label, (org, generation)) {
                panic!("{org:?}/{generation} and {other:?} share a label");
            }
        }
    }
    // The same pair always derives the same secret (it is never stored).
    assert_eq!(
        notifications.signing_secret("a", 1),
        notifications.signing_secret("a", 1)
    );
}

#[tokio::test]
async fn a_notify_url_reaches_only_its_receiver_and_a_channel_its_allow_list_and_listed_hosts() {
    use crate::plugins::net::{Grant, Reach};
    let (_dir, store) = store();
    store
        .create_channel(
            ChannelInput {
                organization: "org1".into(),
                name: "hook".into(),
                kind: ChannelKind::Webhook,
                plugin: None,
                events: vec!["job.status".into()],
                settings: BTreeMap::from([("url".into(), "http://hooks.internal/".into())]),
                secrets: BTreeMap::from([("secret".into(), "s".into())]),
                created_by: "ada".into(),
            },
            Utc::now(),
        )
        .expect("hook");
    let id = store
        .append_event(
            "job.status",
            json!({
                "notify_url": "https://receiver.example.com:8443/n", "job_id": "j1",
                "customer_id": "org1", "status": "running",
            }),
            Utc::now(),
        )
        .expect("event");
    let event = store.get_event(id).expect("get");
    let secret = |_: &str, _| "s".to_owned();
    let allow_http = vec!["hooks.internal".to_owned()];
    let backend = Backend::Redb(store.clone());
    let routing = Routing {
        allow_http: &allow_http,
        ..routing(&backend, &secret)
    };
    let plan = route::plan(&routing, &event).await.expect("plan");
    let reach = |key: &str| {
        plan.deliveries
            .iter()
            .find(|d| d.key == key)
            .map(|d| d.reach.clone())
            .expect(key)
    };
    // Not the plugin's allow-list: the receiver's host and port, on public addresses.
    assert_eq!(
        reach("notify_url"),
        Reach::Only(vec![Grant::public_only("receiver.example.com", 8443)])
    );
    let channel = plan
        .deliveries
        .iter()
        .find(|d| d.key.starts_with("channel:"))
        .map(|d| d.reach.clone())
        .expect("the channel's delivery");
    assert_eq!(
        channel,
        Reach::AllowListAnd(vec![Grant::host("hooks.internal").expect("host")])
    );
}
