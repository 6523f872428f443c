//! Approval tokens and the records of approval decisions, for `crate::approval`.
//!
//! A token is kept only as its sha256, bound to one schedule, to the approval hash of
//! the version that was sent out for approval, and to the one user it was sent to. Consuming it is one transaction that
//! checks it and marks it used, so two clicks on the same link cannot both approve.
//! The table is created on first write: it is newer than the schema's other tables, and
//! a database written before it simply has no tokens.

use chrono::{DateTime, Utc};
use redb::{ReadableTable, WriteTransaction};
use serde::{Deserialize, Serialize};

use super::Store;
use super::error::StoreError;
use super::journal::{push_audit, push_event};
use super::records::{AuditInput, User};
use super::tables::{APPROVAL_TOKENS, USERS};
use super::txn::{decode, encode};

const KIND: &str = "approval token";

/// One approval link's token, as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct ApprovalToken {
    /// Hex sha256 of the token; the key of the record.
    pub(crate) digest: String,
    pub(crate) schedule_id: String,
    pub(crate) organization: String,
    /// The approval hash of the schedule when the token was issued.
    pub(crate) approval: String,
    pub(crate) requested_by: String,
    /// The one user this link was sent to; nobody else may approve with it. A token
    /// stored before links were bound to their recipient has none, and approves nothing.
    #[serde(default)]
    pub(crate) recipient: Option<String>,
    pub(crate) created_at: DateTime<Utc>,
    pub(crate) expires_at: DateTime<Utc>,
    pub(crate) used_at: Option<DateTime<Utc>>,
    pub(crate) used_by: Option<String>,
}

/// Why a presented token does not approve.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TokenRejection {
    /// No such token, or one issued for another schedule: the caller learns nothing more.
    Unknown,
    Used,
    Expired,
    /// Issued for an earlier version of the schedule.
    Stale,
    /// Sent to another user.
    NotRecipient,
}

/// What a decision on a schedule leaves behind, written by the store in the transaction
/// that makes the decision: its audit line and the outbox event that announces it.
#[derive(Debug, Clone)]
pub(crate) struct Decision {
    pub(crate) audit: AuditInput,
    pub(crate) event: &'static str,
    pub(crate) payload: serde_json::Value,
}

impl Decision {
    pub(crate) fn write(
        self,
        tx: &WriteTransaction,
        now: DateTime<Utc>,
    ) -> Result<u64, StoreError> {
        push_audit(tx, self.audit)?;
        push_event(tx, self.event, self.payload, now)
    }
}

/// Checks the token with digest `digest` against the schedule and the approval hash it
/// must carry and, when it approves, marks it used by `by`. Writes nothing when it does
/// not approve.
pub(crate) fn use_approval_token(
    tx: &WriteTransaction,
    digest: &str,
    schedule_id: &str,
    approval: &str,
    by: &str,
    now: DateTime<Utc>,
) -> Result<Result<ApprovalToken, TokenRejection>, StoreError> {
    let mut tokens = tx.open_table(APPROVAL_TOKENS)?;
    let found: Option<ApprovalToken> = match tokens.get(digest)? {
        Some(bytes) => Some(decode(KIND, schedule_id, bytes.value())?),
        None => None,
    };
    let token = match spend_token(found, schedule_id, approval, by, now) {
        Ok(token) => token,
        Err(rejection) => return Ok(Err(rejection)),
    };
    tokens.insert(digest, encode(KIND, schedule_id, &token)?.as_slice())?;
    Ok(Ok(token))
}

/// The token `found` (under the presented digest) marked used by `by`, when it approves
/// `schedule_id` at `approval`; otherwise why not. The same rule in either store, which
/// writes the token back only when it approves.
pub(crate) fn spend_token(
    found: Option<ApprovalToken>,
    schedule_id: &str,
    approval: &str,
    by: &str,
    now: DateTime<Utc>,
) -> Result<ApprovalToken, TokenRejection> {
    let mut token = match found {
        Some(t) if t.schedule_id == schedule_id => t,
        _ => return Err(TokenRejection::Unknown),
    };
    if token.recipient.as_deref() != Some(by) {
        return Err(TokenRejection::NotRecipient);
    }
    if token.used_at.is_some() {
        return Err(TokenRejection::Used);
    }
    if now >= token.expires_at {
        return Err(TokenRejection::Expired);
    }
    if token.approval != approval {
        return Err(TokenRejection::Stale);
    }
    token.used_at = Some(now);
    token.used_by = Some(by.to_owned());
    Ok(token)
}

impl Store {
    /// The approval token with this digest, if one was issued.
    pub(crate) fn approval_token(&self, digest: &str) -> Result<Option<ApprovalToken>, StoreError> {
        self.read(|tx| {
            let tokens = match tx.open_table(APPROVAL_TOKENS) {
                Ok(tokens) => tokens,
                // Created on first write: a database that never issued a link has none.
                Err(redb::TableError::TableDoesNotExist(_)) => return Ok(None),
                Err(e) => return Err(e.into()),
            };
            match tokens.get(digest)? {
                Some(bytes) => Ok(Some(decode(KIND, digest, bytes.value())?)),
                None => Ok(None),
            }
        })
    }

    /// The users of one organization, in id order.
    pub(crate) fn organization_users(&self, organization: &str) -> Result<Vec<User>, StoreError> {
        self.read(|tx| {
            let mut out = Vec::new();
            for entry in tx.open_table(USERS)?.range((organization, "")..)? {
                let (key, value) = entry?;
                let (org, id) = key.value();
                if org != organization {
                    break;
                }
                out.push(decode("user", id, value.value())?);
            }
            Ok(out)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::test_support::{open, t};

    fn audit() -> AuditInput {
        AuditInput {
            at: t(0),
            organization: "org1".into(),
            actor: "u1".into(),
            action: "test".into(),
            target: "s1".into(),
            detail: serde_json::json!({}),
        }
    }

    fn token(digest: &str) -> ApprovalToken {
        ApprovalToken {
            digest: digest.into(),
            schedule_id: "s1".into(),
            organization: "org1".into(),
            approval: "h1".into(),
            requested_by: "u1".into(),
            recipient: Some("u2".into()),
            created_at: t(0),
            expires_at: t(100),
            used_at: None,
            used_by: None,
        }
    }

    #[test]
    fn a_token_approves_once_for_its_schedule_and_hash_until_it_expires() {
        let (_dir, store) = open();
        store
            .write(|tx| {
                let mut tokens = tx.open_table(APPROVAL_TOKENS)?;
                for d in ["d1", "d2"] {
                    tokens.insert(d, encode(KIND, "s1", &token(d))?.as_slice())?;
                }
                // Stored before links named their recipient.
                let mut unbound = token("d3");
                unbound.recipient = None;
                tokens.insert("d3", encode(KIND, "s1", &unbound)?.as_slice())?;
                Ok(())
            })
            .expect("issue");
        let consume_as = |who: &str, d: &str, s: &str, h: &str, at: i64| {
            store
                .write(|tx| use_approval_token(tx, d, s, h, who, t(at)))
                .expect("consume")
        };
        let consume = |d: &str, s: &str, h: &str, at: i64| consume_as("u2", d, s, h, at);
        assert_eq!(
            consume_as("u3", "d1", "s1", "h1", 1),
            Err(TokenRejection::NotRecipient)
        );
        assert_eq!(
            consume("d3", "s1", "h1", 1),
            Err(TokenRejection::NotRecipient)
        );
        assert_eq!(consume("nope", "s1", "h1", 1), Err(TokenRejection::Unknown));
        assert_eq!(consume("d1", "s2", "h1", 1), Err(TokenRejection::Unknown));
        assert_eq!(consume("d1", "s1", "h2", 1), Err(TokenRejection::Stale));
        assert_eq!(consume("d2", "s1", "h1", 100), Err(TokenRejection::Expired));
        let used = consume("d1", "s1", "h1", 1).expect("approves");
        assert_eq!(used.used_by.as_deref(), Some("u2"));
        assert_eq!(consume("d1", "s1", "h1", 2), Err(TokenRejection::Used));
    }

    #[test]
    fn decisions_write_audit_and_event_together() {
        let (_dir, store) = open();
        let decision = Decision {
            audit: audit(),
            event: "test.decided",
            payload: serde_json::json!({"x": 1}),
        };
        store.write(|tx| decision.write(tx, t(0))).expect("record");
        let lines = store
            .list_audit(&crate::store::Page::first(10))
            .expect("audit");
        assert_eq!(lines.len(), 1);
        let events = store.due_events(t(0), 10).expect("events");
        assert!(events.iter().any(|e| e.kind == "test.decided"));
    }
}
