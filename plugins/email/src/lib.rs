//! The e-mail notifier: each event is one message to its recipients, sent over SMTP.
//!
//! The connection is the host's (`yardmaster:host/tls`), so the allow-list applies and
//! TLS is done by the engine: implicit TLS (port 465) or STARTTLS on a plain connection.
//! `message` renders the MIME message (multipart/alternative, text and HTML, quoted-
//! printable) and dot-stuffs it; `smtp` speaks the protocol over any stream, so both are
//! unit-tested natively.
//!
//! Channel settings:
//! - `host` (required), `port` (default 587, or 465 with `security` = tls);
//! - `security`: `starttls` (required; fail when not offered), `opportunistic` (the
//!   default: STARTTLS when offered), `tls` (implicit), `none`;
//! - `verify` (default true), `pinned_sha256`, `server_name`: how TLS is checked;
//! - `username`, `password`, `auth` (`plain` or `login`; by default whichever the server
//!   offers, PLAIN first), `auth_without_tls` (default false: credentials only over TLS);
//! - `from` (required), `from_name`, `helo` (default `localhost`), `timeout_ms`.

mod message;
mod smtp;

use std::time::Duration;

use yardmaster_plugin_sdk::net::{Connection, TlsOptions};
use yardmaster_plugin_sdk::notifier::{Channel, Event, Notifier, NotifyError, Receipt};
use yardmaster_plugin_sdk::{PluginInfo, PluginKind, log};

pub use message::{Draft, check_address, dot_stuff, quoted_printable, render};
pub use smtp::{Credentials, Envelope, Mechanism, Security, Sent, Session, Stream};

const DEFAULT_TIMEOUT_MS: u32 = 30_000;
const MAX_TIMEOUT_MS: u32 = 300_000;

struct Email;

/// The host's connection, with the TLS options STARTTLS will use.
struct HostStream {
    conn: Connection,
    tls: TlsOptions,
}

impl std::io::Read for HostStream {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.conn.read(buf)
    }
}

impl std::io::Write for HostStream {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.conn.write(buf)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.conn.flush()
    }
}

impl Stream for HostStream {
    fn start_tls(&mut self) -> Result<(), NotifyError> {
        self.conn.start_tls(&self.tls).map_err(|e| match e {
            yardmaster_plugin_sdk::net::NetError::Tls(m) => {
                NotifyError::Unavailable(format!("STARTTLS handshake failed: {m}"))
            }
            other => other.into(),
        })
    }
}

/// The channel's settings, checked.
struct Settings<'a> {
    host: &'a str,
    port: u16,
    security: Security,
    tls: TlsOptions,
    credentials: Option<Credentials>,
    from: &'a str,
    from_name: Option<&'a str>,
    helo: &'a str,
    timeout: Duration,
}

fn settings(channel: &Channel) -> Result<Settings<'_>, NotifyError> {
    let invalid = |m: String| NotifyError::Invalid(m);
    let host = channel
        .setting("host")
        .filter(|h| !h.trim().is_empty())
        .ok_or_else(|| invalid(format!("channel `{}` has no SMTP `host`", channel.name)))?;
    let security = match channel.setting("security") {
        Some(text) => Security::parse(text).map_err(invalid)?,
        None => Security::Opportunistic,
    };
    let port = match channel.setting("port") {
        Some(text) => text
            .trim()
            .parse::<u16>()
            .ok()
            .filter(|p| *p > 0)
            .ok_or_else(|| invalid(format!("`port` = `{text}` is not a port number")))?,
        None => security.default_port(),
    };
    let flag = |name: &str, default: bool| -> Result<bool, NotifyError> {
        match channel.setting(name).map(|v| v.trim().to_ascii_lowercase()) {
            None => Ok(default),
            Some(v) if v == "true" || v == "yes" || v == "1" => Ok(true),
            Some(v) if v == "false" || v == "no" || v == "0" => Ok(false),
            Some(v) => Err(invalid(format!("`{name}` = `{v}` is not true or false"))),
        }
    };
    let mut tls = TlsOptions {
        verify: flag("verify", true)?,
        pinned_sha256: channel.setting("pinned_sha256").map(str::to_owned),
        server_name: channel.setting("server_name").map(str::to_owned),
        ..TlsOptions::default()
    };
    let credentials = match channel.setting("username").filter(|u| !u.is_empty()) {
        Some(username) => Some(Credentials {
            username: username.to_owned(),
            password: channel.setting("password").unwrap_or_default().to_owned(),
            mechanism: match channel
                .setting("auth")
                .map(|m| m.trim().to_ascii_lowercase())
            {
                None => None,
                Some(m) if m == "plain" => Some(Mechanism::Plain),
                Some(m) if m == "login" => Some(Mechanism::Login),
                Some(m) => return Err(invalid(format!("`auth` = `{m}`: expected plain or login"))),
            },
            without_tls: flag("auth_without_tls", false)?,
        }),
        None => None,
    };
    let from = channel
        .setting("from")
        .ok_or_else(|| invalid(format!("channel `{}` has no `from` address", channel.name)))?;
    check_address(from).map_err(invalid)?;
    let helo = channel.setting("helo").unwrap_or("localhost");
    if helo.is_empty() || helo.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(invalid(format!("`helo` = `{helo}` is not a host name")));
    }
    let timeout_ms = match channel.setting("timeout_ms") {
        None => DEFAULT_TIMEOUT_MS,
        Some(text) => text
            .trim()
            .parse::<u32>()
            .ok()
            .filter(|t| (1..=MAX_TIMEOUT_MS).contains(t))
            .ok_or_else(|| {
                invalid(format!(
                    "`timeout_ms` = `{text}` is not a number of milliseconds from 1 to {MAX_TIMEOUT_MS}"
                ))
            })?,
    };
    let timeout = Duration::from_millis(u64::from(timeout_ms));
    tls.timeout_ms = timeout_ms;
    Ok(Settings {
        host: host.trim(),
        port,
        security,
        tls,
        credentials,
        from,
        from_name: channel.setting("from_name"),
        helo,
        timeout,
    })
}

impl Notifier for Email {
    fn describe() -> PluginInfo {
        PluginInfo::new("email", env!("CARGO_PKG_VERSION"), PluginKind::Notifier).with_description(
            "Sends each event as a text and HTML e-mail over SMTP, with STARTTLS and AUTH PLAIN or LOGIN",
        )
    }

    fn deliver(channel: Channel, event: Event) -> Result<Receipt, NotifyError> {
        let settings = settings(&channel)?;
        let mut to = Vec::new();
        for recipient in &event.recipients {
            let address = recipient.address.trim();
            check_address(address).map_err(NotifyError::Invalid)?;
            if !to.iter().any(|t: &String| t.eq_ignore_ascii_case(address)) {
                to.push(address.to_owned());
            }
        }
        if to.is_empty() {
            return Err(NotifyError::Invalid(format!(
                "event {} has no e-mail recipients",
                event.id
            )));
        }
        let rendered = render(&Draft {
            from: settings.from,
            from_name: settings.from_name,
            to: &to,
            subject: &event.subject,
            text: &event.text,
            html: event.html.as_deref(),
            event_id: &event.id,
            event_kind: &event.kind,
            date: now_unix(),
        })
        .map_err(NotifyError::Invalid)?;
        let data = dot_stuff(&rendered);

        let implicit = settings.security == Security::Tls;
        let mut conn = if implicit {
            Connection::connect(settings.host, settings.port, &settings.tls)?
        } else {
            Connection::connect_plain(settings.host, settings.port, Some(settings.timeout))?
        };
        conn.set_read_timeout(Some(settings.timeout));
        conn.set_write_timeout(Some(settings.timeout));
        let stream = HostStream {
            conn,
            tls: settings.tls.clone(),
        };
        let sent = Session::new(stream, implicit).send(
            settings.helo,
            settings.security,
            settings.credentials.as_ref(),
            &Envelope {
                from: settings.from,
                to: &to,
                data: &data,
            },
        )?;
        let mut detail = format!(
            "sent to {} recipient(s) via {}:{}{}: {}",
            sent.accepted.len(),
            settings.host,
            settings.port,
            if sent.tls { " over TLS" } else { "" },
            sent.queued
        );
        if !sent.refused.is_empty() {
            let refused: Vec<String> = sent
                .refused
                .iter()
                .map(|(to, why)| format!("{to} ({why})"))
                .collect();
            log::warn!(
                "event {}: the server refused {}",
                event.id,
                refused.join(", ")
            );
            detail.push_str(&format!("; refused: {}", refused.join(", ")));
        }
        Ok(Receipt { detail })
    }
}

fn now_unix() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

yardmaster_plugin_sdk::export_notifier!(Email);
