//! The Elasticsearch REST client of this module: one cluster URL, an optional
//! `Authorization` header (a secret reference the host fills in), error
//! messages that name the cluster and what Elasticsearch said, and retries
//! with exponential backoff and jitter.

use std::fmt::Write as _;
use std::time::Duration;

use cairn_guest::http::{Method, Pending, Request, Response};
use cairn_guest::{Error, ErrorKind, Result, Value, log, time};

/// First retry delay; doubled for every further attempt.
const BACKOFF_START: Duration = Duration::from_millis(250);
/// Longest delay between two attempts.
const BACKOFF_MAX: Duration = Duration::from_secs(30);

/// One Elasticsearch cluster.
#[derive(Debug)]
pub struct Es {
    /// The URL without a trailing `/`, e.g. `http://127.0.0.1:9200`.
    url: String,
    /// The `Authorization` header value, with `{{secret:…}}` placeholders.
    authorization: Option<String>,
    timeout: Duration,
    /// How often a retryable failure is tried again.
    retries: u32,
    /// Jitter state, seeded from the clock on first use (0: not yet).
    rng: std::cell::Cell<u64>,
}

/// What Elasticsearch said in an error body: `{"error": {"type", "reason"}}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EsProblem {
    /// The error type, e.g. `index_not_found_exception` (may be empty).
    pub kind: String,
    /// The reason, or the start of the body when it is not an ES error.
    pub reason: String,
}

impl EsProblem {
    /// Read the error of a response body (ES 1.x–8.x shapes, or any text).
    pub fn parse(body: &[u8]) -> Self {
        let text = excerpt(body, 500);
        let Ok(value) = serde_json::from_slice::<Value>(body) else {
            return EsProblem {
                kind: String::new(),
                reason: text,
            };
        };
        match &value["error"] {
            Value::Object(error) => {
                // The root cause says more than the wrapper
                // (`search_phase_execution_exception` → `search_context_missing_exception`).
                let cause = error
                    .get("caused_by")
                    .or_else(|| error.get("root_cause").and_then(|r| r.get(0)));
                let kind = error.get("type").and_then(Value::as_str).unwrap_or("");
                let mut reason = error
                    .get("reason")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_owned();
                if let Some(cause) = cause {
                    let cause_type = cause["type"].as_str().unwrap_or("");
                    let cause_reason = cause["reason"].as_str().unwrap_or("");
                    if !cause_type.is_empty() && cause_type != kind {
                        let _ = write!(reason, " (caused by {cause_type}: {cause_reason})");
                    }
                }
                EsProblem {
                    kind: kind.to_owned(),
                    reason,
                }
            }
            Value::String(reason) => EsProblem {
                kind: String::new(),
                reason: reason.clone(),
            },
            _ => EsProblem {
                kind: String::new(),
                reason: text,
            },
        }
    }

    /// Whether the type or reason mentions `kind` anywhere.
    pub fn mentions(&self, kind: &str) -> bool {
        self.kind == kind || self.reason.contains(kind)
    }
}

impl std::fmt::Display for EsProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.kind.is_empty() {
            f.write_str(&self.reason)
        } else {
            write!(f, "{}: {}", self.kind, self.reason)
        }
    }
}

/// Whether a status is worth retrying: 429 (too many requests) or 5xx.
pub fn retryable_status(status: u16) -> bool {
    status == 429 || status >= 500
}

impl Es {
    /// The cluster at `url` (a trailing `/` is dropped).
    pub fn new(url: &str, authorization: Option<String>, timeout: Duration, retries: u32) -> Self {
        Es {
            url: url.trim_end_matches('/').to_owned(),
            authorization,
            timeout,
            retries,
            rng: std::cell::Cell::new(0),
        }
    }

    /// The cluster URL, for messages.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// How many retries a failing request gets.
    pub fn retries(&self) -> u32 {
        self.retries
    }

    /// A request for `path` (starting with `/`), with the credentials.
    pub fn request(&self, method: Method, path: &str) -> Request {
        let mut request = Request::new(method, format!("{}{path}", self.url)).timeout(self.timeout);
        if let Some(value) = &self.authorization {
            request = request.header("Authorization", value.clone());
        }
        request
    }

    /// Send once. A transport failure becomes "cannot reach Elasticsearch at
    /// URL"; a refused grant stays `denied`.
    pub fn send(&self, request: &Request) -> Result<Response> {
        request
            .send()
            .map_err(|e| self.transport_error(e, request.method(), request.url()))
    }

    /// Start sending once; [`Es::wait`] gives what [`Es::send`] would.
    pub fn start(&self, request: &Request) -> Result<Pending> {
        request
            .start()
            .map_err(|e| self.transport_error(e, request.method(), request.url()))
    }

    /// The response to a request started with [`Es::start`].
    pub fn wait(&self, pending: Pending) -> Result<Response> {
        let (method, url) = (pending.method(), pending.url().to_owned());
        pending
            .wait()
            .map_err(|e| self.transport_error(e, method, &url))
    }

    fn transport_error(&self, e: Error, method: Method, url: &str) -> Error {
        match e.kind() {
            ErrorKind::Failed | ErrorKind::Limit => e.context(format!(
                "cannot reach Elasticsearch at {} ({method} {})",
                self.url,
                path_of(url, &self.url)
            )),
            _ => e,
        }
    }

    /// Send, retrying transport failures, 429 and 5xx up to `retries` times
    /// with backoff; any other non-2xx status is an error at once.
    pub fn send_retrying(&self, request: &Request) -> Result<Response> {
        let response = self.send_with_retries(request)?;
        if response.is_success() {
            Ok(response)
        } else {
            Err(self.status_error(&response))
        }
    }

    /// Send, retrying transport failures, 429 and 5xx up to `retries` times
    /// with backoff. Returns the first response that is neither (2xx or
    /// not), so the caller can look at a 4xx body itself.
    pub fn send_with_retries(&self, request: &Request) -> Result<Response> {
        self.retry_after(request, self.send(request))
    }

    /// As [`Es::send_with_retries`], given the outcome of the first attempt
    /// (of a request started with [`Es::start`]).
    pub fn retry_after(&self, request: &Request, first: Result<Response>) -> Result<Response> {
        let mut attempt = 0;
        let mut outcome = first;
        loop {
            let failure = match outcome {
                Ok(response) if retryable_status(response.status) => self.status_error(&response),
                Ok(response) => return Ok(response),
                Err(e) if matches!(e.kind(), ErrorKind::Failed | ErrorKind::Limit) => e,
                Err(e) => return Err(e),
            };
            if attempt >= self.retries {
                return Err(
                    failure.context(format!("still failing after {} retries", self.retries))
                );
            }
            attempt += 1;
            let delay = self.backoff(attempt);
            log::warn(format!(
                "{failure}; retry {attempt} of {} in {} ms",
                self.retries,
                delay.as_millis()
            ));
            time::sleep(delay);
            outcome = self.send(request);
        }
    }

    /// GET `path` (retrying) and parse the JSON body.
    pub fn get_json<T: serde::de::DeserializeOwned>(&self, path: &str) -> Result<T> {
        self.send_retrying(&self.request(Method::Get, path))?.json()
    }

    /// GET `path` (retrying); `None` for a 404 (an index or alias that does
    /// not exist).
    pub fn get_json_opt<T: serde::de::DeserializeOwned>(&self, path: &str) -> Result<Option<T>> {
        let response = self.send_with_retries(&self.request(Method::Get, path))?;
        match response.status {
            404 => Ok(None),
            _ if response.is_success() => response.json().map(Some),
            _ => Err(self.status_error(&response)),
        }
    }

    /// The error for a non-2xx response: credentials refused (401), not
    /// allowed (403), or what Elasticsearch said about the request.
    pub fn status_error(&self, response: &Response) -> Error {
        let problem = EsProblem::parse(&response.body);
        let kind = if problem.kind.is_empty() {
            String::new()
        } else {
            format!(" {}", problem.kind)
        };
        let path = path_of(response.url(), &self.url);
        match response.status {
            401 => Error::denied(format!(
                "Elasticsearch at {} refused the credentials (401{kind}): {}; check `username` \
                 and `password-secret`, or `authorization-secret`",
                self.url, problem.reason
            )),
            403 => Error::denied(format!(
                "Elasticsearch at {} does not allow {} {path} (403{kind}): {}",
                self.url,
                response.method(),
                problem.reason
            )),
            status => Error::failed(format!(
                "{} {path} on Elasticsearch at {} returned {status}{kind}: {}",
                response.method(),
                self.url,
                problem.reason
            )),
        }
    }

    /// The delay before retry `attempt` (1-based): exponential from 250 ms,
    /// at most 30 s, with "equal jitter" (half fixed, half random) so that
    /// many clients do not retry in step.
    pub fn backoff(&self, attempt: u32) -> Duration {
        let ceiling = BACKOFF_START
            .saturating_mul(1 << attempt.saturating_sub(1).min(16))
            .min(BACKOFF_MAX);
        let half = ceiling / 2;
        let millis = u64::try_from(half.as_millis()).unwrap_or(u64::MAX);
        half + Duration::from_millis(self.random() % (millis + 1))
    }

    /// xorshift64: good enough for jitter.
    fn random(&self) -> u64 {
        let mut x = self.rng.get();
        if x == 0 {
            x = time::now_ms() | 1;
        }
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.rng.set(x);
        x
    }
}

/// The part of `url` after `base`, for messages (`/_bulk`).
fn path_of<'a>(url: &'a str, base: &str) -> &'a str {
    url.strip_prefix(base).unwrap_or(url)
}

/// At most `max` bytes of `bytes` as text, cut at a character boundary.
pub fn excerpt(bytes: &[u8], max: usize) -> String {
    let text = String::from_utf8_lossy(bytes);
    if text.len() <= max {
        return text.trim().to_owned();
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", text[..end].trim())
}

/// `name` (an index name, alias or pattern) made safe as one URL path
/// segment: everything but letters, digits and `-._~*,+:` percent-encoded.
pub fn encode(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for byte in name.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~*,+:".contains(&byte) {
            out.push(char::from(byte));
        } else {
            let _ = write!(out, "%{byte:02X}");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn problems_are_read_from_every_error_shape() {
        let body = br#"{"error":{"root_cause":[{"type":"security_exception","reason":"unable to authenticate user [bob]"}],"type":"security_exception","reason":"unable to authenticate user [bob]"},"status":401}"#;
        let p = EsProblem::parse(body);
        assert_eq!(p.kind, "security_exception");
        assert_eq!(p.reason, "unable to authenticate user [bob]");

        let body = br#"{"error":{"root_cause":[{"type":"search_context_missing_exception","reason":"No search context found for id [7]"}],"type":"search_phase_execution_exception","reason":"all shards failed","caused_by":{"type":"search_context_missing_exception","reason":"No search context found for id [7]"}},"status":404}"#;
        let p = EsProblem::parse(body);
        assert!(p.mentions("search_context_missing_exception"));
        assert_eq!(
            p.to_string(),
            "search_phase_execution_exception: all shards failed (caused by \
             search_context_missing_exception: No search context found for id [7])"
        );

        let p = EsProblem::parse(br#"{"error":"alias [x] missing","status":404}"#);
        assert_eq!(
            (p.kind.as_str(), p.reason.as_str()),
            ("", "alias [x] missing")
        );
        let p = EsProblem::parse(b"<html>Bad Gateway</html>\n");
        assert_eq!(p.to_string(), "<html>Bad Gateway</html>");
    }

    #[test]
    fn backoff_grows_and_is_capped_with_jitter() {
        let es = Es::new("http://x/", None, Duration::from_secs(1), 3);
        es.rng.set(0x9e37_79b9_7f4a_7c15);
        assert_eq!(es.url(), "http://x");
        for attempt in 1..40 {
            let ceiling = (BACKOFF_START * (1 << (attempt - 1).min(16))).min(BACKOFF_MAX);
            let d = es.backoff(attempt);
            assert!(d >= ceiling / 2 && d <= ceiling, "{attempt}: {d:?}");
        }
        assert!(es.backoff(1) <= Duration::from_millis(250));
    }

    #[test]
    fn names_are_encoded_as_path_segments() {
        assert_eq!(encode("logs-2024.01,other*"), "logs-2024.01,other*");
        assert_eq!(encode("a b/c?d#é"), "a%20b%2Fc%3Fd%23%C3%A9");
    }

    #[test]
    fn only_throttling_and_server_errors_are_retried() {
        assert!(retryable_status(429) && retryable_status(503) && retryable_status(500));
        assert!(!retryable_status(404) && !retryable_status(400) && !retryable_status(401));
    }
}
