//! The launcher: finds authorized schedules that are due, works out which occurrence
//! to launch (at most one, whatever the downtime), launches it through the store (jobs
//! and ledger in one transaction, so no site runs an occurrence twice) and hands the
//! jobs to the runner. With a test site, the script runs there first and the fleet is
//! launched only if it succeeded.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use tokio::task::JoinSet;

use crate::approval;
use crate::runner::fanout::{RunOptions, Runner, Selection};
use crate::server::Shutdown;
use crate::store::{
    JobStatus, LaunchPlan, MissedRunPolicy, Page, ScheduledScript, Store, StoreError,
};

use super::MissedRuns;

/// How late a `run_once` schedule may still launch a missed occurrence.
const GRACE: TimeDelta = TimeDelta::hours(1);

/// What one look at a due schedule did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Launched this occurrence on these many sites (a test site counts alone first).
    Launched { occurrence: u64, sites: usize },
    /// Nothing to launch now; the next launch is recorded.
    Waiting { next: Option<DateTime<Utc>> },
    /// Not launched, and why.
    Refused(String),
}

/// Launches due schedules. Cheap to clone.
#[derive(Clone)]
pub struct Launcher {
    store: Arc<Store>,
    runner: Runner,
    tick: Duration,
}

impl std::fmt::Debug for Launcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Launcher")
            .field("tick", &self.tick)
            .finish_non_exhaustive()
    }
}

impl Launcher {
    pub fn new(store: Arc<Store>, runner: Runner, tick: Duration) -> Launcher {
        Launcher {
            store,
            runner,
            tick,
        }
    }

    /// Looks for due schedules every `tick` until shutdown; the runs it starts are
    /// awaited before it returns.
    pub async fn serve(&self, shutdown: Shutdown) {
        let mut runs = JoinSet::new();
        loop {
            let now = Utc::now();
            let due = {
                let store = self.store.clone();
                tokio::task::spawn_blocking(move || store.due_schedules(now, 100)).await
            };
            match due {
                Ok(Ok(schedules)) => {
                    for schedule in schedules {
                        let (launcher, shutdown) = (self.clone(), shutdown.clone());
                        runs.spawn(async move {
                            let id = schedule.id.clone();
                            match launcher.launch(schedule, now, shutdown).await {
                                Ok(outcome) => {
                                    tracing::info!(schedule = %id, ?outcome, "schedule due")
                                }
                                Err(e) => {
                                    tracing::error!(schedule = %id, error = %e, "launch failed")
                                }
                            }
                        });
                    }
                }
                Ok(Err(e)) => tracing::error!(error = %e, "cannot read due schedules"),
                Err(e) => tracing::error!(error = %e, "due schedules lookup stopped"),
            }
            // Reap finished runs so the set does not grow.
            while runs.try_join_next().is_some() {}
            tokio::select! {
                biased;
                () = shutdown.clone().wait() => break,
                () = tokio::time::sleep(self.tick) => {}
            }
        }
        while runs.join_next().await.is_some() {}
    }

    /// The sites an occurrence runs on: the listed sites and those carrying a listed
    /// tag, less the excluded ones, in a stable order.
    fn targets(&self, schedule: &ScheduledScript) -> Result<Vec<String>, StoreError> {
        let mut sites: Vec<String> = schedule.sites.clone();
        for tag in &schedule.tags {
            sites.extend(self.store.site_ids_with_tag(&schedule.organization, tag)?);
        }
        sites.retain(|s| !schedule.excluded_sites.contains(s));
        sites.sort();
        sites.dedup();
        Ok(sites)
    }

    /// The last occurrence of this schedule that was launched.
    fn last_launched(&self, schedule_id: &str) -> Result<Option<u64>, StoreError> {
        let mut last = None;
        let mut page = Page::first(crate::store::MAX_PAGE);
        loop {
            let runs = self.store.list_runs(schedule_id, &page)?;
            let Some(run) = runs.last() else { break };
            last = Some(run.occurrence);
            page.after = Some(run.occurrence);
        }
        Ok(last)
    }

    /// Launches the due occurrence of one schedule, if any, and runs it to its end.
    pub async fn launch(
        &self,
        schedule: ScheduledScript,
        now: DateTime<Utc>,
        shutdown: Shutdown,
    ) -> Result<Outcome, LaunchError> {
        let Some(approval) = schedule.approval.clone() else {
            return Ok(Outcome::Refused("not authorized".into()));
        };
        // The store refuses a launch under any other binding; checking here gives the
        // reason a name.
        if approval::approval_hash(&schedule) != approval {
            return Ok(Outcome::Refused(
                "the script or its targets changed since it was authorized".into(),
            ));
        }
        let (occurrence, scheduled_for, next) = match &schedule.recurrence {
            None => match schedule.launch_at.or(schedule.next_launch_at) {
                Some(at) => (0, at, None),
                None => return Ok(Outcome::Refused("no launch time".into())),
            },
            Some(rule) => {
                let rule = approval::scheduler_rule(rule)
                    .map_err(|e| LaunchError::Schedule(e.to_string()))?;
                let policy = match schedule.missed_runs {
                    MissedRunPolicy::Skip => MissedRuns::Skip,
                    MissedRunPolicy::RunOnce => MissedRuns::RunOnce,
                };
                let due = rule.due(self.last_launched(&schedule.id)?, now, policy, GRACE);
                let next = due.next.map(|o| o.at);
                match due.launch {
                    Some(o) => (o.index, o.at, next),
                    None => {
                        self.store.set_next_launch(&schedule.id, next, now)?;
                        return Ok(Outcome::Waiting { next });
                    }
                }
            }
        };
        let mut fleet = self.targets(&schedule)?;
        let options = RunOptions::for_schedule(&schedule);
        let plan = |sites: Vec<String>, more_batches: bool| LaunchPlan {
            schedule_id: schedule.id.clone(),
            occurrence,
            scheduled_for,
            approval: approval.clone(),
            sites,
            more_batches,
            next_launch_at: next,
        };
        let run = Selection::Run {
            schedule_id: schedule.id.clone(),
            occurrence,
        };
        let mut launched = 0;
        if let Some(test_site) = &schedule.test_site_id {
            fleet.retain(|s| s != test_site);
            let first = self
                .store
                .launch(plan(vec![test_site.clone()], true), now)?;
            launched += first.created.len();
            self.runner
                .run_jobs(run.clone(), options.clone(), shutdown.clone())
                .await
                .map_err(|e| LaunchError::Runner(e.to_string()))?;
            let passed = self
                .store
                .run_jobs(&schedule.id, occurrence)?
                .iter()
                .any(|job| job.site_id == *test_site && job.status == JobStatus::Completed);
            if !passed {
                // The fleet is not launched: the run closes with the test site's failure.
                self.store.launch(plan(Vec::new(), false), Utc::now())?;
                return Ok(Outcome::Refused(format!(
                    "the test site {test_site} did not complete the script; the fleet was not launched"
                )));
            }
        }
        let rest = self.store.launch(plan(fleet, false), Utc::now())?;
        launched += rest.created.len();
        self.runner
            .run_jobs(run, options, shutdown)
            .await
            .map_err(|e| LaunchError::Runner(e.to_string()))?;
        Ok(Outcome::Launched {
            occurrence,
            sites: launched,
        })
    }
}

/// Why a launch could not go ahead.
#[derive(Debug, thiserror::Error)]
pub enum LaunchError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("the schedule's recurrence is unusable: {0}")]
    Schedule(String),
    #[error("the runner failed: {0}")]
    Runner(String),
}
