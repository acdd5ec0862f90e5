//! `cairn daemon`: run the scheduler and the HTTP API until a signal.

use std::path::Path;
use std::process::ExitCode;

use anyhow::Context as _;

use super::UsageError;
use cairn::config;

pub(super) async fn daemon(
    config_path: &Path,
    listen: Option<std::net::SocketAddr>,
    node: Option<String>,
    labels: Vec<String>,
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
    let node = cairn::daemon::Node::new(
        &node.unwrap_or_else(cairn::sys::hostname),
        labels.into_iter().filter(|l| !l.is_empty()),
    )
    .map_err(|e| UsageError(format!("--node/--labels: {e}")))?;
    let daemon = cairn::daemon::Daemon::open_node(config, source, node)?;
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
        "daemon started as node `{}` (labels [{}]): {} jobs, {} scheduled, {} paused",
        daemon.node().name,
        daemon.node().labels_text(),
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
