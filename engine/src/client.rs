//! A small HTTP client for the CLI commands that talk to a running engine
//! (`yardmaster plugin list`, `site`, `script`, `job`, ...).
//!
//! [`Client`] keeps one connection pool and the caller's bearer token; every answer is
//! JSON. An error the API reports as `{type, code, message, doc_url}` comes back as
//! [`ClientError::Api`], which prints as `<message> (<code>, see <doc_url>)`.

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client as HyperClient;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

/// The engine's address when nothing else is said: the default listen address.
pub const DEFAULT_URL: &str = "http://127.0.0.1:8080";

/// What went wrong talking to the engine.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("`{0}` is not a URL like http://127.0.0.1:8080")]
    BadUrl(String),
    #[error("cannot reach the engine at {url}: {message} (is `yardmaster serve` running?)")]
    Unreachable { url: String, message: String },
    /// The engine refused the request with its error body.
    #[error("{message} ({code}, see {doc_url})")]
    Api {
        status: u16,
        code: String,
        message: String,
        doc_url: String,
    },
    /// The engine refused the request without an error body.
    #[error("the engine answered {status}: {message}")]
    Status { status: u16, message: String },
    #[error("the engine's answer is not JSON: {0}")]
    Body(String),
}

impl ClientError {
    /// The HTTP status the engine answered, when it answered.
    pub fn status(&self) -> Option<u16> {
        match self {
            ClientError::Api { status, .. } | ClientError::Status { status, .. } => Some(*status),
            _ => None,
        }
    }
}

/// A client for one engine, as one caller.
#[derive(Clone)]
pub struct Client {
    base: String,
    token: Option<String>,
    http: HyperClient<HttpConnector, Full<Bytes>>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("base", &self.base)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

impl Client {
    /// A client for the engine at `base` (`http://host:port`), sending `token` as a
    /// bearer token when given.
    pub fn new(base: &str, token: Option<&str>) -> Result<Client, ClientError> {
        let base = base.trim_end_matches('/');
        let rest = base
            .strip_prefix("http://")
            .ok_or_else(|| ClientError::BadUrl(base.to_string()))?;
        if rest.is_empty() || rest.contains(char::is_whitespace) {
            return Err(ClientError::BadUrl(base.to_string()));
        }
        Ok(Client {
            base: base.to_string(),
            token: token.filter(|t| !t.trim().is_empty()).map(str::to_string),
            http: HyperClient::builder(TokioExecutor::new()).build_http(),
        })
    }

    /// The engine's base URL, without a trailing slash.
    pub fn base(&self) -> &str {
        &self.base
    }

    pub async fn get(&self, path: &str) -> Result<serde_json::Value, ClientError> {
        self.send("GET", path, None, &[]).await
    }

    pub async fn post(
        &self,
        path: &str,
        body: &serde_json::Value,
    ) -> Result<serde_json::Value, ClientError> {
        self.send("POST", path, Some(body), &[]).await
    }

    pub async fn put(
        &self,
        path: &str,
        body: &serde_json::Value,
    ) -> Result<serde_json::Value, ClientError> {
        self.send("PUT", path, Some(body), &[]).await
    }

    pub async fn delete(&self, path: &str) -> Result<serde_json::Value, ClientError> {
        self.send("DELETE", path, None, &[]).await
    }

    /// Sends one request with extra `headers`; an empty answer is `null`.
    pub async fn send(
        &self,
        method: &str,
        path: &str,
        body: Option<&serde_json::Value>,
        headers: &[(&str, &str)],
    ) -> Result<serde_json::Value, ClientError> {
        let url = format!("{}{}", self.base, path);
        let mut builder = hyper::Request::builder()
            .method(method)
            .uri(&url)
            .header("accept", "application/json");
        if let Some(token) = &self.token {
            builder = builder.header("authorization", format!("Bearer {token}"));
        }
        for (name, value) in headers {
            builder = builder.header(*name, *value);
        }
        let payload = match body {
            Some(value) => {
                builder = builder.header("content-type", "application/json");
                Bytes::from(value.to_string())
            }
            None => Bytes::new(),
        };
        let request = builder
            .body(Full::new(payload))
            .map_err(|_| ClientError::BadUrl(url.clone()))?;
        let response = self
            .http
            .request(request)
            .await
            .map_err(|e| ClientError::Unreachable {
                url: self.base.clone(),
                message: error_chain(&e),
            })?;
        let status = response.status();
        let bytes = response
            .into_body()
            .collect()
            .await
            .map_err(|e| ClientError::Body(e.to_string()))?
            .to_bytes();
        let value: serde_json::Value = if bytes.iter().all(u8::is_ascii_whitespace) {
            serde_json::Value::Null
        } else {
            match serde_json::from_slice(&bytes) {
                Ok(value) => value,
                Err(e) if status.is_success() => return Err(ClientError::Body(e.to_string())),
                Err(_) => {
                    return Err(ClientError::Status {
                        status: status.as_u16(),
                        message: String::from_utf8_lossy(&bytes)
                            .trim()
                            .chars()
                            .take(500)
                            .collect(),
                    });
                }
            }
        };
        if !status.is_success() {
            return Err(api_error(status.as_u16(), &value));
        }
        Ok(value)
    }
}

/// The error an answer of status `status` with body `value` describes.
fn api_error(status: u16, value: &serde_json::Value) -> ClientError {
    let field = |key: &str| value.get(key).and_then(|v| v.as_str()).map(str::to_string);
    match (field("message"), field("code")) {
        (Some(message), Some(code)) => ClientError::Api {
            status,
            code,
            message,
            doc_url: field("doc_url").unwrap_or_else(|| "/docs/errors".to_string()),
        },
        (Some(message), None) => ClientError::Status { status, message },
        _ => ClientError::Status {
            status,
            message: if value.is_null() {
                "no body".to_string()
            } else {
                value.to_string()
            },
        },
    }
}

/// An error and its causes on one line: hyper's own message is only "client error".
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// Sends a request to the engine and returns the JSON it answers.
pub async fn request(
    method: &str,
    base: &str,
    path: &str,
    token: Option<&str>,
    body: Option<&serde_json::Value>,
) -> Result<serde_json::Value, ClientError> {
    Client::new(base, token)?
        .send(method, path, body, &[])
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_api_error_prints_message_code_and_doc() {
        let body = serde_json::json!({
            "type": "https://yardmaster.dev/errors/missing_scope",
            "code": "missing_scope",
            "message": "missing scope: script:create",
            "doc_url": "/docs/errors#missing_scope",
        });
        let e = api_error(403, &body);
        assert_eq!(
            e.to_string(),
            "missing scope: script:create (missing_scope, see /docs/errors#missing_scope)"
        );
        assert_eq!(e.status(), Some(403));
        assert!(matches!(
            api_error(502, &serde_json::Value::Null),
            ClientError::Status { status: 502, .. }
        ));
    }

    #[test]
    fn only_http_urls_are_taken() {
        assert!(Client::new("http://127.0.0.1:8080/", None).is_ok());
        assert!(matches!(
            Client::new("https://example.com", None),
            Err(ClientError::BadUrl(_))
        ));
        assert!(matches!(
            Client::new("http://", None),
            Err(ClientError::BadUrl(_))
        ));
        let c = Client::new("http://127.0.0.1:1/", Some("t")).expect("client");
        assert_eq!(c.base(), "http://127.0.0.1:1");
        assert!(!format!("{c:?}").contains("\"t\""));
    }
}
