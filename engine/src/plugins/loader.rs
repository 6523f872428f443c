//! Compiling, caching and validating plugin files, and bringing the registry in line
//! with the plugins folder.

use std::collections::BTreeMap;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use chrono::Utc;
use sha2::{Digest, Sha256};
use wasmtime::component::Component;
use wasmtime::{Enabled, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

use super::host::Caller;
use super::net::Policy;
use super::{
    DefaultPorts, HostOptions, LoadError, LoadedPlugin, PluginHost, PluginInfo, PluginKind, Slot,
    kinds, version,
};
use crate::budget::CallCost;

/// Linear memory kept resident per pooled instance slot between calls.
const KEEP_RESIDENT: usize = 4 * 1024 * 1024;
/// Address space reserved for each linear memory slot (wasmtime's default on 64-bit
/// hosts, set here so the budget counts what is configured): 4 GiB lets compiled code
/// skip bounds checks.
const MEMORY_RESERVATION: u64 = 4 << 30;
/// The guard region after each memory slot (wasmtime's default on 64-bit hosts).
const MEMORY_GUARD: u64 = 32 << 20;
/// Each call's fiber stack (wasmtime's default): host calls and the guest's wasm stack
/// run on it.
const ASYNC_STACK: usize = 2 << 20;
/// Memory slots in the pool for each concurrent call: a plugin's main module and the
/// WASI adapter may each have one.
const MEMORIES_PER_CALL: u32 = 2;
/// What a call to the RouterOS plugin waiting on a router keeps resident: the pages of
/// its linear memory and fiber stack it touched, the host's store and WASI state for it,
/// and its socket's buffers. With 2,048 in flight the benchmarks measure about 110-130
/// KiB per call, simulated router included (`FANOUT_DELAY_MS=100 cargo bench --bench
/// fanout`); twice that leaves room for plugins that touch more, since a budget that
/// holds its limit matters more than a few calls more.
const RESIDENT_PER_CALL: u64 = 256 * 1024;

/// What one concurrent plugin call costs the process, for [`crate::budget`]: the
/// pool's reservation for it (its memory slots with their guards, and its stack) and
/// what it keeps resident while it waits.
pub fn call_cost(max_memory_bytes: u64) -> CallCost {
    let slot = MEMORY_RESERVATION.max(max_memory_bytes) + MEMORY_GUARD;
    CallCost {
        reserved: u64::from(MEMORIES_PER_CALL) * slot + ASYNC_STACK as u64 + 4096,
        resident: RESIDENT_PER_CALL,
        files: 1,
    }
}

/// The largest plugin file the engine reads.
const MAX_PLUGIN_FILE: u64 = 256 * 1024 * 1024;

/// Builds the wasmtime engine: async, epoch interruption, and the pooling allocator
/// sized for the configured number of concurrent calls (falling back to on-demand
/// allocation where the pool's address space cannot be reserved).
pub(crate) fn engine(options: &HostOptions) -> Result<Engine, String> {
    let mut config = wasmtime::Config::new();
    config.epoch_interruption(true);
    config.wasm_component_model(true);
    config
        .memory_reservation(MEMORY_RESERVATION)
        .memory_guard_size(MEMORY_GUARD)
        .async_stack_size(ASYNC_STACK);
    let slots = options.max_concurrent_calls.max(1);
    let mut pool = PoolingAllocationConfig::new();
    pool.total_component_instances(slots)
        .total_core_instances(slots.saturating_mul(8))
        .total_memories(slots.saturating_mul(MEMORIES_PER_CALL))
        .total_tables(slots.saturating_mul(8))
        .total_stacks(slots)
        .max_memory_size(usize::try_from(options.max_memory_bytes).unwrap_or(usize::MAX))
        .max_unused_warm_slots(slots.min(64))
        .decommit_batch_size(16);
    // A call's instance is thrown away when the call ends. Resetting its memory with
    // madvise costs page faults on the next call and TLB shootdowns across threads; where
    // the kernel has PAGEMAP_SCAN (Linux 6.7+), the pages a call dirtied within this much
    // are found and reset in place instead. Without it, keeping memory resident would
    // mean clearing all of it on every call, which costs more than madvise.
    if PoolingAllocationConfig::is_pagemap_scan_available() {
        pool.linear_memory_keep_resident(KEEP_RESIDENT)
            .table_keep_resident(64 * 1024)
            .pagemap_scan(Enabled::Yes);
    }
    let mut pooled = config.clone();
    pooled.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
    match Engine::new(&pooled) {
        Ok(engine) => Ok(engine),
        Err(pool_error) => {
            tracing::warn!(
                "instance pool unavailable ({pool_error}); allocating instances on demand"
            );
            Engine::new(&config).map_err(|e| format!("cannot start wasmtime: {e}"))
        }
    }
}

/// What was last seen of a file, so unchanged content is not reloaded: the content's
/// hash, and the file's identity and change time when it was read, so a rescan that
/// finds those unchanged reads and hashes nothing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Fingerprint {
    pub sha256: String,
    pub stat: Option<FileStat>,
}

/// A file's identity, size and last change. The change time moves on every write,
/// rename into place, truncation and chmod, and cannot be set back by a tool.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct FileStat {
    device: u64,
    inode: u64,
    len: u64,
    changed: (i64, i64),
    modified: (i64, i64),
}

/// A change younger than this may share its timestamp with a later write (file times tick
/// at the kernel's coarse clock), so its stat does not vouch for the content yet.
const RACY: Duration = Duration::from_secs(2);

impl FileStat {
    /// The file's (a symlink's target's) stat, or `None` where it cannot be read or the
    /// file changed too recently for its stat to tell a later write apart.
    fn of(path: &Path) -> Option<FileStat> {
        use std::os::unix::fs::MetadataExt;
        let meta = std::fs::metadata(path).ok()?;
        let changed = UNIX_EPOCH
            + Duration::new(
                u64::try_from(meta.ctime()).ok()?,
                u32::try_from(meta.ctime_nsec()).ok()?,
            );
        // A change time in the future fails `duration_since`: not trusted either.
        if !SystemTime::now()
            .duration_since(changed)
            .is_ok_and(|age| age >= RACY)
        {
            return None;
        }
        Some(FileStat {
            device: meta.dev(),
            inode: meta.ino(),
            len: meta.len(),
            changed: (meta.ctime(), meta.ctime_nsec()),
            modified: (meta.mtime(), meta.mtime_nsec()),
        })
    }
}

/// One change `reconcile` made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    Loaded {
        file: String,
        plugin: String,
    },
    Replaced {
        file: String,
        old: String,
        new: String,
    },
    Failed {
        file: String,
        error: String,
    },
    Unloaded {
        file: String,
        plugin: Option<String>,
    },
}

pub(crate) fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Refuses what is plainly not a component before wasmtime is asked, with a message
/// that says what the file is instead.
fn precheck(bytes: &[u8]) -> Result<(), String> {
    if bytes.is_empty() {
        return Err("the file is empty".into());
    }
    if bytes.len() < 8 || &bytes[..4] != b"\0asm" {
        return Err(
            "not a WebAssembly component: the file does not start with the `\\0asm` header".into(),
        );
    }
    match &bytes[4..8] {
        [1, 0, 0, 0] => Err("a core WebAssembly module, not a component: build the plugin for the wasm32-wasip2 target".into()),
        [_, _, 1, 0] => Ok(()),
        other => Err(format!("unknown WebAssembly encoding {other:02x?}")),
    }
}

fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_lowercase() || c.is_ascii_digit())
        && name.len() <= 64
        && chars
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '-' | '_' | '.'))
}

impl PluginHost {
    fn cache_path(&self, sha256: &str) -> Option<PathBuf> {
        let dir = self.inner.options.cache_dir.as_ref()?;
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        self.inner
            .engine
            .precompile_compatibility_hash()
            .hash(&mut hasher);
        Some(dir.join(format!("{sha256}-{:016x}.cwasm", hasher.finish())))
    }

    /// Compiles `bytes`, or loads the compiled form from the cache. Returns whether the
    /// cache served it.
    async fn compile(
        &self,
        bytes: Arc<Vec<u8>>,
        sha256: &str,
    ) -> Result<(Component, bool), String> {
        precheck(&bytes)?;
        let engine = self.inner.engine.clone();
        let cache = self.cache_path(sha256);
        let job = tokio::task::spawn_blocking(move || {
            if let Some(path) = cache.as_deref().filter(|p| p.exists()) {
                match deserialize(&engine, path) {
                    Ok(component) => return Ok((component, true)),
                    Err(e) => {
                        tracing::warn!("discarding cached {}: {e}", path.display());
                        let _ = std::fs::remove_file(path);
                    }
                }
            }
            let component = Component::from_binary(&engine, &bytes)
                .map_err(|e| format!("not a valid component: {}", super::error_text(&e)))?;
            if let Some(path) = cache
                && let Err(e) = write_cache(&component, &path)
            {
                tracing::warn!("cannot cache compiled plugin at {}: {e}", path.display());
            }
            Ok((component, false))
        });
        job.await.map_err(|e| format!("compilation stopped: {e}"))?
    }

    /// Compiles and validates one plugin file's content: its contract versions, that the
    /// engine can link it, and what it says in `describe()`.
    pub(crate) async fn load_bytes(
        &self,
        file: &Path,
        bytes: Arc<Vec<u8>>,
    ) -> Result<LoadedPlugin, LoadError> {
        self.load_with(file, bytes, true).await
    }

    /// Loads a file only to say what it is (`yardmaster plugin inspect`): the operator's
    /// settings for it are not checked.
    pub async fn inspect(
        &self,
        file: &Path,
        bytes: Arc<Vec<u8>>,
    ) -> Result<LoadedPlugin, LoadError> {
        self.load_with(file, bytes, false).await
    }

    async fn load_with(
        &self,
        file: &Path,
        bytes: Arc<Vec<u8>>,
        strict: bool,
    ) -> Result<LoadedPlugin, LoadError> {
        let file_name = file
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let fail = |reason: String| LoadError {
            file: file_name.clone(),
            reason,
        };
        let sha256 = sha256_hex(&bytes);
        let (component, from_cache) = self.compile(bytes, &sha256).await.map_err(fail)?;
        let engine = &self.inner.engine;
        let ty = component.component_type();
        let exports: Vec<String> = ty.exports(engine).map(|(n, _)| n.to_string()).collect();
        let imports: Vec<String> = ty.imports(engine).map(|(n, _)| n.to_string()).collect();
        let contract = version::check(
            exports.iter().map(String::as_str),
            imports.iter().map(String::as_str),
        )
        .map_err(fail)?;
        let instance_pre = self
            .inner
            .linker
            .instantiate_pre(&component)
            .map_err(|e| fail(format!("cannot be linked: {}", super::error_text(&e))))?;
        let ports_export = kinds::ports_export(&component);
        let guard_exports = kinds::guard_exports(&component);
        let pre = kinds::Pre::new(contract.kind, instance_pre).map_err(|e| {
            fail(format!(
                "does not match its contract: {}",
                super::error_text(&e)
            ))
        })?;

        // describe() runs under the default limits with no network and no config: it
        // only says who the plugin is.
        let provisional = LoadedPlugin {
            info: PluginInfo {
                name: file_name.clone(),
                version: semver::Version::new(0, 0, 0),
                kind: contract.kind,
                description: String::new(),
                config_keys: Vec::new(),
                endpoints: Vec::new(),
            },
            wit_version: contract.version.clone(),
            sha256: sha256.clone(),
            file: file.to_path_buf(),
            loaded_at: Utc::now(),
            from_cache,
            imports,
            caller: Arc::new(Caller {
                name: file_name.clone(),
                version: "?".into(),
            }),
            default_ports: DefaultPorts::default(),
            guard: None,
            pre,
            limits: self.inner.options.defaults,
            grants: Vec::new(),
            config: Arc::new(BTreeMap::new()),
        };
        let info = self
            .describe(&provisional)
            .await
            .map_err(|e| fail(format!("describe() failed: {e}")))?;
        if info.kind != contract.kind {
            return Err(fail(format!(
                "describe() says it is a {} plugin, but the component exports the {} interface",
                info.kind, contract.kind
            )));
        }
        if !valid_name(&info.name) {
            return Err(fail(format!(
                "describe() gives the name `{}`; a plugin name is 1 to 64 lowercase letters, digits, `-`, `_` or `.`",
                info.name
            )));
        }
        let default_ports = match ports_export {
            Some(export) if contract.kind == PluginKind::Transport => self
                .default_ports(&provisional, export)
                .await
                .map_err(|e| fail(format!("ports.default-port() failed: {e}")))?,
            _ => DefaultPorts::default(),
        };
        let guard = match guard_exports {
            Some(exports) if contract.kind == PluginKind::Transport => self
                .guard(&provisional, exports)
                .await
                .map_err(|e| fail(format!("guard.supported() failed: {e}")))?,
            _ => None,
        };
        let settings = self.inner.options.settings(&info.name);
        let grants = Policy::parse(&settings.allow)
            .map_err(|e| fail(format!("plugins.{}.allow: {e}", info.name)))?;
        let missing: Vec<&str> = info
            .config_keys
            .iter()
            .filter(|k| k.required && !settings.config.contains_key(&k.name))
            .map(|k| k.name.as_str())
            .collect();
        if strict && !missing.is_empty() {
            return Err(fail(format!(
                "plugin {} needs configuration the operator has not given: {} (set them under [plugins.{}.config])",
                info.name,
                missing.join(", "),
                info.name
            )));
        }
        let caller = Arc::new(Caller {
            name: info.name.clone(),
            version: info.version.to_string(),
        });
        Ok(LoadedPlugin {
            info,
            default_ports,
            guard,
            caller,
            limits: settings.limits,
            grants,
            config: Arc::new(settings.config),
            ..provisional
        })
    }

    /// Brings the registry in line with the plugins folder: loads new files, swaps in
    /// changed ones that validate (a failing one leaves the old version serving), and
    /// unloads deleted ones. One call at a time.
    pub async fn reconcile(&self) -> Vec<Change> {
        let _guard = self.inner.reconcile.lock().await;
        let dir = self.inner.options.plugins_dir.clone();
        let mut on_disk = BTreeMap::new();
        match std::fs::read_dir(&dir) {
            Ok(entries) => {
                for entry in entries.flatten() {
                    let path = entry.path();
                    let name = entry.file_name().to_string_lossy().into_owned();
                    // Editors and copy tools write dot-files first; only *.wasm counts.
                    if name.starts_with('.') || path.extension().is_none_or(|e| e != "wasm") {
                        continue;
                    }
                    if entry
                        .file_type()
                        .is_ok_and(|t| t.is_file() || t.is_symlink())
                    {
                        on_disk.insert(name, path);
                    }
                }
            }
            Err(e) => tracing::warn!("cannot read the plugins folder {}: {e}", dir.display()),
        }

        let mut changes = Vec::new();
        {
            let mut slots = self.slots_mut();
            let gone: Vec<String> = slots
                .keys()
                .filter(|f| !on_disk.contains_key(*f))
                .cloned()
                .collect();
            for file in gone {
                let plugin = slots.remove(&file).and_then(|s| s.active).map(|p| p.id());
                tracing::info!(
                    file,
                    plugin = plugin.as_deref().unwrap_or("-"),
                    "plugin file removed; unloaded"
                );
                changes.push(Change::Unloaded { file, plugin });
            }
        }

        for (file, path) in on_disk {
            // Taken before the read: a write after it changes the stat for the next look.
            let stat = FileStat::of(&path);
            let unchanged = stat.is_some()
                && self
                    .slots_mut()
                    .get(&file)
                    .and_then(|slot| slot.seen.as_ref())
                    .is_some_and(|seen| seen.stat == stat);
            if unchanged {
                continue;
            }
            let bytes = match read_plugin_file(&path) {
                Ok(bytes) => bytes,
                Err(error) => {
                    let mut slots = self.slots_mut();
                    let slot = slots.entry(file.clone()).or_default();
                    if slot.error.as_deref() != Some(error.as_str()) {
                        tracing::warn!(file, "{error}");
                        changes.push(Change::Failed {
                            file,
                            error: error.clone(),
                        });
                    }
                    slot.error = Some(error);
                    continue;
                }
            };
            let sha256 = sha256_hex(&bytes);
            {
                let mut slots = self.slots_mut();
                let slot = slots.entry(file.clone()).or_default();
                if let Some(seen) = slot.seen.as_mut().filter(|s| s.sha256 == sha256) {
                    seen.stat = stat;
                    continue;
                }
                if slot.active.as_ref().is_some_and(|p| p.sha256 == sha256) {
                    // Back to the content that is serving: the failed attempt is over.
                    slot.error = None;
                    slot.seen = Some(Fingerprint { sha256, stat });
                    continue;
                }
            }
            let loaded = self.load_bytes(&path, Arc::new(bytes)).await;
            let mut slots = self.slots_mut();
            let taken_by = loaded.as_ref().ok().and_then(|plugin| {
                slots
                    .iter()
                    .filter(|(f, _)| **f != file)
                    .find(|(_, s)| {
                        s.active
                            .as_ref()
                            .is_some_and(|a| a.info.name == plugin.info.name)
                    })
                    .map(|(f, _)| f.clone())
            });
            let slot = slots.entry(file.clone()).or_default();
            slot.seen = Some(Fingerprint { sha256, stat });
            match (loaded, taken_by) {
                (Ok(plugin), Some(other)) => {
                    let error = format!(
                        "{file}: the plugin name `{}` is already served by {other}; remove one of the two files",
                        plugin.info.name
                    );
                    tracing::warn!(file, "{error}");
                    slot.error = Some(error.clone());
                    changes.push(Change::Failed { file, error });
                }
                (Ok(plugin), None) => {
                    let new = plugin.id();
                    tracing::info!(
                        file,
                        plugin = %new,
                        kind = %plugin.info.kind,
                        wit = %plugin.wit_version,
                        cached = plugin.from_cache,
                        "plugin loaded"
                    );
                    let old = slot.active.replace(Arc::new(plugin)).map(|p| p.id());
                    slot.error = None;
                    changes.push(match old {
                        Some(old) => Change::Replaced { file, old, new },
                        None => Change::Loaded { file, plugin: new },
                    });
                }
                (Err(error), _) => {
                    let serving = slot.active.as_ref().map(|p| p.id());
                    match &serving {
                        Some(old) => tracing::warn!(file, "{error}; {old} keeps serving"),
                        None => tracing::warn!(file, "{error}"),
                    }
                    let error = error.to_string();
                    slot.error = Some(error.clone());
                    changes.push(Change::Failed { file, error });
                }
            }
        }
        changes
    }

    fn slots_mut(&self) -> std::sync::RwLockWriteGuard<'_, BTreeMap<String, Slot>> {
        match self.inner.slots.write() {
            Ok(slots) => slots,
            Err(poisoned) => poisoned.into_inner(),
        }
    }
}

fn read_plugin_file(path: &Path) -> Result<Vec<u8>, String> {
    let name = path.display();
    let meta = std::fs::metadata(path).map_err(|e| format!("cannot read {name}: {e}"))?;
    if meta.len() > MAX_PLUGIN_FILE {
        return Err(format!(
            "{name} is {} MiB; plugin files may be at most {} MiB",
            meta.len() >> 20,
            MAX_PLUGIN_FILE >> 20
        ));
    }
    std::fs::read(path).map_err(|e| format!("cannot read {name}: {e}"))
}

#[allow(unsafe_code)]
fn deserialize(engine: &Engine, path: &Path) -> wasmtime::Result<Component> {
    // SAFETY: the cache holds only what `write_cache` wrote from components this engine
    // compiled, in the engine's own data directory, named by the compatibility hash of
    // this engine's configuration; wasmtime also checks the header before using it.
    unsafe { Component::deserialize_file(engine, path) }
}

fn write_cache(component: &Component, path: &Path) -> std::io::Result<()> {
    let bytes = component
        .serialize()
        .map_err(|e| std::io::Error::other(e.to_string()))?;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    // Write then rename, so a crash never leaves a half-written artifact to load.
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A file written a moment ago may be written again within the same clock tick, so
    /// its stat is not trusted to skip the next read; an old file's is, and names it.
    #[test]
    fn only_a_settled_file_is_known_by_its_stat() {
        let dir = tempfile::tempdir().expect("dir");
        let fresh = dir.path().join("fresh.wasm");
        std::fs::write(&fresh, b"one").expect("write");
        assert_eq!(FileStat::of(&fresh), None);
        assert_eq!(FileStat::of(&dir.path().join("missing.wasm")), None);
        // The crate's manifest was written when the sources were checked out.
        let settled = Path::new(env!("CARGO_MANIFEST_DIR")).join("Cargo.toml");
        let stat = FileStat::of(&settled).expect("a settled file has a stat");
        assert_eq!(FileStat::of(&settled), Some(stat.clone()));
        assert_eq!(stat.len, std::fs::metadata(&settled).expect("meta").len());
    }

    #[test]
    fn prechecks_say_what_the_file_is() {
        assert_eq!(precheck(b"").err().as_deref(), Some("the file is empty"));
        assert!(
            precheck(b"hello world")
                .err()
                .unwrap_or_default()
                .contains("`\\0asm` header")
        );
        assert!(
            precheck(b"\0asm\x01\0\0\0")
                .err()
                .unwrap_or_default()
                .contains("core WebAssembly module")
        );
        assert!(precheck(b"\0asm\x0d\0\x01\0").is_ok());
    }

    #[test]
    fn plugin_names() {
        assert!(valid_name("routeros-api"));
        assert!(valid_name("echo2"));
        assert!(!valid_name(""));
        assert!(!valid_name("Echo"));
        assert!(!valid_name("-x"));
        assert!(!valid_name("a b"));
        assert!(!valid_name(&"a".repeat(65)));
    }
}
