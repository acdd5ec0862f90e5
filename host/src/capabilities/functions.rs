//! `cairn:plugin/functions`: a Task calls a Function module by name, in a
//! fresh sandbox (its own Store) with the job's grants and limits.
//!
//! The capability decides whether the call is granted and which module it
//! names; running the module is the runtime's, reached through
//! [`FunctionHost`] so that this layer does not depend on the runtime.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use wasmtime::component::{HasSelf, Linker};

use super::bindings::interfaces::functions::{self, Host};
use super::{Capability, HostResult, HostShared, RunContext, WitError, prefixed};
use crate::builtins::{self, ModuleKind};
use crate::model::ModuleRef;

/// Runs a Function module for a Task (implemented by the runtime).
#[async_trait::async_trait]
pub trait FunctionHost: Send + Sync {
    /// Call the Function `module` with JSON `params`, in its own store set
    /// up from `run`; its JSON result.
    ///
    /// # Errors
    /// The module's own error, or why it could not be loaded or run.
    async fn call_function(
        &self,
        module: &ModuleRef,
        params: &str,
        run: RunContext,
    ) -> Result<String, CallError>;
}

/// Why a Function call failed.
#[derive(Debug)]
pub enum CallError {
    /// The Function returned an error.
    Module(WitError),
    /// It could not be loaded, trapped, timed out …
    Host(String),
}

/// Why a `functions.call` was refused or failed.
#[derive(Debug, thiserror::Error)]
pub enum FunctionsError {
    /// The job does not grant the function.
    #[error("function `{name}` is not granted to job `{job}`: add it to `allow.functions`")]
    NotGranted {
        /// The function asked for.
        name: String,
        /// The job.
        job: String,
    },
    /// No such function.
    #[error("no function called `{0}`")]
    NotFound(String),
}

impl From<FunctionsError> for super::HostError {
    fn from(e: FunctionsError) -> Self {
        match e {
            FunctionsError::NotGranted { .. } => WitError::Denied(e.to_string()),
            FunctionsError::NotFound(_) => WitError::NotFound(e.to_string()),
        }
        .into()
    }
}

/// The `functions` capability of one task store.
pub struct FunctionsCap {
    granted: BTreeSet<String>,
    declared: Arc<BTreeMap<String, ModuleRef>>,
    host: Arc<dyn FunctionHost>,
    run: RunContext,
}

impl Capability for FunctionsCap {
    const INTERFACE: &'static str = "cairn:plugin/functions";
    const TASKS_ONLY: bool = true;

    fn add_to_linker<T: Send + 'static>(
        linker: &mut Linker<T>,
        get: fn(&mut T) -> &mut Self,
    ) -> wasmtime::Result<()> {
        functions::add_to_linker::<T, HasSelf<Self>>(linker, get)
    }

    /// Calls made by the run described by `run`, to the functions its job grants.
    fn prepare(run: &RunContext, host: &HostShared) -> anyhow::Result<Self> {
        Ok(Self {
            granted: run.grants.functions.clone(),
            declared: run.functions.clone(),
            host: host.functions.clone(),
            run: run.clone(),
        })
    }

    fn redactor(&self) -> Option<&super::redact::Redactor> {
        Some(self.run.log.redactor())
    }
}

impl FunctionsCap {
    async fn call(&self, name: &str, params: String) -> HostResult<String> {
        if !self.granted.contains(name) {
            return Err(FunctionsError::NotGranted {
                name: name.to_owned(),
                job: self.run.job.clone(),
            }
            .into());
        }
        let builtin = builtins::find_kind(name, ModuleKind::Function);
        let module = match (self.declared.get(name), builtin) {
            (Some(m), _) => m.clone(),
            (None, Some(b)) => b.module(),
            (None, None) => return Err(FunctionsError::NotFound(name.to_owned()).into()),
        };
        self.run
            .log
            .host("debug", &format!("call function `{name}`"));
        match self
            .host
            .call_function(&module, &params, self.run.clone())
            .await
        {
            // The Function ran with the job's secrets: what it returns is
            // cleaned like anything else flowing back to a module.
            Ok(out) => match serde_json::from_str::<serde_json::Value>(&out) {
                Ok(value) => Ok(self.run.log.redactor().redact_json(value).to_string()),
                Err(_) => Ok(self.run.log.redactor().redact(&out)),
            },
            Err(CallError::Module(e)) => Err(prefixed(&format!("function `{name}`"), e).into()),
            Err(CallError::Host(message)) => {
                Err(WitError::Failed(format!("function `{name}`: {message}")).into())
            }
        }
    }
}

impl Host for FunctionsCap {
    async fn call(&mut self, name: String, params: String) -> HostResult<String> {
        // Boxed: the callee's future contains a whole Store run.
        let fut: std::pin::Pin<Box<dyn std::future::Future<Output = _> + Send + '_>> =
            Box::pin(FunctionsCap::call(self, &name, params));
        fut.await
    }
}
