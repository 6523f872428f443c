//! GET requests through wasi:http: the engine opens the connection, does the HTTPS and
//! checks the plugin's allow-list.

use wasi::http::outgoing_handler;
use wasi::http::types::{ErrorCode, Fields, Method, OutgoingRequest, RequestOptions, Scheme};
use yardmaster_plugin_sdk::script_source::SourceError;

use crate::{Fetch, Reply};

/// wasi:http GETs with the plugin's headers and limits.
pub(crate) struct WasiHttp {
    pub token: Option<String>,
    pub user_agent: String,
    pub timeout_ms: u64,
}

fn split(url: &str) -> Result<(Scheme, &str, &str), SourceError> {
    let (scheme, rest) = if let Some(rest) = url.strip_prefix("https://") {
        (Scheme::Https, rest)
    } else if let Some(rest) = url.strip_prefix("http://") {
        (Scheme::Http, rest)
    } else {
        return Err(SourceError::InvalidUrl(format!("{url}: not http(s)")));
    };
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    Ok((scheme, authority, path))
}

impl Fetch for WasiHttp {
    fn get(&self, url: &str, accept: &str, limit: u64) -> Result<Reply, SourceError> {
        let (scheme, authority, path) = split(url)?;
        let invalid = |what: &str| SourceError::Other(format!("cannot set the request's {what}"));
        let mut entries: Vec<(String, Vec<u8>)> = vec![
            ("accept".into(), accept.as_bytes().to_vec()),
            ("user-agent".into(), self.user_agent.as_bytes().to_vec()),
            ("x-github-api-version".into(), b"2022-11-28".to_vec()),
        ];
        if let Some(token) = &self.token {
            entries.push((
                "authorization".into(),
                format!("Bearer {token}").into_bytes(),
            ));
        }
        let headers = Fields::from_list(&entries)
            .map_err(|e| SourceError::Other(format!("a header is not valid: {e:?}")))?;
        let request = OutgoingRequest::new(headers);
        request
            .set_method(&Method::Get)
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
        let timeout_ns = self.timeout_ms * 1_000_000;
        let _ = options.set_connect_timeout(Some(timeout_ns));
        let _ = options.set_first_byte_timeout(Some(timeout_ns));
        let _ = options.set_between_bytes_timeout(Some(timeout_ns));
        let pending =
            outgoing_handler::handle(request, Some(options)).map_err(|code| error(code, url))?;
        pending.subscribe().block();
        let response = match pending.get() {
            Some(Ok(Ok(response))) => response,
            Some(Ok(Err(code))) => return Err(error(code, url)),
            _ => return Err(SourceError::Unavailable(format!("{url}: no response"))),
        };
        let status = response.status();
        let headers: Vec<(String, String)> = response
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
        let mut body = Vec::new();
        let incoming = response
            .consume()
            .map_err(|()| SourceError::Unavailable(format!("{url}: the body could not be read")))?;
        let stream = incoming
            .stream()
            .map_err(|()| SourceError::Unavailable(format!("{url}: the body could not be read")))?;
        loop {
            match stream.blocking_read(64 * 1024) {
                Ok(bytes) => {
                    body.extend_from_slice(&bytes);
                    if body.len() as u64 > limit {
                        return Err(SourceError::TooLarge(format!(
                            "{url}: larger than {limit} bytes"
                        )));
                    }
                }
                Err(wasi::io::streams::StreamError::Closed) => break,
                Err(e) => {
                    return Err(SourceError::Unavailable(format!(
                        "{url}: reading the body failed: {e:?}"
                    )));
                }
            }
        }
        Ok(Reply {
            status,
            headers,
            body,
        })
    }
}

fn error(code: ErrorCode, url: &str) -> SourceError {
    match code {
        ErrorCode::HttpRequestDenied | ErrorCode::DestinationIpProhibited => SourceError::Denied(
            format!("{url}: the plugin's allow-list does not grant this host"),
        ),
        ErrorCode::ConnectionRefused => {
            SourceError::Unavailable(format!("{url}: connection refused"))
        }
        ErrorCode::ConnectionTimeout
        | ErrorCode::ConnectionReadTimeout
        | ErrorCode::ConnectionWriteTimeout
        | ErrorCode::HttpResponseTimeout => SourceError::Unavailable(format!("{url}: timed out")),
        ErrorCode::TlsCertificateError => SourceError::Unavailable(format!(
            "{url}: the server's certificate does not verify against the engine's trusted roots"
        )),
        other => SourceError::Unavailable(format!("{url}: {other:?}")),
    }
}
