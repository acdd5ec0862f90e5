//! Command-line flags (clap) and the thin layer that turns them into library calls.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use serde_json::{Map, Value, json};

use cairn::capabilities::progress::{Progress, ProgressSink};
use cairn::config::{self, ConfigError, ModuleRef, ModuleSource};
use cairn::repository::Repository;
use cairn::runner::{self, RunOptions, RunReport, Runner};
use cairn::runtime::{self, Runtime};
use cairn::state::sqlite::SqliteStore;
use cairn::state::{RunKind, StateError, StateStore};

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
enum RunsCommand {
    /// One run with its log.
    Show {
        /// Run id.
        id: String,
    },
}

#[derive(Debug, Subcommand)]
enum PluginCommand {
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
struct UsageError(String);

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
        Command::Validate => validate(&cli.config, cli.json).await,
        Command::Backup { job, set } => {
            run_job(&cli.config, &job, RunKind::Backup, &set, None, cli.json).await
        }
        Command::Restore { job, set, snapshot } => {
            run_job(
                &cli.config,
                &job,
                RunKind::Restore,
                &set,
                snapshot.as_deref(),
                cli.json,
            )
            .await
        }
        Command::Init => init(&cli.config, cli.json).await,
        Command::Snapshots { job } => snapshots(&cli.config, job.as_deref(), cli.json).await,
        Command::Forget {
            job,
            prune,
            dry_run,
        } => forget(&cli.config, job.as_deref(), prune, dry_run, cli.json).await,
        Command::Check { read_data } => check(&cli.config, read_data, cli.json).await,
        Command::Runs {
            show: Some(RunsCommand::Show { id }),
            ..
        } => show_run(&cli.config, &id, cli.json),
        Command::Runs {
            show: None,
            job,
            limit,
        } => list_runs(&cli.config, job.as_deref(), limit, cli.json),
        Command::Daemon { listen } => daemon(&cli.config, listen).await,
        Command::Plugin { command } => plugin(&cli.config, command, cli.json).await,
    }
}

async fn daemon(
    config_path: &Path,
    listen: Option<std::net::SocketAddr>,
) -> anyhow::Result<ExitCode> {
    use tokio::signal::unix::{SignalKind, signal};

    let config = config::load(config_path)?;
    let listen = listen.unwrap_or(config.daemon.listen);
    let token = cairn::daemon::api_token(&config).map_err(|e| UsageError(format!("{e:#}")))?;
    cairn::daemon::check_listen(listen, token.as_deref()).map_err(UsageError)?;
    for w in config::warnings(&config) {
        tracing::warn!("{w}");
    }
    let source = config.source.clone();
    let daemon = cairn::daemon::Daemon::open(config, source)?;
    let mut term = signal(SignalKind::terminate()).context("cannot handle SIGTERM")?;
    let mut hangup = signal(SignalKind::hangup()).context("cannot handle SIGHUP")?;
    daemon.start()?;
    let stop_api = tokio_util::sync::CancellationToken::new();
    let mut api = tokio::spawn(cairn::daemon::serve_api(
        daemon.clone(),
        listen,
        token,
        stop_api.clone(),
    ));
    let jobs = daemon.jobs();
    tracing::info!(
        "daemon started: {} jobs, {} scheduled, {} paused",
        jobs.len(),
        jobs.iter().filter(|j| j.next_fire.is_some()).count(),
        jobs.iter().filter(|j| j.paused).count()
    );
    let signal_name = loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => break "SIGINT",
            _ = term.recv() => break "SIGTERM",
            _ = hangup.recv() => {
                tracing::info!("SIGHUP: reloading {}", config_path.display());
                // On error the old configuration stays; reload logged why.
                let _ = daemon.reload();
            }
            out = &mut api => {
                // The API stopped by itself: a bind failure or a crash.
                daemon.shutdown(std::time::Duration::ZERO).await;
                return Err(match out {
                    Ok(Ok(())) => anyhow::anyhow!("the HTTP API stopped unexpectedly"),
                    Ok(Err(e)) => e,
                    Err(e) => e.into(),
                });
            }
        }
    };
    let grace = daemon.config().config().daemon.shutdown_grace;
    tracing::info!(
        "{signal_name}: stopping (no new fires; waiting up to {} for running runs)",
        cairn::units::format_duration(grace)
    );
    daemon.shutdown(grace).await;
    stop_api.cancel();
    let _ = api.await;
    tracing::info!("daemon stopped");
    Ok(ExitCode::SUCCESS)
}

async fn validate(config_path: &Path, json: bool) -> anyhow::Result<ExitCode> {
    let list = |ps: &[config::Problem]| -> Vec<Value> {
        ps.iter()
            .map(|p| json!({"location": p.location, "message": p.message}))
            .collect()
    };
    let config = match config::load(config_path) {
        Ok(config) => config,
        // `--json` output is JSON whatever the problems are.
        Err(err) if json => {
            println!(
                "{}",
                json!({"ok": false, "problems": list(&err.problems), "warnings": []})
            );
            return Ok(ExitCode::from(2));
        }
        Err(err) => return Err(err.into()),
    };
    let warnings = config::warnings(&config);
    let runner = Runner::open(config)?;
    let problems = runner.check().await;
    if json {
        println!(
            "{}",
            json!({"ok": problems.is_empty(), "problems": list(&problems), "warnings": list(&warnings)})
        );
    } else {
        for w in &warnings {
            eprintln!("warning: {w}");
        }
        if problems.is_empty() {
            println!(
                "{}: {} job{} OK",
                config_path.display(),
                runner.config().jobs.len(),
                if runner.config().jobs.len() == 1 {
                    ""
                } else {
                    "s"
                }
            );
        } else {
            eprintln!(
                "{} has {} problem{}:",
                config_path.display(),
                problems.len(),
                if problems.len() == 1 { "" } else { "s" }
            );
            for p in &problems {
                eprintln!("  - {p}");
            }
        }
    }
    Ok(if problems.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(2)
    })
}

/// `KEY=VALUE` pairs into a params map (VALUE as JSON when it parses, else a string).
fn parse_overrides(set: &[String]) -> anyhow::Result<Map<String, Value>> {
    let mut map = Map::new();
    for item in set {
        let (k, v) = item
            .split_once('=')
            .ok_or_else(|| UsageError(format!("--set `{item}`: expected KEY=VALUE")))?;
        if k.is_empty() {
            return Err(UsageError(format!("--set `{item}`: empty KEY")).into());
        }
        let value = serde_json::from_str(v).unwrap_or_else(|_| Value::String(v.to_string()));
        map.insert(k.to_string(), value);
    }
    Ok(map)
}

async fn run_job(
    config_path: &Path,
    job: &str,
    kind: RunKind,
    set: &[String],
    snapshot: Option<&str>,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let overrides = parse_overrides(set)?;
    let config = config::load(config_path)?;
    config.job(job)?;
    if snapshot.is_some() && config.repository.is_none() {
        // A usage error (exit 2), caught before a failed run is recorded.
        return Err(UsageError(format!(
            "--snapshot given, but {} has no [repository] section",
            config_path.display()
        ))
        .into());
    }
    let runner = Runner::open(config)?;
    let (sink, bar) = progress_sink();
    // Ctrl-C / SIGTERM cancel the run: `finally` steps run, nothing is
    // committed, and the run is recorded `cancelled`.
    let cancel = tokio_util::sync::CancellationToken::new();
    let on_signal = cancel.clone();
    let watcher = tokio::spawn(async move {
        use tokio::signal::unix::{SignalKind, signal};
        let Ok(mut term) = signal(SignalKind::terminate()) else {
            return;
        };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
        eprintln!("cairn: stopping the run (signal received)");
        on_signal.cancel();
    });
    let opts = RunOptions {
        overrides,
        snapshot: snapshot.map(str::to_string),
        progress: sink,
        cancel,
        ..RunOptions::default()
    };
    let report = runner.run(job, kind, opts).await;
    watcher.abort();
    let report = report?;
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    print_report(&report, json);
    Ok(if report.succeeded() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

fn print_report(report: &RunReport, json: bool) {
    if json {
        println!(
            "{}",
            serde_json::to_string(report).expect("report serialises")
        );
        return;
    }
    let r = &report.run;
    let secs = r
        .finished_at_ms
        .map(|f| (f - r.started_at_ms) as f64 / 1000.0)
        .unwrap_or(0.0);
    match &r.error {
        None => {
            println!(
                "run {} of job `{}`: {} in {secs:.1}s",
                r.id,
                r.job,
                r.status.as_str()
            );
            if let Some(id) = &r.snapshot_id {
                println!("snapshot: {id}");
            }
            if let Some(result) = &report.result
                && !result.is_null()
            {
                println!("result: {result}");
            }
        }
        Some(e) => {
            eprintln!(
                "run {} of job `{}`: {} after {secs:.1}s",
                r.id,
                r.job,
                r.status.as_str()
            );
            eprintln!("error: {e}");
            eprintln!("(log: cairn runs show {})", r.id);
        }
    }
}

/// A terminal progress bar, or plain lines at most every 5 seconds.
fn progress_sink() -> (ProgressSink, Option<indicatif::ProgressBar>) {
    if std::io::stderr().is_terminal() {
        let bar = indicatif::ProgressBar::new(0);
        let sink_bar = bar.clone();
        let sink: ProgressSink = Arc::new(move |job: &str, p: Progress| {
            let template = match (p.bytes, p.total.is_some()) {
                (true, true) => {
                    "{prefix} {wide_bar} {bytes}/{total_bytes} {binary_bytes_per_sec} eta {eta}"
                }
                (true, false) => "{prefix} {spinner} {bytes} {binary_bytes_per_sec}",
                (false, true) => "{prefix} {wide_bar} {pos}/{len} {per_sec} eta {eta}",
                (false, false) => "{prefix} {spinner} {pos} {per_sec}",
            };
            if let Ok(style) = indicatif::ProgressStyle::with_template(template) {
                sink_bar.set_style(style);
            }
            sink_bar.set_prefix(job.to_string());
            sink_bar.set_length(p.total.unwrap_or(p.done.max(1)));
            sink_bar.set_position(p.done);
        });
        (sink, Some(bar))
    } else {
        let last = Mutex::new(None::<Instant>);
        let sink: ProgressSink = Arc::new(move |job: &str, p: Progress| {
            let mut last = last.lock().unwrap();
            if last.is_some_and(|t| t.elapsed() < Duration::from_secs(5)) {
                return;
            }
            *last = Some(Instant::now());
            let unit = if p.bytes { " bytes" } else { "" };
            let total = p.total.map(|t| format!(" of {t}")).unwrap_or_default();
            eprintln!("{job}: {}{total}{unit}", p.done);
        });
        (sink, None)
    }
}

async fn open_repository(config_path: &Path, create: bool) -> anyhow::Result<(Runner, Repository)> {
    let config = config::load(config_path)?;
    if config.repository.is_none() {
        return Err(UsageError(format!(
            "{} has no [repository] section (path, password-env or password-file)",
            config_path.display()
        ))
        .into());
    }
    let runner = Runner::open(config)?;
    let repo = runner.repository(create).await?;
    Ok((runner, repo))
}

async fn init(config_path: &Path, json: bool) -> anyhow::Result<ExitCode> {
    let config = config::load(config_path)?;
    let Some(repo) = config.repository.clone() else {
        return Err(UsageError(format!(
            "{} has no [repository] section",
            config_path.display()
        ))
        .into());
    };
    let password = runner::repository_password(&repo)?;
    let path = repo.path.clone();
    tokio::task::spawn_blocking(move || Repository::init(&path, &password)).await??;
    if json {
        println!("{}", json!({"created": repo.path}));
    } else {
        println!("created repository {}", repo.path.display());
        println!(
            "restic can read it too: restic -r {} snapshots (with the same password)",
            repo.path.display()
        );
    }
    Ok(ExitCode::SUCCESS)
}

async fn snapshots(config_path: &Path, job: Option<&str>, json: bool) -> anyhow::Result<ExitCode> {
    let (runner, repo) = open_repository(config_path, false).await?;
    if let Some(job) = job {
        runner.config().job(job)?;
    }
    let job = job.map(str::to_string);
    let list = tokio::task::spawn_blocking(move || repo.snapshots(job.as_deref())).await??;
    if json {
        println!("{}", serde_json::to_string(&list)?);
        return Ok(ExitCode::SUCCESS);
    }
    if list.is_empty() {
        println!("no snapshots");
    }
    for s in &list {
        println!(
            "{}  {}  {:<20} {:<16} {}",
            s.short_id,
            s.time,
            s.job,
            s.task,
            s.paths.join(" ")
        );
    }
    Ok(ExitCode::SUCCESS)
}

async fn forget(
    config_path: &Path,
    job: Option<&str>,
    prune: bool,
    dry_run: bool,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let (runner, repo) = open_repository(config_path, false).await?;
    let jobs: Vec<(String, cairn::config::Retention)> = match job {
        Some(name) => {
            let j = runner.config().job(name)?;
            if j.retention.is_empty() {
                return Err(UsageError(format!(
                    "job `{name}` has no retention rules: add e.g. `retention = {{ keep-last = 7 }}` to [jobs.{name}]"
                ))
                .into());
            }
            vec![(j.name.clone(), j.retention.clone())]
        }
        None => runner
            .config()
            .jobs
            .values()
            .filter(|j| !j.retention.is_empty())
            .map(|j| (j.name.clone(), j.retention.clone()))
            .collect(),
    };
    // Each snapshot to forget first goes through its task's `forget` hook; a
    // snapshot whose hook fails is kept (and retried next time).
    let mut reports = Vec::new();
    let mut failed = Vec::new();
    for (name, _keep) in jobs {
        let outcome = runner.forget_job(&name, dry_run).await?;
        reports.push(outcome.report);
        failed.extend(outcome.failed);
    }
    let exit = if failed.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    };
    let pruned = if prune && !dry_run {
        let r = repo.clone();
        Some(tokio::task::spawn_blocking(move || r.prune()).await??)
    } else {
        None
    };
    if json {
        println!(
            "{}",
            json!({"forget": reports, "prune": pruned, "failed": failed})
        );
        return Ok(exit);
    }
    for r in &reports {
        let verb = if r.dry_run { "would remove" } else { "removed" };
        for s in &r.removed {
            println!("{verb} {} {} ({})", s.short_id, s.time, s.job);
        }
        for s in &r.kept {
            println!("keep {} {} ({})", s.short_id, s.time, s.job);
        }
    }
    if let Some(p) = pruned {
        println!(
            "pruned {} pack(s), {} bytes",
            p.packs_removed, p.bytes_removed
        );
    }
    for f in &failed {
        eprintln!(
            "error: kept snapshot {} ({}): its forget hook failed: {}",
            f.snapshot.short_id, f.snapshot.job, f.error
        );
    }
    Ok(exit)
}

async fn check(config_path: &Path, read_data: bool, json: bool) -> anyhow::Result<ExitCode> {
    let (_runner, repo) = open_repository(config_path, false).await?;
    let report = tokio::task::spawn_blocking(move || repo.check(read_data)).await??;
    if json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        for w in &report.warnings {
            eprintln!("warning: {w}");
        }
        for e in &report.errors {
            eprintln!("error: {e}");
        }
        if report.is_ok() {
            println!(
                "repository OK{}",
                if read_data { " (all data read)" } else { "" }
            );
        }
    }
    Ok(if report.is_ok() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

fn open_store(config_path: &Path) -> anyhow::Result<SqliteStore> {
    let config = config::load(config_path)?;
    let store = SqliteStore::open(&config.state_path)?;
    store.reconcile_interrupted()?;
    Ok(store)
}

fn list_runs(
    config_path: &Path,
    job: Option<&str>,
    limit: usize,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let store = open_store(config_path)?;
    let runs = store.runs(job, limit)?;
    if json {
        println!("{}", serde_json::to_string(&runs)?);
        return Ok(ExitCode::SUCCESS);
    }
    if runs.is_empty() {
        println!("no runs yet");
    }
    for r in &runs {
        let secs = r
            .finished_at_ms
            .map(|f| format!("{:.1}s", (f - r.started_at_ms) as f64 / 1000.0))
            .unwrap_or_else(|| "-".into());
        println!(
            "{}  {:<20} {:<8} {:<12} {:>8}  {}",
            r.id,
            r.job,
            r.kind.as_str(),
            r.status.as_str(),
            secs,
            r.error.as_deref().unwrap_or("")
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn show_run(config_path: &Path, id: &str, json: bool) -> anyhow::Result<ExitCode> {
    let store = open_store(config_path)?;
    let run = store.run(id)?;
    let logs = store.logs(id)?;
    if json {
        println!("{}", json!({"run": run, "logs": logs}));
        return Ok(ExitCode::SUCCESS);
    }
    println!("run      {}", run.id);
    println!("job      {}", run.job);
    println!("kind     {}", run.kind.as_str());
    println!("status   {}", run.status.as_str());
    if let Some(e) = &run.error {
        println!("error    {e}");
    }
    if let Some(r) = &run.result {
        println!("result   {r}");
    }
    println!("log:");
    for l in &logs {
        let fields: Vec<String> = l.fields.iter().map(|(k, v)| format!("{k}={v}")).collect();
        println!(
            "  {} {:<5} {} {}",
            l.at_ms,
            l.level,
            l.message,
            fields.join(" ")
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// Runtime for plug-in commands: the config's cache directory if a config
/// file is there, else the default one.
fn plugin_runtime(config_path: &Path) -> anyhow::Result<Runtime> {
    let cache = match config_path.exists().then(|| config::load(config_path)) {
        Some(Ok(config)) => config.cache_dir,
        Some(Err(e)) => {
            // Inspecting a module does not need the config; don't let a broken one block it.
            tracing::warn!("ignoring {} for this command: {e}", config_path.display());
            runtime::default_cache_dir()
        }
        None => runtime::default_cache_dir(),
    };
    Runtime::new(Some(&cache))
}

async fn plugin(
    config_path: &Path,
    command: PluginCommand,
    json: bool,
) -> anyhow::Result<ExitCode> {
    match command {
        PluginCommand::List => {
            let rt = plugin_runtime(config_path)?;
            let store: Arc<dyn StateStore> = Arc::new(SqliteStore::open_in_memory()?);
            let mut rows = Vec::new();
            for b in cairn::builtins::all() {
                let module = rt
                    .load(&ModuleRef {
                        source: b.source(),
                        sha256: None,
                    })
                    .await?;
                let d = runner::describe(&rt, &module, store.clone()).await?;
                rows.push(json!({
                    "name": format!("builtin:{}", b.name),
                    "kind": b.kind,
                    "version": d.version,
                    "summary": d.summary,
                }));
            }
            if json {
                println!("{}", Value::Array(rows));
            } else {
                for r in rows {
                    println!(
                        "{:<28} {:<9} {:<8} {}",
                        r["name"].as_str().unwrap_or(""),
                        r["kind"].as_str().unwrap_or(""),
                        r["version"].as_str().unwrap_or(""),
                        r["summary"].as_str().unwrap_or("")
                    );
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        PluginCommand::Inspect { module } => {
            let source = match module.strip_prefix("builtin:") {
                Some(name) => ModuleSource::Builtin(name.to_string()),
                None => ModuleSource::File(std::path::absolute(&module)?),
            };
            let rt = plugin_runtime(config_path)?;
            let loaded = rt
                .load(&ModuleRef {
                    source,
                    sha256: None,
                })
                .await?;
            let store: Arc<dyn StateStore> = Arc::new(SqliteStore::open_in_memory()?);
            let d = runner::describe(&rt, &loaded, store).await?;
            let imports = runtime::imports(rt.engine(), &loaded.component);
            let params: Vec<Value> = d
                .params
                .iter()
                .map(|p| {
                    json!({"name": p.name, "description": p.description, "required": p.required,
                           "default": p.default.as_deref().and_then(|t| serde_json::from_str::<Value>(t).ok())})
                })
                .collect();
            let out = json!({
                "module": loaded.label,
                "kind": loaded.kind,
                "sha256": hex::encode(loaded.digest),
                "name": d.name,
                "version": d.version,
                "summary": d.summary,
                "params": params,
                "needs": {
                    "http": d.needs.http, "commands": d.needs.commands, "paths": d.needs.paths,
                    "secrets": d.needs.secrets, "functions": d.needs.functions,
                },
                "imports": imports,
            });
            if json {
                println!("{out}");
            } else {
                println!("module   {}", loaded.label);
                println!("kind     {}", out["kind"].as_str().unwrap_or(""));
                println!("sha256   {}", hex::encode(loaded.digest));
                println!("name     {} {}", d.name, d.version);
                println!("summary  {}", d.summary);
                println!("params:");
                for p in &d.params {
                    let req = if p.required { "required" } else { "optional" };
                    let def = p
                        .default
                        .as_deref()
                        .map(|v| format!(" (default {v})"))
                        .unwrap_or_default();
                    println!("  {:<20} {req}{def}  {}", p.name, p.description);
                }
                println!("needs:");
                for (what, list) in [
                    ("http", &d.needs.http),
                    ("commands", &d.needs.commands),
                    ("paths", &d.needs.paths),
                    ("secrets", &d.needs.secrets),
                    ("functions", &d.needs.functions),
                ] {
                    if !list.is_empty() {
                        println!("  {what:<10} {}", list.join(", "));
                    }
                }
                println!("imports:");
                for i in &imports {
                    println!("  {i}");
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        PluginCommand::New {
            name,
            path,
            sdk_path,
        } => {
            let dir = path.unwrap_or_else(|| PathBuf::from(&name));
            let sdk = match sdk_path {
                Some(p) => cairn::scaffold::SdkDep::Path(std::path::absolute(p)?),
                None => {
                    let built_from = Path::new(env!("CARGO_MANIFEST_DIR")).join("../guest-sdk");
                    match built_from.canonicalize() {
                        Ok(p) => cairn::scaffold::SdkDep::Path(p),
                        Err(_) => {
                            cairn::scaffold::SdkDep::Version(env!("CARGO_PKG_VERSION").into())
                        }
                    }
                }
            };
            let files = cairn::scaffold::scaffold(&name, &dir, sdk)
                .map_err(|e| UsageError(format!("{e:#}")))?;
            if json {
                println!("{}", json!({"dir": dir, "files": files}));
            } else {
                println!("created task crate `{name}` in {}", dir.display());
                for f in files {
                    println!("  {}", f.display());
                }
                println!(
                    "next: cd {} && cargo build --release --target wasm32-wasip2",
                    dir.display()
                );
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overrides_parse_json_values_and_fall_back_to_strings() {
        let m =
            parse_overrides(&["db=restored".into(), "n=3".into(), "list=[1,2]".into()]).unwrap();
        assert_eq!(m["db"], json!("restored"));
        assert_eq!(m["n"], json!(3));
        assert_eq!(m["list"], json!([1, 2]));
        assert!(parse_overrides(&["novalue".into()]).is_err());
    }
}
