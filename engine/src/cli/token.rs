//! `yardmaster token create`: a bearer token signed with the engine's own key.
//!
//! The key is `jwt.key` in the data dir, found through the same configuration `serve`
//! reads (flags, then `YARDMASTER_*` variables, then the file, then the defaults), and
//! created there when the engine has not started yet; with `[store] url`, it is the key
//! the engines on that database share, read from it with the credential key.

use std::path::PathBuf;

use anyhow::Context;
use chrono::{TimeDelta, Utc};

use crate::auth::{Authenticator, Claims, parse_scopes};
use crate::config::{Config, Overrides};

/// Longest lifetime a token may be given.
const MAX_TTL: TimeDelta = TimeDelta::days(3650);

/// `yardmaster token ...`
#[derive(Debug, clap::Subcommand)]
pub enum TokenCommand {
    /// Print a signed bearer token (alone on stdout, so `$(yardmaster token create ...)` works).
    Create(CreateArgs),
}

#[derive(Debug, clap::Args)]
pub struct CreateArgs {
    /// The user the token speaks for (its `sub`), a user id of `--org`.
    #[arg(long)]
    pub sub: String,
    /// The organization every resource it reaches belongs to.
    #[arg(long)]
    pub org: String,
    /// Comma-separated scopes, or `all`: script:view, script:create, script:update,
    /// script:delete, script:run, script:authorize, site:view, site:manage, site:backup,
    /// plugin:view, plugin:manage. `engine:admin` (the operator's plugin calls) is never
    /// part of `all`: name it (`all,engine:admin`).
    #[arg(long)]
    pub scopes: String,
    /// How long the token is valid: 30m, 24h, 7d, ...
    #[arg(long, default_value = "24h")]
    pub ttl: String,
    /// The engine's data dir, which holds the signing key [env: YARDMASTER_DATA_DIR]
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// The engine's TOML configuration file [env: YARDMASTER_CONFIG]
    #[arg(long)]
    pub config: Option<PathBuf>,
}

/// Parses a token lifetime.
pub fn parse_ttl(text: &str) -> Result<TimeDelta, String> {
    let duration = super::parse_duration(text).map_err(|e| format!("--ttl: {e}"))?;
    let ttl = TimeDelta::from_std(duration)
        .ok()
        .filter(|t| *t <= MAX_TTL)
        .ok_or_else(|| format!("--ttl: `{text}` is longer than ten years"))?;
    if ttl <= TimeDelta::zero() {
        return Err(format!("--ttl: `{text}` is not a positive duration"));
    }
    Ok(ttl)
}

/// Runs `yardmaster token ...`.
pub async fn run(command: TokenCommand) -> anyhow::Result<()> {
    let TokenCommand::Create(args) = command;
    let token = create(&args).await?;
    println!("{token}");
    Ok(())
}

/// Issues the token `args` describe, signed with the key of the engine's store: the data
/// dir's, or on a shared store (`[store] url`) the one every engine on it shares.
pub async fn create(args: &CreateArgs) -> anyhow::Result<String> {
    if args.sub.trim().is_empty() {
        anyhow::bail!("--sub: the user id must not be empty");
    }
    if args.org.trim().is_empty() {
        anyhow::bail!("--org: the organization must not be empty");
    }
    let scopes = parse_scopes(&args.scopes).map_err(|e| anyhow::anyhow!("--scopes: {e}"))?;
    let ttl = parse_ttl(&args.ttl).map_err(anyhow::Error::msg)?;
    let flags = Overrides {
        data_dir: args.data_dir.clone(),
        ..Overrides::default()
    };
    let config = Config::load(args.config.as_deref(), &flags)?;
    std::fs::create_dir_all(&config.data_dir).with_context(|| {
        format!(
            "cannot create the data directory {}",
            config.data_dir.display()
        )
    })?;
    let shared = match &config.store.url {
        Some(url) => Some(crate::server::connect_shared(&config, url, 2).await?),
        None => None,
    };
    let key = crate::store::backend::signing_secret(
        shared.as_ref(),
        &config.data_dir,
        crate::auth::KEY_FILE,
        crate::auth::KEY_LEN,
    )
    .await
    .map_err(|e| anyhow::anyhow!("token key {e}"))?;
    let auth = Authenticator::from_secret(&key);
    let claims = Claims::new(args.sub.trim(), args.org.trim(), scopes, Utc::now(), ttl);
    Ok(auth.issue(&claims))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(dir: &std::path::Path, scopes: &str, ttl: &str) -> CreateArgs {
        CreateArgs {
            sub: "alice".into(),
            org: "acme".into(),
            scopes: scopes.into(),
            ttl: ttl.into(),
            data_dir: Some(dir.join("data")),
            config: None,
        }
    }

    #[tokio::test]
    async fn a_created_token_verifies_with_the_engines_key() {
        let dir = tempfile::tempdir().expect("dir");
        let token = create(&args(dir.path(), "script:view,script:create", "1h"))
            .await
            .expect("token");
        let auth = Authenticator::open(&dir.path().join("data")).expect("key");
        let principal = auth.verify(&token, Utc::now()).expect("valid");
        assert_eq!(principal.user_id, "alice");
        assert_eq!(principal.organization, "acme");
        assert_eq!(principal.scopes, vec!["script:create", "script:view"]);
        let later = Utc::now() + TimeDelta::hours(2);
        assert!(auth.verify(&token, later).is_err());
    }

    #[tokio::test]
    async fn unknown_scopes_and_bad_ttls_are_refused_by_name() {
        let dir = tempfile::tempdir().expect("dir");
        let e = create(&args(dir.path(), "script:fly", "1h"))
            .await
            .expect_err("an unknown scope is refused");
        assert!(e.to_string().contains("script:fly"), "{e}");
        for ttl in ["0s", "soon", "24", "100000d"] {
            let e = create(&args(dir.path(), "all", ttl))
                .await
                .expect_err("a bad ttl is refused");
            assert!(e.to_string().starts_with("--ttl"), "{ttl}: {e}");
        }
        assert_eq!(parse_ttl("7d"), Ok(TimeDelta::days(7)));
    }

    #[tokio::test]
    async fn engine_admin_is_granted_only_when_named() {
        let dir = tempfile::tempdir().expect("dir");
        let auth = async |scopes: &str| {
            let token = create(&args(dir.path(), scopes, "1h"))
                .await
                .expect("token");
            Authenticator::open(&dir.path().join("data"))
                .expect("key")
                .verify(&token, Utc::now())
                .expect("valid")
        };
        let all = auth("all").await;
        assert!(all.has_scope(crate::auth::scopes::PLUGIN_MANAGE));
        assert!(!all.has_scope(crate::auth::scopes::ENGINE_ADMIN));
        assert!(
            auth("all,engine:admin")
                .await
                .has_scope(crate::auth::scopes::ENGINE_ADMIN)
        );
        let alone = auth("engine:admin").await;
        assert_eq!(alone.scopes, vec!["engine:admin"]);
    }
}
