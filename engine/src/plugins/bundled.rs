//! The first-party plugins, built for wasm32-wasip2 by the build script and carried in
//! the binary, so a fresh install works with no extra step.

use std::path::Path;

include!(concat!(env!("OUT_DIR"), "/bundled_plugins.rs"));

/// Marks a data directory whose plugins folder was already seeded once; after that the
/// operator's choices (including deleting a plugin) are left alone.
const MARKER: &str = "bundled-plugins-installed";

/// Copies the bundled plugins into `plugins_dir` on first start, when that folder holds
/// no plugin yet. Returns the files written.
pub fn install_bundled(plugins_dir: &Path, data_dir: &Path) -> std::io::Result<Vec<String>> {
    let marker = data_dir.join(MARKER);
    if marker.exists() {
        return Ok(Vec::new());
    }
    std::fs::create_dir_all(plugins_dir)?;
    let has_plugins = std::fs::read_dir(plugins_dir)?
        .flatten()
        .any(|e| e.path().extension().is_some_and(|x| x == "wasm"));
    let mut written = Vec::new();
    if !has_plugins {
        for (name, bytes) in BUNDLED_PLUGINS {
            let path = plugins_dir.join(name);
            let tmp = plugins_dir.join(format!(".{name}.tmp"));
            std::fs::write(&tmp, bytes)?;
            std::fs::rename(&tmp, &path)?;
            written.push((*name).to_string());
        }
    }
    std::fs::create_dir_all(data_dir)?;
    std::fs::write(&marker, written.join("\n"))?;
    Ok(written)
}

/// The names of the plugins carried in this binary.
pub fn bundled_names() -> Vec<&'static str> {
    BUNDLED_PLUGINS.iter().map(|(name, _)| *name).collect()
}
