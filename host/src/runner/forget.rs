//! Retention: which snapshots of a job to forget, each shown first to its
//! task's `forget` hook (which may, for example, delete the Elasticsearch
//! snapshot it names); a snapshot whose hook fails is kept and retried.

use std::sync::Arc;

use anyhow::Context as _;
use serde_json::Value;

use super::Runner;
use crate::capabilities::bindings::Context;
use crate::capabilities::progress::no_progress;
use crate::capabilities::secrets::SecretValues;
use crate::capabilities::storage::{RunStorage, StorageMode};
use crate::config::JobConfig;
use crate::model::{Grants, SecretGrant};
use crate::repository::{ForgetReport, SnapshotInfo};
use crate::runtime::TaskOp;

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
    pub report: ForgetReport,
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
        if job.task.pipeline().is_some() {
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
        let mut ctx = self.context(job, &run_id, no_progress());
        // Only what forgetting needs: the job's HTTP origins and the secrets
        // bound to their headers, and reading the snapshot's notes and artifacts.
        let grants = forget_grants(&job.grants);
        ctx.secrets = Arc::new(SecretValues::resolve(
            &job.name,
            &grants.secrets,
            &self.config().secrets,
        ));
        ctx.grants = Arc::new(grants);
        ctx.storage = RunStorage::new(StorageMode::Forget(Arc::new(session)));
        let log = ctx.log.clone();
        let context = Context {
            job: job.name.clone(),
            run_id,
            params: Value::Object(job.params.clone()).to_string(),
            snapshot: Some(snapshot.id.clone()),
        };
        let out = self
            .runtime
            .run_task(&module, TaskOp::Forget, context, ctx)
            .await;
        match out {
            Ok(text) => {
                let value: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
                let value = log.redactor().redact_json(value);
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

/// What a `forget` hook of a job with `grants` may reach: its HTTP origins
/// and the secrets bound to request headers, nothing else (no programs,
/// paths, functions, environment bindings or readable secrets).
fn forget_grants(grants: &Grants) -> Grants {
    Grants {
        http: grants.http.clone(),
        secrets: grants
            .secrets
            .iter()
            .filter(|(_, g)| !g.headers.is_empty())
            .map(|(name, g)| {
                (
                    name.clone(),
                    SecretGrant {
                        headers: g.headers.clone(),
                        origins: g.origins.clone(),
                        ..SecretGrant::default()
                    },
                )
            })
            .collect(),
        ..Grants::default()
    }
}
