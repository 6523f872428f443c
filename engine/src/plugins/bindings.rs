//! Host-side bindings of version 1 of the plugin contract, generated from `wit/`.
//!
//! The host imports (`log`, `config`, `tls`, `ssh`) are generated once and shared by the four
//! plugin worlds, so there is one set of host types. A later major version of a kind
//! gets a module of its own beside these, with its own supported range in
//! `plugins::version`.

/// `yardmaster:host@1.1.0`: what every plugin may import. A plugin built against 1.0
/// imports the same interfaces at 1.0.0, and wasmtime links those to these by semver;
/// 1.1 only added `ssh`.
pub(crate) mod host {
    wasmtime::component::bindgen!({
        path: ["../wit/host@1.1.0"],
        world: "yardmaster:host/imports",
        imports: { default: async | trappable },
        with: {
            "yardmaster:host/tls.connection": crate::plugins::host::Connection,
            "yardmaster:host/ssh.session": crate::plugins::ssh::Session,
        },
    });
}

macro_rules! plugin_world {
    ($module:ident, $dir:literal, $world:literal) => {
        pub(crate) mod $module {
            wasmtime::component::bindgen!({
                path: ["../wit/host@1.0.0", $dir],
                world: $world,
                imports: { default: async | trappable },
                exports: { default: async },
                with: {
                    "yardmaster:host": crate::plugins::bindings::host::yardmaster::host,
                },
            });
        }
    };
}

// Transport 1.1 only added the `ports` interface and 1.2 the `guard` interface, each
// looked up by name when a plugin loads (`kinds::ports_export`, `kinds::guard_exports`);
// `plugin` is unchanged, and wasmtime matches these 1.0 bindings to a 1.1 or 1.2
// component's `plugin@1.x.0` export by semver.
plugin_world!(
    transport,
    "../wit/transport@1.0.0",
    "yardmaster:transport/transport"
);
plugin_world!(
    notifier,
    "../wit/notifier@1.0.0",
    "yardmaster:notifier/notifier"
);
plugin_world!(
    script_source,
    "../wit/script-source@1.0.0",
    "yardmaster:script-source/script-source"
);
// Script source 1.1 added `catalog`; a 1.1 component is also linked with these bindings,
// which call its `catalog` export, while `plugin` goes through the 1.0 ones above.
plugin_world!(
    script_source_catalog,
    "../wit/script-source@1.1.0",
    "yardmaster:script-source/script-source"
);
// Generator 1.1 added `chat`, called through these bindings; `plugin` goes through the
// 1.0 ones below.
plugin_world!(
    generator_chat,
    "../wit/generator@1.1.0",
    "yardmaster:generator/generator"
);
plugin_world!(
    generator,
    "../wit/generator@1.0.0",
    "yardmaster:generator/generator"
);
