//! The `[notify]` section of the configuration, and the rule for plain-http receivers.
//!
//! ```toml
//! [notify]
//! max_attempts = 8          # then the event is a dead letter
//! backoff = "2s"            # first retry after about this long, doubling each time
//! max_backoff = "15m"       # ... up to this
//! allow_http = ["hooks.internal"]   # or --allow-http-notify / YARDMASTER_ALLOW_HTTP_NOTIFY
//! public_url = "https://yardmaster.example.com"   # the base of approval links
//! ```

use std::time::Duration;

use serde::{Deserialize, Deserializer};

/// How the deliverer retries, and who may receive plain http.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NotifyConfig {
    /// Attempts before an event becomes a dead letter (at least 1).
    #[serde(deserialize_with = "attempts")]
    pub max_attempts: u32,
    /// Delay before the first retry; it doubles with each attempt, with jitter.
    #[serde(deserialize_with = "duration")]
    pub backoff: Duration,
    /// The longest delay between two attempts.
    #[serde(deserialize_with = "duration")]
    pub max_backoff: Duration,
    /// Hosts that may receive notifications over plain http; https is required otherwise.
    pub allow_http: Vec<String>,
    /// The engine's address as people reach it, for links in notifications
    /// (default: `http://` and the listen address).
    pub public_url: Option<String>,
}

impl Default for NotifyConfig {
    fn default() -> Self {
        NotifyConfig {
            max_attempts: 8,
            backoff: Duration::from_secs(2),
            max_backoff: Duration::from_secs(15 * 60),
            allow_http: Vec::new(),
            public_url: None,
        }
    }
}

impl NotifyConfig {
    /// Replaces the plain-http hosts with a comma-separated list (the command-line flag).
    pub fn set_allow_http(&mut self, hosts: &str) {
        self.allow_http = hosts
            .split(',')
            .map(|h| h.trim().to_ascii_lowercase())
            .filter(|h| !h.is_empty())
            .collect();
    }

    /// Whether `url` may receive notifications: https, or http to a host the operator
    /// allowed. The message says what to do otherwise.
    pub fn check_url(&self, url: &str) -> Result<(), String> {
        check_url(url, &self.allow_http)
    }
}

/// See [`NotifyConfig::check_url`].
pub fn check_url(url: &str, allow_http: &[String]) -> Result<(), String> {
    let uri: http::Uri = url.parse().map_err(|_| format!("`{url}` is not a URL"))?;
    let host = uri
        .host()
        .filter(|h| !h.is_empty())
        .ok_or_else(|| format!("`{url}` names no host"))?
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_ascii_lowercase();
    if uri.authority().is_some_and(|a| a.as_str().contains('@')) {
        return Err("a notification URL cannot carry user information".into());
    }
    match uri.scheme_str() {
        Some("https") => Ok(()),
        Some("http") if allow_http.iter().any(|h| h.eq_ignore_ascii_case(&host)) => Ok(()),
        Some("http") => Err(format!(
            "must start with https; plain http to `{host}` is refused unless the operator allows it \
             (--allow-http-notify {host})"
        )),
        _ => Err(format!("`{url}` is not an https URL")),
    }
}

fn duration<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    let text = String::deserialize(d)?;
    crate::config::parse_duration(&text)
        .filter(|d| !d.is_zero())
        .ok_or_else(|| {
            serde::de::Error::custom(format!("`{text}` is not a duration like 2s or 15m"))
        })
}

fn attempts<'de, D: Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
    let n = u32::deserialize(d)?;
    if (1..=100).contains(&n) {
        Ok(n)
    } else {
        Err(serde::de::Error::custom(
            "max_attempts must be from 1 to 100",
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn https_or_allowed_http() {
        let mut c = NotifyConfig::default();
        assert!(c.check_url("https://example.com/notify").is_ok());
        let err = c.check_url("http://127.12.0.1:9000/x").expect_err("plain");
        assert!(err.contains("--allow-http-notify 127.12.0.1"), "{err}");
        c.set_allow_http("hooks.internal, 127.12.0.1");
        assert!(c.check_url("http://127.12.0.1:9000/x").is_ok());
        assert!(c.check_url("HTTP://Hooks.Internal/x").is_ok());
        assert!(c.check_url("http://other/x").is_err());
        assert!(c.check_url("ftp://example.com").is_err());
        assert!(c.check_url("not a url").is_err());
        assert!(c.check_url("https://user@example.com/").is_err());
    }

    #[test]
    fn parses_the_section() {
        let c: NotifyConfig = toml::from_str(
            "max_attempts = 3\nbackoff = \"100ms\"\nmax_backoff = \"1s\"\nallow_http = [\"a\"]",
        )
        .expect("parse");
        assert_eq!(c.max_attempts, 3);
        assert_eq!(c.backoff, Duration::from_millis(100));
        assert!(toml::from_str::<NotifyConfig>("max_attempts = 0").is_err());
        assert!(toml::from_str::<NotifyConfig>("backoff = \"soon\"").is_err());
        assert!(toml::from_str::<NotifyConfig>("colour = 1").is_err());
    }
}
