//! What people read: a subject, a plain-text body and an HTML body for each event kind.

use serde_json::Value;

/// A rendered message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Message {
    pub subject: String,
    pub text: String,
    pub html: String,
}

/// What a message needs beyond the event's payload.
pub(crate) struct Context<'a> {
    pub description: &'a str,
    /// The approval link, absolute; only for authorization requests.
    pub link: Option<&'a str>,
    /// The script asked to be authorized, so the approver reads what they approve.
    pub script: Option<&'a str>,
}

fn field<'a>(payload: &'a Value, name: &str) -> &'a str {
    payload.get(name).and_then(Value::as_str).unwrap_or("")
}

fn number(payload: &Value, name: &str) -> u64 {
    payload.get(name).and_then(Value::as_u64).unwrap_or(0)
}

/// The message for an event of `kind`.
pub(crate) fn render(kind: &str, payload: &Value, ctx: &Context<'_>) -> Message {
    let name = if ctx.description.is_empty() {
        field(payload, "schedule_id")
    } else {
        ctx.description
    };
    let (subject, lines): (String, Vec<String>) = match kind {
        "script.authorization_requested" => (
            format!("Authorization requested: {name}"),
            vec![
                format!(
                    "{} asks you to authorize the scheduled script \"{name}\".",
                    field(payload, "requested_by")
                ),
                "Review it and approve it here (the link works once):".into(),
                ctx.link.unwrap_or_default().to_owned(),
                format!("The link expires at {}.", field(payload, "expires_at")),
                findings(payload),
                acknowledged(payload),
                match ctx.script {
                    Some(script) => format!("The script:\n\n{script}"),
                    None => String::new(),
                },
            ],
        ),
        "script.authorized" => (
            format!("Authorized: {name}"),
            vec![format!(
                "The scheduled script \"{name}\" was authorized by {}.",
                field(payload, "authorized_by")
            )],
        ),
        "script.launched" => (
            format!("Launched: {name}"),
            vec![format!(
                "The scheduled script \"{name}\" launched (occurrence {}) on {} site(s).",
                number(payload, "occurrence"),
                number(payload, "jobs")
            )],
        ),
        "script.site_finished" => {
            let status = field(payload, "status");
            let mut lines = vec![format!(
                "Site {} {status} the scheduled script \"{name}\" (job {}).",
                field(payload, "site_id"),
                field(payload, "job_id")
            )];
            if let Some(error) = payload.get("error").filter(|e| !e.is_null()) {
                lines.push(format!(
                    "Error: {} ({})",
                    field(error, "message"),
                    field(error, "code")
                ));
            }
            (
                format!("Site {} {status}: {name}", field(payload, "site_id")),
                lines,
            )
        }
        "script.run_finished" => {
            let outcome = match field(payload, "status") {
                "completed" => "Completed",
                "failed" => "Failed",
                "partially_failed" => "Partially failed",
                other => other,
            };
            (
                format!("{outcome}: {name}"),
                vec![format!(
                    "The scheduled script \"{name}\" finished: {} completed, {} failed, {} skipped.",
                    number(payload, "completed"),
                    number(payload, "failed"),
                    number(payload, "skipped")
                )],
            )
        }
        "script.approval_voided" => {
            let mut lines = vec![format!(
                "The scheduled script \"{name}\" did not launch: what it would run on is no \
                 longer what was approved. It is unauthorized again and needs a new approval."
            )];
            for reason in payload
                .get("reasons")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
            {
                lines.push(format!("- {reason}"));
            }
            (format!("Approval void, not launched: {name}"), lines)
        }
        "script.cancelled" => (
            format!("Cancelled: {name}"),
            vec![format!("The scheduled script \"{name}\" was cancelled.")],
        ),
        "job.status" => {
            let status = field(payload, "status");
            (
                format!("Job {status}: {}", field(payload, "description")),
                vec![format!(
                    "Job {} on router {} is {status}.",
                    field(payload, "job_id"),
                    field(payload, "router_id")
                )],
            )
        }
        other => (
            format!("Yardmaster: {other}"),
            vec![format!("Event {other}.")],
        ),
    };
    let lines: Vec<String> = lines.into_iter().filter(|l| !l.is_empty()).collect();
    let text = lines.join("\n\n") + "\n";
    let mut html = String::from("<!DOCTYPE html>\n<html><body>\n");
    for line in &lines {
        if ctx.link.is_some_and(|l| l == line) {
            let href = escape(line);
            html.push_str(&format!("<p><a href=\"{href}\">{href}</a></p>\n"));
        } else if line.contains('\n') {
            html.push_str(&format!("<pre>{}</pre>\n", escape(line)));
        } else {
            html.push_str(&format!("<p>{}</p>\n", escape(line)));
        }
    }
    html.push_str("</body></html>\n");
    Message {
        subject,
        text,
        html,
    }
}

/// The linter's critical and high findings an approval request carries, one a line;
/// nothing for a request made before requests carried them.
fn findings(payload: &Value) -> String {
    let Some(all) = payload.get("findings").and_then(Value::as_array) else {
        return String::new();
    };
    let list: Vec<String> = all
        .iter()
        .map(|f| {
            format!(
                "- {} {} at line {}, column {}: {}",
                field(f, "severity"),
                field(f, "rule"),
                number(f, "line"),
                number(f, "column"),
                field(f, "message")
            )
        })
        .collect();
    if list.is_empty() {
        "The linter finds nothing critical or high in the script.".into()
    } else {
        format!(
            "The linter's critical and high findings:\n{}",
            list.join("\n")
        )
    }
}

/// The risks the author acknowledged, which the approval covers.
fn acknowledged(payload: &Value) -> String {
    let Some(all) = payload.get("acknowledged_risks").and_then(Value::as_array) else {
        return String::new();
    };
    let ids: Vec<&str> = all.iter().filter_map(Value::as_str).collect();
    if ids.is_empty() {
        "Acknowledged risks: none.".into()
    } else {
        format!(
            "Acknowledged risks (approving accepts them): {}.",
            ids.join(", ")
        )
    }
}

/// `text` safe to place in HTML, in an element or a quoted attribute.
pub(crate) fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn authorization_request_carries_the_link_in_both_parts() {
        let m = render(
            "script.authorization_requested",
            &json!({"requested_by": "ada", "expires_at": "2030-01-01T00:00:00Z"}),
            &Context {
                description: "Nightly <backup>",
                link: Some("https://ym.example/scripts/scheduled/s1/authorize?token=t&x=1"),
                script: Some(":log info one\n.two"),
            },
        );
        assert_eq!(m.subject, "Authorization requested: Nightly <backup>");
        assert!(m.text.contains("token=t&x=1"));
        assert!(m.html.contains(
            "href=\"https://ym.example/scripts/scheduled/s1/authorize?token=t&amp;x=1\""
        ));
        assert!(m.html.contains("Nightly &lt;backup&gt;"));
        assert!(m.text.contains("\n.two"));
    }

    #[test]
    fn authorization_request_shows_the_findings_and_the_acknowledged_risks() {
        let payload = json!({
            "requested_by": "ada",
            "expires_at": "2030-01-01T00:00:00Z",
            "findings": [
                {"rule": "factory-reset", "severity": "critical", "line": 2, "column": 1,
                 "message": "resets the <whole> configuration"},
                {"rule": "user-change", "severity": "high", "line": 3, "column": 5,
                 "message": "removes users"},
            ],
            "acknowledged_risks": ["factory-reset"],
        });
        for link in [Some("https://ym.example/x?token=t"), None] {
            let m = render(
                "script.authorization_requested",
                &payload,
                &Context {
                    description: "Reset",
                    link,
                    script: None,
                },
            );
            assert!(
                m.text.contains(
                    "- critical factory-reset at line 2, column 1: resets the <whole> configuration"
                ),
                "{}",
                m.text
            );
            assert!(m.text.contains("- high user-change at line 3, column 5"));
            assert!(
                m.text
                    .contains("Acknowledged risks (approving accepts them): factory-reset.")
            );
            assert!(m.html.contains("resets the &lt;whole&gt; configuration"));
        }
        let m = render(
            "script.authorization_requested",
            &json!({"requested_by": "ada", "findings": [], "acknowledged_risks": []}),
            &Context {
                description: "Benign",
                link: None,
                script: None,
            },
        );
        assert!(m.text.contains("finds nothing critical or high"));
        assert!(m.text.contains("Acknowledged risks: none."));
        // A request queued before requests carried findings claims nothing about them.
        let m = render(
            "script.authorization_requested",
            &json!({"requested_by": "ada"}),
            &Context {
                description: "Older",
                link: None,
                script: None,
            },
        );
        assert!(
            !m.text.contains("linter") && !m.text.contains("Acknowledged"),
            "{}",
            m.text
        );
    }

    #[test]
    fn run_outcomes() {
        let m = render(
            "script.run_finished",
            &json!({"status": "partially_failed", "completed": 3, "failed": 1, "skipped": 0}),
            &Context {
                description: "Rotate keys",
                link: None,
                script: None,
            },
        );
        assert_eq!(m.subject, "Partially failed: Rotate keys");
        assert!(m.text.contains("3 completed, 1 failed"));
    }
}
