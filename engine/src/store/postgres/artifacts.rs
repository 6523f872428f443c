//! Job reads beyond one id, the run's jobs, and what a job leaves beside its record (its
//! backup and its diff), in PostgreSQL.
//!
//! A backup and a diff are sealed under the engines' shared credential key and bound to
//! their job (`job-backup/{id}/{seq}`, `job-diff/{id}/{seq}`), as the redb store seals
//! them: an export can carry a router's passwords and keys.

use super::{PgStore, big, col, col_u64, decode, encode, pg};
use crate::store::error::StoreError;
use crate::store::jobs::{MAX_BACKUP_BYTES, STATUSES, backup_record, diff_record};
use crate::store::records::{Job, JobChanges, JobStatus, Page};

const KIND: &str = "job";

impl PgStore {
    /// The job created under an idempotency key of `organization`, if any.
    pub async fn job_by_idempotency_key(
        &self,
        organization: &str,
        key: &str,
    ) -> Result<Option<Job>, StoreError> {
        let client = self.client().await?;
        let row = client
            .query_opt(
                "SELECT id, record::text FROM jobs
                 WHERE organization = $1 AND idempotency_key = $2",
                &[&organization, &key],
            )
            .await
            .map_err(pg("read the job of an idempotency key"))?;
        row.map(|row| job_of(&row)).transpose()
    }

    /// A site's jobs, newest first. The cursor is the `seq_id` of the last job of the
    /// previous page.
    pub async fn jobs_for_site(
        &self,
        site_id: &str,
        page: &Page<u64>,
    ) -> Result<Vec<Job>, StoreError> {
        let before = big(KIND, "after", page.after.unwrap_or(i64::MAX as u64))?;
        let limit = page.capped_limit() as i64;
        let client = self.client().await?;
        let rows = client
            .query(
                "SELECT id, record::text FROM jobs WHERE site_id = $1 AND seq_id < $2
                 ORDER BY seq_id DESC LIMIT $3",
                &[&site_id, &before, &limit],
            )
            .await
            .map_err(pg("read a site's jobs"))?;
        rows.iter().map(job_of).collect()
    }

    /// Jobs in an active status (pending, loaded or running), oldest first; the cursor is
    /// the last `seq_id` seen. Finished statuses return nothing, as in the redb store.
    pub async fn active_jobs(
        &self,
        status: JobStatus,
        page: &Page<u64>,
    ) -> Result<Vec<Job>, StoreError> {
        if status.active_code().is_none() {
            return Ok(Vec::new());
        }
        let after = big(KIND, "after", page.after.unwrap_or(0))?;
        let limit = page.capped_limit() as i64;
        let client = self.client().await?;
        let rows = client
            .query(
                "SELECT id, record::text FROM jobs WHERE status = $1 AND seq_id > $2
                 ORDER BY seq_id LIMIT $3",
                &[&status.as_str(), &after, &limit],
            )
            .await
            .map_err(pg("read active jobs"))?;
        rows.iter().map(job_of).collect()
    }

    /// How many jobs have each status, every status listed: the sums of the counts the
    /// jobs table's triggers keep (`job_counts`), not a count of the table.
    pub async fn job_counts(&self) -> Result<Vec<(JobStatus, u64)>, StoreError> {
        let client = self.client().await?;
        let rows = client
            .query(
                "SELECT status, sum(n)::bigint FROM job_counts GROUP BY status",
                &[],
            )
            .await
            .map_err(pg("count jobs"))?;
        let mut counted = std::collections::HashMap::with_capacity(rows.len());
        for row in &rows {
            counted.insert(col::<String>(row, 0)?, col_u64(row, 1)?);
        }
        Ok(STATUSES
            .iter()
            .map(|s| (*s, counted.get(s.as_str()).copied().unwrap_or(0)))
            .collect())
    }

    /// The jobs of one occurrence in site order, at most `limit`, and how many it has.
    pub async fn run_jobs_limited(
        &self,
        schedule_id: &str,
        occurrence: u64,
        limit: usize,
    ) -> Result<(Vec<Job>, usize), StoreError> {
        let occurrence = big("run", "occurrence", occurrence)?;
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let client = self.client().await?;
        // One statement, so the count and the page come from one snapshot.
        let rows = client
            .query(
                "WITH mine AS (
                     SELECT l.site_id, j.id, j.record FROM ledger l
                     JOIN jobs j ON j.seq_id = l.job_seq
                     WHERE l.schedule_id = $1 AND l.occurrence = $2
                 )
                 SELECT (SELECT count(*) FROM mine), page.id, page.record::text
                 FROM (SELECT 1) AS one
                 LEFT JOIN LATERAL (
                     SELECT id, record FROM mine ORDER BY site_id COLLATE \"C\" LIMIT $3
                 ) AS page ON true",
                &[&schedule_id, &occurrence, &limit],
            )
            .await
            .map_err(pg("read a run's jobs"))?;
        let mut total = 0;
        let mut jobs = Vec::with_capacity(rows.len());
        for row in &rows {
            total = col_u64(row, 0)? as usize;
            if let (Some(id), Some(record)) = (
                col::<Option<String>>(row, 1)?,
                col::<Option<String>>(row, 2)?,
            ) {
                jobs.push(decode(KIND, &id, &record)?);
            }
        }
        Ok((jobs, total))
    }

    /// The jobs of one occurrence, in site order.
    pub async fn run_jobs(
        &self,
        schedule_id: &str,
        occurrence: u64,
    ) -> Result<Vec<Job>, StoreError> {
        Ok(self
            .run_jobs_limited(schedule_id, occurrence, usize::MAX)
            .await?
            .0)
    }

    /// Stores a job's backup apart from the job, sealed, and marks the job as having one.
    pub async fn put_backup(&self, id: &str, backup: &[u8]) -> Result<(), StoreError> {
        if backup.len() > MAX_BACKUP_BYTES {
            return Err(StoreError::invalid(
                KIND,
                "backup",
                format!("at most {MAX_BACKUP_BYTES} bytes"),
            ));
        }
        self.put_artifact(id, "backup", backup, |job| job.has_backup = true)
            .await
    }

    /// The job's backup, unsealed; `None` when none was stored.
    pub async fn get_backup(&self, id: &str) -> Result<Option<Vec<u8>>, StoreError> {
        self.get_artifact(id, "backup").await
    }

    /// Stores the diff of what a job's script changed, sealed, and its shape on the job.
    pub async fn put_diff(
        &self,
        id: &str,
        diff: &str,
        changes: JobChanges,
    ) -> Result<(), StoreError> {
        if diff.len() > MAX_BACKUP_BYTES {
            return Err(StoreError::invalid(
                KIND,
                "diff",
                format!("at most {MAX_BACKUP_BYTES} bytes"),
            ));
        }
        self.put_artifact(id, "diff", diff.as_bytes(), |job| {
            job.changes = Some(changes.clone())
        })
        .await
    }

    /// The diff of what a job's script changed, unsealed; `None` when none was stored.
    pub async fn get_diff(&self, id: &str) -> Result<Option<String>, StoreError> {
        Ok(self
            .get_artifact(id, "diff")
            .await?
            .map(|plain| String::from_utf8_lossy(&plain).into_owned()))
    }

    /// Seals `plain` for the job `id` and stores it as its `kind`, marking the job with
    /// `mark`, in one transaction.
    async fn put_artifact(
        &self,
        id: &str,
        kind: &'static str,
        plain: &[u8],
        mark: impl Fn(&mut Job),
    ) -> Result<(), StoreError> {
        transaction!(self, "store a job's artifact", |tx| async {
            let row = tx
                .query_opt(
                    "SELECT id, record::text, seq_id FROM jobs WHERE id = $1 FOR UPDATE",
                    &[&id],
                )
                .await
                .map_err(pg("lock a job"))?
                .ok_or_else(|| StoreError::not_found(KIND, id))?;
            let mut job = job_of(&row)?;
            let seq: i64 = col(&row, 2)?;
            mark(&mut job);
            let sealed = self
                .vault
                .seal_bytes(&artifact_record(kind, id, job.seq_id), plain)
                .ok_or_else(|| StoreError::invalid(KIND, kind, "too large to seal"))?;
            tx.execute(
                "UPDATE jobs SET record = $2::text::jsonb WHERE seq_id = $1",
                &[&seq, &encode(KIND, id, &job)?],
            )
            .await
            .map_err(pg("update a job"))?;
            tx.execute(
                "INSERT INTO job_artifacts (seq_id, kind, sealed) VALUES ($1, $2, $3)
                 ON CONFLICT (seq_id, kind) DO UPDATE SET sealed = EXCLUDED.sealed",
                &[&seq, &kind, &sealed],
            )
            .await
            .map_err(pg("store a job's artifact"))?;
            Ok(())
        })
    }

    async fn get_artifact(
        &self,
        id: &str,
        kind: &'static str,
    ) -> Result<Option<Vec<u8>>, StoreError> {
        let client = self.client().await?;
        let row = client
            .query_opt(
                "SELECT j.seq_id, a.sealed FROM jobs j
                 LEFT JOIN job_artifacts a ON a.seq_id = j.seq_id AND a.kind = $2
                 WHERE j.id = $1",
                &[&id, &kind],
            )
            .await
            .map_err(pg("read a job's artifact"))?
            .ok_or_else(|| StoreError::not_found(KIND, id))?;
        let seq = col_u64(&row, 0)?;
        let Some(sealed) = col::<Option<Vec<u8>>>(&row, 1)? else {
            return Ok(None);
        };
        self.vault
            .open_bytes(&artifact_record(kind, id, seq), &sealed)
            .map(Some)
            .ok_or_else(|| StoreError::BackupUnreadable { job: id.to_owned() })
    }
}

/// What an artifact is sealed for: the redb store's own binding for each kind.
fn artifact_record(kind: &str, id: &str, seq: u64) -> String {
    if kind == "diff" {
        diff_record(id, seq)
    } else {
        backup_record(id, seq)
    }
}

fn job_of(row: &tokio_postgres::Row) -> Result<Job, StoreError> {
    let id: String = col(row, 0)?;
    decode(KIND, &id, &col::<String>(row, 1)?)
}
