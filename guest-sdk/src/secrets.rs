//! Reading secret values (`cairn:plugin/secrets`).
//!
//! Most modules never need this: HTTP header values and command environment
//! may contain `{{secret:NAME}}`, which the host replaces without the module
//! seeing the value. Reading a value needs the job to list the secret in
//! `allow.readable-secrets`.

use crate::{Error, Result};

/// The value of secret `name`.
///
/// # Errors
///
/// `denied` unless the job grants reading the secret.
pub fn get(name: &str) -> Result<String> {
    crate::__private::secrets::get(name).map_err(Error::from_wit)
}
