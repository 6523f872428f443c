//! Sites: the inventory of routers, with their credentials sealed at rest.
//!
//! A stored site is the public [`Site`] plus the sealed password; every read path returns
//! the public part only, and [`Store::site_with_password`] is the one way back to the
//! secret.
//!
//! A password belongs to the endpoint it was given for. It is sealed under associated
//! data naming the site and its endpoint (address, port, transport, TLS settings; see
//! [`credential_aad`]), so it opens only for that endpoint; and an update that changes
//! the endpoint without bringing a new password clears the stored one, so whoever may
//! edit a site cannot point it at a host of theirs and collect the password at the next
//! login. A site without a password is never logged in to: reading its credential
//! fails with [`StoreError::PasswordMissing`] (give `password: ""` for an account
//! whose password is empty).

use chrono::{DateTime, Utc};
use redb::{ReadableMultimapTable, ReadableTable, WriteTransaction};
use serde::{Deserialize, Serialize};

use super::Store;
use super::crypto::{Sealed, Vault, new_id};
use super::error::StoreError;
use super::journal::push_audit;
use super::records::{
    AuditInput, Job, JobStatus, Page, ScheduleStatus, ScheduledScript, Secret, Site, SiteInput,
};
use super::tables::{
    JOBS, JOBS_ACTIVE, JOBS_BY_SITE, SCHEDULES, SCHEDULES_BY_ORG, SITE_NAMES, SITES, SITES_BY_ORG,
    SITES_BY_TAG,
};
use super::txn::{decode, encode, load};

const KIND: &str = "site";

/// The inputs of an import that were refused, by index, and why.
pub type Refused = Vec<(usize, StoreError)>;

/// A site as stored: its public fields and its password, sealed under
/// [`credential_aad`] of those fields.
#[derive(Serialize, Deserialize)]
pub(crate) struct StoredSite {
    #[serde(flatten)]
    pub(super) site: Site,
    pub(super) password: Option<Sealed>,
    /// The SSH private key and its passphrase ([`PrivateKey`] as JSON), sealed under
    /// [`private_key_aad`].
    #[serde(default)]
    pub(super) private_key: Option<Sealed>,
    /// The site's host key was stored on first use rather than pinned by an operator.
    /// An approval of a site with no pinned key covers whatever key it shows first, so
    /// such a key is not part of the site's [`Endpoint`](super::Endpoint).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub(super) host_key_learned: bool,
}

/// An SSH private key as it is sealed.
#[derive(Serialize, Deserialize)]
struct PrivateKey {
    key: String,
    passphrase: Option<String>,
}

/// The private key is sealed for the same endpoint as the password, under a label of
/// its own so neither sealed value opens as the other.
fn private_key_aad(site: &Site) -> String {
    format!("{}\nkind=ssh-private-key", credential_aad(site))
}

impl StoredSite {
    /// The public part.
    pub(crate) fn site(&self) -> &Site {
        &self.site
    }

    /// A stable name for the site's current credential, never the credential itself:
    /// sha256 of the sealed bytes. It changes whenever a password is set (even the same
    /// one again: every sealing has a fresh nonce) or cleared (then `None`), so whatever
    /// was agreed to for one credential can be checked against the one in use now.
    pub(crate) fn credential_identity(&self) -> Option<String> {
        let password = self.password.as_ref().map(Sealed::fingerprint);
        match &self.private_key {
            None => password,
            Some(key) => Some(format!(
                "{}+{}",
                password.unwrap_or_default(),
                key.fingerprint()
            )),
        }
    }
}

/// The site `id` as stored, read in the caller's write transaction.
pub(crate) fn read_stored_site(tx: &WriteTransaction, id: &str) -> Result<StoredSite, StoreError> {
    get(tx, id)
}

/// The associated data a site's password is sealed under: the site id and every field
/// that decides where the password is sent (address, port, transport, TLS settings).
/// A password sealed for one endpoint does not open for another, even if a bug were to
/// carry the sealed bytes across. Each value is length-prefixed, so no two endpoints
/// give the same text.
pub(super) fn credential_aad(site: &Site) -> String {
    let port = site.port.map(|p| p.to_string());
    let fields: [(&str, Option<&str>); 8] = [
        ("site", Some(&site.id)),
        ("address", Some(&site.address)),
        ("port", port.as_deref()),
        ("transport", Some(&site.transport)),
        (
            "tls.enabled",
            Some(if site.tls.enabled { "true" } else { "false" }),
        ),
        (
            "tls.verify",
            Some(if site.tls.verify { "true" } else { "false" }),
        ),
        ("tls.pinned_sha256", site.tls.pinned_sha256.as_deref()),
        ("tls.server_name", site.tls.server_name.as_deref()),
    ];
    let mut aad = String::from("yardmaster site credential v2");
    for (name, value) in fields {
        match value {
            Some(v) => aad.push_str(&format!("\n{name}={}:{v}", v.len())),
            None => aad.push_str(&format!("\n{name}=none")),
        }
    }
    aad
}

/// The endpoint fields that differ between `old` and `new`: a change to any of them
/// clears a password the update does not replace.
fn endpoint_changes(old: &Site, new: &Site) -> Vec<&'static str> {
    let mut changed = Vec::new();
    if old.address != new.address {
        changed.push("address");
    }
    if old.port != new.port {
        changed.push("port");
    }
    if old.transport != new.transport {
        changed.push("transport");
    }
    if old.tls != new.tls {
        changed.push("tls");
    }
    changed
}

/// What an update did to the site's password.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum PasswordChange {
    /// A new password came with the update.
    Set,
    /// The stored password (or its absence) stays: the endpoint is the same.
    Kept,
    /// The endpoint changed (these fields) and no new password came: the stored one is gone.
    Cleared(Vec<&'static str>),
}

// What a change to a site means, whatever store keeps it: each store reads the stored
// site, calls one of these, and writes what it returns with its own indexes.

/// A new site's stored form, under a fresh id: `input` (already validated) with its
/// password and private key sealed for the site's endpoint.
pub(super) fn new_site(
    vault: &Vault,
    input: SiteInput,
    now: DateTime<Utc>,
) -> Result<StoredSite, StoreError> {
    let site = Site {
        id: new_id(),
        organization: input.organization,
        name: input.name,
        address: input.address,
        port: input.port,
        transport: input.transport,
        username: input.username,
        has_password: input.password.is_some(),
        tls: input.tls,
        tags: dedup(input.tags),
        created_at: now,
        updated_at: now,
        has_private_key: input.private_key.is_some(),
        ssh: input.ssh.unwrap_or_default(),
    };
    let password = input
        .password
        .as_ref()
        .map(|p| vault.seal(&credential_aad(&site), p.expose()));
    let private_key = seal_private_key(
        vault,
        &site,
        &input.private_key,
        &input.private_key_passphrase,
    )?;
    Ok(StoredSite {
        site,
        password,
        private_key,
        host_key_learned: false,
    })
}

/// `old` with its fields replaced by `input` (already validated), and what became of its
/// password. The organization cannot change: another one's is not found. `input.password
/// == None` keeps the stored password only while the endpoint stays the same; the
/// private key and a learned host key follow the same rule.
pub(super) fn replaced(
    vault: &Vault,
    old: StoredSite,
    input: SiteInput,
    now: DateTime<Utc>,
) -> Result<(StoredSite, PasswordChange), StoreError> {
    if old.site.organization != input.organization {
        return Err(StoreError::not_found(KIND, &old.site.id));
    }
    let old_site = old.site.clone();
    let mut site = Site {
        name: input.name,
        address: input.address,
        port: input.port,
        transport: input.transport,
        username: input.username,
        tls: input.tls,
        tags: dedup(input.tags),
        updated_at: now,
        ..old.site
    };
    let changed = endpoint_changes(&old_site, &site);
    let same_endpoint = changed.is_empty();
    let (password, change) = match (&input.password, old.password) {
        (Some(p), _) => (
            Some(vault.seal(&credential_aad(&site), p.expose())),
            PasswordChange::Set,
        ),
        (None, kept) if changed.is_empty() => (kept, PasswordChange::Kept),
        // Nothing to clear: the site had no password to begin with.
        (None, None) => (None, PasswordChange::Kept),
        (None, Some(_)) => (None, PasswordChange::Cleared(changed)),
    };
    site.has_password = password.is_some();
    // The private key and the host keys follow the password's rule: they stay with
    // the endpoint they were given for.
    let private_key = match (&input.private_key, old.private_key) {
        (Some(_), _) => seal_private_key(
            vault,
            &site,
            &input.private_key,
            &input.private_key_passphrase,
        )?,
        (None, kept) if same_endpoint => kept,
        (None, _) => None,
    };
    site.has_private_key = private_key.is_some();
    // A learned key stays learned while the same key comes back (a read, edit and
    // write of the site); any other set of keys is the operator's pin.
    let (ssh, host_key_learned) = match input.ssh {
        Some(ssh) => {
            let learned =
                old.host_key_learned && same_endpoint && ssh.host_keys == old_site.ssh.host_keys;
            (ssh, learned)
        }
        None if same_endpoint => (old_site.ssh.clone(), old.host_key_learned),
        None => (
            crate::store::SshSettings {
                host_keys: Vec::new(),
                platform: old_site.ssh.platform.clone(),
            },
            false,
        ),
    };
    site.ssh = ssh;
    Ok((
        StoredSite {
            site,
            password,
            private_key,
            host_key_learned,
        },
        change,
    ))
}

/// The audit line of an update (`site.updated`): whether the password was replaced, or
/// cleared because the endpoint changed, never what it is.
pub(super) fn update_audit(
    site: &Site,
    change: &PasswordChange,
    actor: &str,
    now: DateTime<Utc>,
) -> AuditInput {
    let mut audit = site_audit(
        "site.updated",
        site,
        actor,
        *change == PasswordChange::Set,
        now,
    );
    if let (PasswordChange::Cleared(fields), serde_json::Value::Object(detail)) =
        (change, &mut audit.detail)
    {
        detail.insert("password_cleared".into(), true.into());
        detail.insert("endpoint_changed".into(), serde_json::json!(fields));
        detail.insert(
            "reason".into(),
            format!(
                "the stored password was cleared because the endpoint changed ({}); \
                 the site is not logged in to until a new password is set",
                fields.join(", ")
            )
            .into(),
        );
    }
    audit
}

/// What a job needs to log in: the site, its opened password and how it is reached. A
/// site without a password is [`StoreError::PasswordMissing`] unless it logs in with its
/// SSH key; a password that does not open for the site's endpoint is
/// [`StoreError::Decrypt`].
pub(super) fn login(
    vault: &Vault,
    stored: StoredSite,
) -> Result<(Site, Secret, super::Endpoint), StoreError> {
    let endpoint = super::Endpoint::of(&stored);
    let Some(sealed) = &stored.password else {
        // A site that logs in with its SSH key needs no password.
        if stored.private_key.is_some() {
            return Ok((stored.site, Secret::new(""), endpoint));
        }
        return Err(StoreError::PasswordMissing {
            site: stored.site.id,
            name: stored.site.name,
        });
    };
    let password = vault
        .open_sealed(&credential_aad(&stored.site), sealed)
        .map(Secret::new)
        .ok_or_else(|| StoreError::Decrypt {
            site: stored.site.id.clone(),
        })?;
    Ok((stored.site, password, endpoint))
}

fn seal_private_key(
    vault: &Vault,
    site: &Site,
    key: &Option<Secret>,
    passphrase: &Option<Secret>,
) -> Result<Option<Sealed>, StoreError> {
    let Some(key) = key else {
        return Ok(None);
    };
    let plain = PrivateKey {
        key: key.expose().to_owned(),
        passphrase: passphrase.as_ref().map(|p| p.expose().to_owned()),
    };
    let json = serde_json::to_string(&plain)
        .map_err(|e| StoreError::invalid("site", "private_key", e.to_string()))?;
    Ok(Some(vault.seal(&private_key_aad(site), &json)))
}

/// The site's SSH private key and its passphrase, opened for its current endpoint;
/// `None` when it has none.
pub(super) fn open_private_key(
    vault: &Vault,
    stored: &StoredSite,
) -> Result<Option<(Secret, Option<Secret>)>, StoreError> {
    let Some(sealed) = &stored.private_key else {
        return Ok(None);
    };
    let decrypt = || StoreError::Decrypt {
        site: stored.site.id.clone(),
    };
    let json = vault
        .open_sealed(&private_key_aad(&stored.site), sealed)
        .ok_or_else(decrypt)?;
    let key: PrivateKey = serde_json::from_str(&json).map_err(|_| decrypt())?;
    Ok(Some((
        Secret::new(key.key),
        key.passphrase.map(Secret::new),
    )))
}

/// Trust on first use: a site with no host key learns `fingerprint`, and the answer is
/// the audit line to write with it (`Ok(Some)`); a site that holds it already needs
/// nothing (`Ok(None)`); a site that holds others is left as it is, and the answer is
/// the first key it holds (`Err`), so a changed key never replaces the stored one.
pub(super) fn learn_host_key(
    stored: &mut StoredSite,
    fingerprint: &str,
    now: DateTime<Utc>,
) -> Result<Option<AuditInput>, String> {
    let keys = &stored.site.ssh.host_keys;
    if keys.iter().any(|k| k == fingerprint) {
        return Ok(None);
    }
    if let Some(first) = keys.first() {
        return Err(first.clone());
    }
    stored.site.ssh.host_keys.push(fingerprint.to_owned());
    stored.host_key_learned = true;
    let mut audit = site_audit("site.host_key_stored", &stored.site, "engine", false, now);
    if let serde_json::Value::Object(detail) = &mut audit.detail {
        detail.insert("host_key".into(), fingerprint.into());
    }
    Ok(Some(audit))
}

impl Store {
    /// Adds a site; its name must be new in its organization.
    pub fn create_site(&self, input: SiteInput, now: DateTime<Utc>) -> Result<Site, StoreError> {
        input.validate()?;
        self.write(|tx| self.insert_site(tx, input, now))
    }

    /// Adds many sites of one organization in one transaction: all of them, or none.
    ///
    /// Every input is checked first (its fields, its name against the organization's
    /// sites and against the other inputs), and every refused input is reported with its
    /// index, so a caller can list all the bad rows of an import at once; then nothing is
    /// written (`Ok(Err(..))`). Otherwise all the sites are written in one commit, with
    /// one audit line by `actor` (`site.imported`) naming them.
    pub fn import_sites(
        &self,
        organization: &str,
        inputs: Vec<SiteInput>,
        actor: &str,
        now: DateTime<Utc>,
    ) -> Result<Result<Vec<Site>, Refused>, StoreError> {
        let refused = self.check_import(organization, &inputs)?;
        if !refused.is_empty() {
            return Ok(Err(refused));
        }
        // A site created meanwhile under one of the names fails the whole transaction
        // with `SiteNameTaken`; nothing is written then either.
        // One audit line for the import, naming every site it created.
        self.write(|tx| {
            let sites = self.insert_sites(tx, inputs, now)?;
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
            push_audit(tx, audit)?;
            Ok(sites)
        })
        .map(Ok)
    }

    /// The inputs [`Store::import_sites`] would refuse, by index: bad fields, names
    /// already taken in the organization, names repeated among the inputs (the later
    /// ones). Nothing is written.
    pub fn check_import(
        &self,
        organization: &str,
        inputs: &[SiteInput],
    ) -> Result<Refused, StoreError> {
        let mut refused = Vec::new();
        let mut seen = std::collections::HashSet::with_capacity(inputs.len());
        self.read(|tx| {
            let names = tx.open_table(SITE_NAMES)?;
            for (i, input) in inputs.iter().enumerate() {
                if let Err(e) = input.validate() {
                    refused.push((i, e));
                } else if input.organization != organization {
                    refused.push((
                        i,
                        StoreError::invalid(KIND, "organization", "differs from the import's"),
                    ));
                } else if !seen.insert(input.name.as_str())
                    || names.get((organization, input.name.as_str()))?.is_some()
                {
                    refused.push((
                        i,
                        StoreError::SiteNameTaken {
                            name: input.name.clone(),
                        },
                    ));
                }
            }
            Ok(())
        })?;
        Ok(refused)
    }

    fn insert_site(
        &self,
        tx: &WriteTransaction,
        input: SiteInput,
        now: DateTime<Utc>,
    ) -> Result<Site, StoreError> {
        self.insert_sites(tx, vec![input], now)?
            .pop()
            .ok_or_else(|| StoreError::not_found(KIND, "new site"))
    }

    /// Writes new sites with every table opened once, however many there are.
    fn insert_sites(
        &self,
        tx: &WriteTransaction,
        inputs: Vec<SiteInput>,
        now: DateTime<Utc>,
    ) -> Result<Vec<Site>, StoreError> {
        let mut names = tx.open_table(SITE_NAMES)?;
        let mut by_org = tx.open_multimap_table(SITES_BY_ORG)?;
        let mut by_tag = tx.open_multimap_table(SITES_BY_TAG)?;
        let mut sites = tx.open_table(SITES)?;
        let mut out = Vec::with_capacity(inputs.len());
        for input in inputs {
            let stored = new_site(&self.vault, input, now)?;
            let site = stored.site.clone();
            let id = site.id.clone();
            let name_key = (site.organization.as_str(), site.name.as_str());
            if names.get(name_key)?.is_some() {
                return Err(StoreError::SiteNameTaken {
                    name: site.name.clone(),
                });
            }
            names.insert(name_key, id.as_str())?;
            by_org.insert(site.organization.as_str(), id.as_str())?;
            for tag in &site.tags {
                by_tag.insert((site.organization.as_str(), tag.as_str()), id.as_str())?;
            }
            sites.insert(id.as_str(), encode(KIND, &id, &stored)?.as_slice())?;
            out.push(site);
        }
        Ok(out)
    }

    /// Replaces a site's fields; the organization cannot change. `input.password ==
    /// None` keeps the stored password only while the endpoint (address, port, transport,
    /// TLS settings) stays the same; a changed endpoint clears it.
    pub fn update_site(
        &self,
        id: &str,
        input: SiteInput,
        now: DateTime<Utc>,
    ) -> Result<Site, StoreError> {
        input.validate()?;
        self.write(|tx| self.replace_site(tx, id, input, now).map(|(site, _)| site))
    }

    /// [`Store::create_site`] by `actor`, with its audit line (`site.created`) in the
    /// same commit. The line names the fields, never the password.
    pub fn create_site_by(
        &self,
        input: SiteInput,
        actor: &str,
        now: DateTime<Utc>,
    ) -> Result<Site, StoreError> {
        input.validate()?;
        let password_set = input.password.is_some();
        self.write(|tx| {
            let site = self.insert_site(tx, input, now)?;
            push_audit(
                tx,
                site_audit("site.created", &site, actor, password_set, now),
            )?;
            Ok(site)
        })
    }

    /// [`Store::update_site`] by `actor`, with its audit line (`site.updated`) in the
    /// same commit; the line says whether the password was replaced, or cleared because
    /// the endpoint changed, never what it is.
    pub fn update_site_by(
        &self,
        id: &str,
        input: SiteInput,
        actor: &str,
        now: DateTime<Utc>,
    ) -> Result<Site, StoreError> {
        input.validate()?;
        self.write(|tx| {
            let (site, change) = self.replace_site(tx, id, input, now)?;
            let audit = update_audit(&site, &change, actor, now);
            push_audit(tx, audit)?;
            Ok(site)
        })
    }

    /// [`Store::delete_site`] by `actor`, with its audit line (`site.deleted`) in the
    /// same commit.
    pub fn delete_site_by(
        &self,
        id: &str,
        actor: &str,
        now: DateTime<Utc>,
    ) -> Result<Site, StoreError> {
        self.write(|tx| {
            let site = remove_site(tx, id)?;
            push_audit(tx, site_audit("site.deleted", &site, actor, false, now))?;
            Ok(site)
        })
    }

    fn replace_site(
        &self,
        tx: &WriteTransaction,
        id: &str,
        input: SiteInput,
        now: DateTime<Utc>,
    ) -> Result<(Site, PasswordChange), StoreError> {
        let old = read_stored_site(tx, id)?;
        let old_site = old.site.clone();
        let (stored, change) = replaced(&self.vault, old, input, now)?;
        if old_site.name != stored.site.name {
            claim_name(tx, &stored.site.organization, &stored.site.name, id)?;
            tx.open_table(SITE_NAMES)?
                .remove((old_site.organization.as_str(), old_site.name.as_str()))?;
        }
        index_tags(tx, &old_site, false)?;
        index_tags(tx, &stored.site, true)?;
        put(tx, &stored)?;
        Ok((stored.site, change))
    }

    pub fn get_site(&self, id: &str) -> Result<Site, StoreError> {
        self.read(|tx| {
            let stored: Option<StoredSite> = load(&tx.open_table(SITES)?, KIND, id)?;
            stored
                .map(|s| s.site)
                .ok_or_else(|| StoreError::not_found(KIND, id))
        })
    }

    /// The site's decrypted password, for the transport that logs in to it; a site
    /// without one is [`StoreError::PasswordMissing`].
    pub fn site_password(&self, id: &str) -> Result<Secret, StoreError> {
        self.site_with_password(id).map(|(_, password)| password)
    }

    /// The site and its decrypted password, read together in one snapshot: what a job
    /// needs to log in. The password opens only for the endpoint read with it; a site
    /// without a password (never given, or cleared when its endpoint changed) is
    /// [`StoreError::PasswordMissing`], so nothing logs in to it without one.
    pub fn site_with_password(&self, id: &str) -> Result<(Site, Secret), StoreError> {
        self.site_with_password_and_endpoint(id)
            .map(|(site, password, _)| (site, password))
    }

    /// [`Store::site_with_password`], with how the site is reached, all from one read: a
    /// job checks the endpoint it was launched for against the site it is about to use.
    pub fn site_with_password_and_endpoint(
        &self,
        id: &str,
    ) -> Result<(Site, Secret, super::Endpoint), StoreError> {
        let stored: Option<StoredSite> = self.read(|tx| load(&tx.open_table(SITES)?, KIND, id))?;
        let stored = stored.ok_or_else(|| StoreError::not_found(KIND, id))?;
        login(&self.vault, stored)
    }

    /// The site's SSH private key and its passphrase, for the host's SSH login; `None`
    /// when the site has none. Opens only for the site's current endpoint.
    pub fn site_private_key(
        &self,
        id: &str,
    ) -> Result<Option<(Secret, Option<Secret>)>, StoreError> {
        let stored: Option<StoredSite> = self.read(|tx| load(&tx.open_table(SITES)?, KIND, id))?;
        let stored = stored.ok_or_else(|| StoreError::not_found(KIND, id))?;
        open_private_key(&self.vault, &stored)
    }

    /// Stores `fingerprint` as the site's host key when it has none (trust on first
    /// use), with an audit line. A site that has keys already is left as it is: the
    /// answer is `Err` with the key it holds when `fingerprint` is not among them, so a
    /// changed key is never put in place of the stored one.
    pub fn remember_host_key(
        &self,
        id: &str,
        fingerprint: &str,
        now: DateTime<Utc>,
    ) -> Result<Result<(), String>, StoreError> {
        self.write(|tx| {
            let mut stored = read_stored_site(tx, id)?;
            match learn_host_key(&mut stored, fingerprint, now) {
                Ok(Some(audit)) => {
                    put(tx, &stored)?;
                    push_audit(tx, audit)?;
                    Ok(Ok(()))
                }
                Ok(None) => Ok(Ok(())),
                Err(held) => Ok(Err(held)),
            }
        })
    }

    /// Seals every stored site password again under [`credential_aad`], for a database
    /// whose passwords were sealed under the site id alone (schema version 1). Runs in the
    /// transaction that moves the schema version on, so it happens once and whole. A
    /// password that does not open under the old associated data is left as it was; it
    /// did not open before either, and reading it still fails with `Decrypt`.
    pub(super) fn reseal_site_passwords(&self, tx: &WriteTransaction) -> Result<u64, StoreError> {
        let stored: Vec<(String, Vec<u8>)> = tx
            .open_table(SITES)?
            .iter()?
            .map(|entry| {
                let (id, bytes) = entry?;
                Ok((id.value().to_owned(), bytes.value().to_vec()))
            })
            .collect::<Result<_, StoreError>>()?;
        let mut resealed = 0;
        for (id, bytes) in stored {
            let mut site: StoredSite = decode(KIND, &id, &bytes)?;
            let Some(sealed) = &site.password else {
                continue;
            };
            let Some(plain) = self.vault.open_sealed(&id, sealed) else {
                tracing::warn!(site = %id, "a stored password does not decrypt; left as it was");
                continue;
            };
            site.password = Some(self.vault.seal(&credential_aad(&site.site), &plain));
            put(tx, &site)?;
            resealed += 1;
        }
        Ok(resealed)
    }

    pub fn delete_site(&self, id: &str) -> Result<(), StoreError> {
        self.write(|tx| remove_site(tx, id).map(drop))
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

    /// One page of an organization's sites in name order, with how many match in all.
    /// `name_contains` matches part of the name, ignoring case; `tag` keeps the sites
    /// that carry it. Filtering reads only the name index (and the tag index), so only
    /// the returned sites are decoded.
    pub fn search_sites(
        &self,
        organization: &str,
        name_contains: Option<&str>,
        tag: Option<&str>,
        offset: usize,
        limit: usize,
    ) -> Result<(Vec<Site>, usize), StoreError> {
        let limit = limit.clamp(1, super::records::MAX_PAGE);
        let needle = name_contains.map(str::to_lowercase);
        self.read(|tx| {
            let tagged: Option<std::collections::HashSet<String>> = match tag {
                Some(tag) => Some(
                    tx.open_multimap_table(SITES_BY_TAG)?
                        .get((organization, tag))?
                        .map(|id| Ok(id?.value().to_owned()))
                        .collect::<Result<_, StoreError>>()?,
                ),
                None => None,
            };
            let mut total = 0;
            let mut ids = Vec::new();
            for entry in tx.open_table(SITE_NAMES)?.range((organization, "")..)? {
                let (key, id) = entry?;
                let (org, name) = key.value();
                if org != organization {
                    break;
                }
                if needle
                    .as_deref()
                    .is_some_and(|n| !name.to_lowercase().contains(n))
                {
                    continue;
                }
                let id = id.value();
                if tagged.as_ref().is_some_and(|t| !t.contains(id)) {
                    continue;
                }
                if total >= offset && ids.len() < limit {
                    ids.push(id.to_owned());
                }
                total += 1;
            }
            let sites = tx.open_table(SITES)?;
            let mut out = Vec::with_capacity(ids.len());
            for id in &ids {
                if let Some(stored) = load::<StoredSite>(&sites, KIND, id)? {
                    out.push(stored.site);
                }
            }
            Ok((out, total))
        })
    }

    /// One page of a site's jobs, newest first, with how many the site has in all.
    pub fn site_jobs(
        &self,
        site_id: &str,
        offset: usize,
        limit: usize,
    ) -> Result<(Vec<Job>, usize), StoreError> {
        let limit = limit.clamp(1, super::records::MAX_PAGE);
        self.read(|tx| {
            let mut total = 0;
            let mut seqs = Vec::new();
            for entry in tx
                .open_table(JOBS_BY_SITE)?
                .range((site_id, 0)..=(site_id, u64::MAX))?
                .rev()
            {
                let seq = entry?.0.value().1;
                if total >= offset && seqs.len() < limit {
                    seqs.push(seq);
                }
                total += 1;
            }
            let jobs = tx.open_table(JOBS)?;
            let mut out = Vec::with_capacity(seqs.len());
            for seq in seqs {
                if let Some(bytes) = jobs.get(seq)? {
                    out.push(decode("job", &seq.to_string(), bytes.value())?);
                }
            }
            Ok((out, total))
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

/// Removes a site, unless a schedule that may still run targets it (by id, or as its
/// test site) or a job on it is unfinished: those would fail for want of it.
fn remove_site(tx: &WriteTransaction, id: &str) -> Result<Site, StoreError> {
    let old: StoredSite = get(tx, id)?;
    let schedules = schedules_needing(tx, &old.site)?;
    let unfinished_jobs = unfinished_jobs(tx, id)?;
    if !schedules.is_empty() || unfinished_jobs > 0 {
        return Err(StoreError::SiteInUse {
            name: old.site.name,
            schedules,
            unfinished_jobs,
        });
    }
    index_tags(tx, &old.site, false)?;
    tx.open_table(SITE_NAMES)?
        .remove((old.site.organization.as_str(), old.site.name.as_str()))?;
    tx.open_multimap_table(SITES_BY_ORG)?
        .remove(old.site.organization.as_str(), id)?;
    tx.open_table(SITES)?.remove(id)?;
    Ok(old.site)
}

/// `description (id)` of the site's organization's schedules that name the site and may
/// still launch: not yet authorized, scheduled, or recurring with an occurrence to come.
fn schedules_needing(tx: &WriteTransaction, site: &Site) -> Result<Vec<String>, StoreError> {
    let by_org = tx.open_multimap_table(SCHEDULES_BY_ORG)?;
    let schedules = tx.open_table(SCHEDULES)?;
    let mut out = Vec::new();
    for id in by_org.get(site.organization.as_str())? {
        let id = id?;
        let id = id.value();
        let Some(bytes) = schedules.get(id)? else {
            continue;
        };
        let schedule: ScheduledScript = decode("schedule", id, bytes.value())?;
        if needs_site(&schedule, &site.id) {
            out.push(format!("{} ({id})", schedule.description));
        }
    }
    Ok(out)
}

/// Whether `schedule` names the site `id` (by id, or as its test site) and may still
/// launch: not yet authorized, scheduled, or recurring with an occurrence to come. Such a
/// schedule keeps the site from being deleted.
pub(super) fn needs_site(schedule: &ScheduledScript, id: &str) -> bool {
    let names_site =
        schedule.sites.iter().any(|s| s == id) || schedule.test_site_id.as_deref() == Some(id);
    let may_run = matches!(
        schedule.status,
        ScheduleStatus::Unauthorized | ScheduleStatus::Scheduled
    ) || schedule.next_launch_at.is_some();
    names_site && may_run
}

/// How many of the site's jobs are pending, loaded or running.
fn unfinished_jobs(tx: &WriteTransaction, id: &str) -> Result<u64, StoreError> {
    let by_site = tx.open_table(JOBS_BY_SITE)?;
    let active = tx.open_table(JOBS_ACTIVE)?;
    let codes: Vec<u8> = [JobStatus::Pending, JobStatus::Loaded, JobStatus::Running]
        .into_iter()
        .filter_map(JobStatus::active_code)
        .collect();
    let mut n = 0;
    for entry in by_site.range((id, 0)..=(id, u64::MAX))? {
        let seq = entry?.0.value().1;
        for &code in &codes {
            if active.get((code, seq))?.is_some() {
                n += 1;
                break;
            }
        }
    }
    Ok(n)
}

/// The audit line of a change to a site: what it is now, and whether a password came
/// with the change; never the password.
pub(super) fn site_audit(
    action: &str,
    site: &Site,
    actor: &str,
    password_set: bool,
    now: DateTime<Utc>,
) -> AuditInput {
    AuditInput {
        at: now,
        organization: site.organization.clone(),
        actor: actor.to_owned(),
        action: action.to_owned(),
        target: site.id.clone(),
        detail: serde_json::json!({
            "name": site.name,
            "address": site.address,
            "port": site.port,
            "transport": site.transport,
            "username": site.username,
            "tags": site.tags,
            "tls": site.tls.enabled,
            "password_set": password_set,
        }),
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

pub(super) fn dedup(mut tags: Vec<String>) -> Vec<String> {
    tags.sort();
    tags.dedup();
    tags
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::store::records::{JobTransition, TlsSettings};
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
            private_key: None,
            private_key_passphrase: None,
            ssh: None,
        }
    }

    #[test]
    fn a_site_still_needed_is_not_deleted() {
        let (_dir, store) = open();
        let site = store.create_site(input("org1", "r1"), t(0)).expect("site");
        let mut schedule = crate::store::schedules::tests::input("org1", "Weekly rule");
        schedule.sites = vec![site.id.clone()];
        let schedule = store.create_schedule(schedule, t(0)).expect("schedule");

        let err = store
            .delete_site_by(&site.id, "alice", t(1))
            .expect_err("named");
        assert_eq!(
            err.to_string(),
            format!(
                "site r1 is still needed by schedule Weekly rule ({}); cancel those or take \
                 the site out of them first",
                schedule.id
            )
        );
        store
            .delete_schedule(&schedule.id, "u1", t(9))
            .expect("delete schedule");

        let (job, _) = store
            .create_job(crate::store::jobs::tests::input(&site.id, None), t(2))
            .expect("job");
        let err = store.delete_site(&site.id).expect_err("a job is pending");
        assert!(
            matches!(err, StoreError::SiteInUse { unfinished_jobs: 1, ref schedules, .. } if schedules.is_empty()),
            "{err}"
        );
        assert!(err.to_string().contains("by 1 unfinished job;"), "{err}");
        assert!(store.get_site(&site.id).is_ok(), "nothing was removed");

        let fail = JobTransition::Fail {
            error: crate::store::JobError {
                code: "test".into(),
                message: "done with".into(),
            },
            output: None,
        };
        store.transition_job(&job.id, fail, t(3)).expect("fail");
        store
            .delete_site_by(&site.id, "alice", t(4))
            .expect("nothing needs it now");
        assert!(store.get_site(&site.id).is_err());
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
            store.site_password(&site.id).expect("password").expose(),
            "correct horse battery staple"
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
            reopened.site_password(&site.id).expect("password").expose(),
            "correct horse battery staple"
        );
    }

    const KEY: &str = "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAA-secret-body\n-----END OPENSSH PRIVATE KEY-----\n";

    fn ssh_input(org: &str, name: &str) -> SiteInput {
        let mut i = input(org, name);
        i.transport = "ssh".into();
        i.password = None;
        i.private_key = Some(Secret::new(KEY));
        i.private_key_passphrase = Some(Secret::new("key passphrase"));
        i
    }

    #[test]
    fn a_private_key_is_sealed_never_shown_and_logs_in_without_a_password() {
        let (dir, store) = open();
        let site = store
            .create_site_by(ssh_input("org1", "h1"), "alice", t(0))
            .expect("create");
        assert!(site.has_private_key && !site.has_password);
        let json = serde_json::to_string(&store.get_site(&site.id).expect("get")).expect("json");
        assert!(
            !json.contains("secret-body") && !json.contains("passphrase"),
            "{json}"
        );
        // A key is enough to log in: no password is asked for.
        let (_, password) = store.site_with_password(&site.id).expect("credentials");
        assert_eq!(password.expose(), "");
        let (key, passphrase) = store
            .site_private_key(&site.id)
            .expect("read")
            .expect("a key");
        assert_eq!(key.expose(), KEY);
        assert_eq!(
            passphrase.map(|p| p.expose().to_owned()).as_deref(),
            Some("key passphrase")
        );
        let path = store.path().to_owned();
        drop(store);
        let raw = std::fs::read(&path).expect("raw db");
        for needle in [&b"secret-body"[..], b"key passphrase"] {
            assert!(!raw.windows(needle.len()).any(|w| w == needle));
        }
        drop(dir);
    }

    #[test]
    fn a_repointed_ssh_site_loses_its_key_and_its_host_keys() {
        let (_dir, store) = open();
        let site = store
            .create_site_by(ssh_input("org1", "h1"), "alice", t(0))
            .expect("create");
        let fp = format!("SHA256:{}", "A".repeat(43));
        assert_eq!(
            store.remember_host_key(&site.id, &fp, t(1)).expect("store"),
            Ok(())
        );
        // Another user of the organization points the site at a host of theirs without
        // bringing a key: the stored key and the learned host key stay behind.
        let mut repointed = ssh_input("org1", "h1");
        repointed.private_key = None;
        repointed.private_key_passphrase = None;
        repointed.address = "203.0.113.66".into();
        let updated = store
            .update_site_by(&site.id, repointed, "mallory", t(2))
            .expect("update");
        assert!(!updated.has_private_key);
        assert!(updated.ssh.host_keys.is_empty());
        assert!(store.site_private_key(&site.id).expect("read").is_none());
        assert!(matches!(
            store.site_with_password(&site.id),
            Err(StoreError::PasswordMissing { .. })
        ));
    }

    #[test]
    fn the_first_host_key_is_kept_and_a_different_one_is_never_stored() {
        let (_dir, store) = open();
        let site = store
            .create_site_by(ssh_input("org1", "h1"), "alice", t(0))
            .expect("create");
        let first = format!("SHA256:{}", "A".repeat(43));
        let other = format!("SHA256:{}", "B".repeat(43));
        assert_eq!(
            store
                .remember_host_key(&site.id, &first, t(1))
                .expect("store"),
            Ok(())
        );
        assert_eq!(
            store
                .remember_host_key(&site.id, &first, t(2))
                .expect("again"),
            Ok(())
        );
        assert_eq!(
            store
                .remember_host_key(&site.id, &other, t(3))
                .expect("read"),
            Err(first.clone())
        );
        assert_eq!(
            store.get_site(&site.id).expect("get").ssh.host_keys,
            vec![first.clone()]
        );
        // An edit that leaves `ssh` out keeps the learned key.
        let mut edited = ssh_input("org1", "h1");
        edited.private_key = None;
        edited.tags = vec!["renamed-tag".into()];
        let kept = store.update_site(&site.id, edited, t(4)).expect("update");
        assert_eq!(kept.ssh.host_keys, vec![first]);
        assert!(kept.has_private_key);
    }

    /// A key stored on first use leaves the endpoint an approval bound as it was; a key
    /// an operator pins, or a pin changed, is a different endpoint.
    #[test]
    fn only_pinned_host_keys_are_part_of_the_endpoint() {
        let (_dir, store) = open();
        let site = store
            .create_site_by(ssh_input("org1", "h1"), "alice", t(0))
            .expect("create");
        let digest = |store: &Store| {
            let (_, _, endpoint) = store
                .site_with_password_and_endpoint(&site.id)
                .expect("endpoint");
            endpoint.digest()
        };
        let unpinned = digest(&store);
        let first = format!("SHA256:{}", "A".repeat(43));
        let other = format!("SHA256:{}", "B".repeat(43));
        assert_eq!(
            store
                .remember_host_key(&site.id, &first, t(1))
                .expect("store"),
            Ok(())
        );
        assert_eq!(digest(&store), unpinned, "a learned key is no new endpoint");
        // Reading the site and writing it back with the learned key keeps it learned.
        let mut echoed = ssh_input("org1", "h1");
        echoed.private_key = None;
        echoed.private_key_passphrase = None;
        echoed.ssh = Some(crate::store::SshSettings {
            host_keys: vec![first.clone()],
            platform: None,
        });
        store
            .update_site(&site.id, echoed.clone(), t(2))
            .expect("update");
        assert_eq!(digest(&store), unpinned);
        // An operator pins another key: the endpoint is not the approved one any more.
        let mut pinned = echoed;
        pinned.ssh = Some(crate::store::SshSettings {
            host_keys: vec![other.clone()],
            platform: None,
        });
        store
            .update_site(&site.id, pinned.clone(), t(3))
            .expect("update");
        let repinned = digest(&store);
        assert_ne!(repinned, unpinned);
        // The same pin written again is the same endpoint; a third key is not.
        store
            .update_site(&site.id, pinned.clone(), t(4))
            .expect("update");
        assert_eq!(digest(&store), repinned);
        pinned.ssh = Some(crate::store::SshSettings {
            host_keys: vec![first, other],
            platform: None,
        });
        store.update_site(&site.id, pinned, t(5)).expect("update");
        assert_ne!(digest(&store), repinned);
    }

    #[test]
    fn ssh_settings_are_checked() {
        let mut bad = ssh_input("org1", "h1");
        bad.ssh = Some(crate::store::SshSettings {
            host_keys: vec!["MD5:aa:bb".into()],
            platform: None,
        });
        assert!(bad.validate().is_err());
        bad.ssh = Some(crate::store::SshSettings {
            host_keys: vec![],
            platform: Some("windows".into()),
        });
        assert!(bad.validate().is_err());
        bad.ssh = None;
        bad.private_key = Some(Secret::new("not a key"));
        assert!(bad.validate().is_err());
    }

    #[test]
    fn import_is_all_or_nothing_and_reports_every_bad_row() {
        let (_dir, store) = open();
        store
            .create_site(input("org1", "taken"), t(0))
            .expect("create");
        let mut rows: Vec<SiteInput> = (0..500)
            .map(|i| input("org1", &format!("r{i:04}")))
            .collect();
        rows[3].name = "taken".into();
        rows[7].address = " ".into();
        rows[9].name = "r0001".into();
        let refused = store
            .import_sites("org1", rows.clone(), "admin", t(1))
            .expect("import")
            .expect_err("bad rows");
        let found: Vec<(usize, String)> =
            refused.iter().map(|(i, e)| (*i, e.to_string())).collect();
        assert_eq!(found.len(), 3, "{found:?}");
        assert_eq!(found[0].0, 3);
        assert_eq!(found[1], (7, "site address: must not be empty".into()));
        assert_eq!(found[2].0, 9);
        let (_, total) = store
            .search_sites("org1", None, None, 0, 10)
            .expect("search");
        assert_eq!(total, 1, "nothing of a refused import is written");

        rows[3].name = "r-three".into();
        rows[7].address = "10.0.0.7".into();
        rows[9].name = "r-nine".into();
        let sites = store
            .import_sites("org1", rows, "admin", t(2))
            .expect("import")
            .expect("all good");
        assert_eq!(sites.len(), 500);
        let audit = store.list_audit(&Page::first(10)).expect("audit");
        assert_eq!(
            audit.len(),
            1,
            "one line for the import, none for the refused one"
        );
        assert_eq!(audit[0].action, "site.imported");
        assert_eq!(audit[0].actor, "admin");
        assert_eq!(audit[0].detail["count"], 500);
        assert_eq!(audit[0].detail["sites"][499], sites[499].id.as_str());
        store.site_password(&sites[0].id).expect("pw");

        let (page, total) = store
            .search_sites("org1", Some("R00"), None, 5, 3)
            .expect("search");
        assert_eq!(
            total, 98,
            "r0000..r0099 but r0003, r0007 and r0009 renamed; case ignored"
        );
        let names: Vec<&str> = page.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["r0006", "r0007", "r0008"]);
        let (_, tagged) = store
            .search_sites("org1", None, Some("edge"), 0, 1000)
            .expect("tag");
        assert_eq!(tagged, 501);
        let (none, zero) = store
            .search_sites("org2", None, None, 0, 10)
            .expect("other org");
        assert!(none.is_empty() && zero == 0);
    }

    /// The endpoint edits a `site:manage` caller could make to collect the password: each
    /// one, without a new password, leaves the site with none.
    #[test]
    fn changing_the_endpoint_without_a_password_clears_it() {
        let (_dir, store) = open();
        type Edit = fn(&mut SiteInput);
        let edits: [(&str, Edit); 6] = [
            ("address", |i| i.address = "203.0.113.66".into()),
            ("port", |i| i.port = Some(18728)),
            ("port", |i| i.port = None),
            ("transport", |i| i.transport = "other-transport".into()),
            ("tls", |i| i.tls.enabled = false),
            ("tls", |i| {
                i.tls.server_name = Some("attacker.example".into())
            }),
        ];
        for (n, (field, edit)) in edits.into_iter().enumerate() {
            let name = format!("r{n}");
            let site = store
                .create_site_by(input("org1", &name), "alice", t(0))
                .expect("create");
            let before = store
                .write(|tx| read_stored_site(tx, &site.id).map(|s| s.credential_identity()))
                .expect("identity");
            assert!(before.is_some());

            let mut repointed = input("org1", &name);
            repointed.password = None;
            edit(&mut repointed);
            let updated = store
                .update_site_by(&site.id, repointed, "mallory", t(1))
                .expect("the update itself succeeds");
            assert!(
                !updated.has_password,
                "{field}: the password must be cleared"
            );
            assert!(!store.get_site(&site.id).expect("get").has_password);
            let err = store
                .site_with_password(&site.id)
                .expect_err("no password to log in with");
            assert!(
                matches!(err, StoreError::PasswordMissing { .. }),
                "{field}: {err}"
            );
            assert!(err.to_string().contains("`password`"), "{err}");
            let after = store
                .write(|tx| read_stored_site(tx, &site.id).map(|s| s.credential_identity()))
                .expect("identity");
            assert_eq!(after, None, "{field}");

            let audit = store.list_audit(&Page::first(1000)).expect("audit");
            let line = audit
                .iter()
                .rfind(|e| e.target == site.id && e.action == "site.updated")
                .expect("an audit line for the update");
            assert_eq!(line.actor, "mallory");
            assert_eq!(line.detail["password_cleared"], true, "{}", line.detail);
            assert_eq!(line.detail["endpoint_changed"][0], field);
            let reason = line.detail["reason"].as_str().unwrap_or_default();
            assert!(
                reason.contains("cleared because the endpoint changed"),
                "{reason}"
            );
            assert!(!format!("{audit:?}").contains("correct horse"));
        }
    }

    #[test]
    fn other_edits_keep_the_password_and_a_new_one_opens_for_the_new_endpoint() {
        let (_dir, store) = open();
        let site = store
            .create_site(input("org1", "r1"), t(0))
            .expect("create");
        let identity = |store: &Store| {
            store
                .write(|tx| read_stored_site(tx, &site.id).map(|s| s.credential_identity()))
                .expect("identity")
        };
        let first = identity(&store);

        let mut renamed = input("org1", "r1-renamed");
        renamed.password = None;
        renamed.username = "ops".into();
        renamed.tags = vec!["moved".into()];
        let updated = store.update_site(&site.id, renamed, t(1)).expect("update");
        assert!(updated.has_password);
        assert_eq!(identity(&store), first, "the same sealed password stays");
        assert_eq!(
            store.site_password(&site.id).expect("kept").expose(),
            "correct horse battery staple"
        );

        let mut moved = input("org1", "r1-renamed");
        moved.address = "198.51.100.7".into();
        moved.password = Some(Secret::new("the new one"));
        let updated = store.update_site(&site.id, moved, t(2)).expect("update");
        assert!(updated.has_password);
        let (site_now, password) = store.site_with_password(&site.id).expect("credential");
        assert_eq!(site_now.address, "198.51.100.7");
        assert_eq!(password.expose(), "the new one");
        let second = identity(&store);
        assert!(second.is_some() && second != first);

        // The same password given again is a new sealing, so a new identity.
        let mut again = input("org1", "r1-renamed");
        again.address = "198.51.100.7".into();
        again.password = Some(Secret::new("the new one"));
        store.update_site(&site.id, again, t(3)).expect("update");
        assert_ne!(identity(&store), second);
    }

    /// Sealed bytes carried onto another endpoint (as a bug might) do not open there.
    #[test]
    fn a_sealed_password_opens_only_for_its_endpoint() {
        let (_dir, store) = open();
        let site = store
            .create_site(input("org1", "r1"), t(0))
            .expect("create");
        store
            .write(|tx| {
                let mut stored = read_stored_site(tx, &site.id)?;
                stored.site.address = "203.0.113.66".into();
                put(tx, &stored)
            })
            .expect("carry the sealed password to another address");
        let err = store
            .site_with_password(&site.id)
            .expect_err("sealed for the old endpoint");
        assert!(matches!(err, StoreError::Decrypt { .. }), "{err}");

        // Nor does a password sealed under the site id alone, the old associated data.
        store
            .write(|tx| {
                let mut stored = read_stored_site(tx, &site.id)?;
                stored.site.address = "127.0.0.1".into();
                stored.password = Some(store.vault.seal(&site.id, "old style"));
                put(tx, &stored)
            })
            .expect("write an old-style sealing");
        assert!(matches!(
            store.site_with_password(&site.id),
            Err(StoreError::Decrypt { .. })
        ));
    }

    /// A database written before passwords were bound to their endpoint (schema 1,
    /// sealed under the site id) is moved on when it opens: every password is sealed
    /// again under its endpoint, in one transaction with the new schema version.
    #[test]
    fn a_schema_1_database_is_resealed_when_it_opens() {
        use crate::store::tables::{META, META_SCHEMA_VERSION, SCHEMA_VERSION};
        let (dir, store) = open();
        let with = store.create_site(input("org1", "r1"), t(0)).expect("site");
        let mut none = input("org1", "r2");
        none.password = None;
        let without = store.create_site(none, t(0)).expect("site");
        store
            .write(|tx| {
                let mut stored = read_stored_site(tx, &with.id)?;
                stored.password = Some(store.vault.seal(&with.id, "from version 1"));
                put(tx, &stored)?;
                tx.open_table(META)?.insert(META_SCHEMA_VERSION, 1)?;
                Ok(())
            })
            .expect("make it a version 1 database");
        assert!(
            matches!(
                store.site_with_password(&with.id),
                Err(StoreError::Decrypt { .. })
            ),
            "no fallback to the old associated data"
        );
        drop(store);

        let store = Store::open(dir.path()).expect("reopen migrates");
        assert_eq!(
            store.site_password(&with.id).expect("resealed").expose(),
            "from version 1"
        );
        assert!(matches!(
            store.site_password(&without.id),
            Err(StoreError::PasswordMissing { .. })
        ));
        assert_eq!(
            crate::store::test_support::schema_version(&store),
            Some(SCHEMA_VERSION)
        );
        let sealed = store
            .write(|tx| read_stored_site(tx, &with.id).map(|s| s.password))
            .expect("stored")
            .expect("sealed");
        assert_eq!(
            store.vault.open_sealed(&with.id, &sealed),
            None,
            "the old associated data no longer opens it"
        );
        drop(store);
        let store = Store::open(dir.path()).expect("a second open changes nothing");
        assert_eq!(
            store.site_password(&with.id).expect("still").expose(),
            "from version 1"
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
