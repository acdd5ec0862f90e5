//! `builtin:elasticsearch-dump`: a Task that dumps Elasticsearch indices
//! over the REST API — settings, mappings, aliases and every document — and
//! restores them into NEW indices, then moves the aliases to them in one
//! atomic call. It does what es_dump_restore, elasticdump and Alien4Cloud's
//! poller do, for clusters where snapshot repositories are not an option.
//! Elasticsearch 7.x and 8.x (and OpenSearch) are supported.
//!
//! # Params
//!
//! - `url` (required): the cluster, e.g. `http://127.0.0.1:9200`.
//! - `indices` (default `["*"]`): index names and `*` patterns, as a list or
//!   one comma-separated string; an entry starting with `-` removes what it
//!   matches from the entries before it (`["logs-*", "-logs-debug-*"]`).
//!   Indices whose name starts with `.` (`.kibana`, `.security`, …) are
//!   picked only by a name or pattern that starts with `.`. Closed indices
//!   matched by a pattern are skipped with a warning; a closed index named
//!   outright is an error. At restore, the same param selects which dumped
//!   indices to restore.
//! - `batch-size` (default 5000, at most 10000, Elasticsearch's default
//!   `index.max_result_window`): documents per scroll page and per `_bulk`
//!   request.
//! - `bulk-concurrency` (default 2, 1 to 8): `_bulk` requests in flight at
//!   once while restoring. With 2, the next batch is read and built while
//!   the cluster indexes the last one; more helps a cluster with many
//!   nodes, and 1 sends one request at a time.
//! - `scroll` (default `5m`): the scroll lease, an Elasticsearch time value
//!   (`90s`, `5m`, `1h`). It must cover the time between two pages.
//! - Credentials, none by default, one of: `username` with
//!   `password-secret` (the name of a secret bound in `allow.secrets`) for
//!   HTTP Basic auth; `api-key-secret`, a secret holding an API key in the
//!   `encoded` form Elasticsearch returns (`Authorization: ApiKey …`);
//!   `bearer-secret`, a secret holding a bearer token (`Authorization:
//!   Bearer …`); or `authorization-secret`, a secret holding the whole
//!   `Authorization` value. The host fills the header in; the module never
//!   sees the secret. TLS (a CA file or fingerprint, a client certificate)
//!   is the host's: `[jobs.NAME.tls."https://host:port"]` in the config.
//! - `version` (optional): the cluster's version (`7`, `8`, `7.17.3`,
//!   `opensearch-2`, …) for a user that may not call `GET /` (no `monitor`
//!   privilege). Without it such a user's run fails, asking for it.
//! - `slices` (default 2, 1 to 6): sliced scrolls reading an index in
//!   parallel (only for indices of more than `batch-size` documents).
//! - `closed-indices` (default `fail`): what to do with closed indices that
//!   `indices` picks: `fail` (naming them) or `skip` (with a warning).
//! - `hidden-indices` (default `skip`): hidden indices matched by a wildcard
//!   are skipped with a warning naming them, or dumped with `include`. A
//!   hidden index named outright is always dumped.
//! - `templates` (default `false`): also dump the index templates (and their
//!   component templates) that match a dumped index or data stream, and
//!   restore those the target cluster lacks.
//! - `ilm-policies` (default `false`): also dump the ILM policies dumped
//!   indices and templates name (`index.lifecycle.name`), restore those the
//!   target lacks, and keep `index.lifecycle.name` at restore.
//! - `keep-settings`, `drop-settings` (default `[]`): setting patterns
//!   (`index.routing.allocation.*`) a restore keeps although they belong to
//!   the source cluster, or drops as well (see *Portable settings*).
//! - `retries` (default 8): how often a request that gets 429 or a 5xx, or
//!   fails in transit, is tried again, with exponential backoff from 250 ms
//!   (at most 30 s) and jitter. For `_bulk` this also covers single
//!   documents that got 429/5xx: only those are resent.
//! - `timeout` (default 120): seconds one request may take.
//! - Restore only:
//!   - `restore-settings` (default `{"index.number_of_replicas": 0,
//!     "index.refresh_interval": "-1"}`): settings set on the new index for
//!     the load (keys with or without `index.`, flat or nested). Afterwards
//!     the dumped values of the dynamic ones are put back (a setting the
//!     dump did not have is reset to the default); static ones
//!     (`number_of_shards`, `analysis.*`, `codec`, …) stay as given. `{}`
//!     loads with the dumped settings.
//!   - `target` (default `{}`): renames aliases, e.g. `{ products =
//!     "products-check" }` restores next to the live alias instead of
//!     switching it.
//!   - `keep-indices` (default: keep all): after the switch, keep the new
//!     index and the `N - 1` most recently created older indices of the
//!     naming scheme behind the same alias; delete the rest.
//!   - `replace-index` (default `false`): when a concrete index has the
//!     alias's name (typically the original index when it had no alias),
//!     delete it in the same atomic call that adds the alias. Without it,
//!     the restore refuses before writing anything.
//!
//! # Portable settings
//!
//! A dump keeps every index setting but those Elasticsearch generates
//! (`index.uuid`, `index.creation_date`, `index.version.*`,
//! `index.provided_name`, `index.history.uuid`, `index.resize.*`, …) and
//! `archived.*` leftovers, which no cluster accepts back; the manifest lists
//! what it left out. A restore then leaves out, and logs, the settings that
//! tie an index to its source cluster: `index.routing.allocation.*` (node
//! attributes and data tiers the target may not have: the index would stay
//! red), `index.lifecycle.*` (ILM policies and rollover aliases; OpenSearch
//! has no ILM), `index.plugins.*`/`index.opendistro.*` (OpenSearch ISM),
//! `index.blocks.*`, `index.frozen`, `index.search.throttled`,
//! `index.store.snapshot.*`; `keep-settings` keeps some, `drop-settings`
//! drops more. Analysis, similarity, sort, codec, shard counts, mappings and
//! aliases are kept.
//!
//! # Backup
//!
//! `GET /` (version, and the credentials check), then per pattern `GET
//! /_resolve/index/{pattern}?expand_wildcards=all` (`_cat/indices` on
//! clusters before 7.9): indices with their open/closed/hidden state, and
//! data streams. A pattern that matches nothing fails the run with "index
//! pattern `x` matches no index on URL" before anything is written. A data
//! stream is dumped as one (its documents from every backing index, its
//! template named) and restored as a data stream under its own name. Per index: `GET /{index}` for settings, mappings and aliases
//! (settings Elasticsearch sets itself or that tie the index to its source
//! are dropped: `index.uuid`, `index.creation_date`, `index.version.*`,
//! `index.provided_name`, `index.routing.allocation.initial_recovery.*`,
//! `index.resize.*`, `index.verified_before_close`, `index.blocks.*`, …),
//! `GET /{index}/_count`, then the documents by scroll (`sort: ["_doc"]`,
//! `batch-size` per page), each page written to stream artifact
//! `<index>.ndjson` as it arrives, one line per document:
//! `{"_id": …, "_routing": … (when set), "_source": {…}}`, `_source` copied
//! byte for byte. One page at most is in memory. The scroll is cleared
//! (`DELETE /_search/scroll`) after the last page and on every failure. A
//! scroll that expires midway fails the run, naming the index and how many
//! documents were read; the host then commits nothing. Last, artifact
//! `manifest.json` holds each index's settings, mappings, aliases, document
//! count and artifact name. Notes: `format` (`elasticsearch-dump/1`),
//! `dumped-at`, `documents` (`{"index": count, …}`) and
//! `elasticsearch-version`.
//!
//! # Restore
//!
//! Each dumped index goes behind an alias: its first alias by name, or,
//! when it had none, its own name (either renamed by `target`). The new
//! index is `<alias>-<stamp>-<id>`: `stamp` is when the backup started
//! (`YYYYMMDDhhmmss`, UTC) and `id` the first 8 characters of the snapshot
//! id, so a re-run of the same restore writes the same index. Documents keep
//! their `_id`, so a re-run after a failure overwrites what the failed run
//! loaded: nothing is duplicated.
//!
//! Before writing anything: a concrete index with the alias's name fails
//! the run (see `replace-index`), as do two indices going behind one alias.
//! Then per index: `PUT /{new}` with the dumped settings plus
//! `restore-settings` and the mappings (an existing `{new}` from an earlier
//! run is reused), `_bulk` in batches of `batch-size` (`index` actions with
//! `_id` and `routing`), retried as said above; a document rejected for
//! another reason (say `mapper_parsing_exception`) fails the run quoting the
//! first few reasons. Then `_refresh`, `_count` must equal the dumped count,
//! and the overridden settings are put back. When every index is loaded, ONE
//! `POST /_aliases` moves all aliases: each alias is removed from the
//! indices that hold the main alias (older generations) — the main alias
//! from any index holding it — and added to the new index with its dumped
//! properties (`filter`, routing, `is_write_index`). Old indices stay
//! intact unless `keep-indices` deletes them afterwards.
//!
//! # Example
//!
//! ```toml
//! [secrets.ES_PASSWORD]
//! env = "ES_PASSWORD"
//!
//! [jobs.search]
//! task = "builtin:elasticsearch-dump"
//! params = { url = "http://127.0.0.1:9200", indices = ["products*", "orders"], username = "backup", password-secret = "ES_PASSWORD", keep-indices = 2 }
//! schedule = "0 2 * * *"
//!
//! [jobs.search.allow]
//! http = ["http://127.0.0.1:9200"]
//! secrets = ["ES_PASSWORD"]
//! ```
//!
//! Backup result: `{"url", "dumped-at", "indices": {"products": 1200, …},
//! "documents": N}`. Restore result: `{"indices": [{"source", "index",
//! "alias", "documents", "created"}], "documents": N, "deleted": […]}`.

use std::collections::BTreeMap;
use std::time::Duration;

use cairn_guest::{
    Context, Description, Error, Param, Result, Task, Value, from_params, json, log,
};
use serde::Deserialize;
use serde_json::Map;

mod client;
mod cluster;
mod dump;
mod load;
mod manifest;
mod names;

use client::Es;

/// Largest `batch-size`: Elasticsearch's default `index.max_result_window`,
/// above which a scroll page is refused.
const MAX_BATCH: u32 = 10_000;

fn default_indices() -> Vec<String> {
    vec!["*".to_owned()]
}

fn default_batch_size() -> u32 {
    5000
}

/// Most `bulk-concurrency`: the host lets a module have 8 requests pending.
const MAX_BULK_CONCURRENCY: u32 = 8;

fn default_bulk_concurrency() -> u32 {
    2
}

fn default_scroll() -> String {
    "5m".to_owned()
}

fn default_retries() -> u32 {
    8
}

fn default_timeout() -> u64 {
    120
}

fn default_restore_settings() -> Map<String, Value> {
    let Value::Object(map) = json!({
        "index.number_of_replicas": 0,
        "index.refresh_interval": "-1",
    }) else {
        unreachable!()
    };
    map
}

fn default_slices() -> u32 {
    2
}

/// Most `slices`: each is a request in flight (the host allows 8).
const MAX_SLICES: u32 = 6;

/// What to do with closed indices that `indices` picks.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
enum ClosedIndices {
    /// Fail the run, naming them.
    #[default]
    Fail,
    /// Leave them out, with a warning.
    Skip,
}

/// What to do with hidden indices a wildcard matches.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
enum HiddenIndices {
    /// Leave them out (Elasticsearch's own default for wildcards), with a
    /// warning naming them.
    #[default]
    Skip,
    /// Dump them too.
    Include,
}

/// A list of strings, or one string of comma-separated entries.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

fn patterns<'de, D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Vec<String>, D::Error> {
    let entries = match OneOrMany::deserialize(d)? {
        OneOrMany::One(s) => vec![s],
        OneOrMany::Many(v) => v,
    };
    Ok(entries
        .iter()
        .flat_map(|e| e.split(','))
        .map(|e| e.trim().to_owned())
        .collect())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct Params {
    url: String,
    #[serde(default = "default_indices", deserialize_with = "patterns")]
    indices: Vec<String>,
    #[serde(default = "default_batch_size")]
    batch_size: u32,
    #[serde(default = "default_bulk_concurrency")]
    bulk_concurrency: u32,
    #[serde(default = "default_scroll")]
    scroll: String,
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
    #[serde(default)]
    version: Option<String>,
    #[serde(default = "default_slices")]
    slices: u32,
    #[serde(default)]
    closed_indices: ClosedIndices,
    #[serde(default)]
    hidden_indices: HiddenIndices,
    #[serde(default)]
    templates: bool,
    #[serde(default)]
    ilm_policies: bool,
    #[serde(default, deserialize_with = "patterns")]
    keep_settings: Vec<String>,
    #[serde(default, deserialize_with = "patterns")]
    drop_settings: Vec<String>,
    #[serde(default = "default_retries")]
    retries: u32,
    #[serde(default = "default_timeout")]
    timeout: u64,
    #[serde(default = "default_restore_settings")]
    restore_settings: Map<String, Value>,
    #[serde(default)]
    target: BTreeMap<String, String>,
    #[serde(default)]
    keep_indices: Option<u32>,
    #[serde(default)]
    replace_index: bool,
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
        Err(Error::invalid(format!(
            "invalid params: `{param}` must name a secret granted in `allow.secrets` \
             (letters, digits and `_`), got {name:?}"
        )))
    }
}

fn invalid(message: impl std::fmt::Display) -> Error {
    Error::invalid(format!("invalid params: {message}"))
}

impl Params {
    /// Check every param; call before sending anything.
    fn check(&self) -> Result<()> {
        let rest = self
            .url
            .strip_prefix("http://")
            .or_else(|| self.url.strip_prefix("https://"))
            .ok_or_else(|| {
                invalid(format!(
                    "`url` must start with http:// or https://, got {:?}",
                    self.url
                ))
            })?;
        if rest.is_empty() || rest.starts_with('/') || self.url.contains(['?', '#']) {
            return Err(invalid(format!(
                "`url` must be a cluster URL such as http://127.0.0.1:9200 (no query), got {:?}",
                self.url
            )));
        }
        if self.indices.is_empty() {
            return Err(invalid(
                "`indices` is empty; leave it out to mean every index",
            ));
        }
        for pattern in &self.indices {
            let bare = pattern.strip_prefix('-').unwrap_or(pattern);
            let bad = bare.is_empty()
                || bare
                    .chars()
                    .any(|c| matches!(c, '\\' | '/' | '?' | '"' | '<' | '>' | '|' | ' ' | '#'));
            if bad {
                return Err(invalid(format!(
                    "`indices` entry {pattern:?} is not an index name or pattern"
                )));
            }
        }
        if !(1..=MAX_BATCH).contains(&self.batch_size) {
            return Err(invalid(format!(
                "`batch-size` must be 1 to {MAX_BATCH}, got {}",
                self.batch_size
            )));
        }
        if !(1..=MAX_BULK_CONCURRENCY).contains(&self.bulk_concurrency) {
            return Err(invalid(format!(
                "`bulk-concurrency` must be 1 to {MAX_BULK_CONCURRENCY}, got {}",
                self.bulk_concurrency
            )));
        }
        if !names::check_time_value(&self.scroll) {
            return Err(invalid(format!(
                "`scroll` must be an Elasticsearch time value such as `5m` or `90s`, got {:?}",
                self.scroll
            )));
        }
        if self.username.is_some() != self.password_secret.is_some() {
            return Err(invalid(
                "`username` and `password-secret` go together (HTTP Basic auth)",
            ));
        }
        let schemes = [
            self.username.is_some(),
            self.authorization_secret.is_some(),
            self.api_key_secret.is_some(),
            self.bearer_secret.is_some(),
        ];
        if schemes.iter().filter(|s| **s).count() > 1 {
            return Err(invalid(
                "set one of `username` with `password-secret`, `api-key-secret`, \
                 `bearer-secret` or `authorization-secret`, not both",
            ));
        }
        if let Some(version) = &self.version {
            cluster::Version::parse(version).map_err(invalid)?;
        }
        if !(1..=MAX_SLICES).contains(&self.slices) {
            return Err(invalid(format!(
                "`slices` must be 1 to {MAX_SLICES}, got {}",
                self.slices
            )));
        }
        for pattern in self.keep_settings.iter().chain(&self.drop_settings) {
            if pattern.is_empty() || pattern.contains(char::is_whitespace) {
                return Err(invalid(format!(
                    "`keep-settings`/`drop-settings` entry {pattern:?} is not a setting pattern"
                )));
            }
        }
        if let Some(user) = &self.username
            && (user.is_empty()
                || user.contains([':', '{', '}'])
                || user.chars().any(char::is_control))
        {
            return Err(invalid(format!(
                "`username` must be non-empty without `:`, braces or control characters, got {user:?}"
            )));
        }
        if let Some(secret) = &self.password_secret {
            check_secret_name("password-secret", secret)?;
        }
        if let Some(secret) = &self.authorization_secret {
            check_secret_name("authorization-secret", secret)?;
        }
        if let Some(secret) = &self.api_key_secret {
            check_secret_name("api-key-secret", secret)?;
        }
        if let Some(secret) = &self.bearer_secret {
            check_secret_name("bearer-secret", secret)?;
        }
        if self.retries > 100 {
            return Err(invalid(format!(
                "`retries` must be at most 100, got {}",
                self.retries
            )));
        }
        if !(1..=86_400).contains(&self.timeout) {
            return Err(invalid(format!(
                "`timeout` must be 1 to 86400 seconds, got {}",
                self.timeout
            )));
        }
        for (from, to) in &self.target {
            names::check_index_name(to).map_err(|why| {
                invalid(format!(
                    "`target` renames `{from}` to {to:?}, which is not a valid alias name: {why}"
                ))
            })?;
        }
        if self.keep_indices == Some(0) {
            return Err(invalid(
                "`keep-indices` must be at least 1 (the restored index is always kept)",
            ));
        }
        names::unflatten(&self.restore_settings_flat())
            .map_err(|e| invalid(format!("`restore-settings`: {e}")))?;
        Ok(())
    }

    /// `restore-settings` as flat `index.*` keys.
    fn restore_settings_flat(&self) -> Map<String, Value> {
        let mut flat = Map::new();
        names::flatten("", &Value::Object(self.restore_settings.clone()), &mut flat);
        flat.into_iter()
            .map(|(k, v)| (names::with_index_prefix(&k), v))
            .collect()
    }

    /// The `Authorization` header value, as secret placeholders.
    fn authorization(&self) -> Option<String> {
        if let Some(secret) = &self.authorization_secret {
            return Some(format!("{{{{secret:{secret}}}}}"));
        }
        if let Some(secret) = &self.api_key_secret {
            return Some(format!("ApiKey {{{{secret:{secret}}}}}"));
        }
        if let Some(secret) = &self.bearer_secret {
            return Some(format!("Bearer {{{{secret:{secret}}}}}"));
        }
        match (&self.username, &self.password_secret) {
            (Some(user), Some(secret)) => Some(basic_auth(user, secret)),
            _ => None,
        }
    }

    fn client(&self) -> Es {
        Es::new(
            &self.url,
            self.authorization(),
            Duration::from_secs(self.timeout),
            self.retries,
        )
    }
}

/// The `Authorization` value for HTTP Basic auth as `user` with the
/// password in secret `secret`: the host base64-encodes `user:password`
/// (`{{secret-basic:USER:NAME}}`).
fn basic_auth(user: &str, secret: &str) -> String {
    format!("Basic {{{{secret-basic:{user}:{secret}}}}}")
}

/// Parse and check the params.
fn parse_params(value: Value) -> Result<Params> {
    let params: Params = from_params(value)?;
    params.check()?;
    Ok(params)
}

/// `GET /`: the cluster's distribution and version. Fails early, with a
/// clear message, on wrong credentials or an unreachable cluster; a user
/// without the `monitor` privilege (403) needs param `version`.
fn cluster_version(es: &Es, params: &Params) -> Result<Option<cluster::Version>> {
    let configured = params
        .version
        .as_deref()
        .map(cluster::Version::parse)
        .transpose()
        .map_err(invalid)?;
    let response = es.send(&es.request(cairn_guest::http::Method::Get, "/"))?;
    if response.status == 401 {
        return Err(es.status_error(&response));
    }
    if response.status == 403 {
        return match configured {
            Some(v) => {
                log::info(format!(
                    "GET / on {} is forbidden (the user has no `monitor` cluster privilege); \
                     taking the cluster for {v} as param `version` says",
                    es.url()
                ));
                Ok(Some(v))
            }
            None => Err(es.status_error(&response).context(
                "the user may not read the cluster's version (`GET /` needs the `monitor` \
                 cluster privilege): grant it, or set param `version` (e.g. `8` or \
                 `opensearch-2`)",
            )),
        };
    }
    if !response.is_success() {
        log::warn(format!(
            "GET / on {} returned {}; going on as version {}",
            es.url(),
            response.status,
            configured.map_or_else(|| "unknown".to_owned(), |v| v.to_string())
        ));
        return Ok(configured);
    }
    let info: Value = response.json().unwrap_or(Value::Null);
    let detected = cluster::Version::from_root(&info);
    log::info(format!(
        "{} at {} (cluster `{}`)",
        detected.map_or_else(
            || "Elasticsearch of unknown version".to_owned(),
            |v| v.to_string()
        ),
        es.url(),
        info["cluster_name"].as_str().unwrap_or("?")
    ));
    if let (Some(d), Some(c)) = (detected, configured)
        && !c.same_major(d)
    {
        log::warn(format!(
            "param `version` says {c}, but the cluster reports {d}: using what it reports"
        ));
    }
    if let Some(d) = detected
        && !d.supported()
    {
        log::warn(format!(
            "{d} is older than this module supports (Elasticsearch 7.x and 8.x, OpenSearch \
             1.x and 2.x); use builtin:elasticsearch-snapshot, or builtin:elasticsearch-datadir \
             for 0.90"
        ));
    }
    Ok(detected.or(configured))
}

struct ElasticsearchDump;

impl Task for ElasticsearchDump {
    fn describe() -> Description {
        Description::new("elasticsearch-dump", env!("CARGO_PKG_VERSION"))
            .summary(
                "Dumps Elasticsearch indices (settings, mappings, aliases, documents); restores \
                 them into new indices and moves the aliases atomically",
            )
            .param(Param::required(
                "url",
                "Cluster URL, e.g. http://127.0.0.1:9200",
            ))
            .param(Param::optional(
                "indices",
                "Index names or * patterns (a list or a comma-separated string); `-pattern` \
                 excludes; `.`-indices only when named with a leading `.`. At restore: which \
                 dumped indices to restore",
                json!(["*"]),
            ))
            .param(Param::optional(
                "batch-size",
                "Documents per scroll page and per _bulk request (1-10000)",
                json!(5000),
            ))
            .param(Param::optional(
                "bulk-concurrency",
                "_bulk requests in flight at once while restoring (1-8)",
                json!(2),
            ))
            .param(Param::optional(
                "scroll",
                "Scroll lease, an Elasticsearch time value; must cover the time between two pages",
                json!("5m"),
            ))
            .param(Param::optional(
                "username",
                "HTTP Basic auth user (with `password-secret`)",
                None,
            ))
            .param(Param::optional(
                "password-secret",
                "Secret (granted in allow.secrets) holding the Basic auth password",
                None,
            ))
            .param(Param::optional(
                "authorization-secret",
                "Secret holding the whole Authorization header value (Basic …, ApiKey …, Bearer …)",
                None,
            ))
            .param(Param::optional(
                "retries",
                "Retries of a request getting 429/5xx or failing in transit (for _bulk, of the \
                 documents that got 429/5xx), with exponential backoff and jitter",
                json!(8),
            ))
            .param(Param::optional(
                "timeout",
                "Seconds one request may take",
                json!(120),
            ))
            .param(Param::optional(
                "restore-settings",
                "Restore: settings for the load, put back afterwards (dynamic ones)",
                Value::Object(default_restore_settings()),
            ))
            .param(Param::optional(
                "target",
                "Restore: alias renames, e.g. { products = \"products-check\" }",
                json!({}),
            ))
            .param(Param::optional(
                "keep-indices",
                "Restore: keep this many indices behind each alias (the new one included), \
                 delete older ones (default: keep all)",
                None,
            ))
            .param(Param::optional(
                "replace-index",
                "Restore: delete a concrete index that has the alias's name in the atomic alias switch",
                json!(false),
            ))
            .param(Param::optional(
                "api-key-secret",
                "Secret holding an API key in its encoded form (sent as `ApiKey …`)",
                None,
            ))
            .param(Param::optional(
                "bearer-secret",
                "Secret holding a bearer token (sent as `Bearer …`)",
                None,
            ))
            .param(Param::optional(
                "version",
                "The cluster's version (`8`, `7.17`, `opensearch-2`) for a user that may not \
                 call GET / (no `monitor` privilege)",
                None,
            ))
            .param(Param::optional(
                "slices",
                "Sliced scrolls read at once per index (1-6)",
                json!(2),
            ))
            .param(Param::optional(
                "closed-indices",
                "Closed indices `indices` picks: `fail` (naming them) or `skip` (with a warning)",
                json!("fail"),
            ))
            .param(Param::optional(
                "hidden-indices",
                "Hidden indices a wildcard matches: `skip` (with a warning) or `include`",
                json!("skip"),
            ))
            .param(Param::optional(
                "templates",
                "Also dump the index and component templates of the dumped indices; restore \
                 those the cluster lacks",
                json!(false),
            ))
            .param(Param::optional(
                "ilm-policies",
                "Also dump the ILM policies the dumped indices name; restore those the cluster \
                 lacks, and keep `index.lifecycle.name`",
                json!(false),
            ))
            .param(Param::optional(
                "keep-settings",
                "Restore: setting patterns kept although they belong to the source cluster \
                 (e.g. `index.routing.allocation.*`)",
                json!([]),
            ))
            .param(Param::optional(
                "drop-settings",
                "Restore: setting patterns dropped as well",
                json!([]),
            ))
            .needs_http("{url}")
            .needs_secret("{password-secret}")
            .needs_secret("{authorization-secret}")
            .needs_secret("{api-key-secret}")
            .needs_secret("{bearer-secret}")
    }

    fn backup(ctx: Context) -> Result<Value> {
        let params = parse_params(ctx.params_value()?)?;
        dump::backup(&params)
    }

    fn restore(ctx: Context) -> Result<Value> {
        let params = parse_params(ctx.params_value()?)?;
        load::restore(&params, ctx.snapshot())
    }
}

cairn_guest::export_task!(ElasticsearchDump);

#[cfg(test)]
mod tests {
    use super::*;
    use cairn_guest::ErrorKind;

    #[test]
    fn params_have_defaults() {
        let p = parse_params(json!({"url": "http://127.0.0.1:9200/"})).unwrap();
        assert_eq!(p.indices, ["*"]);
        assert_eq!(
            (
                p.batch_size,
                p.bulk_concurrency,
                p.scroll.as_str(),
                p.retries
            ),
            (5000, 2, "5m", 8)
        );
        assert!(p.authorization().is_none());
        assert_eq!(
            Value::Object(p.restore_settings_flat()),
            json!({"index.number_of_replicas": 0, "index.refresh_interval": "-1"})
        );
        assert!(p.keep_indices.is_none() && !p.replace_index && p.target.is_empty());
        let p = parse_params(json!({"url": "https://es:9200", "indices": "a, b*,-b2"})).unwrap();
        assert_eq!(p.indices, ["a", "b*", "-b2"]);
    }

    #[test]
    fn params_are_checked() {
        let cases = [
            (json!({}), "missing field `url`"),
            (json!({"url": "127.0.0.1:9200"}), "must start with http"),
            (json!({"url": "http://x:9200?pretty"}), "no query"),
            (
                json!({"url": "http://x", "indices": []}),
                "`indices` is empty",
            ),
            (
                json!({"url": "http://x", "bulk-concurrency": 0}),
                "`bulk-concurrency` must be 1 to 8, got 0",
            ),
            (
                json!({"url": "http://x", "bulk-concurrency": 9}),
                "`bulk-concurrency` must be 1 to 8, got 9",
            ),
            (
                json!({"url": "http://x", "indices": ["a b"]}),
                "not an index name",
            ),
            (
                json!({"url": "http://x", "indices": "a,,b"}),
                "not an index name",
            ),
            (
                json!({"url": "http://x", "batch-size": 0}),
                "`batch-size` must be 1 to 10000",
            ),
            (
                json!({"url": "http://x", "batch-size": 10001}),
                "`batch-size`",
            ),
            (
                json!({"url": "http://x", "scroll": "5 minutes"}),
                "`scroll` must be",
            ),
            (json!({"url": "http://x", "username": "u"}), "go together"),
            (
                json!({"url": "http://x", "username": "u", "password-secret": "P", "authorization-secret": "A"}),
                "not both",
            ),
            (
                json!({"url": "http://x", "username": "a:b", "password-secret": "P"}),
                "`username` must be",
            ),
            (
                json!({"url": "http://x", "authorization-secret": "es-key"}),
                "must name a secret",
            ),
            (json!({"url": "http://x", "keep-indices": 0}), "at least 1"),
            (json!({"url": "http://x", "timeout": 0}), "`timeout`"),
            (
                json!({"url": "http://x", "target": {"a": "B"}}),
                "not a valid alias name",
            ),
            (
                json!({"url": "http://x", "restore-settings": {"refresh_interval": "1s", "index.refresh_interval.x": 1}}),
                "`restore-settings`",
            ),
            (
                json!({"url": "http://x", "size": 3}),
                "unknown field `size`",
            ),
        ];
        for (params, expected) in cases {
            let err = parse_params(params.clone()).unwrap_err();
            assert_eq!(err.kind(), ErrorKind::Invalid, "{params}");
            assert!(err.to_string().contains(expected), "{params}: {err}");
        }
    }

    #[test]
    fn credentials_become_secret_references() {
        let p =
            parse_params(json!({"url": "http://x", "authorization-secret": "ES_AUTH"})).unwrap();
        assert_eq!(p.authorization().as_deref(), Some("{{secret:ES_AUTH}}"));
        let p = parse_params(
            json!({"url": "http://x", "username": "backup", "password-secret": "ES_PW"}),
        )
        .unwrap();
        assert_eq!(
            p.authorization().as_deref(),
            Some("Basic {{secret-basic:backup:ES_PW}}")
        );
    }

    #[test]
    fn restore_settings_are_normalised() {
        let p = parse_params(json!({
            "url": "http://x",
            "restore-settings": {"number_of_replicas": 0, "index": {"refresh_interval": "-1"}, "index.translog.durability": "async"}
        }))
        .unwrap();
        assert_eq!(
            Value::Object(p.restore_settings_flat()),
            json!({"index.number_of_replicas": 0, "index.refresh_interval": "-1", "index.translog.durability": "async"})
        );
    }

    #[test]
    fn describe_declares_http_and_secrets() {
        let d = ElasticsearchDump::describe();
        assert_eq!(d.name(), "elasticsearch-dump");
        assert!(
            d.params()
                .iter()
                .any(|p| p.name() == "url" && p.is_required())
        );
        assert!(
            d.params()
                .iter()
                .all(|p| p.name() == "url" || !p.is_required())
        );
    }
}
