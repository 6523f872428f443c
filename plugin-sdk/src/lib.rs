//! Write Yardmaster plugins in Rust.
//!
//! A plugin is a WebAssembly component (`wasm32-wasip2`) of one of four kinds:
//! a [`transport`] reaches routers, a [`notifier`] delivers events, a
//! [`script_source`] fetches community scripts and a [`generator`] writes scripts. A
//! plugin is one file: implement the kind's trait on a type and call the kind's export
//! macro once.
//!
//! # Quickstart: a transport in one file
//!
//! `Cargo.toml`:
//!
//! ```toml
//! [package]
//! name = "line-shell"
//! version = "0.1.0"
//! edition = "2024"
//!
//! [lib]
//! crate-type = ["cdylib"]
//!
//! [dependencies]
//! # The SDK reads the contract from the repository's `wit/`, so it comes from the
//! # repository (or a path to a checkout of it).
//! yardmaster-plugin-sdk = { git = "https://github.com/yardmaster/yardmaster" }
//! ```
//!
//! `src/lib.rs`, a transport that sends each script to a line-oriented shell, over
//! TLS when the site asks for it:
//!
//! ```no_run
//! use std::io::{Read, Write};
//! use std::time::Duration;
//!
//! use yardmaster_plugin_sdk::net::Connection;
//! use yardmaster_plugin_sdk::transport::{
//!     BackupResult, CommandReply, ProbeResult, Target, Transport, TransportError,
//! };
//! use yardmaster_plugin_sdk::{ConfigKey, PluginInfo, PluginKind, config, log};
//!
//! /// Output beyond this is cut off rather than held in memory.
//! const MAX_OUTPUT: u64 = 1024 * 1024;
//!
//! struct LineShell;
//!
//! impl LineShell {
//!     fn connect(target: &Target) -> Result<Connection, TransportError> {
//!         // The site's own port, or the default this plugin declares below.
//!         let port = target.port_or(2323);
//!         let mut conn = match target.tls_options() {
//!             Some(tls) => Connection::connect(&target.address, port, &tls)?,
//!             None => {
//!                 let timeout = target.connect_timeout_or(Duration::from_secs(5));
//!                 Connection::connect_plain(&target.address, port, Some(timeout))?
//!             }
//!         };
//!         conn.set_read_timeout(Some(target.reply_timeout_or(Duration::from_secs(30))));
//!         Ok(conn)
//!     }
//! }
//!
//! impl Transport for LineShell {
//!     fn describe() -> PluginInfo {
//!         PluginInfo::new("line-shell", env!("CARGO_PKG_VERSION"), PluginKind::Transport)
//!             .with_description("Runs scripts on a line-oriented shell")
//!             .with_config_key(ConfigKey::optional("banner", "Sent before every script"))
//!     }
//!
//!     fn run_command(target: Target, words: Vec<String>) -> Result<CommandReply, TransportError> {
//!         let output = Self::run_script(target, words.join(" "))?;
//!         let rows = output.lines().map(|line| vec![("line".to_owned(), line.to_owned())]);
//!         Ok(CommandReply::from_rows(rows.collect()))
//!     }
//!
//!     fn run_script(target: Target, script: String) -> Result<String, TransportError> {
//!         log::info!("running {} bytes on {}", script.len(), target.site_id);
//!         let mut conn = Self::connect(&target)?;
//!         if let Some(banner) = config::get("banner") {
//!             writeln!(conn, "{banner}")?;
//!         }
//!         writeln!(conn, "{script}")?;
//!         let mut output = String::new();
//!         (&mut conn).take(MAX_OUTPUT).read_to_string(&mut output)?;
//!         if output.starts_with("error:") {
//!             return Err(TransportError::Script(output));
//!         }
//!         Ok(output)
//!     }
//!
//!     fn backup(_: Target, _: Option<String>) -> Result<BackupResult, TransportError> {
//!         Err(TransportError::Unsupported("a line shell has no configuration export".into()))
//!     }
//!
//!     fn probe(target: Target) -> Result<ProbeResult, TransportError> {
//!         let online = Self::connect(&target);
//!         Ok(ProbeResult {
//!             online: online.is_ok(),
//!             identity: None,
//!             version: None,
//!             board: None,
//!             uptime: None,
//!             detail: online.err().map(|e| e.to_string()),
//!         })
//!     }
//! }
//!
//! yardmaster_plugin_sdk::export_transport!(LineShell, default_port = 2323);
//! # fn main() {}
//! ```
//!
//! Build it and drop the component into the engine's plugins folder:
//!
//! ```text
//! rustup target add wasm32-wasip2
//! cargo build --release --target wasm32-wasip2
//! cp target/wasm32-wasip2/release/line_shell.wasm /path/to/yardmaster/plugins/
//! ```
//!
//! # Layout
//!
//! - One module per kind, each with its trait under a friendly name and the records of
//!   its contract: [`transport::Transport`], [`notifier::Notifier`],
//!   [`script_source::ScriptSource`], [`generator::Generator`]. Their export macros are
//!   [`export_transport!`], [`export_notifier!`], [`export_script_source!`] and
//!   [`export_generator!`]; each takes the name of a type in scope that implements the
//!   trait. The traits have no `self`: the engine makes a fresh instance for every
//!   call, so a plugin keeps no state between calls.
//! - [`PluginInfo`], [`PluginKind`] and [`ConfigKey`], what every kind's `describe()`
//!   returns, with builders.
//! - Helpers over what the engine offers every plugin: [`log`] into the engine's log,
//!   the plugin's own [`config`], and [`net`] connections with TLS done by the engine.
//! - [`routeros`], the RouterOS API wire protocol, usable natively as well, and
//!   [`routeros::script_error`], which tells console output that reports an error.
//! - With the `ssh` feature, `ssh`: SSH sessions made by the engine
//!   (`yardmaster:host/ssh@1.1.0`, which needs an engine that provides host 1.1).
//! - With the `http` feature, `http`: HTTP requests through wasi:http, with the HTTPS
//!   and the allow-list done by the engine, timeouts, a capped (or truncating) read of
//!   the response body, and one error kind per way a request fails.
//!
//! The bindings are generated from the WIT files in the repository's `wit/`, the
//! single description of the contract. The SDK also builds natively, so a plugin's
//! logic can be unit-tested with a plain `cargo test`: there, log lines go to standard
//! error, no configuration key is set, and connections and HTTP requests fail.

#[doc(hidden)]
pub mod bindings;
pub mod config;
pub mod generator;
#[cfg(feature = "http")]
pub mod http;
mod info;
pub mod log;
pub mod net;
pub mod notifier;
pub mod routeros;
pub mod script_source;
#[cfg(feature = "ssh")]
pub mod ssh;
pub mod transport;

pub use info::{ConfigKey, PluginInfo, PluginKind};

// Natively the export macros only check the trait: a component's export names contain
// `:`, which a native shared library cannot even link, and nothing native could call
// them. So `cargo build --workspace` and a plugin's native unit tests still work.
#[doc(hidden)]
pub const fn __native_transport<T: transport::Transport>() {}
#[doc(hidden)]
pub const fn __native_rollback<T: transport::Rollback>() {}
#[doc(hidden)]
pub const fn __native_notifier<T: notifier::Notifier>() {}
#[doc(hidden)]
pub const fn __native_script_source<T: script_source::ScriptSource + script_source::Catalog>() {}
#[doc(hidden)]
pub const fn __native_generator<T: generator::Generator + generator::Chat>() {}

/// Exports a type implementing [`transport::Transport`] as the plugin's transport.
///
/// Call it once, at the top level of the plugin crate, with the name of a type in scope
/// (a path is not accepted). The crate-level documentation has a complete example.
///
/// Name the ports the transport uses when a site gives none, so the engine can grant a
/// call exactly that endpoint: `export_transport!(Shell, default_port = 2323)`, or
/// `export_transport!(Api, default_port = 8728, default_tls_port = 8729)`. Without them,
/// a site served by the plugin must name its port.
///
/// A transport that implements [`transport::Rollback`] adds `rollback` last:
/// `export_transport!(Api, default_port = 8728, default_tls_port = 8729, rollback)`.
/// Without it the plugin still exports the guard interface of contract 1.2, answering
/// that it cannot arm a rollback.
#[macro_export]
macro_rules! export_transport {
    ($ty:ident) => {
        $crate::export_transport!(@ports $ty, None, None, none);
    };
    ($ty:ident, default_port = $plain:expr) => {
        $crate::export_transport!(@ports $ty, Some($plain), None, none);
    };
    ($ty:ident, default_port = $plain:expr, default_tls_port = $tls:expr) => {
        $crate::export_transport!(@ports $ty, Some($plain), Some($tls), none);
    };
    ($ty:ident, default_port = $plain:expr, rollback) => {
        $crate::export_transport!(@ports $ty, Some($plain), None, rollback);
    };
    ($ty:ident, default_port = $plain:expr, default_tls_port = $tls:expr, rollback) => {
        $crate::export_transport!(@ports $ty, Some($plain), Some($tls), rollback);
    };
    (@guard $ty:ident, none) => {
        #[cfg(target_arch = "wasm32")]
        impl $crate::bindings::transport::exports::yardmaster::transport::guard::Guest for $ty {
            fn supported() -> bool {
                false
            }
            fn arm(
                _target: $crate::transport::Target,
                _name: String,
                _seconds: u32,
            ) -> Result<$crate::transport::Armed, $crate::transport::TransportError> {
                Err($crate::transport::TransportError::Unsupported(
                    "this transport cannot arm a dead-man rollback".to_owned(),
                ))
            }
            fn disarm(
                _target: $crate::transport::Target,
                _armed: $crate::transport::Armed,
            ) -> Result<(), $crate::transport::TransportError> {
                Err($crate::transport::TransportError::Unsupported(
                    "this transport cannot arm a dead-man rollback".to_owned(),
                ))
            }
        }
    };
    (@guard $ty:ident, rollback) => {
        #[cfg(target_arch = "wasm32")]
        impl $crate::bindings::transport::exports::yardmaster::transport::guard::Guest for $ty {
            fn supported() -> bool {
                true
            }
            fn arm(
                target: $crate::transport::Target,
                name: String,
                seconds: u32,
            ) -> Result<$crate::transport::Armed, $crate::transport::TransportError> {
                <$ty as $crate::transport::Rollback>::arm(target, name, seconds)
            }
            fn disarm(
                target: $crate::transport::Target,
                armed: $crate::transport::Armed,
            ) -> Result<(), $crate::transport::TransportError> {
                <$ty as $crate::transport::Rollback>::disarm(target, armed)
            }
        }
        #[cfg(not(target_arch = "wasm32"))]
        const _: () = $crate::__native_rollback::<$ty>();
    };
    (@ports $ty:ident, $plain:expr, $tls:expr, $guard:ident) => {
        #[cfg(target_arch = "wasm32")]
        impl $crate::bindings::transport::exports::yardmaster::transport::ports::Guest for $ty {
            fn default_port(tls: bool) -> Option<u16> {
                if tls { $tls } else { $plain }
            }
        }
        $crate::export_transport!(@guard $ty, $guard);
        #[cfg(target_arch = "wasm32")]
        $crate::bindings::transport::export_transport!($ty);
        #[cfg(not(target_arch = "wasm32"))]
        const _: () = $crate::__native_transport::<$ty>();
    };
}

/// Exports a type implementing [`notifier::Notifier`] as the plugin's notifier.
///
/// Call it once, at the top level of the plugin crate, with the name of a type in scope
/// (a path is not accepted).
#[macro_export]
macro_rules! export_notifier {
    ($ty:ident) => {
        #[cfg(target_arch = "wasm32")]
        $crate::bindings::notifier::export_notifier!($ty);
        #[cfg(not(target_arch = "wasm32"))]
        const _: () = $crate::__native_notifier::<$ty>();
    };
}

/// Exports a type implementing [`script_source::ScriptSource`] as the plugin's script
/// source.
///
/// Call it once, at the top level of the plugin crate, with the name of a type in scope
/// (a path is not accepted).
#[macro_export]
macro_rules! export_script_source {
    ($ty:ident) => {
        #[cfg(target_arch = "wasm32")]
        $crate::bindings::script_source::export_script_source!($ty);
        #[cfg(not(target_arch = "wasm32"))]
        const _: () = $crate::__native_script_source::<$ty>();
    };
}

/// Exports a type implementing [`generator::Generator`] as the plugin's generator.
///
/// Call it once, at the top level of the plugin crate, with the name of a type in scope
/// (a path is not accepted).
#[macro_export]
macro_rules! export_generator {
    ($ty:ident) => {
        #[cfg(target_arch = "wasm32")]
        $crate::bindings::generator::export_generator!($ty);
        #[cfg(not(target_arch = "wasm32"))]
        const _: () = $crate::__native_generator::<$ty>();
    };
}
