//! The engine-level execution of seed 001 (a command with its parameters, or a script
//! with a backup first) through the RouterOS plugin against simulated routers, in one
//! process.

use std::net::Ipv4Addr;

use yardmaster::plugins::{Transport, transport};
use yardmaster::runner::execute;
use yardmaster::simulate::{Fleet, Profile};
use yardmaster_tests::{InProcessFleet, bundled_host, fleet};

struct Setup {
    fleet: InProcessFleet,
    routeros: Transport,
    _dir: tempfile::TempDir,
}

async fn setup(bind: Ipv4Addr, profile: Profile) -> Setup {
    let fleet = fleet(bind, 1, profile, "pw").await;
    let dir = tempfile::tempdir().expect("tmp");
    let host = bundled_host(dir.path(), 16).await;
    let routeros = host.transport("routeros-api").expect("bundled transport");
    Setup {
        fleet,
        routeros,
        _dir: dir,
    }
}

fn target(fleet: &Fleet, password: &str) -> transport::Target {
    let addr = fleet.addresses()[0];
    transport::Target {
        site_id: "site-1".into(),
        address: addr.ip().to_string(),
        port: addr.port(),
        username: "admin".into(),
        password: password.into(),
        tls: None,
        connect_timeout_ms: 0,
        reply_timeout_ms: 0,
        options: Vec::new(),
    }
}

#[tokio::test]
async fn a_synchronous_command_with_parameters() {
    let s = setup(Ipv4Addr::new(127, 5, 0, 1), Profile::V7_18).await;
    let target = target(&s.fleet, "pw");

    // Seed 001's example of a configuration change through `/execute`.
    let rows = execute::command(
        &s.routeros,
        &target,
        "/execute",
        "=script=/ip address add address=10.0.0.1/30 interface=ether1 disabled=no",
    )
    .await
    .expect("execute");
    assert_eq!(rows.len(), 1, "{rows:?}");

    let rows = execute::command(
        &s.routeros,
        &target,
        "/ip/address/print",
        "?address=10.0.0.1/30",
    )
    .await
    .expect("print");
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert!(
        rows[0].get("id").is_some_and(|id| id.starts_with('*')),
        "`.id` reads as `id`: {rows:?}"
    );
    assert_eq!(rows[0].get("interface").map(String::as_str), Some("ether1"));

    let rows = execute::command(
        &s.routeros,
        &target,
        "/interface/print",
        "?name=ether1 =.proplist=name,mac-address",
    )
    .await
    .expect("print");
    assert!(
        rows[0].contains_key("mac_address"),
        "`mac-address` reads as `mac_address`: {rows:?}"
    );

    let err = execute::command(&s.routeros, &target, "/ip/nothing/print", "")
        .await
        .expect_err("trap");
    assert_eq!(err.code, "trap");
    assert!(err.message.contains("no such command"), "{err}");

    let err = execute::command(&s.routeros, &target, "ip arp print", "")
        .await
        .expect_err("invalid");
    assert_eq!(err.code, "invalid");
    assert!(!err.maybe_sent);
}

#[tokio::test]
async fn a_script_with_a_backup_first() {
    let s = setup(Ipv4Addr::new(127, 5, 1, 1), Profile::V7_18).await;
    let target = target(&s.fleet, "pw");
    let run = execute::script(
        &s.routeros,
        &target,
        ":log info \"job ran\"; :put \"done\"",
        true,
    )
    .await
    .expect("script");
    assert_eq!(run.output.trim(), "done");
    assert!(
        run.backup
            .as_deref()
            .is_some_and(|b| b.contains("/system identity")),
        "{run:?}"
    );
    assert_eq!(
        s.fleet
            .router(0)
            .log_messages()
            .iter()
            .filter(|m| *m == "job ran")
            .count(),
        1
    );

    let err = execute::script(
        &s.routeros,
        &target,
        "/ip address add address=nonsense",
        false,
    )
    .await
    .expect_err("the router reports an error");
    assert_eq!(err.code, "script");
    assert!(err.maybe_sent);

    let wrong = self::target(&s.fleet, "wrong");
    let err = execute::script(&s.routeros, &wrong, ":put 1", true)
        .await
        .expect_err("bad password");
    assert_eq!(err.code, "auth");
    assert!(!err.maybe_sent, "nothing reached the router: {err:?}");
    assert_eq!(
        s.fleet
            .router(0)
            .log_messages()
            .iter()
            .filter(|m| *m == "job ran")
            .count(),
        1
    );
}
