//! Users and the append-only audit log in PostgreSQL.
//!
//! An audit line takes its sequence number from `audit_seq` in the transaction that
//! writes it, with the change it records (`push_audit`), and is the same record the redb
//! store keeps (`journal::audit_entry`, which also redacts it). A rolled back transaction
//! leaves a gap in the numbers, and lines committed by concurrent transactions may become
//! visible out of number order; a reader paging by `seq` sees each line once it has
//! committed.

use deadpool_postgres::Transaction;

use super::{PgStore, big, col, decode, encode, pg};
use crate::store::error::StoreError;
use crate::store::journal::audit_entry;
use crate::store::records::{AuditEntry, AuditInput, Page, User};

impl PgStore {
    /// Adds or replaces a user of `user.organization`.
    pub async fn put_user(&self, user: &User) -> Result<(), StoreError> {
        let record = encode("user", &user.id, user)?;
        let client = self.client().await?;
        client
            .execute(
                "INSERT INTO users (organization, id, record) VALUES ($1, $2, $3::text::jsonb)
                 ON CONFLICT (organization, id) DO UPDATE SET record = EXCLUDED.record",
                &[&user.organization, &user.id, &record],
            )
            .await
            .map_err(pg("write a user"))?;
        Ok(())
    }

    /// Adds a user unless its organization has one with the same id; `false` then, and
    /// nothing is written.
    pub async fn create_user(&self, user: &User) -> Result<bool, StoreError> {
        let record = encode("user", &user.id, user)?;
        let client = self.client().await?;
        let n = client
            .execute(
                "INSERT INTO users (organization, id, record) VALUES ($1, $2, $3::text::jsonb)
                 ON CONFLICT (organization, id) DO NOTHING",
                &[&user.organization, &user.id, &record],
            )
            .await
            .map_err(pg("create a user"))?;
        Ok(n == 1)
    }

    /// The user `id` of `organization`; `NotFound` whether or not another organization
    /// has a user of that id.
    pub async fn get_user(&self, organization: &str, id: &str) -> Result<User, StoreError> {
        let client = self.client().await?;
        let row = client
            .query_opt(
                "SELECT record::text FROM users WHERE organization = $1 AND id = $2",
                &[&organization, &id],
            )
            .await
            .map_err(pg("read a user"))?
            .ok_or_else(|| StoreError::not_found("user", id))?;
        decode("user", id, &col::<String>(&row, 0)?)
    }

    /// Removes the user `id` of `organization`; `false` when it has none of that id.
    pub async fn delete_user(&self, organization: &str, id: &str) -> Result<bool, StoreError> {
        let client = self.client().await?;
        let n = client
            .execute(
                "DELETE FROM users WHERE organization = $1 AND id = $2",
                &[&organization, &id],
            )
            .await
            .map_err(pg("delete a user"))?;
        Ok(n == 1)
    }

    /// The users of `organization`, by id.
    pub async fn organization_users(&self, organization: &str) -> Result<Vec<User>, StoreError> {
        let client = self.client().await?;
        let rows = client
            .query(
                "SELECT id, record::text FROM users WHERE organization = $1 ORDER BY id",
                &[&organization],
            )
            .await
            .map_err(pg("read an organization's users"))?;
        rows.iter()
            .map(|row| decode("user", &col::<String>(row, 0)?, &col::<String>(row, 1)?))
            .collect()
    }

    /// Appends an audit line and returns its sequence number.
    pub async fn append_audit(&self, entry: AuditInput) -> Result<u64, StoreError> {
        transaction!(self, "append an audit line", |tx| push_audit(
            tx,
            entry.clone()
        ))
    }

    /// Audit lines in order; the cursor is the last `seq` seen.
    pub async fn list_audit(&self, page: &Page<u64>) -> Result<Vec<AuditEntry>, StoreError> {
        let after = big("audit", "after", page.after.unwrap_or(0))?;
        let limit = page.capped_limit() as i64;
        let client = self.client().await?;
        let rows = client
            .query(
                "SELECT seq, record::text FROM audit WHERE seq > $1 ORDER BY seq LIMIT $2",
                &[&after, &limit],
            )
            .await
            .map_err(pg("read the audit log"))?;
        rows.iter()
            .map(|row| {
                let seq: i64 = col(row, 0)?;
                decode("audit", &seq.to_string(), &col::<String>(row, 1)?)
            })
            .collect()
    }
}

/// Appends an audit line in the caller's transaction, with the change it records.
pub(super) async fn push_audit(tx: &Transaction<'_>, entry: AuditInput) -> Result<u64, StoreError> {
    let row = tx
        .query_one("SELECT nextval('audit_seq')", &[])
        .await
        .map_err(pg("number an audit line"))?;
    let seq = col::<i64>(&row, 0)?.max(0) as u64;
    let entry = audit_entry(seq, entry);
    let record = encode("audit", &seq.to_string(), &entry)?;
    tx.execute(
        "INSERT INTO audit (seq, organization, record) VALUES ($1, $2, $3::text::jsonb)",
        &[&(seq as i64), &entry.organization, &record],
    )
    .await
    .map_err(pg("write an audit line"))?;
    Ok(seq)
}
