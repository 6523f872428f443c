//! The script linter: parses RouterOS script as RouterOS does and reports syntax errors
//! and risky commands (a factory reset, a firewall rule that may lock management out),
//! each with its 1-based line and column.
//!
//! - `lexer`: characters to tokens (strings with their escapes, `$variables`, brackets);
//! - `parser`: tokens to [`Command`](parser::Command)s with menu paths resolved against
//!   the context lines `/export` writes, checking brackets, `=`, `:commands` and that
//!   every variable is declared;
//! - `rules`: the safety rules, one table entry each;
//! - `policy`: what the findings allow: a script with a syntax error is refused, and a
//!   scheduled script acknowledges each critical rule it triggers (`acknowledged_risks`);
//! - `golden/`: `NAME.rsc` scripts beside `NAME.expected` findings, run by the tests
//!   below (`UPDATE_GOLDEN=1` rewrites the expectations, to be reviewed before commit).
//!
//! Code held in strings (`:execute`, `:parse`, `source=`, `on-event=`, netwatch's and
//! DHCP's scripts) is linted too when it is a literal, its findings placed at the
//! literal; code the linter cannot see (built at run time, named by reference, imported
//! from a file) gets the `opaque-code` warning.

mod describe;
mod lexer;
mod parser;
pub mod policy;
mod rules;

#[cfg(test)]
mod tests;

use serde::Serialize;
use utoipa::ToSchema;

pub use describe::describe;
use parser::{Command, Value};

/// How much a finding matters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Critical,
    High,
    Warning,
    Info,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Critical => "critical",
            Severity::High => "high",
            Severity::Warning => "warning",
            Severity::Info => "info",
        }
    }
}

/// One thing the linter found, at a 1-based line and column.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct Finding {
    /// The rule's id; `syntax` for a syntax error.
    pub rule: String,
    pub severity: Severity,
    pub message: String,
    pub line: usize,
    pub column: usize,
}

/// What the linter says of one script.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct LintReport {
    /// RouterOS would accept the script (no `syntax` finding at its top level).
    pub syntax_ok: bool,
    /// By position, then rule.
    pub findings: Vec<Finding>,
}

#[derive(Debug, Clone)]
pub(crate) struct SyntaxError {
    line: usize,
    col: usize,
    message: String,
}

impl SyntaxError {
    fn new(line: usize, col: usize, message: impl Into<String>) -> Self {
        SyntaxError {
            line,
            col,
            message: message.into(),
        }
    }
}

/// Deepest string-within-string nesting linted; deeper literals are left unchecked.
const MAX_NESTED_CODE: usize = 4;

/// Lint one script.
pub fn lint(script: &str) -> LintReport {
    let mut findings = Vec::new();
    let syntax_ok = lint_into(script, None, 0, &mut findings);
    findings.sort_by(|a, b| {
        (a.line, a.column, a.severity, &a.rule).cmp(&(b.line, b.column, b.severity, &b.rule))
    });
    findings.dedup();
    LintReport {
        syntax_ok,
        findings,
    }
}

/// Lints `script` into `findings`; `at` places every finding at one position (the
/// literal the script came from). Returns whether the syntax is sound.
fn lint_into(
    script: &str,
    at: Option<(usize, usize)>,
    depth: usize,
    findings: &mut Vec<Finding>,
) -> bool {
    let mut errors = Vec::new();
    let tokens = lexer::lex(script, &mut errors);
    let parsed = parser::parse(&tokens, errors);
    let place = |line: usize, col: usize| at.unwrap_or((line, col));
    let prefix = if at.is_some() { "in string: " } else { "" };
    for e in &parsed.errors {
        let (line, column) = place(e.line, e.col);
        findings.push(Finding {
            rule: "syntax".into(),
            severity: Severity::High,
            message: format!("{prefix}{}", e.message),
            line,
            column,
        });
    }
    let commands = &parsed.commands;
    for i in 0..commands.len() {
        let cmd = &commands[i];
        for rule in rules::RULES {
            if (rule.check)(commands, i) {
                let (line, column) = place(cmd.line, cmd.col);
                findings.push(Finding {
                    rule: rule.id.into(),
                    severity: rule.severity,
                    message: format!("{prefix}{}", rule.message),
                    line,
                    column,
                });
            }
        }
        // Code held in a literal is linted here; any other is `opaque-code`'s.
        for value in code_values(cmd) {
            if let Value::Literal { text, line, col } = value
                && depth < MAX_NESTED_CODE
            {
                lint_into(text, Some(place(*line, *col)), depth + 1, findings);
            }
        }
    }
    parsed.errors.is_empty()
}

/// Arguments of menu commands whose value is script source: a scheduler's or a
/// script's, netwatch's, a DHCP server's or client's, a PPP profile's.
const CODE_ARGS: &[&str] = &[
    "on-event",
    "source",
    "up-script",
    "down-script",
    "test-script",
    "lease-script",
    "script",
    "on-up",
    "on-down",
];

/// The values of a command that hold code to run.
pub(crate) fn code_values(cmd: &Command) -> Vec<&Value> {
    match cmd.colon.as_deref() {
        Some("execute" | "parse") => cmd
            .args
            .iter()
            .filter(|a| a.name.is_none() || a.name.as_deref() == Some("script"))
            .take(1)
            .map(|a| &a.value)
            .collect(),
        Some(_) => Vec::new(),
        None => cmd
            .args
            .iter()
            .filter(|a| a.name.as_deref().is_some_and(|n| CODE_ARGS.contains(&n)))
            .map(|a| &a.value)
            .collect(),
    }
}
