//! Script sources: where community scripts come from
//! (`yardmaster:script-source@1.1.0`: `plugin` and `catalog`).
//!
//! Implement [`ScriptSource`] and [`Catalog`] on a type and export it with
//! [`export_script_source!`](crate::export_script_source).

use std::io;

pub use crate::bindings::script_source::exports::yardmaster::script_source::catalog::{
    Entry, Guest as Catalog, Owner, Repository,
};
pub use crate::bindings::script_source::exports::yardmaster::script_source::plugin::{
    Fetched, Guest as ScriptSource, ScriptMeta, SourceError,
};
use crate::net::NetError;

impl From<NetError> for SourceError {
    fn from(err: NetError) -> Self {
        match err {
            NetError::Denied(m) => Self::Denied(m),
            NetError::TooLarge(m) => Self::TooLarge(m),
            NetError::Dns(m)
            | NetError::Refused(m)
            | NetError::Timeout(m)
            | NetError::Reset(m)
            | NetError::Tls(m)
            | NetError::Io(m) => Self::Unavailable(m),
        }
    }
}

impl From<io::Error> for SourceError {
    fn from(err: io::Error) -> Self {
        NetError::from(err).into()
    }
}
