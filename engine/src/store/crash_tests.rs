//! Crash consistency: a child process (this test binary, re-run with an environment
//! variable) launches occurrences, creates jobs and moves them through their lifecycle in
//! a loop until it is killed with SIGKILL at a random moment. After each kill the parent
//! opens the store and checks that every committed record is whole and that jobs, the
//! ledger, runs and the indexes agree; the next child then resumes where the last one
//! stopped, relaunching the occurrence it may have been in, as a restarted scheduler would.

use std::collections::{BTreeMap, BTreeSet};
use std::io::BufRead;
use std::process::{Command, Stdio};
use std::time::Duration;

use chacha20poly1305::aead::{OsRng, rand_core::RngCore};
use redb::{ReadableTable, ReadableTableMetadata};

use super::Store;
use super::records::{Job, JobInput, JobStatus, JobTransition, Page, Run, ScheduleInput};
use super::schedules::LaunchPlan;
use super::tables::{
    IDEMPOTENCY, JOB_IDS, JOBS, JOBS_ACTIVE, JOBS_BY_SITE, LEDGER, META, META_JOB_SEQ, RUNS,
};
use super::test_support::t;
use super::txn::decode;

const CHILD_DIR: &str = "YARDMASTER_STORE_CRASH_CHILD";
const SITES: usize = 12;
const SCHEDULE: &str = "crash schedule";

/// Runs only as the child of `kill_9_at_random_moments_leaves_the_store_consistent`.
#[test]
fn crash_child() {
    let Ok(dir) = std::env::var(CHILD_DIR) else {
        return;
    };
    let store = Store::open(&dir).expect("child opens the store");
    store.recover(t(0)).expect("child recovers");
    let schedule = match store
        .list_schedules("org1", &Page::first(1))
        .expect("list")
        .pop()
    {
        Some(s) => s,
        None => {
            let s = store
                .create_schedule(
                    ScheduleInput {
                        organization: "org1".into(),
                        description: SCHEDULE.into(),
                        script: ":log info crash".into(),
                        sites: (0..SITES).map(site).collect(),
                        launch_at: Some(t(10)),
                        created_by: "creator".into(),
                        ..ScheduleInput::default()
                    },
                    t(0),
                )
                .expect("create schedule");
            crate::store::schedules::tests::authorize(&store, &s.id, "approver", Some(t(10)), t(1))
                .expect("authorize")
        }
    };
    // Resume at the last occurrence: it may have been launched only in part (it cannot be,
    // which is the point), so it is launched again, and must create nothing twice.
    let mut occurrence = store
        .list_runs(&schedule.id, &Page::first(usize::MAX))
        .expect("runs")
        .last()
        .map_or(0, |r| r.occurrence);
    println!("ready");
    let mut rng = OsRng;
    loop {
        let launch = store
            .launch(
                LaunchPlan {
                    schedule_id: schedule.id.clone(),
                    occurrence,
                    scheduled_for: t(10),
                    approval: schedule.approval.clone().unwrap_or_default(),
                    sites: (0..SITES).map(site).collect(),
                    more_batches: false,
                    next_launch_at: Some(t(20)),
                },
                t(10),
            )
            .expect("launch");
        for job in &launch.created {
            store
                .transition_job(&job.id, JobTransition::Start, t(11))
                .expect("start");
            if rng.next_u32().is_multiple_of(2) {
                store
                    .transition_job(&job.id, JobTransition::MarkSent, t(11))
                    .expect("sent");
                if !rng.next_u32().is_multiple_of(3) {
                    store
                        .transition_job(
                            &job.id,
                            JobTransition::Complete {
                                output: Some("ok".into()),
                            },
                            t(12),
                        )
                        .expect("complete");
                }
            }
        }
        let key = format!("key-{}", rng.next_u32() % 64);
        store
            .create_jobs(
                vec![
                    job_input(&key),
                    job_input(&format!("key-{}", rng.next_u32() % 64)),
                    job_input(&key),
                ],
                t(13),
            )
            .expect("bulk jobs");
        occurrence += 1;
    }
}

fn site(i: usize) -> String {
    format!("site-{i:02}")
}

fn job_input(key: &str) -> JobInput {
    JobInput {
        organization: "org1".into(),
        site_id: site(0),
        request_id: None,
        idempotency_key: Some(key.into()),
        description: "bulk".into(),
        script: ":log info bulk".into(),
        make_backup: false,
        express_execute: false,
        needs_acknowledgement: true,
        notify_url: None,
        rollback_after_secs: None,
        script_origin: None,
    }
}

#[test]
fn kill_9_at_random_moments_leaves_the_store_consistent() {
    let dir = tempfile::tempdir().expect("tempdir");
    let exe = std::env::current_exe().expect("test binary");
    let mut last_jobs = 0;
    for round in 0..8 {
        let mut child = Command::new(&exe)
            .args([
                "--exact",
                "store::crash_tests::crash_child",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD_DIR, dir.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn child");
        let stdout = child.stdout.take().expect("child stdout");
        let ready = std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
            .any(|l| l.contains("ready"));
        assert!(ready, "round {round}: the child never got going");
        std::thread::sleep(Duration::from_millis(
            50 + u64::from(OsRng.next_u32() % 400),
        ));
        child.kill().expect("SIGKILL");
        child.wait().expect("reap");

        let store = Store::open(dir.path()).expect("open after kill");
        let jobs = check(&store, round);
        assert!(
            jobs >= last_jobs,
            "round {round}: committed jobs were lost ({jobs} < {last_jobs})"
        );
        last_jobs = jobs;
        store.recover(t(100)).expect("recover");
        assert!(
            store
                .active_jobs(JobStatus::Running, &Page::first(10))
                .expect("running")
                .is_empty()
        );
        check(&store, round);
    }
    assert!(last_jobs > 0, "the children committed nothing");
}

/// Checks every cross-record invariant and returns how many jobs there are.
fn check(store: &Store, round: usize) -> usize {
    store
        .read(|tx| {
            let mut jobs: BTreeMap<u64, Job> = BTreeMap::new();
            for entry in tx.open_table(JOBS)?.iter()? {
                let (k, v) = entry?;
                let job: Job = decode("job", "", v.value())?;
                assert_eq!(job.seq_id, k.value(), "round {round}");
                jobs.insert(k.value(), job);
            }
            let last_seq = tx
                .open_table(META)?
                .get(META_JOB_SEQ)?
                .map_or(0, |v| v.value());
            assert!(
                jobs.keys().all(|&s| s <= last_seq),
                "round {round}: seq counter behind the jobs"
            );

            let ids = tx.open_table(JOB_IDS)?;
            let by_site = tx.open_table(JOBS_BY_SITE)?;
            let active = tx.open_table(JOBS_ACTIVE)?;
            for (seq, job) in &jobs {
                assert_eq!(
                    ids.get(job.id.as_str())?.map(|v| v.value()),
                    Some(*seq),
                    "round {round}: id index"
                );
                assert!(
                    by_site.get((job.site_id.as_str(), *seq))?.is_some(),
                    "round {round}: site index"
                );
                for status in [JobStatus::Pending, JobStatus::Loaded, JobStatus::Running] {
                    let code = status.active_code().unwrap_or(u8::MAX);
                    let indexed = active.get((code, *seq))?.is_some();
                    assert_eq!(
                        indexed,
                        job.status == status,
                        "round {round}: active index of {}",
                        job.id
                    );
                }
            }
            assert_eq!(
                ids.len()?,
                jobs.len() as u64,
                "round {round}: stray id index entries"
            );
            assert_eq!(
                by_site.len()?,
                jobs.len() as u64,
                "round {round}: stray site index entries"
            );

            // Ledger and jobs agree both ways: every ledger entry names a job of that
            // occurrence and site, and every scheduled job has exactly its entry.
            let mut ledger: BTreeSet<(String, u64, String)> = BTreeSet::new();
            for entry in tx.open_table(LEDGER)?.iter()? {
                let (k, v) = entry?;
                let (schedule, occurrence, site) = k.value();
                let job = jobs.get(&v.value()).expect("ledger names a committed job");
                let origin = job.origin.as_ref().expect("scheduled job has an origin");
                assert_eq!(
                    (
                        origin.schedule_id.as_str(),
                        origin.occurrence,
                        job.site_id.as_str()
                    ),
                    (schedule, occurrence, site)
                );
                ledger.insert((schedule.to_owned(), occurrence, site.to_owned()));
            }
            let scheduled: Vec<_> = jobs
                .values()
                .filter_map(|j| j.origin.as_ref().map(|o| (o, j)))
                .collect();
            assert_eq!(
                scheduled.len(),
                ledger.len(),
                "round {round}: a job without its ledger entry, or twice"
            );

            let mut per_run: BTreeMap<(String, u64), u64> = BTreeMap::new();
            for (origin, _) in &scheduled {
                *per_run
                    .entry((origin.schedule_id.clone(), origin.occurrence))
                    .or_default() += 1;
            }
            for entry in tx.open_table(RUNS)?.iter()? {
                let (k, v) = entry?;
                let run: Run = decode("run", "", v.value())?;
                let (schedule, occurrence) = k.value();
                let count = per_run
                    .remove(&(schedule.to_owned(), occurrence))
                    .unwrap_or(0);
                assert_eq!(run.total, count, "round {round}: run {occurrence} total");
                assert_eq!(
                    count, SITES as u64,
                    "round {round}: occurrence {occurrence} launched in part"
                );
                assert_eq!(
                    run.completed + run.failed + run.skipped + run.pending,
                    run.total,
                    "round {round}"
                );
            }
            assert!(
                per_run.is_empty(),
                "round {round}: jobs of a run that was never written"
            );

            for entry in tx.open_table(IDEMPOTENCY)?.iter()? {
                let (k, v) = entry?;
                let job = jobs
                    .get(&v.value())
                    .expect("idempotency names a committed job");
                assert_eq!(
                    job.idempotency_key.as_deref(),
                    Some(k.value().1),
                    "round {round}"
                );
            }
            let keyed = jobs
                .values()
                .filter(|j| j.idempotency_key.is_some())
                .count();
            assert_eq!(
                keyed as u64,
                tx.open_table(IDEMPOTENCY)?.len()?,
                "round {round}: one job per key"
            );
            Ok(jobs.len())
        })
        .expect("read the store")
}
