//! Writes the summaries the store has queued: what a scheduled script, template or
//! community script does, in a sentence.
//!
//! The generator plugin (`openai`) writes it when one is loaded and answers; otherwise,
//! or while it fails, a summary is written from the linter's parse at once
//! ([`crate::lint::describe`]), so `summary` is never empty for long. A generator that
//! failed for now is asked again after 5 s, 30 s and 5 min; entries live in the store, so
//! a restart picks them up.

use std::sync::Arc;
use std::time::Duration;

use chrono::{TimeDelta, Utc};

use crate::api::GENERATOR_PLUGIN;
use crate::plugins::PluginHost;
use crate::plugins::{Failure, generator::GenerateError};
use crate::store::{Backend, Operations, SummaryTask};

/// How often the queue is read.
const POLL: Duration = Duration::from_secs(1);
/// Waits before the generator is asked again after a failure that may pass.
const RETRIES: [i64; 3] = [5, 30, 300];
/// Longest summary kept.
const MAX_CHARS: usize = 500;

/// Works the queue until `shutdown` resolves.
pub async fn run(
    store: Arc<Backend>,
    plugins: PluginHost,
    shutdown: impl std::future::Future<Output = ()>,
) {
    tokio::pin!(shutdown);
    loop {
        let due = store
            .off_thread(|store| async move { store.due_summaries(Utc::now(), 16).await })
            .await;
        let tasks = match due {
            Ok(tasks) => tasks,
            Err(e) => {
                tracing::error!(error = %e, "reading the summary queue failed");
                Vec::new()
            }
        };
        for task in tasks {
            let outcome = tokio::select! {
                () = &mut shutdown => return,
                outcome = summarize(&plugins, &task) => outcome,
            };
            let written = store
                .off_thread(move |store| async move {
                    store
                        .finish_summary(&task, outcome.0.as_deref(), outcome.1)
                        .await
                })
                .await;
            if let Err(e) = written {
                tracing::error!(error = %e, "storing a summary failed");
            }
        }
        tokio::select! {
            () = &mut shutdown => return,
            () = tokio::time::sleep(POLL) => {}
        }
    }
}

/// The summary to store now (if any) and when to ask the generator again (if ever).
async fn summarize(
    plugins: &PluginHost,
    task: &SummaryTask,
) -> (Option<String>, Option<chrono::DateTime<Utc>>) {
    if task.script.trim().is_empty() {
        return (None, None);
    }
    let fallback = || crate::lint::describe(&task.script);
    let generator = match plugins.generator(GENERATOR_PLUGIN) {
        Ok(g) => g,
        // No generator: the parse's summary is the summary.
        Err(_) => return (Some(fallback()), None),
    };
    match generator.summarize(&task.script).await {
        Ok(text) if !text.trim().is_empty() => {
            (Some(text.trim().chars().take(MAX_CHARS).collect()), None)
        }
        Ok(_) => (task.current.is_none().then(fallback), None),
        Err(e) => {
            let passing = matches!(
                &e,
                Failure::Call(_)
                    | Failure::Plugin {
                        error: GenerateError::Unavailable(_),
                        ..
                    }
            );
            tracing::debug!(id = %task.id, error = %e, "the generator wrote no summary");
            let retry = RETRIES
                .get(task.attempts as usize)
                .filter(|_| passing)
                .map(|s| Utc::now() + TimeDelta::seconds(*s));
            (task.current.is_none().then(fallback), retry)
        }
    }
}
