//! Log lines into the engine's log, where they are tagged with the plugin's name and
//! version.
//!
//! Each level is both a function taking a message and a macro taking format
//! arguments:
//!
//! ```no_run
//! use yardmaster_plugin_sdk::log;
//!
//! log::info("connected");
//! let site = "core-1";
//! log::warn!("{site} answered slowly");
//! ```
//!
//! Outside the engine (a plugin's own native unit tests) lines go to standard error,
//! which the test harness captures.

pub use crate::bindings::host::yardmaster::host::log::Level;

/// The host truncates longer messages; cutting here saves copying the rest across.
const MAX_MESSAGE: usize = 8 * 1024;

/// Logs `message` at `level`.
pub fn log(level: Level, message: &str) {
    emit(level, truncate(message, MAX_MESSAGE));
}

/// Logs `message` at trace level.
pub fn trace(message: &str) {
    log(Level::Trace, message);
}

/// Logs `message` at debug level.
pub fn debug(message: &str) {
    log(Level::Debug, message);
}

/// Logs `message` at info level.
pub fn info(message: &str) {
    log(Level::Info, message);
}

/// Logs `message` at warn level.
pub fn warn(message: &str) {
    log(Level::Warn, message);
}

/// Logs `message` at error level.
pub fn error(message: &str) {
    log(Level::Error, message);
}

#[cfg(target_arch = "wasm32")]
fn emit(level: Level, message: &str) {
    crate::bindings::host::yardmaster::host::log::log(level, message);
}

#[cfg(not(target_arch = "wasm32"))]
fn emit(level: Level, message: &str) {
    eprintln!("[{level:?}] {message}");
}

/// The longest prefix of `message` that fits in `max` bytes without splitting a
/// character.
fn truncate(message: &str, max: usize) -> &str {
    if message.len() <= max {
        return message;
    }
    let mut end = max;
    while !message.is_char_boundary(end) {
        end -= 1;
    }
    &message[..end]
}

#[doc(hidden)]
#[macro_export]
macro_rules! __log_trace {
    ($($arg:tt)+) => {
        $crate::log::trace(&::std::format!($($arg)+))
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __log_debug {
    ($($arg:tt)+) => {
        $crate::log::debug(&::std::format!($($arg)+))
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __log_info {
    ($($arg:tt)+) => {
        $crate::log::info(&::std::format!($($arg)+))
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __log_warn {
    ($($arg:tt)+) => {
        $crate::log::warn(&::std::format!($($arg)+))
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __log_error {
    ($($arg:tt)+) => {
        $crate::log::error(&::std::format!($($arg)+))
    };
}

/// Logs at trace level with `format!` arguments.
#[doc(inline)]
pub use crate::__log_trace as trace;

/// Logs at debug level with `format!` arguments.
#[doc(inline)]
pub use crate::__log_debug as debug;

/// Logs at info level with `format!` arguments.
#[doc(inline)]
pub use crate::__log_info as info;

/// Logs at warn level with `format!` arguments.
#[doc(inline)]
pub use crate::__log_warn as warn;

/// Logs at error level with `format!` arguments.
#[doc(inline)]
pub use crate::__log_error as error;

#[cfg(test)]
mod tests {
    use super::truncate;

    #[test]
    fn truncation_keeps_whole_characters() {
        assert_eq!(truncate("short", 8), "short");
        assert_eq!(truncate("abcdef", 3), "abc");
        // "é" is two bytes; cutting inside it must back off to before it.
        assert_eq!(truncate("aé", 2), "a");
        assert_eq!(truncate("aé", 3), "aé");
    }

    #[test]
    fn macros_and_functions_share_names() {
        let site = "core-1";
        crate::log::info!("{site} reached");
        crate::log::info("plain");
    }
}
