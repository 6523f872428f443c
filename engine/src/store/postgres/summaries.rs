//! The summaries still to write, in PostgreSQL: one queue entry per scheduled script,
//! template or community script whose content is new or changed, written with the change
//! (`schedules::queue_summary_of`), named by the content's digest.
//!
//! A summary is stored only while the record's content is still the one summarized; the
//! entry is then kept for a retry or removed by the redb store's rule
//! (`summaries::requeued`). Several engines share the queue: reading the due entries takes
//! them for [`TAKEN_FOR_SECS`] (`FOR UPDATE SKIP LOCKED`), so two engines do not both ask
//! the generator for one summary; an entry queued again, or replaced by newer content, is
//! free at once, and one whose engine stopped is taken again after that time.

use chrono::{DateTime, Utc};
use deadpool_postgres::Transaction;

use super::{PgStore, col, decode, encode, pg};
use crate::store::error::StoreError;
use crate::store::summaries::{Entry, digest, requeued};
use crate::store::{CommunityScript, ScheduledScript, SummaryOf, SummaryTask, Template};

const KIND: &str = "summary";

/// How long an engine holds the summaries it took before another may take them.
const TAKEN_FOR_SECS: i64 = 300;

impl PgStore {
    /// Up to `limit` summaries due at `now`, with the content they are for; a task whose
    /// record is gone has no content, and finishing it drops its entry.
    pub async fn due_summaries(
        &self,
        now: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<SummaryTask>, StoreError> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        transaction!(self, "read the due summaries", |tx| async {
            let rows = tx
                .query(
                    "UPDATE summary_queue q
                     SET taken_until = statement_timestamp() + $3::bigint * interval '1 second'
                     FROM (
                         SELECT kind, id FROM summary_queue
                         WHERE (entry->>'due')::bigint <= $1
                           AND (taken_until IS NULL OR taken_until < statement_timestamp())
                         ORDER BY kind, id LIMIT $2
                         FOR UPDATE SKIP LOCKED
                     ) AS due
                     WHERE q.kind = due.kind AND q.id = due.id
                     RETURNING q.kind, q.id, q.entry::text",
                    &[&now.timestamp_millis(), &limit, &TAKEN_FOR_SECS],
                )
                .await
                .map_err(pg("take the due summaries"))?;
            let mut out = Vec::with_capacity(rows.len());
            for row in &rows {
                let kind: String = col(row, 0)?;
                let id: String = col(row, 1)?;
                let Some(of) = SummaryOf::from_key(&kind) else {
                    continue;
                };
                let entry: Entry = decode(KIND, &id, &col::<String>(row, 2)?)?;
                let (script, current) = content(tx, of, &id, false).await?.unwrap_or_default();
                out.push(SummaryTask {
                    of,
                    id,
                    digest: entry.digest,
                    attempts: entry.attempts,
                    script,
                    current,
                });
            }
            // In the queue's order, as the redb store reads it.
            out.sort_by(|a, b| (a.of.key(), &a.id).cmp(&(b.of.key(), &b.id)));
            Ok(out)
        })
    }

    /// Stores `summary` for the task's record if its content is still the one summarized,
    /// and keeps the task queued for `retry_at` or removes it.
    pub async fn finish_summary(
        &self,
        task: &SummaryTask,
        summary: Option<&str>,
        retry_at: Option<DateTime<Utc>>,
    ) -> Result<(), StoreError> {
        let kind = task.of.key();
        transaction!(self, "finish a summary", |tx| async {
            let queued = tx
                .query_opt(
                    "SELECT entry::text FROM summary_queue WHERE kind = $1 AND id = $2 FOR UPDATE",
                    &[&kind, &task.id],
                )
                .await
                .map_err(pg("read a summary entry"))?;
            let queued: Option<Entry> = match queued {
                Some(row) => Some(decode(KIND, &task.id, &col::<String>(&row, 0)?)?),
                None => None,
            };
            // Changed again since: the newer entry stays, and this summary is stale.
            if queued.as_ref().is_some_and(|e| e.digest != task.digest) {
                return Ok(());
            }
            let now_content = content(tx, task.of, &task.id, true).await?;
            if let (Some(summary), Some((script, _))) = (summary, &now_content)
                && digest(script) == task.digest
            {
                set_summary(tx, task.of, &task.id, summary).await?;
            }
            match requeued(task, retry_at, now_content.is_some()) {
                Some(entry) => {
                    tx.execute(
                        "INSERT INTO summary_queue (kind, id, entry) VALUES ($1, $2, $3::text::jsonb)
                         ON CONFLICT (kind, id)
                         DO UPDATE SET entry = EXCLUDED.entry, taken_until = NULL",
                        &[&kind, &task.id, &encode(KIND, &task.id, &entry)?],
                    )
                    .await
                    .map_err(pg("queue a summary again"))?;
                }
                None => {
                    tx.execute(
                        "DELETE FROM summary_queue WHERE kind = $1 AND id = $2",
                        &[&kind, &task.id],
                    )
                    .await
                    .map_err(pg("dequeue a summary"))?;
                }
            }
            Ok(())
        })
    }
}

/// The table holding records of kind `of`.
fn table(of: SummaryOf) -> &'static str {
    match of {
        SummaryOf::Schedule => "schedules",
        SummaryOf::Template => "templates",
        SummaryOf::Community => "community_scripts",
    }
}

/// The record's content and its summary now, or `None` when it is gone (or, for a
/// community script, not fetched yet); its row locked when `lock`.
async fn content(
    tx: &Transaction<'_>,
    of: SummaryOf,
    id: &str,
    lock: bool,
) -> Result<Option<(String, Option<String>)>, StoreError> {
    let Some(record) = record(tx, of, id, lock).await? else {
        return Ok(None);
    };
    Ok(match of {
        SummaryOf::Schedule => {
            let s: ScheduledScript = decode("schedule", id, &record)?;
            Some((s.script, s.summary))
        }
        SummaryOf::Template => {
            let t: Template = decode("template", id, &record)?;
            Some((t.content, t.summary))
        }
        SummaryOf::Community => {
            let c: CommunityScript = decode("community script", id, &record)?;
            let summary = c.summary;
            c.fetched.map(|f| (f.content, summary))
        }
    })
}

async fn record(
    tx: &Transaction<'_>,
    of: SummaryOf,
    id: &str,
    lock: bool,
) -> Result<Option<String>, StoreError> {
    let select = format!(
        "SELECT record::text FROM {} WHERE id = $1{}",
        table(of),
        if lock { " FOR UPDATE" } else { "" }
    );
    let row = tx
        .query_opt(select.as_str(), &[&id])
        .await
        .map_err(pg("read a summarized record"))?;
    row.map(|row| col::<String>(&row, 0)).transpose()
}

/// Writes `summary` into the record (locked by the caller); only the summary changes,
/// which no column of its table holds.
async fn set_summary(
    tx: &Transaction<'_>,
    of: SummaryOf,
    id: &str,
    summary: &str,
) -> Result<(), StoreError> {
    let Some(text) = record(tx, of, id, true).await? else {
        return Ok(());
    };
    let updated = match of {
        SummaryOf::Schedule => {
            let mut s: ScheduledScript = decode("schedule", id, &text)?;
            s.summary = Some(summary.to_owned());
            encode("schedule", id, &s)?
        }
        SummaryOf::Template => {
            let mut t: Template = decode("template", id, &text)?;
            t.summary = Some(summary.to_owned());
            encode("template", id, &t)?
        }
        SummaryOf::Community => {
            let mut c: CommunityScript = decode("community script", id, &text)?;
            c.summary = Some(summary.to_owned());
            encode("community script", id, &c)?
        }
    };
    let update = format!(
        "UPDATE {} SET record = $2::text::jsonb WHERE id = $1",
        table(of)
    );
    tx.execute(update.as_str(), &[&id, &updated])
        .await
        .map_err(pg("store a summary"))?;
    Ok(())
}
