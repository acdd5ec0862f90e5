//! `cairn:plugin/state`: the job's persistent key/value state in the state store.

use std::sync::Arc;

use crate::runtime::bindings::WitError;
use crate::runtime::bindings::task::cairn::plugin::state::Host;
use crate::state::StateStore;

/// Longest key accepted.
const MAX_KEY: usize = 1024;
/// Largest value accepted.
const MAX_VALUE: usize = 1 << 20;

/// The `state` capability: always granted, scoped to one job.
pub struct StateCap {
    job: String,
    store: Arc<dyn StateStore>,
}

impl StateCap {
    /// State of `job` in `store`.
    pub fn new(job: &str, store: Arc<dyn StateStore>) -> Self {
        Self {
            job: job.to_string(),
            store,
        }
    }
}

fn failed(e: impl std::fmt::Display) -> WitError {
    WitError::Failed(format!("state store: {e}"))
}

fn check_key(key: &str) -> Result<(), WitError> {
    if key.is_empty() || key.len() > MAX_KEY {
        return Err(WitError::Invalid(format!(
            "state key must be 1 to {MAX_KEY} bytes, got {}",
            key.len()
        )));
    }
    Ok(())
}

impl Host for StateCap {
    async fn get(&mut self, key: String) -> wasmtime::Result<Result<Option<String>, WitError>> {
        if let Err(e) = check_key(&key) {
            return Ok(Err(e));
        }
        Ok(self.store.kv_get(&self.job, &key).map_err(failed))
    }

    async fn set(&mut self, key: String, value: String) -> wasmtime::Result<Result<(), WitError>> {
        if let Err(e) = check_key(&key) {
            return Ok(Err(e));
        }
        if value.len() > MAX_VALUE {
            return Ok(Err(WitError::Limit(format!(
                "state value for `{key}` is {} bytes; the limit is {MAX_VALUE}",
                value.len()
            ))));
        }
        Ok(self.store.kv_set(&self.job, &key, &value).map_err(failed))
    }

    async fn delete(&mut self, key: String) -> wasmtime::Result<Result<(), WitError>> {
        Ok(self.store.kv_delete(&self.job, &key).map_err(failed))
    }

    async fn list_keys(
        &mut self,
        prefix: String,
    ) -> wasmtime::Result<Result<Vec<String>, WitError>> {
        Ok(self.store.kv_keys(&self.job, &prefix).map_err(failed))
    }
}
