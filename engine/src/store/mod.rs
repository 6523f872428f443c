//! The durable store: every record the engine must never lose, in one redb file for one
//! engine ([`Store`]), or in a PostgreSQL database several engines share
//! ([`postgres::PgStore`]). The engine reaches either through [`Backend`]: the operations
//! both offer with the same meaning are one trait, [`Operations`] (`backend`), and what
//! depends on which engine asks (claims, the scheduler's fencing token) is `Backend`'s.
//!
//! `Store::open(data_dir)` opens (or creates) `yardmaster.redb` and the credential key
//! beside it, checks the schema version, and hands out a small set of domain operations.
//! Each operation is one transaction that writes a state change together with everything
//! it implies: a launch writes its jobs and their ledger entries, a job's status change
//! writes its index entries, its run's progress and the outbox event that announces it.
//! Callers never see a transaction, so the PostgreSQL store serves the same operations.
//!
//! Layout: `tables` holds every table definition; `records` the serde types; `txn` the
//! one place transactions are opened; `sites`, `schedules`, `jobs` and `journal` (users,
//! audit log, outbox) the operations; `crypto` the credential key and identifiers;
//! `redact` what the audit log never keeps.
//!
//! Every commit is durable when it returns and saves redb's allocator state, so a restart
//! after `kill -9` does not walk the file; recovery reads only the index of active jobs.
//! Commits cost a sync each: callers moving many jobs at once use the batch operations
//! (`create_jobs`, `transition_jobs`, `launch`), which write all of them in one commit.
//! (A debug build of redb checks every allocated page when it opens a database; measure
//! restart times with an optimised build.)

pub(crate) mod approvals;
pub mod backend;
mod channels;
mod community;
mod crypto;
mod error;
mod group;
mod jobs;
mod journal;
pub mod listing;
mod outcomes;
pub mod postgres;
mod records;
mod redact;
pub(crate) mod schedules;
pub(crate) mod sites;
mod summaries;
mod tables;
mod targets;
mod templates;
mod txn;

#[cfg(test)]
mod crash_tests;

use std::path::{Path, PathBuf};

pub use backend::{Backend, Operations};
pub use channels::{
    AUDIT_CHANNEL_SECRET_ROTATED, AUDIT_NOTIFY_SECRET_ROTATED, Channel, ChannelInput, ChannelKind,
    MAX_CHANNELS_PER_ORG, SecretGeneration,
};
pub use community::{
    CommunityContent, CommunityRepository, CommunityScript, CommunityStatus, CommunityUser,
    Submitted, git_blob_sha,
};
pub use crypto::{CredentialKey, KEY_FILE as CREDENTIAL_KEY_FILE};
pub(crate) use crypto::{existing_secret, random_secret, read_or_create_secret};
pub use error::StoreError;
pub use group::Changes;
pub use jobs::{AUDIT_JOB_SUBMITTED, Recovery};
pub use journal::EventAttempt;
pub use outcomes::{LatestRun, SiteOutcome, SiteState};
pub use records::{
    AuditEntry, AuditInput, CANCELLED, DEFAULT_TRANSPORT, INTERRUPTED, Job, JobChanges, JobError,
    JobInput, JobOrigin, JobStatus, JobTransition, MAX_JOB_DESCRIPTION_CHARS, MAX_JOB_SCRIPT_CHARS,
    MAX_NAME_CHARS, MAX_PAGE, MAX_SCHEDULE_SCRIPT_CHARS, MAX_TARGETS, MissedRunPolicy, OutboxEvent,
    OutboxState, Page, ROLLED_BACK, Recurrence, RecurrenceKind, RollbackGuard, Rollout, Run,
    RunStatus, SKIPPED, ScheduleInput, SchedulePatch, ScheduleStatus, ScheduledScript,
    ScriptOrigin, Secret, Site, SiteInput, SshSettings, TlsSettings, User,
};
pub(crate) use redact::is_secret as is_secret_name;
pub(crate) use redact::text as redact_text;
pub use schedules::{
    AUDIT_CREATED, AUDIT_DELETED, AUDIT_UPDATED, EVENT_APPROVAL_VOIDED, Launch, LaunchPlan,
};
pub(crate) use summaries::queue_summary;
pub use summaries::{SummaryOf, SummaryTask};
pub use targets::{Endpoint, Targets, differences};
pub use templates::{
    AUDIT_TEMPLATE_CREATED, AUDIT_TEMPLATE_DELETED, AUDIT_TEMPLATE_UPDATED, MAX_TEMPLATE_CONTENT,
    MAX_TEMPLATE_DESCRIPTION, MAX_TEMPLATE_NAME, Template, TemplateInput, TemplateVersion,
    check_template_fields,
};

/// File name of the database inside the data dir.
pub const DB_FILE: &str = "yardmaster.redb";

/// The engine's durable state. Cheap to share behind an `Arc`; redb serializes writers.
#[derive(Debug)]
pub struct Store {
    db: redb::Database,
    vault: crypto::Vault,
    path: PathBuf,
    /// Signalled after every commit that may have moved a schedule's next launch.
    launches: tokio::sync::Notify,
    /// Job writes waiting to share a commit.
    pipeline: group::Pipeline,
    /// Counts commits: anything read before it moved may have changed since.
    generation: std::sync::atomic::AtomicU64,
}

impl Store {
    /// Opens the store in `data_dir`, creating the directory, the database and the
    /// credential key on first start. Refuses a database written by a newer engine.
    pub fn open(data_dir: impl AsRef<Path>) -> Result<Store, StoreError> {
        let dir = data_dir.as_ref();
        std::fs::create_dir_all(dir).map_err(|source| StoreError::Io {
            path: dir.display().to_string(),
            source,
        })?;
        let vault = crypto::Vault::open(dir)?;
        let path = dir.join(DB_FILE);
        let db = redb::Database::create(&path)?;
        let store = Store {
            db,
            vault,
            path,
            launches: tokio::sync::Notify::new(),
            pipeline: group::Pipeline::default(),
            generation: std::sync::atomic::AtomicU64::new(0),
        };
        store.check_schema()?;
        Ok(store)
    }

    /// Where the database file lives.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Completes after a schedule was created, edited, approved, cancelled or deleted
    /// (once the change committed): the launcher waits on it beside its timer, so a
    /// launch moved closer is not left to the next look. A change made while nobody
    /// waited is kept for the next waiter.
    pub async fn launches_changed(&self) {
        self.launches.notified().await;
    }

    /// How many commits this store has made since it opened. Read it before reading
    /// something derived from the store: while it has not moved, nothing has changed.
    pub fn generation(&self) -> u64 {
        self.generation.load(std::sync::atomic::Ordering::Acquire)
    }

    /// Wakes whoever waits in [`Store::launches_changed`] (or the next to wait).
    pub fn wake_launcher(&self) {
        self.launches.notify_one();
    }
}

/// A job as [`Store::create_job`] would make it, without a store, for tests of code that
/// reads jobs.
#[cfg(test)]
pub(crate) fn test_new_job(input: JobInput) -> Job {
    jobs::new_job(input, 1, None, chrono::Utc::now())
}

#[cfg(test)]
pub(crate) mod test_support {
    use chrono::{DateTime, TimeZone, Utc};

    pub(crate) fn t(secs: i64) -> DateTime<Utc> {
        Utc.timestamp_opt(1_800_000_000 + secs, 0)
            .single()
            .expect("valid instant")
    }

    pub(crate) fn open() -> (tempfile::TempDir, super::Store) {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = super::Store::open(dir.path()).expect("open store");
        (dir, store)
    }

    /// The schema version the store's database records.
    pub(crate) fn schema_version(store: &super::Store) -> Option<u64> {
        store
            .read(|tx| {
                Ok(tx
                    .open_table(super::tables::META)?
                    .get(super::tables::META_SCHEMA_VERSION)?
                    .map(|v| v.value()))
            })
            .expect("version")
    }
}
