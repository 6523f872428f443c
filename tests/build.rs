//! Builds the fixture plugins under `fixtures/` into wasm32-wasip2 components, one per
//! plugin-host scenario, and tells the tests where they are: `<name>.wasm` files in the
//! directory named by the compile-time variable `YARDMASTER_FIXTURES_DIR`, e.g.
//! `Path::new(env!("YARDMASTER_FIXTURES_DIR")).join("echo.wasm")`.

#[path = "../engine/wasm_build.rs"]
mod wasm_build;

use std::env;
use std::path::PathBuf;

/// Fixture directory, extra features, file name.
const FIXTURES: &[(&str, &[&str], &str)] = &[
    ("echo", &[], "echo.wasm"),
    ("echo", &["v2"], "echo-v2.wasm"),
    ("trap", &[], "trap.wasm"),
    ("trap", &["describe"], "trap-describe.wasm"),
    ("spin", &[], "spin.wasm"),
    ("memory-bomb", &[], "memory-bomb.wasm"),
    ("wit-v2", &[], "wit-v2.wasm"),
    ("transport-v1-1", &[], "transport-v1-1.wasm"),
    ("trespasser", &[], "trespasser.wasm"),
];

fn main() {
    let manifest_dir =
        PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
    let out_dir = PathBuf::from(env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    let workspace = manifest_dir
        .parent()
        .expect("the tests crate lives inside the workspace");
    let fixtures_dir = manifest_dir.join("fixtures");
    let target = out_dir.join("fixtures");

    let components: Vec<_> = FIXTURES
        .iter()
        .map(|(dir, features, file_name)| wasm_build::Component {
            package: format!("fixture-{dir}"),
            dir: fixtures_dir.join(dir),
            features: features.iter().map(|f| (*f).to_owned()).collect(),
            file_name: (*file_name).to_owned(),
        })
        .collect();
    wasm_build::build(workspace, &components, &target);

    println!(
        "cargo:rustc-env=YARDMASTER_FIXTURES_DIR={}",
        target.display()
    );
}
