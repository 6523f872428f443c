//! The store in PostgreSQL, for several engines sharing one database.
//!
//! [`PgStore::connect`] opens a pool of connections (tokio-postgres under deadpool) and
//! brings the schema up to date before it returns. Records are kept in the shapes the
//! redb store gives them, the serde records of `records.rs` as `jsonb`, beside the
//! columns that queries and constraints need (a job's status, its owner's lease). The
//! operations mirror the redb store's own (same names, arguments and errors) where the
//! meaning is the same for one engine and for many (jobs, sites, users, the audit log,
//! schedules and their approval, `append_event`, `get_event`), and take what several
//! engines add where it is not: `recover` and `record_event_attempt` name the engine
//! whose work they settle or record; `launch` carries the scheduler's fencing token.
//! The rules are the same code as the redb store's, pure functions both stores call
//! between their reads and writes: a job's transitions go through `jobs::apply`, the
//! settlement of work left in flight through `records::in_flight_settlement`, an outbox
//! attempt through `journal::apply_attempt`, a site's changes through `sites::new_site`,
//! `sites::replaced` and `sites::login`, a schedule's through `schedules::patched`,
//! `schedules::may_authorize` and `schedules::still_approved`, and what a job's change
//! implies (its events, its run's tally and outcome) through `jobs::apply_all` and
//! `schedules::count_outcome`.
//!
//! Where each site of a run stands is read from the run's jobs (`latest_runs`), so it
//! always equals a recount; the redb store keeps it beside the run instead.
//!
//! The engine reaches this store through [`crate::store::Backend`], which names the engine
//! in its claims and leases: its runner claims jobs as it starts them
//! ([`PgStore::claim_and_transition`]), its launcher holds the scheduler lease, its
//! deliverer claims notifications, and every engine renews its claims and settles those
//! that lapsed (`serve`'s `keep_claims`).
//!
//! What several engines add:
//! - the never-twice ledger is a `UNIQUE (schedule_id, occurrence, site_id)` constraint,
//!   so whichever engine launches an occurrence, a site gets one job of it (`launch`);
//! - one engine at a time holds the scheduler lease, with a fencing token that grows at
//!   each change of holder; a launch carries its token and is refused once it is stale
//!   (`leases`);
//! - jobs are taken with a claim (`FOR UPDATE SKIP LOCKED`) that records the engine and
//!   the end of its lease in the same transaction; an engine that stops renewing leaves
//!   its jobs to [`PgStore::expire_leases`], which settles them as a local restart does.
//!   Lease times are read from the database's clock, so engines need not agree on theirs;
//! - outbox events are claimed the same way, delivered at least once, and in order per
//!   job (`outbox`);
//! - what one engine writes that others must act on (jobs queued or requeued, events
//!   queued) is announced with `NOTIFY` in the same transaction, and each engine listens
//!   on a connection of its own (`changes`).
//!
//! Layout: `schema` (the versioned migrations, applied once under an advisory lock),
//! `jobs` (creation, reads, transitions, claims, recovery), `launch` (the ledger),
//! `leases` (the scheduler lease), `outbox` (events and their delivery), `changes`
//! (LISTEN/NOTIFY between engines), `sites` (sites and their sealed credentials),
//! `journal` (users and the audit log), `schedules` (schedules, their approval, the due
//! index and the targets an approval binds), `artifacts` (job reads beyond one id, a
//! run's jobs, backups and diffs), `channels` (notification channels and signing
//! secrets), `templates` (private templates and their versions), `community` (community
//! script submissions, their queue shared by the engines, and their sources),
//! `summaries` (the summaries still to write). This module holds the pool, the credential key,
//! the one place transactions are opened, and the mapping of client errors to
//! [`StoreError`].
//!
//! Secrets never reach these tables unsealed. Every engine on a database is given the
//! same credential key ([`CredentialKey`]: a file, or `YARDMASTER_CREDENTIAL_KEY`); the
//! database keeps a fixed text sealed under the first engine's key, and an engine whose
//! key does not open it is refused at connect, before it seals anything the others could
//! not open. Site passwords and private keys are sealed by the same code and under the
//! same associated data as in the redb store, and so are jobs' backups and diffs
//! (`artifacts`) and channels' secret settings (`channels`).
//!
//! Connections are made without TLS (`NoTls`): point the store at a server on loopback or
//! on a network the engines trust.

/// Runs `$body` (an `async` block that uses `$tx`, the transaction) in one transaction
/// of `$store` (read committed; the operations lock the rows they change) and commits it;
/// evaluates to the block's result. A transaction the server aborted for a serialization
/// failure or a deadlock is run again from the start, up to [`MAX_ATTEMPTS`] times; any
/// other error rolls everything the block did back and is returned.
///
/// A macro, not a function taking an async closure: the block is awaited in place, so
/// the operations' futures stay `Send` (a future returned through a higher-ranked
/// closure bound is not proven `Send` by today's compiler).
macro_rules! transaction {
    ($store:expr, $operation:expr, |$tx:ident| $body:expr) => {{
        let operation: &'static str = $operation;
        let mut client = $store.client().await?;
        let mut attempt: u32 = 1;
        loop {
            let owned = client
                .transaction()
                .await
                .map_err($crate::store::postgres::pg(operation))?;
            let outcome: Result<_, $crate::store::error::StoreError> = {
                let $tx = &owned;
                $body.await
            };
            let result = match outcome {
                Ok(out) => owned
                    .commit()
                    .await
                    .map(|()| out)
                    .map_err($crate::store::postgres::pg(operation)),
                Err(e) => {
                    // The rollback's own failure says nothing the first error does not.
                    let _ = owned.rollback().await;
                    Err(e)
                }
            };
            match result {
                Err($crate::store::error::StoreError::Postgres { source, .. })
                    if attempt < $crate::store::postgres::MAX_ATTEMPTS
                        && $crate::store::postgres::retryable(&source) =>
                {
                    attempt += 1;
                    tracing::debug!(operation, attempt, "PostgreSQL transaction run again");
                }
                other => break other,
            }
        }
    }};
}

mod artifacts;
pub mod changes;
mod channels;
mod community;
mod jobs;
mod journal;
mod launch;
mod leases;
mod outbox;
mod schedules;
mod schema;
mod sites;
mod summaries;
mod templates;

use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use tokio_postgres::NoTls;
use tokio_postgres::error::SqlState;

use super::crypto::{CredentialKey, Sealed, Vault};
use super::error::{StoreError, postgres_detail};

pub use leases::SCHEDULER_LEASE;
pub use schema::SCHEMA_VERSION;

/// Connections the pool keeps open at most, unless told otherwise
/// ([`PgStore::connect_with`], `[store] max_connections`).
pub const POOL_SIZE: usize = 16;
/// How long a caller waits for a connection (a new one, or one handed back).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How many times a transaction the server aborted for a serialization failure or a
/// deadlock is run again before its error is returned.
const MAX_ATTEMPTS: u32 = 5;

/// The engine's durable state in PostgreSQL. Cheap to share behind an `Arc`.
#[derive(Debug)]
pub struct PgStore {
    pool: Pool,
    /// `host:port/database`, for messages (never the password).
    address: String,
    /// How to reach the server, for connections outside the pool (the listener's).
    config: tokio_postgres::Config,
    /// The credential key every engine on the database shares.
    vault: Vault,
}

impl PgStore {
    /// Connects to the database at `url` (`postgres://user@host:port/database`) and
    /// applies the migrations it lacks. Refuses a database written by a newer engine, and
    /// a credential key other than the one the database's secrets are sealed under.
    pub async fn connect(url: &str, key: &CredentialKey) -> Result<PgStore, StoreError> {
        PgStore::connect_with(url, key, POOL_SIZE).await
    }

    /// [`PgStore::connect`] with a pool of at most `pool_size` connections (at least 2:
    /// a transaction and a read beside it).
    pub async fn connect_with(
        url: &str,
        key: &CredentialKey,
        pool_size: usize,
    ) -> Result<PgStore, StoreError> {
        let vault = Vault::from_source(key)?;
        let config: tokio_postgres::Config = url.parse().map_err(|e: tokio_postgres::Error| {
            StoreError::invalid("store", "url", format!("not a PostgreSQL URL: {e}"))
        })?;
        let address = describe(&config);
        // A connection the server closed (a restart, an idle timeout) is found out when
        // it is handed out, and replaced, instead of failing the caller's first statement.
        let manager = Manager::from_config(
            config.clone(),
            NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Verified,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(pool_size.max(2))
            .runtime(Runtime::Tokio1)
            .create_timeout(Some(CONNECT_TIMEOUT))
            .wait_timeout(Some(CONNECT_TIMEOUT))
            .recycle_timeout(Some(CONNECT_TIMEOUT))
            .build()
            .map_err(|e| StoreError::Unreachable {
                address: address.clone(),
                reason: e.to_string(),
            })?;
        let store = PgStore {
            pool,
            address,
            config,
            vault,
        };
        store.migrate().await?;
        store.check_key(key).await?;
        Ok(store)
    }

    /// `host:port/database` of the server, for messages.
    pub fn address(&self) -> &str {
        &self.address
    }

    /// Refuses `key` unless it opens the check value the database keeps; the first
    /// engine to connect seals one under its key.
    async fn check_key(&self, key: &CredentialKey) -> Result<(), StoreError> {
        let mine = encode(
            "fact",
            "credential_key_check",
            &self.vault.seal(Vault::CHECK, Vault::CHECK),
        )?;
        let kept = self.keep_fact("credential_key_check", &mine).await?;
        let sealed: Sealed = decode("fact", "credential_key_check", &kept)?;
        if self.vault.opens_check(&sealed) {
            return Ok(());
        }
        Err(StoreError::Key {
            path: key.describe(),
            reason: format!(
                "is not the key the secrets in {} are sealed under: every engine on one \
                 database needs the same credential key (copy the first engine's key file, \
                 or set the same YARDMASTER_CREDENTIAL_KEY on each)",
                self.address
            ),
        })
    }

    /// The signing secret `name` every engine on the database shares (the token key, the
    /// notification key): the first engine to ask keeps `offered` sealed under the
    /// credential key, and every engine, that one included, gets back what is kept. The
    /// database never holds it in the clear.
    pub async fn shared_secret(&self, name: &str, offered: &[u8]) -> Result<Vec<u8>, StoreError> {
        let fact = format!("secret:{name}");
        let mine = encode("fact", name, &self.vault.seal(&fact, &hex::encode(offered)))?;
        let kept = self.keep_fact(&fact, &mine).await?;
        let sealed: Sealed = decode("fact", name, &kept)?;
        self.vault
            .open_sealed(&fact, &sealed)
            .and_then(|text| hex::decode(text).ok())
            .ok_or_else(|| StoreError::Key {
                path: self.address.clone(),
                reason: format!("the shared secret `{name}` does not open with this key"),
            })
    }

    /// Keeps `offered` as the fact `name` unless the database has one already, and
    /// returns the one kept: whichever engine asks first decides it for all of them.
    async fn keep_fact(&self, name: &str, offered: &str) -> Result<String, StoreError> {
        transaction!(self, "keep a store fact", |tx| async {
            tx.execute(
                "INSERT INTO store_facts (name, value) VALUES ($1, $2)
                 ON CONFLICT (name) DO NOTHING",
                &[&name, &offered],
            )
            .await
            .map_err(pg("keep a store fact"))?;
            let row = tx
                .query_one("SELECT value FROM store_facts WHERE name = $1", &[&name])
                .await
                .map_err(pg("read a store fact"))?;
            col::<String>(&row, 0)
        })
    }

    async fn client(&self) -> Result<deadpool_postgres::Object, StoreError> {
        self.pool.get().await.map_err(|e| StoreError::Unreachable {
            address: self.address.clone(),
            reason: match &e {
                deadpool_postgres::PoolError::Backend(pg) => postgres_detail(pg),
                other => other.to_string(),
            },
        })
    }
}

/// Takes the transaction-scoped advisory lock named `scope:key` (say, one organization's
/// channels): transactions taking the same one run their checks and writes in turn. Names
/// are hashed to the lock's key, so a collision only makes two names take turns.
async fn take_turns(
    tx: &deadpool_postgres::Transaction<'_>,
    scope: &str,
    key: &str,
) -> Result<(), StoreError> {
    tx.execute(
        "SELECT pg_advisory_xact_lock(hashtext($1 || ':' || $2))",
        &[&scope, &key],
    )
    .await
    .map_err(pg("take an advisory lock"))?;
    Ok(())
}

/// Maps a client error in `operation` to the store's error.
fn pg(operation: &'static str) -> impl Fn(tokio_postgres::Error) -> StoreError {
    move |source| StoreError::Postgres { operation, source }
}

fn retryable(e: &tokio_postgres::Error) -> bool {
    matches!(
        e.code(),
        Some(c) if *c == SqlState::T_R_SERIALIZATION_FAILURE || *c == SqlState::T_R_DEADLOCK_DETECTED
    )
}

/// `host:port/database` of a connection config.
fn describe(config: &tokio_postgres::Config) -> String {
    use tokio_postgres::config::Host;
    let hosts: Vec<String> = config
        .get_hosts()
        .iter()
        .enumerate()
        .map(|(i, host)| {
            let port = config
                .get_ports()
                .get(i)
                .or(config.get_ports().first())
                .copied()
                .unwrap_or(5432);
            match host {
                Host::Tcp(name) => format!("{name}:{port}"),
                Host::Unix(path) => format!("{}:{port}", path.display()),
            }
        })
        .collect();
    format!(
        "{}/{}",
        if hosts.is_empty() {
            "localhost:5432".to_owned()
        } else {
            hosts.join(",")
        },
        config.get_dbname().unwrap_or("")
    )
}

/// Column `i` of a row. A column of another type than the statement gives is the
/// store's own bug; it is reported, not panicked on.
fn col<'a, T: tokio_postgres::types::FromSql<'a>>(
    row: &'a tokio_postgres::Row,
    i: usize,
) -> Result<T, StoreError> {
    row.try_get(i).map_err(pg("read a column"))
}

/// A `bigint` column the store writes from a `u64`.
fn col_u64(row: &tokio_postgres::Row, i: usize) -> Result<u64, StoreError> {
    Ok(col::<i64>(row, i)?.max(0) as u64)
}

/// A record's JSON, for a `jsonb` column written as `$n::text::jsonb`.
fn encode<T: serde::Serialize>(
    kind: &'static str,
    id: &str,
    value: &T,
) -> Result<String, StoreError> {
    serde_json::to_string(value).map_err(|source| StoreError::Encode {
        kind,
        id: id.to_owned(),
        source,
    })
}

/// A record from a `jsonb` column read as `record::text`.
fn decode<T: serde::de::DeserializeOwned>(
    kind: &'static str,
    id: &str,
    text: &str,
) -> Result<T, StoreError> {
    serde_json::from_str(text).map_err(|source| StoreError::Corrupt {
        kind,
        id: id.to_owned(),
        source,
    })
}

/// A `u64` of a record (a sequence number, an occurrence) as PostgreSQL's `bigint`.
fn big(kind: &'static str, field: &'static str, n: u64) -> Result<i64, StoreError> {
    i64::try_from(n).map_err(|_| StoreError::invalid(kind, field, "larger than 2^63 - 1"))
}

/// A lease's length in whole milliseconds, as the statements take it; at least one, at
/// most a year (longer is not a lease).
fn lease_millis(ttl: Duration) -> i64 {
    const YEAR_MS: u128 = 365 * 24 * 3600 * 1000;
    ttl.as_millis().clamp(1, YEAR_MS) as i64
}
