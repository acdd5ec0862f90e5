//! `cairn runs` and `cairn runs show`: the run history.

use std::path::Path;
use std::process::ExitCode;

use serde_json::json;

use super::output::format_time;
use cairn::config;
use cairn::state::StateStore;

fn open_store(config_path: &Path) -> anyhow::Result<std::sync::Arc<dyn StateStore>> {
    let config = config::load(config_path)?;
    let store = cairn::state::open(&config.state_location(), &cairn::sys::hostname())?;
    store.reconcile_interrupted()?;
    Ok(store)
}

pub(super) fn list_runs(
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
            "{}  {}  {:<20} {:<8} {:<12} {:>8}  {:<12} {}",
            r.id,
            format_time(r.started_at_ms),
            r.job,
            r.kind.as_str(),
            r.status.as_str(),
            secs,
            r.node.as_deref().unwrap_or("-"),
            r.error.as_deref().unwrap_or("")
        );
    }
    Ok(ExitCode::SUCCESS)
}

pub(super) fn show_run(config_path: &Path, id: &str, json: bool) -> anyhow::Result<ExitCode> {
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
    if let Some(node) = &run.node {
        println!("node     {node}");
    }
    println!("started  {}", format_time(run.started_at_ms));
    if let Some(f) = run.finished_at_ms {
        println!("finished {}", format_time(f));
    }
    if run.bytes > 0 {
        println!("bytes    {}", cairn::units::format_size(run.bytes));
    }
    if let Some(s) = &run.snapshot_id {
        println!("snapshot {s}");
    }
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
            format_time(l.at_ms),
            l.level,
            l.message,
            fields.join(" ")
        );
    }
    Ok(ExitCode::SUCCESS)
}
