//! The OpenAI-compatible generator: RouterOS scripts and summaries from a chat
//! completions API (`POST {base_url}/chat/completions`): OpenAI itself, or a server run
//! for this (Ollama at `http://localhost:11434/v1`, llama.cpp's `llama-server` at
//! `http://localhost:8080/v1`, vLLM at `http://localhost:8000/v1`).
//!
//! The request asks for a strict JSON object `{script, explanation}` (`response_format`
//! with a `json_schema`); an answer that ignores it (prose with a fenced script, or no
//! `usage`) is read too. `finish_reason: "length"` is an error, never a cut script.
//! 408, 409, 429 and 5xx are retried (`max_attempts` in all, default 3) after the wait
//! the server asks for (`retry-after-ms`, `retry-after`, under a minute) or an
//! exponential backoff with jitter; 401 and `insufficient_quota` are final.
//!
//! Configuration (`[plugins.openai.config]`): `base_url` (default
//! `https://api.openai.com/v1`), `model` (default `gpt-4o-mini`), `api_key` (needed for
//! OpenAI; servers that need none ignore it), `timeout` (milliseconds per request,
//! default 60000), `max_attempts`. Left with neither `api_key` nor another `base_url`,
//! the plugin is not configured and answers so without sending anything.
//!
//! `chat` builds the requests and reads the answers (tested natively); `http` is the
//! wasi:http part.

pub mod chat;
#[cfg(target_arch = "wasm32")]
mod http;

use yardmaster_plugin_sdk::generator::{
    Chat, GenerateError, Generated, Generator, Reply, Request, Turn,
};
use yardmaster_plugin_sdk::{ConfigKey, PluginInfo, PluginKind, config};

const DEFAULT_BASE_URL: &str = "https://api.openai.com/v1";

#[cfg_attr(not(target_arch = "wasm32"), allow(dead_code))]
struct Settings {
    base_url: String,
    model: String,
    api_key: Option<String>,
    timeout_ms: u64,
    max_attempts: u32,
}

fn settings() -> Settings {
    Settings {
        base_url: config::get("base_url")
            .unwrap_or_else(|| DEFAULT_BASE_URL.into())
            .trim_end_matches('/')
            .to_owned(),
        model: config::get("model").unwrap_or_else(|| "gpt-4o-mini".into()),
        api_key: config::get("api_key").filter(|k| !k.is_empty()),
        timeout_ms: config::get("timeout")
            .and_then(|t| t.parse().ok())
            .unwrap_or(60_000),
        max_attempts: config::get("max_attempts")
            .and_then(|t| t.parse().ok())
            .unwrap_or(3)
            .clamp(1, 10),
    }
}

/// OpenAI itself needs a key: without one (and no other `base_url`), the plugin is not
/// configured, and says so without a request.
fn configured(s: &Settings) -> Result<(), GenerateError> {
    if s.api_key.is_none() && s.base_url == DEFAULT_BASE_URL {
        return Err(GenerateError::Denied(
            "the openai plugin is not configured: set api_key in [plugins.openai.config] for \
             OpenAI, or base_url for a local model server (Ollama, llama.cpp, vLLM)"
                .into(),
        ));
    }
    Ok(())
}

/// One chat completion, retried as `chat::after_failure` says.
#[cfg(target_arch = "wasm32")]
fn complete(s: &Settings, body: &serde_json::Value) -> Result<serde_json::Value, GenerateError> {
    configured(s)?;
    let url = format!("{}/chat/completions", s.base_url);
    let bytes = serde_json::to_vec(body).map_err(|e| GenerateError::Other(e.to_string()))?;
    let mut attempt = 0;
    loop {
        attempt += 1;
        let answer = http::post_json(&url, s.api_key.as_deref(), &bytes, s.timeout_ms)?;
        if (200..300).contains(&answer.status) {
            return serde_json::from_str(&answer.body)
                .map_err(|e| GenerateError::Other(format!("{url}: the answer is not JSON: {e}")));
        }
        // Exponential backoff from 500 ms, with up to half of it again as jitter.
        let base = 500u64 << (attempt - 1).min(6);
        let backoff = base + http::random_below(base / 2 + 1);
        match chat::after_failure(
            answer.status,
            &answer.headers,
            &answer.body,
            attempt,
            s.max_attempts,
            backoff,
        ) {
            chat::Next::Retry(ms) => http::sleep(ms),
            chat::Next::Fail(e) => return Err(e),
        }
    }
}

#[cfg(not(target_arch = "wasm32"))]
fn complete(s: &Settings, _body: &serde_json::Value) -> Result<serde_json::Value, GenerateError> {
    configured(s)?;
    Err(GenerateError::Unavailable(format!(
        "{}: the generator calls the API only inside the engine",
        s.base_url
    )))
}

fn generate_turns(request: &Request, history: &[Turn]) -> Result<Reply, GenerateError> {
    if request.prompt.trim().is_empty() {
        return Err(GenerateError::Invalid("the prompt is empty".into()));
    }
    let s = settings();
    let answer = complete(&s, &chat::body(&s.model, request, history))?;
    let mut reply = chat::parse(&answer)?;
    if reply.model.is_empty() {
        reply.model = s.model;
    }
    Ok(reply)
}

struct OpenAi;

impl Generator for OpenAi {
    fn describe() -> PluginInfo {
        PluginInfo::new("openai", env!("CARGO_PKG_VERSION"), PluginKind::Generator)
            .with_description(
                "RouterOS scripts and summaries from an OpenAI-compatible chat completions API (OpenAI, Ollama, llama.cpp, vLLM)",
            )
            .with_config_key(ConfigKey::optional("base_url", "The API's base URL (default https://api.openai.com/v1)"))
            .with_config_key(ConfigKey::optional("model", "The model (default gpt-4o-mini)"))
            .with_config_key(ConfigKey::optional("api_key", "The API key; servers that need none ignore it").secret())
            .with_config_key(ConfigKey::optional("timeout", "Milliseconds one request may take (default 60000)"))
            .with_config_key(ConfigKey::optional("max_attempts", "Attempts per request, retries included (default 3)"))
            .with_endpoint("api.openai.com:443")
    }

    fn generate(request: Request) -> Result<Generated, GenerateError> {
        let r = generate_turns(&request, &[])?;
        Ok(Generated {
            script: r.script,
            explanation: r.explanation,
            model: r.model,
        })
    }

    fn summarize(script: String) -> Result<String, GenerateError> {
        let s = settings();
        let answer = complete(&s, &chat::summary_body(&s.model, &script))?;
        let choice = &answer["choices"][0];
        if choice["finish_reason"] == "length" {
            return Err(GenerateError::Invalid(
                "the summary was cut off at the model's length limit".into(),
            ));
        }
        let text = choice["message"]["content"].as_str().unwrap_or("").trim();
        if text.is_empty() {
            return Err(GenerateError::Other(
                "the model gave an empty summary".into(),
            ));
        }
        Ok(text.chars().take(500).collect())
    }
}

impl Chat for OpenAi {
    fn generate_turns(request: Request, history: Vec<Turn>) -> Result<Reply, GenerateError> {
        generate_turns(&request, &history)
    }
}

yardmaster_plugin_sdk::export_generator!(OpenAi);
