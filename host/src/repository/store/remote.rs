//! What the S3 and REST stores share: one HTTP client and runtime for all
//! remote repositories of the process, calls that block the calling thread
//! (rustic's threads, or the caller's `spawn_blocking`), and retries with
//! exponential backoff and jitter on transient failures (connection errors,
//! timeouts, HTTP 408, 429, 500, 502, 503, 504).

use std::future::Future;
use std::sync::OnceLock;
use std::time::Duration;

use super::{StoreError, StoreErrorKind};

/// Connect timeout of one request.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest wait for the next bytes of a response.
const READ_TIMEOUT: Duration = Duration::from_secs(120);

fn runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("cairn-remote")
            .enable_all()
            .build()
            .expect("the remote repository runtime starts")
    })
}

/// Run `future` on the remote runtime and wait for it on this thread. Works
/// from any thread that is not one of that runtime's own.
pub(super) fn block_on<T: Send + 'static>(future: impl Future<Output = T> + Send + 'static) -> T {
    let task = runtime().spawn(future);
    match futures::executor::block_on(task) {
        Ok(value) => value,
        Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
        Err(e) => panic!("a remote repository request was cancelled: {e}"),
    }
}

/// The client every remote store uses (connections are pooled per host).
pub(super) fn client() -> reqwest::Client {
    static CLIENT: OnceLock<reqwest::Client> = OnceLock::new();
    CLIENT
        .get_or_init(|| {
            reqwest::Client::builder()
                .connect_timeout(CONNECT_TIMEOUT)
                .read_timeout(READ_TIMEOUT)
                .redirect(reqwest::redirect::Policy::none())
                .user_agent(concat!("cairn/", env!("CARGO_PKG_VERSION")))
                .build()
                .expect("TLS backend initialises")
        })
        .clone()
}

/// How often and how patiently to retry.
#[derive(Debug, Clone, Copy)]
pub(super) struct RetryPolicy {
    /// Attempts in all (the first one included).
    pub attempts: u32,
    /// Pause after the first failure; doubled after each next one.
    pub first: Duration,
    /// Longest pause.
    pub max: Duration,
}

impl Default for RetryPolicy {
    /// 6 attempts, pausing 0.5, 1, 2, 4, 8 s (±25 %): about 15 s in all.
    fn default() -> Self {
        Self {
            attempts: 6,
            first: Duration::from_millis(500),
            max: Duration::from_secs(8),
        }
    }
}

/// The outcome of one attempt.
pub(super) enum Attempt<T> {
    /// It worked.
    Done(T),
    /// It failed in a way another attempt may not (the reason, for the
    /// message when the last attempt fails too).
    Transient(String),
}

/// Whether an HTTP status is worth another attempt.
pub(super) fn is_transient(status: reqwest::StatusCode) -> bool {
    matches!(status.as_u16(), 408 | 429 | 500 | 502 | 503 | 504)
}

/// A request error as text, with its causes (reqwest's own message alone is
/// "error sending request").
pub(super) fn describe(e: &reqwest::Error) -> String {
    let mut text = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(inner) = source {
        let message = inner.to_string();
        if !text.contains(&message) {
            text.push_str(": ");
            text.push_str(&message);
        }
        source = inner.source();
    }
    text
}

/// Run `attempt` until it is done or `policy` is spent;
/// `what` says what was being done, for the final message.
pub(super) async fn retry<T, F, Fut>(
    policy: RetryPolicy,
    what: &str,
    mut attempt: F,
) -> Result<T, StoreError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Attempt<T>>,
{
    let mut pause = policy.first;
    let mut last = String::new();
    for n in 1..=policy.attempts {
        match attempt().await {
            Attempt::Done(value) => return Ok(value),
            Attempt::Transient(reason) => {
                tracing::debug!(
                    "{what}: attempt {n} of {} failed: {reason}",
                    policy.attempts
                );
                last = reason;
            }
        }
        if n < policy.attempts {
            tokio::time::sleep(jittered(pause)).await;
            pause = (pause * 2).min(policy.max);
        }
    }
    Err(StoreError::new(
        StoreErrorKind::Other,
        format!(
            "{what}: {last} (gave up after {} attempts)",
            policy.attempts
        ),
    ))
}

/// `pause` ± 25 %.
fn jittered(pause: Duration) -> Duration {
    let mut byte = [0u8; 1];
    let _ = getrandom::fill(&mut byte);
    let factor = 0.75 + f64::from(byte[0]) / 255.0 * 0.5;
    pause.mul_f64(factor)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU32, Ordering};

    use super::*;

    fn quick(attempts: u32) -> RetryPolicy {
        RetryPolicy {
            attempts,
            first: Duration::from_millis(1),
            max: Duration::from_millis(4),
        }
    }

    #[test]
    fn transient_failures_are_retried_and_the_last_reason_is_reported() {
        let calls = Arc::new(AtomicU32::new(0));
        let counter = calls.clone();
        let outcome = block_on(async move {
            retry(quick(4), "reading config of s3:x", || {
                let n = counter.fetch_add(1, Ordering::SeqCst);
                async move {
                    if n < 2 {
                        Attempt::Transient(format!("HTTP 503 (try {n})"))
                    } else {
                        Attempt::Done(n)
                    }
                }
            })
            .await
        });
        assert_eq!(outcome.unwrap(), 2);

        let calls = Arc::new(AtomicU32::new(0));
        let counter = calls.clone();
        let err = block_on(async move {
            retry(quick(3), "reading config of s3:x", || {
                counter.fetch_add(1, Ordering::SeqCst);
                async { Attempt::<()>::Transient("connection refused".into()) }
            })
            .await
        })
        .unwrap_err();
        assert_eq!(calls.load(Ordering::SeqCst), 3);
        assert_eq!(
            err.message,
            "reading config of s3:x: connection refused (gave up after 3 attempts)"
        );
    }
}
