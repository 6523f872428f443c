//! The schema's versions, applied in order at connect.
//!
//! `schema_version` holds one row per migration applied. Every engine that connects takes
//! the same transaction-scoped advisory lock before it reads that table, so engines
//! starting together migrate once: the first applies what is missing and commits, the
//! others then find nothing left to do. The migrations and the versions they record are
//! one transaction: a database is moved forward whole or not at all. A version released
//! is never edited; a change is a new file.

use super::{PgStore, col, col_u64, pg};
use crate::store::error::StoreError;

/// The migrations, by version, in order.
const MIGRATIONS: &[(u64, &str)] = &[
    (1, include_str!("migrations/0001_jobs_ledger_leases.sql")),
    (2, include_str!("migrations/0002_outbox.sql")),
    (3, include_str!("migrations/0003_sites_users_audit.sql")),
    (4, include_str!("migrations/0004_schedules.sql")),
    (5, include_str!("migrations/0005_job_artifacts.sql")),
    (6, include_str!("migrations/0006_outbox_dead_letters.sql")),
    (7, include_str!("migrations/0007_channels.sql")),
    (8, include_str!("migrations/0008_templates.sql")),
    (9, include_str!("migrations/0009_community.sql")),
    (10, include_str!("migrations/0010_job_counts.sql")),
];

/// The schema version this engine writes: the last migration's.
pub const SCHEMA_VERSION: u64 = MIGRATIONS[MIGRATIONS.len() - 1].0;

/// Key of the advisory lock held while migrating ("ym-schema" in ASCII).
const MIGRATION_LOCK: i64 = 0x796d_2d73_6368_656d;

impl PgStore {
    /// Applies the migrations the database lacks; refuses a database whose schema is newer
    /// than [`SCHEMA_VERSION`].
    pub(super) async fn migrate(&self) -> Result<(), StoreError> {
        let address = self.address.clone();
        let applied = transaction!(self, "migrate the schema", |tx| async {
            tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
                .await
                .map_err(pg("take the migration lock"))?;
            tx.batch_execute(
                "CREATE TABLE IF NOT EXISTS schema_version (
                         version bigint PRIMARY KEY,
                         applied_at timestamptz NOT NULL DEFAULT now()
                     )",
            )
            .await
            .map_err(pg("create schema_version"))?;
            let found = tx
                .query_one("SELECT max(version) FROM schema_version", &[])
                .await
                .map_err(pg("read the schema version"))?;
            let found: Option<i64> = col(&found, 0)?;
            let found = found.map_or(0, |v| v.max(0) as u64);
            if found > SCHEMA_VERSION {
                return Err(StoreError::SchemaTooNew {
                    path: address.clone(),
                    found,
                    supported: SCHEMA_VERSION,
                });
            }
            let mut applied = Vec::new();
            for (version, sql) in MIGRATIONS.iter().filter(|(v, _)| *v > found) {
                tx.batch_execute(sql)
                    .await
                    .map_err(pg("apply a schema migration"))?;
                tx.execute(
                    "INSERT INTO schema_version (version) VALUES ($1)",
                    &[&(*version as i64)],
                )
                .await
                .map_err(pg("record a schema migration"))?;
                applied.push(*version);
            }
            Ok(applied)
        })?;
        if !applied.is_empty() {
            tracing::info!(address = %self.address, ?applied, "PostgreSQL schema migrated");
        }
        Ok(())
    }

    /// The schema versions applied to the database, oldest first.
    pub async fn schema_versions(&self) -> Result<Vec<u64>, StoreError> {
        let client = self.client().await?;
        let rows = client
            .query("SELECT version FROM schema_version ORDER BY version", &[])
            .await
            .map_err(pg("read the schema versions"))?;
        rows.iter().map(|r| col_u64(r, 0)).collect()
    }
}
