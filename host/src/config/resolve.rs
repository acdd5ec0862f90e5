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
    AllowFile, ConfigFile, DaemonFile, FunctionFile, JobFile, OneOrMany, SecretFile, SecretUseFile,
};
use super::{Config, DEFAULT_KEEP_RUNS, DEFAULT_LISTEN, DaemonConfig, JobConfig};
use crate::builtins::{self, ModuleKind};
use crate::model::{
    ArgPolicy, ClientIdentity, Grants, Limits, ModuleRef, OriginPattern, PipelineRef,
    RepositorySettings, Retries, Schedule, ScheduleError, SecretGrant, SecretSource, ServerTrust,
    TlsOrigin, Webhook, tls,
};
use crate::pipeline::{self, Pipeline, PipelineFile};
use crate::sys::{self, normalize};
use crate::units::{format_size, parse_duration, parse_size, toml_to_json};

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
        let repository = file.repository.map(|repository| RepositorySettings {
            path: self.resolve(&repository.path),
            password: match (repository.password_env, repository.password_file) {
                (Some(var), _) => Some(SecretSource::Env(var)),
                (None, Some(path)) => Some(SecretSource::File(self.resolve(&path))),
                (None, None) => None,
            },
        });
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

        Config {
            source: None,
            base_dir: self.base_dir.to_path_buf(),
            repository,
            state_path,
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

    fn secret_source(&mut self, name: &str, source: SecretFile) -> Option<SecretSource> {
        let path = [key("secrets"), key(name)];
        if let Err(message) = check_secret_name(name) {
            self.report(&path, message);
        }
        match (&source.env, &source.file) {
            (Some(_), Some(_)) => {
                self.report(
                    &path,
                    "set either `env` or `file`, not both (e.g. `env = \"PGPASSWORD\"`)",
                );
                None
            }
            (None, None) => {
                self.report(
                    &path,
                    "say where the value comes from: `env = \"VARIABLE\"` or `file = \"path\"`",
                );
                None
            }
            (Some(env), None) => {
                if env.is_empty() || env.contains('=') || env.contains('\0') {
                    self.report(
                        &[key("secrets"), key(name), key("env")],
                        format!("`{env}` is not an environment variable name (e.g. `PGPASSWORD`)"),
                    );
                }
                Some(SecretSource::Env(env.clone()))
            }
            (None, Some(file)) => Some(SecretSource::File(self.resolve(file))),
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
        })
    }

    /// Validate the job's `notify` webhooks against its HTTP grants.
    fn webhooks(
        &mut self,
        job: &JobFile,
        webhook_origins: &[OriginPattern],
        at: &dyn Fn(&[&str]) -> Vec<Seg>,
    ) -> Vec<Webhook> {
        let mut webhooks = Vec::new();
        for (i, file) in job.notify.targets.iter().enumerate() {
            match check::webhook(file, webhook_origins) {
                Ok(webhook) => webhooks.push(webhook),
                Err(problems) => {
                    for (field, message) in problems {
                        let mut path = at(&["notify"]);
                        if job.notify.is_list {
                            path.push(Seg::Index(i));
                        }
                        path.extend(key_path_segs(&field));
                        self.report(&path, message);
                    }
                }
            }
        }
        webhooks
    }

    /// The job's `tls` table: each key an `https` origin its `allow.http`
    /// grants, each file readable and usable.
    fn tls(
        &mut self,
        job: &JobFile,
        granted: &[OriginPattern],
        at: &dyn Fn(&[&str]) -> Vec<Seg>,
    ) -> Vec<TlsOrigin> {
        let mut out = Vec::new();
        for (origin_text, file) in &job.tls {
            let here = |field: Option<&str>| {
                let mut keys = vec!["tls", origin_text.as_str()];
                keys.extend(field);
                at(&keys)
            };
            let origin = match OriginPattern::parse(origin_text) {
                Ok(origin) if origin.scheme() != "https" => {
                    self.report(
                        &here(None),
                        format!("`{origin_text}` is not an https origin; TLS settings apply to `https://` origins"),
                    );
                    continue;
                }
                Ok(origin) if !granted.contains(&origin) => {
                    self.report(
                        &here(None),
                        format!(
                            "TLS settings for {origin}, which `allow.http` does not grant; \
                             grant it there (as written here) or remove these settings"
                        ),
                    );
                    continue;
                }
                Ok(origin) => origin,
                Err(message) => {
                    self.report(&here(None), message);
                    continue;
                }
            };
            let mut trusts = Vec::new();
            if let Some(path) = &file.ca_file {
                trusts.push(("ca-file", Some(ServerTrust::CaFile(self.resolve(path)))));
            }
            if let Some(text) = &file.ca_fingerprint {
                match tls::parse_fingerprint(text) {
                    Ok(pin) => trusts.push(("ca-fingerprint", Some(ServerTrust::Fingerprint(pin)))),
                    Err(message) => {
                        self.report(&here(Some("ca-fingerprint")), message);
                        trusts.push(("ca-fingerprint", None));
                    }
                }
            }
            if file.insecure {
                trusts.push(("insecure", Some(ServerTrust::Insecure)));
            }
            if trusts.len() > 1 {
                let names: Vec<&str> = trusts.iter().map(|(name, _)| *name).collect();
                self.report(
                    &here(None),
                    format!(
                        "sets {}: choose one way to verify the server",
                        names.join(" and ")
                    ),
                );
                continue;
            }
            let trust = match trusts.pop() {
                Some((_, None)) => continue,
                Some((_, Some(trust))) => Some(trust),
                None => None,
            };
            let client = match (&file.client_cert, &file.client_key) {
                (Some(cert), Some(key)) => Some(ClientIdentity {
                    cert: self.resolve(cert),
                    key: self.resolve(key),
                }),
                (None, None) => None,
                (Some(_), None) => {
                    self.report(
                        &here(Some("client-cert")),
                        "needs `client-key` too (the PEM file of its private key)",
                    );
                    continue;
                }
                (None, Some(_)) => {
                    self.report(
                        &here(Some("client-key")),
                        "needs `client-cert` too (the PEM file of the certificate)",
                    );
                    continue;
                }
            };
            if trust.is_none() && client.is_none() {
                self.report(
                    &here(None),
                    "sets nothing: give `ca-file`, `ca-fingerprint`, `client-cert` and \
                     `client-key`, or `insecure = true`",
                );
                continue;
            }
            let settings = TlsOrigin {
                origin,
                trust,
                client,
            };
            if let Err(e) = crate::capabilities::tls::check(&settings) {
                let field = match &e {
                    crate::capabilities::tls::TlsError::Read { what, .. }
                    | crate::capabilities::tls::TlsError::Pem { what, .. } => match *what {
                        "CA file" => Some("ca-file"),
                        "client certificate" => Some("client-cert"),
                        _ => Some("client-key"),
                    },
                    crate::capabilities::tls::TlsError::Config { .. } => None,
                };
                self.report(&here(field), e.to_string());
                continue;
            }
            out.push(settings);
        }
        out
    }

    fn limits(&mut self, job: &JobFile, at: &dyn Fn(&[&str]) -> Vec<Seg>) -> Limits {
        let mut limits = Limits::default();
        if let Some(text) = &job.timeout {
            match parse_duration(text) {
                Ok(timeout) if timeout.is_zero() => {
                    self.report(&at(&["timeout"]), "must be longer than zero (e.g. `30m`)");
                }
                Ok(timeout) => limits.timeout = timeout,
                Err(message) => self.report(&at(&["timeout"]), message),
            }
        }
        if let Some(text) = &job.memory {
            match parse_size(text) {
                Ok(memory) if memory < MIN_MEMORY => self.report(
                    &at(&["memory"]),
                    format!(
                        "`{text}` is below the minimum of {} (e.g. `256MiB`)",
                        format_size(MIN_MEMORY)
                    ),
                ),
                Ok(memory) if memory > MAX_MEMORY => self.report(
                    &at(&["memory"]),
                    format!(
                        "`{text}` is above the maximum of {} (e.g. `4GiB`)",
                        format_size(MAX_MEMORY)
                    ),
                ),
                Ok(memory) => limits.memory = memory,
                Err(message) => self.report(&at(&["memory"]), message),
            }
        }
        for (field, text, slot) in [
            ("output-limit", &job.output_limit, &mut limits.output),
            (
                "http-body-limit",
                &job.http_body_limit,
                &mut limits.http_body,
            ),
            ("log-line-limit", &job.log_line_limit, &mut limits.log_line),
            ("log-limit", &job.log_limit, &mut limits.log_bytes),
            ("state-limit", &job.state_limit, &mut limits.state_bytes),
            ("result-limit", &job.result_limit, &mut limits.result),
        ] {
            if let Some(text) = text {
                match parse_size(text) {
                    Ok(0) => self.report(&at(&[field]), "must be more than zero bytes"),
                    Ok(bytes) => *slot = bytes,
                    Err(message) => self.report(&at(&[field]), message),
                }
            }
        }
        if limits.log_line < 80 {
            self.report(
                &at(&["log-line-limit"]),
                "must be at least 80 bytes, so that a cut line still says something",
            );
        }
        match job.state_keys {
            Some(0) => self.report(&at(&["state-keys"]), "must be at least 1"),
            Some(n) => limits.state_keys = n,
            None => {}
        }
        match job.open_streams {
            Some(0) => self.report(&at(&["open-streams"]), "must be at least 1"),
            Some(n) => limits.open_streams = n,
            None => {}
        }
        limits
    }

    fn grants(
        &mut self,
        allow: &AllowFile,
        owner: &[Seg],
        custom_functions: &BTreeMap<String, FunctionFile>,
    ) -> Grants {
        let at = |field: &str, index: Option<usize>| {
            let mut path = owner.to_vec();
            path.push(key("allow"));
            path.push(key(field));
            if let Some(index) = index {
                path.push(Seg::Index(index));
            }
            path
        };
        let mut grants = Grants::default();

        for (i, origin) in allow.http.iter().enumerate() {
            match OriginPattern::parse(origin) {
                Ok(pattern) => grants.http.push(pattern),
                Err(message) => self.report(&at("http", Some(i)), message),
            }
        }

        let search_path = std::env::var_os("PATH");
        for (i, (command, rules)) in allow.commands.programs.iter().enumerate() {
            let here = if allow.commands.is_list {
                at("commands", Some(i))
            } else {
                let mut path = at("commands", None);
                path.push(key(command));
                path
            };
            let mut program = match grant_program(command, search_path.as_ref()) {
                Ok(program) => program,
                Err(message) => {
                    self.report(&here, message);
                    continue;
                }
            };
            for (j, var) in rules.env.iter().enumerate() {
                let mut path = here.clone();
                path.extend([key("env"), Seg::Index(j)]);
                match check_env_name(var) {
                    Ok(()) => {
                        program.env.insert(var.clone());
                    }
                    Err(message) => self.report(&path, message),
                }
            }
            for (field, patterns) in [
                ("deny-args", Some(&rules.deny_args)),
                ("allow-args", rules.allow_args.as_ref()),
            ] {
                for (j, pattern) in patterns.into_iter().flatten().enumerate() {
                    if pattern.is_empty() {
                        let mut path = here.clone();
                        path.extend([key(field), Seg::Index(j)]);
                        self.report(&path, "is empty: write a pattern such as `--to-command*`");
                    }
                }
            }
            program.args = ArgPolicy {
                deny: rules.deny_args.clone(),
                allow: rules.allow_args.clone(),
            };
            grants.programs.insert(command.clone(), program);
        }

        for (path, access) in &allow.paths {
            let resolved = self.resolve(path);
            let resolved = std::fs::canonicalize(&resolved).unwrap_or(resolved);
            if let Some(previous) = grants.paths.insert(resolved.clone(), *access) {
                if previous != *access {
                    let mut location = at("paths", None);
                    location.push(key(path.to_string_lossy()));
                    self.report(
                        &location,
                        format!(
                            "{} is granted twice, with different access; grant it once",
                            resolved.display()
                        ),
                    );
                }
            }
        }

        for (name, binding) in &allow.secrets.0 {
            let mut here = at("secrets", None);
            here.push(key(name));
            if let Err(message) = check_secret_name(name) {
                self.report(&here, message);
                continue;
            }
            let grant = self.secret_binding(&here, binding, &grants);
            grants.secrets.insert(name.clone(), grant);
        }
        for (i, name) in allow.readable_secrets.iter().enumerate() {
            match check_secret_name(name) {
                Ok(()) => grants.secrets.entry(name.clone()).or_default().readable = true,
                Err(message) => self.report(&at("readable-secrets", Some(i)), message),
            }
        }

        for (i, function) in allow.functions.iter().enumerate() {
            let builtin = builtins::find_kind(function, ModuleKind::Function)
                .or_else(|| builtins::find(function));
            let known = match builtin {
                Some(b) => b.kind == ModuleKind::Function,
                None => custom_functions.contains_key(function),
            };
            if known {
                grants.functions.insert(function.clone());
                continue;
            }
            let available = builtins::all()
                .iter()
                .filter(|b| b.kind == ModuleKind::Function)
                .map(|b| b.name)
                .chain(custom_functions.keys().map(String::as_str))
                .collect::<Vec<_>>();
            let available_list = if available.is_empty() {
                "there are no functions (define one in `[functions.NAME]`)".to_owned()
            } else {
                format!("functions: {}", available.join(", "))
            };
            let message = if builtin.is_some() {
                format!("`{function}` is a builtin task, not a function; {available_list}")
            } else {
                let hint = did_you_mean(function, available.iter().copied());
                format!("no function `{function}`{hint}; {available_list}")
            };
            self.report(&at("functions", Some(i)), message);
        }

        grants
    }
}

impl Checker<'_, '_> {
    /// Report every path grant that reaches one of the host's private files
    /// (compile cache and its key, state database, repository, this file,
    /// secret, password and token files), or lies inside one.
    pub(super) fn private_paths(&mut self, config: &Config) {
        let mut private: Vec<(String, PathBuf)> = vec![
            ("compile cache".into(), config.cache_dir.clone()),
            (
                "compile cache key".into(),
                sys::cache_key_path(&config.cache_dir),
            ),
            ("state database".into(), config.state_path.clone()),
        ];
        if let Some(source) = &config.source {
            private.push(("configuration file".into(), source.clone()));
        }
        if let Some(repository) = &config.repository {
            private.push(("repository".into(), repository.path.clone()));
            if let Some(SecretSource::File(file)) = &repository.password {
                private.push(("repository password file".into(), file.clone()));
            }
        }
        if let Some(SecretSource::File(file)) = &config.daemon.token {
            private.push(("API token file".into(), file.clone()));
        }
        for job in config.jobs.values() {
            for settings in &job.grants.tls {
                if let Some(identity) = &settings.client {
                    private.push((
                        format!("TLS client key of job `{}`", job.name),
                        identity.key.clone(),
                    ));
                }
            }
        }
        for (name, source) in &config.secrets {
            if let SecretSource::File(file) = source {
                private.push((format!("file of secret `{name}`"), file.clone()));
            }
        }
        let private: Vec<(String, PathBuf)> = private
            .into_iter()
            .map(|(what, path)| (what, sys::canonical_lossy(&path)))
            .collect();
        for job in config.jobs.values() {
            for granted in job.grants.paths.keys() {
                for (what, path) in &private {
                    let message = if path.starts_with(granted) {
                        format!(
                            "grants {}, which holds the {what} ({}): a module could read or \
                             change it; grant a narrower directory, or keep the {what} elsewhere",
                            granted.display(),
                            path.display()
                        )
                    } else if granted.starts_with(path) {
                        format!(
                            "grants {}, which lies inside the {what} ({}); grant a directory \
                             outside it",
                            granted.display(),
                            path.display()
                        )
                    } else {
                        continue;
                    };
                    let written = self.granted_as_written(&job.name, granted);
                    let mut at = vec![key("jobs"), key(&job.name), key("allow"), key("paths")];
                    if let Some(written) = written {
                        at.push(key(written));
                    }
                    self.report(&at, message);
                }
            }
        }
    }

    /// The key of `allow.paths` in job `job` that resolved to `granted`.
    fn granted_as_written(&self, job: &str, granted: &Path) -> Option<String> {
        let jobs = self.document.get("jobs")?.get_ref().as_table()?;
        let job = jobs.get(job)?.get_ref().as_table()?;
        let paths = job
            .get("allow")?
            .get_ref()
            .as_table()?
            .get("paths")?
            .get_ref()
            .as_table()?;
        paths
            .iter()
            .map(|(k, _)| k.get_ref().to_string())
            .find(|k| {
                let resolved = self.resolve(Path::new(k));
                sys::canonical_lossy(&resolved) == granted
            })
    }

    /// Where secret binding `file` (at `here`) lets the host put the
    /// secret, checked against the job's HTTP and program grants.
    fn secret_binding(
        &mut self,
        here: &[Seg],
        file: &SecretUseFile,
        grants: &Grants,
    ) -> SecretGrant {
        let at = |k: &str| {
            let mut path = here.to_vec();
            path.push(key(k));
            path
        };
        let mut grant = SecretGrant {
            readable: file.readable,
            ..SecretGrant::default()
        };
        let headers = file
            .header
            .as_ref()
            .map(OneOrMany::to_vec)
            .unwrap_or_default();
        for header in &headers {
            match check_header_name(header) {
                Ok(()) => {
                    grant.headers.insert(header.to_ascii_lowercase());
                }
                Err(message) => self.report(&at("header"), message),
            }
        }
        for (i, origin) in file.origins.iter().enumerate() {
            let mut path = at("origins");
            path.push(Seg::Index(i));
            match OriginPattern::parse(origin) {
                Ok(pattern) if grants.http.contains(&pattern) => grant.origins.push(pattern),
                Ok(pattern) => self.report(
                    &path,
                    format!(
                        "binds the secret to {pattern}, which `allow.http` does not grant; grant \
                         the origin too, or remove it here"
                    ),
                ),
                Err(message) => self.report(&path, message),
            }
        }
        match (headers.is_empty(), file.origins.is_empty()) {
            (false, true) => self.report(
                &at("header"),
                "say which origins may receive it: `origins = [\"https://host:port\"]`",
            ),
            (true, false) => self.report(
                &at("origins"),
                "say which header carries it: `header = \"Authorization\"`",
            ),
            _ => {}
        }
        let vars = file.env.as_ref().map(OneOrMany::to_vec).unwrap_or_default();
        for var in &vars {
            match check_env_name(var) {
                Ok(()) => {
                    grant.env.insert(var.clone());
                }
                Err(message) => self.report(&at("env"), message),
            }
        }
        for (i, program) in file.programs.iter().enumerate() {
            if grants.programs.contains_key(program) {
                grant.programs.insert(program.clone());
            } else {
                let mut path = at("programs");
                path.push(Seg::Index(i));
                self.report(
                    &path,
                    format!(
                        "binds the secret to program `{program}`, which `allow.commands` does not \
                         grant; grant the program too, or remove it here"
                    ),
                );
            }
        }
        match (vars.is_empty(), file.programs.is_empty()) {
            (false, true) => self.report(
                &at("env"),
                "say which programs may receive it: `programs = [\"pg_dump\"]`",
            ),
            (true, false) => self.report(
                &at("programs"),
                "say which environment variable carries it: `env = \"PGPASSWORD\"`",
            ),
            _ => {}
        }
        if headers.is_empty() && vars.is_empty() && !file.readable {
            self.report(
                here,
                "binds the secret nowhere: give `header` and `origins`, `env` and `programs`, or \
                 `readable = true`",
            );
        }
        grant
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
