//! `cairn:plugin/state`: the job's persistent key/value state in the state store.

use std::sync::Arc;

use wasmtime::component::{HasSelf, Linker};

use super::bindings::interfaces::state::{self, Host};
use super::redact::Redactor;
use super::{Capability, HostError, HostResult, HostShared, RunContext, WitError};
use crate::state::{KvLimits, StateStore};

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
    /// The job's state is full.
    #[error("{0}")]
    Full(crate::state::StateError),
    /// The state store failed.
    #[error("state store: {0}")]
    Store(crate::state::StateError),
}

impl From<crate::state::StateError> for StateCapError {
    fn from(e: crate::state::StateError) -> Self {
        match e {
            e @ crate::state::StateError::Full { .. } => Self::Full(e),
            e => Self::Store(e),
        }
    }
}

impl From<StateCapError> for HostError {
    fn from(e: StateCapError) -> Self {
        let message = e.to_string();
        match e {
            StateCapError::BadKey(_) => WitError::Invalid(message),
            StateCapError::ValueTooLarge { .. } | StateCapError::Full(_) => {
                WitError::Limit(message)
            }
            StateCapError::Store(_) => WitError::Failed(message),
        }
        .into()
    }
}

/// The `state` capability: always granted, scoped to one job.
pub struct StateCap {
    job: String,
    store: Arc<dyn StateStore>,
    limits: KvLimits,
    redactor: Arc<Redactor>,
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
            limits: KvLimits {
                keys: run.limits.state_keys,
                bytes: run.limits.state_bytes,
            },
            redactor: run.log.redactor_arc(),
        })
    }

    fn redactor(&self) -> Option<&Redactor> {
        Some(&self.redactor)
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
            .kv_set(
                &self.job,
                &key,
                // A secret the module learned is not kept in the state store.
                &self.redactor.redact(&value),
                self.limits,
            )
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
