//! The POST through wasi:http (the engine does the HTTPS and holds the plugin to its
//! allow-list), and waiting between attempts.

use wasi::http::outgoing_handler;
use wasi::http::types::{
    ErrorCode, Fields, Method, OutgoingBody, OutgoingRequest, RequestOptions, Scheme,
};
use yardmaster_plugin_sdk::generator::GenerateError;

/// Most bytes of an answer read.
const MAX_ANSWER: usize = 4 * 1024 * 1024;
const CHUNK: usize = 4096;

/// An HTTP answer: status, headers (names in lower case) and body.
pub(crate) struct Answer {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

pub(crate) fn post_json(
    url: &str,
    api_key: Option<&str>,
    body: &[u8],
    timeout_ms: u64,
) -> Result<Answer, GenerateError> {
    let (scheme, rest) = if let Some(r) = url.strip_prefix("https://") {
        (Scheme::Https, r)
    } else if let Some(r) = url.strip_prefix("http://") {
        (Scheme::Http, r)
    } else {
        return Err(GenerateError::Invalid(format!(
            "base_url {url} is not http(s)"
        )));
    };
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let invalid = |what: &str| GenerateError::Other(format!("cannot set the request's {what}"));
    let mut entries: Vec<(String, Vec<u8>)> = vec![
        ("content-type".into(), b"application/json".to_vec()),
        ("accept".into(), b"application/json".to_vec()),
        ("content-length".into(), body.len().to_string().into_bytes()),
        (
            "user-agent".into(),
            format!("yardmaster-openai/{}", env!("CARGO_PKG_VERSION")).into_bytes(),
        ),
    ];
    if let Some(key) = api_key {
        entries.push(("authorization".into(), format!("Bearer {key}").into_bytes()));
    }
    let headers = Fields::from_list(&entries)
        .map_err(|e| GenerateError::Other(format!("a header is not valid: {e:?}")))?;
    let request = OutgoingRequest::new(headers);
    request
        .set_method(&Method::Post)
        .map_err(|()| invalid("method"))?;
    request
        .set_scheme(Some(&scheme))
        .map_err(|()| invalid("scheme"))?;
    request
        .set_authority(Some(authority))
        .map_err(|()| invalid("host"))?;
    request
        .set_path_with_query(Some(path))
        .map_err(|()| invalid("path"))?;
    let options = RequestOptions::new();
    let ns = timeout_ms * 1_000_000;
    let _ = options.set_connect_timeout(Some(ns));
    let _ = options.set_first_byte_timeout(Some(ns));
    let _ = options.set_between_bytes_timeout(Some(ns));
    let outgoing = request.body().map_err(|()| invalid("body"))?;
    let pending =
        outgoing_handler::handle(request, Some(options)).map_err(|c| error(c, url, timeout_ms))?;
    {
        let stream = outgoing.write().map_err(|()| invalid("body stream"))?;
        for chunk in body.chunks(CHUNK) {
            stream
                .blocking_write_and_flush(chunk)
                .map_err(|e| GenerateError::Unavailable(format!("{url}: sending failed: {e:?}")))?;
        }
    }
    OutgoingBody::finish(outgoing, None).map_err(|c| error(c, url, timeout_ms))?;
    pending.subscribe().block();
    let response = match pending.get() {
        Some(Ok(Ok(r))) => r,
        Some(Ok(Err(code))) => return Err(error(code, url, timeout_ms)),
        _ => return Err(GenerateError::Unavailable(format!("{url}: no response"))),
    };
    let status = response.status();
    let headers = response
        .headers()
        .entries()
        .into_iter()
        .map(|(k, v)| {
            (
                k.to_ascii_lowercase(),
                String::from_utf8_lossy(&v).into_owned(),
            )
        })
        .collect();
    let mut bytes = Vec::new();
    let incoming = response
        .consume()
        .map_err(|()| GenerateError::Unavailable(format!("{url}: the answer could not be read")))?;
    let stream = incoming
        .stream()
        .map_err(|()| GenerateError::Unavailable(format!("{url}: the answer could not be read")))?;
    loop {
        match stream.blocking_read(64 * 1024) {
            Ok(chunk) => {
                bytes.extend_from_slice(&chunk);
                if bytes.len() > MAX_ANSWER {
                    return Err(GenerateError::Other(format!(
                        "{url}: the answer is larger than {MAX_ANSWER} bytes"
                    )));
                }
            }
            Err(wasi::io::streams::StreamError::Closed) => break,
            Err(e) => {
                return Err(error_stream(url, timeout_ms, &format!("{e:?}")));
            }
        }
    }
    Ok(Answer {
        status,
        headers,
        body: String::from_utf8_lossy(&bytes).into_owned(),
    })
}

fn error_stream(url: &str, timeout_ms: u64, what: &str) -> GenerateError {
    if what.contains("Timeout") {
        GenerateError::Unavailable(format!("{url}: no answer within {timeout_ms} ms (timeout)"))
    } else {
        GenerateError::Unavailable(format!("{url}: reading the answer failed: {what}"))
    }
}

fn error(code: ErrorCode, url: &str, timeout_ms: u64) -> GenerateError {
    match code {
        ErrorCode::HttpRequestDenied | ErrorCode::DestinationIpProhibited => {
            GenerateError::Denied(format!(
                "{url}: the plugin's allow-list does not grant this host ([plugins.openai] allow)"
            ))
        }
        ErrorCode::ConnectionRefused => GenerateError::Unavailable(format!(
            "{url}: connection refused; is the model server running?"
        )),
        ErrorCode::ConnectionTimeout
        | ErrorCode::ConnectionReadTimeout
        | ErrorCode::ConnectionWriteTimeout
        | ErrorCode::HttpResponseTimeout => {
            GenerateError::Unavailable(format!("{url}: no answer within {timeout_ms} ms (timeout)"))
        }
        other => GenerateError::Unavailable(format!("{url}: {other:?}")),
    }
}

/// Waits `ms` milliseconds.
pub(crate) fn sleep(ms: u64) {
    wasi::clocks::monotonic_clock::subscribe_duration(ms * 1_000_000).block();
}

/// A random number in `0..n`.
pub(crate) fn random_below(n: u64) -> u64 {
    if n == 0 {
        return 0;
    }
    wasi::random::random::get_random_u64() % n
}
