//! Links the component with a 256 KiB stack instead of Rust's 1 MiB default for wasm.
//!
//! A call's instance is thrown away when the call ends, and the engine resets the pages
//! it touched: the less linear memory a component has, the less there is to scan and
//! reset on every call. The deepest path here (reading a reply while decoding
//! sentences) uses a few KiB; a stack that overflows traps and fails only that call.

fn main() {
    if std::env::var("CARGO_CFG_TARGET_ARCH").as_deref() == Ok("wasm32") {
        println!("cargo:rustc-cdylib-link-arg=-zstack-size=262144");
    }
}
