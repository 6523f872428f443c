//! Builds every first-party plugin under `plugins/<name>/` into a wasm32-wasip2
//! component and writes `$OUT_DIR/bundled_plugins.rs`, which `src/plugins/bundled.rs`
//! includes: `BUNDLED_PLUGINS` pairs each file name (`<name>.wasm`, after the plugin's
//! directory) with the component's bytes, so the binary ships its own plugins.

mod wasm_build;

use std::env;
use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};

fn main() {
    let manifest_dir =
        PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
    let out_dir = PathBuf::from(env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    let workspace = manifest_dir
        .parent()
        .expect("the engine crate lives inside the workspace");
    let plugins_dir = workspace.join("plugins");

    // A new plugin directory must rerun this script.
    // Not the whole plugins/ folder: `yardmaster serve` run from the repository root
    // installs .wasm files there. A new plugin crate is a new workspace member, and the
    // workspace manifest is watched.
    let components = first_party_plugins(&plugins_dir);
    let built = wasm_build::build(workspace, &components, &out_dir.join("plugins"));

    let mut source = String::from("pub(crate) static BUNDLED_PLUGINS: &[(&str, &[u8])] = &[\n");
    for (component, path) in components.iter().zip(&built) {
        let path = path.to_str().unwrap_or_else(|| {
            panic!(
                "{} is not UTF-8, so include_bytes! cannot name it",
                path.display()
            )
        });
        // `{:?}` writes a Rust string literal, escapes and all.
        writeln!(
            source,
            "    ({:?}, include_bytes!({:?})),",
            component.file_name, path
        )
        .expect("writing to a String cannot fail");
    }
    source.push_str("];\n");
    write_if_changed(&out_dir.join("bundled_plugins.rs"), &source);
}

/// Every directory under `plugins/` holding a `Cargo.toml`, in name order so the
/// bundle is the same from build to build.
fn first_party_plugins(plugins_dir: &Path) -> Vec<wasm_build::Component> {
    let Ok(entries) = fs::read_dir(plugins_dir) else {
        return Vec::new();
    };
    let mut dirs: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .map(|entry| entry.path())
        .filter(|path| path.join("Cargo.toml").is_file())
        .collect();
    dirs.sort();
    dirs.into_iter()
        .map(|dir| {
            let name = dir
                .file_name()
                .and_then(|name| name.to_str())
                .unwrap_or_else(|| panic!("plugin directory {} is not UTF-8", dir.display()))
                .to_owned();
            wasm_build::Component {
                package: package_name(&dir.join("Cargo.toml")),
                dir,
                features: Vec::new(),
                file_name: format!("{name}.wasm"),
            }
        })
        .collect()
}

/// The `name` of the manifest's `[package]` table. A line scan rather than a TOML
/// parser keeps the engine's build free of build dependencies; the manifests read
/// here are the workspace's own.
fn package_name(manifest: &Path) -> String {
    let text = fs::read_to_string(manifest)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", manifest.display()));
    let mut in_package = false;
    for line in text.lines().map(str::trim) {
        if line.starts_with('[') {
            in_package = line.starts_with("[package]");
            continue;
        }
        if !in_package {
            continue;
        }
        let value = line
            .strip_prefix("name")
            .map(str::trim_start)
            .and_then(|rest| rest.strip_prefix('='))
            .map(str::trim)
            .and_then(|value| value.strip_prefix('"'))
            .and_then(|value| value.split('"').next());
        if let Some(name) = value {
            return name.to_owned();
        }
    }
    panic!(
        "{} has no `name = \"...\"` line in its [package] table",
        manifest.display()
    );
}

/// Leaves the file untouched when it already says the same, so the engine is not
/// recompiled for nothing.
fn write_if_changed(path: &Path, contents: &str) {
    if fs::read_to_string(path).is_ok_and(|existing| existing == contents) {
        return;
    }
    fs::write(path, contents).unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
}
