//! `cairn validate`: the configuration, and every job's grants against its
//! task's needs.

use std::path::Path;
use std::process::ExitCode;

use serde_json::{Value, json};

use cairn::config;
use cairn::runner::Runner;

pub(super) async fn validate(config_path: &Path, json: bool) -> anyhow::Result<ExitCode> {
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
