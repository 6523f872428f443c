//! Global templates: files the operator keeps in `templates_dir`, shared by every
//! organization and read-only through the API.
//!
//! Two forms are read:
//! - `NAME.toml`: `name`, `description`, `content`, an optional `[metadata]` table of
//!   strings and `[[variables]]` entries (`name`, `type`, `description`, `default`,
//!   `allowed`);
//! - `NAME.rsc`: the script itself, opened by header comments that are not part of the
//!   content: `# name: ...`, `# description: ...`, `# metadata: key=value` and
//!   `# var: NAME TYPE [default=VALUE] [allowed=a,b,c] [-- description]`.
//!
//! A template's id is `global-` and its file's stem. The folder is read at start and again
//! whenever a file in it is added, changed or removed (checked every two seconds); a file
//! that cannot be read is logged and left out, the others stay served.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use chrono::{DateTime, Utc};
use serde::Deserialize;

use super::{Variable, VariableType, check_declarations};

/// The prefix of every global template's id.
pub const GLOBAL_PREFIX: &str = "global-";

/// How often the folder is checked for changes.
const POLL: Duration = Duration::from_secs(2);

/// One global template as read from its file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GlobalTemplate {
    pub id: String,
    pub name: String,
    pub description: String,
    pub content: String,
    pub metadata: BTreeMap<String, String>,
    pub variables: Vec<Variable>,
    /// The file's modification time.
    pub updated_at: DateTime<Utc>,
}

/// The global templates currently loaded; cheap to clone and share.
#[derive(Debug, Clone, Default)]
pub struct GlobalTemplates {
    current: Arc<RwLock<Arc<BTreeMap<String, GlobalTemplate>>>>,
}

impl GlobalTemplates {
    pub fn new(templates: BTreeMap<String, GlobalTemplate>) -> Self {
        GlobalTemplates {
            current: Arc::new(RwLock::new(Arc::new(templates))),
        }
    }

    /// A snapshot of every loaded template, by id.
    pub fn all(&self) -> Arc<BTreeMap<String, GlobalTemplate>> {
        self.current
            .read()
            .map(|g| g.clone())
            .unwrap_or_else(|e| e.into_inner().clone())
    }

    pub fn get(&self, id: &str) -> Option<GlobalTemplate> {
        self.all().get(id).cloned()
    }

    fn replace(&self, templates: BTreeMap<String, GlobalTemplate>) {
        let mut g = self.current.write().unwrap_or_else(|e| e.into_inner());
        *g = Arc::new(templates);
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TomlTemplate {
    name: String,
    #[serde(default)]
    description: String,
    content: String,
    #[serde(default)]
    metadata: BTreeMap<String, String>,
    #[serde(default)]
    variables: Vec<Variable>,
}

/// Reads every `.toml` and `.rsc` template of `dir` (a missing folder holds none).
/// Files that cannot be read are returned as errors beside the ones that could.
pub fn load_dir(dir: &Path) -> (BTreeMap<String, GlobalTemplate>, Vec<String>) {
    let mut templates = BTreeMap::new();
    let mut errors = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return (templates, errors);
    };
    let mut paths: Vec<PathBuf> = entries.flatten().map(|e| e.path()).collect();
    paths.sort();
    for path in paths {
        let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("");
        if !matches!(ext, "toml" | "rsc") || !path.is_file() {
            continue;
        }
        match load_file(&path) {
            Ok(t) => {
                if templates.contains_key(&t.id) {
                    errors.push(format!(
                        "{}: another file already gives the id {}",
                        path.display(),
                        t.id
                    ));
                } else {
                    templates.insert(t.id.clone(), t);
                }
            }
            Err(e) => errors.push(format!("{}: {e}", path.display())),
        }
    }
    (templates, errors)
}

fn load_file(path: &Path) -> Result<GlobalTemplate, String> {
    let stem = path
        .file_stem()
        .and_then(|s| s.to_str())
        .ok_or("the file name is not UTF-8")?;
    if stem.is_empty()
        || stem.len() > 64
        || !stem
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        return Err("the file name must be letters, digits, - and _ (at most 64)".into());
    }
    let meta = std::fs::metadata(path).map_err(|e| e.to_string())?;
    if meta.len() > 64 * 1024 {
        return Err("larger than 64 KiB".into());
    }
    let text = std::fs::read_to_string(path).map_err(|e| e.to_string())?;
    let t = if path.extension().is_some_and(|e| e == "toml") {
        toml::from_str::<TomlTemplate>(&text).map_err(|e| e.to_string())?
    } else {
        parse_rsc(&text)?
    };
    super::super::store::check_template_fields(&t.name, &t.description, &t.content, &t.metadata)
        .map_err(|e| e.to_string())?;
    check_declarations(&t.variables, &t.content).map_err(|e| e.to_string())?;
    let updated_at = meta
        .modified()
        .ok()
        .map(DateTime::<Utc>::from)
        .unwrap_or_else(Utc::now);
    Ok(GlobalTemplate {
        id: format!("{GLOBAL_PREFIX}{stem}"),
        name: t.name,
        description: t.description,
        content: t.content,
        metadata: t.metadata,
        variables: t.variables,
        updated_at,
    })
}

/// An `.rsc` template: its header comments, then the script.
fn parse_rsc(text: &str) -> Result<TomlTemplate, String> {
    let mut t = TomlTemplate {
        name: String::new(),
        description: String::new(),
        content: String::new(),
        metadata: BTreeMap::new(),
        variables: Vec::new(),
    };
    let mut lines = text.lines().peekable();
    while let Some(line) = lines.peek() {
        let Some(rest) = line.strip_prefix('#') else {
            break;
        };
        let Some((key, value)) = rest.trim_start().split_once(':') else {
            break;
        };
        let value = value.trim();
        match key.trim() {
            "name" => t.name = value.to_owned(),
            "description" => t.description = value.to_owned(),
            "metadata" => {
                let (k, v) = value
                    .split_once('=')
                    .ok_or_else(|| format!("`# metadata: {value}` is not key=value"))?;
                t.metadata.insert(k.trim().to_owned(), v.trim().to_owned());
            }
            "var" => t.variables.push(parse_var(value)?),
            _ => break,
        }
        lines.next();
    }
    if t.name.is_empty() {
        return Err("an .rsc template starts with a `# name: ...` line".into());
    }
    t.content = lines.collect::<Vec<_>>().join("\n");
    if text.ends_with('\n') {
        t.content.push('\n');
    }
    Ok(t)
}

/// `NAME TYPE [default=VALUE] [allowed=a,b,c] [-- description]`.
fn parse_var(spec: &str) -> Result<Variable, String> {
    let (head, description) = match spec.split_once("--") {
        Some((h, d)) => (h, d.trim().to_owned()),
        None => (spec, String::new()),
    };
    let mut words = head.split_whitespace();
    let name = words.next().ok_or("`# var:` needs a name and a type")?;
    let kind = words.next().ok_or("`# var:` needs a name and a type")?;
    let kind: VariableType = serde_json::from_value(serde_json::Value::String(kind.into()))
        .map_err(|_| {
            format!(
                "`{kind}` is not a variable type (string, integer, ip, ip-prefix, interface-name, enum)"
            )
        })?;
    let mut v = Variable {
        name: name.to_owned(),
        description,
        kind,
        default: None,
        allowed: None,
    };
    for w in words {
        match w.split_once('=') {
            Some(("default", d)) => v.default = Some(d.to_owned()),
            Some(("allowed", a)) => v.allowed = Some(a.split(',').map(str::to_owned).collect()),
            _ => {
                return Err(format!(
                    "`{w}` in `# var: {spec}` is not default= or allowed="
                ));
            }
        }
    }
    Ok(v)
}

/// What identifies the folder's state: each template file with its size and time.
fn fingerprint(dir: &Path) -> Vec<(PathBuf, u64, Option<SystemTime>)> {
    let mut out: Vec<_> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let m = e.metadata().ok()?;
            Some((e.path(), m.len(), m.modified().ok()))
        })
        .collect();
    out.sort();
    out
}

/// Keeps `templates` in step with `dir` until `shutdown` resolves.
pub async fn watch(
    dir: PathBuf,
    templates: GlobalTemplates,
    shutdown: impl std::future::Future<Output = ()>,
) {
    tokio::pin!(shutdown);
    let mut seen = fingerprint(&dir);
    loop {
        tokio::select! {
            () = &mut shutdown => return,
            () = tokio::time::sleep(POLL) => {}
        }
        let now = {
            let dir = dir.clone();
            tokio::task::spawn_blocking(move || fingerprint(&dir))
                .await
                .unwrap_or_default()
        };
        if now == seen {
            continue;
        }
        seen = now;
        let loaded = {
            let dir = dir.clone();
            tokio::task::spawn_blocking(move || load_dir(&dir)).await
        };
        let Ok((loaded, errors)) = loaded else {
            continue;
        };
        for e in &errors {
            tracing::warn!(template = %e, "a global template was not loaded");
        }
        tracing::info!(count = loaded.len(), dir = %dir.display(), "global templates reloaded");
        templates.replace(loaded);
    }
}
