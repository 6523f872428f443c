//! A launch in PostgreSQL: an occurrence's jobs and their ledger entries in one
//! transaction, under the scheduler's fencing token.
//!
//! The ledger's `UNIQUE (schedule_id, occurrence, site_id)` decides which launch creates a
//! site's job: each entry is inserted `ON CONFLICT DO NOTHING` before its job, so of two
//! launches of the same occurrence (a retry, a second engine, a restart) one writes the
//! entry and the job, and the other waits for it to commit, finds the entry and reports
//! that site as already launched, as the redb store's `launch` does.
//!
//! Schedules and sites are still kept by the redb store: the caller passes the schedule
//! it read, and the launch checks that it may launch (its status, that its approval is
//! the plan's, that every site of the plan is among the targets the approval covered)
//! and takes each job's endpoint digest from those approved targets. What the redb
//! launch also does in its transaction, resolving the targets again from the sites as
//! they are now and moving the schedule's own status and next launch, waits for
//! schedules and sites to be kept here too; the runner still refuses a job whose site
//! is no longer reached as its endpoint digest says.

use super::changes::{Change, announce_in};
use chrono::{DateTime, Utc};

use super::jobs::{insert, take_seqs};
use super::leases::{SCHEDULER_LEASE, fence};
use super::{PgStore, big, col, decode, encode, pg};
use crate::store::error::StoreError;
use crate::store::jobs::new_job;
use crate::store::records::{
    JobInput, JobOrigin, MAX_JOB_DESCRIPTION_CHARS, MAX_TARGETS, Run, ScheduleStatus,
    ScheduledScript,
};
use crate::store::{Launch, LaunchPlan};

const KIND: &str = "schedule";

impl PgStore {
    /// Launches one batch of an occurrence of `schedule`: for every site of the plan with
    /// no ledger entry yet, a job and its entry; sites the occurrence already ran on are
    /// listed in [`Launch::already_launched`] with their job, and get nothing new.
    /// `token` is the scheduler lease's fencing token ([`PgStore::acquire_or_renew`]); a
    /// stale one is refused ([`StoreError::Fenced`]) and nothing is written.
    pub async fn launch(
        &self,
        plan: LaunchPlan,
        schedule: &ScheduledScript,
        token: u64,
        now: DateTime<Utc>,
    ) -> Result<Launch, StoreError> {
        if plan.sites.len() > MAX_TARGETS {
            return Err(StoreError::invalid(
                KIND,
                "sites",
                format!("at most {MAX_TARGETS} per launch"),
            ));
        }
        check_launchable(&plan, schedule)?;
        let occurrence = big("run", "occurrence", plan.occurrence)?;
        let mut sites = plan.sites.clone();
        sites.sort();
        sites.dedup();
        let origin = JobOrigin {
            schedule_id: plan.schedule_id.clone(),
            occurrence: plan.occurrence,
        };
        let description: String = schedule
            .description
            .chars()
            .take(MAX_JOB_DESCRIPTION_CHARS)
            .collect();
        let endpoints = schedule
            .approved_targets
            .as_ref()
            .map(|t| t.endpoints.as_slice())
            .unwrap_or_default();
        transaction!(self, "launch", |tx| async {
            fence(tx, SCHEDULER_LEASE, token).await?;
            // The run row is locked first: launches of one occurrence take turns, so the
            // second reads the first's tally.
            let fresh = Run::launched(&plan.schedule_id, plan.occurrence, plan.scheduled_for, now);
            tx.execute(
                "INSERT INTO runs (schedule_id, occurrence, record)
                 VALUES ($1, $2, $3::text::jsonb) ON CONFLICT DO NOTHING",
                &[
                    &plan.schedule_id,
                    &occurrence,
                    &encode("run", &plan.schedule_id, &fresh)?,
                ],
            )
            .await
            .map_err(pg("start a run"))?;
            let row = tx
                .query_one(
                    "SELECT record::text FROM runs
                     WHERE schedule_id = $1 AND occurrence = $2 FOR UPDATE",
                    &[&plan.schedule_id, &occurrence],
                )
                .await
                .map_err(pg("lock a run"))?;
            let mut run: Run = decode("run", &plan.schedule_id, &col::<String>(&row, 0)?)?;

            let seqs = take_seqs(tx, sites.len()).await?;
            let mut created = Vec::new();
            let mut already = Vec::new();
            for (site, seq) in sites.iter().zip(seqs) {
                let entered = tx
                    .execute(
                        "INSERT INTO ledger (schedule_id, occurrence, site_id, job_seq)
                         VALUES ($1, $2, $3, $4)
                         ON CONFLICT ON CONSTRAINT ledger_once DO NOTHING",
                        &[
                            &plan.schedule_id,
                            &occurrence,
                            site,
                            &big("job", "seq_id", seq)?,
                        ],
                    )
                    .await
                    .map_err(pg("write a ledger entry"))?;
                if entered == 0 {
                    let row = tx
                        .query_one(
                            "SELECT j.id FROM ledger l JOIN jobs j ON j.seq_id = l.job_seq
                             WHERE l.schedule_id = $1 AND l.occurrence = $2 AND l.site_id = $3",
                            &[&plan.schedule_id, &occurrence, site],
                        )
                        .await
                        .map_err(pg("read a ledger entry"))?;
                    already.push((site.clone(), col(&row, 0)?));
                    continue;
                }
                let input = JobInput {
                    organization: schedule.organization.clone(),
                    site_id: site.clone(),
                    request_id: None,
                    idempotency_key: None,
                    description: description.clone(),
                    script: schedule.script.clone(),
                    make_backup: schedule.make_backup,
                    express_execute: true,
                    needs_acknowledgement: true,
                    notify_url: None,
                    rollback_after_secs: schedule.rollback_after_secs,
                    script_origin: None,
                };
                let mut job = new_job(input, seq, Some(origin.clone()), now);
                job.endpoint = endpoints
                    .iter()
                    .find(|e| &e.site_id == site)
                    .map(|e| e.digest());
                insert(tx, &job).await?;
                created.push(job);
            }
            let added = created.len() as u64;
            run.total += added;
            run.pending += added;
            run.awaiting_batches = plan.more_batches;
            tx.execute(
                "UPDATE runs SET record = $3::text::jsonb
                 WHERE schedule_id = $1 AND occurrence = $2",
                &[
                    &plan.schedule_id,
                    &occurrence,
                    &encode("run", &plan.schedule_id, &run)?,
                ],
            )
            .await
            .map_err(pg("update a run"))?;
            if !created.is_empty() {
                announce_in(tx, Change::Jobs).await?;
            }
            Ok(Launch {
                run,
                created,
                already_launched: already,
            })
        })
    }

    /// The job an occurrence created on a site, if it launched there.
    pub async fn ledger_entry(
        &self,
        schedule_id: &str,
        occurrence: u64,
        site_id: &str,
    ) -> Result<Option<String>, StoreError> {
        let client = self.client().await?;
        let row = client
            .query_opt(
                "SELECT j.id FROM ledger l JOIN jobs j ON j.seq_id = l.job_seq
                 WHERE l.schedule_id = $1 AND l.occurrence = $2 AND l.site_id = $3",
                &[
                    &schedule_id,
                    &big("run", "occurrence", occurrence)?,
                    &site_id,
                ],
            )
            .await
            .map_err(pg("read a ledger entry"))?;
        row.map(|r| col(&r, 0)).transpose()
    }
}

/// The checks the redb launch makes on the schedule it reads, made on the one passed.
fn check_launchable(plan: &LaunchPlan, schedule: &ScheduledScript) -> Result<(), StoreError> {
    let state = |reason: String| StoreError::ScheduleState {
        id: plan.schedule_id.clone(),
        reason,
    };
    if schedule.id != plan.schedule_id {
        return Err(state(format!(
            "the plan is for schedule {}, not {}",
            plan.schedule_id, schedule.id
        )));
    }
    if !matches!(
        schedule.status,
        ScheduleStatus::Scheduled | ScheduleStatus::Launched
    ) {
        return Err(state(
            format!("is {:?}, not scheduled", schedule.status).to_lowercase(),
        ));
    }
    if schedule.approval.as_deref() != Some(plan.approval.as_str()) {
        return Err(state("its approval does not cover this launch".to_owned()));
    }
    let covered = |site: &String| {
        schedule
            .approved_targets
            .as_ref()
            .is_some_and(|t| t.sites.contains(site))
            || schedule.test_site_id.as_ref() == Some(site)
    };
    if let Some(site) = plan.sites.iter().find(|s| !covered(s)) {
        return Err(state(format!(
            "site {site} is not among the targets its approval covers"
        )));
    }
    Ok(())
}
