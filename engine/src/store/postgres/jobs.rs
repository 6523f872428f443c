//! Jobs in PostgreSQL: creation with the idempotency rule, reads, checked transitions,
//! claims with leases, and the settlement of work an engine left in flight.
//!
//! A job's row holds its record and, while an engine works on it, that engine's id and
//! the end of its lease. A claim takes pending jobs nobody else is taking (`FOR UPDATE
//! SKIP LOCKED`), loads them and writes the lease in one transaction. A transition that
//! takes a job out of flight (finished, or back to pending) clears the lease with it.

use super::changes::{Change, announce_in};
use std::time::Duration;

use chrono::{DateTime, Utc};
use deadpool_postgres::Transaction;
use tokio_postgres::Row;

use super::journal::push_audit;
use super::launch::record_outcomes;
use super::outbox::push_events;
use super::{PgStore, big, col, col_u64, decode, encode, lease_millis, pg};
use crate::store::Recovery;
use crate::store::error::StoreError;
use crate::store::jobs::{
    EVENT_SITE_FINISHED, Effect, apply_all, new_job, site_finished_payload, submitted,
};
use crate::store::records::{Job, JobInput, JobStatus, JobTransition, in_flight_settlement};

const KIND: &str = "job";

/// The statuses of work in flight, which an engine holds under a lease.
const HELD: [&str; 2] = ["loaded", "running"];

impl PgStore {
    /// Creates a job, or returns the job already created under the same idempotency key
    /// (then `false`: nothing new was written and nothing will run again).
    pub async fn create_job(
        &self,
        input: JobInput,
        now: DateTime<Utc>,
    ) -> Result<(Job, bool), StoreError> {
        let mut out = self.create_jobs(vec![input], now).await?;
        out.pop()
            .ok_or_else(|| StoreError::not_found(KIND, "new job"))
    }

    /// Creates many jobs in one transaction, with the idempotency rule of
    /// [`PgStore::create_job`] for each. Two engines creating under the same key at once
    /// create one job: the second waits on the first's row and returns it.
    pub async fn create_jobs(
        &self,
        inputs: Vec<JobInput>,
        now: DateTime<Utc>,
    ) -> Result<Vec<(Job, bool)>, StoreError> {
        self.create_jobs_by(inputs, None, now).await
    }

    /// [`PgStore::create_job`] on behalf of `actor`: a job it creates is written with an
    /// audit line (`job.submitted`) in the same transaction, as the redb store's
    /// `create_job_by` does; a job found under the idempotency key writes nothing.
    pub async fn create_job_by(
        &self,
        input: JobInput,
        actor: &str,
        now: DateTime<Utc>,
    ) -> Result<(Job, bool), StoreError> {
        let mut out = self.create_jobs_by(vec![input], Some(actor), now).await?;
        out.pop()
            .ok_or_else(|| StoreError::not_found(KIND, "new job"))
    }

    async fn create_jobs_by(
        &self,
        inputs: Vec<JobInput>,
        actor: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<Vec<(Job, bool)>, StoreError> {
        inputs.iter().try_for_each(JobInput::validate)?;
        transaction!(self, "create jobs", |tx| async {
            let seqs = take_seqs(tx, inputs.len()).await?;
            let mut out = Vec::with_capacity(inputs.len());
            for (input, seq) in inputs.iter().zip(seqs) {
                let job = new_job(input.clone(), seq, None, now);
                if insert(tx, &job).await? {
                    if let Some(actor) = actor {
                        push_audit(tx, submitted(&job, actor, now)).await?;
                    }
                    out.push((job, true));
                    continue;
                }
                let row = tx
                    .query_one(
                        "SELECT id, record::text FROM jobs
                         WHERE organization = $1 AND idempotency_key = $2",
                        &[&job.organization, &job.idempotency_key],
                    )
                    .await
                    .map_err(pg("read the job of an idempotency key"))?;
                out.push((job_of(&row)?, false));
            }
            if out.iter().any(|(_, created)| *created) {
                announce_in(tx, Change::Jobs).await?;
            }
            Ok(out)
        })
    }

    pub async fn get_job(&self, id: &str) -> Result<Job, StoreError> {
        let mut jobs = self.get_jobs(&[id.to_owned()]).await?;
        jobs.pop().ok_or_else(|| StoreError::not_found(KIND, id))
    }

    /// Several jobs by id, in the order asked, read in one statement.
    pub async fn get_jobs(&self, ids: &[String]) -> Result<Vec<Job>, StoreError> {
        let client = self.client().await?;
        let rows = client
            .query(
                "SELECT id, record::text FROM jobs WHERE id = ANY($1)",
                &[&ids],
            )
            .await
            .map_err(pg("read jobs"))?;
        let mut found = std::collections::HashMap::with_capacity(rows.len());
        for row in &rows {
            let job = job_of(row)?;
            found.insert(job.id.clone(), job);
        }
        ids.iter()
            .map(|id| {
                found
                    .get(id)
                    .cloned()
                    .ok_or_else(|| StoreError::not_found(KIND, id.as_str()))
            })
            .collect()
    }

    /// Applies each job's transitions in order, all in one commit, with a separate outcome
    /// per job: a job whose transitions are not all legal is left as it was and gets its
    /// error, while the others are written. The outer error is the store's own (nothing
    /// was written). The same legality as the redb store's: the same code decides it.
    pub async fn transition_each(
        &self,
        items: Vec<(String, Vec<JobTransition>)>,
        now: DateTime<Utc>,
    ) -> Result<Vec<Result<Job, StoreError>>, StoreError> {
        self.transition(items, None, None, now).await
    }

    /// Applies one checked transition and returns the job as it is now.
    pub async fn transition_job(
        &self,
        id: &str,
        transition: JobTransition,
        now: DateTime<Utc>,
    ) -> Result<Job, StoreError> {
        let mut out = self
            .transition_jobs(vec![(id.to_owned(), transition)], now)
            .await?;
        out.pop().ok_or_else(|| StoreError::not_found(KIND, id))
    }

    /// Applies several transitions in one transaction: all of them, or none if any is
    /// illegal.
    pub async fn transition_jobs(
        &self,
        changes: Vec<(String, JobTransition)>,
        now: DateTime<Utc>,
    ) -> Result<Vec<Job>, StoreError> {
        transaction!(self, "transition jobs", |tx| async {
            let mut out = Vec::with_capacity(changes.len());
            for (id, transition) in &changes {
                out.push(change_in(tx, id, std::slice::from_ref(transition), now).await?);
            }
            if out.iter().any(|j| j.status == JobStatus::Pending) {
                announce_in(tx, Change::Jobs).await?;
            }
            Ok(out)
        })
    }

    /// [`PgStore::transition_each`] for an engine working on jobs it claimed: a job that
    /// `engine` does not hold (its lease lapsed and the job was settled, or went to
    /// another engine) is refused with [`StoreError::NotHeld`] and left as it is, so an
    /// engine that stalled past its lease cannot move a job another engine now runs.
    pub async fn transition_held(
        &self,
        engine: &str,
        items: Vec<(String, Vec<JobTransition>)>,
        now: DateTime<Utc>,
    ) -> Result<Vec<Result<Job, StoreError>>, StoreError> {
        self.transition(items, Some(engine), None, now).await
    }

    /// [`PgStore::transition_held`] that also claims: a pending job (nobody's) may be
    /// moved by `engine`, and one it leaves in flight (`Load`) is taken by `engine` in the
    /// same transaction, held until `ttl` from now by the database's clock (renewed with
    /// [`PgStore::renew_claims_of`]). Two engines claiming one job at once take turns on
    /// its row; the second finds it held by the first and is refused with
    /// [`StoreError::NotHeld`] (or [`StoreError::IllegalTransition`] once it ended), so a
    /// job is run by one engine only. Any other job must be held by `engine`.
    pub async fn claim_and_transition(
        &self,
        engine: &str,
        items: Vec<(String, Vec<JobTransition>)>,
        ttl: Duration,
        now: DateTime<Utc>,
    ) -> Result<Vec<Result<Job, StoreError>>, StoreError> {
        self.transition(items, Some(engine), Some(ttl), now).await
    }

    async fn transition(
        &self,
        items: Vec<(String, Vec<JobTransition>)>,
        holder: Option<&str>,
        claim_ttl: Option<Duration>,
        now: DateTime<Utc>,
    ) -> Result<Vec<Result<Job, StoreError>>, StoreError> {
        let claim_ttl = claim_ttl.map(lease_millis);
        transaction!(self, "transition jobs", |tx| async {
            // Every job of the batch locked in one statement, in sequence order, so
            // transactions moving overlapping jobs take their locks in the same order.
            let ids: Vec<&str> = items.iter().map(|(id, _)| id.as_str()).collect();
            let rows = tx
                .query(
                    "SELECT id, record::text, owner FROM jobs WHERE id = ANY($1)
                     ORDER BY seq_id FOR UPDATE",
                    &[&ids],
                )
                .await
                .map_err(pg("lock jobs"))?;
            // Each job as this batch has left it so far, and who holds it.
            let mut current: std::collections::HashMap<String, (Job, Option<String>)> =
                std::collections::HashMap::with_capacity(rows.len());
            for row in &rows {
                let job = job_of(row)?;
                current.insert(job.id.clone(), (job, col(row, 2)?));
            }
            let mut out = Vec::with_capacity(items.len());
            let mut implied = Vec::new();
            let mut changed: Vec<String> = Vec::new();
            let mut claimed: Vec<&str> = Vec::new();
            for (id, transitions) in &items {
                let Some((stored, owner)) = current.get_mut(id) else {
                    out.push(Err(StoreError::not_found(KIND, id.as_str())));
                    continue;
                };
                // A pending job is nobody's: an engine may claim it, or end it unstarted.
                let claims = claim_ttl.is_some() && stored.status == JobStatus::Pending;
                if let Some(engine) = holder
                    && !claims
                    && owner.as_deref() != Some(engine)
                {
                    out.push(Err(StoreError::NotHeld {
                        kind: KIND,
                        id: id.clone(),
                        engine: engine.to_owned(),
                    }));
                    continue;
                }
                let mut job = stored.clone();
                let effects = match apply_all(&mut job, transitions, now) {
                    Ok(effects) => effects,
                    // Refused before anything of this job was written.
                    Err(e @ StoreError::IllegalTransition { .. }) => {
                        out.push(Err(e));
                        continue;
                    }
                    Err(e) => return Err(e),
                };
                if !transitions.is_empty() {
                    if !held(job.status) {
                        *owner = None;
                    } else if claims && let Some(engine) = holder {
                        *owner = Some(engine.to_owned());
                        claimed.push(id.as_str());
                    }
                    *stored = job.clone();
                    if !changed.contains(id) {
                        changed.push(id.clone());
                    }
                    implied.extend(effects);
                }
                out.push(Ok(job));
            }
            let jobs: Vec<&Job> = changed
                .iter()
                .filter_map(|id| current.get(id))
                .map(|(j, _)| j)
                .collect();
            update_all(tx, &jobs).await?;
            if let (Some(engine), Some(ttl)) = (holder, claim_ttl)
                && !claimed.is_empty()
            {
                // Still in flight after this batch: held by this engine from now on.
                tx.execute(
                    "UPDATE jobs SET owner = $2,
                         lease_expires_at = statement_timestamp() + $3::bigint * interval '1 millisecond'
                     WHERE id = ANY($1) AND status = ANY($4)",
                    &[&claimed, &engine, &ttl, &&HELD[..]],
                )
                .await
                .map_err(pg("claim jobs"))?;
            }
            follow(tx, implied, now).await?;
            Ok(out)
        })
    }

    /// Takes up to `limit` pending jobs for `engine`, oldest first, and loads them: each
    /// is held by `engine` until `ttl` from now by the database's clock, unless renewed
    /// ([`PgStore::renew_claims`]). Jobs another engine is claiming at the same moment are
    /// skipped, not waited for, so no job is taken twice and no claim blocks another.
    pub async fn claim_pending(
        &self,
        engine: &str,
        limit: usize,
        ttl: Duration,
        now: DateTime<Utc>,
    ) -> Result<Vec<Job>, StoreError> {
        self.claim(engine, None, limit, ttl, now).await
    }

    /// [`PgStore::claim_pending`] among the jobs `ids` only: an engine that has chosen
    /// which jobs it may run (by their schedule's options) takes as many of them as it
    /// has room for, skipping those another engine holds or is claiming.
    pub async fn claim_among(
        &self,
        engine: &str,
        ids: &[String],
        limit: usize,
        ttl: Duration,
        now: DateTime<Utc>,
    ) -> Result<Vec<Job>, StoreError> {
        self.claim(engine, Some(ids), limit, ttl, now).await
    }

    async fn claim(
        &self,
        engine: &str,
        among: Option<&[String]>,
        limit: usize,
        ttl: Duration,
        now: DateTime<Utc>,
    ) -> Result<Vec<Job>, StoreError> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let ttl = lease_millis(ttl);
        transaction!(self, "claim pending jobs", |tx| async {
            let rows = tx
                .query(
                    "SELECT id, record::text FROM jobs
                     WHERE status = 'pending' AND ($2::text[] IS NULL OR id = ANY($2))
                     ORDER BY seq_id LIMIT $1 FOR UPDATE SKIP LOCKED",
                    &[&limit, &among],
                )
                .await
                .map_err(pg("find pending jobs"))?;
            let mut claimed = Vec::with_capacity(rows.len());
            let mut effects = Vec::with_capacity(rows.len());
            for row in &rows {
                let mut job = job_of(row)?;
                effects.push(apply_all(&mut job, &[JobTransition::Load], now)?);
                claimed.push(job);
            }
            // Every claimed job in one statement, then what each change implies, in order.
            let seqs = claimed
                .iter()
                .map(|j| big(KIND, "seq_id", j.seq_id))
                .collect::<Result<Vec<i64>, _>>()?;
            let records = claimed
                .iter()
                .map(|j| encode(KIND, &j.id, j))
                .collect::<Result<Vec<String>, _>>()?;
            tx.execute(
                "UPDATE jobs SET record = t.record::jsonb, status = 'loaded', owner = $3,
                     lease_expires_at = statement_timestamp() + $4::bigint * interval '1 millisecond'
                 FROM unnest($1::bigint[], $2::text[]) AS t(seq, record)
                 WHERE jobs.seq_id = t.seq",
                &[&seqs, &records, &engine, &ttl],
            )
            .await
            .map_err(pg("claim jobs"))?;
            follow(tx, effects.into_iter().flatten().collect(), now).await?;
            Ok(claimed)
        })
    }

    /// Extends `engine`'s lease on every job it still holds to `ttl` from now, and returns
    /// their ids. A job missing from the answer is no longer this engine's: its lease
    /// expired and it was settled ([`PgStore::expire_leases`]), so the engine must stop
    /// working on it.
    pub async fn renew_claims(
        &self,
        engine: &str,
        ttl: Duration,
    ) -> Result<Vec<String>, StoreError> {
        self.renew(engine, None, ttl).await
    }

    /// [`PgStore::renew_claims`] for the jobs `ids` only, those `engine` is still at work
    /// on: a job it holds but no longer works on (its end could not be recorded, or a
    /// claim whose commit was lost with its connection) is left to lapse, and is then
    /// settled as a crashed engine's is. Returns the ids renewed.
    pub async fn renew_claims_of(
        &self,
        engine: &str,
        ids: &[String],
        ttl: Duration,
    ) -> Result<Vec<String>, StoreError> {
        self.renew(engine, Some(ids), ttl).await
    }

    async fn renew(
        &self,
        engine: &str,
        ids: Option<&[String]>,
        ttl: Duration,
    ) -> Result<Vec<String>, StoreError> {
        let ttl = lease_millis(ttl);
        transaction!(self, "renew claims", |tx| async {
            let rows = tx
                .query(
                    "UPDATE jobs
                     SET lease_expires_at = statement_timestamp() + $2::bigint * interval '1 millisecond'
                     WHERE owner = $1 AND status = ANY($3)
                       AND ($4::text[] IS NULL OR id = ANY($4))
                     RETURNING id",
                    &[&engine, &ttl, &&HELD[..], &ids],
                )
                .await
                .map_err(pg("renew claims"))?;
            rows.iter().map(|r| col(r, 0)).collect()
        })
    }

    /// Settles the jobs whose lease has expired by the database's clock (their engine
    /// stopped renewing it), as a restart settles a crashed engine's: running jobs whose
    /// script may have been sent fail as `interrupted`; loaded jobs and running jobs whose
    /// script never went out go back to pending, for any engine to claim. A job in flight
    /// that nobody holds is settled too. `now` stamps the changes. Two engines expiring at
    /// once settle each job once.
    pub async fn expire_leases(&self, now: DateTime<Utc>) -> Result<Recovery, StoreError> {
        self.settle(
            "expire leases",
            "SELECT id, record::text FROM jobs
             WHERE status = ANY($1)
               AND (owner IS NULL OR lease_expires_at < statement_timestamp())
             ORDER BY seq_id FOR UPDATE SKIP LOCKED",
            None,
            now,
        )
        .await
    }

    /// Settles the jobs `engine` holds, expired or not, as [`PgStore::expire_leases`]
    /// does: what an engine restarting under the same id does first, since whatever it
    /// held before it stopped is in flight no more.
    pub async fn recover(&self, engine: &str, now: DateTime<Utc>) -> Result<Recovery, StoreError> {
        self.settle(
            "recover an engine's jobs",
            "SELECT id, record::text FROM jobs
             WHERE status = ANY($1) AND owner = $2
             ORDER BY seq_id FOR UPDATE",
            Some(engine),
            now,
        )
        .await
    }

    async fn settle(
        &self,
        operation: &'static str,
        select: &'static str,
        engine: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<Recovery, StoreError> {
        transaction!(self, operation, |tx| async {
            let held = &HELD[..];
            let rows = match engine {
                Some(engine) => tx.query(select, &[&held, &engine]).await,
                None => tx.query(select, &[&held]).await,
            }
            .map_err(pg(operation))?;
            let mut report = Recovery::default();
            for row in &rows {
                let mut job = job_of(row)?;
                let Some(settlement) = in_flight_settlement(&job) else {
                    continue;
                };
                let effects = apply_all(&mut job, std::slice::from_ref(&settlement), now)?;
                update_all(tx, &[&job]).await?;
                follow(tx, effects, now).await?;
                match settlement {
                    JobTransition::Requeue => report.requeued.push(job.id),
                    _ => report.interrupted.push(job.id),
                }
            }
            let pending = tx
                .query_one("SELECT count(*) FROM jobs WHERE status = 'pending'", &[])
                .await
                .map_err(pg("count pending jobs"))?;
            report.pending = col_u64(&pending, 0)?;
            if !report.requeued.is_empty() {
                announce_in(tx, Change::Jobs).await?;
            }
            Ok(report)
        })
    }
}

/// Applies `transitions` to the job `id` in the caller's transaction (its row locked),
/// writing it and what the change implies; an illegal transition is an error.
pub(super) async fn change_in(
    tx: &Transaction<'_>,
    id: &str,
    transitions: &[JobTransition],
    now: DateTime<Utc>,
) -> Result<Job, StoreError> {
    let row = tx
        .query_opt(
            "SELECT id, record::text FROM jobs WHERE id = $1 FOR UPDATE",
            &[&id],
        )
        .await
        .map_err(pg("lock a job"))?
        .ok_or_else(|| StoreError::not_found(KIND, id))?;
    let mut job = job_of(&row)?;
    let effects = apply_all(&mut job, transitions, now)?;
    update_all(tx, &[&job]).await?;
    follow(tx, effects, now).await?;
    Ok(job)
}

/// Writes what the changes of a transaction's jobs imply, as the redb store's
/// `JobTables::change` does: `job.status` events for a job's notify_url and, for a
/// scheduled job that finished, its site's event and its run's outcome
/// (`launch::record_outcomes`). The events of each job keep the order its changes happened
/// in; all of them are written in one statement.
async fn follow(
    tx: &Transaction<'_>,
    effects: Vec<Effect>,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    let mut events: Vec<(&'static str, serde_json::Value)> = Vec::new();
    let mut finished: Vec<Job> = Vec::new();
    for effect in effects {
        match effect {
            Effect::Status(payload) => events.push(("job.status", payload)),
            Effect::SiteFinished(job) => {
                let Some(origin) = &job.origin else { continue };
                events.push((EVENT_SITE_FINISHED, site_finished_payload(origin, &job)));
                finished.push(*job);
            }
        }
    }
    events.extend(record_outcomes(tx, &finished, now).await?);
    push_events(tx, events, now).await.map(drop)
}

/// `n` new job sequence numbers, in order.
pub(super) async fn take_seqs(tx: &Transaction<'_>, n: usize) -> Result<Vec<u64>, StoreError> {
    if n == 0 {
        return Ok(Vec::new());
    }
    let n = i64::try_from(n).unwrap_or(i64::MAX);
    let rows = tx
        .query(
            "SELECT nextval('job_seq') FROM generate_series(1, $1::bigint)",
            &[&n],
        )
        .await
        .map_err(pg("take job sequence numbers"))?;
    rows.iter().map(|r| col_u64(r, 0)).collect()
}

/// Writes a new job; `false` when its organization already has a job under its
/// idempotency key (then nothing was written).
pub(super) async fn insert(tx: &Transaction<'_>, job: &Job) -> Result<bool, StoreError> {
    let n = tx
        .execute(
            "INSERT INTO jobs
                 (seq_id, id, organization, site_id, idempotency_key, status, sent, record)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8::text::jsonb)
             ON CONFLICT ON CONSTRAINT jobs_idempotency DO NOTHING",
            &[
                &big(KIND, "seq_id", job.seq_id)?,
                &job.id,
                &job.organization,
                &job.site_id,
                &job.idempotency_key,
                &job.status.as_str(),
                &job.sent,
                &encode(KIND, &job.id, job)?,
            ],
        )
        .await
        .map_err(pg("insert a job"))?;
    Ok(n == 1)
}

/// Writes new jobs in one statement. They carry no idempotency key (a launch's jobs), so
/// none can be refused: a conflict is the store's own error.
pub(super) async fn insert_all(tx: &Transaction<'_>, jobs: &[Job]) -> Result<(), StoreError> {
    if jobs.is_empty() {
        return Ok(());
    }
    let mut seqs = Vec::with_capacity(jobs.len());
    let mut ids = Vec::with_capacity(jobs.len());
    let mut organizations = Vec::with_capacity(jobs.len());
    let mut sites = Vec::with_capacity(jobs.len());
    let mut keys = Vec::with_capacity(jobs.len());
    let mut statuses = Vec::with_capacity(jobs.len());
    let mut sent = Vec::with_capacity(jobs.len());
    let mut records = Vec::with_capacity(jobs.len());
    for job in jobs {
        seqs.push(big(KIND, "seq_id", job.seq_id)?);
        ids.push(job.id.as_str());
        organizations.push(job.organization.as_str());
        sites.push(job.site_id.as_str());
        keys.push(job.idempotency_key.as_deref());
        statuses.push(job.status.as_str());
        sent.push(job.sent);
        records.push(encode(KIND, &job.id, job)?);
    }
    tx.execute(
        "INSERT INTO jobs
             (seq_id, id, organization, site_id, idempotency_key, status, sent, record)
         SELECT seq, id, org, site, key, status, sent, record::jsonb
         FROM unnest($1::bigint[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[],
                     $7::boolean[], $8::text[])
             AS t(seq, id, org, site, key, status, sent, record)",
        &[
            &seqs,
            &ids,
            &organizations,
            &sites,
            &keys,
            &statuses,
            &sent,
            &records,
        ],
    )
    .await
    .map_err(pg("insert jobs"))?;
    Ok(())
}

/// Whether a job in `status` is held by an engine (in flight).
fn held(status: JobStatus) -> bool {
    matches!(status, JobStatus::Loaded | JobStatus::Running)
}

/// Writes changed jobs in one statement; one that is no longer in flight is no longer
/// held by anyone.
async fn update_all(tx: &Transaction<'_>, jobs: &[&Job]) -> Result<(), StoreError> {
    if jobs.is_empty() {
        return Ok(());
    }
    let mut seqs = Vec::with_capacity(jobs.len());
    let mut records = Vec::with_capacity(jobs.len());
    let mut statuses = Vec::with_capacity(jobs.len());
    let mut sent = Vec::with_capacity(jobs.len());
    let mut still_held = Vec::with_capacity(jobs.len());
    for job in jobs {
        seqs.push(big(KIND, "seq_id", job.seq_id)?);
        records.push(encode(KIND, &job.id, job)?);
        statuses.push(job.status.as_str());
        sent.push(job.sent);
        still_held.push(held(job.status));
    }
    tx.execute(
        "UPDATE jobs SET record = t.record::jsonb, status = t.status, sent = t.sent,
             owner = CASE WHEN t.held THEN jobs.owner END,
             lease_expires_at = CASE WHEN t.held THEN jobs.lease_expires_at END
         FROM unnest($1::bigint[], $2::text[], $3::text[], $4::boolean[], $5::boolean[])
             AS t(seq, record, status, sent, held)
         WHERE jobs.seq_id = t.seq",
        &[&seqs, &records, &statuses, &sent, &still_held],
    )
    .await
    .map_err(pg("update jobs"))?;
    Ok(())
}

/// The job of a row of `id, record::text`.
fn job_of(row: &Row) -> Result<Job, StoreError> {
    let id: String = col(row, 0)?;
    let text: String = col(row, 1)?;
    decode(KIND, &id, &text)
}
