//! The guest SDK for Cairn: write backup Task and Function modules in Rust,
//! build them for `wasm32-wasip2`, and let a Cairn job run them.
//!
//! A module is a `cdylib` crate that implements [`Task`] (or [`Function`])
//! on a unit struct and exports it with [`export_task!`] (or
//! [`export_function!`]). Everything else is plain Rust: params arrive as a
//! serde type, `?` works on any error, and host capabilities are small
//! modules: [`log`], [`progress`], [`time`], [`state`], [`secrets`],
//! [`http`], [`shell`], [`storage`] and [`functions`]. Each is
//! deny-by-default: what a module may reach is decided by the job's grants,
//! and a refusal is an [`Error`] of kind [`ErrorKind::Denied`] naming the
//! missing grant.
//!
//! # Example
//!
//! `Cargo.toml`:
//!
//! ```toml
//! [lib]
//! crate-type = ["cdylib"]
//!
//! [dependencies]
//! cairn-guest = "0.1"
//! serde = { version = "1", features = ["derive"] }
//! ```
//!
//! `src/lib.rs` (this is `examples/hello-task.rs`):
//!
#![doc = concat!("```\n", include_str!("../examples/hello-task.rs"), "```")]
//!
//! Build with `cargo build --release --target wasm32-wasip2` and point a job
//! at `target/wasm32-wasip2/release/<crate>.wasm`.
//!
//! # Errors
//!
//! [`Error`] works like `anyhow::Error` with one addition: it carries the
//! [`ErrorKind`] of the WIT `error` variant. Errors from host capabilities
//! keep their kind when returned with `?`, so a task that cannot reach a
//! granted origin fails with `denied`, not a generic failure. Make your own
//! with [`Error::invalid`], [`Error::not_found`], [`bail!`] and
//! [`ensure!`]; add context with [`ErrorContext`].
//!
//! # Bulk data
//!
//! The module is the control plane and the host the data plane: stream a
//! dump with [`storage::create_from_command`] and a directory with
//! [`storage::add_tree`] rather than reading bytes into the module.

#![deny(missing_docs)]

mod bindings;
mod context;
mod describe;
mod error;
mod export;

pub mod functions;
pub mod http;
pub mod log;
pub mod progress;
pub mod secrets;
pub mod shell;
pub mod state;
pub mod storage;
pub mod time;

pub use context::{Context, from_params};
pub use describe::{Description, Param};
pub use error::{Error, ErrorContext, ErrorKind, Result};
pub use export::{Function, Task};
pub use serde_json::{self, Value, json};

/// A byte count for people: `512 B`, `1.5 KiB`, `3.0 MiB`.
///
/// ```
/// assert_eq!(cairn_guest::format_size(512), "512 B");
/// assert_eq!(cairn_guest::format_size(1536), "1.5 KiB");
/// assert_eq!(cairn_guest::format_size(5 << 30), "5.0 GiB");
/// assert_eq!(cairn_guest::format_size(100), "100 B");
/// assert_eq!(cairn_guest::format_size(3 << 20), "3.0 MiB");
/// ```
pub fn format_size(bytes: u64) -> String {
    const UNITS: [&str; 6] = ["KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    let mut value = bytes as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

/// Everything a module usually needs: `use cairn_guest::prelude::*;`.
pub mod prelude {
    pub use crate::{
        Context, Description, Error, ErrorContext, ErrorKind, Function, Param, Result, Task, Value,
        bail, ensure, export_function, export_task, from_params, json,
    };
    pub use crate::{functions, http, log, progress, secrets, shell, state, storage, time};
}

/// Implementation details used by the export macros; not a public API.
#[doc(hidden)]
#[allow(missing_docs)]
pub mod __private {
    pub use crate::bindings::*;
    pub use crate::export::{FunctionExport, TaskExport};
    pub use wit_bindgen;
}
