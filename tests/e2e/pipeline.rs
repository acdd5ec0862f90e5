//! Pipeline tasks (`host/src/pipeline.rs`): TOML steps calling real Function
//! modules against a loopback server, templates between steps, and `finally`
//! steps that run after a failure, a timeout or a cancellation.

use std::time::{Duration, Instant};

use cairn::runner::{RunOptions, Runner};
use cairn::state::{RunKind, RunStatus};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use crate::support::{Scratch, TestServer, backup, cairn, run_error};

/// A config with pipeline `p` (`steps` and `finally` are TOML array-of-table
/// bodies for `backup`) and job `j` using it, granted the server.
fn config(server: &TestServer, steps: &[&str], finally: &[&str], job_extra: &str) -> String {
    let mut text = String::from(
        "[pipelines.p]\ndescription = \"test pipeline\"\nparams.base = { required = true }\nparams.tag = { default = \"t1\" }\n",
    );
    for s in steps {
        text.push_str(&format!("\n[[pipelines.p.backup.steps]]\n{s}\n"));
    }
    for s in finally {
        text.push_str(&format!("\n[[pipelines.p.backup.finally]]\n{s}\n"));
    }
    text.push_str(&format!(
        "\n[jobs.j]\ntask = \"pipeline:p\"\n{job_extra}\nparams = {{ base = {:?} }}\n[jobs.j.allow]\nhttp = [{:?}]\n",
        server.url, server.url
    ));
    text
}

fn step(name: &str, params: &str) -> String {
    format!("name = {name:?}\nfunction = \"http-request\"\nparams = {params}")
}

/// `(method path, body)` of every request the server recorded.
fn seen(server: &TestServer) -> Vec<(String, Value)> {
    server
        .seen()
        .into_iter()
        .map(|s| {
            let body = serde_json::from_str(&s.body).unwrap_or(Value::String(s.body));
            (s.request, body)
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn steps_run_in_order_and_pass_results_on() -> anyhow::Result<()> {
    let server = TestServer::start().await?;
    let scratch = Scratch::new()?;
    let runner = scratch.runner(&config(
        &server,
        &[
            &step(
                "first",
                r#"{ method = "POST", url = "{{params.base}}/echo", body = { tag = "{{params.tag}}", job = "{{job}}" } }"#,
            ),
            &step(
                "second",
                r#"{ method = "PUT", url = "{{params.base}}/echo", body = { from_first = "{{steps.first.body.body}}", status = "{{steps.first.status}}", run = "{{run.id}}" } }"#,
            ),
        ],
        &[&step(
            "last",
            r#"{ method = "POST", url = "{{params.base}}/echo", body = { outcome = "{{run.status}}", error = "{{run.error}}" } }"#,
        )],
        "",
    ))?;
    let report = backup(&runner, "j", json!({})).await?;
    assert_eq!(
        report.run.status,
        RunStatus::Succeeded,
        "{:?}",
        report.run.error
    );
    let seen = seen(&server);
    assert_eq!(seen.len(), 3, "{seen:?}");
    assert_eq!(seen[0].0, "POST /echo");
    assert_eq!(seen[0].1, json!({"tag": "t1", "job": "j"}));
    assert_eq!(seen[1].0, "PUT /echo");
    // The first step's echoed body (a JSON string) went into the second's body.
    assert_eq!(seen[1].1["from_first"], r#"{"job":"j","tag":"t1"}"#);
    assert_eq!(seen[1].1["status"], 200, "a whole reference keeps its type");
    assert_eq!(seen[1].1["run"], report.run.id);
    assert_eq!(seen[2].1, json!({"outcome": "succeeded", "error": ""}));
    let result = report.result.expect("result");
    assert_eq!(result["steps"]["second"]["status"], 200);
    assert!(result["steps"]["last"].is_object());
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn finally_steps_run_after_a_failed_step_and_both_errors_are_reported() -> anyhow::Result<()>
{
    let server = TestServer::start().await?;
    let scratch = Scratch::new()?;
    let runner = scratch.runner(&config(
        &server,
        &[
            &step("freeze", r#"{ method = "POST", url = "{{params.base}}/echo", body = { step = "freeze" } }"#),
            &step("boom", r#"{ url = "{{params.base}}/echo", expect = 418 }"#),
            &step("never", r#"{ url = "{{params.base}}/echo", body = { step = "never" } }"#),
        ],
        &[
            &step(
                "thaw",
                r#"{ method = "POST", url = "{{params.base}}/echo", body = { step = "thaw", outcome = "{{run.status}}", error = "{{run.error}}" } }"#,
            ),
            &step("also-fails", r#"{ url = "{{params.base}}/status/503" }"#),
            &step("still-runs", r#"{ method = "POST", url = "{{params.base}}/echo", body = { step = "still-runs" } }"#),
        ],
        "",
    ))?;
    let report = backup(&runner, "j", json!({})).await?;
    assert_eq!(report.run.status, RunStatus::Failed);
    let error = run_error(&report)?;
    assert!(
        error.contains("step `boom` (function `http-request`) failed")
            && error.contains("418")
            && error
                .contains("; and then finally step `also-fails` (function `http-request`) failed")
            && error.contains("503"),
        "{error}"
    );
    let seen = seen(&server);
    let steps: Vec<&str> = seen
        .iter()
        .filter_map(|(_, b)| b.get("step").and_then(Value::as_str))
        .collect();
    assert_eq!(steps, ["freeze", "thaw", "still-runs"], "{seen:?}");
    let thaw = &seen.iter().find(|(_, b)| b["step"] == "thaw").unwrap().1;
    assert_eq!(thaw["outcome"], "failed");
    assert!(
        thaw["error"].as_str().unwrap().contains("step `boom`"),
        "{thaw}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_finally_step_alone_fails_the_run() -> anyhow::Result<()> {
    let server = TestServer::start().await?;
    let scratch = Scratch::new()?;
    let runner = scratch.runner(&config(
        &server,
        &[&step("ok", r#"{ url = "{{params.base}}/json" }"#)],
        &[&step(
            "cleanup",
            r#"{ url = "{{params.base}}/status/500" }"#,
        )],
        "",
    ))?;
    let error = run_error(&backup(&runner, "j", json!({})).await?)?;
    assert!(
        error.starts_with("finally step `cleanup`") && error.contains("500"),
        "{error}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn finally_steps_run_when_the_run_times_out() -> anyhow::Result<()> {
    let server = TestServer::start().await?;
    let scratch = Scratch::new()?;
    let runner = scratch.runner(&config(
        &server,
        &[&step("slow", r#"{ url = "{{params.base}}/slow?ms=20000" }"#)],
        &[&step(
            "thaw",
            r#"{ method = "POST", url = "{{params.base}}/echo", body = { outcome = "{{run.status}}" } }"#,
        )],
        "timeout = \"1s\"",
    ))?;
    let started = Instant::now();
    let report = backup(&runner, "j", json!({})).await?;
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    let error = run_error(&report)?;
    assert!(
        error.contains("exceeded the run's timeout of 1s"),
        "{error}"
    );
    let seen = seen(&server);
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert_eq!(seen[0].1["outcome"], "failed");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_run_runs_finally_and_is_recorded_cancelled() -> anyhow::Result<()> {
    let server = TestServer::start().await?;
    let scratch = Scratch::new()?;
    let runner: Runner = scratch.runner(&config(
        &server,
        &[&step("slow", r#"{ url = "{{params.base}}/slow?ms=20000" }"#)],
        &[&step(
            "thaw",
            r#"{ method = "POST", url = "{{params.base}}/echo", body = { outcome = "{{run.status}}" } }"#,
        )],
        "",
    ))?;
    let cancel = CancellationToken::new();
    let trigger = cancel.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(700)).await;
        trigger.cancel();
    });
    let started = Instant::now();
    let report = runner
        .run(
            "j",
            RunKind::Backup,
            RunOptions {
                cancel,
                ..RunOptions::default()
            },
        )
        .await?;
    assert!(started.elapsed() < Duration::from_secs(10));
    assert_eq!(report.run.status, RunStatus::Cancelled, "{:?}", report.run);
    assert!(
        report
            .run
            .error
            .as_deref()
            .unwrap_or_default()
            .contains("cancelled"),
        "{:?}",
        report.run.error
    );
    let seen = seen(&server);
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert_eq!(seen[0].1["outcome"], "cancelled");
    let stored = runner.store().run(&report.run.id)?;
    assert_eq!(stored.status, RunStatus::Cancelled);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_module_task_is_recorded_cancelled() -> anyhow::Result<()> {
    let scratch = Scratch::new()?;
    let runner = scratch.runner(&crate::support::guest_job("g", ""))?;
    let cancel = CancellationToken::new();
    let trigger = cancel.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(500)).await;
        trigger.cancel();
    });
    let report = runner
        .run(
            "g",
            RunKind::Backup,
            RunOptions {
                overrides: json!({"action": "loop"}).as_object().unwrap().clone(),
                cancel,
                ..RunOptions::default()
            },
        )
        .await?;
    assert_eq!(report.run.status, RunStatus::Cancelled, "{:?}", report.run);
    Ok(())
}

#[test]
fn pipeline_mistakes_are_config_errors_with_their_place() -> anyhow::Result<()> {
    let scratch = Scratch::new()?;
    scratch.write_config(
        r#"
[pipelines.p]
params.url = { required = true }

[[pipelines.p.backup.steps]]
name = "a"
function = "http-reqest"

[[pipelines.p.backup.steps]]
name = "b"
function = "http-request"
params = { url = "{{params.ulr}}/x", body = "{{steps.c}}" }

[[pipelines.p.backup.steps]]
name = "c"
function = "http-request"

[jobs.j]
task = "pipeline:q"
"#,
    )?;
    let out = cairn(&["validate"], scratch.dir.path())?;
    out.expect_code(2)?;
    let text = out.stderr.clone();
    for needle in [
        "pipeline `p`, key `backup.steps[0].function` (line 10, column 12): no function `http-reqest`",
        "pipeline `p`, key `backup.steps[1].params` (line 15, column 10): `{{params.ulr}}` refers to param `ulr`, which the pipeline does not declare (declared: url)",
        "`{{steps.c}}` refers to step `c`, which does not run before this step (earlier steps: a)",
        "job `j`, key `task` (line 22, column 8): no pipeline `q` in [pipelines] (did you mean `p`?)",
    ] {
        assert!(text.contains(needle), "expected {needle:?} in:\n{text}");
    }
    Ok(())
}

#[test]
fn validate_reports_missing_required_pipeline_params() -> anyhow::Result<()> {
    let scratch = Scratch::new()?;
    scratch.write_config(
        r#"
[jobs.es]
task = "builtin:elasticsearch-datadir"
params = { url = "http://127.0.0.1:9" }
[jobs.es.allow]
http = ["http://127.0.0.1:9"]
"#,
    )?;
    let out = cairn(&["validate"], scratch.dir.path())?;
    let text = format!("{}{}", out.stdout, out.stderr);
    assert!(
        text.contains("job `es`, key `params.data-path`: pipeline `elasticsearch-datadir` requires param `data-path`"),
        "{text}"
    );
    Ok(())
}

/// A job running the built-in `elasticsearch-datadir` pipeline against the
/// Elasticsearch test double, archiving `data` (granted `access`).
fn datadir_job(es: &str, data: &std::path::Path, access: &str) -> String {
    format!(
        r#"
[repository]
path = "repo"
password-env = "CAIRN_TEST_DATADIR_PASSWORD"

[jobs.es]
task = "builtin:elasticsearch-datadir"
params = {{ url = {es:?}, data-path = {data:?} }}
[jobs.es.allow]
http = [{es:?}]
paths = {{ {data:?} = {access:?} }}
"#
    )
}

/// `(translog.disable_flush of index `idx`, cluster disable_allocation)` as
/// the test double reports them.
async fn datadir_flags(es: &str) -> anyhow::Result<(Value, Value)> {
    let client = reqwest::Client::new();
    let settings: Value = client
        .get(format!("{es}/idx/_settings?flat_settings=true"))
        .send()
        .await?
        .text()
        .await
        .map(|t| serde_json::from_str(&t))??;
    let cluster: Value = client
        .get(format!("{es}/_cluster/settings?flat_settings=true"))
        .send()
        .await?
        .text()
        .await
        .map(|t| serde_json::from_str(&t))??;
    Ok((
        settings["idx"]["settings"]["index.translog.disable_flush"].clone(),
        cluster["transient"]["cluster.routing.allocation.disable_allocation"].clone(),
    ))
}

/// The 0.90 data-path procedure, against the Elasticsearch test double only:
/// `translog.disable_flush` and `disable_allocation` are 0.90 settings that a
/// current cluster rejects, so `CAIRN_TEST_ELASTICSEARCH_URL` is not used here.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn datadir_pipeline_archives_the_data_path_and_turns_flush_and_allocation_back_on()
-> anyhow::Result<()> {
    // SAFETY: tests in this binary only read this variable.
    unsafe { std::env::set_var("CAIRN_TEST_DATADIR_PASSWORD", "datadir-test") };
    let server = cairn_es_test_server::EsServer::start(Default::default());
    let es = server.url();
    server.seed("idx", 10);
    let scratch = Scratch::new()?;
    let data = scratch.path("es-data");
    std::fs::create_dir_all(data.join("nodes/0/indices/idx/0"))?;
    std::fs::write(
        data.join("nodes/0/indices/idx/0/segments_1"),
        b"segment bytes",
    )?;
    std::fs::write(data.join("nodes/0/_state"), b"state")?;

    let runner = scratch.runner(&datadir_job(&es, &data, "read-write"))?;
    let report = backup(&runner, "es", json!({})).await?;
    assert_eq!(
        report.run.status,
        RunStatus::Succeeded,
        "{:?}",
        report.run.error
    );
    assert!(report.run.snapshot_id.is_some());
    let (flush, allocation) = datadir_flags(&es).await?;
    assert_eq!(
        (flush.as_str(), allocation.as_str()),
        (Some("false"), Some("false"))
    );
    let logs = runner.store().logs(&report.run.id)?;
    let order: Vec<&str> = logs
        .iter()
        .filter_map(|l| {
            l.message
                .strip_prefix("step `")
                .and_then(|m| m.split('`').next())
                .filter(|_| l.message.ends_with("started"))
        })
        .collect();
    assert_eq!(
        order,
        [
            "disable-flush",
            "disable-allocation",
            "archive",
            "enable-allocation",
            "enable-flush"
        ]
    );

    // Restore puts the data directory back.
    std::fs::remove_dir_all(&data)?;
    std::fs::create_dir_all(&data)?;
    let restored = runner
        .run("es", RunKind::Restore, RunOptions::default())
        .await?;
    assert_eq!(
        restored.run.status,
        RunStatus::Succeeded,
        "{:?}",
        restored.run.error
    );
    assert_eq!(
        std::fs::read(data.join("nodes/0/indices/idx/0/segments_1"))?,
        b"segment bytes"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn datadir_pipeline_turns_flush_and_allocation_back_on_when_the_archive_fails()
-> anyhow::Result<()> {
    // SAFETY: tests in this binary only read this variable.
    unsafe { std::env::set_var("CAIRN_TEST_DATADIR_PASSWORD", "datadir-test") };
    let server = cairn_es_test_server::EsServer::start(Default::default());
    let es = server.url();
    server.seed("idx", 10);
    let scratch = Scratch::new()?;
    // The data path does not exist: the archive step fails.
    let data = scratch.path("missing-data");
    let runner = scratch.runner(&datadir_job(&es, &data, "read"))?;
    let report = backup(&runner, "es", json!({})).await?;
    let error = run_error(&report)?;
    assert!(
        error.contains("step `archive` (function `archive-path`) failed"),
        "{error}"
    );
    assert!(report.run.snapshot_id.is_none(), "nothing is committed");
    let (flush, allocation) = datadir_flags(&es).await?;
    assert_eq!(
        (flush.as_str(), allocation.as_str()),
        (Some("false"), Some("false"))
    );
    Ok(())
}
