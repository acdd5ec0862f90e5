//! Bindings generated from `wit/` by `wit-bindgen`, once for the whole SDK.
//!
//! The `task` world is generated in full; the `function` world reuses its
//! import modules through `with`, so both kinds of module share one set of
//! types and the wrappers in this crate serve both. Authors never name these
//! modules: they use the wrappers and the `export_task!`/`export_function!`
//! macros.

#![allow(missing_docs)] // generated code; the public re-exports carry the WIT docs

/// The `cairn:plugin/task` world: every import, plus the task exports.
#[allow(clippy::all)]
pub mod task_world {
    wit_bindgen::generate!({
        path: "../wit",
        world: "task",
        generate_all,
        pub_export_macro: true,
        export_macro_name: "export_task_world",
        default_bindings_module: "cairn_guest::__private::task_world",
        runtime_path: "crate::__private::wit_bindgen::rt",
    });
}

/// The `cairn:plugin/function` world: the function exports, with imports
/// taken from [`task_world`].
#[allow(clippy::all)]
pub mod function_world {
    wit_bindgen::generate!({
        path: "../wit",
        world: "function",
        with: {
            "cairn:plugin/types@0.1.0": crate::__private::task_world::cairn::plugin::types,
            "cairn:plugin/log@0.1.0": crate::__private::task_world::cairn::plugin::log,
            "cairn:plugin/progress@0.1.0": crate::__private::task_world::cairn::plugin::progress,
            "cairn:plugin/time@0.1.0": crate::__private::task_world::cairn::plugin::time,
            "cairn:plugin/state@0.1.0": crate::__private::task_world::cairn::plugin::state,
            "cairn:plugin/secrets@0.1.0": crate::__private::task_world::cairn::plugin::secrets,
            "cairn:plugin/http@0.1.0": crate::__private::task_world::cairn::plugin::http,
            "cairn:plugin/shell@0.1.0": crate::__private::task_world::cairn::plugin::shell,
            "cairn:plugin/storage@0.1.0": crate::__private::task_world::cairn::plugin::storage,
        },
        pub_export_macro: true,
        export_macro_name: "export_function_world",
        default_bindings_module: "cairn_guest::__private::function_world",
        runtime_path: "crate::__private::wit_bindgen::rt",
    });
}

pub use task_world::cairn::plugin::{
    functions, http, log, progress, secrets, shell, state, storage, time, types,
};
