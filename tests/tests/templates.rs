//! Script templates end to end, through a running engine: private templates with their
//! versions and organization isolation, global templates read from the templates folder
//! (and reloaded when it changes), paging and search, and rendering that no value can
//! turn into a command.

use serde_json::{Value, json};
use yardmaster_tests::{Engine, EngineOptions, Response, eventually, http_as};

const ORG_A: &str = "templates-org-a";
const ORG_B: &str = "templates-org-b";

fn call(engine: &Engine, method: &str, path: &str, body: Option<&Value>, token: &str) -> Response {
    http_as(engine.addr, method, path, body, Some(token))
        .unwrap_or_else(|e| panic!("{method} {path}: {e}"))
}

const GLOBAL_TOML: &str = r#"
name = "Set DNS servers"
description = "Points the router at the given resolvers"
content = "/ip dns set servers={{primary}},{{secondary}}\n"

[metadata]
category = "dns"

[[variables]]
name = "primary"
type = "ip"
default = "1.1.1.1"

[[variables]]
name = "secondary"
type = "ip"
default = "9.9.9.9"
"#;

const GLOBAL_RSC: &str = "# name: Log a marker\n\
# description: Writes a line to the router's log\n\
# var: level enum default=info allowed=info,warning -- the log topic\n\
# var: text string\n\
:log {{level}} \"marker: {{text}}\"\n";

/// An engine whose templates folder holds two global templates and one broken file.
fn start() -> (Engine, std::path::PathBuf) {
    let dir = tempfile::tempdir().expect("folder");
    let templates = dir.path().join("templates");
    std::fs::create_dir_all(&templates).expect("templates folder");
    std::fs::write(templates.join("dns.toml"), GLOBAL_TOML).expect("write");
    std::fs::write(templates.join("marker.rsc"), GLOBAL_RSC).expect("write");
    std::fs::write(templates.join("broken.toml"), "name = \"no content\"\n").expect("write");
    let engine = Engine::start(EngineOptions {
        config: format!("templates_dir = {:?}\n", templates.display().to_string()),
        reuse: Some(dir),
        ..EngineOptions::default()
    });
    (engine, templates)
}

fn ids(page: &Value) -> Vec<String> {
    page["data"]
        .as_array()
        .unwrap_or_else(|| panic!("data in {page}"))
        .iter()
        .map(|t| t["id"].as_str().expect("id").to_owned())
        .collect()
}

#[test]
fn private_templates_keep_every_version_and_stay_in_their_organization() {
    let (engine, _) = start();
    let alice = engine.token_for("alice", ORG_A, &["all"], 3600);
    let bob = engine.token_for("bob", ORG_A, &["all"], 3600);
    let mallory = engine.token_for("mallory", ORG_B, &["all"], 3600);

    let created = call(
        &engine,
        "POST",
        "/scripts/templates",
        Some(&json!({
            "name": "Rename router",
            "description": "Sets the identity",
            "content": "/system identity set name={{name}}\n",
            "metadata": {"owner": "noc"},
            "variables": [{"name": "name", "type": "string", "description": "the new identity"}],
        })),
        &alice,
    );
    assert_eq!(created.status, 201, "{}", created.text);
    let id = created.body["id"].as_str().expect("id").to_owned();
    assert_eq!(created.body["version"], 1);
    assert_eq!(created.body["author"], "alice");
    assert_eq!(created.body["read_only"], false);
    assert_eq!(created.body["metadata"]["owner"], "noc");
    assert_eq!(created.body["lint"]["syntax_ok"], true);

    // An edit from the current version makes version 2; one from a stale copy is refused.
    let edit = json!({
        "name": "Rename router",
        "description": "Sets the identity, and logs it",
        "content": "/system identity set name={{name}}\n:log info \"renamed to {{name}}\"\n",
        "version": 1,
    });
    let updated = call(
        &engine,
        "PUT",
        &format!("/scripts/templates/{id}"),
        Some(&edit),
        &bob,
    );
    assert_eq!(updated.status, 200, "{}", updated.text);
    assert_eq!(updated.body["version"], 2);
    assert_eq!(
        updated.body["author"], "alice",
        "the author stays the creator"
    );
    assert_eq!(
        updated.body["variables"][0]["name"], "name",
        "variables kept"
    );
    let stale = call(
        &engine,
        "PUT",
        &format!("/scripts/templates/{id}"),
        Some(&edit),
        &bob,
    );
    assert_eq!(stale.status, 422, "{}", stale.text);
    assert!(stale.text.contains("version 2"), "{}", stale.text);

    let versions = call(
        &engine,
        "GET",
        &format!("/scripts/templates/{id}/versions"),
        None,
        &alice,
    );
    assert_eq!(versions.status, 200, "{}", versions.text);
    let numbers: Vec<u64> = versions
        .body
        .as_array()
        .expect("list")
        .iter()
        .map(|v| v["version"].as_u64().expect("n"))
        .collect();
    assert_eq!(numbers, [2, 1]);
    assert_eq!(versions.body[0]["author"], "bob");
    let v1 = call(
        &engine,
        "GET",
        &format!("/scripts/templates/{id}/versions/1"),
        None,
        &alice,
    );
    assert_eq!(v1.status, 200, "{}", v1.text);
    assert_eq!(v1.body["content"], "/system identity set name={{name}}\n");
    let v9 = call(
        &engine,
        "GET",
        &format!("/scripts/templates/{id}/versions/9"),
        None,
        &alice,
    );
    assert_eq!(v9.status, 404, "{}", v9.text);
    let bad = call(
        &engine,
        "GET",
        &format!("/scripts/templates/{id}/versions/x"),
        None,
        &alice,
    );
    assert_eq!(bad.status, 400, "{}", bad.text);

    // Another organization sees none of it, and changes none of it.
    for (method, path, body) in [
        ("GET", format!("/scripts/templates/{id}"), None),
        ("GET", format!("/scripts/templates/{id}/versions"), None),
        ("GET", format!("/scripts/templates/{id}/versions/1"), None),
        (
            "PUT",
            format!("/scripts/templates/{id}"),
            Some(json!({"name": "x", "description": "x", "content": "/system reboot"})),
        ),
        (
            "POST",
            format!("/scripts/templates/{id}/render"),
            Some(json!({"variables": {"name": "x"}})),
        ),
        ("DELETE", format!("/scripts/templates/{id}"), None),
    ] {
        let r = call(&engine, method, &path, body.as_ref(), &mallory);
        assert_eq!(r.status, 404, "{method} {path}: {}", r.text);
        assert!(!r.text.contains("Rename router"), "{}", r.text);
    }
    let theirs = call(
        &engine,
        "GET",
        "/scripts/templates?type=private",
        None,
        &mallory,
    );
    assert_eq!(ids(&theirs.body), Vec::<String>::new());
    let ours = call(
        &engine,
        "GET",
        "/scripts/templates?type=private",
        None,
        &alice,
    );
    assert_eq!(ids(&ours.body), std::slice::from_ref(&id));
    let still = call(
        &engine,
        "GET",
        &format!("/scripts/templates/{id}"),
        None,
        &alice,
    );
    assert_eq!(still.body["version"], 2);

    // A template must declare what it uses.
    let undeclared = call(
        &engine,
        "POST",
        "/scripts/templates",
        Some(
            &json!({"name": "x", "description": "x", "content": "/system identity set name={{nope}}"}),
        ),
        &alice,
    );
    assert_eq!(undeclared.status, 422, "{}", undeclared.text);
    assert!(undeclared.text.contains("{{nope}}"), "{}", undeclared.text);

    let deleted = call(
        &engine,
        "DELETE",
        &format!("/scripts/templates/{id}"),
        None,
        &bob,
    );
    assert_eq!(deleted.status, 204, "{}", deleted.text);
    let gone = call(
        &engine,
        "GET",
        &format!("/scripts/templates/{id}"),
        None,
        &alice,
    );
    assert_eq!(gone.status, 404);
}

#[test]
fn rendering_checks_each_value_and_never_lets_one_become_a_command() {
    let (engine, _) = start();
    let alice = engine.token_for("alice", ORG_A, &["all"], 3600);
    let created = call(
        &engine,
        "POST",
        "/scripts/templates",
        Some(&json!({
            "name": "Uplink address",
            "description": "Adds the uplink address",
            "content": "/ip address add address={{address}}/{{length}} interface={{iface}} comment=\"{{note}}\"\n",
            "variables": [
                {"name": "address", "type": "ip"},
                {"name": "length", "type": "integer", "default": "24"},
                {"name": "iface", "type": "interface-name"},
                {"name": "note", "type": "string", "default": ""},
            ],
        })),
        &alice,
    );
    assert_eq!(created.status, 201, "{}", created.text);
    let id = created.body["id"].as_str().expect("id").to_owned();
    let render = |vars: Value| {
        call(
            &engine,
            "POST",
            &format!("/scripts/templates/{id}/render"),
            Some(&json!({"variables": vars})),
            &alice,
        )
    };

    let ok = render(json!({"address": "10.1.2.3", "iface": "ether1"}));
    assert_eq!(ok.status, 200, "{}", ok.text);
    assert_eq!(
        ok.body["script"],
        "/ip address add address=10.1.2.3/24 interface=\"ether1\" comment=\"\"\n"
    );
    assert_eq!(ok.body["template_version"], 1);
    assert_eq!(ok.body["lint"]["syntax_ok"], true);

    let attack = "x\"; /system reset-configuration; :put \"";
    let injected = render(json!({"address": "10.1.2.3", "iface": attack, "note": attack}));
    assert_eq!(injected.status, 200, "{}", injected.text);
    assert_eq!(
        injected.body["lint"]["syntax_ok"], true,
        "{}",
        injected.text
    );
    let findings = injected.body["lint"]["findings"]
        .as_array()
        .expect("findings");
    assert!(
        findings.iter().all(|f| f["rule"] != "factory-reset"),
        "a value became a command: {}",
        injected.text
    );
    assert_eq!(
        injected.body["script"]
            .as_str()
            .expect("script")
            .lines()
            .count(),
        1,
        "{}",
        injected.text
    );

    for (vars, named) in [
        (
            json!({"address": "10.1.2.3; /system reboot", "iface": "ether1"}),
            "address",
        ),
        (
            json!({"address": "10.1.2.3", "iface": "ether1", "length": "24 /system reboot"}),
            "length",
        ),
        (json!({"iface": "ether1"}), "address"),
        (
            json!({"address": "10.1.2.3", "iface": "ether1", "other": "x"}),
            "other",
        ),
        (
            json!({"address": "10.1.2.3", "iface": "ether1", "note": "two\nlines"}),
            "note",
        ),
    ] {
        let r = render(vars.clone());
        assert_eq!(r.status, 422, "{vars}: {}", r.text);
        assert!(r.text.contains(named), "{vars}: {}", r.text);
    }
}

#[test]
fn global_templates_come_from_the_folder_read_only_and_follow_its_changes() {
    let (engine, folder) = start();
    let alice = engine.token_for("alice", ORG_A, &["all"], 3600);
    let mallory = engine.token_for("mallory", ORG_B, &["all"], 3600);

    for token in [&alice, &mallory] {
        let page = call(
            &engine,
            "GET",
            "/scripts/templates?type=public",
            None,
            token,
        );
        assert_eq!(page.status, 200, "{}", page.text);
        assert_eq!(
            ids(&page.body),
            ["global-dns", "global-marker"],
            "{}",
            page.text
        );
    }
    assert!(
        engine.log().contains("broken.toml"),
        "the broken file is logged"
    );

    let dns = call(
        &engine,
        "GET",
        "/scripts/templates/global-dns",
        None,
        &alice,
    );
    assert_eq!(dns.status, 200, "{}", dns.text);
    assert_eq!(dns.body["author"], Value::Null);
    assert_eq!(dns.body["read_only"], true);
    assert_eq!(dns.body["metadata"]["category"], "dns");
    let marker = call(
        &engine,
        "GET",
        "/scripts/templates/global-marker",
        None,
        &alice,
    );
    assert_eq!(
        marker.body["variables"][0]["allowed"],
        json!(["info", "warning"])
    );
    assert_eq!(
        marker.body["content"],
        ":log {{level}} \"marker: {{text}}\"\n"
    );

    let rendered = call(
        &engine,
        "POST",
        "/scripts/templates/global-dns/render",
        Some(&json!({"variables": {"secondary": "8.8.8.8"}})),
        &alice,
    );
    assert_eq!(rendered.status, 200, "{}", rendered.text);
    assert_eq!(
        rendered.body["script"],
        "/ip dns set servers=1.1.1.1,8.8.8.8\n"
    );

    for (method, body) in [
        (
            "PUT",
            Some(json!({"name": "x", "description": "x", "content": "/system reboot"})),
        ),
        ("DELETE", None),
    ] {
        let r = call(
            &engine,
            method,
            "/scripts/templates/global-dns",
            body.as_ref(),
            &alice,
        );
        assert_eq!(r.status, 403, "{method}: {}", r.text);
        assert_eq!(r.body["code"], "read_only_template", "{}", r.text);
    }

    // A file added, changed or removed is seen without a restart.
    std::fs::write(
        folder.join("ntp.rsc"),
        "# name: NTP\n# description: time\n/system ntp client set enabled=yes\n",
    )
    .expect("write");
    std::fs::write(
        folder.join("dns.toml"),
        GLOBAL_TOML.replace("Set DNS servers", "Set resolvers"),
    )
    .expect("write");
    std::fs::remove_file(folder.join("marker.rsc")).expect("remove");
    eventually("the folder's changes to be served", || {
        let page = call(
            &engine,
            "GET",
            "/scripts/templates?type=public",
            None,
            &alice,
        );
        let names: Vec<&str> = page.body["data"]
            .as_array()?
            .iter()
            .filter_map(|t| t["name"].as_str())
            .collect();
        (names == ["Set resolvers", "NTP"]).then_some(())
    });
}

#[test]
fn listing_pages_and_searches() {
    let (engine, _) = start();
    let alice = engine.token_for("alice", ORG_A, &["all"], 3600);
    for i in 0..5 {
        let r = call(
            &engine,
            "POST",
            "/scripts/templates",
            Some(&json!({
                "name": format!("Firewall rule {i}"),
                "description": if i % 2 == 0 { "even" } else { "odd" },
                "content": ":log info firewall",
            })),
            &alice,
        );
        assert_eq!(r.status, 201, "{}", r.text);
    }
    let page = call(
        &engine,
        "GET",
        "/scripts/templates?per_page=3&page=2",
        None,
        &alice,
    );
    assert_eq!(page.status, 200, "{}", page.text);
    // Two global templates, then five private ones: seven in all.
    assert_eq!(page.body["meta"]["total"], 7);
    assert_eq!(page.body["meta"]["last_page"], 3);
    assert_eq!(page.body["meta"]["current_page"], 2);
    assert_eq!(page.body["meta"]["from"], 4);
    assert_eq!(page.body["meta"]["to"], 6);
    assert_eq!(page.body["meta"]["per_page"], 3);
    assert_eq!(page.body["meta"]["path"], "/scripts/templates");
    assert_eq!(
        page.body["links"]["next"],
        "/scripts/templates?page=3&per_page=3"
    );
    assert_eq!(
        page.body["links"]["prev"],
        "/scripts/templates?page=1&per_page=3"
    );
    assert_eq!(page.body["data"].as_array().expect("data").len(), 3);
    assert!(
        page.body["data"][0].get("lint").is_none(),
        "the listing leaves lint out"
    );

    let odd = call(
        &engine,
        "GET",
        "/scripts/templates?search=ODD",
        None,
        &alice,
    );
    let names: Vec<&str> = odd.body["data"]
        .as_array()
        .expect("data")
        .iter()
        .filter_map(|t| t["name"].as_str())
        .collect();
    assert_eq!(names, ["Firewall rule 1", "Firewall rule 3"]);
    let resolvers = call(
        &engine,
        "GET",
        "/scripts/templates?search=resolvers",
        None,
        &alice,
    );
    assert_eq!(ids(&resolvers.body), ["global-dns"]);

    for bad in ["type=shared", "page=0", "per_page=101"] {
        let r = call(
            &engine,
            "GET",
            &format!("/scripts/templates?{bad}"),
            None,
            &alice,
        );
        assert_eq!(r.status, 400, "{bad}: {}", r.text);
    }
}
