//! Running one thing on one site through its transport plugin: a RouterOS API command
//! (seed 001's synchronous call, `command` plus `parameters`) or a script (the body of
//! an asynchronous job), with an optional backup first.
//!
//! Every failure comes back as an [`ExecError`] whose `code` says what happened and
//! whether the script may have reached the device, which decides retries upstream.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::plugins::{CallError, Describe, Failure, Transport, transport};

/// One row of a command's reply, with keys as the API documents spell them: `.id`
/// becomes `id`, `mac-address` becomes `mac_address`.
pub type Row = BTreeMap<String, String>;

/// Why running on a site failed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, thiserror::Error)]
#[error("{code}: {message}")]
pub struct ExecError {
    /// `refused`, `timeout`, `reset`, `auth`, `protocol`, `tls`, `denied`, `trap`,
    /// `fatal`, `script`, `unsupported`, `other`, or from the host: `plugin-crashed`,
    /// `plugin-timeout`, `plugin-not-found`, `invalid`.
    pub code: String,
    pub message: String,
    /// The RouterOS trap category, when the device answered `!trap`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub category: Option<u32>,
    /// False only when the failure came before anything was sent to the device, so a
    /// retry cannot run the script twice.
    pub maybe_sent: bool,
}

impl ExecError {
    fn invalid(message: impl Into<String>) -> ExecError {
        ExecError {
            code: "invalid".into(),
            message: message.into(),
            category: None,
            maybe_sent: false,
        }
    }
}

impl From<Failure<transport::TransportError>> for ExecError {
    fn from(failure: Failure<transport::TransportError>) -> ExecError {
        match failure {
            Failure::Plugin { error, denied } => {
                let category = match &error {
                    transport::TransportError::Trap(trap) => trap.category,
                    _ => None,
                };
                // Refused, denied, auth and TLS failures happen before the script is
                // written to the device, as does an operation the plugin cannot do;
                // anything later may have reached it.
                let maybe_sent = !matches!(
                    error,
                    transport::TransportError::Refused(_)
                        | transport::TransportError::Denied(_)
                        | transport::TransportError::Auth(_)
                        | transport::TransportError::Tls(_)
                        | transport::TransportError::Unsupported(_)
                );
                let mut message = error.message().to_string();
                if !denied.is_empty() {
                    message.push_str(&format!(
                        " (refused by the allow-list: {})",
                        denied.join(", ")
                    ));
                }
                ExecError {
                    code: error.code().to_string(),
                    message,
                    category,
                    maybe_sent,
                }
            }
            Failure::Call(call) => {
                let message = call.to_string();
                let code = match &call {
                    CallError::NotFound(_) => "plugin-not-found",
                    CallError::WrongKind { .. } => "plugin-wrong-kind",
                    CallError::Timeout { .. } => "plugin-timeout",
                    CallError::ShuttingDown => "shutting-down",
                    CallError::OutOfMemory { .. }
                    | CallError::Trap { .. }
                    | CallError::Host { .. } => "plugin-crashed",
                };
                let maybe_sent = !matches!(
                    call,
                    CallError::NotFound(_) | CallError::WrongKind { .. } | CallError::ShuttingDown
                );
                ExecError {
                    code: code.into(),
                    message,
                    category: None,
                    maybe_sent,
                }
            }
        }
    }
}

/// Splits seed 001's `parameters` string into API words.
///
/// A word starts at `=`, `?` or `.`; text that does not is part of the previous word's
/// value (`=comment=two words`). `=script=` takes the rest of the string whole, since a
/// script contains anything. Newlines separate words too.
pub fn parse_parameters(parameters: &str) -> Vec<String> {
    let starts_word = |t: &str| t.starts_with('=') || t.starts_with('?') || t.starts_with('.');
    let mut words: Vec<String> = Vec::new();
    let mut rest = parameters.trim();
    let mut separator = "";
    while !rest.is_empty() {
        if rest.starts_with("=script=") || rest.starts_with("=source=") {
            words.push(rest.to_string());
            break;
        }
        let end = rest.find(char::is_whitespace).unwrap_or(rest.len());
        let (token, tail) = rest.split_at(end);
        match words.last_mut() {
            Some(last) if !starts_word(token) => {
                last.push_str(separator);
                last.push_str(token);
            }
            _ => words.push(token.to_string()),
        }
        let next = tail.trim_start();
        separator = &tail[..tail.len() - next.len()];
        rest = next;
    }
    words
}

/// The API's `.id`/`mac-address` keys as the documents spell them.
pub fn row_from(attributes: &[(String, String)]) -> Row {
    attributes
        .iter()
        .map(|(k, v)| (k.trim_start_matches('.').replace('-', "_"), v.clone()))
        .collect()
}

/// Runs one API command (`/ip/arp/print`) with its parameters and returns the rows.
pub async fn command(
    transport: &Transport,
    target: &transport::Target,
    command: &str,
    parameters: &str,
) -> Result<Vec<Row>, ExecError> {
    let command = command.trim();
    if !command.starts_with('/') || command.contains(char::is_whitespace) {
        return Err(ExecError::invalid(format!(
            "command: `{command}` is not an API command word like /ip/arp/print"
        )));
    }
    let mut words = vec![command.to_string()];
    words.extend(parse_parameters(parameters));
    let reply = transport.run_command(target, &words).await?;
    let mut rows: Vec<Row> = reply.rows.iter().map(|r| row_from(r)).collect();
    // `add` answers with `=ret=*N`: give it back as a row, as a client would see it.
    if rows.is_empty() && !reply.done.is_empty() {
        rows.push(row_from(&reply.done));
    }
    Ok(rows)
}

/// What running a script on a site produced.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ScriptRun {
    pub output: String,
    /// The exported configuration taken before the script, when asked for.
    pub backup: Option<String>,
}

/// Runs a script on a site, taking a backup first when `make_backup` is set; a failed
/// backup stops the script from running.
pub async fn script(
    transport: &Transport,
    target: &transport::Target,
    script: &str,
    make_backup: bool,
) -> Result<ScriptRun, ExecError> {
    if script.trim().is_empty() {
        return Err(ExecError::invalid("script: must not be empty"));
    }
    let backup = if make_backup {
        let backup = transport.backup(target, None).await.map_err(|e| {
            let mut error = ExecError::from(e);
            error.message = format!(
                "backup before the script failed, so the script was not run: {}",
                error.message
            );
            // A backup only reads; the script itself was never sent.
            error.maybe_sent = false;
            error
        })?;
        Some(backup.config)
    } else {
        None
    };
    let output = transport.run_script(target, script).await?;
    Ok(ScriptRun { output, backup })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parameters_split_into_words() {
        assert_eq!(parse_parameters(""), Vec::<String>::new());
        assert_eq!(
            parse_parameters("=address=10.0.0.1/30 =interface=ether1"),
            vec!["=address=10.0.0.1/30", "=interface=ether1"]
        );
        assert_eq!(
            parse_parameters(
                "=script=/ip address add address=10.0.0.1/30 interface=ether1 disabled=no"
            ),
            vec!["=script=/ip address add address=10.0.0.1/30 interface=ether1 disabled=no"]
        );
        assert_eq!(
            parse_parameters("?type=ether =.proplist=name,mtu"),
            vec!["?type=ether", "=.proplist=name,mtu"]
        );
        assert_eq!(
            parse_parameters("=comment=two words =disabled=no"),
            vec!["=comment=two words", "=disabled=no"]
        );
    }

    #[test]
    fn keys_follow_the_documents() {
        let row = row_from(&[
            (".id".into(), "*1".into()),
            ("mac-address".into(), "50:32:37:7B:93:49".into()),
            ("DHCP".into(), "false".into()),
        ]);
        assert_eq!(row.get("id").map(String::as_str), Some("*1"));
        assert_eq!(
            row.get("mac_address").map(String::as_str),
            Some("50:32:37:7B:93:49")
        );
        assert_eq!(row.get("DHCP").map(String::as_str), Some("false"));
    }
}
