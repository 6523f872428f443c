//! Notification channels: where an organization's events go (a webhook, a mail server)
//! and which events each one takes.
//!
//! Secret settings (a webhook's signing secret, an SMTP password) are sealed with the
//! data dir's key, bound to the channel's id, and never returned by a read that serves
//! the API: [`Store::channel_secrets`] is for the deliverer alone. The tables are created
//! on first write, so a database written before them simply has no channels.

use std::collections::BTreeMap;

use chrono::{DateTime, TimeDelta, Utc};
use redb::{ReadableMultimapTable, ReadableTable};
use serde::{Deserialize, Serialize};

use super::Store;
use super::crypto::{Sealed, Vault, new_id};
use super::error::StoreError;
use super::journal::push_audit;
use super::records::AuditInput;
use super::tables::{CHANNELS, CHANNELS_BY_ORG, NOTIFY_SECRETS};
use super::txn::{decode, encode};

const KIND: &str = "channel";
/// Channels one organization may have.
pub const MAX_CHANNELS_PER_ORG: usize = 100;

/// What a channel is: which notifier plugin delivers to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ChannelKind {
    Webhook,
    Email,
}

impl ChannelKind {
    /// The first-party plugin that serves this kind.
    pub fn default_plugin(self) -> &'static str {
        match self {
            ChannelKind::Webhook => "webhook",
            ChannelKind::Email => "email",
        }
    }
}

/// A channel as stored and as the API shows it: every setting but the secret ones.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Channel {
    pub id: String,
    pub organization: String,
    pub name: String,
    pub kind: ChannelKind,
    /// The notifier plugin that delivers, by its name.
    pub plugin: String,
    /// Event kinds the channel takes: exact (`job.status`), a prefix (`schedule.*`), or
    /// `*`. Empty means every event.
    pub events: Vec<String>,
    /// Settings passed to the plugin (URL, server, sender...), secrets excluded.
    pub settings: BTreeMap<String, String>,
    /// Names of the secret settings that are set; their values are never shown.
    pub secret_settings: Vec<String>,
    pub created_by: String,
    pub created_at: DateTime<Utc>,
}

impl Channel {
    /// Whether the channel takes events of `kind`.
    pub fn takes(&self, kind: &str) -> bool {
        self.events.is_empty()
            || self.events.iter().any(|pattern| {
                pattern == "*"
                    || pattern == kind
                    || pattern
                        .strip_suffix('*')
                        .is_some_and(|prefix| kind.starts_with(prefix))
            })
    }
}

/// A new channel: its public part and its secret settings in the clear.
#[derive(Debug, Clone)]
pub struct ChannelInput {
    pub organization: String,
    pub name: String,
    pub kind: ChannelKind,
    pub plugin: Option<String>,
    pub events: Vec<String>,
    pub settings: BTreeMap<String, String>,
    pub secrets: BTreeMap<String, String>,
    pub created_by: String,
}

#[derive(Serialize, Deserialize)]
pub(super) struct Stored {
    pub(super) channel: Channel,
    secrets: BTreeMap<String, Sealed>,
    /// A webhook's signing secret before its last rotation, and until when it still
    /// signs beside the new one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    previous: Option<(Sealed, DateTime<Utc>)>,
}

/// The audit action of a channel secret's rotation.
pub const AUDIT_CHANNEL_SECRET_ROTATED: &str = "channel.secret_rotated";

/// Which secret signs an organization's notify-url deliveries. The secret itself is
/// derived from the engine's signing key and the generation, never stored.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SecretGeneration {
    /// 0 until the first rotation.
    pub generation: u32,
    pub rotated_at: Option<DateTime<Utc>>,
    /// Until then, deliveries also carry a signature with the previous generation's
    /// secret, so receivers can switch over without losing a delivery.
    pub previous_until: Option<DateTime<Utc>>,
}

impl SecretGeneration {
    /// The previous generation, while its signature is still sent at `now`.
    pub fn previous_at(&self, now: DateTime<Utc>) -> Option<u32> {
        match self.previous_until {
            Some(until) if now < until && self.generation > 0 => Some(self.generation - 1),
            _ => None,
        }
    }
}

/// The audit action of a rotation.
pub const AUDIT_NOTIFY_SECRET_ROTATED: &str = "notify.secret_rotated";

impl Store {
    /// Which secret signs `organization`'s notify-url deliveries.
    pub fn notify_secret_generation(
        &self,
        organization: &str,
    ) -> Result<SecretGeneration, StoreError> {
        self.read(|tx| {
            let table = tx.open_table(NOTIFY_SECRETS)?;
            match table.get(organization)? {
                Some(bytes) => decode("notify secret", organization, bytes.value()),
                None => Ok(SecretGeneration::default()),
            }
        })
    }

    /// Moves `organization` to the next secret; the previous one keeps signing beside it
    /// for `grace`. Audited, by `actor`, in the same commit.
    pub fn rotate_notify_secret(
        &self,
        organization: &str,
        actor: &str,
        grace: TimeDelta,
        now: DateTime<Utc>,
    ) -> Result<SecretGeneration, StoreError> {
        self.write(|tx| {
            let mut table = tx.open_table(NOTIFY_SECRETS)?;
            let current: SecretGeneration = match table.get(organization)? {
                Some(bytes) => decode("notify secret", organization, bytes.value())?,
                None => SecretGeneration::default(),
            };
            let (next, audit) = next_generation(organization, &current, actor, grace, now)?;
            let bytes = encode("notify secret", organization, &next)?;
            table.insert(organization, bytes.as_slice())?;
            drop(table);
            push_audit(tx, audit)?;
            Ok(next)
        })
    }

    /// Stores a new channel; names are unique within an organization.
    pub fn create_channel(
        &self,
        input: ChannelInput,
        now: DateTime<Utc>,
    ) -> Result<Channel, StoreError> {
        let stored = new_channel(&self.vault, input, now);
        let channel = stored.channel.clone();
        let id = channel.id.clone();
        let bytes = encode(KIND, &id, &stored)?;
        self.write(|tx| {
            let mut by_org = tx.open_multimap_table(CHANNELS_BY_ORG)?;
            let mut channels = tx.open_table(CHANNELS)?;
            let mut count = 0;
            for entry in by_org.get(channel.organization.as_str())? {
                let other_id = entry?.value().to_owned();
                count += 1;
                if let Some(bytes) = channels.get(other_id.as_str())? {
                    let other: Stored = decode(KIND, &other_id, bytes.value())?;
                    if other.channel.name == channel.name {
                        return Err(name_taken(&channel.name));
                    }
                }
            }
            if count >= MAX_CHANNELS_PER_ORG {
                return Err(too_many());
            }
            channels.insert(id.as_str(), bytes.as_slice())?;
            by_org.insert(channel.organization.as_str(), id.as_str())?;
            Ok(())
        })?;
        Ok(channel)
    }

    /// An organization's channels, in creation order.
    pub fn list_channels(&self, organization: &str) -> Result<Vec<Channel>, StoreError> {
        self.read(|tx| {
            let by_org = match tx.open_multimap_table(CHANNELS_BY_ORG) {
                Ok(t) => t,
                Err(redb::TableError::TableDoesNotExist(_)) => return Ok(Vec::new()),
                Err(e) => return Err(e.into()),
            };
            let channels = tx.open_table(CHANNELS)?;
            let mut out = Vec::new();
            for entry in by_org.get(organization)? {
                let id = entry?.value().to_owned();
                if let Some(bytes) = channels.get(id.as_str())? {
                    let stored: Stored = decode(KIND, &id, bytes.value())?;
                    out.push(stored.channel);
                }
            }
            out.sort_by(|a, b| (a.created_at, &a.id).cmp(&(b.created_at, &b.id)));
            Ok(out)
        })
    }

    /// One channel of `organization`; another organization's is not found.
    pub fn get_channel(&self, organization: &str, id: &str) -> Result<Channel, StoreError> {
        self.stored_channel(organization, id).map(|s| s.channel)
    }

    /// The channel's secret settings in the clear, for the deliverer; just after a
    /// rotation, `previous_secret` too.
    pub fn channel_secrets(
        &self,
        organization: &str,
        id: &str,
        now: DateTime<Utc>,
    ) -> Result<BTreeMap<String, String>, StoreError> {
        let stored = self.stored_channel(organization, id)?;
        open_secrets(&self.vault, &stored, now)
    }

    /// Gives a webhook channel of `organization` the signing secret `secret`; the one it
    /// had keeps signing beside it for `grace`. Audited, by `actor`, in the same commit.
    /// Returns the channel and until when the previous secret signs.
    pub fn rotate_channel_secret(
        &self,
        organization: &str,
        id: &str,
        secret: &str,
        grace: TimeDelta,
        actor: &str,
        now: DateTime<Utc>,
    ) -> Result<(Channel, Option<DateTime<Utc>>), StoreError> {
        self.write(|tx| {
            let mut channels = tx.open_table(CHANNELS)?;
            let stored: Stored = match channels.get(id)? {
                Some(bytes) => decode(KIND, id, bytes.value())?,
                None => return Err(StoreError::not_found(KIND, id)),
            };
            let (stored, until, audit) =
                rotated(&self.vault, stored, organization, secret, grace, actor, now)?;
            let bytes = encode(KIND, id, &stored)?;
            channels.insert(id, bytes.as_slice())?;
            drop(channels);
            push_audit(tx, audit)?;
            Ok((stored.channel, until))
        })
    }

    /// Removes a channel of `organization`.
    pub fn delete_channel(&self, organization: &str, id: &str) -> Result<Channel, StoreError> {
        let channel = self.get_channel(organization, id)?;
        self.write(|tx| {
            tx.open_table(CHANNELS)?.remove(id)?;
            tx.open_multimap_table(CHANNELS_BY_ORG)?
                .remove(organization, id)?;
            Ok(())
        })?;
        Ok(channel)
    }

    fn stored_channel(&self, organization: &str, id: &str) -> Result<Stored, StoreError> {
        self.read(|tx| {
            let channels = match tx.open_table(CHANNELS) {
                Ok(t) => t,
                Err(redb::TableError::TableDoesNotExist(_)) => {
                    return Err(StoreError::not_found(KIND, id));
                }
                Err(e) => return Err(e.into()),
            };
            let stored: Stored = match channels.get(id)? {
                Some(bytes) => decode(KIND, id, bytes.value())?,
                None => return Err(StoreError::not_found(KIND, id)),
            };
            if stored.channel.organization != organization {
                return Err(StoreError::not_found(KIND, id));
            }
            Ok(stored)
        })
    }
}

// What a change to channels means, whatever store keeps them.

/// A new channel's stored form, under a fresh id, its secrets sealed for it.
pub(super) fn new_channel(vault: &Vault, input: ChannelInput, now: DateTime<Utc>) -> Stored {
    let id = new_id();
    let secrets: BTreeMap<String, Sealed> = input
        .secrets
        .iter()
        .map(|(k, v)| (k.clone(), vault.seal(&id, v)))
        .collect();
    let channel = Channel {
        id,
        organization: input.organization,
        name: input.name,
        kind: input.kind,
        plugin: input
            .plugin
            .unwrap_or_else(|| input.kind.default_plugin().to_owned()),
        events: input.events,
        settings: input.settings,
        secret_settings: secrets.keys().cloned().collect(),
        created_by: input.created_by,
        created_at: now,
    };
    Stored {
        channel,
        secrets,
        previous: None,
    }
}

pub(super) fn name_taken(name: &str) -> StoreError {
    StoreError::invalid(
        KIND,
        "name",
        format!("the organization already has a channel named `{name}`"),
    )
}

pub(super) fn too_many() -> StoreError {
    StoreError::invalid(
        KIND,
        "name",
        format!("an organization has at most {MAX_CHANNELS_PER_ORG} channels"),
    )
}

/// The channel's secret settings in the clear; just after a rotation, `previous_secret`
/// too.
pub(super) fn open_secrets(
    vault: &Vault,
    stored: &Stored,
    now: DateTime<Utc>,
) -> Result<BTreeMap<String, String>, StoreError> {
    let id = stored.channel.id.as_str();
    let open = |sealed: &Sealed| {
        vault
            .open_sealed(id, sealed)
            .ok_or_else(|| StoreError::Decrypt {
                site: format!("channel {id}"),
            })
    };
    let mut secrets = stored
        .secrets
        .iter()
        .map(|(k, sealed)| open(sealed).map(|v| (k.clone(), v)))
        .collect::<Result<BTreeMap<_, _>, _>>()?;
    if let Some((sealed, until)) = &stored.previous
        && now < *until
    {
        secrets.insert("previous_secret".to_owned(), open(sealed)?);
    }
    Ok(secrets)
}

/// `stored` with the signing secret `secret`, the one it had signing beside it for
/// `grace`; until when it does, and the rotation's audit line by `actor`. Another
/// organization's channel is not found; only a webhook channel signs.
pub(super) fn rotated(
    vault: &Vault,
    mut stored: Stored,
    organization: &str,
    secret: &str,
    grace: TimeDelta,
    actor: &str,
    now: DateTime<Utc>,
) -> Result<(Stored, Option<DateTime<Utc>>, AuditInput), StoreError> {
    let id = stored.channel.id.clone();
    if stored.channel.organization != organization {
        return Err(StoreError::not_found(KIND, &id));
    }
    if stored.channel.kind != ChannelKind::Webhook {
        return Err(StoreError::invalid(
            KIND,
            "kind",
            "only a webhook channel signs with a secret; an email channel's password \
             changes by creating the channel again",
        ));
    }
    let until = (grace > TimeDelta::zero()).then(|| now + grace);
    stored.previous = match (stored.secrets.remove("secret"), until) {
        (Some(old), Some(until)) => Some((old, until)),
        _ => None,
    };
    stored
        .secrets
        .insert("secret".to_owned(), vault.seal(&id, secret));
    stored.channel.secret_settings = stored.secrets.keys().cloned().collect();
    let audit = AuditInput {
        at: now,
        organization: organization.to_owned(),
        actor: actor.to_owned(),
        action: AUDIT_CHANNEL_SECRET_ROTATED.to_owned(),
        target: id.clone(),
        detail: serde_json::json!({
            "channel": stored.channel.name,
            "previous_until": until,
        }),
    };
    Ok((stored, until, audit))
}

/// The notify-url secret after `current`, the previous one signing beside it for
/// `grace`, and the rotation's audit line by `actor`.
pub(super) fn next_generation(
    organization: &str,
    current: &SecretGeneration,
    actor: &str,
    grace: TimeDelta,
    now: DateTime<Utc>,
) -> Result<(SecretGeneration, AuditInput), StoreError> {
    let generation = current
        .generation
        .checked_add(1)
        .ok_or_else(|| StoreError::invalid("notify secret", "generation", "rotated too often"))?;
    let next = SecretGeneration {
        generation,
        rotated_at: Some(now),
        previous_until: (grace > TimeDelta::zero()).then(|| now + grace),
    };
    let audit = AuditInput {
        at: now,
        organization: organization.to_owned(),
        actor: actor.to_owned(),
        action: AUDIT_NOTIFY_SECRET_ROTATED.to_owned(),
        target: organization.to_owned(),
        detail: serde_json::json!({
            "generation": next.generation,
            "previous_until": next.previous_until,
        }),
    };
    Ok((next, audit))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::test_support::{open, t};

    fn input(org: &str, name: &str) -> ChannelInput {
        ChannelInput {
            organization: org.into(),
            name: name.into(),
            kind: ChannelKind::Webhook,
            plugin: None,
            events: vec!["schedule.*".into()],
            settings: BTreeMap::from([("url".into(), "https://h.example/x".into())]),
            secrets: BTreeMap::from([("secret".into(), "s3cret".into())]),
            created_by: "u1".into(),
        }
    }

    #[test]
    fn channels_per_organization_with_sealed_secrets() {
        let (_dir, store) = open();
        let a = store.create_channel(input("org1", "ops"), t(0)).expect("a");
        assert_eq!(a.plugin, "webhook");
        assert_eq!(a.secret_settings, ["secret"]);
        assert!(matches!(
            store.create_channel(input("org1", "ops"), t(1)),
            Err(StoreError::Invalid { field: "name", .. })
        ));
        let b = store.create_channel(input("org2", "ops"), t(2)).expect("b");
        assert_eq!(store.list_channels("org1").expect("list"), vec![a.clone()]);
        assert!(matches!(
            store.get_channel("org1", &b.id),
            Err(StoreError::NotFound { .. })
        ));
        assert_eq!(
            store.channel_secrets("org1", &a.id, t(3)).expect("secrets")["secret"],
            "s3cret"
        );
        let raw = std::fs::read(store.path()).expect("db file");
        assert!(!raw.windows(6).any(|w| w == b"s3cret"));
        assert!(store.delete_channel("org2", &a.id).is_err());
        store.delete_channel("org1", &a.id).expect("delete");
        assert!(store.list_channels("org1").expect("list").is_empty());
    }

    #[test]
    fn a_webhook_secret_rotates_and_the_old_one_signs_through_the_grace() {
        let (_dir, store) = open();
        let a = store.create_channel(input("org1", "ops"), t(0)).expect("a");
        let secrets = |at| store.channel_secrets("org1", &a.id, at).expect("secrets");
        assert!(!secrets(t(1)).contains_key("previous_secret"));

        let (channel, until) = store
            .rotate_channel_secret("org1", &a.id, "fresh", TimeDelta::seconds(60), "u2", t(10))
            .expect("rotate");
        assert_eq!(until, Some(t(70)));
        assert_eq!(channel.secret_settings, ["secret"]);
        assert_eq!(secrets(t(11))["secret"], "fresh");
        assert_eq!(secrets(t(11))["previous_secret"], "s3cret");
        assert!(!secrets(t(70)).contains_key("previous_secret"));

        // Without a grace the old secret stops at once; another organization's channel
        // is not found; an email channel has no signing secret.
        store
            .rotate_channel_secret("org1", &a.id, "newer", TimeDelta::zero(), "u2", t(20))
            .expect("rotate");
        assert_eq!(secrets(t(21))["secret"], "newer");
        assert!(!secrets(t(21)).contains_key("previous_secret"));
        assert!(matches!(
            store.rotate_channel_secret("org2", &a.id, "x", TimeDelta::zero(), "u2", t(30)),
            Err(StoreError::NotFound { .. })
        ));
        let mail = ChannelInput {
            kind: ChannelKind::Email,
            ..input("org1", "mail")
        };
        let mail = store.create_channel(mail, t(40)).expect("mail");
        assert!(matches!(
            store.rotate_channel_secret("org1", &mail.id, "x", TimeDelta::zero(), "u2", t(41)),
            Err(StoreError::Invalid { field: "kind", .. })
        ));
        let audit = store
            .list_audit(&crate::store::Page::first(10))
            .expect("audit");
        let rotations: Vec<_> = audit
            .iter()
            .filter(|e| e.action == AUDIT_CHANNEL_SECRET_ROTATED)
            .collect();
        assert_eq!(rotations.len(), 2);
        assert_eq!(rotations[0].target, a.id);
        assert_eq!(rotations[0].actor, "u2");
    }

    #[test]
    fn event_filters() {
        let mut c = store_free_channel();
        assert!(c.takes("job.status"));
        c.events = vec!["schedule.*".into(), "script.authorization_requested".into()];
        assert!(c.takes("schedule.launched"));
        assert!(c.takes("script.authorization_requested"));
        assert!(!c.takes("job.status"));
    }

    fn store_free_channel() -> Channel {
        Channel {
            id: "c".into(),
            organization: "o".into(),
            name: "n".into(),
            kind: ChannelKind::Email,
            plugin: "email".into(),
            events: Vec::new(),
            settings: BTreeMap::new(),
            secret_settings: Vec::new(),
            created_by: "u".into(),
            created_at: t(0),
        }
    }
}
