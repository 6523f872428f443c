//! Community scripts in PostgreSQL: submissions, the queue that processes them, and the
//! fetched scripts by their source.
//!
//! What a submission and its processing mean is the redb store's own code
//! (`community::new_submission`, `community::finished`). Several engines share the
//! queue: taking the next submission marks it taken for [`TAKEN_FOR`] in the same
//! statement that finds it (`FOR UPDATE SKIP LOCKED`), so one engine fetches it; its
//! outcome is recorded against the entry it took (`queued_at`), and a submission whose
//! engine stopped is taken again once that time has passed.

use chrono::{DateTime, Utc};

use super::journal::push_audit;
use super::schedules::queue_summary_of;
use super::{PgStore, col, decode, encode, pg, take_turns};
use crate::store::community::{Finish, finished, new_submission, pinned_commit, submission_audit};
use crate::store::error::StoreError;
use crate::store::{CommunityContent, CommunityScript, Submitted, SummaryOf};

const KIND: &str = "community script";

/// How long an engine holds a submission it took before another may take it.
const TAKEN_FOR_SECS: i64 = 300;

impl PgStore {
    /// Queues a community script for fetching, or returns the script already made for
    /// the same pinned source, or the submission of the same URLs still queued; `refreshed_from`
    /// always makes a new one.
    pub async fn submit_community_script(
        &self,
        org: &str,
        by: &str,
        github_url: &str,
        readme_url: Option<&str>,
        refreshed_from: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<Submitted, StoreError> {
        transaction!(self, "submit a community script", |tx| async {
            if refreshed_from.is_none() {
                // Submissions of one URL take turns, so two at once make one script.
                take_turns(tx, "community", github_url).await?;
                if let Some(commit) = pinned_commit(github_url) {
                    let row = tx
                        .query_opt(
                            "SELECT s.id, s.record::text FROM community_sources c
                             JOIN community_scripts s ON s.id = c.id
                             WHERE c.github_url = $1 AND c.commit_sha = $2",
                            &[&github_url, &commit],
                        )
                        .await
                        .map_err(pg("read a community source"))?;
                    if let Some(row) = row {
                        return Ok(Submitted::Existing(script_of(&row)?));
                    }
                }
                let row = tx
                    .query_opt(
                        "SELECT s.id, s.record::text FROM community_queue q
                         JOIN community_scripts s ON s.id = q.id
                         WHERE s.github_url = $1 AND s.readme_url IS NOT DISTINCT FROM $2
                         ORDER BY q.due_at LIMIT 1",
                        &[&github_url, &readme_url],
                    )
                    .await
                    .map_err(pg("read the community queue"))?;
                if let Some(row) = row {
                    return Ok(Submitted::Existing(script_of(&row)?));
                }
            }
            let s = new_submission(github_url, readme_url, refreshed_from, now);
            tx.execute(
                "INSERT INTO community_scripts (id, github_url, readme_url, record)
                 VALUES ($1, $2, $3, $4::text::jsonb)",
                &[&s.id, &github_url, &readme_url, &encode(KIND, &s.id, &s)?],
            )
            .await
            .map_err(pg("write a community script"))?;
            tx.execute(
                "INSERT INTO community_queue (id, due_at, attempts) VALUES ($1, $2, 0)",
                &[&s.id, &now.timestamp_millis()],
            )
            .await
            .map_err(pg("queue a community script"))?;
            push_audit(tx, submission_audit(org, by, &s, now)).await?;
            Ok(Submitted::New(s))
        })
    }

    /// Takes the next submission due at `now` that no engine holds, with the time it was
    /// queued for (what [`PgStore::finish_community_job`] names it by).
    pub async fn next_community_job(
        &self,
        now: DateTime<Utc>,
    ) -> Result<Option<(i64, CommunityScript)>, StoreError> {
        transaction!(self, "take a community submission", |tx| async {
            let row = tx
                .query_opt(
                    "UPDATE community_queue
                     SET taken_until = statement_timestamp() + $2::bigint * interval '1 second'
                     WHERE id = (
                         SELECT id FROM community_queue
                         WHERE due_at <= $1
                           AND (taken_until IS NULL OR taken_until < statement_timestamp())
                         ORDER BY due_at, id LIMIT 1
                         FOR UPDATE SKIP LOCKED
                     )
                     RETURNING id, due_at",
                    &[&now.timestamp_millis(), &TAKEN_FOR_SECS],
                )
                .await
                .map_err(pg("take a community submission"))?;
            let Some(row) = row else { return Ok(None) };
            let id: String = col(&row, 0)?;
            let due: i64 = col(&row, 1)?;
            let script = tx
                .query_one(
                    "SELECT id, record::text FROM community_scripts WHERE id = $1",
                    &[&id],
                )
                .await
                .map_err(pg("read a community script"))?;
            Ok(Some((due, script_of(&script)?)))
        })
    }

    /// Records the outcome of processing the submission `id` taken when queued at
    /// `queued_at`: fetched (the script is ready, its source known, its summary queued),
    /// failed for now (queued again for the retry time), or failed for good.
    pub async fn finish_community_job(
        &self,
        queued_at: i64,
        id: &str,
        outcome: Result<CommunityContent, (String, Option<DateTime<Utc>>)>,
        now: DateTime<Utc>,
    ) -> Result<CommunityScript, StoreError> {
        transaction!(self, "finish a community submission", |tx| async {
            let row = tx
                .query_opt(
                    "DELETE FROM community_queue WHERE id = $1 AND due_at = $2
                     RETURNING attempts",
                    &[&id, &queued_at],
                )
                .await
                .map_err(pg("dequeue a community submission"))?
                .ok_or_else(|| StoreError::not_found("queued community script", id))?;
            let attempts = col::<i32>(&row, 0)?.max(0) as u32;
            let row = tx
                .query_one(
                    "SELECT id, record::text FROM community_scripts WHERE id = $1 FOR UPDATE",
                    &[&id],
                )
                .await
                .map_err(pg("read a community script"))?;
            let (s, finish) = finished(script_of(&row)?, attempts, outcome.clone(), now);
            match finish {
                Finish::Ready { commit, content } => {
                    tx.execute(
                        "INSERT INTO community_sources (github_url, commit_sha, id)
                         VALUES ($1, $2, $3)
                         ON CONFLICT (github_url, commit_sha) DO UPDATE SET id = EXCLUDED.id",
                        &[&s.github_url, &commit, &s.id],
                    )
                    .await
                    .map_err(pg("record a community source"))?;
                    queue_summary_of(tx, SummaryOf::Community, &s.id, &content, now).await?;
                }
                Finish::Retry(at) => {
                    tx.execute(
                        "INSERT INTO community_queue (id, due_at, attempts) VALUES ($1, $2, $3)",
                        &[&id, &at.timestamp_millis(), &(s.attempts as i32)],
                    )
                    .await
                    .map_err(pg("queue a community script again"))?;
                }
                Finish::Failed => {}
            }
            tx.execute(
                "UPDATE community_scripts SET record = $2::text::jsonb WHERE id = $1",
                &[&id, &encode(KIND, id, &s)?],
            )
            .await
            .map_err(pg("write a community script"))?;
            Ok(s)
        })
    }

    pub async fn get_community_script(&self, id: &str) -> Result<CommunityScript, StoreError> {
        let client = self.client().await?;
        let row = client
            .query_opt(
                "SELECT id, record::text FROM community_scripts WHERE id = $1",
                &[&id],
            )
            .await
            .map_err(pg("read a community script"))?
            .ok_or_else(|| StoreError::not_found(KIND, id))?;
        script_of(&row)
    }

    /// Every community script, in id (submission) order.
    pub async fn list_community_scripts(&self) -> Result<Vec<CommunityScript>, StoreError> {
        let client = self.client().await?;
        let rows = client
            .query(
                "SELECT id, record::text FROM community_scripts ORDER BY id",
                &[],
            )
            .await
            .map_err(pg("list community scripts"))?;
        rows.iter().map(script_of).collect()
    }
}

fn script_of(row: &tokio_postgres::Row) -> Result<CommunityScript, StoreError> {
    let id: String = col(row, 0)?;
    decode(KIND, &id, &col::<String>(row, 1)?)
}
