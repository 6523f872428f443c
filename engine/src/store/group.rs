//! Group commit for job submissions. Each submission is durable when its call returns,
//! which costs a sync; concurrent submissions share one. A caller queues its job, then
//! takes the submission lock: if the holder before it wrote its job already, it returns
//! that outcome; otherwise it writes every job queued meanwhile, its own included, in one
//! transaction, and hands each caller its outcome. Nothing is answered before the commit
//! that holds it has returned, and a failed commit fails every job in it, none written.

use std::sync::{Arc, Mutex, PoisonError};

use chrono::{DateTime, Utc};

use super::Store;
use super::error::StoreError;
use super::records::{Job, JobInput};

type Outcome = Result<(Job, bool), StoreError>;

/// One queued submission and where its outcome goes.
struct Waiting {
    input: JobInput,
    actor: String,
    slot: Arc<Mutex<Option<Outcome>>>,
}

/// Submissions waiting for a commit, and the lock that one committer at a time holds.
#[derive(Default)]
pub(crate) struct Submissions {
    queue: Mutex<Vec<Waiting>>,
    commit: Mutex<()>,
}

impl std::fmt::Debug for Submissions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Submissions").finish_non_exhaustive()
    }
}

fn take(slot: &Mutex<Option<Outcome>>) -> Option<Outcome> {
    slot.lock().unwrap_or_else(PoisonError::into_inner).take()
}

impl Store {
    /// [`Store::create_job`] on behalf of `actor`, committed together with the
    /// submissions of other callers that arrive meanwhile: a job it creates is written
    /// with an audit line (`job.submitted`) in the same transaction; a job found under the
    /// idempotency key writes nothing, audit included. Returns once the commit that holds
    /// the job is on disk.
    pub fn create_job_by(
        &self,
        input: JobInput,
        actor: &str,
        now: DateTime<Utc>,
    ) -> Result<(Job, bool), StoreError> {
        input.validate()?;
        let slot = Arc::new(Mutex::new(None));
        self.submissions
            .queue
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(Waiting {
                input,
                actor: actor.to_owned(),
                slot: slot.clone(),
            });
        let _commit = self
            .submissions
            .commit
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(outcome) = take(&slot) {
            return outcome;
        }
        let batch = std::mem::take(
            &mut *self
                .submissions
                .queue
                .lock()
                .unwrap_or_else(PoisonError::into_inner),
        );
        let inputs = batch
            .iter()
            .map(|w| (w.input.clone(), w.actor.clone()))
            .collect();
        match self.insert_jobs_by(inputs, now) {
            Ok(outcomes) => {
                for (waiting, outcome) in batch.iter().zip(outcomes) {
                    *waiting.slot.lock().unwrap_or_else(PoisonError::into_inner) =
                        Some(Ok(outcome));
                }
            }
            Err(e) => {
                for waiting in &batch {
                    *waiting.slot.lock().unwrap_or_else(PoisonError::into_inner) =
                        Some(Err(e.copy_for_another(self.path())));
                }
            }
        }
        take(&slot).unwrap_or_else(|| Err(StoreError::not_found("job", "new job")))
    }
}
