//! Calling Function modules from a task (`cairn:plugin/functions`). Tasks
//! only: a Function module cannot call other functions.
//!
//! ```no_run
//! use cairn_guest::{functions, json, Result};
//!
//! fn health(url: &str) -> Result<String> {
//!     let result = functions::call(
//!         "http-request",
//!         &json!({ "url": format!("{url}/_cluster/health") }),
//!     )?;
//!     Ok(result["body"]["status"].as_str().unwrap_or("unknown").to_owned())
//! }
//! ```

use serde::Serialize;
use serde_json::Value;

use crate::{Error, Result};

/// Call function `name` (a built-in such as `http-request`, or one declared
/// in the config's `[functions]`) with `params`; returns its JSON result.
/// Each call runs in a fresh sandbox with the job's grants.
///
/// # Errors
///
/// `denied` unless the job grants the function in `allow.functions`,
/// `not-found` for an unknown function, and whatever error the function
/// itself returns, with its kind.
pub fn call(name: &str, params: &impl Serialize) -> Result<Value> {
    let params = serde_json::to_string(params).map_err(|e| {
        Error::invalid(format!(
            "cannot serialize params for function `{name}`: {e}"
        ))
    })?;
    let result = crate::__private::functions::call(name, &params).map_err(Error::from_wit)?;
    serde_json::from_str(&result)
        .map_err(|e| Error::failed(format!("function `{name}` returned invalid JSON: {e}")))
}
