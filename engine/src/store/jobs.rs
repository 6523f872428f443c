//! Jobs: one script on one site, with a checked state machine, idempotency keys, the
//! per-site and active-status indexes, backups kept apart, and recovery after a crash.
//!
//! Every status change goes through [`apply`], which refuses a transition the lifecycle
//! does not allow; [`write_change`] then moves the job's index entries, its run's
//! progress and its notification event in the same transaction.

use chrono::{DateTime, Utc};
use redb::{ReadableTable, Table, WriteTransaction};
use serde_json::json;

use super::crypto::new_id;
use super::error::StoreError;
use super::journal::push_audit;
use super::records::{
    AuditInput, Job, JobChanges, JobInput, JobOrigin, JobStatus, JobTransition, Page,
};
use super::tables::{
    IDEMPOTENCY, JOB_BACKUPS, JOB_COUNTS, JOB_DIFFS, JOB_IDS, JOBS, JOBS_ACTIVE, JOBS_BY_SITE,
    META, META_JOB_COUNTS, META_JOB_SEQ, RUN_SITES,
};
use super::txn::{decode, encode, take_seq};
use super::{Store, journal, outcomes, schedules};

const KIND: &str = "job";
/// Audit action of an asynchronous job someone submitted.
pub const AUDIT_JOB_SUBMITTED: &str = "job.submitted";
/// Output kept per job; a router that prints more is truncated, not stored whole.
pub const MAX_OUTPUT_BYTES: usize = 256 * 1024;
/// What a sealed backup is bound to: the job and its place in the sequence, so a sealed
/// backup copied onto another job's row does not open.
pub(super) fn backup_record(id: &str, seq: u64) -> String {
    format!("job-backup/{id}/{seq}")
}

/// What a sealed diff is bound to, as a backup is.
pub(super) fn diff_record(id: &str, seq: u64) -> String {
    format!("job-diff/{id}/{seq}")
}

/// Largest backup the store keeps for one job.
pub const MAX_BACKUP_BYTES: usize = 16 * 1024 * 1024;

/// What [`Store::recover`] did to the jobs it found in flight.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Recovery {
    /// Ids of jobs that were running with their script possibly sent: now failed as `interrupted`.
    pub interrupted: Vec<String>,
    /// Ids of jobs that were loaded or running before their script was sent: now pending.
    pub requeued: Vec<String>,
    /// How many jobs are pending after recovery.
    pub pending: u64,
}

/// The job tables, opened once per transaction so bulk inserts do not reopen them per job.
pub(crate) struct JobTables<'txn> {
    jobs: Table<'txn, u64, &'static [u8]>,
    ids: Table<'txn, &'static str, u64>,
    by_site: Table<'txn, (&'static str, u64), ()>,
    active: Table<'txn, (u8, u64), ()>,
    idempotency: Table<'txn, (&'static str, &'static str), u64>,
    counts: Table<'txn, &'static str, u64>,
    /// Where each site of a schedule's run stands.
    outcomes: Table<'txn, (&'static str, u64, &'static str), &'static [u8]>,
    /// Changes to the per-status counts not yet written, by `JobStatus as usize`; one
    /// write per status at [`JobTables::close`] instead of one per job.
    deltas: [i64; STATUSES.len()],
}

/// What a job's change implies beyond its own record, in the order it happened.
pub(crate) enum Effect {
    /// Its run's outcome, with the job as it was when it finished.
    SiteFinished(Box<Job>),
    /// A `job.status` event for its notify_url.
    Status(serde_json::Value),
}

impl<'txn> JobTables<'txn> {
    pub(crate) fn open(tx: &'txn WriteTransaction) -> Result<Self, StoreError> {
        Ok(JobTables {
            jobs: tx.open_table(JOBS)?,
            ids: tx.open_table(JOB_IDS)?,
            by_site: tx.open_table(JOBS_BY_SITE)?,
            active: tx.open_table(JOBS_ACTIVE)?,
            idempotency: tx.open_table(IDEMPOTENCY)?,
            counts: tx.open_table(JOB_COUNTS)?,
            outcomes: tx.open_table(RUN_SITES)?,
            deltas: [0; STATUSES.len()],
        })
    }

    /// Moves one job from the count of `from` (none for a new job) to that of `to`.
    fn recount(&mut self, from: Option<JobStatus>, to: JobStatus) {
        if let Some(from) = from {
            self.deltas[from as usize] -= 1;
        }
        self.deltas[to as usize] += 1;
    }

    /// Writes the counts changed through these tables. Every writer calls it before its
    /// transaction commits; tables only read need not.
    pub(crate) fn close(mut self) -> Result<(), StoreError> {
        for status in STATUSES {
            let delta = self.deltas[status as usize];
            if delta == 0 {
                continue;
            }
            let n = self.counts.get(status.as_str())?.map_or(0, |v| v.value());
            let n = n.saturating_add_signed(delta);
            self.counts.insert(status.as_str(), n)?;
        }
        self.deltas = [0; STATUSES.len()];
        Ok(())
    }

    /// Applies `transitions` in order to the job at `seq`: all of them, or none when one
    /// is refused (then nothing is written and the refusal is returned). The job and its
    /// index entries are written once; the events its status changes imply follow in
    /// order, each with the job as it was at that change.
    pub(crate) fn change(
        &mut self,
        tx: &WriteTransaction,
        seq: u64,
        transitions: &[JobTransition],
        now: DateTime<Utc>,
    ) -> Result<Job, StoreError> {
        let mut job = self.get(seq)?;
        if transitions.is_empty() {
            return Ok(job);
        }
        let before = job.status;
        let effects = apply_all(&mut job, transitions, now)?;
        self.put(&job)?;
        if before != job.status {
            outcomes::record(&mut self.outcomes, &job)?;
            if let Some(code) = before.active_code() {
                self.active.remove((code, seq))?;
            }
            if let Some(code) = job.status.active_code() {
                self.active.insert((code, seq), ())?;
            }
            self.recount(Some(before), job.status);
        }
        for effect in effects {
            match effect {
                Effect::SiteFinished(at) => site_finished(tx, &at, now)?,
                Effect::Status(payload) => {
                    journal::push_event(tx, "job.status", payload, now)?;
                }
            }
        }
        Ok(job)
    }

    pub(crate) fn get(&self, seq: u64) -> Result<Job, StoreError> {
        match self.jobs.get(seq)? {
            Some(bytes) => decode(KIND, &seq.to_string(), bytes.value()),
            None => Err(StoreError::not_found(KIND, seq.to_string())),
        }
    }

    fn seq_of(&self, id: &str) -> Result<u64, StoreError> {
        self.ids
            .get(id)?
            .map(|v| v.value())
            .ok_or_else(|| StoreError::not_found(KIND, id))
    }

    fn put(&mut self, job: &Job) -> Result<(), StoreError> {
        let bytes = encode(KIND, &job.id, job)?;
        self.jobs.insert(job.seq_id, bytes.as_slice())?;
        Ok(())
    }

    /// Writes a new job and every index entry it needs.
    pub(crate) fn insert(&mut self, job: &Job) -> Result<(), StoreError> {
        self.put(job)?;
        self.ids.insert(job.id.as_str(), job.seq_id)?;
        self.by_site
            .insert((job.site_id.as_str(), job.seq_id), ())?;
        if let Some(code) = job.status.active_code() {
            self.active.insert((code, job.seq_id), ())?;
        }
        if let Some(key) = &job.idempotency_key {
            self.idempotency
                .insert((job.organization.as_str(), key.as_str()), job.seq_id)?;
        }
        self.recount(None, job.status);
        outcomes::record(&mut self.outcomes, job)
    }
}

impl Store {
    /// Creates a job, or returns the job already created under the same idempotency key
    /// (then `false`: nothing new was written and nothing will run again).
    pub fn create_job(
        &self,
        input: JobInput,
        now: DateTime<Utc>,
    ) -> Result<(Job, bool), StoreError> {
        let mut out = self.create_jobs(vec![input], now)?;
        out.pop()
            .ok_or_else(|| StoreError::not_found(KIND, "new job"))
    }

    /// Creates many jobs in one transaction (bulk loads and benchmarks), with the same
    /// idempotency rule as [`Store::create_job`] for each.
    pub fn create_jobs(
        &self,
        inputs: Vec<JobInput>,
        now: DateTime<Utc>,
    ) -> Result<Vec<(Job, bool)>, StoreError> {
        inputs.iter().try_for_each(JobInput::validate)?;
        self.insert_jobs(inputs.into_iter().map(|i| (i, None)).collect(), now)
    }

    fn insert_jobs(
        &self,
        inputs: Vec<(JobInput, Option<String>)>,
        now: DateTime<Utc>,
    ) -> Result<Vec<(Job, bool)>, StoreError> {
        self.write(|tx| {
            let mut seq = take_seq(tx, META_JOB_SEQ, 0)?;
            let mut tables = JobTables::open(tx)?;
            let out = inputs
                .into_iter()
                .map(|(input, actor)| create_in(tx, &mut tables, &mut seq, input, actor, now))
                .collect::<Result<Vec<_>, _>>()?;
            tables.close()?;
            set_job_seq(tx, seq - 1)?;
            Ok(out)
        })
    }

    pub fn get_job(&self, id: &str) -> Result<Job, StoreError> {
        let mut jobs = self.get_jobs(&[id.to_owned()])?;
        jobs.pop().ok_or_else(|| StoreError::not_found(KIND, id))
    }

    /// Several jobs by id, in the order asked, read in one transaction.
    pub fn get_jobs(&self, ids: &[String]) -> Result<Vec<Job>, StoreError> {
        self.read(|tx| {
            let seqs = tx.open_table(JOB_IDS)?;
            let jobs = tx.open_table(JOBS)?;
            ids.iter()
                .map(|id| {
                    let seq = seqs.get(id.as_str())?.map(|v| v.value());
                    let seq = seq.ok_or_else(|| StoreError::not_found(KIND, id))?;
                    let bytes = jobs
                        .get(seq)?
                        .ok_or_else(|| StoreError::not_found(KIND, id))?;
                    decode(KIND, id, bytes.value())
                })
                .collect()
        })
    }

    /// The job created under an organization's idempotency key, if any.
    pub fn job_by_idempotency_key(
        &self,
        organization: &str,
        key: &str,
    ) -> Result<Option<Job>, StoreError> {
        self.read(|tx| {
            let seq = tx
                .open_table(IDEMPOTENCY)?
                .get((organization, key))?
                .map(|v| v.value());
            let Some(seq) = seq else { return Ok(None) };
            let jobs = tx.open_table(JOBS)?;
            let bytes = jobs
                .get(seq)?
                .ok_or_else(|| StoreError::not_found(KIND, key))?;
            decode(KIND, key, bytes.value()).map(Some)
        })
    }

    /// A site's jobs, newest first. The cursor is the `seq_id` of the last job of the
    /// previous page.
    pub fn jobs_for_site(&self, site_id: &str, page: &Page<u64>) -> Result<Vec<Job>, StoreError> {
        let limit = page.capped_limit();
        let before = page.after.unwrap_or(u64::MAX);
        self.read(|tx| {
            let jobs = tx.open_table(JOBS)?;
            let mut out = Vec::new();
            for entry in tx
                .open_table(JOBS_BY_SITE)?
                .range((site_id, 0)..(site_id, before))?
                .rev()
            {
                let (key, _) = entry?;
                let seq = key.value().1;
                if let Some(bytes) = jobs.get(seq)? {
                    out.push(decode(KIND, &seq.to_string(), bytes.value())?);
                }
                if out.len() >= limit {
                    break;
                }
            }
            Ok(out)
        })
    }

    /// Jobs in an active status (pending, loaded or running), oldest first; the cursor is
    /// the last `seq_id` seen. Finished statuses are not indexed and return nothing.
    pub fn active_jobs(&self, status: JobStatus, page: &Page<u64>) -> Result<Vec<Job>, StoreError> {
        let Some(code) = status.active_code() else {
            return Ok(Vec::new());
        };
        let limit = page.capped_limit();
        let from = page.after.map_or(0, |a| a.saturating_add(1));
        self.read(|tx| {
            let jobs = tx.open_table(JOBS)?;
            let mut out = Vec::new();
            for entry in tx
                .open_table(JOBS_ACTIVE)?
                .range((code, from)..=(code, u64::MAX))?
            {
                let (key, _) = entry?;
                let seq = key.value().1;
                if let Some(bytes) = jobs.get(seq)? {
                    out.push(decode(KIND, &seq.to_string(), bytes.value())?);
                }
                if out.len() >= limit {
                    break;
                }
            }
            Ok(out)
        })
    }

    /// Applies one checked transition and returns the job as it is now.
    pub fn transition_job(
        &self,
        id: &str,
        transition: JobTransition,
        now: DateTime<Utc>,
    ) -> Result<Job, StoreError> {
        let mut out = self.transition_jobs(vec![(id.to_owned(), transition)], now)?;
        out.pop().ok_or_else(|| StoreError::not_found(KIND, id))
    }

    /// Applies several transitions in one transaction: all of them, or none if any is illegal.
    pub fn transition_jobs(
        &self,
        changes: Vec<(String, JobTransition)>,
        now: DateTime<Utc>,
    ) -> Result<Vec<Job>, StoreError> {
        self.write(|tx| {
            let mut tables = JobTables::open(tx)?;
            let mut out = Vec::with_capacity(changes.len());
            for (id, transition) in changes {
                let seq = tables.seq_of(&id)?;
                out.push(tables.change(tx, seq, std::slice::from_ref(&transition), now)?);
            }
            tables.close()?;
            Ok(out)
        })
    }

    /// Applies each job's transitions in order, all in one commit, with a separate outcome
    /// per job: a job whose transitions are not all legal is left as it was and gets its
    /// error, while the others are written. Concurrent callers share one sync this way.
    /// The outer error is the store's own (the commit itself failed, nothing was written).
    pub fn transition_each(
        &self,
        items: Vec<(String, Vec<JobTransition>)>,
        now: DateTime<Utc>,
    ) -> Result<Vec<Result<Job, StoreError>>, StoreError> {
        self.write(|tx| {
            let mut tables = JobTables::open(tx)?;
            let out = change_each_in(tx, &mut tables, items, now)?;
            tables.close()?;
            Ok(out)
        })
    }

    /// Stores a job's backup apart from the job, sealed (it can hold the router's
    /// passwords and keys), and marks the job as having one.
    pub fn put_backup(&self, id: &str, backup: &[u8]) -> Result<(), StoreError> {
        if backup.len() > MAX_BACKUP_BYTES {
            return Err(StoreError::invalid(
                KIND,
                "backup",
                format!("at most {MAX_BACKUP_BYTES} bytes"),
            ));
        }
        self.write(|tx| {
            let mut tables = JobTables::open(tx)?;
            let seq = tables.seq_of(id)?;
            let mut job = tables.get(seq)?;
            job.has_backup = true;
            tables.put(&job)?;
            let sealed = self.seal_backup(id, seq, backup)?;
            tx.open_table(JOB_BACKUPS)?.insert(seq, sealed.as_slice())?;
            Ok(())
        })
    }

    pub fn get_backup(&self, id: &str) -> Result<Option<Vec<u8>>, StoreError> {
        self.read(|tx| {
            let seq = tx.open_table(JOB_IDS)?.get(id)?.map(|v| v.value());
            let seq = seq.ok_or_else(|| StoreError::not_found(KIND, id))?;
            let table = tx.open_table(JOB_BACKUPS)?;
            let Some(sealed) = table.get(seq)? else {
                return Ok(None);
            };
            self.vault
                .open_bytes(&backup_record(id, seq), sealed.value())
                .map(Some)
                .ok_or_else(|| StoreError::BackupUnreadable { job: id.to_owned() })
        })
    }

    /// Stores the diff of what a job's script changed, sealed apart from the job as its
    /// backup is (an export's lines can carry secrets), and its shape on the job.
    pub fn put_diff(&self, id: &str, diff: &str, changes: JobChanges) -> Result<(), StoreError> {
        if diff.len() > MAX_BACKUP_BYTES {
            return Err(StoreError::invalid(
                KIND,
                "diff",
                format!("at most {MAX_BACKUP_BYTES} bytes"),
            ));
        }
        self.write(|tx| {
            let mut tables = JobTables::open(tx)?;
            let seq = tables.seq_of(id)?;
            let mut job = tables.get(seq)?;
            job.changes = Some(changes);
            tables.put(&job)?;
            outcomes::record(&mut tables.outcomes, &job)?;
            let sealed = self
                .vault
                .seal_bytes(&diff_record(id, seq), diff.as_bytes())
                .ok_or_else(|| StoreError::invalid(KIND, "diff", "too large to seal"))?;
            tx.open_table(JOB_DIFFS)?.insert(seq, sealed.as_slice())?;
            Ok(())
        })
    }

    /// The diff of what a job's script changed, unsealed; `None` when none was stored.
    pub fn get_diff(&self, id: &str) -> Result<Option<String>, StoreError> {
        self.read(|tx| {
            let seq = tx.open_table(JOB_IDS)?.get(id)?.map(|v| v.value());
            let seq = seq.ok_or_else(|| StoreError::not_found(KIND, id))?;
            // Made on the first diff written: a database without one has no diffs.
            let table = match tx.open_table(JOB_DIFFS) {
                Ok(table) => table,
                Err(redb::TableError::TableDoesNotExist(_)) => return Ok(None),
                Err(e) => return Err(e.into()),
            };
            let Some(sealed) = table.get(seq)? else {
                return Ok(None);
            };
            let plain = self
                .vault
                .open_bytes(&diff_record(id, seq), sealed.value())
                .ok_or_else(|| StoreError::BackupUnreadable { job: id.to_owned() })?;
            Ok(Some(String::from_utf8_lossy(&plain).into_owned()))
        })
    }

    fn seal_backup(&self, id: &str, seq: u64, backup: &[u8]) -> Result<Vec<u8>, StoreError> {
        self.vault
            .seal_bytes(&backup_record(id, seq), backup)
            .ok_or_else(|| StoreError::invalid(KIND, "backup", "too large to seal"))
    }

    /// Seals every backup written in the clear by a database of schema version 1, in the
    /// transaction that moves it to version 2. A backup whose job is gone (none is ever
    /// removed, but a damaged file might lack one) is sealed under its sequence alone.
    pub(crate) fn seal_plain_backups(&self, tx: &WriteTransaction) -> Result<u64, StoreError> {
        let ids: std::collections::HashMap<u64, String> = {
            let table = tx.open_table(JOB_IDS)?;
            let mut ids = std::collections::HashMap::new();
            for entry in table.iter()? {
                let (id, seq) = entry?;
                ids.insert(seq.value(), id.value().to_owned());
            }
            ids
        };
        let mut backups = tx.open_table(JOB_BACKUPS)?;
        let seqs: Vec<u64> = backups
            .iter()?
            .map(|entry| entry.map(|(seq, _)| seq.value()))
            .collect::<Result<_, _>>()?;
        let mut sealed = 0;
        for seq in seqs {
            let Some(plain) = backups.get(seq)?.map(|b| b.value().to_vec()) else {
                continue;
            };
            let id = ids.get(&seq).map_or("", String::as_str);
            let blob = self.seal_backup(id, seq, &plain)?;
            backups.insert(seq, blob.as_slice())?;
            sealed += 1;
        }
        Ok(sealed)
    }

    /// How many jobs have each status, every status listed. Read from counts kept with
    /// each change; a database from before they were kept is counted once, here.
    pub fn job_counts(&self) -> Result<Vec<(JobStatus, u64)>, StoreError> {
        let counted = |counts: &dyn Fn(&str) -> Result<u64, StoreError>| {
            STATUSES
                .iter()
                .map(|s| Ok((*s, counts(s.as_str())?)))
                .collect::<Result<Vec<_>, StoreError>>()
        };
        let kept = self.read(|tx| {
            let complete = match tx.open_table(META) {
                Ok(meta) => meta.get(META_JOB_COUNTS)?.is_some(),
                Err(redb::TableError::TableDoesNotExist(_)) => false,
                Err(e) => return Err(e.into()),
            };
            if !complete {
                return Ok(None);
            }
            let table = tx.open_table(JOB_COUNTS)?;
            counted(&|status| Ok(table.get(status)?.map_or(0, |v| v.value()))).map(Some)
        })?;
        if let Some(kept) = kept {
            return Ok(kept);
        }
        self.write(|tx| {
            let mut totals = std::collections::BTreeMap::<&str, u64>::new();
            for entry in tx.open_table(JOBS)?.iter()? {
                let (seq, bytes) = entry?;
                let job: StatusOnly = decode(KIND, &seq.value().to_string(), bytes.value())?;
                *totals.entry(job.status.as_str()).or_default() += 1;
            }
            let mut table = tx.open_table(JOB_COUNTS)?;
            for status in STATUSES {
                let n = totals.get(status.as_str()).copied().unwrap_or(0);
                table.insert(status.as_str(), n)?;
            }
            tx.open_table(META)?.insert(META_JOB_COUNTS, 1)?;
            counted(&|status| Ok(totals.get(status).copied().unwrap_or(0)))
        })
    }

    /// Settles the jobs a stopped engine left in flight, reading only the active index:
    /// running jobs whose script may have been sent fail as `interrupted`; loaded jobs and
    /// running jobs whose script was never sent go back to pending.
    pub fn recover(&self, now: DateTime<Utc>) -> Result<Recovery, StoreError> {
        let in_flight = |code: u8, tx: &WriteTransaction| -> Result<Vec<u64>, StoreError> {
            tx.open_table(JOBS_ACTIVE)?
                .range((code, 0)..=(code, u64::MAX))?
                .map(|e| Ok(e?.0.value().1))
                .collect()
        };
        self.write(|tx| {
            let mut report = Recovery::default();
            let loaded = JobStatus::Loaded.active_code().unwrap_or(1);
            let running = JobStatus::Running.active_code().unwrap_or(2);
            let pending = JobStatus::Pending.active_code().unwrap_or(0);
            let in_flight: Vec<u64> = in_flight(loaded, tx)?
                .into_iter()
                .chain(in_flight(running, tx)?)
                .collect();
            let mut tables = JobTables::open(tx)?;
            for seq in in_flight {
                let job = tables.get(seq)?;
                let Some(settle) = super::records::in_flight_settlement(&job) else {
                    continue;
                };
                let interrupted = matches!(settle, JobTransition::Fail { .. });
                tables.change(tx, seq, &[settle], now)?;
                if interrupted {
                    report.interrupted.push(job.id);
                } else {
                    report.requeued.push(job.id);
                }
            }
            tables.close()?;
            report.pending = tx
                .open_table(JOBS_ACTIVE)?
                .range((pending, 0)..=(pending, u64::MAX))?
                .count() as u64;
            Ok(report)
        })
    }
}

/// Every job status, in lifecycle order.
pub(super) const STATUSES: [JobStatus; 6] = [
    JobStatus::Pending,
    JobStatus::Loaded,
    JobStatus::Running,
    JobStatus::Completed,
    JobStatus::Failed,
    JobStatus::Deleted,
];

/// A job record read for its status alone.
#[derive(serde::Deserialize)]
struct StatusOnly {
    status: JobStatus,
}

pub(crate) fn new_job(
    input: JobInput,
    seq_id: u64,
    origin: Option<JobOrigin>,
    now: DateTime<Utc>,
) -> Job {
    Job {
        id: new_id(),
        seq_id,
        organization: input.organization,
        site_id: input.site_id,
        request_id: input.request_id.unwrap_or_else(new_id),
        idempotency_key: input.idempotency_key,
        description: input.description,
        script: input.script,
        make_backup: input.make_backup,
        express_execute: input.express_execute,
        needs_acknowledgement: input.needs_acknowledgement,
        notify_url: input.notify_url,
        status: JobStatus::Pending,
        created_at: now,
        loaded_at: None,
        started_at: None,
        completed_at: None,
        failed_at: None,
        deleted_at: None,
        output: None,
        error: None,
        attempts: 0,
        sent: false,
        has_backup: false,
        origin,
        endpoint: None,
        changes: None,
        rollback_after_secs: input.rollback_after_secs,
        script_origin: input.script_origin,
        rollback: None,
    }
}

/// Creates one job inside a write, taking its place in the sequence from `seq`, or
/// finds the job already created under its idempotency key (then `false`, nothing
/// written). A job with an `actor` is audited as submitted by them.
pub(super) fn create_in(
    tx: &WriteTransaction,
    tables: &mut JobTables,
    seq: &mut u64,
    input: JobInput,
    actor: Option<String>,
    now: DateTime<Utc>,
) -> Result<(Job, bool), StoreError> {
    if let Some(key) = &input.idempotency_key {
        let existing = tables
            .idempotency
            .get((input.organization.as_str(), key.as_str()))?
            .map(|v| v.value());
        if let Some(existing) = existing {
            return Ok((tables.get(existing)?, false));
        }
    }
    let job = new_job(input, *seq, None, now);
    *seq += 1;
    tables.insert(&job)?;
    if let Some(actor) = &actor {
        push_audit(tx, submitted(&job, actor, now))?;
    }
    Ok((job, true))
}

/// Moves several jobs inside a write, each settled alone: a job unknown or asked for a
/// transition its lifecycle refuses gets its own error and nothing of it is written; any
/// other error fails the whole write.
pub(super) fn change_each_in(
    tx: &WriteTransaction,
    tables: &mut JobTables,
    items: Vec<(String, Vec<JobTransition>)>,
    now: DateTime<Utc>,
) -> Result<Vec<Result<Job, StoreError>>, StoreError> {
    let mut out = Vec::with_capacity(items.len());
    for (id, transitions) in items {
        let seq = match tables.seq_of(&id) {
            Ok(seq) => seq,
            Err(e @ StoreError::NotFound { .. }) => {
                out.push(Err(e));
                continue;
            }
            Err(e) => return Err(e),
        };
        match tables.change(tx, seq, &transitions, now) {
            Ok(job) => out.push(Ok(job)),
            // Refused before anything of this job was written.
            Err(e @ StoreError::IllegalTransition { .. }) => out.push(Err(e)),
            Err(e) => return Err(e),
        }
    }
    Ok(out)
}

pub(crate) fn set_job_seq(tx: &WriteTransaction, last: u64) -> Result<(), StoreError> {
    tx.open_table(super::tables::META)?
        .insert(META_JOB_SEQ, last)?;
    Ok(())
}

/// The audit line of a job someone submitted.
pub(crate) fn submitted(job: &Job, actor: &str, now: DateTime<Utc>) -> AuditInput {
    AuditInput {
        at: now,
        organization: job.organization.clone(),
        actor: actor.to_owned(),
        action: AUDIT_JOB_SUBMITTED.to_owned(),
        target: job.id.clone(),
        detail: json!({
            "site_id": job.site_id,
            "description": job.description,
            "idempotency_key": job.idempotency_key,
            "make_backup": job.make_backup,
            "express_execute": job.express_execute,
        }),
    }
}

/// A job of a schedule's run has finished: the event, then the run's tally.
fn site_finished(tx: &WriteTransaction, job: &Job, now: DateTime<Utc>) -> Result<(), StoreError> {
    let Some(origin) = &job.origin else {
        return Ok(());
    };
    // The site's own outcome comes first, so it reaches receivers before the run's.
    journal::push_event(
        tx,
        EVENT_SITE_FINISHED,
        site_finished_payload(origin, job),
        now,
    )?;
    schedules::record_outcome(tx, origin, job, now)
}

/// The event a scheduled job that finished announces, before its run's outcome.
pub(crate) const EVENT_SITE_FINISHED: &str = "script.site_finished";

pub(crate) fn site_finished_payload(origin: &JobOrigin, job: &Job) -> serde_json::Value {
    json!({
        "schedule_id": origin.schedule_id,
        "occurrence": origin.occurrence,
        "organization": job.organization,
        "site_id": job.site_id,
        "job_id": job.id,
        "status": job.status,
        "error": job.error,
    })
}

/// Applies `transitions` in order to `job`, and returns what the changes imply beyond
/// the job's own record, in the order they happened: each with the job as it was at
/// that change. On a refusal the error is returned and the caller discards `job`.
pub(crate) fn apply_all(
    job: &mut Job,
    transitions: &[JobTransition],
    now: DateTime<Utc>,
) -> Result<Vec<Effect>, StoreError> {
    let mut effects = Vec::new();
    for transition in transitions {
        let was = job.status;
        apply(job, transition, now)?;
        if was.active_code().is_some() && job.status.active_code().is_none() && job.origin.is_some()
        {
            effects.push(Effect::SiteFinished(Box::new(job.clone())));
        }
        if was != job.status
            && job.status != JobStatus::Pending
            && let Some(url) = &job.notify_url
        {
            effects.push(Effect::Status(notification(job, url)));
        }
    }
    Ok(effects)
}

/// The job's lifecycle. Anything not listed here is refused, never written.
pub(crate) fn apply(
    job: &mut Job,
    transition: &JobTransition,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    use JobStatus::*;
    let illegal = |to: JobStatus| StoreError::IllegalTransition {
        id: job.id.clone(),
        from: job.status,
        to,
    };
    match (transition, job.status) {
        (JobTransition::Load, Pending) => {
            job.status = Loaded;
            job.loaded_at = Some(now);
        }
        (JobTransition::Load, _) => return Err(illegal(Loaded)),
        (JobTransition::Start, Pending | Loaded) => {
            job.status = Running;
            job.started_at = Some(now);
            job.attempts = job.attempts.saturating_add(1);
            job.sent = false;
        }
        (JobTransition::Start, _) => return Err(illegal(Running)),
        (JobTransition::MarkSent, Running) => job.sent = true,
        (JobTransition::MarkSent, _) => return Err(illegal(Running)),
        (JobTransition::Retry, Running) => {
            job.attempts = job.attempts.saturating_add(1);
            job.sent = false;
        }
        (JobTransition::Retry, _) => return Err(illegal(Running)),
        (JobTransition::Complete { output }, Running) => {
            job.status = Completed;
            job.completed_at = Some(now);
            job.output = output.as_deref().map(cap_output);
        }
        (JobTransition::Complete { .. }, _) => return Err(illegal(Completed)),
        (JobTransition::Fail { error, output }, Pending | Loaded | Running) => {
            job.status = Failed;
            job.failed_at = Some(now);
            job.error = Some(error.clone());
            if let Some(output) = output {
                job.output = Some(cap_output(output));
            }
        }
        (JobTransition::Fail { .. }, _) => return Err(illegal(Failed)),
        (JobTransition::Requeue, Loaded) => {
            job.status = Pending;
            job.loaded_at = None;
        }
        (JobTransition::Requeue, Running) if !job.sent => {
            job.status = Pending;
            job.loaded_at = None;
            job.started_at = None;
        }
        (JobTransition::Requeue, _) => return Err(illegal(Pending)),
        (JobTransition::Delete, Pending | Loaded | Completed | Failed) => {
            job.status = Deleted;
            job.deleted_at = Some(now);
        }
        (JobTransition::Delete, _) => return Err(illegal(Deleted)),
        (JobTransition::Guard(guard), Running) => job.rollback = Some(guard.clone()),
        (JobTransition::Guard(_), _) => return Err(illegal(Running)),
        (JobTransition::Returned, Failed) if job.rollback.is_some() => {
            if let Some(guard) = &mut job.rollback {
                guard.returned_at.get_or_insert(now);
            }
        }
        (JobTransition::Returned, _) => return Err(illegal(Failed)),
    }
    Ok(())
}

fn cap_output(output: &str) -> String {
    if output.len() <= MAX_OUTPUT_BYTES {
        return output.to_owned();
    }
    let mut end = MAX_OUTPUT_BYTES;
    while !output.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}\n[output truncated]", &output[..end])
}

/// Seed 001's notification payload, plus where to post it.
fn notification(job: &Job, url: &str) -> serde_json::Value {
    json!({
        "notify_url": url,
        "job_id": job.id,
        "customer_id": job.organization,
        "description": job.description,
        "router_id": job.site_id,
        "idempotency_key": job.idempotency_key,
        "express_execute": job.express_execute,
        "needs_acknowledgement": job.needs_acknowledgement,
        "make_backup": job.make_backup,
        "seq_id": job.seq_id,
        "started_at": job.started_at,
        "completed_at": job.completed_at,
        "failed_at": job.failed_at,
        "deleted_at": job.deleted_at,
        "status": job.status,
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::store::records::INTERRUPTED;
    use crate::store::test_support::{open, t};

    pub(crate) fn input(site: &str, key: Option<&str>) -> JobInput {
        JobInput {
            organization: "org1".into(),
            site_id: site.into(),
            request_id: None,
            idempotency_key: key.map(str::to_owned),
            description: "Log test message".into(),
            script: ":log info test".into(),
            make_backup: false,
            express_execute: false,
            needs_acknowledgement: true,
            notify_url: Some("https://example.com/notify".into()),
            rollback_after_secs: None,
            script_origin: None,
        }
    }

    fn counts(store: &Store) -> Vec<(&'static str, u64)> {
        store
            .job_counts()
            .expect("counts")
            .into_iter()
            .map(|(status, n)| (status.as_str(), n))
            .filter(|(_, n)| *n > 0)
            .collect()
    }

    #[test]
    fn job_counts_follow_every_insert_and_transition() {
        let (_dir, store) = open();
        assert_eq!(counts(&store), vec![]);
        assert_eq!(store.job_counts().expect("counts").len(), 6);
        let jobs: Vec<Job> = (0..4)
            .map(|i| {
                store
                    .create_job(input(&format!("s{i}"), None), t(0))
                    .expect("create")
                    .0
            })
            .collect();
        store
            .create_job(input("s0", Some("k")), t(0))
            .expect("keyed");
        store
            .create_job(input("s0", Some("k")), t(1))
            .expect("same key, nothing new");
        assert_eq!(counts(&store), vec![("pending", 5)]);
        store
            .transition_job(&jobs[0].id, JobTransition::Start, t(2))
            .expect("start");
        store
            .transition_job(&jobs[0].id, JobTransition::Complete { output: None }, t(3))
            .expect("complete");
        store
            .transition_job(&jobs[1].id, JobTransition::Load, t(2))
            .expect("load");
        store
            .transition_job(&jobs[2].id, JobTransition::Delete, t(2))
            .expect("delete");
        // Refused transitions change nothing, counts included.
        assert!(
            store
                .transition_job(&jobs[0].id, JobTransition::Start, t(4))
                .is_err()
        );
        let refused = store
            .transition_each(
                vec![(
                    jobs[3].id.clone(),
                    vec![JobTransition::Start, JobTransition::Load],
                )],
                t(4),
            )
            .expect("commit");
        assert!(refused[0].is_err());
        assert_eq!(
            counts(&store),
            vec![
                ("pending", 2),
                ("loaded", 1),
                ("completed", 1),
                ("deleted", 1)
            ]
        );
        store.recover(t(5)).expect("recover");
        assert_eq!(
            counts(&store),
            vec![("pending", 3), ("completed", 1), ("deleted", 1)]
        );
    }

    #[test]
    fn job_counts_of_an_older_database_are_counted_once() {
        let (_dir, store) = open();
        let (job, _) = store.create_job(input("s1", None), t(0)).expect("create");
        store.create_job(input("s2", None), t(0)).expect("create");
        store
            .transition_job(&job.id, JobTransition::Start, t(1))
            .expect("start");
        // As written before counts were kept: no counts table, no marker.
        store
            .write(|tx| {
                tx.delete_table(JOB_COUNTS)?;
                tx.open_table(META)?.remove(META_JOB_COUNTS)?;
                Ok(())
            })
            .expect("forget the counts");
        store.create_job(input("s3", None), t(2)).expect("create");
        assert_eq!(counts(&store), vec![("pending", 2), ("running", 1)]);
        store
            .transition_job(&job.id, JobTransition::Complete { output: None }, t(3))
            .expect("complete");
        assert_eq!(counts(&store), vec![("pending", 2), ("completed", 1)]);
    }

    #[test]
    fn job_round_trip_with_monotonic_seq() {
        let (_dir, store) = open();
        let (a, created) = store.create_job(input("s1", None), t(0)).expect("create");
        assert!(created);
        let (b, _) = store.create_job(input("s1", None), t(1)).expect("create");
        assert_eq!(store.get_job(&a.id).expect("get"), a);
        assert!(b.seq_id > a.seq_id);
        assert_eq!(a.status, JobStatus::Pending);
        assert!(!a.request_id.is_empty());
    }

    #[test]
    fn idempotency_key_returns_the_same_job_and_creates_nothing() {
        let (dir, store) = open();
        let (first, created) = store
            .create_job(input("s1", Some("k1")), t(0))
            .expect("create");
        assert!(created);
        let (again, created) = store
            .create_job(input("s1", Some("k1")), t(5))
            .expect("again");
        assert!(!created);
        assert_eq!(again, first);
        drop(store);
        let store = Store::open(dir.path()).expect("reopen");
        let (after_reopen, created) = store
            .create_job(input("s1", Some("k1")), t(9))
            .expect("again");
        assert!(!created);
        assert_eq!(after_reopen.id, first.id);
        assert_eq!(
            store
                .jobs_for_site("s1", &Page::first(10))
                .expect("list")
                .len(),
            1
        );
        let mut other_org = input("s1", Some("k1"));
        other_org.organization = "org2".into();
        assert!(store.create_job(other_org, t(9)).expect("other org").1);
        // One batch naming the same key twice creates one job.
        let batch = store
            .create_jobs(
                vec![input("s2", Some("k2")), input("s2", Some("k2"))],
                t(10),
            )
            .expect("batch");
        assert_eq!(batch[0].0.id, batch[1].0.id);
        assert_eq!((batch[0].1, batch[1].1), (true, false));
    }

    #[test]
    fn validation_limits_of_seed_001() {
        let (_dir, store) = open();
        let mut long = input("s1", None);
        long.description = "d".repeat(101);
        assert!(matches!(
            store.create_job(long, t(0)),
            Err(StoreError::Invalid {
                field: "description",
                ..
            })
        ));
        let mut long = input("s1", None);
        long.script = "s".repeat(2001);
        assert!(matches!(
            store.create_job(long, t(0)),
            Err(StoreError::Invalid {
                field: "script",
                ..
            })
        ));
        let mut ok = input("s1", None);
        ok.description = "d".repeat(100);
        ok.script = "s".repeat(2000);
        store.create_job(ok, t(0)).expect("limits are inclusive");
    }

    #[test]
    fn lifecycle_is_checked_and_events_follow() {
        let (_dir, store) = open();
        let (job, _) = store.create_job(input("s1", None), t(0)).expect("create");
        let err = store
            .transition_job(&job.id, JobTransition::Complete { output: None }, t(1))
            .expect_err("pending cannot complete");
        assert!(matches!(
            err,
            StoreError::IllegalTransition {
                from: JobStatus::Pending,
                to: JobStatus::Completed,
                ..
            }
        ));
        assert_eq!(
            store.get_job(&job.id).expect("get").status,
            JobStatus::Pending,
            "nothing written"
        );

        store
            .transition_job(&job.id, JobTransition::Load, t(1))
            .expect("load");
        let running = store
            .transition_job(&job.id, JobTransition::Start, t(2))
            .expect("start");
        assert_eq!(running.attempts, 1);
        store
            .transition_job(&job.id, JobTransition::MarkSent, t(2))
            .expect("sent");
        assert!(
            store
                .transition_job(&job.id, JobTransition::Requeue, t(3))
                .is_err(),
            "sent jobs are not requeued"
        );
        assert!(
            store
                .transition_job(&job.id, JobTransition::Delete, t(3))
                .is_err(),
            "running jobs are not deleted"
        );
        let done = store
            .transition_job(
                &job.id,
                JobTransition::Complete {
                    output: Some("ok".into()),
                },
                t(4),
            )
            .expect("complete");
        assert_eq!(done.completed_at, Some(t(4)));
        assert_eq!(done.output.as_deref(), Some("ok"));
        assert!(
            store
                .transition_job(&job.id, JobTransition::Start, t(5))
                .is_err()
        );
        let deleted = store
            .transition_job(&job.id, JobTransition::Delete, t(6))
            .expect("delete");
        assert_eq!(deleted.deleted_at, Some(t(6)));
        assert!(
            store
                .transition_job(&job.id, JobTransition::Delete, t(7))
                .is_err()
        );

        let events = store.due_events(t(100), 100).expect("events");
        let statuses: Vec<_> = events
            .iter()
            .map(|e| e.payload["status"].as_str().unwrap_or("").to_owned())
            .collect();
        assert_eq!(statuses, ["loaded", "running", "completed", "deleted"]);
        assert_eq!(
            events[0].payload["notify_url"],
            "https://example.com/notify"
        );
    }

    #[test]
    fn lists_are_paginated_and_use_the_indexes() {
        let (_dir, store) = open();
        let inputs = (0..25)
            .map(|i| input(if i % 2 == 0 { "even" } else { "odd" }, None))
            .collect();
        let jobs = store.create_jobs(inputs, t(0)).expect("bulk");
        let first = store.jobs_for_site("even", &Page::first(5)).expect("page");
        assert_eq!(first.len(), 5);
        assert!(
            first.windows(2).all(|w| w[0].seq_id > w[1].seq_id),
            "newest first"
        );
        assert_eq!(first[0].seq_id, jobs[24].0.seq_id);
        let rest = store
            .jobs_for_site(
                "even",
                &Page {
                    limit: 100,
                    after: first.last().map(|j| j.seq_id),
                },
            )
            .expect("rest");
        assert_eq!(rest.len(), 8);
        assert!(rest.iter().all(|j| j.site_id == "even"));

        store
            .transition_job(&jobs[3].0.id, JobTransition::Load, t(1))
            .expect("load");
        let pending = store
            .active_jobs(JobStatus::Pending, &Page::first(100))
            .expect("pending");
        assert_eq!(pending.len(), 24);
        assert_eq!(
            store
                .active_jobs(JobStatus::Loaded, &Page::first(100))
                .expect("loaded")[0]
                .id,
            jobs[3].0.id
        );
        let page2 = store
            .active_jobs(
                JobStatus::Pending,
                &Page {
                    limit: 100,
                    after: Some(pending[9].seq_id),
                },
            )
            .expect("p2");
        assert_eq!(page2.len(), 14);
        assert!(
            store
                .active_jobs(JobStatus::Completed, &Page::first(10))
                .expect("none")
                .is_empty()
        );
    }

    #[test]
    fn transition_each_settles_each_job_alone_in_one_commit() {
        let (_dir, store) = open();
        let ids: Vec<String> = store
            .create_jobs((0..3).map(|_| input("s1", None)).collect(), t(0))
            .expect("bulk")
            .into_iter()
            .map(|(j, _)| j.id)
            .collect();
        store
            .transition_job(&ids[1], JobTransition::Load, t(1))
            .expect("someone else took it");
        let out = store
            .transition_each(
                vec![
                    (
                        ids[0].clone(),
                        vec![
                            JobTransition::Load,
                            JobTransition::Start,
                            JobTransition::MarkSent,
                        ],
                    ),
                    (
                        ids[1].clone(),
                        vec![JobTransition::Load, JobTransition::Start],
                    ),
                    ("missing".into(), vec![JobTransition::Load]),
                ],
                t(2),
            )
            .expect("commit");
        let first = out[0].as_ref().expect("legal");
        assert_eq!(
            (first.status, first.sent, first.attempts),
            (JobStatus::Running, true, 1)
        );
        assert!(matches!(out[1], Err(StoreError::IllegalTransition { .. })));
        assert!(matches!(out[2], Err(StoreError::NotFound { .. })));
        let untouched = store.get_job(&ids[1]).expect("get");
        assert_eq!(
            untouched.status,
            JobStatus::Loaded,
            "a refused step writes nothing"
        );

        let retried = store
            .transition_job(&ids[0], JobTransition::Retry, t(3))
            .expect("retry");
        assert_eq!((retried.sent, retried.attempts), (false, 2));
        assert!(
            store
                .transition_job(&ids[2], JobTransition::Retry, t(3))
                .is_err(),
            "only a running job is retried"
        );
    }

    #[test]
    fn backups_are_kept_apart() {
        let (_dir, store) = open();
        let (job, _) = store.create_job(input("s1", None), t(0)).expect("create");
        assert_eq!(store.get_backup(&job.id).expect("none"), None);
        store.put_backup(&job.id, b"/export\n").expect("backup");
        assert!(store.get_job(&job.id).expect("get").has_backup);
        assert_eq!(
            store.get_backup(&job.id).expect("some").as_deref(),
            Some(&b"/export\n"[..])
        );
    }

    #[test]
    fn diffs_are_sealed_at_rest_and_their_shape_is_on_the_job() {
        let (_dir, store) = open();
        let (job, _) = store.create_job(input("s1", None), t(0)).expect("create");
        assert_eq!(store.get_diff(&job.id).expect("none yet"), None);
        let diff = "--- before\n+++ after\n+/ppp secret add password=hunter2\n";
        let changes = JobChanges {
            added: 1,
            removed: 0,
            digest: "d".into(),
        };
        store
            .put_diff(&job.id, diff, changes.clone())
            .expect("diff");
        assert_eq!(store.get_job(&job.id).expect("get").changes, Some(changes));
        assert_eq!(
            store.get_diff(&job.id).expect("open").as_deref(),
            Some(diff)
        );
        let raw = store
            .read(|tx| {
                Ok(tx
                    .open_table(JOB_DIFFS)?
                    .get(job.seq_id)?
                    .map(|b| b.value().to_vec())
                    .expect("diff row"))
            })
            .expect("read raw");
        assert!(!raw.windows(7).any(|w| w == b"hunter2"), "sealed at rest");
    }

    fn raw_backup(store: &Store, id: &str) -> Vec<u8> {
        store
            .read(|tx| {
                let seq = tx.open_table(JOB_IDS)?.get(id)?.map(|v| v.value());
                let seq = seq.expect("job");
                Ok(tx
                    .open_table(JOB_BACKUPS)?
                    .get(seq)?
                    .map(|b| b.value().to_vec())
                    .expect("backup row"))
            })
            .expect("read raw")
    }

    #[test]
    fn backups_are_sealed_at_rest_and_bound_to_their_job() {
        let (_dir, store) = open();
        let (a, _) = store.create_job(input("s1", None), t(0)).expect("create");
        let (b, _) = store.create_job(input("s1", None), t(0)).expect("create");
        let export = b"/ip ipsec peer add secret=\"hunter2 hunter2\"\n";
        store.put_backup(&a.id, export).expect("backup");
        store.put_backup(&b.id, b"/export of b\n").expect("backup");
        let raw = raw_backup(&store, &a.id);
        assert!(
            !raw.windows(7).any(|w| w == b"hunter2"),
            "the secret is not in the file"
        );
        assert_eq!(
            store.get_backup(&a.id).expect("open").as_deref(),
            Some(&export[..])
        );
        // A's sealed row copied over B's does not open as B's backup.
        store
            .write(|tx| {
                let seq = tx
                    .open_table(JOB_IDS)?
                    .get(b.id.as_str())?
                    .map(|v| v.value());
                tx.open_table(JOB_BACKUPS)?
                    .insert(seq.expect("seq"), raw.as_slice())?;
                Ok(())
            })
            .expect("swap");
        assert!(matches!(
            store.get_backup(&b.id),
            Err(StoreError::BackupUnreadable { .. })
        ));
    }

    #[test]
    fn plain_backups_of_a_version_1_database_are_sealed_at_open() {
        let (dir, store) = open();
        let (job, _) = store.create_job(input("s1", None), t(0)).expect("create");
        let plain = b"/interface wireless security-profiles set wpa2-pre-shared-key=hunter22\n";
        store
            .write(|tx| {
                let seq = tx
                    .open_table(JOB_IDS)?
                    .get(job.id.as_str())?
                    .map(|v| v.value());
                tx.open_table(JOB_BACKUPS)?
                    .insert(seq.expect("seq"), &plain[..])?;
                tx.open_table(META)?
                    .insert(crate::store::tables::META_SCHEMA_VERSION, 1)?;
                Ok(())
            })
            .expect("write as version 1");
        drop(store);
        let store = Store::open(dir.path()).expect("reopen migrates");
        let raw = raw_backup(&store, &job.id);
        assert!(!raw.windows(8).any(|w| w == b"hunter22"), "sealed on disk");
        assert_eq!(
            store.get_backup(&job.id).expect("open").as_deref(),
            Some(&plain[..])
        );
        let version = store
            .read(|tx| {
                Ok(tx
                    .open_table(META)?
                    .get(crate::store::tables::META_SCHEMA_VERSION)?
                    .map(|v| v.value()))
            })
            .expect("version");
        assert_eq!(version, Some(crate::store::tables::SCHEMA_VERSION));
        // Opening again does not seal twice.
        drop(store);
        let store = Store::open(dir.path()).expect("reopen");
        assert_eq!(
            store.get_backup(&job.id).expect("open").as_deref(),
            Some(&plain[..])
        );
    }

    #[test]
    fn a_job_stopped_mid_guard_is_interrupted_and_names_the_pending_restore() {
        let (dir, store) = open();
        let mut guarded = input("s1", None);
        guarded.rollback_after_secs = Some(300);
        let (job, _) = store.create_job(guarded, t(0)).expect("create");
        let (done, _) = store.create_job(input("s1", None), t(0)).expect("create");
        let guard = crate::store::RollbackGuard {
            name: "yardmaster-rollback-x1".into(),
            fires_at: t(301),
            backup_file: None,
            scheduler_entry: None,
            router_fires_at: None,
            disarmed_at: None,
            returned_at: None,
        };
        for (id, g) in [(&job.id, guard.clone()), (&done.id, guard.clone())] {
            store
                .transition_job(id, JobTransition::Start, t(1))
                .expect("start");
            store
                .transition_job(id, JobTransition::MarkSent, t(1))
                .expect("sent");
            store
                .transition_job(id, JobTransition::Guard(g), t(1))
                .expect("guard on record");
        }
        // The second one was disarmed before the stop: nothing is pending on its router.
        let mut disarmed = guard;
        disarmed.disarmed_at = Some(t(5));
        store
            .transition_job(&done.id, JobTransition::Guard(disarmed), t(5))
            .expect("disarmed");
        assert!(
            store
                .transition_job(&job.id, JobTransition::Returned, t(6))
                .is_err(),
            "only a failed job records a return"
        );
        drop(store);

        let store = Store::open(dir.path()).expect("reopen");
        let report = store.recover(t(10)).expect("recover");
        assert_eq!(report.interrupted.len(), 2);
        let failed = store.get_job(&job.id).expect("get");
        let error = failed.error.expect("an error");
        assert_eq!(error.code, INTERRUPTED);
        assert!(
            error.message.contains("dead-man rollback")
                && error.message.contains("yardmaster-rollback-x1"),
            "{}",
            error.message
        );
        let other = store.get_job(&done.id).expect("get").error.expect("error");
        assert!(!other.message.contains("dead-man"), "{}", other.message);
        let back = store
            .transition_job(&job.id, JobTransition::Returned, t(400))
            .expect("a return is recorded on the failed job");
        assert_eq!(back.rollback.and_then(|g| g.returned_at), Some(t(400)));
    }

    #[test]
    fn recovery_fails_sent_jobs_and_requeues_the_rest() {
        let (dir, store) = open();
        let ids: Vec<String> = store
            .create_jobs((0..5).map(|_| input("s1", None)).collect(), t(0))
            .expect("bulk")
            .into_iter()
            .map(|(j, _)| j.id)
            .collect();
        store
            .transition_job(&ids[0], JobTransition::Start, t(1))
            .expect("start");
        store
            .transition_job(&ids[0], JobTransition::MarkSent, t(1))
            .expect("sent");
        store
            .transition_job(&ids[1], JobTransition::Start, t(1))
            .expect("start");
        store
            .transition_job(&ids[2], JobTransition::Load, t(1))
            .expect("load");
        store
            .transition_job(&ids[3], JobTransition::Start, t(1))
            .expect("start");
        store
            .transition_job(&ids[3], JobTransition::MarkSent, t(1))
            .expect("sent");
        store
            .transition_job(&ids[3], JobTransition::Complete { output: None }, t(2))
            .expect("done");
        drop(store);

        let store = Store::open(dir.path()).expect("reopen");
        let report = store.recover(t(10)).expect("recover");
        assert_eq!(report.interrupted, vec![ids[0].clone()]);
        assert_eq!(report.requeued, vec![ids[2].clone(), ids[1].clone()]);
        assert_eq!(report.pending, 3);
        let failed = store.get_job(&ids[0]).expect("get");
        assert_eq!(failed.status, JobStatus::Failed);
        assert_eq!(
            failed.error.as_ref().map(|e| e.code.as_str()),
            Some(INTERRUPTED)
        );
        assert!(
            failed
                .error
                .as_ref()
                .is_some_and(|e| e.message.contains("may have reached the router"))
        );
        assert_eq!(
            store.get_job(&ids[1]).expect("get").status,
            JobStatus::Pending
        );
        assert_eq!(
            store.get_job(&ids[3]).expect("get").status,
            JobStatus::Completed
        );
        assert!(
            store
                .active_jobs(JobStatus::Running, &Page::first(10))
                .expect("running")
                .is_empty()
        );
        assert_eq!(
            store.recover(t(11)).expect("again"),
            Recovery {
                pending: 3,
                ..Recovery::default()
            }
        );
    }
}
