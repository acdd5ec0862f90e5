//! Run history and per-job key/value state, behind the [`StateStore`] trait.
//!
//! SQLite (embedded, WAL) is the default implementation ([`sqlite::SqliteStore`]);
//! a PostgreSQL implementation for several nodes can be added behind the same trait.

pub mod sqlite;

use serde::Serialize;

pub use crate::model::run::{RunKind, RunStatus, Trigger};

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
    /// A query failed.
    #[error("state store query failed: {0}")]
    Query(#[from] rusqlite::Error),
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

    /// Record how a run ended.
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

    /// Mark runs still `Running` or `Queued` whose process is gone as
    /// `Interrupted` (called at start-up: such runs were left by a process that
    /// died). Runs of live processes are left alone. Returns how many changed.
    ///
    /// # Errors
    /// When the store cannot be written.
    fn reconcile_interrupted(&self) -> Result<usize, StateError>;

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
