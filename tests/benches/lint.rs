//! Script linter throughput: lints a generated script of about 1 MB (an `/export`-like
//! mix of context lines, `add` lines with quoted comments, `:foreach` loops with
//! `[find]`, expressions, and a few risky commands) and prints MB/s.
//!
//! `cargo bench -p yardmaster-tests --bench lint [-- MEGABYTES ROUNDS]`
//!
//! It prints, never asserts on time, and exits by itself.

use std::time::Instant;

fn arg(n: usize, default: usize) -> usize {
    std::env::args()
        .filter(|a| !a.starts_with('-'))
        .nth(n)
        .and_then(|a| a.parse().ok())
        .unwrap_or(default)
}

/// A script of at least `bytes` bytes.
fn script(bytes: usize) -> String {
    let mut s = String::with_capacity(bytes + 1024);
    let mut n = 0usize;
    while s.len() < bytes {
        n += 1;
        s.push_str("/ip firewall filter\n");
        s.push_str(&format!(
            "add action=accept chain=input comment=\"rule {n}: \\\"quoted\\\" \\41\" \\\n    connection-state=established,related protocol=tcp dst-port={}\n",
            n % 65535
        ));
        s.push_str("add action=drop chain=input in-interface-list=!LAN\n");
        s.push_str(&format!(
            ":local n{n} [/system identity get name]\n:foreach i in=[/interface find where name~\"ether\"] do={{\n  :if ([:len $n{n}] > 0) do={{ :log info (\"iface \" . [/interface get $i name] . $n{n}) }}\n}}\n"
        ));
        s.push_str(&format!(
            "/system scheduler add name=s{n} interval=1d on-event=\"/system backup save name=b{n}\"\n"
        ));
        if n.is_multiple_of(100) {
            s.push_str("/ip service set ssh port=2222\n/system reboot\n");
        }
    }
    s
}

fn main() {
    let megabytes = arg(0, 1).max(1);
    let rounds = arg(1, 10).max(1);
    let text = script(megabytes * 1024 * 1024);
    let report = yardmaster::lint::lint(&text);
    let started = Instant::now();
    for _ in 0..rounds {
        std::hint::black_box(yardmaster::lint::lint(std::hint::black_box(&text)));
    }
    let secs = started.elapsed().as_secs_f64();
    let mb = (text.len() * rounds) as f64 / (1024.0 * 1024.0);
    println!(
        "lint: {:.2} MB script, {} lines, {} findings (syntax_ok={}); {rounds} rounds in {secs:.2}s: {:.1} MB/s",
        text.len() as f64 / (1024.0 * 1024.0),
        text.lines().count(),
        report.findings.len(),
        report.syntax_ok,
        mb / secs
    );
}
