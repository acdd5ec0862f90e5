//! The TOML configuration: plain serde data, validated as a whole into [`Config`].
//!
//! Parsing is strict (`deny_unknown_fields`); validation collects every problem
//! in the file and reports them together, each naming the job and key.
//! Nothing here runs Wasm: checking a task's declared needs against the job's
//! grants happens later, in `cairn validate` (see [`crate::runner`]).
//!
//! [`load`] reads a file and [`parse`] validates text; both return a
//! [`ConfigError`] listing every [`Problem`] (`job `db`, key `timeout` (line 7,
//! column 11): …`). To collect them all, the text is parsed into a spanned
//! document first; each serde error is traced back to its entry, reported, and
//! the entry removed before deserializing again, so one bad key never hides
//! another. [`warnings`] lists what loads but will not work (granted programs
//! that are not installed).

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsString;
use std::ops::Range;
use std::path::{Component, Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use toml::de::{DeTable, DeValue};

use crate::builtins::{self, ModuleKind};
use crate::capabilities::http::OriginPattern;
pub use crate::repository::Retention;
use crate::units::{format_size, parse_duration, parse_size};

// ---------------------------------------------------------------------------
// Raw file shape (what serde reads)
// ---------------------------------------------------------------------------

/// The whole configuration file as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct ConfigFile {
    /// Where snapshots are kept (implemented by the repository module).
    #[serde(default)]
    pub repository: Option<RepositoryFile>,
    /// Where run history and job state are kept.
    #[serde(default)]
    pub state: StateFile,
    /// Plug-in runtime settings.
    #[serde(default)]
    pub runtime: RuntimeFile,
    /// Where secret values come from, by secret name. A secret not listed here
    /// is read from the environment variable of the same name.
    #[serde(default)]
    pub secrets: BTreeMap<String, SecretSource>,
    /// Custom Function modules callable by tasks, by name.
    #[serde(default)]
    pub functions: BTreeMap<String, FunctionFile>,
    /// Tasks written as ordered Function steps, by name (`task = "pipeline:NAME"`).
    #[serde(default)]
    pub pipelines: BTreeMap<String, crate::pipeline::PipelineFile>,
    /// Jobs, by name.
    #[serde(default)]
    pub jobs: BTreeMap<String, JobFile>,
    /// `cairn daemon` settings.
    #[serde(default)]
    pub daemon: DaemonFile,
}

/// `[daemon]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct DaemonFile {
    /// Address of the HTTP API (default `127.0.0.1:8484`). Anything but a
    /// loopback address needs a bearer token.
    pub listen: Option<String>,
    /// Environment variable holding the API's bearer token.
    pub token_env: Option<String>,
    /// File holding the API's bearer token (trailing newline trimmed).
    pub token_file: Option<PathBuf>,
    /// How long a shutdown waits for running runs before cancelling them
    /// (default `30s`).
    pub shutdown_grace: Option<String>,
    /// Cron schedule of the repository's `prune` (e.g. `@weekly`); none by default.
    pub prune: Option<String>,
    /// Time zone of `prune` (IANA name, default UTC).
    pub prune_timezone: Option<String>,
}

/// `retries = { attempts = 3, backoff = "30s", max-backoff = "10m" }`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RetriesFile {
    /// Attempts in all, the first included (default 1: no retry).
    pub attempts: Option<u32>,
    /// Delay before the first retry, doubled for each later one (default `30s`).
    pub backoff: Option<String>,
    /// Cap on the delay (default `10m`).
    pub max_backoff: Option<String>,
}

/// `[repository]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RepositoryFile {
    /// Local directory of the repository.
    pub path: PathBuf,
    /// Environment variable holding the repository password.
    pub password_env: Option<String>,
    /// File holding the repository password.
    pub password_file: Option<PathBuf>,
}

/// `[state]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct StateFile {
    /// SQLite database path (default `.cairn/state.db`, relative to the config file).
    pub path: Option<PathBuf>,
}

/// `[runtime]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RuntimeFile {
    /// Directory for compiled modules (default `$XDG_CACHE_HOME/cairn` or `~/.cache/cairn`).
    pub cache_dir: Option<PathBuf>,
}

/// `[secrets.NAME]`: where a secret's value comes from. Exactly one key.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct SecretSource {
    /// Read from this environment variable.
    pub env: Option<String>,
    /// Read from this file (trailing newline trimmed).
    pub file: Option<PathBuf>,
}

/// `[functions.NAME]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct FunctionFile {
    /// `builtin:NAME` or a path to a `.wasm` component.
    pub module: String,
    /// Optional sha256 pin (64 hex digits).
    pub sha256: Option<String>,
}

/// `[jobs.NAME]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct JobFile {
    /// `builtin:NAME` or a path to a `.wasm` component.
    pub task: String,
    /// Optional sha256 pin of the task module (64 hex digits).
    pub sha256: Option<String>,
    /// Parameters passed to the task.
    #[serde(default)]
    pub params: toml::Table,
    /// Cron schedule (used by the daemon): 5 fields, 6 with seconds first, or
    /// `@hourly`, `@daily`, `@weekly`, `@monthly`, `@yearly`.
    pub schedule: Option<String>,
    /// IANA time zone the schedule is read in (default `UTC`).
    pub timezone: Option<String>,
    /// Fires missed while the daemon was down: `coalesce` (run once, the
    /// default) or `skip`.
    #[serde(default)]
    pub missed: crate::daemon::schedule::Missed,
    /// A fire while the job runs: `forbid` (skip it, the default), `allow`
    /// or `replace` (cancel the running one).
    #[serde(default)]
    pub concurrency: crate::daemon::schedule::Concurrency,
    /// Retries of a failed scheduled run.
    #[serde(default)]
    pub retries: RetriesFile,
    /// How many finished runs of the job the run history keeps (default 100).
    pub keep_runs: Option<u32>,
    /// Wall-clock timeout of a run, e.g. `2h`, `30s` (default `1h`).
    pub timeout: Option<String>,
    /// Linear-memory limit, e.g. `256MiB` (default `512MiB`).
    pub memory: Option<String>,
    /// Cap on captured output per stream (guest stdout/stderr, a command's
    /// stdout/stderr), e.g. `1MiB` (default `1MiB`).
    pub output_limit: Option<String>,
    /// Cap on an HTTP response body, e.g. `64MiB` (default `64MiB`).
    pub http_body_limit: Option<String>,
    /// Which snapshots `cairn forget` keeps (restic's keep rules, per job).
    #[serde(default)]
    pub retention: Retention,
    /// Capability grants. Everything not granted is denied.
    #[serde(default)]
    pub allow: AllowFile,
    /// Webhooks called when a run ends: one table or an array of them (see
    /// [`crate::daemon::notify`]). Their origins must be in `allow.http`.
    #[serde(default)]
    pub notify: crate::daemon::notify::NotifyFiles,
}

/// Access granted to a path.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Access {
    /// Read only.
    Read,
    /// Read and write.
    ReadWrite,
}

/// `[jobs.NAME.allow]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct AllowFile {
    /// HTTP origins, `scheme://host:port`; the host may start with `*.`.
    #[serde(default)]
    pub http: Vec<String>,
    /// Program names (resolved through `PATH` at load) or absolute paths.
    #[serde(default)]
    pub commands: Vec<String>,
    /// Paths and their access: `{ "/srv/data" = "read" }`.
    #[serde(default)]
    pub paths: BTreeMap<PathBuf, Access>,
    /// Secrets the host may inject (`{{secret:NAME}}` in headers and env).
    #[serde(default)]
    pub secrets: Vec<String>,
    /// Secrets whose value the module may read (implies `secrets`).
    #[serde(default)]
    pub readable_secrets: Vec<String>,
    /// Functions a task may call.
    #[serde(default)]
    pub functions: Vec<String>,
}

// ---------------------------------------------------------------------------
// Validated configuration (what the rest of the host uses)
// ---------------------------------------------------------------------------

/// Where a module comes from.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ModuleSource {
    /// A module embedded in the binary, `builtin:NAME`, by its
    /// [`Builtin::id`](crate::builtins::Builtin::id) (see [`crate::builtins`]).
    Builtin(String),
    /// A `.wasm` file (absolute, resolved against the config file's directory).
    File(PathBuf),
    /// A pipeline task, by its key in [`Config::pipelines`]: `NAME` for
    /// `pipeline:NAME`, `builtin:NAME` for a built-in pipeline, the absolute
    /// path for a pipeline file.
    Pipeline(String),
}

/// A module and its optional pin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModuleRef {
    /// Where it comes from.
    pub source: ModuleSource,
    /// Required sha256, if pinned.
    pub sha256: Option<[u8; 32]>,
}

/// Per-run limits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Wall-clock timeout of a whole run.
    pub timeout: Duration,
    /// Linear memory, bytes.
    pub memory: u64,
    /// Captured output cap per stream, bytes.
    pub output: u64,
    /// HTTP response body cap, bytes.
    pub http_body: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(3600),
            memory: 512 << 20,
            output: 1 << 20,
            http_body: 64 << 20,
        }
    }
}

/// A program granted to a job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GrantedProgram {
    /// As written in the grant.
    pub name: String,
    /// Absolute path found at load time, or `None` if it is not installed.
    pub path: Option<PathBuf>,
}

/// What a job may reach. Everything else is denied.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Grants {
    /// HTTP origins.
    pub http: Vec<OriginPattern>,
    /// Programs, by granted name.
    pub commands: BTreeMap<String, GrantedProgram>,
    /// Paths (absolute) and their access.
    pub paths: BTreeMap<PathBuf, Access>,
    /// Secrets the host may inject (includes the readable ones).
    pub secrets: BTreeSet<String>,
    /// Secrets the module may read.
    pub readable_secrets: BTreeSet<String>,
    /// Functions a task may call.
    pub functions: BTreeSet<String>,
}

/// One validated job.
#[derive(Debug, Clone, PartialEq)]
pub struct JobConfig {
    /// Job name.
    pub name: String,
    /// The task module.
    pub task: ModuleRef,
    /// Params as a JSON object.
    pub params: serde_json::Map<String, serde_json::Value>,
    /// Cron schedule, as written.
    pub schedule: Option<String>,
    /// `schedule` parsed, in the job's time zone.
    pub cron: Option<crate::daemon::schedule::Schedule>,
    /// What the daemon does about fires missed while it was down.
    pub missed: crate::daemon::schedule::Missed,
    /// What a fire does while the job runs.
    pub concurrency: crate::daemon::schedule::Concurrency,
    /// Retries of a failed scheduled run.
    pub retries: crate::daemon::schedule::Retries,
    /// Finished runs kept in the run history.
    pub keep_runs: usize,
    /// Snapshot retention.
    pub retention: Retention,
    /// Limits.
    pub limits: Limits,
    /// Grants.
    pub grants: Grants,
    /// Webhooks called when a run ends.
    pub notify: Vec<crate::daemon::notify::Webhook>,
}

/// A validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// File it was read from (absolute), if any.
    pub source: Option<PathBuf>,
    /// Directory relative paths are resolved against.
    pub base_dir: PathBuf,
    /// `[repository]`, with `path` made absolute.
    pub repository: Option<RepositoryFile>,
    /// SQLite database path (absolute).
    pub state_path: PathBuf,
    /// Compile cache directory (absolute).
    pub cache_dir: PathBuf,
    /// Secret sources by name.
    pub secrets: BTreeMap<String, SecretSource>,
    /// Custom functions by name.
    pub functions: BTreeMap<String, ModuleRef>,
    /// Pipelines used or declared, by key (see [`ModuleSource::Pipeline`]).
    pub pipelines: BTreeMap<String, std::sync::Arc<crate::pipeline::Pipeline>>,
    /// Jobs by name.
    pub jobs: BTreeMap<String, JobConfig>,
    /// `cairn daemon` settings.
    pub daemon: DaemonConfig,
}

/// Default address of the daemon's HTTP API.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8484";
/// Default number of finished runs the history keeps per job.
pub const DEFAULT_KEEP_RUNS: usize = 100;

/// Validated `[daemon]` settings.
#[derive(Debug, Clone)]
pub struct DaemonConfig {
    /// Address of the HTTP API.
    pub listen: std::net::SocketAddr,
    /// Where the API's bearer token comes from, if it needs one.
    pub token: Option<SecretSource>,
    /// How long a shutdown waits for running runs before cancelling them.
    pub shutdown_grace: Duration,
    /// When the repository is pruned, if ever.
    pub prune: Option<crate::daemon::schedule::Schedule>,
}

impl Default for DaemonConfig {
    fn default() -> Self {
        Self {
            listen: DEFAULT_LISTEN.parse().expect("valid default address"),
            token: None,
            shutdown_grace: Duration::from_secs(30),
            prune: None,
        }
    }
}

/// One problem found in a configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// Where: `job `x`: allow.http[0]` or `line 3, column 7`.
    pub location: String,
    /// What is wrong and what to do.
    pub message: String,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.location, self.message)
    }
}

/// Every problem found in a configuration file.
#[derive(Debug, thiserror::Error)]
#[error("{} has {} problem{}:\n{}", .file, .problems.len(), if .problems.len() == 1 { "" } else { "s" }, .problems.iter().map(|p| format!("  - {p}")).collect::<Vec<_>>().join("\n"))]
pub struct ConfigError {
    /// The file (or `<config>` for in-memory text).
    pub file: String,
    /// All problems.
    pub problems: Vec<Problem>,
}

// ---------------------------------------------------------------------------
// Loading
// ---------------------------------------------------------------------------

/// Smallest accepted `memory` limit.
const MIN_MEMORY: u64 = 1 << 20;
/// Largest accepted `memory` limit.
const MAX_MEMORY: u64 = 64 << 30;

/// Read and validate the configuration file at `path`. Relative paths in it
/// are resolved against the file's directory (made absolute).
///
/// # Errors
/// A [`ConfigError`] with every problem found; a missing or unreadable file
/// is a single problem that says so and suggests `-c`.
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    let label = path.display().to_string();
    let absolute = absolutize(path);
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(err) => {
            let message = if err.kind() == std::io::ErrorKind::NotFound {
                "file not found; create it, or pass the configuration file with `-c PATH`"
                    .to_owned()
            } else {
                format!(
                    "cannot read it: {err}; check its permissions, or pass another \
                     configuration file with `-c PATH`"
                )
            };
            return Err(ConfigError {
                file: label,
                problems: vec![Problem {
                    location: absolute.display().to_string(),
                    message,
                }],
            });
        }
    };
    let base_dir = absolute
        .parent()
        .map_or_else(|| PathBuf::from("/"), Path::to_path_buf);
    let mut config = parse(&text, &label, &base_dir)?;
    config.source = Some(absolute);
    Ok(config)
}

/// Parse and validate configuration `text`. `file_label` names it in errors;
/// relative paths are resolved against `base_dir` (made absolute first).
///
/// # Errors
/// A [`ConfigError`] listing every problem, in file order: TOML syntax errors
/// (`line L, column C`) alone if there are any, otherwise unknown keys,
/// wrongly typed values and invalid settings, each naming the job and key.
pub fn parse(text: &str, file_label: &str, base_dir: &Path) -> Result<Config, ConfigError> {
    let base_dir = absolutize(base_dir);
    let error = |problems| ConfigError {
        file: file_label.to_owned(),
        problems,
    };

    let (document, syntax_errors) = DeTable::parse_recoverable(text);
    if !syntax_errors.is_empty() {
        return Err(error(syntax_problems(text, &syntax_errors)));
    }

    let mut problems = Problems::new(text);
    let mut document = document.into_inner();
    let file = deserialize_leniently(&mut document, &mut problems);
    let mut checker = Checker {
        document: &document,
        base_dir: &base_dir,
        problems,
    };
    let config = checker.config(file);
    let problems = checker.problems.into_sorted();
    if problems.is_empty() {
        Ok(config)
    } else {
        Err(error(problems))
    }
}

/// Things worth telling the user that do not stop a job from loading: today,
/// granted programs that are not installed (their runs fail when they call them).
pub fn warnings(config: &Config) -> Vec<Problem> {
    let mut warnings = Vec::new();
    for job in config.jobs.values() {
        for program in job.grants.commands.values() {
            if program.path.is_none() {
                warnings.push(Problem {
                    location: format!("job `{}`, key `allow.commands`", job.name),
                    message: format!(
                        "`{}` is granted but not installed (not found in PATH); runs that \
                         call it will fail until it is installed",
                        program.name
                    ),
                });
            }
        }
    }
    warnings
}

impl Config {
    /// The job called `name`.
    ///
    /// # Errors
    /// When there is no such job; the message names the file and lists its jobs.
    pub fn job(&self, name: &str) -> Result<&JobConfig, UnknownJob> {
        self.jobs.get(name).ok_or_else(|| {
            let file = self.source.as_ref().map_or_else(
                || "the configuration".to_owned(),
                |path| path.display().to_string(),
            );
            UnknownJob(if self.jobs.is_empty() {
                format!(
                    "no job `{name}` in {file}: it defines no jobs (add a `[jobs.{name}]` table)"
                )
            } else {
                let hint = did_you_mean(name, self.jobs.keys().map(String::as_str));
                let jobs = self.jobs.keys().map(String::as_str).collect::<Vec<_>>();
                format!("no job `{name}` in {file}{hint}; jobs: {}", jobs.join(", "))
            })
        })
    }
}

/// A job name that the configuration does not define.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UnknownJob(pub String);

// ---------------------------------------------------------------------------
// Problems and where they are
// ---------------------------------------------------------------------------

/// One step of a key path: a table key or an array index.
#[derive(Debug, Clone)]
enum Seg {
    Key(String),
    Index(usize),
}

fn key(k: impl Into<String>) -> Seg {
    Seg::Key(k.into())
}

/// The job/function/secret a path belongs to, and the rest of the path.
fn split_owner(path: &[Seg]) -> (Option<String>, &[Seg]) {
    if let [Seg::Key(section), Seg::Key(name), rest @ ..] = path {
        let owner = match section.as_str() {
            "jobs" => Some("job"),
            "functions" => Some("function"),
            "secrets" => Some("secret"),
            "pipelines" => Some("pipeline"),
            _ => None,
        };
        if let Some(owner) = owner {
            return (Some(format!("{owner} `{name}`")), rest);
        }
    }
    (None, path)
}

/// `allow.paths."/srv/data"`, `allow.http[1]`.
fn dotted(path: &[Seg]) -> String {
    let mut out = String::new();
    for seg in path {
        match seg {
            Seg::Key(k) => {
                if !out.is_empty() {
                    out.push('.');
                }
                let bare = !k.is_empty()
                    && k.chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
                if bare {
                    out.push_str(k);
                } else {
                    out.push_str(&format!("{k:?}"));
                }
            }
            Seg::Index(i) => out.push_str(&format!("[{i}]")),
        }
    }
    out
}

/// `job `db`, key `allow.http[1]``, `key `repository.path``, or empty for the top level.
fn describe(path: &[Seg]) -> String {
    match split_owner(path) {
        (Some(owner), []) => owner,
        (Some(owner), rest) => format!("{owner}, key `{}`", dotted(rest)),
        (None, []) => String::new(),
        (None, rest) => format!("key `{}`", dotted(rest)),
    }
}

/// 1-based line and column (in characters) of byte `offset` in `text`.
fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let mut offset = offset.min(text.len());
    while !text.is_char_boundary(offset) {
        offset -= 1;
    }
    let before = &text[..offset];
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let line = before.matches('\n').count() + 1;
    let column = before[line_start..].chars().count() + 1;
    (line, column)
}

/// Problems found so far, each with the byte offset it points at (for file order).
struct Problems<'t> {
    text: &'t str,
    list: Vec<(Option<usize>, Problem)>,
}

impl<'t> Problems<'t> {
    fn new(text: &'t str) -> Self {
        Self {
            text,
            list: Vec::new(),
        }
    }

    /// Record a problem; `location` gets `(line L, column C)` when `offset` is known.
    fn push(&mut self, location: String, offset: Option<usize>, message: String) {
        let location = match (offset, location.is_empty()) {
            (Some(offset), empty) => {
                let (line, column) = line_column(self.text, offset);
                if empty {
                    format!("line {line}, column {column}")
                } else {
                    format!("{location} (line {line}, column {column})")
                }
            }
            (None, true) => "top level".to_owned(),
            (None, false) => location,
        };
        self.list.push((offset, Problem { location, message }));
    }

    /// All problems, in file order (those without a position last).
    fn into_sorted(mut self) -> Vec<Problem> {
        self.list
            .sort_by_key(|(offset, _)| offset.map_or((1, 0), |o| (0, o)));
        self.list.into_iter().map(|(_, p)| p).collect()
    }
}

/// TOML syntax errors as problems at `line L, column C`, one per line (the
/// parser's recovery tends to add follow-on errors on the same line).
fn syntax_problems(text: &str, errors: &[toml::de::Error]) -> Vec<Problem> {
    let mut errors = errors.iter().collect::<Vec<_>>();
    errors.sort_by_key(|e| e.span().map_or(usize::MAX, |s| s.start));
    let mut problems = Vec::new();
    let mut last_line = None;
    for err in errors {
        let (location, line) = match err.span() {
            Some(span) => {
                let (line, column) = line_column(text, span.start);
                (format!("line {line}, column {column}"), Some(line))
            }
            None => ("top level".to_owned(), None),
        };
        if line.is_some() && line == last_line {
            continue;
        }
        last_line = line;
        let mut message = err.message().to_owned();
        if message == "duplicate key" {
            if let Some(key) = err.span().and_then(|s| text.get(s)) {
                message = format!("duplicate key `{key}`: each key may be set only once");
            }
        }
        problems.push(Problem { location, message });
    }
    problems
}

/// The candidate closest to `word`, if one is close enough to be a likely typo.
fn closest<'a>(word: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let normal = |s: &str| s.to_ascii_lowercase().replace('_', "-");
    let word_normal = normal(word);
    candidates
        .into_iter()
        .map(|c| (edit_distance(&word_normal, &normal(c)), c))
        .filter(|(distance, c)| *distance <= 2 && *distance <= (c.len().max(word.len()) / 3).max(1))
        .min_by_key(|(distance, _)| *distance)
        .map(|(_, c)| c)
}

/// ` (did you mean `x`?)` when a candidate is close to `word`, else empty.
fn did_you_mean<'a>(word: &str, candidates: impl IntoIterator<Item = &'a str>) -> String {
    closest(word, candidates).map_or_else(String::new, |c| format!(" (did you mean `{c}`?)"))
}

/// Levenshtein distance, counting an adjacent swap as one edit.
fn edit_distance(a: &str, b: &str) -> usize {
    let a = a.chars().collect::<Vec<_>>();
    let b = b.chars().collect::<Vec<_>>();
    let mut rows = vec![(0..=b.len()).collect::<Vec<_>>(); a.len() + 1];
    for (i, row) in rows.iter_mut().enumerate() {
        row[0] = i;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut best = (rows[i - 1][j] + 1)
                .min(rows[i][j - 1] + 1)
                .min(rows[i - 1][j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                best = best.min(rows[i - 2][j - 2] + 1);
            }
            rows[i][j] = best;
        }
    }
    rows[a.len()][b.len()]
}

// ---------------------------------------------------------------------------
// Lenient deserialization: every unknown key and wrongly typed value
// ---------------------------------------------------------------------------

/// Deserialize `document` into a [`ConfigFile`], collecting every serde error:
/// each error's span leads to the entry at fault, which is reported and
/// removed before trying again. What remains is valid and gets validated.
fn deserialize_leniently(document: &mut DeTable<'_>, problems: &mut Problems<'_>) -> ConfigFile {
    remove_non_tables(document, problems);
    // Each failed attempt removes one entry, so this bound is never reached in
    // practice; it only guards against an error that removal cannot fix.
    for _ in 0..10_000 {
        let spanned = toml::Spanned::new(0..0, document.clone());
        let err = match ConfigFile::deserialize(toml::de::Deserializer::from(spanned)) {
            Ok(file) => return file,
            Err(err) => err,
        };
        let span = err.span();
        let path = span.as_ref().and_then(|span| find_entry(document, span));
        report_serde_error(&err, path.as_deref().unwrap_or(&[]), span, problems);
        match path {
            Some(path) if remove_entry(document, &path) => {}
            _ => break,
        }
    }
    ConfigFile::default()
}

/// Report and remove values that must be tables but are not. Checked before
/// serde sees them: serde would read an array as a struct's fields in order,
/// and its messages name Rust types.
fn remove_non_tables(document: &mut DeTable<'_>, problems: &mut Problems<'_>) {
    let mut faulty = Vec::new();
    let mut check = |path: Vec<Seg>, value: &toml::Spanned<DeValue<'_>>| {
        if value.get_ref().is_table() {
            return true;
        }
        let message = match value.get_ref() {
            DeValue::Array(items)
                if !items.is_empty() && items.iter().all(|i| i.get_ref().is_table()) =>
            {
                format!(
                    "must be a table: write `[{0}]` (one pair of brackets), not `[[{0}]]`",
                    dotted(&path)
                )
            }
            other => format!("must be a table, not {}", a_type(other)),
        };
        faulty.push((path, value.span().start, message));
        false
    };
    for section in [
        "repository",
        "state",
        "runtime",
        "secrets",
        "functions",
        "pipelines",
        "jobs",
    ] {
        let Some(value) = document.get(section) else {
            continue;
        };
        if !check(vec![key(section)], value)
            || !matches!(section, "secrets" | "functions" | "pipelines" | "jobs")
        {
            continue;
        }
        let Some(entries) = value.get_ref().as_table() else {
            continue;
        };
        for (name, entry) in entries.iter() {
            let name = name.get_ref().as_ref();
            if !check(vec![key(section), key(name)], entry) || section != "jobs" {
                continue;
            }
            if let Some(allow) = entry.get_ref().get("allow") {
                check(vec![key(section), key(name), key("allow")], allow);
            }
        }
    }
    for (path, offset, message) in faulty {
        problems.push(describe(&path), Some(offset), message);
        remove_entry(document, &path);
    }
}

/// `an integer`, `a string`, … for messages.
fn a_type(value: &DeValue<'_>) -> String {
    let name = value.type_str();
    let article = if name.starts_with(['a', 'e', 'i', 'o', 'u']) {
        "an"
    } else {
        "a"
    };
    format!("{article} {name}")
}

/// Path (keys) to the entry at fault for an error at `span`: the entry whose
/// key is `span` (unknown keys), else whose value is exactly `span` (wrong
/// types, missing keys of a table), else the deepest value holding it (an
/// element of an array).
fn find_entry(table: &DeTable<'_>, span: &Range<usize>) -> Option<Vec<Seg>> {
    let key_is = |k: &Range<usize>, _: &Range<usize>| k == span;
    let value_is = |_: &Range<usize>, v: &Range<usize>| v == span;
    let value_holds =
        |_: &Range<usize>, v: &Range<usize>| v.start <= span.start && span.end <= v.end;
    find_entry_by(table, &key_is)
        .or_else(|| find_entry_by(table, &value_is))
        .or_else(|| find_entry_by(table, &value_holds))
}

/// Path to the deepest entry for which `matches(key span, value span)`.
fn find_entry_by(
    table: &DeTable<'_>,
    matches: &dyn Fn(&Range<usize>, &Range<usize>) -> bool,
) -> Option<Vec<Seg>> {
    for (k, v) in table.iter() {
        if let DeValue::Table(inner) = v.get_ref() {
            if let Some(mut path) = find_entry_by(inner, matches) {
                path.insert(0, key(k.get_ref().as_ref()));
                return Some(path);
            }
        }
        if matches(&k.span(), &v.span()) {
            return Some(vec![key(k.get_ref().as_ref())]);
        }
    }
    None
}

fn remove_entry(table: &mut DeTable<'_>, path: &[Seg]) -> bool {
    match path {
        [Seg::Key(last)] => table.remove(last.as_str()).is_some(),
        [Seg::Key(first), rest @ ..] => match table.get_mut(first.as_str()).map(|v| v.get_mut()) {
            Some(DeValue::Table(inner)) => remove_entry(inner, rest),
            _ => false,
        },
        _ => false,
    }
}

/// Report a serde error on the entry at `path`, in the config's own words.
fn report_serde_error(
    err: &toml::de::Error,
    path: &[Seg],
    span: Option<Range<usize>>,
    problems: &mut Problems<'_>,
) {
    let offset = span.map(|s| s.start);
    let message = err.message();
    let backticked = |text: &str| -> Vec<String> {
        text.split('`')
            .skip(1)
            .step_by(2)
            .map(str::to_owned)
            .collect()
    };

    if let Some(rest) = message.strip_prefix("unknown field ") {
        // `path` ends with the unknown key; report it on its owner.
        let names = backticked(rest);
        let (unknown, expected) = names
            .split_first()
            .map_or(("?", &[][..]), |(u, e)| (u.as_str(), e));
        let parent = &path[..path.len().saturating_sub(1)];
        let (owner, inner) = split_owner(parent);
        let owner_location = owner.unwrap_or_default();
        let within = if inner.is_empty() {
            String::new()
        } else {
            format!(" in `{}`", dotted(inner))
        };
        let expected_list = if expected.is_empty() {
            " (this table takes no keys)".to_owned()
        } else {
            format!(" (expected one of {})", expected.join(", "))
        };
        let hint = closest(unknown, expected.iter().map(String::as_str))
            .map_or_else(String::new, |c| format!("; did you mean `{c}`?"));
        problems.push(
            owner_location,
            offset,
            format!("unknown key `{unknown}`{within}{hint}{expected_list}"),
        );
    } else if let Some(rest) = message.strip_prefix("missing field ") {
        let missing = backticked(rest).into_iter().next().unwrap_or_default();
        let (owner, inner) = split_owner(path);
        let within = if inner.is_empty() {
            String::new()
        } else {
            format!(" in `{}`", dotted(inner))
        };
        let owner_location = owner.unwrap_or_default();
        problems.push(
            owner_location,
            offset,
            format!("missing key `{missing}`{within}"),
        );
    } else {
        problems.push(describe(path), offset, message.to_owned());
    }
}

// ---------------------------------------------------------------------------
// Validation: raw file → Config
// ---------------------------------------------------------------------------

struct Checker<'a, 't> {
    /// The document as deserialized (after removing faulty entries), for positions.
    document: &'a DeTable<'t>,
    base_dir: &'a Path,
    problems: Problems<'a>,
}

impl Checker<'_, '_> {
    /// Record a problem at `path`, with its line and column when the path is in the file.
    fn report(&mut self, path: &[Seg], message: impl Into<String>) {
        let offset = span_of(self.document, path).map(|s| s.start);
        self.problems.push(describe(path), offset, message.into());
    }

    /// `path` resolved against the config file's directory, normalized.
    fn resolve(&self, path: &Path) -> PathBuf {
        normalize(&self.base_dir.join(path))
    }

    fn config(&mut self, file: ConfigFile) -> Config {
        let repository = file.repository.map(|mut repository| {
            repository.path = self.resolve(&repository.path);
            repository.password_file = repository.password_file.map(|p| self.resolve(&p));
            repository
        });
        let state_path = file.state.path.map_or_else(
            || self.base_dir.join(".cairn").join("state.db"),
            |p| self.resolve(&p),
        );
        let cache_dir = file.runtime.cache_dir.map_or_else(
            || {
                default_cache_dir(
                    std::env::var_os("XDG_CACHE_HOME"),
                    std::env::var_os("HOME"),
                    self.base_dir,
                )
            },
            |p| self.resolve(&p),
        );

        let mut secrets = BTreeMap::new();
        for (name, source) in file.secrets {
            if let Some(source) = self.secret_source(&name, source) {
                secrets.insert(name, source);
            }
        }

        let mut functions = BTreeMap::new();
        for (name, function) in &file.functions {
            let path = [key("functions"), key(name)];
            if let Err(message) = check_name(name, "function") {
                self.report(&path, message);
            }
            if builtins::find(name).is_some() {
                self.report(
                    &path,
                    format!(
                        "`{name}` is the name of a builtin module; give this function another name"
                    ),
                );
            }
            let module = self.module_ref(
                &path,
                "module",
                &function.module,
                function.sha256.as_deref(),
                ModuleKind::Function,
            );
            if let Some(module) = module {
                functions.insert(name.clone(), module);
            }
        }

        let mut pipelines = BTreeMap::new();
        for (name, pipeline) in &file.pipelines {
            let path = [key("pipelines"), key(name)];
            if let Err(message) = check_name(name, "pipeline") {
                self.report(&path, message);
            }
            if let Some(p) = self.pipeline(&path, name, pipeline, &functions) {
                pipelines.insert(name.clone(), std::sync::Arc::new(p));
            }
        }

        let daemon = self.daemon(&file.daemon);

        let mut jobs = BTreeMap::new();
        for (name, job) in file.jobs {
            let task = self.pipeline_task(
                &name,
                &job.task,
                &functions,
                &file.pipelines,
                &mut pipelines,
            );
            if let Some(job) = self.job(&name, job, &file.functions, task) {
                jobs.insert(name, job);
            }
        }

        Config {
            source: None,
            base_dir: self.base_dir.to_path_buf(),
            repository,
            state_path,
            cache_dir,
            secrets,
            functions,
            pipelines,
            jobs,
            daemon,
        }
    }

    /// Validate `[daemon]`.
    fn daemon(&mut self, file: &DaemonFile) -> DaemonConfig {
        let at = |k: &str| [key("daemon"), key(k)];
        let mut daemon = DaemonConfig::default();
        if let Some(listen) = &file.listen {
            match listen.parse() {
                Ok(addr) => daemon.listen = addr,
                Err(_) => self.report(
                    &at("listen"),
                    format!("`{listen}` is not an address: write IP:PORT, e.g. `{DEFAULT_LISTEN}`"),
                ),
            }
        }
        daemon.token = match (&file.token_env, &file.token_file) {
            (Some(_), Some(_)) => {
                self.report(
                    &at("token-file"),
                    "give `token-env` or `token-file`, not both",
                );
                None
            }
            (Some(env), None) => Some(SecretSource {
                env: Some(env.clone()),
                file: None,
            }),
            (None, Some(path)) => Some(SecretSource {
                env: None,
                file: Some(self.resolve(path)),
            }),
            (None, None) => None,
        };
        if let Some(text) = &file.shutdown_grace {
            match parse_duration(text) {
                Ok(grace) => daemon.shutdown_grace = grace,
                Err(message) => self.report(&at("shutdown-grace"), message),
            }
        }
        if let Some(expr) = &file.prune {
            match crate::daemon::schedule::Schedule::parse(expr, file.prune_timezone.as_deref()) {
                Ok(s) => daemon.prune = Some(s),
                Err(e @ crate::daemon::schedule::ScheduleError::Timezone(_)) => {
                    self.report(&at("prune-timezone"), e.to_string());
                }
                Err(e) => self.report(&at("prune"), e.to_string()),
            }
        } else if file.prune_timezone.is_some() {
            self.report(&at("prune-timezone"), "has no effect without `prune`");
        }
        daemon
    }

    /// Validate a job's daemon keys: schedule, timezone, retries, keep-runs.
    #[allow(clippy::type_complexity)]
    fn job_timing(
        &mut self,
        job: &JobFile,
        at: &dyn Fn(&[&str]) -> Vec<Seg>,
    ) -> (
        Option<crate::daemon::schedule::Schedule>,
        crate::daemon::schedule::Retries,
        usize,
    ) {
        use crate::daemon::schedule::{Retries, Schedule, ScheduleError};
        let cron = match (&job.schedule, &job.timezone) {
            (Some(expr), tz) => match Schedule::parse(expr, tz.as_deref()) {
                Ok(s) => Some(s),
                Err(e @ ScheduleError::Timezone(_)) => {
                    self.report(&at(&["timezone"]), e.to_string());
                    None
                }
                Err(e) => {
                    self.report(&at(&["schedule"]), e.to_string());
                    None
                }
            },
            (None, Some(_)) => {
                self.report(&at(&["timezone"]), "has no effect without `schedule`");
                None
            }
            (None, None) => None,
        };
        let mut retries = Retries::default();
        let r = &job.retries;
        match r.attempts {
            Some(0) => self.report(
                &at(&["retries", "attempts"]),
                "must be at least 1 (the first attempt counts)",
            ),
            Some(n) => retries.attempts = n,
            None => {}
        }
        for (field, text, slot) in [
            ("backoff", &r.backoff, &mut retries.backoff),
            ("max-backoff", &r.max_backoff, &mut retries.max_backoff),
        ] {
            if let Some(text) = text {
                match parse_duration(text) {
                    Ok(d) => *slot = d,
                    Err(message) => self.report(&at(&["retries", field]), message),
                }
            }
        }
        if retries.max_backoff < retries.backoff {
            self.report(
                &at(&["retries", "max-backoff"]),
                "is shorter than `backoff`; make it at least as long",
            );
        }
        let keep_runs = match job.keep_runs {
            Some(0) => {
                self.report(&at(&["keep-runs"]), "must be at least 1");
                DEFAULT_KEEP_RUNS
            }
            Some(n) => usize::try_from(n).unwrap_or(usize::MAX),
            None => DEFAULT_KEEP_RUNS,
        };
        (cron, retries, keep_runs)
    }

    /// Validate pipeline `name` (declared at `path`, or a built-in/file one
    /// when `path` is the job's `task` key), reporting problems at their keys.
    fn pipeline(
        &mut self,
        path: &[Seg],
        name: &str,
        file: &crate::pipeline::PipelineFile,
        functions: &BTreeMap<String, ModuleRef>,
    ) -> Option<crate::pipeline::Pipeline> {
        let resolve = |f: &str| crate::pipeline::resolve_function(f, functions);
        let base_dir = self.base_dir;
        let task = |t: &str| resolve_task(t, base_dir);
        match crate::pipeline::validate(name, file, &resolve, &task) {
            Ok(p) => Some(p),
            Err(problems) => {
                for (key_path, message) in problems {
                    let mut at = path.to_vec();
                    at.extend(key_path_segs(&key_path));
                    self.report(&at, message);
                }
                None
            }
        }
    }

    /// For a job whose `task` is a pipeline (`pipeline:NAME`, a built-in
    /// pipeline, or a `.toml` file): `Some(result)`, registering built-in and
    /// file pipelines in `pipelines`. `None` when `task` names a module.
    fn pipeline_task(
        &mut self,
        job: &str,
        task: &str,
        functions: &BTreeMap<String, ModuleRef>,
        declared: &BTreeMap<String, crate::pipeline::PipelineFile>,
        pipelines: &mut BTreeMap<String, std::sync::Arc<crate::pipeline::Pipeline>>,
    ) -> Option<Option<ModuleRef>> {
        let at = [key("jobs"), key(job), key("task")];
        let pipeline_ref = |key: &str| ModuleRef {
            source: ModuleSource::Pipeline(key.to_owned()),
            sha256: None,
        };
        if let Some(name) = task.strip_prefix("pipeline:") {
            if pipelines.contains_key(name) {
                return Some(Some(pipeline_ref(name)));
            }
            if declared.contains_key(name) {
                // Declared but invalid: its own problems are reported.
                return Some(None);
            }
            let hint = did_you_mean(name, declared.keys().map(String::as_str));
            self.report(&at, format!("no pipeline `{name}` in [pipelines]{hint}"));
            return Some(None);
        }
        if let Some(name) = task.strip_prefix("builtin:") {
            let file = crate::pipeline::builtin(name)?;
            let key = format!("builtin:{name}");
            if !pipelines.contains_key(&key) {
                let p = self.pipeline(&at, name, &file, functions)?;
                pipelines.insert(key.clone(), std::sync::Arc::new(p));
            }
            return Some(Some(pipeline_ref(&key)));
        }
        if !task.ends_with(".toml") {
            return None;
        }
        let resolved = self.resolve(Path::new(task));
        let key = resolved.display().to_string();
        if pipelines.contains_key(&key) {
            return Some(Some(pipeline_ref(&key)));
        }
        let file: crate::pipeline::PipelineFile = match std::fs::read_to_string(&resolved) {
            Ok(text) => match toml::from_str(&text) {
                Ok(file) => file,
                Err(e) => {
                    self.report(
                        &at,
                        format!("pipeline file {} is not valid: {e}", resolved.display()),
                    );
                    return Some(None);
                }
            },
            Err(e) => {
                self.report(
                    &at,
                    format!("cannot read pipeline file {}: {e}", resolved.display()),
                );
                return Some(None);
            }
        };
        let name = resolved
            .file_stem()
            .map_or_else(|| "pipeline".into(), |s| s.to_string_lossy().into_owned());
        let mut problems = Vec::new();
        let resolve = |f: &str| crate::pipeline::resolve_function(f, functions);
        let base_dir = self.base_dir;
        let task = |t: &str| resolve_task(t, base_dir);
        match crate::pipeline::validate(&name, &file, &resolve, &task) {
            Ok(p) => {
                pipelines.insert(key.clone(), std::sync::Arc::new(p));
                Some(Some(pipeline_ref(&key)))
            }
            Err(found) => {
                problems.extend(found);
                for (key_path, message) in problems {
                    let location = if key_path.is_empty() {
                        String::new()
                    } else {
                        format!(", key `{key_path}`")
                    };
                    self.report(
                        &at,
                        format!("pipeline file {}{location}: {message}", resolved.display()),
                    );
                }
                Some(None)
            }
        }
    }

    fn secret_source(&mut self, name: &str, source: SecretSource) -> Option<SecretSource> {
        let path = [key("secrets"), key(name)];
        if let Err(message) = check_secret_name(name) {
            self.report(&path, message);
        }
        match (&source.env, &source.file) {
            (Some(_), Some(_)) => {
                self.report(
                    &path,
                    "set either `env` or `file`, not both (e.g. `env = \"PGPASSWORD\"`)",
                );
                None
            }
            (None, None) => {
                self.report(
                    &path,
                    "say where the value comes from: `env = \"VARIABLE\"` or `file = \"path\"`",
                );
                None
            }
            (Some(env), None) => {
                if env.is_empty() || env.contains('=') || env.contains('\0') {
                    self.report(
                        &[key("secrets"), key(name), key("env")],
                        format!("`{env}` is not an environment variable name (e.g. `PGPASSWORD`)"),
                    );
                }
                Some(source)
            }
            (None, Some(file)) => Some(SecretSource {
                env: None,
                file: Some(self.resolve(file)),
            }),
        }
    }

    /// Validate `builtin:NAME` or a `.wasm` path (`field` of the table at
    /// `owner`), and its optional sha256 pin.
    fn module_ref(
        &mut self,
        owner: &[Seg],
        field: &str,
        module: &str,
        sha256: Option<&str>,
        kind: ModuleKind,
    ) -> Option<ModuleRef> {
        let at = |k: &str| {
            let mut path = owner.to_vec();
            path.push(key(k));
            path
        };
        let wanted = kind_name(kind);
        let source = if let Some(name) = module.strip_prefix("builtin:") {
            let available = builtins::all()
                .iter()
                .filter(|b| b.kind == kind)
                .map(|b| b.name)
                .collect::<Vec<_>>();
            let available_list = if available.is_empty() {
                format!("there are no builtin {wanted}s")
            } else {
                format!("builtin {wanted}s: {}", available.join(", "))
            };
            match builtins::find_kind(name, kind).or_else(|| builtins::find(name)) {
                Some(builtin) if builtin.kind == kind => Some(builtin.source()),
                Some(builtin) => {
                    self.report(
                        &at(field),
                        format!(
                            "`{module}` is a {}, not a {wanted}; {available_list}",
                            kind_name(builtin.kind)
                        ),
                    );
                    None
                }
                None => {
                    let hint = did_you_mean(name, available.iter().copied());
                    self.report(
                        &at(field),
                        format!("no builtin {wanted} `{name}`{hint}; {available_list}"),
                    );
                    None
                }
            }
        } else if module.trim().is_empty() {
            self.report(
                &at(field),
                format!("is empty: write `builtin:NAME` or the path of a .wasm {wanted}"),
            );
            None
        } else {
            let resolved = self.resolve(Path::new(module));
            if resolved.is_file() {
                Some(ModuleSource::File(resolved))
            } else if resolved.exists() {
                self.report(
                    &at(field),
                    format!(
                        "{} is not a file; point at a .wasm component",
                        resolved.display()
                    ),
                );
                None
            } else {
                self.report(
                    &at(field),
                    format!(
                        "file not found: {} (relative paths are resolved against {}); \
                         write `builtin:NAME` for a builtin {wanted}",
                        resolved.display(),
                        self.base_dir.display()
                    ),
                );
                None
            }
        };
        let sha256 = match sha256.map(parse_sha256) {
            None => None,
            Some(Ok(digest)) => Some(digest),
            Some(Err(message)) => {
                self.report(&at("sha256"), message);
                None
            }
        };
        source.map(|source| ModuleRef { source, sha256 })
    }

    fn job(
        &mut self,
        name: &str,
        job: JobFile,
        custom_functions: &BTreeMap<String, FunctionFile>,
        pipeline: Option<Option<ModuleRef>>,
    ) -> Option<JobConfig> {
        let owner = [key("jobs"), key(name)];
        let at = |keys: &[&str]| {
            let mut path = owner.to_vec();
            path.extend(keys.iter().map(|k| key(*k)));
            path
        };
        if let Err(message) = check_name(name, "job") {
            self.report(&owner, message);
        }
        let task = match pipeline {
            Some(task) => {
                if job.sha256.is_some() {
                    self.report(
                        &at(&["sha256"]),
                        "a pipeline task has no module to pin: pin its functions in [functions] instead",
                    );
                }
                task
            }
            None => self.module_ref(
                &owner,
                "task",
                &job.task,
                job.sha256.as_deref(),
                ModuleKind::Task,
            ),
        };

        let mut params = serde_json::Map::new();
        for (param, value) in &job.params {
            match toml_to_json(value) {
                Ok(value) => {
                    params.insert(param.clone(), value);
                }
                Err(message) => self.report(&at(&["params", param]), message),
            }
        }

        let limits = self.limits(&job, &at);
        let (cron, retries, keep_runs) = self.job_timing(&job, &at);
        let grants = self.grants(&job.allow, &owner, custom_functions);
        let notify = self.webhooks(&job, &grants, &at);

        task.map(|task| JobConfig {
            name: name.to_owned(),
            task,
            params,
            schedule: job.schedule,
            cron,
            missed: job.missed,
            concurrency: job.concurrency,
            retries,
            keep_runs,
            retention: job.retention,
            limits,
            grants,
            notify,
        })
    }

    /// Validate the job's `notify` webhooks against its HTTP grants.
    fn webhooks(
        &mut self,
        job: &JobFile,
        grants: &Grants,
        at: &dyn Fn(&[&str]) -> Vec<Seg>,
    ) -> Vec<crate::daemon::notify::Webhook> {
        let mut webhooks = Vec::new();
        for (i, file) in job.notify.targets.iter().enumerate() {
            match crate::daemon::notify::Webhook::from_file(file, &grants.http) {
                Ok(webhook) => webhooks.push(webhook),
                Err(problems) => {
                    for (field, message) in problems {
                        let mut path = at(&["notify"]);
                        if job.notify.is_list {
                            path.push(Seg::Index(i));
                        }
                        path.extend(key_path_segs(&field));
                        self.report(&path, message);
                    }
                }
            }
        }
        webhooks
    }

    fn limits(&mut self, job: &JobFile, at: &dyn Fn(&[&str]) -> Vec<Seg>) -> Limits {
        let mut limits = Limits::default();
        if let Some(text) = &job.timeout {
            match parse_duration(text) {
                Ok(timeout) if timeout.is_zero() => {
                    self.report(&at(&["timeout"]), "must be longer than zero (e.g. `30m`)");
                }
                Ok(timeout) => limits.timeout = timeout,
                Err(message) => self.report(&at(&["timeout"]), message),
            }
        }
        if let Some(text) = &job.memory {
            match parse_size(text) {
                Ok(memory) if memory < MIN_MEMORY => self.report(
                    &at(&["memory"]),
                    format!(
                        "`{text}` is below the minimum of {} (e.g. `256MiB`)",
                        format_size(MIN_MEMORY)
                    ),
                ),
                Ok(memory) if memory > MAX_MEMORY => self.report(
                    &at(&["memory"]),
                    format!(
                        "`{text}` is above the maximum of {} (e.g. `4GiB`)",
                        format_size(MAX_MEMORY)
                    ),
                ),
                Ok(memory) => limits.memory = memory,
                Err(message) => self.report(&at(&["memory"]), message),
            }
        }
        for (field, text, slot) in [
            ("output-limit", &job.output_limit, &mut limits.output),
            (
                "http-body-limit",
                &job.http_body_limit,
                &mut limits.http_body,
            ),
        ] {
            if let Some(text) = text {
                match parse_size(text) {
                    Ok(bytes) => *slot = bytes,
                    Err(message) => self.report(&at(&[field]), message),
                }
            }
        }
        limits
    }

    fn grants(
        &mut self,
        allow: &AllowFile,
        owner: &[Seg],
        custom_functions: &BTreeMap<String, FunctionFile>,
    ) -> Grants {
        let at = |field: &str, index: Option<usize>| {
            let mut path = owner.to_vec();
            path.push(key("allow"));
            path.push(key(field));
            if let Some(index) = index {
                path.push(Seg::Index(index));
            }
            path
        };
        let mut grants = Grants::default();

        for (i, origin) in allow.http.iter().enumerate() {
            match OriginPattern::parse(origin) {
                Ok(pattern) => grants.http.push(pattern),
                Err(message) => self.report(&at("http", Some(i)), message),
            }
        }

        let search_path = std::env::var_os("PATH");
        for (i, command) in allow.commands.iter().enumerate() {
            match grant_program(command, search_path.as_ref()) {
                Ok(program) => {
                    grants.commands.insert(command.clone(), program);
                }
                Err(message) => self.report(&at("commands", Some(i)), message),
            }
        }

        for (path, access) in &allow.paths {
            let resolved = self.resolve(path);
            let resolved = std::fs::canonicalize(&resolved).unwrap_or(resolved);
            if let Some(previous) = grants.paths.insert(resolved.clone(), *access) {
                if previous != *access {
                    let mut location = at("paths", None);
                    location.push(key(path.to_string_lossy()));
                    self.report(
                        &location,
                        format!(
                            "{} is granted twice, with different access; grant it once",
                            resolved.display()
                        ),
                    );
                }
            }
        }

        for (field, names) in [
            ("secrets", &allow.secrets),
            ("readable-secrets", &allow.readable_secrets),
        ] {
            for (i, name) in names.iter().enumerate() {
                match check_secret_name(name) {
                    Ok(()) => {
                        grants.secrets.insert(name.clone());
                        if field == "readable-secrets" {
                            grants.readable_secrets.insert(name.clone());
                        }
                    }
                    Err(message) => self.report(&at(field, Some(i)), message),
                }
            }
        }

        for (i, function) in allow.functions.iter().enumerate() {
            let builtin = builtins::find_kind(function, ModuleKind::Function)
                .or_else(|| builtins::find(function));
            let known = match builtin {
                Some(b) => b.kind == ModuleKind::Function,
                None => custom_functions.contains_key(function),
            };
            if known {
                grants.functions.insert(function.clone());
                continue;
            }
            let available = builtins::all()
                .iter()
                .filter(|b| b.kind == ModuleKind::Function)
                .map(|b| b.name)
                .chain(custom_functions.keys().map(String::as_str))
                .collect::<Vec<_>>();
            let available_list = if available.is_empty() {
                "there are no functions (define one in `[functions.NAME]`)".to_owned()
            } else {
                format!("functions: {}", available.join(", "))
            };
            let message = if builtin.is_some() {
                format!("`{function}` is a builtin task, not a function; {available_list}")
            } else {
                let hint = did_you_mean(function, available.iter().copied());
                format!("no function `{function}`{hint}; {available_list}")
            };
            self.report(&at("functions", Some(i)), message);
        }

        grants
    }
}

/// Span of the value at `path` in `table`.
fn span_of(table: &DeTable<'_>, path: &[Seg]) -> Option<Range<usize>> {
    let (Seg::Key(first), rest) = path.split_first()? else {
        return None;
    };
    let mut value = table.get(first.as_str())?;
    for seg in rest {
        value = match (seg, value.get_ref()) {
            (Seg::Key(k), DeValue::Table(t)) => t.get(k.as_str())?,
            (Seg::Index(i), DeValue::Array(a)) => a.get(*i)?,
            _ => return None,
        };
    }
    Some(value.span())
}

/// The Task module a pipeline step names: `builtin:NAME` or a `.wasm` path
/// (resolved against `base_dir`).
fn resolve_task(task: &str, base_dir: &Path) -> Result<ModuleRef, String> {
    let source = if let Some(name) = task.strip_prefix("builtin:") {
        let Some(builtin) = builtins::find_kind(name, ModuleKind::Task) else {
            let tasks = builtins::all()
                .iter()
                .filter(|b| b.kind == ModuleKind::Task)
                .map(|b| b.name)
                .collect::<Vec<_>>();
            return Err(format!(
                "no builtin task `{name}`{}; builtin tasks: {}",
                did_you_mean(name, tasks.iter().copied()),
                tasks.join(", ")
            ));
        };
        builtin.source()
    } else {
        let path = normalize(&base_dir.join(task));
        if !path.is_file() {
            return Err(format!(
                "file not found: {} (write `builtin:NAME` for a builtin task)",
                path.display()
            ));
        }
        ModuleSource::File(path)
    };
    Ok(ModuleRef {
        source,
        sha256: None,
    })
}

/// `backup.steps[1].function` as key path segments.
fn key_path_segs(path: &str) -> Vec<Seg> {
    let mut segs = Vec::new();
    for part in path.split('.').filter(|p| !p.is_empty()) {
        let mut rest = part;
        if let Some(open) = rest.find('[') {
            segs.push(key(&rest[..open]));
            rest = &rest[open..];
            while let Some(close) = rest.find(']') {
                if let Ok(i) = rest[1..close].parse() {
                    segs.push(Seg::Index(i));
                }
                rest = &rest[close + 1..];
            }
        } else {
            segs.push(key(rest));
        }
    }
    segs
}

fn kind_name(kind: ModuleKind) -> &'static str {
    match kind {
        ModuleKind::Task => "task",
        ModuleKind::Function => "function",
    }
}

/// Job and function names: a letter or digit, then letters, digits, `-`, `_`, `.`.
fn check_name(name: &str, what: &str) -> Result<(), String> {
    let mut chars = name.chars();
    let first_ok = chars.next().is_some_and(|c| c.is_ascii_alphanumeric());
    if first_ok && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')) {
        Ok(())
    } else {
        Err(format!(
            "`{name}` is not a valid {what} name: start with a letter or digit, then use \
             letters, digits, `-`, `_` or `.` (e.g. `db-nightly`)"
        ))
    }
}

/// Secret names: `[A-Za-z_][A-Za-z0-9_]*`.
fn check_secret_name(name: &str) -> Result<(), String> {
    let mut chars = name.chars();
    let first_ok = chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_');
    if first_ok && chars.all(|c| c.is_ascii_alphanumeric() || c == '_') {
        Ok(())
    } else {
        Err(format!(
            "`{name}` is not a valid secret name: use letters, digits and `_`, not starting \
             with a digit (e.g. `PGPASSWORD`)"
        ))
    }
}

/// 64 hex digits (optionally prefixed `sha256:`) → digest.
fn parse_sha256(text: &str) -> Result<[u8; 32], String> {
    let hex = text.strip_prefix("sha256:").unwrap_or(text);
    let bad = || {
        format!("`{text}` is not a sha256: expected 64 hex digits, as printed by `sha256sum FILE`")
    };
    if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(bad());
    }
    let mut digest = [0u8; 32];
    for (i, byte) in digest.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).map_err(|_| bad())?;
    }
    Ok(digest)
}

/// A granted command: a bare name looked up in `search_path` (not installed is
/// not an error), or an absolute path that must be an executable file.
fn grant_program(command: &str, search_path: Option<&OsString>) -> Result<GrantedProgram, String> {
    if command.is_empty() {
        return Err("empty program name; grant a name like `pg_dump` or an absolute path".into());
    }
    if command.chars().any(char::is_whitespace) {
        return Err(format!(
            "`{command}`: grant a program name alone, without arguments (e.g. `pg_dump`)"
        ));
    }
    if !command.contains('/') {
        return Ok(GrantedProgram {
            name: command.to_owned(),
            path: search_path.and_then(|p| find_in_path(command, p)),
        });
    }
    let path = Path::new(command);
    if !path.is_absolute() {
        return Err(format!(
            "`{command}` is a relative path; grant a program name (looked up in PATH) or an \
             absolute path"
        ));
    }
    let path = normalize(path);
    if !path.exists() {
        return Err(format!("{} does not exist", path.display()));
    }
    if !is_executable(&path) {
        return Err(format!("{} is not an executable file", path.display()));
    }
    Ok(GrantedProgram {
        name: command.to_owned(),
        path: Some(path),
    })
}

/// First executable `name` in the absolute directories of `search_path`. The
/// path is kept as found (not canonicalized), so multi-call binaries that look
/// at their own name keep working.
fn find_in_path(name: &str, search_path: &OsString) -> Option<PathBuf> {
    std::env::split_paths(search_path)
        .filter(|dir| dir.is_absolute())
        .map(|dir| normalize(&dir.join(name)))
        .find(|candidate| is_executable(candidate))
}

fn is_executable(path: &Path) -> bool {
    let Ok(metadata) = std::fs::metadata(path) else {
        return false;
    };
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        metadata.is_file() && metadata.permissions().mode() & 0o111 != 0
    }
    #[cfg(not(unix))]
    {
        metadata.is_file()
    }
}

/// `$XDG_CACHE_HOME/cairn`, else `$HOME/.cache/cairn`, else `<base_dir>/.cairn/cache`.
fn default_cache_dir(
    xdg_cache_home: Option<OsString>,
    home: Option<OsString>,
    base_dir: &Path,
) -> PathBuf {
    let absolute = |dir: Option<OsString>| dir.map(PathBuf::from).filter(|d| d.is_absolute());
    if let Some(xdg) = absolute(xdg_cache_home) {
        xdg.join("cairn")
    } else if let Some(home) = absolute(home) {
        home.join(".cache").join("cairn")
    } else {
        base_dir.join(".cairn").join("cache")
    }
}

/// A TOML param as JSON; datetimes become their TOML text (RFC 3339).
pub(crate) fn toml_to_json(value: &toml::Value) -> Result<serde_json::Value, String> {
    use serde_json::Value as Json;
    Ok(match value {
        toml::Value::String(s) => Json::String(s.clone()),
        toml::Value::Integer(i) => Json::from(*i),
        toml::Value::Float(f) => match serde_json::Number::from_f64(*f) {
            Some(number) => Json::Number(number),
            None => {
                return Err(format!(
                    "`{f}` cannot be passed to a task (JSON has no NaN or infinity)"
                ));
            }
        },
        toml::Value::Boolean(b) => Json::Bool(*b),
        toml::Value::Datetime(datetime) => Json::String(datetime.to_string()),
        toml::Value::Array(items) => {
            Json::Array(items.iter().map(toml_to_json).collect::<Result<_, _>>()?)
        }
        toml::Value::Table(table) => Json::Object(
            table
                .iter()
                .map(|(k, v)| Ok((k.clone(), toml_to_json(v)?)))
                .collect::<Result<_, String>>()?,
        ),
    })
}

/// `path` made absolute against the current directory, then normalized.
fn absolutize(path: &Path) -> PathBuf {
    if path.is_absolute() {
        normalize(path)
    } else {
        let cwd = std::env::current_dir().unwrap_or_default();
        normalize(&cwd.join(path))
    }
}

/// Remove `.` and resolve `..` lexically (no filesystem access).
pub fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for component in path.components() {
        match component {
            Component::CurDir => {}
            Component::ParentDir => match out.components().next_back() {
                // `/..` is `/`.
                Some(Component::RootDir | Component::Prefix(_)) => {}
                Some(Component::Normal(_)) => {
                    out.pop();
                }
                _ => out.push(".."),
            },
            other => out.push(other),
        }
    }
    if out.as_os_str().is_empty() {
        out.push(".");
    }
    out
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    /// A fresh directory under the system temp dir, removed on drop.
    struct TempDir(PathBuf);

    impl TempDir {
        fn new() -> anyhow::Result<Self> {
            static COUNTER: AtomicUsize = AtomicUsize::new(0);
            let dir = std::env::temp_dir().join(format!(
                "cairn-config-test-{}-{}",
                std::process::id(),
                COUNTER.fetch_add(1, Ordering::Relaxed)
            ));
            std::fs::create_dir_all(&dir)?;
            Ok(Self(std::fs::canonicalize(dir)?))
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn problems(text: &str) -> Vec<Problem> {
        match parse(text, "test.toml", Path::new("/srv/cairn")) {
            Ok(_) => panic!("expected problems in:\n{text}"),
            Err(err) => err.problems,
        }
    }

    /// The one problem whose location and message contain all of `needles`.
    fn find<'a>(problems: &'a [Problem], needles: &[&str]) -> &'a Problem {
        problems
            .iter()
            .find(|p| {
                let text = p.to_string();
                needles.iter().all(|n| text.contains(n))
            })
            .unwrap_or_else(|| panic!("no problem with {needles:?} in {problems:#?}"))
    }

    #[test]
    fn every_problem_in_the_file_is_reported_together() {
        let text = r#"
[jobs.search-index]
task = "builtin:command"
allow.http = ["http://127.0.0.1:9200", "ftp://backup.example.com"]

[jobs.db]
task = "builtin:command"
tiemout = "2h"

[jobs.web]
task = "builtin:command"
timeout = "5 fortnights"

[jobs.mystery]
task = "builtin:no-such-task"

[jobs.vault]
task = "builtin:command"
allow.secrets = ["GOOD_NAME", "bad-name"]
"#;
        let err = parse(text, "cairn.toml", Path::new("/srv/cairn")).unwrap_err();
        let problems = &err.problems;
        assert_eq!(problems.len(), 5, "{problems:#?}");

        let origin = find(
            problems,
            &["job `search-index`, key `allow.http[1]`", "ftp"],
        );
        assert!(origin.location.contains("line 4"), "{origin}");
        let unknown = find(problems, &["job `db`", "unknown key `tiemout`"]);
        assert!(
            unknown.message.starts_with(
                "unknown key `tiemout`; did you mean `timeout`? (expected one of task, sha256"
            ),
            "{unknown}"
        );
        assert!(unknown.location.contains("line 8, column 1"), "{unknown}");
        find(
            problems,
            &["job `web`, key `timeout`", "unknown unit `fortnights`"],
        );
        let builtin = find(
            problems,
            &[
                "job `mystery`, key `task`",
                "no builtin task `no-such-task`",
            ],
        );
        assert!(builtin.message.contains("builtin tasks: ") && builtin.message.contains("command"));
        find(
            problems,
            &["job `vault`, key `allow.secrets[1]`", "`bad-name`"],
        );

        // File order, and the summary counts them.
        let lines = problems
            .iter()
            .map(|p| line_column_of(&p.location))
            .collect::<Vec<_>>();
        assert!(lines.windows(2).all(|w| w[0] <= w[1]), "{lines:?}");
        assert!(
            err.to_string().starts_with("cairn.toml has 5 problems:"),
            "{err}"
        );
    }

    fn line_column_of(location: &str) -> usize {
        let rest = location.split("line ").nth(1).expect("location has a line");
        rest.split(',').next().unwrap().parse().unwrap()
    }

    #[test]
    fn syntax_error_gives_line_and_column() {
        let problems = problems("[jobs.db]\ntask = \"builtin:command\"\ntimeout = = 3\n");
        assert_eq!(problems.len(), 1, "{problems:#?}");
        assert_eq!(problems[0].location, "line 3, column 11");
    }

    #[test]
    fn duplicate_keys_are_syntax_errors_naming_the_key() {
        let problems = problems("[jobs.db]\ntask = \"a\"\ntask = \"b\"\n");
        assert_eq!(problems[0].location, "line 3, column 1");
        assert!(
            problems[0].message.contains("duplicate key `task`"),
            "{problems:#?}"
        );
    }

    #[test]
    fn unknown_top_level_key_is_rejected() {
        let problems = problems("[jbos.db]\ntask = \"builtin:command\"\n");
        assert_eq!(problems.len(), 1, "{problems:#?}");
        assert_eq!(problems[0].location, "line 1, column 2");
        assert!(problems[0].message.contains("unknown key `jbos`"));
        assert!(problems[0].message.contains("did you mean `jobs`?"));
    }

    #[test]
    fn unknown_keys_and_wrong_types_in_one_job_are_all_reported() {
        let problems = problems(
            r#"
[jobs.db]
task = "builtin:command"
memory = 5
timeout = "0s"
allow.htpp = ["http://x"]
allow.paths = { "/srv" = "write" }

[runtime]
cache_dir = "/tmp"
"#,
        );
        assert_eq!(problems.len(), 5, "{problems:#?}");
        find(
            problems.as_slice(),
            &["job `db`, key `memory`", "invalid type: integer `5`"],
        );
        find(&problems, &["job `db`, key `timeout`", "longer than zero"]);
        find(
            &problems,
            &[
                "job `db` (line 6",
                "unknown key `htpp` in `allow`",
                "did you mean `http`?",
            ],
        );
        find(
            &problems,
            &[
                "job `db`, key `allow.paths.\"/srv\"`",
                "unknown variant `write`",
            ],
        );
        find(
            &problems,
            &[
                "line 10, column 1",
                "unknown key `cache_dir` in `runtime`",
                "`cache-dir`?",
            ],
        );
    }

    #[test]
    fn tables_written_as_other_types_are_reported() {
        let problems = problems(
            r#"
state = "cairn.db"

[[jobs.arr]]
task = "builtin:command"

[jobs.db]
task = "builtin:command"
allow = ["sh"]
"#,
        );
        assert_eq!(problems.len(), 3, "{problems:#?}");
        find(
            &problems,
            &["key `state` (line 2", "must be a table, not a string"],
        );
        find(
            &problems,
            &[
                "job `arr`",
                "write `[jobs.arr]` (one pair of brackets), not `[[jobs.arr]]`",
            ],
        );
        find(
            &problems,
            &["job `db`, key `allow`", "must be a table, not an array"],
        );
    }

    #[test]
    fn missing_task_is_reported_on_the_job() {
        let problems = problems("[jobs.db]\nschedule = \"@daily\"\n");
        assert_eq!(problems.len(), 1, "{problems:#?}");
        assert_eq!(problems[0].location, "job `db` (line 1, column 1)");
        assert_eq!(problems[0].message, "missing key `task`");
    }

    #[test]
    fn defaults_are_applied() -> anyhow::Result<()> {
        let config = parse(
            "[jobs.db]\ntask = \"builtin:command\"\n",
            "test.toml",
            Path::new("/srv/cairn"),
        )?;
        assert_eq!(config.source, None);
        assert_eq!(config.base_dir, Path::new("/srv/cairn"));
        assert_eq!(config.state_path, Path::new("/srv/cairn/.cairn/state.db"));
        let expected_cache = default_cache_dir(
            std::env::var_os("XDG_CACHE_HOME"),
            std::env::var_os("HOME"),
            Path::new("/srv/cairn"),
        );
        assert_eq!(config.cache_dir, expected_cache);
        assert!(config.repository.is_none());
        let job = config.job("db")?;
        assert_eq!(job.task.source, ModuleSource::Builtin("command".into()));
        assert_eq!(job.task.sha256, None);
        assert_eq!(job.limits, Limits::default());
        assert_eq!(job.grants, Grants::default());
        assert!(job.params.is_empty());
        assert_eq!(job.schedule, None);
        Ok(())
    }

    #[test]
    fn cache_dir_prefers_xdg_then_home_then_the_config_directory() {
        let base = Path::new("/srv/cairn");
        let xdg = Some(OsString::from("/xdg"));
        let home = Some(OsString::from("/home/op"));
        assert_eq!(
            default_cache_dir(xdg, home.clone(), base),
            Path::new("/xdg/cairn")
        );
        assert_eq!(
            default_cache_dir(Some(OsString::from("relative")), home, base),
            Path::new("/home/op/.cache/cairn")
        );
        assert_eq!(
            default_cache_dir(None, None, base),
            Path::new("/srv/cairn/.cairn/cache")
        );
    }

    #[test]
    fn relative_paths_resolve_against_the_config_directory() -> anyhow::Result<()> {
        let dir = TempDir::new()?;
        let base = dir.0.join("etc");
        std::fs::create_dir_all(base.join("tasks"))?;
        std::fs::write(base.join("tasks/es.wasm"), b"\0asm")?;
        std::fs::create_dir_all(dir.0.join("data"))?;
        let text = r#"
[repository]
path = "../repo"
password-file = "repo.pass"

[state]
path = "state/cairn.db"

[runtime]
cache-dir = "./cache"

[secrets.ES_TOKEN]
file = "secrets/es"

[functions.snapshot]
module = "tasks/../tasks/es.wasm"
sha256 = "00112233445566778899aabbccddeeff00112233445566778899AABBCCDDEEFF"

[jobs.es]
task = "./tasks/es.wasm"
allow.paths = { "../data" = "read-write", "missing/dir" = "read" }
allow.functions = ["snapshot", "http-request"]
"#;
        let config = parse(text, "cairn.toml", &base)?;
        let repository = config.repository.as_ref().expect("repository");
        assert_eq!(repository.path, dir.0.join("repo"));
        assert_eq!(
            repository.password_file.as_deref(),
            Some(base.join("repo.pass").as_path())
        );
        assert_eq!(config.state_path, base.join("state/cairn.db"));
        assert_eq!(config.cache_dir, base.join("cache"));
        assert_eq!(
            config.secrets["ES_TOKEN"].file.as_deref(),
            Some(base.join("secrets/es").as_path())
        );

        let es_wasm = ModuleSource::File(base.join("tasks/es.wasm"));
        let snapshot = &config.functions["snapshot"];
        assert_eq!(snapshot.source, es_wasm);
        let pin = snapshot.sha256.expect("pinned");
        assert_eq!((pin[0], pin[1], pin[31]), (0x00, 0x11, 0xff));

        let job = config.job("es")?;
        assert_eq!(job.task.source, es_wasm);
        let paths = job.grants.paths.iter().collect::<Vec<_>>();
        assert_eq!(
            paths,
            [
                (&base.join("missing/dir"), &Access::Read),
                (&dir.0.join("data"), &Access::ReadWrite),
            ]
            .into_iter()
            .collect::<BTreeMap<_, _>>()
            .into_iter()
            .collect::<Vec<_>>()
        );
        assert_eq!(
            job.grants.functions,
            BTreeSet::from(["http-request".to_owned(), "snapshot".to_owned()])
        );
        Ok(())
    }

    #[test]
    fn missing_module_file_names_the_resolved_path() {
        let problems = problems("[jobs.db]\ntask = \"tasks/db.wasm\"\n");
        let problem = find(
            &problems,
            &[
                "job `db`, key `task`",
                "file not found: /srv/cairn/tasks/db.wasm",
            ],
        );
        assert!(problem.message.contains("builtin:NAME"), "{problem}");
    }

    #[test]
    fn a_task_and_a_function_may_share_a_builtin_name() -> anyhow::Result<()> {
        let config = parse(
            "[functions.run]\nmodule = \"builtin:command\"\n\n\
             [jobs.db]\ntask = \"builtin:command\"\nallow.functions = [\"command\", \"run\"]\n",
            "test.toml",
            Path::new("/srv/cairn"),
        )?;
        let job = config.job("db")?;
        let task = builtins::find_kind("command", ModuleKind::Task).unwrap();
        let function = builtins::find_kind("command", ModuleKind::Function).unwrap();
        assert_ne!(task.id, function.id);
        assert_eq!(job.task.source, task.source());
        assert_eq!(config.functions["run"].source, function.source());
        assert!(job.grants.functions.contains("command"));
        Ok(())
    }

    #[test]
    fn builtins_of_the_wrong_kind_are_rejected() {
        let problems = problems(
            r#"
[functions.mine]
module = "builtin:directory"

[jobs.db]
task = "builtin:http-request"
allow.functions = ["directory", "mine", "nope"]
"#,
        );
        assert_eq!(problems.len(), 4, "{problems:#?}");
        find(
            &problems,
            &["function `mine`, key `module`", "is a task, not a function"],
        );
        find(
            &problems,
            &["job `db`, key `task`", "is a function, not a task"],
        );
        find(
            &problems,
            &[
                "job `db`, key `allow.functions[0]`",
                "builtin task, not a function",
            ],
        );
        find(
            &problems,
            &[
                "job `db`, key `allow.functions[2]`",
                "no function `nope`",
                "mine",
            ],
        );
    }

    #[test]
    fn command_found_in_path_is_absolute_and_a_missing_one_is_only_a_warning() -> anyhow::Result<()>
    {
        let config = parse(
            r#"
[jobs.db]
task = "builtin:command"
allow.commands = ["sh", "cairn-no-such-program"]
"#,
            "test.toml",
            Path::new("/srv/cairn"),
        )?;
        let commands = &config.job("db")?.grants.commands;
        let sh = commands["sh"].path.as_ref().expect("sh is installed");
        assert!(sh.is_absolute() && sh.ends_with("sh"), "{}", sh.display());
        assert_eq!(commands["cairn-no-such-program"].path, None);

        let warnings = warnings(&config);
        assert_eq!(warnings.len(), 1, "{warnings:#?}");
        assert_eq!(warnings[0].location, "job `db`, key `allow.commands`");
        assert!(
            warnings[0]
                .message
                .contains("`cairn-no-such-program` is granted but not installed")
        );
        Ok(())
    }

    #[test]
    fn programs_are_looked_up_only_in_absolute_path_directories() -> anyhow::Result<()> {
        let dir = TempDir::new()?;
        let tool = dir.0.join("tool");
        std::fs::write(&tool, "#!/bin/sh\n")?;
        let search_path = std::env::join_paths([dir.0.as_path(), Path::new("relative")])?;
        assert_eq!(
            grant_program("tool", Some(&search_path))
                .map_err(anyhow::Error::msg)?
                .path,
            None,
            "not executable"
        );
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&tool, std::fs::Permissions::from_mode(0o755))?;
            assert_eq!(
                grant_program("tool", Some(&search_path))
                    .map_err(anyhow::Error::msg)?
                    .path,
                Some(tool.clone())
            );
            assert_eq!(
                grant_program(&tool.to_string_lossy(), None)
                    .map_err(anyhow::Error::msg)?
                    .path,
                Some(tool.clone())
            );
        }
        Ok(())
    }

    #[test]
    fn bad_command_grants_are_errors() {
        let problems = problems(
            r#"
[jobs.db]
task = "builtin:command"
allow.commands = ["bin/pg_dump", "/nonexistent/pg_dump", "pg_dump --verbose", "/"]
"#,
        );
        assert_eq!(problems.len(), 4, "{problems:#?}");
        find(&problems, &["allow.commands[0]", "relative path"]);
        find(
            &problems,
            &["allow.commands[1]", "/nonexistent/pg_dump does not exist"],
        );
        find(&problems, &["allow.commands[2]", "without arguments"]);
        find(&problems, &["allow.commands[3]", "not an executable file"]);
    }

    #[test]
    fn readable_secrets_are_also_injectable() -> anyhow::Result<()> {
        let config = parse(
            r#"
[secrets.PGPASSWORD]
env = "DB_PASSWORD"

[jobs.db]
task = "builtin:command"
allow.secrets = ["ES_TOKEN"]
allow.readable-secrets = ["PGPASSWORD"]
"#,
            "test.toml",
            Path::new("/srv/cairn"),
        )?;
        let grants = &config.job("db")?.grants;
        assert_eq!(
            grants.secrets,
            BTreeSet::from(["ES_TOKEN".to_owned(), "PGPASSWORD".to_owned()])
        );
        assert_eq!(
            grants.readable_secrets,
            BTreeSet::from(["PGPASSWORD".to_owned()])
        );
        assert_eq!(
            config.secrets["PGPASSWORD"].env.as_deref(),
            Some("DB_PASSWORD")
        );
        Ok(())
    }

    #[test]
    fn secret_sources_need_exactly_one_of_env_or_file() {
        let problems = problems(
            r#"
[secrets.BOTH]
env = "X"
file = "x"

[secrets.NEITHER]

[secrets.bad-name]
env = "X"
"#,
        );
        assert_eq!(problems.len(), 3, "{problems:#?}");
        find(&problems, &["secret `BOTH`", "not both"]);
        find(
            &problems,
            &[
                "secret `NEITHER`",
                "`env = \"VARIABLE\"` or `file = \"path\"`",
            ],
        );
        find(&problems, &["secret `bad-name`", "not a valid secret name"]);
    }

    #[test]
    fn limits_parse_and_are_bounded() -> anyhow::Result<()> {
        let config = parse(
            r#"
[jobs.db]
task = "builtin:command"
timeout = "1h30m"
memory = "256MiB"
output-limit = "4MiB"
http-body-limit = "10MB"
"#,
            "test.toml",
            Path::new("/srv/cairn"),
        )?;
        let limits = &config.job("db")?.limits;
        assert_eq!(limits.timeout, Duration::from_secs(5400));
        assert_eq!(limits.memory, 256 << 20);
        assert_eq!(limits.output, 4 << 20);
        assert_eq!(limits.http_body, 10_000_000);

        let problems = problems(
            r#"
[jobs.small]
task = "builtin:command"
memory = "512KiB"

[jobs.big]
task = "builtin:command"
memory = "65GiB"
output-limit = "lots"
"#,
        );
        assert_eq!(problems.len(), 3, "{problems:#?}");
        find(
            &problems,
            &["job `small`, key `memory`", "below the minimum of 1 MiB"],
        );
        find(
            &problems,
            &["job `big`, key `memory`", "above the maximum of 64 GiB"],
        );
        find(&problems, &["job `big`, key `output-limit`", "`lots`"]);
        Ok(())
    }

    #[test]
    fn sha256_pins_must_be_64_hex_digits() {
        let problems = problems("[jobs.db]\ntask = \"builtin:command\"\nsha256 = \"abc\"\n");
        find(
            &problems,
            &["job `db`, key `sha256` (line 3", "expected 64 hex digits"],
        );
    }

    #[test]
    fn params_become_json_with_datetimes_as_strings() -> anyhow::Result<()> {
        let config = parse(
            r#"
[jobs.db]
task = "builtin:command"
schedule = "0 3 * * *"

[jobs.db.params]
database = "shop"
port = 5432
ratio = 0.5
verbose = true
since = 2024-05-01T03:00:00Z
tables = ["a", "b"]
nested = { depth = 2 }
"#,
            "test.toml",
            Path::new("/srv/cairn"),
        )?;
        let job = config.job("db")?;
        assert_eq!(job.schedule.as_deref(), Some("0 3 * * *"));
        let expected = serde_json::json!({
            "database": "shop",
            "port": 5432,
            "ratio": 0.5,
            "verbose": true,
            "since": "2024-05-01T03:00:00Z",
            "tables": ["a", "b"],
            "nested": { "depth": 2 },
        });
        assert_eq!(serde_json::Value::Object(job.params.clone()), expected);
        Ok(())
    }

    #[test]
    fn job_names_must_start_with_a_letter_or_digit() {
        let problems = problems("[jobs.\"-db\"]\ntask = \"builtin:command\"\n");
        find(&problems, &["job `-db`", "not a valid job name"]);
    }

    #[test]
    fn unknown_job_lookup_lists_the_jobs() -> anyhow::Result<()> {
        let config = parse(
            "[jobs.db]\ntask = \"builtin:command\"\n[jobs.web]\ntask = \"builtin:command\"\n",
            "test.toml",
            Path::new("/srv/cairn"),
        )?;
        let message = config.job("dv").unwrap_err().to_string();
        assert_eq!(
            message,
            "no job `dv` in the configuration (did you mean `db`?); jobs: db, web"
        );
        Ok(())
    }

    #[test]
    fn load_reports_a_missing_file_and_suggests_dash_c() {
        let err = load(Path::new("/nonexistent/cairn.toml")).unwrap_err();
        assert_eq!(err.problems.len(), 1);
        assert_eq!(err.problems[0].location, "/nonexistent/cairn.toml");
        assert!(err.problems[0].message.contains("file not found"));
        assert!(err.problems[0].message.contains("`-c PATH`"));
    }

    #[test]
    fn load_resolves_against_the_files_directory() -> anyhow::Result<()> {
        let dir = TempDir::new()?;
        let file = dir.0.join("cairn.toml");
        std::fs::write(&file, "[repository]\npath = \"repo\"\n")?;
        let config = load(&file)?;
        assert_eq!(config.source.as_deref(), Some(file.as_path()));
        assert_eq!(config.base_dir, dir.0);
        assert_eq!(
            config.repository.as_ref().map(|r| r.path.clone()),
            Some(dir.0.join("repo"))
        );
        assert!(
            config
                .job("db")
                .unwrap_err()
                .to_string()
                .contains("defines no jobs")
        );
        Ok(())
    }

    #[test]
    fn normalize_is_lexical() {
        assert_eq!(normalize(Path::new("/a/./b/../c")), Path::new("/a/c"));
        assert_eq!(normalize(Path::new("/../x")), Path::new("/x"));
        assert_eq!(normalize(Path::new("../../x")), Path::new("../../x"));
    }

    #[test]
    fn line_and_column_count_characters() {
        assert_eq!(line_column("ab\nçd", 5), (2, 2));
        assert_eq!(line_column("", 0), (1, 1));
    }
}
