//! `cairn daemon`: fires jobs on their schedules, records every run, and
//! serves an HTTP API with Prometheus metrics.
//!
//! One timer task sleeps until the earliest next fire of all jobs (a sorted
//! set, [`schedule::Timer`]); an idle daemon with 10,000 scheduled jobs wakes
//! only when something is due (and once a minute to follow wall-clock
//! changes). A fire becomes runs as the job says:
//!
//! - **concurrency** (`forbid`, `allow`, `replace`): decided in memory, and
//!   enforced by the state store for exclusive runs (a unique index on the
//!   job's queued or running runs), so a `cairn backup` in another process and
//!   the daemon never back up the same job at once: the loser is refused
//!   (`cairn backup`) or recorded `skipped` (a fire).
//! - **retries**: a failed run is tried again after an exponential backoff
//!   with jitter, capped; every attempt is its own run with its `attempt`.
//! - **retention**: after a successful backup of a job with `retention`,
//!   its old snapshots are forgotten (as `cairn forget` does); `prune` runs on
//!   `[daemon] prune`'s schedule. Both hold the repository's exclusive lock
//!   and are serialised within the daemon.
//! - **missed fires** (daemon down, machine suspended): `coalesce` runs once,
//!   `skip` waits for the next fire. The last scheduled time is kept in the
//!   state store, so this holds across restarts.
//! - **pause**: a paused job's fires are neither run nor recorded (its
//!   schedule keeps advancing; resuming does not catch up). A paused job can
//!   still be started through the API.
//!
//! **Several daemons** may share one state store (PostgreSQL, or one SQLite
//! file on one host). Each is a [`Node`] with a name and labels. Every node
//! keeps the timers of the jobs it can run (a job's `node-labels` must be
//! among the node's labels) and, when one is due, and every
//! [`CLAIM_EVERY`] in any case, claims the due fires from the store
//! ([`StateStore::claim_due`]): each `(job, scheduled time)` is entered in
//! the fire ledger once, so exactly one node runs it, and a node that is
//! gone is replaced by the next one to look. Runs hold leases renewed while
//! they go ([`crate::runner::lease`]); every [`SWEEP_EVERY`] each node marks
//! runs whose lease ran out `interrupted`, counts and notifies them, and
//! applies the job's retries. `replace` cancels the running run on
//! whichever node holds it (a cancel request in the store); retention and
//! prune take a lock in the store per repository. Forget and prune are
//! recorded as runs (kinds `forget` and `prune`).
//!
//! SIGTERM / SIGINT stop new fires, wait up to `shutdown-grace` for running
//! runs, then cancel them (recorded `cancelled`; pipelines' `finally` steps
//! run). SIGHUP reloads the configuration: it is validated first and kept as
//! it was on error; running runs go on with the configuration they started
//! with.

pub mod api;
mod dashboard;
mod fire;
pub mod metrics;
pub mod notify;
pub mod schedule;
pub mod view;

use std::collections::{BTreeSet, HashMap, HashSet};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::{self, Config, JobConfig};
use crate::model::Webhook;
use crate::runner::Runner;
use crate::runtime::Runtime;
use crate::state::{JobState, RunKind, RunRecord, StateError, StateStore, Trigger};
use schedule::{Clock, Schedule, SystemClock, Timer};

/// Timer key of the repository's prune schedule (job names cannot start with `(`).
const PRUNE_KEY: &str = "(prune)";

/// The timer wakes at least this often and claims what is due: fires another
/// node should have claimed (it stopped) are taken over within this time.
pub const CLAIM_EVERY: Duration = Duration::from_secs(5);

/// How often a node looks for runs whose lease ran out.
pub const SWEEP_EVERY: Duration = Duration::from_secs(5);

/// How long a shutdown waits for cancelled runs to record themselves.
const CANCEL_WAIT: Duration = Duration::from_secs(60);

/// Why a trigger through the API was refused.
#[derive(Debug, thiserror::Error)]
pub enum FireError {
    /// No such job.
    #[error(transparent)]
    NotFound(#[from] config::UnknownJob),
    /// The job is running and its policy forbids another run.
    #[error("{0}")]
    Conflict(String),
    /// The state store failed.
    #[error(transparent)]
    Store(#[from] StateError),
}

/// This daemon as one node of several sharing a state store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    /// Its name, recorded on the runs it runs (`--node`, default the host name).
    pub name: String,
    /// Its labels (`--labels`): a job with `node-labels` runs only on nodes
    /// that have them all.
    pub labels: BTreeSet<String>,
}

impl Node {
    /// A node named `name` with `labels` (words like `has-data`, or
    /// `key=value` like `site=paris`).
    ///
    /// # Errors
    /// A name or label that is empty or has characters other than letters,
    /// digits, `-`, `_` and `.` (and one `=` in a label).
    pub fn new(name: &str, labels: impl IntoIterator<Item = String>) -> Result<Self, String> {
        crate::model::check_node_name(name)?;
        let labels: BTreeSet<String> = labels.into_iter().collect();
        for label in &labels {
            crate::model::check_node_label(label)?;
        }
        Ok(Self {
            name: name.to_owned(),
            labels,
        })
    }

    /// This host, without labels.
    #[must_use]
    pub fn this_host() -> Self {
        Self {
            name: crate::sys::hostname(),
            labels: BTreeSet::new(),
        }
    }

    /// Whether this node may run `job` (it has every label the job needs).
    #[must_use]
    pub fn can_run(&self, job: &JobConfig) -> bool {
        job.node_labels.iter().all(|l| self.labels.contains(l))
    }

    /// Its labels as `a,b`, for messages and metrics.
    #[must_use]
    pub fn labels_text(&self) -> String {
        self.labels.iter().cloned().collect::<Vec<_>>().join(",")
    }
}

/// What the daemon knows about a job, for the API.
#[derive(Debug, Clone)]
pub struct JobInfo {
    /// Job name.
    pub name: String,
    /// Task label (`builtin:directory`, a file …).
    pub task: String,
    /// Cron schedule as written.
    pub schedule: Option<String>,
    /// Time zone of the schedule.
    pub timezone: Option<String>,
    /// Next fire, UTC.
    pub next_fire: Option<DateTime<Utc>>,
    /// Whether fires are paused.
    pub paused: bool,
    /// Runs going now.
    pub running: usize,
}

/// A fire going on (its runs and retries).
struct Active {
    id: u64,
    /// Cancels its current run and its retries.
    cancel: CancellationToken,
    /// Cancelled when the fire is over (all its runs recorded).
    finished: CancellationToken,
}

/// What the daemon holds that a reload changes.
struct State {
    runner: Arc<Runner>,
    timer: Timer,
    paused: HashSet<String>,
    active: HashMap<String, Vec<Active>>,
    next_fire_id: u64,
    /// The scheduled jobs this node claims fires of (and [`PRUNE_KEY`]).
    eligible: Arc<Vec<String>>,
    /// The jobs whose interrupted runs this node takes to report and retry:
    /// every job it can run, and [`fire::REPOSITORY_JOB`].
    reportable: Arc<Vec<String>>,
}

/// The daemon's shared core.
struct Inner {
    node: Node,
    config_path: Option<PathBuf>,
    store: Arc<dyn StateStore>,
    runtime: Runtime,
    clock: Arc<dyn Clock>,
    state: Mutex<State>,
    /// Wakes the timer when next fires change.
    wake: Notify,
    /// Cancelled at shutdown: no new fires.
    stopping: CancellationToken,
    /// Cancelled after the grace period: running runs stop.
    hard_cancel: CancellationToken,
    tracker: TaskTracker,
    /// Serialises retention and prune of the repository within the daemon
    /// (a lock in the state store serialises them across nodes).
    maintenance: tokio::sync::Mutex<()>,
    metrics: Arc<metrics::Metrics>,
    notifier: notify::Notifier,
}

/// The running daemon. Cheap to clone.
#[derive(Clone)]
pub struct Daemon {
    inner: Arc<Inner>,
}

impl Daemon {
    /// A daemon for `config` (read from `config_path`, re-read on reload)
    /// on this host, without node labels; see [`Daemon::open_node`].
    ///
    /// # Errors
    /// When the state store cannot be opened or the runtime not created.
    pub fn open(config: Config, config_path: Option<PathBuf>) -> anyhow::Result<Self> {
        Self::open_node(config, config_path, Node::this_host())
    }

    /// A daemon for `config` as `node`, opening its state store and computing
    /// every job's next fire. Runs left by processes that stopped become
    /// `interrupted`, and fires missed while no daemon ran are started (under
    /// `missed = "coalesce"`), once [`Daemon::start`] runs.
    ///
    /// # Errors
    /// When the state store cannot be opened or the runtime not created.
    pub fn open_node(
        config: Config,
        config_path: Option<PathBuf>,
        node: Node,
    ) -> anyhow::Result<Self> {
        let store = crate::state::open(&config.state_location(), &node.name)?;
        let runtime = Runtime::new(Some(&config.cache_dir))?;
        Self::with_node_parts(
            config,
            config_path,
            store,
            runtime,
            Arc::new(SystemClock),
            node,
        )
    }

    /// A daemon from parts (tests inject the store and the clock).
    ///
    /// # Errors
    /// When the state store cannot be read.
    pub fn with_parts(
        config: Config,
        config_path: Option<PathBuf>,
        store: Arc<dyn StateStore>,
        runtime: Runtime,
        clock: Arc<dyn Clock>,
    ) -> anyhow::Result<Self> {
        let node = Node {
            name: store.node().to_owned(),
            labels: BTreeSet::new(),
        };
        Self::with_node_parts(config, config_path, store, runtime, clock, node)
    }

    /// A daemon from parts, as `node`.
    ///
    /// # Errors
    /// When the state store cannot be read.
    pub fn with_node_parts(
        config: Config,
        config_path: Option<PathBuf>,
        store: Arc<dyn StateStore>,
        runtime: Runtime,
        clock: Arc<dyn Clock>,
        node: Node,
    ) -> anyhow::Result<Self> {
        let metrics = Arc::new(metrics::Metrics::new());
        metrics.set_node(&node.name, &node.labels_text());
        if let Err(e) = metrics.seed(store.as_ref(), config.jobs.keys().map(String::as_str)) {
            tracing::warn!("cannot seed metrics from the run history: {e}");
        }
        let runner = Arc::new(Runner::new(config, runtime.clone(), store.clone()));
        let (eligible, reportable) = node_jobs(&runner, &node);
        let inner = Arc::new(Inner {
            node,
            config_path,
            store,
            runtime,
            clock,
            state: Mutex::new(State {
                runner,
                timer: Timer::default(),
                paused: HashSet::new(),
                active: HashMap::new(),
                next_fire_id: 0,
                eligible,
                reportable,
            }),
            wake: Notify::new(),
            stopping: CancellationToken::new(),
            hard_cancel: CancellationToken::new(),
            tracker: TaskTracker::new(),
            maintenance: tokio::sync::Mutex::new(()),
            notifier: notify::Notifier::new(metrics.clone())?,
            metrics,
        });
        Ok(Self { inner })
    }

    /// The state store.
    #[must_use]
    pub fn store(&self) -> Arc<dyn StateStore> {
        self.inner.store.clone()
    }

    /// The metrics.
    #[must_use]
    pub fn metrics(&self) -> Arc<metrics::Metrics> {
        self.inner.metrics.clone()
    }

    /// The configuration in effect.
    #[must_use]
    pub fn config(&self) -> Arc<Runner> {
        self.inner.lock().runner.clone()
    }

    /// This daemon's node.
    #[must_use]
    pub fn node(&self) -> &Node {
        &self.inner.node
    }

    /// Record every job's schedule in the store (a new or changed one fires
    /// from now on; an unchanged one keeps its next fire, so fires missed
    /// while no daemon ran are found), handle runs left by processes that
    /// stopped, and start the timer and sweep tasks, which claim due fires
    /// at once. Returns at once.
    ///
    /// # Errors
    /// When the state store cannot be read or written.
    pub fn start(&self) -> anyhow::Result<()> {
        let states = self.inner.store.job_states()?;
        let now = self.inner.clock.now();
        let mut marks = Vec::new();
        {
            let mut state = self.inner.lock();
            state.paused = states
                .iter()
                .filter(|(_, s)| s.paused)
                .map(|(job, _)| job.clone())
                .collect();
            let runner = state.runner.clone();
            let crons = runner
                .config()
                .jobs
                .values()
                .filter_map(|j| j.cron.as_ref().map(|c| (j.name.as_str(), c)))
                .chain(
                    runner
                        .config()
                        .daemon
                        .prune
                        .as_ref()
                        .map(|p| (PRUNE_KEY, p)),
                );
            for (job, cron) in crons {
                let key = schedule_key(cron);
                if let Some(next) = schedule_mark(cron, &key, states.get(job), now) {
                    marks.push((job.to_owned(), key, next.map(|t| t.timestamp_millis())));
                }
                state.timer.set(job, cron.next_after(now));
            }
        }
        self.inner.store.set_schedules(&marks)?;
        self.inner.sweep();
        let inner = self.inner.clone();
        tokio::spawn(async move { inner.timer_loop().await });
        let inner = self.inner.clone();
        tokio::spawn(async move { inner.sweep_loop().await });
        Ok(())
    }

    /// Start a run of `job` now (the API's trigger): the run is recorded as
    /// queued and returned; it goes on in the background. A paused job runs
    /// too.
    ///
    /// # Errors
    /// [`FireError::NotFound`] for an unknown job, [`FireError::Conflict`]
    /// when the job runs and its policy forbids another run (in this process
    /// or another one).
    pub async fn trigger(&self, job: &str, kind: RunKind) -> Result<RunRecord, FireError> {
        self.inner.clone().fire(job, kind, Trigger::Api, None).await
    }

    /// Pause or resume `job` (persisted).
    ///
    /// # Errors
    /// Unknown job, or the store failing.
    pub fn set_paused(&self, job: &str, paused: bool) -> Result<(), FireError> {
        self.inner.lock().runner.config().job(job)?;
        self.inner.store.set_paused(job, paused)?;
        let mut state = self.inner.lock();
        if paused {
            state.paused.insert(job.to_owned());
        } else {
            state.paused.remove(job);
        }
        Ok(())
    }

    /// Every job with its schedule state, sorted by name.
    #[must_use]
    pub fn jobs(&self) -> Vec<JobInfo> {
        let state = self.inner.lock();
        state
            .runner
            .config()
            .jobs
            .values()
            .map(|job| JobInfo {
                name: job.name.clone(),
                task: job.task.to_string(),
                schedule: job.schedule.clone(),
                timezone: job.cron.as_ref().map(|c| c.timezone().name().to_owned()),
                next_fire: state.timer.next_of(&job.name),
                paused: state.paused.contains(&job.name),
                running: state.active.get(&job.name).map_or(0, Vec::len),
            })
            .collect()
    }

    /// Re-read the configuration file. On error the configuration in effect
    /// is kept and the error returned (and logged). New jobs are scheduled,
    /// removed ones unscheduled, jobs whose schedule changed rescheduled from
    /// now; running runs are not touched.
    ///
    /// # Errors
    /// The configuration's problems, or no file to read.
    pub fn reload(&self) -> anyhow::Result<()> {
        let path = self
            .inner
            .config_path
            .clone()
            .ok_or_else(|| anyhow::anyhow!("the daemon was not started from a file"))?;
        let config = match config::load(&path) {
            Ok(c) => c,
            Err(e) => {
                tracing::error!("reload failed, keeping the configuration in effect: {e}");
                return Err(e.into());
            }
        };
        let now = self.inner.clock.now();
        let runner = Arc::new(Runner::new(
            config,
            self.inner.runtime.clone(),
            self.inner.store.clone(),
        ));
        let mut marks = Vec::new();
        let (added, removed, changed) = {
            let mut state = self.inner.lock();
            let old = state.runner.clone();
            let (mut added, mut removed, mut changed) = (0, 0, 0);
            for job in old.config().jobs.values() {
                if !runner.config().jobs.contains_key(&job.name) {
                    state.timer.set(&job.name, None);
                    removed += 1;
                }
            }
            for job in runner.config().jobs.values() {
                let before = old.config().jobs.get(&job.name);
                let same = before.is_some_and(|b| b.cron == job.cron);
                if same {
                    continue;
                }
                if before.is_some() {
                    changed += 1;
                } else {
                    added += 1;
                }
                let next = job.cron.as_ref().and_then(|c| c.next_after(now));
                state.timer.set(&job.name, next);
                if let Some(cron) = &job.cron {
                    marks.push((
                        job.name.clone(),
                        schedule_key(cron),
                        next.map(|t| t.timestamp_millis()),
                    ));
                }
            }
            let prune = runner.config().daemon.prune.as_ref();
            if prune != old.config().daemon.prune.as_ref() {
                let next = prune.and_then(|p| p.next_after(now));
                state.timer.set(PRUNE_KEY, next);
                if let Some(p) = prune {
                    marks.push((
                        PRUNE_KEY.to_owned(),
                        schedule_key(p),
                        next.map(|t| t.timestamp_millis()),
                    ));
                }
            }
            (state.eligible, state.reportable) = node_jobs(&runner, &self.inner.node);
            state.runner = runner.clone();
            (added, removed, changed)
        };
        if let Err(e) = self.inner.store.set_schedules(&marks) {
            tracing::warn!("cannot record next fires: {e}");
        }
        self.inner.wake.notify_one();
        tracing::info!(
            "configuration reloaded from {}: {} jobs ({added} added, {removed} removed, {changed} rescheduled)",
            path.display(),
            runner.config().jobs.len()
        );
        Ok(())
    }

    /// Stop: no new fires; wait up to `grace` for running runs, then cancel
    /// them and wait for them to be recorded (`cancelled`).
    pub async fn shutdown(&self, grace: Duration) {
        self.inner.stopping.cancel();
        self.inner.tracker.close();
        if tokio::time::timeout(grace, self.inner.tracker.wait())
            .await
            .is_err()
        {
            let running: usize = self.inner.lock().active.values().map(Vec::len).sum();
            tracing::warn!(
                "{running} run(s) still going after the shutdown grace of {}; cancelling them",
                crate::units::format_duration(grace)
            );
            self.inner.hard_cancel.cancel();
            if tokio::time::timeout(CANCEL_WAIT, self.inner.tracker.wait())
                .await
                .is_err()
            {
                tracing::error!("cancelled runs did not stop within {CANCEL_WAIT:?}; exiting");
            }
        }
        self.inner.notifier.flush(Duration::from_secs(10)).await;
    }
}

#[async_trait::async_trait]
impl api::DaemonControl for Daemon {
    fn jobs(&self) -> Vec<api::JobView> {
        let store = self.inner.store.clone();
        Daemon::jobs(self)
            .into_iter()
            .map(|j| {
                let mut view = job_view(j);
                view.last_run = store
                    .runs(Some(&view.name), 1)
                    .ok()
                    .and_then(|mut r| r.pop());
                view
            })
            .collect()
    }

    fn jobs_brief(&self) -> Vec<api::JobView> {
        Daemon::jobs(self).into_iter().map(job_view).collect()
    }

    fn job(&self, name: &str) -> Option<api::JobView> {
        let info = Daemon::jobs(self).into_iter().find(|j| j.name == name)?;
        let mut view = job_view(info);
        view.last_run = self
            .inner
            .store
            .runs(Some(name), 1)
            .ok()
            .and_then(|mut r| r.pop());
        Some(view)
    }

    fn store(&self) -> Arc<dyn StateStore> {
        self.inner.store.clone()
    }

    async fn trigger(&self, job: &str, kind: RunKind) -> Result<RunRecord, api::ControlError> {
        Daemon::trigger(self, job, kind).await.map_err(|e| match e {
            FireError::NotFound(_) => api::ControlError::NotFound(job.to_owned()),
            FireError::Conflict(message) => api::ControlError::Conflict(message),
            FireError::Store(e) => api::ControlError::Other(e.into()),
        })
    }

    fn set_paused(&self, job: &str, paused: bool) -> Result<(), api::ControlError> {
        Daemon::set_paused(self, job, paused).map_err(|e| match e {
            FireError::NotFound(_) => api::ControlError::NotFound(job.to_owned()),
            FireError::Conflict(message) => api::ControlError::Conflict(message),
            FireError::Store(e) => api::ControlError::Other(e.into()),
        })
    }

    fn metrics(&self) -> Arc<metrics::Metrics> {
        self.inner.metrics.clone()
    }

    async fn snapshots(
        &self,
        job: &str,
    ) -> Result<Vec<crate::repository::SnapshotInfo>, api::ControlError> {
        let runner = self.config();
        if runner.config().job(job).is_err() {
            return Err(api::ControlError::NotFound(job.to_owned()));
        }
        if runner.config().repository.is_none() {
            return Ok(Vec::new());
        }
        let repo = match runner.repository(false).await {
            Ok(repo) => repo,
            // No backup has created it yet: nothing to list.
            Err(e)
                if matches!(
                    e.downcast_ref::<crate::repository::RepoError>(),
                    Some(crate::repository::RepoError::NotInitialised { .. })
                ) =>
            {
                return Ok(Vec::new());
            }
            Err(e) => return Err(api::ControlError::Other(e)),
        };
        let job = job.to_owned();
        tokio::task::spawn_blocking(move || repo.snapshots(Some(&job)))
            .await
            .map_err(|e| api::ControlError::Other(e.into()))?
            .map_err(|e| api::ControlError::Other(e.into()))
    }
}

/// Serve the HTTP API for `daemon` on `listen` until `stop` is cancelled.
/// Logs `HTTP API listening on ADDR` once bound (with port 0, the port
/// picked).
///
/// # Errors
/// A non-loopback address without a token, or an address that cannot be bound.
pub async fn serve_api(
    daemon: Daemon,
    listen: SocketAddr,
    token: Option<String>,
    stop: CancellationToken,
) -> anyhow::Result<()> {
    let cfg = api::ApiConfig { listen, token };
    let done = stop.clone();
    let bound = api::serve(cfg, Arc::new(daemon), async move { done.cancelled().await }).await?;
    tracing::info!("HTTP API listening on {bound}");
    stop.cancelled().await;
    Ok(())
}

/// A job as the API shows it, without its last run.
fn job_view(j: JobInfo) -> api::JobView {
    api::JobView {
        last_run: None,
        name: j.name,
        task: j.task,
        schedule: j.schedule,
        timezone: j.timezone,
        next_fire: j.next_fire.map(|t| t.timestamp_millis()),
        paused: j.paused,
    }
}

/// The text a job's next fire is computed for: its cron and time zone.
fn schedule_key(cron: &Schedule) -> String {
    format!("{} {}", cron.expr(), cron.timezone().name())
}

/// The next fire to record for a schedule at start-up, if the store's must
/// change: a job it does not know fires from now on; one whose schedule
/// changed too; one recorded before schedules were (an older cairn) goes on
/// from its last scheduled time, so its missed fires are found; one whose
/// schedule is unchanged keeps its mark.
fn schedule_mark(
    cron: &Schedule,
    key: &str,
    stored: Option<&JobState>,
    now: DateTime<Utc>,
) -> Option<Option<DateTime<Utc>>> {
    match stored {
        None => Some(cron.next_after(now)),
        Some(s) if s.schedule.as_deref() == Some(key) => None,
        Some(s) if s.schedule.is_none() => {
            let last = s.last_scheduled_ms.and_then(schedule::from_ms);
            Some(schedule::first_pending(cron, last, now))
        }
        Some(_) => Some(cron.next_after(now)),
    }
}

/// Of `runner`'s configuration, for `node`: the scheduled jobs it claims
/// fires of (and the prune schedule, if there is one), and the jobs whose
/// interrupted runs it reports (every job it can run, and the repository's
/// prune runs).
fn node_jobs(runner: &Runner, node: &Node) -> (Arc<Vec<String>>, Arc<Vec<String>>) {
    let config = runner.config();
    let runnable: Vec<&JobConfig> = config.jobs.values().filter(|j| node.can_run(j)).collect();
    let mut eligible: Vec<String> = runnable
        .iter()
        .filter(|j| j.cron.is_some())
        .map(|j| j.name.clone())
        .collect();
    if config.daemon.prune.is_some() && config.repository.is_some() {
        eligible.push(PRUNE_KEY.to_owned());
    }
    let mut reportable: Vec<String> = runnable.iter().map(|j| j.name.clone()).collect();
    reportable.push(fire::REPOSITORY_JOB.to_owned());
    (Arc::new(eligible), Arc::new(reportable))
}

/// The job's webhooks (`notify`).
fn job_webhooks(config: &JobConfig) -> &[Webhook] {
    &config.notify
}

/// A number in `[0, 1)` that differs between calls (retry jitter).
fn jitter() -> f64 {
    use std::hash::{BuildHasher as _, Hasher as _};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos(),
    );
    // 53 random bits make an f64 in [0, 1).
    (h.finish() >> 11) as f64 / (1_u64 << 53) as f64
}

/// The API token from `[daemon] token-env` / `token-file`, if configured.
///
/// # Errors
/// When the variable is unset, the file unreadable, or the token empty.
pub fn api_token(config: &Config) -> anyhow::Result<Option<String>> {
    let Some(source) = &config.daemon.token else {
        return Ok(None);
    };
    let token = source
        .read()
        .map_err(|e| anyhow::anyhow!("cannot read the API token ([daemon]): {e}"))?;
    anyhow::ensure!(!token.is_empty(), "the API token is empty");
    Ok(Some(token))
}

/// Where the daemon listens and with what token, checked: a non-loopback
/// address needs a token.
///
/// # Errors
/// A non-loopback address without a token.
pub fn check_listen(listen: SocketAddr, token: Option<&str>) -> Result<(), String> {
    if !listen.ip().is_loopback() && token.is_none() {
        return Err(format!(
            "refusing to serve the API on {listen} without a token: anyone who can reach it \
             could start and pause jobs. Set `token-env` or `token-file` in [daemon], or \
             listen on a loopback address (e.g. 127.0.0.1:{})",
            listen.port()
        ));
    }
    Ok(())
}
