//! Host capabilities, one module per `cairn:plugin` interface.
//!
//! Each module holds its grant (deny by default), its per-run state and its
//! `Host` implementation. [`wasi`] sets up the WASI side of the sandbox.

pub mod functions;
pub mod http;
pub mod log;
pub mod progress;
pub mod secrets;
pub mod shell;
pub mod state;
pub mod storage;
pub mod time;
pub mod wasi;
