//! The TOML configuration, validated as a whole into [`Config`].
//!
//! - [`file`]: the file format (serde structs, unknown keys refused).
//! - [`diagnostics`] and `lenient`: every problem in the file at once, each
//!   with its job, key, line and column.
//! - [`check`]: checks of single values (names, pins, programs, webhooks).
//! - `resolve`: the file into the [model](crate::model) types.
//!
//! [`load`] reads a file and [`parse`] validates text; both return a
//! [`ConfigError`] listing every [`Problem`] (`job `db`, key `timeout` (line 7,
//! column 11): …`). [`warnings`] lists what loads but will not work (granted
//! programs that are not installed). Nothing here runs Wasm: checking a
//! task's declared needs against the job's grants is `cairn validate`'s
//! (`runner::check`).

pub mod check;
pub mod diagnostics;
pub mod file;
mod lenient;
mod resolve;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use toml::de::DeTable;

pub use diagnostics::{ConfigError, Problem};

use crate::model::{
    Concurrency, Grants, Limits, Missed, ModuleRef, OriginPattern, PipelineRef, RepositorySettings,
    Retention, Retries, Schedule, SecretSource, Webhook,
};
use crate::pipeline::Pipeline;
use crate::sys::absolutize;
use diagnostics::{Problems, did_you_mean};
use resolve::Checker;

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
    pub cron: Option<Schedule>,
    /// What the daemon does about fires missed while it was down.
    pub missed: Missed,
    /// What a fire does while the job runs.
    pub concurrency: Concurrency,
    /// Retries of a failed scheduled run.
    pub retries: Retries,
    /// Finished runs kept in the run history.
    pub keep_runs: usize,
    /// Snapshot retention.
    pub retention: Retention,
    /// Limits.
    pub limits: Limits,
    /// Grants.
    pub grants: Grants,
    /// Webhooks called when a run ends.
    pub notify: Vec<Webhook>,
    /// Labels a daemon node needs to run the job (`node-labels`).
    pub node_labels: Vec<String>,
    /// Repositories (names in [`Config::repositories`]) each new snapshot of
    /// the job is copied to after its backup.
    pub copy_to: Vec<String>,
}

/// A validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// File it was read from (absolute), if any.
    pub source: Option<PathBuf>,
    /// Directory relative paths are resolved against.
    pub base_dir: PathBuf,
    /// `[repository]`, with its paths made absolute.
    pub repository: Option<RepositorySettings>,
    /// Other repositories (`[repositories.NAME]`): destinations of `cairn copy`.
    pub repositories: BTreeMap<String, RepositorySettings>,
    /// SQLite database path (absolute).
    pub state_path: PathBuf,
    /// `[state] url`: a PostgreSQL database used instead of the SQLite file.
    pub state_postgres: Option<crate::model::PostgresState>,
    /// Compile cache directory (absolute).
    pub cache_dir: PathBuf,
    /// Secret sources by name.
    pub secrets: BTreeMap<String, SecretSource>,
    /// Custom functions by name.
    pub functions: BTreeMap<String, ModuleRef>,
    /// Pipelines declared or used by a job.
    pub pipelines: BTreeMap<PipelineRef, Arc<Pipeline>>,
    /// Jobs by name.
    pub jobs: BTreeMap<String, JobConfig>,
    /// `cairn daemon` settings.
    pub daemon: DaemonConfig,
}

impl Config {
    /// Where run history and job state are kept: `[state] url` if set, else
    /// the SQLite file.
    #[must_use]
    pub fn state_location(&self) -> crate::model::StateLocation {
        match &self.state_postgres {
            Some(pg) => crate::model::StateLocation::Postgres(pg.clone()),
            None => crate::model::StateLocation::Sqlite(self.state_path.clone()),
        }
    }
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
    pub prune: Option<Schedule>,
    /// Origins webhooks may be sent to.
    pub webhook_origins: Vec<OriginPattern>,
}

impl Default for DaemonConfig {
    fn default() -> Self {
        Self {
            listen: DEFAULT_LISTEN.parse().expect("valid default address"),
            token: None,
            shutdown_grace: Duration::from_secs(30),
            prune: None,
            webhook_origins: Vec::new(),
        }
    }
}

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
    parse_file(&text, &label, &base_dir, Some(absolute))
}

/// Parse and validate configuration `text`. `file_label` names it in errors;
/// relative paths are resolved against `base_dir` (made absolute first).
///
/// # Errors
/// A [`ConfigError`] listing every problem, in file order: TOML syntax errors
/// (`line L, column C`) alone if there are any, otherwise unknown keys,
/// wrongly typed values and invalid settings, each naming the job and key.
pub fn parse(text: &str, file_label: &str, base_dir: &Path) -> Result<Config, ConfigError> {
    parse_file(text, file_label, base_dir, None)
}

/// [`parse`] of the text of file `source` (which no grant may reach).
fn parse_file(
    text: &str,
    file_label: &str,
    base_dir: &Path,
    source: Option<PathBuf>,
) -> Result<Config, ConfigError> {
    let base_dir = absolutize(base_dir);
    let error = |problems| ConfigError {
        file: file_label.to_owned(),
        problems,
    };

    let (document, syntax_errors) = DeTable::parse_recoverable(text);
    if !syntax_errors.is_empty() {
        return Err(error(diagnostics::syntax_problems(text, &syntax_errors)));
    }

    let mut problems = Problems::new(text);
    let mut document = document.into_inner();
    let file = lenient::deserialize_leniently(&mut document, &mut problems);
    let mut checker = Checker {
        document: &document,
        base_dir: &base_dir,
        problems,
    };
    let mut config = checker.config(file);
    config.source = source;
    checker.private_paths(&config);
    let problems = checker.problems.into_sorted();
    if problems.is_empty() {
        Ok(config)
    } else {
        Err(error(problems))
    }
}

/// Things worth telling the user that do not stop a job from loading:
/// granted programs that are not installed (their runs fail when they call
/// them), and origins whose certificates are not verified.
pub fn warnings(config: &Config) -> Vec<Problem> {
    let mut warnings = Vec::new();
    for job in config.jobs.values() {
        for settings in &job.grants.tls {
            if settings.trust == Some(crate::model::ServerTrust::Insecure) {
                warnings.push(Problem {
                    location: format!("job `{}`, key `tls.\"{}\"`", job.name, settings.origin),
                    message: "`insecure = true`: the server's certificate is not verified, so \
                              anyone on the network path can read and change the traffic \
                              (and the credentials sent); use `ca-file` or `ca-fingerprint`"
                        .to_owned(),
                });
            }
        }
        for program in job.grants.programs.values() {
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
            let file = self.label();
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

    /// The file it was read from, or `the configuration` when it was not.
    #[must_use]
    pub fn label(&self) -> String {
        self.source.as_ref().map_or_else(
            || "the configuration".to_owned(),
            |path| path.display().to_string(),
        )
    }
}

/// A job name that the configuration does not define.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UnknownJob(pub String);
