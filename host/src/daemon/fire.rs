//! How the daemon fires jobs: the timer loop, a fire's concurrency decision
//! and retries, and what happens when a run ends (metrics, webhooks, run
//! history, retention) and when the repository is pruned.

use std::sync::{Arc, MutexGuard, PoisonError};

use chrono::{DateTime, Utc};
use tokio_util::sync::CancellationToken;

use super::schedule::{self, FireAction, Plan};
use super::{Active, FireError, Inner, MAX_SLEEP, PRUNE_KEY, State, jitter, job_webhooks};
use crate::config::JobConfig;
use crate::runner::{RunOptions, Runner};
use crate::state::{NewRun, RunKind, RunRecord, RunStatus, StateError, Trigger};

/// Log fires a plan covers without running them.
pub(super) fn log_dropped(job: &str, plan: &Plan) {
    if plan.dropped > 0 {
        let how = if plan.fire.is_some() {
            "coalesced into one run"
        } else {
            "skipped (missed = \"skip\")"
        };
        tracing::info!("job `{job}`: {} missed fire(s) {how}", plan.dropped);
    }
}

impl Inner {
    pub(super) fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Sleep until the earliest next fire, fire what is due, repeat until
    /// shutdown.
    pub(super) async fn timer_loop(self: Arc<Self>) {
        loop {
            let earliest = self.lock().timer.earliest();
            let now = self.clock.now();
            let sleep = earliest
                .map_or(MAX_SLEEP, |at| (at - now).to_std().unwrap_or_default())
                .min(MAX_SLEEP);
            tokio::select! {
                () = tokio::time::sleep(sleep) => {}
                () = self.wake.notified() => continue,
                () = self.stopping.cancelled() => return,
            }
            self.fire_due(self.clock.now());
        }
    }

    /// Fire every job due at `now` and schedule its next fire.
    fn fire_due(self: &Arc<Self>, now: DateTime<Utc>) {
        let mut fires = Vec::new();
        let mut marks = Vec::new();
        let mut prune = false;
        {
            let mut state = self.lock();
            let runner = state.runner.clone();
            for (job, at) in state.timer.pop_due(now) {
                if job == PRUNE_KEY {
                    if let Some(p) = &runner.config().daemon.prune {
                        let plan = schedule::plan(p, Some(at), now, schedule::Missed::Coalesce);
                        state.timer.set(PRUNE_KEY, plan.next);
                        prune = true;
                    }
                    continue;
                }
                let Some(config) = runner.config().jobs.get(&job) else {
                    continue;
                };
                let Some(cron) = &config.cron else { continue };
                let plan = schedule::plan(cron, Some(at), now, config.missed);
                log_dropped(&job, &plan);
                state.timer.set(&job, plan.next);
                marks.push((
                    job.clone(),
                    plan.handled.map(|t| t.timestamp_millis()),
                    plan.next.map(|t| t.timestamp_millis()),
                ));
                if let Some(at) = plan.fire {
                    if state.paused.contains(&job) {
                        tracing::debug!("job `{job}` is paused: fire of {at} not run");
                    } else {
                        fires.push((job, at));
                    }
                }
            }
        }
        for (job, at) in fires {
            let inner = self.clone();
            self.tracker.spawn(async move {
                match inner
                    .clone()
                    .fire(&job, RunKind::Backup, Trigger::Schedule, Some(at))
                    .await
                {
                    Ok(_) | Err(FireError::Conflict(_)) => {}
                    Err(e) => tracing::error!("job `{job}`: fire of {at} failed: {e}"),
                }
            });
        }
        if prune {
            let inner = self.clone();
            self.tracker.spawn(async move { inner.prune().await });
        }
        // Kept for the next start-up (missed fires); a failure only costs that.
        if let Err(e) = self.store.set_fire_marks(&marks) {
            tracing::warn!("cannot record next fires: {e}");
        }
    }

    /// Fire `job`: decide by its concurrency policy, record the run as
    /// queued (or the fire as skipped), and run it with its retries in the
    /// background. Returns the first run's record.
    pub(super) async fn fire(
        self: Arc<Self>,
        job: &str,
        kind: RunKind,
        trigger: Trigger,
        scheduled: Option<DateTime<Utc>>,
    ) -> Result<RunRecord, FireError> {
        let (runner, config, me, replaced) = {
            let mut state = self.lock();
            let runner = state.runner.clone();
            let config = runner.config().job(job)?.clone();
            let id = state.next_fire_id;
            state.next_fire_id += 1;
            let active = state.active.entry(job.to_owned()).or_default();
            let action = if kind == RunKind::Backup {
                config.concurrency.on_fire(active.len())
            } else {
                FireAction::Run
            };
            let replaced: Vec<(CancellationToken, CancellationToken)> =
                if action == FireAction::ReplaceThenRun {
                    active
                        .iter()
                        .map(|a| (a.cancel.clone(), a.finished.clone()))
                        .collect()
                } else {
                    Vec::new()
                };
            let me = (action != FireAction::Skip).then(|| {
                let me = Active {
                    id,
                    cancel: self.hard_cancel.child_token(),
                    finished: CancellationToken::new(),
                };
                let handle = (me.id, me.cancel.clone(), me.finished.clone());
                active.push(me);
                handle
            });
            (runner, config, me, replaced)
        };
        let new = NewRun {
            job: job.to_owned(),
            kind,
            trigger,
            attempt: 1,
            scheduled_at_ms: scheduled.map(|t| t.timestamp_millis()),
            exclusive: config.concurrency.exclusive_for(kind),
        };
        let Some((id, cancel, finished)) = me else {
            return Err(self.skip(
                &new,
                trigger,
                "the job's previous run is still going (concurrency = \"forbid\")",
            ));
        };
        for (cancel, finished) in replaced {
            tracing::info!("job `{job}`: cancelling its running run (concurrency = \"replace\")");
            cancel.cancel();
            finished.cancelled().await;
        }
        let queued = match self.store.queue_run(&new) {
            Ok(r) => r,
            Err(StateError::Busy { run, by, .. }) => {
                self.forget_active(&new.job, id, &finished);
                let reason = format!("another run of the job is going (run {run}, {by})");
                return Err(self.skip(&new, trigger, &reason));
            }
            Err(e) => {
                self.forget_active(&new.job, id, &finished);
                return Err(e.into());
            }
        };
        let first = queued.clone();
        let inner = self.clone();
        self.tracker.spawn(async move {
            let job = new.job.clone();
            inner
                .run_attempts(runner, config, new, queued, cancel)
                .await;
            inner.forget_active(&job, id, &finished);
        });
        Ok(first)
    }

    /// Record a skipped fire (scheduled) or refuse (API).
    fn skip(&self, new: &NewRun, trigger: Trigger, reason: &str) -> FireError {
        if trigger == Trigger::Schedule {
            match self.store.record_skipped(new, reason) {
                Ok(record) => {
                    tracing::info!("job `{}`: fire skipped: {reason}", new.job);
                    self.metrics.observe_run(&record);
                    let runner = self.lock().runner.clone();
                    if let Some(config) = runner.config().jobs.get(&new.job) {
                        self.notifier.notify(job_webhooks(config), &record);
                    }
                }
                Err(e) => tracing::error!("job `{}`: cannot record a skipped fire: {e}", new.job),
            }
        }
        FireError::Conflict(format!("job `{}` not started: {reason}", new.job))
    }

    /// Drop fire `id` of `job` from the active ones and say it is over.
    fn forget_active(&self, job: &str, id: u64, finished: &CancellationToken) {
        let mut state = self.lock();
        if let Some(list) = state.active.get_mut(job) {
            list.retain(|a| a.id != id);
            if list.is_empty() {
                state.active.remove(job);
            }
        }
        finished.cancel();
    }

    /// Run `queued` and, while it fails, its retries.
    async fn run_attempts(
        self: &Arc<Self>,
        runner: Arc<Runner>,
        config: JobConfig,
        mut new: NewRun,
        mut queued: RunRecord,
        cancel: CancellationToken,
    ) {
        let job = config.name.clone();
        loop {
            let opts = RunOptions {
                cancel: cancel.clone(),
                trigger: new.trigger,
                attempt: new.attempt,
                scheduled_at_ms: new.scheduled_at_ms,
                queued: Some(queued.clone()),
                ..RunOptions::default()
            };
            let report = match runner.run(&job, new.kind, opts).await {
                Ok(report) => report,
                Err(e) => {
                    tracing::error!("job `{job}`: run {} could not be run: {e:#}", queued.id);
                    return;
                }
            };
            let run = report.run;
            self.finished(&config, &run);
            match run.status {
                RunStatus::Succeeded if new.kind == RunKind::Backup => {
                    self.retention(&runner, &job).await;
                    return;
                }
                RunStatus::Failed if new.attempt < config.retries.attempts => {}
                _ => return,
            }
            new.attempt += 1;
            let delay = config.retries.delay(new.attempt, jitter());
            tracing::info!(
                "job `{job}`: run {} failed; attempt {} of {} in {}",
                run.id,
                new.attempt,
                config.retries.attempts,
                crate::units::format_duration(delay)
            );
            tokio::select! {
                () = tokio::time::sleep(delay) => {}
                () = cancel.cancelled() => return,
                () = self.stopping.cancelled() => return,
            }
            queued = match self.store.queue_run(&new) {
                Ok(r) => r,
                Err(StateError::Busy { run, by, .. }) => {
                    let reason = format!(
                        "retry not started: another run of the job is going (run {run}, {by})"
                    );
                    self.skip(&new, Trigger::Schedule, &reason);
                    return;
                }
                Err(e) => {
                    tracing::error!("job `{job}`: cannot record a retry: {e}");
                    return;
                }
            };
        }
    }

    /// What happens when a run ends: metrics, notification, history retention.
    fn finished(&self, config: &JobConfig, run: &RunRecord) {
        let level_ok = matches!(run.status, RunStatus::Succeeded);
        if level_ok {
            tracing::info!(
                "job `{}`: run {} (attempt {}) {}",
                run.job,
                run.id,
                run.attempt,
                run.status.as_str()
            );
        } else {
            tracing::warn!(
                "job `{}`: run {} (attempt {}) {}: {}",
                run.job,
                run.id,
                run.attempt,
                run.status.as_str(),
                run.error.as_deref().unwrap_or("")
            );
        }
        self.metrics.observe_run(run);
        self.notifier.notify(job_webhooks(config), run);
        match self.store.prune_runs(&config.name, config.keep_runs) {
            Ok(0) => {}
            Ok(n) => tracing::debug!("job `{}`: {n} old run(s) dropped from history", config.name),
            Err(e) => tracing::warn!("job `{}`: cannot prune run history: {e}", config.name),
        }
    }

    /// Apply the job's retention after a successful backup (as `cairn
    /// forget JOB` does, forget hooks included).
    async fn retention(&self, runner: &Runner, job: &str) {
        let wanted = runner.config().repository.is_some()
            && runner
                .config()
                .jobs
                .get(job)
                .is_some_and(|j| !j.retention.is_empty());
        if !wanted {
            return;
        }
        let _serial = self.maintenance.lock().await;
        match runner.forget_job(job, false).await {
            Ok(outcome) => {
                let report = outcome.report;
                self.metrics
                    .set_snapshots(job, u64::try_from(report.kept.len()).unwrap_or(u64::MAX));
                if !report.removed.is_empty() {
                    tracing::info!(
                        "job `{job}`: retention removed {} snapshot(s), kept {}",
                        report.removed.len(),
                        report.kept.len()
                    );
                }
            }
            Err(e) => tracing::error!("job `{job}`: retention failed: {e:#}"),
        }
    }

    /// Prune the repository (on `[daemon] prune`'s schedule).
    async fn prune(&self) {
        let _serial = self.maintenance.lock().await;
        let runner = self.lock().runner.clone();
        if runner.config().repository.is_none() {
            tracing::warn!("[daemon] prune is set, but there is no [repository] to prune");
            return;
        }
        let result = async {
            let repo = runner.repository(false).await?;
            let report = tokio::task::spawn_blocking(move || repo.prune()).await??;
            anyhow::Ok(report)
        }
        .await;
        match result {
            Ok(p) => tracing::info!(
                "repository pruned: {} pack(s), {} bytes removed",
                p.packs_removed,
                p.bytes_removed
            ),
            Err(e) => tracing::error!("prune failed: {e:#}"),
        }
    }
}
