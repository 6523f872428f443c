//! What the store costs per job, on redb and on PostgreSQL with one and with several
//! engines: an occurrence of N durable jobs (default 10,000) is launched on N sites in
//! batches of 1,000, as the launcher writes it, then every job is taken and moved through
//! its lifecycle (loaded, running, sent, completed) by the engines' workers, each taking
//! 100 jobs at a time: on redb one engine's runner reads the pending jobs and writes each
//! batch of transitions in one commit; on PostgreSQL each engine claims jobs
//! (`FOR UPDATE SKIP LOCKED`, with a lease) and writes each batch's transitions as the
//! engine that holds them. No router is involved: the figures are the store's share of
//! launch-to-done, the part that changes with the store. Prints launch and run times,
//! jobs per second, and checks that every job completed exactly once.
//!
//! PostgreSQL runs privately in a temporary directory on loopback, durable (`fsync`,
//! `synchronous_commit` on), as the store's tests start it.
//!
//! `cargo bench -p yardmaster-tests --bench store_pg [-- JOBS [ENGINES...]]`, for example
//! `-- 10000 1 3`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, TimeZone, Utc};
use yardmaster::approval::{self, OrgPolicy, Principal, SCOPE_AUTHORIZE};
use yardmaster::store::postgres::PgStore;
use yardmaster::store::{
    JobStatus, JobTransition, LaunchPlan, Page, ScheduleInput, ScheduledScript, Secret, SiteInput,
    Store, User,
};
use yardmaster_tests::postgres::Postgres;

/// Sites per launch batch, and jobs a worker takes at a time.
const BATCH: usize = 1_000;
const TAKE: usize = 100;
/// Workers per engine.
const WORKERS: usize = 4;
const LEASE: Duration = Duration::from_secs(600);

fn at(secs: i64) -> DateTime<Utc> {
    Utc.timestamp_opt(1_900_000_000 + secs, 0)
        .single()
        .expect("instant")
}

fn lifecycle() -> Vec<JobTransition> {
    vec![
        JobTransition::Start,
        JobTransition::MarkSent,
        JobTransition::Complete {
            output: Some("ok".into()),
        },
    ]
}

fn site(i: usize) -> SiteInput {
    SiteInput {
        organization: "bench".into(),
        name: format!("router-{i:05}"),
        address: "127.0.0.1".into(),
        port: Some(8728),
        transport: "routeros-api".into(),
        username: "admin".into(),
        password: Some(Secret::new("bench")),
        tls: Default::default(),
        tags: Vec::new(),
        private_key: None,
        private_key_passphrase: None,
        ssh: None,
    }
}

fn schedule(sites: Vec<String>) -> ScheduleInput {
    ScheduleInput {
        organization: "bench".into(),
        description: "store benchmark".into(),
        script: ":log info bench".into(),
        sites,
        launch_at: Some(at(3600)),
        created_by: "alice".into(),
        ..ScheduleInput::default()
    }
}

fn users() -> [User; 2] {
    ["alice", "bob"].map(|id| User {
        id: id.into(),
        name: id.into(),
        email: format!("{id}@example.com"),
        organization: "bench".into(),
        created_at: at(0),
    })
}

fn approver() -> Principal {
    Principal {
        user_id: "bob".into(),
        organization: "bench".into(),
        scopes: vec![SCOPE_AUTHORIZE.into()],
    }
}

/// The launch plans of one occurrence over `sites`, in batches.
fn plans(schedule: &ScheduledScript, sites: &[String]) -> Vec<LaunchPlan> {
    let mut sorted = sites.to_vec();
    sorted.sort();
    let batches: Vec<&[String]> = sorted.chunks(BATCH).collect();
    let last = batches.len().saturating_sub(1);
    batches
        .into_iter()
        .enumerate()
        .map(|(i, batch)| LaunchPlan {
            schedule_id: schedule.id.clone(),
            occurrence: 0,
            scheduled_for: at(3600),
            approval: schedule.approval.clone().unwrap_or_default(),
            sites: batch.to_vec(),
            more_batches: i < last,
            next_launch_at: None,
        })
        .collect()
}

struct Figures {
    launch: Duration,
    run: Duration,
    /// PostgreSQL: reading the job counts `/metrics` reads, and counting the table.
    counts: Option<(Duration, Duration)>,
}

fn report(label: &str, jobs: usize, f: &Figures) {
    let total = f.launch + f.run;
    println!(
        "{label:<28} launch {:>8.1} ms  run {:>8.1} ms  total {:>8.1} ms  {:>8.0} jobs/s",
        f.launch.as_secs_f64() * 1e3,
        f.run.as_secs_f64() * 1e3,
        total.as_secs_f64() * 1e3,
        jobs as f64 / total.as_secs_f64()
    );
    if let Some((kept, recount)) = f.counts {
        println!(
            "{:<28} {:.2} ms kept, {:.2} ms counting the table",
            "  job counts (/metrics)",
            kept.as_secs_f64() * 1e3,
            recount.as_secs_f64() * 1e3
        );
    }
}

fn redb(jobs: usize) -> Result<Figures, String> {
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let store = Store::open(dir.path()).map_err(|e| e.to_string())?;
    for user in users() {
        store.put_user(&user).map_err(|e| e.to_string())?;
    }
    let sites = store
        .import_sites("bench", (0..jobs).map(site).collect(), "alice", at(0))
        .map_err(|e| e.to_string())?
        .map_err(|refused| format!("{} sites refused", refused.len()))?;
    let ids: Vec<String> = sites.into_iter().map(|s| s.id).collect();
    let created = store
        .create_schedule(schedule(ids.clone()), at(0))
        .map_err(|e| e.to_string())?;
    approval::approve(
        &store,
        &created.id,
        &approver(),
        None,
        OrgPolicy::default(),
        at(1),
    )
    .map_err(|e| e.to_string())?;
    let approved = store.get_schedule(&created.id).map_err(|e| e.to_string())?;

    let start = Instant::now();
    for plan in plans(&approved, &ids) {
        store.launch(plan, at(3600)).map_err(|e| e.to_string())?;
    }
    let launch = start.elapsed();
    let start = Instant::now();
    loop {
        let pending = store
            .active_jobs(JobStatus::Pending, &Page::first(TAKE))
            .map_err(|e| e.to_string())?;
        if pending.is_empty() {
            break;
        }
        let loaded: Vec<(String, Vec<JobTransition>)> = pending
            .into_iter()
            .map(|j| (j.id, vec![JobTransition::Load]))
            .collect();
        let ids: Vec<String> = loaded.iter().map(|(id, _)| id.clone()).collect();
        store
            .transition_each(loaded, at(3601))
            .map_err(|e| e.to_string())?;
        let done = ids.into_iter().map(|id| (id, lifecycle())).collect();
        for outcome in store
            .transition_each(done, at(3602))
            .map_err(|e| e.to_string())?
        {
            outcome.map_err(|e| e.to_string())?;
        }
    }
    let run = start.elapsed();
    let run_record = store.get_run(&approved.id, 0).map_err(|e| e.to_string())?;
    check(jobs, run_record.completed, run_record.total)?;
    Ok(Figures {
        launch,
        run,
        counts: None,
    })
}

async fn postgres(
    server: &Postgres,
    database: &str,
    jobs: usize,
    engines: usize,
) -> Result<Figures, String> {
    server.create_database(database);
    let url = server.url_for(database);
    let key = Postgres::credential_key();
    let mut stores = Vec::with_capacity(engines);
    for _ in 0..engines {
        stores.push(Arc::new(
            PgStore::connect(&url, &key)
                .await
                .map_err(|e| e.to_string())?,
        ));
    }
    let first = &stores[0];
    for user in users() {
        first.put_user(&user).await.map_err(|e| e.to_string())?;
    }
    let sites = first
        .import_sites("bench", (0..jobs).map(site).collect(), "alice", at(0))
        .await
        .map_err(|e| e.to_string())?
        .map_err(|refused| format!("{} sites refused", refused.len()))?;
    let ids: Vec<String> = sites.into_iter().map(|s| s.id).collect();
    let created = first
        .create_schedule(schedule(ids.clone()), at(0))
        .await
        .map_err(|e| e.to_string())?;
    approval::approve_in(
        first,
        &created.id,
        &approver(),
        None,
        OrgPolicy::default(),
        at(1),
    )
    .await
    .map_err(|e| e.to_string())?;
    let approved = first
        .get_schedule(&created.id)
        .await
        .map_err(|e| e.to_string())?;
    let token = first
        .acquire_or_renew("engine-0", LEASE)
        .await
        .map_err(|e| e.to_string())?
        .ok_or("the scheduler lease is free")?;

    let start = Instant::now();
    for plan in plans(&approved, &ids) {
        first
            .launch(plan, token, at(3600))
            .await
            .map_err(|e| e.to_string())?;
    }
    let launch = start.elapsed();
    let start = Instant::now();
    let mut workers = tokio::task::JoinSet::new();
    for (e, store) in stores.iter().enumerate() {
        for _ in 0..WORKERS {
            let store = Arc::clone(store);
            let engine = format!("engine-{e}");
            workers.spawn(async move {
                loop {
                    let claimed = store
                        .claim_pending(&engine, TAKE, LEASE, at(3601))
                        .await
                        .map_err(|e| e.to_string())?;
                    if claimed.is_empty() {
                        return Ok::<(), String>(());
                    }
                    let done = claimed.into_iter().map(|j| (j.id, lifecycle())).collect();
                    for outcome in store
                        .transition_held(&engine, done, at(3602))
                        .await
                        .map_err(|e| e.to_string())?
                    {
                        outcome.map_err(|e| e.to_string())?;
                    }
                }
            });
        }
    }
    while let Some(joined) = workers.join_next().await {
        joined.map_err(|e| e.to_string())??;
    }
    let run = start.elapsed();
    let run_record = first
        .get_run(&approved.id, 0)
        .await
        .map_err(|e| e.to_string())?;
    check(jobs, run_record.completed, run_record.total)?;
    // What `/metrics` reads: the kept counts, beside a count of the table.
    let start = Instant::now();
    for _ in 0..COUNT_READS {
        let counts = first.job_counts().await.map_err(|e| e.to_string())?;
        let completed = counts
            .iter()
            .find(|(s, _)| *s == JobStatus::Completed)
            .map_or(0, |(_, n)| *n);
        check(jobs, completed, jobs as u64)?;
    }
    let counts = start.elapsed() / COUNT_READS;
    let (client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
        .await
        .map_err(|e| e.to_string())?;
    tokio::spawn(connection);
    let start = Instant::now();
    for _ in 0..COUNT_READS {
        client
            .query("SELECT status, count(*) FROM jobs GROUP BY status", &[])
            .await
            .map_err(|e| e.to_string())?;
    }
    let recount = start.elapsed() / COUNT_READS;
    Ok(Figures {
        launch,
        run,
        counts: Some((counts, recount)),
    })
}

/// Every job launched once, and completed once.
fn check(jobs: usize, completed: u64, total: u64) -> Result<(), String> {
    if (total, completed) != (jobs as u64, jobs as u64) {
        return Err(format!(
            "the run counts {total} jobs and {completed} completed, not {jobs} each"
        ));
    }
    Ok(())
}

/// Reads of the job counts timed, to average.
const COUNT_READS: u32 = 50;

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    let jobs: usize = args.first().and_then(|a| a.parse().ok()).unwrap_or(10_000);
    let mut engines: Vec<usize> = args.iter().skip(1).filter_map(|a| a.parse().ok()).collect();
    if engines.is_empty() {
        engines = vec![1, 3];
    }
    println!(
        "{jobs} durable jobs, launched in batches of {BATCH}, taken {TAKE} at a time, \
         {WORKERS} workers per PostgreSQL engine"
    );
    match redb(jobs) {
        Ok(f) => report("redb, one engine", jobs, &f),
        Err(e) => {
            eprintln!("redb: {e}");
            std::process::exit(1);
        }
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let server = match Postgres::try_start() {
        Ok(server) => server,
        Err(e) => {
            eprintln!("no private PostgreSQL for the benchmark: {e}");
            std::process::exit(1);
        }
    };
    for n in engines {
        let outcome = runtime.block_on(postgres(&server, &format!("bench_{n}"), jobs, n));
        match outcome {
            Ok(f) => report(&format!("PostgreSQL, {n} engine(s)"), jobs, &f),
            Err(e) => {
                eprintln!("PostgreSQL with {n} engine(s): {e}");
                std::process::exit(1);
            }
        }
    }
}
