//! A TEST DOUBLE of the Elasticsearch REST subset Cairn uses — not Elasticsearch.
//!
//! No Elasticsearch can be installed where Cairn's tests run, so its Elasticsearch modules
//! (dump/restore over scroll and bulk, snapshots, the ES 0.90 data-directory pipeline) are
//! tested against this server, and the same tests run against a real cluster when
//! `CAIRN_ES_URL` is set. It plays Elasticsearch 7.17, Elasticsearch 8 (HTTPS with its own
//! generated CA, security on, no mapping types, wildcard deletes refused) or OpenSearch 2 (its
//! `distribution`, no ILM, no data tiers) — see [`Options::es7`], [`Options::es8`],
//! [`Options::opensearch2`] — with their real request, response and error shapes.
//!
//! Faithful: index/alias/mapping/settings management with ES's errors, settings validated as
//! real clusters do (unknown, archived and private settings refused; not with
//! `Options::default()`, which accepts any for the 0.90 pipeline tests), allocation filters
//! that leave an index red, closed and hidden indices, `_resolve/index`, composable and
//! component templates, ILM policies (stored), data streams, wildcard expansion, atomic alias
//! actions, dynamic mapping and mapping conflicts, bulk with per-item results, point-in-time
//! scrolls that really expire (sliced too), basic auth, API keys, bearer tokens, client
//! certificates and role privileges (403s, wildcards expanding to permitted indices only),
//! `fs` snapshot repositories whose snapshots are real files (restorable by a fresh server),
//! `IN_PROGRESS` → `SUCCESS`/`PARTIAL`/`FAILED` snapshots (deleting a running one aborts it),
//! restore with renames and ES's refusal to overwrite open indices.
//!
//! Not faithful: a single node with one data shard per index; no query DSL beyond `match_all`,
//! `match_none` and `ids` (others are a 400, never ignored); no refresh delay (writes are visible
//! at once); alias filters and routing are stored but not applied to searches; red indices fail
//! at once (ES waits for a timeout); no `_pit`, legacy templates, ingest pipelines or scripts;
//! ILM policies are not executed; the snapshot repository file format is this server's own
//! JSON, not Elasticsearch's.
//!
//! Faults ([`Faults`]) make the unhappy paths testable: rejected bulks and bulk items, rejected
//! searches, scroll contexts that vanish, pages with failed shards or `timed_out`, lost
//! acknowledged writes, concurrent-snapshot refusals, partial or failed snapshots, arbitrary
//! error statuses.
//! A server run as a separate process (`cairn-es-test-server`) takes the same faults over HTTP at
//! `POST /_cairn_test/faults` — a test-only prefix that is NOT part of Elasticsearch.
//!
//! ```no_run
//! let server = cairn_es_test_server::EsServer::start(Default::default());
//! server.seed("docs", 1_000);
//! server.faults().reject_bulk_items(2);
//! println!("{}", server.url());
//! ```

mod bulk;
mod error;
mod faults;
mod flavor;
mod http;
mod mapping;
mod search;
mod security;
mod snapshot;
mod store;
mod tls;
mod util;

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

pub use error::EsError;
pub use faults::{FailRequest, Faults, FaultsRequest, SnapshotOutcome};
pub use flavor::Flavor;
pub use security::{ApiKey, Principal, Role, Token, User};
pub use tls::{ClientAuth, TlsOptions};

use search::Scrolls;
use snapshot::Snapshots;
use store::State;

/// How to start a server.
///
/// [`Options::default`] is Elasticsearch 7.17 over plain HTTP without security, and — unlike a
/// real cluster — accepts any index setting (the ES 0.90 pipeline tests set 0.90 keys on it).
/// [`Options::es7`], [`Options::es8`] and [`Options::opensearch2`] validate settings as real
/// clusters do, and `es8` turns TLS and authentication on, as ES 8's first start does.
#[derive(Debug, Clone)]
pub struct Options {
    /// With `password`: a superuser for HTTP basic auth (401 `security_exception` otherwise).
    pub username: Option<String>,
    pub password: Option<String>,
    /// More basic-auth users, with their roles.
    pub users: Vec<User>,
    /// API keys (`Authorization: ApiKey base64(id:key)`).
    pub api_keys: Vec<ApiKey>,
    /// Bearer tokens (`Authorization: Bearer TOKEN`).
    pub tokens: Vec<Token>,
    /// Which version to be.
    pub flavor: Flavor,
    /// Serve HTTPS with a CA and certificates generated for this server.
    pub tls: Option<TlsOptions>,
    /// Refuse unknown, archived and private settings, as real clusters do.
    pub strict_settings: bool,
    /// ES's `path.repo`: where `fs` repositories may live. Default: a temporary directory the
    /// server owns and removes when dropped.
    pub path_repo: Option<PathBuf>,
    /// How long a snapshot stays `IN_PROGRESS` before it completes (default 200 ms).
    pub snapshot_delay: Duration,
    /// Address to bind (default `127.0.0.1:0`, an ephemeral port).
    pub listen: SocketAddr,
    /// Log every request to stderr (also on with `CAIRN_ES_TEST_SERVER_LOG=1`).
    pub log_requests: bool,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            username: None,
            password: None,
            users: Vec::new(),
            api_keys: Vec::new(),
            tokens: Vec::new(),
            flavor: Flavor::Elasticsearch7,
            tls: None,
            strict_settings: false,
            path_repo: None,
            snapshot_delay: snapshot::DEFAULT_DELAY,
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            log_requests: std::env::var_os("CAIRN_ES_TEST_SERVER_LOG").is_some_and(|v| v != "0"),
        }
    }
}

/// The password of user `elastic` on a server made by [`Options::es8`].
pub const ELASTIC_PASSWORD: &str = "cairn-test-elastic-password";

impl Options {
    /// Elasticsearch 7.17 with settings validated as a real cluster validates them.
    pub fn es7() -> Options {
        Options {
            strict_settings: true,
            ..Options::default()
        }
    }

    /// Elasticsearch 8 as its first start leaves it: HTTPS with its own CA, security on, user
    /// `elastic` with password [`ELASTIC_PASSWORD`]; settings validated.
    pub fn es8() -> Options {
        Options {
            flavor: Flavor::Elasticsearch8,
            tls: Some(TlsOptions::default()),
            username: Some("elastic".into()),
            password: Some(ELASTIC_PASSWORD.into()),
            strict_settings: true,
            ..Options::default()
        }
    }

    /// OpenSearch 2 (plain HTTP, security plugin off, as its demo configuration without the
    /// security plugin); settings validated.
    pub fn opensearch2() -> Options {
        Options {
            flavor: Flavor::OpenSearch2,
            strict_settings: true,
            ..Options::default()
        }
    }
}

/// Shared server state.
pub(crate) struct App {
    state: Mutex<State>,
    scrolls: Mutex<Scrolls>,
    snapshots: Mutex<Snapshots>,
    /// Serialises writes to repository files.
    repo_write: Mutex<()>,
    faults: Faults,
    path_repo: PathBuf,
    realms: security::Realms,
    flavor: Flavor,
    snapshot_delay: Duration,
    log_requests: bool,
}

impl App {
    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn scrolls(&self) -> MutexGuard<'_, Scrolls> {
        self.scrolls.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Adds `docs` deterministic small documents to `index` (created if missing), with ids
    /// continuing from its current document count.
    fn seed(&self, index: &str, docs: usize) -> Result<(), EsError> {
        let mut state = self.state();
        if !state.indices.contains_key(index) {
            state.auto_create(index)?;
        }
        let idx = state.indices.get_mut(index).expect("created");
        let first = idx.doc_count();
        let mut source = String::with_capacity(128);
        for n in first..first + docs {
            source.clear();
            write!(
                source,
                r#"{{"title":"doc {n}","n":{n},"tags":["a","b"],"at":"2026-01-01T00:00:00Z"}}"#
            )
            .expect("writing to a String");
            if n == first {
                let parsed: serde_json::Map<String, serde_json::Value> =
                    serde_json::from_str(&source).expect("valid JSON");
                mapping::index_document(&mut idx.mappings, &parsed, &n.to_string())?;
            }
            idx.put(&n.to_string(), None, Box::from(source.as_bytes()));
        }
        Ok(())
    }
}

/// A running test server; it stops (and its port closes) when dropped.
pub struct EsServer {
    app: Arc<App>,
    addr: SocketAddr,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
    _temp_repo: Option<tempfile::TempDir>,
    tls: Option<tls::TlsFiles>,
}

impl EsServer {
    /// Starts a server on its own thread and Tokio runtime (2 workers), so it works from
    /// synchronous and asynchronous tests alike.
    ///
    /// # Panics
    /// If the address cannot be bound or the temporary `path.repo` cannot be created.
    pub fn start(opts: Options) -> EsServer {
        EsServer::try_start(opts)
            .unwrap_or_else(|e| panic!("cannot start the Elasticsearch test server: {e}"))
    }

    /// Like [`EsServer::start`], returning the error instead of panicking.
    ///
    /// # Errors
    /// If the address cannot be bound or the temporary `path.repo` cannot be created.
    pub fn try_start(opts: Options) -> std::io::Result<EsServer> {
        let (temp, path_repo) = match opts.path_repo {
            Some(p) => {
                std::fs::create_dir_all(&p)?;
                (None, p)
            }
            None => {
                let t = tempfile::Builder::new()
                    .prefix("cairn-es-path-repo-")
                    .tempdir()?;
                let p = t.path().to_path_buf();
                (Some(t), p)
            }
        };
        let path_repo = path_repo.canonicalize()?;
        let mut realms = security::Realms {
            users: opts.users,
            api_keys: opts.api_keys,
            tokens: opts.tokens,
            client_cert_user: None,
        };
        if let Some(u) = opts.username {
            realms.users.insert(
                0,
                User {
                    name: u,
                    password: opts.password.unwrap_or_default(),
                    role: Role::superuser(),
                },
            );
        }
        let tls = match &opts.tls {
            Some(t) => {
                if t.client_auth != ClientAuth::None {
                    realms.client_cert_user = Some(Principal {
                        name: "cairn-client".into(),
                        role: Role::superuser(),
                    });
                }
                Some(tls::generate(t)?)
            }
            None => None,
        };
        let app = Arc::new(App {
            state: Mutex::new(State {
                flavor: opts.flavor,
                strict_settings: opts.strict_settings,
                ..State::default()
            }),
            scrolls: Mutex::new(Scrolls::default()),
            snapshots: Mutex::new(Snapshots::default()),
            repo_write: Mutex::new(()),
            faults: Faults::default(),
            path_repo,
            realms,
            flavor: opts.flavor,
            snapshot_delay: opts.snapshot_delay,
            log_requests: opts.log_requests,
        });
        let listener = std::net::TcpListener::bind(opts.listen)?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("cairn-es-test-server")
            .enable_all()
            .build()?;
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let serve_app = app.clone();
        let tls_config = tls.as_ref().map(|t| t.config.clone());
        let thread = std::thread::Builder::new()
            .name("cairn-es-test-server".into())
            .spawn(move || {
                runtime.block_on(async move {
                    let listener = match tokio::net::TcpListener::from_std(listener) {
                        Ok(l) => l,
                        Err(e) => {
                            eprintln!("cairn-es-test-server: cannot listen: {e}");
                            return;
                        }
                    };
                    let sweeper_app = serve_app.clone();
                    tokio::spawn(async move {
                        loop {
                            tokio::time::sleep(Duration::from_millis(250)).await;
                            sweeper_app.scrolls().sweep(Instant::now());
                        }
                    });
                    let router = http::router(serve_app);
                    match tls_config {
                        Some(config) => {
                            tokio::select! {
                                () = tls::serve(listener, config, router) => {}
                                _ = rx => {}
                            }
                        }
                        None => {
                            tokio::select! {
                                r = axum::serve(listener, router) => {
                                    if let Err(e) = r {
                                        eprintln!("cairn-es-test-server: server error: {e}");
                                    }
                                }
                                _ = rx => {}
                            }
                        }
                    }
                });
                runtime.shutdown_timeout(Duration::from_millis(200));
            })?;
        Ok(EsServer {
            app,
            addr,
            shutdown: Some(tx),
            thread: Some(thread),
            _temp_repo: temp,
            tls,
        })
    }

    /// `http://127.0.0.1:PORT`, or `https://…` in TLS mode.
    pub fn url(&self) -> String {
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        format!("{scheme}://{}", self.addr)
    }

    /// The version this server pretends to be.
    pub fn flavor(&self) -> Flavor {
        self.app.flavor
    }

    /// In TLS mode: the PEM file of the CA that signed the server's certificate (ES 8's
    /// `config/certs/http_ca.crt`).
    pub fn ca_pem(&self) -> Option<&Path> {
        self.tls.as_ref().map(|t| t.ca_pem.as_path())
    }

    /// In TLS mode: the CA certificate's SHA-256 fingerprint as ES 8 prints it (`AB:CD:…`).
    pub fn ca_fingerprint(&self) -> Option<&str> {
        self.tls.as_ref().map(|t| t.ca_fingerprint.as_str())
    }

    /// In TLS mode: a client certificate chain and key (PEM) signed by the server's CA.
    pub fn client_cert(&self) -> Option<(&Path, &Path)> {
        self.tls
            .as_ref()
            .map(|t| (t.client_cert_pem.as_path(), t.client_key_pem.as_path()))
    }

    /// In TLS mode: a client certificate and key (PEM) from a CA the server does not trust.
    pub fn foreign_client_cert(&self) -> Option<(&Path, &Path)> {
        self.tls.as_ref().map(|t| {
            (
                t.foreign_client_cert_pem.as_path(),
                t.foreign_client_key_pem.as_path(),
            )
        })
    }

    /// Whether the index exists and is closed.
    pub fn is_closed(&self, index: &str) -> Option<bool> {
        self.app.state().indices.get(index).map(|i| i.closed)
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The server's `path.repo`.
    pub fn path_repo(&self) -> &Path {
        &self.app.path_repo
    }

    pub fn faults(&self) -> &Faults {
        &self.app.faults
    }

    /// Adds `docs` deterministic small documents to `index` (created with dynamic mapping if
    /// missing), like `{"title":"doc 7","n":7,"tags":["a","b"],"at":"2026-01-01T00:00:00Z"}` with
    /// `_id` `"7"`; ids continue from the index's current document count.
    ///
    /// # Panics
    /// If `index` is not a valid index name.
    pub fn seed(&self, index: &str, docs: usize) {
        if let Err(e) = self.app.seed(index, docs) {
            panic!("cannot seed [{index}]: {}", e.reason);
        }
    }

    /// Scroll contexts still open (not cleared and not expired).
    pub fn open_scrolls(&self) -> usize {
        let mut scrolls = self.app.scrolls();
        scrolls.sweep(Instant::now());
        scrolls.open()
    }

    /// Number of documents in `index` or data stream `index` (`None` if it does not exist).
    pub fn doc_count(&self, index: &str) -> Option<usize> {
        let state = self.app.state();
        if let Some(ds) = state.data_streams.get(index) {
            return Some(
                ds.indices
                    .iter()
                    .filter_map(|i| state.indices.get(i))
                    .map(store::Index::doc_count)
                    .sum(),
            );
        }
        state.indices.get(index).map(store::Index::doc_count)
    }
}

impl Drop for EsServer {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
