//! `builtin:postgres`: a Task that dumps a PostgreSQL database with
//! `pg_dump --format=custom` straight into the repository and restores it
//! with `pg_restore` into a named database, created if missing. The dump
//! streams host-side from `pg_dump`'s stdout into the repository and back
//! into `pg_restore`'s stdin; it never passes through the module or a file.
//!
//! # Params
//!
//! - `database` (required): the database to dump.
//! - `host` (default `127.0.0.1`), `port` (default `5432`), `user` (default
//!   `postgres`): where and as whom to connect. `host` may also be a Unix
//!   socket directory such as `/var/run/postgresql`.
//! - `password-secret` (optional): the name of a secret granted in
//!   `allow.secrets`. The host passes it to every command as
//!   `PGPASSWORD={{secret:NAME}}`, so the module never sees the password.
//!   Without it the server must accept the connection without one (`trust`,
//!   `peer` over a socket). Commands never prompt (`--no-password`).
//! - `extra-args` (optional): more `pg_dump` arguments, e.g.
//!   `["--exclude-table=audit_log", "--no-comments"]`. They cannot change
//!   where or how the dump is written (`-f`, `-F`).
//! - Restore only: `target-database` (default: `database`), `create`
//!   (default `true`: create the target database when it does not exist),
//!   `clean` (default `false`: pass `--clean --if-exists`, dropping objects
//!   of the dump before recreating them).
//!
//! # What it runs
//!
//! Backup: `psql -c "SHOW server_version"` and `pg_dump --version` (only
//! for the snapshot notes: a failure or a 30 s timeout is logged, not
//! fatal), then `pg_dump --format=custom --no-password -h HOST -p PORT
//! -U USER --dbname=dbname='DATABASE' [extra-args…]`, whose stdout becomes
//! stream artifact `<database>.dump` (characters outside `[A-Za-z0-9._-]`
//! replaced by `_`). Notes: `database`, `artifact`, `format` (`custom`),
//! and `server-version` and `pg-dump-version` when known.
//!
//! Restore: first checks that the snapshot holds the dump named by note
//! `artifact` (default `<database>.dump`), so nothing is created for a wrong
//! snapshot. With `create`, `psql -d postgres -c "SELECT 1 FROM pg_database
//! WHERE datname = '…'"` and, if that finds nothing, `CREATE DATABASE "…"`.
//! Then `pg_restore --no-password --no-owner -h HOST -p PORT -U USER
//! --dbname=dbname='TARGET' [--clean --if-exists]` is fed the dump on its
//! stdin. `pg_restore` continues past errors and exits non-zero at the end;
//! the run then fails with its last error lines. Parallel restore
//! (`pg_restore -j`) needs a seekable file, not a stream, so it is not
//! offered.
//!
//! Every value reaches the commands as its own argv element, never through
//! a shell. Database names go to libpq as quoted connection-string values
//! (so a name containing `=` or starting with `-` is still just a name), and
//! into SQL as a quoted literal or identifier. Names may hold any character
//! but NUL, up to PostgreSQL's 63 bytes.
//!
//! # Example
//!
//! ```toml
//! [secrets.PG_PASSWORD]
//! env = "PG_PASSWORD"
//!
//! [jobs.app-db]
//! task = "builtin:postgres"
//! params = { database = "app", user = "backup", password-secret = "PG_PASSWORD" }
//! schedule = "0 3 * * *"
//!
//! [jobs.app-db.allow]
//! commands = ["pg_dump", "pg_restore", "psql"]
//! secrets = ["PG_PASSWORD"]
//! ```
//!
//! `cairn restore app-db --set target-database=app_check` restores the
//! latest dump into a new database `app_check` next to `app`.
//!
//! Backup result: `{"artifact": "app.dump", "bytes": N, "database": "app"}`.
//! Restore result: `{"artifact": "app.dump", "database": "app_check",
//! "created": true}`.

use std::collections::BTreeMap;
use std::time::Duration;

use cairn_guest::progress::{self, Unit};
use cairn_guest::shell::{Command, Output};
use cairn_guest::storage::{Artifact, ArtifactKind};
use cairn_guest::{
    Context, Description, Error, ErrorContext, Param, Result, Task, Value, json, log, paths,
    storage,
};
use serde::Deserialize;

/// Longest database name PostgreSQL keeps (NAMEDATALEN - 1); longer names
/// are silently truncated by the server.
const MAX_NAME_BYTES: usize = 63;

/// The database `psql` connects to for checking and creating the target.
const MAINTENANCE_DATABASE: &str = "postgres";

/// How many stderr lines a failed command's error quotes.
const ERROR_LINES: usize = 3;

/// How long a probe for a note (a version) may take.
const PROBE_TIMEOUT: Duration = Duration::from_secs(30);

/// The dump format, recorded in note `format`.
const FORMAT: &str = "custom";

fn default_host() -> String {
    "127.0.0.1".to_owned()
}

fn default_port() -> u16 {
    5432
}

fn default_user() -> String {
    "postgres".to_owned()
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
    database: String,
    #[serde(default)]
    password_secret: Option<String>,
    #[serde(default)]
    target_database: Option<String>,
    #[serde(default = "default_true")]
    create: bool,
    #[serde(default)]
    clean: bool,
    #[serde(default)]
    extra_args: Vec<String>,
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

/// A database name: any characters but NUL, at most 63 bytes.
fn check_database_name(param: &str, name: &str) -> Result<()> {
    check_text(param, name)?;
    if name.len() > MAX_NAME_BYTES {
        return Err(Error::invalid(format!(
            "invalid params: `{param}` is {} bytes long; PostgreSQL keeps at most {MAX_NAME_BYTES}",
            name.len()
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

/// Whether `arg` would make `pg_dump` write somewhere other than stdout or
/// in another format: `-f`, `-F` and (abbreviations of) `--file`, `--format`.
fn redirects_output(arg: &str) -> bool {
    if let Some(long) = arg.strip_prefix("--") {
        let name = long.split_once('=').map_or(long, |(name, _)| name);
        return name.len() >= 2 && ("file".starts_with(name) || "format".starts_with(name));
    }
    arg.starts_with("-f") || arg.starts_with("-F")
}

impl Params {
    /// Check every param; call before running anything.
    fn check(&self) -> Result<()> {
        check_text("host", &self.host)?;
        if self.port == 0 {
            return Err(Error::invalid("invalid params: `port` must be 1-65535"));
        }
        check_text("user", &self.user)?;
        check_database_name("database", &self.database)?;
        if let Some(target) = &self.target_database {
            check_database_name("target-database", target)?;
        }
        if let Some(secret) = &self.password_secret {
            check_secret_name(secret)?;
        }
        for arg in &self.extra_args {
            check_text("extra-args", arg)?;
            if redirects_output(arg) {
                return Err(Error::invalid(format!(
                    "invalid params: `extra-args` holds {arg:?}, but the dump always goes to the \
                     repository in custom format; leave out -f/--file and -F/--format"
                )));
            }
        }
        Ok(())
    }

    /// The database a restore writes to.
    fn target_database(&self) -> &str {
        self.target_database.as_deref().unwrap_or(&self.database)
    }

    /// `-h HOST -p PORT -U USER`.
    fn connection_args(&self) -> Vec<String> {
        vec![
            "-h".to_owned(),
            self.host.clone(),
            "-p".to_owned(),
            self.port.to_string(),
            "-U".to_owned(),
            self.user.clone(),
        ]
    }

    /// The environment of every command: the password, if any, as a secret
    /// reference the host substitutes.
    fn env(&self) -> Vec<(String, String)> {
        self.password_secret
            .iter()
            .map(|name| ("PGPASSWORD".to_owned(), format!("{{{{secret:{name}}}}}")))
            .collect()
    }

    fn pg_dump_args(&self) -> Vec<String> {
        let mut args = vec!["--format=custom".to_owned(), "--no-password".to_owned()];
        args.extend(self.connection_args());
        args.push(dbname_arg(&self.database));
        args.extend(self.extra_args.iter().cloned());
        args
    }

    fn pg_restore_args(&self) -> Vec<String> {
        let mut args = vec!["--no-password".to_owned(), "--no-owner".to_owned()];
        args.extend(self.connection_args());
        args.push(dbname_arg(self.target_database()));
        if self.clean {
            args.push("--clean".to_owned());
            args.push("--if-exists".to_owned());
        }
        args
    }

    /// `psql` running one `sql` statement in `database`, printing bare values.
    fn psql_args(&self, database: &str, sql: &str) -> Vec<String> {
        let mut args = vec![
            "--no-psqlrc".to_owned(),
            "--no-password".to_owned(),
            "--no-align".to_owned(),
            "--tuples-only".to_owned(),
        ];
        args.extend(self.connection_args());
        args.push(dbname_arg(database));
        args.push("--command".to_owned());
        args.push(sql.to_owned());
        args
    }

    fn command(&self, program: &str, args: Vec<String>) -> Command {
        Command::new(program).args(args).envs(self.env())
    }
}

/// `value` as a libpq connection-string value: single-quoted, with `\` and
/// `'` escaped by a backslash.
fn conninfo_value(value: &str) -> String {
    format!("'{}'", value.replace('\\', "\\\\").replace('\'', "\\'"))
}

/// `--dbname=dbname='NAME'`: libpq reads a `--dbname` holding `=` as a
/// connection string, so the name is taken literally whatever it contains.
fn dbname_arg(database: &str) -> String {
    format!("--dbname=dbname={}", conninfo_value(database))
}

/// `value` as an SQL string literal, correct whatever
/// `standard_conforming_strings` says (as libpq's `PQescapeLiteral`).
fn sql_literal(value: &str) -> String {
    let quoted = value.replace('\'', "''");
    if value.contains('\\') {
        format!("E'{}'", quoted.replace('\\', "\\\\"))
    } else {
        format!("'{quoted}'")
    }
}

/// `value` as an SQL identifier: double-quoted, `"` doubled.
fn sql_identifier(value: &str) -> String {
    format!("\"{}\"", value.replace('"', "\"\""))
}

fn exists_sql(database: &str) -> String {
    format!(
        "SELECT 1 FROM pg_database WHERE datname = {}",
        sql_literal(database)
    )
}

fn create_sql(database: &str) -> String {
    format!("CREATE DATABASE {}", sql_identifier(database))
}

/// The artifact a dump of `database` is stored as: `<database>.dump`, with
/// characters outside `[A-Za-z0-9._-]` and a leading `.` replaced by `_`.
fn dump_artifact_name(database: &str) -> String {
    format!("{}.dump", paths::sanitize_name(database))
}

/// The stderr lines worth quoting: the last few that report an error
/// (`pg_restore: error: …`, `ERROR:  …`), else the last non-empty ones.
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
        .filter(|l| l.starts_with(&prefix) || l.contains("ERROR:") || l.contains("FATAL:"))
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
    if program == "pg_restore" && stderr.contains("already exists") {
        message.push_str(
            "; to restore over existing objects set param `clean = true`, or restore into a new \
             `target-database`",
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

/// Create `database` unless it exists; whether it was created.
fn ensure_database(params: &Params, database: &str) -> Result<bool> {
    let exists = params
        .command(
            "psql",
            params.psql_args(MAINTENANCE_DATABASE, &exists_sql(database)),
        )
        .run()
        .and_then(check_exit)
        .with_context(|| format!("checking whether database `{database}` exists"))?;
    if exists.stdout_text().trim() == "1" {
        log::info(format!("database `{database}` exists; restoring into it"));
        return Ok(false);
    }
    params
        .command(
            "psql",
            params.psql_args(MAINTENANCE_DATABASE, &create_sql(database)),
        )
        .run()
        .and_then(check_exit)
        .with_context(|| format!("creating database `{database}`"))?;
    log::info(format!("created database `{database}`"));
    Ok(true)
}

/// Check that the snapshot's `artifacts` hold stream `name`, before a
/// restore creates anything.
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

/// The params of a run, checked.
fn params(ctx: &Context) -> Result<Params> {
    let params: Params = ctx.params()?;
    params.check()?;
    Ok(params)
}

struct PostgresTask;

impl Task for PostgresTask {
    fn describe() -> Description {
        Description::new("postgres", env!("CARGO_PKG_VERSION"))
            .summary(
                "Dumps a PostgreSQL database with pg_dump --format=custom straight into the \
                 repository; restores with pg_restore into a named database (created if missing)",
            )
            .param(Param::required("database", "Database to dump"))
            .param(Param::optional(
                "host",
                "Server host name, address or Unix socket directory",
                json!("127.0.0.1"),
            ))
            .param(Param::optional("port", "Server port", json!(5432)))
            .param(Param::optional(
                "user",
                "User to connect as",
                json!("postgres"),
            ))
            .param(Param::optional(
                "password-secret",
                "Name of a secret granted in allow.secrets, passed to the commands as PGPASSWORD \
                 (the module never sees it)",
                None,
            ))
            .param(Param::optional(
                "extra-args",
                "More pg_dump arguments, e.g. [\"--exclude-table=audit_log\"]",
                json!([]),
            ))
            .param(Param::optional(
                "target-database",
                "Restore: database to restore into (default: `database`)",
                None,
            ))
            .param(Param::optional(
                "create",
                "Restore: create the target database if it does not exist",
                json!(true),
            ))
            .param(Param::optional(
                "clean",
                "Restore: drop the dump's objects before recreating them (--clean --if-exists)",
                json!(false),
            ))
            .needs_command("pg_dump")
            .needs_command("pg_restore")
            .needs_command("psql")
            .needs_secret("{password-secret}")
    }

    fn backup(ctx: Context) -> Result<Value> {
        let params = params(&ctx)?;
        let database = params.database.as_str();
        let artifact_name = dump_artifact_name(database);

        let server_version = probe(
            params.command("psql", params.psql_args(database, "SHOW server_version")),
            "server version",
        );
        let pg_dump_version = probe(Command::new("pg_dump").arg("--version"), "pg_dump version");
        let mut notes = BTreeMap::from([
            ("database", database.to_owned()),
            ("artifact", artifact_name.clone()),
            ("format", FORMAT.to_owned()),
        ]);
        notes.extend(server_version.map(|v| ("server-version", v)));
        notes.extend(pg_dump_version.map(|v| ("pg-dump-version", v)));
        for (key, value) in &notes {
            storage::set_note(key, value)?;
        }

        log::info(format!(
            "dumping database `{database}` from {}:{} as `{artifact_name}`",
            params.host, params.port
        ));
        progress::report(0, 1, Unit::Items);
        let dump = params.command("pg_dump", params.pg_dump_args());
        let artifact = storage::create_from_command(&artifact_name, &dump)
            .with_context(|| format!("dumping database `{database}`"))?;
        progress::report(1, 1, Unit::Items);
        log::info_with(
            format!(
                "dumped database `{database}` ({})",
                cairn_guest::format_size(artifact.size)
            ),
            &[("artifact", &artifact.name), ("bytes", &artifact.size)],
        );
        Ok(json!({
            "artifact": artifact.name,
            "bytes": artifact.size,
            "database": database,
        }))
    }

    fn restore(ctx: Context) -> Result<Value> {
        let params = params(&ctx)?;
        let target = params.target_database();
        let notes = storage::notes()?;
        let artifact = notes
            .get("artifact")
            .cloned()
            .unwrap_or_else(|| dump_artifact_name(&params.database));
        let from = notes.get("database").map_or("", String::as_str);
        let version = notes.get("server-version").map_or("", String::as_str);
        log::info_with(
            format!("restoring `{artifact}` into database `{target}`"),
            &[("from-database", &from), ("server-version", &version)],
        );
        check_dump_present(&artifact, &storage::list()?)?;

        progress::report(0, 1, Unit::Items);
        let created = if params.create {
            ensure_database(&params, target)?
        } else {
            false
        };
        let restore = params.command("pg_restore", params.pg_restore_args());
        let output = storage::restore_to_command(&artifact, &restore)
            .and_then(check_exit)
            .with_context(|| format!("restoring `{artifact}` into database `{target}`"))?;
        for line in output
            .stderr_text()
            .lines()
            .filter(|l| !l.trim().is_empty())
        {
            log::warn(line);
        }
        progress::report(1, 1, Unit::Items);
        log::info(format!("restored `{artifact}` into database `{target}`"));
        Ok(json!({
            "artifact": artifact,
            "database": target,
            "created": created,
        }))
    }
}

cairn_guest::export_task!(PostgresTask);

#[cfg(test)]
mod tests {
    use super::*;
    use cairn_guest::{ErrorKind, from_params};

    fn parse(params: Value) -> Result<Params> {
        let params: Params = from_params(params)?;
        params.check()?;
        Ok(params)
    }

    #[test]
    fn params_have_defaults() {
        let p = parse(json!({"database": "app"})).unwrap();
        assert_eq!(
            (p.host.as_str(), p.port, p.user.as_str()),
            ("127.0.0.1", 5432, "postgres")
        );
        assert!(p.create && !p.clean);
        assert!(p.password_secret.is_none() && p.extra_args.is_empty());
        assert_eq!(p.target_database(), "app");
        let p = parse(json!({"database": "app", "target-database": "app_check"})).unwrap();
        assert_eq!(p.target_database(), "app_check");
    }

    #[test]
    fn params_are_checked() {
        let cases = [
            (json!({}), "missing field `database`"),
            (json!({"database": ""}), "`database` is empty"),
            (
                json!({"database": "a\u{0}b"}),
                "`database` contains a NUL byte",
            ),
            (
                json!({"database": "a".repeat(64)}),
                "PostgreSQL keeps at most 63",
            ),
            (
                json!({"database": "a", "target-database": ""}),
                "`target-database` is empty",
            ),
            (
                json!({"database": "a", "port": 0}),
                "`port` must be 1-65535",
            ),
            (json!({"database": "a", "port": 70000}), "invalid params"),
            (json!({"database": "a", "user": ""}), "`user` is empty"),
            (
                json!({"database": "a", "password-secret": "pg-pass"}),
                "`password-secret` must name",
            ),
            (json!({"database": "a", "jobs": 4}), "unknown field `jobs`"),
            (
                json!({"database": "a", "extra-args": ["-f", "x"]}),
                "leave out -f/--file",
            ),
        ];
        for (params, expected) in cases {
            let err = parse(params.clone()).unwrap_err();
            assert_eq!(err.kind(), ErrorKind::Invalid, "{params}");
            assert!(err.to_string().contains(expected), "{params}: {err}");
        }
        assert!(
            parse(json!({"database": "a".repeat(63), "password-secret": "PG_PASSWORD"})).is_ok()
        );
    }

    #[test]
    fn extra_args_cannot_redirect_the_dump() {
        for arg in [
            "-f",
            "-fdump",
            "-F",
            "-Fp",
            "--file=x",
            "--format=plain",
            "--fo=p",
            "--fil",
        ] {
            assert!(redirects_output(arg), "{arg}");
        }
        for arg in [
            "--exclude-table=audit",
            "--no-comments",
            "-n",
            "--f",
            "-v",
            "x-f",
        ] {
            assert!(!redirects_output(arg), "{arg}");
        }
    }

    #[test]
    fn pg_dump_argv() {
        let p = parse(json!({
            "database": "app", "host": "db.internal", "port": 6432, "user": "backup",
            "extra-args": ["--no-comments"]
        }))
        .unwrap();
        assert_eq!(
            p.pg_dump_args(),
            [
                "--format=custom",
                "--no-password",
                "-h",
                "db.internal",
                "-p",
                "6432",
                "-U",
                "backup",
                "--dbname=dbname='app'",
                "--no-comments"
            ]
        );
        assert!(p.env().is_empty());
    }

    #[test]
    fn password_goes_in_as_a_secret_reference() {
        let p = parse(json!({"database": "app", "password-secret": "PG_PASSWORD"})).unwrap();
        assert_eq!(
            p.env(),
            [("PGPASSWORD".to_owned(), "{{secret:PG_PASSWORD}}".to_owned())]
        );
    }

    #[test]
    fn pg_restore_argv() {
        let p = parse(json!({"database": "app", "target-database": "app copy"})).unwrap();
        assert_eq!(
            p.pg_restore_args(),
            [
                "--no-password",
                "--no-owner",
                "-h",
                "127.0.0.1",
                "-p",
                "5432",
                "-U",
                "postgres",
                "--dbname=dbname='app copy'"
            ]
        );
        let p = parse(json!({"database": "app", "clean": true})).unwrap();
        let args = p.pg_restore_args();
        assert_eq!(
            args[args.len() - 3..],
            ["--dbname=dbname='app'", "--clean", "--if-exists"]
        );
    }

    #[test]
    fn psql_argv() {
        let p = parse(json!({"database": "app"})).unwrap();
        assert_eq!(
            p.psql_args("postgres", "SHOW server_version"),
            [
                "--no-psqlrc",
                "--no-password",
                "--no-align",
                "--tuples-only",
                "-h",
                "127.0.0.1",
                "-p",
                "5432",
                "-U",
                "postgres",
                "--dbname=dbname='postgres'",
                "--command",
                "SHOW server_version"
            ]
        );
    }

    #[test]
    fn names_are_quoted_for_libpq_and_sql() {
        assert_eq!(dbname_arg("it's"), r"--dbname=dbname='it\'s'");
        assert_eq!(dbname_arg(r"a\b"), r"--dbname=dbname='a\\b'");
        assert_eq!(dbname_arg("-x=y"), "--dbname=dbname='-x=y'");
        assert_eq!(
            exists_sql("it's"),
            "SELECT 1 FROM pg_database WHERE datname = 'it''s'"
        );
        assert_eq!(
            exists_sql(r"a\b'c"),
            r"SELECT 1 FROM pg_database WHERE datname = E'a\\b''c'"
        );
        assert_eq!(create_sql(r#"my "db""#), r#"CREATE DATABASE "my ""db""""#);
        assert_eq!(create_sql("App"), "CREATE DATABASE \"App\"");
    }

    #[test]
    fn artifact_names_derive_from_the_database() {
        assert_eq!(dump_artifact_name("app"), "app.dump");
        assert_eq!(dump_artifact_name("my db/ü"), "my_db__.dump");
        assert_eq!(dump_artifact_name(".hidden"), "_hidden.dump");
    }

    #[test]
    fn failures_quote_the_last_error_lines() {
        let stderr = "pg_restore: error: could not execute query: ERROR:  relation \"t\" already exists\n\
                      Command was: CREATE TABLE public.t (\n    id integer\n);\n\n\n\
                      pg_restore: warning: errors ignored on restore: 1\n";
        assert_eq!(
            failure_message("pg_restore", Some(1), stderr, false),
            "`pg_restore` exited with code 1: pg_restore: error: could not execute query: \
             ERROR:  relation \"t\" already exists; pg_restore: warning: errors ignored on \
             restore: 1; to restore over existing objects set param `clean = true`, or restore \
             into a new `target-database`"
        );
        assert_eq!(
            failure_message("psql", Some(2), "\npsql: error: connection refused\n", true),
            "`psql` exited with code 2: psql: error: connection refused \
             (stderr was cut at the output limit)"
        );
        assert_eq!(
            failure_message("pg_dump", None, "", false),
            "`pg_dump` was killed by a signal"
        );
        // Without recognisable error lines: the last ones.
        assert_eq!(error_lines("x", "a\nb\nc\nd\n"), ["b", "c", "d"]);
        assert_eq!(
            error_lines("x", "x: 1\nx: 2\nx: 3\nx: 4\nnoise"),
            ["x: 2", "x: 3", "x: 4"]
        );
    }

    #[test]
    fn restore_needs_the_dump_in_the_snapshot() {
        let artifact = |name: &str, kind| Artifact {
            name: name.to_owned(),
            kind,
            size: 1,
        };
        let held = [
            artifact("app.dump", ArtifactKind::Stream),
            artifact("uploads", ArtifactKind::Tree),
        ];
        assert!(check_dump_present("app.dump", &held).is_ok());
        let err = check_dump_present("uploads", &held).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::NotFound);
        assert_eq!(
            err.to_string(),
            "the snapshot holds no dump `uploads` (it holds `app.dump`, `uploads`); \
             was it written by this job?"
        );
        assert!(
            check_dump_present("x.dump", &[])
                .unwrap_err()
                .to_string()
                .contains("(it holds nothing)")
        );
    }

    #[test]
    fn describe_declares_commands_and_secret() {
        let d = PostgresTask::describe();
        assert_eq!(d.name(), "postgres");
        assert!(
            d.params()
                .iter()
                .any(|p| p.name() == "database" && p.is_required())
        );
        assert!(!d.params().iter().any(|p| p.name() == "jobs"));
    }

    /// The argv this module builds, run against a real server the way the
    /// host would: empty environment, `pg_dump`'s stdout piped into
    /// `pg_restore`'s stdin. Set `CAIRN_TEST_PG_HOST` (e.g. `127.0.0.1`;
    /// user `postgres`, no password) to run it; it creates and drops
    /// databases named `cairn test …`.
    #[test]
    fn round_trip_against_a_real_server() {
        use std::process::{Command as Process, Stdio};

        let Ok(host) = std::env::var("CAIRN_TEST_PG_HOST") else {
            eprintln!("skipped: set CAIRN_TEST_PG_HOST to run against a real server");
            return;
        };
        let id = std::process::id();
        let source = format!("cairn test {id} it's -x=y \\ \"q\"");
        let target = format!("cairn test {id} restored");
        let p = parse(json!({
            "database": source, "target-database": target, "host": host, "clean": true
        }))
        .unwrap();
        let run = |program: &str, args: Vec<String>| {
            let out = Process::new(program)
                .args(&args)
                .env_clear()
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "{program} {args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            String::from_utf8(out.stdout).unwrap().trim().to_owned()
        };
        let psql = |db: &str, sql: &str| run("/usr/bin/psql", p.psql_args(db, sql));

        for db in [&source, &target] {
            psql(
                "postgres",
                &format!("DROP DATABASE IF EXISTS {}", sql_identifier(db)),
            );
        }
        assert_eq!(psql("postgres", &exists_sql(&source)), "");
        psql("postgres", &create_sql(&source));
        assert_eq!(psql("postgres", &exists_sql(&source)), "1");
        psql(
            &source,
            "CREATE TABLE t (v text); INSERT INTO t VALUES ('kept')",
        );
        psql("postgres", &create_sql(&target));

        let mut dump = Process::new("/usr/bin/pg_dump")
            .args(p.pg_dump_args())
            .env_clear()
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let restore = Process::new("/usr/bin/pg_restore")
            .args(p.pg_restore_args())
            .env_clear()
            .stdin(dump.stdout.take().unwrap())
            .output()
            .unwrap();
        assert!(dump.wait().unwrap().success());
        assert!(
            restore.status.success(),
            "{}",
            String::from_utf8_lossy(&restore.stderr)
        );
        assert_eq!(psql(&target, "SELECT v FROM t"), "kept");

        for db in [&source, &target] {
            psql("postgres", &format!("DROP DATABASE {}", sql_identifier(db)));
        }
    }
}
