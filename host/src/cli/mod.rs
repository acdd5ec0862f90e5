//! The command line: flags (clap), and one file per command group that turns
//! them into library calls (cargo's `src/bin/cargo/commands/`, rustic's
//! `src/commands/`). Nothing here decides what a run does.
//!
//! - `run.rs`: `backup`, `restore`.
//! - `repo.rs`: `init`, `snapshots`, `forget`, `check`.
//! - `runs.rs`: `runs`, `runs show`.
//! - `daemon.rs`: `daemon`.
//! - `validate.rs`: `validate`.
//! - `plugin.rs`: `plugin list`, `plugin inspect`, `plugin new`.
//! - `output.rs`: how reports and progress are shown.

mod daemon;
mod output;
mod plugin;
mod repo;
mod run;
mod runs;
mod validate;

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Parser, Subcommand};

use cairn::config::{self, ConfigError};
use cairn::state::{RunKind, StateError};

/// Cairn: backup and restore jobs whose procedures are WebAssembly plug-ins.
#[derive(Debug, Parser)]
#[command(name = "cairn", version, about)]
struct Cli {
    /// Configuration file.
    #[arg(
        short,
        long,
        global = true,
        default_value = "cairn.toml",
        env = "CAIRN_CONFIG"
    )]
    config: PathBuf,
    /// Print data as JSON; a run prints newline-delimited `status` and
    /// `summary` messages (exact values: bytes, milliseconds).
    #[arg(long, global = true)]
    json: bool,
    /// Show times in UTC instead of local time.
    #[arg(long, global = true)]
    utc: bool,
    /// More log output: -v the run's log lines, -vv debug, -vvv trace.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    verbose: u8,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Check the configuration and every job's grants against its task's needs.
    Validate,
    /// Run a job's backup now.
    Backup {
        /// Job name.
        job: String,
        /// Override a param for this run: KEY=VALUE (VALUE parsed as JSON if it can be).
        #[arg(long = "set", value_name = "KEY=VALUE")]
        set: Vec<String>,
    },
    /// Run a job's restore now.
    Restore {
        /// Job name.
        job: String,
        /// Snapshot to restore: an id, a unique prefix, or `latest` (the default).
        #[arg(long)]
        snapshot: Option<String>,
        /// Override a param for this run, e.g. the target database: KEY=VALUE.
        #[arg(long = "set", value_name = "KEY=VALUE")]
        set: Vec<String>,
        /// Restore what is intact: files whose data lies in a damaged or
        /// missing pack are left out (each logged as a warning) instead of
        /// failing the restore.
        #[arg(long)]
        skip_damaged: bool,
    },
    /// Create the repository configured in [repository].
    Init,
    /// List snapshots, of one job or all, with their size and tags.
    Snapshots {
        /// Only snapshots of this job.
        job: Option<String>,
    },
    /// List what a snapshot holds (as `restic ls`): every entry under PATH,
    /// or the whole snapshot.
    Ls {
        /// Snapshot id or unique prefix, or `latest` (with --job).
        snapshot: String,
        /// An artifact name, or a path inside a tree artifact.
        path: Option<String>,
        /// The job whose snapshot it is (needed for `latest`).
        #[arg(long)]
        job: Option<String>,
    },
    /// Apply each job's `retention` to its snapshots (never the newest of a
    /// job). The task's `forget` hook runs first for each snapshot removed
    /// (e.g. deleting its Elasticsearch snapshot); if it fails the snapshot
    /// is kept and the exit code is 1.
    Forget {
        /// Only this job.
        job: Option<String>,
        /// Then remove data no snapshot uses any more.
        #[arg(long)]
        prune: bool,
        /// Show what would be removed; change nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Copy snapshots to another repository (`[repositories.NAME]`), writing
    /// only the data it lacks: all snapshots, those of a job, or the ones
    /// named.
    Copy {
        /// The destination: a `[repositories.NAME]` of the configuration
        /// (created when missing).
        #[arg(long, value_name = "NAME")]
        to: String,
        /// Only this job's snapshots.
        #[arg(long)]
        job: Option<String>,
        /// Only these snapshots (ids or unique prefixes; `latest` with --job).
        #[arg(value_name = "SNAPSHOT")]
        snapshots: Vec<String>,
    },
    /// Check the repository's structure (and every byte with --read-data).
    /// Exits 1 naming what is damaged (a pack, an index file, a snapshot).
    Check {
        /// Also read and verify all data.
        #[arg(long, conflicts_with = "read_data_subset")]
        read_data: bool,
        /// Read and verify part of the data, as restic's option: `10%`,
        /// `n/m` (the n-th of m groups of packs) or a size (`500MiB`).
        #[arg(long, value_name = "SUBSET")]
        read_data_subset: Option<String>,
    },
    /// Run history.
    Runs {
        #[command(subcommand)]
        show: Option<RunsCommand>,
        /// Only runs of this job.
        #[arg(long)]
        job: Option<String>,
        /// At most this many runs.
        #[arg(long, default_value_t = 20)]
        limit: usize,
    },
    /// Run jobs on their schedules and serve the HTTP API until stopped
    /// (SIGTERM or SIGINT; SIGHUP reloads the configuration).
    Daemon {
        /// Address of the HTTP API, IP:PORT (default: `listen` in [daemon], else
        /// 127.0.0.1:8484). Port 0 picks a free port; the address is logged.
        #[arg(long)]
        listen: Option<std::net::SocketAddr>,
        /// This daemon's node name, recorded on the runs it runs (default: the
        /// host name). Several daemons share a PostgreSQL `[state] url`.
        #[arg(long)]
        node: Option<String>,
        /// This node's labels, comma-separated: a job with `node-labels` runs
        /// only on nodes that have them all.
        #[arg(long, value_delimiter = ',')]
        labels: Vec<String>,
    },
    /// Plug-in modules.
    Plugin {
        #[command(subcommand)]
        command: PluginCommand,
    },
}

#[derive(Debug, Subcommand)]
pub(crate) enum RunsCommand {
    /// One run with its log.
    Show {
        /// Run id.
        id: String,
    },
}

#[derive(Debug, Subcommand)]
pub(crate) enum PluginCommand {
    /// List the built-in modules.
    List,
    /// Describe a module: kind, digest, params, needs and imports.
    Inspect {
        /// `builtin:NAME` or a path to a `.wasm` component.
        module: String,
    },
    /// Create a new task project: a Rust crate (built with `cargo build
    /// --target wasm32-wasip2`), or a Python or JavaScript project (built
    /// with its `build.sh`).
    New {
        /// Task name (lowercase letters, digits and `-`).
        name: String,
        /// The language to write the task in.
        #[arg(long, value_enum, default_value_t = Lang::Rust)]
        lang: Lang,
        /// Directory to create (default: ./NAME).
        #[arg(long)]
        path: Option<PathBuf>,
        /// Use the guest SDK from this directory instead of the one this
        /// binary was built from (Rust: `guest-sdk/`; Python and JavaScript:
        /// `guest-sdk/python` or `guest-sdk/js`, used in place of a copy in
        /// the project's `cairn-sdk/`).
        #[arg(long)]
        sdk_path: Option<PathBuf>,
    },
}

/// The language of a new task (`cairn plugin new --lang`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Lang {
    /// Rust, with the `cairn-guest` crate.
    Rust,
    /// Python, with componentize-py.
    Python,
    /// JavaScript, with componentize-js.
    Js,
}

/// A usage problem (bad flag value, unknown job): exit code 2.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub(crate) struct UsageError(pub(crate) String);

/// Whether `err` is a usage or configuration error (exit code 2): a bad
/// flag, a bad config, or a job or run id that does not exist.
pub fn is_usage_error(err: &anyhow::Error) -> bool {
    err.chain().any(|e| {
        e.is::<UsageError>()
            || e.is::<ConfigError>()
            || e.is::<config::UnknownJob>()
            || matches!(
                e.downcast_ref::<StateError>(),
                Some(StateError::NoSuchRun(_))
            )
    })
}

/// The exit code for `err`: 12 for a wrong repository password (restic's
/// code), 2 for a usage or configuration error, else 1.
pub fn exit_code(err: &anyhow::Error) -> u8 {
    if err.chain().any(|e| {
        matches!(
            e.downcast_ref::<cairn::repository::RepoError>(),
            Some(cairn::repository::RepoError::WrongPassword { .. })
        )
    }) {
        12
    } else if is_usage_error(err) {
        2
    } else {
        1
    }
}

/// Parse flags and run the command.
///
/// # Errors
/// Whatever the command failed with.
pub fn try_main() -> anyhow::Result<ExitCode> {
    let cli = Cli::parse();
    output::set_utc(cli.utc);
    init_tracing(cli.verbose, matches!(cli.command, Command::Daemon { .. }));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    rt.block_on(run(cli))
}

/// Log output on stderr. A one-shot command is quiet (warnings and errors;
/// `-v` brings the run's log lines back); the daemon logs what it does.
fn init_tracing(verbose: u8, daemon: bool) {
    let default = match (verbose, daemon) {
        (0, false) => "warn",
        (0, true) | (1, false) => "warn,cairn=info",
        (1, true) | (2, false) => "info,cairn=debug",
        _ => "debug,cairn=trace",
    };
    // An empty CAIRN_LOG counts as unset.
    let filter = std::env::var("CAIRN_LOG")
        .ok()
        .filter(|v| !v.trim().is_empty())
        .and_then(|v| tracing_subscriber::EnvFilter::try_new(v).ok())
        .unwrap_or_else(|| tracing_subscriber::EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(|| output::LogWriter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_timer(output::LogTime)
        .with_target(false)
        .compact()
        .init();
}

async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let style = output::Style { json: cli.json };
    match cli.command {
        Command::Validate => validate::validate(&cli.config, cli.json).await,
        Command::Backup { job, set } => {
            run::run_job(&cli.config, &job, RunKind::Backup, &set, None, false, style).await
        }
        Command::Restore {
            job,
            set,
            snapshot,
            skip_damaged,
        } => {
            run::run_job(
                &cli.config,
                &job,
                RunKind::Restore,
                &set,
                snapshot.as_deref(),
                skip_damaged,
                style,
            )
            .await
        }
        Command::Init => repo::init(&cli.config, cli.json).await,
        Command::Snapshots { job } => repo::snapshots(&cli.config, job.as_deref(), cli.json).await,
        Command::Ls {
            snapshot,
            path,
            job,
        } => {
            repo::ls(
                &cli.config,
                job.as_deref(),
                &snapshot,
                path.as_deref(),
                cli.json,
            )
            .await
        }
        Command::Forget {
            job,
            prune,
            dry_run,
        } => repo::forget(&cli.config, job.as_deref(), prune, dry_run, cli.json).await,
        Command::Copy { to, job, snapshots } => {
            repo::copy(&cli.config, &to, job.as_deref(), &snapshots, cli.json).await
        }
        Command::Check {
            read_data,
            read_data_subset,
        } => {
            let subset = read_data_subset.or_else(|| read_data.then(|| "all".to_owned()));
            repo::check(&cli.config, subset, cli.json).await
        }
        Command::Runs {
            show: Some(RunsCommand::Show { id }),
            ..
        } => runs::show_run(&cli.config, &id, cli.json),
        Command::Runs {
            show: None,
            job,
            limit,
        } => runs::list_runs(&cli.config, job.as_deref(), limit, cli.json),
        Command::Daemon {
            listen,
            node,
            labels,
        } => daemon::daemon(&cli.config, listen, node, labels).await,
        Command::Plugin { command } => plugin::plugin(&cli.config, command, cli.json).await,
    }
}
