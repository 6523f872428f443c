//! Group commit for job writes. Each job write is durable when its call returns, which
//! costs a sync; concurrent writers share one. Submissions (the API's new jobs) and the
//! runner's transitions (claims, `MarkSent`, ends) go through one queue: a writer queues
//! its write and waits for its answer; the first writer to find nobody committing becomes
//! the committer, which takes everything queued, writes it in one transaction, answers
//! each writer once the commit is on disk, and goes on while more is queued.
//!
//! Nothing is answered before the commit that holds it has returned, and a failed commit
//! fails every write in it, none written. Async writers wait without holding a thread:
//! only the committer runs on a blocking thread.

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use chrono::{DateTime, Utc};
use tokio::sync::oneshot;

use super::Store;
use super::error::StoreError;
use super::jobs::{JobTables, change_each_in, create_in, set_job_seq};
use super::records::{Job, JobInput, JobTransition};
use super::tables::META_JOB_SEQ;
use super::txn::take_seq;

/// What a submission is answered: the job, and whether this call created it.
type Created = Result<(Job, bool), StoreError>;
/// What a batch of transitions is answered: each job's own outcome, inside the commit's.
type Changed = Result<Vec<Result<Job, StoreError>>, StoreError>;
/// Transitions of several jobs, each job's in order.
pub type Changes = Vec<(String, Vec<JobTransition>)>;

/// One queued write and where its answer goes.
enum Write {
    Create {
        input: Box<JobInput>,
        actor: String,
        now: DateTime<Utc>,
        reply: oneshot::Sender<Created>,
    },
    Change {
        items: Changes,
        now: DateTime<Utc>,
        reply: oneshot::Sender<Changed>,
    },
}

/// A write's payload, once its reply is set aside.
enum Work {
    Create(Box<JobInput>, String, DateTime<Utc>),
    Change(Changes, DateTime<Utc>),
}

/// What a write came to, before the commit that holds it has returned.
enum Done {
    Created(Box<(Job, bool)>),
    Changed(Vec<Result<Job, StoreError>>),
}

/// Replies waiting for the commit.
enum Reply {
    Created(oneshot::Sender<Created>),
    Changed(oneshot::Sender<Changed>),
}

#[derive(Default)]
struct Queue {
    writes: Vec<Write>,
    /// A committer is at work: it will take what is queued before it stops.
    committing: bool,
}

/// Job writes waiting for a commit.
#[derive(Default)]
pub(crate) struct Pipeline {
    queue: Mutex<Queue>,
}

impl std::fmt::Debug for Pipeline {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pipeline").finish_non_exhaustive()
    }
}

impl Pipeline {
    fn lock(&self) -> MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Queues a write; true when the caller must commit, nobody else being at it.
    fn push(&self, write: Write) -> bool {
        let mut queue = self.lock();
        queue.writes.push(write);
        !std::mem::replace(&mut queue.committing, true)
    }
}

/// Lets the next writer commit if a committer ends by a panic, so the queue never stalls.
struct Committing<'a>(&'a Pipeline);

impl Drop for Committing<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.0.lock().committing = false;
        }
    }
}

/// A checked submission ready to queue, and where its answer will come.
fn submission(
    input: JobInput,
    actor: &str,
    now: DateTime<Utc>,
) -> Result<(Write, oneshot::Receiver<Created>), StoreError> {
    input.validate()?;
    let (reply, answer) = oneshot::channel();
    let write = Write::Create {
        input: Box::new(input),
        actor: actor.to_owned(),
        now,
        reply,
    };
    Ok((write, answer))
}

fn gone(store: &Store) -> StoreError {
    StoreError::Io {
        path: store.path().display().to_string(),
        source: std::io::Error::other("the commit holding this write ended without an answer"),
    }
}

impl Store {
    /// [`Store::create_job`] on behalf of `actor`, committed together with the other job
    /// writes queued meanwhile: a job it creates is written with an audit line
    /// (`job.submitted`) in the same transaction; a job found under the idempotency key
    /// writes nothing, audit included. Returns once the commit that holds the job is on
    /// disk. For callers off the async workers; async callers use [`Store::submit_job`].
    pub fn create_job_by(
        &self,
        input: JobInput,
        actor: &str,
        now: DateTime<Utc>,
    ) -> Result<(Job, bool), StoreError> {
        let (write, answer) = submission(input, actor, now)?;
        if self.pipeline.push(write) {
            self.commit_queued();
        }
        answer.blocking_recv().unwrap_or_else(|_| Err(gone(self)))
    }

    /// [`Store::create_job_by`] for async callers: waits for the commit without holding a
    /// thread, and commits on a blocking thread when nobody else is committing.
    pub async fn submit_job(
        self: &Arc<Self>,
        input: JobInput,
        actor: &str,
        now: DateTime<Utc>,
    ) -> Result<(Job, bool), StoreError> {
        let (write, answer) = submission(input, actor, now)?;
        self.queue_write(write);
        answer.await.unwrap_or_else(|_| Err(gone(self)))
    }

    /// [`Store::transition_each`] committed together with the other job writes queued
    /// meanwhile; returns once that commit is on disk.
    pub async fn change_jobs(self: &Arc<Self>, items: Changes, now: DateTime<Utc>) -> Changed {
        let (reply, answer) = oneshot::channel();
        self.queue_write(Write::Change { items, now, reply });
        answer.await.unwrap_or_else(|_| Err(gone(self)))
    }

    fn queue_write(self: &Arc<Self>, write: Write) {
        if self.pipeline.push(write) {
            let store = self.clone();
            tokio::task::spawn_blocking(move || store.commit_queued());
        }
    }

    /// Commits what is queued, batch after batch, until the queue is empty.
    fn commit_queued(&self) {
        let _committing = Committing(&self.pipeline);
        loop {
            let writes = {
                let mut queue = self.pipeline.lock();
                if queue.writes.is_empty() {
                    queue.committing = false;
                    return;
                }
                std::mem::take(&mut queue.writes)
            };
            self.commit_batch(writes);
        }
    }

    /// Writes a batch in one transaction and answers each writer after the commit.
    fn commit_batch(&self, writes: Vec<Write>) {
        let (work, replies): (Vec<Work>, Vec<Reply>) = writes
            .into_iter()
            .map(|write| match write {
                Write::Create {
                    input,
                    actor,
                    now,
                    reply,
                } => (Work::Create(input, actor, now), Reply::Created(reply)),
                Write::Change { items, now, reply } => {
                    (Work::Change(items, now), Reply::Changed(reply))
                }
            })
            .unzip();
        // Only a batch that may create jobs takes places in the job sequence.
        let creates = work.iter().any(|w| matches!(w, Work::Create(..)));
        let outcome = self.write(|tx| {
            let mut seq = if creates {
                take_seq(tx, META_JOB_SEQ, 0)?
            } else {
                0
            };
            let mut tables = JobTables::open(tx)?;
            let mut done = Vec::with_capacity(work.len());
            for item in work {
                done.push(match item {
                    Work::Create(input, actor, now) => Done::Created(Box::new(create_in(
                        tx,
                        &mut tables,
                        &mut seq,
                        *input,
                        Some(actor),
                        now,
                    )?)),
                    Work::Change(items, now) => {
                        Done::Changed(change_each_in(tx, &mut tables, items, now)?)
                    }
                });
            }
            tables.close()?;
            if creates {
                set_job_seq(tx, seq - 1)?;
            }
            Ok(done)
        });
        match outcome {
            Ok(done) => {
                for (reply, done) in replies.into_iter().zip(done) {
                    // A writer that stopped waiting has its write committed all the same.
                    let _ = match (reply, done) {
                        (Reply::Created(reply), Done::Created(job)) => reply.send(Ok(*job)).is_ok(),
                        (Reply::Changed(reply), Done::Changed(jobs)) => {
                            reply.send(Ok(jobs)).is_ok()
                        }
                        // Answers follow the writes' order; a reply dropped here would
                        // reach its writer as an error, never as another's answer.
                        _ => false,
                    };
                }
            }
            Err(e) => {
                for reply in replies {
                    let e = e.copy_for_another(self.path());
                    let _ = match reply {
                        Reply::Created(reply) => reply.send(Err(e)).is_ok(),
                        Reply::Changed(reply) => reply.send(Err(e)).is_ok(),
                    };
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::jobs::tests::input;
    use crate::store::records::JobStatus;
    use crate::store::test_support::{open, t};

    fn queued(store: &Store) -> usize {
        store.pipeline.lock().writes.len()
    }

    /// Writes queued while a commit is at work are written together by the next one,
    /// submissions and transitions alike, and each writer gets its own answer.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn writes_queued_during_a_commit_share_the_next_one() {
        let (_dir, store) = open();
        let store = Arc::new(store);
        let (existing, _) = store
            .create_job(input("s0", None), t(0))
            .expect("existing job");
        // A commit at work: what arrives now waits for the committer.
        store.pipeline.lock().committing = true;
        let mut writers = tokio::task::JoinSet::new();
        for i in 0..8 {
            let store = store.clone();
            let key = if i < 2 {
                "same".to_owned()
            } else {
                format!("k{i}")
            };
            writers.spawn(async move {
                let submitted = store
                    .submit_job(input(&format!("s{i}"), Some(&key)), "alice", t(1))
                    .await
                    .expect("submitted");
                (submitted.0.id, submitted.1)
            });
        }
        let change = {
            let store = store.clone();
            let id = existing.id.clone();
            tokio::spawn(async move {
                store
                    .change_jobs(
                        vec![
                            (id.clone(), vec![JobTransition::Load, JobTransition::Start]),
                            ("missing".into(), vec![JobTransition::Load]),
                        ],
                        t(1),
                    )
                    .await
            })
        };
        while queued(&store) < 9 {
            tokio::task::yield_now().await;
        }
        let before = store.generation();
        let committer = store.clone();
        tokio::task::spawn_blocking(move || committer.commit_queued())
            .await
            .expect("committer");
        assert_eq!(store.generation(), before + 1, "one commit for all nine");

        let mut created = 0;
        let mut ids = std::collections::HashSet::new();
        while let Some(answer) = writers.join_next().await {
            let (id, new) = answer.expect("writer");
            created += usize::from(new);
            ids.insert(id);
        }
        // The two submissions under one key: the first creates, the second finds it.
        assert_eq!(created, 7);
        assert_eq!(ids.len(), 7);
        let changed = change.await.expect("task").expect("commit");
        assert_eq!(
            changed[0].as_ref().expect("legal").status,
            JobStatus::Running
        );
        assert!(matches!(changed[1], Err(StoreError::NotFound { .. })));
        assert!(!store.pipeline.lock().committing);
        assert_eq!(queued(&store), 0);
    }

    /// A sync caller with nobody committing commits its own write, then the queue is free.
    #[test]
    fn a_lone_submission_commits_itself() {
        let (_dir, store) = open();
        let before = store.generation();
        let (job, created) = store
            .create_job_by(input("s1", Some("k")), "alice", t(1))
            .expect("created");
        assert!(created);
        assert_eq!(store.generation(), before + 1);
        assert_eq!(store.get_job(&job.id).expect("stored").id, job.id);
        let (again, created) = store
            .create_job_by(input("s1", Some("k")), "alice", t(2))
            .expect("found");
        assert!(!created);
        assert_eq!(again.id, job.id);
        assert!(!store.pipeline.lock().committing);
    }
}
