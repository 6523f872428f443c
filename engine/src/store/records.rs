//! The records the store keeps, as serde types whose field names follow the public API
//! (seeds 000, 001 and 004), plus the inputs that create them.
//!
//! A record is what the API may show: a site's password is never part of [`Site`]; it goes
//! in through [`Secret`] (which has no `Serialize` and a redacting `Debug`) and comes back
//! out only through `Store::site_password`.

use super::targets::Targets;
use chrono::{DateTime, NaiveDate, NaiveTime, Utc, Weekday};
use serde::{Deserialize, Serialize};

use super::error::StoreError;

/// Longest job description the API accepts (seed 001).
pub const MAX_JOB_DESCRIPTION_CHARS: usize = 100;
/// Longest job script the API accepts (seed 001).
pub const MAX_JOB_SCRIPT_CHARS: usize = 2000;
/// Longest scheduled script; schedules carry whole maintenance scripts, unlike jobs.
pub const MAX_SCHEDULE_SCRIPT_CHARS: usize = 64 * 1024;
/// Longest name (site name, schedule description, tag, idempotency key, id).
pub const MAX_NAME_CHARS: usize = 200;
/// Most sites, tags or recipients one schedule may name.
pub const MAX_TARGETS: usize = 100_000;
/// Most records one page returns, whatever the caller asks for.
pub const MAX_PAGE: usize = 1000;
/// Error code of a job that was running when the engine stopped and may have reached the router.
pub const INTERRUPTED: &str = "interrupted";
/// Why a job left running with its script possibly sent is failed rather than retried.
const INTERRUPTED_MESSAGE: &str = "the engine stopped while this job was running; it was not retried \
     because the script may have reached the router";

/// What becomes of a job that an engine left in flight when it stopped (crashed, or
/// stopped renewing its claims): running with its script possibly sent, it fails as
/// `interrupted`, naming a dead-man rollback still armed on its router; loaded, or
/// running before its script went out, it goes back to pending. `None` for a job not in
/// flight. The PostgreSQL store settles expired claims by this rule; it is the rule of
/// the redb store's `recover`.
pub(crate) fn in_flight_settlement(job: &Job) -> Option<JobTransition> {
    match job.status {
        JobStatus::Running if job.sent => {
            let message = match &job.rollback {
                // Armed (or perhaps armed) and never disarmed: the router restores itself
                // unless someone removes the entry, and nobody may take the job for a
                // success.
                Some(guard) if guard.disarmed_at.is_none() => format!(
                    "{INTERRUPTED_MESSAGE}; a dead-man rollback was armed for it and not \
                     disarmed: the router loads the backup taken before the script at {} \
                     (scheduler entry `{}`, backup `{}.backup`) unless the entry is removed",
                    guard.fires_at.to_rfc3339(),
                    guard.name,
                    guard.name
                ),
                _ => INTERRUPTED_MESSAGE.to_owned(),
            };
            Some(JobTransition::Fail {
                error: JobError {
                    code: INTERRUPTED.into(),
                    message,
                },
                output: None,
            })
        }
        JobStatus::Loaded | JobStatus::Running => Some(JobTransition::Requeue),
        JobStatus::Pending | JobStatus::Completed | JobStatus::Failed | JobStatus::Deleted => None,
    }
}

/// Error code of a job not started because its schedule was cancelled.
pub const CANCELLED: &str = "cancelled";
/// Error code of a job not run because its site was offline and the schedule said to skip it.
pub const SKIPPED: &str = "skipped";

/// A secret going into the store. It cannot be serialized and never prints.
#[derive(Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The secret itself, for the one place that must send it (a transport's login).
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

/// How the engine speaks TLS to a site.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct TlsSettings {
    pub enabled: bool,
    /// Verify the certificate chain; routers usually carry self-signed certificates, so
    /// pinning is the common alternative.
    pub verify: bool,
    /// Hex sha256 of the certificate the site must present.
    pub pinned_sha256: Option<String>,
    pub server_name: Option<String>,
}

/// How the engine speaks SSH to a site.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct SshSettings {
    /// The host keys accepted, as OpenSSH fingerprints (`SHA256:` and base64). Empty:
    /// the first key the server shows is stored here (trust on first use), and every
    /// later session must show it.
    pub host_keys: Vec<String>,
    /// `routeros` or `linux`; when absent the transport tells by the server's version
    /// string.
    pub platform: Option<String>,
}

/// The platforms an SSH site may name.
pub const SSH_PLATFORMS: &[&str] = &["routeros", "linux"];
/// The most text a private key may have.
pub const MAX_PRIVATE_KEY_BYTES: usize = 16 * 1024;

/// One router or host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Site {
    pub id: String,
    pub organization: String,
    pub name: String,
    pub address: String,
    pub port: Option<u16>,
    pub transport: String,
    pub username: String,
    /// Whether a password is stored; the password itself never leaves through a record.
    pub has_password: bool,
    pub tls: TlsSettings,
    pub tags: Vec<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// Whether an SSH private key is stored; like the password, it never leaves.
    #[serde(default)]
    pub has_private_key: bool,
    #[serde(default)]
    pub ssh: SshSettings,
}

pub const DEFAULT_TRANSPORT: &str = "routeros-api";

fn default_transport() -> String {
    DEFAULT_TRANSPORT.to_owned()
}

/// What creates or replaces a site. On update, `password: None` keeps the stored one
/// while the endpoint (address, port, transport, TLS settings) stays the same, and
/// clears it when the endpoint changes.
#[derive(Debug, Clone, Deserialize)]
pub struct SiteInput {
    pub organization: String,
    pub name: String,
    pub address: String,
    #[serde(default)]
    pub port: Option<u16>,
    #[serde(default = "default_transport")]
    pub transport: String,
    #[serde(default)]
    pub username: String,
    #[serde(default)]
    pub password: Option<Secret>,
    #[serde(default)]
    pub tls: TlsSettings,
    #[serde(default)]
    pub tags: Vec<String>,
    /// An SSH private key (OpenSSH or PEM text), kept like the password: on update,
    /// `None` keeps the stored one while the endpoint stays the same.
    #[serde(default)]
    pub private_key: Option<Secret>,
    #[serde(default)]
    pub private_key_passphrase: Option<Secret>,
    /// `None` on update keeps the stored settings (and the host keys learned) while the
    /// endpoint stays the same; a changed endpoint forgets the host keys.
    #[serde(default)]
    pub ssh: Option<SshSettings>,
}

impl SiteInput {
    pub(crate) fn validate(&self) -> Result<(), StoreError> {
        check_name("site", "organization", &self.organization)?;
        check_name("site", "name", &self.name)?;
        check_name("site", "address", &self.address)?;
        check_name("site", "transport", &self.transport)?;
        check_len("site", "username", &self.username, MAX_NAME_CHARS)?;
        if let Some(pin) = &self.tls.pinned_sha256
            && (pin.len() != 64 || !pin.bytes().all(|b| b.is_ascii_hexdigit()))
        {
            return Err(StoreError::invalid(
                "site",
                "tls.pinned_sha256",
                "must be 64 hex digits",
            ));
        }
        if let Some(name) = &self.tls.server_name {
            check_name("site", "tls.server_name", name)?;
        }
        if let Some(key) = &self.private_key
            && (key.expose().len() > MAX_PRIVATE_KEY_BYTES || !key.expose().contains("PRIVATE KEY"))
        {
            return Err(StoreError::invalid(
                "site",
                "private_key",
                "must be a private key in OpenSSH or PEM form, at most 16 KiB",
            ));
        }
        if let Some(ssh) = &self.ssh {
            for key in &ssh.host_keys {
                if !is_ssh_fingerprint(key) {
                    return Err(StoreError::invalid(
                        "site",
                        "ssh.host_keys",
                        "each must be an OpenSSH fingerprint, `SHA256:` and 43 base64 characters",
                    ));
                }
            }
            if ssh.host_keys.len() > 16 {
                return Err(StoreError::invalid("site", "ssh.host_keys", "at most 16"));
            }
            if let Some(platform) = &ssh.platform
                && !SSH_PLATFORMS.contains(&platform.as_str())
            {
                return Err(StoreError::invalid(
                    "site",
                    "ssh.platform",
                    "must be `routeros` or `linux`",
                ));
            }
        }
        check_list("site", "tags", &self.tags)
    }
}

/// `SHA256:` and the 43 characters of unpadded base64 of a SHA-256 digest.
pub fn is_ssh_fingerprint(text: &str) -> bool {
    text.strip_prefix("SHA256:").is_some_and(|b64| {
        b64.len() == 43
            && b64
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'+' || b == b'/')
    })
}

/// A scheduled script's lifecycle (seed 000, plus the outcomes after launch).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ScheduleStatus {
    Unauthorized,
    Scheduled,
    Launched,
    Completed,
    Failed,
    PartiallyFailed,
    Cancelled,
}

/// How often a schedule recurs (seed 004).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum RecurrenceKind {
    OneTime,
    Hourly,
    Daily,
    Weekly,
    Monthly,
}

/// A recurrence rule, as data; the calendar arithmetic lives with the scheduler.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Recurrence {
    pub kind: RecurrenceKind,
    /// Every N hours (hourly), days, weeks or months; 1 when absent.
    #[serde(default)]
    pub interval: Option<u32>,
    #[serde(default)]
    pub days_of_week: Vec<Weekday>,
    #[serde(default)]
    pub day_of_month: Option<u8>,
    pub start_date: NaiveDate,
    #[serde(default)]
    pub end_date: Option<NaiveDate>,
    pub start_time: NaiveTime,
    /// IANA name, such as `Europe/Berlin`.
    pub timezone: String,
}

/// What to do with occurrences that fell due while the engine was down.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MissedRunPolicy {
    #[default]
    Skip,
    RunOnce,
}

/// How one launch of a schedule is rolled out over its sites. The default runs every
/// site with the runner's limits, no canary and no halt.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Rollout {
    /// Sites run first and waited for; a failure among them halts the rest. 0: none.
    pub canary: u32,
    /// Halt the sites not yet started once more than this percentage of the finished
    /// ones have failed (1 to 100).
    pub halt_failure_percent: Option<u8>,
    /// Finished sites needed before the failure rate is judged.
    pub halt_min_finished: u32,
    /// Sites of this schedule running at once; the runner's own limits still apply.
    pub max_concurrency: Option<u32>,
}

impl Rollout {
    pub(crate) fn validate(&self, kind: &'static str) -> Result<(), StoreError> {
        if self.canary as usize > MAX_TARGETS {
            return Err(StoreError::invalid(
                kind,
                "rollout.canary",
                format!("must be at most {MAX_TARGETS}"),
            ));
        }
        if let Some(p) = self.halt_failure_percent
            && !(1..=100).contains(&p)
        {
            return Err(StoreError::invalid(
                kind,
                "rollout.halt_failure_percent",
                "must be between 1 and 100",
            ));
        }
        if self.max_concurrency == Some(0) {
            return Err(StoreError::invalid(
                kind,
                "rollout.max_concurrency",
                "must be at least 1 (leave it out for the runner's limit)",
            ));
        }
        Ok(())
    }
}

/// A script to run on many sites at a future time, once or on a recurrence.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScheduledScript {
    pub id: String,
    pub organization: String,
    pub description: String,
    pub script: String,
    pub sites: Vec<String>,
    pub tags: Vec<String>,
    pub excluded_sites: Vec<String>,
    pub launch_at: Option<DateTime<Utc>>,
    pub recurrence: Option<Recurrence>,
    pub make_backup: bool,
    pub abort_if_offline: bool,
    pub test_site_id: Option<String>,
    pub notify: Vec<String>,
    pub summary: Option<String>,
    pub status: ScheduleStatus,
    pub created_by: String,
    /// The last user who changed it.
    #[serde(default)]
    pub updated_by: Option<String>,
    /// Every user who created it or changed what an approval covers, over its whole
    /// life: none of them may approve it (four eyes), unless the organization allows
    /// self-approval.
    #[serde(default)]
    pub editors: Vec<String>,
    /// The version of what an approval covers: 1 when created, one more for each edit
    /// of it.
    #[serde(default)]
    pub version: u32,
    pub authorization_requested_at: Option<DateTime<Utc>>,
    pub authorized_at: Option<DateTime<Utc>>,
    pub authorized_by: Option<String>,
    /// Hash of the script, its targets and its window that the approval covers.
    pub approval: Option<String>,
    /// The targets as resolved when it was approved, tags included: a launch runs on
    /// these sites, and only while each is still reached as it was then.
    #[serde(default)]
    pub approved_targets: Option<Targets>,
    pub cancelled_at: Option<DateTime<Utc>>,
    pub started_at: Option<DateTime<Utc>>,
    /// When the scheduler will launch it next; indexed while the schedule is `scheduled`
    /// or (recurring) `launched`.
    pub next_launch_at: Option<DateTime<Utc>>,
    pub missed_runs: MissedRunPolicy,
    #[serde(default)]
    pub rollout: Rollout,
    /// The linter's rule ids the script triggers that its author accepts, each once in
    /// byte order ([`crate::lint::policy`]): every critical one must be here. The
    /// approval covers the list.
    #[serde(default)]
    pub acknowledged_risks: Vec<String>,
    /// Where the script came from when it was made from the library: a template's
    /// version and values, or a community script's pinned commit. Cleared when the
    /// script is edited.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub origin: Option<ScriptOrigin>,
    /// The dead-man rollback window of each of its jobs, in seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollback_after_secs: Option<u32>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// Where a scheduled script's text came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ScriptOrigin {
    /// Rendered from a template.
    Template {
        template_id: String,
        template_version: u64,
        /// The values given (defaults filled the rest).
        variables: std::collections::BTreeMap<String, String>,
    },
    /// A community script, as pinned.
    Community {
        community_script_id: String,
        commit: String,
        /// SHA-256 of the content.
        sha256: String,
    },
}

/// What creates a scheduled script.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct ScheduleInput {
    pub organization: String,
    pub description: String,
    pub script: String,
    pub sites: Vec<String>,
    pub tags: Vec<String>,
    pub excluded_sites: Vec<String>,
    pub launch_at: Option<DateTime<Utc>>,
    pub recurrence: Option<Recurrence>,
    pub make_backup: bool,
    pub abort_if_offline: bool,
    pub test_site_id: Option<String>,
    pub notify: Vec<String>,
    pub summary: Option<String>,
    pub missed_runs: MissedRunPolicy,
    pub rollout: Rollout,
    /// Rule ids of the script's findings its author accepts; see
    /// [`ScheduledScript::acknowledged_risks`].
    pub acknowledged_risks: Vec<String>,
    /// Where the script came from, when from the library.
    pub origin: Option<ScriptOrigin>,
    pub rollback_after_secs: Option<u32>,
    pub created_by: String,
}

impl ScheduleInput {
    pub(crate) fn validate(&self) -> Result<(), StoreError> {
        check_name("schedule", "organization", &self.organization)?;
        check_name("schedule", "description", &self.description)?;
        check_name("schedule", "created_by", &self.created_by)?;
        if self.script.trim().is_empty() {
            return Err(StoreError::invalid(
                "schedule",
                "script",
                "must not be empty",
            ));
        }
        check_len(
            "schedule",
            "script",
            &self.script,
            MAX_SCHEDULE_SCRIPT_CHARS,
        )?;
        check_list("schedule", "sites", &self.sites)?;
        check_list("schedule", "tags", &self.tags)?;
        check_list("schedule", "excluded_sites", &self.excluded_sites)?;
        check_list("schedule", "notify", &self.notify)?;
        check_list("schedule", "acknowledged_risks", &self.acknowledged_risks)?;
        self.rollout.validate("schedule")?;
        if self.launch_at.is_none() && self.recurrence.is_none() {
            return Err(StoreError::invalid(
                "schedule",
                "launch_at",
                "a schedule needs launch_at or a recurrence",
            ));
        }
        Ok(())
    }
}

/// A change to a schedule before its launch; `None` leaves a field as it is.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct SchedulePatch {
    pub description: Option<String>,
    pub script: Option<String>,
    pub sites: Option<Vec<String>>,
    pub tags: Option<Vec<String>>,
    pub excluded_sites: Option<Vec<String>>,
    pub launch_at: Option<Option<DateTime<Utc>>>,
    pub recurrence: Option<Option<Recurrence>>,
    pub make_backup: Option<bool>,
    pub abort_if_offline: Option<bool>,
    pub test_site_id: Option<Option<String>>,
    pub notify: Option<Vec<String>>,
    pub summary: Option<Option<String>>,
    pub missed_runs: Option<MissedRunPolicy>,
    pub rollout: Option<Rollout>,
    pub acknowledged_risks: Option<Vec<String>>,
    /// `Some(None)` removes the rollback window.
    pub rollback_after_secs: Option<Option<u32>>,
}

/// The state of one occurrence of a schedule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    Launched,
    Completed,
    Failed,
    PartiallyFailed,
}

/// One occurrence of a schedule, with its own progress.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Run {
    pub schedule_id: String,
    /// Numbered by the scheduler; one-time schedules use 0.
    pub occurrence: u64,
    pub scheduled_for: DateTime<Utc>,
    pub status: RunStatus,
    pub total: u64,
    pub completed: u64,
    pub failed: u64,
    pub skipped: u64,
    pub pending: u64,
    /// Another batch of this occurrence is still to launch (the fleet after a test site),
    /// so the run is not over when its pending count reaches zero.
    pub awaiting_batches: bool,
    pub started_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
}

impl Run {
    /// An occurrence launching now, before any of its jobs is counted.
    pub(crate) fn launched(
        schedule_id: &str,
        occurrence: u64,
        scheduled_for: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Run {
        Run {
            schedule_id: schedule_id.to_owned(),
            occurrence,
            scheduled_for,
            status: RunStatus::Launched,
            total: 0,
            completed: 0,
            failed: 0,
            skipped: 0,
            pending: 0,
            awaiting_batches: false,
            started_at: now,
            finished_at: None,
        }
    }
}

/// A job's lifecycle (seed 001).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobStatus {
    Pending,
    Loaded,
    Running,
    Completed,
    Failed,
    Deleted,
}

impl JobStatus {
    /// Code in the active-jobs index; only the statuses that still need work have one.
    pub(crate) fn active_code(self) -> Option<u8> {
        match self {
            JobStatus::Pending => Some(0),
            JobStatus::Loaded => Some(1),
            JobStatus::Running => Some(2),
            JobStatus::Completed | JobStatus::Failed | JobStatus::Deleted => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            JobStatus::Pending => "pending",
            JobStatus::Loaded => "loaded",
            JobStatus::Running => "running",
            JobStatus::Completed => "completed",
            JobStatus::Failed => "failed",
            JobStatus::Deleted => "deleted",
        }
    }

    /// The status [`JobStatus::as_str`] names.
    pub fn parse(name: &str) -> Option<JobStatus> {
        [
            JobStatus::Pending,
            JobStatus::Loaded,
            JobStatus::Running,
            JobStatus::Completed,
            JobStatus::Failed,
            JobStatus::Deleted,
        ]
        .into_iter()
        .find(|s| s.as_str() == name)
    }
}

impl std::fmt::Display for JobStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a job failed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobError {
    pub code: String,
    pub message: String,
}

/// The schedule occurrence a job belongs to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobOrigin {
    pub schedule_id: String,
    pub occurrence: u64,
}

/// One script on one site.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Job {
    pub id: String,
    pub seq_id: u64,
    pub organization: String,
    pub site_id: String,
    pub request_id: String,
    pub idempotency_key: Option<String>,
    pub description: String,
    pub script: String,
    pub make_backup: bool,
    pub express_execute: bool,
    pub needs_acknowledgement: bool,
    pub notify_url: Option<String>,
    pub status: JobStatus,
    pub created_at: DateTime<Utc>,
    pub loaded_at: Option<DateTime<Utc>>,
    pub started_at: Option<DateTime<Utc>>,
    pub completed_at: Option<DateTime<Utc>>,
    pub failed_at: Option<DateTime<Utc>>,
    pub deleted_at: Option<DateTime<Utc>>,
    pub output: Option<String>,
    pub error: Option<JobError>,
    pub attempts: u32,
    /// Whether the script may have reached the router. Set before the first byte of the
    /// script is written, so a job found running after a crash with `sent == false` is
    /// known never to have run and can be requeued.
    pub sent: bool,
    pub has_backup: bool,
    pub origin: Option<JobOrigin>,
    /// For a job of a schedule: a digest of how its site was reached when the launch's
    /// approval was checked ([`super::Endpoint::digest`]). The runner does not run it on
    /// a site that is reached any other way by the time its turn comes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    /// What the script changed in the exported configuration, when `make_backup` was set
    /// and the export after the script was taken; the diff itself is kept apart, sealed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub changes: Option<JobChanges>,
    /// The dead-man rollback window asked for, in seconds: the router restores the
    /// backup taken before the script unless the engine reaches it again within it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollback_after_secs: Option<u32>,
    /// The rollback as it was armed and settled, written before it is armed on the
    /// router, so an engine that stops mid-guard knows it was there.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollback: Option<RollbackGuard>,
    /// Where the script came from when the job was made from the library.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub script_origin: Option<ScriptOrigin>,
}

/// Error code of a job whose router could not be reached after its guarded script: the
/// router restores the backup taken before the script.
pub const ROLLED_BACK: &str = "rolled_back";

/// One job's dead-man rollback on its router.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RollbackGuard {
    /// The name of the backup and the scheduler entry on the router.
    pub name: String,
    /// When the router restores the backup, by the engine's clock.
    pub fires_at: DateTime<Utc>,
    /// Set once the router confirmed it armed: the backup file and the scheduler entry,
    /// and the deadline as the router wrote it.
    #[serde(default)]
    pub backup_file: Option<String>,
    #[serde(default)]
    pub scheduler_entry: Option<String>,
    #[serde(default)]
    pub router_fires_at: Option<String>,
    /// When the engine reached the router again after the script and removed the entry
    /// and the backup: all is well.
    #[serde(default)]
    pub disarmed_at: Option<DateTime<Utc>>,
    /// When the router, cut off by the script, answered again after restoring itself.
    #[serde(default)]
    pub returned_at: Option<DateTime<Utc>>,
}

/// The shape of a job's diff, kept on the job so a run's sites can be grouped by what
/// changed without opening any sealed diff.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobChanges {
    /// Lines the script added to the export, and lines it removed.
    pub added: u32,
    pub removed: u32,
    /// SHA-256 (hex) of the changed lines in order, without positions: two sites whose
    /// scripts changed the same lines share it, wherever those lines sit in their exports.
    pub digest: String,
}

/// What creates a job (seed 001's asynchronous request, plus its target).
#[derive(Debug, Clone, Deserialize)]
pub struct JobInput {
    pub organization: String,
    pub site_id: String,
    #[serde(default)]
    pub request_id: Option<String>,
    #[serde(default)]
    pub idempotency_key: Option<String>,
    pub description: String,
    pub script: String,
    #[serde(default)]
    pub make_backup: bool,
    #[serde(default)]
    pub express_execute: bool,
    #[serde(default = "yes")]
    pub needs_acknowledgement: bool,
    #[serde(default)]
    pub notify_url: Option<String>,
    /// The dead-man rollback window, in seconds ([`Job::rollback_after_secs`]).
    #[serde(default)]
    pub rollback_after_secs: Option<u32>,
    /// Where the script came from, when from the library ([`Job::script_origin`]).
    #[serde(default)]
    pub script_origin: Option<ScriptOrigin>,
}

fn yes() -> bool {
    true
}

impl JobInput {
    pub(crate) fn validate(&self) -> Result<(), StoreError> {
        check_name("job", "organization", &self.organization)?;
        check_name("job", "site_id", &self.site_id)?;
        check_name("job", "description", &self.description)?;
        check_len(
            "job",
            "description",
            &self.description,
            MAX_JOB_DESCRIPTION_CHARS,
        )?;
        if self.script.trim().is_empty() {
            return Err(StoreError::invalid("job", "script", "must not be empty"));
        }
        check_len("job", "script", &self.script, MAX_JOB_SCRIPT_CHARS)?;
        if let Some(key) = &self.idempotency_key {
            check_name("job", "idempotency_key", key)?;
        }
        if let Some(id) = &self.request_id {
            check_name("job", "request_id", id)?;
        }
        if let Some(url) = &self.notify_url {
            check_len("job", "notify_url", url, 2048)?;
        }
        Ok(())
    }
}

/// A change of a job's state. The store checks each against the job's current status.
#[derive(Debug, Clone)]
pub enum JobTransition {
    /// pending -> loaded: a runner took it.
    Load,
    /// pending|loaded -> running; counts an attempt.
    Start,
    /// running, before the script's first byte goes out: from here on, a crash fails the
    /// job as interrupted instead of requeueing it.
    MarkSent,
    /// running -> running with `sent` cleared and one more attempt counted: the transport
    /// failed before the script went out (refused, auth, TLS, denied), so trying again
    /// cannot run it twice.
    Retry,
    /// running -> completed.
    Complete { output: Option<String> },
    /// pending|loaded|running -> failed.
    Fail {
        error: JobError,
        output: Option<String>,
    },
    /// loaded|running (not sent) -> pending, for a retry that is known to be safe.
    Requeue,
    /// any status but running -> deleted.
    Delete,
    /// running: records the job's dead-man rollback as it stands (planned, armed or
    /// disarmed), without changing its status.
    Guard(RollbackGuard),
    /// failed with a rollback: the router answered again after restoring itself.
    Returned,
}

/// Someone who can create and authorize schedules.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct User {
    pub id: String,
    pub name: String,
    pub email: String,
    pub organization: String,
    pub created_at: DateTime<Utc>,
}

/// One line of the append-only audit log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEntry {
    pub seq: u64,
    pub at: DateTime<Utc>,
    pub organization: String,
    pub actor: String,
    pub action: String,
    pub target: String,
    pub detail: serde_json::Value,
}

/// What appends an audit line; the store adds its sequence number.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditInput {
    pub at: DateTime<Utc>,
    pub organization: String,
    pub actor: String,
    pub action: String,
    pub target: String,
    pub detail: serde_json::Value,
}

/// Where an outbox event stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OutboxState {
    Pending,
    Delivered,
    Dead,
}

/// An event to deliver, written in the transaction of the change that caused it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutboxEvent {
    pub id: u64,
    pub kind: String,
    pub payload: serde_json::Value,
    pub created_at: DateTime<Utc>,
    pub attempts: u32,
    pub next_attempt_at: DateTime<Utc>,
    pub state: OutboxState,
    pub last_error: Option<String>,
    /// The organization the event concerns, once the deliverer has worked it out; dead
    /// letters are listed per organization.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub organization: Option<String>,
    /// Deliveries (channels, the job's notify URL) already done, so a retry repeats only
    /// the ones that failed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub delivered_to: Vec<String>,
    /// When the event gave up and became a dead letter.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dead_at: Option<DateTime<Utc>>,
}

/// A page of a list: at most `limit` records (capped at [`MAX_PAGE`]), starting after
/// `after` (a cursor the previous page returned).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Page<C> {
    pub limit: usize,
    pub after: Option<C>,
}

impl<C> Page<C> {
    pub fn first(limit: usize) -> Self {
        Page { limit, after: None }
    }

    pub(crate) fn capped_limit(&self) -> usize {
        self.limit.clamp(1, MAX_PAGE)
    }
}

fn check_len(
    kind: &'static str,
    field: &'static str,
    value: &str,
    max: usize,
) -> Result<(), StoreError> {
    // Counting stops at max + 1, so an enormous value costs no more than a short one.
    if value.chars().take(max + 1).count() > max {
        return Err(StoreError::invalid(
            kind,
            field,
            format!("at most {max} characters"),
        ));
    }
    Ok(())
}

fn check_name(kind: &'static str, field: &'static str, value: &str) -> Result<(), StoreError> {
    if value.trim().is_empty() {
        return Err(StoreError::invalid(kind, field, "must not be empty"));
    }
    check_len(kind, field, value, MAX_NAME_CHARS)
}

fn check_list(
    kind: &'static str,
    field: &'static str,
    values: &[String],
) -> Result<(), StoreError> {
    if values.len() > MAX_TARGETS {
        return Err(StoreError::invalid(
            kind,
            field,
            format!("at most {MAX_TARGETS} entries"),
        ));
    }
    values.iter().try_for_each(|v| check_name(kind, field, v))
}
