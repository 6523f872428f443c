//! Yardmaster: schedules, authorizes and executes RouterOS scripts (and any script
//! reachable over SSH) across fleets of routers.
//!
//! The engine owns what must never be lost or done twice; everything that talks to the
//! outside world is a WebAssembly component plugin.
//!
//! - [`approval`]: authorizing scheduled scripts: four eyes, single-use links, hash-bound.
//! - [`auth`]: JWT bearer tokens, scopes and organizations: who is calling.
//! - [`budget`]: how many jobs and plugin calls the machine holds at once, worked out at
//!   start from memory, the open-file limit and the instance pool's reservations.
//! - [`config`]: the TOML file, `YARDMASTER_*` variables and flags, with working defaults.
//! - [`plugins`]: the plugin host: loading, hot reload, isolation, allow-lists, and typed
//!   calls into transports, notifiers, script sources and generators.
//! - [`runner`]: running commands and scripts on sites through their transport.
//! - [`scheduler`]: when scheduled scripts run: recurrences, occurrence indexes, missed runs.
//! - [`notify`]: outbox events delivered through the webhook and e-mail plugins, with
//!   retries, per-job order and dead letters.
//! - [`api`]: the embedded HTTP API (axum).
//! - [`lint`]: the RouterOS script parser and safety linter behind `POST /scripts/lint`.
//! - [`simulate`]: a fleet of simulated RouterOS devices on loopback (`yardmaster simulate`).
//! - [`store`]: the durable state in one redb file: sites (credentials sealed), scheduled
//!   scripts, runs, the never-twice ledger, jobs, users, audit log and outbox.
//! - [`templates`]: script templates' typed variables, injection-safe rendering, and the
//!   global templates read from `templates_dir`.
//! - [`community`]: the community library's processor: submissions fetched through the
//!   `github` script-source plugin, pinned to a commit, from a durable queue.
//! - [`summaries`]: what each script does, in a sentence: written by the generator
//!   plugin, or from the linter's parse without one.
//! - [`server`]: `yardmaster serve`, tying the pieces together with graceful shutdown.
//! - [`client`]: the small HTTP client the CLI uses to talk to a running engine.
//! - [`cli`]: the client commands (`site`, `script`, `job`, `token create`).
//! - [`demo`]: `yardmaster demo`, the engine with a simulated fleet registered as sites.

/// Every binary that links the engine allocates through mimalloc: thousands of plugin
/// calls and connections at once churn small allocations across threads, where it
/// spends far less time than the system allocator.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

pub mod api;
pub mod approval;
pub mod auth;
pub mod budget;
pub mod cli;
pub mod client;
pub mod community;
pub mod config;
pub mod demo;
pub mod lint;
pub mod notify;
pub mod plugins;
pub mod runner;
pub mod scheduler;
pub mod server;
pub mod simulate;
pub mod store;
pub mod summaries;
pub mod templates;
