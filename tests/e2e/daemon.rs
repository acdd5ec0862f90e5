//! End-to-end tests of `cairn daemon`: the real binary on loopback, firing
//! jobs on second-granularity schedules, driven through its HTTP API and
//! signals (SIGTERM, SIGHUP, SIGKILL), with the run history read back through
//! the API and `cairn runs`.

use std::io::{BufRead as _, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use serde_json::Value;

use crate::support::{self, Scratch, cairn_with_env};

pub(crate) const PASSWORD: &str = "daemon test password";
pub(crate) const PASSWORD_ENV: &str = "CAIRN_TEST_PASSWORD";

/// A `cairn daemon` child process whose log is collected.
pub(crate) struct DaemonProcess {
    pub(crate) child: Child,
    log: Arc<Mutex<String>>,
    pub(crate) addr: String,
}

impl DaemonProcess {
    /// Start `cairn daemon --listen 127.0.0.1:0` in `scratch` and wait for
    /// the API's address in its log.
    pub(crate) fn start(scratch: &Scratch) -> anyhow::Result<Self> {
        Self::start_with(scratch, &[])
    }

    /// [`DaemonProcess::start`] with more arguments (`--node`, `--labels`).
    pub(crate) fn start_with(scratch: &Scratch, extra: &[&str]) -> anyhow::Result<Self> {
        let mut child = Command::new(support::cairn_bin())
            .args(["daemon", "--listen", "127.0.0.1:0"])
            .args(extra)
            .current_dir(scratch.dir.path())
            .env_remove("CAIRN_CONFIG")
            .env("CAIRN_LOG", "info")
            .env("XDG_CACHE_HOME", support::cli_xdg_cache_home())
            .env(PASSWORD_ENV, PASSWORD)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .context("starting cairn daemon")?;
        let stderr = child.stderr.take().context("stderr")?;
        let log = Arc::new(Mutex::new(String::new()));
        let sink = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let mut log = sink.lock().unwrap();
                log.push_str(&line);
                log.push('\n');
            }
        });
        let mut daemon = Self {
            child,
            log,
            addr: String::new(),
        };
        let line = daemon.wait_log("HTTP API listening on ", Duration::from_secs(120))?;
        let addr = line
            .split("HTTP API listening on ")
            .nth(1)
            .and_then(|rest| rest.split_whitespace().next())
            .context("no address in the log line")?;
        daemon.addr = addr.to_owned();
        Ok(daemon)
    }

    pub(crate) fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    /// Wait for a log line containing `needle`; returns it.
    pub(crate) fn wait_log(&mut self, needle: &str, within: Duration) -> anyhow::Result<String> {
        let deadline = Instant::now() + within;
        loop {
            if let Some(line) = self.log().lines().find(|l| l.contains(needle)) {
                return Ok(line.to_owned());
            }
            if let Some(status) = self.child.try_wait()? {
                anyhow::bail!(
                    "daemon exited ({status}) before logging `{needle}`:\n{}",
                    self.log()
                );
            }
            anyhow::ensure!(
                Instant::now() < deadline,
                "no `{needle}` in the daemon's log within {within:?}:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub(crate) fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub(crate) fn signal(&self, signal: i32) -> anyhow::Result<()> {
        let pid = i32::try_from(self.child.id())?;
        // SAFETY: sending a signal to our own child process.
        let rc = unsafe { libc::kill(pid, signal) };
        anyhow::ensure!(rc == 0, "kill({pid}, {signal}) failed");
        Ok(())
    }

    /// Wait for the process to exit; its exit code.
    pub(crate) fn wait_exit(&mut self, within: Duration) -> anyhow::Result<Option<i32>> {
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.child.try_wait()? {
                return Ok(status.code());
            }
            anyhow::ensure!(
                Instant::now() < deadline,
                "daemon still running after {within:?}:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for DaemonProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `[repository]` and `[state]` in the scratch dir, then `body`.
fn config(body: &str) -> String {
    format!(
        "[repository]\npath = \"repo\"\npassword-env = \"{PASSWORD_ENV}\"\n\n[state]\npath = \"state.db\"\n\n{body}"
    )
}

/// A test-guest job with `params` (inline TOML) and extra lines.
fn job(name: &str, params: &str, extra: &str) -> String {
    support::guest_job(name, &format!("params = {params}\n{extra}"))
}

/// `cairn ARGS` in the scratch dir with the repository password.
fn cairn(scratch: &Scratch, args: &[&str]) -> anyhow::Result<support::CliOutput> {
    cairn_with_env(args, scratch.dir.path(), &[(PASSWORD_ENV, PASSWORD)])
}

/// Runs of `job` from `cairn runs --json` (newest first).
fn runs(scratch: &Scratch, job: &str) -> anyhow::Result<Vec<Value>> {
    let out = cairn(
        scratch,
        &["--json", "runs", "--job", job, "--limit", "1000"],
    )?;
    out.expect_code(0)?;
    match out.json()? {
        Value::Array(list) => Ok(list),
        other => anyhow::bail!("`runs --json` printed {other}"),
    }
}

/// Poll `check` every 100 ms until it returns `Some`, for at most `within`.
pub(crate) fn eventually<T>(
    within: Duration,
    what: &str,
    mut check: impl FnMut() -> anyhow::Result<Option<T>>,
) -> anyhow::Result<T> {
    let deadline = Instant::now() + within;
    loop {
        if let Some(v) = check()? {
            return Ok(v);
        }
        anyhow::ensure!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn status(run: &Value) -> &str {
    run["status"].as_str().unwrap_or("")
}

async fn get_json(client: &reqwest::Client, url: &str) -> anyhow::Result<(u16, Value)> {
    let resp = client.get(url).send().await?;
    let code = resp.status().as_u16();
    Ok((code, serde_json::from_str(&resp.text().await?)?))
}

async fn post_json(client: &reqwest::Client, url: &str) -> anyhow::Result<(u16, Value)> {
    let resp = client.post(url).send().await?;
    let code = resp.status().as_u16();
    Ok((code, serde_json::from_str(&resp.text().await?)?))
}

#[tokio::test(flavor = "multi_thread")]
async fn daemon_fires_on_schedule_and_serves_the_api() -> anyhow::Result<()> {
    let scratch = Scratch::new()?;
    let body = config(&format!(
        "{}{}",
        job(
            "tick",
            "{ action = \"ok\" }",
            "schedule = \"*/2 * * * * *\"\nkeep-runs = 50"
        ),
        job("manual", "{ action = \"ok\" }", "")
    ));
    scratch.write_config(&body)?;
    let mut daemon = DaemonProcess::start(&scratch)?;
    let client = reqwest::Client::new();

    // Two scheduled runs succeed, each recorded with its schedule time and
    // started within a second of it.
    let fired = eventually(Duration::from_secs(30), "two scheduled runs", || {
        let list = runs(&scratch, "tick")?;
        let ok: Vec<Value> = list
            .into_iter()
            .filter(|r| status(r) == "succeeded")
            .collect();
        Ok((ok.len() >= 2).then_some(ok))
    })?;
    for run in &fired {
        assert_eq!(run["trigger"], "schedule", "{run}");
        assert_eq!(run["attempt"], 1);
        let scheduled = run["scheduled_at_ms"].as_i64().context("scheduled_at_ms")?;
        let started = run["started_at_ms"].as_i64().context("started_at_ms")?;
        assert_eq!(scheduled % 2000, 0, "fires on even seconds: {run}");
        assert!(
            (0..1000).contains(&(started - scheduled)),
            "late fire: {run}"
        );
    }

    // A run through the API: 202 with the queued run, which then succeeds.
    let (code, queued) = post_json(&client, &daemon.url("/api/jobs/manual/backup")).await?;
    assert_eq!(code, 202, "{queued}");
    let id = queued["id"]
        .as_str()
        .or_else(|| queued["run"]["id"].as_str())
        .context("run id in the answer")?
        .to_owned();
    let run = eventually(Duration::from_secs(30), "the API run to finish", || {
        let list = runs(&scratch, "manual")?;
        Ok(list
            .into_iter()
            .find(|r| r["id"] == id.as_str() && status(r) == "succeeded"))
    })?;
    assert_eq!(run["trigger"], "api");

    // Unknown job: a JSON 404 naming it.
    let (code, err) = post_json(&client, &daemon.url("/api/jobs/nope/backup")).await?;
    assert_eq!(code, 404);
    assert!(
        err["error"].as_str().unwrap_or("").contains("nope"),
        "{err}"
    );

    // Jobs show their next fire; metrics count the runs.
    let (code, jobs) = get_json(&client, &daemon.url("/api/jobs")).await?;
    assert_eq!(code, 200);
    let tick = jobs["jobs"]
        .as_array()
        .and_then(|l| l.iter().find(|j| j["name"] == "tick"))
        .context("tick in /api/jobs")?;
    assert!(tick["next_fire"].is_string(), "{tick}");
    let metrics = client
        .get(daemon.url("/metrics"))
        .send()
        .await?
        .text()
        .await?;
    assert!(
        metrics.contains(r#"cairn_runs_total{job="tick",kind="backup",status="succeeded"}"#),
        "{metrics}"
    );

    // Paused: no more scheduled runs; resumed: they come back.
    let (code, _) = post_json(&client, &daemon.url("/api/jobs/tick/pause")).await?;
    assert_eq!(code, 200);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = runs(&scratch, "tick")?.len();
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(runs(&scratch, "tick")?.len(), before, "a paused job fired");
    let (code, _) = post_json(&client, &daemon.url("/api/jobs/tick/resume")).await?;
    assert_eq!(code, 200);
    eventually(Duration::from_secs(10), "a fire after resume", || {
        Ok((runs(&scratch, "tick")?.len() > before).then_some(()))
    })?;

    daemon.signal(libc::SIGTERM)?;
    assert_eq!(daemon.wait_exit(Duration::from_secs(30))?, Some(0));
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn sigkill_during_a_backup_is_interrupted_and_the_next_fire_succeeds() -> anyhow::Result<()> {
    let scratch = Scratch::new()?;
    // Writes an artifact, logs, then takes 8 s: long enough to be killed mid-run.
    let slow = r#"{ action = "steps", steps = [{ action = "storage-write", name = "data.txt", text = "hello" }, { action = "log", message = "wrote data.txt, now sleeping" }, { action = "sleep", ms = 8000 }] }"#;
    scratch.write_config(&config(&job("slow", slow, "schedule = \"*/3 * * * * *\"")))?;
    cairn(&scratch, &["init"])?.expect_code(0)?;

    let mut daemon = DaemonProcess::start(&scratch)?;
    let running = eventually(Duration::from_secs(30), "a running backup", || {
        Ok(runs(&scratch, "slow")?
            .into_iter()
            .find(|r| status(r) == "running"))
    })?;
    let id = running["id"].as_str().context("run id")?.to_owned();
    // The guest's line reaches the store while the run goes (batched every
    // second), not only when it ends.
    eventually(
        Duration::from_secs(10),
        "the guest's log line in the store",
        || {
            let out = cairn(&scratch, &["--json", "runs", "show", &id])?;
            out.expect_code(0)?;
            let shown = out.json()?;
            let logged = shown["logs"].as_array().is_some_and(|lines| {
                lines
                    .iter()
                    .any(|l| l["message"] == "wrote data.txt, now sleeping")
            });
            Ok((logged && status(&shown["run"]) == "running").then_some(()))
        },
    )?;
    daemon.signal(libc::SIGKILL)?;
    daemon.wait_exit(Duration::from_secs(10))?;
    drop(daemon);

    let killed = runs(&scratch, "slow")?
        .into_iter()
        .find(|r| r["id"] == running["id"])
        .context("the killed run")?;
    assert_eq!(status(&killed), "interrupted", "{killed}");
    // What it logged before the kill survived.
    let shown = cairn(&scratch, &["--json", "runs", "show", &id])?.json()?;
    let messages: Vec<&str> = shown["logs"]
        .as_array()
        .context("logs")?
        .iter()
        .filter_map(|l| l["message"].as_str())
        .collect();
    assert!(
        messages
            .iter()
            .any(|m| m.starts_with("backup of job `slow` started")),
        "{messages:?}"
    );
    assert!(
        messages.contains(&"wrote data.txt, now sleeping"),
        "{messages:?}"
    );

    let mut daemon = DaemonProcess::start(&scratch)?;
    let ok = eventually(
        Duration::from_secs(60),
        "a successful backup after restart",
        || {
            Ok(runs(&scratch, "slow")?
                .into_iter()
                .find(|r| status(r) == "succeeded"))
        },
    )?;
    assert!(ok["snapshot_id"].is_string(), "{ok}");
    // The restarted daemon counted the run interrupted while it was down
    // (`cairn runs` marked it, the daemon reports it).
    let metrics = reqwest::get(daemon.url("/metrics")).await?.text().await?;
    assert!(
        metrics.contains(r#"cairn_runs_total{job="slow",kind="backup",status="interrupted"} 1"#),
        "{metrics}"
    );
    daemon.signal(libc::SIGTERM)?;
    assert_eq!(daemon.wait_exit(Duration::from_secs(30))?, Some(0));

    cairn(&scratch, &["check"])?.expect_code(0)?;
    // The killed run left its repository lock behind: cairn sees that its
    // process is gone, restic wants `unlock` (which removes only the locks
    // of processes that are gone).
    let unlock = Command::new("restic")
        .args(["-r", "repo", "unlock"])
        .current_dir(scratch.dir.path())
        .env("RESTIC_PASSWORD", PASSWORD)
        .output()
        .context("running restic unlock")?;
    assert!(
        unlock.status.success(),
        "restic unlock failed:\n{}",
        String::from_utf8_lossy(&unlock.stderr)
    );
    let restic = Command::new("restic")
        .args(["-r", "repo", "check", "--no-cache"])
        .current_dir(scratch.dir.path())
        .env("RESTIC_PASSWORD", PASSWORD)
        .output()
        .context("running restic")?;
    assert!(
        restic.status.success(),
        "restic check failed:\n{}",
        String::from_utf8_lossy(&restic.stderr)
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_cancels_runs_after_the_grace_and_manual_backups_are_refused_meanwhile()
-> anyhow::Result<()> {
    let scratch = Scratch::new()?;
    let body = format!(
        "[daemon]\nshutdown-grace = \"1s\"\n\n{}",
        config(&job("long", "{ action = \"sleep\", ms = 60000 }", ""))
    );
    scratch.write_config(&body)?;
    let mut daemon = DaemonProcess::start(&scratch)?;
    let client = reqwest::Client::new();
    let (code, queued) = post_json(&client, &daemon.url("/api/jobs/long/backup")).await?;
    assert_eq!(code, 202, "{queued}");
    eventually(Duration::from_secs(30), "the run to start", || {
        Ok(runs(&scratch, "long")?
            .into_iter()
            .find(|r| status(r) == "running"))
    })?;

    // A second one through the API: refused (concurrency = "forbid").
    let (code, err) = post_json(&client, &daemon.url("/api/jobs/long/backup")).await?;
    assert_eq!(code, 409, "{err}");

    // A manual backup in another process: refused by the state store.
    let out = cairn(&scratch, &["backup", "long"])?;
    assert_ne!(out.code, Some(0), "{out}");
    assert!(
        out.stderr.contains("job `long` is already running"),
        "{out}"
    );

    let stopping = Instant::now();
    daemon.signal(libc::SIGTERM)?;
    assert_eq!(daemon.wait_exit(Duration::from_secs(30))?, Some(0));
    assert!(stopping.elapsed() < Duration::from_secs(20));
    let list = runs(&scratch, "long")?;
    assert_eq!(list.len(), 1, "{list:?}");
    assert_eq!(status(&list[0]), "cancelled", "{list:?}");
    assert!(daemon.log().contains("cancelling them"), "{}", daemon.log());
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_bad_reload_keeps_the_old_configuration_and_a_good_one_applies() -> anyhow::Result<()> {
    let scratch = Scratch::new()?;
    let tick = job(
        "tick",
        "{ action = \"ok\" }",
        "schedule = \"*/2 * * * * *\"",
    );
    scratch.write_config(&config(&tick))?;
    let mut daemon = DaemonProcess::start(&scratch)?;
    let client = reqwest::Client::new();
    // The file is broken for a while, so read runs through the API.
    let base = daemon.url("/api/runs");
    let api_runs = |job: &'static str| {
        let (client, url) = (client.clone(), format!("{base}?job={job}&limit=1000"));
        async move {
            let (code, body) = get_json(&client, &url).await?;
            anyhow::ensure!(code == 200, "{body}");
            Ok::<_, anyhow::Error>(body["runs"].as_array().cloned().unwrap_or_default())
        }
    };

    let bad = job("tick", "{ action = \"ok\" }", "schedule = \"61 * * * *\"");
    scratch.write_config(&config(&bad))?;
    daemon.signal(libc::SIGHUP)?;
    let line = daemon.wait_log("reload failed", Duration::from_secs(10))?;
    let log = daemon.log();
    assert!(
        line.contains("keeping the configuration in effect"),
        "{log}"
    );
    assert!(log.contains("job `tick`, key `schedule`"), "{log}");
    assert!(
        log.contains("`61 * * * *` is not a valid cron schedule"),
        "{log}"
    );
    // The old schedule still fires.
    let count = api_runs("tick").await?.len();
    let deadline = Instant::now() + Duration::from_secs(10);
    while api_runs("tick").await?.len() <= count {
        anyhow::ensure!(
            Instant::now() < deadline,
            "tick did not fire after the bad reload"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // A good reload adds a job, which fires.
    let good = format!(
        "{tick}{}",
        job(
            "tock",
            "{ action = \"ok\" }",
            "schedule = \"*/2 * * * * *\""
        )
    );
    scratch.write_config(&config(&good))?;
    daemon.signal(libc::SIGHUP)?;
    daemon.wait_log("configuration reloaded", Duration::from_secs(10))?;
    eventually(Duration::from_secs(10), "the new job to fire", || {
        Ok(runs(&scratch, "tock")?
            .into_iter()
            .find(|r| status(r) == "succeeded"))
    })?;
    daemon.signal(libc::SIGTERM)?;
    assert_eq!(daemon.wait_exit(Duration::from_secs(30))?, Some(0));
    Ok(())
}

#[test]
fn a_public_address_without_a_token_is_refused_at_start() -> anyhow::Result<()> {
    let scratch = Scratch::new()?;
    scratch.write_config(&config(&job("j", "{ action = \"ok\" }", "")))?;
    let out = cairn(&scratch, &["daemon", "--listen", "0.0.0.0:0"])?;
    out.expect_code(2)?;
    assert!(
        out.stderr
            .contains("refusing to serve the API on 0.0.0.0:0 without a token"),
        "{out}"
    );
    Ok(())
}

#[test]
fn bad_schedules_and_time_zones_are_config_errors_with_positions() -> anyhow::Result<()> {
    let scratch = Scratch::new()?;
    let body = format!(
        "{}{}",
        job("a", "{ action = \"ok\" }", "schedule = \"every day\""),
        job(
            "b",
            "{ action = \"ok\" }",
            "schedule = \"@daily\"\ntimezone = \"Europe/Nowhere\""
        )
    );
    scratch.write_config(&config(&body))?;
    let out = cairn(&scratch, &["daemon"])?;
    out.expect_code(2)?;
    assert!(
        out.stderr.contains("job `a`, key `schedule` (line"),
        "{out}"
    );
    assert!(
        out.stderr
            .contains("`every day` is not a valid cron schedule"),
        "{out}"
    );
    assert!(
        out.stderr.contains("job `b`, key `timezone` (line"),
        "{out}"
    );
    assert!(
        out.stderr.contains("unknown time zone `Europe/Nowhere`"),
        "{out}"
    );
    Ok(())
}

/// `GET /api/runs?job=JOB` of `daemon`, newest first.
async fn api_runs(daemon: &DaemonProcess, job: &str) -> anyhow::Result<Vec<Value>> {
    let client = reqwest::Client::new();
    let (code, body) = get_json(
        &client,
        &daemon.url(&format!("/api/runs?job={job}&limit=1000")),
    )
    .await?;
    anyhow::ensure!(code == 200, "{body}");
    Ok(body["runs"].as_array().cloned().unwrap_or_default())
}

#[tokio::test(flavor = "multi_thread")]
async fn retries_back_off_webhooks_report_and_retention_runs_as_a_forget_run() -> anyhow::Result<()>
{
    let scratch = Scratch::new()?;
    let hooks = support::TestServer::start().await?;
    let body = format!(
        "[daemon]\nwebhook-origins = [\"{}\"]\n\n{}{}",
        hooks.url,
        job(
            "flaky",
            r#"{ action = "error", message = "disk on fire" }"#,
            &format!(
                "retries = {{ attempts = 3, backoff = \"1s\" }}\n\
                 notify = {{ url = \"{}/echo/fail\", on = [\"failure\"] }}",
                hooks.url
            )
        ),
        job(
            "good",
            r#"{ action = "storage-write", name = "a.txt", text = "a" }"#,
            &format!(
                "retention = {{ keep-last = 1 }}\n\
                 notify = {{ url = \"{}/echo\", on = [\"success\"] }}",
                hooks.url
            )
        ),
    );
    scratch.write_config(&config(&body))?;
    let daemon = DaemonProcess::start(&scratch)?;
    let client = reqwest::Client::new();

    // Three attempts, each after its backoff (1 s, then 2 s, half of it jittered).
    let (code, _) = post_json(&client, &daemon.url("/api/jobs/flaky/backup")).await?;
    assert_eq!(code, 202);
    let mut attempts = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while attempts.len() < 3
        || attempts
            .iter()
            .any(|r: &Value| !["failed"].contains(&status(r)))
    {
        anyhow::ensure!(
            Instant::now() < deadline,
            "no three failed attempts: {attempts:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
        attempts = api_runs(&daemon, "flaky").await?;
        attempts.reverse();
    }
    assert_eq!(attempts.len(), 3, "{attempts:?}");
    for (i, run) in attempts.iter().enumerate() {
        assert_eq!(run["attempt"], i + 1, "{run}");
        assert_eq!(run["trigger"], "api", "{run}");
        assert!(
            run["error"].as_str().unwrap_or("").contains("disk on fire"),
            "{run}"
        );
    }
    for (pair, nominal) in attempts.windows(2).zip([1000_i64, 2000]) {
        let gap = pair[1]["started_at_ms"].as_i64().unwrap_or(0)
            - pair[0]["finished_at_ms"].as_i64().unwrap_or(0);
        assert!(
            gap >= nominal / 2 - 50 && gap <= nominal + 1500,
            "retry after {gap} ms, backoff {nominal} ms: {pair:?}"
        );
    }
    // One failure webhook per attempt.
    let failures = eventually(Duration::from_secs(20), "three failure webhooks", || {
        let seen: Vec<_> = hooks
            .seen()
            .into_iter()
            .filter(|s| s.request == "POST /echo/fail")
            .collect();
        Ok((seen.len() >= 3).then_some(seen))
    })?;
    assert_eq!(failures.len(), 3);
    for hook in &failures {
        let body: Value = serde_json::from_str(&hook.body)?;
        assert_eq!(body["job"], "flaky");
        assert_eq!(body["status"], "failed");
        assert_eq!(body["event"], "failure");
    }

    // Two successful backups of `good`: success webhooks, and after each
    // the retention runs, recorded as a `forget` run that keeps one snapshot.
    for _ in 0..2 {
        let before = api_runs(&daemon, "good").await?.len();
        let (code, _) = post_json(&client, &daemon.url("/api/jobs/good/backup")).await?;
        assert_eq!(code, 202);
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let list = api_runs(&daemon, "good").await?;
            let done =
                list.len() >= before + 2 && list.iter().take(2).all(|r| status(r) == "succeeded");
            if done {
                break;
            }
            anyhow::ensure!(Instant::now() < deadline, "no backup and forget: {list:?}");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    let list = api_runs(&daemon, "good").await?;
    let kinds: Vec<&str> = list.iter().filter_map(|r| r["kind"].as_str()).collect();
    assert_eq!(kinds, ["forget", "backup", "forget", "backup"], "{list:?}");
    let last_forget: Value = serde_json::from_str(list[0]["result"].as_str().unwrap_or("{}"))?;
    assert_eq!(
        last_forget["removed"].as_array().map(Vec::len),
        Some(1),
        "{last_forget}"
    );
    assert_eq!(
        last_forget["kept"].as_array().map(Vec::len),
        Some(1),
        "{last_forget}"
    );
    let (_, shown) = get_json(
        &client,
        &daemon.url(&format!(
            "/api/runs/{}",
            list[0]["id"].as_str().unwrap_or("")
        )),
    )
    .await?;
    assert!(
        shown["logs"][0]["message"]
            .as_str()
            .unwrap_or("")
            .starts_with("retention: 1 snapshot(s) removed, 1 kept"),
        "{shown}"
    );
    let successes = eventually(Duration::from_secs(20), "two success webhooks", || {
        let seen: Vec<_> = hooks
            .seen()
            .into_iter()
            .filter(|s| s.request == "POST /echo")
            .collect();
        Ok((seen.len() >= 2).then_some(seen))
    })?;
    for hook in &successes {
        let body: Value = serde_json::from_str(&hook.body)?;
        assert_eq!(body["job"], "good");
        assert_eq!(body["kind"], "backup");
        assert_eq!(body["status"], "succeeded");
    }
    let metrics = client
        .get(daemon.url("/metrics"))
        .send()
        .await?
        .text()
        .await?;
    assert!(
        metrics.contains(r#"cairn_runs_total{job="flaky",kind="backup",status="failed"} 3"#),
        "{metrics}"
    );
    assert!(
        metrics.contains(r#"cairn_runs_total{job="good",kind="forget",status="succeeded"} 2"#),
        "{metrics}"
    );
    assert!(
        metrics.contains(r#"cairn_snapshots{job="good"} 1"#),
        "{metrics}"
    );

    // `cairn forget --prune` records its forget and prune runs too.
    let mut daemon = daemon;
    daemon.signal(libc::SIGTERM)?;
    assert_eq!(daemon.wait_exit(Duration::from_secs(30))?, Some(0));
    cairn(&scratch, &["forget", "good", "--prune"])?.expect_code(0)?;
    let forgets = runs(&scratch, "good")?;
    assert_eq!(forgets[0]["kind"], "forget", "{forgets:?}");
    assert_eq!(forgets[0]["trigger"], "cli", "{forgets:?}");
    let pruned = runs(&scratch, "(repository)")?;
    assert_eq!(pruned.len(), 1, "{pruned:?}");
    assert_eq!(pruned[0]["kind"], "prune");
    assert_eq!(status(&pruned[0]), "succeeded", "{pruned:?}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn fires_missed_while_down_are_coalesced_or_skipped_after_a_restart() -> anyhow::Result<()> {
    let scratch = Scratch::new()?;
    let body = format!(
        "{}{}",
        job("late", "{ action = \"ok\" }", "schedule = \"0 * * * * *\""),
        job(
            "skipper",
            "{ action = \"ok\" }",
            "schedule = \"0 * * * * *\"\nmissed = \"skip\""
        )
    );
    scratch.write_config(&config(&body))?;
    // A first start records the schedules; then the daemon is down.
    let mut daemon = DaemonProcess::start(&scratch)?;
    daemon.signal(libc::SIGTERM)?;
    assert_eq!(daemon.wait_exit(Duration::from_secs(30))?, Some(0));
    drop(daemon);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_millis();
    let now = i64::try_from(now)?;
    // The next full minute falls in the downtime and is more than 30 s old
    // (no longer on time) when the daemon is back.
    let missed = (now / 60_000 + 1) * 60_000;
    let back = missed + 32_000;
    tokio::time::sleep(Duration::from_millis(u64::try_from(back - now)?)).await;
    let mut daemon = DaemonProcess::start(&scratch)?;
    let late = eventually(Duration::from_secs(20), "the coalesced fire", || {
        Ok(runs(&scratch, "late")?
            .into_iter()
            .find(|r| r["scheduled_at_ms"].as_i64() == Some(missed) && status(r) == "succeeded"))
    })?;
    assert_eq!(late["trigger"], "schedule");
    daemon.wait_log("missed while no daemon ran it", Duration::from_secs(5))?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let skipped = runs(&scratch, "skipper")?;
    assert!(
        skipped
            .iter()
            .all(|r| r["scheduled_at_ms"].as_i64() != Some(missed)),
        "missed = \"skip\" ran the missed fire: {skipped:?}"
    );
    assert_eq!(
        runs(&scratch, "late")?
            .iter()
            .filter(|r| r["scheduled_at_ms"].as_i64() == Some(missed))
            .count(),
        1
    );
    daemon.signal(libc::SIGTERM)?;
    assert_eq!(daemon.wait_exit(Duration::from_secs(30))?, Some(0));
    Ok(())
}
