//! Who gets an event, and how: the organization's channels that take its kind, the
//! job's own `notify_url`, and the people it concerns (user ids resolved to addresses
//! through the users table).
//!
//! An approval link goes only by e-mail, and only to the user it was made for: each
//! recipient of a request gets a message of their own with their own link, and webhook
//! copies of the request carry everything but the links.

use std::collections::BTreeMap;

use chrono::Utc;
use serde_json::{Value, json};

use super::render::{self, Context};
use crate::plugins::net::Reach;
use crate::plugins::notifier::{Channel as WireChannel, Event as WireEvent, Recipient};
use crate::store::{Backend, ChannelKind, Operations, OutboxEvent, StoreError};

/// Event kinds that reach people; any other event is recorded as delivered to no one.
pub const NOTIFIED: &[&str] = &[
    "script.authorization_requested",
    "script.authorized",
    "script.launched",
    "script.site_finished",
    "script.run_finished",
    "script.cancelled",
    "script.approval_voided",
    "job.status",
];

/// The seed's job notification payload: exactly these fields, in this order.
pub const JOB_PAYLOAD_FIELDS: &[&str] = &[
    "job_id",
    "customer_id",
    "description",
    "router_id",
    "idempotency_key",
    "express_execute",
    "needs_acknowledgement",
    "make_backup",
    "seq_id",
    "started_at",
    "completed_at",
    "failed_at",
    "deleted_at",
    "status",
];

/// The delivery key of a job's notify URL.
pub const NOTIFY_URL: &str = "notify_url";

/// One delivery of an event: which plugin, to which channel, with what.
#[derive(Debug, Clone)]
pub(crate) struct Delivery {
    /// Stable across attempts: `channel:<id>` or `notify_url`.
    pub key: String,
    pub plugin: String,
    pub channel: WireChannel,
    pub event: WireEvent,
    /// What the plugin may reach for this delivery.
    pub reach: Reach,
}

/// Everything one event is to become.
#[derive(Debug, Clone, Default)]
pub(crate) struct Plan {
    pub organization: Option<String>,
    pub deliveries: Vec<Delivery>,
}

/// What the router needs from outside the store.
pub(crate) struct Routing<'a> {
    pub store: &'a Backend,
    pub public_url: &'a str,
    pub allow_http: &'a [String],
    /// The secret of an organization's generation (see
    /// [`Operations::notify_secret_generation`]) that signs deliveries to a job's notify URL.
    pub signing_secret: &'a (dyn Fn(&str, u32) -> String + Sync),
}

/// Events of one job, or of one schedule, are delivered in order; this is their key.
pub(crate) fn order_key(event: &OutboxEvent) -> String {
    let p = &event.payload;
    if let Some(job) = p.get("job_id").and_then(Value::as_str)
        && event.kind == "job.status"
    {
        return format!("job:{job}");
    }
    match p.get("schedule_id").and_then(Value::as_str) {
        Some(schedule) => format!("schedule:{schedule}"),
        None => format!("event:{}", event.id),
    }
}

pub(crate) async fn plan(routing: &Routing<'_>, event: &OutboxEvent) -> Result<Plan, StoreError> {
    if !NOTIFIED.contains(&event.kind.as_str()) {
        return Ok(Plan::default());
    }
    let payload = &event.payload;
    let schedule = match payload.get("schedule_id").and_then(Value::as_str) {
        Some(id) => match routing.store.get_schedule(id).await {
            Ok(s) => Some(s),
            Err(StoreError::NotFound { .. }) => None,
            Err(e) => return Err(e),
        },
        None => None,
    };
    let organization = payload
        .get("organization")
        .or_else(|| payload.get("customer_id"))
        .and_then(Value::as_str)
        .map(str::to_owned)
        .or_else(|| schedule.as_ref().map(|s| s.organization.clone()));
    let Some(organization) = organization else {
        return Ok(Plan::default());
    };
    let description = schedule
        .as_ref()
        .map(|s| s.description.as_str())
        .or_else(|| payload.get("description").and_then(Value::as_str))
        .unwrap_or("");
    // Each recipient's own approval link, absolute.
    let link_of = |user: &str| {
        payload
            .get("links")
            .and_then(|links| links.get(user))
            .and_then(Value::as_str)
            .map(|path| format!("{}{path}", routing.public_url.trim_end_matches('/')))
    };
    let authorization = event.kind == "script.authorization_requested";
    let message_with = |link: Option<&str>| {
        render::render(
            &event.kind,
            payload,
            &Context {
                description,
                link,
                script: schedule.as_ref().map(|s| s.script.as_str()),
            },
        )
    };
    let message = message_with(None);
    // Without the link, for every delivery but the authorizers' e-mail.
    let public = render::render(
        &event.kind,
        payload,
        &Context {
            description,
            link: None,
            script: None,
        },
    );
    let occurred_at = event.created_at.to_rfc3339();
    let id = event.id.to_string();

    // The people the event concerns: those asked to authorize, those told that an
    // approval is void, or the schedule's recipients (its creator when it names none).
    let user_ids: Vec<String> = if authorization || event.kind == "script.approval_voided" {
        strings(payload.get("recipients"))
    } else if let Some(s) = &schedule {
        if s.notify.is_empty() {
            vec![s.created_by.clone()]
        } else {
            s.notify.clone()
        }
    } else {
        strings(payload.get("notify"))
    };
    let people = resolve_users(routing.store, &organization, &user_ids).await?;

    let mut deliveries = Vec::new();
    if event.kind == "job.status"
        && let Some(url) = payload.get("notify_url").and_then(Value::as_str)
    {
        // Written field by field so the body keeps the seed's order.
        let fields: Vec<String> = JOB_PAYLOAD_FIELDS
            .iter()
            .map(|f| {
                let value = payload.get(*f).cloned().unwrap_or(Value::Null);
                format!("{}:{value}", Value::from(*f))
            })
            .collect();
        let body = format!("{{{}}}", fields.join(","));
        let generation = routing
            .store
            .notify_secret_generation(&organization)
            .await?;
        let secret = |generation| (routing.signing_secret)(&organization, generation);
        let mut settings = vec![
            ("url".into(), url.to_owned()),
            ("secret".into(), secret(generation.generation)),
            ("allow_http".into(), routing.allow_http.join(",")),
        ];
        // Just after a rotation, the previous secret signs beside the new one.
        if let Some(previous) = generation.previous_at(Utc::now()) {
            settings.push(("previous_secret".into(), secret(previous)));
        }
        deliveries.push(Delivery {
            key: NOTIFY_URL.to_owned(),
            plugin: ChannelKind::Webhook.default_plugin().to_owned(),
            reach: super::settings::receiver_reach(url, routing.allow_http),
            channel: WireChannel {
                name: NOTIFY_URL.to_owned(),
                settings,
            },
            event: WireEvent {
                id: id.clone(),
                kind: event.kind.clone(),
                occurred_at: occurred_at.clone(),
                subject: public.subject.clone(),
                text: public.text.clone(),
                html: None,
                payload: body,
                recipients: Vec::new(),
            },
        });
    }

    // A channel's copy of the event, as one message shows it.
    let wire_event =
        |shown: &render::Message, payload: String, recipients: Vec<Recipient>| WireEvent {
            id: id.clone(),
            kind: event.kind.clone(),
            occurred_at: occurred_at.clone(),
            subject: shown.subject.clone(),
            text: shown.text.clone(),
            html: Some(shown.html.clone()),
            payload,
            recipients,
        };
    for channel in routing.store.list_channels(&organization).await? {
        if !channel.takes(&event.kind) {
            continue;
        }
        let mut settings: BTreeMap<String, String> = channel.settings.clone();
        settings.extend(
            routing
                .store
                .channel_secrets(&organization, &channel.id, Utc::now())
                .await?,
        );
        let shown = match channel.kind {
            ChannelKind::Email => &message,
            ChannelKind::Webhook => &public,
        };
        let (payload_json, recipients) = match channel.kind {
            ChannelKind::Webhook => {
                settings.insert("allow_http".into(), routing.allow_http.join(","));
                let data = without_links(payload);
                let body = json!({
                    "id": id,
                    "type": event.kind,
                    "occurred_at": occurred_at,
                    "organization": organization,
                    "subject": public.subject,
                    "data": data,
                });
                (body.to_string(), Vec::new())
            }
            ChannelKind::Email if authorization => {
                // One message per recipient, each with the link made for them alone.
                for (user, person) in &people {
                    let link = link_of(user);
                    let shown = message_with(link.as_deref());
                    deliveries.push(Delivery {
                        key: format!("channel:{}:{user}", channel.id),
                        plugin: channel.plugin.clone(),
                        reach: Reach::AllowListAnd(Vec::new()),
                        channel: WireChannel {
                            name: channel.name.clone(),
                            settings: settings.clone().into_iter().collect(),
                        },
                        event: wire_event(
                            &shown,
                            without_links(payload).to_string(),
                            vec![person.clone()],
                        ),
                    });
                }
                continue;
            }
            ChannelKind::Email => {
                let mut recipients: Vec<Recipient> =
                    people.iter().map(|(_, r)| r.clone()).collect();
                // The channel's own list (an operations mailbox, say) gets every event
                // it takes but approval links.
                for address in settings
                    .get("to")
                    .map(String::as_str)
                    .unwrap_or("")
                    .split(',')
                {
                    let address = address.trim();
                    if !address.is_empty() && !recipients.iter().any(|r| r.address == address) {
                        recipients.push(Recipient {
                            name: None,
                            address: address.to_owned(),
                        });
                    }
                }
                if recipients.is_empty() {
                    continue;
                }
                (without_links(payload).to_string(), recipients)
            }
        };
        // A webhook channel reaches its plugin's allow-list, and the hosts the operator
        // listed for plain http: naming a host there is enough to receive.
        let reach = match channel.kind {
            ChannelKind::Webhook => {
                Reach::AllowListAnd(super::settings::listed_hosts(routing.allow_http))
            }
            ChannelKind::Email => Reach::AllowListAnd(Vec::new()),
        };
        deliveries.push(Delivery {
            key: format!("channel:{}", channel.id),
            plugin: channel.plugin.clone(),
            reach,
            channel: WireChannel {
                name: channel.name.clone(),
                settings: settings.into_iter().collect(),
            },
            event: wire_event(shown, payload_json, recipients),
        });
    }
    Ok(Plan {
        organization: Some(organization),
        deliveries,
    })
}

/// The payload without approval links, for everything but a recipient's own message.
fn without_links(payload: &Value) -> Value {
    let mut data = payload.clone();
    if let Some(map) = data.as_object_mut() {
        map.remove("links");
        map.remove("link");
    }
    data
}

fn strings(value: Option<&Value>) -> Vec<String> {
    value
        .and_then(Value::as_array)
        .map(|list| {
            list.iter()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default()
}

/// The addresses of `ids` that are users of `organization`; others are left out (and
/// logged), so an event never reaches a mailbox outside its organization.
async fn resolve_users(
    store: &Backend,
    organization: &str,
    ids: &[String],
) -> Result<Vec<(String, Recipient)>, StoreError> {
    let mut out: Vec<(String, Recipient)> = Vec::new();
    for id in ids {
        match store.get_user(organization, id).await {
            Ok(user) if !user.email.is_empty() => {
                if !out.iter().any(|(_, r)| r.address == user.email) {
                    out.push((
                        id.clone(),
                        Recipient {
                            name: Some(user.name),
                            address: user.email,
                        },
                    ));
                }
            }
            Ok(_) => {
                tracing::warn!(user = %id, "not notified: the user has no address")
            }
            Err(StoreError::NotFound { .. }) => {
                tracing::warn!(user = %id, "not notified: no such user in the organization")
            }
            Err(e) => return Err(e),
        }
    }
    Ok(out)
}
