//! The command line's client side: `yardmaster site`, `script`, `job`, `template` and
//! `community` talk to a running engine through its HTTP API; `yardmaster token create`
//! issues bearer tokens from the engine's key on disk.
//!
//! Every client command takes `--url` and `--token` (or `YARDMASTER_URL` and
//! `YARDMASTER_TOKEN`), prints a table by default and the engine's JSON with `--json`.
//! An API error is printed as `error: <message> (<code>, see <doc_url>)` and the command
//! exits non-zero.

mod job;
mod library;
mod script;
mod site;
mod table;
pub mod token;
mod watch;

use std::time::Duration;

use crate::client::{Client, DEFAULT_URL};

pub use job::JobCommand;
pub use library::{CommunityCommand, TemplateCommand};
pub use script::ScriptCommand;
pub use site::SiteCommand;
pub use token::TokenCommand;

/// How to reach the engine, and how to print its answers.
#[derive(Debug, Clone, clap::Args)]
pub struct ApiArgs {
    /// The engine's URL.
    #[arg(long, global = true, env = "YARDMASTER_URL", default_value = DEFAULT_URL)]
    pub url: String,
    /// A bearer token (`yardmaster token create` issues one).
    #[arg(long, global = true, env = "YARDMASTER_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// Print the engine's JSON instead of a table.
    #[arg(long, global = true)]
    pub json: bool,
}

impl ApiArgs {
    pub fn client(&self) -> anyhow::Result<Client> {
        Ok(Client::new(&self.url, self.token.as_deref())?)
    }
}

/// `yardmaster site ...`
#[derive(Debug, clap::Args)]
pub struct SiteArgs {
    #[command(flatten)]
    pub api: ApiArgs,
    #[command(subcommand)]
    pub command: SiteCommand,
}

/// `yardmaster script ...`
#[derive(Debug, clap::Args)]
pub struct ScriptArgs {
    #[command(flatten)]
    pub api: ApiArgs,
    #[command(subcommand)]
    pub command: ScriptCommand,
}

/// `yardmaster job ...`
#[derive(Debug, clap::Args)]
pub struct JobArgs {
    #[command(flatten)]
    pub api: ApiArgs,
    #[command(subcommand)]
    pub command: JobCommand,
}

/// `yardmaster template ...`
#[derive(Debug, clap::Args)]
pub struct TemplateArgs {
    #[command(flatten)]
    pub api: ApiArgs,
    #[command(subcommand)]
    pub command: TemplateCommand,
}

/// `yardmaster community ...`
#[derive(Debug, clap::Args)]
pub struct CommunityArgs {
    #[command(flatten)]
    pub api: ApiArgs,
    #[command(subcommand)]
    pub command: CommunityCommand,
}

/// Runs `yardmaster template ...`.
pub async fn template(args: TemplateArgs) -> anyhow::Result<bool> {
    library::template(&args.api, args.command).await
}

/// Runs `yardmaster community ...`.
pub async fn community(args: CommunityArgs) -> anyhow::Result<bool> {
    library::community(&args.api, args.command).await
}

/// Runs `yardmaster site ...`.
pub async fn site(args: SiteArgs) -> anyhow::Result<bool> {
    site::run(&args.api, args.command).await
}

/// Runs `yardmaster script ...`; false when a watched script did not fully succeed.
pub async fn script(args: ScriptArgs) -> anyhow::Result<bool> {
    script::run(&args.api, args.command).await
}

/// Runs `yardmaster job ...`; false when a waited-for job failed.
pub async fn job(args: JobArgs) -> anyhow::Result<bool> {
    job::run(&args.api, args.command).await
}

/// Prints `value` as indented JSON.
pub(crate) fn print_json(value: &serde_json::Value) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

/// The payload of the `{"status": "success" | "ok", "data": ...}` envelope (seeds 001 and
/// 003), or the value itself when it has none.
pub(crate) fn payload(value: &serde_json::Value) -> &serde_json::Value {
    match (value.get("status"), value.get("data")) {
        (Some(serde_json::Value::String(status)), Some(data))
            if status == "success" || status == "ok" =>
        {
            data
        }
        _ => value,
    }
}

/// A scheduled script's status, with how it ended once it has: `launched (completed)`.
pub(crate) fn status_text(script: &serde_json::Value) -> String {
    let status = cell(script, "status");
    match script.get("outcome").and_then(|o| o.as_str()) {
        Some(outcome) => format!("{status} ({outcome})"),
        None => status,
    }
}

/// The records of a listing: a bare array, `data` (seed 001), `data.registries`
/// (seed 003), or `items`.
pub(crate) fn rows(value: &serde_json::Value) -> Vec<serde_json::Value> {
    let candidates = [
        Some(value),
        value.get("data"),
        value.get("data").and_then(|d| d.get("registries")),
        value.get("registries"),
        value.get("items"),
    ];
    candidates
        .into_iter()
        .flatten()
        .find_map(|v| v.as_array().cloned())
        .unwrap_or_default()
}

/// A field as text for a table cell: strings bare, `null` or missing as `-`, lists
/// joined with commas.
pub(crate) fn cell(row: &serde_json::Value, key: &str) -> String {
    match row.get(key) {
        None | Some(serde_json::Value::Null) => "-".to_string(),
        Some(serde_json::Value::String(s)) if s.is_empty() => "-".to_string(),
        Some(serde_json::Value::String(s)) => s.clone(),
        Some(serde_json::Value::Array(items)) if items.is_empty() => "-".to_string(),
        Some(serde_json::Value::Array(items)) => items
            .iter()
            .map(|i| {
                i.as_str()
                    .map(str::to_string)
                    .unwrap_or_else(|| i.to_string())
            })
            .collect::<Vec<_>>()
            .join(","),
        Some(other) => other.to_string(),
    }
}

/// Percent-encodes a path segment or query value.
pub(crate) fn encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Parses a duration such as `500ms`, `90s`, `15m`, `24h`, `7d`, `2w` or `1h30m`.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let bad = || {
        format!("`{text}` is not a duration; write a number and a unit, like 30s, 15m, 24h or 7d")
    };
    let mut rest = text.trim();
    if rest.is_empty() {
        return Err(bad());
    }
    let mut total_ms: u64 = 0;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        let letters = rest[digits..]
            .find(|c: char| !c.is_ascii_alphabetic())
            .map_or(rest.len(), |i| digits + i);
        let n: u64 = rest[..digits].parse().map_err(|_| bad())?;
        let unit_ms: u64 = match &rest[digits..letters] {
            "ms" => 1,
            "s" => 1_000,
            "m" => 60_000,
            "h" => 3_600_000,
            "d" => 86_400_000,
            "w" => 7 * 86_400_000,
            _ => return Err(bad()),
        };
        total_ms = n
            .checked_mul(unit_ms)
            .and_then(|v| total_ms.checked_add(v))
            .ok_or_else(bad)?;
        rest = &rest[letters..];
    }
    Ok(Duration::from_millis(total_ms))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_with_units_and_refuse_the_rest() {
        assert_eq!(parse_duration("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("24h"), Ok(Duration::from_secs(86_400)));
        assert_eq!(parse_duration("1h30m"), Ok(Duration::from_secs(5_400)));
        assert_eq!(parse_duration("2w"), Ok(Duration::from_secs(14 * 86_400)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        for bad in [
            "",
            "24",
            "h",
            "1y",
            "-1h",
            "1.5h",
            "1h 2m",
            "99999999999999999999d",
        ] {
            let e = parse_duration(bad).expect_err("not a duration");
            assert!(e.contains("not a duration"), "{bad}: {e}");
        }
    }

    #[test]
    fn listings_are_found_in_every_envelope() {
        let row = serde_json::json!({"id": "a"});
        for v in [
            serde_json::json!([row]),
            serde_json::json!({"status": "success", "data": [row]}),
            serde_json::json!({"data": {"registries": [row], "total": 1}}),
            serde_json::json!({"items": [row]}),
        ] {
            assert_eq!(rows(&v), vec![row.clone()], "{v}");
        }
        assert!(rows(&serde_json::json!({"x": 1})).is_empty());
    }

    #[test]
    fn cells_and_encoding() {
        let row = serde_json::json!({"a": "x", "b": null, "c": ["p", "q"], "d": 3, "e": ""});
        assert_eq!(cell(&row, "a"), "x");
        assert_eq!(cell(&row, "b"), "-");
        assert_eq!(cell(&row, "c"), "p,q");
        assert_eq!(cell(&row, "d"), "3");
        assert_eq!(cell(&row, "e"), "-");
        assert_eq!(cell(&row, "zz"), "-");
        assert_eq!(encode("a b/c"), "a%20b%2Fc");
    }
}
