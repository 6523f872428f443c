//! Builds workspace crates into wasm32-wasip2 components from a build script, with a
//! nested `cargo build`. Shared by `engine/build.rs` (the bundled first-party plugins)
//! and `tests/build.rs` (the fixture plugins), which include this file with `#[path]`.
//!
//! The nested cargo uses its own target directory, `target/wasm`: the outer cargo
//! holds the lock on `target/` while build scripts run, so sharing it would deadlock.
//! Components are built with the workspace's `wasm` profile, and as many as possible in
//! one cargo invocation; a package wanted with two feature sets takes one invocation
//! per set.

use std::collections::BTreeMap;
use std::env;
use std::ffi::OsString;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

const TARGET: &str = "wasm32-wasip2";
const PROFILE: &str = "wasm";

/// One component to build.
#[derive(Debug, Clone)]
pub struct Component {
    /// The workspace package, e.g. `fixture-echo`.
    pub package: String,
    /// The package's directory, watched for changes.
    pub dir: PathBuf,
    /// Features of the package to enable.
    pub features: Vec<String>,
    /// The name of the `.wasm` file in the output directory, e.g. `echo-v2.wasm`.
    pub file_name: String,
}

/// Builds every component and copies each to `out_dir/<file_name>`, returning those
/// paths in the order of `components`.
///
/// Emits `cargo:rerun-if-changed` for the components' directories, the plugin SDK,
/// `wit/` and the workspace manifest and lock file. Panics, which fails the build
/// script, with a message saying what went wrong.
pub fn build(workspace: &Path, components: &[Component], out_dir: &Path) -> Vec<PathBuf> {
    for path in [
        workspace.join("wit"),
        workspace.join("plugin-sdk/src"),
        workspace.join("plugin-sdk/Cargo.toml"),
        workspace.join("Cargo.toml"),
        workspace.join("Cargo.lock"),
    ] {
        rerun_if_changed(&path);
    }
    for component in components {
        rerun_if_changed(&component.dir);
    }
    if components.is_empty() {
        return Vec::new();
    }

    ensure_target_installed();
    fs::create_dir_all(out_dir)
        .unwrap_or_else(|e| panic!("cannot create {}: {e}", out_dir.display()));
    let target_dir = workspace.join("target").join("wasm");
    let artifacts = target_dir.join(TARGET).join(PROFILE);

    let mut outputs = vec![PathBuf::new(); components.len()];
    for batch in batches(components) {
        run_cargo(workspace, &target_dir, &batch, components);
        for index in batch.values().flat_map(|indices| indices.iter().copied()) {
            let component = &components[index];
            let artifact = artifacts.join(format!("{}.wasm", component.package.replace('-', "_")));
            let output = out_dir.join(&component.file_name);
            copy_if_changed(&artifact, &output).unwrap_or_else(|e| {
                panic!(
                    "cannot copy {} to {}: {e} (is `{}` a cdylib named after its package?)",
                    artifact.display(),
                    output.display(),
                    component.package
                )
            });
            outputs[index] = output;
        }
    }
    outputs
}

/// Splits the components into cargo invocations. In one invocation a package has a
/// single feature set and a single artifact, so a package wanted twice goes into a
/// later invocation. Each batch maps a package to the indices of its components (all
/// with the same features).
fn batches(components: &[Component]) -> Vec<BTreeMap<&str, Vec<usize>>> {
    let mut batches: Vec<BTreeMap<&str, Vec<usize>>> = Vec::new();
    for (index, component) in components.iter().enumerate() {
        let same_build = |batch: &BTreeMap<&str, Vec<usize>>| {
            batch
                .get(component.package.as_str())
                .map(|indices| components[indices[0]].features == component.features)
        };
        if let Some(batch) = batches.iter_mut().find(|b| same_build(b) == Some(true)) {
            batch.entry(&component.package).or_default().push(index);
        } else if let Some(batch) = batches.iter_mut().find(|b| same_build(b).is_none()) {
            batch.insert(&component.package, vec![index]);
        } else {
            batches.push(BTreeMap::from([(component.package.as_str(), vec![index])]));
        }
    }
    batches
}

fn run_cargo(
    workspace: &Path,
    target_dir: &Path,
    batch: &BTreeMap<&str, Vec<usize>>,
    components: &[Component],
) {
    let mut cmd = nested_cargo();
    cmd.current_dir(workspace)
        .arg("build")
        .arg("--manifest-path")
        .arg(workspace.join("Cargo.toml"))
        .args(["--target", TARGET, "--profile", PROFILE])
        .arg("--target-dir")
        .arg(target_dir);
    let mut features = Vec::new();
    for (package, indices) in batch {
        cmd.args(["-p", package]);
        let component = &components[indices[0]];
        features.extend(component.features.iter().map(|f| format!("{package}/{f}")));
    }
    if !features.is_empty() {
        cmd.arg("--features").arg(features.join(","));
    }
    // Build script stdout is read by cargo as directives; the nested build's output
    // belongs on stderr, which cargo shows when the build script fails.
    cmd.stdout(Stdio::from(io::stderr()));

    let packages: Vec<&str> = batch.keys().copied().collect();
    let status = cmd
        .status()
        .unwrap_or_else(|e| panic!("cannot run cargo to build {packages:?} for {TARGET}: {e}"));
    if !status.success() {
        panic!(
            "building {packages:?} for {TARGET} failed ({status}); the nested cargo's output \
             is above. Every package must be a member of the workspace."
        );
    }
}

/// A `cargo` command free of the variables that the outer cargo set for this build
/// script: they describe the host build and would leak into the wasm one (host
/// rustflags, the outer target directory, the build script's own features and cfgs).
fn nested_cargo() -> Command {
    const LEAKED: &[&str] = &[
        "CARGO_ENCODED_RUSTFLAGS",
        "CARGO_ENCODED_RUSTDOCFLAGS",
        "RUSTFLAGS",
        "RUSTDOCFLAGS",
        "CARGO_BUILD_RUSTFLAGS",
        "CARGO_TARGET_DIR",
        "CARGO_BUILD_TARGET_DIR",
        "CARGO_BUILD_TARGET",
        // Set by `cargo clippy`; the wasm crates are linted on their own.
        "RUSTC_WORKSPACE_WRAPPER",
        "CARGO_CRATE_NAME",
        "CARGO_PRIMARY_PACKAGE",
        "OUT_DIR",
        "TARGET",
        "HOST",
        "NUM_JOBS",
        "OPT_LEVEL",
        "PROFILE",
        "DEBUG",
        "RUSTC_LINKER",
    ];
    const LEAKED_PREFIXES: &[&str] = &[
        "CARGO_FEATURE_",
        "CARGO_CFG_",
        "CARGO_PKG_",
        "CARGO_MANIFEST_",
        "DEP_",
    ];

    let cargo = env::var_os("CARGO").unwrap_or_else(|| OsString::from("cargo"));
    let mut cmd = Command::new(cargo);
    for (key, _) in env::vars_os() {
        let Some(key) = key.to_str() else { continue };
        if LEAKED.contains(&key) || LEAKED_PREFIXES.iter().any(|p| key.starts_with(p)) {
            cmd.env_remove(key);
        }
    }
    cmd
}

/// Makes sure the toolchain can build for the target, installing the target with rustup
/// when it is missing, so that a fresh machine needs no step by hand. Fails early, with
/// the fix, when that is not possible; cargo's own error ("can't find crate for `core`")
/// does not say what to do.
fn ensure_target_installed() {
    let rustc = env::var_os("RUSTC").unwrap_or_else(|| OsString::from("rustc"));
    if target_libdir(&rustc).is_some() {
        return;
    }
    // Under rustup, RUSTUP_TOOLCHAIN names the toolchain this build runs with; the
    // target is added to that one, not to whichever is the default.
    let mut rustup = Command::new("rustup");
    rustup.args(["target", "add", TARGET]);
    if let Some(toolchain) = env::var_os("RUSTUP_TOOLCHAIN") {
        rustup.arg("--toolchain").arg(toolchain);
    }
    rustup.stdout(Stdio::from(io::stderr()));
    println!("cargo:warning=the {TARGET} target is missing; installing it with rustup");
    let added = rustup.status();
    if target_libdir(&rustc).is_none() {
        let why = match added {
            Ok(status) => format!("`rustup target add {TARGET}` ended with {status}"),
            Err(e) => format!("rustup could not be run: {e}"),
        };
        panic!(
            "the {TARGET} target is not installed for {} and installing it failed ({why}); \
             install it with `rustup target add {TARGET}`",
            rustc.to_string_lossy()
        );
    }
}

/// The target's library directory, when the toolchain has the target.
fn target_libdir(rustc: &std::ffi::OsStr) -> Option<PathBuf> {
    let output = Command::new(rustc)
        .args(["--print", "target-libdir", "--target", TARGET])
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", rustc.to_string_lossy()));
    let libdir = PathBuf::from(String::from_utf8_lossy(&output.stdout).trim());
    (output.status.success() && has_core(&libdir)).then_some(libdir)
}

/// Whether a target library directory holds the standard library's `core`.
fn has_core(libdir: &Path) -> bool {
    fs::read_dir(libdir).is_ok_and(|entries| {
        entries
            .filter_map(Result::ok)
            .any(|e| e.file_name().to_string_lossy().starts_with("libcore-"))
    })
}

/// Leaves `to` untouched when it already holds the same bytes, so that crates
/// embedding it are not rebuilt for nothing.
fn copy_if_changed(from: &Path, to: &Path) -> io::Result<()> {
    let bytes = fs::read(from)?;
    if fs::read(to).is_ok_and(|existing| existing == bytes) {
        return Ok(());
    }
    fs::write(to, bytes)
}

fn rerun_if_changed(path: &Path) {
    println!("cargo:rerun-if-changed={}", path.display());
}
