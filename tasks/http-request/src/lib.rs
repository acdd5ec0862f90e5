//! `builtin:http-request`: a Function that sends one HTTP request and checks
//! its status.
//!
//! Params: `method` (default `GET`), `url`, `headers` (values may contain
//! `{{secret:NAME}}`), `body` (any JSON, sent as `application/json`),
//! `expect` (a status or a list of statuses; default any 2xx) and `timeout`
//! (seconds). Result: `{"status": 200, "body": <JSON, or the text if the body
//! is not JSON>}`.

use std::collections::BTreeMap;
use std::time::Duration;

use cairn_guest::http::{Method, Request};
use cairn_guest::{Description, Error, Function, Param, Result, Value, from_params, json};
use serde::Deserialize;

/// How many bytes of an unexpected response's body an error quotes.
const BODY_EXCERPT: usize = 500;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Params {
    #[serde(default)]
    method: Option<String>,
    url: String,
    #[serde(default)]
    headers: BTreeMap<String, String>,
    #[serde(default)]
    body: Option<Value>,
    #[serde(default)]
    expect: Option<Value>,
    #[serde(default)]
    timeout: Option<f64>,
}

/// Which statuses count as success.
enum Expect {
    AnySuccess,
    OneOf(Vec<u16>),
}

impl Expect {
    fn parse(value: Option<Value>) -> Result<Self> {
        let statuses = match value {
            None | Some(Value::Null) => return Ok(Expect::AnySuccess),
            Some(Value::Array(items)) => items,
            Some(one) => vec![one],
        };
        if statuses.is_empty() {
            return Err(Error::invalid(
                "invalid params: `expect` is an empty list; leave it out to accept any 2xx",
            ));
        }
        let statuses = statuses
            .iter()
            .map(|v| {
                v.as_u64()
                    .filter(|s| (100..=599).contains(s))
                    .and_then(|s| u16::try_from(s).ok())
                    .ok_or_else(|| {
                        Error::invalid(format!(
                            "invalid params: `expect` must be an HTTP status (100-599) or a list of them, got {v}"
                        ))
                    })
            })
            .collect::<Result<Vec<u16>>>()?;
        Ok(Expect::OneOf(statuses))
    }

    fn accepts(&self, status: u16) -> bool {
        match self {
            Expect::AnySuccess => (200..300).contains(&status),
            Expect::OneOf(statuses) => statuses.contains(&status),
        }
    }

    fn describe(&self) -> String {
        match self {
            Expect::AnySuccess => "2xx".to_owned(),
            Expect::OneOf(statuses) => {
                let names: Vec<String> = statuses.iter().map(u16::to_string).collect();
                match names.split_last() {
                    Some((last, rest)) if !rest.is_empty() => {
                        format!("{} or {last}", rest.join(", "))
                    }
                    _ => names.join(""),
                }
            }
        }
    }
}

/// Seconds from a `timeout` param.
fn timeout_from_secs(secs: Option<f64>) -> Result<Option<Duration>> {
    secs.map(|s| {
        Duration::try_from_secs_f64(s)
            .ok()
            .filter(|d| !d.is_zero())
            .ok_or_else(|| {
                Error::invalid(format!(
                    "invalid params: `timeout` must be a positive number of seconds, got {s}"
                ))
            })
    })
    .transpose()
}

struct HttpRequest;

impl Function for HttpRequest {
    fn describe() -> Description {
        Description::new("http-request", env!("CARGO_PKG_VERSION"))
            .summary("Sends one HTTP request and checks its status")
            .param(Param::required("url", "Absolute http:// or https:// URL"))
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
                "JSON body, sent as application/json",
                None,
            ))
            .param(Param::optional(
                "expect",
                "Expected status or list of statuses (default: any 2xx)",
                None,
            ))
            .param(Param::optional(
                "timeout",
                "Timeout in seconds (default: the host's)",
                None,
            ))
            .needs_http("{url}")
    }

    fn call(params: Value) -> Result<Value> {
        let params: Params = from_params(params)?;
        let method: Method = params.method.as_deref().unwrap_or("GET").parse()?;
        let expect = Expect::parse(params.expect)?;
        let mut request = Request::new(method, params.url);
        for (name, value) in params.headers {
            request = request.header(name, value);
        }
        if let Some(body) = params.body {
            request = request.json(&body)?;
        }
        if let Some(timeout) = timeout_from_secs(params.timeout)? {
            request = request.timeout(timeout);
        }

        let response = request.send()?;
        if !expect.accepts(response.status) {
            let mut excerpt = String::from_utf8_lossy(&response.body).into_owned();
            if excerpt.len() > BODY_EXCERPT {
                let mut end = BODY_EXCERPT;
                while !excerpt.is_char_boundary(end) {
                    end -= 1;
                }
                excerpt.truncate(end);
            }
            return Err(Error::failed(format!(
                "{method} {} returned {}, expected {}: {excerpt}",
                response.url(),
                response.status,
                expect.describe()
            )));
        }
        let body = cairn_guest::serde_json::from_slice::<Value>(&response.body)
            .unwrap_or_else(|_| Value::String(response.text()));
        Ok(json!({ "status": response.status, "body": body }))
    }
}

cairn_guest::export_function!(HttpRequest);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expect_parses_one_status_or_a_list() {
        assert!(Expect::parse(None).unwrap().accepts(204));
        let one = Expect::parse(Some(json!(404))).unwrap();
        assert!(one.accepts(404) && !one.accepts(200));
        assert_eq!(one.describe(), "404");
        let many = Expect::parse(Some(json!([200, 201, 404]))).unwrap();
        assert_eq!(many.describe(), "200, 201 or 404");
        let err = Expect::parse(Some(json!("200"))).err().unwrap();
        assert_eq!(err.kind(), cairn_guest::ErrorKind::Invalid);
        assert!(Expect::parse(Some(json!([]))).is_err());
    }

    #[test]
    fn timeout_must_be_positive() {
        assert_eq!(
            timeout_from_secs(Some(1.5)).unwrap(),
            Some(Duration::from_millis(1500))
        );
        assert!(timeout_from_secs(Some(-1.0)).is_err());
        assert!(timeout_from_secs(Some(0.0)).is_err());
        assert_eq!(timeout_from_secs(None).unwrap(), None);
    }
}
