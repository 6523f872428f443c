//! Script generation: write RouterOS scripts from a prompt, and summarize them
//! (`yardmaster:generator@1.1.0`: `plugin` and `chat`).
//!
//! Implement [`Generator`] and [`Chat`] on a type and export it with
//! [`export_generator!`](crate::export_generator).

use std::io;

pub use crate::bindings::generator::exports::yardmaster::generator::chat::{
    Guest as Chat, Reply, Turn, Usage,
};
pub use crate::bindings::generator::exports::yardmaster::generator::plugin::{
    GenerateError, Generated, Guest as Generator, Request,
};
use crate::net::NetError;

impl Request {
    /// The first value of the context fact `name` (`routeros-version`, `board`, ...).
    pub fn fact(&self, name: &str) -> Option<&str> {
        self.context
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
    }
}

impl From<NetError> for GenerateError {
    fn from(err: NetError) -> Self {
        match err {
            NetError::Denied(m) => Self::Denied(m),
            NetError::Dns(m)
            | NetError::Refused(m)
            | NetError::Timeout(m)
            | NetError::Reset(m)
            | NetError::Tls(m)
            | NetError::Io(m) => Self::Unavailable(m),
            NetError::TooLarge(m) => Self::Other(m),
        }
    }
}

impl From<io::Error> for GenerateError {
    fn from(err: io::Error) -> Self {
        NetError::from(err).into()
    }
}
