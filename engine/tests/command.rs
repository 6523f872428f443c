//! The `yardmaster` command's own surface: help, version, and refusing what it does not
//! know. Being an integration test of this package, it also makes `cargo test` build the
//! binary that the end-to-end tests in `tests/` drive.

use std::process::Command;

fn yardmaster(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_yardmaster"))
        .args(args)
        .output()
        .expect("run yardmaster")
}

#[test]
fn help_lists_the_commands() {
    let out = yardmaster(&["--help"]);
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    for command in ["serve", "plugin", "simulate"] {
        assert!(text.contains(command), "`{command}` missing from:\n{text}");
    }
}

#[test]
fn version_is_the_crate_version() {
    let out = yardmaster(&["--version"]);
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        format!("yardmaster {}", env!("CARGO_PKG_VERSION"))
    );
}

#[test]
fn an_unknown_command_is_refused() {
    let out = yardmaster(&["frobnicate"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("unrecognized subcommand 'frobnicate'"));
}
