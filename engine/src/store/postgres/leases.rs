//! Named leases, one holder at a time, with fencing tokens: the scheduler's lease decides
//! which engine launches schedules.
//!
//! A holder renews its lease before it lapses. Once it has lapsed (by the database's
//! clock) any engine may take it, and the lease's token grows by one: every write the
//! lease guards carries the token its writer was given and is refused when the lease has
//! moved on, so an engine that paused past its lease (a long GC, a frozen VM) and wakes
//! up believing it still holds it cannot launch anything.

use std::time::Duration;

use deadpool_postgres::Transaction;

use super::{PgStore, col, col_u64, lease_millis, pg};
use crate::store::error::StoreError;

/// The lease of the engine that launches schedules.
pub const SCHEDULER_LEASE: &str = "scheduler";

impl PgStore {
    /// Takes the scheduler lease for `engine` until `ttl` from now, or renews it when
    /// `engine` holds it already; returns the lease's fencing token, or `None` while
    /// another engine holds it. The token is the same across renewals and larger after
    /// every change of holder.
    pub async fn acquire_or_renew(
        &self,
        engine: &str,
        ttl: Duration,
    ) -> Result<Option<u64>, StoreError> {
        self.acquire_lease(SCHEDULER_LEASE, engine, ttl).await
    }

    /// [`PgStore::acquire_or_renew`] for any named lease.
    pub async fn acquire_lease(
        &self,
        lease: &str,
        engine: &str,
        ttl: Duration,
    ) -> Result<Option<u64>, StoreError> {
        let ttl = lease_millis(ttl);
        transaction!(self, "take a lease", |tx| async {
            let row = tx
                .query_opt(
                    "INSERT INTO leases AS l (name, holder, token, expires_at)
                     VALUES ($1, $2, 1, statement_timestamp() + $3::bigint * interval '1 millisecond')
                     ON CONFLICT (name) DO UPDATE SET
                         token = CASE WHEN l.holder = EXCLUDED.holder THEN l.token
                                      ELSE l.token + 1 END,
                         holder = EXCLUDED.holder,
                         expires_at = EXCLUDED.expires_at
                     WHERE l.holder = EXCLUDED.holder OR l.expires_at < statement_timestamp()
                     RETURNING token",
                    &[&lease, &engine, &ttl],
                )
                .await
                .map_err(pg("take a lease"))?;
            row.map(|r| col_u64(&r, 0)).transpose()
        })
    }

    /// Gives up `engine`'s hold on a lease, so another engine need not wait for it to
    /// lapse. The token stays: the next holder's is larger still.
    pub async fn release_lease(&self, lease: &str, engine: &str) -> Result<bool, StoreError> {
        transaction!(self, "release a lease", |tx| async {
            let n = tx
                .execute(
                    "UPDATE leases SET expires_at = '-infinity'
                     WHERE name = $1 AND holder = $2",
                    &[&lease, &engine],
                )
                .await
                .map_err(pg("release a lease"))?;
            Ok(n == 1)
        })
    }

    /// The engine holding a lease and its token, if it has not lapsed.
    pub async fn lease_holder(&self, lease: &str) -> Result<Option<(String, u64)>, StoreError> {
        let client = self.client().await?;
        let row = client
            .query_opt(
                "SELECT holder, token FROM leases
                 WHERE name = $1 AND expires_at >= statement_timestamp()",
                &[&lease],
            )
            .await
            .map_err(pg("read a lease"))?;
        row.map(|r| Ok::<_, StoreError>((col(&r, 0)?, col_u64(&r, 1)?)))
            .transpose()
    }
}

/// Checks, in the caller's transaction, that `token` is still the lease's, and keeps the
/// lease from changing hands until the transaction ends (the row is locked for share): a
/// takeover waits for the guarded write to commit, and the write it guards never lands
/// after a takeover.
pub(super) async fn fence(tx: &Transaction<'_>, lease: &str, token: u64) -> Result<(), StoreError> {
    let row = tx
        .query_opt(
            "SELECT token FROM leases WHERE name = $1 FOR SHARE",
            &[&lease],
        )
        .await
        .map_err(pg("check a fencing token"))?;
    let current = row.map(|r| col_u64(&r, 0)).transpose()?;
    if current == Some(token) {
        return Ok(());
    }
    Err(StoreError::Fenced {
        lease: lease.to_owned(),
        token,
        current,
    })
}
