//! Community scripts: public RouterOS scripts, shared by every organization, each pinned
//! to the commit it was fetched at.
//!
//! A submission is stored as `processing` and queued in the same transaction; the
//! queue entry leaves only in the transaction that records the outcome (`ready` with the
//! content, or `failed` with the reason), so a restart resumes what was in flight.
//! Refreshing makes a new record at the reference's new commit and leaves the old one as
//! it was: what was reviewed is what runs.

use chrono::{DateTime, Utc};
use redb::ReadableTable;
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::Store;
use super::crypto::new_ulid;
use super::error::StoreError;
use super::journal::push_audit;
use super::records::AuditInput;
use super::tables::{COMMUNITY, COMMUNITY_BY_SOURCE, COMMUNITY_QUEUE};
use super::txn::{encode, load, millis};

const KIND: &str = "community script";

pub const AUDIT_COMMUNITY_SUBMITTED: &str = "community_script.submitted";

/// Where a community script stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CommunityStatus {
    /// Queued or being fetched.
    Processing,
    Ready,
    /// Could not be fetched or accepted; `failure` says why.
    Failed,
}

/// The repository a community script lives in.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommunityRepository {
    pub name: String,
    pub url: String,
    pub description: Option<String>,
    pub license: Option<String>,
    pub stars: u32,
    pub created_at: Option<String>,
}

/// The account that owns the repository.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommunityUser {
    pub login: String,
    pub name: Option<String>,
    pub url: String,
    pub avatar: Option<String>,
    pub followers: u32,
    pub created_at: Option<String>,
}

/// What a fetch found: the script at one commit, and where it lives.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommunityContent {
    /// The file name.
    pub name: String,
    pub path: String,
    pub content: String,
    pub commit: String,
    pub reference: String,
    pub raw_url: String,
    /// The file's page at the commit.
    pub web_url: String,
    pub repository: CommunityRepository,
    pub user: CommunityUser,
    pub readme: Option<String>,
    pub readme_raw_url: Option<String>,
}

/// One community script.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommunityScript {
    /// A ULID.
    pub id: String,
    pub status: CommunityStatus,
    /// Why it failed.
    #[serde(default)]
    pub failure: Option<String>,
    /// The URL as submitted.
    pub github_url: String,
    pub readme_url: Option<String>,
    /// The record this one refreshed.
    #[serde(default)]
    pub refreshed_from: Option<String>,
    /// Set once ready.
    #[serde(default)]
    pub fetched: Option<CommunityContent>,
    /// git's blob hash of the content (hex SHA-1), and its SHA-256.
    #[serde(default)]
    pub sha: Option<String>,
    #[serde(default)]
    pub sha256: Option<String>,
    /// Fetch attempts made.
    #[serde(default)]
    pub attempts: u32,
    /// What the content does, in a sentence; written by the engine once it is ready.
    #[serde(default)]
    pub summary: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// git's blob object id of `content`: SHA-1 over `blob <len>\0` and the bytes.
pub fn git_blob_sha(content: &[u8]) -> String {
    use sha1::{Digest, Sha1};
    let mut h = Sha1::new();
    h.update(format!("blob {}\0", content.len()).as_bytes());
    h.update(content);
    hex::encode(h.finalize())
}

fn sha256(content: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    hex::encode(Sha256::digest(content))
}

fn put(tx: &redb::WriteTransaction, s: &CommunityScript) -> Result<(), StoreError> {
    let bytes = encode(KIND, &s.id, s)?;
    tx.open_table(COMMUNITY)?
        .insert(s.id.as_str(), bytes.as_slice())?;
    Ok(())
}

/// What became of a submission: a new record, or the same URL already in the library.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Submitted {
    New(CommunityScript),
    Existing(CommunityScript),
}

impl Store {
    /// Stores a submission as `processing` and queues it. A URL still processing, or
    /// one that names a commit already fetched, returns that record instead.
    pub fn submit_community_script(
        &self,
        org: &str,
        by: &str,
        github_url: &str,
        readme_url: Option<&str>,
        refreshed_from: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<Submitted, StoreError> {
        self.write(|tx| {
            if refreshed_from.is_none() {
                let table = tx.open_table(COMMUNITY)?;
                // A URL naming a commit, fetched before: the same file at the same commit.
                if let Some(commit) = pinned_commit(github_url)
                    && let Some(id) = tx
                        .open_table(COMMUNITY_BY_SOURCE)?
                        .get((github_url, commit.as_str()))?
                    && let Some(s) = load::<CommunityScript>(&table, KIND, id.value())?
                {
                    return Ok(Submitted::Existing(s));
                }
                for row in tx.open_table(COMMUNITY_QUEUE)?.iter()? {
                    let (key, _) = row?;
                    let (_, id) = key.value();
                    if let Some(s) = load::<CommunityScript>(&table, KIND, id)?
                        && s.github_url == github_url
                        && s.readme_url.as_deref() == readme_url
                    {
                        return Ok(Submitted::Existing(s));
                    }
                }
            }
            let s = new_submission(github_url, readme_url, refreshed_from, now);
            put(tx, &s)?;
            tx.open_table(COMMUNITY_QUEUE)?
                .insert((millis(now), s.id.as_str()), 0)?;
            push_audit(tx, submission_audit(org, by, &s, now))?;
            Ok(Submitted::New(s))
        })
    }

    /// The next queued submission due at `now` (oldest first), with its queue key.
    pub fn next_community_job(
        &self,
        now: DateTime<Utc>,
    ) -> Result<Option<(i64, CommunityScript)>, StoreError> {
        self.read(|tx| {
            let table = tx.open_table(COMMUNITY)?;
            let queue = tx.open_table(COMMUNITY_QUEUE)?;
            let Some(row) = queue
                .range((i64::MIN, "")..=(millis(now), "\u{10ffff}"))?
                .next()
            else {
                return Ok(None);
            };
            let (key, _) = row?;
            let (at, id) = key.value();
            Ok(load::<CommunityScript>(&table, KIND, id)?.map(|s| (at, s)))
        })
    }

    /// Records a fetch: `ready` with its content, or (after `final_failure`) `failed`;
    /// a failure that is not final requeues it at `retry_at`. A file already fetched at the
    /// same commit from the same URL keeps its record; this one then points to it
    /// (`refreshed_from` unchanged) with the same content.
    pub fn finish_community_job(
        &self,
        queued_at: i64,
        id: &str,
        outcome: Result<CommunityContent, (String, Option<DateTime<Utc>>)>,
        now: DateTime<Utc>,
    ) -> Result<CommunityScript, StoreError> {
        self.write(|tx| {
            let mut queue = tx.open_table(COMMUNITY_QUEUE)?;
            let attempts = queue
                .remove((queued_at, id))?
                .map(|v| v.value())
                .ok_or_else(|| StoreError::not_found("queued community script", id))?;
            let s: CommunityScript = load(&tx.open_table(COMMUNITY)?, KIND, id)?
                .ok_or_else(|| StoreError::not_found(KIND, id))?;
            let (s, finish) = finished(s, attempts, outcome, now);
            match finish {
                Finish::Ready { commit, content } => {
                    tx.open_table(COMMUNITY_BY_SOURCE)?
                        .insert((s.github_url.as_str(), commit.as_str()), s.id.as_str())?;
                    super::queue_summary(tx, super::SummaryOf::Community, &s.id, &content, now)?;
                }
                Finish::Retry(at) => {
                    queue.insert((millis(at), id), s.attempts)?;
                }
                Finish::Failed => {}
            }
            drop(queue);
            put(tx, &s)?;
            Ok(s)
        })
    }

    pub fn get_community_script(&self, id: &str) -> Result<CommunityScript, StoreError> {
        self.read(|tx| {
            load(&tx.open_table(COMMUNITY)?, KIND, id)?
                .ok_or_else(|| StoreError::not_found(KIND, id))
        })
    }

    /// Every community script, oldest first (ids are ULIDs).
    pub fn list_community_scripts(&self) -> Result<Vec<CommunityScript>, StoreError> {
        self.read(|tx| {
            let mut out = Vec::new();
            for row in tx.open_table(COMMUNITY)?.iter()? {
                let (key, bytes) = row?;
                out.push(super::txn::decode(KIND, key.value(), bytes.value())?);
            }
            Ok(out)
        })
    }
}

// What a submission and its processing mean, whatever store keeps them.

/// The commit a source URL pins, lowercased: a 40-hex-digit path segment.
pub(super) fn pinned_commit(github_url: &str) -> Option<String> {
    github_url
        .split('/')
        .find(|s| s.len() == 40 && s.bytes().all(|b| b.is_ascii_hexdigit()))
        .map(str::to_ascii_lowercase)
}

/// A new submission, processing.
pub(super) fn new_submission(
    github_url: &str,
    readme_url: Option<&str>,
    refreshed_from: Option<&str>,
    now: DateTime<Utc>,
) -> CommunityScript {
    CommunityScript {
        id: new_ulid(),
        status: CommunityStatus::Processing,
        failure: None,
        github_url: github_url.to_owned(),
        readme_url: readme_url.map(str::to_owned),
        refreshed_from: refreshed_from.map(str::to_owned),
        fetched: None,
        sha: None,
        sha256: None,
        attempts: 0,
        summary: None,
        created_at: now,
        updated_at: now,
    }
}

/// The audit line of a submission by `by` of `org`.
pub(super) fn submission_audit(
    org: &str,
    by: &str,
    s: &CommunityScript,
    now: DateTime<Utc>,
) -> AuditInput {
    AuditInput {
        at: now,
        organization: org.to_owned(),
        actor: by.to_owned(),
        action: AUDIT_COMMUNITY_SUBMITTED.into(),
        target: s.id.clone(),
        detail: json!({
            "github_url": s.github_url,
            "readme_url": s.readme_url,
            "refreshed_from": s.refreshed_from,
        }),
    }
}

/// What else a processed submission needs written.
pub(super) enum Finish {
    /// Fetched: the source (its URL and `commit`) now names it, and a summary of
    /// `content` is to be written.
    Ready { commit: String, content: String },
    /// Tried again at this time.
    Retry(DateTime<Utc>),
    /// Given up.
    Failed,
}

/// `s` after an attempt (its `attempts` before it given) with `outcome`: the fetched
/// content with its digests, a failure to retry at a time, or a failure for good.
pub(super) fn finished(
    mut s: CommunityScript,
    attempts: u32,
    outcome: Result<CommunityContent, (String, Option<DateTime<Utc>>)>,
    now: DateTime<Utc>,
) -> (CommunityScript, Finish) {
    s.attempts = attempts + 1;
    s.updated_at = now;
    let finish = match outcome {
        Ok(content) => {
            s.sha = Some(git_blob_sha(content.content.as_bytes()));
            s.sha256 = Some(sha256(content.content.as_bytes()));
            s.status = CommunityStatus::Ready;
            s.failure = None;
            let finish = Finish::Ready {
                commit: content.commit.clone(),
                content: content.content.clone(),
            };
            s.fetched = Some(content);
            finish
        }
        Err((reason, Some(retry_at))) => {
            s.failure = Some(reason);
            Finish::Retry(retry_at)
        }
        Err((reason, None)) => {
            s.status = CommunityStatus::Failed;
            s.failure = Some(reason);
            Finish::Failed
        }
    };
    (s, finish)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn git_blob_sha_matches_git() {
        // `printf 'hello\n' | git hash-object --stdin`
        assert_eq!(
            git_blob_sha(b"hello\n"),
            "ce013625030ba8dba906f756967f9e9ca394464a"
        );
        assert_eq!(
            git_blob_sha(b""),
            "e69de29bb2d1d6434b8b29ae775ad8c2e48c5391"
        );
    }

    #[test]
    fn a_submission_stays_queued_until_its_outcome_is_recorded() {
        let dir = tempfile::tempdir().expect("dir");
        let url = "https://raw.githubusercontent.com/a/b/main/x.rsc";
        let now = Utc::now();
        {
            let store = Store::open(dir.path()).expect("open");
            let Submitted::New(s) = store
                .submit_community_script("o", "u", url, None, None, now)
                .expect("submit")
            else {
                panic!("new");
            };
            // The same URL while processing is the same record.
            assert_eq!(
                store
                    .submit_community_script("o2", "v", url, None, None, now)
                    .expect("again"),
                Submitted::Existing(s)
            );
        }
        // After a restart the queue still holds it.
        let store = Store::open(dir.path()).expect("reopen");
        let (at, s) = store
            .next_community_job(now)
            .expect("next")
            .expect("queued");
        let retry = now + chrono::TimeDelta::seconds(5);
        store
            .finish_community_job(at, &s.id, Err(("busy".into(), Some(retry))), now)
            .expect("retry");
        assert!(store.next_community_job(now).expect("next").is_none());
        let (at, again) = store
            .next_community_job(retry)
            .expect("next")
            .expect("requeued");
        assert_eq!(again.id, s.id);
        let content = CommunityContent {
            name: "x.rsc".into(),
            content: "hello\n".into(),
            commit: "c".repeat(40),
            ..CommunityContent::default()
        };
        let done = store
            .finish_community_job(at, &s.id, Ok(content), now)
            .expect("done");
        assert_eq!(done.status, CommunityStatus::Ready);
        assert_eq!(done.attempts, 2);
        assert_eq!(
            done.sha.as_deref(),
            Some("ce013625030ba8dba906f756967f9e9ca394464a")
        );
        assert!(store.next_community_job(retry).expect("next").is_none());
        // Recording twice is refused: the queue entry is gone.
        assert!(
            store
                .finish_community_job(at, &s.id, Err(("x".into(), None)), now)
                .is_err()
        );
    }
}
