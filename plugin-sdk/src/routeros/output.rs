//! Telling a script's console output that reports an error from one that does not.
//!
//! RouterOS runs a script and hands back what it printed; a syntax error, a failed
//! command or a bad argument shows up only in that text. A job whose output says so
//! has failed, whatever the API's reply word was (or, over SSH, its exit status). The
//! RouterOS API and SSH transports share this one classifier.

/// Lines RouterOS prints when a script or one of its commands fails. Matched at the
/// start of a line, case-sensitively, as RouterOS prints them.
const ERROR_STARTS: &[&str] = &[
    "syntax error",
    "failure:",
    "expected end of command",
    "bad command name",
    "expected command name",
    "input does not match any value",
    "no such item",
    "invalid value",
    "ambiguous value",
    "ambiguous command name",
    "missing value",
    "script error:",
    "action timed out",
    "not enough permissions",
    "invalid internal item number",
    "already have such",
    "unknown parameter",
];

/// The error a script's output reports, or none when the output reads as a success.
pub fn script_error(output: &str) -> Option<String> {
    let reported = output.lines().map(str::trim).any(|line| {
        ERROR_STARTS.iter().any(|start| line.starts_with(start))
            // e.g. `bad command name foo (line 1 column 2)`
            || (line.contains("(line ") && line.contains(" column "))
    });
    reported.then(|| output.trim().to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_are_recognised() {
        for output in [
            "syntax error (line 1 column 5)",
            "bad command name foo (line 1 column 2)",
            "expected end of command (line 1 column 12)",
            "failure: already have such address",
            "hello\r\ninput does not match any value of interface\r\n",
            "no such item",
            "invalid value for argument address",
        ] {
            assert!(script_error(output).is_some(), "{output}");
        }
    }

    #[test]
    fn ordinary_output_passes() {
        for output in [
            "",
            "hello\r\n",
            "Configuration backup saved\r\n",
            "10.0.0.1/24",
        ] {
            assert_eq!(script_error(output), None, "{output}");
        }
    }

    #[test]
    fn the_whole_output_is_kept() {
        assert_eq!(
            script_error("done one\r\nfailure: duplicate\r\n").as_deref(),
            Some("done one\r\nfailure: duplicate")
        );
    }
}
