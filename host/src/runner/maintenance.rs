//! Forget and prune as recorded runs: each is a run of kind `forget` (of the
//! job whose snapshots it forgets) or `prune` (of [`REPOSITORY_JOB`]) in the
//! run history, with a log line, a JSON result and a lease like any run, so
//! `cairn runs` and the API show when the repository was maintained, by
//! which node, and how it went.
//!
//! Retention and prune of one repository are serialised across processes
//! and nodes by a named lock in the state store, held (and renewed) for the
//! whole run; the repository's own exclusive lock is taken inside as well.

use std::future::Future;
use std::time::Duration;

use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use super::Runner;
use super::forget::ForgetOutcome;
use super::lease::Heartbeat;
use crate::config::Config;
pub use crate::model::run::REPOSITORY_JOB;
use crate::repository::PruneReport;
use crate::state::{
    LEASE, LogLine, NewRun, RENEW_EVERY, RunKind, RunOutcome, RunRecord, RunStatus, Trigger,
    new_run_id,
};
use crate::sys::now_ms;

/// How often a run waiting for the repository lock tries again.
const LOCK_POLL: Duration = Duration::from_millis(500);

/// How a forget or prune ended, for its run record.
#[derive(Debug, Clone, PartialEq)]
pub struct Maintained {
    /// One line for the run's log (`retention: 2 snapshot(s) removed …`).
    pub summary: String,
    /// The run's JSON result.
    pub result: Value,
    /// Set when the work was done but not all of it succeeded (a forget hook
    /// failed): the run is recorded `failed` with this error.
    pub error: Option<String>,
}

/// The name of the state store lock that serialises retention and prune of
/// `config`'s repository across processes and nodes.
#[must_use]
pub fn repository_lock_name(config: &Config) -> String {
    use sha2::Digest as _;
    let location = config
        .repository
        .as_ref()
        .map_or_else(String::new, |r| r.location.to_string());
    let digest = sha2::Sha256::digest(location.as_bytes());
    format!("repository:{}", hex::encode(&digest[..8]))
}

impl Runner {
    /// Run `work` as a recorded `kind` run (forget, prune) of `job`, holding
    /// the repository's lock in the state store for its whole length (waiting
    /// for it while another process or node forgets or prunes). Returns the
    /// finished run and what `work` returned; an `Err` of `work` is recorded
    /// as the run's error (`failed`) and returned as is.
    ///
    /// # Errors
    /// When `cancel` is cancelled while waiting for the lock, or the run
    /// cannot be recorded.
    pub async fn maintenance<T>(
        &self,
        job: &str,
        kind: RunKind,
        trigger: Trigger,
        cancel: &CancellationToken,
        work: impl Future<Output = anyhow::Result<(T, Maintained)>>,
    ) -> anyhow::Result<(RunRecord, anyhow::Result<T>)> {
        let store = self.store.clone();
        let lock = repository_lock_name(&self.config);
        let holder = format!("{}:{}", store.node(), new_run_id());
        let mut waited = false;
        loop {
            match store.try_lock(&lock, &holder, LEASE) {
                Ok(true) => break,
                Ok(false) if !waited => {
                    tracing::info!(
                        "{} of `{job}`: waiting for another process or node to finish forgetting \
                         or pruning the repository",
                        kind.as_str()
                    );
                    waited = true;
                }
                Ok(false) => {}
                Err(e) => tracing::warn!("cannot take the repository lock: {e}"),
            }
            tokio::select! {
                () = tokio::time::sleep(LOCK_POLL) => {}
                () = cancel.cancelled() => anyhow::bail!(
                    "{} of `{job}` cancelled while waiting for the repository lock",
                    kind.as_str()
                ),
            }
        }
        let renew_stop = CancellationToken::new();
        let renewing = {
            let (store, lock, holder, stop) = (
                store.clone(),
                lock.clone(),
                holder.clone(),
                renew_stop.clone(),
            );
            tokio::spawn(async move {
                loop {
                    tokio::select! {
                        () = tokio::time::sleep(RENEW_EVERY) => {}
                        () = stop.cancelled() => return,
                    }
                    let (store, lock, holder) = (store.clone(), lock.clone(), holder.clone());
                    let renewed =
                        tokio::task::spawn_blocking(move || store.try_lock(&lock, &holder, LEASE))
                            .await;
                    match renewed {
                        Ok(Ok(true)) => {}
                        Ok(Ok(false)) => tracing::warn!(
                            "the repository lock was taken over (it was not renewed in time)"
                        ),
                        Ok(Err(e)) => tracing::warn!("cannot renew the repository lock: {e}"),
                        Err(e) => tracing::warn!("renewing the repository lock failed: {e}"),
                    }
                }
            })
        };
        let recorded = self
            .record_maintenance(job, kind, trigger, cancel, work)
            .await;
        renew_stop.cancel();
        let _ = renewing.await;
        if let Err(e) = store.unlock(&lock, &holder) {
            tracing::warn!("cannot release the repository lock: {e}");
        }
        recorded
    }

    /// Record `work` as a `kind` run of `job`.
    async fn record_maintenance<T>(
        &self,
        job: &str,
        kind: RunKind,
        trigger: Trigger,
        cancel: &CancellationToken,
        work: impl Future<Output = anyhow::Result<(T, Maintained)>>,
    ) -> anyhow::Result<(RunRecord, anyhow::Result<T>)> {
        let store = self.store.clone();
        let queued = store.queue_run(&NewRun::new(job, kind, trigger))?;
        let run = store.mark_running(&queued.id)?;
        let heartbeat = Heartbeat::start(store.clone(), &run.id, None, cancel.child_token());
        let result = work.await;
        // It stores no log (the one line is written below).
        let _ = heartbeat.stop().await;
        let (level, message, outcome, value) = match result {
            Ok((value, done)) => (
                if done.error.is_some() {
                    "error"
                } else {
                    "info"
                },
                done.summary,
                RunOutcome {
                    status: if done.error.is_some() {
                        RunStatus::Failed
                    } else {
                        RunStatus::Succeeded
                    },
                    error: done.error,
                    snapshot_id: None,
                    bytes: 0,
                    result: Some(done.result.to_string()),
                },
                Ok(value),
            ),
            Err(e) => {
                let error = format!("{e:#}");
                (
                    "error",
                    format!("{} failed: {error}", kind.as_str()),
                    RunOutcome {
                        status: RunStatus::Failed,
                        error: Some(error),
                        snapshot_id: None,
                        bytes: 0,
                        result: None,
                    },
                    Err(e),
                )
            }
        };
        let line = LogLine {
            at_ms: now_ms(),
            level: level.to_owned(),
            message,
            fields: Vec::new(),
        };
        store.append_logs(&run.id, &[line])?;
        store.finish_run(&run.id, &outcome)?;
        Ok((store.run(&run.id)?, value))
    }

    /// Apply job `job`'s retention (as [`Runner::forget_job`], forget hooks
    /// included), recorded as a `forget` run of the job. The run fails when
    /// a snapshot was kept because its forget hook failed.
    ///
    /// # Errors
    /// As [`Runner::maintenance`].
    pub async fn forget_recorded(
        &self,
        job: &str,
        trigger: Trigger,
        cancel: &CancellationToken,
    ) -> anyhow::Result<(RunRecord, anyhow::Result<ForgetOutcome>)> {
        let work = async {
            let outcome = self.forget_job(job, false).await?;
            let report = &outcome.report;
            let summary = format!(
                "retention: {} snapshot(s) removed, {} kept",
                report.removed.len(),
                report.kept.len(),
            );
            let error = (!outcome.failed.is_empty()).then(|| {
                format!(
                    "{} snapshot(s) kept because their forget hook failed (tried again at the \
                     next forget): {}",
                    outcome.failed.len(),
                    outcome
                        .failed
                        .iter()
                        .map(|f| format!("{}: {}", f.snapshot.short_id, f.error))
                        .collect::<Vec<_>>()
                        .join("; ")
                )
            });
            let result = json!({
                "removed": report.removed.iter().map(|s| &s.id).collect::<Vec<_>>(),
                "kept": report.kept.iter().map(|s| &s.id).collect::<Vec<_>>(),
                "hook-failures": outcome.failed.len(),
            });
            anyhow::Ok((
                outcome.clone(),
                Maintained {
                    summary,
                    result,
                    error,
                },
            ))
        };
        self.maintenance(job, RunKind::Forget, trigger, cancel, work)
            .await
    }

    /// Prune the repository (remove data no snapshot uses), recorded as a
    /// `prune` run of [`REPOSITORY_JOB`].
    ///
    /// # Errors
    /// As [`Runner::maintenance`].
    pub async fn prune_recorded(
        &self,
        trigger: Trigger,
        cancel: &CancellationToken,
    ) -> anyhow::Result<(RunRecord, anyhow::Result<PruneReport>)> {
        let work = async {
            let repo = self.repository(false).await?;
            let report = tokio::task::spawn_blocking(move || repo.prune()).await??;
            let summary = format!(
                "repository pruned: {} pack(s), {} removed",
                report.packs_removed,
                crate::units::format_size(report.bytes_removed)
            );
            let result = json!({
                "packs-removed": report.packs_removed,
                "bytes-removed": report.bytes_removed,
            });
            anyhow::Ok((
                report,
                Maintained {
                    summary,
                    result,
                    error: None,
                },
            ))
        };
        self.maintenance(REPOSITORY_JOB, RunKind::Prune, trigger, cancel, work)
            .await
    }
}
