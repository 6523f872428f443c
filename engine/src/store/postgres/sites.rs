//! Sites in PostgreSQL, with their credentials sealed under the key every engine shares.
//!
//! What a change means is decided by the same code as in the redb store
//! (`sites::new_site`, `sites::replaced`, `sites::login`, `sites::learn_host_key`): this
//! module reads the stored site, locking its row when it changes it, and writes what that
//! code returns. A name is unique within its organization by the `sites_name_once`
//! constraint, so two engines creating or renaming sites at once cannot both take it.

use chrono::{DateTime, Utc};
use deadpool_postgres::Transaction;
use tokio_postgres::error::SqlState;

use super::journal::push_audit;
use super::{PgStore, col, decode, encode, pg};
use crate::store::Endpoint;
use crate::store::error::StoreError;
use crate::store::records::{AuditInput, Job, Page, ScheduledScript, Secret, Site, SiteInput};
use crate::store::sites::{
    Refused, StoredSite, learn_host_key, login, needs_site, new_site, open_private_key, replaced,
    site_audit, update_audit,
};

const KIND: &str = "site";

impl PgStore {
    /// Adds a site; its name must be new in its organization.
    pub async fn create_site(
        &self,
        input: SiteInput,
        now: DateTime<Utc>,
    ) -> Result<Site, StoreError> {
        self.add_site(input, None, now).await
    }

    /// [`PgStore::create_site`] by `actor`, with its audit line (`site.created`) in the
    /// same commit. The line names the fields, never the password.
    pub async fn create_site_by(
        &self,
        input: SiteInput,
        actor: &str,
        now: DateTime<Utc>,
    ) -> Result<Site, StoreError> {
        self.add_site(input, Some(actor), now).await
    }

    async fn add_site(
        &self,
        input: SiteInput,
        actor: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<Site, StoreError> {
        input.validate()?;
        let password_set = input.password.is_some();
        let stored = new_site(&self.vault, input, now)?;
        transaction!(self, "create a site", |tx| async {
            insert(tx, &stored).await?;
            if let Some(actor) = actor {
                let audit = site_audit("site.created", &stored.site, actor, password_set, now);
                push_audit(tx, audit).await?;
            }
            Ok(stored.site.clone())
        })
    }

    /// Adds many sites of one organization in one transaction: all of them, or none.
    /// Every refused input is reported with its index and nothing is written
    /// (`Ok(Err(..))`); otherwise the sites are written with one audit line by `actor`
    /// (`site.imported`) naming them.
    pub async fn import_sites(
        &self,
        organization: &str,
        inputs: Vec<SiteInput>,
        actor: &str,
        now: DateTime<Utc>,
    ) -> Result<Result<Vec<Site>, Refused>, StoreError> {
        let refused = self.check_import(organization, &inputs).await?;
        if !refused.is_empty() {
            return Ok(Err(refused));
        }
        let stored = inputs
            .into_iter()
            .map(|input| new_site(&self.vault, input, now))
            .collect::<Result<Vec<_>, _>>()?;
        // A site created meanwhile under one of the names fails the whole transaction
        // with `SiteNameTaken`; nothing is written then either.
        transaction!(self, "import sites", |tx| async {
            for site in &stored {
                insert(tx, site).await?;
            }
            let sites: Vec<Site> = stored.iter().map(|s| s.site.clone()).collect();
            let audit = AuditInput {
                at: now,
                organization: organization.to_owned(),
                actor: actor.to_owned(),
                action: "site.imported".to_owned(),
                target: organization.to_owned(),
                detail: serde_json::json!({
                    "count": sites.len(),
                    "sites": sites.iter().map(|s| &s.id).collect::<Vec<_>>(),
                }),
            };
            push_audit(tx, audit).await?;
            Ok(Ok(sites))
        })
    }

    /// The inputs [`PgStore::import_sites`] would refuse, by index: bad fields, another
    /// organization, names already taken in the organization, names repeated among the
    /// inputs (the later ones). Nothing is written.
    pub async fn check_import(
        &self,
        organization: &str,
        inputs: &[SiteInput],
    ) -> Result<Refused, StoreError> {
        let names: Vec<&str> = inputs.iter().map(|i| i.name.as_str()).collect();
        let client = self.client().await?;
        let rows = client
            .query(
                "SELECT name FROM sites WHERE organization = $1 AND name = ANY($2)",
                &[&organization, &names],
            )
            .await
            .map_err(pg("read site names"))?;
        let taken = rows
            .iter()
            .map(|r| col::<String>(r, 0))
            .collect::<Result<std::collections::HashSet<_>, _>>()?;
        let mut seen = std::collections::HashSet::with_capacity(inputs.len());
        let mut refused = Vec::new();
        for (i, input) in inputs.iter().enumerate() {
            if let Err(e) = input.validate() {
                refused.push((i, e));
            } else if input.organization != organization {
                refused.push((
                    i,
                    StoreError::invalid(KIND, "organization", "differs from the import's"),
                ));
            } else if !seen.insert(input.name.as_str()) || taken.contains(&input.name) {
                refused.push((
                    i,
                    StoreError::SiteNameTaken {
                        name: input.name.clone(),
                    },
                ));
            }
        }
        Ok(refused)
    }

    /// Replaces a site's fields; the organization cannot change. A changed endpoint
    /// clears a password (and private key) the update does not bring.
    pub async fn update_site(
        &self,
        id: &str,
        input: SiteInput,
        now: DateTime<Utc>,
    ) -> Result<Site, StoreError> {
        self.replace_site(id, input, None, now).await
    }

    /// [`PgStore::update_site`] by `actor`, with its audit line (`site.updated`) in the
    /// same commit.
    pub async fn update_site_by(
        &self,
        id: &str,
        input: SiteInput,
        actor: &str,
        now: DateTime<Utc>,
    ) -> Result<Site, StoreError> {
        self.replace_site(id, input, Some(actor), now).await
    }

    async fn replace_site(
        &self,
        id: &str,
        input: SiteInput,
        actor: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<Site, StoreError> {
        input.validate()?;
        transaction!(self, "update a site", |tx| async {
            let old = locked(tx, id).await?;
            // Sealed here, inside the transaction: it seals for the endpoint the update
            // makes of the site as it is now, not as an earlier read saw it.
            let (stored, change) = replaced(&self.vault, old, input.clone(), now)?;
            put(tx, &stored).await?;
            if let Some(actor) = actor {
                push_audit(tx, update_audit(&stored.site, &change, actor, now)).await?;
            }
            Ok(stored.site)
        })
    }

    /// Removes a site, unless a schedule that may still run targets it or a job on it is
    /// unfinished (`StoreError::SiteInUse`, naming them).
    pub async fn delete_site(&self, id: &str) -> Result<(), StoreError> {
        self.remove_site(id, None, Utc::now()).await.map(drop)
    }

    /// [`PgStore::delete_site`] by `actor`, with its audit line (`site.deleted`) in the
    /// same commit.
    pub async fn delete_site_by(
        &self,
        id: &str,
        actor: &str,
        now: DateTime<Utc>,
    ) -> Result<Site, StoreError> {
        self.remove_site(id, Some(actor), now).await
    }

    async fn remove_site(
        &self,
        id: &str,
        actor: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<Site, StoreError> {
        transaction!(self, "delete a site", |tx| async {
            let old = locked(tx, id).await?;
            let site = old.site;
            let rows = tx
                .query(
                    "SELECT id, record::text FROM schedules WHERE organization = $1 ORDER BY id",
                    &[&site.organization],
                )
                .await
                .map_err(pg("read the schedules of an organization"))?;
            let mut schedules = Vec::new();
            for row in &rows {
                let schedule_id: String = col(row, 0)?;
                let schedule: ScheduledScript =
                    decode("schedule", &schedule_id, &col::<String>(row, 1)?)?;
                if needs_site(&schedule, id) {
                    schedules.push(format!("{} ({schedule_id})", schedule.description));
                }
            }
            let unfinished = tx
                .query_one(
                    "SELECT count(*) FROM jobs
                     WHERE site_id = $1 AND status IN ('pending', 'loaded', 'running')",
                    &[&id],
                )
                .await
                .map_err(pg("count a site's unfinished jobs"))?;
            let unfinished_jobs = col::<i64>(&unfinished, 0)?.max(0) as u64;
            if !schedules.is_empty() || unfinished_jobs > 0 {
                return Err(StoreError::SiteInUse {
                    name: site.name.clone(),
                    schedules,
                    unfinished_jobs,
                });
            }
            tx.execute("DELETE FROM sites WHERE id = $1", &[&id])
                .await
                .map_err(pg("delete a site"))?;
            if let Some(actor) = actor {
                push_audit(tx, site_audit("site.deleted", &site, actor, false, now)).await?;
            }
            Ok(site)
        })
    }

    /// The site's decrypted password, for the transport that logs in to it.
    pub async fn site_password(&self, id: &str) -> Result<Secret, StoreError> {
        Ok(self.site_with_password(id).await?.1)
    }

    pub async fn get_site(&self, id: &str) -> Result<Site, StoreError> {
        Ok(self.stored(id).await?.site)
    }

    /// The site and its decrypted password, read together: what a job needs to log in.
    pub async fn site_with_password(&self, id: &str) -> Result<(Site, Secret), StoreError> {
        let (site, password, _) = self.site_with_password_and_endpoint(id).await?;
        Ok((site, password))
    }

    /// [`PgStore::site_with_password`], with how the site is reached, all from one read.
    pub async fn site_with_password_and_endpoint(
        &self,
        id: &str,
    ) -> Result<(Site, Secret, Endpoint), StoreError> {
        login(&self.vault, self.stored(id).await?)
    }

    /// The site's SSH private key and its passphrase; `None` when it has none.
    pub async fn site_private_key(
        &self,
        id: &str,
    ) -> Result<Option<(Secret, Option<Secret>)>, StoreError> {
        open_private_key(&self.vault, &self.stored(id).await?)
    }

    /// Stores `fingerprint` as the site's host key when it has none (trust on first
    /// use), with an audit line; `Err` with the key it holds when it holds others. Two
    /// engines meeting a new router at once store one key: the row is locked.
    pub async fn remember_host_key(
        &self,
        id: &str,
        fingerprint: &str,
        now: DateTime<Utc>,
    ) -> Result<Result<(), String>, StoreError> {
        transaction!(self, "remember a host key", |tx| async {
            let mut stored = locked(tx, id).await?;
            match learn_host_key(&mut stored, fingerprint, now) {
                Ok(Some(audit)) => {
                    put(tx, &stored).await?;
                    push_audit(tx, audit).await?;
                    Ok(Ok(()))
                }
                Ok(None) => Ok(Ok(())),
                Err(held) => Ok(Err(held)),
            }
        })
    }

    /// An organization's sites in id (creation) order; the cursor is the last id seen.
    pub async fn list_sites(
        &self,
        organization: &str,
        page: &Page<String>,
    ) -> Result<Vec<Site>, StoreError> {
        let after = page.after.clone().unwrap_or_default();
        let limit = page.capped_limit() as i64;
        let client = self.client().await?;
        let rows = client
            .query(
                "SELECT id, record::text FROM sites WHERE organization = $1 AND id > $2
                 ORDER BY id LIMIT $3",
                &[&organization, &after, &limit],
            )
            .await
            .map_err(pg("list sites"))?;
        rows.iter().map(|row| Ok(stored_of(row)?.site)).collect()
    }

    /// One page of an organization's sites in name order, with how many match in all.
    /// `name_contains` matches part of the name ignoring case (as Rust lowercases, the
    /// same as the redb store); `tag` keeps the sites that carry it. Only the names and
    /// tags are read to filter, and only the page's records.
    pub async fn search_sites(
        &self,
        organization: &str,
        name_contains: Option<&str>,
        tag: Option<&str>,
        offset: usize,
        limit: usize,
    ) -> Result<(Vec<Site>, usize), StoreError> {
        let limit = limit.clamp(1, crate::store::records::MAX_PAGE);
        let needle = name_contains.map(str::to_lowercase);
        let client = self.client().await?;
        let rows = client
            .query(
                "SELECT id, name FROM sites
                 WHERE organization = $1 AND ($2::text IS NULL OR tags @> ARRAY[$2::text])
                 ORDER BY name",
                &[&organization, &tag],
            )
            .await
            .map_err(pg("search sites"))?;
        let mut total = 0;
        let mut ids = Vec::new();
        for row in &rows {
            let name: String = col(row, 1)?;
            if needle
                .as_deref()
                .is_some_and(|n| !name.to_lowercase().contains(n))
            {
                continue;
            }
            if total >= offset && ids.len() < limit {
                ids.push(col::<String>(row, 0)?);
            }
            total += 1;
        }
        let rows = client
            .query(
                "SELECT id, record::text FROM sites WHERE id = ANY($1) ORDER BY name",
                &[&ids],
            )
            .await
            .map_err(pg("read sites"))?;
        let sites = rows
            .iter()
            .map(|row| Ok(stored_of(row)?.site))
            .collect::<Result<Vec<_>, StoreError>>()?;
        Ok((sites, total))
    }

    /// One page of a site's jobs, newest first, with how many the site has in all.
    pub async fn site_jobs(
        &self,
        site_id: &str,
        offset: usize,
        limit: usize,
    ) -> Result<(Vec<Job>, usize), StoreError> {
        let limit = limit.clamp(1, crate::store::records::MAX_PAGE) as i64;
        let offset = i64::try_from(offset).unwrap_or(i64::MAX);
        let client = self.client().await?;
        // One statement, so the count and the page come from one snapshot.
        let rows = client
            .query(
                "WITH mine AS (SELECT seq_id, id, record FROM jobs WHERE site_id = $1)
                 SELECT (SELECT count(*) FROM mine), page.id, page.record::text
                 FROM (SELECT 1) AS one
                 LEFT JOIN LATERAL (
                     SELECT id, record FROM mine ORDER BY seq_id DESC OFFSET $2 LIMIT $3
                 ) AS page ON true",
                &[&site_id, &offset, &limit],
            )
            .await
            .map_err(pg("read a site's jobs"))?;
        let mut total = 0;
        let mut jobs = Vec::with_capacity(rows.len());
        for row in &rows {
            total = col::<i64>(row, 0)?.max(0) as usize;
            if let (Some(id), Some(record)) = (
                col::<Option<String>>(row, 1)?,
                col::<Option<String>>(row, 2)?,
            ) {
                jobs.push(decode("job", &id, &record)?);
            }
        }
        Ok((jobs, total))
    }

    /// Ids of an organization's sites that carry `tag`, in id order.
    pub async fn site_ids_with_tag(
        &self,
        organization: &str,
        tag: &str,
    ) -> Result<Vec<String>, StoreError> {
        let client = self.client().await?;
        let rows = client
            .query(
                "SELECT id FROM sites WHERE organization = $1 AND tags @> ARRAY[$2::text]
                 ORDER BY id",
                &[&organization, &tag],
            )
            .await
            .map_err(pg("read the sites of a tag"))?;
        rows.iter().map(|r| col(r, 0)).collect()
    }

    async fn stored(&self, id: &str) -> Result<StoredSite, StoreError> {
        let client = self.client().await?;
        let row = client
            .query_opt("SELECT id, record::text FROM sites WHERE id = $1", &[&id])
            .await
            .map_err(pg("read a site"))?
            .ok_or_else(|| StoreError::not_found(KIND, id))?;
        stored_of(&row)
    }
}

/// The site `id`, its row locked until the caller's transaction ends.
async fn locked(tx: &Transaction<'_>, id: &str) -> Result<StoredSite, StoreError> {
    let row = tx
        .query_opt(
            "SELECT id, record::text FROM sites WHERE id = $1 FOR UPDATE",
            &[&id],
        )
        .await
        .map_err(pg("read a site"))?
        .ok_or_else(|| StoreError::not_found(KIND, id))?;
    stored_of(&row)
}

async fn insert(tx: &Transaction<'_>, stored: &StoredSite) -> Result<(), StoreError> {
    let site = &stored.site;
    let record = encode(KIND, &site.id, stored)?;
    let n = tx
        .execute(
            "INSERT INTO sites (id, organization, name, tags, record)
             VALUES ($1, $2, $3, $4, $5::text::jsonb)
             ON CONFLICT ON CONSTRAINT sites_name_once DO NOTHING",
            &[
                &site.id,
                &site.organization,
                &site.name,
                &site.tags,
                &record,
            ],
        )
        .await
        .map_err(pg("write a site"))?;
    if n == 0 {
        return Err(StoreError::SiteNameTaken {
            name: site.name.clone(),
        });
    }
    Ok(())
}

async fn put(tx: &Transaction<'_>, stored: &StoredSite) -> Result<(), StoreError> {
    let site = &stored.site;
    let record = encode(KIND, &site.id, stored)?;
    tx.execute(
        "UPDATE sites SET name = $2, tags = $3, record = $4::text::jsonb WHERE id = $1",
        &[&site.id, &site.name, &site.tags, &record],
    )
    .await
    .map_err(|e| {
        if e.code() == Some(&SqlState::UNIQUE_VIOLATION) {
            StoreError::SiteNameTaken {
                name: site.name.clone(),
            }
        } else {
            pg("write a site")(e)
        }
    })?;
    Ok(())
}

fn stored_of(row: &tokio_postgres::Row) -> Result<StoredSite, StoreError> {
    let id: String = col(row, 0)?;
    decode(KIND, &id, &col::<String>(row, 1)?)
}
