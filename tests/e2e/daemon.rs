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

const PASSWORD: &str = "daemon test password";
const PASSWORD_ENV: &str = "CAIRN_TEST_PASSWORD";

/// A `cairn daemon` child process whose log is collected.
struct DaemonProcess {
    child: Child,
    log: Arc<Mutex<String>>,
    addr: String,
}

impl DaemonProcess {
    /// Start `cairn daemon --listen 127.0.0.1:0` in `scratch` and wait for
    /// the API's address in its log.
    fn start(scratch: &Scratch) -> anyhow::Result<Self> {
        let mut child = Command::new(support::cairn_bin())
            .args(["daemon", "--listen", "127.0.0.1:0"])
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

    fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    /// Wait for a log line containing `needle`; returns it.
    fn wait_log(&mut self, needle: &str, within: Duration) -> anyhow::Result<String> {
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

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    fn signal(&self, signal: i32) -> anyhow::Result<()> {
        let pid = i32::try_from(self.child.id())?;
        // SAFETY: sending a signal to our own child process.
        let rc = unsafe { libc::kill(pid, signal) };
        anyhow::ensure!(rc == 0, "kill({pid}, {signal}) failed");
        Ok(())
    }

    /// Wait for the process to exit; its exit code.
    fn wait_exit(&mut self, within: Duration) -> anyhow::Result<Option<i32>> {
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
fn eventually<T>(
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
    // Writes an artifact, then takes 2 s: long enough to be killed mid-run.
    let slow = r#"{ action = "steps", steps = [{ action = "storage-write", name = "data.txt", text = "hello" }, { action = "sleep", ms = 2000 }] }"#;
    scratch.write_config(&config(&job("slow", slow, "schedule = \"*/3 * * * * *\"")))?;
    cairn(&scratch, &["init"])?.expect_code(0)?;

    let mut daemon = DaemonProcess::start(&scratch)?;
    let running = eventually(Duration::from_secs(30), "a running backup", || {
        Ok(runs(&scratch, "slow")?
            .into_iter()
            .find(|r| status(r) == "running"))
    })?;
    daemon.signal(libc::SIGKILL)?;
    daemon.wait_exit(Duration::from_secs(10))?;
    drop(daemon);

    let killed = runs(&scratch, "slow")?
        .into_iter()
        .find(|r| r["id"] == running["id"])
        .context("the killed run")?;
    assert_eq!(status(&killed), "interrupted", "{killed}");

    let mut daemon = DaemonProcess::start(&scratch)?;
    let ok = eventually(
        Duration::from_secs(30),
        "a successful backup after restart",
        || {
            Ok(runs(&scratch, "slow")?
                .into_iter()
                .find(|r| status(r) == "succeeded"))
        },
    )?;
    assert!(ok["snapshot_id"].is_string(), "{ok}");
    daemon.signal(libc::SIGTERM)?;
    assert_eq!(daemon.wait_exit(Duration::from_secs(30))?, Some(0));

    cairn(&scratch, &["check"])?.expect_code(0)?;
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
