//! `builtin:elasticsearch-snapshot`: a Task that backs up an Elasticsearch
//! cluster (1.0 or later; 6.x, 7.x, 8.x and OpenSearch speak the same API)
//! through its snapshot API, restores a snapshot into renamed indices
//! (moving aliases atomically), and deletes the Elasticsearch snapshot when
//! Cairn forgets the snapshot that records it.
//!
//! The cluster writes the snapshot into its own snapshot repository; the
//! Cairn snapshot records which one (notes and a small JSON artifact) and,
//! with `archive-path`, also holds a copy of the repository directory.
//!
//! # Params
//!
//! - `url` (required): the cluster, e.g. `http://127.0.0.1:9200`.
//! - `repository` (default `cairn`): the Elasticsearch snapshot repository.
//! - `location` (optional): when set, the task registers `repository` as a
//!   shared file-system repository (`type: fs`) with this location if it is
//!   not registered yet. A relative location is resolved by Elasticsearch
//!   against the first entry of the cluster's `path.repo`; every location
//!   must lie under `path.repo`. A repository already registered with other
//!   settings is an error (nothing is re-registered). Without `location`
//!   the repository must already exist.
//! - `indices` (default: all): index names or patterns (`logs-*`,
//!   `-logs-old`), as a list or a comma-separated string. At restore it
//!   chooses which indices of the snapshot to restore.
//! - `include-global-state` (default `false`): also snapshot (and restore)
//!   the cluster state: templates, persistent settings.
//! - Credentials, one of: `username` with `password-secret` (the name of a
//!   secret bound in `allow.secrets`; the host sends
//!   `Authorization: Basic {{secret-basic:USERNAME:SECRET}}`, so the module
//!   never sees the password), `api-key-secret` (an API key in its
//!   `encoded` form: `ApiKey …`), `bearer-secret` (`Bearer …`), or
//!   `authorization-secret`, a secret holding the whole `Authorization`
//!   value. TLS (CA file or fingerprint, client certificate) is the host's:
//!   `[jobs.NAME.tls."https://host:port"]`.
//! - `poll-interval` (seconds, default `1`): how often to ask whether the
//!   snapshot is done. `snapshot-timeout` (seconds, default 3600): give up
//!   (and abort the snapshot) after this long, and the longest a restore
//!   may take; the run's own timeout applies anyway. Polling goes on
//!   through 429s, 5xx and lost connections until then.
//! - `retries` (default 8): how often creating the snapshot is tried again
//!   when the cluster refuses it with `concurrent_snapshot_execution_exception`
//!   (another snapshot or a deletion is running), 429 or a 5xx, with
//!   exponential backoff from 1 s (at most 60 s).
//! - `archive-path` (optional): the repository's directory on this host
//!   (`path.repo` + `location`), granted in `allow.paths` (read-write for a
//!   restore). After a successful snapshot it is added to the Cairn snapshot
//!   as tree artifact `es-repository`. A restore puts it back first when the
//!   directory is missing or empty (an existing repository is never written
//!   over: it may hold newer snapshots), so a cluster that lost its
//!   repository can still be restored.
//! - Restore only: by default every index is restored under a new name,
//!   `rename-pattern` (default `(.+)`, a regular expression) replaced by
//!   `rename-replacement` (default `restored-$1`), so `logs` comes back as
//!   `restored-logs` next to the original, without its aliases. With
//!   `restore-to-originals = true` indices come back under their own names,
//!   with their aliases; Elasticsearch refuses to restore over an open index,
//!   and so does the task unless `delete-existing = true`, which deletes
//!   each target index that exists first (for renamed restores too).
//!   `move-aliases = true` (renamed restores only) then moves the aliases of
//!   each original index (as recorded at backup, and as they are now) onto
//!   its restored copy in one atomic `POST /_aliases`.
//!
//! # What it does
//!
//! Backup: `GET /` (version, and a clear error for bad credentials), checks
//! or registers the repository, records the aliases of the chosen indices,
//! then `PUT /_snapshot/REPO/NAME?wait_for_completion=false` with the name
//! `cairn-<job>-<run id>` (lower case; other characters than `a-z0-9._-`
//! become `-`), and polls `GET /_snapshot/REPO/NAME` until the snapshot is
//! no longer `IN_PROGRESS`. `SUCCESS` succeeds; `PARTIAL` and `FAILED` fail
//! the run quoting the shard failures (index, shard, reason) and delete the
//! useless snapshot, and so does any later failure (the Cairn snapshot is
//! then not committed, so nothing would refer to it). Notes: `es-snapshot`,
//! `es-repository`, `es-url`, `es-version`, `archive` (when archived);
//! artifact `elasticsearch-snapshot.json` holds the same and the indices,
//! shard counts and aliases.
//!
//! Restore: reads the record, restores the archive if asked, checks the
//! repository, deletes existing targets if asked, then
//! `POST /_snapshot/REPO/NAME/_restore?wait_for_completion=true`, and moves
//! aliases.
//!
//! Forget (before Cairn forgets a snapshot): registers the repository again
//! from `location` if it is set and the registration is gone, then
//! `DELETE /_snapshot/REPO/NAME` at `url`. A snapshot already gone counts as
//! deleted; any other failure keeps the Cairn snapshot, and the deletion is
//! tried again at the next forget.
//!
//! # Example
//!
//! ```toml
//! [secrets.ES_PASSWORD]
//! env = "ES_PASSWORD"
//!
//! [jobs.search]
//! task = "builtin:elasticsearch-snapshot"
//! params = { url = "http://127.0.0.1:9200", location = "cairn", username = "elastic", password-secret = "ES_PASSWORD" }
//! schedule = "0 * * * *"
//! retention = { keep-last = 24 }
//!
//! [jobs.search.allow]
//! http = ["http://127.0.0.1:9200"]
//! secrets = ["ES_PASSWORD"]
//! ```
//!
//! Backup result: `{"snapshot": "cairn-search-…", "repository": "cairn",
//! "state": "SUCCESS", "indices": […], "shards": {"total": 5, "successful":
//! 5, "failed": 0}, "archived": false}`. Restore result: `{"snapshot": …,
//! "indices": [{"from": "logs", "to": "restored-logs"}], "shards": {…},
//! "deleted": […], "aliases_moved": [{"alias": …, "from": …, "to": …}],
//! "archive_restored": false}`.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::time::Duration;

use cairn_guest::http::{Method, Request, Response};
use cairn_guest::progress::{self, Unit};
use cairn_guest::storage::ArtifactKind;
use cairn_guest::{
    Context, Description, Error, ErrorContext, Param, Result, Task, Value, json, log, serde_json,
    storage, time,
};
use regex::Regex;
use serde::{Deserialize, Serialize};

/// The JSON artifact recording the Elasticsearch snapshot.
const RECORD_ARTIFACT: &str = "elasticsearch-snapshot.json";
/// The tree artifact holding the repository directory (`archive-path`).
const ARCHIVE_ARTIFACT: &str = "es-repository";
/// Notes written at backup.
const NOTE_SNAPSHOT: &str = "es-snapshot";
const NOTE_REPOSITORY: &str = "es-repository";
const NOTE_URL: &str = "es-url";
const NOTE_VERSION: &str = "es-version";
const NOTE_ARCHIVE: &str = "archive";
/// Format of [`Record`].
const RECORD_FORMAT: u32 = 1;
/// How many shard failures an error quotes.
const QUOTED_FAILURES: usize = 5;

fn default_repository() -> String {
    "cairn".to_owned()
}

fn default_poll_interval() -> f64 {
    1.0
}

fn default_snapshot_timeout() -> f64 {
    3600.0
}

fn default_retries() -> u32 {
    8
}

fn default_rename_pattern() -> String {
    "(.+)".to_owned()
}

fn default_rename_replacement() -> String {
    "restored-$1".to_owned()
}

/// `indices` as a list or a comma-separated string.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum Indices {
    Text(String),
    List(Vec<String>),
}

impl Indices {
    fn patterns(&self) -> Vec<String> {
        let items: Vec<&str> = match self {
            Indices::Text(text) => text.split(',').collect(),
            Indices::List(list) => list.iter().flat_map(|i| i.split(',')).collect(),
        };
        items
            .into_iter()
            .map(str::trim)
            .filter(|i| !i.is_empty())
            .map(str::to_owned)
            .collect()
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct Params {
    url: String,
    #[serde(default = "default_repository")]
    repository: String,
    #[serde(default)]
    location: Option<String>,
    #[serde(default)]
    indices: Option<Indices>,
    #[serde(default)]
    include_global_state: bool,
    #[serde(default)]
    username: Option<String>,
    #[serde(default)]
    password_secret: Option<String>,
    #[serde(default)]
    authorization_secret: Option<String>,
    #[serde(default)]
    api_key_secret: Option<String>,
    #[serde(default)]
    bearer_secret: Option<String>,
    #[serde(default = "default_poll_interval")]
    poll_interval: f64,
    #[serde(default = "default_snapshot_timeout")]
    snapshot_timeout: f64,
    #[serde(default = "default_retries")]
    retries: u32,
    #[serde(default)]
    archive_path: Option<String>,
    #[serde(default = "default_rename_pattern")]
    rename_pattern: String,
    #[serde(default = "default_rename_replacement")]
    rename_replacement: String,
    #[serde(default)]
    restore_to_originals: bool,
    #[serde(default)]
    delete_existing: bool,
    #[serde(default)]
    move_aliases: bool,
}

/// Params checked and put in the form the task uses.
struct Settings {
    url: String,
    repository: String,
    location: Option<String>,
    indices: Vec<String>,
    include_global_state: bool,
    authorization: Option<String>,
    poll_interval: Duration,
    snapshot_timeout: Duration,
    retries: u32,
    archive_path: Option<String>,
    rename: Option<Rename>,
    delete_existing: bool,
    move_aliases: bool,
}

/// How restored indices are renamed: ES's `rename_pattern` and
/// `rename_replacement` (Java regular expression syntax, `$1` for groups).
struct Rename {
    pattern: String,
    replacement: String,
    regex: Regex,
    /// `replacement` in the syntax of the `regex` crate (`${1}`).
    rust_replacement: String,
}

impl Rename {
    fn apply(&self, index: &str) -> String {
        self.regex
            .replace_all(index, self.rust_replacement.as_str())
            .into_owned()
    }
}

fn invalid(message: impl std::fmt::Display) -> Error {
    Error::invalid(format!("invalid params: {message}"))
}

/// Secret names as the host accepts them: `[A-Za-z_][A-Za-z0-9_]*`.
fn check_secret_name(param: &str, name: &str) -> Result<()> {
    let mut chars = name.chars();
    let first_ok = chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_');
    if first_ok && chars.all(|c| c.is_ascii_alphanumeric() || c == '_') {
        Ok(())
    } else {
        Err(invalid(format!(
            "`{param}` must name a secret granted in `allow.secrets` (letters, digits and `_`), \
             got {name:?}"
        )))
    }
}

fn seconds(param: &str, value: f64) -> Result<Duration> {
    Duration::try_from_secs_f64(value)
        .ok()
        .filter(|d| !d.is_zero())
        .ok_or_else(|| {
            invalid(format!(
                "`{param}` must be a positive number of seconds, got {value}"
            ))
        })
}

/// A Java-style replacement (`$1`, `\$`) in the `regex` crate's syntax
/// (`${1}`, `$$`).
fn rust_replacement(java: &str) -> String {
    let mut out = String::with_capacity(java.len() + 4);
    let mut chars = java.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' => match chars.next() {
                Some('$') => out.push_str("$$"),
                Some(other) => out.push(other),
                None => out.push('\\'),
            },
            '$' => {
                let mut digits = String::new();
                while let Some(d) = chars.peek().filter(|d| d.is_ascii_digit()) {
                    digits.push(*d);
                    chars.next();
                }
                if digits.is_empty() {
                    out.push_str("$$");
                } else {
                    out.push_str(&format!("${{{digits}}}"));
                }
            }
            other => out.push(other),
        }
    }
    out
}

impl Params {
    fn settings(self) -> Result<Settings> {
        let url = self.url.trim().trim_end_matches('/').to_owned();
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            return Err(invalid(format!(
                "`url` must be an http:// or https:// URL, got {:?}",
                self.url
            )));
        }
        if self.repository.is_empty()
            || self.repository.starts_with('_')
            || !self
                .repository
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
        {
            return Err(invalid(format!(
                "`repository` must be letters, digits, `.`, `_` and `-`, not starting with `_`; \
                 got {:?}",
                self.repository
            )));
        }
        if let Some(location) = &self.location
            && location.trim().is_empty()
        {
            return Err(invalid(
                "`location` is empty; leave it out to use an existing repository",
            ));
        }
        let token = match (&self.api_key_secret, &self.bearer_secret) {
            (Some(_), Some(_)) => {
                return Err(invalid("set `api-key-secret` or `bearer-secret`, not both"));
            }
            (Some(secret), None) => {
                check_secret_name("api-key-secret", secret)?;
                Some(format!("ApiKey {{{{secret:{secret}}}}}"))
            }
            (None, Some(secret)) => {
                check_secret_name("bearer-secret", secret)?;
                Some(format!("Bearer {{{{secret:{secret}}}}}"))
            }
            (None, None) => None,
        };
        if token.is_some()
            && (self.username.is_some()
                || self.password_secret.is_some()
                || self.authorization_secret.is_some())
        {
            return Err(invalid(
                "set one of `username` with `password-secret`, `api-key-secret`, \
                 `bearer-secret` or `authorization-secret`",
            ));
        }
        let authorization = match (
            &self.username,
            &self.password_secret,
            &self.authorization_secret,
        ) {
            (None, None, None) => token,
            (Some(user), Some(secret), None) => {
                if user.is_empty() || user.contains(':') || user.contains("}}") {
                    return Err(invalid(format!(
                        "`username` must be non-empty without `:` or `}}}}`, got {user:?}"
                    )));
                }
                check_secret_name("password-secret", secret)?;
                Some(format!("Basic {{{{secret-basic:{user}:{secret}}}}}"))
            }
            (None, None, Some(secret)) => {
                check_secret_name("authorization-secret", secret)?;
                Some(format!("{{{{secret:{secret}}}}}"))
            }
            (Some(_), None, _) => {
                return Err(invalid(
                    "`username` needs `password-secret` (the name of the secret holding the password)",
                ));
            }
            (None, Some(_), _) => {
                return Err(invalid("`password-secret` needs `username`"));
            }
            (_, _, Some(_)) => {
                return Err(invalid(
                    "set either `username` with `password-secret`, or `authorization-secret`, not both",
                ));
            }
        };
        let poll_interval = seconds("poll-interval", self.poll_interval)?;
        let snapshot_timeout = seconds("snapshot-timeout", self.snapshot_timeout)?;
        if self.retries > 100 {
            return Err(invalid(format!(
                "`retries` must be at most 100, got {}",
                self.retries
            )));
        }
        if let Some(path) = &self.archive_path
            && !path.starts_with('/')
        {
            return Err(invalid(format!(
                "`archive-path` must be an absolute path (the repository directory on this host), \
                 got {path:?}"
            )));
        }
        if self.restore_to_originals && self.move_aliases {
            return Err(invalid(
                "`move-aliases` moves aliases onto renamed copies; with `restore-to-originals` the \
                 indices come back with their own aliases",
            ));
        }
        let rename = if self.restore_to_originals {
            None
        } else {
            let regex = Regex::new(&self.rename_pattern).map_err(|e| {
                invalid(format!(
                    "`rename-pattern` {:?} is not a regular expression: {e}",
                    self.rename_pattern
                ))
            })?;
            Some(Rename {
                rust_replacement: rust_replacement(&self.rename_replacement),
                pattern: self.rename_pattern,
                replacement: self.rename_replacement,
                regex,
            })
        };
        Ok(Settings {
            url,
            repository: self.repository,
            location: self.location,
            indices: self.indices.map(|i| i.patterns()).unwrap_or_default(),
            include_global_state: self.include_global_state,
            authorization,
            poll_interval,
            snapshot_timeout,
            retries: self.retries,
            archive_path: self.archive_path,
            rename,
            delete_existing: self.delete_existing,
            move_aliases: self.move_aliases,
        })
    }
}

fn settings(ctx: &Context) -> Result<Settings> {
    ctx.params::<Params>()?.settings()
}

/// `text` as one URL path segment, percent-encoded.
fn segment(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The Elasticsearch snapshot name of a run: `cairn-<job>-<run id>`, lower
/// case, with characters other than `a-z0-9._-` replaced by `-`.
fn snapshot_name(job: &str, run_id: &str) -> String {
    format!("cairn-{job}-{run_id}")
        .to_lowercase()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '-'
            }
        })
        .collect()
}

/// Whether `name` matches the ES-style `patterns` (`*` wildcards; a later
/// `-pattern` excludes). No patterns match everything.
fn selected(name: &str, patterns: &[String]) -> bool {
    if patterns.is_empty() {
        return true;
    }
    let mut chosen = false;
    for (i, pattern) in patterns.iter().enumerate() {
        match pattern.strip_prefix('-') {
            Some(excluded) if i > 0 => {
                if glob(excluded, name) {
                    chosen = false;
                }
            }
            _ => {
                if pattern == "_all" || glob(pattern, name) {
                    chosen = true;
                }
            }
        }
    }
    chosen
}

/// `*`-only glob matching.
fn glob(pattern: &str, name: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    if parts.len() == 1 {
        return pattern == name;
    }
    let (first, last) = (parts[0], parts[parts.len() - 1]);
    if !name.starts_with(first) || name.len() < first.len() + last.len() || !name.ends_with(last) {
        return false;
    }
    let mut rest = &name[first.len()..name.len() - last.len()];
    for middle in &parts[1..parts.len() - 1] {
        match rest.find(middle) {
            Some(at) => rest = &rest[at + middle.len()..],
            None => return false,
        }
    }
    true
}

/// The cluster, reached with the job's credentials.
struct Es<'a> {
    settings: &'a Settings,
}

impl Es<'_> {
    fn request(&self, method: Method, path: &str) -> Request {
        let request = Request::new(method, format!("{}{path}", self.settings.url));
        match &self.settings.authorization {
            Some(value) => request.header("Authorization", value.as_str()),
            None => request,
        }
    }

    /// Send `request`; a 401 or 403 is a `denied` error naming `what`.
    fn send(&self, request: Request, what: &str) -> Result<Response> {
        let response = request_with_context(request, what, self)?;
        self.send_checked(response, what)
    }

    fn send_checked(&self, response: Response, what: &str) -> Result<Response> {
        match response.status {
            401 => Err(Error::denied(format!(
                "{what}: Elasticsearch at {} refused the credentials (401 Unauthorized): {}; check \
                 `username` and `password-secret` (or `authorization-secret`)",
                self.settings.url,
                es_reason(&response)
            ))),
            403 => Err(Error::denied(format!(
                "{what}: the Elasticsearch user may not do this (403 Forbidden): {}",
                es_reason(&response)
            ))),
            _ => Ok(response),
        }
    }

    /// Send `request` and require a 2xx status.
    fn ok(&self, request: Request, what: &str) -> Result<Response> {
        let response = self.send(request, what)?;
        if response.is_success() {
            Ok(response)
        } else {
            Err(status_error(what, &response))
        }
    }

    /// `GET /`: the cluster's distribution and version number (`8.15.0`,
    /// `opensearch 2.11.0`). A user without the `monitor` privilege gets a
    /// 403 there: the snapshot API does not need the version, so the run
    /// goes on with `unknown`. Wrong credentials (401) fail the run.
    fn version(&self) -> Result<String> {
        let what = "reading the cluster's version";
        let response = request_with_context(self.request(Method::Get, "/"), what, self)?;
        if response.status == 401 {
            return Err(self.send_checked(response, what).unwrap_err());
        }
        if response.status == 403 {
            log::info(format!(
                "GET / on {} is forbidden (no `monitor` cluster privilege); going on without \
                 the cluster's version",
                self.settings.url
            ));
            return Ok("unknown".to_owned());
        }
        if !response.is_success() {
            return Err(status_error(what, &response));
        }
        let body: Value = response.json()?;
        let number = body["version"]["number"].as_str().unwrap_or("unknown");
        Ok(match body["version"]["distribution"].as_str() {
            Some("opensearch") => format!("opensearch {number}"),
            _ => number.to_owned(),
        })
    }

    /// The delay before retry `attempt` (1-based): 1 s doubling, at most
    /// 60 s, with half of it random (jitter).
    fn backoff(&self, attempt: u32) -> Duration {
        let ceiling = Duration::from_secs(1)
            .saturating_mul(1 << attempt.saturating_sub(1).min(6))
            .min(Duration::from_secs(60));
        let half = ceiling / 2;
        let millis = u64::try_from(half.as_millis()).unwrap_or(0).max(1);
        half + Duration::from_millis(time::now_ms().wrapping_mul(2_654_435_761) % millis)
    }

    fn snapshot_path(&self, snapshot: &str) -> String {
        format!(
            "/_snapshot/{}/{}",
            segment(&self.settings.repository),
            segment(snapshot)
        )
    }

    /// Make sure the repository exists: registered as `fs` with `location`
    /// when that is set, else already there.
    fn ensure_repository(&self) -> Result<()> {
        let repo = &self.settings.repository;
        let what = format!("checking snapshot repository `{repo}`");
        let response = self.send(
            self.request(Method::Get, &format!("/_snapshot/{}", segment(repo))),
            &what,
        )?;
        let existing = match response.status {
            404 => None,
            s if (200..300).contains(&s) => {
                let body: Value = response.json()?;
                Some(body[repo.as_str()].clone())
            }
            _ => return Err(status_error(&what, &response)),
        };
        let Some(location) = &self.settings.location else {
            return match existing {
                Some(_) => Ok(()),
                None => Err(Error::not_found(format!(
                    "snapshot repository `{repo}` does not exist on {}: register it (PUT \
                     /_snapshot/{repo}), or set param `location` to let the task register a \
                     shared file-system repository there",
                    self.settings.url
                ))),
            };
        };
        if let Some(existing) = existing {
            let kind = existing["type"].as_str().unwrap_or("");
            let at = existing["settings"]["location"].as_str().unwrap_or("");
            if kind == "fs" && at == location {
                return Ok(());
            }
            return Err(Error::failed(format!(
                "snapshot repository `{repo}` on {} is registered as type `{kind}` at location \
                 {at:?}, but param `location` is {location:?}: use another `repository` name, or \
                 set `location` to match (the task does not re-register a repository)",
                self.settings.url
            )));
        }
        let what = format!("registering snapshot repository `{repo}` at location {location:?}");
        let response = self.send(
            self.request(Method::Put, &format!("/_snapshot/{}", segment(repo)))
                .json(&json!({"type": "fs", "settings": {"location": location}}))?,
            &what,
        )?;
        if !response.is_success() {
            let mut err = status_error(&what, &response);
            if es_reason(&response).contains("path.repo") {
                err = err.context(format!(
                    "`location` {location:?} must lie under the cluster's `path.repo` (set in \
                     elasticsearch.yml); a relative location is resolved against its first entry"
                ));
            }
            return Err(err);
        }
        log::info(format!(
            "registered snapshot repository `{repo}` (fs, location {location:?})"
        ));
        Ok(())
    }

    /// Aliases of the chosen indices: index → alias → alias body.
    fn aliases(&self, indices: &[String]) -> Result<BTreeMap<String, BTreeMap<String, Value>>> {
        let path = if indices.is_empty() {
            "/_alias".to_owned()
        } else {
            format!(
                "/{}/_alias",
                segment(&indices.join(","))
                    .replace("%2C", ",")
                    .replace("%2A", "*")
            )
        };
        let response = self.send(self.request(Method::Get, &path), "reading aliases")?;
        if response.status == 404 {
            return Ok(BTreeMap::new());
        }
        let response = if response.is_success() {
            response
        } else {
            return Err(status_error("reading aliases", &response));
        };
        let body: BTreeMap<String, Value> = response.json()?;
        Ok(body
            .into_iter()
            .map(|(index, v)| {
                let aliases = v["aliases"]
                    .as_object()
                    .map(|m| m.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
                    .unwrap_or_default();
                (index, aliases)
            })
            .collect())
    }

    /// `GET /_snapshot/REPO/NAME`: the snapshot's description.
    fn snapshot_info(&self, snapshot: &str) -> Result<Value> {
        let what = format!("reading snapshot `{snapshot}`");
        let response = self.send(
            self.request(Method::Get, &self.snapshot_path(snapshot)),
            &what,
        )?;
        if response.status == 404 {
            return Err(Error::not_found(format!(
                "Elasticsearch snapshot `{snapshot}` is not in repository `{}` on {}: {}",
                self.settings.repository,
                self.settings.url,
                es_reason(&response)
            )));
        }
        if !response.is_success() {
            return Err(status_error(&what, &response));
        }
        let body: Value = response.json()?;
        body["snapshots"]
            .as_array()
            .and_then(|s| s.first())
            .cloned()
            .ok_or_else(|| {
                Error::failed(format!(
                    "{what}: the answer lists no snapshot: {}",
                    response.body_excerpt()
                ))
            })
    }

    /// Delete `snapshot` (which aborts it while it runs). Whether it existed.
    fn delete_snapshot(&self, snapshot: &str) -> Result<bool> {
        let what = format!("deleting Elasticsearch snapshot `{snapshot}`");
        let response = self.send(
            self.request(Method::Delete, &self.snapshot_path(snapshot)),
            &what,
        )?;
        match response.status {
            s if (200..300).contains(&s) => Ok(true),
            404 => Ok(false),
            _ => Err(status_error(&what, &response)),
        }
    }

    /// Delete `snapshot`, logging rather than failing: for clean-up after a
    /// failed backup.
    fn discard_snapshot(&self, snapshot: &str) {
        match self.delete_snapshot(snapshot) {
            Ok(_) => log::info(format!(
                "deleted the unused Elasticsearch snapshot `{snapshot}`"
            )),
            Err(e) => log::warn(format!(
                "could not delete the unused Elasticsearch snapshot `{snapshot}`: {e}"
            )),
        }
    }
}

fn request_with_context(request: Request, what: &str, es: &Es<'_>) -> Result<Response> {
    request
        .send()
        .with_context(|| format!("{what}: cannot reach Elasticsearch at {}", es.settings.url))
}

/// The error Elasticsearch gave, as `type: reason (caused by …)`, or the
/// start of the body.
fn es_reason(response: &Response) -> String {
    fn describe(error: &Value) -> Option<String> {
        match error {
            Value::String(text) => Some(text.clone()),
            Value::Object(map) => {
                let kind = map.get("type").and_then(Value::as_str).unwrap_or("error");
                let reason = map.get("reason").and_then(Value::as_str).unwrap_or("");
                let mut text = format!("{kind}: {reason}");
                if let Some(cause) = map.get("caused_by").and_then(describe) {
                    text.push_str(&format!(" (caused by {cause})"));
                }
                Some(text)
            }
            _ => None,
        }
    }
    serde_json::from_slice::<Value>(&response.body)
        .ok()
        .and_then(|body| body.get("error").and_then(describe))
        .unwrap_or_else(|| response.body_excerpt())
}

fn status_error(what: &str, response: &Response) -> Error {
    Error::failed(format!(
        "{what}: {} {} returned {}: {}",
        response.method(),
        response.url(),
        response.status,
        es_reason(response)
    ))
}

/// What the Cairn snapshot records about the Elasticsearch snapshot.
#[derive(Debug, Serialize, Deserialize)]
struct Record {
    format: u32,
    snapshot: String,
    repository: String,
    url: String,
    #[serde(default)]
    location: Option<String>,
    #[serde(default)]
    uuid: Option<String>,
    #[serde(default)]
    es_version: Option<String>,
    #[serde(default)]
    indices: Vec<String>,
    #[serde(default)]
    shards: Value,
    /// Aliases of the snapshotted indices at backup: index → alias → body.
    #[serde(default)]
    aliases: BTreeMap<String, BTreeMap<String, Value>>,
    /// The tree artifact holding the repository directory, if archived.
    #[serde(default)]
    archive: Option<String>,
}

impl Record {
    /// The record of the snapshot being restored or forgotten: the JSON
    /// artifact, or failing that the notes. `None` when there is neither.
    fn read() -> Result<Option<Record>> {
        let artifacts = storage::list()?;
        if artifacts
            .iter()
            .any(|a| a.name == RECORD_ARTIFACT && a.kind == ArtifactKind::Stream)
        {
            let mut text = String::new();
            storage::open(RECORD_ARTIFACT)?
                .read_to_string(&mut text)
                .map_err(|e| Error::failed(format!("reading `{RECORD_ARTIFACT}`: {e}")))?;
            let record: Record = serde_json::from_str(&text).map_err(|e| {
                Error::failed(format!("`{RECORD_ARTIFACT}` is not a snapshot record: {e}"))
            })?;
            return Ok(Some(record));
        }
        let notes = storage::notes()?;
        let (Some(snapshot), Some(repository)) =
            (notes.get(NOTE_SNAPSHOT), notes.get(NOTE_REPOSITORY))
        else {
            return Ok(None);
        };
        Ok(Some(Record {
            format: RECORD_FORMAT,
            snapshot: snapshot.clone(),
            repository: repository.clone(),
            url: notes.get(NOTE_URL).cloned().unwrap_or_default(),
            location: None,
            uuid: None,
            es_version: notes.get(NOTE_VERSION).cloned(),
            indices: Vec::new(),
            shards: Value::Null,
            aliases: BTreeMap::new(),
            archive: notes.get(NOTE_ARCHIVE).cloned(),
        }))
    }

    fn required() -> Result<Record> {
        Record::read()?.ok_or_else(|| {
            Error::not_found(
                "the Cairn snapshot records no Elasticsearch snapshot (no \
                 `elasticsearch-snapshot.json`, no `es-snapshot` note): was it written by \
                 builtin:elasticsearch-snapshot?",
            )
        })
    }
}

/// How a finished snapshot ended.
fn shard_failures(info: &Value) -> String {
    let failures = info["failures"].as_array().cloned().unwrap_or_default();
    let mut quoted: Vec<String> = failures
        .iter()
        .take(QUOTED_FAILURES)
        .map(|f| {
            format!(
                "[{}][{}] {}",
                f["index"].as_str().unwrap_or("?"),
                f["shard_id"]
                    .as_u64()
                    .map_or_else(|| "?".to_owned(), |s| s.to_string()),
                f["reason"].as_str().unwrap_or("no reason given")
            )
        })
        .collect();
    if failures.len() > QUOTED_FAILURES {
        quoted.push(format!("and {} more", failures.len() - QUOTED_FAILURES));
    }
    if quoted.is_empty() {
        info["reason"]
            .as_str()
            .unwrap_or("Elasticsearch gave no reason")
            .to_owned()
    } else {
        quoted.join("; ")
    }
}

/// Poll until `snapshot` is no longer running; its final description.
/// Poll until `snapshot` is no longer running; its final description.
/// Transient failures (429, 5xx, a lost connection) are logged and polled
/// through; `snapshot-timeout` bounds the wait (the caller then deletes,
/// which aborts, the snapshot).
fn wait_for_snapshot(es: &Es<'_>, snapshot: &str) -> Result<Value> {
    let started = time::now_ms();
    let timeout = es.settings.snapshot_timeout;
    let mut last: String;
    loop {
        match es.snapshot_info(snapshot) {
            Ok(info) => {
                let state = info["state"].as_str().unwrap_or("").to_owned();
                if !matches!(state.as_str(), "IN_PROGRESS" | "STARTED" | "INIT" | "") {
                    return Ok(info);
                }
                last = state;
            }
            Err(e) if e.kind() == cairn_guest::ErrorKind::Failed && transient(&e) => {
                log::warn(format!(
                    "polling Elasticsearch snapshot `{snapshot}`: {e}; polling on"
                ));
                last = format!("unknown ({e})");
            }
            Err(e) => return Err(e),
        }
        let elapsed = Duration::from_millis(time::now_ms().saturating_sub(started));
        if elapsed >= timeout {
            return Err(Error::limit(format!(
                "Elasticsearch snapshot `{snapshot}` was still {last} after the \
                 snapshot-timeout of {}s; it is deleted (which aborts it)",
                timeout.as_secs_f64()
            )));
        }
        time::sleep(
            es.settings
                .poll_interval
                .min(timeout.saturating_sub(elapsed))
                .max(Duration::from_millis(10)),
        );
    }
}

/// Whether an error is one to retry: a lost connection, 429 or a 5xx.
fn transient(e: &Error) -> bool {
    let text = e.to_string();
    text.contains("cannot reach Elasticsearch")
        || text.contains(" returned 429")
        || text.contains(" returned 5")
}

/// `PUT /_snapshot/REPO/NAME`, tried again with backoff when the cluster
/// refuses it for now: `concurrent_snapshot_execution_exception` (another
/// snapshot or a deletion is running), 429 or a 5xx.
fn create_snapshot(es: &Es<'_>, name: &str, body: &Value) -> Result<()> {
    let what = format!("creating Elasticsearch snapshot `{name}`");
    let mut attempt = 0;
    loop {
        let request = es
            .request(
                Method::Put,
                &format!("{}?wait_for_completion=false", es.snapshot_path(name)),
            )
            .json(body)?;
        let failure = match es.send(request, &what) {
            Ok(response) if response.is_success() => return Ok(()),
            Ok(response) => {
                let reason = es_reason(&response);
                let again = reason.contains("concurrent_snapshot_execution_exception")
                    || response.status == 429
                    || response.status >= 500;
                if !again {
                    return Err(status_error(&what, &response));
                }
                status_error(&what, &response)
            }
            Err(e) if e.kind() == cairn_guest::ErrorKind::Failed => e,
            Err(e) => return Err(e),
        };
        if attempt >= es.settings.retries {
            return Err(failure.context(format!(
                "still refused after {} retries",
                es.settings.retries
            )));
        }
        attempt += 1;
        let delay = es.backoff(attempt);
        log::warn(format!(
            "{failure}; retry {attempt} of {} in {} ms",
            es.settings.retries,
            delay.as_millis()
        ));
        time::sleep(delay);
    }
}

fn shards_of(info: &Value) -> (u64, u64, u64) {
    let shards = &info["shards"];
    (
        shards["total"].as_u64().unwrap_or(0),
        shards["successful"].as_u64().unwrap_or(0),
        shards["failed"].as_u64().unwrap_or(0),
    )
}

fn backup(ctx: &Context) -> Result<Value> {
    let settings = settings(ctx)?;
    let es = Es {
        settings: &settings,
    };
    let version = es.version()?;
    log::info(format!(
        "Elasticsearch {version} at {}; snapshot repository `{}`",
        settings.url, settings.repository
    ));
    es.ensure_repository()?;
    let aliases = match es.aliases(&settings.indices) {
        Ok(a) => a,
        Err(e) => {
            log::warn(format!(
                "could not record the aliases (move-aliases will only see current ones): {e}"
            ));
            BTreeMap::new()
        }
    };
    let name = snapshot_name(ctx.job(), ctx.run_id());
    let mut body = json!({
        "include_global_state": settings.include_global_state,
        "ignore_unavailable": false,
    });
    if !settings.indices.is_empty() {
        body["indices"] = json!(settings.indices.join(","));
    }
    create_snapshot(&es, &name, &body)?;
    log::info(format!("started Elasticsearch snapshot `{name}`"));
    // From here on a failure leaves a snapshot nothing will refer to.
    match finish_backup(&es, &name, &version, aliases) {
        Ok(result) => Ok(result),
        Err(e) => {
            es.discard_snapshot(&name);
            Err(e)
        }
    }
}

fn finish_backup(
    es: &Es<'_>,
    name: &str,
    version: &str,
    aliases: BTreeMap<String, BTreeMap<String, Value>>,
) -> Result<Value> {
    let settings = es.settings;
    let info = wait_for_snapshot(es, name)?;
    let state = info["state"].as_str().unwrap_or("").to_owned();
    let (total, successful, failed) = shards_of(&info);
    if state != "SUCCESS" {
        return Err(Error::failed(format!(
            "Elasticsearch snapshot `{name}` ended {state}: {failed} of {total} shards failed: {}",
            shard_failures(&info)
        )));
    }
    progress::report(successful, total, Unit::Items);
    let indices: Vec<String> = info["indices"]
        .as_array()
        .map(|l| {
            l.iter()
                .filter_map(|i| i.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    log::info(format!(
        "Elasticsearch snapshot `{name}` succeeded: {} indices, {successful}/{total} shards",
        indices.len()
    ));
    let archive = match &settings.archive_path {
        Some(path) => {
            let artifact = storage::add_tree(ARCHIVE_ARTIFACT, path).with_context(|| {
                format!("archiving the snapshot repository directory {path} (`archive-path`)")
            })?;
            log::info(format!(
                "archived the snapshot repository {path} ({})",
                cairn_guest::format_size(artifact.size)
            ));
            storage::set_note(NOTE_ARCHIVE, ARCHIVE_ARTIFACT)?;
            Some(ARCHIVE_ARTIFACT.to_owned())
        }
        None => None,
    };
    let aliases: BTreeMap<String, BTreeMap<String, Value>> = aliases
        .into_iter()
        .filter(|(index, a)| indices.contains(index) && !a.is_empty())
        .collect();
    let record = Record {
        format: RECORD_FORMAT,
        snapshot: name.to_owned(),
        repository: settings.repository.clone(),
        url: settings.url.clone(),
        location: settings.location.clone(),
        uuid: info["uuid"].as_str().map(str::to_owned),
        es_version: Some(version.to_owned()),
        indices: indices.clone(),
        shards: info["shards"].clone(),
        aliases,
        archive: archive.clone(),
    };
    let mut writer = storage::create(RECORD_ARTIFACT)?;
    writer
        .write_all(&serde_json::to_vec_pretty(&record).map_err(Error::failed)?)
        .map_err(|e| Error::failed(format!("writing `{RECORD_ARTIFACT}`: {e}")))?;
    writer.finish()?;
    storage::set_note(NOTE_SNAPSHOT, name)?;
    storage::set_note(NOTE_REPOSITORY, &settings.repository)?;
    storage::set_note(NOTE_URL, &settings.url)?;
    storage::set_note(NOTE_VERSION, version)?;
    Ok(json!({
        "snapshot": name,
        "repository": settings.repository,
        "state": state,
        "indices": indices,
        "shards": {"total": total, "successful": successful, "failed": failed},
        "archived": archive.is_some(),
    }))
}

/// Whether directory `path` is missing or empty.
fn missing_or_empty(path: &str) -> Result<bool> {
    match std::fs::read_dir(path) {
        Ok(mut entries) => Ok(entries.next().is_none()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(true),
        Err(e) => Err(Error::failed(format!(
            "cannot list `archive-path` {path}: {e} (is it granted in `allow.paths`?)"
        ))),
    }
}

/// Put the archived repository directory back, if there is one and the
/// directory is missing or empty. Whether it was restored.
fn restore_archive(settings: &Settings, record: &Record) -> Result<bool> {
    let (Some(path), Some(artifact)) = (&settings.archive_path, &record.archive) else {
        if record.archive.is_some() {
            log::info(
                "the Cairn snapshot holds the repository directory; set `archive-path` to \
                 restore it if the cluster lost its repository",
            );
        } else if settings.archive_path.is_some() {
            log::warn(
                "`archive-path` is set, but this Cairn snapshot holds no archive of the \
                 repository directory",
            );
        }
        return Ok(false);
    };
    if !missing_or_empty(path)? {
        log::info(format!(
            "{path} is not empty: using the repository there, not the archive (empty it to \
             restore the archived copy)"
        ));
        return Ok(false);
    }
    storage::restore_tree(artifact, path, false)
        .with_context(|| format!("restoring the archived snapshot repository into {path}"))?;
    log::info(format!(
        "restored the archived snapshot repository into {path}"
    ));
    Ok(true)
}

fn restore(ctx: &Context) -> Result<Value> {
    let mut settings = settings(ctx)?;
    let record = Record::required()?;
    if record.repository != settings.repository {
        log::info(format!(
            "the snapshot is in repository `{}` (param `repository` says `{}`)",
            record.repository, settings.repository
        ));
        settings.repository = record.repository.clone();
    }
    let archive_restored = restore_archive(&settings, &record)?;
    let es = Es {
        settings: &settings,
    };
    let version = es.version()?;
    log::info(format!(
        "restoring Elasticsearch snapshot `{}` into Elasticsearch {version} at {}",
        record.snapshot, settings.url
    ));
    es.ensure_repository()?;
    let info = es.snapshot_info(&record.snapshot).map_err(|e| {
        if e.kind() == cairn_guest::ErrorKind::NotFound {
            e.context("was the repository directory emptied? set `archive-path` to restore it from the Cairn snapshot")
        } else {
            e
        }
    })?;
    let in_snapshot: Vec<String> = info["indices"]
        .as_array()
        .map(|l| {
            l.iter()
                .filter_map(|i| i.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    let chosen: Vec<String> = in_snapshot
        .iter()
        .filter(|i| selected(i, &settings.indices))
        .cloned()
        .collect();
    if chosen.is_empty() {
        return Err(Error::not_found(format!(
            "Elasticsearch snapshot `{}` holds no index matching `indices` {:?} (it holds {:?})",
            record.snapshot, settings.indices, in_snapshot
        )));
    }
    let mapping: Vec<(String, String)> = chosen
        .iter()
        .map(|i| {
            let to = settings
                .rename
                .as_ref()
                .map_or_else(|| i.clone(), |r| r.apply(i));
            (i.clone(), to)
        })
        .collect();
    if let Some(rename) = &settings.rename {
        if let Some((from, _)) = mapping.iter().find(|(from, to)| from == to) {
            return Err(invalid(format!(
                "`rename-pattern` {:?} with `rename-replacement` {:?} leaves index `{from}` \
                 under its own name; restore onto the originals only with \
                 `restore-to-originals = true`",
                rename.pattern, rename.replacement
            )));
        }
        let targets: BTreeSet<&String> = mapping.iter().map(|(_, to)| to).collect();
        if targets.len() != mapping.len() {
            return Err(invalid(format!(
                "`rename-replacement` {:?} gives several indices the same name",
                rename.replacement
            )));
        }
    }

    let mut deleted = Vec::new();
    if settings.delete_existing {
        for (_, to) in &mapping {
            let what = format!("deleting existing index `{to}` (`delete-existing`)");
            let response = es.send(
                es.request(Method::Delete, &format!("/{}", segment(to))),
                &what,
            )?;
            match response.status {
                s if (200..300).contains(&s) => {
                    log::info(format!("deleted existing index `{to}`"));
                    deleted.push(to.clone());
                }
                404 => {}
                _ => return Err(status_error(&what, &response)),
            }
        }
    }

    let mut body = json!({
        "indices": chosen.join(","),
        "include_global_state": settings.include_global_state,
        "include_aliases": settings.rename.is_none(),
        "ignore_unavailable": false,
    });
    if let Some(rename) = &settings.rename {
        body["rename_pattern"] = json!(rename.pattern);
        body["rename_replacement"] = json!(rename.replacement);
    }
    let what = format!("restoring Elasticsearch snapshot `{}`", record.snapshot);
    let response = es.send(
        es.request(
            Method::Post,
            &format!(
                "{}/_restore?wait_for_completion=true",
                es.snapshot_path(&record.snapshot)
            ),
        )
        .json(&body)?
        .timeout(settings.snapshot_timeout),
        &what,
    )?;
    if !response.is_success() {
        let reason = es_reason(&response);
        let mut err = status_error(&what, &response);
        if reason.contains("already exists") || reason.contains("same name") {
            err = err.context(if settings.rename.is_some() {
                "a target index exists and is open: choose another `rename-replacement`, or set \
                 `delete-existing = true` to delete it first"
            } else {
                "an index of the snapshot exists and is open: set `delete-existing = true` to \
                 delete it first, or restore into renamed indices (leave out \
                 `restore-to-originals`)"
            });
        }
        return Err(err);
    }
    let answer: Value = response.json()?;
    let restored = &answer["snapshot"];
    let (total, successful, failed) = shards_of(restored);
    if failed > 0 {
        return Err(Error::failed(format!(
            "restoring Elasticsearch snapshot `{}`: {failed} of {total} shards failed",
            record.snapshot
        )));
    }
    progress::report(successful, total, Unit::Items);
    log::info(format!(
        "restored {} indices from `{}` ({successful}/{total} shards)",
        mapping.len(),
        record.snapshot
    ));

    let aliases_moved = if settings.move_aliases {
        move_aliases(&es, &record, &mapping)?
    } else {
        Vec::new()
    };
    Ok(json!({
        "snapshot": record.snapshot,
        "repository": record.repository,
        "indices": mapping.iter().map(|(from, to)| json!({"from": from, "to": to})).collect::<Vec<_>>(),
        "shards": {"total": total, "successful": successful, "failed": failed},
        "deleted": deleted,
        "aliases_moved": aliases_moved,
        "archive_restored": archive_restored,
    }))
}

/// Move the aliases of each original index onto its restored copy, in one
/// `POST /_aliases`: those recorded at backup and those it has now.
fn move_aliases(es: &Es<'_>, record: &Record, mapping: &[(String, String)]) -> Result<Vec<Value>> {
    let current = es.aliases(&[])?;
    let mut actions = Vec::new();
    let mut moved = Vec::new();
    for (from, to) in mapping {
        let now = current.get(from).cloned().unwrap_or_default();
        let mut wanted = record.aliases.get(from).cloned().unwrap_or_default();
        for (alias, body) in &now {
            wanted.insert(alias.clone(), body.clone());
            actions.push(json!({"remove": {"index": from, "alias": alias}}));
        }
        for (alias, body) in wanted {
            let mut add = json!({"index": to, "alias": alias});
            if let Some(props) = body.as_object() {
                for key in [
                    "filter",
                    "index_routing",
                    "search_routing",
                    "is_write_index",
                    "is_hidden",
                ] {
                    if let Some(v) = props.get(key) {
                        add[key] = v.clone();
                    }
                }
            }
            actions.push(json!({"add": add}));
            moved.push(json!({"alias": alias, "from": from, "to": to}));
        }
    }
    if actions.is_empty() {
        log::info("no aliases to move");
        return Ok(moved);
    }
    es.ok(
        es.request(Method::Post, "/_aliases")
            .json(&json!({"actions": actions}))?,
        "moving aliases onto the restored indices",
    )?;
    log::info(format!("moved {} aliases in one request", moved.len()));
    Ok(moved)
}

fn forget(ctx: &Context) -> Result<Value> {
    let mut settings = settings(ctx)?;
    let Some(record) = Record::read()? else {
        log::warn("this Cairn snapshot records no Elasticsearch snapshot; nothing to delete");
        return Ok(Value::Null);
    };
    settings.repository = record.repository.clone();
    let es = Es {
        settings: &settings,
    };
    if settings.location.is_some() {
        // A repository whose registration was removed can be registered
        // again from `location`; its snapshot is then still deleted.
        es.ensure_repository()?;
    }
    let existed = es.delete_snapshot(&record.snapshot)?;
    if existed {
        log::info(format!(
            "deleted Elasticsearch snapshot `{}` from repository `{}`",
            record.snapshot, record.repository
        ));
    } else {
        log::info(format!(
            "Elasticsearch snapshot `{}` (repository `{}`) was already gone",
            record.snapshot, record.repository
        ));
    }
    Ok(json!({
        "snapshot": record.snapshot,
        "repository": record.repository,
        "deleted": existed,
    }))
}

struct ElasticsearchSnapshot;

impl Task for ElasticsearchSnapshot {
    fn describe() -> Description {
        Description::new("elasticsearch-snapshot", env!("CARGO_PKG_VERSION"))
            .summary(
                "Elasticsearch (>= 1.0) snapshots through the snapshot API; restores into renamed \
                 indices and moves aliases; deletes snapshots Cairn forgets",
            )
            .param(Param::required(
                "url",
                "Cluster URL, e.g. http://127.0.0.1:9200",
            ))
            .param(Param::optional(
                "repository",
                "Elasticsearch snapshot repository",
                json!("cairn"),
            ))
            .param(Param::optional(
                "location",
                "Register the repository as type fs at this location (under the cluster's \
                 path.repo) if missing; without it the repository must exist",
                None,
            ))
            .param(Param::optional(
                "indices",
                "Index names or patterns (list or comma-separated); default all",
                None,
            ))
            .param(Param::optional(
                "include-global-state",
                "Also snapshot and restore the cluster state",
                json!(false),
            ))
            .param(Param::optional(
                "username",
                "User for basic authentication",
                None,
            ))
            .param(Param::optional(
                "password-secret",
                "Secret holding the password (injected by the host as basic authentication)",
                None,
            ))
            .param(Param::optional(
                "authorization-secret",
                "Secret holding the whole Authorization header value (ApiKey …, Bearer …)",
                None,
            ))
            .param(Param::optional(
                "api-key-secret",
                "Secret holding an API key (encoded form; sent as ApiKey …)",
                None,
            ))
            .param(Param::optional(
                "bearer-secret",
                "Secret holding a bearer token (sent as Bearer …)",
                None,
            ))
            .param(Param::optional(
                "retries",
                "Retries of a snapshot creation refused for now (concurrent snapshot, 429, 5xx)",
                json!(8),
            ))
            .param(Param::optional(
                "poll-interval",
                "Seconds between checks of a running snapshot",
                json!(1),
            ))
            .param(Param::optional(
                "snapshot-timeout",
                "Seconds a snapshot (or restore) may take",
                json!(3600),
            ))
            .param(Param::optional(
                "archive-path",
                "The repository directory on this host: archived into the Cairn snapshot, put \
                 back at restore when missing or empty",
                None,
            ))
            .param(Param::optional(
                "rename-pattern",
                "Restore: regular expression over index names",
                json!("(.+)"),
            ))
            .param(Param::optional(
                "rename-replacement",
                "Restore: new index name ($1 for groups)",
                json!("restored-$1"),
            ))
            .param(Param::optional(
                "restore-to-originals",
                "Restore: under the original names (refused over open indices unless \
                 delete-existing)",
                json!(false),
            ))
            .param(Param::optional(
                "delete-existing",
                "Restore: delete target indices that exist first",
                json!(false),
            ))
            .param(Param::optional(
                "move-aliases",
                "Restore: move the originals' aliases onto the restored indices atomically",
                json!(false),
            ))
            .needs_http("{url}")
            .needs_secret("{password-secret}")
            .needs_secret("{authorization-secret}")
            .needs_secret("{api-key-secret}")
            .needs_secret("{bearer-secret}")
            .needs_path("{archive-path}")
    }

    fn backup(ctx: Context) -> Result<Value> {
        backup(&ctx)
    }

    fn restore(ctx: Context) -> Result<Value> {
        restore(&ctx)
    }

    fn forget(ctx: Context) -> Result<Value> {
        forget(&ctx)
    }
}

cairn_guest::export_task!(ElasticsearchSnapshot);

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(params: Value) -> Result<Settings> {
        cairn_guest::from_params::<Params>(params)?.settings()
    }

    #[test]
    fn snapshot_names_are_lower_case_and_safe() {
        assert_eq!(
            snapshot_name("Search Index", "01J9ZK/AB"),
            "cairn-search-index-01j9zk-ab"
        );
    }

    #[test]
    fn credentials_become_a_secret_placeholder() {
        let s = parse(
            json!({"url": "http://es:9200/", "username": "elastic", "password-secret": "ES_PW"}),
        )
        .unwrap();
        assert_eq!(s.url, "http://es:9200");
        assert_eq!(
            s.authorization.as_deref(),
            Some("Basic {{secret-basic:elastic:ES_PW}}")
        );
        let s = parse(json!({"url": "http://es:9200", "authorization-secret": "ES_KEY"})).unwrap();
        assert_eq!(s.authorization.as_deref(), Some("{{secret:ES_KEY}}"));
        for bad in [
            json!({"url": "http://es", "username": "elastic"}),
            json!({"url": "http://es", "password-secret": "X"}),
            json!({"url": "http://es", "username": "a:b", "password-secret": "X"}),
            json!({"url": "http://es", "username": "a", "password-secret": "X-Y"}),
            json!({"url": "http://es", "username": "a", "password-secret": "X", "authorization-secret": "Y"}),
            json!({"url": "es:9200"}),
            json!({"url": "http://es", "repository": "_x"}),
            json!({"url": "http://es", "poll-interval": 0}),
            json!({"url": "http://es", "archive-path": "relative"}),
            json!({"url": "http://es", "rename-pattern": "("}),
            json!({"url": "http://es", "restore-to-originals": true, "move-aliases": true}),
            json!({"url": "http://es", "index": "x"}),
        ] {
            let err = parse(bad.clone())
                .err()
                .unwrap_or_else(|| panic!("{bad} was accepted"));
            assert_eq!(err.kind(), cairn_guest::ErrorKind::Invalid, "{bad}: {err}");
        }
    }

    #[test]
    fn renames_follow_java_replacement_syntax() {
        let s = parse(json!({"url": "http://es"})).unwrap();
        assert_eq!(
            s.rename.as_ref().unwrap().apply("logs-2024"),
            "restored-logs-2024"
        );
        let s = parse(json!({"url": "http://es", "rename-pattern": "logs-(\\d+)", "rename-replacement": "old-$1a\\$"}))
            .unwrap();
        assert_eq!(s.rename.as_ref().unwrap().apply("logs-2024"), "old-2024a$");
        assert!(
            parse(json!({"url": "http://es", "restore-to-originals": true}))
                .unwrap()
                .rename
                .is_none()
        );
    }

    #[test]
    fn index_patterns_select_like_elasticsearch() {
        let p = |v: Value| Indices::List(serde_json::from_value(v).unwrap()).patterns();
        assert!(selected("a", &[]));
        assert!(selected("logs-1", &p(json!(["logs-*"]))));
        assert!(!selected("metrics", &p(json!(["logs-*"]))));
        assert!(!selected("logs-old", &p(json!(["logs-*", "-logs-old"]))));
        assert!(selected("b", &Indices::Text("a, b".into()).patterns()));
        assert!(glob("a*b*c", "axxbyyc"));
        assert!(!glob("a*b*c", "axxc"));
        assert!(!glob("ab*ba", "aba"));
    }

    #[test]
    fn path_segments_are_percent_encoded() {
        assert_eq!(segment("my repo/1"), "my%20repo%2F1");
        assert_eq!(segment("cairn-a_b.c"), "cairn-a_b.c");
    }
}
