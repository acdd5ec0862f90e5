//! Outbound HTTP requests to origins the job grants (`cairn:plugin/http`).
//!
//! ```no_run
//! use std::time::Duration;
//!
//! use cairn_guest::{http, json, Result};
//!
//! fn create_snapshot(url: &str) -> Result<()> {
//!     let health = http::get(&format!("{url}/_cluster/health"))?.error_for_status()?;
//!     let status: serde_json::Value = health.json()?;
//!     cairn_guest::info!("cluster is {}", status["status"]);
//!
//!     http::Request::put(format!("{url}/_snapshot/backups/nightly"))
//!         .header("Authorization", "ApiKey {{secret:es-key}}")
//!         .json(&json!({ "indices": "*" }))?
//!         .timeout(Duration::from_secs(30))
//!         .send()?
//!         .error_for_status()?;
//!     Ok(())
//! }
//! ```
//!
//! Any status is a [`Response`]; use [`Response::error_for_status`] to turn
//! non-2xx into an error. A header value may contain `{{secret:NAME}}`: the
//! host substitutes the secret and redacts it from logs.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::__private::http as wit;
use crate::{Error, Result};

pub use crate::__private::http::Method;

impl Method {
    /// The method's name in upper case, e.g. `"GET"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Get => "GET",
            Method::Head => "HEAD",
            Method::Post => "POST",
            Method::Put => "PUT",
            Method::Delete => "DELETE",
            Method::Patch => "PATCH",
        }
    }
}

impl fmt::Display for Method {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Method {
    type Err = Error;

    /// Parse a method name, in any case.
    fn from_str(s: &str) -> Result<Self> {
        Ok(match s.to_ascii_uppercase().as_str() {
            "GET" => Method::Get,
            "HEAD" => Method::Head,
            "POST" => Method::Post,
            "PUT" => Method::Put,
            "DELETE" => Method::Delete,
            "PATCH" => Method::Patch,
            _ => {
                return Err(Error::invalid(format!(
                    "unsupported HTTP method `{s}`: expected GET, HEAD, POST, PUT, DELETE or PATCH"
                )));
            }
        })
    }
}

/// An HTTP request, built fluently and sent with [`Request::send`].
#[derive(Clone, Debug)]
pub struct Request {
    inner: wit::Request,
}

impl Request {
    /// A `method` request to the absolute `url`.
    pub fn new(method: Method, url: impl Into<String>) -> Self {
        Request {
            inner: wit::Request {
                method,
                url: url.into(),
                headers: Vec::new(),
                body: None,
                timeout_ms: None,
            },
        }
    }

    /// A GET request.
    pub fn get(url: impl Into<String>) -> Self {
        Request::new(Method::Get, url)
    }

    /// A HEAD request.
    pub fn head(url: impl Into<String>) -> Self {
        Request::new(Method::Head, url)
    }

    /// A POST request.
    pub fn post(url: impl Into<String>) -> Self {
        Request::new(Method::Post, url)
    }

    /// A PUT request.
    pub fn put(url: impl Into<String>) -> Self {
        Request::new(Method::Put, url)
    }

    /// A DELETE request.
    pub fn delete(url: impl Into<String>) -> Self {
        Request::new(Method::Delete, url)
    }

    /// A PATCH request.
    pub fn patch(url: impl Into<String>) -> Self {
        Request::new(Method::Patch, url)
    }

    /// Add a header. The value may contain `{{secret:NAME}}`.
    #[must_use]
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.inner.headers.push(wit::Header {
            name: name.into(),
            value: value.into(),
        });
        self
    }

    /// Set the body.
    #[must_use]
    pub fn body(mut self, body: impl Into<Vec<u8>>) -> Self {
        self.inner.body = Some(body.into());
        self
    }

    /// Set `value`, serialized, as the body, and `Content-Type:
    /// application/json` unless a content type is already set.
    ///
    /// # Errors
    ///
    /// `invalid` when `value` cannot be serialized to JSON.
    pub fn json<T: Serialize + ?Sized>(mut self, value: &T) -> Result<Self> {
        let body = serde_json::to_vec(value).map_err(|e| {
            Error::invalid(format!("cannot serialize the request body as JSON: {e}"))
        })?;
        if !self
            .inner
            .headers
            .iter()
            .any(|h| h.name.eq_ignore_ascii_case("content-type"))
        {
            self = self.header("Content-Type", "application/json");
        }
        Ok(self.body(body))
    }

    /// Set the overall timeout for this request (the host's default applies
    /// otherwise).
    #[must_use]
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.inner.timeout_ms = Some(u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX));
        self
    }

    /// The method.
    pub fn method(&self) -> Method {
        self.inner.method
    }

    /// The URL.
    pub fn url(&self) -> &str {
        &self.inner.url
    }

    /// Send the request and wait for the response. Redirects are followed
    /// only to granted origins. The request can be sent again.
    ///
    /// # Errors
    ///
    /// `denied` for an origin the job does not grant, `limit` for a body over
    /// the cap or a timeout, `failed` for connection errors. A non-2xx status
    /// is not an error (see [`Response::error_for_status`]).
    pub fn send(&self) -> Result<Response> {
        let response = wit::send(&self.inner).map_err(Error::from_wit)?;
        Ok(Response::from_wit(
            response,
            self.inner.method,
            &self.inner.url,
        ))
    }

    /// Start sending the request and return at once; [`Pending::wait`] gives
    /// what [`Request::send`] would have. Meanwhile the module can prepare
    /// the next request: a bulk load reads its next batch while the cluster
    /// indexes the last one.
    ///
    /// ```no_run
    /// # fn load(url: &str, batches: Vec<Vec<u8>>) -> cairn_guest::Result<()> {
    /// use cairn_guest::http::Request;
    ///
    /// let mut in_flight = None;
    /// for batch in batches {
    ///     let next = Request::post(format!("{url}/_bulk")).body(batch).start()?;
    ///     if let Some(previous) = in_flight.replace(next) {
    ///         previous.wait()?.error_for_status()?;
    ///     }
    /// }
    /// if let Some(last) = in_flight {
    ///     last.wait()?.error_for_status()?;
    /// }
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    ///
    /// `limit` when 8 started requests are not dropped yet. The errors of
    /// [`Request::send`] come from [`Pending::wait`].
    pub fn start(&self) -> Result<Pending> {
        let inner = wit::start(&self.inner).map_err(Error::from_wit)?;
        Ok(Pending {
            inner,
            method: self.inner.method,
            url: self.inner.url.clone(),
        })
    }
}

/// A request started with [`Request::start`]. Dropping it cancels the request.
#[derive(Debug)]
pub struct Pending {
    inner: wit::Pending,
    method: Method,
    url: String,
}

impl Pending {
    /// Wait for the response.
    ///
    /// # Errors
    ///
    /// As [`Request::send`].
    pub fn wait(self) -> Result<Response> {
        let response = self.inner.wait().map_err(Error::from_wit)?;
        Ok(Response::from_wit(response, self.method, &self.url))
    }

    /// The method of the request.
    pub fn method(&self) -> Method {
        self.method
    }

    /// The URL of the request.
    pub fn url(&self) -> &str {
        &self.url
    }
}

/// A GET request to `url`, sent.
///
/// # Errors
///
/// As [`Request::send`].
pub fn get(url: &str) -> Result<Response> {
    Request::get(url).send()
}

/// An HTTP response.
#[derive(Clone, Debug)]
pub struct Response {
    /// Status code.
    pub status: u16,
    /// Headers as `(name, value)` pairs, in the order received.
    pub headers: Vec<(String, String)>,
    /// Body, at most the job's body cap.
    pub body: Vec<u8>,
    method: Method,
    url: String,
}

impl Response {
    fn from_wit(response: wit::Response, method: Method, url: &str) -> Self {
        Response {
            status: response.status,
            headers: response
                .headers
                .into_iter()
                .map(|h| (h.name, h.value))
                .collect(),
            body: response.body,
            method,
            url: url.to_string(),
        }
    }

    /// Whether the status is 2xx.
    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }

    /// The first value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The body as text (invalid UTF-8 replaced).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body deserialized from JSON.
    ///
    /// # Errors
    ///
    /// `failed`, naming the request, when the body is not JSON of type `T`.
    pub fn json<T: DeserializeOwned>(&self) -> Result<T> {
        serde_json::from_slice(&self.body).map_err(|e| {
            Error::failed(format!(
                "{} {}: response body is not the expected JSON: {e}: {}",
                self.method,
                self.url,
                self.body_excerpt()
            ))
        })
    }

    /// The response itself if its status is 2xx.
    ///
    /// # Errors
    ///
    /// `failed("GET <url> returned 500: <start of the body>")` otherwise.
    pub fn error_for_status(self) -> Result<Self> {
        if self.is_success() {
            Ok(self)
        } else {
            Err(Error::failed(format!(
                "{} {} returned {}: {}",
                self.method,
                self.url,
                self.status,
                self.body_excerpt()
            )))
        }
    }

    /// The method of the request this answers.
    pub fn method(&self) -> Method {
        self.method
    }

    /// The URL of the request this answers.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The first 500 bytes of the body as text, for error messages.
    pub fn body_excerpt(&self) -> String {
        excerpt(&self.body, 500)
    }
}

/// At most `max` bytes of `bytes` as text, cut at a character boundary, with
/// `…` appended when cut.
fn excerpt(bytes: &[u8], max: usize) -> String {
    let text = String::from_utf8_lossy(bytes);
    if text.len() <= max {
        return text.into_owned();
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn methods_parse_in_any_case() {
        assert_eq!("post".parse::<Method>().unwrap(), Method::Post);
        assert_eq!(Method::Delete.to_string(), "DELETE");
        let err = "FETCH".parse::<Method>().unwrap_err();
        assert_eq!(err.kind(), crate::ErrorKind::Invalid);
    }

    #[test]
    fn json_sets_content_type_once() {
        let r = Request::post("http://x")
            .header("content-type", "application/vnd+json")
            .json(&serde_json::json!({"a": 1}))
            .unwrap();
        assert_eq!(r.inner.headers.len(), 1);
        assert_eq!(r.inner.body.as_deref(), Some(&b"{\"a\":1}"[..]));
    }

    #[test]
    fn excerpt_cuts_at_a_char_boundary() {
        assert_eq!(excerpt("héllo".as_bytes(), 2), "h…");
        assert_eq!(excerpt(b"short", 500), "short");
    }

    #[test]
    fn error_for_status_names_the_request() {
        let response = Response {
            status: 500,
            headers: vec![("Content-Type".into(), "text/plain".into())],
            body: b"boom".to_vec(),
            method: Method::Post,
            url: "http://127.0.0.1:1/x".into(),
        };
        assert_eq!(response.header("content-type"), Some("text/plain"));
        let err = response.error_for_status().unwrap_err();
        assert_eq!(
            err.to_string(),
            "POST http://127.0.0.1:1/x returned 500: boom"
        );
    }
}
