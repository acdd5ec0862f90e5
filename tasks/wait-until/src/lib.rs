//! `wait-until`: a Function that polls an HTTP endpoint until a field of its
//! JSON response has an expected value: a snapshot that finishes, a cluster
//! that turns green, a service that comes up.
//!
//! # Params
//!
//! - `url` (required): the absolute URL to poll; its origin must be granted.
//! - `method` (default `GET`), `headers` (values may contain
//!   `{{secret:NAME}}`), `body` (any JSON, sent as `application/json` with
//!   every request).
//! - `field` (required): where the value sits in the response body. Either a
//!   JSON pointer (RFC 6901) starting with `/` (`/snapshots/0/state`), or a
//!   dotted path (`snapshots.0.state`), whose numeric segments index arrays.
//!   A key containing `.` needs the pointer form; in a pointer write `~1` for
//!   `/` and `~0` for `~`.
//! - `equals` (required): the value to wait for, or a list of acceptable
//!   values (`["green", "yellow"]`). To wait for a list itself, wrap it in
//!   another list.
//! - `fail-on` (optional): a value, or list of values, that ends the wait at
//!   once with an error (`["FAILED", "PARTIAL"]`).
//! - `expect-status` (default `200`): a status or list of statuses a
//!   response must have to be looked at. Other statuses, connection errors
//!   and bodies that are not JSON or lack the field count as "not yet" and
//!   are retried; a denied origin or bad params fail at once.
//! - `interval` (default `1s`) and `timeout` (default `5m`): durations as
//!   Cairn writes them (`500ms`, `30s`, `5m`, `1h30m`) or a number of
//!   seconds. Each request's own timeout is what remains of `timeout` (at
//!   least one second).
//!
//! # Result
//!
//! `{"attempts": 3, "elapsed_ms": 2004, "value": "SUCCESS", "response":
//! {"status": 200, "body": <the JSON body>}}`.
//!
//! On timeout the error (kind `limit`) names the URL, the field, the number
//! of attempts and the last thing seen: a value, a status, a missing field
//! or an error.
//!
//! # Example (a task calling it)
//!
//! ```ignore
//! functions::call("wait-until", &json!({
//!     "url": format!("{es}/_snapshot/repo/{name}"),
//!     "field": "snapshots.0.state",
//!     "equals": "SUCCESS",
//!     "fail-on": ["FAILED", "PARTIAL", "INCOMPATIBLE"],
//!     "interval": "2s",
//!     "timeout": "30m",
//! }))?;
//! ```

use std::collections::BTreeMap;
use std::time::Duration;

use cairn_guest::http::{Method, Request};
use cairn_guest::{
    Description, Error, ErrorKind, Function, Param, Result, Value, from_params, json, log,
    parse_duration, time,
};
use serde::Deserialize;

/// How many characters of a value or body an error quotes.
const EXCERPT_CHARS: usize = 200;

/// The shortest timeout a single request gets.
const MIN_REQUEST_TIMEOUT: Duration = Duration::from_secs(1);

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct Params {
    url: String,
    #[serde(default)]
    method: Option<String>,
    #[serde(default)]
    headers: BTreeMap<String, String>,
    #[serde(default)]
    body: Option<Value>,
    field: String,
    equals: Value,
    #[serde(default)]
    fail_on: Option<Value>,
    #[serde(default)]
    expect_status: Option<Value>,
    #[serde(default)]
    interval: Option<Value>,
    #[serde(default)]
    timeout: Option<Value>,
}

/// A duration param: a string such as `30s` or a number of seconds.
fn duration_param(name: &str, value: Option<&Value>, default: Duration) -> Result<Duration> {
    let duration = match value {
        None | Some(Value::Null) => return Ok(default),
        Some(Value::String(text)) => {
            parse_duration(text).map_err(|e| e.context(format!("invalid params: `{name}`")))?
        }
        Some(Value::Number(n)) => n
            .as_f64()
            .and_then(|s| Duration::try_from_secs_f64(s).ok())
            .ok_or_else(|| {
                Error::invalid(format!(
                    "invalid params: `{name}` must be a duration such as \"30s\" or a number of \
                     seconds, got {n}"
                ))
            })?,
        Some(other) => {
            return Err(Error::invalid(format!(
                "invalid params: `{name}` must be a duration such as \"30s\" or a number of \
                 seconds, got {other}"
            )));
        }
    };
    if duration.is_zero() {
        return Err(Error::invalid(format!(
            "invalid params: `{name}` must be longer than zero"
        )));
    }
    Ok(duration)
}

/// A value, or a list of values, as a list.
fn one_or_many(value: Value) -> Vec<Value> {
    match value {
        Value::Array(items) => items,
        one => vec![one],
    }
}

/// The statuses a response may have, from `expect-status`.
fn statuses(value: Option<Value>) -> Result<Vec<u16>> {
    let Some(value) = value.filter(|v| !v.is_null()) else {
        return Ok(vec![200]);
    };
    let items = one_or_many(value);
    if items.is_empty() {
        return Err(Error::invalid(
            "invalid params: `expect-status` is an empty list; leave it out to expect 200",
        ));
    }
    items
        .iter()
        .map(|v| {
            v.as_u64()
                .filter(|s| (100..=599).contains(s))
                .and_then(|s| u16::try_from(s).ok())
                .ok_or_else(|| {
                    Error::invalid(format!(
                        "invalid params: `expect-status` must be an HTTP status (100-599) or a \
                         list of them, got {v}"
                    ))
                })
        })
        .collect()
}

/// Where the value sits in a response body.
#[derive(Debug, Clone, PartialEq, Eq)]
struct FieldPath {
    /// As written in the params, for messages.
    text: String,
    /// The path as a JSON pointer.
    pointer: String,
}

impl FieldPath {
    /// Parse a JSON pointer (`/a/0/b`) or a dotted path (`a.0.b`).
    fn parse(text: &str) -> Result<Self> {
        if text.is_empty() {
            return Err(Error::invalid(
                "invalid params: `field` is empty; name the value to wait for, as a dotted path \
                 (`snapshots.0.state`) or a JSON pointer (`/snapshots/0/state`)",
            ));
        }
        let pointer = if text.starts_with('/') {
            // Check the escapes: `~` must be followed by 0 or 1.
            let mut chars = text.chars().peekable();
            while let Some(c) = chars.next() {
                if c == '~' && !matches!(chars.peek(), Some('0' | '1')) {
                    return Err(Error::invalid(format!(
                        "invalid params: `field` {text:?} is not a valid JSON pointer: `~` must \
                         be written `~0` (and `/` inside a key `~1`)"
                    )));
                }
            }
            text.to_owned()
        } else {
            let mut pointer = String::new();
            for segment in text.split('.') {
                if segment.is_empty() {
                    return Err(Error::invalid(format!(
                        "invalid params: `field` {text:?} has an empty segment; write a dotted \
                         path like `snapshots.0.state`, or a JSON pointer like `/a.b/c` for keys \
                         that contain `.`"
                    )));
                }
                pointer.push('/');
                pointer.push_str(&segment.replace('~', "~0").replace('/', "~1"));
            }
            pointer
        };
        Ok(FieldPath {
            text: text.to_owned(),
            pointer,
        })
    }

    fn find<'a>(&self, body: &'a Value) -> Option<&'a Value> {
        body.pointer(&self.pointer)
    }
}

/// `text` cut to [`EXCERPT_CHARS`] characters.
fn excerpt(text: &str) -> String {
    match text.char_indices().nth(EXCERPT_CHARS) {
        Some((end, _)) => format!("{}…", &text[..end]),
        None => text.to_owned(),
    }
}

/// What one attempt saw.
#[derive(Debug, Clone, PartialEq)]
enum Seen {
    /// The field's value.
    Value(Value),
    /// A response with a status not in `expect-status`.
    Status(u16, String),
    /// A body that is not JSON.
    NotJson(String),
    /// A JSON body without the field.
    Missing,
    /// The request failed (connection refused, timeout).
    Error(String),
}

impl Seen {
    fn describe(&self) -> String {
        match self {
            Seen::Value(v) => format!("the value {}", excerpt(&v.to_string())),
            Seen::Status(status, body) => format!("status {status} ({})", excerpt(body)),
            Seen::NotJson(body) => format!("a body that is not JSON ({})", excerpt(body)),
            Seen::Missing => "a response without the field".to_owned(),
            Seen::Error(e) => format!("an error: {e}"),
        }
    }
}

/// What to do after an attempt.
#[derive(Debug, PartialEq)]
enum Verdict {
    Done,
    Failed,
    NotYet,
}

/// Judge the value an attempt found.
fn judge(value: &Value, equals: &[Value], fail_on: &[Value]) -> Verdict {
    if equals.contains(value) {
        Verdict::Done
    } else if fail_on.contains(value) {
        Verdict::Failed
    } else {
        Verdict::NotYet
    }
}

/// The JSON values a list shows in messages: `"a" or "b"`.
fn alternatives(values: &[Value]) -> String {
    let shown: Vec<String> = values.iter().map(Value::to_string).collect();
    match shown.split_last() {
        Some((last, rest)) if !rest.is_empty() => format!("{} or {last}", rest.join(", ")),
        _ => shown.join(""),
    }
}

/// The polling plan, checked before the first request.
struct Plan {
    request: Request,
    field: FieldPath,
    equals: Vec<Value>,
    fail_on: Vec<Value>,
    statuses: Vec<u16>,
    interval: Duration,
    timeout: Duration,
}

impl Plan {
    fn new(params: Params) -> Result<Self> {
        let method: Method = params.method.as_deref().unwrap_or("GET").parse()?;
        let field = FieldPath::parse(&params.field)?;
        let equals = one_or_many(params.equals);
        if equals.is_empty() {
            return Err(Error::invalid(
                "invalid params: `equals` is an empty list; give the value to wait for",
            ));
        }
        let fail_on = params.fail_on.map(one_or_many).unwrap_or_default();
        if let Some(both) = fail_on.iter().find(|v| equals.contains(v)) {
            return Err(Error::invalid(format!(
                "invalid params: {both} is in both `equals` and `fail-on`"
            )));
        }
        let statuses = statuses(params.expect_status)?;
        let interval =
            duration_param("interval", params.interval.as_ref(), Duration::from_secs(1))?;
        let timeout = duration_param(
            "timeout",
            params.timeout.as_ref(),
            Duration::from_secs(5 * 60),
        )?;
        let mut request = Request::new(method, params.url);
        for (name, value) in params.headers {
            request = request.header(name, value);
        }
        if let Some(body) = params.body {
            request = request.json(&body)?;
        }
        Ok(Plan {
            request,
            field,
            equals,
            fail_on,
            statuses,
            interval,
            timeout,
        })
    }

    /// One request: what it saw, and the response (status and JSON body)
    /// when the field was there.
    fn attempt(&self, remaining: Duration) -> Result<(Seen, Option<Value>)> {
        let request = self
            .request
            .clone()
            .timeout(remaining.max(MIN_REQUEST_TIMEOUT));
        let response = match request.send() {
            Ok(r) => r,
            // Grants and malformed requests will not get better by waiting.
            Err(e) if matches!(e.kind(), ErrorKind::Failed | ErrorKind::Limit) => {
                return Ok((Seen::Error(e.to_string()), None));
            }
            Err(e) => return Err(e),
        };
        if !self.statuses.contains(&response.status) {
            return Ok((Seen::Status(response.status, response.text()), None));
        }
        let Ok(body) = cairn_guest::serde_json::from_slice::<Value>(&response.body) else {
            return Ok((Seen::NotJson(response.text()), None));
        };
        let seen = match self.field.find(&body) {
            Some(value) => Seen::Value(value.clone()),
            None => Seen::Missing,
        };
        Ok((
            seen,
            Some(json!({ "status": response.status, "body": body })),
        ))
    }

    fn what(&self) -> String {
        format!(
            "{} {} until `{}` is {}",
            self.request.method(),
            self.request.url(),
            self.field.text,
            alternatives(&self.equals)
        )
    }

    fn run(&self) -> Result<Value> {
        log::info(format!(
            "polling {} (every {:?}, for at most {:?})",
            self.what(),
            self.interval,
            self.timeout
        ));
        let started = time::now_ms();
        let timeout_ms = u64::try_from(self.timeout.as_millis()).unwrap_or(u64::MAX);
        let mut attempts = 0u64;
        let mut last: Option<Seen> = None;
        loop {
            let elapsed = time::now_ms().saturating_sub(started);
            let remaining = Duration::from_millis(timeout_ms.saturating_sub(elapsed));
            attempts += 1;
            let (seen, response) = self.attempt(remaining)?;
            if let (Seen::Value(value), Some(response)) = (&seen, response) {
                match judge(value, &self.equals, &self.fail_on) {
                    Verdict::Done => {
                        let elapsed_ms = time::now_ms().saturating_sub(started);
                        log::info(format!(
                            "`{}` is {value} after {attempts} attempt(s), {elapsed_ms} ms",
                            self.field.text
                        ));
                        return Ok(json!({
                            "attempts": attempts,
                            "elapsed_ms": elapsed_ms,
                            "value": value,
                            "response": response,
                        }));
                    }
                    Verdict::Failed => {
                        return Err(Error::failed(format!(
                            "{} {}: `{}` is {}, which is in `fail-on` (attempt {attempts})",
                            self.request.method(),
                            self.request.url(),
                            self.field.text,
                            excerpt(&value.to_string())
                        )));
                    }
                    Verdict::NotYet => {}
                }
            }
            if last.as_ref() != Some(&seen) {
                log::debug(format!(
                    "attempt {attempts}: saw {} (still waiting)",
                    seen.describe()
                ));
            }
            last = Some(seen);
            let elapsed = time::now_ms().saturating_sub(started);
            if elapsed >= timeout_ms {
                let last = last.map_or_else(|| "nothing".to_owned(), |s| s.describe());
                return Err(Error::limit(format!(
                    "timed out after {:?} polling {}: {attempts} attempt(s), the last saw {last}",
                    self.timeout,
                    self.what()
                )));
            }
            let pause = self
                .interval
                .min(Duration::from_millis(timeout_ms - elapsed));
            time::sleep(pause);
        }
    }
}

struct WaitUntil;

impl Function for WaitUntil {
    fn describe() -> Description {
        Description::new("wait-until", env!("CARGO_PKG_VERSION"))
            .summary(
                "Polls an HTTP endpoint until a field of its JSON response has an expected value",
            )
            .param(Param::required(
                "url",
                "Absolute http:// or https:// URL to poll",
            ))
            .param(Param::required(
                "field",
                "Where the value is in the JSON body: a dotted path (snapshots.0.state) or a JSON \
                 pointer (/snapshots/0/state)",
            ))
            .param(Param::required(
                "equals",
                "The value to wait for, or a list of acceptable values",
            ))
            .param(Param::optional(
                "fail-on",
                "A value or list of values that fail the wait at once",
                None,
            ))
            .param(Param::optional(
                "method",
                "GET, HEAD, POST, PUT, DELETE or PATCH",
                json!("GET"),
            ))
            .param(Param::optional(
                "headers",
                "Request headers; values may contain {{secret:NAME}}",
                json!({}),
            ))
            .param(Param::optional(
                "body",
                "JSON body sent with every request",
                None,
            ))
            .param(Param::optional(
                "expect-status",
                "Status or list of statuses a response must have to be looked at; others are \
                 retried",
                json!(200),
            ))
            .param(Param::optional(
                "interval",
                "Pause between attempts (e.g. 500ms, 2s)",
                json!("1s"),
            ))
            .param(Param::optional(
                "timeout",
                "How long to wait in all (e.g. 30s, 5m, 1h)",
                json!("5m"),
            ))
            .needs_http("{url}")
    }

    fn call(params: Value) -> Result<Value> {
        let params: Params = from_params(params)?;
        Plan::new(params)?.run()
    }
}

cairn_guest::export_function!(WaitUntil);

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(params: Value) -> Result<Plan> {
        Plan::new(from_params(params)?)
    }

    #[test]
    fn fields_are_dotted_paths_or_json_pointers() {
        let body = json!({"snapshots": [{"state": "SUCCESS"}], "a.b": {"c/d": 1}, "t~": 2});
        let find = |f: &str| FieldPath::parse(f).unwrap().find(&body).cloned();
        assert_eq!(find("snapshots.0.state"), Some(json!("SUCCESS")));
        assert_eq!(find("/snapshots/0/state"), Some(json!("SUCCESS")));
        assert_eq!(find("/a.b/c~1d"), Some(json!(1)));
        assert_eq!(find("t~"), Some(json!(2)));
        assert_eq!(find("/t~0"), Some(json!(2)));
        assert_eq!(find("snapshots.1.state"), None);
        assert_eq!(find("snapshots"), Some(json!([{"state": "SUCCESS"}])));
        for bad in ["", "a..b", ".a", "/a~2"] {
            let err = FieldPath::parse(bad).unwrap_err();
            assert_eq!(err.kind(), ErrorKind::Invalid, "{bad}");
        }
    }

    #[test]
    fn values_are_judged_against_equals_and_fail_on() {
        let equals = [json!("SUCCESS"), json!("DONE")];
        let fail_on = [json!("FAILED")];
        assert_eq!(judge(&json!("DONE"), &equals, &fail_on), Verdict::Done);
        assert_eq!(judge(&json!("FAILED"), &equals, &fail_on), Verdict::Failed);
        assert_eq!(
            judge(&json!("IN_PROGRESS"), &equals, &fail_on),
            Verdict::NotYet
        );
        // Numbers compare as JSON: 1 is not "1".
        assert_eq!(judge(&json!("1"), &[json!(1)], &[]), Verdict::NotYet);
        assert_eq!(alternatives(&equals), "\"SUCCESS\" or \"DONE\"");
    }

    #[test]
    fn params_have_defaults_and_are_checked() {
        let p = plan(json!({"url": "http://127.0.0.1:1/x", "field": "a", "equals": true})).unwrap();
        assert_eq!(p.statuses, [200]);
        assert_eq!(p.interval, Duration::from_secs(1));
        assert_eq!(p.timeout, Duration::from_secs(300));
        assert_eq!(p.equals, [json!(true)]);
        assert!(p.fail_on.is_empty());
        let p = plan(json!({
            "url": "http://x", "field": "a", "equals": [[1, 2]], "interval": 0.25,
            "timeout": "1m30s", "expect-status": [200, 202], "fail-on": "FAILED"
        }))
        .unwrap();
        assert_eq!(p.equals, [json!([1, 2])]);
        assert_eq!(p.interval, Duration::from_millis(250));
        assert_eq!(p.timeout, Duration::from_secs(90));
        assert_eq!(p.statuses, [200, 202]);
        assert_eq!(p.fail_on, [json!("FAILED")]);

        let cases = [
            (json!({"field": "a", "equals": 1}), "missing field `url`"),
            (
                json!({"url": "http://x", "equals": 1}),
                "missing field `field`",
            ),
            (
                json!({"url": "http://x", "field": "a", "equals": []}),
                "`equals` is an empty list",
            ),
            (
                json!({"url": "http://x", "field": "a", "equals": 1, "timeout": "5 minutes"}),
                "`timeout`",
            ),
            (
                json!({"url": "http://x", "field": "a", "equals": 1, "interval": 0}),
                "`interval` must be longer than zero",
            ),
            (
                json!({"url": "http://x", "field": "a", "equals": 1, "expect-status": 99}),
                "`expect-status` must be an HTTP status",
            ),
            (
                json!({"url": "http://x", "field": "a", "equals": "X", "fail-on": ["X"]}),
                "in both `equals` and `fail-on`",
            ),
            (
                json!({"url": "http://x", "field": "a", "equals": 1, "method": "BREW"}),
                "BREW",
            ),
            (
                json!({"url": "http://x", "field": "a", "equals": 1, "every": "1s"}),
                "unknown field `every`",
            ),
        ];
        for (params, expected) in cases {
            let err = plan(params.clone()).err().unwrap();
            assert_eq!(err.kind(), ErrorKind::Invalid, "{params}");
            assert!(err.to_string().contains(expected), "{params}: {err}");
        }
    }

    #[test]
    fn what_was_seen_is_described_briefly() {
        assert_eq!(
            Seen::Value(json!("IN_PROGRESS")).describe(),
            "the value \"IN_PROGRESS\""
        );
        assert_eq!(
            Seen::Status(503, "busy".into()).describe(),
            "status 503 (busy)"
        );
        let long = "x".repeat(1000);
        assert_eq!(
            Seen::NotJson(long).describe().chars().count(),
            "a body that is not JSON ()".len() + EXCERPT_CHARS + 1
        );
    }
}
