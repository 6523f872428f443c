//! The chat completions exchange without the network: the request body the plugin sends,
//! how an answer is read (a strict JSON object, or a script in markdown fences from a
//! server that ignores `response_format`), and which failures are worth retrying.

use serde_json::{Value, json};
use yardmaster_plugin_sdk::generator::{GenerateError, Reply, Request, Turn, Usage};

/// What the model is told before the operator's prompt.
pub fn system_prompt(request: &Request) -> String {
    let mut facts = String::new();
    for (k, v) in &request.context {
        if k == "linter-rules" {
            continue;
        }
        facts.push_str(&format!("- {k}: {v}\n"));
    }
    let rules = request
        .context
        .iter()
        .find(|(k, _)| k == "linter-rules")
        .map(|(_, v)| v.as_str())
        .unwrap_or("");
    format!(
        "You write MikroTik RouterOS scripts. Answer with a JSON object {{\"script\": ..., \"explanation\": ...}}: \
         `script` is the whole script, ready to paste into a RouterOS terminal, and `explanation` says in two \
         sentences what it does.\n\
         Rules:\n\
         - Write RouterOS 7 syntax unless a version is given below; full menu paths (`/ip firewall filter add ...`), \
           `name=value` with no spaces around `=`, and `:local` for every variable.\n\
         - Never lock out the management connection: do not disable or re-bind the api, ssh, winbox or www \
           services, do not drop input traffic without first accepting established connections and the \
           management address, do not remove the management IP address or the default route, and never reset \
           the configuration.\n\
         - If the request cannot be done safely, say so in `explanation` and return an empty `script`.\n\
         {}{}",
        if rules.is_empty() {
            String::new()
        } else {
            format!("- The engine's linter flags these as critical: {rules}.\n")
        },
        if facts.is_empty() {
            String::new()
        } else {
            format!("Facts about the target:\n{facts}")
        }
    )
}

/// The body of `POST {base_url}/chat/completions`.
pub fn body(model: &str, request: &Request, history: &[Turn]) -> Value {
    let mut messages = vec![
        json!({"role": "system", "content": system_prompt(request)}),
        json!({"role": "user", "content": request.prompt}),
    ];
    for turn in history {
        let role = if turn.role == "assistant" {
            "assistant"
        } else {
            "user"
        };
        messages.push(json!({"role": role, "content": turn.content}));
    }
    json!({
        "model": model,
        "messages": messages,
        "temperature": 0.2,
        "response_format": {
            "type": "json_schema",
            "json_schema": {
                "name": "routeros_script",
                "strict": true,
                "schema": {
                    "type": "object",
                    "properties": {
                        "script": {"type": "string"},
                        "explanation": {"type": "string"}
                    },
                    "required": ["script", "explanation"],
                    "additionalProperties": false
                }
            }
        }
    })
}

/// The body of a summary request.
pub fn summary_body(model: &str, script: &str) -> Value {
    json!({
        "model": model,
        "temperature": 0.0,
        "messages": [
            {"role": "system", "content": "Say in one plain sentence, at most 200 characters, what this MikroTik RouterOS script does. No preamble."},
            {"role": "user", "content": script}
        ]
    })
}

/// The script in `text`: the first fenced block when there is one, else the text.
pub fn unfence(text: &str) -> (String, String) {
    let Some(start) = text.find("```") else {
        return (text.trim().to_owned(), String::new());
    };
    let after = &text[start + 3..];
    // The fence's info string (`routeros`, `rsc`, ...) ends at the first line break.
    let body_start = after.find('\n').map(|i| i + 1).unwrap_or(after.len());
    let body = &after[body_start..];
    let (script, rest) = match body.find("```") {
        Some(end) => (&body[..end], &body[end + 3..]),
        None => (body, ""),
    };
    let explanation = format!("{}{}", text[..start].trim(), rest.trim());
    (
        script.trim_end().to_owned() + "\n",
        explanation.trim().to_owned(),
    )
}

/// Reads a chat completions answer.
pub fn parse(answer: &Value) -> Result<Reply, GenerateError> {
    let choice = &answer["choices"][0];
    if choice.is_null() {
        return Err(GenerateError::Other("the answer has no choices".to_owned()));
    }
    if choice["finish_reason"] == "length" {
        return Err(GenerateError::Invalid(
            "the model's answer was cut off at its length limit (finish_reason: length); the script would be incomplete, so none is returned".to_owned(),
        ));
    }
    let message = &choice["message"];
    if let Some(refusal) = message["refusal"].as_str() {
        return Err(GenerateError::Refused(refusal.to_owned()));
    }
    let content = message["content"].as_str().unwrap_or("");
    let (script, explanation) = match serde_json::from_str::<Value>(content.trim()) {
        Ok(v) if v["script"].is_string() => (
            v["script"].as_str().unwrap_or("").to_owned(),
            v["explanation"].as_str().unwrap_or("").to_owned(),
        ),
        // A server that ignores `response_format` may answer prose and a fenced script,
        // or a JSON object inside a fence.
        _ => {
            let (inner, explanation) = unfence(content);
            match serde_json::from_str::<Value>(inner.trim()) {
                Ok(v) if v["script"].is_string() => (
                    v["script"].as_str().unwrap_or("").to_owned(),
                    v["explanation"].as_str().unwrap_or("").to_owned(),
                ),
                _ => (inner, explanation),
            }
        }
    };
    let (script, _) = if script.contains("```") {
        unfence(&script)
    } else {
        (script, String::new())
    };
    let usage = answer.get("usage").filter(|u| u.is_object()).map(|u| {
        let n = |k: &str| u[k].as_u64().unwrap_or(0).min(u64::from(u32::MAX)) as u32;
        Usage {
            prompt: n("prompt_tokens"),
            completion: n("completion_tokens"),
            total: n("total_tokens"),
        }
    });
    Ok(Reply {
        script,
        explanation,
        model: answer["model"].as_str().unwrap_or("").to_owned(),
        response_id: answer["id"].as_str().map(str::to_owned),
        usage,
    })
}

/// What to do after a failed HTTP answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Next {
    /// Try again after this many milliseconds.
    Retry(u64),
    /// Stop with this error.
    Fail(GenerateError),
}

/// The wait a `retry-after-ms` or `retry-after` header asks for, when under a minute.
pub fn asked_wait(headers: &[(String, String)]) -> Option<u64> {
    let get = |name: &str| {
        headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.trim().to_owned())
    };
    let ms = get("retry-after-ms")
        .and_then(|v| v.parse::<f64>().ok())
        .map(|v| v as u64)
        .or_else(|| {
            get("retry-after")
                .and_then(|v| v.parse::<f64>().ok())
                .map(|s| (s * 1000.0) as u64)
        })?;
    (ms < 60_000).then_some(ms)
}

/// Classifies an HTTP failure: 408, 409, 429 and 5xx are retried (after the wait the
/// server asks for, or `backoff_ms`) while attempts remain; 401 and an exhausted quota
/// are final.
pub fn after_failure(
    status: u16,
    headers: &[(String, String)],
    body: &str,
    attempt: u32,
    max_attempts: u32,
    backoff_ms: u64,
) -> Next {
    let said: Value = serde_json::from_str(body).unwrap_or(Value::Null);
    let message = said["error"]["message"]
        .as_str()
        .map(str::to_owned)
        .unwrap_or_else(|| body.chars().take(300).collect());
    let code = said["error"]["code"]
        .as_str()
        .or(said["error"]["type"].as_str())
        .unwrap_or("");
    if status == 401 {
        return Next::Fail(GenerateError::Denied(format!(
            "the API refused the key (401): {message}; set api_key in [plugins.openai.config]"
        )));
    }
    if code == "insufficient_quota" {
        return Next::Fail(GenerateError::Denied(format!(
            "the account's quota is used up (insufficient_quota): {message}"
        )));
    }
    let retryable = matches!(status, 408 | 409 | 429) || status >= 500;
    if !retryable {
        return Next::Fail(GenerateError::Invalid(format!(
            "the API answered {status}: {message}"
        )));
    }
    if attempt >= max_attempts {
        return Next::Fail(GenerateError::Unavailable(format!(
            "the API answered {status} ({message}) {attempt} times; gave up"
        )));
    }
    Next::Retry(asked_wait(headers).unwrap_or(backoff_ms))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request() -> Request {
        Request {
            prompt: "add a firewall rule".into(),
            context: vec![("routeros-version".into(), "7.18".into())],
        }
    }

    #[test]
    fn the_request_asks_for_strict_json_and_carries_the_history() {
        let history = vec![
            Turn {
                role: "assistant".into(),
                content: "{\"script\": \"/ip fire\"}".into(),
            },
            Turn {
                role: "user".into(),
                content: "syntax error at 1:5".into(),
            },
        ];
        let b = body("m", &request(), &history);
        assert_eq!(b["response_format"]["json_schema"]["strict"], true);
        let messages = b["messages"].as_array().expect("messages");
        assert_eq!(messages.len(), 4);
        assert!(
            messages[0]["content"]
                .as_str()
                .expect("system")
                .contains("routeros-version: 7.18")
        );
        assert_eq!(messages[3]["content"], "syntax error at 1:5");
    }

    #[test]
    fn answers_are_read_as_json_or_fenced_text() {
        let json_answer = json!({
            "id": "chatcmpl-1", "model": "gpt",
            "choices": [{"finish_reason": "stop", "message": {"content": "{\"script\": \":log info x\\n\", \"explanation\": \"logs\"}"}}],
            "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15}
        });
        let r = parse(&json_answer).expect("json");
        assert_eq!(r.script, ":log info x\n");
        assert_eq!(r.usage.expect("usage").total, 15);
        assert_eq!(r.response_id.as_deref(), Some("chatcmpl-1"));
        let fenced = json!({
            "model": "llama",
            "choices": [{"finish_reason": "stop", "message": {"content": "Here it is:\n```routeros\n/ip dns set servers=1.1.1.1\n```\nDone."}}]
        });
        let r = parse(&fenced).expect("fenced");
        assert_eq!(r.script, "/ip dns set servers=1.1.1.1\n");
        assert!(r.usage.is_none());
        assert!(r.explanation.contains("Here it is"));
        let cut = json!({"choices": [{"finish_reason": "length", "message": {"content": "/ip"}}]});
        assert!(matches!(parse(&cut), Err(GenerateError::Invalid(_))));
    }

    #[test]
    fn retries_follow_the_server_and_stop_on_what_cannot_pass() {
        let wait = vec![("retry-after".to_owned(), "2".to_owned())];
        assert_eq!(
            after_failure(429, &wait, "{}", 1, 4, 500),
            Next::Retry(2000)
        );
        let ms = vec![("retry-after-ms".to_owned(), "150".to_owned())];
        assert_eq!(after_failure(503, &ms, "{}", 1, 4, 500), Next::Retry(150));
        let long = vec![("retry-after".to_owned(), "120".to_owned())];
        assert_eq!(after_failure(500, &long, "{}", 1, 4, 700), Next::Retry(700));
        assert!(matches!(
            after_failure(500, &[], "{}", 4, 4, 500),
            Next::Fail(GenerateError::Unavailable(_))
        ));
        assert!(matches!(
            after_failure(401, &[], "{\"error\":{\"message\":\"bad key\"}}", 1, 4, 500),
            Next::Fail(GenerateError::Denied(_))
        ));
        let quota = "{\"error\":{\"message\":\"no credit\",\"code\":\"insufficient_quota\"}}";
        assert!(matches!(
            after_failure(429, &[], quota, 1, 4, 500),
            Next::Fail(GenerateError::Denied(_))
        ));
        assert!(matches!(
            after_failure(400, &[], "{}", 1, 4, 500),
            Next::Fail(GenerateError::Invalid(_))
        ));
    }
}
