//! Run history and per-job key/value state, behind the [`StateStore`] trait.
//!
//! SQLite (embedded, WAL) is the default implementation ([`sqlite::SqliteStore`]);
//! PostgreSQL ([`postgres::PostgresStore`]) lets several daemons share one
//! database. Both bring their schema up to date when opened (versioned
//! migrations) and pass the same conformance suite (`conformance.rs`).
//!
//! What several nodes share through the store:
//!
//! - **the fire ledger**: [`StateStore::claim_due`] takes the due schedules
//!   (`FOR UPDATE SKIP LOCKED` on PostgreSQL) and records each fire under its
//!   `(job, scheduled_at)` key, once: a fire another node claimed is not
//!   claimed again;
//! - **leases**: a queued or running run holds a lease ([`LEASE`]) that its
//!   process renews ([`StateStore::renew_lease`]); a run whose lease ran out
//!   is `interrupted` by whichever node looks next
//!   ([`StateStore::reconcile_interrupted`]);
//! - **cancel requests** ([`StateStore::request_cancel`]), seen by the node
//!   holding the run when it renews the lease;
//! - **interrupted runs to report**: whoever marks a run `interrupted`, one
//!   daemon takes it ([`StateStore::take_interrupted`]) to count, notify and
//!   retry it;
//! - **named locks** with a time to live ([`StateStore::try_lock`]), which
//!   serialise retention and prune of a repository.

pub mod postgres;
pub mod sqlite;

#[cfg(test)]
mod conformance;

use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;

use crate::model::StateLocation;
pub use crate::model::run::{REPOSITORY_JOB, RunKind, RunStatus, Trigger};

/// How long a queued or running run's lease lasts without renewal. A node
/// that stops renewing (killed, cut off) loses its runs to `interrupted`
/// after this time.
pub const LEASE: Duration = Duration::from_secs(15);

/// How often the process running a run renews its lease (and sees a request
/// to cancel it).
pub const RENEW_EVERY: Duration = Duration::from_secs(2);

/// Error recorded on runs found `running` by a process that stopped (its
/// lease ran out, or its process is gone).
pub const INTERRUPTED_ERROR: &str = "the process running it stopped before it finished";

/// Error recorded on runs found `queued` by a process that stopped (its lease
/// ran out, or its process is gone) before it started them: they ran nothing.
pub const QUEUED_INTERRUPTED_ERROR: &str = "the process that queued it stopped before starting it";

/// A fire in the ledger with no run this long after its claim was claimed by
/// a node that stopped before recording the run: it is recorded
/// `interrupted` ([`StateStore::reconcile_interrupted`]). Longer than a
/// `replace` fire may wait before recording its run.
pub const ORPHAN_AFTER: Duration = Duration::from_secs(2 * LEASE.as_secs());

/// How far back claimed fires are checked for a missing run.
pub const ORPHAN_WINDOW: Duration = Duration::from_secs(3600);

/// How far back a daemon takes interrupted runs to count, notify and retry
/// ([`StateStore::take_interrupted`]): a run interrupted longer ago while no
/// daemon ran is left as it is.
pub const REPORT_WINDOW: Duration = Duration::from_secs(3600);

/// Error recorded on a claimed fire whose node stopped before starting it.
pub const ORPHAN_ERROR: &str = "the node that claimed this fire stopped before starting it";

/// `(claimed before, claimed since)` in ms since the epoch: the fires checked
/// for a missing run at `now_ms`.
pub(crate) fn orphan_range(now_ms: i64) -> (i64, i64) {
    let ms = |d: Duration| i64::try_from(d.as_millis()).unwrap_or(i64::MAX);
    (now_ms - ms(ORPHAN_AFTER), now_ms - ms(ORPHAN_WINDOW))
}

/// Open the state store at `location`, bringing its schema up to date.
/// `node` is the name recorded on the runs this process starts (a daemon's
/// `--node`, else the host name).
///
/// # Errors
/// [`StateError::Open`] / [`StateError::Connect`] when the database cannot be
/// reached, created or migrated, or its password not read.
pub fn open(location: &StateLocation, node: &str) -> Result<Arc<dyn StateStore>, StateError> {
    Ok(match location {
        StateLocation::Sqlite(path) => Arc::new(sqlite::SqliteStore::open(path)?.with_node(node)),
        StateLocation::Postgres(settings) => {
            Arc::new(postgres::PostgresStore::open(settings)?.with_node(node))
        }
    })
}

/// What a lease renewal found ([`StateStore::renew_lease`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LeaseState {
    /// The run is still this process's: go on.
    Held,
    /// Someone asked for the run to be cancelled (`concurrency = "replace"`
    /// on another node): stop it.
    CancelRequested,
    /// The run is no longer queued or running (another node found its lease
    /// run out and marked it `interrupted`): stop it, its outcome is decided.
    Lost,
}

/// What to do about one due schedule ([`StateStore::claim_due`]'s planner).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct FirePlan {
    /// Fire for this schedule time (ms since the Unix epoch, UTC), if anything.
    pub fire: Option<i64>,
    /// The latest schedule time handled now (fired or not).
    pub handled: Option<i64>,
    /// The next schedule time.
    pub next: Option<i64>,
}

/// A fire this node claimed: it, and no other node, runs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimedFire {
    /// The job.
    pub job: String,
    /// The schedule time (ms since the Unix epoch, UTC).
    pub scheduled_at_ms: i64,
}

/// A run about to be recorded ([`StateStore::queue_run`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewRun {
    /// Job name.
    pub job: String,
    /// Backup or restore.
    pub kind: RunKind,
    /// What started it.
    pub trigger: Trigger,
    /// 1 for the first attempt of a fire, 2 for its first retry …
    pub attempt: u32,
    /// The schedule time it fires for (milliseconds since the Unix epoch, UTC), if scheduled.
    pub scheduled_at_ms: Option<i64>,
    /// Whether it must be the only queued or running exclusive run of its job.
    /// Enforced by the store (a unique index), so it holds across processes.
    pub exclusive: bool,
}

impl NewRun {
    /// A first attempt of `kind` of `job`, started by `trigger`, not exclusive.
    #[must_use]
    pub fn new(job: &str, kind: RunKind, trigger: Trigger) -> Self {
        Self {
            job: job.to_owned(),
            kind,
            trigger,
            attempt: 1,
            scheduled_at_ms: None,
            exclusive: false,
        }
    }
}

/// What the store keeps about a job between daemon runs.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct JobState {
    /// Paused jobs do not fire on their schedule.
    pub paused: bool,
    /// The last schedule time that fired (ms since the Unix epoch, UTC).
    pub last_scheduled_ms: Option<i64>,
    /// The next schedule time (ms since the Unix epoch, UTC), as last computed.
    pub next_fire_ms: Option<i64>,
    /// The schedule (cron and time zone) `next_fire_ms` was computed for, as
    /// given to [`StateStore::set_schedules`].
    pub schedule: Option<String>,
}

/// Crockford's base32 alphabet (no I, L, O, U), as used by ULIDs.
const CROCKFORD: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";

/// A fresh run id: a 26-character ULID (48-bit millisecond timestamp, then 80
/// random bits, in Crockford base32).
///
/// Ids sort by creation time as plain strings. Within one process they are
/// strictly increasing (several ids in the same millisecond increment the
/// random part); across processes they are unique thanks to the random bits.
#[must_use]
pub fn new_run_id() -> String {
    use std::sync::{Mutex, PoisonError};

    /// Last (millisecond, random part) handed out by this process.
    static LAST: Mutex<(u64, u128)> = Mutex::new((0, 0));
    const RANDOM_MASK: u128 = (1 << 80) - 1;
    const TIME_MASK: u64 = (1 << 48) - 1;

    let now = u64::try_from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_millis(),
    )
    .unwrap_or(TIME_MASK);

    let (ms, random) = {
        let mut last = LAST.lock().unwrap_or_else(PoisonError::into_inner);
        let next = if now > last.0 {
            (now, random_bits() & RANDOM_MASK)
        } else if last.1 < RANDOM_MASK {
            // Same millisecond (or the clock went back): stay monotonic.
            (last.0, last.1 + 1)
        } else {
            (last.0 + 1, random_bits() & RANDOM_MASK)
        };
        *last = next;
        next
    };

    let value = (u128::from(ms & TIME_MASK) << 80) | random;
    (0..26)
        .map(|i| {
            // 26 × 5 = 130 bits; the first character carries the top 3 bits.
            let digit = (value >> (5 * (25 - i))) & 31;
            char::from(CROCKFORD[digit as usize])
        })
        .collect()
}

/// 128 bits that differ between calls and between processes: std's
/// `RandomState` is keyed from the operating system's random source, and the
/// time, process id and a counter are mixed in.
fn random_bits() -> u128 {
    use std::hash::{BuildHasher, Hasher};
    use std::sync::atomic::{AtomicU64, Ordering};

    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let count = COUNTER.fetch_add(1, Ordering::Relaxed);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos();
    let half = |salt: u64| {
        let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
        hasher.write_u64(salt);
        hasher.write_u128(nanos);
        hasher.write_u32(std::process::id());
        hasher.write_u64(count);
        hasher.finish()
    };
    (u128::from(half(0)) << 64) | u128::from(half(1))
}

/// One run as recorded in the store.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RunRecord {
    /// Unique id (a ULID-like sortable string).
    pub id: String,
    /// Job name.
    pub job: String,
    /// Backup or restore.
    pub kind: RunKind,
    /// Current status.
    pub status: RunStatus,
    /// Start time, milliseconds since the Unix epoch (while `queued`: when it
    /// was queued).
    pub started_at_ms: i64,
    /// End time, if finished.
    pub finished_at_ms: Option<i64>,
    /// Error message (the whole chain) for a failed run.
    pub error: Option<String>,
    /// Snapshot id written (backup) or read (restore).
    pub snapshot_id: Option<String>,
    /// Bytes written or restored.
    pub bytes: u64,
    /// The task's JSON result, if any.
    pub result: Option<String>,
    /// 1 for the first attempt of a fire, 2 for its first retry …
    pub attempt: u32,
    /// What started it.
    pub trigger: Trigger,
    /// The schedule time it fired for (ms since the Unix epoch, UTC), if scheduled.
    pub scheduled_at_ms: Option<i64>,
    /// The node that ran it (a daemon's `--node`, else the host name).
    pub node: Option<String>,
}

/// One log line of a run.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LogLine {
    /// Time, milliseconds since the Unix epoch.
    pub at_ms: i64,
    /// `trace`, `debug`, `info`, `warn` or `error`.
    pub level: String,
    /// The message, secrets already redacted.
    pub message: String,
    /// Structured fields, secrets already redacted.
    pub fields: Vec<(String, String)>,
}

/// How a finished run ended.
#[derive(Debug, Clone, PartialEq)]
pub struct RunOutcome {
    /// `Succeeded`, `Failed`, `Cancelled` …
    pub status: RunStatus,
    /// Error chain for a failure.
    pub error: Option<String>,
    /// Snapshot id, if any.
    pub snapshot_id: Option<String>,
    /// Bytes moved.
    pub bytes: u64,
    /// Task's JSON result.
    pub result: Option<String>,
}

/// Errors from a state store.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// The database could not be opened, created or migrated.
    #[error("cannot open state store at {path}: {source}")]
    Open {
        /// Where.
        path: String,
        /// Why.
        #[source]
        source: rusqlite::Error,
    },
    /// The PostgreSQL state database could not be reached or migrated.
    #[error("cannot use the state database at {at}: {message}")]
    Connect {
        /// `host:port/database` (never the password).
        at: String,
        /// What failed and what to do.
        message: String,
    },
    /// A query failed.
    #[error("state store query failed: {0}")]
    Query(#[from] rusqlite::Error),
    /// A PostgreSQL query failed.
    #[error("state database query failed: {0}")]
    Postgres(#[from] tokio_postgres::Error),
    /// Stored data this program cannot read (a newer program wrote it?).
    #[error("state store holds an unreadable value: {0}")]
    Corrupt(String),
    /// No run with this id.
    #[error("no run with id `{0}`")]
    NoSuchRun(String),
    /// An exclusive run was refused because another run of the job is queued
    /// or running (in this process or another one).
    #[error(
        "job `{job}` is already running (run {run}, {by}); a job runs one backup at a time: \
         wait for that run to finish, or set `concurrency = \"allow\"` on the job"
    )]
    Busy {
        /// The job.
        job: String,
        /// The run holding it.
        run: String,
        /// Who runs it: `process PID on HOST`.
        by: String,
    },
    /// Setting a key would take the job's state past a limit.
    #[error("the state of job `{job}` would hold {have}: its limit is {limit} ({key})")]
    Full {
        /// The job.
        job: String,
        /// What it would hold (`1001 keys`, `17 MiB`).
        have: String,
        /// The limit.
        limit: String,
        /// Which of the job's limits (`state-keys`, `state-limit`).
        key: &'static str,
    },
}

/// How much state a job may keep.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KvLimits {
    /// Keys in all.
    pub keys: u64,
    /// Bytes of keys and values in all.
    pub bytes: u64,
}

/// Storage for run history and job state. Implementations are cheap to call
/// from async code (local, short operations) and safe to share between threads.
pub trait StateStore: Send + Sync {
    /// Record a new run as `Running` (returns its record, with a fresh id).
    ///
    /// # Errors
    /// When the store cannot be written.
    fn start_run(&self, job: &str, kind: RunKind) -> Result<RunRecord, StateError>;

    /// Record a new run as `Queued` before it starts (returns its record, with
    /// a fresh id).
    ///
    /// # Errors
    /// [`StateError::Busy`] when `new.exclusive` and another exclusive run of
    /// the job is queued or running in a live process (a run left by a dead
    /// process is marked `Interrupted` first); otherwise when the store cannot
    /// be written.
    fn queue_run(&self, new: &NewRun) -> Result<RunRecord, StateError>;

    /// Move a `Queued` run to `Running`, with its start time now.
    ///
    /// # Errors
    /// [`StateError::NoSuchRun`] for an unknown id, or one that is not queued.
    fn mark_running(&self, id: &str) -> Result<RunRecord, StateError>;

    /// Record a fire that did not run as a finished `Skipped` run with `reason`
    /// as its error.
    ///
    /// # Errors
    /// When the store cannot be written.
    fn record_skipped(&self, new: &NewRun, reason: &str) -> Result<RunRecord, StateError>;

    /// Delete the finished runs of `job` (and their logs) beyond the newest
    /// `keep`. Returns how many were deleted.
    ///
    /// # Errors
    /// When the store cannot be written.
    fn prune_runs(&self, job: &str, keep: usize) -> Result<usize, StateError>;

    /// What the store keeps about every job it knows, by job name.
    ///
    /// # Errors
    /// When the store cannot be read.
    fn job_states(&self) -> Result<std::collections::BTreeMap<String, JobState>, StateError>;

    /// Pause or resume a job.
    ///
    /// # Errors
    /// When the store cannot be written.
    fn set_paused(&self, job: &str, paused: bool) -> Result<(), StateError>;

    /// Record schedule marks of several jobs in one transaction:
    /// `(job, last scheduled time, next fire time)`; `None` leaves the last
    /// scheduled time as it was.
    ///
    /// # Errors
    /// When the store cannot be written.
    fn set_fire_marks(
        &self,
        marks: &[(String, Option<i64>, Option<i64>)],
    ) -> Result<(), StateError>;

    /// Record how a run ended. A run already finished by someone else (marked
    /// `interrupted` when its lease ran out) keeps that outcome.
    ///
    /// # Errors
    /// [`StateError::NoSuchRun`] for an unknown id.
    fn finish_run(&self, id: &str, outcome: &RunOutcome) -> Result<(), StateError>;

    /// Append log lines to a run. A run keeps a bounded number of lines
    /// (10,000 by default); later lines are counted in one final
    /// "… N more log lines dropped" line instead of being stored.
    ///
    /// # Errors
    /// [`StateError::NoSuchRun`] for an unknown id; otherwise when the store
    /// cannot be written.
    fn append_logs(&self, id: &str, lines: &[LogLine]) -> Result<(), StateError>;

    /// One run.
    ///
    /// # Errors
    /// [`StateError::NoSuchRun`] for an unknown id.
    fn run(&self, id: &str) -> Result<RunRecord, StateError>;

    /// Most recent runs first, optionally of one job only, at most `limit`.
    ///
    /// # Errors
    /// When the store cannot be read.
    fn runs(&self, job: Option<&str>, limit: usize) -> Result<Vec<RunRecord>, StateError>;

    /// Log lines of a run, oldest first.
    ///
    /// # Errors
    /// [`StateError::NoSuchRun`] for an unknown id; otherwise when the store
    /// cannot be read.
    fn logs(&self, id: &str) -> Result<Vec<LogLine>, StateError>;

    /// Mark runs still `Running` or `Queued` whose lease ran out (or, on
    /// SQLite, whose process on this host is gone) as `Interrupted`, record
    /// fires claimed [`ORPHAN_AFTER`] ago or more that have no run (their
    /// node stopped between the claim and the run) as `Interrupted` runs of
    /// the claiming node, and return them all as they are now. Called at start-up and, by the daemon,
    /// every few seconds; a run is returned to one caller only. Runs of live
    /// processes are left alone.
    ///
    /// # Errors
    /// When the store cannot be written.
    fn reconcile_interrupted(&self) -> Result<Vec<RunRecord>, StateError>;

    /// Take the `interrupted` runs of `jobs` that finished at or after
    /// `since_ms` and that no one has taken yet, and return them: each is
    /// returned to one caller only, whoever marked it interrupted (a daemon's
    /// sweep, `cairn runs`, a `queue_run` taking over the job). The daemon
    /// counts, notifies and retries what it takes.
    ///
    /// # Errors
    /// When the store cannot be written.
    fn take_interrupted(
        &self,
        jobs: &[String],
        since_ms: i64,
    ) -> Result<Vec<RunRecord>, StateError>;

    /// The name recorded on runs this store starts.
    fn node(&self) -> &str;

    /// Extend the lease of queued or running run `id` by [`LEASE`] from now.
    ///
    /// # Errors
    /// [`StateError::NoSuchRun`] for an unknown id; when the store cannot be
    /// written.
    fn renew_lease(&self, id: &str) -> Result<LeaseState, StateError>;

    /// Ask the process running run `id` to cancel it (it sees the request at
    /// its next lease renewal). Returns whether the run was still queued or
    /// running.
    ///
    /// # Errors
    /// When the store cannot be written.
    fn request_cancel(&self, id: &str) -> Result<bool, StateError>;

    /// The queued and running runs of `job`, in any process, oldest first.
    ///
    /// # Errors
    /// When the store cannot be read.
    fn unfinished_runs(&self, job: &str) -> Result<Vec<RunRecord>, StateError>;

    /// Record the schedule of several jobs, `(job, schedule, next fire)`:
    /// the schedule text (cron and time zone) and its next fire time, which
    /// [`StateStore::claim_due`] then fires. The last scheduled time is kept.
    ///
    /// # Errors
    /// When the store cannot be written.
    fn set_schedules(&self, marks: &[(String, String, Option<i64>)]) -> Result<(), StateError>;

    /// Claim the due fires of `jobs` (those whose next fire time is at or
    /// before `now_ms`; at most `limit` due jobs, earliest first, so that
    /// several nodes share a crowd of due fires), in one transaction: for
    /// each due job, `planner(job,
    /// next fire)` says what to fire and when the next fire is; the job's
    /// marks move on, and a fire is entered in the fire ledger under `(job,
    /// scheduled time)` unless the job is paused. A fire already in the ledger
    /// (claimed by another node) is not returned. Jobs another node is
    /// claiming at the same moment are skipped (it handles them).
    ///
    /// # Errors
    /// When the store cannot be written.
    fn claim_due(
        &self,
        jobs: &[String],
        now_ms: i64,
        limit: usize,
        planner: &mut dyn FnMut(&str, i64) -> FirePlan,
    ) -> Result<Vec<ClaimedFire>, StateError>;

    /// Take the named lock for `holder` for `ttl` (or extend it if `holder`
    /// has it). Returns whether `holder` has it now; a lock whose holder let
    /// its time run out is taken over.
    ///
    /// # Errors
    /// When the store cannot be written.
    fn try_lock(&self, name: &str, holder: &str, ttl: Duration) -> Result<bool, StateError>;

    /// Release the named lock if `holder` has it.
    ///
    /// # Errors
    /// When the store cannot be written.
    fn unlock(&self, name: &str, holder: &str) -> Result<(), StateError>;

    /// Value of a job's key.
    ///
    /// # Errors
    /// When the store cannot be read.
    fn kv_get(&self, job: &str, key: &str) -> Result<Option<String>, StateError>;

    /// Set a job's key, if the job's state stays within `limits` (checked
    /// and written in one transaction).
    ///
    /// # Errors
    /// [`StateError::Full`] past a limit; when the store cannot be written.
    fn kv_set(&self, job: &str, key: &str, value: &str, limits: KvLimits)
    -> Result<(), StateError>;

    /// Delete a job's key (missing is fine).
    ///
    /// # Errors
    /// When the store cannot be written.
    fn kv_delete(&self, job: &str, key: &str) -> Result<(), StateError>;

    /// A job's keys starting with `prefix`, sorted.
    ///
    /// # Errors
    /// When the store cannot be read.
    fn kv_keys(&self, job: &str, prefix: &str) -> Result<Vec<String>, StateError>;
}
