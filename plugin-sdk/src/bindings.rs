//! Bindings generated from `wit/`, the single source of truth for the plugin contract.
//!
//! The host interfaces (`yardmaster:host`) are generated once, in [`host`], and every
//! kind's world maps onto them with `with:`, so a `PluginInfo` or a `NetError` is the
//! same Rust type whichever kind a plugin is. Each kind's world is generated in its own
//! module with a public export macro; wit-bindgen then places that world's export
//! description inside the macro, so a plugin's component only claims the exports of the
//! one kind whose macro it calls.
//!
//! This module is public only because the export macros expand to paths inside it; it
//! is not part of the SDK's API.

#![allow(unsafe_code, clippy::all)]

pub mod host {
    wit_bindgen::generate!({
        path: ["../wit/host@1.0.0"],
        world: "yardmaster:host/imports@1.0.0",
        // `types` has no functions, so nothing would otherwise pull its records in.
        generate_unused_types: true,
        additional_derives: [PartialEq, Eq],
    });
}

/// `yardmaster:host/ssh@1.1.0`, only with the `ssh` feature, so a plugin that does not
/// use it keeps importing nothing newer than host 1.0. The other 1.1 interfaces are the
/// 1.0 ones, so they map onto [`host`].
#[cfg(feature = "ssh")]
pub mod host_ssh {
    wit_bindgen::generate!({
        path: ["../wit/host@1.1.0"],
        world: "yardmaster:host/imports@1.1.0",
        with: {
            "yardmaster:host/types@1.1.0": crate::bindings::host::yardmaster::host::types,
            "yardmaster:host/log@1.1.0": crate::bindings::host::yardmaster::host::log,
            "yardmaster:host/config@1.1.0": crate::bindings::host::yardmaster::host::config,
            "yardmaster:host/tls@1.1.0": crate::bindings::host::yardmaster::host::tls,
        },
        additional_derives: [PartialEq, Eq],
    });
}

pub mod transport {
    wit_bindgen::generate!({
        path: ["../wit/host@1.0.0", "../wit/transport@1.2.0"],
        world: "yardmaster:transport/transport@1.2.0",
        with: {
            "yardmaster:host/types@1.0.0": crate::bindings::host::yardmaster::host::types,
            "yardmaster:host/log@1.0.0": crate::bindings::host::yardmaster::host::log,
            "yardmaster:host/config@1.0.0": crate::bindings::host::yardmaster::host::config,
            "yardmaster:host/tls@1.0.0": crate::bindings::host::yardmaster::host::tls,
        },
        additional_derives: [PartialEq, Eq],
        pub_export_macro: true,
        export_macro_name: "export_transport",
        default_bindings_module: "$crate::bindings::transport",
    });
}

pub mod notifier {
    wit_bindgen::generate!({
        path: ["../wit/host@1.0.0", "../wit/notifier@1.0.0"],
        world: "yardmaster:notifier/notifier@1.0.0",
        with: {
            "yardmaster:host/types@1.0.0": crate::bindings::host::yardmaster::host::types,
            "yardmaster:host/log@1.0.0": crate::bindings::host::yardmaster::host::log,
            "yardmaster:host/config@1.0.0": crate::bindings::host::yardmaster::host::config,
            "yardmaster:host/tls@1.0.0": crate::bindings::host::yardmaster::host::tls,
        },
        additional_derives: [PartialEq, Eq],
        pub_export_macro: true,
        export_macro_name: "export_notifier",
        default_bindings_module: "$crate::bindings::notifier",
    });
}

pub mod script_source {
    wit_bindgen::generate!({
        path: ["../wit/host@1.0.0", "../wit/script-source@1.1.0"],
        world: "yardmaster:script-source/script-source@1.1.0",
        with: {
            "yardmaster:host/types@1.0.0": crate::bindings::host::yardmaster::host::types,
            "yardmaster:host/log@1.0.0": crate::bindings::host::yardmaster::host::log,
            "yardmaster:host/config@1.0.0": crate::bindings::host::yardmaster::host::config,
            "yardmaster:host/tls@1.0.0": crate::bindings::host::yardmaster::host::tls,
        },
        additional_derives: [PartialEq, Eq],
        pub_export_macro: true,
        export_macro_name: "export_script_source",
        default_bindings_module: "$crate::bindings::script_source",
    });
}

pub mod generator {
    wit_bindgen::generate!({
        path: ["../wit/host@1.0.0", "../wit/generator@1.1.0"],
        world: "yardmaster:generator/generator@1.1.0",
        with: {
            "yardmaster:host/types@1.0.0": crate::bindings::host::yardmaster::host::types,
            "yardmaster:host/log@1.0.0": crate::bindings::host::yardmaster::host::log,
            "yardmaster:host/config@1.0.0": crate::bindings::host::yardmaster::host::config,
            "yardmaster:host/tls@1.0.0": crate::bindings::host::yardmaster::host::tls,
        },
        additional_derives: [PartialEq, Eq],
        pub_export_macro: true,
        export_macro_name: "export_generator",
        default_bindings_module: "$crate::bindings::generator",
    });
}
