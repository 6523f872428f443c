//! Notification channels: webhook, email (`yardmaster:notifier/plugin@1.0.0`).
//!
//! Implement [`Notifier`] on a type and export it with
//! [`export_notifier!`](crate::export_notifier). The engine retries a delivery that
//! fails with [`NotifyError::Unavailable`] and gives up on the others.

use std::io;

pub use crate::bindings::notifier::exports::yardmaster::notifier::plugin::{
    Channel, Event, Guest as Notifier, NotifyError, Receipt, Recipient,
};
use crate::net::NetError;

impl Channel {
    /// The first value of the channel setting `name`.
    pub fn setting(&self, name: &str) -> Option<&str> {
        self.settings
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
    }
}

impl From<NetError> for NotifyError {
    fn from(err: NetError) -> Self {
        match err {
            NetError::Denied(m) => Self::Denied(m),
            // Everything else may clear up: a later attempt can succeed.
            NetError::Dns(m)
            | NetError::Refused(m)
            | NetError::Timeout(m)
            | NetError::Reset(m)
            | NetError::Tls(m)
            | NetError::TooLarge(m)
            | NetError::Io(m) => Self::Unavailable(m),
        }
    }
}

impl From<io::Error> for NotifyError {
    fn from(err: io::Error) -> Self {
        NetError::from(err).into()
    }
}
