//! `POST /plugins/{name}/call` is an operator's tool, tried here as an attacker would:
//! a token of the organization without `engine:admin`, a token made with `--scopes all`,
//! a body that aims the RouterOS transport at an address of its own choosing, and a
//! site id of another organization. Each is refused, and a loopback listener standing
//! where the call was aimed shows that nothing connected. The one call that works names
//! a site of the caller's own organization on a simulated router (127.14.x.x, used by
//! no other test).

use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::process::Command;

use serde_json::{Value, json};
use yardmaster::simulate::Profile;
use yardmaster::store::{Page, Store};
use yardmaster_tests::{Engine, EngineOptions, Response, TEST_ORG, TEST_USER, binary, fleet};

const PLUGIN_CALL: &str = "/plugins/routeros-api/call";

/// A listener no call should ever reach; `connections` says whether one did.
struct Bystander {
    listener: TcpListener,
    addr: SocketAddr,
}

impl Bystander {
    fn bind(ip: Ipv4Addr) -> Bystander {
        let listener = TcpListener::bind((ip, 0)).expect("bind");
        listener.set_nonblocking(true).expect("nonblocking");
        let addr = listener.local_addr().expect("addr");
        Bystander { listener, addr }
    }

    /// Connections that arrived so far. Each call is answered only after its plugin
    /// finished, so a connection it made is already queued when this runs.
    fn connections(&self) -> usize {
        let mut n = 0;
        while self.listener.accept().is_ok() {
            n += 1;
        }
        n
    }
}

fn engine() -> Engine {
    let engine = tokio::task::block_in_place(|| {
        Engine::start(EngineOptions {
            bundled: true,
            ..EngineOptions::default()
        })
    });
    engine.wait_for_file("routeros-api.wasm", "the RouterOS plugin", |p| {
        p["status"] == "active"
    });
    engine
}

fn site(address: SocketAddr, name: &str) -> Value {
    json!({
        "name": name,
        "address": address.ip().to_string(),
        "port": address.port(),
        "transport": "routeros-api",
        "username": "admin",
        "password": "pw",
    })
}

fn probe(target: Value) -> Value {
    json!({"operation": "probe", "target": target})
}

fn call(engine: &Engine, body: &Value, token: &str) -> Response {
    engine
        .post_as(PLUGIN_CALL, body, Some(token))
        .expect("plugin call")
}

/// `yardmaster token create` against the engine's data dir, as an operator runs it.
fn cli_token(engine: &Engine, scopes: &str) -> String {
    let out = Command::new(binary())
        .args(["token", "create", "--sub", TEST_USER, "--org", TEST_ORG])
        .args(["--scopes", scopes, "--ttl", "1h", "--data-dir"])
        .arg(engine.data_dir())
        .env_remove("YARDMASTER_CONFIG")
        .env_remove("YARDMASTER_DATA_DIR")
        .output()
        .expect("yardmaster token create");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .expect("utf-8")
        .trim()
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_reaches_only_a_site_of_the_organization_and_only_for_engine_admin() {
    let router = fleet(Ipv4Addr::new(127, 14, 1, 1), 1, Profile::V7_18, "pw").await;
    let engine = engine();
    tokio::task::block_in_place(|| {
        let bystander = Bystander::bind(Ipv4Addr::new(127, 14, 0, 1));
        let own = engine.add_site(&site(router.addresses()[0], "edge-1"));
        let operator = cli_token(&engine, "all,engine:admin");

        // The operator's call on the organization's own site reaches the router.
        let reply = call(&engine, &probe(json!({"site_id": own})), &operator);
        assert_eq!(reply.status, 200, "{}", reply.text);
        assert_eq!(reply.body["result"]["online"], true, "{}", reply.text);
        let reply = call(
            &engine,
            &json!({
                "operation": "run-command",
                "target": {"site_id": own},
                "words": ["/system/identity/print"],
            }),
            &operator,
        );
        assert_eq!(reply.status, 200, "{}", reply.text);
        assert!(
            reply.body["result"]["rows"][0]["name"].is_string(),
            "{}",
            reply.text
        );

        // The same call aimed at an address of the caller's choosing (Redis's port on
        // loopback, say) is refused by name, with or without a site beside it.
        for target in [
            json!({"site_id": own, "address": bystander.addr.ip().to_string(), "port": bystander.addr.port()}),
            json!({"address": bystander.addr.ip().to_string(), "port": bystander.addr.port()}),
            json!({"site_id": own, "port": bystander.addr.port()}),
        ] {
            let reply = call(&engine, &probe(target.clone()), &operator);
            assert_eq!(reply.status, 422, "{target}: {}", reply.text);
            let message = reply.body["message"].as_str().unwrap_or_default();
            assert!(
                message.starts_with("target.address:") || message.starts_with("target.port:"),
                "{target}: {message}"
            );
        }

        // Another organization's site, pointing at the bystander: 404, as if it did not
        // exist, and never reached.
        let other_admin = engine.token_for("vera", "other-org", &["site:manage"], 3600);
        let victim = engine
            .post_as(
                "/sites",
                &site(bystander.addr, "victim"),
                Some(&other_admin),
            )
            .expect("the other organization's site");
        assert_eq!(victim.status, 201, "{}", victim.text);
        let victim = victim.body["id"].as_str().expect("id").to_owned();
        let reply = call(&engine, &probe(json!({"site_id": victim})), &operator);
        assert_eq!(reply.status, 404, "{}", reply.text);
        assert!(
            !reply.text.contains(&bystander.addr.port().to_string()),
            "{}",
            reply.text
        );

        // Without `engine:admin`: a plugin manager of the organization, and a token
        // made with `--scopes all`, are refused before anything runs.
        let own_bystander = engine.add_site(&site(bystander.addr, "bystander"));
        for (who, token) in [
            (
                "plugin:manage",
                engine.token(&["plugin:manage", "site:manage"]),
            ),
            ("--scopes all", cli_token(&engine, "all")),
        ] {
            let reply = call(&engine, &probe(json!({"site_id": own_bystander})), &token);
            assert_eq!(reply.status, 403, "{who}: {}", reply.text);
            assert_eq!(reply.body["code"], "missing_scope", "{who}");
            assert!(reply.text.contains("engine:admin"), "{who}: {}", reply.text);
        }
        assert_eq!(bystander.connections(), 0, "a refused call connected");

        // The protection is what refused them: the same operator reaches the bystander
        // once it is registered as a site of the organization.
        // (It never answers, so the probe gives up on it soon.)
        let reply = call(
            &engine,
            &probe(json!({"site_id": own_bystander, "reply_timeout_ms": 300})),
            &operator,
        );
        assert_eq!(reply.status, 200, "{}", reply.text);
        assert_eq!(reply.body["result"]["online"], false, "{}", reply.text);
        assert!(
            bystander.connections() > 0,
            "the call on a site did not connect"
        );

        // The calls that ran are on record, naming the operator, the site and the plugin;
        // the refused ones never got that far.
        let dir = engine.kill();
        let store = Store::open(dir.path().join("data")).expect("store");
        let calls: Vec<_> = store
            .list_audit(&Page::first(1000))
            .expect("audit")
            .into_iter()
            .filter(|e| e.action == "plugin.call")
            .collect();
        let targets: Vec<&str> = calls.iter().map(|e| e.target.as_str()).collect();
        assert_eq!(
            targets,
            [own.as_str(), own.as_str(), own_bystander.as_str()]
        );
        for entry in &calls {
            assert_eq!(entry.actor, TEST_USER);
            assert_eq!(entry.organization, TEST_ORG);
            assert!(
                entry.detail["plugin"]
                    .as_str()
                    .is_some_and(|p| p.starts_with("routeros-api@")),
                "{}",
                entry.detail
            );
        }
    });
}
