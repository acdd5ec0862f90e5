//! The shape of a pipeline as written: `[pipelines.NAME]` in the
//! configuration, or a pipeline file's top level (serde, unknown keys refused).

use std::collections::BTreeMap;

use serde::Deserialize;

/// `[pipelines.NAME]`, or a pipeline file's top level.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct PipelineFile {
    /// One line saying what the pipeline does.
    pub description: Option<String>,
    /// Declared params: documented, defaulted, and checked in references.
    #[serde(default)]
    pub params: BTreeMap<String, ParamFile>,
    /// Steps of a backup.
    pub backup: Option<PhaseFile>,
    /// Steps of a restore.
    pub restore: Option<PhaseFile>,
}

/// A declared pipeline param.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct ParamFile {
    /// What it is.
    #[serde(default)]
    pub description: String,
    /// Whether a job must set it.
    #[serde(default)]
    pub required: bool,
    /// Value used when the job does not set it.
    pub default: Option<toml::Value>,
}

/// `backup` or `restore`: ordered steps, then `finally` steps.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct PhaseFile {
    /// Run in order; the first failure stops them.
    #[serde(default)]
    pub steps: Vec<StepFile>,
    /// Always run afterwards, in order.
    #[serde(default)]
    pub finally: Vec<StepFile>,
}

/// One step.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct StepFile {
    /// Unique within its phase (`backup` or `restore`); later steps refer
    /// to its result by it.
    pub name: String,
    /// A built-in Function (`http-request`) or one from `[functions]`.
    pub function: Option<String>,
    /// Or a Task module (`builtin:postgres`, a `.wasm` path): the step runs
    /// its `backup` (in backup steps) or `restore` (in restore steps) with
    /// `params` as the task's params, writing into the same snapshot.
    pub task: Option<String>,
    /// Params passed to the function, with templates.
    #[serde(default)]
    pub params: toml::Table,
    /// Timeout of this step (default: the job's timeout for main steps,
    /// 10 minutes for `finally` steps).
    pub timeout: Option<String>,
}
