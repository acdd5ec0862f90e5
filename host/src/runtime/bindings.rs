//! Host-side bindings generated from `wit/` for the `task` and `function` worlds.
//!
//! The `function` world's imports are mapped onto the `task` world's generated
//! interfaces, so each capability implements one set of `Host` traits.

/// Bindings of world `task` (and every `cairn:plugin` interface).
pub mod task {
    wasmtime::component::bindgen!({
        world: "task",
        path: "../wit",
        imports: { default: async | trappable },
        exports: { default: async },
        with: {
            "cairn:plugin/storage.writer": crate::capabilities::storage::Writer,
            "cairn:plugin/storage.reader": crate::capabilities::storage::Reader,
            "cairn:plugin/http.pending": crate::capabilities::http::Pending,
        },
    });
}

/// Bindings of world `function`, sharing the interfaces of [`task`].
pub mod function {
    wasmtime::component::bindgen!({
        world: "function",
        path: "../wit",
        imports: { default: async | trappable },
        exports: { default: async },
        with: {
            "cairn:plugin": super::task::cairn::plugin,
        },
    });
}

pub use task::cairn::plugin::types::{Description, Error as WitError, Needs, Param};
