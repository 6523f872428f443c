//! What a script changed: the unified diff of a router's `/export` before and after it,
//! the shape of that diff kept on the job, the masking of secrets in what the API shows,
//! and the grouping of a run's sites by identical change.
//!
//! The header comments of an export (`# 2026-12-04 21:00:00 by RouterOS 7.18.2`,
//! `# software id = ...`) change with every export, so they are left out of the diff;
//! the digest covers the changed lines without their positions, so two sites whose
//! scripts changed the same lines group together even when their exports differ
//! elsewhere.

use std::collections::BTreeMap;

use serde::Serialize;
use sha2::{Digest, Sha256};
use similar::{ChangeTag, TextDiff};
use utoipa::ToSchema;

use crate::store::{Job, JobChanges};

/// Lines of context around each change, as `diff -u` prints.
const CONTEXT: usize = 3;

/// The export without its leading comment lines, which only say when and by what it was
/// taken.
fn body(export: &str) -> String {
    let mut lines = export.lines().peekable();
    while lines
        .peek()
        .is_some_and(|l| l.trim_start().starts_with('#') || l.trim().is_empty())
    {
        lines.next();
    }
    let mut out = String::with_capacity(export.len());
    for line in lines {
        out.push_str(line);
        out.push('\n');
    }
    out
}

/// The unified diff from `before` to `after` (empty when nothing changed), and its shape.
pub fn diff(before: &str, after: &str) -> (String, JobChanges) {
    let (before, after) = (body(before), body(after));
    let text = TextDiff::from_lines(&before, &after);
    let mut hasher = Sha256::new();
    let (mut added, mut removed) = (0u32, 0u32);
    for change in text.iter_all_changes() {
        let sign = match change.tag() {
            ChangeTag::Equal => continue,
            ChangeTag::Insert => {
                added = added.saturating_add(1);
                b'+'
            }
            ChangeTag::Delete => {
                removed = removed.saturating_add(1);
                b'-'
            }
        };
        hasher.update([sign]);
        hasher.update(change.value().trim_end_matches('\n').as_bytes());
        hasher.update(b"\n");
    }
    let unified = if added == 0 && removed == 0 {
        String::new()
    } else {
        text.unified_diff()
            .context_radius(CONTEXT)
            .header("before", "after")
            .to_string()
    };
    let changes = JobChanges {
        added,
        removed,
        digest: hex::encode(hasher.finalize()),
    };
    (unified, changes)
}

/// `diff` with the values of secret attributes (`password=`, `secret=`, `*-key=`,
/// `passphrase=`, ...) replaced, for a reader not entitled to the router's secrets.
pub fn mask(diff: &str) -> String {
    crate::store::redact_text(diff)
}

/// One group of a run's sites whose scripts changed the same lines.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct ChangeGroup {
    /// The digest the group shares ([`JobChanges::digest`]).
    pub digest: String,
    pub added: u32,
    pub removed: u32,
    pub sites: Vec<String>,
}

/// What a run's scripts changed, grouped by identical diff.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct ChangesSummary {
    /// One line for people: `12 sites changed the same 3 lines; 1 site differs`.
    #[schema(example = "12 sites changed the same 3 lines; 1 site differs")]
    pub summary: String,
    /// Groups of sites that changed something, largest first.
    pub groups: Vec<ChangeGroup>,
    /// Sites whose export did not change.
    pub unchanged: Vec<String>,
}

fn sites(n: usize) -> String {
    if n == 1 {
        "1 site".to_owned()
    } else {
        format!("{n} sites")
    }
}

fn lines(n: u32) -> String {
    if n == 1 {
        "1 line".to_owned()
    } else {
        format!("{n} lines")
    }
}

/// Groups the jobs of a run that have a diff; `None` when none has one.
pub fn summarize<'a>(jobs: impl IntoIterator<Item = &'a Job>) -> Option<ChangesSummary> {
    summarize_sites(
        jobs.into_iter()
            .map(|job| (job.site_id.as_str(), job.changes.as_ref())),
    )
}

/// Groups the sites of a run by the shape of their diffs (`None`: no diff); `None` when
/// none has one.
pub fn summarize_sites<'a>(
    outcomes: impl IntoIterator<Item = (&'a str, Option<&'a JobChanges>)>,
) -> Option<ChangesSummary> {
    let mut groups: BTreeMap<String, ChangeGroup> = BTreeMap::new();
    let mut unchanged = Vec::new();
    let mut any = false;
    for (site_id, changes) in outcomes {
        let Some(changes) = changes else {
            continue;
        };
        any = true;
        if changes.added == 0 && changes.removed == 0 {
            unchanged.push(site_id.to_owned());
            continue;
        }
        groups
            .entry(changes.digest.clone())
            .or_insert_with(|| ChangeGroup {
                digest: changes.digest.clone(),
                added: changes.added,
                removed: changes.removed,
                sites: Vec::new(),
            })
            .sites
            .push(site_id.to_owned());
    }
    if !any {
        return None;
    }
    let mut groups: Vec<ChangeGroup> = groups.into_values().collect();
    groups.sort_by(|a, b| {
        b.sites
            .len()
            .cmp(&a.sites.len())
            .then(a.digest.cmp(&b.digest))
    });
    let mut parts = Vec::new();
    match groups.first() {
        Some(first) if first.sites.len() > 1 || groups.len() == 1 => {
            let changed = lines(first.added + first.removed);
            parts.push(if first.sites.len() == 1 {
                format!("1 site changed {changed}")
            } else {
                format!("{} changed the same {changed}", sites(first.sites.len()))
            });
            let others: usize = groups[1..].iter().map(|g| g.sites.len()).sum();
            if others > 0 {
                parts.push(format!(
                    "{} {}",
                    sites(others),
                    if others == 1 { "differs" } else { "differ" }
                ));
            }
        }
        Some(_) => {
            let all: usize = groups.iter().map(|g| g.sites.len()).sum();
            parts.push(format!("{} changed different lines", sites(all)));
        }
        None => {}
    }
    if !unchanged.is_empty() {
        parts.push(format!("{} changed nothing", sites(unchanged.len())));
    }
    Some(ChangesSummary {
        summary: parts.join("; "),
        groups,
        unchanged,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const BEFORE: &str = "# 2026-12-04 21:00:00 by RouterOS 7.18.2\n# software id = AB12\n\
        /ip address\nadd address=10.0.0.1/24 interface=ether1\n/system identity\nset name=r1\n";

    #[test]
    fn the_header_is_not_a_change() {
        let after = BEFORE.replace("21:00:00", "21:05:00");
        let (text, changes) = diff(BEFORE, &after);
        assert_eq!(text, "");
        assert_eq!((changes.added, changes.removed), (0, 0));
    }

    #[test]
    fn a_change_is_a_unified_diff_with_a_digest_free_of_positions() {
        let after = BEFORE.replace("set name=r1", "set name=edge");
        let (text, changes) = diff(BEFORE, &after);
        assert!(text.contains("--- before\n+++ after\n"), "{text}");
        assert!(text.contains("-set name=r1\n+set name=edge\n"), "{text}");
        assert_eq!((changes.added, changes.removed), (1, 1));
        // The same change lower in a longer export has the same digest.
        let longer = BEFORE.replace("/system", "/ip dns\nset servers=1.1.1.1\n/system");
        let (_, same) = diff(&longer, &longer.replace("set name=r1", "set name=edge"));
        assert_eq!(same.digest, changes.digest);
    }

    #[test]
    fn secrets_are_masked() {
        let after =
            format!("{BEFORE}/ppp secret\nadd name=u password=hunter2 remote-address=10.1.1.1\n");
        let (text, _) = diff(BEFORE, &after);
        let masked = mask(&text);
        assert!(!masked.contains("hunter2"), "{masked}");
        assert!(masked.contains("remote-address=10.1.1.1"), "{masked}");
    }

    fn job_with(site: &str, changes: Option<JobChanges>) -> Job {
        let input = crate::store::JobInput {
            organization: "acme".into(),
            site_id: site.into(),
            request_id: None,
            idempotency_key: None,
            description: "d".into(),
            script: "s".into(),
            make_backup: true,
            express_execute: false,
            needs_acknowledgement: false,
            notify_url: None,
            rollback_after_secs: None,
            script_origin: None,
        };
        let mut job = crate::store::test_new_job(input);
        job.changes = changes;
        job
    }

    #[test]
    fn sites_group_by_identical_change() {
        let same = JobChanges {
            added: 2,
            removed: 1,
            digest: "a".into(),
        };
        let other = JobChanges {
            added: 1,
            removed: 0,
            digest: "b".into(),
        };
        let mut jobs: Vec<Job> = (0..12)
            .map(|i| job_with(&format!("s{i}"), Some(same.clone())))
            .collect();
        jobs.push(job_with("odd", Some(other)));
        jobs.push(job_with("none", None));
        let summary = summarize(&jobs).expect("summary");
        assert_eq!(
            summary.summary,
            "12 sites changed the same 3 lines; 1 site differs"
        );
        assert_eq!(summary.groups.len(), 2);
        assert_eq!(summary.groups[1].sites, vec!["odd"]);
        assert!(summarize(&jobs[13..]).is_none());
    }
}
