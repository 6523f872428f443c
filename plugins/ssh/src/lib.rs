//! The SSH transport, for RouterOS and Linux hosts.
//!
//! The engine makes the SSH session (`yardmaster:host/ssh`): key exchange, the host-key
//! check against the site's pinned or first-seen key, and the login with the site's
//! password or the private key the engine holds for it. This plugin knows what to run
//! on each platform and how to read what comes back:
//!
//! - RouterOS: the login name gets `+cet1024w` (no colours, no terminal detection, a
//!   wide console), a script runs whole as one command, and output that reports a
//!   RouterOS error fails the job even when the exit status is 0 (the classifier is the
//!   SDK's, shared with the RouterOS API transport). Backup is `/export`; the probe reads
//!   the identity and `/system resource`.
//! - Linux: the script is fed to `sh -s` on stdin; a non-zero exit status fails the job
//!   with the status and the tail of stderr. Backup runs the operator's
//!   `backup_command` (none by default); the probe runs `uname -srm` and `uname -n`.
//!
//! A script's output is kept up to the plugin's `max_output` (bytes of each of stdout
//! and stderr; 256 KiB by default, what a job keeps). Output cut there ends with a
//! notice line saying so, within the cap, so the job shows it; a backup that does not
//! fit in 4 MiB fails rather than being kept in part.
//!
//! The platform is the site's `ssh.platform` when set (passed as the option
//! `ssh.platform`); otherwise it is told from the server's version string before login,
//! since the RouterOS login name depends on it: RouterOS answers `SSH-2.0-ROSSSH`.

use std::io::Read;
use std::time::Duration;

use yardmaster_plugin_sdk::net::Connection;
use yardmaster_plugin_sdk::routeros::script_error;
use yardmaster_plugin_sdk::ssh::{
    Auth, ConnectOptions, ExecOutput, HostKeyPolicy, Session, SshError,
};
use yardmaster_plugin_sdk::transport::{
    BackupResult, CommandReply, ProbeResult, Target, Transport, TransportError,
};
use yardmaster_plugin_sdk::{ConfigKey, PluginInfo, PluginKind, config, log};

const SSH_PORT: u16 = 22;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
const REPLY_TIMEOUT: Duration = Duration::from_secs(60);
/// A script's stdout and stderr are each kept up to this much unless the plugin's
/// `max_output` says otherwise: what a job keeps of its output.
const DEFAULT_MAX_OUTPUT: u32 = 256 * 1024;
/// The most `max_output` may be, and what a backup may be.
const MAX_OUTPUT: u32 = 4 * 1024 * 1024;
/// The least `max_output` may be: room for the notice and some output.
const MIN_OUTPUT: u32 = 1024;
/// How much of stderr a failed Linux script's error quotes.
const STDERR_TAIL: usize = 2048;
/// RouterOS reads options after `+` in the login name: no colours (`c`), no terminal
/// auto-detection (`e`), dumb terminal (`t`), 1024 columns (`1024w`).
const ROUTEROS_LOGIN_SUFFIX: &str = "+cet1024w";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Platform {
    RouterOs,
    Linux,
}

impl Platform {
    /// The site's `ssh.platform` option.
    pub fn named(name: &str) -> Option<Platform> {
        match name {
            "routeros" => Some(Platform::RouterOs),
            "linux" => Some(Platform::Linux),
            _ => None,
        }
    }

    /// RouterOS identifies itself as `SSH-2.0-ROSSSH`; anything else is taken for Linux.
    pub fn from_version(version: &str) -> Platform {
        if version.trim().starts_with("SSH-2.0-ROSSSH") {
            Platform::RouterOs
        } else {
            Platform::Linux
        }
    }

    /// The name to log in with.
    pub fn login_name(self, username: &str) -> String {
        match self {
            Platform::RouterOs if !username.contains('+') => {
                format!("{username}{ROUTEROS_LOGIN_SUFFIX}")
            }
            _ => username.to_owned(),
        }
    }
}

/// Reads the server's identification line without logging in, to tell the platform.
fn read_version(target: &Target, port: u16) -> Result<String, TransportError> {
    let timeout = target.connect_timeout_or(CONNECT_TIMEOUT);
    let mut conn = Connection::connect_plain(&target.address, port, Some(timeout))
        .map_err(|e| unreachable(TransportError::from(e)))?;
    conn.set_read_timeout(Some(timeout));
    let mut seen = Vec::new();
    let mut chunk = [0u8; 256];
    // Lines before the version line are allowed (RFC 4253 4.2); give up after a few KiB.
    while seen.len() < 8 * 1024 {
        let n = conn.read(&mut chunk)?;
        if n == 0 {
            break;
        }
        seen.extend_from_slice(&chunk[..n]);
        if let Some(line) = version_line(&seen) {
            conn.close();
            return Ok(line);
        }
    }
    conn.close();
    Err(TransportError::Protocol(format!(
        "{}:{port} sent no SSH version line",
        target.address
    )))
}

/// The `SSH-` line among the complete lines of `seen`.
fn version_line(seen: &[u8]) -> Option<String> {
    let text = String::from_utf8_lossy(seen);
    // The last piece has no line end yet: it may still be arriving.
    let complete = text.rsplit_once('\n').map(|(lines, _)| lines)?;
    complete
        .split('\n')
        .find(|line| line.starts_with("SSH-"))
        .map(|line| line.trim_end_matches('\r').to_owned())
}

/// A failure to reach the site, before anything was sent: reported as unreachable, so
/// the job may be tried again.
fn unreachable(e: TransportError) -> TransportError {
    match e {
        TransportError::Timeout(m) | TransportError::Reset(m) => {
            TransportError::Refused(format!("unreachable ({m})"))
        }
        other => other,
    }
}

/// An error of `connect`: nothing has been sent to the site yet. Key exchange and
/// host-key failures are reported as the secure channel failing (`tls`), which the
/// engine counts as not sent, like a refused login.
fn connect_error(e: SshError) -> TransportError {
    let message = e.message();
    match e {
        SshError::Timeout(_) | SshError::Closed(_) | SshError::Dns(_) | SshError::Refused(_) => {
            TransportError::Refused(message)
        }
        SshError::AlgorithmNegotiation(_)
        | SshError::Protocol(_)
        | SshError::HostKeyChanged(_)
        | SshError::HostKeyUnknown(_) => TransportError::Tls(message),
        other => TransportError::from(other),
    }
}

/// An open session and the platform it reached.
struct Opened {
    session: Session,
    platform: Platform,
    reply_timeout_ms: u32,
}

/// The plugin's `max_output`, within its bounds; unset or unreadable means the default.
fn max_output() -> u32 {
    config::get("max_output")
        .and_then(|v| v.trim().parse::<u32>().ok())
        .map_or(DEFAULT_MAX_OUTPUT, |v| v.clamp(MIN_OUTPUT, MAX_OUTPUT))
}

/// `text` as a job shows it: when the host dropped output beyond `cap`, cut back so that
/// the text and a notice saying so fit in `cap`, and end with the notice.
fn noting_truncation(mut text: String, truncated: bool, cap: u32) -> String {
    if !truncated {
        return text;
    }
    let notice = format!("\n[output truncated: the site sent more than {cap} bytes]\n");
    let mut keep = (cap as usize).saturating_sub(notice.len()).min(text.len());
    while !text.is_char_boundary(keep) {
        keep -= 1;
    }
    text.truncate(keep);
    text.push_str(&notice);
    text
}

fn open(target: &Target) -> Result<Opened, TransportError> {
    let port = target.port_or(SSH_PORT);
    let platform = match target.option("ssh.platform").and_then(Platform::named) {
        Some(p) => p,
        None => Platform::from_version(&read_version(target, port)?),
    };
    let auth = match target.option("ssh.auth") {
        Some("key") => Auth::SiteKey,
        _ => Auth::Password(target.password.clone()),
    };
    let options = ConnectOptions {
        username: platform.login_name(&target.username),
        auth,
        // The engine holds the site's keys and enforces them; the plugin adds none.
        host_keys: HostKeyPolicy {
            pinned: Vec::new(),
            accept_first: false,
        },
        timeout_ms: millis(target.connect_timeout_or(CONNECT_TIMEOUT)),
    };
    let session = Session::connect(&target.address, port, &options).map_err(connect_error)?;
    Ok(Opened {
        session,
        platform,
        reply_timeout_ms: millis(target.reply_timeout_or(REPLY_TIMEOUT)),
    })
}

fn millis(d: Duration) -> u32 {
    u32::try_from(d.as_millis()).unwrap_or(u32::MAX)
}

impl Opened {
    fn exec(
        &self,
        command: &str,
        stdin: Option<&[u8]>,
        cap: u32,
    ) -> Result<ExecOutput, TransportError> {
        self.session
            .exec(command, stdin, self.reply_timeout_ms, cap)
            .map_err(TransportError::from)
    }

    /// Runs a command whose whole output is needed (a backup): output beyond the cap
    /// fails it.
    fn exec_whole(&self, command: &str, what: &str) -> Result<ExecOutput, TransportError> {
        let out = self.exec(command, None, MAX_OUTPUT)?;
        if out.truncated {
            return Err(TransportError::Script(format!(
                "{what} is larger than {MAX_OUTPUT} bytes; it was not kept in part"
            )));
        }
        Ok(out)
    }

    fn close(self) {
        self.session.close();
    }
}

/// Runs `work` on a fresh session and closes it whatever happens.
fn with_session<T>(
    target: &Target,
    work: impl FnOnce(&Opened) -> Result<T, TransportError>,
) -> Result<T, TransportError> {
    let opened = open(target)?;
    let result = work(&opened);
    opened.close();
    result
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// The last `max` bytes of `text`, on a character boundary.
fn tail(text: &str, max: usize) -> &str {
    let text = text.trim_end();
    if text.len() <= max {
        return text;
    }
    let mut start = text.len() - max;
    while !text.is_char_boundary(start) {
        start += 1;
    }
    &text[start..]
}

/// A command that ended badly: killed by a signal, or a non-zero exit status. The
/// message quotes the tail of stderr.
fn failed(out: &ExecOutput, what: &str) -> Option<TransportError> {
    let stderr = text(&out.stderr);
    let said = tail(&stderr, STDERR_TAIL);
    let with_stderr = |head: String| {
        if said.is_empty() {
            head
        } else {
            format!("{head}: {said}")
        }
    };
    if let Some(signal) = &out.exit_signal {
        return Some(TransportError::Script(with_stderr(format!(
            "{what} was ended by signal {signal}"
        ))));
    }
    match out.exit_status {
        Some(0) => None,
        Some(status) => Some(TransportError::Script(with_stderr(format!(
            "{what} exited with status {status}"
        )))),
        None => Some(TransportError::Script(with_stderr(format!(
            "{what} ended without an exit status"
        )))),
    }
}

/// A RouterOS command's output, or the error it reports (whatever the exit status).
fn routeros_output(out: &ExecOutput) -> Result<String, TransportError> {
    let mut output = text(&out.stdout);
    let stderr = text(&out.stderr);
    if !stderr.trim().is_empty() {
        output.push_str(&stderr);
    }
    if let Some(error) = script_error(&output) {
        return Err(TransportError::Script(error));
    }
    if let Some(status) = out.exit_status
        && status != 0
    {
        return Err(TransportError::Script(format!(
            "the script exited with status {status}: {}",
            output.trim()
        )));
    }
    Ok(output)
}

/// `name: value` lines of RouterOS `print` output.
fn print_field(output: &str, name: &str) -> Option<String> {
    output.lines().find_map(|line| {
        let (key, value) = line.trim().split_once(':')?;
        (key.trim() == name).then(|| value.trim().to_owned())
    })
}

/// A site that does not answer is offline, not an error of the probe.
fn offline(e: TransportError) -> Result<ProbeResult, TransportError> {
    match e {
        TransportError::Refused(m) | TransportError::Timeout(m) | TransportError::Reset(m) => {
            Ok(ProbeResult {
                online: false,
                identity: None,
                version: None,
                board: None,
                uptime: None,
                detail: Some(m),
            })
        }
        other => Err(other),
    }
}

struct Ssh;

impl Transport for Ssh {
    fn describe() -> PluginInfo {
        PluginInfo::new("ssh", env!("CARGO_PKG_VERSION"), PluginKind::Transport)
            .with_description(
                "Runs scripts over SSH on RouterOS and Linux hosts; the engine does the SSH",
            )
            .with_config_key(ConfigKey::optional(
                "backup_command",
                "Linux: the command whose output is a site's backup (none by default)",
            ))
            .with_config_key(ConfigKey::optional(
                "max_output",
                "Bytes of a script's stdout (and of its stderr) kept; more is cut with a \
                 notice (default 262144, at most 4194304)",
            ))
    }

    fn run_command(target: Target, _words: Vec<String>) -> Result<CommandReply, TransportError> {
        Err(TransportError::Unsupported(format!(
            "site {}: API commands need the routeros-api transport; over SSH, run a script",
            target.site_id
        )))
    }

    fn run_script(target: Target, script: String) -> Result<String, TransportError> {
        let cap = max_output();
        with_session(&target, |s| {
            let (output, truncated) = match s.platform {
                // One exec: RouterOS runs the whole text as one script.
                Platform::RouterOs => {
                    let out = s.exec(&script, None, cap)?;
                    (routeros_output(&out)?, out.truncated)
                }
                Platform::Linux => {
                    let out = s.exec("sh -s", Some(script.as_bytes()), cap)?;
                    if let Some(error) = failed(&out, "the script") {
                        return Err(error);
                    }
                    (text(&out.stdout), out.truncated)
                }
            };
            if truncated {
                log::warn!(
                    "site {}: the script's output was cut at {cap} bytes (max_output)",
                    target.site_id
                );
            }
            Ok(noting_truncation(output, truncated, cap))
        })
    }

    fn backup(target: Target, save_as: Option<String>) -> Result<BackupResult, TransportError> {
        if save_as.is_some() {
            return Err(TransportError::Unsupported(
                "the SSH transport takes text backups only; a binary backup file is not saved"
                    .into(),
            ));
        }
        let command = config::get("backup_command");
        with_session(&target, |s| match s.platform {
            Platform::RouterOs => Ok(BackupResult {
                config: routeros_output(&s.exec_whole("/export", "the export")?)?,
                saved_file: None,
            }),
            Platform::Linux => {
                let Some(command) = command.as_deref().filter(|c| !c.trim().is_empty()) else {
                    return Err(TransportError::Unsupported(
                        "no backup for Linux sites: the ssh plugin's `backup_command` is not set"
                            .into(),
                    ));
                };
                let out = s.exec_whole(command, "the backup command's output")?;
                if let Some(error) = failed(&out, "the backup command") {
                    return Err(error);
                }
                Ok(BackupResult {
                    config: text(&out.stdout),
                    saved_file: None,
                })
            }
        })
    }

    fn probe(target: Target) -> Result<ProbeResult, TransportError> {
        let opened = match open(&target) {
            Ok(opened) => opened,
            Err(e) => return offline(e),
        };
        let result = (|| match opened.platform {
            Platform::RouterOs => {
                let identity = routeros_output(&opened.exec(
                    "/system identity print",
                    None,
                    MIN_OUTPUT * 64,
                )?)?;
                let resource = routeros_output(&opened.exec(
                    "/system resource print",
                    None,
                    MIN_OUTPUT * 64,
                )?)?;
                Ok(ProbeResult {
                    online: true,
                    identity: print_field(&identity, "name"),
                    version: print_field(&resource, "version"),
                    board: print_field(&resource, "board-name"),
                    uptime: print_field(&resource, "uptime"),
                    detail: None,
                })
            }
            Platform::Linux => {
                let system = opened.exec("uname -srm", None, MIN_OUTPUT * 64)?;
                let name = opened.exec("uname -n", None, MIN_OUTPUT * 64)?;
                let line = |out: &ExecOutput| {
                    let t = text(&out.stdout).trim().to_owned();
                    (!t.is_empty()).then_some(t)
                };
                Ok(ProbeResult {
                    online: true,
                    identity: line(&name),
                    version: line(&system),
                    board: None,
                    uptime: None,
                    detail: None,
                })
            }
        })();
        opened.close();
        result
    }
}

yardmaster_plugin_sdk::export_transport!(Ssh, default_port = SSH_PORT);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_platform_is_told_by_the_version_line() {
        assert_eq!(Platform::from_version("SSH-2.0-ROSSSH"), Platform::RouterOs);
        assert_eq!(
            Platform::from_version("SSH-2.0-OpenSSH_9.2p1 Debian-2+deb12u3"),
            Platform::Linux
        );
    }

    #[test]
    fn the_version_line_is_read_once_it_is_whole() {
        assert_eq!(version_line(b"SSH-2.0-ROSS"), None);
        assert_eq!(
            version_line(b"SSH-2.0-OpenSSH_9.2p1 Debian\r\n").as_deref(),
            Some("SSH-2.0-OpenSSH_9.2p1 Debian")
        );
        assert_eq!(
            version_line(b"banner\r\nSSH-2.0-ROSSSH\r\n").as_deref(),
            Some("SSH-2.0-ROSSSH")
        );
    }

    #[test]
    fn routeros_logins_get_the_console_options() {
        assert_eq!(Platform::RouterOs.login_name("admin"), "admin+cet1024w");
        // An operator who chose options keeps them.
        assert_eq!(Platform::RouterOs.login_name("admin+ct"), "admin+ct");
        assert_eq!(Platform::Linux.login_name("root"), "root");
    }

    fn output(stdout: &str, stderr: &str, status: Option<u32>) -> ExecOutput {
        ExecOutput {
            stdout: stdout.as_bytes().to_vec(),
            stderr: stderr.as_bytes().to_vec(),
            exit_status: status,
            exit_signal: None,
            truncated: false,
        }
    }

    #[test]
    fn a_routeros_error_fails_even_with_status_zero() {
        let err = routeros_output(&output(
            "bad command name frobnicate (line 1 column 1)\r\n",
            "",
            Some(0),
        ))
        .expect_err("an error");
        assert!(matches!(err, TransportError::Script(m) if m.contains("bad command name")));
        assert_eq!(
            routeros_output(&output("hello\r\n", "", Some(0))).expect("ok"),
            "hello\r\n"
        );
    }

    #[test]
    fn a_linux_failure_names_the_status_and_the_stderr_tail() {
        let err =
            failed(&output("", "first\nlast words\n", Some(3)), "the script").expect("failed");
        assert_eq!(
            err,
            TransportError::Script("the script exited with status 3: first\nlast words".into())
        );
        assert!(failed(&output("ok", "", Some(0)), "the script").is_none());
        let long = "x".repeat(5000);
        let TransportError::Script(m) =
            failed(&output("", &long, Some(1)), "the script").expect("failed")
        else {
            panic!("a script error")
        };
        assert!(m.len() < 2100, "{}", m.len());
    }

    #[test]
    fn cut_output_ends_with_a_notice_within_the_cap() {
        assert_eq!(noting_truncation("whole".into(), false, 1024), "whole");
        let cut = noting_truncation("é".repeat(2000), true, 1024);
        assert!(cut.len() <= 1024, "{}", cut.len());
        assert!(cut.starts_with("éé"));
        assert!(cut.ends_with("[output truncated: the site sent more than 1024 bytes]\n"));
        let short = noting_truncation("abc".into(), true, 1024);
        assert!(short.starts_with("abc\n[output truncated"), "{short}");
    }

    #[test]
    fn print_fields_are_read() {
        let resource = "                   uptime: 1w2d\r\n                  version: 6.49.10 (long-term)\r\n               board-name: hEX\r\n";
        assert_eq!(
            print_field(resource, "version").as_deref(),
            Some("6.49.10 (long-term)")
        );
        assert_eq!(print_field(resource, "board-name").as_deref(), Some("hEX"));
        assert_eq!(
            print_field("  name: core-1\r\n", "name").as_deref(),
            Some("core-1")
        );
    }
}
