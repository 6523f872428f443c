//! The POST itself, through the SDK's wasi:http client: the engine opens the
//! connection, does HTTPS and checks the allow-list.

use yardmaster_plugin_sdk::http::{self, HttpError, Method, Request};
use yardmaster_plugin_sdk::notifier::NotifyError;

use crate::request::Prepared;

/// The most of a response body kept, for the delivery log.
const MAX_RESPONSE: u64 = 4096;

/// Sends the request and returns the status and the start of the response body.
pub(crate) fn post(prepared: &Prepared, user_agent: &str) -> Result<(u16, Vec<u8>), NotifyError> {
    let url = http::Url {
        https: prepared.url.https,
        authority: prepared.url.authority.clone(),
        path_and_query: prepared.url.path_and_query.clone(),
    };
    let request = prepared
        .headers
        .iter()
        .fold(Request::new(Method::Post, url), |request, (name, value)| {
            request.header(name, value)
        })
        .header("user-agent", user_agent)
        .body(prepared.body.clone())
        .timeout_ms(u64::from(prepared.timeout_ms));
    let response = request
        .send_keeping_start(MAX_RESPONSE)
        .map_err(|e| error(e, &prepared.url.redacted()))?;
    Ok((response.status, response.body))
}

/// A wasi:http error as the notifier contract says it: refused by the allow-list,
/// worth retrying, or not.
fn error(e: HttpError, url: &str) -> NotifyError {
    match e {
        HttpError::Invalid(what) => NotifyError::Invalid(what),
        HttpError::InvalidUrl(_) | HttpError::Malformed(_) => {
            NotifyError::Invalid(format!("{url}: {e}"))
        }
        HttpError::Denied => NotifyError::Denied(format!(
            "{url}: the plugin's allow-list does not grant this host"
        )),
        // The engine refused every address the host resolved to (a name of a loopback,
        // private or metadata address): retrying cannot help.
        HttpError::Prohibited => NotifyError::Denied(format!(
            "{url}: the host resolves to no public address; internal receivers are reached \
             only when the operator lists them (--allow-http-notify)"
        )),
        HttpError::Timeout => {
            NotifyError::Unavailable(format!("{url}: timed out waiting for the receiver"))
        }
        HttpError::Certificate => NotifyError::Unavailable(format!(
            "{url}: TLS failed: the receiver's certificate does not verify against the \
             engine's trusted roots (the public ones and [tls] ca_file)"
        )),
        HttpError::TlsAlert(alert) => NotifyError::Unavailable(format!(
            "{url}: TLS failed: the receiver sent the alert {}",
            alert.as_deref().unwrap_or("(unnamed)")
        )),
        other => NotifyError::Unavailable(format!("{url}: {other}")),
    }
}
