//! Host-side bindings generated from the WIT worlds in `wit/`.
//!
//! Both worlds share the `types` and `host` interfaces; the alert-rule bindings reuse the
//! collector's so a type such as `VmSample` has one Rust definition.

/// Bindings of the `collector` world.
pub mod collector {
    wasmtime::component::bindgen!({
        world: "collector",
        path: "../wit",
        exports: { default: async },
        with: {
            "wasi:http": wasmtime_wasi_http::p2::bindings::http,
            "wasi:io": wasmtime_wasi::p2::bindings::io,
            "wasi:clocks": wasmtime_wasi::p2::bindings::clocks,
        },
    });
}

/// Bindings of the `alert-rule` world.
pub mod alert_rule {
    wasmtime::component::bindgen!({
        world: "alert-rule",
        path: "../wit",
        exports: { default: async },
        with: {
            "vmpulse:plugin/types": super::collector::vmpulse::plugin::types,
            "vmpulse:plugin/host": super::collector::vmpulse::plugin::host,
        },
    });
}

pub use collector::vmpulse::plugin::host::LogLevel;
pub use collector::vmpulse::plugin::types;
