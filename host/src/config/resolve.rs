//! Resolution: the file as written ([`super::file`]) into the model types
//! the rest of the host speaks, checking every value and reporting each
//! problem at its key. Relative paths are resolved against the config
//! file's directory; programs are looked up in `PATH` once, here.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use toml::de::DeTable;

use super::check::{
    self, MAX_MEMORY, MIN_MEMORY, check_env_name, check_header_name, check_name, check_secret_name,
    grant_program, parse_sha256,
};
use super::diagnostics::{Problems, Seg, describe, did_you_mean, key, key_path_segs, span_of};
use super::file::{
    AllowFile, ConfigFile, DaemonFile, FunctionFile, JobFile, OneOrMany, RepositoryFile,
    SecretFile, SecretUseFile,
};
use super::{Config, DEFAULT_KEEP_RUNS, DEFAULT_LISTEN, DaemonConfig, JobConfig};
use crate::builtins::{self, ModuleKind};
use crate::model::{
    ArgPolicy, ClientIdentity, Grants, Limits, Location, ModuleRef, OriginPattern, ParsedLocation,
    PipelineRef, RepositorySettings, RestLocation, Retries, S3Location, Schedule, ScheduleError,
    SecretGrant, SecretSource, ServerTrust, TlsOrigin, Webhook, parse_location, tls,
};
use crate::pipeline::{self, Pipeline, PipelineFile};
use crate::sys::{self, normalize};
use crate::units::{format_size, parse_duration, parse_size, toml_to_json};

mod grants;
mod places;

/// Where a module named in the file comes from, before its pin is read.
enum Source {
    Builtin(&'static str),
    File(PathBuf),
}

pub(super) struct Checker<'a, 't> {
    /// The document as deserialized (after removing faulty entries), for positions.
    pub(super) document: &'a DeTable<'t>,
    pub(super) base_dir: &'a Path,
    pub(super) problems: Problems<'a>,
}

impl Checker<'_, '_> {
    /// Record a problem at `path`, with its line and column when the path is in the file.
    fn report(&mut self, path: &[Seg], message: impl Into<String>) {
        let offset = span_of(self.document, path).map(|s| s.start);
        self.problems.push(describe(path), offset, message.into());
    }

    /// `path` resolved against the config file's directory, normalized.
    fn resolve(&self, path: &Path) -> PathBuf {
        normalize(&self.base_dir.join(path))
    }

    pub(super) fn config(&mut self, file: ConfigFile) -> Config {
        let repository = file
            .repository
            .and_then(|repository| self.repository(&[key("repository")], repository));
        let mut repositories = BTreeMap::new();
        for (name, repository) in file.repositories {
            let at = [key("repositories"), key(&name)];
            if let Err(message) = check_name(&name, "repository name") {
                self.report(&at, message);
            }
            if let Some(settings) = self.repository(&at, repository) {
                repositories.insert(name, settings);
            }
        }
        let state_postgres = self.state_postgres(&file.state);
        let state_path = file.state.path.map_or_else(
            || self.base_dir.join(".cairn").join("state.db"),
            |p| self.resolve(&p),
        );
        let cache_dir = file.runtime.cache_dir.map_or_else(
            || {
                sys::default_cache_dir(
                    std::env::var_os("XDG_CACHE_HOME"),
                    std::env::var_os("HOME"),
                    self.base_dir,
                )
            },
            |p| self.resolve(&p),
        );

        let mut secrets = BTreeMap::new();
        for (name, source) in file.secrets {
            if let Some(source) = self.secret_source(&name, source) {
                secrets.insert(name, source);
            }
        }

        let mut functions = BTreeMap::new();
        for (name, function) in &file.functions {
            let path = [key("functions"), key(name)];
            if let Err(message) = check_name(name, "function") {
                self.report(&path, message);
            }
            if builtins::find(name).is_some() {
                self.report(
                    &path,
                    format!(
                        "`{name}` is the name of a builtin module; give this function another name"
                    ),
                );
            }
            let module = self.module_ref(
                &path,
                "module",
                &function.module,
                function.sha256.as_deref(),
                ModuleKind::Function,
            );
            if let Some(module) = module {
                functions.insert(name.clone(), module);
            }
        }

        let mut pipelines = BTreeMap::new();
        for (name, pipeline) in &file.pipelines {
            let path = [key("pipelines"), key(name)];
            if let Err(message) = check_name(name, "pipeline") {
                self.report(&path, message);
            }
            if let Some(p) = self.pipeline(&path, name, pipeline, &functions) {
                pipelines.insert(PipelineRef::Declared(name.clone()), Arc::new(p));
            }
        }

        let daemon = self.daemon(&file.daemon);

        let mut jobs = BTreeMap::new();
        for (name, job) in file.jobs {
            let task = self.pipeline_task(
                &name,
                &job.task,
                &functions,
                &file.pipelines,
                &mut pipelines,
            );
            if let Some(job) = self.job(&name, job, &file.functions, task, &daemon.webhook_origins)
            {
                jobs.insert(name, job);
            }
        }

        for (name, job) in &jobs {
            for (i, target) in job.copy_to.iter().enumerate() {
                if !repositories.contains_key(target) {
                    let known: Vec<&str> = repositories.keys().map(String::as_str).collect();
                    self.report(
                        &[key("jobs"), key(name), key("copy-to"), Seg::Index(i)],
                        if known.is_empty() {
                            format!(
                                "names `{target}`, but there is no [repositories.{target}] \
                                 (a repository to copy snapshots to)"
                            )
                        } else {
                            format!(
                                "names `{target}`, not one of [repositories.*]: {}",
                                known.join(", ")
                            )
                        },
                    );
                }
            }
        }

        Config {
            source: None,
            base_dir: self.base_dir.to_path_buf(),
            repository,
            repositories,
            state_path,
            state_postgres,
            cache_dir,
            secrets,
            functions,
            pipelines,
            jobs,
            daemon,
        }
    }

    /// Validate `[daemon]`.
    fn daemon(&mut self, file: &DaemonFile) -> DaemonConfig {
        let at = |k: &str| [key("daemon"), key(k)];
        let mut daemon = DaemonConfig::default();
        for (i, origin) in file.webhook_origins.iter().enumerate() {
            match OriginPattern::parse(origin) {
                Ok(pattern) => daemon.webhook_origins.push(pattern),
                Err(message) => {
                    self.report(
                        &[key("daemon"), key("webhook-origins"), Seg::Index(i)],
                        message,
                    );
                }
            }
        }
        if let Some(listen) = &file.listen {
            match listen.parse() {
                Ok(addr) => daemon.listen = addr,
                Err(_) => self.report(
                    &at("listen"),
                    format!("`{listen}` is not an address: write IP:PORT, e.g. `{DEFAULT_LISTEN}`"),
                ),
            }
        }
        daemon.token = match (&file.token_env, &file.token_file) {
            (Some(_), Some(_)) => {
                self.report(
                    &at("token-file"),
                    "give `token-env` or `token-file`, not both",
                );
                None
            }
            (Some(env), None) => Some(SecretSource::Env(env.clone())),
            (None, Some(path)) => Some(SecretSource::File(self.resolve(path))),
            (None, None) => None,
        };
        if let Some(text) = &file.shutdown_grace {
            match parse_duration(text) {
                Ok(grace) => daemon.shutdown_grace = grace,
                Err(message) => self.report(&at("shutdown-grace"), message),
            }
        }
        if let Some(expr) = &file.prune {
            match Schedule::parse(expr, file.prune_timezone.as_deref()) {
                Ok(s) => daemon.prune = Some(s),
                Err(e @ ScheduleError::Timezone(_)) => {
                    self.report(&at("prune-timezone"), e.to_string());
                }
                Err(e) => self.report(&at("prune"), e.to_string()),
            }
        } else if file.prune_timezone.is_some() {
            self.report(&at("prune-timezone"), "has no effect without `prune`");
        }
        daemon
    }

    /// Validate a job's daemon keys: schedule, timezone, retries, keep-runs.
    fn job_timing(
        &mut self,
        job: &JobFile,
        at: &dyn Fn(&[&str]) -> Vec<Seg>,
    ) -> (Option<Schedule>, Retries, usize) {
        let cron = match (&job.schedule, &job.timezone) {
            (Some(expr), tz) => match Schedule::parse(expr, tz.as_deref()) {
                Ok(s) => Some(s),
                Err(e @ ScheduleError::Timezone(_)) => {
                    self.report(&at(&["timezone"]), e.to_string());
                    None
                }
                Err(e) => {
                    self.report(&at(&["schedule"]), e.to_string());
                    None
                }
            },
            (None, Some(_)) => {
                self.report(&at(&["timezone"]), "has no effect without `schedule`");
                None
            }
            (None, None) => None,
        };
        let mut retries = Retries::default();
        let r = &job.retries;
        match r.attempts {
            Some(0) => self.report(
                &at(&["retries", "attempts"]),
                "must be at least 1 (the first attempt counts)",
            ),
            Some(n) => retries.attempts = n,
            None => {}
        }
        for (field, text, slot) in [
            ("backoff", &r.backoff, &mut retries.backoff),
            ("max-backoff", &r.max_backoff, &mut retries.max_backoff),
        ] {
            if let Some(text) = text {
                match parse_duration(text) {
                    Ok(d) => *slot = d,
                    Err(message) => self.report(&at(&["retries", field]), message),
                }
            }
        }
        if retries.max_backoff < retries.backoff {
            self.report(
                &at(&["retries", "max-backoff"]),
                "is shorter than `backoff`; make it at least as long",
            );
        }
        let keep_runs = match job.keep_runs {
            Some(0) => {
                self.report(&at(&["keep-runs"]), "must be at least 1");
                DEFAULT_KEEP_RUNS
            }
            Some(n) => usize::try_from(n).unwrap_or(usize::MAX),
            None => DEFAULT_KEEP_RUNS,
        };
        (cron, retries, keep_runs)
    }

    /// Validate pipeline `name` (declared at `path`, or a built-in/file one
    /// when `path` is the job's `task` key), reporting problems at their keys.
    fn pipeline(
        &mut self,
        path: &[Seg],
        name: &str,
        file: &PipelineFile,
        functions: &BTreeMap<String, ModuleRef>,
    ) -> Option<Pipeline> {
        let resolve = |f: &str| pipeline::resolve_function(f, functions);
        let base_dir = self.base_dir;
        let task = |t: &str| resolve_task(t, base_dir);
        match pipeline::validate(name, file, &resolve, &task) {
            Ok(p) => Some(p),
            Err(problems) => {
                for (key_path, message) in problems {
                    let mut at = path.to_vec();
                    at.extend(key_path_segs(&key_path));
                    self.report(&at, message);
                }
                None
            }
        }
    }

    /// For a job whose `task` is a pipeline (`pipeline:NAME`, a built-in
    /// pipeline, or a `.toml` file): `Some(result)`, registering built-in and
    /// file pipelines in `pipelines`. `None` when `task` names a module.
    fn pipeline_task(
        &mut self,
        job: &str,
        task: &str,
        functions: &BTreeMap<String, ModuleRef>,
        declared: &BTreeMap<String, PipelineFile>,
        pipelines: &mut BTreeMap<PipelineRef, Arc<Pipeline>>,
    ) -> Option<Option<ModuleRef>> {
        let at = [key("jobs"), key(job), key("task")];
        if let Some(name) = task.strip_prefix("pipeline:") {
            let key = PipelineRef::Declared(name.to_owned());
            if pipelines.contains_key(&key) {
                return Some(Some(ModuleRef::Pipeline(key)));
            }
            if declared.contains_key(name) {
                // Declared but invalid: its own problems are reported.
                return Some(None);
            }
            let hint = did_you_mean(name, declared.keys().map(String::as_str));
            self.report(&at, format!("no pipeline `{name}` in [pipelines]{hint}"));
            return Some(None);
        }
        if let Some(name) = task.strip_prefix("builtin:") {
            let file = pipeline::builtin(name)?;
            let key = PipelineRef::Builtin(name.to_owned());
            if !pipelines.contains_key(&key) {
                let p = self.pipeline(&at, name, &file, functions)?;
                pipelines.insert(key.clone(), Arc::new(p));
            }
            return Some(Some(ModuleRef::Pipeline(key)));
        }
        if !task.ends_with(".toml") {
            return None;
        }
        let resolved = self.resolve(Path::new(task));
        let key = PipelineRef::File(resolved.clone());
        if pipelines.contains_key(&key) {
            return Some(Some(ModuleRef::Pipeline(key)));
        }
        let file: PipelineFile = match std::fs::read_to_string(&resolved) {
            Ok(text) => match toml::from_str(&text) {
                Ok(file) => file,
                Err(e) => {
                    self.report(
                        &at,
                        format!("pipeline file {} is not valid: {e}", resolved.display()),
                    );
                    return Some(None);
                }
            },
            Err(e) => {
                self.report(
                    &at,
                    format!("cannot read pipeline file {}: {e}", resolved.display()),
                );
                return Some(None);
            }
        };
        let name = key.name();
        let mut problems = Vec::new();
        let resolve = |f: &str| pipeline::resolve_function(f, functions);
        let base_dir = self.base_dir;
        let task = |t: &str| resolve_task(t, base_dir);
        match pipeline::validate(&name, &file, &resolve, &task) {
            Ok(p) => {
                pipelines.insert(key.clone(), Arc::new(p));
                Some(Some(ModuleRef::Pipeline(key)))
            }
            Err(found) => {
                problems.extend(found);
                for (key_path, message) in problems {
                    let location = if key_path.is_empty() {
                        String::new()
                    } else {
                        format!(", key `{key_path}`")
                    };
                    self.report(
                        &at,
                        format!("pipeline file {}{location}: {message}", resolved.display()),
                    );
                }
                Some(None)
            }
        }
    }

    /// Validate `builtin:NAME` or a `.wasm` path (`field` of the table at
    /// `owner`), and its optional sha256 pin.
    fn module_ref(
        &mut self,
        owner: &[Seg],
        field: &str,
        module: &str,
        sha256: Option<&str>,
        kind: ModuleKind,
    ) -> Option<ModuleRef> {
        let at = |k: &str| {
            let mut path = owner.to_vec();
            path.push(key(k));
            path
        };
        let wanted = kind.as_str();
        let source = if let Some(name) = module.strip_prefix("builtin:") {
            let available = builtins::all()
                .iter()
                .filter(|b| b.kind == kind)
                .map(|b| b.name)
                .collect::<Vec<_>>();
            let available_list = if available.is_empty() {
                format!("there are no builtin {wanted}s")
            } else {
                format!("builtin {wanted}s: {}", available.join(", "))
            };
            match builtins::find_kind(name, kind).or_else(|| builtins::find(name)) {
                Some(builtin) if builtin.kind == kind => Some(Source::Builtin(builtin.id)),
                Some(builtin) => {
                    self.report(
                        &at(field),
                        format!(
                            "`{module}` is a {}, not a {wanted}; {available_list}",
                            builtin.kind
                        ),
                    );
                    None
                }
                None => {
                    let hint = did_you_mean(name, available.iter().copied());
                    self.report(
                        &at(field),
                        format!("no builtin {wanted} `{name}`{hint}; {available_list}"),
                    );
                    None
                }
            }
        } else if module.trim().is_empty() {
            self.report(
                &at(field),
                format!("is empty: write `builtin:NAME` or the path of a .wasm {wanted}"),
            );
            None
        } else {
            let resolved = self.resolve(Path::new(module));
            if resolved.is_file() {
                Some(Source::File(resolved))
            } else if resolved.exists() {
                self.report(
                    &at(field),
                    format!(
                        "{} is not a file; point at a .wasm component",
                        resolved.display()
                    ),
                );
                None
            } else {
                self.report(
                    &at(field),
                    format!(
                        "file not found: {} (relative paths are resolved against {}); \
                         write `builtin:NAME` for a builtin {wanted}",
                        resolved.display(),
                        self.base_dir.display()
                    ),
                );
                None
            }
        };
        let sha256 = match sha256.map(parse_sha256) {
            None => None,
            Some(Ok(digest)) => Some(digest),
            Some(Err(message)) => {
                self.report(&at("sha256"), message);
                None
            }
        };
        source.map(|source| match source {
            Source::Builtin(id) => ModuleRef::Builtin {
                id: id.to_owned(),
                sha256,
            },
            Source::File(path) => ModuleRef::File { path, sha256 },
        })
    }

    fn job(
        &mut self,
        name: &str,
        job: JobFile,
        custom_functions: &BTreeMap<String, FunctionFile>,
        pipeline: Option<Option<ModuleRef>>,
        webhook_origins: &[OriginPattern],
    ) -> Option<JobConfig> {
        let owner = [key("jobs"), key(name)];
        let at = |keys: &[&str]| {
            let mut path = owner.to_vec();
            path.extend(keys.iter().map(|k| key(*k)));
            path
        };
        if let Err(message) = check_name(name, "job") {
            self.report(&owner, message);
        }
        let task = match pipeline {
            Some(task) => {
                if job.sha256.is_some() {
                    self.report(
                        &at(&["sha256"]),
                        "a pipeline task has no module to pin: pin its functions in [functions] instead",
                    );
                }
                task
            }
            None => self.module_ref(
                &owner,
                "task",
                &job.task,
                job.sha256.as_deref(),
                ModuleKind::Task,
            ),
        };

        let mut params = serde_json::Map::new();
        for (param, value) in &job.params {
            match toml_to_json(value) {
                Ok(value) => {
                    params.insert(param.clone(), value);
                }
                Err(message) => self.report(&at(&["params", param]), message),
            }
        }

        let limits = self.limits(&job, &at);
        let (cron, retries, keep_runs) = self.job_timing(&job, &at);
        let mut grants = self.grants(&job.allow, &owner, custom_functions);
        grants.tls = self.tls(&job, &grants.http, &at);
        let notify = self.webhooks(&job, webhook_origins, &at);
        for (i, label) in job.node_labels.iter().enumerate() {
            if let Err(message) = crate::model::check_node_label(label) {
                self.report(
                    &[key("jobs"), key(name), key("node-labels"), Seg::Index(i)],
                    message,
                );
            }
        }

        task.map(|task| JobConfig {
            name: name.to_owned(),
            task,
            params,
            schedule: job.schedule,
            cron,
            missed: job.missed,
            concurrency: job.concurrency,
            retries,
            keep_runs,
            retention: job.retention,
            limits,
            grants,
            notify,
            node_labels: job.node_labels,
            copy_to: job.copy_to,
        })
    }
}

/// The Task module a pipeline step names: `builtin:NAME` or a `.wasm` path
/// (resolved against `base_dir`).
fn resolve_task(task: &str, base_dir: &Path) -> Result<ModuleRef, String> {
    let module = if let Some(name) = task.strip_prefix("builtin:") {
        let Some(builtin) = builtins::find_kind(name, ModuleKind::Task) else {
            let tasks = builtins::all()
                .iter()
                .filter(|b| b.kind == ModuleKind::Task)
                .map(|b| b.name)
                .collect::<Vec<_>>();
            return Err(format!(
                "no builtin task `{name}`{}; builtin tasks: {}",
                did_you_mean(name, tasks.iter().copied()),
                tasks.join(", ")
            ));
        };
        builtin.module()
    } else {
        let path = normalize(&base_dir.join(task));
        if !path.is_file() {
            return Err(format!(
                "file not found: {} (write `builtin:NAME` for a builtin task)",
                path.display()
            ));
        }
        ModuleRef::file(path)
    };
    Ok(module)
}
