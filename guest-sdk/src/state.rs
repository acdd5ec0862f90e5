//! Persistent key/value state, private to the job and shared by its runs
//! (`cairn:plugin/state`).
//!
//! ```no_run
//! use cairn_guest::{state, Result};
//!
//! fn bump() -> Result<u64> {
//!     let runs = state::get_json::<u64>("runs")?.unwrap_or(0) + 1;
//!     state::set_json("runs", &runs)?;
//!     Ok(runs)
//! }
//! ```

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::__private::state as wit;
use crate::{Error, Result};

/// The value stored under `key`, if any.
///
/// # Errors
///
/// When the host's state store fails.
pub fn get(key: &str) -> Result<Option<String>> {
    wit::get(key).map_err(Error::from_wit)
}

/// Store `value` under `key`, replacing any previous value.
///
/// # Errors
///
/// When the host's state store fails or the value is over its size limit.
pub fn set(key: &str, value: impl AsRef<str>) -> Result<()> {
    wit::set(key, value.as_ref()).map_err(Error::from_wit)
}

/// Remove `key`. Removing a missing key is not an error.
///
/// # Errors
///
/// When the host's state store fails.
pub fn delete(key: &str) -> Result<()> {
    wit::delete(key).map_err(Error::from_wit)
}

/// Keys that start with `prefix` (`""` for all), in lexical order.
///
/// # Errors
///
/// When the host's state store fails.
pub fn keys(prefix: &str) -> Result<Vec<String>> {
    wit::list_keys(prefix).map_err(Error::from_wit)
}

/// The JSON value stored under `key`, deserialized into `T`.
///
/// # Errors
///
/// When the host's state store fails, or `failed` when the stored value is
/// not JSON of type `T`.
pub fn get_json<T: DeserializeOwned>(key: &str) -> Result<Option<T>> {
    match get(key)? {
        None => Ok(None),
        Some(text) => serde_json::from_str(&text).map(Some).map_err(|e| {
            Error::failed(format!(
                "state key `{key}` does not hold the expected JSON: {e}"
            ))
        }),
    }
}

/// Store `value` as JSON under `key`.
///
/// # Errors
///
/// When `value` cannot be serialized or the host's state store fails.
pub fn set_json<T: Serialize + ?Sized>(key: &str, value: &T) -> Result<()> {
    let text = serde_json::to_string(value)
        .map_err(|e| Error::invalid(format!("cannot serialize state key `{key}`: {e}")))?;
    set(key, text)
}
