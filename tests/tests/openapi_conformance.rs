//! The API against its own description: schemathesis (PyPI) reads `/openapi.json` from a
//! running engine, generates requests for every operation, valid and invalid, and checks
//! that no answer is a server error and every answer matches the documented status
//! codes, content types and schemas.
//!
//! The engine runs without plugins, so no generated request can make it reach beyond
//! loopback (a generated site address is never dialled: there is no transport to dial
//! it). The stateful phase, which would chain created resources into later calls, is
//! left out for the same reason.

use std::process::Command;

use yardmaster::auth::{Authenticator, Claims, scopes};
use yardmaster_tests::{Engine, EngineOptions};

fn schemathesis() -> Command {
    let probe = Command::new("st").arg("--version").output();
    assert!(
        matches!(probe, Ok(ref out) if out.status.success()),
        "schemathesis is not installed: `python3 -m pip install schemathesis` (.ci/run does)"
    );
    Command::new("st")
}

#[test]
fn every_operation_answers_as_documented() {
    let engine = Engine::start(EngineOptions::default());
    let auth = Authenticator::open(&engine.dir.path().join("data")).expect("token key");
    let token = auth.issue(&Claims::new(
        "conformance",
        "conformance-org",
        scopes::ALL.iter().map(|s| s.to_string()).collect(),
        chrono::Utc::now(),
        chrono::TimeDelta::hours(2),
    ));

    let document = engine.get("/openapi.json").expect("document");
    assert_eq!(document.status, 200);
    let paths = document.body["paths"].as_object().expect("paths").len();
    assert!(paths >= 10, "only {paths} paths are described");

    let report = engine.dir.path().join("schemathesis");
    let out = schemathesis()
        .arg("run")
        .arg(format!("http://{}/openapi.json", engine.addr))
        .args(["--header", &format!("Authorization: Bearer {token}")])
        .args([
            "--checks",
            "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance",
        ])
        .args(["--phases", "examples,coverage,fuzzing"])
        .args(["--max-examples", "30"])
        .args(["--workers", "2"])
        .args(["--request-timeout", "30"])
        .args(["--seed", "20261122"])
        .args(["--suppress-health-check", "all"])
        .args(["--generation-database", "none"])
        .args(["--report-dir"])
        .arg(&report)
        .env("NO_COLOR", "1")
        .current_dir(engine.dir.path())
        .output()
        .expect("run schemathesis");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "schemathesis found answers that break the API's description:\n{stdout}\n{stderr}\n--- engine log ---\n{}",
        engine.log()
    );
    assert!(
        !engine.log().contains("internal error"),
        "the engine logged an internal error:\n{}",
        engine.log()
    );
}
