//! Everything about a webhook request that does not touch the network: the URL and its
//! scheme rules, the signature, the headers, the timeout, and what a status code means.

use hmac::{Hmac, Mac};
use sha2::Sha256;
use yardmaster_plugin_sdk::notifier::{Channel, Event, NotifyError};

/// Requests give up after this long unless the channel sets `timeout_ms`.
pub const DEFAULT_TIMEOUT_MS: u32 = 10_000;
/// The longest a channel may ask a request to wait.
const MAX_TIMEOUT_MS: u32 = 120_000;
/// Bodies beyond this are refused rather than sent.
pub const MAX_BODY: usize = 1024 * 1024;

/// A webhook URL, split into what wasi:http asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Url {
    pub https: bool,
    /// `host` or `host:port`, as the request's authority.
    pub authority: String,
    /// The host alone, lower case, without brackets.
    pub host: String,
    /// Path and query, starting with `/`.
    pub path_and_query: String,
}

impl Url {
    /// Parses an absolute `http://` or `https://` URL. User information (`user@`) and
    /// fragments are refused: credentials belong in the secret, not the URL.
    pub fn parse(text: &str) -> Result<Url, String> {
        let text = text.trim();
        let (https, rest) = if let Some(rest) = strip_prefix_ignore_case(text, "https://") {
            (true, rest)
        } else if let Some(rest) = strip_prefix_ignore_case(text, "http://") {
            (false, rest)
        } else {
            return Err(format!("`{text}` is not an http:// or https:// URL"));
        };
        if rest.contains('#') {
            return Err("a webhook URL cannot carry a fragment (`#...`)".into());
        }
        let (authority, path) = match rest.find(['/', '?']) {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        if authority.contains('@') {
            return Err("a webhook URL cannot carry user information (`user@`)".into());
        }
        if authority.is_empty() {
            return Err(format!("`{text}` names no host"));
        }
        if authority
            .chars()
            .any(|c| c.is_whitespace() || c.is_control())
        {
            return Err(format!(
                "`{text}` has spaces or control characters in its host"
            ));
        }
        if path.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(format!(
                "`{text}` has spaces or control characters in its path; percent-encode them"
            ));
        }
        let host = match authority.strip_prefix('[') {
            Some(rest) => {
                let (host, after) = rest
                    .split_once(']')
                    .ok_or_else(|| format!("`{authority}`: an IPv6 address lacks its `]`"))?;
                check_port(after.strip_prefix(':'), after.is_empty(), authority)?;
                host.to_string()
            }
            None => match authority.rsplit_once(':') {
                Some((host, port)) => {
                    check_port(Some(port), false, authority)?;
                    host.to_string()
                }
                None => authority.to_string(),
            },
        };
        if host.is_empty() {
            return Err(format!("`{text}` names no host"));
        }
        let path_and_query = if path.starts_with('?') {
            format!("/{path}")
        } else {
            path.to_string()
        };
        Ok(Url {
            https,
            authority: authority.to_string(),
            host: host.to_ascii_lowercase(),
            path_and_query,
        })
    }

    /// The URL without its query, which may carry a token: for logs and errors.
    pub fn redacted(&self) -> String {
        let path = self
            .path_and_query
            .split('?')
            .next()
            .unwrap_or(&self.path_and_query);
        let scheme = if self.https { "https" } else { "http" };
        format!("{scheme}://{}{path}", self.authority)
    }
}

fn strip_prefix_ignore_case<'a>(text: &'a str, prefix: &str) -> Option<&'a str> {
    let head = text.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix)
        .then(|| &text[prefix.len()..])
}

fn check_port(port: Option<&str>, none_ok: bool, authority: &str) -> Result<(), String> {
    match port {
        Some(p) if p.parse::<u16>().is_ok_and(|p| p > 0) => Ok(()),
        None if none_ok => Ok(()),
        _ => Err(format!("`{authority}` does not end in a valid port")),
    }
}

/// `sha256=<hex>`: HMAC-SHA256 keyed with `secret` over `<timestamp>.<body>`.
///
/// A receiver recomputes it over the raw body it got and the `x-yardmaster-timestamp`
/// header, compares in constant time, and refuses timestamps far from its own clock to
/// stop replays.
pub fn signature(secret: &[u8], timestamp: u64, body: &[u8]) -> String {
    // HMAC takes keys of any length; `new_from_slice` cannot fail for it.
    let mut mac = match Hmac::<Sha256>::new_from_slice(secret) {
        Ok(mac) => mac,
        Err(_) => unreachable_key(),
    };
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

#[cold]
fn unreachable_key() -> Hmac<Sha256> {
    // Hmac<Sha256> accepts every key length; this is only here to avoid an unwrap.
    match Hmac::<Sha256>::new_from_slice(b"") {
        Ok(mac) => mac,
        Err(_) => panic!("HMAC-SHA256 refused an empty key"),
    }
}

/// A request ready to send.
#[derive(Debug, Clone)]
pub struct Prepared {
    pub url: Url,
    pub body: Vec<u8>,
    /// Header names and values, signature included.
    pub headers: Vec<(String, String)>,
    pub timeout_ms: u32,
}

/// Checks the channel and builds the signed request for `event` at `timestamp`.
pub fn prepare(channel: &Channel, event: &Event, timestamp: u64) -> Result<Prepared, NotifyError> {
    let raw_url = channel
        .setting("url")
        .ok_or_else(|| NotifyError::Invalid(format!("channel `{}` has no `url`", channel.name)))?;
    let url = Url::parse(raw_url).map_err(NotifyError::Invalid)?;
    if !url.https && !http_allowed(channel.setting("allow_http"), &url.host) {
        return Err(NotifyError::Invalid(format!(
            "{} is plain http; webhooks go over https unless the operator allows plain http \
             for `{}` (--allow-http-notify)",
            url.redacted(),
            url.host
        )));
    }
    let secret = channel.setting("secret").unwrap_or_default();
    if secret.is_empty() {
        return Err(NotifyError::Invalid(format!(
            "channel `{}` has no signing `secret`",
            channel.name
        )));
    }
    let timeout_ms = match channel.setting("timeout_ms") {
        None => DEFAULT_TIMEOUT_MS,
        Some(text) => text
            .trim()
            .parse::<u32>()
            .ok()
            .filter(|t| (1..=MAX_TIMEOUT_MS).contains(t))
            .ok_or_else(|| {
                NotifyError::Invalid(format!(
                    "`timeout_ms` = `{text}` is not a number of milliseconds from 1 to {MAX_TIMEOUT_MS}"
                ))
            })?,
    };
    let body = event.payload.as_bytes().to_vec();
    if body.len() > MAX_BODY {
        return Err(NotifyError::Invalid(format!(
            "the event's body is {} bytes; at most {MAX_BODY} are sent",
            body.len()
        )));
    }
    let mut headers = vec![
        ("content-type".to_string(), "application/json".to_string()),
        ("x-yardmaster-event-id".to_string(), event.id.clone()),
        ("x-yardmaster-event".to_string(), event.kind.clone()),
        ("x-yardmaster-timestamp".to_string(), timestamp.to_string()),
        (
            "x-yardmaster-signature".to_string(),
            signature(secret.as_bytes(), timestamp, &body),
        ),
    ];
    // Just after the secret was rotated, the previous one signs too.
    if let Some(previous) = channel.setting("previous_secret").filter(|s| !s.is_empty()) {
        headers.push((
            "x-yardmaster-signature-previous".to_string(),
            signature(previous.as_bytes(), timestamp, &body),
        ));
    }
    Ok(Prepared {
        url,
        body,
        headers,
        timeout_ms,
    })
}

/// Whether the comma-separated host list `allowed` names `host` (case-insensitive).
fn http_allowed(allowed: Option<&str>, host: &str) -> bool {
    allowed.is_some_and(|list| {
        list.split(',')
            .map(|h| h.trim().trim_start_matches('[').trim_end_matches(']'))
            .any(|h| !h.is_empty() && h.eq_ignore_ascii_case(host))
    })
}

/// What a response status means for the delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Delivered,
    /// The receiver may take it later: 5xx, 408 (timeout), 425, 429 (slow down).
    Retry,
    /// The receiver refused it for good: other 4xx, and redirects (not followed, since a
    /// redirect could lead the signed body anywhere).
    Refused,
}

pub fn classify(status: u16) -> Outcome {
    match status {
        200..=299 => Outcome::Delivered,
        408 | 425 | 429 | 500..=599 => Outcome::Retry,
        _ => Outcome::Refused,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn channel(settings: &[(&str, &str)]) -> Channel {
        Channel {
            name: "ops".into(),
            settings: settings
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        }
    }

    fn event() -> Event {
        Event {
            id: "42".into(),
            kind: "job.status".into(),
            occurred_at: "2024-05-28T06:14:21+00:00".into(),
            subject: "Job completed".into(),
            text: "done".into(),
            html: None,
            payload: r#"{"status":"completed"}"#.into(),
            recipients: Vec::new(),
        }
    }

    #[test]
    fn urls() {
        let u = Url::parse("https://hooks.example.com/a/b?token=x").expect("url");
        assert!(u.https);
        assert_eq!(u.authority, "hooks.example.com");
        assert_eq!(u.host, "hooks.example.com");
        assert_eq!(u.path_and_query, "/a/b?token=x");
        assert_eq!(u.redacted(), "https://hooks.example.com/a/b");
        let u = Url::parse("HTTP://127.12.0.1:8080").expect("url");
        assert!(!u.https);
        assert_eq!(u.authority, "127.12.0.1:8080");
        assert_eq!(u.path_and_query, "/");
        let u = Url::parse("https://[::1]:9000/x").expect("v6");
        assert_eq!(u.host, "::1");
        for bad in [
            "ftp://x",
            "https://",
            "https://user:pw@host/",
            "https://host:99999/",
            "https://host/a b",
            "https://host/#frag",
            "hooks.example.com",
        ] {
            assert!(Url::parse(bad).is_err(), "{bad} should be refused");
        }
    }

    #[test]
    fn signature_matches_a_known_vector() {
        // The signed input is `<timestamp>.<body>`, in one HMAC.
        let mut mac = Hmac::<Sha256>::new_from_slice(b"Jefe").expect("key");
        mac.update(b"1716876861.{\"a\":1}");
        let expected = format!("sha256={}", hex::encode(mac.finalize().into_bytes()));
        assert_eq!(signature(b"Jefe", 1_716_876_861, br#"{"a":1}"#), expected);
        // RFC 4231 test case 2, so the primitive itself is the standard one.
        let mut rfc = Hmac::<Sha256>::new_from_slice(b"Jefe").expect("key");
        rfc.update(b"what do ya want for nothing?");
        assert_eq!(
            hex::encode(rfc.finalize().into_bytes()),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    fn header_of(prepared: &Prepared, name: &str) -> Option<String> {
        prepared
            .headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    }

    #[test]
    fn prepare_signs_and_names_the_event() {
        let c = channel(&[("url", "https://h.example/x"), ("secret", "s3cret")]);
        let p = prepare(&c, &event(), 1000).expect("prepared");
        let header = |name: &str| header_of(&p, name);
        assert_eq!(header("x-yardmaster-event-id").as_deref(), Some("42"));
        assert_eq!(header("x-yardmaster-timestamp").as_deref(), Some("1000"));
        assert_eq!(
            header("x-yardmaster-signature"),
            Some(signature(b"s3cret", 1000, br#"{"status":"completed"}"#))
        );
        assert_eq!(p.body, br#"{"status":"completed"}"#);
        assert_eq!(p.timeout_ms, DEFAULT_TIMEOUT_MS);
        assert_eq!(header("x-yardmaster-signature-previous"), None);

        // After a rotation, the previous secret signs the same bytes too.
        let c = channel(&[
            ("url", "https://h.example/x"),
            ("secret", "new"),
            ("previous_secret", "old"),
        ]);
        let p = prepare(&c, &event(), 1000).expect("prepared");
        let header = |name: &str| header_of(&p, name);
        let body = br#"{"status":"completed"}"#;
        assert_eq!(
            header("x-yardmaster-signature"),
            Some(signature(b"new", 1000, body))
        );
        assert_eq!(
            header("x-yardmaster-signature-previous"),
            Some(signature(b"old", 1000, body))
        );
    }

    #[test]
    fn plain_http_only_for_allowed_hosts() {
        let plain = channel(&[("url", "http://127.12.0.1:9/"), ("secret", "s")]);
        assert!(matches!(
            prepare(&plain, &event(), 1),
            Err(NotifyError::Invalid(m)) if m.contains("--allow-http-notify")
        ));
        let allowed = channel(&[
            ("url", "http://127.12.0.1:9/"),
            ("secret", "s"),
            ("allow_http", "example.org, 127.12.0.1"),
        ]);
        assert!(prepare(&allowed, &event(), 1).is_ok());
    }

    #[test]
    fn bad_settings_are_invalid() {
        for settings in [
            vec![("secret", "s")],
            vec![("url", "https://h/")],
            vec![("url", "https://h/"), ("secret", "s"), ("timeout_ms", "0")],
            vec![
                ("url", "https://h/"),
                ("secret", "s"),
                ("timeout_ms", "soon"),
            ],
        ] {
            assert!(matches!(
                prepare(&channel(&settings), &event(), 1),
                Err(NotifyError::Invalid(_))
            ));
        }
    }

    #[test]
    fn statuses() {
        assert_eq!(classify(200), Outcome::Delivered);
        assert_eq!(classify(204), Outcome::Delivered);
        assert_eq!(classify(500), Outcome::Retry);
        assert_eq!(classify(503), Outcome::Retry);
        assert_eq!(classify(429), Outcome::Retry);
        assert_eq!(classify(404), Outcome::Refused);
        assert_eq!(classify(301), Outcome::Refused);
    }
}
