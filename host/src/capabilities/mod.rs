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

/// How a denial describes a grant list: `grants none` or `grants only a, b`.
pub fn grants_phrase<S: std::fmt::Display>(granted: impl IntoIterator<Item = S>) -> String {
    let items: Vec<String> = granted.into_iter().map(|g| g.to_string()).collect();
    if items.is_empty() {
        "grants none".to_string()
    } else {
        format!("grants only {}", items.join(", "))
    }
}
