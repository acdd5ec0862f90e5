//! Structured logging into the host's log output and the run record
//! (`cairn:plugin/log`).
//!
//! ```no_run
//! use cairn_guest::log;
//!
//! let index = "products";
//! log::info("starting");
//! log::info_with("copied index", &[("index", &index), ("docs", &1200)]);
//! cairn_guest::warn!("index {index} has {} replicas unassigned", 2);
//! ```
//!
//! Secret values known to the host are redacted from what is logged.

use std::fmt::Display;

use crate::__private::log as wit;

pub use crate::__private::log::Level;

/// Emit one line at `level` with key/value `fields`.
pub fn log(level: Level, message: impl AsRef<str>, fields: &[(&str, &dyn Display)]) {
    let fields: Vec<wit::Field> = fields
        .iter()
        .map(|(key, value)| wit::Field {
            key: (*key).to_owned(),
            value: value.to_string(),
        })
        .collect();
    wit::log(level, message.as_ref(), &fields);
}

/// Log at trace level.
pub fn trace(message: impl AsRef<str>) {
    log(Level::Trace, message, &[]);
}

/// Log at debug level.
pub fn debug(message: impl AsRef<str>) {
    log(Level::Debug, message, &[]);
}

/// Log at info level.
pub fn info(message: impl AsRef<str>) {
    log(Level::Info, message, &[]);
}

/// Log at warn level.
pub fn warn(message: impl AsRef<str>) {
    log(Level::Warn, message, &[]);
}

/// Log at error level.
pub fn error(message: impl AsRef<str>) {
    log(Level::Error, message, &[]);
}

/// Log at debug level with key/value fields.
pub fn debug_with(message: impl AsRef<str>, fields: &[(&str, &dyn Display)]) {
    log(Level::Debug, message, fields);
}

/// Log at info level with key/value fields.
pub fn info_with(message: impl AsRef<str>, fields: &[(&str, &dyn Display)]) {
    log(Level::Info, message, fields);
}

/// Log at warn level with key/value fields.
pub fn warn_with(message: impl AsRef<str>, fields: &[(&str, &dyn Display)]) {
    log(Level::Warn, message, fields);
}

/// Log at error level with key/value fields.
pub fn error_with(message: impl AsRef<str>, fields: &[(&str, &dyn Display)]) {
    log(Level::Error, message, fields);
}

/// Log at trace level with `format!` arguments.
#[macro_export]
macro_rules! trace {
    ($($arg:tt)+) => { $crate::log::trace(::std::format!($($arg)+)) };
}

/// Log at debug level with `format!` arguments.
#[macro_export]
macro_rules! debug {
    ($($arg:tt)+) => { $crate::log::debug(::std::format!($($arg)+)) };
}

/// Log at info level with `format!` arguments: `info!("copied {n} documents")`.
#[macro_export]
macro_rules! info {
    ($($arg:tt)+) => { $crate::log::info(::std::format!($($arg)+)) };
}

/// Log at warn level with `format!` arguments.
#[macro_export]
macro_rules! warn {
    ($($arg:tt)+) => { $crate::log::warn(::std::format!($($arg)+)) };
}

/// Log at error level with `format!` arguments.
#[macro_export]
macro_rules! error {
    ($($arg:tt)+) => { $crate::log::error(::std::format!($($arg)+)) };
}
