use std::collections::BTreeMap;

use super::*;
use crate::lint::lint;

fn var(name: &str, kind: VariableType) -> Variable {
    Variable {
        name: name.into(),
        description: String::new(),
        kind,
        default: None,
        allowed: None,
    }
}

fn values(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// The commands a rendered script runs, as the linter reads them: what an injection
/// would change.
fn command_count(script: &str) -> usize {
    script
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.trim_start().starts_with('#'))
        .count()
}

const INJECTIONS: &[&str] = &[
    "x\"; /system reset-configuration; :put \"",
    "x\" ; /system reset-configuration",
    "$[/system reset-configuration]",
    "\\\"; /system reboot; :put \\\"",
    "a\\",
    "x?y",
    "[/system reboot]",
    "$(/system reboot)",
    "} /system reboot {",
    "x ; /user remove admin",
    "#comment\" /system reboot",
];

#[test]
fn a_string_value_never_becomes_a_command() {
    let vars = [var("name", VariableType::String)];
    for content in [
        "/system identity set name={{name}}\n",
        "/system identity set name=\"edge-{{name}}\"\n",
        ":log info \"renamed to {{name}} today\"\n",
        "# set by template: {{name}}\n/system identity set name={{name}}\n",
        "# an odd \" quote in a comment\n/system identity set name={{name}}\n",
    ] {
        check_declarations(&vars, content).expect(content);
        for bad in INJECTIONS {
            let out = render(content, &vars, &values(&[("name", bad)])).expect(bad);
            let report = lint(&out);
            assert!(
                report.syntax_ok,
                "{content:?} with {bad:?} gave {out:?}: {report:?}"
            );
            assert!(
                report.findings.iter().all(|f| f.rule != "factory-reset"
                    && f.rule != "reboot"
                    && f.rule != "user-change"),
                "{content:?} with {bad:?} gave {out:?}: {report:?}"
            );
            assert_eq!(command_count(&out), command_count(content), "{out:?}");
        }
    }
}

#[test]
fn values_are_written_for_where_they_stand() {
    let vars = [
        var("name", VariableType::String),
        var("addr", VariableType::Ip),
        var("net", VariableType::IpPrefix),
        var("count", VariableType::Integer),
        var("iface", VariableType::InterfaceName),
    ];
    let content = "/ip address add address={{addr}}/24 interface={{iface}} comment=\"{{name}}\"\n\
                   /ip route add dst-address={{net}} distance={{count}}\n";
    let out = render(
        content,
        &vars,
        &values(&[
            ("name", "uplink \"A\" $x"),
            ("addr", "10.0.0.1"),
            ("net", "10.50.0.0/16"),
            ("count", "-3"),
            ("iface", "ether1 - wan"),
        ]),
    )
    .expect("render");
    assert_eq!(
        out,
        "/ip address add address=10.0.0.1/24 interface=\"ether1 - wan\" comment=\"uplink \\\"A\\\" \\$x\"\n\
         /ip route add dst-address=10.50.0.0/16 distance=-3\n"
    );
    assert!(lint(&out).syntax_ok);
}

#[test]
fn each_type_refuses_what_it_does_not_hold() {
    let mut level = var("level", VariableType::Enum);
    level.allowed = Some(vec!["info".into(), "warning".into()]);
    for (v, bad) in [
        (var("n", VariableType::Integer), "1; /system reboot"),
        (var("n", VariableType::Integer), "1.5"),
        (var("n", VariableType::Integer), ""),
        (var("a", VariableType::Ip), "10.0.0.1; /system reboot"),
        (var("a", VariableType::Ip), "10.0.0.256"),
        (var("p", VariableType::IpPrefix), "10.0.0.0/33"),
        (var("p", VariableType::IpPrefix), "10.0.0.0"),
        (var("p", VariableType::IpPrefix), "10.0.0.0/8 x"),
        (var("i", VariableType::InterfaceName), ""),
        (var("s", VariableType::String), "two\nlines"),
        (level.clone(), "debug"),
    ] {
        let content = format!("/log info {{{{{}}}}}", v.name);
        let e = render(
            &content,
            std::slice::from_ref(&v),
            &values(&[(&v.name, bad)]),
        )
        .expect_err(bad);
        assert!(matches!(e, TemplateError::Value(_)), "{e}");
        assert!(e.to_string().contains(&v.name), "{e}");
    }
}

#[test]
fn defaults_fill_in_and_missing_or_unknown_values_are_refused() {
    let mut dns = var("dns", VariableType::Ip);
    dns.default = Some("1.1.1.1".into());
    let vars = [dns, var("name", VariableType::String)];
    let content = "/ip dns set servers={{dns}}\n/system identity set name={{ name }}\n";
    let out = render(content, &vars, &values(&[("name", "edge")])).expect("render");
    assert_eq!(
        out,
        "/ip dns set servers=1.1.1.1\n/system identity set name=\"edge\"\n"
    );
    let missing = render(content, &vars, &values(&[])).expect_err("missing");
    assert!(
        missing.to_string().contains("`name` needs a value"),
        "{missing}"
    );
    let unknown =
        render(content, &vars, &values(&[("name", "a"), ("nope", "b")])).expect_err("unknown");
    assert!(unknown.to_string().contains("`nope`"), "{unknown}");
}

#[test]
fn declarations_are_checked() {
    let content = "/log info {{a}}";
    let mut e = var("a", VariableType::Enum);
    assert!(check_declarations(std::slice::from_ref(&e), content).is_err());
    e.allowed = Some(vec!["x".into()]);
    assert!(check_declarations(std::slice::from_ref(&e), content).is_ok());
    let mut s = var("a", VariableType::String);
    s.allowed = Some(vec!["x".into()]);
    assert!(check_declarations(&[s], content).is_err());
    let mut d = var("a", VariableType::Integer);
    d.default = Some("ten".into());
    assert!(check_declarations(&[d], content).is_err());
    assert!(check_declarations(&[var("1a", VariableType::String)], "/x").is_err());
    assert!(
        check_declarations(
            &[
                var("a", VariableType::String),
                var("a", VariableType::String)
            ],
            content
        )
        .is_err()
    );
    // Undeclared placeholders, and placeholders that would name a variable, run a
    // command or swallow an escape.
    assert!(check_declarations(&[], content).is_err());
    let a = [var("a", VariableType::String)];
    for bad in [
        ":put ${{a}}",
        ":put \"$[{{a}}]\"",
        ":put \"${{a}}\"",
        ":put \"\\{{a}}\"",
        ":put \\{{a}}",
    ] {
        assert!(check_declarations(&a, bad).is_err(), "{bad}");
    }
    assert!(check_declarations(&a, ":put \"\\\\{{a}}\"").is_ok());
}
