//! Every redb table of the engine, in one place, so the on-disk layout can be read (and
//! reviewed for compatibility) at a glance.
//!
//! Records are stored as JSON bytes under short keys; indexes are tables whose keys carry
//! everything a query needs and whose values are empty (or, for what no key order serves,
//! a few bytes: [`SCHEDULE_FACTS`]), so a scan over an index never has to decode a record
//! it does not return. Changing a key type or the meaning of
//! a table is a schema change: bump [`SCHEMA_VERSION`].

use redb::{MultimapTableDefinition, TableDefinition};

/// The layout version written on first open and checked on every open after it; an
/// older one is migrated at open (`txn::Store::migrate`).
///
/// - 1: the first layout.
/// - 2: site passwords are sealed under their endpoint (`sites::credential_aad`), not
///   the site id alone.
/// - 3: a job's backup is sealed at rest.
/// - 4: users are keyed by (organization, user id).
/// - 5: each run's sites are kept beside the run ([`RUN_SITES`]).
/// - 6: a schedule listing's filters are served from indexes ([`SCHEDULES_BY_CREATOR`],
///   [`SCHEDULES_BY_FREQUENCY`], [`SCHEDULES_BY_CREATED`], [`SCHEDULE_FACTS`]).
pub(crate) const SCHEMA_VERSION: u64 = 6;

/// Counters and the schema version: `schema_version`, `job_seq`, `audit_seq`, `outbox_seq`.
pub(crate) const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
pub(crate) const META_SCHEMA_VERSION: &str = "schema_version";
pub(crate) const META_JOB_SEQ: &str = "job_seq";
pub(crate) const META_AUDIT_SEQ: &str = "audit_seq";
pub(crate) const META_OUTBOX_SEQ: &str = "outbox_seq";

/// site id -> stored site (public fields plus the sealed password).
pub(crate) const SITES: TableDefinition<&str, &[u8]> = TableDefinition::new("sites");
/// (organization, name) -> site id: names are unique per organization.
pub(crate) const SITE_NAMES: TableDefinition<(&str, &str), &str> =
    TableDefinition::new("site_names");
/// organization -> site ids.
pub(crate) const SITES_BY_ORG: MultimapTableDefinition<&str, &str> =
    MultimapTableDefinition::new("sites_by_org");
/// (organization, tag) -> site ids.
pub(crate) const SITES_BY_TAG: MultimapTableDefinition<(&str, &str), &str> =
    MultimapTableDefinition::new("sites_by_tag");

/// schedule id -> scheduled script.
pub(crate) const SCHEDULES: TableDefinition<&str, &[u8]> = TableDefinition::new("schedules");
/// (organization, description) -> schedule id: descriptions are unique per organization.
pub(crate) const SCHEDULE_NAMES: TableDefinition<(&str, &str), &str> =
    TableDefinition::new("schedule_names");
/// organization -> schedule ids.
pub(crate) const SCHEDULES_BY_ORG: MultimapTableDefinition<&str, &str> =
    MultimapTableDefinition::new("schedules_by_org");
/// (organization, creator's user id) -> schedule ids, for listings by creator.
pub(crate) const SCHEDULES_BY_CREATOR: MultimapTableDefinition<(&str, &str), &str> =
    MultimapTableDefinition::new("schedules_by_creator");
/// (organization, frequency code) -> schedule ids, for listings by frequency or type. The
/// codes are stored: one-time (or no recurrence) 0, hourly 1, daily 2, weekly 3,
/// monthly 4 (`listing::frequency_code`).
pub(crate) const SCHEDULES_BY_FREQUENCY: MultimapTableDefinition<(&str, u8), &str> =
    MultimapTableDefinition::new("schedules_by_frequency");
/// (organization, creation time as unix seconds and nanoseconds, schedule id) -> (), for
/// listings by creation time.
pub(crate) const SCHEDULES_BY_CREATED: TableDefinition<(&str, i64, u32, &str), ()> =
    TableDefinition::new("schedules_by_created");
/// (organization, schedule id) -> what a listing's filters check of the schedule
/// (frequency, creation time, creator, lowercased description), a few bytes
/// (`listing::Facts`), so a filter never decodes a record it does not return.
pub(crate) const SCHEDULE_FACTS: TableDefinition<(&str, &str), &[u8]> =
    TableDefinition::new("schedule_facts");
/// (next launch, unix milliseconds; schedule id) -> (): only schedules that may launch.
pub(crate) const SCHEDULES_DUE: TableDefinition<(i64, &str), ()> =
    TableDefinition::new("schedules_due");

/// (schedule id, occurrence) -> run.
pub(crate) const RUNS: TableDefinition<(&str, u64), &[u8]> = TableDefinition::new("runs");
/// (schedule id, occurrence, site id) -> job seq_id: the never-twice ledger. Written in the
/// same transaction as the job it names, and never removed.
pub(crate) const LEDGER: TableDefinition<(&str, u64, &str), u64> = TableDefinition::new("ledger");
/// (schedule id, occurrence, site id) -> where that site of the run stands (`outcomes`),
/// written with every change of the job the ledger names.
pub(crate) const RUN_SITES: TableDefinition<(&str, u64, &str), &[u8]> =
    TableDefinition::new("run_sites");

/// seq_id -> job (without its backup). Keyed by the monotonic sequence so inserts append.
pub(crate) const JOBS: TableDefinition<u64, &[u8]> = TableDefinition::new("jobs");
/// job id -> seq_id.
pub(crate) const JOB_IDS: TableDefinition<&str, u64> = TableDefinition::new("job_ids");
/// (site id, seq_id) -> (): a site's jobs, newest last.
pub(crate) const JOBS_BY_SITE: TableDefinition<(&str, u64), ()> =
    TableDefinition::new("jobs_by_site");
/// (status code, seq_id) -> (): only the active statuses (pending, loaded, running), so
/// recovery and the runner read the work in flight without touching finished jobs.
pub(crate) const JOBS_ACTIVE: TableDefinition<(u8, u64), ()> = TableDefinition::new("jobs_active");
/// job status -> how many jobs have it, updated in the transaction of every insert and
/// status change. Counts are trusted once [`META_JOB_COUNTS`] is set: a database written
/// before this table existed gets them counted once, on first read.
pub(crate) const JOB_COUNTS: TableDefinition<&str, u64> = TableDefinition::new("job_counts");
pub(crate) const META_JOB_COUNTS: &str = "job_counts_complete";
/// seq_id -> backup, sealed by the store's vault (nonce then ciphertext, bound to the job
/// id and seq), apart from the job so listing jobs stays cheap.
pub(crate) const JOB_BACKUPS: TableDefinition<u64, &[u8]> = TableDefinition::new("job_backups");
/// seq_id -> unified diff of the export before and after the job's script, sealed as the
/// backups are. Made on the first diff written: a database without it has no diffs.
pub(crate) const JOB_DIFFS: TableDefinition<u64, &[u8]> = TableDefinition::new("job_diffs");
/// (organization, idempotency key) -> seq_id.
pub(crate) const IDEMPOTENCY: TableDefinition<(&str, &str), u64> =
    TableDefinition::new("idempotency");

/// (organization, user id) -> user: a user id names a user only within its organization,
/// as a token's `sub` does within its `org`.
pub(crate) const USERS: TableDefinition<(&str, &str), &[u8]> = TableDefinition::new("org_users");
/// Schema 1 to 3's users, keyed by the bare user id; moved into [`USERS`] and removed when a
/// database of schema 1 is opened.
pub(crate) const USERS_V1: TableDefinition<&str, &[u8]> = TableDefinition::new("users");
/// seq -> audit entry; append-only.
pub(crate) const AUDIT: TableDefinition<u64, &[u8]> = TableDefinition::new("audit");
/// event id -> outbox event.
pub(crate) const OUTBOX: TableDefinition<u64, &[u8]> = TableDefinition::new("outbox");
/// (next attempt, unix milliseconds; event id) -> (): only events still to deliver.
pub(crate) const OUTBOX_DUE: TableDefinition<(i64, u64), ()> = TableDefinition::new("outbox_due");
/// (organization, event id) -> (): dead letters, listed and retried per organization.
/// Created on first write, like the tables below: a database written before them has none.
pub(crate) const OUTBOX_DEAD: TableDefinition<(&str, u64), ()> =
    TableDefinition::new("outbox_dead");

/// template id -> an organization's script template (its current version). Created at
/// every open, so a database written before templates existed simply has none.
pub(crate) const TEMPLATES: TableDefinition<&str, &[u8]> = TableDefinition::new("templates");
/// organization -> template ids.
pub(crate) const TEMPLATES_BY_ORG: MultimapTableDefinition<&str, &str> =
    MultimapTableDefinition::new("templates_by_org");
/// (template id, version) -> that version as it was written; the current one included.
pub(crate) const TEMPLATE_VERSIONS: TableDefinition<(&str, u64), &[u8]> =
    TableDefinition::new("template_versions");

/// community script id (a ULID) -> community script: the library every organization
/// shares. Created at every open.
pub(crate) const COMMUNITY: TableDefinition<&str, &[u8]> = TableDefinition::new("community");
/// (submitted URL, commit) -> community script id, once processed: the same file at the
/// same commit is one record.
pub(crate) const COMMUNITY_BY_SOURCE: TableDefinition<(&str, &str), &str> =
    TableDefinition::new("community_by_source");
/// (queued at, unix milliseconds; id) -> attempts so far: submissions still to process.
/// An entry leaves only in the transaction that records the outcome, so a restart picks
/// up whatever was in flight.
pub(crate) const COMMUNITY_QUEUE: TableDefinition<(i64, &str), u32> =
    TableDefinition::new("community_queue");

/// (record kind, record id) -> the summary still to write for its content (digest,
/// attempts, when due): see `summaries`.
pub(crate) const SUMMARY_QUEUE: TableDefinition<(&str, &str), &[u8]> =
    TableDefinition::new("summary_queue");

/// channel id -> notification channel (settings, with its secrets sealed).
pub(crate) const CHANNELS: TableDefinition<&str, &[u8]> = TableDefinition::new("channels");
/// organization -> which secret signs its jobs' notify-url deliveries (a
/// [`super::channels::SecretGeneration`]); an organization not here is at generation 0.
pub(crate) const NOTIFY_SECRETS: TableDefinition<&str, &[u8]> =
    TableDefinition::new("notify_secrets");
/// organization -> channel ids.
pub(crate) const CHANNELS_BY_ORG: MultimapTableDefinition<&str, &str> =
    MultimapTableDefinition::new("channels_by_org");

/// sha256 of an approval token (hex) -> approval token record. The token itself is not
/// kept here; only the outbox event that delivers its link carries it, until pruned.
pub(crate) const APPROVAL_TOKENS: TableDefinition<&str, &[u8]> =
    TableDefinition::new("approval_tokens");
