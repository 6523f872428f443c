//! The safety rules: one entry of [`RULES`] each, with its id, severity, message and
//! the test it makes of one command (with the whole script in view, for rules that
//! depend on what came before). Adding a rule is adding an entry here.
//!
//! Paths are matched a segment at a time, and a written segment matches when it is the
//! rule's segment or a prefix of it of 2 letters or more, as RouterOS accepts unique
//! abbreviations (`/sys reset-conf`, `/system backup lo`). An ambiguous prefix RouterOS
//! would refuse still matches here, which errs on the side of a finding.

use super::Severity;
use super::parser::{Command, Value};

pub(crate) struct Rule {
    pub id: &'static str,
    pub severity: Severity,
    pub message: &'static str,
    pub check: fn(&[Command], usize) -> bool,
}

/// Whether `written` names `full`: the same, or a prefix of it of 2 letters or more.
fn seg(written: &str, full: &str) -> bool {
    written == full || (written.len() >= 2 && full.starts_with(written))
}

/// Whether the command's path starts with `pattern` (each element `a|b` alternatives).
fn path(cmd: &Command, pattern: &[&str]) -> bool {
    cmd.colon.is_none()
        && cmd.words.len() >= pattern.len()
        && pattern
            .iter()
            .zip(&cmd.words)
            .all(|(p, w)| p.split('|').any(|alt| seg(w, alt)))
}

/// The value of the named argument (the name abbreviated or not).
fn arg<'c>(cmd: &'c Command, name: &str) -> Option<&'c Value> {
    cmd.args
        .iter()
        .find(|a| a.name.as_deref().is_some_and(|n| seg(n, name)))
        .map(|a| &a.value)
}

fn arg_is(cmd: &Command, name: &str, values: &[&str]) -> bool {
    arg(cmd, name)
        .and_then(Value::text)
        .is_some_and(|t| values.iter().any(|v| t.eq_ignore_ascii_case(v)))
}

/// The command that `[ ... ]` values of this command start with.
fn substituted<'c>(all: &'c [Command], cmd: &Command) -> impl Iterator<Item = &'c Command> {
    cmd.args
        .iter()
        .filter_map(|a| match a.value {
            Value::Subst(Some(i)) => all.get(i),
            _ => None,
        })
        .collect::<Vec<_>>()
        .into_iter()
}

/// An argument, of the command or of a `[find ...]` it holds, with this value.
fn mentions(all: &[Command], cmd: &Command, name: &str, value: &str) -> bool {
    arg_is(cmd, name, &[value]) || substituted(all, cmd).any(|c| arg_is(c, name, &[value]))
}

const MANAGEMENT_SERVICES: &[&str] = &["api", "api-ssl", "ssh", "winbox", "www", "www-ssl"];

/// A `/ip service` change that may cut off management: unless every service it names
/// is not a management one.
fn touches_management_service(all: &[Command], cmd: &Command, verb: usize) -> bool {
    let mut named: Vec<String> = cmd.words.iter().skip(verb + 1).cloned().collect();
    if let Some(t) = arg(cmd, "numbers").and_then(Value::text) {
        named.extend(t.split(',').map(str::to_owned));
    }
    for c in substituted(all, cmd) {
        if let Some(t) = arg(c, "name").and_then(Value::text) {
            named.push(t.to_owned());
        }
    }
    named.is_empty()
        || named
            .iter()
            .any(|n| MANAGEMENT_SERVICES.contains(&n.to_ascii_lowercase().as_str()))
}

fn input_drop(cmd: &Command) -> bool {
    path(cmd, &["ip|ipv6", "firewall", "filter", "add"])
        && arg_is(cmd, "chain", &["input"])
        && arg_is(cmd, "action", &["drop", "reject"])
}

/// An input accept rule of the same address family as `drop`. `accept` is a filter
/// rule's default action, and `/export` leaves defaults out.
fn input_accept(cmd: &Command, drop: &Command) -> bool {
    cmd.words.first() == drop.words.first()
        && path(cmd, &["ip|ipv6", "firewall", "filter", "add"])
        && arg_is(cmd, "chain", &["input"])
        && (arg(cmd, "action").is_none() || arg_is(cmd, "action", &["accept"]))
}

pub(crate) static RULES: &[Rule] = &[
    Rule {
        id: "factory-reset",
        severity: Severity::Critical,
        message: "resets the router to factory settings",
        check: |all, i| path(&all[i], &["system", "reset-configuration"]),
    },
    Rule {
        id: "backup-load",
        severity: Severity::Critical,
        message: "loads a backup, replacing the whole configuration",
        check: |all, i| path(&all[i], &["system", "backup", "load"]),
    },
    Rule {
        id: "package-removal",
        severity: Severity::Critical,
        message: "uninstalls or downgrades RouterOS packages",
        check: |all, i| path(&all[i], &["system", "package", "uninstall|downgrade"]),
    },
    Rule {
        id: "disk-format",
        severity: Severity::Critical,
        message: "formats a disk",
        check: |all, i| {
            path(&all[i], &["disk", "format-drive"]) || path(&all[i], &["system", "format-drive"])
        },
    },
    Rule {
        id: "device-mode",
        severity: Severity::Critical,
        message: "changes the device mode, which needs physical access to undo",
        check: |all, i| path(&all[i], &["system", "device-mode", "update|set"]),
    },
    Rule {
        id: "user-change",
        severity: Severity::High,
        message: "removes or disables users, or changes their groups",
        check: |all, i| {
            let c = &all[i];
            path(c, &["user", "remove|disable"])
                || path(c, &["user", "set"])
                    && (arg(c, "group").is_some() || arg_is(c, "disabled", &["yes"]))
                || path(c, &["user", "group", "remove|set"])
        },
    },
    Rule {
        id: "management-service",
        severity: Severity::Critical,
        message: "disables or re-binds a management service (api, ssh, winbox, www)",
        check: |all, i| {
            let c = &all[i];
            let disables = path(c, &["ip", "service", "disable|remove"]);
            let rebinds = path(c, &["ip", "service", "set"])
                && (arg(c, "address").is_some()
                    || arg(c, "port").is_some()
                    || arg_is(c, "disabled", &["yes"]));
            (disables || rebinds) && touches_management_service(all, c, 2)
        },
    },
    Rule {
        id: "input-drop-without-accept",
        severity: Severity::Critical,
        message: "drops input traffic with no earlier accept rule in this script: it may lock out management",
        check: |all, i| input_drop(&all[i]) && !all[..i].iter().any(|c| input_accept(c, &all[i])),
    },
    Rule {
        id: "firewall-filter-removal",
        severity: Severity::High,
        message: "removes or disables firewall filter rules",
        check: |all, i| {
            path(
                &all[i],
                &["ip|ipv6", "firewall", "filter", "remove|disable"],
            )
        },
    },
    Rule {
        id: "bridge-vlan-filtering",
        severity: Severity::High,
        message: "turns on bridge VLAN filtering, which can cut the management path",
        check: |all, i| {
            path(&all[i], &["interface", "bridge", "set|add"])
                && arg_is(&all[i], "vlan-filtering", &["yes"])
        },
    },
    Rule {
        id: "mac-server-none",
        severity: Severity::High,
        message: "turns off MAC access, the way back in when IP access is lost",
        check: |all, i| {
            path(&all[i], &["tool", "mac-server", "set"])
                && arg_is(&all[i], "allowed-interface-list", &["none"])
                || path(&all[i], &["tool", "mac-server", "mac-winbox", "set"])
                    && arg_is(&all[i], "allowed-interface-list", &["none"])
        },
    },
    Rule {
        id: "management-address",
        severity: Severity::Critical,
        message: "removes or changes an IP address, which may be the management address",
        check: |all, i| {
            let c = &all[i];
            path(c, &["ip|ipv6", "address", "remove|disable"])
                || path(c, &["ip|ipv6", "address", "set"])
                    && (arg(c, "address").is_some()
                        || arg(c, "interface").is_some()
                        || arg_is(c, "disabled", &["yes"]))
        },
    },
    Rule {
        id: "default-route",
        severity: Severity::Critical,
        message: "removes or changes the default route",
        check: |all, i| {
            let c = &all[i];
            path(c, &["ip", "route", "remove|disable|set"])
                && mentions(all, c, "dst-address", "0.0.0.0/0")
        },
    },
    Rule {
        id: "certificate-removal",
        severity: Severity::High,
        message: "removes certificates",
        check: |all, i| path(&all[i], &["certificate", "remove"]),
    },
    Rule {
        id: "reboot",
        severity: Severity::Warning,
        message: "reboots, shuts down or upgrades the router",
        check: |all, i| {
            let c = &all[i];
            path(c, &["system", "reboot|shutdown"])
                || path(c, &["system", "package", "update", "install"])
                || path(c, &["system", "routerboard", "upgrade"])
        },
    },
    Rule {
        id: "file-removal",
        severity: Severity::Warning,
        message: "removes backups, exported scripts, scripts or scheduler entries",
        check: |all, i| {
            let c = &all[i];
            let named_file = |t: &str| {
                let t = t.to_ascii_lowercase();
                t.ends_with(".backup") || t.ends_with(".rsc")
            };
            let file = path(c, &["file", "remove"])
                && (c.words.iter().skip(2).any(|w| named_file(w))
                    || c.args
                        .iter()
                        .any(|a| a.value.text().is_some_and(named_file))
                    || substituted(all, c).any(|f| {
                        f.words.iter().any(|w| seg(w, "find"))
                            && arg(f, "name").and_then(Value::text).is_none_or(named_file)
                    }));
            file || path(c, &["system", "script|scheduler", "remove"])
        },
    },
    Rule {
        id: "opaque-code",
        severity: Severity::Warning,
        message: "runs code the linter cannot see: an imported or fetched file, a script named by reference, or code built at run time",
        check: |all, i| {
            let c = &all[i];
            path(c, &["import"])
                || path(c, &["tool", "fetch"]) && all[i..].iter().any(|l| path(l, &["import"]))
                || super::code_values(c)
                    .iter()
                    .any(|v| !matches!(v, Value::Literal { .. }))
        },
    },
];
