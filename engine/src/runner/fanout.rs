//! The fan-out: runs pending jobs on their sites with bounded concurrency, retries that
//! cannot run a script twice, per-job timeouts, a canary batch and a failure-rate halt.
//!
//! Never twice: a job's `sent` flag is committed (`MarkSent`) before the transport
//! plugin is called with the script, and nothing that could write the script to a
//! device happens until that commit has returned. A crash before the commit leaves the
//! job `running` and unsent, which recovery requeues; a crash after it leaves the job
//! `running` and sent, which recovery fails as `interrupted` and nothing runs again.
//! The backup is taken before `MarkSent` because it only reads: a failed backup (or a
//! crash during it) leaves the job unsent, so it is safe to retry or requeue.
//! A retry clears `sent` only when the transport said the failure came before the script
//! was written (refused, auth, TLS, denied, no plugin); any other failure is final.
//!
//! Claims: `Load` (pending -> loaded) succeeds for one caller only, so two runners (or a
//! runner and `resume_pending`) given the same job never both run it. On a store several
//! engines share, the same transition records the engine that took the job, and every
//! later change of the job must come from that engine ([`Backend::change_jobs`]).
//!
//! Store writes go through [`Backend::change_jobs`]; on redb that is the store's group
//! commit: the transitions of concurrent jobs and the API's new submissions queued while
//! a commit syncs are written together in the next one. A caller waits for its own commit, so a
//! `MarkSent` is never later than the call that sends the script; batching only shares
//! the sync among concurrent writers.
//!
//! The concurrency limits count jobs at work on their sites: a job gives its slot back
//! when it is done with the site, and its end is committed after that, while the next
//! job starts. The failure-rate halt counts a job's end before its slot is given back,
//! so the next job is judged with it.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::pin::pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use chrono::Utc;
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;
use tokio::time::Instant;

use super::execute::{self, ExecError};
use super::rollback;
use crate::plugins::{PluginHost, Transport, transport};
use crate::server::Shutdown;
use crate::store::backend::CLAIM_TTL;
use crate::store::{
    Backend, Changes, Job, JobError, JobInput, JobStatus, JobTransition, Operations, Page, SKIPPED,
    StoreError,
};

/// How long, on a shared store, the runner keeps recording a job's change while the
/// database is out of reach, before it leaves the job to be settled as a crashed
/// engine's.
const STORE_PATIENCE: Duration = Duration::from_secs(30);

/// On a shared store, how long the queue reader gathers wake-ups (jobs ending, jobs
/// queued) before it reads the queue again.
const GATHER: Duration = Duration::from_millis(50);

/// Error code of a job not started because its run was halted.
pub const HALTED: &str = "halted";
/// Error code of a job that did not finish within its timeout.
pub const JOB_TIMEOUT: &str = "timeout";
/// Error code of a job whose site no longer exists.
pub const SITE_NOT_FOUND: &str = "site-not-found";
/// A scheduled job's site is reached differently (address, port, transport, TLS or
/// credentials) from when its launch was approved: it is not run there.
pub const SITE_CHANGED: &str = "site-changed";
/// Error code of a job whose site has no password (none was set, or it was cleared when
/// the site's endpoint changed): nothing was sent, and a retry would not help.
pub const PASSWORD_MISSING: &str = "password-missing";
/// Error code of a job whose site's stored password cannot be opened.
pub const CREDENTIALS: &str = "credentials";
/// Error code of a job whose SSH server showed a host key other than the site's: nothing
/// was sent, and the job is not retried until an operator accepts the new key.
pub const HOST_KEY_CHANGED: &str = "host_key_changed";
/// Error code of a guarded job whose site's transport cannot arm a dead-man rollback:
/// nothing was sent, and a retry would not help.
pub const ROLLBACK_UNSUPPORTED: &str = "rollback_unsupported";

/// How the runner behaves; the defaults suit a production fleet. A job at work mostly
/// waits on its router, so the limits are sized for waiting, not for cores: the engine
/// lowers them at start to what memory and the open-file limit hold ([`crate::budget`]).
#[derive(Debug, Clone)]
pub struct RunnerSettings {
    /// Jobs running at once across everything this runner does.
    pub global_concurrency: usize,
    /// The part of `global_concurrency` one organization's jobs may hold at once (more
    /// than 0, at most 1): jobs of one organization stuck on routers that never answer
    /// leave the other organizations room.
    pub organization_share: f64,
    /// Jobs running at once within one `run_jobs` call (one schedule run).
    pub run_concurrency: usize,
    /// Limit on one job from its start to its end, retries and backoff included.
    pub job_timeout: Duration,
    /// Attempts for failures before the script was sent (auth, TLS, denied, no plugin).
    /// A refused connection (the site is offline) is retried until the job's timeout.
    pub max_attempts: u32,
    pub backoff_initial: Duration,
    pub backoff_max: Duration,
    /// How often `serve` looks for pending jobs when nothing woke it.
    pub poll_interval: Duration,
}

impl Default for RunnerSettings {
    fn default() -> Self {
        RunnerSettings {
            global_concurrency: crate::budget::DEFAULT_JOBS,
            organization_share: 0.5,
            run_concurrency: crate::budget::DEFAULT_JOBS_PER_LAUNCH,
            job_timeout: Duration::from_secs(300),
            max_attempts: 5,
            backoff_initial: Duration::from_millis(500),
            backoff_max: Duration::from_secs(30),
            poll_interval: Duration::from_secs(5),
        }
    }
}

/// What one batch of jobs is run with.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// Probe each site first; an offline one is recorded as skipped and sent nothing.
    pub abort_if_offline: bool,
    /// Run this many jobs first and wait for them; any failure halts the rest.
    pub canary: usize,
    /// Halt when the share of failed jobs among finished ones passes this (0 to 1).
    pub halt_failure_rate: Option<f64>,
    /// Finished jobs needed before the failure rate is judged.
    pub halt_min_finished: u64,
    /// Jobs of this call running at once, below the runner's own `run_concurrency`.
    pub max_concurrency: Option<usize>,
}

impl RunOptions {
    /// The options a scheduled script asks for.
    pub fn for_schedule(schedule: &crate::store::ScheduledScript) -> RunOptions {
        let rollout = schedule.rollout;
        RunOptions {
            abort_if_offline: schedule.abort_if_offline,
            canary: rollout.canary as usize,
            halt_failure_rate: rollout.halt_failure_percent.map(|p| f64::from(p) / 100.0),
            halt_min_finished: u64::from(rollout.halt_min_finished),
            max_concurrency: rollout.max_concurrency.map(|n| n as usize),
        }
    }
}

/// Which jobs to run.
#[derive(Debug, Clone)]
pub enum Selection {
    Jobs(Vec<String>),
    /// Jobs read already: each is claimed as any other, so one no longer pending by the
    /// time its turn comes is left alone.
    Read(Vec<Job>),
    /// Jobs this engine has claimed already on a shared store (loaded, held by it).
    Claimed(Vec<Job>),
    Run {
        schedule_id: String,
        occurrence: u64,
    },
}

/// What a `run_jobs` call did; the store holds the same, per job and per run.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RunReport {
    pub completed: u64,
    pub failed: u64,
    pub skipped: u64,
    /// Failed with `halted` without being started.
    pub halted: u64,
    /// Not started or put back to pending because of shutdown.
    pub left_pending: u64,
    /// Left `running` and sent (shutdown or an unrecorded outcome); recovery fails them
    /// as interrupted.
    pub left_running: u64,
    /// Not pending when asked, or claimed by someone else: not run here.
    pub not_run: u64,
}

/// Why the runner could not do what it was asked.
#[derive(Debug, thiserror::Error)]
pub enum RunnerError {
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The commit itself failed: nothing of it was written.
    #[error("the store could not commit: {0}")]
    Commit(StoreError),
}

/// The schedule occurrence of a pending job, `None` for seed 001's jobs.
type Origin = Option<(String, u64)>;

/// Runs jobs. Cheap to clone; clones share limits and background work.
#[derive(Clone)]
pub struct Runner {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Runner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runner")
            .field("settings", &self.inner.settings)
            .finish_non_exhaustive()
    }
}

struct Inner {
    store: Arc<Backend>,
    plugins: PluginHost,
    settings: RunnerSettings,
    global: Arc<Semaphore>,
    /// Each organization's share of the global slots.
    organizations: crate::plugins::OrganizationShares,
    /// Express jobs started by `submit_async`, awaited by `drain`.
    background: Mutex<JoinSet<()>>,
    wake: Notify,
    /// Jobs this engine is at work on, from before their claim to after their end is
    /// recorded: the claims renewed on a shared store.
    working: Arc<Mutex<HashSet<String>>>,
    /// Runs being launched here, by schedule and occurrence, with how many holds each:
    /// their launch starts their jobs, so the queue reader leaves them alone.
    held_runs: Arc<Mutex<HashMap<(String, u64), usize>>>,
}

/// A job in [`Inner::working`] until dropped.
struct Working {
    set: Arc<Mutex<HashSet<String>>>,
    id: String,
}

impl Working {
    fn new(set: &Arc<Mutex<HashSet<String>>>, id: &str) -> Working {
        lock(set).insert(id.to_owned());
        Working {
            set: set.clone(),
            id: id.to_owned(),
        }
    }
}

impl Drop for Working {
    fn drop(&mut self) {
        lock(&self.set).remove(&self.id);
    }
}

/// Keeps a run's jobs out of the queue reader's hands until dropped
/// ([`Runner::hold_run`]).
pub struct RunHold {
    runs: Arc<Mutex<HashMap<(String, u64), usize>>>,
    key: (String, u64),
}

impl Drop for RunHold {
    fn drop(&mut self) {
        let mut runs = lock(&self.runs);
        if let Some(n) = runs.get_mut(&self.key) {
            *n -= 1;
            if *n == 0 {
                runs.remove(&self.key);
            }
        }
    }
}

/// Whether the signal has fired, without waiting.
fn signalled(shutdown: &Shutdown) -> bool {
    let mut wait = pin!(shutdown.clone().wait());
    matches!(
        wait.as_mut().poll(&mut Context::from_waker(Waker::noop())),
        Poll::Ready(())
    )
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// How one job ended, as far as this runner is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Completed,
    Failed,
    Skipped,
    LeftPending,
    LeftRunning,
    NotRun,
}

/// Counters of one `run_jobs` call, shared with its tasks.
#[derive(Default)]
struct Tally {
    completed: AtomicU64,
    failed: AtomicU64,
    skipped: AtomicU64,
    left_pending: AtomicU64,
    left_running: AtomicU64,
    not_run: AtomicU64,
    halted: AtomicU64,
    /// Jobs done with their sites, and how many of those failed, counted before their
    /// ends are committed (and before their slots are given back), for the halt.
    ended: AtomicU64,
    ended_failed: AtomicU64,
}

impl Tally {
    fn count(&self, outcome: Outcome) {
        let counter = match outcome {
            Outcome::Completed => &self.completed,
            Outcome::Failed => &self.failed,
            Outcome::Skipped => &self.skipped,
            Outcome::LeftPending => &self.left_pending,
            Outcome::LeftRunning => &self.left_running,
            Outcome::NotRun => &self.not_run,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// Notes how a job's work ended, before it is recorded; skipped sites aside, since
    /// an offline site the schedule said to skip is not a failure of the script.
    fn note(&self, end: &End) {
        let failed = match end {
            End::Completed(_) => false,
            End::Failed(..) => true,
            End::Outcome(_) | End::Skipped(_) | End::Requeue => return,
        };
        if failed {
            self.ended_failed.fetch_add(1, Ordering::Relaxed);
        }
        self.ended.fetch_add(1, Ordering::Relaxed);
    }

    /// Failed and finished jobs, as far as their work on the sites has ended.
    fn rate(&self) -> (u64, u64) {
        (
            self.ended_failed.load(Ordering::Relaxed),
            self.ended.load(Ordering::Relaxed),
        )
    }
}

impl Runner {
    /// Makes a runner; call inside a tokio runtime.
    pub fn new(store: Arc<Backend>, plugins: PluginHost, settings: RunnerSettings) -> Runner {
        Runner {
            inner: Arc::new(Inner {
                store,
                plugins,
                global: Arc::new(Semaphore::new(settings.global_concurrency.max(1))),
                organizations: crate::plugins::OrganizationShares::new(
                    settings.global_concurrency.max(1),
                    settings.organization_share,
                ),
                settings,
                background: Mutex::new(JoinSet::new()),
                wake: Notify::new(),
                held_runs: Arc::default(),
                working: Arc::default(),
            }),
        }
    }

    /// Marks a run as launched by this engine until the hold is dropped: on a shared
    /// store, the queue reader does not start its jobs meanwhile, so a canary batch and
    /// the halts are judged by the launch alone.
    pub fn hold_run(&self, schedule_id: &str, occurrence: u64) -> RunHold {
        let key = (schedule_id.to_owned(), occurrence);
        *lock(&self.inner.held_runs).entry(key.clone()).or_insert(0) += 1;
        RunHold {
            runs: self.inner.held_runs.clone(),
            key,
        }
    }

    pub fn store(&self) -> &Arc<Backend> {
        &self.inner.store
    }

    pub fn settings(&self) -> &RunnerSettings {
        &self.inner.settings
    }

    /// Commits transitions of several jobs together with the other job writes queued.
    /// On a shared store, a commit that failed because the database was out of reach
    /// is made again, with a growing pause, for up to [`STORE_PATIENCE`]: a database
    /// restart or failover does not lose what a job did. A commit whose connection broke
    /// may have taken effect; made again, it is refused for a job already moved, and
    /// that job is left to lapse and be settled (see [`Runner::keep_claims`]).
    async fn commit(&self, items: Changes) -> Result<Vec<Result<Job, StoreError>>, RunnerError> {
        let store = &self.inner.store;
        if store.as_redb().is_some() {
            return store
                .change_jobs(items, Utc::now())
                .await
                .map_err(RunnerError::Commit);
        }
        let started = Instant::now();
        let mut pause = Duration::from_millis(100);
        loop {
            match store.change_jobs(items.clone(), Utc::now()).await {
                Err(e) if e.is_transient() && started.elapsed() + pause < STORE_PATIENCE => {
                    tracing::warn!(error = %e, "the store is out of reach; recording again");
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(Duration::from_secs(2));
                }
                other => return other.map_err(RunnerError::Commit),
            }
        }
    }

    /// On a shared store, until `shutdown`: keeps this engine's claims alive on the jobs
    /// it is at work on (and on no other job it may hold: a claim whose commit was lost,
    /// or a job whose end could not be recorded, lapses), and settles the jobs whose
    /// engine stopped renewing its claims, as a restart settles a crashed engine's own
    /// (any engine may; each job is settled once). Nothing to do on redb.
    pub async fn keep_claims(&self, shutdown: Shutdown) {
        let Some(shared) = self.inner.store.as_postgres() else {
            return;
        };
        loop {
            let working: Vec<String> = lock(&self.inner.working).iter().cloned().collect();
            if !working.is_empty()
                && let Err(e) = shared
                    .store
                    .renew_claims_of(&shared.engine, &working, CLAIM_TTL)
                    .await
            {
                tracing::warn!(error = %e, "cannot renew this engine's claims on its jobs");
            }
            match shared.store.expire_leases(Utc::now()).await {
                Ok(settled) if !settled.interrupted.is_empty() || !settled.requeued.is_empty() => {
                    tracing::warn!(
                        interrupted = settled.interrupted.len(),
                        requeued = settled.requeued.len(),
                        "settled the jobs of lapsed claims"
                    );
                }
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "cannot settle lapsed claims"),
            }
            tokio::select! {
                () = shutdown.clone().wait() => return,
                () = tokio::time::sleep(CLAIM_TTL / 3) => {}
            }
        }
    }

    async fn commit_one(
        &self,
        id: &str,
        transitions: Vec<JobTransition>,
    ) -> Result<Job, RunnerError> {
        let mut out = self.commit(vec![(id.to_owned(), transitions)]).await?;
        Ok(out
            .pop()
            .unwrap_or_else(|| Err(StoreError::not_found("job", id)))?)
    }

    /// Runs the pending jobs of a selection to their end (or to shutdown), and reports.
    /// Jobs not pending are left alone.
    pub async fn run_jobs(
        &self,
        selection: Selection,
        options: RunOptions,
        shutdown: Shutdown,
    ) -> Result<RunReport, RunnerError> {
        let claimed = matches!(selection, Selection::Claimed(_));
        let jobs = self
            .inner
            .store
            .off_thread(move |store| async move {
                match selection {
                    Selection::Run {
                        schedule_id,
                        occurrence,
                    } => store.run_jobs(&schedule_id, occurrence).await,
                    Selection::Jobs(ids) => store.get_jobs(&ids).await,
                    Selection::Read(jobs) | Selection::Claimed(jobs) => Ok(jobs),
                }
            })
            .await
            .map_err(RunnerError::Store)?;
        let (pending, others): (Vec<Job>, Vec<Job>) = jobs.into_iter().partition(|j| {
            j.status == JobStatus::Pending || (claimed && j.status == JobStatus::Loaded)
        });
        let tally = Arc::new(Tally::default());
        tally
            .not_run
            .fetch_add(others.len() as u64, Ordering::Relaxed);

        let run_concurrency = options
            .max_concurrency
            .map_or(self.inner.settings.run_concurrency, |n| {
                n.min(self.inner.settings.run_concurrency)
            });
        let run_limit = Arc::new(Semaphore::new(run_concurrency.max(1)));
        let options = Arc::new(options);
        let mut tasks = JoinSet::new();
        let mut queue = pending.into_iter();
        let mut unstarted: Vec<Job> = Vec::new();
        let mut halt_reason: Option<String> = None;

        // The canary batch: started first, waited for, judged before anything else starts.
        let canary: Vec<Job> = queue.by_ref().take(options.canary).collect();
        let canary_size = canary.len() as u64;
        let mut canary = canary.into_iter();
        for job in canary.by_ref() {
            match self
                .dispatch(
                    job, &run_limit, &options, &tally, &shutdown, &mut tasks, false,
                )
                .await
            {
                Dispatch::Started => {}
                Dispatch::Stopped(job) | Dispatch::Halted(job, _) => {
                    unstarted.push(job);
                    break;
                }
            }
        }
        unstarted.extend(canary);
        while tasks.join_next().await.is_some() {}
        let canary_failed = tally.failed.load(Ordering::Relaxed);
        if canary_size > 0 && canary_failed > 0 {
            halt_reason = Some(format!(
                "not started: the canary batch failed on {canary_failed} of {canary_size} sites"
            ));
        }

        if halt_reason.is_none() && unstarted.is_empty() {
            for job in queue.by_ref() {
                match self
                    .dispatch(
                        job, &run_limit, &options, &tally, &shutdown, &mut tasks, true,
                    )
                    .await
                {
                    Dispatch::Started => while tasks.try_join_next().is_some() {},
                    Dispatch::Stopped(job) => {
                        unstarted.push(job);
                        break;
                    }
                    Dispatch::Halted(job, reason) => {
                        unstarted.push(job);
                        halt_reason = Some(reason);
                        break;
                    }
                }
            }
        }
        unstarted.extend(queue);
        match &halt_reason {
            Some(reason) => self.halt(unstarted, reason, &tally).await,
            // Only shutdown leaves jobs undispatched: they stay pending for the next start.
            None => {
                tally
                    .left_pending
                    .fetch_add(unstarted.len() as u64, Ordering::Relaxed);
            }
        }
        while tasks.join_next().await.is_some() {}

        Ok(RunReport {
            completed: tally.completed.load(Ordering::Relaxed),
            failed: tally.failed.load(Ordering::Relaxed),
            skipped: tally.skipped.load(Ordering::Relaxed),
            halted: tally.halted.load(Ordering::Relaxed),
            left_pending: tally.left_pending.load(Ordering::Relaxed),
            left_running: tally.left_running.load(Ordering::Relaxed),
            not_run: tally.not_run.load(Ordering::Relaxed),
        })
    }

    /// Waits for a slot (run, the organization's share, then global) and starts the job in it, unless shutdown came
    /// first or, with `judge`, the failure rate has passed the threshold meanwhile.
    #[allow(clippy::too_many_arguments)]
    async fn dispatch(
        &self,
        job: Job,
        run_limit: &Arc<Semaphore>,
        options: &Arc<RunOptions>,
        tally: &Arc<Tally>,
        shutdown: &Shutdown,
        tasks: &mut JoinSet<()>,
        judge: bool,
    ) -> Dispatch {
        let organization: Arc<str> = Arc::from(job.organization.as_str());
        let permits = async {
            let run = run_limit.clone().acquire_owned().await.ok()?;
            // The organization's share before the global slot, so its jobs waiting for
            // their share hold none of the others'.
            let share = self
                .inner
                .organizations
                .of(&organization)
                .acquire_owned()
                .await
                .ok()?;
            let global = self.inner.global.clone().acquire_owned().await.ok()?;
            Some((run, share, global))
        };
        let permits = tokio::select! {
            biased;
            () = shutdown.clone().wait() => None,
            permits = permits => permits,
        };
        let Some(permits) = permits else {
            return Dispatch::Stopped(job);
        };
        if judge && let Some(reason) = failure_rate_halt(options, tally) {
            return Dispatch::Halted(job, reason);
        }
        let runner = self.clone();
        let (options, tally, shutdown) = (options.clone(), tally.clone(), shutdown.clone());
        let organization = job.organization.clone();
        tasks.spawn(async move {
            // The job's plugin calls count against its organization's share of them.
            let outcome = crate::plugins::on_behalf_of(
                &organization,
                runner.run_one(job, &options, &shutdown, &tally, permits),
            )
            .await;
            tally.count(outcome);
        });
        Dispatch::Started
    }

    /// Fails jobs that were never started, in one commit; one taken meanwhile is left alone.
    async fn halt(&self, jobs: Vec<Job>, reason: &str, tally: &Tally) {
        if jobs.is_empty() {
            return;
        }
        let error = JobError {
            code: HALTED.into(),
            message: format!("halted: {reason}"),
        };
        let items = jobs
            .iter()
            .map(|j| {
                let fail = JobTransition::Fail {
                    error: error.clone(),
                    output: None,
                };
                (j.id.clone(), vec![fail])
            })
            .collect();
        match self.commit(items).await {
            Ok(results) => {
                for result in results {
                    let counter = if result.is_ok() {
                        &tally.halted
                    } else {
                        &tally.not_run
                    };
                    counter.fetch_add(1, Ordering::Relaxed);
                }
            }
            Err(e) => {
                tracing::error!(error = %e, "could not record halted jobs; they stay pending");
                tally
                    .left_pending
                    .fetch_add(jobs.len() as u64, Ordering::Relaxed);
            }
        }
    }

    /// The site's target and its transport, read fresh for each attempt so an edited
    /// site or a reloaded plugin is picked up between retries.
    async fn prepare(&self, job: &Job) -> Result<(Transport, transport::Target), ExecError> {
        let (site, password, endpoint) = self
            .inner
            .store
            .site_with_password_and_endpoint(&job.site_id)
            .await
            .map_err(|e| {
                let code = match e {
                    StoreError::NotFound { .. } => SITE_NOT_FOUND,
                    StoreError::Decrypt { .. } => CREDENTIALS,
                    StoreError::PasswordMissing { .. } => PASSWORD_MISSING,
                    _ => "store",
                };
                ExecError {
                    code: code.into(),
                    message: e.to_string(),
                    category: None,
                    maybe_sent: false,
                }
            })?;
        if let Some(approved) = &job.endpoint {
            // The same snapshot the job is about to use; a site is never of another
            // organization than its job, and if it were, it would not be the approved one.
            if site.organization != job.organization || endpoint.digest() != *approved {
                return Err(ExecError {
                    code: SITE_CHANGED.into(),
                    message: format!(
                        "site {} changed since its launch was approved (address, port, transport, \
                         user name, TLS settings or credentials); nothing was sent, and the \
                         schedule needs a new approval to run there",
                        job.site_id
                    ),
                    category: None,
                    maybe_sent: false,
                });
            }
        }
        let transport = self
            .inner
            .plugins
            .transport(&site.transport)
            .map_err(|e| ExecError::from(crate::plugins::Failure::Call(e)))?;
        let site_ssh = site_ssh(&self.inner.store, &site)
            .await
            .map_err(|e| ExecError {
                // A store out of reach is tried again, as for the site's own read.
                code: if e.is_transient() {
                    "store"
                } else {
                    CREDENTIALS
                }
                .into(),
                message: e.to_string(),
                category: None,
                maybe_sent: false,
            })?;
        let transport = transport.with_ssh(site_ssh);
        let tls = site.tls.enabled.then(|| transport::TlsSettings {
            verify: site.tls.verify,
            pinned_sha256: site.tls.pinned_sha256.clone(),
            server_name: site.tls.server_name.clone(),
        });
        let options = ssh_options(&site);
        let target = transport::Target {
            site_id: site.id,
            address: site.address,
            port: site.port.unwrap_or(0),
            username: site.username,
            password: password.expose().to_owned(),
            tls,
            connect_timeout_ms: 0,
            reply_timeout_ms: 0,
            options,
        };
        Ok((transport, target))
    }

    /// One job from claim to its recorded end. The slot is given back as soon as the
    /// work on the site is over, so the next job starts while this one's end commits.
    async fn run_one(
        &self,
        job: Job,
        options: &RunOptions,
        shutdown: &Shutdown,
        tally: &Tally,
        slot: Slot,
    ) -> Outcome {
        let id = job.id.clone();
        let _working = Working::new(&self.inner.working, &id);
        let end = self.work(job, options, shutdown).await;
        // Noted before the slot is free, so the next dispatch judges with this job in.
        tally.note(&end);
        drop(slot);
        if self.inner.store.as_postgres().is_some() {
            // Room for another job: the queue reader claims as many as there is room for.
            self.inner.wake.notify_one();
        }
        match end {
            End::Outcome(outcome) => outcome,
            End::Completed(run) => self.finish_completed(&id, run).await,
            End::Failed(before, error) => self.finish_failed(&id, before, &error).await,
            End::Skipped(error) => {
                let _ = self.finish_failed(&id, vec![], &error).await;
                Outcome::Skipped
            }
            End::Requeue => self.requeue(&id).await,
        }
    }

    /// The job's work on its site, from its claim to how it ended; what is left to
    /// record comes back as an [`End`].
    async fn work(&self, job: Job, options: &RunOptions, shutdown: &Shutdown) -> End {
        if signalled(shutdown) {
            return End::Outcome(Outcome::LeftPending);
        }
        let settings = &self.inner.settings;
        let deadline = Instant::now() + settings.job_timeout;
        let id = job.id.clone();

        // On a store several engines share, the others may be after the same job: it is
        // claimed before anything is read for it, so the engines that lose read nothing.
        let shared = self.inner.store.as_postgres().is_some();
        // A job claimed in bulk by the queue reader is loaded already.
        if shared && job.status == JobStatus::Pending {
            match self.commit_one(&id, vec![JobTransition::Load]).await {
                Ok(_) => {}
                Err(RunnerError::Store(_)) => return End::Outcome(Outcome::NotRun),
                Err(e) => {
                    tracing::error!(job = %id, error = %e, "could not claim a job; it stays pending");
                    return End::Outcome(Outcome::LeftPending);
                }
            }
        }
        let load = if shared {
            Vec::new()
        } else {
            vec![JobTransition::Load]
        };
        // Reads only; a job whose site is gone, or has no password to log in with, fails
        // without being claimed for a run (on one engine's store).
        let mut prepared = self.prepare(&job).await;
        if let Err(e) = &prepared
            && matches!(
                e.code.as_str(),
                SITE_NOT_FOUND | SITE_CHANGED | PASSWORD_MISSING
            )
        {
            return End::Failed(load, e.clone());
        }
        let direct = prepared.is_ok()
            && !options.abort_if_offline
            && !job.make_backup
            && job.rollback_after_secs.is_none();
        let mut claim = load;
        claim.push(JobTransition::Start);
        if direct {
            claim.push(JobTransition::MarkSent);
        }
        match self.commit_one(&id, claim).await {
            Ok(_) => {}
            Err(RunnerError::Store(_)) => return End::Outcome(Outcome::NotRun),
            Err(e) => {
                tracing::error!(job = %id, error = %e, "could not claim a job; it stays pending");
                return End::Outcome(Outcome::LeftPending);
            }
        }
        let mut marked = direct;
        let mut backoff = settings.backoff_initial;
        let mut attempts: u32 = 1;
        loop {
            let attempt = self.attempt(&job, prepared, options, marked, deadline, shutdown);
            let error = match attempt.await {
                Attempt::Done(run) => return End::Completed(run),
                Attempt::Skipped(detail) => {
                    return End::Skipped(ExecError {
                        code: SKIPPED.into(),
                        message: format!("the site was offline, so nothing was sent: {detail}"),
                        category: None,
                        maybe_sent: false,
                    });
                }
                Attempt::Stopped => return End::Requeue,
                // Still running and unsent: recovery requeues it.
                Attempt::Unrecorded => return End::Outcome(Outcome::LeftPending),
                // Sent, and its guard armed: recovery fails it as interrupted.
                Attempt::Abandoned => return End::Outcome(Outcome::LeftRunning),
                Attempt::Failed(error) => error,
            };
            // An offline site (refused) is waited for until the deadline; anything else
            // that failed before sending gets a bounded number of attempts.
            let retry = !error.maybe_sent
                && !matches!(
                    error.code.as_str(),
                    SITE_NOT_FOUND
                        | SITE_CHANGED
                        | PASSWORD_MISSING
                        | CREDENTIALS
                        | HOST_KEY_CHANGED
                        | ROLLBACK_UNSUPPORTED
                )
                && (error.code == "refused" || attempts < settings.max_attempts)
                && Instant::now() + backoff < deadline;
            if !retry {
                let mut error = error;
                if !error.maybe_sent && attempts > 1 {
                    error.message = format!("{} (after {attempts} attempts)", error.message);
                }
                return End::Failed(vec![], error);
            }
            if let Err(e) = self.commit_one(&id, vec![JobTransition::Retry]).await {
                tracing::error!(job = %id, error = %e, "could not record a retry");
                return End::Outcome(Outcome::LeftRunning);
            }
            let slept = tokio::select! {
                biased;
                () = shutdown.clone().wait() => false,
                () = tokio::time::sleep(backoff) => true,
            };
            if !slept {
                return End::Requeue;
            }
            backoff = (backoff * 2).min(settings.backoff_max);
            attempts += 1;
            marked = false;
            prepared = self.prepare(&job).await;
        }
    }

    /// One attempt; a host key refused by the host fails it as [`HOST_KEY_CHANGED`],
    /// whatever the plugin made of the refusal.
    async fn attempt(
        &self,
        job: &Job,
        prepared: Result<(Transport, transport::Target), ExecError>,
        options: &RunOptions,
        marked: bool,
        deadline: Instant,
        shutdown: &Shutdown,
    ) -> Attempt {
        let transport = prepared.as_ref().ok().map(|(t, _)| t.clone());
        let mut outcome = self
            .attempt_on_site(job, prepared, options, marked, deadline, shutdown)
            .await;
        if let (Attempt::Failed(error), Some(refusal)) =
            (&mut outcome, transport.and_then(|t| t.ssh_refusal()))
        {
            *error = ExecError {
                code: HOST_KEY_CHANGED.into(),
                message: refusal.to_string(),
                category: None,
                maybe_sent: false,
            };
        }
        outcome
    }

    /// One attempt: probe, backup, `MarkSent`, script, each within the job's deadline.
    async fn attempt_on_site(
        &self,
        job: &Job,
        prepared: Result<(Transport, transport::Target), ExecError>,
        options: &RunOptions,
        marked: bool,
        deadline: Instant,
        shutdown: &Shutdown,
    ) -> Attempt {
        let (transport, target) = match prepared {
            Ok(p) => p,
            Err(e) => return Attempt::Failed(e),
        };
        let timed_out = || {
            Attempt::Failed(ExecError {
                code: JOB_TIMEOUT.into(),
                message: format!(
                    "the job did not finish within {}s",
                    self.inner.settings.job_timeout.as_secs_f64()
                ),
                category: None,
                // Only reached before the script is handed to the plugin.
                maybe_sent: false,
            })
        };
        // Until the script is sent, shutdown interrupts waiting on the device.
        macro_rules! before_send {
            ($fut:expr) => {
                tokio::select! {
                    biased;
                    () = shutdown.clone().wait() => return Attempt::Stopped,
                    r = tokio::time::timeout_at(deadline, $fut) => match r {
                        Ok(v) => v,
                        Err(_) => return timed_out(),
                    },
                }
            };
        }
        if options.abort_if_offline {
            match before_send!(transport.probe(&target)) {
                Ok(probe) if !probe.online => {
                    return Attempt::Skipped(probe.detail.unwrap_or_else(|| "offline".into()));
                }
                Ok(_) => {}
                Err(e) => {
                    let e = ExecError::from(e);
                    if matches!(e.code.as_str(), "refused" | "timeout" | "reset") {
                        return Attempt::Skipped(e.message);
                    }
                }
            }
        }
        let backup = if job.make_backup {
            match before_send!(transport.backup(&target, None)) {
                Ok(b) => Some(b.config),
                Err(e) => {
                    let mut e = ExecError::from(e);
                    e.message = format!(
                        "backup before the script failed, so the script was not run: {}",
                        e.message
                    );
                    e.maybe_sent = false;
                    return Attempt::Failed(e);
                }
            }
        } else {
            None
        };
        if let Some(config) = &backup {
            let (id, bytes) = (job.id.clone(), config.clone().into_bytes());
            let stored = self
                .inner
                .store
                .off_thread(move |store| async move { store.put_backup(&id, &bytes).await })
                .await;
            if stored.is_err() {
                // A script without the backup that was asked for is not run.
                return Attempt::Failed(ExecError {
                    code: "backup".into(),
                    message: "the backup could not be stored, so the script was not run".into(),
                    category: None,
                    maybe_sent: false,
                });
            }
        }
        let planned = match job.rollback_after_secs {
            Some(secs) if !transport.supports_rollback() => {
                return Attempt::Failed(ExecError {
                    code: ROLLBACK_UNSUPPORTED.into(),
                    message: format!(
                        "rollback_after was asked for, but the {} transport cannot arm a dead-man \
                         rollback; nothing was sent (window {})",
                        transport.plugin().info.name,
                        rollback::format_window(secs)
                    ),
                    category: None,
                    maybe_sent: false,
                });
            }
            Some(secs) => Some((secs, rollback::plan(&job.id, secs, Utc::now()))),
            None => None,
        };
        if !marked {
            // The guard is on record before anything of it reaches the router.
            let mut mark = vec![JobTransition::MarkSent];
            if let Some((_, guard)) = &planned {
                mark.push(JobTransition::Guard(guard.clone()));
            }
            if let Err(e) = self.commit_one(&job.id, mark).await {
                tracing::error!(job = %job.id, error = %e, "could not mark a job sent; not sending");
                return Attempt::Unrecorded;
            }
        }
        // From here the script may reach the device: no shutdown, only the deadline.
        let guard = match planned {
            Some((secs, guard)) => match self
                .arm(job, &transport, &target, secs, guard, deadline)
                .await
            {
                Ok(guard) => Some((secs, guard)),
                Err(e) => return Attempt::Failed(e),
            },
            None => None,
        };
        // A guarded script must end before its router restores itself.
        let script_deadline = match &guard {
            Some((_, g)) => deadline
                .min(Instant::now() + (g.fires_at - Utc::now()).to_std().unwrap_or(Duration::ZERO)),
            None => deadline,
        };
        let ran = tokio::time::timeout_at(
            script_deadline,
            execute::script(&transport, &target, &job.script, false),
        )
        .await;
        if let Some((secs, guard)) = guard {
            // Whatever the script did, the router is reached again or it rolls back.
            match rollback::settle(&transport, &target, &guard, || signalled(shutdown)).await {
                rollback::Settled::Disarmed => {
                    let mut done = guard;
                    done.disarmed_at = Some(Utc::now());
                    if let Err(e) = self
                        .commit_one(&job.id, vec![JobTransition::Guard(done)])
                        .await
                    {
                        tracing::error!(job = %job.id, error = %e, "could not record a disarmed rollback");
                    }
                }
                rollback::Settled::RolledBack(error) => {
                    self.watch_return(job, &transport, &target, guard, secs, shutdown);
                    return Attempt::Failed(error);
                }
                rollback::Settled::Stopped => {
                    tracing::warn!(job = %job.id, "stopping with the job's rollback armed; it is failed as interrupted on the next start");
                    return Attempt::Abandoned;
                }
            }
        }
        match ran {
            Ok(Ok(run)) => {
                let diff = match &backup {
                    Some(before) => {
                        self.changes(job, &transport, &target, before, deadline)
                            .await
                    }
                    None => None,
                };
                Attempt::Done(ScriptOutcome {
                    output: run.output,
                    diff,
                })
            }
            Ok(Err(e)) => Attempt::Failed(e),
            Err(_) => Attempt::Failed(ExecError {
                code: JOB_TIMEOUT.into(),
                message: format!(
                    "the job did not finish within {}s; the script may have run",
                    self.inner.settings.job_timeout.as_secs_f64()
                ),
                category: None,
                maybe_sent: true,
            }),
        }
    }

    /// Arms the job's dead-man rollback on its router and records what was armed. A
    /// failure stops the script from running.
    async fn arm(
        &self,
        job: &Job,
        transport: &Transport,
        target: &transport::Target,
        secs: u32,
        guard: crate::store::RollbackGuard,
        deadline: Instant,
    ) -> Result<crate::store::RollbackGuard, ExecError> {
        let armed = match tokio::time::timeout_at(
            deadline,
            transport.arm_rollback(target, &guard.name, secs),
        )
        .await
        {
            Ok(Ok(armed)) => armed,
            Ok(Err(e)) => {
                let mut e = ExecError::from(e);
                e.message = format!(
                    "arming the dead-man rollback failed, so the script was not run: {}",
                    e.message
                );
                if e.maybe_sent {
                    self.disarm_leftovers(job, transport, target, guard, deadline)
                        .await;
                }
                return Err(e);
            }
            Err(_) => {
                self.disarm_leftovers(job, transport, target, guard, deadline)
                    .await;
                return Err(ExecError {
                    code: JOB_TIMEOUT.into(),
                    message: "arming the dead-man rollback did not finish in time, so the script \
                              was not run"
                        .into(),
                    category: None,
                    maybe_sent: true,
                });
            }
        };
        let guard = rollback::armed(guard, &armed);
        if let Err(e) = self
            .commit_one(&job.id, vec![JobTransition::Guard(guard.clone())])
            .await
        {
            // The plan is on record already; the details only name what was armed.
            tracing::warn!(job = %job.id, error = %e, "could not record what the rollback armed");
        }
        Ok(guard)
    }

    /// After an arm that failed part way: removes whatever of the guard reached the router
    /// (its names are known), so it does not restore a backup over a script that never
    /// ran. Best effort: what cannot be removed stays on the job's record.
    async fn disarm_leftovers(
        &self,
        job: &Job,
        transport: &Transport,
        target: &transport::Target,
        mut guard: crate::store::RollbackGuard,
        deadline: Instant,
    ) {
        let armed = rollback::armed_of(&guard);
        let cleared =
            tokio::time::timeout_at(deadline, transport.disarm_rollback(target, &armed)).await;
        if !matches!(cleared, Ok(Ok(()))) {
            tracing::warn!(job = %job.id, "a partly armed rollback could not be removed");
            return;
        }
        guard.disarmed_at = Some(Utc::now());
        if let Err(e) = self
            .commit_one(&job.id, vec![JobTransition::Guard(guard)])
            .await
        {
            tracing::warn!(job = %job.id, error = %e, "could not record a removed rollback");
        }
    }

    /// Looks for a rolled-back router's return in the background (awaited by
    /// [`Runner::drain`]) and records it on the job.
    fn watch_return(
        &self,
        job: &Job,
        transport: &Transport,
        target: &transport::Target,
        guard: crate::store::RollbackGuard,
        secs: u32,
        shutdown: &Shutdown,
    ) {
        let runner = self.clone();
        let (id, transport, target, shutdown) = (
            job.id.clone(),
            transport.clone(),
            target.clone(),
            shutdown.clone(),
        );
        let mut background = lock(&self.inner.background);
        while background.try_join_next().is_some() {}
        background.spawn(async move {
            if !rollback::watch_return(&transport, &target, &guard, secs, shutdown).await {
                tracing::warn!(job = %id, "the router did not answer again after its rollback");
                return;
            }
            tracing::info!(job = %id, "the router answered again after restoring itself");
            // The job's failure is committed by its own task; wait for it a little.
            for _ in 0..50 {
                match runner.commit_one(&id, vec![JobTransition::Returned]).await {
                    Ok(_) => return,
                    Err(RunnerError::Store(StoreError::IllegalTransition { .. })) => {
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                    Err(e) => {
                        tracing::error!(job = %id, error = %e, "could not record the router's return");
                        return;
                    }
                }
            }
        });
    }

    /// The export after a script that ran, diffed against the one before it. A failure
    /// here leaves the job without a diff, not failed: the script has run.
    async fn changes(
        &self,
        job: &Job,
        transport: &Transport,
        target: &transport::Target,
        before: &str,
        deadline: Instant,
    ) -> Option<(String, crate::store::JobChanges)> {
        match tokio::time::timeout_at(deadline, transport.backup(target, None)).await {
            Ok(Ok(after)) => Some(super::diff::diff(before, &after.config)),
            Ok(Err(e)) => {
                tracing::warn!(job = %job.id, error = %e, "no export after the script; the job has no diff");
                None
            }
            Err(_) => {
                tracing::warn!(job = %job.id, "the export after the script timed out; the job has no diff");
                None
            }
        }
    }

    async fn finish_completed(&self, id: &str, run: ScriptOutcome) -> Outcome {
        if let Some((diff, changes)) = run.diff {
            let job = id.to_owned();
            let stored = self
                .inner
                .store
                .off_thread(move |store| async move { store.put_diff(&job, &diff, changes).await })
                .await;
            if stored.is_err() {
                tracing::warn!(job = %id, "the diff of what the script changed could not be stored");
            }
        }
        let complete = JobTransition::Complete {
            output: Some(run.output),
        };
        match self.commit_one(id, vec![complete]).await {
            Ok(_) => Outcome::Completed,
            Err(e) => {
                tracing::error!(job = %id, error = %e, "could not record a completed job");
                Outcome::LeftRunning
            }
        }
    }

    /// Records a failure after `before` (for a job not yet claimed: its claim).
    async fn finish_failed(
        &self,
        id: &str,
        mut before: Vec<JobTransition>,
        error: &ExecError,
    ) -> Outcome {
        let code = error.code.clone();
        before.push(JobTransition::Fail {
            error: JobError {
                code: error.code.clone(),
                message: error.message.clone(),
            },
            output: None,
        });
        match self.commit_one(id, before).await {
            Ok(_) if code == SKIPPED => Outcome::Skipped,
            Ok(_) => Outcome::Failed,
            Err(RunnerError::Store(_)) => Outcome::NotRun,
            Err(e) => {
                tracing::error!(job = %id, error = %e, "could not record a failed job");
                Outcome::LeftRunning
            }
        }
    }

    /// Puts a job whose script was not sent back to pending, for the next start.
    async fn requeue(&self, id: &str) -> Outcome {
        match self.commit_one(id, vec![JobTransition::Requeue]).await {
            Ok(_) => Outcome::LeftPending,
            Err(e) => {
                // Still running and unsent: recovery requeues it.
                tracing::warn!(job = %id, error = %e, "could not requeue a job at shutdown");
                Outcome::LeftPending
            }
        }
    }

    /// Seed 001's asynchronous job: created once per idempotency key; an express job starts
    /// now, in the background (await it with [`Runner::drain`]), any other waits for
    /// [`Runner::serve`]. A job found under the key is returned and never run again.
    /// A job created is audited as submitted by `actor`, in the same commit.
    pub async fn submit_async(
        &self,
        input: JobInput,
        actor: &str,
        shutdown: Shutdown,
    ) -> Result<(Job, bool), RunnerError> {
        let (job, created) = self
            .inner
            .store
            .submit_job(input, actor, Utc::now())
            .await?;
        if created {
            if job.express_execute {
                let runner = self.clone();
                let selection = Selection::Jobs(vec![job.id.clone()]);
                let mut background = lock(&self.inner.background);
                while background.try_join_next().is_some() {}
                background.spawn(async move {
                    if let Err(e) = runner
                        .run_jobs(selection, RunOptions::default(), shutdown)
                        .await
                    {
                        tracing::error!(error = %e, "an express job could not run");
                    }
                });
            } else {
                self.inner.wake.notify_one();
            }
        }
        Ok((job, created))
    }

    /// Waits for every express job started by `submit_async`.
    pub async fn drain(&self) {
        loop {
            let next = {
                let mut background = lock(&self.inner.background);
                if background.is_empty() {
                    return;
                }
                // Taken out so the lock is not held across the wait.
                std::mem::take(&mut *background)
            };
            let mut next = next;
            while next.join_next().await.is_some() {}
        }
    }

    /// Runs every pending job once, as the engine does on start after `Store::recover`:
    /// the jobs of a schedule run with that schedule's options, the others with defaults.
    /// Jobs left `running` are not touched: recovery has settled them already.
    pub async fn resume_pending(&self, shutdown: Shutdown) -> Result<RunReport, RunnerError> {
        if self.inner.store.as_postgres().is_some() {
            // Every engine's queue reader takes them ([`Runner::serve`]).
            return Ok(RunReport::default());
        }
        let (pending, _) = self.pending_jobs(None, true).await?;
        let mut total = RunReport::default();
        let mut groups: Vec<(Origin, Vec<Job>)> = Vec::new();
        for job in pending {
            let origin = job
                .origin
                .as_ref()
                .map(|o| (o.schedule_id.clone(), o.occurrence));
            match groups.iter_mut().find(|(o, _)| *o == origin) {
                Some((_, jobs)) => jobs.push(job),
                None => groups.push((origin, vec![job])),
            }
        }
        let mut runs = JoinSet::new();
        for (origin, jobs) in groups {
            let options = match &origin {
                Some((schedule_id, _)) => self
                    .inner
                    .store
                    .get_schedule(schedule_id)
                    .await
                    .map(|s| RunOptions::for_schedule(&s))
                    .unwrap_or_default(),
                None => RunOptions::default(),
            };
            let runner = self.clone();
            let shutdown = shutdown.clone();
            runs.spawn(async move {
                runner
                    .run_jobs(Selection::Read(jobs), options, shutdown)
                    .await
            });
        }
        while let Some(done) = runs.join_next().await {
            if let Ok(Ok(report)) = done {
                total.add(&report);
            }
        }
        Ok(total)
    }

    /// Pending jobs queued after job number `after` (all of them with `None`), oldest
    /// first; with `scheduled` false, only the jobs of seed 001 (those without a schedule).
    /// Also the number of the newest pending job read, kept or not.
    async fn pending_jobs(
        &self,
        after: Option<u64>,
        scheduled: bool,
    ) -> Result<(Vec<Job>, Option<u64>), RunnerError> {
        self.inner
            .store
            .off_thread(move |store| async move {
                let mut out = Vec::new();
                let mut page = Page::first(crate::store::MAX_PAGE);
                page.after = after;
                loop {
                    let jobs = store.active_jobs(JobStatus::Pending, &page).await?;
                    let Some(last) = jobs.last() else { break };
                    page.after = Some(last.seq_id);
                    out.extend(
                        jobs.into_iter()
                            .filter(|job| scheduled || job.origin.is_none()),
                    );
                }
                Ok((out, page.after))
            })
            .await
            .map_err(RunnerError::Store)
    }

    /// Runs queued seed 001 jobs (not express) until shutdown. Woken by `submit_async`, it
    /// reads only the jobs queued since the last it handed out and starts them at once,
    /// beside the ones still at work, so a slow router holds back nobody queued after it.
    /// Every `poll_interval` it reads every pending job, for jobs queued by another path.
    /// Jobs of schedules are left to the scheduler, which runs them with their run's
    /// options.
    pub async fn serve(&self, shutdown: Shutdown) {
        if self.inner.store.as_postgres().is_some() {
            return self.serve_shared(shutdown).await;
        }
        // Jobs handed to a run and not back yet: a full read never hands them out twice.
        let in_flight: Arc<Mutex<HashSet<String>>> = Arc::default();
        let mut runs = JoinSet::new();
        let mut newest: Option<u64> = None;
        let mut everything = true;
        loop {
            let after = if everything { None } else { newest };
            match self.pending_jobs(after, false).await {
                Ok((jobs, last_read)) => {
                    // Past the scheduled jobs read too: those are the scheduler's, and
                    // reading them again at every wake-up would cost a launch's worth.
                    newest = newest.max(last_read);
                    let fresh: Vec<Job> = {
                        let mut handed = lock(&in_flight);
                        jobs.into_iter()
                            .filter(|j| handed.insert(j.id.clone()))
                            .collect()
                    };
                    if !fresh.is_empty() {
                        self.hand_out(
                            fresh,
                            Selection::Read,
                            RunOptions::default(),
                            &in_flight,
                            &shutdown,
                            &mut runs,
                        );
                    }
                }
                Err(e) => tracing::error!(error = %e, "could not read the pending jobs"),
            }
            while runs.try_join_next().is_some() {}
            everything = tokio::select! {
                biased;
                () = shutdown.clone().wait() => break,
                () = self.inner.wake.notified() => false,
                () = tokio::time::sleep(self.inner.settings.poll_interval) => true,
            };
        }
        while runs.join_next().await.is_some() {}
        self.drain().await;
    }
}

impl Runner {
    /// [`Runner::serve`] on a store several engines share: every engine starts any
    /// pending job. Woken by jobs queued here or announced by another engine, by a job
    /// of its own ending, and every `poll_interval`, it reads every pending job and
    /// chooses those it may start: the jobs of a schedule run with their schedule's
    /// options; those of a run with a canary batch or a failure-rate halt only on the
    /// engine holding the scheduler lease, so one engine judges the run (its launcher,
    /// or after it stopped, the engine that took the lease over); and none of a run this
    /// engine's launcher is starting. Of those it claims as many as it has free slots in
    /// one transaction, passing over the jobs other engines hold or are claiming
    /// (`SKIP LOCKED`), so engines share a queue without racing for its jobs.
    async fn serve_shared(&self, shutdown: Shutdown) {
        let in_flight: Arc<Mutex<HashSet<String>>> = Arc::default();
        let mut runs = JoinSet::new();
        loop {
            // With every slot taken, there is nothing to claim: the queue is read again
            // once a job ends.
            let mut room = self.inner.global.available_permits();
            let pending = if room == 0 {
                Ok((Vec::new(), None))
            } else {
                self.pending_jobs(None, true).await
            };
            match pending {
                Ok((jobs, _)) => {
                    for (options, jobs) in self.shareable(jobs, &in_flight).await {
                        if room == 0 {
                            break;
                        }
                        let ids: Vec<String> = jobs.into_iter().map(|j| j.id).collect();
                        match self.claim_among(&ids, room).await {
                            Ok(claimed) if !claimed.is_empty() => {
                                room = room.saturating_sub(claimed.len());
                                let mut handed = lock(&in_flight);
                                for job in &claimed {
                                    handed.insert(job.id.clone());
                                }
                                drop(handed);
                                self.hand_out(
                                    claimed,
                                    Selection::Claimed,
                                    options,
                                    &in_flight,
                                    &shutdown,
                                    &mut runs,
                                );
                            }
                            Ok(_) => {}
                            Err(e) => tracing::warn!(error = %e, "could not claim pending jobs"),
                        }
                    }
                }
                Err(e) => tracing::error!(error = %e, "could not read the pending jobs"),
            }
            while runs.try_join_next().is_some() {}
            tokio::select! {
                biased;
                () = shutdown.clone().wait() => break,
                () = self.inner.wake.notified() => {}
                () = self.inner.store.jobs_changed() => {}
                () = tokio::time::sleep(self.inner.settings.poll_interval) => {}
            }
            // Jobs end many at a time: one read answers the ends of a short while.
            tokio::time::sleep(GATHER).await;
        }
        while runs.join_next().await.is_some() {}
        self.drain().await;
    }

    /// Claims up to `room` of the pending jobs `ids` for this engine, in one transaction.
    async fn claim_among(&self, ids: &[String], room: usize) -> Result<Vec<Job>, StoreError> {
        let Some(shared) = self.inner.store.as_postgres() else {
            return Ok(Vec::new());
        };
        shared
            .store
            .claim_among(&shared.engine, ids, room, CLAIM_TTL, Utc::now())
            .await
    }

    /// Runs `jobs` (handed out, in `in_flight`) in `runs` as the selection `read_as`
    /// makes of them (read, or claimed already), and takes them out of `in_flight` when
    /// the run is over.
    fn hand_out(
        &self,
        jobs: Vec<Job>,
        read_as: fn(Vec<Job>) -> Selection,
        options: RunOptions,
        in_flight: &Arc<Mutex<HashSet<String>>>,
        shutdown: &Shutdown,
        runs: &mut JoinSet<()>,
    ) {
        let ids: Vec<String> = jobs.iter().map(|j| j.id.clone()).collect();
        let selection = read_as(jobs);
        let (runner, in_flight) = (self.clone(), in_flight.clone());
        let shutdown = shutdown.clone();
        runs.spawn(async move {
            let run = runner.run_jobs(selection, options, shutdown);
            if let Err(e) = run.await {
                tracing::error!(error = %e, "queued jobs could not run");
            }
            let mut handed = lock(&in_flight);
            for id in &ids {
                handed.remove(id);
            }
        });
    }

    /// The pending jobs this engine may start now (none it has handed out), grouped by
    /// the options they run with.
    async fn shareable(
        &self,
        jobs: Vec<Job>,
        in_flight: &Mutex<HashSet<String>>,
    ) -> Vec<(RunOptions, Vec<Job>)> {
        let lease = self
            .inner
            .store
            .as_postgres()
            .is_some_and(|shared| shared.holds_scheduler_lease());
        let mut groups: Vec<(Origin, Vec<Job>)> = Vec::new();
        {
            let handed = lock(in_flight);
            let held = lock(&self.inner.held_runs);
            for job in jobs {
                let origin = job
                    .origin
                    .as_ref()
                    .map(|o| (o.schedule_id.clone(), o.occurrence));
                if handed.contains(&job.id) || origin.as_ref().is_some_and(|o| held.contains_key(o))
                {
                    continue;
                }
                match groups.iter_mut().find(|(o, _)| *o == origin) {
                    Some((_, jobs)) => jobs.push(job),
                    None => groups.push((origin, vec![job])),
                }
            }
        }
        let mut out = Vec::with_capacity(groups.len());
        for (origin, jobs) in groups {
            let options = match &origin {
                None => RunOptions::default(),
                Some((schedule_id, _)) => match self.inner.store.get_schedule(schedule_id).await {
                    Ok(schedule) => RunOptions::for_schedule(&schedule),
                    // Deleted since: its jobs were failed with it, or will be.
                    Err(StoreError::NotFound { .. }) => continue,
                    Err(e) => {
                        tracing::warn!(schedule = %schedule_id, error = %e, "cannot read a schedule's options; its jobs wait");
                        continue;
                    }
                },
            };
            if (options.canary > 0 || options.halt_failure_rate.is_some()) && !lease {
                continue;
            }
            out.push((options, jobs));
        }
        out
    }
}

impl RunReport {
    fn add(&mut self, other: &RunReport) {
        self.completed += other.completed;
        self.failed += other.failed;
        self.skipped += other.skipped;
        self.halted += other.halted;
        self.left_pending += other.left_pending;
        self.left_running += other.left_running;
        self.not_run += other.not_run;
    }
}

/// The failure-rate halt's reason, once the rate has passed the threshold.
fn failure_rate_halt(options: &RunOptions, tally: &Tally) -> Option<String> {
    let threshold = options.halt_failure_rate?;
    let (failed, finished) = tally.rate();
    if finished == 0 || finished < options.halt_min_finished {
        return None;
    }
    let rate = failed as f64 / finished as f64;
    (rate > threshold).then(|| {
        format!(
            "not started: {failed} of {finished} finished jobs failed ({:.0}%), above the {:.0}% threshold",
            rate * 100.0,
            threshold * 100.0
        )
    })
}

enum Dispatch {
    Started,
    Stopped(Job),
    Halted(Job, String),
}

struct ScriptOutcome {
    output: String,
    /// What the script changed in the export, when a backup was taken before it.
    diff: Option<(String, crate::store::JobChanges)>,
}

/// A job's run slot: its permit within the run, within its organization's share of the
/// runner, then within the runner.
type Slot = (
    OwnedSemaphorePermit,
    OwnedSemaphorePermit,
    OwnedSemaphorePermit,
);

/// How a job's work on its site ended, before that is recorded.
enum End {
    /// Nothing left to record.
    Outcome(Outcome),
    Completed(ScriptOutcome),
    /// Failed, after these transitions (the claim, for a job never claimed).
    Failed(Vec<JobTransition>, ExecError),
    /// The site was offline and the schedule said to skip it.
    Skipped(ExecError),
    /// Stopped before anything was sent: back to pending.
    Requeue,
}

enum Attempt {
    Done(ScriptOutcome),
    Skipped(String),
    Failed(ExecError),
    /// Shutdown before anything was sent.
    Stopped,
    /// The `sent` mark could not be written; nothing was sent, the job stays running.
    Unrecorded,
    /// Shutdown while the router of a guarded script did not answer: the job stays
    /// running and sent, for recovery.
    Abandoned,
}

/// What an SSH transport needs to know of `site` as target options; the key itself
/// stays in the host.
pub(crate) fn ssh_options(site: &crate::store::Site) -> Vec<(String, String)> {
    let mut options = Vec::new();
    if let Some(platform) = &site.ssh.platform {
        options.push(("ssh.platform".to_owned(), platform.clone()));
    }
    if site.has_private_key {
        options.push(("ssh.auth".to_owned(), "key".to_owned()));
    }
    options
}

/// What the host holds for `site`'s SSH sessions: its private key, its host keys, and
/// where the first key seen is stored when none is pinned.
pub(crate) async fn site_ssh(
    store: &Arc<Backend>,
    site: &crate::store::Site,
) -> Result<Arc<crate::plugins::SiteSsh>, StoreError> {
    let private_key = store
        .site_private_key(&site.id)
        .await?
        .map(|(key, passphrase)| {
            (
                key.expose().to_owned(),
                passphrase.map(|p| p.expose().to_owned()),
            )
        });
    let (store, id) = (store.clone(), site.id.clone());
    let remember = move |fingerprint: String| {
        let (store, id) = (store.clone(), id.clone());
        Box::pin(async move {
            match store
                .remember_host_key(&id, &fingerprint, chrono::Utc::now())
                .await
            {
                Ok(verdict) => verdict,
                Err(e) => Err(format!("(the key could not be stored: {e})")),
            }
        }) as std::pin::Pin<Box<dyn Future<Output = Result<(), String>> + Send>>
    };
    Ok(Arc::new(crate::plugins::SiteSsh {
        site_id: site.id.clone(),
        private_key,
        host_keys: site.ssh.host_keys.clone(),
        remember: Some(Box::new(remember)),
        refused: std::sync::Mutex::new(None),
    }))
}

#[cfg(test)]
mod tests;
