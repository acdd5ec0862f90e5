//! End-to-end tests of the built-in Functions `wait-until`, `command`,
//! `archive-path` and `restore-path`, called by the test guest (action
//! `call`) in real backup and restore runs against a real repository, with
//! the calling job's grants.

use std::collections::BTreeMap;
use std::io::{Read as _, Write as _};
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use cairn::runner::{RunOptions, RunReport, Runner};
use cairn::state::RunKind;
use serde_json::{Map, Value, json};
use sha2::{Digest as _, Sha256};

use crate::support::{self, Scratch, TestServer, run_error};

const PASSWORD_ENV: &str = "CAIRN_TEST_FUNCTIONS_PASSWORD";

/// A repository in the scratch dir and job `f` running the test guest with
/// `allow` lines.
fn config(allow: &str) -> String {
    // SAFETY: every test of this module sets the same value.
    unsafe { std::env::set_var(PASSWORD_ENV, "functions-test") };
    format!(
        "[repository]\npath = \"repo\"\npassword-env = \"{PASSWORD_ENV}\"\n\n{}",
        support::guest_job("f", &format!("[jobs.f.allow]\n{allow}"))
    )
}

/// A TOML string.
fn toml_str(text: &str) -> String {
    format!("{text:?}")
}

/// Run function `name` with `params` through the test guest in a `kind` run of job `f`.
async fn call(
    runner: &Runner,
    kind: RunKind,
    name: &str,
    params: Value,
) -> anyhow::Result<RunReport> {
    let Value::Object(overrides) = json!({"action": "call", "function": name, "params": params})
    else {
        unreachable!()
    };
    let overrides: Map<String, Value> = overrides;
    runner
        .run(
            "f",
            kind,
            RunOptions {
                overrides,
                ..RunOptions::default()
            },
        )
        .await
}

/// The function's result of a run that must have succeeded.
#[track_caller]
fn result(report: &RunReport) -> Value {
    assert!(
        report.succeeded(),
        "expected the run to succeed, it ended {:?}: {:?}",
        report.run.status,
        report.run.error
    );
    report.result.clone().expect("a result")["result"].clone()
}

#[track_caller]
fn assert_contains(text: &str, needles: &[&str]) {
    for needle in needles {
        assert!(text.contains(needle), "{needle:?} is not in:\n{text}");
    }
}

// ---------------------------------------------------------------------------
// wait-until

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wait_until_polls_until_the_field_matches_and_times_out_naming_what_it_saw()
-> anyhow::Result<()> {
    let server = TestServer::start().await?;
    let scratch = Scratch::new()?;
    let runner = scratch.runner(&config(&format!(
        "http = [{}]\nfunctions = [\"wait-until\"]",
        toml_str(&server.url)
    )))?;

    // Ready on the third poll: three requests, two pauses.
    let url = format!("{}/poll/three?ready=3", server.url);
    let started = Instant::now();
    let report = call(
        &runner,
        RunKind::Backup,
        "wait-until",
        json!({"url": url, "field": "state", "equals": ["DONE", "SKIPPED"], "interval": "100ms"}),
    )
    .await?;
    let out = result(&report);
    assert_eq!(out["attempts"], 3, "{out}");
    assert_eq!(out["value"], "DONE");
    assert_eq!(
        out["response"],
        json!({"status": 200, "body": {"state": "DONE", "polls": 3}})
    );
    assert!(out["elapsed_ms"].as_u64().unwrap() >= 200, "{out}");
    assert!(started.elapsed() < Duration::from_secs(10));
    let polls = server
        .seen()
        .iter()
        .filter(|s| s.request == "GET /poll/three")
        .count();
    assert_eq!(polls, 3);

    // Never ready: a `limit` error after the timeout, naming the URL, the
    // field and the last value, well before the run's own timeout.
    let url = format!("{}/poll/never", server.url);
    let started = Instant::now();
    let report = call(
        &runner,
        RunKind::Backup,
        "wait-until",
        json!({"url": url, "field": "/state", "equals": "DONE", "interval": 0.2, "timeout": "1s"}),
    )
    .await?;
    let error = run_error(&report)?;
    assert_contains(
        &error,
        &[
            "limit: function `wait-until`: timed out after 1s polling GET ",
            &url,
            "until `/state` is \"DONE\"",
            "the last saw the value \"PENDING\"",
        ],
    );
    let took = started.elapsed();
    assert!(
        took >= Duration::from_secs(1) && took < Duration::from_secs(10),
        "{took:?}"
    );
    let polls = server
        .seen()
        .iter()
        .filter(|s| s.request == "GET /poll/never")
        .count();
    assert!(
        (4..=7).contains(&polls),
        "{polls} polls in 1 s every 200 ms"
    );

    // A value in `fail-on` ends the wait at once.
    let url = format!("{}/poll/fails?ready=10&fail=2", server.url);
    let report = call(
        &runner,
        RunKind::Backup,
        "wait-until",
        json!({"url": url, "field": "state", "equals": "DONE", "fail-on": ["FAILED", "PARTIAL"],
               "interval": "10ms"}),
    )
    .await?;
    assert_contains(
        &run_error(&report)?,
        &["`state` is \"FAILED\", which is in `fail-on` (attempt 2)"],
    );

    // An origin the job does not grant is refused at once, not retried.
    let report = call(
        &runner,
        RunKind::Backup,
        "wait-until",
        json!({"url": "http://127.0.0.1:9/x", "field": "a", "equals": 1, "timeout": "1m"}),
    )
    .await?;
    assert_contains(
        &run_error(&report)?,
        &[
            "denied: function `wait-until`: ",
            "http://127.0.0.1:9",
            "is not granted",
        ],
    );
    Ok(())
}

// ---------------------------------------------------------------------------
// command

/// Write `size` bytes from `/dev/urandom` to `path`; their sha256.
fn write_random_file(path: &Path, size: u64) -> anyhow::Result<String> {
    let mut random = std::fs::File::open("/dev/urandom")?.take(size);
    let mut file = std::io::BufWriter::new(std::fs::File::create(path)?);
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = random.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        file.write_all(&buf[..n])?;
    }
    file.flush()?;
    Ok(hex::encode(hasher.finalize()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn command_streams_stdout_into_an_artifact_and_back_into_stdin_and_refuses_ungranted_programs()
-> anyhow::Result<()> {
    const SIZE: u64 = 50 << 20;
    let scratch = Scratch::new()?;
    let data = scratch.path("data.bin");
    let sha = write_random_file(&data, SIZE)?;
    let runner = scratch.runner(&config(
        "commands = [\"cat\", \"sha256sum\", \"wc\"]\nfunctions = [\"command\"]",
    ))?;

    // Backup: `cat`'s 50 MiB go straight into the artifact.
    let data = data.display().to_string();
    let report = call(
        &runner,
        RunKind::Backup,
        "command",
        json!({"command": ["cat", data], "artifact": "data.bin", "timeout": "2m"}),
    )
    .await?;
    assert_eq!(
        result(&report),
        json!({"artifact": "data.bin", "bytes": SIZE})
    );
    assert!(report.run.snapshot_id.is_some());

    // Restore: the artifact is fed to `sha256sum`, which sees the same bytes.
    let report = call(
        &runner,
        RunKind::Restore,
        "command",
        json!({"command": ["sha256sum"], "from-artifact": "data.bin"}),
    )
    .await?;
    let out = result(&report);
    assert_eq!(out["exit_code"], 0);
    assert_eq!(out["artifact"], "data.bin");
    assert_eq!(out["stdout"], format!("{sha}  -\n"), "{out}");

    // A plain run with stdin text, output captured.
    let report = call(
        &runner,
        RunKind::Backup,
        "command",
        json!({"command": ["wc", "-c"], "stdin": "twelve bytes"}),
    )
    .await?;
    assert_eq!(
        result(&report)["stdout"].as_str().map(str::trim),
        Some("12")
    );

    // A failing command: its exit code and the end of its stderr.
    let report = call(
        &runner,
        RunKind::Backup,
        "command",
        json!({"command": ["cat", "/nonexistent/file"]}),
    )
    .await?;
    assert_contains(
        &run_error(&report)?,
        &[
            "command `cat` exited with code 1 (expected 0)",
            "/nonexistent/file: No such file or directory",
        ],
    );
    let report = call(
        &runner,
        RunKind::Backup,
        "command",
        json!({"command": ["cat", "/nonexistent/file"], "expect-exit": [0, 1]}),
    )
    .await?;
    assert_eq!(result(&report)["exit_code"], 1);

    // A program the job does not grant: the normal denial, naming it.
    for params in [
        json!({"command": ["rm", "-rf", "/nonexistent"]}),
        json!({"command": ["rm", "/nonexistent"], "artifact": "x"}),
    ] {
        let report = call(&runner, RunKind::Backup, "command", params).await?;
        assert_contains(
            &run_error(&report)?,
            &["denied: function `command`: ", "`rm`", "allow.commands"],
        );
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// archive-path / restore-path

/// What a tree holds: each path's kind, mode and contents or link target.
fn tree(root: &Path) -> anyhow::Result<BTreeMap<PathBuf, String>> {
    let mut out = BTreeMap::new();
    let mut pending = vec![root.to_path_buf()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir)? {
            let path = entry?.path();
            let meta = std::fs::symlink_metadata(&path)?;
            let mode = meta.permissions().mode() & 0o7777;
            let what = if meta.is_symlink() {
                format!("link -> {}", std::fs::read_link(&path)?.display())
            } else if meta.is_dir() {
                pending.push(path.clone());
                format!("dir {mode:o}")
            } else {
                format!(
                    "file {mode:o} {}",
                    hex::encode(Sha256::digest(std::fs::read(&path)?))
                )
            };
            out.insert(path.strip_prefix(root)?.to_path_buf(), what);
        }
    }
    Ok(out)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn archive_path_and_restore_path_round_trip_a_directory() -> anyhow::Result<()> {
    let scratch = Scratch::new()?;
    let (src, dst) = (scratch.path("src"), scratch.path("restored"));
    std::fs::create_dir_all(src.join("sub/empty"))?;
    std::fs::write(src.join("a.txt"), "hello\n")?;
    std::fs::write(
        src.join("sub/bin"),
        (0..=255u8).cycle().take(100_000).collect::<Vec<_>>(),
    )?;
    std::fs::set_permissions(src.join("sub/bin"), std::fs::Permissions::from_mode(0o750))?;
    std::os::unix::fs::symlink("../a.txt", src.join("sub/link"))?;
    let (s, d) = (src.display().to_string(), dst.display().to_string());
    let runner = scratch.runner(&config(&format!(
        "paths = {{ {} = \"read\", {} = \"read-write\" }}\n\
         functions = [\"archive-path\", \"restore-path\"]",
        toml_str(&s),
        toml_str(&d)
    )))?;

    let report = call(
        &runner,
        RunKind::Backup,
        "archive-path",
        json!({"path": s, "artifact": "files"}),
    )
    .await?;
    let out = result(&report);
    assert_eq!(out["artifact"], "files");
    assert_eq!(out["bytes"], 100_006);
    assert_eq!(out["files"], 3, "{out}");

    let report = call(
        &runner,
        RunKind::Restore,
        "restore-path",
        json!({"artifact": "files", "path": d}),
    )
    .await?;
    assert_eq!(result(&report)["bytes"], 100_006);
    let (before, after) = (tree(&src)?, tree(&dst)?);
    assert_eq!(before, after);
    assert_eq!(before.len(), 5, "{before:?}");

    // Again into the now non-empty target: refused, unless `overwrite`.
    std::fs::write(dst.join("a.txt"), "changed\n")?;
    let report = call(
        &runner,
        RunKind::Restore,
        "restore-path",
        json!({"artifact": "files", "path": d}),
    )
    .await?;
    assert_contains(
        &run_error(&report)?,
        &[
            &format!("restore target {d} is not empty"),
            "overwrite = true",
        ],
    );
    assert_eq!(std::fs::read_to_string(dst.join("a.txt"))?, "changed\n");
    let report = call(
        &runner,
        RunKind::Restore,
        "restore-path",
        json!({"artifact": "files", "path": d, "overwrite": true}),
    )
    .await?;
    result(&report);
    assert_eq!(std::fs::read_to_string(dst.join("a.txt"))?, "hello\n");

    // Paths the job does not grant (read-write for a restore) are refused.
    let report = call(
        &runner,
        RunKind::Backup,
        "archive-path",
        json!({"path": "/etc"}),
    )
    .await?;
    assert_contains(
        &run_error(&report)?,
        &[
            "denied: function `archive-path`: ",
            "/etc is not granted",
            "allow.paths",
        ],
    );
    let report = call(
        &runner,
        RunKind::Restore,
        "restore-path",
        json!({"artifact": "files", "path": s, "overwrite": true}),
    )
    .await?;
    assert_contains(
        &run_error(&report)?,
        &[
            "denied: function `restore-path`: ",
            &format!("read-write access to {s} is not granted to job `f`"),
        ],
    );
    // An artifact the snapshot does not hold is named with what it holds.
    let report = call(
        &runner,
        RunKind::Restore,
        "restore-path",
        json!({"artifact": "nope", "path": d}),
    )
    .await?;
    assert_contains(
        &run_error(&report)?,
        &["the snapshot holds no tree artifact `nope` (it holds `files`)"],
    );
    Ok(())
}
