//! The GitHub script source: a RouterOS script submitted by its raw URL or its page on
//! GitHub, pinned to the commit its reference names at that moment, with the details a
//! community library shows of its repository and owner.
//!
//! One fetch makes these requests (through wasi:http; the engine does the HTTPS and
//! holds the plugin to its allow-list):
//! 1. `GET {api_url}/repos/{owner}/{repo}/commits/{ref}`: the reference's commit SHA;
//! 2. `GET {raw_url}/{owner}/{repo}/{sha}/{path}`: the file at that commit;
//! 3. `GET {api_url}/repos/{owner}/{repo}`: stars, creation time, description, licence;
//! 4. `GET {api_url}/users/{owner}`: name, avatar, followers, creation time;
//! 5. the README at its own pinned commit, when a `readme_url` is given.
//!
//! A spent rate limit (`x-ratelimit-remaining: 0`, or `retry-after`) is an `unavailable`
//! error saying when to try again. Configuration (`[plugins.github.config]`): `token`
//! (optional, sent as a bearer token), `api_url`, `raw_url` and `web_url` (for GitHub
//! Enterprise or a mirror), `timeout` (milliseconds, default 15000).
//!
//! `url` reads the submitted URLs; the rest of the logic runs over the [`Fetch`] trait,
//! so it is tested natively with canned replies; `http` is the wasi:http part.

#[cfg(target_arch = "wasm32")]
mod http;
mod url;

use serde::Deserialize;
use yardmaster_plugin_sdk::script_source::{
    Catalog, Entry, Fetched, Owner, Repository, ScriptMeta, ScriptSource, SourceError,
};
use yardmaster_plugin_sdk::{ConfigKey, PluginInfo, PluginKind, config};

pub use url::{Bases, FileRef, parse};

/// The largest script fetched.
pub const MAX_SCRIPT_BYTES: u64 = 1024 * 1024;
/// The largest README fetched.
pub const MAX_README_BYTES: u64 = 256 * 1024;
/// The largest API answer read.
const MAX_JSON_BYTES: u64 = 1024 * 1024;
/// Redirects followed (a renamed repository answers 301).
const MAX_REDIRECTS: usize = 3;
const JSON: &str = "application/vnd.github+json";

/// One HTTP answer.
#[derive(Debug, Clone, Default)]
pub struct Reply {
    pub status: u16,
    /// Names in lower case.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// A GET: the wasi:http client in the plugin, canned replies in tests.
pub trait Fetch {
    /// Fails with `too-large` past `limit` bytes of body.
    fn get(&self, url: &str, accept: &str, limit: u64) -> Result<Reply, SourceError>;
}

/// A GET that follows redirects and turns GitHub's failures into the contract's errors.
fn get_ok(
    f: &impl Fetch,
    url: &str,
    accept: &str,
    limit: u64,
    what: &str,
) -> Result<Reply, SourceError> {
    let mut url = url.to_owned();
    for _ in 0..=MAX_REDIRECTS {
        let reply = f.get(&url, accept, limit)?;
        match reply.status {
            200 => return Ok(reply),
            301 | 302 | 307 | 308 => match reply.header("location") {
                Some(next) => url = next.to_owned(),
                None => {
                    return Err(SourceError::Other(format!(
                        "{what}: redirected without a location"
                    )));
                }
            },
            _ => return Err(failure(&reply, what)),
        }
    }
    Err(SourceError::Other(format!("{what}: too many redirects")))
}

/// GitHub's answer as the contract's error, with what it said.
pub fn failure(reply: &Reply, what: &str) -> SourceError {
    let said = serde_json::from_slice::<serde_json::Value>(&reply.body)
        .ok()
        .and_then(|v| v["message"].as_str().map(str::to_owned))
        .unwrap_or_default();
    let said = if said.is_empty() {
        String::new()
    } else {
        format!(": {said}")
    };
    let limited = reply.header("x-ratelimit-remaining") == Some("0");
    if matches!(reply.status, 403 | 429) && (limited || reply.header("retry-after").is_some()) {
        let when = match (
            reply.header("retry-after"),
            reply.header("x-ratelimit-reset"),
        ) {
            (Some(after), _) => format!("retry after {after} s"),
            (None, Some(reset)) => format!("the limit resets at unix time {reset}"),
            (None, None) => "retry later".to_owned(),
        };
        return SourceError::Unavailable(format!(
            "{what}: GitHub's rate limit is spent ({when}); a token (`token` in [plugins.github.config]) raises it{said}"
        ));
    }
    match reply.status {
        404 | 422 => SourceError::NotFound(format!("{what}: not found on GitHub{said}")),
        401 => SourceError::Denied(format!(
            "{what}: GitHub refused the token (`token` in [plugins.github.config]){said}"
        )),
        403 => SourceError::Denied(format!("{what}: GitHub refused the request{said}")),
        s if s >= 500 => SourceError::Unavailable(format!("{what}: GitHub answered {s}{said}")),
        s => SourceError::Other(format!("{what}: GitHub answered {s}{said}")),
    }
}

fn json<T: for<'de> Deserialize<'de>>(reply: &Reply, what: &str) -> Result<T, SourceError> {
    serde_json::from_slice(&reply.body).map_err(|e| {
        SourceError::Other(format!(
            "{what}: GitHub's answer is not what it documents: {e}"
        ))
    })
}

#[derive(Deserialize)]
struct Commit {
    sha: String,
}

#[derive(Deserialize)]
struct RepoJson {
    full_name: String,
    html_url: String,
    description: Option<String>,
    #[serde(default)]
    stargazers_count: u32,
    created_at: Option<String>,
    license: Option<LicenseJson>,
}

#[derive(Deserialize)]
struct LicenseJson {
    spdx_id: Option<String>,
}

#[derive(Deserialize)]
struct UserJson {
    login: String,
    name: Option<String>,
    html_url: String,
    avatar_url: Option<String>,
    #[serde(default)]
    followers: u32,
    created_at: Option<String>,
}

fn base(b: &str) -> &str {
    b.trim_end_matches('/')
}

/// The commit `file`'s reference names now.
fn resolve(f: &impl Fetch, bases: &Bases, file: &FileRef) -> Result<String, SourceError> {
    let what = format!(
        "the reference {} of {}/{}",
        file.reference, file.owner, file.repo
    );
    let url = format!(
        "{}/repos/{}/{}/commits/{}",
        base(&bases.api),
        file.owner,
        file.repo,
        file.reference
    );
    let commit: Commit = json(&get_ok(f, &url, JSON, MAX_JSON_BYTES, &what)?, &what)?;
    let sha = commit.sha.to_ascii_lowercase();
    if sha.len() != 40 || !sha.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(SourceError::Other(format!(
            "{what}: `{}` is not a commit SHA",
            commit.sha
        )));
    }
    Ok(sha)
}

fn raw_url(bases: &Bases, file: &FileRef, sha: &str) -> String {
    format!(
        "{}/{}/{}/{}/{}",
        base(&bases.raw),
        file.owner,
        file.repo,
        sha,
        file.path
    )
}

/// The text of `file` at `sha`, refused when it is not UTF-8 text.
fn text_at(
    f: &impl Fetch,
    bases: &Bases,
    file: &FileRef,
    sha: &str,
    limit: u64,
) -> Result<(String, String), SourceError> {
    let url = raw_url(bases, file, sha);
    let reply = get_ok(f, &url, "text/plain", limit, &file.path)?;
    if reply.body.contains(&0) {
        return Err(SourceError::Other(format!(
            "{}: not a text file",
            file.path
        )));
    }
    let text = String::from_utf8(reply.body)
        .map_err(|_| SourceError::Other(format!("{}: not UTF-8 text", file.path)))?;
    Ok((text, url))
}

/// Pins `url` to a commit and reads everything the catalog shows of it.
pub fn fetch_entry(
    f: &impl Fetch,
    bases: &Bases,
    url: &str,
    readme_url: Option<&str>,
) -> Result<Entry, SourceError> {
    let file = parse(url, bases)?;
    let readme_file = readme_url.map(|u| parse(u, bases)).transpose()?;
    let sha = resolve(f, bases, &file)?;
    let (content, raw) = text_at(f, bases, &file, &sha, MAX_SCRIPT_BYTES)?;
    let what = format!("the repository {}/{}", file.owner, file.repo);
    let repo: RepoJson = json(
        &get_ok(
            f,
            &format!("{}/repos/{}/{}", base(&bases.api), file.owner, file.repo),
            JSON,
            MAX_JSON_BYTES,
            &what,
        )?,
        &what,
    )?;
    let what = format!("the account {}", file.owner);
    let user: UserJson = json(
        &get_ok(
            f,
            &format!("{}/users/{}", base(&bases.api), file.owner),
            JSON,
            MAX_JSON_BYTES,
            &what,
        )?,
        &what,
    )?;
    let (readme, readme_url) = match readme_file {
        None => (None, None),
        Some(r) => {
            let same = (r.owner.as_str(), r.repo.as_str(), r.reference.as_str())
                == (
                    file.owner.as_str(),
                    file.repo.as_str(),
                    file.reference.as_str(),
                );
            let readme_sha = if same {
                sha.clone()
            } else {
                resolve(f, bases, &r)?
            };
            let (text, url) = text_at(f, bases, &r, &readme_sha, MAX_README_BYTES)?;
            (Some(text), Some(url))
        }
    };
    Ok(Entry {
        name: file.file_name().to_owned(),
        path: file.path.clone(),
        content,
        web_url: format!(
            "{}/{}/{}/blob/{}/{}",
            base(&bases.web),
            file.owner,
            file.repo,
            sha,
            file.path
        ),
        raw_url: raw,
        commit: sha,
        reference: file.reference.clone(),
        repository: Repository {
            name: repo.full_name,
            url: repo.html_url,
            description: repo.description,
            license: repo
                .license
                .and_then(|l| l.spdx_id)
                .filter(|id| id != "NOASSERTION"),
            stars: repo.stargazers_count,
            created_at: repo.created_at,
        },
        owner: Owner {
            login: user.login,
            name: user.name,
            url: user.html_url,
            avatar_url: user.avatar_url,
            followers: user.followers,
            created_at: user.created_at,
        },
        readme,
        readme_url,
    })
}

/// The configured base URLs.
fn bases() -> Bases {
    let d = Bases::default();
    Bases {
        api: config::get("api_url").unwrap_or(d.api),
        raw: config::get("raw_url").unwrap_or(d.raw),
        web: config::get("web_url").unwrap_or(d.web),
    }
}

#[cfg(target_arch = "wasm32")]
fn client() -> http::WasiHttp {
    http::WasiHttp {
        token: config::get("token").filter(|t| !t.is_empty()),
        user_agent: format!("yardmaster-github/{}", env!("CARGO_PKG_VERSION")),
        timeout_ms: config::get("timeout")
            .and_then(|t| t.parse().ok())
            .unwrap_or(15_000),
    }
}

#[cfg(target_arch = "wasm32")]
fn entry(url: &str, readme_url: Option<&str>) -> Result<Entry, SourceError> {
    fetch_entry(&client(), &bases(), url, readme_url)
}

#[cfg(not(target_arch = "wasm32"))]
fn entry(url: &str, _readme_url: Option<&str>) -> Result<Entry, SourceError> {
    let _ = bases();
    Err(SourceError::Unavailable(format!(
        "{url}: the GitHub source fetches only inside the engine"
    )))
}

struct GitHub;

impl ScriptSource for GitHub {
    fn describe() -> PluginInfo {
        PluginInfo::new("github", env!("CARGO_PKG_VERSION"), PluginKind::ScriptSource)
            .with_description(
                "RouterOS scripts from GitHub, pinned to the commit their reference names, with their repository's and owner's details",
            )
            .with_config_key(ConfigKey::optional("token", "A GitHub token, sent as a bearer token (raises the rate limit)").secret())
            .with_config_key(ConfigKey::optional("api_url", "The REST API's base URL (default https://api.github.com)"))
            .with_config_key(ConfigKey::optional("raw_url", "Raw files' base URL (default https://raw.githubusercontent.com)"))
            .with_config_key(ConfigKey::optional("web_url", "Web pages' base URL (default https://github.com)"))
            .with_config_key(ConfigKey::optional("timeout", "Milliseconds one request may take (default 15000)"))
            .with_endpoint("api.github.com:443")
            .with_endpoint("raw.githubusercontent.com:443")
    }

    fn fetch(url: String) -> Result<Fetched, SourceError> {
        let e = entry(&url, None)?;
        Ok(Fetched {
            content: e.content,
            meta: ScriptMeta {
                name: e.name,
                description: e.repository.description,
                author: Some(e.owner.name.unwrap_or(e.owner.login)),
                repository: Some(e.repository.name),
                commit: Some(e.commit),
                license: e.repository.license,
                stars: Some(e.repository.stars),
                readme: None,
                source_url: e.raw_url,
            },
        })
    }
}

impl Catalog for GitHub {
    fn fetch_entry(url: String, readme_url: Option<String>) -> Result<Entry, SourceError> {
        entry(&url, readme_url.as_deref())
    }
}

yardmaster_plugin_sdk::export_script_source!(GitHub);

#[cfg(test)]
mod tests;
