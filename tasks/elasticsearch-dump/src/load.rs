//! Restore: create a new index per dumped index, bulk-load its documents
//! with retries, check the count, put the load-time settings back, then
//! move the aliases to the new indices in one atomic `POST /_aliases` and
//! delete old generations beyond `keep-indices`.

use std::borrow::Cow;
use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Read};
use std::ops::Range;

use cairn_guest::http::{Method, Pending, Request, Response};
use cairn_guest::progress::{self, Unit};
use cairn_guest::{Error, ErrorContext, Result, Value, json, log, storage, time};
use serde::Deserialize;
use serde::de::IgnoredAny;
use serde_json::Map;
use serde_json::value::RawValue;

use crate::client::{Es, EsProblem, encode, excerpt, retryable_status};
use crate::cluster::Version;
use crate::dump::{Progress, count};
use crate::manifest::{IndexDump, Kind, MANIFEST, Manifest};
use crate::names::{
    flatten, glob_match, is_dynamic, portable_settings, restored_index, restored_stamp, unflatten,
};
use crate::{Params, cluster_version};

/// How many rejected documents an error quotes.
const QUOTED_REJECTIONS: usize = 3;

/// Alias properties a restore copies to the new index.
const ALIAS_PROPERTIES: &[&str] = &[
    "filter",
    "index_routing",
    "search_routing",
    "routing",
    "is_write_index",
    "is_hidden",
];

/// What the restore does with one dumped index.
#[derive(Debug)]
pub struct Plan<'m> {
    /// The dumped index.
    pub dump: &'m IndexDump,
    /// The alias the new index goes behind: the dumped index's first alias
    /// (by name), or its name when it had none, renamed by `target`.
    pub alias: String,
    /// The alias's saved properties (none when it is the index name).
    pub alias_properties: Map<String, Value>,
    /// The dumped index's other aliases, renamed by `target`.
    pub other_aliases: Vec<(String, Map<String, Value>)>,
    /// The new index: see [`restored_index`].
    pub index: String,
    /// Whether a concrete index named `alias` is deleted in the alias switch.
    pub replace_index: bool,
    /// The settings the new index gets (portable ones), and those left out.
    pub settings: Map<String, Value>,
    pub left_out: Vec<String>,
}

impl Plan<'_> {
    fn is_stream(&self) -> bool {
        self.dump.kind == Kind::DataStream
    }
}

/// Only the alias properties a new index can take.
fn copied_properties(value: &Value) -> Map<String, Value> {
    value
        .as_object()
        .map(|props| {
            props
                .iter()
                .filter(|(k, _)| ALIAS_PROPERTIES.contains(&k.as_str()))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect()
        })
        .unwrap_or_default()
}

/// The dumped indices `patterns` select (a pattern starting with `-`
/// removes what it matches), in the manifest's order.
///
/// # Errors
///
/// `not-found` for a pattern matching no dumped index, listing them.
pub fn select<'m>(manifest: &'m Manifest, patterns: &[String]) -> Result<Vec<&'m IndexDump>> {
    let mut picked: Vec<&IndexDump> = Vec::new();
    for pattern in patterns {
        if let Some(excluded) = pattern.strip_prefix('-') {
            picked.retain(|d| !glob_match(excluded, &d.name));
            continue;
        }
        let before = picked.len();
        let mut matched = false;
        for dump in &manifest.indices {
            if glob_match(pattern, &dump.name) {
                matched = true;
                if !picked.iter().any(|d| d.name == dump.name) {
                    picked.push(dump);
                }
            }
        }
        if !matched {
            let held: Vec<&str> = manifest.indices.iter().map(|d| d.name.as_str()).collect();
            return Err(Error::not_found(format!(
                "index pattern `{pattern}` matches no index of the snapshot (it holds {})",
                if held.is_empty() {
                    "none".to_owned()
                } else {
                    format!("`{}`", held.join("`, `"))
                }
            )));
        }
        debug_assert!(picked.len() >= before);
    }
    picked.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(picked)
}

/// The plans for `selected`, restoring snapshot `snapshot`.
///
/// # Errors
///
/// `invalid` when two indices would go behind the same alias.
pub fn plan<'m>(
    selected: &[&'m IndexDump],
    params: &Params,
    stamp: &str,
    snapshot: &str,
) -> Result<Vec<Plan<'m>>> {
    let rename = |name: &str| {
        params
            .target
            .get(name)
            .cloned()
            .unwrap_or_else(|| name.to_owned())
    };
    let mut plans: Vec<Plan> = Vec::with_capacity(selected.len());
    for dump in selected {
        let first = dump.aliases.keys().min().cloned();
        let (alias, alias_properties) = match &first {
            Some(first) => (rename(first), copied_properties(&dump.aliases[first])),
            None => (rename(&dump.name), Map::new()),
        };
        let other_aliases = dump
            .aliases
            .iter()
            .filter(|(name, _)| Some(*name) != first.as_ref())
            .map(|(name, props)| (rename(name), copied_properties(props)))
            .collect();
        let (settings, left_out) = portable_settings(
            &dump.settings,
            &keep_settings(params),
            &params.drop_settings,
        );
        if dump.kind == Kind::DataStream {
            // A data stream comes back as a data stream, under its name
            // (renamed by `target`): no alias, no generations.
            let name = rename(&dump.name);
            plans.push(Plan {
                dump,
                index: name.clone(),
                alias: name,
                alias_properties: Map::new(),
                other_aliases: Vec::new(),
                replace_index: false,
                settings,
                left_out,
            });
            continue;
        }
        if let Some(other) = plans.iter().find(|p| p.alias == alias) {
            return Err(Error::invalid(format!(
                "indices `{}` and `{}` of the snapshot would both be restored behind alias \
                 `{alias}`; restore them one at a time (`indices`) with a `target` renaming \
                 one, e.g. target = {{ {alias:?} = \"{alias}-2\" }}",
                other.dump.name, dump.name
            )));
        }
        plans.push(Plan {
            dump,
            index: restored_index(&alias, stamp, snapshot),
            alias,
            alias_properties,
            other_aliases,
            replace_index: false,
            settings,
            left_out,
        });
    }
    Ok(plans)
}

/// `keep-settings`, plus `index.lifecycle.name` when ILM policies are
/// restored too.
fn keep_settings(params: &Params) -> Vec<String> {
    let mut keep = params.keep_settings.clone();
    if params.ilm_policies {
        keep.push("index.lifecycle.name".to_owned());
    }
    keep
}

/// One row of `GET /_cat/indices?format=json&h=index`.
#[derive(Debug, Deserialize)]
struct CatIndex {
    index: String,
}

/// The concrete indices `name` stands for (itself, or those behind an
/// alias of that name); empty when it names nothing. Through `GET
/// /_resolve/index` (needs `view_index_metadata` only), or `_cat/indices`
/// (needs `monitor`) on clusters before 7.9.
fn concrete_indices(es: &Es, name: &str) -> Result<Vec<String>> {
    let path = format!("/_resolve/index/{}?expand_wildcards=all", encode(name));
    let response = es.send_with_retries(&es.request(Method::Get, &path))?;
    match response.status {
        404 => return Ok(Vec::new()),
        s if (200..300).contains(&s) => {
            let v: Value = response.json()?;
            let mut out: Vec<String> = Vec::new();
            for i in v["indices"].as_array().into_iter().flatten() {
                if let Some(n) = i["name"].as_str() {
                    out.push(n.to_owned());
                }
            }
            for a in v["aliases"].as_array().into_iter().flatten() {
                for n in a["indices"].as_array().into_iter().flatten() {
                    if let Some(n) = n.as_str() {
                        out.push(n.to_owned());
                    }
                }
            }
            return Ok(out);
        }
        400 | 405 => {}
        _ => return Err(es.status_error(&response)),
    }
    let path = format!("/_cat/indices/{}?format=json&h=index", encode(name));
    let rows: Vec<CatIndex> = es.get_json_opt(&path)?.unwrap_or_default();
    Ok(rows.into_iter().map(|r| r.index).collect())
}

/// Index name → creation time (ms since the epoch; 0 when unknown) of the
/// indices matching `pattern`, from `GET /{pattern}/_settings`.
fn creation_dates(es: &Es, pattern: &str) -> Result<Vec<(String, u64)>> {
    let found: Option<Map<String, Value>> =
        es.get_json_opt(&format!("/{}/_settings", encode(pattern)))?;
    Ok(found
        .unwrap_or_default()
        .into_iter()
        .map(|(index, v)| {
            let settings = &v["settings"];
            let date = settings["index"]["creation_date"]
                .as_str()
                .or_else(|| settings["index.creation_date"].as_str())
                .and_then(|d| d.parse().ok())
                .unwrap_or(0);
            (index, date)
        })
        .collect())
}

/// The indices holding alias `alias`.
fn alias_holders(es: &Es, alias: &str) -> Result<Vec<String>> {
    let found: Option<Map<String, Value>> =
        es.get_json_opt(&format!("/_alias/{}", encode(alias)))?;
    let Some(found) = found else {
        return Ok(Vec::new());
    };
    // ES 7 answers 404 with a body for a missing alias; some versions 200 `{}`.
    Ok(found
        .into_iter()
        .filter(|(_, v)| v["aliases"].get(alias).is_some())
        .map(|(index, _)| index)
        .collect())
}

/// Fail before anything is written when concrete indices have the names
/// of aliases to restore behind (all named at once), unless
/// `replace-index` allows deleting them in the alias switch.
fn check_aliases_free(es: &Es, plans: &mut [Plan], allow_replace: bool) -> Result<()> {
    let mut blocked = Vec::new();
    for plan in plans.iter_mut() {
        if plan.is_stream() {
            check_stream_free(es, plan)?;
            continue;
        }
        if !concrete_indices(es, &plan.alias)?.contains(&plan.alias) {
            continue;
        }
        if allow_replace {
            log::warn(format!(
                "index `{}` will be deleted when alias `{}` moves to `{}` (`replace-index`)",
                plan.alias, plan.alias, plan.index
            ));
            plan.replace_index = true;
        } else {
            blocked.push(plan.alias.clone());
        }
    }
    if blocked.is_empty() {
        return Ok(());
    }
    let list = blocked
        .iter()
        .map(|name| format!("a concrete index named `{name}`"))
        .collect::<Vec<_>>()
        .join(", ");
    Err(Error::invalid(format!(
        "cannot restore: {} has {list}, and an alias cannot have the name of an index (an index \
         without aliases is restored behind an alias of its own name). Delete or rename the \
         index, restore behind another alias with `target = {{ {:?} = \"new-name\" }}`, or set \
         `replace-index = true` to delete it in the same atomic call that adds the alias; \
         nothing was written",
        es.url(),
        blocked[0]
    )))
}

/// A data stream is restored under its name only where none holds
/// documents yet (a re-run of a failed restore finds its own, partly
/// loaded: that one is loaded again, additively).
fn check_stream_free(es: &Es, plan: &Plan) -> Result<()> {
    let name = &plan.index;
    let found: Option<Value> = es.get_json_opt(&format!("/_data_stream/{}", encode(name)))?;
    let exists = found
        .as_ref()
        .and_then(|f| f["data_streams"].as_array())
        .is_some_and(|l| l.iter().any(|d| d["name"] == name.as_str()));
    if !exists {
        if !concrete_indices(es, name)?.is_empty() {
            return Err(Error::invalid(format!(
                "cannot restore data stream `{}` as `{name}`: an index or alias of that name                  exists on {}; restore it under another name with `target = {{ {:?} =                  \"new-name\" }}` (an index template must match the new name)",
                plan.dump.name,
                es.url(),
                plan.dump.name
            )));
        }
        return Ok(());
    }
    log::info(format!(
        "data stream `{name}` exists: loading into it (documents keep their `_id`; those          already there are kept)"
    ));
    Ok(())
}

/// The settings overrides of `restore-settings` as flat `index.*` keys.
fn overrides(params: &Params) -> Map<String, Value> {
    params.restore_settings_flat()
}

/// Create the index of `plan`, or find it from an earlier run of the same
/// restore (then the overrides are applied again). Returns whether it was
/// created now.
fn create_index(es: &Es, params: &Params, plan: &Plan) -> Result<bool> {
    let index = &plan.index;
    if plan.is_stream() {
        return create_stream(es, plan);
    }
    let overrides = overrides(params);
    if !plan.left_out.is_empty() {
        log::info(format!(
            "index `{index}`: settings of `{}` that belong to the source cluster are not \
             restored (keep some with `keep-settings`): {}",
            plan.dump.name,
            plan.left_out.join(", ")
        ));
    }
    let mut settings = plan.settings.clone();
    settings.extend(overrides.clone());
    let body = json!({
        "settings": unflatten(&settings)?,
        "mappings": plan.dump.mappings,
    });
    let request = es
        .request(Method::Put, &format!("/{}", encode(index)))
        .json(&body)?;
    let response = es.send_with_retries(&request)?;
    if response.is_success() {
        return Ok(true);
    }
    let problem = EsProblem::parse(&response.body);
    if !problem.mentions("resource_already_exists_exception") {
        return Err(es.status_error(&response).context(format!(
            "creating index `{index}` with the settings and mappings of `{}`",
            plan.dump.name
        )));
    }
    log::info(format!(
        "index `{index}` exists from an earlier run of this restore: loading into it again \
         (documents keep their `_id`, so none is duplicated)"
    ));
    let dynamic: Map<String, Value> = overrides
        .into_iter()
        .filter(|(k, _)| is_dynamic(k))
        .collect();
    if !dynamic.is_empty() {
        put_settings(es, index, &dynamic)?;
    }
    Ok(false)
}

/// `PUT /_data_stream/{name}` (the cluster needs an index template with
/// `data_stream` for the name: restored first with `templates = true`).
/// Whether it was created now.
fn create_stream(es: &Es, plan: &Plan) -> Result<bool> {
    let name = &plan.index;
    let request = es.request(Method::Put, &format!("/_data_stream/{}", encode(name)));
    let response = es.send_with_retries(&request)?;
    if response.is_success() {
        return Ok(true);
    }
    let problem = EsProblem::parse(&response.body);
    if problem.mentions("resource_already_exists_exception") {
        return Ok(false);
    }
    let hint = if problem.reason.contains("no matching index template") {
        format!(
            "; the cluster has no index template with `data_stream` matching `{name}`              (template `{}` of the source): dump with `templates = true`, or create it",
            plan.dump.template.as_deref().unwrap_or("?")
        )
    } else {
        String::new()
    };
    Err(es
        .status_error(&response)
        .context(format!("creating data stream `{name}`{hint}")))
}

/// `PUT /{index}/_settings`.
fn put_settings(es: &Es, index: &str, flat: &Map<String, Value>) -> Result<()> {
    let request = es
        .request(Method::Put, &format!("/{}/_settings", encode(index)))
        .json(&unflatten(flat)?)?;
    es.send_retrying(&request)
        .with_context(|| format!("updating the settings of index `{index}`"))?;
    Ok(())
}

/// One line of a dump.
#[derive(Deserialize)]
struct Line<'a> {
    #[serde(rename = "_id", borrow)]
    id: Cow<'a, str>,
    #[serde(rename = "_routing", borrow, default)]
    routing: Option<Cow<'a, str>>,
    #[serde(rename = "_source", borrow)]
    source: &'a RawValue,
}

/// Documents gathered for one bulk request: the NDJSON body and where each
/// document's two lines are in it, so that only failed ones are resent.
#[derive(Default)]
pub struct Batch {
    body: Vec<u8>,
    items: Vec<Range<usize>>,
}

impl Batch {
    /// Add a dump line as an `index` action with its `_id` and routing.
    ///
    /// # Errors
    ///
    /// `failed` when the line is not a dump line.
    #[cfg(test)]
    pub fn push(&mut self, line: &[u8]) -> Result<()> {
        self.push_as(line, "index")
    }

    /// Add a dump line as an `action` (`index`, or `create` for a data
    /// stream) with its `_id` and routing.
    pub fn push_as(&mut self, line: &[u8], action: &str) -> Result<()> {
        let line: Line = serde_json::from_slice(line)?;
        let start = self.body.len();
        self.body.extend_from_slice(b"{\"");
        self.body.extend_from_slice(action.as_bytes());
        self.body.extend_from_slice(b"\":{\"_id\":");
        serde_json::to_writer(&mut self.body, &*line.id)?;
        if let Some(routing) = &line.routing {
            self.body.extend_from_slice(b",\"routing\":");
            serde_json::to_writer(&mut self.body, &**routing)?;
        }
        self.body.extend_from_slice(b"}}\n");
        self.body.extend_from_slice(line.source.get().as_bytes());
        self.body.push(b'\n');
        self.items.push(start..self.body.len());
        Ok(())
    }

    /// How many documents it holds.
    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// Whether it holds none.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// The body for the documents at `which` (positions in this batch).
    fn body_of(&self, which: &[usize]) -> Vec<u8> {
        if which.len() == self.items.len() {
            return self.body.clone();
        }
        let mut body = Vec::new();
        for &i in which {
            body.extend_from_slice(&self.body[self.items[i].clone()]);
        }
        body
    }

    fn clear(&mut self) {
        self.body.clear();
        self.items.clear();
    }
}

/// The first pass over a bulk response: only whether any item failed.
#[derive(Deserialize)]
struct BulkSummary {
    errors: bool,
    #[serde(default)]
    #[allow(dead_code)]
    items: IgnoredAny,
}

#[derive(Deserialize)]
struct BulkResponse {
    items: Vec<BulkItem>,
}

#[derive(Deserialize)]
struct BulkItem {
    #[serde(alias = "create", alias = "update", alias = "delete")]
    index: ItemResult,
}

#[derive(Deserialize)]
struct ItemResult {
    #[serde(rename = "_id", default)]
    id: Option<String>,
    status: u16,
    #[serde(default)]
    error: Option<Value>,
}

/// What became of the items of one bulk response.
#[derive(Debug, Default, PartialEq)]
pub struct Outcome {
    /// Positions (in the request) of items to resend: 429 or 5xx.
    pub retry: Vec<usize>,
    /// How many were rejected for good, and why (the first few).
    pub rejected: usize,
    pub reasons: Vec<String>,
    /// Why the first item to resend failed.
    pub retry_reason: Option<String>,
}

/// Sort the items of a 2xx bulk response into done, to retry and rejected.
///
/// # Errors
///
/// `failed` when the body is not a bulk response for `sent` items.
#[cfg(test)]
pub fn bulk_outcome(body: &[u8], sent: usize) -> Result<Outcome> {
    bulk_outcome_with(body, sent, false)
}

/// As [`bulk_outcome`]; with `conflicts_done`, a 409 (a `create` of a
/// document already there, from an earlier run) counts as done.
pub fn bulk_outcome_with(body: &[u8], sent: usize, conflicts_done: bool) -> Result<Outcome> {
    let summary: BulkSummary = serde_json::from_slice(body).map_err(|e| {
        Error::failed(format!(
            "the _bulk response is not the expected JSON: {e}: {}",
            excerpt(body, 300)
        ))
    })?;
    if !summary.errors {
        return Ok(Outcome::default());
    }
    let response: BulkResponse = serde_json::from_slice(body)?;
    if response.items.len() != sent {
        return Err(Error::failed(format!(
            "the _bulk response has {} items for {sent} documents sent",
            response.items.len()
        )));
    }
    let mut outcome = Outcome::default();
    for (i, item) in response.items.iter().enumerate() {
        let result = &item.index;
        if (200..300).contains(&result.status) || (conflicts_done && result.status == 409) {
            continue;
        }
        if retryable_status(result.status) {
            outcome.retry.push(i);
            if outcome.retry_reason.is_none() {
                let problem = EsProblem::parse(
                    json!({ "error": result.error.clone().unwrap_or(Value::Null) })
                        .to_string()
                        .as_bytes(),
                );
                outcome.retry_reason = Some(format!("{} ({problem})", result.status));
            }
            continue;
        }
        outcome.rejected += 1;
        if outcome.reasons.len() < QUOTED_REJECTIONS {
            let problem = EsProblem::parse(
                json!({ "error": result.error.clone().unwrap_or(Value::Null) })
                    .to_string()
                    .as_bytes(),
            );
            outcome.reasons.push(format!(
                "document `{}`: {} ({problem})",
                result.id.as_deref().unwrap_or("?"),
                result.status
            ));
        }
    }
    Ok(outcome)
}

/// The `_bulk` request for the documents at `which` in `batch`.
fn bulk_request(es: &Es, index: &str, batch: &Batch, which: &[usize]) -> Request {
    es.request(Method::Post, &format!("/{}/_bulk", encode(index)))
        .header("Content-Type", "application/x-ndjson")
        .body(batch.body_of(which))
}

/// Finish loading `batch` into `index` with `_bulk`, given the response to
/// its first request (started by the caller): resend whole requests that get
/// 429/5xx or fail in transit, and only the failed items when some get
/// 429/5xx, with backoff, up to `retries` times.
fn finish_bulk(
    es: &Es,
    index: &str,
    source: &str,
    batch: &Batch,
    first: Result<Response>,
    stream: bool,
) -> Result<()> {
    let mut pending: Vec<usize> = (0..batch.len()).collect();
    let mut attempt = 0;
    let mut response = Some(first);
    loop {
        let sent = match response.take() {
            Some(first) => first,
            None => es.send(&bulk_request(es, index, batch, &pending)),
        };
        let failure = match sent {
            Ok(response) if response.is_success() => {
                let outcome = bulk_outcome_with(&response.body, pending.len(), stream)
                    .with_context(|| format!("loading index `{index}`"))?;
                if outcome.rejected > 0 {
                    return Err(Error::failed(format!(
                        "Elasticsearch rejected {} document(s) of `{source}` loading index \
                         `{index}`: {}{}",
                        outcome.rejected,
                        outcome.reasons.join("; "),
                        if outcome
                            .reasons
                            .iter()
                            .any(|r| r.contains("mapper_parsing_exception")
                                || r.contains("illegal_argument_exception"))
                        {
                            "; the documents do not fit the index's mappings (an index template \
                             of the cluster, or an index left from another restore, may impose \
                             other ones)"
                        } else {
                            ""
                        }
                    )));
                }
                if outcome.retry.is_empty() {
                    return Ok(());
                }
                let failure = format!(
                    "{} of {} documents got 429/5xx, the first {}",
                    outcome.retry.len(),
                    pending.len(),
                    outcome
                        .retry_reason
                        .as_deref()
                        .unwrap_or("with no reason given")
                );
                pending = outcome.retry.iter().map(|&i| pending[i]).collect();
                Error::failed(failure)
            }
            Ok(response) if retryable_status(response.status) => es.status_error(&response),
            Ok(response) => {
                let hint = if response.status == 413 {
                    "; lower `batch-size` or raise `http.max_content_length`"
                } else {
                    ""
                };
                return Err(es
                    .status_error(&response)
                    .context(format!("loading index `{index}`{hint}")));
            }
            Err(e)
                if matches!(
                    e.kind(),
                    cairn_guest::ErrorKind::Failed | cairn_guest::ErrorKind::Limit
                ) =>
            {
                e
            }
            Err(e) => return Err(e),
        };
        if attempt >= es.retries() {
            return Err(failure.context(format!(
                "loading index `{index}`: still failing after {} retries",
                es.retries()
            )));
        }
        attempt += 1;
        let delay = es.backoff(attempt);
        log::warn(format!(
            "bulk load into `{index}`: {failure}; retry {attempt} of {} in {} ms",
            es.retries(),
            delay.as_millis()
        ));
        time::sleep(delay);
    }
}

/// `_bulk` requests of one index on their way, oldest first: at most
/// `bulk-concurrency` of them, so the next batch is read while the cluster
/// indexes the last ones.
struct InFlight<'a> {
    es: &'a Es,
    index: &'a str,
    source: &'a str,
    limit: usize,
    /// Loading a data stream (`create` actions; a 409 is a document an
    /// earlier run loaded).
    stream: bool,
    requests: VecDeque<(Batch, Pending)>,
    /// Batches done with, to reuse their buffers.
    spare: Vec<Batch>,
}

impl InFlight<'_> {
    /// Start loading `batch`, first finishing the oldest request when
    /// `limit` are on their way. Returns how many documents were finished.
    fn push(&mut self, batch: &mut Batch) -> Result<usize> {
        let mut done = 0;
        if self.requests.len() >= self.limit {
            done = self.finish_oldest()?;
        }
        let which: Vec<usize> = (0..batch.len()).collect();
        let started = self
            .es
            .start(&bulk_request(self.es, self.index, batch, &which))?;
        let next = self.spare.pop().unwrap_or_default();
        self.requests
            .push_back((std::mem::replace(batch, next), started));
        Ok(done)
    }

    /// Wait for the oldest request and finish its batch (retries included);
    /// returns how many documents it held (0 when none is on its way).
    fn finish_oldest(&mut self) -> Result<usize> {
        let Some((mut batch, started)) = self.requests.pop_front() else {
            return Ok(0);
        };
        let first = self.es.wait(started);
        finish_bulk(self.es, self.index, self.source, &batch, first, self.stream)?;
        let done = batch.len();
        batch.clear();
        self.spare.push(batch);
        Ok(done)
    }
}

/// Load the documents of `plan` into its index; returns how many were read
/// from the dump. On failure, requests still on their way are dropped,
/// which cancels them (documents they carried may be indexed: the index is
/// not behind the alias yet, and a new run loads the same `_id`s again).
fn load_documents(es: &Es, params: &Params, plan: &Plan, progress: &mut Progress) -> Result<u64> {
    let artifact = &plan.dump.artifact;
    let reader = storage::open(artifact)
        .with_context(|| format!("opening the documents of `{}`", plan.dump.name))?;
    let mut reader = BufReader::with_capacity(1 << 20, reader);
    let mut batch = Batch::default();
    let mut in_flight = InFlight {
        es,
        index: &plan.index,
        source: &plan.dump.name,
        limit: params.bulk_concurrency as usize,
        stream: plan.is_stream(),
        requests: VecDeque::new(),
        spare: Vec::new(),
    };
    let mut line = Vec::new();
    let mut read: u64 = 0;
    let mut line_no: u64 = 0;
    loop {
        line.clear();
        if reader
            .read_until(b'\n', &mut line)
            .with_context(|| format!("reading artifact `{artifact}`"))?
            == 0
        {
            break;
        }
        line_no += 1;
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let action = if plan.is_stream() { "create" } else { "index" };
        batch.push_as(&line, action).map_err(|e| {
            Error::failed(format!(
                "artifact `{artifact}`, line {line_no}: not a dump line: {e}"
            ))
        })?;
        if batch.len() >= params.batch_size as usize {
            let done = in_flight.push(&mut batch)? as u64;
            read += done;
            progress.advance(done);
        }
    }
    if !batch.is_empty() {
        let done = in_flight.push(&mut batch)? as u64;
        read += done;
        progress.advance(done);
    }
    while !in_flight.requests.is_empty() {
        let done = in_flight.finish_oldest()? as u64;
        read += done;
        progress.advance(done);
    }
    // Read to the end: a truncated artifact must not pass for a whole one.
    let mut rest = Vec::new();
    reader.read_to_end(&mut rest)?;
    Ok(read)
}

/// Create, load, check and finish the index of `plan`; returns whether it
/// was created by this run.
fn restore_index(es: &Es, params: &Params, plan: &Plan, progress: &mut Progress) -> Result<bool> {
    let source = &plan.dump.name;
    let index = &plan.index;
    let start = time::now_ms();
    let created = create_index(es, params, plan)?;
    log::info(format!(
        "restoring `{source}` ({} documents) into index `{index}`",
        plan.dump.documents
    ));
    let loaded = load_documents(es, params, plan, progress)?;
    if loaded != plan.dump.documents {
        return Err(Error::failed(format!(
            "artifact `{}` holds {loaded} documents, the manifest says {}: the snapshot is \
             damaged",
            plan.dump.artifact, plan.dump.documents
        )));
    }
    es.send_retrying(&es.request(Method::Post, &format!("/{}/_refresh", encode(index))))
        .with_context(|| format!("refreshing index `{index}`"))?;
    let counted = count(es, index).with_context(|| format!("counting index `{index}`"))?;
    if counted != plan.dump.documents {
        return Err(Error::failed(format!(
            "`{index}` holds {counted} documents after the load, but `{source}` was dumped \
             with {}: the cluster acknowledged documents it does not hold, or something else \
             writes to it; the aliases were not moved",
            plan.dump.documents
        )));
    }
    // Put back what `restore-settings` changed for the load.
    let put_back: Map<String, Value> = overrides(params)
        .into_iter()
        .filter(|(k, _)| is_dynamic(k))
        .map(|(k, _)| {
            let saved = plan.settings.get(&k).cloned().unwrap_or(Value::Null);
            (k, saved)
        })
        .collect();
    if !put_back.is_empty() && !plan.is_stream() {
        put_settings(es, index, &put_back)?;
    }
    let secs = (time::now_ms().saturating_sub(start)).max(1) as f64 / 1000.0;
    log::info(format!(
        "restored `{source}` into `{index}`: {counted} documents ({:.0}/s)",
        counted as f64 / secs
    ));
    Ok(created)
}

/// The `POST /_aliases` actions that move every plan's aliases to its new
/// index: each alias is removed from the indices holding the main alias
/// (older generations) and added to the new index; the main alias is also
/// removed from any other index holding it, and a concrete index of its
/// name is deleted when `replace-index` allows it.
fn alias_actions(es: &Es, plans: &[Plan]) -> Result<Vec<Value>> {
    let mut actions = Vec::new();
    for plan in plans.iter().filter(|p| !p.is_stream()) {
        let holders = alias_holders(es, &plan.alias)?;
        for holder in holders.iter().filter(|h| **h != plan.index) {
            actions.push(json!({ "remove": { "index": holder, "alias": plan.alias } }));
        }
        if plan.replace_index {
            actions.push(json!({ "remove_index": { "index": plan.alias } }));
        }
        let mut add = plan.alias_properties.clone();
        add.insert("index".into(), Value::from(plan.index.clone()));
        add.insert("alias".into(), Value::from(plan.alias.clone()));
        actions.push(json!({ "add": add }));
        for (alias, props) in &plan.other_aliases {
            for holder in alias_holders(es, alias)?
                .iter()
                .filter(|h| **h != plan.index && holders.contains(h))
            {
                actions.push(json!({ "remove": { "index": holder, "alias": alias } }));
            }
            let mut add = props.clone();
            add.insert("index".into(), Value::from(plan.index.clone()));
            add.insert("alias".into(), Value::from(alias.clone()));
            actions.push(json!({ "add": add }));
        }
    }
    Ok(actions)
}

/// Delete the indices of `plan`'s scheme behind its alias beyond the
/// `keep` newest (by creation date, else by the stamp in the name); the new
/// index is always kept. Returns the deleted names.
fn clean_up(es: &Es, plan: &Plan, keep: u32) -> Result<Vec<String>> {
    let mut older: Vec<(u64, String, String)> = creation_dates(es, &format!("{}-*", plan.alias))?
        .into_iter()
        .filter(|(index, _)| *index != plan.index)
        .filter_map(|(index, created)| {
            let stamp = restored_stamp(&plan.alias, &index)?.to_owned();
            Some((created, stamp, index))
        })
        .collect();
    older.sort_by(|a, b| b.cmp(a));
    let mut deleted = Vec::new();
    for (_, _, index) in older.into_iter().skip(keep.saturating_sub(1) as usize) {
        es.send_retrying(&es.request(Method::Delete, &format!("/{}", encode(&index))))
            .with_context(|| format!("deleting old index `{index}` (`keep-indices` = {keep})"))?;
        log::info(format!(
            "deleted old index `{index}` of alias `{}` (`keep-indices` = {keep})",
            plan.alias
        ));
        deleted.push(index);
    }
    Ok(deleted)
}

/// Create the ILM policies of the dump the cluster lacks; those it has are
/// kept as they are. Returns the created ones.
fn restore_policies(es: &Es, manifest: &Manifest, version: Option<Version>) -> Result<Vec<String>> {
    let mut created = Vec::new();
    if manifest.ilm_policies.is_empty() {
        return Ok(created);
    }
    if version.is_some_and(|v| !v.has_ilm()) {
        log::warn(format!(
            "the dump holds ILM policies ({}), but {} has no ILM: not restored",
            manifest
                .ilm_policies
                .keys()
                .cloned()
                .collect::<Vec<_>>()
                .join(", "),
            es.url()
        ));
        return Ok(created);
    }
    for (name, policy) in &manifest.ilm_policies {
        let path = format!("/_ilm/policy/{}", encode(name));
        if es.get_json_opt::<Value>(&path)?.is_some() {
            log::info(format!("ILM policy `{name}` exists: the cluster's is kept"));
            continue;
        }
        let request = es
            .request(Method::Put, &path)
            .json(&json!({ "policy": policy }))?;
        es.send_retrying(&request)
            .with_context(|| format!("creating ILM policy `{name}`"))?;
        log::info(format!("created ILM policy `{name}`"));
        created.push(name.clone());
    }
    Ok(created)
}

/// A template's settings made portable as an index's are.
fn portable_template(params: &Params, body: &Value) -> Value {
    let mut body = body.clone();
    if let Some(settings) = body["template"].get("settings").cloned() {
        let mut flat = Map::new();
        flatten("", &settings, &mut flat);
        let flat: Map<String, Value> = flat
            .into_iter()
            .map(|(k, v)| (crate::names::with_index_prefix(&k), v))
            .collect();
        let (kept, left_out) =
            portable_settings(&flat, &keep_settings(params), &params.drop_settings);
        if !left_out.is_empty() {
            log::info(format!(
                "template settings that belong to the source cluster are not restored: {}",
                left_out.join(", ")
            ));
        }
        body["template"]["settings"] = unflatten(&kept).unwrap_or(Value::Object(Map::new()));
    }
    body
}

/// Create the templates of the dump the cluster lacks (component templates
/// first); those it has are kept as they are. Returns the created ones.
fn restore_templates(
    es: &Es,
    params: &Params,
    manifest: &Manifest,
    _version: Option<Version>,
) -> Result<Vec<String>> {
    let mut created = Vec::new();
    let mut ordered: Vec<&crate::manifest::TemplateDump> = manifest
        .templates
        .iter()
        .filter(|t| t.kind == "component")
        .collect();
    ordered.extend(manifest.templates.iter().filter(|t| t.kind != "component"));
    for t in ordered {
        let api = if t.kind == "component" {
            "_component_template"
        } else {
            "_index_template"
        };
        let path = format!("/{api}/{}", encode(&t.name));
        if es.get_json_opt::<Value>(&path)?.is_some() {
            log::info(format!(
                "{} template `{}` exists: the cluster's is kept",
                t.kind, t.name
            ));
            continue;
        }
        let request = es
            .request(Method::Put, &format!("{path}?create=true"))
            .json(&portable_template(params, &t.body))?;
        es.send_retrying(&request)
            .with_context(|| format!("creating {} template `{}`", t.kind, t.name))?;
        log::info(format!("created {} template `{}`", t.kind, t.name));
        created.push(t.name.clone());
    }
    Ok(created)
}

/// Read the manifest of the snapshot being restored.
fn read_manifest() -> Result<Manifest> {
    let mut bytes = Vec::new();
    storage::open(MANIFEST)
        .map_err(|e| {
            e.context(format!(
                "the snapshot holds no `{MANIFEST}`: was it written by builtin:elasticsearch-dump?"
            ))
        })?
        .read_to_end(&mut bytes)?;
    Manifest::parse(&bytes)
}

/// The restore.
pub fn restore(params: &Params, snapshot: Option<&str>) -> Result<Value> {
    let snapshot = snapshot.ok_or_else(|| Error::invalid("a restore needs a snapshot"))?;
    let manifest = read_manifest()?;
    let es = params.client();
    let version = cluster_version(&es, params)?;
    let selected = select(&manifest, &params.indices)?;
    let mut plans = plan(&selected, params, &manifest.stamp, snapshot)?;
    check_aliases_free(&es, &mut plans, params.replace_index)?;
    log::info(format!(
        "restoring {} index(es) dumped from {} at {}: {}",
        plans.len(),
        manifest.url,
        manifest.dumped_at,
        plans
            .iter()
            .map(|p| format!("`{}` → `{}` (alias `{}`)", p.dump.name, p.index, p.alias))
            .collect::<Vec<_>>()
            .join(", ")
    ));

    let mut progress = Progress {
        done: 0,
        total: plans.iter().map(|p| p.dump.documents).sum(),
    };
    progress::report(0, progress.total, Unit::Items);
    let policies = restore_policies(&es, &manifest, version)?;
    let templates = restore_templates(&es, params, &manifest, version)?;
    let mut created = Vec::with_capacity(plans.len());
    for plan in &plans {
        created.push(restore_index(&es, params, plan, &mut progress)?);
    }

    let actions = alias_actions(&es, &plans)?;
    if !actions.is_empty() {
        let request = es
            .request(Method::Post, "/_aliases")
            .json(&json!({ "actions": actions }))?;
        es.send_retrying(&request)
            .context("moving the aliases to the restored indices (nothing was moved)")?;
    }
    for plan in plans.iter().filter(|p| !p.is_stream()) {
        log::info(format!(
            "alias `{}` now points to `{}`",
            plan.alias, plan.index
        ));
    }

    let mut deleted = Vec::new();
    if let Some(keep) = params.keep_indices {
        for plan in plans.iter().filter(|p| !p.is_stream()) {
            deleted.extend(clean_up(&es, plan, keep)?);
        }
    }
    let indices: Vec<Value> = plans
        .iter()
        .zip(&created)
        .map(|(plan, created)| {
            let mut v = json!({
                "source": plan.dump.name,
                "index": plan.index,
                "documents": plan.dump.documents,
                "created": created,
                "settings-left-out": plan.left_out,
            });
            if plan.is_stream() {
                v["data-stream"] = json!(true);
            } else {
                v["alias"] = json!(plan.alias);
            }
            v
        })
        .collect();
    Ok(json!({
        "indices": indices,
        "documents": progress.done,
        "deleted": deleted,
        "templates-created": templates,
        "ilm-policies-created": policies,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_hold_index_actions_and_resend_only_failed_items() {
        let mut batch = Batch::default();
        batch.push(br#"{"_id":"1","_source":{"a": 1}}"#).unwrap();
        batch
            .push(br#"{"_id":"t\"2","_routing":"r","_source":{"b":[1,2]}}"#)
            .unwrap();
        assert_eq!(batch.len(), 2);
        assert_eq!(
            String::from_utf8(batch.body_of(&[0, 1])).unwrap(),
            "{\"index\":{\"_id\":\"1\"}}\n{\"a\": 1}\n\
             {\"index\":{\"_id\":\"t\\\"2\",\"routing\":\"r\"}}\n{\"b\":[1,2]}\n"
        );
        assert_eq!(
            String::from_utf8(batch.body_of(&[1])).unwrap(),
            "{\"index\":{\"_id\":\"t\\\"2\",\"routing\":\"r\"}}\n{\"b\":[1,2]}\n"
        );
        assert!(batch.push(b"{\"_source\":{}}").is_err());
        assert!(batch.push(b"not json").is_err());
    }

    #[test]
    fn bulk_items_are_sorted_into_retry_and_rejected() {
        assert_eq!(
            bulk_outcome(
                br#"{"took":3,"errors":false,"items":[{"index":{"status":201}}]}"#,
                1
            )
            .unwrap(),
            Outcome::default()
        );
        let body = br#"{"took":3,"errors":true,"items":[
            {"index":{"_id":"1","status":201}},
            {"index":{"_id":"2","status":429,"error":{"type":"es_rejected_execution_exception","reason":"queue full"}}},
            {"index":{"_id":"3","status":400,"error":{"type":"mapper_parsing_exception","reason":"failed to parse field [n] of type [long]"}}},
            {"index":{"_id":"4","status":503,"error":{"type":"unavailable_shards_exception","reason":"primary shard is not active"}}}
        ]}"#;
        let outcome = bulk_outcome(body, 4).unwrap();
        assert_eq!(outcome.retry, [1, 3]);
        assert_eq!(
            outcome.retry_reason.as_deref(),
            Some("429 (es_rejected_execution_exception: queue full)")
        );
        assert_eq!(outcome.rejected, 1);
        assert_eq!(
            outcome.reasons,
            [
                "document `3`: 400 (mapper_parsing_exception: failed to parse field [n] of type [long])"
            ]
        );
        assert!(bulk_outcome(body, 3).is_err());
        assert!(bulk_outcome(b"<html>", 1).is_err());
    }

    fn dump(name: &str, aliases: Value) -> IndexDump {
        IndexDump {
            name: name.into(),
            documents: 1,
            artifact: format!("{name}.ndjson"),
            settings: Map::new(),
            mappings: json!({}),
            aliases: aliases.as_object().unwrap().clone(),
            kind: Kind::Index,
            template: None,
            dropped_settings: Vec::new(),
        }
    }

    fn params(extra: Value) -> Params {
        let mut p = json!({"url": "http://127.0.0.1:9200"});
        p.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        crate::parse_params(p).unwrap()
    }

    #[test]
    fn plans_put_each_index_behind_its_first_alias_or_its_name() {
        let a = dump(
            "products_v1",
            json!({"products": {"is_write_index": true, "x": 1}, "all": {"filter": {"term": {"a": 1}}}}),
        );
        let b = dump("orders", json!({}));
        let selected = vec![&a, &b];
        let p = params(json!({"target": {"orders": "orders-restored"}}));
        let plans = plan(&selected, &p, "20240102030405", "0123456789abcdef").unwrap();
        assert_eq!(plans[0].alias, "all");
        assert_eq!(plans[0].index, "all-20240102030405-01234567");
        assert_eq!(
            plans[0].alias_properties,
            *json!({"filter": {"term": {"a": 1}}}).as_object().unwrap()
        );
        assert_eq!(plans[0].other_aliases.len(), 1);
        assert_eq!(plans[0].other_aliases[0].0, "products");
        assert_eq!(
            plans[0].other_aliases[0].1,
            *json!({"is_write_index": true}).as_object().unwrap()
        );
        assert_eq!(plans[1].alias, "orders-restored");
        assert_eq!(plans[1].index, "orders-restored-20240102030405-01234567");

        let c = dump("orders_v2", json!({}));
        let p = params(
            json!({"target": {"orders": "orders-restored", "orders_v2": "orders-restored"}}),
        );
        let err = plan(&[&b, &c], &p, "20240102030405", "0123456789abcdef").unwrap_err();
        assert!(
            err.to_string()
                .contains("both be restored behind alias `orders-restored`"),
            "{err}"
        );
    }

    #[test]
    fn selections_come_from_the_snapshot() {
        let manifest = Manifest {
            format: 1,
            dumped_at: String::new(),
            stamp: String::new(),
            url: String::new(),
            version: None,
            templates: Vec::new(),
            ilm_policies: Map::new(),
            indices: vec![
                dump("a1", json!({})),
                dump("a2", json!({})),
                dump("b", json!({})),
            ],
        };
        let names = |patterns: &[&str]| -> Result<Vec<String>> {
            let patterns: Vec<String> = patterns.iter().map(|p| (*p).to_owned()).collect();
            Ok(select(&manifest, &patterns)?
                .iter()
                .map(|d| d.name.clone())
                .collect())
        };
        assert_eq!(names(&["*"]).unwrap(), ["a1", "a2", "b"]);
        assert_eq!(names(&["b", "a*", "-a2"]).unwrap(), ["a1", "b"]);
        let err = names(&["c*"]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "index pattern `c*` matches no index of the snapshot (it holds `a1`, `a2`, `b`)"
        );
    }
}
