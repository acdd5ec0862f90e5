//! The daemon's HTTP API (axum): health, Prometheus metrics, jobs and run
//! history, and a few controls (run a backup now, pause, resume).
//!
//! | method and path | answer |
//! |---|---|
//! | `GET /healthz` | `200 {"status":"ok"}`, never needs the token |
//! | `GET /metrics` | Prometheus text format 0.0.4 (see [`super::metrics`]) |
//! | `GET /api/jobs` | `{"jobs": [JobView…]}` |
//! | `GET /api/jobs/NAME` | one [`JobView`] |
//! | `GET /api/runs?job=J&status=S&limit=N` | `{"runs": [RunRecord…]}`, newest first |
//! | `GET /api/runs/ID` | `{"run": RunRecord, "logs": [LogLine…]}` |
//! | `GET /api/runs/ID/events` | server-sent events: `log` (each line, from the first), `run` (the record, when its status changes), `end` |
//! | `GET /api/jobs/NAME/snapshots` | `{"snapshots": [SnapshotInfo…]}`, oldest first |
//! | `GET /`, `/ui/…` | the dashboard ([`super::dashboard`]): static files, no token needed; they call this API with it |
//! | `POST /api/jobs/NAME/backup` | `202` with the queued run; `409` when the job's concurrency policy refuses |
//! | `POST /api/jobs/NAME/pause`, `…/resume` | `200` with the job |
//!
//! Restores are deliberately not available (`403`): a restore overwrites live
//! data, needs a snapshot and a target chosen by a person, and a leaked token
//! must not be enough to destroy a database. Run `cairn restore` on the host.
//!
//! Every error is JSON, `{"error": "what went wrong and what to do", …}` with
//! the job or run named in an extra field. The API binds to loopback by
//! default; [`serve`] refuses any other address unless a bearer token is
//! configured, and with a token every endpoint but `/healthz` answers `401`
//! (with `WWW-Authenticate: Bearer`) to a request without it. The OpenAPI
//! description is `docs/api.yaml`.

use std::future::Future;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;

use anyhow::Context as _;
use axum::Router;
use axum::extract::{Path, RawQuery, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::middleware::{self, Next};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Serialize;
use serde_json::{Value, json};

use super::dashboard;
use super::metrics::Metrics;
pub use super::view::JobView;
#[cfg(test)]
use super::view::rfc3339_millis;
use crate::repository::SnapshotInfo;
use crate::state::{LogLine, RunKind, RunRecord, RunStatus, StateError, StateStore};

/// Why a control action failed; decides the HTTP status.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    /// No job with this name (the `String` is the name). `404`.
    #[error("no job named `{0}`")]
    NotFound(String),
    /// The action conflicts with the job's state, e.g. a backup is already
    /// running and the concurrency policy is `forbid`. The `String` is the
    /// whole message, naming the job. `409`.
    #[error("{0}")]
    Conflict(String),
    /// Anything else (the store failed …). `500`.
    #[error(transparent)]
    Other(#[from] anyhow::Error),
}

/// What the API needs from the daemon. Implemented by the daemon core; the
/// tests use a fake.
#[async_trait::async_trait]
pub trait DaemonControl: Send + Sync + 'static {
    /// Every configured job, sorted by name.
    fn jobs(&self) -> Vec<JobView>;

    /// One job. The default searches [`DaemonControl::jobs`]; override it
    /// when that is costly (it reads every job's last run).
    fn job(&self, name: &str) -> Option<JobView> {
        self.jobs().into_iter().find(|j| j.name == name)
    }

    /// Every job, `last_run` possibly left `None`: what `/metrics` needs
    /// (paused, next fire) on every scrape. The default is
    /// [`DaemonControl::jobs`]; override it with something that does not
    /// read the run history when there are many jobs.
    fn jobs_brief(&self) -> Vec<JobView> {
        self.jobs()
    }

    /// The run history.
    fn store(&self) -> Arc<dyn StateStore>;

    /// Start a run of `job` now (outside its schedule). Returns the run as
    /// recorded (queued or running) without waiting for it to end.
    ///
    /// # Errors
    /// [`ControlError::NotFound`] for an unknown job, [`ControlError::Conflict`]
    /// when the job's concurrency policy refuses a second run.
    async fn trigger(&self, job: &str, kind: RunKind) -> Result<RunRecord, ControlError>;

    /// Pause or resume a job's schedule (persisted).
    ///
    /// # Errors
    /// [`ControlError::NotFound`] for an unknown job.
    fn set_paused(&self, job: &str, paused: bool) -> Result<(), ControlError>;

    /// The daemon's metrics.
    fn metrics(&self) -> Arc<Metrics>;

    /// The snapshots of `job` in the repository, oldest first. The default
    /// has none (no repository).
    ///
    /// # Errors
    /// [`ControlError::NotFound`] for an unknown job; the repository failing.
    async fn snapshots(&self, job: &str) -> Result<Vec<SnapshotInfo>, ControlError> {
        self.job(job)
            .map(|_| Vec::new())
            .ok_or_else(|| ControlError::NotFound(job.to_owned()))
    }
}

/// Where and how the API listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiConfig {
    /// Address to bind (default `127.0.0.1:8484`, `config::DEFAULT_LISTEN`).
    /// A non-loopback address needs a token.
    pub listen: SocketAddr,
    /// Bearer token every request but `/healthz` must carry, if set.
    pub token: Option<String>,
}

impl ApiConfig {
    /// The default port, on loopback.
    pub const DEFAULT_PORT: u16 = 8484;
}

impl Default for ApiConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from((Ipv4Addr::LOCALHOST, Self::DEFAULT_PORT)),
            token: None,
        }
    }
}

/// Most runs `GET /api/runs` returns at once, and its default.
const MAX_LIMIT: usize = 1000;
const DEFAULT_LIMIT: usize = 50;
/// How many recent runs a `status=` filter looks through.
const STATUS_SCAN: usize = 10_000;

/// Check `cfg` and bind its address, then serve the API in a background task
/// until `shutdown` completes (in-flight requests are finished first).
/// Returns the bound address (useful with port 0).
///
/// # Errors
/// Before serving anything: a non-loopback address without a token, an empty
/// token, or an address that cannot be bound (in use, not local, no
/// permission), each said plainly.
pub async fn serve(
    cfg: ApiConfig,
    control: Arc<dyn DaemonControl>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<SocketAddr> {
    check_exposure(&cfg)?;
    let listener = tokio::net::TcpListener::bind(cfg.listen)
        .await
        .with_context(|| {
            format!(
                "cannot listen on {} for the HTTP API (is another process using the port?)",
                cfg.listen
            )
        })?;
    let bound = listener
        .local_addr()
        .context("cannot read the HTTP API's bound address")?;
    let app = router(control, cfg.token);
    tokio::spawn(async move {
        if let Err(err) = axum::serve(listener, app)
            .with_graceful_shutdown(shutdown)
            .await
        {
            tracing::error!(address = %bound, "HTTP API stopped: {err}");
        }
    });
    Ok(bound)
}

/// Refuse to expose the API beyond this machine without a token.
fn check_exposure(cfg: &ApiConfig) -> anyhow::Result<()> {
    if cfg.token.as_deref().is_some_and(|t| t.trim().is_empty()) {
        anyhow::bail!("the HTTP API token is empty: set a long random token, or none at all");
    }
    if cfg.token.is_none() && !cfg.listen.ip().to_canonical().is_loopback() {
        anyhow::bail!(
            "refusing to serve the HTTP API on {} without a bearer token: anyone who can reach \
             that address could run and pause jobs. Set `token-env` or `token-file` in \
             [daemon], or listen on a loopback address such as 127.0.0.1:{}",
            cfg.listen,
            cfg.listen.port()
        );
    }
    Ok(())
}

#[derive(Clone)]
struct AppState {
    control: Arc<dyn DaemonControl>,
}

/// The API's routes. With `token`, every route but `/healthz` requires
/// `Authorization: Bearer TOKEN`.
pub fn router(control: Arc<dyn DaemonControl>, token: Option<String>) -> Router {
    let api = Router::new()
        .route("/metrics", get(metrics))
        .route("/api/jobs", get(list_jobs))
        .route("/api/jobs/{name}", get(show_job))
        .route("/api/jobs/{name}/backup", post(backup))
        .route("/api/jobs/{name}/restore", post(restore))
        .route("/api/jobs/{name}/pause", post(pause))
        .route("/api/jobs/{name}/resume", post(resume))
        .route("/api/runs", get(list_runs))
        .route("/api/runs/{id}", get(show_run))
        .route("/api/runs/{id}/events", get(run_events))
        .route("/api/jobs/{name}/snapshots", get(job_snapshots))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed);
    let has_token = token.is_some();
    let api = match token {
        Some(token) => {
            let expected: Arc<[u8; 32]> = Arc::new(digest(token.as_bytes()));
            api.layer(middleware::from_fn(move |req: Request, next: Next| {
                let expected = Arc::clone(&expected);
                async move { authorize(&expected, req, next).await }
            }))
        }
        None => api,
    };
    Router::new()
        .route("/healthz", get(healthz))
        .merge(dashboard::routes())
        .merge(api)
        .layer(middleware::from_fn(dashboard::security_headers))
        .layer(middleware::from_fn(
            move |req: Request, next: Next| async move {
                match check_request_origin(req.headers(), req.method(), has_token) {
                    Ok(()) => next.run(req).await,
                    Err(refusal) => refusal.into_response(),
                }
            },
        ))
        .with_state(AppState { control })
}

/// Guard against other web pages driving the API from the operator's
/// browser. Without a token, the `Host` must be a loopback name (a page
/// whose own name resolves to 127.0.0.1, DNS rebinding, sends its own name).
/// A state-changing request from a browser must come from the API's own
/// origin (`Origin`, `Sec-Fetch-Site`).
fn check_request_origin(
    headers: &HeaderMap,
    method: &Method,
    has_token: bool,
) -> Result<(), ApiError> {
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .map(str::to_ascii_lowercase);
    if !has_token
        && let Some(host) = &host
        && !is_loopback_host(host)
    {
        return Err(ApiError::new(
            StatusCode::MISDIRECTED_REQUEST,
            format!(
                "refusing a request for host `{host}`: without a token the API answers only \
                 loopback names (localhost, 127.0.0.1, [::1]); set `token-env` or `token-file` \
                 in [daemon] to serve other names"
            ),
        ));
    }
    let changes_state = !matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS);
    if !changes_state {
        return Ok(());
    }
    if let Some(site) = headers.get("sec-fetch-site").and_then(|v| v.to_str().ok())
        && matches!(site, "cross-site" | "same-site")
    {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            format!(
                "refusing a {site} {method} request: the API changes state only for its own pages and for clients that are not browsers"
            ),
        ));
    }
    if let Some(origin) = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()) {
        let same = host.as_deref().is_some_and(|host| {
            let origin = origin.to_ascii_lowercase();
            origin == format!("http://{host}") || origin == format!("https://{host}")
        });
        if !same {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                format!("refusing a cross-site {method} request from origin {origin}"),
            ));
        }
    }
    Ok(())
}

/// Whether `host` (a `Host` header, with or without port) names this machine's loopback.
fn is_loopback_host(host: &str) -> bool {
    let name = if let Some(rest) = host.strip_prefix('[') {
        rest.split(']').next().unwrap_or_default()
    } else {
        host.rsplit_once(':').map_or(host, |(name, port)| {
            if port.bytes().all(|b| b.is_ascii_digit()) {
                name
            } else {
                host
            }
        })
    };
    let name = name.trim_end_matches('.');
    name == "localhost"
        || name.ends_with(".localhost")
        || name
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.to_canonical().is_loopback())
}

// ---------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------

/// A JSON error answer: `{"error": message, …extra}`.
#[derive(Debug)]
struct ApiError {
    status: StatusCode,
    body: Value,
}

impl ApiError {
    fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            body: json!({ "error": message.into() }),
        }
    }

    /// Add `"key": value` to the body.
    fn with(mut self, key: &str, value: impl Into<Value>) -> Self {
        if let Some(body) = self.body.as_object_mut() {
            body.insert(key.to_owned(), value.into());
        }
        self
    }

    fn no_job(name: &str) -> Self {
        Self::new(StatusCode::NOT_FOUND, format!("no job named `{name}`")).with("job", name)
    }

    fn internal(err: impl std::fmt::Display) -> Self {
        tracing::error!("HTTP API: {err}");
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, err.to_string())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, axum::Json(self.body)).into_response()
    }
}

impl From<ControlError> for ApiError {
    fn from(err: ControlError) -> Self {
        match err {
            ControlError::NotFound(name) => Self::no_job(&name),
            ControlError::Conflict(message) => Self::new(StatusCode::CONFLICT, message),
            ControlError::Other(err) => Self::internal(format!("{err:#}")),
        }
    }
}

/// Store errors: an unknown run is a 404 naming it, the rest are 500s.
fn store_error(err: StateError) -> ApiError {
    match err {
        StateError::NoSuchRun(id) => {
            ApiError::new(StatusCode::NOT_FOUND, format!("no run with id `{id}`")).with("run", id)
        }
        other => ApiError::internal(other),
    }
}

async fn not_found(method: Method, uri: Uri) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        format!("no endpoint {method} {}", uri.path()),
    )
}

async fn method_not_allowed(method: Method, uri: Uri) -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        format!("{} does not accept {method}", uri.path()),
    )
}

// ---------------------------------------------------------------------------
// Authentication
// ---------------------------------------------------------------------------

fn digest(bytes: &[u8]) -> [u8; 32] {
    use sha2::Digest as _;
    sha2::Sha256::digest(bytes).into()
}

/// Whether two digests are equal, in time independent of where they differ.
/// Comparing digests rather than the tokens also hides the token's length.
fn constant_time_eq(a: &[u8; 32], b: &[u8; 32]) -> bool {
    let diff = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    std::hint::black_box(diff) == 0
}

async fn authorize(expected: &[u8; 32], req: Request, next: Next) -> Response {
    let given = bearer_token(req.headers());
    if given.is_some_and(|token| constant_time_eq(&digest(token.as_bytes()), expected)) {
        return next.run(req).await;
    }
    let message = if given.is_some() {
        "the bearer token is wrong"
    } else {
        "this endpoint needs `Authorization: Bearer TOKEN` (the daemon's API token)"
    };
    let mut response = ApiError::new(StatusCode::UNAUTHORIZED, message).into_response();
    response.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static("Bearer realm=\"cairn\""),
    );
    response
}

/// The token of an `Authorization: Bearer TOKEN` header (scheme case-insensitive).
fn bearer_token(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|t| !t.is_empty())
}

// ---------------------------------------------------------------------------
// Handlers
// ---------------------------------------------------------------------------

async fn healthz() -> axum::Json<Value> {
    axum::Json(json!({ "status": "ok" }))
}

async fn metrics(State(state): State<AppState>) -> Result<Response, ApiError> {
    let text = blocking(&state.control, |c| Ok(c.metrics().render(&c.jobs_brief()))).await?;
    Ok((
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
        )],
        text,
    )
        .into_response())
}

/// Run `f` on the blocking pool: the control's methods read the state store
/// (SQLite), which must not stall the async workers.
async fn blocking<T: Send + 'static>(
    control: &Arc<dyn DaemonControl>,
    f: impl FnOnce(&dyn DaemonControl) -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    let control = Arc::clone(control);
    tokio::task::spawn_blocking(move || f(&*control))
        .await
        .map_err(ApiError::internal)?
}

async fn list_jobs(State(state): State<AppState>) -> Result<axum::Json<Value>, ApiError> {
    blocking(&state.control, |c| {
        Ok(axum::Json(json!({ "jobs": c.jobs() })))
    })
    .await
}

fn find_job(control: &dyn DaemonControl, name: &str) -> Result<JobView, ApiError> {
    control.job(name).ok_or_else(|| ApiError::no_job(name))
}

async fn show_job(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<axum::Json<JobView>, ApiError> {
    blocking(&state.control, move |c| find_job(c, &name).map(axum::Json)).await
}

async fn backup(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    let run = state.control.trigger(&name, RunKind::Backup).await?;
    let location = HeaderValue::from_str(&format!("/api/runs/{}", run.id)).ok();
    let mut response = (StatusCode::ACCEPTED, axum::Json(json!({ "run": run }))).into_response();
    if let Some(location) = location {
        response.headers_mut().insert(header::LOCATION, location);
    }
    Ok(response)
}

async fn restore(Path(name): Path<String>) -> ApiError {
    ApiError::new(
        StatusCode::FORBIDDEN,
        format!(
            "restores are not available over the HTTP API: a restore overwrites live data. \
             Run `cairn restore {name}` on the host instead"
        ),
    )
    .with("job", name)
}

async fn pause(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<axum::Json<JobView>, ApiError> {
    blocking(&state.control, move |c| set_paused(c, &name, true)).await
}

async fn resume(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<axum::Json<JobView>, ApiError> {
    blocking(&state.control, move |c| set_paused(c, &name, false)).await
}

fn set_paused(
    control: &dyn DaemonControl,
    name: &str,
    paused: bool,
) -> Result<axum::Json<JobView>, ApiError> {
    control.set_paused(name, paused)?;
    find_job(control, name).map(axum::Json)
}

/// The parameters of `GET /api/runs`.
#[derive(Debug, Default, PartialEq)]
struct RunsQuery {
    job: Option<String>,
    status: Option<RunStatus>,
    limit: usize,
}

impl RunsQuery {
    /// Parse `job=J&status=S&limit=N` strictly: unknown parameters and bad
    /// values are errors saying what is accepted.
    fn parse(query: Option<&str>) -> Result<Self, ApiError> {
        let bad = |message: String| ApiError::new(StatusCode::BAD_REQUEST, message);
        let mut parsed = Self {
            limit: DEFAULT_LIMIT,
            ..Self::default()
        };
        for (key, value) in url::form_urlencoded::parse(query.unwrap_or_default().as_bytes()) {
            match &*key {
                "job" => parsed.job = Some(value.into_owned()),
                "status" => {
                    let status = RunStatus::parse(&value).ok_or_else(|| {
                        let all: Vec<_> = RunStatus::ALL.iter().map(|s| s.as_str()).collect();
                        bad(format!(
                            "unknown status `{value}`; expected one of {}",
                            all.join(", ")
                        ))
                        .with("parameter", "status")
                    })?;
                    parsed.status = Some(status);
                }
                "limit" => {
                    parsed.limit = value
                        .parse()
                        .ok()
                        .filter(|n| (1..=MAX_LIMIT).contains(n))
                        .ok_or_else(|| {
                            bad(format!(
                                "limit `{value}` must be a whole number from 1 to {MAX_LIMIT}"
                            ))
                            .with("parameter", "limit")
                        })?;
                }
                other => {
                    return Err(bad(format!(
                        "unknown query parameter `{other}`; expected job, status or limit"
                    ))
                    .with("parameter", other));
                }
            }
        }
        Ok(parsed)
    }
}

async fn list_runs(
    State(state): State<AppState>,
    RawQuery(query): RawQuery,
) -> Result<axum::Json<Value>, ApiError> {
    let query = RunsQuery::parse(query.as_deref())?;
    blocking(&state.control, move |control| {
        let store = control.store();
        let job = query.job.as_deref();
        let runs = match query.status {
            None => store.runs(job, query.limit).map_err(store_error)?,
            Some(status) => store
                .runs(job, STATUS_SCAN)
                .map_err(store_error)?
                .into_iter()
                .filter(|r| r.status == status)
                .take(query.limit)
                .collect(),
        };
        // A job with history but no longer configured is fine; one with
        // neither is probably a typo.
        if let Some(job) = job {
            if runs.is_empty()
                && control.job(job).is_none()
                && store.runs(Some(job), 1).map_err(store_error)?.is_empty()
            {
                return Err(ApiError::no_job(job));
            }
        }
        Ok(axum::Json(json!({ "runs": runs })))
    })
    .await
}

/// `GET /api/runs/ID`.
#[derive(Serialize)]
struct RunDetail {
    run: RunRecord,
    logs: Vec<LogLine>,
}

async fn show_run(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<axum::Json<RunDetail>, ApiError> {
    let store = state.control.store();
    tokio::task::spawn_blocking(move || {
        let run = store.run(&id).map_err(store_error)?;
        let logs = store.logs(&id).map_err(store_error)?;
        Ok(axum::Json(RunDetail { run, logs }))
    })
    .await
    .map_err(ApiError::internal)?
}

async fn job_snapshots(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<axum::Json<Value>, ApiError> {
    let snapshots = state
        .control
        .snapshots(&name)
        .await
        .map_err(|e| ApiError::from(e).with("job", name.clone()))?;
    Ok(axum::Json(json!({ "snapshots": snapshots })))
}

/// How often a followed run is looked at again.
const FOLLOW_EVERY: std::time::Duration = std::time::Duration::from_millis(250);

/// What `GET /api/runs/ID/events` has sent so far.
struct Follow {
    store: Arc<dyn StateStore>,
    id: String,
    sent: usize,
    status: Option<RunStatus>,
    queue: std::collections::VecDeque<Event>,
    done: bool,
}

impl Follow {
    /// Look at the run once: new log lines, a changed status, the end.
    /// Lines come from the run's live log while it goes on in this process,
    /// else from the store (which has them all once the run has ended).
    fn poll(&mut self) -> Result<(), StateError> {
        let live = crate::runner::live_log(&self.id);
        let run = self.store.run(&self.id)?;
        let ended = live.is_none() && run.status.is_finished();
        let lines = match live {
            Some(lines) => lines,
            None => self.store.logs(&self.id)?,
        };
        for line in lines.iter().skip(self.sent) {
            self.queue.push_back(sse_json("log", line));
        }
        self.sent = self.sent.max(lines.len());
        if self.status != Some(run.status) {
            self.status = Some(run.status);
            self.queue.push_back(sse_json("run", &run));
        }
        if ended {
            self.queue
                .push_back(Event::default().event("end").data(run.status.as_str()));
            self.done = true;
        }
        Ok(())
    }
}

fn sse_json(kind: &str, value: &impl Serialize) -> Event {
    Event::default()
        .event(kind)
        .json_data(value)
        .unwrap_or_else(|e| Event::default().event("error").data(e.to_string()))
}

/// `GET /api/runs/ID/events`: the run's log and status as server-sent
/// events, from the first line, until the run has ended.
async fn run_events(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let store = state.control.store();
    let mut follow = Follow {
        store,
        id,
        sent: 0,
        status: None,
        queue: std::collections::VecDeque::new(),
        done: false,
    };
    // An unknown run is a 404 before the stream starts.
    follow = tokio::task::spawn_blocking(move || follow.poll().map(|()| follow))
        .await
        .map_err(ApiError::internal)?
        .map_err(store_error)?;
    let stream = futures::stream::unfold(follow, |mut f| async move {
        loop {
            if let Some(event) = f.queue.pop_front() {
                return Some((Ok::<_, std::convert::Infallible>(event), f));
            }
            if f.done {
                return None;
            }
            tokio::time::sleep(FOLLOW_EVERY).await;
            f = match tokio::task::spawn_blocking(move || {
                let polled = f.poll();
                (f, polled)
            })
            .await
            {
                Ok((f, Ok(()))) => f,
                Ok((mut f, Err(e))) => {
                    f.done = true;
                    f.queue
                        .push_back(Event::default().event("error").data(e.to_string()));
                    f
                }
                Err(_) => return None,
            };
        }
    });
    Ok(Sse::new(stream)
        .keep_alive(KeepAlive::default())
        .into_response())
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, HashSet};
    use std::sync::Mutex;

    use super::*;
    use crate::daemon::metrics::tests::parse_exposition;
    use crate::state::sqlite::SqliteStore;
    use crate::state::{LogLine, RunOutcome};

    /// A daemon stand-in: jobs in memory, real SQLite history.
    struct FakeDaemon {
        store: Arc<SqliteStore>,
        metrics: Arc<Metrics>,
        jobs: Mutex<BTreeMap<String, JobView>>,
        /// Jobs with a run going: a second trigger conflicts.
        busy: Mutex<HashSet<String>>,
    }

    impl FakeDaemon {
        fn new(names: &[&str]) -> anyhow::Result<Arc<Self>> {
            let jobs = names
                .iter()
                .map(|name| {
                    let view = JobView {
                        name: (*name).to_owned(),
                        task: "builtin:directory".to_owned(),
                        schedule: Some("0 3 * * *".to_owned()),
                        timezone: Some("Europe/Paris".to_owned()),
                        next_fire: Some(1_743_296_400_000),
                        paused: false,
                        last_run: None,
                    };
                    ((*name).to_owned(), view)
                })
                .collect();
            Ok(Arc::new(Self {
                store: Arc::new(SqliteStore::open_in_memory()?),
                metrics: Arc::new(Metrics::new()),
                jobs: Mutex::new(jobs),
                busy: Mutex::new(HashSet::new()),
            }))
        }
    }

    #[async_trait::async_trait]
    impl DaemonControl for FakeDaemon {
        fn jobs(&self) -> Vec<JobView> {
            let jobs = self
                .jobs
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            jobs.values()
                .map(|job| JobView {
                    last_run: self
                        .store
                        .runs(Some(&job.name), 1)
                        .ok()
                        .and_then(|mut r| r.pop()),
                    ..job.clone()
                })
                .collect()
        }

        fn store(&self) -> Arc<dyn StateStore> {
            Arc::clone(&self.store) as Arc<dyn StateStore>
        }

        async fn trigger(&self, job: &str, kind: RunKind) -> Result<RunRecord, ControlError> {
            if !self
                .jobs
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .contains_key(job)
            {
                return Err(ControlError::NotFound(job.to_owned()));
            }
            if !self
                .busy
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .insert(job.to_owned())
            {
                return Err(ControlError::Conflict(format!(
                    "job `{job}` is already running and its concurrency policy is `forbid`"
                )));
            }
            self.store
                .start_run(job, kind)
                .map_err(|e| ControlError::Other(e.into()))
        }

        fn set_paused(&self, job: &str, paused: bool) -> Result<(), ControlError> {
            let mut jobs = self
                .jobs
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let view = jobs
                .get_mut(job)
                .ok_or_else(|| ControlError::NotFound(job.to_owned()))?;
            view.paused = paused;
            Ok(())
        }

        fn metrics(&self) -> Arc<Metrics> {
            Arc::clone(&self.metrics)
        }
    }

    /// A running API on a loopback port, stopped when dropped.
    struct Api {
        base: String,
        client: reqwest::Client,
        _stop: tokio::sync::oneshot::Sender<()>,
    }

    impl Api {
        async fn start(control: Arc<FakeDaemon>, token: Option<&str>) -> anyhow::Result<Self> {
            let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
            let cfg = ApiConfig {
                listen: "127.0.0.1:0".parse()?,
                token: token.map(str::to_owned),
            };
            let addr = serve(cfg, control, async {
                let _ = stopped.await;
            })
            .await?;
            Ok(Self {
                base: format!("http://{addr}"),
                client: reqwest::Client::new(),
                _stop: stop,
            })
        }

        async fn call(
            &self,
            method: reqwest::Method,
            path: &str,
            token: Option<&str>,
        ) -> anyhow::Result<(StatusCode, HeaderMap, String)> {
            let mut request = self.client.request(method, format!("{}{path}", self.base));
            if let Some(token) = token {
                request = request.bearer_auth(token);
            }
            let response = request.send().await?;
            let status = StatusCode::from_u16(response.status().as_u16())?;
            let headers = response.headers().clone();
            Ok((status, headers, response.text().await?))
        }

        async fn json(
            &self,
            method: reqwest::Method,
            path: &str,
        ) -> anyhow::Result<(StatusCode, Value)> {
            let (status, headers, body) = self.call(method, path, None).await?;
            assert_eq!(
                headers
                    .get(header::CONTENT_TYPE)
                    .and_then(|v| v.to_str().ok()),
                Some("application/json"),
                "{path}: {body}"
            );
            Ok((status, serde_json::from_str(&body)?))
        }

        async fn get(&self, path: &str) -> anyhow::Result<(StatusCode, Value)> {
            self.json(reqwest::Method::GET, path).await
        }

        async fn post(&self, path: &str) -> anyhow::Result<(StatusCode, Value)> {
            self.json(reqwest::Method::POST, path).await
        }
    }

    fn finish(store: &SqliteStore, run: &RunRecord, status: RunStatus) -> anyhow::Result<()> {
        store.finish_run(
            &run.id,
            &RunOutcome {
                status,
                error: (status == RunStatus::Failed).then(|| "pg_dump exited with 1".to_owned()),
                snapshot_id: None,
                bytes: 10,
                result: None,
            },
        )?;
        Ok(())
    }

    #[tokio::test]
    async fn healthz_and_jobs_show_schedule_next_fire_and_last_run() -> anyhow::Result<()> {
        let daemon = FakeDaemon::new(&["db", "files"])?;
        let run = daemon.store.start_run("db", RunKind::Backup)?;
        finish(&daemon.store, &run, RunStatus::Succeeded)?;
        let api = Api::start(Arc::clone(&daemon), None).await?;

        assert_eq!(
            api.get("/healthz").await?,
            (StatusCode::OK, json!({"status": "ok"}))
        );

        let (status, body) = api.get("/api/jobs").await?;
        assert_eq!(status, StatusCode::OK);
        let jobs = body["jobs"].as_array().cloned().unwrap_or_default();
        assert_eq!(jobs.len(), 2);
        assert_eq!(jobs[0]["name"], "db");
        assert_eq!(jobs[0]["task"], "builtin:directory");
        assert_eq!(jobs[0]["schedule"], "0 3 * * *");
        assert_eq!(jobs[0]["timezone"], "Europe/Paris");
        assert_eq!(jobs[0]["next_fire"], "2025-03-30T01:00:00.000Z");
        assert_eq!(jobs[0]["paused"], false);
        assert_eq!(jobs[0]["last_run"]["id"], run.id.as_str());
        assert_eq!(jobs[0]["last_run"]["status"], "succeeded");
        assert_eq!(jobs[1]["last_run"], Value::Null);

        let (status, body) = api.get("/api/jobs/files").await?;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body["name"], "files");
        Ok(())
    }

    #[tokio::test]
    async fn unknown_jobs_runs_and_endpoints_are_json_404s_naming_them() -> anyhow::Result<()> {
        let daemon = FakeDaemon::new(&["db"])?;
        let api = Api::start(daemon, None).await?;
        for (method, path) in [
            ("GET", "/api/jobs/nope"),
            ("POST", "/api/jobs/nope/backup"),
            ("POST", "/api/jobs/nope/pause"),
            ("POST", "/api/jobs/nope/resume"),
            ("GET", "/api/runs?job=nope"),
        ] {
            let (status, body) = api.json(method.parse()?, path).await?;
            assert_eq!(status, StatusCode::NOT_FOUND, "{method} {path}");
            assert_eq!(
                body,
                json!({"error": "no job named `nope`", "job": "nope"}),
                "{path}"
            );
        }
        let (status, body) = api.get("/api/runs/01J0000000000000000000000Z").await?;
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert_eq!(body["run"], "01J0000000000000000000000Z");
        assert!(
            body["error"]
                .as_str()
                .is_some_and(|e| e.contains("01J0000000000000000000000Z"))
        );

        let (status, body) = api.get("/api/nothing").await?;
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert_eq!(body["error"], "no endpoint GET /api/nothing");
        let (status, body) = api.get("/api/jobs/db/backup").await?;
        assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(body["error"], "/api/jobs/db/backup does not accept GET");
        Ok(())
    }

    #[tokio::test]
    async fn backup_is_accepted_then_conflicts_while_running() -> anyhow::Result<()> {
        let daemon = FakeDaemon::new(&["db"])?;
        let api = Api::start(Arc::clone(&daemon), None).await?;

        let (status, headers, body) = api
            .call(reqwest::Method::POST, "/api/jobs/db/backup", None)
            .await?;
        assert_eq!(status, StatusCode::ACCEPTED, "{body}");
        let body: Value = serde_json::from_str(&body)?;
        let id = body["run"]["id"].as_str().unwrap_or_default().to_owned();
        assert_eq!(id.len(), 26);
        assert_eq!(body["run"]["job"], "db");
        assert_eq!(body["run"]["kind"], "backup");
        assert_eq!(body["run"]["status"], "running");
        assert_eq!(
            headers.get(header::LOCATION).and_then(|v| v.to_str().ok()),
            Some(format!("/api/runs/{id}").as_str())
        );
        assert_eq!(daemon.store.run(&id)?.job, "db", "the run is in the store");

        let (status, body) = api.post("/api/jobs/db/backup").await?;
        assert_eq!(status, StatusCode::CONFLICT);
        assert!(
            body["error"]
                .as_str()
                .is_some_and(|e| e.contains("`forbid`")),
            "{body}"
        );

        let (status, body) = api.post("/api/jobs/db/restore").await?;
        assert_eq!(status, StatusCode::FORBIDDEN);
        assert!(
            body["error"]
                .as_str()
                .is_some_and(|e| e.contains("cairn restore db")),
            "{body}"
        );
        Ok(())
    }

    #[tokio::test]
    async fn pause_and_resume_return_the_job() -> anyhow::Result<()> {
        let daemon = FakeDaemon::new(&["db"])?;
        let api = Api::start(Arc::clone(&daemon), None).await?;
        let (status, body) = api.post("/api/jobs/db/pause").await?;
        assert_eq!((status, &body["paused"]), (StatusCode::OK, &json!(true)));
        assert!(daemon.jobs()[0].paused);
        let (status, body) = api.post("/api/jobs/db/resume").await?;
        assert_eq!((status, &body["paused"]), (StatusCode::OK, &json!(false)));
        assert!(!daemon.jobs()[0].paused);
        Ok(())
    }

    #[tokio::test]
    async fn runs_are_listed_newest_first_filtered_and_shown_with_logs() -> anyhow::Result<()> {
        let daemon = FakeDaemon::new(&["db", "files"])?;
        let store = &daemon.store;
        let first = store.start_run("db", RunKind::Backup)?;
        finish(store, &first, RunStatus::Failed)?;
        let second = store.start_run("db", RunKind::Backup)?;
        finish(store, &second, RunStatus::Succeeded)?;
        let other = store.start_run("files", RunKind::Backup)?;
        store.append_logs(
            &second.id,
            &[LogLine {
                at_ms: 1,
                level: "info".into(),
                message: "dumped \"db\"".into(),
                fields: vec![("bytes".into(), "10".into())],
            }],
        )?;
        let api = Api::start(Arc::clone(&daemon), None).await?;

        let ids = |body: &Value| -> Vec<String> {
            body["runs"]
                .as_array()
                .map(|runs| {
                    runs.iter()
                        .filter_map(|r| r["id"].as_str().map(str::to_owned))
                        .collect()
                })
                .unwrap_or_default()
        };
        let (status, body) = api.get("/api/runs").await?;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(
            ids(&body),
            [other.id.clone(), second.id.clone(), first.id.clone()]
        );
        let (_, body) = api.get("/api/runs?job=db").await?;
        assert_eq!(ids(&body), [second.id.clone(), first.id.clone()]);
        let (_, body) = api.get("/api/runs?job=db&status=failed").await?;
        assert_eq!(ids(&body), std::slice::from_ref(&first.id));
        assert_eq!(body["runs"][0]["error"], "pg_dump exited with 1");
        let (_, body) = api.get("/api/runs?limit=1").await?;
        assert_eq!(ids(&body), std::slice::from_ref(&other.id));
        let (_, body) = api.get("/api/runs?job=files&status=succeeded").await?;
        assert_eq!(
            ids(&body),
            Vec::<String>::new(),
            "a known job with no match is an empty list"
        );

        for (query, parameter) in [
            ("status=done", "status"),
            ("limit=0", "limit"),
            ("limit=5000", "limit"),
            ("limit=x", "limit"),
            ("jbo=db", "jbo"),
        ] {
            let (status, body) = api.get(&format!("/api/runs?{query}")).await?;
            assert_eq!(status, StatusCode::BAD_REQUEST, "{query}");
            assert_eq!(body["parameter"], parameter, "{query}");
        }

        let (status, body) = api.get(&format!("/api/runs/{}", second.id)).await?;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body["run"]["id"], second.id.as_str());
        assert_eq!(body["run"]["status"], "succeeded");
        assert_eq!(body["logs"][0]["message"], "dumped \"db\"");
        assert_eq!(body["logs"][0]["fields"], json!([["bytes", "10"]]));
        Ok(())
    }

    #[tokio::test]
    async fn metrics_endpoint_serves_parseable_prometheus_text() -> anyhow::Result<()> {
        let daemon = FakeDaemon::new(&["db"])?;
        let run = daemon.store.start_run("db", RunKind::Backup)?;
        finish(&daemon.store, &run, RunStatus::Succeeded)?;
        daemon.metrics.observe_run(&daemon.store.run(&run.id)?);
        daemon.metrics.set_snapshots("db", 3);
        let api = Api::start(Arc::clone(&daemon), None).await?;
        let (status, headers, text) = api.call(reqwest::Method::GET, "/metrics", None).await?;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(
            headers
                .get(header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok()),
            Some("text/plain; version=0.0.4; charset=utf-8")
        );
        let samples = parse_exposition(&text).map_err(anyhow::Error::msg)?;
        let names: HashSet<_> = samples.iter().map(|s| s.name.as_str()).collect();
        for name in [
            "cairn_runs_total",
            "cairn_run_duration_seconds_bucket",
            "cairn_last_success_timestamp_seconds",
            "cairn_backup_bytes",
            "cairn_snapshots",
            "cairn_job_paused",
            "cairn_next_fire_timestamp_seconds",
        ] {
            assert!(names.contains(name), "{name} missing from\n{text}");
        }
        Ok(())
    }

    #[tokio::test]
    async fn a_configured_token_is_required_except_for_healthz() -> anyhow::Result<()> {
        let daemon = FakeDaemon::new(&["db"])?;
        let api = Api::start(daemon, Some("s3cret-token")).await?;

        for path in ["/api/jobs", "/metrics", "/api/runs", "/api/nothing"] {
            for token in [None, Some("wrong"), Some("s3cret-token-but-longer")] {
                let (status, headers, body) = api.call(reqwest::Method::GET, path, token).await?;
                assert_eq!(status, StatusCode::UNAUTHORIZED, "{path} with {token:?}");
                assert_eq!(
                    headers
                        .get(header::WWW_AUTHENTICATE)
                        .and_then(|v| v.to_str().ok()),
                    Some("Bearer realm=\"cairn\"")
                );
                let body: Value = serde_json::from_str(&body)?;
                assert!(body["error"].is_string());
            }
            let (status, _, _) = api
                .call(reqwest::Method::GET, path, Some("s3cret-token"))
                .await?;
            assert_ne!(status, StatusCode::UNAUTHORIZED, "{path}");
        }
        let (status, _, _) = api
            .call(reqwest::Method::POST, "/api/jobs/db/backup", None)
            .await?;
        assert_eq!(
            status,
            StatusCode::UNAUTHORIZED,
            "controls need the token too"
        );
        let (status, _, _) = api.call(reqwest::Method::GET, "/healthz", None).await?;
        assert_eq!(status, StatusCode::OK);
        Ok(())
    }

    #[tokio::test]
    async fn non_loopback_listen_needs_a_token() -> anyhow::Result<()> {
        let daemon = FakeDaemon::new(&["db"])?;
        for listen in ["0.0.0.0:0", "[::]:0", "192.0.2.1:8470"] {
            let cfg = ApiConfig {
                listen: listen.parse()?,
                token: None,
            };
            let err = serve(cfg, Arc::clone(&daemon) as Arc<dyn DaemonControl>, async {})
                .await
                .err()
                .map(|e| format!("{e:#}"))
                .unwrap_or_default();
            assert!(err.contains("without a bearer token"), "{listen}: {err}");
        }
        let cfg = ApiConfig {
            listen: "127.0.0.1:0".parse()?,
            token: Some("  ".into()),
        };
        let err = serve(cfg, Arc::clone(&daemon) as Arc<dyn DaemonControl>, async {}).await;
        assert!(err.is_err_and(|e| e.to_string().contains("token is empty")));

        // With a token, all interfaces are fine (serve on 0.0.0.0 and reach
        // it through loopback).
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let cfg = ApiConfig {
            listen: "0.0.0.0:0".parse()?,
            token: Some("tok".into()),
        };
        let addr = serve(cfg, daemon, async {
            let _ = stopped.await;
        })
        .await?;
        let response = reqwest::Client::new()
            .get(format!("http://127.0.0.1:{}/api/jobs", addr.port()))
            .bearer_auth("tok")
            .send()
            .await?;
        assert_eq!(response.status().as_u16(), 200);
        drop(stop);
        Ok(())
    }

    #[tokio::test]
    async fn a_taken_port_is_a_clear_error() -> anyhow::Result<()> {
        let taken = std::net::TcpListener::bind("127.0.0.1:0")?;
        let cfg = ApiConfig {
            listen: taken.local_addr()?,
            token: None,
        };
        let daemon = FakeDaemon::new(&[])?;
        let err = serve(cfg, daemon, async {})
            .await
            .err()
            .map(|e| format!("{e:#}"));
        let err = err.unwrap_or_default();
        assert!(err.contains("cannot listen on 127.0.0.1:"), "{err}");
        Ok(())
    }

    #[tokio::test]
    async fn shutdown_stops_the_server() -> anyhow::Result<()> {
        let daemon = FakeDaemon::new(&[])?;
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let cfg = ApiConfig {
            listen: "127.0.0.1:0".parse()?,
            token: None,
        };
        let addr = serve(cfg, daemon, async {
            let _ = stopped.await;
        })
        .await?;
        let url = format!("http://{addr}/healthz");
        assert!(reqwest::get(&url).await?.status().is_success());
        let _ = stop.send(());
        // The listener closes once the shutdown future completes.
        let mut refused = false;
        for _ in 0..50 {
            if reqwest::Client::new().get(&url).send().await.is_err() {
                refused = true;
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        assert!(refused, "still answering after shutdown");
        Ok(())
    }

    #[test]
    fn the_default_listen_address_is_the_configs() -> anyhow::Result<()> {
        let default: SocketAddr = crate::config::DEFAULT_LISTEN.parse()?;
        assert_eq!(ApiConfig::default().listen, default);
        assert!(default.ip().is_loopback());
        Ok(())
    }

    #[test]
    fn the_openapi_file_describes_every_route() {
        let spec = include_str!("../../../docs/api.yaml");
        for path in [
            "/healthz",
            "/metrics",
            "/api/jobs",
            "/api/jobs/{name}",
            "/api/jobs/{name}/backup",
            "/api/jobs/{name}/restore",
            "/api/jobs/{name}/pause",
            "/api/jobs/{name}/resume",
            "/api/runs",
            "/api/runs/{id}",
        ] {
            assert!(
                spec.contains(&format!("\n  {path}:\n")),
                "docs/api.yaml lacks {path}"
            );
        }
        for metric in [
            "cairn_runs_total",
            "cairn_run_duration_seconds",
            "cairn_last_success_timestamp_seconds",
            "cairn_backup_bytes",
            "cairn_snapshots",
            "cairn_job_paused",
            "cairn_next_fire_timestamp_seconds",
            "cairn_notifications_failed_total",
        ] {
            assert!(spec.contains(metric), "docs/api.yaml lacks {metric}");
        }
    }

    #[test]
    fn timestamps_are_rfc3339_utc_with_milliseconds() {
        assert_eq!(rfc3339_millis(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(
            rfc3339_millis(1_743_296_400_123),
            "2025-03-30T01:00:00.123Z"
        );
    }

    #[test]
    fn bearer_tokens_are_read_from_the_authorization_header() {
        let mut headers = HeaderMap::new();
        assert_eq!(bearer_token(&headers), None);
        headers.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("bearer abc"),
        );
        assert_eq!(bearer_token(&headers), Some("abc"));
        headers.insert(header::AUTHORIZATION, HeaderValue::from_static("Basic abc"));
        assert_eq!(bearer_token(&headers), None);
        headers.insert(header::AUTHORIZATION, HeaderValue::from_static("Bearer "));
        assert_eq!(bearer_token(&headers), None);
        assert!(constant_time_eq(&digest(b"a"), &digest(b"a")));
        assert!(!constant_time_eq(&digest(b"a"), &digest(b"b")));
    }
}
