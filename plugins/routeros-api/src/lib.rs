//! The RouterOS API transport: MikroTik's binary API over TCP (8728) or API-SSL (8729).
//!
//! Each call opens a connection through the host (which applies the allow-list and,
//! for API-SSL, does the TLS with the site's verification or pinned fingerprint), logs
//! in with the plain flow or the legacy challenge, does its work with tagged commands,
//! and closes. `session` speaks the protocol; the SDK's `routeros::script_error`, shared
//! with the SSH transport, tells a script's console output that reports an error from
//! one that does not.
//!
//! RouterOS's API-SSL without a certificate uses anonymous Diffie-Hellman, which the
//! host's TLS (rustls) does not offer: such a router needs a certificate (a self-signed
//! one with its fingerprint pinned on the site is enough).

mod rollback;
mod session;

use std::time::Duration;

use yardmaster_plugin_sdk::net::Connection;
use yardmaster_plugin_sdk::transport::{
    Armed, BackupResult, CommandReply, ProbeResult, Rollback, Target, Transport, TransportError,
};
use yardmaster_plugin_sdk::{ConfigKey, PluginInfo, PluginKind, config};

pub use session::{Collected, Session};
pub use yardmaster_plugin_sdk::routeros::script_error;

const API_PORT: u16 = 8728;
const API_SSL_PORT: u16 = 8729;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
const REPLY_TIMEOUT: Duration = Duration::from_secs(60);

struct RouterOsApi;

fn endpoint(target: &Target) -> (u16, &'static str) {
    match target.tls {
        Some(_) => (target.port_or(API_SSL_PORT), "API-SSL"),
        None => (target.port_or(API_PORT), "API"),
    }
}

/// Connects and logs in to the site.
fn open(target: &Target) -> Result<Session<Connection>, TransportError> {
    let (port, service) = endpoint(target);
    let connect_timeout = target.connect_timeout_or(CONNECT_TIMEOUT);
    let conn = match target.tls_options() {
        Some(mut tls) => {
            if tls.timeout_ms == 0 {
                tls.timeout_ms = u32::try_from(connect_timeout.as_millis()).unwrap_or(u32::MAX);
            }
            Connection::connect(&target.address, port, &tls)
        }
        None => Connection::connect_plain(&target.address, port, Some(connect_timeout)),
    };
    let mut conn = conn.map_err(|e| {
        let e = TransportError::from(e);
        let context = format!("{service} at {}:{port}", target.address);
        match e {
            TransportError::Tls(m) if m.contains("handshake") => TransportError::Tls(format!(
                "{m}; if the router's {service} has no certificate it offers only anonymous Diffie-Hellman, which is not supported: give it a certificate"
            )),
            TransportError::Refused(m) => TransportError::Refused(format!("{context}: {m}")),
            // No answer to the connection attempt: the router is unreachable, and nothing
            // was sent, so the job may safely be tried again.
            TransportError::Timeout(m) => {
                TransportError::Refused(format!("{context}: unreachable ({m})"))
            }
            other => other,
        }
    })?;
    conn.set_read_timeout(Some(target.reply_timeout_or(REPLY_TIMEOUT)));
    conn.set_write_timeout(Some(target.reply_timeout_or(REPLY_TIMEOUT)));
    let password = target.password.as_str();
    Session::login(conn, &target.username, password)
}

/// Runs `work` on a fresh session and closes it whatever happens.
fn with_session<T>(
    target: &Target,
    work: impl FnOnce(&mut Session<Connection>) -> Result<T, TransportError>,
) -> Result<T, TransportError> {
    let mut session = open(target)?;
    let result = work(&mut session);
    // Dropping the connection closes it.
    session.quit();
    result
}

/// Runs a script and returns its console output.
///
/// RouterOS 7 returns the output of `/execute =as-string=` in `=ret=`. Older versions
/// do not know `as-string` (and refuse the command before running anything), so the
/// script runs again with its output sent to a file, which is read back and removed.
fn execute(session: &mut Session<Connection>, script: &str) -> Result<String, TransportError> {
    let reply = session.command(&[
        "/execute".to_owned(),
        ["=script=", script].concat(),
        "=as-string=".to_owned(),
    ])?;
    match &reply.trap {
        None => return Ok(reply.ret().unwrap_or_default().to_owned()),
        Some(trap) if !trap.message.contains("as-string") => {
            return Err(TransportError::Script(trap.message.clone()));
        }
        Some(_) => {}
    }
    let file = format!("yardmaster-{}", session_nonce());
    let reply = session.command(&[
        "/execute".to_owned(),
        format!("=script={script}"),
        format!("=file={file}"),
    ])?;
    if let Some(trap) = reply.trap {
        return Err(TransportError::Script(trap.message));
    }
    let name = format!("{file}.txt");
    let listing = session.command(&[
        "/file/print".to_owned(),
        format!("?name={name}"),
        "=.proplist=.id,contents".to_owned(),
    ])?;
    let row = listing.rows.first();
    let contents = row
        .and_then(|r| r.iter().find(|(k, _)| k == "contents"))
        .map(|(_, v)| v.clone())
        .unwrap_or_default();
    if let Some(id) = row
        .and_then(|r| r.iter().find(|(k, _)| k == ".id"))
        .map(|(_, v)| v.clone())
    {
        let _ = session.command(&["/file/remove".to_owned(), format!("=.id={id}")]);
    }
    Ok(contents)
}

/// A name no other run on the same router picks at the same time.
fn session_nonce() -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    format!("{now:x}")
}

impl Transport for RouterOsApi {
    fn describe() -> PluginInfo {
        PluginInfo::new("routeros-api", env!("CARGO_PKG_VERSION"), PluginKind::Transport)
            .with_description(
                "MikroTik RouterOS API over TCP (8728) and API-SSL (8729): commands, scripts, backups and probes",
            )
            .with_config_key(ConfigKey::optional(
                "backup_binary",
                "When `true`, a backup also saves a binary backup on the router (/system backup save)",
            ))
    }

    fn run_command(target: Target, words: Vec<String>) -> Result<CommandReply, TransportError> {
        let Some(command) = words.first() else {
            return Err(TransportError::Other(
                "no command word was given".to_owned(),
            ));
        };
        if !command.starts_with('/') {
            return Err(TransportError::Other(format!(
                "`{command}` is not an API command word like /system/identity/print"
            )));
        }
        with_session(&target, |session| session.command(&words)?.into_reply())
    }

    fn run_script(target: Target, script: String) -> Result<String, TransportError> {
        let output = with_session(&target, |session| execute(session, &script))?;
        if let Some(error) = script_error(&output) {
            return Err(TransportError::Script(error));
        }
        Ok(output)
    }

    fn backup(target: Target, save_as: Option<String>) -> Result<BackupResult, TransportError> {
        let binary = save_as.or_else(|| {
            (config::get("backup_binary").as_deref() == Some("true"))
                .then(|| format!("yardmaster-{}", session_nonce()))
        });
        with_session(&target, |session| {
            let export = session.command(&["/export".to_owned()])?;
            let text = match (&export.trap, export.ret()) {
                (None, Some(text)) => text.to_owned(),
                // Some versions print the export only on the console.
                _ => execute(session, "/export")?,
            };
            if text.trim().is_empty() {
                return Err(TransportError::Other(
                    "the router returned an empty configuration export".to_owned(),
                ));
            }
            let saved_file = match binary {
                Some(name) => {
                    session
                        .command(&["/system/backup/save".to_owned(), format!("=name={name}")])?
                        .into_reply()?;
                    Some(if name.ends_with(".backup") {
                        name
                    } else {
                        format!("{name}.backup")
                    })
                }
                None => None,
            };
            Ok(BackupResult {
                config: text,
                saved_file,
            })
        })
    }

    fn probe(target: Target) -> Result<ProbeResult, TransportError> {
        let mut session = match open(&target) {
            Ok(session) => session,
            Err(
                TransportError::Refused(detail)
                | TransportError::Timeout(detail)
                | TransportError::Reset(detail),
            ) => {
                return Ok(ProbeResult {
                    online: false,
                    identity: None,
                    version: None,
                    board: None,
                    uptime: None,
                    detail: Some(detail),
                });
            }
            Err(other) => return Err(other),
        };
        // Both prints go out at once; their tags keep the replies apart.
        let result = (|| {
            let identity = session.send(&["/system/identity/print".to_owned()])?;
            let resource = session.send(&["/system/resource/print".to_owned()])?;
            let identity = session
                .collect(&identity, "to /system/identity/print")?
                .into_reply()?;
            let resource = session
                .collect(&resource, "to /system/resource/print")?
                .into_reply()?;
            let field = |rows: &[Vec<(String, String)>], name: &str| {
                rows.first()
                    .and_then(|r| r.iter().find(|(k, _)| k == name))
                    .map(|(_, v)| v.clone())
            };
            Ok(ProbeResult {
                online: true,
                identity: field(&identity.rows, "name"),
                version: field(&resource.rows, "version"),
                board: field(&resource.rows, "board-name"),
                uptime: field(&resource.rows, "uptime"),
                detail: None,
            })
        })();
        session.quit();
        result
    }
}

impl Rollback for RouterOsApi {
    fn arm(target: Target, name: String, seconds: u32) -> Result<Armed, TransportError> {
        with_session(&target, |session| {
            rollback::arm(session, &target, &name, seconds)
        })
    }

    fn disarm(target: Target, armed: Armed) -> Result<(), TransportError> {
        with_session(&target, |session| rollback::disarm(session, &armed))
    }
}

yardmaster_plugin_sdk::export_transport!(
    RouterOsApi,
    default_port = API_PORT,
    default_tls_port = API_SSL_PORT,
    rollback
);
