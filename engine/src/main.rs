//! The `yardmaster` command: the engine (`serve`) and the tools around it.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use clap::{Parser, Subcommand};

use yardmaster::config::{Config, Overrides};
use yardmaster::plugins::{HostOptions, PluginHost, PluginKind};

#[derive(Parser)]
#[command(
    name = "yardmaster",
    version,
    about = "Schedules, authorizes and executes RouterOS scripts across fleets of routers",
    long_about = None
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the engine: load the plugins, serve the HTTP API, reload plugins on change.
    Serve(ServeArgs),
    /// Work with plugins.
    #[command(subcommand)]
    Plugin(PluginCommand),
    /// Run a fleet of simulated RouterOS devices on loopback, to try scripts and plugins
    /// without a real router.
    Simulate(yardmaster::simulate::SimulateArgs),
    /// Issue bearer tokens with the engine's key.
    #[command(subcommand)]
    Token(yardmaster::cli::TokenCommand),
    /// Sites: the routers and hosts scripts run on (through a running engine).
    Site(yardmaster::cli::SiteArgs),
    /// Script templates: list, show, create, update (through a running engine).
    Template(yardmaster::cli::TemplateArgs),
    /// The community library: submit, list, show (through a running engine).
    Community(yardmaster::cli::CommunityArgs),
    /// Scheduled scripts: schedule, authorize, cancel, show, watch.
    Script(yardmaster::cli::ScriptArgs),
    /// Jobs on one router: run a script, call a command, list.
    Job(yardmaster::cli::JobArgs),
    /// Start the engine with 50 simulated routers registered as sites, print tokens and
    /// commands to try; Ctrl-C stops everything.
    Demo(yardmaster::demo::DemoArgs),
}

#[derive(clap::Args)]
struct ServeArgs {
    /// The TOML configuration file [env: YARDMASTER_CONFIG; default: ./yardmaster.toml if present]
    #[arg(long)]
    config: Option<PathBuf>,
    /// Where the engine keeps its state [env: YARDMASTER_DATA_DIR; default: ./yardmaster-data]
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// The folder plugins are loaded from and watched [env: YARDMASTER_PLUGINS_DIR; default: ./plugins]
    #[arg(long)]
    plugins_dir: Option<PathBuf>,
    /// The address the HTTP API listens on [env: YARDMASTER_LISTEN; default: 127.0.0.1:8080]
    #[arg(long)]
    listen: Option<String>,
    /// A PostgreSQL database several engines share, instead of the embedded store in the
    /// data dir [env: YARDMASTER_STORE_URL]
    #[arg(long, value_name = "postgres://USER@HOST:PORT/DATABASE")]
    store_url: Option<String>,
    /// Hosts whose notification URLs may use plain http; https is required otherwise
    #[arg(
        long,
        env = "YARDMASTER_ALLOW_HTTP_NOTIFY",
        value_name = "HOST[,HOST...]"
    )]
    allow_http_notify: Option<String>,
}

#[derive(Subcommand)]
enum PluginCommand {
    /// List the plugins of a running engine.
    List {
        /// The engine's URL.
        #[arg(long, env = "YARDMASTER_URL", default_value = "http://127.0.0.1:8080")]
        url: String,
        /// Print the engine's JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Show what a plugin file is: describe(), contract versions, endpoints. No engine needed.
    Inspect {
        file: PathBuf,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
}

fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("YARDMASTER_LOG")
        .or_else(|_| tracing_subscriber::EnvFilter::try_from_default_env())
        .unwrap_or_else(|_| {
            tracing_subscriber::EnvFilter::new("info,wasmtime=warn,cranelift=warn")
        });
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("error: {}", described(&e));
            ExitCode::FAILURE
        }
    }
}

/// An error with its causes, each said once: most of the engine's errors already name
/// their cause in their own message, and a cause is added only when it says more.
fn described(e: &anyhow::Error) -> String {
    let mut text = e.to_string();
    for cause in e.chain().skip(1) {
        let cause = cause.to_string();
        if !text.contains(&cause) {
            text.push_str(": ");
            text.push_str(&cause);
        }
    }
    text
}

/// Runs a command; false when it ran but did not succeed (a watched script that failed).
async fn run(cli: Cli) -> anyhow::Result<bool> {
    match cli.command {
        Command::Token(command) => yardmaster::cli::token::run(command).await.map(|()| true),
        Command::Site(args) => yardmaster::cli::site(args).await,
        Command::Template(args) => yardmaster::cli::template(args).await,
        Command::Community(args) => yardmaster::cli::community(args).await,
        Command::Script(args) => yardmaster::cli::script(args).await,
        Command::Job(args) => yardmaster::cli::job(args).await,
        Command::Demo(args) => {
            yardmaster::demo::run(args, yardmaster::server::termination()).await?;
            Ok(true)
        }
        Command::Serve(args) => {
            let flags = Overrides {
                data_dir: args.data_dir,
                plugins_dir: args.plugins_dir,
                listen: args.listen,
                store_url: args.store_url,
                ..Overrides::default()
            };
            let mut config = Config::load(args.config.as_deref(), &flags)?;
            if let Some(hosts) = &args.allow_http_notify {
                config.notify.set_allow_http(hosts);
            }
            yardmaster::server::run(config, yardmaster::server::termination()).await?;
            Ok(true)
        }
        Command::Simulate(args) => {
            yardmaster::simulate::run(args, yardmaster::server::termination()).await?;
            Ok(true)
        }
        Command::Plugin(PluginCommand::List { url, json }) => {
            plugin_list(&url, json).await.map(|()| true)
        }
        Command::Plugin(PluginCommand::Inspect { file, json }) => {
            plugin_inspect(&file, json).await.map(|()| true)
        }
    }
}

async fn plugin_list(url: &str, json: bool) -> anyhow::Result<()> {
    let token = std::env::var("YARDMASTER_TOKEN").ok();
    let value = yardmaster::client::request("GET", url, "/plugins", token.as_deref(), None).await?;
    if json {
        println!("{}", serde_json::to_string_pretty(&value)?);
        return Ok(());
    }
    let rows = value.as_array().cloned().unwrap_or_default();
    if rows.is_empty() {
        println!("no plugins loaded");
        return Ok(());
    }
    let text = |row: &serde_json::Value, key: &str| {
        row.get(key)
            .and_then(|v| v.as_str())
            .unwrap_or("-")
            .to_string()
    };
    // A transport's default ports, plain/TLS, as `8728/8729`; `-` where it names none.
    let ports = |row: &serde_json::Value| {
        let port = |key: &str| row.get(key).and_then(|v| v.as_u64());
        match (port("default_port"), port("default_tls_port")) {
            (None, None) => "-".to_owned(),
            (plain, tls) => {
                let show = |p: Option<u64>| p.map_or_else(|| "-".to_owned(), |p| p.to_string());
                format!("{}/{}", show(plain), show(tls))
            }
        }
    };
    println!(
        "{:<20} {:<14} {:<10} {:<6} {:<8} {:<11} FILE",
        "NAME", "KIND", "VERSION", "WIT", "STATUS", "PORTS"
    );
    for row in &rows {
        println!(
            "{:<20} {:<14} {:<10} {:<6} {:<8} {:<11} {}",
            text(row, "name"),
            text(row, "kind"),
            text(row, "version"),
            text(row, "wit_version"),
            text(row, "status"),
            ports(row),
            text(row, "file"),
        );
        if let Some(error) = row.get("error").and_then(|e| e.as_str()) {
            println!("  error: {error}");
        }
    }
    Ok(())
}

async fn plugin_inspect(file: &std::path::Path, json: bool) -> anyhow::Result<()> {
    let bytes = std::fs::read(file).with_context(|| format!("cannot read {}", file.display()))?;
    let config = Config::default();
    let mut options = HostOptions::from_config(&config);
    options.cache_dir = None;
    options.max_concurrent_calls = 4;
    let host = PluginHost::new(options).map_err(anyhow::Error::msg)?;
    let plugin = host.inspect(file, Arc::new(bytes)).await?;
    let info = &plugin.info;
    if json {
        let value = serde_json::json!({
            "name": info.name,
            "version": info.version.to_string(),
            "kind": info.kind,
            "description": info.description,
            "wit_version": plugin.wit_version.to_string(),
            "sha256": plugin.sha256,
            "config_keys": info.config_keys,
            "endpoints": info.endpoints,
            "default_port": plugin.default_ports.plain,
            "default_tls_port": plugin.default_ports.tls,
            "imports": plugin.imports,
        });
        println!("{}", serde_json::to_string_pretty(&value)?);
        return Ok(());
    }
    println!("{} {} ({} plugin)", info.name, info.version, info.kind);
    if !info.description.is_empty() {
        println!("  {}", info.description);
    }
    println!("contract:  yardmaster:{}@{}", info.kind, plugin.wit_version);
    println!("sha256:    {}", plugin.sha256);
    if info.kind == PluginKind::Transport {
        let port = |p: Option<u16>| {
            p.map_or_else(
                || "none (sites must name one)".to_owned(),
                |p| p.to_string(),
            )
        };
        println!(
            "ports:     {} plain, {} TLS, when a site names none",
            port(plugin.default_ports.plain),
            port(plugin.default_ports.tls)
        );
    }
    println!("imports:");
    for import in &plugin.imports {
        println!("  {import}");
    }
    if info.config_keys.is_empty() {
        println!("config:    none");
    } else {
        println!("config:");
        for key in &info.config_keys {
            let mut flags = Vec::new();
            if key.required {
                flags.push("required");
            }
            if key.secret {
                flags.push("secret");
            }
            let flags = if flags.is_empty() {
                String::new()
            } else {
                format!(" ({})", flags.join(", "))
            };
            println!("  {}{}: {}", key.name, flags, key.description);
        }
    }
    if info.endpoints.is_empty() {
        println!("endpoints: none beyond the sites it serves");
    } else {
        println!(
            "endpoints (grant them under [plugins.{}] allow = [...]):",
            info.name
        );
        for endpoint in &info.endpoints {
            println!("  {endpoint}");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::described;

    #[derive(Debug, thiserror::Error)]
    #[error("cannot listen on port 1: {source}")]
    struct Listen {
        source: std::io::Error,
    }

    #[test]
    fn a_cause_is_said_once_and_a_context_keeps_its_cause() {
        let busy = || std::io::Error::new(std::io::ErrorKind::AddrInUse, "address in use");
        let named = anyhow::Error::from(Listen { source: busy() });
        assert_eq!(described(&named), "cannot listen on port 1: address in use");
        let wrapped = anyhow::Error::from(busy()).context("cannot start");
        assert_eq!(described(&wrapped), "cannot start: address in use");
    }
}
