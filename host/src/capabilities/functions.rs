//! `cairn:plugin/functions`: a Task calls a Function module by name, in a
//! fresh sandbox (its own Store) with the job's grants and limits.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use crate::config::ModuleRef;
use crate::runtime::bindings::WitError;
use crate::runtime::bindings::task::cairn::plugin::functions::Host;
use crate::runtime::{RunError, RunSetup, Runtime};

/// The `functions` capability of one task store.
pub struct FunctionsCap {
    granted: BTreeSet<String>,
    declared: Arc<BTreeMap<String, ModuleRef>>,
    runtime: Runtime,
    setup: RunSetup,
}

impl FunctionsCap {
    /// Calls made by the run described by `setup`.
    pub fn new(runtime: Runtime, setup: RunSetup) -> Self {
        Self {
            granted: setup.grants.functions.clone(),
            declared: setup.functions.clone(),
            runtime,
            setup,
        }
    }

    async fn call(&self, name: &str, params: String) -> Result<String, WitError> {
        let job = &self.setup.job;
        if !self.granted.contains(name) {
            return Err(WitError::Denied(format!(
                "function `{name}` is not granted to job `{job}`: add it to `allow.functions`"
            )));
        }
        let builtin = crate::builtins::find_kind(name, crate::builtins::ModuleKind::Function);
        let module = match (self.declared.get(name), builtin) {
            (Some(m), _) => m.clone(),
            (None, Some(b)) => ModuleRef {
                source: b.source(),
                sha256: None,
            },
            (None, None) => return Err(WitError::NotFound(format!("no function called `{name}`"))),
        };
        let loaded = self
            .runtime
            .load(&module)
            .await
            .map_err(|e| WitError::Failed(format!("function `{name}`: {e:#}")))?;
        self.setup
            .log
            .host("debug", &format!("call function `{name}`"));
        match self
            .runtime
            .call_function(&loaded, &params, self.setup.clone())
            .await
        {
            Ok(out) => Ok(out),
            Err(RunError::Module(e)) => Err(prefix(name, e)),
            Err(other) => Err(WitError::Failed(format!("function `{name}`: {other}"))),
        }
    }
}

fn prefix(name: &str, e: WitError) -> WitError {
    let p = |m: String| format!("function `{name}`: {m}");
    match e {
        WitError::Denied(m) => WitError::Denied(p(m)),
        WitError::Invalid(m) => WitError::Invalid(p(m)),
        WitError::NotFound(m) => WitError::NotFound(p(m)),
        WitError::Limit(m) => WitError::Limit(p(m)),
        WitError::Unsupported(m) => WitError::Unsupported(p(m)),
        WitError::Failed(m) => WitError::Failed(p(m)),
    }
}

impl Host for FunctionsCap {
    async fn call(
        &mut self,
        name: String,
        params: String,
    ) -> wasmtime::Result<Result<String, WitError>> {
        // Boxed: the callee's future contains a whole Store run.
        let fut: std::pin::Pin<Box<dyn std::future::Future<Output = _> + Send + '_>> =
            Box::pin(FunctionsCap::call(self, &name, params));
        Ok(fut.await)
    }
}
