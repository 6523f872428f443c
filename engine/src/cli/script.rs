//! `yardmaster script schedule|list|show|authorize|cancel|watch`: scheduled scripts.

use std::collections::BTreeSet;
use std::path::PathBuf;

use anyhow::Context;
use chrono::{DateTime, Utc};
use serde_json::{Map, Value, json};

use super::table::Table;
use super::{ApiArgs, cell, encode, parse_duration, payload, print_json, rows, status_text};
use crate::client::Client;

/// `yardmaster script ...`
#[derive(Debug, clap::Subcommand)]
pub enum ScriptCommand {
    /// Schedule a script to run on sites at a future time; it waits for another user's
    /// approval (`script authorize`).
    Schedule(Box<ScheduleArgs>),
    /// List scheduled scripts.
    List(ListArgs),
    /// Show one scheduled script and its progress.
    Show { id: String },
    /// Approve a scheduled script (needs script:authorize, or the link's token); with
    /// --request, ask for approval instead (notifies the recipients with a link).
    Authorize(AuthorizeArgs),
    /// Cancel a scheduled script; a launched one stops before its unstarted sites.
    Cancel { id: String },
    /// Follow a scheduled script until it finishes, with a live per-site progress bar.
    /// Exits 0 only when every site completed.
    Watch(super::watch::WatchArgs),
}

#[derive(Debug, clap::Args)]
pub struct ScheduleArgs {
    /// A human-readable name, unique in your organization.
    #[arg(long)]
    pub description: String,
    /// The RouterOS script itself.
    #[arg(
        long,
        conflicts_with_all = ["file", "template", "community"],
        required_unless_present_any = ["file", "template", "community"]
    )]
    pub script: Option<String>,
    /// Read the script from this file (`-` for standard input).
    #[arg(long, conflicts_with_all = ["template", "community"])]
    pub file: Option<PathBuf>,
    /// Render this template (its id) as the script.
    #[arg(long, conflicts_with = "community")]
    pub template: Option<String>,
    /// The template's version (the current one when absent).
    #[arg(long, requires = "template")]
    pub template_version: Option<u64>,
    /// A value for the template: `NAME=VALUE`; repeat.
    #[arg(long = "var", value_name = "NAME=VALUE", requires = "template")]
    pub vars: Vec<String>,
    /// Run this community script (its id), as pinned.
    #[arg(long)]
    pub community: Option<String>,
    /// Site ids to run on; repeat, or separate with commas.
    #[arg(
        long = "site",
        alias = "sites",
        value_delimiter = ',',
        required_unless_present = "all_sites"
    )]
    pub sites: Vec<String>,
    /// Run on every site of your organization.
    #[arg(long, conflicts_with = "sites")]
    pub all_sites: bool,
    /// When to launch, in UTC (RFC 3339, e.g. 2030-01-01T04:00:00Z).
    #[arg(
        long,
        conflicts_with = "launch_in",
        required_unless_present = "launch_in"
    )]
    pub launch_at: Option<DateTime<Utc>>,
    /// Launch this long from now: 30s, 15m, 2h, ...
    #[arg(long = "in", value_name = "DURATION", value_parser = parse_duration)]
    pub launch_in: Option<std::time::Duration>,
    /// Users to notify (and ask for approval); repeat, or separate with commas.
    #[arg(long, value_delimiter = ',')]
    pub notify: Vec<String>,
    /// A site that runs the script first; the rest launch only if it succeeds.
    #[arg(long)]
    pub test_site: Option<String>,
    /// Back up each site's configuration before running.
    #[arg(long)]
    pub make_backup: bool,
    /// Skip sites that are offline at launch.
    #[arg(long)]
    pub abort_if_offline: bool,
    /// Rule ids of the script's lint findings you accept (`acknowledged_risks`): every
    /// critical one must be named; repeat, or separate with commas.
    #[arg(long = "acknowledge", value_name = "RULE", value_delimiter = ',')]
    pub acknowledged_risks: Vec<String>,
    /// Dead-man rollback on each site (`30s`, `5m`): the router restores a backup taken
    /// before the script unless the engine reaches it again afterwards.
    #[arg(long)]
    pub rollback_after: Option<String>,
    /// Print only the new script's id (for `ID=$(yardmaster script schedule ...)`).
    #[arg(long, short)]
    pub quiet: bool,
}

#[derive(Debug, clap::Args)]
pub struct ListArgs {
    /// Only scripts whose description contains this text.
    #[arg(long)]
    pub name: Option<String>,
    /// Page number (from 1).
    #[arg(long)]
    pub page: Option<u32>,
    /// Scripts per page.
    #[arg(long)]
    pub page_size: Option<u32>,
}

#[derive(Debug, clap::Args)]
pub struct AuthorizeArgs {
    pub id: String,
    /// Ask for approval (notifying the recipients) instead of approving.
    #[arg(long, conflicts_with = "link_token")]
    pub request: bool,
    /// Approve with the token of an approval link instead of the script:authorize scope.
    #[arg(long)]
    pub link_token: Option<String>,
}

pub(super) async fn run(api: &ApiArgs, command: ScriptCommand) -> anyhow::Result<bool> {
    let client = api.client()?;
    match command {
        ScriptCommand::Schedule(args) => schedule(api, &client, *args).await?,
        ScriptCommand::List(args) => list(api, &client, args).await?,
        ScriptCommand::Show { id } => {
            let value = client.get(&path(&id, "")).await?;
            if api.json {
                print_json(&value)?;
            } else {
                show(payload(&value));
            }
        }
        ScriptCommand::Authorize(args) => {
            let value = if args.request {
                client.get(&path(&args.id, "/authorize")).await?
            } else {
                let body = match &args.link_token {
                    Some(token) => json!({ "token": token }),
                    None => json!({}),
                };
                client.post(&path(&args.id, "/authorize"), &body).await?
            };
            if api.json {
                print_json(&value)?;
            } else if args.request {
                println!(
                    "authorization of {} requested; the recipients are notified",
                    args.id
                );
            } else {
                let script = payload(&value);
                let script = script.get("schedule").unwrap_or(script);
                println!(
                    "scheduled script {} authorized: {}, launches {}",
                    args.id,
                    status_text(script),
                    launch_text(script)
                );
            }
        }
        ScriptCommand::Cancel { id } => {
            let value = client.post(&path(&id, "/cancel"), &json!({})).await?;
            if api.json {
                print_json(&value)?;
            } else {
                println!("scheduled script {id} cancelled");
            }
        }
        ScriptCommand::Watch(args) => return super::watch::watch(api, &client, args).await,
    }
    Ok(true)
}

fn path(id: &str, suffix: &str) -> String {
    format!("/scripts/scheduled/{}{suffix}", encode(id))
}

async fn schedule(api: &ApiArgs, client: &Client, args: ScheduleArgs) -> anyhow::Result<()> {
    let script = match (&args.script, &args.file) {
        (Some(script), _) => script.clone(),
        (None, Some(file)) if file.as_os_str() == "-" => {
            let mut text = String::new();
            std::io::Read::read_to_string(&mut std::io::stdin(), &mut text)
                .context("cannot read the script from standard input")?;
            text
        }
        (None, Some(file)) => std::fs::read_to_string(file)
            .with_context(|| format!("cannot read the script from {}", file.display()))?,
        (None, None) if args.template.is_some() || args.community.is_some() => String::new(),
        (None, None) => {
            anyhow::bail!("give the script with --script, --file, --template or --community")
        }
    };
    let launch_at = match (args.launch_at, args.launch_in) {
        (Some(at), _) => at,
        (None, Some(after)) => {
            Utc::now()
                + chrono::TimeDelta::from_std(after)
                    .map_err(|_| anyhow::anyhow!("--in: too far in the future"))?
        }
        (None, None) => anyhow::bail!("give the launch time with --launch-at or --in"),
    };
    let sites = if args.all_sites {
        all_sites(client).await?
    } else {
        args.sites.clone()
    };
    if sites.is_empty() {
        anyhow::bail!("no sites to run on: name them with --site, or use --all-sites");
    }
    let mut body = Map::new();
    body.insert("description".into(), json!(args.description));
    if let Some(template) = &args.template {
        body.insert("template_id".into(), json!(template));
        if let Some(v) = args.template_version {
            body.insert("template_version".into(), json!(v));
        }
        let mut vars = Map::new();
        for pair in &args.vars {
            let (k, v) = pair
                .split_once('=')
                .ok_or_else(|| anyhow::anyhow!("--var {pair}: write NAME=VALUE"))?;
            vars.insert(k.to_owned(), json!(v));
        }
        body.insert("variables".into(), Value::Object(vars));
    } else if let Some(community) = &args.community {
        body.insert("community_script_id".into(), json!(community));
    } else {
        body.insert("script".into(), json!(script));
    }
    body.insert(
        "launch_at".into(),
        json!(launch_at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)),
    );
    body.insert("sites".into(), json!(sites));
    body.insert("notify".into(), json!(args.notify));
    if let Some(test) = &args.test_site {
        body.insert("test_site_id".into(), json!(test));
    }
    body.insert("make_backup".into(), json!(args.make_backup));
    body.insert("abort_if_offline".into(), json!(args.abort_if_offline));
    body.insert("acknowledged_risks".into(), json!(args.acknowledged_risks));
    if let Some(window) = &args.rollback_after {
        body.insert("rollback_after".into(), json!(window));
    }
    let value = client
        .post("/scripts/scheduled", &Value::Object(body))
        .await?;
    if api.json {
        print_json(&value)?;
        return Ok(());
    }
    let created = payload(&value);
    let id = cell(created, "id");
    if args.quiet {
        println!("{id}");
        return Ok(());
    }
    println!(
        "scheduled script {id} created: {} on {} site(s), launches {}",
        status_text(created),
        sites.len(),
        launch_text(created)
    );
    println!("another user approves it with: yardmaster script authorize {id}");
    println!("follow it with:                yardmaster script watch {id}");
    Ok(())
}

/// Every site id of the caller's organization, page by page.
async fn all_sites(client: &Client) -> anyhow::Result<Vec<String>> {
    const PAGE: usize = 1000;
    let mut seen = BTreeSet::new();
    let mut ids = Vec::new();
    for page in 1.. {
        let value = client
            .get(&format!("/sites?page={page}&page_size={PAGE}"))
            .await?;
        let batch = rows(&value);
        let mut new = 0;
        for site in &batch {
            if let Some(id) = site.get("id").and_then(Value::as_str)
                && seen.insert(id.to_string())
            {
                ids.push(id.to_string());
                new += 1;
            }
        }
        let total = value.get("total").and_then(Value::as_u64);
        if new == 0 || total.is_some_and(|t| ids.len() as u64 >= t) {
            break;
        }
    }
    Ok(ids)
}

async fn list(api: &ApiArgs, client: &Client, args: ListArgs) -> anyhow::Result<()> {
    let mut query = Vec::new();
    if let Some(name) = &args.name {
        query.push(format!("name={}", encode(name)));
    }
    if args.page.is_some() || args.page_size.is_some() {
        query.push("paginate=true".to_string());
        query.push(format!("page={}", args.page.unwrap_or(1)));
        query.push(format!("page_size={}", args.page_size.unwrap_or(100)));
    }
    let path = if query.is_empty() {
        "/scripts/scheduled".to_string()
    } else {
        format!("/scripts/scheduled?{}", query.join("&"))
    };
    let value = client.get(&path).await?;
    if api.json {
        return print_json(&value);
    }
    let scripts = rows(&value);
    if scripts.is_empty() {
        println!("no scheduled scripts");
        return Ok(());
    }
    let mut table = Table::new(&[
        "id",
        "description",
        "status",
        "launch",
        "sites",
        "created by",
    ]);
    for s in &scripts {
        table.row(vec![
            cell(s, "id"),
            cell(s, "description"),
            status_text(s),
            launch_text(s),
            s.get("sites")
                .and_then(Value::as_array)
                .map_or("-".to_string(), |a| a.len().to_string()),
            cell(s, "created_by"),
        ]);
    }
    table.print();
    Ok(())
}

/// `2030-01-01T04:00:00Z (in 2 days)`, from `launch_at` and `t_minus`.
fn launch_text(script: &Value) -> String {
    let at = cell(script, "launch_at");
    match script.get("t_minus").and_then(Value::as_str) {
        Some(t) if !t.is_empty() => format!("{at} ({t})"),
        _ => at,
    }
}

fn show(script: &Value) {
    let field = |label: &str, key: &str| println!("{label:<14}{}", cell(script, key));
    field("id:", "id");
    field("description:", "description");
    println!("{:<14}{}", "status:", status_text(script));
    println!("{:<14}{}", "launch:", launch_text(script));
    field("created by:", "created_by");
    field("authorized:", "authorized_at");
    field("started:", "started_at");
    field("cancelled:", "cancelled_at");
    field("test site:", "test_site_id");
    field("make backup:", "make_backup");
    field("skip offline:", "abort_if_offline");
    field("rollback:", "rollback_after");
    field("notify:", "notify");
    field("acknowledged:", "acknowledged_risks");
    let sites = script
        .get("sites")
        .and_then(Value::as_array)
        .map_or(0, Vec::len);
    println!("{:<14}{sites}", "sites:");
    if let Some(progress) = super::watch::Progress::of(script) {
        println!("{:<14}{}", "progress:", progress.render());
        if !progress.failed_sites.is_empty() {
            println!(
                "{:<14}{}",
                "failed sites:",
                progress.failed_sites.join(", ")
            );
        }
    }
    if let Some(summary) = script.get("summary").and_then(Value::as_str) {
        println!("{:<14}{summary}", "summary:");
    }
    println!("script:");
    for line in script
        .get("script")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .lines()
    {
        println!("  {line}");
    }
}
