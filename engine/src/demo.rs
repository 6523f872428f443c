//! `yardmaster demo`: the engine and a simulated fleet in one process, ready to try.
//!
//! It keeps its state in `./yardmaster-demo` (`data/` and `plugins/`, `--dir` to
//! choose another), so a second run finds the scripts of the first. Before the engine
//! opens the store, the demo writes there the organization `demo`: 50 sites
//! `router-001` ... `router-050` pointing at the simulated routers (127.42.0.1 onwards,
//! RouterOS API on port 8728, user `admin`, password `demo`), and two users, `admin` and
//! `approver`. It then serves the API as `serve` does, prints a token for each user and
//! commands to paste, and stops everything on Ctrl-C or SIGTERM.
//!
//! Nothing leaves the machine: the routers listen on loopback, and the engine listens
//! on 127.0.0.1:8080 unless told otherwise.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use chrono::{TimeDelta, Utc};

use crate::auth::{Authenticator, Claims, scopes};
use crate::client::Client;
use crate::config::Config;
use crate::simulate::{Fleet, FleetConfig, Profile};
use crate::store::{Page, Secret, SiteInput, Store, StoreError, User};

/// The demo's organization.
pub const ORGANIZATION: &str = "demo";
/// The simulated routers' API password.
pub const PASSWORD: &str = "demo";
/// How long the printed tokens are valid.
const TOKEN_TTL: TimeDelta = TimeDelta::days(7);

/// `yardmaster demo`
#[derive(Debug, Clone, clap::Args)]
pub struct DemoArgs {
    /// Where the demo keeps its state (`data/`) and plugins (`plugins/`).
    #[arg(long, default_value = "./yardmaster-demo")]
    pub dir: PathBuf,
    /// The address the HTTP API listens on (port 0 picks a free one).
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    /// How many simulated routers to run and register as sites.
    #[arg(long, default_value_t = 50)]
    pub routers: usize,
    /// The first simulated router's address; router i listens on this plus i.
    #[arg(long, default_value_t = Ipv4Addr::new(127, 42, 0, 1))]
    pub fleet_bind: Ipv4Addr,
}

/// The site name of router `i` (from 0).
fn site_name(i: usize) -> String {
    format!("router-{:03}", i + 1)
}

/// Registers the fleet as sites of [`ORGANIZATION`] and its two users. A site left by an
/// earlier run keeps its id and gets the fleet's current address.
pub fn register(data_dir: &Path, addresses: &[SocketAddr]) -> Result<Vec<String>, StoreError> {
    let store = Store::open(data_dir)?;
    let now = Utc::now();
    let mut existing = std::collections::BTreeMap::new();
    let mut page = Page::first(1000);
    loop {
        let batch = store.list_sites(ORGANIZATION, &page)?;
        let Some(last) = batch.last() else { break };
        page.after = Some(last.id.clone());
        let full = batch.len() == 1000;
        for site in batch {
            existing.insert(site.name.clone(), site);
        }
        if !full {
            break;
        }
    }
    let mut ids = Vec::with_capacity(addresses.len());
    for (i, addr) in addresses.iter().enumerate() {
        let input = SiteInput {
            organization: ORGANIZATION.into(),
            name: site_name(i),
            address: addr.ip().to_string(),
            port: Some(addr.port()),
            transport: crate::store::DEFAULT_TRANSPORT.into(),
            username: "admin".into(),
            password: Some(Secret::new(PASSWORD)),
            tls: Default::default(),
            tags: vec!["demo".into()],
            private_key: None,
            private_key_passphrase: None,
            ssh: None,
        };
        let site = match existing.get(&input.name) {
            Some(old) if old.address == input.address && old.port == input.port => old.clone(),
            Some(old) => store.update_site(&old.id, input, now)?,
            None => store.create_site(input, now)?,
        };
        ids.push(site.id);
    }
    for (id, name) in [("admin", "Demo Admin"), ("approver", "Demo Approver")] {
        store.put_user(&User {
            id: id.into(),
            name: name.into(),
            email: format!("{id}@demo.invalid"),
            organization: ORGANIZATION.into(),
            created_at: now,
        })?;
    }
    Ok(ids)
}

/// The demo's `[sites] allow`: the default (anything but the reserved ranges) and
/// loopback, where its simulated routers listen.
fn demo_sites_allow() -> crate::plugins::SiteAllow {
    crate::plugins::SiteAllow::with_loopback()
}

/// A free port on `addr`'s address when it asks for port 0, so the demo can print its
/// URL before the engine binds.
fn resolve_listen(addr: SocketAddr) -> anyhow::Result<SocketAddr> {
    if addr.port() != 0 {
        return Ok(addr);
    }
    let probe = std::net::TcpListener::bind(addr)
        .with_context(|| format!("cannot find a free port on {}", addr.ip()))?;
    Ok(probe.local_addr()?)
}

/// Runs the demo until `shutdown` resolves.
pub async fn run(
    args: DemoArgs,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let data_dir = args.dir.join("data");
    let plugins_dir = args.dir.join("plugins");
    std::fs::create_dir_all(&data_dir)
        .with_context(|| format!("cannot create {}", data_dir.display()))?;
    let listen = resolve_listen(args.listen)?;

    let (stop, stopped) = tokio::sync::watch::channel(false);
    let wait = move || {
        let mut stopped = stopped.clone();
        async move {
            let _ = stopped.wait_for(|s| *s).await;
        }
    };
    let fleet = Fleet::start(
        FleetConfig {
            routers: args.routers,
            bind: args.fleet_bind,
            port: 8728,
            tls_port: None,
            profile: Profile::V7_18,
            user: "admin".into(),
            password: PASSWORD.into(),
            faults: Vec::new(),
            ssh_port: None,
            ssh_authorized_keys: Vec::new(),
        },
        wait(),
    )
    .await
    .context("cannot start the simulated fleet")?;
    let addresses = fleet.addresses();
    let ids = register(&data_dir, &addresses)
        .with_context(|| format!("cannot register the sites in {}", data_dir.display()))?;

    let auth = Authenticator::open(&data_dir)?;
    let now = Utc::now();
    let all: Vec<String> = scopes::ALL.iter().map(|s| s.to_string()).collect();
    let admin = auth.issue(&Claims::new("admin", ORGANIZATION, all, now, TOKEN_TTL));
    let approver_scopes = [
        scopes::SCRIPT_VIEW,
        scopes::SCRIPT_AUTHORIZE,
        scopes::SITE_VIEW,
    ];
    let approver = auth.issue(&Claims::new(
        "approver",
        ORGANIZATION,
        approver_scopes.iter().map(|s| s.to_string()).collect(),
        now,
        TOKEN_TTL,
    ));
    drop(auth);

    let config = Config {
        data_dir: data_dir.clone(),
        plugins_dir,
        listen,
        // The simulated routers listen on loopback, which sites may not have by default.
        sites_allow: demo_sites_allow(),
        ..Config::default()
    };
    let mut engine = tokio::spawn(crate::server::run(config, wait()));
    let stopper = tokio::spawn(async move {
        shutdown.await;
        let _ = stop.send(true);
    });

    let url = format!("http://{listen}");
    let client = Client::new(&url, None)?;
    let ready = async {
        loop {
            if client.get("/healthz").await.is_ok() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    tokio::select! {
        () = ready => {
            print_welcome(&url, &args, &addresses, &ids, &admin, &approver);
        }
        result = &mut engine => {
            stopper.abort();
            fleet.shutdown().await;
            return match result {
                Ok(Ok(())) => Ok(()),
                Ok(Err(e)) => Err(e.into()),
                Err(e) => Err(anyhow::anyhow!("the engine stopped: {e}")),
            };
        }
    }
    let result = engine.await;
    stopper.abort();
    fleet.shutdown().await;
    match result {
        Ok(Ok(())) => {
            println!("demo stopped; its state stays in {}", args.dir.display());
            Ok(())
        }
        Ok(Err(e)) => Err(e.into()),
        Err(e) => Err(anyhow::anyhow!("the engine stopped: {e}")),
    }
}

fn print_welcome(
    url: &str,
    args: &DemoArgs,
    addresses: &[SocketAddr],
    ids: &[String],
    admin: &str,
    approver: &str,
) {
    let bin = std::env::current_exe()
        .ok()
        .map(|p| p.display().to_string())
        .unwrap_or_else(|| "yardmaster".into());
    let (first, last) = (addresses[0], addresses[addresses.len() - 1]);
    let two = ids
        .iter()
        .take(2)
        .map(|id| format!("\"{id}\""))
        .collect::<Vec<_>>()
        .join(", ");
    println!(
        r#"
Yardmaster demo is running: API at {url}, state in {dir}
{n} simulated RouterOS 7.18 routers on {first_ip}-{last_ip} port {port} are sites {first_name} .. {last_name}
of organization "{ORGANIZATION}" (tag "demo"). Users: admin (every scope) and approver
(script:view, script:authorize, site:view). Tokens are valid for 7 days.

Paste this into another shell:

  export YARDMASTER_URL={url}
  export YARDMASTER_TOKEN={admin}
  export APPROVER_TOKEN={approver}
  alias yardmaster={bin}

With the CLI: schedule a script on every site, approve it as the second user, watch it run.

  yardmaster site list
  ID=$(yardmaster script schedule --description "demo $(date +%s)" \
         --script ':log info "hello from yardmaster"' --all-sites --in 20s --quiet)
  yardmaster script authorize "$ID" --token "$APPROVER_TOKEN"
  yardmaster script watch "$ID"
  yardmaster job run {first_id} --script ':log info "one job"' --wait
  yardmaster job list {first_id}

With curl:

  curl -s -H "Authorization: Bearer $YARDMASTER_TOKEN" "$YARDMASTER_URL/sites"
  curl -s -H "Authorization: Bearer $YARDMASTER_TOKEN" -H 'Content-Type: application/json' \
    "$YARDMASTER_URL/scripts/scheduled" -d '{{"description": "curl demo '"$(date +%s)"'",
      "script": ":log info \"hello\"", "sites": [{two}],
      "launch_at": "'"$(date -u -d '+1 minute' +%Y-%m-%dT%H:%M:%SZ)"'"}}'
  curl -s -X POST -H "Authorization: Bearer $APPROVER_TOKEN" "$YARDMASTER_URL/scripts/scheduled/<id>/authorize"
  curl -s -H "Authorization: Bearer $YARDMASTER_TOKEN" "$YARDMASTER_URL/scripts/scheduled/<id>"

Press Ctrl-C to stop.
"#,
        dir = args.dir.display(),
        n = addresses.len(),
        first_ip = first.ip(),
        last_ip = last.ip(),
        port = first.port(),
        first_name = site_name(0),
        last_name = site_name(addresses.len() - 1),
        first_id = ids.first().map_or("<site-id>", String::as_str),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registering_twice_keeps_the_sites_and_follows_new_addresses() {
        let dir = tempfile::tempdir().expect("dir");
        let addrs: Vec<SocketAddr> = (1..=3)
            .map(|i| SocketAddr::from(([127, 42, 0, i], 8728)))
            .collect();
        let first = register(dir.path(), &addrs).expect("first");
        assert_eq!(first.len(), 3);
        let moved: Vec<SocketAddr> = (1..=3)
            .map(|i| SocketAddr::from(([127, 43, 0, i], 8728)))
            .collect();
        let second = register(dir.path(), &moved).expect("second");
        assert_eq!(first, second);
        let store = Store::open(dir.path()).expect("store");
        let site = store.get_site(&second[2]).expect("site");
        assert_eq!(site.name, "router-003");
        assert_eq!(site.address, "127.43.0.3");
        assert_eq!(site.organization, ORGANIZATION);
        assert_eq!(
            store.site_password(&second[0]).expect("pw").expose(),
            PASSWORD
        );
        assert!(
            demo_sites_allow().check_address(&site.address).is_ok(),
            "the demo's own sites are permitted"
        );
        assert_eq!(
            store
                .get_user(ORGANIZATION, "approver")
                .expect("user")
                .organization,
            ORGANIZATION
        );
    }
}
