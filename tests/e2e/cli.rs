//! Process-level tests of the `cairn` command: the real binary in a scratch
//! directory, checked by its exit code (0 ok, 1 a run failed, 2 usage or
//! configuration error), what it prints, and what it leaves in the state store.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use anyhow::Context as _;
use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};

use crate::support::{self, CliOutput, Scratch, TestServer, cairn, cairn_with_env};

/// A `builtin:command` job running `argv`, with `sh` granted, and extra lines.
fn command_job(name: &str, argv: &[&str], extra: &str) -> String {
    format!(
        "[jobs.{name}]\ntask = \"builtin:command\"\nallow.commands = [\"sh\"]\nparams.command = {}\n{extra}\n",
        json!(argv)
    )
}

/// 1-based line and column where `needle` first occurs in `text`.
fn position(text: &str, needle: &str) -> anyhow::Result<(usize, usize)> {
    let offset = text
        .find(needle)
        .with_context(|| format!("`{needle}` not in:\n{text}"))?;
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let column = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
    Ok((line, column))
}

/// The one line of `text` containing all of `needles`.
fn line_with<'a>(text: &'a str, needles: &[&str]) -> anyhow::Result<&'a str> {
    let lines: Vec<&str> = text
        .lines()
        .filter(|l| needles.iter().all(|n| l.contains(n)))
        .collect();
    match lines.as_slice() {
        [one] => Ok(one),
        _ => anyhow::bail!(
            "expected one line with {needles:?}, found {}:\n{text}",
            lines.len()
        ),
    }
}

/// Run `cairn` off the async runtime, so a [`TestServer`] on it keeps serving.
async fn cairn_blocking(args: &[&str], dir: &Path) -> anyhow::Result<CliOutput> {
    let args: Vec<String> = args.iter().map(|a| (*a).to_owned()).collect();
    let dir = dir.to_path_buf();
    tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        cairn(&args, &dir)
    })
    .await?
}

/// The run id and the whole report parsed from `backup`/`restore --json` output.
fn report_of(out: &CliOutput) -> anyhow::Result<(String, Value)> {
    let report = out.json()?;
    let id = report["run"]["id"]
        .as_str()
        .with_context(|| format!("no run id in {report}"))?
        .to_owned();
    Ok((id, report))
}

// ---------------------------------------------------------------------------
// validate
// ---------------------------------------------------------------------------

#[test]
fn validate_reports_every_config_problem_at_once_naming_job_key_and_position() -> anyhow::Result<()>
{
    let scratch = Scratch::new()?;
    let path = scratch.write_config(
        r#"
[jobs.search]
task = "builtin:command"
allow.http = ["ftp://backup.example.com"]

[jobs.db]
task = "builtin:command"
tiemout = "2h"

[jobs.web]
task = "builtin:command"
timeout = "5 fortnights"

[jobs.mystery]
task = "builtin:no-such-task"
"#,
    )?;
    let text = std::fs::read_to_string(&path)?;
    let out = cairn(&["validate"], scratch.dir.path())?;
    out.expect_code(2)?;
    assert!(out.stderr.contains("cairn.toml has 4 problems:"), "{out}");

    let (l, c) = position(&text, "\"ftp://")?;
    let origin = line_with(&out.stderr, &["job `search`, key `allow.http[0]`"])?;
    assert!(
        origin.contains(&format!("(line {l}, column {c})"))
            && origin.contains("scheme `ftp` is not http or https"),
        "{origin}"
    );

    let (l, c) = position(&text, "tiemout")?;
    let unknown = line_with(&out.stderr, &["job `db`", "unknown key `tiemout`"])?;
    assert!(
        unknown.contains(&format!("(line {l}, column {c})"))
            && unknown.contains("did you mean `timeout`?"),
        "{unknown}"
    );

    let (l, c) = position(&text, "\"5 fortnights\"")?;
    let duration = line_with(&out.stderr, &["job `web`, key `timeout`"])?;
    assert!(
        duration.contains(&format!("(line {l}, column {c})"))
            && duration.contains("unknown unit `fortnights`"),
        "{duration}"
    );

    let (l, c) = position(&text, "\"builtin:no-such-task\"")?;
    let builtin = line_with(&out.stderr, &["job `mystery`, key `task`"])?;
    assert!(
        builtin.contains(&format!("(line {l}, column {c})"))
            && builtin.contains("no builtin task `no-such-task`")
            && builtin.contains("builtin tasks: command"),
        "{builtin}"
    );
    assert!(out.stdout.is_empty(), "{out}");

    // `--json` lists the same problems as JSON.
    let out = cairn(&["validate", "--json"], scratch.dir.path())?;
    out.expect_code(2)?;
    let report = out.json()?;
    assert_eq!(report["ok"], json!(false), "{out}");
    let locations: Vec<&str> = report["problems"]
        .as_array()
        .context("problems")?
        .iter()
        .filter_map(|p| p["location"].as_str())
        .collect();
    assert_eq!(locations.len(), 4, "{out}");
    for (owner, needle) in [
        ("job `search`, key `allow.http[0]`", "\"ftp://"),
        ("job `db`", "tiemout"),
        ("job `web`, key `timeout`", "\"5 fortnights\""),
        ("job `mystery`, key `task`", "\"builtin:no-such-task\""),
    ] {
        let (l, c) = position(&text, needle)?;
        let expected = format!("{owner} (line {l}, column {c})");
        assert!(locations.contains(&expected.as_str()), "{expected}\n{out}");
    }
    Ok(())
}

#[test]
fn validate_reports_toml_syntax_errors_with_line_and_column() -> anyhow::Result<()> {
    let scratch = Scratch::new()?;
    let path =
        scratch.write_config("[jobs.db]\ntask = \"builtin:command\"\ntimeout = = \"2h\"\n")?;
    let text = std::fs::read_to_string(&path)?;
    let (line, _) = position(&text, "timeout = =")?;
    let out = cairn(&["validate"], scratch.dir.path())?;
    out.expect_code(2)?;
    assert!(
        out.stderr.contains(&format!("line {line}, column 11: ")),
        "{out}"
    );
    assert!(out.stderr.contains("has 1 problem:"), "{out}");
    Ok(())
}

#[test]
fn validate_rejects_an_unknown_top_level_key() -> anyhow::Result<()> {
    let scratch = Scratch::new()?;
    let path = scratch.write_config("[jbos.db]\ntask = \"builtin:command\"\n")?;
    let text = std::fs::read_to_string(&path)?;
    let (line, column) = position(&text, "jbos")?;
    let out = cairn(&["validate"], scratch.dir.path())?;
    out.expect_code(2)?;
    let problem = line_with(&out.stderr, &["unknown key `jbos`"])?;
    assert!(
        problem.contains(&format!("line {line}, column {column}"))
            && problem.contains("did you mean `jobs`?"),
        "{out}"
    );
    Ok(())
}

#[test]
fn validate_names_each_grant_the_task_needs_but_the_job_lacks() -> anyhow::Result<()> {
    let scratch = Scratch::new()?;
    let ungranted = r#"
[jobs.pg]
task = "builtin:command"
params.command = ["pg_dump", "--format=custom", "shop"]

[jobs.ping]
task = "builtin:command"
allow.commands = ["sh"]
params = { command = ["sh", "-c", "true"], ping-url = "http://127.0.0.1:9/x" }
"#;
    scratch.write_config(ungranted)?;
    let out = cairn(&["validate"], scratch.dir.path())?;
    out.expect_code(2)?;
    assert!(out.stderr.contains("has 2 problems:"), "{out}");
    line_with(
        &out.stderr,
        &[
            "job `pg`, key `allow.commands`",
            "task needs to run `pg_dump`, but `allow.commands` grants none",
        ],
    )?;
    line_with(
        &out.stderr,
        &[
            "job `ping`, key `allow.http`",
            "task needs http to http://127.0.0.1:9, but `allow.http` grants none",
        ],
    )?;

    let out = cairn(&["validate", "--json"], scratch.dir.path())?;
    out.expect_code(2)?;
    let report = out.json()?;
    assert_eq!(report["ok"], json!(false), "{out}");
    let problems = report["problems"].as_array().context("problems")?;
    assert_eq!(problems.len(), 2, "{out}");
    let has = |location: &str, message: &str| {
        problems.iter().any(|p| {
            p["location"] == json!(location)
                && p["message"].as_str().is_some_and(|m| m.contains(message))
        })
    };
    assert!(has("job `pg`, key `allow.commands`", "`pg_dump`"), "{out}");
    assert!(
        has("job `ping`, key `allow.http`", "http://127.0.0.1:9"),
        "{out}"
    );

    // Granting both makes the file valid (an uninstalled program is only a warning).
    scratch.write_config(
        r#"
[jobs.pg]
task = "builtin:command"
allow.commands = ["pg_dump"]
params.command = ["pg_dump", "--format=custom", "shop"]

[jobs.ping]
task = "builtin:command"
allow.commands = ["sh"]
allow.http = ["http://127.0.0.1:9"]
params = { command = ["sh", "-c", "true"], ping-url = "http://127.0.0.1:9/x" }
"#,
    )?;
    let out = cairn(&["validate"], scratch.dir.path())?;
    out.expect_code(0)?;
    assert_eq!(out.stdout.trim(), "cairn.toml: 2 jobs OK", "{out}");
    let out = cairn(&["validate", "--json"], scratch.dir.path())?;
    out.expect_code(0)?;
    let report = out.json()?;
    assert_eq!(report["ok"], json!(true), "{out}");
    assert_eq!(report["problems"], json!([]), "{out}");
    Ok(())
}

// ---------------------------------------------------------------------------
// backup and restore
// ---------------------------------------------------------------------------

#[test]
fn backup_runs_a_command_job_and_counts_runs_in_the_state_store() -> anyhow::Result<()> {
    let scratch = Scratch::new()?;
    scratch.write_config(&command_job("hello", &["sh", "-c", "echo hello"], ""))?;
    let dir = scratch.dir.path();

    // Quiet by default: one line saying what was done, no log lines.
    let out = cairn_with_env(&["backup", "hello"], dir, &[("CAIRN_LOG", "")])?;
    out.expect_code(0)?;
    line_with(&out.stdout, &["backup of job `hello` done in "])?;
    assert!(!out.stderr.contains("INFO"), "{out}");
    // -v brings the run's log back.
    let out = cairn_with_env(&["-v", "backup", "hello"], dir, &[("CAIRN_LOG", "")])?;
    out.expect_code(0)?;
    line_with(&out.stderr, &["INFO", "backup succeeded"])?;
    let out = cairn(&["backup", "hello", "--json"], dir)?;
    let result = &out.json()?["result"];
    assert_eq!(result["exit_code"], json!(0), "{out}");
    assert_eq!(result["runs"], json!(3), "{out}");
    assert_eq!(result["stdout_bytes"], json!(6), "{out}");

    // The default state store is `.cairn/state.db` next to the config, and
    // the task's `runs` counter survives from one process to the next.
    assert!(scratch.path(".cairn/state.db").is_file());
    for expected_runs in [4, 5] {
        let out = cairn(&["backup", "hello", "--json"], dir)?;
        out.expect_code(0)?;
        let (_, report) = report_of(&out)?;
        assert_eq!(report["run"]["status"], json!("succeeded"), "{out}");
        assert_eq!(report["run"]["job"], json!("hello"), "{out}");
        assert_eq!(report["run"]["kind"], json!("backup"), "{out}");
        assert_eq!(report["result"]["runs"], json!(expected_runs), "{out}");
    }
    Ok(())
}

#[test]
fn backup_of_a_failing_command_exits_1_with_the_error_on_stderr() -> anyhow::Result<()> {
    let scratch = Scratch::new()?;
    scratch.write_config(&command_job(
        "broken",
        &["sh", "-c", "echo 'disk full' >&2; exit 3"],
        "",
    ))?;
    let out = cairn(&["backup", "broken"], scratch.dir.path())?;
    out.expect_code(1)?;
    line_with(&out.stderr, &["of job `broken`: failed after "])?;
    line_with(
        &out.stderr,
        &["error: ", "command `sh` exited with code 3: disk full"],
    )?;
    line_with(&out.stderr, &["(log: cairn runs show "])?;
    assert!(out.stdout.is_empty(), "{out}");
    // The run's warnings are logged to stderr too, without terminal colours.
    line_with(&out.stderr, &["WARN", "disk full"])?;
    assert!(
        !out.stderr.contains('\u{1b}'),
        "escape codes in stderr\n{out}"
    );

    let out = cairn(&["backup", "broken", "--json"], scratch.dir.path())?;
    out.expect_code(1)?;
    let (_, report) = report_of(&out)?;
    assert_eq!(report["run"]["status"], json!("failed"), "{out}");
    assert!(
        report["run"]["error"]
            .as_str()
            .is_some_and(|e| e.contains("exited with code 3")),
        "{out}"
    );
    assert_eq!(report["result"], Value::Null, "{out}");
    Ok(())
}

#[test]
fn backup_of_an_unknown_job_or_without_a_config_is_a_usage_error() -> anyhow::Result<()> {
    let scratch = Scratch::new()?;
    scratch.write_config(&format!(
        "{}{}",
        command_job("hello", &["sh", "-c", "true"], ""),
        command_job("other", &["sh", "-c", "true"], "")
    ))?;
    let dir = scratch.dir.path();

    let out = cairn(&["backup", "helo"], dir)?;
    out.expect_code(2)?;
    let message = line_with(&out.stderr, &["no job `helo` in "])?;
    assert!(
        message.contains("(did you mean `hello`?)") && message.contains("jobs: hello, other"),
        "{out}"
    );
    // Nothing ran.
    let out = cairn(&["runs", "--json"], dir)?;
    out.expect_code(0)?;
    assert_eq!(out.json()?, json!([]), "{out}");

    let out = cairn(&["-c", "missing.toml", "backup", "hello"], dir)?;
    out.expect_code(2)?;
    line_with(
        &out.stderr,
        &["missing.toml", "file not found", "`-c PATH`"],
    )?;

    let empty = Scratch::new()?;
    let out = cairn(&["backup", "hello"], empty.dir.path())?;
    out.expect_code(2)?;
    line_with(&out.stderr, &["cairn.toml", "file not found", "`-c PATH`"])?;

    let out = cairn(&["backup", "hello", "--set", "novalue"], dir)?;
    out.expect_code(2)?;
    line_with(&out.stderr, &["--set `novalue`: expected KEY=VALUE"])?;
    Ok(())
}

#[test]
fn backup_set_overrides_a_param_for_one_run() -> anyhow::Result<()> {
    let scratch = Scratch::new()?;
    scratch.write_config(&command_job("hello", &["sh", "-c", "echo hello"], ""))?;
    let dir = scratch.dir.path();
    let out = cairn(
        &[
            "backup",
            "hello",
            "--json",
            "--set",
            r#"command=["sh", "-c", "echo overridden"]"#,
        ],
        dir,
    )?;
    out.expect_code(0)?;
    let (id, report) = report_of(&out)?;
    assert_eq!(report["result"]["stdout_bytes"], json!(11), "{out}");
    let show = cairn(&["runs", "show", &id], dir)?;
    show.expect_code(0)?;
    line_with(&show.stdout, &["info  overridden"])?;
    assert!(!show.stdout.contains("info  hello"), "{show}");

    // The override lasted one run.
    let out = cairn(&["backup", "hello", "--json"], dir)?;
    out.expect_code(0)?;
    assert_eq!(out.json()?["result"]["stdout_bytes"], json!(6), "{out}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn backup_pings_the_monitoring_url_on_success_and_its_fail_path_on_failure()
-> anyhow::Result<()> {
    let server = TestServer::start().await?;
    let scratch = Scratch::new()?;
    let ping = format!(
        "params.ping-url = \"{}/echo\"\nallow.http = [\"{}\"]",
        server.url, server.url
    );
    scratch.write_config(&format!(
        "{}{}",
        command_job("ok", &["sh", "-c", "echo fine"], &ping),
        command_job("bad", &["sh", "-c", "echo broken >&2; exit 3"], &ping)
    ))?;
    let dir = scratch.dir.path();

    let out = cairn_blocking(&["validate"], dir).await?;
    out.expect_code(0)?;

    let out = cairn_blocking(&["backup", "ok", "--json"], dir).await?;
    out.expect_code(0)?;
    let (ok_id, _) = report_of(&out)?;
    let seen = server.seen();
    assert_eq!(seen.len(), 1, "{seen:#?}");
    assert_eq!(seen[0].request, "POST /echo");
    assert_eq!(
        seen[0].headers.get("content-type").map(String::as_str),
        Some("application/json"),
        "{seen:#?}"
    );
    let summary: Value = serde_json::from_str(&seen[0].body)?;
    assert_eq!(summary["job"], json!("ok"), "{summary}");
    assert_eq!(summary["run_id"], json!(ok_id), "{summary}");
    assert_eq!(summary["exit_code"], json!(0), "{summary}");
    assert!(summary["duration_ms"].is_u64(), "{summary}");
    assert!(summary.get("error").is_none(), "{summary}");

    let out = cairn_blocking(&["backup", "bad", "--json"], dir).await?;
    out.expect_code(1)?;
    let (bad_id, _) = report_of(&out)?;
    let seen = server.seen();
    assert_eq!(seen.len(), 2, "{seen:#?}");
    assert_eq!(seen[1].request, "POST /echo/fail");
    let summary: Value = serde_json::from_str(&seen[1].body)?;
    assert_eq!(summary["job"], json!("bad"), "{summary}");
    assert_eq!(summary["run_id"], json!(bad_id), "{summary}");
    assert_eq!(summary["exit_code"], json!(3), "{summary}");
    assert!(
        summary["error"]
            .as_str()
            .is_some_and(|e| e.contains("exited with code 3: broken")),
        "{summary}"
    );
    Ok(())
}

#[test]
fn restore_runs_the_restore_command_and_fails_clearly_without_one() -> anyhow::Result<()> {
    let scratch = Scratch::new()?;
    scratch.write_config(&format!(
        "{}{}",
        command_job(
            "restorable",
            &["sh", "-c", "echo dump"],
            r#"params.restore-command = ["sh", "-c", "echo restored"]"#
        ),
        command_job("backup-only", &["sh", "-c", "echo dump"], "")
    ))?;
    let dir = scratch.dir.path();

    let out = cairn(&["restore", "restorable", "--json"], dir)?;
    out.expect_code(0)?;
    let (id, report) = report_of(&out)?;
    assert_eq!(report["run"]["kind"], json!("restore"), "{out}");
    assert_eq!(report["run"]["status"], json!("succeeded"), "{out}");
    assert_eq!(
        report["result"],
        json!({"exit_code": 0, "stdout_bytes": 9}),
        "{out}"
    );
    let show = cairn(&["runs", "show", &id], dir)?;
    line_with(&show.stdout, &["info", "restored"])?;

    let out = cairn(&["restore", "backup-only"], dir)?;
    out.expect_code(1)?;
    line_with(&out.stderr, &["of job `backup-only`: failed after "])?;
    line_with(
        &out.stderr,
        &[
            "error: ",
            "has no restore-command, so it cannot restore",
            "params.restore-command",
        ],
    )?;
    Ok(())
}

// ---------------------------------------------------------------------------
// runs
// ---------------------------------------------------------------------------

#[test]
fn runs_lists_filters_and_shows_run_history_with_logs() -> anyhow::Result<()> {
    let scratch = Scratch::new()?;
    scratch.write_config(&format!(
        "[state]\npath = \"history/runs.db\"\n\n{}{}",
        command_job("alpha", &["sh", "-c", "echo alpha-line"], ""),
        command_job("beta", &["sh", "-c", "echo beta-line; exit 4"], "")
    ))?;
    let dir = scratch.dir.path();

    let out = cairn(&["runs"], dir)?;
    out.expect_code(0)?;
    assert_eq!(out.stdout.trim(), "no runs yet", "{out}");

    let mut ids = Vec::new();
    for (job, code) in [("alpha", 0), ("beta", 1), ("alpha", 0)] {
        let out = cairn(&["backup", job, "--json"], dir)?;
        out.expect_code(code)?;
        ids.push(report_of(&out)?.0);
        // Runs are ordered by start time (ms); keep them apart.
        std::thread::sleep(Duration::from_millis(5));
    }
    // The configured state path is used, not the default.
    assert!(scratch.path("history/runs.db").is_file());
    assert!(!scratch.path(".cairn/state.db").exists());

    let out = cairn(&["runs"], dir)?;
    out.expect_code(0)?;
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(lines.len(), 3, "{out}");
    for (line, (id, job, status)) in lines.iter().zip([
        (&ids[2], "alpha", "succeeded"),
        (&ids[1], "beta", "failed"),
        (&ids[0], "alpha", "succeeded"),
    ]) {
        assert!(line.starts_with(id.as_str()), "{out}");
        assert!(
            line.contains(job) && line.contains("backup") && line.contains(status),
            "{out}"
        );
    }
    assert!(lines[1].contains("exited with code 4"), "{out}");

    let out = cairn(&["runs", "--json"], dir)?;
    out.expect_code(0)?;
    let runs = out.json()?;
    let listed: Vec<&str> = runs
        .as_array()
        .context("an array")?
        .iter()
        .filter_map(|r| r["id"].as_str())
        .collect();
    assert_eq!(listed, [&ids[2], &ids[1], &ids[0]], "{out}");
    assert_eq!(runs[1]["status"], json!("failed"), "{out}");

    let out = cairn(&["runs", "--job", "alpha", "--json"], dir)?;
    out.expect_code(0)?;
    let alpha = out.json()?;
    let alpha = alpha.as_array().context("an array")?;
    assert_eq!(alpha.len(), 2, "{out}");
    assert!(alpha.iter().all(|r| r["job"] == json!("alpha")), "{out}");

    let out = cairn(&["runs", "--job", "alpha", "--limit", "1"], dir)?;
    out.expect_code(0)?;
    assert_eq!(out.stdout.lines().count(), 1, "{out}");
    assert!(out.stdout.starts_with(ids[2].as_str()), "{out}");

    let out = cairn(&["runs", "show", &ids[0]], dir)?;
    out.expect_code(0)?;
    assert!(
        out.stdout.contains(&format!("run      {}\n", ids[0]))
            && out.stdout.contains("job      alpha\n")
            && out.stdout.contains("kind     backup\n")
            && out.stdout.contains("status   succeeded\n")
            && out.stdout.contains("\nlog:\n"),
        "{out}"
    );
    line_with(&out.stdout, &["info", "alpha-line"])?;
    line_with(&out.stdout, &["backup succeeded"])?;

    let out = cairn(&["runs", "show", &ids[1], "--json"], dir)?;
    out.expect_code(0)?;
    let shown = out.json()?;
    assert_eq!(shown["run"]["id"], json!(ids[1]), "{out}");
    let logs = shown["logs"].as_array().context("logs")?;
    assert!(
        logs.iter().any(|l| l["message"] == json!("beta-line")),
        "{out}"
    );
    assert!(
        logs.iter().any(|l| l["level"] == json!("error")
            && l["message"]
                .as_str()
                .is_some_and(|m| m.contains("exited with code 4"))),
        "{out}"
    );

    let out = cairn(&["runs", "show", "01NOSUCHRUN"], dir)?;
    out.expect_code(2)?;
    line_with(&out.stderr, &["error: ", "no run with id `01NOSUCHRUN`"])?;
    assert!(out.stdout.is_empty(), "{out}");
    Ok(())
}

// ---------------------------------------------------------------------------
// plugin list / inspect
// ---------------------------------------------------------------------------

#[test]
fn plugin_list_shows_the_builtin_modules_and_their_kinds() -> anyhow::Result<()> {
    let scratch = Scratch::new()?;
    let out = cairn(&["plugin", "list"], scratch.dir.path())?;
    out.expect_code(0)?;
    line_with(&out.stdout, &["builtin:command ", " task "])?;
    line_with(&out.stdout, &["builtin:http-request ", " function "])?;

    let out = cairn(&["plugin", "list", "--json"], scratch.dir.path())?;
    out.expect_code(0)?;
    let rows = out.json()?;
    let kind_of = |name: &str| {
        rows.as_array()
            .and_then(|rows| rows.iter().find(|r| r["name"] == json!(name)))
            .map(|r| r["kind"].clone())
    };
    assert_eq!(kind_of("builtin:command"), Some(json!("task")), "{out}");
    assert_eq!(
        kind_of("builtin:http-request"),
        Some(json!("function")),
        "{out}"
    );
    assert_eq!(
        kind_of("builtin:elasticsearch-datadir"),
        Some(json!("pipeline")),
        "{out}"
    );
    Ok(())
}

#[test]
fn plugin_inspect_describes_a_module_with_a_stable_digest() -> anyhow::Result<()> {
    let scratch = Scratch::new()?;
    let dir = scratch.dir.path();
    let out = cairn(
        &["plugin", "inspect", "builtin:http-request", "--json"],
        dir,
    )?;
    out.expect_code(0)?;
    let info = out.json()?;
    assert_eq!(info["kind"], json!("function"), "{out}");
    assert_eq!(info["name"], json!("http-request"), "{out}");
    let sha = info["sha256"].as_str().context("sha256")?;
    assert!(
        sha.len() == 64 && sha.bytes().all(|b| b.is_ascii_hexdigit()),
        "{out}"
    );
    let embedded = cairn::builtins::find("http-request").context("builtin")?;
    assert_eq!(sha, hex::encode(Sha256::digest(embedded.wasm)), "{out}");
    let url = info["params"]
        .as_array()
        .and_then(|ps| ps.iter().find(|p| p["name"] == json!("url")))
        .with_context(|| format!("no `url` param\n{out}"))?;
    assert_eq!(url["required"], json!(true), "{out}");
    assert_eq!(info["needs"]["http"], json!(["{url}"]), "{out}");
    let imports = info["imports"].as_array().context("imports")?;
    assert!(imports.contains(&json!("cairn:plugin/http@0.1.0")), "{out}");

    let again = cairn(
        &["plugin", "inspect", "builtin:http-request", "--json"],
        dir,
    )?;
    again.expect_code(0)?;
    assert_eq!(again.json()?["sha256"], json!(sha), "{again}");

    // A file: its digest is the sha256 of its bytes.
    let guest = support::test_guest();
    let out = cairn(
        &["plugin", "inspect", &guest.display().to_string(), "--json"],
        dir,
    )?;
    out.expect_code(0)?;
    assert_eq!(
        out.json()?["sha256"],
        json!(hex::encode(Sha256::digest(std::fs::read(&guest)?))),
        "{out}"
    );

    let out = cairn(&["plugin", "inspect", "builtin:command"], dir)?;
    out.expect_code(0)?;
    line_with(&out.stdout, &["kind", "task"])?;
    line_with(&out.stdout, &["command", "required"])?;
    Ok(())
}

#[test]
fn plugin_inspect_of_a_file_that_is_not_wasm_fails() -> anyhow::Result<()> {
    let scratch = Scratch::new()?;
    std::fs::write(scratch.path("notes.wasm"), "these are my notes\n")?;
    let out = cairn(&["plugin", "inspect", "notes.wasm"], scratch.dir.path())?;
    out.expect_code(1)?;
    line_with(&out.stderr, &["notes.wasm", "not a WebAssembly module"])?;
    assert!(out.stdout.is_empty(), "{out}");
    Ok(())
}

// ---------------------------------------------------------------------------
// Plug-ins built with the SDK
// ---------------------------------------------------------------------------

/// Cargo builds of wasm crates share `target/e2e-wasm`; one at a time.
static WASM_BUILDS: Mutex<()> = Mutex::new(());

/// Where the wasm builds of these tests go (shared, to reuse compiled deps).
fn e2e_wasm_target_dir() -> PathBuf {
    support::workspace_root().join("target").join("e2e-wasm")
}

/// Run `cargo ARGS` in `dir` for wasm32-wasip2, without the outer build's
/// flags and target directory leaking in.
fn cargo_wasm(args: &[&str], dir: &Path, target_dir: &Path) -> anyhow::Result<()> {
    let _one_at_a_time = WASM_BUILDS.lock().unwrap_or_else(|e| e.into_inner());
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut command = std::process::Command::new(cargo);
    command
        .args(args)
        .current_dir(dir)
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env_remove("RUSTC_WORKSPACE_WRAPPER")
        .env_remove("CARGO_BUILD_TARGET")
        .env("CARGO_TARGET_DIR", target_dir);
    let output = support::run_with_timeout(command, Duration::from_secs(1200))?;
    anyhow::ensure!(
        output.status.success(),
        "`cargo {}` in {} failed ({}):\n{}",
        args.join(" "),
        dir.display(),
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    Ok(())
}

#[test]
fn sdk_example_task_builds_and_runs_under_cairn_backup() -> anyhow::Result<()> {
    let target_dir = e2e_wasm_target_dir();
    let wasm = target_dir.join("wasm32-wasip2/release/examples/hello_task.wasm");
    cargo_wasm(
        &[
            "build",
            "-p",
            "cairn-guest",
            "--example",
            "hello-task",
            "--release",
            "--target",
            "wasm32-wasip2",
        ],
        &support::workspace_root(),
        &target_dir,
    )?;
    anyhow::ensure!(wasm.is_file(), "{} was not built", wasm.display());

    let scratch = Scratch::new()?;
    scratch.write_config(&format!(
        "[jobs.greet]\ntask = {:?}\nparams = {{ name = \"Ada\" }}\n",
        wasm.display().to_string()
    ))?;
    let dir = scratch.dir.path();
    cairn(&["validate"], dir)?.expect_code(0)?;

    let out = cairn(&["backup", "greet", "--json"], dir)?;
    out.expect_code(0)?;
    let (id, report) = report_of(&out)?;
    assert_eq!(report["run"]["status"], json!("succeeded"), "{out}");
    assert_eq!(report["result"], json!({"greeting": "hello, Ada"}), "{out}");
    let show = cairn(&["runs", "show", &id], dir)?;
    line_with(&show.stdout, &["info", "hello, Ada", "job=greet"])?;

    let out = cairn(&["backup", "greet", "--set", "excited=true", "--json"], dir)?;
    out.expect_code(0)?;
    assert_eq!(
        out.json()?["result"],
        json!({"greeting": "hello, Ada!"}),
        "{out}"
    );
    Ok(())
}

#[test]
fn plugin_new_scaffolds_a_task_that_builds_and_runs_under_cairn_backup() -> anyhow::Result<()> {
    let scratch = Scratch::new()?;
    let dir = scratch.dir.path();
    let crate_dir = scratch.path("my-task");
    let out = cairn(
        &[
            "plugin",
            "new",
            "my-task",
            "--path",
            &crate_dir.display().to_string(),
        ],
        dir,
    )?;
    out.expect_code(0)?;
    line_with(&out.stdout, &["created task crate `my-task`"])?;
    for file in ["Cargo.toml", "src/lib.rs", "README.md", ".gitignore"] {
        line_with(&out.stdout, &[&crate_dir.join(file).display().to_string()])?;
        assert!(crate_dir.join(file).is_file(), "{file} missing\n{out}");
    }
    line_with(
        &out.stdout,
        &["cargo build --release --target wasm32-wasip2"],
    )?;

    let target_dir = e2e_wasm_target_dir();
    let wasm = target_dir.join("wasm32-wasip2/release/my_task.wasm");
    // A previous run's output must not make this one pass.
    let _ = std::fs::remove_file(&wasm);
    cargo_wasm(
        &["build", "--release", "--target", "wasm32-wasip2"],
        &crate_dir,
        &target_dir,
    )?;
    anyhow::ensure!(wasm.is_file(), "{} was not built", wasm.display());

    scratch.write_config(&format!(
        "[jobs.my-task]\ntask = {:?}\nparams = {{ name = \"world\" }}\n",
        wasm.display().to_string()
    ))?;
    cairn(&["validate"], dir)?.expect_code(0)?;
    let out = cairn(&["backup", "my-task", "--json"], dir)?;
    out.expect_code(0)?;
    let (_, report) = report_of(&out)?;
    assert_eq!(
        report["result"],
        json!({"greeting": "hello, world"}),
        "{out}"
    );
    let out = cairn(&["restore", "my-task", "--json"], dir)?;
    out.expect_code(0)?;
    assert_eq!(
        out.json()?["result"],
        json!({"restored": "(none)"}),
        "{out}"
    );
    Ok(())
}

#[test]
fn plugin_new_refuses_a_non_empty_directory_and_an_invalid_name() -> anyhow::Result<()> {
    let scratch = Scratch::new()?;
    let dir = scratch.dir.path();
    std::fs::create_dir(scratch.path("busy"))?;
    std::fs::write(scratch.path("busy/keep.txt"), "mine")?;
    let out = cairn(&["plugin", "new", "my-task", "--path", "busy"], dir)?;
    out.expect_code(2)?;
    line_with(
        &out.stderr,
        &["cannot create task `my-task` in busy", "is not empty"],
    )?;
    assert_eq!(std::fs::read_dir(scratch.path("busy"))?.count(), 1);
    assert_eq!(
        std::fs::read_to_string(scratch.path("busy/keep.txt"))?,
        "mine"
    );

    let out = cairn(&["plugin", "new", "My_Task"], dir)?;
    out.expect_code(2)?;
    line_with(
        &out.stderr,
        &[
            "invalid task name `My_Task`",
            "lowercase letters, digits and `-`",
        ],
    )?;
    assert!(!scratch.path("My_Task").exists());
    Ok(())
}

// ---------------------------------------------------------------------------
// summaries, snapshots and ls
// ---------------------------------------------------------------------------

#[test]
fn a_backup_ends_with_a_restic_like_summary_and_ls_lists_its_tree() -> anyhow::Result<()> {
    let scratch = Scratch::new()?;
    let dir = scratch.dir.path();
    let src = scratch.path("data");
    std::fs::create_dir_all(src.join("sub"))?;
    std::fs::write(src.join("a.txt"), "hello")?;
    std::fs::write(src.join("sub/b.txt"), "world!")?;
    scratch.write_config(&format!(
        "[repository]\npath = \"repo\"\npassword-env = \"CAIRN_TEST_PASSWORD\"\n\n\
         [jobs.files]\ntask = \"builtin:directory\"\nparams = {{ paths = [{src:?}] }}\n\n\
         [jobs.files.allow]\npaths = {{ {src:?} = \"read\" }}\n",
        src = src.display().to_string()
    ))?;
    let env = [("CAIRN_TEST_PASSWORD", "pw"), ("CAIRN_LOG", "")];

    let out = cairn_with_env(&["backup", "files"], dir, &env)?;
    out.expect_code(0)?;
    line_with(
        &out.stdout,
        &["Files:", " 2 new,", " 0 changed,", " 0 unchanged"],
    )?;
    line_with(&out.stdout, &["Added to the repository: "])?;
    line_with(&out.stdout, &["processed 2 files, 11 B in "])?;
    let saved = line_with(&out.stdout, &["snapshot ", " saved"])?;
    assert_eq!(saved.len(), "snapshot  saved".len() + 64, "{out}");
    assert!(!out.stderr.contains("INFO"), "quiet by default: {out}");
    // Not a terminal: the progress is one plain line at the end.
    line_with(&out.stderr, &["files: backup "])?;

    // Nothing changed: everything is unchanged, little is added.
    let out = cairn_with_env(&["backup", "files"], dir, &env)?;
    out.expect_code(0)?;
    line_with(
        &out.stdout,
        &["Files:", " 0 new,", " 0 changed,", " 2 unchanged"],
    )?;

    // One file changed; --json keeps exact values.
    std::fs::write(src.join("a.txt"), "hello again")?;
    let out = cairn_with_env(&["backup", "files", "--json"], dir, &env)?;
    out.expect_code(0)?;
    let summary = out.json()?;
    assert_eq!(summary["message_type"], json!("summary"), "{out}");
    assert_eq!(summary["status"], json!("succeeded"), "{out}");
    assert_eq!(summary["files_changed"], json!(1), "{out}");
    assert_eq!(summary["files_unmodified"], json!(1), "{out}");
    assert_eq!(summary["total_bytes_processed"], json!(17), "{out}");
    assert!(
        out.stdout
            .lines()
            .any(|l| l.contains(r#""message_type":"status""#)),
        "status messages: {out}"
    );

    // snapshots: size and tags, local time to the second.
    let out = cairn_with_env(&["snapshots", "files"], dir, &env)?;
    out.expect_code(0)?;
    line_with(&out.stdout, &["ID", "Time", "Size", "Tags"])?;
    line_with(&out.stdout, &["17 B", "task:directory run:"])?;
    line_with(&out.stdout, &["3 snapshots"])?;

    // ls: the latest snapshot's tree.
    let out = cairn_with_env(&["ls", "latest", "--job", "files"], dir, &env)?;
    out.expect_code(0)?;
    line_with(&out.stdout, &["-rw", "11 B", "/a.txt"])?;
    line_with(&out.stdout, &["drwx", "/sub"])?;
    let out = cairn_with_env(&["ls", "latest", "--job", "files", "--json"], dir, &env)?;
    out.expect_code(0)?;
    let entries: Vec<Value> = out
        .stdout
        .lines()
        .map(serde_json::from_str)
        .collect::<Result<_, _>>()?;
    let b = entries
        .iter()
        .find(|e| {
            e["path"]
                .as_str()
                .is_some_and(|p| p.ends_with("/sub/b.txt"))
        })
        .with_context(|| format!("no sub/b.txt in {out}"))?;
    assert_eq!(b["type"], json!("file"));
    assert_eq!(b["size"], json!(6));
    // ... and only under one path.
    let artifact = b["path"]
        .as_str()
        .unwrap_or_default()
        .split('/')
        .nth(1)
        .unwrap_or_default()
        .to_owned();
    let out = cairn_with_env(
        &["ls", "latest", "--job", "files", &format!("{artifact}/sub")],
        dir,
        &env,
    )?;
    out.expect_code(0)?;
    assert!(!out.stdout.contains("a.txt"), "{out}");
    line_with(&out.stdout, &["/sub/b.txt"])?;
    Ok(())
}
