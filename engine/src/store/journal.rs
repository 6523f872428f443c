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
use super::tables::{AUDIT, META_AUDIT_SEQ, META_OUTBOX_SEQ, OUTBOX, OUTBOX_DUE, USERS};
use super::txn::{decode, encode, load, millis, take_seq};

impl Store {
    /// Adds or replaces a user.
    pub fn put_user(&self, user: &User) -> Result<(), StoreError> {
        let bytes = encode("user", &user.id, user)?;
        self.write(|tx| {
            tx.open_table(USERS)?
                .insert(user.id.as_str(), bytes.as_slice())?;
            Ok(())
        })
    }

    /// Adds a user unless one with the same id exists, in any organization; `false` then,
    /// and nothing is written. A user's id is the `sub` of their tokens, so an id stays
    /// with its first owner.
    pub fn create_user(&self, user: &User) -> Result<bool, StoreError> {
        let bytes = encode("user", &user.id, user)?;
        self.write(|tx| {
            let mut users = tx.open_table(USERS)?;
            if users.get(user.id.as_str())?.is_some() {
                return Ok(false);
            }
            users.insert(user.id.as_str(), bytes.as_slice())?;
            Ok(true)
        })
    }

    pub fn get_user(&self, id: &str) -> Result<User, StoreError> {
        self.read(|tx| {
            load(&tx.open_table(USERS)?, "user", id)?
                .ok_or_else(|| StoreError::not_found("user", id))
        })
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
        let error: String = error.chars().take(1000).collect();
        self.update_event(id, |e| {
            e.attempts = e.attempts.saturating_add(1);
            e.last_error = Some(error);
            match retry_at {
                Some(at) => e.next_attempt_at = at,
                None => e.state = OutboxState::Dead,
            }
        })
    }

    /// Removes up to `limit` delivered or dead events created before `before`, oldest
    /// first, and returns how many went; pending events are never removed.
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
                if event.state != OutboxState::Pending {
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
            events.insert(id, encode("event", &key, &event)?.as_slice())?;
            Ok(event)
        })
    }
}

pub(crate) fn push_audit(tx: &WriteTransaction, entry: AuditInput) -> Result<u64, StoreError> {
    let seq = take_seq(tx, META_AUDIT_SEQ, 1)?;
    let entry = AuditEntry {
        seq,
        at: entry.at,
        organization: entry.organization,
        actor: entry.actor,
        action: entry.action,
        target: entry.target,
        detail: entry.detail,
    };
    tx.open_table(AUDIT)?
        .insert(seq, encode("audit", &seq.to_string(), &entry)?.as_slice())?;
    Ok(seq)
}

pub(crate) fn push_event(
    tx: &WriteTransaction,
    kind: &str,
    payload: serde_json::Value,
    now: DateTime<Utc>,
) -> Result<u64, StoreError> {
    let id = take_seq(tx, META_OUTBOX_SEQ, 1)?;
    let event = OutboxEvent {
        id,
        kind: kind.to_owned(),
        payload,
        created_at: now,
        attempts: 0,
        next_attempt_at: now,
        state: OutboxState::Pending,
        last_error: None,
    };
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
        assert_eq!(store.get_user(&user.id).expect("get"), user);
        assert!(matches!(
            store.get_user("nobody"),
            Err(StoreError::NotFound { kind: "user", .. })
        ));
        let other = User {
            organization: "org2".into(),
            name: "Mallory".into(),
            ..user.clone()
        };
        assert!(
            !store.create_user(&other).expect("create"),
            "an id in use stays with its owner"
        );
        assert_eq!(store.get_user(&user.id).expect("get"), user);
        let new = User {
            id: "u2".into(),
            ..other
        };
        assert!(store.create_user(&new).expect("create"));
        assert_eq!(store.get_user("u2").expect("get"), new);
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
        assert_eq!(store.prune_events(t(50), 100).expect("prune"), 2);
        assert!(matches!(
            store.get_event(a),
            Err(StoreError::NotFound { .. })
        ));
        assert_eq!(
            store.get_event(c).expect("pending stays").state,
            OutboxState::Pending
        );
    }
}
