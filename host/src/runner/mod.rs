//! Runs a job end to end: records the run, prepares its sandbox from the
//! job's grants and limits, calls the task (a module or a pipeline), commits
//! a backup's snapshot, and records how the run ended.
//!
//! - [`forget`]: retention with the tasks' `forget` hooks.
//! - [`check`]: `cairn validate`'s check of every job's grants against what
//!   its task says it needs (runs nothing but `describe`).

pub mod check;
pub mod forget;
pub mod lease;
pub mod maintenance;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, LazyLock, Mutex, PoisonError};

use anyhow::Context as _;
use serde_json::{Map, Value, json};
use tokio_util::sync::CancellationToken;

pub use check::{check_needs, describe};
pub use forget::{ForgetFailure, ForgetOutcome};

use crate::capabilities::RunContext;
use crate::capabilities::bindings::Context;
use crate::capabilities::log::RunLog;
use crate::capabilities::progress::{ProgressSink, no_progress};
use crate::capabilities::secrets::SecretValues;
use crate::capabilities::storage::{RunStorage, StorageMode};
use crate::config::{Config, JobConfig};
use crate::model::{ModuleRef, PipelineRef, RepositorySettings};
use crate::pipeline::{Pipeline, Scope, Stop};
use crate::repository::{BackupSummary, RepoError, Repository, SnapshotInfo, SnapshotMeta};
use crate::runtime::{Runtime, TaskOp};
use crate::state::{
    LogLine, NewRun, RunKind, RunOutcome, RunRecord, RunStatus, StateStore, Trigger,
};

/// How a run ended, as reported to the caller.
#[derive(Debug, Clone, serde::Serialize)]
pub struct RunReport {
    /// The final run record.
    pub run: RunRecord,
    /// The task's JSON result, when it succeeded.
    pub result: Option<Value>,
    /// What a committed backup read and added (restic's summary).
    pub summary: Option<BackupSummary>,
}

impl RunReport {
    /// Whether the run succeeded.
    pub fn succeeded(&self) -> bool {
        self.run.status == RunStatus::Succeeded
    }
}

/// Where a run says which phase it is in (`preparing`, `backup`,
/// `committing`, …), for a progress display. Cheap to clone.
pub type PhaseSink = Arc<dyn Fn(&str) + Send + Sync>;

/// The logs of the runs going on in this process, by run id: what a live
/// view (the dashboard's log of a running run) reads before the run's log
/// is in the state store.
static LIVE_LOGS: LazyLock<Mutex<HashMap<String, RunLog>>> = LazyLock::new(Mutex::default);

/// The log lines so far of run `run_id`, if it is going on in this process.
/// Once it has ended its whole log is in the state store.
pub fn live_log(run_id: &str) -> Option<Vec<LogLine>> {
    let live = LIVE_LOGS.lock().unwrap_or_else(PoisonError::into_inner);
    live.get(run_id).map(RunLog::lines)
}

/// Keeps a run's log in [`LIVE_LOGS`] while it lives.
struct LiveEntry(String);

impl LiveEntry {
    fn new(run_id: &str, log: &RunLog) -> Self {
        LIVE_LOGS
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(run_id.to_string(), log.clone());
        Self(run_id.to_string())
    }
}

impl Drop for LiveEntry {
    fn drop(&mut self) {
        LIVE_LOGS
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&self.0);
    }
}

/// How to run a job: everything but the job and the kind.
pub struct RunOptions {
    /// Params merged over the job's params.
    pub overrides: Map<String, Value>,
    /// The snapshot a restore reads: an id, a unique prefix or `latest`
    /// (default `latest`). Ignored by backups.
    pub snapshot: Option<String>,
    /// A restore leaves out files whose data is damaged (logged as warnings)
    /// instead of failing at the first: it brings back what is intact.
    pub skip_damaged: bool,
    /// Where progress goes.
    pub progress: ProgressSink,
    /// Where the run's phase goes.
    pub phase: PhaseSink,
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
            skip_damaged: false,
            progress: no_progress(),
            phase: Arc::new(|_| {}),
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

/// One run on its way: what it runs, and what it has produced so far.
struct Execution<'a> {
    job: &'a JobConfig,
    kind: RunKind,
    /// The job's params with the run's overrides.
    params: Map<String, Value>,
    /// The snapshot a restore was asked to read.
    requested: Option<String>,
    /// Leave out damaged files of a tree restore ([`RunOptions::skip_damaged`]).
    skip_damaged: bool,
    cancel: CancellationToken,
    ctx: RunContext,
    phase: PhaseSink,
    /// The snapshot written (backup) or read (restore), once known.
    snapshot_id: Option<String>,
    /// A committed backup's summary.
    summary: Option<BackupSummary>,
    /// Bytes stored or restored.
    bytes: u64,
}

impl Execution<'_> {
    /// `backup of job `x``, for messages.
    fn what(&self) -> String {
        format!("{} of job `{}`", self.kind.as_str(), self.job.name)
    }
}

/// Runs jobs of one configuration.
pub struct Runner {
    config: Arc<Config>,
    runtime: Runtime,
    store: Arc<dyn StateStore>,
    functions: Arc<BTreeMap<String, ModuleRef>>,
    repo: Mutex<Option<Repository>>,
}

impl Runner {
    /// A runner for `config`, opening its state store (marking runs of dead
    /// processes interrupted) and a runtime with its compile cache.
    ///
    /// # Errors
    /// When the state store cannot be opened or the engine not created.
    pub fn open(config: Config) -> anyhow::Result<Self> {
        let store = crate::state::open(&config.state_location(), &crate::sys::hostname())?;
        let interrupted = store.reconcile_interrupted()?.len();
        if interrupted > 0 {
            tracing::warn!(
                "{interrupted} run(s) left running by a process that stopped are now marked interrupted"
            );
        }
        let runtime = Runtime::new(Some(&config.cache_dir))?;
        Ok(Self::new(config, runtime, store))
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

    /// What the capabilities of run `run_id` of `job` are built from: its
    /// grants, limits, secrets and log (no storage yet).
    fn context(&self, job: &JobConfig, run_id: &str, progress: ProgressSink) -> RunContext {
        let secrets = Arc::new(SecretValues::resolve(
            &job.name,
            &job.grants.secrets,
            &self.config.secrets,
        ));
        let redactor = Arc::new(secrets.redactor());
        RunContext {
            job: job.name.clone(),
            run_id: run_id.to_string(),
            grants: Arc::new(job.grants.clone()),
            limits: job.limits.clone(),
            store: self.store.clone(),
            log: RunLog::new(&job.name, run_id, redactor, &job.limits),
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
        let job = self.config.job(job_name)?;
        anyhow::ensure!(
            kind.runs_task(),
            "a {} run does not run job `{}`'s task",
            kind.as_str(),
            job.name
        );
        let mut params = job.params.clone();
        params.extend(opts.overrides);
        // Recorded as queued before anything else (a backup of a job that
        // does not allow overlap is refused here if another one of the job is
        // going, in any process), then running.
        let queued = match opts.queued {
            Some(record) => record,
            None => self.store.queue_run(&NewRun {
                job: job.name.clone(),
                kind,
                trigger: opts.trigger,
                attempt: opts.attempt,
                scheduled_at_ms: opts.scheduled_at_ms,
                exclusive: job.concurrency.exclusive_for(kind),
            })?,
        };
        let ctx = self.context(job, &queued.id, opts.progress);
        let log = ctx.log.clone();
        log.host(
            "info",
            &format!(
                "{} of job `{}` started (task {})",
                kind.as_str(),
                job.name,
                job.task
            ),
        );
        // The first line is stored before the run is marked running: a run
        // killed at any point after that shows that it started (one killed
        // while still queued is recorded as never started).
        self.store
            .append_logs(&queued.id, &log.take_unstored(false))?;
        let record = self.store.mark_running(&queued.id)?;
        let heartbeat = lease::Heartbeat::start(
            self.store.clone(),
            &record.id,
            Some(log.clone()),
            opts.cancel.clone(),
        );
        let _live = LiveEntry::new(&record.id, &log);
        (opts.phase)("preparing");
        let last_progress = ctx.last_progress.clone();

        let mut run = Execution {
            job,
            kind,
            params,
            requested: opts.snapshot,
            skip_damaged: opts.skip_damaged,
            cancel: opts.cancel,
            ctx,
            phase: opts.phase,
            snapshot_id: None,
            summary: None,
            bytes: 0,
        };
        let outcome = self.execute(&mut run).await;
        let (status, error, result) = match outcome {
            Ok(json) => (
                RunStatus::Succeeded,
                None,
                Some(log.redactor().redact_json(json)),
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
            (None, _) => log.host("info", &format!("{} succeeded", kind.as_str())),
            (Some(e), RunStatus::Cancelled) => {
                log.host("warn", &format!("{} cancelled: {e}", kind.as_str()));
            }
            (Some(e), _) => log.host("error", &format!("{} failed: {e}", kind.as_str())),
        }
        let progress_bytes = last_progress
            .lock()
            .unwrap()
            .filter(|p| p.bytes)
            .map(|p| p.done)
            .unwrap_or(0);
        let result_text = result.as_ref().map(Value::to_string);
        let mut rest = heartbeat.stop().await;
        rest.extend(log.take_unstored(true));
        self.store.append_logs(&record.id, &rest)?;
        self.store.finish_run(
            &record.id,
            &RunOutcome {
                status,
                error,
                snapshot_id: run.snapshot_id,
                bytes: run.bytes.max(progress_bytes),
                result: result_text,
            },
        )?;
        Ok(RunReport {
            run: self.store.run(&record.id)?,
            result,
            summary: run.summary,
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
            anyhow::anyhow!("{} has no [repository] section", self.config.label())
        })?;
        let password = repository_password(&cfg)?;
        let repo = tokio::task::spawn_blocking(move || {
            if create {
                Repository::open_or_init(&cfg.location, &password).map(|(r, created)| {
                    if created {
                        tracing::info!("created repository {}", cfg.location);
                    }
                    r
                })
            } else {
                Repository::open(&cfg.location, &password)
            }
        })
        .await??;
        *self.repo.lock().unwrap() = Some(repo.clone());
        Ok(repo)
    }

    /// The repository `[repositories.NAME]` (a destination of `cairn copy`),
    /// created when `create` and missing.
    ///
    /// # Errors
    /// When there is no such repository in the configuration, its password
    /// cannot be read, or it cannot be opened or created.
    pub async fn named_repository(&self, name: &str, create: bool) -> anyhow::Result<Repository> {
        let cfg = self.config.repositories.get(name).cloned().ok_or_else(|| {
            let known: Vec<&str> = self
                .config
                .repositories
                .keys()
                .map(String::as_str)
                .collect();
            anyhow::anyhow!(
                "{} has no [repositories.{name}]{}",
                self.config.label(),
                if known.is_empty() {
                    String::new()
                } else {
                    format!(" (it has: {})", known.join(", "))
                }
            )
        })?;
        let password = repository_password(&cfg)
            .with_context(|| format!("repository `{name}` ({})", cfg.location))?;
        let repo = tokio::task::spawn_blocking(move || {
            if create {
                Repository::open_or_init(&cfg.location, &password).map(|(r, _)| r)
            } else {
                Repository::open(&cfg.location, &password)
            }
        })
        .await??;
        Ok(repo)
    }

    /// Storage for `run`: a new snapshot (backup) or the chosen one (restore).
    async fn storage(
        &self,
        run: &Execution<'_>,
    ) -> anyhow::Result<(RunStorage, Option<SnapshotInfo>)> {
        let job = run.job;
        if self.config.repository.is_none() {
            if run.requested.is_some() {
                anyhow::bail!(
                    "--snapshot given, but {} has no [repository] section",
                    self.config.label()
                );
            }
            return Ok((
                RunStorage::unavailable(&format!(
                    "job `{}` has no repository to store artifacts in: add a [repository] section to {}",
                    job.name,
                    self.config.label()
                )),
                None,
            ));
        }
        let repo = self.repository(run.kind == RunKind::Backup).await?;
        match run.kind {
            RunKind::Backup => {
                let meta = SnapshotMeta {
                    job: job.name.clone(),
                    task: job.task.tag(),
                    run_id: run.ctx.run_id.clone(),
                    hostname: crate::sys::hostname(),
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
                let id = run.requested.clone().unwrap_or_else(|| "latest".into());
                let skip_damaged = run.skip_damaged;
                let (session, info) = tokio::task::spawn_blocking(move || {
                    let info = repo.find_snapshot(&job_name, &id)?;
                    let session = repo.open_restore(&info)?.skip_damaged(skip_damaged);
                    Ok::<_, RepoError>((session, info))
                })
                .await??;
                Ok((
                    RunStorage::new(StorageMode::Restore(Arc::new(session))),
                    Some(info),
                ))
            }
            RunKind::Forget | RunKind::Prune => not_a_task_run(run.kind),
        }
    }

    /// Execute `run`: open its storage, run its task module or pipeline, and
    /// commit a backup's snapshot when everything succeeded. `run` records
    /// the snapshot and bytes as they become known, also on failure.
    async fn execute(&self, run: &mut Execution<'_>) -> anyhow::Result<Value> {
        let job = run.job;
        let pipeline = match job.task.pipeline() {
            Some(key) => Some(self.pipeline(key)?),
            None => None,
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
        let (storage, restoring) = self.storage(run).await.with_context(|| run.what())?;
        if let Some(info) = &restoring {
            run.snapshot_id = Some(info.id.clone());
            run.ctx.log.host(
                "info",
                &format!("restoring from snapshot {} of {}", info.short_id, info.time),
            );
        }
        let storage = storage.with_progress(&job.name, run.ctx.progress.clone());
        run.ctx.storage = storage.clone();
        let snapshot = restoring.as_ref().map(|i| i.id.clone());
        (run.phase)(run.kind.as_str());
        let value = match (module, pipeline) {
            (Some(module), _) => {
                let context = Context {
                    job: job.name.clone(),
                    run_id: run.ctx.run_id.clone(),
                    params: Value::Object(run.params.clone()).to_string(),
                    snapshot,
                };
                let op = match run.kind {
                    RunKind::Backup => TaskOp::Backup,
                    RunKind::Restore => TaskOp::Restore,
                    RunKind::Forget | RunKind::Prune => return not_a_task_run(run.kind),
                };
                let out = tokio::select! {
                    out = self.runtime.run_task(&module, op, context, run.ctx.clone()) => Some(out),
                    () = run.cancel.cancelled() => None,
                };
                // A cancelled task's store is dropped above, killing its processes.
                run.bytes = storage.bytes();
                let Some(out) = out else {
                    return Err(Cancelled(format!("{} was cancelled", run.what())).into());
                };
                let out = out.map_err(|e| anyhow::Error::new(e).context(run.what()))?;
                serde_json::from_str(&out)?
            }
            (None, Some(pipeline)) => self.run_pipeline(run, &pipeline, snapshot).await?,
            (None, None) => unreachable!("a job runs a module or a pipeline"),
        };
        // No store holds the run's context any more: release its handle on
        // the snapshot so that it can be committed.
        run.ctx.storage = RunStorage::unavailable("the run is over");
        if let Some(session) = storage.take_backup()? {
            (run.phase)("committing");
            let info = tokio::task::spawn_blocking(move || session.commit())
                .await?
                .with_context(|| format!("committing the snapshot of job `{}`", job.name))?;
            run.ctx.log.host(
                "info",
                &format!(
                    "snapshot {} committed ({} artifacts)",
                    info.short_id,
                    info.paths.len()
                ),
            );
            run.snapshot_id = Some(info.id.clone());
            run.summary = info.summary;
            for target in &job.copy_to {
                (run.phase)("copying");
                let dest = self.named_repository(target, true).await.with_context(|| {
                    format!(
                        "snapshot {} is committed, but the repository `{target}` it is copied \
                         to cannot be opened",
                        info.short_id
                    )
                })?;
                let source = self.repository(false).await?;
                let (job_name, id) = (job.name.clone(), info.id.clone());
                let report = tokio::task::spawn_blocking(move || {
                    source.copy_to(&dest, Some(&job_name), &[id])
                })
                .await?
                .with_context(|| {
                    format!(
                        "snapshot {} is committed, but copying it to `{target}` failed \
                         (`cairn copy --to {target} --job {}` copies what is missing)",
                        info.short_id, job.name
                    )
                })?;
                run.ctx.log.host(
                    "info",
                    &format!(
                        "snapshot {} {} repository `{target}`",
                        info.short_id,
                        if report.copied.is_empty() {
                            "already in"
                        } else {
                            "copied to"
                        }
                    ),
                );
            }
        }
        Ok(value)
    }

    /// Run the phase of `pipeline` that `run` asks for.
    async fn run_pipeline(
        &self,
        run: &mut Execution<'_>,
        pipeline: &Pipeline,
        snapshot: Option<String>,
    ) -> anyhow::Result<Value> {
        let phase = match run.kind {
            RunKind::Backup => pipeline.backup.as_ref(),
            RunKind::Restore => pipeline.restore.as_ref(),
            RunKind::Forget | RunKind::Prune => return not_a_task_run(run.kind),
        };
        let Some(phase) = phase else {
            anyhow::bail!(
                "pipeline `{}` of job `{}` has no {} steps",
                pipeline.name,
                run.job.name,
                run.kind.as_str()
            );
        };
        let scope = Scope {
            params: run.params.clone(),
            job: run.job.name.clone(),
            run_id: run.ctx.run_id.clone(),
            snapshot,
            restoring: run.kind == RunKind::Restore,
            ..Scope::default()
        };
        let outcome = crate::pipeline::run_phase(
            &self.runtime,
            pipeline,
            phase,
            scope,
            &run.ctx,
            run.job.limits.timeout,
            &run.cancel,
        )
        .await;
        run.bytes = run.ctx.storage.bytes();
        if let Some(error) = outcome.error() {
            if matches!(outcome.stopped, Some(Stop::Cancelled(_))) {
                return Err(Cancelled(error).into());
            }
            anyhow::bail!("{error}");
        }
        Ok(json!({ "steps": outcome.results }))
    }

    /// The pipeline `key` names.
    fn pipeline(&self, key: &PipelineRef) -> anyhow::Result<Arc<Pipeline>> {
        self.config
            .pipelines
            .get(key)
            .cloned()
            .ok_or_else(|| anyhow::anyhow!("no pipeline `{key}` in the configuration"))
    }
}

/// The repository password, from where `[repository]` says.
///
/// # Errors
/// No source configured, the source unreadable, or the password empty.
pub fn repository_password(cfg: &RepositorySettings) -> anyhow::Result<String> {
    let source = cfg.password.as_ref().ok_or_else(|| {
        anyhow::anyhow!(
            "the repository has no password: set `password-env` or `password-file` in [repository]"
        )
    })?;
    let password = source
        .read()
        .map_err(|e| anyhow::anyhow!("cannot read the repository password: {e}"))?;
    anyhow::ensure!(!password.is_empty(), "the repository password is empty");
    Ok(password)
}

/// The error for a forget or prune run given to the task runner ([`Runner::run`]
/// refuses them first).
fn not_a_task_run<T>(kind: RunKind) -> anyhow::Result<T> {
    anyhow::bail!("a {} run runs no task", kind.as_str())
}
