//! `cairn init`, `snapshots`, `forget` and `check`: the repository.

use std::path::Path;
use std::process::ExitCode;

use serde_json::json;

use super::UsageError;
use super::output::format_time;
use cairn::config;
use cairn::model::Retention;
use cairn::repository::Repository;
use cairn::runner::{self, Runner};
use cairn::units::format_size;

async fn open_repository(config_path: &Path, create: bool) -> anyhow::Result<(Runner, Repository)> {
    let config = config::load(config_path)?;
    if config.repository.is_none() {
        return Err(UsageError(format!(
            "{} has no [repository] section (path or url, password-env or password-file)",
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
    let location = repo.location.clone();
    tokio::task::spawn_blocking(move || Repository::init(&location, &password)).await??;
    if json {
        println!("{}", json!({"created": repo.location.to_string()}));
    } else {
        println!("created repository {}", repo.location);
        println!(
            "restic can read it too: restic -r {} snapshots (with the same password)",
            repo.location
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
        return Ok(ExitCode::SUCCESS);
    }
    // restic's columns: id, time, host, tags, paths, size. The `job:`,
    // `task:` and `run:` tags are Cairn's; other tags are shown as they are.
    let rows: Vec<[String; 6]> = list
        .iter()
        .map(|s| {
            let others: Vec<&str> = s
                .tags
                .iter()
                .map(String::as_str)
                .filter(|t| {
                    !t.starts_with("job:") && !t.starts_with("task:") && !t.starts_with("run:")
                })
                .collect();
            let mut tags = format!("task:{} run:{}", s.task, s.run_id);
            for t in others {
                tags.push(' ');
                tags.push_str(t);
            }
            [
                s.short_id.clone(),
                format_time(s.time_ms),
                s.job.clone(),
                s.summary
                    .map_or_else(|| "-".into(), |x| format_size(x.total_bytes_processed)),
                s.paths.join(" "),
                tags,
            ]
        })
        .collect();
    let header = ["ID", "Time", "Job", "Size", "Artifacts", "Tags"];
    let mut widths = header.map(str::len);
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: [&str; 6]| {
        let mut out = String::new();
        for (i, (cell, w)) in cells.iter().zip(widths).enumerate() {
            if i == 3 {
                out.push_str(&format!("{cell:>w$}  "));
            } else if i == 5 {
                out.push_str(cell);
            } else {
                out.push_str(&format!("{cell:<w$}  "));
            }
        }
        out
    };
    println!("{}", line(header));
    println!("{}", "-".repeat(widths.iter().sum::<usize>() + 10));
    for row in &rows {
        println!("{}", line(row.each_ref().map(String::as_str)));
    }
    println!("{}", "-".repeat(widths.iter().sum::<usize>() + 10));
    println!(
        "{} snapshot{}",
        rows.len(),
        if rows.len() == 1 { "" } else { "s" }
    );
    Ok(ExitCode::SUCCESS)
}

/// `cairn ls SNAPSHOT [PATH]`: the entries of a snapshot, as `restic ls -l`.
pub(super) async fn ls(
    config_path: &Path,
    job: Option<&str>,
    snapshot: &str,
    path: Option<&str>,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let (runner, repo) = open_repository(config_path, false).await?;
    if let Some(job) = job {
        runner.config().job(job)?;
    }
    if snapshot == "latest" && job.is_none() {
        return Err(UsageError(
            "`latest` needs the job whose latest snapshot to list: add --job JOB".into(),
        )
        .into());
    }
    let (job, id, path) = (
        job.map(str::to_string),
        snapshot.to_string(),
        path.unwrap_or_default().to_string(),
    );
    let (info, entries) = tokio::task::spawn_blocking(move || {
        let info = match &job {
            Some(job) => repo.find_snapshot(job, &id)?,
            None => {
                let lower = id.to_ascii_lowercase();
                let all = repo.snapshots(None)?;
                let mut found: Vec<_> = all
                    .into_iter()
                    .filter(|s| lower.len() >= 4 && s.id.starts_with(&lower))
                    .collect();
                match found.len() {
                    1 => found.remove(0),
                    0 => anyhow::bail!(UsageError(format!(
                        "no snapshot `{id}` (an id or a prefix of at least 4 hex digits; see `cairn snapshots`)"
                    ))),
                    _ => anyhow::bail!(UsageError(format!(
                        "snapshot prefix `{id}` is ambiguous: {}",
                        found.iter().map(|s| s.short_id.as_str()).collect::<Vec<_>>().join(", ")
                    ))),
                }
            }
        };
        let session = repo.open_restore(&info)?;
        let entries = session.ls(&path)?;
        Ok::<_, anyhow::Error>((info, entries))
    })
    .await??;
    if json {
        for e in &entries {
            println!("{}", serde_json::to_string(e)?);
        }
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "snapshot {} of job `{}` at {}:",
        info.short_id,
        info.job,
        format_time(info.time_ms)
    );
    for e in &entries {
        let kind = match e.kind {
            "dir" => 'd',
            "symlink" => 'l',
            "file" => '-',
            "fifo" => 'p',
            "socket" => 's',
            "chardev" => 'c',
            _ => 'b',
        };
        let mode = e.mode.unwrap_or(0);
        let mut perms = String::with_capacity(10);
        perms.push(kind);
        for shift in [6, 3, 0] {
            let bits = (mode >> shift) & 7;
            perms.push(if bits & 4 != 0 { 'r' } else { '-' });
            perms.push(if bits & 2 != 0 { 'w' } else { '-' });
            perms.push(if bits & 1 != 0 { 'x' } else { '-' });
        }
        let when = e.mtime_ms.map(format_time).unwrap_or_default();
        let target = e
            .target
            .as_deref()
            .map(|t| format!(" -> {t}"))
            .unwrap_or_default();
        println!(
            "{perms} {:>10}  {when}  {}{target}",
            format_size(e.size),
            e.path
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
    let (runner, _repo) = open_repository(config_path, false).await?;
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
    // Each forget (and the prune) is recorded as a run, like the daemon's.
    let cancel = tokio_util::sync::CancellationToken::new();
    for (name, _keep) in jobs {
        let outcome = if dry_run {
            runner.forget_job(&name, true).await?
        } else {
            runner
                .forget_recorded(&name, cairn::state::Trigger::Cli, &cancel)
                .await?
                .1?
        };
        reports.push(outcome.report);
        failed.extend(outcome.failed);
    }
    let exit = if failed.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    };
    let pruned = if prune && !dry_run {
        Some(
            runner
                .prune_recorded(cairn::state::Trigger::Cli, &cancel)
                .await?
                .1?,
        )
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
            println!(
                "{verb} {} {} ({})",
                s.short_id,
                format_time(s.time_ms),
                s.job
            );
        }
        for s in &r.kept {
            println!("keep {} {} ({})", s.short_id, format_time(s.time_ms), s.job);
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

pub(super) async fn copy(
    config_path: &Path,
    to: &str,
    job: Option<&str>,
    snapshots: &[String],
    json: bool,
) -> anyhow::Result<ExitCode> {
    if snapshots.iter().any(|s| s == "latest") && job.is_none() {
        return Err(
            UsageError("`latest` needs --job: the latest snapshot of which job?".into()).into(),
        );
    }
    let (runner, source) = open_repository(config_path, false).await?;
    if let Some(job) = job {
        if !runner.config().jobs.contains_key(job) && source.snapshots(Some(job))?.is_empty() {
            return Err(UsageError(format!(
                "no job `{job}` in the configuration or the repository"
            ))
            .into());
        }
    }
    let dest = runner.named_repository(to, true).await?;
    let (job, ids) = (job.map(str::to_owned), snapshots.to_vec());
    let report =
        tokio::task::spawn_blocking(move || source.copy_to(&dest, job.as_deref(), &ids)).await??;
    if json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        for s in &report.copied {
            println!(
                "copied {} ({}, {})",
                s.short_id,
                s.job,
                format_time(s.time_ms)
            );
        }
        for s in &report.present {
            println!(
                "already there {} ({}, {})",
                s.short_id,
                s.job,
                format_time(s.time_ms)
            );
        }
        println!(
            "{} snapshot(s) copied to `{to}`, {} already there",
            report.copied.len(),
            report.present.len()
        );
    }
    Ok(ExitCode::SUCCESS)
}

pub(super) async fn check(
    config_path: &Path,
    subset: Option<String>,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let (_runner, repo) = open_repository(config_path, false).await?;
    let read = subset.clone();
    let report = tokio::task::spawn_blocking(move || repo.check_data(read.as_deref())).await??;
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
            match subset.as_deref() {
                None => println!("repository OK"),
                Some("all") => println!("repository OK (all data read)"),
                Some(subset) => println!("repository OK (data subset {subset} read)"),
            }
        }
    }
    Ok(if report.is_ok() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
