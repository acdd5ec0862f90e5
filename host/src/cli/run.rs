//! `cairn backup` and `cairn restore`: one run of a job, now.

use std::path::Path;
use std::process::ExitCode;

use serde_json::{Map, Value};

use super::UsageError;
use super::output::{RunProgress, Style, print_report};
use cairn::config;
use cairn::runner::{RunOptions, Runner};
use cairn::state::RunKind;

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

pub(super) async fn run_job(
    config_path: &Path,
    job: &str,
    kind: RunKind,
    set: &[String],
    snapshot: Option<&str>,
    skip_damaged: bool,
    style: Style,
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
    let uses_repository = config.repository.is_some();
    let runner = Runner::open(config)?;
    if uses_repository && matches!(kind, RunKind::Backup | RunKind::Restore) {
        // A wrong password is its own exit code (12, as restic), not a failed run.
        if let Err(e) = runner.repository(kind == RunKind::Backup).await
            && e.chain().any(|c| {
                matches!(
                    c.downcast_ref::<cairn::repository::RepoError>(),
                    Some(cairn::repository::RepoError::WrongPassword { .. })
                )
            })
        {
            return Err(e);
        }
    }
    let progress = RunProgress::new(job, style);
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
        skip_damaged,
        progress: progress.sink(),
        phase: progress.phase(),
        cancel,
        ..RunOptions::default()
    };
    let report = runner.run(job, kind, opts).await;
    watcher.abort();
    progress.finish();
    let report = report?;
    print_report(&report, style);
    Ok(if report.succeeded() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

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
