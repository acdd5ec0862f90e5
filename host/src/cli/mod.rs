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
    /// Print data as JSON.
    #[arg(long, global = true)]
    json: bool,
    /// More log output (-v debug, -vv trace).
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
    },
    /// Create the repository configured in [repository].
    Init,
    /// List snapshots, of one job or all.
    Snapshots {
        /// Only snapshots of this job.
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
    /// Check the repository's structure (and every byte with --read-data).
    Check {
        /// Also read and verify all data.
        #[arg(long)]
        read_data: bool,
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
    /// Create a new task crate to build with `cargo build --target wasm32-wasip2`.
    New {
        /// Crate name (lowercase letters, digits and `-`).
        name: String,
        /// Directory to create (default: ./NAME).
        #[arg(long)]
        path: Option<PathBuf>,
        /// Use the guest SDK from this directory instead of the one this binary was built from.
        #[arg(long)]
        sdk_path: Option<PathBuf>,
    },
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

/// Parse flags and run the command.
///
/// # Errors
/// Whatever the command failed with.
pub fn try_main() -> anyhow::Result<ExitCode> {
    let cli = Cli::parse();
    init_tracing(cli.verbose);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    rt.block_on(run(cli))
}

fn init_tracing(verbose: u8) {
    let default = match verbose {
        0 => "warn,cairn=info",
        1 => "info,cairn=debug",
        _ => "debug,cairn=trace",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("CAIRN_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(false)
        .compact()
        .init();
}

async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Validate => validate::validate(&cli.config, cli.json).await,
        Command::Backup { job, set } => {
            run::run_job(&cli.config, &job, RunKind::Backup, &set, None, cli.json).await
        }
        Command::Restore { job, set, snapshot } => {
            run::run_job(
                &cli.config,
                &job,
                RunKind::Restore,
                &set,
                snapshot.as_deref(),
                cli.json,
            )
            .await
        }
        Command::Init => repo::init(&cli.config, cli.json).await,
        Command::Snapshots { job } => repo::snapshots(&cli.config, job.as_deref(), cli.json).await,
        Command::Forget {
            job,
            prune,
            dry_run,
        } => repo::forget(&cli.config, job.as_deref(), prune, dry_run, cli.json).await,
        Command::Check { read_data } => repo::check(&cli.config, read_data, cli.json).await,
        Command::Runs {
            show: Some(RunsCommand::Show { id }),
            ..
        } => runs::show_run(&cli.config, &id, cli.json),
        Command::Runs {
            show: None,
            job,
            limit,
        } => runs::list_runs(&cli.config, job.as_deref(), limit, cli.json),
        Command::Daemon { listen } => daemon::daemon(&cli.config, listen).await,
        Command::Plugin { command } => plugin::plugin(&cli.config, command, cli.json).await,
    }
}
