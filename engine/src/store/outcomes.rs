//! Where each site of a run stands, kept beside the run in the transactions that change
//! its jobs: a schedule's progress is read from one range of small entries, however large
//! the jobs of its latest run (scripts, outputs), instead of decoding each of them.
//!
//! An entry is one byte for the outcome, followed, once the job's diff is stored, by the
//! diff's shape (lines added and removed, big-endian `u32`s, then the digest's text).

use redb::{ReadableTable, Table, WriteTransaction};

use super::Store;
use super::error::StoreError;
use super::records::{Job, JobChanges, JobStatus, Run, SKIPPED};
use super::tables::{JOBS, LEDGER, RUN_SITES, RUNS};
use super::txn::decode;

/// Where a site of a run stands, as `progress` groups it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SiteState {
    /// Not finished: pending, loaded or running.
    Pending,
    Completed,
    /// Failed (not skipped), or deleted.
    Failed,
    /// Failed as `skipped`: offline, and the schedule said to skip offline sites.
    Skipped,
}

/// One site of a run: how it stands, and what its script changed when that is known.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SiteOutcome {
    pub site_id: String,
    pub state: SiteState,
    pub changes: Option<JobChanges>,
}

/// A schedule's latest run, if it launched, with its sites in site order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LatestRun {
    pub run: Option<Run>,
    pub sites: Vec<SiteOutcome>,
}

impl SiteState {
    pub(crate) fn of(job: &Job) -> SiteState {
        SiteState::of_status(job.status, job.error.as_ref().map(|e| e.code.as_str()))
    }

    /// Where a site stands whose job has `status`, and failed with `error_code` if it did.
    pub(crate) fn of_status(status: JobStatus, error_code: Option<&str>) -> SiteState {
        match status {
            JobStatus::Completed => SiteState::Completed,
            JobStatus::Failed if error_code == Some(SKIPPED) => SiteState::Skipped,
            JobStatus::Failed | JobStatus::Deleted => SiteState::Failed,
            JobStatus::Pending | JobStatus::Loaded | JobStatus::Running => SiteState::Pending,
        }
    }

    fn code(self) -> u8 {
        match self {
            SiteState::Pending => 0,
            SiteState::Completed => 1,
            SiteState::Failed => 2,
            SiteState::Skipped => 3,
        }
    }

    fn from_code(code: u8) -> Option<SiteState> {
        Some(match code {
            0 => SiteState::Pending,
            1 => SiteState::Completed,
            2 => SiteState::Failed,
            3 => SiteState::Skipped,
            _ => return None,
        })
    }
}

fn encode(job: &Job) -> Vec<u8> {
    let mut out = vec![SiteState::of(job).code()];
    if let Some(c) = &job.changes {
        out.extend_from_slice(&c.added.to_be_bytes());
        out.extend_from_slice(&c.removed.to_be_bytes());
        out.extend_from_slice(c.digest.as_bytes());
    }
    out
}

fn decode_entry(site_id: &str, bytes: &[u8]) -> Result<SiteOutcome, StoreError> {
    let corrupt = || StoreError::Corrupt {
        kind: "run site",
        id: site_id.to_owned(),
        source: serde::de::Error::custom("not a site outcome"),
    };
    let (&code, rest) = bytes.split_first().ok_or_else(corrupt)?;
    let state = SiteState::from_code(code).ok_or_else(corrupt)?;
    let changes = match rest.len() {
        0 => None,
        n if n >= 8 => {
            let word = |at: usize| {
                u32::from_be_bytes([rest[at], rest[at + 1], rest[at + 2], rest[at + 3]])
            };
            Some(JobChanges {
                added: word(0),
                removed: word(4),
                digest: String::from_utf8(rest[8..].to_vec()).map_err(|_| corrupt())?,
            })
        }
        _ => return Err(corrupt()),
    };
    Ok(SiteOutcome {
        site_id: site_id.to_owned(),
        state,
        changes,
    })
}

/// Writes the entry of a job of a schedule's run (others have none), as the job is now.
pub(crate) fn record(
    table: &mut Table<'_, (&'static str, u64, &'static str), &'static [u8]>,
    job: &Job,
) -> Result<(), StoreError> {
    if let Some(origin) = &job.origin {
        table.insert(
            (
                origin.schedule_id.as_str(),
                origin.occurrence,
                job.site_id.as_str(),
            ),
            encode(job).as_slice(),
        )?;
    }
    Ok(())
}

/// Schema 4 -> 5: an entry for every job in the ledger, from the job as it is.
pub(crate) fn backfill(tx: &WriteTransaction) -> Result<u64, StoreError> {
    let ledger = tx.open_table(LEDGER)?;
    let jobs = tx.open_table(JOBS)?;
    let mut table = tx.open_table(RUN_SITES)?;
    let mut n = 0;
    for entry in ledger.iter()? {
        let (_, seq) = entry?;
        let seq = seq.value();
        if let Some(bytes) = jobs.get(seq)? {
            let job: Job = decode("job", &seq.to_string(), bytes.value())?;
            record(&mut table, &job)?;
            n += 1;
        }
    }
    Ok(n)
}

impl Store {
    /// The latest run of each schedule named, with where each of its sites stands, all
    /// from one snapshot; a schedule that never launched gets an empty [`LatestRun`].
    pub fn latest_runs(&self, schedule_ids: &[&str]) -> Result<Vec<LatestRun>, StoreError> {
        self.read(|tx| {
            let runs = tx.open_table(RUNS)?;
            let sites = tx.open_table(RUN_SITES)?;
            let mut out = Vec::with_capacity(schedule_ids.len());
            for &id in schedule_ids {
                let Some(run) = super::schedules::latest_run_in(&runs, id)? else {
                    out.push(LatestRun::default());
                    continue;
                };
                let mut outcomes = Vec::new();
                for entry in sites
                    .range((id, run.occurrence, "")..(id, run.occurrence.saturating_add(1), ""))?
                {
                    let (key, value) = entry?;
                    outcomes.push(decode_entry(key.value().2, value.value())?);
                }
                out.push(LatestRun {
                    run: Some(run),
                    sites: outcomes,
                });
            }
            Ok(out)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::records::{JobError, JobTransition};
    use crate::store::schedules::tests::{authorized, plan};
    use crate::store::test_support::{open, t};

    /// Where each site stands, recounted from the jobs of the latest run.
    fn recount(store: &Store, schedule_id: &str) -> LatestRun {
        let run = store.last_run(schedule_id).expect("run");
        let sites = match &run {
            Some(run) => store
                .run_jobs(schedule_id, run.occurrence)
                .expect("jobs")
                .iter()
                .map(|job| SiteOutcome {
                    site_id: job.site_id.clone(),
                    state: SiteState::of(job),
                    changes: job.changes.clone(),
                })
                .collect(),
            None => Vec::new(),
        };
        LatestRun { run, sites }
    }

    fn kept(store: &Store, schedule_id: &str) -> LatestRun {
        store
            .latest_runs(&[schedule_id])
            .expect("latest")
            .pop()
            .expect("one")
    }

    fn fail(code: &str) -> JobTransition {
        JobTransition::Fail {
            error: JobError {
                code: code.into(),
                message: code.into(),
            },
            output: None,
        }
    }

    #[test]
    fn the_sites_kept_beside_a_run_always_equal_a_recount_of_its_jobs() {
        let (_dir, store) = open();
        let s = authorized(&store, "s1");
        assert_eq!(kept(&store, &s.id), LatestRun::default());
        // A batch with more to come, so the schedule stays launched for a second run.
        let mut first = plan(&s, 0, &["site-a", "site-b", "site-c"]);
        first.more_batches = true;
        let launch = store.launch(first, t(3600)).expect("launch");
        assert_eq!(kept(&store, &s.id), recount(&store, &s.id));
        assert!(
            kept(&store, &s.id)
                .sites
                .iter()
                .all(|site| site.state == SiteState::Pending)
        );
        let id = |site: &str| {
            launch
                .created
                .iter()
                .find(|j| j.site_id == site)
                .map(|j| j.id.clone())
                .expect("job")
        };
        let steps: Vec<(&str, Vec<JobTransition>)> = vec![
            ("site-a", vec![JobTransition::Load]),
            (
                "site-a",
                vec![JobTransition::Start, JobTransition::MarkSent],
            ),
            (
                "site-a",
                vec![JobTransition::Complete {
                    output: Some("ok".into()),
                }],
            ),
            (
                "site-b",
                vec![JobTransition::Start, fail(crate::store::SKIPPED)],
            ),
            ("site-c", vec![JobTransition::Start, fail("timeout")]),
            // A finished job deleted afterwards counts as failed.
            ("site-a", vec![JobTransition::Delete]),
        ];
        for (site, transitions) in steps {
            let out = store
                .transition_each(vec![(id(site), transitions)], t(3601))
                .expect("commit");
            assert!(out.iter().all(Result::is_ok), "{out:?}");
            assert_eq!(kept(&store, &s.id), recount(&store, &s.id), "after {site}");
        }
        let changes = JobChanges {
            added: 2,
            removed: 1,
            digest: "d1".into(),
        };
        store
            .put_diff(&id("site-c"), "-a\n+b\n+c\n", changes.clone())
            .expect("diff");
        let now = kept(&store, &s.id);
        assert_eq!(now, recount(&store, &s.id));
        let states: Vec<_> = now
            .sites
            .iter()
            .map(|x| (x.site_id.as_str(), x.state))
            .collect();
        assert_eq!(
            states,
            [
                ("site-a", SiteState::Failed),
                ("site-b", SiteState::Skipped),
                ("site-c", SiteState::Failed)
            ]
        );
        assert_eq!(now.sites[2].changes, Some(changes));
        // A later occurrence is the latest run; the earlier one's entries stay its own.
        store
            .launch(plan(&s, 1, &["site-b"]), t(7200))
            .expect("second launch");
        let latest = kept(&store, &s.id);
        assert_eq!(latest, recount(&store, &s.id));
        assert_eq!(latest.sites.len(), 1);
    }

    #[test]
    fn a_schema_4_database_gets_its_run_sites_from_its_jobs() {
        let (dir, store) = open();
        let s = authorized(&store, "s1");
        let launch = store
            .launch(plan(&s, 0, &["site-a", "site-b"]), t(3600))
            .expect("launch");
        store
            .transition_each(
                vec![(
                    launch.created[0].id.clone(),
                    vec![
                        JobTransition::Start,
                        JobTransition::Complete { output: None },
                    ],
                )],
                t(3601),
            )
            .expect("complete");
        let expected = recount(&store, &s.id);
        // Schema 4's layout: no run sites.
        store
            .write(|tx| {
                tx.delete_table(RUN_SITES)?;
                tx.open_table(crate::store::tables::META)?
                    .insert(crate::store::tables::META_SCHEMA_VERSION, 4)?;
                Ok(())
            })
            .expect("schema 4 layout");
        drop(store);
        let store = Store::open(dir.path()).expect("migrated");
        assert_eq!(kept(&store, &s.id), expected);
        assert_eq!(expected.sites[0].state, SiteState::Completed);
    }
}
