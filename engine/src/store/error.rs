//! The store's one error type. Every variant names the record it concerns, so the API can
//! map it to a status (404, 409, 422) and an operator can read it without a backtrace.

use super::records::JobStatus;

/// What went wrong in the store, and on which record.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{kind} not found: {id}")]
    NotFound { kind: &'static str, id: String },

    #[error("A schedule with the same name already exists: {name}")]
    ScheduleNameTaken { name: String },

    #[error("A site with the same name already exists: {name}")]
    SiteNameTaken { name: String },

    #[error("job {id}: cannot go from {from} to {to}")]
    IllegalTransition {
        id: String,
        from: JobStatus,
        to: JobStatus,
    },

    #[error("schedule {id}: {reason}")]
    ScheduleState { id: String, reason: String },

    /// A launch found that what would run is no longer what was approved; the schedule
    /// went back to `unauthorized`.
    #[error(
        "schedule {id}: not launched, its approval no longer covers what would run ({}); it needs a new approval",
        reasons.join("; ")
    )]
    ApprovalVoid { id: String, reasons: Vec<String> },

    /// A site that schedules still target or unfinished jobs still need.
    #[error(
        "site {name} is still needed{}{}; cancel those or take the site out of them first",
        in_use_schedules(schedules),
        in_use_jobs(*unfinished_jobs)
    )]
    SiteInUse {
        name: String,
        /// `description (id)` of each schedule that may still run on the site.
        schedules: Vec<String>,
        unfinished_jobs: u64,
    },

    /// The script or its acknowledged risks do not pass the lint policy.
    #[error(transparent)]
    LintPolicy(#[from] crate::lint::policy::PolicyError),

    #[error("{kind} {field}: {reason}")]
    Invalid {
        kind: &'static str,
        field: &'static str,
        reason: String,
    },

    #[error(
        "the database at {path} has schema version {found}, newer than this engine's {supported}; \
         upgrade the engine or restore a copy made by this version"
    )]
    SchemaTooNew {
        path: String,
        found: u64,
        supported: u64,
    },

    #[error("the database at {path} has schema version {found}, which this engine cannot read")]
    SchemaUnknown { path: String, found: u64 },

    #[error("credential key {path}: {reason}")]
    Key { path: String, reason: String },

    #[error("site {site}: its stored password cannot be decrypted with this data dir's key")]
    Decrypt { site: String },

    /// The site has no password to log in with: none was given, or it was cleared when
    /// the site's endpoint changed. Nothing connects to the site until one is set.
    #[error(
        "site {name} ({site}) has no `password`, so the engine will not log in to it: set \
         `password` with PUT /sites/{site} (a stored password is cleared when the site's \
         address, port, transport or TLS settings change)"
    )]
    PasswordMissing { site: String, name: String },

    #[error("job {job}: its stored backup cannot be decrypted with this data dir's key")]
    BackupUnreadable { job: String },

    #[error("{kind} {id}: stored record is unreadable: {source}")]
    Corrupt {
        kind: &'static str,
        id: String,
        source: serde_json::Error,
    },

    #[error("{kind} {id}: cannot encode record: {source}")]
    Encode {
        kind: &'static str,
        id: String,
        source: serde_json::Error,
    },

    #[error("data dir {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },

    #[error("database: {0}")]
    Db(#[from] redb::Error),

    /// The PostgreSQL server could not be reached (or no connection could be had in time).
    #[error("PostgreSQL at {address} cannot be reached: {reason}")]
    Unreachable { address: String, reason: String },

    /// A statement failed in PostgreSQL; the server's own message is part of the text.
    #[error("PostgreSQL, {operation}: {}", postgres_detail(source))]
    Postgres {
        operation: &'static str,
        #[source]
        source: tokio_postgres::Error,
    },

    /// An engine recorded work on something it no longer holds: its claim lapsed and the
    /// work went to another engine (or was settled).
    #[error(
        "{kind} {id} is not held by engine {engine}; its claim lapsed and it went on without it"
    )]
    NotHeld {
        kind: &'static str,
        id: String,
        engine: String,
    },

    /// A write of a lease holder that has lost the lease: another engine holds it now (or
    /// nobody does), with a larger fencing token.
    #[error(
        "lease {lease}: fencing token {token} is stale ({}); another engine took the lease over",
        match current { Some(c) => format!("the lease is at token {c}"), None => "nobody holds the lease".to_owned() }
    )]
    Fenced {
        lease: String,
        token: u64,
        current: Option<u64>,
    },
}

/// A PostgreSQL error as an operator reads it: the server's message, its SQLSTATE and
/// detail when the server sent one, else the client's own description.
pub(crate) fn postgres_detail(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => match db.detail() {
            Some(detail) => format!("{} ({}; {detail})", db.message(), db.code().code()),
            None => format!("{} ({})", db.message(), db.code().code()),
        },
        None => match std::error::Error::source(e) {
            Some(cause) => format!("{e}: {cause}"),
            None => e.to_string(),
        },
    }
}

macro_rules! from_redb {
    ($($t:ty),*) => {$(
        impl From<$t> for StoreError {
            fn from(e: $t) -> Self {
                StoreError::Db(e.into())
            }
        }
    )*};
}
from_redb!(
    redb::StorageError,
    redb::TableError,
    redb::TransactionError,
    redb::CommitError,
    redb::DatabaseError
);

impl StoreError {
    pub(crate) fn not_found(kind: &'static str, id: impl Into<String>) -> Self {
        StoreError::NotFound {
            kind,
            id: id.into(),
        }
    }

    pub(crate) fn invalid(
        kind: &'static str,
        field: &'static str,
        reason: impl Into<String>,
    ) -> Self {
        StoreError::Invalid {
            kind,
            field,
            reason: reason.into(),
        }
    }

    /// The same failure for another caller of a shared commit: an I/O error keeps its OS
    /// code (a full disk stays a full disk), anything else keeps its message.
    pub(crate) fn copy_for_another(&self, path: &std::path::Path) -> StoreError {
        let io = match self {
            StoreError::Db(redb::Error::Io(io)) | StoreError::Io { source: io, .. } => Some(io),
            _ => None,
        };
        let source = match io.and_then(std::io::Error::raw_os_error) {
            Some(code) => std::io::Error::from_raw_os_error(code),
            None => std::io::Error::other(self.to_string()),
        };
        StoreError::Io {
            path: path.display().to_string(),
            source,
        }
    }

    /// True when the database could not be reached or its connection was lost (a
    /// restart, a failover, a network cut): the same operation may succeed once it is
    /// back. Whether a commit whose connection broke took effect is not known, so what
    /// is run again must be refused when it already happened (the store's transitions
    /// are: a job cannot end twice).
    pub fn is_transient(&self) -> bool {
        match self {
            StoreError::Unreachable { .. } => true,
            StoreError::Postgres { source, .. } => {
                source.is_closed()
                    || source.code().is_some_and(|code| {
                        let code = code.code();
                        // Class 08: connection exception; 57P01-57P03: the server is
                        // shutting down, crashed, or not accepting connections yet.
                        code.starts_with("08") || matches!(code, "57P01" | "57P02" | "57P03")
                    })
                    || source.code().is_none()
            }
            _ => false,
        }
    }

    /// True for the errors a client caused by naming something that is already taken.
    pub fn is_conflict(&self) -> bool {
        matches!(
            self,
            StoreError::ScheduleNameTaken { .. }
                | StoreError::SiteNameTaken { .. }
                | StoreError::IllegalTransition { .. }
                | StoreError::ScheduleState { .. }
                | StoreError::ApprovalVoid { .. }
        )
    }
}

fn in_use_schedules(schedules: &[String]) -> String {
    match schedules.len() {
        0 => String::new(),
        1 => format!(" by schedule {}", schedules[0]),
        _ => format!(" by schedules {}", schedules.join(", ")),
    }
}

fn in_use_jobs(n: u64) -> String {
    match n {
        0 => String::new(),
        1 => " by 1 unfinished job".to_owned(),
        n => format!(" by {n} unfinished jobs"),
    }
}
