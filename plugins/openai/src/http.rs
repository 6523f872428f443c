//! The POST through the SDK's wasi:http client (the engine does the HTTPS and holds the
//! plugin to its allow-list), and waiting between attempts.

use yardmaster_plugin_sdk::generator::GenerateError;
use yardmaster_plugin_sdk::http::{HttpError, Request};

/// Most bytes of an answer read.
const MAX_ANSWER: u64 = 4 * 1024 * 1024;

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
    let error = |e| error(e, url, timeout_ms);
    let mut request = Request::post(url, body)
        .map_err(error)?
        .header("content-type", "application/json")
        .header("accept", "application/json")
        .header(
            "user-agent",
            format!("yardmaster-openai/{}", env!("CARGO_PKG_VERSION")),
        )
        .timeout_ms(timeout_ms);
    if let Some(key) = api_key {
        request = request.header("authorization", format!("Bearer {key}"));
    }
    let response = request.send(MAX_ANSWER).map_err(error)?;
    Ok(Answer {
        status: response.status,
        headers: response.headers,
        body: String::from_utf8_lossy(&response.body).into_owned(),
    })
}

fn error(e: HttpError, url: &str, timeout_ms: u64) -> GenerateError {
    match e {
        HttpError::InvalidUrl(_) => {
            GenerateError::Invalid(format!("base_url {url} is not http(s)"))
        }
        HttpError::Invalid(what) => GenerateError::Other(what),
        HttpError::Denied | HttpError::Prohibited => GenerateError::Denied(format!(
            "{url}: the plugin's allow-list does not grant this host ([plugins.openai] allow)"
        )),
        HttpError::Refused => GenerateError::Unavailable(format!(
            "{url}: connection refused; is the model server running?"
        )),
        HttpError::Timeout => {
            GenerateError::Unavailable(format!("{url}: no answer within {timeout_ms} ms (timeout)"))
        }
        HttpError::TooLarge(max) => {
            GenerateError::Other(format!("{url}: the answer is larger than {max} bytes"))
        }
        other => GenerateError::Unavailable(format!("{url}: {other}")),
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
