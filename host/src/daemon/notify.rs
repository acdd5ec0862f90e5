//! Webhook notifications when a run ends: a JSON POST to an allowlisted URL,
//! with an optional template for Slack-style messages.
//!
//! A job lists its webhooks under `notify`, one table or a list of them:
//!
//! ```toml
//! [daemon]
//! webhook-origins = ["https://hooks.slack.com"]   # where webhooks may go
//!
//! [jobs.db]
//! notify = { url = "https://hooks.slack.com/services/T0/B0/XXXX", on = ["failure"],
//!            template = '{"text": "cairn: {{kind}} of {{job}} {{status}} after {{duration}}: {{error}}"}' }
//! ```
//!
//! - `url`: `http` or `https`. Its origin must be in `[daemon]
//!   webhook-origins`, the webhooks' own allowlist: a webhook carries job
//!   names and error messages, and listing its origin there does not let any
//!   task reach it (that would take `allow.http`).
//! - `on`: which endings to report, any of `failure` (the run `failed`, was
//!   `cancelled` or `interrupted`), `success` (`succeeded`) and `skipped` (a
//!   fire refused by the concurrency policy). Default `["failure"]`.
//! - `template`: the body, a JSON document with placeholders `{{name}}`. Each
//!   value is inserted JSON-escaped (without quotes), so it is safe inside a
//!   JSON string: `"text": "{{error}}"`. Placeholders: `job`, `kind`,
//!   `status`, `event`, `trigger` (`schedule`, `api` or `cli`), `attempt`
//!   (1 for a fire's first try), `run_id`, `error` (empty when none), `snapshot`
//!   (empty when none), `started` and `finished` (RFC 3339 UTC), `duration`
//!   (`1m30s`), `duration_seconds`, `bytes`, `size` (`1.5 GiB`). An unknown
//!   placeholder, or a template that is not JSON once filled, is a config error.
//!
//! Without a template the body is [`default_body`]: `{"job", "kind",
//! "status", "event", "trigger", "attempt", "run_id", "error", "started_at", "finished_at",
//! "duration_seconds", "bytes", "snapshot_id"}`.
//!
//! Delivery ([`Notifier`]) never blocks or fails a run: each notification is
//! sent in the background with a 10 s timeout per attempt, three attempts
//! with exponential backoff and jitter on connection errors, `429` and `5xx`.
//! Redirects are not followed (they could leave the allowlist). A
//! notification given up on is logged with the origin only (the path of a
//! webhook URL is often its secret) and counted in
//! `cairn_notifications_failed_total{job}`.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use serde_json::{Value, json};
use url::Url;

use super::metrics::Metrics;
use super::view::rfc3339_millis;
use crate::model::notify::{Event, Template, Webhook};
use crate::state::RunRecord;
use crate::units::{format_duration, format_size};

// ---------------------------------------------------------------------------
// Bodies
// ---------------------------------------------------------------------------

/// The body to send about `run` to `webhook`.
#[must_use]
pub fn body(webhook: &Webhook, run: &RunRecord) -> String {
    match &webhook.template {
        Some(template) => render(template, run),
        None => default_body(run).to_string(),
    }
}

/// `template` filled in for `run`, each value JSON-escaped.
#[must_use]
pub fn render(template: &Template, run: &RunRecord) -> String {
    template.render_with(|name| value_of(name, run))
}

/// The value of placeholder `name` for `run`, unescaped.
fn value_of(name: &str, run: &RunRecord) -> String {
    let duration_ms = run
        .finished_at_ms
        .map(|end| u64::try_from(end - run.started_at_ms).unwrap_or(0));
    match name {
        "job" => run.job.clone(),
        "kind" => run.kind.as_str().to_owned(),
        "status" => run.status.as_str().to_owned(),
        "event" => Event::of(run.status).map_or("", Event::as_str).to_owned(),
        "trigger" => run.trigger.as_str().to_owned(),
        "attempt" => run.attempt.to_string(),
        "run_id" => run.id.clone(),
        "error" => run.error.clone().unwrap_or_default(),
        "snapshot" => run.snapshot_id.clone().unwrap_or_default(),
        "started" => rfc3339_millis(run.started_at_ms),
        "finished" => run.finished_at_ms.map(rfc3339_millis).unwrap_or_default(),
        "duration" => duration_ms
            .map(|ms| format_duration(Duration::from_millis(ms)))
            .unwrap_or_default(),
        "duration_seconds" => duration_ms.map(seconds).unwrap_or_default(),
        "bytes" => run.bytes.to_string(),
        "size" => format_size(run.bytes),
        _ => String::new(),
    }
}

/// `1500` ms → `1.5`.
fn seconds(ms: u64) -> String {
    match ms % 1000 {
        0 => (ms / 1000).to_string(),
        frac => format!(
            "{}.{}",
            ms / 1000,
            format!("{frac:03}").trim_end_matches('0')
        ),
    }
}

/// The body sent without a template.
#[must_use]
pub fn default_body(run: &RunRecord) -> Value {
    let duration = run.finished_at_ms.map(|end| {
        #[expect(
            clippy::cast_precision_loss,
            reason = "durations are far below 2^52 ms"
        )]
        let seconds = (end - run.started_at_ms).max(0) as f64 / 1000.0;
        seconds
    });
    json!({
        "job": run.job,
        "kind": run.kind,
        "status": run.status,
        "event": Event::of(run.status).map(Event::as_str),
        "trigger": run.trigger,
        "attempt": run.attempt,
        "run_id": run.id,
        "error": run.error,
        "started_at": rfc3339_millis(run.started_at_ms),
        "finished_at": run.finished_at_ms.map(rfc3339_millis),
        "duration_seconds": duration,
        "bytes": run.bytes,
        "snapshot_id": run.snapshot_id,
    })
}

// ---------------------------------------------------------------------------
// Delivery
// ---------------------------------------------------------------------------

/// How hard to try.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts in all (at least 1).
    pub attempts: u32,
    /// Wait before the second attempt; doubled each time, plus up to 50 % jitter.
    pub backoff: Duration,
    /// Timeout of one attempt (connect to last byte).
    pub timeout: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            attempts: 3,
            backoff: Duration::from_secs(2),
            timeout: Duration::from_secs(10),
        }
    }
}

/// Why a notification was given up on.
#[derive(Debug, thiserror::Error)]
pub enum DeliveryError {
    /// The receiver answered with an error status.
    #[error("{origin} answered {status} after {attempts} attempt(s)")]
    Status {
        /// The webhook's origin.
        origin: String,
        /// Last status.
        status: u16,
        /// Attempts made.
        attempts: u32,
    },
    /// The request could not be made (connection refused, timeout …).
    #[error("cannot reach {origin} after {attempts} attempt(s): {message}")]
    Transport {
        /// The webhook's origin.
        origin: String,
        /// The last error, without the URL.
        message: String,
        /// Attempts made.
        attempts: u32,
    },
}

/// Most deliveries in flight at once; more wait their turn.
const MAX_IN_FLIGHT: usize = 16;

/// Sends notifications in the background.
#[derive(Debug)]
pub struct Notifier {
    client: reqwest::Client,
    metrics: Arc<Metrics>,
    policy: RetryPolicy,
    in_flight: Arc<tokio::sync::Semaphore>,
    tasks: Mutex<tokio::task::JoinSet<()>>,
}

impl Notifier {
    /// A notifier counting failures in `metrics`.
    ///
    /// # Errors
    /// When the HTTP client cannot be built (no TLS roots).
    pub fn new(metrics: Arc<Metrics>) -> anyhow::Result<Self> {
        Self::with_policy(metrics, RetryPolicy::default())
    }

    /// A notifier with its own retry policy.
    ///
    /// # Errors
    /// When the HTTP client cannot be built (no TLS roots).
    pub fn with_policy(metrics: Arc<Metrics>, policy: RetryPolicy) -> anyhow::Result<Self> {
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(policy.timeout)
            .user_agent(concat!("cairn/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| anyhow::anyhow!("cannot build the webhook HTTP client: {e}"))?;
        Ok(Self {
            client,
            metrics,
            policy,
            in_flight: Arc::new(tokio::sync::Semaphore::new(MAX_IN_FLIGHT)),
            tasks: Mutex::new(tokio::task::JoinSet::new()),
        })
    }

    /// Send `run`'s ending to each of `webhooks` that wants it, in the
    /// background; returns at once. Must be called within a Tokio runtime.
    pub fn notify(&self, webhooks: &[Webhook], run: &RunRecord) {
        let Some(event) = Event::of(run.status) else {
            return;
        };
        let mut tasks = self.tasks.lock().unwrap_or_else(PoisonError::into_inner);
        // Reap what has finished so the set stays small.
        while tasks.try_join_next().is_some() {}
        for webhook in webhooks.iter().filter(|w| w.on.contains(&event)) {
            let client = self.client.clone();
            let metrics = Arc::clone(&self.metrics);
            let in_flight = Arc::clone(&self.in_flight);
            let policy = self.policy;
            let url = webhook.url.clone();
            let body = body(webhook, run);
            let (job, run_id) = (run.job.clone(), run.id.clone());
            tasks.spawn(async move {
                let Ok(_permit) = in_flight.acquire_owned().await else {
                    return;
                };
                match deliver(&client, &url, body, policy).await {
                    Ok(()) => tracing::debug!(job, run = run_id, "notification sent"),
                    Err(err) => {
                        tracing::warn!(job, run = run_id, "notification not delivered: {err}");
                        metrics.notification_failed(&job);
                    }
                }
            });
        }
    }

    /// Wait up to `within` for notifications still being sent (at shutdown);
    /// the rest are abandoned. Returns how many were abandoned.
    pub async fn flush(&self, within: Duration) -> usize {
        let mut tasks =
            std::mem::take(&mut *self.tasks.lock().unwrap_or_else(PoisonError::into_inner));
        let _ = tokio::time::timeout(within, async { while tasks.join_next().await.is_some() {} })
            .await;
        let abandoned = tasks.len();
        if abandoned > 0 {
            tracing::warn!("{abandoned} notification(s) abandoned at shutdown");
        }
        abandoned
    }
}

/// POST `body` (JSON) to `url`, retrying on connection errors, `429` and
/// `5xx` as `policy` says.
///
/// # Errors
/// The last failure once every attempt has failed, or at once for a status
/// that retrying will not change (`4xx` but `408`/`429`, or a redirect).
pub async fn deliver(
    client: &reqwest::Client,
    url: &Url,
    body: String,
    policy: RetryPolicy,
) -> Result<(), DeliveryError> {
    let origin = url.origin().ascii_serialization();
    let attempts = policy.attempts.max(1);
    let mut attempt = 0;
    loop {
        attempt += 1;
        let result = client
            .post(url.clone())
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body.clone())
            .send()
            .await;
        let (retryable, error) = match result {
            Ok(response) if response.status().is_success() => return Ok(()),
            Ok(response) => {
                let status = response.status();
                let retryable = status.is_server_error()
                    || status == reqwest::StatusCode::TOO_MANY_REQUESTS
                    || status == reqwest::StatusCode::REQUEST_TIMEOUT;
                let error = DeliveryError::Status {
                    origin: origin.clone(),
                    status: status.as_u16(),
                    attempts: attempt,
                };
                (retryable, error)
            }
            Err(err) => {
                // reqwest's message names the URL: keep only the cause.
                let message = if err.is_timeout() {
                    format!("timed out after {:?}", policy.timeout)
                } else {
                    let cause = std::error::Error::source(&err).map(ToString::to_string);
                    cause.unwrap_or_else(|| err.without_url().to_string())
                };
                let error = DeliveryError::Transport {
                    origin: origin.clone(),
                    message,
                    attempts: attempt,
                };
                (true, error)
            }
        };
        if !retryable || attempt >= attempts {
            return Err(error);
        }
        tracing::debug!(
            origin,
            attempt,
            "notification attempt failed, retrying: {error}"
        );
        tokio::time::sleep(backoff(policy.backoff, attempt)).await;
    }
}

/// Wait after failed attempt `attempt` (1-based): `base × 2^(attempt-1)`,
/// plus up to 50 % random jitter, at most one minute.
fn backoff(base: Duration, attempt: u32) -> Duration {
    let exponential = base.saturating_mul(1 << (attempt - 1).min(10));
    let jitter_range = u64::try_from(exponential.as_millis() / 2)
        .unwrap_or(u64::MAX)
        .max(1);
    let jitter = Duration::from_millis(random_u64() % jitter_range);
    (exponential + jitter).min(Duration::from_secs(60))
}

/// A random number from std's randomly keyed hasher (enough for jitter).
fn random_u64() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u32(std::process::id());
    hasher.finish()
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use axum::extract::State;
    use axum::http::{HeaderMap, StatusCode};

    use std::collections::BTreeSet;

    use super::*;
    use crate::config::check::{WebhookProblem, webhook as check_webhook};
    use crate::config::file::NotifyFile;
    use crate::model::{OriginPattern, RunStatus};
    use crate::state::{RunKind, StateStore as _};

    /// A failed backup of `db` (built from a store's record, so it has every field).
    fn failed_run() -> RunRecord {
        let mut run = crate::state::sqlite::SqliteStore::open_in_memory()
            .and_then(|store| store.start_run("db", RunKind::Backup))
            .unwrap_or_else(|err| panic!("in-memory store: {err}"));
        run.id = "01JABCDEFGHJKMNPQRSTVWXYZ0".to_owned();
        run.status = RunStatus::Failed;
        run.started_at_ms = 1_743_296_400_000;
        run.finished_at_ms = Some(1_743_296_490_500);
        run.error = Some("pg_dump: error: connection to \"db\" failed\n\tFATAL: \\ bad".to_owned());
        run.snapshot_id = None;
        run.bytes = 1536;
        run
    }

    /// A local receiver: records each body and content type, answers with
    /// the statuses in `answers` (then 200).
    /// Requests a [`Receiver`] got: content type and body.
    type Received = Arc<Mutex<Vec<(Option<String>, String)>>>;

    struct Receiver {
        url: Url,
        received: Received,
        hits: Arc<AtomicUsize>,
        _stop: tokio::sync::oneshot::Sender<()>,
    }

    #[derive(Clone)]
    struct ReceiverState {
        received: Received,
        hits: Arc<AtomicUsize>,
        answers: Arc<Vec<u16>>,
    }

    impl Receiver {
        async fn start(answers: Vec<u16>) -> anyhow::Result<Self> {
            async fn hook(
                State(state): State<ReceiverState>,
                headers: HeaderMap,
                body: String,
            ) -> StatusCode {
                let n = state.hits.fetch_add(1, Ordering::SeqCst);
                let content_type = headers
                    .get("content-type")
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_owned);
                state
                    .received
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .push((content_type, body));
                let code = state.answers.get(n).copied().unwrap_or(200);
                StatusCode::from_u16(code).unwrap_or(StatusCode::OK)
            }
            let state = ReceiverState {
                received: Arc::default(),
                hits: Arc::default(),
                answers: Arc::new(answers),
            };
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
            let addr = listener.local_addr()?;
            let app = axum::Router::new()
                .route("/services/T0/B0/secret", axum::routing::post(hook))
                .with_state(state.clone());
            let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
            tokio::spawn(async move {
                let _ = axum::serve(listener, app)
                    .with_graceful_shutdown(async {
                        let _ = stopped.await;
                    })
                    .await;
            });
            Ok(Self {
                url: Url::parse(&format!("http://{addr}/services/T0/B0/secret"))?,
                received: state.received,
                hits: state.hits,
                _stop: stop,
            })
        }

        fn bodies(&self) -> Vec<(Option<String>, String)> {
            self.received
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .clone()
        }
    }

    fn fast() -> RetryPolicy {
        RetryPolicy {
            attempts: 3,
            backoff: Duration::from_millis(10),
            timeout: Duration::from_secs(5),
        }
    }

    fn webhook(
        url: &Url,
        on: &[&str],
        template: Option<&str>,
    ) -> Result<Webhook, Vec<WebhookProblem>> {
        let origin = OriginPattern::parse(&url.origin().ascii_serialization())
            .map_err(|e| vec![(String::new(), e)])?;
        check_webhook(
            &NotifyFile {
                url: url.to_string(),
                on: Some(on.iter().map(|s| (*s).to_owned()).collect()),
                template: template.map(str::to_owned),
            },
            &[origin],
        )
    }

    #[tokio::test]
    async fn failure_is_posted_with_the_template_rendered_and_json_escaped() -> anyhow::Result<()> {
        let receiver = Receiver::start(vec![]).await?;
        let template = r#"{"text": "{{kind}} ({{trigger}}, try {{attempt}}) of *{{job}}* {{status}} after {{duration}} ({{size}}): {{error}}", "run": "{{run_id}}", "seconds": {{duration_seconds}}, "at": "{{finished}}"}"#;
        let hook = webhook(&receiver.url, &["failure", "success"], Some(template))
            .map_err(|p| anyhow::anyhow!("{p:?}"))?;
        let notifier = Notifier::with_policy(Arc::new(Metrics::new()), fast())?;
        notifier.notify(&[hook], &failed_run());
        assert_eq!(notifier.flush(Duration::from_secs(10)).await, 0);

        let bodies = receiver.bodies();
        assert_eq!(bodies.len(), 1);
        assert_eq!(bodies[0].0.as_deref(), Some("application/json"));
        let body: Value = serde_json::from_str(&bodies[0].1)?;
        assert_eq!(
            body,
            json!({
                "text": "backup (cli, try 1) of *db* failed after 1m30s500ms (1.5 KiB): pg_dump: error: connection to \"db\" failed\n\tFATAL: \\ bad",
                "run": "01JABCDEFGHJKMNPQRSTVWXYZ0",
                "seconds": 90.5,
                "at": "2025-03-30T01:01:30.500Z",
            })
        );
        Ok(())
    }

    #[tokio::test]
    async fn default_body_and_event_filter() -> anyhow::Result<()> {
        let receiver = Receiver::start(vec![]).await?;
        let failures_only =
            webhook(&receiver.url, &["failure"], None).map_err(|p| anyhow::anyhow!("{p:?}"))?;
        let notifier = Notifier::with_policy(Arc::new(Metrics::new()), fast())?;

        let mut ok = failed_run();
        ok.status = RunStatus::Succeeded;
        ok.error = None;
        ok.snapshot_id = Some("abcd".into());
        notifier.notify(std::slice::from_ref(&failures_only), &ok);
        let mut running = failed_run();
        running.status = RunStatus::Running;
        notifier.notify(std::slice::from_ref(&failures_only), &running);
        let mut cancelled = failed_run();
        cancelled.status = RunStatus::Cancelled;
        notifier.notify(std::slice::from_ref(&failures_only), &cancelled);
        notifier.flush(Duration::from_secs(10)).await;

        let bodies = receiver.bodies();
        assert_eq!(
            bodies.len(),
            1,
            "only the cancelled run is a failure: {bodies:?}"
        );
        let body: Value = serde_json::from_str(&bodies[0].1)?;
        assert_eq!(body["job"], "db");
        assert_eq!(body["kind"], "backup");
        assert_eq!(body["status"], "cancelled");
        assert_eq!(body["event"], "failure");
        assert_eq!(body["run_id"], "01JABCDEFGHJKMNPQRSTVWXYZ0");
        assert_eq!(body["trigger"], "cli");
        assert_eq!(body["attempt"], 1);
        assert_eq!(body["started_at"], "2025-03-30T01:00:00.000Z");
        assert_eq!(body["finished_at"], "2025-03-30T01:01:30.500Z");
        assert_eq!(body["duration_seconds"], 90.5);
        assert_eq!(body["bytes"], 1536);
        assert_eq!(body["snapshot_id"], Value::Null);
        assert!(
            body["error"]
                .as_str()
                .is_some_and(|e| e.starts_with("pg_dump"))
        );
        Ok(())
    }

    #[tokio::test]
    async fn server_errors_are_retried_and_client_errors_are_not() -> anyhow::Result<()> {
        let client = reqwest::Client::new();
        let receiver = Receiver::start(vec![500, 503]).await?;
        deliver(&client, &receiver.url, "{}".into(), fast())
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        assert_eq!(
            receiver.hits.load(Ordering::SeqCst),
            3,
            "two failures, then success"
        );

        let receiver = Receiver::start(vec![500, 500, 500, 500]).await?;
        let err = deliver(&client, &receiver.url, "{}".into(), fast()).await;
        assert!(
            matches!(
                err,
                Err(DeliveryError::Status {
                    status: 500,
                    attempts: 3,
                    ..
                })
            ),
            "{err:?}"
        );
        assert_eq!(
            receiver.hits.load(Ordering::SeqCst),
            3,
            "three attempts in all"
        );

        let receiver = Receiver::start(vec![404]).await?;
        let err = deliver(&client, &receiver.url, "{}".into(), fast()).await;
        assert!(
            matches!(
                err,
                Err(DeliveryError::Status {
                    status: 404,
                    attempts: 1,
                    ..
                })
            ),
            "{err:?}"
        );
        assert_eq!(receiver.hits.load(Ordering::SeqCst), 1);
        Ok(())
    }

    #[tokio::test]
    async fn undeliverable_notifications_are_counted_and_never_leak_the_path() -> anyhow::Result<()>
    {
        // A port nobody listens on.
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let url = Url::parse(&format!("http://127.0.0.1:{port}/services/T0/B0/secret"))?;
        let err = deliver(&reqwest::Client::new(), &url, "{}".into(), fast()).await;
        let Err(err) = err else {
            anyhow::bail!("delivered to a closed port");
        };
        let message = err.to_string();
        assert!(
            message.contains(&format!("127.0.0.1:{port}")) && message.contains("3 attempt"),
            "{message}"
        );
        assert!(!message.contains("secret"), "{message}");

        let metrics = Arc::new(Metrics::new());
        let hook = webhook(&url, &["failure"], None).map_err(|p| anyhow::anyhow!("{p:?}"))?;
        assert!(!format!("{hook:?}").contains("secret"));
        let notifier = Notifier::with_policy(Arc::clone(&metrics), fast())?;
        notifier.notify(&[hook], &failed_run());
        notifier.flush(Duration::from_secs(10)).await;
        assert!(
            metrics
                .render(&[])
                .contains("cairn_notifications_failed_total{job=\"db\"} 1\n")
        );
        Ok(())
    }

    #[test]
    fn webhooks_are_validated_with_the_key_at_fault() -> anyhow::Result<()> {
        let granted =
            [OriginPattern::parse("https://hooks.slack.com").map_err(anyhow::Error::msg)?];
        let check = |url: &str, on: Option<&[&str]>, template: Option<&str>| {
            check_webhook(
                &NotifyFile {
                    url: url.to_owned(),
                    on: on.map(|on| on.iter().map(|s| (*s).to_owned()).collect()),
                    template: template.map(str::to_owned),
                },
                &granted,
            )
        };
        let ok = check("https://hooks.slack.com/services/X", None, None)
            .map_err(|p| anyhow::anyhow!("{p:?}"))?;
        assert_eq!(
            ok.on,
            BTreeSet::from([Event::Failure]),
            "failure by default"
        );

        let problems = check(
            "https://evil.example.com/x",
            Some(&["failure", "sucess"]),
            Some("{\"text\": \"{{jb}}\"}"),
        )
        .err()
        .unwrap_or_default();
        assert_eq!(problems.len(), 3, "{problems:?}");
        assert_eq!(problems[0].0, "url");
        assert!(
            problems[0]
                .1
                .contains("https://evil.example.com is not allowlisted"),
            "{problems:?}"
        );
        assert!(problems[0].1.contains("`[daemon] webhook-origins`"));
        assert_eq!(problems[1].0, "on[1]");
        assert!(problems[1].1.contains("unknown event `sucess`"));
        assert_eq!(problems[2].0, "template");
        assert!(
            problems[2].1.contains("unknown placeholder `{{jb}}`"),
            "{problems:?}"
        );

        for (url, needle) in [
            ("ftp://hooks.slack.com/x", "scheme `ftp`"),
            ("hooks.slack.com/x", "not a URL"),
            ("http://hooks.slack.com/x", "not allowlisted"),
        ] {
            let problems = check(url, None, None).err().unwrap_or_default();
            assert!(
                problems
                    .iter()
                    .any(|(k, m)| k == "url" && m.contains(needle)),
                "{url}: {problems:?}"
            );
        }
        let problems = check("https://hooks.slack.com/x", Some(&[]), None)
            .err()
            .unwrap_or_default();
        assert!(
            problems
                .iter()
                .any(|(k, m)| k == "on" && m.contains("is empty"))
        );
        Ok(())
    }

    fn load(text: &str) -> Result<crate::config::Config, Vec<String>> {
        crate::config::parse(text, "cairn.toml", std::path::Path::new("/srv/cairn"))
            .map_err(|e| e.problems.iter().map(ToString::to_string).collect())
    }

    #[test]
    fn config_accepts_one_webhook_or_a_list() -> anyhow::Result<()> {
        let config = load(
            r#"
[daemon]
webhook-origins = ["https://hooks.slack.com", "http://127.0.0.1:9000"]

[jobs.db]
task = "builtin:directory"
notify = { url = "https://hooks.slack.com/services/T0/B0/X", on = ["failure", "success"], template = '{"text": "{{job}} {{status}}"}' }

[jobs.files]
task = "builtin:directory"

[[jobs.files.notify]]
url = "http://127.0.0.1:9000/hook"

[[jobs.files.notify]]
url = "http://127.0.0.1:9000/other"
on = ["skipped"]
"#,
        )
        .map_err(|p| anyhow::anyhow!("{p:#?}"))?;
        let db = &config.jobs["db"].notify;
        assert_eq!(db.len(), 1);
        assert_eq!(db[0].on, BTreeSet::from([Event::Failure, Event::Success]));
        assert!(db[0].template.is_some());
        let files = &config.jobs["files"].notify;
        assert_eq!(files.len(), 2);
        assert_eq!(files[1].url.path(), "/other");
        assert_eq!(files[1].on, BTreeSet::from([Event::Skipped]));
        assert!(
            load("[jobs.x]\ntask = \"builtin:directory\"\n")
                .is_ok_and(|c| c.jobs["x"].notify.is_empty())
        );
        Ok(())
    }

    #[test]
    fn config_rejects_unlisted_origins_and_bad_values_naming_the_job() {
        let problems = load(
            r#"
[daemon]
webhook-origins = ["https://hooks.slack.com", "http://127.0.0.1:9000"]
[jobs.db]
task = "builtin:directory"
notify = { url = "https://attacker.example.com/collect", on = ["failure"] }

[jobs.files]
task = "builtin:directory"
notify = [
  { url = "http://127.0.0.1:9000/ok" },
  { url = "http://127.0.0.1:9000/x", on = ["failure", "always"], template = '{"text": "{{oops}}"}' },
]

[jobs.web]
task = "builtin:directory"
notify = { url = "http://127.0.0.1:9000/y", urll = "typo" }
"#,
        )
        .err()
        .unwrap_or_default();
        let has = |needles: &[&str]| {
            problems
                .iter()
                .any(|p| needles.iter().all(|n| p.contains(n)))
        };
        assert!(
            has(&[
                "job `db`, key `notify.url`",
                "line 6",
                "https://attacker.example.com is not allowlisted",
                "webhook-origins"
            ]),
            "{problems:#?}"
        );
        assert!(
            has(&[
                "job `files`, key `notify[1].on[1]`",
                "unknown event `always`"
            ]),
            "{problems:#?}"
        );
        assert!(
            has(&[
                "job `files`, key `notify[1].template`",
                "unknown placeholder `{{oops}}`"
            ]),
            "{problems:#?}"
        );
        assert!(
            has(&[
                "job `web` (line 17",
                "unknown key `urll` in `notify`; did you mean `url`?"
            ]),
            "{problems:#?}"
        );
        assert_eq!(problems.len(), 4, "{problems:#?}");
    }

    #[test]
    fn config_explains_a_notify_of_the_wrong_shape() {
        let problems = load(
            "[jobs.db]\ntask = \"builtin:directory\"\nnotify = \"https://hooks.slack.com/x\"\n",
        )
        .err()
        .unwrap_or_default();
        assert_eq!(problems.len(), 1, "{problems:#?}");
        assert!(
            problems[0].contains("job `db`, key `notify`") && problems[0].contains("a table"),
            "{problems:#?}"
        );
    }

    #[test]
    fn templates_must_be_json_once_filled() {
        assert!(Template::parse(r#"{"text": "{{job}}", "n": {{bytes}}}"#).is_ok());
        let err = Template::parse(r"text {{job}}").err().unwrap_or_default();
        assert!(err.contains("not a JSON document"), "{err}");
        let err = Template::parse(r#"{"text": {{job}}}"#)
            .err()
            .unwrap_or_default();
        assert!(
            err.contains("not a JSON document"),
            "a bare string placeholder: {err}"
        );
        let err = Template::parse(r#"{"text": "{{job"}"#)
            .err()
            .unwrap_or_default();
        assert!(err.contains("never closed"), "{err}");
        assert_eq!(seconds(90_500), "90.5");
        assert_eq!(seconds(2_000), "2");
        assert_eq!(seconds(1_005), "1.005");
    }
}
