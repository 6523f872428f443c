//! The webhook notifier: each event is one JSON `POST` to the channel's URL, signed so
//! the receiver can tell it came from this engine and was not replayed.
//!
//! The request goes through wasi:http, so the engine does the HTTPS (with its trusted
//! roots) and decides what the delivery may reach: the plugin's allow-list for an
//! organization's channel, and for a job's `notify_url` the URL's host on public
//! addresses (or as the operator listed it). Plain `http://` is refused unless the
//! channel's `allow_http` setting names the host: the engine fills it from the
//! operator's `--allow-http-notify`.
//!
//! Headers on every request:
//! - `x-yardmaster-event-id`: unique per event, the same on every retry, so a receiver
//!   drops duplicates (delivery is at least once);
//! - `x-yardmaster-event`: the event's kind, e.g. `job.status`;
//! - `x-yardmaster-timestamp`: unix seconds when this attempt was signed;
//! - `x-yardmaster-signature`: `sha256=<hex>`, HMAC-SHA256 with the channel's secret
//!   over `<timestamp>.<body>` (see [`signature`]);
//! - `x-yardmaster-signature-previous`: the same with the `previous_secret` setting, when
//!   the engine gives one (for a while after a rotation).
//!
//! `request` builds and checks everything that does not need the network, so it is
//! unit-tested natively; `send` is the wasi:http part.

mod request;
#[cfg(target_arch = "wasm32")]
mod send;

use yardmaster_plugin_sdk::notifier::{Channel, Event, Notifier, NotifyError, Receipt};
use yardmaster_plugin_sdk::{ConfigKey, PluginInfo, PluginKind, log};

pub use request::{Outcome, Prepared, Url, classify, prepare, signature};

struct Webhook;

impl Notifier for Webhook {
    fn describe() -> PluginInfo {
        PluginInfo::new("webhook", env!("CARGO_PKG_VERSION"), PluginKind::Notifier)
            .with_description(
                "POSTs each event as JSON to a URL, signed with HMAC-SHA256 over timestamp and body",
            )
            .with_config_key(ConfigKey::optional(
                "user_agent",
                "The User-Agent header sent with every request",
            ))
    }

    fn deliver(channel: Channel, event: Event) -> Result<Receipt, NotifyError> {
        let prepared = prepare(&channel, &event, now_unix())?;
        log::debug!(
            "posting event {} ({}) to {}",
            event.id,
            event.kind,
            prepared.url.redacted()
        );
        post(&prepared)
    }
}

#[cfg(target_arch = "wasm32")]
fn post(prepared: &Prepared) -> Result<Receipt, NotifyError> {
    let user_agent = yardmaster_plugin_sdk::config::get("user_agent")
        .unwrap_or_else(|| format!("yardmaster-webhook/{}", env!("CARGO_PKG_VERSION")));
    let (status, body) = send::post(prepared, &user_agent)?;
    match classify(status) {
        Outcome::Delivered => Ok(Receipt {
            detail: format!("HTTP {status}"),
        }),
        Outcome::Retry => Err(NotifyError::Unavailable(format!(
            "{} answered HTTP {status}{}",
            prepared.url.redacted(),
            excerpt(&body)
        ))),
        Outcome::Refused => Err(NotifyError::Rejected(format!(
            "{} answered HTTP {status}{}",
            prepared.url.redacted(),
            excerpt(&body)
        ))),
    }
}

#[cfg(not(target_arch = "wasm32"))]
fn post(_: &Prepared) -> Result<Receipt, NotifyError> {
    Err(NotifyError::Unavailable(
        "wasi:http is only available inside the engine".into(),
    ))
}

/// The start of a response body, for the delivery log.
#[cfg_attr(not(target_arch = "wasm32"), allow(dead_code))]
fn excerpt(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    if text.is_empty() {
        return String::new();
    }
    let short: String = text.chars().take(200).collect();
    format!(": {short}")
}

fn now_unix() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

yardmaster_plugin_sdk::export_notifier!(Webhook);
