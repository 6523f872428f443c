//! `yardmaster job run|call|list`: jobs on one router (seed 001).

use std::time::{Duration, Instant};

use serde_json::{Map, Value, json};

use super::table::Table;
use super::{ApiArgs, cell, encode, parse_duration, payload, print_json, rows};

/// Statuses after which a job does nothing more.
const FINISHED: &[&str] = &["completed", "failed", "deleted"];

/// `yardmaster job ...`
#[derive(Debug, clap::Subcommand)]
pub enum JobCommand {
    /// Queue a script on one site (POST /api/asynchronous/{site}).
    Run(RunArgs),
    /// Run one RouterOS API command on a site and print its answer
    /// (POST /api/synchronous/{site}); for reads, not for changes.
    Call(CallArgs),
    /// List the jobs of one site.
    List {
        /// The site's id.
        site: String,
    },
}

#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// The site's id.
    pub site: String,
    /// RouterOS commands, separated by semicolons (at most 2,000 characters).
    #[arg(long)]
    pub script: String,
    /// What the job does (at most 100 characters).
    #[arg(long, default_value = "run from the command line")]
    pub description: String,
    /// Back up the configuration first.
    #[arg(long)]
    pub make_backup: bool,
    /// Dead-man rollback: the router restores a backup taken before the script after
    /// this long (`30s`, `5m`), unless the engine reaches it again afterwards.
    #[arg(long)]
    pub rollback_after: Option<String>,
    /// Run now rather than on the next pass of the job queue.
    #[arg(long)]
    pub express: bool,
    /// Mark the job completed as soon as the script is handed over, without waiting for
    /// its outcome (for a reboot, which cuts the connection).
    #[arg(long)]
    pub no_acknowledgement: bool,
    /// An https URL the job's status changes are posted to.
    #[arg(long)]
    pub notify_url: Option<String>,
    /// Submitting the same key again returns the same job instead of a second one.
    #[arg(long)]
    pub idempotency_key: Option<String>,
    /// Wait until the job finishes; exit non-zero if it failed.
    #[arg(long)]
    pub wait: bool,
    /// With --wait: give up after this long.
    #[arg(long, default_value = "10m", value_parser = parse_duration)]
    pub timeout: Duration,
}

#[derive(Debug, clap::Args)]
pub struct CallArgs {
    /// The site's id.
    pub site: String,
    /// The API command, e.g. /ip/address/print.
    pub command: String,
    /// API parameters, e.g. `=script=/log info hello`.
    #[arg(long)]
    pub parameters: Option<String>,
}

pub(super) async fn run(api: &ApiArgs, command: JobCommand) -> anyhow::Result<bool> {
    let client = api.client()?;
    match command {
        JobCommand::Run(args) => {
            let mut body = Map::new();
            body.insert("description".into(), json!(args.description));
            body.insert("script".into(), json!(args.script));
            body.insert("make_backup".into(), json!(args.make_backup));
            body.insert("express_execute".into(), json!(args.express));
            body.insert(
                "needs_acknowledgement".into(),
                json!(!args.no_acknowledgement),
            );
            if let Some(url) = &args.notify_url {
                body.insert("notify_url".into(), json!(url));
            }
            if let Some(window) = &args.rollback_after {
                body.insert("rollback_after".into(), json!(window));
            }
            if let Some(key) = &args.idempotency_key {
                body.insert("idempotency_key".into(), json!(key));
            }
            let path = format!("/api/asynchronous/{}", encode(&args.site));
            let value = client.post(&path, &Value::Object(body)).await?;
            let data = payload(&value).clone();
            if api.json && !args.wait {
                return print_json(&value).map(|()| true);
            }
            let key = cell(&data, "idempotency_key");
            if !api.json {
                println!(
                    "job queued on {}: request {} (idempotency key {key})",
                    cell(&data, "target"),
                    cell(&data, "request_id"),
                );
            }
            if !args.wait {
                return Ok(true);
            }
            let jobs_path = format!("/api/routers/{}/jobs", encode(&args.site));
            let started = Instant::now();
            let job = loop {
                let list = client.get(&jobs_path).await?;
                let found = rows(&list).into_iter().find(|j| {
                    cell(j, "idempotency_key") == key
                        || (cell(&data, "request_id") != "-"
                            && cell(j, "request_id") == cell(&data, "request_id"))
                });
                if let Some(job) = found
                    && FINISHED.contains(&cell(&job, "status").as_str())
                {
                    break job;
                }
                if started.elapsed() >= args.timeout {
                    anyhow::bail!(
                        "gave up after {}s: the job with idempotency key {key} has not finished",
                        args.timeout.as_secs()
                    );
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
            };
            let status = cell(&job, "status");
            // The job in full (its output) when the engine serves it; the summary otherwise.
            let detail = match client
                .get(&format!("/api/jobs/{}", encode(&cell(&job, "id"))))
                .await
            {
                Ok(value) => payload(&value).clone(),
                Err(_) => job.clone(),
            };
            if api.json {
                print_json(&detail)?;
            } else {
                println!("job {} {status}", cell(&job, "id"));
                if let Some(output) = detail
                    .get("output")
                    .and_then(Value::as_str)
                    .filter(|o| !o.trim().is_empty())
                {
                    println!("output:\n{}", output.trim_end());
                }
                if let Some(error) = job.get("error").filter(|e| !e.is_null()) {
                    println!("error: {}: {}", cell(error, "code"), cell(error, "message"));
                }
            }
            Ok(status == "completed")
        }
        JobCommand::Call(args) => {
            let mut body = Map::new();
            body.insert("command".into(), json!(args.command));
            if let Some(p) = &args.parameters {
                body.insert("parameters".into(), json!(p));
            }
            let path = format!("/api/synchronous/{}", encode(&args.site));
            let value = client.post(&path, &Value::Object(body)).await?;
            if api.json {
                return print_json(&value).map(|()| true);
            }
            let data = payload(&value);
            match data.as_array() {
                Some(items) if items.is_empty() => println!("no rows"),
                Some(items) => {
                    for (i, item) in items.iter().enumerate() {
                        if i > 0 {
                            println!();
                        }
                        match item.as_object() {
                            Some(fields) => {
                                for (k, v) in fields {
                                    println!(
                                        "{k}: {}",
                                        v.as_str().map_or_else(|| v.to_string(), str::to_string)
                                    );
                                }
                            }
                            None => println!("{item}"),
                        }
                    }
                }
                None => print_json(data)?,
            }
            Ok(true)
        }
        JobCommand::List { site } => {
            let value = client
                .get(&format!("/api/routers/{}/jobs", encode(&site)))
                .await?;
            if api.json {
                return print_json(&value).map(|()| true);
            }
            let jobs = rows(&value);
            if jobs.is_empty() {
                println!("no jobs");
                return Ok(true);
            }
            let mut table = Table::new(&[
                "id",
                "status",
                "description",
                "started",
                "finished",
                "error",
            ]);
            for job in &jobs {
                let finished = match cell(job, "completed_at").as_str() {
                    "-" => cell(job, "failed_at"),
                    at => at.to_string(),
                };
                table.row(vec![
                    cell(job, "id"),
                    cell(job, "status"),
                    cell(job, "description"),
                    cell(job, "started_at"),
                    finished,
                    job.get("error")
                        .filter(|e| !e.is_null())
                        .map_or_else(|| "-".to_string(), |e| cell(e, "code")),
                ]);
            }
            table.print();
            Ok(true)
        }
    }
}
