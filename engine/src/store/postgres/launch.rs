//! A launch in PostgreSQL: an occurrence's jobs and their ledger entries in one
//! transaction, under the scheduler's fencing token.
//!
//! The ledger's `UNIQUE (schedule_id, occurrence, site_id)` decides which launch creates a
//! site's job: each entry is inserted `ON CONFLICT DO NOTHING` before its job, so of two
//! launches of the same occurrence (a retry, a second engine, a restart) one writes the
//! entry and the job, and the other waits for it to commit, finds the entry and reports
//! that site as already launched, as the redb store's `launch` does.
//!
//! The launch reads the schedule with its row locked and resolves its targets from the
//! sites as they are now (their rows locked too), and judges them by the redb store's own
//! code (`schedules::still_approved`): a schedule or a site that changed since the
//! approval voids it, and the void (the schedule back to `unauthorized`, its audit line
//! and event) is committed while the launch is refused with `ApprovalVoid`. The jobs,
//! the run's tally and the schedule's new status and next launch are written together
//! (`schedules::launch_job`, `schedules::launched`).

use chrono::{DateTime, Utc};

use super::changes::{Change, announce_in};
use super::jobs::{insert_all, take_seqs};
use super::journal::push_audit;
use super::leases::{SCHEDULER_LEASE, fence};
use super::outbox::push_event;
use super::schedules::{locked, locked_if_any, put, resolve};
use super::{PgStore, big, col, decode, encode, pg};
use crate::store::error::StoreError;
use crate::store::records::{Job, JobChanges, JobStatus, MAX_TARGETS, Page, Run};
use crate::store::schedules::{
    EVENT_APPROVAL_VOIDED, EVENT_LAUNCHED, EVENT_RUN_FINISHED, count_outcome, finish_run,
    launch_job, launched, launched_payload, run_finished_payload, settle, still_approved, voided,
};
use crate::store::{LatestRun, SiteOutcome, SiteState};
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
        let occurrence = big("run", "occurrence", plan.occurrence)?;
        let mut sites = plan.sites.clone();
        sites.sort();
        sites.dedup();
        let launch = transaction!(self, "launch", |tx| async {
            fence(tx, SCHEDULER_LEASE, token).await?;
            let old = locked(tx, &plan.schedule_id).await?;
            let targets = resolve(tx, &old).await?;
            if !still_approved(&old, &plan, &targets)? {
                let void = voided(&old, &targets, now);
                put(tx, &void.schedule).await?;
                push_audit(tx, void.audit).await?;
                push_event(tx, EVENT_APPROVAL_VOIDED, void.event, now).await?;
                announce_in(tx, Change::Schedules).await?;
                return Ok(Err(void.reasons));
            }
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

            // The whole batch in a few statements: every site's ledger entry at once
            // (sites in order, so two launches of one occurrence lock entries in the same
            // order and the second waits for the first instead of deadlocking), then the
            // jobs of the sites whose entry this launch wrote, then the jobs the other
            // sites already have.
            let seqs = take_seqs(tx, sites.len()).await?;
            let seq_params = seqs
                .iter()
                .map(|&seq| big("job", "seq_id", seq))
                .collect::<Result<Vec<i64>, _>>()?;
            let entered: std::collections::HashSet<String> = tx
                .query(
                    "INSERT INTO ledger (schedule_id, occurrence, site_id, job_seq)
                     SELECT $1, $2, site, seq FROM unnest($3::text[], $4::bigint[]) AS t(site, seq)
                     ON CONFLICT ON CONSTRAINT ledger_once DO NOTHING
                     RETURNING site_id",
                    &[&plan.schedule_id, &occurrence, &sites, &seq_params],
                )
                .await
                .map_err(pg("write ledger entries"))?
                .iter()
                .map(|row| col::<String>(row, 0))
                .collect::<Result<_, _>>()?;
            let created: Vec<Job> = sites
                .iter()
                .zip(seqs)
                .filter(|(site, _)| entered.contains(*site))
                .map(|(site, seq)| launch_job(&old, &plan, &targets, site, seq, now))
                .collect();
            insert_all(tx, &created).await?;
            let mut already = Vec::new();
            if entered.len() < sites.len() {
                let others: Vec<&String> = sites.iter().filter(|s| !entered.contains(*s)).collect();
                let rows = tx
                    .query(
                        "SELECT l.site_id, j.id FROM ledger l JOIN jobs j ON j.seq_id = l.job_seq
                         WHERE l.schedule_id = $1 AND l.occurrence = $2 AND l.site_id = ANY($3)
                         ORDER BY l.site_id COLLATE \"C\"",
                        &[&plan.schedule_id, &occurrence, &others],
                    )
                    .await
                    .map_err(pg("read ledger entries"))?;
                for row in &rows {
                    already.push((col::<String>(row, 0)?, col::<String>(row, 1)?));
                }
            }
            let added = created.len() as u64;
            let new = launched(&old, &mut run, &plan, added, now);
            put(tx, &new).await?;
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
            if added > 0 {
                push_event(tx, EVENT_LAUNCHED, launched_payload(&plan, added), now).await?;
                announce_in(tx, Change::Jobs).await?;
            }
            announce_in(tx, Change::Schedules).await?;
            Ok(Ok(Launch {
                run,
                created,
                already_launched: already,
            }))
        })?;
        launch.map_err(|reasons| StoreError::ApprovalVoid {
            id: plan.schedule_id.clone(),
            reasons,
        })
    }

    pub async fn get_run(&self, schedule_id: &str, occurrence: u64) -> Result<Run, StoreError> {
        let client = self.client().await?;
        let row = client
            .query_opt(
                "SELECT record::text FROM runs WHERE schedule_id = $1 AND occurrence = $2",
                &[&schedule_id, &big("run", "occurrence", occurrence)?],
            )
            .await
            .map_err(pg("read a run"))?
            .ok_or_else(|| StoreError::not_found("run", format!("{schedule_id}#{occurrence}")))?;
        decode("run", schedule_id, &col::<String>(&row, 0)?)
    }

    /// The latest run of each schedule named, with where each of its sites stands (in
    /// site order), all from one snapshot; a schedule that never launched gets an empty
    /// [`LatestRun`]. Where a site stands is read from its job's status, error code and
    /// diff shape, so it always equals a recount.
    pub async fn latest_runs(&self, schedule_ids: &[&str]) -> Result<Vec<LatestRun>, StoreError> {
        let ids: Vec<&str> = schedule_ids.to_vec();
        let (runs, sites) = transaction!(self, "read the latest runs", |tx| async {
            tx.batch_execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
                .await
                .map_err(pg("take a snapshot"))?;
            let runs = tx
                .query(
                    "SELECT DISTINCT ON (schedule_id) schedule_id, occurrence, record::text
                     FROM runs WHERE schedule_id = ANY($1)
                     ORDER BY schedule_id, occurrence DESC",
                    &[&ids],
                )
                .await
                .map_err(pg("read the latest runs"))?;
            let mut wanted_ids = Vec::with_capacity(runs.len());
            let mut wanted_occurrences = Vec::with_capacity(runs.len());
            for row in &runs {
                wanted_ids.push(col::<String>(row, 0)?);
                wanted_occurrences.push(col::<i64>(row, 1)?);
            }
            let sites = tx
                .query(
                    "SELECT l.schedule_id, l.site_id, j.status, j.record->'error'->>'code',
                            (j.record->'changes')::text
                     FROM unnest($1::text[], $2::bigint[]) AS want(schedule_id, occurrence)
                     JOIN ledger l ON l.schedule_id = want.schedule_id
                                  AND l.occurrence = want.occurrence
                     JOIN jobs j ON j.seq_id = l.job_seq
                     ORDER BY l.schedule_id, l.site_id COLLATE \"C\"",
                    &[&wanted_ids, &wanted_occurrences],
                )
                .await
                .map_err(pg("read the sites of the latest runs"))?;
            Ok((runs, sites))
        })?;
        let mut latest: std::collections::HashMap<String, LatestRun> =
            std::collections::HashMap::with_capacity(runs.len());
        for row in &runs {
            let id: String = col(row, 0)?;
            let run: Run = decode("run", &id, &col::<String>(row, 2)?)?;
            latest.insert(
                id,
                LatestRun {
                    run: Some(run),
                    sites: Vec::new(),
                },
            );
        }
        for row in &sites {
            let id: String = col(row, 0)?;
            let site_id: String = col(row, 1)?;
            let status: String = col(row, 2)?;
            let status = JobStatus::parse(&status).ok_or_else(|| StoreError::Corrupt {
                kind: "job",
                id: site_id.clone(),
                source: serde::de::Error::custom(format!("unknown status {status}")),
            })?;
            let code: Option<String> = col(row, 3)?;
            let changes: Option<JobChanges> = match col::<Option<String>>(row, 4)? {
                Some(text) => decode("job", &site_id, &text)?,
                None => None,
            };
            if let Some(run) = latest.get_mut(&id) {
                run.sites.push(SiteOutcome {
                    site_id,
                    state: SiteState::of_status(status, code.as_deref()),
                    changes,
                });
            }
        }
        Ok(schedule_ids
            .iter()
            .map(|id| latest.remove(*id).unwrap_or_default())
            .collect())
    }

    /// The run of a schedule's latest occurrence, if it ever launched.
    pub async fn last_run(&self, schedule_id: &str) -> Result<Option<Run>, StoreError> {
        let mut runs = self
            .runs_where(
                "SELECT record::text FROM runs WHERE schedule_id = $1
                 ORDER BY occurrence DESC LIMIT 1",
                schedule_id,
                &[],
            )
            .await?;
        Ok(runs.pop())
    }

    /// A schedule's run history, oldest occurrence first; the cursor is the last
    /// occurrence seen.
    pub async fn list_runs(
        &self,
        schedule_id: &str,
        page: &Page<u64>,
    ) -> Result<Vec<Run>, StoreError> {
        let after = page
            .after
            .map_or(-1, |a| i64::try_from(a).unwrap_or(i64::MAX));
        let limit = page.capped_limit() as i64;
        self.runs_where(
            "SELECT record::text FROM runs WHERE schedule_id = $1 AND occurrence > $2
             ORDER BY occurrence LIMIT $3",
            schedule_id,
            &[&after, &limit],
        )
        .await
    }

    async fn runs_where(
        &self,
        select: &str,
        schedule_id: &str,
        rest: &[&(dyn tokio_postgres::types::ToSql + Sync)],
    ) -> Result<Vec<Run>, StoreError> {
        let mut params: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> = vec![&schedule_id];
        params.extend_from_slice(rest);
        let client = self.client().await?;
        let rows = client
            .query(select, &params)
            .await
            .map_err(pg("read runs"))?;
        rows.iter()
            .map(|row| decode("run", schedule_id, &col::<String>(row, 0)?))
            .collect()
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

/// Counts finished jobs in their runs' tallies, each run's row locked once (runs in key
/// order, so transactions take them in the same order), and settles a run when its last
/// job is counted, with its schedule when that has no occurrence after it
/// (`schedules::count_outcome`, `schedules::finish_run`). Returns the events of the runs
/// that settled. A job of a run that was never recorded (nothing launched it here) counts
/// nowhere.
pub(super) async fn record_outcomes(
    tx: &deadpool_postgres::Transaction<'_>,
    jobs: &[Job],
    now: DateTime<Utc>,
) -> Result<Vec<(&'static str, serde_json::Value)>, StoreError> {
    let mut by_run: std::collections::BTreeMap<(&str, u64), Vec<&Job>> =
        std::collections::BTreeMap::new();
    for job in jobs {
        if let Some(origin) = &job.origin {
            by_run
                .entry((origin.schedule_id.as_str(), origin.occurrence))
                .or_default()
                .push(job);
        }
    }
    let mut events = Vec::new();
    for ((schedule_id, occurrence), finished) in by_run {
        let occurrence = big("run", "occurrence", occurrence)?;
        let row = tx
            .query_opt(
                "SELECT record::text FROM runs WHERE schedule_id = $1 AND occurrence = $2
                 FOR UPDATE",
                &[&schedule_id, &occurrence],
            )
            .await
            .map_err(pg("lock a run"))?;
        let Some(row) = row else { continue };
        let mut run: Run = decode("run", schedule_id, &col::<String>(&row, 0)?)?;
        for job in finished {
            if !count_outcome(&mut run, job) {
                continue;
            }
            match locked_if_any(tx, schedule_id).await? {
                Some(old) => {
                    let mut new = old.clone();
                    finish_run(&mut run, &mut new, now);
                    put(tx, &new).await?;
                }
                // A deleted schedule keeps its runs; only the run is settled.
                None => settle(&mut run, now),
            }
            events.push((EVENT_RUN_FINISHED, run_finished_payload(&run)));
        }
        tx.execute(
            "UPDATE runs SET record = $3::text::jsonb WHERE schedule_id = $1 AND occurrence = $2",
            &[
                &schedule_id,
                &occurrence,
                &encode("run", schedule_id, &run)?,
            ],
        )
        .await
        .map_err(pg("update a run"))?;
    }
    Ok(events)
}
