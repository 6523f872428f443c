//! The PostgreSQL store against a real server (a private one per test, on loopback), and
//! the start of the conformance suite: behaviour both stores have is written once, over
//! [`Conformance`], and run against each.

use std::collections::BTreeSet;
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use yardmaster::approval::{self, OrgPolicy, Principal, SCOPE_AUTHORIZE};
use yardmaster::store::listing::{ScheduleFilter, ScheduleListing, ScheduleType};
use yardmaster::store::postgres::PgStore;
use yardmaster::store::postgres::changes::Change;
use yardmaster::store::{
    AuditEntry, Channel, ChannelInput, ChannelKind, CommunityContent, CommunityScript,
    CommunityStatus, CredentialKey, Endpoint, EventAttempt, INTERRUPTED, Job, JobChanges, JobError,
    JobInput, JobStatus, JobTransition, LatestRun, Launch, LaunchPlan, OutboxEvent, OutboxState,
    Page, Recovery, Recurrence, RecurrenceKind, RollbackGuard, Run, RunStatus, ScheduleInput,
    SchedulePatch, ScheduleStatus, ScheduledScript, Secret, SecretGeneration, Site, SiteInput,
    SiteOutcome, SiteState, Store, StoreError, Submitted, SummaryOf, SummaryTask, Template,
    TemplateInput, TemplateVersion, User,
};
use yardmaster_tests::postgres::Postgres;

fn t(secs: i64) -> DateTime<Utc> {
    Utc.timestamp_opt(1_800_000_000 + secs, 0)
        .single()
        .expect("valid instant")
}

fn input(site: &str, key: Option<&str>) -> JobInput {
    JobInput {
        organization: "org1".into(),
        site_id: site.into(),
        request_id: None,
        idempotency_key: key.map(str::to_owned),
        description: "Log test message".into(),
        script: ":log info test".into(),
        make_backup: false,
        express_execute: false,
        needs_acknowledgement: true,
        notify_url: None,
        rollback_after_secs: None,
        script_origin: None,
    }
}

fn ids(jobs: &[(Job, bool)]) -> Vec<String> {
    jobs.iter().map(|(j, _)| j.id.clone()).collect()
}

/// A lease long enough never to lapse during a test.
const LONG: Duration = Duration::from_secs(600);

/// Waits (polling) until `check` gives a value; panics after two minutes.
async fn eventually<T, F: Future<Output = Option<T>>>(
    what: &str,
    mut check: impl FnMut() -> F,
) -> T {
    let start = std::time::Instant::now();
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(
            start.elapsed() < yardmaster_tests::PATIENCE,
            "gave up waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

// ---------------------------------------------------------------------------------------
// The conformance suite: one test body, both stores.

/// The operations both stores offer with the same meaning, as an engine uses them.
trait Conformance {
    async fn create_jobs(
        &self,
        inputs: Vec<JobInput>,
        now: DateTime<Utc>,
    ) -> Result<Vec<(Job, bool)>, StoreError>;
    async fn get_jobs(&self, ids: &[String]) -> Result<Vec<Job>, StoreError>;
    async fn transition_each(
        &self,
        items: Vec<(String, Vec<JobTransition>)>,
        now: DateTime<Utc>,
    ) -> Result<Vec<Result<Job, StoreError>>, StoreError>;
    /// Takes up to `n` pending jobs to work on, oldest first.
    async fn take(&self, n: usize, now: DateTime<Utc>) -> Result<Vec<Job>, StoreError>;
    /// What the store does with the work in flight of an engine that stopped.
    async fn engine_stopped(&self, now: DateTime<Utc>) -> Result<Recovery, StoreError>;
    /// A schedule on `n` new sites, approved as an operator would approve it.
    async fn approved_schedule(&self, n: usize) -> (ScheduledScript, Vec<String>);
    /// Launches an occurrence as the scheduler does.
    async fn launch(&self, plan: LaunchPlan, now: DateTime<Utc>) -> Result<Launch, StoreError>;
    async fn create_site_by(&self, input: SiteInput, actor: &str) -> Result<Site, StoreError>;
    async fn import_sites(
        &self,
        organization: &str,
        inputs: Vec<SiteInput>,
    ) -> Result<Result<Vec<Site>, Vec<(usize, StoreError)>>, StoreError>;
    async fn update_site_by(&self, id: &str, input: SiteInput) -> Result<Site, StoreError>;
    async fn login(&self, id: &str) -> Result<(Site, Secret, Endpoint), StoreError>;
    async fn site_private_key(
        &self,
        id: &str,
    ) -> Result<Option<(Secret, Option<Secret>)>, StoreError>;
    async fn remember_host_key(
        &self,
        id: &str,
        key: &str,
    ) -> Result<Result<(), String>, StoreError>;
    async fn search_sites(
        &self,
        organization: &str,
        name_contains: Option<&str>,
        tag: Option<&str>,
        offset: usize,
        limit: usize,
    ) -> Result<(Vec<Site>, usize), StoreError>;
    async fn list_sites(
        &self,
        organization: &str,
        page: &Page<String>,
    ) -> Result<Vec<Site>, StoreError>;
    async fn site_ids_with_tag(
        &self,
        organization: &str,
        tag: &str,
    ) -> Result<Vec<String>, StoreError>;
    async fn site_jobs(
        &self,
        id: &str,
        offset: usize,
        limit: usize,
    ) -> Result<(Vec<Job>, usize), StoreError>;
    async fn list_audit(&self, page: &Page<u64>) -> Result<Vec<AuditEntry>, StoreError>;
    async fn create_user(&self, user: &User) -> Result<bool, StoreError>;
    async fn create_schedule(&self, input: ScheduleInput) -> Result<ScheduledScript, StoreError>;
    async fn create_schedule_at(
        &self,
        input: ScheduleInput,
        now: DateTime<Utc>,
    ) -> Result<ScheduledScript, StoreError>;
    async fn filter_schedules(
        &self,
        filter: &ScheduleFilter,
        offset: usize,
        limit: Option<usize>,
    ) -> Result<ScheduleListing, StoreError>;
    async fn get_schedule(&self, id: &str) -> Result<ScheduledScript, StoreError>;
    async fn update_schedule(
        &self,
        id: &str,
        patch: SchedulePatch,
        by: &str,
    ) -> Result<ScheduledScript, StoreError>;
    async fn delete_schedule(&self, id: &str, by: &str) -> Result<(), StoreError>;
    async fn due_schedules(&self, now: DateTime<Utc>) -> Result<Vec<ScheduledScript>, StoreError>;
    async fn next_due_at(&self) -> Result<Option<DateTime<Utc>>, StoreError>;
    async fn get_run(&self, schedule_id: &str, occurrence: u64) -> Result<Run, StoreError>;
    async fn delete_site_by(&self, id: &str) -> Result<Site, StoreError>;
    async fn put_backup(&self, id: &str, backup: &[u8]) -> Result<(), StoreError>;
    async fn get_backup(&self, id: &str) -> Result<Option<Vec<u8>>, StoreError>;
    async fn put_diff(&self, id: &str, diff: &str, changes: JobChanges) -> Result<(), StoreError>;
    async fn get_diff(&self, id: &str) -> Result<Option<String>, StoreError>;
    async fn job_by_idempotency_key(&self, org: &str, key: &str)
    -> Result<Option<Job>, StoreError>;
    async fn jobs_for_site(&self, site: &str, page: &Page<u64>) -> Result<Vec<Job>, StoreError>;
    async fn active_jobs(
        &self,
        status: JobStatus,
        page: &Page<u64>,
    ) -> Result<Vec<Job>, StoreError>;
    async fn job_counts(&self) -> Result<Vec<(JobStatus, u64)>, StoreError>;
    async fn transition_jobs(
        &self,
        changes: Vec<(String, JobTransition)>,
    ) -> Result<Vec<Job>, StoreError>;
    async fn last_run(&self, schedule_id: &str) -> Result<Option<Run>, StoreError>;
    async fn latest_runs(&self, schedule_ids: &[&str]) -> Result<Vec<LatestRun>, StoreError>;
    async fn list_runs(&self, schedule_id: &str, page: &Page<u64>) -> Result<Vec<Run>, StoreError>;
    async fn run_jobs(&self, schedule_id: &str, occurrence: u64) -> Result<Vec<Job>, StoreError>;
    async fn append_event(&self, kind: &str, payload: serde_json::Value)
    -> Result<u64, StoreError>;
    /// Records an attempt at event `id` for `org`, as the deliverer does: delivered
    /// (`error: None`) or given up (dead).
    async fn attempt(
        &self,
        id: u64,
        org: &str,
        error: Option<&str>,
    ) -> Result<OutboxEvent, StoreError>;
    async fn dead_events(&self, org: &str) -> Result<Vec<OutboxEvent>, StoreError>;
    async fn retry_dead_event(&self, org: &str, id: u64) -> Result<OutboxEvent, StoreError>;
    async fn prune_events(&self, before: DateTime<Utc>) -> Result<usize, StoreError>;
    async fn create_channel(&self, input: ChannelInput) -> Result<Channel, StoreError>;
    async fn list_channels(&self, org: &str) -> Result<Vec<Channel>, StoreError>;
    async fn get_channel(&self, org: &str, id: &str) -> Result<Channel, StoreError>;
    async fn channel_secrets(
        &self,
        org: &str,
        id: &str,
        now: DateTime<Utc>,
    ) -> Result<std::collections::BTreeMap<String, String>, StoreError>;
    async fn rotate_channel_secret(
        &self,
        org: &str,
        id: &str,
        secret: &str,
    ) -> Result<(Channel, Option<DateTime<Utc>>), StoreError>;
    async fn delete_channel(&self, org: &str, id: &str) -> Result<Channel, StoreError>;
    async fn rotate_notify_secret(&self, org: &str) -> Result<SecretGeneration, StoreError>;
    async fn notify_secret_generation(&self, org: &str) -> Result<SecretGeneration, StoreError>;
    async fn create_template(
        &self,
        org: &str,
        input: TemplateInput,
    ) -> Result<Template, StoreError>;
    async fn get_template(&self, org: &str, id: &str) -> Result<Template, StoreError>;
    async fn list_templates(&self, org: &str) -> Result<Vec<Template>, StoreError>;
    async fn update_template(
        &self,
        org: &str,
        id: &str,
        input: TemplateInput,
        expected: Option<u64>,
    ) -> Result<Template, StoreError>;
    async fn delete_template(&self, org: &str, id: &str) -> Result<(), StoreError>;
    async fn template_versions(
        &self,
        org: &str,
        id: &str,
    ) -> Result<Vec<TemplateVersion>, StoreError>;
    async fn template_version(
        &self,
        org: &str,
        id: &str,
        n: u64,
    ) -> Result<TemplateVersion, StoreError>;
    async fn submit_community_script(&self, url: &str) -> Result<Submitted, StoreError>;
    async fn next_community_job(
        &self,
        now: DateTime<Utc>,
    ) -> Result<Option<(i64, CommunityScript)>, StoreError>;
    async fn finish_community_job(
        &self,
        queued_at: i64,
        id: &str,
        outcome: Result<CommunityContent, (String, Option<DateTime<Utc>>)>,
    ) -> Result<CommunityScript, StoreError>;
    async fn list_community_scripts(&self) -> Result<Vec<CommunityScript>, StoreError>;
    async fn due_summaries(&self, now: DateTime<Utc>) -> Result<Vec<SummaryTask>, StoreError>;
    async fn finish_summary(
        &self,
        task: &SummaryTask,
        summary: Option<&str>,
        retry_at: Option<DateTime<Utc>>,
    ) -> Result<(), StoreError>;
    /// Asks for approval of a schedule as its author would, through the workflow.
    async fn request(
        &self,
        schedule_id: &str,
    ) -> Result<approval::Requested, approval::ApprovalError>;
    /// Approves a schedule as `bob`, with the link's token.
    async fn approve_by_link(
        &self,
        schedule_id: &str,
        token: &str,
    ) -> Result<approval::Approved, approval::ApprovalError>;
    async fn get_event(&self, id: u64) -> Result<OutboxEvent, StoreError>;
    /// The schedule an approval link's confirm page shows, if the link still approves it.
    async fn linked(
        &self,
        schedule_id: &str,
        token: &str,
    ) -> Result<Option<ScheduledScript>, approval::ApprovalError>;
    /// Cancels a schedule as its author would, through the approval workflow.
    async fn cancel(&self, schedule_id: &str) -> Result<ScheduledScript, approval::ApprovalError>;
    async fn list_events(&self, page: &Page<u64>) -> Result<Vec<OutboxEvent>, StoreError>;
    async fn get_user(&self, organization: &str, id: &str) -> Result<User, StoreError>;
    async fn delete_user(&self, organization: &str, id: &str) -> Result<bool, StoreError>;
}

/// The operations of [`Conformance`] that both stores offer under the same name and
/// arguments, called on the field `$store`; `await` is given for the PostgreSQL store,
/// whose operations are async.
macro_rules! same_operations {
    ($store:ident $(, $await:ident)?) => {
        async fn create_site_by(&self, input: SiteInput, actor: &str) -> Result<Site, StoreError> {
            self.$store.create_site_by(input, actor, t(0))$(.$await)?
        }
        async fn import_sites(
            &self,
            organization: &str,
            inputs: Vec<SiteInput>,
        ) -> Result<Result<Vec<Site>, Vec<(usize, StoreError)>>, StoreError> {
            self.$store.import_sites(organization, inputs, "alice", t(0))$(.$await)?
        }
        async fn update_site_by(&self, id: &str, input: SiteInput) -> Result<Site, StoreError> {
            self.$store.update_site_by(id, input, "alice", t(5))$(.$await)?
        }
        async fn login(&self, id: &str) -> Result<(Site, Secret, Endpoint), StoreError> {
            self.$store.site_with_password_and_endpoint(id)$(.$await)?
        }
        async fn site_private_key(
            &self,
            id: &str,
        ) -> Result<Option<(Secret, Option<Secret>)>, StoreError> {
            self.$store.site_private_key(id)$(.$await)?
        }
        async fn remember_host_key(
            &self,
            id: &str,
            key: &str,
        ) -> Result<Result<(), String>, StoreError> {
            self.$store.remember_host_key(id, key, t(9))$(.$await)?
        }
        async fn search_sites(
            &self,
            organization: &str,
            name_contains: Option<&str>,
            tag: Option<&str>,
            offset: usize,
            limit: usize,
        ) -> Result<(Vec<Site>, usize), StoreError> {
            self.$store
                .search_sites(organization, name_contains, tag, offset, limit)$(.$await)?
        }
        async fn list_sites(
            &self,
            organization: &str,
            page: &Page<String>,
        ) -> Result<Vec<Site>, StoreError> {
            self.$store.list_sites(organization, page)$(.$await)?
        }
        async fn site_ids_with_tag(
            &self,
            organization: &str,
            tag: &str,
        ) -> Result<Vec<String>, StoreError> {
            self.$store.site_ids_with_tag(organization, tag)$(.$await)?
        }
        async fn site_jobs(
            &self,
            id: &str,
            offset: usize,
            limit: usize,
        ) -> Result<(Vec<Job>, usize), StoreError> {
            self.$store.site_jobs(id, offset, limit)$(.$await)?
        }
        async fn list_audit(&self, page: &Page<u64>) -> Result<Vec<AuditEntry>, StoreError> {
            self.$store.list_audit(page)$(.$await)?
        }
        async fn create_user(&self, user: &User) -> Result<bool, StoreError> {
            self.$store.create_user(user)$(.$await)?
        }
        async fn create_schedule(
            &self,
            input: ScheduleInput,
        ) -> Result<ScheduledScript, StoreError> {
            self.$store.create_schedule(input, t(0))$(.$await)?
        }
        async fn create_schedule_at(
            &self,
            input: ScheduleInput,
            now: DateTime<Utc>,
        ) -> Result<ScheduledScript, StoreError> {
            self.$store.create_schedule(input, now)$(.$await)?
        }
        async fn filter_schedules(
            &self,
            filter: &ScheduleFilter,
            offset: usize,
            limit: Option<usize>,
        ) -> Result<ScheduleListing, StoreError> {
            self.$store
                .filter_schedules("org1", filter, offset, limit)$(.$await)?
        }
        async fn get_schedule(&self, id: &str) -> Result<ScheduledScript, StoreError> {
            self.$store.get_schedule(id)$(.$await)?
        }
        async fn update_schedule(
            &self,
            id: &str,
            patch: SchedulePatch,
            by: &str,
        ) -> Result<ScheduledScript, StoreError> {
            self.$store.update_schedule(id, patch, by, t(20))$(.$await)?
        }
        async fn delete_schedule(&self, id: &str, by: &str) -> Result<(), StoreError> {
            self.$store.delete_schedule(id, by, t(30))$(.$await)?
        }
        async fn due_schedules(
            &self,
            now: DateTime<Utc>,
        ) -> Result<Vec<ScheduledScript>, StoreError> {
            self.$store.due_schedules(now, 100)$(.$await)?
        }
        async fn get_run(&self, schedule_id: &str, occurrence: u64) -> Result<Run, StoreError> {
            self.$store.get_run(schedule_id, occurrence)$(.$await)?
        }
        async fn delete_site_by(&self, id: &str) -> Result<Site, StoreError> {
            self.$store.delete_site_by(id, "alice", t(50))$(.$await)?
        }
        async fn put_backup(&self, id: &str, backup: &[u8]) -> Result<(), StoreError> {
            self.$store.put_backup(id, backup)$(.$await)?
        }
        async fn get_backup(&self, id: &str) -> Result<Option<Vec<u8>>, StoreError> {
            self.$store.get_backup(id)$(.$await)?
        }
        async fn put_diff(
            &self,
            id: &str,
            diff: &str,
            changes: JobChanges,
        ) -> Result<(), StoreError> {
            self.$store.put_diff(id, diff, changes)$(.$await)?
        }
        async fn get_diff(&self, id: &str) -> Result<Option<String>, StoreError> {
            self.$store.get_diff(id)$(.$await)?
        }
        async fn job_by_idempotency_key(
            &self,
            org: &str,
            key: &str,
        ) -> Result<Option<Job>, StoreError> {
            self.$store.job_by_idempotency_key(org, key)$(.$await)?
        }
        async fn jobs_for_site(&self, site: &str, page: &Page<u64>) -> Result<Vec<Job>, StoreError> {
            self.$store.jobs_for_site(site, page)$(.$await)?
        }
        async fn active_jobs(
            &self,
            status: JobStatus,
            page: &Page<u64>,
        ) -> Result<Vec<Job>, StoreError> {
            self.$store.active_jobs(status, page)$(.$await)?
        }
        async fn job_counts(&self) -> Result<Vec<(JobStatus, u64)>, StoreError> {
            self.$store.job_counts()$(.$await)?
        }
        async fn transition_jobs(
            &self,
            changes: Vec<(String, JobTransition)>,
        ) -> Result<Vec<Job>, StoreError> {
            self.$store.transition_jobs(changes, t(60))$(.$await)?
        }
        async fn latest_runs(&self, schedule_ids: &[&str]) -> Result<Vec<LatestRun>, StoreError> {
            self.$store.latest_runs(schedule_ids)$(.$await)?
        }
        async fn last_run(&self, schedule_id: &str) -> Result<Option<Run>, StoreError> {
            self.$store.last_run(schedule_id)$(.$await)?
        }
        async fn list_runs(&self, schedule_id: &str, page: &Page<u64>) -> Result<Vec<Run>, StoreError> {
            self.$store.list_runs(schedule_id, page)$(.$await)?
        }
        async fn run_jobs(&self, schedule_id: &str, occurrence: u64) -> Result<Vec<Job>, StoreError> {
            self.$store.run_jobs(schedule_id, occurrence)$(.$await)?
        }
        async fn append_event(
            &self,
            kind: &str,
            payload: serde_json::Value,
        ) -> Result<u64, StoreError> {
            self.$store.append_event(kind, payload, t(0))$(.$await)?
        }
        async fn dead_events(&self, org: &str) -> Result<Vec<OutboxEvent>, StoreError> {
            self.$store.dead_events(org, &Page::first(100))$(.$await)?
        }
        async fn retry_dead_event(&self, org: &str, id: u64) -> Result<OutboxEvent, StoreError> {
            self.$store.retry_dead_event(org, id, t(70))$(.$await)?
        }
        async fn prune_events(&self, before: DateTime<Utc>) -> Result<usize, StoreError> {
            self.$store.prune_events(before, 100)$(.$await)?
        }
        async fn create_channel(&self, input: ChannelInput) -> Result<Channel, StoreError> {
            self.$store.create_channel(input, t(0))$(.$await)?
        }
        async fn list_channels(&self, org: &str) -> Result<Vec<Channel>, StoreError> {
            self.$store.list_channels(org)$(.$await)?
        }
        async fn get_channel(&self, org: &str, id: &str) -> Result<Channel, StoreError> {
            self.$store.get_channel(org, id)$(.$await)?
        }
        async fn channel_secrets(
            &self,
            org: &str,
            id: &str,
            now: DateTime<Utc>,
        ) -> Result<std::collections::BTreeMap<String, String>, StoreError> {
            self.$store.channel_secrets(org, id, now)$(.$await)?
        }
        async fn rotate_channel_secret(
            &self,
            org: &str,
            id: &str,
            secret: &str,
        ) -> Result<(Channel, Option<DateTime<Utc>>), StoreError> {
            self.$store
                .rotate_channel_secret(org, id, secret, GRACE, "alice", t(100))$(.$await)?
        }
        async fn delete_channel(&self, org: &str, id: &str) -> Result<Channel, StoreError> {
            self.$store.delete_channel(org, id)$(.$await)?
        }
        async fn rotate_notify_secret(&self, org: &str) -> Result<SecretGeneration, StoreError> {
            self.$store
                .rotate_notify_secret(org, "alice", GRACE, t(100))$(.$await)?
        }
        async fn notify_secret_generation(
            &self,
            org: &str,
        ) -> Result<SecretGeneration, StoreError> {
            self.$store.notify_secret_generation(org)$(.$await)?
        }
        async fn create_template(
            &self,
            org: &str,
            input: TemplateInput,
        ) -> Result<Template, StoreError> {
            self.$store.create_template(org, "alice", input, t(0))$(.$await)?
        }
        async fn get_template(&self, org: &str, id: &str) -> Result<Template, StoreError> {
            self.$store.get_template(org, id)$(.$await)?
        }
        async fn list_templates(&self, org: &str) -> Result<Vec<Template>, StoreError> {
            self.$store.list_templates(org)$(.$await)?
        }
        async fn update_template(
            &self,
            org: &str,
            id: &str,
            input: TemplateInput,
            expected: Option<u64>,
        ) -> Result<Template, StoreError> {
            self.$store
                .update_template(org, id, "bob", input, expected, t(10))$(.$await)?
        }
        async fn delete_template(&self, org: &str, id: &str) -> Result<(), StoreError> {
            self.$store.delete_template(org, id, "alice", t(20))$(.$await)?
        }
        async fn template_versions(
            &self,
            org: &str,
            id: &str,
        ) -> Result<Vec<TemplateVersion>, StoreError> {
            self.$store.template_versions(org, id)$(.$await)?
        }
        async fn template_version(
            &self,
            org: &str,
            id: &str,
            n: u64,
        ) -> Result<TemplateVersion, StoreError> {
            self.$store.template_version(org, id, n)$(.$await)?
        }
        async fn submit_community_script(&self, url: &str) -> Result<Submitted, StoreError> {
            self.$store
                .submit_community_script("org1", "alice", url, None, None, t(0))$(.$await)?
        }
        async fn next_community_job(
            &self,
            now: DateTime<Utc>,
        ) -> Result<Option<(i64, CommunityScript)>, StoreError> {
            self.$store.next_community_job(now)$(.$await)?
        }
        async fn finish_community_job(
            &self,
            queued_at: i64,
            id: &str,
            outcome: Result<CommunityContent, (String, Option<DateTime<Utc>>)>,
        ) -> Result<CommunityScript, StoreError> {
            self.$store
                .finish_community_job(queued_at, id, outcome, t(1))$(.$await)?
        }
        async fn list_community_scripts(&self) -> Result<Vec<CommunityScript>, StoreError> {
            self.$store.list_community_scripts()$(.$await)?
        }
        async fn due_summaries(&self, now: DateTime<Utc>) -> Result<Vec<SummaryTask>, StoreError> {
            self.$store.due_summaries(now, 100)$(.$await)?
        }
        async fn finish_summary(
            &self,
            task: &SummaryTask,
            summary: Option<&str>,
            retry_at: Option<DateTime<Utc>>,
        ) -> Result<(), StoreError> {
            self.$store.finish_summary(task, summary, retry_at)$(.$await)?
        }
        async fn get_event(&self, id: u64) -> Result<OutboxEvent, StoreError> {
            self.$store.get_event(id)$(.$await)?
        }
        async fn list_events(&self, page: &Page<u64>) -> Result<Vec<OutboxEvent>, StoreError> {
            self.$store.list_events(page)$(.$await)?
        }
        async fn next_due_at(&self) -> Result<Option<DateTime<Utc>>, StoreError> {
            self.$store
                .next_due_at(&std::collections::HashSet::new())$(.$await)?
        }
        async fn get_user(&self, organization: &str, id: &str) -> Result<User, StoreError> {
            self.$store.get_user(organization, id)$(.$await)?
        }
        async fn delete_user(&self, organization: &str, id: &str) -> Result<bool, StoreError> {
            self.$store.delete_user(organization, id)$(.$await)?
        }
    };
}

/// Makes `n` sites and a schedule on them in `store`, created by one user and approved by
/// another, through the approval workflow; returns the schedule as approved and the
/// sites' ids.
fn approved(store: &Store, n: usize) -> (ScheduledScript, Vec<String>) {
    for user in approvers() {
        store.put_user(&user).expect("user");
    }
    let sites: Vec<String> = (0..n)
        .map(|i| store.create_site(fleet_router(i), t(0)).expect("site").id)
        .collect();
    let schedule = store
        .create_schedule(schedule_input(&sites), t(0))
        .expect("schedule");
    approval::approve(
        store,
        &schedule.id,
        &bob(),
        None,
        OrgPolicy::default(),
        t(1),
    )
    .expect("approved");
    let schedule = store.get_schedule(&schedule.id).expect("read");
    assert_eq!(schedule.status, ScheduleStatus::Scheduled);
    (schedule, sites)
}

/// [`approved`] in the PostgreSQL store, through the same approval workflow.
async fn approved_in(store: &PgStore, n: usize) -> (ScheduledScript, Vec<String>) {
    for user in approvers() {
        store.put_user(&user).await.expect("user");
    }
    let mut sites = Vec::with_capacity(n);
    for i in 0..n {
        let site = store
            .create_site(fleet_router(i), t(0))
            .await
            .expect("site");
        sites.push(site.id);
    }
    let schedule = store
        .create_schedule(schedule_input(&sites), t(0))
        .await
        .expect("schedule");
    approval::approve_in(
        store,
        &schedule.id,
        &bob(),
        None,
        OrgPolicy::default(),
        t(1),
    )
    .await
    .expect("approved");
    let schedule = store.get_schedule(&schedule.id).await.expect("read");
    assert_eq!(schedule.status, ScheduleStatus::Scheduled);
    (schedule, sites)
}

/// The schedule's author and its approver.
fn approvers() -> [User; 2] {
    ["alice", "bob"].map(|id| User {
        id: id.into(),
        name: id.into(),
        email: format!("{id}@example.com"),
        organization: "org1".into(),
        created_at: t(0),
    })
}

/// Router `i` of an approved schedule's fleet.
fn fleet_router(i: usize) -> SiteInput {
    SiteInput {
        address: "127.0.0.1".into(),
        password: Some(Secret::new("pw")),
        ..router("org1", &format!("router-{i:03}"))
    }
}

fn schedule_input(sites: &[String]) -> ScheduleInput {
    ScheduleInput {
        organization: "org1".into(),
        description: "bgp peers off".into(),
        script: ":log info launched".into(),
        sites: sites.to_vec(),
        launch_at: Some(t(3600)),
        created_by: "alice".into(),
        ..ScheduleInput::default()
    }
}

/// The deliverer's last attempt at an event for `org`: delivered, or dead with `error`.
fn attempt_of<'a>(org: &'a str, error: Option<&'a str>) -> EventAttempt<'a> {
    EventAttempt {
        error,
        retry_at: None,
        organization: Some(org),
        delivered_to: &[],
        now: t(100),
    }
}

/// How long a rotated secret keeps signing beside the new one in these tests.
const GRACE: chrono::TimeDelta = chrono::TimeDelta::minutes(10);

/// How long an approval link is valid in these tests.
const LINK_TTL: chrono::TimeDelta = chrono::TimeDelta::hours(24);

/// The schedule's author, asking for its approval or cancelling it.
fn canceller() -> Principal {
    Principal {
        user_id: "alice".into(),
        organization: "org1".into(),
        scopes: vec![approval::SCOPE_UPDATE.into()],
    }
}

fn bob() -> Principal {
    Principal {
        user_id: "bob".into(),
        organization: "org1".into(),
        scopes: vec![SCOPE_AUTHORIZE.into()],
    }
}

struct Redb {
    _dir: tempfile::TempDir,
    store: Store,
}

impl Redb {
    fn open() -> Redb {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path()).expect("open store");
        Redb { _dir: dir, store }
    }
}

impl Conformance for Redb {
    async fn create_jobs(
        &self,
        inputs: Vec<JobInput>,
        now: DateTime<Utc>,
    ) -> Result<Vec<(Job, bool)>, StoreError> {
        self.store.create_jobs(inputs, now)
    }
    async fn get_jobs(&self, ids: &[String]) -> Result<Vec<Job>, StoreError> {
        self.store.get_jobs(ids)
    }
    async fn transition_each(
        &self,
        items: Vec<(String, Vec<JobTransition>)>,
        now: DateTime<Utc>,
    ) -> Result<Vec<Result<Job, StoreError>>, StoreError> {
        self.store.transition_each(items, now)
    }
    async fn take(&self, n: usize, now: DateTime<Utc>) -> Result<Vec<Job>, StoreError> {
        let pending = self
            .store
            .active_jobs(JobStatus::Pending, &Page::first(n))?;
        let items = pending
            .into_iter()
            .map(|j| (j.id, vec![JobTransition::Load]))
            .collect();
        self.store
            .transition_each(items, now)?
            .into_iter()
            .collect()
    }
    async fn engine_stopped(&self, now: DateTime<Utc>) -> Result<Recovery, StoreError> {
        self.store.recover(now)
    }
    async fn approved_schedule(&self, n: usize) -> (ScheduledScript, Vec<String>) {
        approved(&self.store, n)
    }
    async fn launch(&self, plan: LaunchPlan, now: DateTime<Utc>) -> Result<Launch, StoreError> {
        self.store.launch(plan, now)
    }
    async fn cancel(&self, id: &str) -> Result<ScheduledScript, approval::ApprovalError> {
        approval::cancel(&self.store, id, &canceller(), t(4000))
    }
    async fn attempt(
        &self,
        id: u64,
        org: &str,
        error: Option<&str>,
    ) -> Result<OutboxEvent, StoreError> {
        self.store.record_event_attempt(id, &attempt_of(org, error))
    }
    async fn request(&self, id: &str) -> Result<approval::Requested, approval::ApprovalError> {
        approval::request(&self.store, id, &canceller(), t(10), LINK_TTL)
    }
    async fn linked(
        &self,
        id: &str,
        token: &str,
    ) -> Result<Option<ScheduledScript>, approval::ApprovalError> {
        approval::linked_schedule(&self.store, id, token, t(11))
    }
    async fn approve_by_link(
        &self,
        id: &str,
        token: &str,
    ) -> Result<approval::Approved, approval::ApprovalError> {
        approval::approve(
            &self.store,
            id,
            &bob(),
            Some(token),
            OrgPolicy::default(),
            t(11),
        )
    }
    same_operations!(store);
}

struct Pg {
    store: PgStore,
    /// The scheduler lease's fencing token, held for the whole test.
    token: u64,
    // Dropped after the store's pool: the server stops once nothing is connected.
    _server: Postgres,
}

const ENGINE: &str = "engine-a";

impl Pg {
    async fn start() -> Pg {
        let server = Postgres::start();
        let store = PgStore::connect(&server.url(), &Postgres::credential_key())
            .await
            .expect("connect");
        let token = store
            .acquire_or_renew(ENGINE, LONG)
            .await
            .expect("lease")
            .expect("the only engine");
        Pg {
            store,
            token,
            _server: server,
        }
    }
}

impl Conformance for Pg {
    async fn create_jobs(
        &self,
        inputs: Vec<JobInput>,
        now: DateTime<Utc>,
    ) -> Result<Vec<(Job, bool)>, StoreError> {
        self.store.create_jobs(inputs, now).await
    }
    async fn get_jobs(&self, ids: &[String]) -> Result<Vec<Job>, StoreError> {
        self.store.get_jobs(ids).await
    }
    async fn transition_each(
        &self,
        items: Vec<(String, Vec<JobTransition>)>,
        now: DateTime<Utc>,
    ) -> Result<Vec<Result<Job, StoreError>>, StoreError> {
        self.store.transition_each(items, now).await
    }
    async fn take(&self, n: usize, now: DateTime<Utc>) -> Result<Vec<Job>, StoreError> {
        self.store.claim_pending(ENGINE, n, LONG, now).await
    }
    async fn engine_stopped(&self, now: DateTime<Utc>) -> Result<Recovery, StoreError> {
        self.store.recover(ENGINE, now).await
    }
    async fn approved_schedule(&self, n: usize) -> (ScheduledScript, Vec<String>) {
        approved_in(&self.store, n).await
    }
    async fn launch(&self, plan: LaunchPlan, now: DateTime<Utc>) -> Result<Launch, StoreError> {
        self.store.launch(plan, self.token, now).await
    }
    async fn cancel(&self, id: &str) -> Result<ScheduledScript, approval::ApprovalError> {
        approval::cancel_in(&self.store, id, &canceller(), t(4000)).await
    }
    async fn attempt(
        &self,
        id: u64,
        org: &str,
        error: Option<&str>,
    ) -> Result<OutboxEvent, StoreError> {
        // Claims every due event for this engine; one claimed by an earlier call stays
        // this engine's, and recording an attempt at one it does not hold is refused.
        self.store.claim_events(ENGINE, t(100), 100, LONG).await?;
        self.store
            .record_event_attempt(ENGINE, id, &attempt_of(org, error))
            .await
    }
    async fn request(&self, id: &str) -> Result<approval::Requested, approval::ApprovalError> {
        approval::request_in(&self.store, id, &canceller(), t(10), LINK_TTL).await
    }
    async fn linked(
        &self,
        id: &str,
        token: &str,
    ) -> Result<Option<ScheduledScript>, approval::ApprovalError> {
        approval::linked_schedule_in(&self.store, id, token, t(11)).await
    }
    async fn approve_by_link(
        &self,
        id: &str,
        token: &str,
    ) -> Result<approval::Approved, approval::ApprovalError> {
        approval::approve_in(
            &self.store,
            id,
            &bob(),
            Some(token),
            OrgPolicy::default(),
            t(11),
        )
        .await
    }
    same_operations!(store, await);
}

/// Runs each named test body against a fresh redb store and a fresh PostgreSQL store.
macro_rules! conformance {
    ($($name:ident),* $(,)?) => {
        mod redb {
            $(#[tokio::test]
            async fn $name() {
                super::$name(&super::Redb::open()).await;
            })*
        }
        mod postgres {
            $(#[tokio::test]
            async fn $name() {
                super::$name(&super::Pg::start().await).await;
            })*
        }
    };
}

conformance!(
    an_idempotency_key_creates_one_job,
    reads_keep_the_order_asked_and_name_what_is_missing,
    transition_each_settles_each_job_alone,
    the_lifecycle_refuses_what_it_does_not_allow,
    a_stopped_engines_sent_jobs_fail_and_the_rest_are_requeued,
    an_occurrence_launches_once_per_site,
    site_names_are_unique_per_organization_and_an_import_is_all_or_nothing,
    a_changed_endpoint_clears_the_credentials_and_the_audit_says_why,
    searches_filter_by_name_and_tag_in_name_order_with_a_total,
    a_host_key_is_learned_once_and_never_replaced,
    a_sites_jobs_are_paged_newest_first,
    users_belong_to_their_organization,
    schedule_edits_follow_one_set_of_rules,
    an_approved_schedule_is_due_and_a_launched_one_cannot_be_deleted,
    a_site_changed_after_the_approval_voids_the_launch_and_the_void_is_kept,
    a_run_settles_with_its_last_job_and_so_does_its_schedule,
    a_cancelled_schedule_fails_the_jobs_nobody_started_and_keeps_the_rest,
    an_approval_link_approves_once_and_only_for_its_recipient,
    a_site_is_deleted_only_once_nothing_needs_it,
    backups_and_diffs_are_sealed_apart_and_bound_to_their_job,
    jobs_are_read_by_key_by_site_and_by_status,
    runs_are_listed_oldest_first_with_their_jobs,
    dead_letters_are_kept_per_organization_until_retried_and_delivered_events_are_pruned,
    the_latest_run_tells_where_each_site_stands,
    listings_filter_by_ids_name_frequency_creator_and_creation_time,
    channels_keep_their_secrets_sealed_and_rotate_with_a_grace_period,
    templates_keep_every_version_and_belong_to_their_organization,
    a_community_submission_is_processed_once_and_known_by_its_pinned_source,
    a_summary_is_kept_only_for_the_content_it_summarizes,
    a_job_named_twice_in_one_batch_moves_twice_in_order,
);

fn router(organization: &str, name: &str) -> SiteInput {
    SiteInput {
        organization: organization.into(),
        name: name.into(),
        address: "192.0.2.1".into(),
        port: Some(8728),
        transport: "routeros-api".into(),
        username: "admin".into(),
        password: Some(Secret::new("s3cret-pw")),
        tls: Default::default(),
        tags: Vec::new(),
        private_key: None,
        private_key_passphrase: None,
        ssh: None,
    }
}

async fn site_names_are_unique_per_organization_and_an_import_is_all_or_nothing(
    s: &impl Conformance,
) {
    let core = s
        .create_site_by(router("org1", "core-1"), "alice")
        .await
        .expect("created");
    assert!(core.has_password && !core.has_private_key);
    let again = s.create_site_by(router("org1", "core-1"), "alice").await;
    assert!(
        matches!(&again, Err(StoreError::SiteNameTaken { name }) if name == "core-1"),
        "{again:?}"
    );
    s.create_site_by(router("org2", "core-1"), "bob")
        .await
        .expect("another organization has names of its own");
    let refused = s
        .import_sites(
            "org1",
            vec![
                router("org1", "edge-1"),
                router("org1", "core-1"),
                router("org1", "edge-1"),
                router("org2", "edge-2"),
                SiteInput {
                    address: String::new(),
                    ..router("org1", "edge-3")
                },
            ],
        )
        .await
        .expect("checked")
        .expect_err("refused");
    let reasons: Vec<(usize, String)> = refused
        .iter()
        .map(|(i, e)| {
            (
                *i,
                format!("{e:?}")
                    .split([' ', '{', '('])
                    .next()
                    .unwrap_or("")
                    .to_owned(),
            )
        })
        .collect();
    assert_eq!(
        reasons,
        [
            (1, "SiteNameTaken".to_owned()),
            (2, "SiteNameTaken".to_owned()),
            (3, "Invalid".to_owned()),
            (4, "Invalid".to_owned()),
        ]
    );
    let listed = s.list_sites("org1", &Page::first(100)).await.expect("list");
    assert_eq!(listed, vec![core.clone()], "a refused import wrote nothing");
    let imported = s
        .import_sites(
            "org1",
            vec![router("org1", "edge-1"), router("org1", "edge-2")],
        )
        .await
        .expect("stored")
        .expect("accepted");
    assert_eq!(imported.len(), 2);
    let listed = s.list_sites("org1", &Page::first(100)).await.expect("list");
    assert_eq!(
        listed.iter().map(|s| s.name.as_str()).collect::<Vec<_>>(),
        ["core-1", "edge-1", "edge-2"],
        "in creation order"
    );
    let after = s
        .list_sites(
            "org1",
            &Page {
                after: Some(listed[0].id.clone()),
                limit: 1,
            },
        )
        .await
        .expect("page");
    assert_eq!(after, vec![listed[1].clone()]);
    let audit = s.list_audit(&Page::first(100)).await.expect("audit");
    let actions: Vec<(&str, &str)> = audit
        .iter()
        .map(|a| (a.action.as_str(), a.organization.as_str()))
        .collect();
    assert_eq!(
        actions,
        [
            ("site.created", "org1"),
            ("site.created", "org2"),
            ("site.imported", "org1")
        ]
    );
    assert_eq!(audit[2].detail["count"], 2);
    assert!(audit[0].seq < audit[1].seq && audit[1].seq < audit[2].seq);
    assert!(
        !serde_json::to_string(&audit)
            .expect("json")
            .contains("s3cret-pw"),
        "the audit log never holds a password"
    );
}

async fn a_changed_endpoint_clears_the_credentials_and_the_audit_says_why(s: &impl Conformance) {
    let key = "-----BEGIN OPENSSH PRIVATE KEY-----\nAAAA\n-----END OPENSSH PRIVATE KEY-----";
    let site = s
        .create_site_by(
            SiteInput {
                private_key: Some(Secret::new(key)),
                private_key_passphrase: Some(Secret::new("phrase")),
                ..router("org1", "core-1")
            },
            "alice",
        )
        .await
        .expect("created");
    let (_, password, endpoint) = s.login(&site.id).await.expect("login");
    assert_eq!(password.expose(), "s3cret-pw");
    assert_eq!(
        (endpoint.address.as_str(), endpoint.port),
        ("192.0.2.1", Some(8728))
    );
    let (opened, phrase) = s
        .site_private_key(&site.id)
        .await
        .expect("read")
        .expect("a key");
    assert_eq!(
        (opened.expose(), phrase.map(|p| p.expose().to_owned())),
        (key, Some("phrase".to_owned()))
    );

    // A rename keeps the credentials: the endpoint is the same.
    let renamed = s
        .update_site_by(
            &site.id,
            SiteInput {
                password: None,
                ..router("org1", "core-renamed")
            },
        )
        .await
        .expect("renamed");
    assert!(renamed.has_password && renamed.has_private_key);
    assert_eq!(
        s.login(&site.id).await.expect("login").1.expose(),
        "s3cret-pw"
    );

    // Another address without a new password: both secrets are gone.
    let moved = s
        .update_site_by(
            &site.id,
            SiteInput {
                address: "198.51.100.7".into(),
                password: None,
                ..router("org1", "core-renamed")
            },
        )
        .await
        .expect("moved");
    assert!(!moved.has_password && !moved.has_private_key);
    let refused = s.login(&site.id).await;
    assert!(
        matches!(&refused, Err(StoreError::PasswordMissing { site: id, .. }) if *id == site.id),
        "{refused:?}"
    );
    assert!(s.site_private_key(&site.id).await.expect("read").is_none());
    let audit = s.list_audit(&Page::first(100)).await.expect("audit");
    let last = audit.last().expect("a line");
    assert_eq!(last.action, "site.updated");
    assert_eq!(last.detail["password_cleared"], true);
    assert_eq!(
        last.detail["endpoint_changed"],
        serde_json::json!(["address"])
    );

    // A new password for the new endpoint opens again; another organization's update
    // does not find the site.
    s.update_site_by(
        &site.id,
        SiteInput {
            address: "198.51.100.7".into(),
            password: Some(Secret::new("new-pw")),
            ..router("org1", "core-renamed")
        },
    )
    .await
    .expect("password set");
    assert_eq!(s.login(&site.id).await.expect("login").1.expose(), "new-pw");
    let foreign = s
        .update_site_by(&site.id, router("org2", "core-renamed"))
        .await;
    assert!(
        matches!(foreign, Err(StoreError::NotFound { .. })),
        "{foreign:?}"
    );

    // A rename onto a name the organization has is refused, and changes nothing.
    s.create_site_by(router("org1", "edge-1"), "alice")
        .await
        .expect("second");
    let clash = s
        .update_site_by(
            &site.id,
            SiteInput {
                address: "198.51.100.7".into(),
                password: None,
                ..router("org1", "edge-1")
            },
        )
        .await;
    assert!(
        matches!(clash, Err(StoreError::SiteNameTaken { .. })),
        "{clash:?}"
    );
    assert_eq!(
        s.login(&site.id).await.expect("login").0.name,
        "core-renamed"
    );
}

async fn searches_filter_by_name_and_tag_in_name_order_with_a_total(s: &impl Conformance) {
    let mut ids = std::collections::HashMap::new();
    for (name, tags) in [
        ("Edge-b", vec!["edge", "west"]),
        ("core-1", vec!["core"]),
        ("edge-a", vec!["edge", "west", "edge"]),
        ("EDGE-c", vec!["edge"]),
    ] {
        let site = s
            .create_site_by(
                SiteInput {
                    tags: tags.into_iter().map(str::to_owned).collect(),
                    ..router("org1", name)
                },
                "alice",
            )
            .await
            .expect("site");
        ids.insert(name, site.id);
    }
    s.create_site_by(
        SiteInput {
            tags: vec!["edge".into()],
            ..router("org2", "edge-z")
        },
        "bob",
    )
    .await
    .expect("org2");
    let names = |found: &(Vec<Site>, usize)| {
        (
            found.0.iter().map(|s| s.name.clone()).collect::<Vec<_>>(),
            found.1,
        )
    };
    let all = s
        .search_sites("org1", None, None, 0, 10)
        .await
        .expect("all");
    assert_eq!(
        names(&all),
        (
            vec![
                "EDGE-c".into(),
                "Edge-b".into(),
                "core-1".into(),
                "edge-a".into()
            ],
            4
        ),
        "bytewise name order"
    );
    let edge = s
        .search_sites("org1", Some("eDgE"), None, 1, 2)
        .await
        .expect("edge");
    assert_eq!(names(&edge), (vec!["Edge-b".into(), "edge-a".into()], 3));
    let west = s
        .search_sites("org1", Some("edge"), Some("west"), 0, 10)
        .await
        .expect("west");
    assert_eq!(names(&west), (vec!["Edge-b".into(), "edge-a".into()], 2));
    let beyond = s
        .search_sites("org1", None, None, 10, 10)
        .await
        .expect("beyond");
    assert_eq!(
        names(&beyond),
        (vec![], 4),
        "the total is told past the end too"
    );
    assert_eq!(
        all.0[3].tags,
        ["edge", "west"],
        "tags are kept once each, sorted"
    );
    let mut tagged = vec![ids["Edge-b"].clone(), ids["edge-a"].clone()];
    tagged.sort();
    assert_eq!(
        s.site_ids_with_tag("org1", "west").await.expect("tagged"),
        tagged
    );
    assert!(
        s.site_ids_with_tag("org2", "west")
            .await
            .expect("none")
            .is_empty()
    );
}

async fn a_host_key_is_learned_once_and_never_replaced(s: &impl Conformance) {
    let first = format!("SHA256:{}", "A".repeat(43));
    let other = format!("SHA256:{}", "B".repeat(43));
    let site = s
        .create_site_by(
            SiteInput {
                transport: "ssh".into(),
                port: Some(22),
                ..router("org1", "linux-1")
            },
            "alice",
        )
        .await
        .expect("site");
    let before = s.login(&site.id).await.expect("login").2;
    assert_eq!(
        s.remember_host_key(&site.id, &first).await.expect("learn"),
        Ok(())
    );
    assert_eq!(
        s.remember_host_key(&site.id, &first).await.expect("again"),
        Ok(())
    );
    assert_eq!(
        s.remember_host_key(&site.id, &other)
            .await
            .expect("changed"),
        Err(first.clone()),
        "a changed key is refused, naming the one held"
    );
    let (stored, _, after) = s.login(&site.id).await.expect("login");
    assert_eq!(stored.ssh.host_keys, std::slice::from_ref(&first));
    assert_eq!(
        after, before,
        "a learned key is not part of the approved endpoint"
    );
    let audit = s.list_audit(&Page::first(100)).await.expect("audit");
    let learned: Vec<&AuditEntry> = audit
        .iter()
        .filter(|a| a.action == "site.host_key_stored")
        .collect();
    assert_eq!(learned.len(), 1, "{audit:?}");
    assert_eq!(learned[0].detail["host_key"], serde_json::json!(first));
    let missing = s.remember_host_key("nope", &first).await;
    assert!(
        matches!(missing, Err(StoreError::NotFound { .. })),
        "{missing:?}"
    );
}

async fn a_sites_jobs_are_paged_newest_first(s: &impl Conformance) {
    let created = s
        .create_jobs(
            vec![
                input("s1", None),
                input("s2", None),
                input("s1", None),
                input("s1", None),
            ],
            t(0),
        )
        .await
        .expect("jobs");
    let (page, total) = s.site_jobs("s1", 1, 1).await.expect("page");
    assert_eq!(total, 3);
    assert_eq!(page, vec![created[2].0.clone()]);
    let (page, total) = s.site_jobs("s1", 5, 10).await.expect("past the end");
    assert_eq!((page.len(), total), (0, 3));
    let (page, total) = s.site_jobs("s2", 0, 10).await.expect("s2");
    assert_eq!((page, total), (vec![created[1].0.clone()], 1));
}

async fn users_belong_to_their_organization(s: &impl Conformance) {
    let user = |org: &str, name: &str| User {
        id: "u1".into(),
        name: name.into(),
        email: "u1@example.com".into(),
        organization: org.into(),
        created_at: t(0),
    };
    assert!(s.create_user(&user("org1", "Ana")).await.expect("create"));
    assert!(!s.create_user(&user("org1", "Other")).await.expect("taken"));
    assert!(
        s.create_user(&user("org2", "Bea"))
            .await
            .expect("org2's own")
    );
    assert_eq!(s.get_user("org1", "u1").await.expect("read").name, "Ana");
    assert_eq!(s.get_user("org2", "u1").await.expect("read").name, "Bea");
    assert!(s.delete_user("org2", "u1").await.expect("delete"));
    assert!(!s.delete_user("org2", "u1").await.expect("gone"));
    let gone = s.get_user("org2", "u1").await;
    assert!(matches!(gone, Err(StoreError::NotFound { .. })), "{gone:?}");
    assert_eq!(s.get_user("org1", "u1").await.expect("kept").name, "Ana");
}

async fn schedule_edits_follow_one_set_of_rules(s: &impl Conformance) {
    let created = s
        .create_schedule(schedule_input(&["s1".to_owned()]))
        .await
        .expect("created");
    assert_eq!(
        (created.status, created.version, created.editors.clone()),
        (ScheduleStatus::Unauthorized, 1, vec!["alice".to_owned()])
    );
    let taken = s.create_schedule(schedule_input(&["s2".to_owned()])).await;
    assert!(
        matches!(&taken, Err(StoreError::ScheduleNameTaken { name }) if name == "bgp peers off"),
        "{taken:?}"
    );
    let unchanged = s
        .update_schedule(&created.id, SchedulePatch::default(), "carol")
        .await
        .expect("nothing to change");
    assert_eq!(unchanged, created, "an empty edit writes nothing");
    let edited = s
        .update_schedule(
            &created.id,
            SchedulePatch {
                script: Some(":log info edited".into()),
                ..SchedulePatch::default()
            },
            "carol",
        )
        .await
        .expect("edited");
    assert_eq!(
        edited.version, 2,
        "an edit of what is approved counts a version"
    );
    assert_eq!(edited.editors, ["alice", "carol"]);
    assert_eq!(edited.updated_by.as_deref(), Some("carol"));
    assert_eq!(s.get_schedule(&created.id).await.expect("read"), edited);
    let renamed = s
        .update_schedule(
            &created.id,
            SchedulePatch {
                description: Some("bgp peers on".into()),
                ..SchedulePatch::default()
            },
            "dave",
        )
        .await
        .expect("renamed");
    assert_eq!(
        renamed.version, 2,
        "a new name is not what an approval covers"
    );
    assert!(!renamed.editors.contains(&"dave".to_owned()));
    s.create_schedule(schedule_input(&["s3".to_owned()]))
        .await
        .expect("the old name is free again");
    let clash = s
        .update_schedule(
            &created.id,
            SchedulePatch {
                description: Some("bgp peers off".into()),
                ..SchedulePatch::default()
            },
            "dave",
        )
        .await;
    assert!(
        matches!(clash, Err(StoreError::ScheduleNameTaken { .. })),
        "{clash:?}"
    );
    let bad = s
        .update_schedule(
            &created.id,
            SchedulePatch {
                script: Some(" ".into()),
                ..SchedulePatch::default()
            },
            "dave",
        )
        .await;
    assert!(matches!(bad, Err(StoreError::Invalid { .. })), "{bad:?}");
    let audit = s.list_audit(&Page::first(100)).await.expect("audit");
    let actions: Vec<&str> = audit.iter().map(|a| a.action.as_str()).collect();
    assert_eq!(
        actions,
        [
            "script.created",
            "script.updated",
            "script.updated",
            "script.created"
        ]
    );
    assert_eq!(audit[1].detail["changed"], serde_json::json!(["script"]));
    s.delete_schedule(&created.id, "alice")
        .await
        .expect("deleted");
    let gone = s.get_schedule(&created.id).await;
    assert!(matches!(gone, Err(StoreError::NotFound { .. })), "{gone:?}");
}

async fn an_approved_schedule_is_due_and_a_launched_one_cannot_be_deleted(s: &impl Conformance) {
    assert_eq!(s.next_due_at().await.expect("none"), None);
    let (schedule, sites) = s.approved_schedule(2).await;
    assert_eq!(s.next_due_at().await.expect("due"), Some(t(3600)));
    assert!(s.due_schedules(t(3599)).await.expect("early").is_empty());
    let due = s.due_schedules(t(3600)).await.expect("due");
    assert_eq!(
        due.iter().map(|d| d.id.as_str()).collect::<Vec<_>>(),
        [schedule.id.as_str()]
    );
    let site_refs: Vec<&str> = sites.iter().map(String::as_str).collect();
    let launch = s
        .launch(plan(&schedule, 0, &site_refs), t(3600))
        .await
        .expect("launched");
    assert_eq!(launch.created.len(), 2);
    let now = s.get_schedule(&schedule.id).await.expect("read");
    assert_eq!(now.status, ScheduleStatus::Launched);
    assert_eq!(now.started_at, Some(t(3600)));
    assert!(
        s.due_schedules(t(99_999))
            .await
            .expect("none due")
            .is_empty()
    );
    let refused = s.delete_schedule(&schedule.id, "alice").await;
    assert!(
        matches!(&refused, Err(StoreError::ScheduleState { reason, .. }) if reason.contains("cancel it first")),
        "{refused:?}"
    );
    s.get_schedule(&schedule.id).await.expect("still there");
}

async fn a_site_changed_after_the_approval_voids_the_launch_and_the_void_is_kept(
    s: &impl Conformance,
) {
    let (schedule, sites) = s.approved_schedule(2).await;
    // The operator re-points one router after the approval.
    s.update_site_by(
        &sites[1],
        SiteInput {
            address: "203.0.113.9".into(),
            password: Some(Secret::new("pw")),
            ..router("org1", "router-001")
        },
    )
    .await
    .expect("re-pointed");
    let site_refs: Vec<&str> = sites.iter().map(String::as_str).collect();
    let void = s.launch(plan(&schedule, 0, &site_refs), t(3600)).await;
    match void {
        Err(StoreError::ApprovalVoid { id, reasons }) => {
            assert_eq!(id, schedule.id);
            assert_eq!(
                reasons,
                [format!("site {} changed: address, credentials", sites[1])]
            );
        }
        other => panic!("expected ApprovalVoid, got {other:?}"),
    }
    let now = s.get_schedule(&schedule.id).await.expect("read");
    assert_eq!(
        now.status,
        ScheduleStatus::Unauthorized,
        "the void was kept"
    );
    assert_eq!((now.approval, now.next_launch_at), (None, None));
    assert_eq!(s.next_due_at().await.expect("nothing due"), None);
    for site in &sites {
        assert!(
            s.site_jobs(site, 0, 10).await.expect("jobs").0.is_empty(),
            "nothing ran"
        );
    }
    let audit = s.list_audit(&Page::first(100)).await.expect("audit");
    assert_eq!(
        audit.last().map(|a| a.action.as_str()),
        Some("script.approval_voided")
    );
}

fn complete() -> JobTransition {
    JobTransition::Complete {
        output: Some("done".into()),
    }
}

async fn a_run_settles_with_its_last_job_and_so_does_its_schedule(s: &impl Conformance) {
    let (schedule, sites) = s.approved_schedule(3).await;
    let site_refs: Vec<&str> = sites.iter().map(String::as_str).collect();
    let launch = s
        .launch(plan(&schedule, 0, &site_refs), t(3600))
        .await
        .expect("launched");
    let jobs: Vec<String> = launch.created.iter().map(|j| j.id.clone()).collect();
    let taken = s.take(10, t(3601)).await.expect("taken");
    assert_eq!(taken.len(), 3);
    let sent = |id: &String| {
        (
            id.clone(),
            vec![JobTransition::Start, JobTransition::MarkSent],
        )
    };
    let fail = JobTransition::Fail {
        error: JobError {
            code: "script_error".into(),
            message: "no such item".into(),
        },
        output: None,
    };
    let done = s
        .transition_each(
            vec![
                (
                    jobs[0].clone(),
                    vec![JobTransition::Start, JobTransition::MarkSent, complete()],
                ),
                (
                    jobs[1].clone(),
                    vec![JobTransition::Start, JobTransition::MarkSent, fail],
                ),
                sent(&jobs[2]),
            ],
            t(3602),
        )
        .await
        .expect("moved");
    assert!(done.iter().all(Result::is_ok), "{done:?}");
    let run = s.get_run(&schedule.id, 0).await.expect("run");
    assert_eq!(
        (
            run.total,
            run.pending,
            run.completed,
            run.failed,
            run.finished_at
        ),
        (3, 1, 1, 1, None)
    );
    assert_eq!(
        s.get_schedule(&schedule.id).await.expect("read").status,
        ScheduleStatus::Launched
    );
    s.transition_each(vec![(jobs[2].clone(), vec![complete()])], t(3603))
        .await
        .expect("last")
        .pop()
        .expect("one")
        .expect("completed");
    let run = s.get_run(&schedule.id, 0).await.expect("run");
    assert_eq!(
        (
            run.pending,
            run.completed,
            run.failed,
            run.status,
            run.finished_at
        ),
        (0, 2, 1, RunStatus::PartiallyFailed, Some(t(3603)))
    );
    assert_eq!(
        s.get_schedule(&schedule.id).await.expect("read").status,
        ScheduleStatus::PartiallyFailed,
        "a one-time schedule takes its only run's outcome"
    );
    let events = s.list_events(&Page::first(100)).await.expect("events");
    let kinds: Vec<&str> = events
        .iter()
        .map(|e| e.kind.as_str())
        .filter(|k| k.starts_with("script.") && *k != "script.authorized")
        .collect();
    assert_eq!(
        kinds,
        [
            "script.launched",
            "script.site_finished",
            "script.site_finished",
            "script.site_finished",
            "script.run_finished"
        ]
    );
    let finished = events
        .iter()
        .find(|e| e.kind == "script.run_finished")
        .expect("run finished");
    assert_eq!(finished.payload["status"], "partially_failed");
    assert_eq!(
        (
            finished.payload["completed"].clone(),
            finished.payload["failed"].clone()
        ),
        (2.into(), 1.into())
    );
}

async fn a_cancelled_schedule_fails_the_jobs_nobody_started_and_keeps_the_rest(
    s: &impl Conformance,
) {
    let (schedule, sites) = s.approved_schedule(3).await;
    let site_refs: Vec<&str> = sites.iter().map(String::as_str).collect();
    let launch = s
        .launch(plan(&schedule, 0, &site_refs), t(3600))
        .await
        .expect("launched");
    let jobs: Vec<String> = launch.created.iter().map(|j| j.id.clone()).collect();
    // One job is running with its script sent, one is loaded, one is still pending.
    let taken = s.take(2, t(3601)).await.expect("taken");
    assert_eq!(taken.len(), 2);
    let running = taken[0].id.clone();
    s.transition_each(
        vec![(
            running.clone(),
            vec![JobTransition::Start, JobTransition::MarkSent],
        )],
        t(3602),
    )
    .await
    .expect("started")
    .pop()
    .expect("one")
    .expect("running");
    let cancelled = s.cancel(&schedule.id).await.expect("cancelled");
    assert_eq!(cancelled.status, ScheduleStatus::Cancelled);
    assert_eq!(cancelled.next_launch_at, None);
    let now = s.get_jobs(&jobs).await.expect("jobs");
    for job in &now {
        if job.id == running {
            assert_eq!(job.status, JobStatus::Running, "a started job runs on");
        } else {
            assert_eq!(job.status, JobStatus::Failed, "{job:?}");
            assert_eq!(
                job.error.as_ref().map(|e| e.code.as_str()),
                Some("cancelled")
            );
        }
    }
    let run = s.get_run(&schedule.id, 0).await.expect("run");
    assert_eq!((run.pending, run.failed, run.finished_at), (1, 2, None));
    assert!(s.due_schedules(t(99_999)).await.expect("due").is_empty());
    let again = s.cancel(&schedule.id).await;
    assert!(
        again.is_err(),
        "a cancelled schedule is finished: {again:?}"
    );
    s.transition_each(vec![(running, vec![complete()])], t(3700))
        .await
        .expect("finished")
        .pop()
        .expect("one")
        .expect("completed");
    let run = s.get_run(&schedule.id, 0).await.expect("run");
    assert_eq!((run.pending, run.status), (0, RunStatus::PartiallyFailed));
    assert_eq!(
        s.get_schedule(&schedule.id).await.expect("read").status,
        ScheduleStatus::Cancelled,
        "the last job's outcome does not undo the cancellation"
    );
}

async fn an_approval_link_approves_once_and_only_for_its_recipient(s: &impl Conformance) {
    for user in approvers() {
        s.create_user(&user).await.expect("user");
    }
    let site = s
        .create_site_by(fleet_router(0), "alice")
        .await
        .expect("site");
    let schedule = s
        .create_schedule(schedule_input(std::slice::from_ref(&site.id)))
        .await
        .expect("schedule");
    let requested = s.request(&schedule.id).await.expect("requested");
    assert_eq!(
        requested.recipients,
        ["alice", "bob"],
        "every user of the organization"
    );
    assert!(requested.schedule.authorization_requested_at.is_some());
    let event = s.get_event(requested.event_id).await.expect("event");
    assert_eq!(event.kind, "script.authorization_requested");
    let link = |user: &str| {
        let url = event.payload["links"][user]
            .as_str()
            .expect("a link")
            .to_owned();
        url.split("token=").nth(1).expect("a token").to_owned()
    };
    // The confirm page shows the schedule to whoever holds a link that still approves it,
    // and nothing for any other token.
    let shown = s
        .linked(&schedule.id, &link("bob"))
        .await
        .expect("confirm page");
    assert_eq!(shown.map(|s| s.id), Some(schedule.id.clone()));
    assert_eq!(
        s.linked(&schedule.id, "not-a-token")
            .await
            .expect("nothing"),
        None
    );
    // Alice's link is hers: bob cannot approve with it.
    let stolen = s.approve_by_link(&schedule.id, &link("alice")).await;
    assert!(
        matches!(stolen, Err(approval::ApprovalError::InvalidToken { .. })),
        "{stolen:?}"
    );
    let approved = s
        .approve_by_link(&schedule.id, &link("bob"))
        .await
        .expect("approved by link");
    assert!(approved.via_link);
    assert_eq!(approved.schedule.status, ScheduleStatus::Scheduled);
    assert_eq!(approved.schedule.authorized_by.as_deref(), Some("bob"));
    let again = s.approve_by_link(&schedule.id, &link("bob")).await;
    assert!(again.is_err(), "a link approves once: {again:?}");
    assert_eq!(
        s.linked(&schedule.id, &link("bob")).await.expect("used"),
        None,
        "a used link shows nothing"
    );
}

async fn a_site_is_deleted_only_once_nothing_needs_it(s: &impl Conformance) {
    let (schedule, sites) = s.approved_schedule(1).await;
    let refused = s.delete_site_by(&sites[0]).await;
    match refused {
        Err(StoreError::SiteInUse {
            schedules,
            unfinished_jobs,
            ..
        }) => {
            assert_eq!(schedules, [format!("bgp peers off ({})", schedule.id)]);
            assert_eq!(unfinished_jobs, 0);
        }
        other => panic!("expected SiteInUse, got {other:?}"),
    }
    s.cancel(&schedule.id).await.expect("cancelled");
    let busy = s
        .create_site_by(fleet_router(7), "alice")
        .await
        .expect("another site");
    s.create_jobs(vec![input(&busy.id, None)], t(60))
        .await
        .expect("a job on it");
    let refused = s.delete_site_by(&busy.id).await;
    assert!(
        matches!(
            refused,
            Err(StoreError::SiteInUse {
                unfinished_jobs: 1,
                ..
            })
        ),
        "{refused:?}"
    );
    let gone = s.delete_site_by(&sites[0]).await.expect("deleted");
    assert_eq!(gone.id, sites[0]);
    let read = s.login(&sites[0]).await;
    assert!(matches!(read, Err(StoreError::NotFound { .. })), "{read:?}");
    let audit = s.list_audit(&Page::first(100)).await.expect("audit");
    assert_eq!(
        audit.last().map(|a| a.action.as_str()),
        Some("site.deleted")
    );
    s.create_site_by(fleet_router(0), "alice")
        .await
        .expect("its name is free again");
}

async fn backups_and_diffs_are_sealed_apart_and_bound_to_their_job(s: &impl Conformance) {
    let created = s
        .create_jobs(vec![input("s1", None), input("s1", None)], t(0))
        .await
        .expect("jobs");
    let (with, without) = (&created[0].0.id, &created[1].0.id);
    s.put_backup(with, b"/export\nset admin password=x")
        .await
        .expect("backup");
    let changes = JobChanges {
        added: 2,
        removed: 1,
        digest: "ab".repeat(32),
    };
    s.put_diff(with, "+ one\n+ two\n- three", changes.clone())
        .await
        .expect("diff");
    assert_eq!(
        s.get_backup(with).await.expect("read").as_deref(),
        Some(&b"/export\nset admin password=x"[..])
    );
    assert_eq!(
        s.get_diff(with).await.expect("read").as_deref(),
        Some("+ one\n+ two\n- three")
    );
    let job = &s.get_jobs(std::slice::from_ref(with)).await.expect("job")[0];
    assert!(job.has_backup);
    assert_eq!(job.changes.as_ref(), Some(&changes));
    assert_eq!(s.get_backup(without).await.expect("none"), None);
    assert_eq!(s.get_diff(without).await.expect("none"), None);
    let missing = s.get_backup("nope").await;
    assert!(
        matches!(missing, Err(StoreError::NotFound { .. })),
        "{missing:?}"
    );
    let huge = vec![b'x'; 16 * 1024 * 1024 + 1];
    let refused = s.put_backup(without, &huge).await;
    assert!(
        matches!(refused, Err(StoreError::Invalid { .. })),
        "{refused:?}"
    );
}

async fn jobs_are_read_by_key_by_site_and_by_status(s: &impl Conformance) {
    let created = s
        .create_jobs(
            vec![
                input("s1", Some("k1")),
                input("s1", None),
                input("s2", None),
                input("s1", None),
            ],
            t(0),
        )
        .await
        .expect("jobs");
    let ids = ids(&created);
    let keyed = s.job_by_idempotency_key("org1", "k1").await.expect("read");
    assert_eq!(keyed.map(|j| j.id), Some(ids[0].clone()));
    assert_eq!(
        s.job_by_idempotency_key("org2", "k1").await.expect("none"),
        None
    );
    let newest = s.jobs_for_site("s1", &Page::first(2)).await.expect("page");
    assert_eq!(
        newest.iter().map(|j| j.id.clone()).collect::<Vec<_>>(),
        [ids[3].clone(), ids[1].clone()]
    );
    let older = s
        .jobs_for_site(
            "s1",
            &Page {
                limit: 2,
                after: Some(newest[1].seq_id),
            },
        )
        .await
        .expect("next page");
    assert_eq!(
        older.iter().map(|j| j.id.clone()).collect::<Vec<_>>(),
        [ids[0].clone()]
    );
    // All or none: an illegal change in the batch leaves every job as it was.
    let refused = s
        .transition_jobs(vec![
            (ids[0].clone(), JobTransition::Load),
            (ids[1].clone(), complete()),
        ])
        .await;
    assert!(
        matches!(refused, Err(StoreError::IllegalTransition { .. })),
        "{refused:?}"
    );
    let moved = s
        .transition_jobs(vec![
            (ids[0].clone(), JobTransition::Load),
            (ids[1].clone(), JobTransition::Load),
        ])
        .await
        .expect("loaded");
    assert!(moved.iter().all(|j| j.status == JobStatus::Loaded));
    let pending = s
        .active_jobs(JobStatus::Pending, &Page::first(10))
        .await
        .expect("pending");
    assert_eq!(
        pending.iter().map(|j| j.id.clone()).collect::<Vec<_>>(),
        [ids[2].clone(), ids[3].clone()]
    );
    assert!(
        s.active_jobs(JobStatus::Completed, &Page::first(10))
            .await
            .expect("finished are not indexed")
            .is_empty()
    );
    let counts = s.job_counts().await.expect("counts");
    let count = |status| counts.iter().find(|(s, _)| *s == status).map(|(_, n)| *n);
    assert_eq!(
        (
            count(JobStatus::Pending),
            count(JobStatus::Loaded),
            count(JobStatus::Failed)
        ),
        (Some(2), Some(2), Some(0))
    );
    assert_eq!(counts.len(), 6, "every status is listed");
}

async fn runs_are_listed_oldest_first_with_their_jobs(s: &impl Conformance) {
    let (schedule, sites) = s.approved_schedule(2).await;
    assert_eq!(s.last_run(&schedule.id).await.expect("none yet"), None);
    let site_refs: Vec<&str> = sites.iter().map(String::as_str).collect();
    for occurrence in [0, 1] {
        s.launch(
            LaunchPlan {
                next_launch_at: Some(t(7200)),
                ..plan(&schedule, occurrence, &site_refs)
            },
            t(3600),
        )
        .await
        .expect("launched");
    }
    let runs = s
        .list_runs(&schedule.id, &Page::first(10))
        .await
        .expect("runs");
    assert_eq!(
        runs.iter().map(|r| r.occurrence).collect::<Vec<_>>(),
        [0, 1]
    );
    let after = s
        .list_runs(
            &schedule.id,
            &Page {
                limit: 10,
                after: Some(0),
            },
        )
        .await
        .expect("after 0");
    assert_eq!(after.len(), 1);
    assert_eq!(
        s.last_run(&schedule.id)
            .await
            .expect("last")
            .map(|r| r.occurrence),
        Some(1)
    );
    let jobs = s.run_jobs(&schedule.id, 1).await.expect("jobs");
    let mut sorted = sites.clone();
    sorted.sort();
    assert_eq!(
        jobs.iter().map(|j| j.site_id.clone()).collect::<Vec<_>>(),
        sorted
    );
    assert!(
        jobs.iter()
            .all(|j| j.origin.as_ref().is_some_and(|o| o.occurrence == 1))
    );
}

async fn dead_letters_are_kept_per_organization_until_retried_and_delivered_events_are_pruned(
    s: &impl Conformance,
) {
    let lost = s
        .append_event("script.launched", serde_json::json!({"n": 1}))
        .await
        .expect("event");
    let sent = s
        .append_event("script.launched", serde_json::json!({"n": 2}))
        .await
        .expect("event");
    let dead = s
        .attempt(lost, "org1", Some("410 Gone"))
        .await
        .expect("dead");
    assert_eq!(dead.state, OutboxState::Dead);
    let delivered = s.attempt(sent, "org1", None).await.expect("delivered");
    assert_eq!(delivered.state, OutboxState::Delivered);
    let letters = s.dead_events("org1").await.expect("dead letters");
    assert_eq!(letters.iter().map(|e| e.id).collect::<Vec<_>>(), [lost]);
    assert!(s.dead_events("org2").await.expect("none").is_empty());
    let foreign = s.retry_dead_event("org2", lost).await;
    assert!(
        matches!(foreign, Err(StoreError::NotFound { .. })),
        "{foreign:?}"
    );
    let not_dead = s.retry_dead_event("org1", sent).await;
    assert!(
        matches!(not_dead, Err(StoreError::NotFound { .. })),
        "{not_dead:?}"
    );
    let retried = s.retry_dead_event("org1", lost).await.expect("retried");
    assert_eq!(
        (
            retried.state,
            retried.attempts,
            retried.next_attempt_at,
            retried.dead_at
        ),
        (OutboxState::Pending, 0, t(70), None)
    );
    assert!(s.dead_events("org1").await.expect("none").is_empty());
    // Pruning removes delivered events only, and only those created before the bound.
    assert_eq!(s.prune_events(t(0)).await.expect("none that old"), 0);
    assert_eq!(s.prune_events(t(1)).await.expect("pruned"), 1);
    let left: Vec<u64> = s
        .list_events(&Page::first(100))
        .await
        .expect("events")
        .iter()
        .map(|e| e.id)
        .collect();
    assert_eq!(left, [lost], "the retried event stays");
}

async fn the_latest_run_tells_where_each_site_stands(s: &impl Conformance) {
    let (schedule, sites) = s.approved_schedule(3).await;
    let site_refs: Vec<&str> = sites.iter().map(String::as_str).collect();
    for occurrence in [0, 1] {
        s.launch(
            LaunchPlan {
                next_launch_at: Some(t(7200)),
                ..plan(&schedule, occurrence, &site_refs)
            },
            t(3600),
        )
        .await
        .expect("launched");
    }
    let jobs = s.run_jobs(&schedule.id, 1).await.expect("jobs");
    let skipped = JobTransition::Fail {
        error: JobError {
            code: "skipped".into(),
            message: "offline".into(),
        },
        output: None,
    };
    s.transition_each(
        vec![
            (
                jobs[0].id.clone(),
                vec![JobTransition::Start, JobTransition::MarkSent, complete()],
            ),
            (jobs[1].id.clone(), vec![skipped]),
        ],
        t(3700),
    )
    .await
    .expect("moved");
    let changes = JobChanges {
        added: 1,
        removed: 0,
        digest: "cd".repeat(32),
    };
    s.put_diff(&jobs[0].id, "+ one", changes.clone())
        .await
        .expect("diff");
    let latest = s
        .latest_runs(&[schedule.id.as_str(), "never-launched"])
        .await
        .expect("latest");
    assert_eq!(latest.len(), 2);
    assert_eq!(latest[1], LatestRun::default());
    assert_eq!(latest[0].run.as_ref().map(|r| r.occurrence), Some(1));
    let expected: Vec<SiteOutcome> = jobs
        .iter()
        .zip([
            (SiteState::Completed, Some(changes)),
            (SiteState::Skipped, None),
            (SiteState::Pending, None),
        ])
        .map(|(job, (state, changes))| SiteOutcome {
            site_id: job.site_id.clone(),
            state,
            changes,
        })
        .collect();
    assert_eq!(latest[0].sites, expected);
}

async fn listings_filter_by_ids_name_frequency_creator_and_creation_time(s: &impl Conformance) {
    let daily = Recurrence {
        kind: RecurrenceKind::Daily,
        interval: None,
        days_of_week: Vec::new(),
        day_of_month: None,
        start_date: chrono::NaiveDate::from_ymd_opt(2030, 1, 1).expect("date"),
        end_date: None,
        start_time: chrono::NaiveTime::from_hms_opt(3, 0, 0).expect("time"),
        timezone: "UTC".into(),
    };
    let mut made = Vec::new();
    for (i, (name, by, recurring)) in [
        ("Backup core", "alice", false),
        ("backup EDGE", "bob", true),
        ("Rotate keys", "alice", true),
        ("Ärger backup", "carol", false),
    ]
    .into_iter()
    .enumerate()
    {
        let input = ScheduleInput {
            description: name.into(),
            created_by: by.into(),
            recurrence: recurring.then(|| daily.clone()),
            launch_at: (!recurring).then(|| t(3600)),
            ..schedule_input(&["s1".to_owned()])
        };
        made.push(
            s.create_schedule_at(input, t(i as i64 * 100))
                .await
                .expect("schedule")
                .id,
        );
    }
    let names = |listing: &ScheduleListing| {
        (
            listing
                .items
                .iter()
                .map(|s| s.description.clone())
                .collect::<Vec<_>>(),
            listing.total,
        )
    };
    let all = s
        .filter_schedules(&ScheduleFilter::default(), 1, Some(2))
        .await
        .expect("all");
    assert_eq!(
        names(&all),
        (vec!["backup EDGE".into(), "Rotate keys".into()], 4),
        "creation order, paged, with the total"
    );
    let cases: Vec<(ScheduleFilter, Vec<&str>)> = vec![
        (
            ScheduleFilter {
                name: Some("BACKUP".into()),
                ..ScheduleFilter::default()
            },
            vec!["Backup core", "backup EDGE", "Ärger backup"],
        ),
        (
            ScheduleFilter {
                name: Some("ärger".into()),
                ..ScheduleFilter::default()
            },
            vec!["Ärger backup"],
        ),
        (
            ScheduleFilter {
                schedule_type: Some(ScheduleType::Recurring),
                created_by: Some("alice".into()),
                ..ScheduleFilter::default()
            },
            vec!["Rotate keys"],
        ),
        (
            ScheduleFilter {
                frequency: Some(RecurrenceKind::OneTime),
                ..ScheduleFilter::default()
            },
            vec!["Backup core", "Ärger backup"],
        ),
        (
            ScheduleFilter {
                frequency: Some(RecurrenceKind::Daily),
                schedule_type: Some(ScheduleType::OneTime),
                ..ScheduleFilter::default()
            },
            vec![],
        ),
        (
            ScheduleFilter {
                created_from: Some(t(100)),
                created_to: Some(t(200)),
                ..ScheduleFilter::default()
            },
            vec!["backup EDGE", "Rotate keys"],
        ),
        (
            ScheduleFilter {
                ids: Some(vec![made[3].clone(), made[0].clone(), "other".into()]),
                ..ScheduleFilter::default()
            },
            vec!["Backup core", "Ärger backup"],
        ),
    ];
    for (filter, want) in cases {
        let got = s.filter_schedules(&filter, 0, None).await.expect("listing");
        let want: Vec<String> = want.into_iter().map(str::to_owned).collect();
        assert_eq!(names(&got), (want.clone(), want.len() as u64), "{filter:?}");
    }
    let beyond = s
        .filter_schedules(
            &ScheduleFilter {
                name: Some("backup".into()),
                ..ScheduleFilter::default()
            },
            10,
            Some(5),
        )
        .await
        .expect("beyond");
    assert_eq!(
        names(&beyond),
        (vec![], 3),
        "the total is told past the end too"
    );
}

async fn channels_keep_their_secrets_sealed_and_rotate_with_a_grace_period(s: &impl Conformance) {
    let channel = |org: &str, name: &str, kind: ChannelKind| ChannelInput {
        organization: org.into(),
        name: name.into(),
        kind,
        plugin: None,
        events: vec!["script.*".into()],
        settings: std::collections::BTreeMap::from([("url".into(), "https://h.example/x".into())]),
        secrets: std::collections::BTreeMap::from([("secret".into(), "first".into())]),
        created_by: "alice".into(),
    };
    let hook = s
        .create_channel(channel("org1", "ops", ChannelKind::Webhook))
        .await
        .expect("webhook");
    assert_eq!(
        (hook.plugin.as_str(), hook.secret_settings.clone()),
        ("webhook", vec!["secret".to_owned()])
    );
    let mail = s
        .create_channel(channel("org1", "mail", ChannelKind::Email))
        .await
        .expect("email");
    let taken = s
        .create_channel(channel("org1", "ops", ChannelKind::Email))
        .await;
    assert!(
        matches!(taken, Err(StoreError::Invalid { field: "name", .. })),
        "{taken:?}"
    );
    s.create_channel(channel("org2", "ops", ChannelKind::Webhook))
        .await
        .expect("names are per organization");
    let listed = s.list_channels("org1").await.expect("list");
    assert_eq!(listed, vec![hook.clone(), mail.clone()]);
    let foreign = s.get_channel("org2", &hook.id).await;
    assert!(
        matches!(foreign, Err(StoreError::NotFound { .. })),
        "{foreign:?}"
    );
    let secrets = s
        .channel_secrets("org1", &hook.id, t(1))
        .await
        .expect("secrets");
    assert_eq!(secrets.get("secret").map(String::as_str), Some("first"));

    let (rotated, until) = s
        .rotate_channel_secret("org1", &hook.id, "second")
        .await
        .expect("rotated");
    assert_eq!(until, Some(t(100) + GRACE));
    assert_eq!(rotated.id, hook.id);
    let during = s
        .channel_secrets("org1", &hook.id, t(101))
        .await
        .expect("secrets");
    assert_eq!(
        (
            during.get("secret").map(String::as_str),
            during.get("previous_secret").map(String::as_str)
        ),
        (Some("second"), Some("first"))
    );
    let after = s
        .channel_secrets("org1", &hook.id, t(100) + GRACE)
        .await
        .expect("secrets");
    assert_eq!(
        after.get("previous_secret"),
        None,
        "the old secret stops signing"
    );
    let email = s.rotate_channel_secret("org1", &mail.id, "x").await;
    assert!(
        matches!(email, Err(StoreError::Invalid { field: "kind", .. })),
        "{email:?}"
    );
    let wrong_org = s.rotate_channel_secret("org2", &hook.id, "x").await;
    assert!(
        matches!(wrong_org, Err(StoreError::NotFound { .. })),
        "{wrong_org:?}"
    );
    let wrong_org = s.delete_channel("org2", &hook.id).await;
    assert!(
        matches!(wrong_org, Err(StoreError::NotFound { .. })),
        "{wrong_org:?}"
    );
    s.delete_channel("org1", &hook.id).await.expect("deleted");
    assert_eq!(s.list_channels("org1").await.expect("list"), vec![mail]);

    assert_eq!(
        s.notify_secret_generation("org1").await.expect("none yet"),
        SecretGeneration::default()
    );
    let first = s.rotate_notify_secret("org1").await.expect("rotated");
    let second = s.rotate_notify_secret("org1").await.expect("rotated again");
    assert_eq!((first.generation, second.generation), (1, 2));
    assert_eq!(second.previous_at(t(101)), Some(1));
    assert_eq!(
        s.notify_secret_generation("org1").await.expect("read"),
        second
    );
    assert_eq!(
        s.notify_secret_generation("org2")
            .await
            .expect("read")
            .generation,
        0
    );
    let audit = s.list_audit(&Page::first(100)).await.expect("audit");
    let actions: Vec<&str> = audit.iter().map(|a| a.action.as_str()).collect();
    assert_eq!(
        actions,
        [
            "channel.secret_rotated",
            "notify.secret_rotated",
            "notify.secret_rotated"
        ]
    );
    assert!(
        !serde_json::to_string(&audit)
            .expect("json")
            .contains("second"),
        "no secret in the audit log"
    );
}

async fn templates_keep_every_version_and_belong_to_their_organization(s: &impl Conformance) {
    let input = |content: &str| TemplateInput {
        name: "set ntp".into(),
        description: "points the router at our NTP servers".into(),
        content: content.into(),
        metadata: std::collections::BTreeMap::from([("team".into(), "noc".into())]),
        variables: Vec::new(),
    };
    let first = s
        .create_template("org1", input("/system ntp client set enabled=yes"))
        .await
        .expect("created");
    assert_eq!((first.version, first.author.as_str()), (1, "alice"));
    let other = s
        .create_template("org2", input("/system identity print"))
        .await
        .expect("org2's");
    let foreign = s.get_template("org2", &first.id).await;
    assert!(
        matches!(foreign, Err(StoreError::NotFound { .. })),
        "{foreign:?}"
    );
    let stale = s
        .update_template("org1", &first.id, input("/ip dns print"), Some(7))
        .await;
    assert!(
        matches!(
            stale,
            Err(StoreError::Invalid {
                field: "version",
                ..
            })
        ),
        "{stale:?}"
    );
    let second = s
        .update_template("org1", &first.id, input("/ip dns print"), Some(1))
        .await
        .expect("edited");
    assert_eq!((second.version, second.updated_by.as_str()), (2, "bob"));
    assert_eq!(second.created_at, first.created_at);
    let bad = s.update_template("org1", &first.id, input(""), None).await;
    assert!(matches!(bad, Err(StoreError::Invalid { .. })), "{bad:?}");
    let versions = s
        .template_versions("org1", &first.id)
        .await
        .expect("versions");
    assert_eq!(
        versions
            .iter()
            .map(|v| (v.version, v.content.as_str(), v.author.as_str()))
            .collect::<Vec<_>>(),
        [
            (2, "/ip dns print", "bob"),
            (1, "/system ntp client set enabled=yes", "alice")
        ]
    );
    assert_eq!(
        s.template_version("org1", &first.id, 1)
            .await
            .expect("v1")
            .content,
        "/system ntp client set enabled=yes"
    );
    let missing = s.template_version("org1", &first.id, 3).await;
    assert!(
        matches!(missing, Err(StoreError::NotFound { .. })),
        "{missing:?}"
    );
    let foreign = s.template_versions("org2", &first.id).await;
    assert!(
        matches!(foreign, Err(StoreError::NotFound { .. })),
        "{foreign:?}"
    );
    assert_eq!(s.list_templates("org1").await.expect("list"), vec![second]);
    let foreign = s.delete_template("org1", &other.id).await;
    assert!(
        matches!(foreign, Err(StoreError::NotFound { .. })),
        "{foreign:?}"
    );
    s.delete_template("org1", &first.id).await.expect("deleted");
    assert!(s.list_templates("org1").await.expect("list").is_empty());
    let gone = s.template_version("org1", &first.id, 1).await;
    assert!(matches!(gone, Err(StoreError::NotFound { .. })), "{gone:?}");
    let audit = s.list_audit(&Page::first(100)).await.expect("audit");
    let actions: Vec<&str> = audit.iter().map(|a| a.action.as_str()).collect();
    assert_eq!(
        actions,
        [
            "template.created",
            "template.created",
            "template.updated",
            "template.deleted"
        ]
    );
}

async fn a_community_submission_is_processed_once_and_known_by_its_pinned_source(
    s: &impl Conformance,
) {
    let url = "https://raw.githubusercontent.com/a/b/main/x.rsc";
    let Submitted::New(first) = s.submit_community_script(url).await.expect("submitted") else {
        panic!("a new submission");
    };
    assert_eq!(first.status, CommunityStatus::Processing);
    assert_eq!(
        s.submit_community_script(url).await.expect("again"),
        Submitted::Existing(first.clone()),
        "one queued submission per source"
    );
    let (at, taken) = s
        .next_community_job(t(0))
        .await
        .expect("next")
        .expect("queued");
    assert_eq!(taken.id, first.id);
    let retried = s
        .finish_community_job(at, &first.id, Err(("busy".into(), Some(t(5)))))
        .await
        .expect("retry later");
    assert_eq!(
        (retried.attempts, retried.failure.as_deref()),
        (1, Some("busy"))
    );
    assert!(
        s.next_community_job(t(1)).await.expect("next").is_none(),
        "not due yet"
    );
    let (at, again) = s
        .next_community_job(t(5))
        .await
        .expect("next")
        .expect("due again");
    assert_eq!(again.id, first.id);
    let stale = s
        .finish_community_job(at - 1, &first.id, Err(("late".into(), None)))
        .await;
    assert!(
        matches!(stale, Err(StoreError::NotFound { .. })),
        "{stale:?}"
    );
    let commit = "c".repeat(40);
    let done = s
        .finish_community_job(
            at,
            &first.id,
            Ok(CommunityContent {
                name: "x.rsc".into(),
                content: "hello\n".into(),
                commit: commit.clone(),
                ..CommunityContent::default()
            }),
        )
        .await
        .expect("fetched");
    assert_eq!((done.status, done.attempts), (CommunityStatus::Ready, 2));
    assert_eq!(
        done.sha.as_deref(),
        Some("ce013625030ba8dba906f756967f9e9ca394464a")
    );
    assert!(
        s.next_community_job(t(99)).await.expect("next").is_none(),
        "nothing left"
    );
    let pinned = format!("https://github.com/a/b/blob/{commit}/x.rsc");
    let Submitted::New(other) = s
        .submit_community_script(&pinned)
        .await
        .expect("new source")
    else {
        panic!("another source is a new submission");
    };
    let (at, _) = s
        .next_community_job(t(99))
        .await
        .expect("next")
        .expect("queued");
    let fetched = s
        .finish_community_job(
            at,
            &other.id,
            Ok(CommunityContent {
                content: "pinned\n".into(),
                commit: commit.clone(),
                ..CommunityContent::default()
            }),
        )
        .await
        .expect("fetched");
    assert_eq!(
        s.submit_community_script(&pinned).await.expect("again"),
        Submitted::Existing(fetched),
        "a pinned source already fetched is that script"
    );
    assert_eq!(
        s.list_community_scripts()
            .await
            .expect("list")
            .iter()
            .map(|c| c.id.clone())
            .collect::<Vec<_>>(),
        [first.id.clone(), other.id]
    );
}

async fn a_summary_is_kept_only_for_the_content_it_summarizes(s: &impl Conformance) {
    let schedule = s
        .create_schedule(schedule_input(&["s1".to_owned()]))
        .await
        .expect("schedule");
    let template = |content: &str| TemplateInput {
        name: "ntp".into(),
        description: "ntp".into(),
        content: content.into(),
        metadata: std::collections::BTreeMap::new(),
        variables: Vec::new(),
    };
    let tpl = s
        .create_template("org1", template("/system ntp client print"))
        .await
        .expect("template");
    let due = s.due_summaries(t(0)).await.expect("due");
    let of = |kind: SummaryOf| {
        due.iter()
            .find(|task| task.of == kind)
            .cloned()
            .expect("a task of each kind")
    };
    let (for_schedule, for_template) = (of(SummaryOf::Schedule), of(SummaryOf::Template));
    assert_eq!(due.len(), 2);
    assert_eq!(
        (
            for_schedule.id.as_str(),
            for_schedule.script.as_str(),
            for_schedule.attempts
        ),
        (schedule.id.as_str(), ":log info launched", 0)
    );
    assert_eq!(for_template.script, "/system ntp client print");
    s.finish_summary(&for_schedule, Some("Logs a line."), None)
        .await
        .expect("stored");
    assert_eq!(
        s.get_schedule(&schedule.id)
            .await
            .expect("read")
            .summary
            .as_deref(),
        Some("Logs a line.")
    );
    // No summary yet for the template: tried again later.
    s.finish_summary(&for_template, None, Some(t(60)))
        .await
        .expect("requeued");
    assert!(s.due_summaries(t(1)).await.expect("none due").is_empty());
    let again = s.due_summaries(t(60)).await.expect("due again");
    assert_eq!(again.len(), 1);
    assert_eq!(
        (again[0].id.as_str(), again[0].attempts),
        (tpl.id.as_str(), 1)
    );
    // The template changes meanwhile: a summary of the old content is not stored, and the
    // entry for the new content stays.
    s.update_template(
        "org1",
        &tpl.id,
        template("/system ntp client set enabled=yes"),
        None,
    )
    .await
    .expect("edited");
    s.finish_summary(&again[0], Some("Prints the NTP client."), None)
        .await
        .expect("stale");
    assert_eq!(
        s.get_template("org1", &tpl.id).await.expect("read").summary,
        None
    );
    let fresh = s.due_summaries(t(60)).await.expect("due");
    assert_eq!(fresh.len(), 1);
    assert_eq!(fresh[0].script, "/system ntp client set enabled=yes");
    assert_ne!(fresh[0].digest, again[0].digest);
}

async fn a_job_named_twice_in_one_batch_moves_twice_in_order(s: &impl Conformance) {
    let created = s
        .create_jobs(vec![input("s1", None), input("s2", None)], t(0))
        .await
        .expect("jobs");
    let (a, b) = (created[0].0.id.clone(), created[1].0.id.clone());
    let out = s
        .transition_each(
            vec![
                (a.clone(), vec![JobTransition::Load]),
                (b.clone(), vec![complete()]),
                (a.clone(), vec![JobTransition::Start]),
            ],
            t(1),
        )
        .await
        .expect("moved");
    assert_eq!(
        out[0].as_ref().map(|j| j.status).ok(),
        Some(JobStatus::Loaded)
    );
    assert!(
        matches!(out[1], Err(StoreError::IllegalTransition { .. })),
        "{:?}",
        out[1]
    );
    assert_eq!(
        out[2].as_ref().map(|j| j.status).ok(),
        Some(JobStatus::Running)
    );
    let now = s.get_jobs(&[a, b]).await.expect("read");
    assert_eq!(
        (now[0].status, now[1].status),
        (JobStatus::Running, JobStatus::Pending),
        "the refused job is left as it was"
    );
}

async fn an_occurrence_launches_once_per_site(s: &impl Conformance) {
    let (schedule, sites) = s.approved_schedule(3).await;
    let site_refs: Vec<&str> = sites.iter().map(String::as_str).collect();
    let first = s
        .launch(plan(&schedule, 0, &site_refs[..2]), t(3600))
        .await
        .expect("first batch");
    assert_eq!(first.created.len(), 2);
    assert!(first.already_launched.is_empty());
    for job in &first.created {
        let origin = job.origin.as_ref().expect("origin");
        assert_eq!(
            (origin.schedule_id.as_str(), origin.occurrence),
            (schedule.id.as_str(), 0)
        );
        assert_eq!(
            (
                job.status,
                job.script.as_str(),
                job.description.as_str(),
                job.express_execute
            ),
            (
                JobStatus::Pending,
                ":log info launched",
                "bgp peers off",
                true
            )
        );
        assert!(job.endpoint.is_some(), "bound to how its site was reached");
    }
    // The whole occurrence again (a retry, a restart, a second scheduler): only the site
    // not yet launched gets a job; the others are reported with the job they have.
    let second = s
        .launch(plan(&schedule, 0, &site_refs), t(3601))
        .await
        .expect("again");
    assert_eq!(
        second
            .created
            .iter()
            .map(|j| j.site_id.as_str())
            .collect::<Vec<_>>(),
        vec![site_refs[2]]
    );
    let mut expected: Vec<(String, String)> = first
        .created
        .iter()
        .map(|j| (j.site_id.clone(), j.id.clone()))
        .collect();
    expected.sort();
    let mut already = second.already_launched.clone();
    already.sort();
    assert_eq!(already, expected);
    assert_eq!((second.run.total, second.run.pending), (3, 3));
    let created: Vec<String> = first
        .created
        .iter()
        .chain(&second.created)
        .map(|j| j.id.clone())
        .collect();
    let stored = s.get_jobs(&created).await.expect("stored");
    assert!(stored.iter().all(|j| j.status == JobStatus::Pending));

    // Another approval than the schedule's, or a site it does not cover: nothing.
    let mut stale = plan(&schedule, 1, &site_refs);
    stale.approval = "an approval of something else".into();
    let refused = s.launch(stale, t(7200)).await;
    assert!(
        matches!(refused, Err(StoreError::ScheduleState { .. })),
        "{refused:?}"
    );
    let stray = s.launch(plan(&schedule, 1, &["elsewhere"]), t(7200)).await;
    assert!(
        matches!(stray, Err(StoreError::ScheduleState { .. })),
        "{stray:?}"
    );
    assert_eq!(
        s.take(10, t(7201)).await.expect("take").len(),
        3,
        "no other job was made"
    );
}

async fn an_idempotency_key_creates_one_job(s: &impl Conformance) {
    let first = s
        .create_jobs(
            vec![
                input("s1", Some("k1")),
                input("s1", Some("k1")),
                input("s1", None),
            ],
            t(0),
        )
        .await
        .expect("create");
    assert!(first[0].1 && !first[1].1 && first[2].1, "{first:?}");
    assert_eq!(first[0].0.id, first[1].0.id, "the same key names one job");
    let again = s
        .create_jobs(vec![input("s2", Some("k1"))], t(1))
        .await
        .expect("again");
    assert!(!again[0].1);
    assert_eq!(again[0].0, first[0].0, "the job as first created");
    let mut other_org = input("s1", Some("k1"));
    other_org.organization = "org2".into();
    let other = s.create_jobs(vec![other_org], t(2)).await.expect("org2");
    assert!(other[0].1, "keys are per organization");
    assert_ne!(other[0].0.id, first[0].0.id);
    assert!(
        first[0].0.seq_id < first[2].0.seq_id && first[2].0.seq_id < other[0].0.seq_id,
        "sequence numbers grow"
    );
    let bad = s
        .create_jobs(
            vec![
                input("s1", None),
                JobInput {
                    script: " ".into(),
                    ..input("s1", None)
                },
            ],
            t(3),
        )
        .await;
    assert!(
        matches!(
            bad,
            Err(StoreError::Invalid {
                field: "script",
                ..
            })
        ),
        "{bad:?}"
    );
}

async fn reads_keep_the_order_asked_and_name_what_is_missing(s: &impl Conformance) {
    let created = s
        .create_jobs(
            (0..4).map(|i| input(&format!("s{i}"), None)).collect(),
            t(0),
        )
        .await
        .expect("create");
    let mut asked = ids(&created);
    asked.reverse();
    let jobs = s.get_jobs(&asked).await.expect("read");
    assert_eq!(jobs.iter().map(|j| j.id.clone()).collect::<Vec<_>>(), asked);
    assert_eq!(jobs[3], created[0].0, "stored as created");
    let missing = s.get_jobs(&[asked[0].clone(), "nope".into()]).await;
    assert!(
        matches!(&missing, Err(StoreError::NotFound { kind: "job", id }) if id == "nope"),
        "{missing:?}"
    );
}

async fn transition_each_settles_each_job_alone(s: &impl Conformance) {
    let ids = ids(&s
        .create_jobs((0..3).map(|_| input("s1", None)).collect(), t(0))
        .await
        .expect("create"));
    s.transition_each(vec![(ids[1].clone(), vec![JobTransition::Load])], t(1))
        .await
        .expect("commit")
        .remove(0)
        .expect("someone else took it");
    let out = s
        .transition_each(
            vec![
                (
                    ids[0].clone(),
                    vec![
                        JobTransition::Load,
                        JobTransition::Start,
                        JobTransition::MarkSent,
                    ],
                ),
                (
                    ids[1].clone(),
                    vec![JobTransition::Load, JobTransition::Start],
                ),
                ("missing".into(), vec![JobTransition::Load]),
            ],
            t(2),
        )
        .await
        .expect("commit");
    let first = out[0].as_ref().expect("legal");
    assert_eq!(
        (
            first.status,
            first.sent,
            first.attempts,
            first.loaded_at,
            first.started_at
        ),
        (JobStatus::Running, true, 1, Some(t(2)), Some(t(2)))
    );
    assert!(
        matches!(out[1], Err(StoreError::IllegalTransition { .. })),
        "{:?}",
        out[1]
    );
    assert!(
        matches!(out[2], Err(StoreError::NotFound { .. })),
        "{:?}",
        out[2]
    );
    let now = s.get_jobs(&ids).await.expect("read");
    assert_eq!(now[0], *first, "written as returned");
    assert_eq!(
        (now[1].status, now[1].started_at),
        (JobStatus::Loaded, None),
        "a refused step writes nothing"
    );
    assert_eq!(now[2].status, JobStatus::Pending);
}

async fn the_lifecycle_refuses_what_it_does_not_allow(s: &impl Conformance) {
    let id = s
        .create_jobs(vec![input("s1", None)], t(0))
        .await
        .expect("create")[0]
        .0
        .id
        .clone();
    let step = |transition: JobTransition, at: i64| {
        let id = id.clone();
        async move {
            s.transition_each(vec![(id, vec![transition])], t(at))
                .await
                .expect("commit")
                .remove(0)
        }
    };
    let refused = step(JobTransition::Complete { output: None }, 1).await;
    assert!(
        matches!(
            refused,
            Err(StoreError::IllegalTransition {
                from: JobStatus::Pending,
                to: JobStatus::Completed,
                ..
            })
        ),
        "{refused:?}"
    );
    assert!(
        step(JobTransition::MarkSent, 1).await.is_err(),
        "not running"
    );
    step(JobTransition::Start, 2).await.expect("start");
    step(JobTransition::MarkSent, 3).await.expect("sent");
    assert!(
        step(JobTransition::Requeue, 4).await.is_err(),
        "sent: never requeued"
    );
    assert!(
        step(JobTransition::Delete, 4).await.is_err(),
        "running: not deleted"
    );
    let done = step(
        JobTransition::Complete {
            output: Some("ok".into()),
        },
        5,
    )
    .await
    .expect("complete");
    assert_eq!(
        (done.status, done.completed_at, done.output.as_deref()),
        (JobStatus::Completed, Some(t(5)), Some("ok"))
    );
    assert!(step(JobTransition::Start, 6).await.is_err(), "finished");
    let deleted = step(JobTransition::Delete, 7).await.expect("delete");
    assert_eq!(deleted.deleted_at, Some(t(7)));
}

async fn a_stopped_engines_sent_jobs_fail_and_the_rest_are_requeued(s: &impl Conformance) {
    let created = ids(&s
        .create_jobs(
            (0..6).map(|i| input(&format!("s{i}"), None)).collect(),
            t(0),
        )
        .await
        .expect("create"));
    let taken = s.take(5, t(1)).await.expect("take");
    assert_eq!(
        taken.iter().map(|j| j.id.clone()).collect::<Vec<_>>(),
        created[..5],
        "oldest first"
    );
    assert!(taken.iter().all(|j| j.status == JobStatus::Loaded));
    let guard = RollbackGuard {
        name: "yardmaster-rollback-x1".into(),
        fires_at: t(301),
        backup_file: None,
        scheduler_entry: None,
        router_fires_at: None,
        disarmed_at: None,
        returned_at: None,
    };
    let out = s
        .transition_each(
            vec![
                // Sent: it may have run, so it is failed, not run again.
                (
                    created[0].clone(),
                    vec![JobTransition::Start, JobTransition::MarkSent],
                ),
                // Started, never sent: safe to run again.
                (created[1].clone(), vec![JobTransition::Start]),
                // created[2]: loaded only.
                // Sent under a dead-man rollback that was never disarmed.
                (
                    created[3].clone(),
                    vec![
                        JobTransition::Start,
                        JobTransition::MarkSent,
                        JobTransition::Guard(guard),
                    ],
                ),
                // Finished before the stop: left alone.
                (
                    created[4].clone(),
                    vec![
                        JobTransition::Start,
                        JobTransition::MarkSent,
                        JobTransition::Complete { output: None },
                    ],
                ),
            ],
            t(2),
        )
        .await
        .expect("commit");
    assert!(out.iter().all(Result::is_ok), "{out:?}");

    let report = s.engine_stopped(t(10)).await.expect("recover");
    let set = |v: &[String]| v.iter().cloned().collect::<BTreeSet<_>>();
    assert_eq!(
        set(&report.interrupted),
        set(&[created[0].clone(), created[3].clone()])
    );
    assert_eq!(
        set(&report.requeued),
        set(&[created[1].clone(), created[2].clone()])
    );
    assert_eq!(report.pending, 3, "two requeued and one never taken");

    let jobs = s.get_jobs(&created).await.expect("read");
    let error = |j: &Job| j.error.clone().expect("an error");
    assert_eq!(
        (jobs[0].status, jobs[0].failed_at),
        (JobStatus::Failed, Some(t(10)))
    );
    assert_eq!(error(&jobs[0]).code, INTERRUPTED);
    assert!(
        error(&jobs[0])
            .message
            .contains("may have reached the router")
    );
    assert!(!error(&jobs[0]).message.contains("dead-man"));
    let guarded = error(&jobs[3]).message;
    assert!(
        guarded.contains("dead-man rollback") && guarded.contains("yardmaster-rollback-x1"),
        "{guarded}"
    );
    for requeued in [&jobs[1], &jobs[2]] {
        assert_eq!(
            (requeued.status, requeued.loaded_at, requeued.started_at),
            (JobStatus::Pending, None, None)
        );
    }
    assert_eq!(jobs[4].status, JobStatus::Completed);
    assert_eq!(jobs[5].status, JobStatus::Pending);

    let again = s.engine_stopped(t(11)).await.expect("again");
    assert_eq!(
        again,
        Recovery {
            pending: 3,
            ..Recovery::default()
        },
        "nothing left in flight"
    );
    let retaken = s.take(10, t(12)).await.expect("take again");
    assert_eq!(retaken.len(), 3, "the requeued jobs run again");
}

/// The errors a stopped engine's sent jobs get, one plain and one under an armed dead-man
/// rollback.
async fn interrupted_errors(s: &impl Conformance) -> Vec<Option<JobError>> {
    let created = ids(&s
        .create_jobs(vec![input("s1", None), input("s2", None)], t(0))
        .await
        .expect("create"));
    s.take(2, t(1)).await.expect("take");
    let guard = RollbackGuard {
        name: "yardmaster-rollback-y2".into(),
        fires_at: t(601),
        backup_file: Some("yardmaster-rollback-y2.backup".into()),
        scheduler_entry: Some("yardmaster-rollback-y2".into()),
        router_fires_at: None,
        disarmed_at: None,
        returned_at: None,
    };
    let sent = vec![JobTransition::Start, JobTransition::MarkSent];
    let guarded = [sent.clone(), vec![JobTransition::Guard(guard)]].concat();
    s.transition_each(
        vec![(created[0].clone(), sent), (created[1].clone(), guarded)],
        t(2),
    )
    .await
    .expect("commit");
    s.engine_stopped(t(10)).await.expect("recover");
    let jobs = s.get_jobs(&created).await.expect("read");
    jobs.into_iter().map(|j| j.error).collect()
}

#[tokio::test]
async fn both_stores_tell_an_interrupted_job_the_same_way() {
    let redb = interrupted_errors(&Redb::open()).await;
    let postgres = interrupted_errors(&Pg::start().await).await;
    assert!(redb.iter().all(Option::is_some), "{redb:?}");
    assert_eq!(redb, postgres);
}

// ---------------------------------------------------------------------------------------
// What only the PostgreSQL store does: several engines on one database.

/// A raw client, to look at (or tamper with) the tables as another program would.
async fn raw(server: &Postgres) -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(&server.url(), tokio_postgres::NoTls)
        .await
        .expect("raw connect");
    tokio::spawn(connection);
    client
}

#[tokio::test]
async fn migrations_apply_once_even_when_engines_start_together() {
    let server = Postgres::start();
    let url = server.url();
    let key = Postgres::credential_key();
    let (a, b, c) = tokio::join!(
        PgStore::connect(&url, &key),
        PgStore::connect(&url, &key),
        PgStore::connect(&url, &key)
    );
    let (a, _b, _c) = (a.expect("a"), b.expect("b"), c.expect("c"));
    let every: Vec<u64> = (1..=yardmaster::store::postgres::SCHEMA_VERSION).collect();
    assert_eq!(a.schema_versions().await.expect("versions"), every);
    // Connecting again finds nothing to do and loses nothing.
    a.create_job(input("s1", None), t(0)).await.expect("create");
    let d = PgStore::connect(&url, &Postgres::credential_key())
        .await
        .expect("again");
    assert_eq!(d.schema_versions().await.expect("versions"), every);
    let client = raw(&server).await;
    let jobs: i64 = client
        .query_one("SELECT count(*) FROM jobs", &[])
        .await
        .expect("count")
        .get(0);
    assert_eq!(jobs, 1);

    // A database a newer engine migrated is refused, naming both versions.
    client
        .execute("INSERT INTO schema_version (version) VALUES (1000)", &[])
        .await
        .expect("pretend newer");
    match PgStore::connect(&url, &Postgres::credential_key()).await {
        Err(
            e @ StoreError::SchemaTooNew {
                found: 1000,
                supported: yardmaster::store::postgres::SCHEMA_VERSION,
                ..
            },
        ) => {
            assert!(
                e.to_string()
                    .contains(&format!("127.0.0.1:{}", server.port())),
                "{e}"
            );
        }
        other => panic!("expected SchemaTooNew, got {other:?}"),
    }
}

#[tokio::test]
async fn an_unreachable_server_is_named() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let err = PgStore::connect(
        &format!("postgres://postgres:hunter2@127.0.0.1:{port}/yardmaster"),
        &Postgres::credential_key(),
    )
    .await
    .expect_err("nothing listens there");
    let text = err.to_string();
    assert!(matches!(err, StoreError::Unreachable { .. }), "{err:?}");
    assert!(
        text.contains(&format!("127.0.0.1:{port}/yardmaster")),
        "{text}"
    );
    assert!(text.to_lowercase().contains("refused"), "{text}");
    assert!(
        !text.contains("hunter2"),
        "the password is not in messages: {text}"
    );
}

#[tokio::test]
async fn engines_share_one_credential_key_and_the_database_holds_only_sealed_secrets() {
    let server = Postgres::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let key_file = dir.path().join("credentials.key");
    let first = PgStore::connect(&server.url(), &CredentialKey::File(key_file.clone()))
        .await
        .expect("the first engine makes its key");
    let site = first
        .create_site(router("org1", "core-1"), t(0))
        .await
        .expect("site");

    // A second engine given the same key reads what the first sealed.
    let hex = hex::encode(std::fs::read(&key_file).expect("key"));
    let second = PgStore::connect(&server.url(), &CredentialKey::Hex(hex))
        .await
        .expect("the same key as hex");
    let (_, password) = second.site_with_password(&site.id).await.expect("login");
    assert_eq!(password.expose(), "s3cret-pw");

    // An engine with a key of its own is refused before it seals anything.
    let other = dir.path().join("other.key");
    let refused = PgStore::connect(&server.url(), &CredentialKey::File(other.clone())).await;
    match refused {
        Err(StoreError::Key { path, reason }) => {
            assert_eq!(path, other.display().to_string());
            assert!(reason.contains("same credential key"), "{reason}");
        }
        other => panic!("another key was accepted: {other:?}"),
    }
    let malformed = PgStore::connect(&server.url(), &CredentialKey::Hex("abcd".into())).await;
    assert!(
        matches!(&malformed, Err(StoreError::Key { reason, .. }) if reason.contains("64 hex digits")),
        "{malformed:?}"
    );

    // What the tables hold: never the password, in any column.
    let client = raw(&server).await;
    let dump: String = client
        .query_one(
            "SELECT string_agg(t::text, ' ') FROM (SELECT * FROM sites) AS t",
            &[],
        )
        .await
        .expect("dump")
        .get(0);
    assert!(
        dump.contains("core-1") && dump.contains("ciphertext"),
        "{dump}"
    );
    assert!(
        !dump.contains("s3cret-pw"),
        "a password in the clear: {dump}"
    );
}

#[tokio::test]
async fn engines_sign_with_one_key_kept_sealed_and_the_first_engines_file_seeds_it() {
    use std::os::unix::fs::PermissionsExt;
    use yardmaster::store::backend::signing_secret;

    let server = Postgres::start();
    let key = Postgres::credential_key();
    let a = PgStore::connect(&server.url(), &key).await.expect("a");
    let b = PgStore::connect(&server.url(), &key).await.expect("b");
    let dirs: Vec<tempfile::TempDir> = (0..3)
        .map(|_| tempfile::tempdir().expect("data dir"))
        .collect();
    // The first engine's data dir already holds a token key: what it signed before the
    // engines shared a database still holds.
    let own = [0x5au8; 32];
    let key_file = |path: &std::path::Path, key: [u8; 32]| {
        std::fs::write(path, key).expect("write");
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    };
    key_file(&dirs[0].path().join("jwt.key"), own);
    let first = signing_secret(Some(&a), dirs[0].path(), "jwt.key", 32)
        .await
        .expect("first");
    assert_eq!(first, own);
    // Another engine, with no key file, gets the same key and writes no file.
    let second = signing_secret(Some(&b), dirs[1].path(), "jwt.key", 32)
        .await
        .expect("second");
    assert_eq!(second, own);
    assert!(!dirs[1].path().join("jwt.key").exists());
    // A key file of its own is not used.
    let stray = dirs[2].path().join("jwt.key");
    key_file(&stray, [0x11u8; 32]);
    let third = signing_secret(Some(&b), dirs[2].path(), "jwt.key", 32)
        .await
        .expect("third");
    assert_eq!(third, own);
    // Each secret is kept apart: the notification key is another random one.
    let notify = signing_secret(Some(&b), dirs[1].path(), "notify.key", 32)
        .await
        .expect("notify");
    assert_eq!(notify.len(), 32);
    assert_ne!(notify, own);
    assert_eq!(
        signing_secret(Some(&a), dirs[0].path(), "notify.key", 32)
            .await
            .expect("notify again"),
        notify
    );
    // A key file readable by others is refused, not offered.
    std::fs::set_permissions(&stray, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    let refused = signing_secret(Some(&b), dirs[2].path(), "jwt.key", 32)
        .await
        .expect_err("a key file readable by others");
    assert!(refused.contains("chmod 600"), "{refused}");

    // The database holds neither in the clear.
    let client = raw(&server).await;
    let dump: String = client
        .query_one(
            "SELECT string_agg(t::text, ' ') FROM (SELECT * FROM store_facts) AS t",
            &[],
        )
        .await
        .expect("dump")
        .get(0);
    assert!(dump.contains("ciphertext"), "{dump}");
    for secret in [&own[..], &notify[..]] {
        assert!(
            !dump.contains(&hex::encode(secret)),
            "a key in the clear: {dump}"
        );
    }
    // Without a shared store, the key is the data dir's file, made on first use.
    let alone = tempfile::tempdir().expect("data dir");
    let made = signing_secret(None, alone.path(), "jwt.key", 32)
        .await
        .expect("made");
    assert_eq!(
        std::fs::read(alone.path().join("jwt.key")).expect("file"),
        made
    );
    assert_eq!(
        signing_secret(None, alone.path(), "jwt.key", 32)
            .await
            .expect("read"),
        made
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_summary_is_taken_by_one_engine_at_a_time() {
    let server = Postgres::start();
    let key = Postgres::credential_key();
    let a = PgStore::connect(&server.url(), &key).await.expect("a");
    let b = PgStore::connect(&server.url(), &key).await.expect("b");
    let schedule = a
        .create_schedule(schedule_input(&["s1".to_owned()]), t(0))
        .await
        .expect("schedule");
    let (x, y) = tokio::join!(a.due_summaries(t(0), 10), b.due_summaries(t(0), 10));
    let (x, y) = (x.expect("a reads"), y.expect("b reads"));
    assert_eq!(x.len() + y.len(), 1, "one engine takes it: {x:?} {y:?}");
    let task = x.into_iter().chain(y).next().expect("the task");
    assert_eq!(task.id, schedule.id);
    assert!(b.due_summaries(t(0), 10).await.expect("b").is_empty());
    // No summary yet: queued again for later, and free for any engine then.
    a.finish_summary(&task, None, Some(t(60)))
        .await
        .expect("requeued");
    let again = b.due_summaries(t(60), 10).await.expect("b again");
    assert_eq!(again.iter().map(|t| t.attempts).collect::<Vec<_>>(), [1]);
}

fn plan(schedule: &ScheduledScript, occurrence: u64, sites: &[&str]) -> LaunchPlan {
    LaunchPlan {
        schedule_id: schedule.id.clone(),
        occurrence,
        scheduled_for: t(3600),
        approval: schedule.approval.clone().unwrap_or_default(),
        sites: sites.iter().map(|s| (*s).to_owned()).collect(),
        more_batches: false,
        next_launch_at: None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_occurrence_runs_once_per_site_whichever_engine_launches_it() {
    let server = Postgres::start();
    let a = PgStore::connect(&server.url(), &Postgres::credential_key())
        .await
        .expect("a");
    let b = PgStore::connect(&server.url(), &Postgres::credential_key())
        .await
        .expect("b");
    let (schedule, sites) = approved_in(&a, 40).await;
    let site_refs: Vec<&str> = sites.iter().map(String::as_str).collect();
    let token = a
        .acquire_or_renew("engine-a", LONG)
        .await
        .expect("lease")
        .expect("free");

    // Two launches of the same occurrence at once (say, a retry racing the first): every
    // site gets exactly one job, and each launch reports the other's.
    let (x, y) = tokio::join!(
        a.launch(plan(&schedule, 7, &site_refs), token, t(3600)),
        b.launch(plan(&schedule, 7, &site_refs), token, t(3600))
    );
    let (x, y) = (x.expect("x"), y.expect("y"));
    assert_eq!(
        x.created.len() + y.created.len(),
        sites.len(),
        "one job per site"
    );
    let mut job_of_site = std::collections::BTreeMap::new();
    for job in x.created.iter().chain(&y.created) {
        assert!(
            job_of_site
                .insert(job.site_id.clone(), job.id.clone())
                .is_none()
        );
        let origin = job.origin.as_ref().expect("origin");
        assert_eq!(
            (origin.schedule_id.as_str(), origin.occurrence),
            (schedule.id.as_str(), 7)
        );
    }
    for (site, job) in x.already_launched.iter().chain(&y.already_launched) {
        assert_eq!(job_of_site.get(site), Some(job), "the job that exists");
    }
    assert_eq!(
        x.already_launched.len() + y.already_launched.len(),
        sites.len(),
        "each site reported once as already launched"
    );
    let run = if x.run.total > y.run.total {
        &x.run
    } else {
        &y.run
    };
    assert_eq!(
        (run.total, run.pending),
        (sites.len() as u64, sites.len() as u64)
    );

    // Again, later, from either engine: nothing new.
    let again = b
        .launch(plan(&schedule, 7, &site_refs[..3]), token, t(3700))
        .await
        .expect("again");
    assert!(again.created.is_empty());
    assert_eq!(again.already_launched.len(), 3);
    assert_eq!(
        a.ledger_entry(&schedule.id, 7, &sites[0])
            .await
            .expect("entry")
            .as_ref(),
        job_of_site.get(&sites[0])
    );
    // Another occurrence is another run.
    let next = a
        .launch(plan(&schedule, 8, &site_refs[..2]), token, t(7200))
        .await
        .expect("next");
    assert_eq!(next.created.len(), 2);

    // The constraint is the database's own: a writer that bypasses the store is refused.
    let client = raw(&server).await;
    let seq: i64 = client
        .query_one(
            "SELECT job_seq FROM ledger WHERE site_id = $1 AND occurrence = 7",
            &[&sites[0]],
        )
        .await
        .expect("entry")
        .get(0);
    let err = client
        .execute(
            "INSERT INTO ledger (schedule_id, occurrence, site_id, job_seq) VALUES ($1, 7, $2, $3)",
            &[&schedule.id, &sites[0], &seq],
        )
        .await
        .expect_err("a second entry for the same site");
    assert_eq!(
        err.code(),
        Some(&tokio_postgres::error::SqlState::UNIQUE_VIOLATION)
    );

    // A site the approval did not cover, or another approval, launches nothing.
    let stray = a
        .launch(plan(&schedule, 9, &["elsewhere"]), token, t(9000))
        .await;
    assert!(
        matches!(stray, Err(StoreError::ScheduleState { .. })),
        "{stray:?}"
    );
    let mut other = plan(&schedule, 9, &site_refs[..1]);
    other.approval = "approval-0".into();
    assert!(matches!(
        a.launch(other, token, t(9000)).await,
        Err(StoreError::ScheduleState { .. })
    ));
    assert!(
        a.ledger_entry(&schedule.id, 9, &sites[0])
            .await
            .expect("entry")
            .is_none()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn engines_claiming_together_never_share_a_job_and_leave_none() {
    let server = Postgres::start();
    let a = PgStore::connect(&server.url(), &Postgres::credential_key())
        .await
        .expect("a");
    let b = PgStore::connect(&server.url(), &Postgres::credential_key())
        .await
        .expect("b");
    let created = a
        .create_jobs(
            (0..300).map(|i| input(&format!("s{i}"), None)).collect(),
            t(0),
        )
        .await
        .expect("create");
    let drain = |store: PgStore, engine: &'static str| async move {
        let mut mine = Vec::new();
        loop {
            let batch = store
                .claim_pending(engine, 7, LONG, t(1))
                .await
                .expect("claim");
            if batch.is_empty() {
                return (store, mine);
            }
            mine.extend(batch.into_iter().map(|j| j.id));
        }
    };
    let (ra, rb) = tokio::join!(
        tokio::spawn(drain(a, "engine-a")),
        tokio::spawn(drain(b, "engine-b"))
    );
    let (a, from_a) = ra.expect("engine a drains");
    let (b, from_b) = rb.expect("engine b drains");
    let from_a: BTreeSet<String> = from_a.into_iter().collect();
    let from_b: BTreeSet<String> = from_b.into_iter().collect();
    assert!(from_a.is_disjoint(&from_b), "a job claimed by both engines");
    let all: BTreeSet<String> = ids(&created).into_iter().collect();
    let claimed: BTreeSet<String> = from_a.union(&from_b).cloned().collect();
    assert_eq!(claimed, all, "every job claimed");
    // The claim is on record: owner and lease, written with the job's status.
    let client = raw(&server).await;
    let rows = client
        .query(
            "SELECT owner, count(*) FROM jobs
             WHERE status = 'loaded' AND lease_expires_at > now() GROUP BY owner ORDER BY owner",
            &[],
        )
        .await
        .expect("owners");
    let owners: Vec<(String, i64)> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
    let total: i64 = owners.iter().map(|(_, n)| n).sum();
    assert_eq!(total, 300);
    for (owner, n) in &owners {
        let expected = if owner == "engine-a" {
            from_a.len()
        } else {
            from_b.len()
        };
        assert_eq!(*n as usize, expected, "{owner}");
    }
    assert!(
        a.claim_pending("engine-a", 10, LONG, t(2))
            .await
            .expect("claim")
            .is_empty()
    );

    // Both engines finish their jobs at once, in small batches: the counts the jobs
    // table's triggers keep equal a count of the table all along.
    let finish = async |store: &PgStore, engine: &'static str, mine: &BTreeSet<String>| {
        let mine: Vec<String> = mine.iter().cloned().collect();
        for (n, batch) in mine.chunks(9).map(<[String]>::to_vec).enumerate() {
            let end = if n % 3 == 0 {
                JobTransition::Fail {
                    error: yardmaster::store::JobError {
                        code: "x".into(),
                        message: "x".into(),
                    },
                    output: None,
                }
            } else {
                JobTransition::Complete { output: None }
            };
            let items = batch
                .into_iter()
                .map(|id| (id, vec![JobTransition::Start, end.clone()]))
                .collect();
            let out = store
                .transition_held(engine, items, t(3))
                .await
                .expect("end");
            assert!(out.iter().all(Result::is_ok), "{out:?}");
        }
    };
    tokio::join!(
        finish(&a, "engine-a", &from_a),
        finish(&b, "engine-b", &from_b)
    );
    let recount = client
        .query("SELECT status, count(*) FROM jobs GROUP BY status", &[])
        .await
        .expect("recount");
    let recount: BTreeSet<(String, u64)> = recount
        .iter()
        .map(|r| (r.get::<_, String>(0), r.get::<_, i64>(1) as u64))
        .collect();
    let kept: BTreeSet<(String, u64)> = a
        .job_counts()
        .await
        .expect("counts")
        .into_iter()
        .filter(|(_, n)| *n > 0)
        .map(|(status, n)| (status.as_str().to_owned(), n))
        .collect();
    assert_eq!(kept, recount);
    assert_eq!(kept.iter().map(|(_, n)| n).sum::<u64>(), 300);
}

#[tokio::test]
async fn the_scheduler_lease_moves_only_after_it_lapses_and_fences_the_old_holder() {
    let server = Postgres::start();
    let a = PgStore::connect(&server.url(), &Postgres::credential_key())
        .await
        .expect("a");
    let b = PgStore::connect(&server.url(), &Postgres::credential_key())
        .await
        .expect("b");
    let first = a
        .acquire_or_renew("engine-a", LONG)
        .await
        .expect("a")
        .expect("free");
    assert_eq!(
        b.acquire_or_renew("engine-b", LONG).await.expect("b"),
        None,
        "held by a"
    );
    assert_eq!(
        a.acquire_or_renew("engine-a", LONG).await.expect("renew"),
        Some(first),
        "a renewal keeps the token"
    );
    assert_eq!(
        b.lease_holder("scheduler").await.expect("holder"),
        Some(("engine-a".into(), first))
    );
    // Engine a stops renewing: its last renewal lapses almost at once.
    a.acquire_or_renew("engine-a", Duration::from_millis(1))
        .await
        .expect("short")
        .expect("held");
    let second = eventually("the lease to lapse and move to b", || async {
        b.acquire_or_renew("engine-b", LONG).await.expect("b")
    })
    .await;
    assert!(second > first, "{second} after {first}");
    assert_eq!(
        a.acquire_or_renew("engine-a", LONG).await.expect("a"),
        None,
        "b holds it now"
    );

    // Engine a wakes up believing it still launches: its stale token writes nothing.
    let (schedule, sites) = approved_in(&b, 1).await;
    let site = sites[0].as_str();
    let stale = a.launch(plan(&schedule, 0, &[site]), first, t(3600)).await;
    match stale {
        Err(e @ StoreError::Fenced { .. }) => {
            assert!(
                e.to_string().contains(&format!("token {first} is stale")),
                "{e}"
            );
        }
        other => panic!("expected Fenced, got {other:?}"),
    }
    assert!(
        a.ledger_entry(&schedule.id, 0, site)
            .await
            .expect("entry")
            .is_none()
    );
    let launched = b
        .launch(plan(&schedule, 0, &[site]), second, t(3600))
        .await
        .expect("the holder launches");
    assert_eq!(launched.created.len(), 1);

    // A release hands the lease on without waiting, with a larger token still.
    assert!(
        b.release_lease("scheduler", "engine-b")
            .await
            .expect("release")
    );
    let third = a
        .acquire_or_renew("engine-a", LONG)
        .await
        .expect("a")
        .expect("released");
    assert!(third > second);
}

/// The runner's path: a pending job is claimed by the transition that loads it, once;
/// only the jobs an engine still works on are renewed, and the others lapse.
#[tokio::test]
async fn a_job_is_claimed_as_it_is_loaded_and_only_the_work_under_way_is_renewed() {
    let server = Postgres::start();
    let a = PgStore::connect(&server.url(), &Postgres::credential_key())
        .await
        .expect("a");
    let b = PgStore::connect(&server.url(), &Postgres::credential_key())
        .await
        .expect("b");
    let ids = ids(&a
        .create_jobs(
            (0..3).map(|i| input(&format!("s{i}"), None)).collect(),
            t(0),
        )
        .await
        .expect("create"));
    let start = |id: &String| {
        (
            id.clone(),
            vec![
                JobTransition::Load,
                JobTransition::Start,
                JobTransition::MarkSent,
            ],
        )
    };
    // Both engines go for the first job at once: one takes it, the other is refused.
    let (first, second) = tokio::join!(
        a.claim_and_transition("engine-a", vec![start(&ids[0])], LONG, t(1)),
        b.claim_and_transition("engine-b", vec![start(&ids[0])], LONG, t(1)),
    );
    let (first, second) = (first.expect("a"), second.expect("b"));
    let taken = [&first[0], &second[0]].iter().filter(|r| r.is_ok()).count();
    assert_eq!(taken, 1, "{first:?} {second:?}");
    let (holder, other) = if first[0].is_ok() {
        (&a, "engine-b")
    } else {
        (&b, "engine-a")
    };
    let holder_name = if first[0].is_ok() {
        "engine-a"
    } else {
        "engine-b"
    };
    let lost = if first[0].is_ok() {
        &second[0]
    } else {
        &first[0]
    };
    assert!(matches!(lost, Err(StoreError::NotHeld { .. })), "{lost:?}");
    // The other engine may not move the job the first one holds.
    let refused = holder
        .claim_and_transition(
            other,
            vec![(ids[0].clone(), vec![JobTransition::Retry])],
            LONG,
            t(2),
        )
        .await
        .expect("refused in its answer");
    assert!(
        matches!(refused[0], Err(StoreError::NotHeld { .. })),
        "{refused:?}"
    );
    // A pending job is nobody's: ending it unstarted (a halt) needs no claim.
    let halted = holder
        .claim_and_transition(
            other,
            vec![(
                ids[2].clone(),
                vec![JobTransition::Fail {
                    error: JobError {
                        code: "halted".into(),
                        message: "halted".into(),
                    },
                    output: None,
                }],
            )],
            LONG,
            t(2),
        )
        .await
        .expect("halt");
    assert_eq!(
        halted[0].as_ref().expect("failed").status,
        JobStatus::Failed
    );
    // The holder claims a second job, then renews only the first: the second lapses and
    // is settled as a dead engine's would be (sent: interrupted).
    let second_claim = holder
        .claim_and_transition(
            holder_name,
            vec![start(&ids[1])],
            Duration::from_millis(1),
            t(3),
        )
        .await
        .expect("claim");
    assert!(second_claim[0].is_ok());
    let renewed = holder
        .renew_claims_of(holder_name, std::slice::from_ref(&ids[0]), LONG)
        .await
        .expect("renew");
    assert_eq!(renewed, vec![ids[0].clone()]);
    let report = eventually("the unrenewed claim to lapse", || async {
        let report = a.expire_leases(t(10)).await.expect("expire");
        (!report.interrupted.is_empty()).then_some(report)
    })
    .await;
    assert_eq!(report.interrupted, vec![ids[1].clone()]);
    let jobs = a.get_jobs(&ids).await.expect("read");
    assert_eq!(jobs[0].status, JobStatus::Running, "still held and at work");
    assert_eq!(jobs[1].status, JobStatus::Failed);
}

#[tokio::test]
async fn a_dead_engines_claims_expire_into_requeued_and_interrupted_jobs() {
    let server = Postgres::start();
    let dead = PgStore::connect(&server.url(), &Postgres::credential_key())
        .await
        .expect("dead");
    let alive = PgStore::connect(&server.url(), &Postgres::credential_key())
        .await
        .expect("alive");
    let ids = ids(&alive
        .create_jobs(
            (0..5).map(|i| input(&format!("s{i}"), None)).collect(),
            t(0),
        )
        .await
        .expect("create"));
    let claimed = dead
        .claim_pending("engine-dead", 4, LONG, t(1))
        .await
        .expect("claim");
    assert_eq!(claimed.len(), 4);
    let out = dead
        .transition_each(
            vec![
                (
                    ids[0].clone(),
                    vec![JobTransition::Start, JobTransition::MarkSent],
                ),
                (ids[1].clone(), vec![JobTransition::Start]),
                (
                    ids[3].clone(),
                    vec![
                        JobTransition::Start,
                        JobTransition::MarkSent,
                        JobTransition::Complete { output: None },
                    ],
                ),
            ],
            t(2),
        )
        .await
        .expect("work");
    assert!(out.iter().all(Result::is_ok));

    // While its leases run, nobody touches its work.
    assert_eq!(
        alive.expire_leases(t(3)).await.expect("expire"),
        Recovery {
            pending: 1,
            ..Recovery::default()
        }
    );
    assert_eq!(
        alive
            .renew_claims("engine-dead", LONG)
            .await
            .expect("renew")
            .len(),
        3,
        "the completed job is held no more"
    );
    // It stops renewing: its last renewal lapses almost at once.
    dead.renew_claims("engine-dead", Duration::from_millis(1))
        .await
        .expect("renew");
    let report = eventually("the dead engine's leases to lapse", || async {
        let report = alive.expire_leases(t(10)).await.expect("expire");
        (!report.interrupted.is_empty() || !report.requeued.is_empty()).then_some(report)
    })
    .await;
    assert_eq!(report.interrupted, vec![ids[0].clone()]);
    assert_eq!(report.requeued, vec![ids[1].clone(), ids[2].clone()]);
    assert_eq!(report.pending, 3);
    let jobs = alive.get_jobs(&ids).await.expect("read");
    assert_eq!(jobs[0].status, JobStatus::Failed);
    assert_eq!(
        jobs[0].error.as_ref().map(|e| e.code.as_str()),
        Some(INTERRUPTED)
    );
    assert_eq!(jobs[1].status, JobStatus::Pending);
    assert_eq!(jobs[2].status, JobStatus::Pending);
    assert_eq!(jobs[3].status, JobStatus::Completed);
    let client = raw(&server).await;
    let held: i64 = client
        .query_one("SELECT count(*) FROM jobs WHERE owner IS NOT NULL", &[])
        .await
        .expect("count")
        .get(0);
    assert_eq!(held, 0, "nothing is held by the dead engine any more");
    // The engine that lost its claims learns it on its next renewal.
    assert!(
        dead.renew_claims("engine-dead", LONG)
            .await
            .expect("renew")
            .is_empty()
    );
    // And whatever it still tries on them is refused, while they are left as they are.
    let late = dead
        .transition_held(
            "engine-dead",
            vec![(
                ids[1].clone(),
                vec![JobTransition::Load, JobTransition::Start],
            )],
            t(10),
        )
        .await
        .expect("commit");
    assert!(
        matches!(&late[0], Err(StoreError::NotHeld { engine, .. }) if engine == "engine-dead"),
        "{late:?}"
    );
    assert_eq!(
        alive.get_job(&ids[1]).await.expect("read").status,
        JobStatus::Pending
    );
    // The requeued work goes to an engine that is alive.
    let retaken = alive
        .claim_pending("engine-alive", 10, LONG, t(11))
        .await
        .expect("claim");
    let retaken: BTreeSet<String> = retaken.into_iter().map(|j| j.id).collect();
    assert_eq!(
        retaken,
        [ids[1].clone(), ids[2].clone(), ids[4].clone()]
            .into_iter()
            .collect()
    );
    let started = alive
        .transition_held(
            "engine-alive",
            vec![(ids[1].clone(), vec![JobTransition::Start])],
            t(11),
        )
        .await
        .expect("commit");
    assert_eq!(
        started[0].as_ref().map(|j| j.status).ok(),
        Some(JobStatus::Running),
        "{started:?}"
    );
    assert_eq!(
        alive
            .expire_leases(t(12))
            .await
            .expect("expire")
            .interrupted,
        Vec::<String>::new()
    );
}

#[tokio::test]
async fn a_server_restart_loses_nothing_acknowledged_and_the_pool_reconnects() {
    let mut server = Postgres::start();
    let store = PgStore::connect(&server.url(), &Postgres::credential_key())
        .await
        .expect("connect");
    let (before, _) = store
        .create_job(input("s1", Some("before")), t(0))
        .await
        .expect("create");
    let claimed = store
        .claim_pending(ENGINE, 1, LONG, t(1))
        .await
        .expect("claim");
    assert_eq!(claimed.len(), 1);
    let token = store
        .acquire_or_renew(ENGINE, LONG)
        .await
        .expect("lease")
        .expect("free");

    server.restart();

    // Every pooled connection died with the server; the pool replaces them.
    let (after, created) = store
        .create_job(input("s1", Some("after")), t(2))
        .await
        .expect("create after");
    assert!(created);
    let jobs = store
        .get_jobs(&[before.id.clone(), after.id.clone()])
        .await
        .expect("read");
    assert_eq!(
        jobs[0].status,
        JobStatus::Loaded,
        "the acknowledged claim survived"
    );
    assert_eq!(jobs[0].id, before.id);
    let (again, created) = store
        .create_job(input("s1", Some("before")), t(3))
        .await
        .expect("again");
    assert!(!created, "the idempotency key survived");
    assert_eq!(again.id, before.id);
    assert_eq!(
        store.acquire_or_renew(ENGINE, LONG).await.expect("lease"),
        Some(token),
        "the lease survived"
    );
}

#[tokio::test]
async fn an_engine_keeps_its_claims_on_events_it_has_not_settled() {
    let server = Postgres::start();
    let a = PgStore::connect(&server.url(), &Postgres::credential_key())
        .await
        .expect("a");
    let b = PgStore::connect(&server.url(), &Postgres::credential_key())
        .await
        .expect("b");
    let mut ids = Vec::new();
    for job in ["x", "y", "z"] {
        ids.push(
            a.append_event("job.status", serde_json::json!({"job_id": job}), t(0))
                .await
                .expect("append"),
        );
    }
    let short = Duration::from_millis(300);
    let taken = a
        .claim_events("engine-a", t(1), 10, short)
        .await
        .expect("claim");
    assert_eq!(taken.len(), 3);
    // x is settled; y and z are still at work, and their claims are renewed.
    let done = EventAttempt {
        error: None,
        retry_at: None,
        organization: Some("org1"),
        delivered_to: &[],
        now: t(2),
    };
    a.record_event_attempt("engine-a", ids[0], &done)
        .await
        .expect("x delivered");
    assert_eq!(
        a.renew_event_claims("engine-a", &ids, LONG)
            .await
            .expect("renew"),
        vec![ids[1], ids[2]],
        "only what it still holds"
    );
    assert!(
        b.renew_event_claims("engine-b", &ids, LONG)
            .await
            .expect("renew")
            .is_empty(),
        "an engine renews only its own claims"
    );
    // Long past the first lease, nobody else takes them.
    tokio::time::sleep(short * 2).await;
    assert!(
        b.claim_events("engine-b", t(3), 10, LONG)
            .await
            .expect("claim")
            .is_empty()
    );
    // Left to lapse, z goes to the next claimer, and a's renewal no longer has it.
    a.renew_event_claims("engine-a", &[ids[2]], Duration::from_millis(1))
        .await
        .expect("shorten");
    let retaken = eventually("z's claim to lapse", || async {
        let got = b
            .claim_events("engine-b", t(3), 10, LONG)
            .await
            .expect("claim");
        (!got.is_empty()).then_some(got)
    })
    .await;
    assert_eq!(
        retaken.iter().map(|e| e.id).collect::<Vec<_>>(),
        vec![ids[2]]
    );
    assert_eq!(
        a.renew_event_claims("engine-a", &ids, LONG)
            .await
            .expect("renew"),
        vec![ids[1]]
    );
}

#[tokio::test]
async fn outbox_events_are_claimed_once_at_a_time_and_in_order_per_job() {
    let server = Postgres::start();
    let a = PgStore::connect(&server.url(), &Postgres::credential_key())
        .await
        .expect("a");
    let b = PgStore::connect(&server.url(), &Postgres::credential_key())
        .await
        .expect("b");
    let event = |job: &str, n: u32| serde_json::json!({"job_id": job, "n": n});
    let x1 = a
        .append_event("job.status", event("x", 1), t(0))
        .await
        .expect("x1");
    let x2 = a
        .append_event("job.status", event("x", 2), t(1))
        .await
        .expect("x2");
    let y1 = a
        .append_event("job.status", event("y", 1), t(2))
        .await
        .expect("y1");
    let lone = a
        .append_event("script.launched", serde_json::json!({}), t(3))
        .await
        .expect("lone");
    let claimed_ids = |events: Vec<yardmaster::store::OutboxEvent>| {
        events.into_iter().map(|e| e.id).collect::<Vec<_>>()
    };

    // Engine a takes what is due; x2 waits behind x1.
    let first = a
        .claim_events("engine-a", t(10), 10, LONG)
        .await
        .expect("claim");
    assert_eq!(claimed_ids(first), vec![x1, y1, lone]);
    assert!(
        b.claim_events("engine-b", t(10), 10, LONG)
            .await
            .expect("claim")
            .is_empty(),
        "all held, or waiting behind a held one"
    );

    // x1 delivered: x2 is next, for whoever claims first.
    let done = EventAttempt {
        error: None,
        retry_at: None,
        organization: Some("org1"),
        delivered_to: &[],
        now: t(11),
    };
    let delivered = a
        .record_event_attempt("engine-a", x1, &done)
        .await
        .expect("delivered");
    assert_eq!(
        (delivered.state, delivered.attempts),
        (OutboxState::Delivered, 1)
    );
    assert_eq!(
        claimed_ids(
            b.claim_events("engine-b", t(12), 10, LONG)
                .await
                .expect("claim")
        ),
        vec![x2]
    );
    // An attempt by an engine that does not hold the event is refused.
    let stolen = a.record_event_attempt("engine-a", x2, &done).await;
    assert!(
        matches!(stolen, Err(StoreError::NotHeld { .. })),
        "{stolen:?}"
    );

    // y1 fails and is retried later: not due before then, and still first of its job.
    let y2 = a
        .append_event("job.status", event("y", 2), t(13))
        .await
        .expect("y2");
    let failed = EventAttempt {
        error: Some("connection refused"),
        retry_at: Some(t(100)),
        organization: None,
        delivered_to: &[],
        now: t(14),
    };
    let retried = a
        .record_event_attempt("engine-a", y1, &failed)
        .await
        .expect("retry");
    assert_eq!(
        (
            retried.state,
            retried.next_attempt_at,
            retried.last_error.as_deref()
        ),
        (OutboxState::Pending, t(100), Some("connection refused"))
    );
    assert!(
        b.claim_events("engine-b", t(50), 10, LONG)
            .await
            .expect("claim")
            .is_empty(),
        "y1 is not due, and y2 waits behind it"
    );

    // Engine a dies holding `lone`: once its lease lapses, b delivers it (at least once).
    assert!(
        a.claim_events("engine-a", t(50), 10, LONG)
            .await
            .expect("claim")
            .is_empty()
    );
    let again = a.get_event(lone).await.expect("read");
    assert_eq!(again.state, OutboxState::Pending);
    let client = raw(&server).await;
    client
        .execute(
            "UPDATE outbox SET lease_expires_at = clock_timestamp() - interval '1 second'
             WHERE owner = 'engine-a'",
            &[],
        )
        .await
        .expect("a's leases lapse");
    let taken = claimed_ids(
        b.claim_events("engine-b", t(100), 10, LONG)
            .await
            .expect("claim"),
    );
    assert_eq!(taken, vec![lone, y1], "the lapsed claim, and y1 now due");
    assert!(
        a.record_event_attempt("engine-a", lone, &done)
            .await
            .is_err(),
        "a lost it"
    );
    b.record_event_attempt("engine-b", y1, &done)
        .await
        .expect("y1 delivered");
    assert_eq!(
        claimed_ids(
            b.claim_events("engine-b", t(101), 10, LONG)
                .await
                .expect("claim")
        ),
        vec![y2]
    );
    // A held event put off is let go until its new time; only its holder may put it off.
    assert!(
        a.defer_event("engine-a", y2, t(200)).await.is_err(),
        "not a's"
    );
    let deferred = b
        .defer_event("engine-b", y2, t(200))
        .await
        .expect("deferred");
    assert_eq!(deferred.next_attempt_at, t(200));
    assert_eq!(deferred.state, OutboxState::Pending);
    assert!(
        a.claim_events("engine-a", t(150), 10, LONG)
            .await
            .expect("claim")
            .iter()
            .all(|e| e.id != y2),
        "not before its time"
    );
    assert_eq!(
        claimed_ids(
            a.claim_events("engine-a", t(200), 10, LONG)
                .await
                .expect("claim")
        ),
        vec![y2],
        "free for any engine once due"
    );
}

/// The next change `listener` hears, waiting no longer than the tests' patience.
async fn heard(listener: &mut yardmaster::store::postgres::changes::Listener) -> Change {
    tokio::time::timeout(yardmaster_tests::PATIENCE, listener.next())
        .await
        .expect("a change heard in time")
        .expect("still listening")
}

/// One engine hears what another announces, only once the announcing transaction has
/// committed; a write that changes nothing announces nothing; after the server restarts,
/// the listener reconnects, reports every kind of change once (what was announced
/// meanwhile is lost), and hears again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn engines_hear_each_others_changes_across_a_server_restart() {
    let mut server = Postgres::start();
    let first = PgStore::connect(&server.url(), &Postgres::credential_key())
        .await
        .expect("first engine");
    let second = PgStore::connect(&server.url(), &Postgres::credential_key())
        .await
        .expect("second engine");
    let mut listener = second.listen().await.expect("listen");

    first
        .create_jobs(vec![input("s1", Some("k1"))], t(0))
        .await
        .expect("jobs");
    assert_eq!(heard(&mut listener).await, Change::Jobs);
    // The same key again creates nothing, so nothing is announced before the schedules.
    first
        .create_jobs(vec![input("s1", Some("k1"))], t(1))
        .await
        .expect("found");
    first.announce(Change::Schedules).await.expect("announce");
    assert_eq!(heard(&mut listener).await, Change::Schedules);
    first
        .append_event("job.status", serde_json::json!({"job_id": "j1"}), t(2))
        .await
        .expect("event");
    assert_eq!(heard(&mut listener).await, Change::Outbox);

    tokio::task::block_in_place(|| server.restart());

    let mut after = BTreeSet::new();
    for _ in 0..Change::ALL.len() {
        after.insert(heard(&mut listener).await.as_str());
    }
    assert_eq!(
        after,
        Change::ALL
            .iter()
            .map(|c| c.as_str())
            .collect::<BTreeSet<_>>(),
        "every kind once after reconnecting"
    );
    first.announce(Change::Jobs).await.expect("announce after");
    assert_eq!(heard(&mut listener).await, Change::Jobs);
}
