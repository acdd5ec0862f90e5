//! The sandbox: grants, limits and faults of guests, through the library.
//!
//! Every test runs the compiled test guest (`tasks/testing/test-guest`) in a
//! real wasmtime runtime, against a loopback [`TestServer`] or real child
//! processes, and checks what the run reports: the error names what was asked
//! and which grant is missing, limits stop the guest quickly, and a stopped or
//! trapped guest leaves nothing behind (no processes, a usable runner).

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use cairn::runner::{RunReport, Runner};
use cairn::state::{LogLine, RunStatus};
use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};

use crate::support::{self, Scratch, TestServer, backup, run_error};

/// A job running the test guest: `limits` lines (`timeout = …`), then a
/// `[jobs.NAME.allow]` table with the `allow` lines.
fn job(name: &str, limits: &str, allow: &str) -> String {
    support::guest_job(name, &format!("{limits}\n[jobs.{name}.allow]\n{allow}"))
}

/// A TOML string literal.
fn toml_str(text: &str) -> String {
    format!("{text:?}")
}

/// Panic with the whole text unless it contains every needle.
#[track_caller]
fn assert_contains(text: &str, needles: &[&str]) {
    for needle in needles {
        assert!(text.contains(needle), "expected {needle:?} in:\n  {text}");
    }
}

/// The result of a run that must have succeeded.
#[track_caller]
fn succeeded(report: &RunReport) -> Value {
    assert!(
        report.succeeded(),
        "expected the run of `{}` to succeed, it ended {:?}: {:?}",
        report.run.job,
        report.run.status,
        report.run.error
    );
    report.result.clone().expect("a succeeded run has a result")
}

/// The stored log of a run.
fn logs(runner: &Runner, report: &RunReport) -> anyhow::Result<Vec<LogLine>> {
    Ok(runner.store().logs(&report.run.id)?)
}

/// A value no other test (or process) uses.
fn unique_value(what: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!("{what}-{}-{nanos:x}", std::process::id())
}

/// Processes whose command line (arguments joined by spaces) contains
/// `needle`, as (pid, command line). Zombies have no command line.
fn processes_matching(needle: &str) -> Vec<(i32, String)> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|entry| {
            let pid: i32 = entry.file_name().to_str()?.parse().ok()?;
            let raw = std::fs::read(entry.path().join("cmdline")).ok()?;
            let cmdline = raw
                .split(|b| *b == 0)
                .filter(|arg| !arg.is_empty())
                .map(String::from_utf8_lossy)
                .collect::<Vec<_>>()
                .join(" ");
            cmdline.contains(needle).then_some((pid, cmdline))
        })
        .collect()
}

/// Wait up to `grace` for every process matching `needle` to be gone. Any
/// left (started by this test through the guest) are killed so a failing
/// test does not leak them, and returned.
async fn leftover_processes(needle: &str, grace: Duration) -> Vec<(i32, String)> {
    let deadline = Instant::now() + grace;
    loop {
        let found = processes_matching(needle);
        if found.is_empty() || Instant::now() >= deadline {
            for (pid, _) in &found {
                // SAFETY: kill(2) on a pid of a process this test started.
                unsafe {
                    libc::kill(*pid, libc::SIGKILL);
                }
            }
            return found;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

// ---------------------------------------------------------------------------
// http

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_to_an_origin_not_granted_is_denied_and_a_granted_origin_is_reached()
-> anyhow::Result<()> {
    let server = TestServer::start().await?;
    let scratch = Scratch::new()?;
    let runner = scratch.runner(
        &[
            job("none", "", ""),
            job("other", "", r#"http = ["http://127.0.0.1:1"]"#),
            job(
                "granted",
                "",
                &format!("http = [{}]", toml_str(&server.url)),
            ),
        ]
        .concat(),
    )?;
    let params = json!({"action": "http", "url": format!("{}/echo", server.url)});

    let error = run_error(&backup(&runner, "none", params.clone()).await?)?;
    assert_contains(
        &error,
        &[
            "backup of job `none`: denied: ",
            &format!("http to {} is not granted to job `none`", server.url),
            "`allow.http` grants none",
        ],
    );
    let error = run_error(&backup(&runner, "other", params.clone()).await?)?;
    assert_contains(
        &error,
        &[
            "denied: ",
            &format!("http to {} is not granted to job `other`", server.url),
            "`allow.http` grants only http://127.0.0.1:1",
        ],
    );
    assert!(
        server.seen().is_empty(),
        "a denied request reached the server: {:?}",
        server.seen()
    );

    let result = succeeded(&backup(&runner, "granted", params).await?);
    assert_eq!(result["status"], 200);
    let body: Value = serde_json::from_str(result["body"].as_str().context("body is text")?)?;
    assert_eq!(body["method"], "GET");
    let seen = server.seen();
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert_eq!(seen[0].request, "GET /echo");
    Ok(())
}

/// `http.start`: requests on their way together, at most 8 per store (dropping
/// one frees its place), and checked against the grant as `send` is.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn started_requests_travel_together_up_to_eight_and_obey_the_grant() -> anyhow::Result<()> {
    let server = TestServer::start().await?;
    let scratch = Scratch::new()?;
    let grant = format!("http = [{}]", toml_str(&server.url));
    let runner = scratch.runner(&job("start", "", &grant))?;
    let slow = |n: usize| vec![format!("{}/slow?ms=500", server.url); n];

    // four 500 ms requests answered together, in the order started
    let result = succeeded(
        &backup(
            &runner,
            "start",
            json!({"action": "http-start", "urls": slow(4)}),
        )
        .await?,
    );
    assert_eq!(result["statuses"], json!([200, 200, 200, 200]));
    let elapsed = result["elapsed_ms"].as_u64().context("elapsed_ms")?;
    assert!(
        (500..1500).contains(&elapsed),
        "4 × 500 ms requests took {elapsed} ms: not sent together"
    );

    // eight dropped unanswered free their places for eight more
    let result = succeeded(
        &backup(
            &runner,
            "start",
            json!({"action": "steps", "steps": [
                {"action": "http-start", "urls": slow(8), "wait": false},
                {"action": "http-start", "urls": slow(8)},
            ]}),
        )
        .await?,
    );
    assert_eq!(result["results"][1]["statuses"], json!(vec![200; 8]));

    let error = run_error(
        &backup(
            &runner,
            "start",
            json!({"action": "http-start", "urls": slow(9)}),
        )
        .await?,
    )?;
    assert_contains(
        &error,
        &[
            "limit: ",
            "more than 8 requests started and not yet dropped",
        ],
    );

    let error = run_error(
        &backup(
            &runner,
            "start",
            json!({"action": "http-start", "urls": ["http://127.0.0.1:1/x"]}),
        )
        .await?,
    )?;
    assert_contains(
        &error,
        &[
            "denied: ",
            "http to http://127.0.0.1:1 is not granted to job `start`",
        ],
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redirects_are_followed_only_to_granted_origins() -> anyhow::Result<()> {
    let first = TestServer::start().await?;
    let second = TestServer::start().await?;
    let scratch = Scratch::new()?;
    let runner = scratch.runner(
        &[
            job(
                "first-only",
                "",
                &format!("http = [{}]", toml_str(&first.url)),
            ),
            job(
                "both",
                "",
                &format!(
                    "http = [{}, {}]",
                    toml_str(&first.url),
                    toml_str(&second.url)
                ),
            ),
        ]
        .concat(),
    )?;
    let params = json!({
        "action": "http",
        "url": format!("{}/redirect?to={}/echo", first.url, second.url),
    });

    let error = run_error(&backup(&runner, "first-only", params.clone()).await?)?;
    assert_contains(
        &error,
        &[
            "denied: redirect from ",
            "refused",
            &format!("http to {} is not granted to job `first-only`", second.url),
            &format!("`allow.http` grants only {}", first.url),
        ],
    );
    assert!(
        second.seen().is_empty(),
        "the refused redirect reached the other origin: {:?}",
        second.seen()
    );

    let result = succeeded(&backup(&runner, "both", params).await?);
    assert_eq!(result["status"], 200);
    let seen = second.seen();
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert_eq!(seen[0].request, "GET /echo");
    Ok(())
}

// ---------------------------------------------------------------------------
// secrets

/// A job config injecting secret `API_TOKEN` (from environment variable
/// `var`) into requests to `server`, and one that is not granted it.
fn header_secret_config(var: &str, server: &TestServer) -> String {
    let http = format!("http = [{}]", toml_str(&server.url));
    [
        format!("[secrets.API_TOKEN]\nenv = {}\n\n", toml_str(var)),
        job(
            "injects",
            "",
            &format!(
                "{http}\nsecrets.API_TOKEN = {{ header = \"Authorization\", origins = [{}] }}\n\
                 functions = [\"http-request\"]",
                toml_str(&server.url)
            ),
        ),
        job("ungranted", "", &http),
    ]
    .concat()
}

/// Set environment variable `var` to a fresh unique value and return it.
fn set_unique_env(var: &str) -> String {
    let value = unique_value("s3cret");
    // SAFETY: the variable's name is used by this test alone; nothing else
    // in the process reads or writes it.
    unsafe { std::env::set_var(var, &value) };
    value
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn header_secret_reaches_the_server_but_not_the_log_or_the_error() -> anyhow::Result<()> {
    let var = "CAIRN_E2E_SANDBOX_HEADER_TOKEN";
    let secret = set_unique_env(var);
    let server = TestServer::start().await?;
    let scratch = Scratch::new()?;
    let runner = scratch.runner(&header_secret_config(var, &server))?;
    let echo = format!("{}/echo", server.url);
    let headers = json!({"authorization": "Bearer {{secret:API_TOKEN}}", "x-plain": "visible"});

    let report = backup(
        &runner,
        "injects",
        json!({"action": "http", "url": echo, "headers": headers}),
    )
    .await?;
    succeeded(&report);
    let seen = server.seen();
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert_eq!(seen[0].headers["authorization"], format!("Bearer {secret}"));
    assert_eq!(seen[0].headers["x-plain"], "visible");
    for line in logs(&runner, &report)? {
        assert!(
            !line.message.contains(&secret)
                && !line.fields.iter().any(|(_, v)| v.contains(&secret)),
            "the secret is in the run log: {line:?}"
        );
    }

    // The `http-request` function quotes the body of an unexpected response
    // in its error; the server echoes the header back, so the error would
    // carry the secret if the host did not redact it.
    let report = backup(
        &runner,
        "injects",
        json!({
            "action": "call",
            "function": "http-request",
            "params": {"url": echo, "headers": headers, "expect": 500},
        }),
    )
    .await?;
    let error = run_error(&report)?;
    assert_contains(&error, &["returned 200, expected 500", "Bearer ***"]);
    assert!(
        !error.contains(&secret),
        "the secret is in the error: {error}"
    );
    let stored = runner.store().run(&report.run.id)?;
    assert!(
        !stored.error.unwrap_or_default().contains(&secret),
        "the secret is in the stored error"
    );
    for line in logs(&runner, &report)? {
        assert!(
            !line.message.contains(&secret),
            "the secret is in the run log: {line:?}"
        );
    }
    assert_eq!(server.seen().len(), 2);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn header_secret_echoed_back_is_redacted_from_the_run_result() -> anyhow::Result<()> {
    let var = "CAIRN_E2E_SANDBOX_ECHOED_TOKEN";
    let secret = set_unique_env(var);
    let server = TestServer::start().await?;
    let scratch = Scratch::new()?;
    let runner = scratch.runner(&header_secret_config(var, &server))?;

    // The server echoes the request headers in its body, which the guest
    // returns as its result: run history must not keep the secret.
    let report = backup(
        &runner,
        "injects",
        json!({
            "action": "http",
            "url": format!("{}/echo", server.url),
            "headers": {"authorization": "Bearer {{secret:API_TOKEN}}"},
        }),
    )
    .await?;
    let result = succeeded(&report);
    assert_eq!(
        server.seen()[0].headers["authorization"],
        format!("Bearer {secret}")
    );
    assert!(
        !result.to_string().contains(&secret),
        "the secret is in the reported result: {result}"
    );
    let stored = runner.store().run(&report.run.id)?;
    let stored_result = stored.result.unwrap_or_default();
    assert!(
        !stored_result.contains(&secret),
        "the secret is in the stored result: {stored_result}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn placeholder_for_a_secret_not_granted_is_denied_before_sending() -> anyhow::Result<()> {
    let var = "CAIRN_E2E_SANDBOX_UNGRANTED_TOKEN";
    set_unique_env(var);
    let server = TestServer::start().await?;
    let scratch = Scratch::new()?;
    let runner = scratch.runner(&header_secret_config(var, &server))?;

    let error = run_error(
        &backup(
            &runner,
            "ungranted",
            json!({
                "action": "http",
                "url": format!("{}/echo", server.url),
                "headers": {"authorization": "Bearer {{secret:API_TOKEN}}"},
            }),
        )
        .await?,
    )?;
    assert_contains(
        &error,
        &[
            "backup of job `ungranted`: denied: ",
            "secret `API_TOKEN` is not granted to job `ungranted`",
            "`allow.secrets.API_TOKEN`",
        ],
    );
    assert!(server.seen().is_empty(), "{:?}", server.seen());
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reading_a_secret_value_needs_readable_secrets() -> anyhow::Result<()> {
    let scratch = Scratch::new()?;
    let password = unique_value("db-password");
    let file = scratch.path("db-password");
    std::fs::write(&file, format!("{password}\n"))?;
    let runner = scratch.runner(
        &[
            format!(
                "[secrets.DB_PASSWORD]\nfile = {}\n\n",
                toml_str(&file.display().to_string())
            ),
            job("none", "", ""),
            job(
                "injector",
                "",
                "commands = [\"sh\"]\nsecrets.DB_PASSWORD = { env = \"PGPASSWORD\", programs = [\"sh\"] }",
            ),
            job("reader", "", r#"readable-secrets = ["DB_PASSWORD"]"#),
        ]
        .concat(),
    )?;
    let params = json!({"action": "secret", "name": "DB_PASSWORD", "expect": password});

    for job in ["none", "injector"] {
        let error = run_error(&backup(&runner, job, params.clone()).await?)?;
        assert_contains(
            &error,
            &[
                &format!("backup of job `{job}`: denied: "),
                &format!("reading secret `DB_PASSWORD` is not granted to job `{job}`"),
                "`readable = true`",
            ],
        );
        assert!(!error.contains(&password));
    }

    let result = succeeded(&backup(&runner, "reader", params).await?);
    assert_eq!(
        result["matches"], true,
        "the guest did not read the secret's value: {result}"
    );
    Ok(())
}

// ---------------------------------------------------------------------------
// shell

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn programs_not_granted_are_denied_and_granted_but_missing_ones_are_not_found()
-> anyhow::Result<()> {
    let scratch = Scratch::new()?;
    let missing = "cairn-no-such-program-xyz";
    let runner = scratch.runner(
        &[
            job("none", "", ""),
            job("only-sh", "", r#"commands = ["sh"]"#),
            job(
                "missing",
                "",
                &format!("commands = [{}]", toml_str(missing)),
            ),
        ]
        .concat(),
    )?;
    let run = |program: &str| json!({"action": "run", "program": program, "args": ["-c", "true"]});

    let error = run_error(&backup(&runner, "none", run("sh")).await?)?;
    assert_contains(
        &error,
        &[
            "backup of job `none`: denied: ",
            "program `sh` is not granted to job `none`",
            "`allow.commands` grants none",
        ],
    );
    let error = run_error(&backup(&runner, "only-sh", run("bash")).await?)?;
    assert_contains(
        &error,
        &[
            "denied: ",
            "program `bash` is not granted to job `only-sh`",
            "`allow.commands` grants only sh",
        ],
    );

    let error = run_error(&backup(&runner, "missing", run(missing)).await?)?;
    assert_contains(
        &error,
        &[
            "backup of job `missing`: not found: ",
            &format!("program `{missing}` is granted to job `missing` but is not installed"),
        ],
    );
    assert!(!error.contains("denied"), "{error}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn granted_program_reports_its_exit_code_and_outputs() -> anyhow::Result<()> {
    let scratch = Scratch::new()?;
    let runner = scratch.runner(&job("shell", "", r#"commands = ["sh"]"#))?;
    let result = succeeded(
        &backup(
            &runner,
            "shell",
            json!({
                "action": "run",
                "program": "sh",
                "args": ["-c", "echo hi; echo err >&2; exit 3"],
            }),
        )
        .await?,
    );
    assert_eq!(
        result,
        json!({"exit_code": 3, "stdout": "hi\n", "stderr": "err\n"})
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commands_start_with_the_base_and_the_declared_environment_only() -> anyhow::Result<()> {
    // The host itself has HOME, so its absence below means it was cleared.
    assert!(std::env::var_os("HOME").is_some());
    let scratch = Scratch::new()?;
    let runner = scratch.runner(&job(
        "shell",
        "",
        r#"commands = { sh = { env = ["CAIRN_GUEST_VAR"] } }"#,
    ))?;
    let result = succeeded(
        &backup(
            &runner,
            "shell",
            json!({
                "action": "run",
                "program": "sh",
                "args": ["-c", "env"],
                "env": {"CAIRN_GUEST_VAR": "from the guest"},
            }),
        )
        .await?,
    );
    assert_eq!(result["exit_code"], 0, "{result}");
    let stdout = result["stdout"].as_str().context("stdout is text")?;
    let vars: Vec<&str> = stdout.lines().collect();
    assert!(vars.contains(&"CAIRN_GUEST_VAR=from the guest"), "{vars:?}");
    // The host sets PATH and LANG, the shell exports PWD (and may add
    // SHLVL and `_`); nothing else may be there.
    for var in &vars {
        assert!(
            ["CAIRN_GUEST_VAR=", "PWD=", "PATH=", "LANG=", "SHLVL=", "_="]
                .iter()
                .any(|p| var.starts_with(p)),
            "unexpected variable in the command's environment: {var} (all: {vars:?})"
        );
    }
    assert!(vars.contains(&"LANG=C.UTF-8"), "{vars:?}");
    assert!(!vars.iter().any(|v| v.starts_with("HOME=")), "{vars:?}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn command_timeout_kills_its_whole_process_group() -> anyhow::Result<()> {
    let scratch = Scratch::new()?;
    let runner = Arc::new(scratch.runner(&job("shell", "", r#"commands = ["sh"]"#))?);
    let params = json!({
        "action": "run",
        "program": "sh",
        "args": ["-c", "sleep 31337 & sleep 31338; echo done"],
        "timeout_ms": 2000,
    });
    let started = Instant::now();
    let run = tokio::spawn({
        let runner = runner.clone();
        async move { backup(&runner, "shell", params).await }
    });
    // Both sleeps (the background one and the foreground one) really run.
    let mut both_running = false;
    let deadline = Instant::now() + Duration::from_secs(15);
    while !both_running && !run.is_finished() && Instant::now() < deadline {
        let found = processes_matching("sleep 3133");
        both_running = ["sleep 31337", "sleep 31338"]
            .iter()
            .all(|c| found.iter().any(|(_, cmdline)| cmdline == c));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let report = run.await??;
    let elapsed = started.elapsed();
    let error = run_error(&report)?;
    assert_contains(
        &error,
        &[
            "backup of job `shell`: limit: ",
            "`sh` did not finish within 2s",
            "it was killed with every process it started",
        ],
    );
    assert!(elapsed < Duration::from_secs(15), "took {elapsed:?}");
    let left = leftover_processes("sleep 3133", Duration::from_secs(2)).await;
    assert!(left.is_empty(), "processes of the group survived: {left:?}");
    assert!(
        both_running,
        "the sleeps were never seen running, so the test proved nothing"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_timeout_fires_while_the_guest_waits_on_a_command() -> anyhow::Result<()> {
    let scratch = Scratch::new()?;
    let runner = scratch.runner(&job(
        "sleeper",
        r#"timeout = "1s""#,
        r#"commands = ["sleep"]"#,
    ))?;
    let started = Instant::now();
    let report = backup(
        &runner,
        "sleeper",
        json!({"action": "run", "program": "sleep", "args": ["31339"]}),
    )
    .await?;
    let elapsed = started.elapsed();
    let error = run_error(&report)?;
    assert_contains(
        &error,
        &["backup of job `sleeper`: run exceeded its timeout of 1s and was stopped"],
    );
    assert!(elapsed < Duration::from_secs(10), "took {elapsed:?}");
    let left = leftover_processes("sleep 31339", Duration::from_secs(2)).await;
    assert!(left.is_empty(), "the command outlived its run: {left:?}");
    Ok(())
}

// ---------------------------------------------------------------------------
// limits

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn looping_guest_is_stopped_by_its_timeout_while_other_runs_are_served() -> anyhow::Result<()>
{
    let scratch = Scratch::new()?;
    let runner = Arc::new(
        scratch.runner(
            &[
                job("spin", r#"timeout = "2s""#, ""),
                // Five runs of `quick` go at once: the job must allow overlapping runs.
                job("quick", r#"concurrency = "allow""#, ""),
            ]
            .concat(),
        )?,
    );
    // Compile (or fetch from the cache) before the clock starts.
    succeeded(&backup(&runner, "quick", json!({"action": "ok"})).await?);

    let started = Instant::now();
    let spin = tokio::spawn({
        let runner = runner.clone();
        async move {
            let report = backup(&runner, "spin", json!({"action": "loop"})).await;
            (report, Instant::now())
        }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let quick = futures::future::join_all((0..5).map(|i| {
        let runner = runner.clone();
        async move { backup(&runner, "quick", json!({"action": "ok", "n": i})).await }
    }))
    .await;
    let quick_done = Instant::now();
    for report in quick {
        let report = report?;
        let result = succeeded(&report);
        assert_eq!(result["echo"]["action"], "ok");
    }

    let (report, spin_done) = spin.await?;
    let error = run_error(&report?)?;
    assert_contains(
        &error,
        &["backup of job `spin`: run exceeded its timeout of 2s and was stopped"],
    );
    assert!(
        quick_done < spin_done,
        "the quick runs finished {:?} after the looping run ended: they were not served while it looped",
        quick_done - spin_done
    );
    let elapsed = spin_done - started;
    assert!(
        elapsed >= Duration::from_secs(2) && elapsed < Duration::from_secs(15),
        "the looping run ended after {elapsed:?}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_backup_of_a_running_job_is_refused_unless_the_job_allows_overlap()
-> anyhow::Result<()> {
    let scratch = Scratch::new()?;
    let runner = Arc::new(
        scratch.runner(
            &[
                job("solo", "", ""),
                job("many", r#"concurrency = "allow""#, ""),
            ]
            .concat(),
        )?,
    );
    for name in ["solo", "many"] {
        // Compile (or fetch from the cache) first, so the sleeping run is
        // surely going when the second one asks.
        succeeded(&backup(&runner, name, json!({"action": "ok"})).await?);
        let first = tokio::spawn({
            let runner = runner.clone();
            async move { backup(&runner, name, json!({"action": "sleep", "ms": 1500})).await }
        });
        tokio::time::sleep(Duration::from_millis(400)).await;
        let second = backup(&runner, name, json!({"action": "ok"})).await;
        let first = first.await??;
        succeeded(&first);
        match (name, second) {
            ("solo", Err(e)) => assert_contains(
                &format!("{e:#}"),
                &[
                    "job `solo` is already running",
                    "set `concurrency = \"allow\"` on the job",
                ],
            ),
            ("solo", Ok(report)) => panic!(
                "a second backup of `solo` ran beside the first: {:?}",
                report.run.status
            ),
            (_, second) => {
                succeeded(&second?);
            }
        }
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn guest_allocating_past_its_memory_limit_is_stopped() -> anyhow::Result<()> {
    let scratch = Scratch::new()?;
    let runner = scratch.runner(&job("small", r#"memory = "64MiB""#, ""))?;
    let error =
        run_error(&backup(&runner, "small", json!({"action": "alloc", "mib": 200})).await?)?;
    assert_contains(
        &error,
        &[
            "backup of job `small`: module exceeded its memory limit of 64 MiB",
            "raise the job's `memory`",
        ],
    );
    // The runner is unharmed.
    succeeded(&backup(&runner, "small", json!({"action": "ok"})).await?);
    // And a guest within the limit allocates fine.
    let result = succeeded(&backup(&runner, "small", json!({"action": "alloc", "mib": 16})).await?);
    assert_eq!(result["allocated_mib"], 16);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn guest_flooding_stdout_is_stopped_at_the_output_limit() -> anyhow::Result<()> {
    let scratch = Scratch::new()?;
    let runner = scratch.runner(
        &[
            job("default-cap", "", ""),
            job("small-cap", r#"output-limit = "256KiB""#, ""),
        ]
        .concat(),
    )?;
    let flood = json!({"action": "stdout", "bytes": 1u64 << 30});
    for (job, cap) in [("default-cap", "1 MiB"), ("small-cap", "256 KiB")] {
        let started = Instant::now();
        let report = backup(&runner, job, flood.clone()).await?;
        let elapsed = started.elapsed();
        let error = run_error(&report)?;
        assert_contains(
            &error,
            &[
                &format!("backup of job `{job}`: module wrote more than {cap} to stdout"),
                "output-limit",
                "the run was stopped",
            ],
        );
        // Writing the whole GiB through the capture would take far longer.
        assert!(elapsed < Duration::from_secs(10), "{job} took {elapsed:?}");
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn guest_sleeping_past_its_timeout_is_stopped() -> anyhow::Result<()> {
    let scratch = Scratch::new()?;
    let runner = scratch.runner(&job("sleepy", r#"timeout = "1s""#, ""))?;
    let started = Instant::now();
    let report = backup(&runner, "sleepy", json!({"action": "sleep", "ms": 60_000})).await?;
    let elapsed = started.elapsed();
    assert_eq!(report.run.status, RunStatus::Failed);
    assert_contains(
        &run_error(&report)?,
        &["backup of job `sleepy`: run exceeded its timeout of 1s and was stopped"],
    );
    assert!(elapsed < Duration::from_secs(10), "took {elapsed:?}");
    Ok(())
}

// ---------------------------------------------------------------------------
// faults, output and state

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn panicking_guest_reports_a_trap_with_its_panic_message() -> anyhow::Result<()> {
    let scratch = Scratch::new()?;
    let runner = scratch.runner(&job("panics", "", ""))?;
    let error = run_error(&backup(&runner, "panics", json!({"action": "panic"})).await?)?;
    assert_contains(
        &error,
        &[
            "backup of job `panics`: module trapped: ",
            "its last stderr",
            "test-guest asked to panic",
        ],
    );
    // A trapped store is dropped; the runner goes on.
    succeeded(&backup(&runner, "panics", json!({"action": "ok"})).await?);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn guest_stdout_and_stderr_lines_land_in_the_run_log() -> anyhow::Result<()> {
    let scratch = Scratch::new()?;
    let runner = scratch.runner(&job("printer", "", ""))?;
    let report = backup(
        &runner,
        "printer",
        json!({"action": "print", "lines": ["first line", "second line"]}),
    )
    .await?;
    assert_eq!(succeeded(&report)["printed"], 2);
    let lines: Vec<(String, String)> = logs(&runner, &report)?
        .into_iter()
        .map(|l| (l.level, l.message))
        .collect();
    let has = |level: &str, message: &str| lines.iter().any(|(l, m)| l == level && m == message);
    for line in ["first line", "second line"] {
        assert!(has("info", &format!("stdout: {line}")), "{lines:#?}");
        assert!(
            has("warn", &format!("stderr: stderr: {line}")),
            "{lines:#?}"
        );
    }
    // In order.
    let position = |message: &str| lines.iter().position(|(_, m)| m == message);
    assert!(position("stdout: first line") < position("stdout: second line"));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn state_persists_across_runs_of_a_job_and_is_isolated_between_jobs() -> anyhow::Result<()> {
    let scratch = Scratch::new()?;
    let runner = scratch.runner(&[job("keeper", "", ""), job("stranger", "", "")].concat())?;
    let result = succeeded(
        &backup(
            &runner,
            "keeper",
            json!({"action": "state", "set": {"cursor": "page-7"}}),
        )
        .await?,
    );
    assert_eq!(result["values"], json!({}));

    let get = json!({"action": "state", "get": ["cursor"]});
    let result = succeeded(&backup(&runner, "keeper", get.clone()).await?);
    assert_eq!(result["values"], json!({"cursor": "page-7"}));
    let result = succeeded(&backup(&runner, "stranger", get).await?);
    assert_eq!(result["values"], json!({"cursor": null}));
    Ok(())
}

// ---------------------------------------------------------------------------
// functions

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn functions_run_only_when_granted_and_under_the_jobs_grants() -> anyhow::Result<()> {
    let server = TestServer::start().await?;
    let scratch = Scratch::new()?;
    let http = format!("http = [{}]", toml_str(&server.url));
    let runner = scratch.runner(
        &[
            job(
                "caller",
                "",
                &format!("{http}\nfunctions = [\"http-request\"]"),
            ),
            job("no-function", "", &http),
            job("no-http", "", r#"functions = ["http-request"]"#),
        ]
        .concat(),
    )?;
    let params = json!({
        "action": "call",
        "function": "http-request",
        "params": {"url": format!("{}/json", server.url)},
    });

    let result = succeeded(&backup(&runner, "caller", params.clone()).await?);
    assert_eq!(
        result["result"],
        json!({"status": 200, "body": {"ok": true}})
    );

    let error = run_error(&backup(&runner, "no-function", params.clone()).await?)?;
    assert_contains(
        &error,
        &[
            "backup of job `no-function`: denied: ",
            "function `http-request` is not granted to job `no-function`",
            "`allow.functions`",
        ],
    );

    let error = run_error(&backup(&runner, "no-http", params).await?)?;
    assert_contains(
        &error,
        &[
            "backup of job `no-http`: denied: function `http-request`: ",
            &format!("http to {} is not granted to job `no-http`", server.url),
            "`allow.http` grants none",
        ],
    );
    Ok(())
}

// ---------------------------------------------------------------------------
// module loading

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn modules_that_are_not_components_or_fail_their_pin_are_refused() -> anyhow::Result<()> {
    let scratch = Scratch::new()?;
    let text = scratch.path("task.wasm");
    std::fs::write(&text, "this is a text file, not WebAssembly\n")?;
    let core = scratch.path("core.wasm");
    std::fs::write(&core, b"\0asm\x01\0\0\0")?;
    let guest_bytes = std::fs::read(support::test_guest())?;
    let digest = hex::encode(Sha256::digest(&guest_bytes));
    let wrong = "ab".repeat(32);
    let task = |name: &str, path: &Path, extra: &str| {
        format!(
            "[jobs.{name}]\ntask = {}\n{extra}\n\n",
            toml_str(&path.display().to_string())
        )
    };
    let guest = support::test_guest();
    let runner = scratch.runner(
        &[
            task("text", &text, ""),
            task("core", &core, ""),
            task(
                "wrong-pin",
                &guest,
                &format!("sha256 = {}", toml_str(&wrong)),
            ),
            task(
                "right-pin",
                &guest,
                &format!("sha256 = {}", toml_str(&digest)),
            ),
        ]
        .concat(),
    )?;
    let ok = json!({"action": "ok"});

    let error = run_error(&backup(&runner, "text", ok.clone()).await?)?;
    assert_contains(
        &error,
        &[
            "job `text`: ",
            &format!("{} is not a WebAssembly module", text.display()),
        ],
    );
    let error = run_error(&backup(&runner, "core", ok.clone()).await?)?;
    assert_contains(
        &error,
        &[
            &format!(
                "{} is a core WebAssembly module, not a component",
                core.display()
            ),
            "wasm32-wasip2",
        ],
    );
    let error = run_error(&backup(&runner, "wrong-pin", ok.clone()).await?)?;
    assert_contains(
        &error,
        &[
            "job `wrong-pin`: ",
            "does not match its pinned sha256",
            &format!("expected {wrong}"),
            &format!("found {digest}"),
            "refusing to load it",
        ],
    );
    succeeded(&backup(&runner, "right-pin", ok).await?);
    Ok(())
}

// ---------------------------------------------------------------------------
// guest errors

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn guest_error_variants_reach_the_run_error() -> anyhow::Result<()> {
    let scratch = Scratch::new()?;
    let runner = scratch.runner(&job("x", "", ""))?;
    for (variant, prefix) in [
        ("invalid", "invalid: "),
        ("denied", "denied: "),
        ("not-found", "not found: "),
        ("limit", "limit: "),
        ("unsupported", "unsupported: "),
        ("failed", ""),
    ] {
        let message = format!("the guest says {variant}");
        let report = backup(
            &runner,
            "x",
            json!({"action": "error", "variant": variant, "message": message}),
        )
        .await?;
        assert_eq!(report.run.status, RunStatus::Failed);
        assert_eq!(
            run_error(&report)?,
            format!("backup of job `x`: {prefix}{message}")
        );
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// WASI file system

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn guest_file_system_access_is_limited_to_granted_paths() -> anyhow::Result<()> {
    let scratch = Scratch::new()?;
    let data = scratch.path("data");
    std::fs::create_dir(&data)?;
    let data = std::fs::canonicalize(&data)?;
    let hello = data.join("hello.txt");
    std::fs::write(&hello, "hello from the host")?;
    let dir = toml_str(&data.display().to_string());
    let runner = scratch.runner(
        &[
            job("none", "", ""),
            job("reads", "", &format!("paths = {{ {dir} = \"read\" }}")),
            job(
                "writes",
                "",
                &format!("paths = {{ {dir} = \"read-write\" }}"),
            ),
        ]
        .concat(),
    )?;
    let read = json!({"action": "read-file", "path": hello.display().to_string()});
    let write = |name: &str| {
        json!({
            "action": "write-file",
            "path": data.join(name).display().to_string(),
            "text": "written by the guest",
        })
    };

    // No grant: the file system is not there at all.
    let error = run_error(&backup(&runner, "none", read.clone()).await?)?;
    assert_contains(&error, &[&format!("cannot read {}", hello.display())]);
    assert!(!error.contains("hello from the host"));
    let error = run_error(&backup(&runner, "none", write("none.txt")).await?)?;
    assert_contains(&error, &["cannot write"]);
    assert!(!data.join("none.txt").exists());

    // Read-only grant.
    let result = succeeded(&backup(&runner, "reads", read.clone()).await?);
    assert_eq!(result["text"], "hello from the host");
    let error = run_error(&backup(&runner, "reads", write("reads.txt")).await?)?;
    assert_contains(
        &error,
        &[&format!(
            "cannot write {}",
            data.join("reads.txt").display()
        )],
    );
    assert!(!data.join("reads.txt").exists());

    // A granted directory is no way out: not by `..`, not by a symlink.
    let outside = scratch.path("cairn.toml");
    let escapes = [
        data.join("..").join("cairn.toml"),
        data.join("link-to-config"),
    ];
    std::os::unix::fs::symlink(&outside, &escapes[1])?;
    for path in &escapes {
        let read = json!({"action": "read-file", "path": path.display().to_string()});
        let error = run_error(&backup(&runner, "reads", read).await?)?;
        assert_contains(&error, &[&format!("cannot read {}", path.display())]);
        assert!(!error.contains("[runtime]"), "{error}");
    }

    // Read-write grant.
    let result = succeeded(&backup(&runner, "writes", write("writes.txt")).await?);
    assert_eq!(result["written"], true);
    assert_eq!(
        std::fs::read_to_string(data.join("writes.txt"))?,
        "written by the guest"
    );
    succeeded(&backup(&runner, "writes", read).await?);
    Ok(())
}
