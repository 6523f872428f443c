//! The summaries still to write: one entry per scheduled script, template or community
//! script whose content is new or changed, written in the transaction that changed it,
//! so a restart loses none. An entry names the content by its digest: a summary written
//! for content that has changed since is not stored.

use chrono::{DateTime, Utc};
use redb::{ReadableTable, WriteTransaction};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::Store;
use super::error::StoreError;
use super::tables::{COMMUNITY, SCHEDULES, SUMMARY_QUEUE, TEMPLATES};
use super::txn::{decode, encode, load, millis};
use super::{CommunityScript, ScheduledScript, Template};

const KIND: &str = "summary";

/// What a summary is written for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SummaryOf {
    Schedule,
    Template,
    Community,
}

impl SummaryOf {
    pub(crate) fn key(self) -> &'static str {
        match self {
            SummaryOf::Schedule => "schedule",
            SummaryOf::Template => "template",
            SummaryOf::Community => "community",
        }
    }

    pub(crate) fn from_key(key: &str) -> Option<SummaryOf> {
        Some(match key {
            "schedule" => SummaryOf::Schedule,
            "template" => SummaryOf::Template,
            "community" => SummaryOf::Community,
            _ => return None,
        })
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct Entry {
    pub(super) digest: String,
    pub(super) attempts: u32,
    /// Unix milliseconds.
    pub(super) due: i64,
}

/// A summary to write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SummaryTask {
    pub of: SummaryOf,
    pub id: String,
    pub digest: String,
    /// Attempts with the generator so far.
    pub attempts: u32,
    pub script: String,
    /// The summary the record has now, if any.
    pub current: Option<String>,
}

pub(super) fn digest(script: &str) -> String {
    hex::encode(Sha256::digest(script.as_bytes()))
}

/// Queues a summary of `script` for the record `id`, replacing one queued before.
pub(crate) fn queue_summary(
    tx: &WriteTransaction,
    of: SummaryOf,
    id: &str,
    script: &str,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    let bytes = queue_entry(id, script, now)?;
    tx.open_table(SUMMARY_QUEUE)?
        .insert((of.key(), id), bytes.as_slice())?;
    Ok(())
}

/// A queue entry for a summary of `script`, as either store keeps it: due at once.
pub(crate) fn queue_entry(
    id: &str,
    script: &str,
    now: DateTime<Utc>,
) -> Result<Vec<u8>, StoreError> {
    let entry = Entry {
        digest: digest(script),
        attempts: 0,
        due: millis(now),
    };
    encode(KIND, id, &entry)
}

/// The record's content and its summary now, or `None` when it is gone.
fn content(
    tx: &impl ReadTables,
    of: SummaryOf,
    id: &str,
) -> Result<Option<(String, Option<String>)>, StoreError> {
    Ok(match of {
        SummaryOf::Schedule => tx
            .schedule(id)?
            .map(|s: ScheduledScript| (s.script, s.summary)),
        SummaryOf::Template => tx.template(id)?.map(|t: Template| (t.content, t.summary)),
        SummaryOf::Community => tx.community(id)?.and_then(|c: CommunityScript| {
            let summary = c.summary;
            c.fetched.map(|f| (f.content, summary))
        }),
    })
}

/// Reading the three kinds of record, in a read or a write transaction.
trait ReadTables {
    fn schedule(&self, id: &str) -> Result<Option<ScheduledScript>, StoreError>;
    fn template(&self, id: &str) -> Result<Option<Template>, StoreError>;
    fn community(&self, id: &str) -> Result<Option<CommunityScript>, StoreError>;
}

macro_rules! read_tables {
    ($t:ty) => {
        impl ReadTables for $t {
            fn schedule(&self, id: &str) -> Result<Option<ScheduledScript>, StoreError> {
                load(&self.open_table(SCHEDULES)?, "schedule", id)
            }
            fn template(&self, id: &str) -> Result<Option<Template>, StoreError> {
                load(&self.open_table(TEMPLATES)?, "template", id)
            }
            fn community(&self, id: &str) -> Result<Option<CommunityScript>, StoreError> {
                load(&self.open_table(COMMUNITY)?, "community script", id)
            }
        }
    };
}
read_tables!(redb::ReadTransaction);
read_tables!(WriteTransaction);

impl Store {
    /// Up to `limit` summaries due at `now`, with the content they are for.
    pub fn due_summaries(
        &self,
        now: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<SummaryTask>, StoreError> {
        self.read(|tx| {
            let mut out = Vec::new();
            for row in tx.open_table(SUMMARY_QUEUE)?.iter()? {
                let (key, bytes) = row?;
                let (kind, id) = key.value();
                let entry: Entry = decode(KIND, id, bytes.value())?;
                let Some(of) = SummaryOf::from_key(kind) else {
                    continue;
                };
                if entry.due > millis(now) {
                    continue;
                }
                if let Some((script, current)) = content(tx, of, id)? {
                    out.push(SummaryTask {
                        of,
                        id: id.to_owned(),
                        digest: entry.digest,
                        attempts: entry.attempts,
                        script,
                        current,
                    });
                } else {
                    // The record is gone; the next write drops its entry.
                    out.push(SummaryTask {
                        of,
                        id: id.to_owned(),
                        digest: entry.digest,
                        attempts: entry.attempts,
                        script: String::new(),
                        current: None,
                    });
                }
                if out.len() >= limit {
                    break;
                }
            }
            Ok(out)
        })
    }

    /// Stores `summary` for the task's record if its content is still the one summarized,
    /// and keeps the task queued for `retry_at` (a better summary later) or removes it.
    pub fn finish_summary(
        &self,
        task: &SummaryTask,
        summary: Option<&str>,
        retry_at: Option<DateTime<Utc>>,
    ) -> Result<(), StoreError> {
        self.write(|tx| {
            let key = (task.of.key(), task.id.as_str());
            let queued: Option<Entry> = match tx.open_table(SUMMARY_QUEUE)?.get(key)? {
                Some(b) => Some(decode(KIND, &task.id, b.value())?),
                None => None,
            };
            // Changed again since: the newer entry stays, and this summary is stale.
            if queued.as_ref().is_some_and(|e| e.digest != task.digest) {
                return Ok(());
            }
            let now_content = content(tx, task.of, &task.id)?;
            if let (Some(summary), Some((script, _))) = (summary, &now_content)
                && digest(script) == task.digest
            {
                let summary = summary.to_owned();
                match task.of {
                    SummaryOf::Schedule => {
                        if let Some(mut s) = tx.schedule(&task.id)? {
                            // Only the summary changes, which no listing filters on:
                            // the listing's indexes (`listing::reindex`) stay as they are.
                            s.summary = Some(summary);
                            let bytes = encode("schedule", &task.id, &s)?;
                            tx.open_table(SCHEDULES)?
                                .insert(task.id.as_str(), bytes.as_slice())?;
                        }
                    }
                    SummaryOf::Template => {
                        if let Some(mut t) = tx.template(&task.id)? {
                            t.summary = Some(summary);
                            let bytes = encode("template", &task.id, &t)?;
                            tx.open_table(TEMPLATES)?
                                .insert(task.id.as_str(), bytes.as_slice())?;
                        }
                    }
                    SummaryOf::Community => {
                        if let Some(mut c) = tx.community(&task.id)? {
                            c.summary = Some(summary);
                            let bytes = encode("community script", &task.id, &c)?;
                            tx.open_table(COMMUNITY)?
                                .insert(task.id.as_str(), bytes.as_slice())?;
                        }
                    }
                }
            }
            let mut queue = tx.open_table(SUMMARY_QUEUE)?;
            match requeued(task, retry_at, now_content.is_some()) {
                Some(entry) => {
                    let bytes = encode(KIND, &task.id, &entry)?;
                    queue.insert(key, bytes.as_slice())?;
                }
                None => {
                    queue.remove(key)?;
                }
            }
            Ok(())
        })
    }
}

/// The queue entry a finished task leaves: queued again for `retry_at` while its record
/// exists (a better summary later), or none.
pub(super) fn requeued(
    task: &SummaryTask,
    retry_at: Option<DateTime<Utc>>,
    record_exists: bool,
) -> Option<Entry> {
    match (retry_at, record_exists) {
        (Some(at), true) => Some(Entry {
            digest: task.digest.clone(),
            attempts: task.attempts + 1,
            due: millis(at),
        }),
        _ => None,
    }
}
