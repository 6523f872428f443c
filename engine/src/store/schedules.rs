//! Scheduled scripts, their runs, and the never-twice ledger.
//!
//! A launch is one transaction: for each site of the occurrence it consults the ledger,
//! and only where there is no entry yet writes the job and the entry together. A second
//! launch of the same (schedule, occurrence, site), whether from a retry, a second
//! scheduler or a restart after `kill -9`, finds the entry and creates nothing. The store
//! also refuses to launch a schedule whose stored approval is not the one the caller
//! checked, so an edit that raced the scheduler cannot run unapproved.

use chrono::{DateTime, Utc};
use redb::{ReadableTable, WriteTransaction};
use serde_json::json;

use super::Store;
use super::approvals::{ApprovalToken, Decision, TokenRejection, use_approval_token};
use super::crypto::new_id;
use super::error::StoreError;
use super::jobs::{JobTables, new_job, set_job_seq};
use super::journal::{push_audit, push_event};
use super::records::{
    AuditInput, CANCELLED, Job, JobError, JobInput, JobOrigin, JobStatus, JobTransition,
    MAX_JOB_DESCRIPTION_CHARS, MAX_TARGETS, Page, Run, RunStatus, SKIPPED, ScheduleInput,
    SchedulePatch, ScheduleStatus, ScheduledScript,
};
use super::tables::{
    APPROVAL_TOKENS, JOBS, LEDGER, META_JOB_SEQ, RUNS, SCHEDULE_NAMES, SCHEDULES, SCHEDULES_BY_ORG,
    SCHEDULES_DUE, SITES, SITES_BY_TAG,
};
use super::targets::{self, Endpoint, Targets};
use super::txn::{decode, encode, load, millis, take_seq};

const KIND: &str = "schedule";

/// One occurrence's launch, as the scheduler worked it out.
#[derive(Debug, Clone)]
pub struct LaunchPlan {
    pub schedule_id: String,
    pub occurrence: u64,
    pub scheduled_for: DateTime<Utc>,
    /// The approval binding the caller verified against the script and targets it read.
    pub approval: String,
    /// The resolved target sites of this batch (explicit sites and tags, less exclusions).
    pub sites: Vec<String>,
    /// More batches of this occurrence will follow (a test site first, then the fleet),
    /// so the run must not be declared finished when this batch is done.
    pub more_batches: bool,
    /// The schedule's next launch after this one; `None` when this was the last.
    pub next_launch_at: Option<DateTime<Utc>>,
}

/// What a launch did.
#[derive(Debug, Clone)]
pub struct Launch {
    pub run: Run,
    /// Jobs created by this launch.
    pub created: Vec<Job>,
    /// (site id, job id) of sites this occurrence had already launched on: not run again.
    pub already_launched: Vec<(String, String)>,
}

impl Store {
    /// Creates a scheduled script in `unauthorized`; its description must be new in its
    /// organization, and its script must pass the lint policy with its acknowledged risks.
    pub fn create_schedule(
        &self,
        input: ScheduleInput,
        now: DateTime<Utc>,
    ) -> Result<ScheduledScript, StoreError> {
        let schedule = new_schedule(input, now)?;
        self.write_launches(|tx| insert_schedule(tx, schedule, now))
    }

    /// Creates many scheduled scripts in one commit (bulk loads and benchmarks), each as
    /// [`Store::create_schedule`] would: all of them, or none when one is refused.
    pub fn create_schedules(
        &self,
        inputs: Vec<ScheduleInput>,
        now: DateTime<Utc>,
    ) -> Result<Vec<ScheduledScript>, StoreError> {
        let schedules = inputs
            .into_iter()
            .map(|input| new_schedule(input, now))
            .collect::<Result<Vec<_>, _>>()?;
        self.write_launches(|tx| {
            schedules
                .into_iter()
                .map(|schedule| insert_schedule(tx, schedule, now))
                .collect()
        })
    }

    pub fn get_schedule(&self, id: &str) -> Result<ScheduledScript, StoreError> {
        self.read(|tx| {
            load(&tx.open_table(SCHEDULES)?, KIND, id)?
                .ok_or_else(|| StoreError::not_found(KIND, id))
        })
    }

    /// An organization's schedules in creation order; the cursor is the last id seen.
    pub fn list_schedules(
        &self,
        organization: &str,
        page: &Page<String>,
    ) -> Result<Vec<ScheduledScript>, StoreError> {
        let limit = page.capped_limit();
        self.read(|tx| {
            let schedules = tx.open_table(SCHEDULES)?;
            let mut out = Vec::new();
            for id in tx
                .open_multimap_table(SCHEDULES_BY_ORG)?
                .get(organization)?
            {
                let id = id?;
                let id = id.value();
                if page.after.as_deref().is_some_and(|after| id <= after) {
                    continue;
                }
                if let Some(s) = load(&schedules, KIND, id)? {
                    out.push(s);
                }
                if out.len() >= limit {
                    break;
                }
            }
            Ok(out)
        })
    }

    /// Edits a schedule before its launch, as user `by`. Changing what an approval
    /// covers (script, targets, window, test site, backup and offline policy, rollout)
    /// returns it to `unauthorized`, counts a new version and makes `by` one of its
    /// editors, who may not approve it. The edit and its audit line are one commit.
    pub fn update_schedule(
        &self,
        id: &str,
        patch: SchedulePatch,
        by: &str,
        now: DateTime<Utc>,
    ) -> Result<ScheduledScript, StoreError> {
        self.write_launches(|tx| {
            let old = get(tx, id)?;
            let Some((new, audit)) = patched(&old, patch, by, now)? else {
                return Ok(old);
            };
            if old.script != new.script {
                super::queue_summary(tx, super::SummaryOf::Schedule, &new.id, &new.script, now)?;
            }
            push_audit(tx, audit)?;
            if new.description != old.description {
                claim_name(tx, &new.organization, &new.description, id)?;
                tx.open_table(SCHEDULE_NAMES)?
                    .remove((old.organization.as_str(), old.description.as_str()))?;
            }
            save(tx, Some(&old), &new)?;
            Ok(new)
        })
    }

    /// Records that authorization was requested, with the approval links' tokens (one
    /// per recipient) and the decision's audit line and event, in one commit: the links
    /// are announced if and only if the request and its tokens exist. Returns the
    /// schedule and the event's id.
    pub(crate) fn request_authorization(
        &self,
        id: &str,
        tokens: &[ApprovalToken],
        decision: Decision,
        now: DateTime<Utc>,
    ) -> Result<(ScheduledScript, u64), StoreError> {
        let encoded = tokens
            .iter()
            .map(|t| Ok((t.digest.as_str(), encode("approval token", id, t)?)))
            .collect::<Result<Vec<_>, StoreError>>()?;
        self.write(|tx| {
            let old = get(tx, id)?;
            let new = requested(&old, now)?;
            save(tx, Some(&old), &new)?;
            let mut table = tx.open_table(APPROVAL_TOKENS)?;
            for (digest, bytes) in &encoded {
                table.insert(*digest, bytes.as_slice())?;
            }
            drop(table);
            let event_id = decision.write(tx, now)?;
            Ok((new, event_id))
        })
    }

    /// The approval binding of a schedule as it stands, with its targets resolved now:
    /// what an approver is shown and approves.
    pub fn approval_binding(
        &self,
        schedule: &ScheduledScript,
    ) -> Result<(String, Targets), StoreError> {
        self.read(|tx| {
            let targets = targets::resolve(
                &tx.open_table(SITES)?,
                &tx.open_multimap_table(SITES_BY_TAG)?,
                schedule,
            )?;
            Ok((crate::approval::approval_hash(schedule, &targets), targets))
        })
    }

    /// Marks a schedule authorized by `by` under the approval binding `approval`, due at
    /// `next_launch_at`, using up the approval link `token` (a digest) when one was
    /// presented, and writing the decision, all in one commit. The binding is computed
    /// again here, with the targets resolved in this transaction: a schedule or a target
    /// site that changed since the caller read it is refused. So is an approver who
    /// created or edited what the approval covers, unless `allow_self_approval`, and a
    /// link that does not approve: then nothing is written.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn authorize_schedule(
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
        self.write_launches(|tx| {
            let old = get(tx, id)?;
            let targets = resolve_in(tx, &old)?;
            if let Err(refusal) = may_authorize(&old, by, approval, allow_self_approval, &targets)?
            {
                return Ok(Err(refusal));
            }
            if let Some(digest) = token
                && let Err(rejection) = use_approval_token(tx, digest, id, approval, by, now)?
            {
                return Ok(Err(Refusal::Token(rejection)));
            }
            let new = authorized(&old, by, approval, targets, next_launch_at, now);
            save(tx, Some(&old), &new)?;
            decision.write(tx, now)?;
            Ok(Ok(new))
        })
    }

    /// Cancels a schedule that has not finished, writing the decision with it; it leaves
    /// the due index at once.
    pub(crate) fn cancel_schedule(
        &self,
        id: &str,
        decision: Decision,
        now: DateTime<Utc>,
    ) -> Result<ScheduledScript, StoreError> {
        self.write_launches(|tx| {
            let old = get(tx, id)?;
            let new = cancelled(&old, now)?;
            save(tx, Some(&old), &new)?;
            // Jobs of this schedule that no runner has started never will: they fail now,
            // in the same transaction, so a restart cannot pick them up.
            let fail = [cancel_transition()];
            let unstarted = unstarted_jobs(tx, id)?;
            let mut jobs = JobTables::open(tx)?;
            for seq in unstarted {
                jobs.change(tx, seq, &fail, now)?;
            }
            jobs.close()?;
            decision.write(tx, now)?;
            Ok(new)
        })
    }

    /// Deletes a schedule that is not launched, as user `by`, with its audit line. Its
    /// runs and ledger entries stay, so an occurrence that ran is still known to have run.
    pub fn delete_schedule(
        &self,
        id: &str,
        by: &str,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        self.write_launches(|tx| {
            let old = get(tx, id)?;
            push_audit(tx, deletion_audit(&old, by, now)?)?;
            unindex_due(tx, &old)?;
            super::listing::reindex(tx, Some(&old), None)?;
            tx.open_table(SCHEDULE_NAMES)?
                .remove((old.organization.as_str(), old.description.as_str()))?;
            tx.open_multimap_table(SCHEDULES_BY_ORG)?
                .remove(old.organization.as_str(), id)?;
            tx.open_table(SCHEDULES)?.remove(id)?;
            Ok(())
        })
    }

    /// Schedules whose next launch is at or before `now`, earliest first.
    pub fn due_schedules(
        &self,
        now: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<ScheduledScript>, StoreError> {
        let limit = limit.clamp(1, super::MAX_PAGE);
        self.read(|tx| {
            let schedules = tx.open_table(SCHEDULES)?;
            let mut out = Vec::new();
            for entry in tx
                .open_table(SCHEDULES_DUE)?
                .range(..(millis(now).saturating_add(1), ""))?
                .take(limit)
            {
                let (key, _) = entry?;
                let id = key.value().1;
                if let Some(s) = load(&schedules, KIND, id)? {
                    out.push(s);
                }
            }
            Ok(out)
        })
    }

    /// The earliest launch time of any schedule that may launch, passing over those in
    /// `skip` (schedules the launcher is launching already, which stay due meanwhile), so
    /// the launcher can wake for it rather than at its next poll. Reads the due index
    /// from its start, no further than `skip` requires.
    pub fn next_due_at(
        &self,
        skip: &std::collections::HashSet<String>,
    ) -> Result<Option<DateTime<Utc>>, StoreError> {
        self.read(|tx| {
            for entry in tx.open_table(SCHEDULES_DUE)?.iter()? {
                let (key, _) = entry?;
                let (at, id) = key.value();
                if !skip.contains(id) {
                    return Ok(DateTime::from_timestamp_millis(at));
                }
            }
            Ok(None)
        })
    }

    /// Moves a schedule's next launch (missed occurrences skipped, a recurrence ended).
    pub fn set_next_launch(
        &self,
        id: &str,
        next: Option<DateTime<Utc>>,
        now: DateTime<Utc>,
    ) -> Result<ScheduledScript, StoreError> {
        self.write(|tx| {
            let old = get(tx, id)?;
            let mut new = old.clone();
            new.next_launch_at = next;
            new.updated_at = now;
            save(tx, Some(&old), &new)?;
            Ok(new)
        })
    }

    /// Launches one occurrence on the plan's sites: jobs and ledger entries in one
    /// transaction, skipping every site the ledger says this occurrence already reached.
    pub fn launch(&self, plan: LaunchPlan, now: DateTime<Utc>) -> Result<Launch, StoreError> {
        if plan.sites.len() > MAX_TARGETS {
            return Err(StoreError::invalid(
                KIND,
                "sites",
                format!("at most {MAX_TARGETS} per launch"),
            ));
        }
        self.write(|tx| {
            let old = get(tx, &plan.schedule_id)?;
            // What the approval covered is checked again here, in the transaction that
            // creates the jobs: the targets as they resolve now, each reached as it was.
            let targets = resolve_in(tx, &old)?;
            if !still_approved(&old, &plan, &targets)? {
                return Ok(Err(void_at_launch(tx, &old, &targets, now)?));
            }
            let run_key = (plan.schedule_id.as_str(), plan.occurrence);
            let mut run = match tx.open_table(RUNS)?.get(run_key)? {
                Some(bytes) => decode("run", &plan.schedule_id, bytes.value())?,
                None => Run::launched(&plan.schedule_id, plan.occurrence, plan.scheduled_for, now),
            };
            let mut seq = take_seq(tx, META_JOB_SEQ, 0)?;
            let mut created = Vec::new();
            let mut already = Vec::new();
            {
                let mut ledger = tx.open_table(LEDGER)?;
                let mut jobs = JobTables::open(tx)?;
                let mut sites = plan.sites.clone();
                sites.sort();
                sites.dedup();
                for site in sites {
                    let key = (plan.schedule_id.as_str(), plan.occurrence, site.as_str());
                    let existing = ledger.get(key)?.map(|v| v.value());
                    if let Some(job_seq) = existing {
                        already.push((site.clone(), jobs.get(job_seq)?.id));
                        continue;
                    }
                    let job = launch_job(&old, &plan, &targets, &site, seq, now);
                    seq += 1;
                    jobs.insert(&job)?;
                    ledger.insert(key, job.seq_id)?;
                    created.push(job);
                }
                jobs.close()?;
            }
            set_job_seq(tx, seq - 1)?;
            let added = created.len() as u64;
            let new = launched(&old, &mut run, &plan, added, now);
            put_run(tx, &run)?;
            save(tx, Some(&old), &new)?;
            if added > 0 {
                push_event(tx, EVENT_LAUNCHED, launched_payload(&plan, added), now)?;
            }
            Ok(Ok(Launch {
                run,
                created,
                already_launched: already,
            }))
        })?
        .map_err(|reasons| StoreError::ApprovalVoid {
            id: plan.schedule_id.clone(),
            reasons,
        })
    }

    pub fn get_run(&self, schedule_id: &str, occurrence: u64) -> Result<Run, StoreError> {
        self.read(
            |tx| match tx.open_table(RUNS)?.get((schedule_id, occurrence))? {
                Some(bytes) => decode("run", schedule_id, bytes.value()),
                None => Err(StoreError::not_found(
                    "run",
                    format!("{schedule_id}#{occurrence}"),
                )),
            },
        )
    }

    /// The run of a schedule's latest occurrence, if it ever launched; read from the end
    /// of its range, so a long history costs nothing.
    pub fn last_run(&self, schedule_id: &str) -> Result<Option<Run>, StoreError> {
        self.read(|tx| latest_run_in(&tx.open_table(RUNS)?, schedule_id))
    }

    /// A schedule's run history, oldest occurrence first.
    pub fn list_runs(&self, schedule_id: &str, page: &Page<u64>) -> Result<Vec<Run>, StoreError> {
        let from = page.after.map_or(0, |a| a.saturating_add(1));
        let limit = page.capped_limit();
        self.read(|tx| {
            tx.open_table(RUNS)?
                .range((schedule_id, from)..=(schedule_id, u64::MAX))?
                .take(limit)
                .map(|e| decode("run", schedule_id, e?.1.value()))
                .collect()
        })
    }

    /// The jobs of one occurrence, in site order: what its per-site progress is made of.
    pub fn run_jobs(&self, schedule_id: &str, occurrence: u64) -> Result<Vec<Job>, StoreError> {
        Ok(self
            .run_jobs_limited(schedule_id, occurrence, usize::MAX)?
            .0)
    }

    /// The first `limit` jobs of one occurrence, in site order, and how many it has in
    /// all: a run of thousands of jobs is read no further than a page needs.
    pub fn run_jobs_limited(
        &self,
        schedule_id: &str,
        occurrence: u64,
        limit: usize,
    ) -> Result<(Vec<Job>, usize), StoreError> {
        self.read(|tx| {
            let jobs = tx.open_table(JOBS)?;
            let ledger = tx.open_table(LEDGER)?;
            let seqs = occurrence_jobs(&ledger, schedule_id, occurrence)?;
            let mut out = Vec::new();
            for seq in seqs.iter().take(limit) {
                if let Some(bytes) = jobs.get(*seq)? {
                    out.push(decode("job", &seq.to_string(), bytes.value())?);
                }
            }
            Ok((out, seqs.len()))
        })
    }

    /// The job an occurrence created on a site, if it launched there.
    pub fn ledger_entry(
        &self,
        schedule_id: &str,
        occurrence: u64,
        site_id: &str,
    ) -> Result<Option<String>, StoreError> {
        self.read(|tx| {
            let seq = tx
                .open_table(LEDGER)?
                .get((schedule_id, occurrence, site_id))?
                .map(|v| v.value());
            let Some(seq) = seq else { return Ok(None) };
            let jobs = tx.open_table(JOBS)?;
            let bytes = jobs
                .get(seq)?
                .ok_or_else(|| StoreError::not_found("job", seq.to_string()))?;
            let job: Job = decode("job", &seq.to_string(), bytes.value())?;
            Ok(Some(job.id))
        })
    }
}

/// `old` with `patch` applied by user `by`, and the edit's audit line; `None` when the
/// patch changes nothing. The same rules in either store: changing what an approval
/// covers returns the schedule to `unauthorized`, counts a new version and makes `by`
/// one of its editors; a changed script drops the summary (the caller queues a new one);
/// the lint policy is checked whenever the script or its acknowledged risks change.
pub(super) fn patched(
    old: &ScheduledScript,
    patch: SchedulePatch,
    by: &str,
    now: DateTime<Utc>,
) -> Result<Option<(ScheduledScript, AuditInput)>, StoreError> {
    let id = old.id.as_str();
    if !matches!(
        old.status,
        ScheduleStatus::Unauthorized | ScheduleStatus::Scheduled
    ) {
        return Err(state(
            &old.id,
            format!("cannot be edited once {:?}", old.status).to_lowercase(),
        ));
    }
    let mut new = old.clone();
    let SchedulePatch {
        description,
        script,
        sites,
        tags,
        excluded_sites,
        launch_at,
        recurrence,
        make_backup,
        abort_if_offline,
        test_site_id,
        notify,
        summary,
        missed_runs,
        rollout,
        acknowledged_risks,
        rollback_after_secs,
    } = patch;
    if let Some(v) = description {
        new.description = v;
    }
    if let Some(v) = script {
        if v != new.script {
            new.origin = None;
        }
        new.script = v;
    }
    if let Some(v) = sites {
        new.sites = v;
    }
    if let Some(v) = tags {
        new.tags = v;
    }
    if let Some(v) = excluded_sites {
        new.excluded_sites = v;
    }
    if let Some(v) = launch_at {
        new.launch_at = v;
    }
    if let Some(v) = recurrence {
        new.recurrence = v;
    }
    if let Some(v) = make_backup {
        new.make_backup = v;
    }
    if let Some(v) = abort_if_offline {
        new.abort_if_offline = v;
    }
    if let Some(v) = test_site_id {
        new.test_site_id = v;
    }
    if let Some(v) = notify {
        new.notify = v;
    }
    if let Some(v) = summary {
        new.summary = v;
    }
    if let Some(v) = missed_runs {
        new.missed_runs = v;
    }
    if let Some(v) = rollout {
        new.rollout = v;
    }
    if let Some(mut v) = acknowledged_risks {
        crate::lint::policy::normalize(&mut v);
        new.acknowledged_risks = v;
    }
    if let Some(v) = rollback_after_secs {
        new.rollback_after_secs = v;
    }
    as_input(&new).validate()?;
    let changed = changed_fields(old, &new);
    if changed.is_empty() {
        return Ok(None);
    }
    if old.script != new.script {
        // The summary was of the old script: a new one is written for this one.
        new.summary = None;
    }
    // The lint policy is checked on the edited schedule whenever the script or
    // its acknowledged risks change, in this transaction, so two edits racing
    // each other cannot together leave a risk unacknowledged. Other edits leave
    // a schedule written before the policy as it is; approving it checks it.
    if changed
        .iter()
        .any(|f| matches!(*f, "script" | "acknowledged_risks"))
    {
        crate::lint::policy::check(&new.script, &new.acknowledged_risks)?;
    }
    let binding_changed = changed.iter().any(|f| BOUND_FIELDS.contains(f));
    if binding_changed {
        void_approval(&mut new);
        new.version = old.version.saturating_add(1).max(2);
        if !new.editors.iter().any(|e| e == by) {
            new.editors.push(by.to_owned());
        }
    }
    new.updated_by = Some(by.to_owned());
    let audit = AuditInput {
        at: now,
        organization: new.organization.clone(),
        actor: by.to_owned(),
        action: AUDIT_UPDATED.into(),
        target: id.to_owned(),
        detail: json!({
            "changed": changed,
            "version": new.version,
            "deauthorized": binding_changed && old.status != ScheduleStatus::Unauthorized,
            "script_sha256": script_digest(&new.script),
        }),
    };
    new.updated_at = now;
    Ok(Some((new, audit)))
}

/// Whether `by` may authorize `old` under `approval`, given its targets as they resolve
/// in the deciding transaction: an error when it is not unauthorized or its binding moved
/// since the caller computed `approval`; `Refusal::OwnWork` when `by` shaped it and
/// self-approval is not allowed.
pub(super) fn may_authorize(
    old: &ScheduledScript,
    by: &str,
    approval: &str,
    allow_self_approval: bool,
    targets: &Targets,
) -> Result<Result<(), Refusal>, StoreError> {
    if old.status != ScheduleStatus::Unauthorized {
        return Err(state(
            &old.id,
            "only an unauthorized schedule can be authorized",
        ));
    }
    if !allow_self_approval && shaped_by(old, by) {
        return Ok(Err(Refusal::OwnWork));
    }
    if crate::approval::approval_hash(old, targets) != approval {
        return Err(state(
            &old.id,
            "it or one of its target sites changed while it was being approved; review it again",
        ));
    }
    Ok(Ok(()))
}

/// `old` authorized by `by` under `approval` and the targets it covers, due at
/// `next_launch_at`.
pub(super) fn authorized(
    old: &ScheduledScript,
    by: &str,
    approval: &str,
    targets: Targets,
    next_launch_at: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
) -> ScheduledScript {
    let mut new = old.clone();
    new.status = ScheduleStatus::Scheduled;
    new.authorized_at = Some(now);
    new.authorized_by = Some(by.to_owned());
    new.approval = Some(approval.to_owned());
    new.approved_targets = Some(targets);
    new.next_launch_at = next_launch_at;
    new.updated_at = now;
    new
}

/// `old` once authorization was asked for; only an unauthorized schedule asks.
pub(super) fn requested(
    old: &ScheduledScript,
    now: DateTime<Utc>,
) -> Result<ScheduledScript, StoreError> {
    if old.status != ScheduleStatus::Unauthorized {
        return Err(state(
            &old.id,
            "only an unauthorized schedule can ask for authorization",
        ));
    }
    let mut new = old.clone();
    new.authorization_requested_at = Some(now);
    new.updated_at = now;
    Ok(new)
}

/// `old` cancelled: refused once it has finished. It leaves the due index at once.
pub(super) fn cancelled(
    old: &ScheduledScript,
    now: DateTime<Utc>,
) -> Result<ScheduledScript, StoreError> {
    if !matches!(
        old.status,
        ScheduleStatus::Unauthorized | ScheduleStatus::Scheduled | ScheduleStatus::Launched
    ) {
        return Err(state(&old.id, "is already finished"));
    }
    let mut new = old.clone();
    new.status = ScheduleStatus::Cancelled;
    new.cancelled_at = Some(now);
    new.next_launch_at = None;
    new.updated_at = now;
    Ok(new)
}

/// What a cancelled schedule's jobs that no runner started go through.
pub(super) fn cancel_transition() -> JobTransition {
    JobTransition::Fail {
        error: JobError {
            code: CANCELLED.into(),
            message: "the schedule was cancelled before this job started".into(),
        },
        output: None,
    }
}

/// The audit line of a new schedule (`schedule.created`).
pub(super) fn created_audit(schedule: &ScheduledScript) -> AuditInput {
    AuditInput {
        at: schedule.created_at,
        organization: schedule.organization.clone(),
        actor: schedule.created_by.clone(),
        action: AUDIT_CREATED.into(),
        target: schedule.id.clone(),
        detail: json!({
            "description": schedule.description,
            "version": schedule.version,
            "script_sha256": script_digest(&schedule.script),
            "sites": schedule.sites,
            "tags": schedule.tags,
            "excluded_sites": schedule.excluded_sites,
            "test_site_id": schedule.test_site_id,
            "acknowledged_risks": schedule.acknowledged_risks,
        }),
    }
}

/// The audit line of a deletion by `by` (`schedule.deleted`); a launched schedule is
/// refused: it is cancelled first.
pub(super) fn deletion_audit(
    old: &ScheduledScript,
    by: &str,
    now: DateTime<Utc>,
) -> Result<AuditInput, StoreError> {
    if old.status == ScheduleStatus::Launched {
        return Err(state(
            &old.id,
            "cannot be deleted while launched; cancel it first",
        ));
    }
    Ok(AuditInput {
        at: now,
        organization: old.organization.clone(),
        actor: by.to_owned(),
        action: AUDIT_DELETED.into(),
        target: old.id.clone(),
        detail: json!({
            "description": old.description,
            "status": old.status,
            "version": old.version,
        }),
    })
}

/// Counts a finished job of a run, and settles the run (and a schedule with no further
/// occurrence) when it was the last.
pub(crate) fn record_outcome(
    tx: &WriteTransaction,
    origin: &JobOrigin,
    job: &Job,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    let key = (origin.schedule_id.as_str(), origin.occurrence);
    let bytes = tx.open_table(RUNS)?.get(key)?.map(|b| b.value().to_vec());
    let Some(bytes) = bytes else { return Ok(()) };
    let mut run: Run = decode("run", &origin.schedule_id, &bytes)?;
    if count_outcome(&mut run, job) {
        let schedule = tx
            .open_table(SCHEDULES)?
            .get(origin.schedule_id.as_str())?
            .map(|b| b.value().to_vec());
        match schedule {
            Some(bytes) => {
                let old: ScheduledScript = decode(KIND, &origin.schedule_id, &bytes)?;
                let mut new = old.clone();
                finish_run(&mut run, &mut new, now);
                save(tx, Some(&old), &new)?;
            }
            // A deleted schedule keeps its runs; only the run is settled.
            None => settle(&mut run, now),
        }
        push_event(tx, EVENT_RUN_FINISHED, run_finished_payload(&run), now)?;
    }
    put_run(tx, &run)
}

/// Counts the outcome of `job` (a job of `run` that finished) in `run`; `true` when it
/// was the last the run waited for, and the caller settles the run (with its schedule,
/// [`finish_run`], or alone when the schedule is gone, [`settle`]).
pub(super) fn count_outcome(run: &mut Run, job: &Job) -> bool {
    run.pending = run.pending.saturating_sub(1);
    match job.status {
        JobStatus::Completed => run.completed += 1,
        JobStatus::Failed if job.error.as_ref().is_some_and(|e| e.code == SKIPPED) => {
            run.skipped += 1
        }
        _ => run.failed += 1,
    }
    run.pending == 0 && !run.awaiting_batches && run.finished_at.is_none()
}

/// The event a run that settled announces.
pub(super) const EVENT_RUN_FINISHED: &str = "script.run_finished";

pub(super) fn run_finished_payload(run: &Run) -> serde_json::Value {
    json!({
        "schedule_id": run.schedule_id,
        "occurrence": run.occurrence,
        "status": run.status,
        "completed": run.completed,
        "failed": run.failed,
        "skipped": run.skipped,
    })
}

pub(super) fn settle(run: &mut Run, now: DateTime<Utc>) {
    run.finished_at = Some(now);
    run.status = if run.failed == 0 {
        RunStatus::Completed
    } else if run.completed == 0 {
        RunStatus::Failed
    } else {
        RunStatus::PartiallyFailed
    };
}

/// Settles the run, and a launched schedule with no occurrence after it takes the run's outcome.
pub(super) fn finish_run(run: &mut Run, schedule: &mut ScheduledScript, now: DateTime<Utc>) {
    settle(run, now);
    if schedule.status == ScheduleStatus::Launched && schedule.next_launch_at.is_none() {
        schedule.status = match run.status {
            RunStatus::Completed | RunStatus::Launched => ScheduleStatus::Completed,
            RunStatus::Failed => ScheduleStatus::Failed,
            RunStatus::PartiallyFailed => ScheduleStatus::PartiallyFailed,
        };
        schedule.updated_at = now;
    }
}

/// Seq ids of the jobs one occurrence created, in site order.
/// The run of a schedule's latest occurrence, read from the end of its range, so a long
/// history costs nothing.
pub(crate) fn latest_run_in(
    runs: &impl ReadableTable<(&'static str, u64), &'static [u8]>,
    schedule_id: &str,
) -> Result<Option<Run>, StoreError> {
    match runs
        .range((schedule_id, 0)..=(schedule_id, u64::MAX))?
        .next_back()
    {
        Some(entry) => Ok(Some(decode("run", schedule_id, entry?.1.value())?)),
        None => Ok(None),
    }
}

fn occurrence_jobs(
    ledger: &impl ReadableTable<(&'static str, u64, &'static str), u64>,
    schedule_id: &str,
    occurrence: u64,
) -> Result<Vec<u64>, StoreError> {
    let from = (schedule_id, occurrence, "");
    let range = match occurrence.checked_add(1) {
        Some(next) => ledger.range(from..(schedule_id, next, ""))?,
        None => ledger.range(from..)?,
    };
    let mut out = Vec::new();
    for entry in range {
        let (key, seq) = entry?;
        let (schedule, occ, _) = key.value();
        if schedule != schedule_id || occ != occurrence {
            break;
        }
        out.push(seq.value());
    }
    Ok(out)
}

/// Seq ids of a schedule's jobs still pending or loaded, from its unfinished runs.
fn unstarted_jobs(tx: &WriteTransaction, schedule_id: &str) -> Result<Vec<u64>, StoreError> {
    let runs = tx.open_table(RUNS)?;
    let ledger = tx.open_table(LEDGER)?;
    let jobs = JobTables::open(tx)?;
    let mut out = Vec::new();
    for entry in runs.range((schedule_id, 0)..=(schedule_id, u64::MAX))? {
        let run: Run = decode("run", schedule_id, entry?.1.value())?;
        if run.pending == 0 {
            continue;
        }
        for seq in occurrence_jobs(&ledger, schedule_id, run.occurrence)? {
            if matches!(
                jobs.get(seq)?.status,
                JobStatus::Pending | JobStatus::Loaded
            ) {
                out.push(seq);
            }
        }
    }
    Ok(out)
}

fn put_run(tx: &WriteTransaction, run: &Run) -> Result<(), StoreError> {
    let bytes = encode("run", &run.schedule_id, run)?;
    tx.open_table(RUNS)?
        .insert((run.schedule_id.as_str(), run.occurrence), bytes.as_slice())?;
    Ok(())
}

/// Audit actions of a schedule's own life; the approval workflow audits its decisions.
pub const AUDIT_CREATED: &str = "script.created";
pub const AUDIT_UPDATED: &str = "script.updated";
pub const AUDIT_DELETED: &str = "script.deleted";
/// A launch found that what runs is no longer what was approved; the schedule is back
/// to `unauthorized`, and its approvers are told why.
pub const EVENT_APPROVAL_VOIDED: &str = "script.approval_voided";

/// Fields of a schedule that its approval covers: changing one needs a new approval.
const BOUND_FIELDS: &[&str] = &[
    "script",
    "sites",
    "tags",
    "excluded_sites",
    "launch_at",
    "recurrence",
    "test_site_id",
    "missed_runs",
    "rollout",
    "make_backup",
    "abort_if_offline",
    "acknowledged_risks",
    "rollback_after",
];

/// Why an authorization was refused without anything being written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// The approver created or edited what the approval covers.
    OwnWork,
    /// The presented link does not approve.
    Token(TokenRejection),
}

/// The names of the fields that differ between two versions of a schedule.
fn changed_fields(old: &ScheduledScript, new: &ScheduledScript) -> Vec<&'static str> {
    let mut out = Vec::new();
    let mut check = |name: &'static str, differs: bool| {
        if differs {
            out.push(name);
        }
    };
    check("description", old.description != new.description);
    check("script", old.script != new.script);
    check("sites", old.sites != new.sites);
    check("tags", old.tags != new.tags);
    check("excluded_sites", old.excluded_sites != new.excluded_sites);
    check("launch_at", old.launch_at != new.launch_at);
    check("recurrence", old.recurrence != new.recurrence);
    check("test_site_id", old.test_site_id != new.test_site_id);
    check("missed_runs", old.missed_runs != new.missed_runs);
    check("rollout", old.rollout != new.rollout);
    check("make_backup", old.make_backup != new.make_backup);
    check(
        "abort_if_offline",
        old.abort_if_offline != new.abort_if_offline,
    );
    check(
        "rollback_after",
        old.rollback_after_secs != new.rollback_after_secs,
    );
    check("notify", old.notify != new.notify);
    check("summary", old.summary != new.summary);
    check(
        "acknowledged_risks",
        old.acknowledged_risks != new.acknowledged_risks,
    );
    out
}

/// Whether `user` created the schedule or edited what its approval covers.
fn shaped_by(s: &ScheduledScript, user: &str) -> bool {
    s.created_by == user || s.editors.iter().any(|e| e == user)
}

/// Takes a schedule back to `unauthorized`, its approval and next launch gone.
fn void_approval(s: &mut ScheduledScript) {
    s.status = ScheduleStatus::Unauthorized;
    s.authorization_requested_at = None;
    s.authorized_at = None;
    s.authorized_by = None;
    s.approval = None;
    s.approved_targets = None;
    s.next_launch_at = None;
}

/// Resolves a schedule's targets in a write transaction.
fn resolve_in(tx: &WriteTransaction, s: &ScheduledScript) -> Result<Targets, StoreError> {
    targets::resolve(
        &tx.open_table(SITES)?,
        &tx.open_multimap_table(SITES_BY_TAG)?,
        s,
    )
}

/// Voids the approval of a schedule whose launch found its targets changed: back to
/// `unauthorized`, audited, and announced to whoever approved it and its recipients,
/// with the differences. Returns them.
fn void_at_launch(
    tx: &WriteTransaction,
    old: &ScheduledScript,
    now_targets: &Targets,
    now: DateTime<Utc>,
) -> Result<Vec<String>, StoreError> {
    let void = voided(old, now_targets, now);
    save(tx, Some(old), &void.schedule)?;
    push_audit(tx, void.audit)?;
    push_event(tx, EVENT_APPROVAL_VOIDED, void.event, now)?;
    Ok(void.reasons)
}

/// A schedule whose approval a launch found void, as either store writes it.
pub(super) struct Voided {
    /// Back to `unauthorized`, its approval and next launch gone.
    pub(super) schedule: ScheduledScript,
    /// How the targets differ from those approved, in words an approver can act on.
    pub(super) reasons: Vec<String>,
    pub(super) audit: AuditInput,
    /// The payload of the [`EVENT_APPROVAL_VOIDED`] event, naming whoever approved it
    /// and its recipients.
    pub(super) event: serde_json::Value,
}

/// What voiding `old`'s approval writes, given the targets found at launch.
pub(super) fn voided(old: &ScheduledScript, now_targets: &Targets, now: DateTime<Utc>) -> Voided {
    let mut reasons = match &old.approved_targets {
        Some(approved) => targets::differences(approved, now_targets),
        None => Vec::new(),
    };
    if reasons.is_empty() {
        reasons.push("what runs is no longer what was approved".to_owned());
    }
    let mut schedule = old.clone();
    void_approval(&mut schedule);
    schedule.updated_at = now;
    let mut recipients: Vec<String> = old.authorized_by.iter().cloned().collect();
    for user in &old.notify {
        if !recipients.contains(user) {
            recipients.push(user.clone());
        }
    }
    let audit = AuditInput {
        at: now,
        organization: old.organization.clone(),
        actor: "engine".into(),
        action: EVENT_APPROVAL_VOIDED.into(),
        target: old.id.clone(),
        detail: json!({"approval": old.approval, "reasons": reasons}),
    };
    let event = json!({
        "schedule_id": old.id,
        "organization": old.organization,
        "description": old.description,
        "authorized_by": old.authorized_by,
        "approval": old.approval,
        "reasons": reasons,
        "recipients": recipients,
    });
    Voided {
        schedule,
        reasons,
        audit,
        event,
    }
}

/// Whether `plan` may launch `old` with the targets as they resolve now: `false` when
/// they no longer hash to its approval (the caller voids it); an error when the schedule
/// is not scheduled, the plan carries another approval, or names a site the approval
/// does not cover. The same checks in either store, in the transaction that launches.
pub(super) fn still_approved(
    old: &ScheduledScript,
    plan: &LaunchPlan,
    targets: &Targets,
) -> Result<bool, StoreError> {
    if !matches!(
        old.status,
        ScheduleStatus::Scheduled | ScheduleStatus::Launched
    ) {
        return Err(state(
            &plan.schedule_id,
            format!("is {:?}, not scheduled", old.status).to_lowercase(),
        ));
    }
    if old.approval.as_deref() != Some(plan.approval.as_str()) {
        return Err(state(
            &plan.schedule_id,
            "its approval does not cover this launch",
        ));
    }
    if crate::approval::approval_hash(old, targets) != plan.approval {
        return Ok(false);
    }
    let covered =
        |site: &String| targets.sites.contains(site) || old.test_site_id.as_ref() == Some(site);
    if let Some(site) = plan.sites.iter().find(|s| !covered(s)) {
        return Err(state(
            &plan.schedule_id,
            format!("site {site} is not among the targets its approval covers"),
        ));
    }
    Ok(true)
}

/// The job a launch of `schedule` creates on `site`, numbered `seq`, bound to the
/// endpoint the approval covered.
pub(super) fn launch_job(
    schedule: &ScheduledScript,
    plan: &LaunchPlan,
    targets: &Targets,
    site: &str,
    seq: u64,
    now: DateTime<Utc>,
) -> Job {
    let input = JobInput {
        organization: schedule.organization.clone(),
        site_id: site.to_owned(),
        request_id: None,
        idempotency_key: None,
        description: schedule
            .description
            .chars()
            .take(MAX_JOB_DESCRIPTION_CHARS)
            .collect(),
        script: schedule.script.clone(),
        make_backup: schedule.make_backup,
        express_execute: true,
        needs_acknowledgement: true,
        notify_url: None,
        rollback_after_secs: schedule.rollback_after_secs,
        script_origin: None,
    };
    let origin = JobOrigin {
        schedule_id: plan.schedule_id.clone(),
        occurrence: plan.occurrence,
    };
    let mut job = new_job(input, seq, Some(origin), now);
    job.endpoint = targets
        .endpoints
        .iter()
        .find(|e| e.site_id == site)
        .map(Endpoint::digest);
    job
}

/// `old` once `plan` launched `added` jobs of its occurrence: launched, with its next
/// launch moved; `run` counts the jobs, and is settled (with the schedule, when no
/// occurrence follows) when nothing is left to run.
pub(super) fn launched(
    old: &ScheduledScript,
    run: &mut Run,
    plan: &LaunchPlan,
    added: u64,
    now: DateTime<Utc>,
) -> ScheduledScript {
    run.total += added;
    run.pending += added;
    run.awaiting_batches = plan.more_batches;
    let mut new = old.clone();
    new.status = ScheduleStatus::Launched;
    new.started_at = old.started_at.or(Some(now));
    new.next_launch_at = plan.next_launch_at;
    new.updated_at = now;
    if run.pending == 0 && !run.awaiting_batches && run.finished_at.is_none() {
        finish_run(run, &mut new, now);
    }
    new
}

/// The event a launch that created jobs announces.
pub(super) const EVENT_LAUNCHED: &str = "script.launched";

pub(super) fn launched_payload(plan: &LaunchPlan, added: u64) -> serde_json::Value {
    json!({"schedule_id": plan.schedule_id, "occurrence": plan.occurrence, "jobs": added})
}

/// Hex sha256 of a script, for audit lines that must not copy it.
fn script_digest(script: &str) -> String {
    use sha2::{Digest, Sha256};
    hex::encode(Sha256::digest(script.as_bytes()))
}

fn state(id: &str, reason: impl Into<String>) -> StoreError {
    StoreError::ScheduleState {
        id: id.to_owned(),
        reason: reason.into(),
    }
}

fn claim_name(
    tx: &WriteTransaction,
    organization: &str,
    name: &str,
    id: &str,
) -> Result<(), StoreError> {
    let mut names = tx.open_table(SCHEDULE_NAMES)?;
    if names.get((organization, name))?.is_some() {
        return Err(StoreError::ScheduleNameTaken {
            name: name.to_owned(),
        });
    }
    names.insert((organization, name), id)?;
    Ok(())
}

fn get(tx: &WriteTransaction, id: &str) -> Result<ScheduledScript, StoreError> {
    let bytes = tx
        .open_table(SCHEDULES)?
        .get(id)?
        .map(|b| b.value().to_vec());
    match bytes {
        Some(bytes) => decode(KIND, id, &bytes),
        None => Err(StoreError::not_found(KIND, id)),
    }
}

pub(super) fn due_key(s: &ScheduledScript) -> Option<i64> {
    match s.status {
        ScheduleStatus::Scheduled | ScheduleStatus::Launched => s.next_launch_at.map(millis),
        _ => None,
    }
}

fn unindex_due(tx: &WriteTransaction, s: &ScheduledScript) -> Result<(), StoreError> {
    if let Some(at) = due_key(s) {
        tx.open_table(SCHEDULES_DUE)?.remove((at, s.id.as_str()))?;
    }
    Ok(())
}

/// A new schedule from its input, checked (fields and lint policy), not yet stored.
pub(super) fn new_schedule(
    mut input: ScheduleInput,
    now: DateTime<Utc>,
) -> Result<ScheduledScript, StoreError> {
    input.validate()?;
    crate::lint::policy::normalize(&mut input.acknowledged_risks);
    crate::lint::policy::check(&input.script, &input.acknowledged_risks)?;
    Ok(ScheduledScript {
        id: new_id(),
        organization: input.organization,
        description: input.description,
        script: input.script,
        sites: input.sites,
        tags: input.tags,
        excluded_sites: input.excluded_sites,
        launch_at: input.launch_at,
        recurrence: input.recurrence,
        make_backup: input.make_backup,
        abort_if_offline: input.abort_if_offline,
        test_site_id: input.test_site_id,
        notify: input.notify,
        summary: input.summary,
        status: ScheduleStatus::Unauthorized,
        editors: vec![input.created_by.clone()],
        updated_by: None,
        version: 1,
        created_by: input.created_by,
        authorization_requested_at: None,
        authorized_at: None,
        authorized_by: None,
        approval: None,
        approved_targets: None,
        cancelled_at: None,
        started_at: None,
        next_launch_at: None,
        missed_runs: input.missed_runs,
        rollout: input.rollout,
        acknowledged_risks: input.acknowledged_risks,
        origin: input.origin,
        rollback_after_secs: input.rollback_after_secs,
        created_at: now,
        updated_at: now,
    })
}

/// Stores a new schedule with its name, index entries, summary task and audit line.
fn insert_schedule(
    tx: &WriteTransaction,
    schedule: ScheduledScript,
    now: DateTime<Utc>,
) -> Result<ScheduledScript, StoreError> {
    claim_name(
        tx,
        &schedule.organization,
        &schedule.description,
        &schedule.id,
    )?;
    tx.open_multimap_table(SCHEDULES_BY_ORG)?
        .insert(schedule.organization.as_str(), schedule.id.as_str())?;
    save(tx, None, &schedule)?;
    super::queue_summary(
        tx,
        super::SummaryOf::Schedule,
        &schedule.id,
        &schedule.script,
        now,
    )?;
    push_audit(tx, created_audit(&schedule))?;
    Ok(schedule)
}

/// Writes a schedule and moves its due-index and listing entries from where `old` had
/// them.
fn save(
    tx: &WriteTransaction,
    old: Option<&ScheduledScript>,
    new: &ScheduledScript,
) -> Result<(), StoreError> {
    if let Some(old) = old {
        unindex_due(tx, old)?;
    }
    if let Some(at) = due_key(new) {
        tx.open_table(SCHEDULES_DUE)?
            .insert((at, new.id.as_str()), ())?;
    }
    super::listing::reindex(tx, old, Some(new))?;
    let bytes = encode(KIND, &new.id, new)?;
    tx.open_table(SCHEDULES)?
        .insert(new.id.as_str(), bytes.as_slice())?;
    Ok(())
}

fn as_input(s: &ScheduledScript) -> ScheduleInput {
    ScheduleInput {
        organization: s.organization.clone(),
        description: s.description.clone(),
        script: s.script.clone(),
        sites: s.sites.clone(),
        tags: s.tags.clone(),
        excluded_sites: s.excluded_sites.clone(),
        launch_at: s.launch_at,
        recurrence: s.recurrence.clone(),
        make_backup: s.make_backup,
        abort_if_offline: s.abort_if_offline,
        test_site_id: s.test_site_id.clone(),
        notify: s.notify.clone(),
        summary: s.summary.clone(),
        missed_runs: s.missed_runs,
        rollout: s.rollout,
        acknowledged_risks: s.acknowledged_risks.clone(),
        origin: s.origin.clone(),
        rollback_after_secs: s.rollback_after_secs,
        created_by: s.created_by.clone(),
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::store::records::{
        JobError, JobTransition, MissedRunPolicy, Recurrence, RecurrenceKind,
    };
    use crate::store::test_support::{open, t};

    pub(crate) fn input(org: &str, name: &str) -> ScheduleInput {
        ScheduleInput {
            organization: org.into(),
            description: name.into(),
            script: "/routing bgp peer disable [find name=peer1]".into(),
            sites: vec!["site-a".into(), "site-b".into(), "site-c".into()],
            launch_at: Some(t(3600)),
            make_backup: true,
            abort_if_offline: true,
            notify: vec!["auth0|5f9d4b3c2e1a0b006f8b4c5d".into()],
            created_by: "auth0|creator".into(),
            ..ScheduleInput::default()
        }
    }

    pub(crate) fn plan(s: &ScheduledScript, occurrence: u64, sites: &[&str]) -> LaunchPlan {
        LaunchPlan {
            schedule_id: s.id.clone(),
            occurrence,
            scheduled_for: t(3600),
            approval: s.approval.clone().unwrap_or_default(),
            sites: sites.iter().map(|s| (*s).to_owned()).collect(),
            more_batches: false,
            next_launch_at: None,
        }
    }

    pub(crate) fn authorized(store: &Store, name: &str) -> ScheduledScript {
        let s = store
            .create_schedule(input("org1", name), t(0))
            .expect("create");
        authorize(store, &s.id, "auth0|approver", Some(t(3600)), t(1)).expect("authorize")
    }

    /// A decision with an empty audit line, for store-level tests of the state changes.
    pub(crate) fn decision(event: &'static str) -> Decision {
        Decision {
            audit: crate::store::AuditInput {
                at: t(0),
                organization: "org1".into(),
                actor: "test".into(),
                action: event.into(),
                target: "test".into(),
                detail: json!({}),
            },
            event,
            payload: json!({"event": event}),
        }
    }

    /// Authorizes a schedule as it stands, as the approval workflow would.
    pub(crate) fn authorize(
        store: &Store,
        id: &str,
        by: &str,
        next_launch_at: Option<DateTime<Utc>>,
        now: DateTime<Utc>,
    ) -> Result<ScheduledScript, StoreError> {
        let (approval, _) = store.approval_binding(&store.get_schedule(id)?)?;
        let decided = store.authorize_schedule(
            id,
            by,
            &approval,
            false,
            next_launch_at,
            None,
            decision("script.authorized"),
            now,
        )?;
        Ok(decided.expect("no token was presented, and the approver did not write it"))
    }

    fn token(store: &Store, schedule: &ScheduledScript, digest: &str) -> ApprovalToken {
        ApprovalToken {
            digest: digest.into(),
            schedule_id: schedule.id.clone(),
            organization: schedule.organization.clone(),
            approval: store.approval_binding(schedule).expect("binding").0,
            requested_by: schedule.created_by.clone(),
            recipient: Some("auth0|approver".into()),
            created_at: t(0),
            expires_at: t(100),
            used_at: None,
            used_by: None,
        }
    }

    #[test]
    fn the_lint_policy_is_checked_on_create_and_on_edits_of_the_script_or_its_risks() {
        use crate::lint::policy::PolicyError;
        let (_dir, store) = open();
        let mut bad = input("org1", "Broken");
        bad.script = ":log info ok\n:put (1".into();
        let err = store.create_schedule(bad, t(0)).expect_err("syntax");
        assert!(
            matches!(
                err,
                StoreError::LintPolicy(PolicyError::Syntax { line: 2, .. })
            ),
            "{err}"
        );
        let mut risky = input("org1", "Reset");
        risky.script = "/system reset-configuration".into();
        let err = store
            .create_schedule(risky.clone(), t(0))
            .expect_err("unacknowledged");
        assert!(matches!(
            err,
            StoreError::LintPolicy(PolicyError::Unacknowledged { .. })
        ));
        risky.acknowledged_risks = vec!["factory-reset".into(), "factory-reset".into()];
        let s = store.create_schedule(risky, t(0)).expect("acknowledged");
        assert_eq!(s.acknowledged_risks, ["factory-reset"]);

        // An edit of the script is checked against the list as it stands, and back.
        let edit = |patch: SchedulePatch| store.update_schedule(&s.id, patch, "auth0|editor", t(5));
        let err = edit(SchedulePatch {
            script: Some(":log info benign".into()),
            ..SchedulePatch::default()
        })
        .expect_err("the list names a risk the script no longer has");
        assert!(matches!(
            err,
            StoreError::LintPolicy(PolicyError::NotInScript { .. })
        ));
        let err = edit(SchedulePatch {
            acknowledged_risks: Some(Vec::new()),
            ..SchedulePatch::default()
        })
        .expect_err("the reset is no longer acknowledged");
        assert!(matches!(
            err,
            StoreError::LintPolicy(PolicyError::Unacknowledged { .. })
        ));
        let edited = edit(SchedulePatch {
            script: Some(":log info benign".into()),
            acknowledged_risks: Some(Vec::new()),
            ..SchedulePatch::default()
        })
        .expect("both at once");
        assert!(edited.acknowledged_risks.is_empty());
        assert_eq!(edited.version, 2);
        assert!(edited.editors.iter().any(|e| e == "auth0|editor"));
    }

    #[test]
    fn a_schedule_stored_before_the_policy_is_held_to_it_before_approval() {
        use crate::approval::{ApprovalError, OrgPolicy, Principal};
        let (_dir, store) = open();
        let s = store
            .create_schedule(input("org1", "Legacy"), t(0))
            .expect("create");
        // Written as an engine without the lint policy would have kept it.
        store
            .write(|tx| {
                let old = get(tx, &s.id)?;
                let mut new = old.clone();
                new.script = "/system reset-configuration".into();
                save(tx, Some(&old), &new)
            })
            .expect("legacy record");
        let who = |user: &str| Principal {
            user_id: user.into(),
            organization: "org1".into(),
            scopes: vec!["script:update".into(), "script:authorize".into()],
        };
        // An edit that leaves the script alone is not refused for it.
        store
            .update_schedule(
                &s.id,
                SchedulePatch {
                    summary: Some(Some("resets".into())),
                    ..SchedulePatch::default()
                },
                "auth0|creator",
                t(1),
            )
            .expect("summary");
        let err = crate::approval::request(
            &store,
            &s.id,
            &who("auth0|creator"),
            t(2),
            chrono::TimeDelta::hours(1),
        )
        .expect_err("not sent for approval");
        assert!(matches!(err, ApprovalError::Policy(_)), "{err}");
        assert_eq!(err.http_status(), 422);
        let err = crate::approval::approve(
            &store,
            &s.id,
            &who("auth0|approver"),
            None,
            OrgPolicy::default(),
            t(3),
        )
        .expect_err("not approved");
        assert!(matches!(err, ApprovalError::Policy(_)), "{err}");
        store
            .update_schedule(
                &s.id,
                SchedulePatch {
                    acknowledged_risks: Some(vec!["factory-reset".into()]),
                    ..SchedulePatch::default()
                },
                "auth0|creator",
                t(4),
            )
            .expect("acknowledged");
        let requested = crate::approval::request(
            &store,
            &s.id,
            &who("auth0|creator"),
            t(5),
            chrono::TimeDelta::hours(1),
        )
        .expect("requested");
        let event = store.get_event(requested.event_id).expect("event");
        assert_eq!(
            event.payload["acknowledged_risks"],
            json!(["factory-reset"])
        );
        assert_eq!(event.payload["findings"][0]["rule"], "factory-reset");
        assert_eq!(event.payload["findings"][0]["line"], 1);
        crate::approval::approve(
            &store,
            &s.id,
            &who("auth0|approver"),
            None,
            OrgPolicy::default(),
            t(6),
        )
        .expect("approved");
    }

    #[test]
    fn schedule_round_trip_with_recurrence() {
        let (dir, store) = open();
        let mut i = input("org1", "Nightly BGP peer maintenance");
        i.recurrence = Some(Recurrence {
            kind: RecurrenceKind::Weekly,
            interval: Some(1),
            days_of_week: vec![chrono::Weekday::Mon, chrono::Weekday::Thu],
            day_of_month: None,
            start_date: chrono::NaiveDate::from_ymd_opt(2027, 1, 1).expect("date"),
            end_date: chrono::NaiveDate::from_ymd_opt(2027, 6, 30),
            start_time: chrono::NaiveTime::from_hms_opt(4, 0, 0).expect("time"),
            timezone: "Europe/Berlin".into(),
        });
        i.missed_runs = MissedRunPolicy::RunOnce;
        i.test_site_id = Some("site-a".into());
        let s = store.create_schedule(i, t(0)).expect("create");
        assert_eq!(s.status, ScheduleStatus::Unauthorized);
        drop(store);
        let store = Store::open(dir.path()).expect("reopen");
        assert_eq!(store.get_schedule(&s.id).expect("get"), s);
        let json = serde_json::to_value(&s).expect("json");
        assert_eq!(json["recurrence"]["kind"], "WEEKLY");
        assert_eq!(json["status"], "unauthorized");
        assert_eq!(json["missed_runs"], "run_once");
        assert_eq!(
            store
                .list_schedules("org1", &Page::first(10))
                .expect("list"),
            vec![s]
        );
        assert!(
            store
                .list_schedules("org2", &Page::first(10))
                .expect("list")
                .is_empty()
        );
    }

    #[test]
    fn names_are_unique_per_organization() {
        let (_dir, store) = open();
        let s = store
            .create_schedule(input("org1", "Weekly firewall rule update"), t(0))
            .expect("create");
        let err = store
            .create_schedule(input("org1", "Weekly firewall rule update"), t(1))
            .expect_err("dup");
        assert_eq!(
            err.to_string(),
            "A schedule with the same name already exists: Weekly firewall rule update"
        );
        assert!(err.is_conflict());
        store
            .create_schedule(input("org2", "Weekly firewall rule update"), t(1))
            .expect("other org");
        let other = store
            .create_schedule(input("org1", "other"), t(1))
            .expect("create");
        let rename = SchedulePatch {
            description: Some("Weekly firewall rule update".into()),
            ..Default::default()
        };
        assert!(matches!(
            store.update_schedule(&other.id, rename, "u1", t(2)),
            Err(StoreError::ScheduleNameTaken { .. })
        ));
        let rename = SchedulePatch {
            description: Some("renamed".into()),
            ..Default::default()
        };
        store
            .update_schedule(&s.id, rename, "u1", t(2))
            .expect("rename");
        store
            .create_schedule(input("org1", "Weekly firewall rule update"), t(3))
            .expect("old name free");
    }

    #[test]
    fn a_rollout_is_validated_and_changing_it_needs_a_new_approval() {
        let (_dir, store) = open();
        let mut bad = input("org1", "bad rollout");
        bad.rollout.halt_failure_percent = Some(0);
        let err = store.create_schedule(bad, t(0)).expect_err("0%");
        assert!(
            err.to_string().contains("rollout.halt_failure_percent"),
            "{err}"
        );

        let s = authorized(&store, "s1");
        let rollout = crate::store::Rollout {
            canary: 2,
            halt_failure_percent: Some(25),
            halt_min_finished: 4,
            max_concurrency: Some(8),
        };
        let patch = SchedulePatch {
            rollout: Some(rollout),
            ..Default::default()
        };
        let s2 = store
            .update_schedule(&s.id, patch, "u1", t(2))
            .expect("edit");
        assert_eq!(s2.status, ScheduleStatus::Unauthorized);
        assert_eq!(s2.rollout, rollout);
        let options = crate::runner::fanout::RunOptions::for_schedule(&s2);
        assert_eq!(
            (
                options.canary,
                options.halt_min_finished,
                options.max_concurrency
            ),
            (2, 4, Some(8))
        );
        assert_eq!(options.halt_failure_rate, Some(0.25));
    }

    #[test]
    fn editing_what_runs_resets_authorization_and_leaves_the_due_index() {
        let (_dir, store) = open();
        let none = std::collections::HashSet::new();
        assert_eq!(store.next_due_at(&none).expect("next"), None);
        let s = authorized(&store, "s1");
        assert_eq!(s.status, ScheduleStatus::Scheduled);
        // The launcher wakes for the one schedule that may launch, at its time, unless
        // it is launching it already.
        assert_eq!(store.next_due_at(&none).expect("next"), Some(t(3600)));
        let busy = std::collections::HashSet::from([s.id.clone()]);
        assert_eq!(store.next_due_at(&busy).expect("next"), None);
        assert_eq!(store.due_schedules(t(3600), 10).expect("due").len(), 1);
        assert!(
            store
                .due_schedules(t(3599), 10)
                .expect("not yet")
                .is_empty()
        );

        let cosmetic = SchedulePatch {
            summary: Some(Some("Disables a peer".into())),
            ..Default::default()
        };
        let s2 = store
            .update_schedule(&s.id, cosmetic, "u1", t(2))
            .expect("summary");
        assert_eq!(
            s2.status,
            ScheduleStatus::Scheduled,
            "a summary does not change what runs"
        );

        let edit = SchedulePatch {
            script: Some(":log info changed".into()),
            ..Default::default()
        };
        let s3 = store
            .update_schedule(&s.id, edit, "u1", t(3))
            .expect("edit");
        assert_eq!(s3.status, ScheduleStatus::Unauthorized);
        assert_eq!(
            (s3.authorized_at, s3.approval, s3.next_launch_at),
            (None, None, None)
        );
        assert!(store.due_schedules(t(9999), 10).expect("due").is_empty());
        assert!(
            store.launch(plan(&s, 0, &["site-a"]), t(3600)).is_err(),
            "the old approval is void"
        );

        let retarget = SchedulePatch {
            sites: Some(vec!["site-z".into()]),
            ..Default::default()
        };
        let s4 = authorize(&store, &s.id, "u2", Some(t(10)), t(4)).expect("again");
        assert_eq!(s4.status, ScheduleStatus::Scheduled);
        assert_eq!(
            store
                .update_schedule(&s.id, retarget, "u1", t(5))
                .expect("targets")
                .status,
            ScheduleStatus::Unauthorized
        );
    }

    #[test]
    fn authorization_request_emits_an_event_and_cancel_is_final() {
        let (_dir, store) = open();
        let s = store
            .create_schedule(input("org1", "s1"), t(0))
            .expect("create");
        let (_, event_id) = store
            .request_authorization(
                &s.id,
                &[token(&store, &s, "d1")],
                decision("script.authorization_requested"),
                t(1),
            )
            .expect("request");
        let events = store.due_events(t(1), 10).expect("events");
        assert_eq!(
            (events[0].id, events[0].kind.as_str()),
            (event_id, "script.authorization_requested")
        );
        // Its creation and the request.
        assert_eq!(store.list_audit(&Page::first(10)).expect("audit").len(), 2);

        // An edit between the caller's read and the commit: refused, nothing written,
        // and the link is not used up.
        let stale = store.approval_binding(&s).expect("binding").0;
        store
            .update_schedule(
                &s.id,
                SchedulePatch {
                    script: Some(":log info edited".into()),
                    ..Default::default()
                },
                "u1",
                t(1),
            )
            .expect("edit");
        let refused = store.authorize_schedule(
            &s.id,
            "auth0|approver",
            &stale,
            false,
            Some(t(50)),
            Some("d1"),
            decision("script.authorized"),
            t(2),
        );
        assert!(
            matches!(refused, Err(StoreError::ScheduleState { .. })),
            "{refused:?}"
        );
        // And the edit; the refused approval wrote nothing.
        assert_eq!(store.list_audit(&Page::first(10)).expect("audit").len(), 3);

        // The link was issued for the old version: it does not approve the new one.
        let current = store
            .approval_binding(&store.get_schedule(&s.id).expect("s"))
            .expect("binding")
            .0;
        let by_link = store
            .authorize_schedule(
                &s.id,
                "auth0|approver",
                &current,
                false,
                Some(t(50)),
                Some("d1"),
                decision("script.authorized"),
                t(2),
            )
            .expect("store");
        assert_eq!(by_link.err(), Some(Refusal::Token(TokenRejection::Stale)));
        assert_eq!(
            store.get_schedule(&s.id).expect("s").status,
            ScheduleStatus::Unauthorized
        );

        authorize(&store, &s.id, "auth0|approver", Some(t(50)), t(2)).expect("authorize");
        assert!(
            authorize(&store, &s.id, "x", None, t(3)).is_err(),
            "already authorized"
        );
        let c = store
            .cancel_schedule(&s.id, decision("script.cancelled"), t(4))
            .expect("cancel");
        assert_eq!(
            (c.status, c.cancelled_at),
            (ScheduleStatus::Cancelled, Some(t(4)))
        );
        assert!(store.due_schedules(t(100), 10).expect("due").is_empty());
        assert!(
            store
                .cancel_schedule(&s.id, decision("script.cancelled"), t(5))
                .is_err()
        );
        assert!(
            store
                .update_schedule(&s.id, SchedulePatch::default(), "u1", t(5))
                .is_err()
        );
        assert!(
            store.launch(plan(&c, 0, &["site-a"]), t(6)).is_err(),
            "a cancelled schedule never launches"
        );
        store.delete_schedule(&s.id, "u1", t(6)).expect("delete");
        assert!(matches!(
            store.get_schedule(&s.id),
            Err(StoreError::NotFound { .. })
        ));
    }

    #[test]
    fn unauthorized_schedules_never_launch() {
        let (_dir, store) = open();
        let s = store
            .create_schedule(input("org1", "s1"), t(0))
            .expect("create");
        let mut p = plan(&s, 0, &["site-a"]);
        p.approval = "forged".into();
        assert!(matches!(
            store.launch(p, t(1)),
            Err(StoreError::ScheduleState { .. })
        ));
        assert!(
            store
                .active_jobs(JobStatus::Pending, &Page::first(10))
                .expect("jobs")
                .is_empty()
        );
    }

    #[test]
    fn the_ledger_refuses_a_second_launch_even_across_reopen() {
        let (dir, store) = open();
        let s = authorized(&store, "s1");
        let first = store
            .launch(plan(&s, 7, &["site-a", "site-b", "site-a"]), t(3600))
            .expect("launch");
        assert_eq!(first.created.len(), 2, "a site named twice runs once");
        assert_eq!(first.run.total, 2);
        assert!(first.created.iter().all(|j| j.origin
            == Some(JobOrigin {
                schedule_id: s.id.clone(),
                occurrence: 7
            })));
        assert!(
            first
                .created
                .iter()
                .all(|j| j.make_backup && j.script == s.script)
        );
        let again = store
            .launch(plan(&s, 7, &["site-a", "site-b"]), t(3601))
            .expect("relaunch");
        assert!(again.created.is_empty());
        assert_eq!(again.already_launched.len(), 2);
        drop(store);

        let store = Store::open(dir.path()).expect("reopen");
        let after = store
            .launch(plan(&s, 7, &["site-a", "site-b", "site-c"]), t(3602))
            .expect("after reopen");
        assert_eq!(
            after.created.len(),
            1,
            "only the site never launched gets a job"
        );
        assert_eq!(after.created[0].site_id, "site-c");
        assert_eq!(after.run.total, 3);
        let ids: Vec<_> = after
            .already_launched
            .iter()
            .map(|(_, id)| id.clone())
            .collect();
        assert!(
            ids.iter()
                .all(|id| first.created.iter().any(|j| &j.id == id))
        );
        assert_eq!(
            store.ledger_entry(&s.id, 7, "site-a").expect("ledger"),
            Some(
                first
                    .created
                    .iter()
                    .find(|j| j.site_id == "site-a")
                    .expect("a")
                    .id
                    .clone()
            )
        );
        assert_eq!(
            store.ledger_entry(&s.id, 8, "site-a").expect("ledger"),
            None
        );
        let next = store
            .launch(plan(&s, 8, &["site-a"]), t(7200))
            .expect("next occurrence");
        assert_eq!(next.created.len(), 1, "another occurrence is another run");
        assert_eq!(
            store
                .list_runs(&s.id, &Page::first(10))
                .expect("runs")
                .len(),
            2
        );
        assert_eq!(
            store
                .jobs_for_site("site-a", &Page::first(10))
                .expect("jobs")
                .len(),
            2
        );
    }

    #[test]
    fn job_outcomes_settle_the_run_and_the_schedule() {
        let (_dir, store) = open();
        let s = authorized(&store, "s1");
        let launch = store
            .launch(plan(&s, 0, &["site-a", "site-b", "site-c"]), t(3600))
            .expect("launch");
        let launched = store.get_schedule(&s.id).expect("get");
        assert_eq!(launched.status, ScheduleStatus::Launched);
        assert_eq!(launched.started_at, Some(t(3600)));
        assert!(
            store.due_schedules(t(999_999), 10).expect("due").is_empty(),
            "no next launch"
        );

        let [a, b, c] = [&launch.created[0], &launch.created[1], &launch.created[2]];
        store
            .transition_job(&a.id, JobTransition::Start, t(3601))
            .expect("start");
        store
            .transition_job(&a.id, JobTransition::Complete { output: None }, t(3602))
            .expect("done");
        let fail = |code: &str| JobTransition::Fail {
            error: JobError {
                code: code.into(),
                message: "m".into(),
            },
            output: None,
        };
        store
            .transition_job(&b.id, fail(SKIPPED), t(3603))
            .expect("skip");
        let run = store.get_run(&s.id, 0).expect("run");
        assert_eq!(
            (run.completed, run.skipped, run.pending, run.status),
            (1, 1, 1, RunStatus::Launched)
        );
        store
            .transition_job(&c.id, fail("script_error"), t(3604))
            .expect("fail");
        let run = store.get_run(&s.id, 0).expect("run");
        assert_eq!(
            (run.failed, run.pending, run.status),
            (1, 0, RunStatus::PartiallyFailed)
        );
        assert_eq!(run.finished_at, Some(t(3604)));
        assert_eq!(
            store.get_schedule(&s.id).expect("get").status,
            ScheduleStatus::PartiallyFailed
        );
        let kinds: Vec<_> = store
            .due_events(t(999_999), 100)
            .expect("events")
            .into_iter()
            .map(|e| e.kind)
            .collect();
        assert!(
            kinds.contains(&"script.run_finished".to_owned()),
            "{kinds:?}"
        );
    }

    #[test]
    fn a_test_site_batch_does_not_finish_the_run() {
        let (_dir, store) = open();
        let s = authorized(&store, "s1");
        let mut canary = plan(&s, 0, &["site-a"]);
        canary.more_batches = true;
        let launch = store.launch(canary, t(3600)).expect("test site");
        let id = &launch.created[0].id;
        store
            .transition_job(id, JobTransition::Start, t(3601))
            .expect("start");
        store
            .transition_job(id, JobTransition::Complete { output: None }, t(3602))
            .expect("done");
        let run = store.get_run(&s.id, 0).expect("run");
        assert_eq!((run.pending, run.finished_at), (0, None));
        let fleet = store
            .launch(plan(&s, 0, &["site-a", "site-b"]), t(3603))
            .expect("fleet");
        assert_eq!(fleet.created.len(), 1, "the test site is not run twice");
        store
            .transition_job(&fleet.created[0].id, JobTransition::Start, t(3604))
            .expect("start");
        store
            .transition_job(
                &fleet.created[0].id,
                JobTransition::Complete { output: None },
                t(3605),
            )
            .expect("done");
        assert_eq!(
            store.get_run(&s.id, 0).expect("run").status,
            RunStatus::Completed
        );
        assert_eq!(
            store.get_schedule(&s.id).expect("get").status,
            ScheduleStatus::Completed
        );
    }

    #[test]
    fn cancelling_a_launched_schedule_fails_the_jobs_not_yet_started() {
        let (_dir, store) = open();
        let s = authorized(&store, "s1");
        let launch = store
            .launch(plan(&s, 0, &["site-a", "site-b", "site-c"]), t(3600))
            .expect("launch");
        let [a, b, c] = [&launch.created[0], &launch.created[1], &launch.created[2]];
        store
            .transition_job(&a.id, JobTransition::Start, t(3601))
            .expect("start");
        store
            .transition_job(&b.id, JobTransition::Load, t(3601))
            .expect("load");
        let cancelled = store
            .cancel_schedule(&s.id, decision("script.cancelled"), t(3602))
            .expect("cancel");
        assert_eq!(cancelled.status, ScheduleStatus::Cancelled);
        assert_eq!(
            store.get_job(&a.id).expect("a").status,
            JobStatus::Running,
            "a started job runs to its end"
        );
        for id in [&b.id, &c.id] {
            let job = store.get_job(id).expect("job");
            assert_eq!(job.status, JobStatus::Failed);
            assert_eq!(job.error.map(|e| e.code), Some(CANCELLED.to_owned()));
        }
        assert_eq!(store.get_run(&s.id, 0).expect("run").pending, 1);
        store
            .transition_job(&a.id, JobTransition::Complete { output: None }, t(3603))
            .expect("done");
        let run = store.get_run(&s.id, 0).expect("run");
        assert_eq!(
            (run.status, run.finished_at),
            (RunStatus::PartiallyFailed, Some(t(3603)))
        );
        assert_eq!(
            store.get_schedule(&s.id).expect("get").status,
            ScheduleStatus::Cancelled
        );
    }

    #[test]
    fn recurring_schedules_stay_due_after_a_launch() {
        let (_dir, store) = open();
        let s = authorized(&store, "s1");
        let mut p = plan(&s, 0, &["site-a"]);
        p.next_launch_at = Some(t(7200));
        let launch = store.launch(p, t(3600)).expect("launch");
        assert_eq!(store.due_schedules(t(7200), 10).expect("due")[0].id, s.id);
        store
            .transition_job(&launch.created[0].id, JobTransition::Start, t(3601))
            .expect("start");
        store
            .transition_job(
                &launch.created[0].id,
                JobTransition::Complete { output: None },
                t(3602),
            )
            .expect("done");
        assert_eq!(
            store.get_schedule(&s.id).expect("get").status,
            ScheduleStatus::Launched,
            "more occurrences follow"
        );
        store.set_next_launch(&s.id, None, t(3603)).expect("end");
        assert!(store.due_schedules(t(99_999), 10).expect("due").is_empty());
    }
}
