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
pub mod paths;
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

/// Parse a duration the way Cairn's config does: `500ms`, `30s`, `5m`, `2h`,
/// `1d`, combinations from the largest unit to the smallest (`1h30m`,
/// `1m 30s`), or a plain integer number of seconds (`90`). Units are
/// case-insensitive.
///
/// ```
/// use std::time::Duration;
///
/// use cairn_guest::parse_duration;
///
/// assert_eq!(parse_duration("1m30s").unwrap(), Duration::from_secs(90));
/// assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
/// assert_eq!(parse_duration("90").unwrap(), Duration::from_secs(90));
/// assert_eq!(parse_duration("2H").unwrap(), Duration::from_secs(7200));
/// let err = parse_duration("5 minutes").unwrap_err();
/// assert_eq!(err.kind(), cairn_guest::ErrorKind::Invalid);
/// assert!(err.to_string().contains("unknown unit `minutes`"), "{err}");
/// assert!(parse_duration("30s5m").is_err());
/// assert!(parse_duration("").is_err());
/// ```
///
/// # Errors
///
/// [`Invalid`](ErrorKind::Invalid), naming what is wrong with `text`, with
/// examples.
pub fn parse_duration(text: &str) -> Result<std::time::Duration> {
    const EXAMPLES: &str = "e.g. `500ms`, `30s`, `5m`, `1h30m`, `1d`";
    const UNITS: [(&str, u128); 5] = [
        ("d", 86_400_000),
        ("h", 3_600_000),
        ("m", 60_000),
        ("s", 1_000),
        ("ms", 1),
    ];
    let bad = |why: String| Error::invalid(format!("`{text}` is not a duration: {why}"));
    let trimmed = text.trim();
    if trimmed.is_empty() {
        return Err(Error::invalid(format!(
            "a duration is empty; write one like {EXAMPLES}"
        )));
    }
    if trimmed.bytes().all(|b| b.is_ascii_digit()) {
        return trimmed
            .parse::<u64>()
            .map(std::time::Duration::from_secs)
            .map_err(|_| bad("too large a number of seconds".to_owned()));
    }
    let mut total_ms: u128 = 0;
    let mut last_unit: Option<usize> = None;
    let mut rest = trimmed;
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return Err(bad(format!("expected a number at `{rest}` ({EXAMPLES})")));
        }
        let (number, after) = rest.split_at(digits);
        let after = after.trim_start();
        let letters = after.bytes().take_while(u8::is_ascii_alphabetic).count();
        let (unit, after) = after.split_at(letters);
        let lower = unit.to_ascii_lowercase();
        let Some(index) = UNITS.iter().position(|(u, _)| *u == lower) else {
            return Err(bad(if unit.is_empty() {
                format!("`{number}` has no unit; use ms, s, m, h or d ({EXAMPLES})")
            } else {
                format!("unknown unit `{unit}`; use ms, s, m, h or d ({EXAMPLES})")
            }));
        };
        if last_unit.is_some_and(|last| index <= last) {
            return Err(bad(
                "write each unit once, largest first (e.g. `1h30m`)".to_owned()
            ));
        }
        last_unit = Some(index);
        total_ms = number
            .parse::<u128>()
            .ok()
            .and_then(|n| n.checked_mul(UNITS[index].1))
            .and_then(|ms| total_ms.checked_add(ms))
            .ok_or_else(|| bad("too long".to_owned()))?;
        rest = after.trim_start();
    }
    u64::try_from(total_ms)
        .map(std::time::Duration::from_millis)
        .map_err(|_| bad("too long".to_owned()))
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
