//! The Elasticsearch cluster an e2e test runs against: a fresh
//! `cairn-es-test-server` (the test double), or the real cluster named by
//! `CAIRN_TEST_ELASTICSEARCH_URL` (with `CAIRN_TEST_ELASTICSEARCH_AUTH`, a
//! whole `Authorization` header value). Every test gets its own name prefix;
//! on a real cluster what it created under that prefix is deleted at the end.

use std::sync::atomic::{AtomicU32, Ordering};

use anyhow::Context as _;
use cairn_es_test_server::{EsServer, Faults, Options};
use serde_json::Value;

/// The cluster a test runs against.
pub struct Cluster {
    pub url: String,
    /// The test server; `None` for a real cluster.
    pub server: Option<EsServer>,
    /// `Authorization` header value for a real cluster.
    pub auth: Option<String>,
    /// Prefix of every index, repository and location this test uses.
    pub prefix: String,
    client: reqwest::Client,
    runtime: tokio::runtime::Runtime,
}

/// Whether the tests run against a real cluster.
pub fn real_cluster() -> bool {
    std::env::var_os("CAIRN_TEST_ELASTICSEARCH_URL").is_some()
}

impl Cluster {
    /// A fresh test server started with `options` (or the real cluster), with
    /// names prefixed `cairn-{kind}-{test}-…`.
    pub fn start(kind: &str, test: &str, options: Options) -> anyhow::Result<Self> {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let prefix = format!(
            "cairn-{kind}-{test}-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let (url, server, auth) = match std::env::var("CAIRN_TEST_ELASTICSEARCH_URL") {
            Ok(url) => (
                url.trim_end_matches('/').to_owned(),
                None,
                std::env::var("CAIRN_TEST_ELASTICSEARCH_AUTH").ok(),
            ),
            Err(_) => {
                let server = EsServer::start(options);
                (server.url(), Some(server), None)
            }
        };
        Self::new(url, server, auth, prefix)
    }

    /// A cluster for a test server started by the test itself, keeping
    /// `prefix` (for example a restarted server on the same address).
    pub fn with_server(server: EsServer, prefix: String) -> anyhow::Result<Self> {
        Self::new(server.url(), Some(server), None, prefix)
    }

    fn new(
        url: String,
        server: Option<EsServer>,
        auth: Option<String>,
        prefix: String,
    ) -> anyhow::Result<Self> {
        Ok(Self {
            url,
            server,
            auth,
            prefix,
            client: reqwest::Client::new(),
            runtime: tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?,
        })
    }

    /// The test server's fault injection, or `None` (after saying why the
    /// test is skipped) on a real cluster.
    pub fn faults(&self, test: &str) -> Option<&Faults> {
        match &self.server {
            Some(server) => Some(server.faults()),
            None => {
                eprintln!("skipped `{test}`: it injects faults, which a real cluster cannot do");
                None
            }
        }
    }

    /// A name unique to this test.
    pub fn name(&self, suffix: &str) -> String {
        format!("{}-{suffix}", self.prefix)
    }

    /// `METHOD path` with an optional body: JSON, or a string sent as is
    /// (NDJSON for `_bulk`). Returns the status and the JSON body (`null`
    /// when it is not JSON).
    pub fn call(
        &self,
        method: &str,
        path: &str,
        body: Option<&Value>,
    ) -> anyhow::Result<(u16, Value)> {
        let method = reqwest::Method::from_bytes(method.as_bytes())?;
        let mut request = self
            .client
            .request(method.clone(), format!("{}{path}", self.url));
        if let Some(auth) = &self.auth {
            request = request.header("Authorization", auth);
        }
        match body {
            Some(Value::String(text)) => {
                let kind = if path.contains("_bulk") {
                    "application/x-ndjson"
                } else {
                    "application/json"
                };
                request = request.header("Content-Type", kind).body(text.clone());
            }
            Some(json) => {
                request = request
                    .header("Content-Type", "application/json")
                    .body(json.to_string());
            }
            None => {}
        }
        self.runtime.block_on(async {
            let response = request
                .send()
                .await
                .with_context(|| format!("{method} {path}"))?;
            let status = response.status().as_u16();
            let bytes = response.bytes().await?;
            Ok((
                status,
                serde_json::from_slice(&bytes).unwrap_or(Value::Null),
            ))
        })
    }

    /// `call`, which must answer 2xx.
    pub fn ok(&self, method: &str, path: &str, body: Option<&Value>) -> anyhow::Result<Value> {
        let (status, value) = self.call(method, path, body)?;
        anyhow::ensure!(
            (200..300).contains(&status),
            "{method} {path} returned {status}: {value}"
        );
        Ok(value)
    }
}

impl Drop for Cluster {
    /// On a real cluster: delete this test's indices, and the snapshots and
    /// registration of its snapshot repository (`<prefix>-repo`) if any.
    fn drop(&mut self) {
        if self.server.is_some() {
            return;
        }
        let _ = self.call("DELETE", &format!("/{}*", self.prefix), None);
        let repo = self.name("repo");
        if let Ok((200, snaps)) = self.call("GET", &format!("/_snapshot/{repo}/_all"), None) {
            for s in snaps["snapshots"].as_array().into_iter().flatten() {
                if let Some(name) = s["snapshot"].as_str() {
                    let _ = self.call("DELETE", &format!("/_snapshot/{repo}/{name}"), None);
                }
            }
            let _ = self.call("DELETE", &format!("/_snapshot/{repo}"), None);
        }
    }
}
