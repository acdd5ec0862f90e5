//! `cairn:plugin/http`: outbound HTTP to granted origins only.
//!
//! The grant is a list of [`OriginPattern`]s (`scheme://host:port`, host may
//! start with `*.`). Redirects are followed by hand, each hop checked against
//! the grant. Header values may contain `{{secret:NAME}}`,
//! `{{secret-base64:NAME}}` or `{{secret-basic:USER:NAME}}` (for
//! `Authorization: Basic …`; see [`crate::capabilities::secrets`]),
//! substituted here and never shown to the guest or written to logs; the
//! encoded forms are redacted too. Bodies are capped.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use url::Url;

use crate::capabilities::log::RunLog;
use crate::capabilities::secrets::SecretValues;
use crate::runtime::bindings::WitError;
use wasmtime::component::{Resource, ResourceTable};

use crate::runtime::bindings::task::cairn::plugin::http::{
    Header, Host, HostPending, Method, Request, Response,
};

/// One granted origin: `scheme://host:port`, where `host` may be `*.example.com`
/// (any subdomain) or `*` (any host).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OriginPattern {
    scheme: String,
    host: String,
    port: u16,
}

impl OriginPattern {
    /// Parse `http://127.0.0.1:9200`, `https://*.example.com` (default port of
    /// the scheme when omitted).
    ///
    /// # Errors
    /// A message saying what is wrong, for config validation.
    pub fn parse(text: &str) -> Result<Self, String> {
        let (scheme, rest) = text
            .split_once("://")
            .ok_or_else(|| format!("`{text}` is not an origin: expected `scheme://host:port`"))?;
        let scheme = scheme.to_ascii_lowercase();
        let default_port = match scheme.as_str() {
            "http" => 80,
            "https" => 443,
            other => return Err(format!("`{text}`: scheme `{other}` is not http or https")),
        };
        let rest = rest.strip_suffix('/').unwrap_or(rest);
        if rest.contains('/') || rest.contains('?') || rest.contains('#') {
            return Err(format!(
                "`{text}` has a path; grant an origin (`scheme://host:port`), not a URL"
            ));
        }
        let (host, port) = match rest.rsplit_once(':') {
            Some((h, p)) if !h.ends_with(']') || rest.starts_with('[') => {
                let port = p
                    .parse::<u16>()
                    .map_err(|_| format!("`{text}`: port `{p}` is not a number from 0 to 65535"))?;
                (h, port)
            }
            _ => (rest, default_port),
        };
        if host.is_empty() {
            return Err(format!("`{text}` has no host"));
        }
        let host = host.to_ascii_lowercase();
        if host != "*" {
            let bare = host.strip_prefix("*.").unwrap_or(&host);
            if bare.contains('*') {
                return Err(format!(
                    "`{text}`: `*` may only stand alone or start the host as `*.`"
                ));
            }
            // Reject hosts url would not accept.
            Url::parse(&format!("{scheme}://{bare}:{port}/"))
                .map_err(|e| format!("`{text}`: invalid host: {e}"))?;
        }
        Ok(Self { scheme, host, port })
    }

    /// Whether `url` is on this origin.
    pub fn matches(&self, url: &Url) -> bool {
        let Some(host) = url.host_str() else {
            return false;
        };
        let Some(port) = url.port_or_known_default() else {
            return false;
        };
        if url.scheme() != self.scheme || port != self.port {
            return false;
        }
        let host = host.to_ascii_lowercase();
        match self.host.strip_prefix("*.") {
            _ if self.host == "*" => true,
            Some(suffix) => host.len() > suffix.len() && host.ends_with(&format!(".{suffix}")),
            None => host == self.host,
        }
    }
}

impl fmt::Display for OriginPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}://{}:{}", self.scheme, self.host, self.port)
    }
}

/// The origin of `url` as `scheme://host:port`, for messages and needs checks.
pub fn origin_of(url: &Url) -> String {
    format!(
        "{}://{}:{}",
        url.scheme(),
        url.host_str().unwrap_or(""),
        url.port_or_known_default().unwrap_or(0)
    )
}

/// Default timeout of one request when the guest sets none.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);
/// Connect timeout.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Redirect hops followed at most.
const MAX_REDIRECTS: usize = 10;

/// A client shared by all runs: no automatic redirects (each hop is checked
/// against the grant here), no proxies from the environment.
pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(CONNECT_TIMEOUT)
        .no_proxy()
        .user_agent(concat!("cairn/", env!("CARGO_PKG_VERSION")))
        .build()
        .expect("TLS backend initialises")
}

/// Requests a store may have started and not yet dropped (`start`).
pub const MAX_PENDING: usize = 8;

/// The `http` capability of one store.
pub struct HttpCap {
    sender: Arc<Sender>,
    /// `pending` resources.
    table: ResourceTable,
    /// How many `pending` resources are alive.
    pending: Arc<()>,
}

/// A request started with `start`: the task sending it, aborted when dropped.
pub struct Pending {
    task: Option<tokio::task::JoinHandle<Result<Response, WitError>>>,
    _count: Arc<()>,
}

impl Drop for Pending {
    fn drop(&mut self) {
        if let Some(task) = &self.task {
            task.abort();
        }
    }
}

/// What sends a store's requests: its job's grants, body cap, secrets and log.
struct Sender {
    job: String,
    origins: Vec<OriginPattern>,
    body_cap: u64,
    client: reqwest::Client,
    secrets: Arc<SecretValues>,
    log: RunLog,
}

impl HttpCap {
    /// Requests of `job` to `origins`, bodies capped at `body_cap` bytes.
    pub fn new(
        job: &str,
        origins: Vec<OriginPattern>,
        body_cap: u64,
        client: reqwest::Client,
        secrets: Arc<SecretValues>,
        log: RunLog,
    ) -> Self {
        Self {
            sender: Arc::new(Sender {
                job: job.to_string(),
                origins,
                body_cap,
                client,
                secrets,
                log,
            }),
            table: ResourceTable::new(),
            pending: Arc::new(()),
        }
    }
}

impl Sender {
    fn check(&self, url: &Url) -> Result<(), WitError> {
        if self.origins.iter().any(|o| o.matches(url)) {
            return Ok(());
        }
        Err(WitError::Denied(format!(
            "http to {} is not granted to job `{}`: `allow.http` {}",
            origin_of(url),
            self.job,
            super::grants_phrase(&self.origins)
        )))
    }

    async fn send(&self, req: Request) -> Result<Response, WitError> {
        let mut url = Url::parse(&req.url)
            .map_err(|e| WitError::Invalid(format!("invalid URL `{}`: {e}", req.url)))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(WitError::Invalid(format!(
                "URL `{url}`: only http and https are supported"
            )));
        }
        let mut headers = reqwest::header::HeaderMap::new();
        for Header { name, value } in &req.headers {
            let value = self.secrets.substitute(&self.job, value)?;
            let name = reqwest::header::HeaderName::from_bytes(name.as_bytes())
                .map_err(|e| WitError::Invalid(format!("header name `{name}`: {e}")))?;
            let mut value = reqwest::header::HeaderValue::from_str(&value)
                .map_err(|e| WitError::Invalid(format!("header `{name}` value: {e}")))?;
            value.set_sensitive(true);
            headers.append(name, value);
        }
        let timeout = req
            .timeout_ms
            .map(Duration::from_millis)
            .unwrap_or(DEFAULT_TIMEOUT);
        let mut method = to_reqwest(req.method);
        let mut body = req.body;
        let deadline = tokio::time::Instant::now() + timeout;

        for _hop in 0..=MAX_REDIRECTS {
            self.check(&url)?;
            self.log.push("debug", &format!("http {method} {url}"), &[]);
            let mut builder = self
                .client
                .request(method.clone(), url.clone())
                .headers(headers.clone());
            if let Some(b) = &body {
                builder = builder.body(b.clone());
            }
            let remaining = deadline.saturating_duration_since(tokio::time::Instant::now());
            let resp = tokio::time::timeout(remaining, builder.send())
                .await
                .map_err(|_| timed_out(&method, &url, timeout))?
                .map_err(|e| WitError::Failed(format!("{method} {url}: {}", error_chain(&e))))?;
            let status = resp.status();
            if status.is_redirection()
                && let Some(loc) = resp.headers().get(reqwest::header::LOCATION)
            {
                let loc = loc.to_str().map_err(|_| {
                    WitError::Failed(format!("{method} {url}: redirect Location is not text"))
                })?;
                let next = url.join(loc).map_err(|e| {
                    WitError::Failed(format!("{method} {url}: bad redirect `{loc}`: {e}"))
                })?;
                if let Err(WitError::Denied(msg)) = self.check(&next) {
                    return Err(WitError::Denied(format!(
                        "redirect from {url} refused: {msg}"
                    )));
                }
                // 303 (and 301/302 for non-GET, as browsers do) switch to GET without a body.
                if status == reqwest::StatusCode::SEE_OTHER
                    || (matches!(status.as_u16(), 301 | 302) && method != reqwest::Method::HEAD)
                {
                    method = reqwest::Method::GET;
                    body = None;
                }
                url = next;
                continue;
            }
            let resp_headers = resp
                .headers()
                .iter()
                .map(|(k, v)| Header {
                    name: k.as_str().to_string(),
                    value: String::from_utf8_lossy(v.as_bytes()).into_owned(),
                })
                .collect();
            if let Some(len) = resp.content_length()
                && len > self.body_cap
            {
                return Err(self.body_too_big(&method, &url));
            }
            let mut stream = resp.bytes_stream();
            let mut collected: Vec<u8> = Vec::new();
            loop {
                let remaining = deadline.saturating_duration_since(tokio::time::Instant::now());
                let chunk = tokio::time::timeout(remaining, stream.next())
                    .await
                    .map_err(|_| timed_out(&method, &url, timeout))?;
                match chunk {
                    None => break,
                    Some(Ok(bytes)) => {
                        if collected.len() as u64 + bytes.len() as u64 > self.body_cap {
                            return Err(self.body_too_big(&method, &url));
                        }
                        collected.extend_from_slice(&bytes);
                    }
                    Some(Err(e)) => {
                        return Err(WitError::Failed(format!(
                            "{method} {url}: reading the body: {}",
                            error_chain(&e)
                        )));
                    }
                }
            }
            return Ok(Response {
                status: status.as_u16(),
                headers: resp_headers,
                body: collected,
            });
        }
        Err(WitError::Failed(format!(
            "{} {}: more than {MAX_REDIRECTS} redirects",
            to_reqwest(req.method),
            req.url
        )))
    }

    fn body_too_big(&self, method: &reqwest::Method, url: &Url) -> WitError {
        WitError::Limit(format!(
            "{method} {url}: response body exceeds the job's http-body-limit of {}",
            crate::units::format_size(self.body_cap)
        ))
    }
}

fn timed_out(method: &reqwest::Method, url: &Url, timeout: Duration) -> WitError {
    WitError::Limit(format!(
        "{method} {url}: no complete response within {}",
        crate::units::format_duration(timeout)
    ))
}

fn to_reqwest(m: Method) -> reqwest::Method {
    match m {
        Method::Get => reqwest::Method::GET,
        Method::Head => reqwest::Method::HEAD,
        Method::Post => reqwest::Method::POST,
        Method::Put => reqwest::Method::PUT,
        Method::Delete => reqwest::Method::DELETE,
        Method::Patch => reqwest::Method::PATCH,
    }
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(inner) = src {
        let msg = inner.to_string();
        if !s.contains(&msg) {
            s.push_str(": ");
            s.push_str(&msg);
        }
        src = inner.source();
    }
    s
}

impl Sender {
    /// [`Sender::send`], with failures logged.
    async fn send_logged(&self, request: Request) -> Result<Response, WitError> {
        let result = self.send(request).await;
        if let Err(e) = &result {
            self.log.push(
                "debug",
                &format!(
                    "http request failed: {}",
                    crate::runtime::describe_wit_error(e)
                ),
                &[],
            );
        }
        result
    }
}

impl Host for HttpCap {
    async fn send(&mut self, request: Request) -> wasmtime::Result<Result<Response, WitError>> {
        Ok(self.sender.send_logged(request).await)
    }

    async fn start(
        &mut self,
        request: Request,
    ) -> wasmtime::Result<Result<Resource<Pending>, WitError>> {
        // `pending` itself holds one count
        if Arc::strong_count(&self.pending) > MAX_PENDING {
            return Ok(Err(WitError::Limit(format!(
                "more than {MAX_PENDING} requests started and not yet dropped"
            ))));
        }
        let sender = self.sender.clone();
        let task = tokio::spawn(async move { sender.send_logged(request).await });
        Ok(Ok(self.table.push(Pending {
            task: Some(task),
            _count: self.pending.clone(),
        })?))
    }
}

impl HostPending for HttpCap {
    async fn wait(
        &mut self,
        pending: Resource<Pending>,
    ) -> wasmtime::Result<Result<Response, WitError>> {
        let Some(task) = self.table.get_mut(&pending)?.task.take() else {
            return Ok(Err(WitError::Invalid(
                "this request's response was already taken".into(),
            )));
        };
        Ok(match task.await {
            Ok(result) => result,
            Err(e) => Err(WitError::Failed(format!("sending the request failed: {e}"))),
        })
    }

    async fn drop(&mut self, pending: Resource<Pending>) -> wasmtime::Result<()> {
        self.table.delete(pending)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origin_patterns_match_scheme_host_and_port() {
        let p = OriginPattern::parse("http://127.0.0.1:9200").unwrap();
        assert!(p.matches(&Url::parse("http://127.0.0.1:9200/_cat").unwrap()));
        assert!(!p.matches(&Url::parse("http://127.0.0.1:9201/").unwrap()));
        assert!(!p.matches(&Url::parse("https://127.0.0.1:9200/").unwrap()));
        let w = OriginPattern::parse("https://*.example.com").unwrap();
        assert!(w.matches(&Url::parse("https://a.example.com/x").unwrap()));
        assert!(!w.matches(&Url::parse("https://example.com/").unwrap()));
        assert!(!w.matches(&Url::parse("https://evilexample.com/").unwrap()));
        assert!(OriginPattern::parse("ftp://x").is_err());
        assert!(OriginPattern::parse("http://x/path").is_err());
        assert!(OriginPattern::parse("http://a*b.com").is_err());
    }
}
