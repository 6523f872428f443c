//! The store as one interface: [`Operations`] is every domain operation the engine uses
//! with the same meaning on one engine and on many, implemented by the redb store (the
//! embedded default) and by the PostgreSQL store (several engines on one database).
//! [`Backend`] is the store an engine runs on, either of the two, and adds what depends
//! on which engine asks: a job write is a claim and is fenced by its holder
//! ([`Backend::change_jobs`]), a launch carries the scheduler's fencing token
//! ([`Backend::launch`]), recovery settles this engine's own work ([`Backend::recover`]),
//! and notifications are claimed before they are delivered ([`Backend::due_events`]).
//!
//! The redb store's operations never wait on anything but its disk: they run at once
//! when polled. Work that reads or writes much ([`Backend::off_thread`]) is moved to a
//! blocking thread on redb, and awaited in place on PostgreSQL.

use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use tokio::sync::{Notify, oneshot};

use super::approvals::{ApprovalToken, Decision};
use super::listing::{ScheduleFilter, ScheduleListing};
use super::postgres::PgStore;
use super::postgres::changes::Change;
use super::schedules::Refusal;
use super::sites::Refused;
use super::{
    AuditEntry, AuditInput, Changes, Channel, ChannelInput, CommunityContent, CommunityScript,
    Endpoint, EventAttempt, Job, JobChanges, JobInput, JobStatus, JobTransition, LatestRun, Launch,
    LaunchPlan, OutboxEvent, Page, Recovery, Run, ScheduleInput, SchedulePatch, ScheduledScript,
    Secret, SecretGeneration, Site, SiteInput, Store, StoreError, Submitted, SummaryTask, Targets,
    Template, TemplateInput, TemplateVersion, User,
};

/// How long an engine holds a job it claimed, or a notification it is delivering,
/// without renewing the claim; an engine that stops for longer leaves them to the others.
pub const CLAIM_TTL: Duration = Duration::from_secs(30);

/// Whether `name` may name an engine in claims and leases.
pub fn valid_engine_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

/// The signing secret of `len` bytes kept as `file` in `data_dir` (the token key, the
/// notification key). On the embedded store it is that file, made on first start. On a
/// shared store it is kept sealed in the database, so every engine signs and checks with
/// the same one: the first engine to ask offers its own file (so what it signed before
/// still holds) or a new random secret, and a file that differs from the shared secret
/// is left unused, with a warning.
pub async fn signing_secret(
    shared: Option<&PgStore>,
    data_dir: &std::path::Path,
    file: &str,
    len: usize,
) -> Result<Vec<u8>, String> {
    let path = data_dir.join(file);
    let at = |reason| format!("{}: {reason}", path.display());
    let Some(store) = shared else {
        return super::read_or_create_secret(&path, len).map_err(at);
    };
    let local = super::existing_secret(&path, len).map_err(at)?;
    let offered = local.clone().unwrap_or_else(|| super::random_secret(len));
    let kept = store
        .shared_secret(file, &offered)
        .await
        .map_err(|e| format!("the shared {file}: {e}"))?;
    if kept.len() != len {
        return Err(format!(
            "the shared {file} in {} holds {} bytes, not {len}",
            store.address(),
            kept.len()
        ));
    }
    if local.is_some_and(|local| local != kept) {
        tracing::warn!(
            "{} is not the {file} the engines on {} share, and is not used: the shared one is",
            path.display(),
            store.address()
        );
    }
    Ok(kept)
}

/// The name this engine goes by on a shared store: `configured`, or the one kept in
/// `data_dir` (made on first start from the host name and a random suffix), so an engine
/// restarted on the same data dir settles the work it left in flight.
pub fn engine_name(
    data_dir: &std::path::Path,
    configured: Option<&str>,
) -> Result<String, StoreError> {
    if let Some(name) = configured {
        return Ok(name.to_owned());
    }
    let path = data_dir.join(ENGINE_FILE);
    let io = |source| StoreError::Io {
        path: path.display().to_string(),
        source,
    };
    match std::fs::read_to_string(&path) {
        Ok(text) if valid_engine_name(text.trim()) => return Ok(text.trim().to_owned()),
        Ok(_) => {
            return Err(StoreError::invalid(
                "store",
                "engine",
                format!("{} does not hold an engine name", path.display()),
            ));
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(io(e)),
    }
    let host: String = std::fs::read_to_string("/etc/hostname")
        .unwrap_or_default()
        .trim()
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        .take(40)
        .collect();
    let id = super::crypto::new_id();
    let suffix = &id[id.len().saturating_sub(8)..];
    let name = if host.is_empty() {
        format!("engine-{suffix}")
    } else {
        format!("{host}-{suffix}")
    };
    std::fs::write(&path, format!("{name}\n")).map_err(io)?;
    Ok(name)
}

/// The file in the data dir that keeps the engine's name.
pub const ENGINE_FILE: &str = "engine-name";

/// Declares [`Operations`] and implements it for both stores and for [`Backend`], from
/// one list of signatures: the redb store answers with its synchronous operation of the
/// same name, the PostgreSQL store with its async one.
macro_rules! operations {
    (
        $(#[$doc:meta])*
        $vis:vis trait $trait:ident: $bound:path {
            $( $(#[$attr:meta])* fn $name:ident(&self $(, $arg:ident: $ty:ty)* $(,)?) -> $ret:ty; )*
        }
    ) => {
        $(#[$doc])*
        $vis trait $trait: $bound {
            $( $(#[$attr])* fn $name(&self $(, $arg: $ty)*) -> impl Future<Output = $ret> + Send; )*
        }

        impl $trait for Store {
            $( fn $name(&self $(, $arg: $ty)*) -> impl Future<Output = $ret> + Send {
                std::future::ready(Store::$name(self $(, $arg)*))
            } )*
        }

        impl $trait for PgStore {
            $( fn $name(&self $(, $arg: $ty)*) -> impl Future<Output = $ret> + Send {
                PgStore::$name(self $(, $arg)*)
            } )*
        }

        impl $trait for Backend {
            $( fn $name(&self $(, $arg: $ty)*) -> impl Future<Output = $ret> + Send {
                async move {
                    match self {
                        Backend::Redb(store) => Store::$name(store $(, $arg)*),
                        Backend::Postgres(shared) => PgStore::$name(&shared.store $(, $arg)*).await,
                    }
                }
            } )*
        }
    };
}

operations! {
    /// The domain operations both stores offer with the same meaning; see each store for
    /// what they do.
    pub trait Operations: Sync {
    fn active_jobs(&self, status: JobStatus, page: &Page<u64>) -> Result<Vec<Job>, StoreError>;
    fn append_audit(&self, entry: AuditInput) -> Result<u64, StoreError>;
    fn append_event(&self, kind: &str, payload: serde_json::Value, now: DateTime<Utc>) -> Result<u64, StoreError>;
    fn approval_binding(&self, schedule: &ScheduledScript) -> Result<(String, Targets), StoreError>;
    fn channel_secrets(&self, organization: &str, id: &str, now: DateTime<Utc>) -> Result<BTreeMap<String, String>, StoreError>;
    fn check_import(&self, organization: &str, inputs: &[SiteInput]) -> Result<Refused, StoreError>;
    fn create_channel(&self, input: ChannelInput, now: DateTime<Utc>) -> Result<Channel, StoreError>;
    fn create_job(&self, input: JobInput, now: DateTime<Utc>) -> Result<(Job, bool), StoreError>;
    fn create_jobs(&self, inputs: Vec<JobInput>, now: DateTime<Utc>) -> Result<Vec<(Job, bool)>, StoreError>;
    fn create_schedule(&self, input: ScheduleInput, now: DateTime<Utc>) -> Result<ScheduledScript, StoreError>;
    fn create_schedules(&self, inputs: Vec<ScheduleInput>, now: DateTime<Utc>) -> Result<Vec<ScheduledScript>, StoreError>;
    fn create_site(&self, input: SiteInput, now: DateTime<Utc>) -> Result<Site, StoreError>;
    fn create_site_by(&self, input: SiteInput, actor: &str, now: DateTime<Utc>) -> Result<Site, StoreError>;
    fn create_template(&self, org: &str, author: &str, input: TemplateInput, now: DateTime<Utc>) -> Result<Template, StoreError>;
    fn create_user(&self, user: &User) -> Result<bool, StoreError>;
    fn dead_events(&self, organization: &str, page: &Page<u64>) -> Result<Vec<OutboxEvent>, StoreError>;
    fn delete_channel(&self, organization: &str, id: &str) -> Result<Channel, StoreError>;
    fn delete_schedule(&self, id: &str, by: &str, now: DateTime<Utc>) -> Result<(), StoreError>;
    fn delete_site(&self, id: &str) -> Result<(), StoreError>;
    fn delete_site_by(&self, id: &str, actor: &str, now: DateTime<Utc>) -> Result<Site, StoreError>;
    fn delete_template(&self, org: &str, id: &str, by: &str, now: DateTime<Utc>) -> Result<(), StoreError>;
    fn delete_user(&self, organization: &str, id: &str) -> Result<bool, StoreError>;
    fn due_schedules(&self, now: DateTime<Utc>, limit: usize) -> Result<Vec<ScheduledScript>, StoreError>;
    fn due_summaries(&self, now: DateTime<Utc>, limit: usize) -> Result<Vec<SummaryTask>, StoreError>;
    fn filter_schedules(&self, organization: &str, filter: &ScheduleFilter, offset: usize, limit: Option<usize>) -> Result<ScheduleListing, StoreError>;
    fn finish_community_job(&self, queued_at: i64, id: &str, outcome: Result<CommunityContent, (String, Option<DateTime<Utc>>)>, now: DateTime<Utc>) -> Result<CommunityScript, StoreError>;
    fn finish_summary(&self, task: &SummaryTask, summary: Option<&str>, retry_at: Option<DateTime<Utc>>) -> Result<(), StoreError>;
    fn get_backup(&self, id: &str) -> Result<Option<Vec<u8>>, StoreError>;
    fn get_channel(&self, organization: &str, id: &str) -> Result<Channel, StoreError>;
    fn get_community_script(&self, id: &str) -> Result<CommunityScript, StoreError>;
    fn get_diff(&self, id: &str) -> Result<Option<String>, StoreError>;
    fn get_event(&self, id: u64) -> Result<OutboxEvent, StoreError>;
    fn get_job(&self, id: &str) -> Result<Job, StoreError>;
    fn get_jobs(&self, ids: &[String]) -> Result<Vec<Job>, StoreError>;
    fn get_run(&self, schedule_id: &str, occurrence: u64) -> Result<Run, StoreError>;
    fn get_schedule(&self, id: &str) -> Result<ScheduledScript, StoreError>;
    fn get_site(&self, id: &str) -> Result<Site, StoreError>;
    fn get_template(&self, org: &str, id: &str) -> Result<Template, StoreError>;
    fn get_user(&self, organization: &str, id: &str) -> Result<User, StoreError>;
    fn import_sites(&self, organization: &str, inputs: Vec<SiteInput>, actor: &str, now: DateTime<Utc>) -> Result<Result<Vec<Site>, Refused>, StoreError>;
    fn job_by_idempotency_key(&self, organization: &str, key: &str) -> Result<Option<Job>, StoreError>;
    fn job_counts(&self) -> Result<Vec<(JobStatus, u64)>, StoreError>;
    fn jobs_for_site(&self, site_id: &str, page: &Page<u64>) -> Result<Vec<Job>, StoreError>;
    fn last_run(&self, schedule_id: &str) -> Result<Option<Run>, StoreError>;
    fn latest_runs(&self, schedule_ids: &[&str]) -> Result<Vec<LatestRun>, StoreError>;
    fn ledger_entry(&self, schedule_id: &str, occurrence: u64, site_id: &str) -> Result<Option<String>, StoreError>;
    fn list_audit(&self, page: &Page<u64>) -> Result<Vec<AuditEntry>, StoreError>;
    fn list_channels(&self, organization: &str) -> Result<Vec<Channel>, StoreError>;
    fn list_community_scripts(&self) -> Result<Vec<CommunityScript>, StoreError>;
    fn list_events(&self, page: &Page<u64>) -> Result<Vec<OutboxEvent>, StoreError>;
    fn list_runs(&self, schedule_id: &str, page: &Page<u64>) -> Result<Vec<Run>, StoreError>;
    fn list_schedules(&self, organization: &str, page: &Page<String>) -> Result<Vec<ScheduledScript>, StoreError>;
    fn list_sites(&self, organization: &str, page: &Page<String>) -> Result<Vec<Site>, StoreError>;
    fn list_templates(&self, org: &str) -> Result<Vec<Template>, StoreError>;
    fn next_community_job(&self, now: DateTime<Utc>) -> Result<Option<(i64, CommunityScript)>, StoreError>;
    fn next_due_at(&self, skip: &HashSet<String>) -> Result<Option<DateTime<Utc>>, StoreError>;
    fn notify_secret_generation(&self, organization: &str) -> Result<SecretGeneration, StoreError>;
    fn prune_events(&self, before: DateTime<Utc>, limit: usize) -> Result<usize, StoreError>;
    fn put_backup(&self, id: &str, backup: &[u8]) -> Result<(), StoreError>;
    fn put_diff(&self, id: &str, diff: &str, changes: JobChanges) -> Result<(), StoreError>;
    fn put_user(&self, user: &User) -> Result<(), StoreError>;
    fn remember_host_key(&self, id: &str, fingerprint: &str, now: DateTime<Utc>) -> Result<Result<(), String>, StoreError>;
    fn retry_dead_event(&self, organization: &str, id: u64, now: DateTime<Utc>) -> Result<OutboxEvent, StoreError>;
    fn rotate_channel_secret(&self, organization: &str, id: &str, secret: &str, grace: TimeDelta, actor: &str, now: DateTime<Utc>) -> Result<(Channel, Option<DateTime<Utc>>), StoreError>;
    fn rotate_notify_secret(&self, organization: &str, actor: &str, grace: TimeDelta, now: DateTime<Utc>) -> Result<SecretGeneration, StoreError>;
    fn run_jobs(&self, schedule_id: &str, occurrence: u64) -> Result<Vec<Job>, StoreError>;
    fn run_jobs_limited(&self, schedule_id: &str, occurrence: u64, limit: usize) -> Result<(Vec<Job>, usize), StoreError>;
    fn search_sites(&self, organization: &str, name_contains: Option<&str>, tag: Option<&str>, offset: usize, limit: usize) -> Result<(Vec<Site>, usize), StoreError>;
    fn set_next_launch(&self, id: &str, next: Option<DateTime<Utc>>, now: DateTime<Utc>) -> Result<ScheduledScript, StoreError>;
    fn site_ids_with_tag(&self, organization: &str, tag: &str) -> Result<Vec<String>, StoreError>;
    fn site_jobs(&self, site_id: &str, offset: usize, limit: usize) -> Result<(Vec<Job>, usize), StoreError>;
    fn site_password(&self, id: &str) -> Result<Secret, StoreError>;
    fn site_private_key(&self, id: &str) -> Result<Option<(Secret, Option<Secret>)>, StoreError>;
    fn site_with_password(&self, id: &str) -> Result<(Site, Secret), StoreError>;
    fn site_with_password_and_endpoint(&self, id: &str) -> Result<(Site, Secret, Endpoint), StoreError>;
    fn submit_community_script(&self, org: &str, by: &str, github_url: &str, readme_url: Option<&str>, refreshed_from: Option<&str>, now: DateTime<Utc>) -> Result<Submitted, StoreError>;
    fn template_version(&self, org: &str, id: &str, n: u64) -> Result<TemplateVersion, StoreError>;
    fn template_versions(&self, org: &str, id: &str) -> Result<Vec<TemplateVersion>, StoreError>;
    fn transition_each(&self, items: Vec<(String, Vec<JobTransition>)>, now: DateTime<Utc>) -> Result<Vec<Result<Job, StoreError>>, StoreError>;
    fn transition_job(&self, id: &str, transition: JobTransition, now: DateTime<Utc>) -> Result<Job, StoreError>;
    fn transition_jobs(&self, changes: Vec<(String, JobTransition)>, now: DateTime<Utc>) -> Result<Vec<Job>, StoreError>;
    fn update_schedule(&self, id: &str, patch: SchedulePatch, by: &str, now: DateTime<Utc>) -> Result<ScheduledScript, StoreError>;
    fn update_site(&self, id: &str, input: SiteInput, now: DateTime<Utc>) -> Result<Site, StoreError>;
    fn update_site_by(&self, id: &str, input: SiteInput, actor: &str, now: DateTime<Utc>) -> Result<Site, StoreError>;
    fn update_template(&self, org: &str, id: &str, by: &str, input: TemplateInput, expected_version: Option<u64>, now: DateTime<Utc>) -> Result<Template, StoreError>;
    }
}

/// The store an engine runs on.
#[derive(Debug)]
pub enum Backend {
    /// The embedded store, for one engine.
    Redb(Arc<Store>),
    /// A PostgreSQL database that several engines share.
    Postgres(Box<Shared>),
}

/// One engine's place on a shared PostgreSQL store.
#[derive(Debug)]
pub struct Shared {
    pub store: Arc<PgStore>,
    /// This engine's name in claims and leases; unique among the engines of a database.
    pub engine: String,
    /// Signalled when a schedule may have moved its next launch (here or on another
    /// engine), for the launcher.
    launches: Notify,
    /// Signalled when jobs were queued or put back, for the runner.
    jobs: Notify,
    /// Signalled when notifications were queued, for the deliverer.
    outbox: Notify,
    /// The scheduler lease's fencing token while this engine holds the lease, 0 while
    /// it does not (as of its launcher's last look).
    scheduler: std::sync::atomic::AtomicU64,
    /// Job changes waiting to share a transaction.
    changes: Arc<Mutex<Pending>>,
}

/// What a batch of job changes is answered: each job's outcome, inside the commit's.
type Changed = Result<Vec<Result<Job, StoreError>>, StoreError>;

/// Job changes queued for the next transaction, and whether a committer is at work.
#[derive(Default)]
struct Pending {
    writes: Vec<(Changes, oneshot::Sender<Changed>)>,
    committing: bool,
}

impl std::fmt::Debug for Pending {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pending")
            .field("queued", &self.writes.len())
            .field("committing", &self.committing)
            .finish()
    }
}

/// Commits the queued job changes of `engine`, batch after batch, until none is left:
/// each batch in one transaction, each caller answered with its own jobs' outcomes (or
/// the transaction's error). The transaction commits once for all of them, as the redb
/// store's group commit syncs once.
async fn commit_changes(store: Arc<PgStore>, engine: String, pending: Arc<Mutex<Pending>>) {
    loop {
        let writes = {
            let mut queue = pending.lock().unwrap_or_else(PoisonError::into_inner);
            if queue.writes.is_empty() {
                queue.committing = false;
                return;
            }
            std::mem::take(&mut queue.writes)
        };
        let sizes: Vec<usize> = writes.iter().map(|(items, _)| items.len()).collect();
        let (items, replies): (Vec<Changes>, Vec<_>) = writes.into_iter().unzip();
        let outcome = store
            .claim_and_transition(&engine, items.concat(), CLAIM_TTL, Utc::now())
            .await;
        match outcome {
            Ok(results) => {
                let mut results = results.into_iter();
                for (size, reply) in sizes.into_iter().zip(replies) {
                    let _ = reply.send(Ok(results.by_ref().take(size).collect()));
                }
            }
            Err(e) => {
                let message = e.to_string();
                let transient = e.is_transient();
                for reply in replies {
                    // Each caller gets the error; a transient one stays transient, so
                    // the caller knows to try again.
                    let _ = reply.send(Err(if transient {
                        StoreError::Unreachable {
                            address: store.address().to_owned(),
                            reason: message.clone(),
                        }
                    } else {
                        StoreError::Io {
                            path: store.address().to_owned(),
                            source: std::io::Error::other(message.clone()),
                        }
                    }));
                }
            }
        }
    }
}

impl Shared {
    /// Whether this engine held the scheduler lease when it last took or renewed it.
    pub fn holds_scheduler_lease(&self) -> bool {
        self.scheduler_token() != 0
    }

    /// The fencing token of the scheduler lease this engine holds; 0 when it holds none.
    pub fn scheduler_token(&self) -> u64 {
        self.scheduler.load(std::sync::atomic::Ordering::Acquire)
    }

    /// Records the token of the lease this engine now holds (0: none); returns the one
    /// it replaces.
    pub fn set_scheduler_token(&self, token: u64) -> u64 {
        self.scheduler
            .swap(token, std::sync::atomic::Ordering::AcqRel)
    }
}

impl Backend {
    /// The embedded store.
    pub fn redb(store: Store) -> Backend {
        Backend::Redb(Arc::new(store))
    }

    /// `store`, shared with other engines, as the engine named `engine`.
    pub fn postgres(store: PgStore, engine: impl Into<String>) -> Backend {
        Backend::Postgres(Box::new(Shared {
            store: Arc::new(store),
            engine: engine.into(),
            launches: Notify::new(),
            jobs: Notify::new(),
            outbox: Notify::new(),
            scheduler: std::sync::atomic::AtomicU64::new(0),
            changes: Arc::default(),
        }))
    }

    /// The embedded store, when the engine runs on it.
    pub fn as_redb(&self) -> Option<&Arc<Store>> {
        match self {
            Backend::Redb(store) => Some(store),
            Backend::Postgres(_) => None,
        }
    }

    /// The shared store and this engine's name on it, when the engine runs on one.
    pub fn as_postgres(&self) -> Option<&Shared> {
        match self {
            Backend::Redb(_) => None,
            Backend::Postgres(shared) => Some(shared),
        }
    }

    /// [`signing_secret`] on this store.
    pub async fn signing_secret(
        &self,
        data_dir: &std::path::Path,
        file: &str,
        len: usize,
    ) -> Result<Vec<u8>, String> {
        let shared = self.as_postgres().map(|shared| &*shared.store);
        signing_secret(shared, data_dir, file, len).await
    }

    /// Where the state is, for messages.
    pub fn describe(&self) -> String {
        match self {
            Backend::Redb(store) => store.path().display().to_string(),
            Backend::Postgres(shared) => format!("postgres://{}", shared.store.address()),
        }
    }

    /// Runs `work` on the store where it does not hold up the async workers: on a
    /// blocking thread for redb (whose operations wait on the disk), in place for
    /// PostgreSQL (whose operations wait on the network without holding a thread).
    pub async fn off_thread<T, E, F>(
        self: &Arc<Self>,
        work: impl FnOnce(Arc<Backend>) -> F + Send + 'static,
    ) -> Result<T, E>
    where
        F: Future<Output = Result<T, E>> + Send + 'static,
        T: Send + 'static,
        E: From<StoreError> + Send + 'static,
    {
        match &**self {
            Backend::Redb(_) => {
                let (store, runtime) = (self.clone(), tokio::runtime::Handle::current());
                tokio::task::spawn_blocking(move || runtime.block_on(work(store)))
                    .await
                    .unwrap_or_else(|e| {
                        Err(E::from(StoreError::Io {
                            path: "a store task".into(),
                            source: std::io::Error::other(e.to_string()),
                        }))
                    })
            }
            Backend::Postgres(_) => work(self.clone()).await,
        }
    }

    /// How many commits the store has made since it opened, when that says whether
    /// anything changed: only the redb store, which no other engine writes, knows.
    pub fn generation(&self) -> Option<u64> {
        match self {
            Backend::Redb(store) => Some(store.generation()),
            Backend::Postgres(_) => None,
        }
    }

    /// Resolves when a schedule may have moved its next launch since the last call
    /// (a change made while nobody waited is kept for the next waiter).
    pub async fn launches_changed(&self) {
        match self {
            Backend::Redb(store) => store.launches_changed().await,
            Backend::Postgres(shared) => shared.launches.notified().await,
        }
    }

    /// Wakes whoever waits in [`Backend::launches_changed`].
    pub fn wake_launcher(&self) {
        match self {
            Backend::Redb(store) => store.wake_launcher(),
            Backend::Postgres(shared) => shared.launches.notify_one(),
        }
    }

    /// Resolves when jobs were queued or put back by another engine since the last call;
    /// never on redb, where every job is queued through this engine.
    pub async fn jobs_changed(&self) {
        match self {
            Backend::Redb(_) => std::future::pending().await,
            Backend::Postgres(shared) => shared.jobs.notified().await,
        }
    }

    /// Resolves when notifications were queued by another engine since the last call;
    /// never on redb.
    pub async fn outbox_changed(&self) {
        match self {
            Backend::Redb(_) => std::future::pending().await,
            Backend::Postgres(shared) => shared.outbox.notified().await,
        }
    }

    /// Until the store is dropped, passes on what the other engines announce to whoever
    /// waits in [`Backend::launches_changed`], [`Backend::jobs_changed`] and
    /// [`Backend::outbox_changed`]. Nothing to do on redb.
    pub async fn listen(self: &Arc<Self>) -> Result<(), StoreError> {
        let Backend::Postgres(shared) = &**self else {
            return Ok(());
        };
        let mut listener = shared.store.listen().await?;
        let weak = Arc::downgrade(self);
        tokio::spawn(async move {
            while let Some(change) = listener.next().await {
                let Some(backend) = weak.upgrade() else {
                    return;
                };
                let Backend::Postgres(shared) = &*backend else {
                    return;
                };
                match change {
                    Change::Schedules => shared.launches.notify_one(),
                    Change::Jobs => shared.jobs.notify_one(),
                    Change::Outbox => shared.outbox.notify_one(),
                }
            }
        });
        Ok(())
    }

    /// Creates a job on behalf of `actor`, audited in the same commit, or returns the one
    /// created under the same idempotency key (then `false`). On redb the commit is
    /// shared with the other job writes queued meanwhile.
    pub async fn submit_job(
        &self,
        input: JobInput,
        actor: &str,
        now: DateTime<Utc>,
    ) -> Result<(Job, bool), StoreError> {
        match self {
            Backend::Redb(store) => store.submit_job(input, actor, now).await,
            Backend::Postgres(shared) => shared.store.create_job_by(input, actor, now).await,
        }
    }

    /// Moves several jobs, each through its own transitions, as this engine, in a commit
    /// shared with the other job changes queued meanwhile (redb's group commit; on
    /// PostgreSQL one transaction per batch). On PostgreSQL a pending job is claimed by
    /// this engine in that transaction (or refused, when another engine took it first),
    /// and a job in flight must be this engine's ([`StoreError::NotHeld`] otherwise).
    pub async fn change_jobs(
        &self,
        items: Changes,
        now: DateTime<Utc>,
    ) -> Result<Vec<Result<Job, StoreError>>, StoreError> {
        match self {
            Backend::Redb(store) => store.change_jobs(items, now).await,
            Backend::Postgres(shared) => {
                let (reply, answer) = oneshot::channel();
                let lead = {
                    let mut queue = shared
                        .changes
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner);
                    queue.writes.push((items, reply));
                    !std::mem::replace(&mut queue.committing, true)
                };
                if lead {
                    // A task of its own, so a caller that stops waiting stops nobody.
                    tokio::spawn(commit_changes(
                        shared.store.clone(),
                        shared.engine.clone(),
                        shared.changes.clone(),
                    ));
                }
                answer.await.unwrap_or_else(|_| {
                    Err(StoreError::Unreachable {
                        address: shared.store.address().to_owned(),
                        reason: "the commit holding this change ended without an answer".into(),
                    })
                })
            }
        }
    }

    /// Launches an occurrence (jobs and ledger in one transaction). `token` is the
    /// scheduler lease's fencing token on PostgreSQL, which refuses a stale one; redb has
    /// one scheduler and no lease.
    pub async fn launch(
        &self,
        plan: LaunchPlan,
        token: u64,
        now: DateTime<Utc>,
    ) -> Result<Launch, StoreError> {
        match self {
            Backend::Redb(store) => store.launch(plan, now),
            Backend::Postgres(shared) => shared.store.launch(plan, token, now).await,
        }
    }

    /// Settles this engine's work left in flight by its last stop: running jobs whose
    /// script may have been sent fail as interrupted, the others go back to pending.
    pub async fn recover(&self, now: DateTime<Utc>) -> Result<Recovery, StoreError> {
        match self {
            Backend::Redb(store) => store.recover(now),
            Backend::Postgres(shared) => shared.store.recover(&shared.engine, now).await,
        }
    }

    /// Records an attempt at delivering a notification this engine holds.
    pub async fn record_event_attempt(
        &self,
        id: u64,
        attempt: &EventAttempt<'_>,
    ) -> Result<OutboxEvent, StoreError> {
        match self {
            Backend::Redb(store) => store.record_event_attempt(id, attempt),
            Backend::Postgres(shared) => {
                shared
                    .store
                    .record_event_attempt(&shared.engine, id, attempt)
                    .await
            }
        }
    }

    /// Notifications due at `now`, at most `limit`, for this engine to deliver: on
    /// PostgreSQL each is claimed by this engine for [`CLAIM_TTL`], and one waiting behind
    /// an earlier pending event of its job is not taken.
    pub async fn due_events(
        &self,
        now: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<OutboxEvent>, StoreError> {
        match self {
            Backend::Redb(store) => store.due_events(now, limit),
            Backend::Postgres(shared) => {
                shared
                    .store
                    .claim_events(&shared.engine, now, limit, CLAIM_TTL)
                    .await
            }
        }
    }

    /// Keeps this engine's claims alive on the notifications `ids` it has taken and not
    /// yet settled (on PostgreSQL; nothing to do on redb, where no other engine takes
    /// them).
    pub async fn renew_event_claims(&self, ids: &[u64]) -> Result<(), StoreError> {
        match self {
            Backend::Redb(_) => Ok(()),
            Backend::Postgres(shared) => shared
                .store
                .renew_event_claims(&shared.engine, ids, CLAIM_TTL)
                .await
                .map(drop),
        }
    }

    /// Puts a due notification off until `at` without attempting it.
    pub async fn defer_event(&self, id: u64, at: DateTime<Utc>) -> Result<OutboxEvent, StoreError> {
        match self {
            Backend::Redb(store) => store.defer_event(id, at),
            Backend::Postgres(shared) => shared.store.defer_event(&shared.engine, id, at).await,
        }
    }
}

operations! {
    /// What the approval workflow asks of a store beyond [`Operations`], with the meaning
    /// the stores document. Crate-private: the decisions are the workflow's.
    pub(crate) trait Approvals: Operations {
        fn organization_users(&self, organization: &str) -> Result<Vec<User>, StoreError>;
        fn approval_token(&self, digest: &str) -> Result<Option<ApprovalToken>, StoreError>;
        fn request_authorization(
            &self,
            id: &str,
            tokens: &[ApprovalToken],
            decision: Decision,
            now: DateTime<Utc>,
        ) -> Result<(ScheduledScript, u64), StoreError>;
        #[allow(clippy::too_many_arguments)]
        fn authorize_schedule(
            &self,
            id: &str,
            by: &str,
            approval: &str,
            allow_self_approval: bool,
            next_launch_at: Option<DateTime<Utc>>,
            token: Option<&str>,
            decision: Decision,
            now: DateTime<Utc>,
        ) -> Result<Result<ScheduledScript, Refusal>, StoreError>;
        fn cancel_schedule(
            &self,
            id: &str,
            decision: Decision,
            now: DateTime<Utc>,
        ) -> Result<ScheduledScript, StoreError>;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_engine_keeps_the_name_it_made_on_first_start_unless_one_is_configured() {
        let dir = tempfile::tempdir().expect("tmp");
        let first = engine_name(dir.path(), None).expect("made");
        assert!(valid_engine_name(&first), "{first}");
        assert_eq!(engine_name(dir.path(), None).expect("kept"), first);
        let other = tempfile::tempdir().expect("tmp");
        assert_ne!(engine_name(other.path(), None).expect("made"), first);
        assert_eq!(
            engine_name(dir.path(), Some("engine-a")).expect("configured"),
            "engine-a"
        );
        std::fs::write(dir.path().join(ENGINE_FILE), "not a name\n").expect("write");
        assert!(engine_name(dir.path(), None).is_err());
    }

    #[test]
    fn engine_names_are_short_and_plain() {
        assert!(valid_engine_name("vm-01.a_b"));
        assert!(!valid_engine_name(""));
        assert!(!valid_engine_name("a b"));
        assert!(!valid_engine_name(&"x".repeat(65)));
    }
}
