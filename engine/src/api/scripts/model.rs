//! The bodies of the scheduled-script routes, spelled as the public API spells them
//! (seed 000 and `seeds/README.md`; recurrences as seed 004 in snake_case), and their
//! conversions from and to the store's records.

use std::collections::BTreeSet;

use chrono::{DateTime, NaiveDate, Utc, Weekday};
use serde::{Deserialize, Deserializer, Serialize};
use utoipa::ToSchema;

use crate::scheduler::{self, RecurrenceSpec, ScheduleType};
use crate::store::{
    Job, JobStatus, LatestRun, MissedRunPolicy, Recurrence, RecurrenceKind, Run, RunStatus,
    ScheduleStatus, ScheduledScript, SiteState,
};

/// A recurrence (seed 004): `ONE_TIME`, `HOURLY` every `hourly_interval` hours, `DAILY`,
/// `WEEKLY` on `days_of_week`, `MONTHLY` on day `recurrence_date` (a month without that
/// day is skipped); local `start_time` in `timezone`. The seed's camelCase names
/// (`scheduleType`, `startDate`, ...) are accepted too.
#[derive(Debug, ToSchema)]
#[schema(as = ScheduleRecurrence)]
#[allow(dead_code)]
pub(crate) struct RecurrenceDoc {
    pub schedule_type: ScheduleTypeDoc,
    /// First local date an occurrence may fall on.
    pub start_date: NaiveDate,
    /// Last local date an occurrence may fall on (inclusive).
    pub end_date: Option<NaiveDate>,
    /// Local time of day, `HH:MM:SS` (or `HH:MM`).
    #[schema(example = "04:00:00")]
    pub start_time: String,
    /// IANA time zone name; UTC when absent.
    #[schema(example = "Europe/Berlin")]
    pub timezone: Option<String>,
    /// `HOURLY` only (required there): hours between occurrences.
    #[schema(minimum = 1, maximum = 8784)]
    pub hourly_interval: Option<u32>,
    /// `WEEKLY` only (at least one there): ISO days, 1 = Monday to 7 = Sunday.
    pub days_of_week: Option<Vec<u32>>,
    /// `MONTHLY` only (required there): day of the month.
    #[schema(minimum = 1, maximum = 31)]
    pub recurrence_date: Option<u32>,
}

#[derive(Debug, ToSchema)]
#[schema(as = RecurrenceScheduleType)]
#[allow(dead_code, clippy::upper_case_acronyms, non_camel_case_types)]
pub(crate) enum ScheduleTypeDoc {
    ONE_TIME,
    HOURLY,
    DAILY,
    WEEKLY,
    MONTHLY,
}

/// What to do with an occurrence that fell due while the engine was down.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
#[schema(as = MissedRunPolicy)]
#[serde(rename_all = "snake_case")]
pub(crate) enum MissedRuns {
    /// It does not run; the schedule waits for its next occurrence.
    Skip,
    /// It runs once, if the engine is back within the grace window.
    RunOnce,
}

impl From<MissedRuns> for MissedRunPolicy {
    fn from(m: MissedRuns) -> Self {
        match m {
            MissedRuns::Skip => MissedRunPolicy::Skip,
            MissedRuns::RunOnce => MissedRunPolicy::RunOnce,
        }
    }
}

impl From<MissedRunPolicy> for MissedRuns {
    fn from(m: MissedRunPolicy) -> Self {
        match m {
            MissedRunPolicy::Skip => MissedRuns::Skip,
            MissedRunPolicy::RunOnce => MissedRuns::RunOnce,
        }
    }
}

/// `POST /scripts/scheduled`: a script to run on many sites at a future UTC time.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct CreateBody {
    /// A human-readable name, unique in the organization.
    #[schema(
        example = "Nightly BGP peer maintenance",
        min_length = 1,
        max_length = 200
    )]
    pub description: String,
    /// The full RouterOS script (at most 65,536 characters). Required unless the
    /// script comes from the library (`template_id` or `community_script_id`).
    #[schema(example = "/routing bgp peer disable [find name=peer1]")]
    #[serde(default)]
    pub script: Option<String>,
    /// Render this template (of your organization, or a global one) as the script.
    #[serde(default)]
    pub template_id: Option<String>,
    /// The template's version to render; the current one when absent.
    #[serde(default)]
    pub template_version: Option<u64>,
    /// Values for the template's variables; declared defaults fill the rest.
    #[serde(default)]
    pub variables: std::collections::BTreeMap<String, String>,
    /// Run this community script, as pinned (it must be `ready`).
    #[serde(default)]
    pub community_script_id: Option<String>,
    /// When to run, UTC; must be in the future. Required unless `recurrence` is given.
    #[serde(default)]
    pub launch_at: Option<DateTime<Utc>>,
    /// Site ids to run on.
    #[serde(default)]
    pub sites: Vec<String>,
    /// Also run on every site carrying one of these tags.
    #[serde(default)]
    pub tags: Vec<String>,
    /// Sites never to run on, even when a tag names them.
    #[serde(default)]
    pub excluded_sites: Vec<String>,
    /// User ids to notify about authorization requests and progress.
    #[serde(default)]
    pub notify: Vec<String>,
    /// A site that runs the script first; the fleet waits for it and does not run if it fails.
    #[serde(default)]
    pub test_site_id: Option<String>,
    /// Export each router's configuration before the script runs.
    #[serde(default)]
    pub make_backup: bool,
    /// Skip sites that are offline at launch instead of trying them until the job's timeout.
    #[serde(default)]
    pub abort_if_offline: bool,
    #[serde(default)]
    #[schema(value_type = Option<RecurrenceDoc>)]
    pub recurrence: Option<RecurrenceSpec>,
    #[serde(default)]
    pub missed_runs: Option<MissedRuns>,
    /// Rule ids of the script's lint findings that you accept (`POST /scripts/lint`
    /// lists them). Every critical finding's rule must be listed, or the schedule is
    /// refused (422 `risks_not_acknowledged`); high findings may be listed too. An id
    /// that is no rule, or that the script does not trigger at critical or high
    /// severity, is refused (422). The approval covers the list.
    #[serde(default)]
    #[schema(example = json!(["factory-reset"]))]
    pub acknowledged_risks: Vec<String>,
    /// Dead-man rollback on each site (`30s`, `5m`, `1h30m`; 1s to 24h): the router saves
    /// a backup before the script and restores it after this long unless the engine
    /// reaches it again and disarms it. Part of what an approval covers.
    #[serde(default)]
    #[schema(example = "5m")]
    pub rollback_after: Option<String>,
}

/// `PUT /scripts/scheduled/{id}`: the fields to change; absent fields keep their value,
/// `null` clears an optional one. Changing the script, targets, launch time, recurrence,
/// test site, missed-run policy or acknowledged risks returns the schedule to
/// `unauthorized`.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct UpdateBody {
    pub description: Option<String>,
    pub script: Option<String>,
    #[serde(deserialize_with = "present")]
    #[schema(value_type = Option<DateTime<Utc>>)]
    pub launch_at: Option<Option<DateTime<Utc>>>,
    pub sites: Option<Vec<String>>,
    pub tags: Option<Vec<String>>,
    pub excluded_sites: Option<Vec<String>>,
    pub notify: Option<Vec<String>>,
    #[serde(deserialize_with = "present")]
    #[schema(value_type = Option<String>)]
    pub test_site_id: Option<Option<String>>,
    pub make_backup: Option<bool>,
    pub abort_if_offline: Option<bool>,
    #[serde(deserialize_with = "present")]
    #[schema(value_type = Option<RecurrenceDoc>)]
    pub recurrence: Option<Option<RecurrenceSpec>>,
    pub missed_runs: Option<MissedRuns>,
    /// The whole list again (see `POST`); checked against the script as edited. A
    /// change returns the schedule to `unauthorized`, like an edit of the script.
    pub acknowledged_risks: Option<Vec<String>>,
    /// `null` removes the rollback window.
    #[serde(deserialize_with = "present")]
    #[schema(value_type = Option<String>)]
    pub rollback_after: Option<Option<String>>,
}

/// A field that is present (possibly `null`) becomes `Some`; an absent one stays `None`
/// through `#[serde(default)]`.
fn present<'de, D, T>(d: D) -> Result<Option<Option<T>>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(d).map(Some)
}

/// `POST /scripts/scheduled/{id}/authorize`: no body to approve with the
/// `script:authorize` scope, or the token of an approval link.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct ApproveBody {
    /// The token of the approval link sent to the recipients.
    #[serde(default)]
    pub token: Option<String>,
}

/// `DELETE /scripts/scheduled`: the schedules to delete, all or none.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct BulkDeleteBody {
    /// Ids of the schedules (`id_list` is accepted too).
    #[serde(alias = "id_list")]
    #[schema(min_items = 1, max_items = 1000)]
    pub schedules_ids: Vec<String>,
}

/// Where a scheduled script stands (seed 000).
#[derive(Debug, Clone, Copy, Serialize, ToSchema, PartialEq, Eq)]
#[schema(as = ScheduledScriptStatus)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Status {
    Unauthorized,
    Scheduled,
    Launched,
    Cancelled,
}

/// How a launched schedule ended (its last run, once no occurrence follows).
#[derive(Debug, Clone, Copy, Serialize, ToSchema, PartialEq, Eq)]
#[schema(as = ScheduledScriptOutcome)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Outcome {
    Completed,
    Failed,
    PartiallyFailed,
}

/// Progress of the latest occurrence across its target sites: site ids by state.
#[derive(Debug, Clone, Default, Serialize, ToSchema, PartialEq, Eq)]
#[schema(as = ScheduledScriptProgress)]
pub(crate) struct Progress {
    pub completed: Vec<String>,
    pub failed: Vec<String>,
    /// Not finished yet, including sites the occurrence has not launched on.
    pub pending: Vec<String>,
    /// Offline at launch and skipped (`abort_if_offline`).
    pub skipped: Vec<String>,
    pub counts: Counts,
}

#[derive(Debug, Clone, Default, Serialize, ToSchema, PartialEq, Eq)]
#[schema(as = ProgressCounts)]
pub(crate) struct Counts {
    pub total: u64,
    pub completed: u64,
    pub failed: u64,
    pub pending: u64,
    pub skipped: u64,
}

/// A scheduled script (seed 000's response, plus targets by tag, the recurrence and
/// who authorized it).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub(crate) struct ScheduleView {
    #[schema(example = "018f5bda-4690-7432-8472-358b2734f19b")]
    pub id: String,
    pub created_by: String,
    /// The last user who changed it.
    pub updated_by: Option<String>,
    /// Everyone who created it or changed what an approval covers: none of them may
    /// approve it.
    pub editors: Vec<String>,
    /// The version of what an approval covers: 1 when created, one more per such edit.
    pub version: u32,
    /// The sites the approval covers, resolved when it was approved (tags included);
    /// a launch runs on these only.
    pub approved_sites: Option<Vec<String>>,
    pub test_site_id: Option<String>,
    pub make_backup: bool,
    pub abort_if_offline: bool,
    /// The dead-man rollback window of each job (`5m`), if any.
    pub rollback_after: Option<String>,
    pub description: String,
    /// What the script does, in a sentence, written by the engine (by the generator
    /// plugin, or from the linter's parse without one); null until written, and again
    /// for a moment after the script changes.
    pub summary: Option<String>,
    pub script: String,
    pub status: Status,
    /// Set once a launched schedule has finished: completed, failed or partially failed.
    pub outcome: Option<Outcome>,
    pub authorization_requested_at: Option<DateTime<Utc>>,
    pub authorized_at: Option<DateTime<Utc>>,
    pub authorized_by: Option<String>,
    pub cancelled_at: Option<DateTime<Utc>>,
    pub launch_at: Option<DateTime<Utc>>,
    /// When it launches next (the next occurrence of a recurrence).
    pub next_launch_at: Option<DateTime<Utc>>,
    /// A countdown to the next launch such as "in 2 days" (or since the launch: "2 hours ago").
    #[schema(example = "in 2 days")]
    pub t_minus: Option<String>,
    pub started_at: Option<DateTime<Utc>>,
    pub sites: Vec<String>,
    pub tags: Vec<String>,
    pub excluded_sites: Vec<String>,
    pub notify: Vec<String>,
    pub progress: Progress,
    #[schema(value_type = Option<RecurrenceDoc>)]
    pub recurrence: Option<RecurrenceSpec>,
    pub missed_runs: MissedRuns,
    /// The rule ids of the script's lint findings its author accepts; the approval
    /// covers them.
    pub acknowledged_risks: Vec<String>,
    /// Where `script` came from, when it was made from a template or a community script.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub origin: Option<crate::store::ScriptOrigin>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// What the linter finds in `script`: only in `GET /scripts/scheduled/{id}`, as
    /// linting every script of a listing would cost more than the listing.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lint: Option<crate::lint::LintReport>,
    /// What the latest run's scripts changed (with `make_backup`), its sites grouped by
    /// identical diff; absent when no job of the run has a diff.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub changes: Option<crate::runner::diff::ChangesSummary>,
}

impl ScheduleView {
    pub(crate) fn new(s: ScheduledScript, progress: Progress, now: DateTime<Utc>) -> Self {
        let (status, outcome) = match s.status {
            ScheduleStatus::Unauthorized => (Status::Unauthorized, None),
            ScheduleStatus::Scheduled => (Status::Scheduled, None),
            ScheduleStatus::Launched => (Status::Launched, None),
            ScheduleStatus::Completed => (Status::Launched, Some(Outcome::Completed)),
            ScheduleStatus::Failed => (Status::Launched, Some(Outcome::Failed)),
            ScheduleStatus::PartiallyFailed => (Status::Launched, Some(Outcome::PartiallyFailed)),
            ScheduleStatus::Cancelled => (Status::Cancelled, None),
        };
        let countdown_to = match s.status {
            ScheduleStatus::Cancelled => None,
            _ => s.next_launch_at.or(s.launch_at),
        };
        ScheduleView {
            t_minus: countdown_to.map(|at| scheduler::t_minus(now, at)),
            recurrence: s.recurrence.as_ref().map(spec_of),
            id: s.id,
            created_by: s.created_by,
            updated_by: s.updated_by,
            editors: s.editors,
            version: s.version,
            approved_sites: s.approved_targets.map(|t| t.sites),
            test_site_id: s.test_site_id,
            make_backup: s.make_backup,
            abort_if_offline: s.abort_if_offline,
            rollback_after: s
                .rollback_after_secs
                .map(crate::runner::rollback::format_window),
            description: s.description,
            summary: s.summary,
            script: s.script,
            status,
            outcome,
            authorization_requested_at: s.authorization_requested_at,
            authorized_at: s.authorized_at,
            authorized_by: s.authorized_by,
            cancelled_at: s.cancelled_at,
            launch_at: s.launch_at,
            next_launch_at: s.next_launch_at,
            started_at: s.started_at,
            sites: s.sites,
            tags: s.tags,
            excluded_sites: s.excluded_sites,
            notify: s.notify,
            progress,
            missed_runs: s.missed_runs.into(),
            acknowledged_risks: s.acknowledged_risks,
            origin: s.origin,
            created_at: s.created_at,
            updated_at: s.updated_at,
            lint: None,
            changes: None,
        }
    }
}

/// The progress of `s` from where each site of its latest run stands; sites the run has
/// not reached (or every target, before the first launch) are pending while more is to
/// launch.
pub(crate) fn progress(s: &ScheduledScript, latest: &LatestRun, tagged: &[String]) -> Progress {
    let mut p = Progress::default();
    let mut seen = BTreeSet::new();
    for site in &latest.sites {
        seen.insert(site.site_id.as_str());
        let list = match site.state {
            SiteState::Completed => &mut p.completed,
            SiteState::Skipped => &mut p.skipped,
            SiteState::Failed => &mut p.failed,
            SiteState::Pending => &mut p.pending,
        };
        list.push(site.site_id.clone());
    }
    let more_to_launch = match &latest.run {
        None => !matches!(s.status, ScheduleStatus::Cancelled),
        Some(run) => run.awaiting_batches && run.finished_at.is_none(),
    };
    if more_to_launch {
        let targets: BTreeSet<&str> = s
            .test_site_id
            .iter()
            .chain(&s.sites)
            .chain(tagged)
            .map(String::as_str)
            .filter(|id| !s.excluded_sites.iter().any(|x| x == id))
            .collect();
        for site in targets {
            if seen.insert(site) {
                p.pending.push(site.to_owned());
            }
        }
    }
    p.counts = Counts {
        total: (p.completed.len() + p.failed.len() + p.pending.len() + p.skipped.len()) as u64,
        completed: p.completed.len() as u64,
        failed: p.failed.len() as u64,
        pending: p.pending.len() as u64,
        skipped: p.skipped.len() as u64,
    };
    p
}

/// The store's recurrence as the API spells it.
pub(crate) fn spec_of(r: &Recurrence) -> RecurrenceSpec {
    let schedule_type = match r.kind {
        RecurrenceKind::OneTime => ScheduleType::OneTime,
        RecurrenceKind::Hourly => ScheduleType::Hourly,
        RecurrenceKind::Daily => ScheduleType::Daily,
        RecurrenceKind::Weekly => ScheduleType::Weekly,
        RecurrenceKind::Monthly => ScheduleType::Monthly,
    };
    RecurrenceSpec {
        schedule_type,
        start_date: r.start_date,
        end_date: r.end_date,
        start_time: r.start_time,
        timezone: r.timezone.clone(),
        hourly_interval: match schedule_type {
            ScheduleType::Hourly => Some(r.interval.unwrap_or(1)),
            _ => None,
        },
        days_of_week: r
            .days_of_week
            .iter()
            .map(|d| d.number_from_monday())
            .collect(),
        recurrence_date: r.day_of_month.map(u32::from),
    }
}

/// A recurrence from the API, validated by the scheduler's rules, as the store keeps it.
/// The error is the scheduler's, naming the field.
pub(crate) fn recurrence_of(
    spec: RecurrenceSpec,
) -> Result<Recurrence, scheduler::RecurrenceError> {
    let rule = scheduler::Recurrence::new(spec)?;
    let spec = rule.spec();
    const DAYS: [Weekday; 7] = [
        Weekday::Mon,
        Weekday::Tue,
        Weekday::Wed,
        Weekday::Thu,
        Weekday::Fri,
        Weekday::Sat,
        Weekday::Sun,
    ];
    Ok(Recurrence {
        kind: match spec.schedule_type {
            ScheduleType::OneTime => RecurrenceKind::OneTime,
            ScheduleType::Hourly => RecurrenceKind::Hourly,
            ScheduleType::Daily => RecurrenceKind::Daily,
            ScheduleType::Weekly => RecurrenceKind::Weekly,
            ScheduleType::Monthly => RecurrenceKind::Monthly,
        },
        interval: spec.hourly_interval,
        // Validated: every day is 1 to 7, every date 1 to 31.
        days_of_week: spec
            .days_of_week
            .iter()
            .filter_map(|d| DAYS.get((*d as usize).wrapping_sub(1)).copied())
            .collect(),
        day_of_month: spec.recurrence_date.and_then(|d| u8::try_from(d).ok()),
        start_date: spec.start_date,
        end_date: spec.end_date,
        start_time: spec.start_time,
        timezone: spec.timezone.clone(),
    })
}

/// A job of a run: where it ran and how it went.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub(crate) struct RunJob {
    pub id: String,
    pub site_id: String,
    pub status: JobState,
    pub attempts: u32,
    pub created_at: DateTime<Utc>,
    pub started_at: Option<DateTime<Utc>>,
    pub completed_at: Option<DateTime<Utc>>,
    pub failed_at: Option<DateTime<Utc>>,
    pub error: Option<JobFailure>,
    /// Whether a configuration export was taken before the script.
    pub has_backup: bool,
}

#[derive(Debug, Clone, Copy, Serialize, ToSchema)]
#[schema(as = RunJobStatus)]
#[serde(rename_all = "snake_case")]
pub(crate) enum JobState {
    Pending,
    Loaded,
    Running,
    Completed,
    Failed,
    Deleted,
}

/// Why a job failed: `skipped` (offline), `cancelled`, `interrupted`, or the transport's code.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[schema(as = RunJobError)]
pub(crate) struct JobFailure {
    pub code: String,
    pub message: String,
}

impl From<Job> for RunJob {
    fn from(j: Job) -> Self {
        RunJob {
            status: match j.status {
                JobStatus::Pending => JobState::Pending,
                JobStatus::Loaded => JobState::Loaded,
                JobStatus::Running => JobState::Running,
                JobStatus::Completed => JobState::Completed,
                JobStatus::Failed => JobState::Failed,
                JobStatus::Deleted => JobState::Deleted,
            },
            id: j.id,
            site_id: j.site_id,
            attempts: j.attempts,
            created_at: j.created_at,
            started_at: j.started_at,
            completed_at: j.completed_at,
            failed_at: j.failed_at,
            error: j.error.map(|e| JobFailure {
                code: e.code,
                message: e.message,
            }),
            has_backup: j.has_backup,
        }
    }
}

#[derive(Debug, Clone, Copy, Serialize, ToSchema)]
#[schema(as = RunStatus)]
#[serde(rename_all = "snake_case")]
pub(crate) enum RunState {
    Launched,
    Completed,
    Failed,
    PartiallyFailed,
}

/// One occurrence of a schedule and its jobs.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub(crate) struct RunView {
    /// The occurrence's number in its recurrence (0 for a one-time schedule).
    pub occurrence: u64,
    pub scheduled_for: DateTime<Utc>,
    pub status: RunState,
    pub started_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
    pub counts: Counts,
    /// The run's jobs; when `jobs_truncated`, only the first of them (`counts` tallies
    /// them all).
    pub jobs: Vec<RunJob>,
    /// True when the run has more jobs than one page carries (1000).
    pub jobs_truncated: bool,
    /// What the run's scripts changed (with `make_backup`), its sites grouped by identical
    /// diff, over the jobs listed; absent when none has a diff.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub changes: Option<crate::runner::diff::ChangesSummary>,
}

impl RunView {
    pub(crate) fn new(run: Run, jobs: Vec<Job>) -> Self {
        RunView {
            occurrence: run.occurrence,
            scheduled_for: run.scheduled_for,
            status: match run.status {
                RunStatus::Launched => RunState::Launched,
                RunStatus::Completed => RunState::Completed,
                RunStatus::Failed => RunState::Failed,
                RunStatus::PartiallyFailed => RunState::PartiallyFailed,
            },
            started_at: run.started_at,
            finished_at: run.finished_at,
            counts: Counts {
                total: run.total,
                completed: run.completed,
                failed: run.failed,
                pending: run.pending,
                skipped: run.skipped,
            },
            changes: crate::runner::diff::summarize(&jobs),
            jobs: jobs.into_iter().map(RunJob::from).collect(),
            jobs_truncated: false,
        }
    }
}

/// `GET /scripts/scheduled/{id}/runs`: a page of the run history, oldest first. A page
/// carries at most 1000 jobs over all its runs, so it may hold fewer runs than `limit`.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct RunsPage {
    pub runs: Vec<RunView>,
    /// Pass as `after` for the next page; absent on the last page.
    pub next_after: Option<u64>,
}

/// One upcoming occurrence.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct OccurrenceView {
    /// The occurrence's number in its recurrence; it keys the run history.
    pub index: u64,
    pub at: DateTime<Utc>,
    #[schema(example = "in 3 hours")]
    pub t_minus: String,
}

/// `GET /scripts/scheduled/{id}/occurrences`.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct OccurrencesView {
    pub schedule_id: String,
    pub occurrences: Vec<OccurrenceView>,
}

/// `GET /scripts/scheduled/{id}/authorize`: the request is recorded and the recipients
/// are sent a single-use link that expires.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct AuthorizationRequested {
    #[schema(example = "ok")]
    pub status: String,
    pub message: String,
    pub data: AuthorizationRequestData,
}

#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct AuthorizationRequestData {
    pub schedule: ScheduleView,
    /// User ids the approval link goes to: `notify`, or everyone in the organization.
    pub recipients: Vec<String>,
    /// When the link stops approving.
    pub expires_at: DateTime<Utc>,
}

/// The listing envelope (seed 003).
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct ListResponse {
    #[schema(example = "ok")]
    pub status: String,
    #[schema(example = "List of scheduled scripts")]
    pub message: String,
    pub data: ListData,
}

#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct ListData {
    /// The schedules of this page, in creation order.
    pub registries: Vec<ScheduleView>,
    pub paginate: bool,
    /// Page number from 1; absent when not paginated.
    pub page: Option<u64>,
    pub page_size: Option<u64>,
    /// Schedules that match the filters, on every page.
    pub total: u64,
    /// Number of pages; absent when not paginated.
    pub pages: Option<u64>,
}

/// `DELETE /scripts/scheduled`.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct BulkDeleted {
    #[schema(example = "ok")]
    pub status: String,
    #[schema(example = "Schedules successfully deleted")]
    pub message: String,
    pub deleted: Vec<String>,
}
