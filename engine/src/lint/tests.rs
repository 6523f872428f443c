//! Golden scripts (`golden/NAME.rsc` beside `NAME.expected`) and a check that no input,
//! however broken, makes the linter panic.

use std::fs;
use std::path::PathBuf;

use super::{Severity, lint};

fn golden_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("src/lint/golden")
}

fn render(script: &str) -> String {
    let report = lint(script);
    if report.findings.is_empty() {
        return "ok\n".into();
    }
    report
        .findings
        .iter()
        .map(|f| {
            format!(
                "{}:{} {} {} {}\n",
                f.line,
                f.column,
                f.severity.as_str(),
                f.rule,
                f.message
            )
        })
        .collect()
}

fn golden_scripts() -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = fs::read_dir(golden_dir())
        .expect("golden dir")
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "rsc"))
        .map(|p| {
            let name = p.file_stem().expect("name").to_string_lossy().into_owned();
            (name, fs::read_to_string(&p).expect("script"))
        })
        .collect();
    out.sort();
    out
}

#[test]
fn golden() {
    let update = std::env::var_os("UPDATE_GOLDEN").is_some();
    let scripts = golden_scripts();
    assert!(
        scripts.len() >= 150,
        "golden scripts missing: {}",
        scripts.len()
    );
    let mut failures = Vec::new();
    for (name, script) in scripts {
        let got = render(&script);
        let path = golden_dir().join(format!("{name}.expected"));
        if update {
            fs::write(&path, &got).expect("write expected");
            continue;
        }
        let want = fs::read_to_string(&path).unwrap_or_default();
        if got != want {
            failures.push(format!("{name}:\n--- expected\n{want}--- got\n{got}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// Everyday scripts and `/export` output (`benign-*`) parse, and give nothing critical
/// or high: a linter that cries wolf on them would be switched off.
#[test]
fn benign_scripts_give_no_critical_or_high_finding() {
    let benign: Vec<_> = golden_scripts()
        .into_iter()
        .filter(|(name, _)| name.starts_with("benign-"))
        .collect();
    assert!(benign.len() >= 40, "benign golden scripts missing");
    for (name, script) in benign {
        let report = lint(&script);
        assert!(report.syntax_ok, "{name}: {:?}", report.findings);
        let loud: Vec<_> = report
            .findings
            .iter()
            .filter(|f| f.severity <= Severity::High)
            .collect();
        assert!(loud.is_empty(), "{name}: {loud:?}");
    }
}

#[test]
fn never_panics_on_broken_input() {
    let mut inputs: Vec<String> = Vec::new();
    for (_, script) in golden_scripts() {
        let chars: Vec<char> = script.chars().collect();
        for cut in 0..chars.len().min(400) {
            inputs.push(chars[..cut].iter().collect());
            inputs.push(chars[cut..].iter().collect());
        }
        // Every character doubled, brackets flipped, quotes dropped.
        inputs.push(script.chars().flat_map(|c| [c, c]).collect());
        inputs.push(
            script
                .chars()
                .map(|c| match c {
                    '{' => '}',
                    '}' => '{',
                    '[' => ')',
                    '(' => ']',
                    c => c,
                })
                .collect(),
        );
        inputs.push(script.replace('"', ""));
        inputs.push(script.replace('\n', "\\"));
    }
    inputs.extend(
        [
            "\\", "\"\\", "\"\\4", "$", "$\"", "=", "==", "[", "]", "(", ")", "{", "}", "\\\r",
            "\"\\\r", ":", "/", "..", "/..", "#", "$\"\\", "\u{0}", "é\"\\é",
        ]
        .map(String::from),
    );
    inputs.push("[".repeat(100_000));
    inputs.push("(".repeat(100_000));
    inputs.push("{".repeat(100_000) + &"}".repeat(100_000));
    inputs.push(":execute \"".repeat(50) + &"\"".repeat(50));
    for input in &inputs {
        let _ = lint(input);
    }
}

#[test]
fn nesting_too_deep_is_an_error_not_a_crash() {
    let report = lint(&"[".repeat(10_000));
    assert!(!report.syntax_ok);
    assert!(
        report
            .findings
            .iter()
            .any(|f| f.message.contains("too deep"))
    );
}

#[test]
fn escapes_keep_quotes_inside_strings() {
    let report = lint(":put \"a \\\" } ] # b\\41\\\\\"\n:put \"\\$x\"");
    assert!(report.syntax_ok, "{:?}", report.findings);
}

#[test]
fn code_in_a_literal_is_linted_at_the_literal() {
    let report = lint("/system scheduler add name=x on-event=\"/system reset-configuration\"");
    let f = report
        .findings
        .iter()
        .find(|f| f.rule == "factory-reset")
        .expect("nested finding");
    assert_eq!((f.line, f.column, f.severity), (1, 39, Severity::Critical));
}
