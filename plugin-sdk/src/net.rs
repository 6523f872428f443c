//! Connections made by the engine on the plugin's behalf, with TLS done by the engine,
//! so a plugin carries no cryptography of its own. Every connection goes through the
//! allow-list the operator granted the plugin.
//!
//! [`Connection`] is a blocking byte stream implementing [`std::io::Read`] and
//! [`std::io::Write`], so protocol code written against those traits works unchanged:
//!
//! ```no_run
//! use std::io::{Read, Write};
//! use yardmaster_plugin_sdk::net::{Connection, TlsOptions};
//!
//! # fn main() -> std::io::Result<()> {
//! let mut conn = Connection::connect("router.example.net", 8729, &TlsOptions::default())?;
//! conn.write_all(b"\x06/login\x00")?;
//! let mut reply = [0u8; 512];
//! let n = conn.read(&mut reply)?;
//! # let _ = n;
//! # Ok(())
//! # }
//! ```
//!
//! Errors arrive as [`NetError`]; through the `std::io` traits they become
//! [`std::io::Error`]s from which `NetError::from` recovers the original, and every
//! kind's error type converts from both with `?`.
//!
//! Outside the engine (native unit tests) every connection attempt fails with
//! [`NetError::Io`].

use std::fmt;
use std::io::{self, Read, Write};
use std::time::Duration;

use crate::bindings::host::yardmaster::host::tls::Connection as HostConnection;
pub use crate::bindings::host::yardmaster::host::tls::{NetError, TlsOptions};

/// The most the host moves in one read or write.
const MAX_TRANSFER: usize = 1024 * 1024;

/// A TCP connection opened by the engine, plain or TLS.
///
/// Dropping it closes the connection.
pub struct Connection {
    inner: HostConnection,
    read_timeout: Option<Duration>,
    write_timeout: Option<Duration>,
    /// Bytes the host handed over beyond what the caller's buffer could take; served
    /// before asking the host again.
    surplus: Vec<u8>,
    surplus_start: usize,
}

impl Connection {
    /// Opens TCP to `host:port` and completes a TLS handshake.
    pub fn connect(host: &str, port: u16, options: &TlsOptions) -> Result<Self, NetError> {
        open_tls(host, port, options).map(Self::wrap)
    }

    /// Opens plain TCP to `host:port`, to be upgraded later with
    /// [`start_tls`](Self::start_tls) if the protocol asks for it. `timeout` bounds
    /// the connection attempt; `None` means the host default (10 s).
    pub fn connect_plain(
        host: &str,
        port: u16,
        timeout: Option<Duration>,
    ) -> Result<Self, NetError> {
        open_plain(host, port, timeout_ms(timeout)).map(Self::wrap)
    }

    fn wrap(inner: HostConnection) -> Self {
        Self {
            inner,
            read_timeout: None,
            write_timeout: None,
            surplus: Vec::new(),
            surplus_start: 0,
        }
    }

    /// Upgrades a plain connection to TLS in place (SMTP `STARTTLS`, for example).
    ///
    /// Bytes already received but not yet read are discarded first: anything the peer
    /// sent before the handshake is not protected by it.
    pub fn start_tls(&mut self, options: &TlsOptions) -> Result<(), NetError> {
        self.surplus.clear();
        self.surplus_start = 0;
        self.inner.start_tls(options)
    }

    /// SHA-256 (lowercase hex) of the peer's certificate once TLS is up.
    pub fn peer_sha256(&self) -> Option<String> {
        self.inner.peer_sha256()
    }

    /// Bounds each read; `None` waits without limit, within the call's own deadline.
    pub fn set_read_timeout(&mut self, timeout: Option<Duration>) {
        self.read_timeout = timeout;
    }

    /// Bounds each write; `None` waits without limit, within the call's own deadline.
    pub fn set_write_timeout(&mut self, timeout: Option<Duration>) {
        self.write_timeout = timeout;
    }

    /// The limit set by [`set_read_timeout`](Self::set_read_timeout).
    pub fn read_timeout(&self) -> Option<Duration> {
        self.read_timeout
    }

    /// The limit set by [`set_write_timeout`](Self::set_write_timeout).
    pub fn write_timeout(&self) -> Option<Duration> {
        self.write_timeout
    }

    /// Closes the connection now rather than when it is dropped.
    pub fn close(self) {
        self.inner.close();
    }
}

impl fmt::Debug for Connection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Connection")
            .field("handle", &self.inner.handle())
            .field("read_timeout", &self.read_timeout)
            .field("write_timeout", &self.write_timeout)
            .finish_non_exhaustive()
    }
}

impl Read for Connection {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        if self.surplus_start < self.surplus.len() {
            let n = copy_from(&self.surplus[self.surplus_start..], buf);
            self.surplus_start += n;
            return Ok(n);
        }
        let max = buf.len().min(MAX_TRANSFER);
        // `max` is at most MAX_TRANSFER, which fits in a u32.
        let max = u32::try_from(max).unwrap_or(u32::MAX);
        let data = self.inner.read(max, timeout_ms(self.read_timeout))?;
        let n = copy_from(&data, buf);
        if n < data.len() {
            self.surplus = data;
            self.surplus_start = n;
        }
        Ok(n)
    }
}

impl Write for Connection {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        let chunk = &buf[..buf.len().min(MAX_TRANSFER)];
        self.inner.write(chunk, timeout_ms(self.write_timeout))?;
        Ok(chunk.len())
    }

    /// The host writes every byte before `write` returns; there is nothing to flush.
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

fn copy_from(source: &[u8], buf: &mut [u8]) -> usize {
    let n = source.len().min(buf.len());
    buf[..n].copy_from_slice(&source[..n]);
    n
}

/// Milliseconds for the host, where 0 means "no limit" or "host default"; a
/// non-zero duration never rounds down to 0.
fn timeout_ms(timeout: Option<Duration>) -> u32 {
    match timeout {
        None => 0,
        Some(d) => u32::try_from(d.as_millis()).unwrap_or(u32::MAX).max(1),
    }
}

#[cfg(target_arch = "wasm32")]
fn open_tls(host: &str, port: u16, options: &TlsOptions) -> Result<HostConnection, NetError> {
    HostConnection::connect(host, port, options)
}

#[cfg(target_arch = "wasm32")]
fn open_plain(host: &str, port: u16, timeout_ms: u32) -> Result<HostConnection, NetError> {
    HostConnection::connect_plain(host, port, timeout_ms)
}

#[cfg(not(target_arch = "wasm32"))]
fn open_tls(_host: &str, _port: u16, _options: &TlsOptions) -> Result<HostConnection, NetError> {
    Err(outside_engine())
}

#[cfg(not(target_arch = "wasm32"))]
fn open_plain(_host: &str, _port: u16, _timeout_ms: u32) -> Result<HostConnection, NetError> {
    Err(outside_engine())
}

#[cfg(not(target_arch = "wasm32"))]
fn outside_engine() -> NetError {
    NetError::Io("host connections exist only inside the Yardmaster engine".to_owned())
}

impl Default for TlsOptions {
    /// Verify the chain against the host's trusted roots and the host name, with the
    /// host's default handshake time limit.
    fn default() -> Self {
        Self {
            server_name: None,
            pinned_sha256: None,
            verify: true,
            timeout_ms: 0,
        }
    }
}

impl TlsOptions {
    /// Verifies the certificate against `name` instead of the host connected to.
    #[must_use]
    pub fn with_server_name(mut self, name: impl Into<String>) -> Self {
        self.server_name = Some(name.into());
        self
    }

    /// Accepts exactly the certificate with this SHA-256 (hex, colons allowed),
    /// whoever signed it.
    #[must_use]
    pub fn with_pinned_sha256(mut self, sha256: impl Into<String>) -> Self {
        self.pinned_sha256 = Some(sha256.into());
        self
    }

    /// Skips chain verification. Without a pin this accepts any certificate, so do it
    /// only when the operator asked for it.
    #[must_use]
    pub fn without_verification(mut self) -> Self {
        self.verify = false;
        self
    }

    /// Bounds the handshake.
    #[must_use]
    pub fn with_handshake_timeout(mut self, timeout: Duration) -> Self {
        self.timeout_ms = timeout_ms(Some(timeout));
        self
    }
}

impl NetError {
    /// The host's description of what went wrong.
    pub fn message(&self) -> &str {
        match self {
            Self::Denied(m)
            | Self::Dns(m)
            | Self::Refused(m)
            | Self::Timeout(m)
            | Self::Reset(m)
            | Self::Tls(m)
            | Self::TooLarge(m)
            | Self::Io(m) => m,
        }
    }

    fn label(&self) -> &'static str {
        match self {
            Self::Denied(_) => "denied",
            Self::Dns(_) => "name resolution failed",
            Self::Refused(_) => "refused",
            Self::Timeout(_) => "timed out",
            Self::Reset(_) => "reset",
            Self::Tls(_) => "tls",
            Self::TooLarge(_) => "too large",
            Self::Io(_) => "i/o",
        }
    }

    fn io_kind(&self) -> io::ErrorKind {
        match self {
            Self::Denied(_) => io::ErrorKind::PermissionDenied,
            Self::Dns(_) => io::ErrorKind::NotFound,
            Self::Refused(_) => io::ErrorKind::ConnectionRefused,
            Self::Timeout(_) => io::ErrorKind::TimedOut,
            Self::Reset(_) => io::ErrorKind::ConnectionReset,
            Self::Tls(_) => io::ErrorKind::InvalidData,
            Self::TooLarge(_) => io::ErrorKind::InvalidInput,
            Self::Io(_) => io::ErrorKind::Other,
        }
    }
}

/// Carries a [`NetError`] inside an [`io::Error`] with a readable message, so that
/// `NetError::from(io_error)` can give the original back.
#[derive(Debug)]
struct HostError(NetError);

impl fmt::Display for HostError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.0.label(), self.0.message())
    }
}

impl std::error::Error for HostError {}

impl From<NetError> for io::Error {
    fn from(err: NetError) -> Self {
        io::Error::new(err.io_kind(), HostError(err))
    }
}

impl From<io::Error> for NetError {
    /// Gives back the host's error carried by an `io::Error` from a [`Connection`];
    /// any other `io::Error` (from `std::net`, say) is classified by its kind.
    fn from(err: io::Error) -> Self {
        let kind = err.kind();
        if err.get_ref().is_some_and(|inner| inner.is::<HostError>()) {
            return match err.into_inner().map(|inner| inner.downcast::<HostError>()) {
                Some(Ok(host)) => host.0,
                // Not reached: the check above saw a `HostError`.
                _ => NetError::Io(kind.to_string()),
            };
        }
        let message = err.to_string();
        match kind {
            io::ErrorKind::PermissionDenied => NetError::Denied(message),
            io::ErrorKind::ConnectionRefused
            | io::ErrorKind::HostUnreachable
            | io::ErrorKind::NetworkUnreachable
            | io::ErrorKind::NetworkDown
            | io::ErrorKind::AddrNotAvailable => NetError::Refused(message),
            io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock => NetError::Timeout(message),
            io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::BrokenPipe
            | io::ErrorKind::NotConnected
            | io::ErrorKind::UnexpectedEof => NetError::Reset(message),
            _ => NetError::Io(message),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timeouts_never_round_to_no_limit() {
        assert_eq!(timeout_ms(None), 0);
        assert_eq!(timeout_ms(Some(Duration::ZERO)), 1);
        assert_eq!(timeout_ms(Some(Duration::from_micros(10))), 1);
        assert_eq!(timeout_ms(Some(Duration::from_secs(3))), 3000);
        assert_eq!(timeout_ms(Some(Duration::from_secs(u64::MAX))), u32::MAX);
    }

    #[test]
    fn host_errors_survive_a_trip_through_io_error() {
        let original = NetError::Denied("10.0.0.1:8728 is not in the allow-list".into());
        let io_err = io::Error::from(original.clone());
        assert_eq!(io_err.kind(), io::ErrorKind::PermissionDenied);
        assert_eq!(
            io_err.to_string(),
            "denied: 10.0.0.1:8728 is not in the allow-list"
        );
        assert_eq!(NetError::from(io_err), original);
    }

    #[test]
    fn other_io_errors_are_classified_by_kind() {
        let refused = io::Error::from(io::ErrorKind::ConnectionRefused);
        assert!(matches!(NetError::from(refused), NetError::Refused(_)));
        let eof = io::Error::new(io::ErrorKind::UnexpectedEof, "closed mid-reply");
        assert_eq!(
            NetError::from(eof),
            NetError::Reset("closed mid-reply".into())
        );
        let odd = io::Error::other("odd");
        assert_eq!(NetError::from(odd), NetError::Io("odd".into()));
    }

    #[test]
    fn natively_connections_fail_cleanly() {
        let err = Connection::connect_plain("127.0.0.1", 1, None).expect_err("no host natively");
        assert!(matches!(err, NetError::Io(_)));
    }

    #[test]
    fn tls_options_builders() {
        let options = TlsOptions::default()
            .with_server_name("core-1")
            .with_pinned_sha256("ab:cd")
            .without_verification()
            .with_handshake_timeout(Duration::from_secs(2));
        assert_eq!(
            options,
            TlsOptions {
                server_name: Some("core-1".into()),
                pinned_sha256: Some("ab:cd".into()),
                verify: false,
                timeout_ms: 2000,
            }
        );
    }
}
