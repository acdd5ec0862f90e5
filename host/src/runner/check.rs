//! `cairn validate`'s checks: every job's module loads, and its grants and
//! params cover what its task's `describe` says it needs. Nothing runs but
//! `describe`, in a sandbox with no grants.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex};

use serde_json::{Map, Value};
use url::Url;

use super::Runner;
use crate::capabilities::bindings::Description;
use crate::capabilities::log::RunLog;
use crate::capabilities::progress::no_progress;
use crate::capabilities::redact::Redactor;
use crate::capabilities::secrets::SecretValues;
use crate::capabilities::storage::RunStorage;
use crate::capabilities::{RunContext, grants_phrase};
use crate::config::{JobConfig, Problem};
use crate::model::{Grants, Limits, ModuleKind, PipelineRef, origin_of};
use crate::runtime::{LoadedModule, RunError, Runtime};
use crate::state::StateStore;

impl Runner {
    /// Problems with a pipeline job: missing required params, and step
    /// functions that do not load or are not Functions.
    async fn check_pipeline(&self, job: &JobConfig, key: &PipelineRef) -> Vec<Problem> {
        let at = |k: &str| format!("job `{}`, key `{k}`", job.name);
        let pipeline = match self.pipeline(key) {
            Ok(p) => p,
            Err(e) => {
                return vec![Problem {
                    location: at("task"),
                    message: format!("{e:#}"),
                }];
            }
        };
        let mut problems = Vec::new();
        for (name, decl) in &pipeline.params {
            if decl.required && decl.default.is_none() && !job.params.contains_key(name) {
                problems.push(Problem {
                    location: at(&format!("params.{name}")),
                    message: format!(
                        "pipeline `{}` requires param `{name}`: {}",
                        pipeline.name, decl.description
                    ),
                });
            }
        }
        let steps = [&pipeline.backup, &pipeline.restore]
            .into_iter()
            .flatten()
            .flat_map(|p| p.steps.iter().chain(&p.finally));
        let mut seen = std::collections::BTreeSet::new();
        for step in steps {
            if !seen.insert(step.calls.clone()) {
                continue;
            }
            let wanted = if step.is_task {
                ModuleKind::Task
            } else {
                ModuleKind::Function
            };
            match self.runtime.load(&step.module).await {
                Ok(m) if m.kind == wanted => {}
                Ok(m) => problems.push(Problem {
                    location: at("task"),
                    message: format!(
                        "pipeline `{}`, step `{}`: the module of {} is a {:?} module, not a {:?}",
                        pipeline.name, step.name, step.calls, m.kind, wanted
                    ),
                }),
                Err(e) => problems.push(Problem {
                    location: at("task"),
                    message: format!("pipeline `{}`, step `{}`: {e:#}", pipeline.name, step.name),
                }),
            }
        }
        problems
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
            if let Some(key) = job.task.pipeline() {
                problems.extend(self.check_pipeline(job, key).await);
                continue;
            }
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
    let ctx = RunContext {
        job: "(describe)".into(),
        run_id: "describe".into(),
        grants: Arc::new(Grants::default()),
        limits: Limits::default(),
        store,
        log: RunLog::new(
            "(describe)",
            "describe",
            Arc::new(Redactor::default()),
            &Limits::default(),
        ),
        secrets: Arc::new(SecretValues::default()),
        functions: Arc::new(BTreeMap::new()),
        progress: no_progress(),
        last_progress: Arc::new(Mutex::new(None)),
        storage: RunStorage::unavailable("storage is not available while describing a module"),
    };
    runtime.describe(module, ctx).await
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
                        origin_of(&url),
                        grants_phrase(&g.http)
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
            let covered = g.programs.contains_key(&value)
                || g.programs.values().any(|p| {
                    p.path
                        .as_deref()
                        .is_some_and(|path| path == Path::new(&value))
                });
            if !covered {
                problems.push(Problem {
                    location: at("allow.commands"),
                    message: format!(
                        "task needs to run `{value}`, but `allow.commands` {}",
                        grants_phrase(g.programs.keys())
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
                        grants_phrase(g.paths.keys().map(|p| p.display()))
                    ),
                });
            }
        }
    }
    for entry in &d.needs.secrets {
        for value in expand(entry, &job.params) {
            if !g.secrets.contains_key(&value) {
                problems.push(Problem {
                    location: at("allow.secrets"),
                    message: format!(
                        "task needs secret `{value}`, but `allow.secrets` {}",
                        grants_phrase(g.secrets.keys())
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
                        grants_phrase(&g.functions)
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
