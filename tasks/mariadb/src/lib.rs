//! `builtin:mariadb`: a Task that dumps MariaDB (or MySQL) databases with
//! `mariadb-dump` straight into the repository and restores them with the
//! `mariadb` client into a named database, created if missing. Each dump
//! streams host-side from `mariadb-dump`'s stdout into the repository and
//! back into `mariadb`'s stdin; it never passes through the module or a file.
//!
//! # Params
//!
//! - `database` (required): the database to dump, or a list of them. Each
//!   becomes its own artifact.
//! - `host` (default `127.0.0.1`), `port` (default `3306`), `user` (default
//!   `root`): where and as whom to connect. `host = "localhost"` makes the
//!   clients use the server's Unix socket.
//! - `password-secret` (optional): the name of a secret granted in
//!   `allow.secrets`. The host passes it to every command as
//!   `MYSQL_PWD={{secret:NAME}}`, so the module never sees the password and
//!   it never appears in an argv. Without it the server must accept the user
//!   without a password (or by socket authentication).
//! - `extra-args` (optional): more `mariadb-dump` arguments, e.g.
//!   `["--ignore-table=app.audit_log"]`. They cannot change where or in
//!   which form the dump goes (`-r`/`--result-file`, `-T`/`--tab`,
//!   `-X`/`--xml`) nor which databases it holds (`-A`/`--all-databases`,
//!   `-B`/`--databases`).
//! - Restore only: `target-database` (default: the dumped database; only
//!   for a snapshot of one database), `create` (default `true`: create the
//!   target when it does not exist), `overwrite` (default `false`: restore
//!   into a target that already holds tables, views, routines or events;
//!   the dump's `DROP TABLE IF EXISTS` statements then replace tables of the
//!   same name and leave the others).
//!
//! # What it runs
//!
//! Backup: `mariadb --execute="SELECT VERSION()"` and `mariadb-dump
//! --version` (only for the snapshot notes: a failure or a 30 s timeout is
//! logged, not fatal), then for each database `mariadb-dump
//! --single-transaction --routines --triggers --events --hex-blob
//! --default-character-set=utf8mb4 --skip-dump-date --host=HOST --port=PORT
//! --user=USER [extra-args…] -- DATABASE`, whose stdout becomes stream
//! artifact `<database>.sql` (characters outside `[A-Za-z0-9._-]` replaced
//! by `_`).
//!
//! - `--single-transaction` gives a consistent dump of InnoDB tables without
//!   locking them (other engines, such as MyISAM, are not covered by it).
//! - `--hex-blob` writes binary columns as hex literals, so the dump is
//!   plain text whatever the data; `utf8mb4` keeps every Unicode character.
//! - `--skip-dump-date` makes dumps of unchanged data identical, so the
//!   repository stores them once.
//! - The dump names no database (no `CREATE DATABASE`/`USE`), which is what
//!   lets a restore go into any database.
//!
//! Notes: `databases` (a JSON object of artifact name to database),
//! `format` (`sql`), and `server-version` and `dump-version` when known.
//!
//! Restore: checks first that the snapshot holds every dump and that every
//! target is missing or empty (unless `overwrite`), so nothing is touched for
//! a wrong snapshot or target. Then for each database: `CREATE DATABASE`
//! (with `create`, if missing) and `mariadb --binary-mode
//! --default-character-set=utf8mb4 … --database=TARGET` fed the dump on its
//! stdin. The client stops at the first failing statement; the run then
//! fails with its error. Routines, triggers, views and events keep the
//! `DEFINER` of the source, so restoring them as another user needs the
//! privilege to name that definer.
//!
//! Every value reaches the commands as its own argv element, never through
//! a shell; database names go into SQL as hex literals or backquoted
//! identifiers.
//!
//! # Example
//!
//! ```toml
//! [secrets.DB_PASSWORD]
//! env = "DB_PASSWORD"
//!
//! [jobs.shop-db]
//! task = "builtin:mariadb"
//! params = { database = "shop", user = "backup", password-secret = "DB_PASSWORD" }
//! schedule = "0 3 * * *"
//!
//! [jobs.shop-db.allow]
//! commands = ["mariadb-dump", "mariadb"]
//! secrets = ["DB_PASSWORD"]
//! ```
//!
//! `cairn restore shop-db --set target-database=shop_check` restores the
//! latest dump into a new database `shop_check` next to `shop`.
//!
//! Backup result: `{"databases": [{"database": "shop", "artifact":
//! "shop.sql", "bytes": N}], "bytes": N}`. Restore result: `{"databases":
//! [{"database": "shop", "artifact": "shop.sql", "target": "shop_check",
//! "created": true}]}`.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

use cairn_guest::progress::{self, Unit};
use cairn_guest::shell::{Command, Output};
use cairn_guest::storage::{Artifact, ArtifactKind};
use cairn_guest::{
    Context, Description, Error, ErrorContext, Param, Result, Task, Value, json, log, paths,
    serde_json, storage,
};
use serde::Deserialize;

/// Longest database name MariaDB accepts, in characters.
const MAX_NAME_CHARS: usize = 64;

/// How many stderr lines a failed command's error quotes.
const ERROR_LINES: usize = 3;

/// How long a probe for a note (a version) or a check of the target may take.
const PROBE_TIMEOUT: Duration = Duration::from_secs(30);

/// The snapshot note mapping artifact names to databases.
const DATABASES_NOTE: &str = "databases";

/// The dump format, recorded in note `format`.
const FORMAT: &str = "sql";

/// The programs this task runs.
const DUMP: &str = "mariadb-dump";
const CLIENT: &str = "mariadb";

fn default_host() -> String {
    "127.0.0.1".to_owned()
}

fn default_port() -> u16 {
    3306
}

fn default_user() -> String {
    "root".to_owned()
}

fn default_true() -> bool {
    true
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct Params {
    #[serde(default = "default_host")]
    host: String,
    #[serde(default = "default_port")]
    port: u16,
    #[serde(default = "default_user")]
    user: String,
    database: Value,
    #[serde(default)]
    password_secret: Option<String>,
    #[serde(default)]
    extra_args: Vec<String>,
    #[serde(default)]
    target_database: Option<String>,
    #[serde(default = "default_true")]
    create: bool,
    #[serde(default)]
    overwrite: bool,
}

/// `value` of param `param` must be a non-empty string without NUL bytes.
fn check_text(param: &str, value: &str) -> Result<()> {
    if value.is_empty() {
        return Err(Error::invalid(format!(
            "invalid params: `{param}` is empty"
        )));
    }
    if value.contains('\0') {
        return Err(Error::invalid(format!(
            "invalid params: `{param}` contains a NUL byte: {value:?}"
        )));
    }
    Ok(())
}

/// A database name as MariaDB accepts it: 1-64 characters, no NUL, not
/// ending in a space.
fn check_database_name(param: &str, name: &str) -> Result<()> {
    check_text(param, name)?;
    let chars = name.chars().count();
    if chars > MAX_NAME_CHARS {
        return Err(Error::invalid(format!(
            "invalid params: `{param}` {name:?} is {chars} characters long; MariaDB allows at most \
             {MAX_NAME_CHARS}"
        )));
    }
    if name.ends_with(' ') {
        return Err(Error::invalid(format!(
            "invalid params: `{param}` {name:?} ends with a space, which MariaDB does not allow"
        )));
    }
    Ok(())
}

/// Secret names as the host accepts them: `[A-Za-z_][A-Za-z0-9_]*`.
fn check_secret_name(name: &str) -> Result<()> {
    let mut chars = name.chars();
    let first_ok = chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_');
    if first_ok && chars.all(|c| c.is_ascii_alphanumeric() || c == '_') {
        Ok(())
    } else {
        Err(Error::invalid(format!(
            "invalid params: `password-secret` must name a secret granted in `allow.secrets` \
             (letters, digits and `_`), got {name:?}"
        )))
    }
}

/// Long options of `mariadb-dump` that `extra-args` may not hold, and their
/// short forms.
const FORBIDDEN: [(&str, char); 5] = [
    ("result-file", 'r'),
    ("tab", 'T'),
    ("xml", 'X'),
    ("all-databases", 'A'),
    ("databases", 'B'),
];

/// The forbidden option `arg` is (or abbreviates), if any. MariaDB accepts
/// any unambiguous prefix of a long option, so a prefix of two or more
/// characters counts.
fn forbidden_option(arg: &str) -> Option<&'static str> {
    if let Some(long) = arg.strip_prefix("--") {
        let name = long.split_once('=').map_or(long, |(name, _)| name);
        return FORBIDDEN
            .iter()
            .find(|(option, _)| name.len() >= 2 && option.starts_with(name))
            .map(|(option, _)| *option);
    }
    let short = arg.strip_prefix('-')?;
    // Short options may be bundled (`-rX`); a value ends the bundle, but
    // none of the forbidden letters is harmless anywhere in it.
    FORBIDDEN
        .iter()
        .find(|(_, letter)| short.starts_with(*letter))
        .map(|(option, _)| *option)
}

/// The artifact a dump of `database` is stored as: `<database>.sql`, with
/// characters outside `[A-Za-z0-9._-]` and a leading `.` replaced by `_`.
fn dump_artifact_name(database: &str) -> String {
    format!("{}.sql", paths::sanitize_name(database))
}

/// `value` as an SQL string that means the same whatever the `sql_mode`:
/// a hex literal converted to `utf8mb4` and compared byte for byte.
fn sql_string(value: &str) -> String {
    let mut hex = String::with_capacity(value.len() * 2);
    for byte in value.bytes() {
        let _ = write!(hex, "{byte:02x}");
    }
    format!("CONVERT(X'{hex}' USING utf8mb4) COLLATE utf8mb4_bin")
}

/// `value` as an SQL identifier: backquoted, `` ` `` doubled.
fn sql_identifier(value: &str) -> String {
    format!("`{}`", value.replace('`', "``"))
}

/// One query reporting whether `database` exists and how many tables (and
/// views), routines and events it holds, as four tab-separated numbers.
fn target_state_sql(database: &str) -> String {
    let name = sql_string(database);
    format!(
        "SELECT \
         (SELECT COUNT(*) FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = {name}), \
         (SELECT COUNT(*) FROM information_schema.TABLES WHERE TABLE_SCHEMA = {name}), \
         (SELECT COUNT(*) FROM information_schema.ROUTINES WHERE ROUTINE_SCHEMA = {name}), \
         (SELECT COUNT(*) FROM information_schema.EVENTS WHERE EVENT_SCHEMA = {name})"
    )
}

fn create_sql(database: &str) -> String {
    format!(
        "CREATE DATABASE {} CHARACTER SET utf8mb4",
        sql_identifier(database)
    )
}

/// What a restore target holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct TargetState {
    exists: bool,
    tables: u64,
    routines: u64,
    events: u64,
}

impl TargetState {
    /// Parse the output of [`target_state_sql`].
    fn parse(output: &str) -> Result<Self> {
        let numbers: Vec<u64> = output
            .split_whitespace()
            .map(str::parse)
            .collect::<std::result::Result<_, _>>()
            .map_err(|_| {
                Error::failed(format!(
                    "unexpected answer from `{CLIENT}` checking the target: {output:?}"
                ))
            })?;
        let [exists, tables, routines, events] = numbers[..] else {
            return Err(Error::failed(format!(
                "unexpected answer from `{CLIENT}` checking the target: {output:?}"
            )));
        };
        Ok(TargetState {
            exists: exists > 0,
            tables,
            routines,
            events,
        })
    }

    fn is_empty(&self) -> bool {
        self.tables == 0 && self.routines == 0 && self.events == 0
    }

    /// "3 tables or views, 1 routine".
    fn contents(&self) -> String {
        let mut parts = Vec::new();
        for (n, one, many) in [
            (self.tables, "table or view", "tables or views"),
            (self.routines, "routine", "routines"),
            (self.events, "event", "events"),
        ] {
            match n {
                0 => {}
                1 => parts.push(format!("1 {one}")),
                n => parts.push(format!("{n} {many}")),
            }
        }
        parts.join(", ")
    }
}

impl Params {
    /// Check every param; the databases to dump, in order.
    fn check(&self) -> Result<Vec<String>> {
        check_text("host", &self.host)?;
        if self.port == 0 {
            return Err(Error::invalid("invalid params: `port` must be 1-65535"));
        }
        check_text("user", &self.user)?;
        let databases: Vec<String> = match &self.database {
            Value::String(name) => vec![name.clone()],
            Value::Array(items) if !items.is_empty() => items
                .iter()
                .map(|v| v.as_str().map(str::to_owned))
                .collect::<Option<_>>()
                .ok_or_else(|| {
                    Error::invalid("invalid params: `database` must be a name or a list of names")
                })?,
            Value::Array(_) => {
                return Err(Error::invalid(
                    "invalid params: `database` is an empty list; name the databases to dump",
                ));
            }
            other => {
                return Err(Error::invalid(format!(
                    "invalid params: `database` must be a name or a list of names, got {other}"
                )));
            }
        };
        let mut artifacts: BTreeMap<String, &str> = BTreeMap::new();
        for database in &databases {
            check_database_name("database", database)?;
            if let Some(other) = artifacts.insert(dump_artifact_name(database), database) {
                return Err(Error::invalid(if other == database {
                    format!("invalid params: `database` lists {database:?} twice")
                } else {
                    format!(
                        "invalid params: databases {other:?} and {database:?} would both be \
                         stored as `{}`; use one job for each",
                        dump_artifact_name(database)
                    )
                }));
            }
        }
        if let Some(target) = &self.target_database {
            check_database_name("target-database", target)?;
        }
        if let Some(secret) = &self.password_secret {
            check_secret_name(secret)?;
        }
        for arg in &self.extra_args {
            check_text("extra-args", arg)?;
            if let Some(option) = forbidden_option(arg) {
                return Err(Error::invalid(format!(
                    "invalid params: `extra-args` holds {arg:?} (--{option}), but the dump of \
                     each database always goes to the repository as SQL; list the databases in \
                     `database` and leave out --result-file, --tab, --xml, --databases and \
                     --all-databases"
                )));
            }
        }
        Ok(databases)
    }

    /// `--host=HOST --port=PORT --user=USER`.
    fn connection_args(&self) -> Vec<String> {
        vec![
            format!("--host={}", self.host),
            format!("--port={}", self.port),
            format!("--user={}", self.user),
        ]
    }

    /// The environment of every command: the password, if any, as a secret
    /// reference the host substitutes.
    fn env(&self) -> Vec<(String, String)> {
        self.password_secret
            .iter()
            .map(|name| ("MYSQL_PWD".to_owned(), format!("{{{{secret:{name}}}}}")))
            .collect()
    }

    fn dump_args(&self, database: &str) -> Vec<String> {
        let mut args: Vec<String> = [
            "--single-transaction",
            "--routines",
            "--triggers",
            "--events",
            "--hex-blob",
            "--default-character-set=utf8mb4",
            "--skip-dump-date",
        ]
        .map(str::to_owned)
        .into();
        args.extend(self.connection_args());
        args.extend(self.extra_args.iter().cloned());
        args.push("--".to_owned());
        args.push(database.to_owned());
        args
    }

    /// The `mariadb` client loading a dump into `target` from stdin.
    fn load_args(&self, target: &str) -> Vec<String> {
        let mut args = vec![
            "--binary-mode".to_owned(),
            "--default-character-set=utf8mb4".to_owned(),
        ];
        args.extend(self.connection_args());
        args.push(format!("--database={target}"));
        args
    }

    /// The `mariadb` client running one `sql` statement, printing bare values.
    fn query_args(&self, sql: &str) -> Vec<String> {
        let mut args = vec![
            "--batch".to_owned(),
            "--skip-column-names".to_owned(),
            "--default-character-set=utf8mb4".to_owned(),
        ];
        args.extend(self.connection_args());
        args.push(format!("--execute={sql}"));
        args
    }

    fn command(&self, program: &str, args: Vec<String>) -> Command {
        Command::new(program).args(args).envs(self.env())
    }

    fn query(&self, sql: &str) -> Result<String> {
        let output = self
            .command(CLIENT, self.query_args(sql))
            .timeout(PROBE_TIMEOUT)
            .run()
            .and_then(check_exit)?;
        Ok(output.stdout_text().trim().to_owned())
    }
}

/// The stderr lines worth quoting: the last few that report an error
/// (`ERROR 1045 …`, `mariadb-dump: Got error: …`), else the last
/// non-empty ones.
fn error_lines(program: &str, stderr: &str) -> Vec<String> {
    let lines: Vec<&str> = stderr
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    let prefix = format!("{program}:");
    let relevant: Vec<&str> = lines
        .iter()
        .copied()
        .filter(|l| l.starts_with(&prefix) || l.starts_with("ERROR"))
        .collect();
    let chosen = if relevant.is_empty() { lines } else { relevant };
    let skip = chosen.len().saturating_sub(ERROR_LINES);
    chosen[skip..].iter().map(|l| (*l).to_owned()).collect()
}

/// The message for a command that did not exit with code 0.
fn failure_message(program: &str, exit_code: Option<i32>, stderr: &str, truncated: bool) -> String {
    let how = match exit_code {
        Some(code) => format!("exited with code {code}"),
        None => "was killed by a signal".to_owned(),
    };
    let mut message = format!("`{program}` {how}");
    let lines = error_lines(program, stderr);
    if !lines.is_empty() {
        message.push_str(": ");
        message.push_str(&lines.join("; "));
    }
    if truncated {
        message.push_str(" (stderr was cut at the output limit)");
    }
    if stderr.contains("Access denied") {
        message.push_str(
            "; check `user` and the secret named by `password-secret` (passed as MYSQL_PWD)",
        );
    }
    message
}

/// `output` itself if it exited with code 0, else a `failed` error quoting
/// its stderr.
fn check_exit(output: Output) -> Result<Output> {
    if output.success() {
        return Ok(output);
    }
    Err(Error::failed(failure_message(
        output.program(),
        output.exit_code,
        &output.stderr_text(),
        output.stderr_truncated,
    )))
}

/// The trimmed stdout of `command`, or `None` (logged) if it cannot run or
/// fails: for notes that are nice to have.
fn probe(command: Command, what: &str) -> Option<String> {
    match command.timeout(PROBE_TIMEOUT).run().and_then(check_exit) {
        Ok(output) => Some(output.stdout_text().trim().to_owned()),
        Err(e) => {
            log::warn(format!("could not read the {what}: {e}"));
            None
        }
    }
}

/// One dump to restore and where it goes.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Placement {
    artifact: String,
    database: String,
    target: String,
}

/// Where each dump of the snapshot goes: into `target-database` for a
/// snapshot of one database, else each into its own name.
fn plan_restore(dumps: &BTreeMap<String, String>, target: Option<&str>) -> Result<Vec<Placement>> {
    if dumps.is_empty() {
        return Err(Error::not_found("the snapshot holds no database dumps"));
    }
    if let Some(target) = target
        && dumps.len() > 1
    {
        let names: Vec<String> = dumps.values().map(|d| format!("`{d}`")).collect();
        return Err(Error::invalid(format!(
            "invalid params: `target-database` = {target:?}, but the snapshot holds {} databases \
             ({}); leave it out to restore each into its own name",
            dumps.len(),
            names.join(", ")
        )));
    }
    Ok(dumps
        .iter()
        .map(|(artifact, database)| Placement {
            artifact: artifact.clone(),
            database: database.clone(),
            target: target.unwrap_or(database).to_owned(),
        })
        .collect())
}

/// The snapshot's dumps (artifact → database): from its note, or for a
/// snapshot without one, derived from the `database` param.
fn snapshot_dumps(databases: &[String]) -> Result<BTreeMap<String, String>> {
    if let Some(text) = storage::note(DATABASES_NOTE)? {
        return serde_json::from_str(&text).map_err(|e| {
            Error::failed(format!(
                "the snapshot's note `{DATABASES_NOTE}` is not a JSON object of artifact names \
                 to databases: {e}"
            ))
        });
    }
    Ok(databases
        .iter()
        .map(|d| (dump_artifact_name(d), d.clone()))
        .collect())
}

/// Check that the snapshot's `artifacts` hold stream `name`.
fn check_dump_present(name: &str, artifacts: &[Artifact]) -> Result<()> {
    if artifacts
        .iter()
        .any(|a| a.name == name && a.kind == ArtifactKind::Stream)
    {
        return Ok(());
    }
    let held: Vec<String> = artifacts.iter().map(|a| format!("`{}`", a.name)).collect();
    let held = if held.is_empty() {
        "nothing".to_owned()
    } else {
        held.join(", ")
    };
    Err(Error::not_found(format!(
        "the snapshot holds no dump `{name}` (it holds {held}); was it written by this job?"
    )))
}

/// Check that restoring into a target in `state` is allowed.
fn check_target(target: &str, state: TargetState, create: bool, overwrite: bool) -> Result<()> {
    if !state.exists && !create {
        return Err(Error::not_found(format!(
            "target database `{target}` does not exist; create it, or leave `create` at true"
        )));
    }
    if !state.is_empty() && !overwrite {
        return Err(Error::invalid(format!(
            "target database `{target}` is not empty (it holds {}); restore into a new \
             `target-database`, or set `overwrite = true` to restore over it (tables of the \
             dump replace those of the same name)",
            state.contents()
        )));
    }
    Ok(())
}

/// The params of a run, checked, and the databases they name.
fn params(ctx: &Context) -> Result<(Params, Vec<String>)> {
    let params: Params = ctx.params()?;
    let databases = params.check()?;
    Ok((params, databases))
}

struct MariadbTask;

impl Task for MariadbTask {
    fn describe() -> Description {
        Description::new("mariadb", env!("CARGO_PKG_VERSION"))
            .summary(
                "Dumps MariaDB/MySQL databases with mariadb-dump straight into the repository; \
                 restores them with the mariadb client into a named database (created if missing)",
            )
            .param(Param::required(
                "database",
                "Database to dump, or a list of them",
            ))
            .param(Param::optional(
                "host",
                "Server host name or address (localhost: the Unix socket)",
                json!("127.0.0.1"),
            ))
            .param(Param::optional("port", "Server port", json!(3306)))
            .param(Param::optional("user", "User to connect as", json!("root")))
            .param(Param::optional(
                "password-secret",
                "Name of a secret granted in allow.secrets, passed to the commands as MYSQL_PWD \
                 (the module never sees it)",
                None,
            ))
            .param(Param::optional(
                "extra-args",
                "More mariadb-dump arguments, e.g. [\"--ignore-table=shop.audit_log\"]",
                json!([]),
            ))
            .param(Param::optional(
                "target-database",
                "Restore: database to restore into (default: the dumped one; one database only)",
                None,
            ))
            .param(Param::optional(
                "create",
                "Restore: create the target database if it does not exist",
                json!(true),
            ))
            .param(Param::optional(
                "overwrite",
                "Restore: restore into a target that is not empty (otherwise refused)",
                json!(false),
            ))
            .needs_command(DUMP)
            .needs_command(CLIENT)
            .needs_secret("{password-secret}")
    }

    fn backup(ctx: Context) -> Result<Value> {
        let (params, databases) = params(&ctx)?;
        let dumps: BTreeMap<String, &str> = databases
            .iter()
            .map(|d| (dump_artifact_name(d), d.as_str()))
            .collect();
        let server_version = probe(
            params.command(CLIENT, params.query_args("SELECT VERSION()")),
            "server version",
        );
        let dump_version = probe(Command::new(DUMP).arg("--version"), "mariadb-dump version");
        storage::set_note(DATABASES_NOTE, &serde_json::to_string(&dumps)?)?;
        storage::set_note("format", FORMAT)?;
        if let Some(v) = &server_version {
            storage::set_note("server-version", v)?;
        }
        if let Some(v) = &dump_version {
            storage::set_note("dump-version", v)?;
        }

        let total = databases.len() as u64;
        progress::report(0, total, Unit::Items);
        let mut results = Vec::with_capacity(databases.len());
        let mut bytes = 0u64;
        for (done, database) in (1..).zip(&databases) {
            let artifact_name = dump_artifact_name(database);
            log::info(format!(
                "dumping database `{database}` from {}:{} as `{artifact_name}`",
                params.host, params.port
            ));
            let dump = params.command(DUMP, params.dump_args(database));
            let artifact = storage::create_from_command(&artifact_name, &dump)
                .with_context(|| format!("dumping database `{database}`"))?;
            log::info_with(
                format!(
                    "dumped database `{database}` ({})",
                    cairn_guest::format_size(artifact.size)
                ),
                &[("artifact", &artifact.name), ("bytes", &artifact.size)],
            );
            progress::report(done, total, Unit::Items);
            bytes = bytes.saturating_add(artifact.size);
            results.push(json!({
                "database": database,
                "artifact": artifact.name,
                "bytes": artifact.size,
            }));
        }
        Ok(json!({ "databases": results, "bytes": bytes }))
    }

    fn restore(ctx: Context) -> Result<Value> {
        let (params, databases) = params(&ctx)?;
        let dumps = snapshot_dumps(&databases)?;
        let placements = plan_restore(&dumps, params.target_database.as_deref())?;
        let held = storage::list()?;
        let mut states = Vec::with_capacity(placements.len());
        // Check every dump and every target before changing anything.
        for p in &placements {
            check_dump_present(&p.artifact, &held)?;
            let state = TargetState::parse(&params.query(&target_state_sql(&p.target))?)
                .with_context(|| format!("checking target database `{}`", p.target))?;
            check_target(&p.target, state, params.create, params.overwrite)?;
            states.push(state);
        }

        let total = placements.len() as u64;
        progress::report(0, total, Unit::Items);
        let mut results = Vec::with_capacity(placements.len());
        for ((done, p), state) in (1..).zip(&placements).zip(states) {
            if !state.exists {
                params
                    .query(&create_sql(&p.target))
                    .with_context(|| format!("creating database `{}`", p.target))?;
                log::info(format!("created database `{}`", p.target));
            }
            log::info(format!(
                "restoring `{}` (database `{}`) into database `{}`",
                p.artifact, p.database, p.target
            ));
            let load = params.command(CLIENT, params.load_args(&p.target));
            let output = storage::restore_to_command(&p.artifact, &load)
                .and_then(check_exit)
                .with_context(|| {
                    format!("restoring `{}` into database `{}`", p.artifact, p.target)
                })?;
            for line in output
                .stderr_text()
                .lines()
                .filter(|l| !l.trim().is_empty())
            {
                log::warn(line);
            }
            progress::report(done, total, Unit::Items);
            results.push(json!({
                "database": p.database,
                "artifact": p.artifact,
                "target": p.target,
                "created": !state.exists,
            }));
        }
        Ok(json!({ "databases": results }))
    }
}

cairn_guest::export_task!(MariadbTask);

#[cfg(test)]
mod tests {
    use super::*;
    use cairn_guest::{ErrorKind, from_params};

    fn parse(params: Value) -> Result<(Params, Vec<String>)> {
        let params: Params = from_params(params)?;
        let databases = params.check()?;
        Ok((params, databases))
    }

    #[test]
    fn params_have_defaults() {
        let (p, dbs) = parse(json!({"database": "shop"})).unwrap();
        assert_eq!(dbs, ["shop"]);
        assert_eq!(
            (p.host.as_str(), p.port, p.user.as_str()),
            ("127.0.0.1", 3306, "root")
        );
        assert!(p.create && !p.overwrite);
        assert!(p.password_secret.is_none() && p.extra_args.is_empty());
        let (_, dbs) = parse(json!({"database": ["a", "b c"]})).unwrap();
        assert_eq!(dbs, ["a", "b c"]);
    }

    #[test]
    fn params_are_checked() {
        let cases = [
            (json!({}), "missing field `database`"),
            (json!({"database": ""}), "`database` is empty"),
            (json!({"database": []}), "`database` is an empty list"),
            (json!({"database": [1]}), "a name or a list of names"),
            (json!({"database": 7}), "a name or a list of names"),
            (json!({"database": "a\u{0}b"}), "NUL byte"),
            (json!({"database": "a".repeat(65)}), "at most 64"),
            (json!({"database": "a "}), "ends with a space"),
            (json!({"database": ["a", "a"]}), "lists \"a\" twice"),
            (
                json!({"database": ["a b", "a_b"]}),
                "both be stored as `a_b.sql`",
            ),
            (
                json!({"database": "a", "port": 0}),
                "`port` must be 1-65535",
            ),
            (json!({"database": "a", "user": ""}), "`user` is empty"),
            (
                json!({"database": "a", "password-secret": "db-pass"}),
                "`password-secret` must name",
            ),
            (
                json!({"database": "a", "target-database": ""}),
                "`target-database` is empty",
            ),
            (
                json!({"database": "a", "extra-args": ["--result-file=/tmp/x"]}),
                "--result-file",
            ),
            (
                json!({"database": "a", "extra-args": ["-B"]}),
                "--databases",
            ),
            (
                json!({"database": "a", "clean": true}),
                "unknown field `clean`",
            ),
        ];
        for (params, expected) in cases {
            let err = parse(params.clone()).unwrap_err();
            assert_eq!(err.kind(), ErrorKind::Invalid, "{params}");
            assert!(err.to_string().contains(expected), "{params}: {err}");
        }
        assert!(parse(json!({"database": "é".repeat(64), "password-secret": "DB_PW"})).is_ok());
    }

    #[test]
    fn extra_args_cannot_redirect_the_dump_or_pick_databases() {
        for (arg, option) in [
            ("-r", "result-file"),
            ("-rdump.sql", "result-file"),
            ("--result-file=x", "result-file"),
            ("--res", "result-file"),
            ("-T/tmp", "tab"),
            ("--tab=/tmp", "tab"),
            ("-X", "xml"),
            ("--xml", "xml"),
            ("-A", "all-databases"),
            ("--all", "all-databases"),
            ("--databases", "databases"),
            ("--data", "databases"),
        ] {
            assert_eq!(forbidden_option(arg), Some(option), "{arg}");
        }
        for arg in [
            "--ignore-table=shop.log",
            "--no-data",
            "--where=id>5",
            "-v",
            "--skip-extended-insert",
            "--max-allowed-packet=1G",
        ] {
            assert_eq!(forbidden_option(arg), None, "{arg}");
        }
    }

    #[test]
    fn dump_argv_ends_options_before_the_database() {
        let (p, _) = parse(json!({
            "database": "-shop", "host": "db.internal", "port": 3307, "user": "backup",
            "extra-args": ["--ignore-table=shop.log"]
        }))
        .unwrap();
        assert_eq!(
            p.dump_args("-shop"),
            [
                "--single-transaction",
                "--routines",
                "--triggers",
                "--events",
                "--hex-blob",
                "--default-character-set=utf8mb4",
                "--skip-dump-date",
                "--host=db.internal",
                "--port=3307",
                "--user=backup",
                "--ignore-table=shop.log",
                "--",
                "-shop",
            ]
        );
        assert!(p.env().is_empty());
        assert_eq!(
            p.load_args("shop copy"),
            [
                "--binary-mode",
                "--default-character-set=utf8mb4",
                "--host=db.internal",
                "--port=3307",
                "--user=backup",
                "--database=shop copy",
            ]
        );
    }

    #[test]
    fn password_goes_in_as_a_secret_reference() {
        let (p, _) = parse(json!({"database": "a", "password-secret": "DB_PW"})).unwrap();
        assert_eq!(
            p.env(),
            [("MYSQL_PWD".to_owned(), "{{secret:DB_PW}}".to_owned())]
        );
    }

    #[test]
    fn names_are_quoted_for_sql() {
        assert_eq!(
            sql_string("a'b"),
            "CONVERT(X'612762' USING utf8mb4) COLLATE utf8mb4_bin"
        );
        assert_eq!(sql_identifier("we`ird"), "`we``ird`");
        assert_eq!(
            create_sql("shop"),
            "CREATE DATABASE `shop` CHARACTER SET utf8mb4"
        );
        assert!(target_state_sql("x").contains("information_schema.EVENTS"));
    }

    #[test]
    fn target_state_is_parsed_and_judged() {
        let missing = TargetState::parse("0\t0\t0\t0").unwrap();
        assert!(!missing.exists && missing.is_empty());
        let full = TargetState::parse("1\t3\t1\t0\n").unwrap();
        assert_eq!(full.contents(), "3 tables or views, 1 routine");
        assert!(TargetState::parse("1\t2").is_err());
        assert!(TargetState::parse("ERROR").is_err());

        assert!(check_target("t", missing, true, false).is_ok());
        assert_eq!(
            check_target("t", missing, false, false).unwrap_err().kind(),
            ErrorKind::NotFound
        );
        let err = check_target("t", full, true, false).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Invalid);
        assert_eq!(
            err.to_string(),
            "target database `t` is not empty (it holds 3 tables or views, 1 routine); restore \
             into a new `target-database`, or set `overwrite = true` to restore over it (tables \
             of the dump replace those of the same name)"
        );
        assert!(check_target("t", full, true, true).is_ok());
        let empty = TargetState::parse("1 0 0 0").unwrap();
        assert!(check_target("t", empty, false, false).is_ok());
    }

    #[test]
    fn restore_targets_follow_the_snapshot() {
        let one = BTreeMap::from([("shop.sql".to_owned(), "shop".to_owned())]);
        let plan = plan_restore(&one, Some("shop_check")).unwrap();
        assert_eq!(plan[0].target, "shop_check");
        assert_eq!(plan_restore(&one, None).unwrap()[0].target, "shop");
        let two = BTreeMap::from([
            ("a.sql".to_owned(), "a".to_owned()),
            ("b.sql".to_owned(), "b".to_owned()),
        ]);
        let targets: Vec<String> = plan_restore(&two, None)
            .unwrap()
            .into_iter()
            .map(|p| p.target)
            .collect();
        assert_eq!(targets, ["a", "b"]);
        let err = plan_restore(&two, Some("x")).unwrap_err();
        assert!(err.to_string().contains("holds 2 databases"), "{err}");
        assert_eq!(
            plan_restore(&BTreeMap::new(), None).unwrap_err().kind(),
            ErrorKind::NotFound
        );
    }

    #[test]
    fn failures_quote_the_error_lines() {
        let stderr = "mariadb-dump: Got error: 1045: \"Access denied for user 'root'@'127.0.0.1' \
                      (using password: YES)\" when trying to connect\n";
        assert_eq!(
            failure_message("mariadb-dump", Some(2), stderr, false),
            "`mariadb-dump` exited with code 2: mariadb-dump: Got error: 1045: \"Access denied \
             for user 'root'@'127.0.0.1' (using password: YES)\" when trying to connect; check \
             `user` and the secret named by `password-secret` (passed as MYSQL_PWD)"
        );
        assert_eq!(
            failure_message(
                "mariadb",
                Some(1),
                "noise\nERROR 1050 (42S01) at line 25: Table 't' already exists\n",
                true
            ),
            "`mariadb` exited with code 1: ERROR 1050 (42S01) at line 25: Table 't' already \
             exists (stderr was cut at the output limit)"
        );
        assert_eq!(error_lines("x", "a\nb\nc\nd\n"), ["b", "c", "d"]);
    }

    #[test]
    fn artifact_names_derive_from_the_database() {
        assert_eq!(dump_artifact_name("shop"), "shop.sql");
        assert_eq!(dump_artifact_name("my db/ü"), "my_db__.sql");
        assert_eq!(dump_artifact_name(".hidden"), "_hidden.sql");
    }

    #[test]
    fn describe_declares_commands_and_secret() {
        let d = MariadbTask::describe();
        assert_eq!(d.name(), "mariadb");
        assert!(
            d.params()
                .iter()
                .any(|p| p.name() == "database" && p.is_required())
        );
    }
}
