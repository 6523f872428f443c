//! Reading the URLs a script is submitted by: a raw file
//! (`{raw}/{owner}/{repo}/{ref}/{path}`) or a file's page
//! (`{web}/{owner}/{repo}/blob/{ref}/{path}`), against the configured base URLs so a
//! GitHub Enterprise server or a mirror works the same way.

use yardmaster_plugin_sdk::script_source::SourceError;

/// Where the plugin reaches GitHub: its REST API, raw files and web pages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bases {
    pub api: String,
    pub raw: String,
    pub web: String,
}

impl Default for Bases {
    fn default() -> Self {
        Bases {
            api: "https://api.github.com".into(),
            raw: "https://raw.githubusercontent.com".into(),
            web: "https://github.com".into(),
        }
    }
}

/// A file in a repository at a reference.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileRef {
    pub owner: String,
    pub repo: String,
    pub reference: String,
    pub path: String,
}

impl FileRef {
    pub fn file_name(&self) -> &str {
        self.path.rsplit('/').next().unwrap_or(&self.path)
    }
}

fn segment_ok(s: &str) -> bool {
    !s.is_empty()
        && s != "."
        && s != ".."
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

/// `base` without a trailing slash, then `url` after it, or `None`.
fn after<'u>(url: &'u str, base: &str) -> Option<&'u str> {
    let base = base.trim_end_matches('/');
    url.strip_prefix(base)?.strip_prefix('/')
}

/// Reads a raw or blob URL. The query and fragment are dropped.
pub fn parse(url: &str, bases: &Bases) -> Result<FileRef, SourceError> {
    let url = url.trim();
    let clean = url.split(['?', '#']).next().unwrap_or(url);
    let invalid = |why: &str| {
        SourceError::InvalidUrl(format!(
            "{url}: {why}; give {}/OWNER/REPO/REF/PATH or {}/OWNER/REPO/blob/REF/PATH",
            bases.raw.trim_end_matches('/'),
            bases.web.trim_end_matches('/')
        ))
    };
    let (rest, blob) = if let Some(rest) = after(clean, &bases.raw) {
        (rest, false)
    } else if let Some(rest) = after(clean, &bases.web) {
        (rest, true)
    } else {
        return Err(invalid("not a GitHub file URL"));
    };
    let parts: Vec<&str> = rest.split('/').collect();
    let (owner, repo, reference, path) = match (blob, parts.as_slice()) {
        (false, [owner, repo, reference, path @ ..]) if !path.is_empty() => {
            (*owner, *repo, *reference, path)
        }
        (true, [owner, repo, "blob", reference, path @ ..]) if !path.is_empty() => {
            (*owner, *repo, *reference, path)
        }
        _ => return Err(invalid("it does not name a file")),
    };
    if ![owner, repo, reference].iter().all(|s| segment_ok(s))
        || !path.iter().all(|s| segment_ok(s))
    {
        return Err(invalid(
            "a part of it is empty or holds characters a GitHub name cannot",
        ));
    }
    Ok(FileRef {
        owner: owner.to_owned(),
        repo: repo.to_owned(),
        reference: reference.to_owned(),
        path: path.join("/"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raw_and_blob_urls_name_the_same_file() {
        let b = Bases::default();
        let raw = parse(
            "https://raw.githubusercontent.com/acme/scripts/main/routeros/backup.rsc",
            &b,
        )
        .expect("raw");
        let blob = parse(
            "https://github.com/acme/scripts/blob/main/routeros/backup.rsc?plain=1",
            &b,
        )
        .expect("blob");
        assert_eq!(raw, blob);
        assert_eq!(raw.owner, "acme");
        assert_eq!(raw.path, "routeros/backup.rsc");
        assert_eq!(raw.file_name(), "backup.rsc");
    }

    #[test]
    fn other_urls_are_refused() {
        let b = Bases::default();
        for url in [
            "https://example.com/acme/scripts/main/a.rsc",
            "https://github.com/acme/scripts/tree/main/a.rsc",
            "https://raw.githubusercontent.com/acme/scripts/main",
            "https://raw.githubusercontent.com/acme/scripts/main/../secret",
            "https://raw.githubusercontent.com/acme/sc%2Fripts/main/a.rsc",
            "https://github.com.evil.example/acme/scripts/blob/main/a.rsc",
        ] {
            assert!(
                matches!(parse(url, &b), Err(SourceError::InvalidUrl(_))),
                "{url}"
            );
        }
    }

    #[test]
    fn configured_bases_are_honoured() {
        let b = Bases {
            api: "http://127.0.0.1:9/api/v3".into(),
            raw: "http://127.0.0.1:9/raw/".into(),
            web: "http://127.0.0.1:9/web".into(),
        };
        let f = parse("http://127.0.0.1:9/raw/o/r/v1.2/a/b.rsc", &b).expect("raw");
        assert_eq!((f.reference.as_str(), f.path.as_str()), ("v1.2", "a/b.rsc"));
        assert!(parse("https://raw.githubusercontent.com/o/r/main/a.rsc", &b).is_err());
    }
}
