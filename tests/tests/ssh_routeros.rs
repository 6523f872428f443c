//! The SSH transport's RouterOS side, driving the real binary against a simulated
//! router behind an SSH server that answers as RouterOS does (`SSH-2.0-ROSSSH`): a
//! small russh server here takes the login and hands each exec request's text to the
//! simulated router's console, which is what RouterOS does with `ssh router "script"`.
//!
//! What it shows: the platform is told from the version line, the login name carries
//! `+cet1024w`, a password login works, a multi-line script runs whole, output that
//! reports a RouterOS error fails the job though the exit status is 0, and a backup is
//! the `/export` text.

use std::borrow::Cow;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};

use russh::keys::PrivateKey;
use russh::keys::ssh_key::private::Ed25519Keypair;
use russh::server::{self, Auth, ChannelOpenHandle, Msg, Session};
use russh::{Channel, ChannelId, SshId};
use serde_json::{Value, json};
use yardmaster::simulate::{Profile, Router};
use yardmaster_tests::{Engine, EngineOptions, eventually, fleet};

const PASSWORD: &str = "ros-ssh-password";

/// The RouterOS face of one simulated router.
#[derive(Clone)]
struct RouterOsSsh {
    router: &'static Router,
    logins: Arc<Mutex<Vec<String>>>,
}

impl server::Handler for RouterOsSsh {
    type Error = russh::Error;

    async fn auth_password(&mut self, user: &str, password: &str) -> Result<Auth, Self::Error> {
        if let Ok(mut logins) = self.logins.lock() {
            logins.push(user.to_owned());
        }
        // RouterOS strips the console options after `+`; this one insists on them, so
        // the test sees the plugin sends them.
        Ok(if user == "admin+cet1024w" && password == PASSWORD {
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
        // RouterOS ends an exec with status 0 even when the script failed.
        session.exit_status_request(channel, 0)?;
        session.eof(channel)?;
        session.close(channel)?;
        Ok(())
    }
}

/// Serves SSH for `router` on a free loopback port until the runtime ends.
async fn serve(router: &'static Router) -> (SocketAddr, Arc<Mutex<Vec<String>>>) {
    let listener = tokio::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("address");
    let config = Arc::new(server::Config {
        server_id: SshId::Standard(Cow::Borrowed("SSH-2.0-ROSSSH")),
        keys: vec![PrivateKey::from(Ed25519Keypair::from_seed(&[7; 32]))],
        auth_rejection_time: std::time::Duration::from_millis(10),
        auth_rejection_time_initial: Some(std::time::Duration::ZERO),
        ..server::Config::default()
    });
    let logins = Arc::new(Mutex::new(Vec::new()));
    let handler = RouterOsSsh {
        router,
        logins: logins.clone(),
    };
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let (config, handler) = (config.clone(), handler.clone());
            tokio::spawn(async move {
                if let Ok(session) = server::run_stream(config, stream, handler).await {
                    let _ = session.await;
                }
            });
        }
    });
    (addr, logins)
}

fn run_job(engine: &Engine, site: &str, body: Value) -> Value {
    let jobs = |engine: &Engine| -> Vec<Value> {
        engine
            .get(&format!("/api/routers/{site}/jobs"))
            .ok()
            .and_then(|r| r.body["data"].as_array().cloned())
            .unwrap_or_default()
    };
    let seen: Vec<Value> = jobs(engine).iter().map(|j| j["id"].clone()).collect();
    let submitted = engine
        .post(&format!("/api/asynchronous/{site}"), &body)
        .expect("submit");
    assert!(
        submitted.status == 200 || submitted.status == 202,
        "{}",
        submitted.text
    );
    eventually("the job to end", || {
        let job = jobs(engine)
            .into_iter()
            .find(|j| !seen.contains(&j["id"]))?;
        if job["status"] != "completed" && job["status"] != "failed" {
            return None;
        }
        let id = job["id"].as_str()?.to_owned();
        let shown = engine.get(&format!("/api/jobs/{id}")).ok()?;
        Some(shown.body["data"].clone())
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routeros_over_ssh_logs_in_with_its_options_and_reads_errors_from_the_output() {
    // Leaked so the SSH tasks may hold the router for the rest of the test.
    let fleet = Box::leak(Box::new(
        fleet(Ipv4Addr::new(127, 62, 0, 1), 1, Profile::V7_18, PASSWORD).await,
    ));
    let router: &'static Router = fleet.router(0);
    let (addr, logins) = serve(router).await;
    let engine = Engine::start(EngineOptions {
        bundled: true,
        ..EngineOptions::default()
    });
    // No platform: the plugin tells RouterOS by the version line.
    let id = engine.add_site(&json!({
        "name": "ros-ssh",
        "address": "127.0.0.1",
        "port": addr.port(),
        "transport": "ssh",
        "username": "admin",
        "password": PASSWORD,
    }));

    let script = ":log info \"over ssh\"\n/system identity set name=edge-ssh\n";
    let done = run_job(
        &engine,
        &id,
        json!({"description": "ros", "script": script, "make_backup": true}),
    );
    assert_eq!(done["status"], "completed", "{done}\n{}", engine.log());
    assert!(router.log_messages().iter().any(|m| m == "over ssh"));
    assert_eq!(router.identity(), "edge-ssh");
    let logins_seen = logins.lock().map(|l| l.clone()).unwrap_or_default();
    assert!(!logins_seen.is_empty());
    assert!(
        logins_seen.iter().all(|u| u == "admin+cet1024w"),
        "{logins_seen:?}"
    );
    // The backup taken before the script is the `/export` text, with the name the
    // router had then.
    assert_eq!(done["has_backup"], true, "{done}");
    let backup = done["backup"].as_str().unwrap_or_default();
    assert!(
        backup.contains("/system identity") && backup.contains("set name=router-0"),
        "{done}"
    );

    // A RouterOS error in the output fails the job, though the exit status was 0.
    let failed = run_job(
        &engine,
        &id,
        json!({"description": "ros", "script": "/frobnicate now\n"}),
    );
    assert_eq!(failed["status"], "failed", "{failed}");
    assert_eq!(failed["error"]["code"], "script", "{failed}");
    let message = failed["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("bad command name"), "{message}");

    // The site learned the server's host key on first use.
    let site = engine.get(&format!("/sites/{id}")).expect("site").body;
    let keys = site["ssh"]["host_keys"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert_eq!(keys.len(), 1, "{site}");
    assert!(keys[0].as_str().unwrap_or_default().starts_with("SHA256:"));
}
