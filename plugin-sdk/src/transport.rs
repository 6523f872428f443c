//! Transports reach routers and hosts (`yardmaster:transport@1.2.0`: `plugin`, `ports` and `guard`).
//!
//! Implement [`Transport`] on a type and export it with
//! [`export_transport!`](crate::export_transport); the crate-level documentation has a
//! complete example. Every call receives the [`Target`] site it is for.

use std::io;
use std::time::Duration;

pub use crate::bindings::transport::exports::yardmaster::transport::guard::Armed;
pub use crate::bindings::transport::exports::yardmaster::transport::plugin::{
    Attributes, BackupResult, CommandReply, Guest as Transport, ProbeResult, Target, TlsSettings,
    TransportError, Trap,
};
use crate::net::{NetError, TlsOptions};

/// The dead-man rollback (`yardmaster:transport/guard`, contract 1.2): a transport that
/// can arm one implements this and exports itself with `rollback` in
/// [`export_transport!`](crate::export_transport); one that cannot leaves it out, and
/// the engine refuses `rollback_after` on its sites.
pub trait Rollback {
    /// Saves a backup on the device, then schedules its restore `seconds` from now, both
    /// under `name`.
    fn arm(target: Target, name: String, seconds: u32) -> Result<Armed, TransportError>;
    /// Removes the scheduled restore and the backup, on a new connection.
    fn disarm(target: Target, armed: Armed) -> Result<(), TransportError>;
}

impl Target {
    /// The port to dial: the site's own, or `default` when the site leaves it at 0.
    pub fn port_or(&self, default: u16) -> u16 {
        if self.port == 0 { default } else { self.port }
    }

    /// The connection time limit, or `default` when the site leaves it at 0.
    pub fn connect_timeout_or(&self, default: Duration) -> Duration {
        millis_or(self.connect_timeout_ms, default)
    }

    /// The reply time limit, or `default` when the site leaves it at 0.
    pub fn reply_timeout_or(&self, default: Duration) -> Duration {
        millis_or(self.reply_timeout_ms, default)
    }

    /// The first value of the transport-specific site option `name`.
    pub fn option(&self, name: &str) -> Option<&str> {
        self.options
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
    }

    /// The TLS options for the host's connection to this site, when the site uses TLS.
    /// The name verified defaults to the site's address.
    pub fn tls_options(&self) -> Option<TlsOptions> {
        self.tls.as_ref().map(|settings| TlsOptions {
            server_name: settings.server_name.clone(),
            pinned_sha256: settings.pinned_sha256.clone(),
            verify: settings.verify,
            timeout_ms: self.connect_timeout_ms,
        })
    }
}

fn millis_or(ms: u32, default: Duration) -> Duration {
    if ms == 0 {
        default
    } else {
        Duration::from_millis(u64::from(ms))
    }
}

impl CommandReply {
    /// A reply carrying `rows` and an empty `!done`.
    pub fn from_rows(rows: Vec<Attributes>) -> Self {
        Self {
            rows,
            done: Vec::new(),
            empty: false,
        }
    }
}

impl From<NetError> for TransportError {
    fn from(err: NetError) -> Self {
        match err {
            NetError::Denied(m) => Self::Denied(m),
            // An address that does not resolve is unreachable as far as the site goes.
            NetError::Dns(m) | NetError::Refused(m) => Self::Refused(m),
            NetError::Timeout(m) => Self::Timeout(m),
            NetError::Reset(m) => Self::Reset(m),
            NetError::Tls(m) => Self::Tls(m),
            NetError::TooLarge(m) | NetError::Io(m) => Self::Other(m),
        }
    }
}

impl From<io::Error> for TransportError {
    fn from(err: io::Error) -> Self {
        NetError::from(err).into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target() -> Target {
        Target {
            site_id: "core-1".into(),
            address: "192.0.2.1".into(),
            port: 0,
            username: "admin".into(),
            password: String::new(),
            tls: Some(TlsSettings {
                verify: true,
                pinned_sha256: None,
                server_name: None,
            }),
            connect_timeout_ms: 0,
            reply_timeout_ms: 2500,
            options: vec![("mode".into(), "fast".into())],
        }
    }

    #[test]
    fn defaults_fill_zeroes() {
        let t = target();
        assert_eq!(t.port_or(8728), 8728);
        assert_eq!(
            t.connect_timeout_or(Duration::from_secs(5)),
            Duration::from_secs(5)
        );
        assert_eq!(
            t.reply_timeout_or(Duration::from_secs(5)),
            Duration::from_millis(2500)
        );
        assert_eq!(t.option("mode"), Some("fast"));
        assert_eq!(t.option("other"), None);
        assert_eq!(t.tls_options(), Some(TlsOptions::default()));
    }

    #[test]
    fn io_errors_become_transport_errors() {
        let denied = io::Error::from(NetError::Denied("not granted".into()));
        assert_eq!(
            TransportError::from(denied),
            TransportError::Denied("not granted".into())
        );
        let eof = io::Error::new(io::ErrorKind::UnexpectedEof, "closed");
        assert_eq!(
            TransportError::from(eof),
            TransportError::Reset("closed".into())
        );
    }
}
