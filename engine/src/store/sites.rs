//! Sites: the inventory of routers, with their credentials sealed at rest.
//!
//! A stored site is the public [`Site`] plus the sealed password; every read path returns
//! the public part only, and [`Store::site_password`] is the one way back to the secret.

use chrono::{DateTime, Utc};
use redb::{ReadableTable, WriteTransaction};
use serde::{Deserialize, Serialize};

use super::Store;
use super::crypto::{Sealed, new_id};
use super::error::StoreError;
use super::records::{Page, Secret, Site, SiteInput};
use super::tables::{SITE_NAMES, SITES, SITES_BY_ORG, SITES_BY_TAG};
use super::txn::{decode, encode, load};

const KIND: &str = "site";

#[derive(Serialize, Deserialize)]
struct StoredSite {
    #[serde(flatten)]
    site: Site,
    password: Option<Sealed>,
}

impl Store {
    /// Adds a site; its name must be new in its organization.
    pub fn create_site(&self, input: SiteInput, now: DateTime<Utc>) -> Result<Site, StoreError> {
        input.validate()?;
        let id = new_id();
        self.write(|tx| {
            claim_name(tx, &input.organization, &input.name, &id)?;
            let password = input
                .password
                .as_ref()
                .map(|p| self.vault.seal(&id, p.expose()));
            let site = Site {
                id: id.clone(),
                organization: input.organization,
                name: input.name,
                address: input.address,
                port: input.port,
                transport: input.transport,
                username: input.username,
                has_password: password.is_some(),
                tls: input.tls,
                tags: dedup(input.tags),
                created_at: now,
                updated_at: now,
            };
            tx.open_multimap_table(SITES_BY_ORG)?
                .insert(site.organization.as_str(), id.as_str())?;
            index_tags(tx, &site, true)?;
            put(
                tx,
                &StoredSite {
                    site: site.clone(),
                    password,
                },
            )?;
            Ok(site)
        })
    }

    /// Replaces a site's fields. `input.password == None` keeps the stored password; the
    /// organization cannot change.
    pub fn update_site(
        &self,
        id: &str,
        input: SiteInput,
        now: DateTime<Utc>,
    ) -> Result<Site, StoreError> {
        input.validate()?;
        self.write(|tx| {
            let old: StoredSite = get(tx, id)?;
            if old.site.organization != input.organization {
                return Err(StoreError::not_found(KIND, id));
            }
            if old.site.name != input.name {
                claim_name(tx, &input.organization, &input.name, id)?;
                tx.open_table(SITE_NAMES)?
                    .remove((old.site.organization.as_str(), old.site.name.as_str()))?;
            }
            index_tags(tx, &old.site, false)?;
            let password = match &input.password {
                Some(p) => Some(self.vault.seal(id, p.expose())),
                None => old.password,
            };
            let site = Site {
                name: input.name,
                address: input.address,
                port: input.port,
                transport: input.transport,
                username: input.username,
                has_password: password.is_some(),
                tls: input.tls,
                tags: dedup(input.tags),
                updated_at: now,
                ..old.site
            };
            index_tags(tx, &site, true)?;
            put(
                tx,
                &StoredSite {
                    site: site.clone(),
                    password,
                },
            )?;
            Ok(site)
        })
    }

    pub fn get_site(&self, id: &str) -> Result<Site, StoreError> {
        self.read(|tx| {
            let stored: Option<StoredSite> = load(&tx.open_table(SITES)?, KIND, id)?;
            stored
                .map(|s| s.site)
                .ok_or_else(|| StoreError::not_found(KIND, id))
        })
    }

    /// The site's decrypted password, for the transport that logs in to it.
    pub fn site_password(&self, id: &str) -> Result<Option<Secret>, StoreError> {
        let stored: Option<StoredSite> = self.read(|tx| load(&tx.open_table(SITES)?, KIND, id))?;
        let stored = stored.ok_or_else(|| StoreError::not_found(KIND, id))?;
        match stored.password {
            None => Ok(None),
            Some(sealed) => self
                .vault
                .open_sealed(id, &sealed)
                .map(|p| Some(Secret::new(p)))
                .ok_or_else(|| StoreError::Decrypt {
                    site: id.to_owned(),
                }),
        }
    }

    pub fn delete_site(&self, id: &str) -> Result<(), StoreError> {
        self.write(|tx| {
            let old: StoredSite = get(tx, id)?;
            index_tags(tx, &old.site, false)?;
            tx.open_table(SITE_NAMES)?
                .remove((old.site.organization.as_str(), old.site.name.as_str()))?;
            tx.open_multimap_table(SITES_BY_ORG)?
                .remove(old.site.organization.as_str(), id)?;
            tx.open_table(SITES)?.remove(id)?;
            Ok(())
        })
    }

    /// An organization's sites in id (creation) order; the cursor is the last id seen.
    pub fn list_sites(
        &self,
        organization: &str,
        page: &Page<String>,
    ) -> Result<Vec<Site>, StoreError> {
        let limit = page.capped_limit();
        self.read(|tx| {
            let sites = tx.open_table(SITES)?;
            let mut out = Vec::new();
            for id in tx.open_multimap_table(SITES_BY_ORG)?.get(organization)? {
                let id = id?;
                let id = id.value();
                if page.after.as_deref().is_some_and(|after| id <= after) {
                    continue;
                }
                if let Some(stored) = load::<StoredSite>(&sites, KIND, id)? {
                    out.push(stored.site);
                }
                if out.len() >= limit {
                    break;
                }
            }
            Ok(out)
        })
    }

    /// Ids of an organization's sites that carry `tag`.
    pub fn site_ids_with_tag(
        &self,
        organization: &str,
        tag: &str,
    ) -> Result<Vec<String>, StoreError> {
        self.read(|tx| {
            tx.open_multimap_table(SITES_BY_TAG)?
                .get((organization, tag))?
                .map(|id| Ok(id?.value().to_owned()))
                .collect()
        })
    }
}

fn claim_name(
    tx: &WriteTransaction,
    organization: &str,
    name: &str,
    id: &str,
) -> Result<(), StoreError> {
    let mut names = tx.open_table(SITE_NAMES)?;
    if names.get((organization, name))?.is_some() {
        return Err(StoreError::SiteNameTaken {
            name: name.to_owned(),
        });
    }
    names.insert((organization, name), id)?;
    Ok(())
}

fn index_tags(tx: &WriteTransaction, site: &Site, add: bool) -> Result<(), StoreError> {
    let mut by_tag = tx.open_multimap_table(SITES_BY_TAG)?;
    for tag in &site.tags {
        let key = (site.organization.as_str(), tag.as_str());
        if add {
            by_tag.insert(key, site.id.as_str())?;
        } else {
            by_tag.remove(key, site.id.as_str())?;
        }
    }
    Ok(())
}

fn get(tx: &WriteTransaction, id: &str) -> Result<StoredSite, StoreError> {
    let bytes = tx.open_table(SITES)?.get(id)?.map(|b| b.value().to_vec());
    match bytes {
        Some(bytes) => decode(KIND, id, &bytes),
        None => Err(StoreError::not_found(KIND, id)),
    }
}

fn put(tx: &WriteTransaction, stored: &StoredSite) -> Result<(), StoreError> {
    let bytes = encode(KIND, &stored.site.id, stored)?;
    tx.open_table(SITES)?
        .insert(stored.site.id.as_str(), bytes.as_slice())?;
    Ok(())
}

fn dedup(mut tags: Vec<String>) -> Vec<String> {
    tags.sort();
    tags.dedup();
    tags
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::records::TlsSettings;
    use crate::store::test_support::{open, t};

    pub(crate) fn input(org: &str, name: &str) -> SiteInput {
        SiteInput {
            organization: org.into(),
            name: name.into(),
            address: "127.0.0.1".into(),
            port: Some(8728),
            transport: crate::store::DEFAULT_TRANSPORT.into(),
            username: "admin".into(),
            password: Some(Secret::new("correct horse battery staple")),
            tls: TlsSettings {
                enabled: true,
                verify: false,
                pinned_sha256: Some("ab".repeat(32)),
                server_name: Some("r1.example".into()),
            },
            tags: vec!["core".into(), "edge".into(), "core".into()],
        }
    }

    #[test]
    fn site_round_trip_and_name_uniqueness() {
        let (_dir, store) = open();
        let site = store
            .create_site(input("org1", "r1"), t(0))
            .expect("create");
        assert_eq!(store.get_site(&site.id).expect("get"), site);
        assert_eq!(site.tags, vec!["core".to_owned(), "edge".to_owned()]);
        assert!(site.has_password);
        let err = store
            .create_site(input("org1", "r1"), t(1))
            .expect_err("duplicate");
        assert_eq!(
            err.to_string(),
            "A site with the same name already exists: r1"
        );
        store
            .create_site(input("org2", "r1"), t(1))
            .expect("other org may reuse the name");

        let mut renamed = input("org1", "r1-renamed");
        renamed.password = None;
        renamed.tags = vec!["edge".into()];
        let updated = store.update_site(&site.id, renamed, t(5)).expect("update");
        assert_eq!(updated.created_at, t(0));
        assert_eq!(updated.updated_at, t(5));
        assert!(
            updated.has_password,
            "no password in the update keeps the stored one"
        );
        store
            .create_site(input("org1", "r1"), t(6))
            .expect("old name is free again");
        assert_eq!(
            store.site_ids_with_tag("org1", "core").expect("tag").len(),
            1
        );
        assert!(
            store
                .site_ids_with_tag("org1", "edge")
                .expect("tag")
                .contains(&site.id)
        );

        let listed = store.list_sites("org1", &Page::first(10)).expect("list");
        assert_eq!(listed.len(), 2);
        let second = store
            .list_sites(
                "org1",
                &Page {
                    limit: 10,
                    after: Some(listed[0].id.clone()),
                },
            )
            .expect("page 2");
        assert_eq!(second, listed[1..]);

        store.delete_site(&site.id).expect("delete");
        assert!(matches!(
            store.get_site(&site.id),
            Err(StoreError::NotFound { .. })
        ));
        assert!(
            !store
                .site_ids_with_tag("org1", "edge")
                .expect("tag")
                .contains(&site.id)
        );
    }

    #[test]
    fn passwords_are_encrypted_on_disk_and_never_serialized() {
        let (dir, store) = open();
        let site = store
            .create_site(input("org1", "r1"), t(0))
            .expect("create");
        let json = serde_json::to_string(&store.get_site(&site.id).expect("get")).expect("json");
        assert!(!json.contains("correct horse"), "{json}");
        let debug = format!("{:?}", input("org1", "r1"));
        assert!(!debug.contains("correct horse"), "{debug}");
        assert_eq!(
            store
                .site_password(&site.id)
                .expect("password")
                .map(|p| p.expose().to_owned()),
            Some("correct horse battery staple".to_owned())
        );
        let path = store.path().to_owned();
        drop(store);
        let raw = std::fs::read(&path).expect("raw db");
        let needle = b"correct horse";
        assert!(
            !raw.windows(needle.len()).any(|w| w == needle),
            "plaintext password in the file"
        );
        let reopened = Store::open(dir.path()).expect("reopen");
        assert_eq!(
            reopened
                .site_password(&site.id)
                .expect("password")
                .map(|p| p.expose().to_owned()),
            Some("correct horse battery staple".to_owned())
        );
    }

    #[test]
    fn invalid_sites_are_refused() {
        let (_dir, store) = open();
        let mut bad = input("org1", "");
        assert!(matches!(
            store.create_site(bad.clone(), t(0)),
            Err(StoreError::Invalid { field: "name", .. })
        ));
        bad.name = "x".repeat(10_000);
        assert!(store.create_site(bad, t(0)).is_err());
        let mut pin = input("org1", "r1");
        pin.tls.pinned_sha256 = Some("not-hex".into());
        assert!(matches!(
            store.create_site(pin, t(0)),
            Err(StoreError::Invalid {
                field: "tls.pinned_sha256",
                ..
            })
        ));
    }
}
