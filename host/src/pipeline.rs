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

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use serde::Deserialize;
use serde_json::{Map, Value};
use tokio_util::sync::CancellationToken;

use crate::config::ModuleRef;
use crate::runtime::bindings::task::cairn::plugin::types::Context;
use crate::runtime::{RunError, RunSetup, Runtime, TaskOp, describe_wit_error};
use crate::units::{format_duration, parse_duration};

/// Default timeout of one `finally` step.
pub const FINALLY_TIMEOUT: Duration = Duration::from_secs(600);

/// Pipelines shipped in the binary: (name, TOML source).
const BUILTIN_PIPELINES: &[(&str, &str)] = &[(
    "elasticsearch-datadir",
    include_str!("../../tasks/pipelines/elasticsearch-datadir.toml"),
)];

// ---------------------------------------------------------------------------
// File shape
// ---------------------------------------------------------------------------

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

// ---------------------------------------------------------------------------
// Validated pipeline
// ---------------------------------------------------------------------------

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

/// Validate `file` as pipeline `name`. `function` resolves a function name to
/// its module, `task` a task reference (or says why not). Each problem is
/// `(key path, message)`, the key path relative to the pipeline
/// (`backup.steps[1].function`).
pub fn validate(
    name: &str,
    file: &PipelineFile,
    function: &dyn Fn(&str) -> Result<ModuleRef, String>,
    task: &dyn Fn(&str) -> Result<ModuleRef, String>,
) -> Result<Pipeline, Vec<(String, String)>> {
    let mut problems = Vec::new();
    let mut params = BTreeMap::new();
    for (param, decl) in &file.params {
        let default = match decl.default.as_ref().map(toml_to_json) {
            None => None,
            Some(Ok(v)) => Some(v),
            Some(Err(m)) => {
                problems.push((format!("params.{param}.default"), m));
                None
            }
        };
        params.insert(
            param.clone(),
            ParamDecl {
                description: decl.description.clone(),
                required: decl.required,
                default,
            },
        );
    }
    if file.backup.is_none() && file.restore.is_none() {
        problems.push((
            String::new(),
            "has neither `backup` nor `restore` steps: add `[[…backup.steps]]`".into(),
        ));
    }
    let phase = |key: &str, phase: &Option<PhaseFile>, problems: &mut Vec<(String, String)>| {
        let phase = phase.as_ref()?;
        let mut names = BTreeSet::new();
        if phase.steps.is_empty() && phase.finally.is_empty() {
            problems.push((key.to_string(), "has no steps".into()));
        }
        // Names are unique within a phase; references must point
        // to steps of the same phase that run earlier (`finally` steps run
        // after every main step).
        let mut earlier: Vec<String> = Vec::new();
        let mut out = Phase::default();
        for (list, finally) in [(&phase.steps, false), (&phase.finally, true)] {
            for (i, step) in list.iter().enumerate() {
                let at = format!("{key}.{}[{i}]", if finally { "finally" } else { "steps" });
                if step.name.is_empty()
                    || !step
                        .name
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
                {
                    problems.push((
                        format!("{at}.name"),
                        format!(
                            "`{}` is not a step name: use letters, digits, `-` and `_`",
                            step.name
                        ),
                    ));
                }
                if !names.insert(step.name.clone()) {
                    problems.push((
                        format!("{at}.name"),
                        format!("another step is already called `{}`", step.name),
                    ));
                }
                let (module, calls, is_task) = match (&step.function, &step.task) {
                    (Some(f), None) => (
                        function(f).map_err(|m| (format!("{at}.function"), m)),
                        format!("function `{f}`"),
                        false,
                    ),
                    (None, Some(t)) => (
                        task(t).map_err(|m| (format!("{at}.task"), m)),
                        format!("task `{t}`"),
                        true,
                    ),
                    _ => (
                        Err((
                            at.clone(),
                            "set either `function = \"NAME\"` or `task = \"builtin:NAME\"`".into(),
                        )),
                        String::new(),
                        false,
                    ),
                };
                let module = match module {
                    Ok(m) => Some(m),
                    Err(problem) => {
                        problems.push(problem);
                        None
                    }
                };
                let timeout = match step.timeout.as_deref().map(parse_duration) {
                    None => None,
                    Some(Ok(d)) if !d.is_zero() => Some(d),
                    Some(Ok(_)) => {
                        problems.push((format!("{at}.timeout"), "must be longer than zero".into()));
                        None
                    }
                    Some(Err(m)) => {
                        problems.push((format!("{at}.timeout"), m));
                        None
                    }
                };
                let params_json = match toml_to_json(&toml::Value::Table(step.params.clone())) {
                    Ok(v) => v,
                    Err(m) => {
                        problems.push((format!("{at}.params"), m));
                        Value::Null
                    }
                };
                for reference in references(&params_json) {
                    if let Err(m) = check_reference(&reference, &params, &earlier, finally) {
                        problems.push((format!("{at}.params"), m));
                    }
                }
                earlier.push(step.name.clone());
                if let Some(module) = module {
                    let step = Step {
                        name: step.name.clone(),
                        calls,
                        is_task,
                        module,
                        params: params_json,
                        timeout,
                    };
                    if finally {
                        out.finally.push(step);
                    } else {
                        out.steps.push(step);
                    }
                }
            }
        }
        Some(out)
    };
    let backup = phase("backup", &file.backup, &mut problems);
    let restore = phase("restore", &file.restore, &mut problems);
    if problems.is_empty() {
        Ok(Pipeline {
            name: name.to_string(),
            description: file.description.clone().unwrap_or_default(),
            params,
            backup,
            restore,
        })
    } else {
        Err(problems)
    }
}

use crate::config::toml_to_json;

// ---------------------------------------------------------------------------
// Templates
// ---------------------------------------------------------------------------

/// One `{{…}}` reference, as written between the braces (trimmed).
fn references(value: &Value) -> Vec<String> {
    let mut out = Vec::new();
    walk_strings(value, &mut |s| {
        for piece in pieces(s) {
            if let Piece::Ref(r) = piece {
                out.push(r.to_string());
            }
        }
    });
    out
}

fn walk_strings(value: &Value, f: &mut dyn FnMut(&str)) {
    match value {
        Value::String(s) => f(s),
        Value::Array(items) => items.iter().for_each(|v| walk_strings(v, f)),
        Value::Object(map) => map.iter().for_each(|(k, v)| {
            f(k);
            walk_strings(v, f);
        }),
        _ => {}
    }
}

#[derive(Debug, PartialEq)]
enum Piece<'a> {
    Text(&'a str),
    Ref(&'a str),
}

/// Split a string into text and `{{ref}}` pieces. `{{secret:…}}` stays text
/// (the host's HTTP capability substitutes it).
fn pieces(s: &str) -> Vec<Piece<'_>> {
    let mut out = Vec::new();
    let mut rest = s;
    while let Some(start) = rest.find("{{") {
        let Some(len) = rest[start + 2..].find("}}") else {
            break;
        };
        let inner = rest[start + 2..start + 2 + len].trim();
        if inner.starts_with("secret:") || inner.starts_with("secret-") {
            out.push(Piece::Text(&rest[..start + 4 + len]));
        } else {
            if start > 0 {
                out.push(Piece::Text(&rest[..start]));
            }
            out.push(Piece::Ref(inner));
        }
        rest = &rest[start + 4 + len..];
    }
    if !rest.is_empty() {
        out.push(Piece::Text(rest));
    }
    out
}

/// Check a reference when the configuration loads.
fn check_reference(
    reference: &str,
    params: &BTreeMap<String, ParamDecl>,
    earlier: &[String],
    finally: bool,
) -> Result<(), String> {
    let mut parts = reference.split('.');
    let head = parts.next().unwrap_or_default();
    match head {
        "job" if reference == "job" => Ok(()),
        "run" => match parts.next() {
            Some("id" | "snapshot") => Ok(()),
            Some("status" | "error") if finally => Ok(()),
            Some("status" | "error") => Err(format!(
                "`{{{{{reference}}}}}` is only known in `finally` steps"
            )),
            _ => Err(format!(
                "`{{{{{reference}}}}}`: `run` has `id`, `snapshot`, and in finally steps `status` and `error`"
            )),
        },
        "params" => {
            let Some(name) = parts.next() else {
                return Err("`{{params}}` needs a param name: `{{params.NAME}}`".into());
            };
            if params.is_empty() || params.contains_key(name) {
                Ok(())
            } else {
                Err(format!(
                    "`{{{{{reference}}}}}` refers to param `{name}`, which the pipeline does not declare (declared: {})",
                    params.keys().cloned().collect::<Vec<_>>().join(", ")
                ))
            }
        }
        "steps" => {
            let Some(name) = parts.next() else {
                return Err("`{{steps}}` needs a step name: `{{steps.NAME}}`".into());
            };
            if earlier.iter().any(|e| e == name) {
                Ok(())
            } else {
                Err(format!(
                    "`{{{{{reference}}}}}` refers to step `{name}`, which does not run before this step{}",
                    if earlier.is_empty() {
                        String::new()
                    } else {
                        format!(" (earlier steps: {})", earlier.join(", "))
                    }
                ))
            }
        }
        _ => Err(format!(
            "unknown reference `{{{{{reference}}}}}`: use `params.NAME`, `steps.NAME`, `job`, or `run.id`"
        )),
    }
}

/// What templates can refer to while a phase runs.
#[derive(Debug, Clone, Default)]
pub struct Scope {
    /// `params.*`.
    pub params: Map<String, Value>,
    /// `steps.*`: results of the steps that succeeded.
    pub steps: Map<String, Value>,
    /// `job`.
    pub job: String,
    /// `run.id`.
    pub run_id: String,
    /// `run.snapshot`.
    pub snapshot: Option<String>,
    /// `run.status` and `run.error`, in `finally` steps.
    pub outcome: Option<(String, String)>,
    /// Whether this is a restore (task steps run `restore`, else `backup`).
    pub restoring: bool,
}

impl Scope {
    fn lookup(&self, reference: &str) -> Result<Value, String> {
        let mut parts = reference.split('.');
        let head = parts.next().unwrap_or_default();
        let (root, what) = match head {
            "job" => return Ok(Value::String(self.job.clone())),
            "run" => {
                return match parts.next() {
                    Some("id") => Ok(Value::String(self.run_id.clone())),
                    Some("snapshot") => {
                        Ok(self.snapshot.clone().map_or(Value::Null, Value::String))
                    }
                    Some("status") => Ok(Value::String(self.outcome.clone().unwrap_or_default().0)),
                    Some("error") => Ok(Value::String(self.outcome.clone().unwrap_or_default().1)),
                    _ => Err(format!("unknown reference `{{{{{reference}}}}}`")),
                };
            }
            "params" => (&self.params, "param"),
            "steps" => (&self.steps, "step"),
            _ => return Err(format!("unknown reference `{{{{{reference}}}}}`")),
        };
        let name = parts.next().unwrap_or_default();
        let mut value = root.get(name).ok_or_else(|| match what {
            "param" => format!("`{{{{{reference}}}}}`: the job has no param `{name}`"),
            _ => format!(
                "`{{{{{reference}}}}}`: step `{name}` has no result (it did not run or failed)"
            ),
        })?;
        let mut path = vec![name];
        for part in parts {
            path.push(part);
            let next = match value {
                Value::Object(m) => m.get(part),
                Value::Array(items) => part.parse::<usize>().ok().and_then(|i| items.get(i)),
                _ => None,
            };
            value = next.ok_or_else(|| {
                format!(
                    "`{{{{{reference}}}}}`: `{}` has no `{part}`",
                    path[..path.len() - 1].join(".")
                )
            })?;
        }
        Ok(value.clone())
    }

    /// `value` with every reference substituted.
    ///
    /// # Errors
    /// A reference to something that is not there.
    pub fn expand(&self, value: &Value) -> Result<Value, String> {
        Ok(match value {
            Value::String(s) => self.expand_str(s)?,
            Value::Array(items) => Value::Array(
                items
                    .iter()
                    .map(|v| self.expand(v))
                    .collect::<Result<_, _>>()?,
            ),
            Value::Object(map) => Value::Object(
                map.iter()
                    .map(|(k, v)| {
                        let key = match self.expand_str(k)? {
                            Value::String(s) => s,
                            other => other.to_string(),
                        };
                        Ok((key, self.expand(v)?))
                    })
                    .collect::<Result<_, String>>()?,
            ),
            other => other.clone(),
        })
    }

    fn expand_str(&self, s: &str) -> Result<Value, String> {
        let pieces = pieces(s);
        if let [Piece::Ref(r)] = pieces.as_slice() {
            return self.lookup(r);
        }
        let mut out = String::new();
        for piece in pieces {
            match piece {
                Piece::Text(t) => out.push_str(t),
                Piece::Ref(r) => match self.lookup(r)? {
                    Value::String(v) => out.push_str(&v),
                    Value::Null => {}
                    other => out.push_str(&other.to_string()),
                },
            }
        }
        Ok(Value::String(out))
    }
}

// ---------------------------------------------------------------------------
// Running
// ---------------------------------------------------------------------------

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
    setup: &RunSetup,
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
    let log = setup.log.clone();
    let main = async {
        for step in &phase.steps {
            // The phase's own timeout (below) is the one that fires for a
            // step without a timeout of its own: the call's limit is later.
            let limit = timeout.saturating_add(Duration::from_secs(5));
            let result = run_step(runtime, step, &scope, setup, limit).await;
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
        match run_step(runtime, step, &scope, setup, limit).await {
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
    setup: &RunSetup,
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
    let mut setup = setup.clone();
    setup.limits.timeout = step.timeout.unwrap_or(default_limit);
    setup.log.host("info", &format!("{label} started"));
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
        runtime.run_task(&module, op, context, setup.clone()).await
    } else {
        runtime
            .call_function(&module, &params.to_string(), setup.clone())
            .await
    };
    let out = match out {
        Ok(text) => text,
        Err(RunError::Module(e)) => {
            return Err(format!("{label} failed: {}", describe_wit_error(&e)));
        }
        Err(e) => return Err(format!("{label} failed: {e}")),
    };
    setup.log.host(
        "info",
        &format!(
            "{label} succeeded in {}",
            format_duration(started.elapsed())
        ),
    );
    serde_json::from_str(&out).map_err(|e| format!("{label} returned invalid JSON: {e}"))
}

/// The module of function `name`: one from `[functions]`, else a built-in
/// Function.
///
/// # Errors
/// No such function, or `name` is a task.
pub fn resolve_function(
    name: &str,
    declared: &BTreeMap<String, ModuleRef>,
) -> Result<ModuleRef, String> {
    if let Some(m) = declared.get(name) {
        return Ok(m.clone());
    }
    let functions = crate::builtins::all()
        .iter()
        .filter(|b| b.kind == crate::builtins::ModuleKind::Function)
        .collect::<Vec<_>>();
    if let Some(b) = functions.iter().find(|b| b.name == name) {
        return Ok(ModuleRef {
            source: b.source(),
            sha256: None,
        });
    }
    let mut available = functions.iter().map(|b| b.name).collect::<Vec<_>>();
    available.extend(declared.keys().map(String::as_str));
    Err(format!(
        "no function `{name}`: built-in and declared functions are {}",
        available.join(", ")
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ModuleSource;
    use serde_json::json;

    fn scope() -> Scope {
        Scope {
            params: json!({"url": "http://es:9200", "n": 3, "list": ["a", "b"]})
                .as_object()
                .unwrap()
                .clone(),
            steps: json!({"get": {"hits": [{"id": "x"}], "ok": true}})
                .as_object()
                .unwrap()
                .clone(),
            job: "j".into(),
            run_id: "R1".into(),
            snapshot: None,
            outcome: None,
            restoring: false,
        }
    }

    #[test]
    fn whole_references_keep_their_type_and_embedded_ones_become_text() {
        let s = scope();
        let v = s
            .expand(&json!({
                "n": "{{params.n}}",
                "list": "{{ params.list }}",
                "url": "{{params.url}}/_all/_settings",
                "id": "{{steps.get.hits.0.id}}",
                "text": "n={{params.n}} ok={{steps.get.ok}} run {{run.id}} of {{job}}",
                "auth": "Basic {{secret-base64:ES}} {{secret:X}}",
            }))
            .unwrap();
        assert_eq!(
            v,
            json!({
                "n": 3,
                "list": ["a", "b"],
                "url": "http://es:9200/_all/_settings",
                "id": "x",
                "text": "n=3 ok=true run R1 of j",
                "auth": "Basic {{secret-base64:ES}} {{secret:X}}",
            })
        );
    }

    #[test]
    fn missing_values_are_errors_naming_the_reference() {
        let s = scope();
        let e = s.expand(&json!("{{params.nope}}")).unwrap_err();
        assert!(e.contains("no param `nope`"), "{e}");
        let e = s.expand(&json!("{{steps.get.hits.5.id}}")).unwrap_err();
        assert!(e.contains("`get.hits` has no `5`"), "{e}");
        let e = s.expand(&json!("x {{steps.later}}")).unwrap_err();
        assert!(e.contains("step `later` has no result"), "{e}");
    }

    fn file(text: &str) -> PipelineFile {
        toml::from_str(text).unwrap()
    }

    fn resolve(name: &str) -> Result<ModuleRef, String> {
        if name == "nope" {
            Err("no function `nope`".into())
        } else {
            Ok(ModuleRef {
                source: ModuleSource::Builtin(name.into()),
                sha256: None,
            })
        }
    }

    #[test]
    fn references_are_checked_at_load() {
        let f = file(
            r#"
            params.url = { required = true }
            [[backup.steps]]
            name = "a"
            function = "http-request"
            params = { url = "{{params.url}}", x = "{{steps.b}}", y = "{{params.typo}}", z = "{{run.status}}" }
            [[backup.steps]]
            name = "b"
            function = "nope"
            [[backup.finally]]
            name = "c"
            function = "http-request"
            params = { s = "{{run.status}} {{run.error}} {{steps.a}} {{steps.b}}" }
            [[backup.finally]]
            name = "a"
            function = "http-request"
            "#,
        );
        let problems = validate("p", &f, &resolve, &resolve).unwrap_err();
        let text = problems
            .iter()
            .map(|(k, m)| format!("{k}: {m}"))
            .collect::<Vec<_>>()
            .join("\n");
        assert!(text.contains("backup.steps[0].params: `{{steps.b}}` refers to step `b`, which does not run before"), "{text}");
        assert!(
            text.contains("param `typo`, which the pipeline does not declare"),
            "{text}"
        );
        assert!(
            text.contains("`{{run.status}}` is only known in `finally` steps"),
            "{text}"
        );
        assert!(
            text.contains("backup.steps[1].function: no function `nope`"),
            "{text}"
        );
        assert!(
            text.contains("backup.finally[1].name: another step is already called `a`"),
            "{text}"
        );
        // Finally steps may refer to any main step and to run.status/error.
        assert!(!text.contains("backup.finally[0].params"), "{text}");
        assert_eq!(problems.len(), 5, "{text}");
    }

    #[test]
    fn a_pipeline_needs_steps() {
        let problems = validate("p", &file("description = \"x\""), &resolve, &resolve).unwrap_err();
        assert!(problems[0].1.contains("neither `backup` nor `restore`"));
    }

    #[test]
    fn builtin_pipelines_parse_and_validate() {
        for name in builtin_names() {
            let f = builtin(name).unwrap();
            validate(name, &f, &resolve, &resolve).unwrap();
        }
    }

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
