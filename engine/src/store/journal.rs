//! Users, the append-only audit log and the transactional outbox.
//!
//! Outbox events are written by the same transaction as the change that causes them
//! (`push_event`), so an event exists if and only if its change committed; a deliverer
//! reads the due ones, and marks each delivered, retried later, or dead.

use chrono::{DateTime, Utc};
use redb::{ReadableTable, WriteTransaction};

use super::Store;
use super::error::StoreError;
use super::records::{AuditEntry, AuditInput, OutboxEvent, OutboxState, Page, User};
use super::tables::{
    AUDIT, META_AUDIT_SEQ, META_OUTBOX_SEQ, OUTBOX, OUTBOX_DEAD, OUTBOX_DUE, USERS,
};
use super::txn::{decode, encode, millis, take_seq};

fn user_key(user: &User) -> (&str, &str) {
    (user.organization.as_str(), user.id.as_str())
}

impl Store {
    /// Adds or replaces a user of `user.organization`.
    pub fn put_user(&self, user: &User) -> Result<(), StoreError> {
        let bytes = encode("user", &user.id, user)?;
        self.write(|tx| {
            tx.open_table(USERS)?
                .insert(user_key(user), bytes.as_slice())?;
            Ok(())
        })
    }

    /// Adds a user unless its organization has one with the same id; `false` then, and
    /// nothing is written. Another organization's user of the same id is another user:
    /// a user id is the `sub` of tokens, which name a user only within their `org`.
    pub fn create_user(&self, user: &User) -> Result<bool, StoreError> {
        let bytes = encode("user", &user.id, user)?;
        self.write(|tx| {
            let mut users = tx.open_table(USERS)?;
            if users.get(user_key(user))?.is_some() {
                return Ok(false);
            }
            users.insert(user_key(user), bytes.as_slice())?;
            Ok(true)
        })
    }

    /// The user `id` of `organization`; `NotFound` whether or not another organization
    /// has a user of that id.
    pub fn get_user(&self, organization: &str, id: &str) -> Result<User, StoreError> {
        self.read(|tx| match tx.open_table(USERS)?.get((organization, id))? {
            Some(bytes) => decode("user", id, bytes.value()),
            None => Err(StoreError::not_found("user", id)),
        })
    }

    /// Removes the user `id` of `organization`; `false` when it has none of that id.
    pub fn delete_user(&self, organization: &str, id: &str) -> Result<bool, StoreError> {
        self.write(|tx| Ok(tx.open_table(USERS)?.remove((organization, id))?.is_some()))
    }

    /// Appends an audit line and returns its sequence number.
    pub fn append_audit(&self, entry: AuditInput) -> Result<u64, StoreError> {
        self.write(|tx| push_audit(tx, entry))
    }

    /// Audit lines in order; the cursor is the last `seq` seen.
    pub fn list_audit(&self, page: &Page<u64>) -> Result<Vec<AuditEntry>, StoreError> {
        let from = page.after.map_or(0, |a| a.saturating_add(1));
        let limit = page.capped_limit();
        self.read(|tx| {
            tx.open_table(AUDIT)?
                .range(from..)?
                .take(limit)
                .map(|e| {
                    let (k, v) = e?;
                    decode("audit", &k.value().to_string(), v.value())
                })
                .collect()
        })
    }

    /// Appends an event outside any other change (most events are written by the
    /// operation that causes them).
    pub fn append_event(
        &self,
        kind: &str,
        payload: serde_json::Value,
        now: DateTime<Utc>,
    ) -> Result<u64, StoreError> {
        self.write(|tx| push_event(tx, kind, payload, now))
    }

    /// Pending events whose next attempt is due, oldest first.
    pub fn due_events(
        &self,
        now: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<OutboxEvent>, StoreError> {
        let limit = limit.clamp(1, super::MAX_PAGE);
        self.read(|tx| {
            let events = tx.open_table(OUTBOX)?;
            let mut out = Vec::new();
            for entry in tx
                .open_table(OUTBOX_DUE)?
                .range(..=(millis(now), u64::MAX))?
                .take(limit)
            {
                let id = entry?.0.value().1;
                if let Some(bytes) = events.get(id)? {
                    out.push(decode("event", &id.to_string(), bytes.value())?);
                }
            }
            Ok(out)
        })
    }

    pub fn get_event(&self, id: u64) -> Result<OutboxEvent, StoreError> {
        self.read(|tx| {
            let events = tx.open_table(OUTBOX)?;
            let bytes = events
                .get(id)?
                .ok_or_else(|| StoreError::not_found("event", id.to_string()))?;
            decode("event", &id.to_string(), bytes.value())
        })
    }

    pub fn mark_event_delivered(&self, id: u64) -> Result<OutboxEvent, StoreError> {
        self.update_event(id, |e| {
            e.attempts = e.attempts.saturating_add(1);
            e.state = OutboxState::Delivered;
        })
    }

    /// Records a failed attempt: retried at `retry_at`, or dead when `None`.
    pub fn mark_event_failed(
        &self,
        id: u64,
        error: &str,
        retry_at: Option<DateTime<Utc>>,
    ) -> Result<OutboxEvent, StoreError> {
        self.record_event_attempt(
            id,
            &EventAttempt {
                error: Some(error),
                retry_at,
                organization: None,
                delivered_to: &[],
                now: retry_at.unwrap_or_else(Utc::now),
            },
        )
    }

    /// Records one attempt at an event: the deliveries it completed, its organization, and
    /// then delivered (no error), retried at `retry_at`, or dead.
    pub fn record_event_attempt(
        &self,
        id: u64,
        attempt: &EventAttempt<'_>,
    ) -> Result<OutboxEvent, StoreError> {
        self.update_event(id, |e| apply_attempt(e, attempt))
    }

    /// Moves a pending event's next attempt to `at` without counting an attempt: it
    /// waits for an earlier event of the same job that is being retried.
    pub fn defer_event(&self, id: u64, at: DateTime<Utc>) -> Result<OutboxEvent, StoreError> {
        self.update_event(id, |e| e.next_attempt_at = at)
    }

    /// Every pending event, due or waiting for a retry, in due order; at most `limit`.
    pub fn pending_events(&self, limit: usize) -> Result<Vec<OutboxEvent>, StoreError> {
        self.read(|tx| {
            let events = tx.open_table(OUTBOX)?;
            let mut out = Vec::new();
            for entry in tx.open_table(OUTBOX_DUE)?.iter()?.take(limit) {
                let id = entry?.0.value().1;
                if let Some(bytes) = events.get(id)? {
                    out.push(decode("event", &id.to_string(), bytes.value())?);
                }
            }
            Ok(out)
        })
    }

    /// Every event still stored, in id order; the cursor is the last id seen.
    pub fn list_events(&self, page: &Page<u64>) -> Result<Vec<OutboxEvent>, StoreError> {
        let from = page.after.map_or(0, |a| a.saturating_add(1));
        let limit = page.capped_limit();
        self.read(|tx| {
            tx.open_table(OUTBOX)?
                .range(from..)?
                .take(limit)
                .map(|e| {
                    let (k, v) = e?;
                    decode("event", &k.value().to_string(), v.value())
                })
                .collect()
        })
    }

    /// An organization's dead letters, oldest first; the cursor is the last id seen.
    pub fn dead_events(
        &self,
        organization: &str,
        page: &Page<u64>,
    ) -> Result<Vec<OutboxEvent>, StoreError> {
        let from = page.after.map_or(0, |a| a.saturating_add(1));
        let limit = page.capped_limit();
        self.read(|tx| {
            let dead = match tx.open_table(OUTBOX_DEAD) {
                Ok(table) => table,
                Err(redb::TableError::TableDoesNotExist(_)) => return Ok(Vec::new()),
                Err(e) => return Err(e.into()),
            };
            let events = tx.open_table(OUTBOX)?;
            let mut out = Vec::new();
            for entry in dead
                .range((organization, from)..=(organization, u64::MAX))?
                .take(limit)
            {
                let id = entry?.0.value().1;
                if let Some(bytes) = events.get(id)? {
                    out.push(decode("event", &id.to_string(), bytes.value())?);
                }
            }
            Ok(out)
        })
    }

    /// Puts a dead letter of `organization` back in the queue, due at `now`, with a fresh
    /// count of attempts. Deliveries it already completed are not repeated.
    pub fn retry_dead_event(
        &self,
        organization: &str,
        id: u64,
        now: DateTime<Utc>,
    ) -> Result<OutboxEvent, StoreError> {
        let key = id.to_string();
        self.write(|tx| {
            let mut events = tx.open_table(OUTBOX)?;
            let mut event: OutboxEvent = match events.get(id)? {
                Some(bytes) => decode("event", &key, bytes.value())?,
                None => return Err(StoreError::not_found("dead letter", key)),
            };
            let org = event.organization.clone().unwrap_or_default();
            if event.state != OutboxState::Dead || org != organization {
                return Err(StoreError::not_found("dead letter", key));
            }
            tx.open_table(OUTBOX_DEAD)?.remove((org.as_str(), id))?;
            revived(&mut event, now);
            tx.open_table(OUTBOX_DUE)?.insert((millis(now), id), ())?;
            events.insert(id, encode("event", &key, &event)?.as_slice())?;
            Ok(event)
        })
    }

    /// Removes up to `limit` delivered events created before `before`, oldest first, and
    /// returns how many went; pending events and dead letters are never removed (a dead
    /// letter stays until it is retried and delivered).
    pub fn prune_events(&self, before: DateTime<Utc>, limit: usize) -> Result<usize, StoreError> {
        self.write(|tx| {
            let mut events = tx.open_table(OUTBOX)?;
            let mut done = Vec::new();
            for entry in events.iter()? {
                let (k, v) = entry?;
                let event: OutboxEvent = decode("event", &k.value().to_string(), v.value())?;
                if event.created_at >= before || done.len() >= limit {
                    break;
                }
                if event.state == OutboxState::Delivered {
                    done.push(event.id);
                }
            }
            for id in &done {
                events.remove(*id)?;
            }
            Ok(done.len())
        })
    }

    fn update_event(
        &self,
        id: u64,
        f: impl FnOnce(&mut OutboxEvent),
    ) -> Result<OutboxEvent, StoreError> {
        let key = id.to_string();
        self.write(|tx| {
            let mut events = tx.open_table(OUTBOX)?;
            let mut event: OutboxEvent = match events.get(id)? {
                Some(bytes) => decode("event", &key, bytes.value())?,
                None => return Err(StoreError::not_found("event", key)),
            };
            if event.state != OutboxState::Pending {
                return Err(StoreError::invalid(
                    "event",
                    "state",
                    format!("event {id} is no longer pending"),
                ));
            }
            let mut due = tx.open_table(OUTBOX_DUE)?;
            due.remove((millis(event.next_attempt_at), id))?;
            f(&mut event);
            if event.state == OutboxState::Pending {
                due.insert((millis(event.next_attempt_at), id), ())?;
            }
            if event.state == OutboxState::Dead {
                let org = event.organization.clone().unwrap_or_default();
                tx.open_table(OUTBOX_DEAD)?.insert((org.as_str(), id), ())?;
            }
            events.insert(id, encode("event", &key, &event)?.as_slice())?;
            Ok(event)
        })
    }
}

/// One attempt at delivering an event, as [`Store::record_event_attempt`] records it.
#[derive(Debug, Clone)]
pub struct EventAttempt<'a> {
    /// `None` when every delivery of the event is done.
    pub error: Option<&'a str>,
    /// When to try again; `None` with an error makes the event a dead letter.
    pub retry_at: Option<DateTime<Utc>>,
    pub organization: Option<&'a str>,
    /// Deliveries completed by this attempt.
    pub delivered_to: &'a [String],
    pub now: DateTime<Utc>,
}

/// The audit line `seq` as either store keeps it, with the values of password-like
/// attributes anywhere in its detail (a script text included) redacted.
pub(crate) fn audit_entry(seq: u64, entry: AuditInput) -> AuditEntry {
    let mut detail = entry.detail;
    super::redact::json(&mut detail);
    AuditEntry {
        seq,
        at: entry.at,
        organization: entry.organization,
        actor: entry.actor,
        action: entry.action,
        target: entry.target,
        detail,
    }
}

/// Appends an audit line, with the values of password-like attributes anywhere in its
/// detail (a script text included) redacted: the log is read more widely than secrets.
pub(crate) fn push_audit(tx: &WriteTransaction, entry: AuditInput) -> Result<u64, StoreError> {
    let seq = take_seq(tx, META_AUDIT_SEQ, 1)?;
    let entry = audit_entry(seq, entry);
    tx.open_table(AUDIT)?
        .insert(seq, encode("audit", &seq.to_string(), &entry)?.as_slice())?;
    Ok(seq)
}

/// A dead letter put back in the queue, due at `now`, with a fresh count of attempts:
/// the same in either store.
pub(crate) fn revived(event: &mut OutboxEvent, now: DateTime<Utc>) {
    event.state = OutboxState::Pending;
    event.attempts = 0;
    event.next_attempt_at = now;
    event.dead_at = None;
}

/// A new event, due at once: the same record in either store.
pub(crate) fn new_event(
    id: u64,
    kind: &str,
    payload: serde_json::Value,
    now: DateTime<Utc>,
) -> OutboxEvent {
    OutboxEvent {
        id,
        kind: kind.to_owned(),
        payload,
        created_at: now,
        attempts: 0,
        next_attempt_at: now,
        state: OutboxState::Pending,
        last_error: None,
        organization: None,
        delivered_to: Vec::new(),
        dead_at: None,
    }
}

/// One attempt at a pending event: the deliveries it completed, its organization, and
/// then delivered (no error), retried at `retry_at`, or dead. The same rule in either
/// store.
pub(crate) fn apply_attempt(e: &mut OutboxEvent, attempt: &EventAttempt<'_>) {
    let error: Option<String> = attempt.error.map(|e| e.chars().take(1000).collect());
    e.attempts = e.attempts.saturating_add(1);
    if let Some(org) = attempt.organization {
        e.organization = Some(org.to_owned());
    }
    for done in attempt.delivered_to {
        if !e.delivered_to.contains(done) {
            e.delivered_to.push(done.clone());
        }
    }
    match (error, attempt.retry_at) {
        (None, _) => e.state = OutboxState::Delivered,
        (Some(error), Some(at)) => {
            e.last_error = Some(error);
            e.next_attempt_at = at;
        }
        (Some(error), None) => {
            e.last_error = Some(error);
            e.state = OutboxState::Dead;
            e.dead_at = Some(attempt.now);
        }
    }
}

pub(crate) fn push_event(
    tx: &WriteTransaction,
    kind: &str,
    payload: serde_json::Value,
    now: DateTime<Utc>,
) -> Result<u64, StoreError> {
    let id = take_seq(tx, META_OUTBOX_SEQ, 1)?;
    let event = new_event(id, kind, payload, now);
    tx.open_table(OUTBOX)?
        .insert(id, encode("event", &id.to_string(), &event)?.as_slice())?;
    tx.open_table(OUTBOX_DUE)?.insert((millis(now), id), ())?;
    Ok(id)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::test_support::{open, t};
    use serde_json::json;

    #[test]
    fn users_round_trip() {
        let (_dir, store) = open();
        let user = User {
            id: "auth0|5f9d4b3c2e1a0b006f8b4c5d".into(),
            name: "Ada".into(),
            email: "ada@example.com".into(),
            organization: "org1".into(),
            created_at: t(0),
        };
        store.put_user(&user).expect("put");
        assert_eq!(store.get_user("org1", &user.id).expect("get"), user);
        assert!(matches!(
            store.get_user("org1", "nobody"),
            Err(StoreError::NotFound { kind: "user", .. })
        ));
        let again = User {
            name: "Mallory".into(),
            ..user.clone()
        };
        assert!(
            !store.create_user(&again).expect("create"),
            "an id in use stays with its owner in its organization"
        );
        assert_eq!(store.get_user("org1", &user.id).expect("get"), user);
    }

    #[test]
    fn the_same_user_id_in_two_organizations_is_two_users() {
        let (_dir, store) = open();
        let first = User {
            id: "bob".into(),
            name: "Bob of org1".into(),
            email: "bob@one.example".into(),
            organization: "org1".into(),
            created_at: t(0),
        };
        let other = User {
            name: "Bob of org2".into(),
            email: "bob@two.example".into(),
            organization: "org2".into(),
            ..first.clone()
        };
        assert!(store.create_user(&first).expect("create"));
        assert!(store.create_user(&other).expect("create"));
        assert_eq!(store.get_user("org1", "bob").expect("get"), first);
        assert_eq!(store.get_user("org2", "bob").expect("get"), other);
        // Not found in an organization without it, though another has it.
        let missing = store.get_user("org3", "bob").expect_err("no bob in org3");
        let never = store.get_user("org3", "never").expect_err("no one");
        assert!(matches!(missing, StoreError::NotFound { kind: "user", .. }));
        assert_eq!(
            missing.to_string().replace("bob", "never"),
            never.to_string()
        );
        assert_eq!(store.organization_users("org2").expect("list"), vec![other]);

        assert!(!store.delete_user("org3", "bob").expect("delete elsewhere"));
        assert!(store.delete_user("org1", "bob").expect("delete"));
        assert!(store.get_user("org1", "bob").is_err());
        assert_eq!(
            store.get_user("org2", "bob").expect("kept").email,
            "bob@two.example"
        );
    }

    #[test]
    fn audit_lines_never_keep_a_secret_from_a_script() {
        let (_dir, store) = open();
        store
            .append_audit(AuditInput {
                at: t(0),
                organization: "org1".into(),
                actor: "u1".into(),
                action: "site.sync_call".into(),
                target: "site-1".into(),
                detail: json!({
                    "command": "/system/script/add",
                    "parameters": "=name=x =source=/ip ipsec peer add secret=\"s3cr3t one\" address=10.0.0.1",
                    "script": "/user add name=a password=pw1 group=full",
                }),
            })
            .expect("append");
        let entry = store.list_audit(&Page::first(1)).expect("list").remove(0);
        let written = serde_json::to_string(&entry.detail).expect("json");
        assert!(
            !written.contains("s3cr3t") && !written.contains("pw1"),
            "{written}"
        );
        assert_eq!(
            entry.detail["parameters"],
            "=name=x =source=/ip ipsec peer add secret=<redacted> address=10.0.0.1"
        );
        assert_eq!(
            entry.detail["script"],
            "/user add name=a password=<redacted> group=full"
        );
    }

    #[test]
    fn audit_is_append_only_and_ordered() {
        let (_dir, store) = open();
        for i in 0..5 {
            let seq = store
                .append_audit(AuditInput {
                    at: t(i),
                    organization: "org1".into(),
                    actor: "u1".into(),
                    action: "site.sync_call".into(),
                    target: format!("site-{i}"),
                    detail: json!({"command": "/ip/arp/print"}),
                })
                .expect("append");
            assert_eq!(seq, u64::try_from(i).expect("small") + 1);
        }
        let page = store.list_audit(&Page::first(3)).expect("list");
        assert_eq!(page.iter().map(|e| e.seq).collect::<Vec<_>>(), [1, 2, 3]);
        let rest = store
            .list_audit(&Page {
                limit: 10,
                after: Some(3),
            })
            .expect("rest");
        assert_eq!(
            rest.iter().map(|e| e.target.as_str()).collect::<Vec<_>>(),
            ["site-3", "site-4"]
        );
    }

    #[test]
    fn outbox_due_retry_and_dead() {
        let (_dir, store) = open();
        let a = store
            .append_event("test.a", json!({"n": 1}), t(0))
            .expect("a");
        let b = store
            .append_event("test.b", json!({"n": 2}), t(10))
            .expect("b");
        assert_eq!(
            store
                .due_events(t(5), 10)
                .expect("due")
                .iter()
                .map(|e| e.id)
                .collect::<Vec<_>>(),
            [a]
        );
        store
            .mark_event_failed(a, "connection refused", Some(t(20)))
            .expect("retry");
        assert_eq!(
            store
                .due_events(t(15), 10)
                .expect("due")
                .iter()
                .map(|e| e.id)
                .collect::<Vec<_>>(),
            [b]
        );
        store.mark_event_delivered(b).expect("delivered");
        let again = store.due_events(t(30), 10).expect("due");
        assert_eq!(again.len(), 1);
        assert_eq!(again[0].attempts, 1);
        assert_eq!(again[0].last_error.as_deref(), Some("connection refused"));
        let dead = store.mark_event_failed(a, "gone", None).expect("dead");
        assert_eq!(dead.state, OutboxState::Dead);
        assert!(store.due_events(t(1000), 10).expect("due").is_empty());
        assert!(
            store.mark_event_delivered(a).is_err(),
            "a dead event stays dead"
        );
        let c = store.append_event("test.c", json!({}), t(40)).expect("c");
        assert_eq!(store.prune_events(t(50), 100).expect("prune"), 1);
        assert!(matches!(
            store.get_event(b),
            Err(StoreError::NotFound { .. })
        ));
        assert_eq!(
            store.get_event(a).expect("a dead letter stays").state,
            OutboxState::Dead
        );
        assert_eq!(
            store.get_event(c).expect("pending stays").state,
            OutboxState::Pending
        );
    }

    #[test]
    fn attempts_keep_their_deliveries_and_dead_letters_are_indexed_per_organization() {
        let (_dir, store) = open();
        let id = store.append_event("test.a", json!({}), t(0)).expect("a");
        let first = vec!["channel:one".to_owned()];
        let e = store
            .record_event_attempt(
                id,
                &EventAttempt {
                    error: Some("channel two: unavailable"),
                    retry_at: Some(t(5)),
                    organization: Some("org1"),
                    delivered_to: &first,
                    now: t(1),
                },
            )
            .expect("retry");
        assert_eq!(
            (e.state, e.attempts, e.delivered_to.clone()),
            (OutboxState::Pending, 1, first.clone())
        );
        let deferred = store.defer_event(id, t(9)).expect("defer");
        assert_eq!((deferred.attempts, deferred.next_attempt_at), (1, t(9)));
        assert!(store.due_events(t(8), 10).expect("due").is_empty());
        let dead = store
            .record_event_attempt(
                id,
                &EventAttempt {
                    error: Some("channel two: rejected"),
                    retry_at: None,
                    organization: Some("org1"),
                    delivered_to: &[],
                    now: t(10),
                },
            )
            .expect("dead");
        assert_eq!((dead.state, dead.dead_at), (OutboxState::Dead, Some(t(10))));
        assert_eq!(dead.delivered_to, first, "earlier deliveries are kept");
        assert_eq!(store.pending_events(10).expect("pending").len(), 0);
        assert_eq!(store.prune_events(t(100), 10).expect("prune"), 0);
        let listed = store.dead_events("org1", &Page::first(10)).expect("dead");
        assert_eq!(listed.iter().map(|e| e.id).collect::<Vec<_>>(), [id]);
        assert!(
            store
                .dead_events("org2", &Page::first(10))
                .expect("none")
                .is_empty()
        );
        assert!(store.retry_dead_event("org2", id, t(11)).is_err());
        let again = store.retry_dead_event("org1", id, t(11)).expect("retry");
        assert_eq!((again.state, again.attempts), (OutboxState::Pending, 0));
        assert!(
            store
                .dead_events("org1", &Page::first(10))
                .expect("dead")
                .is_empty()
        );
        assert_eq!(store.due_events(t(11), 10).expect("due").len(), 1);
        assert_eq!(store.list_events(&Page::first(10)).expect("all").len(), 1);
    }
}
