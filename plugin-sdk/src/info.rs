//! What a plugin says about itself in `describe()`, with builders so that a plugin
//! states its name, version and needs in one expression.

pub use crate::bindings::host::yardmaster::host::types::{ConfigKey, PluginInfo, PluginKind};

impl PluginInfo {
    /// A plugin with no description, configuration keys or endpoints yet.
    ///
    /// `version` is the plugin's own semantic version; `env!("CARGO_PKG_VERSION")` keeps
    /// it in step with the crate.
    pub fn new(name: impl Into<String>, version: impl Into<String>, kind: PluginKind) -> Self {
        Self {
            name: name.into(),
            version: version.into(),
            kind,
            description: String::new(),
            config_keys: Vec::new(),
            endpoints: Vec::new(),
        }
    }

    /// Sets the one-line description shown to operators.
    #[must_use]
    pub fn with_description(mut self, description: impl Into<String>) -> Self {
        self.description = description.into();
        self
    }

    /// Declares a configuration key the plugin reads through [`crate::config`].
    #[must_use]
    pub fn with_config_key(mut self, key: ConfigKey) -> Self {
        self.config_keys.push(key);
        self
    }

    /// Declares a network endpoint the plugin needs beyond the sites it serves
    /// (`host:port`, `ip:port`, `cidr:port` or `https://host`). Only the operator's
    /// allow-list grants it; declaring it tells the operator what to grant.
    #[must_use]
    pub fn with_endpoint(mut self, endpoint: impl Into<String>) -> Self {
        self.endpoints.push(endpoint.into());
        self
    }
}

impl ConfigKey {
    /// A key the plugin works without.
    pub fn optional(name: impl Into<String>, description: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            description: description.into(),
            required: false,
            secret: false,
        }
    }

    /// A key the plugin cannot work without; operators see it marked as required.
    pub fn required(name: impl Into<String>, description: impl Into<String>) -> Self {
        Self {
            required: true,
            ..Self::optional(name, description)
        }
    }

    /// Marks the value as secret, so the engine never logs or shows it.
    #[must_use]
    pub fn secret(mut self) -> Self {
        self.secret = true;
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builders_fill_every_field() {
        let info = PluginInfo::new("webhook", "1.2.0", PluginKind::Notifier)
            .with_description("Posts events as JSON")
            .with_config_key(ConfigKey::required("secret", "HMAC key").secret())
            .with_config_key(ConfigKey::optional("timeout-ms", "Request time limit"))
            .with_endpoint("https://hooks.example.com");

        assert_eq!(info.name, "webhook");
        assert_eq!(info.version, "1.2.0");
        assert_eq!(info.kind, PluginKind::Notifier);
        assert_eq!(info.description, "Posts events as JSON");
        assert_eq!(info.endpoints, ["https://hooks.example.com"]);
        assert_eq!(
            info.config_keys,
            [
                ConfigKey {
                    name: "secret".into(),
                    description: "HMAC key".into(),
                    required: true,
                    secret: true,
                },
                ConfigKey {
                    name: "timeout-ms".into(),
                    description: "Request time limit".into(),
                    required: false,
                    secret: false,
                },
            ]
        );
    }
}
