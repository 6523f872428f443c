//! Private script templates in PostgreSQL, every edit kept as a numbered version.
//!
//! An edit is decided by the redb store's own code (`templates::new_template`,
//! `templates::edited`) on the template's row, locked; the current record and its
//! version are written together with the audit line and, when the content changed, the
//! summary to write. A template is read only by its own organization.

use chrono::{DateTime, Utc};
use deadpool_postgres::Transaction;

use super::journal::push_audit;
use super::schedules::queue_summary_of;
use super::{PgStore, big, col, decode, encode, pg, take_turns};
use crate::store::error::StoreError;
use crate::store::templates::{
    MAX_TEMPLATES_PER_ORG, deletion_audit, edited, new_template, template_audit, too_many,
    version_of,
};
use crate::store::{
    AUDIT_TEMPLATE_CREATED, AUDIT_TEMPLATE_UPDATED, SummaryOf, Template, TemplateInput,
    TemplateVersion,
};

const KIND: &str = "template";

impl PgStore {
    /// Creates a private template of `org`, at version 1.
    pub async fn create_template(
        &self,
        org: &str,
        author: &str,
        input: TemplateInput,
        now: DateTime<Utc>,
    ) -> Result<Template, StoreError> {
        let t = new_template(org, author, input, now)?;
        transaction!(self, "create a template", |tx| async {
            take_turns(tx, "templates", org).await?;
            let row = tx
                .query_one(
                    "SELECT count(*) FROM templates WHERE organization = $1",
                    &[&org],
                )
                .await
                .map_err(pg("count an organization's templates"))?;
            if col::<i64>(&row, 0)? >= MAX_TEMPLATES_PER_ORG as i64 {
                return Err(too_many());
            }
            tx.execute(
                "INSERT INTO templates (id, organization, created_at, record)
                 VALUES ($1, $2, $3, $4::text::jsonb)",
                &[&t.id, &org, &t.created_at, &encode(KIND, &t.id, &t)?],
            )
            .await
            .map_err(pg("write a template"))?;
            put_version(tx, &t).await?;
            queue_summary_of(tx, SummaryOf::Template, &t.id, &t.content, now).await?;
            push_audit(tx, template_audit(AUDIT_TEMPLATE_CREATED, &t, author, now)).await?;
            Ok(t.clone())
        })
    }

    /// The template `id` of `org`.
    pub async fn get_template(&self, org: &str, id: &str) -> Result<Template, StoreError> {
        let client = self.client().await?;
        let row = client
            .query_opt("SELECT record::text FROM templates WHERE id = $1", &[&id])
            .await
            .map_err(pg("read a template"))?;
        owned(row, org, id)
    }

    /// Every private template of `org`, oldest first.
    pub async fn list_templates(&self, org: &str) -> Result<Vec<Template>, StoreError> {
        let client = self.client().await?;
        let rows = client
            .query(
                "SELECT id, record::text FROM templates WHERE organization = $1
                 ORDER BY created_at, id",
                &[&org],
            )
            .await
            .map_err(pg("list templates"))?;
        rows.iter()
            .map(|row| decode(KIND, &col::<String>(row, 0)?, &col::<String>(row, 1)?))
            .collect()
    }

    /// Replaces the template's fields, keeping what it was as its previous version;
    /// `expected_version`, when given, must be the current one.
    #[allow(clippy::too_many_arguments)]
    pub async fn update_template(
        &self,
        org: &str,
        id: &str,
        by: &str,
        input: TemplateInput,
        expected_version: Option<u64>,
        now: DateTime<Utc>,
    ) -> Result<Template, StoreError> {
        transaction!(self, "update a template", |tx| async {
            let old = locked(tx, org, id).await?;
            let content_changed = old.content != input.content;
            let t = edited(old, by, input.clone(), expected_version, now)?;
            if content_changed {
                queue_summary_of(tx, SummaryOf::Template, id, &t.content, now).await?;
            }
            tx.execute(
                "UPDATE templates SET record = $2::text::jsonb WHERE id = $1",
                &[&id, &encode(KIND, id, &t)?],
            )
            .await
            .map_err(pg("write a template"))?;
            put_version(tx, &t).await?;
            push_audit(tx, template_audit(AUDIT_TEMPLATE_UPDATED, &t, by, now)).await?;
            Ok(t)
        })
    }

    /// Deletes the template and every version of it.
    pub async fn delete_template(
        &self,
        org: &str,
        id: &str,
        by: &str,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        transaction!(self, "delete a template", |tx| async {
            let t = locked(tx, org, id).await?;
            tx.execute("DELETE FROM templates WHERE id = $1", &[&id])
                .await
                .map_err(pg("delete a template"))?;
            push_audit(tx, deletion_audit(&t, by, now)).await?;
            Ok(())
        })
    }

    /// Every version of the template, newest first.
    pub async fn template_versions(
        &self,
        org: &str,
        id: &str,
    ) -> Result<Vec<TemplateVersion>, StoreError> {
        self.get_template(org, id).await?;
        let client = self.client().await?;
        let rows = client
            .query(
                "SELECT record::text FROM template_versions WHERE id = $1
                 ORDER BY version DESC",
                &[&id],
            )
            .await
            .map_err(pg("read a template's versions"))?;
        rows.iter()
            .map(|row| decode(KIND, id, &col::<String>(row, 0)?))
            .collect()
    }

    /// Version `n` of the template.
    pub async fn template_version(
        &self,
        org: &str,
        id: &str,
        n: u64,
    ) -> Result<TemplateVersion, StoreError> {
        self.get_template(org, id).await?;
        let client = self.client().await?;
        let row = client
            .query_opt(
                "SELECT record::text FROM template_versions WHERE id = $1 AND version = $2",
                &[&id, &big(KIND, "version", n)?],
            )
            .await
            .map_err(pg("read a template version"))?
            .ok_or_else(|| {
                StoreError::not_found("template version", format!("{id} version {n}"))
            })?;
        decode(KIND, id, &col::<String>(&row, 0)?)
    }
}

/// The template `id` of `org` from its row, or not found (also another organization's).
fn owned(row: Option<tokio_postgres::Row>, org: &str, id: &str) -> Result<Template, StoreError> {
    let Some(row) = row else {
        return Err(StoreError::not_found(KIND, id));
    };
    let t: Template = decode(KIND, id, &col::<String>(&row, 0)?)?;
    if t.organization != org {
        return Err(StoreError::not_found(KIND, id));
    }
    Ok(t)
}

async fn locked(tx: &Transaction<'_>, org: &str, id: &str) -> Result<Template, StoreError> {
    let row = tx
        .query_opt(
            "SELECT record::text FROM templates WHERE id = $1 FOR UPDATE",
            &[&id],
        )
        .await
        .map_err(pg("read a template"))?;
    owned(row, org, id)
}

async fn put_version(tx: &Transaction<'_>, t: &Template) -> Result<(), StoreError> {
    tx.execute(
        "INSERT INTO template_versions (id, version, record) VALUES ($1, $2, $3::text::jsonb)",
        &[
            &t.id,
            &big(KIND, "version", t.version)?,
            &encode(KIND, &t.id, &version_of(t))?,
        ],
    )
    .await
    .map_err(pg("write a template version"))?;
    Ok(())
}
