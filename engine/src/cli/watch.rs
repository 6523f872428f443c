//! `yardmaster script watch`: follows a scheduled script until it finishes, drawing one
//! progress bar over its sites (completed, failed, skipped, pending). On a terminal the
//! bar is redrawn in place; otherwise a line is printed each time something changes.
//!
//! A script has finished when it is `cancelled` or its `outcome` is set (`completed`,
//! `failed`, `partially_failed`); the watch succeeds only on `completed`.

use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::{ApiArgs, cell, encode, parse_duration, payload, print_json};
use crate::client::{Client, ClientError};

/// Width of the bar, in characters.
const BAR: usize = 40;
/// Failures to reach the engine in a row before giving up.
const UNREACHABLE_LIMIT: u32 = 10;

/// Statuses and outcomes after which a scheduled script does nothing more.
const FINISHED: &[&str] = &["completed", "failed", "partially_failed", "cancelled"];

/// How the script ended, if it has: its outcome, or `cancelled`.
fn finished(script: &Value) -> Option<String> {
    if let Some(outcome) = script.get("outcome").and_then(Value::as_str) {
        return Some(outcome.to_string());
    }
    let status = cell(script, "status");
    FINISHED.contains(&status.as_str()).then_some(status)
}

#[derive(Debug, clap::Args)]
pub struct WatchArgs {
    pub id: String,
    /// How often to ask the engine.
    #[arg(long, default_value = "1s", value_parser = parse_duration)]
    pub interval: Duration,
    /// Give up (exit non-zero) after this long.
    #[arg(long, value_parser = parse_duration)]
    pub timeout: Option<Duration>,
}

/// Where a script's sites stand.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Progress {
    pub completed: usize,
    pub failed: usize,
    pub pending: usize,
    pub skipped: usize,
    pub failed_sites: Vec<String>,
}

impl Progress {
    /// The progress of a scheduled script as the API shows it: `progress` with lists of
    /// site ids (or counts); before launch, every site is pending.
    pub(crate) fn of(script: &Value) -> Option<Progress> {
        let sites = script.get("sites").and_then(Value::as_array).map(Vec::len);
        let progress = script.get("progress").filter(|p| p.is_object());
        let Some(progress) = progress else {
            return sites.map(|n| Progress {
                pending: n,
                ..Progress::default()
            });
        };
        let count = |key: &str| match progress.get(key) {
            Some(Value::Array(items)) => items.len(),
            Some(Value::Number(n)) => n.as_u64().unwrap_or(0) as usize,
            _ => 0,
        };
        let failed_sites = progress
            .get("failed")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_string))
                    .collect()
            })
            .unwrap_or_default();
        Some(Progress {
            completed: count("completed"),
            failed: count("failed"),
            pending: count("pending"),
            skipped: count("skipped"),
            failed_sites,
        })
    }

    fn total(&self) -> usize {
        self.completed + self.failed + self.pending + self.skipped
    }

    /// `[####xx......]  4/12 completed, 2 failed, 6 pending` (and `, 1 skipped` when any
    /// site was skipped as offline).
    pub(crate) fn render(&self) -> String {
        let total = self.total();
        let cells = |n: usize| {
            if total == 0 {
                0
            } else {
                (n * BAR).div_ceil(total).min(BAR)
            }
        };
        let done = cells(self.completed);
        let failed = cells(self.failed).min(BAR - done);
        let skipped = cells(self.skipped).min(BAR - done - failed);
        let pending = BAR - done - failed - skipped;
        let mut text = format!(
            "[{}{}{}{}] {:>width$}/{total} completed, {} failed, {} pending",
            "#".repeat(done),
            "x".repeat(failed),
            "-".repeat(skipped),
            ".".repeat(pending),
            self.completed,
            self.failed,
            self.pending,
            width = total.to_string().len(),
        );
        if self.skipped > 0 {
            text.push_str(&format!(", {} skipped", self.skipped));
        }
        text
    }
}

/// One line of the watch: the bar and the script's status.
fn line(script: &Value) -> String {
    let status = cell(script, "status");
    let progress = Progress::of(script).unwrap_or_default();
    let mut text = format!("{}  {}", progress.render(), super::status_text(script));
    if matches!(status.as_str(), "unauthorized" | "scheduled")
        && let Some(t) = script.get("t_minus").and_then(Value::as_str)
    {
        text.push_str(&format!(", launches {t}"));
    }
    text
}

pub(super) async fn watch(api: &ApiArgs, client: &Client, args: WatchArgs) -> anyhow::Result<bool> {
    let path = format!("/scripts/scheduled/{}", encode(&args.id));
    let tty = std::io::stdout().is_terminal() && !api.json;
    let started = Instant::now();
    let mut last = String::new();
    let mut unreachable = 0;
    let script = loop {
        let value = match client.get(&path).await {
            Ok(value) => {
                unreachable = 0;
                value
            }
            Err(ClientError::Unreachable { .. }) if unreachable < UNREACHABLE_LIMIT => {
                unreachable += 1;
                tokio::time::sleep(args.interval).await;
                continue;
            }
            Err(e) => {
                if tty {
                    println!();
                }
                return Err(e.into());
            }
        };
        let script = payload(&value).clone();
        if api.json {
            let text = script.to_string();
            if text != last {
                println!("{text}");
                last = text;
            }
        } else {
            let text = line(&script);
            if tty {
                print!("\r\x1b[2K{text}");
                let _ = std::io::stdout().flush();
            } else if text != last {
                println!("{text}");
            }
            last = text;
        }
        if finished(&script).is_some() {
            break script;
        }
        if let Some(limit) = args.timeout
            && started.elapsed() >= limit
        {
            if tty {
                println!();
            }
            anyhow::bail!(
                "gave up after {}s: scheduled script {} is still {}",
                limit.as_secs(),
                args.id,
                super::status_text(&script)
            );
        }
        tokio::time::sleep(args.interval).await;
    };
    if tty {
        println!();
    }
    let how = finished(&script).unwrap_or_default();
    let progress = Progress::of(&script).unwrap_or_default();
    let success = how == "completed" && progress.failed == 0;
    if api.json {
        print_json(&script)?;
    } else if success {
        println!(
            "scheduled script {} completed on {} site(s)",
            args.id, progress.completed
        );
    } else {
        println!("scheduled script {} finished: {how}", args.id);
        if !progress.failed_sites.is_empty() {
            println!("failed sites: {}", progress.failed_sites.join(", "));
        }
    }
    Ok(success)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn progress_reads_lists_and_counts() {
        let s = json!({"sites": ["a", "b", "c", "d"], "status": "launched",
            "progress": {"completed": ["a"], "failed": ["b"], "pending": ["c", "d"]}});
        let p = Progress::of(&s).expect("progress");
        assert_eq!((p.completed, p.failed, p.pending), (1, 1, 2));
        assert_eq!(p.failed_sites, vec!["b"]);
        let counted = json!({"progress": {"completed": 3, "failed": 0, "pending": 1}});
        assert_eq!(Progress::of(&counted).expect("counts").completed, 3);
        let before = json!({"sites": ["a", "b"], "progress": null});
        assert_eq!(Progress::of(&before).expect("pending").pending, 2);
    }

    #[test]
    fn the_bar_fills_with_what_is_done() {
        let p = Progress {
            completed: 25,
            failed: 5,
            pending: 20,
            skipped: 0,
            failed_sites: vec![],
        };
        let text = p.render();
        assert!(
            text.starts_with(&format!(
                "[{}{}{}]",
                "#".repeat(20),
                "x".repeat(4),
                ".".repeat(16)
            )),
            "{text}"
        );
        assert!(
            text.ends_with("25/50 completed, 5 failed, 20 pending"),
            "{text}"
        );
        let all = Progress {
            completed: 3,
            ..Progress::default()
        };
        assert!(all.render().starts_with(&format!("[{}]", "#".repeat(BAR))));
        assert!(
            Progress::default()
                .render()
                .starts_with(&format!("[{}]", ".".repeat(BAR)))
        );
        let s = json!({"status": "scheduled", "t_minus": "in 5 seconds", "sites": ["a"]});
        assert!(
            line(&s).ends_with("scheduled, launches in 5 seconds"),
            "{}",
            line(&s)
        );
        let skipped = Progress {
            completed: 1,
            skipped: 1,
            ..Progress::default()
        };
        assert!(
            skipped
                .render()
                .ends_with("1/2 completed, 0 failed, 0 pending, 1 skipped")
        );
    }

    #[test]
    fn a_script_is_finished_by_its_outcome_or_cancellation() {
        assert_eq!(
            finished(&json!({"status": "launched", "outcome": null})),
            None
        );
        assert_eq!(finished(&json!({"status": "scheduled"})), None);
        assert_eq!(
            finished(&json!({"status": "launched", "outcome": "partially_failed"})).as_deref(),
            Some("partially_failed")
        );
        assert_eq!(
            finished(&json!({"status": "cancelled", "outcome": null})).as_deref(),
            Some("cancelled")
        );
    }
}
