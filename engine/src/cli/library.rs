//! `yardmaster template list|show|create|update` and `yardmaster community
//! submit|list|show`: the script library through a running engine.

use std::path::PathBuf;

use serde_json::{Value, json};

use super::table::Table;
use super::{ApiArgs, cell, encode, print_json};

/// `yardmaster template ...`
#[derive(Debug, clap::Subcommand)]
pub enum TemplateCommand {
    /// List the templates you can use: your organization's and the global ones.
    List(TemplateListArgs),
    /// Show one template, with its variables and the lint of its content.
    Show { id: String },
    /// Create a private template from a file (`{{name}}` stands for a variable).
    Create(TemplateWriteArgs),
    /// Replace a private template's content: the previous one is kept as a version.
    Update {
        id: String,
        #[command(flatten)]
        args: TemplateWriteArgs,
    },
}

#[derive(Debug, clap::Args)]
pub struct TemplateListArgs {
    /// `public` (global) or `private` (your organization's).
    #[arg(long = "type")]
    pub kind: Option<String>,
    /// Only templates whose name or description contains this text.
    #[arg(long)]
    pub search: Option<String>,
    #[arg(long)]
    pub page: Option<u32>,
}

#[derive(Debug, clap::Args)]
pub struct TemplateWriteArgs {
    #[arg(long)]
    pub name: String,
    #[arg(long, default_value = "")]
    pub description: String,
    /// The script, read from this file.
    #[arg(long)]
    pub file: PathBuf,
    /// A variable: `NAME:TYPE` or `NAME:TYPE=DEFAULT` (types: string, integer, ip,
    /// ip-prefix, interface-name; an enum is `NAME:enum(a|b|c)[=DEFAULT]`). Repeat.
    #[arg(long = "var", value_name = "NAME:TYPE[=DEFAULT]")]
    pub variables: Vec<String>,
}

/// `yardmaster community ...`
#[derive(Debug, clap::Subcommand)]
pub enum CommunityCommand {
    /// Submit a script by its GitHub URL; it is fetched in the background.
    Submit {
        /// The raw URL of the file, or its page on GitHub.
        url: String,
        /// A raw URL of a README to keep beside it.
        #[arg(long)]
        readme: Option<String>,
    },
    /// List the community library.
    List {
        #[arg(long)]
        search: Option<String>,
        #[arg(long)]
        page: Option<u32>,
    },
    /// Show one community script with its content.
    Show { id: String },
}

/// `NAME:TYPE[=DEFAULT]`, `NAME:enum(a|b)[=DEFAULT]` as a template variable.
pub(crate) fn parse_variable(spec: &str) -> anyhow::Result<Value> {
    let (name, rest) = spec
        .split_once(':')
        .ok_or_else(|| anyhow::anyhow!("--var {spec}: write NAME:TYPE or NAME:TYPE=DEFAULT"))?;
    let (kind, default) = match rest.split_once('=') {
        Some((k, d)) => (k, Some(d)),
        None => (rest, None),
    };
    let mut v = json!({"name": name, "type": kind});
    if let Some(values) = kind.strip_prefix("enum(").and_then(|k| k.strip_suffix(')')) {
        v["type"] = json!("enum");
        v["allowed"] = json!(values.split('|').collect::<Vec<_>>());
    }
    if let Some(d) = default {
        v["default"] = json!(d);
    }
    Ok(v)
}

fn template_body(args: &TemplateWriteArgs) -> anyhow::Result<Value> {
    let content = std::fs::read_to_string(&args.file)
        .map_err(|e| anyhow::anyhow!("{}: {e}", args.file.display()))?;
    let mut body = json!({
        "name": args.name,
        "description": args.description,
        "content": content,
    });
    if !args.variables.is_empty() {
        body["variables"] = Value::Array(
            args.variables
                .iter()
                .map(|v| parse_variable(v))
                .collect::<anyhow::Result<_>>()?,
        );
    }
    Ok(body)
}

fn list_table(value: &Value, columns: &[&str], empty: &str) {
    let items = value["data"].as_array().cloned().unwrap_or_default();
    if items.is_empty() {
        println!("{empty}");
        return;
    }
    let mut table = Table::new(columns);
    for item in &items {
        table.row(columns.iter().map(|c| cell(item, c)).collect());
    }
    table.print();
    let meta = &value["meta"];
    if meta["last_page"].as_u64().unwrap_or(1) > 1 {
        println!(
            "page {} of {} ({} in all; --page for more)",
            cell(meta, "current_page"),
            cell(meta, "last_page"),
            cell(meta, "total")
        );
    }
}

fn query(pairs: &[(&str, Option<String>)]) -> String {
    let q: Vec<String> = pairs
        .iter()
        .filter_map(|(k, v)| v.as_ref().map(|v| format!("{k}={}", encode(v))))
        .collect();
    if q.is_empty() {
        String::new()
    } else {
        format!("?{}", q.join("&"))
    }
}

pub(super) async fn template(api: &ApiArgs, command: TemplateCommand) -> anyhow::Result<bool> {
    let client = api.client()?;
    let value = match &command {
        TemplateCommand::List(args) => {
            client
                .get(&format!(
                    "/scripts/templates{}",
                    query(&[
                        ("type", args.kind.clone()),
                        ("search", args.search.clone()),
                        ("page", args.page.map(|p| p.to_string())),
                    ])
                ))
                .await?
        }
        TemplateCommand::Show { id } => {
            client
                .get(&format!("/scripts/templates/{}", encode(id)))
                .await?
        }
        TemplateCommand::Create(args) => {
            client
                .post("/scripts/templates", &template_body(args)?)
                .await?
        }
        TemplateCommand::Update { id, args } => {
            client
                .put(
                    &format!("/scripts/templates/{}", encode(id)),
                    &template_body(args)?,
                )
                .await?
        }
    };
    if api.json {
        print_json(&value)?;
        return Ok(true);
    }
    match command {
        TemplateCommand::List(_) => list_table(
            &value,
            &["id", "name", "version", "read_only", "description"],
            "no templates",
        ),
        TemplateCommand::Show { .. } => {
            println!(
                "{} ({}), version {}",
                cell(&value, "name"),
                cell(&value, "id"),
                cell(&value, "version")
            );
            if let Some(vars) = value["variables"].as_array() {
                for v in vars {
                    println!(
                        "  {{{{{}}}}}: {}{}",
                        cell(v, "name"),
                        cell(v, "type"),
                        v["default"]
                            .as_str()
                            .map(|d| format!(" = {d}"))
                            .unwrap_or_default()
                    );
                }
            }
            println!("{}", value["content"].as_str().unwrap_or(""));
        }
        TemplateCommand::Create(_) | TemplateCommand::Update { .. } => println!(
            "template {} saved at version {}",
            cell(&value, "id"),
            cell(&value, "version")
        ),
    }
    Ok(true)
}

pub(super) async fn community(api: &ApiArgs, command: CommunityCommand) -> anyhow::Result<bool> {
    let client = api.client()?;
    let value = match &command {
        CommunityCommand::Submit { url, readme } => {
            let mut body = json!({ "github_url": url });
            if let Some(r) = readme {
                body["readme_url"] = json!(r);
            }
            client.post("/scripts/community-scripts", &body).await?
        }
        CommunityCommand::List { search, page } => {
            client
                .get(&format!(
                    "/scripts/community-scripts{}",
                    query(&[
                        ("search", search.clone()),
                        ("page", page.map(|p| p.to_string()))
                    ])
                ))
                .await?
        }
        CommunityCommand::Show { id } => {
            client
                .get(&format!("/scripts/community-scripts/{}", encode(id)))
                .await?
        }
    };
    if api.json {
        print_json(&value)?;
        return Ok(true);
    }
    match command {
        CommunityCommand::Submit { .. } => println!(
            "community script {} submitted: {}",
            cell(&value, "id"),
            cell(&value, "status")
        ),
        CommunityCommand::List { .. } => list_table(
            &value,
            &["id", "status", "name", "commit", "description"],
            "no community scripts",
        ),
        CommunityCommand::Show { .. } => {
            println!(
                "{} ({}): {}",
                cell(&value, "name"),
                cell(&value, "id"),
                cell(&value, "status")
            );
            if let Some(failure) = value["failure"].as_str() {
                println!("failure: {failure}");
            }
            if value["commit"].is_string() {
                println!(
                    "{} at {} (sha256 {})",
                    cell(&value["repository"], "name"),
                    cell(&value, "commit"),
                    cell(&value, "sha256")
                );
                println!("{}", value["content"].as_str().unwrap_or(""));
            }
        }
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn variables_read_from_the_command_line() {
        assert_eq!(
            parse_variable("dns:ip=1.1.1.1").expect("ip"),
            json!({"name": "dns", "type": "ip", "default": "1.1.1.1"})
        );
        assert_eq!(
            parse_variable("level:enum(info|warning)=info").expect("enum"),
            json!({"name": "level", "type": "enum", "allowed": ["info", "warning"], "default": "info"})
        );
        assert!(parse_variable("nocolon").is_err());
    }
}
