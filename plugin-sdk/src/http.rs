//! HTTP requests through wasi:http: the engine opens the connection, does the HTTPS with
//! its trusted roots and holds the plugin to the allow-list the operator granted it.
//!
//! A [`Request`] is built from a URL ([`Request::get`], [`Request::post`]) or from a
//! [`Url`] already split and checked by the plugin ([`Request::new`]), given headers
//! and one timeout, and sent. [`Request::send`] reads the whole response body up to a
//! cap and fails with [`HttpError::TooLarge`] beyond it; [`Request::send_keeping_start`]
//! keeps only the start of the body (for a log line) and never fails for its length.
//!
//! ```no_run
//! use yardmaster_plugin_sdk::http::{HttpError, Request};
//!
//! # fn main() -> Result<(), HttpError> {
//! let response = Request::get("https://api.example.com/v1/items")?
//!     .header("accept", "application/json")
//!     .timeout_ms(15_000)
//!     .send(1024 * 1024)?;
//! if response.status == 200 {
//!     let _items = String::from_utf8_lossy(&response.body);
//! }
//! # Ok(())
//! # }
//! ```
//!
//! Every failure is one [`HttpError`] kind (denied by the allow-list, refused, timed
//! out, certificate, too large, ...), so a plugin maps it onto its own error type in
//! one `match`, with its own wording.
//!
//! Outside the engine (native unit tests) every request fails with
//! [`HttpError::Unavailable`].

// Natively nothing is sent, so what builds and reads a request goes unused there.
#![cfg_attr(not(target_arch = "wasm32"), allow(dead_code))]

use std::fmt;

use wasi::http::types::ErrorCode;

/// wasi:io output streams take at most this much per blocking write.
const WRITE_CHUNK: usize = 4096;
/// The most asked of the host in one read of a response body.
const READ_CHUNK: u64 = 64 * 1024;

/// An absolute `http://` or `https://` URL, split into what wasi:http asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Url {
    pub https: bool,
    /// `host` or `host:port`.
    pub authority: String,
    /// Path and query, starting with `/`.
    pub path_and_query: String,
}

impl Url {
    /// Splits `url` at its scheme and its authority. Only the scheme is checked; the
    /// engine refuses an authority or a path that is not valid when the request is made.
    pub fn parse(url: &str) -> Result<Url, HttpError> {
        let (https, rest) = if let Some(rest) = url.strip_prefix("https://") {
            (true, rest)
        } else if let Some(rest) = url.strip_prefix("http://") {
            (false, rest)
        } else {
            return Err(HttpError::InvalidUrl(url.to_owned()));
        };
        let (authority, path) = match rest.find(['/', '?']) {
            Some(i) => rest.split_at(i),
            None => (rest, "/"),
        };
        let path_and_query = if path.starts_with('?') {
            format!("/{path}")
        } else {
            path.to_owned()
        };
        Ok(Url {
            https,
            authority: authority.to_owned(),
            path_and_query,
        })
    }
}

/// The request methods plugins use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Get,
    Post,
}

/// An HTTP request to be sent through the engine.
#[derive(Debug, Clone)]
pub struct Request {
    method: Method,
    url: Url,
    headers: Vec<(String, Vec<u8>)>,
    body: Option<Vec<u8>>,
    timeout_ms: Option<u64>,
}

impl Request {
    /// A request without a body to an already split URL.
    pub fn new(method: Method, url: Url) -> Self {
        Self {
            method,
            url,
            headers: Vec::new(),
            body: None,
            timeout_ms: None,
        }
    }

    /// A `GET` of `url`.
    pub fn get(url: &str) -> Result<Self, HttpError> {
        Ok(Self::new(Method::Get, Url::parse(url)?))
    }

    /// A `POST` of `body` to `url`.
    pub fn post(url: &str, body: impl Into<Vec<u8>>) -> Result<Self, HttpError> {
        Ok(Self::new(Method::Post, Url::parse(url)?).body(body))
    }

    /// Sends `body` with the request. A `content-length` header is added when the
    /// request is sent, unless one was given.
    pub fn body(mut self, body: impl Into<Vec<u8>>) -> Self {
        self.body = Some(body.into());
        self
    }

    /// Adds a header; names are sent as given (wasi:http compares them without case).
    pub fn header(mut self, name: impl Into<String>, value: impl AsRef<[u8]>) -> Self {
        self.headers.push((name.into(), value.as_ref().to_vec()));
        self
    }

    /// Bounds connecting, waiting for the first byte of the response and each wait
    /// between its bytes. Without it the engine's defaults apply; the call's own
    /// deadline bounds the whole request either way.
    pub fn timeout_ms(mut self, ms: u64) -> Self {
        self.timeout_ms = Some(ms);
        self
    }

    /// The URL the request goes to.
    pub fn url(&self) -> &Url {
        &self.url
    }

    /// Sends the request and reads the whole response body, failing with
    /// [`HttpError::TooLarge`] once it passes `max_body` bytes.
    pub fn send(self, max_body: u64) -> Result<Response, HttpError> {
        imp::send(self, Cap::Whole(max_body))
    }

    /// Sends the request and keeps at most the first `keep` bytes of the response
    /// body; the rest is not read. A failure while reading the body ends it with what
    /// had arrived: this is for a log line, not for data.
    pub fn send_keeping_start(self, keep: u64) -> Result<Response, HttpError> {
        imp::send(self, Cap::Start(keep))
    }

    /// The headers to send: the caller's, and `content-length` for a body.
    fn header_list(&self) -> Vec<(String, Vec<u8>)> {
        let mut headers = self.headers.clone();
        if let Some(body) = &self.body
            && !headers
                .iter()
                .any(|(name, _)| name.eq_ignore_ascii_case("content-length"))
        {
            headers.push((
                "content-length".to_owned(),
                body.len().to_string().into_bytes(),
            ));
        }
        headers
    }
}

/// A response: status, headers (names in lower case) and body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    /// The first value of the header `name` (given in lower case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Why a request failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HttpError {
    /// Not an `http://` or `https://` URL (the URL).
    InvalidUrl(String),
    /// The request could not be built: a header, the method, the host, the path (which).
    Invalid(String),
    /// The engine found the request's URI or method malformed (the wasi:http code).
    Malformed(String),
    /// The plugin's allow-list does not grant the host.
    Denied,
    /// The host resolves only to addresses the engine does not let the plugin reach
    /// (loopback, private, metadata).
    Prohibited,
    /// The server refused the connection.
    Refused,
    /// Connecting, the first byte of the response or a later one took too long.
    Timeout,
    /// The server's certificate does not verify against the engine's trusted roots.
    Certificate,
    /// The TLS peer sent an alert (its message, if it named one).
    TlsAlert(Option<String>),
    /// TLS failed on a protocol error.
    TlsProtocol,
    /// The response body is larger than the cap (the cap, in bytes).
    TooLarge(u64),
    /// Anything else: no response, the body could not be read, another wasi:http code.
    Unavailable(String),
}

impl fmt::Display for HttpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::InvalidUrl(url) => write!(f, "`{url}` is not an http:// or https:// URL"),
            Self::Invalid(what) | Self::Malformed(what) | Self::Unavailable(what) => {
                f.write_str(what)
            }
            Self::Denied => f.write_str("the plugin's allow-list does not grant this host"),
            Self::Prohibited => f.write_str("the host resolves to no address the plugin may reach"),
            Self::Refused => f.write_str("connection refused"),
            Self::Timeout => f.write_str("timed out"),
            Self::Certificate => f.write_str(
                "the server's certificate does not verify against the engine's trusted roots",
            ),
            Self::TlsAlert(alert) => write!(
                f,
                "TLS failed: the server sent the alert {}",
                alert.as_deref().unwrap_or("(unnamed)")
            ),
            Self::TlsProtocol => f.write_str("TLS failed: a protocol error"),
            Self::TooLarge(max) => write!(f, "larger than {max} bytes"),
        }
    }
}

impl std::error::Error for HttpError {}

impl From<ErrorCode> for HttpError {
    fn from(code: ErrorCode) -> Self {
        match code {
            ErrorCode::HttpRequestDenied => Self::Denied,
            ErrorCode::DestinationIpProhibited => Self::Prohibited,
            ErrorCode::HttpRequestUriInvalid | ErrorCode::HttpRequestMethodInvalid => {
                Self::Malformed(format!("{code:?}"))
            }
            ErrorCode::ConnectionRefused => Self::Refused,
            ErrorCode::ConnectionTimeout
            | ErrorCode::ConnectionReadTimeout
            | ErrorCode::ConnectionWriteTimeout
            | ErrorCode::HttpResponseTimeout => Self::Timeout,
            ErrorCode::TlsCertificateError => Self::Certificate,
            ErrorCode::TlsAlertReceived(alert) => Self::TlsAlert(alert.alert_message),
            ErrorCode::TlsProtocolError => Self::TlsProtocol,
            other => Self::Unavailable(format!("{other:?}")),
        }
    }
}

/// How much of a response body is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Cap {
    /// All of it, failing beyond this many bytes.
    Whole(u64),
    /// At most this many bytes from the start; the rest is left unread.
    Start(u64),
}

/// Reads a body with `read(n)`, which returns at most `n` more bytes, `None` at the
/// end, or an error. Never asks for more than one byte past the cap, so a body is
/// buffered up to its cap and no further.
fn read_body(
    mut read: impl FnMut(u64) -> Result<Option<Vec<u8>>, HttpError>,
    cap: Cap,
) -> Result<Vec<u8>, HttpError> {
    let mut body = Vec::new();
    match cap {
        Cap::Whole(max) => loop {
            let want = max
                .saturating_add(1)
                .saturating_sub(len(&body))
                .min(READ_CHUNK);
            match read(want)? {
                None => return Ok(body),
                Some(chunk) => {
                    body.extend_from_slice(&chunk);
                    if len(&body) > max {
                        return Err(HttpError::TooLarge(max));
                    }
                }
            }
        },
        Cap::Start(keep) => {
            while len(&body) < keep {
                match read((keep - len(&body)).min(READ_CHUNK)) {
                    Ok(Some(chunk)) if !chunk.is_empty() => body.extend_from_slice(&chunk),
                    _ => break,
                }
            }
            body.truncate(usize::try_from(keep).unwrap_or(usize::MAX));
            Ok(body)
        }
    }
}

fn len(body: &[u8]) -> u64 {
    u64::try_from(body.len()).unwrap_or(u64::MAX)
}

#[cfg(target_arch = "wasm32")]
mod imp {
    use wasi::http::outgoing_handler;
    use wasi::http::types::{
        Fields, Method as WasiMethod, OutgoingBody, OutgoingRequest, RequestOptions, Scheme,
        http_error_code,
    };
    use wasi::io::streams::{InputStream, StreamError};

    use super::{Cap, HttpError, Method, READ_CHUNK, Request, Response, WRITE_CHUNK, read_body};

    pub(super) fn send(request: Request, cap: Cap) -> Result<Response, HttpError> {
        let invalid = |what: &str| HttpError::Invalid(format!("cannot set the request's {what}"));
        let headers = Fields::from_list(&request.header_list())
            .map_err(|e| HttpError::Invalid(format!("a header is not valid: {e:?}")))?;
        let outgoing = OutgoingRequest::new(headers);
        let method = match request.method {
            Method::Get => WasiMethod::Get,
            Method::Post => WasiMethod::Post,
        };
        outgoing
            .set_method(&method)
            .map_err(|()| invalid("method"))?;
        let scheme = if request.url.https {
            Scheme::Https
        } else {
            Scheme::Http
        };
        outgoing
            .set_scheme(Some(&scheme))
            .map_err(|()| invalid("scheme"))?;
        outgoing
            .set_authority(Some(&request.url.authority))
            .map_err(|()| invalid("host"))?;
        outgoing
            .set_path_with_query(Some(&request.url.path_and_query))
            .map_err(|()| invalid("path"))?;

        let options = RequestOptions::new();
        if let Some(ms) = request.timeout_ms {
            let ns = ms.saturating_mul(1_000_000);
            // A host that does not support a timeout still bounds the call by its deadline.
            let _ = options.set_connect_timeout(Some(ns));
            let _ = options.set_first_byte_timeout(Some(ns));
            let _ = options.set_between_bytes_timeout(Some(ns));
        }

        let body = match &request.body {
            Some(bytes) => Some((outgoing.body().map_err(|()| invalid("body"))?, bytes)),
            None => None,
        };
        let pending = outgoing_handler::handle(outgoing, Some(options))?;
        if let Some((body, bytes)) = body {
            {
                let stream = body.write().map_err(|()| invalid("body stream"))?;
                for chunk in bytes.chunks(WRITE_CHUNK) {
                    stream
                        .blocking_write_and_flush(chunk)
                        .map_err(|e| stream_error(e, "sending the body"))?;
                }
            }
            OutgoingBody::finish(body, None)?;
        }

        pending.subscribe().block();
        let response = match pending.get() {
            Some(Ok(Ok(response))) => response,
            Some(Ok(Err(code))) => return Err(code.into()),
            _ => return Err(HttpError::Unavailable("no response".into())),
        };
        let status = response.status();
        let headers = response
            .headers()
            .entries()
            .into_iter()
            .map(|(name, value)| {
                (
                    name.to_ascii_lowercase(),
                    String::from_utf8_lossy(&value).into_owned(),
                )
            })
            .collect();
        let unreadable = || HttpError::Unavailable("the body could not be read".into());
        let body = match (response.consume(), cap) {
            (Ok(incoming), _) => match (incoming.stream(), cap) {
                (Ok(stream), _) => read_body(|n| read(&stream, n), cap)?,
                (Err(()), Cap::Whole(_)) => return Err(unreadable()),
                (Err(()), Cap::Start(_)) => Vec::new(),
            },
            (Err(()), Cap::Whole(_)) => return Err(unreadable()),
            (Err(()), Cap::Start(_)) => Vec::new(),
        };
        Ok(Response {
            status,
            headers,
            body,
        })
    }

    fn read(stream: &InputStream, n: u64) -> Result<Option<Vec<u8>>, HttpError> {
        match stream.blocking_read(n.min(READ_CHUNK)) {
            Ok(bytes) => Ok(Some(bytes)),
            Err(StreamError::Closed) => Ok(None),
            Err(e) => Err(stream_error(e, "reading the body")),
        }
    }

    /// A stream failure: the wasi:http error behind it when the host names one (a
    /// timeout, say), else the host's description.
    fn stream_error(error: StreamError, doing: &str) -> HttpError {
        match error {
            StreamError::LastOperationFailed(error) => match http_error_code(&error) {
                Some(code) => code.into(),
                None => {
                    HttpError::Unavailable(format!("{doing} failed: {}", error.to_debug_string()))
                }
            },
            StreamError::Closed => {
                HttpError::Unavailable(format!("{doing} failed: the stream was closed"))
            }
        }
    }
}

#[cfg(not(target_arch = "wasm32"))]
mod imp {
    use super::{Cap, HttpError, Request, Response};

    pub(super) fn send(_request: Request, _cap: Cap) -> Result<Response, HttpError> {
        Err(HttpError::Unavailable(
            "wasi:http is only available inside the engine".into(),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use wasi::http::types::TlsAlertReceivedPayload;

    #[test]
    fn urls_split_at_scheme_and_authority() {
        let url = Url::parse("https://api.github.com/repos/o/r?ref=main").expect("url");
        assert_eq!(
            url,
            Url {
                https: true,
                authority: "api.github.com".into(),
                path_and_query: "/repos/o/r?ref=main".into(),
            }
        );
        let url = Url::parse("http://127.0.0.1:11434").expect("url");
        assert!(!url.https);
        assert_eq!(url.authority, "127.0.0.1:11434");
        assert_eq!(url.path_and_query, "/");
        let url = Url::parse("http://[::1]:8080?x=1").expect("url");
        assert_eq!(url.authority, "[::1]:8080");
        assert_eq!(url.path_and_query, "/?x=1");
        for bad in ["ftp://host/", "api.github.com/x", "HTTPS//host"] {
            assert_eq!(Url::parse(bad), Err(HttpError::InvalidUrl(bad.into())));
        }
    }

    #[test]
    fn a_body_gets_its_length() {
        let request = Request::post("https://h/x", b"{}".to_vec())
            .expect("url")
            .header("content-type", "application/json");
        assert_eq!(
            request.header_list(),
            vec![
                ("content-type".into(), b"application/json".to_vec()),
                ("content-length".into(), b"2".to_vec()),
            ]
        );
        let given = Request::post("https://h/x", b"{}".to_vec())
            .expect("url")
            .header("Content-Length", "2");
        assert_eq!(given.header_list().len(), 1);
        let get = Request::get("https://h/x")
            .expect("url")
            .header("accept", "*/*");
        assert_eq!(get.header_list(), vec![("accept".into(), b"*/*".to_vec())]);
    }

    #[test]
    fn error_codes_become_kinds() {
        let cases = [
            (ErrorCode::HttpRequestDenied, HttpError::Denied),
            (ErrorCode::DestinationIpProhibited, HttpError::Prohibited),
            (ErrorCode::ConnectionRefused, HttpError::Refused),
            (ErrorCode::ConnectionTimeout, HttpError::Timeout),
            (ErrorCode::ConnectionReadTimeout, HttpError::Timeout),
            (ErrorCode::ConnectionWriteTimeout, HttpError::Timeout),
            (ErrorCode::HttpResponseTimeout, HttpError::Timeout),
            (ErrorCode::TlsCertificateError, HttpError::Certificate),
            (ErrorCode::TlsProtocolError, HttpError::TlsProtocol),
            (
                ErrorCode::HttpRequestUriInvalid,
                HttpError::Malformed("ErrorCode::HttpRequestUriInvalid".into()),
            ),
            (
                ErrorCode::DnsTimeout,
                HttpError::Unavailable("ErrorCode::DnsTimeout".into()),
            ),
        ];
        for (code, kind) in cases {
            assert_eq!(HttpError::from(code), kind);
        }
        let alert = ErrorCode::TlsAlertReceived(TlsAlertReceivedPayload {
            alert_id: Some(42),
            alert_message: Some("bad_certificate".into()),
        });
        assert_eq!(
            HttpError::from(alert).to_string(),
            "TLS failed: the server sent the alert bad_certificate"
        );
    }

    /// A body arriving as `chunks`, each read returning at most what was asked; records
    /// what was asked.
    fn reader(
        chunks: &[&[u8]],
        asked: &mut Vec<u64>,
    ) -> impl FnMut(u64) -> Result<Option<Vec<u8>>, HttpError> {
        let mut pending: Vec<Vec<u8>> = chunks.iter().rev().map(|c| c.to_vec()).collect();
        move |n| {
            asked.push(n);
            let Some(mut chunk) = pending.pop() else {
                return Ok(None);
            };
            let n = usize::try_from(n).unwrap_or(usize::MAX);
            if chunk.len() > n {
                pending.push(chunk.split_off(n));
            }
            Ok(Some(chunk))
        }
    }

    #[test]
    fn a_whole_body_is_read_up_to_its_cap() {
        let mut asked = Vec::new();
        let body = read_body(reader(&[b"hello ", b"world"], &mut asked), Cap::Whole(11));
        assert_eq!(body.as_deref(), Ok(&b"hello world"[..]));
        assert_eq!(asked, [12, 6, 1]);

        let mut asked = Vec::new();
        let body = read_body(reader(&[b"hello ", b"world!"], &mut asked), Cap::Whole(11));
        assert_eq!(body, Err(HttpError::TooLarge(11)));
        // Never more than one byte past the cap is asked for.
        assert_eq!(asked, [12, 6]);

        let mut asked = Vec::new();
        let big = vec![0u8; 200 * 1024];
        let body = read_body(reader(&[&big], &mut asked), Cap::Whole(1 << 20));
        assert_eq!(body.map(|b| b.len()), Ok(big.len()));
        assert!(asked.iter().all(|&n| n <= READ_CHUNK), "{asked:?}");
    }

    #[test]
    fn a_read_failure_fails_a_whole_body() {
        let mut calls = 0;
        let body = read_body(
            |_| {
                calls += 1;
                match calls {
                    1 => Ok(Some(b"start".to_vec())),
                    _ => Err(HttpError::Timeout),
                }
            },
            Cap::Whole(100),
        );
        assert_eq!(body, Err(HttpError::Timeout));
    }

    #[test]
    fn the_start_of_a_body_is_kept_and_the_rest_left() {
        let mut asked = Vec::new();
        let body = read_body(reader(&[b"0123", b"456789"], &mut asked), Cap::Start(6));
        assert_eq!(body.as_deref(), Ok(&b"012345"[..]));
        assert_eq!(asked, [6, 2]);

        let mut asked = Vec::new();
        let body = read_body(reader(&[b"short"], &mut asked), Cap::Start(4096));
        assert_eq!(body.as_deref(), Ok(&b"short"[..]));

        // A failure keeps what had arrived.
        let mut calls = 0;
        let body = read_body(
            |_| {
                calls += 1;
                match calls {
                    1 => Ok(Some(b"part".to_vec())),
                    _ => Err(HttpError::Unavailable("reset".into())),
                }
            },
            Cap::Start(4096),
        );
        assert_eq!(body.as_deref(), Ok(&b"part"[..]));
    }
}
