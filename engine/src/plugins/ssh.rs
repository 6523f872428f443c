//! SSH sessions the host makes for plugins (`yardmaster:host/ssh@1.1.0`), the way it
//! makes TLS connections: the cryptography is russh's, in the engine; the plugin says
//! what to run and reads what comes back.
//!
//! Layout: the algorithm lists and the operator's legacy switch ([`Algorithms`]), the
//! site's SSH credentials and host keys as the host holds them for one call
//! ([`SiteSsh`]), the russh handler that judges the host key, and the WIT resource
//! [`Session`] with its limits. Every session is opened through
//! [`HostState::open`](super::host::HostState), so the plugin's allow-list and the
//! operator's `[sites] allow` apply exactly as for a TLS connection.

use std::borrow::Cow;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use russh::client;
use russh::keys::{Algorithm, EcdsaCurve, HashAlg, PrivateKeyWithHashAlg, PublicKeyOrCertificate};
use russh::{ChannelMsg, Preferred, cipher, kex, mac};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use wasmtime::component::Resource;

use super::bindings::host::yardmaster::host::{ssh, tls};
use super::host::HostState;

const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
const DEFAULT_EXEC_TIMEOUT: Duration = Duration::from_secs(60);
const DEFAULT_MAX_OUTPUT: usize = 1024 * 1024;
/// The most of each of stdout and stderr one exec may ask the host to hold.
const MAX_OUTPUT: usize = 16 * 1024 * 1024;
/// The most stdin one exec may carry.
const MAX_STDIN: usize = 4 * 1024 * 1024;
/// A server identification line is at most 255 bytes (RFC 4253 4.2); lines before it
/// are allowed, so a little more is watched.
const MAX_ID_CAPTURE: usize = 8 * 1024;

/// Which algorithms the host offers. Modern ones come first; the set RouterOS 6 needs
/// is offered after them, so it is chosen only when the server offers nothing better,
/// and the operator can turn it off (`[ssh] legacy_algorithms = false`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Algorithms {
    pub legacy: bool,
}

impl Default for Algorithms {
    fn default() -> Self {
        Algorithms { legacy: true }
    }
}

const MODERN_KEX: &[kex::Name] = &[
    kex::CURVE25519,
    kex::CURVE25519_PRE_RFC_8731,
    kex::MLKEM768X25519_SHA256,
    kex::DH_G16_SHA512,
    kex::DH_G14_SHA256,
];
const LEGACY_KEX: &[kex::Name] = &[kex::DH_GEX_SHA256, kex::DH_G14_SHA1];
/// Not algorithms: they ask for extension info and strict key exchange (the Terrapin fix).
const KEX_EXTENSIONS: &[kex::Name] = &[
    kex::EXTENSION_SUPPORT_AS_CLIENT,
    kex::EXTENSION_OPENSSH_STRICT_KEX_AS_CLIENT,
];

const MODERN_KEYS: &[Algorithm] = &[
    Algorithm::Ed25519,
    Algorithm::Ecdsa {
        curve: EcdsaCurve::NistP256,
    },
    Algorithm::Ecdsa {
        curve: EcdsaCurve::NistP384,
    },
    Algorithm::Ecdsa {
        curve: EcdsaCurve::NistP521,
    },
    Algorithm::Rsa {
        hash: Some(HashAlg::Sha512),
    },
    Algorithm::Rsa {
        hash: Some(HashAlg::Sha256),
    },
];
/// `ssh-rsa`: RSA signed with SHA-1.
const LEGACY_KEYS: &[Algorithm] = &[Algorithm::Rsa { hash: None }];

const MODERN_CIPHERS: &[cipher::Name] = &[
    cipher::CHACHA20_POLY1305,
    cipher::AES_256_GCM,
    cipher::AES_128_GCM,
];
const LEGACY_CIPHERS: &[cipher::Name] = &[
    cipher::AES_256_CTR,
    cipher::AES_192_CTR,
    cipher::AES_128_CTR,
];

const MODERN_MACS: &[mac::Name] = &[
    mac::HMAC_SHA512_ETM,
    mac::HMAC_SHA256_ETM,
    mac::HMAC_SHA512,
    mac::HMAC_SHA256,
];
const LEGACY_MACS: &[mac::Name] = &[mac::HMAC_SHA1_ETM, mac::HMAC_SHA1];

impl Algorithms {
    pub(crate) fn preferred(&self) -> Preferred {
        fn list<T: Clone>(modern: &[T], legacy: &[T], with_legacy: bool) -> Vec<T> {
            let mut all = modern.to_vec();
            if with_legacy {
                all.extend_from_slice(legacy);
            }
            all
        }
        let mut kex = list(MODERN_KEX, LEGACY_KEX, self.legacy);
        kex.extend_from_slice(KEX_EXTENSIONS);
        Preferred {
            kex: Cow::Owned(kex),
            key: Cow::Owned(list(MODERN_KEYS, LEGACY_KEYS, self.legacy)),
            host_key_certificates: Cow::Borrowed(&[]),
            cipher: Cow::Owned(list(MODERN_CIPHERS, LEGACY_CIPHERS, self.legacy)),
            mac: Cow::Owned(list(MODERN_MACS, LEGACY_MACS, self.legacy)),
            compression: Cow::Owned(vec![russh::compression::NONE]),
        }
    }

    fn config(&self) -> Result<client::Config, String> {
        // Group exchange: never a group under 2048 bits, whatever the server offers.
        let gex = client::GexParams::new(2048, 3072, 8192).map_err(|e| e.to_string())?;
        Ok(client::Config {
            preferred: self.preferred(),
            gex,
            nodelay: true,
            ..client::Config::default()
        })
    }
}

/// Called with the first host key seen for a site that has none pinned; it stores the
/// key, or says why it could not (another call stored a different one first).
pub(crate) type RememberKey = dyn Fn(String) -> std::pin::Pin<Box<dyn Future<Output = Result<(), String>> + Send>>
    + Send
    + Sync;

/// What the host holds for one call that serves a site: the site's private key (never
/// shown to the plugin) and its host keys.
pub(crate) struct SiteSsh {
    pub site_id: String,
    /// The key text (OpenSSH or PEM) and its passphrase.
    pub private_key: Option<(String, Option<String>)>,
    /// Pinned fingerprints (`SHA256:...`); empty means trust on first use.
    pub host_keys: Vec<String>,
    pub remember: Option<Box<RememberKey>>,
    /// Set when a session of this call was refused for its host key, so the job's error
    /// says so whatever the plugin reports.
    pub refused: Mutex<Option<HostKeyRefusal>>,
}

impl std::fmt::Debug for SiteSsh {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SiteSsh")
            .field("site_id", &self.site_id)
            .field("has_private_key", &self.private_key.is_some())
            .field("host_keys", &self.host_keys)
            .finish_non_exhaustive()
    }
}

impl SiteSsh {
    /// How a session of this call was refused for its host key, if one was.
    pub(crate) fn refusal(&self) -> Option<HostKeyRefusal> {
        match self.refused.lock() {
            Ok(r) => r.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    fn note(&self, refusal: HostKeyRefusal) {
        match self.refused.lock() {
            Ok(mut r) => *r = Some(refusal),
            Err(poisoned) => *poisoned.into_inner() = Some(refusal),
        }
    }
}

/// Why a host key was not accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum HostKeyRefusal {
    Unknown {
        presented: String,
    },
    Changed {
        expected: Vec<String>,
        presented: String,
    },
}

impl std::fmt::Display for HostKeyRefusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HostKeyRefusal::Unknown { presented } => write!(
                f,
                "the server's host key {presented} is not pinned and first use was not accepted"
            ),
            HostKeyRefusal::Changed {
                expected,
                presented,
            } => write!(
                f,
                "the server's host key changed: expected {}, the server showed {presented}; \
                 nothing was sent (set the site's ssh.host_keys to accept the new key)",
                expected.join(" or ")
            ),
        }
    }
}

/// The decision on a host key, made before anything is sent.
async fn judge(
    presented: &str,
    asked: &ssh::HostKeyPolicy,
    site: Option<&SiteSsh>,
) -> Result<(), HostKeyRefusal> {
    let matches = |keys: &[String]| keys.iter().any(|k| k.trim() == presented);
    if let Some(site) = site
        && !site.host_keys.is_empty()
    {
        return if matches(&site.host_keys) {
            Ok(())
        } else {
            Err(HostKeyRefusal::Changed {
                expected: site.host_keys.clone(),
                presented: presented.to_owned(),
            })
        };
    }
    if !asked.pinned.is_empty() {
        return if matches(&asked.pinned) {
            Ok(())
        } else {
            Err(HostKeyRefusal::Changed {
                expected: asked.pinned.clone(),
                presented: presented.to_owned(),
            })
        };
    }
    // A site with no key pinned is trusted on first use: the key is stored, and every
    // later session must show it.
    if let Some(site) = site {
        if let Some(remember) = &site.remember {
            return remember(presented.to_owned()).await.map_err(|stored| {
                HostKeyRefusal::Changed {
                    expected: vec![stored],
                    presented: presented.to_owned(),
                }
            });
        }
        return Ok(());
    }
    if asked.accept_first {
        return Ok(());
    }
    Err(HostKeyRefusal::Unknown {
        presented: presented.to_owned(),
    })
}

/// The fingerprint of a public key in OpenSSH's form, `SHA256:` and unpadded base64.
pub(crate) fn fingerprint(key: &russh::keys::PublicKey) -> String {
    key.fingerprint(HashAlg::Sha256).to_string()
}

/// Checks the host key for russh, and remembers what it saw.
struct Handler {
    policy: ssh::HostKeyPolicy,
    site: Option<Arc<SiteSsh>>,
    seen: Arc<Mutex<Option<Result<String, HostKeyRefusal>>>>,
}

impl client::Handler for Handler {
    type Error = russh::Error;

    async fn check_server_key(
        &mut self,
        server_public_key: &PublicKeyOrCertificate,
    ) -> Result<bool, Self::Error> {
        let PublicKeyOrCertificate::PublicKey { key, .. } = server_public_key else {
            // Certificates are never asked for (no certificate algorithms are offered).
            return Ok(false);
        };
        let presented = fingerprint(key);
        let verdict = judge(&presented, &self.policy, self.site.as_deref()).await;
        let accepted = verdict.is_ok();
        if let (Err(refusal), Some(site)) = (&verdict, &self.site) {
            site.note(refusal.clone());
        }
        let seen = verdict.map(|()| presented);
        match self.seen.lock() {
            Ok(mut s) => *s = Some(seen),
            Err(poisoned) => *poisoned.into_inner() = Some(seen),
        }
        Ok(accepted)
    }
}

/// The TCP stream, with the server's identification line copied aside as it passes:
/// russh reads it but does not hand it out, and a plugin tells RouterOS by it.
struct Watched {
    inner: TcpStream,
    seen: Arc<Mutex<Vec<u8>>>,
}

impl AsyncRead for Watched {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = &polled
            && let Ok(mut seen) = self.seen.lock()
            && seen.len() < MAX_ID_CAPTURE
        {
            let new = &buf.filled()[before..];
            let room = MAX_ID_CAPTURE - seen.len();
            seen.extend_from_slice(&new[..new.len().min(room)]);
        }
        polled
    }
}

impl AsyncWrite for Watched {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// The `SSH-` line among the first bytes the server sent.
fn server_version(seen: &[u8]) -> String {
    String::from_utf8_lossy(seen)
        .lines()
        .find(|line| line.starts_with("SSH-"))
        .map(|line| line.trim_end_matches('\r').to_owned())
        .unwrap_or_default()
}

/// A session a plugin opened through the host.
pub struct Session {
    handle: Option<client::Handle<Handler>>,
    endpoint: String,
    server_version: String,
    host_key: String,
}

fn from_net(e: tls::NetError) -> ssh::SshError {
    match e {
        tls::NetError::Denied(m) => ssh::SshError::Denied(m),
        tls::NetError::Dns(m) => ssh::SshError::Dns(m),
        tls::NetError::Refused(m) => ssh::SshError::Refused(m),
        tls::NetError::Timeout(m) => ssh::SshError::Timeout(m),
        tls::NetError::Reset(m) => ssh::SshError::Closed(m),
        tls::NetError::TooLarge(m) => ssh::SshError::TooLarge(m),
        tls::NetError::Tls(m) | tls::NetError::Io(m) => ssh::SshError::Protocol(m),
    }
}

/// russh's error as the plugin sees it; `seen` tells a refused host key from the rest.
fn from_russh(
    endpoint: &str,
    e: russh::Error,
    seen: Option<Result<String, HostKeyRefusal>>,
) -> ssh::SshError {
    use russh::Error as E;
    match (e, seen) {
        (
            E::UnknownKey,
            Some(Err(HostKeyRefusal::Changed {
                expected,
                presented,
            })),
        ) => ssh::SshError::HostKeyChanged(ssh::HostKeyMismatch {
            expected,
            presented,
        }),
        (E::UnknownKey, Some(Err(refusal @ HostKeyRefusal::Unknown { .. }))) => {
            ssh::SshError::HostKeyUnknown(format!("{endpoint}: {refusal}"))
        }
        (E::NoCommonAlgo { kind, ours, theirs }, _) => {
            ssh::SshError::AlgorithmNegotiation(ssh::NegotiationFailure {
                kind: format!("{kind:?}").to_lowercase(),
                ours,
                theirs,
            })
        }
        (E::ConnectionTimeout | E::InactivityTimeout | E::KeepaliveTimeout, _) => {
            ssh::SshError::Timeout(format!("{endpoint}: the server stopped answering"))
        }
        (E::HUP | E::Disconnect | E::SendError, _) => {
            ssh::SshError::Closed(format!("{endpoint}: the server closed the session"))
        }
        (E::IO(io), _) => match io.kind() {
            std::io::ErrorKind::UnexpectedEof
            | std::io::ErrorKind::ConnectionReset
            | std::io::ErrorKind::BrokenPipe => ssh::SshError::Closed(format!("{endpoint}: {io}")),
            _ => ssh::SshError::Protocol(format!("{endpoint}: {io}")),
        },
        (other, _) => ssh::SshError::Protocol(format!("{endpoint}: {other}")),
    }
}

fn duration_or(ms: u32, default: Duration) -> Duration {
    if ms == 0 {
        default
    } else {
        Duration::from_millis(u64::from(ms))
    }
}

impl HostState {
    fn session(&mut self, this: &Resource<Session>) -> wasmtime::Result<&mut Session> {
        Ok(self.table.get_mut(this)?)
    }

    async fn connect_ssh(
        &mut self,
        host: &str,
        port: u16,
        options: ssh::ConnectOptions,
    ) -> Result<Session, ssh::SshError> {
        let limit = duration_or(options.timeout_ms, DEFAULT_CONNECT_TIMEOUT);
        let endpoint = format!("{host}:{port}");
        // A site's host keys are the engine's to enforce; a call that serves a site but
        // was not handed them (an API command, say) gets no SSH at all rather than the
        // plugin's own, laxer policy.
        if self.ssh_site.is_none() && self.policy.serves_site() {
            return Err(ssh::SshError::Denied(format!(
                "{endpoint}: SSH to a site is opened only for its jobs, which carry its host keys"
            )));
        }
        let config = self
            .ssh_algorithms
            .config()
            .map_err(ssh::SshError::Protocol)?;
        // The key is read before anything is opened, so a bad key costs no connection.
        let key = match &options.auth {
            ssh::Auth::Password(_) => None,
            ssh::Auth::SiteKey => {
                // The site's key logs in to the site, not to whatever else the plugin's
                // allow-list may grant.
                let bare = |a: &str| a.trim_start_matches('[').trim_end_matches(']').to_owned();
                if self.policy.site_address().map(bare) != Some(bare(host)) {
                    return Err(ssh::SshError::Denied(format!(
                        "{endpoint}: the site's private key is used only for the site's own address"
                    )));
                }
                let Some((text, passphrase)) =
                    self.ssh_site.as_ref().and_then(|s| s.private_key.as_ref())
                else {
                    return Err(ssh::SshError::AuthFailed(
                        "no private key is stored for this site".into(),
                    ));
                };
                let key =
                    russh::keys::decode_secret_key(text, passphrase.as_deref()).map_err(|e| {
                        ssh::SshError::AuthFailed(format!("the site's private key: {e}"))
                    })?;
                Some(Arc::new(key))
            }
        };
        let tcp = self.open(host, port, limit).await.map_err(from_net)?;
        let id = Arc::new(Mutex::new(Vec::new()));
        let seen = Arc::new(Mutex::new(None));
        let handler = Handler {
            policy: options.host_keys.clone(),
            site: self.ssh_site.clone(),
            seen: seen.clone(),
        };
        let stream = Watched {
            inner: tcp,
            seen: id.clone(),
        };
        let seen_now = || seen.lock().ok().and_then(|s| s.clone());
        let method = if key.is_some() { "key" } else { "password" };
        let login = async {
            let mut handle = client::connect_stream(Arc::new(config), stream, handler)
                .await
                .map_err(|e| from_russh(&endpoint, e, seen_now()))?;
            let result = match key {
                None => {
                    let ssh::Auth::Password(password) = &options.auth else {
                        unreachable_auth()?
                    };
                    handle
                        .authenticate_password(options.username.clone(), password.clone())
                        .await
                }
                Some(key) => {
                    let hash = handle
                        .best_supported_rsa_hash()
                        .await
                        .map_err(|e| from_russh(&endpoint, e, seen_now()))?
                        .flatten();
                    handle
                        .authenticate_publickey(
                            options.username.clone(),
                            PrivateKeyWithHashAlg::new(key, hash),
                        )
                        .await
                }
            }
            .map_err(|e| from_russh(&endpoint, e, seen_now()))?;
            if !result.success() {
                return Err(ssh::SshError::AuthFailed(format!(
                    "{endpoint}: authentication failed: the server refused the {method} \
                     of user `{}`",
                    options.username
                )));
            }
            Ok(handle)
        };
        let outcome = tokio::time::timeout(limit, login).await;
        let handle = match outcome {
            Err(_) => {
                self.connections = self.connections.saturating_sub(1);
                return Err(ssh::SshError::Timeout(format!(
                    "{endpoint}: key exchange and login took longer than {limit:?}"
                )));
            }
            Ok(Err(e)) => {
                self.connections = self.connections.saturating_sub(1);
                return Err(e);
            }
            Ok(Ok(handle)) => handle,
        };
        let server_version = server_version(&id.lock().map(|v| v.clone()).unwrap_or_default());
        let host_key = seen_now().and_then(Result::ok).unwrap_or_default();
        Ok(Session {
            handle: Some(handle),
            endpoint,
            server_version,
            host_key,
        })
    }
}

/// Password and key logins are the only two; kept as an error, not a panic.
fn unreachable_auth<T>() -> Result<T, ssh::SshError> {
    Err(ssh::SshError::AuthFailed(
        "no credentials to log in with".into(),
    ))
}

/// What an exec collects, capped.
#[derive(Default)]
struct Collected {
    stdout: Vec<u8>,
    stderr: Vec<u8>,
    exit_status: Option<u32>,
    exit_signal: Option<String>,
    truncated: bool,
}

impl Collected {
    fn push(buffer: &mut Vec<u8>, data: &[u8], cap: usize, truncated: &mut bool) {
        let room = cap.saturating_sub(buffer.len());
        if data.len() > room {
            *truncated = true;
        }
        buffer.extend_from_slice(&data[..data.len().min(room)]);
    }
}

fn signal_name(sig: &russh::Sig) -> String {
    match sig {
        russh::Sig::Custom(name) => name.clone(),
        other => format!("{other:?}"),
    }
}

async fn exec(
    handle: &client::Handle<Handler>,
    endpoint: &str,
    command: String,
    stdin: Option<Vec<u8>>,
    cap: usize,
) -> Result<Collected, ssh::SshError> {
    let fail = |e| from_russh(endpoint, e, None);
    let mut channel = handle.channel_open_session().await.map_err(fail)?;
    channel.exec(true, command).await.map_err(fail)?;
    if let Some(stdin) = stdin {
        channel.data_bytes(stdin).await.map_err(fail)?;
    }
    channel.eof().await.map_err(fail)?;
    let mut out = Collected::default();
    while let Some(msg) = channel.wait().await {
        match msg {
            ChannelMsg::Data { data } => {
                Collected::push(&mut out.stdout, &data, cap, &mut out.truncated)
            }
            ChannelMsg::ExtendedData { data, ext: 1 } => {
                Collected::push(&mut out.stderr, &data, cap, &mut out.truncated)
            }
            ChannelMsg::ExitStatus { exit_status } => out.exit_status = Some(exit_status),
            ChannelMsg::ExitSignal { signal_name: s, .. } => {
                out.exit_signal = Some(signal_name(&s))
            }
            ChannelMsg::Failure => {
                return Err(ssh::SshError::Protocol(format!(
                    "{endpoint}: the server refused to run the command"
                )));
            }
            ChannelMsg::Close => break,
            _ => {}
        }
    }
    Ok(out)
}

impl ssh::Host for HostState {}

impl ssh::HostSession for HostState {
    async fn connect(
        &mut self,
        host: String,
        port: u16,
        options: ssh::ConnectOptions,
    ) -> wasmtime::Result<Result<Resource<Session>, ssh::SshError>> {
        match self.connect_ssh(&host, port, options).await {
            Ok(session) => Ok(Ok(self.table.push(session)?)),
            Err(e) => Ok(Err(e)),
        }
    }

    async fn server_version(&mut self, this: Resource<Session>) -> wasmtime::Result<String> {
        Ok(self.session(&this)?.server_version.clone())
    }

    async fn host_key(&mut self, this: Resource<Session>) -> wasmtime::Result<String> {
        Ok(self.session(&this)?.host_key.clone())
    }

    async fn exec(
        &mut self,
        this: Resource<Session>,
        command: String,
        stdin: Option<Vec<u8>>,
        timeout_ms: u32,
        max_output: u32,
    ) -> wasmtime::Result<Result<ssh::ExecOutput, ssh::SshError>> {
        if let Some(stdin) = &stdin
            && stdin.len() > MAX_STDIN
        {
            return Ok(Err(ssh::SshError::TooLarge(format!(
                "stdin may carry at most {MAX_STDIN} bytes, not {}",
                stdin.len()
            ))));
        }
        let cap = match max_output as usize {
            0 => DEFAULT_MAX_OUTPUT,
            n => n.min(MAX_OUTPUT),
        };
        let limit = duration_or(timeout_ms, DEFAULT_EXEC_TIMEOUT);
        let session = self.session(&this)?;
        let endpoint = session.endpoint.clone();
        let Some(handle) = session.handle.as_ref() else {
            return Ok(Err(ssh::SshError::Closed(format!(
                "{endpoint}: the session is closed"
            ))));
        };
        let outcome =
            tokio::time::timeout(limit, exec(handle, &endpoint, command, stdin, cap)).await;
        Ok(match outcome {
            Err(_) => Err(ssh::SshError::Timeout(format!(
                "{endpoint}: the command did not end within {limit:?}"
            ))),
            Ok(Err(e)) => Err(e),
            Ok(Ok(out)) => Ok(ssh::ExecOutput {
                stdout: out.stdout,
                stderr: out.stderr,
                exit_status: out.exit_status,
                exit_signal: out.exit_signal,
                truncated: out.truncated,
            }),
        })
    }

    async fn close(&mut self, this: Resource<Session>) -> wasmtime::Result<()> {
        let session = self.session(&this)?;
        if let Some(handle) = session.handle.take() {
            self.connections = self.connections.saturating_sub(1);
            goodbye(handle).await;
        }
        Ok(())
    }

    async fn drop(&mut self, this: Resource<Session>) -> wasmtime::Result<()> {
        let session = self.table.delete(this)?;
        if let Some(handle) = session.handle {
            self.connections = self.connections.saturating_sub(1);
            goodbye(handle).await;
        }
        Ok(())
    }
}

/// Best effort: a server that is gone already needs no goodbye.
async fn goodbye(handle: client::Handle<Handler>) {
    let bye = handle.disconnect(russh::Disconnect::ByApplication, "", "en");
    let _ = tokio::time::timeout(Duration::from_secs(1), bye).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(pinned: &[&str], accept_first: bool) -> ssh::HostKeyPolicy {
        ssh::HostKeyPolicy {
            pinned: pinned.iter().map(|s| s.to_string()).collect(),
            accept_first,
        }
    }

    fn site(keys: &[&str], store: Option<Arc<Mutex<Vec<String>>>>) -> SiteSsh {
        SiteSsh {
            site_id: "s1".into(),
            private_key: None,
            host_keys: keys.iter().map(|s| s.to_string()).collect(),
            remember: store.map(|store| {
                Box::new(move |fp: String| {
                    store.lock().expect("lock").push(fp);
                    Box::pin(std::future::ready(Ok(())))
                        as std::pin::Pin<Box<dyn Future<Output = Result<(), String>> + Send>>
                }) as Box<RememberKey>
            }),
            refused: Mutex::new(None),
        }
    }

    #[tokio::test]
    async fn a_site_key_wins_over_what_the_plugin_asks() {
        let s = site(&["SHA256:a"], None);
        // The plugin would accept anything; the site's pin still decides.
        let err = judge("SHA256:b", &policy(&["SHA256:b"], true), Some(&s))
            .await
            .expect_err("refused");
        assert_eq!(
            err,
            HostKeyRefusal::Changed {
                expected: vec!["SHA256:a".into()],
                presented: "SHA256:b".into()
            }
        );
        assert!(
            judge("SHA256:a", &policy(&[], false), Some(&s))
                .await
                .is_ok()
        );
    }

    #[tokio::test]
    async fn a_site_without_keys_stores_the_first() {
        let stored = Arc::new(Mutex::new(Vec::new()));
        let s = site(&[], Some(stored.clone()));
        judge("SHA256:first", &policy(&[], false), Some(&s))
            .await
            .expect("first use");
        assert_eq!(
            *stored.lock().expect("lock"),
            vec!["SHA256:first".to_string()]
        );
    }

    #[tokio::test]
    async fn without_a_site_unknown_keys_need_accept_first() {
        let err = judge("SHA256:x", &policy(&[], false), None)
            .await
            .expect_err("refused");
        assert!(matches!(err, HostKeyRefusal::Unknown { .. }));
        assert!(judge("SHA256:x", &policy(&[], true), None).await.is_ok());
        assert!(
            judge("SHA256:x", &policy(&["SHA256:y"], true), None)
                .await
                .is_err()
        );
    }

    #[test]
    fn legacy_algorithms_come_last_and_can_be_left_out() {
        let with = Algorithms { legacy: true }.preferred();
        assert_eq!(with.kex.first(), Some(&kex::CURVE25519));
        let g14 = with
            .kex
            .iter()
            .position(|k| *k == kex::DH_G14_SHA1)
            .expect("offered");
        let modern = with
            .kex
            .iter()
            .position(|k| *k == kex::DH_G14_SHA256)
            .expect("offered");
        assert!(modern < g14);
        assert_eq!(with.cipher.first(), Some(&cipher::CHACHA20_POLY1305));
        assert!(with.mac.contains(&mac::HMAC_SHA1));
        assert!(with.key.contains(&Algorithm::Rsa { hash: None }));

        let without = Algorithms { legacy: false }.preferred();
        assert!(!without.kex.contains(&kex::DH_G14_SHA1));
        assert!(!without.kex.contains(&kex::DH_GEX_SHA256));
        assert!(!without.mac.contains(&mac::HMAC_SHA1));
        assert!(!without.cipher.contains(&cipher::AES_128_CTR));
        assert!(!without.key.contains(&Algorithm::Rsa { hash: None }));
        // Strict key exchange is asked for either way.
        assert!(
            without
                .kex
                .contains(&kex::EXTENSION_OPENSSH_STRICT_KEX_AS_CLIENT)
        );
    }

    #[test]
    fn the_version_line_is_found_after_a_banner() {
        assert_eq!(
            server_version(b"hello\r\nSSH-2.0-ROSSSH\r\n\0\0\0"),
            "SSH-2.0-ROSSSH"
        );
        assert_eq!(server_version(b"garbage"), "");
    }
}
