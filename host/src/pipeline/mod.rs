//! Pipeline tasks: a task written in TOML as ordered steps, each calling a
//! Function module with params, plus `finally` steps that always run.
//!
//! A pipeline is declared in the configuration (`[pipelines.NAME]`, used by a
//! job as `task = "pipeline:NAME"`), in a file of its own (`task =
//! "path/to/pipeline.toml"`, the same keys at the top level), or built in
//! (`task = "builtin:elasticsearch-datadir"`, from `tasks/pipelines/`).
//!
//! ```toml
//! [pipelines.app]
//! description = "Stop writes, archive the data directory, resume writes"
//! params.url = { description = "Base URL of the app", required = true }
//! params.data = { description = "Data directory" }
//!
//! [[pipelines.app.backup.steps]]
//! name = "freeze"
//! function = "http-request"
//! params = { method = "POST", url = "{{params.url}}/freeze" }
//!
//! [[pipelines.app.backup.steps]]
//! name = "archive"
//! function = "archive-path"
//! params = { path = "{{params.data}}" }
//!
//! [[pipelines.app.backup.finally]]
//! name = "thaw"
//! function = "http-request"
//! params = { method = "POST", url = "{{params.url}}/thaw" }
//! ```
//!
//! ## Templates
//! String values in a step's `params` may contain `{{…}}` references:
//! - `{{params.NAME}}`: the job's param (after `--set` overrides and the
//!   pipeline's defaults);
//! - `{{steps.STEP}}` or `{{steps.STEP.FIELD.0.SUB}}`: the JSON result of an
//!   earlier step, or a field in it (object keys and array indices, dotted);
//! - `{{job}}`, `{{run.id}}`, `{{run.snapshot}}` (the snapshot a restore
//!   reads), and in `finally` steps `{{run.status}}` (`succeeded`, `failed`,
//!   `cancelled`) and `{{run.error}}` (empty when none).
//!
//! A string that is exactly one reference takes the referenced JSON value as
//! is (a number stays a number, an object an object); a reference inside a
//! longer string is inserted as text (strings without quotes, other values
//! as JSON). `{{secret:NAME}}` is not a template: it is left for the host's
//! HTTP capability to substitute, so the secret never reaches the module.
//! References are checked when the configuration loads: to declared params,
//! and to steps that run before the one referring to them.
//!
//! ## Failure, timeout and cancellation
//! Steps run in order; the first failure stops the main steps. The job's
//! `timeout` covers the main steps; cancelling the run (daemon shutdown)
//! stops them the same way. Then every `finally` step runs, whatever
//! happened, each within its own `timeout` (default 10 minutes) — a failing
//! `finally` step does not stop the next one. A failed `finally` step fails
//! the run, and when a main step failed too, the run's error names both.

//!
//! - [`file`]: the TOML shape (serde).
//! - [`validate`]: file → [`Pipeline`], with every problem at its key.
//! - [`template`]: `{{…}}` references, checked at load and filled in at run.
//! - [`run`]: a phase's steps, then its `finally` steps.

pub mod file;
pub mod run;
pub mod template;
pub mod validate;

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::Value;

pub use file::PipelineFile;
pub use run::{FINALLY_TIMEOUT, PhaseOutcome, Stop, run_phase};
pub use template::Scope;
pub use validate::{resolve_function, validate};

use crate::model::ModuleRef;

/// Pipelines shipped in the binary: (name, TOML source).
const BUILTIN_PIPELINES: &[(&str, &str)] = &[(
    "elasticsearch-datadir",
    include_str!("../../../tasks/pipelines/elasticsearch-datadir.toml"),
)];

/// A validated pipeline.
#[derive(Debug, Clone, PartialEq)]
pub struct Pipeline {
    /// Its name (`pipeline:NAME`, the file stem, or the built-in name).
    pub name: String,
    /// What it does.
    pub description: String,
    /// Declared params.
    pub params: BTreeMap<String, ParamDecl>,
    /// Backup steps, if it can back up.
    pub backup: Option<Phase>,
    /// Restore steps, if it can restore.
    pub restore: Option<Phase>,
}

/// A declared param.
#[derive(Debug, Clone, PartialEq)]
pub struct ParamDecl {
    /// What it is.
    pub description: String,
    /// Whether a job must set it.
    pub required: bool,
    /// Default value.
    pub default: Option<Value>,
}

/// Main and `finally` steps of one operation.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Phase {
    /// Main steps.
    pub steps: Vec<Step>,
    /// Steps that always run.
    pub finally: Vec<Step>,
}

/// One validated step.
#[derive(Debug, Clone, PartialEq)]
pub struct Step {
    /// Step name.
    pub name: String,
    /// What it calls: `function `NAME`` or `task `builtin:NAME``.
    pub calls: String,
    /// Whether the module is a Task (else a Function).
    pub is_task: bool,
    /// The module.
    pub module: ModuleRef,
    /// Params (JSON object) with templates.
    pub params: Value,
    /// Step timeout, if set.
    pub timeout: Option<Duration>,
}

/// The built-in pipeline called `name`, parsed.
///
/// # Panics
/// If a shipped pipeline does not parse (caught by the tests).
#[must_use]
pub fn builtin(name: &str) -> Option<PipelineFile> {
    BUILTIN_PIPELINES
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(n, text)| {
            toml::from_str(text).unwrap_or_else(|e| panic!("built-in pipeline `{n}`: {e}"))
        })
}

/// Names of the built-in pipelines.
#[must_use]
pub fn builtin_names() -> Vec<&'static str> {
    BUILTIN_PIPELINES.iter().map(|(n, _)| *n).collect()
}
