//! Running a pipeline phase: the main steps in order under the run's
//! timeout and cancellation, then every `finally` step.

use std::time::Duration;

use serde_json::{Map, Value};
use tokio_util::sync::CancellationToken;

use super::template::Scope;
use super::{Phase, Pipeline, Step};
use crate::capabilities::bindings::Context;
use crate::capabilities::{RunContext, describe as describe_wit_error};
use crate::runtime::{RunError, Runtime, TaskOp};
use crate::units::format_duration;

/// Default timeout of one `finally` step.
pub const FINALLY_TIMEOUT: Duration = Duration::from_secs(600);

/// Why the main steps stopped early.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stop {
    /// A step failed.
    Failed(String),
    /// The run's timeout expired.
    Timeout(String),
    /// The run was cancelled.
    Cancelled(String),
}

impl Stop {
    /// The message.
    #[must_use]
    pub fn message(&self) -> &str {
        match self {
            Self::Failed(m) | Self::Timeout(m) | Self::Cancelled(m) => m,
        }
    }
}

/// How a phase ended.
#[derive(Debug)]
pub struct PhaseOutcome {
    /// Results of the steps that succeeded, by name (main and finally).
    pub results: Map<String, Value>,
    /// Why the main steps stopped, if they did not all succeed.
    pub stopped: Option<Stop>,
    /// Errors of failed `finally` steps.
    pub finally_errors: Vec<String>,
}

impl PhaseOutcome {
    /// The run's error, naming the failed step and every failed `finally` step.
    #[must_use]
    pub fn error(&self) -> Option<String> {
        let mut parts = Vec::new();
        if let Some(stop) = &self.stopped {
            parts.push(stop.message().to_string());
        }
        parts.extend(self.finally_errors.iter().cloned());
        match parts.len() {
            0 => None,
            1 => parts.pop(),
            _ => Some(parts.join("; and then ")),
        }
    }
}

/// Run `phase` of `pipeline`: main steps under `timeout` and `cancel`, then
/// every `finally` step. Never returns early without running `finally`.
pub async fn run_phase(
    runtime: &Runtime,
    pipeline: &Pipeline,
    phase: &Phase,
    mut scope: Scope,
    ctx: &RunContext,
    timeout: Duration,
    cancel: &CancellationToken,
) -> PhaseOutcome {
    for (name, decl) in &pipeline.params {
        if !scope.params.contains_key(name) {
            if let Some(default) = &decl.default {
                scope.params.insert(name.clone(), default.clone());
            }
        }
    }
    let log = ctx.log.clone();
    let main = async {
        for step in &phase.steps {
            // The phase's own timeout (below) is the one that fires for a
            // step without a timeout of its own: the call's limit is later.
            let limit = timeout.saturating_add(Duration::from_secs(5));
            let result = run_step(runtime, step, &scope, ctx, limit).await;
            match result {
                Ok(value) => {
                    scope.steps.insert(step.name.clone(), value);
                }
                Err(e) => return Err(e),
            }
        }
        Ok(())
    };
    let stopped = tokio::select! {
        out = tokio::time::timeout(timeout, main) => match out {
            Ok(Ok(())) => None,
            Ok(Err(e)) => Some(Stop::Failed(e)),
            Err(_) => Some(Stop::Timeout(format!(
                "pipeline `{}` exceeded the run's timeout of {} and was stopped",
                pipeline.name,
                format_duration(timeout)
            ))),
        },
        () = cancel.cancelled() => Some(Stop::Cancelled(format!(
            "pipeline `{}` was cancelled", pipeline.name
        ))),
    };
    // The main future is dropped here: a step still running is stopped and
    // its child processes killed before the finally steps start.
    let status = match &stopped {
        None => "succeeded",
        Some(Stop::Cancelled(_)) => "cancelled",
        Some(_) => "failed",
    };
    if let Some(stop) = &stopped {
        log.host(
            "warn",
            &format!("{}; running finally steps", stop.message()),
        );
    }
    scope.outcome = Some((
        status.to_string(),
        stopped
            .as_ref()
            .map(|s| s.message().to_string())
            .unwrap_or_default(),
    ));
    let mut finally_errors = Vec::new();
    for step in &phase.finally {
        let limit = step.timeout.unwrap_or(FINALLY_TIMEOUT);
        match run_step(runtime, step, &scope, ctx, limit).await {
            Ok(value) => {
                scope.steps.insert(step.name.clone(), value);
            }
            Err(e) => {
                log.host("error", &format!("finally {e}"));
                finally_errors.push(format!("finally {e}"));
            }
        }
    }
    PhaseOutcome {
        results: scope.steps,
        stopped,
        finally_errors,
    }
}

/// Run one step; the error says which step and module failed.
async fn run_step(
    runtime: &Runtime,
    step: &Step,
    scope: &Scope,
    ctx: &RunContext,
    default_limit: Duration,
) -> Result<Value, String> {
    let label = format!("step `{}` ({})", step.name, step.calls);
    let params = scope
        .expand(&step.params)
        .map_err(|e| format!("{label}: {e}"))?;
    let module = runtime
        .load(&step.module)
        .await
        .map_err(|e| format!("{label}: {e:#}"))?;
    let mut ctx = ctx.clone();
    ctx.limits.timeout = step.timeout.unwrap_or(default_limit);
    ctx.log.host("info", &format!("{label} started"));
    let started = std::time::Instant::now();
    let out = if step.is_task {
        let context = Context {
            job: scope.job.clone(),
            run_id: scope.run_id.clone(),
            params: params.to_string(),
            snapshot: scope.snapshot.clone(),
        };
        let op = if scope.restoring {
            TaskOp::Restore
        } else {
            TaskOp::Backup
        };
        runtime.run_task(&module, op, context, ctx.clone()).await
    } else {
        runtime
            .call_function(&module, &params.to_string(), ctx.clone())
            .await
    };
    let out = match out {
        Ok(text) => text,
        Err(RunError::Module(e)) => {
            return Err(format!("{label} failed: {}", describe_wit_error(&e)));
        }
        Err(e) => return Err(format!("{label} failed: {e}")),
    };
    ctx.log.host(
        "info",
        &format!(
            "{label} succeeded in {}",
            format_duration(started.elapsed())
        ),
    );
    serde_json::from_str(&out).map_err(|e| format!("{label} returned invalid JSON: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outcome_error_names_both_failures() {
        let o = PhaseOutcome {
            results: Map::new(),
            stopped: Some(Stop::Failed("step `a` failed: boom".into())),
            finally_errors: vec!["finally step `z` failed: down".into()],
        };
        assert_eq!(
            o.error().unwrap(),
            "step `a` failed: boom; and then finally step `z` failed: down"
        );
    }
}
