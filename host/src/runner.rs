//! Runs a job end to end: records the run, prepares its sandbox from the
//! job's grants and limits, calls the task, and records how it ended.
//! Also checks, without running anything but `describe`, that each job's
//! grants cover what its task says it needs.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex};

use anyhow::Context as _;
use serde_json::{Map, Value};
use url::Url;

use crate::capabilities::log::{Redactor, RunLog};
use crate::capabilities::progress::{ProgressSink, no_progress};
use crate::capabilities::secrets::SecretValues;
use crate::config::{Config, Grants, JobConfig, Problem};
use crate::runtime::bindings::task::cairn::plugin::types::Context;
use crate::runtime::{Description, LoadedModule, RunError, RunSetup, Runtime, TaskOp};
use crate::state::sqlite::SqliteStore;
use crate::state::{RunKind, RunOutcome, RunRecord, RunStatus, StateStore};

/// How a run ended, as reported to the caller.
#[derive(Debug, Clone, serde::Serialize)]
pub struct RunReport {
    /// The final run record.
    pub run: RunRecord,
    /// The task's JSON result, when it succeeded.
    pub result: Option<Value>,
}

impl RunReport {
    /// Whether the run succeeded.
    pub fn succeeded(&self) -> bool {
        self.run.status == RunStatus::Succeeded
    }
}

/// Runs jobs of one configuration.
pub struct Runner {
    config: Arc<Config>,
    runtime: Runtime,
    store: Arc<dyn StateStore>,
    functions: Arc<BTreeMap<String, crate::config::ModuleRef>>,
}

impl Runner {
    /// A runner for `config`, opening its state store (marking runs of dead
    /// processes interrupted) and a runtime with its compile cache.
    ///
    /// # Errors
    /// When the state store cannot be opened or the engine not created.
    pub fn open(config: Config) -> anyhow::Result<Self> {
        let store = SqliteStore::open(&config.state_path)?;
        let interrupted = store.reconcile_interrupted()?;
        if interrupted > 0 {
            tracing::warn!(
                "{interrupted} run(s) left running by a process that died are now marked interrupted"
            );
        }
        let runtime = Runtime::new(Some(&config.cache_dir))?;
        Ok(Self::new(config, runtime, Arc::new(store)))
    }

    /// A runner from parts (tests share one runtime between runners).
    pub fn new(config: Config, runtime: Runtime, store: Arc<dyn StateStore>) -> Self {
        let functions = Arc::new(config.functions.clone());
        Self {
            config: Arc::new(config),
            runtime,
            store,
            functions,
        }
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The state store.
    pub fn store(&self) -> &Arc<dyn StateStore> {
        &self.store
    }

    /// The runtime.
    pub fn runtime(&self) -> &Runtime {
        &self.runtime
    }

    fn setup(&self, job: &JobConfig, run_id: &str, progress: ProgressSink) -> RunSetup {
        let secrets = Arc::new(SecretValues::resolve(
            &job.name,
            &job.grants.secrets,
            &job.grants.readable_secrets,
            &self.config.secrets,
        ));
        let redactor = Arc::new(Redactor::new(secrets.all_values()));
        RunSetup {
            job: job.name.clone(),
            run_id: run_id.to_string(),
            grants: Arc::new(job.grants.clone()),
            limits: job.limits.clone(),
            store: self.store.clone(),
            log: RunLog::new(&job.name, run_id, redactor),
            secrets,
            functions: self.functions.clone(),
            progress,
            last_progress: Arc::new(Mutex::new(None)),
        }
    }

    /// Run `kind` of job `job_name`, with `overrides` merged over its params.
    /// The run is recorded before it starts; its outcome and log afterwards.
    /// A failed run is a report with status `failed`, not an `Err`.
    ///
    /// # Errors
    /// Unknown job, or the state store failing.
    pub async fn run(
        &self,
        job_name: &str,
        kind: RunKind,
        overrides: Map<String, Value>,
        progress: ProgressSink,
    ) -> anyhow::Result<RunReport> {
        let job = self.config.job(job_name)?;
        let mut params = job.params.clone();
        params.extend(overrides);
        let record = self.store.start_run(&job.name, kind)?;
        let setup = self.setup(job, &record.id, progress);
        let log = setup.log.clone();
        let last_progress = setup.last_progress.clone();
        log.host(
            "info",
            &format!(
                "{} of job `{}` started (task {})",
                kind_word(kind),
                job.name,
                label(job)
            ),
        );

        let outcome = self.execute(job, kind, params, &record.id, setup).await;
        let (status, error, result) = match outcome {
            Ok(json) => (
                RunStatus::Succeeded,
                None,
                Some(redact_json(log.redactor(), json)),
            ),
            Err(e) => (
                RunStatus::Failed,
                Some(log.redactor().redact(&format!("{e:#}"))),
                None,
            ),
        };
        if let Some(p) = *last_progress.lock().unwrap() {
            let unit = if p.bytes { " bytes" } else { "" };
            let total = p.total.map(|t| format!(" of {t}")).unwrap_or_default();
            log.host("info", &format!("progress: {}{total}{unit}", p.done));
        }
        match &error {
            None => log.host("info", &format!("{} succeeded", kind_word(kind))),
            Some(e) => log.host("error", &format!("{} failed: {e}", kind_word(kind))),
        }
        let bytes = last_progress
            .lock()
            .unwrap()
            .filter(|p| p.bytes)
            .map(|p| p.done)
            .unwrap_or(0);
        let result_text = result.as_ref().map(Value::to_string);
        self.store.append_logs(&record.id, &log.lines())?;
        self.store.finish_run(
            &record.id,
            &RunOutcome {
                status,
                error,
                snapshot_id: None,
                bytes,
                result: result_text,
            },
        )?;
        Ok(RunReport {
            run: self.store.run(&record.id)?,
            result,
        })
    }

    async fn execute(
        &self,
        job: &JobConfig,
        kind: RunKind,
        params: Map<String, Value>,
        run_id: &str,
        setup: RunSetup,
    ) -> anyhow::Result<Value> {
        let module = self
            .runtime
            .load(&job.task)
            .await
            .with_context(|| format!("job `{}`", job.name))?;
        let context = Context {
            job: job.name.clone(),
            run_id: run_id.to_string(),
            params: Value::Object(params).to_string(),
            snapshot: None,
        };
        let op = match kind {
            RunKind::Backup => TaskOp::Backup,
            RunKind::Restore => TaskOp::Restore,
        };
        let out = self
            .runtime
            .run_task(&module, op, context, setup)
            .await
            .map_err(|e| {
                anyhow::Error::new(e).context(format!("{} of job `{}`", kind_word(kind), job.name))
            })?;
        Ok(serde_json::from_str(&out)?)
    }

    /// Describe the module of `job` (loads and instantiates it with no grants).
    ///
    /// # Errors
    /// When the module cannot be loaded or its `describe` fails.
    pub async fn describe_job(
        &self,
        job: &JobConfig,
    ) -> anyhow::Result<(Arc<LoadedModule>, Description)> {
        let module = self.runtime.load(&job.task).await?;
        let description = describe(&self.runtime, &module, self.store.clone()).await?;
        Ok((module, description))
    }

    /// Check every job: its module loads, and its grants and params cover what
    /// its `describe` says it needs. Returns every problem found.
    pub async fn check(&self) -> Vec<Problem> {
        let mut problems = Vec::new();
        for job in self.config.jobs.values() {
            match self.describe_job(job).await {
                Ok((_, d)) => problems.extend(check_needs(job, &d, &self.config.base_dir)),
                Err(e) => problems.push(Problem {
                    location: format!("job `{}`, key `task`", job.name),
                    message: format!("{e:#}"),
                }),
            }
        }
        problems
    }
}

/// Call `describe` of `module` in a sandbox with no grants.
///
/// # Errors
/// When instantiation or the call fails.
pub async fn describe(
    runtime: &Runtime,
    module: &LoadedModule,
    store: Arc<dyn StateStore>,
) -> Result<Description, RunError> {
    let grants = Arc::new(Grants::default());
    let secrets = Arc::new(SecretValues::default());
    let setup = RunSetup {
        job: "(describe)".into(),
        run_id: "describe".into(),
        grants,
        limits: crate::config::Limits::default(),
        store,
        log: RunLog::new("(describe)", "describe", Arc::new(Redactor::default())),
        secrets,
        functions: Arc::new(BTreeMap::new()),
        progress: no_progress(),
        last_progress: Arc::new(Mutex::new(None)),
    };
    runtime.describe(module, setup).await
}

/// `value` with every secret value in its strings, keys and numbers replaced
/// by `***`, so a task echoing a secret cannot leak it into run history.
fn redact_json(redactor: &Redactor, value: Value) -> Value {
    match value {
        Value::String(s) => Value::String(redactor.redact(&s)),
        Value::Number(n) => {
            let text = n.to_string();
            if redactor.redact(&text) == text {
                Value::Number(n)
            } else {
                Value::String("***".into())
            }
        }
        Value::Array(items) => Value::Array(
            items
                .into_iter()
                .map(|v| redact_json(redactor, v))
                .collect(),
        ),
        Value::Object(map) => Value::Object(
            map.into_iter()
                .map(|(k, v)| (redactor.redact(&k), redact_json(redactor, v)))
                .collect(),
        ),
        other => other,
    }
}

fn kind_word(kind: RunKind) -> &'static str {
    match kind {
        RunKind::Backup => "backup",
        RunKind::Restore => "restore",
    }
}

fn label(job: &JobConfig) -> String {
    match &job.task.source {
        crate::config::ModuleSource::Builtin(n) => format!("builtin:{n}"),
        crate::config::ModuleSource::File(p) => p.display().to_string(),
    }
}

/// Values a `needs` entry stands for: a literal, or `{param}` / `{param[N]}`.
fn expand(entry: &str, params: &Map<String, Value>) -> Vec<String> {
    let Some(inner) = entry.strip_prefix('{').and_then(|e| e.strip_suffix('}')) else {
        return vec![entry.to_string()];
    };
    let (name, index) = match inner.split_once('[') {
        Some((n, rest)) => (
            n,
            rest.strip_suffix(']').and_then(|i| i.parse::<usize>().ok()),
        ),
        None => (inner, None),
    };
    let strings = |v: &Value| -> Vec<String> {
        match v {
            Value::String(s) => vec![s.clone()],
            Value::Array(items) => items
                .iter()
                .filter_map(|i| i.as_str().map(str::to_string))
                .collect(),
            _ => vec![],
        }
    };
    match (params.get(name), index) {
        (None, _) => vec![],
        (Some(Value::Array(items)), Some(i)) => items.get(i).map(strings).unwrap_or_default(),
        (Some(v), _) => strings(v),
    }
}

fn granted_list(items: Vec<String>) -> String {
    if items.is_empty() {
        "grants none".into()
    } else {
        format!("grants only {}", items.join(", "))
    }
}

/// Problems with `job` given what its task describes: missing required params
/// and needs its grants do not cover.
pub fn check_needs(job: &JobConfig, d: &Description, base_dir: &Path) -> Vec<Problem> {
    let mut problems = Vec::new();
    let at = |key: &str| format!("job `{}`, key `{key}`", job.name);
    for p in &d.params {
        if p.required && !job.params.contains_key(&p.name) {
            problems.push(Problem {
                location: at(&format!("params.{}", p.name)),
                message: format!(
                    "task `{}` requires param `{}`: {}",
                    d.name, p.name, p.description
                ),
            });
        }
    }
    let g = &job.grants;
    for entry in &d.needs.http {
        for value in expand(entry, &job.params) {
            match Url::parse(&value) {
                Ok(url) if g.http.iter().any(|o| o.matches(&url)) => {}
                Ok(url) => problems.push(Problem {
                    location: at("allow.http"),
                    message: format!(
                        "task needs http to {}, but `allow.http` {}",
                        crate::capabilities::http::origin_of(&url),
                        granted_list(g.http.iter().map(ToString::to_string).collect())
                    ),
                }),
                Err(e) => problems.push(Problem {
                    location: at("params"),
                    message: format!("`{value}` (from `{entry}`) is not a URL: {e}"),
                }),
            }
        }
    }
    for entry in &d.needs.commands {
        for value in expand(entry, &job.params) {
            let covered = g.commands.contains_key(&value)
                || g.commands.values().any(|p| {
                    p.path
                        .as_deref()
                        .is_some_and(|path| path == Path::new(&value))
                });
            if !covered {
                problems.push(Problem {
                    location: at("allow.commands"),
                    message: format!(
                        "task needs to run `{value}`, but `allow.commands` {}",
                        granted_list(g.commands.keys().cloned().collect())
                    ),
                });
            }
        }
    }
    for entry in &d.needs.paths {
        for value in expand(entry, &job.params) {
            let path = base_dir.join(&value);
            if !g.paths.keys().any(|p| path.starts_with(p)) {
                problems.push(Problem {
                    location: at("allow.paths"),
                    message: format!(
                        "task needs path {}, but `allow.paths` {}",
                        path.display(),
                        granted_list(g.paths.keys().map(|p| p.display().to_string()).collect())
                    ),
                });
            }
        }
    }
    for entry in &d.needs.secrets {
        for value in expand(entry, &job.params) {
            if !g.secrets.contains(&value) {
                problems.push(Problem {
                    location: at("allow.secrets"),
                    message: format!(
                        "task needs secret `{value}`, but `allow.secrets` {}",
                        granted_list(g.secrets.iter().cloned().collect())
                    ),
                });
            }
        }
    }
    for entry in &d.needs.functions {
        for value in expand(entry, &job.params) {
            if !g.functions.contains(&value) {
                problems.push(Problem {
                    location: at("allow.functions"),
                    message: format!(
                        "task calls function `{value}`, but `allow.functions` {}",
                        granted_list(g.functions.iter().cloned().collect())
                    ),
                });
            }
        }
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn results_are_redacted_in_strings_keys_and_numbers() {
        let r = Redactor::new(["s3cret".to_string(), "424242".to_string()]);
        let v = redact_json(
            &r,
            json!({"a": "x s3cret y", "s3cret": 1, "n": 424242, "l": ["s3cret"]}),
        );
        assert_eq!(
            v,
            json!({"a": "x *** y", "***": 1, "n": "***", "l": ["***"]})
        );
    }

    #[test]
    fn needs_entries_expand_from_params() {
        let params = json!({"url": "http://a:1", "command": ["pg_dump", "-Fc"], "n": 3})
            .as_object()
            .unwrap()
            .clone();
        assert_eq!(expand("pg_dump", &params), vec!["pg_dump"]);
        assert_eq!(expand("{url}", &params), vec!["http://a:1"]);
        assert_eq!(expand("{command[0]}", &params), vec!["pg_dump"]);
        assert_eq!(expand("{command}", &params), vec!["pg_dump", "-Fc"]);
        assert!(expand("{missing}", &params).is_empty());
        assert!(expand("{n}", &params).is_empty());
    }
}
