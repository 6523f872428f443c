//! SSH in front of a simulated router (`yardmaster simulate --ssh-port PORT`), answering
//! as RouterOS does: version line `SSH-2.0-ROSSSH`, login as the fleet's user by
//! password or by one of the fleet's authorized public keys (console options after `+`
//! in the login name are accepted and recorded), and each exec request's text run as
//! one console script, whose output comes back with exit status 0 whatever it reports,
//! as RouterOS does. No shell and no pty.
//!
//! The profile decides what the server offers. `6.42` and `6.45` offer only what
//! RouterOS 6 speaks (diffie-hellman-group14-sha1 and group-exchange-sha256, an
//! `ssh-rsa` host key, aes-ctr, hmac-sha1, no strict key exchange); `7.18` offers only
//! modern algorithms (curve25519, an ed25519 host key, AEAD ciphers, etm MACs, strict
//! key exchange). One host key, made when the fleet starts, serves every router.
//!
//! The router's faults apply here as on its API ports: `offline` refuses connections
//! and ends open sessions (the listener is the router task's, see `router_task`),
//! `refuse-login` rejects every login, `delay` holds each exec reply, `fatal` ends the
//! connection at the first exec without an answer, and `drop` sends half the first
//! exec's output and then ends the connection without an exit status.

use std::borrow::Cow;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use russh::keys::ssh_key::private::{Ed25519Keypair, RsaKeypair};
use russh::keys::{Algorithm, HashAlg, PrivateKey, PublicKey};
use russh::server::{self, Auth, ChannelOpenHandle, Msg, Session};
use russh::{Channel, ChannelId, Disconnect, Preferred, SshId, cipher, kex, mac};
use tokio::net::TcpStream;
use tokio::sync::watch;

use super::{Profile, Router, lock, until};

/// The size of the RSA host key the RouterOS 6 profiles show, as RouterOS 6 makes it.
const RSA_HOST_KEY_BITS: usize = 2048;

/// The server side every router shares.
pub(super) struct SshServer {
    pub config: Arc<server::Config>,
    /// The host key's OpenSSH fingerprint (`SHA256:...`).
    pub fingerprint: String,
}

/// What a RouterOS 6 router offers, and nothing newer.
fn routeros6_algorithms() -> Preferred {
    Preferred {
        kex: Cow::Borrowed(&[kex::DH_G14_SHA1, kex::DH_GEX_SHA256]),
        key: Cow::Borrowed(&[Algorithm::Rsa { hash: None }]),
        host_key_certificates: Cow::Borrowed(&[]),
        cipher: Cow::Borrowed(&[cipher::AES_128_CTR, cipher::AES_256_CTR]),
        mac: Cow::Borrowed(&[mac::HMAC_SHA1]),
        compression: Cow::Borrowed(&[russh::compression::NONE]),
    }
}

/// What a RouterOS 7 router offers, without any of the RouterOS 6 set.
fn routeros7_algorithms() -> Preferred {
    Preferred {
        kex: Cow::Borrowed(&[
            kex::CURVE25519,
            kex::CURVE25519_PRE_RFC_8731,
            kex::EXTENSION_SUPPORT_AS_SERVER,
            kex::EXTENSION_OPENSSH_STRICT_KEX_AS_SERVER,
        ]),
        key: Cow::Borrowed(&[Algorithm::Ed25519]),
        host_key_certificates: Cow::Borrowed(&[]),
        cipher: Cow::Borrowed(&[
            cipher::CHACHA20_POLY1305,
            cipher::AES_256_GCM,
            cipher::AES_128_GCM,
        ]),
        mac: Cow::Borrowed(&[mac::HMAC_SHA256_ETM, mac::HMAC_SHA512_ETM]),
        compression: Cow::Borrowed(&[russh::compression::NONE]),
    }
}

/// Reads OpenSSH `authorized_keys` text: one key a line, `#` comments and blank lines
/// skipped. Options before the key type are not supported.
pub(super) fn parse_authorized_keys(text: &str) -> Result<Vec<PublicKey>, String> {
    text.lines()
        .map(str::trim)
        .enumerate()
        .filter(|(_, l)| !l.is_empty() && !l.starts_with('#'))
        .map(|(n, l)| {
            PublicKey::from_openssh(l).map_err(|e| format!("authorized key on line {}: {e}", n + 1))
        })
        .collect()
}

impl SshServer {
    pub(super) fn new(profile: Profile) -> Result<SshServer, String> {
        let (key, preferred) = match profile {
            Profile::V6_42 | Profile::V6_45 => {
                let rsa = RsaKeypair::random(&mut russh::keys::key::safe_rng(), RSA_HOST_KEY_BITS)
                    .map_err(|e| format!("cannot make the RSA host key: {e}"))?;
                (PrivateKey::from(rsa), routeros6_algorithms())
            }
            Profile::V7_18 => {
                use ring::rand::SecureRandom;
                let mut seed = [0u8; 32];
                ring::rand::SystemRandom::new()
                    .fill(&mut seed)
                    .map_err(|_| "no randomness for the SSH host key".to_owned())?;
                let key = PrivateKey::from(Ed25519Keypair::from_seed(&seed));
                (key, routeros7_algorithms())
            }
        };
        let fingerprint = key.public_key().fingerprint(HashAlg::Sha256).to_string();
        let config = server::Config {
            server_id: SshId::Standard(Cow::Borrowed("SSH-2.0-ROSSSH")),
            keys: vec![key],
            preferred,
            auth_rejection_time: std::time::Duration::from_millis(100),
            auth_rejection_time_initial: Some(std::time::Duration::ZERO),
            nodelay: true,
            ..server::Config::default()
        };
        Ok(SshServer {
            config: Arc::new(config),
            fingerprint,
        })
    }
}

#[derive(Clone)]
struct Console {
    router: Arc<Router>,
    /// Whether an exec was answered on this connection, for faults aimed at the first.
    answered: Arc<AtomicBool>,
}

impl Console {
    fn user_ok(&self, user: &str) -> bool {
        lock(&self.router.ssh_logins).push(user.to_owned());
        let name = user.split('+').next().unwrap_or_default();
        name == self.router.shared.user && !self.router.faults.refuse_login
    }

    fn knows(&self, key: &PublicKey) -> bool {
        self.router
            .shared
            .ssh_authorized_keys
            .iter()
            .any(|k| k.key_data() == key.key_data())
    }

    fn judge(&self, ok: bool) -> Auth {
        let stats = &self.router.stats;
        if ok {
            stats.logins.fetch_add(1, Ordering::Relaxed);
            Auth::Accept
        } else {
            stats.failed_logins.fetch_add(1, Ordering::Relaxed);
            Auth::reject()
        }
    }
}

impl server::Handler for Console {
    type Error = russh::Error;

    async fn auth_password(&mut self, user: &str, password: &str) -> Result<Auth, Self::Error> {
        let ok = self.user_ok(user) && password == self.router.shared.password;
        Ok(self.judge(ok))
    }

    async fn auth_publickey_offered(
        &mut self,
        _user: &str,
        offer: server::PublicKeyOffer<'_>,
    ) -> Result<Auth, Self::Error> {
        // Only whether the key could work; the login is judged once it is proven.
        Ok(if self.knows(offer.public_key) {
            Auth::Accept
        } else {
            Auth::reject()
        })
    }

    async fn auth_publickey(
        &mut self,
        user: &str,
        key: server::VerifiedPublicKey<'_>,
    ) -> Result<Auth, Self::Error> {
        let ok = self.user_ok(user) && self.knows(key.public_key);
        Ok(self.judge(ok))
    }

    async fn channel_open_session(
        &mut self,
        _channel: Channel<Msg>,
        reply: ChannelOpenHandle,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        reply.accept().await;
        Ok(())
    }

    async fn exec_request(
        &mut self,
        channel: ChannelId,
        data: &[u8],
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        let router = &self.router;
        router.stats.commands.fetch_add(1, Ordering::Relaxed);
        let first = !self.answered.swap(true, Ordering::Relaxed);
        if first && router.faults.fatal {
            session.disconnect(Disconnect::ByApplication, "session terminated", "")?;
            return Ok(());
        }
        session.channel_success(channel)?;
        let output = router.run_script(&String::from_utf8_lossy(data));
        if let Some(delay) = router.faults.delay {
            tokio::time::sleep(delay).await;
        }
        if first && router.faults.drop_mid_sentence {
            let half = output.len() / 2;
            session.data(channel, output.as_bytes()[..half].to_vec())?;
            session.disconnect(Disconnect::ConnectionLost, "connection dropped", "")?;
            return Ok(());
        }
        session.data(channel, output.into_bytes())?;
        session.exit_status_request(channel, 0)?;
        session.eof(channel)?;
        session.close(channel)?;
        Ok(())
    }
}

/// Serves one SSH connection until the client leaves, the router goes offline or the
/// fleet stops; the last two end the session with a disconnect.
pub(super) async fn serve(
    stream: TcpStream,
    router: Arc<Router>,
    config: Arc<server::Config>,
    mut stop: watch::Receiver<bool>,
) {
    router.stats.connections.fetch_add(1, Ordering::Relaxed);
    let mut online = router.online.subscribe();
    let console = Console {
        router: router.clone(),
        answered: Arc::new(AtomicBool::new(false)),
    };
    let Ok(session) = server::run_stream(config, stream, console).await else {
        return;
    };
    let handle = session.handle();
    tokio::pin!(session);
    tokio::select! {
        _ = &mut session => return,
        () = until(&mut stop, true) => {}
        () = until(&mut online, false) => {}
    }
    let _ = handle
        .disconnect(
            Disconnect::ByApplication,
            "router offline".into(),
            String::new(),
        )
        .await;
    let _ = session.await;
}
