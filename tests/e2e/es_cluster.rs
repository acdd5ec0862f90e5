//! The Elasticsearch cluster an e2e test runs against: a fresh
//! `cairn-es-test-server` (the test double), or the real cluster named by
//! `CAIRN_ES_URL` (see [`RealCluster`] for the other variables). Every test
//! gets its own name prefix; on a real cluster what it created under that
//! prefix (indices, data streams, templates, ILM policies, its snapshot
//! repository) is deleted at the end, by name: Elasticsearch 8 refuses
//! wildcard deletes.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};

use anyhow::Context as _;
use cairn_es_test_server::{EsServer, Faults, Options};
use serde_json::Value;

/// How a test reaches the cluster over TLS.
#[derive(Debug, Clone, Default)]
pub struct Tls {
    /// PEM file of the CA to trust.
    pub ca_file: Option<PathBuf>,
    /// `AB:CD:…`, SHA-256 of a certificate in the server's chain.
    pub ca_fingerprint: Option<String>,
    /// Client certificate chain and key (PEM).
    pub client_cert: Option<(PathBuf, PathBuf)>,
    /// Accept any certificate.
    pub insecure: bool,
}

/// The cluster a test runs against.
pub struct Cluster {
    pub url: String,
    /// The test server; `None` for a real cluster.
    pub server: Option<EsServer>,
    /// `Authorization` header value, if the cluster needs one.
    pub auth: Option<String>,
    /// TLS settings, for an `https://` URL.
    pub tls: Option<Tls>,
    /// Prefix of every index, repository and location this test uses.
    pub prefix: String,
    client: reqwest::Client,
    runtime: tokio::runtime::Runtime,
}

/// A real cluster, from the environment:
///
/// - `CAIRN_ES_URL` (or the older `CAIRN_TEST_ELASTICSEARCH_URL`): its URL;
/// - `CAIRN_ES_CA_FILE`: the CA to trust (ES 8: `config/certs/http_ca.crt`),
///   or `CAIRN_ES_CA_FINGERPRINT` (`AB:CD:…`, as ES 8 prints it), or
///   `CAIRN_ES_INSECURE=1`;
/// - credentials: `CAIRN_ES_USER` and `CAIRN_ES_PASSWORD`, or
///   `CAIRN_ES_API_KEY` (the `encoded` form), or `CAIRN_ES_AUTH` (a whole
///   `Authorization` value; also `CAIRN_TEST_ELASTICSEARCH_AUTH`);
/// - `CAIRN_ES_PATH_REPO` (or `CAIRN_TEST_ELASTICSEARCH_PATH_REPO`): the
///   cluster's `path.repo` as seen from this host (archive test only).
pub struct RealCluster;

fn env(names: &[&str]) -> Option<String> {
    names
        .iter()
        .find_map(|n| std::env::var(n).ok().filter(|v| !v.is_empty()))
}

/// Whether the tests run against a real cluster.
pub fn real_cluster() -> bool {
    env(&["CAIRN_ES_URL", "CAIRN_TEST_ELASTICSEARCH_URL"]).is_some()
}

/// The real cluster's `path.repo` on this host, if given.
pub fn real_path_repo() -> Option<PathBuf> {
    env(&["CAIRN_ES_PATH_REPO", "CAIRN_TEST_ELASTICSEARCH_PATH_REPO"]).map(PathBuf::from)
}

fn basic(user: &str, password: &str) -> String {
    format!(
        "Basic {}",
        cairn::capabilities::redact::base64(
            format!("{user}:{password}").as_bytes(),
            cairn::capabilities::redact::Alphabet::Standard
        )
    )
}

impl RealCluster {
    fn from_env() -> Option<(String, Option<String>, Option<Tls>)> {
        let url = env(&["CAIRN_ES_URL", "CAIRN_TEST_ELASTICSEARCH_URL"])?;
        let auth = match (env(&["CAIRN_ES_USER"]), env(&["CAIRN_ES_PASSWORD"])) {
            (Some(u), Some(p)) => Some(basic(&u, &p)),
            _ => env(&["CAIRN_ES_API_KEY"])
                .map(|k| format!("ApiKey {k}"))
                .or_else(|| env(&["CAIRN_ES_AUTH", "CAIRN_TEST_ELASTICSEARCH_AUTH"])),
        };
        let tls = url.starts_with("https://").then(|| Tls {
            ca_file: env(&["CAIRN_ES_CA_FILE"]).map(PathBuf::from),
            ca_fingerprint: env(&["CAIRN_ES_CA_FINGERPRINT"]),
            client_cert: None,
            insecure: env(&["CAIRN_ES_INSECURE"]).is_some_and(|v| v != "0"),
        });
        Some((url.trim_end_matches('/').to_owned(), auth, tls))
    }
}

impl Cluster {
    /// A fresh test server started with `options` (or the real cluster), with
    /// names prefixed `cairn-{kind}-{test}-…`.
    pub fn start(kind: &str, test: &str, options: Options) -> anyhow::Result<Self> {
        Self::start_inner(kind, test, options, true)
    }

    /// A test server started with `options`, also when a real cluster is
    /// configured (for tests of a version or security mode of their own).
    pub fn start_double(kind: &str, test: &str, options: Options) -> anyhow::Result<Self> {
        Self::start_inner(kind, test, options, false)
    }

    fn start_inner(kind: &str, test: &str, options: Options, real: bool) -> anyhow::Result<Self> {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let prefix = format!(
            "cairn-{kind}-{test}-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        if real && let Some((url, auth, tls)) = RealCluster::from_env() {
            return Self::new(url, None, auth, tls, prefix);
        }
        let auth = options
            .username
            .as_ref()
            .map(|u| basic(u, options.password.as_deref().unwrap_or_default()));
        let server = EsServer::start(options);
        let tls = server.ca_pem().map(|ca| Tls {
            ca_file: Some(ca.to_path_buf()),
            ..Tls::default()
        });
        Self::new(server.url(), Some(server), auth, tls, prefix)
    }

    /// A cluster for a test server started by the test itself, keeping
    /// `prefix` (for example a restarted server on the same address).
    pub fn with_server(server: EsServer, prefix: String) -> anyhow::Result<Self> {
        Self::new(server.url(), Some(server), None, None, prefix)
    }

    fn new(
        url: String,
        server: Option<EsServer>,
        auth: Option<String>,
        tls: Option<Tls>,
        prefix: String,
    ) -> anyhow::Result<Self> {
        Ok(Self {
            url,
            server,
            auth,
            client: client_for(tls.as_ref())?,
            tls,
            prefix,
            runtime: tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?,
        })
    }

    /// Builds the test's own HTTP client again (after `tls` changed).
    pub fn rebuild_client(&mut self) -> anyhow::Result<()> {
        self.client = client_for(self.tls.as_ref())?;
        Ok(())
    }

    /// The test server's fault injection; an error on a real cluster (tests
    /// that inject faults start a double with `start_double`).
    pub fn faults(&self) -> anyhow::Result<&Faults> {
        self.server
            .as_ref()
            .map(EsServer::faults)
            .context("faults are injected into the test double only: start it with `start_double`")
    }

    /// A name unique to this test.
    pub fn name(&self, suffix: &str) -> String {
        format!("{}-{suffix}", self.prefix)
    }

    /// `scheme://host:port` of the URL.
    pub fn origin(&self) -> String {
        let parsed = url::Url::parse(&self.url).expect("the cluster URL parses");
        format!(
            "{}://{}:{}",
            parsed.scheme(),
            parsed.host_str().unwrap_or_default(),
            parsed.port_or_known_default().unwrap_or(0)
        )
    }

    /// The `[jobs.JOB.tls."origin"]` table for this cluster (empty over
    /// plain HTTP).
    pub fn tls_toml(&self, job: &str) -> String {
        let Some(tls) = &self.tls else {
            return String::new();
        };
        let mut out = format!("\n[jobs.{job}.tls.{:?}]\n", self.origin());
        if let Some(ca) = &tls.ca_file {
            out.push_str(&format!("ca-file = {:?}\n", ca.display().to_string()));
        } else if let Some(fp) = &tls.ca_fingerprint {
            out.push_str(&format!("ca-fingerprint = \"sha256:{fp}\"\n"));
        }
        if let Some((cert, key)) = &tls.client_cert {
            out.push_str(&format!(
                "client-cert = {:?}\nclient-key = {:?}\n",
                cert.display().to_string(),
                key.display().to_string()
            ));
        }
        if tls.insecure {
            out.push_str("insecure = true\n");
        }
        out
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

    /// Names under this test's prefix in a GET answer (`{"name": …}` maps or
    /// lists of `{"name": …}`).
    fn own_names(&self, value: &Value, list: &str) -> Vec<String> {
        let mut out = Vec::new();
        if let Some(items) = value[list].as_array() {
            out.extend(
                items
                    .iter()
                    .filter_map(|i| i["name"].as_str().map(str::to_owned)),
            );
        } else if let Some(map) = value.as_object() {
            out.extend(map.keys().cloned());
        }
        out.retain(|n| n.starts_with(&self.prefix));
        out
    }
}

/// The test's own HTTP client for a cluster reached with `tls`.
fn client_for(tls: Option<&Tls>) -> anyhow::Result<reqwest::Client> {
    let mut builder = reqwest::Client::builder();
    if let Some(tls) = tls {
        if let Some(ca) = &tls.ca_file {
            let pem = std::fs::read(ca).with_context(|| format!("reading {}", ca.display()))?;
            builder = builder.add_root_certificate(reqwest::Certificate::from_pem(&pem)?);
        } else {
            // A fingerprint cannot be pinned with reqwest: the test's own
            // client trusts the server (the module's side is checked by the host).
            builder = builder.danger_accept_invalid_certs(true);
        }
        if let Some((cert, key)) = &tls.client_cert {
            let mut pem = std::fs::read(cert)?;
            pem.extend(std::fs::read(key)?);
            builder = builder.identity(reqwest::Identity::from_pem(&pem)?);
        }
    }
    Ok(builder.build()?)
}

impl Drop for Cluster {
    /// On a real cluster: delete, by name, what this test created under its
    /// prefix: data streams, indices, index and component templates, ILM
    /// policies, and the snapshots and registration of its snapshot
    /// repository (`<prefix>-repo`).
    fn drop(&mut self) {
        if self.server.is_some() {
            return;
        }
        let pattern = format!("{}*", self.prefix);
        if let Ok((200, resolved)) = self.call(
            "GET",
            &format!("/_resolve/index/{pattern}?expand_wildcards=all"),
            None,
        ) {
            for ds in self.own_names(&resolved, "data_streams") {
                let _ = self.call("DELETE", &format!("/_data_stream/{ds}"), None);
            }
            let indices: Vec<String> = resolved["indices"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|i| i["data_stream"].is_null())
                .filter_map(|i| i["name"].as_str().map(str::to_owned))
                .filter(|n| n.starts_with(&self.prefix))
                .collect();
            for chunk in indices.chunks(20) {
                let _ = self.call("DELETE", &format!("/{}", chunk.join(",")), None);
            }
        }
        for (api, list) in [
            ("_index_template", "index_templates"),
            ("_component_template", "component_templates"),
        ] {
            if let Ok((200, found)) = self.call("GET", &format!("/{api}/{pattern}"), None) {
                for name in self.own_names(&found, list) {
                    let _ = self.call("DELETE", &format!("/{api}/{name}"), None);
                }
            }
        }
        if let Ok((200, policies)) = self.call("GET", "/_ilm/policy", None) {
            for name in self.own_names(&policies, "") {
                let _ = self.call("DELETE", &format!("/_ilm/policy/{name}"), None);
            }
        }
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
