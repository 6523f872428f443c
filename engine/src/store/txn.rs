//! The one place that opens transactions, encodes records and checks the schema version,
//! moving an older database forward (in the transaction that checks it) when it can.
//!
//! Write transactions use redb's quick repair: each commit also saves the allocator
//! state, so reopening after `kill -9` does not walk the whole file (the restart target is
//! under 2 s with a million jobs). Durability is redb's default, `Immediate`: a commit
//! that returned is on disk.

use redb::{ReadTransaction, ReadableDatabase, ReadableTable, WriteTransaction};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::Store;
use super::error::StoreError;
use super::tables::{self, META};

impl Store {
    /// Runs `f` in one write transaction and commits it; an error aborts everything `f` did.
    pub(crate) fn write<T>(
        &self,
        f: impl FnOnce(&WriteTransaction) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let mut tx = self.db.begin_write()?;
        tx.set_quick_repair(true);
        let out = f(&tx)?;
        tx.commit()?;
        // After the commit: a reader that saw the old count may cache what it read under
        // it, never the other way round.
        self.generation
            .fetch_add(1, std::sync::atomic::Ordering::AcqRel);
        Ok(out)
    }

    /// [`Store::write`] for a change that may move a schedule's next launch: once it has
    /// committed, whoever waits in [`Store::launches_changed`] is woken.
    pub(crate) fn write_launches<T>(
        &self,
        f: impl FnOnce(&WriteTransaction) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let out = self.write(f)?;
        self.wake_launcher();
        Ok(out)
    }

    /// Runs `f` against a consistent snapshot.
    pub(crate) fn read<T>(
        &self,
        f: impl FnOnce(&ReadTransaction) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let tx = self.db.begin_read()?;
        f(&tx)
    }

    pub(crate) fn check_schema(&self) -> Result<(), StoreError> {
        let path = self.path.display().to_string();
        self.write(|tx| {
            let mut meta = tx.open_table(META)?;
            let found = meta.get(tables::META_SCHEMA_VERSION)?.map(|v| v.value());
            match found {
                None => {
                    meta.insert(tables::META_SCHEMA_VERSION, tables::SCHEMA_VERSION)?;
                }
                Some(v) if v == tables::SCHEMA_VERSION => {}
                Some(v) if v > tables::SCHEMA_VERSION => {
                    return Err(StoreError::SchemaTooNew {
                        path,
                        found: v,
                        supported: tables::SCHEMA_VERSION,
                    });
                }
                // Older layouts are brought up to date in this same transaction: the
                // database is either migrated whole or left as it was.
                Some(v) => {
                    drop(meta);
                    self.migrate(tx, &path, v)?;
                    tx.open_table(META)?
                        .insert(tables::META_SCHEMA_VERSION, tables::SCHEMA_VERSION)?;
                }
            }
            open_all(tx)
        })
    }

    /// Moves a database of schema version `from` to [`tables::SCHEMA_VERSION`], one
    /// version at a time, in the caller's transaction: the new version is recorded with
    /// the changes, or neither is.
    fn migrate(&self, tx: &WriteTransaction, path: &str, from: u64) -> Result<(), StoreError> {
        for version in from..tables::SCHEMA_VERSION {
            match version {
                1 => {
                    let resealed = self.reseal_site_passwords(tx)?;
                    tracing::info!(
                        resealed,
                        "store schema 1 -> 2: site passwords sealed under their endpoint"
                    );
                }
                2 => {
                    // Earlier versions kept backups in the clear.
                    let sealed = self.seal_plain_backups(tx)?;
                    tracing::info!(sealed, "store schema 2 -> 3: backups sealed at rest");
                }
                3 => migrate_users_by_organization(tx)?,
                4 => {
                    let sites = super::outcomes::backfill(tx)?;
                    tracing::info!(
                        sites,
                        "store schema 4 -> 5: each run's sites kept beside the run"
                    );
                }
                5 => {
                    let schedules = super::listing::backfill(tx)?;
                    tracing::info!(
                        schedules,
                        "store schema 5 -> 6: schedule listings served from indexes"
                    );
                }
                _ => {
                    return Err(StoreError::SchemaUnknown {
                        path: path.to_owned(),
                        found: from,
                    });
                }
            }
        }
        Ok(())
    }
}

/// Schema 3 -> 4: users move from a table keyed by the bare user id to one keyed by
/// (organization, user id), and the old table is removed.
fn migrate_users_by_organization(tx: &WriteTransaction) -> Result<(), StoreError> {
    let mut moved: Vec<(String, String, Vec<u8>)> = Vec::new();
    {
        let old = tx.open_table(tables::USERS_V1)?;
        for entry in old.iter()? {
            let (key, value) = entry?;
            let user: super::records::User = decode("user", key.value(), value.value())?;
            moved.push((user.organization, user.id, value.value().to_vec()));
        }
    }
    let mut users = tx.open_table(tables::USERS)?;
    for (organization, id, bytes) in &moved {
        users.insert((organization.as_str(), id.as_str()), bytes.as_slice())?;
    }
    drop(users);
    tx.delete_table(tables::USERS_V1)?;
    tracing::info!(
        users = moved.len(),
        "store schema 3 -> 4: users keyed by organization"
    );
    Ok(())
}

/// Creates every table, so read transactions never meet a missing one.
fn open_all(tx: &WriteTransaction) -> Result<(), StoreError> {
    use tables::*;
    tx.open_table(SITES)?;
    tx.open_table(NOTIFY_SECRETS)?;
    tx.open_table(SITE_NAMES)?;
    tx.open_multimap_table(SITES_BY_ORG)?;
    tx.open_multimap_table(SITES_BY_TAG)?;
    tx.open_table(SCHEDULES)?;
    tx.open_table(SCHEDULE_NAMES)?;
    tx.open_multimap_table(SCHEDULES_BY_ORG)?;
    tx.open_table(SCHEDULES_DUE)?;
    tx.open_multimap_table(SCHEDULES_BY_CREATOR)?;
    tx.open_multimap_table(SCHEDULES_BY_FREQUENCY)?;
    tx.open_table(SCHEDULES_BY_CREATED)?;
    tx.open_table(SCHEDULE_FACTS)?;
    tx.open_table(RUNS)?;
    tx.open_table(LEDGER)?;
    tx.open_table(RUN_SITES)?;
    tx.open_table(JOBS)?;
    tx.open_table(JOB_IDS)?;
    tx.open_table(JOBS_BY_SITE)?;
    tx.open_table(JOBS_ACTIVE)?;
    tx.open_table(JOB_BACKUPS)?;
    tx.open_table(IDEMPOTENCY)?;
    tx.open_table(USERS)?;
    tx.open_table(AUDIT)?;
    tx.open_table(OUTBOX)?;
    tx.open_table(OUTBOX_DUE)?;
    tx.open_table(TEMPLATES)?;
    tx.open_multimap_table(TEMPLATES_BY_ORG)?;
    tx.open_table(TEMPLATE_VERSIONS)?;
    tx.open_table(COMMUNITY)?;
    tx.open_table(COMMUNITY_BY_SOURCE)?;
    tx.open_table(COMMUNITY_QUEUE)?;
    tx.open_table(SUMMARY_QUEUE)?;
    Ok(())
}

/// Takes the next value of a counter in `META` (starting at 1) and advances it by `n`.
pub(crate) fn take_seq(tx: &WriteTransaction, counter: &str, n: u64) -> Result<u64, StoreError> {
    let mut meta = tx.open_table(META)?;
    let last = meta.get(counter)?.map(|v| v.value()).unwrap_or(0);
    meta.insert(counter, last + n)?;
    Ok(last + 1)
}

pub(crate) fn encode<T: Serialize>(
    kind: &'static str,
    id: &str,
    value: &T,
) -> Result<Vec<u8>, StoreError> {
    serde_json::to_vec(value).map_err(|source| StoreError::Encode {
        kind,
        id: id.to_owned(),
        source,
    })
}

pub(crate) fn decode<T: DeserializeOwned>(
    kind: &'static str,
    id: &str,
    bytes: &[u8],
) -> Result<T, StoreError> {
    serde_json::from_slice(bytes).map_err(|source| StoreError::Corrupt {
        kind,
        id: id.to_owned(),
        source,
    })
}

/// Reads and decodes one record from any table keyed by `&str`.
pub(crate) fn load<T: DeserializeOwned>(
    table: &impl ReadableTable<&'static str, &'static [u8]>,
    kind: &'static str,
    id: &str,
) -> Result<Option<T>, StoreError> {
    match table.get(id)? {
        Some(bytes) => decode(kind, id, bytes.value()).map(Some),
        None => Ok(None),
    }
}

pub(crate) fn millis(at: chrono::DateTime<chrono::Utc>) -> i64 {
    at.timestamp_millis()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::test_support;
    use redb::ReadableTableMetadata;

    #[test]
    fn a_newer_schema_is_refused_with_a_clear_message() {
        let (dir, store) = test_support::open();
        store
            .write(|tx| {
                tx.open_table(META)?
                    .insert(tables::META_SCHEMA_VERSION, tables::SCHEMA_VERSION + 1)?;
                Ok(())
            })
            .expect("bump version");
        drop(store);
        let err = Store::open(dir.path()).expect_err("newer schema refused");
        let msg = err.to_string();
        assert!(matches!(err, StoreError::SchemaTooNew { .. }), "{msg}");
        assert!(msg.contains("upgrade the engine"), "{msg}");
    }

    #[test]
    fn an_older_unknown_schema_is_refused() {
        let (dir, store) = test_support::open();
        store
            .write(|tx| {
                tx.open_table(META)?
                    .insert(tables::META_SCHEMA_VERSION, 0)?;
                Ok(())
            })
            .expect("set version");
        drop(store);
        assert!(matches!(
            Store::open(dir.path()),
            Err(StoreError::SchemaUnknown { found: 0, .. })
        ));
    }

    #[test]
    fn a_schema_1_database_gets_its_users_keyed_by_organization() {
        use crate::store::User;
        let (dir, store) = test_support::open();
        let user = |id: &str, org: &str| User {
            id: id.into(),
            name: format!("{id} of {org}"),
            email: format!("{id}@{org}.example"),
            organization: org.into(),
            created_at: test_support::t(0),
        };
        let (ada, bob) = (user("ada", "org1"), user("bob", "org2"));
        // Schema 1's layout: users under their bare id, no table keyed by organization.
        store
            .write(|tx| {
                tx.delete_table(tables::USERS)?;
                let mut old = tx.open_table(tables::USERS_V1)?;
                for u in [&ada, &bob] {
                    old.insert(u.id.as_str(), encode("user", &u.id, u)?.as_slice())?;
                }
                tx.open_table(META)?
                    .insert(tables::META_SCHEMA_VERSION, 1)?;
                Ok(())
            })
            .expect("schema 1 layout");
        drop(store);

        let store = Store::open(dir.path()).expect("migrated");
        assert_eq!(store.get_user("org1", "ada").expect("ada"), ada);
        assert_eq!(store.get_user("org2", "bob").expect("bob"), bob);
        assert!(store.get_user("org2", "ada").is_err());
        assert_eq!(store.organization_users("org1").expect("org1"), vec![ada]);
        let (version, old_table) = store
            .read(|tx| {
                let version = tx
                    .open_table(META)?
                    .get(tables::META_SCHEMA_VERSION)?
                    .map(|v| v.value());
                Ok((version, tx.open_table(tables::USERS_V1).is_ok()))
            })
            .expect("read");
        assert_eq!(version, Some(tables::SCHEMA_VERSION));
        assert!(!old_table, "the old table is removed");
        drop(store);
        Store::open(dir.path()).expect("a migrated database reopens");
    }

    #[test]
    fn a_migration_that_fails_leaves_the_database_as_it_was() {
        let (dir, store) = test_support::open();
        let path = store.path().to_owned();
        store
            .write(|tx| {
                tx.delete_table(tables::USERS)?;
                let mut old = tx.open_table(tables::USERS_V1)?;
                old.insert("ada", br#"{"id":"ada","name":"Ada","email":"a@x.example","organization":"org1","created_at":"2026-01-01T00:00:00Z"}"#.as_slice())?;
                old.insert("broken", b"not json".as_slice())?;
                tx.open_table(META)?.insert(tables::META_SCHEMA_VERSION, 1)?;
                Ok(())
            })
            .expect("schema 1 layout");
        drop(store);

        let err = Store::open(dir.path()).expect_err("an unreadable user stops the migration");
        assert!(
            matches!(err, StoreError::Corrupt { kind: "user", .. }),
            "{err}"
        );
        let db = redb::Database::open(&path).expect("raw database");
        let tx = db.begin_read().expect("read");
        let version = tx
            .open_table(META)
            .expect("meta")
            .get(tables::META_SCHEMA_VERSION)
            .expect("get")
            .map(|v| v.value());
        assert_eq!(version, Some(1));
        assert_eq!(
            tx.open_table(tables::USERS_V1)
                .expect("old table")
                .len()
                .expect("len"),
            2
        );
        assert!(
            tx.open_table(tables::USERS).is_err(),
            "no half-made new table"
        );
    }

    #[test]
    fn reopening_keeps_the_version() {
        let (dir, store) = test_support::open();
        drop(store);
        Store::open(dir.path()).expect("reopen");
    }
}
