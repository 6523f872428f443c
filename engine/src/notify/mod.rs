//! Notifications: outbox events delivered through notifier plugins.
//!
//! The store writes an event in the same transaction as the change it announces (see
//! `store::journal`). The [`Deliverer`] reads the due ones, works out where each goes
//! (`route`: the organization's channels, a job's `notify_url`, the users it concerns),
//! renders what people read (`render`), and calls the channel's notifier plugin
//! (`webhook`, `email`). A delivery that fails for now is retried with exponential
//! backoff and jitter; after `max_attempts`, or at once when the far end refuses for
//! good, the event becomes a dead letter, listed and retryable through the API.
//!
//! Guarantees: at least once (an event is marked delivered only after its deliveries
//! succeeded, so a crash in between delivers it again; receivers drop duplicates by the
//! event id, which every delivery carries); and per job (and per schedule), events in
//! order: a later event waits while an earlier one of the same job is being retried.
//!
//! `settings` is the `[notify]` configuration and the rules for receivers: what a job's
//! `notify_url` may reach is decided there, not by the webhook plugin's allow-list.

mod render;
mod route;
mod settings;

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chacha20poly1305::aead::{OsRng, rand_core::RngCore};
use chrono::{DateTime, TimeDelta, Utc};
use tokio::task::JoinSet;

use crate::plugins::{Describe, Failure, PluginHost};
use crate::server::Shutdown;
use crate::store::{Backend, EventAttempt, Operations, OutboxEvent, StoreError};

pub(crate) use render::escape as escape_html;
pub use route::{JOB_PAYLOAD_FIELDS, NOTIFIED};
pub use settings::{NotifyConfig, check_notify_url, check_url};

/// The file in the data dir holding the key that signs deliveries to notify URLs (on a
/// shared store, the name of the one the engines share).
pub const SIGNING_KEY_FILE: &str = "notify.key";

/// Length of the signing key, in bytes.
pub const SIGNING_KEY_LEN: usize = 32;

/// Events read per round.
const BATCH: usize = 256;
/// Events of different jobs delivered at once.
const CONCURRENCY: usize = 32;
/// How often the outbox is looked at when it was empty.
const IDLE_POLL: Duration = Duration::from_millis(200);
/// Delivered events are kept this long, then pruned.
const RETENTION_DAYS: i64 = 7;

/// What the API needs of the notification settings: the plain-http rule and the
/// per-organization signing secret. Cheap to clone.
#[derive(Clone)]
pub struct Notifications {
    inner: Arc<Inner>,
}

struct Inner {
    config: NotifyConfig,
    signing_key: ring::hmac::Key,
    public_url: String,
}

impl std::fmt::Debug for Notifications {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Notifications")
            .field("config", &self.inner.config)
            .finish_non_exhaustive()
    }
}

impl Notifications {
    /// Settings over the signing key `key`: the data dir's `notify.key`, or on a shared
    /// store the one every engine shares.
    pub fn with_key(config: NotifyConfig, key: &[u8], public_url: String) -> Notifications {
        let public_url = config.public_url.clone().unwrap_or(public_url);
        Notifications {
            inner: Arc::new(Inner {
                config,
                signing_key: ring::hmac::Key::new(ring::hmac::HMAC_SHA256, key),
                public_url,
            }),
        }
    }

    pub fn config(&self) -> &NotifyConfig {
        &self.inner.config
    }

    /// Whether `url` may receive notifications (https, or allowed plain http).
    pub fn check_url(&self, url: &str) -> Result<(), String> {
        self.inner.config.check_url(url)
    }

    /// Whether a job's `notify_url` can ever be delivered (see [`check_notify_url`]).
    pub fn check_notify_url(&self, url: &str) -> Result<(), String> {
        check_notify_url(url, &self.inner.config.allow_http)
    }

    /// The secret of `generation` that signs deliveries to the notify URLs of
    /// `organization`'s jobs: derived from the engine's key, so it is never stored.
    pub fn signing_secret(&self, organization: &str, generation: u32) -> String {
        let label = signing_label(organization, generation);
        let tag = ring::hmac::sign(&self.inner.signing_key, &label);
        hex::encode(tag.as_ref())
    }
}

/// What the engine's key signs to derive an organization's secret of a generation: a
/// fixed prefix, the organization id's length (8 bytes, big-endian), the id, then the
/// generation (4 bytes, big-endian). The length prefix makes the label unambiguous, so
/// no organization id, however it is spelled, yields another organization's label.
/// (Labels were once `notify-url:<org>` and `notify-url:<org>:<n>`, where org `a:1`
/// at generation 0 and org `a` at generation 1 shared a label, and so a secret.)
fn signing_label(organization: &str, generation: u32) -> Vec<u8> {
    const PREFIX: &[u8] = b"yardmaster notify-url secret v2\0";
    let org = organization.as_bytes();
    let mut label = Vec::with_capacity(PREFIX.len() + 8 + org.len() + 4);
    label.extend_from_slice(PREFIX);
    label.extend_from_slice(&(org.len() as u64).to_be_bytes());
    label.extend_from_slice(org);
    label.extend_from_slice(&generation.to_be_bytes());
    label
}

/// What became of one attempt at an event.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Outcome {
    Delivered,
    Retry { error: String, at: DateTime<Utc> },
    Dead { error: String },
}

/// Delivers outbox events until shutdown.
pub struct Deliverer {
    store: Arc<Backend>,
    plugins: PluginHost,
    notifications: Notifications,
    /// Per order key, the earliest event being retried: later events of the key wait
    /// for it.
    blocked: Mutex<HashMap<String, (u64, DateTime<Utc>)>>,
}

impl Deliverer {
    pub fn new(
        store: Arc<Backend>,
        plugins: PluginHost,
        notifications: Notifications,
    ) -> Deliverer {
        Deliverer {
            store,
            plugins,
            notifications,
            blocked: Mutex::new(HashMap::new()),
        }
    }

    /// Runs until `shutdown`. A delivery cut short by it is made again after a restart.
    pub async fn serve(self: Arc<Self>, shutdown: Shutdown) {
        if let Err(e) = self.recover_order().await {
            tracing::error!(error = %e, "cannot read the pending notifications");
        }
        let stop = shutdown.wait();
        tokio::pin!(stop);
        let mut last_prune = Utc::now() - TimeDelta::days(1);
        loop {
            let round = self.clone().round();
            let handled = tokio::select! {
                _ = &mut stop => return,
                handled = round => handled,
            };
            let pause = match handled {
                Ok(n) if n >= BATCH => Duration::ZERO,
                Ok(_) => IDLE_POLL,
                Err(e) => {
                    tracing::error!(error = %e, "cannot read the outbox");
                    Duration::from_secs(1)
                }
            };
            if Utc::now() - last_prune > TimeDelta::hours(1) {
                last_prune = Utc::now();
                let before = Utc::now() - TimeDelta::days(RETENTION_DAYS);
                match self.store.prune_events(before, 10_000).await {
                    Ok(0) => {}
                    Ok(n) => tracing::debug!(pruned = n, "pruned delivered notifications"),
                    Err(e) => tracing::warn!(error = %e, "cannot prune delivered notifications"),
                }
            }
            if !pause.is_zero() {
                tokio::select! {
                    _ = &mut stop => return,
                    _ = tokio::time::sleep(pause) => {}
                    // Queued through another engine of a shared store.
                    () = self.store.outbox_changed() => {}
                }
            }
        }
    }

    /// After a restart: the earliest pending event of each key holds back the later ones.
    /// A shared store keeps that order itself: it hands out no event of a job while an
    /// earlier one of the job is pending.
    async fn recover_order(&self) -> Result<(), StoreError> {
        let Some(store) = self.store.as_redb() else {
            return Ok(());
        };
        let mut pending = store.pending_events(usize::MAX)?;
        pending.sort_by_key(|e| e.id);
        let mut blocked = self.blocked.lock().unwrap_or_else(|p| p.into_inner());
        for event in pending {
            blocked
                .entry(route::order_key(&event))
                .or_insert((event.id, event.next_attempt_at));
        }
        Ok(())
    }

    /// One round: the due events, grouped by order key; groups run at once, each in order.
    /// Returns how many events were read.
    async fn round(self: Arc<Self>) -> Result<usize, StoreError> {
        let due = self.store.due_events(Utc::now(), BATCH).await?;
        let read = due.len();
        let mut groups: Vec<(String, Vec<OutboxEvent>)> = Vec::new();
        let mut index: HashMap<String, usize> = HashMap::new();
        for event in due {
            let key = route::order_key(&event);
            match index.get(&key) {
                Some(&i) => groups[i].1.push(event),
                None => {
                    index.insert(key.clone(), groups.len());
                    groups.push((key, vec![event]));
                }
            }
        }
        // What this round holds and has not settled yet; on a shared store its claims are
        // kept alive while groups wait their turn or a delivery takes long.
        let held: Arc<Mutex<BTreeSet<u64>>> = Arc::new(Mutex::new(
            groups
                .iter()
                .flat_map(|(_, e)| e.iter().map(|e| e.id))
                .collect(),
        ));
        let work = async {
            let mut tasks = JoinSet::new();
            for (key, mut events) in groups {
                events.sort_by_key(|e| e.id);
                while tasks.len() >= CONCURRENCY {
                    let _ = tasks.join_next().await;
                }
                let (this, held) = (self.clone(), held.clone());
                tasks.spawn(async move { this.run_group(&key, events, &held).await });
            }
            while tasks.join_next().await.is_some() {}
        };
        tokio::select! {
            () = work => {}
            () = self.keep_claimed(&held) => {}
        }
        Ok(read)
    }

    /// Renews the claims on the events in `held` every third of a claim's life, while
    /// the round works on them; returns never.
    async fn keep_claimed(&self, held: &Mutex<BTreeSet<u64>>) {
        if self.store.as_postgres().is_none() {
            return std::future::pending().await;
        }
        loop {
            tokio::time::sleep(crate::store::backend::CLAIM_TTL / 3).await;
            let ids: Vec<u64> = held
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .iter()
                .copied()
                .collect();
            if let Err(e) = self.store.renew_event_claims(&ids).await {
                tracing::warn!(error = %e, "cannot renew this engine's claims on notifications");
            }
        }
    }

    async fn run_group(&self, key: &str, events: Vec<OutboxEvent>, held: &Mutex<BTreeSet<u64>>) {
        let settled = |id: u64| {
            held.lock().unwrap_or_else(|p| p.into_inner()).remove(&id);
        };
        let mut hold: Option<DateTime<Utc>> = None;
        for event in events {
            if hold.is_none() {
                hold = self.held_back(key, event.id).await;
            }
            if let Some(at) = hold {
                if let Err(e) = self.store.defer_event(event.id, at).await {
                    tracing::warn!(event = event.id, error = %e, "cannot defer a notification");
                }
                settled(event.id);
                continue;
            }
            let (outcome, organization, done) = self.attempt(&event).await;
            let (error, retry_at) = match &outcome {
                Outcome::Delivered => (None, None),
                Outcome::Retry { error, at } => (Some(error.clone()), Some(*at)),
                Outcome::Dead { error } => (Some(error.clone()), None),
            };
            // A durable commit: off the async workers, which the runner's jobs share (on a
            // small machine one blocked worker is half the engine).
            let (id, org) = (event.id, organization.clone());
            let recorded = self
                .store
                .off_thread(move |store| async move {
                    store
                        .record_event_attempt(
                            id,
                            &EventAttempt {
                                error: error.as_deref(),
                                retry_at,
                                organization: org.as_deref(),
                                delivered_to: &done,
                                now: Utc::now(),
                            },
                        )
                        .await
                })
                .await;
            settled(event.id);
            if let Err(e) = recorded {
                tracing::error!(event = event.id, error = %e, "cannot record a notification attempt");
                return;
            }
            let mut blocked = self.blocked.lock().unwrap_or_else(|p| p.into_inner());
            match &outcome {
                Outcome::Retry { at, error } => {
                    tracing::info!(event = event.id, kind = %event.kind, attempt = event.attempts + 1, retry_at = %at, %error, "notification will be retried");
                    blocked.insert(key.to_owned(), (event.id, *at));
                    hold = Some(*at);
                }
                Outcome::Dead { error } => {
                    tracing::warn!(event = event.id, kind = %event.kind, %error, "notification is a dead letter");
                    if blocked.get(key).is_some_and(|(id, _)| *id == event.id) {
                        blocked.remove(key);
                    }
                }
                Outcome::Delivered => {
                    tracing::debug!(event = event.id, kind = %event.kind, "notification delivered");
                    if blocked.get(key).is_some_and(|(id, _)| *id == event.id) {
                        blocked.remove(key);
                    }
                }
            }
        }
    }

    /// When an earlier event of `key` is still waiting, the time `id` must wait for.
    async fn held_back(&self, key: &str, id: u64) -> Option<DateTime<Utc>> {
        let (first, at) = {
            let blocked = self.blocked.lock().unwrap_or_else(|p| p.into_inner());
            *blocked.get(key)?
        };
        if first >= id {
            return None;
        }
        match self.store.get_event(first).await {
            Ok(e) if e.state == crate::store::OutboxState::Pending => {
                let soon = Utc::now() + TimeDelta::milliseconds(500);
                Some(at.max(e.next_attempt_at).max(soon))
            }
            // Delivered, dead or pruned by someone else: it holds nothing back any more.
            _ => {
                let mut blocked = self.blocked.lock().unwrap_or_else(|p| p.into_inner());
                if blocked.get(key).is_some_and(|(held, _)| *held == first) {
                    blocked.remove(key);
                }
                None
            }
        }
    }

    /// Makes every delivery of `event` not already done. Returns the outcome, the
    /// organization it concerns and the deliveries done now.
    async fn attempt(&self, event: &OutboxEvent) -> (Outcome, Option<String>, Vec<String>) {
        let notifications = self.notifications.clone();
        let secret = move |org: &str, generation| notifications.signing_secret(org, generation);
        let routing = route::Routing {
            store: &self.store,
            public_url: &self.notifications.inner.public_url,
            allow_http: &self.notifications.inner.config.allow_http,
            signing_secret: &secret,
        };
        let plan = match route::plan(&routing, event).await {
            Ok(plan) => plan,
            Err(e) => {
                return (
                    self.retry_or_dead(event, format!("cannot route the event: {e}"), true),
                    event.organization.clone(),
                    Vec::new(),
                );
            }
        };
        let mut done = Vec::new();
        let mut transient = Vec::new();
        let mut permanent = Vec::new();
        for delivery in plan
            .deliveries
            .iter()
            .filter(|d| !event.delivered_to.contains(&d.key))
        {
            let result = match self.plugins.notifier(&delivery.plugin) {
                Ok(plugin) => {
                    plugin
                        .deliver_within(&delivery.channel, &delivery.event, delivery.reach.clone())
                        .await
                }
                Err(e) => Err(Failure::Call(e)),
            };
            let what = format!("{} ({})", delivery.channel.name, delivery.plugin);
            match result {
                Ok(receipt) => {
                    tracing::debug!(event = event.id, to = %what, detail = %receipt.detail, "delivered");
                    done.push(delivery.key.clone());
                }
                Err(Failure::Plugin { error, denied }) => {
                    let mut message = format!("{what}: {}", error.describe());
                    if !denied.is_empty() {
                        message.push_str(&format!(
                            " (refused by the allow-list: {})",
                            denied.join(", ")
                        ));
                    }
                    match error {
                        crate::plugins::notifier::NotifyError::Unavailable(_) => {
                            transient.push(message)
                        }
                        _ => permanent.push(message),
                    }
                }
                // Not loaded (yet), trapped, timed out: may clear up.
                Err(Failure::Call(e)) => transient.push(format!("{what}: {e}")),
            }
        }
        let outcome = if transient.is_empty() && permanent.is_empty() {
            Outcome::Delivered
        } else {
            let mut errors = permanent.clone();
            errors.extend(transient.iter().cloned());
            self.retry_or_dead(event, errors.join("; "), !transient.is_empty())
        };
        (outcome, plan.organization, done)
    }

    fn retry_or_dead(&self, event: &OutboxEvent, error: String, retryable: bool) -> Outcome {
        let attempts = event.attempts.saturating_add(1);
        if retryable && attempts < self.notifications.inner.config.max_attempts {
            let at = Utc::now() + backoff(&self.notifications.inner.config, attempts);
            Outcome::Retry { error, at }
        } else {
            Outcome::Dead { error }
        }
    }
}

/// The wait after `attempts` failed attempts: the base doubled per attempt, capped, then
/// drawn between half and all of it so receivers that failed together do not retry
/// together.
fn backoff(config: &NotifyConfig, attempts: u32) -> TimeDelta {
    let exp = attempts.saturating_sub(1).min(30);
    let full = config
        .backoff
        .saturating_mul(1u32 << exp)
        .min(config.max_backoff);
    let millis = u64::try_from(full.as_millis()).unwrap_or(u64::MAX).max(1);
    let half = millis / 2;
    let jitter = OsRng.next_u64() % (millis - half + 1);
    TimeDelta::milliseconds(i64::try_from(half + jitter).unwrap_or(i64::MAX))
}

#[cfg(test)]
mod tests;
