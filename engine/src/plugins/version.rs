//! Which versions of the plugin contract this engine speaks, and how a component is
//! matched against them before it is instantiated.
//!
//! A component names the packages it was built against in its import and export names
//! (`yardmaster:transport/plugin@1.0.0`). The engine supports a range per package: any
//! 1.x export of a kind while 1 is the current major version, and host imports up to the
//! host version it implements.

use semver::{Version, VersionReq};

use super::PluginKind;

/// The host package this engine implements.
pub(crate) const HOST_PACKAGE: &str = "yardmaster:host";
pub(crate) const HOST_VERSION: Version = Version::new(1, 1, 0);

/// One kind's package and the range of its versions the engine accepts.
pub(crate) struct Supported {
    pub kind: PluginKind,
    pub package: &'static str,
    pub implemented: Version,
}

impl Supported {
    pub(crate) fn range(&self) -> VersionReq {
        // Caret: the same major version, at least what the engine was written against
        // at that major. A newer minor can only add, and wasmtime links by semver.
        VersionReq::parse(&format!("^{}", self.implemented.major)).unwrap_or(VersionReq::STAR)
    }
}

pub(crate) static SUPPORTED: [Supported; 4] = [
    Supported {
        kind: PluginKind::Transport,
        package: "yardmaster:transport",
        implemented: Version::new(1, 2, 0),
    },
    Supported {
        kind: PluginKind::Notifier,
        package: "yardmaster:notifier",
        implemented: Version::new(1, 0, 0),
    },
    Supported {
        kind: PluginKind::ScriptSource,
        package: "yardmaster:script-source",
        implemented: Version::new(1, 0, 0),
    },
    Supported {
        kind: PluginKind::Generator,
        package: "yardmaster:generator",
        implemented: Version::new(1, 0, 0),
    },
];

/// `yardmaster:transport/plugin@1.0.0` -> (`yardmaster:transport`, `plugin`, 1.0.0).
fn split_name(name: &str) -> Option<(&str, &str, Option<Version>)> {
    let (path, version) = match name.split_once('@') {
        Some((path, version)) => (path, Some(Version::parse(version).ok()?)),
        None => (name, None),
    };
    let (package, interface) = path.split_once('/')?;
    Some((package, interface, version))
}

/// What a component was built against, as read from its names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Contract {
    pub kind: PluginKind,
    /// The version of the kind's package the component exports.
    pub version: Version,
}

/// Works out the kind and contract version of a component from its export and import
/// names, or says precisely why the engine cannot run it.
pub(crate) fn check<'a>(
    exports: impl IntoIterator<Item = &'a str>,
    imports: impl IntoIterator<Item = &'a str>,
) -> Result<Contract, String> {
    let mut found: Option<Contract> = None;
    let mut foreign = Vec::new();
    for name in exports {
        let Some((package, interface, version)) = split_name(name) else {
            continue;
        };
        let Some(supported) = SUPPORTED.iter().find(|s| s.package == package) else {
            if package.starts_with("yardmaster:") {
                foreign.push(name.to_string());
            }
            continue;
        };
        if interface != "plugin" {
            continue;
        }
        let Some(version) = version else {
            return Err(format!(
                "the component exports `{name}` without a version; build it against {}@{}",
                supported.package, supported.implemented
            ));
        };
        if !supported.range().matches(&version) {
            return Err(format!(
                "the component was built against {package}@{version}, but this engine supports {package}@{} ({}); rebuild it against a {}.x version of the contract",
                supported.implemented,
                supported.range(),
                supported.implemented.major,
            ));
        }
        if let Some(previous) = &found {
            return Err(format!(
                "the component exports both a {} and a {} plugin; a plugin is of one kind",
                previous.kind, supported.kind
            ));
        }
        found = Some(Contract {
            kind: supported.kind,
            version,
        });
    }
    let Some(contract) = found else {
        let mut message = String::from(
            "the component exports no Yardmaster plugin interface (one of yardmaster:transport/plugin, yardmaster:notifier/plugin, yardmaster:script-source/plugin, yardmaster:generator/plugin, version 1.x)",
        );
        if !foreign.is_empty() {
            message.push_str(&format!("; it exports {}", foreign.join(", ")));
        }
        return Err(message);
    };
    for name in imports {
        let Some((package, _, version)) = split_name(name) else {
            continue;
        };
        if package != HOST_PACKAGE {
            continue;
        }
        let Some(version) = version else {
            return Err(format!("the component imports `{name}` without a version"));
        };
        if version.major != HOST_VERSION.major || version > HOST_VERSION {
            return Err(format!(
                "the component imports {HOST_PACKAGE}@{version}, but this engine provides {HOST_PACKAGE}@{HOST_VERSION}"
            ));
        }
    }
    Ok(contract)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_current_transport() {
        let contract = check(
            ["yardmaster:transport/plugin@1.0.0"],
            ["yardmaster:host/log@1.0.0", "wasi:io/streams@0.2.6"],
        )
        .expect("supported");
        assert_eq!(contract.kind, PluginKind::Transport);
        assert_eq!(contract.version, Version::new(1, 0, 0));
    }

    #[test]
    fn a_newer_minor_is_accepted() {
        let contract = check(["yardmaster:notifier/plugin@1.3.0"], []).expect("supported");
        assert_eq!(contract.kind, PluginKind::Notifier);
    }

    #[test]
    fn another_major_names_both_versions() {
        let err = check(["yardmaster:transport/plugin@2.0.0"], []).expect_err("refused");
        assert!(err.contains("yardmaster:transport@2.0.0"), "{err}");
        assert!(err.contains("yardmaster:transport@1.2.0"), "{err}");
    }

    #[test]
    fn a_newer_host_is_refused() {
        let err = check(
            ["yardmaster:generator/plugin@1.0.0"],
            ["yardmaster:host/tls@1.2.0"],
        )
        .expect_err("refused");
        assert!(err.contains("yardmaster:host@1.2.0"), "{err}");
        assert!(err.contains("yardmaster:host@1.1.0"), "{err}");
    }

    #[test]
    fn host_1_0_and_1_1_imports_are_accepted() {
        check(
            ["yardmaster:transport/plugin@1.1.0"],
            ["yardmaster:host/log@1.0.0", "yardmaster:host/ssh@1.1.0"],
        )
        .expect("supported");
    }

    #[test]
    fn no_plugin_interface() {
        let err = check(["wasi:cli/run@0.2.6"], []).expect_err("refused");
        assert!(
            err.contains("exports no Yardmaster plugin interface"),
            "{err}"
        );
    }

    #[test]
    fn two_kinds_are_refused() {
        let err = check(
            [
                "yardmaster:transport/plugin@1.0.0",
                "yardmaster:notifier/plugin@1.0.0",
            ],
            [],
        )
        .expect_err("refused");
        assert!(err.contains("of one kind"), "{err}");
    }
}
