//! `yardmaster site add|list`: the routers and hosts scripts run on.

use serde_json::{Map, Value, json};

use super::table::Table;
use super::{ApiArgs, cell, encode, payload, print_json, rows};

/// `yardmaster site ...`
#[derive(Debug, clap::Subcommand)]
pub enum SiteCommand {
    /// Register a site.
    Add(AddArgs),
    /// List the sites of your organization.
    List(ListArgs),
}

#[derive(Debug, clap::Args)]
pub struct AddArgs {
    /// A name unique in your organization.
    #[arg(long)]
    pub name: String,
    /// Host name or IP address.
    #[arg(long)]
    pub address: String,
    /// The transport's port (default: the transport's own, 8728 for the RouterOS API).
    #[arg(long)]
    pub port: Option<u16>,
    /// The transport plugin that reaches the site.
    #[arg(long, default_value = "routeros-api")]
    pub transport: String,
    /// The login user.
    #[arg(long, default_value = "admin")]
    pub username: String,
    /// The login password; stored sealed, never shown again.
    #[arg(
        long,
        env = "YARDMASTER_SITE_PASSWORD",
        hide_env_values = true,
        default_value = ""
    )]
    pub password: String,
    /// A tag; repeat, or separate with commas.
    #[arg(long = "tag", value_delimiter = ',')]
    pub tags: Vec<String>,
}

#[derive(Debug, clap::Args)]
pub struct ListArgs {
    /// Only sites whose name contains this text.
    #[arg(long)]
    pub name: Option<String>,
    /// Only sites carrying this tag.
    #[arg(long)]
    pub tag: Option<String>,
    /// Page number (from 1); without it, the first page.
    #[arg(long)]
    pub page: Option<u32>,
    /// Sites per page (1 to 1000; the engine's default is 50).
    #[arg(long)]
    pub page_size: Option<u32>,
}

pub(super) async fn run(api: &ApiArgs, command: SiteCommand) -> anyhow::Result<bool> {
    let client = api.client()?;
    match command {
        SiteCommand::Add(args) => {
            let mut body = Map::new();
            body.insert("name".into(), json!(args.name));
            body.insert("address".into(), json!(args.address));
            if let Some(port) = args.port {
                body.insert("port".into(), json!(port));
            }
            body.insert("transport".into(), json!(args.transport));
            body.insert("username".into(), json!(args.username));
            if !args.password.is_empty() {
                body.insert("password".into(), json!(args.password));
            }
            body.insert("tags".into(), json!(args.tags));
            let value = client.post("/sites", &Value::Object(body)).await?;
            if api.json {
                print_json(&value)?;
            } else {
                let site = payload(&value);
                println!(
                    "site {} added: {} at {}",
                    cell(site, "id"),
                    cell(site, "name"),
                    cell(site, "address")
                );
            }
        }
        SiteCommand::List(args) => {
            let mut query = Vec::new();
            if let Some(name) = &args.name {
                query.push(format!("name={}", encode(name)));
            }
            if let Some(tag) = &args.tag {
                query.push(format!("tag={}", encode(tag)));
            }
            if let Some(page) = args.page {
                query.push(format!("page={page}"));
            }
            if let Some(size) = args.page_size {
                query.push(format!("page_size={size}"));
            }
            let path = if query.is_empty() {
                "/sites".to_string()
            } else {
                format!("/sites?{}", query.join("&"))
            };
            let value = client.get(&path).await?;
            if api.json {
                print_json(&value)?;
                return Ok(true);
            }
            let sites = rows(&value);
            if sites.is_empty() {
                println!("no sites");
                return Ok(true);
            }
            let mut table = Table::new(&["id", "name", "address", "port", "transport", "tags"]);
            for site in &sites {
                table.row(vec![
                    cell(site, "id"),
                    cell(site, "name"),
                    cell(site, "address"),
                    cell(site, "port"),
                    cell(site, "transport"),
                    cell(site, "tags"),
                ]);
            }
            table.print();
            if let (Some(total), Some(page)) = (
                value.get("total").and_then(Value::as_u64),
                value.get("page").and_then(Value::as_u64),
            ) && total > sites.len() as u64
            {
                println!(
                    "page {page}: {} of {total} sites (--page for more)",
                    sites.len()
                );
            }
        }
    }
    Ok(true)
}
