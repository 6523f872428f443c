//! A plain description of what a script does, written from its parse: the summary a
//! script gets when no generator plugin is there to write one ("Adds 2 entries to /ip
//! firewall filter; sets /system identity; logs 1 message").

use std::collections::BTreeMap;

use super::{lexer, parser};

/// What the verbs of RouterOS menus do, as a sentence starts.
fn verb_phrase(verb: &str) -> Option<&'static str> {
    Some(match verb {
        "add" => "adds",
        "set" => "changes",
        "remove" => "removes",
        "disable" => "disables",
        "enable" => "enables",
        "print" => "reads",
        "export" => "exports",
        "save" => "saves",
        "load" => "loads",
        "run" => "runs",
        "reboot" => "reboots",
        "shutdown" => "shuts down",
        "reset-configuration" => "resets",
        "import" => "imports",
        "flush" => "flushes",
        "upgrade" | "install" => "upgrades",
        "find" | "get" => return None,
        _ => "runs",
    })
}

fn plural(n: usize, one: &str, many: &str) -> String {
    if n == 1 {
        format!("1 {one}")
    } else {
        format!("{n} {many}")
    }
}

/// One sentence (at most 200 characters) on what `script` does, from its commands.
pub fn describe(script: &str) -> String {
    let mut errors = Vec::new();
    let tokens = lexer::lex(script, &mut errors);
    let parsed = parser::parse(&tokens, errors);
    // (phrase, menu) -> count, in order of first appearance.
    let mut order: Vec<(String, String)> = Vec::new();
    let mut counts: BTreeMap<(String, String), usize> = BTreeMap::new();
    let mut logs = 0;
    for cmd in &parsed.commands {
        let (phrase, menu) = match cmd.colon.as_deref() {
            Some("log") => {
                logs += 1;
                continue;
            }
            Some(_) => continue,
            None => {
                let verb_at = cmd.words.iter().position(|w| parser::is_verb(w));
                let Some(at) = verb_at else { continue };
                let Some(phrase) = verb_phrase(&cmd.words[at]) else {
                    continue;
                };
                let menu = format!("/{}", cmd.words[..at].join(" "));
                (phrase.to_owned(), menu)
            }
        };
        let key = (phrase, menu);
        if !counts.contains_key(&key) {
            order.push(key.clone());
        }
        *counts.entry(key).or_default() += 1;
    }
    let mut parts: Vec<String> = order
        .iter()
        .map(|key| {
            let n = counts[key];
            let (phrase, menu) = key;
            match phrase.as_str() {
                "adds" => format!("adds {} to {menu}", plural(n, "entry", "entries")),
                "reboots" | "shuts down" | "resets" | "upgrades" => {
                    format!("{phrase} the router")
                }
                _ if n > 1 => format!("{phrase} {menu} ({n} times)"),
                _ => format!("{phrase} {menu}"),
            }
        })
        .collect();
    if logs > 0 {
        parts.push(format!("logs {}", plural(logs, "message", "messages")));
    }
    if parts.is_empty() {
        return "Runs a script with no menu commands.".into();
    }
    let total = parts.len();
    let mut text = String::new();
    for (i, part) in parts.into_iter().enumerate() {
        let piece = if i == 0 {
            let mut c = part.chars();
            c.next()
                .map(|f| f.to_uppercase().collect::<String>() + c.as_str())
                .unwrap_or_default()
        } else {
            format!("; {part}")
        };
        if text.len() + piece.len() > 190 {
            text.push_str(&format!("; and {} more", total - i));
            break;
        }
        text.push_str(&piece);
    }
    text.push('.');
    text
}

#[cfg(test)]
mod tests {
    use super::describe;

    #[test]
    fn a_script_is_described_by_what_its_commands_do() {
        assert_eq!(
            describe(
                "/ip firewall filter add chain=input action=accept\n\
                 /ip firewall filter add chain=input action=drop\n\
                 /system identity set name=edge\n:log info done\n"
            ),
            "Adds 2 entries to /ip firewall filter; changes /system identity; logs 1 message."
        );
        assert_eq!(
            describe("/ip firewall filter\nadd chain=forward action=accept\n/system reboot\n"),
            "Adds 1 entry to /ip firewall filter; reboots the router."
        );
        assert_eq!(
            describe(":local a 1\n:put $a\n"),
            "Runs a script with no menu commands."
        );
        let long: String = (0..60)
            .map(|i| format!("/interface{i} set x=1\n"))
            .collect();
        assert!(describe(&long).len() <= 220, "{}", describe(&long));
    }
}
