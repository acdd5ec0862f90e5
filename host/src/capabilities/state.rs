//! `cairn:plugin/state`: the job's persistent key/value state in the state store.

use std::sync::Arc;

use wasmtime::component::{HasSelf, Linker};

use super::bindings::interfaces::state::{self, Host};
use super::{Capability, HostError, HostResult, HostShared, RunContext, WitError};
use crate::state::StateStore;

/// Longest key accepted.
const MAX_KEY: usize = 1024;
/// Largest value accepted.
const MAX_VALUE: usize = 1 << 20;

/// Why a `state` call was refused or failed.
#[derive(Debug, thiserror::Error)]
pub enum StateCapError {
    /// The key is empty or too long.
    #[error("state key must be 1 to {MAX_KEY} bytes, got {0}")]
    BadKey(usize),
    /// The value is too large.
    #[error("state value for `{key}` is {len} bytes; the limit is {MAX_VALUE}")]
    ValueTooLarge {
        /// The key.
        key: String,
        /// The value's size.
        len: usize,
    },
    /// The state store failed.
    #[error("state store: {0}")]
    Store(#[from] crate::state::StateError),
}

impl From<StateCapError> for HostError {
    fn from(e: StateCapError) -> Self {
        let message = e.to_string();
        match e {
            StateCapError::BadKey(_) => WitError::Invalid(message),
            StateCapError::ValueTooLarge { .. } => WitError::Limit(message),
            StateCapError::Store(_) => WitError::Failed(message),
        }
        .into()
    }
}

/// The `state` capability: always granted, scoped to one job.
pub struct StateCap {
    job: String,
    store: Arc<dyn StateStore>,
}

impl Capability for StateCap {
    const INTERFACE: &'static str = "cairn:plugin/state";

    fn add_to_linker<T: Send + 'static>(
        linker: &mut Linker<T>,
        get: fn(&mut T) -> &mut Self,
    ) -> wasmtime::Result<()> {
        state::add_to_linker::<T, HasSelf<Self>>(linker, get)
    }

    /// The state of the run's job in the run's store.
    fn prepare(run: &RunContext, _host: &HostShared) -> anyhow::Result<Self> {
        Ok(Self {
            job: run.job.clone(),
            store: run.store.clone(),
        })
    }
}

fn check_key(key: &str) -> Result<(), StateCapError> {
    if key.is_empty() || key.len() > MAX_KEY {
        return Err(StateCapError::BadKey(key.len()));
    }
    Ok(())
}

impl Host for StateCap {
    async fn get(&mut self, key: String) -> HostResult<Option<String>> {
        check_key(&key)?;
        Ok(self
            .store
            .kv_get(&self.job, &key)
            .map_err(StateCapError::from)?)
    }

    async fn set(&mut self, key: String, value: String) -> HostResult<()> {
        check_key(&key)?;
        if value.len() > MAX_VALUE {
            return Err(StateCapError::ValueTooLarge {
                key,
                len: value.len(),
            }
            .into());
        }
        Ok(self
            .store
            .kv_set(&self.job, &key, &value)
            .map_err(StateCapError::from)?)
    }

    async fn delete(&mut self, key: String) -> HostResult<()> {
        Ok(self
            .store
            .kv_delete(&self.job, &key)
            .map_err(StateCapError::from)?)
    }

    async fn list_keys(&mut self, prefix: String) -> HostResult<Vec<String>> {
        Ok(self
            .store
            .kv_keys(&self.job, &prefix)
            .map_err(StateCapError::from)?)
    }
}
