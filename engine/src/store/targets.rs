//! What a schedule's targets resolve to, read inside the transaction that decides.
//!
//! An approval covers the sites a schedule reaches and how the engine reaches each of
//! them. Both are read here, from the sites table and its tag index, by the transaction
//! that approves or launches: a site tagged, re-pointed or given new credentials between
//! a read and the commit cannot slip past the check, because the check and the commit
//! are one transaction. The endpoint identity names the credential by a digest of its
//! sealed form, never by the secret.

use redb::{ReadableMultimapTable, ReadableTable};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::error::StoreError;
use super::records::{ScheduledScript, TlsSettings};
use super::sites::StoredSite;
use super::txn::decode;

/// The resolved targets of a schedule: the sites it reaches, and how it reaches them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Targets {
    /// The fleet: the listed sites and those carrying a listed tag, less the excluded
    /// ones, sorted and without repeats. The test site is in it only when it is also
    /// a fleet site.
    pub sites: Vec<String>,
    /// The endpoint of every site of the fleet and of the test site, by site id.
    pub endpoints: Vec<Endpoint>,
}

/// How the engine reaches one site: everything that decides where a script lands and
/// with which credential. A site that does not exist (deleted, or never of this
/// organization) is an endpoint with `missing` set, so that its absence is bound too.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Endpoint {
    pub site_id: String,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub missing: bool,
    pub address: String,
    pub port: Option<u16>,
    pub transport: String,
    pub username: String,
    pub tls: TlsSettings,
    /// Hex sha256 of the sealed credential; it changes whenever a secret is set or
    /// cleared, and reveals nothing of it.
    pub credential: Option<String>,
    /// The SSH host keys an operator pinned, sorted. A key stored on first use is not
    /// here: approving a site with none pinned approves whatever key it shows first,
    /// and later sessions must show that one.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub host_keys: Vec<String>,
}

impl Endpoint {
    /// Hex sha256 of the endpoint, to compare one taken at launch with one read later.
    pub fn digest(&self) -> String {
        let mut h = Sha256::new();
        h.update(b"yardmaster/endpoint/v1\0");
        // serde_json writes the fields in declaration order, so equal endpoints encode alike.
        h.update(serde_json::to_vec(self).unwrap_or_default());
        hex::encode(h.finalize())
    }
}

/// Resolves `schedule`'s targets against the given sites table and tag index (of a read
/// or a write transaction).
pub(crate) fn resolve<S, T>(
    sites: &S,
    by_tag: &T,
    schedule: &ScheduledScript,
) -> Result<Targets, StoreError>
where
    S: ReadableTable<&'static str, &'static [u8]>,
    T: ReadableMultimapTable<(&'static str, &'static str), &'static str>,
{
    let mut tagged = Vec::new();
    for tag in &schedule.tags {
        for id in by_tag.get((schedule.organization.as_str(), tag.as_str()))? {
            tagged.push(id?.value().to_owned());
        }
    }
    let (fleet, ids) = reach(schedule, tagged);
    let mut endpoints = Vec::with_capacity(ids.len());
    for id in ids {
        endpoints.push(endpoint(sites, &schedule.organization, &id)?);
    }
    Ok(Targets {
        sites: fleet,
        endpoints,
    })
}

/// The fleet of `schedule` given the ids of its organization's sites that carry one of
/// its tags (the listed sites and those, less the excluded ones, sorted, without repeats),
/// and the ids whose endpoints an approval binds: the fleet's and the test site's.
pub(crate) fn reach(schedule: &ScheduledScript, tagged: Vec<String>) -> (Vec<String>, Vec<String>) {
    let mut fleet: Vec<String> = schedule.sites.clone();
    fleet.extend(tagged);
    fleet.retain(|s| !schedule.excluded_sites.contains(s));
    fleet.sort();
    fleet.dedup();
    let mut ids = fleet.clone();
    if let Some(test) = &schedule.test_site_id {
        ids.push(test.clone());
    }
    ids.sort_unstable();
    ids.dedup();
    (fleet, ids)
}

/// How the site `id` is reached, given the site as stored (if it is): a site of another
/// organization, or none, is an endpoint with `missing` set.
pub(crate) fn endpoint_of(organization: &str, id: &str, stored: Option<&StoredSite>) -> Endpoint {
    match stored {
        Some(stored) if stored.site().organization == organization => Endpoint::of(stored),
        _ => Endpoint {
            site_id: id.to_owned(),
            missing: true,
            ..Endpoint::default()
        },
    }
}

pub(crate) fn endpoint<S>(sites: &S, organization: &str, id: &str) -> Result<Endpoint, StoreError>
where
    S: ReadableTable<&'static str, &'static [u8]>,
{
    let stored: Option<StoredSite> = match sites.get(id)? {
        Some(bytes) => Some(decode("site", id, bytes.value())?),
        None => None,
    };
    Ok(endpoint_of(organization, id, stored.as_ref()))
}

impl Endpoint {
    /// How the stored site `stored` is reached.
    pub(crate) fn of(stored: &StoredSite) -> Endpoint {
        let site = stored.site();
        Endpoint {
            site_id: site.id.clone(),
            missing: false,
            address: site.address.clone(),
            port: site.port,
            transport: site.transport.clone(),
            username: site.username.clone(),
            tls: site.tls.clone(),
            credential: stored.credential_identity(),
            host_keys: if stored.host_key_learned {
                Vec::new()
            } else {
                let mut keys = site.ssh.host_keys.clone();
                keys.sort();
                keys.dedup();
                keys
            },
        }
    }
}

/// How the targets an approval covered differ from those found now, in words an
/// approver can act on; empty when they are the same.
pub fn differences(approved: &Targets, now: &Targets) -> Vec<String> {
    let mut out = Vec::new();
    for site in &now.sites {
        if !approved.sites.contains(site) {
            out.push(format!("site {site} was added to the targets"));
        }
    }
    for site in &approved.sites {
        if !now.sites.contains(site) {
            out.push(format!("site {site} is no longer a target"));
        }
    }
    for new in &now.endpoints {
        let Some(old) = approved.endpoints.iter().find(|e| e.site_id == new.site_id) else {
            continue;
        };
        let mut changed = Vec::new();
        if old.missing != new.missing {
            changed.push(if new.missing { "deleted" } else { "created" });
        }
        if old.address != new.address {
            changed.push("address");
        }
        if old.port != new.port {
            changed.push("port");
        }
        if old.transport != new.transport {
            changed.push("transport");
        }
        if old.username != new.username {
            changed.push("username");
        }
        if old.tls != new.tls {
            changed.push("tls");
        }
        if old.credential != new.credential {
            changed.push("credentials");
        }
        if old.host_keys != new.host_keys {
            changed.push("pinned SSH host keys");
        }
        if !changed.is_empty() {
            out.push(format!(
                "site {} changed: {}",
                new.site_id,
                changed.join(", ")
            ));
        }
    }
    out
}
