//! Scheduled scripts in PostgreSQL: creation, reads, edits, deletion, the due index, and
//! the targets an approval binds, resolved from the sites kept here.
//!
//! What an edit means is decided by the same code as in the redb store
//! (`schedules::new_schedule`, `schedules::patched`, `schedules::deletion_audit`,
//! `targets::reach`): this module locks the schedule's row (`FOR UPDATE`), so two
//! engines editing it take turns and the second sees the first's edit, and writes what
//! that code returns with its audit line and summary entry in one transaction. Every
//! change that may move a launch is announced (`Change::Schedules`) in the same
//! transaction, so the engine that holds the scheduler lease wakes for it.

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Utc};
use deadpool_postgres::Transaction;
use tokio_postgres::error::SqlState;

use super::changes::{Change, announce_in};
use super::jobs::change_in;
use super::journal::push_audit;
use super::outbox::push_event;
use super::{PgStore, col, decode, encode, pg};
use crate::store::SummaryOf;
use crate::store::approvals::{ApprovalToken, Decision, spend_token};
use crate::store::error::StoreError;
use crate::store::listing::{ScheduleFilter, ScheduleListing, frequency_code, frequency_of};
use crate::store::records::{Page, ScheduleInput, SchedulePatch, ScheduledScript};
use crate::store::schedules::{
    Refusal, authorized, cancel_transition, cancelled, created_audit, deletion_audit, due_key,
    may_authorize, new_schedule, patched, requested,
};
use crate::store::sites::StoredSite;
use crate::store::summaries::queue_entry;
use crate::store::targets::{Targets, endpoint_of, reach};

const KIND: &str = "schedule";

impl PgStore {
    /// Creates a scheduled script in `unauthorized`; its description must be new in its
    /// organization, and its script must pass the lint policy with its acknowledged risks.
    pub async fn create_schedule(
        &self,
        input: ScheduleInput,
        now: DateTime<Utc>,
    ) -> Result<ScheduledScript, StoreError> {
        let mut out = self.create_schedules(vec![input], now).await?;
        out.pop()
            .ok_or_else(|| StoreError::not_found(KIND, "new schedule"))
    }

    /// Creates many scheduled scripts in one transaction, each as
    /// [`PgStore::create_schedule`] would: all of them, or none when one is refused.
    pub async fn create_schedules(
        &self,
        inputs: Vec<ScheduleInput>,
        now: DateTime<Utc>,
    ) -> Result<Vec<ScheduledScript>, StoreError> {
        let schedules = inputs
            .into_iter()
            .map(|input| new_schedule(input, now))
            .collect::<Result<Vec<_>, _>>()?;
        transaction!(self, "create schedules", |tx| async {
            for schedule in &schedules {
                insert(tx, schedule).await?;
                queue_summary_of(tx, SummaryOf::Schedule, &schedule.id, &schedule.script, now)
                    .await?;
                push_audit(tx, created_audit(schedule)).await?;
            }
            announce_in(tx, Change::Schedules).await?;
            Ok(schedules.clone())
        })
    }

    pub async fn get_schedule(&self, id: &str) -> Result<ScheduledScript, StoreError> {
        let client = self.client().await?;
        let row = client
            .query_opt(
                "SELECT id, record::text FROM schedules WHERE id = $1",
                &[&id],
            )
            .await
            .map_err(pg("read a schedule"))?
            .ok_or_else(|| StoreError::not_found(KIND, id))?;
        schedule_of(&row)
    }

    /// An organization's schedules in creation order; the cursor is the last id seen.
    pub async fn list_schedules(
        &self,
        organization: &str,
        page: &Page<String>,
    ) -> Result<Vec<ScheduledScript>, StoreError> {
        let after = page.after.clone().unwrap_or_default();
        let limit = page.capped_limit() as i64;
        let client = self.client().await?;
        let rows = client
            .query(
                "SELECT id, record::text FROM schedules WHERE organization = $1 AND id > $2
                 ORDER BY id LIMIT $3",
                &[&organization, &after, &limit],
            )
            .await
            .map_err(pg("list schedules"))?;
        rows.iter().map(schedule_of).collect()
    }

    /// Edits a schedule before its launch, as user `by`, by the rules of
    /// `schedules::patched`; the edit, its audit line and a new summary entry (when the
    /// script changed) are one commit.
    pub async fn update_schedule(
        &self,
        id: &str,
        patch: SchedulePatch,
        by: &str,
        now: DateTime<Utc>,
    ) -> Result<ScheduledScript, StoreError> {
        transaction!(self, "update a schedule", |tx| async {
            let old = locked(tx, id).await?;
            let Some((new, audit)) = patched(&old, patch.clone(), by, now)? else {
                return Ok(old);
            };
            if old.script != new.script {
                queue_summary_of(tx, SummaryOf::Schedule, &new.id, &new.script, now).await?;
            }
            push_audit(tx, audit).await?;
            put(tx, &new).await?;
            announce_in(tx, Change::Schedules).await?;
            Ok(new)
        })
    }

    /// Deletes a schedule that is not launched, as user `by`, with its audit line. Its
    /// runs and ledger entries stay, so an occurrence that ran is still known to have run.
    pub async fn delete_schedule(
        &self,
        id: &str,
        by: &str,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        transaction!(self, "delete a schedule", |tx| async {
            let old = locked(tx, id).await?;
            push_audit(tx, deletion_audit(&old, by, now)?).await?;
            tx.execute("DELETE FROM schedules WHERE id = $1", &[&id])
                .await
                .map_err(pg("delete a schedule"))?;
            announce_in(tx, Change::Schedules).await?;
            Ok(())
        })
    }

    /// The schedules of `organization` that match `filter`, in creation (id) order,
    /// skipping `offset` of them and returning at most `limit` (all when `None`), with the
    /// number that match in all: the conditions of `ScheduleFilter::matches`, on the
    /// columns kept with each schedule, counted and paged in one statement.
    pub async fn filter_schedules(
        &self,
        organization: &str,
        filter: &ScheduleFilter,
        offset: usize,
        limit: Option<usize>,
    ) -> Result<ScheduleListing, StoreError> {
        let codes: Option<Vec<i16>> = filter
            .codes()
            .map(|codes| codes.into_iter().map(i16::from).collect());
        if codes.as_ref().is_some_and(Vec::is_empty) {
            return Ok(ScheduleListing {
                items: Vec::new(),
                total: 0,
            });
        }
        let name = filter.name.as_ref().map(|n| n.to_lowercase());
        let offset = i64::try_from(offset).unwrap_or(i64::MAX);
        let limit = limit.map_or(i64::MAX, |l| i64::try_from(l).unwrap_or(i64::MAX));
        let client = self.client().await?;
        let rows = client
            .query(
                "WITH matching AS (
                     SELECT id, record FROM schedules
                     WHERE organization = $1
                       AND ($2::text[] IS NULL OR id = ANY($2))
                       AND ($3::text IS NULL OR strpos(name_lower, $3) > 0)
                       AND ($4::smallint[] IS NULL OR frequency = ANY($4))
                       AND ($5::timestamptz IS NULL OR created_at >= $5)
                       AND ($6::timestamptz IS NULL OR created_at <= $6)
                       AND ($7::text IS NULL OR created_by = $7)
                 )
                 SELECT (SELECT count(*) FROM matching), page.id, page.record::text
                 FROM (SELECT 1) AS one
                 LEFT JOIN LATERAL (
                     SELECT id, record FROM matching ORDER BY id OFFSET $8 LIMIT $9
                 ) AS page ON true",
                &[
                    &organization,
                    &filter.ids,
                    &name,
                    &codes,
                    &filter.created_from,
                    &filter.created_to,
                    &filter.created_by,
                    &offset,
                    &limit,
                ],
            )
            .await
            .map_err(pg("list schedules"))?;
        let mut total = 0;
        let mut items = Vec::with_capacity(rows.len());
        for row in &rows {
            total = col::<i64>(row, 0)?.max(0) as u64;
            if let (Some(id), Some(record)) = (
                col::<Option<String>>(row, 1)?,
                col::<Option<String>>(row, 2)?,
            ) {
                items.push(decode(KIND, &id, &record)?);
            }
        }
        Ok(ScheduleListing { items, total })
    }

    /// Schedules whose next launch is at or before `now`, earliest first.
    pub async fn due_schedules(
        &self,
        now: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<ScheduledScript>, StoreError> {
        let limit = limit.clamp(1, crate::store::MAX_PAGE) as i64;
        let client = self.client().await?;
        let rows = client
            .query(
                "SELECT id, record::text FROM schedules WHERE due_at <= $1
                 ORDER BY due_at, id LIMIT $2",
                &[&now.timestamp_millis(), &limit],
            )
            .await
            .map_err(pg("read the due schedules"))?;
        rows.iter().map(schedule_of).collect()
    }

    /// The earliest launch time of any schedule that may launch, passing over those in
    /// `skip` (schedules the launcher is launching already).
    pub async fn next_due_at(
        &self,
        skip: &HashSet<String>,
    ) -> Result<Option<DateTime<Utc>>, StoreError> {
        let skip: Vec<&str> = skip.iter().map(String::as_str).collect();
        let client = self.client().await?;
        let row = client
            .query_one(
                "SELECT min(due_at) FROM schedules
                 WHERE due_at IS NOT NULL AND NOT (id = ANY($1))",
                &[&skip],
            )
            .await
            .map_err(pg("read the next launch"))?;
        Ok(col::<Option<i64>>(&row, 0)?.and_then(DateTime::from_timestamp_millis))
    }

    /// Moves a schedule's next launch (missed occurrences skipped, a recurrence ended).
    pub async fn set_next_launch(
        &self,
        id: &str,
        next: Option<DateTime<Utc>>,
        now: DateTime<Utc>,
    ) -> Result<ScheduledScript, StoreError> {
        transaction!(self, "move a schedule's next launch", |tx| async {
            let mut schedule = locked(tx, id).await?;
            schedule.next_launch_at = next;
            schedule.updated_at = now;
            put(tx, &schedule).await?;
            announce_in(tx, Change::Schedules).await?;
            Ok(schedule)
        })
    }

    /// Marks a schedule authorized by `by` under the approval binding `approval`, due at
    /// `next_launch_at`, using up the approval link `token` (a digest) when one was
    /// presented, and writing the decision, all in one transaction: the rules of
    /// `schedules::may_authorize`, judged on the schedule and its targets as they are in
    /// this transaction (rows locked), so a schedule or site that changed since the caller
    /// read it is refused, and two clicks on one link cannot both approve.
    #[allow(clippy::too_many_arguments)]
    pub(crate) async fn authorize_schedule(
        &self,
        id: &str,
        by: &str,
        approval: &str,
        allow_self_approval: bool,
        next_launch_at: Option<DateTime<Utc>>,
        token: Option<&str>,
        decision: Decision,
        now: DateTime<Utc>,
    ) -> Result<Result<ScheduledScript, Refusal>, StoreError> {
        transaction!(self, "authorize a schedule", |tx| async {
            let old = locked(tx, id).await?;
            let targets = resolve(tx, &old).await?;
            if let Err(refusal) = may_authorize(&old, by, approval, allow_self_approval, &targets)?
            {
                return Ok(Err(refusal));
            }
            if let Some(digest) = token {
                let row = tx
                    .query_opt(
                        "SELECT record::text FROM approval_tokens WHERE digest = $1 FOR UPDATE",
                        &[&digest],
                    )
                    .await
                    .map_err(pg("read an approval token"))?;
                let found: Option<ApprovalToken> = match row {
                    Some(row) => Some(decode("approval token", id, &col::<String>(&row, 0)?)?),
                    None => None,
                };
                match spend_token(found, id, approval, by, now) {
                    Ok(spent) => {
                        tx.execute(
                            "UPDATE approval_tokens SET record = $2::text::jsonb WHERE digest = $1",
                            &[&digest, &encode("approval token", id, &spent)?],
                        )
                        .await
                        .map_err(pg("use an approval token"))?;
                    }
                    Err(rejection) => return Ok(Err(Refusal::Token(rejection))),
                }
            }
            let new = authorized(&old, by, approval, targets, next_launch_at, now);
            put(tx, &new).await?;
            push_audit(tx, decision.audit.clone()).await?;
            push_event(tx, decision.event, decision.payload.clone(), now).await?;
            announce_in(tx, Change::Schedules).await?;
            Ok(Ok(new))
        })
    }

    /// Cancels a schedule that has not finished, writing the decision with it; it leaves
    /// the due index at once, and its jobs that no engine started (pending, or loaded by
    /// an engine that has not begun them) fail as `cancelled` in the same transaction, so
    /// no engine can start one after the commit: an engine holding one finds it no longer
    /// held.
    pub(crate) async fn cancel_schedule(
        &self,
        id: &str,
        decision: Decision,
        now: DateTime<Utc>,
    ) -> Result<ScheduledScript, StoreError> {
        transaction!(self, "cancel a schedule", |tx| async {
            let old = locked(tx, id).await?;
            let new = cancelled(&old, now)?;
            put(tx, &new).await?;
            let unstarted: Vec<String> = tx
                .query(
                    "SELECT j.id FROM ledger l JOIN jobs j ON j.seq_id = l.job_seq
                     WHERE l.schedule_id = $1 AND j.status IN ('pending', 'loaded')
                     ORDER BY j.seq_id",
                    &[&id],
                )
                .await
                .map_err(pg("find a schedule's unstarted jobs"))?
                .iter()
                .map(|r| col(r, 0))
                .collect::<Result<_, _>>()?;
            for job in unstarted {
                change_in(tx, &job, &[cancel_transition()], now).await?;
            }
            push_audit(tx, decision.audit.clone()).await?;
            push_event(tx, decision.event, decision.payload.clone(), now).await?;
            announce_in(tx, Change::Schedules).await?;
            Ok(new)
        })
    }

    /// Records that authorization was requested, with the approval links' tokens (one
    /// per recipient), the decision's audit line and its event, in one transaction: the
    /// links are announced if and only if the request and its tokens exist. Returns the
    /// schedule and the event's id.
    pub(crate) async fn request_authorization(
        &self,
        id: &str,
        tokens: &[ApprovalToken],
        decision: Decision,
        now: DateTime<Utc>,
    ) -> Result<(ScheduledScript, u64), StoreError> {
        transaction!(self, "request authorization", |tx| async {
            let old = locked(tx, id).await?;
            let schedule = requested(&old, now)?;
            put(tx, &schedule).await?;
            for token in tokens {
                tx.execute(
                    "INSERT INTO approval_tokens (digest, schedule_id, record)
                     VALUES ($1, $2, $3::text::jsonb)",
                    &[&token.digest, &id, &encode("approval token", id, token)?],
                )
                .await
                .map_err(pg("write an approval token"))?;
            }
            push_audit(tx, decision.audit.clone()).await?;
            let event = push_event(tx, decision.event, decision.payload.clone(), now).await?;
            Ok((schedule, event))
        })
    }

    /// The approval token with this digest, if one was issued.
    pub(crate) async fn approval_token(
        &self,
        digest: &str,
    ) -> Result<Option<ApprovalToken>, StoreError> {
        let client = self.client().await?;
        let row = client
            .query_opt(
                "SELECT record::text FROM approval_tokens WHERE digest = $1",
                &[&digest],
            )
            .await
            .map_err(pg("read an approval token"))?;
        row.map(|row| decode("approval token", digest, &col::<String>(&row, 0)?))
            .transpose()
    }

    /// The approval binding of a schedule as it stands, with its targets resolved now
    /// from the sites kept here: what an approver is shown and approves.
    pub async fn approval_binding(
        &self,
        schedule: &ScheduledScript,
    ) -> Result<(String, Targets), StoreError> {
        let targets = transaction!(self, "resolve a schedule's targets", |tx| resolve(
            tx, schedule
        ))?;
        Ok((crate::approval::approval_hash(schedule, &targets), targets))
    }
}

/// Resolves `schedule`'s targets in the caller's transaction, locking the rows of the
/// sites it reaches (`FOR SHARE`) so none of them changes before the transaction ends:
/// what an approval or a launch decides on is what it commits with.
pub(super) async fn resolve(
    tx: &Transaction<'_>,
    schedule: &ScheduledScript,
) -> Result<Targets, StoreError> {
    let tagged = if schedule.tags.is_empty() {
        Vec::new()
    } else {
        let rows = tx
            .query(
                "SELECT id FROM sites WHERE organization = $1 AND tags && $2",
                &[&schedule.organization, &schedule.tags],
            )
            .await
            .map_err(pg("read the sites of a schedule's tags"))?;
        rows.iter()
            .map(|r| col::<String>(r, 0))
            .collect::<Result<Vec<_>, _>>()?
    };
    let (fleet, ids) = reach(schedule, tagged);
    let rows = tx
        .query(
            "SELECT id, record::text FROM sites WHERE id = ANY($1) ORDER BY id FOR SHARE",
            &[&ids],
        )
        .await
        .map_err(pg("read a schedule's sites"))?;
    let mut stored: HashMap<String, StoredSite> = HashMap::with_capacity(rows.len());
    for row in &rows {
        let id: String = col(row, 0)?;
        let site = decode("site", &id, &col::<String>(row, 1)?)?;
        stored.insert(id, site);
    }
    let endpoints = ids
        .iter()
        .map(|id| endpoint_of(&schedule.organization, id, stored.get(id)))
        .collect();
    Ok(Targets {
        sites: fleet,
        endpoints,
    })
}

/// The schedule `id`, its row locked until the caller's transaction ends.
pub(super) async fn locked(tx: &Transaction<'_>, id: &str) -> Result<ScheduledScript, StoreError> {
    locked_if_any(tx, id)
        .await?
        .ok_or_else(|| StoreError::not_found(KIND, id))
}

/// [`locked`], or `None` when there is no schedule `id`.
pub(super) async fn locked_if_any(
    tx: &Transaction<'_>,
    id: &str,
) -> Result<Option<ScheduledScript>, StoreError> {
    let row = tx
        .query_opt(
            "SELECT id, record::text FROM schedules WHERE id = $1 FOR UPDATE",
            &[&id],
        )
        .await
        .map_err(pg("read a schedule"))?;
    row.map(|row| schedule_of(&row)).transpose()
}

async fn insert(tx: &Transaction<'_>, schedule: &ScheduledScript) -> Result<(), StoreError> {
    let n = tx
        .execute(
            "INSERT INTO schedules (id, organization, description, due_at, name_lower,
                 frequency, created_at, created_by, record)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9::text::jsonb)
             ON CONFLICT ON CONSTRAINT schedules_name_once DO NOTHING",
            &[
                &schedule.id,
                &schedule.organization,
                &schedule.description,
                &due_key(schedule),
                &schedule.description.to_lowercase(),
                &frequency(schedule),
                &schedule.created_at,
                &schedule.created_by,
                &encode(KIND, &schedule.id, schedule)?,
            ],
        )
        .await
        .map_err(pg("write a schedule"))?;
    if n == 0 {
        return Err(StoreError::ScheduleNameTaken {
            name: schedule.description.clone(),
        });
    }
    Ok(())
}

/// Writes a schedule back, with its description and due index as they now are.
pub(super) async fn put(
    tx: &Transaction<'_>,
    schedule: &ScheduledScript,
) -> Result<(), StoreError> {
    tx.execute(
        "UPDATE schedules SET description = $2, due_at = $3, name_lower = $4, frequency = $5,
             record = $6::text::jsonb
         WHERE id = $1",
        &[
            &schedule.id,
            &schedule.description,
            &due_key(schedule),
            &schedule.description.to_lowercase(),
            &frequency(schedule),
            &encode(KIND, &schedule.id, schedule)?,
        ],
    )
    .await
    .map_err(|e| {
        if e.code() == Some(&SqlState::UNIQUE_VIOLATION) {
            StoreError::ScheduleNameTaken {
                name: schedule.description.clone(),
            }
        } else {
            pg("write a schedule")(e)
        }
    })?;
    Ok(())
}

/// Queues a summary of `script` for the record `id` of kind `of`, replacing one queued
/// before.
pub(super) async fn queue_summary_of(
    tx: &Transaction<'_>,
    of: SummaryOf,
    id: &str,
    script: &str,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    let entry = String::from_utf8(queue_entry(id, script, now)?)
        .map_err(|e| StoreError::invalid("summary", "entry", e.to_string()))?;
    tx.execute(
        "INSERT INTO summary_queue (kind, id, entry) VALUES ($1, $2, $3::text::jsonb)
         ON CONFLICT (kind, id) DO UPDATE SET entry = EXCLUDED.entry, taken_until = NULL",
        &[&of.key(), &id, &entry],
    )
    .await
    .map_err(pg("queue a summary"))?;
    Ok(())
}

/// The frequency code a listing filters on (`listing::frequency_code`).
fn frequency(schedule: &ScheduledScript) -> i16 {
    i16::from(frequency_code(frequency_of(schedule)))
}

fn schedule_of(row: &tokio_postgres::Row) -> Result<ScheduledScript, StoreError> {
    let id: String = col(row, 0)?;
    decode(KIND, &id, &col::<String>(row, 1)?)
}
