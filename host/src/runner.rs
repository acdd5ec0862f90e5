//! Runs a job end to end: records the run, prepares its sandbox from the
//! job's grants and limits, calls the task, and records how it ended.
//! Also checks, without running anything but `describe`, that each job's
//! grants cover what its task says it needs.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex};

use anyhow::Context as _;
use serde_json::{Map, Value, json};
use tokio_util::sync::CancellationToken;
use url::Url;

use crate::capabilities::grants_phrase;
use crate::capabilities::log::{Redactor, RunLog};
use crate::capabilities::progress::{ProgressSink, no_progress};
use crate::capabilities::secrets::SecretValues;
use crate::capabilities::storage::{RunStorage, StorageMode};
use crate::config::{Config, Grants, JobConfig, ModuleSource, Problem};
use crate::repository::{RepoError, Repository, SnapshotInfo, SnapshotMeta};
use crate::runtime::bindings::task::cairn::plugin::types::Context;
use crate::runtime::{Description, LoadedModule, RunError, RunSetup, Runtime, TaskOp};
use crate::state::sqlite::SqliteStore;
use crate::state::{NewRun, RunKind, RunOutcome, RunRecord, RunStatus, StateStore, Trigger};

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

/// How to run a job: everything but the job and the kind.
pub struct RunOptions {
    /// Params merged over the job's params.
    pub overrides: Map<String, Value>,
    /// The snapshot a restore reads: an id, a unique prefix or `latest`
    /// (default `latest`). Ignored by backups.
    pub snapshot: Option<String>,
    /// Where progress goes.
    pub progress: ProgressSink,
    /// Cancelling it stops the run: the task is dropped (its child processes
    /// are killed), a pipeline's `finally` steps still run, a backup's
    /// snapshot is not committed, and the run is recorded `cancelled`.
    pub cancel: CancellationToken,
    /// What started the run (default: the command line).
    pub trigger: Trigger,
    /// Attempt number under one fire (default 1).
    pub attempt: u32,
    /// The schedule time the run fires for, ms since the Unix epoch (UTC).
    pub scheduled_at_ms: Option<i64>,
    /// A run the caller already recorded as queued (with
    /// [`StateStore::queue_run`]); `None` records a new one.
    pub queued: Option<RunRecord>,
}

impl Default for RunOptions {
    fn default() -> Self {
        Self {
            overrides: Map::new(),
            snapshot: None,
            progress: no_progress(),
            cancel: CancellationToken::new(),
            trigger: Trigger::Cli,
            attempt: 1,
            scheduled_at_ms: None,
            queued: None,
        }
    }
}

/// Why a run did not succeed, when it is not an ordinary failure.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Cancelled(pub String);

/// What a run produced besides its result.
#[derive(Default)]
struct Executed {
    snapshot_id: Option<String>,
    bytes: u64,
}

/// Runs jobs of one configuration.
pub struct Runner {
    config: Arc<Config>,
    runtime: Runtime,
    store: Arc<dyn StateStore>,
    functions: Arc<BTreeMap<String, crate::config::ModuleRef>>,
    repo: Mutex<Option<Repository>>,
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
            repo: Mutex::new(None),
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
            storage: RunStorage::unavailable("no storage"),
        }
    }

    /// Run `kind` of job `job_name`, with `overrides` merged over its params.
    /// A restore reads `snapshot` (an id, a unique prefix or `latest`; default
    /// `latest`) when a repository is configured. The run is recorded before
    /// it starts; its outcome and log afterwards. A backup's snapshot is
    /// committed only if the task succeeds. A failed run is a report with
    /// status `failed`, not an `Err`.
    ///
    /// # Errors
    /// Unknown job, or the state store failing.
    pub async fn run(
        &self,
        job_name: &str,
        kind: RunKind,
        opts: RunOptions,
    ) -> anyhow::Result<RunReport> {
        let RunOptions {
            overrides,
            snapshot,
            progress,
            cancel,
            trigger,
            attempt,
            scheduled_at_ms,
            queued,
        } = opts;
        let snapshot = snapshot.as_deref();
        let job = self.config.job(job_name)?;
        let mut params = job.params.clone();
        params.extend(overrides);
        // Recorded as queued before anything else (a backup of a job that
        // does not allow overlap is refused here if another one of the job is
        // going, in any process), then running.
        let queued = match queued {
            Some(record) => record,
            None => self.store.queue_run(&NewRun {
                job: job.name.clone(),
                kind,
                trigger,
                attempt,
                scheduled_at_ms,
                exclusive: job.concurrency.exclusive_for(kind),
            })?,
        };
        let record = self.store.mark_running(&queued.id)?;
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

        let mut executed = Executed::default();
        let outcome = self
            .execute(
                job,
                kind,
                params,
                &record.id,
                snapshot,
                setup,
                &mut executed,
                &cancel,
            )
            .await;
        let (status, error, result) = match outcome {
            Ok(json) => (
                RunStatus::Succeeded,
                None,
                Some(redact_json(log.redactor(), json)),
            ),
            Err(e) if e.downcast_ref::<Cancelled>().is_some() => (
                RunStatus::Cancelled,
                Some(log.redactor().redact(&format!("{e:#}"))),
                None,
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
        match (&error, status) {
            (None, _) => log.host("info", &format!("{} succeeded", kind_word(kind))),
            (Some(e), RunStatus::Cancelled) => {
                log.host("warn", &format!("{} cancelled: {e}", kind_word(kind)));
            }
            (Some(e), _) => log.host("error", &format!("{} failed: {e}", kind_word(kind))),
        }
        let progress_bytes = last_progress
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
                snapshot_id: executed.snapshot_id,
                bytes: executed.bytes.max(progress_bytes),
                result: result_text,
            },
        )?;
        Ok(RunReport {
            run: self.store.run(&record.id)?,
            result,
        })
    }

    /// The configured repository, opened once (and created on first use when
    /// `create`).
    ///
    /// # Errors
    /// No `[repository]`, no password, wrong password, unreadable path.
    pub async fn repository(&self, create: bool) -> anyhow::Result<Repository> {
        if let Some(repo) = self.repo.lock().unwrap().clone() {
            return Ok(repo);
        }
        let cfg = self.config.repository.clone().ok_or_else(|| {
            anyhow::anyhow!("{} has no [repository] section", self.source_label())
        })?;
        let password = repository_password(&cfg)?;
        let repo = tokio::task::spawn_blocking(move || {
            if create {
                Repository::open_or_init(&cfg.path, &password).map(|(r, created)| {
                    if created {
                        tracing::info!("created repository {}", cfg.path.display());
                    }
                    r
                })
            } else {
                Repository::open(&cfg.path, &password)
            }
        })
        .await??;
        *self.repo.lock().unwrap() = Some(repo.clone());
        Ok(repo)
    }

    fn source_label(&self) -> String {
        self.config
            .source
            .as_ref()
            .map_or_else(|| "the configuration".into(), |p| p.display().to_string())
    }

    /// Storage for a run of `job`: a new snapshot (backup) or the chosen one (restore).
    async fn storage(
        &self,
        job: &JobConfig,
        kind: RunKind,
        run_id: &str,
        snapshot: Option<&str>,
    ) -> anyhow::Result<(RunStorage, Option<SnapshotInfo>)> {
        if self.config.repository.is_none() {
            if snapshot.is_some() {
                anyhow::bail!(
                    "--snapshot given, but {} has no [repository] section",
                    self.source_label()
                );
            }
            return Ok((
                RunStorage::unavailable(&format!(
                    "job `{}` has no repository to store artifacts in: add a [repository] section to {}",
                    job.name,
                    self.source_label()
                )),
                None,
            ));
        }
        let repo = self.repository(kind == RunKind::Backup).await?;
        match kind {
            RunKind::Backup => {
                let meta = SnapshotMeta {
                    job: job.name.clone(),
                    task: task_tag(job),
                    run_id: run_id.to_string(),
                    hostname: hostname(),
                };
                let session =
                    tokio::task::spawn_blocking(move || repo.begin_backup(meta)).await??;
                Ok((
                    RunStorage::new(StorageMode::Backup(Arc::new(Mutex::new(session)))),
                    None,
                ))
            }
            RunKind::Restore => {
                let job_name = job.name.clone();
                let id = snapshot.unwrap_or("latest").to_string();
                let (session, info) = tokio::task::spawn_blocking(move || {
                    let info = repo.find_snapshot(&job_name, &id)?;
                    let session = repo.open_restore(&info)?;
                    Ok::<_, RepoError>((session, info))
                })
                .await??;
                Ok((
                    RunStorage::new(StorageMode::Restore(Arc::new(session))),
                    Some(info),
                ))
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    async fn execute(
        &self,
        job: &JobConfig,
        kind: RunKind,
        params: Map<String, Value>,
        run_id: &str,
        snapshot: Option<&str>,
        mut setup: RunSetup,
        executed: &mut Executed,
        cancel: &CancellationToken,
    ) -> anyhow::Result<Value> {
        let pipeline = match &job.task.source {
            ModuleSource::Pipeline(key) => Some(self.pipeline(key)?),
            _ => None,
        };
        let module = match pipeline {
            Some(_) => None,
            None => Some(
                self.runtime
                    .load(&job.task)
                    .await
                    .with_context(|| format!("job `{}`", job.name))?,
            ),
        };
        let (storage, restoring) = self
            .storage(job, kind, run_id, snapshot)
            .await
            .with_context(|| format!("{} of job `{}`", kind_word(kind), job.name))?;
        if let Some(info) = &restoring {
            executed.snapshot_id = Some(info.id.clone());
            setup.log.host(
                "info",
                &format!("restoring from snapshot {} of {}", info.short_id, info.time),
            );
        }
        let storage = storage.with_progress(&job.name, setup.progress.clone());
        setup.storage = storage.clone();
        let log = setup.log.clone();
        let value = match (module, pipeline) {
            (Some(module), _) => {
                let context = Context {
                    job: job.name.clone(),
                    run_id: run_id.to_string(),
                    params: Value::Object(params).to_string(),
                    snapshot: restoring.as_ref().map(|i| i.id.clone()),
                };
                let op = match kind {
                    RunKind::Backup => TaskOp::Backup,
                    RunKind::Restore => TaskOp::Restore,
                };
                let out = tokio::select! {
                    out = self.runtime.run_task(&module, op, context, setup) => Some(out),
                    () = cancel.cancelled() => None,
                };
                // A cancelled task's store is dropped above, killing its processes.
                executed.bytes = storage.bytes();
                let Some(out) = out else {
                    return Err(Cancelled(format!(
                        "{} of job `{}` was cancelled",
                        kind_word(kind),
                        job.name
                    ))
                    .into());
                };
                let out = out.map_err(|e| {
                    anyhow::Error::new(e).context(format!(
                        "{} of job `{}`",
                        kind_word(kind),
                        job.name
                    ))
                })?;
                serde_json::from_str(&out)?
            }
            (None, Some(pipeline)) => {
                let phase = match kind {
                    RunKind::Backup => pipeline.backup.as_ref(),
                    RunKind::Restore => pipeline.restore.as_ref(),
                };
                let Some(phase) = phase else {
                    anyhow::bail!(
                        "pipeline `{}` of job `{}` has no {} steps",
                        pipeline.name,
                        job.name,
                        kind_word(kind)
                    );
                };
                let scope = crate::pipeline::Scope {
                    params,
                    job: job.name.clone(),
                    run_id: run_id.to_string(),
                    snapshot: restoring.as_ref().map(|i| i.id.clone()),
                    restoring: kind == RunKind::Restore,
                    ..Default::default()
                };
                let timeout = job.limits.timeout;
                let outcome = crate::pipeline::run_phase(
                    &self.runtime,
                    &pipeline,
                    phase,
                    scope,
                    &setup,
                    timeout,
                    cancel,
                )
                .await;
                // Function stores are gone; release the run's handle on the
                // snapshot so it can be committed.
                drop(setup);
                executed.bytes = storage.bytes();
                if let Some(error) = outcome.error() {
                    if matches!(outcome.stopped, Some(crate::pipeline::Stop::Cancelled(_))) {
                        return Err(Cancelled(error).into());
                    }
                    anyhow::bail!("{error}");
                }
                json!({ "steps": outcome.results })
            }
            (None, None) => unreachable!("a job runs a module or a pipeline"),
        };
        if let Some(session) = storage.take_backup()? {
            let info = tokio::task::spawn_blocking(move || session.commit())
                .await?
                .with_context(|| format!("committing the snapshot of job `{}`", job.name))?;
            log.host(
                "info",
                &format!(
                    "snapshot {} committed ({} artifacts)",
                    info.short_id,
                    info.paths.len()
                ),
            );
            executed.snapshot_id = Some(info.id);
        }
        Ok(value)
    }

    /// The pipeline registered under `key`.
    fn pipeline(&self, key: &str) -> anyhow::Result<Arc<crate::pipeline::Pipeline>> {
        self.config
            .pipelines
            .get(key)
            .cloned()
            .ok_or_else(|| anyhow::anyhow!("no pipeline `{key}` in the configuration"))
    }

    /// Problems with a pipeline job: missing required params, and step
    /// functions that do not load or are not Functions.
    async fn check_pipeline(&self, job: &JobConfig, key: &str) -> Vec<Problem> {
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
                crate::builtins::ModuleKind::Task
            } else {
                crate::builtins::ModuleKind::Function
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
            if let ModuleSource::Pipeline(key) = &job.task.source {
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

/// A snapshot whose forget hook failed, so it was kept.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ForgetFailure {
    /// The snapshot kept.
    pub snapshot: SnapshotInfo,
    /// Why its hook failed (redacted).
    pub error: String,
}

/// Outcome of [`Runner::forget_job`].
#[derive(Debug, Clone, serde::Serialize)]
pub struct ForgetOutcome {
    /// Snapshots kept and removed (or that would be, when `dry_run`). A
    /// snapshot whose hook failed is in `kept`.
    pub report: crate::repository::ForgetReport,
    /// Snapshots kept because their task's `forget` hook failed; they are
    /// tried again at the next forget.
    pub failed: Vec<ForgetFailure>,
}

impl Runner {
    /// Apply the retention of job `job_name`: every snapshot its rules drop
    /// is first shown to the task's `forget` hook (which may, for example,
    /// delete the Elasticsearch snapshot it names); a snapshot is removed
    /// only when its hook succeeds, and kept otherwise (see
    /// [`ForgetOutcome::failed`]). With `dry_run` nothing is called or
    /// removed. An empty retention keeps everything.
    ///
    /// # Errors
    /// Unknown job, no repository, or the repository failing. A failing
    /// hook is not an `Err`.
    pub async fn forget_job(&self, job_name: &str, dry_run: bool) -> anyhow::Result<ForgetOutcome> {
        let job = self.config.job(job_name)?;
        let repo = self.repository(false).await?;
        let (name, keep) = (job.name.clone(), job.retention.clone());
        let r = repo.clone();
        let mut plan = tokio::task::spawn_blocking(move || r.forget(&name, &keep, true)).await??;
        if dry_run || plan.removed.is_empty() {
            plan.dry_run = dry_run;
            return Ok(ForgetOutcome {
                report: plan,
                failed: Vec::new(),
            });
        }
        let mut remove = Vec::new();
        let mut failed = Vec::new();
        for snapshot in std::mem::take(&mut plan.removed) {
            match self.forget_hook(job, &snapshot).await {
                Ok(_) => remove.push(snapshot),
                Err(e) => {
                    let error = format!("{e:#}");
                    tracing::warn!(
                        "keeping snapshot {} of job `{}`: its forget hook failed: {error}",
                        snapshot.short_id,
                        job.name
                    );
                    failed.push(ForgetFailure { snapshot, error });
                }
            }
        }
        let ids: Vec<String> = remove.iter().map(|s| s.id.clone()).collect();
        let name = job.name.clone();
        let removed = if ids.is_empty() {
            Vec::new()
        } else {
            tokio::task::spawn_blocking(move || repo.forget_snapshots(&name, &ids)).await??
        };
        plan.kept.extend(failed.iter().map(|f| f.snapshot.clone()));
        plan.kept
            .sort_by(|a, b| a.time_ms.cmp(&b.time_ms).then_with(|| a.id.cmp(&b.id)));
        plan.removed = removed;
        plan.dry_run = false;
        Ok(ForgetOutcome {
            report: plan,
            failed,
        })
    }

    /// Run the `forget` hook of `job`'s task for `snapshot`, which is about
    /// to be forgotten: the task gets the job's params and grants, and
    /// `storage` reads `snapshot` as in a restore. Pipeline tasks have no
    /// hook (`null`). The hook's log lines go to the host's log, redacted.
    ///
    /// # Errors
    /// When the module cannot be loaded, the snapshot cannot be opened, or
    /// the hook fails; the message names the job and the snapshot.
    pub async fn forget_hook(
        &self,
        job: &JobConfig,
        snapshot: &SnapshotInfo,
    ) -> anyhow::Result<Value> {
        if matches!(job.task.source, ModuleSource::Pipeline(_)) {
            return Ok(Value::Null);
        }
        let what = || {
            format!(
                "forget hook of job `{}` for snapshot {}",
                job.name, snapshot.short_id
            )
        };
        let module = self.runtime.load(&job.task).await.with_context(what)?;
        let repo = self.repository(false).await.with_context(what)?;
        let info = snapshot.clone();
        let session = tokio::task::spawn_blocking(move || repo.open_restore(&info))
            .await?
            .with_context(what)?;
        let run_id = format!("forget-{}", snapshot.short_id);
        let mut setup = self.setup(job, &run_id, no_progress());
        setup.storage = RunStorage::new(StorageMode::Restore(Arc::new(session)));
        let log = setup.log.clone();
        let context = Context {
            job: job.name.clone(),
            run_id,
            params: Value::Object(job.params.clone()).to_string(),
            snapshot: Some(snapshot.id.clone()),
        };
        let out = self
            .runtime
            .run_task(&module, TaskOp::Forget, context, setup)
            .await;
        match out {
            Ok(text) => {
                let value: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
                let value = redact_json(log.redactor(), value);
                log.host(
                    "info",
                    &format!(
                        "forget hook for snapshot {} succeeded: {value}",
                        snapshot.short_id
                    ),
                );
                Ok(value)
            }
            Err(e) => {
                let message = log.redactor().redact(&e.to_string());
                log.host(
                    "error",
                    &format!(
                        "forget hook for snapshot {} failed: {message}",
                        snapshot.short_id
                    ),
                );
                Err(anyhow::anyhow!(message)).with_context(what)
            }
        }
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
        storage: RunStorage::unavailable("storage is not available while describing a module"),
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

/// The repository password from `password-env` or `password-file`.
///
/// # Errors
/// Neither is configured, the variable is unset, or the file unreadable/empty.
pub fn repository_password(cfg: &crate::config::RepositoryFile) -> anyhow::Result<String> {
    let password = match (&cfg.password_env, &cfg.password_file) {
        (Some(var), _) => std::env::var(var).map_err(|_| {
            anyhow::anyhow!(
                "the repository password is read from environment variable `{var}` (repository.password-env), which is not set"
            )
        })?,
        (None, Some(file)) => std::fs::read_to_string(file)
            .with_context(|| format!("cannot read the repository password file {}", file.display()))?
            .trim_end_matches(['\n', '\r'])
            .to_string(),
        (None, None) => anyhow::bail!(
            "the repository has no password: set `password-env` or `password-file` in [repository]"
        ),
    };
    if password.is_empty() {
        anyhow::bail!("the repository password is empty");
    }
    Ok(password)
}

/// The `task:` tag of a job's snapshots: the built-in name or the module file's stem.
fn task_tag(job: &JobConfig) -> String {
    match &job.task.source {
        crate::config::ModuleSource::Builtin(n) => n.clone(),
        crate::config::ModuleSource::File(p) => p
            .file_stem()
            .map_or_else(|| "module".into(), |s| s.to_string_lossy().into_owned()),
        crate::config::ModuleSource::Pipeline(key) => Path::new(key.trim_start_matches("builtin:"))
            .file_stem()
            .map_or_else(|| key.clone(), |s| s.to_string_lossy().into_owned()),
    }
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "localhost".into())
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
        crate::config::ModuleSource::Pipeline(key) if key.starts_with("builtin:") => {
            format!("{key} (pipeline)")
        }
        crate::config::ModuleSource::Pipeline(key) if key.ends_with(".toml") => {
            format!("{key} (pipeline)")
        }
        crate::config::ModuleSource::Pipeline(key) => format!("pipeline:{key}"),
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
                        grants_phrase(g.commands.keys())
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
            if !g.secrets.contains(&value) {
                problems.push(Problem {
                    location: at("allow.secrets"),
                    message: format!(
                        "task needs secret `{value}`, but `allow.secrets` {}",
                        grants_phrase(&g.secrets)
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
