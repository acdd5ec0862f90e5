//! `cairn:plugin/http`: outbound HTTP to granted origins only.
//!
//! The grant is a list of [`OriginPattern`]s (`scheme://host:port`, host may
//! start with `*.`). Redirects are followed by hand, each hop checked against
//! the grant; a hop to another origin drops `Authorization`, `Cookie`,
//! `Proxy-Authorization` and every header that carried a secret (as curl
//! does). Header values may contain `{{secret:NAME}}`,
//! `{{secret-base64:NAME}}` or `{{secret-basic:USER:NAME}}` (for
//! `Authorization: Basic …`; see [`crate::capabilities::secrets`]) where the
//! secret is bound to that header of that origin. A module may not set
//! `Host` or the headers that frame a request. Response headers and bodies
//! are capped and cleaned of every form of every secret before the module
//! sees them.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use url::Url;
use wasmtime::component::{HasSelf, Linker, Resource, ResourceTable};

use super::bindings::interfaces::http::{
    self, Header, Host, HostPending, Method, Request, Response,
};
use super::log::RunLog;
use super::redact::Redactor;
use super::secrets::{Destination, SecretValues};
use super::{Capability, HostError, HostResult, HostShared, RunContext, WitError, grants_phrase};
use crate::model::{OriginPattern, origin_of, reserved_header};
use crate::units::{format_duration, format_size};

/// Default timeout of one request when the guest sets none.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);
/// Connect timeout.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Redirect hops followed at most.
const MAX_REDIRECTS: usize = 10;
/// Requests a store may have started and not yet dropped (`start`).
pub const MAX_PENDING: usize = 8;

/// How every client of the host is set up: no automatic redirects (each hop
/// is checked against the grant here), no proxies from the environment.
pub fn builder() -> reqwest::ClientBuilder {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(CONNECT_TIMEOUT)
        .no_proxy()
        .user_agent(concat!("cairn/", env!("CARGO_PKG_VERSION")))
}

/// The client shared by all runs, for origins without TLS settings of their
/// own (public roots).
pub fn client() -> reqwest::Client {
    builder().build().expect("TLS backend initialises")
}

/// Why a request was refused or failed.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    /// The origin is not in the job's `allow.http`.
    #[error("http to {origin} is not granted to job `{job}`: `allow.http` {granted}")]
    NotGranted {
        /// `scheme://host:port`.
        origin: String,
        /// The job.
        job: String,
        /// What the job grants, as a phrase.
        granted: String,
    },
    /// A redirect pointed at an origin the job does not grant.
    #[error("redirect from {from} refused: {refusal}")]
    RedirectRefused {
        /// The URL that redirected.
        from: String,
        /// Why the target is refused.
        refusal: Box<HttpError>,
    },
    /// The request is malformed (URL, scheme, header).
    #[error("{0}")]
    Invalid(String),
    /// No complete response within the request's timeout.
    #[error("{request}: no complete response within {}", format_duration(*.timeout))]
    TimedOut {
        /// `METHOD URL`.
        request: String,
        /// The timeout.
        timeout: Duration,
    },
    /// The response body is over the job's cap.
    #[error("{request}: response body exceeds the job's http-body-limit of {}", format_size(*.cap))]
    BodyTooLarge {
        /// `METHOD URL`.
        request: String,
        /// The cap, bytes.
        cap: u64,
    },
    /// Too many requests started and not dropped.
    #[error("more than {MAX_PENDING} requests started and not yet dropped")]
    TooManyPending,
    /// A header the host sets itself.
    #[error("header `{name}` cannot be set by a module: {why}")]
    ReservedHeader {
        /// The header.
        name: String,
        /// Why.
        why: &'static str,
    },
    /// A secret placeholder in a header could not be filled in.
    #[error("{}", super::describe(.0))]
    Secret(WitError),
    /// The request was sent and failed (connection, protocol, redirects).
    #[error("{0}")]
    Failed(String),
}

impl From<HttpError> for WitError {
    fn from(e: HttpError) -> Self {
        match e {
            HttpError::Secret(e) => e,
            HttpError::NotGranted { .. }
            | HttpError::RedirectRefused { .. }
            | HttpError::ReservedHeader { .. } => Self::Denied(e.to_string()),
            HttpError::Invalid(_) => Self::Invalid(e.to_string()),
            HttpError::TimedOut { .. }
            | HttpError::BodyTooLarge { .. }
            | HttpError::TooManyPending => Self::Limit(e.to_string()),
            HttpError::Failed(_) => Self::Failed(e.to_string()),
        }
    }
}

impl From<HttpError> for HostError {
    fn from(e: HttpError) -> Self {
        WitError::from(e).into()
    }
}

/// The `http` capability of one store.
pub struct HttpCap {
    sender: Arc<Sender>,
    /// `pending` resources.
    table: ResourceTable,
    /// How many `pending` resources are alive (`pending` itself holds one).
    pending: Arc<()>,
}

/// A request started with `start`: the task sending it, aborted when dropped.
pub struct Pending {
    task: Option<tokio::task::JoinHandle<Result<Response, HttpError>>>,
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
    /// Clients for origins with TLS settings (`[jobs.NAME.tls]`), exact
    /// origins before wildcard ones.
    tls: Vec<(OriginPattern, reqwest::Client)>,
    secrets: Arc<SecretValues>,
    redactor: Arc<Redactor>,
    log: RunLog,
}

impl Capability for HttpCap {
    const INTERFACE: &'static str = "cairn:plugin/http";

    fn add_to_linker<T: Send + 'static>(
        linker: &mut Linker<T>,
        get: fn(&mut T) -> &mut Self,
    ) -> wasmtime::Result<()> {
        http::add_to_linker::<T, HasSelf<Self>>(linker, get)
    }

    /// Requests of the run's job to its granted origins, bodies capped at
    /// its `http-body-limit`.
    fn prepare(run: &RunContext, host: &HostShared) -> anyhow::Result<Self> {
        let mut tls = Vec::new();
        for settings in &run.grants.tls {
            if settings.trust == Some(crate::model::ServerTrust::Insecure) {
                run.log.push(
                    "warn",
                    &format!(
                        "TLS certificates of {} are not verified (`insecure = true`)",
                        settings.origin
                    ),
                    &[],
                );
            }
            tls.push((settings.origin.clone(), super::tls::client(settings)?));
        }
        tls.sort_by_key(|(origin, _)| origin.is_wildcard());
        Ok(Self {
            sender: Arc::new(Sender {
                job: run.job.clone(),
                origins: run.grants.http.clone(),
                body_cap: run.limits.http_body,
                client: host.http.clone(),
                tls,
                secrets: run.secrets.clone(),
                redactor: run.log.redactor_arc(),
                log: run.log.clone(),
            }),
            table: ResourceTable::new(),
            pending: Arc::new(()),
        })
    }

    fn redactor(&self) -> Option<&Redactor> {
        Some(&self.sender.redactor)
    }
}

impl Sender {
    fn check(&self, url: &Url) -> Result<(), HttpError> {
        if self.origins.iter().any(|o| o.matches(url)) {
            return Ok(());
        }
        Err(HttpError::NotGranted {
            origin: origin_of(url),
            job: self.job.clone(),
            granted: grants_phrase(&self.origins),
        })
    }

    /// The client for `url`: its origin's TLS settings, else the shared one.
    fn client_for(&self, url: &Url) -> &reqwest::Client {
        self.tls
            .iter()
            .find(|(origin, _)| origin.matches(url))
            .map_or(&self.client, |(_, client)| client)
    }

    async fn send(&self, req: Request) -> Result<Response, HttpError> {
        let mut url = Url::parse(&req.url)
            .map_err(|e| HttpError::Invalid(format!("invalid URL `{}`: {e}", req.url)))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(HttpError::Invalid(format!(
                "URL `{url}`: only http and https are supported"
            )));
        }
        let mut headers = reqwest::header::HeaderMap::new();
        // Headers that carry a secret: dropped when a redirect changes origin.
        let mut secret_bearing = Vec::new();
        self.check(&url)?;
        for Header { name, value } in &req.headers {
            if let Some(why) = reserved_header(name) {
                return Err(HttpError::ReservedHeader {
                    name: name.clone(),
                    why,
                });
            }
            let to = Destination::Header { url: &url, name };
            let (value, carries_secret) = self
                .secrets
                .substitute(&self.job, value, to)
                .map_err(HttpError::Secret)?;
            let name = reqwest::header::HeaderName::from_bytes(name.as_bytes())
                .map_err(|e| HttpError::Invalid(format!("header name `{name}`: {e}")))?;
            let mut value = reqwest::header::HeaderValue::from_str(&value)
                .map_err(|e| HttpError::Invalid(format!("header `{name}` value: {e}")))?;
            value.set_sensitive(true);
            if carries_secret {
                secret_bearing.push(name.clone());
            }
            headers.append(name, value);
        }
        let timeout = req
            .timeout_ms
            .map(Duration::from_millis)
            .unwrap_or(DEFAULT_TIMEOUT);
        let mut method = to_reqwest(req.method);
        let mut body = req.body;
        let deadline = tokio::time::Instant::now() + timeout;
        let timed_out = |method: &reqwest::Method, url: &Url| HttpError::TimedOut {
            request: format!("{method} {url}"),
            timeout,
        };

        for _hop in 0..=MAX_REDIRECTS {
            self.check(&url)?;
            self.log.push("debug", &format!("http {method} {url}"), &[]);
            let mut builder = self
                .client_for(&url)
                .request(method.clone(), url.clone())
                .headers(headers.clone());
            if let Some(b) = &body {
                builder = builder.body(b.clone());
            }
            let remaining = deadline.saturating_duration_since(tokio::time::Instant::now());
            let resp = tokio::time::timeout(remaining, builder.send())
                .await
                .map_err(|_| timed_out(&method, &url))?
                .map_err(|e| {
                    let mut message = format!("{method} {url}: {}", error_chain(&e));
                    if message.contains("invalid peer certificate") {
                        message.push_str(&format!(
                            " (the server's certificate is not trusted: give the job \
                             `[jobs.{}.tls.\"{}\"]` with `ca-file` or `ca-fingerprint`)",
                            self.job,
                            origin_of(&url)
                        ));
                    }
                    HttpError::Failed(message)
                })?;
            let status = resp.status();
            if status.is_redirection()
                && let Some(loc) = resp.headers().get(reqwest::header::LOCATION)
            {
                let loc = loc.to_str().map_err(|_| {
                    HttpError::Failed(format!("{method} {url}: redirect Location is not text"))
                })?;
                let next = url.join(loc).map_err(|e| {
                    HttpError::Failed(format!("{method} {url}: bad redirect `{loc}`: {e}"))
                })?;
                if let Err(refusal) = self.check(&next) {
                    return Err(HttpError::RedirectRefused {
                        from: url.to_string(),
                        refusal: Box::new(refusal),
                    });
                }
                if origin_of(&next) != origin_of(&url) {
                    // Credentials stay with the origin they were meant for.
                    for name in [
                        reqwest::header::AUTHORIZATION,
                        reqwest::header::COOKIE,
                        reqwest::header::PROXY_AUTHORIZATION,
                    ]
                    .iter()
                    .chain(&secret_bearing)
                    {
                        headers.remove(name);
                    }
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
                    value: self.redactor.redact(&String::from_utf8_lossy(v.as_bytes())),
                })
                .collect();
            let too_big = || HttpError::BodyTooLarge {
                request: format!("{method} {url}"),
                cap: self.body_cap,
            };
            if let Some(len) = resp.content_length()
                && len > self.body_cap
            {
                return Err(too_big());
            }
            let mut stream = resp.bytes_stream();
            let mut collected: Vec<u8> = Vec::new();
            loop {
                let remaining = deadline.saturating_duration_since(tokio::time::Instant::now());
                let chunk = tokio::time::timeout(remaining, stream.next())
                    .await
                    .map_err(|_| timed_out(&method, &url))?;
                match chunk {
                    None => break,
                    Some(Ok(bytes)) => {
                        if collected.len() as u64 + bytes.len() as u64 > self.body_cap {
                            return Err(too_big());
                        }
                        collected.extend_from_slice(&bytes);
                    }
                    Some(Err(e)) => {
                        return Err(HttpError::Failed(format!(
                            "{method} {url}: reading the body: {}",
                            error_chain(&e)
                        )));
                    }
                }
            }
            return Ok(Response {
                status: status.as_u16(),
                headers: resp_headers,
                body: self.redactor.redact_bytes(&collected),
            });
        }
        Err(HttpError::Failed(format!(
            "{} {}: more than {MAX_REDIRECTS} redirects",
            to_reqwest(req.method),
            req.url
        )))
    }

    /// [`Sender::send`], with failures logged.
    async fn send_logged(&self, request: Request) -> Result<Response, HttpError> {
        let result = self.send(request).await;
        if let Err(e) = &result {
            self.log
                .push("debug", &format!("http request failed: {e}"), &[]);
        }
        result
    }
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

impl Host for HttpCap {
    async fn send(&mut self, request: Request) -> HostResult<Response> {
        Ok(self.sender.send_logged(request).await?)
    }

    async fn start(&mut self, request: Request) -> HostResult<Resource<Pending>> {
        if Arc::strong_count(&self.pending) > MAX_PENDING {
            return Err(HttpError::TooManyPending.into());
        }
        let sender = self.sender.clone();
        let task = tokio::spawn(async move { sender.send_logged(request).await });
        Ok(self.table.push(Pending {
            task: Some(task),
            _count: self.pending.clone(),
        })?)
    }
}

impl HostPending for HttpCap {
    async fn wait(&mut self, pending: Resource<Pending>) -> HostResult<Response> {
        let Some(task) = self.table.get_mut(&pending)?.task.take() else {
            return Err(
                WitError::Invalid("this request's response was already taken".into()).into(),
            );
        };
        match task.await {
            Ok(result) => Ok(result?),
            Err(e) => Err(HttpError::Failed(format!("sending the request failed: {e}")).into()),
        }
    }

    async fn drop(&mut self, pending: Resource<Pending>) -> wasmtime::Result<()> {
        self.table.delete(pending)?;
        Ok(())
    }
}
