//! How the daemon fires jobs: the timer loop and its claims on the fire
//! ledger, a fire's concurrency decision (across nodes) and retries, the
//! sweep of runs whose lease ran out, and what happens when a run ends
//! (metrics, webhooks, run history, retention) and when the repository is
//! pruned.

use std::sync::{Arc, MutexGuard, PoisonError};
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio_util::sync::CancellationToken;

use super::schedule::{self, FireAction, Missed, ON_TIME, Plan};
use super::{
    Active, CLAIM_EVERY, FireError, Inner, PRUNE_KEY, SWEEP_EVERY, State, jitter, job_webhooks,
};
use crate::config::{Config, JobConfig};
use crate::model::Concurrency;
use crate::runner::{RunOptions, Runner};
use crate::state::{
    FirePlan, LEASE, NewRun, REPORT_WINDOW, RunKind, RunRecord, RunStatus, StateError, Trigger,
};
use crate::sys::now_ms;

/// How long a `replace` fire waits for the runs it cancels on other nodes
/// (a node that is gone loses its run when the lease runs out).
const REPLACE_WAIT: Duration = Duration::from_secs(LEASE.as_secs() + 5);

/// Due fires a node claims at once; it claims again (after a short wait)
/// while more are due, so that several nodes share a crowd of due fires.
const CLAIM_BATCH: usize = 8;

/// The most a node waits at random before claiming due fires (a third of
/// it between batches).
const CLAIM_SPREAD: Duration = Duration::from_millis(150);

/// A node waits this much longer before claiming for each run it has going
/// (up to [`CLAIM_LOAD_MAX`]): busier nodes claim fewer fires.
const CLAIM_PER_RUN: Duration = Duration::from_millis(5);

/// The most the load of a node delays its claims.
const CLAIM_LOAD_MAX: Duration = Duration::from_millis(200);

/// The job name prune runs are recorded under.
pub use crate::model::run::REPOSITORY_JOB;

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

/// What to do about `job`'s due fire `next_ms` at `now`, by its schedule.
fn plan_fire(config: &Config, job: &str, next_ms: i64, now: DateTime<Utc>) -> FirePlan {
    let (cron, missed) = if job == PRUNE_KEY {
        (config.daemon.prune.as_ref(), Missed::Coalesce)
    } else {
        match config.jobs.get(job) {
            Some(j) => (j.cron.as_ref(), j.missed),
            None => (None, Missed::Coalesce),
        }
    };
    let Some(cron) = cron else {
        // No schedule any more: nothing to fire until one is set again.
        return FirePlan::default();
    };
    let plan = schedule::plan(cron, schedule::from_ms(next_ms), now, missed);
    log_dropped(job, &plan);
    FirePlan {
        fire: plan.fire.map(|t| t.timestamp_millis()),
        handled: plan.handled.map(|t| t.timestamp_millis()),
        next: plan.next.map(|t| t.timestamp_millis()),
    }
}

impl Inner {
    pub(super) fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Claim what is due, sleep until the earliest next fire (at most
    /// [`CLAIM_EVERY`]), repeat until shutdown.
    pub(super) async fn timer_loop(self: Arc<Self>) {
        loop {
            self.fire_due(self.clock.now()).await;
            let earliest = self.lock().timer.earliest();
            let now = self.clock.now();
            let sleep = earliest
                .map_or(CLAIM_EVERY, |at| (at - now).to_std().unwrap_or_default())
                .min(CLAIM_EVERY);
            tokio::select! {
                () = tokio::time::sleep(sleep) => {}
                () = self.wake.notified() => {}
                () = self.stopping.cancelled() => return,
            }
        }
    }

    /// Every [`SWEEP_EVERY`], mark runs whose lease ran out `interrupted`.
    pub(super) async fn sweep_loop(self: Arc<Self>) {
        loop {
            tokio::select! {
                () = tokio::time::sleep(SWEEP_EVERY) => {}
                () = self.stopping.cancelled() => return,
            }
            self.sweep();
        }
    }

    /// Mark runs whose lease ran out (or whose process is gone) as
    /// `interrupted`, then take the interrupted runs of the jobs this node
    /// runs that no one has handled yet (whoever marked them: this sweep,
    /// another node's, `cairn runs`): count them, notify their webhooks, and
    /// apply their job's retries.
    pub(super) fn sweep(self: &Arc<Self>) {
        if let Err(e) = self.store.reconcile_interrupted() {
            tracing::warn!("cannot look for interrupted runs: {e}");
        }
        let jobs = self.lock().reportable.clone();
        let since = now_ms() - i64::try_from(REPORT_WINDOW.as_millis()).unwrap_or(i64::MAX / 2);
        let runs = match self.store.take_interrupted(&jobs, since) {
            Ok(runs) => runs,
            Err(e) => {
                tracing::warn!("cannot take interrupted runs: {e}");
                return;
            }
        };
        for run in runs {
            self.interrupted(run);
        }
    }

    /// A run found interrupted.
    fn interrupted(self: &Arc<Self>, run: RunRecord) {
        tracing::warn!(
            "job `{}`: run {} (attempt {}, node {}) interrupted: {}",
            run.job,
            run.id,
            run.attempt,
            run.node.as_deref().unwrap_or("?"),
            run.error.as_deref().unwrap_or("")
        );
        self.metrics.observe_run(&run);
        let runner = self.lock().runner.clone();
        let Some(config) = runner.config().jobs.get(&run.job).cloned() else {
            return;
        };
        self.notifier.notify(job_webhooks(&config), &run);
        let retry = run.kind == RunKind::Backup
            && run.trigger != Trigger::Cli
            && run.attempt < config.retries.attempts
            && self.node.can_run(&config)
            && !self.stopping.is_cancelled();
        if !retry {
            return;
        }
        let new = NewRun {
            job: run.job.clone(),
            kind: run.kind,
            trigger: run.trigger,
            attempt: run.attempt + 1,
            scheduled_at_ms: run.scheduled_at_ms,
            exclusive: config.concurrency.exclusive_for(run.kind),
        };
        let (id, cancel, finished) = self.add_active(&run.job);
        let inner = self.clone();
        self.tracker.spawn(async move {
            let job = new.job.clone();
            inner.run_attempts(runner, config, new, None, cancel).await;
            inner.forget_active(&job, id, &finished);
        });
    }

    /// Claim the fires due at `now` (of the jobs this node runs) and start
    /// them; advance the timers.
    async fn fire_due(self: &Arc<Self>, now: DateTime<Utc>) {
        let (runner, eligible) = {
            let mut state = self.lock();
            let runner = state.runner.clone();
            for (job, _) in state.timer.pop_due(now) {
                let cron = if job == PRUNE_KEY {
                    runner.config().daemon.prune.as_ref()
                } else {
                    runner.config().jobs.get(&job).and_then(|j| j.cron.as_ref())
                };
                let next = cron.and_then(|c| c.next_after(now));
                state.timer.set(&job, next);
            }
            (runner, state.eligible.clone())
        };
        if eligible.is_empty() {
            return;
        }
        // Nodes woken by the same due fires claim them in small batches,
        // each after a short random wait that grows with the runs the node
        // has going, so that a crowd of due fires spreads over the nodes
        // instead of all going to the fastest one.
        let mut started = 0_usize;
        let mut first = true;
        loop {
            let going = self.lock().active.values().map(Vec::len).sum::<usize>() + started;
            let spread = if first {
                CLAIM_SPREAD
            } else {
                CLAIM_SPREAD / 3
            };
            let load = CLAIM_PER_RUN
                .saturating_mul(u32::try_from(going).unwrap_or(u32::MAX))
                .min(CLAIM_LOAD_MAX);
            first = false;
            tokio::time::sleep(spread.mul_f64(jitter()) + load).await;
            if self.stopping.is_cancelled() {
                return;
            }
            let store = self.store.clone();
            let (config, jobs) = (runner.clone(), eligible.clone());
            let claimed = tokio::task::spawn_blocking(move || {
                store.claim_due(
                    &jobs,
                    now.timestamp_millis(),
                    CLAIM_BATCH,
                    &mut |job, next| plan_fire(config.config(), job, next, now),
                )
            })
            .await;
            let claimed = match claimed {
                Ok(Ok(claimed)) => claimed,
                Ok(Err(e)) => {
                    tracing::warn!("cannot claim due fires: {e}");
                    return;
                }
                Err(e) => {
                    tracing::error!("claiming due fires failed: {e}");
                    return;
                }
            };
            if claimed.is_empty() {
                // Nothing more due (or only paused jobs: the next wake, at
                // most CLAIM_EVERY away, handles what may be left).
                return;
            }
            started += claimed.len();
            for fire in claimed {
                self.start_fire(fire.job, fire.scheduled_at_ms, now);
            }
        }
    }

    /// Start claimed fire `job` of `scheduled_ms` in the background.
    fn start_fire(self: &Arc<Self>, job: String, scheduled_ms: i64, now: DateTime<Utc>) {
        let Some(at) = schedule::from_ms(scheduled_ms) else {
            return;
        };
        let inner = self.clone();
        if job == PRUNE_KEY {
            self.tracker.spawn(async move { inner.prune().await });
            return;
        }
        if (now - at).to_std().unwrap_or_default() > ON_TIME {
            tracing::info!("job `{job}`: running the fire of {at} missed while no daemon ran it");
        }
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

    /// Register a fire of `job` as active here: its id, cancel token and
    /// "finished" token.
    fn add_active(&self, job: &str) -> (u64, CancellationToken, CancellationToken) {
        let mut state = self.lock();
        let id = state.next_fire_id;
        state.next_fire_id += 1;
        let me = Active {
            id,
            cancel: self.hard_cancel.child_token(),
            finished: CancellationToken::new(),
        };
        let handle = (me.id, me.cancel.clone(), me.finished.clone());
        state.active.entry(job.to_owned()).or_default().push(me);
        handle
    }

    /// Fire `job`: decide by its concurrency policy (counting runs on other
    /// nodes), record the run as queued (or the fire as skipped), and run it
    /// with its retries in the background. Returns the first run's record.
    pub(super) async fn fire(
        self: Arc<Self>,
        job: &str,
        kind: RunKind,
        trigger: Trigger,
        scheduled: Option<DateTime<Utc>>,
    ) -> Result<RunRecord, FireError> {
        let runner = self.lock().runner.clone();
        let config = runner.config().job(job)?.clone();
        if !self.node.can_run(&config) {
            return Err(FireError::Conflict(format!(
                "job `{job}` needs node labels [{}]; this node (`{}`) has [{}]: start it on a \
                 node that has them",
                config.node_labels.join(","),
                self.node.name,
                self.node.labels_text()
            )));
        }
        // Under `replace`, runs of the job anywhere are replaced.
        let elsewhere = if kind == RunKind::Backup && config.concurrency == Concurrency::Replace {
            self.store.unfinished_runs(job)?
        } else {
            Vec::new()
        };
        let (me, replaced) = {
            let mut state = self.lock();
            let active = state.active.entry(job.to_owned()).or_default();
            let action = if kind == RunKind::Backup {
                config
                    .concurrency
                    .on_fire(active.len().max(elsewhere.len()))
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
            drop(state);
            let me = (action != FireAction::Skip).then(|| self.add_active(job));
            (me, replaced)
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
        if !replaced.is_empty() || !elsewhere.is_empty() {
            tracing::info!("job `{job}`: cancelling its running run (concurrency = \"replace\")");
        }
        for run in &elsewhere {
            if let Err(e) = self.store.request_cancel(&run.id) {
                tracing::warn!("job `{job}`: cannot ask for run {} to stop: {e}", run.id);
            }
        }
        for (cancel, finished) in replaced {
            cancel.cancel();
            finished.cancelled().await;
        }
        self.wait_finished(job, &elsewhere).await;
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
                .run_attempts(runner, config, new, Some(queued), cancel)
                .await;
            inner.forget_active(&job, id, &finished);
        });
        Ok(first)
    }

    /// Wait (at most [`REPLACE_WAIT`]) until `runs` of `job` have finished,
    /// wherever they run.
    async fn wait_finished(&self, job: &str, runs: &[RunRecord]) {
        if runs.is_empty() {
            return;
        }
        let deadline = tokio::time::Instant::now() + REPLACE_WAIT;
        loop {
            let going = runs
                .iter()
                .filter(|r| {
                    self.store
                        .run(&r.id)
                        .is_ok_and(|now| !now.status.is_finished())
                })
                .count();
            if going == 0 {
                return;
            }
            if tokio::time::Instant::now() >= deadline {
                tracing::warn!(
                    "job `{job}`: {going} replaced run(s) still going after {REPLACE_WAIT:?}"
                );
                return;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
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

    /// Run `queued` and, while it fails, its retries. With no `queued` run,
    /// start with the retry of `new.attempt` (after its backoff).
    async fn run_attempts(
        self: &Arc<Self>,
        runner: Arc<Runner>,
        config: JobConfig,
        mut new: NewRun,
        queued: Option<RunRecord>,
        cancel: CancellationToken,
    ) {
        let job = config.name.clone();
        let mut queued = queued;
        loop {
            let record = match queued.take() {
                Some(record) => record,
                None => {
                    let delay = config.retries.delay(new.attempt, jitter());
                    tracing::info!(
                        "job `{job}`: attempt {} of {} in {}",
                        new.attempt,
                        config.retries.attempts,
                        crate::units::format_duration(delay)
                    );
                    tokio::select! {
                        () = tokio::time::sleep(delay) => {}
                        () = cancel.cancelled() => return,
                        () = self.stopping.cancelled() => return,
                    }
                    match self.store.queue_run(&new) {
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
                    }
                }
            };
            let opts = RunOptions {
                cancel: cancel.clone(),
                trigger: new.trigger,
                attempt: new.attempt,
                scheduled_at_ms: new.scheduled_at_ms,
                queued: Some(record.clone()),
                ..RunOptions::default()
            };
            let report = match runner.run(&job, new.kind, opts).await {
                Ok(report) => report,
                Err(e) => {
                    tracing::error!("job `{job}`: run {} could not be run: {e:#}", record.id);
                    return;
                }
            };
            let run = report.run;
            if run.status == RunStatus::Interrupted {
                // Another node found its lease run out: it counted, notified
                // and retries it.
                return;
            }
            self.finished(&config, &run);
            match run.status {
                RunStatus::Succeeded if new.kind == RunKind::Backup => {
                    self.retention(&runner, &job, new.trigger).await;
                    return;
                }
                RunStatus::Failed if new.attempt < config.retries.attempts => {}
                _ => return,
            }
            tracing::info!("job `{job}`: run {} failed", run.id);
            new.attempt += 1;
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
    /// forget JOB` does, forget hooks included), recorded as a `forget` run
    /// (serialised with other forgets and prunes of the repository, here and
    /// on other nodes).
    async fn retention(&self, runner: &Runner, job: &str, trigger: Trigger) {
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
        let cancel = self.hard_cancel.child_token();
        match runner.forget_recorded(job, trigger, &cancel).await {
            Ok((run, outcome)) => {
                self.metrics.observe_run(&run);
                if let Ok(outcome) = &outcome {
                    let kept = u64::try_from(outcome.report.kept.len()).unwrap_or(u64::MAX);
                    self.metrics.set_snapshots(job, kept);
                    if !outcome.report.removed.is_empty() {
                        tracing::info!(
                            "job `{job}`: retention removed {} snapshot(s), kept {}",
                            outcome.report.removed.len(),
                            kept
                        );
                    }
                }
                if run.status != RunStatus::Succeeded {
                    tracing::error!(
                        "job `{job}`: retention failed (run {}): {}",
                        run.id,
                        run.error.as_deref().unwrap_or("")
                    );
                }
            }
            Err(e) => tracing::error!("job `{job}`: retention not run: {e:#}"),
        }
    }

    /// Prune the repository (on `[daemon] prune`'s schedule), recorded as a
    /// `prune` run of [`REPOSITORY_JOB`].
    async fn prune(&self) {
        let runner = self.lock().runner.clone();
        if runner.config().repository.is_none() {
            tracing::warn!("[daemon] prune is set, but there is no [repository] to prune");
            return;
        }
        let _serial = self.maintenance.lock().await;
        let cancel = self.hard_cancel.child_token();
        match runner.prune_recorded(Trigger::Schedule, &cancel).await {
            Ok((run, report)) => {
                self.metrics.observe_run(&run);
                match report {
                    Ok(p) => tracing::info!(
                        "repository pruned (run {}): {} pack(s), {} bytes removed",
                        run.id,
                        p.packs_removed,
                        p.bytes_removed
                    ),
                    Err(e) => tracing::error!("prune failed (run {}): {e:#}", run.id),
                }
            }
            Err(e) => tracing::error!("prune not run: {e:#}"),
        }
    }
}
