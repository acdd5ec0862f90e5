//! The web dashboard in a real browser: the real `cairn daemon` on loopback
//! with an API token, and headless Chromium driven over WebDriver (Debian's
//! `chromium` and `chromium-driver`; `.ci/run` installs them). The test
//! loads the dashboard, is refused with a wrong token and says so, sees the
//! jobs, starts runs and follows one live to its end with its log lines,
//! opens a job's history and snapshots, and pauses a job.
//!
//! With `CAIRN_DASHBOARD_SCREENSHOTS=DIR` it saves the pages it visits as
//! PNG files in DIR (how `docs/dashboard-*.png` are made).

use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use serde_json::{Value, json};

use crate::support::{self, Scratch};

const TOKEN: &str = "dashboard-test-token-5f0c1e";
const WAIT: Duration = Duration::from_secs(60);
/// WebDriver's key for an element reference.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

/// `cairn daemon` on a free loopback port, with its log collected.
struct Daemon {
    child: Child,
    log: Arc<Mutex<String>>,
    addr: String,
}

impl Daemon {
    fn start(scratch: &Scratch) -> anyhow::Result<Self> {
        let mut child = Command::new(support::cairn_bin())
            .args(["daemon", "--listen", "127.0.0.1:0"])
            .current_dir(scratch.dir.path())
            .env_remove("CAIRN_CONFIG")
            .env("CAIRN_LOG", "info")
            .env("XDG_CACHE_HOME", support::cli_xdg_cache_home())
            .env("CAIRN_TEST_PASSWORD", "dashboard")
            .env("CAIRN_TEST_API_TOKEN", TOKEN)
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
                let mut log = sink
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                log.push_str(&line);
                log.push('\n');
            }
        });
        let mut daemon = Self {
            child,
            log,
            addr: String::new(),
        };
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let text = daemon.log();
            if let Some(addr) = text
                .lines()
                .find_map(|l| l.split("HTTP API listening on ").nth(1))
                .and_then(|rest| rest.split_whitespace().next())
            {
                daemon.addr = addr.to_owned();
                return Ok(daemon);
            }
            if let Some(status) = daemon.child.try_wait()? {
                anyhow::bail!("cairn daemon exited ({status}) before listening:\n{text}");
            }
            anyhow::ensure!(
                Instant::now() < deadline,
                "cairn daemon did not listen within 120 s:\n{text}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn log(&self) -> String {
        self.log
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Where Debian installs the driver (or the first on `PATH`).
fn chromedriver() -> anyhow::Result<PathBuf> {
    let candidates = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .unwrap_or_default()
        .into_iter()
        .map(|dir| dir.join("chromedriver"))
        .chain([PathBuf::from("/usr/bin/chromedriver")]);
    for path in candidates {
        if path.is_file() {
            return Ok(path);
        }
    }
    anyhow::bail!(
        "chromedriver is not installed: the dashboard test drives a real browser. Install \
         Debian's packages with `apt-get install chromium chromium-driver` (.ci/run does)"
    )
}

fn chromium() -> anyhow::Result<PathBuf> {
    for path in ["/usr/bin/chromium", "/usr/bin/chromium-browser"] {
        if Path::new(path).is_file() {
            return Ok(PathBuf::from(path));
        }
    }
    anyhow::bail!(
        "chromium is not installed: install Debian's packages with \
         `apt-get install chromium chromium-driver` (.ci/run does)"
    )
}

/// A headless Chromium session over WebDriver (the W3C protocol, spoken
/// with the HTTP client the host already has).
struct Browser {
    http: reqwest::Client,
    base: String,
    session: String,
    driver: Child,
    shots: Option<PathBuf>,
}

impl Browser {
    async fn start() -> anyhow::Result<Self> {
        let driver_path = chromedriver()?;
        let binary = chromium()?;
        let port = {
            let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
            listener.local_addr()?.port()
        };
        let driver = Command::new(&driver_path)
            .arg(format!("--port={port}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .with_context(|| format!("starting {}", driver_path.display()))?;
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(60))
            .build()?;
        let base = format!("http://127.0.0.1:{port}");
        let mut browser = Self {
            http,
            base,
            session: String::new(),
            driver,
            shots: std::env::var_os("CAIRN_DASHBOARD_SCREENSHOTS").map(PathBuf::from),
        };
        // Wait until the driver answers and says it is ready.
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(r) = browser
                .http
                .get(format!("{}/status", browser.base))
                .send()
                .await
                && let Ok(body) = r.bytes().await
                && let Ok(v) = serde_json::from_slice::<Value>(&body)
                && v["value"]["ready"] == json!(true)
            {
                break;
            }
            if let Some(status) = browser.driver.try_wait()? {
                anyhow::bail!("chromedriver exited ({status}) before it was ready");
            }
            anyhow::ensure!(
                Instant::now() < deadline,
                "chromedriver did not answer within 30 s"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": binary,
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu",
                         "--disable-dev-shm-usage", "--window-size=1280,860",
                         "--force-device-scale-factor=1", "--lang=en-US"],
            },
        }}});
        let session = browser.command("POST", "/session", Some(caps)).await?;
        browser.session = session["sessionId"]
            .as_str()
            .context("no session id from chromedriver")?
            .to_owned();
        Ok(browser)
    }

    /// One WebDriver command; its `value`, or the driver's error.
    async fn command(
        &self,
        method: &str,
        path: &str,
        body: Option<Value>,
    ) -> anyhow::Result<Value> {
        let url = format!("{}{path}", self.base);
        let request = match method {
            "GET" => self.http.get(&url),
            "DELETE" => self.http.delete(&url),
            _ => self
                .http
                .post(&url)
                .header("content-type", "application/json")
                .body(serde_json::to_vec(&body.unwrap_or_else(|| json!({})))?),
        };
        let response = request
            .send()
            .await
            .with_context(|| format!("{method} {path}"))?;
        let status = response.status();
        let v: Value = serde_json::from_slice(&response.bytes().await?)?;
        anyhow::ensure!(
            status.is_success(),
            "WebDriver {method} {path}: {status} {}",
            v["value"]
        );
        Ok(v["value"].clone())
    }

    async fn session(
        &self,
        method: &str,
        path: &str,
        body: Option<Value>,
    ) -> anyhow::Result<Value> {
        self.command(method, &format!("/session/{}{path}", self.session), body)
            .await
    }

    async fn goto(&self, url: &str) -> anyhow::Result<()> {
        self.session("POST", "/url", Some(json!({ "url": url })))
            .await?;
        Ok(())
    }

    /// Run `script` in the page (its arguments are `args`).
    async fn eval(&self, script: &str, args: Value) -> anyhow::Result<Value> {
        self.session(
            "POST",
            "/execute/sync",
            Some(json!({ "script": script, "args": args })),
        )
        .await
    }

    /// The text of the first element matching `css`, if there is one and
    /// it is rendered (not `display: none`, itself or an ancestor).
    async fn text(&self, css: &str) -> anyhow::Result<Option<String>> {
        let v = self
            .eval(
                "const e = document.querySelector(arguments[0]); \
                 return e && e.getClientRects().length > 0 ? e.textContent : null;",
                json!([css]),
            )
            .await?;
        Ok(v.as_str().map(str::to_owned))
    }

    /// Wait until the text of `css` satisfies `ok`; returns it.
    async fn wait_text(
        &self,
        css: &str,
        what: &str,
        ok: impl Fn(&str) -> bool,
    ) -> anyhow::Result<String> {
        let deadline = Instant::now() + WAIT;
        loop {
            let text = self.text(css).await?;
            if let Some(text) = &text
                && ok(text)
            {
                return Ok(text.clone());
            }
            if Instant::now() >= deadline {
                let page = self.text("body").await?.unwrap_or_default();
                anyhow::bail!("{what}: `{css}` is {text:?} after {WAIT:?}; the page says:\n{page}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn element(&self, css: &str) -> anyhow::Result<String> {
        let v = self
            .session(
                "POST",
                "/element",
                Some(json!({ "using": "css selector", "value": css })),
            )
            .await
            .with_context(|| format!("finding `{css}`"))?;
        Ok(v[ELEMENT].as_str().context("element id")?.to_owned())
    }

    async fn click(&self, css: &str) -> anyhow::Result<()> {
        let id = self.element(css).await?;
        self.session("POST", &format!("/element/{id}/click"), None)
            .await?;
        Ok(())
    }

    async fn type_into(&self, css: &str, text: &str) -> anyhow::Result<()> {
        let id = self.element(css).await?;
        self.session("POST", &format!("/element/{id}/clear"), None)
            .await?;
        self.session(
            "POST",
            &format!("/element/{id}/value"),
            Some(json!({ "text": text })),
        )
        .await?;
        Ok(())
    }

    async fn hash(&self) -> anyhow::Result<String> {
        Ok(self
            .eval("return location.hash;", json!([]))
            .await?
            .as_str()
            .unwrap_or_default()
            .to_owned())
    }

    async fn set_hash(&self, hash: &str) -> anyhow::Result<()> {
        self.eval("location.hash = arguments[0];", json!([hash]))
            .await?;
        Ok(())
    }

    /// Save the page as `NAME.png` when screenshots are asked for.
    async fn screenshot(&self, name: &str) -> anyhow::Result<()> {
        let Some(dir) = &self.shots else {
            return Ok(());
        };
        let png = self.session("GET", "/screenshot", None).await?;
        let bytes = base64_decode(png.as_str().context("screenshot")?)?;
        std::fs::create_dir_all(dir)?;
        std::fs::write(dir.join(format!("{name}.png")), bytes)?;
        Ok(())
    }

    async fn quit(mut self) -> anyhow::Result<()> {
        let result = self.session("DELETE", "", None).await;
        let _ = self.driver.kill();
        let _ = self.driver.wait();
        result.map(|_| ())
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

fn base64_decode(text: &str) -> anyhow::Result<Vec<u8>> {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = Vec::with_capacity(text.len() / 4 * 3);
    let (mut acc, mut bits) = (0u32, 0u32);
    for b in text
        .bytes()
        .filter(|b| !b.is_ascii_whitespace() && *b != b'=')
    {
        let v = ALPHABET
            .iter()
            .position(|&c| c == b)
            .context("not base64")? as u32;
        acc = (acc << 6) | v;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    Ok(out)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_shows_jobs_runs_live_logs_and_controls_in_a_real_browser() -> anyhow::Result<()>
{
    let scratch = Scratch::new()?;
    let src = scratch.path("site");
    std::fs::create_dir_all(src.join("assets"))?;
    std::fs::write(src.join("index.html"), "<h1>hello</h1>\n")?;
    std::fs::write(src.join("assets/app.css"), "body { color: #333 }\n")?;
    let src = src.display().to_string();
    scratch.write_config(&format!(
        r#"[repository]
path = "repo"
password-env = "CAIRN_TEST_PASSWORD"

[daemon]
token-env = "CAIRN_TEST_API_TOKEN"

[jobs.site]
task = "builtin:directory"
params = {{ paths = [{src:?}] }}
allow.paths = {{ {src:?} = "read" }}

[jobs.nightly]
task = "builtin:directory"
params = {{ paths = [{src:?}] }}
allow.paths = {{ {src:?} = "read" }}
schedule = "0 3 * * *"
timezone = "Europe/Berlin"

[jobs.slow]
task = "builtin:command"
params = {{ command = ["sh", "-c", "echo warming up; sleep 2; echo all done"] }}
allow.commands = ["sh"]
"#
    ))?;
    let daemon = Daemon::start(&scratch)?;
    let browser = Browser::start().await?;
    let outcome = drive(&browser, &daemon).await;
    let quit = browser.quit().await;
    outcome.with_context(|| format!("daemon log:\n{}", daemon.log()))?;
    quit
}

async fn drive(browser: &Browser, daemon: &Daemon) -> anyhow::Result<()> {
    let ui = format!("http://{}/ui/", daemon.addr);
    browser.goto(&ui).await?;

    // The daemon has a token: without one the API refuses, and the page says so.
    browser
        .wait_text("#error", "refusal without a token", |t| {
            t.contains("401") && t.contains("Authorization")
        })
        .await?;
    // A wrong token is refused, in words.
    browser.type_into("#token", "not-the-token").await?;
    browser.click("#token-form button[type=submit]").await?;
    browser
        .wait_text("#error", "refusal of a wrong token", |t| {
            t.contains("the bearer token is wrong")
        })
        .await?;

    // The right token: the jobs, their schedules and states.
    browser.type_into("#token", TOKEN).await?;
    browser.click("#token-form button[type=submit]").await?;
    browser
        .wait_text("#jobs tr[data-job=nightly]", "the nightly job", |t| {
            t.contains("0 3 * * * (Europe/Berlin)") && t.contains("active")
        })
        .await?;
    browser
        .wait_text("#jobs tr[data-job=site]", "the site job", |t| {
            t.contains("never run")
        })
        .await?;
    anyhow::ensure!(
        browser.text("#error").await?.is_none(),
        "the error is gone once the token is right"
    );
    anyhow::ensure!(
        browser.text("#token-form").await?.is_none(),
        "the token form is gone once the token is right"
    );

    // Run now: the run page follows the run live until it succeeds.
    browser
        .click("button[data-action=run][data-job=slow]")
        .await?;
    browser
        .wait_text("#following", "following a running run", |t| {
            t.contains("Following")
        })
        .await?;
    browser
        .wait_text("#run-status", "the slow run to succeed", |t| {
            t == "succeeded"
        })
        .await?;
    browser
        .wait_text("#log", "the slow run's log lines", |t| {
            t.contains("all done") && t.contains("backup succeeded")
        })
        .await?;
    browser
        .wait_text("#following", "the end of the run", |t| {
            t.contains("ended: succeeded")
        })
        .await?;
    browser.screenshot("dashboard-run").await?;

    // A backup with a snapshot, then the job's history and snapshots.
    browser.set_hash("#/jobs/site").await?;
    browser
        .wait_text("main h1", "the site job's page", |t| t == "Job site")
        .await?;
    browser
        .click("button[data-action=run][data-job=site]")
        .await?;
    browser
        .wait_text("#run-status", "the site backup to succeed", |t| {
            t == "succeeded"
        })
        .await?;
    browser
        .wait_text("#log", "the site backup's log", |t| {
            t.contains("snapshot") && t.contains("committed")
        })
        .await?;
    anyhow::ensure!(browser.hash().await?.starts_with("#/runs/"));
    browser.set_hash("#/jobs/site").await?;
    browser
        .wait_text("#snapshots table", "the site job's snapshot", |t| {
            t.contains(" B")
        })
        .await?;
    browser
        .wait_text("#runs", "the site job's runs", |t| t.contains("succeeded"))
        .await?;
    browser
        .wait_text("svg.chart", "the history chart", |_| true)
        .await?;
    browser.screenshot("dashboard-job").await?;

    // Pause a job: its state changes on the page (and in the API).
    browser.set_hash("#/").await?;
    browser
        .wait_text("#jobs tr[data-job=site]", "the site job's last run", |t| {
            t.contains("succeeded")
        })
        .await?;
    browser
        .click("button[data-action=pause][data-job=nightly]")
        .await?;
    browser
        .wait_text(
            "#jobs tr[data-job=nightly] [data-state]",
            "the nightly job paused",
            |t| t == "paused",
        )
        .await?;
    browser
        .wait_text(
            "button[data-job=nightly][data-action=resume]",
            "a resume button",
            |t| t == "Resume",
        )
        .await?;
    browser.screenshot("dashboard-jobs").await?;
    Ok(())
}
