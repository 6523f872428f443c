//! SSH in front of a simulated router (`yardmaster simulate --ssh-port PORT`), answering
//! as RouterOS does: version line `SSH-2.0-ROSSSH`, password login for the fleet's user
//! (console options after `+` in the login name are accepted and recorded), and each
//! exec request's text run as one console script, whose output comes back with exit
//! status 0 whatever it reports, as RouterOS does. No shell and no pty.
//!
//! One ed25519 host key, made when the fleet starts, serves every router. Faults and
//! offline periods apply to the API ports only.

use std::borrow::Cow;
use std::sync::Arc;

use russh::keys::{HashAlg, PrivateKey};
use russh::server::{self, Auth, ChannelOpenHandle, Msg, Session};
use russh::{Channel, ChannelId, SshId};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;

use super::{Router, lock, until};

/// The server side every router shares.
pub(super) struct SshServer {
    pub config: Arc<server::Config>,
    /// The host key's OpenSSH fingerprint (`SHA256:...`).
    pub fingerprint: String,
}

impl SshServer {
    pub(super) fn new() -> Result<SshServer, String> {
        use ring::rand::SecureRandom;
        let mut seed = [0u8; 32];
        ring::rand::SystemRandom::new()
            .fill(&mut seed)
            .map_err(|_| "no randomness for the SSH host key".to_owned())?;
        let key = PrivateKey::from(russh::keys::ssh_key::private::Ed25519Keypair::from_seed(
            &seed,
        ));
        let fingerprint = key.public_key().fingerprint(HashAlg::Sha256).to_string();
        let config = server::Config {
            server_id: SshId::Standard(Cow::Borrowed("SSH-2.0-ROSSSH")),
            keys: vec![key],
            auth_rejection_time: std::time::Duration::from_millis(100),
            auth_rejection_time_initial: Some(std::time::Duration::ZERO),
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
}

impl server::Handler for Console {
    type Error = russh::Error;

    async fn auth_password(&mut self, user: &str, password: &str) -> Result<Auth, Self::Error> {
        lock(&self.router.ssh_logins).push(user.to_owned());
        let name = user.split('+').next().unwrap_or_default();
        let shared = &self.router.shared;
        Ok(if name == shared.user && password == shared.password {
            Auth::Accept
        } else {
            Auth::reject()
        })
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
        session.channel_success(channel)?;
        let output = self.router.run_script(&String::from_utf8_lossy(data));
        session.data(channel, output.into_bytes())?;
        session.exit_status_request(channel, 0)?;
        session.eof(channel)?;
        session.close(channel)?;
        Ok(())
    }
}

/// Serves SSH for `router` on `listener` until the fleet stops.
pub(super) async fn serve(
    router: Arc<Router>,
    listener: TcpListener,
    config: Arc<server::Config>,
    mut stop: watch::Receiver<bool>,
) {
    let mut sessions = JoinSet::new();
    loop {
        tokio::select! {
            () = until(&mut stop, true) => break,
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else { continue };
                // `/ip service disable ssh`: new connections are closed unanswered.
                if !router.service_enabled("ssh") {
                    continue;
                }
                let console = Console { router: router.clone() };
                let config = config.clone();
                sessions.spawn(async move {
                    if let Ok(session) = server::run_stream(config, stream, console).await {
                        let _ = session.await;
                    }
                });
            }
            Some(_) = sessions.join_next() => {}
        }
    }
    sessions.shutdown().await;
}
