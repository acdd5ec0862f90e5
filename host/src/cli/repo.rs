//! `cairn init`, `snapshots`, `forget` and `check`: the repository.

use std::path::Path;
use std::process::ExitCode;

use serde_json::json;

use super::UsageError;
use cairn::config;
use cairn::model::Retention;
use cairn::repository::Repository;
use cairn::runner::{self, Runner};

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

pub(super) async fn init(config_path: &Path, json: bool) -> anyhow::Result<ExitCode> {
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

pub(super) async fn snapshots(
    config_path: &Path,
    job: Option<&str>,
    json: bool,
) -> anyhow::Result<ExitCode> {
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

pub(super) async fn forget(
    config_path: &Path,
    job: Option<&str>,
    prune: bool,
    dry_run: bool,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let (runner, repo) = open_repository(config_path, false).await?;
    let jobs: Vec<(String, Retention)> = match job {
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

pub(super) async fn check(
    config_path: &Path,
    read_data: bool,
    json: bool,
) -> anyhow::Result<ExitCode> {
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
