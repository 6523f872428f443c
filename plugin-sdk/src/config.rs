//! The plugin's own configuration, as the operator wrote it in the engine's config
//! file. Declare every key you read in `describe()` (see
//! [`PluginInfo::with_config_key`](crate::PluginInfo::with_config_key)) so operators
//! know it exists.
//!
//! Outside the engine (a plugin's own native unit tests) no key is set.

use std::fmt;

/// The value of `key`, or `None` when the operator did not set it.
pub fn get(key: &str) -> Option<String> {
    lookup(key)
}

/// The value of `key`, or `default` when the operator did not set it.
pub fn get_or(key: &str, default: &str) -> String {
    lookup(key).unwrap_or_else(|| default.to_owned())
}

/// The value of `key`, or an error naming the key when the operator did not set it.
pub fn require(key: &str) -> Result<String, MissingKey> {
    lookup(key).ok_or_else(|| MissingKey {
        key: key.to_owned(),
    })
}

/// A required configuration key that the operator did not set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MissingKey {
    /// The key that was asked for.
    pub key: String,
}

impl fmt::Display for MissingKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "configuration key `{}` is not set", self.key)
    }
}

impl std::error::Error for MissingKey {}

#[cfg(target_arch = "wasm32")]
fn lookup(key: &str) -> Option<String> {
    crate::bindings::host::yardmaster::host::config::get(key)
}

#[cfg(not(target_arch = "wasm32"))]
fn lookup(_key: &str) -> Option<String> {
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn natively_nothing_is_set() {
        assert_eq!(get("greeting"), None);
        assert_eq!(get_or("greeting", "hello"), "hello");
        let missing = require("api-key").expect_err("nothing is set natively");
        assert_eq!(
            missing.to_string(),
            "configuration key `api-key` is not set"
        );
    }
}
