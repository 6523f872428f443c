//! The simulator driven over real sockets by a minimal client built on the SDK codec.

use std::net::Ipv4Addr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use yardmaster_plugin_sdk::routeros::{Decoder, Reply, challenge_response, encode_sentence};

use super::*;

struct Client {
    stream: TcpStream,
    decoder: Decoder,
}

impl Client {
    async fn connect(addr: SocketAddr) -> Self {
        Self {
            stream: TcpStream::connect(addr).await.expect("connect"),
            decoder: Decoder::new(),
        }
    }

    async fn send(&mut self, words: &[&str]) {
        self.stream
            .write_all(&encode_sentence(words))
            .await
            .expect("write");
    }

    /// The next reply, or None when the router closed the connection.
    async fn reply(&mut self) -> Option<Reply> {
        let mut buf = [0u8; 4096];
        loop {
            if let Some(s) = self.decoder.next_sentence().expect("valid protocol") {
                return Some(Reply::parse(&s).expect("reply word"));
            }
            let n = tokio::time::timeout(Duration::from_secs(10), self.stream.read(&mut buf))
                .await
                .expect("the router answers")
                .unwrap_or(0);
            if n == 0 {
                return None;
            }
            self.decoder.feed(&buf[..n]);
        }
    }

    /// Sends a command and collects replies up to `!done` (or a close).
    async fn call(&mut self, words: &[&str]) -> Vec<Reply> {
        self.send(words).await;
        let mut out = Vec::new();
        while let Some(r) = self.reply().await {
            let end = r.ends_command();
            out.push(r);
            if end {
                break;
            }
        }
        out
    }

    async fn login(addr: SocketAddr, password: &str) -> Self {
        let mut c = Self::connect(addr).await;
        let r = c
            .call(&["/login", "=name=admin", &format!("=password={password}")])
            .await;
        assert!(matches!(r[..], [Reply::Done { .. }]), "{r:?}");
        c
    }
}

fn config(bind: [u8; 4], profile: Profile) -> FleetConfig {
    FleetConfig {
        routers: 2,
        bind: Ipv4Addr::from(bind),
        port: 0,
        tls_port: None,
        profile,
        user: "admin".into(),
        password: "pw".into(),
        faults: Vec::new(),
        ssh_port: None,
        ssh_authorized_keys: Vec::new(),
    }
}

async fn fleet(config: FleetConfig) -> Fleet {
    Fleet::start(config, std::future::pending())
        .await
        .expect("fleet starts")
}

fn rows(replies: &[Reply]) -> Vec<&Attributes> {
    replies
        .iter()
        .filter_map(|r| match r {
            Reply::Re { attributes, .. } => Some(attributes),
            _ => None,
        })
        .collect()
}

use yardmaster_plugin_sdk::routeros::Attributes;

#[tokio::test]
async fn print_add_execute_and_the_log() {
    let fleet = fleet(config([127, 1, 200, 1], Profile::V7_18)).await;
    let addrs = fleet.addresses();
    assert_eq!(addrs[0].ip(), Ipv4Addr::new(127, 1, 200, 1));
    assert_eq!(addrs[1].ip(), Ipv4Addr::new(127, 1, 200, 2));
    let mut c = Client::login(addrs[1], "pw").await;

    let r = c.call(&["/system/identity/print"]).await;
    assert_eq!(rows(&r)[0].get("name"), Some("router-1"));
    // Seed 001's example of a synchronous call.
    let r = c.call(&["/ip/arp/print"]).await;
    let arp = rows(&r);
    assert_eq!(arp.len(), 1);
    assert_eq!(arp[0].get("interface"), Some("ether2"));
    assert_eq!(arp[0].get("dynamic"), Some("true"));
    assert_eq!(arp[0].get("published"), Some("false"));
    let r = c
        .call(&["/system/resource/print", "=.proplist=version,board-name"])
        .await;
    assert_eq!(
        rows(&r)[0].0,
        vec![
            ("version".into(), "7.18.2 (stable)".into()),
            ("board-name".into(), "CHR".into())
        ]
    );

    let r = c
        .call(&[
            "/ip/address/add",
            "=address=10.0.0.1/24",
            "=interface=ether1",
        ])
        .await;
    assert_eq!(
        r,
        vec![Reply::Done {
            tag: None,
            attributes: Attributes(vec![("ret".into(), "*1".into())])
        }]
    );
    let r = c.call(&["/ip/address/print", "?interface=ether1"]).await;
    assert_eq!(rows(&r)[0].get("network"), Some("10.0.0.0"));
    let r = c.call(&["/ip/address/print", "?interface=ether2"]).await;
    assert!(
        matches!(r[..], [Reply::Empty { .. }, Reply::Done { .. }]),
        "{r:?}"
    );

    let r = c
        .call(&[
            "/execute",
            "=script=:log info \"ran\"; :put hello",
            "=as-string=",
        ])
        .await;
    assert_eq!(r[0].attributes().get("ret"), Some("hello\r\n"));
    let r = c
        .call(&["/execute", "=script=:put \"oops", "=as-string="])
        .await;
    assert_eq!(
        r[0].attributes().get("ret"),
        Some("syntax error (line 1 column 6)\r\n")
    );
    assert_eq!(fleet.router(1).log_messages(), ["ran"]);
    assert!(
        fleet.router(0).log_messages().is_empty(),
        "routers keep their own state"
    );

    let r = c.call(&["/ip/adress/print"]).await;
    assert!(
        matches!(
            &r[..],
            [
                Reply::Trap {
                    category: Some(0),
                    ..
                },
                Reply::Done { .. }
            ]
        ),
        "{r:?}"
    );
    let r = c
        .call(&[
            "/ip/address/add",
            "=address=10.0.0.9/24",
            "=interface=ether1",
            "=colour=red",
        ])
        .await;
    assert!(
        matches!(&r[0], Reply::Trap { message, category: Some(1), .. } if message == "unknown parameter colour")
    );

    let r = c.call(&["/export"]).await;
    assert!(
        r[0].attributes()
            .get("ret")
            .is_some_and(|t| t.contains("add address=10.0.0.1/24"))
    );
    let r = c.call(&["/system/backup/save", "=name=nightly"]).await;
    assert!(matches!(r[..], [Reply::Done { .. }]));
    assert!(
        fleet
            .router(1)
            .rows("/file")
            .expect("menu")
            .iter()
            .any(|row| row.iter().any(|(_, v)| v == "nightly.backup"))
    );

    let r = c.call(&["/quit"]).await;
    assert!(matches!(&r[..], [Reply::Fatal { .. }]));
    assert!(c.reply().await.is_none());
    fleet.shutdown().await;
}

#[tokio::test]
async fn logins_per_profile() {
    let fleet6 = fleet(config([127, 1, 201, 1], Profile::V6_42)).await;
    let mut c = Client::connect(fleet6.addresses()[0]).await;
    let r = c.call(&["/login", "=name=admin", "=password=pw"]).await;
    let challenge = r[0]
        .attributes()
        .get("ret")
        .expect("a challenge")
        .to_owned();
    let response = challenge_response(b"pw", &challenge).expect("hex");
    let r = c
        .call(&["/login", "=name=admin", &format!("=response={response}")])
        .await;
    assert!(matches!(r[..], [Reply::Done { .. }]), "{r:?}");
    let r = c.call(&["/interface/print", "?name=none"]).await;
    assert!(
        matches!(r[..], [Reply::Done { .. }]),
        "6.x has no !empty: {r:?}"
    );
    let r = c.call(&["/execute", "=script=:put 1", "=as-string="]).await;
    assert!(
        matches!(&r[0], Reply::Trap { .. }),
        "6.x has no as-string: {r:?}"
    );

    let mut wrong = Client::connect(fleet6.addresses()[0]).await;
    let r = wrong.call(&["/login"]).await;
    let challenge = r[0]
        .attributes()
        .get("ret")
        .expect("a challenge")
        .to_owned();
    let response = challenge_response(b"nope", &challenge).expect("hex");
    let r = wrong
        .call(&["/login", "=name=admin", &format!("=response={response}")])
        .await;
    assert!(
        matches!(&r[..], [Reply::Trap { .. }, Reply::Done { .. }]),
        "{r:?}"
    );
    fleet6.shutdown().await;

    let fleet7 = fleet(config([127, 1, 202, 1], Profile::V7_18)).await;
    let mut c = Client::connect(fleet7.addresses()[0]).await;
    let r = c.call(&["/login", "=name=admin", "=password=bad"]).await;
    assert!(
        matches!(&r[..], [Reply::Trap { message, .. }, Reply::Done { .. }] if message == "invalid user name or password (6)"),
        "{r:?}"
    );
    let r = c.call(&["/system/identity/print"]).await;
    assert_eq!(
        r,
        vec![Reply::Fatal {
            reason: "not logged in".into()
        }]
    );
    assert!(c.reply().await.is_none());
    assert_eq!(fleet7.router(0).stats().failed_logins, 1);
    fleet7.shutdown().await;
}

#[tokio::test]
async fn tags_and_cancel_with_delayed_replies() {
    let mut cfg = config([127, 1, 203, 1], Profile::V7_18);
    cfg.faults = vec![Fault::all(FaultKind::Delay(Duration::from_millis(300)))];
    let fleet = fleet(cfg).await;
    let mut c = Client::login(fleet.addresses()[0], "pw").await;
    c.send(&["/interface/print", ".tag=a"]).await;
    c.send(&["/system/identity/print", ".tag=b"]).await;
    c.send(&["/cancel", "=tag=a", ".tag=c"]).await;
    let mut seen = Vec::new();
    while seen
        .iter()
        .filter(|r: &&Reply| matches!(r, Reply::Done { .. }))
        .count()
        < 3
    {
        seen.push(c.reply().await.expect("replies"));
    }
    let tagged = |t: &str| {
        seen.iter()
            .filter(|r| r.tag() == Some(t))
            .cloned()
            .collect::<Vec<_>>()
    };
    assert!(
        matches!(
            &tagged("a")[..],
            [
                Reply::Trap {
                    category: Some(2),
                    ..
                },
                Reply::Done { .. }
            ]
        ),
        "{seen:?}"
    );
    assert!(
        matches!(&tagged("b")[..], [Reply::Re { .. }, Reply::Done { .. }]),
        "{seen:?}"
    );
    assert!(matches!(&tagged("c")[..], [Reply::Done { .. }]), "{seen:?}");
    fleet.shutdown().await;
}

#[tokio::test]
async fn faults() {
    let mut cfg = config([127, 1, 204, 1], Profile::V7_18);
    cfg.routers = 4;
    cfg.faults = vec![
        Fault {
            kind: FaultKind::Fatal,
            fraction: 0.25,
        }, // router 3
        Fault {
            kind: FaultKind::RefuseLogin,
            fraction: 0.5,
        }, // routers 1, 3
        Fault {
            kind: FaultKind::DropMidSentence,
            fraction: 1.0,
        },
    ];
    let fleet = fleet(cfg).await;
    let a = fleet.addresses();

    let mut c = Client::login(a[0], "pw").await;
    c.send(&["/interface/print"]).await;
    let mut buf = Vec::new();
    c.stream
        .read_to_end(&mut buf)
        .await
        .expect("read until closed");
    let mut d = Decoder::new();
    d.feed(&buf);
    assert_eq!(d.next_sentence(), Ok(None));
    assert!(!d.is_idle(), "closed in the middle of a sentence");

    let mut c = Client::connect(a[1]).await;
    let r = c.call(&["/login", "=name=admin", "=password=pw"]).await;
    assert!(matches!(&r[..], [Reply::Trap { .. }, Reply::Done { .. }]));

    let mut cfg = config([127, 1, 205, 1], Profile::V7_18);
    cfg.faults = vec![Fault::all(FaultKind::Fatal)];
    let fatal = self::fleet(cfg).await;
    let mut c = Client::login(fatal.addresses()[0], "pw").await;
    let r = c.call(&["/interface/print"]).await;
    assert_eq!(
        r,
        vec![Reply::Fatal {
            reason: "session terminated on request".into()
        }]
    );
    assert!(c.reply().await.is_none());
    fatal.shutdown().await;
    fleet.shutdown().await;
}

#[tokio::test]
async fn offline_refuses_then_recovers() {
    let fleet = fleet(config([127, 1, 206, 1], Profile::V7_18)).await;
    let addr = fleet.addresses()[0];
    let mut c = Client::login(addr, "pw").await;
    fleet.router(0).go_offline(Duration::from_secs(3600));
    assert!(c.reply().await.is_none(), "open connections close");
    let mut refused = false;
    for _ in 0..100 {
        if TcpStream::connect(addr).await.is_err() {
            refused = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(refused, "new connections are refused while offline");
    fleet.router(0).come_online();
    let mut back = None;
    for _ in 0..200 {
        if let Ok(s) = TcpStream::connect(addr).await {
            back = Some(s);
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(back.is_some(), "the router listens again");
    fleet.shutdown().await;
}

#[tokio::test]
async fn refuses_non_loopback_and_empty_fleets() {
    let mut cfg = config([10, 0, 0, 1], Profile::V7_18);
    assert!(matches!(
        Fleet::start(cfg.clone(), std::future::pending()).await,
        Err(SimulateError::NotLoopback(_))
    ));
    cfg.bind = Ipv4Addr::new(127, 1, 207, 1);
    cfg.routers = 0;
    assert!(matches!(
        Fleet::start(cfg, std::future::pending()).await,
        Err(SimulateError::NoRouters)
    ));
}

#[tokio::test]
async fn tls_serves_the_printed_certificate() {
    let mut cfg = config([127, 1, 208, 1], Profile::V7_18);
    cfg.tls_port = Some(0);
    let fleet = fleet(cfg).await;
    let fingerprint = fleet.tls_fingerprint().expect("fingerprint").to_owned();
    assert_eq!(fingerprint.len(), 64);
    let der = fleet.tls_certificate_der().expect("certificate").to_vec();
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(rustls::pki_types::CertificateDer::from(der))
        .expect("add root");
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let client = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(std::sync::Arc::new(client));
    let tcp = TcpStream::connect(fleet.tls_addresses().expect("tls")[0])
        .await
        .expect("connect");
    let name = rustls::pki_types::ServerName::try_from("localhost").expect("name");
    let mut tls = connector.connect(name, tcp).await.expect("handshake");
    tls.write_all(&encode_sentence(&["/login", "=name=admin", "=password=pw"]))
        .await
        .expect("write");
    let mut d = Decoder::new();
    let mut buf = [0u8; 512];
    let sentence = loop {
        if let Some(s) = d.next_sentence().expect("valid") {
            break s;
        }
        let n = tls.read(&mut buf).await.expect("read");
        assert!(n > 0);
        d.feed(&buf[..n]);
    };
    assert_eq!(sentence.command(), b"!done");
    fleet.shutdown().await;
}

#[tokio::test]
async fn shutdown_closes_open_connections() {
    let fleet = fleet(config([127, 1, 209, 1], Profile::V7_18)).await;
    let mut c = Client::login(fleet.addresses()[0], "pw").await;
    fleet.shutdown().await;
    assert!(c.reply().await.is_none());
}

/// A bare russh client for the simulator's SSH side: it accepts any host key and
/// offers only the algorithms it is given.
mod ssh_client {
    use std::borrow::Cow;
    use std::net::SocketAddr;
    use std::sync::Arc;

    use russh::client::{self, Handle};
    use russh::keys::{Algorithm, PrivateKey, PrivateKeyWithHashAlg, PublicKeyOrCertificate};
    use russh::{ChannelMsg, Preferred, cipher, kex, mac};

    pub struct AnyKey;

    impl client::Handler for AnyKey {
        type Error = russh::Error;

        async fn check_server_key(
            &mut self,
            _key: &PublicKeyOrCertificate,
        ) -> Result<bool, Self::Error> {
            Ok(true)
        }
    }

    /// group14-sha1, ssh-rsa, aes128-ctr, hmac-sha1: what RouterOS 6 speaks.
    pub fn legacy(kex: &'static [kex::Name]) -> Preferred {
        Preferred {
            kex: Cow::Borrowed(kex),
            key: Cow::Borrowed(&[Algorithm::Rsa { hash: None }]),
            host_key_certificates: Cow::Borrowed(&[]),
            cipher: Cow::Borrowed(&[cipher::AES_128_CTR]),
            mac: Cow::Borrowed(&[mac::HMAC_SHA1]),
            compression: Cow::Borrowed(&[russh::compression::NONE]),
        }
    }

    pub fn modern() -> Preferred {
        Preferred {
            kex: Cow::Borrowed(&[kex::CURVE25519, kex::EXTENSION_OPENSSH_STRICT_KEX_AS_CLIENT]),
            key: Cow::Borrowed(&[Algorithm::Ed25519]),
            host_key_certificates: Cow::Borrowed(&[]),
            cipher: Cow::Borrowed(&[cipher::CHACHA20_POLY1305]),
            mac: Cow::Borrowed(&[mac::HMAC_SHA256_ETM]),
            compression: Cow::Borrowed(&[russh::compression::NONE]),
        }
    }

    pub async fn connect(
        addr: SocketAddr,
        preferred: Preferred,
    ) -> Result<Handle<AnyKey>, russh::Error> {
        let config = client::Config {
            preferred,
            gex: client::GexParams::new(2048, 3072, 8192)?,
            ..client::Config::default()
        };
        client::connect(Arc::new(config), addr, AnyKey).await
    }

    pub async fn password(handle: &mut Handle<AnyKey>, user: &str, password: &str) -> bool {
        handle
            .authenticate_password(user, password)
            .await
            .is_ok_and(|r| r.success())
    }

    pub async fn key(handle: &mut Handle<AnyKey>, key: &PrivateKey) -> bool {
        let key = PrivateKeyWithHashAlg::new(Arc::new(key.clone()), None);
        handle
            .authenticate_publickey("admin", key)
            .await
            .is_ok_and(|r| r.success())
    }

    /// Runs `command`: its output and exit status (none when the server ended the
    /// connection without one).
    pub async fn exec(handle: &Handle<AnyKey>, command: &str) -> (String, Option<u32>) {
        let Ok(mut channel) = handle.channel_open_session().await else {
            return (String::new(), None);
        };
        if channel.exec(true, command).await.is_err() {
            return (String::new(), None);
        }
        let (mut out, mut status) = (Vec::new(), None);
        while let Some(msg) = channel.wait().await {
            match msg {
                ChannelMsg::Data { data } => out.extend_from_slice(&data),
                ChannelMsg::ExitStatus { exit_status } => status = Some(exit_status),
                _ => {}
            }
        }
        (String::from_utf8_lossy(&out).into_owned(), status)
    }
}

fn ssh_config(bind: [u8; 4], profile: Profile) -> FleetConfig {
    FleetConfig {
        ssh_port: Some(0),
        ..config(bind, profile)
    }
}

#[tokio::test]
async fn ssh_6_45_offers_only_the_routeros_6_algorithms() {
    use russh::kex;
    let fleet = fleet(ssh_config([127, 1, 207, 1], Profile::V6_45)).await;
    let addr = fleet.router(0).ssh_address().expect("ssh");
    assert!(
        ssh_client::connect(addr, ssh_client::modern())
            .await
            .is_err()
    );
    for kex in [&[kex::DH_G14_SHA1][..], &[kex::DH_GEX_SHA256][..]] {
        let mut ssh = ssh_client::connect(addr, ssh_client::legacy(kex))
            .await
            .expect("a RouterOS 6 client is served");
        assert!(ssh_client::password(&mut ssh, "admin+cet1024w", "pw").await);
        let (out, status) = ssh_client::exec(&ssh, "/system identity print").await;
        assert_eq!(status, Some(0));
        assert!(out.contains("router-0"), "{out}");
    }
    fleet.shutdown().await;
}

#[tokio::test]
async fn ssh_7_18_offers_only_modern_algorithms() {
    let fleet = fleet(ssh_config([127, 1, 208, 1], Profile::V7_18)).await;
    let addr = fleet.router(1).ssh_address().expect("ssh");
    let legacy = ssh_client::legacy(&[russh::kex::DH_G14_SHA1, russh::kex::DH_GEX_SHA256]);
    assert!(ssh_client::connect(addr, legacy).await.is_err());
    let mut ssh = ssh_client::connect(addr, ssh_client::modern())
        .await
        .expect("a modern client is served");
    assert!(!ssh_client::password(&mut ssh, "admin", "wrong").await);
    assert!(ssh_client::password(&mut ssh, "admin", "pw").await);
    let (out, _) = ssh_client::exec(&ssh, ":put [/system identity get name]").await;
    assert_eq!(out.trim(), "router-1");
    fleet.shutdown().await;
}

#[tokio::test]
async fn ssh_logs_in_with_an_authorized_key_only() {
    use russh::keys::PrivateKey;
    use russh::keys::ssh_key::private::Ed25519Keypair;
    let known = PrivateKey::from(Ed25519Keypair::from_seed(&[7; 32]));
    let stranger = PrivateKey::from(Ed25519Keypair::from_seed(&[9; 32]));
    let line = known.public_key().to_openssh().expect("openssh text");
    let fleet = fleet(FleetConfig {
        ssh_authorized_keys: vec!["# the operator".into(), line],
        ..ssh_config([127, 1, 209, 1], Profile::V7_18)
    })
    .await;
    let addr = fleet.router(0).ssh_address().expect("ssh");
    let mut ssh = ssh_client::connect(addr, ssh_client::modern())
        .await
        .expect("connect");
    assert!(!ssh_client::key(&mut ssh, &stranger).await);
    assert!(ssh_client::key(&mut ssh, &known).await);
    let (out, status) = ssh_client::exec(&ssh, ":log info \"by key\"").await;
    assert_eq!(status, Some(0), "{out}");
    assert!(
        fleet
            .router(0)
            .log_messages()
            .contains(&"by key".to_owned())
    );
    assert_eq!(fleet.router(0).stats().logins, 1);

    let bad = FleetConfig {
        ssh_authorized_keys: vec!["ssh-ed25519 not-base64".into()],
        ..ssh_config([127, 1, 210, 1], Profile::V7_18)
    };
    assert!(matches!(
        Fleet::start(bad, std::future::pending()).await,
        Err(SimulateError::Ssh(_))
    ));
    fleet.shutdown().await;
}

#[tokio::test]
async fn ssh_shows_the_routers_faults() {
    let fleet = fleet(FleetConfig {
        routers: 3,
        faults: vec![
            "refuse-login@0.34".parse().expect("fault"),
            "fatal@0.5".parse().expect("fault"),
        ],
        ..ssh_config([127, 1, 211, 1], Profile::V7_18)
    })
    .await;
    let faults: Vec<RouterFaults> = fleet.routers().map(Router::faults).collect();
    let refusing = faults.iter().position(|f| f.refuse_login && !f.fatal);
    let fatal = faults.iter().position(|f| f.fatal && !f.refuse_login);
    let healthy = faults.iter().position(|f| *f == RouterFaults::default());
    let (Some(refusing), Some(fatal), Some(healthy)) = (refusing, fatal, healthy) else {
        panic!("the fractions pick one router each: {faults:?}");
    };
    let ssh_of = |i: usize| fleet.router(i).ssh_address().expect("ssh");

    let mut ssh = ssh_client::connect(ssh_of(refusing), ssh_client::modern())
        .await
        .expect("connect");
    assert!(!ssh_client::password(&mut ssh, "admin", "pw").await);

    let mut ssh = ssh_client::connect(ssh_of(fatal), ssh_client::modern())
        .await
        .expect("connect");
    assert!(ssh_client::password(&mut ssh, "admin", "pw").await);
    let (_, status) = ssh_client::exec(&ssh, ":log info \"never\"").await;
    assert_eq!(
        status, None,
        "a fatal router ends the connection unanswered"
    );
    assert!(
        !fleet
            .router(fatal)
            .log_messages()
            .contains(&"never".to_owned())
    );

    // Offline: the open session ends, the port refuses, and comes back.
    let router = fleet.router(healthy);
    let mut ssh = ssh_client::connect(ssh_of(healthy), ssh_client::modern())
        .await
        .expect("connect");
    assert!(ssh_client::password(&mut ssh, "admin", "pw").await);
    router.go_offline(Duration::from_secs(3600));
    let (_, status) = ssh_client::exec(&ssh, ":put 1").await;
    assert_eq!(
        status, None,
        "open sessions end when the router goes offline"
    );
    let mut refused = false;
    for _ in 0..100 {
        if TcpStream::connect(ssh_of(healthy)).await.is_err() {
            refused = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(refused, "the SSH port refuses while offline");
    router.come_online();
    let mut back = None;
    for _ in 0..200 {
        if let Ok(ssh) = ssh_client::connect(ssh_of(healthy), ssh_client::modern()).await {
            back = Some(ssh);
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let mut ssh = back.expect("the SSH port listens again");
    assert!(ssh_client::password(&mut ssh, "admin", "pw").await);
    assert_eq!(ssh_client::exec(&ssh, ":put 1").await.1, Some(0));
    fleet.shutdown().await;
}

#[tokio::test]
async fn ssh_drop_sends_half_the_first_reply_then_ends_the_connection() {
    let fleet = fleet(FleetConfig {
        routers: 1,
        faults: vec!["drop".parse().expect("fault")],
        ..ssh_config([127, 1, 212, 1], Profile::V7_18)
    })
    .await;
    let addr = fleet.router(0).ssh_address().expect("ssh");
    let mut ssh = ssh_client::connect(addr, ssh_client::modern())
        .await
        .expect("connect");
    assert!(ssh_client::password(&mut ssh, "admin", "pw").await);
    let (out, status) = ssh_client::exec(&ssh, ":put \"0123456789abcdefghij\"").await;
    assert_eq!(status, None, "no exit status after a dropped reply");
    assert!(
        !out.is_empty() && "0123456789abcdefghij\r\n".starts_with(&out) && out.len() < 20,
        "{out:?}"
    );
    fleet.shutdown().await;
}

#[tokio::test]
async fn requests_count_the_round_trips_a_client_waits_for() {
    let plain = fleet(config([127, 1, 213, 1], Profile::V7_18)).await;
    let mut c = Client::login(plain.addresses()[0], "pw").await;
    let r = c.call(&["/execute", "=script=:put 1", "=as-string="]).await;
    assert!(matches!(r[..], [Reply::Done { .. }]), "{r:?}");
    // No one waits for the answer to `/quit`: the login and the `/execute` are the
    // round trips.
    c.send(&["/quit"]).await;
    assert!(matches!(c.reply().await, Some(Reply::Fatal { .. })));
    let stats = plain.router(0).stats();
    assert_eq!((stats.connections, stats.requests), (1, 2));
    assert_eq!(stats.round_trips, 2);
    assert_eq!(stats.commands, 2, "/execute and /quit");
    plain.shutdown().await;

    // Two prints sent together while answers are held back: two requests, one wait.
    let mut cfg = config([127, 1, 214, 1], Profile::V7_18);
    cfg.faults = vec![Fault::all(FaultKind::Delay(Duration::from_millis(50)))];
    let delayed = fleet(cfg).await;
    let mut c = Client::login(delayed.addresses()[0], "pw").await;
    c.send(&["/system/identity/print", ".tag=1"]).await;
    c.send(&["/system/resource/print", ".tag=2"]).await;
    let mut done = 0;
    while done < 2 {
        if let Some(Reply::Done { .. }) = c.reply().await {
            done += 1;
        }
    }
    let stats = delayed.router(0).stats();
    assert_eq!((stats.requests, stats.round_trips), (3, 2));
    delayed.shutdown().await;
}
