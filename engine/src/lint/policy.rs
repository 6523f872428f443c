//! What the linter's findings allow: the policy the store, the approval workflow and the
//! job routes apply to a script before it may be scheduled, approved or queued.
//!
//! - A script with a syntax error is refused, naming the first error's line and column:
//!   RouterOS would refuse it too, after the engine had already reached the router.
//! - A scheduled script with critical findings must acknowledge each of their rule ids in
//!   `acknowledged_risks`; the approval covers that list, and approvers are shown it
//!   beside the findings ([`shown_to_approvers`]).
//! - The list is strict, so it always says what the approver is looking at: every id must
//!   be a rule of the linter (`syntax` is not a rule one can accept)
//!   and must be found in the script at `critical` or `high` severity. An id the script
//!   does not (or no longer) trigger is refused, rather than kept as a blank permission
//!   for a later edit.

use super::{Finding, LintReport, Severity, rules};

/// Why a script may not be scheduled, approved or queued as it stands.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    /// RouterOS would not parse the script.
    #[error("script: syntax error at line {line}, column {column}: {message}")]
    Syntax {
        line: usize,
        column: usize,
        message: String,
    },
    /// Critical findings whose rule ids `acknowledged_risks` does not list.
    #[error(
        "acknowledged_risks: the script has critical findings that must be acknowledged by \
         listing their rule ids: {}",
        describe(missing)
    )]
    Unacknowledged { missing: Vec<Finding> },
    /// An id that names no rule of the linter.
    #[error("acknowledged_risks: `{id}` is not a rule of the linter; see POST /scripts/lint")]
    UnknownRule { id: String },
    /// A rule the script does not trigger at critical or high severity.
    #[error(
        "acknowledged_risks: `{id}` is not a critical or high finding of this script; \
         list only the risks the script has"
    )]
    NotInScript { id: String },
}

impl PolicyError {
    /// The API's error code for this refusal.
    pub fn code(&self) -> &'static str {
        match self {
            PolicyError::Syntax { .. } => "script_syntax_error",
            PolicyError::Unacknowledged { .. } => "risks_not_acknowledged",
            PolicyError::UnknownRule { .. } | PolicyError::NotInScript { .. } => {
                "validation_failed"
            }
        }
    }
}

/// `rule (line L, column C)`, each missing finding once per rule, in script order.
fn describe(missing: &[Finding]) -> String {
    missing
        .iter()
        .map(|f| format!("{} (line {}, column {})", f.rule, f.line, f.column))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The first syntax error of the script's top level, the one RouterOS would stop at.
/// Errors inside string literals (`:execute "..."`) are findings, not refusals: RouterOS
/// parses those only when they run.
fn first_syntax_error(script: &str) -> Option<PolicyError> {
    let mut errors = Vec::new();
    let tokens = super::lexer::lex(script, &mut errors);
    let parsed = super::parser::parse(&tokens, errors);
    parsed
        .errors
        .into_iter()
        .min_by_key(|e| (e.line, e.col))
        .map(|e| PolicyError::Syntax {
            line: e.line,
            column: e.col,
            message: e.message,
        })
}

/// Refuses a script with a syntax error; what an asynchronous job must pass.
pub fn check_syntax(script: &str) -> Result<(), PolicyError> {
    match first_syntax_error(script) {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// Checks a scheduled script and its acknowledged risks; answers the lint when they pass.
pub fn check(script: &str, acknowledged: &[String]) -> Result<LintReport, PolicyError> {
    let report = super::lint(script);
    if !report.syntax_ok {
        return Err(first_syntax_error(script).unwrap_or(PolicyError::Syntax {
            line: 1,
            column: 1,
            message: "the script does not parse".into(),
        }));
    }
    for id in acknowledged {
        if !rules::RULES.iter().any(|r| r.id == id) {
            return Err(PolicyError::UnknownRule { id: id.clone() });
        }
        let found = report
            .findings
            .iter()
            .any(|f| &f.rule == id && f.severity <= Severity::High);
        if !found {
            return Err(PolicyError::NotInScript { id: id.clone() });
        }
    }
    let mut missing: Vec<Finding> = Vec::new();
    for f in &report.findings {
        if f.severity == Severity::Critical
            && !acknowledged.contains(&f.rule)
            && !missing.iter().any(|m| m.rule == f.rule)
        {
            missing.push(f.clone());
        }
    }
    if !missing.is_empty() {
        return Err(PolicyError::Unacknowledged { missing });
    }
    Ok(report)
}

/// An acknowledged list as it is stored and bound: each id once, in byte order.
pub fn normalize(acknowledged: &mut Vec<String>) {
    acknowledged.sort();
    acknowledged.dedup();
}

/// The findings an approver is shown: the critical and high ones, in script order.
pub fn shown_to_approvers(report: &LintReport) -> Vec<Finding> {
    report
        .findings
        .iter()
        .filter(|f| f.severity <= Severity::High)
        .cloned()
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn acks(ids: &[&str]) -> Vec<String> {
        ids.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn a_syntax_error_is_refused_at_its_line_and_column() {
        let e = check(":log info \"a\"\n:put \"open", &[]).expect_err("unclosed string");
        let PolicyError::Syntax { line, column, .. } = &e else {
            panic!("{e}");
        };
        assert_eq!((*line, *column), (2, 6));
        assert_eq!(e.code(), "script_syntax_error");
        assert!(e.to_string().contains("line 2, column 6"), "{e}");
        assert_eq!(check_syntax(":log info \"a\"\n:put \"open"), Err(e));
        assert!(check_syntax(":log info ok").is_ok());
    }

    #[test]
    fn an_error_inside_a_string_is_a_finding_not_a_refusal() {
        let script = "/system script add name=s source=\":put (\"";
        assert!(check_syntax(script).is_ok());
        assert!(check(script, &[]).is_ok());
    }

    #[test]
    fn every_critical_rule_must_be_acknowledged() {
        let script =
            "/system reset-configuration\n/system reset-configuration\n/disk format-drive disk1";
        let e = check(script, &[]).expect_err("two critical rules");
        let PolicyError::Unacknowledged { missing } = &e else {
            panic!("{e}");
        };
        let ids: Vec<&str> = missing.iter().map(|f| f.rule.as_str()).collect();
        assert_eq!(ids, ["factory-reset", "disk-format"]);
        assert!(
            e.to_string().contains("factory-reset (line 1, column 1)"),
            "{e}"
        );
        let e = check(script, &acks(&["factory-reset"])).expect_err("one missing");
        assert!(matches!(&e, PolicyError::Unacknowledged { missing } if missing.len() == 1));
        let report = check(script, &acks(&["disk-format", "factory-reset"])).expect("passes");
        assert!(report.syntax_ok);
    }

    #[test]
    fn unknown_ids_and_ids_the_script_does_not_trigger_are_refused() {
        let script = "/system reset-configuration\n/user remove [find name=old]";
        assert_eq!(
            check(script, &acks(&["factory-reset", "no-such-rule"])),
            Err(PolicyError::UnknownRule {
                id: "no-such-rule".into()
            })
        );
        assert_eq!(
            check(script, &acks(&["factory-reset", "syntax"])),
            Err(PolicyError::UnknownRule {
                id: "syntax".into()
            })
        );
        assert_eq!(
            check(script, &acks(&["factory-reset", "disk-format"])),
            Err(PolicyError::NotInScript {
                id: "disk-format".into()
            })
        );
        // A high finding of the script may be acknowledged too.
        assert!(check(script, &acks(&["factory-reset", "user-change"])).is_ok());
        // A benign script acknowledges nothing.
        assert_eq!(
            check(":log info x", &acks(&["factory-reset"])),
            Err(PolicyError::NotInScript {
                id: "factory-reset".into()
            })
        );
    }

    #[test]
    fn approvers_see_critical_and_high_findings_only() {
        let report = super::super::lint(
            "/user remove [find name=old]\n/system reboot\n/system reset-configuration",
        );
        let shown = shown_to_approvers(&report);
        let ids: Vec<&str> = shown.iter().map(|f| f.rule.as_str()).collect();
        assert_eq!(ids, ["user-change", "factory-reset"]);
    }

    #[test]
    fn normalize_sorts_and_removes_repeats() {
        let mut v = acks(&["b", "a", "b"]);
        normalize(&mut v);
        assert_eq!(v, acks(&["a", "b"]));
    }
}
