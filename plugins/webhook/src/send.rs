//! The POST itself, through wasi:http: the engine opens the connection, does HTTPS and
//! checks the allow-list.

use wasi::http::outgoing_handler;
use wasi::http::types::{
    ErrorCode, Fields, Method, OutgoingBody, OutgoingRequest, RequestOptions, Scheme,
};
use yardmaster_plugin_sdk::notifier::NotifyError;

use crate::request::Prepared;

/// The most of a response body kept, for the delivery log.
const MAX_RESPONSE: u64 = 4096;
/// wasi:io streams take at most this much per blocking write.
const CHUNK: usize = 4096;

/// Sends the request and returns the status and the start of the response body.
pub(crate) fn post(prepared: &Prepared, user_agent: &str) -> Result<(u16, Vec<u8>), NotifyError> {
    let invalid = |what: &str| NotifyError::Invalid(format!("cannot set the request's {what}"));
    let mut entries: Vec<(String, Vec<u8>)> = prepared
        .headers
        .iter()
        .map(|(k, v)| (k.clone(), v.as_bytes().to_vec()))
        .collect();
    entries.push(("user-agent".into(), user_agent.as_bytes().to_vec()));
    entries.push((
        "content-length".into(),
        prepared.body.len().to_string().into_bytes(),
    ));
    let headers = Fields::from_list(&entries)
        .map_err(|e| NotifyError::Invalid(format!("a header is not valid: {e:?}")))?;
    let request = OutgoingRequest::new(headers);
    request
        .set_method(&Method::Post)
        .map_err(|()| invalid("method"))?;
    let scheme = if prepared.url.https {
        Scheme::Https
    } else {
        Scheme::Http
    };
    request
        .set_scheme(Some(&scheme))
        .map_err(|()| invalid("scheme"))?;
    request
        .set_authority(Some(&prepared.url.authority))
        .map_err(|()| invalid("host"))?;
    request
        .set_path_with_query(Some(&prepared.url.path_and_query))
        .map_err(|()| invalid("path"))?;

    let options = RequestOptions::new();
    let timeout_ns = u64::from(prepared.timeout_ms) * 1_000_000;
    // A host that does not support a timeout still bounds the call by its deadline.
    let _ = options.set_connect_timeout(Some(timeout_ns));
    let _ = options.set_first_byte_timeout(Some(timeout_ns));
    let _ = options.set_between_bytes_timeout(Some(timeout_ns));

    let body = request.body().map_err(|()| invalid("body"))?;
    let pending = outgoing_handler::handle(request, Some(options))
        .map_err(|code| error(code, &prepared.url.redacted()))?;
    {
        let stream = body.write().map_err(|()| invalid("body stream"))?;
        for chunk in prepared.body.chunks(CHUNK) {
            stream.blocking_write_and_flush(chunk).map_err(|e| {
                NotifyError::Unavailable(format!(
                    "sending the body to {} failed: {e:?}",
                    prepared.url.redacted()
                ))
            })?;
        }
    }
    OutgoingBody::finish(body, None).map_err(|code| error(code, &prepared.url.redacted()))?;

    pending.subscribe().block();
    let response = match pending.get() {
        Some(Ok(Ok(response))) => response,
        Some(Ok(Err(code))) => return Err(error(code, &prepared.url.redacted())),
        _ => {
            return Err(NotifyError::Unavailable(format!(
                "{} sent no response",
                prepared.url.redacted()
            )));
        }
    };
    let status = response.status();
    let mut excerpt = Vec::new();
    if let Ok(incoming) = response.consume()
        && let Ok(stream) = incoming.stream()
    {
        while (excerpt.len() as u64) < MAX_RESPONSE {
            match stream.blocking_read(MAX_RESPONSE - excerpt.len() as u64) {
                Ok(bytes) if !bytes.is_empty() => excerpt.extend_from_slice(&bytes),
                _ => break,
            }
        }
    }
    Ok((status, excerpt))
}

/// A wasi:http error as the notifier contract says it: refused by the allow-list,
/// worth retrying, or not.
fn error(code: ErrorCode, url: &str) -> NotifyError {
    match code {
        ErrorCode::HttpRequestDenied => NotifyError::Denied(format!(
            "{url}: the plugin's allow-list does not grant this host"
        )),
        // The engine refused every address the host resolved to (a name of a loopback,
        // private or metadata address): retrying cannot help.
        ErrorCode::DestinationIpProhibited => NotifyError::Denied(format!(
            "{url}: the host resolves to no public address; internal receivers are reached \
             only when the operator lists them (--allow-http-notify)"
        )),
        ErrorCode::HttpRequestUriInvalid | ErrorCode::HttpRequestMethodInvalid => {
            NotifyError::Invalid(format!("{url}: {code:?}"))
        }
        ErrorCode::ConnectionRefused => {
            NotifyError::Unavailable(format!("{url}: connection refused"))
        }
        ErrorCode::ConnectionTimeout
        | ErrorCode::ConnectionReadTimeout
        | ErrorCode::ConnectionWriteTimeout
        | ErrorCode::HttpResponseTimeout => {
            NotifyError::Unavailable(format!("{url}: timed out waiting for the receiver"))
        }
        ErrorCode::TlsCertificateError => NotifyError::Unavailable(format!(
            "{url}: TLS failed: the receiver's certificate does not verify against the \
             engine's trusted roots (the public ones and [tls] ca_file)"
        )),
        ErrorCode::TlsAlertReceived(alert) => NotifyError::Unavailable(format!(
            "{url}: TLS failed: the receiver sent the alert {}",
            alert.alert_message.as_deref().unwrap_or("(unnamed)")
        )),
        ErrorCode::TlsProtocolError => {
            NotifyError::Unavailable(format!("{url}: TLS failed: a protocol error"))
        }
        other => NotifyError::Unavailable(format!("{url}: {other:?}")),
    }
}
