//! The configuration file as written: plain serde data, unknown keys refused.
//!
//! Nothing here is checked beyond its TOML type; [`super::resolve`] turns it
//! into the [model](crate::model) types, reporting every problem at its key.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;

use serde::Deserialize;

use crate::model::{Access, Concurrency, Missed, Retention};
use crate::pipeline::PipelineFile;

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
    pub secrets: BTreeMap<String, SecretFile>,
    /// Custom Function modules callable by tasks, by name.
    #[serde(default)]
    pub functions: BTreeMap<String, FunctionFile>,
    /// Tasks written as ordered Function steps, by name (`task = "pipeline:NAME"`).
    #[serde(default)]
    pub pipelines: BTreeMap<String, PipelineFile>,
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
pub struct SecretFile {
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
    pub missed: Missed,
    /// A fire while the job runs: `forbid` (skip it, the default), `allow`
    /// or `replace` (cancel the running one).
    #[serde(default)]
    pub concurrency: Concurrency,
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
    /// `daemon::notify`). Their origins must be in `allow.http`.
    #[serde(default)]
    pub notify: NotifyFiles,
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

/// One webhook as written in `[jobs.NAME]`'s `notify`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct NotifyFile {
    /// Where to POST: `https://hooks.example.com/…`. Its origin must be in
    /// the job's `allow.http`.
    pub url: String,
    /// Which endings to report: `failure`, `success`, `skipped` (default `["failure"]`).
    pub on: Option<Vec<String>>,
    /// JSON body with `{{placeholder}}`s (default: [`default_body`]).
    pub template: Option<String>,
}

/// `notify` as written: one table, or an array of them.
#[derive(Debug, Clone, Default)]
pub struct NotifyFiles {
    /// The webhooks, in file order.
    pub targets: Vec<NotifyFile>,
    /// Whether they were written as an array (problems then name `notify[i]`).
    pub is_list: bool,
}

impl<'de> Deserialize<'de> for NotifyFiles {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = NotifyFiles;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(
                    "a table `{ url = \"https://…\", on = [\"failure\"] }` or an array of them",
                )
            }

            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                map: A,
            ) -> Result<NotifyFiles, A::Error> {
                let one =
                    NotifyFile::deserialize(serde::de::value::MapAccessDeserializer::new(map))?;
                Ok(NotifyFiles {
                    targets: vec![one],
                    is_list: false,
                })
            }

            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                seq: A,
            ) -> Result<NotifyFiles, A::Error> {
                let targets = Vec::<NotifyFile>::deserialize(
                    serde::de::value::SeqAccessDeserializer::new(seq),
                )?;
                Ok(NotifyFiles {
                    targets,
                    is_list: true,
                })
            }
        }
        deserializer.deserialize_any(Visitor)
    }
}
