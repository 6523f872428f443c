//! Private script templates: an organization's reusable scripts, every edit kept as a
//! numbered version so a schedule made from version 3 can always be traced to it.
//!
//! The current template lives in `TEMPLATES`; every version, the current one included,
//! in `TEMPLATE_VERSIONS`. A template is read only by its own organization: one of
//! another organization is answered as not found.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use redb::{ReadableMultimapTable, ReadableTable};
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::Store;
use super::crypto::new_id;
use super::error::StoreError;
use super::journal::push_audit;
use super::records::AuditInput;
use super::tables::{TEMPLATE_VERSIONS, TEMPLATES, TEMPLATES_BY_ORG};
use super::txn::{decode, encode, load};
use crate::templates::{Variable, check_declarations};

const KIND: &str = "template";

/// Longest template name.
pub const MAX_TEMPLATE_NAME: usize = 100;
/// Longest template description.
pub const MAX_TEMPLATE_DESCRIPTION: usize = 200;
/// Longest template content.
pub const MAX_TEMPLATE_CONTENT: usize = 5000;
/// Most metadata entries, and the longest key and value.
pub const MAX_METADATA_ENTRIES: usize = 50;
pub const MAX_METADATA_KEY: usize = 50;
pub const MAX_METADATA_VALUE: usize = 1000;
/// Most private templates one organization keeps.
pub const MAX_TEMPLATES_PER_ORG: usize = 10_000;
/// Most versions one template keeps; an edit past it is refused.
pub const MAX_TEMPLATE_VERSIONS: u64 = 1000;

pub const AUDIT_TEMPLATE_CREATED: &str = "template.created";
pub const AUDIT_TEMPLATE_UPDATED: &str = "template.updated";
pub const AUDIT_TEMPLATE_DELETED: &str = "template.deleted";

/// An organization's template as it stands now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Template {
    pub id: String,
    pub organization: String,
    pub name: String,
    pub description: String,
    pub content: String,
    #[serde(default)]
    pub metadata: BTreeMap<String, String>,
    #[serde(default)]
    pub variables: Vec<Variable>,
    /// The user who created it.
    pub author: String,
    /// The user who wrote the current version.
    pub updated_by: String,
    /// From 1, one more at every edit.
    pub version: u64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// What the content does, in a sentence; written by the engine after each change.
    #[serde(default)]
    pub summary: Option<String>,
}

/// One version of a template, as it was written.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TemplateVersion {
    pub version: u64,
    pub name: String,
    pub description: String,
    pub content: String,
    #[serde(default)]
    pub metadata: BTreeMap<String, String>,
    #[serde(default)]
    pub variables: Vec<Variable>,
    /// Who wrote this version.
    pub author: String,
    pub created_at: DateTime<Utc>,
}

/// What a create or an edit gives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TemplateInput {
    pub name: String,
    pub description: String,
    pub content: String,
    pub metadata: BTreeMap<String, String>,
    pub variables: Vec<Variable>,
}

fn too_long(field: &'static str, value: &str, max: usize) -> Result<(), StoreError> {
    if value.chars().take(max + 1).count() > max {
        return Err(StoreError::invalid(
            KIND,
            field,
            format!("at most {max} characters"),
        ));
    }
    Ok(())
}

/// The limits every template meets, private or global.
pub fn check_template_fields(
    name: &str,
    description: &str,
    content: &str,
    metadata: &BTreeMap<String, String>,
) -> Result<(), StoreError> {
    if name.trim().is_empty() {
        return Err(StoreError::invalid(KIND, "name", "must not be empty"));
    }
    too_long("name", name, MAX_TEMPLATE_NAME)?;
    too_long("description", description, MAX_TEMPLATE_DESCRIPTION)?;
    if content.trim().is_empty() {
        return Err(StoreError::invalid(KIND, "content", "must not be empty"));
    }
    too_long("content", content, MAX_TEMPLATE_CONTENT)?;
    if metadata.len() > MAX_METADATA_ENTRIES {
        return Err(StoreError::invalid(
            KIND,
            "metadata",
            format!("at most {MAX_METADATA_ENTRIES} entries"),
        ));
    }
    for (k, v) in metadata {
        if k.is_empty() || k.chars().count() > MAX_METADATA_KEY {
            return Err(StoreError::invalid(
                KIND,
                "metadata",
                format!("a key has 1 to {MAX_METADATA_KEY} characters; `{k}` does not"),
            ));
        }
        if v.chars().take(MAX_METADATA_VALUE + 1).count() > MAX_METADATA_VALUE {
            return Err(StoreError::invalid(
                KIND,
                "metadata",
                format!("the value of `{k}` is longer than {MAX_METADATA_VALUE} characters"),
            ));
        }
    }
    Ok(())
}

impl TemplateInput {
    fn validate(&self) -> Result<(), StoreError> {
        check_template_fields(&self.name, &self.description, &self.content, &self.metadata)?;
        check_declarations(&self.variables, &self.content)
            .map_err(|e| StoreError::invalid(KIND, "variables", e.to_string()))
    }
}

pub(super) fn version_of(t: &Template) -> TemplateVersion {
    TemplateVersion {
        version: t.version,
        name: t.name.clone(),
        description: t.description.clone(),
        content: t.content.clone(),
        metadata: t.metadata.clone(),
        variables: t.variables.clone(),
        author: t.updated_by.clone(),
        created_at: t.updated_at,
    }
}

fn put_version(tx: &redb::WriteTransaction, t: &Template) -> Result<(), StoreError> {
    let bytes = encode(KIND, &t.id, &version_of(t))?;
    tx.open_table(TEMPLATE_VERSIONS)?
        .insert((t.id.as_str(), t.version), bytes.as_slice())?;
    Ok(())
}

fn put(tx: &redb::WriteTransaction, t: &Template) -> Result<(), StoreError> {
    let bytes = encode(KIND, &t.id, t)?;
    tx.open_table(TEMPLATES)?
        .insert(t.id.as_str(), bytes.as_slice())?;
    put_version(tx, t)
}

/// The template `id` of `org`, or not found (also when it is another organization's).
fn owned(
    table: &impl ReadableTable<&'static str, &'static [u8]>,
    org: &str,
    id: &str,
) -> Result<Template, StoreError> {
    match load::<Template>(table, KIND, id)? {
        Some(t) if t.organization == org => Ok(t),
        _ => Err(StoreError::not_found(KIND, id)),
    }
}

impl Store {
    /// Creates a private template of `org`, at version 1.
    pub fn create_template(
        &self,
        org: &str,
        author: &str,
        input: TemplateInput,
        now: DateTime<Utc>,
    ) -> Result<Template, StoreError> {
        let t = new_template(org, author, input, now)?;
        self.write(|tx| {
            let mut by_org = tx.open_multimap_table(TEMPLATES_BY_ORG)?;
            if by_org.get(org)?.count() >= MAX_TEMPLATES_PER_ORG {
                return Err(too_many());
            }
            by_org.insert(org, t.id.as_str())?;
            put(tx, &t)?;
            super::queue_summary(tx, super::SummaryOf::Template, &t.id, &t.content, now)?;
            push_audit(tx, template_audit(AUDIT_TEMPLATE_CREATED, &t, author, now))?;
            Ok(t)
        })
    }

    /// The template `id` of `org`.
    pub fn get_template(&self, org: &str, id: &str) -> Result<Template, StoreError> {
        self.read(|tx| owned(&tx.open_table(TEMPLATES)?, org, id))
    }

    /// Every private template of `org`, oldest first.
    pub fn list_templates(&self, org: &str) -> Result<Vec<Template>, StoreError> {
        self.read(|tx| {
            let table = tx.open_table(TEMPLATES)?;
            let mut out = Vec::new();
            for id in tx.open_multimap_table(TEMPLATES_BY_ORG)?.get(org)? {
                let id = id?;
                if let Some(t) = load::<Template>(&table, KIND, id.value())? {
                    out.push(t);
                }
            }
            out.sort_by(|a, b| (a.created_at, &a.id).cmp(&(b.created_at, &b.id)));
            Ok(out)
        })
    }

    /// Replaces the template's content and description, keeping what it was as its
    /// previous version. `expected_version`, when given, must be the current one (an edit
    /// made from a stale copy is refused rather than silently overwriting another).
    pub fn update_template(
        &self,
        org: &str,
        id: &str,
        by: &str,
        input: TemplateInput,
        expected_version: Option<u64>,
        now: DateTime<Utc>,
    ) -> Result<Template, StoreError> {
        self.write(|tx| {
            let old = owned(&tx.open_table(TEMPLATES)?, org, id)?;
            let content_changed = old.content != input.content;
            let t = edited(old, by, input, expected_version, now)?;
            if content_changed {
                super::queue_summary(tx, super::SummaryOf::Template, id, &t.content, now)?;
            }
            put(tx, &t)?;
            push_audit(tx, template_audit(AUDIT_TEMPLATE_UPDATED, &t, by, now))?;
            Ok(t)
        })
    }

    /// Deletes the template and every version of it.
    pub fn delete_template(
        &self,
        org: &str,
        id: &str,
        by: &str,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        self.write(|tx| {
            let t = owned(&tx.open_table(TEMPLATES)?, org, id)?;
            tx.open_table(TEMPLATES)?.remove(id)?;
            tx.open_multimap_table(TEMPLATES_BY_ORG)?.remove(org, id)?;
            let mut versions = tx.open_table(TEMPLATE_VERSIONS)?;
            for v in 1..=t.version {
                versions.remove((id, v))?;
            }
            push_audit(tx, deletion_audit(&t, by, now))?;
            Ok(())
        })
    }

    /// Every version of the template, newest first.
    pub fn template_versions(
        &self,
        org: &str,
        id: &str,
    ) -> Result<Vec<TemplateVersion>, StoreError> {
        self.read(|tx| {
            owned(&tx.open_table(TEMPLATES)?, org, id)?;
            let table = tx.open_table(TEMPLATE_VERSIONS)?;
            let mut out = Vec::new();
            for row in table.range((id, 1)..=(id, u64::MAX))? {
                let (_, bytes) = row?;
                out.push(decode::<TemplateVersion>(KIND, id, bytes.value())?);
            }
            out.reverse();
            Ok(out)
        })
    }

    /// Version `n` of the template.
    pub fn template_version(
        &self,
        org: &str,
        id: &str,
        n: u64,
    ) -> Result<TemplateVersion, StoreError> {
        self.read(|tx| {
            owned(&tx.open_table(TEMPLATES)?, org, id)?;
            match tx.open_table(TEMPLATE_VERSIONS)?.get((id, n))? {
                Some(bytes) => decode(KIND, id, bytes.value()),
                None => Err(StoreError::not_found(
                    "template version",
                    format!("{id} version {n}"),
                )),
            }
        })
    }
}

// What a change to templates means, whatever store keeps them.

/// A new private template of `org` by `author`, at version 1, its fields checked.
pub(super) fn new_template(
    org: &str,
    author: &str,
    input: TemplateInput,
    now: DateTime<Utc>,
) -> Result<Template, StoreError> {
    input.validate()?;
    Ok(Template {
        id: new_id(),
        organization: org.to_owned(),
        name: input.name,
        description: input.description,
        content: input.content,
        metadata: input.metadata,
        variables: input.variables,
        author: author.to_owned(),
        updated_by: author.to_owned(),
        version: 1,
        created_at: now,
        updated_at: now,
        summary: None,
    })
}

/// `old` edited by `by` into its next version. `expected_version`, when given, must be
/// the current one; a template keeps at most [`MAX_TEMPLATE_VERSIONS`]. The summary stays
/// while the content does; otherwise it is gone (`None`) and the caller queues a new one.
pub(super) fn edited(
    old: Template,
    by: &str,
    input: TemplateInput,
    expected_version: Option<u64>,
    now: DateTime<Utc>,
) -> Result<Template, StoreError> {
    input.validate()?;
    if let Some(v) = expected_version
        && v != old.version
    {
        return Err(StoreError::invalid(
            KIND,
            "version",
            format!("the template is at version {}, not {v}", old.version),
        ));
    }
    if old.version >= MAX_TEMPLATE_VERSIONS {
        return Err(StoreError::invalid(
            KIND,
            "version",
            format!("a template keeps at most {MAX_TEMPLATE_VERSIONS} versions"),
        ));
    }
    Ok(Template {
        summary: if input.content == old.content {
            old.summary.clone()
        } else {
            None
        },
        name: input.name,
        description: input.description,
        content: input.content,
        metadata: input.metadata,
        variables: input.variables,
        updated_by: by.to_owned(),
        version: old.version + 1,
        updated_at: now,
        ..old
    })
}

pub(super) fn too_many() -> StoreError {
    StoreError::invalid(
        KIND,
        "organization",
        format!("holds the most templates allowed, {MAX_TEMPLATES_PER_ORG}"),
    )
}

/// The audit line of a template written (`action`) by `actor`.
pub(super) fn template_audit(
    action: &str,
    t: &Template,
    actor: &str,
    now: DateTime<Utc>,
) -> AuditInput {
    AuditInput {
        at: now,
        organization: t.organization.clone(),
        actor: actor.to_owned(),
        action: action.into(),
        target: t.id.clone(),
        detail: json!({"name": t.name, "version": t.version}),
    }
}

/// The audit line of a template's deletion with its versions.
pub(super) fn deletion_audit(t: &Template, by: &str, now: DateTime<Utc>) -> AuditInput {
    AuditInput {
        at: now,
        organization: t.organization.clone(),
        actor: by.to_owned(),
        action: AUDIT_TEMPLATE_DELETED.into(),
        target: t.id.clone(),
        detail: json!({"name": t.name, "versions": t.version}),
    }
}

#[cfg(test)]
mod tests {
    use redb::ReadableTableMetadata;

    use super::*;

    fn store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path()).expect("open");
        (dir, store)
    }

    fn input(content: &str) -> TemplateInput {
        TemplateInput {
            name: "dns".into(),
            description: "set DNS".into(),
            content: content.into(),
            metadata: BTreeMap::new(),
            variables: Vec::new(),
        }
    }

    #[test]
    fn every_edit_keeps_the_previous_version() {
        let (_d, store) = store();
        let now = Utc::now();
        let t = store
            .create_template("org-a", "alice", input("/ip dns set servers=1.1.1.1"), now)
            .expect("create");
        assert_eq!(t.version, 1);
        let t2 = store
            .update_template(
                "org-a",
                &t.id,
                "bob",
                input("/ip dns set servers=9.9.9.9"),
                Some(1),
                now,
            )
            .expect("update");
        assert_eq!(t2.version, 2);
        assert_eq!(t2.author, "alice");
        assert_eq!(t2.updated_by, "bob");
        let versions = store.template_versions("org-a", &t.id).expect("versions");
        assert_eq!(
            versions.iter().map(|v| v.version).collect::<Vec<_>>(),
            [2, 1]
        );
        let v1 = store.template_version("org-a", &t.id, 1).expect("v1");
        assert_eq!(v1.content, "/ip dns set servers=1.1.1.1");
        assert_eq!(v1.author, "alice");
        // A stale edit is refused, and changes nothing.
        let stale = store.update_template("org-a", &t.id, "bob", input("/x"), Some(1), now);
        assert!(matches!(
            stale,
            Err(StoreError::Invalid {
                field: "version",
                ..
            })
        ));
        assert_eq!(store.get_template("org-a", &t.id).expect("get").version, 2);
    }

    #[test]
    fn another_organization_sees_nothing() {
        let (_d, store) = store();
        let now = Utc::now();
        let t = store
            .create_template("org-a", "alice", input("/ip dns cache flush"), now)
            .expect("create");
        for result in [
            store.get_template("org-b", &t.id).map(|_| ()),
            store
                .update_template(
                    "org-b",
                    &t.id,
                    "mallory",
                    input("/system reboot"),
                    None,
                    now,
                )
                .map(|_| ()),
            store.delete_template("org-b", &t.id, "mallory", now),
            store.template_versions("org-b", &t.id).map(|_| ()),
            store.template_version("org-b", &t.id, 1).map(|_| ()),
        ] {
            assert!(
                matches!(result, Err(StoreError::NotFound { .. })),
                "{result:?}"
            );
        }
        assert!(store.list_templates("org-b").expect("list").is_empty());
        assert_eq!(store.get_template("org-a", &t.id).expect("get").version, 1);
    }

    #[test]
    fn delete_removes_every_version() {
        let (_d, store) = store();
        let now = Utc::now();
        let t = store
            .create_template("org-a", "alice", input("/ip dns cache flush"), now)
            .expect("create");
        store
            .update_template(
                "org-a",
                &t.id,
                "alice",
                input("/ip dns cache flush\n"),
                None,
                now,
            )
            .expect("update");
        store
            .delete_template("org-a", &t.id, "alice", now)
            .expect("delete");
        assert!(store.get_template("org-a", &t.id).is_err());
        assert!(store.list_templates("org-a").expect("list").is_empty());
        let left = store
            .read(|tx| Ok(tx.open_table(TEMPLATE_VERSIONS)?.len()?))
            .expect("count");
        assert_eq!(left, 0);
    }

    #[test]
    fn limits_and_undeclared_placeholders_are_refused() {
        let (_d, store) = store();
        let now = Utc::now();
        let mut long = input("/ip dns cache flush");
        long.name = "n".repeat(MAX_TEMPLATE_NAME + 1);
        assert!(store.create_template("o", "a", long, now).is_err());
        let mut meta = input("/ip dns cache flush");
        meta.metadata
            .insert("k".repeat(MAX_METADATA_KEY + 1), "v".into());
        assert!(store.create_template("o", "a", meta, now).is_err());
        let undeclared = input("/system identity set name={{name}}");
        let e = store
            .create_template("o", "a", undeclared, now)
            .expect_err("undeclared");
        assert!(e.to_string().contains("{{name}}"), "{e}");
    }
}
