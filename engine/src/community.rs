//! The community library's processor: takes submissions off the store's durable queue,
//! fetches each through the `github` script-source plugin (pinned to a commit, with its
//! repository's and owner's details) and records the outcome.
//!
//! A failure that may pass (GitHub unavailable or rate-limited, the plugin not loaded
//! yet, a plugin timeout) is retried after 1, 2, then 4 seconds; after the fourth attempt,
//! or at once for a failure that cannot pass (not found, not text, too large), the
//! submission is `failed` with the reason. The queue entry leaves only with the outcome,
//! so work in flight when the engine stops is done after it starts again.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use tokio::sync::Notify;

use crate::plugins::script_source::{Entry, SourceError};
use crate::plugins::{Failure, PluginHost};
use crate::store::{
    Backend, CommunityContent, CommunityRepository, CommunityUser, MAX_SCHEDULE_SCRIPT_CHARS,
    Operations,
};

/// The script-source plugin the library fetches through.
pub const SOURCE_PLUGIN: &str = "github";
/// Attempts before a passing failure is final.
pub const MAX_ATTEMPTS: u32 = 4;
/// How often the queue is looked at when nothing wakes the processor.
const IDLE_POLL: Duration = Duration::from_secs(1);

/// Wakes the processor when a submission is queued.
#[derive(Clone, Default)]
pub struct Wake(Arc<Notify>);

impl Wake {
    pub fn notify(&self) {
        self.0.notify_one();
    }
}

/// Processes the queue until `shutdown` resolves.
pub async fn run(
    store: Arc<Backend>,
    plugins: PluginHost,
    wake: Wake,
    shutdown: impl std::future::Future<Output = ()>,
) {
    tokio::pin!(shutdown);
    loop {
        let next = store
            .off_thread(|store| async move { store.next_community_job(Utc::now()).await })
            .await;
        match next {
            Ok(Some((queued_at, script))) => {
                let outcome = tokio::select! {
                    () = &mut shutdown => return,
                    outcome = fetch(&plugins, &script.github_url, script.readme_url.as_deref(), script.attempts) => outcome,
                };
                let id = script.id.clone();
                let recorded = store
                    .off_thread(move |store| async move {
                        store
                            .finish_community_job(queued_at, &id, outcome, Utc::now())
                            .await
                    })
                    .await;
                match recorded {
                    Ok(s) => tracing::info!(
                        id = %s.id,
                        status = ?s.status,
                        failure = s.failure.as_deref().unwrap_or(""),
                        "community script processed"
                    ),
                    Err(e) => tracing::error!(error = %e, "recording a community script failed"),
                }
                continue;
            }
            Ok(None) => {}
            Err(e) => tracing::error!(error = %e, "reading the community queue failed"),
        }
        tokio::select! {
            () = &mut shutdown => return,
            () = wake.0.notified() => {}
            () = tokio::time::sleep(IDLE_POLL) => {}
        }
    }
}

/// One attempt: the content, or the reason with when to retry (`None`: final).
async fn fetch(
    plugins: &PluginHost,
    url: &str,
    readme_url: Option<&str>,
    attempts_before: u32,
) -> Result<CommunityContent, (String, Option<DateTime<Utc>>)> {
    let attempt = attempts_before + 1;
    let retry = |reason: String| {
        if attempt >= MAX_ATTEMPTS {
            (format!("{reason} (gave up after {attempt} attempts)"), None)
        } else {
            let wait = TimeDelta::seconds(1 << (attempt - 1));
            (reason, Some(Utc::now() + wait))
        }
    };
    let source = match plugins.script_source(SOURCE_PLUGIN) {
        Ok(source) => source,
        Err(e) => return Err(retry(format!("{e}; the library fetches through it"))),
    };
    match source.fetch_entry(url, readme_url).await {
        Ok(entry) => accept(entry).map_err(|reason| (reason, None)),
        Err(Failure::Plugin { error, denied }) => {
            let denied = if denied.is_empty() {
                String::new()
            } else {
                format!(
                    " (refused by the plugin's allow-list: {}; grant them in [plugins.github] allow)",
                    denied.join(", ")
                )
            };
            match error {
                SourceError::Unavailable(m) => Err(retry(format!("{m}{denied}"))),
                SourceError::InvalidUrl(m)
                | SourceError::NotFound(m)
                | SourceError::Denied(m)
                | SourceError::TooLarge(m)
                | SourceError::Other(m) => Err((format!("{m}{denied}"), None)),
            }
        }
        Err(Failure::Call(e)) => Err(retry(e.to_string())),
    }
}

/// A fetched entry as the library keeps it, or why it is not accepted.
fn accept(e: Entry) -> Result<CommunityContent, String> {
    if e.content.trim().is_empty() {
        return Err(format!("{}: the file is empty", e.path));
    }
    let chars = e
        .content
        .chars()
        .take(MAX_SCHEDULE_SCRIPT_CHARS + 1)
        .count();
    if chars > MAX_SCHEDULE_SCRIPT_CHARS {
        return Err(format!(
            "{}: longer than a scheduled script may be ({MAX_SCHEDULE_SCRIPT_CHARS} characters)",
            e.path
        ));
    }
    if e.content
        .chars()
        .any(|c| c.is_control() && !matches!(c, '\n' | '\r' | '\t'))
    {
        return Err(format!(
            "{}: not a text file (it holds control characters)",
            e.path
        ));
    }
    Ok(CommunityContent {
        name: e.name,
        path: e.path,
        content: e.content,
        commit: e.commit,
        reference: e.reference,
        raw_url: e.raw_url,
        web_url: e.web_url,
        repository: CommunityRepository {
            name: e.repository.name,
            url: e.repository.url,
            description: e.repository.description,
            license: e.repository.license,
            stars: e.repository.stars,
            created_at: e.repository.created_at,
        },
        user: CommunityUser {
            login: e.owner.login,
            name: e.owner.name,
            url: e.owner.url,
            avatar: e.owner.avatar_url,
            followers: e.owner.followers,
            created_at: e.owner.created_at,
        },
        readme: e.readme,
        readme_raw_url: e.readme_url,
    })
}
