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
