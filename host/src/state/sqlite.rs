//! SQLite implementation of [`StateStore`]: one embedded database file in WAL mode.
//!
//! The schema is versioned with `PRAGMA user_version` and brought up to date by
//! the `MIGRATIONS` list when the store is opened; to change the schema, append a
//! migration (never edit one that has shipped).
//!
//! Several processes may open the same file: writes are single statements or
//! `IMMEDIATE` transactions, and wait up to [`BUSY_TIMEOUT`] for the lock.

use std::path::Path;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use rusqlite::types::{FromSql, FromSqlError, FromSqlResult, ToSql, ToSqlOutput, Type, ValueRef};
use rusqlite::{Connection, OptionalExtension, Row, TransactionBehavior, ffi, params};

use super::{
    ClaimedFire, FirePlan, JobState, KvLimits, LEASE, LeaseState, LogLine, NewRun, RunKind,
    RunOutcome, RunRecord, RunStatus, StateError, StateStore, Trigger, new_run_id,
};
pub use super::{INTERRUPTED_ERROR, QUEUED_INTERRUPTED_ERROR};
use crate::sys::now_ms;

/// How many log lines a run keeps before later ones are only counted.
pub const DEFAULT_LOG_CAP: usize = 10_000;

/// How long a statement waits for another connection's lock before failing.
pub const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// Schema migrations: entry `i` takes the database from `user_version` `i` to
/// `i + 1`. Each runs in its own transaction together with the version bump.
const MIGRATIONS: &[&str] = &[
    // Version 1: run history, run logs, per-job key/value state.
    "
    CREATE TABLE runs (
        id             TEXT PRIMARY KEY NOT NULL,
        job            TEXT NOT NULL,
        kind           TEXT NOT NULL,
        status         TEXT NOT NULL,
        started_at_ms  INTEGER NOT NULL,
        finished_at_ms INTEGER,
        error          TEXT,
        snapshot_id    TEXT,
        bytes          INTEGER NOT NULL DEFAULT 0,
        result         TEXT,
        -- log lines counted but not stored once the run reached its log cap
        logs_dropped   INTEGER NOT NULL DEFAULT 0
    );
    CREATE INDEX runs_job_started ON runs (job, started_at_ms);
    CREATE INDEX runs_started ON runs (started_at_ms);

    CREATE TABLE run_logs (
        run_id      TEXT NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
        seq         INTEGER NOT NULL,
        at_ms       INTEGER NOT NULL,
        level       TEXT NOT NULL,
        message     TEXT NOT NULL,
        fields_json TEXT,
        PRIMARY KEY (run_id, seq)
    );

    CREATE TABLE kv (
        job           TEXT NOT NULL,
        key           TEXT NOT NULL,
        value         TEXT NOT NULL,
        updated_at_ms INTEGER NOT NULL,
        PRIMARY KEY (job, key)
    ) WITHOUT ROWID;
    ",
    // Version 2: which process runs a run (`host:pid:start-time`), so start-up
    // reconciliation only touches runs whose process is gone.
    "ALTER TABLE runs ADD COLUMN owner TEXT;",
    // Version 3: the daemon. Attempt, trigger and schedule time of each run;
    // `exclusive` runs of a job may not overlap, across processes (the partial
    // unique index refuses a second queued or running one); per-job schedule
    // marks and pause state.
    "
    ALTER TABLE runs ADD COLUMN attempt INTEGER NOT NULL DEFAULT 1;
    ALTER TABLE runs ADD COLUMN trigger TEXT NOT NULL DEFAULT 'cli';
    ALTER TABLE runs ADD COLUMN scheduled_at_ms INTEGER;
    ALTER TABLE runs ADD COLUMN exclusive INTEGER NOT NULL DEFAULT 0;
    CREATE UNIQUE INDEX runs_one_exclusive ON runs (job)
        WHERE exclusive = 1 AND status IN ('queued', 'running');
    CREATE INDEX runs_active ON runs (status) WHERE status IN ('queued', 'running');

    CREATE TABLE jobs (
        job               TEXT PRIMARY KEY NOT NULL,
        paused            INTEGER NOT NULL DEFAULT 0,
        last_scheduled_ms INTEGER,
        next_fire_ms      INTEGER,
        updated_at_ms     INTEGER NOT NULL
    ) WITHOUT ROWID;
    ",
    // Version 4: several daemons. The node of each run, its lease, a cancel
    // request, and whether a daemon took it to report once interrupted; the schedule each job's next fire was computed for; the
    // fire ledger (one row per claimed fire); named locks with a time to live.
    "
    ALTER TABLE runs ADD COLUMN node TEXT;
    ALTER TABLE runs ADD COLUMN lease_until_ms INTEGER;
    ALTER TABLE runs ADD COLUMN cancel_requested INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE runs ADD COLUMN reported INTEGER NOT NULL DEFAULT 0;
    CREATE INDEX runs_unreported ON runs (finished_at_ms)
        WHERE status = 'interrupted' AND reported = 0;
    ALTER TABLE jobs ADD COLUMN schedule TEXT;
    CREATE INDEX jobs_next_fire ON jobs (next_fire_ms);

    CREATE INDEX runs_scheduled ON runs (job, scheduled_at_ms) WHERE scheduled_at_ms IS NOT NULL;

    CREATE TABLE fires (
        job             TEXT NOT NULL,
        scheduled_at_ms INTEGER NOT NULL,
        node            TEXT NOT NULL,
        claimed_at_ms   INTEGER NOT NULL,
        PRIMARY KEY (job, scheduled_at_ms)
    ) WITHOUT ROWID;
    CREATE INDEX fires_claimed ON fires (claimed_at_ms);

    CREATE TABLE locks (
        name     TEXT PRIMARY KEY NOT NULL,
        holder   TEXT NOT NULL,
        until_ms INTEGER NOT NULL
    ) WITHOUT ROWID;
    ",
];

/// Columns of `runs` read into a [`RunRecord`], in [`run_from_row`]'s order.
const RUN_COLUMNS: &str = "id, job, kind, status, started_at_ms, finished_at_ms, error, \
     snapshot_id, bytes, result, attempt, trigger, scheduled_at_ms, node";

/// Run history and job state in a SQLite database.
///
/// The connection sits behind a mutex, so the store is `Send + Sync` and can be
/// shared (for example in an `Arc`) by every task of the process; other
/// processes may open the same file at the same time.
#[derive(Debug)]
pub struct SqliteStore {
    conn: Mutex<Connection>,
    log_cap: usize,
    node: String,
}

impl SqliteStore {
    /// Open (creating it and its parent directories if needed) the database at
    /// `path`, switch it to WAL mode and bring its schema up to date.
    ///
    /// # Errors
    /// [`StateError::Open`] when the directory or file cannot be created or
    /// opened, when the schema cannot be migrated, or when the database was
    /// written by a newer version of this program.
    pub fn open(path: &Path) -> Result<Self, StateError> {
        let open_err = |source| StateError::Open {
            path: path.display().to_string(),
            source,
        };
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(|e| {
                open_err(failure(
                    ffi::SQLITE_CANTOPEN,
                    format!("cannot create directory {}: {e}", parent.display()),
                ))
            })?;
        }
        let conn = Connection::open(path).map_err(open_err)?;
        Self::init(conn, true).map_err(open_err)
    }

    /// A private, empty database in memory (for tests and dry runs).
    ///
    /// # Errors
    /// [`StateError::Open`] when SQLite cannot create it (out of memory).
    pub fn open_in_memory() -> Result<Self, StateError> {
        let open_err = |source| StateError::Open {
            path: ":memory:".to_owned(),
            source,
        };
        let conn = Connection::open_in_memory().map_err(open_err)?;
        Self::init(conn, false).map_err(open_err)
    }

    /// Keep at most `cap` log lines per run (default [`DEFAULT_LOG_CAP`]);
    /// later lines only raise the count in the final "dropped" line.
    #[must_use]
    pub fn with_log_cap(mut self, cap: usize) -> Self {
        self.log_cap = cap;
        self
    }

    /// Record `node` on the runs this store starts (default: the host name).
    #[must_use]
    pub fn with_node(mut self, node: &str) -> Self {
        node.clone_into(&mut self.node);
        self
    }

    /// Configure the connection and migrate the schema.
    fn init(mut conn: Connection, wal: bool) -> rusqlite::Result<Self> {
        conn.busy_timeout(BUSY_TIMEOUT)?;
        if wal {
            // Returns the mode actually in effect; a file system that cannot do
            // WAL keeps the rollback journal, which is slower but correct.
            let _mode: String =
                conn.pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get(0))?;
        }
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        migrate(&mut conn)?;
        Ok(Self {
            conn: Mutex::new(conn),
            log_cap: DEFAULT_LOG_CAP,
            node: crate::sys::hostname(),
        })
    }

    /// The connection. A panic while it was held leaves it usable (any open
    /// transaction was rolled back when dropped), so poisoning is ignored.
    fn conn(&self) -> MutexGuard<'_, Connection> {
        self.conn.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Apply the migrations the database has not seen yet.
fn migrate(conn: &mut Connection) -> rusqlite::Result<()> {
    let known = MIGRATIONS.len();
    // Quick check without taking the write lock (the usual case: up to date).
    let version: usize = conn.pragma_query_value(None, "user_version", |row| row.get(0))?;
    if version == known {
        return Ok(());
    }
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    // Re-read under the lock: another process may have migrated meanwhile.
    let version: usize = tx.pragma_query_value(None, "user_version", |row| row.get(0))?;
    if version > known {
        return Err(failure(
            ffi::SQLITE_ERROR,
            format!(
                "the database has schema version {version}, newer than the {known} this \
                 program knows; use a newer cairn"
            ),
        ));
    }
    for (from, sql) in MIGRATIONS.iter().enumerate().skip(version) {
        tx.execute_batch(sql)?;
        tx.pragma_update(None, "user_version", from + 1)?;
    }
    tx.commit()
}

/// A SQLite error with code `code` and our own message.
fn failure(code: std::ffi::c_int, message: String) -> rusqlite::Error {
    rusqlite::Error::SqliteFailure(ffi::Error::new(code), Some(message))
}

/// Which process owns a run: `host:pid:start-time`, where start-time is the
/// process's start in clock ticks since boot (so a reused pid is not mistaken
/// for the original process).
mod owner {
    use crate::sys::hostname;

    /// The owner string of this process.
    pub fn this_process() -> String {
        let pid = std::process::id();
        format!("{}:{pid}:{}", hostname(), start_time(pid).unwrap_or(0))
    }

    /// Whether the process named by `owner` is still running. Runs owned by
    /// another host are assumed alive (that host reconciles its own).
    pub fn is_alive(owner: &str) -> bool {
        let mut parts = owner.rsplitn(3, ':');
        let (Some(start), Some(pid), Some(host)) = (parts.next(), parts.next(), parts.next())
        else {
            return false;
        };
        if host != hostname() {
            return true;
        }
        let (Ok(pid), Ok(start)) = (pid.parse::<u32>(), start.parse::<u64>()) else {
            return false;
        };
        start_time(pid).is_some_and(|s| s == start)
    }

    /// Field 22 of `/proc/PID/stat`: start time in clock ticks since boot.
    fn start_time(pid: u32) -> Option<u64> {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        // The command name (field 2) may contain spaces; fields after it follow `)`.
        let after = &stat[stat.rfind(')')? + 2..];
        after.split_whitespace().nth(19)?.parse().ok()
    }
}

/// SQLite integers are signed 64-bit; saturate larger byte counts.
fn bytes_to_sql(bytes: u64) -> i64 {
    i64::try_from(bytes).unwrap_or(i64::MAX)
}

/// Whether a run with this id exists.
fn run_exists(conn: &Connection, id: &str) -> rusqlite::Result<bool> {
    conn.prepare_cached("SELECT 1 FROM runs WHERE id = ?1")?
        .exists([id])
}

/// Read a row selected with [`RUN_COLUMNS`].
fn run_from_row(row: &Row<'_>) -> rusqlite::Result<RunRecord> {
    let bytes: i64 = row.get(8)?;
    Ok(RunRecord {
        id: row.get(0)?,
        job: row.get(1)?,
        kind: row.get(2)?,
        status: row.get(3)?,
        started_at_ms: row.get(4)?,
        finished_at_ms: row.get(5)?,
        error: row.get(6)?,
        snapshot_id: row.get(7)?,
        bytes: u64::try_from(bytes).unwrap_or(0),
        result: row.get(9)?,
        attempt: row.get(10)?,
        trigger: row.get(11)?,
        scheduled_at_ms: row.get(12)?,
        node: row.get(13)?,
    })
}

/// Store fields as a JSON array of `[name, value]` pairs (order and repeats
/// kept); no fields are stored as NULL.
fn fields_to_json(fields: &[(String, String)]) -> rusqlite::Result<Option<String>> {
    if fields.is_empty() {
        return Ok(None);
    }
    serde_json::to_string(fields)
        .map(Some)
        .map_err(|e| rusqlite::Error::ToSqlConversionFailure(Box::new(e)))
}

/// Read a row of `at_ms, level, message, fields_json`.
fn log_from_row(row: &Row<'_>) -> rusqlite::Result<LogLine> {
    let fields_json: Option<String> = row.get(3)?;
    let fields = match fields_json {
        None => Vec::new(),
        Some(json) => serde_json::from_str(&json)
            .map_err(|e| rusqlite::Error::FromSqlConversionFailure(3, Type::Text, Box::new(e)))?,
    };
    Ok(LogLine {
        at_ms: row.get(0)?,
        level: row.get(1)?,
        message: row.get(2)?,
        fields,
    })
}

/// The line standing for `dropped` lines that were not stored.
fn dropped_message(dropped: u64) -> String {
    let lines = if dropped == 1 { "line" } else { "lines" };
    format!("… {dropped} more log {lines} dropped")
}

impl ToSql for RunKind {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(ToSqlOutput::from(self.as_str()))
    }
}

impl FromSql for RunKind {
    fn column_result(value: ValueRef<'_>) -> FromSqlResult<Self> {
        let name = value.as_str()?;
        Self::parse(name)
            .ok_or_else(|| FromSqlError::Other(format!("unknown run kind `{name}`").into()))
    }
}

impl ToSql for Trigger {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(ToSqlOutput::from(self.as_str()))
    }
}

impl FromSql for Trigger {
    fn column_result(value: ValueRef<'_>) -> FromSqlResult<Self> {
        let name = value.as_str()?;
        Self::parse(name)
            .ok_or_else(|| FromSqlError::Other(format!("unknown run trigger `{name}`").into()))
    }
}

/// Whether `err` is a violation of a UNIQUE constraint or index.
fn is_unique_violation(err: &rusqlite::Error) -> bool {
    matches!(
        err,
        rusqlite::Error::SqliteFailure(e, _)
            if e.extended_code == ffi::SQLITE_CONSTRAINT_UNIQUE
    )
}

/// `process PID on HOST` for an owner string `host:pid:start`.
pub(crate) fn owner_phrase(owner: Option<&str>) -> String {
    let mut parts = owner.unwrap_or_default().rsplitn(3, ':');
    match (parts.next(), parts.next(), parts.next()) {
        (Some(_), Some(pid), Some(host)) => format!("by process {pid} on {host}"),
        _ => "by an unknown process".to_owned(),
    }
}

/// The owner string of this process (`host:pid:start-time`).
pub(crate) fn this_owner() -> String {
    owner::this_process()
}

impl SqliteStore {
    /// Insert `new` with `status` (and `error`, `finished` for a finished one).
    fn insert_run(
        &self,
        new: &NewRun,
        status: RunStatus,
        error: Option<&str>,
    ) -> rusqlite::Result<RunRecord> {
        let now = now_ms();
        let record = RunRecord {
            id: new_run_id(),
            job: new.job.clone(),
            kind: new.kind,
            status,
            started_at_ms: now,
            finished_at_ms: status.is_finished().then_some(now),
            error: error.map(str::to_owned),
            snapshot_id: None,
            bytes: 0,
            result: None,
            attempt: new.attempt,
            trigger: new.trigger,
            scheduled_at_ms: new.scheduled_at_ms,
            node: Some(self.node.clone()),
        };
        let lease = (!status.is_finished()).then(|| now + lease_ms());
        self.conn()
            .prepare_cached(
                "INSERT INTO runs (id, job, kind, status, started_at_ms, finished_at_ms, error, \
                 owner, attempt, trigger, scheduled_at_ms, exclusive, node, lease_until_ms) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)",
            )?
            .execute(params![
                record.id,
                record.job,
                record.kind,
                record.status,
                record.started_at_ms,
                record.finished_at_ms,
                record.error,
                owner::this_process(),
                record.attempt,
                record.trigger,
                record.scheduled_at_ms,
                new.exclusive && !status.is_finished(),
                record.node,
                lease
            ])?;
        Ok(record)
    }

    /// The exclusive queued or running run of `job`, its owner, and whether
    /// it is held (lease not run out), if any.
    fn exclusive_holder(
        &self,
        job: &str,
    ) -> rusqlite::Result<Option<(String, Option<String>, bool)>> {
        self.conn()
            .prepare_cached(
                "SELECT id, owner, COALESCE(lease_until_ms >= ?2, 1) FROM runs \
                 WHERE job = ?1 AND exclusive = 1 AND status IN ('queued', 'running')",
            )?
            .query_row(params![job, now_ms()], |row| {
                Ok((row.get(0)?, row.get(1)?, row.get(2)?))
            })
            .optional()
    }
}

/// [`LEASE`] in milliseconds.
pub(crate) fn lease_ms() -> i64 {
    i64::try_from(LEASE.as_millis()).unwrap_or(i64::MAX)
}

impl ToSql for RunStatus {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(ToSqlOutput::from(self.as_str()))
    }
}

impl FromSql for RunStatus {
    fn column_result(value: ValueRef<'_>) -> FromSqlResult<Self> {
        let name = value.as_str()?;
        Self::parse(name)
            .ok_or_else(|| FromSqlError::Other(format!("unknown run status `{name}`").into()))
    }
}

impl StateStore for SqliteStore {
    fn start_run(&self, job: &str, kind: RunKind) -> Result<RunRecord, StateError> {
        Ok(self.insert_run(
            &NewRun::new(job, kind, Trigger::Cli),
            RunStatus::Running,
            None,
        )?)
    }

    fn queue_run(&self, new: &NewRun) -> Result<RunRecord, StateError> {
        match self.insert_run(new, RunStatus::Queued, None) {
            Err(e) if is_unique_violation(&e) => {}
            other => return Ok(other?),
        }
        // Another exclusive run holds the job. If its process is gone, it was
        // interrupted: say so, and try once more.
        let Some((run, owner, held)) = self.exclusive_holder(&new.job)? else {
            return Ok(self.insert_run(new, RunStatus::Queued, None)?);
        };
        if held && owner.as_deref().is_some_and(owner::is_alive) {
            return Err(StateError::Busy {
                job: new.job.clone(),
                run,
                by: owner_phrase(owner.as_deref()),
            });
        }
        self.conn()
            .prepare_cached(
                "UPDATE runs SET status = 'interrupted', finished_at_ms = ?2, \
                 error = COALESCE(error, CASE WHEN status = 'queued' THEN ?4 ELSE ?3 END), \
                 lease_until_ms = NULL WHERE id = ?1 AND status IN ('queued', 'running')",
            )?
            .execute(params![
                run,
                now_ms(),
                INTERRUPTED_ERROR,
                QUEUED_INTERRUPTED_ERROR
            ])?;
        self.insert_run(new, RunStatus::Queued, None).map_err(|e| {
            if is_unique_violation(&e) {
                StateError::Busy {
                    job: new.job.clone(),
                    run: run.clone(),
                    by: owner_phrase(owner.as_deref()),
                }
            } else {
                e.into()
            }
        })
    }

    fn mark_running(&self, id: &str) -> Result<RunRecord, StateError> {
        let changed = self
            .conn()
            .prepare_cached(
                "UPDATE runs SET status = ?2, started_at_ms = ?3, lease_until_ms = ?5 \
                 WHERE id = ?1 AND status = ?4",
            )?
            .execute(params![
                id,
                RunStatus::Running,
                now_ms(),
                RunStatus::Queued,
                now_ms() + lease_ms()
            ])?;
        if changed == 0 {
            return Err(StateError::NoSuchRun(id.to_owned()));
        }
        self.run(id)
    }

    fn record_skipped(&self, new: &NewRun, reason: &str) -> Result<RunRecord, StateError> {
        Ok(self.insert_run(new, RunStatus::Skipped, Some(reason))?)
    }

    fn prune_runs(&self, job: &str, keep: usize) -> Result<usize, StateError> {
        let keep = i64::try_from(keep).unwrap_or(i64::MAX);
        // Logs go with their runs (ON DELETE CASCADE).
        let deleted = self
            .conn()
            .prepare_cached(
                "DELETE FROM runs WHERE job = ?1 AND status NOT IN ('queued', 'running') \
                 AND id NOT IN (SELECT id FROM runs WHERE job = ?1 \
                 ORDER BY started_at_ms DESC, id DESC LIMIT ?2)",
            )?
            .execute(params![job, keep])?;
        Ok(deleted)
    }

    fn job_states(&self) -> Result<std::collections::BTreeMap<String, JobState>, StateError> {
        let conn = self.conn();
        let states = conn
            .prepare_cached(
                "SELECT job, paused, last_scheduled_ms, next_fire_ms, schedule FROM jobs",
            )?
            .query_map([], |row| {
                Ok((
                    row.get(0)?,
                    JobState {
                        paused: row.get(1)?,
                        last_scheduled_ms: row.get(2)?,
                        next_fire_ms: row.get(3)?,
                        schedule: row.get(4)?,
                    },
                ))
            })?
            .collect::<rusqlite::Result<_>>()?;
        Ok(states)
    }

    fn set_paused(&self, job: &str, paused: bool) -> Result<(), StateError> {
        self.conn()
            .prepare_cached(
                "INSERT INTO jobs (job, paused, updated_at_ms) VALUES (?1, ?2, ?3) \
                 ON CONFLICT (job) DO UPDATE \
                 SET paused = excluded.paused, updated_at_ms = excluded.updated_at_ms",
            )?
            .execute(params![job, paused, now_ms()])?;
        Ok(())
    }

    fn set_fire_marks(
        &self,
        marks: &[(String, Option<i64>, Option<i64>)],
    ) -> Result<(), StateError> {
        if marks.is_empty() {
            return Ok(());
        }
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        {
            let mut upsert = tx.prepare_cached(
                "INSERT INTO jobs (job, last_scheduled_ms, next_fire_ms, updated_at_ms) \
                 VALUES (?1, ?2, ?3, ?4) ON CONFLICT (job) DO UPDATE SET \
                 last_scheduled_ms = COALESCE(excluded.last_scheduled_ms, last_scheduled_ms), \
                 next_fire_ms = excluded.next_fire_ms, updated_at_ms = excluded.updated_at_ms",
            )?;
            let now = now_ms();
            for (job, last, next) in marks {
                upsert.execute(params![job, last, next, now])?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    fn finish_run(&self, id: &str, outcome: &RunOutcome) -> Result<(), StateError> {
        let conn = self.conn();
        let changed = conn
            .prepare_cached(
                "UPDATE runs SET status = ?2, finished_at_ms = ?3, error = ?4, \
                 snapshot_id = ?5, bytes = ?6, result = ?7, lease_until_ms = NULL \
                 WHERE id = ?1 AND status NOT IN ('interrupted')",
            )?
            .execute(params![
                id,
                outcome.status,
                now_ms(),
                outcome.error,
                outcome.snapshot_id,
                bytes_to_sql(outcome.bytes),
                outcome.result
            ])?;
        if changed == 0 && !run_exists(&conn, id)? {
            return Err(StateError::NoSuchRun(id.to_owned()));
        }
        Ok(())
    }

    fn append_logs(&self, id: &str, lines: &[LogLine]) -> Result<(), StateError> {
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let (next_seq, dropped): (i64, i64) = tx
            .prepare_cached(
                "SELECT (SELECT COALESCE(MAX(seq) + 1, 0) FROM run_logs WHERE run_id = ?1), \
                 logs_dropped FROM runs WHERE id = ?1",
            )?
            .query_row([id], |row| Ok((row.get(0)?, row.get(1)?)))
            .optional()?
            .ok_or_else(|| StateError::NoSuchRun(id.to_owned()))?;
        if lines.is_empty() {
            return Ok(());
        }

        // Regular lines take seq 0..cap; the "dropped" line, once needed, seq cap.
        let cap = i64::try_from(self.log_cap).unwrap_or(i64::MAX);
        let stored = next_seq.min(cap);
        let room = usize::try_from(cap - stored).unwrap_or(usize::MAX);
        let (kept, over) = lines.split_at(room.min(lines.len()));
        {
            let mut insert = tx.prepare_cached(
                "INSERT INTO run_logs (run_id, seq, at_ms, level, message, fields_json) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            )?;
            for (seq, line) in (stored..).zip(kept) {
                insert.execute(params![
                    id,
                    seq,
                    line.at_ms,
                    line.level,
                    line.message,
                    fields_to_json(&line.fields)?
                ])?;
            }
            if let Some(last) = over.last() {
                let over = i64::try_from(over.len()).unwrap_or(i64::MAX);
                let dropped = dropped.saturating_add(over);
                tx.prepare_cached("UPDATE runs SET logs_dropped = ?2 WHERE id = ?1")?
                    .execute(params![id, dropped])?;
                let count = u64::try_from(dropped).unwrap_or(0);
                let fields = [("dropped".to_owned(), count.to_string())];
                tx.prepare_cached(
                    "INSERT OR REPLACE INTO run_logs \
                     (run_id, seq, at_ms, level, message, fields_json) \
                     VALUES (?1, ?2, ?3, 'warn', ?4, ?5)",
                )?
                .execute(params![
                    id,
                    cap,
                    last.at_ms,
                    dropped_message(count),
                    fields_to_json(&fields)?
                ])?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    fn run(&self, id: &str) -> Result<RunRecord, StateError> {
        self.conn()
            .prepare_cached(&format!("SELECT {RUN_COLUMNS} FROM runs WHERE id = ?1"))?
            .query_row([id], run_from_row)
            .optional()?
            .ok_or_else(|| StateError::NoSuchRun(id.to_owned()))
    }

    fn runs(&self, job: Option<&str>, limit: usize) -> Result<Vec<RunRecord>, StateError> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let conn = self.conn();
        let runs = if let Some(job) = job {
            conn.prepare_cached(&format!(
                "SELECT {RUN_COLUMNS} FROM runs WHERE job = ?1 \
                 ORDER BY started_at_ms DESC, id DESC LIMIT ?2"
            ))?
            .query_map(params![job, limit], run_from_row)?
            .collect::<rusqlite::Result<Vec<_>>>()?
        } else {
            conn.prepare_cached(&format!(
                "SELECT {RUN_COLUMNS} FROM runs ORDER BY started_at_ms DESC, id DESC LIMIT ?1"
            ))?
            .query_map([limit], run_from_row)?
            .collect::<rusqlite::Result<Vec<_>>>()?
        };
        Ok(runs)
    }

    fn logs(&self, id: &str) -> Result<Vec<LogLine>, StateError> {
        let conn = self.conn();
        let lines = conn
            .prepare_cached(
                "SELECT at_ms, level, message, fields_json FROM run_logs \
                 WHERE run_id = ?1 ORDER BY seq",
            )?
            .query_map([id], log_from_row)?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        if lines.is_empty() && !run_exists(&conn, id)? {
            return Err(StateError::NoSuchRun(id.to_owned()));
        }
        Ok(lines)
    }

    fn reconcile_interrupted(&self) -> Result<Vec<RunRecord>, StateError> {
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let now = now_ms();
        let unfinished: Vec<(String, Option<String>, bool)> = tx
            .prepare_cached(
                "SELECT id, owner, COALESCE(lease_until_ms < ?3, 0) FROM runs \
                 WHERE status IN (?1, ?2)",
            )?
            .query_map(params![RunStatus::Running, RunStatus::Queued, now], |row| {
                Ok((row.get(0)?, row.get(1)?, row.get(2)?))
            })?
            .collect::<rusqlite::Result<_>>()?;
        let mut changed = Vec::new();
        for (id, owner, expired) in unfinished {
            if !expired && owner.as_deref().is_some_and(owner::is_alive) {
                continue;
            }
            let n = tx
                .prepare_cached(
                    "UPDATE runs SET status = ?1, finished_at_ms = ?2, \
                     error = COALESCE(error, CASE WHEN status = ?6 THEN ?7 ELSE ?3 END), \
                     lease_until_ms = NULL WHERE id = ?4 AND status IN (?5, ?6)",
                )?
                .execute(params![
                    RunStatus::Interrupted,
                    now,
                    INTERRUPTED_ERROR,
                    id,
                    RunStatus::Running,
                    RunStatus::Queued,
                    QUEUED_INTERRUPTED_ERROR
                ])?;
            if n > 0 {
                changed.push(
                    tx.prepare_cached(&format!("SELECT {RUN_COLUMNS} FROM runs WHERE id = ?1"))?
                        .query_row([&id], run_from_row)?,
                );
            }
        }
        // Fires claimed by a node that stopped before recording their run.
        let (before, since) = super::orphan_range(now);
        let orphans: Vec<(String, i64, String)> = tx
            .prepare_cached(
                "SELECT f.job, f.scheduled_at_ms, f.node FROM fires f \
                 WHERE f.claimed_at_ms < ?1 AND f.claimed_at_ms >= ?2 AND NOT EXISTS \
                 (SELECT 1 FROM runs r WHERE r.job = f.job \
                 AND r.scheduled_at_ms = f.scheduled_at_ms AND r.trigger = 'schedule')",
            )?
            .query_map(params![before, since], |row| {
                Ok((row.get(0)?, row.get(1)?, row.get(2)?))
            })?
            .collect::<rusqlite::Result<_>>()?;
        for (job, scheduled_at_ms, node) in orphans {
            let record = RunRecord {
                id: new_run_id(),
                job,
                kind: RunKind::Backup,
                status: RunStatus::Interrupted,
                started_at_ms: now,
                finished_at_ms: Some(now),
                error: Some(super::ORPHAN_ERROR.to_owned()),
                snapshot_id: None,
                bytes: 0,
                result: None,
                attempt: 1,
                trigger: Trigger::Schedule,
                scheduled_at_ms: Some(scheduled_at_ms),
                node: Some(node),
            };
            tx.prepare_cached(
                "INSERT INTO runs (id, job, kind, status, started_at_ms, finished_at_ms, error, \
                 attempt, trigger, scheduled_at_ms, node) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
            )?
            .execute(params![
                record.id,
                record.job,
                record.kind,
                record.status,
                record.started_at_ms,
                record.finished_at_ms,
                record.error,
                record.attempt,
                record.trigger,
                record.scheduled_at_ms,
                record.node
            ])?;
            changed.push(record);
        }
        tx.commit()?;
        Ok(changed)
    }

    fn take_interrupted(
        &self,
        jobs: &[String],
        since_ms: i64,
    ) -> Result<Vec<RunRecord>, StateError> {
        let wanted: std::collections::HashSet<&str> = jobs.iter().map(String::as_str).collect();
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let candidates: Vec<RunRecord> = tx
            .prepare_cached(&format!(
                "SELECT {RUN_COLUMNS} FROM runs WHERE status = 'interrupted' AND reported = 0 \
                 AND finished_at_ms >= ?1 ORDER BY finished_at_ms, id"
            ))?
            .query_map([since_ms], run_from_row)?
            .collect::<rusqlite::Result<_>>()?;
        let taken: Vec<RunRecord> = candidates
            .into_iter()
            .filter(|r| wanted.contains(r.job.as_str()))
            .collect();
        {
            let mut mark = tx.prepare_cached("UPDATE runs SET reported = 1 WHERE id = ?1")?;
            for run in &taken {
                mark.execute([&run.id])?;
            }
        }
        tx.commit()?;
        Ok(taken)
    }

    fn node(&self) -> &str {
        &self.node
    }

    fn renew_lease(&self, id: &str) -> Result<LeaseState, StateError> {
        let conn = self.conn();
        let changed = conn
            .prepare_cached(
                "UPDATE runs SET lease_until_ms = ?2 WHERE id = ?1 \
                 AND status IN ('queued', 'running')",
            )?
            .execute(params![id, now_ms() + lease_ms()])?;
        if changed == 0 {
            return if run_exists(&conn, id)? {
                Ok(LeaseState::Lost)
            } else {
                Err(StateError::NoSuchRun(id.to_owned()))
            };
        }
        let cancel: bool = conn
            .prepare_cached("SELECT cancel_requested FROM runs WHERE id = ?1")?
            .query_row([id], |row| row.get(0))?;
        Ok(if cancel {
            LeaseState::CancelRequested
        } else {
            LeaseState::Held
        })
    }

    fn request_cancel(&self, id: &str) -> Result<bool, StateError> {
        let changed = self
            .conn()
            .prepare_cached(
                "UPDATE runs SET cancel_requested = 1 WHERE id = ?1 \
                 AND status IN ('queued', 'running')",
            )?
            .execute([id])?;
        Ok(changed > 0)
    }

    fn unfinished_runs(&self, job: &str) -> Result<Vec<RunRecord>, StateError> {
        let conn = self.conn();
        let runs = conn
            .prepare_cached(&format!(
                "SELECT {RUN_COLUMNS} FROM runs WHERE job = ?1 \
                 AND status IN ('queued', 'running') ORDER BY started_at_ms, id"
            ))?
            .query_map([job], run_from_row)?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        Ok(runs)
    }

    fn set_schedules(&self, marks: &[(String, String, Option<i64>)]) -> Result<(), StateError> {
        if marks.is_empty() {
            return Ok(());
        }
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        {
            let mut upsert = tx.prepare_cached(
                "INSERT INTO jobs (job, schedule, next_fire_ms, updated_at_ms) \
                 VALUES (?1, ?2, ?3, ?4) ON CONFLICT (job) DO UPDATE SET \
                 schedule = excluded.schedule, next_fire_ms = excluded.next_fire_ms, \
                 updated_at_ms = excluded.updated_at_ms",
            )?;
            let now = now_ms();
            for (job, schedule, next) in marks {
                upsert.execute(params![job, schedule, next, now])?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    fn claim_due(
        &self,
        jobs: &[String],
        now_ms: i64,
        limit: usize,
        planner: &mut dyn FnMut(&str, i64) -> FirePlan,
    ) -> Result<Vec<ClaimedFire>, StateError> {
        let wanted: std::collections::HashSet<&str> = jobs.iter().map(String::as_str).collect();
        let mut conn = self.conn();
        // One writer at a time: the IMMEDIATE transaction is SQLite's claim.
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let due: Vec<(String, i64, bool)> = tx
            .prepare_cached(
                "SELECT job, next_fire_ms, paused FROM jobs \
                 WHERE next_fire_ms IS NOT NULL AND next_fire_ms <= ?1 ORDER BY next_fire_ms",
            )?
            .query_map([now_ms], |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)))?
            .collect::<rusqlite::Result<_>>()?;
        let mut claimed = Vec::new();
        let due = due
            .into_iter()
            .filter(|(job, _, _)| wanted.contains(job.as_str()))
            .take(limit);
        for (job, next, paused) in due {
            let plan = planner(&job, next);
            tx.prepare_cached(
                "UPDATE jobs SET last_scheduled_ms = COALESCE(?2, last_scheduled_ms), \
                 next_fire_ms = ?3, updated_at_ms = ?4 WHERE job = ?1",
            )?
            .execute(params![job, plan.handled, plan.next, now_ms])?;
            let Some(at) = plan.fire.filter(|_| !paused) else {
                continue;
            };
            let inserted = tx
                .prepare_cached(
                    "INSERT INTO fires (job, scheduled_at_ms, node, claimed_at_ms) \
                     VALUES (?1, ?2, ?3, ?4) ON CONFLICT DO NOTHING",
                )?
                .execute(params![job, at, self.node, now_ms])?;
            if inserted > 0 {
                claimed.push(ClaimedFire {
                    job,
                    scheduled_at_ms: at,
                });
            }
        }
        tx.commit()?;
        Ok(claimed)
    }

    fn try_lock(&self, name: &str, holder: &str, ttl: Duration) -> Result<bool, StateError> {
        let now = now_ms();
        let until = now + i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX / 2);
        let changed = self
            .conn()
            .prepare_cached(
                "INSERT INTO locks (name, holder, until_ms) VALUES (?1, ?2, ?3) \
                 ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, \
                 until_ms = excluded.until_ms \
                 WHERE locks.holder = excluded.holder OR locks.until_ms < ?4",
            )?
            .execute(params![name, holder, until, now])?;
        Ok(changed > 0)
    }

    fn unlock(&self, name: &str, holder: &str) -> Result<(), StateError> {
        self.conn()
            .prepare_cached("DELETE FROM locks WHERE name = ?1 AND holder = ?2")?
            .execute([name, holder])?;
        Ok(())
    }

    fn kv_get(&self, job: &str, key: &str) -> Result<Option<String>, StateError> {
        let value = self
            .conn()
            .prepare_cached("SELECT value FROM kv WHERE job = ?1 AND key = ?2")?
            .query_row([job, key], |row| row.get(0))
            .optional()?;
        Ok(value)
    }

    fn kv_set(
        &self,
        job: &str,
        key: &str,
        value: &str,
        limits: KvLimits,
    ) -> Result<(), StateError> {
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let (keys, bytes): (i64, i64) = tx.query_row(
            "SELECT COUNT(*), COALESCE(SUM(LENGTH(CAST(key AS BLOB)) + LENGTH(CAST(value AS BLOB))), 0) \
             FROM kv WHERE job = ?1 AND key <> ?2",
            params![job, key],
            |row| Ok((row.get(0)?, row.get(1)?)),
        )?;
        let keys = u64::try_from(keys).unwrap_or(0) + 1;
        let bytes = u64::try_from(bytes).unwrap_or(0) + (key.len() + value.len()) as u64;
        if keys > limits.keys {
            return Err(StateError::Full {
                job: job.to_owned(),
                have: format!("{keys} keys"),
                limit: format!("{} keys", limits.keys),
                key: "state-keys",
            });
        }
        if bytes > limits.bytes {
            return Err(StateError::Full {
                job: job.to_owned(),
                have: crate::units::format_size(bytes),
                limit: crate::units::format_size(limits.bytes),
                key: "state-limit",
            });
        }
        tx.prepare_cached(
            "INSERT INTO kv (job, key, value, updated_at_ms) VALUES (?1, ?2, ?3, ?4) \
             ON CONFLICT (job, key) DO UPDATE \
             SET value = excluded.value, updated_at_ms = excluded.updated_at_ms",
        )?
        .execute(params![job, key, value, now_ms()])?;
        tx.commit()?;
        Ok(())
    }

    fn kv_delete(&self, job: &str, key: &str) -> Result<(), StateError> {
        self.conn()
            .prepare_cached("DELETE FROM kv WHERE job = ?1 AND key = ?2")?
            .execute([job, key])?;
        Ok(())
    }

    fn kv_keys(&self, job: &str, prefix: &str) -> Result<Vec<String>, StateError> {
        let conn = self.conn();
        let mut stmt =
            conn.prepare_cached("SELECT key FROM kv WHERE job = ?1 AND key >= ?2 ORDER BY key")?;
        let mut rows = stmt.query([job, prefix])?;
        // Keys with the prefix sort together, right from the prefix itself
        // (BINARY collation compares UTF-8 bytes), so stop at the first other.
        let mut keys = Vec::new();
        while let Some(row) = rows.next()? {
            let key: String = row.get(0)?;
            if !key.starts_with(prefix) {
                break;
            }
            keys.push(key);
        }
        Ok(keys)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: KvLimits = KvLimits {
        keys: 1000,
        bytes: 1 << 20,
    };

    fn line(at_ms: i64, level: &str, message: &str, fields: &[(&str, &str)]) -> LogLine {
        LogLine {
            at_ms,
            level: level.to_owned(),
            message: message.to_owned(),
            fields: fields
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
        }
    }

    fn outcome(status: RunStatus) -> RunOutcome {
        RunOutcome {
            status,
            error: None,
            snapshot_id: None,
            bytes: 0,
            result: None,
        }
    }

    /// A fresh directory under the system temp dir, removed on drop.
    struct TempDir(std::path::PathBuf);

    impl TempDir {
        fn new(name: &str) -> Self {
            let dir = std::env::temp_dir().join(format!("cairn-state-{name}-{}", new_run_id()));
            Self(dir)
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    #[test]
    fn default_log_cap() {
        let store = SqliteStore::open_in_memory().unwrap();
        let run = store.start_run("db", RunKind::Backup).unwrap();
        let lines: Vec<_> = (0..10_003).map(|i| line(i, "info", "x", &[])).collect();
        store.append_logs(&run.id, &lines).unwrap();
        let logs = store.logs(&run.id).unwrap();
        assert_eq!(logs.len(), DEFAULT_LOG_CAP + 1);
        assert_eq!(logs[DEFAULT_LOG_CAP].message, "… 3 more log lines dropped");
    }

    #[test]
    fn reconcile_marks_unfinished_runs_interrupted() {
        let store = SqliteStore::open_in_memory().unwrap();
        let running = store.start_run("a", RunKind::Backup).unwrap();
        let done = store.start_run("a", RunKind::Backup).unwrap();
        store
            .finish_run(&done.id, &outcome(RunStatus::Succeeded))
            .unwrap();
        let failed = store.start_run("b", RunKind::Restore).unwrap();
        let failure = RunOutcome {
            error: Some("no".into()),
            ..outcome(RunStatus::Failed)
        };
        store.finish_run(&failed.id, &failure).unwrap();
        let queued = store.start_run("b", RunKind::Backup).unwrap();
        let with_error = store.start_run("c", RunKind::Backup).unwrap();
        {
            let conn = store.conn();
            conn.execute(
                "UPDATE runs SET status = 'queued' WHERE id = ?1",
                [&queued.id],
            )
            .unwrap();
            conn.execute(
                "UPDATE runs SET error = 'earlier' WHERE id = ?1",
                [&with_error.id],
            )
            .unwrap();
            // These runs were started by a process that no longer exists.
            let me = owner::this_process();
            let host = me.rsplitn(3, ':').nth(2).unwrap();
            conn.execute(
                "UPDATE runs SET owner = ?1",
                [format!("{host}:4000000000:1")],
            )
            .unwrap();
        }
        // A run of this (live) process, and one of another host: left alone.
        let alive = store.start_run("d", RunKind::Backup).unwrap();
        let remote = store.start_run("d", RunKind::Backup).unwrap();
        store
            .conn()
            .execute(
                "UPDATE runs SET owner = 'some-other-host:1:1' WHERE id = ?1",
                [&remote.id],
            )
            .unwrap();
        let before = store.run(&done.id).unwrap();
        let failed_before = store.run(&failed.id).unwrap();

        assert_eq!(store.reconcile_interrupted().unwrap().len(), 3);
        for (id, error) in [
            (&running.id, INTERRUPTED_ERROR),
            (&queued.id, QUEUED_INTERRUPTED_ERROR),
        ] {
            let run = store.run(id).unwrap();
            assert_eq!(run.status, RunStatus::Interrupted);
            assert!(run.finished_at_ms.is_some());
            assert_eq!(run.error.as_deref(), Some(error));
        }
        let kept = store.run(&with_error.id).unwrap();
        assert_eq!(kept.status, RunStatus::Interrupted);
        assert_eq!(kept.error.as_deref(), Some("earlier"));
        assert_eq!(store.run(&done.id).unwrap(), before);
        assert_eq!(store.run(&failed.id).unwrap(), failed_before);
        assert_eq!(store.run(&alive.id).unwrap().status, RunStatus::Running);
        assert_eq!(store.run(&remote.id).unwrap().status, RunStatus::Running);

        assert!(store.reconcile_interrupted().unwrap().is_empty());
    }

    fn exclusive(job: &str) -> NewRun {
        NewRun {
            exclusive: true,
            ..NewRun::new(job, RunKind::Backup, Trigger::Schedule)
        }
    }

    #[test]
    fn an_exclusive_run_of_a_dead_process_is_interrupted_and_taken_over() {
        let store = SqliteStore::open_in_memory().unwrap();
        let stale = store.queue_run(&exclusive("db")).unwrap();
        store.mark_running(&stale.id).unwrap();
        let me = owner::this_process();
        let host = me.rsplitn(3, ':').nth(2).unwrap().to_owned();
        store
            .conn()
            .execute(
                "UPDATE runs SET owner = ?1 WHERE id = ?2",
                params![format!("{host}:4000000000:1"), stale.id],
            )
            .unwrap();
        let fresh = store.queue_run(&exclusive("db")).unwrap();
        assert_ne!(fresh.id, stale.id);
        let stale = store.run(&stale.id).unwrap();
        assert_eq!(stale.status, RunStatus::Interrupted);
        assert_eq!(stale.error.as_deref(), Some(INTERRUPTED_ERROR));
    }

    #[test]
    fn file_store_reopens_in_wal_mode() {
        let dir = TempDir::new("reopen");
        let path = dir.0.join("nested/dirs/state.db");
        let id = {
            let store = SqliteStore::open(&path).unwrap();
            let run = store.start_run("db", RunKind::Backup).unwrap();
            store
                .append_logs(&run.id, &[line(1, "info", "hi", &[])])
                .unwrap();
            store.kv_set("db", "k", "v", LIMITS).unwrap();
            run.id
        };
        let store = SqliteStore::open(&path).unwrap();
        assert_eq!(store.run(&id).unwrap().status, RunStatus::Running);
        assert_eq!(store.logs(&id).unwrap().len(), 1);
        assert_eq!(store.kv_get("db", "k").unwrap().as_deref(), Some("v"));

        let conn = store.conn();
        let mode: String = conn
            .pragma_query_value(None, "journal_mode", |r| r.get(0))
            .unwrap();
        assert_eq!(mode, "wal");
        let sync: i64 = conn
            .pragma_query_value(None, "synchronous", |r| r.get(0))
            .unwrap();
        assert_eq!(sync, 1, "NORMAL");
        let fk: i64 = conn
            .pragma_query_value(None, "foreign_keys", |r| r.get(0))
            .unwrap();
        assert_eq!(fk, 1);
        let version: usize = conn
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .unwrap();
        assert_eq!(version, MIGRATIONS.len());
    }

    #[test]
    fn newer_schema_is_refused() {
        let dir = TempDir::new("newer");
        let path = dir.0.join("state.db");
        drop(SqliteStore::open(&path).unwrap());
        Connection::open(&path)
            .unwrap()
            .pragma_update(None, "user_version", MIGRATIONS.len() + 1)
            .unwrap();
        let err = SqliteStore::open(&path).unwrap_err();
        assert!(matches!(err, StateError::Open { .. }), "{err}");
        assert!(err.to_string().contains("newer"), "{err}");
    }

    #[test]
    fn unusable_directory_is_an_open_error() {
        let dir = TempDir::new("blocked");
        std::fs::create_dir_all(&dir.0).unwrap();
        let file = dir.0.join("file");
        std::fs::write(&file, b"").unwrap();
        let err = SqliteStore::open(&file.join("state.db")).unwrap_err();
        assert!(matches!(err, StateError::Open { .. }), "{err}");
        assert!(err.to_string().contains("cannot create directory"), "{err}");
    }

    #[test]
    fn two_connections_share_the_file() {
        let dir = TempDir::new("shared");
        let path = dir.0.join("state.db");
        let one = SqliteStore::open(&path).unwrap();
        let two = SqliteStore::open(&path).unwrap().with_log_cap(3);

        let run = one.start_run("db", RunKind::Backup).unwrap();
        assert_eq!(two.run(&run.id).unwrap(), run);
        two.append_logs(&run.id, &[line(1, "info", "from two", &[])])
            .unwrap();
        one.append_logs(&run.id, &[line(2, "info", "from one", &[])])
            .unwrap();
        let messages: Vec<_> = two
            .logs(&run.id)
            .unwrap()
            .into_iter()
            .map(|l| l.message)
            .collect();
        assert_eq!(messages, ["from two", "from one"]);

        two.finish_run(&run.id, &outcome(RunStatus::Succeeded))
            .unwrap();
        assert_eq!(one.run(&run.id).unwrap().status, RunStatus::Succeeded);
        one.kv_set("db", "k", "1", LIMITS).unwrap();
        assert_eq!(two.kv_get("db", "k").unwrap().as_deref(), Some("1"));

        // Concurrent writers from several threads on both connections.
        let one = std::sync::Arc::new(one);
        let two = std::sync::Arc::new(two);
        let handles: Vec<_> = (0..4)
            .map(|t| {
                let store = if t % 2 == 0 { one.clone() } else { two.clone() };
                std::thread::spawn(move || {
                    for i in 0..25 {
                        let run = store.start_run("busy", RunKind::Backup).unwrap();
                        store
                            .append_logs(&run.id, &[line(i, "info", "x", &[])])
                            .unwrap();
                        store
                            .kv_set("busy", &format!("{t}/{i}"), "v", LIMITS)
                            .unwrap();
                    }
                })
            })
            .collect();
        for handle in handles {
            handle.join().unwrap();
        }
        assert_eq!(one.runs(Some("busy"), 1_000).unwrap().len(), 100);
        assert_eq!(two.kv_keys("busy", "").unwrap().len(), 100);
    }

    #[test]
    fn ids_unique_and_sorted() {
        let ids: Vec<String> = (0..10_000).map(|_| new_run_id()).collect();
        for id in &ids {
            assert_eq!(id.len(), 26);
            assert!(
                id.bytes()
                    .all(|b| b"0123456789ABCDEFGHJKMNPQRSTVWXYZ".contains(&b)),
                "{id}"
            );
        }
        assert!(
            ids.windows(2).all(|w| w[0] < w[1]),
            "not strictly increasing"
        );

        // Ids from other threads (like other processes, random bits differ) are unique too.
        let threads: Vec<_> = (0..4)
            .map(|_| std::thread::spawn(|| (0..1_000).map(|_| new_run_id()).collect::<Vec<_>>()))
            .collect();
        let mut all: Vec<String> = threads
            .into_iter()
            .flat_map(|t| t.join().unwrap())
            .collect();
        all.extend(ids);
        let count = all.len();
        all.sort();
        all.dedup();
        assert_eq!(all.len(), count);

        // The first 10 characters encode the creation time in milliseconds.
        let id = new_run_id();
        let ms = id[..10].bytes().fold(0_i64, |acc, b| {
            let digit = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ"
                .iter()
                .position(|&c| c == b)
                .unwrap();
            acc * 32 + i64::try_from(digit).unwrap()
        });
        assert!((now_ms() - ms).abs() < 60_000, "{id} -> {ms}");
    }

    #[test]
    fn status_and_kind_names_round_trip() {
        for status in RunStatus::ALL {
            assert_eq!(RunStatus::parse(status.as_str()), Some(status));
            assert_eq!(
                serde_json::to_value(status).unwrap(),
                serde_json::Value::from(status.as_str())
            );
        }
        for kind in [RunKind::Backup, RunKind::Restore] {
            assert_eq!(RunKind::parse(kind.as_str()), Some(kind));
            assert_eq!(
                serde_json::to_value(kind).unwrap(),
                serde_json::Value::from(kind.as_str())
            );
        }
        assert_eq!(RunStatus::parse("Running"), None);
        assert_eq!(RunKind::parse(""), None);

        let store = SqliteStore::open_in_memory().unwrap();
        let run = store.start_run("db", RunKind::Backup).unwrap();
        store
            .conn()
            .execute(
                "UPDATE runs SET status = 'exploded' WHERE id = ?1",
                [&run.id],
            )
            .unwrap();
        assert!(matches!(store.run(&run.id), Err(StateError::Query(_))));
    }
}
