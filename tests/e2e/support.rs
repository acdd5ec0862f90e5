//! Support for Cairn's end-to-end tests (the `e2e` test binary of package `cairn`): a scratch directory with a config
//! file, a runner over a real wasmtime runtime, the compiled test guest, and
//! a loopback HTTP server that records what it receives.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context as _;
use axum::Router;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{any, get};
use cairn::runner::{RunOptions, RunReport, Runner};
use cairn::runtime::Runtime;
use cairn::state::RunKind;
use cairn::state::sqlite::SqliteStore;
use serde_json::{Map, Value, json};

/// Path of the compiled test guest (`tasks/testing/test-guest`).
pub fn test_guest() -> PathBuf {
    Path::new(cairn::builtins::test_programs_dir()).join("test_guest.wasm")
}

/// The workspace root.
pub fn workspace_root() -> PathBuf {
    // CARGO_MANIFEST_DIR is `host/`: these tests belong to the `cairn` package.
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// Compile cache shared by the tests (under `target/`).
pub fn test_cache_dir() -> PathBuf {
    workspace_root().join("target").join("test-compile-cache")
}

/// Path of the `cairn` binary built for these tests.
pub fn cairn_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_cairn"))
}

/// A scratch directory holding `cairn.toml`, state and anything else a test needs.
pub struct Scratch {
    /// The directory (removed on drop).
    pub dir: tempfile::TempDir,
}

impl Scratch {
    /// A new empty scratch directory.
    ///
    /// # Errors
    /// When the directory cannot be created.
    pub fn new() -> anyhow::Result<Self> {
        Ok(Self {
            dir: tempfile::Builder::new().prefix("cairn-test-").tempdir()?,
        })
    }

    /// Path inside the scratch directory.
    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    /// Write `cairn.toml` with `body` after a `[runtime]` section pointing at
    /// the shared test compile cache. Returns its path.
    ///
    /// # Errors
    /// When the file cannot be written.
    pub fn write_config(&self, body: &str) -> anyhow::Result<PathBuf> {
        let path = self.path("cairn.toml");
        let text = format!(
            "[runtime]\ncache-dir = {:?}\n\n{body}",
            test_cache_dir().display().to_string()
        );
        std::fs::write(&path, text)?;
        Ok(path)
    }

    /// Load the config written by [`Scratch::write_config`] into a runner.
    ///
    /// # Errors
    /// When the config is invalid or the state store cannot be opened.
    pub fn runner(&self, body: &str) -> anyhow::Result<Runner> {
        let path = self.write_config(body)?;
        let config = cairn::config::load(&path)?;
        let store = Arc::new(SqliteStore::open(&config.state_path)?);
        let runtime = Runtime::new(Some(&config.cache_dir))?;
        Ok(Runner::new(config, runtime, store))
    }
}

/// A job section running the test guest, with extra lines (limits, allow …).
pub fn guest_job(name: &str, extra: &str) -> String {
    format!(
        "[jobs.{name}]\ntask = {:?}\n{extra}\n",
        test_guest().display().to_string()
    )
}

/// Run the backup of `job` with `params` as overrides.
///
/// # Errors
/// Unknown job or a state store failure (a failed run is an Ok report).
pub async fn backup(runner: &Runner, job: &str, params: Value) -> anyhow::Result<RunReport> {
    let overrides: Map<String, Value> = match params {
        Value::Object(m) => m,
        _ => anyhow::bail!("params must be an object"),
    };
    runner
        .run(
            job,
            RunKind::Backup,
            RunOptions {
                overrides,
                ..RunOptions::default()
            },
        )
        .await
}

/// The error of a failed run, or an error if it succeeded.
///
/// # Errors
/// When the run succeeded.
pub fn run_error(report: &RunReport) -> anyhow::Result<String> {
    report.run.error.clone().with_context(|| {
        format!(
            "expected the run to fail, it ended {:?} with {:?}",
            report.run.status, report.result
        )
    })
}

/// What the loopback server saw.
#[derive(Debug, Clone)]
pub struct Seen {
    /// Method and path.
    pub request: String,
    /// Request headers.
    pub headers: BTreeMap<String, String>,
    /// Request body.
    pub body: String,
}

/// A loopback HTTP server for grant tests. Routes:
/// - `/json` → `{"ok": true}`
/// - `/echo` (any method) → records the request, returns `{"method", "headers", "body"}`
/// - `/status/{code}` → that status with a small JSON body
/// - `/redirect?to=URL` → 302 to URL
/// - `/big?bytes=N` → N bytes
/// - `/slow?ms=N` → waits N ms, then `{"slow": true}`
/// - `/poll/{key}?ready=N&fail=M` → `{"state": "PENDING", "polls": K}` on
///   the K-th request for `key`, `"DONE"` from the N-th on, `"FAILED"` from
///   the M-th on (polls are recorded in [`TestServer::seen`])
pub struct TestServer {
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    /// Requests received on `/echo` and `/poll`.
    pub seen: Arc<Mutex<Vec<Seen>>>,
    _task: tokio::task::JoinHandle<()>,
}

impl TestServer {
    /// Start on an ephemeral loopback port.
    ///
    /// # Errors
    /// When the port cannot be bound.
    pub async fn start() -> anyhow::Result<Self> {
        let seen: Arc<Mutex<Vec<Seen>>> = Arc::default();
        let app = Router::new()
            .route("/json", get(|| async { axum::Json(json!({"ok": true})) }))
            .route("/echo", any(echo))
            .route("/echo/fail", any(echo))
            .route("/status/{code}", any(status))
            .route("/redirect", get(redirect))
            .route("/big", get(big))
            .route("/slow", get(slow))
            .route("/poll/{key}", get(poll))
            .with_state(seen.clone());
        let listener = tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0))).await?;
        let addr = listener.local_addr()?;
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(Self {
            url: format!("http://{addr}"),
            seen,
            _task: task,
        })
    }

    /// Requests seen on `/echo` and `/poll` so far.
    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

async fn echo(
    State(seen): State<Arc<Mutex<Vec<Seen>>>>,
    method: axum::http::Method,
    uri: axum::http::Uri,
    headers: HeaderMap,
    body: String,
) -> axum::Json<Value> {
    let headers: BTreeMap<String, String> = headers
        .iter()
        .map(|(k, v)| {
            (
                k.to_string(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect();
    seen.lock().unwrap().push(Seen {
        request: format!("{method} {}", uri.path()),
        headers: headers.clone(),
        body: body.clone(),
    });
    axum::Json(json!({"method": method.as_str(), "headers": headers, "body": body}))
}

async fn status(axum::extract::Path(code): axum::extract::Path<u16>) -> Response {
    let code = StatusCode::from_u16(code).unwrap_or(StatusCode::BAD_REQUEST);
    (code, axum::Json(json!({"status": code.as_u16()}))).into_response()
}

async fn redirect(Query(q): Query<BTreeMap<String, String>>) -> Response {
    match q.get("to") {
        Some(to) => Redirect::to(to).into_response(),
        None => StatusCode::BAD_REQUEST.into_response(),
    }
}

async fn big(Query(q): Query<BTreeMap<String, String>>) -> Vec<u8> {
    let n: usize = q.get("bytes").and_then(|b| b.parse().ok()).unwrap_or(0);
    vec![b'x'; n]
}

async fn slow(Query(q): Query<BTreeMap<String, String>>) -> axum::Json<Value> {
    let ms: u64 = q.get("ms").and_then(|b| b.parse().ok()).unwrap_or(0);
    tokio::time::sleep(Duration::from_millis(ms)).await;
    axum::Json(json!({"slow": true}))
}

async fn poll(
    State(seen): State<Arc<Mutex<Vec<Seen>>>>,
    axum::extract::Path(key): axum::extract::Path<String>,
    Query(q): Query<BTreeMap<String, u64>>,
) -> axum::Json<Value> {
    let request = format!("GET /poll/{key}");
    let polls = {
        let mut seen = seen.lock().unwrap();
        seen.push(Seen {
            request: request.clone(),
            headers: BTreeMap::new(),
            body: String::new(),
        });
        seen.iter().filter(|s| s.request == request).count() as u64
    };
    let reached = |param: &str| q.get(param).is_some_and(|n| polls >= *n);
    let state = if reached("fail") {
        "FAILED"
    } else if reached("ready") {
        "DONE"
    } else {
        "PENDING"
    };
    axum::Json(json!({"state": state, "polls": polls}))
}

// ---------------------------------------------------------------------------
// The `cairn` binary as a child process
// ---------------------------------------------------------------------------

/// How long one `cairn` invocation may take before it is killed.
const CAIRN_TIMEOUT: Duration = Duration::from_secs(300);

/// What one `cairn` invocation printed and how it exited.
#[derive(Debug, Clone)]
pub struct CliOutput {
    /// The command line, for messages.
    pub command: String,
    /// Exit code (`None`: killed by a signal or the timeout).
    pub code: Option<i32>,
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
}

impl CliOutput {
    /// Standard output parsed as one JSON document; for a run's
    /// newline-delimited `status` and `summary` messages, the `summary`.
    ///
    /// # Errors
    /// When it is not JSON.
    pub fn json(&self) -> anyhow::Result<Value> {
        let text = self.stdout.trim();
        serde_json::from_str(text)
            .or_else(|e| {
                let messages: Vec<Value> = text
                    .lines()
                    .map(serde_json::from_str)
                    .collect::<Result<_, _>>()
                    .map_err(|_| e)?;
                Ok::<_, serde_json::Error>(
                    messages
                        .into_iter()
                        .rev()
                        .find(|m| m["message_type"] == "summary")
                        .unwrap_or(Value::Null),
                )
            })
            .with_context(|| format!("stdout of `{}` is not JSON\n{self}", self.command))
    }

    /// Fail unless the exit code is `code`.
    ///
    /// # Errors
    /// When it exited otherwise.
    pub fn expect_code(&self, code: i32) -> anyhow::Result<&Self> {
        anyhow::ensure!(
            self.code == Some(code),
            "expected `{}` to exit with {code}\n{self}",
            self.command
        );
        Ok(self)
    }
}

impl std::fmt::Display for CliOutput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "$ {}\nexit code: {:?}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.command, self.code, self.stdout, self.stderr
        )
    }
}

/// Cache directory for `cairn` runs without a config (`$XDG_CACHE_HOME`), under `target/`.
pub fn cli_xdg_cache_home() -> PathBuf {
    workspace_root().join("target").join("e2e-xdg-cache")
}

/// Run the `cairn` binary with `args` in `dir` and wait for it (at most
/// five minutes). Logging is quiet (`CAIRN_LOG=warn`), `CAIRN_CONFIG` is
/// unset and `XDG_CACHE_HOME` points under `target/`, so the default config
/// is `dir/cairn.toml` and nothing is written to `$HOME`.
///
/// # Errors
/// When the binary cannot be started or does not finish in time.
pub fn cairn(args: &[&str], dir: &Path) -> anyhow::Result<CliOutput> {
    cairn_with_env(args, dir, &[])
}

/// [`cairn`] with extra environment variables.
///
/// # Errors
/// When the binary cannot be started or does not finish in time.
pub fn cairn_with_env(
    args: &[&str],
    dir: &Path,
    env: &[(&str, &str)],
) -> anyhow::Result<CliOutput> {
    let mut command = std::process::Command::new(cairn_bin());
    command
        .args(args)
        .current_dir(dir)
        .env_remove("CAIRN_CONFIG")
        .env("CAIRN_LOG", "warn")
        .env("XDG_CACHE_HOME", cli_xdg_cache_home())
        .envs(env.iter().copied());
    let rendered = std::iter::once("cairn".to_owned())
        .chain(args.iter().map(|a| {
            if a.contains(' ') {
                format!("'{a}'")
            } else {
                (*a).to_owned()
            }
        }))
        .collect::<Vec<_>>()
        .join(" ");
    let output = run_with_timeout(command, CAIRN_TIMEOUT)
        .with_context(|| format!("running `{rendered}` in {}", dir.display()))?;
    Ok(CliOutput {
        command: rendered,
        code: output.status.code(),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    })
}

/// Run `command` with stdin closed and output captured; kill it after `timeout`.
///
/// # Errors
/// When it cannot be started or runs out of time.
pub fn run_with_timeout(
    mut command: std::process::Command,
    timeout: Duration,
) -> anyhow::Result<std::process::Output> {
    use std::io::Read;
    use std::process::Stdio;

    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("cannot start {:?}", command.get_program()))?;
    let drain = |mut pipe: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut bytes = Vec::new();
            let _ = pipe.read_to_end(&mut bytes);
            bytes
        })
    };
    let stdout = drain(Box::new(child.stdout.take().context("stdout")?));
    let stderr = drain(Box::new(child.stderr.take().context("stderr")?));
    let deadline = std::time::Instant::now() + timeout;
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break status;
        }
        if std::time::Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            anyhow::bail!(
                "{:?} did not finish within {timeout:?}",
                command.get_program()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    Ok(std::process::Output {
        status,
        stdout: stdout.join().unwrap_or_default(),
        stderr: stderr.join().unwrap_or_default(),
    })
}
