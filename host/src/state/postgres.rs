//! PostgreSQL implementation of [`StateStore`], for several daemons on one
//! database (`[state] url = "postgres://…"`).
//!
//! The client is `tokio-postgres`. Its connections are driven by one
//! background thread with its own small runtime, so the store keeps the
//! trait's blocking calls: a call takes an idle connection (or opens one),
//! runs its statements and gives it back. On a multi-threaded runtime the
//! wait is wrapped in `block_in_place`, so other tasks keep running.
//!
//! The schema is versioned in the `cairn_schema` table and brought up to date
//! when the store is opened, under an advisory lock (several nodes may start
//! at once); to change it, append to `MIGRATIONS` (never edit one that has
//! shipped).
//!
//! Coordination between nodes: the due schedules are claimed with `SELECT …
//! FOR UPDATE SKIP LOCKED` and each fire enters the `fires` ledger under its
//! primary key `(job, scheduled_at_ms)`; runs whose lease ran out are
//! reclaimed with `FOR UPDATE SKIP LOCKED` too, so each goes to one node.

use std::future::Future;
use std::str::FromStr as _;
use std::sync::{Mutex, OnceLock, PoisonError};
use std::time::Duration;

use tokio_postgres::error::SqlState;
use tokio_postgres::types::ToSql;
use tokio_postgres::{Client, NoTls, Row};

use super::sqlite::{DEFAULT_LOG_CAP, lease_ms, owner_phrase, this_owner};
use super::{
    ClaimedFire, FirePlan, INTERRUPTED_ERROR, JobState, KvLimits, LeaseState, LogLine, NewRun,
    QUEUED_INTERRUPTED_ERROR, RunKind, RunOutcome, RunRecord, RunStatus, StateError, StateStore,
    Trigger, new_run_id,
};
use crate::model::PostgresState;
use crate::sys::now_ms;

/// How long opening a connection may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Idle connections kept for later calls.
const IDLE_KEPT: usize = 8;

/// Key of the advisory lock held while migrating (any constant; "cairn").
const MIGRATION_LOCK: i64 = 0x63_6169_726e;

/// Schema migrations: entry `i` takes `cairn_schema.version` from `i` to
/// `i + 1`, in one transaction with the version bump.
const MIGRATIONS: &[&str] = &[
    // Version 1: run history with nodes and leases, run logs, per-job
    // key/value state, schedule marks and pause, the fire ledger, named locks.
    r#"
    CREATE TABLE runs (
        id               TEXT COLLATE "C" PRIMARY KEY,
        job              TEXT NOT NULL,
        kind             TEXT NOT NULL,
        status           TEXT NOT NULL,
        started_at_ms    BIGINT NOT NULL,
        finished_at_ms   BIGINT,
        error            TEXT,
        snapshot_id      TEXT,
        bytes            BIGINT NOT NULL DEFAULT 0,
        result           TEXT,
        logs_dropped     BIGINT NOT NULL DEFAULT 0,
        owner            TEXT,
        attempt          INTEGER NOT NULL DEFAULT 1,
        trigger          TEXT NOT NULL DEFAULT 'cli',
        scheduled_at_ms  BIGINT,
        exclusive        BOOLEAN NOT NULL DEFAULT FALSE,
        node             TEXT,
        lease_until_ms   BIGINT,
        cancel_requested BOOLEAN NOT NULL DEFAULT FALSE,
        reported         BOOLEAN NOT NULL DEFAULT FALSE
    );
    CREATE INDEX runs_unreported ON runs (finished_at_ms)
        WHERE status = 'interrupted' AND NOT reported;
    CREATE INDEX runs_job_started ON runs (job, started_at_ms);
    CREATE INDEX runs_started ON runs (started_at_ms);
    CREATE UNIQUE INDEX runs_one_exclusive ON runs (job)
        WHERE exclusive AND status IN ('queued', 'running');
    CREATE INDEX runs_active ON runs (lease_until_ms) WHERE status IN ('queued', 'running');

    CREATE TABLE run_logs (
        run_id      TEXT COLLATE "C" NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
        seq         BIGINT NOT NULL,
        at_ms       BIGINT NOT NULL,
        level       TEXT NOT NULL,
        message     TEXT NOT NULL,
        fields_json TEXT,
        PRIMARY KEY (run_id, seq)
    );

    CREATE TABLE kv (
        job           TEXT NOT NULL,
        key           TEXT COLLATE "C" NOT NULL,
        value         TEXT NOT NULL,
        updated_at_ms BIGINT NOT NULL,
        PRIMARY KEY (job, key)
    );

    CREATE TABLE jobs (
        job               TEXT PRIMARY KEY,
        paused            BOOLEAN NOT NULL DEFAULT FALSE,
        last_scheduled_ms BIGINT,
        next_fire_ms      BIGINT,
        schedule          TEXT,
        updated_at_ms     BIGINT NOT NULL
    );
    CREATE INDEX jobs_next_fire ON jobs (next_fire_ms);

    CREATE INDEX runs_scheduled ON runs (job, scheduled_at_ms) WHERE scheduled_at_ms IS NOT NULL;

    CREATE TABLE fires (
        job             TEXT NOT NULL,
        scheduled_at_ms BIGINT NOT NULL,
        node            TEXT NOT NULL,
        claimed_at_ms   BIGINT NOT NULL,
        PRIMARY KEY (job, scheduled_at_ms)
    );
    CREATE INDEX fires_claimed ON fires (claimed_at_ms);

    CREATE TABLE locks (
        name     TEXT PRIMARY KEY,
        holder   TEXT NOT NULL,
        until_ms BIGINT NOT NULL
    );
    "#,
];

/// Columns of `runs` read into a [`RunRecord`], in [`run_from_row`]'s order.
const RUN_COLUMNS: &str = "id, job, kind, status, started_at_ms, finished_at_ms, error, \
     snapshot_id, bytes, result, attempt, trigger, scheduled_at_ms, node";

/// The runtime that drives every connection: one thread, shared by all stores.
fn driver() -> &'static tokio::runtime::Handle {
    static DRIVER: OnceLock<tokio::runtime::Handle> = OnceLock::new();
    DRIVER.get_or_init(|| {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime for the PostgreSQL connections");
        let handle = rt.handle().clone();
        std::thread::Builder::new()
            .name("cairn-postgres".into())
            .spawn(move || rt.block_on(std::future::pending::<()>()))
            .expect("a thread for the PostgreSQL connections");
        handle
    })
}

/// Wait for `fut` on this thread (the connection is driven elsewhere). On a
/// multi-threaded runtime's worker, other tasks move to other workers.
fn block<F: Future>(fut: F) -> F::Output {
    match tokio::runtime::Handle::try_current() {
        Ok(handle) if handle.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(|| futures::executor::block_on(fut))
        }
        _ => futures::executor::block_on(fut),
    }
}

/// Check a `[state] url`: a `postgres://` or `postgresql://` URL with a host
/// and no password (the password comes from `password-env` or
/// `password-file`). Messages never repeat a password.
///
/// # Errors
/// What is wrong with it and what to write instead.
pub fn check_url(url: &str) -> Result<tokio_postgres::Config, String> {
    let parsed = url::Url::parse(url).map_err(|e| {
        format!(
            "`{}` is not a URL ({e}); write postgres://USER@HOST:PORT/DATABASE",
            redact_url(url)
        )
    })?;
    if !matches!(parsed.scheme(), "postgres" | "postgresql") {
        return Err(format!(
            "the state database URL must start with postgres:// (got `{}:`); for SQLite, \
             set `path` instead of `url`",
            parsed.scheme()
        ));
    }
    if parsed.password().is_some() {
        return Err(
            "the state database URL holds a password: remove it from `url` and set \
             `password-env` or `password-file` in [state]"
                .to_owned(),
        );
    }
    if parsed.host_str().is_none_or(str::is_empty) {
        return Err(format!(
            "`{url}` names no host; write postgres://USER@HOST:PORT/DATABASE"
        ));
    }
    let config = tokio_postgres::Config::from_str(url)
        .map_err(|e| format!("`{url}` is not a PostgreSQL connection URL: {e}"))?;
    if config.get_password().is_some() {
        return Err(
            "the state database URL holds a password (`password=`): remove it and set \
             `password-env` or `password-file` in [state]"
                .to_owned(),
        );
    }
    Ok(config)
}

/// `url` with any password replaced by `***`, for messages.
#[must_use]
pub fn redact_url(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut parsed) if parsed.password().is_some() => {
            let _ = parsed.set_password(Some("***"));
            parsed.to_string()
        }
        Ok(_) => url.to_owned(),
        Err(_) => match (url.find("://"), url.rfind('@')) {
            (Some(scheme), Some(at)) if at > scheme => {
                format!("{}://***@{}", &url[..scheme], &url[at + 1..])
            }
            _ => url.to_owned(),
        },
    }
}

/// `host:port/database` of `config`, for messages.
fn describe(config: &tokio_postgres::Config) -> String {
    use tokio_postgres::config::Host;
    let host = match config.get_hosts().first() {
        Some(Host::Tcp(h)) => h.clone(),
        Some(Host::Unix(p)) => p.display().to_string(),
        None => "localhost".to_owned(),
    };
    let port = config.get_ports().first().copied().unwrap_or(5432);
    let db = config
        .get_dbname()
        .or(config.get_user())
        .unwrap_or("postgres");
    format!("{host}:{port}/{db}")
}

/// Connections to one database.
struct Pool {
    config: tokio_postgres::Config,
    at: String,
    idle: Mutex<Vec<Client>>,
}

/// A connection taken from the pool; back to it when dropped, unless closed.
struct Pooled<'a> {
    pool: &'a Pool,
    client: Option<Client>,
}

impl std::ops::Deref for Pooled<'_> {
    type Target = Client;
    fn deref(&self) -> &Client {
        self.client.as_ref().expect("a client until dropped")
    }
}

impl std::ops::DerefMut for Pooled<'_> {
    fn deref_mut(&mut self) -> &mut Client {
        self.client.as_mut().expect("a client until dropped")
    }
}

impl Drop for Pooled<'_> {
    fn drop(&mut self) {
        if let Some(client) = self.client.take()
            && !client.is_closed()
        {
            let mut idle = self
                .pool
                .idle
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            if idle.len() < IDLE_KEPT {
                idle.push(client);
            }
        }
    }
}

impl Pool {
    /// An idle connection, or a new one.
    fn get(&self) -> Result<Pooled<'_>, StateError> {
        loop {
            let client = self
                .idle
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .pop();
            match client {
                Some(c) if c.is_closed() => {}
                Some(c) => {
                    return Ok(Pooled {
                        pool: self,
                        client: Some(c),
                    });
                }
                None => break,
            }
        }
        let client = self.connect()?;
        Ok(Pooled {
            pool: self,
            client: Some(client),
        })
    }

    /// Open a connection, driven on the [`driver`] thread.
    fn connect(&self) -> Result<Client, StateError> {
        let config = self.config.clone();
        let (tx, rx) = futures::channel::oneshot::channel();
        driver().spawn(async move {
            let result = match tokio::time::timeout(CONNECT_TIMEOUT, config.connect(NoTls)).await {
                Ok(Ok((client, connection))) => {
                    tokio::spawn(async move {
                        if let Err(e) = connection.await {
                            tracing::warn!("state database connection closed: {e}");
                        }
                    });
                    Ok(client)
                }
                Ok(Err(e)) => Err(e.to_string()),
                Err(_) => Err(format!("no answer within {CONNECT_TIMEOUT:?}")),
            };
            let _ = tx.send(result);
        });
        match block(rx) {
            Ok(Ok(client)) => Ok(client),
            Ok(Err(message)) => Err(StateError::Connect {
                at: self.at.clone(),
                message: format!(
                    "{message}; is PostgreSQL running there and reachable, with this user and \
                     database (check `[state] url` and its password)?"
                ),
            }),
            Err(_) => Err(StateError::Connect {
                at: self.at.clone(),
                message: "the connection thread stopped".to_owned(),
            }),
        }
    }
}

/// Run history and job state in a PostgreSQL database shared by several
/// processes and hosts.
pub struct PostgresStore {
    pool: Pool,
    log_cap: usize,
    node: String,
    /// `host:pid:start` of this process, recorded with each run (for people).
    owner: String,
}

impl std::fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresStore")
            .field("at", &self.pool.at)
            .field("node", &self.node)
            .finish_non_exhaustive()
    }
}

impl PostgresStore {
    /// Connect to the database of `settings` (reading its password) and bring
    /// its schema up to date.
    ///
    /// # Errors
    /// [`StateError::Connect`] when the URL is invalid, the password cannot be
    /// read, the server cannot be reached or refuses us, or the schema is
    /// newer than this program's.
    pub fn open(settings: &PostgresState) -> Result<Self, StateError> {
        let mut config = check_url(&settings.url).map_err(|message| StateError::Connect {
            at: redact_url(&settings.url),
            message,
        })?;
        let at = describe(&config);
        if let Some(source) = &settings.password {
            let password = source.read().map_err(|e| StateError::Connect {
                at: at.clone(),
                message: format!("cannot read its password ([state]): {e}"),
            })?;
            config.password(password);
        }
        config.connect_timeout(CONNECT_TIMEOUT);
        if config.get_application_name().is_none() {
            config.application_name("cairn");
        }
        let store = Self {
            pool: Pool {
                config,
                at,
                idle: Mutex::new(Vec::new()),
            },
            log_cap: DEFAULT_LOG_CAP,
            node: crate::sys::hostname(),
            owner: this_owner(),
        };
        store.migrate()?;
        Ok(store)
    }

    /// Record `node` on the runs this store starts (default: the host name).
    #[must_use]
    pub fn with_node(mut self, node: &str) -> Self {
        node.clone_into(&mut self.node);
        self
    }

    /// Keep at most `cap` log lines per run (default [`DEFAULT_LOG_CAP`]).
    #[must_use]
    pub fn with_log_cap(mut self, cap: usize) -> Self {
        self.log_cap = cap;
        self
    }

    /// `host:port/database`, for messages.
    #[must_use]
    pub fn location(&self) -> &str {
        &self.pool.at
    }

    /// Apply the migrations the database has not seen yet.
    fn migrate(&self) -> Result<(), StateError> {
        let known = i32::try_from(MIGRATIONS.len()).unwrap_or(i32::MAX);
        let mut client = self.pool.get()?;
        let at = self.pool.at.clone();
        block(async {
            let tx = client.transaction().await?;
            tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
                .await?;
            tx.batch_execute("CREATE TABLE IF NOT EXISTS cairn_schema (version INTEGER NOT NULL)")
                .await?;
            let version: i32 = match tx
                .query_opt("SELECT version FROM cairn_schema", &[])
                .await?
            {
                Some(row) => row.get(0),
                None => {
                    tx.execute("INSERT INTO cairn_schema (version) VALUES (0)", &[])
                        .await?;
                    0
                }
            };
            if version > known {
                return Err(StateError::Connect {
                    at,
                    message: format!(
                        "the database has schema version {version}, newer than the {known} \
                         this program knows; use a newer cairn"
                    ),
                });
            }
            for (from, sql) in MIGRATIONS.iter().enumerate().skip(version as usize) {
                tx.batch_execute(sql).await?;
                let to = i32::try_from(from + 1).unwrap_or(i32::MAX);
                tx.execute("UPDATE cairn_schema SET version = $1", &[&to])
                    .await?;
            }
            tx.commit().await?;
            Ok(())
        })
    }

    /// Run `f` with a connection.
    fn with<T>(
        &self,
        f: impl AsyncFnOnce(&mut Client) -> Result<T, StateError>,
    ) -> Result<T, StateError> {
        let mut client = self.pool.get()?;
        block(f(&mut *client))
    }

    /// Insert `new` with `status` (and `error`, `finished` for a finished one).
    fn insert_run(
        &self,
        new: &NewRun,
        status: RunStatus,
        error: Option<&str>,
    ) -> Result<RunRecord, StateError> {
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
        let attempt = i32::try_from(record.attempt).unwrap_or(i32::MAX);
        let exclusive = new.exclusive && !status.is_finished();
        self.with(async |c| {
            c.execute(
                "INSERT INTO runs (id, job, kind, status, started_at_ms, finished_at_ms, error, \
                 owner, attempt, trigger, scheduled_at_ms, exclusive, node, lease_until_ms) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)",
                &[
                    &record.id,
                    &record.job,
                    &record.kind.as_str(),
                    &record.status.as_str(),
                    &record.started_at_ms,
                    &record.finished_at_ms,
                    &record.error,
                    &self.owner,
                    &attempt,
                    &record.trigger.as_str(),
                    &record.scheduled_at_ms,
                    &exclusive,
                    &record.node,
                    &lease,
                ],
            )
            .await?;
            Ok(())
        })?;
        Ok(record)
    }
}

/// Read a row selected with [`RUN_COLUMNS`].
fn run_from_row(row: &Row) -> Result<RunRecord, StateError> {
    let kind: &str = row.try_get(2)?;
    let status: &str = row.try_get(3)?;
    let trigger: &str = row.try_get(11)?;
    let bytes: i64 = row.try_get(8)?;
    let attempt: i32 = row.try_get(10)?;
    Ok(RunRecord {
        id: row.try_get(0)?,
        job: row.try_get(1)?,
        kind: RunKind::parse(kind)
            .ok_or_else(|| StateError::Corrupt(format!("unknown run kind `{kind}`")))?,
        status: RunStatus::parse(status)
            .ok_or_else(|| StateError::Corrupt(format!("unknown run status `{status}`")))?,
        started_at_ms: row.try_get(4)?,
        finished_at_ms: row.try_get(5)?,
        error: row.try_get(6)?,
        snapshot_id: row.try_get(7)?,
        bytes: u64::try_from(bytes).unwrap_or(0),
        result: row.try_get(9)?,
        attempt: u32::try_from(attempt).unwrap_or(1),
        trigger: Trigger::parse(trigger)
            .ok_or_else(|| StateError::Corrupt(format!("unknown run trigger `{trigger}`")))?,
        scheduled_at_ms: row.try_get(12)?,
        node: row.try_get(13)?,
    })
}

/// Store fields as a JSON array of `[name, value]` pairs; none as NULL.
fn fields_to_json(fields: &[(String, String)]) -> Option<String> {
    if fields.is_empty() {
        None
    } else {
        serde_json::to_string(fields).ok()
    }
}

/// The line standing for `dropped` lines that were not stored.
fn dropped_message(dropped: u64) -> String {
    let lines = if dropped == 1 { "line" } else { "lines" };
    format!("… {dropped} more log {lines} dropped")
}

/// Whether `err` is a violation of a unique constraint or index.
fn is_unique_violation(err: &StateError) -> bool {
    matches!(err, StateError::Postgres(e) if e.code() == Some(&SqlState::UNIQUE_VIOLATION))
}

/// Saturate byte counts into BIGINT.
fn bytes_to_sql(bytes: u64) -> i64 {
    i64::try_from(bytes).unwrap_or(i64::MAX)
}

impl StateStore for PostgresStore {
    fn start_run(&self, job: &str, kind: RunKind) -> Result<RunRecord, StateError> {
        self.insert_run(
            &NewRun::new(job, kind, Trigger::Cli),
            RunStatus::Running,
            None,
        )
    }

    fn queue_run(&self, new: &NewRun) -> Result<RunRecord, StateError> {
        match self.insert_run(new, RunStatus::Queued, None) {
            Err(e) if is_unique_violation(&e) => {}
            other => return other,
        }
        // Another exclusive run holds the job. If its lease ran out, its node
        // stopped: mark it interrupted and try once more.
        let holder = self.with(async |c| {
            Ok(c.query_opt(
                "SELECT id, owner, node, COALESCE(lease_until_ms >= $2, TRUE) FROM runs \
                 WHERE job = $1 AND exclusive AND status IN ('queued', 'running')",
                &[&new.job, &now_ms()],
            )
            .await?
            .map(|row| {
                let id: String = row.get(0);
                let owner: Option<String> = row.get(1);
                let node: Option<String> = row.get(2);
                let held: bool = row.get(3);
                (id, owner, node, held)
            }))
        })?;
        let Some((run, owner, node, held)) = holder else {
            return self.insert_run(new, RunStatus::Queued, None);
        };
        let by = format!(
            "on node {} ({})",
            node.as_deref().unwrap_or("?"),
            owner_phrase(owner.as_deref())
        );
        if held {
            return Err(StateError::Busy {
                job: new.job.clone(),
                run,
                by,
            });
        }
        self.with(async |c| {
            c.execute(
                "UPDATE runs SET status = 'interrupted', finished_at_ms = $2, \
                 error = COALESCE(error, CASE WHEN status = 'queued' THEN $4 ELSE $3 END), \
                 lease_until_ms = NULL \
                 WHERE id = $1 AND status IN ('queued', 'running') AND lease_until_ms < $2",
                &[
                    &run,
                    &now_ms(),
                    &INTERRUPTED_ERROR,
                    &QUEUED_INTERRUPTED_ERROR,
                ],
            )
            .await?;
            Ok(())
        })?;
        self.insert_run(new, RunStatus::Queued, None).map_err(|e| {
            if is_unique_violation(&e) {
                StateError::Busy {
                    job: new.job.clone(),
                    run: run.clone(),
                    by: by.clone(),
                }
            } else {
                e
            }
        })
    }

    fn mark_running(&self, id: &str) -> Result<RunRecord, StateError> {
        let now = now_ms();
        let row = self.with(async |c| {
            Ok(c.query_opt(
                &format!(
                    "UPDATE runs SET status = 'running', started_at_ms = $2, \
                     lease_until_ms = $3 WHERE id = $1 AND status = 'queued' \
                     RETURNING {RUN_COLUMNS}"
                ),
                &[&id, &now, &(now + lease_ms())],
            )
            .await?)
        })?;
        match row {
            Some(row) => run_from_row(&row),
            None => Err(StateError::NoSuchRun(id.to_owned())),
        }
    }

    fn record_skipped(&self, new: &NewRun, reason: &str) -> Result<RunRecord, StateError> {
        self.insert_run(new, RunStatus::Skipped, Some(reason))
    }

    fn prune_runs(&self, job: &str, keep: usize) -> Result<usize, StateError> {
        let keep = i64::try_from(keep).unwrap_or(i64::MAX);
        let deleted = self.with(async |c| {
            Ok(c.execute(
                "DELETE FROM runs WHERE job = $1 AND status NOT IN ('queued', 'running') \
                 AND id NOT IN (SELECT id FROM runs WHERE job = $1 \
                 ORDER BY started_at_ms DESC, id DESC LIMIT $2)",
                &[&job, &keep],
            )
            .await?)
        })?;
        Ok(usize::try_from(deleted).unwrap_or(usize::MAX))
    }

    fn job_states(&self) -> Result<std::collections::BTreeMap<String, JobState>, StateError> {
        let rows = self.with(async |c| {
            Ok(c.query(
                "SELECT job, paused, last_scheduled_ms, next_fire_ms, schedule FROM jobs",
                &[],
            )
            .await?)
        })?;
        rows.iter()
            .map(|row| {
                Ok((
                    row.try_get(0)?,
                    JobState {
                        paused: row.try_get(1)?,
                        last_scheduled_ms: row.try_get(2)?,
                        next_fire_ms: row.try_get(3)?,
                        schedule: row.try_get(4)?,
                    },
                ))
            })
            .collect()
    }

    fn set_paused(&self, job: &str, paused: bool) -> Result<(), StateError> {
        self.with(async |c| {
            c.execute(
                "INSERT INTO jobs (job, paused, updated_at_ms) VALUES ($1, $2, $3) \
                 ON CONFLICT (job) DO UPDATE \
                 SET paused = excluded.paused, updated_at_ms = excluded.updated_at_ms",
                &[&job, &paused, &now_ms()],
            )
            .await?;
            Ok(())
        })
    }

    fn set_fire_marks(
        &self,
        marks: &[(String, Option<i64>, Option<i64>)],
    ) -> Result<(), StateError> {
        if marks.is_empty() {
            return Ok(());
        }
        let jobs: Vec<&str> = marks.iter().map(|m| m.0.as_str()).collect();
        let lasts: Vec<Option<i64>> = marks.iter().map(|m| m.1).collect();
        let nexts: Vec<Option<i64>> = marks.iter().map(|m| m.2).collect();
        self.with(async |c| {
            c.execute(
                "INSERT INTO jobs (job, last_scheduled_ms, next_fire_ms, updated_at_ms) \
                 SELECT j, l, n, $4 FROM UNNEST($1::text[], $2::bigint[], $3::bigint[]) \
                 AS m (j, l, n) \
                 ON CONFLICT (job) DO UPDATE SET \
                 last_scheduled_ms = COALESCE(excluded.last_scheduled_ms, jobs.last_scheduled_ms), \
                 next_fire_ms = excluded.next_fire_ms, updated_at_ms = excluded.updated_at_ms",
                &[&jobs, &lasts, &nexts, &now_ms()],
            )
            .await?;
            Ok(())
        })
    }

    fn finish_run(&self, id: &str, outcome: &RunOutcome) -> Result<(), StateError> {
        let changed = self.with(async |c| {
            let changed = c
                .execute(
                    "UPDATE runs SET status = $2, finished_at_ms = $3, error = $4, \
                     snapshot_id = $5, bytes = $6, result = $7, lease_until_ms = NULL \
                     WHERE id = $1 AND status <> 'interrupted'",
                    &[
                        &id,
                        &outcome.status.as_str(),
                        &now_ms(),
                        &outcome.error,
                        &outcome.snapshot_id,
                        &bytes_to_sql(outcome.bytes),
                        &outcome.result,
                    ],
                )
                .await?;
            if changed > 0 {
                return Ok(true);
            }
            Ok(c.query_opt("SELECT 1 FROM runs WHERE id = $1", &[&id])
                .await?
                .is_some())
        })?;
        if changed {
            Ok(())
        } else {
            Err(StateError::NoSuchRun(id.to_owned()))
        }
    }

    fn append_logs(&self, id: &str, lines: &[LogLine]) -> Result<(), StateError> {
        let cap = i64::try_from(self.log_cap).unwrap_or(i64::MAX);
        self.with(async |c| {
            let tx = c.transaction().await?;
            // The run's row lock orders concurrent appends to one run.
            let Some(row) = tx
                .query_opt(
                    "SELECT logs_dropped, (SELECT COALESCE(MAX(seq) + 1, 0) FROM run_logs \
                     WHERE run_id = $1) FROM runs WHERE id = $1 FOR UPDATE",
                    &[&id],
                )
                .await?
            else {
                return Err(StateError::NoSuchRun(id.to_owned()));
            };
            if lines.is_empty() {
                return Ok(());
            }
            let dropped: i64 = row.get(0);
            let next_seq: i64 = row.get(1);
            let stored = next_seq.min(cap);
            let room = usize::try_from(cap - stored).unwrap_or(usize::MAX);
            let (kept, over) = lines.split_at(room.min(lines.len()));
            if !kept.is_empty() {
                let seqs: Vec<i64> = (stored..).take(kept.len()).collect();
                let ats: Vec<i64> = kept.iter().map(|l| l.at_ms).collect();
                let levels: Vec<&str> = kept.iter().map(|l| l.level.as_str()).collect();
                let messages: Vec<&str> = kept.iter().map(|l| l.message.as_str()).collect();
                let fields: Vec<Option<String>> =
                    kept.iter().map(|l| fields_to_json(&l.fields)).collect();
                tx.execute(
                    "INSERT INTO run_logs (run_id, seq, at_ms, level, message, fields_json) \
                     SELECT $1, s, a, l, m, f FROM UNNEST($2::bigint[], $3::bigint[], \
                     $4::text[], $5::text[], $6::text[]) AS x (s, a, l, m, f)",
                    &[&id, &seqs, &ats, &levels, &messages, &fields],
                )
                .await?;
            }
            if let Some(last) = over.last() {
                let over = i64::try_from(over.len()).unwrap_or(i64::MAX);
                let dropped = dropped.saturating_add(over);
                tx.execute(
                    "UPDATE runs SET logs_dropped = $2 WHERE id = $1",
                    &[&id, &dropped],
                )
                .await?;
                let count = u64::try_from(dropped).unwrap_or(0);
                let fields = fields_to_json(&[("dropped".to_owned(), count.to_string())]);
                tx.execute(
                    "INSERT INTO run_logs (run_id, seq, at_ms, level, message, fields_json) \
                     VALUES ($1, $2, $3, 'warn', $4, $5) ON CONFLICT (run_id, seq) DO UPDATE \
                     SET at_ms = excluded.at_ms, message = excluded.message, \
                     fields_json = excluded.fields_json",
                    &[&id, &cap, &last.at_ms, &dropped_message(count), &fields],
                )
                .await?;
            }
            tx.commit().await?;
            Ok(())
        })
    }

    fn run(&self, id: &str) -> Result<RunRecord, StateError> {
        let row = self.with(async |c| {
            Ok(c.query_opt(
                &format!("SELECT {RUN_COLUMNS} FROM runs WHERE id = $1"),
                &[&id],
            )
            .await?)
        })?;
        match row {
            Some(row) => run_from_row(&row),
            None => Err(StateError::NoSuchRun(id.to_owned())),
        }
    }

    fn runs(&self, job: Option<&str>, limit: usize) -> Result<Vec<RunRecord>, StateError> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows = self.with(async |c| {
            Ok(match job {
                Some(job) => {
                    c.query(
                        &format!(
                            "SELECT {RUN_COLUMNS} FROM runs WHERE job = $1 \
                             ORDER BY started_at_ms DESC, id DESC LIMIT $2"
                        ),
                        &[&job, &limit],
                    )
                    .await?
                }
                None => {
                    c.query(
                        &format!(
                            "SELECT {RUN_COLUMNS} FROM runs \
                             ORDER BY started_at_ms DESC, id DESC LIMIT $1"
                        ),
                        &[&limit],
                    )
                    .await?
                }
            })
        })?;
        rows.iter().map(run_from_row).collect()
    }

    fn logs(&self, id: &str) -> Result<Vec<LogLine>, StateError> {
        let (rows, exists) = self.with(async |c| {
            let rows = c
                .query(
                    "SELECT at_ms, level, message, fields_json FROM run_logs \
                     WHERE run_id = $1 ORDER BY seq",
                    &[&id],
                )
                .await?;
            let exists = !rows.is_empty()
                || c.query_opt("SELECT 1 FROM runs WHERE id = $1", &[&id])
                    .await?
                    .is_some();
            Ok((rows, exists))
        })?;
        if !exists {
            return Err(StateError::NoSuchRun(id.to_owned()));
        }
        rows.iter()
            .map(|row| {
                let fields: Option<String> = row.try_get(3)?;
                let fields = match fields {
                    None => Vec::new(),
                    Some(json) => serde_json::from_str(&json)
                        .map_err(|e| StateError::Corrupt(format!("log fields: {e}")))?,
                };
                Ok(LogLine {
                    at_ms: row.try_get(0)?,
                    level: row.try_get(1)?,
                    message: row.try_get(2)?,
                    fields,
                })
            })
            .collect()
    }

    fn reconcile_interrupted(&self) -> Result<Vec<RunRecord>, StateError> {
        let now = now_ms();
        let (before, since) = super::orphan_range(now);
        let rows = self.with(async |c| {
            let mut rows = c
                .query(
                    &format!(
                        "UPDATE runs SET status = 'interrupted', finished_at_ms = $1, \
                         error = COALESCE(error, CASE WHEN status = 'queued' THEN $3 ELSE $2 END), \
                         lease_until_ms = NULL \
                         WHERE id IN (SELECT id FROM runs WHERE status IN ('queued', 'running') \
                         AND lease_until_ms < $1 FOR UPDATE SKIP LOCKED) \
                         AND status IN ('queued', 'running') RETURNING {RUN_COLUMNS}"
                    ),
                    &[&now, &INTERRUPTED_ERROR, &QUEUED_INTERRUPTED_ERROR],
                )
                .await?;
            // Fires claimed by a node that stopped before recording their
            // run; the ledger rows are locked so one node records each.
            let tx = c.transaction().await?;
            let orphans = tx
                .query(
                    "SELECT f.job, f.scheduled_at_ms, f.node FROM fires f \
                     WHERE f.claimed_at_ms < $1 AND f.claimed_at_ms >= $2 AND NOT EXISTS \
                     (SELECT 1 FROM runs r WHERE r.job = f.job \
                     AND r.scheduled_at_ms = f.scheduled_at_ms AND r.trigger = 'schedule') \
                     FOR UPDATE OF f SKIP LOCKED",
                    &[&before, &since],
                )
                .await?;
            for orphan in &orphans {
                let job: &str = orphan.try_get(0)?;
                let scheduled: i64 = orphan.try_get(1)?;
                let node: &str = orphan.try_get(2)?;
                rows.push(
                    tx.query_one(
                        &format!(
                            "INSERT INTO runs (id, job, kind, status, started_at_ms, \
                             finished_at_ms, error, attempt, trigger, scheduled_at_ms, node) \
                             VALUES ($1, $2, 'backup', 'interrupted', $3, $3, $4, 1, 'schedule', \
                             $5, $6) RETURNING {RUN_COLUMNS}"
                        ),
                        &[
                            &new_run_id(),
                            &job,
                            &now,
                            &super::ORPHAN_ERROR,
                            &scheduled,
                            &node,
                        ],
                    )
                    .await?,
                );
            }
            tx.commit().await?;
            Ok(rows)
        })?;
        rows.iter().map(run_from_row).collect()
    }

    fn take_interrupted(
        &self,
        jobs: &[String],
        since_ms: i64,
    ) -> Result<Vec<RunRecord>, StateError> {
        let rows = self.with(async |c| {
            Ok(c.query(
                &format!(
                    "UPDATE runs SET reported = TRUE WHERE id IN (SELECT id FROM runs \
                     WHERE status = 'interrupted' AND NOT reported AND finished_at_ms >= $1 \
                     AND job = ANY($2) FOR UPDATE SKIP LOCKED) AND NOT reported \
                     RETURNING {RUN_COLUMNS}"
                ),
                &[&since_ms, &jobs],
            )
            .await?)
        })?;
        let mut runs: Vec<RunRecord> = rows.iter().map(run_from_row).collect::<Result<_, _>>()?;
        runs.sort_by(|a, b| (a.finished_at_ms, &a.id).cmp(&(b.finished_at_ms, &b.id)));
        Ok(runs)
    }

    fn node(&self) -> &str {
        &self.node
    }

    fn renew_lease(&self, id: &str) -> Result<LeaseState, StateError> {
        let row = self.with(async |c| {
            Ok(c.query_opt(
                "UPDATE runs SET lease_until_ms = CASE WHEN status IN ('queued', 'running') \
                 THEN $2 ELSE lease_until_ms END WHERE id = $1 \
                 RETURNING status IN ('queued', 'running'), cancel_requested",
                &[&id, &(now_ms() + lease_ms())],
            )
            .await?)
        })?;
        let Some(row) = row else {
            return Err(StateError::NoSuchRun(id.to_owned()));
        };
        let (unfinished, cancel): (bool, bool) = (row.try_get(0)?, row.try_get(1)?);
        Ok(match (unfinished, cancel) {
            (false, _) => LeaseState::Lost,
            (true, true) => LeaseState::CancelRequested,
            (true, false) => LeaseState::Held,
        })
    }

    fn request_cancel(&self, id: &str) -> Result<bool, StateError> {
        let changed = self.with(async |c| {
            Ok(c.execute(
                "UPDATE runs SET cancel_requested = TRUE WHERE id = $1 \
                 AND status IN ('queued', 'running')",
                &[&id],
            )
            .await?)
        })?;
        Ok(changed > 0)
    }

    fn unfinished_runs(&self, job: &str) -> Result<Vec<RunRecord>, StateError> {
        let rows = self.with(async |c| {
            Ok(c.query(
                &format!(
                    "SELECT {RUN_COLUMNS} FROM runs WHERE job = $1 \
                     AND status IN ('queued', 'running') ORDER BY started_at_ms, id"
                ),
                &[&job],
            )
            .await?)
        })?;
        rows.iter().map(run_from_row).collect()
    }

    fn set_schedules(&self, marks: &[(String, String, Option<i64>)]) -> Result<(), StateError> {
        if marks.is_empty() {
            return Ok(());
        }
        let jobs: Vec<&str> = marks.iter().map(|m| m.0.as_str()).collect();
        let schedules: Vec<&str> = marks.iter().map(|m| m.1.as_str()).collect();
        let nexts: Vec<Option<i64>> = marks.iter().map(|m| m.2).collect();
        self.with(async |c| {
            c.execute(
                "INSERT INTO jobs (job, schedule, next_fire_ms, updated_at_ms) \
                 SELECT j, s, n, $4 FROM UNNEST($1::text[], $2::text[], $3::bigint[]) \
                 AS m (j, s, n) \
                 ON CONFLICT (job) DO UPDATE SET schedule = excluded.schedule, \
                 next_fire_ms = excluded.next_fire_ms, updated_at_ms = excluded.updated_at_ms",
                &[&jobs, &schedules, &nexts, &now_ms()],
            )
            .await?;
            Ok(())
        })
    }

    fn claim_due(
        &self,
        jobs: &[String],
        now_ms: i64,
        limit: usize,
        planner: &mut dyn FnMut(&str, i64) -> FirePlan,
    ) -> Result<Vec<ClaimedFire>, StateError> {
        let node = self.node.clone();
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.with(async |c| {
            let tx = c.transaction().await?;
            // Rows another node is claiming right now are skipped, not waited
            // for: that node fires them.
            let due = tx
                .query(
                    "SELECT job, next_fire_ms, paused FROM jobs \
                     WHERE next_fire_ms <= $1 AND job = ANY($2) \
                     ORDER BY next_fire_ms LIMIT $3 FOR UPDATE SKIP LOCKED",
                    &[&now_ms, &jobs, &limit],
                )
                .await?;
            let mut claimed = Vec::new();
            let mut update_jobs: Vec<String> = Vec::new();
            let mut handled: Vec<Option<i64>> = Vec::new();
            let mut nexts: Vec<Option<i64>> = Vec::new();
            let mut fire_jobs: Vec<String> = Vec::new();
            let mut fire_at: Vec<i64> = Vec::new();
            for row in &due {
                let job: String = row.try_get(0)?;
                let next: i64 = row.try_get(1)?;
                let paused: bool = row.try_get(2)?;
                let plan = planner(&job, next);
                update_jobs.push(job.clone());
                handled.push(plan.handled);
                nexts.push(plan.next);
                if let Some(at) = plan.fire.filter(|_| !paused) {
                    fire_jobs.push(job);
                    fire_at.push(at);
                }
            }
            if !update_jobs.is_empty() {
                tx.execute(
                    "UPDATE jobs SET last_scheduled_ms = COALESCE(m.h, jobs.last_scheduled_ms), \
                     next_fire_ms = m.n, updated_at_ms = $4 \
                     FROM UNNEST($1::text[], $2::bigint[], $3::bigint[]) AS m (j, h, n) \
                     WHERE jobs.job = m.j",
                    &[&update_jobs, &handled, &nexts, &now_ms],
                )
                .await?;
            }
            if !fire_jobs.is_empty() {
                let params: [&(dyn ToSql + Sync); 4] = [&fire_jobs, &fire_at, &node, &now_ms];
                let rows = tx
                    .query(
                        "INSERT INTO fires (job, scheduled_at_ms, node, claimed_at_ms) \
                         SELECT j, a, $3, $4 FROM UNNEST($1::text[], $2::bigint[]) AS f (j, a) \
                         ON CONFLICT DO NOTHING RETURNING job, scheduled_at_ms",
                        &params,
                    )
                    .await?;
                for row in rows {
                    claimed.push(ClaimedFire {
                        job: row.try_get(0)?,
                        scheduled_at_ms: row.try_get(1)?,
                    });
                }
            }
            tx.commit().await?;
            claimed.sort_by_key(|c| c.scheduled_at_ms);
            Ok(claimed)
        })
    }

    fn try_lock(&self, name: &str, holder: &str, ttl: Duration) -> Result<bool, StateError> {
        let now = now_ms();
        let until = now + i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX / 2);
        let changed = self.with(async |c| {
            Ok(c.execute(
                "INSERT INTO locks (name, holder, until_ms) VALUES ($1, $2, $3) \
                 ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, \
                 until_ms = excluded.until_ms \
                 WHERE locks.holder = excluded.holder OR locks.until_ms < $4",
                &[&name, &holder, &until, &now],
            )
            .await?)
        })?;
        Ok(changed > 0)
    }

    fn unlock(&self, name: &str, holder: &str) -> Result<(), StateError> {
        self.with(async |c| {
            c.execute(
                "DELETE FROM locks WHERE name = $1 AND holder = $2",
                &[&name, &holder],
            )
            .await?;
            Ok(())
        })
    }

    fn kv_get(&self, job: &str, key: &str) -> Result<Option<String>, StateError> {
        self.with(async |c| {
            Ok(c.query_opt(
                "SELECT value FROM kv WHERE job = $1 AND key = $2",
                &[&job, &key],
            )
            .await?
            .map(|row| row.get(0)))
        })
    }

    fn kv_set(
        &self,
        job: &str,
        key: &str,
        value: &str,
        limits: KvLimits,
    ) -> Result<(), StateError> {
        self.with(async |c| {
            let tx = c.transaction().await?;
            // One writer per job at a time, so the limits hold across nodes.
            tx.execute("SELECT pg_advisory_xact_lock(hashtext($1))", &[&job])
                .await?;
            let row = tx
                .query_one(
                    "SELECT COUNT(*), COALESCE(SUM(octet_length(key) + octet_length(value)), 0)::BIGINT \
                     FROM kv WHERE job = $1 AND key <> $2",
                    &[&job, &key],
                )
                .await?;
            let (keys, bytes): (i64, i64) = (row.get(0), row.get(1));
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
            tx.execute(
                "INSERT INTO kv (job, key, value, updated_at_ms) VALUES ($1, $2, $3, $4) \
                 ON CONFLICT (job, key) DO UPDATE \
                 SET value = excluded.value, updated_at_ms = excluded.updated_at_ms",
                &[&job, &key, &value, &now_ms()],
            )
            .await?;
            tx.commit().await?;
            Ok(())
        })
    }

    fn kv_delete(&self, job: &str, key: &str) -> Result<(), StateError> {
        self.with(async |c| {
            c.execute("DELETE FROM kv WHERE job = $1 AND key = $2", &[&job, &key])
                .await?;
            Ok(())
        })
    }

    fn kv_keys(&self, job: &str, prefix: &str) -> Result<Vec<String>, StateError> {
        let rows = self.with(async |c| {
            Ok(c.query(
                "SELECT key FROM kv WHERE job = $1 AND key >= $2 ORDER BY key",
                &[&job, &prefix],
            )
            .await?)
        })?;
        // Keys with the prefix sort together from the prefix itself (the key
        // column's "C" collation compares bytes), so stop at the first other.
        let mut keys = Vec::new();
        for row in rows {
            let key: String = row.try_get(0)?;
            if !key.starts_with(prefix) {
                break;
            }
            keys.push(key);
        }
        Ok(keys)
    }
}

#[cfg(test)]
impl PostgresStore {
    /// Run `sql` (tests reach under the store with it).
    pub(crate) fn execute_batch_for_tests(&self, sql: &str) {
        self.with(async |c| Ok(c.batch_execute(sql).await?))
            .expect("test SQL runs");
    }
}

/// Fresh databases on the local test server (127.0.0.1:5432, trust auth,
/// user `postgres`), dropped afterwards.
#[cfg(test)]
pub(crate) mod testing {
    use super::*;

    /// The test server's admin URL.
    pub const ADMIN_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";

    /// A database made for one test; dropped (with its connections) on drop.
    pub struct TestDatabase {
        pub name: String,
    }

    fn admin(sql: &str) -> Result<(), String> {
        let config = tokio_postgres::Config::from_str(ADMIN_URL).map_err(|e| e.to_string())?;
        let pool = Pool {
            at: describe(&config),
            config,
            idle: Mutex::new(Vec::new()),
        };
        let client = pool.get().map_err(|e| e.to_string())?;
        block(client.batch_execute(sql)).map_err(|e| e.to_string())
    }

    impl TestDatabase {
        /// Create a fresh database, failing the test with what to do when
        /// the server is not there.
        pub fn create() -> Self {
            let name = format!("cairn_test_{}", new_run_id().to_lowercase());
            if let Err(e) = admin(&format!("CREATE DATABASE {name}")) {
                panic!(
                    "these tests need PostgreSQL on 127.0.0.1:5432 with trust authentication \
                     for user `postgres` (.ci/run starts it): {e}"
                );
            }
            Self { name }
        }

        /// Its settings.
        pub fn settings(&self) -> PostgresState {
            PostgresState {
                url: format!("postgres://postgres@127.0.0.1:5432/{}", self.name),
                password: None,
            }
        }

        /// A store on it.
        pub fn store(&self) -> PostgresStore {
            PostgresStore::open(&self.settings()).expect("open the test database")
        }
    }

    impl Drop for TestDatabase {
        fn drop(&mut self) {
            let _ = admin(&format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                self.name
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::testing::TestDatabase;
    use super::*;
    use crate::model::SecretSource;

    #[test]
    fn urls_with_passwords_or_without_hosts_are_refused_without_echoing_the_password() {
        for (url, expected) in [
            ("postgres://cairn:hunter2@db:5432/cairn", "holds a password"),
            ("postgres://db/cairn?password=hunter2", "holds a password"),
            ("mysql://db/cairn", "must start with postgres://"),
            ("not a url hunter2@x", "is not a URL"),
            ("postgres:///cairn", "names no host"),
        ] {
            let err = check_url(url).unwrap_err();
            assert!(err.contains(expected), "{url}: {err}");
            assert!(
                !err.contains("hunter2") || expected == "is not a URL",
                "{err}"
            );
        }
        assert_eq!(
            redact_url("postgres://cairn:hunter2@db:5432/cairn"),
            "postgres://cairn:***@db:5432/cairn"
        );
        assert!(!redact_url("not a url://u:hunter2@x").contains("hunter2"));
        let config = check_url("postgresql://cairn@db.internal:6543/state").unwrap();
        assert_eq!(describe(&config), "db.internal:6543/state");
    }

    #[test]
    fn an_unreachable_server_is_named_with_what_to_do() {
        // Nothing listens on port 1.
        let err = PostgresStore::open(&PostgresState {
            url: "postgres://cairn@127.0.0.1:1/cairn".into(),
            password: Some(SecretSource::Env(
                "CAIRN_TEST_PG_PASSWORD_NEVER_LOGGED".into(),
            )),
        })
        .unwrap_err();
        let text = err.to_string();
        assert!(text.contains("127.0.0.1:1/cairn"), "{text}");
        assert!(text.contains("password"), "{text}");
        // The password variable is unset: that is the error, and says which.
        assert!(
            text.contains("CAIRN_TEST_PG_PASSWORD_NEVER_LOGGED"),
            "{text}"
        );

        let err = PostgresStore::open(&PostgresState {
            url: "postgres://cairn@127.0.0.1:1/cairn".into(),
            password: None,
        })
        .unwrap_err()
        .to_string();
        assert!(
            err.starts_with("cannot use the state database at 127.0.0.1:1/cairn: "),
            "{err}"
        );
        assert!(err.contains("is PostgreSQL running there"), "{err}");
    }

    #[test]
    fn a_password_from_a_file_is_sent_and_a_missing_database_is_named() {
        let dir = std::env::temp_dir().join(format!("cairn-pg-pass-{}", new_run_id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("pass");
        std::fs::write(&file, "not-needed-with-trust\n").unwrap();
        // Trust authentication ignores the password; the connection works.
        let db = TestDatabase::create();
        let mut settings = db.settings();
        settings.password = Some(SecretSource::File(file));
        PostgresStore::open(&settings).unwrap();
        let err = PostgresStore::open(&PostgresState {
            url: "postgres://postgres@127.0.0.1:5432/cairn_surely_missing".into(),
            password: None,
        })
        .unwrap_err()
        .to_string();
        assert!(err.contains("cairn_surely_missing"), "{err}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_newer_schema_is_refused_and_migrations_apply_once() {
        let db = TestDatabase::create();
        let store = db.store();
        // Several nodes starting at once migrate once.
        std::thread::scope(|s| {
            for _ in 0..3 {
                s.spawn(|| PostgresStore::open(&db.settings()).unwrap());
            }
        });
        store.execute_batch_for_tests(&format!(
            "UPDATE cairn_schema SET version = {}",
            MIGRATIONS.len() + 1
        ));
        let err = PostgresStore::open(&db.settings()).unwrap_err().to_string();
        assert!(err.contains("newer than the"), "{err}");
    }
}
