//! A small HTTP client for the CLI commands that talk to a running engine
//! (`yardmaster plugin list`, ...).

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

/// What went wrong talking to the engine.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("`{0}` is not a URL like http://127.0.0.1:8080")]
    BadUrl(String),
    #[error("cannot reach the engine at {url}: {message} (is `yardmaster serve` running?)")]
    Unreachable { url: String, message: String },
    #[error("the engine answered {status}: {message}")]
    Status { status: u16, message: String },
    #[error("the engine's answer is not JSON: {0}")]
    Body(String),
}

/// Sends a request to the engine and returns the JSON it answers.
pub async fn request(
    method: &str,
    base: &str,
    path: &str,
    token: Option<&str>,
    body: Option<&serde_json::Value>,
) -> Result<serde_json::Value, ClientError> {
    let url = format!("{}{}", base.trim_end_matches('/'), path);
    if !url.starts_with("http://") {
        return Err(ClientError::BadUrl(base.to_string()));
    }
    let mut builder = hyper::Request::builder()
        .method(method)
        .uri(&url)
        .header("accept", "application/json");
    if let Some(token) = token {
        builder = builder.header("authorization", format!("Bearer {token}"));
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
        .map_err(|_| ClientError::BadUrl(base.to_string()))?;
    let client = Client::builder(TokioExecutor::new()).build_http();
    let response = client
        .request(request)
        .await
        .map_err(|e| ClientError::Unreachable {
            url: url.clone(),
            message: e.to_string(),
        })?;
    let status = response.status();
    let bytes = response
        .into_body()
        .collect()
        .await
        .map_err(|e| ClientError::Body(e.to_string()))?
        .to_bytes();
    let value: serde_json::Value =
        serde_json::from_slice(&bytes).map_err(|e| ClientError::Body(e.to_string()))?;
    if !status.is_success() {
        let message = value
            .get("message")
            .and_then(|m| m.as_str())
            .map(str::to_string)
            .unwrap_or_else(|| value.to_string());
        return Err(ClientError::Status {
            status: status.as_u16(),
            message,
        });
    }
    Ok(value)
}
