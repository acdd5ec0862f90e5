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
    /// Other repositories snapshots are copied to (`cairn copy --to NAME`,
    /// a job's `copy-to`), by name.
    #[serde(default)]
    pub repositories: BTreeMap<String, RepositoryFile>,
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
    /// Origins webhooks (`notify`) may be sent to, `scheme://host:port`.
    #[serde(default)]
    pub webhook_origins: Vec<String>,
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
    /// Local directory of the repository (or use `url`).
    pub path: Option<PathBuf>,
    /// Where the repository is, as restic writes it: a path,
    /// `s3:http://host:port/bucket/prefix` or `rest:http://host:port/`.
    pub url: Option<String>,
    /// Environment variable holding the repository password.
    pub password_env: Option<String>,
    /// File holding the repository password.
    pub password_file: Option<PathBuf>,
    /// Settings of an `s3:` repository.
    pub s3: Option<S3File>,
    /// Settings of a `rest:` repository.
    pub rest: Option<RestFile>,
}

/// `[repository.s3]`: region and where the credentials come from (by
/// default the variables restic reads, `AWS_ACCESS_KEY_ID` and
/// `AWS_SECRET_ACCESS_KEY`).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct S3File {
    /// Signing region (default `us-east-1`).
    pub region: Option<String>,
    /// Environment variable holding the access key id.
    pub access_key_id_env: Option<String>,
    /// File holding the access key id.
    pub access_key_id_file: Option<PathBuf>,
    /// Environment variable holding the secret access key.
    pub secret_access_key_env: Option<String>,
    /// File holding the secret access key.
    pub secret_access_key_file: Option<PathBuf>,
}

/// `[repository.rest]`: HTTP basic auth for a `rest:` repository.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RestFile {
    /// User name.
    pub username: Option<String>,
    /// Environment variable holding the password.
    pub password_env: Option<String>,
    /// File holding the password.
    pub password_file: Option<PathBuf>,
}

/// `[state]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct StateFile {
    /// SQLite database path (default `.cairn/state.db`, relative to the config file).
    pub path: Option<PathBuf>,
    /// PostgreSQL database shared by several daemons, `postgres://USER@HOST:PORT/DB`
    /// (never with a password: see `password-env` / `password-file`).
    pub url: Option<String>,
    /// Environment variable holding the PostgreSQL password.
    pub password_env: Option<String>,
    /// File holding the PostgreSQL password.
    pub password_file: Option<PathBuf>,
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
    /// Node labels a daemon needs to run this job (`cairn daemon --labels`):
    /// e.g. the node that has the directory a backup reads.
    #[serde(default)]
    pub node_labels: Vec<String>,
    /// Repositories (`[repositories.NAME]`) each new snapshot of the job is
    /// copied to after its backup.
    #[serde(default)]
    pub copy_to: Vec<String>,
    /// Wall-clock timeout of a run, e.g. `2h`, `30s` (default `1h`).
    pub timeout: Option<String>,
    /// Linear-memory limit, e.g. `256MiB` (default `512MiB`).
    pub memory: Option<String>,
    /// Cap on captured output per stream (guest stdout/stderr, a command's
    /// stdout/stderr), e.g. `1MiB` (default `1MiB`).
    pub output_limit: Option<String>,
    /// Cap on an HTTP response body, e.g. `64MiB` (default `64MiB`).
    pub http_body_limit: Option<String>,
    /// Cap on one log line (longer ones are cut), e.g. `16KiB` (the default).
    pub log_line_limit: Option<String>,
    /// Cap on the log bytes a run keeps (later lines are counted, not kept),
    /// e.g. `16MiB` (the default).
    pub log_limit: Option<String>,
    /// Cap on the number of state keys of the job (default 1000).
    pub state_keys: Option<u64>,
    /// Cap on the bytes of the job's state, keys and values (default `16MiB`).
    pub state_limit: Option<String>,
    /// Cap on a task's or function's result and on a snapshot's notes
    /// (default `1MiB`).
    pub result_limit: Option<String>,
    /// Streams (artifact readers and writers) a module may hold open at once
    /// (default 16).
    pub open_streams: Option<u32>,
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
    /// TLS settings by HTTPS origin (`tls."https://es:9200"`), each origin
    /// as `allow.http` grants it.
    #[serde(default)]
    pub tls: BTreeMap<String, TlsFile>,
}

/// `[jobs.NAME.tls."https://host:port"]`: how TLS is spoken to that origin.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct TlsFile {
    /// PEM file of the certificate authorities to trust (instead of the
    /// public roots).
    pub ca_file: Option<PathBuf>,
    /// SHA-256 fingerprint of the server's certificate or of a CA in its
    /// chain: `sha256:AB:CD:…` or 64 hex digits.
    pub ca_fingerprint: Option<String>,
    /// PEM file of a client certificate (leaf first), with `client-key`.
    pub client_cert: Option<PathBuf>,
    /// PEM file of the client certificate's private key.
    pub client_key: Option<PathBuf>,
    /// Do not verify the server at all (throwaway test clusters only).
    #[serde(default)]
    pub insecure: bool,
}

/// `[jobs.NAME.allow]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct AllowFile {
    /// HTTP origins, `scheme://host:port`; the host may start with `*.`.
    #[serde(default)]
    pub http: Vec<String>,
    /// Programs: a list of names (resolved through `PATH` at load) or
    /// absolute paths, or a table of them with what each may be given.
    #[serde(default)]
    pub commands: CommandsFile,
    /// Paths and their access: `{ "/srv/data" = "read" }`.
    #[serde(default)]
    pub paths: BTreeMap<PathBuf, Access>,
    /// Secrets, each bound to where the host may put it.
    #[serde(default)]
    pub secrets: SecretsFile,
    /// Secrets whose value the module may read itself.
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

/// `allow.commands`: `["pg_dump", "/usr/local/bin/x"]`, or a table
/// `{ pg_dump = { env = ["PGHOST"] }, tar = { deny-args = ["--to-command*"] } }`.
#[derive(Debug, Clone, Default)]
pub struct CommandsFile {
    /// Programs in file order, each with its rules.
    pub programs: Vec<(String, ProgramFile)>,
    /// Whether they were written as a list (problems then name `commands[i]`).
    pub is_list: bool,
}

/// What one granted program may be given.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct ProgramFile {
    /// Environment variables a module may set for it (a secret bound to it
    /// brings its own).
    #[serde(default)]
    pub env: Vec<String>,
    /// Arguments it is refused (`*` for any text).
    #[serde(default)]
    pub deny_args: Vec<String>,
    /// When set, the only arguments it may be given (`*` for any text).
    pub allow_args: Option<Vec<String>>,
}

impl<'de> Deserialize<'de> for CommandsFile {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = CommandsFile;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(
                    "a list of programs `[\"pg_dump\"]` or a table `{ pg_dump = { env = [\"PGHOST\"] } }`",
                )
            }

            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                seq: A,
            ) -> Result<CommandsFile, A::Error> {
                let names =
                    Vec::<String>::deserialize(serde::de::value::SeqAccessDeserializer::new(seq))?;
                Ok(CommandsFile {
                    programs: names
                        .into_iter()
                        .map(|n| (n, ProgramFile::default()))
                        .collect(),
                    is_list: true,
                })
            }

            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                map: A,
            ) -> Result<CommandsFile, A::Error> {
                let table = BTreeMap::<String, ProgramFile>::deserialize(
                    serde::de::value::MapAccessDeserializer::new(map),
                )?;
                Ok(CommandsFile {
                    programs: table.into_iter().collect(),
                    is_list: false,
                })
            }
        }
        deserializer.deserialize_any(Visitor)
    }
}

/// `allow.secrets`: each secret and where it may go.
#[derive(Debug, Clone, Default)]
pub struct SecretsFile(pub BTreeMap<String, SecretUseFile>);

/// Where one secret may go: a header of requests to some origins, an
/// environment variable of some programs, the module itself.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct SecretUseFile {
    /// Request header(s) it may be put in (`Authorization`) …
    pub header: Option<OneOrMany>,
    /// … of requests to these origins (each also in `allow.http`).
    #[serde(default)]
    pub origins: Vec<String>,
    /// Environment variable(s) it may be put in (`PGPASSWORD`) …
    pub env: Option<OneOrMany>,
    /// … of these programs (each also in `allow.commands`).
    #[serde(default)]
    pub programs: Vec<String>,
    /// Whether the module may read the value itself.
    #[serde(default)]
    pub readable: bool,
}

/// One string or a list of them.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum OneOrMany {
    /// `"Authorization"`.
    One(String),
    /// `["A", "B"]`.
    Many(Vec<String>),
}

impl OneOrMany {
    /// The strings.
    #[must_use]
    pub fn to_vec(&self) -> Vec<String> {
        match self {
            Self::One(s) => vec![s.clone()],
            Self::Many(v) => v.clone(),
        }
    }
}

impl<'de> Deserialize<'de> for SecretsFile {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = SecretsFile;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a table of secrets, each bound to where it may go")
            }

            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                _seq: A,
            ) -> Result<SecretsFile, A::Error> {
                Err(serde::de::Error::custom(
                    "a list of secret names no longer grants anything: bind each secret to where \
                     the host may put it, e.g. `[jobs.NAME.allow.secrets]` then \
                     `ES_PASSWORD = { header = \"Authorization\", origins = [\"http://127.0.0.1:9200\"] }` \
                     or `PG_PASSWORD = { env = \"PGPASSWORD\", programs = [\"pg_dump\"] }` \
                     (`readable = true` lets the module read it)",
                ))
            }

            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                map: A,
            ) -> Result<SecretsFile, A::Error> {
                BTreeMap::<String, SecretUseFile>::deserialize(
                    serde::de::value::MapAccessDeserializer::new(map),
                )
                .map(SecretsFile)
            }
        }
        deserializer.deserialize_any(Visitor)
    }
}
