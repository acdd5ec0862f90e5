//! Host-side bindings generated from `wit/` (the contract) for the `task`
//! and `function` worlds.
//!
//! The `function` world's imports are mapped onto the `task` world's
//! generated interfaces, so each capability implements one set of `Host`
//! traits. Every `result<_, error>` of the contract is a
//! `Result<_, HostError>` on the host side: a denial is a WIT error, a host
//! fault a trap.

/// Bindings of world `task` (and every `cairn:plugin` interface).
pub mod task {
    wasmtime::component::bindgen!({
        world: "task",
        path: "../wit",
        imports: { default: async | trappable },
        exports: { default: async },
        trappable_error_type: {
            "cairn:plugin/types.error" => crate::capabilities::HostError,
        },
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

pub use task::cairn::plugin as interfaces;
pub use task::cairn::plugin::types::{Context, Description, Error as WitError, Needs, Param};
