//! The `[notify]` section of the configuration, and the rules for receivers.
//!
//! A job's `notify_url` goes to public https receivers by default: the webhook plugin
//! is granted, for that delivery, the URL's host and port on public addresses only
//! (judged on the address connected to, after DNS), not the operator's allow-list of
//! the plugin. Plain http, and receivers on internal addresses, are reached only when
//! the operator lists their host in `allow_http`; a listed host is granted as it is,
//! on any port, without a second entry in the plugin's allow-list.
//!
//! ```toml
//! [notify]
//! max_attempts = 8          # then the event is a dead letter
//! backoff = "2s"            # first retry after about this long, doubling each time
//! max_backoff = "15m"       # ... up to this
//! allow_http = ["hooks.internal"]   # or --allow-http-notify / YARDMASTER_ALLOW_HTTP_NOTIFY
//! public_url = "https://yardmaster.example.com"   # the base of approval links
//! ```

use std::net::IpAddr;
use std::time::Duration;

use serde::{Deserialize, Deserializer};

use crate::plugins::net::{Grant, Reach, is_public};

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

/// Whether a job's `notify_url` can ever be delivered: [`check_url`], and a literal
/// address in it must be public unless the operator lists it in `allow_http`. A name is
/// judged when the delivery connects (see [`receiver_reach`]).
pub fn check_notify_url(url: &str, allow_http: &[String]) -> Result<(), String> {
    check_url(url, allow_http)?;
    let host = url_host(url).unwrap_or_default();
    if listed(allow_http, &host) {
        return Ok(());
    }
    match host.parse::<IpAddr>() {
        Ok(ip) if !is_public(ip) => Err(format!(
            "`{host}` is not a public address; notifications reach internal receivers only \
             when the operator lists them (--allow-http-notify {host})"
        )),
        _ => Ok(()),
    }
}

/// What the delivery to a job's `notify_url` may reach: its host on any port when the
/// operator lists it in `allow_http`; otherwise, for https, its host and port on public
/// addresses only; nothing else (not the plugin's own allow-list).
pub(crate) fn receiver_reach(url: &str, allow_http: &[String]) -> Reach {
    let mut grants = Vec::new();
    if let Ok(uri) = url.parse::<http::Uri>()
        && let Some(host) = uri.host().filter(|h| !h.is_empty())
    {
        let bare = host.trim_start_matches('[').trim_end_matches(']');
        let https = uri
            .scheme_str()
            .is_some_and(|s| s.eq_ignore_ascii_case("https"));
        if listed(allow_http, bare) {
            grants.extend(Grant::host(bare));
        } else if https {
            grants.push(Grant::public_only(bare, uri.port_u16().unwrap_or(443)));
        }
    }
    Reach::Only(grants)
}

/// The hosts of `allow_http` as grants of any port, which a webhook channel may reach
/// beside its plugin's allow-list: the operator named them as receivers already.
pub(crate) fn listed_hosts(allow_http: &[String]) -> Vec<Grant> {
    allow_http.iter().filter_map(|h| Grant::host(h)).collect()
}

fn url_host(url: &str) -> Option<String> {
    let uri: http::Uri = url.parse().ok()?;
    Some(
        uri.host()?
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_ascii_lowercase(),
    )
}

fn listed(allow_http: &[String], host: &str) -> bool {
    let host = host.trim_end_matches('.');
    allow_http.iter().any(|h| {
        h.trim()
            .trim_start_matches('[')
            .trim_end_matches(']')
            .eq_ignore_ascii_case(host)
    })
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
    fn a_notify_url_to_a_literal_internal_address_needs_the_operator() {
        let mut c = NotifyConfig::default();
        for url in [
            "https://127.0.0.1:9000/x",
            "https://10.0.0.7/x",
            "https://169.254.169.254/latest/meta-data",
            "https://[::1]:8443/",
            "https://[fd00:ec2::254]/",
            "https://100.100.100.200/",
            "https://0.0.0.0/",
        ] {
            let err = check_notify_url(url, &c.allow_http).expect_err(url);
            assert!(err.contains("not a public address"), "{url}: {err}");
        }
        // Plain http to an unlisted host, and other schemes, are refused as before.
        assert!(check_notify_url("http://example.com/x", &c.allow_http).is_err());
        assert!(check_notify_url("gopher://example.com/x", &c.allow_http).is_err());
        // A public address or a name passes; a name is judged when it is connected to.
        assert!(check_notify_url("https://93.184.216.34/x", &c.allow_http).is_ok());
        assert!(check_notify_url("https://hooks.example.com/x", &c.allow_http).is_ok());
        assert!(check_notify_url("https://localhost:9000/x", &c.allow_http).is_ok());
        // Listed by the operator: reachable over http and https.
        c.set_allow_http("127.0.0.1,::1");
        assert!(check_notify_url("https://127.0.0.1:9000/x", &c.allow_http).is_ok());
        assert!(check_notify_url("http://127.0.0.1:9000/x", &c.allow_http).is_ok());
        assert!(check_notify_url("http://[::1]:9000/x", &c.allow_http).is_ok());
        assert!(check_notify_url("https://127.0.0.2:9000/x", &c.allow_http).is_err());
    }

    #[test]
    fn a_notify_url_reaches_its_own_host_only() {
        let allow = vec!["hooks.internal".to_owned(), "127.12.0.1".to_owned()];
        let public = Grant::public_only("hooks.example.com", 443);
        assert_eq!(
            receiver_reach("https://hooks.example.com/x?t=1", &allow),
            Reach::Only(vec![public])
        );
        assert_eq!(
            receiver_reach("https://hooks.example.com:8443/x", &allow),
            Reach::Only(vec![Grant::public_only("hooks.example.com", 8443)])
        );
        let listed = Grant::host("hooks.internal").expect("host");
        assert_eq!(
            receiver_reach("http://HOOKS.internal:8080/x", &allow),
            Reach::Only(vec![listed.clone()])
        );
        assert_eq!(
            receiver_reach("https://hooks.internal/x", &allow),
            Reach::Only(vec![listed])
        );
        assert_eq!(
            receiver_reach("http://127.12.0.1:9000/x", &allow),
            Reach::Only(vec![Grant::host("127.12.0.1").expect("address")])
        );
        // Plain http to an unlisted host, or no URL at all: nothing.
        assert_eq!(
            receiver_reach("http://example.com/x", &allow),
            Reach::Only(vec![])
        );
        assert_eq!(receiver_reach("not a url", &allow), Reach::Only(vec![]));
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
