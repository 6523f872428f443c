//! SSH sessions made by the host (`yardmaster:host/ssh@1.1.0`, with the `ssh` feature).
//!
//! The engine does the cryptography (russh): key exchange, the host-key check against
//! the site's pinned or first-seen key, and the login with the site's password or the
//! private key it holds for the site, which never enters the plugin. A plugin opens a
//! [`Session`], runs commands with [`Session::exec`] and reads what they left.
//!
//! ```no_run
//! use yardmaster_plugin_sdk::ssh::{Auth, ConnectOptions, HostKeyPolicy, Session};
//!
//! let options = ConnectOptions {
//!     username: "admin".into(),
//!     auth: Auth::SiteKey,
//!     host_keys: HostKeyPolicy { pinned: vec![], accept_first: false },
//!     timeout_ms: 0,
//! };
//! let session = Session::connect("192.0.2.1", 22, &options)?;
//! let out = session.exec("uname -srm", None, 0, 0)?;
//! assert_eq!(out.exit_status, Some(0));
//! # Ok::<(), yardmaster_plugin_sdk::ssh::SshError>(())
//! ```

pub use crate::bindings::host_ssh::yardmaster::host::ssh::{
    Auth, ConnectOptions, ExecOutput, HostKeyMismatch, HostKeyPolicy, NegotiationFailure, Session,
    SshError,
};
use crate::transport::TransportError;

impl SshError {
    /// The error's text, whichever kind it is.
    pub fn message(&self) -> String {
        match self {
            SshError::Denied(m)
            | SshError::Dns(m)
            | SshError::Refused(m)
            | SshError::Timeout(m)
            | SshError::HostKeyUnknown(m)
            | SshError::AuthFailed(m)
            | SshError::Protocol(m)
            | SshError::Closed(m)
            | SshError::TooLarge(m) => m.clone(),
            SshError::HostKeyChanged(m) => format!(
                "host key changed: expected {}, the server showed {}",
                m.expected.join(" or "),
                m.presented
            ),
            SshError::AlgorithmNegotiation(n) => format!(
                "no common {} algorithm: ours {}, theirs {}",
                n.kind,
                n.ours.join(","),
                n.theirs.join(",")
            ),
        }
    }
}

/// Failures before login (refused, denied, host key, authentication) map to the
/// transport errors that say nothing was sent.
impl From<SshError> for TransportError {
    fn from(e: SshError) -> TransportError {
        let message = e.message();
        match e {
            SshError::Denied(_) => TransportError::Denied(message),
            SshError::Dns(_) | SshError::Refused(_) => TransportError::Refused(message),
            SshError::Timeout(_) => TransportError::Timeout(message),
            SshError::HostKeyUnknown(_) | SshError::HostKeyChanged(_) => {
                TransportError::Tls(message)
            }
            SshError::AuthFailed(_) => TransportError::Auth(message),
            SshError::AlgorithmNegotiation(_) | SshError::Protocol(_) => {
                TransportError::Protocol(message)
            }
            SshError::Closed(_) => TransportError::Reset(message),
            SshError::TooLarge(_) => TransportError::Other(message),
        }
    }
}
