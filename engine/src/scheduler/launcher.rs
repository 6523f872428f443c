//! The launcher: finds authorized schedules that are due, works out which occurrence
//! to launch (at most one, whatever the downtime), launches it through the store (jobs
//! and ledger in one transaction, so no site runs an occurrence twice) and hands the
//! jobs to the runner. With a test site, the script runs there first and the fleet is
//! launched only if it succeeded.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use tokio::task::JoinSet;

use crate::approval;
use crate::runner::fanout::{RunOptions, Runner, Selection};
use crate::server::Shutdown;
use crate::store::{
    Backend, JobStatus, LaunchPlan, MissedRunPolicy, Operations, ScheduledScript, StoreError,
};

use super::MissedRuns;

/// Most due schedules one look takes; with more due, the launcher looks again at once.
const DUE_BATCH: usize = 100;

/// How long the scheduler lease lasts without renewal: after its holder stops, another
/// engine takes the launcher over within this.
pub const LEASE_TTL: Duration = Duration::from_secs(10);
/// How often the lease holder renews it, and a waiting engine looks for it.
const LEASE_RENEW: Duration = Duration::from_secs(3);

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
    store: Arc<Backend>,
    runner: Runner,
    tick: Duration,
    /// Schedules being launched by this process; a schedule stays due while its test
    /// site runs, and must not be launched a second time meanwhile.
    in_flight: Arc<Mutex<HashSet<String>>>,
}

/// Takes a schedule out of `in_flight` when its launch task ends, however it ends.
struct InFlight {
    set: Arc<Mutex<HashSet<String>>>,
    id: String,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        if let Ok(mut set) = self.set.lock() {
            set.remove(&self.id);
        }
    }
}

impl std::fmt::Debug for Launcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Launcher")
            .field("tick", &self.tick)
            .finish_non_exhaustive()
    }
}

impl Launcher {
    pub fn new(store: Arc<Backend>, runner: Runner, tick: Duration) -> Launcher {
        Launcher {
            store,
            runner,
            tick,
            in_flight: Arc::default(),
        }
    }

    /// The fencing token launches carry: the scheduler lease's while this engine holds
    /// it (the store refuses a launch whose token an engine that took the lease over has
    /// outgrown); 0 on redb, which has one scheduler.
    fn token(&self) -> u64 {
        self.store
            .as_postgres()
            .map_or(0, |shared| shared.scheduler_token())
    }

    /// Whether this engine may launch now: always on redb; on a shared store, while it
    /// holds the scheduler lease, which this takes or renews. One engine at a time holds
    /// it; when its holder stops renewing, another takes it over once it lapses.
    async fn hold_lease(&self) -> bool {
        let Some(shared) = self.store.as_postgres() else {
            return true;
        };
        let held = shared
            .store
            .acquire_or_renew(&shared.engine, LEASE_TTL)
            .await;
        let token = match held {
            Ok(token) => token.unwrap_or(0),
            Err(e) => {
                // Unknown: launches go on with the token held, which the store checks.
                tracing::warn!(error = %e, "cannot renew the scheduler lease");
                return self.token() != 0;
            }
        };
        let before = shared.set_scheduler_token(token);
        if before != token {
            match token {
                0 => tracing::warn!("another engine holds the scheduler lease; not launching"),
                t => tracing::info!(token = t, "this engine holds the scheduler lease"),
            }
        }
        token != 0
    }

    /// Launches due schedules until shutdown: it sleeps until the earliest launch the
    /// store knows of, and wakes early when a schedule is created, edited, approved,
    /// cancelled or deleted; `tick` bounds every sleep. The runs it starts are awaited
    /// before it returns.
    pub async fn serve(&self, shutdown: Shutdown) {
        let mut runs = JoinSet::new();
        loop {
            let now = Utc::now();
            let mut more_due = false;
            if self.hold_lease().await {
                let due = self
                    .store
                    .off_thread(
                        move |store| async move { store.due_schedules(now, DUE_BATCH).await },
                    )
                    .await;
                match due {
                    Ok(schedules) => {
                        more_due = schedules.len() == DUE_BATCH;
                        for schedule in schedules {
                            self.start(schedule, now, &shutdown, &mut runs);
                        }
                    }
                    Err(e) => tracing::error!(error = %e, "cannot read due schedules"),
                }
            }
            // Reap finished runs so the set does not grow.
            while runs.try_join_next().is_some() {}
            let mut wait = if more_due {
                Duration::ZERO
            } else {
                self.wait_for_next(now).await
            };
            if self.store.as_postgres().is_some() {
                // The lease is renewed well before it lapses, and looked for as often by
                // an engine waiting to take it over.
                wait = wait.min(LEASE_RENEW);
            }
            tokio::select! {
                biased;
                () = shutdown.clone().wait() => break,
                () = self.store.launches_changed() => {}
                () = tokio::time::sleep(wait) => {}
            }
        }
        while runs.join_next().await.is_some() {}
    }

    /// Starts the launch of one due schedule in `runs`, unless it is being launched.
    fn start(
        &self,
        schedule: ScheduledScript,
        now: DateTime<Utc>,
        shutdown: &Shutdown,
        runs: &mut JoinSet<()>,
    ) {
        let fresh = self
            .in_flight
            .lock()
            .map(|mut set| set.insert(schedule.id.clone()))
            .unwrap_or(false);
        if !fresh {
            return;
        }
        let guard = InFlight {
            set: self.in_flight.clone(),
            id: schedule.id.clone(),
        };
        let (launcher, shutdown) = (self.clone(), shutdown.clone());
        runs.spawn(async move {
            let _guard = guard;
            let id = schedule.id.clone();
            let outcome = launcher.launch(schedule, now, shutdown).await;
            // A run that ended may leave its schedule due again (the next occurrence of
            // a recurrence, a fleet batch after its test site): look at once.
            launcher.store.wake_launcher();
            match outcome {
                Ok(outcome) => tracing::info!(schedule = %id, ?outcome, "schedule due"),
                Err(e) => tracing::error!(schedule = %id, error = %e, "launch failed"),
            }
        });
    }

    /// How long to sleep before looking again: until the earliest launch the store knows
    /// of, passing over the schedules being launched (they stay due meanwhile), and at
    /// most a tick. One that was due already at the look made at `looked` and is not
    /// being launched (its launch failed) is looked at again after a tick, not at once.
    async fn wait_for_next(&self, looked: DateTime<Utc>) -> Duration {
        let busy = self
            .in_flight
            .lock()
            .map(|set| set.clone())
            .unwrap_or_default();
        let next = self
            .store
            .off_thread(move |store| async move { store.next_due_at(&busy).await })
            .await;
        let now = Utc::now();
        match next {
            Ok(Some(at)) if at > looked => {
                (at - now).to_std().unwrap_or(Duration::ZERO).min(self.tick)
            }
            _ => self.tick,
        }
    }

    /// Launches the due occurrence of one schedule, if any, and runs it to its end.
    pub async fn launch(
        &self,
        schedule: ScheduledScript,
        now: DateTime<Utc>,
        shutdown: Shutdown,
    ) -> Result<Outcome, LaunchError> {
        let (Some(approval), Some(approved)) = (
            schedule.approval.clone(),
            schedule.approved_targets.as_ref(),
        ) else {
            return Ok(Outcome::Refused("not authorized".into()));
        };
        let policy = match schedule.missed_runs {
            MissedRunPolicy::Skip => MissedRuns::Skip,
            MissedRunPolicy::RunOnce => MissedRuns::RunOnce,
        };
        let rule = match &schedule.recurrence {
            Some(rule) => Some(
                approval::scheduler_rule(rule).map_err(|e| LaunchError::Schedule(e.to_string()))?,
            ),
            None => None,
        };
        let last = self.store.last_run(&schedule.id).await?;
        // A run whose test site went first and whose fleet batch never launched (the
        // engine stopped in between) is finished before anything new starts.
        let unfinished = last
            .as_ref()
            .filter(|run| run.awaiting_batches && run.finished_at.is_none());
        let (occurrence, scheduled_for, next) = match (unfinished, &rule) {
            (Some(run), None) => (run.occurrence, run.scheduled_for, None),
            (Some(run), Some(rule)) => {
                let next = rule.due(Some(run.occurrence), now, policy, GRACE).next;
                (run.occurrence, run.scheduled_for, next.map(|o| o.at))
            }
            (None, None) => match schedule.launch_at.or(schedule.next_launch_at) {
                Some(at) => (0, at, None),
                None => return Ok(Outcome::Refused("no launch time".into())),
            },
            (None, Some(rule)) => {
                let due = rule.due(last.map(|r| r.occurrence), now, policy, GRACE);
                let next = due.next.map(|o| o.at);
                match due.launch {
                    Some(o) => (o.index, o.at, next),
                    None => {
                        self.store.set_next_launch(&schedule.id, next, now).await?;
                        return Ok(Outcome::Waiting { next });
                    }
                }
            }
        };
        // The sites as resolved when the schedule was approved; the store checks, in the
        // launch's own transaction, that they still resolve and are reached the same way,
        // and voids the approval when not.
        let mut fleet = approved.sites.clone();
        let options = RunOptions::for_schedule(&schedule);
        // While the test site runs, the schedule stays due at this occurrence, so that
        // an engine stopped before the fleet batch picks the run up again on start.
        let plan = |sites: Vec<String>, more_batches: bool| LaunchPlan {
            schedule_id: schedule.id.clone(),
            occurrence,
            scheduled_for,
            approval: approval.clone(),
            sites,
            more_batches,
            next_launch_at: if more_batches {
                Some(scheduled_for)
            } else {
                next
            },
        };
        let run = Selection::Run {
            schedule_id: schedule.id.clone(),
            occurrence,
        };
        // From before its jobs exist: this run's jobs are this launch's to start, with
        // its canary and halts, not the runner's queue reader's.
        let _hold = self.runner.hold_run(&schedule.id, occurrence);
        let mut launched = 0;
        if let Some(test_site) = &schedule.test_site_id {
            fleet.retain(|s| s != test_site);
            let first = match self
                .store
                .launch(plan(vec![test_site.clone()], true), self.token(), now)
                .await
            {
                Err(e @ StoreError::ApprovalVoid { .. }) => {
                    return Ok(Outcome::Refused(e.to_string()));
                }
                other => other?,
            };
            launched += first.created.len();
            self.runner
                .run_jobs(run.clone(), options.clone(), shutdown.clone())
                .await
                .map_err(|e| LaunchError::Runner(e.to_string()))?;
            let passed = self
                .store
                .run_jobs(&schedule.id, occurrence)
                .await?
                .iter()
                .any(|job| job.site_id == *test_site && job.status == JobStatus::Completed);
            if !passed {
                // The fleet is not launched: the run closes with the test site's failure.
                self.store
                    .launch(plan(Vec::new(), false), self.token(), Utc::now())
                    .await?;
                return Ok(Outcome::Refused(format!(
                    "the test site {test_site} did not complete the script; the fleet was not launched"
                )));
            }
        }
        let rest = match self
            .store
            .launch(plan(fleet, false), self.token(), Utc::now())
            .await
        {
            Err(e @ StoreError::ApprovalVoid { .. }) => {
                return Ok(Outcome::Refused(e.to_string()));
            }
            other => other?,
        };
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
